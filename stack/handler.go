package stack

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
)

// Drop reasons the stack adds to pipeline's.
var (
	DropMulticast          = pipeline.RegisterDropReason("ip_multicast_unsupported")
	DropNeighbourTableFull = pipeline.RegisterDropReason("neighbour_table_full")
	DropEchoBroadcast      = pipeline.RegisterDropReason("icmp_echo_broadcast")
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
	// down and announce follow the driver's link reports (PortChanged): announce asks for gratuitous ARPs
	// at the next Tick.
	down, announce bool
}

type pktMeta struct {
	iface int32
	nh    uint32
}

// holdQ is the packets one queue keeps for one unresolved neighbour. Their frames belong to this queue's
// FrameSource, which is why held packets are per queue while the neighbour entry is shared.
type holdQ struct {
	n     *neighbour
	iface int32
	pkts  []pipeline.Packet
}

// counters are one handler's statistics. Only the handler's goroutine writes them (inc is a load and a
// store, no locked instruction); Stack.Stats reads them atomically from anywhere.
type counters struct {
	arpReqIn, arpRepIn, arpReqOut, arpRepOut, garpOut atomic.Uint64
	resolved, failed, released                        atomic.Uint64
	forwarded, delivered, fragmented, fragsOut        atomic.Uint64
	icmpErrOut, icmpLimited, echoOut                  atomic.Uint64
	udpIn, udpOut, udpNoRoute, udpNoBuf               atomic.Uint64
}

func inc(c *atomic.Uint64)           { c.Store(c.Load() + 1) }
func add(c *atomic.Uint64, n uint64) { c.Store(c.Load() + n) }

func (c *counters) addTo(t *Stats) {
	t.ARPRequestsIn += c.arpReqIn.Load()
	t.ARPRepliesIn += c.arpRepIn.Load()
	t.ARPRequestsOut += c.arpReqOut.Load()
	t.ARPRepliesOut += c.arpRepOut.Load()
	t.ARPGratuitousOut += c.garpOut.Load()
	t.NeighboursResolved += c.resolved.Load()
	t.NeighboursFailed += c.failed.Load()
	t.HeldReleased += c.released.Load()
	t.Forwarded += c.forwarded.Load()
	t.Delivered += c.delivered.Load()
	t.Fragmented += c.fragmented.Load()
	t.FragmentsOut += c.fragsOut.Load()
	t.ICMPErrorsOut += c.icmpErrOut.Load()
	t.ICMPRateLimited += c.icmpLimited.Load()
	t.ICMPEchoRepliesOut += c.echoOut.Load()
	t.UDPDelivered += c.udpIn.Load()
	t.UDPSent += c.udpOut.Load()
	t.UDPSendNoRoute += c.udpNoRoute.Load()
	t.UDPSendNoBuffer += c.udpNoBuf.Load()
}

