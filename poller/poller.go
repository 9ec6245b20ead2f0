package poller

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
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

// ErrRunning is returned by CheckFrames and Run while Run is running, and by Run called a second time.
var ErrRunning = errors.New("poller: Run is running or has run")

// Poller owns the AF_XDP data path of a set of interfaces: per queue index a UMEM, a frame pool and one socket
// per port, and per port the XDP redirect program.
type Poller struct {
	cfg Config
	log *slog.Logger
	qs  []*queue

	// Link events (link.go). ns is the network namespace New ran in, where the interfaces live. links[i] is
	// port i's current state, swapped whole by the watcher; linkGen counts the swaps, and each queue compares
	// it once per loop. linkDowns and reopens count events per port for Stats.
	ns        netns.NsHandle
	links     []atomic.Pointer[linkState]
	linkGen   atomic.Uint64
	linkDowns []atomic.Uint64
	reopens   []atomic.Uint64

	mu      sync.Mutex
	ports   []pipeline.PortInfo // current (MTU, ifindex follow link events)
	progs   []*xdpprog.Program  // every program attached, in order; closed at teardown
	started bool
	running bool
	dataOff bool // sockets closed and XDP detached
	closed  bool
	final   []umem.Accounting
	kstats  [][]unix.XDPStatistics // kernel statistics at shutdown, [queue][port]
}

// New validates cfg, looks up the interfaces (in the calling thread's network namespace), attaches the XDP
// program to each, creates every queue's UMEM and sockets, registers the sockets and fills the fill rings.
// Traffic on the queues goes to the sockets from then on; Run processes it.
func New(cfg Config) (*Poller, error) {
	c, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	p := &Poller{cfg: c, log: c.Logger, ns: netns.None()}
	ok := false
	defer func() {
		if !ok {
			p.teardown()
			p.release()
		}
	}()
	// Link events are followed in this namespace, and re-created interfaces are bound there.
	if p.ns, err = netns.Get(); err != nil {
		return nil, fmt.Errorf("poller: open the current network namespace: %w", err)
	}
	p.links = make([]atomic.Pointer[linkState], len(c.Interfaces))
	p.linkDowns = make([]atomic.Uint64, len(c.Interfaces))
	p.reopens = make([]atomic.Uint64, len(c.Interfaces))
	links := make([]netlink.Link, len(c.Interfaces))
	for i, name := range c.Interfaces {
		l, err := netlink.LinkByName(name)
		if err != nil {
			var nf netlink.LinkNotFoundError
			if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
				return nil, fmt.Errorf("poller: port %d: interface %s: %w (it does not exist in this network namespace; check `ip link`)", i, name, rings.ErrNoDevice)
			}
			return nil, fmt.Errorf("poller: port %d: look up interface %s: %w", i, name, err)
		}
		a := l.Attrs()
		if nq := max(a.NumRxQueues, 1); c.Queues > nq {
			return nil, fmt.Errorf("poller: %s has %d queue(s) but Queues is %d: %w (lower Queues, or add queues with `ethtool -L %s combined %d`)",
				name, nq, c.Queues, rings.ErrNoQueue, name, c.Queues)
		}
		links[i] = l
		var mac proto.MAC
		copy(mac[:], a.HardwareAddr)
		p.ports = append(p.ports, pipeline.PortInfo{Index: uint16(i), Name: name, Ifindex: a.Index, MAC: mac, MTU: a.MTU,
			PartialChecksums: l.Type() == "veth"})
	}
	for i, l := range links {
		prog, err := c.attach(l.Attrs().Index, xdpprog.Options{Mode: c.XDPMode.internal(), Replace: c.ReplaceXDP})
		if err != nil {
			return nil, fmt.Errorf("poller: port %d: %w", i, err)
		}
		p.progs = append(p.progs, prog)
		// After the attach, so that a user without the privileges hears about those first; a refusal detaches
		// again (teardown).
		if err := p.startChecks(l.Attrs()); err != nil {
			return nil, err
		}
		st := stateOf(l.Attrs(), prog, false)
		p.links[i].Store(st)
		if !st.up {
			p.log.Warn("poller: interface is down; its TX is dropped as link_down until it comes up", "interface", p.ports[i].Name)
		}
		if r := prog.FallbackReason(); r != nil {
			p.log.Warn("poller: XDP in generic mode: AF_XDP will copy every frame", "interface", p.ports[i].Name, "reason", r)
		}
	}
	for qi := 0; qi < c.Queues; qi++ {
		if err := p.newQueue(qi, links); err != nil {
			return nil, err
		}
	}
	// Register last: from here on the kernel redirects the queues' traffic to us.
	for _, q := range p.qs {
		for i := range q.ports {
			if err := p.progs[i].Register(q.id, q.ports[i].sock.FD()); err != nil {
				return nil, fmt.Errorf("poller: %w", err)
			}
		}
	}
	ok = true
	return p, nil
}

