package poller

import (
	"math/bits"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/rings"
	"github.com/xdpnet/xdpnet/umem"
)

// qport is one port as seen by one queue: that queue's socket on the port and its four rings.
type qport struct {
	sock *rings.Socket // nil in tests over fake rings
	fill *rings.FillRing
	rx   *rings.RxRing
	tx   *rings.TxRing
	comp *rings.CompRing

	// kickAlways: copy mode transmits inside sendto, so every TX submit needs a kick.
	kickAlways bool
	// gone: the port has no socket (its link was deleted, or reopening it failed); its rings are unmapped and
	// nil, and every loop skips it. down: TX to the port is dropped as link_down (down or gone). ifindex: the
	// interface the socket is bound to. All three belong to the queue goroutine (syncLinks changes them).
	gone, down bool
	ifindex    int
	// statSock is sock for Stats, which runs on other goroutines while syncLinks may replace sock.
	// kbase sums the kernel counters of the sockets this port had before (closed on link deletion).
	statSock atomic.Pointer[rings.Socket]
	kbase    atomic.Pointer[unix.XDPStatistics]
	// txReserved: descriptors written this batch and not yet submitted. txOutstanding: submitted, not completed.
	txReserved, txOutstanding uint32

	local portCounters // owned by the loop
	pub   pubPort      // published once per batch
}

type portCounters struct {
	rxPackets, rxBytes, txPackets, txBytes, fillEmpty, txFull uint64
	rxBadAddr, rxNotOwned, rxBadLen                           uint64
}

type pubPort struct {
	rxPackets, rxBytes, txPackets, txBytes, fillEmpty, txFull atomic.Uint64
	rxBadAddr, rxNotOwned, rxBadLen                           atomic.Uint64
	// Ring levels at the end of the last batch: entries produced and not yet consumed on each ring.
	fillLevel, rxLevel, txLevel, compLevel atomic.Uint32
}

// queue is one queue index across every port: the poller's unit of work, owned by one goroutine.
type queue struct {
	id       int
	cpu      int // -1: not pinned
	area     *umem.Area
	pool     *umem.Pool
	ports    []qport
	handler  pipeline.Handler
	budget   uint32
	fillGoal uint32 // frames to keep in each fill ring
	reserve  int    // frames refill leaves in the pool for generated packets
	// fillPort is, for each frame (by index) last given to a fill ring, the port of that ring. A socket's
	// kernel buffer pool keeps frames it took from the fill ring until it receives into them; when the link is
	// deleted they go with the pool, and closePort needs to know which frames were that port's.
	fillPort []uint16

	batch pipeline.Batch

	drops     pipeline.DropCounters
	dirty     [pipeline.MaxDropReasons / 64]uint64 // reasons changed since the last publish
	pubDrops  [pipeline.MaxDropReasons]atomic.Uint64
	changed   bool
	busyLoops uint64 // loops that found work
	idleLoops uint64 // loops that found none
	sleeps    uint64
	pubLoops  struct{ busy, idle, sleeps atomic.Uint64 }
	pubFree   atomic.Int64 // frames in the pool at the end of the last batch
	tid       atomic.Int32

	// Link events: the generation of the poller's link table this queue has acted on, the queue's view of
	// the ports (MTU, ifindex as last seen), and whether its thread is in the ports' network namespace
	// (needed to bind a socket to a re-created interface: bind resolves the ifindex in the socket's namespace).
	linkGen uint64
	info    []pipeline.PortInfo
	inNS    bool

	// Sleeping and waking (Adaptive mode). efdMu guards efd against Close (release) while an application
	// goroutine wakes the queue; the queue goroutine itself reads efd without it, since release never runs
	// while the queue does.
	efdMu    sync.RWMutex
	efd      int
	sleeping atomic.Bool
	pollfds  []unix.PollFd
	wakeAt   int64
	busyPoll bool
	idle     idlePolicy
	probe    wakeProbe // debug builds only (wakeprobe.go)
}

