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

// routeEntry is what a route id stands for on the hot path. An entry is immutable while its id is in the
// table: a changed route gets a new id (see routeWriter.commit).
type routeEntry struct {
	route   Route
	typ     RouteType
	iface   int32  // index into Stack.ifaces, -1 for none
	gateway uint32 // 0 = connected: next hop is the destination
	gw6     naddr  // IPv6 routes: the gateway, zero = connected
	depth   int
}

// Route entries live in chunks of 4096 that are allocated on demand and never move, so that the table
// grows while readers hold ids: a chunk pointer is published before any entry naming an id in it.
const (
	routeChunkShift = 12
	routeChunks     = (maxRouteID + 1) >> routeChunkShift
)

type routeChunk [1 << routeChunkShift]routeEntry

type routeStore [routeChunks]atomic.Pointer[routeChunk]

func (s *routeStore) get(id uint32) *routeEntry {
	return &s[(id>>routeChunkShift)&(routeChunks-1)].Load()[id&(1<<routeChunkShift-1)]
}

// set writes the entry of an id nobody reads: new, or past its grace period.
func (s *routeStore) set(id uint32, e routeEntry) {
	c := s[id>>routeChunkShift].Load()
	if c == nil {
		c = new(routeChunk)
		s[id>>routeChunkShift].Store(c)
	}
	c[id&(1<<routeChunkShift-1)] = e
}

// fib is what the forwarding path reads: the DIR-24-8 table of IPv4 route ids, the IPv6 table (lpm6.go),
// and the entries their ids name (one id space for both families). A queue reads it between
// routeTable.enter and fibReader.leave, which is what lets the writer know when an unlinked tbl8 group,
// subtrie or route id is no longer read by anyone (see routeTable).
type fib struct {
	lpm    *dir248
	lpm6   *lpm6
	routes *routeStore
}

func (f *fib) lookup6(dst *[16]byte) *routeEntry {
	id := f.lpm6.lookup(dst)
	if id == 0 {
		return nil
	}
	return f.routes.get(id)
}

func (f *fib) lookup(dst uint32) *routeEntry {
	id := f.lpm.lookup(dst)
	if id == 0 {
		return nil
	}
	return f.routes.get(id)
}

// fibReader is one queue's read-side marker: the writer's epoch when the queue started its current batch,
// 0 between batches. It has a cache line of its own because its queue writes it twice per batch.
type fibReader struct {
	active atomic.Uint64
	_      [56]byte
}

// leave marks the end of a batch: the queue holds nothing from the table any more.
func (r *fibReader) leave() { r.active.Store(0) }

// routeTable is the routing table: updated in place by one writer at a time (mu), read without a lock.
//
// Updates are incremental: a route add or delete paints only the tbl24/tbl8 entries of its prefix, with
// atomic stores (see dir248), so its cost is that of the prefix (one store for a /24), not a copy of the
// 64 MiB table. What an update unlinks - a tbl8 group folded back into tbl24, the id of a deleted or
// replaced route - may still be in use by a queue that loaded it before the change; it is stamped with the
// current epoch and kept in limbo until every queue has been seen between batches or in a batch started
// after that epoch (quiescent-state reclamation, as RCU): a queue publishes the epoch it entered with in its
// fibReader at the start of each batch and 0 at the end. A queue that stops polling while idle is between
// batches and holds nothing back.
//
// All Go atomics are sequentially consistent, which is what makes the argument simple: a queue whose marker
// the writer reads as 0, or as an epoch after the unlink's, stored it after the unlink, so its loads of
// the table that follow see the unlinked state.
type routeTable struct {
	fib
	epoch   atomic.Uint64 // starts at 1: 0 is "between batches"
	readers atomic.Pointer[[]*fibReader]

	mu       sync.Mutex
	byPrefix map[netip.Prefix]uint32 // the slow reference, and the id of each prefix
	nextID   uint32                  // the next never used id
	freeIDs  []uint32
	idLimbo  []limboItem

	w routeWriter // reused by every update
}

