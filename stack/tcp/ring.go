package tcp

// ring is a byte FIFO with a logical capacity. The send buffer keeps every byte from SND.UNA until it is
// acknowledged (RFC 9293 §3.8.1: "the sender must keep data until it is acknowledged"); the receive buffer
// holds in-order data waiting for the application and, past its end, out-of-order data at the offset its
// sequence number gives, so that the out-of-order queue costs no extra copy or allocation.
//
// The logical capacity (size: what the window advertisement, autotuning and free use) is kept apart from
// the memory that backs it (buf), which is allocated on use, as Linux allocates skbs as data arrives: buf
// starts empty, doubles from minRingAlloc up to size when a write reaches past it (an out-of-order write at
// an offset beyond it included), and is given back by fit once the ring has stayed unwritten for an idle
// interval and holds nothing. A connection that moves no data thus holds no buffer memory, whatever the
// window it offers (issue #12: 2000 idle connections held 1 GiB of full-size buffers). A transfer reaches
// its physical size once and keeps it while data flows, so the steady state neither allocates nor copies.
type ring struct {
	buf  []byte // physical memory, len(buf) <= size; the bytes at offsets [0, end) from head live in it
	size int    // logical capacity
	head int    // index in buf of the first byte
	n    int    // bytes held
	end  int    // offset from head past the furthest byte written (n <= end <= len(buf)): held + out-of-order
	used bool   // written since the last fit
}

// minRingAlloc is the first physical size of a ring: one page, a few segments.
const minRingAlloc = 4 << 10

func (r *ring) cap() int  { return r.size }
func (r *ring) free() int { return r.size - r.n }

// grow raises the logical capacity to n (n >= cap; autotuning, SetReadBuffer, SetWriteBuffer). It allocates and
// copies nothing: the physical buffer grows when data needs it.
func (r *ring) grow(n int) { r.size = max(r.size, n) }

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
	if len(p) == 0 {
		return
	}
	r.used = true
	need := r.n + off + len(p)
	if need > len(r.buf) {
		r.relayout(allocSize(need, r.size))
	}
	r.end = max(r.end, need)
	i := (r.head + r.n + off) % len(r.buf)
	k := copy(r.buf[i:], p)
	copy(r.buf, p[k:])
}

// allocSize is the physical size for need bytes: minRingAlloc doubled until it holds them, at most size.
func allocSize(need, size int) int {
	m := minRingAlloc
	for m < need {
		m *= 2
	}
	return min(m, size)
}

// relayout moves the written bytes (offsets [0, end) from head, held and out-of-order alike, holes kept) to
// a new buffer of m bytes with the first byte at index 0; m == 0 gives the memory back.
func (r *ring) relayout(m int) {
	var b []byte
	if m > 0 {
		b = make([]byte, m)
		if r.end > 0 {
			k := copy(b[:r.end], r.buf[r.head:])
			copy(b[k:r.end], r.buf)
		}
	}
	r.buf, r.head = b, 0
}

// fit gives memory back from a ring that was not written since the last fit: all of it when nothing is
// held or lies past the held bytes (for the receive ring: no out-of-order data), or the part beyond what
// the bytes it holds need. Called by the owner at most once per idle interval (bufIdleInterval); it returns
// whether the ring still holds memory.
func (r *ring) fit() bool {
	if r.used {
		r.used = false
		return true
	}
	switch {
	case r.end == 0:
		r.buf, r.head = nil, 0
	case len(r.buf) > 2*minRingAlloc && allocSize(r.end, r.size) <= len(r.buf)/4:
		r.relayout(allocSize(r.end, r.size)) // a few bytes left unread in a large buffer
	}
	return r.buf != nil
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
		return // also keeps an unallocated buffer from a division by zero
	}
	r.n -= n
	r.end -= n
	// head is not reset to 0 when the ring empties: out-of-order data past the end is placed relative to it.
	r.head = (r.head + n) % len(r.buf)
}
