package stack

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/xdpnet/xdpnet/proto"
)

// TestChecksum20MatchesProto cross-checks the unrolled 20-byte header check with proto's reference on
// valid headers (every checksum value reached, including the 0x0000/0xffff edge) and on corrupted ones.
func TestChecksum20MatchesProto(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	var h [20]byte
	check := func() {
		t.Helper()
		if got, want := checksum20Valid(&h), proto.IPv4(h[:]).ChecksumValid(); got != want {
			t.Fatalf("header % x: checksum20Valid %v, proto %v", h, got, want)
		}
	}
	for i := range 200000 {
		for j := range h {
			h[j] = byte(r.Uint32())
		}
		if i%4 == 0 { // headers of all-ones and all-zero words, where folding has its edges
			for j := range h {
				h[j] = []byte{0, 0xff}[r.IntN(2)]
			}
		}
		h[0] = 0x45 // proto reads the header length from IHL
		check()     // almost always invalid
		h[10], h[11] = 0, 0
		binary.BigEndian.PutUint16(h[10:], proto.Checksum(h[:]))
		check() // valid
		h[1+r.IntN(19)] ^= byte(1 << r.IntN(8))
		check()
	}
	if h = [20]byte{}; checksum20Valid(&h) {
		t.Error("an all-zero header passes")
	}
}
