package kmirror

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

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
}

type counters struct {
	routeEv, addrEv, neighEv, routeUpd, routeErr atomic.Uint64
	nSet, nFail, nForget                         atomic.Uint64
	resolveReq, resolveDrop, resolveErr, pfxErr  atomic.Uint64
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

	// routes is owned by the route goroutine (and Start before it runs).
	routes map[routeKey]mirrored

	// pfx guards the XDP map's desired state, shared by the address and route goroutines.
	pfx        sync.Mutex
	locals     map[netip.Prefix]int // refcount of /32 ToKernel entries from addresses
	routeOwner map[netip.Prefix]xdpprog.PrefixOwner

	closeOnce sync.Once
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
		routes: map[routeKey]mirrored{}, locals: map[netip.Prefix]int{}, routeOwner: map[netip.Prefix]xdpprog.PrefixOwner{}}
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
	case m.resolve <- resolveReq{idx, addr}:
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
	ns := netns.None()
	if m.cfg.NetNS != nil {
		ns = *m.cfg.NetNS
	}
	// Subscribe first, then list: an event between the two is applied after the listing, in order, and the
	// updates are idempotent, so nothing is missed and nothing is applied out of order.
	addrCh := make(chan netlink.AddrUpdate, 256)
	routeCh := make(chan netlink.RouteUpdate, 4096)
	neighCh := make(chan netlink.NeighUpdate, 1024)
	errCb := func(err error) {
		select {
		case <-m.done:
		default:
			m.log.Warn("kmirror: netlink subscription", "err", err)
		}
	}
	const rcvbuf = 4 << 20 // a full table dump or a routing daemon's burst must not overflow the socket
	if err := netlink.AddrSubscribeWithOptions(addrCh, m.done, netlink.AddrSubscribeOptions{Namespace: &ns, ErrorCallback: errCb, ReceiveBufferSize: rcvbuf}); err != nil {
		m.Close()
		return fmt.Errorf("kmirror: subscribe to address events: %w", err)
	}
	if err := netlink.RouteSubscribeWithOptions(routeCh, m.done, netlink.RouteSubscribeOptions{Namespace: &ns, ErrorCallback: errCb, ReceiveBufferSize: rcvbuf}); err != nil {
		m.Close()
		return fmt.Errorf("kmirror: subscribe to route events: %w", err)
	}
	if err := netlink.NeighSubscribeWithOptions(neighCh, m.done, netlink.NeighSubscribeOptions{Namespace: &ns, ErrorCallback: errCb, ReceiveBufferSize: rcvbuf}); err != nil {
		m.Close()
		return fmt.Errorf("kmirror: subscribe to neighbour events: %w", err)
	}

	addrs, err := m.nl.AddrList(nil, netlink.FAMILY_V4)
	if err != nil {
		m.Close()
		return fmt.Errorf("kmirror: list addresses: %w", err)
	}
	for _, a := range addrs {
		if a.IPNet != nil {
			m.applyAddr(*a.IPNet, true)
		}
	}
	routes, err := m.nl.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: m.table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		m.Close()
		return fmt.Errorf("kmirror: list routes of table %d: %w", m.table, err)
	}
	batch := make([]netlink.RouteUpdate, 0, len(routes))
	for _, r := range routes {
		batch = append(batch, netlink.RouteUpdate{Type: unix.RTM_NEWROUTE, Route: r})
	}
	m.applyRoutes(batch)
	neighs, err := m.nl.NeighList(0, netlink.FAMILY_V4)
	if err != nil {
		m.Close()
		return fmt.Errorf("kmirror: list neighbours: %w", err)
	}
	for _, n := range neighs {
		m.applyNeigh(netlink.NeighUpdate{Type: unix.RTM_NEWNEIGH, Neigh: n})
	}

	m.wg.Add(4)
	go follow(m, addrCh, &m.ctr.addrEv, func(u netlink.AddrUpdate) { m.applyAddr(u.LinkAddress, u.NewAddr) })
	go m.routeLoop(routeCh)
	go follow(m, neighCh, &m.ctr.neighEv, m.applyNeigh)
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

// Stats returns the counters.
func (m *Mirror) Stats() Stats {
	c := &m.ctr
	return Stats{
		RouteEvents: c.routeEv.Load(), AddrEvents: c.addrEv.Load(), NeighEvents: c.neighEv.Load(),
		RouteUpdates: c.routeUpd.Load(), RouteErrors: c.routeErr.Load(),
		NeighboursSet: c.nSet.Load(), NeighboursFailed: c.nFail.Load(), NeighboursForgotten: c.nForget.Load(),
		ResolveRequests: c.resolveReq.Load(), ResolveDropped: c.resolveDrop.Load(), ResolveErrors: c.resolveErr.Load(),
		PrefixErrors: c.pfxErr.Load(),
	}
}

