package proto

import (
	"encoding/binary"
	"net/netip"
)

// IPv6 header (RFC 8200 §3):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version| Traffic Class |           Flow Label                  |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Payload Length        |  Next Header  |   Hop Limit   |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+                         Source Address (16)                   +
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                                                               |
//	+                      Destination Address (16)                 +
//	|                                                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	ipv6VersionTCFlow = 0
	ipv6PayloadLength = 4
	ipv6NextHeader    = 6
	ipv6HopLimit      = 7
	ipv6Src           = 8
	ipv6Dst           = 24

	// IPv6HeaderLen is the length of the fixed IPv6 header.
	IPv6HeaderLen = 40
)

// IPv6 is a view of an IPv6 packet, fixed header first. Make it with ParseIPv6.
type IPv6 []byte

// ParseIPv6 checks version 6, the 40-byte header, and 40 + Payload Length <=
// len(b), and returns the view cut to 40 + Payload Length (Ethernet padding
// excluded). After it returns OK no method of the view panics.
// Jumbograms (RFC 2675, Payload Length 0 with a Jumbo option) are not
// supported: Payload Length 0 means an empty payload.
func ParseIPv6(b []byte) (IPv6, Error) {
	if len(b) < IPv6HeaderLen {
		return nil, ErrTruncated
	}
	if b[ipv6VersionTCFlow]>>4 != 6 {
		return nil, ErrVersion
	}
	n := IPv6HeaderLen + int(binary.BigEndian.Uint16(b[ipv6PayloadLength:]))
	if n > len(b) {
		return nil, ErrTruncated
	}
	return IPv6(b[:n]), OK
}

// Version returns the version field (6 for a parsed view).
func (ip IPv6) Version() uint8 { return ip[0] >> 4 }

// TrafficClass returns the 8-bit Traffic Class (DSCP and ECN).
func (ip IPv6) TrafficClass() uint8 {
	return uint8(binary.BigEndian.Uint16(ip[0:]) >> 4)
}

// FlowLabel returns the 20-bit Flow Label.
func (ip IPv6) FlowLabel() uint32 { return binary.BigEndian.Uint32(ip[0:]) & 0xfffff }

// PayloadLength returns the Payload Length field: bytes after the fixed
// header, extension headers included.
func (ip IPv6) PayloadLength() uint16 { return binary.BigEndian.Uint16(ip[ipv6PayloadLength:]) }

// NextHeader returns the type of the header after the fixed header.
func (ip IPv6) NextHeader() uint8 { return ip[ipv6NextHeader] }

// HopLimit returns the Hop Limit.
func (ip IPv6) HopLimit() uint8 { return ip[ipv6HopLimit] }

// Src returns the source address.
func (ip IPv6) Src() netip.Addr { return netip.AddrFrom16(ip.Src16()) }

// Dst returns the destination address.
func (ip IPv6) Dst() netip.Addr { return netip.AddrFrom16(ip.Dst16()) }

// Src16 returns the source address as 16 bytes.
func (ip IPv6) Src16() [16]byte { return [16]byte(ip[ipv6Src : ipv6Src+16]) }

// Dst16 returns the destination address as 16 bytes.
func (ip IPv6) Dst16() [16]byte { return [16]byte(ip[ipv6Dst : ipv6Dst+16]) }

// Payload returns the bytes after the fixed header (extension headers first).
func (ip IPv6) Payload() []byte { return ip[IPv6HeaderLen:] }

// SetTrafficClass sets the Traffic Class. IPv6 has no header checksum.
func (ip IPv6) SetTrafficClass(tc uint8) {
	v := binary.BigEndian.Uint32(ip[0:])&^(0xff<<20) | uint32(tc)<<20
	binary.BigEndian.PutUint32(ip[0:], v)
}

// SetFlowLabel sets the 20-bit Flow Label (higher bits of fl are ignored).
func (ip IPv6) SetFlowLabel(fl uint32) {
	v := binary.BigEndian.Uint32(ip[0:])&^0xfffff | fl&0xfffff
	binary.BigEndian.PutUint32(ip[0:], v)
}

// SetPayloadLength sets the Payload Length field.
func (ip IPv6) SetPayloadLength(n uint16) { binary.BigEndian.PutUint16(ip[ipv6PayloadLength:], n) }

// SetNextHeader sets the Next Header field.
func (ip IPv6) SetNextHeader(p uint8) { ip[ipv6NextHeader] = p }

