package proto

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// The Internet checksum (RFC 1071) is the one's-complement of the
// one's-complement sum of the data taken as big-endian 16-bit words.
//
// The functions here split it in three steps so that pieces (a pseudo header,
// a header, a payload) can be summed separately and combined:
//
//	Sum     accumulates bytes into a 32-bit partial sum (not folded, not inverted)
//	Fold    folds a partial sum to 16 bits (end-around carry), NOT inverted
//	^Fold   the value to store in a checksum field
//
// A received packet verifies when Fold(Sum(covered bytes, pseudo)) == 0xffff.

// Sum adds b to the partial sum initial and returns the new partial sum.
// Bytes are taken as big-endian 16-bit words; an odd trailing byte is padded
// with a zero low byte. When summing several slices, every slice but the last
// must have even length, otherwise later bytes land in the wrong half of a word.
//
// It works on 64-bit little-endian words with add-with-carry: the
// one's-complement sum does not depend on byte order (RFC 1071 §2(B)) nor on
// word width (2^16 ≡ 1 mod 2^16-1), so the 16-bit result is byte-swapped once
// at the end instead of swapping every word.
func Sum(b []byte, initial uint32) uint32 {
	var s, c uint64
	for len(b) >= 64 {
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[0:8]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[8:16]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[16:24]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[24:32]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[32:40]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[40:48]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[48:56]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[56:64]), c)
		b = b[64:]
	}
	if len(b) >= 32 {
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[0:8]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[8:16]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[16:24]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[24:32]), c)
		b = b[32:]
	}
	if len(b) >= 16 {
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[0:8]), c)
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[8:16]), c)
		b = b[16:]
	}
	if len(b) >= 8 {
		s, c = bits.Add64(s, binary.LittleEndian.Uint64(b[0:8]), c)
		b = b[8:]
	}
	if len(b) >= 4 {
		s, c = bits.Add64(s, uint64(binary.LittleEndian.Uint32(b[0:4])), c)
		b = b[4:]
	}
	if len(b) >= 2 {
		s, c = bits.Add64(s, uint64(binary.LittleEndian.Uint16(b[0:2])), c)
		b = b[2:]
	}
	if len(b) == 1 {
		// Big-endian high byte, which is the low byte in little-endian terms.
		s, c = bits.Add64(s, uint64(b[0]), c)
	}
	s, c = bits.Add64(s, 0, c)
	s += c // c == 1 only if s wrapped to 0, so this cannot overflow
	// Fold 64 -> 16 bits in little-endian terms, then swap to big-endian.
	s = (s >> 32) + (s & 0xffffffff)
	s = (s >> 32) + (s & 0xffffffff)
	s = (s >> 16) + (s & 0xffff)
	s = (s >> 16) + (s & 0xffff)
	r := uint64(initial) + uint64(bits.ReverseBytes16(uint16(s)))
	r = (r >> 32) + (r & 0xffffffff)
	return uint32(r)
}

// Fold folds a partial sum to 16 bits with end-around carry. The result is
// NOT complemented: store ^Fold(s) in a checksum field, and expect
// Fold(s) == 0xffff when verifying a received packet.
func Fold(sum uint32) uint16 {
	sum = (sum >> 16) + (sum & 0xffff)
	sum = (sum >> 16) + (sum & 0xffff)
	return uint16(sum)
}

// Checksum returns the Internet checksum of b, ready to store in a checksum
// field (folded and complemented).
func Checksum(b []byte) uint16 { return ^Fold(Sum(b, 0)) }

// PseudoHeaderSum returns the partial sum of the pseudo header that UDP, TCP
// and ICMPv6 checksums cover: for IPv4 (RFC 768, RFC 9293 §3.1) source,
// destination, zero, protocol and a 16-bit length; for IPv6 (RFC 8200 §8.1)
// source, destination, a 32-bit upper-layer length and the next header.
// The family is taken from src; dst should be of the same family.
// length is the transport header plus payload length.
func PseudoHeaderSum(src, dst netip.Addr, proto uint8, length int) uint32 {
	var s uint32
	if src.Is4() {
		s = addrSum4(src) + addrSum4(dst)
	} else {
		s = addrSum16(src) + addrSum16(dst)
		s += uint32(length) >> 16
	}
	return s + uint32(proto) + uint32(length)&0xffff
}

func addrSum4(a netip.Addr) uint32 {
	if !a.Is4() && !a.Is4In6() {
		return 0
	}
	b := a.As4()
	return uint32(binary.BigEndian.Uint16(b[0:2])) + uint32(binary.BigEndian.Uint16(b[2:4]))
}

