package kmirror

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/internal/xdpprog"
	"github.com/xdpnet/xdpnet/proto"
	"github.com/xdpnet/xdpnet/stack"
)

// MainTable is the kernel's main routing table (RT_TABLE_MAIN), the default of Config.Table.
const MainTable = unix.RT_TABLE_MAIN

// resolveQueueLen bounds the resolutions waiting for the netlink goroutine; more are dropped (and counted):
// the stack asks again after its ProbeInterval.
const resolveQueueLen = 1024

// Config says what to mirror.
type Config struct {
	// NetNS is the router's network namespace; nil means the namespace of the thread that calls Start.
	NetNS *netns.NsHandle
	// Interfaces are the names of the interfaces the stack owns (the poller's ports).
	Interfaces []string
	// Table is the routing table to mirror (0 means MainTable).
	Table int
	// Prefixes is the transit program's map; nil mirrors into the stack only.
	Prefixes *xdpprog.KernelPrefixes
	// Logger gets one line per refused route or failed update; nil discards.
	Logger *slog.Logger
	// ReceiveBufferSize is each event socket's receive buffer in bytes (0: 4 MiB, set with SO_RCVBUFFORCE, so
	// rmem_max does not cap it). Whatever its size, a burst can overflow it (ENOBUFS): the mirror then
	// subscribes again and re-reads the kernel's state (Stats.Resyncs). Tests make it small to cause that.
	ReceiveBufferSize int
}

// Stats are the mirror's counters.
type Stats struct {
	RouteEvents, AddrEvents, NeighEvents uint64
	RouteUpdates                         uint64 // stack table updates (one per burst of route events)
	RouteErrors                          uint64 // routes the stack refused
	NeighboursSet, NeighboursFailed      uint64
	NeighboursForgotten                  uint64
	ResolveRequests                      uint64 // NTF_USE requests sent to the kernel
	ResolveDropped                       uint64 // requests dropped because the queue was full
	ResolveErrors                        uint64
	PrefixErrors                         uint64 // XDP map updates that failed
	// Resyncs counts event subscriptions lost (a netlink receive error such as ENOBUFS: events were dropped)
	// and renewed, with the state read again and reconciled; ResyncErrors counts failed attempts. After
	// resyncAttempts failures in a row the mirror gives up: Failed is closed and Err says why.
	Resyncs, ResyncErrors uint64
}

type counters struct {
	routeEv, addrEv, neighEv, routeUpd, routeErr atomic.Uint64
	nSet, nFail, nForget                         atomic.Uint64
	resolveReq, resolveDrop, resolveErr, pfxErr  atomic.Uint64
	resyncs, resyncErrs                          atomic.Uint64
}

type resolveReq struct {
	ifindex int
	addr    netip.Addr
}

// routeKey tells apart the kernel routes of one prefix in one table.
type routeKey struct {
	prefix   netip.Prefix
	priority int
	tos      int
}

// mirrored is what one kernel route means here.
type mirrored struct {
	stack   stack.Route
	inStack bool // false: the prefix is the kernel's (ToKernel)
}

// Mirror follows one namespace's kernel. See the package doc.
type Mirror struct {
	cfg    Config
	log    *slog.Logger
	st     *stack.Stack
	nl     *netlink.Handle
	byIdx  map[int]string
	byName map[string]int
	table  int

	resolve chan resolveReq
	done    chan struct{}
	wg      sync.WaitGroup
	ctr     counters

	// routes is owned by the route goroutine (and Start before it runs); neighs, the neighbours given to the
	// stack (bounded by the kernel's own table, gc_thresh3), by the neighbour goroutine.
	routes map[routeKey]mirrored
	neighs map[neighKey]bool

	// pfx guards the XDP map's desired state, shared by the address and route goroutines.
	pfx        sync.Mutex
	locals     map[netip.Prefix]int // refcount of /32 and /128 ToKernel entries from addresses
	routeOwner map[netip.Prefix]xdpprog.PrefixOwner

	closeOnce sync.Once
	failed    chan struct{}
	failOnce  sync.Once
	err       error // why the mirror gave up; set before failed is closed
}

// neighKey is one neighbour entry of the kernel.
type neighKey struct {
	ifindex int
	addr    netip.Addr
}