// waker is the queue's pipeline.Waker.
type waker struct{ q *queue }

var one = [8]byte{1}

// Wake writes the eventfd only when the queue sleeps (or is about to): the queue sets sleeping before its last
// Tick, so a wake either finds that Tick or finds sleeping set. It is safe at any time, after Close too (then
// it does nothing): the read lock keeps Close from closing the eventfd - and the number being reused for
// another file - between the check and the write. It is taken only when the queue sleeps, off the hot path.
func (w waker) Wake() {
	if w.q.sleeping.Load() {
		w.q.kick()
	}
}

// kick writes the eventfd unless it is closed.
func (q *queue) kick() {
	q.efdMu.RLock()
	if q.efd >= 0 {
		unix.Write(q.efd, one[:])
	}
	q.efdMu.RUnlock()
}

// closeEventfd closes the eventfd once no Wake is writing it.
func (q *queue) closeEventfd() {
	q.efdMu.Lock()
	if q.efd >= 0 {
		unix.Close(q.efd)
		q.efd = -1
	}
	q.efdMu.Unlock()
}

var epoch = time.Now()

// now is the poller's monotonic clock in ns, the one Batch.Now and Tick's wakeAt use.
func now() int64 { return int64(time.Since(epoch)) }

// step is one loop iteration; it returns how many packets it moved (RX, generated, completed).
func (q *queue) step(t int64) int {
	work := q.reap()
	q.refill()
	for i := range q.ports {
		work += q.receive(i, t)
	}
	b := &q.batch
	b.Reset(t)
	q.wakeAt = pipeline.Tick(q.handler, b)
	work += b.N
	q.place()
	q.flushTX()
	q.probeFlushed()
	if q.changed {
		q.publish()
	}
	return work
}

// reap returns completed TX frames to the pool.
func (q *queue) reap() int {
	n := 0
	for i := range q.ports {
		p := &q.ports[i]
		if p.txOutstanding == 0 || p.gone {
			continue
		}
		idx, got := p.comp.Peek(p.comp.Size())
		for j := range got {
			q.pool.Complete(p.comp.Addr(idx + j))
		}
		if got > 0 {
			p.comp.Release(got)
			p.txOutstanding -= min(got, p.txOutstanding)
			n += int(got)
		}
	}
	return n
}

// refill tops each fill ring up to fillGoal from the pool, keeping q.reserve frames back.
func (q *queue) refill() {
	for i := range q.ports {
		p := &q.ports[i]
		if p.gone {
			continue
		}
		free := p.fill.Free()
		if free == p.fill.Size() {
			// The kernel has consumed every frame we gave it: received packets will be dropped
			// (rx_fill_ring_empty_descs) until we catch up.
			p.local.fillEmpty++
			q.changed = true
		}
		inRing := p.fill.Size() - free
		if inRing >= q.fillGoal {
			continue
		}
		want := min(q.fillGoal-inRing, uint32(max(q.pool.Len()-q.reserve, 0)))
		if want == 0 {
			continue
		}
		idx, got := p.fill.Reserve(want)
		for j := range got {
			addr, _ := q.pool.GetAddr(umem.Fill)
			p.fill.Set(idx+j, addr)
			q.fillPort[q.pool.Index(addr)] = uint16(i)
		}
		p.fill.Submit(got)
	}
}

