package proto

import (
	"net/netip"
	"testing"
)

// frameUDP4 builds an Ethernet+IPv4+UDP frame with our encoders.
func frameUDP4(tb testing.TB, payload int) []byte {
	b := make([]byte, 14+20+8+payload)
	n := EthernetFields{Dst: macB, Src: macA, EtherType: EtherTypeIPv4}.Encode(b)
	n += IPv4Fields{TTL: 64, Protocol: ProtoUDP, Src: v4A, Dst: v4B, PayloadLen: 8 + payload}.Encode(b[n:])
	if (UDPFields{SrcPort: 1, DstPort: 2, PayloadLen: payload}).EncodeChecksum(b[n:], v4A, v4B) == 0 {
		tb.Fatal("encode failed")
	}
	return b
}

// parseUDP4 is the per-packet fast path a router runs: L2, IPv4, UDP.
func parseUDP4(l *L2, b []byte) (uint16, bool) {
	if l.Parse(b) != OK || l.EtherType != EtherTypeIPv4 {
		return 0, false
	}
	ip, e := ParseIPv4(b[l.L3Offset:])
	if e != OK || ip.Protocol() != ProtoUDP {
		return 0, false
	}
	u, e := ParseUDP(ip.Payload())
	if e != OK {
		return 0, false
	}
	return u.DstPort(), true
}

// sinkInt keeps benchmark results alive so the compiler cannot drop the work.
var sinkInt int

func TestNoAllocs(t *testing.T) {
	frame := frameUDP4(t, 64)
	v6 := unhexFrame(t, linuxPing6Request)[14:]
	ping4 := unhexFrame(t, linuxPing4Request)
	tcpb := make([]byte, 80)
	tcpn := TCPFields{Flags: TCPFlagSYN, Options: TCPOptions{HasMSS: true, MSS: 1460, HasTimestamps: true, SACKPermitted: true,
		HasWindowScale: true}}.EncodeChecksum(tcpb, 0, v4A, v4B)
	tcp := tcpb[:tcpn]
	ns := make([]byte, 32)
	NDPNeighborFields{Type: ICMPv6NeighborSolicitation, Target: v6A, LinkAddr: macA, HasLinkAddr: true}.Encode(ns, v6A, v6B)
	var l2 L2
	arp := make([]byte, ARPLen)
	ARPFields{Op: ARPReply, SenderIP: v4A, TargetIP: v4B}.Encode(arp)
	src, dst := netip.MustParseAddr("198.18.0.9"), netip.MustParseAddr("2001:db8::9")
	for _, c := range []struct {
		name string
		f    func()
	}{
		{"L2.Parse+IPv4+UDP", func() { parseUDP4(&l2, frame) }},
		{"ParseL2", func() { _, _ = ParseL2(frame) }},
		{"FinishPartialChecksum", func() { FinishPartialChecksum(v4A, v4B, ProtoTCP, tcp) }},
		{"IPv4 accessors", func() {
			ip, _ := ParseIPv4(frame[14:])
			_, _, _ = ip.Src(), ip.Dst(), ip.ChecksumValid()
		}},
		{"IPv4 setters", func() {
			ip, _ := ParseIPv4(frame[14:])
			ip.DecrementTTL()
			ip.SetTTL(64)
			ip.SetSrc(src)
			ip.SetDst(v4B)
		}},
		{"IPv6 UpperLayer", func() {
			ip, _ := ParseIPv6(v6)
			ul, _ := ip.UpperLayer()
			m, _ := ParseICMPv6(ip[ul.Offset:])
			_ = m.ChecksumValid(ip.Src(), ip.Dst())
		}},
		{"ICMPv4 echo reply in place", func() {
			m, _ := ParseICMPv4(ping4[34:])
			m.SetType(m.Type() ^ ICMPv4EchoRequest)
		}},
		{"TCP options", func() {
			tc, _ := ParseTCP(tcp)
			_, _ = ParseTCPOptions(tc.Options())
			_ = tc.ChecksumValid(v4A, v4B)
		}},
		{"NDP options", func() {
			m, _ := ParseICMPv6(ns)
			_, _ = m.NDPOptions()
			_ = m.TargetAddress()
		}},
		{"ARP", func() {
			a, _ := ParseARP(arp)
			_, _ = a.SenderIP(), a.TargetMAC()
		}},
		{"Checksum", func() { _ = Checksum(frame) }},
		{"PseudoHeaderSum", func() { _ = PseudoHeaderSum(dst, dst, ProtoUDP, 100) }},
		{"UpdateChecksumAddr", func() { _ = UpdateChecksumAddr(1, v6A, dst) }},
		{"Encode UDP/IPv4", func() {
			n := IPv4Fields{TTL: 64, Protocol: ProtoUDP, Src: v4A, Dst: v4B, PayloadLen: 72}.Encode(frame[14:])
			UDPFields{SrcPort: 1, DstPort: 2, PayloadLen: 64}.EncodeChecksum(frame[14+n:], v4A, v4B)
		}},
		{"Error as error", func() {
			var err error = ErrChecksum
			_ = err
		}},
	} {
		if n := testing.AllocsPerRun(100, c.f); n != 0 {
			t.Errorf("%s: %v allocations per run, want 0", c.name, n)
		}
	}
}

