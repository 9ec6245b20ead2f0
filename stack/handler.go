package stack

import (
	"net/netip"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
)

const (
	ethLen   = proto.EthernetHeaderLen
	limitedB = 0xffffffff
)

// hiface is an interface as one queue sees it: the configuration joined with the driver's port.
type hiface struct {
	ok    bool // the driver has a port of this name
	port  uint16
	mac   proto.MAC
	mtu   int
	addrs []netip.Prefix
	v6    *iface6 // nil: the interface ignores IPv6 (DropIPv6Unsupported)
	ll    *addr6  // the link-local address (set with v6)
	// down and announce follow the driver's link reports (PortChanged): announce asks for gratuitous ARPs
	// at the next Tick.
	down, announce bool
}

// pktMeta is what routing found for a packet of the batch: the egress interface and next hop of one to
// send; for an IPv6 packet for this host, what its extension headers led to (classify6).
type pktMeta struct {
	iface int32
	l4    uint8  // IPv6 local: the upper-layer protocol
	frag  bool   // IPv6 local: a fragment (not atomic)
	nhOff uint16 // IPv6 local: where the Next Header naming l4 lies
	nh    naddr
}

// handler is the stack on one queue.
type handler struct {
	s         *Stack
	q         *pipeline.QueueInfo
	hooks     *pipeline.Hooks
	ifs       []hiface
	portIface []int32 // by port index: interface id or -1
	portMAC   []proto.MAC
	partial   []bool   // by port index: the peer is in host memory and may leave checksums partial
	bcast     []uint32 // the connected networks' broadcast addresses, never a source (ipv4Rcv)

	snap *fib       // the routing table, read in place (routeTable); set per batch by enter
	rd   *fibReader // marks this queue inside a batch for the routing table's reclamation

	lastDst   uint32      // route's one-entry cache, reset per batch
	lastRoute *routeEntry // the route of lastDst (nil: none cached)
	// route6 is the route id of each IPv6 packet of the batch, looked up before routing (lookup6Batch);
	// dst6, at6, id6 and the dup lists are its work space.
	route6    [pipeline.MaxBatch]uint32
	dst6      [64][16]byte
	at6       [64]uint16
	id6       [64]uint32
	dupAt     [pipeline.MaxBatch]uint16
	dupOf     [pipeline.MaxBatch]uint8
	lastNeigh *neighbour // resolve's one-entry cache
	announce  bool       // an interface asks for gratuitous ARPs (PortChanged)
	now       int64

	meta                         [pipeline.MaxBatch]pktMeta
	selA, selB, selC, selD, selE [pipeline.MaxBatch]uint16
	selF                         [pipeline.MaxBatch]uint16
	direct                       bool // no Forward hook this batch: route checks and decrements the TTL
	pend                         [2][pipeline.MaxBatch]uint16

	ncache    neighCache
	held      map[*neighbour]*holdQ
	spareHold []*holdQ
	nheld     int

	tx   chan *datagram
	ipID uint16
	ctr  counters
	tcp  *tcpQueue // this queue's TCP engine (tcp.go)
}

// NewHandler builds the handler of one queue. Interfaces are matched to q.Ports by name; a configured
// interface the driver lacks is logged and its routes drop with DropBadPort on this queue.
func (s *Stack) NewHandler(q *pipeline.QueueInfo) pipeline.Handler {
	h := &handler{s: s, q: q, hooks: s.cfg.Hooks, held: map[*neighbour]*holdQ{},
		tx: make(chan *datagram, s.cfg.SendQueueLen), ipID: uint16(q.Queue) << 12, rd: s.rt.register()}
	maxPort := 0
	for _, p := range q.Ports {
		maxPort = max(maxPort, int(p.Index)+1)
	}
	h.portIface = make([]int32, maxPort)
	h.portMAC = make([]proto.MAC, maxPort)
	h.partial = make([]bool, maxPort)
	for i := range h.portIface {
		h.portIface[i] = -1
	}
	h.ifs = make([]hiface, len(s.ifaces))
	for i, ic := range s.ifaces {
		h.ifs[i].addrs = ic.addrs
		h.ifs[i].v6 = ic.v6
		for _, a := range ic.addrs {
			if a.Bits() < 31 { // RFC 3021: a /31 has no broadcast address
				h.bcast = append(h.bcast, addr4(a.Addr())|(1<<(32-a.Bits())-1))
			}
		}
		for _, p := range q.Ports {
			if p.Name != ic.name {
				continue
			}
			mtu := ic.mtu
			if mtu == 0 {
				mtu = p.MTU
			}
			if mtu == 0 {
				mtu = 1500
			}
			h.ifs[i] = hiface{ok: true, port: p.Index, mac: p.MAC, mtu: mtu, addrs: ic.addrs, v6: ic.v6}
			if ic.v6 != nil {
				h.ifs[i].ll = ic.v6.ensureLinkLocal(p.MAC)
			}
			h.portIface[p.Index] = int32(i)
		}
		if !h.ifs[i].ok {
			s.log.Warn("configured interface has no port on this queue; its routes drop with no_interface", "interface", ic.name, "queue", q.Queue)
		}
	}
	for _, p := range q.Ports {
		h.portMAC[p.Index] = p.MAC
		h.partial[p.Index] = p.PartialChecksums
	}
	h.tcp = s.newTCPQueue(h)
	s.mu.Lock()
	hs := append(append([]*handler(nil), *s.handlers.Load()...), h)
	s.handlers.Store(&hs)
	s.mu.Unlock()
	return h
}

