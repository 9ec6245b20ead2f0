package proto

import (
	"encoding/binary"
)

// MAC is an IEEE 802 MAC-48 address, stored in transmission order.
type MAC [6]byte

// BroadcastMAC is ff:ff:ff:ff:ff:ff.
var BroadcastMAC = MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

const hexDigits = "0123456789abcdef"

// String returns the address as six lower-case colon-separated hex octets.
func (m MAC) String() string {
	var b [17]byte
	for i, o := range m {
		if i > 0 {
			b[i*3-1] = ':'
		}
		b[i*3] = hexDigits[o>>4]
		b[i*3+1] = hexDigits[o&0xf]
	}
	return string(b[:])
}

// IsBroadcast reports whether m is ff:ff:ff:ff:ff:ff.
func (m MAC) IsBroadcast() bool { return m == BroadcastMAC }

// IsMulticast reports whether the I/G bit (least significant bit of the first
// octet) is set; broadcast is a multicast address too.
func (m MAC) IsMulticast() bool { return m[0]&1 != 0 }

// IsZero reports whether m is 00:00:00:00:00:00.
func (m MAC) IsZero() bool { return m == MAC{} }

// macError says what a MAC string should look like.
type macError string

func (e macError) Error() string {
	return "parse MAC " + string(e) + ": want six hex octets separated by ':' or '-', like 02:00:00:00:00:01"
}

// ParseMAC parses six hex octets separated by ':' or '-' (for flags and
// configuration, not for the packet path).
func ParseMAC(s string) (MAC, error) {
	var m MAC
	if len(s) != 17 {
		return m, macError(s)
	}
	for i := range m {
		hi, ok1 := unhex(s[i*3])
		lo, ok2 := unhex(s[i*3+1])
		if !ok1 || !ok2 {
			return MAC{}, macError(s)
		}
		if i < 5 && s[i*3+2] != ':' && s[i*3+2] != '-' {
			return MAC{}, macError(s)
		}
		m[i] = hi<<4 | lo
	}
	return m, nil
}

func unhex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// EtherType is the IEEE 802.3 EtherType / TPID field.
type EtherType uint16

// EtherTypes xdpnet looks at.
const (
	EtherTypeIPv4 EtherType = 0x0800
	EtherTypeARP  EtherType = 0x0806
	EtherTypeVLAN EtherType = 0x8100 // IEEE 802.1Q customer tag (C-tag)
	EtherTypeIPv6 EtherType = 0x86dd
	EtherTypeQinQ EtherType = 0x88a8 // IEEE 802.1ad service tag (S-tag)
)

// String returns the protocol name, or the number in hex.
func (t EtherType) String() string {
	switch t {
	case EtherTypeIPv4:
		return "IPv4"
	case EtherTypeARP:
		return "ARP"
	case EtherTypeVLAN:
		return "802.1Q"
	case EtherTypeIPv6:
		return "IPv6"
	case EtherTypeQinQ:
		return "802.1ad"
	}
	b := [6]byte{'0', 'x'}
	for i := 0; i < 4; i++ {
		b[2+i] = hexDigits[t>>(12-4*i)&0xf]
	}
	return string(b[:])
}

// Ethernet II frame header (IEEE 802.3, without preamble and FCS):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Destination MAC address                    |
//	+                               +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                               |                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//	|                      Source MAC address                       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           EtherType           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	ethDst       = 0
	ethSrc       = 6
	ethEtherType = 12

	// EthernetHeaderLen is the length of an untagged Ethernet II header.
	EthernetHeaderLen = 14
	// VLANTagLen is the length of one 802.1Q/802.1ad tag (TPID + TCI).
	VLANTagLen = 4
)

// Ethernet is a view of an Ethernet II frame starting at the destination
// address. Make it with ParseEthernet.
type Ethernet []byte

// ParseEthernet returns b as an Ethernet view if it holds at least a full
// header. After it returns OK no method of the view panics.
// It does not look at VLAN tags; use ParseL2 for that.
func ParseEthernet(b []byte) (Ethernet, Error) {
	if len(b) < EthernetHeaderLen {
		return nil, ErrTruncated
	}
	return Ethernet(b), OK
}

// Dst returns the destination address.
func (e Ethernet) Dst() MAC { return MAC(e[ethDst : ethDst+6]) }

// Src returns the source address.
func (e Ethernet) Src() MAC { return MAC(e[ethSrc : ethSrc+6]) }

// SetDst sets the destination address.
func (e Ethernet) SetDst(m MAC) { copy(e[ethDst:ethDst+6], m[:]) }

// SetSrc sets the source address.
func (e Ethernet) SetSrc(m MAC) { copy(e[ethSrc:ethSrc+6], m[:]) }

