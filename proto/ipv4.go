package proto

import (
	"encoding/binary"
	"net/netip"
)

// IP protocol numbers (IANA "Assigned Internet Protocol Numbers"), used in the
// IPv4 Protocol field and the IPv6 Next Header field.
const (
	ProtoIPv6HopByHop uint8 = 0
	ProtoICMP         uint8 = 1
	ProtoIGMP         uint8 = 2
	ProtoTCP          uint8 = 6
	ProtoUDP          uint8 = 17
	ProtoIPv6Routing  uint8 = 43
	ProtoIPv6Fragment uint8 = 44
	ProtoESP          uint8 = 50
	ProtoAH           uint8 = 51
	ProtoICMPv6       uint8 = 58
	ProtoIPv6NoNext   uint8 = 59
	ProtoIPv6DestOpts uint8 = 60
)

// IPv4 header (RFC 791 §3.1):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|Version|  IHL  |Type of Service|          Total Length         |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|         Identification        |Flags|      Fragment Offset    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Time to Live |    Protocol   |         Header Checksum       |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                       Source Address                          |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Destination Address                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Options                    |    Padding    |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//
// Flags (3 bits): reserved (must be zero), DF, MF. Fragment Offset is in
// units of 8 bytes.
const (
	ipv4VersionIHL   = 0
	ipv4TOS          = 1
	ipv4TotalLength  = 2
	ipv4ID           = 4
	ipv4FlagsFragOff = 6
	ipv4TTL          = 8
	ipv4Protocol     = 9
	ipv4Checksum     = 10
	ipv4Src          = 12
	ipv4Dst          = 16

	ipv4FlagDF      = 0x4000
	ipv4FlagMF      = 0x2000
	ipv4FragOffMask = 0x1fff

	// IPv4MinHeaderLen is the length of an IPv4 header without options.
	IPv4MinHeaderLen = 20
	// IPv4MaxHeaderLen is the largest header IHL can describe (15 words).
	IPv4MaxHeaderLen = 60
)

// IPv4 is a view of an IPv4 packet, header first. Make it with ParseIPv4.
type IPv4 []byte

// ParseIPv4 checks the structure of an IPv4 packet: version 4, IHL >= 5,
// the header fits in b, and IHL*4 <= Total Length <= len(b). It returns the
// view cut to Total Length, so Ethernet padding is not part of Payload.
// After it returns OK no method of the view panics.
//
// It does not verify the header checksum (call ChecksumValid: a router
// counts that drop separately) nor the options (see ValidateOptions).
func ParseIPv4(b []byte) (IPv4, Error) {
	if len(b) < IPv4MinHeaderLen {
		return nil, ErrTruncated
	}
	if b[ipv4VersionIHL]>>4 != 4 {
		return nil, ErrVersion
	}
	hl := int(b[ipv4VersionIHL]&0xf) * 4
	if hl < IPv4MinHeaderLen {
		return nil, ErrHeaderLength
	}
	if hl > len(b) {
		return nil, ErrTruncated
	}
	tl := int(binary.BigEndian.Uint16(b[ipv4TotalLength:]))
	if tl < hl {
		return nil, ErrTotalLength
	}
	if tl > len(b) {
		return nil, ErrTruncated
	}
	return IPv4(b[:tl]), OK
}

// Version returns the version field (4 for a parsed view).
func (ip IPv4) Version() uint8 { return ip[ipv4VersionIHL] >> 4 }

// IHL returns the header length in 32-bit words.
func (ip IPv4) IHL() uint8 { return ip[ipv4VersionIHL] & 0xf }

// HeaderLen returns the header length in bytes (IHL*4).
func (ip IPv4) HeaderLen() int { return int(ip[ipv4VersionIHL]&0xf) * 4 }

// TOS returns the Type of Service octet (DSCP and ECN, RFC 2474, RFC 3168).
func (ip IPv4) TOS() uint8 { return ip[ipv4TOS] }

// DSCP returns the upper six bits of TOS.
func (ip IPv4) DSCP() uint8 { return ip[ipv4TOS] >> 2 }

// ECN returns the lower two bits of TOS.
func (ip IPv4) ECN() uint8 { return ip[ipv4TOS] & 3 }

// TotalLength returns the Total Length field: header plus payload in bytes.
func (ip IPv4) TotalLength() uint16 { return binary.BigEndian.Uint16(ip[ipv4TotalLength:]) }

