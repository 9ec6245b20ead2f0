package xdpprog

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
)

// loadSteer loads the steering program for rules, unattached, with the test's miss marker.
func loadSteer(t *testing.T, rules []Rule) *ebpf.Program {
	t.Helper()
	requireRoot(t)
	xsks, err := ebpf.NewMap(xsksSpec(4))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { xsks.Close() })
	spec, err := steerSpec(xsks, rules, missMarker)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := ebpf.NewProgram(spec)
	if err != nil {
		t.Fatalf("verifier refused the steering program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog
}

// Frame edits for the table: each returns a changed copy.

// ports sets the L4 ports of an IPv4 (IHL from the header) or IPv6 frame.
func ports(f []byte, src, dst uint16) []byte {
	f = append([]byte(nil), f...)
	l4 := 14 + int(f[14]&0xf)*4
	if f[14]>>4 == 6 {
		l4 = 14 + 40
	}
	binary.BigEndian.PutUint16(f[l4:], src)
	binary.BigEndian.PutUint16(f[l4+2:], dst)
	return f
}

// proto sets the IPv4 protocol or IPv6 next header.
func proto(f []byte, p byte) []byte {
	f = append([]byte(nil), f...)
	if f[14]>>4 == 6 {
		f[14+6] = p
	} else {
		f[14+9] = p
	}
	return f
}

// tag inserts a VLAN tag (TPID tpid, id vid) after the MAC addresses.
func tag(f []byte, tpid, vid uint16) []byte {
	out := append([]byte(nil), f[:12]...)
	out = binary.BigEndian.AppendUint16(out, tpid)
	out = binary.BigEndian.AppendUint16(out, 0x2000|vid) // PCP 1, to see it is masked off
	return append(out, f[12:]...)
}

// raw is an Ethernet frame of type et with a 46-byte payload.
func raw(et uint16) []byte {
	f := make([]byte, 60)
	copy(f[0:6], []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
	copy(f[6:12], []byte{0x02, 0, 0, 0, 0, 0x01})
	binary.BigEndian.PutUint16(f[12:], et)
	return f
}

func pfx(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

var steerRules = []Rule{
	{Protocol: 17, DstPorts: []PortRange{{53, 53}}},
	{VLAN: 100, EtherType: 0x0806},
	{Protocol: 6, DstPorts: []PortRange{{8000, 8080}}, DstPrefixes: pfx("198.18.5.0/24", "2001:2:0:5::/64")},
	{SrcPrefixes: pfx("198.19.128.0/17")},
	{VLAN: Untagged, EtherType: 0x88cc},
	{VLAN: 200},
	{EtherType: 0x86dd, Protocol: 58, DstPrefixes: pfx("2001:2:0:6:8000::/65")},
	{Protocol: 17, SrcPorts: []PortRange{{67, 68}, {546, 547}}, DstPrefixes: pfx("0.0.0.0/0")},
}

// TestSteerProgramVerdicts runs the verified steering program on real frames through BPF_PROG_TEST_RUN:
// every rule field matching and not, and malformed frames, which match nothing that looks at them.
func TestSteerProgramVerdicts(t *testing.T) {
	prog := loadSteer(t, steerRules)
	a := netip.MustParseAddr
	udp4 := frame(0x0800, 0x45, 64, 0, gen, sink)
	udp6 := frame6(17, 64, gen6, sink6)
	dns4, dns6 := ports(udp4, 4000, 53), ports(udp6, 4000, 53)
	opts := ports(frame(0x0800, 0x46, 64, 0, gen, sink), 4000, 53)
	tcp := func(src, dst netip.Addr, port uint16) []byte {
		if dst.Is4() {
			return ports(proto(frame(0x0800, 0x45, 64, 0, src, dst), 6), 40000, port)
		}
		return ports(frame6(6, 64, src, dst), 40000, port)
	}
	cases := []struct {
		name string
		data []byte
		want uint32
	}{
		{"UDP/53 IPv4", dns4, missMarker},
		{"UDP/53 IPv4 with options (ports after a 24-byte header)", opts, missMarker},
		{"UDP/53 IPv6", dns6, missMarker},
		{"UDP/53 in a VLAN (rule has no VLAN: any)", tag(dns4, 0x8100, 300), missMarker},
		{"UDP/53 in an 802.1ad tag", tag(dns6, 0x88a8, 300), missMarker},
		{"UDP/54", ports(udp4, 4000, 54), xdpPassed},
		{"UDP from port 53", ports(udp4, 53, 4000), xdpPassed},
		{"TCP/53", proto(dns4, 6), xdpPassed},
		{"UDP/53 first fragment (MF)", ports(frame(0x0800, 0x45, 64, 0x2000, gen, sink), 4000, 53), xdpPassed},
		{"UDP/53 later fragment", ports(frame(0x0800, 0x45, 64, 0x0001, gen, sink), 4000, 53), xdpPassed},
		{"UDP/53 DF set is no fragment", ports(frame(0x0800, 0x45, 64, 0x4000, gen, sink), 4000, 53), missMarker},
		{"UDP/53 IPv6 behind a destination options header", proto(dns6, 60), xdpPassed},
		{"UDP/53 IPv4 cut after the source port", dns4[:14+20+2], xdpPassed},
		{"UDP/53 IPv4 cut at 4 bytes of UDP", dns4[:14+20+4], missMarker},
		{"UDP/53 IPv6 cut after the IPv6 header", dns6[:14+40], xdpPassed},
		{"UDP/53 IPv4 with options cut inside the options", opts[:14+22], xdpPassed},
		{"UDP/53 IPv4 version 6 in the header", func() []byte { f := append([]byte(nil), dns4...); f[14] = 0x65; return f }(), xdpPassed},
		{"UDP/53 IPv4 IHL 4", func() []byte { f := append([]byte(nil), dns4...); f[14] = 0x44; return f }(), xdpPassed},
		{"UDP/53 IPv4 header cut short", dns4[:14+19], xdpPassed},
		{"ARP untagged", raw(0x0806), xdpPassed},
		{"ARP VLAN 100", tag(raw(0x0806), 0x8100, 100), missMarker},
		{"ARP VLAN 101", tag(raw(0x0806), 0x8100, 101), xdpPassed},
		{"TCP 8080 to the IPv4 prefix", tcp(gen, a("198.18.5.9"), 8080), missMarker},
		{"TCP 8000 to the IPv4 prefix", tcp(gen, a("198.18.5.255"), 8000), missMarker},
		{"TCP 8081 to the IPv4 prefix", tcp(gen, a("198.18.5.9"), 8081), xdpPassed},
		{"TCP 7999 to the IPv4 prefix", tcp(gen, a("198.18.5.9"), 7999), xdpPassed},
		{"TCP 8000 outside the IPv4 prefix", tcp(gen, a("198.18.6.1"), 8000), xdpPassed},
		{"TCP 8000 to the IPv6 prefix", tcp(gen6, a("2001:2:0:5::9"), 8000), missMarker},
		{"TCP 8000 outside the IPv6 prefix", tcp(gen6, a("2001:2:0:4::9"), 8000), xdpPassed},
		{"from the source prefix", frame(0x0800, 0x45, 64, 0, a("198.19.200.1"), sink), missMarker},
		{"from the source prefix, a fragment", frame(0x0800, 0x45, 64, 0x0001, a("198.19.128.0"), sink), missMarker},
		{"from just below the source prefix", frame(0x0800, 0x45, 64, 0, a("198.19.127.255"), sink), xdpPassed},
		{"LLDP untagged", raw(0x88cc), missMarker},
		{"LLDP tagged", tag(raw(0x88cc), 0x8100, 5), xdpPassed},
		{"anything on VLAN 200", tag(ports(udp4, 1, 9999), 0x8100, 200), missMarker},
		{"ARP on VLAN 200", tag(raw(0x0806), 0x8100, 200), missMarker},
		{"tag cut short", tag(raw(0x0806), 0x8100, 200)[:17], xdpPassed},
		{"ICMPv6 to the /65", frame6(58, 64, gen6, a("2001:2:0:6:8000::1")), missMarker},
		{"ICMPv6 to the /65, last address", frame6(58, 64, gen6, a("2001:2:0:6:ffff:ffff:ffff:ffff")), missMarker},
		{"ICMPv6 below the /65", frame6(58, 64, gen6, a("2001:2:0:6:7fff:ffff:ffff:ffff")), xdpPassed},
		{"UDP to the /65", frame6(17, 64, gen6, a("2001:2:0:6:8000::1")), xdpPassed},
		{"DHCP client port range, IPv4", ports(udp4, 68, 67), missMarker},
		{"DHCPv6 port range, but the rule's prefix is IPv4", ports(udp6, 546, 547), xdpPassed},
		{"bare Ethernet header", raw(0x0800)[:14], xdpPassed},
		{"IPv6 EtherType, bare Ethernet header", raw(0x86dd)[:14], xdpPassed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			got, err := prog.Run(&ebpf.RunOptions{Data: c.data})
			if err != nil {
				t.Fatalf("BPF_PROG_TEST_RUN: %v", err)
			}
			if got != c.want {
				t.Errorf("action %d, want %d (%d = went to bpf_redirect_map, %d = XDP_PASS)", got, c.want, missMarker, xdpPassed)
			}
		})
	}
}

// A rule with no fields takes every well-formed frame, but a frame whose VLAN tag or IP header is cut short
// still goes to the kernel; with the production miss action and no socket, even a match goes to the kernel.
func TestSteerProgramMatchAllAndMiss(t *testing.T) {
	all := loadSteer(t, []Rule{{}})
	for _, c := range []struct {
		f    []byte
		want uint32
	}{
		{raw(0x0806)[:14], missMarker}, {raw(0x0806), missMarker}, {tag(raw(0x0806), 0x8100, 7), missMarker},
		{frame6(0, 1, gen6, sink6), missMarker}, {frame(0x0800, 0x4f, 0, 0x3fff, gen, sink), missMarker},
		{raw(0x0800)[:14], xdpPassed}, {raw(0x86dd)[:53], xdpPassed}, {tag(raw(0x0806), 0x8100, 7)[:17], xdpPassed},
	} {
		if got, err := all.Run(&ebpf.RunOptions{Data: c.f}); err != nil || got != c.want {
			t.Errorf("match-all on %x: %d %v, want %d", c.f, got, err, c.want)
		}
	}
	requireRoot(t)
	xsks, err := ebpf.NewMap(xsksSpec(1))
	if err != nil {
		t.Fatal(err)
	}
	defer xsks.Close()
	spec, err := steerSpec(xsks, steerRules, xdpPass)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := ebpf.NewProgram(spec)
	if err != nil {
		t.Fatal(err)
	}
	defer prog.Close()
	if got, err := prog.Run(&ebpf.RunOptions{Data: ports(frame(0x0800, 0x45, 64, 0, gen, sink), 1, 53)}); err != nil || got != xdpPassed {
		t.Fatalf("matching frame with an empty XSKMAP slot: %d %v, want XDP_PASS", got, err)
	}
}

// The limits are safe: a filter at every limit at once passes the verifier.
func TestSteerProgramAtLimitsVerifies(t *testing.T) {
	rules := make([]Rule, MaxRules)
	for i := range rules {
		rules[i] = Rule{VLAN: 1 + i%4094, Protocol: 17}
	}
	for i := range MaxPrefixes {
		r := &rules[i%MaxRules]
		r.DstPrefixes = append(r.DstPrefixes, netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, byte(i >> 8), byte(i)}), 63))
	}
	for i := range MaxPorts {
		r := &rules[i%MaxRules]
		r.DstPorts = append(r.DstPorts, PortRange{uint16(2 * i), uint16(2*i + 1)})
	}
	if err := CheckRules(rules); err != nil {
		t.Fatal(err)
	}
	prog := loadSteer(t, rules)
	f := tag(ports(frame6(17, 64, gen6, netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 3, 0xff, 0, 0, 1})), 1, 2*1023+1), 0x8100, 1+1023%MaxRules%4094)
	if got, err := prog.Run(&ebpf.RunOptions{Data: f}); err != nil || got != missMarker {
		t.Fatalf("last rule's last prefix and port: %d %v, want the redirect", got, err)
	}
	t.Logf("%d instructions", len(steerInstructions(rules, xdpPass)))
}