func newRouteTable() *routeTable {
	t := &routeTable{fib: fib{lpm: newDir248(), lpm6: newLPM6(), routes: new(routeStore)}, byPrefix: map[netip.Prefix]uint32{}, nextID: 1}
	t.epoch.Store(1)
	t.readers.Store(&[]*fibReader{})
	return t
}

// enter marks the start of a queue's batch and returns the table to read until r.leave.
func (t *routeTable) enter(r *fibReader) *fib {
	r.active.Store(t.epoch.Load())
	return &t.fib
}

// register adds a reader (a queue's handler); unregister removes one that will not read again.
func (t *routeTable) register() *fibReader {
	r := new(fibReader)
	t.mu.Lock()
	defer t.mu.Unlock()
	rs := append(append([]*fibReader(nil), *t.readers.Load()...), r)
	t.readers.Store(&rs)
	return r
}

func (t *routeTable) unregister(r *fibReader) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var rs []*fibReader
	for _, x := range *t.readers.Load() {
		if x != r {
			rs = append(rs, x)
		}
	}
	t.readers.Store(&rs)
}

// safeEpoch is the epoch before which unlinked items are read by nobody: the oldest epoch a reader is in,
// or, with every reader between batches, anything unlinked so far (the current epoch included).
func (t *routeTable) safeEpoch() uint64 {
	safe := t.epoch.Load() + 1
	for _, r := range *t.readers.Load() {
		if a := r.active.Load(); a != 0 && a < safe {
			safe = a
		}
	}
	return safe
}

// update runs f, which validates and plans the changes, then applies them if f succeeded: a failing
// update changes nothing. Readers see the changes address by address while they are applied.
func (t *routeTable) update(f func(w *routeWriter) error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	w := &t.w
	w.t = t
	w.reset()
	if err := f(w); err != nil {
		return err
	}
	return w.commit()
}

// lookupLocked is Lookup for the control plane, which is no registered reader: holding mu keeps the
// writer, and so reuse, away.
func (t *routeTable) lookupLocked(dst netip.Addr) *routeEntry {
	t.mu.Lock()
	defer t.mu.Unlock()
	var e *routeEntry
	if dst.Is4() {
		e = t.lookup(addr4(dst))
	} else {
		a := dst.As16()
		e = t.lookup6(&a)
	}
	if e == nil {
		return nil
	}
	c := *e
	return &c
}

// Operations of a routeWriter's plan.
const (
	opAdd = iota
	opRemove
	opReplace // remove and add of one prefix in one update: the entries switch from old to new in place
)

type routeOp struct {
	kind uint8
	p    netip.Prefix
	e    routeEntry // opAdd, opReplace
}

// routeWriter plans an update: add and remove check against the table as the update leaves it so far and
// record operations; commit applies them. The table keeps one and reuses it, so that a one-route update
// allocates next to nothing (no garbage, so no GC assist stretching an update).
type routeWriter struct {
	t    *routeTable
	view map[netip.Prefix]int // prefixes this update changed: the index in ops of the last change
	ops  []routeOp
}

// reset readies the writer for an update; maps and slices that a bulk update grew are dropped rather than
// kept for good.
func (w *routeWriter) reset() {
	if len(w.view) > 1024 {
		w.view = nil
	}
	clear(w.view)
	if cap(w.ops) > 1024 {
		w.ops = nil
	}
	w.ops = w.ops[:0]
}

// get returns the route of p as the update has it so far. The pointer is valid until the next add.
func (w *routeWriter) get(p netip.Prefix) (*routeEntry, bool) {
	if k, ok := w.view[p]; ok {
		op := &w.ops[k]
		return &op.e, op.kind != opRemove
	}
	id, ok := w.t.byPrefix[p]
	if !ok {
		return nil, false
	}
	return w.t.routes.get(id), true
}

