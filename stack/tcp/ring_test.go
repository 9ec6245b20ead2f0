package tcp

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

func ringBytes(r *ring, off, n int) string {
	a, b := r.peek(off, n)
	return string(a) + string(b)
}

// TestRingGrow: growing the logical capacity copies nothing; a write that then reaches past the physical
// buffer moves the held bytes and the out-of-order bytes past them, at their offsets, across the wrap.
func TestRingGrow(t *testing.T) {
	r := ring{size: 8}
	r.write([]byte("xxxxxx"))
	r.discard(6) // head at 6
	r.write([]byte("abc"))
	r.writeAt(1, []byte("ef")) // "abc", a one-byte hole, "ef"; the held bytes wrap
	if len(r.buf) != 8 || r.head != 6 {
		t.Fatalf("physical %d head %d, want 8, 6", len(r.buf), r.head)
	}
	old := &r.buf[0]
	r.grow(32)
	if r.cap() != 32 || r.free() != 29 || &r.buf[0] != old || r.head != 6 {
		t.Fatalf("grow: cap %d free %d, buffer moved %v, head %d", r.cap(), r.free(), &r.buf[0] != old, r.head)
	}
	r.writeAt(20, []byte("z")) // past the physical buffer: it doubles (here to the logical 32) and unwraps
	if len(r.buf) != 32 || r.head != 0 || ringBytes(&r, 0, 3) != "abc" {
		t.Fatalf("physical %d head %d held %q", len(r.buf), r.head, ringBytes(&r, 0, 3))
	}
	r.writeAt(0, []byte("d")) // fill the hole
	r.commit(3)
	if got := ringBytes(&r, 0, 10); got != "abcdef" {
		t.Fatalf("after grow %q, want abcdef", got)
	}
	r.writeAt(0, bytes.Repeat([]byte("."), 17))
	r.commit(18) // up to and with the "z"
	if got := ringBytes(&r, 6, 30); got != ".................z" {
		t.Fatalf("out-of-order byte past the old physical size: %q", got)
	}
}

// TestRingLazy: a ring holds no memory until written, grows by doubling from minRingAlloc (out-of-order
// writes far past the physical size included), gives it all back at the second fit without a write once
// empty, and grows again.
func TestRingLazy(t *testing.T) {
	r := ring{size: 256 << 10}
	if r.buf != nil || r.free() != 256<<10 || r.fit() {
		t.Fatal("a new ring holds memory")
	}
	r.write(make([]byte, 100))
	if len(r.buf) != minRingAlloc {
		t.Fatalf("first write: physical %d, want %d", len(r.buf), minRingAlloc)
	}
	r.writeAt(50000, []byte{1}) // out of order, far past the physical size
	if len(r.buf) != 64<<10 || r.end != 50101 {
		t.Fatalf("out-of-order write at 50100: physical %d end %d, want 64 KiB, 50101", len(r.buf), r.end)
	}
	r.discard(100)
	if !r.fit() || !r.fit() || len(r.buf) != 64<<10 {
		t.Fatal("a ring with out-of-order data gave its memory back")
	}
	// Fill the hole, commit, drain: now nothing lies past the held bytes.
	r.writeAt(0, make([]byte, 50000))
	r.commit(50001)
	if !r.fit() || len(r.buf) != 64<<10 {
		t.Fatal("fit right after a write changed the buffer")
	}
	r.discard(50000)
	// One byte left unread in a 64 KiB buffer: a fit without a write since the last one shrinks it.
	if !r.fit() || len(r.buf) != minRingAlloc {
		t.Fatalf("one byte left unread: physical %d, want %d", len(r.buf), minRingAlloc)
	}
	if ringBytes(&r, 0, 10) != "\x01" {
		t.Fatalf("shrink lost the held byte: %q", ringBytes(&r, 0, 10))
	}
	r.discard(1)
	if r.fit() || r.buf != nil || r.head != 0 {
		t.Fatalf("empty ring after an idle fit: physical %d head %d", len(r.buf), r.head)
	}
	r.write([]byte("again"))
	if len(r.buf) != minRingAlloc || ringBytes(&r, 0, 10) != "again" {
		t.Fatalf("re-grow: physical %d held %q", len(r.buf), ringBytes(&r, 0, 10))
	}
}