// EtherType returns the type field right after the addresses; for a tagged
// frame that is the TPID (EtherTypeVLAN or EtherTypeQinQ).
func (e Ethernet) EtherType() EtherType {
	return EtherType(binary.BigEndian.Uint16(e[ethEtherType:]))
}

// SetEtherType sets the type field.
func (e Ethernet) SetEtherType(t EtherType) {
	binary.BigEndian.PutUint16(e[ethEtherType:], uint16(t))
}

// Payload returns the bytes after the 14-byte header (for a tagged frame,
// starting with the tag's TCI). It may include Ethernet padding; the IP
// parsers cut it off using the IP length fields.
func (e Ethernet) Payload() []byte { return e[EthernetHeaderLen:] }

// EthernetFields describes an untagged Ethernet II header to encode.
type EthernetFields struct {
	Dst, Src  MAC
	EtherType EtherType
}

// Encode writes the 14-byte header to b and returns 14, or 0 if b is shorter.
func (f EthernetFields) Encode(b []byte) int {
	if len(b) < EthernetHeaderLen {
		return 0
	}
	copy(b[ethDst:], f.Dst[:])
	copy(b[ethSrc:], f.Src[:])
	binary.BigEndian.PutUint16(b[ethEtherType:], uint16(f.EtherType))
	return EthernetHeaderLen
}

// Fields returns the header as an EthernetFields value.
func (e Ethernet) Fields() EthernetFields {
	return EthernetFields{Dst: e.Dst(), Src: e.Src(), EtherType: e.EtherType()}
}

// L2 is the result of ParseL2: the frame's Ethernet header with up to two
// VLAN tags (802.1Q, or 802.1ad QinQ) stripped off.
type L2 struct {
	// EtherType is the type of the L3 payload after any tags.
	EtherType EtherType
	// VLANs holds the 12-bit VLAN IDs, outermost first; only the first NVLAN
	// entries are meaningful.
	VLANs [2]uint16
	// TCIs holds the full tag control information (PCP, DEI, VID), outermost first.
	TCIs [2]uint16
	// NVLAN is the number of tags, 0 to 2.
	NVLAN int
	// L3Offset is the offset of the L3 header from the start of the frame:
	// 14 + 4*NVLAN.
	L3Offset int
}

// ParseL2 reads the Ethernet header and up to two VLAN tags. A tag is
// recognised by TPID 0x8100 or 0x88a8 in either position; a third tag is
// rejected with ErrVLANDepth, since xdpnet does not forward deeper stacks.
// On OK, b[L3Offset:] is the L3 packet (possibly with Ethernet padding).
//
// Returning the 32-byte L2 by value costs a few nanoseconds (Go passes
// structs holding arrays in memory); per-packet code that keeps an L2 in its
// own state can call L2.Parse instead, which fills it in place.
func ParseL2(b []byte) (L2, Error) {
	var l L2
	e := l.Parse(b)
	return l, e
}

// Parse is ParseL2 filling l in place. On error l is zeroed.
func (l *L2) Parse(b []byte) Error {
	if len(b) < EthernetHeaderLen {
		*l = L2{}
		return ErrTruncated
	}
	t := EtherType(binary.BigEndian.Uint16(b[ethEtherType:]))
	l.NVLAN = 0
	if t != EtherTypeVLAN && t != EtherTypeQinQ {
		// Untagged frames are the common case.
		l.EtherType, l.L3Offset = t, EthernetHeaderLen
		l.VLANs, l.TCIs = [2]uint16{}, [2]uint16{}
		return OK
	}
	return l.parseTagged(b)
}

func (l *L2) parseTagged(b []byte) Error {
	*l = L2{}
	off := ethEtherType
	for {
		t := EtherType(binary.BigEndian.Uint16(b[off:]))
		if t != EtherTypeVLAN && t != EtherTypeQinQ {
			l.EtherType = t
			l.L3Offset = off + 2
			return OK
		}
		if l.NVLAN == 2 {
			*l = L2{}
			return ErrVLANDepth
		}
		if len(b) < off+2+VLANTagLen {
			*l = L2{}
			return ErrTruncated
		}
		tci := binary.BigEndian.Uint16(b[off+2:])
		l.TCIs[l.NVLAN] = tci
		l.VLANs[l.NVLAN] = tci & 0x0fff
		l.NVLAN++
		off += VLANTagLen
	}
}

// EncodeVLANTag writes a 4-byte VLAN tag (TPID then TCI) at b[0:4] and returns
// 4, or 0 if b is shorter. To tag a frame, move everything from offset 12 on
// by 4 bytes and call this at offset 12.
func EncodeVLANTag(b []byte, tpid EtherType, tci uint16) int {
	if len(b) < VLANTagLen {
		return 0
	}
	binary.BigEndian.PutUint16(b[0:], uint16(tpid))
	binary.BigEndian.PutUint16(b[2:], tci)
	return VLANTagLen
}
