package pipeline

import (
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
)

func mustACL(t testing.TB, text string) *ACL {
	t.Helper()
	rules, err := ParseRules(strings.NewReader(text))
	if err != nil {
		t.Fatal(err)
	}
	a, err := NewACL(rules)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func decide(a *ACL, frame []byte) (Verdict, DropReason) {
	var p Packet
	buf := make([]byte, 64+len(frame))
	copy(buf[64:], frame)
	p.Reset(buf, 0, 64, 64+len(frame))
	a.Decide(&p)
	return p.Verdict, p.Reason
}

func TestACLFirstMatchWins(t *testing.T) {
	a := mustACL(t, `
# DNS from the test net is refused, except from one resolver
accept udp from 198.18.0.53 to any port 53
drop udp from 198.18.0.0/24 to any port 53 reason test_dns_blocked
accept tcp to 198.18.1.2 port 22
drop tcp to 198.18.1.0/24 port 1-1023
accept icmp
drop 47                          # GRE
drop from 198.18.9.0/24
`)
	dns, _ := DropReasonByName("test_dns_blocked")
	for _, c := range []struct {
		name   string
		frame  []byte
		want   Verdict
		reason DropReason
	}{
		{"dns from resolver", ipv4Frame("198.18.0.53", "198.18.1.2", 17, 999, 53, nil), Accept, 0},
		{"dns from net", ipv4Frame("198.18.0.7", "198.18.1.2", 17, 999, 53, nil), Drop, dns},
		{"udp other port", ipv4Frame("198.18.0.7", "198.18.1.2", 17, 999, 54, nil), Accept, 0},
		{"ssh to host", ipv4Frame("198.18.0.7", "198.18.1.2", 6, 999, 22, nil), Accept, 0},
		{"ssh to other host", ipv4Frame("198.18.0.7", "198.18.1.3", 6, 999, 22, nil), Drop, DropFiltered},
		{"high tcp port", ipv4Frame("198.18.0.7", "198.18.1.3", 6, 999, 8080, nil), Accept, 0},
		{"icmp from dropped net", ipv4Frame("198.18.9.1", "198.18.1.3", 1, 0, 0, nil), Accept, 0},
		{"udp from dropped net", ipv4Frame("198.18.9.1", "198.18.1.3", 17, 1, 2, nil), Drop, DropFiltered},
		{"gre", ipv4Frame("198.18.0.1", "198.18.1.3", 47, 0, 0, []byte{0, 0, 8, 0}), Drop, DropFiltered},
		{"arp untouched", arpFrame(), Accept, 0},
		{"truncated ipv4", ipv4Frame("198.18.0.7", "198.18.1.2", 17, 999, 53, nil)[:30], Drop, DropTruncated},
		{"truncated udp ports", ipv4Frame("198.18.0.7", "198.18.1.2", 17, 999, 53, nil)[:14+20+2], Drop, DropTruncated},
		{"ip length cuts ports", shortIPLength(ipv4Frame("198.18.0.7", "198.18.1.2", 17, 999, 53, nil), 22), Drop, DropTruncated},
		{"ip length below header", shortIPLength(ipv4Frame("198.18.0.7", "198.18.1.2", 17, 999, 53, nil), 19), Drop, DropIPTotalLength},
		{"ihl 4", setByte(ipv4Frame("198.18.0.7", "198.18.1.2", 17, 999, 53, nil), 14, 0x44), Drop, DropIPHeaderLength},
		{"version 6 in ipv4 ethertype", setByte(ipv4Frame("198.18.0.7", "198.18.1.2", 17, 999, 53, nil), 14, 0x65), Drop, DropIPVersion},
		{"runt", []byte{1, 2, 3}, Drop, DropTruncated},
	} {
		v, r := decide(a, c.frame)
		if v != c.want || v == Drop && r != c.reason {
			t.Errorf("%s: %v %v, want %v %v", c.name, v, r, c.want, c.reason)
		}
	}
}

func shortIPLength(f []byte, n uint16) []byte {
	binary.BigEndian.PutUint16(f[14+2:], n)
	return f
}

func setByte(f []byte, i int, v byte) []byte {
	f[i] = v
	return f
}

func TestACLNonFirstFragmentHasNoPorts(t *testing.T) {
	a := mustACL(t, "drop udp to any port 53\ndrop udp from 198.18.0.9")
	f := ipv4Frame("198.18.0.7", "198.18.1.2", 17, 999, 53, nil)
	f[14+6], f[14+7] = 0x20, 0x10 // MF, offset 16*8: the "ports" are payload bytes
	binary.BigEndian.PutUint16(f[14+10:], 0)
	binary.BigEndian.PutUint16(f[14+10:], csum(f[14:34], 0))
	if v, _ := decide(a, f); v != Accept {
		t.Errorf("non-first fragment matched a port rule: %v", v)
	}
}

func TestACLRuleTextRoundTrip(t *testing.T) {
	for _, s := range []string{
		"drop udp from 198.18.0.0/24 to any port 53",
		"accept tcp from 198.18.0.1 port 1024-65535 to 198.18.1.0/25 port 443",
		"drop",
		"accept icmp",
		"drop 47 to 198.18.0.0/15",
		"drop from 198.18.9.0/24 reason test_blocked_net",
		"drop sctp from any port 9",
		"accept tcp to 2001:2:0:1::10 port 22",
		"drop udp from 2001:2::/48 port 1-1023 to 2001:2:0:1::/64 port 53",
		"drop from ::/0",
		"drop to 0.0.0.0/0",
		"accept icmpv6 type nd-neighbor-solicit",
		"drop icmpv6 type 200 from 2001:2:0:9::/64 reason test_bad_icmpv6",
		"accept icmp type echo-reply",
		"drop icmp type 42",
	} {
		r, err := ParseRule(s)
		if err != nil {
			t.Errorf("ParseRule(%q): %v", s, err)
			continue
		}
		if r.String() != s {
			t.Errorf("ParseRule(%q).String() = %q", s, r.String())
		}
	}
	r, err := ParseRule("drop  udp  from 198.18.0.77/24 to   any   port 53 ")
	if err != nil || r.Src != netip.MustParsePrefix("198.18.0.0/24") || r.DstPorts != (PortRange{53, 53}) || r.Protocol != 17 {
		t.Errorf("spacing/masking: %+v %v", r, err)
	}
}

func TestACLRuleTextErrors(t *testing.T) {
	for s, want := range map[string]string{
		"":                                  "empty rule",
		"permit tcp":                        "accept or drop",
		"drop gre":                          "unknown protocol",
		"drop 0":                            "unknown protocol",
		"drop icmp to any port 5":           "has no ports",
		"drop from":                         "needs a value",
		"drop from 2001:db8::/33x":          "not any, an IPv4 or IPv6",
		"drop from fe80::1%eth0":            "zone",
		"drop from ::ffff:198.18.0.1":       "write the IPv4 prefix 198.18.0.1/32",
		"drop from 198.18.0.1 to 2001:2::1": "different families",
		"drop icmp from 2001:2::/48":        "with IPv6 addresses use icmpv6",
		"drop icmpv6 to 198.18.0.0/15":      "with IPv4 addresses use icmp",
		"drop udp type 3":                   "type given without protocol icmp",
		"drop type 3":                       "type given without protocol icmp",
		"drop icmpv6 type nd-bogus":         "neither a number 0-255 nor a known icmpv6 type name",
		"drop icmp type 256":                "neither a number",
		"drop icmpv6 type 1 type 2":         "given twice",
		"drop to 198.18.0.0/24 port 9-1":    "ports",
		"drop to any port 70000":            "ports",
		"drop from any from any":            "given twice",
		"accept reason filtered":            "accept rule",
		"drop reason Bad-Name":              "snake_case",
		"drop tcp via eth0":                 "unexpected",
		"drop to any port":                  "needs a value",
	} {
		_, err := ParseRule(s)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ParseRule(%q) = %v, want an error containing %q", s, err, want)
		}
	}
	_, err := ParseRules(strings.NewReader("drop\n\n# x\ndrop bogus\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "rules line 4:") {
		t.Errorf("line number: %v", err)
	}
	for _, r := range []Rule{
		{Src: netip.MustParsePrefix("2001:2::/48"), Dst: netip.MustParsePrefix("198.18.0.0/15")},
		{Src: netip.MustParsePrefix("::ffff:198.18.0.0/112")},
		{Src: netip.MustParsePrefix("2001:2::/48"), Protocol: 1},
		{Dst: netip.MustParsePrefix("198.18.0.0/15"), Protocol: 58},
		{Protocol: 17, MatchICMPType: true},
	} {
		if _, err := NewACL([]Rule{r}); err == nil {
			t.Errorf("%+v compiled", r)
		}
	}
	if _, err := NewACL([]Rule{{Protocol: 1, DstPorts: PortRange{1, 2}}}); err == nil {
		t.Error("ports on icmp compiled")
	}
}

// randomRules draws rules over a small address, port and type space, both families, so that they overlap a
// lot.
func randomRules(rng *rand.Rand, n int) []Rule {
	rules := make([]Rule, n)
	for i := range rules {
		r := &rules[i]
		v6 := rng.IntN(2) == 0
		if rng.IntN(4) != 0 {
			r.Src = randPrefix(rng, v6)
		}
		if rng.IntN(4) != 0 {
			r.Dst = randPrefix(rng, v6)
		}
		r.Protocol = []uint8{0, 6, 17, 1, 58, 132}[rng.IntN(6)]
		switch v4, v6 := r.family(); {
		case r.Protocol == 1 && !v4:
			r.Protocol = 58
		case r.Protocol == 58 && !v6:
			r.Protocol = 1
		}
		switch {
		case isICMP[r.Protocol]:
			if rng.IntN(2) == 0 {
				r.ICMPType, r.MatchICMPType = randICMPType(rng), true
			}
		case r.Protocol != 1:
			if rng.IntN(2) == 0 {
				r.SrcPorts = randPorts(rng)
			}
			if rng.IntN(2) == 0 {
				r.DstPorts = randPorts(rng)
			}
		}
		r.Action = Action(rng.IntN(2))
	}
	return rules
}

// randPrefix draws from 198.18.0.0/22 or 2001:2::/48 (varying bits 32-47 and 112-127, so that prefixes cut
// both halves of the 128-bit key).
func randPrefix(rng *rand.Rand, v6 bool) netip.Prefix {
	if v6 {
		a := [16]byte{0x20, 0x01, 0, 2, byte(rng.IntN(2)), byte(rng.IntN(3)), 14: byte(rng.IntN(3)), 15: byte(rng.IntN(256))}
		return netip.PrefixFrom(netip.AddrFrom16(a), []int{0, 32, 40, 47, 48, 64, 112, 120, 126, 128}[rng.IntN(10)]).Masked()
	}
	a := [4]byte{198, 18, byte(rng.IntN(4)), byte(rng.IntN(256))}
	return netip.PrefixFrom(netip.AddrFrom4(a), 14+rng.IntN(19)).Masked()
}

func randPorts(rng *rand.Rand) PortRange {
	lo := uint16(1 + rng.IntN(100))
	return PortRange{lo, lo + uint16(rng.IntN(50))}
}

// randICMPType draws the types near the port numbers randPorts draws too, so that a mix-up of the two shows.
func randICMPType(rng *rand.Rand) uint8 { return []uint8{0, 1, 3, 8, 53, 128, 135}[rng.IntN(7)] }

func randTuple(rng *rand.Rand) FiveTuple {
	t := FiveTuple{
		IPv6:     rng.IntN(2) == 0,
		Protocol: []uint8{6, 17, 1, 58, 132, 47}[rng.IntN(6)],
		SrcPort:  uint16(rng.IntN(160)),
		DstPort:  uint16(rng.IntN(160)),
	}
	if t.IPv6 {
		t.Src = [16]byte{0x20, 0x01, 0, 2, byte(rng.IntN(2)), byte(rng.IntN(4)), 14: byte(rng.IntN(3)), 15: byte(rng.IntN(256))}
		t.Dst = [16]byte{0x20, 0x01, 0, 2 + byte(rng.IntN(2)), byte(rng.IntN(2)), byte(rng.IntN(3)), 14: byte(rng.IntN(4)), 15: byte(rng.IntN(256))}
	} else {
		t.Src = [16]byte{198, 18 + byte(rng.IntN(2)), byte(rng.IntN(4)), byte(rng.IntN(256))}
		t.Dst = [16]byte{198, 18, byte(rng.IntN(5)), byte(rng.IntN(256))}
	}
	t.HasPorts = hasPorts[t.Protocol] && rng.IntN(8) != 0
	if !t.HasPorts {
		t.SrcPort, t.DstPort = 0, 0
	}
	if isICMP[t.Protocol] && rng.IntN(8) != 0 {
		t.HasICMPType, t.ICMPType = true, randICMPType(rng)
	}
	return t
}

func TestACLLookupMatchesLinear(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{0, 1, 2, 7, 63, 64, 65, 200, 1000, 5000} {
		a, err := NewACL(randomRules(rng, n))
		if err != nil {
			t.Fatal(err)
		}
		var hits, hits6, typed int // matches; of IPv6 tuples; by a rule with an ICMP type
		for range 20000 {
			tu := randTuple(rng)
			got, want := a.Lookup(&tu), a.LookupLinear(&tu)
			if got != want {
				t.Fatalf("%d rules: Lookup(%+v) = %d, linear says %d", n, tu, got, want)
			}
			if want >= 0 {
				hits++
				if tu.IPv6 {
					hits6++
				}
				if a.rules[want].MatchICMPType {
					typed++
				}
			}
		}
		if n >= 64 && (hits < 1000 || hits6 < 300 || typed < 20) {
			t.Errorf("%d rules: only %d of 20000 tuples matched (%d IPv6, %d by ICMP type), the test is not exercising much", n, hits, hits6, typed)
		}
	}
}

// FuzzACL builds a rule set and a tuple from the input and cross-checks Lookup with LookupLinear.
func FuzzACL(f *testing.F) {
	f.Add([]byte("\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c\x0d\x0e\x0f\x10\x11\x12\x13\x14\x15\x16\x17\x18"))
	f.Add(make([]byte, 200))
	f.Add([]byte("\x80\x00\x01\x02\x03\x04\x03\x05\x01\x42\x02\x80\x01\x00\xff\x07\xd3\x80\x02\x01\x41\x09\x11\x00\x05"))
	protos := []uint8{0, 1, 6, 17, 58, 132}
	f.Fuzz(func(t *testing.T, data []byte) {
		next := func() byte {
			if len(data) == 0 {
				return 0
			}
			b := data[0]
			data = data[1:]
			return b
		}
		// Addresses vary in a few bits on both sides of the 64-bit halves of an IPv6 key.
		addr := func(v6 bool) netip.Addr {
			if v6 {
				return netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 7: next() & 3, 8: next() & 0x80, 15: next()})
			}
			return netip.AddrFrom4([4]byte{198, 18, next() & 3, next()})
		}
		var tu FiveTuple
		tu.IPv6 = next()&1 != 0
		if tu.IPv6 {
			tu.Src, tu.Dst = addr(true).As16(), addr(true).As16()
		} else {
			*(*[4]byte)(tu.Src[:4]), *(*[4]byte)(tu.Dst[:4]) = addr(false).As4(), addr(false).As4()
		}
		tu.Protocol = protos[next()%6]
		tu.HasPorts = hasPorts[tu.Protocol] && next()&1 == 0
		if tu.HasPorts {
			tu.SrcPort, tu.DstPort = uint16(next()), uint16(next())
		}
		if isICMP[tu.Protocol] && next()&1 == 0 {
			tu.HasICMPType, tu.ICMPType = true, next()
		}
		var rules []Rule
		for len(data) >= 8 && len(rules) < 300 {
			var r Rule
			flags, more := next(), next()
			v6 := more&1 != 0
			if flags&1 != 0 {
				bitsMax := 33
				if v6 {
					bitsMax = 129
				}
				r.Src = netip.PrefixFrom(addr(v6), int(next())%bitsMax).Masked()
			}
			if flags&2 != 0 {
				r.Dst = netip.PrefixFrom(addr(v6), int(next())%129).Masked()
				if !v6 {
					r.Dst = netip.PrefixFrom(r.Dst.Addr(), r.Dst.Bits()%33).Masked()
				}
			}
			r.Protocol = protos[int(flags>>2)%6]
			if r.Protocol == 1 && v6 && (r.Src.IsValid() || r.Dst.IsValid()) {
				r.Protocol = 58
			} else if r.Protocol == 58 && !v6 && (r.Src.IsValid() || r.Dst.IsValid()) {
				r.Protocol = 1
			}
			if isICMP[r.Protocol] && more&2 != 0 {
				r.ICMPType, r.MatchICMPType = next(), true
			}
			if !isICMP[r.Protocol] && flags&0x20 != 0 {
				lo := uint16(next())
				r.DstPorts = PortRange{lo, lo + uint16(next()&31)}
				if r.DstPorts.Any() {
					r.DstPorts = PortRange{1, 1}
				}
			}
			if !isICMP[r.Protocol] && flags&0x40 != 0 {
				lo := uint16(next()) | 1
				r.SrcPorts = PortRange{lo, lo}
			}
			r.Action = Action(flags >> 7)
			rules = append(rules, r)
		}
		a, err := NewACL(rules)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := a.Lookup(&tu), a.LookupLinear(&tu); got != want {
			t.Fatalf("Lookup = %d, linear = %d for %+v over %v", got, want, tu, rules)
		}
	})
}

