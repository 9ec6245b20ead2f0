package proto

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// sumRef is the obviously correct RFC 1071 sum: big-endian 16-bit words,
// byte by byte, folded at every step.
func sumRef(b []byte, initial uint32) uint32 {
	s := uint64(initial)
	for i := 0; i+1 < len(b); i += 2 {
		s += uint64(b[i])<<8 | uint64(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint64(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint32(s)
}

func checksumRef(b []byte) uint16 { return ^uint16(sumRef(b, 0)) }

// pseudoRef builds the pseudo header as bytes and sums it with sumRef.
func pseudoRef(src, dst netip.Addr, proto uint8, length int) uint32 {
	var p []byte
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		p = append(append(p, s[:]...), d[:]...)
		p = append(p, 0, proto, byte(length>>8), byte(length))
	} else {
		s, d := src.As16(), dst.As16()
		p = append(append(p, s[:]...), d[:]...)
		p = binary.BigEndian.AppendUint32(p, uint32(length))
		p = append(p, 0, 0, 0, proto)
	}
	return sumRef(p, 0)
}

func TestChecksumRFC1071Example(t *testing.T) {
	// RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got := Fold(Sum(b, 0)); got != 0xddf2 {
		t.Fatalf("Fold(Sum) = %#04x, want 0xddf2", got)
	}
	if got := Checksum(b); got != ^uint16(0xddf2) {
		t.Fatalf("Checksum = %#04x, want %#04x", got, ^uint16(0xddf2))
	}
}

func TestChecksumKnownIPv4Header(t *testing.T) {
	// The classic example header: checksum b861.
	h := []byte{0x45, 0x00, 0x00, 0x73, 0x00, 0x00, 0x40, 0x00, 0x40, 0x11, 0x00, 0x00,
		0xc0, 0xa8, 0x00, 0x01, 0xc0, 0xa8, 0x00, 0xc7}
	if got := Checksum(h); got != 0xb861 {
		t.Fatalf("Checksum = %#04x, want 0xb861", got)
	}
}

func TestSumMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 4096)
	for i := range buf {
		buf[i] = byte(r.Uint32())
	}
	// All lengths up to 300 at every alignment, plus long ones and all-0xff
	// data that exercises every carry.
	for n := 0; n <= 300; n++ {
		for off := 0; off < 8; off++ {
			b := buf[off : off+n]
			init := r.Uint32() >> r.IntN(32)
			if got, want := Fold(Sum(b, init)), uint16(sumRef(b, init)); got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
				t.Fatalf("len %d off %d init %#x: Fold(Sum) = %#04x, reference %#04x", n, off, init, got, want)
			}
		}
	}
	ff := make([]byte, 1500)
	for i := range ff {
		ff[i] = 0xff
	}
	for _, b := range [][]byte{buf, buf[1:], ff, ff[:1499], make([]byte, 65535)} {
		if got, want := Fold(Sum(b, 0)), uint16(sumRef(b, 0)); got != want {
			t.Fatalf("len %d: Fold(Sum) = %#04x, reference %#04x", len(b), got, want)
		}
	}
}

func TestSumChained(t *testing.T) {
	b := make([]byte, 1001)
	for i := range b {
		b[i] = byte(i * 7)
	}
	whole := Fold(Sum(b, 0))
	for split := 0; split <= len(b); split += 2 {
		if got := Fold(Sum(b[split:], Sum(b[:split], 0))); got != whole {
			t.Fatalf("split at %d: %#04x, want %#04x", split, got, whole)
		}
	}
}

func TestPseudoHeaderSum(t *testing.T) {
	for _, c := range []struct{ src, dst string }{
		{"198.18.0.1", "198.19.255.254"},
		{"0.0.0.0", "255.255.255.255"},
		{"2001:db8::1", "2001:db8:ffff:ffff:ffff:ffff:ffff:ffff"},
		{"fe80::1", "ff02::1:ff00:1"},
	} {
		src, dst := netip.MustParseAddr(c.src), netip.MustParseAddr(c.dst)
		for _, n := range []int{0, 8, 1480, 65535, 70000} {
			if src.Is4() && n > 0xffff {
				continue
			}
			got, want := Fold(PseudoHeaderSum(src, dst, ProtoUDP, n)), uint16(pseudoRef(src, dst, ProtoUDP, n))
			if got != want {
				t.Errorf("%s -> %s len %d: %#04x, want %#04x", src, dst, n, got, want)
			}
		}
	}
}

// equalChecksum treats 0x0000 and 0xffff as the same one's-complement zero
// only where RFC 1624 §3 says they may differ (a header summing to zero).
func verifies(b []byte) bool { return Fold(Sum(b, 0)) == 0xffff }

func TestUpdateChecksum16(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	b := make([]byte, 20)
	for i := 0; i < 10000; i++ {
		for j := range b {
			b[j] = byte(r.Uint32())
		}
		binary.BigEndian.PutUint16(b[10:], 0)
		binary.BigEndian.PutUint16(b[10:], Checksum(b))
		w := 2 * r.IntN(10)
		if w == 10 {
			continue
		}
		old := binary.BigEndian.Uint16(b[w:])
		nw := uint16(r.Uint32())
		binary.BigEndian.PutUint16(b[w:], nw)
		binary.BigEndian.PutUint16(b[10:], UpdateChecksum16(binary.BigEndian.Uint16(b[10:]), old, nw))
		if !verifies(b) {
			t.Fatalf("after changing word %d %#04x -> %#04x the checksum no longer verifies: % x", w, old, nw, b)
		}
	}
}