// New checks cfg and looks the interfaces up in the namespace. It starts nothing: give Mirror.Resolve to
// stack.Config.Resolver, build the stack, then call Start.
func New(cfg Config) (*Mirror, error) {
	if len(cfg.Interfaces) == 0 {
		return nil, errors.New("kmirror: no interfaces (list the interfaces the stack owns)")
	}
	if cfg.Table == 0 {
		cfg.Table = MainTable
	}
	if cfg.Table < 0 {
		return nil, fmt.Errorf("kmirror: table %d: want a table id such as 254 (main)", cfg.Table)
	}
	ns := netns.None()
	if cfg.NetNS != nil {
		ns = *cfg.NetNS
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		return nil, fmt.Errorf("kmirror: netlink handle in the router's namespace: %w", err)
	}
	m := &Mirror{cfg: cfg, log: cfg.Logger, nl: h, byIdx: map[int]string{}, byName: map[string]int{}, table: cfg.Table,
		resolve: make(chan resolveReq, resolveQueueLen), done: make(chan struct{}),
		failed: make(chan struct{}),
		routes: map[routeKey]mirrored{}, neighs: map[neighKey]bool{}, locals: map[netip.Prefix]int{}, routeOwner: map[netip.Prefix]xdpprog.PrefixOwner{}}
	if m.log == nil {
		m.log = slog.New(slog.DiscardHandler)
	}
	for _, name := range cfg.Interfaces {
		l, err := h.LinkByName(name)
		if err != nil {
			h.Close()
			return nil, fmt.Errorf("kmirror: interface %s: %w (it must exist in the router's namespace; check `ip link`)", name, err)
		}
		m.byIdx[l.Attrs().Index] = name
		m.byName[name] = l.Attrs().Index
	}
	return m, nil
}

// Resolve is a stack.NeighbourResolver: it queues a request for the kernel to resolve addr on iface and
// returns at once (a full queue drops it; the stack asks again).
func (m *Mirror) Resolve(iface string, addr netip.Addr) {
	idx, ok := m.byName[iface]
	if !ok {
		return
	}
	select {
	case m.resolve <- resolveReq{idx, addr.Unmap().WithZone("")}:
	default:
		m.ctr.resolveDrop.Add(1)
	}
}

// Start subscribes to the kernel's address, route and neighbour events, applies the current state (so that
// the stack and the XDP map are complete when it returns) and keeps following the events until Close.
func (m *Mirror) Start(st *stack.Stack) error {
	if st == nil {
		return errors.New("kmirror: Start needs the stack")
	}
	m.st = st
	// Subscribe first, then read the state: an event between the two is applied after it, in order, and the
	// updates are idempotent, so nothing is missed and nothing is applied out of order. A subscription that
	// loses events later is renewed the same way (resubscribe).
	addr := stream[netlink.AddrUpdate]{name: "address", events: &m.ctr.addrEv, subscribe: m.subscribeAddrs, reread: m.rereadAddrs,
		apply: func(us []netlink.AddrUpdate) {
			for _, u := range us {
				m.applyAddr(u.LinkAddress, u.NewAddr)
			}
		}}
	route := stream[netlink.RouteUpdate]{name: "route", events: &m.ctr.routeEv, subscribe: m.subscribeRoutes, reread: m.rereadRoutes,
		apply: m.applyRoutes}
	neigh := stream[netlink.NeighUpdate]{name: "neighbour", events: &m.ctr.neighEv, subscribe: m.subscribeNeighs, reread: m.rereadNeighs,
		apply: func(us []netlink.NeighUpdate) {
			for _, u := range us {
				m.applyNeigh(u)
			}
		}}
	addrSub, err := addr.start()
	if err != nil {
		m.Close()
		return err
	}
	routeSub, err := route.start()
	if err != nil {
		addrSub.stop()
		m.Close()
		return err
	}
	neighSub, err := neigh.start()
	if err != nil {
		addrSub.stop()
		routeSub.stop()
		m.Close()
		return err
	}
	m.wg.Add(4)
	go follow(m, addr, addrSub)
	go follow(m, route, routeSub)
	go follow(m, neigh, neighSub)
	go m.resolveLoop()
	return nil
}

// Close stops following the kernel. The stack and the XDP map keep what they have.
func (m *Mirror) Close() error {
	m.closeOnce.Do(func() {
		close(m.done)
		m.wg.Wait()
		m.nl.Close()
	})
	return nil
}

