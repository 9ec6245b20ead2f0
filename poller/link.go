package poller

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/internal/xdpprog"
	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
	"github.com/xdpnet/xdpnet/rings"
	"github.com/xdpnet/xdpnet/umem"
)

// PortObserver is pipeline.PortObserver, the optional Handler method through which each queue learns of
// link changes (see syncLinks); the alias keeps poller.PortObserver working.
type PortObserver = pipeline.PortObserver

// linkState is the watcher's published view of one port. It is immutable: a change stores a new one.
type linkState struct {
	present bool // an interface of that name exists and has our program attached
	up      bool // IFF_UP, and IFF_RUNNING once an event has reported it (see linkUp)
	ifindex int
	mtu     int
	queues  int
	mac     proto.MAC
	prog    *xdpprog.Program // attached to ifindex; nil when not present
}

// linkUp is what the poller calls up. New trusts the administrative flag alone: right after `ip link set up`
// the kernel reports IFF_RUNNING only once linkwatch has run, and a poller started in between must not drop
// its first replies. Events carry IFF_RUNNING too, so a lost carrier (the veth peer going down) counts as down.
func linkUp(a *netlink.LinkAttrs, event bool) bool {
	if a.RawFlags&unix.IFF_UP == 0 {
		return false
	}
	return !event || a.RawFlags&unix.IFF_RUNNING != 0
}

func stateOf(a *netlink.LinkAttrs, prog *xdpprog.Program, event bool) *linkState {
	st := &linkState{present: true, up: linkUp(a, event), ifindex: a.Index, mtu: a.MTU, queues: max(a.NumRxQueues, 1), prog: prog}
	copy(st.mac[:], a.HardwareAddr)
	return st
}

// publishLink stores port i's new state, updates the table Ports returns, and bumps the generation that every
// queue compares once per loop iteration: the only cost of link events on the hot path is that atomic load.
func (p *Poller) publishLink(i int, st *linkState) {
	p.links[i].Store(st)
	p.mu.Lock()
	pi := &p.ports[i]
	if st.present {
		pi.Ifindex, pi.MTU, pi.MAC = st.ifindex, st.mtu, st.mac
	}
	p.mu.Unlock()
	p.linkGen.Add(1)
	// A queue asleep in poll(2) would see the change only at its idle timeout.
	for _, q := range p.qs {
		q.kick()
	}
}

// watchLinks follows the ports' links through rtnetlink until ctx is done. It runs on its own locked thread
// that enters the ports' network namespace, because attaching XDP to a re-created interface resolves the
// ifindex in the calling thread's namespace. If the subscription fails (ENOBUFS after an event storm), it
// subscribes again; the dump that starts each subscription (ListExisting) catches up on what was missed.
func (p *Poller) watchLinks(ctx context.Context, ready chan<- struct{}) {
	runtime.LockOSThread() // not unlocked: the thread may be in another namespace, it dies with the goroutine
	signal := func() {
		if ready != nil {
			close(ready)
			ready = nil
		}
	}
	defer signal()
	if err := p.enterNS(); err != nil {
		p.log.Warn("poller: link events are not followed: cannot enter the interfaces' network namespace", "err", err)
		return
	}
	for backoff := 10 * time.Millisecond; ctx.Err() == nil; backoff = min(2*backoff, time.Second) {
		ch := make(chan netlink.LinkUpdate, 256)
		done := make(chan struct{})
		// The thread is in the ports' namespace, so the subscription is too; passing Namespace would make
		// netlink setns again, which needs CAP_SYS_ADMIN even for the namespace one is in.
		err := netlink.LinkSubscribeWithOptions(ch, done, netlink.LinkSubscribeOptions{
			ListExisting:      true,
			ReceiveBufferSize: 1 << 20,
			ErrorCallback: func(err error) {
				if ctx.Err() == nil {
					p.log.Warn("poller: link event subscription", "err", err)
				}
			},
		})
		if err != nil {
			close(done)
			p.log.Warn("poller: subscribe to link events (retrying)", "err", err)
		} else {
			// The dump is queued on the socket ahead of any later event; Run waits for it to be asked for only.
			signal()
		loop:
			for {
				select {
				case <-ctx.Done():
					break loop
				case u, ok := <-ch:
					if !ok {
						break loop
					}
					p.linkEvent(u)
					backoff = 10 * time.Millisecond
				}
			}
			close(done)
			for range ch { // the receiver closes ch once its socket is closed
			}
		}
		signal()
		if ctx.Err() != nil {
			return
		}
		select {
		case <-ctx.Done():
		case <-time.After(backoff):
		}
	}
}