func bigACL(tb testing.TB, n int) (*ACL, []FiveTuple) {
	rng := rand.New(rand.NewPCG(3, 4))
	a, err := NewACL(randomRules(rng, n))
	if err != nil {
		tb.Fatal(err)
	}
	tus := make([]FiveTuple, 256)
	for i := range tus {
		tus[i] = randTuple(rng)
	}
	return a, tus
}

// aclFrames are the frames of the ACL's allocation test and benchmark: IPv4, and IPv6 with and without
// extension headers, fragments and ICMPv6.
func aclFrames(tb testing.TB) [][]byte {
	frames := testFrames()
	for _, n := range []string{"udp_dns", "tcp_ssh_hbh_dstopt", "tcp_telnet_rh0", "echo_from_bad", "frag_first_dns", "frag_second_dns"} {
		frames = append(frames, ipv6Frame(tb, n))
	}
	return frames
}

func TestACLNoAllocs(t *testing.T) {
	a, _ := bigACL(t, 1000)
	var b Batch
	var sel []uint16
	frames := aclFrames(t)
	for i := range 64 {
		f := frames[i%len(frames)]
		buf := make([]byte, 2048)
		copy(buf[256:], f)
		b.Pkts[i].Reset(buf, 0, 256, 256+len(f))
		sel = append(sel, uint16(i))
	}
	b.N = 64
	if n := testing.AllocsPerRun(100, func() {
		for i := range 64 {
			b.Pkts[i].Verdict = Accept
		}
		a.Process(&b, sel)
	}); n != 0 {
		t.Errorf("ACL.Process allocates %v times per batch", n)
	}
}

