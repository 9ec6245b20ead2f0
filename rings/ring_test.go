package rings

import (
	"errors"
	"math"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// starts covers a fresh ring and rings whose indexes wrap past 2^32 during the test.
var starts = []uint32{0, math.MaxUint32 - 2, math.MaxUint32 - 7, 1 << 31}

func TestFillRingFullEmptyWrap(t *testing.T) {
	for _, start := range starts {
		u, k := NewFillPair(8, start)
		// Empty: the kernel sees nothing.
		if _, got := k.Peek(4); got != 0 {
			t.Fatalf("start %#x: kernel peeked %d from an empty ring", start, got)
		}
		// Full: 8 entries fit, the 9th does not.
		idx, got := u.Reserve(10)
		if got != 8 || idx != start {
			t.Fatalf("start %#x: Reserve(10) = %#x, %d; want %#x, 8", start, idx, got, start)
		}
		for i := range got {
			u.Set(idx+i, uint64(i)*2048)
		}
		u.Submit(got)
		if _, got := u.Reserve(1); got != 0 {
			t.Fatalf("start %#x: reserved on a full ring", start)
		}
		if u.Free() != 0 || u.Pending() != 8 {
			t.Fatalf("start %#x: Free=%d Pending=%d", start, u.Free(), u.Pending())
		}
		// Partial consume: the kernel takes 3, the producer gets exactly 3 slots back.
		kidx, kgot := k.Peek(3)
		if kgot != 3 || kidx != start {
			t.Fatalf("start %#x: kernel Peek(3) = %#x, %d", start, kidx, kgot)
		}
		for i := range kgot {
			if a := k.Addr(kidx + i); a != uint64(i)*2048 {
				t.Fatalf("start %#x: entry %d = %d", start, i, a)
			}
		}
		k.Release(kgot)
		idx, got = u.Reserve(5)
		if got != 3 || idx != start+8 {
			t.Fatalf("start %#x: Reserve(5) after 3 released = %#x, %d", start, idx, got)
		}
		for i := range got {
			u.Set(idx+i, 100+uint64(i))
		}
		u.Submit(got)
		// The kernel drains the rest in partial batches and sees the wrapped entries in order.
		want := []uint64{3 * 2048, 4 * 2048, 5 * 2048, 6 * 2048, 7 * 2048, 100, 101, 102}
		var seen []uint64
		for {
			kidx, kgot := k.Peek(3)
			if kgot == 0 {
				break
			}
			for i := range kgot {
				seen = append(seen, k.Addr(kidx+i))
			}
			k.Release(kgot)
		}
		if len(seen) != len(want) {
			t.Fatalf("start %#x: drained %v, want %v", start, seen, want)
		}
		for i := range want {
			if seen[i] != want[i] {
				t.Fatalf("start %#x: drained %v, want %v", start, seen, want)
			}
		}
		if p, c := u.Indexes(); p != start+11 || c != start+11 {
			t.Fatalf("start %#x: indexes %#x %#x", start, p, c)
		}
		if u.Free() != 8 {
			t.Fatalf("start %#x: Free after drain = %d", start, u.Free())
		}
	}
}

func TestDescRingPartialBatchesAcrossWrap(t *testing.T) {
	for _, start := range starts {
		rx, krx := NewRxPair(4, start) // krx is the kernel producing RX
		var next uint64
		var got []uint64
		for round := 0; round < 10; round++ {
			// Kernel produces 1..3 descriptors, user peeks at most 2 at a time.
			idx, n := krx.Reserve(uint32(round%3 + 1))
			for i := range n {
				d := krx.Desc(idx + i)
				d.Addr, d.Len = next, uint32(next)+60
				next++
			}
			krx.Submit(n)
			for {
				idx, n := rx.Peek(2)
				if n == 0 {
					break
				}
				for i := range n {
					d := rx.Desc(idx + i)
					if d.Len != uint32(d.Addr)+60 {
						t.Fatalf("start %#x: desc %+v corrupted", start, *d)
					}
					got = append(got, d.Addr)
				}
				rx.Release(n)
			}
		}
		for i, a := range got {
			if a != uint64(i) {
				t.Fatalf("start %#x: order %v", start, got)
			}
		}
		if uint64(len(got)) != next {
			t.Fatalf("start %#x: received %d of %d", start, len(got), next)
		}
	}
}

func TestCancel(t *testing.T) {
	tx, ktx := NewTxPair(8, math.MaxUint32-1)
	idx, n := tx.Reserve(4)
	for i := range n {
		tx.Desc(idx + i).Addr = uint64(i)
	}
	tx.Submit(2)
	tx.Cancel(2)
	if _, n := ktx.Peek(8); n != 2 {
		t.Fatalf("kernel saw %d, want 2", n)
	}
	ktx.Cancel(1)
	ktx.Release(1)
	if p := tx.Pending(); p != 1 {
		t.Fatalf("pending %d, want 1", p)
	}
	if _, n := tx.Reserve(8); n != 7 {
		t.Fatalf("Reserve after cancel got %d, want 7", n)
	}
}

func TestNeedWakeupFlag(t *testing.T) {
	f, kf := NewFillPair(4, 0)
	if f.NeedWakeup() {
		t.Fatal("flag set on a new ring")
	}
	kf.SetNeedWakeup(true)
	if !f.NeedWakeup() {
		t.Fatal("flag set by the kernel side not seen")
	}
	kf.SetNeedWakeup(false)
	if f.NeedWakeup() {
		t.Fatal("flag cleared not seen")
	}
}

func TestCheckSize(t *testing.T) {
	for _, n := range []int{1, 2, 2048, 1 << 30} {
		if err := CheckSize("RX ring", n); err != nil {
			t.Errorf("%d: %v", n, err)
		}
	}
	for _, n := range []int{0, -4, 3, 1000, 2049} {
		err := CheckSize("RX ring", n)
		if !errors.Is(err, ErrRingSize) || !strings.Contains(err.Error(), "power of two") {
			t.Errorf("%d: %v", n, err)
		}
	}
	if err := CheckSize("RX ring", 1000); !strings.Contains(err.Error(), "512 or 1024") {
		t.Errorf("1000: %v does not suggest 512 or 1024", err)
	}
}

func TestExplainErrors(t *testing.T) {
	for _, c := range []struct {
		step   string
		queue  int
		queues int
		bind   BindMode
		errno  error
		kind   error
		says   []string
	}{
		{"create socket", 0, 1, BindAuto, unix.EPERM, ErrPermission, []string{"root", "CAP_NET_ADMIN", "CAP_BPF", "CAP_NET_RAW", "CAP_IPC_LOCK"}},
		{"bind", 3, 4, BindAuto, unix.EBUSY, ErrQueueBusy, []string{"queue 3 of eth9 is already bound by another AF_XDP socket"}},
		{"bind", 0, 1, BindAuto, unix.ENODEV, ErrNoDevice, []string{"eth9 does not exist"}},
		{"bind", 4, 2, BindAuto, unix.EINVAL, ErrNoQueue, []string{"2 queue(s)", "ethtool -L eth9 combined 5"}},
		{"bind", 0, 2, BindZeroCopy, unix.EOPNOTSUPP, ErrZeroCopy, []string{"copy or auto"}},
		{"create socket", 0, 0, BindAuto, unix.EAFNOSUPPORT, ErrNotSupported, []string{"CONFIG_XDP_SOCKETS"}},
	} {
		err := explain(c.step, "eth9", c.queue, c.queues, c.bind, c.errno)
		if !errors.Is(err, c.kind) || !errors.Is(err, c.errno) {
			t.Errorf("%s %v: %v is not %v and %v", c.step, c.errno, err, c.kind, c.errno)
		}
		for _, s := range c.says {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("%s %v: %q does not say %q", c.step, c.errno, err, s)
			}
		}
	}
}

