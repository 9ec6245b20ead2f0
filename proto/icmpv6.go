package proto

import (
	"encoding/binary"
	"net/netip"
)

// ICMPv6 message (RFC 4443 §2.1) and the Neighbor Discovery messages that
// share its header (RFC 4861 §4):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     Type      |     Code      |          Checksum             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           Identifier          |        Sequence Number        |  echo
//	|                              MTU                              |  packet too big
//	|                            Pointer                            |  parameter problem
//	|                            Reserved                           |  RS, NS, dest unreach, time exceeded
//	|R|S|O|                     Reserved                            |  NA
//	| Cur Hop Limit |M|O|  Reserved |       Router Lifetime         |  RA
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                      Reachable Time                           |  RA
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                      Retrans Timer                            |  RA
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|             Target Address (16) at offset 8 in NS, NA, Redirect
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|             Options (NDP) ...
//
// The checksum covers the IPv6 pseudo header (RFC 8200 §8.1) and the whole
// message.
const (
	icmp6Type       = 0
	icmp6Code       = 1
	icmp6Checksum   = 2
	icmp6ID         = 4
	icmp6Seq        = 6
	icmp6MTU        = 4
	icmp6Pointer    = 4
	icmp6NAFlags    = 4
	icmp6RAHopLimit = 4
	icmp6RAFlags    = 5
	icmp6RALifetime = 6
	icmp6RAReach    = 8
	icmp6RARetrans  = 12
	icmp6Target     = 8

	icmp6RSOptions       = 8
	icmp6RAOptions       = 16
	icmp6NSNAOptions     = 24
	icmp6RedirectOptions = 40

	// ICMPv6HeaderLen is the length of the ICMPv6 header including the
	// type-specific second word.
	ICMPv6HeaderLen = 8
)

// ICMPv6 types (RFC 4443, RFC 4861).
const (
	ICMPv6DestUnreachable       uint8 = 1
	ICMPv6PacketTooBig          uint8 = 2
	ICMPv6TimeExceeded          uint8 = 3
	ICMPv6ParamProblem          uint8 = 4
	ICMPv6EchoRequest           uint8 = 128
	ICMPv6EchoReply             uint8 = 129
	ICMPv6RouterSolicitation    uint8 = 133
	ICMPv6RouterAdvertisement   uint8 = 134
	ICMPv6NeighborSolicitation  uint8 = 135
	ICMPv6NeighborAdvertisement uint8 = 136
	ICMPv6Redirect              uint8 = 137
)

// ICMPv6 Destination Unreachable codes (RFC 4443 §3.1).
const (
	ICMPv6NoRoute         uint8 = 0
	ICMPv6AdminProhibited uint8 = 1
	ICMPv6BeyondScope     uint8 = 2
	ICMPv6AddrUnreachable uint8 = 3
	ICMPv6PortUnreachable uint8 = 4
)

// ICMPv6 Time Exceeded codes (RFC 4443 §3.3).
const (
	ICMPv6HopLimitExceeded   uint8 = 0
	ICMPv6ReassemblyExceeded uint8 = 1
)

// NA flags (RFC 4861 §4.4) as they sit in the first octet after the checksum.
const (
	NAFlagRouter    uint8 = 0x80
	NAFlagSolicited uint8 = 0x40
	NAFlagOverride  uint8 = 0x20
)

// ICMPv6 is a view of an ICMPv6 message. Make it with ParseICMPv6.
type ICMPv6 []byte

// icmp6MinLen returns the fixed length of a message type.
func icmp6MinLen(t uint8) int {
	switch t {
	case ICMPv6RouterAdvertisement:
		return icmp6RAOptions
	case ICMPv6NeighborSolicitation, ICMPv6NeighborAdvertisement:
		return icmp6NSNAOptions
	case ICMPv6Redirect:
		return icmp6RedirectOptions
	}
	return ICMPv6HeaderLen
}