// enterNS moves the calling (locked) thread into the ports' namespace unless it is there already (setns needs
// CAP_SYS_ADMIN, which a poller in its own namespace should not need).
func (p *Poller) enterNS() error {
	if !p.ns.IsOpen() {
		return errors.New("no namespace handle")
	}
	cur, err := netns.Get()
	if err != nil {
		return err
	}
	defer cur.Close()
	if cur.Equal(p.ns) {
		return nil
	}
	return netns.Set(p.ns)
}

// linkEvent applies one RTM_NEWLINK/RTM_DELLINK to the ports it concerns.
func (p *Poller) linkEvent(u netlink.LinkUpdate) {
	a := u.Attrs()
	if a == nil {
		return
	}
	del := u.Header.Type == unix.RTM_DELLINK
	// A dump entry (the catch-up at subscription) is a snapshot, not a change: judge it like New does.
	event := u.Header.Flags&unix.NLM_F_MULTI == 0
	for i, name := range p.cfg.Interfaces {
		cur := p.links[i].Load()
		switch {
		case del && cur.present && a.Index == cur.ifindex:
			// Deleted, or moved to another namespace: the kernel has detached the program and unbound the
			// sockets (NETDEV_UNREGISTER); the queues close theirs and take their frames back.
			p.log.Warn("poller: link deleted; its port is closed until an interface of that name appears", "interface", name, "ifindex", a.Index)
			p.publishLink(i, &linkState{})
			p.closeProg(cur.prog)
		case !del && a.Name == name && (!cur.present || a.Index != cur.ifindex):
			if cur.present {
				// The old interface was renamed away or its deletion was missed: let it go first.
				p.log.Warn("poller: interface replaced", "interface", name, "old_ifindex", cur.ifindex, "ifindex", a.Index)
				p.publishLink(i, &linkState{})
				p.closeProg(cur.prog)
			}
			p.reattach(i, a, event)
		case !del && cur.present && a.Index == cur.ifindex:
			if a.Name != name {
				p.log.Warn("poller: link renamed; the port keeps using it by ifindex", "interface", name, "new_name", a.Name)
			}
			st := stateOf(a, cur.prog, event)
			st.queues = cur.queues
			if st.up == cur.up && st.mtu == cur.mtu && st.mac == cur.mac {
				continue
			}
			if st.up != cur.up {
				p.log.Info("poller: link "+map[bool]string{true: "up", false: "down"}[st.up], "interface", name, "ifindex", a.Index)
				if !st.up {
					p.linkDowns[i].Add(1)
				}
			}
			if st.mtu != cur.mtu {
				p.log.Info("poller: link MTU changed", "interface", name, "from", cur.mtu, "to", st.mtu)
			}
			p.publishLink(i, st)
		}
	}
}

// reattach attaches the XDP program to a (re-)created interface of port i and publishes it; the queues then
// open their sockets on it.
func (p *Poller) reattach(i int, a *netlink.LinkAttrs, event bool) {
	name := p.cfg.Interfaces[i]
	if nq := max(a.NumRxQueues, 1); p.cfg.Queues > nq {
		p.log.Error("poller: re-created interface has too few queues; port stays closed", "interface", name,
			"queues", nq, "want", p.cfg.Queues, "fix", fmt.Sprintf("re-create it with %d queues or `ethtool -L %s combined %d`", p.cfg.Queues, name, p.cfg.Queues))
		return
	}
	// The configured program, not the default one: a kernel-mirror port keeps leaving local traffic to Linux.
	prog, err := p.cfg.attach(a.Index, xdpprog.Options{Mode: p.cfg.XDPMode.internal(), Replace: p.cfg.ReplaceXDP})
	if err != nil {
		p.log.Error("poller: attach XDP to re-created interface; port stays closed", "interface", name, "ifindex", a.Index, "err", err)
		return
	}
	p.mu.Lock()
	p.progs = append(p.progs, prog)
	p.mu.Unlock()
	p.reopens[i].Add(1)
	p.log.Info("poller: interface appeared; reopening its port", "interface", name, "ifindex", a.Index, "xdp_mode", prog.Mode())
	// A state from the netlink message, not a lookup: the message is what the rest of the stream follows.
	p.publishLink(i, stateOf(a, prog, event))
}