func (w *routeWriter) record(p netip.Prefix, op routeOp) {
	if w.view == nil {
		w.view = map[netip.Prefix]int{}
	}
	// Removed earlier in this update and added again: replace in place, so that no address falls back to
	// a shorter prefix in between (`ip route replace`, or a mirror's delete followed by an add).
	if k, ok := w.view[p]; ok && w.ops[k].kind == opRemove && op.kind == opAdd {
		op.kind = opReplace
		w.ops[k] = op
		return
	}
	w.view[p] = len(w.ops)
	w.ops = append(w.ops, op)
}

func (w *routeWriter) add(e routeEntry) error {
	p := e.route.Prefix
	if _, ok := w.get(p); ok {
		return fmt.Errorf("add route %v: %w", e.route, ErrRouteExists)
	}
	w.record(p, routeOp{kind: opAdd, p: p, e: e})
	return nil
}

func (w *routeWriter) remove(p netip.Prefix) (routeEntry, error) {
	e, ok := w.get(p)
	if !ok {
		return routeEntry{}, fmt.Errorf("delete route %v: %w", p, ErrRouteNotFound)
	}
	old := *e
	w.record(p, routeOp{kind: opRemove, p: p})
	return old, nil
}

// commit applies the plan. It first reclaims what past updates unlinked and is no longer read, and checks
// there are enough route ids, so that nothing fails half way.
func (w *routeWriter) commit() error {
	t := w.t
	if len(w.ops) == 0 {
		return nil
	}
	epoch := t.epoch.Load()
	safe := t.safeEpoch()
	t.lpm.reclaim(safe)
	t.idLimbo = reclaimLimbo(t.idLimbo, safe, &t.freeIDs)
	t.lpm.epoch = epoch
	need := 0
	for _, op := range w.ops {
		if op.kind != opRemove {
			need++
		}
	}
	if have := len(t.freeIDs) + maxRouteID + 1 - int(t.nextID); need > have {
		return fmt.Errorf("add %d routes (room for %d, deleted routes' ids are reused after every queue's next batch): %w", need, have, ErrTooManyRoutes)
	}
	v6 := false
	for i := range w.ops {
		op := &w.ops[i]
		if op.p.Addr().Is6() {
			v6 = true
			t.commit6(op, epoch)
			continue
		}
		a, bits := addr4(op.p.Addr()), op.p.Bits()
		switch op.kind {
		case opAdd:
			id := t.allocID(op.e)
			t.byPrefix[op.p] = id
			t.lpm.insert(a, bits, id)
		case opRemove:
			id := t.byPrefix[op.p]
			delete(t.byPrefix, op.p)
			t.lpm.remove(a, bits, id, t.covering(op.p))
			t.idLimbo = append(t.idLimbo, limboItem{id, epoch})
		case opReplace:
			old := t.byPrefix[op.p]
			id := t.allocID(op.e)
			t.byPrefix[op.p] = id
			t.lpm.remove(a, bits, old, lpmEntry(id, bits))
			t.idLimbo = append(t.idLimbo, limboItem{old, epoch})
		}
	}
	if v6 {
		// Publishes each changed /18 with one store; the subtries it unlinks wait for the same grace period.
		t.lpm6.commit(epoch, safe)
	}
	// Readers that start a batch from now on see everything above; what was stamped epoch waits for the
	// others.
	t.epoch.Add(1)
	return nil
}

// commit6 is commit's part for an IPv6 prefix: the lpm6 table is changed in its writer state and published
// by lpm6.commit at the end of the update, so a replaced route's old id stays valid until readers left.
func (t *routeTable) commit6(op *routeOp, epoch uint64) {
	switch op.kind {
	case opAdd:
		id := t.allocID(op.e)
		t.byPrefix[op.p] = id
		t.lpm6.set(op.p, id)
	case opRemove:
		id := t.byPrefix[op.p]
		delete(t.byPrefix, op.p)
		t.lpm6.set(op.p, 0)
		t.idLimbo = append(t.idLimbo, limboItem{id, epoch})
	case opReplace:
		old := t.byPrefix[op.p]
		id := t.allocID(op.e)
		t.byPrefix[op.p] = id
		t.lpm6.set(op.p, id)
		t.idLimbo = append(t.idLimbo, limboItem{old, epoch})
	}
}