// ParseICMPv6 checks that b holds the fixed part of its message type: 8
// bytes, 16 for a Router Advertisement, 24 for Neighbor Solicitation and
// Advertisement, 40 for Redirect (RFC 4861 §6.1.1, §7.1.1: shorter ND
// messages MUST be discarded). After it returns OK no method of the view
// panics; type-specific accessors return zero values for other types. The
// checksum is not verified (call ChecksumValid).
func ParseICMPv6(b []byte) (ICMPv6, Error) {
	if len(b) < ICMPv6HeaderLen || len(b) < icmp6MinLen(b[icmp6Type]) {
		return nil, ErrTruncated
	}
	return ICMPv6(b), OK
}

// Type returns the message type.
func (m ICMPv6) Type() uint8 { return m[icmp6Type] }

// Code returns the message code.
func (m ICMPv6) Code() uint8 { return m[icmp6Code] }

// Checksum returns the checksum field.
func (m ICMPv6) Checksum() uint16 { return binary.BigEndian.Uint16(m[icmp6Checksum:]) }

// SetChecksum sets the checksum field; the other setters keep it valid.
func (m ICMPv6) SetChecksum(c uint16) { binary.BigEndian.PutUint16(m[icmp6Checksum:], c) }

// ChecksumValid reports whether the checksum verifies for a message sent
// from src to dst (RFC 4443 §2.3).
func (m ICMPv6) ChecksumValid(src, dst netip.Addr) bool {
	return Fold(Sum(m, PseudoHeaderSum(src, dst, ProtoICMPv6, len(m)))) == 0xffff
}

// ComputeChecksum returns the checksum the message should carry when sent
// from src to dst, ignoring the value currently in the field.
func (m ICMPv6) ComputeChecksum(src, dst netip.Addr) uint16 {
	s := PseudoHeaderSum(src, dst, ProtoICMPv6, len(m))
	return ^Fold(Sum(m[icmp6Checksum+2:], Sum(m[:icmp6Checksum], s)))
}

// SetType sets the type and updates the checksum (RFC 1624).
func (m ICMPv6) SetType(t uint8) {
	old := binary.BigEndian.Uint16(m[icmp6Type:])
	m[icmp6Type] = t
	m.SetChecksum(UpdateChecksum16(m.Checksum(), old, binary.BigEndian.Uint16(m[icmp6Type:])))
}

// IsError reports whether the message is an error message (types below 128,
// RFC 4443 §2.1), which must never be answered with an error (§2.4 (e)).
func (m ICMPv6) IsError() bool { return m[icmp6Type] < 128 }

// ID returns the echo identifier.
func (m ICMPv6) ID() uint16 { return binary.BigEndian.Uint16(m[icmp6ID:]) }

// Seq returns the echo sequence number.
func (m ICMPv6) Seq() uint16 { return binary.BigEndian.Uint16(m[icmp6Seq:]) }

// MTU returns the MTU of a Packet Too Big message.
func (m ICMPv6) MTU() uint32 { return binary.BigEndian.Uint32(m[icmp6MTU:]) }

// Pointer returns the octet pointer of a Parameter Problem message.
func (m ICMPv6) Pointer() uint32 { return binary.BigEndian.Uint32(m[icmp6Pointer:]) }

// Payload returns the data after the 8-byte header: echo data, the
// invoking packet of an error, or the rest of an ND message.
func (m ICMPv6) Payload() []byte { return m[ICMPv6HeaderLen:] }

// TargetAddress returns the target of a Neighbor Solicitation,
// Neighbor Advertisement or Redirect, and the zero Addr for other types.
func (m ICMPv6) TargetAddress() netip.Addr {
	switch m[icmp6Type] {
	case ICMPv6NeighborSolicitation, ICMPv6NeighborAdvertisement, ICMPv6Redirect:
		if len(m) >= icmp6Target+16 {
			return netip.AddrFrom16([16]byte(m[icmp6Target : icmp6Target+16]))
		}
	}
	return netip.Addr{}
}