func (p *Poller) closeProg(prog *xdpprog.Program) {
	if prog == nil {
		return
	}
	if err := prog.Close(); err != nil {
		// The interface is gone and its program with it; what fails here is closing our fds for it.
		p.log.Debug("poller: close XDP program of a deleted link", "err", err)
	}
}

// syncLinks brings the queue in line with the link table: it closes sockets on deleted interfaces, opens
// sockets on re-created ones, sets each port's TX gate and tells the handler. It runs on the queue goroutine,
// between batches, when the table's generation moved.
func (p *Poller) syncLinks(q *queue, gen uint64) {
	q.linkGen = gen
	obs, _ := q.handler.(PortObserver)
	for i := range q.ports {
		st := p.links[i].Load()
		qp := &q.ports[i]
		if !qp.gone && (!st.present || st.ifindex != qp.ifindex) {
			p.closePort(q, i)
		}
		if qp.gone && st.present && st.prog != nil {
			p.openPort(q, i, st)
		}
		down := qp.gone || !st.up
		info := q.info[i]
		if st.present {
			info.Ifindex, info.MTU, info.MAC = st.ifindex, st.mtu, st.mac
		}
		if down == qp.down && info == q.info[i] {
			continue
		}
		qp.down = down
		q.info[i] = info
		if obs != nil {
			obs.PortChanged(info, !down)
		}
	}
}

// closePort closes port i's socket on queue q after its link was deleted and takes back every frame its rings
// held. Frames on the RX ring (received, never processed) and on the TX ring (never sent) are counted as
// link_down drops.
func (p *Poller) closePort(q *queue, i int) {
	qp := &q.ports[i]
	if st, err := qp.sock.Statistics(); err == nil {
		if b := qp.kbase.Load(); b != nil {
			st = addXDPStats(st, *b)
		}
		qp.kbase.Store(&st)
	}
	qp.statSock.Store(nil)
	qp.sock.CloseFD()
	q.pollfds[i].Fd = -1 // poll(2) ignores negative fds
	// Descriptors the kernel consumed from the TX ring and has not completed are in a socket buffer on their
	// way out (copy mode) and complete when it is freed; give them a moment.
	inKernel := qp.txOutstanding - min(qp.tx.Pending(), qp.txOutstanding)
	for deadline := time.Now().Add(100 * time.Millisecond); inKernel > 0 && time.Now().Before(deadline); {
		idx, got := qp.comp.Peek(qp.comp.Size())
		for j := range got {
			q.pool.Complete(qp.comp.Addr(idx + j))
		}
		qp.comp.Release(got)
		qp.txOutstanding -= min(got, qp.txOutstanding)
		inKernel -= min(got, inKernel)
		if got == 0 {
			time.Sleep(time.Millisecond)
		}
	}
	rx, tx := q.reclaimPort(qp)
	// What the kernel took from this port's fill ring and never received into was in the socket's buffer
	// pool, which the link's deletion unbound: nothing writes to those frames any more. They held no packet,
	// so they are not drops.
	pooled := q.reclaimFillOf(i)
	if n := rx + tx; n > 0 {
		q.drops[pipeline.DropLinkDown] += uint64(n)
		q.dirty[pipeline.DropLinkDown/64] |= 1 << (pipeline.DropLinkDown % 64)
	}
	if inKernel > 0 {
		p.log.Warn("poller: frames sent on a deleted link never completed; they are taken back at shutdown", "interface", p.cfg.Interfaces[i], "queue", q.id, "frames", inKernel)
	}
	qp.sock.Unmap()
	qp.sock, qp.fill, qp.rx, qp.tx, qp.comp = nil, nil, nil, nil, nil
	qp.gone, qp.down = true, true
	qp.txReserved, qp.txOutstanding = 0, 0
	q.changed = true
	p.log.Info("poller: socket closed, frames taken back", "interface", p.cfg.Interfaces[i], "queue", q.id, "rx_dropped", rx, "tx_dropped", tx, "kernel_pool", pooled)
}