func addrSum16(a netip.Addr) uint32 {
	b := a.As16()
	hi := binary.BigEndian.Uint64(b[0:8])
	lo := binary.BigEndian.Uint64(b[8:16])
	var s uint32
	for _, w := range [2]uint64{hi, lo} {
		s += uint32(w>>48) + uint32(w>>32&0xffff) + uint32(w>>16&0xffff) + uint32(w&0xffff)
	}
	return s
}

// UpdateChecksum16 returns the checksum field value after a 16-bit word
// covered by it changed from old to new, per RFC 1624 eqn. 3:
// HC' = ~(~HC + ~m + m'). check is the field as stored (complemented).
// Unlike eqn. 2 it never yields the -0 that RFC 1624 §3 warns about; its one
// corner is data that becomes all zero (sum +0), which no IP or transport
// header can be.
func UpdateChecksum16(check, old, new uint16) uint16 {
	s := uint32(^check) + uint32(^old) + uint32(new)
	return ^Fold(s)
}

// UpdateChecksum32 is UpdateChecksum16 for an aligned 32-bit field (sequence
// numbers, IPv4 addresses).
func UpdateChecksum32(check uint16, old, new uint32) uint16 {
	s := uint32(^check) + uint32(^uint16(old>>16)) + uint32(^uint16(old)) +
		uint32(new>>16) + uint32(new&0xffff)
	return ^Fold(s)
}

// UpdateChecksumAddr updates a checksum that covers an address (an IPv4
// header, or a transport pseudo header) after it changed from old to new.
// Both must be of the same family.
func UpdateChecksumAddr(check uint16, old, new netip.Addr) uint16 {
	var so, sn uint32
	if old.Is4() {
		so, sn = addrSum4(old), addrSum4(new)
	} else {
		so, sn = addrSum16(old), addrSum16(new)
	}
	// ~m summed word by word equals ~(sum of m) in one's complement.
	s := uint32(^check) + uint32(^Fold(so)) + sn
	return ^Fold(s)
}

// Partial checksums. A Linux sender whose device offers TX checksum offload (every veth, by default) leaves a
// TCP or UDP checksum partial (CHECKSUM_PARTIAL): the field holds the folded pseudo-header sum, not
// complemented, and the device is to sum the segment from the transport header on and store the complement.
// On veth no device does, and AF_XDP hands the frame over as it is, without the skb's ip_summed that says so.
//
// Such a field is recognisable: it equals Fold(PseudoHeaderSum(...)). A complete checksum can hold the same
// value by coincidence, but then finishing it writes the value it already has: a complete field C verifies,
// so S + C + P ≡ 0 (S the segment's sum without the field, P the pseudo header); with C ≡ P that gives
// S + P ≡ -P, and the finished value ^(S + C) = ^(S + P) ≡ P ≡ C (at most 0xffff becomes 0, the other form
// of zero). So finishing every field that looks partial is exact, and needs no verification pass.

// checksumOffset returns where the checksum field of a segment of protocol p lies, or -1 for protocols
// whose checksum Linux does not offload.
func checksumOffset(p uint8) int {
	switch p {
	case ProtoTCP:
		return tcpChecksum
	case ProtoUDP:
		return udpChecksum
	}
	return -1
}

// IsPartialChecksum reports whether segment (a TCP or UDP header and its payload, sent src -> dst) carries
// a checksum left partial by the sender's offload. Only a frame from a peer in host memory (veth; see
// pipeline.PortInfo.PartialChecksums) may be taken as partial: on a wire, such a field is an error.
func IsPartialChecksum(src, dst netip.Addr, p uint8, segment []byte) bool {
	off := checksumOffset(p)
	if off < 0 || len(segment) < off+2 {
		return false
	}
	field := binary.BigEndian.Uint16(segment[off:])
	// UDP's 0 means "no checksum" (RFC 768); a partial field is a fold of a non-zero sum, never 0.
	return field != 0 && field == Fold(PseudoHeaderSum(src, dst, p, len(segment)))
}

// FinishPartialChecksum completes a checksum that IsPartialChecksum reports as partial, as the sender's
// device would have, and reports whether it did. Other segments are left as they are: a router does not
// judge a transport checksum it did not break. It costs one pass over the segment, only for partial ones.
func FinishPartialChecksum(src, dst netip.Addr, p uint8, segment []byte) bool {
	if !IsPartialChecksum(src, dst, p, segment) {
		return false
	}
	off := checksumOffset(p)
	c := ^Fold(Sum(segment, 0))
	if c == 0 && p == ProtoUDP {
		c = 0xffff // RFC 768: a computed 0 is sent as all ones
	}
	binary.BigEndian.PutUint16(segment[off:], c)
	return true
}