// SetHopLimit sets the Hop Limit.
func (ip IPv6) SetHopLimit(h uint8) { ip[ipv6HopLimit] = h }

// DecrementHopLimit decrements the Hop Limit and returns the new value; 0 is
// left alone (the caller must already have dropped the packet).
func (ip IPv6) DecrementHopLimit() uint8 {
	if ip[ipv6HopLimit] == 0 {
		return 0
	}
	ip[ipv6HopLimit]--
	return ip[ipv6HopLimit]
}

// SetSrc sets the source address. It returns false, changing nothing, if a
// is not an IPv6 address (an IPv4-mapped address is accepted as is).
func (ip IPv6) SetSrc(a netip.Addr) bool { return ip.setAddr(ipv6Src, a) }

// SetDst sets the destination address; see SetSrc.
func (ip IPv6) SetDst(a netip.Addr) bool { return ip.setAddr(ipv6Dst, a) }

func (ip IPv6) setAddr(off int, a netip.Addr) bool {
	if !a.Is6() {
		return false
	}
	b := a.As16()
	copy(ip[off:off+16], b[:])
	return true
}

// IPv6Fields describes a fixed IPv6 header to encode.
type IPv6Fields struct {
	TrafficClass uint8
	FlowLabel    uint32 // 20 bits
	NextHeader   uint8
	HopLimit     uint8
	Src, Dst     netip.Addr
	PayloadLen   int // bytes after the fixed header
}

// Encode writes the 40-byte header to b and returns 40, or 0 if b is
// shorter, an address is not IPv6, or PayloadLen does not fit in 16 bits.
func (f IPv6Fields) Encode(b []byte) int {
	if len(b) < IPv6HeaderLen || !f.Src.Is6() || !f.Dst.Is6() || f.PayloadLen < 0 || f.PayloadLen > 0xffff {
		return 0
	}
	binary.BigEndian.PutUint32(b[0:], 6<<28|uint32(f.TrafficClass)<<20|f.FlowLabel&0xfffff)
	binary.BigEndian.PutUint16(b[ipv6PayloadLength:], uint16(f.PayloadLen))
	b[ipv6NextHeader] = f.NextHeader
	b[ipv6HopLimit] = f.HopLimit
	s, d := f.Src.As16(), f.Dst.As16()
	copy(b[ipv6Src:], s[:])
	copy(b[ipv6Dst:], d[:])
	return IPv6HeaderLen
}

// Fields returns the fixed header as an IPv6Fields value.
func (ip IPv6) Fields() IPv6Fields {
	return IPv6Fields{TrafficClass: ip.TrafficClass(), FlowLabel: ip.FlowLabel(), NextHeader: ip.NextHeader(),
		HopLimit: ip.HopLimit(), Src: ip.Src(), Dst: ip.Dst(), PayloadLen: len(ip) - IPv6HeaderLen}
}

// Extension headers walked by UpperLayer (RFC 8200 §4). Hop-by-Hop,
// Routing and Destination Options share this prefix; Hdr Ext Len is in
// 8-octet units not counting the first 8 octets:
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Next Header  |  Hdr Ext Len  |                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+                               +
//	.                  type-specific data                           .
//
// The Fragment header (RFC 8200 §4.5) is always 8 octets:
//
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Next Header  |   Reserved    |      Fragment Offset    |Res|M|
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                         Identification                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	ipv6ExtNext    = 0
	ipv6ExtLen     = 1
	ipv6FragOffM   = 2
	ipv6FragID     = 4
	ipv6FragHdrLen = 8
	// ipv6MaxExtHeaders bounds the walk; RFC 8200 §4.1 orders at most one
	// of each kind (Destination Options twice), so more is an attack.
	ipv6MaxExtHeaders = 8
)

// IPv6UpperLayer is the result of IPv6.UpperLayer.
type IPv6UpperLayer struct {
	// Protocol is the Next Header value of the last extension header:
	// ProtoTCP, ProtoUDP, ProtoICMPv6, ProtoIPv6NoNext, ProtoESP, ...
	Protocol uint8
	// Offset is where the upper-layer header starts, from the start of the
	// IPv6 header. ip[Offset:] is its data.
	Offset int
	// HasFragment reports a Fragment header; the fields below describe it.
	HasFragment bool
	// FragmentOffset is in bytes. When it is not 0 the data at Offset is
	// the middle of the upper-layer packet, not its header.
	FragmentOffset uint16
	MoreFragments  bool
	FragmentID     uint32
	// FragmentHeaderOffset is where the Fragment header starts.
	FragmentHeaderOffset int
	// HopByHop reports a Hop-by-Hop Options header (Router Alert lives there).
	HopByHop bool
}