// allocID gives e an id, writing the entry before any table entry names it.
func (t *routeTable) allocID(e routeEntry) uint32 {
	var id uint32
	if n := len(t.freeIDs); n > 0 {
		id = t.freeIDs[n-1]
		t.freeIDs = t.freeIDs[:n-1]
	} else {
		id = t.nextID
		t.nextID++
	}
	t.routes.set(id, e)
	return id
}

// covering is the table entry of the longest prefix strictly shorter than p that covers it (0 for none):
// what takes over p's addresses when p goes.
func (t *routeTable) covering(p netip.Prefix) uint32 {
	for l := p.Bits() - 1; l >= 0; l-- {
		q, _ := p.Addr().Prefix(l)
		if rid, ok := t.byPrefix[q]; ok {
			return lpmEntry(rid, l)
		}
	}
	return 0
}

// AddRoute adds r to the routing table. A unicast route needs a NextHop on a connected network, or an
// Interface, or both. The change is made in place (see routeTable): its cost is that of the prefix (one
// entry for a /24, 65536 for a /8), and queues see it at once, address by address.
func (s *Stack) AddRoute(r Route) error { return s.AddRoutes([]Route{r}) }

// AddRoutes adds several routes in one table update: all or none (they are all checked before any is
// added; queues may see some added before the others).
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
		if e, ok := w.get(p); ok {
			if t := e.typ; t == Local || t == Broadcast {
				return fmt.Errorf("delete route %v: it is a %v address of an interface (remove the address from the configuration instead): %w", p, t, ErrBadRoute)
			}
		}
		_, err := w.remove(p)
		return err
	})
}

// Routes lists the unicast, blackhole and unreachable routes (connected routes included), sorted by prefix.
func (s *Stack) Routes() []Route {
	t := s.rt
	t.mu.Lock()
	var out []Route
	for _, id := range t.byPrefix {
		e := t.routes.get(id)
		if e.typ != Local && e.typ != Broadcast {
			out = append(out, e.route)
		}
	}
	t.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i].Prefix, out[j].Prefix
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c < 0
		}
		return a.Bits() < b.Bits()
	})
	return out
}

// RouteCounts counts the routes Routes lists, by family, without copying them: what a metrics scrape needs
// of a table that may hold a routing daemon's million routes.
func (s *Stack) RouteCounts() (ipv4, ipv6 int) {
	t := s.rt
	t.mu.Lock()
	defer t.mu.Unlock()
	for p, id := range t.byPrefix {
		if typ := t.routes.get(id).typ; typ == Local || typ == Broadcast {
			continue
		}
		if p.Addr().Is4() {
			ipv4++
		} else {
			ipv6++
		}
	}
	return ipv4, ipv6
}

// Lookup returns the route the forwarding path would use for dst (Local and Broadcast included).
func (s *Stack) Lookup(dst netip.Addr) (Route, bool) {
	dst = dst.Unmap()
	if !dst.IsValid() {
		return Route{}, false
	}
	e := s.rt.lookupLocked(dst)
	if e == nil {
		return Route{}, false
	}
	return e.route, true
}

func errBadRoute(r Route, why string) error {
	return fmt.Errorf("route %v: %s: %w", r, why, ErrBadRoute)
}

