package poller

import (
	"bytes"
	"encoding/binary"
	"runtime"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/rings"
	"github.com/xdpnet/xdpnet/umem"
)

// fakeKernel plays the kernel's side of one port's four rings.
type fakeKernel struct {
	fill *rings.CompRing // consumes the fill ring
	rx   *rings.TxRing   // produces RX
	tx   *rings.RxRing   // consumes TX
	comp *rings.FillRing // produces completions
}

func newFakeQueue(t testing.TB, nports, ringSize, frames int, h pipeline.Handler) (*queue, []*fakeKernel) {
	t.Helper()
	area, err := umem.New(umem.Options{Frames: frames, FrameSize: 2048, Headroom: 0})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { area.Close() })
	q := &queue{id: 0, cpu: -1, area: area, pool: umem.NewPool(area), fillPort: make([]uint16, area.Frames()), efd: -1, budget: 64, handler: h,
		fillGoal: uint32(ringSize), reserve: pipeline.MaxBatch}
	q.batch.Frames = q.pool
	var ks []*fakeKernel
	for range nports {
		// Start the indexes just below 2^32 so the test also crosses the wrap.
		fill, kfill := rings.NewFillPair(uint32(ringSize), 1<<32-100)
		comp, kcomp := rings.NewCompPair(uint32(ringSize), 1<<32-100)
		rx, krx := rings.NewRxPair(uint32(ringSize), 1<<32-100)
		tx, ktx := rings.NewTxPair(uint32(ringSize), 1<<32-100)
		q.ports = append(q.ports, qport{fill: fill, rx: rx, tx: tx, comp: comp})
		ks = append(ks, &fakeKernel{fill: kfill, rx: krx, tx: ktx, comp: kcomp})
	}
	return q, ks
}

// deliver receives up to n frames as a driver does: takes a fill entry, writes payload(i) at the RX offset,
// produces an RX descriptor.
func (k *fakeKernel) deliver(area *umem.Area, n int, payload func(i int, b []byte) int) int {
	fidx, got := k.fill.Peek(uint32(n))
	ridx, rgot := k.rx.Reserve(got)
	if rgot < got {
		k.fill.Cancel(got - rgot)
		got = rgot
	}
	for i := range got {
		addr := k.fill.Addr(fidx + i)
		off := uint64(area.RxOffset())
		l := payload(int(i), area.Frame(addr)[off:])
		d := k.rx.Desc(ridx + i)
		d.Addr, d.Len = addr+off, uint32(l)
	}
	k.fill.Release(got)
	k.rx.Submit(got)
	return int(got)
}

// transmit consumes every TX descriptor, hands each to sent, and completes it.
func (k *fakeKernel) transmit(area *umem.Area, sent func(b []byte)) int {
	idx, got := k.tx.Peek(k.tx.Size())
	cidx, cgot := k.comp.Reserve(got)
	if cgot < got {
		k.tx.Cancel(got - cgot)
		got = cgot
	}
	for i := range got {
		d := k.tx.Desc(idx + i)
		if sent != nil {
			sent(area.Bytes()[d.Addr : d.Addr+uint64(d.Len)])
		}
		k.comp.Set(cidx+i, d.Addr)
	}
	k.tx.Release(got)
	k.comp.Submit(got)
	return int(got)
}

// fwdHandler sends port 0 to port 1 and back; packets whose first byte is 0xdd are dropped as filtered; 0xee are
// left undecided; 0x55 are stolen and sent again from Tick.
type fwdHandler struct {
	held []pipeline.Packet
	gen  int // packets Tick generates per call
}

func (h *fwdHandler) Process(b *pipeline.Batch) {
	for i := range b.Packets() {
		p := &b.Pkts[i]
		switch p.Data()[0] {
		case 0xdd:
			p.Drop(pipeline.DropFiltered)
		case 0xee:
		case 0x55:
			p.Steal()
			h.held = append(h.held, *p)
		default:
			p.Send(1 - p.InPort)
		}
	}
}