// Failed is closed when the mirror has stopped following the kernel because it could not subscribe again
// after losing events (see Stats.Resyncs); the stack then keeps a table that may go stale, so the owner
// should stop (xdpfwd exits non-zero). Err says why.
func (m *Mirror) Failed() <-chan struct{} { return m.failed }

// Err is the reason Failed was closed, or nil.
func (m *Mirror) Err() error {
	select {
	case <-m.failed:
		return m.err
	default:
		return nil
	}
}

func (m *Mirror) fail(err error) {
	m.failOnce.Do(func() {
		m.err = err
		close(m.failed)
	})
}

// Stats returns the counters.
func (m *Mirror) Stats() Stats {
	c := &m.ctr
	return Stats{
		RouteEvents: c.routeEv.Load(), AddrEvents: c.addrEv.Load(), NeighEvents: c.neighEv.Load(),
		RouteUpdates: c.routeUpd.Load(), RouteErrors: c.routeErr.Load(),
		NeighboursSet: c.nSet.Load(), NeighboursFailed: c.nFail.Load(), NeighboursForgotten: c.nForget.Load(),
		ResolveRequests: c.resolveReq.Load(), ResolveDropped: c.resolveDrop.Load(), ResolveErrors: c.resolveErr.Load(),
		PrefixErrors: c.pfxErr.Load(), Resyncs: c.resyncs.Load(), ResyncErrors: c.resyncErrs.Load(),
	}
}

// --- event streams ---

// stream is one kind of netlink event: how to subscribe to it, how to read the whole state again and
// reconcile (after subscribing, so nothing falls between), and how to apply a burst of events.
type stream[U any] struct {
	name      string
	events    *atomic.Uint64
	subscribe func(ch chan U, done <-chan struct{}) error
	reread    func() error
	apply     func([]U)
}

// sub is one live subscription: its events, and the channel whose closing closes its socket.
type sub[U any] struct {
	ch   chan U
	done chan struct{}
}

// stop closes the subscription's socket and drains its channel, so that netlink's reader goroutine, which
// may be blocked sending an event, can see the closed socket and end.
func (s sub[U]) stop() {
	close(s.done)
	go func() {
		for range s.ch {
		}
	}()
}

// eventQueueLen is the channel between netlink's reader goroutine and the mirror's; the socket buffer behind
// it is the larger bound.
const eventQueueLen = 4096

// start subscribes and reads the current state.
func (s stream[U]) start() (sub[U], error) {
	sb := sub[U]{ch: make(chan U, eventQueueLen), done: make(chan struct{})}
	if err := s.subscribe(sb.ch, sb.done); err != nil {
		close(sb.done)
		return sub[U]{}, fmt.Errorf("kmirror: subscribe to %s events: %w", s.name, err)
	}
	if err := s.reread(); err != nil {
		sb.stop()
		return sub[U]{}, fmt.Errorf("kmirror: read the kernel's %ss: %w", s.name, err)
	}
	return sb, nil
}

// resyncAttempts and resyncBackoff bound how long a stream tries to subscribe again: 100 ms doubling, about
// 3 s in all, before the mirror gives up.
const (
	resyncAttempts = 6
	resyncBackoff  = 100 * time.Millisecond
)

// follow applies the events of one stream until the mirror closes. Bursts (a routing daemon's table, ip
// -batch) are taken into one apply, so routes go to the stack in one SyncRoutes. When the subscription ends
// (netlink's reader saw a receive error: ENOBUFS means the kernel dropped events because the socket buffer
// was full), events are lost: the stream subscribes again and re-reads the state, which reconciles whatever
// changed meanwhile, deletions included.
func follow[U any](m *Mirror, s stream[U], sb sub[U]) {
	defer m.wg.Done()
	var batch []U
	for {
		select {
		case <-m.done:
			sb.stop()
			return
		case u, ok := <-sb.ch:
			if !ok {
				close(sb.done) // the reader has ended; close its socket
				if sb, ok = resubscribe(m, s); !ok {
					return
				}
				continue
			}
			batch = append(batch[:0], u)
		drain:
			for len(batch) < 65536 {
				select {
				case u, ok := <-sb.ch:
					if !ok {
						break drain // seen closed on the next round
					}
					batch = append(batch, u)
				default:
					break drain
				}
			}
			s.events.Add(uint64(len(batch)))
			s.apply(batch)
		}
	}
}