// receive takes up to budget descriptors from port i's RX ring into the batch and runs the handler.
func (q *queue) receive(i int, t int64) int {
	p := &q.ports[i]
	if p.gone {
		return 0
	}
	idx, n := p.rx.Peek(q.budget)
	if n == 0 {
		return 0
	}
	b := &q.batch
	b.Reset(t)
	var bytes uint64
	fs := uint64(q.area.FrameSize())
	for j := range n {
		d := p.rx.Desc(idx + j)
		// An RX descriptor is the kernel's word, checked before it is believed (one compare and one byte load
		// per packet): a frame we did not lend to a fill ring - an address outside the UMEM, or a frame that
		// is free, in this batch already, on a TX ring or held - is left where it is, since acting on it
		// would free or send a frame twice; a length past the frame's end is refused and the frame, which is
		// ours, goes back to the pool.
		if !q.area.Contains(d.Addr) {
			p.local.rxBadAddr++
			continue
		}
		base := q.area.Base(d.Addr)
		if q.pool.StateOf(base) != umem.Fill {
			p.local.rxNotOwned++
			continue
		}
		off := d.Addr - base
		q.pool.Mark(base, umem.Fill, umem.InFlight)
		if off+uint64(d.Len) > fs {
			p.local.rxBadLen++
			q.pool.Put(base)
			continue
		}
		pk := &b.Pkts[b.N]
		pk.Reset(q.area.Frame(base), base, int(off), int(off+uint64(d.Len)))
		pk.InPort, pk.Queue = uint16(i), uint16(q.id)
		q.probePacket(pk.Data())
		b.N++
		bytes += uint64(d.Len)
	}
	p.rx.Release(n)
	p.local.rxPackets += uint64(b.N)
	p.local.rxBytes += bytes
	q.changed = true
	q.handler.Process(b)
	q.place()
	return int(n)
}

// place acts on every packet's verdict and empties the batch.
func (q *queue) place() {
	b := &q.batch
	for k := 0; k < b.N; k++ {
		pk := &b.Pkts[k]
		switch pk.Verdict {
		case pipeline.Tx:
			if int(pk.OutPort) >= len(q.ports) {
				q.drop(pk.Addr, pipeline.DropBadPort)
				continue
			}
			op := &q.ports[pk.OutPort]
			if op.down {
				// Down or deleted: the kernel would refuse (ENETDOWN) or lose it; count it here by name.
				q.drop(pk.Addr, pipeline.DropLinkDown)
				continue
			}
			idx, got := op.tx.Reserve(1)
			if got == 0 {
				op.local.txFull++
				q.drop(pk.Addr, pipeline.DropTxRingFull)
				continue
			}
			d := op.tx.Desc(idx)
			d.Addr = pk.Addr + uint64(pk.Offset())
			d.Len = uint32(pk.Len())
			d.Options = 0
			q.pool.Set(pk.Addr, umem.TX)
			op.txReserved++
			op.local.txPackets++
			op.local.txBytes += uint64(pk.Len())
		case pipeline.Drop:
			q.drop(pk.Addr, pk.Reason)
		case pipeline.Stolen:
			q.pool.Set(pk.Addr, umem.Held)
		case pipeline.Consumed:
			q.pool.Put(pk.Addr)
		default: // Accept: nobody decided.
			q.drop(pk.Addr, pipeline.DropUnhandled)
		}
	}
	if b.N > 0 {
		q.changed = true
	}
	b.N = 0
}

func (q *queue) drop(addr uint64, r pipeline.DropReason) {
	q.pool.Put(addr)
	if int(r) >= len(q.drops) {
		r = pipeline.DropUnhandled
	}
	q.drops[r]++
	q.dirty[r/64] |= 1 << (r % 64)
}

// flushTX submits what place wrote and kicks the kernel where it is needed. It also re-kicks a copy-mode ring
// the kernel has not emptied: one sendto sends at most the socket's TX budget.
func (q *queue) flushTX() {
	for i := range q.ports {
		p := &q.ports[i]
		if p.gone {
			continue
		}
		if p.txReserved > 0 {
			p.tx.Submit(p.txReserved)
			p.txOutstanding += p.txReserved
			p.txReserved = 0
		} else if p.txOutstanding == 0 || p.tx.Pending() == 0 {
			continue
		}
		if p.sock == nil {
			continue
		}
		if !p.kickAlways {
			if p.tx.NeedWakeup() {
				p.sock.Kick()
			}
			continue
		}
		// Copy mode transmits inside sendto, at most the socket's TX budget a call (copyTxBudget where the
		// kernel has XDP_MAX_TX_SKB_BUDGET, 32 before 6.17): kick until the ring is empty (bounded, so RX is
		// not starved), or the ring fills and later packets are dropped as tx_ring_full although the link
		// could still take them. With the larger budget one call usually empties the ring: one system call
		// per port per loop.
		for k := 0; k < maxCopyKicks && p.tx.Pending() > 0; k++ {
			if p.sock.Kick() != nil {
				break
			}
		}
	}
}