// NAFlags returns the R, S and O flags of a Neighbor Advertisement
// (NAFlagRouter, NAFlagSolicited, NAFlagOverride), 0 for other types.
func (m ICMPv6) NAFlags() uint8 {
	if m[icmp6Type] != ICMPv6NeighborAdvertisement {
		return 0
	}
	return m[icmp6NAFlags] & 0xe0
}

// RouterAdvertisement returns the fixed fields of a Router Advertisement
// (RFC 4861 §4.2), or ErrType for other messages.
func (m ICMPv6) RouterAdvertisement() (RAFields, Error) {
	if m[icmp6Type] != ICMPv6RouterAdvertisement || len(m) < icmp6RAOptions {
		return RAFields{}, ErrType
	}
	return RAFields{
		CurHopLimit:    m[icmp6RAHopLimit],
		Managed:        m[icmp6RAFlags]&0x80 != 0,
		Other:          m[icmp6RAFlags]&0x40 != 0,
		RouterLifetime: binary.BigEndian.Uint16(m[icmp6RALifetime:]),
		ReachableTime:  binary.BigEndian.Uint32(m[icmp6RAReach:]),
		RetransTimer:   binary.BigEndian.Uint32(m[icmp6RARetrans:]),
	}, OK
}

// RAFields holds the fixed fields of a Router Advertisement.
type RAFields struct {
	CurHopLimit    uint8
	Managed, Other bool
	RouterLifetime uint16 // seconds
	ReachableTime  uint32 // milliseconds
	RetransTimer   uint32 // milliseconds
}

// NDPOptionBytes returns the option area of an RS, RA, NS, NA or Redirect,
// and nil for other types.
func (m ICMPv6) NDPOptionBytes() []byte {
	var off int
	switch m[icmp6Type] {
	case ICMPv6RouterSolicitation:
		off = icmp6RSOptions
	case ICMPv6RouterAdvertisement:
		off = icmp6RAOptions
	case ICMPv6NeighborSolicitation, ICMPv6NeighborAdvertisement:
		off = icmp6NSNAOptions
	case ICMPv6Redirect:
		off = icmp6RedirectOptions
	default:
		return nil
	}
	if len(m) < off {
		return nil
	}
	return m[off:]
}

// NDPOptions parses the options of an ND message; see ParseNDPOptions.
func (m ICMPv6) NDPOptions() (NDPOptions, Error) {
	if m.NDPOptionBytes() == nil {
		return NDPOptions{}, ErrType
	}
	return ParseNDPOptions(m.NDPOptionBytes())
}

// NDP option types (RFC 4861 §4.6).
const (
	NDPOptSourceLinkAddr uint8 = 1
	NDPOptTargetLinkAddr uint8 = 2
	NDPOptPrefixInfo     uint8 = 3
	NDPOptRedirected     uint8 = 4
	NDPOptMTU            uint8 = 5
)

// NDPMaxPrefixes is how many Prefix Information options NDPOptions keeps.
const NDPMaxPrefixes = 4

// NDPPrefixInfo is a Prefix Information option (RFC 4861 §4.6.2).
type NDPPrefixInfo struct {
	Prefix            netip.Prefix
	OnLink            bool   // L flag
	Autonomous        bool   // A flag
	ValidLifetime     uint32 // seconds, 0xffffffff is infinity
	PreferredLifetime uint32
}

// NDPOptions holds the ND options xdpnet uses. Options of other types are
// skipped.
type NDPOptions struct {
	SourceLinkAddr    MAC
	HasSourceLinkAddr bool
	TargetLinkAddr    MAC
	HasTargetLinkAddr bool
	MTU               uint32
	HasMTU            bool
	// Prefixes holds the first NPrefix (at most NDPMaxPrefixes) Prefix
	// Information options; further ones are counted in NPrefix no more.
	Prefixes [NDPMaxPrefixes]NDPPrefixInfo
	NPrefix  int
}

