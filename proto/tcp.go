package proto

import (
	"encoding/binary"
	"net/netip"
)

// TCP header (RFC 9293 §3.1):
//
//	 0                   1                   2                   3
//	 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|          Source Port          |       Destination Port        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                        Sequence Number                        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                    Acknowledgment Number                      |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|  Data |       |C|E|U|A|P|R|S|F|                               |
//	| Offset| Rsrvd |W|C|R|C|S|S|Y|I|            Window             |
//	|       |       |R|E|G|K|H|T|N|N|                               |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|           Checksum            |         Urgent Pointer        |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//	|                           [Options]                           |
//	+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
const (
	tcpSrcPort    = 0
	tcpDstPort    = 2
	tcpSeq        = 4
	tcpAck        = 8
	tcpDataOffset = 12
	tcpFlags      = 13
	tcpWindow     = 14
	tcpChecksum   = 16
	tcpUrgent     = 18

	// TCPMinHeaderLen is the length of a TCP header without options.
	TCPMinHeaderLen = 20
	// TCPMaxHeaderLen is the largest header Data Offset can describe.
	TCPMaxHeaderLen = 60
)

// TCPFlags is the control-bits octet.
type TCPFlags uint8

// Control bits (RFC 9293 §3.1, RFC 3168 for ECE and CWR).
const (
	TCPFlagFIN TCPFlags = 1 << iota
	TCPFlagSYN
	TCPFlagRST
	TCPFlagPSH
	TCPFlagACK
	TCPFlagURG
	TCPFlagECE
	TCPFlagCWR
)

// Has reports whether all flags in f2 are set in f.
func (f TCPFlags) Has(f2 TCPFlags) bool { return f&f2 == f2 }

// String returns the set flags as letters in tcpdump order, "." for none:
// e.g. "S", "S.", "FP.".
func (f TCPFlags) String() string {
	var b [9]byte
	n := 0
	for _, x := range [...]struct {
		f TCPFlags
		c byte
	}{{TCPFlagFIN, 'F'}, {TCPFlagSYN, 'S'}, {TCPFlagRST, 'R'}, {TCPFlagPSH, 'P'}, {TCPFlagURG, 'U'},
		{TCPFlagECE, 'E'}, {TCPFlagCWR, 'W'}, {TCPFlagACK, '.'}} {
		if f&x.f != 0 {
			b[n] = x.c
			n++
		}
	}
	if n == 0 {
		return "none"
	}
	return string(b[:n])
}

// TCP is a view of a TCP segment. Make it with ParseTCP.
type TCP []byte

// ParseTCP checks that b holds the header and that 5 <= Data Offset and
// Data Offset*4 <= len(b). The segment length is not in the TCP header, so
// b must already be cut to the IP payload. After it returns OK no method of
// the view panics. The checksum is not verified (call ChecksumValid) and
// the options are not parsed (call ParseTCPOptions(t.Options())).
func ParseTCP(b []byte) (TCP, Error) {
	if len(b) < TCPMinHeaderLen {
		return nil, ErrTruncated
	}
	hl := int(b[tcpDataOffset]>>4) * 4
	if hl < TCPMinHeaderLen {
		return nil, ErrHeaderLength
	}
	if hl > len(b) {
		return nil, ErrTruncated
	}
	return TCP(b), OK
}

// SrcPort returns the source port.
func (t TCP) SrcPort() uint16 { return binary.BigEndian.Uint16(t[tcpSrcPort:]) }

// DstPort returns the destination port.
func (t TCP) DstPort() uint16 { return binary.BigEndian.Uint16(t[tcpDstPort:]) }

// Seq returns the sequence number.
func (t TCP) Seq() uint32 { return binary.BigEndian.Uint32(t[tcpSeq:]) }

// Ack returns the acknowledgment number.
func (t TCP) Ack() uint32 { return binary.BigEndian.Uint32(t[tcpAck:]) }

