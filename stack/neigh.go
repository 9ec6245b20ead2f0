package stack

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
)

// The neighbour subsystem (the kernel's neigh_*): entries shared by every queue with their states
// (incomplete, reachable, stale, failed), neigh_output's choice between sending and holding, the bounded
// queues of held packets, and the API an external resolver (kernel-mirror) drives. ARP (arp.go) is its
// resolver for IPv4.

// DropNeighbourTableFull: no entry could be made for the next hop: the table is at GCThresh3 and nothing
// in it could be collected.
var DropNeighbourTableFull = pipeline.RegisterDropReason("neighbour_table_full")

// DropHeldLimit: the queue already holds HeldPacketsPerQueue packets waiting for neighbours.
var DropHeldLimit = pipeline.RegisterDropReason("neighbour_held_limit")

// DropNeighbourRemoved: the packet waited for a neighbour entry that the collector removed.
var DropNeighbourRemoved = pipeline.RegisterDropReason("neighbour_removed")

// NeighbourState is the state of a neighbour entry, after the kernel's NUD states.
type NeighbourState uint8

const (
	NeighbourIncomplete NeighbourState = iota // ARP request sent, no answer yet
	NeighbourReachable                        // answered within ReachableTime
	NeighbourStale                            // MAC known but not confirmed lately; used, and re-probed
	NeighbourFailed                           // no answer after MaxProbes requests
)

var neighStateNames = [...]string{"incomplete", "reachable", "stale", "failed"}

func (n NeighbourState) String() string {
	if n == neighRemoved {
		return "removed"
	}
	if int(n) < len(neighStateNames) {
		return neighStateNames[n]
	}
	return "state?"
}

// neverProbed is probeAt before the first request: far enough in the past that one is due at any clock.
const neverProbed = -1 << 62

// naddr is a neighbour's address in 128 bits, so that one table and one state machine serve both
// resolvers (ARP and NDP): an IPv6 address as it is, an IPv4 address IPv4-mapped (::ffff:a.b.c.d, RFC 4291
// §2.5.5.2), which no IPv6 neighbour can have (ipv6Rcv drops such addresses).
type naddr struct{ hi, lo uint64 }

func naddr4(a uint32) naddr { return naddr{0, 0xffff<<32 | uint64(a)} }

func naddr6(a *[16]byte) naddr {
	return naddr{binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])}
}

func naddrOf(a netip.Addr) naddr {
	if a.Is4() {
		return naddr4(addr4(a))
	}
	b := a.As16()
	return naddr6(&b)
}

func (a naddr) is4() bool  { return a.hi == 0 && a.lo>>32 == 0xffff }
func (a naddr) v4() uint32 { return uint32(a.lo) }

func (a naddr) addr() netip.Addr {
	if a.is4() {
		return addrFrom4(a.v4())
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], a.hi)
	binary.BigEndian.PutUint64(b[8:], a.lo)
	return netip.AddrFrom16(b)
}

// nkey names a neighbour: an address on an interface.
type nkey struct {
	iface uint32
	a     naddr
}

// neighbour is one ARP entry, shared by every queue. Its fields are atomics so that pollers read and
// update it without a lock: the MAC is one 64-bit word (never torn), and state changes that must happen once
// (a probe slot, failing) use compare-and-swap.
type neighbour struct {
	key       nkey
	state     atomic.Uint32 // NeighbourState
	mac       atomic.Uint64
	confirmed atomic.Int64 // when an ARP message last confirmed the MAC
	probeAt   atomic.Int64 // when the last request was sent; the per-address rate limit
	probes    atomic.Uint32
	failedAt  atomic.Int64
	// used is when a packet last went (or waited) for this neighbour, to within usedGrain; 0 for an entry
	// learnt from an ARP request that nothing has sent to yet. created and used decide garbage collection.
	used    atomic.Int64
	created int64
	// external: set by SetNeighbour; only its owner removes it (ForgetNeighbour clears the mark).
	external atomic.Bool
	next     atomic.Pointer[neighbour] // the hash chain (neightable.go)
}

// setState moves n to st unless the collector removed it (a removed entry stays removed).
func (n *neighbour) setState(st NeighbourState) bool {
	for {
		old := n.state.Load()
		if NeighbourState(old) == neighRemoved {
			return false
		}
		if n.state.CompareAndSwap(old, uint32(st)) {
			return true
		}
	}
}

// touch records that traffic uses n, at most once per usedGrain.
func (n *neighbour) touch(now int64) {
	if now-n.used.Load() >= usedGrain {
		n.used.Store(now)
	}
}