// newQueue builds queue qi and appends it to p.qs as soon as it holds resources, so that New's cleanup
// releases a half-built queue too.
func (p *Poller) newQueue(qi int, links []netlink.Link) error {
	c := &p.cfg
	area, err := umem.New(umem.Options{Frames: c.FramesPerQueue, FrameSize: c.FrameSize, Headroom: c.Headroom, HugePages: c.HugePages, Logger: p.log})
	if err != nil {
		return fmt.Errorf("poller: queue %d: %w", qi, err)
	}
	q := &queue{id: qi, cpu: -1, area: area, pool: umem.NewPool(area), fillPort: make([]uint16, area.Frames()),
		efd: -1, budget: uint32(c.Budget), busyPoll: c.BusyPoll}
	p.qs = append(p.qs, q)
	if len(c.CPUs) > 0 {
		q.cpu = c.CPUs[qi%len(c.CPUs)]
	}
	q.fillGoal = uint32(min(c.RingSize, (c.FramesPerQueue-pipeline.MaxBatch)/(2*len(links))))
	q.reserve = pipeline.MaxBatch
	var first *rings.Socket
	for i, l := range links {
		a := l.Attrs()
		s, err := rings.Open(rings.Config{
			Ifname: a.Name, Ifindex: a.Index, Queue: qi, Queues: max(a.NumRxQueues, 1),
			Area: area, Shared: first,
			FillSize: c.RingSize, CompSize: c.RingSize, RxSize: c.RingSize, TxSize: c.RingSize,
			Bind: c.Bind, NeedWakeup: true,
			BusyPoll: c.BusyPoll, BusyPollBudget: c.Budget, TxBudget: copyTxBudget,
		})
		if err != nil {
			if first != nil && i > 0 {
				err = fmt.Errorf("%w; port %d shares the UMEM of port 0 on this queue, which needs Linux 5.10+ and the same bind mode (zero-copy on one port forces it on all)", err, i)
			}
			return fmt.Errorf("poller: %w", err)
		}
		if first == nil {
			first = s
		}
		q.ports = append(q.ports, qport{sock: s, fill: s.Fill, rx: s.RX, tx: s.TX, comp: s.Comp, kickAlways: !s.ZeroCopy(),
			ifindex: a.Index, down: !p.links[i].Load().up})
		q.ports[i].statSock.Store(s)
		if i == 0 && c.Bind == rings.BindAuto && !s.ZeroCopy() {
			p.log.Info("poller: AF_XDP copy mode (the driver has no zero-copy support here)", "interface", a.Name, "queue", qi)
		}
	}
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return fmt.Errorf("poller: queue %d: eventfd: %w", qi, err)
	}
	q.efd = efd
	for i := range q.ports {
		q.pollfds = append(q.pollfds, unix.PollFd{Fd: int32(q.ports[i].sock.FD()), Events: unix.POLLIN})
	}
	q.pollfds = append(q.pollfds, unix.PollFd{Fd: int32(efd), Events: unix.POLLIN})
	q.batch.Frames = q.pool
	// Each queue has its own copy of the port table: the handler's (as at creation; PortObserver reports
	// changes) and the queue's view that syncLinks compares with the link table.
	q.info = slices.Clone(p.ports)
	q.handler = c.NewHandler(&pipeline.QueueInfo{Queue: qi, Ports: slices.Clone(p.ports), Frames: q.pool, Waker: waker{q}})
	if q.handler == nil {
		return fmt.Errorf("poller: queue %d: NewHandler returned nil", qi)
	}
	q.refill()
	return nil
}