// Process runs ip_rcv, routing, ip_forward and ip_local_deliver over a received batch, with the hooks at
// their places: PreRouting after validation, then Input or Forward, Output for what the stack generates,
// PostRouting before the neighbour layer.
func (h *handler) Process(b *pipeline.Batch) {
	h.snap = h.s.rt.enter(h.rd)
	defer h.rd.leave()
	h.now = b.Now
	h.lastDst, h.lastRoute = 0, nil
	if nb := h.lastNeigh; nb != nil {
		// transmit's fast path sends to lastNeigh without resolve's touch: once per batch is enough for
		// the collector's idea of "used".
		nb.touch(h.now)
	}
	n := b.N
	in, fwd, out, post := h.selB[:0], h.selC[:0], h.selD[:0], h.selE[:0]
	late := h.selA[:0]
	// Without a Forward hook, routing also does ip_forward's TTL and MTU checks and the TTL decrement
	// (direct), while the header is in cache; the packets that fail them get their ICMP errors after local
	// delivery (late), where the separate pass makes them, so that generated packets keep their order.
	h.direct = h.hooks.Empty(pipeline.Forward)
	sort := func(i uint16, v int) {
		switch v {
		case verdictForward:
			if h.direct {
				post = append(post, i)
			} else {
				fwd = append(fwd, i)
			}
		case verdictRefused:
			late = append(late, i)
		}
	}
	if h.hooks.Empty(pipeline.PreRouting) {
		// No hook between validation and routing: one pass does both. Routing generates ICMP errors in
		// packet order either way; validation generates none.
		h.lookup6Batch(b, nil, n)
		for i := 0; i < n; i++ {
			p := &b.Pkts[i]
			if p.Verdict != pipeline.Accept {
				continue
			}
			switch h.receive(b, p) {
			case 4:
				sort(uint16(i), h.classify(b, p, uint16(i), &in, &out))
			case 6:
				sort(uint16(i), h.classify6(b, p, uint16(i), &in, &out))
			}
		}
	} else {
		pre := h.selF[:0]
		for i := 0; i < n; i++ {
			p := &b.Pkts[i]
			if p.Verdict == pipeline.Accept && h.receive(b, p) != 0 {
				pre = append(pre, uint16(i))
			}
		}
		pre = h.hooks.Run(pipeline.PreRouting, b, pre)
		h.lookup6Batch(b, pre, len(pre))
		for _, i := range pre {
			// A hook may have changed the frame: the family is read again.
			if p := &b.Pkts[i]; isIPv6Frame(p.Data()) {
				sort(i, h.classify6(b, p, i, &in, &out))
			} else {
				sort(i, h.classify(b, p, i, &in, &out))
			}
		}
	}

	if len(in) > 0 {
		if !h.hooks.Empty(pipeline.Input) {
			in = h.hooks.Run(pipeline.Input, b, in)
		}
		for _, i := range in {
			out = h.deliver(b, &b.Pkts[i], i, out)
		}
		out = h.tcpFlush(b, out)
	}

	for _, i := range late {
		out = h.forwardError(b, &b.Pkts[i], i, out)
	}
	if len(fwd) > 0 {
		if !h.hooks.Empty(pipeline.Forward) {
			fwd = h.hooks.Run(pipeline.Forward, b, fwd)
		}
		for _, i := range fwd {
			if h.forwardable(&b.Pkts[i], i) {
				post = append(post, i)
			} else {
				out = h.forwardError(b, &b.Pkts[i], i, out)
			}
		}
	}
	if len(post) > 0 {
		add(&h.ctr.forwarded, uint64(len(post)))
	}
	h.emit(b, out, post)
}