func TestCheckRules(t *testing.T) {
	for _, c := range []struct {
		rules []Rule
		say   string
	}{
		{nil, "no rules"},
		{[]Rule{{VLAN: 4095}}, "VLAN 4095 out of range"},
		{[]Rule{{VLAN: -2}}, "out of range"},
		{[]Rule{{EtherType: 0x8100}}, "is a VLAN tag"},
		{[]Rule{{EtherType: 0x05dc}}, "802.3 length"},
		{[]Rule{{EtherType: 0x0806, Protocol: 17}}, "needs EtherType IPv4"},
		{[]Rule{{DstPorts: []PortRange{{53, 53}}}}, "ports need Protocol"},
		{[]Rule{{Protocol: 1, DstPorts: []PortRange{{53, 53}}}}, "ports need Protocol"},
		{[]Rule{{Protocol: 17, SrcPorts: []PortRange{{54, 53}}}}, "empty"},
		{[]Rule{{DstPrefixes: []netip.Prefix{{}}}}, "not valid"},
		{[]Rule{{DstPrefixes: pfx("::ffff:198.18.0.0/112")}}, "IPv4-mapped"},
		{[]Rule{{EtherType: 0x0800, DstPrefixes: pfx("2001:2::/48")}}, "cannot match EtherType"},
		{[]Rule{{SrcPrefixes: pfx("2001:2::/48"), DstPrefixes: pfx("198.18.0.0/15")}}, "different families"},
		{make([]Rule, MaxRules+1), "at most"},
	} {
		err := CheckRules(c.rules)
		if !errors.Is(err, ErrBadRule) || !strings.Contains(err.Error(), c.say) {
			t.Errorf("CheckRules(%+v) = %v, want ErrBadRule saying %q", c.rules, err, c.say)
		}
	}
	if err := CheckRules(steerRules); err != nil {
		t.Fatalf("the test's rules: %v", err)
	}
}

func BenchmarkSteerProgramTestRun(b *testing.B) {
	requireRoot(b)
	xsks, err := ebpf.NewMap(xsksSpec(1))
	if err != nil {
		b.Fatal(err)
	}
	defer xsks.Close()
	spec, err := steerSpec(xsks, steerRules, missMarker)
	if err != nil {
		b.Fatal(err)
	}
	prog, err := ebpf.NewProgram(spec)
	if err != nil {
		b.Fatal(err)
	}
	defer prog.Close()
	// The last rule's frame: every rule before it is tried.
	f := ports(frame(0x0800, 0x45, 64, 0, gen, sink), 68, 67)
	b.ReportAllocs()
	ret, d, err := prog.Benchmark(f, b.N, nil)
	if err != nil {
		b.Fatal(err)
	}
	if ret != missMarker {
		b.Fatalf("action %d", ret)
	}
	b.ReportMetric(float64(d.Nanoseconds()), "kernel-ns/run")
}