// DataOffset returns the header length in 32-bit words.
func (t TCP) DataOffset() uint8 { return t[tcpDataOffset] >> 4 }

// HeaderLen returns the header length in bytes, options included.
func (t TCP) HeaderLen() int { return int(t[tcpDataOffset]>>4) * 4 }

// Flags returns the control bits.
func (t TCP) Flags() TCPFlags { return TCPFlags(t[tcpFlags]) }

// Window returns the (unscaled) window.
func (t TCP) Window() uint16 { return binary.BigEndian.Uint16(t[tcpWindow:]) }

// Checksum returns the checksum field.
func (t TCP) Checksum() uint16 { return binary.BigEndian.Uint16(t[tcpChecksum:]) }

// Urgent returns the urgent pointer.
func (t TCP) Urgent() uint16 { return binary.BigEndian.Uint16(t[tcpUrgent:]) }

// Options returns the option bytes (empty when Data Offset is 5).
func (t TCP) Options() []byte { return t[TCPMinHeaderLen:t.HeaderLen()] }

// Payload returns the data after the header.
func (t TCP) Payload() []byte { return t[t.HeaderLen():] }

// SetChecksum sets the checksum field; the other setters keep it valid.
func (t TCP) SetChecksum(c uint16) { binary.BigEndian.PutUint16(t[tcpChecksum:], c) }

func (t TCP) set16(off int, v uint16) {
	old := binary.BigEndian.Uint16(t[off:])
	binary.BigEndian.PutUint16(t[off:], v)
	t.SetChecksum(UpdateChecksum16(t.Checksum(), old, v))
}

func (t TCP) set32(off int, v uint32) {
	old := binary.BigEndian.Uint32(t[off:])
	binary.BigEndian.PutUint32(t[off:], v)
	t.SetChecksum(UpdateChecksum32(t.Checksum(), old, v))
}

// SetSrcPort sets the source port and updates the checksum (RFC 1624).
func (t TCP) SetSrcPort(p uint16) { t.set16(tcpSrcPort, p) }

// SetDstPort sets the destination port and updates the checksum.
func (t TCP) SetDstPort(p uint16) { t.set16(tcpDstPort, p) }

// SetSeq sets the sequence number and updates the checksum.
func (t TCP) SetSeq(s uint32) { t.set32(tcpSeq, s) }

// SetAck sets the acknowledgment number and updates the checksum.
func (t TCP) SetAck(a uint32) { t.set32(tcpAck, a) }

// SetFlags sets the control bits and updates the checksum.
func (t TCP) SetFlags(f TCPFlags) {
	t.set16(tcpDataOffset, uint16(t[tcpDataOffset])<<8|uint16(f))
}

// SetWindow sets the window and updates the checksum.
func (t TCP) SetWindow(w uint16) { t.set16(tcpWindow, w) }

// ComputeChecksum returns the checksum the segment should carry when sent
// from src to dst, ignoring the value in the field.
func (t TCP) ComputeChecksum(src, dst netip.Addr) uint16 {
	s := PseudoHeaderSum(src, dst, ProtoTCP, len(t))
	return ^Fold(Sum(t[tcpChecksum+2:], Sum(t[:tcpChecksum], s)))
}

// ChecksumValid reports whether the checksum verifies for src -> dst.
func (t TCP) ChecksumValid(src, dst netip.Addr) bool {
	return Fold(Sum(t, PseudoHeaderSum(src, dst, ProtoTCP, len(t)))) == 0xffff
}

// TCP option kinds (IANA "TCP Option Kind Numbers").
const (
	TCPOptEOL           = 0
	TCPOptNOP           = 1
	TCPOptMSS           = 2 // RFC 9293 §3.2
	TCPOptWindowScale   = 3 // RFC 7323 §2
	TCPOptSACKPermitted = 4 // RFC 2018
	TCPOptSACK          = 5 // RFC 2018
	TCPOptTimestamps    = 8 // RFC 7323 §3
)