func (h *fwdHandler) Tick(b *pipeline.Batch) int64 {
	for _, p := range h.held {
		p.Send(p.InPort)
		b.Append(&p)
	}
	h.held = h.held[:0]
	for range h.gen {
		p, ok := b.Alloc()
		if !ok {
			break
		}
		p.SetLen(60)
		p.Data()[0] = 0x77
		p.Send(0)
	}
	return 0
}

func TestLoopVerdictsOverFakeRings(t *testing.T) {
	h := &fwdHandler{held: make([]pipeline.Packet, 0, 64), gen: 1}
	q, ks := newFakeQueue(t, 2, 256, 2048, h)
	q.refill()
	kinds := []byte{0x01, 0xdd, 0xee, 0x55, 0x02}
	n := ks[0].deliver(q.area, 5, func(i int, b []byte) int {
		b[0] = kinds[i]
		binary.BigEndian.PutUint32(b[1:], uint32(i))
		return 64 + i
	})
	if n != 5 {
		t.Fatalf("delivered %d", n)
	}
	q.step(1)
	var on0, on1 [][]byte
	ks[0].transmit(q.area, func(b []byte) { on0 = append(on0, bytes.Clone(b)) })
	ks[1].transmit(q.area, func(b []byte) { on1 = append(on1, bytes.Clone(b)) })
	// Port 1 gets the two forwarded packets intact; port 0 the stolen one sent back from Tick and one generated.
	if len(on1) != 2 || on1[0][0] != 0x01 || len(on1[0]) != 64 || on1[1][0] != 0x02 || len(on1[1]) != 68 ||
		binary.BigEndian.Uint32(on1[1][1:]) != 4 {
		t.Fatalf("port 1 sent %x", on1)
	}
	if len(on0) != 2 || on0[0][0] != 0x55 || len(on0[0]) != 67 || on0[1][0] != 0x77 {
		t.Fatalf("port 0 sent %x", on0)
	}
	if q.drops[pipeline.DropFiltered] != 1 || q.drops[pipeline.DropUnhandled] != 1 {
		t.Fatalf("drops filtered=%d unhandled=%d", q.drops[pipeline.DropFiltered], q.drops[pipeline.DropUnhandled])
	}
	h.gen = 0
	q.step(2)
	if err := q.account().Check(); err != nil {
		t.Fatal(err)
	}
	a := q.account()
	if a.TX != 0 || a.InFlight != 0 || a.Held != 0 || a.Fill != 2*256 || a.FillRing != 2*256 || a.InKernelRX != 0 {
		t.Fatalf("accounting after completion: %v", a)
	}
	q.publish()
	if got := q.ports[0].pub.rxPackets.Load(); got != 5 {
		t.Fatalf("published rx %d", got)
	}
}

func TestLoopTxRingFullAndBadPort(t *testing.T) {
	h := &fwdHandler{held: make([]pipeline.Packet, 0, 64)}
	q, ks := newFakeQueue(t, 2, 8, 512, h)
	q.refill()
	// 8 packets to forward to port 1 whose TX ring holds 8: all fit; 8 more before the kernel sends: all drop.
	for round := 0; round < 2; round++ {
		ks[0].deliver(q.area, 8, func(i int, b []byte) int { b[0] = 1; return 60 })
		q.step(int64(round))
	}
	if q.drops[pipeline.DropTxRingFull] != 8 || q.ports[1].local.txFull != 8 {
		t.Fatalf("tx ring full drops %d, counted %d", q.drops[pipeline.DropTxRingFull], q.ports[1].local.txFull)
	}
	ks[1].transmit(q.area, nil)
	q.step(3)
	if err := q.account().Check(); err != nil {
		t.Fatal(err)
	}
	if a := q.account(); a.TX != 0 || a.InFlight != 0 {
		t.Fatalf("%v", a)
	}
}