// Ports describes the ports, in Config.Interfaces order, as they are now: while Run runs, Ifindex, MTU and MAC
// follow link events (a re-created interface has a new Ifindex). Safe from any goroutine.
func (p *Poller) Ports() []pipeline.PortInfo {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.ports)
}

// Run runs every queue until ctx is cancelled, then drains: it stops the redirects, processes what is still
// arriving, waits for TX completions, detaches the XDP programs, closes the sockets and takes every frame back.
// It returns the first error of any queue (a queue that fails cancels the others). Run may be called once.
func (p *Poller) Run(ctx context.Context) error {
	p.mu.Lock()
	if p.started || p.closed {
		p.mu.Unlock()
		return ErrRunning
	}
	p.started, p.running = true, true
	p.mu.Unlock()

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// A queue asleep in poll(2) must see the cancellation now, not at its idle timeout.
	// It is joined before Run returns, so it never writes an eventfd Close has closed.
	wakerDone := make(chan struct{})
	go func() {
		defer close(wakerDone)
		<-ctx.Done()
		for _, q := range p.qs {
			q.kick()
		}
	}()
	// Link events: subscribed before the queues start, joined before teardown (it attaches programs).
	watchReady, watchDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(watchDone)
		p.watchLinks(ctx, watchReady)
	}()
	<-watchReady
	if n, procs := len(p.qs), runtime.GOMAXPROCS(0); n >= procs {
		// A polling queue holds its P (its system calls are raw, rings.Socket.Kick): with every P held, the
		// application's goroutines run only when the runtime preempts a queue, every 10 ms.
		p.log.Warn("poller: while they poll, the queues hold every P of the Go scheduler and other goroutines wait; raise GOMAXPROCS above the number of queues (pinning still keeps each queue on its CPU)",
			"queues", n, "GOMAXPROCS", procs)
	}
	errs := make([]error, len(p.qs))
	var wg sync.WaitGroup
	for i, q := range p.qs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := p.runQueue(ctx, q); err != nil {
				errs[i] = err
				cancel()
			}
		}()
	}
	wg.Wait()
	cancel()
	<-wakerDone
	<-watchDone
	p.mu.Lock()
	p.teardown()
	p.running = false
	p.mu.Unlock()
	return errors.Join(errs...)
}