// TCPMaxSACKBlocks is the most SACK blocks 40 option bytes can hold.
const TCPMaxSACKBlocks = 4

// TCPSACKBlock is one SACK block: the bytes [Left, Right) were received.
type TCPSACKBlock struct{ Left, Right uint32 }

// TCPOptions holds the options xdpnet's TCP uses, as a value (no
// allocation). Fields are meaningful only when the matching Has flag is set.
type TCPOptions struct {
	MSS            uint16
	HasMSS         bool
	WindowScale    uint8
	HasWindowScale bool
	SACKPermitted  bool
	SACK           [TCPMaxSACKBlocks]TCPSACKBlock
	NSACK          int
	TSval, TSecr   uint32
	HasTimestamps  bool
}

// ParseTCPOptions parses TCP option bytes (TCP.Options()). End of Option
// List stops the walk, NOP is skipped, unknown kinds are skipped by their
// length. A length octet < 2 or past the end, or a known option with the
// wrong length, returns ErrOptionLength.
func ParseTCPOptions(b []byte) (TCPOptions, Error) {
	var o TCPOptions
	for len(b) > 0 {
		switch b[0] {
		case TCPOptEOL:
			return o, OK
		case TCPOptNOP:
			b = b[1:]
			continue
		}
		if len(b) < 2 {
			return TCPOptions{}, ErrOptionLength
		}
		n := int(b[1])
		if n < 2 || n > len(b) {
			return TCPOptions{}, ErrOptionLength
		}
		opt := b[:n]
		switch opt[0] {
		case TCPOptMSS:
			if n != 4 {
				return TCPOptions{}, ErrOptionLength
			}
			o.MSS, o.HasMSS = binary.BigEndian.Uint16(opt[2:]), true
		case TCPOptWindowScale:
			if n != 3 {
				return TCPOptions{}, ErrOptionLength
			}
			o.WindowScale, o.HasWindowScale = opt[2], true
		case TCPOptSACKPermitted:
			if n != 2 {
				return TCPOptions{}, ErrOptionLength
			}
			o.SACKPermitted = true
		case TCPOptSACK:
			if (n-2)%8 != 0 || n == 2 || (n-2)/8 > TCPMaxSACKBlocks {
				return TCPOptions{}, ErrOptionLength
			}
			o.NSACK = (n - 2) / 8
			for i := 0; i < o.NSACK; i++ {
				o.SACK[i] = TCPSACKBlock{
					Left:  binary.BigEndian.Uint32(opt[2+8*i:]),
					Right: binary.BigEndian.Uint32(opt[6+8*i:]),
				}
			}
		case TCPOptTimestamps:
			if n != 10 {
				return TCPOptions{}, ErrOptionLength
			}
			o.TSval, o.TSecr, o.HasTimestamps = binary.BigEndian.Uint32(opt[2:]), binary.BigEndian.Uint32(opt[6:]), true
		}
		b = b[n:]
	}
	return o, OK
}

// EncodedLen returns how many bytes Encode writes (a multiple of 4, at most
// 40). SACK blocks that would not fit in 40 bytes are left out.
func (o TCPOptions) EncodedLen() int {
	n, _ := o.layout()
	return n
}

// layout returns the encoded length and how many SACK blocks fit.
func (o TCPOptions) layout() (int, int) {
	n := 0
	if o.HasMSS {
		n += 4
	}
	if o.HasTimestamps || o.SACKPermitted {
		if o.HasTimestamps {
			n += 12 // [SACKOK|NOP NOP] TS
		} else {
			n += 4 // NOP NOP SACKOK
		}
	}
	if o.HasWindowScale {
		n += 4 // NOP WS
	}
	blocks := min(max(o.NSACK, 0), TCPMaxSACKBlocks)
	for blocks > 0 && n+4+8*blocks > 40 {
		blocks--
	}
	if blocks > 0 {
		n += 4 + 8*blocks // NOP NOP SACK
	}
	return n, blocks
}

