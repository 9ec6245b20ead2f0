package proto_test

import (
	"fmt"
	"net/netip"

	"github.com/xdpnet/xdpnet/proto"
)

// Parse a frame layer by layer without copying, as a router's fast path does.
func Example_parse() {
	// An Ethernet + IPv4 + UDP frame, built here with the encoders.
	src, dst := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.19.0.2")
	frame := make([]byte, 14+20+8+5)
	n := proto.EthernetFields{Dst: proto.BroadcastMAC, Src: proto.MAC{2, 0, 0, 0, 0, 1}, EtherType: proto.EtherTypeIPv4}.Encode(frame)
	n += proto.IPv4Fields{TTL: 64, Protocol: proto.ProtoUDP, Src: src, Dst: dst, PayloadLen: 8 + 5}.Encode(frame[n:])
	copy(frame[n+8:], "hello")
	proto.UDPFields{SrcPort: 5000, DstPort: 53, PayloadLen: 5}.EncodeChecksum(frame[n:], src, dst)

	l2, e := proto.ParseL2(frame)
	if e != proto.OK {
		fmt.Println("drop:", e)
		return
	}
	ip, e := proto.ParseIPv4(frame[l2.L3Offset:])
	if e != proto.OK || !ip.ChecksumValid() {
		fmt.Println("drop:", e)
		return
	}
	udp, e := proto.ParseUDP(ip.Payload())
	if e != proto.OK {
		fmt.Println("drop:", e)
		return
	}
	fmt.Println(l2.EtherType, ip.Src(), "->", ip.Dst(), "ttl", ip.TTL())
	fmt.Println("udp", udp.SrcPort(), "->", udp.DstPort(), string(udp.Payload()), "checksum ok:", udp.ChecksumValid(ip.Src(), ip.Dst()))
	// Output:
	// IPv4 198.18.0.1 -> 198.19.0.2 ttl 64
	// udp 5000 -> 53 hello checksum ok: true
}

// Forward a packet: decrement the TTL in place with an RFC 1624 incremental
// checksum update instead of recomputing the header checksum.
func ExampleIPv4_DecrementTTL() {
	b := make([]byte, 20)
	proto.IPv4Fields{TTL: 2, Protocol: proto.ProtoICMP, Src: netip.MustParseAddr("198.18.0.1"),
		Dst: netip.MustParseAddr("198.19.0.1")}.Encode(b)
	ip, _ := proto.ParseIPv4(b)
	fmt.Printf("ttl %d checksum %#04x valid %v\n", ip.TTL(), ip.Checksum(), ip.ChecksumValid())
	if ip.TTL() <= 1 {
		fmt.Println("send ICMP time exceeded") // RFC 1812 §5.3.1
		return
	}
	ip.DecrementTTL()
	fmt.Printf("ttl %d checksum %#04x valid %v\n", ip.TTL(), ip.Checksum(), ip.ChecksumValid())
	// Output:
	// ttl 2 checksum 0x2cc2 valid true
	// ttl 1 checksum 0x2dc2 valid true
}

// Read the options of a TCP SYN into a value struct.
func ExampleParseTCPOptions() {
	// MSS 1460, SACK permitted, timestamps, NOP, window scale 7: a Linux SYN.
	opts := []byte{2, 4, 0x05, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7}
	o, e := proto.ParseTCPOptions(opts)
	fmt.Println(e.String(), o.MSS, o.SACKPermitted, o.TSval, o.WindowScale)
	_, e = proto.ParseTCPOptions([]byte{2, 3, 0})
	fmt.Println(e.String())
	// Output:
	// ok 1460 true 1 7
	// bad option length
}

// Checksums: Sum accumulates, Fold folds without complementing, and a
// received packet verifies when the fold of everything it covers is 0xffff.
func ExampleChecksum() {
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7} // RFC 1071 §3
	fmt.Printf("sum %#04x checksum %#04x\n", proto.Fold(proto.Sum(b, 0)), proto.Checksum(b))
	c := proto.Checksum(b)
	withChecksum := append(b, byte(c>>8), byte(c))
	fmt.Printf("verify %#04x\n", proto.Fold(proto.Sum(withChecksum, 0)))
	// Output:
	// sum 0xddf2 checksum 0x220d
	// verify 0xffff
}