// TestLoopNoAllocs is the steady state of forwarding: 100k packets through the loop with no heap allocation.
func TestLoopNoAllocs(t *testing.T) {
	h := &fwdHandler{held: make([]pipeline.Packet, 0, 256)}
	q, ks := newFakeQueue(t, 2, 512, 4096, h)
	q.refill()
	payload := func(i int, b []byte) int { b[0] = byte(i & 1); return 60 }
	round := func() {
		ks[0].deliver(q.area, 64, payload)
		ks[1].deliver(q.area, 64, payload)
		q.step(1)
		ks[0].transmit(q.area, nil)
		ks[1].transmit(q.area, nil)
	}
	for range 100 { // warm up
		round()
	}
	allocs := testing.AllocsPerRun(100, round)
	if allocs != 0 {
		t.Fatalf("%v allocations per batch of 128 packets", allocs)
	}
	var ms0, ms1 runtime.MemStats
	before := q.ports[1].local.txPackets + q.ports[0].local.txPackets
	runtime.ReadMemStats(&ms0)
	for range 100_000 / 128 {
		round()
	}
	runtime.ReadMemStats(&ms1)
	fwd := q.ports[1].local.txPackets + q.ports[0].local.txPackets - before
	if fwd < 99_000 {
		t.Fatalf("forwarded %d", fwd)
	}
	if d := ms1.Mallocs - ms0.Mallocs; d > 10 { // the runtime itself may allocate a little in the background
		t.Fatalf("%d mallocs over %d forwarded packets", d, fwd)
	}
	if err := q.account().Check(); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkLoopForward(b *testing.B) {
	h := &fwdHandler{held: make([]pipeline.Packet, 0, 256)}
	q, ks := newFakeQueue(b, 2, 512, 4096, h)
	q.refill()
	payload := func(i int, buf []byte) int { buf[0] = 1; return 60 }
	b.ReportAllocs()
	for b.Loop() {
		ks[0].deliver(q.area, 64, payload)
		q.step(1)
		ks[1].transmit(q.area, nil)
	}
	b.ReportMetric(64, "pkts/op")
}

// TestPublishedRingLevelsFakeRings: the ring levels and free frames that Stats and the metrics show are the
// rings' real occupancy at the end of a batch.
func TestPublishedRingLevelsFakeRings(t *testing.T) {
	q, ks := newFakeQueue(t, 2, 256, 2048, &fwdHandler{})
	q.refill()
	ks[0].deliver(q.area, 10, func(i int, b []byte) int { b[0] = 1; return 60 })
	q.publish()
	p0 := &q.ports[0].pub
	if p0.rxLevel.Load() != 10 || p0.fillLevel.Load() != 246 || q.pubFree.Load() != int64(q.pool.Len()) {
		t.Fatalf("before the batch: rx %d fill %d free %d (pool %d), want 10, 246, pool",
			p0.rxLevel.Load(), p0.fillLevel.Load(), q.pubFree.Load(), q.pool.Len())
	}
	q.step(1) // forwards the 10 to port 1 and publishes
	p1 := &q.ports[1].pub
	if p0.rxLevel.Load() != 0 || p1.txLevel.Load() != 10 || p1.compLevel.Load() != 0 {
		t.Fatalf("after the batch: rx %d, port 1 tx %d comp %d; want 0, 10, 0", p0.rxLevel.Load(), p1.txLevel.Load(), p1.compLevel.Load())
	}
	ks[1].transmit(q.area, nil)
	q.publish()
	if p1.txLevel.Load() != 0 || p1.compLevel.Load() != 10 {
		t.Fatalf("after the kernel sent them: tx %d comp %d, want 0, 10", p1.txLevel.Load(), p1.compLevel.Load())
	}
}

// inject produces raw RX descriptors on k's RX ring, as a buggy driver or kernel might.
func (k *fakeKernel) inject(t *testing.T, descs ...unix.XDPDesc) {
	t.Helper()
	idx, got := k.rx.Reserve(uint32(len(descs)))
	if int(got) != len(descs) {
		t.Fatalf("RX ring has room for %d of %d descriptors", got, len(descs))
	}
	for i, d := range descs {
		*k.rx.Desc(idx + uint32(i)) = d
	}
	k.rx.Submit(got)
}

// countHandler counts the packets it is given and forwards them all to port 1.
type countHandler struct{ seen int }

func (h *countHandler) Process(b *pipeline.Batch) {
	for i := range b.Packets() {
		h.seen++
		b.Pkts[i].Send(1)
	}
}

func (h *countHandler) Tick(*pipeline.Batch) int64 { return 0 }

// TestRxDescriptorValidationFakeRings: RX descriptors the poller did not lend out - outside the UMEM, a
// duplicate within one batch, a free frame, a frame on a TX ring - and one whose length runs past its frame
// are refused and counted by name; the handler never sees them, nothing panics, and the frame accounting
// stays exact (no frame freed or sent twice).
func TestRxDescriptorValidationFakeRings(t *testing.T) {
	h := &countHandler{}
	q, ks := newFakeQueue(t, 2, 64, 512, h)
	q.refill()
	off := uint64(q.area.RxOffset())
	// Three frames the fake kernel takes from the fill ring, as a driver does.
	fidx, got := ks[0].fill.Peek(3)
	if got != 3 {
		t.Fatalf("fill ring gave %d", got)
	}
	a, b, c := ks[0].fill.Addr(fidx), ks[0].fill.Addr(fidx+1), ks[0].fill.Addr(fidx+2)
	ks[0].fill.Release(3)
	fs := uint64(q.area.FrameSize())
	// The pool hands out low addresses first: the last frame stays free through the refills of this test.
	free := uint64(q.area.Frames()-1) * fs
	if q.pool.StateOf(free) != umem.Free {
		t.Fatalf("last frame is %v", q.pool.StateOf(free))
	}
	ks[0].inject(t,
		unix.XDPDesc{Addr: a + off, Len: 60},                           // good
		unix.XDPDesc{Addr: a + off, Len: 60},                           // the same frame again
		unix.XDPDesc{Addr: uint64(len(q.area.Bytes())) + off, Len: 60}, // outside the UMEM
		unix.XDPDesc{Addr: free + off, Len: 60},                        // a free frame
		unix.XDPDesc{Addr: b + off, Len: uint32(fs)},                   // runs past the frame
		unix.XDPDesc{Addr: c + off, Len: 64},                           // good
	)
	q.step(1)
	if h.seen != 2 {
		t.Fatalf("handler saw %d packets, want the 2 good ones", h.seen)
	}
	p := &q.ports[0].local
	if p.rxBadAddr != 1 || p.rxNotOwned != 2 || p.rxBadLen != 1 || p.rxPackets != 2 {
		t.Fatalf("bad_addr %d not_owned %d bad_len %d rx %d, want 1 2 1 2", p.rxBadAddr, p.rxNotOwned, p.rxBadLen, p.rxPackets)
	}
	if st := q.pool.StateOf(b); st != umem.Fill && st != umem.Free {
		t.Fatalf("the over-long frame is %v, want back in the pool (or refilled)", st)
	}
	// The two good frames are on port 1's TX ring now: a stale RX descriptor naming one of them is refused too.
	ks[0].inject(t, unix.XDPDesc{Addr: c + off, Len: 64})
	q.step(2)
	if h.seen != 2 || p.rxNotOwned != 3 {
		t.Fatalf("a frame on the TX ring was received again: seen %d, not_owned %d", h.seen, p.rxNotOwned)
	}
	if n := ks[1].transmit(q.area, nil); n != 2 {
		t.Fatalf("port 1 sent %d, want 2", n)
	}
	q.step(3)
	a0 := q.account()
	if err := a0.Check(); err != nil {
		t.Fatal(err)
	}
	if a0.Violations != 0 || a0.InFlight != 0 || a0.TX != 0 {
		t.Fatalf("accounting %v, violations %d", a0, a0.Violations)
	}
	q.publish()
	var s PortStats
	s.RxBadAddr, s.RxNotOwned, s.RxBadLen = q.ports[0].pub.rxBadAddr.Load(), q.ports[0].pub.rxNotOwned.Load(), q.ports[0].pub.rxBadLen.Load()
	if s.RxBadAddr != 1 || s.RxNotOwned != 3 || s.RxBadLen != 1 {
		t.Fatalf("published %+v", s)
	}
}