// resubscribe renews a lost subscription and reconciles; it reports false when the mirror is closing or
// has given up (Failed).
func resubscribe[U any](m *Mirror, s stream[U]) (sub[U], bool) {
	m.ctr.resyncs.Add(1)
	m.log.Warn("kmirror: "+s.name+" events lost (netlink receive error, e.g. ENOBUFS in a burst): subscribing again and re-reading the kernel's state",
		"resyncs", m.ctr.resyncs.Load())
	wait := resyncBackoff
	for attempt := 1; ; attempt++ {
		sb, err := s.start()
		if err == nil {
			m.log.Info("kmirror: "+s.name+" events followed again, state reconciled", "attempt", attempt)
			return sb, true
		}
		m.ctr.resyncErrs.Add(1)
		if attempt == resyncAttempts {
			err = fmt.Errorf("kmirror: stopped following the kernel's %ss after %d failed attempts to subscribe again: %w", s.name, attempt, err)
			m.log.Error(err.Error())
			m.fail(err)
			return sub[U]{}, false
		}
		m.log.Warn("kmirror: subscribing again failed; retrying", "events", s.name, "attempt", attempt, "in", wait.String(), "err", err)
		select {
		case <-m.done:
			return sub[U]{}, false
		case <-time.After(wait):
		}
		wait *= 2
	}
}

// subscribeNS is the namespace whose events the three subscriptions follow.
func (m *Mirror) subscribeNS() *netns.NsHandle {
	ns := netns.None()
	if m.cfg.NetNS != nil {
		ns = *m.cfg.NetNS
	}
	return &ns
}

func (m *Mirror) rcvbuf() int {
	if m.cfg.ReceiveBufferSize > 0 {
		return m.cfg.ReceiveBufferSize
	}
	return 4 << 20 // a full table dump or a routing daemon's burst should fit
}

func (m *Mirror) errCallback(what string) func(error) {
	return func(err error) {
		select {
		case <-m.done:
		default:
			m.log.Warn("kmirror: netlink "+what+" subscription", "err", err)
		}
	}
}

func (m *Mirror) subscribeAddrs(ch chan netlink.AddrUpdate, done <-chan struct{}) error {
	return netlink.AddrSubscribeWithOptions(ch, done, netlink.AddrSubscribeOptions{Namespace: m.subscribeNS(),
		ErrorCallback: m.errCallback("address"), ReceiveBufferSize: m.rcvbuf(), ReceiveBufferForceSize: true})
}

func (m *Mirror) subscribeRoutes(ch chan netlink.RouteUpdate, done <-chan struct{}) error {
	return netlink.RouteSubscribeWithOptions(ch, done, netlink.RouteSubscribeOptions{Namespace: m.subscribeNS(),
		ErrorCallback: m.errCallback("route"), ReceiveBufferSize: m.rcvbuf(), ReceiveBufferForceSize: true})
}

func (m *Mirror) subscribeNeighs(ch chan netlink.NeighUpdate, done <-chan struct{}) error {
	return netlink.NeighSubscribeWithOptions(ch, done, netlink.NeighSubscribeOptions{Namespace: m.subscribeNS(),
		ErrorCallback: m.errCallback("neighbour"), ReceiveBufferSize: m.rcvbuf(), ReceiveBufferForceSize: true})
}

// dump runs a netlink dump again while the kernel reports it interrupted (NLM_F_DUMP_INTR: the table changed
// during the dump, so the answer may be inconsistent), a few times.
func dump[T any](list func() ([]T, error)) ([]T, error) {
	for i := 0; ; i++ {
		r, err := list()
		if errors.Is(err, netlink.ErrDumpInterrupted) && i < 10 {
			continue
		}
		return r, err
	}
}

// rereadAddrs reads every address of the namespace, both families, and makes the XDP map's /32 and /128
// entries match.
func (m *Mirror) rereadAddrs() error {
	addrs, err := dump(func() ([]netlink.Addr, error) { return m.nl.AddrList(nil, netlink.FAMILY_ALL) })
	if err != nil {
		return err
	}
	fresh := map[netip.Prefix]int{}
	for _, a := range addrs {
		if a.IPNet != nil {
			for _, p := range addrPrefixes(*a.IPNet) {
				fresh[p]++
			}
		}
	}
	m.pfx.Lock()
	defer m.pfx.Unlock()
	old := m.locals
	m.locals = fresh
	for p := range old {
		if _, ok := fresh[p]; !ok {
			m.syncPrefixLocked(p)
		}
	}
	for p := range fresh {
		if old[p] == 0 {
			m.syncPrefixLocked(p)
		}
	}
	return nil
}

