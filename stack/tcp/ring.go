package tcp

// ring is a fixed-capacity byte FIFO. The send buffer keeps every byte from SND.UNA until it is
// acknowledged (RFC 9293 §3.8.1: "the sender must keep data until it is acknowledged"); the receive buffer
// holds in-order data waiting for the application and, past its end, out-of-order data at the offset its
// sequence number gives, so that the out-of-order queue costs no extra copy or allocation.
type ring struct {
	buf  []byte
	head int // index of the first byte
	n    int // bytes held
}

func (r *ring) cap() int  { return len(r.buf) }
func (r *ring) free() int { return len(r.buf) - r.n }

// write appends as much of p as fits and returns how much.
func (r *ring) write(p []byte) int {
	n := min(len(p), r.free())
	r.writeAt(0, p[:n])
	r.n += n
	return n
}

// writeAt copies p to the free space at offset off past the held bytes without making it held; the caller
// guarantees off+len(p) <= free().
func (r *ring) writeAt(off int, p []byte) {
	if len(r.buf) == 0 {
		return
	}
	i := (r.head + r.n + off) % len(r.buf)
	k := copy(r.buf[i:], p)
	copy(r.buf, p[k:])
}

// commit makes n bytes written with writeAt held.
func (r *ring) commit(n int) { r.n += n }

// read moves up to len(p) bytes out.
func (r *ring) read(p []byte) int {
	a, b := r.peek(0, len(p))
	k := copy(p, a)
	k += copy(p[k:], b)
	r.discard(k)
	return k
}

// peek returns up to n held bytes starting at off, as two slices (the second non-empty at the wrap).
func (r *ring) peek(off, n int) ([]byte, []byte) {
	if off >= r.n || n <= 0 {
		return nil, nil
	}
	n = min(n, r.n-off)
	i := (r.head + off) % len(r.buf)
	if i+n <= len(r.buf) {
		return r.buf[i : i+n], nil
	}
	return r.buf[i:], r.buf[:n-(len(r.buf)-i)]
}

// discard drops n held bytes from the front.
func (r *ring) discard(n int) {
	n = min(n, r.n)
	if n == 0 {
		return // also keeps a released (nil) buffer from a division by zero
	}
	r.n -= n
	// head is not reset to 0 when the ring empties: out-of-order data past the end is placed relative to it.
	r.head = (r.head + n) % len(r.buf)
}

// grow moves the ring to a new buffer of n bytes (n > cap) with the first byte at index 0. Every byte of the
// old capacity moves, held or not: out-of-order data past the held bytes keeps its offset from head.
func (r *ring) grow(n int) {
	b := make([]byte, n)
	k := copy(b, r.buf[r.head:])
	copy(b[k:], r.buf[:r.head])
	r.buf, r.head = b, 0
}