func (n *neighbour) macValue() proto.MAC {
	v := n.mac.Load()
	return proto.MAC{byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

func macWord(m proto.MAC) uint64 {
	return uint64(m[0])<<40 | uint64(m[1])<<32 | uint64(m[2])<<24 | uint64(m[3])<<16 | uint64(m[4])<<8 | uint64(m[5])
}

// putMAC writes the neighbour's MAC as the destination of Ethernet frame b, straight from the atomic word.
func (n *neighbour) putMAC(b []byte) {
	v := n.mac.Load()
	_ = b[5]
	binary.BigEndian.PutUint32(b, uint32(v>>16))
	binary.BigEndian.PutUint16(b[4:], uint16(v))
}

// confirm records an ARP message from the neighbour: the MAC is known and it is alive.
func (n *neighbour) confirm(m proto.MAC, now int64) (wasResolved bool) {
	n.mac.Store(macWord(m))
	n.confirmed.Store(now)
	n.probes.Store(0)
	for {
		old := NeighbourState(n.state.Load())
		if old == neighRemoved {
			return false
		}
		if n.state.CompareAndSwap(uint32(old), uint32(NeighbourReachable)) {
			return old == NeighbourIncomplete || old == NeighbourFailed
		}
	}
}

// neighCache is a queue's direct-mapped cache in front of the shared table, so the forwarding path finds
// a next hop with one hash and one compare instead of a chain walk. A cached entry the collector removed
// is marked neighRemoved and is looked up again.
type neighCache [256]*neighbour

func (c *neighCache) lookup(t *neighTable, k nkey, now int64) *neighbour {
	h := (uint32(k.a.lo^k.a.hi^k.a.hi>>32)*0x9e3779b1 + k.iface) >> 24
	if n := c[h]; n != nil && n.key == k && NeighbourState(n.state.Load()) != neighRemoved {
		return n
	}
	n, _ := t.getOrCreate(k, now, true)
	c[h] = n
	return n
}

// holdQ is the packets one queue keeps for one unresolved neighbour. Their frames belong to this queue's
// FrameSource, which is why held packets are per queue while the neighbour entry is shared.
type holdQ struct {
	n     *neighbour
	iface int32
	pkts  []pipeline.Packet
}

// resolve is neigh_output: send to a known MAC, or hold the packet and ask ARP.
func (h *handler) resolve(b *pipeline.Batch, p *pipeline.Packet, m pktMeta, pend []uint16) []uint16 {
	ifc := &h.ifs[m.iface]
	// A run of packets to one next hop finds it without hashing; one the collector removed meanwhile is
	// marked so, and is looked up again.
	n := h.lastNeigh
	if k := (nkey{uint32(m.iface), m.nh}); n == nil || n.key != k || NeighbourState(n.state.Load()) == neighRemoved {
		n = h.ncache.lookup(&h.s.neigh, k, h.now)
		h.lastNeigh = n
		if n == nil {
			p.Drop(DropNeighbourTableFull)
			return pend
		}
	}
	now := h.now
	n.touch(now)
	switch NeighbourState(n.state.Load()) {
	case NeighbourReachable:
		if now-n.confirmed.Load() > h.s.reachableNs {
			n.state.CompareAndSwap(uint32(NeighbourReachable), uint32(NeighbourStale))
			h.probe(b, n, m.iface)
		}
	case NeighbourStale:
		// Keep using the MAC while re-probing; give up after MaxProbes unanswered requests.
		if h.expired(n) {
			return h.neighFailed(b, p, n, pend)
		}
		h.probe(b, n, m.iface)
	case NeighbourIncomplete:
		if h.expired(n) {
			return h.neighFailed(b, p, n, pend)
		}
		h.probe(b, n, m.iface)
		h.hold(p, n, m.iface)
		return pend
	case NeighbourFailed:
		if now-n.failedAt.Load() < h.s.failedNs {
			return h.icmpAboutFailed(b, p, pend)
		}
		// Time to try again (the kernel re-resolves a FAILED entry when new traffic needs it).
		if n.state.CompareAndSwap(uint32(NeighbourFailed), uint32(NeighbourIncomplete)) {
			n.probes.Store(0)
			n.probeAt.Store(neverProbed)
		}
		h.probe(b, n, m.iface)
		h.hold(p, n, m.iface)
		return pend
	case neighRemoved: // removed between the lookup and now: the next packet makes a new entry
		p.Drop(DropNeighbourRemoved)
		return pend
	}
	h.sendTo(p, n, ifc)
	return pend
}

// sendTo rewrites the Ethernet addresses for the hop to n out of ifc and sets verdict Tx.
func (h *handler) sendTo(p *pipeline.Packet, n *neighbour, ifc *hiface) {
	d := p.Data()
	n.putMAC(d)
	proto.Ethernet(d).SetSrc(ifc.mac)
	p.Send(ifc.port)
}

// expired reports (and records, once) that n has had MaxProbes requests and the last one timed out.
func (h *handler) expired(n *neighbour) bool {
	if n.probes.Load() < h.s.maxProbes || h.now-n.probeAt.Load() < h.s.probeNs {
		return false
	}
	st := n.state.Load()
	if st == uint32(NeighbourFailed) || st == uint32(neighRemoved) {
		return true
	}
	if n.state.CompareAndSwap(st, uint32(NeighbourFailed)) {
		n.failedAt.Store(h.now)
		inc(&h.ctr.failed)
	}
	return true
}

func (h *handler) neighFailed(b *pipeline.Batch, p *pipeline.Packet, n *neighbour, pend []uint16) []uint16 {
	return h.icmpAboutFailed(b, p, pend)
}

// icmpAboutFailed drops a packet whose next hop does not answer, with a host unreachable to its source
// (RFC 1812 §5.2.7.1), or for IPv6 an address unreachable (RFC 4443 §3.1, code 3).
func (h *handler) icmpAboutFailed(b *pipeline.Batch, p *pipeline.Packet, pend []uint16) []uint16 {
	if isIPv6Frame(p.Data()) {
		pend = h.icmp6Error(b, p, proto.ICMPv6DestUnreachable, proto.ICMPv6AddrUnreachable, 0, pend)
	} else {
		pend = h.icmpError(b, p, proto.ICMPv4DestUnreachable, proto.ICMPv4HostUnreachable, 0, pend)
	}
	p.Drop(pipeline.DropNeighbourFailed)
	return pend
}

// hold keeps p until n resolves: DropNeighbourQueueFull when NeighbourQueueLen packets already wait for n
// (the kernel's unres_qlen), DropHeldLimit when the queue holds HeldPacketsPerQueue in all - without that
// bound, packets to each absent host of a large connected network would take every frame of the queue's
// pool, and the queue could receive nothing more.
func (h *handler) hold(p *pipeline.Packet, n *neighbour, iface int32) {
	q := h.held[n]
	if q != nil && len(q.pkts) >= h.s.cfg.NeighbourQueueLen {
		p.Drop(pipeline.DropNeighbourQueueFull)
		return
	}
	if h.nheld >= h.s.cfg.HeldPacketsPerQueue {
		p.Drop(DropHeldLimit)
		return
	}
	if q == nil {
		if k := len(h.spareHold); k > 0 {
			q = h.spareHold[k-1]
			h.spareHold = h.spareHold[:k-1]
		} else {
			q = &holdQ{pkts: make([]pipeline.Packet, 0, h.s.cfg.NeighbourQueueLen)}
		}
		q.n, q.iface = n, iface
		h.held[n] = q
	}
	p.Steal()
	q.pkts = append(q.pkts, *p)
	h.nheld++
}

func (h *handler) shiftHold(q *holdQ, k int) {
	if k == 0 {
		return
	}
	h.nheld -= k
	m := copy(q.pkts, q.pkts[k:])
	clear(q.pkts[m:])
	q.pkts = q.pkts[:m]
}

// probe is neigh_probe: it asks the resolver (ARP, or the external one) for n unless a request went out
// (from any queue) less than ProbeInterval ago.
func (h *handler) probe(b *pipeline.Batch, n *neighbour, iface int32) {
	last := n.probeAt.Load()
	if h.now-last < h.s.probeNs || !n.probeAt.CompareAndSwap(last, h.now) {
		return
	}
	n.probes.Add(1)
	target := n.key.a.addr()
	if r := h.s.cfg.Resolver; r != nil {
		r(h.s.ifaces[iface].name, target)
		return
	}
	if n.key.a.is4() {
		h.arpSolicit(b, &h.ifs[iface], target)
		return
	}
	h.ndpSolicit(b, &h.ifs[iface], n, target)
}

// releaseHeld is the held queues' part of Tick (the kernel's neigh_update sending its arp_queue, and
// neigh_invalidate failing it): packets whose neighbour resolved leave; those whose neighbour failed are
// dropped with a host unreachable each; for still incomplete ones the next probe is sent when due. It
// returns the ICMP errors made, appended to out, and when it needs the next Tick.
func (h *handler) releaseHeld(b *pipeline.Batch, out []uint16) ([]uint16, int64) {
	var wake int64
	for n, q := range h.held {
		switch NeighbourState(n.state.Load()) {
		case NeighbourReachable, NeighbourStale:
			ifc := &h.ifs[q.iface]
			k := 0
			for ; k < len(q.pkts) && b.Room() > 0; k++ {
				p := &q.pkts[k]
				d := p.Data()
				n.putMAC(d)
				proto.Ethernet(d).SetSrc(ifc.mac)
				p.Verdict = pipeline.Accept
				p.Send(ifc.port)
				b.Append(p)
			}
			h.shiftHold(q, k)
			add(&h.ctr.released, uint64(k))
			if len(q.pkts) > 0 {
				wake = h.now // batch full: come back at once
			}
		case neighRemoved:
			// The collector removed the entry (it had failed, or idled): its packets go, counted.
			k := 0
			for ; k < len(q.pkts) && b.Room() > 0; k++ {
				b.Append(&q.pkts[k])
				b.Pkts[b.N-1].Drop(DropNeighbourRemoved)
			}
			h.shiftHold(q, k)
			if len(q.pkts) > 0 {
				wake = h.now
			}
		default:
			if NeighbourState(n.state.Load()) == NeighbourIncomplete && !h.expired(n) {
				h.probe(b, n, q.iface)
				at := n.probeAt.Load() + h.s.probeNs
				if wake == 0 || at < wake {
					wake = at
				}
				continue
			}
			// Failed: RFC 1812 §5.2.7.1 host unreachable for each packet that waited.
			k := 0
			for ; k < len(q.pkts) && b.Room() >= 2; k++ {
				b.Append(&q.pkts[k])
				p := &b.Pkts[b.N-1]
				p.Verdict = pipeline.Accept
				out = h.icmpAboutFailed(b, p, out)
			}
			h.shiftHold(q, k)
			if len(q.pkts) > 0 {
				wake = h.now
			}
		}
		if len(q.pkts) == 0 {
			delete(h.held, n)
			q.n = nil
			h.spareHold = append(h.spareHold, q)
		}
	}
	return out, wake
}

// dropHeld hands back, at driver shutdown, the packets still waiting for a neighbour: dropped with
// DropShutdown so that the driver counts them and takes their frames back.
func (h *handler) dropHeld(b *pipeline.Batch) {
	for n, q := range h.held {
		for k := range q.pkts {
			p := &q.pkts[k]
			if b.Room() == 0 {
				b.Frames.Put(p.Addr) // past the batch: freed uncounted rather than leaked
				continue
			}
			p.Drop(pipeline.DropShutdown)
			b.Append(p)
		}
		h.shiftHold(q, len(q.pkts))
		delete(h.held, n)
	}
}

// Neighbour is one ARP table entry as Neighbours reports it.
type Neighbour struct {
	Interface string
	Addr      netip.Addr
	MAC       proto.MAC
	State     NeighbourState
	// Probes is the number of requests sent and not answered.
	Probes int
}

// Neighbours lists the neighbour table (ARP and NDP entries).
func (s *Stack) Neighbours() []Neighbour {
	out := make([]Neighbour, 0, s.neigh.count.Load())
	s.neigh.each(func(n *neighbour) {
		k := n.key
		name := ""
		if int(k.iface) < len(s.ifaces) {
			name = s.ifaces[k.iface].name
		}
		st := NeighbourState(n.state.Load())
		if st == NeighbourReachable && s.now.Load()-n.confirmed.Load() > s.reachableNs {
			st = NeighbourStale
		}
		out = append(out, Neighbour{Interface: name, Addr: k.a.addr(), MAC: n.macValue(),
			State: st, Probes: int(n.probes.Load())})
	})
	return out
}

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
	if !addr.IsValid() {
		return nkey{}, fmt.Errorf("neighbour on %s: no address", iface)
	}
	return nkey{uint32(i), naddrOf(addr)}, nil
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
	now := s.now.Load()
	n, _ := s.neigh.getOrCreate(k, now, true)
	if n == nil {
		return fmt.Errorf("neighbour %v on %s: table full (%d entries; raise Config.NeighbourGCThresh3)", addr, iface, s.neigh.thresh3)
	}
	n.external.Store(true)
	n.confirm(mac, now)
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
	n.setState(NeighbourFailed)
	s.wakeQueues()
	return nil
}

// ForgetNeighbour drops what the stack knows of addr on iface (the kernel deleted its entry): the next packet
// to it starts a new resolution through the Resolver. The entry stays, incomplete, so that packets held
// for it wait for that resolution; it is now the collector's to remove when it idles.
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
	n.setState(NeighbourIncomplete)
	n.external.Store(false)
	return nil
}