// rereadRoutes reads the mirrored table, both families, and reconciles: routes the kernel no longer has
// leave the stack, the rest is set, in one stack update.
func (m *Mirror) rereadRoutes() error {
	var routes []netlink.Route
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		rs, err := dump(func() ([]netlink.Route, error) {
			return m.nl.RouteListFiltered(family, &netlink.Route{Table: m.table}, netlink.RT_FILTER_TABLE)
		})
		if err != nil {
			return err
		}
		routes = append(routes, rs...)
	}
	touched := map[netip.Prefix]bool{}
	for k := range m.routes {
		touched[k.prefix] = true
	}
	m.routes = map[routeKey]mirrored{}
	for i := range routes {
		m.routeEvent(unix.RTM_NEWROUTE, &routes[i], touched)
	}
	m.syncRoutes(touched)
	return nil
}

// rereadNeighs reads the kernel's neighbours (ARP and NDP), applies them, and makes the stack forget those
// it was given that the kernel no longer has.
func (m *Mirror) rereadNeighs() error {
	var neighs []netlink.Neigh
	for _, family := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		ns, err := dump(func() ([]netlink.Neigh, error) { return m.nl.NeighList(0, family) })
		if err != nil {
			return err
		}
		neighs = append(neighs, ns...)
	}
	old := m.neighs
	m.neighs = map[neighKey]bool{}
	for _, n := range neighs {
		m.applyNeigh(netlink.NeighUpdate{Type: unix.RTM_NEWNEIGH, Neigh: n})
	}
	for k := range old {
		if !m.neighs[k] {
			if name, ok := m.byIdx[k.ifindex]; ok && m.st.ForgetNeighbour(name, k.addr) == nil {
				m.ctr.nForget.Add(1)
			}
		}
	}
	return nil
}

// --- addresses ---

// addrPrefixes are the entries an address gives the kernel: an IPv4 address and its directed broadcast as
// /32s, an IPv6 address as a /128. (IPv6 has no broadcast; the subnet-router anycast address is the kernel's
// only when its forwarding is on, and then the kernel forwards too.)
func addrPrefixes(n net.IPNet) []netip.Prefix {
	ones, bits := n.Mask.Size()
	if ip, ok := netip.AddrFromSlice(n.IP); ok && bits == 128 && ip.Is6() && !ip.Is4In6() {
		return []netip.Prefix{netip.PrefixFrom(ip, 128)}
	}
	ip, ok := netip.AddrFromSlice(n.IP.To4())
	if !ok || bits != 32 {
		return nil
	}
	out := []netip.Prefix{netip.PrefixFrom(ip, 32)}
	if ones < 31 { // RFC 3021: a /31 has no broadcast address
		a := ip.As4()
		u := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
		u |= 1<<(32-ones) - 1
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(u >> 24), byte(u >> 16), byte(u >> 8), byte(u)}), 32))
	}
	return out
}

func (m *Mirror) applyAddr(n net.IPNet, add bool) {
	m.pfx.Lock()
	defer m.pfx.Unlock()
	for _, p := range addrPrefixes(n) {
		if add {
			m.locals[p]++
		} else if m.locals[p] > 0 {
			if m.locals[p]--; m.locals[p] == 0 {
				delete(m.locals, p)
			}
		}
		m.syncPrefixLocked(p)
	}
}

// syncPrefixLocked writes the effective owner of p to the XDP map: an address of the box wins over a route.
func (m *Mirror) syncPrefixLocked(p netip.Prefix) {
	kp := m.cfg.Prefixes
	if kp == nil {
		return
	}
	var err error
	if m.locals[p] > 0 {
		err = kp.Set(p, xdpprog.ToKernel)
	} else if o, ok := m.routeOwner[p]; ok {
		err = kp.Set(p, o)
	} else {
		err = kp.Delete(p)
	}
	if err != nil {
		m.ctr.pfxErr.Add(1)
		m.log.Warn("kmirror: XDP prefix map", "prefix", p, "err", err)
	}
}

// --- routes ---