// IsFragment reports whether the packet is a fragment of a larger one (an
// atomic fragment, offset 0 and M clear, is not; RFC 6946).
func (u IPv6UpperLayer) IsFragment() bool {
	return u.HasFragment && (u.FragmentOffset != 0 || u.MoreFragments)
}

// UpperLayer walks the extension headers Hop-by-Hop, Routing, Fragment and
// Destination Options and returns the upper-layer protocol and offset.
// It returns ErrExtensionHeader when a header runs past the packet, when
// Hop-by-Hop is not first (RFC 8200 §4.1: it MUST immediately follow the
// IPv6 header), or when the chain is longer than any valid one. Any other
// Next Header value ends the walk and is returned as Protocol, including
// ones xdpnet does not implement, which the caller answers as it sees fit.
// The walk stops after a Fragment header with a non-zero offset, since the
// rest belongs to a packet being reassembled.
func (ip IPv6) UpperLayer() (IPv6UpperLayer, Error) {
	var u IPv6UpperLayer
	next := ip[ipv6NextHeader]
	off := IPv6HeaderLen
	for i := 0; ; i++ {
		switch next {
		case ProtoIPv6HopByHop, ProtoIPv6Routing, ProtoIPv6DestOpts, ProtoIPv6Fragment:
		default:
			u.Protocol, u.Offset = next, off
			return u, OK
		}
		if i == ipv6MaxExtHeaders || len(ip)-off < 8 {
			return IPv6UpperLayer{}, ErrExtensionHeader
		}
		h := ip[off:]
		switch next {
		case ProtoIPv6HopByHop:
			if i != 0 {
				return IPv6UpperLayer{}, ErrExtensionHeader
			}
			u.HopByHop = true
		case ProtoIPv6Fragment:
			if u.HasFragment {
				return IPv6UpperLayer{}, ErrExtensionHeader
			}
			fo := binary.BigEndian.Uint16(h[ipv6FragOffM:])
			u.HasFragment = true
			u.FragmentHeaderOffset = off
			u.FragmentOffset = fo &^ 7
			u.MoreFragments = fo&1 != 0
			u.FragmentID = binary.BigEndian.Uint32(h[ipv6FragID:])
			next = h[ipv6ExtNext]
			off += ipv6FragHdrLen
			if u.FragmentOffset != 0 {
				u.Protocol, u.Offset = next, off
				return u, OK
			}
			continue
		}
		n := (int(h[ipv6ExtLen]) + 1) * 8
		if n > len(h) {
			return IPv6UpperLayer{}, ErrExtensionHeader
		}
		next = h[ipv6ExtNext]
		off += n
	}
}

// IPv6ExtHeader is a view of one Hop-by-Hop, Routing or Destination Options header (RFC 8200 §4.3-4.4,
// §4.6), whose length is in its second octet. Make it with ParseIPv6ExtHeader.
type IPv6ExtHeader []byte

// Routing header fields after Next Header and Hdr Ext Len (RFC 8200 §4.4).
const (
	ipv6RoutingType  = 2
	ipv6SegmentsLeft = 3
	ipv6ExtOptions   = 2 // options start after Next Header and Hdr Ext Len
)

// ParseIPv6ExtHeader checks that b holds a whole extension header of the Hop-by-Hop/Routing/Destination
// Options shape and returns the view cut to its length. After it returns OK no method of the view panics.
func ParseIPv6ExtHeader(b []byte) (IPv6ExtHeader, Error) {
	if len(b) < 8 {
		return nil, ErrExtensionHeader
	}
	n := (int(b[ipv6ExtLen]) + 1) * 8
	if n > len(b) {
		return nil, ErrExtensionHeader
	}
	return IPv6ExtHeader(b[:n]), OK
}

// NextHeader returns the type of the header that follows.
func (h IPv6ExtHeader) NextHeader() uint8 { return h[ipv6ExtNext] }