// ParseNDPOptions parses a sequence of ND options (type, length in units of
// 8 octets, data). An option of length 0 (RFC 4861 §4.6: MUST be silently
// discarded), one that runs past b, and a known option whose length is
// wrong for Ethernet all return ErrOptionLength.
func ParseNDPOptions(b []byte) (NDPOptions, Error) {
	var o NDPOptions
	for len(b) > 0 {
		if len(b) < 2 {
			return NDPOptions{}, ErrOptionLength
		}
		n := int(b[1]) * 8
		if n == 0 || n > len(b) {
			return NDPOptions{}, ErrOptionLength
		}
		opt := b[:n]
		switch b[0] {
		case NDPOptSourceLinkAddr, NDPOptTargetLinkAddr:
			if n != 8 {
				return NDPOptions{}, ErrOptionLength
			}
			if b[0] == NDPOptSourceLinkAddr {
				o.SourceLinkAddr, o.HasSourceLinkAddr = MAC(opt[2:8]), true
			} else {
				o.TargetLinkAddr, o.HasTargetLinkAddr = MAC(opt[2:8]), true
			}
		case NDPOptMTU:
			if n != 8 {
				return NDPOptions{}, ErrOptionLength
			}
			o.MTU, o.HasMTU = binary.BigEndian.Uint32(opt[4:8]), true
		case NDPOptPrefixInfo:
			if n != 32 || opt[2] > 128 {
				return NDPOptions{}, ErrOptionLength
			}
			if o.NPrefix < NDPMaxPrefixes {
				p := netip.PrefixFrom(netip.AddrFrom16([16]byte(opt[16:32])), int(opt[2]))
				o.Prefixes[o.NPrefix] = NDPPrefixInfo{
					Prefix:            p,
					OnLink:            opt[3]&0x80 != 0,
					Autonomous:        opt[3]&0x40 != 0,
					ValidLifetime:     binary.BigEndian.Uint32(opt[4:8]),
					PreferredLifetime: binary.BigEndian.Uint32(opt[8:12]),
				}
				o.NPrefix++
			}
		}
		b = b[n:]
	}
	return o, OK
}

// ICMPv6Fields describes an ICMPv6 echo or error message to encode. Which of
// ID/Seq, MTU and Pointer is written depends on Type; otherwise the second
// word is zero.
type ICMPv6Fields struct {
	Type, Code uint8
	ID, Seq    uint16 // echo request and reply
	MTU        uint32 // packet too big
	Pointer    uint32 // parameter problem
}

// Encode writes the 8-byte header followed by a copy of payload (which may
// already be in place at b[8:]) and the checksum for a message from src to
// dst. It returns 8+len(payload), or 0 if b is too short.
func (f ICMPv6Fields) Encode(b []byte, payload []byte, src, dst netip.Addr) int {
	n := ICMPv6HeaderLen + len(payload)
	if len(b) < n {
		return 0
	}
	b = b[:n]
	copy(b[ICMPv6HeaderLen:], payload)
	b[icmp6Type] = f.Type
	b[icmp6Code] = f.Code
	binary.BigEndian.PutUint32(b[4:], 0)
	switch f.Type {
	case ICMPv6EchoRequest, ICMPv6EchoReply:
		binary.BigEndian.PutUint16(b[icmp6ID:], f.ID)
		binary.BigEndian.PutUint16(b[icmp6Seq:], f.Seq)
	case ICMPv6PacketTooBig:
		binary.BigEndian.PutUint32(b[icmp6MTU:], f.MTU)
	case ICMPv6ParamProblem:
		binary.BigEndian.PutUint32(b[icmp6Pointer:], f.Pointer)
	}
	binary.BigEndian.PutUint16(b[icmp6Checksum:], 0)
	binary.BigEndian.PutUint16(b[icmp6Checksum:], ^Fold(Sum(b, PseudoHeaderSum(src, dst, ProtoICMPv6, n))))
	return n
}