// copyTxBudget is the TX budget asked of copy-mode sockets, and maxCopyKicks bounds the sendto calls per port
// per loop: either way at most about 512 frames leave a port per loop, a full batch of every port with room
// to catch up, whatever the kernel allows.
const (
	copyTxBudget = 512
	maxCopyKicks = 16
)

// publish copies the loop's counters to the atomics Stats reads: one store per counter per batch.
func (q *queue) publish() {
	q.changed = false
	for i := range q.ports {
		p := &q.ports[i]
		p.pub.rxPackets.Store(p.local.rxPackets)
		p.pub.rxBytes.Store(p.local.rxBytes)
		p.pub.txPackets.Store(p.local.txPackets)
		p.pub.txBytes.Store(p.local.txBytes)
		p.pub.fillEmpty.Store(p.local.fillEmpty)
		p.pub.txFull.Store(p.local.txFull)
		p.pub.rxBadAddr.Store(p.local.rxBadAddr)
		p.pub.rxNotOwned.Store(p.local.rxNotOwned)
		p.pub.rxBadLen.Store(p.local.rxBadLen)
		var fill, rx, tx, comp uint32
		if !p.gone && p.fill != nil { // a gone port's rings are unmapped
			fill, rx, tx, comp = p.fill.Pending(), p.rx.Pending(), p.tx.Pending(), p.comp.Pending()
		}
		p.pub.fillLevel.Store(fill)
		p.pub.rxLevel.Store(rx)
		p.pub.txLevel.Store(tx)
		p.pub.compLevel.Store(comp)
	}
	q.pubFree.Store(int64(q.pool.Len()))
	for w := range q.dirty {
		for m := q.dirty[w]; m != 0; m &= m - 1 {
			r := w*64 + bits.TrailingZeros64(m)
			q.pubDrops[r].Store(q.drops[r])
		}
		q.dirty[w] = 0
	}
	q.pubLoops.busy.Store(q.busyLoops)
	q.pubLoops.idle.Store(q.idleLoops)
	q.pubLoops.sleeps.Store(q.sleeps)
}

// txBusy reports whether frames are still on their way out.
func (q *queue) txBusy() bool {
	for i := range q.ports {
		if q.ports[i].txOutstanding > 0 || q.ports[i].txReserved > 0 {
			return true
		}
	}
	return false
}

// idleWake handles an empty loop in Busy mode: a zero-copy driver that asked for a wakeup on its fill ring (or
// busy polling) needs a syscall to run its NAPI.
func (q *queue) idleWake() {
	for i := range q.ports {
		p := &q.ports[i]
		if p.sock != nil && !p.gone && (q.busyPoll || p.fill.NeedWakeup()) {
			p.sock.WakeRx()
		}
	}
}

// sleep blocks in ppoll(2) until an RX socket is readable, the eventfd is written, or timeout passes
// (microsecond resolution: poll(2)'s milliseconds would round a predicted wake-up away).
func (q *queue) sleep(timeout time.Duration) {
	for i := range q.pollfds {
		q.pollfds[i].Revents = 0
	}
	ts := unix.NsecToTimespec(int64(timeout))
	n, _ := unix.Ppoll(q.pollfds, &ts, nil)
	if n > 0 {
		q.probeWoke()
	}
	q.sleeps++
	if n > 0 && q.pollfds[len(q.pollfds)-1].Revents&unix.POLLIN != 0 {
		var buf [8]byte
		unix.Read(q.efd, buf[:])
	}
}