// RoutingType returns the Routing Type of a Routing header (0 is the deprecated RH0, RFC 5095).
func (h IPv6ExtHeader) RoutingType() uint8 { return h[ipv6RoutingType] }

// SegmentsLeft returns the Segments Left of a Routing header.
func (h IPv6ExtHeader) SegmentsLeft() uint8 { return h[ipv6SegmentsLeft] }

// RoutingTypeOffset is where the Routing Type lies in a Routing header (for a Parameter Problem pointer).
const RoutingTypeOffset = ipv6RoutingType

// Options returns the TLV-encoded options of a Hop-by-Hop or Destination Options header; OptionsOffset is
// where they start in the header.
func (h IPv6ExtHeader) Options() []byte { return h[ipv6ExtOptions:] }

// OptionsOffset is where the options of a Hop-by-Hop or Destination Options header start.
const OptionsOffset = ipv6ExtOptions

// IPv6 Hop-by-Hop and Destination options (RFC 8200 §4.2, RFC 2711, RFC 2675).
const (
	IPv6OptPad1        uint8 = 0
	IPv6OptPadN        uint8 = 1
	IPv6OptRouterAlert uint8 = 5
	IPv6OptJumbo       uint8 = 0xc2
)

// Actions an IPv6 node takes on an option type it does not recognise: the type's two high-order bits
// (RFC 8200 §4.2).
const (
	IPv6OptActionSkip           uint8 = 0 // skip over this option
	IPv6OptActionDiscard        uint8 = 1 // discard the packet
	IPv6OptActionDiscardICMP    uint8 = 2 // discard, send Parameter Problem code 2 even to multicast
	IPv6OptActionDiscardICMPUni uint8 = 3 // discard, send Parameter Problem code 2 unless to multicast
)

// IPv6OptionAction returns the action bits of an option type.
func IPv6OptionAction(typ uint8) uint8 { return typ >> 6 }

// NextIPv6Option splits the first option off b (the options of a Hop-by-Hop or Destination Options
// header): its type, the whole option (type, length, data; one octet for Pad1) and the rest. It returns
// ErrOptionLength when the option runs past b.
func NextIPv6Option(b []byte) (typ uint8, opt, rest []byte, err Error) {
	if len(b) == 0 {
		return 0, nil, nil, ErrOptionLength
	}
	if b[0] == IPv6OptPad1 {
		return IPv6OptPad1, b[:1], b[1:], OK
	}
	if len(b) < 2 || 2+int(b[1]) > len(b) {
		return 0, nil, nil, ErrOptionLength
	}
	n := 2 + int(b[1])
	return b[0], b[:n], b[n:], OK
}

// IPv6Fragment is a view of the 8-octet Fragment header (RFC 8200 §4.5). Make it with ParseIPv6Fragment.
type IPv6Fragment []byte

// IPv6FragmentHeaderLen is the length of the Fragment header.
const IPv6FragmentHeaderLen = ipv6FragHdrLen

// ParseIPv6Fragment checks that b holds a Fragment header.
func ParseIPv6Fragment(b []byte) (IPv6Fragment, Error) {
	if len(b) < ipv6FragHdrLen {
		return nil, ErrExtensionHeader
	}
	return IPv6Fragment(b[:ipv6FragHdrLen]), OK
}

// NextHeader returns the type of the header that follows.
func (f IPv6Fragment) NextHeader() uint8 { return f[ipv6ExtNext] }

// FragmentOffset returns the offset of the fragment's data in bytes.
func (f IPv6Fragment) FragmentOffset() uint16 { return binary.BigEndian.Uint16(f[ipv6FragOffM:]) &^ 7 }

// MoreFragments returns the M flag.
func (f IPv6Fragment) MoreFragments() bool { return f[ipv6FragOffM+1]&1 != 0 }

// IsAtomic reports an atomic fragment (offset 0, M clear): a whole packet that carries a Fragment header,
// which RFC 6946 §4 says is processed as a non-fragmented packet.
func (f IPv6Fragment) IsAtomic() bool { return f.FragmentOffset() == 0 && !f.MoreFragments() }

// IPv6NextHeaderOffset is where the Next Header field lies in the fixed header (for a Parameter Problem
// pointer).
const IPv6NextHeaderOffset = ipv6NextHeader

// IPv6ExtNextHeaderOffset is where the Next Header field lies in an extension header.
const IPv6ExtNextHeaderOffset = ipv6ExtNext