func BenchmarkACLLookup(b *testing.B) {
	for _, n := range []int{10, 1000, 10000} {
		b.Run(fmt.Sprintf("rules=%d", n), func(b *testing.B) {
			a, tus := bigACL(b, n)
			b.ReportAllocs()
			s := 0
			for i := 0; b.Loop(); i++ {
				s += a.Lookup(&tus[i&255])
			}
			_ = s
		})
	}
}

func BenchmarkACLLookupLinear1000(b *testing.B) {
	a, tus := bigACL(b, 1000)
	b.ReportAllocs()
	s := 0
	for i := 0; b.Loop(); i++ {
		s += a.LookupLinear(&tus[i&255])
	}
	_ = s
}

func BenchmarkACLProcess1000(b *testing.B) {
	a, _ := bigACL(b, 1000)
	var bt Batch
	var sel []uint16
	frames := aclFrames(b)
	for i := range 64 {
		f := frames[i%len(frames)]
		buf := make([]byte, 2048)
		copy(buf[256:], f)
		bt.Pkts[i].Reset(buf, 0, 256, 256+len(f))
		sel = append(sel, uint16(i))
	}
	bt.N = 64
	b.ReportAllocs()
	for b.Loop() {
		for i := range 64 {
			bt.Pkts[i].Verdict = Accept
		}
		a.Process(&bt, sel)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/pkt")
}