// classify routes p: it returns verdictForward or verdictRefused for a packet to forward, or sorts a local
// one into in, or drops it (with an ICMP error generated into out where one is due).
func (h *handler) classify(b *pipeline.Batch, p *pipeline.Packet, i uint16, in, out *[]uint16) int {
	v := h.route(p, i)
	switch v {
	case verdictLocal:
		*in = append(*in, i)
	case verdictForward, verdictRefused:
		return v
	case verdictNoRoute:
		*out = h.icmpError(b, p, proto.ICMPv4DestUnreachable, proto.ICMPv4NetUnreachable, 0, *out)
		p.Drop(pipeline.DropNoRoute)
	case verdictUnreachable:
		*out = h.icmpError(b, p, proto.ICMPv4DestUnreachable, proto.ICMPv4HostUnreachable, 0, *out)
		p.Drop(pipeline.DropUnreachableRoute)
	}
	return verdictDropped
}

// route verdicts.
const (
	verdictDropped = iota
	verdictLocal
	verdictForward
	verdictNoRoute
	verdictUnreachable
	verdictRefused // to forward, but forwardable's checks failed (direct only)
)

// lookup6Batch is ip6_route_input's table lookup for the whole batch, done before routing: it looks up the
// destination of every IPv6 frame among the packets sel (the first n of the batch when sel is nil) in
// lpm6, 64 at a time, so that the cache misses of different packets overlap (lpm6.lookupBatch: a full
// table's deep nodes are not in cache, and one lookup at a time waits for each of its levels in turn), and
// leaves the route ids in route6 for classify6. A run of packets to one destination is looked up once. The
// frames are not validated yet, which a lookup does not need: it reads 16 bytes of a frame long enough to
// hold them, and classify6 uses the result only for a packet ipv6Rcv accepted, whose destination it is
// (nothing changes a frame between here and classify6).
func (h *handler) lookup6Batch(b *pipeline.Batch, sel []uint16, n int) {
	k, dups := 0, 0
	for x := 0; x < n; x++ {
		i := uint16(x)
		if sel != nil {
			i = sel[x]
		}
		p := &b.Pkts[i]
		d := p.Data()
		if p.Verdict != pipeline.Accept || len(d) < ethLen+proto.IPv6HeaderLen || proto.Ethernet(d).EtherType() != proto.EtherTypeIPv6 {
			continue
		}
		dst := proto.IPv6(d[ethLen:]).Dst16()
		if k > 0 && dst == h.dst6[k-1] {
			h.dupAt[dups], h.dupOf[dups] = i, uint8(k-1)
			dups++
			continue
		}
		h.dst6[k], h.at6[k] = dst, i
		if k++; k == len(h.dst6) {
			h.flush6(k, dups)
			k, dups = 0, 0
		}
	}
	h.flush6(k, dups)
}

// flush6 looks up the k destinations lookup6Batch collected and places their route ids.
func (h *handler) flush6(k, dups int) {
	if k == 0 {
		return
	}
	h.snap.lpm6.lookupBatch(h.dst6[:k], h.id6[:k])
	for j := range k {
		h.route6[h.at6[j]] = h.id6[j]
	}
	for j := range dups {
		h.route6[h.dupAt[j]] = h.id6[h.dupOf[j]]
	}
}