// BenchmarkParseEthIPv4UDP is the router's per-packet parse: L2 (in place),
// IPv4, UDP, on a minimum-size frame.
//
// The benchmarks use b.N loops with results kept in sinks rather than
// b.Loop, which keeps calls in its body from being inlined and so would
// measure call overhead instead of the inlined accessors routers get.
func BenchmarkParseEthIPv4UDP(b *testing.B) {
	frame := frameUDP4(b, 18) // a 64-byte frame without FCS is 60 bytes
	b.ReportAllocs()
	var sink uint16
	var l L2
	for i := 0; i < b.N; i++ {
		p, _ := parseUDP4(&l, frame)
		sink += p
	}
	sinkInt += int(sink)
}

// BenchmarkParseL2ByValue shows what returning L2 by value costs compared
// with L2.Parse (Go returns structs holding arrays through memory).
func BenchmarkParseL2ByValue(b *testing.B) {
	frame := frameUDP4(b, 18)
	b.ReportAllocs()
	var sink int
	for i := 0; i < b.N; i++ {
		l, _ := ParseL2(frame)
		sink += l.L3Offset
	}
	sinkInt += int(sink)
}

func BenchmarkL2Parse(b *testing.B) {
	frame := frameUDP4(b, 18)
	b.ReportAllocs()
	var sink int
	var l L2
	for i := 0; i < b.N; i++ {
		l.Parse(frame)
		sink += l.L3Offset
	}
	sinkInt += int(sink)
}

func BenchmarkParseEthIPv4UDPChecksums(b *testing.B) {
	frame := frameUDP4(b, 18)
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		ip, _ := ParseIPv4(frame[14:])
		u, _ := ParseUDP(ip.Payload())
		if !ip.ChecksumValid() || !u.ChecksumValid(ip.Src(), ip.Dst()) {
			b.Fatal("checksum")
		}
	}
}

func BenchmarkChecksum1500(b *testing.B) {
	buf := make([]byte, 1500)
	for i := range buf {
		buf[i] = byte(i)
	}
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	var s uint16
	for i := 0; i < b.N; i++ {
		s += Checksum(buf)
	}
	sinkInt += int(s)
}

func BenchmarkChecksum1500Reference(b *testing.B) {
	buf := make([]byte, 1500)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	var s uint16
	for i := 0; i < b.N; i++ {
		s += checksumRef(buf)
	}
	sinkInt += int(s)
}

func BenchmarkChecksum64(b *testing.B) {
	buf := make([]byte, 64)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	var s uint16
	for i := 0; i < b.N; i++ {
		s += Checksum(buf)
	}
	sinkInt += int(s)
}

func BenchmarkUpdateChecksum16(b *testing.B) {
	b.ReportAllocs()
	c := uint16(0x1234)
	for i := 0; i < b.N; i++ {
		c = UpdateChecksum16(c, uint16(i), uint16(i>>1))
	}
	sinkInt += int(c)
}

func BenchmarkIPv4DecrementTTL(b *testing.B) {
	frame := frameUDP4(b, 18)
	ip, _ := ParseIPv4(frame[14:])
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if ip.DecrementTTL() == 0 {
			ip.SetTTL(255)
		}
	}
}

func BenchmarkIPv4SetSrc(b *testing.B) {
	frame := frameUDP4(b, 18)
	ip, _ := ParseIPv4(frame[14:])
	addrs := [2]netip.Addr{v4A, netip.MustParseAddr("198.18.7.7")}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		ip.SetSrc(addrs[i&1])
	}
}

func BenchmarkParseTCPOptions(b *testing.B) {
	opts := []byte{2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, e := ParseTCPOptions(opts); e != OK {
			b.Fatal(e)
		}
	}
}
