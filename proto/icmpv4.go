package proto

import (
	"encoding/binary"
)

// ICMPv4 message (RFC 792). The second word depends on the type:
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     Type      |     Code      |          Checksum             |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           Identifier          |        Sequence Number        |  echo
//	|            unused             |         Next-Hop MTU          |  frag needed (RFC 1191)
//	|    Pointer    |                   unused                      |  parameter problem
//	|                 Gateway Internet Address                      |  redirect
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|     Data (echo data, or the invoking IP header + 8 octets)     |
const (
	icmpType     = 0
	icmpCode     = 1
	icmpChecksum = 2
	icmpID       = 4
	icmpSeq      = 6
	icmpMTU      = 6
	icmpPointer  = 4

	// ICMPv4HeaderLen is the length of the ICMPv4 header including the
	// type-specific second word.
	ICMPv4HeaderLen = 8
)

// ICMPv4 types.
const (
	ICMPv4EchoReply       uint8 = 0
	ICMPv4DestUnreachable uint8 = 3
	ICMPv4SourceQuench    uint8 = 4
	ICMPv4Redirect        uint8 = 5
	ICMPv4EchoRequest     uint8 = 8
	ICMPv4TimeExceeded    uint8 = 11
	ICMPv4ParamProblem    uint8 = 12
)

// ICMPv4 Destination Unreachable codes (RFC 792, RFC 1191, RFC 1812 §5.2.7.1).
const (
	ICMPv4NetUnreachable   uint8 = 0
	ICMPv4HostUnreachable  uint8 = 1
	ICMPv4ProtoUnreachable uint8 = 2
	ICMPv4PortUnreachable  uint8 = 3
	ICMPv4FragNeeded       uint8 = 4
	ICMPv4AdminProhibited  uint8 = 13
)

// ICMPv4 Time Exceeded codes.
const (
	ICMPv4TTLExceeded        uint8 = 0
	ICMPv4ReassemblyExceeded uint8 = 1
)

// ICMPv4 is a view of an ICMPv4 message. Make it with ParseICMPv4.
type ICMPv4 []byte

// ParseICMPv4 checks that b holds at least the 8-byte header. After it
// returns OK no method of the view panics. The checksum is not verified
// (call ChecksumValid).
func ParseICMPv4(b []byte) (ICMPv4, Error) {
	if len(b) < ICMPv4HeaderLen {
		return nil, ErrTruncated
	}
	return ICMPv4(b), OK
}

// Type returns the message type.
func (m ICMPv4) Type() uint8 { return m[icmpType] }

// Code returns the message code.
func (m ICMPv4) Code() uint8 { return m[icmpCode] }

// Checksum returns the checksum field.
func (m ICMPv4) Checksum() uint16 { return binary.BigEndian.Uint16(m[icmpChecksum:]) }

// ChecksumValid reports whether the checksum over the whole message verifies.
func (m ICMPv4) ChecksumValid() bool { return Fold(Sum(m, 0)) == 0xffff }

// ComputeChecksum returns the checksum the message should carry, ignoring
// the value currently in the field.
func (m ICMPv4) ComputeChecksum() uint16 {
	return ^Fold(Sum(m[icmpChecksum+2:], Sum(m[:icmpChecksum], 0)))
}

// SetChecksum sets the checksum field; the other setters keep it valid.
func (m ICMPv4) SetChecksum(c uint16) { binary.BigEndian.PutUint16(m[icmpChecksum:], c) }

// SetType sets the type and updates the checksum (RFC 1624); turning a
// request into a reply in place is SetType(ICMPv4EchoReply).
func (m ICMPv4) SetType(t uint8) {
	old := binary.BigEndian.Uint16(m[icmpType:])
	nw := uint16(t)<<8 | uint16(m[icmpCode])
	m[icmpType] = t
	m.SetChecksum(UpdateChecksum16(m.Checksum(), old, nw))
}

// SetCode sets the code and updates the checksum.
func (m ICMPv4) SetCode(c uint8) {
	old := binary.BigEndian.Uint16(m[icmpType:])
	nw := uint16(m[icmpType])<<8 | uint16(c)
	m[icmpCode] = c
	m.SetChecksum(UpdateChecksum16(m.Checksum(), old, nw))
}

// IsError reports whether the type is an error message (Destination
// Unreachable, Source Quench, Redirect, Time Exceeded, Parameter Problem),
// which must never be answered with another ICMP error (RFC 1812 §4.3.2.7).
func (m ICMPv4) IsError() bool { return ICMPv4IsError(m[icmpType]) }

// ICMPv4IsError reports whether type t is an ICMPv4 error message.
func ICMPv4IsError(t uint8) bool {
	switch t {
	case ICMPv4DestUnreachable, ICMPv4SourceQuench, ICMPv4Redirect, ICMPv4TimeExceeded, ICMPv4ParamProblem:
		return true
	}
	return false
}

// ID returns the echo identifier.
func (m ICMPv4) ID() uint16 { return binary.BigEndian.Uint16(m[icmpID:]) }

// Seq returns the echo sequence number.
func (m ICMPv4) Seq() uint16 { return binary.BigEndian.Uint16(m[icmpSeq:]) }

// NextHopMTU returns the MTU of a Fragmentation Needed message (RFC 1191 §4).
func (m ICMPv4) NextHopMTU() uint16 { return binary.BigEndian.Uint16(m[icmpMTU:]) }

// Pointer returns the octet pointer of a Parameter Problem message.
func (m ICMPv4) Pointer() uint8 { return m[icmpPointer] }

// RestOfHeader returns the type-specific second word as 4 bytes (the
// gateway address of a Redirect, for example).
func (m ICMPv4) RestOfHeader() [4]byte { return [4]byte(m[4:8]) }

// Payload returns the data after the 8-byte header: echo data, or for an
// error the invoking packet's IP header and at least 8 octets of its data.
func (m ICMPv4) Payload() []byte { return m[ICMPv4HeaderLen:] }

// ICMPv4Fields describes an ICMPv4 message to encode. Which of ID/Seq, MTU
// and Pointer is written depends on Type; the rest of the word is zero.
type ICMPv4Fields struct {
	Type, Code uint8
	ID, Seq    uint16 // echo request and reply
	MTU        uint16 // destination unreachable, fragmentation needed
	Pointer    uint8  // parameter problem
}

// Encode writes the 8-byte header followed by a copy of payload (which may
// overlap b, e.g. already be in place at b[8:]) and the checksum over both.
// It returns 8+len(payload), or 0 if b is too short.
func (f ICMPv4Fields) Encode(b []byte, payload []byte) int {
	n := ICMPv4HeaderLen + len(payload)
	if len(b) < n {
		return 0
	}
	b = b[:n]
	copy(b[ICMPv4HeaderLen:], payload)
	b[icmpType] = f.Type
	b[icmpCode] = f.Code
	binary.BigEndian.PutUint32(b[4:], 0)
	switch f.Type {
	case ICMPv4EchoRequest, ICMPv4EchoReply:
		binary.BigEndian.PutUint16(b[icmpID:], f.ID)
		binary.BigEndian.PutUint16(b[icmpSeq:], f.Seq)
	case ICMPv4DestUnreachable:
		if f.Code == ICMPv4FragNeeded {
			binary.BigEndian.PutUint16(b[icmpMTU:], f.MTU)
		}
	case ICMPv4ParamProblem:
		b[icmpPointer] = f.Pointer
	}
	binary.BigEndian.PutUint16(b[icmpChecksum:], 0)
	binary.BigEndian.PutUint16(b[icmpChecksum:], Checksum(b))
	return n
}