// receive is netif_receive_skb's part: L2 checks and the dispatch by EtherType to ARP, ip_rcv or ipv6_rcv.
// It returns the family (4 or 6) of a valid IP packet (with the frame trimmed to its IP length and L3/L4
// set), having given every other packet its verdict (0).
func (h *handler) receive(b *pipeline.Batch, p *pipeline.Packet) uint8 {
	d := p.Data()
	if len(d) < ethLen {
		p.Drop(pipeline.DropTruncated)
		return 0
	}
	inIf := int32(-1)
	if int(p.InPort) < len(h.portIface) {
		inIf = h.portIface[p.InPort]
		// Unicast for another station (a switch flooding, promiscuous mode) is not ours to route.
		if dst := proto.Ethernet(d).Dst(); !dst.IsMulticast() && dst != h.portMAC[p.InPort] {
			p.Drop(pipeline.DropL2NotForUs)
			return 0
		}
	}
	switch proto.Ethernet(d).EtherType() {
	case proto.EtherTypeIPv4:
		if h.ipv4Rcv(p, d[ethLen:]) {
			return 4
		}
		return 0
	case proto.EtherTypeARP:
		h.arpInput(b, p, inIf)
		return 0
	case proto.EtherTypeVLAN, proto.EtherTypeQinQ:
		p.Drop(pipeline.DropVLAN)
		return 0
	case proto.EtherTypeIPv6:
		if inIf < 0 || h.ifs[inIf].v6 == nil {
			p.Drop(pipeline.DropIPv6Unsupported)
			return 0
		}
		if h.ipv6Rcv(p, d[ethLen:]) {
			return 6
		}
		return 0
	default:
		p.Drop(pipeline.DropUnknownEtherType)
		return 0
	}
}

// emit runs Output over the packets the stack generated, then PostRouting over those and the forwarded
// ones, and hands every survivor to the neighbour layer. ICMP errors that the neighbour layer generates
// (host unreachable for a failed next hop) take one more round; errors are never sent about errors, so a
// second round generates nothing.
func (h *handler) emit(b *pipeline.Batch, out, post []uint16) {
	for round := 0; ; round++ {
		if len(out) > 0 {
			if !h.hooks.Empty(pipeline.Output) {
				out = h.hooks.Run(pipeline.Output, b, out)
			}
			post = append(post, out...)
		}
		if len(post) == 0 {
			return
		}
		if !h.hooks.Empty(pipeline.PostRouting) {
			post = h.hooks.Run(pipeline.PostRouting, b, post)
		}
		pend := h.pend[round&1][:0]
		for _, i := range post {
			pend = h.transmit(b, i, pend)
		}
		if len(pend) == 0 {
			return
		}
		if round == 2 { // cannot happen (see above); never leave a packet undecided
			for _, i := range pend {
				b.Pkts[i].Drop(pipeline.DropNoBuffer)
			}
			return
		}
		out, post = pend, h.selE[:0]
	}
}

// Tick sends the gratuitous ARPs of start-up, releases or fails the packets held for neighbours
// (releaseHeld), builds the datagrams applications queued and runs TCP's timers.
func (h *handler) Tick(b *pipeline.Batch) int64 {
	h.snap = h.s.rt.enter(h.rd)
	defer h.rd.leave()
	h.now = b.Now
	h.s.now.Store(b.Now)
	if h.s.cfg.Resolver == nil && !h.s.garp.Load() && h.s.garp.CompareAndSwap(false, true) {
		h.gratuitous(b)
	}
	if h.announce {
		h.announceChanged(b)
	}
	out, wake := h.releaseHeld(b, h.selD[:0])
	if at := h.dad(b); at != 0 && (wake == 0 || at < wake) {
		wake = at
	}
	if at := h.s.neigh.periodicGC(h.now); at != 0 && (wake == 0 || at < wake) {
		wake = at
	}
	out = h.udpOutput(b, out)
	out, wake = h.tcpTick(b, out, wake)
	h.emit(b, out, h.selE[:0])
	if len(h.tx) > 0 {
		wake = h.now
	}
	return wake
}

// Drain hands back, at driver shutdown, what the handler holds (pipeline.Drainer): the packets still
// waiting for a neighbour.
func (h *handler) Drain(b *pipeline.Batch) { h.dropHeld(b) }

// removeHandler forgets a handler whose driver stopped (its counters leave Stats with it).
func (s *Stack) removeHandler(h *handler) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var hs []*handler
	for _, x := range *s.handlers.Load() {
		if x != h {
			hs = append(hs, x)
		}
	}
	s.handlers.Store(&hs)
	s.rt.unregister(h.rd)
}

func (s *Stack) wakeQueues() {
	for _, h := range *s.handlers.Load() {
		if h.q != nil && h.q.Waker != nil {
			h.q.Waker.Wake()
		}
	}
}

// sourceFor picks this interface's address to speak to dst: one on dst's network, else the first.
func (ifc *hiface) sourceFor(dst netip.Addr) netip.Addr {
	for _, a := range ifc.addrs {
		if a.Contains(dst) {
			return a.Addr()
		}
	}
	if len(ifc.addrs) > 0 {
		return ifc.addrs[0].Addr()
	}
	return netip.Addr{}
}
