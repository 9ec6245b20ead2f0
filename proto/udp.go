package proto

import (
	"encoding/binary"
	"net/netip"
)

// UDP header (RFC 768):
//
//	 0      7 8     15 16    23 24    31
//	+--------+--------+--------+--------+
//	|     Source      |   Destination   |
//	|      Port       |      Port       |
//	+--------+--------+--------+--------+
//	|     Length      |    Checksum     |
//	+--------+--------+--------+--------+
//	|          data octets ...
const (
	udpSrcPort  = 0
	udpDstPort  = 2
	udpLength   = 4
	udpChecksum = 6

	// UDPHeaderLen is the length of the UDP header.
	UDPHeaderLen = 8
)

// UDP is a view of a UDP datagram. Make it with ParseUDP.
type UDP []byte

// ParseUDP checks that b holds the header and that 8 <= Length <= len(b),
// and returns the view cut to Length. After it returns OK no method of the
// view panics. The checksum is not verified (call ChecksumValid).
func ParseUDP(b []byte) (UDP, Error) {
	if len(b) < UDPHeaderLen {
		return nil, ErrTruncated
	}
	n := int(binary.BigEndian.Uint16(b[udpLength:]))
	if n < UDPHeaderLen {
		return nil, ErrTotalLength
	}
	if n > len(b) {
		return nil, ErrTruncated
	}
	return UDP(b[:n]), OK
}

// SrcPort returns the source port.
func (u UDP) SrcPort() uint16 { return binary.BigEndian.Uint16(u[udpSrcPort:]) }

// DstPort returns the destination port.
func (u UDP) DstPort() uint16 { return binary.BigEndian.Uint16(u[udpDstPort:]) }

// Length returns the Length field (header plus data).
func (u UDP) Length() uint16 { return binary.BigEndian.Uint16(u[udpLength:]) }

// Checksum returns the checksum field; 0 means "not computed" over IPv4.
func (u UDP) Checksum() uint16 { return binary.BigEndian.Uint16(u[udpChecksum:]) }

// Payload returns the data after the header.
func (u UDP) Payload() []byte { return u[UDPHeaderLen:] }

// SetChecksum sets the checksum field; the port setters keep it valid.
func (u UDP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(u[udpChecksum:], c) }

// SetLength sets the Length field. The checksum is not updated: the length
// is counted twice (field and pseudo header), so recompute it.
func (u UDP) SetLength(n uint16) { binary.BigEndian.PutUint16(u[udpLength:], n) }

// SetSrcPort sets the source port and updates a non-zero checksum (RFC 1624).
func (u UDP) SetSrcPort(p uint16) { u.set16(udpSrcPort, p) }

// SetDstPort sets the destination port and updates a non-zero checksum.
func (u UDP) SetDstPort(p uint16) { u.set16(udpDstPort, p) }

func (u UDP) set16(off int, v uint16) {
	old := binary.BigEndian.Uint16(u[off:])
	binary.BigEndian.PutUint16(u[off:], v)
	if c := u.Checksum(); c != 0 {
		u.SetChecksum(udpNonZero(UpdateChecksum16(c, old, v)))
	}
}

// udpNonZero maps a computed checksum of 0 to 0xffff, since 0 on the wire
// means "no checksum" (RFC 768).
func udpNonZero(c uint16) uint16 {
	if c == 0 {
		return 0xffff
	}
	return c
}

// ComputeChecksum returns the checksum the datagram should carry when sent
// from src to dst (either family), ignoring the value in the field. A result
// of 0 is returned as 0xffff (RFC 768).
func (u UDP) ComputeChecksum(src, dst netip.Addr) uint16 {
	return UDPChecksum(u, src, dst)
}

// ChecksumValid reports whether the checksum verifies for src -> dst. Over
// IPv4 a zero checksum means none was computed and is valid (RFC 768); over
// IPv6 it is invalid (RFC 8200 §8.1: receivers MUST discard it).
func (u UDP) ChecksumValid(src, dst netip.Addr) bool {
	if u.Checksum() == 0 {
		return src.Is4()
	}
	return Fold(Sum(u, PseudoHeaderSum(src, dst, ProtoUDP, len(u)))) == 0xffff
}

// UDPChecksum computes the checksum of datagram b (header and data, with
// the checksum field ignored) for src -> dst, mapping 0 to 0xffff.
func UDPChecksum(b []byte, src, dst netip.Addr) uint16 {
	s := PseudoHeaderSum(src, dst, ProtoUDP, len(b))
	return udpNonZero(^Fold(Sum(b[udpChecksum+2:], Sum(b[:udpChecksum], s))))
}

// UDPFields describes a UDP header to encode.
type UDPFields struct {
	SrcPort, DstPort uint16
	PayloadLen       int // data bytes after the header
}

// Encode writes the 8-byte header with Length = 8 + PayloadLen and a zero
// checksum and returns 8, or 0 if b is shorter or the length does not fit.
// Write the data at b[8:] and call EncodeChecksum, or set the checksum
// yourself, afterwards.
func (f UDPFields) Encode(b []byte) int {
	if len(b) < UDPHeaderLen || f.PayloadLen < 0 || f.PayloadLen > 0xffff-UDPHeaderLen {
		return 0
	}
	binary.BigEndian.PutUint16(b[udpSrcPort:], f.SrcPort)
	binary.BigEndian.PutUint16(b[udpDstPort:], f.DstPort)
	binary.BigEndian.PutUint16(b[udpLength:], uint16(UDPHeaderLen+f.PayloadLen))
	binary.BigEndian.PutUint16(b[udpChecksum:], 0)
	return UDPHeaderLen
}

// EncodeChecksum is Encode followed by the checksum for src -> dst over the
// header and the PayloadLen data bytes already at b[8:]. It returns
// 8+PayloadLen, or 0 if b is too short.
func (f UDPFields) EncodeChecksum(b []byte, src, dst netip.Addr) int {
	n := UDPHeaderLen + f.PayloadLen
	if f.Encode(b) == 0 || len(b) < n {
		return 0
	}
	u := UDP(b[:n])
	u.SetChecksum(UDPChecksum(u, src, dst))
	return n
}