// TestRingModel cross-checks the ring against a plain byte model under random writes, out-of-order writes,
// commits, reads, discards, logical growth and fits, with small sizes so that wraps, growth at the wrap and
// writes past the physical size are frequent.
func TestRingModel(t *testing.T) {
	for seed := range uint64(80) {
		rng := rand.New(rand.NewPCG(seed, 7))
		size := 1 + rng.IntN(3*minRingAlloc)
		r := ring{size: size}
		var held []byte    // the held bytes
		var past []byte    // bytes past the held ones, by offset
		var written []bool // which of past were written
		var next byte
		fill := func(n int) []byte {
			p := make([]byte, n)
			for i := range p {
				next++
				p[i] = next
			}
			return p
		}
		for op := range 400 {
			switch k := rng.IntN(8); {
			case k < 2: // write
				p := fill(rng.IntN(2 * minRingAlloc))
				n := r.write(p)
				if want := min(len(p), size-len(held)); n != want {
					t.Fatalf("seed %d op %d: write took %d, want %d", seed, op, n, want)
				}
				held = append(held, p[:n]...)
				if n > 0 { // the bytes past the held ones shift: they are now overwritten or behind
					if n >= len(past) {
						past, written = nil, nil
					} else {
						past, written = past[n:], written[n:]
					}
				}
			case k < 4: // writeAt
				free := size - len(held)
				if free == 0 {
					continue
				}
				off := rng.IntN(free)
				p := fill(rng.IntN(free-off) + 1)
				r.writeAt(off, p)
				for len(past) < off+len(p) {
					past, written = append(past, 0), append(written, false)
				}
				copy(past[off:], p)
				for i := range p {
					written[off+i] = true
				}
			case k == 4: // commit the written prefix past the held bytes
				c := 0
				for c < len(written) && written[c] {
					c++
				}
				c = rng.IntN(c + 1)
				r.commit(c)
				held = append(held, past[:c]...)
				past, written = past[c:], written[c:]
			case k == 5: // read or discard
				n := rng.IntN(len(held) + 2)
				if rng.IntN(2) == 0 {
					p := make([]byte, n)
					m := r.read(p)
					if m != min(n, len(held)) || !bytes.Equal(p[:m], held[:m]) {
						t.Fatalf("seed %d op %d: read %d of %d", seed, op, m, n)
					}
					held = held[m:]
				} else {
					r.discard(n)
					held = held[min(n, len(held)):]
				}
			case k == 6:
				if rng.IntN(4) == 0 {
					size += rng.IntN(2 * minRingAlloc)
					r.grow(size)
				}
			default:
				r.fit()
			}
			if r.cap() != size || r.free() != size-len(held) || r.n != len(held) {
				t.Fatalf("seed %d op %d: cap %d free %d n %d, want %d %d %d", seed, op, r.cap(), r.free(), r.n, size, size-len(held), len(held))
			}
			if len(r.buf) > size || r.end > len(r.buf) || r.end < r.n {
				t.Fatalf("seed %d op %d: physical %d, end %d, held %d, size %d", seed, op, len(r.buf), r.end, r.n, size)
			}
			if got := ringBytes(&r, 0, size); got != string(held) {
				t.Fatalf("seed %d op %d: held bytes differ (%d vs %d)", seed, op, len(got), len(held))
			}
			for i, ok := range written { // every out-of-order byte is where its offset says
				if ok && r.buf[(r.head+r.n+i)%len(r.buf)] != past[i] {
					t.Fatalf("seed %d op %d: out-of-order byte at %d lost", seed, op, i)
				}
			}
		}
		// Drain: two fits with no write in between give all memory back once nothing lies past.
		r.discard(r.n)
		r.end = 0 // what is left past is given up (the receive side drops its out-of-order queue)
		r.fit()
		if r.fit() || r.buf != nil {
			t.Fatalf("seed %d: drained ring holds %d bytes", seed, len(r.buf))
		}
	}
}
