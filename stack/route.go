package stack

import (
	"errors"
	"fmt"
	"net/netip"
	"sort"
	"sync"
	"sync/atomic"
)

// RouteType says what a route does with the packets it matches.
type RouteType uint8

const (
	// Unicast routes forward to a next hop (or, without one, to the destination on a connected network).
	Unicast RouteType = iota
	// Blackhole routes drop silently (DropBlackhole).
	Blackhole
	// Unreachable routes drop and answer ICMP host unreachable (DropUnreachableRoute).
	Unreachable
	// Local marks an address of this host (delivered locally). Made from Interface.Addrs; Lookup reports it,
	// AddRoute refuses it.
	Local
	// Broadcast marks the directed broadcast address of a connected network (delivered locally, never
	// forwarded, RFC 2644). Made from Interface.Addrs like Local.
	Broadcast
)

var routeTypeNames = [...]string{"unicast", "blackhole", "unreachable", "local", "broadcast"}

func (t RouteType) String() string {
	if int(t) < len(routeTypeNames) {
		return routeTypeNames[t]
	}
	return "route_type?"
}

// Route is one entry of the routing table.
type Route struct {
	Prefix netip.Prefix
	// NextHop is the gateway; the zero Addr means the prefix is on a connected network (the next hop is the
	// destination itself).
	NextHop netip.Addr
	// Interface is the egress interface name. It may be left empty when NextHop is on a connected network;
	// AddRoute fills it in.
	Interface string
	Type      RouteType
}

func (r Route) String() string {
	s := r.Prefix.String()
	if r.Type != Unicast {
		s = r.Type.String() + " " + s
	}
	if r.NextHop.IsValid() {
		s += " via " + r.NextHop.String()
	}
	if r.Interface != "" {
		s += " dev " + r.Interface
	}
	return s
}

// Errors of the routing API. They are returned wrapped with the route concerned; test with errors.Is.
var (
	ErrRouteExists   = errors.New("route exists (delete it first, or use another prefix)")
	ErrRouteNotFound = errors.New("no such route")
	ErrBadRoute      = errors.New("invalid route")
	ErrTooManyRoutes = errors.New("routing table full (16M route ids)")
)

// routeEntry is what a route id stands for on the hot path.
type routeEntry struct {
	route   Route
	typ     RouteType
	iface   int32  // index into Stack.ifaces, -1 for none
	gateway uint32 // 0 = connected: next hop is the destination
	depth   int
}

// routeSnap is one immutable version of the table: readers load it once per batch.
type routeSnap struct {
	lpm    *dir248
	routes []routeEntry // by route id; id 0 is "no route"
}

func (s *routeSnap) lookup(dst uint32) *routeEntry {
	id := s.lpm.lookup(dst)
	if id == 0 {
		return nil
	}
	return &s.routes[id]
}

// routeTable is written under mu by cloning the current snapshot, changing the clone and publishing it with
// an atomic store: the pollers read cur without a lock and keep using the old version until their next load.
type routeTable struct {
	mu       sync.Mutex
	cur      atomic.Pointer[routeSnap]
	byPrefix map[netip.Prefix]uint32 // the slow reference, and the id of each prefix
	free     []uint32
}

func newRouteTable() *routeTable {
	t := &routeTable{byPrefix: map[netip.Prefix]uint32{}}
	t.cur.Store(&routeSnap{lpm: newDir248(), routes: make([]routeEntry, 1)})
	return t
}

// update runs f on a private copy of the table and publishes it if f succeeds.
func (t *routeTable) update(f func(w *routeWriter) error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.cur.Load()
	w := &routeWriter{t: t, snap: &routeSnap{lpm: old.lpm.clone(), routes: append([]routeEntry(nil), old.routes...)}}
	// A failing f leaves byPrefix and free changed; undo from the log.
	if err := f(w); err != nil {
		w.rollback()
		return err
	}
	t.cur.Store(w.snap)
	return nil
}

type routeWriter struct {
	t    *routeTable
	snap *routeSnap
	log  []func()
}

func (w *routeWriter) rollback() {
	for i := len(w.log) - 1; i >= 0; i-- {
		w.log[i]()
	}
}

func (w *routeWriter) add(e routeEntry) error {
	p := e.route.Prefix
	if _, ok := w.t.byPrefix[p]; ok {
		return fmt.Errorf("add route %v: %w", e.route, ErrRouteExists)
	}
	var id uint32
	if n := len(w.t.free); n > 0 {
		id = w.t.free[n-1]
		w.t.free = w.t.free[:n-1]
		w.snap.routes[id] = e
		w.log = append(w.log, func() { w.t.free = append(w.t.free, id) })
	} else {
		id = uint32(len(w.snap.routes))
		if id > maxRouteID {
			return fmt.Errorf("add route %v: %w", e.route, ErrTooManyRoutes)
		}
		w.snap.routes = append(w.snap.routes, e)
	}
	w.t.byPrefix[p] = id
	w.log = append(w.log, func() { delete(w.t.byPrefix, p) })
	w.snap.lpm.insert(addr4(p.Addr()), p.Bits(), id)
	return nil
}