// checkRoute validates a user route and resolves its interface.
func (s *Stack) checkRoute(r Route) (routeEntry, error) {
	bad := func(why string) (routeEntry, error) {
		return routeEntry{}, fmt.Errorf("route %v: %s: %w", r, why, ErrBadRoute)
	}
	if !r.Prefix.IsValid() {
		return bad("no prefix")
	}
	if r.Prefix.Addr().Is4In6() && r.Prefix.Bits() >= 96 {
		r.Prefix = netip.PrefixFrom(r.Prefix.Addr().Unmap(), r.Prefix.Bits()-96)
	}
	if r.Prefix.Addr().Is6() {
		return s.checkRoute6(r)
	}
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

// ReplaceRoute adds r, or replaces the route of the same prefix (`ip route replace`), in one table update.
func (s *Stack) ReplaceRoute(r Route) error { return s.SyncRoutes([]Route{r}, nil) }

// SyncRoutes deletes the routes of del and then adds or replaces the routes of set, in one table update:
// all or none (everything is checked before anything changes; a replaced route switches from old to new in
// place, without passing through a shorter prefix). It is how an external control plane
// mirrors a table whose routes come and go in bursts. Deleting a prefix that has no route is not an error
// (the mirror may see a deletion of a route it refused); a connected route made from Config.Interfaces may
// be replaced or deleted, but the local and broadcast addresses of the interfaces are never touched
// (ErrBadRoute).
func (s *Stack) SyncRoutes(set []Route, del []netip.Prefix) error {
	return s.rt.update(func(w *routeWriter) error {
		for _, p := range del {
			if !p.IsValid() {
				continue
			}
			if p.Addr().Is4In6() && p.Bits() >= 96 {
				p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
			}
			p = p.Masked()
			if err := s.removeExternal(w, p); err != nil {
				return err
			}
		}
		for _, r := range set {
			e, err := s.checkRoute(r)
			if err != nil {
				return err
			}
			if err := s.removeExternal(w, e.route.Prefix); err != nil {
				return err
			}
			if err := w.add(e); err != nil {
				return err
			}
		}
		return nil
	})
}

// removeExternal removes the route of p if there is one and it is not an interface address.
func (s *Stack) removeExternal(w *routeWriter, p netip.Prefix) error {
	e, ok := w.get(p)
	if !ok {
		return nil
	}
	if t := e.typ; t == Local || t == Broadcast {
		return fmt.Errorf("route %v: it is a %v address of an interface: %w", p, t, ErrBadRoute)
	}
	_, err := w.remove(p)
	return err
}

// checkRoute6 validates a user IPv6 route and resolves its interface (checkRoute's IPv6 half).
func (s *Stack) checkRoute6(r Route) (routeEntry, error) {
	bad := func(why string) (routeEntry, error) {
		return routeEntry{}, errBadRoute(r, why)
	}
	if r.Prefix.Masked() != r.Prefix {
		return bad("prefix has host bits set (write " + r.Prefix.Masked().String() + ")")
	}
	if r.Prefix.Bits() >= 10 && (r.Prefix.Addr().IsLinkLocalUnicast() || r.Prefix.Addr().IsMulticast()) {
		return bad("link-local and multicast prefixes are not routed (RFC 4291 §2.5.6)")
	}
	e := routeEntry{typ: r.Type, iface: -1, depth: r.Prefix.Bits()}
	switch r.Type {
	case Blackhole, Unreachable:
		r.NextHop, r.Interface = netip.Addr{}, ""
	case Unicast:
		// A link-local next hop may carry its interface as a zone (fe80::1%eth1), as ip(8) writes it.
		if z := r.NextHop.Zone(); z != "" && r.Interface == "" {
			r.Interface = z
		}
		if r.Interface != "" {
			i := s.ifaceByName(r.Interface)
			if i < 0 {
				return bad("no interface " + r.Interface + " in the configuration")
			}
			if s.ifaces[i].v6 == nil {
				return bad("interface " + r.Interface + " has no IPv6 address (give it one)")
			}
			e.iface = int32(i)
		}
		if r.NextHop.IsValid() {
			nh := r.NextHop.WithZone("")
			if !nh.Is6() || nh.Is4In6() {
				return bad("next hop must be IPv6")
			}
			if nh.IsMulticast() || nh.IsUnspecified() || nh.IsLoopback() {
				return bad("next hop is not a unicast address")
			}
			r.NextHop = nh
			e.gw6 = naddrOf(nh)
			if e.iface < 0 {
				if nh.IsLinkLocalUnicast() {
					return bad("a link-local next hop needs the Interface it is on")
				}
				i := s.connectedIface(nh)
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
