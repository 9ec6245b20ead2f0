package memlink

import "fmt"

// Frames is a pipeline.FrameSource over one heap slab, with exact accounting: it knows for every frame whether
// it is free or out, and records the first misuse (a Put of a free frame or of an address it never handed out)
// instead of corrupting its free list. It is used by one goroutine.
type Frames struct {
	mem            []byte
	size, headroom int
	free           []uint64 // LIFO, so a freed frame is reused soon and use-after-free shows quickly
	out            []bool   // by frame index
	nout           int
	err            error
}

// NewFrames makes a pool of n frames of size bytes with headroom reserved at the front of each.
func NewFrames(n, size, headroom int) *Frames {
	f := &Frames{mem: make([]byte, n*size), size: size, headroom: headroom, out: make([]bool, n)}
	f.free = make([]uint64, 0, n)
	for i := n - 1; i >= 0; i-- {
		f.free = append(f.free, uint64(i*size))
	}
	return f
}

// Get implements pipeline.FrameSource.
func (f *Frames) Get() (addr uint64, frame []byte, ok bool) {
	if len(f.free) == 0 {
		return 0, nil, false
	}
	addr = f.free[len(f.free)-1]
	f.free = f.free[:len(f.free)-1]
	f.out[addr/uint64(f.size)] = true
	f.nout++
	return addr, f.mem[addr : addr+uint64(f.size) : addr+uint64(f.size)], true
}

// Put implements pipeline.FrameSource.
func (f *Frames) Put(addr uint64) { f.put(addr, "put back by the handler") }

func (f *Frames) put(addr uint64, how string) {
	if addr%uint64(f.size) != 0 || addr/uint64(f.size) >= uint64(len(f.out)) {
		f.fail(fmt.Errorf("memlink: frame address %#x %s is not one this pool handed out", addr, how))
		return
	}
	i := addr / uint64(f.size)
	if !f.out[i] {
		f.fail(fmt.Errorf("memlink: frame %#x %s was already free (put back twice, or put back while still in a batch)", addr, how))
		return
	}
	f.out[i] = false
	f.nout--
	fr := f.mem[addr : addr+uint64(f.size)]
	for j := range fr {
		fr[j] = 0xdd
	}
	f.free = append(f.free, addr)
}

func (f *Frames) fail(err error) {
	if f.err == nil {
		f.err = err
	}
}

// Headroom implements pipeline.FrameSource.
func (f *Frames) Headroom() int { return f.headroom }

// Free is the number of free frames.
func (f *Frames) Free() int { return len(f.free) }

// Outstanding is the number of frames handed out and not yet put back.
func (f *Frames) Outstanding() int { return f.nout }

// Err is the first misuse seen, or nil.
func (f *Frames) Err() error { return f.err }