// follow applies each update from ch, counting it in events, until the mirror closes or the subscription
// ends. Routes have their own loop, which batches bursts.
func follow[U any](m *Mirror, ch <-chan U, events *atomic.Uint64, apply func(U)) {
	defer m.wg.Done()
	for {
		select {
		case <-m.done:
			return
		case u, ok := <-ch:
			if !ok {
				return
			}
			events.Add(1)
			apply(u)
		}
	}
}

// --- addresses ---

// addrPrefixes are the /32 entries an address gives the kernel: the address and its directed broadcast.
func addrPrefixes(n net.IPNet) []netip.Prefix {
	ip, ok := netip.AddrFromSlice(n.IP.To4())
	if !ok {
		return nil
	}
	ones, bits := n.Mask.Size()
	if bits != 32 {
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

func (m *Mirror) routeLoop(ch <-chan netlink.RouteUpdate) {
	defer m.wg.Done()
	var batch []netlink.RouteUpdate
	for {
		select {
		case <-m.done:
			return
		case u, ok := <-ch:
			if !ok {
				return
			}
			batch = append(batch[:0], u)
			// Take the rest of a burst (a routing daemon's table, ip -batch) into the same stack update: one
			// SyncRoutes validates and applies it under one lock, instead of one writer round per event.
		drain:
			for len(batch) < 65536 {
				select {
				case u, ok := <-ch:
					if !ok {
						break drain
					}
					batch = append(batch, u)
				default:
					break drain
				}
			}
			m.ctr.routeEv.Add(uint64(len(batch)))
			m.applyRoutes(batch)
		}
	}
}

func routePrefix(r *netlink.Route) (netip.Prefix, bool) {
	if r.Family != 0 && r.Family != unix.AF_INET {
		return netip.Prefix{}, false
	}
	if r.Dst == nil {
		return netip.PrefixFrom(netip.IPv4Unspecified(), 0), true
	}
	ip, ok := netip.AddrFromSlice(r.Dst.IP.To4())
	if !ok {
		return netip.Prefix{}, false
	}
	ones, bits := r.Dst.Mask.Size()
	if bits != 32 {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(ip, ones).Masked(), true
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
		if g, ok := netip.AddrFromSlice(gw.To4()); ok && gw != nil {
			sr.NextHop = g
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
		u := &batch[i]
		if u.Table != m.table {
			continue
		}
		p, ok := routePrefix(&u.Route)
		if !ok {
			continue
		}
		k := routeKey{prefix: p, priority: u.Priority, tos: u.Tos}
		switch u.Type {
		case unix.RTM_NEWROUTE:
			m.routes[k] = m.translate(&u.Route, p)
		case unix.RTM_DELROUTE:
			delete(m.routes, k)
		default:
			continue
		}
		touched[p] = true
	}
	if len(touched) == 0 {
		return
	}
	var set []stack.Route
	var del []netip.Prefix
	owners := map[netip.Prefix]xdpprog.PrefixOwner{}
	gone := map[netip.Prefix]bool{}
	for p := range touched {
		best, found := mirrored{}, false
		bestPrio := 0
		for k, mr := range m.routes {
			if k.prefix == p && (!found || k.priority < bestPrio) {
				best, bestPrio, found = mr, k.priority, true
			}
		}
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
	if n.Family != unix.AF_INET {
		return
	}
	name, ok := m.byIdx[n.LinkIndex]
	if !ok {
		return
	}
	ip, ok := netip.AddrFromSlice(n.IP.To4())
	if !ok {
		return
	}
	if u.Type == unix.RTM_DELNEIGH {
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
	case n.State&netlink.NUD_FAILED != 0:
		if m.st.FailNeighbour(name, ip) == nil {
			m.ctr.nFail.Add(1)
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
			err := m.nl.NeighSet(&netlink.Neigh{
				LinkIndex: r.ifindex, Family: unix.AF_INET, IP: r.addr.AsSlice(), Flags: netlink.NTF_USE,
			})
			if err != nil {
				m.ctr.resolveErr.Add(1)
				m.log.Warn("kmirror: ask the kernel to resolve a neighbour", "addr", r.addr, "ifindex", r.ifindex, "err", err)
			}
		}
	}
}
