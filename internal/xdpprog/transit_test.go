package xdpprog

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"testing"

	"github.com/cilium/ebpf"
)

// XDP actions as BPF_PROG_TEST_RUN reports them.
const (
	xdpAborted  = 0
	xdpDrop     = 1
	xdpPassed   = 2
	xdpTX       = 3
	xdpRedirect = 4
)

// missMarker is the redirect miss action the test program uses: no AF_XDP socket can be registered under
// BPF_PROG_TEST_RUN, so bpf_redirect_map always misses, and a marker other than XDP_PASS tells "went to the
// redirect" from "passed to the kernel". XDP_TX is an action the real program never returns.
const missMarker = xdpTX

// frame builds an Ethernet + IPv4 + UDP frame with real header bytes (checksums are not looked at by the
// program, but are right anyway so the bytes are a frame a NIC could deliver).
func frame(etherType uint16, verIHL, ttl byte, flagsFrag uint16, src, dst netip.Addr) []byte {
	ihl := int(verIHL&0xf) * 4
	if ihl < 20 {
		ihl = 20
	}
	b := make([]byte, 14+ihl+8+18)
	copy(b[0:6], []byte{0x02, 0, 0, 0, 0, 0x02})
	copy(b[6:12], []byte{0x02, 0, 0, 0, 0, 0x01})
	binary.BigEndian.PutUint16(b[12:], etherType)
	ip := b[14:]
	ip[0] = verIHL
	binary.BigEndian.PutUint16(ip[2:], uint16(len(ip)))
	binary.BigEndian.PutUint16(ip[6:], flagsFrag)
	ip[8] = ttl
	ip[9] = 17
	s, d := src.As4(), dst.As4()
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	var sum uint32
	for i := 0; i < ihl; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(ip[i:]))
	}
	for sum > 0xffff {
		sum = sum&0xffff + sum>>16
	}
	binary.BigEndian.PutUint16(ip[10:], ^uint16(sum))
	udp := ip[ihl:]
	binary.BigEndian.PutUint16(udp[0:], 4000)
	binary.BigEndian.PutUint16(udp[2:], 5000)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	return b
}

// frame6 builds an Ethernet + IPv6 frame with next header nh and a UDP-sized payload (the UDP header is
// there whatever nh says, so the lengths are those of a real packet).
func frame6(nh, hopLimit byte, src, dst netip.Addr) []byte {
	b := make([]byte, 14+40+8+18)
	copy(b[0:6], []byte{0x02, 0, 0, 0, 0, 0x02})
	copy(b[6:12], []byte{0x02, 0, 0, 0, 0, 0x01})
	binary.BigEndian.PutUint16(b[12:], 0x86dd)
	ip := b[14:]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], uint16(len(ip)-40))
	ip[6] = nh
	ip[7] = hopLimit
	s, d := src.As16(), dst.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	udp := ip[40:]
	binary.BigEndian.PutUint16(udp[0:], 4000)
	binary.BigEndian.PutUint16(udp[2:], 5000)
	binary.BigEndian.PutUint16(udp[4:], uint16(len(udp)))
	return b
}

var (
	gen6    = netip.MustParseAddr("2001:2:0:1::2")
	local6  = netip.MustParseAddr("2001:2:0:1::1")
	sink6   = netip.MustParseAddr("2001:2:0:2::2")
	punted6 = netip.MustParseAddr("2001:2:0:99::5")
)

var (
	gen    = netip.MustParseAddr("198.18.1.2")
	local  = netip.MustParseAddr("198.18.1.1")
	sink   = netip.MustParseAddr("198.18.2.2")
	punted = netip.MustParseAddr("198.19.7.9")
	bcast  = netip.MustParseAddr("198.18.1.255")
)