// ID returns the Identification field.
func (ip IPv4) ID() uint16 { return binary.BigEndian.Uint16(ip[ipv4ID:]) }

// Flags returns the three flag bits (reserved, DF, MF) as the low 3 bits.
func (ip IPv4) Flags() uint8 { return ip[ipv4FlagsFragOff] >> 5 }

// DontFragment reports whether DF is set.
func (ip IPv4) DontFragment() bool {
	return binary.BigEndian.Uint16(ip[ipv4FlagsFragOff:])&ipv4FlagDF != 0
}

// MoreFragments reports whether MF is set.
func (ip IPv4) MoreFragments() bool {
	return binary.BigEndian.Uint16(ip[ipv4FlagsFragOff:])&ipv4FlagMF != 0
}

// FragmentOffset returns the fragment offset in bytes (the field times 8).
func (ip IPv4) FragmentOffset() uint16 {
	return (binary.BigEndian.Uint16(ip[ipv4FlagsFragOff:]) & ipv4FragOffMask) * 8
}

// IsFragment reports whether the packet is a fragment (MF set or a non-zero
// offset); only the first fragment carries the transport header.
func (ip IPv4) IsFragment() bool {
	return binary.BigEndian.Uint16(ip[ipv4FlagsFragOff:])&(ipv4FlagMF|ipv4FragOffMask) != 0
}

// TTL returns the Time to Live.
func (ip IPv4) TTL() uint8 { return ip[ipv4TTL] }

// Protocol returns the protocol of the payload (ProtoTCP, ProtoUDP, ...).
func (ip IPv4) Protocol() uint8 { return ip[ipv4Protocol] }

// Checksum returns the Header Checksum field.
func (ip IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(ip[ipv4Checksum:]) }

// Src returns the source address.
func (ip IPv4) Src() netip.Addr { return netip.AddrFrom4(ip.Src4()) }

// Dst returns the destination address.
func (ip IPv4) Dst() netip.Addr { return netip.AddrFrom4(ip.Dst4()) }

// Src4 returns the source address as 4 bytes.
// Src32 returns the source address as a big-endian number (198.18.0.1 is 0xc6120001), the form integer-keyed
// tables (LPM, neighbours) use.
func (ip IPv4) Src32() uint32 { return binary.BigEndian.Uint32(ip[ipv4Src:]) }

// Dst32 returns the destination address as a big-endian number, like Src32.
func (ip IPv4) Dst32() uint32 { return binary.BigEndian.Uint32(ip[ipv4Dst:]) }

func (ip IPv4) Src4() [4]byte { return [4]byte(ip[ipv4Src : ipv4Src+4]) }

// Dst4 returns the destination address as 4 bytes.
func (ip IPv4) Dst4() [4]byte { return [4]byte(ip[ipv4Dst : ipv4Dst+4]) }

// Options returns the option bytes between the fixed header and the payload
// (empty when IHL is 5).
func (ip IPv4) Options() []byte { return ip[IPv4MinHeaderLen:ip.HeaderLen()] }

// Payload returns the bytes after the header up to Total Length.
func (ip IPv4) Payload() []byte { return ip[ip.HeaderLen():] }

// Header returns the header bytes including options.
func (ip IPv4) Header() []byte { return ip[:ip.HeaderLen()] }

// ChecksumValid reports whether the header checksum verifies (RFC 1812
// §5.2.2: a router MUST verify it and silently discard the packet if not).
func (ip IPv4) ChecksumValid() bool {
	return Fold(Sum(ip[:ip.HeaderLen()], 0)) == 0xffff
}

// ComputeChecksum returns the header checksum the packet should carry,
// ignoring the value currently in the field.
func (ip IPv4) ComputeChecksum() uint16 {
	hl := ip.HeaderLen()
	return ^Fold(Sum(ip[ipv4Src:hl], Sum(ip[:ipv4Checksum], 0)))
}

// SetChecksum sets the Header Checksum field. It is the only IPv4 setter that
// does not update the checksum.
func (ip IPv4) SetChecksum(c uint16) { binary.BigEndian.PutUint16(ip[ipv4Checksum:], c) }

// set16 writes a 16-bit word at off and updates the checksum per RFC 1624.
func (ip IPv4) set16(off int, v uint16) {
	old := binary.BigEndian.Uint16(ip[off:])
	binary.BigEndian.PutUint16(ip[off:], v)
	ip.SetChecksum(UpdateChecksum16(ip.Checksum(), old, v))
}