func (w *routeWriter) remove(p netip.Prefix) (routeEntry, error) {
	id, ok := w.t.byPrefix[p]
	if !ok {
		return routeEntry{}, fmt.Errorf("delete route %v: %w", p, ErrRouteNotFound)
	}
	e := w.snap.routes[id]
	delete(w.t.byPrefix, p)
	w.log = append(w.log, func() { w.t.byPrefix[p] = id })
	// The entry that takes over is the longest prefix strictly shorter than p that covers it.
	var repl uint32
	for l := p.Bits() - 1; l >= 0; l-- {
		q, _ := p.Addr().Prefix(l)
		if rid, ok := w.t.byPrefix[q]; ok {
			repl = lpmEntry(rid, l)
			break
		}
	}
	w.snap.lpm.remove(addr4(p.Addr()), p.Bits(), id, repl)
	w.snap.routes[id] = routeEntry{}
	w.t.free = append(w.t.free, id)
	w.log = append(w.log, func() { w.t.free = w.t.free[:len(w.t.free)-1] })
	return e, nil
}

// AddRoute adds r to the routing table. A unicast route needs a NextHop on a connected network, or an
// Interface, or both. The change is visible to every queue from its next batch; it costs a copy of the
// table (tens of ms), so add many routes with AddRoutes.
func (s *Stack) AddRoute(r Route) error { return s.AddRoutes([]Route{r}) }

// AddRoutes adds several routes in one table update: all or none.
func (s *Stack) AddRoutes(rs []Route) error {
	return s.rt.update(func(w *routeWriter) error {
		for _, r := range rs {
			e, err := s.checkRoute(r)
			if err != nil {
				return err
			}
			if err := w.add(e); err != nil {
				return err
			}
		}
		return nil
	})
}

// DeleteRoute removes the route for prefix (connected routes included; the addresses themselves stay).
func (s *Stack) DeleteRoute(prefix netip.Prefix) error {
	return s.rt.update(func(w *routeWriter) error {
		p := prefix.Masked()
		if id, ok := s.rt.byPrefix[p]; ok {
			if t := w.snap.routes[id].typ; t == Local || t == Broadcast {
				return fmt.Errorf("delete route %v: it is a %v address of an interface (remove the address from the configuration instead): %w", p, t, ErrBadRoute)
			}
		}
		_, err := w.remove(p)
		return err
	})
}

// Routes lists the unicast, blackhole and unreachable routes (connected routes included), sorted by prefix.
func (s *Stack) Routes() []Route {
	snap := s.rt.cur.Load()
	var out []Route
	for id := 1; id < len(snap.routes); id++ {
		e := &snap.routes[id]
		if e.route.Prefix.IsValid() && e.typ != Local && e.typ != Broadcast {
			out = append(out, e.route)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Prefix, out[j].Prefix
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c < 0
		}
		return a.Bits() < b.Bits()
	})
	return out
}

// Lookup returns the route the forwarding path would use for dst (Local and Broadcast included).
func (s *Stack) Lookup(dst netip.Addr) (Route, bool) {
	dst = dst.Unmap()
	if !dst.Is4() {
		return Route{}, false
	}
	e := s.rt.cur.Load().lookup(addr4(dst))
	if e == nil {
		return Route{}, false
	}
	return e.route, true
}

// checkRoute validates a user route and resolves its interface.
func (s *Stack) checkRoute(r Route) (routeEntry, error) {
	bad := func(why string) (routeEntry, error) {
		return routeEntry{}, fmt.Errorf("route %v: %s: %w", r, why, ErrBadRoute)
	}
	if !r.Prefix.IsValid() || !r.Prefix.Addr().Unmap().Is4() {
		return bad("prefix must be IPv4 (IPv6 routing is not supported)")
	}
	r.Prefix = netip.PrefixFrom(r.Prefix.Addr().Unmap(), r.Prefix.Bits())
	if r.Prefix.Masked() != r.Prefix {
		return bad(fmt.Sprintf("prefix has host bits set (write %v)", r.Prefix.Masked()))
	}
	e := routeEntry{typ: r.Type, iface: -1, depth: r.Prefix.Bits()}
	switch r.Type {
	case Blackhole, Unreachable:
		r.NextHop, r.Interface = netip.Addr{}, ""
	case Unicast:
		if r.Interface != "" {
			i := s.ifaceByName(r.Interface)
			if i < 0 {
				return bad(fmt.Sprintf("no interface %q in the configuration", r.Interface))
			}
			e.iface = int32(i)
		}
		if r.NextHop.IsValid() {
			r.NextHop = r.NextHop.Unmap()
			if !r.NextHop.Is4() {
				return bad("next hop must be IPv4")
			}
			if martian(addr4(r.NextHop)) || r.NextHop.IsMulticast() {
				return bad("next hop is not a unicast address")
			}
			e.gateway = addr4(r.NextHop)
			if e.iface < 0 {
				i := s.connectedIface(r.NextHop)
				if i < 0 {
					return bad("next hop is on no connected network (add an address of its network to an interface, or name the Interface)")
				}
				e.iface = int32(i)
				r.Interface = s.ifaces[i].name
			}
		} else if e.iface < 0 {
			return bad("a unicast route needs a NextHop or an Interface")
		}
	default:
		return bad("type must be Unicast, Blackhole or Unreachable")
	}
	e.route = r
	return e, nil
}