// Encode writes the options in the order Linux uses (MSS, SACK-permitted,
// timestamps, window scale, SACK), padded with NOPs to 4-byte alignment,
// and returns the number of bytes written, or 0 if b is too short.
func (o TCPOptions) Encode(b []byte) int {
	n, blocks := o.layout()
	if len(b) < n {
		return 0
	}
	i := 0
	if o.HasMSS {
		b[i], b[i+1] = TCPOptMSS, 4
		binary.BigEndian.PutUint16(b[i+2:], o.MSS)
		i += 4
	}
	switch {
	case o.HasTimestamps:
		if o.SACKPermitted {
			b[i], b[i+1] = TCPOptSACKPermitted, 2
		} else {
			b[i], b[i+1] = TCPOptNOP, TCPOptNOP
		}
		b[i+2], b[i+3] = TCPOptTimestamps, 10
		binary.BigEndian.PutUint32(b[i+4:], o.TSval)
		binary.BigEndian.PutUint32(b[i+8:], o.TSecr)
		i += 12
	case o.SACKPermitted:
		b[i], b[i+1], b[i+2], b[i+3] = TCPOptNOP, TCPOptNOP, TCPOptSACKPermitted, 2
		i += 4
	}
	if o.HasWindowScale {
		b[i], b[i+1], b[i+2], b[i+3] = TCPOptNOP, TCPOptWindowScale, 3, o.WindowScale
		i += 4
	}
	if blocks > 0 {
		b[i], b[i+1], b[i+2], b[i+3] = TCPOptNOP, TCPOptNOP, TCPOptSACK, byte(2+8*blocks)
		i += 4
		for k := 0; k < blocks; k++ {
			binary.BigEndian.PutUint32(b[i:], o.SACK[k].Left)
			binary.BigEndian.PutUint32(b[i+4:], o.SACK[k].Right)
			i += 8
		}
	}
	return i
}

// TCPFields describes a TCP header with options to encode.
type TCPFields struct {
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            TCPFlags
	Window           uint16
	Urgent           uint16
	Options          TCPOptions
}

// HeaderLen returns the length Encode writes: 20 plus the options.
func (f TCPFields) HeaderLen() int { return TCPMinHeaderLen + f.Options.EncodedLen() }

// Encode writes the header and options with a zero checksum and returns the
// header length, or 0 if b is too short. Put the data after it and set the
// checksum with TCP.ComputeChecksum, or use EncodeChecksum.
func (f TCPFields) Encode(b []byte) int {
	hl := f.HeaderLen()
	if len(b) < hl {
		return 0
	}
	binary.BigEndian.PutUint16(b[tcpSrcPort:], f.SrcPort)
	binary.BigEndian.PutUint16(b[tcpDstPort:], f.DstPort)
	binary.BigEndian.PutUint32(b[tcpSeq:], f.Seq)
	binary.BigEndian.PutUint32(b[tcpAck:], f.Ack)
	b[tcpDataOffset] = uint8(hl/4) << 4
	b[tcpFlags] = uint8(f.Flags)
	binary.BigEndian.PutUint16(b[tcpWindow:], f.Window)
	binary.BigEndian.PutUint16(b[tcpChecksum:], 0)
	binary.BigEndian.PutUint16(b[tcpUrgent:], f.Urgent)
	f.Options.Encode(b[TCPMinHeaderLen:])
	return hl
}

// EncodeChecksum is Encode followed by the checksum for src -> dst over the
// header and payloadLen data bytes already in place after the header. It
// returns the segment length, or 0 if b is too short.
func (f TCPFields) EncodeChecksum(b []byte, payloadLen int, src, dst netip.Addr) int {
	hl := f.Encode(b)
	if hl == 0 || payloadLen < 0 || len(b) < hl+payloadLen {
		return 0
	}
	t := TCP(b[:hl+payloadLen])
	t.SetChecksum(t.ComputeChecksum(src, dst))
	return hl + payloadLen
}