// SetTTL sets the Time to Live and updates the checksum (RFC 1624).
func (ip IPv4) SetTTL(ttl uint8) {
	ip.set16(ipv4TTL, uint16(ttl)<<8|uint16(ip[ipv4Protocol]))
}

// DecrementTTL decrements the TTL by one, updates the checksum (RFC 1624),
// and returns the new TTL. A TTL of 0 is left alone and 0 is returned: the
// caller must already have dropped the packet (RFC 1812 §5.3.1).
func (ip IPv4) DecrementTTL() uint8 {
	ttl := ip[ipv4TTL]
	if ttl == 0 {
		return 0
	}
	// The TTL is the high byte of its word, so the word drops by 0x0100;
	// eqn. 3 with m' = m - 0x100 reduces to adding 0x0100 to the checksum
	// in one's complement (as Linux ip_decrease_ttl does).
	ip[ipv4TTL] = ttl - 1
	s := uint32(ip.Checksum()) + 0x0100
	ip.SetChecksum(uint16(s + s>>16))
	return ttl - 1
}

// SetProtocol sets the Protocol field and updates the checksum.
func (ip IPv4) SetProtocol(p uint8) {
	ip.set16(ipv4TTL, uint16(ip[ipv4TTL])<<8|uint16(p))
}

// SetTOS sets the Type of Service octet and updates the checksum.
func (ip IPv4) SetTOS(tos uint8) {
	ip.set16(ipv4VersionIHL, uint16(ip[ipv4VersionIHL])<<8|uint16(tos))
}

// SetID sets the Identification field and updates the checksum.
func (ip IPv4) SetID(id uint16) { ip.set16(ipv4ID, id) }

// SetHeaderLen sets Version to 4 and IHL to n/4 (n a multiple of 4 from 20 to 60) and updates the checksum.
// The option bytes themselves are the caller's to write.
func (ip IPv4) SetHeaderLen(n int) {
	ip.set16(ipv4VersionIHL, uint16(0x40|n/4&0xf)<<8|uint16(ip[ipv4TOS]))
}

// SetTotalLength sets the Total Length field and updates the checksum. The
// view itself keeps its length: reslice it (ip[:n]) when shrinking.
func (ip IPv4) SetTotalLength(n uint16) { ip.set16(ipv4TotalLength, n) }

// SetFlagsFragment sets DF, MF and the fragment offset (in bytes; the low 3
// bits are dropped since the field counts 8-byte units) and updates the
// checksum. The reserved flag is cleared.
func (ip IPv4) SetFlagsFragment(df, mf bool, offset uint16) {
	v := offset / 8 & ipv4FragOffMask
	if df {
		v |= ipv4FlagDF
	}
	if mf {
		v |= ipv4FlagMF
	}
	ip.set16(ipv4FlagsFragOff, v)
}

// SetSrc sets the source address and updates the checksum (RFC 1624). It
// returns false, changing nothing, if a is not an IPv4 (or IPv4-mapped)
// address. The transport checksum is not touched: see UpdateChecksumAddr.
func (ip IPv4) SetSrc(a netip.Addr) bool { return ip.setAddr(ipv4Src, a) }

// SetDst sets the destination address; see SetSrc.
func (ip IPv4) SetDst(a netip.Addr) bool { return ip.setAddr(ipv4Dst, a) }

func (ip IPv4) setAddr(off int, a netip.Addr) bool {
	a = a.Unmap()
	if !a.Is4() {
		return false
	}
	b := a.As4()
	old := binary.BigEndian.Uint32(ip[off:])
	nv := binary.BigEndian.Uint32(b[:])
	binary.BigEndian.PutUint32(ip[off:], nv)
	ip.SetChecksum(UpdateChecksum32(ip.Checksum(), old, nv))
	return true
}

// IPv4 option types (RFC 791 §3.1; IANA "IP Option Numbers"). The type octet's high bit is the copied
// flag: the option is copied into every fragment.
const (
	IPv4OptEnd    = 0   // End of Option List
	IPv4OptNOP    = 1   // No Operation
	IPv4OptRR     = 7   // Record Route
	IPv4OptTS     = 68  // Internet Timestamp
	IPv4OptLSRR   = 131 // Loose Source and Record Route
	IPv4OptSSRR   = 137 // Strict Source and Record Route
	ipv4OptCopied = 0x80
)

