package proto

import (
	"encoding/binary"
	"net/netip"
)

// ARP packet for Ethernet and IPv4 (RFC 826), the only kind xdpnet handles:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|      Hardware Type (1)        |     Protocol Type (0x0800)    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  HLEN (6)     |  PLEN (4)     |          Operation            |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                  Sender Hardware Address (6)                  |
//	+                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                               |  Sender Protocol Address (4)  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                               |                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//	|                  Target Hardware Address (6)                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                  Target Protocol Address (4)                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	arpHType = 0
	arpPType = 2
	arpHLen  = 4
	arpPLen  = 5
	arpOp    = 6
	arpSHA   = 8
	arpSPA   = 14
	arpTHA   = 18
	arpTPA   = 24

	// ARPLen is the length of an Ethernet/IPv4 ARP packet.
	ARPLen = 28

	arpHTypeEthernet = 1
)

// ARP operations (RFC 826).
const (
	ARPRequest uint16 = 1
	ARPReply   uint16 = 2
)

// ARP is a view of an Ethernet/IPv4 ARP packet. Make it with ParseARP.
type ARP []byte

// ParseARP checks that b holds an ARP packet for Ethernet (hardware type 1,
// length 6) and IPv4 (protocol type 0x0800, length 4) and returns it cut to
// ARPLen bytes (dropping Ethernet padding). After it returns OK no method of
// the view panics. The operation is not checked: callers ignore ops they do
// not know, as RFC 826 intends.
func ParseARP(b []byte) (ARP, Error) {
	if len(b) < ARPLen {
		return nil, ErrTruncated
	}
	if binary.BigEndian.Uint16(b[arpHType:]) != arpHTypeEthernet || b[arpHLen] != 6 ||
		binary.BigEndian.Uint16(b[arpPType:]) != uint16(EtherTypeIPv4) || b[arpPLen] != 4 {
		return nil, ErrHardwareType
	}
	return ARP(b[:ARPLen]), OK
}

// Op returns the operation (ARPRequest, ARPReply).
func (a ARP) Op() uint16 { return binary.BigEndian.Uint16(a[arpOp:]) }

// SenderMAC returns the sender hardware address.
func (a ARP) SenderMAC() MAC { return MAC(a[arpSHA : arpSHA+6]) }

// SenderIP returns the sender protocol address.
func (a ARP) SenderIP() netip.Addr { return netip.AddrFrom4([4]byte(a[arpSPA : arpSPA+4])) }

// TargetMAC returns the target hardware address (zero in a request).
func (a ARP) TargetMAC() MAC { return MAC(a[arpTHA : arpTHA+6]) }

// TargetIP returns the target protocol address.
func (a ARP) TargetIP() netip.Addr { return netip.AddrFrom4([4]byte(a[arpTPA : arpTPA+4])) }

// IsGratuitous reports whether sender and target protocol addresses are the
// same (an announcement, RFC 5227 §3).
func (a ARP) IsGratuitous() bool {
	return [4]byte(a[arpSPA:arpSPA+4]) == [4]byte(a[arpTPA:arpTPA+4])
}

// ARPFields describes an Ethernet/IPv4 ARP packet to encode.
type ARPFields struct {
	Op        uint16
	SenderMAC MAC
	SenderIP  netip.Addr
	TargetMAC MAC
	TargetIP  netip.Addr
}

// Encode writes the 28-byte packet to b and returns ARPLen, or 0 if b is
// shorter or an address is not IPv4.
func (f ARPFields) Encode(b []byte) int {
	if len(b) < ARPLen || !f.SenderIP.Unmap().Is4() || !f.TargetIP.Unmap().Is4() {
		return 0
	}
	binary.BigEndian.PutUint16(b[arpHType:], arpHTypeEthernet)
	binary.BigEndian.PutUint16(b[arpPType:], uint16(EtherTypeIPv4))
	b[arpHLen] = 6
	b[arpPLen] = 4
	binary.BigEndian.PutUint16(b[arpOp:], f.Op)
	copy(b[arpSHA:], f.SenderMAC[:])
	s := f.SenderIP.Unmap().As4()
	copy(b[arpSPA:], s[:])
	copy(b[arpTHA:], f.TargetMAC[:])
	t := f.TargetIP.Unmap().As4()
	copy(b[arpTPA:], t[:])
	return ARPLen
}

// Fields returns the packet as an ARPFields value.
func (a ARP) Fields() ARPFields {
	return ARPFields{Op: a.Op(), SenderMAC: a.SenderMAC(), SenderIP: a.SenderIP(),
		TargetMAC: a.TargetMAC(), TargetIP: a.TargetIP()}
}
