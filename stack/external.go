package stack

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/xdpnet/xdpnet/proto"
)

// External control: the API a control plane outside the stack (internal/kmirror, which follows the Linux
// kernel over netlink) uses to drive the stack's routes and neighbours instead of the stack's own ARP.

// NeighbourResolver asks an external resolver for the MAC of addr on the interface named iface; the answer
// comes back later through SetNeighbour (or FailNeighbour). It is called from a poller goroutine in the
// middle of a batch: it must return at once, without blocking or allocating, and may drop the request (the
// stack asks again after ProbeInterval, up to MaxProbes times, then answers host unreachable).
type NeighbourResolver func(iface string, addr netip.Addr)

// externalReachable is ReachableTime when a Resolver is set: the external owner ages entries, so the stack's
// own aging must never turn an entry stale (which would re-probe and, unanswered, fail a working neighbour).
const externalReachable = 1 << 62

// ErrNoInterface: the interface name is not in Config.Interfaces.
var ErrNoInterface = errors.New("no such interface in the stack configuration")

func (s *Stack) neighKey(iface string, addr netip.Addr) (nkey, error) {
	i := s.ifaceByName(iface)
	if i < 0 {
		return nkey{}, fmt.Errorf("neighbour %v on %s: %w", addr, iface, ErrNoInterface)
	}
	addr = addr.Unmap()
	if !addr.Is4() {
		return nkey{}, fmt.Errorf("neighbour %v on %s: not IPv4", addr, iface)
	}
	return nkey{uint32(i), addr4(addr)}, nil
}

// SetNeighbour records that addr on iface has MAC mac and is usable (the kernel's REACHABLE, STALE, DELAY,
// PROBE or PERMANENT), and wakes the queues so that packets held for it leave now rather than at their next
// timer.
func (s *Stack) SetNeighbour(iface string, addr netip.Addr, mac proto.MAC) error {
	k, err := s.neighKey(iface, addr)
	if err != nil {
		return err
	}
	if mac.IsMulticast() || mac == (proto.MAC{}) {
		return fmt.Errorf("neighbour %v on %s: MAC %v is not a unicast station address", addr, iface, mac)
	}
	n, _ := s.neigh.getOrCreate(k)
	if n == nil {
		return fmt.Errorf("neighbour %v on %s: table full (%d entries)", addr, iface, maxNeighbours)
	}
	n.confirm(mac, s.now.Load())
	s.wakeQueues()
	return nil
}

// FailNeighbour marks addr on iface failed (the kernel's FAILED): packets to it are answered with ICMP host
// unreachable (RFC 1812 §5.2.7.1) for FailedHold, then resolution starts again. Held packets get their
// unreachable at the queues' next Tick, which this wakes. An unknown neighbour is not an error: nothing uses
// it.
func (s *Stack) FailNeighbour(iface string, addr netip.Addr) error {
	k, err := s.neighKey(iface, addr)
	if err != nil {
		return err
	}
	n := s.neigh.get(k)
	if n == nil {
		return nil
	}
	// failedAt first: a poller that sees the state Failed must see the time too.
	n.failedAt.Store(s.now.Load())
	n.state.Store(uint32(NeighbourFailed))
	s.wakeQueues()
	return nil
}

// ForgetNeighbour drops what the stack knows of addr on iface (the kernel deleted its entry): the next packet
// to it starts a new resolution through the Resolver. The entry itself stays, incomplete, because queues'
// caches point at it (see neighCache).
func (s *Stack) ForgetNeighbour(iface string, addr netip.Addr) error {
	k, err := s.neighKey(iface, addr)
	if err != nil {
		return err
	}
	n := s.neigh.get(k)
	if n == nil {
		return nil
	}
	n.probes.Store(0)
	n.probeAt.Store(neverProbed)
	n.state.Store(uint32(NeighbourIncomplete))
	return nil
}

func (s *Stack) wakeQueues() {
	for _, h := range *s.handlers.Load() {
		if h.q != nil && h.q.Waker != nil {
			h.q.Waker.Wake()
		}
	}
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
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()).Masked()
			if p.Addr().Is4In6() || !p.Addr().Is4() {
				continue
			}
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