// IPv4OptionCopied reports whether an option of type t is copied into every fragment (RFC 791 §3.1).
func IPv4OptionCopied(t uint8) bool { return t&ipv4OptCopied != 0 }

// NextIPv4Option splits the first option off o (a header's option bytes, see Options): its type, its bytes
// (one for No Operation, the whole type-length-value otherwise) and the options after it. At End of Option
// List rest is empty. ok is false, and rest empty, for an option whose length octet is missing, below 2 or
// runs past o (RFC 791 §3.1).
func NextIPv4Option(o []byte) (typ uint8, opt, rest []byte, ok bool) {
	switch {
	case len(o) == 0 || o[0] == IPv4OptEnd:
		return IPv4OptEnd, o, nil, true
	case o[0] == IPv4OptNOP:
		return IPv4OptNOP, o[:1], o[1:], true
	case len(o) < 2 || o[1] < 2 || int(o[1]) > len(o):
		return o[0], o, nil, false
	}
	return o[0], o[:o[1]], o[o[1]:], true
}

// ValidateOptions walks the options (RFC 791 §3.1): End of Option List and
// No Operation are one byte, every other option has a length octet >= 2 that
// must fit in the header. It returns ErrOptionLength otherwise.
func (ip IPv4) ValidateOptions() Error {
	for o := ip.Options(); len(o) > 0; {
		_, _, rest, ok := NextIPv4Option(o)
		if !ok {
			return ErrOptionLength
		}
		o = rest
	}
	return OK
}

// IPv4Fields describes an IPv4 header without options to encode.
type IPv4Fields struct {
	TOS            uint8
	ID             uint16
	DontFragment   bool
	MoreFragments  bool
	FragmentOffset uint16 // in bytes, a multiple of 8
	TTL            uint8
	Protocol       uint8
	Src, Dst       netip.Addr
	PayloadLen     int // bytes after the header; Total Length = 20 + PayloadLen
}

// Encode writes a 20-byte header with a correct checksum to b and returns 20.
// It returns 0 if b is shorter, an address is not IPv4, the payload does not
// fit in Total Length, or FragmentOffset is not a multiple of 8.
func (f IPv4Fields) Encode(b []byte) int {
	src, dst := f.Src.Unmap(), f.Dst.Unmap()
	if len(b) < IPv4MinHeaderLen || !src.Is4() || !dst.Is4() ||
		f.PayloadLen < 0 || f.PayloadLen > 0xffff-IPv4MinHeaderLen ||
		f.FragmentOffset%8 != 0 {
		return 0
	}
	b = b[:IPv4MinHeaderLen]
	b[ipv4VersionIHL] = 4<<4 | IPv4MinHeaderLen/4
	b[ipv4TOS] = f.TOS
	binary.BigEndian.PutUint16(b[ipv4TotalLength:], uint16(IPv4MinHeaderLen+f.PayloadLen))
	binary.BigEndian.PutUint16(b[ipv4ID:], f.ID)
	ff := f.FragmentOffset / 8
	if f.DontFragment {
		ff |= ipv4FlagDF
	}
	if f.MoreFragments {
		ff |= ipv4FlagMF
	}
	binary.BigEndian.PutUint16(b[ipv4FlagsFragOff:], ff)
	b[ipv4TTL] = f.TTL
	b[ipv4Protocol] = f.Protocol
	binary.BigEndian.PutUint16(b[ipv4Checksum:], 0)
	s4, d4 := src.As4(), dst.As4()
	copy(b[ipv4Src:], s4[:])
	copy(b[ipv4Dst:], d4[:])
	binary.BigEndian.PutUint16(b[ipv4Checksum:], Checksum(b))
	return IPv4MinHeaderLen
}

// Fields returns the header as an IPv4Fields value (options are not
// represented; PayloadLen is TotalLength minus the header length).
func (ip IPv4) Fields() IPv4Fields {
	return IPv4Fields{
		TOS: ip.TOS(), ID: ip.ID(), DontFragment: ip.DontFragment(), MoreFragments: ip.MoreFragments(),
		FragmentOffset: ip.FragmentOffset(), TTL: ip.TTL(), Protocol: ip.Protocol(),
		Src: ip.Src(), Dst: ip.Dst(), PayloadLen: len(ip) - ip.HeaderLen(),
	}
}