func TestUpdateChecksumAddr(t *testing.T) {
	for _, c := range [][2]string{{"198.18.0.1", "198.19.3.4"}, {"2001:db8::1", "2001:db8:1::abcd"}} {
		src, dst, nsrc := netip.MustParseAddr(c[0]), netip.MustParseAddr(c[0]), netip.MustParseAddr(c[1])
		u := make([]byte, 8+13)
		for i := range u {
			u[i] = byte(i * 31)
		}
		(UDPFields{SrcPort: 1, DstPort: 2, PayloadLen: 13}).EncodeChecksum(u, src, dst)
		c := UpdateChecksumAddr(UDP(u).Checksum(), src, nsrc)
		UDP(u).SetChecksum(c)
		if !UDP(u).ChecksumValid(nsrc, dst) {
			t.Errorf("%s -> %s: updated UDP checksum does not verify", src, nsrc)
		}
	}
}

func FuzzChecksum(f *testing.F) {
	f.Add([]byte{}, uint32(0))
	f.Add([]byte{0xff}, uint32(0xffffffff))
	f.Add(make([]byte, 1500), uint32(1))
	f.Add([]byte("the quick brown fox jumps over the lazy dog, 64 bytes and more!!!"), uint32(0x12345))
	f.Fuzz(func(t *testing.T, b []byte, init uint32) {
		init >>= 8 // partial sums stay far below 2^32 in practice
		got, want := Fold(Sum(b, init)), uint16(sumRef(b, init))
		if got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
			t.Fatalf("len %d init %#x: fast %#04x, reference %#04x", len(b), init, got, want)
		}
		if len(b)%2 == 0 && len(b) >= 2 {
			// A buffer with its checksum appended verifies.
			c := Checksum(b)
			bb := binary.BigEndian.AppendUint16(append([]byte(nil), b...), c)
			if !verifies(bb) {
				t.Fatalf("appending checksum %#04x does not verify", c)
			}
		}
	})
}

func FuzzIncrementalChecksum(f *testing.F) {
	f.Add([]byte{0x45, 0, 0, 0x73, 0, 0, 0x40, 0, 0x40, 0x11, 0, 0, 0xc0, 0xa8, 0, 1, 0xc0, 0xa8, 0, 0xc7}, uint8(4), uint16(0xffff))
	f.Add(make([]byte, 20), uint8(8), uint16(0x0100))
	f.Add(make([]byte, 40), uint8(0), uint16(1))
	f.Add([]byte("0000"), uint8(0), uint16(0)) // data becomes all zero: the eqn. 3 corner
	f.Fuzz(func(t *testing.T, b []byte, word uint8, nw uint16) {
		if len(b) < 4 || len(b)%2 == 1 {
			return
		}
		b = append([]byte(nil), b...)
		binary.BigEndian.PutUint16(b[0:], 0) // word 0 holds the checksum
		binary.BigEndian.PutUint16(b[0:], Checksum(b))
		w := 2 + 2*(int(word)%((len(b)-2)/2))
		old := binary.BigEndian.Uint16(b[w:])
		binary.BigEndian.PutUint16(b[w:], nw)
		inc := UpdateChecksum16(binary.BigEndian.Uint16(b[0:]), old, nw)
		binary.BigEndian.PutUint16(b[0:], 0)
		full := Checksum(b)
		// RFC 1624 §3: the two may differ only in the representation of zero.
		if inc != full && !(inc^full == 0xffff && (inc == 0 || full == 0)) {
			t.Fatalf("word %d %#04x -> %#04x: incremental %#04x, full %#04x", w, old, nw, inc, full)
		}
		binary.BigEndian.PutUint16(b[0:], inc)
		if Fold(Sum(b[2:], 0)) == 0 {
			// All covered data is zero: its sum is +0, which one's-complement
			// addition of the non-zero operands of eqn. 3 cannot produce. No
			// IP, TCP, UDP or ICMP header is all zero (version, protocol).
			return
		}
		if !verifies(b) {
			t.Fatalf("incremental checksum %#04x does not verify", inc)
		}
	})
}

func FuzzIPv4DecrementTTL(f *testing.F) {
	f.Add(uint8(64), uint8(17), uint16(0x1234), []byte{198, 18, 0, 1, 198, 19, 0, 1})
	f.Add(uint8(1), uint8(6), uint16(0), []byte{0, 0, 0, 0, 255, 255, 255, 255})
	f.Fuzz(func(t *testing.T, ttl, proto uint8, id uint16, addrs []byte) {
		if len(addrs) < 8 {
			return
		}
		b := make([]byte, 20)
		(IPv4Fields{ID: id, TTL: ttl, Protocol: proto, Src: netip.AddrFrom4([4]byte(addrs[0:4])),
			Dst: netip.AddrFrom4([4]byte(addrs[4:8]))}).Encode(b)
		ip, e := ParseIPv4(b)
		if e != OK {
			t.Fatal(e)
		}
		got := ip.DecrementTTL()
		want := ttl
		if ttl > 0 {
			want--
		}
		if got != want || ip.TTL() != want {
			t.Fatalf("DecrementTTL from %d = %d (field %d)", ttl, got, ip.TTL())
		}
		if !ip.ChecksumValid() {
			t.Fatalf("checksum %#04x invalid after DecrementTTL, full %#04x", ip.Checksum(), ip.ComputeChecksum())
		}
	})
}