func loadTransit(t *testing.T, miss int32) (*ebpf.Program, *KernelPrefixes) {
	t.Helper()
	requireRoot(t)
	kp, err := NewKernelPrefixes(64)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kp.Close() })
	xsks, err := ebpf.NewMap(xsksSpec(4))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { xsks.Close() })
	spec, err := transitSpec(xsks, kp, miss)
	if err != nil {
		t.Fatal(err)
	}
	prog, err := ebpf.NewProgram(spec)
	if err != nil {
		t.Fatalf("verifier refused the transit program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	for p, o := range map[string]PrefixOwner{
		"198.18.1.0/24": FastPath, "198.18.1.1/32": ToKernel, "198.18.1.255/32": ToKernel,
		"198.19.0.0/16": ToKernel, "198.19.7.0/24": ToKernel, "198.19.8.0/24": FastPath,
		"2001:2:0:1::/64": FastPath, "2001:2:0:1::1/128": ToKernel, "2001:2:0:99::/64": ToKernel,
	} {
		if err := kp.Set(netip.MustParsePrefix(p), o); err != nil {
			t.Fatal(err)
		}
	}
	return prog, kp
}

// TestTransitProgramVerdicts runs the verified program on real frames through BPF_PROG_TEST_RUN.
func TestTransitProgramVerdicts(t *testing.T) {
	prog, _ := loadTransit(t, missMarker)
	arp := make([]byte, 42)
	copy(arp, frame(0x0806, 0x45, 64, 0, gen, local)[:42])
	vlan := frame(0x8100, 0x45, 64, 0, gen, sink)
	cases := []struct {
		name string
		data []byte
		want uint32
	}{
		{"transit UDP", frame(0x0800, 0x45, 64, 0, gen, sink), missMarker},
		{"transit TTL 2", frame(0x0800, 0x45, 2, 0, gen, sink), missMarker},
		{"transit first fragment", frame(0x0800, 0x45, 64, 0x2000, gen, sink), missMarker},
		{"transit later fragment", frame(0x0800, 0x45, 64, 0x0010, gen, sink), missMarker},
		{"transit under a shorter kernel prefix but a longer fast-path one", frame(0x0800, 0x45, 64, 0, gen, netip.MustParseAddr("198.19.8.1")), missMarker},
		{"on-link transit (connected /24 is fast path)", frame(0x0800, 0x45, 64, 0, sink, gen), missMarker},
		{"to the box", frame(0x0800, 0x45, 64, 0, gen, local), xdpPassed},
		{"fragment to the box", frame(0x0800, 0x45, 64, 0x2000, gen, local), xdpPassed},
		{"directed broadcast", frame(0x0800, 0x45, 64, 0, gen, bcast), xdpPassed},
		{"route via a kernel-only interface", frame(0x0800, 0x45, 64, 0, gen, punted), xdpPassed},
		{"transit TTL 1 (the stack sends Time Exceeded)", frame(0x0800, 0x45, 1, 0, gen, sink), missMarker},
		{"transit TTL 0", frame(0x0800, 0x45, 0, 0, gen, sink), missMarker},
		{"TTL 1 to the box", frame(0x0800, 0x45, 1, 0, gen, local), xdpPassed},
		{"transit with IP options (the stack checks and forwards them)", frame(0x0800, 0x46, 64, 0, gen, sink), missMarker},
		{"IP options to the box", frame(0x0800, 0x46, 64, 0, gen, local), xdpPassed},
		{"IHL below 5", frame(0x0800, 0x44, 64, 0, gen, sink), xdpPassed},
		{"multicast", frame(0x0800, 0x45, 64, 0, gen, netip.MustParseAddr("224.0.0.5")), xdpPassed},
		{"limited broadcast", frame(0x0800, 0x45, 64, 0, gen, netip.MustParseAddr("255.255.255.255")), xdpPassed},
		{"class E", frame(0x0800, 0x45, 64, 0, gen, netip.MustParseAddr("240.0.0.1")), xdpPassed},
		{"ARP", arp, xdpPassed},
		{"IPv6 transit UDP", frame6(17, 64, gen6, sink6), missMarker},
		{"IPv6 transit hop limit 2", frame6(17, 2, gen6, sink6), missMarker},
		{"IPv6 transit fragment", frame6(44, 64, gen6, sink6), missMarker},
		{"IPv6 on-link transit (connected /64 is fast path)", frame6(17, 64, sink6, gen6), missMarker},
		{"IPv6 site-local is not link-local", frame6(17, 64, gen6, netip.MustParseAddr("fec0::1")), missMarker},
		{"IPv6 to the box", frame6(17, 64, gen6, local6), xdpPassed},
		{"ICMPv6 echo to the box", frame6(58, 64, gen6, local6), xdpPassed},
		{"IPv6 route via a kernel-only interface", frame6(17, 64, gen6, punted6), xdpPassed},
		{"IPv6 transit hop limit 1 (the stack sends Time Exceeded)", frame6(17, 1, gen6, sink6), missMarker},
		{"IPv6 transit hop limit 0", frame6(17, 0, gen6, sink6), missMarker},
		{"IPv6 hop limit 1 to the box", frame6(58, 1, gen6, local6), xdpPassed},
		{"IPv6 transit with Hop-by-Hop (the stack processes it)", frame6(0, 64, gen6, sink6), missMarker},
		{"IPv6 Hop-by-Hop to the box", frame6(0, 64, gen6, local6), xdpPassed},
		{"NDP solicitation to the solicited-node group", frame6(58, 255, gen6, netip.MustParseAddr("ff02::1:ff00:1")), xdpPassed},
		{"IPv6 link-local destination", frame6(58, 255, netip.MustParseAddr("fe80::2"), netip.MustParseAddr("fe80::1")), xdpPassed},
		{"IPv6 link-local destination, top of fe80::/10", frame6(17, 64, gen6, netip.MustParseAddr("febf::1")), xdpPassed},
		{"IPv6 global multicast", frame6(17, 64, gen6, netip.MustParseAddr("ff0e::1")), xdpPassed},
		{"IPv6 version 4 in the header", func() []byte { f := frame6(17, 64, gen6, sink6); f[14] = 0x45; return f }(), xdpPassed},
		{"truncated IPv6 header", frame6(17, 64, gen6, sink6)[:53], xdpPassed},
		{"IPv6 EtherType, bare Ethernet header", frame6(17, 64, gen6, sink6)[:14], xdpPassed},
		{"VLAN tagged", vlan, xdpPassed},
		{"truncated IPv4 header", frame(0x0800, 0x45, 64, 0, gen, sink)[:33], xdpPassed},
		{"bare Ethernet header", frame(0x0800, 0x45, 64, 0, gen, sink)[:14], xdpPassed},
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

// With the production miss action (XDP_PASS) and no socket in the slot, transit traffic goes to the kernel
// too: attaching the program before the sockets exist changes nothing for traffic.
func TestTransitProgramMissPasses(t *testing.T) {
	prog, _ := loadTransit(t, xdpPass)
	got, err := prog.Run(&ebpf.RunOptions{Data: frame(0x0800, 0x45, 64, 0, gen, sink)})
	if err != nil {
		t.Fatal(err)
	}
	if got != xdpPassed {
		t.Fatalf("transit frame with an empty XSKMAP slot: action %d, want XDP_PASS", got)
	}
}

// Map changes take effect for the next packet: delete the /32 of the box and its traffic becomes transit.
func TestTransitProgramFollowsMap(t *testing.T) {
	prog, kp := loadTransit(t, missMarker)
	f := frame(0x0800, 0x45, 64, 0, gen, local)
	run := func() uint32 {
		got, err := prog.Run(&ebpf.RunOptions{Data: f})
		if err != nil {
			t.Fatal(err)
		}
		return got
	}
	if got := run(); got != xdpPassed {
		t.Fatalf("before delete: %d, want XDP_PASS", got)
	}
	if err := kp.Delete(netip.MustParsePrefix("198.18.1.1/32")); err != nil {
		t.Fatal(err)
	}
	if got := run(); got != missMarker {
		t.Fatalf("after delete: %d, want the redirect", got)
	}
	if err := kp.Delete(netip.MustParsePrefix("198.18.1.1/32")); err != nil {
		t.Fatalf("deleting a missing entry: %v, want nil", err)
	}
	if err := kp.Set(netip.MustParsePrefix("198.18.1.1/32"), ToKernel); err != nil {
		t.Fatal(err)
	}
	if got := run(); got != xdpPassed {
		t.Fatalf("after set: %d, want XDP_PASS", got)
	}
	if o, ok, err := kp.Lookup(local); err != nil || !ok || o != ToKernel {
		t.Fatalf("Lookup(%v) = %v %v %v, want kernel", local, o, ok, err)
	}
	if o, ok, err := kp.Lookup(gen); err != nil || !ok || o != FastPath {
		t.Fatalf("Lookup(%v) = %v %v %v, want fast-path", gen, o, ok, err)
	}
	if _, ok, err := kp.Lookup(netip.MustParseAddr("203.0.113.1")); err != nil || ok {
		t.Fatalf("Lookup of an uncovered address: ok %v err %v, want no entry", ok, err)
	}
}

func TestKernelPrefixesKeys(t *testing.T) {
	kp := &KernelPrefixes{m: new(ebpf.Map), m6: new(ebpf.Map)}
	if _, _, err := kp.lpmKey(netip.Prefix{}); !errors.Is(err, ErrBadPrefix) {
		t.Fatalf("lpmKey(invalid) = %v, want ErrBadPrefix", err)
	}
	k, m, err := kp.lpmKey(netip.MustParsePrefix("::ffff:198.18.1.7/120"))
	if err != nil {
		t.Fatal(err)
	}
	if m != kp.m || len(k) != 8 || binary.NativeEndian.Uint32(k[:4]) != 24 || k[4] != 198 || k[5] != 18 || k[6] != 1 || k[7] != 0 {
		t.Fatalf("lpmKey(4in6 /120) = %v, want /24 198.18.1.0 in the IPv4 map", k)
	}
	k, m, err = kp.lpmKey(netip.MustParsePrefix("2001:2:0:1::77/64"))
	if err != nil {
		t.Fatal(err)
	}
	want := append(binary.NativeEndian.AppendUint32(nil, 64), netip.MustParseAddr("2001:2:0:1::").AsSlice()...)
	if m != kp.m6 || string(k) != string(want) {
		t.Fatalf("lpmKey(2001:2:0:1::77/64) = %x, want %x in the IPv6 map", k, want)
	}
}

func TestTransitInstructionsReferences(t *testing.T) {
	insns := transitInstructions(xdpPass)
	if insns[0].Symbol() != transitProgName {
		t.Fatalf("first instruction symbol %q, want %q", insns[0].Symbol(), transitProgName)
	}
	refs := map[string]int{}
	for _, in := range insns {
		if r := in.Reference(); r != "" {
			refs[r]++
		}
	}
	if refs[kernelSymbol] != 1 || refs[kernel6Symbol] != 1 || refs[xsksSymbol] != 1 || refs[labelPass] == 0 || refs[labelRedirect] == 0 {
		t.Fatalf("references %v: want the three maps once each and jumps to pass and redirect", refs)
	}
}

func BenchmarkTransitProgramTestRun(b *testing.B) {
	requireRoot(b)
	kp, err := NewKernelPrefixes(64)
	if err != nil {
		b.Fatal(err)
	}
	defer kp.Close()
	xsks, err := ebpf.NewMap(xsksSpec(1))
	if err != nil {
		b.Fatal(err)
	}
	defer xsks.Close()
	spec, err := transitSpec(xsks, kp, missMarker)
	if err != nil {
		b.Fatal(err)
	}
	prog, err := ebpf.NewProgram(spec)
	if err != nil {
		b.Fatal(err)
	}
	defer prog.Close()
	kp.Set(netip.MustParsePrefix("198.18.1.1/32"), ToKernel)
	f := frame(0x0800, 0x45, 64, 0, gen, sink)
	b.ReportAllocs()
	// Repeat runs the program in the kernel; the reported duration is per program run.
	ret, d, err := prog.Benchmark(f, b.N, nil)
	if err != nil {
		b.Fatal(err)
	}
	if ret != missMarker {
		b.Fatalf("action %d", ret)
	}
	b.ReportMetric(float64(d.Nanoseconds()), "kernel-ns/run")
}