func TestParseBindMode(t *testing.T) {
	for _, m := range []BindMode{BindAuto, BindZeroCopy, BindCopy} {
		if got, err := ParseBindMode(m.String()); err != nil || got != m {
			t.Errorf("%v: %v, %v", m, got, err)
		}
	}
	if _, err := ParseBindMode("fast"); err == nil {
		t.Error("ParseBindMode(fast) succeeded")
	}
}

func TestRingNoAllocs(t *testing.T) {
	f, kf := NewFillPair(64, 0)
	n := testing.AllocsPerRun(1000, func() {
		idx, got := f.Reserve(16)
		for i := range got {
			f.Set(idx+i, uint64(i))
		}
		f.Submit(got)
		kidx, kgot := kf.Peek(16)
		_ = kf.Addr(kidx)
		kf.Release(kgot)
	})
	if n != 0 {
		t.Fatalf("%v allocations per batch", n)
	}
}

func BenchmarkFillBatch64(b *testing.B) {
	f, kf := NewFillPair(2048, 0)
	b.ReportAllocs()
	for b.Loop() {
		idx, got := f.Reserve(64)
		for i := range got {
			f.Set(idx+i, uint64(i))
		}
		f.Submit(got)
		_, kgot := kf.Peek(64)
		kf.Release(kgot)
	}
}