// routePrefix is the destination of r, IPv4 or IPv6 (a default route has no Dst: its family says which).
func routePrefix(r *netlink.Route) (netip.Prefix, bool) {
	v6 := r.Family == unix.AF_INET6
	if r.Family != 0 && r.Family != unix.AF_INET && !v6 {
		return netip.Prefix{}, false
	}
	if r.Dst == nil {
		if v6 {
			return netip.PrefixFrom(netip.IPv6Unspecified(), 0), true
		}
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0), true
	}
	ones, bits := r.Dst.Mask.Size()
	var ip netip.Addr
	var ok bool
	switch bits {
	case 32:
		ip, ok = netip.AddrFromSlice(r.Dst.IP.To4())
	case 128:
		ip, ok = netip.AddrFromSlice(r.Dst.IP.To16())
		ok = ok && !ip.Is4In6()
	}
	if !ok || (r.Family != 0 && ip.Is6() != v6) {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(ip, ones).Masked(), true
}

// scoped reports prefixes that are not routed at all: IPv6 link-local (fe80::/10) and multicast (ff00::/8),
// which the kernel lists in its main table for every interface. The transit program leaves them to the kernel
// whatever the maps say, and the stack refuses them as routes (RFC 4291 §2.5.6).
func scoped(p netip.Prefix) bool {
	a := p.Addr()
	return a.Is6() && p.Bits() >= 8 && (a.IsLinkLocalUnicast() || a.IsMulticast())
}

// translate says what kernel route r means for the stack.
func (m *Mirror) translate(r *netlink.Route, p netip.Prefix) mirrored {
	switch r.Type {
	case unix.RTN_BLACKHOLE:
		return mirrored{stack: stack.Route{Prefix: p, Type: stack.Blackhole}, inStack: true}
	case unix.RTN_UNREACHABLE, unix.RTN_PROHIBIT:
		return mirrored{stack: stack.Route{Prefix: p, Type: stack.Unreachable}, inStack: true}
	case unix.RTN_UNICAST:
	default:
		return mirrored{}
	}
	hop := func(idx int, gw net.IP) (mirrored, bool) {
		name, ok := m.byIdx[idx]
		if !ok {
			return mirrored{}, false
		}
		sr := stack.Route{Prefix: p, Interface: name}
		if g, ok := netip.AddrFromSlice(gw); ok && gw != nil {
			sr.NextHop = g.Unmap() // a 16-byte IPv4 gateway from net.IP, or IPv6 (fe80::1 with Interface)
		}
		return mirrored{stack: sr, inStack: true}, true
	}
	if len(r.MultiPath) > 0 {
		for _, nh := range r.MultiPath {
			if mr, ok := hop(nh.LinkIndex, nh.Gw); ok {
				return mr
			}
		}
		return mirrored{}
	}
	if mr, ok := hop(r.LinkIndex, r.Gw); ok {
		return mr
	}
	return mirrored{}
}

// applyRoutes applies a burst of route events: the route state is updated event by event, then every prefix
// touched gets its effective route (lowest metric) in one stack update, and its XDP map entry.
func (m *Mirror) applyRoutes(batch []netlink.RouteUpdate) {
	touched := map[netip.Prefix]bool{}
	for i := range batch {
		m.routeEvent(batch[i].Type, &batch[i].Route, touched)
	}
	m.syncRoutes(touched)
}

// routeEvent records one kernel route added (RTM_NEWROUTE) or deleted, and the prefix it touched.
func (m *Mirror) routeEvent(typ uint16, r *netlink.Route, touched map[netip.Prefix]bool) {
	if r.Table != m.table {
		return
	}
	p, ok := routePrefix(r)
	if !ok || scoped(p) {
		return
	}
	k := routeKey{prefix: p, priority: r.Priority, tos: r.Tos}
	switch typ {
	case unix.RTM_NEWROUTE:
		m.routes[k] = m.translate(r, p)
	case unix.RTM_DELROUTE:
		delete(m.routes, k)
	default:
		return
	}
	touched[p] = true
}

