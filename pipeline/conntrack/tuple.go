package conntrack

import (
	"fmt"
	"net/netip"

	"github.com/xdpnet/xdpnet/proto"
)

// Tuple is one direction of a connection as its packets carry it: addresses as big-endian numbers (the
// form proto.IPv4.Src32 returns), ports, protocol. For ICMP echo (which has no ports) the identifier
// stands in: an echo request is (src, dst, id, 0) and its reply (dst, src, 0, id), so that the reply's
// tuple is the request's inverted, as for TCP and UDP.
type Tuple struct {
	Src, Dst         uint32
	SrcPort, DstPort uint16
	Proto            uint8
}

// Invert is the tuple of the packets that answer t.
func (t Tuple) Invert() Tuple {
	return Tuple{Src: t.Dst, Dst: t.Src, SrcPort: t.DstPort, DstPort: t.SrcPort, Proto: t.Proto}
}

// SrcAddr and DstAddr are the addresses as netip.Addr.
func (t Tuple) SrcAddr() netip.Addr { return addr(t.Src) }
func (t Tuple) DstAddr() netip.Addr { return addr(t.Dst) }

func addr(a uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
}

// Addr32 is a as the big-endian number a Tuple holds; 0 for an address that is not IPv4.
func Addr32(a netip.Addr) uint32 {
	a = a.Unmap()
	if !a.Is4() {
		return 0
	}
	b := a.As4()
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

func (t Tuple) String() string {
	p := "proto" + fmt.Sprint(t.Proto)
	switch t.Proto {
	case proto.ProtoTCP:
		p = "tcp"
	case proto.ProtoUDP:
		p = "udp"
	case proto.ProtoICMP:
		p = "icmp"
	}
	return fmt.Sprintf("%s %s:%d -> %s:%d", p, t.SrcAddr(), t.SrcPort, t.DstAddr(), t.DstPort)
}

// Dir is the direction of a packet within its connection.
type Dir uint8

const (
	Original Dir = iota // the direction of the packet that created the connection
	Reply               // the answers
)

func (d Dir) String() string {
	if d == Original {
		return "original"
	}
	return "reply"
}

// hash is a keyed mix of the tuple (murmur3's finaliser over two words, with a random seed per table), so
// that a remote host cannot choose tuples that all land in one stripe or one probe run.
func (tb *Table) hash(t Tuple) uint64 {
	a := uint64(t.Src)<<32 | uint64(t.Dst)
	b := uint64(t.SrcPort)<<24 | uint64(t.DstPort)<<8 | uint64(t.Proto)
	return mix(mix(a^tb.seed[0]) ^ b ^ tb.seed[1])
}

func mix(x uint64) uint64 {
	x ^= x >> 33
	x *= 0xff51afd7ed558ccd
	x ^= x >> 33
	x *= 0xc4ceb9fe1a85ec53
	x ^= x >> 33
	return x
}