func (p *Poller) runQueue(ctx context.Context, q *queue) error {
	runtime.LockOSThread()
	// The thread may carry a CPU mask; it goes back to the pool of Go threads only if we leave it as found,
	// so it is not unlocked: the runtime ends a thread whose goroutine exits while locked.
	q.tid.Store(int32(unix.Gettid()))
	// The thread binds sockets to re-created interfaces, by ifindex, in its own namespace: it must be the
	// interfaces'. Leaving it there is fine, the thread is never reused.
	if err := p.enterNS(); err != nil {
		p.log.Warn("poller: queue thread cannot enter the interfaces' network namespace; a re-created interface will not be reopened", "queue", q.id, "err", err)
	} else {
		q.inNS = true
	}
	if q.cpu >= 0 {
		var set unix.CPUSet
		set.Set(q.cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			p.unregister(q)
			return fmt.Errorf("poller: queue %d: pin to CPU %d: %w (check the CPU list against `nproc` and the cgroup's cpuset)", q.id, q.cpu, err)
		}
	}
	// Timeouts of this thread's sleeps fire when asked, not up to 50us later (the default timer slack): the
	// predicted wake-up below is worth only as much as the timer is exact.
	unix.Prctl(unix.PR_SET_TIMERSLACK, 1000, 0, 0, 0)
	done := ctx.Done()
	spins := 0
	adaptive := p.cfg.Mode == Adaptive
	for {
		select {
		case <-done:
			p.drain(q)
			q.probeReport()
			return nil
		default:
		}
		if g := p.linkGen.Load(); g != q.linkGen {
			p.syncLinks(q, g)
		}
		t := now()
		if q.step(t) > 0 {
			q.busyLoops++
			spins = 0
			if q.idle.since != 0 {
				q.idle.arrived(t, p.cfg.IdleSpin)
			}
			continue
		}
		q.idleLoops++
		spins++
		if q.idle.since == 0 {
			q.idle.since = t
		}
		if !adaptive {
			q.idleWake()
			if spins&1023 == 0 {
				q.changed = true // publish loop counts now and then
			}
			continue
		}
		if t-q.idle.since < int64(p.cfg.IdleSpin) || t < q.idle.spinUntil {
			continue
		}
		q.trySleep(t, p.cfg.IdleTimeout)
		spins = 0
	}
}

// idlePolicy decides how an Adaptive queue waits, as interrupt coalescing does for a NIC: it polls for IdleSpin
// after the last packet, then sleeps in poll(2). Waking from that sleep costs tens of microseconds here (the
// scheduler, and an idle virtual CPU that has to be woken), and the round trip of a request that arrives on
// a sleeping queue pays it. When the gaps between the ends of traffic and the next packet are regular - a
// periodic flow: a ping, a heartbeat, a voice stream - the policy learns them and sets the sleep's timeout to
// end a little before the next packet is due, then polls until it arrives or is clearly late. Irregular
// gaps are not predicted: the queue just sleeps until traffic wakes it.
type idlePolicy struct {
	since     int64 // start of the current idle period (first empty loop after work), 0 while working
	spinUntil int64 // poll, do not sleep, until then: an expected packet is due
	gap, dev  int64 // moving averages of the idle gaps that outlasted IdleSpin, and of their deviation
	samples   int
}

// minMargin is the least time the queue wakes before a predicted packet and waits after it: timer and
// scheduling jitter.
const minMargin = int64(20 * time.Microsecond)

// arrived records that traffic came at t after the idle period that began at since.
func (ip *idlePolicy) arrived(t int64, spin time.Duration) {
	g := t - ip.since
	ip.since, ip.spinUntil = 0, 0
	if g < int64(spin) {
		return // within a burst
	}
	if ip.samples == 0 {
		ip.gap, ip.dev = g, 0
	}
	d := g - ip.gap
	if d < 0 {
		d = -d
	}
	ip.gap += (g - ip.gap) / 8
	ip.dev += (d - ip.dev) / 8
	ip.samples++
}

// predict returns how long to sleep from t before polling for the next packet (0: no prediction) and sets
// spinUntil to when the packet is clearly late. A prediction is made only when the polling it costs (twice
// the margin) is at most an eighth of the gap.
func (ip *idlePolicy) predict(t int64) time.Duration {
	margin := max(2*ip.dev, minMargin)
	if ip.samples < 4 || 8*margin > ip.gap {
		return 0
	}
	due := ip.since + ip.gap
	if t >= due {
		return 0 // late already: this gap is not like the others
	}
	ip.spinUntil = due + margin
	return time.Duration(max(due-margin-t, 0))
}