// syncRoutes gives each touched prefix its effective route in the stack, in one SyncRoutes, and its XDP map
// entry.
func (m *Mirror) syncRoutes(touched map[netip.Prefix]bool) {
	if len(touched) == 0 {
		return
	}
	var set []stack.Route
	var del []netip.Prefix
	owners := map[netip.Prefix]xdpprog.PrefixOwner{}
	gone := map[netip.Prefix]bool{}
	// The effective route of each touched prefix, in one pass over the table (a re-read touches all of it).
	type choice struct {
		mr   mirrored
		prio int
	}
	bestOf := make(map[netip.Prefix]choice, len(touched))
	for k, mr := range m.routes {
		if !touched[k.prefix] {
			continue
		}
		if c, ok := bestOf[k.prefix]; !ok || k.priority < c.prio {
			bestOf[k.prefix] = choice{mr, k.priority}
		}
	}
	for p := range touched {
		c, found := bestOf[p]
		best := c.mr
		switch {
		case !found:
			del = append(del, p)
			gone[p] = true
		case best.inStack:
			set = append(set, best.stack)
			owners[p] = xdpprog.FastPath
		default:
			del = append(del, p)
			owners[p] = xdpprog.ToKernel
		}
	}
	if err := m.st.SyncRoutes(set, del); err != nil {
		// One bad route must not keep the others out: apply them one at a time.
		m.st.SyncRoutes(nil, del)
		for _, r := range set {
			if err := m.st.ReplaceRoute(r); err != nil {
				m.ctr.routeErr.Add(1)
				m.log.Warn("kmirror: route not mirrored (its packets are dropped by the fast path)", "route", r.String(), "err", err)
				owners[r.Prefix] = xdpprog.ToKernel // let the kernel have them rather than misroute
			}
		}
	}
	m.ctr.routeUpd.Add(1)
	m.pfx.Lock()
	for p, o := range owners {
		m.routeOwner[p] = o
		m.syncPrefixLocked(p)
	}
	for p := range gone {
		delete(m.routeOwner, p)
		m.syncPrefixLocked(p)
	}
	m.pfx.Unlock()
}

// --- neighbours ---

const usableStates = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE |
	netlink.NUD_PERMANENT | netlink.NUD_NOARP

func (m *Mirror) applyNeigh(u netlink.NeighUpdate) {
	n := &u.Neigh
	if n.Family != unix.AF_INET && n.Family != unix.AF_INET6 {
		return
	}
	name, ok := m.byIdx[n.LinkIndex]
	if !ok {
		return
	}
	ip, ok := netip.AddrFromSlice(n.IP)
	if !ok {
		return
	}
	ip = ip.Unmap()
	if ip.Is4() != (n.Family == unix.AF_INET) || ip.IsMulticast() {
		return // IPv6 multicast entries (NOARP, mapped MACs) are not neighbours the stack resolves
	}
	k := neighKey{n.LinkIndex, ip}
	if u.Type == unix.RTM_DELNEIGH {
		delete(m.neighs, k)
		if m.st.ForgetNeighbour(name, ip) == nil {
			m.ctr.nForget.Add(1)
		}
		return
	}
	switch {
	case n.State&usableStates != 0 && len(n.HardwareAddr) == 6:
		var mac proto.MAC
		copy(mac[:], n.HardwareAddr)
		if err := m.st.SetNeighbour(name, ip, mac); err != nil {
			m.log.Warn("kmirror: neighbour", "addr", ip, "iface", name, "err", err)
			return
		}
		m.ctr.nSet.Add(1)
		m.neighs[k] = true
	case n.State&netlink.NUD_FAILED != 0:
		if m.st.FailNeighbour(name, ip) == nil {
			m.ctr.nFail.Add(1)
			m.neighs[k] = true
		}
	}
	// INCOMPLETE and NONE: the kernel is still asking; its answer comes as another event.
}

// --- resolution ---

func (m *Mirror) resolveLoop() {
	defer m.wg.Done()
	for {
		select {
		case <-m.done:
			return
		case r := <-m.resolve:
			m.ctr.resolveReq.Add(1)
			// RTM_NEWNEIGH with NTF_USE is neigh_event_send(): the kernel creates the entry if needed and
			// resolves it as if its own traffic used it; the outcome arrives as a neighbour event.
			family := unix.AF_INET6
			if r.addr.Is4() {
				family = unix.AF_INET
			}
			err := m.nl.NeighSet(&netlink.Neigh{
				LinkIndex: r.ifindex, Family: family, IP: r.addr.AsSlice(), Flags: netlink.NTF_USE,
			})
			if err != nil {
				m.ctr.resolveErr.Add(1)
				m.log.Warn("kmirror: ask the kernel to resolve a neighbour", "addr", r.addr, "ifindex", r.ifindex, "err", err)
			}
		}
	}
}