// NDPNeighborFields describes a Neighbor Solicitation or Advertisement to
// encode (RFC 4861 §4.3, §4.4).
type NDPNeighborFields struct {
	Type   uint8 // ICMPv6NeighborSolicitation or ICMPv6NeighborAdvertisement
	Flags  uint8 // NA only: NAFlagRouter | NAFlagSolicited | NAFlagOverride
	Target netip.Addr
	// LinkAddr, when HasLinkAddr, is sent as the Source Link-Layer Address
	// option of an NS or the Target Link-Layer Address option of an NA.
	LinkAddr    MAC
	HasLinkAddr bool
}

// Encode writes the message with its checksum for src -> dst and returns its
// length (24, or 32 with the link-layer option), or 0 if b is too short, the
// type is not NS/NA, or Target is not IPv6.
func (f NDPNeighborFields) Encode(b []byte, src, dst netip.Addr) int {
	n := icmp6NSNAOptions
	if f.HasLinkAddr {
		n += 8
	}
	if len(b) < n || !f.Target.Is6() ||
		(f.Type != ICMPv6NeighborSolicitation && f.Type != ICMPv6NeighborAdvertisement) {
		return 0
	}
	b = b[:n]
	b[icmp6Type] = f.Type
	b[icmp6Code] = 0
	binary.BigEndian.PutUint16(b[icmp6Checksum:], 0)
	binary.BigEndian.PutUint32(b[4:], 0)
	opt := NDPOptSourceLinkAddr
	if f.Type == ICMPv6NeighborAdvertisement {
		b[icmp6NAFlags] = f.Flags & 0xe0
		opt = NDPOptTargetLinkAddr
	}
	t := f.Target.As16()
	copy(b[icmp6Target:], t[:])
	if f.HasLinkAddr {
		b[icmp6NSNAOptions] = opt
		b[icmp6NSNAOptions+1] = 1
		copy(b[icmp6NSNAOptions+2:], f.LinkAddr[:])
	}
	binary.BigEndian.PutUint16(b[icmp6Checksum:], ^Fold(Sum(b, PseudoHeaderSum(src, dst, ProtoICMPv6, n))))
	return n
}

// SolicitedNodeMulticast returns the solicited-node multicast address of a
// (RFC 4291 §2.7.1): ff02::1:ffXX:XXXX with the low 24 bits of a.
func SolicitedNodeMulticast(a netip.Addr) netip.Addr {
	s := a.As16()
	return netip.AddrFrom16([16]byte{0xff, 0x02, 10: 0, 11: 1, 12: 0xff, 13: s[13], 14: s[14], 15: s[15]})
}

// MulticastMAC returns the Ethernet address an IPv6 multicast address maps
// to (RFC 2464 §7): 33:33 followed by its low 32 bits.
func MulticastMAC(a netip.Addr) MAC {
	s := a.As16()
	return MAC{0x33, 0x33, s[12], s[13], s[14], s[15]}
}

// ICMPv6 Parameter Problem codes (RFC 4443 §3.4).
const (
	ICMPv6ErroneousHeader     uint8 = 0
	ICMPv6UnrecognizedNext    uint8 = 1
	ICMPv6UnrecognizedOption  uint8 = 2
	ICMPv6FirstFragIncomplete uint8 = 3
)

// AllNodesMulticast is ff02::1, the link-local all-nodes group (RFC 4291 §2.7.1).
var AllNodesMulticast = netip.AddrFrom16([16]byte{0xff, 0x02, 15: 1})

// IsSolicitedNodeMulticast reports whether a (16 bytes) is a solicited-node multicast address,
// ff02::1:ffXX:XXXX (RFC 4291 §2.7.1).
func IsSolicitedNodeMulticast(a *[16]byte) bool {
	return binary.BigEndian.Uint64(a[:8]) == 0xff02<<48 && binary.BigEndian.Uint32(a[8:12]) == 1 && a[12] == 0xff
}

// NAFlagsOffset is where the R, S and O flags of a Neighbor Advertisement lie.
const NAFlagsOffset = icmp6NAFlags