// openPort opens port i's socket on queue q on the interface st describes, sharing the queue's UMEM, and
// registers it with the port's program. A failure is logged and leaves the port closed until the next link
// event.
func (p *Poller) openPort(q *queue, i int, st *linkState) {
	name := p.cfg.Interfaces[i]
	if !q.inNS {
		p.log.Error("poller: cannot reopen port: the queue's thread is not in the interfaces' network namespace", "interface", name, "queue", q.id)
		return
	}
	var shared *rings.Socket
	for j := range q.ports {
		if j != i && !q.ports[j].gone {
			shared = q.ports[j].sock
			break
		}
	}
	c := &p.cfg
	s, err := rings.Open(rings.Config{
		Ifname: name, Ifindex: st.ifindex, Queue: q.id, Queues: st.queues,
		Area: q.area, Shared: shared,
		FillSize: c.RingSize, CompSize: c.RingSize, RxSize: c.RingSize, TxSize: c.RingSize,
		Bind: c.Bind, NeedWakeup: true,
		BusyPoll: c.BusyPoll, BusyPollBudget: c.Budget, TxBudget: copyTxBudget,
	})
	if err != nil {
		p.log.Error("poller: reopen port", "interface", name, "queue", q.id, "err", err)
		return
	}
	qp := &q.ports[i]
	qp.sock, qp.fill, qp.rx, qp.tx, qp.comp = s, s.Fill, s.RX, s.TX, s.Comp
	qp.kickAlways = !s.ZeroCopy()
	qp.txReserved, qp.txOutstanding = 0, 0
	qp.ifindex = st.ifindex
	qp.gone = false
	qp.statSock.Store(s)
	q.pollfds[i].Fd = int32(s.FD())
	if err := st.prog.Register(q.id, s.FD()); err != nil {
		// Deleted again already (ErrClosed) or a map error: the next event sorts it out.
		p.log.Warn("poller: register reopened socket", "interface", name, "queue", q.id, "err", err)
	}
	q.changed = true
	p.log.Info("poller: port reopened", "interface", name, "queue", q.id, "ifindex", st.ifindex, "zerocopy", s.ZeroCopy())
}

// reclaimPort takes back the frames on a closed socket's rings: fill entries the kernel never consumed, RX
// entries never read, completions never reaped, TX descriptors never sent. It returns how many were on the RX
// and TX rings.
func (q *queue) reclaimPort(p *qport) (rx, tx int) {
	prod, cons := p.fill.Indexes()
	for i := cons; i != prod; i++ {
		if a := p.fill.Addr(i); q.area.Contains(a) && q.pool.StateOf(a) == umem.Fill {
			q.pool.Put(a)
		}
	}
	idx, n := p.rx.Peek(p.rx.Size())
	for j := range n {
		a := q.area.Base(p.rx.Desc(idx + j).Addr)
		if q.area.Contains(a) && q.pool.StateOf(a) == umem.Fill {
			q.pool.Put(a)
			rx++
		}
	}
	p.rx.Release(n)
	idx, n = p.comp.Peek(p.comp.Size())
	for j := range n {
		q.pool.Complete(p.comp.Addr(idx + j))
	}
	p.comp.Release(n)
	p.txOutstanding -= min(n, p.txOutstanding)
	// The kernel's consumer index says which descriptors it never took; they are still ours.
	prod, cons = p.tx.Indexes()
	for i := cons; i != prod; i++ {
		a := q.area.Base(p.tx.Desc(i).Addr)
		if q.area.Contains(a) && q.pool.StateOf(a) == umem.TX {
			q.pool.Put(a)
			tx++
		}
	}
	p.txOutstanding -= min(uint32(tx), p.txOutstanding)
	return rx, tx
}

// reclaimFillOf returns to the pool every frame still in the Fill state that was last given to port i's fill
// ring. Only for a port whose socket is closed and whose link is gone; reclaimPort has taken the rings' frames.
func (q *queue) reclaimFillOf(i int) int {
	n := 0
	fs := uint64(q.area.FrameSize())
	for k, port := range q.fillPort {
		if a := uint64(k) * fs; int(port) == i && q.pool.StateOf(a) == umem.Fill {
			q.pool.Put(a)
			n++
		}
	}
	return n
}

func addXDPStats(a, b unix.XDPStatistics) unix.XDPStatistics {
	a.Rx_dropped += b.Rx_dropped
	a.Rx_invalid_descs += b.Rx_invalid_descs
	a.Tx_invalid_descs += b.Tx_invalid_descs
	a.Rx_ring_full += b.Rx_ring_full
	a.Rx_fill_ring_empty_descs += b.Rx_fill_ring_empty_descs
	a.Tx_ring_empty_descs += b.Tx_ring_empty_descs
	return a
}
