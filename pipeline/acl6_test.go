package pipeline

import (
	"encoding/hex"
	"strings"
	"testing"
)

func ipv6Frame(t testing.TB, name string) []byte {
	t.Helper()
	h, ok := ipv6Frames[name]
	if !ok {
		t.Fatalf("no frame %q in ipv6_frames_test.go", name)
	}
	b, err := hex.DecodeString(h)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// decideAt is decide with the IP header's offset given in Packet.L3, as a stack sets it before its hooks.
func decideAt(a *ACL, frame []byte, l3 int) (Verdict, DropReason) {
	var p Packet
	buf := make([]byte, 64+len(frame))
	copy(buf[64:], frame)
	p.Reset(buf, 0, 64, 64+len(frame))
	p.L3 = int16(l3)
	a.Decide(&p)
	return p.Verdict, p.Reason
}

const acl6Rules = `
accept udp from 2001:2:0:1::53 to any port 53
drop udp from 2001:2:0:1::/64 to any port 53 reason test6_dns
accept icmpv6 type nd-neighbor-solicit
drop icmpv6 type echo-request from 2001:2:0:9::/64 reason test6_echo
accept tcp to 2001:2:0:2::2 port 22
drop tcp to 2001:2:0:2::/64 port 1-1023
drop 59
drop udp from 198.18.0.0/15 to any port 1-1000       # IPv4 only: never an IPv6 packet
drop from 2001:2:0:9::/64 reason test6_bad_net
`

// TestACLIPv6Frames runs IPv6 frames built by scapy (testdata/ipv6_frames.py) through an ACL: prefixes,
// the upper-layer protocol and ports found behind extension headers (Hop-by-Hop, Destination Options, a
// type 0 routing header, fragments), ICMPv6 types, and malformed frames each dropped with its reason.
func TestACLIPv6Frames(t *testing.T) {
	a := mustACL(t, acl6Rules)
	dns, _ := DropReasonByName("test6_dns")
	echo, _ := DropReasonByName("test6_echo")
	badNet, _ := DropReasonByName("test6_bad_net")
	tested := map[string]bool{}
	for _, c := range []struct {
		frame  string
		want   Verdict
		reason DropReason
	}{
		{"udp_dns", Drop, dns},
		{"udp_dns_resolver", Accept, 0},
		{"udp_other", Accept, 0},
		{"vlan_udp_dns", Drop, dns},
		{"tcp_ssh_hbh_dstopt", Accept, 0}, // TCP port 22 found behind two extension headers
		{"tcp_telnet_other", Drop, DropFiltered},
		{"tcp_high_other", Accept, 0},
		{"tcp_telnet_rh0", Drop, DropFiltered}, // classified; refusing RH0 is the router's business (RFC 5095)
		{"echo_from_bad", Drop, echo},
		{"echo_from_good", Accept, 0},
		{"ns_from_bad", Accept, 0}, // the earlier accept wins over the bad-net drop
		{"ptb_from_bad", Drop, badNet},
		{"udp_from_bad", Drop, badNet},
		{"no_next_header", Drop, DropFiltered},
		{"frag_first_dns", Drop, dns},
		{"frag_second_dns", Accept, 0}, // no ports in a non-first fragment: port rules cannot match
		{"frag_atomic_dns", Drop, dns}, // RFC 6946: an atomic fragment is a whole packet
		{"bad_hbh_not_first", Drop, DropIPv6ExtChain},
		{"bad_ext_past_end", Drop, DropIPv6ExtChain},
		{"bad_chain_too_long", Drop, DropIPv6ExtChain},
		{"bad_truncated_header", Drop, DropTruncated},
		{"bad_payload_length", Drop, DropIPTotalLength},
		{"bad_udp_cut", Drop, DropTruncated},
		{"bad_icmpv6_cut", Drop, DropTruncated},
		{"bad_first_frag_no_ports", Drop, DropTruncated}, // RFC 7112 §5
		{"bad_version_4", Drop, DropIPVersion},
	} {
		tested[c.frame] = true
		f := ipv6Frame(t, c.frame)
		v, r := decide(a, f)
		if v != c.want || v == Drop && r != c.reason {
			t.Errorf("%s: %v %v, want %v %v", c.frame, v, r, c.want, c.reason)
		}
		if strings.HasPrefix(c.frame, "bad_") {
			continue
		}
		l3 := 14
		if c.frame == "vlan_udp_dns" {
			l3 = 18
		}
		if v2, r2 := decideAt(a, f, l3); v2 != v || r2 != r {
			t.Errorf("%s with L3 set: %v %v, without: %v %v", c.frame, v2, r2, v, r)
		}
	}
	for name := range ipv6Frames {
		if !tested[name] {
			t.Errorf("frame %s of ipv6_frames_test.go is not in the table", name)
		}
	}
	// IPv4 beside it: only the IPv4 rule and the family-less ones apply.
	for _, c := range []struct {
		name  string
		frame []byte
		want  Verdict
	}{
		{"ipv4 udp 53", ipv4Frame("198.18.0.7", "198.18.1.2", 17, 999, 53, nil), Drop},
		{"ipv4 udp 2000", ipv4Frame("198.18.0.7", "198.18.1.2", 17, 999, 2000, nil), Accept},
		{"ipv4 echo", ipv4Frame("198.18.0.7", "198.18.1.2", 1, 0, 0, nil), Accept},
		{"ipv4 tcp 23", ipv4Frame("198.18.0.7", "198.18.1.2", 6, 999, 23, nil), Accept},
	} {
		if v, r := decide(a, c.frame); v != c.want || v == Drop && r != DropFiltered {
			t.Errorf("%s: %v %v, want %v", c.name, v, r, c.want)
		}
	}
}

// TestTupleIPv6 checks what Tuple reads behind the extension headers.
func TestTupleIPv6(t *testing.T) {
	for _, c := range []struct {
		frame string
		want  FiveTuple
	}{
		{"tcp_ssh_hbh_dstopt", FiveTuple{IPv6: true, Protocol: 6, HasPorts: true, SrcPort: 999, DstPort: 22}},
		{"tcp_telnet_rh0", FiveTuple{IPv6: true, Protocol: 6, HasPorts: true, SrcPort: 999, DstPort: 23}},
		{"frag_first_dns", FiveTuple{IPv6: true, Protocol: 17, HasPorts: true, SrcPort: 999, DstPort: 53}},
		{"frag_second_dns", FiveTuple{IPv6: true, Protocol: 17}},
		{"ns_from_bad", FiveTuple{IPv6: true, Protocol: 58, HasICMPType: true, ICMPType: 135}},
		{"ptb_from_bad", FiveTuple{IPv6: true, Protocol: 58, HasICMPType: true, ICMPType: 2}},
		{"no_next_header", FiveTuple{IPv6: true, Protocol: 59}},
	} {
		var p Packet
		f := ipv6Frame(t, c.frame)
		p.Reset(f, 0, 0, len(f))
		got, r, ok := Tuple(&p)
		c.want.Src, c.want.Dst = got.Src, got.Dst
		if !ok || r != DropNone || got != c.want {
			t.Errorf("%s: %+v %v %v, want %+v", c.frame, got, r, ok, c.want)
		}
		if got.SrcAddr().Is6() != true || got.SrcAddr().String() != "2001:2:0:1::7" && got.SrcAddr().String() != "2001:2:0:9::9" {
			t.Errorf("%s: source %v", c.frame, got.SrcAddr())
		}
	}
}

// FuzzACLFrames feeds arbitrary frames to Tuple and Decide under rules of both families: nothing panics,
// a frame is either classified or dropped with a reason, and Lookup agrees with LookupLinear.
func FuzzACLFrames(f *testing.F) {
	for _, h := range ipv6Frames {
		b, _ := hex.DecodeString(h)
		f.Add(b, int8(-1))
	}
	for _, b := range testFrames() {
		f.Add(b, int8(-1))
		f.Add(b, int8(14))
	}
	a := mustACL(f, acl6Rules+"drop icmp type echo-request\naccept tcp from 198.18.0.0/24 port 22\n")
	f.Fuzz(func(t *testing.T, frame []byte, l3 int8) {
		var p Packet
		p.Reset(frame, 0, 0, len(frame))
		p.L3 = int16(l3)
		tu, reason, ok := Tuple(&p)
		if ok && reason != DropNone {
			t.Fatalf("classified with reason %v", reason)
		}
		if ok {
			if got, want := a.Lookup(&tu), a.LookupLinear(&tu); got != want {
				t.Fatalf("Lookup = %d, linear = %d for %+v", got, want, tu)
			}
			if tu.HasPorts && tu.HasICMPType || tu.HasPorts && !hasPorts[tu.Protocol] || tu.HasICMPType && !isICMP[tu.Protocol] {
				t.Fatalf("inconsistent tuple %+v", tu)
			}
		}
		a.Decide(&p)
		if p.Verdict != Accept && p.Verdict != Drop || p.Verdict == Drop && p.Reason == DropNone {
			t.Fatalf("verdict %v reason %v", p.Verdict, p.Reason)
		}
	})
}