// trySleep sleeps unless a last Tick (after announcing the sleep to wakers) produced work or is due.
func (q *queue) trySleep(t int64, limit time.Duration) {
	q.sleeping.Store(true)
	b := &q.batch
	b.Reset(t)
	q.wakeAt = pipeline.Tick(q.handler, b)
	if b.N > 0 {
		q.place()
		q.flushTX()
		q.sleeping.Store(false)
		return
	}
	timeout := limit
	if q.txBusy() {
		timeout = time.Millisecond // completions do not wake poll(2) on the RX fds
	}
	if q.wakeAt != 0 {
		if q.wakeAt <= t {
			q.sleeping.Store(false)
			return
		}
		timeout = min(timeout, time.Duration(q.wakeAt-t))
	}
	if early := q.idle.predict(t); early > 0 || q.idle.spinUntil > t {
		if early == 0 {
			q.sleeping.Store(false)
			return // the packet is due now: keep polling
		}
		timeout = min(timeout, early)
	}
	q.publish() // readers see the loop counts of a sleeping queue
	q.sleep(timeout)
	q.sleeping.Store(false)
	q.changed = true
	q.publish()
}

func (p *Poller) unregister(q *queue) {
	for i := range q.ports {
		if i < len(p.links) {
			if prog := p.links[i].Load().prog; prog != nil && !q.ports[i].gone {
				if err := prog.Unregister(q.id); err != nil && !errors.Is(err, xdpprog.ErrClosed) {
					p.log.Warn("poller: unregister socket", "interface", p.cfg.Interfaces[i], "queue", q.id, "err", err)
				}
			}
		}
	}
}

// drain stops the redirects to q's sockets and runs the loop until nothing arrives and TX has completed.
func (p *Poller) drain(q *queue) {
	p.unregister(q)
	deadline := now() + int64(2*time.Second)
	quiet := 0
	for now() < deadline {
		w := q.step(now())
		if d, ok := q.handler.(pipeline.Drainer); ok {
			b := &q.batch
			b.Reset(now())
			d.Drain(b)
			w += b.N
			q.place()
			q.flushTX()
		}
		if w == 0 && !q.txBusy() {
			// Frames redirected just before the unregister may still be in a softirq: wait a little.
			if quiet++; quiet > 20 {
				break
			}
			time.Sleep(100 * time.Microsecond)
			continue
		}
		quiet = 0
		if w == 0 {
			time.Sleep(50 * time.Microsecond)
		}
	}
	q.changed = true
	q.publish()
}

// teardown detaches XDP, closes the sockets and takes back every frame the rings still hold. Called with p.mu
// held (or before New returns).
func (p *Poller) teardown() {
	if p.dataOff {
		return
	}
	p.dataOff = true
	for _, prog := range p.progs {
		if err := prog.Close(); err != nil {
			p.log.Warn("poller: detach XDP", "err", err)
		}
	}
	p.kstats = make([][]unix.XDPStatistics, len(p.qs))
	p.final = make([]umem.Accounting, len(p.qs))
	for qi, q := range p.qs {
		p.kstats[qi] = make([]unix.XDPStatistics, len(q.ports))
		for i := range q.ports {
			qp := &q.ports[i]
			if b := qp.kbase.Load(); b != nil {
				p.kstats[qi][i] = *b
			}
			if qp.sock == nil {
				continue
			}
			if st, err := qp.sock.Statistics(); err == nil {
				p.kstats[qi][i] = addXDPStats(p.kstats[qi][i], st)
			}
		}
		acc := q.account()
		for i := range q.ports {
			if !q.ports[i].gone && q.ports[i].sock != nil {
				q.ports[i].sock.CloseFD()
			}
		}
		// The kernel has let go of the rings; what is left on them is ours again.
		for i := range q.ports {
			if !q.ports[i].gone {
				q.reclaimPort(&q.ports[i])
			}
		}
		after := q.pool.Account()
		// Frames still "given to the kernel" were held by a zero-copy driver, or, in copy mode, by the
		// socket's buffer pool: a frame taken from the fill ring for a packet the full RX ring could not
		// take goes on the pool's free list (xsk_buff_free), not back to the fill ring. "Sent" ones were
		// dropped by the kernel without completion. All are ours now that the sockets are closed; acc
		// shows them.
		acc.InKernelRX, acc.InKernelTX = after.Fill, after.TX
		q.reclaimAll(umem.Fill)
		q.reclaimAll(umem.TX)
		fin := q.pool.Account()
		fin.InKernelRX, fin.InKernelTX = acc.InKernelRX, acc.InKernelTX
		p.final[qi] = fin
		if acc.InKernelRX+acc.InKernelTX > 0 {
			p.log.Info("poller: frames held by the driver at shutdown taken back", "queue", q.id, "rx", acc.InKernelRX, "tx", acc.InKernelTX)
		}
	}
}

