package umem

import (
	"errors"
	"strings"
	"testing"
)

func newArea(t *testing.T, frames, size int) *Area {
	t.Helper()
	a, err := New(Options{Frames: frames, FrameSize: size, Headroom: 0})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return a
}

func TestNewRejectsBadFrameSize(t *testing.T) {
	for _, fs := range []int{0, 1000, 3000, 8192, -1} {
		_, err := New(Options{Frames: 4, FrameSize: fs})
		if !errors.Is(err, ErrFrameSize) {
			t.Errorf("frame size %d: err = %v, want ErrFrameSize", fs, err)
			continue
		}
		if !strings.Contains(err.Error(), "2048 or 4096") {
			t.Errorf("frame size %d: error %q does not say which sizes are valid", fs, err)
		}
	}
	if _, err := New(Options{Frames: 4, FrameSize: 2048, Headroom: 2000}); err == nil || !strings.Contains(err.Error(), "headroom") {
		t.Errorf("headroom 2000 in 2048 frames: err = %v", err)
	}
}

func TestHugePagesFallback(t *testing.T) {
	// Either huge pages are there or the fallback must work; both give a usable Area.
	a, err := New(Options{Frames: 16, FrameSize: 4096, HugePages: true})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	a.Bytes()[len(a.Bytes())-1] = 1
	if len(a.Frame(15*4096+77)) != 4096 {
		t.Fatal("frame length")
	}
}

func TestPoolGetPutAccounting(t *testing.T) {
	a := newArea(t, 8, 2048)
	p := NewPool(a)
	if err := p.Account().CheckAllFree(); err != nil {
		t.Fatal(err)
	}
	seen := map[uint64]bool{}
	var addrs []uint64
	for range 8 {
		addr, f, ok := p.Get()
		if !ok || len(f) != 2048 || addr%2048 != 0 || seen[addr] {
			t.Fatalf("Get = %#x, %d, %v", addr, len(f), ok)
		}
		seen[addr] = true
		addrs = append(addrs, addr)
	}
	if _, _, ok := p.Get(); ok {
		t.Fatal("Get from empty pool succeeded")
	}
	ac := p.Account()
	if ac.InFlight != 8 || ac.Free != 0 {
		t.Fatalf("accounting %v", ac)
	}
	p.Mark(addrs[0], InFlight, TX)
	p.Mark(addrs[1], InFlight, Held)
	p.Complete(addrs[0] + 300) // the kernel may return the data address, not the frame base
	p.Put(addrs[1])
	for _, ad := range addrs[2:] {
		p.Put(ad)
	}
	if err := p.Account().CheckAllFree(); err != nil {
		t.Fatal(err)
	}
}

func TestPoolCatchesDoublePut(t *testing.T) {
	a := newArea(t, 4, 2048)
	p := NewPool(a)
	addr, _, _ := p.Get()
	p.Put(addr)
	p.Put(addr)             // double free
	p.Put(uint64(4 * 2048)) // outside
	p.Complete(addr)        // completion of a frame never sent
	ac := p.Account()
	if ac.Violations != 3 || ac.StackDepth != 4 {
		t.Fatalf("accounting %v violations %d depth %d", ac, ac.Violations, ac.StackDepth)
	}
	if err := ac.Check(); err == nil || !strings.Contains(err.Error(), "double put") {
		t.Fatalf("Check = %v, want double put", err)
	}
}

func TestPoolNoAllocs(t *testing.T) {
	a := newArea(t, 64, 2048)
	p := NewPool(a)
	n := testing.AllocsPerRun(1000, func() {
		addr, _, _ := p.Get()
		p.Mark(addr, InFlight, TX)
		p.Complete(addr)
		a2, _ := p.GetAddr(Fill)
		p.Mark(a2, Fill, InFlight)
		p.Put(a2)
	})
	if n != 0 {
		t.Fatalf("%v allocations per Get/Put", n)
	}
}

func BenchmarkPoolGetPut(b *testing.B) {
	a, _ := New(Options{Frames: 64, FrameSize: 2048})
	defer a.Close()
	p := NewPool(a)
	b.ReportAllocs()
	for b.Loop() {
		addr, _ := p.GetAddr(InFlight)
		p.Put(addr)
	}
}
