package proto

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// partialSegment builds a TCP or UDP segment of n payload bytes whose checksum field is what Linux leaves
// for CHECKSUM_PARTIAL (~csum_tcpudp_magic(saddr, daddr, len, proto, 0)): the folded pseudo-header sum,
// computed here with the byte-wise reference, not with the code under test.
func partialSegment(r *rand.Rand, src, dst netip.Addr, p uint8, n int) []byte {
	hl := TCPMinHeaderLen
	if p == ProtoUDP {
		hl = UDPHeaderLen
	}
	seg := make([]byte, hl+n)
	for i := range seg {
		seg[i] = byte(r.Uint32())
	}
	off := checksumOffset(p)
	if p == ProtoUDP {
		binary.BigEndian.PutUint16(seg[udpLength:], uint16(len(seg)))
	}
	binary.BigEndian.PutUint16(seg[off:], uint16(pseudoRef(src, dst, p, len(seg))))
	return seg
}

func TestFinishPartialChecksum(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	pairs := [][2]netip.Addr{
		{netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.19.0.2")},
		{netip.MustParseAddr("2001:2::2"), netip.MustParseAddr("2001:2:0:1::2")},
	}
	for _, a := range pairs {
		for _, p := range []uint8{ProtoTCP, ProtoUDP} {
			for _, n := range []int{0, 1, 2, 3, 63, 1460, 8952} {
				seg := partialSegment(r, a[0], a[1], p, n)
				if !IsPartialChecksum(a[0], a[1], p, seg) {
					t.Fatalf("%v proto %d len %d: partial field not recognised", a, p, n)
				}
				if !FinishPartialChecksum(a[0], a[1], p, seg) {
					t.Fatalf("%v proto %d len %d: not finished", a, p, n)
				}
				if Fold(sumRef(seg, pseudoRef(a[0], a[1], p, len(seg)))) != 0xffff {
					t.Fatalf("%v proto %d len %d: finished checksum does not verify", a, p, n)
				}
				if IsPartialChecksum(a[0], a[1], p, seg) && binary.BigEndian.Uint16(seg[checksumOffset(p):]) != uint16(pseudoRef(a[0], a[1], p, len(seg))) {
					t.Fatalf("still partial after finishing")
				}
			}
		}
	}
}

// A complete checksum is never changed, also when it happens to equal the pseudo-header sum: finishing
// then writes the value it already has, or the other form of zero (see the comment on partial checksums).
func TestFinishPartialChecksumLeavesCompleteOnes(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	src, dst := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.19.0.2")
	coincidences := 0
	for i := 0; i < 200000; i++ {
		p := []uint8{ProtoTCP, ProtoUDP}[i%2]
		seg := partialSegment(r, src, dst, p, 4+i%40)
		off := checksumOffset(p)
		binary.BigEndian.PutUint16(seg[off:], 0)
		c := ^uint16(sumRef(seg, pseudoRef(src, dst, p, len(seg))))
		if c == 0 && p == ProtoUDP {
			continue // sent as 0xffff; 0 would mean "no checksum"
		}
		binary.BigEndian.PutUint16(seg[off:], c)
		if IsPartialChecksum(src, dst, p, seg) {
			coincidences++
		}
		FinishPartialChecksum(src, dst, p, seg)
		if got := binary.BigEndian.Uint16(seg[off:]); got != c && got|c != 0xffff {
			t.Fatalf("complete checksum %#04x changed to %#04x", c, got)
		}
	}
	t.Logf("%d of 200000 complete checksums looked partial and were left intact", coincidences)
}

func TestPartialChecksumOtherInput(t *testing.T) {
	src, dst := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.19.0.2")
	r := rand.New(rand.NewPCG(5, 6))
	udp := partialSegment(r, src, dst, ProtoUDP, 10)
	binary.BigEndian.PutUint16(udp[udpChecksum:], 0) // no checksum
	if FinishPartialChecksum(src, dst, ProtoUDP, udp) {
		t.Error("UDP without checksum finished")
	}
	if FinishPartialChecksum(src, dst, ProtoICMP, make([]byte, 64)) {
		t.Error("ICMP finished: Linux does not offload its checksum")
	}
	if FinishPartialChecksum(src, dst, ProtoTCP, make([]byte, tcpChecksum+1)) {
		t.Error("truncated TCP finished")
	}
}

func FuzzFinishPartialChecksum(f *testing.F) {
	f.Add([]byte{0, 80, 0, 81, 0, 0, 0, 0, 0, 0, 0, 0, 0x50, 0x10, 0, 0, 0, 0, 0, 0, 'x'}, true)
	f.Add([]byte{0, 53, 0, 53, 0, 9, 0, 0, 'x'}, false)
	src, dst := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.19.0.2")
	f.Fuzz(func(t *testing.T, seg []byte, tcp bool) {
		p := uint8(ProtoUDP)
		if tcp {
			p = ProtoTCP
		}
		before := append([]byte(nil), seg...)
		complete := len(seg) > checksumOffset(p)+1 && Fold(sumRef(seg, pseudoRef(src, dst, p, len(seg)))) == 0xffff
		finished := FinishPartialChecksum(src, dst, p, seg)
		if finished && Fold(sumRef(seg, pseudoRef(src, dst, p, len(seg)))) != 0xffff {
			t.Fatal("finished checksum does not verify")
		}
		if complete && string(before) != string(seg) && Fold(sumRef(seg, pseudoRef(src, dst, p, len(seg)))) != 0xffff {
			t.Fatal("a complete checksum was broken")
		}
		if !finished && string(before) != string(seg) {
			t.Fatal("segment changed without being finished")
		}
	})
}