// reclaimAll returns every frame recorded in state s to the pool.
func (q *queue) reclaimAll(s umem.State) {
	fs := uint64(q.area.FrameSize())
	for i := 0; i < q.area.Frames(); i++ {
		a := uint64(i) * fs
		if q.pool.StateOf(a) == s {
			q.pool.Put(a)
		}
	}
}

// account is the pool's accounting with the ring detail. Owner goroutine only (or stopped).
func (q *queue) account() umem.Accounting {
	a := q.pool.Account()
	for i := range q.ports {
		p := &q.ports[i]
		if p.gone {
			continue
		}
		a.FillRing += int(p.fill.Pending())
		a.RXRing += int(p.rx.Pending())
		a.TXRing += int(p.tx.Pending())
		a.CompRing += int(p.comp.Pending())
	}
	a.InKernelRX = a.Fill - a.FillRing - a.RXRing
	a.InKernelTX = a.TX - a.TXRing - a.CompRing
	return a
}

// Frames reports, per queue, where every frame is. Before Run it reads the live rings; after Run it is the
// accounting taken at shutdown after every frame was taken back (InKernelRX/InKernelTX then count frames that a
// driver still held when the sockets closed). It fails with ErrRunning while Run runs.
func (p *Poller) Frames() ([]umem.Accounting, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running {
		return nil, ErrRunning
	}
	if p.final != nil {
		return append([]umem.Accounting(nil), p.final...), nil
	}
	var out []umem.Accounting
	for _, q := range p.qs {
		out = append(out, q.account())
	}
	return out, nil
}

// CheckFrames checks the frame accounting of every queue: exact before Run; after Run, also that every frame is
// back in its pool, none left with a handler (frames the kernel still held when the sockets closed are taken
// back at close and shown in the accounting as InKernelRX/InKernelTX: not a leak).
func (p *Poller) CheckFrames() error {
	accs, err := p.Frames()
	if err != nil {
		return err
	}
	p.mu.Lock()
	after := p.final != nil
	p.mu.Unlock()
	var errs []error
	for qi, a := range accs {
		check := a.Check
		if after {
			check = a.CheckAllFree
		}
		if err := check(); err != nil {
			errs = append(errs, fmt.Errorf("queue %d: %w", qi, err))
		}
	}
	return errors.Join(errs...)
}

// Close releases everything: XDP programs, sockets, eventfds, UMEMs. Call it after Run has returned (or
// instead of Run). It is idempotent.
func (p *Poller) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.running {
		return ErrRunning
	}
	if p.closed {
		return nil
	}
	p.closed = true
	p.teardown()
	return p.release()
}

func (p *Poller) release() error {
	var errs []error
	for _, q := range p.qs {
		for i := range q.ports {
			qp := &q.ports[i]
			if qp.sock == nil {
				continue
			}
			qp.statSock.Store(nil)
			if err := qp.sock.Close(); err != nil {
				errs = append(errs, err)
			}
		}
		q.closeEventfd()
		if err := q.area.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if p.ns.IsOpen() {
		p.ns.Close()
	}
	return errors.Join(errs...)
}