// handler is the stack on one queue.
type handler struct {
	s         *Stack
	q         *pipeline.QueueInfo
	hooks     *pipeline.Hooks
	ifs       []hiface
	portIface []int32 // by port index: interface id or -1
	portMAC   []proto.MAC

	snap *fib       // the routing table, read in place (routeTable); set per batch by enter
	rd   *fibReader // marks this queue inside a batch for the routing table's reclamation

	lastDst   uint32      // route's one-entry cache, reset per batch
	lastRoute *routeEntry // the route of lastDst (nil: none cached)
	lastNeigh *neighbour  // resolve's one-entry cache
	announce  bool        // an interface asks for gratuitous ARPs (PortChanged)
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
	for i := range h.portIface {
		h.portIface[i] = -1
	}
	h.ifs = make([]hiface, len(s.ifaces))
	for i, ic := range s.ifaces {
		h.ifs[i].addrs = ic.addrs
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
			h.ifs[i] = hiface{ok: true, port: p.Index, mac: p.MAC, mtu: mtu, addrs: ic.addrs}
			h.portIface[p.Index] = int32(i)
		}
		if !h.ifs[i].ok {
			s.log.Warn("configured interface has no port on this queue; its routes drop with no_interface", "interface", ic.name, "queue", q.Queue)
		}
	}
	for _, p := range q.Ports {
		h.portMAC[p.Index] = p.MAC
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
		for i := 0; i < n; i++ {
			p := &b.Pkts[i]
			if p.Verdict == pipeline.Accept && h.receive(b, p) {
				sort(uint16(i), h.classify(b, p, uint16(i), &in, &out))
			}
		}
	} else {
		pre := h.selF[:0]
		for i := 0; i < n; i++ {
			p := &b.Pkts[i]
			if p.Verdict == pipeline.Accept && h.receive(b, p) {
				pre = append(pre, uint16(i))
			}
		}
		pre = h.hooks.Run(pipeline.PreRouting, b, pre)
		for _, i := range pre {
			sort(i, h.classify(b, &b.Pkts[i], i, &in, &out))
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
			if forwardable(b.Pkts[i].Data()[ethLen:], h.ifs[h.meta[i].iface].mtu) {
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

// forwardable is ip_forward's checks on a routed packet: if the TTL allows forwarding and the packet fits
// the egress MTU (or may be fragmented), it decrements the TTL and returns true; otherwise forwardError
// says why.
func forwardable(ip []byte, mtu int) bool {
	// RFC 1812 §5.3.1: "a router MUST NOT ... forward a packet with a TTL of zero or one".
	// RFC 1812 §5.2.6 / RFC 1191 §4: a datagram with DF set that does not fit the next hop's MTU is discarded.
	if len(ip) < proto.IPv4MinHeaderLen || ip[8] <= 1 || (len(ip) > mtu && ip[6]&0x40 != 0) {
		return false
	}
	// RFC 1812 §5.3.1: decrement by one, checksum updated incrementally (RFC 1624).
	proto.IPv4(ip).DecrementTTL()
	return true
}

// forwardError drops a packet forwardable refused, with the ICMP error its check calls for: Time Exceeded
// (quoting the header as received, TTL not decremented), or Destination Unreachable, Fragmentation Needed
// carrying the next-hop MTU.
func (h *handler) forwardError(b *pipeline.Batch, p *pipeline.Packet, i uint16, out []uint16) []uint16 {
	ip := p.Data()[ethLen:]
	if ip[8] <= 1 {
		out = h.icmpError(b, p, proto.ICMPv4TimeExceeded, proto.ICMPv4TTLExceeded, 0, out)
		p.Drop(pipeline.DropTTLExpired)
		return out
	}
	mtu := h.ifs[h.meta[i].iface].mtu
	out = h.icmpError(b, p, proto.ICMPv4DestUnreachable, proto.ICMPv4FragNeeded, uint16(mtu), out)
	p.Drop(pipeline.DropFragNeeded)
	return out
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

// route looks up the destination of a validated packet and records the egress in meta and the packet.
func (h *handler) route(p *pipeline.Packet, i uint16) int {
	d := p.Data()
	dst := binary.BigEndian.Uint32(d[ethLen+16:])
	if dst == limitedB {
		return verdictLocal
	}
	if isMulticast(dst) {
		p.Drop(DropMulticast)
		return verdictDropped
	}
	// Packets of one flow arrive in runs: the previous packet's route is reused for the same destination.
	// It was the table's answer a moment ago, within this batch, which is all a lookup promises while the
	// table is updated in place.
	e := h.lastRoute
	if dst != h.lastDst || e == nil {
		e = h.snap.lookup(dst)
		if e == nil {
			return verdictNoRoute
		}
		h.lastDst, h.lastRoute = dst, e
	}
	switch e.typ {
	case Local, Broadcast:
		return verdictLocal
	case Blackhole:
		p.Drop(pipeline.DropBlackhole)
		return verdictDropped
	case Unreachable:
		return verdictUnreachable
	}
	// RFC 1812 §5.3.4 / RFC 1122 §3.3.6: a frame that came as link-layer broadcast or multicast is not
	// forwarded.
	if d[0]&1 != 0 {
		p.Drop(pipeline.DropL2Broadcast)
		return verdictDropped
	}
	// RFC 1812 §5.3.7: a source of 0.0.0.0 is allowed to reach us (DHCP) but is never forwarded.
	if binary.BigEndian.Uint32(d[ethLen+12:]) == 0 {
		p.Drop(pipeline.DropMartianSource)
		return verdictDropped
	}
	ifc := &h.ifs[e.iface]
	if !ifc.ok {
		p.Drop(pipeline.DropBadPort)
		return verdictDropped
	}
	nh := e.gateway
	if nh == 0 {
		nh = dst
	}
	h.meta[i] = pktMeta{iface: e.iface, nh: nh}
	p.OutPort = ifc.port
	p.NextHop = addrFrom4(nh)
	if h.direct && !forwardable(d[ethLen:], ifc.mtu) {
		return verdictRefused
	}
	return verdictForward
}

// receive is ip_rcv: L2 checks, ARP, and the IPv4 header validation of RFC 1812 §5.2.2. It returns true
// for a valid IPv4 packet (with the frame trimmed to Total Length and L3/L4 set), having given every
// other packet its verdict.
func (h *handler) receive(b *pipeline.Batch, p *pipeline.Packet) bool {
	d := p.Data()
	if len(d) < ethLen {
		p.Drop(pipeline.DropTruncated)
		return false
	}
	inIf := int32(-1)
	if int(p.InPort) < len(h.portIface) {
		inIf = h.portIface[p.InPort]
		// Unicast for another station (a switch flooding, promiscuous mode) is not ours to route.
		if d[0]&1 == 0 && [6]byte(d[0:6]) != h.portMAC[p.InPort] {
			p.Drop(pipeline.DropL2NotForUs)
			return false
		}
	}
	switch proto.EtherType(binary.BigEndian.Uint16(d[12:])) {
	case proto.EtherTypeIPv4:
	case proto.EtherTypeARP:
		h.arpInput(b, p, inIf)
		return false
	case proto.EtherTypeVLAN, proto.EtherTypeQinQ:
		p.Drop(pipeline.DropVLAN)
		return false
	case proto.EtherTypeIPv6:
		p.Drop(pipeline.DropIPv6Unsupported)
		return false
	default:
		p.Drop(pipeline.DropUnknownEtherType)
		return false
	}
	// RFC 1812 §5.2.2: the packet length must be at least 20, the checksum must verify, the version must be
	// 4, the IHL at least 5 and the total length at least the header length; otherwise the packet MUST be
	// silently discarded.
	ipb := d[ethLen:]
	if len(ipb) < proto.IPv4MinHeaderLen {
		p.Drop(pipeline.DropTruncated)
		return false
	}
	ip, perr := proto.ParseIPv4(ipb)
	if perr != proto.OK {
		switch perr {
		case proto.ErrVersion:
			p.Drop(pipeline.DropIPVersion)
		case proto.ErrHeaderLength:
			p.Drop(pipeline.DropIPHeaderLength)
		case proto.ErrTotalLength:
			p.Drop(pipeline.DropIPTotalLength)
		default: // ErrTruncated: the header or the total length runs past the frame
			if int(ipb[0]&0xf)*4 > len(ipb) {
				p.Drop(pipeline.DropIPHeaderLength)
			} else {
				p.Drop(pipeline.DropIPTotalLength)
			}
		}
		return false
	}
	hl := ip.HeaderLen()
	if hl == proto.IPv4MinHeaderLen && !checksum20Valid((*[proto.IPv4MinHeaderLen]byte)(ip)) ||
		hl != proto.IPv4MinHeaderLen && !ip.ChecksumValid() {
		p.Drop(pipeline.DropIPChecksum)
		return false
	}
	if hl > proto.IPv4MinHeaderLen && !h.optionsOK(ip) {
		p.Drop(pipeline.DropIPOptions)
		return false
	}
	src := binary.BigEndian.Uint32(ip[12:])
	dst := binary.BigEndian.Uint32(ip[16:])
	// RFC 1812 §5.3.7 martians. 0.0.0.0 as a source is let through here and refused by route for
	// forwarding (a DHCP client uses it towards us); the limited broadcast as a destination is local.
	if (src != 0 && martian(src)) || isMulticast(src) {
		p.Drop(pipeline.DropMartianSource)
		return false
	}
	if dst != limitedB && martian(dst) {
		p.Drop(pipeline.DropMartianDestination)
		return false
	}
	// Ethernet pads short frames to 60 bytes; the padding is not part of the datagram.
	p.SetLen(ethLen + len(ip))
	p.L3 = ethLen
	p.L4 = int16(ethLen + hl)
	return true
}

// optionsOK checks the options are well formed (RFC 791 §3.1) and refuses source routing: RFC 7126 §4.3/4.4
// recommends dropping LSRR and SSRR packets, and not processing them spares the router from rewriting them.
// Other options (record route, timestamp) are forwarded untouched.
func (h *handler) optionsOK(ip proto.IPv4) bool {
	if ip.ValidateOptions() != proto.OK {
		return false
	}
	o := ip.Options()
	for len(o) > 0 {
		switch o[0] {
		case 0:
			return true
		case 1:
			o = o[1:]
			continue
		case 131, 137: // LSRR, SSRR
			return false
		}
		o = o[o[1]:]
	}
	return true
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

// transmit fragments a packet that does not fit the egress MTU and passes it (or its fragments) to the
// neighbour layer.
func (h *handler) transmit(b *pipeline.Batch, i uint16, pend []uint16) []uint16 {
	p := &b.Pkts[i]
	if p.Verdict != pipeline.Accept {
		return pend
	}
	m := h.meta[i]
	ifc := &h.ifs[m.iface]
	if p.Len()-ethLen > ifc.mtu {
		// Forwarded DF packets were refused before PostRouting; this is a generated one (an echo reply
		// keeps no DF) or a hook grew the packet.
		if p.Data()[ethLen+6]&0x40 != 0 {
			p.Drop(pipeline.DropFragNeeded)
			return pend
		}
		first, last, ok := h.fragment(b, p, i, ifc.mtu)
		if !ok {
			return pend
		}
		pend = h.resolve(b, p, m, pend)
		for j := first; j < last; j++ {
			pend = h.resolve(b, &b.Pkts[j], m, pend)
		}
		return pend
	}
	// resolve's common case without the call: the next hop of the previous packet, reachable and fresh.
	if n := h.lastNeigh; n != nil && n.key == (nkey{uint32(m.iface), m.nh}) &&
		n.state.Load() == uint32(NeighbourReachable) && h.now-n.confirmed.Load() <= h.s.reachableNs {
		h.sendTo(p, n, ifc)
		return pend
	}
	return h.resolve(b, p, m, pend)
}

// sendTo rewrites the Ethernet addresses for the hop to n out of ifc and sets verdict Tx.
func (h *handler) sendTo(p *pipeline.Packet, n *neighbour, ifc *hiface) {
	d := p.Data()
	n.putMAC(d[0:6])
	*(*[6]byte)(d[6:12]) = ifc.mac
	p.Send(ifc.port)
}

// resolve is neigh_output: send to a known MAC, or hold the packet and ask ARP.
func (h *handler) resolve(b *pipeline.Batch, p *pipeline.Packet, m pktMeta, pend []uint16) []uint16 {
	ifc := &h.ifs[m.iface]
	// A run of packets to one next hop finds it without hashing; entries are never removed from the
	// table (see neighCache), so the remembered one stays right for its key.
	n := h.lastNeigh
	if k := (nkey{uint32(m.iface), m.nh}); n == nil || n.key != k {
		n = h.ncache.lookup(&h.s.neigh, k)
		if n == nil {
			p.Drop(DropNeighbourTableFull)
			return pend
		}
		h.lastNeigh = n
	}
	now := h.now
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
	}
	h.sendTo(p, n, ifc)
	return pend
}

// expired reports (and records, once) that n has had MaxProbes requests and the last one timed out.
func (h *handler) expired(n *neighbour) bool {
	if n.probes.Load() < h.s.maxProbes || h.now-n.probeAt.Load() < h.s.probeNs {
		return false
	}
	st := n.state.Load()
	if st == uint32(NeighbourFailed) {
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
// (RFC 1812 §5.2.7.1).
func (h *handler) icmpAboutFailed(b *pipeline.Batch, p *pipeline.Packet, pend []uint16) []uint16 {
	pend = h.icmpError(b, p, proto.ICMPv4DestUnreachable, proto.ICMPv4HostUnreachable, 0, pend)
	p.Drop(pipeline.DropNeighbourFailed)
	return pend
}

// hold keeps p until n resolves (DropNeighbourQueueFull when NeighbourQueueLen packets already wait).
func (h *handler) hold(p *pipeline.Packet, n *neighbour, iface int32) {
	q := h.held[n]
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
	if len(q.pkts) >= h.s.cfg.NeighbourQueueLen {
		p.Drop(pipeline.DropNeighbourQueueFull)
		return
	}
	p.Steal()
	q.pkts = append(q.pkts, *p)
	h.nheld++
}

// probe sends an ARP request for n unless one went out (from any queue) less than ProbeInterval ago.
func (h *handler) probe(b *pipeline.Batch, n *neighbour, iface int32) {
	last := n.probeAt.Load()
	if h.now-last < h.s.probeNs || !n.probeAt.CompareAndSwap(last, h.now) {
		return
	}
	n.probes.Add(1)
	target := addrFrom4(n.key.ip)
	if r := h.s.cfg.Resolver; r != nil {
		r(h.s.ifaces[iface].name, target)
		return
	}
	ifc := &h.ifs[iface]
	if h.sendARP(b, ifc, proto.ARPRequest, proto.BroadcastMAC, ifc.sourceFor(target), proto.MAC{}, target) {
		inc(&h.ctr.arpReqOut)
	}
}

// sendARP builds an ARP packet in a fresh frame and sends it on ifc.
func (h *handler) sendARP(b *pipeline.Batch, ifc *hiface, op uint16, dstMAC proto.MAC, sip netip.Addr, tha proto.MAC, tip netip.Addr) bool {
	if !ifc.ok || !sip.IsValid() {
		return false
	}
	q, ok := b.Alloc()
	if !ok || !q.SetLen(ethLen+proto.ARPLen) {
		if ok {
			q.Drop(pipeline.DropNoBuffer)
		}
		return false
	}
	d := q.Data()
	proto.EthernetFields{Dst: dstMAC, Src: ifc.mac, EtherType: proto.EtherTypeARP}.Encode(d)
	proto.ARPFields{Op: op, SenderMAC: ifc.mac, SenderIP: sip, TargetMAC: tha, TargetIP: tip}.Encode(d[ethLen:])
	q.Send(ifc.port)
	return true
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

// arpInput is arp_rcv (RFC 826 "Packet Reception"): learn the sender if we are the target or already know
// it, answer requests for our addresses.
func (h *handler) arpInput(b *pipeline.Batch, p *pipeline.Packet, inIf int32) {
	a, err := proto.ParseARP(p.Data()[ethLen:])
	if err != proto.OK {
		p.Drop(pipeline.DropARPMalformed)
		return
	}
	if inIf < 0 {
		p.Drop(pipeline.DropARPNotForUs)
		return
	}
	ifc := &h.ifs[inIf]
	sip, tip := a.SenderIP(), a.TargetIP()
	sha := a.SenderMAC()
	ours := false
	for _, pf := range ifc.addrs {
		if pf.Addr() == tip {
			ours = true
			break
		}
	}
	op := a.Op()
	switch op {
	case proto.ARPRequest:
		inc(&h.ctr.arpReqIn)
	case proto.ARPReply:
		inc(&h.ctr.arpRepIn)
	}
	// RFC 826: "If the pair <protocol type, sender protocol address> is already in my translation table,
	// update the sender hardware address field ... If I am the target ... add the triplet". A sender of
	// 0.0.0.0 is an address probe (RFC 5227) and teaches nothing; a multicast sender MAC is never learnt.
	learnable := sip.Is4() && !sip.IsUnspecified() && !sha.IsMulticast() && !martian(addr4(sip))
	if learnable {
		k := nkey{uint32(inIf), addr4(sip)}
		var n *neighbour
		if ours {
			n, _ = h.s.neigh.getOrCreate(k)
		} else {
			n = h.s.neigh.get(k)
		}
		if n != nil && n.confirm(sha, h.now) {
			inc(&h.ctr.resolved)
		}
	}
	if op != proto.ARPRequest || !ours {
		if ours || (learnable && op == proto.ARPReply) || a.IsGratuitous() {
			p.Consume()
			return
		}
		p.Drop(pipeline.DropARPNotForUs)
		return
	}
	// Answer in place: the reply goes back out of the port the request came in on.
	d := p.Data()
	if !p.SetLen(ethLen + proto.ARPLen) {
		p.Drop(pipeline.DropARPMalformed)
		return
	}
	d = p.Data()
	proto.EthernetFields{Dst: sha, Src: ifc.mac, EtherType: proto.EtherTypeARP}.Encode(d)
	proto.ARPFields{Op: proto.ARPReply, SenderMAC: ifc.mac, SenderIP: tip, TargetMAC: sha, TargetIP: sip}.Encode(d[ethLen:])
	p.Send(ifc.port)
	inc(&h.ctr.arpRepOut)
}

// Tick releases held packets whose neighbour resolved, fails those whose neighbour did not, re-probes,
// sends the gratuitous ARPs of start-up and builds the datagrams applications queued.
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
	out := h.selD[:0]
	var wake int64
	for n, q := range h.held {
		switch NeighbourState(n.state.Load()) {
		case NeighbourReachable, NeighbourStale:
			ifc := &h.ifs[q.iface]
			k := 0
			for ; k < len(q.pkts) && b.Room() > 0; k++ {
				p := &q.pkts[k]
				d := p.Data()
				n.putMAC(d[0:6])
				copy(d[6:12], ifc.mac[:])
				p.Verdict = pipeline.Accept
				p.Send(ifc.port)
				b.Append(p)
			}
			h.shiftHold(q, k)
			add(&h.ctr.released, uint64(k))
			if len(q.pkts) > 0 {
				wake = h.now // batch full: come back at once
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
				out = h.icmpError(b, p, proto.ICMPv4DestUnreachable, proto.ICMPv4HostUnreachable, 0, out)
				p.Drop(pipeline.DropNeighbourFailed)
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
	out = h.udpOutput(b, out)
	out, wake = h.tcpTick(b, out, wake)
	h.emit(b, out, h.selE[:0])
	if len(h.tx) > 0 {
		wake = h.now
	}
	return wake
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

// gratuitous announces every address on every port (RFC 5227 §3 "ARP Announcement": a request with sender
// and target both our address), so neighbours update caches that may hold a previous owner's MAC.
func (h *handler) gratuitous(b *pipeline.Batch) {
	for i := range h.ifs {
		ifc := &h.ifs[i]
		for _, a := range ifc.addrs {
			if b.Room() == 0 {
				return
			}
			if h.sendARP(b, ifc, proto.ARPRequest, proto.BroadcastMAC, a.Addr(), proto.MAC{}, a.Addr()) {
				inc(&h.ctr.garpOut)
			}
		}
	}
}

// Drain hands back, at driver shutdown, the packets still waiting for a neighbour: dropped with
// DropShutdown so that the driver counts them and takes their frames back (pipeline.Drainer).
func (h *handler) Drain(b *pipeline.Batch) {
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

// checksum20Valid is proto.IPv4.ChecksumValid for the common header without options, small enough to be
// inlined: five 32-bit words summed in 64 bits and folded, which is the same one's complement sum (RFC 1071
// §2(B): the sum may be taken over wider words and folded).
func checksum20Valid(ip *[proto.IPv4MinHeaderLen]byte) bool {
	s := uint64(binary.BigEndian.Uint32(ip[0:])) + uint64(binary.BigEndian.Uint32(ip[4:])) +
		uint64(binary.BigEndian.Uint32(ip[8:])) + uint64(binary.BigEndian.Uint32(ip[12:])) +
		uint64(binary.BigEndian.Uint32(ip[16:]))
	s = s&0xffffffff + s>>32 // < 2^32 + 4
	s = s&0xffff + s>>16     // <= 0x2fffe
	s = s&0xffff + s>>16     // <= 0x10001
	// Each fold keeps the value mod 0xffff; a valid header sums to 0 mod 0xffff (one's complement -0), and
	// the only such values left are 0xffff and 0, which needs an all-zero header (invalid, as for proto).
	return s == 0xffff
}
