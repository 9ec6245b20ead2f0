package stack

import (
	"net/netip"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
)

// ipv6_rcv, ip6_route_input, ip6_forward, ip6_input and ip6_output: the IPv6 steps of the path (RFC 8200),
// beside their IPv4 siblings in ipv4.go. The handler's batch runs them in the same places: receive calls
// ipv6Rcv, classify calls classify6 (extension headers, routing, ip6_forward's checks), deliver calls
// deliver6, and the neighbour layer (neigh.go) resolves next hops with NDP (ndp.go).

// Drop reasons of the IPv6 path.
var (
	// DropIPv6PayloadLength: the Payload Length runs past the frame.
	DropIPv6PayloadLength = pipeline.RegisterDropReason("ipv6_payload_length")
	// DropIPv6ExtHeader: an extension header runs past the packet, an option past its header, or
	// Hop-by-Hop is not first (RFC 8200 §4.1).
	DropIPv6ExtHeader = pipeline.RegisterDropReason("ipv6_ext_header")
	// DropIPv6ExtChainLong: more than ipv6MaxExtHeaders extension headers or ipv6MaxExtBytes of them.
	DropIPv6ExtChainLong = pipeline.RegisterDropReason("ipv6_ext_chain_too_long")
	// DropIPv6Option: a Hop-by-Hop or Destination option we do not know whose type says discard (RFC 8200
	// §4.2), or a Jumbo Payload option (RFC 2675 is not supported).
	DropIPv6Option = pipeline.RegisterDropReason("ipv6_unknown_option")
	// DropIPv6RH0: a type 0 routing header (RFC 5095 §3: deprecated; it made amplification attacks).
	DropIPv6RH0 = pipeline.RegisterDropReason("ipv6_rh0")
	// DropIPv6Routing: a routing header of a type we do not implement with segments left, for this host
	// (RFC 8200 §4.4: Parameter Problem).
	DropIPv6Routing = pipeline.RegisterDropReason("ipv6_routing_header")
	// DropIPv6LinkLocal: a link-local source or destination on the way to another link (RFC 4291
	// §2.5.6), or a link-local destination that is not ours.
	DropIPv6LinkLocal = pipeline.RegisterDropReason("ipv6_link_local_scope")
	// DropIPv6NotJoined: to a multicast group the interface has not joined (multicast routing is not
	// supported).
	DropIPv6NotJoined = pipeline.RegisterDropReason("ipv6_multicast_not_joined")
	// DropIPv6Tentative: to an address whose duplicate address detection runs or failed (RFC 4862 §5.4).
	DropIPv6Tentative = pipeline.RegisterDropReason("ipv6_address_tentative")
	// DropIPv6AdminProhibited: a blackhole route (answered with administratively prohibited).
	DropIPv6AdminProhibited = pipeline.RegisterDropReason("ipv6_admin_prohibited")
)

// Bounds on the extension header chain walked per packet: RFC 8200 §4.1 orders at most one header of each
// kind (Destination Options twice), so a valid chain has at most 6 before the upper layer; RFC 7112
// wants the whole chain in the first fragment. A longer chain is an attack on the walk.
const (
	ipv6MaxExtHeaders = 8
	ipv6MaxExtBytes   = 256
)

// isIPv6Frame reports an Ethernet frame carrying IPv6.
func isIPv6Frame(d []byte) bool {
	return len(d) >= ethLen && proto.Ethernet(d).EtherType() == proto.EtherTypeIPv6
}

// Address classes the receive checks need (RFC 4291 §2.4), on the 16 bytes.
func isMulticast6(a *[16]byte) bool   { return a[0] == 0xff }
func isLinkLocal6(a *[16]byte) bool   { return a[0] == 0xfe && a[1]&0xc0 == 0x80 }
func isUnspecified6(a *[16]byte) bool { return *a == [16]byte{} }
func isLoopback6(a *[16]byte) bool    { return *a == [16]byte{15: 1} }

// isMapped6 reports ::ffff:0:0/96, IPv4-mapped addresses, which never appear on the wire (RFC 4291
// §2.5.5.2; RFC 6890 lists them not forwardable).
func isMapped6(a *[16]byte) bool {
	return *(*[12]byte)(a[:12]) == [12]byte{10: 0xff, 11: 0xff}
}

// ipv6Rcv is ipv6_rcv: the fixed header's checks. It returns true for a packet worth routing, with the
// frame trimmed to the Payload Length (Ethernet pads short frames) and L3 set; the extension headers are
// walked by classify6, which can answer with ICMPv6.
func (h *handler) ipv6Rcv(p *pipeline.Packet, ipb []byte) bool {
	ip, err := proto.ParseIPv6(ipb)
	switch err {
	case proto.OK:
	case proto.ErrVersion:
		p.Drop(pipeline.DropIPVersion)
		return false
	default:
		if len(ipb) < proto.IPv6HeaderLen {
			p.Drop(pipeline.DropTruncated)
		} else {
			p.Drop(DropIPv6PayloadLength)
		}
		return false
	}
	src, dst := ip.Src16(), ip.Dst16()
	// RFC 4291 §2.7: "Multicast addresses must not be used as source addresses"; loopback "must never be
	// sent outside a single node" (§2.5.3); IPv4-mapped addresses are never on the wire. The unspecified
	// source is taken only for an ICMPv6 message to a multicast group - a DAD solicitation (RFC 4862
	// §5.4.2), which ndpInput checks further - so that nothing ever answers ::.
	if isMulticast6(&src) || isLoopback6(&src) || isMapped6(&src) ||
		isUnspecified6(&src) && (!isMulticast6(&dst) || ip.NextHeader() != proto.ProtoICMPv6) {
		p.Drop(pipeline.DropMartianSource)
		return false
	}
	if isUnspecified6(&dst) || isLoopback6(&dst) || isMapped6(&dst) {
		p.Drop(pipeline.DropMartianDestination)
		return false
	}
	p.SetLen(ethLen + len(ip))
	p.L3 = ethLen
	p.L4 = ethLen + proto.IPv6HeaderLen
	return true
}

// ext6 is what walking a packet's extension headers found.
type ext6 struct {
	proto  uint8 // the upper-layer protocol (or the header after a non-first fragment's)
	off    int   // where it starts, from the IPv6 header
	nhOff  int   // where the Next Header field naming it lies (a Parameter Problem's pointer)
	frag   bool  // a fragment of a larger packet (not an atomic fragment)
	drop   pipeline.DropReason
	pcode  uint8 // with drop: Parameter Problem to send (pcode+1, 0 for none)
	ptr    uint32
	anyMc  bool // the Parameter Problem may go even about a multicast destination (RFC 4443 §2.4 (e.3))
	hasErr bool
}

// walkExt walks the extension headers (RFC 8200 §4) with a bound. Hop-by-Hop options are processed at
// every node (§4.3); a routing header of type 0 is dropped everywhere (RFC 5095); for this host (local)
// Destination Options are processed and an unknown routing type with segments left is refused (§4.4).
// The walk stops at a non-first fragment, whose remaining headers belong to the reassembled packet; a
// router forwards fragments untouched.
func walkExt(ip proto.IPv6, local bool) ext6 {
	var x ext6
	next := ip.NextHeader()
	off, nhOff := proto.IPv6HeaderLen, proto.IPv6NextHeaderOffset
	for n := 0; ; n++ {
		switch next {
		case proto.ProtoIPv6HopByHop, proto.ProtoIPv6Routing, proto.ProtoIPv6DestOpts, proto.ProtoIPv6Fragment:
		default:
			x.proto, x.off, x.nhOff = next, off, nhOff
			return x
		}
		if n == ipv6MaxExtHeaders || off-proto.IPv6HeaderLen >= ipv6MaxExtBytes {
			x.drop = DropIPv6ExtChainLong
			return x
		}
		if next == proto.ProtoIPv6Fragment {
			f, err := proto.ParseIPv6Fragment(ip[off:])
			if err != proto.OK {
				x.drop = DropIPv6ExtHeader
				return x
			}
			nhOff = off + proto.IPv6ExtNextHeaderOffset
			next = f.NextHeader()
			off += proto.IPv6FragmentHeaderLen
			// RFC 6946 §4: an atomic fragment is processed as a whole packet.
			if !f.IsAtomic() {
				x.frag = true
				if f.FragmentOffset() != 0 {
					x.proto, x.off, x.nhOff = next, off, nhOff
					return x
				}
			}
			continue
		}
		e, err := proto.ParseIPv6ExtHeader(ip[off:])
		if err != proto.OK {
			x.drop = DropIPv6ExtHeader
			return x
		}
		// The byte bound covers this header's options too, which options6 walks one by one.
		if off+len(e)-proto.IPv6HeaderLen > ipv6MaxExtBytes {
			x.drop = DropIPv6ExtChainLong
			return x
		}
		switch next {
		case proto.ProtoIPv6HopByHop:
			// RFC 8200 §4.1: Hop-by-Hop "MUST immediately follow the IPv6 header".
			if n != 0 {
				x.drop = DropIPv6ExtHeader
				return x
			}
			if !options6(&x, e, off, ip) {
				return x
			}
		case proto.ProtoIPv6DestOpts:
			if local && !options6(&x, e, off, ip) {
				return x
			}
		case proto.ProtoIPv6Routing:
			if e.RoutingType() == 0 {
				x.drop = DropIPv6RH0
				return x
			}
			// RFC 8200 §4.4: an unrecognised Routing Type with Segments Left non-zero: discard and send
			// Parameter Problem code 0 pointing at the Routing Type. With none left, go on.
			if local && e.SegmentsLeft() != 0 {
				x.drop, x.pcode, x.ptr, x.hasErr = DropIPv6Routing, proto.ICMPv6ErroneousHeader, uint32(off+proto.RoutingTypeOffset), true
				return x
			}
		}
		nhOff = off + proto.IPv6ExtNextHeaderOffset
		next = e.NextHeader()
		off += len(e)
	}
}

// options6 processes the options of a Hop-by-Hop or Destination Options header at off (RFC 8200 §4.2):
// padding and Router Alert are understood (Router Alert asks a router to look at MLD or RSVP, neither of
// which runs here, so the packet is forwarded as usual); any other type is handled by its two high-order
// bits. It returns false, with x.drop set, when the packet is to be discarded.
func options6(x *ext6, e proto.IPv6ExtHeader, off int, ip proto.IPv6) bool {
	at := off + proto.OptionsOffset
	for o := e.Options(); len(o) > 0; {
		typ, opt, rest, err := proto.NextIPv6Option(o)
		if err != proto.OK {
			x.drop = DropIPv6ExtHeader
			return false
		}
		switch typ {
		case proto.IPv6OptPad1, proto.IPv6OptPadN, proto.IPv6OptRouterAlert:
		default:
			// The Jumbo Payload option falls here too: its action bits (11) say discard and answer.
			switch proto.IPv6OptionAction(typ) {
			case proto.IPv6OptActionSkip:
			case proto.IPv6OptActionDiscard:
				x.drop = DropIPv6Option
				return false
			case proto.IPv6OptActionDiscardICMP:
				x.drop, x.pcode, x.ptr, x.hasErr, x.anyMc = DropIPv6Option, proto.ICMPv6UnrecognizedOption, uint32(at), true, true
				return false
			case proto.IPv6OptActionDiscardICMPUni:
				x.drop, x.pcode, x.ptr, x.hasErr = DropIPv6Option, proto.ICMPv6UnrecognizedOption, uint32(at), true
				return false
			}
		}
		at += len(opt)
		o = rest
	}
	return true
}

// classify6 is ip6_route_input and ip6_forward's checks for a packet ipv6Rcv accepted, whose route
// lookup6Batch looked up with the rest of the batch: it returns
// verdictForward or verdictRefused for a packet to forward, or sorts a local one into in, or drops it
// with an ICMPv6 error into out where one is due.
func (h *handler) classify6(b *pipeline.Batch, p *pipeline.Packet, i uint16, in, out *[]uint16) int {
	d := p.Data()
	ip := proto.IPv6(d[ethLen:])
	dst := ip.Dst16()
	inIf := h.portIface[p.InPort] // ipv6Rcv ran: the port has a v6 interface
	ifIn := &h.ifs[inIf]
	var e *routeEntry
	local := false
	switch {
	case isMulticast6(&dst):
		if !ifIn.joined(&dst) {
			p.Drop(DropIPv6NotJoined)
			return verdictDropped
		}
		local = true
	case isLinkLocal6(&dst):
		// RFC 4291 §2.5.6: link-local destinations are never forwarded; only the ingress interface's own
		// address is ours.
		x := ifIn.ll
		if x == nil || x.a != naddr6(&dst) {
			p.Drop(DropIPv6LinkLocal)
			return verdictDropped
		}
		if !x.usable() {
			p.Drop(DropIPv6Tentative)
			return verdictDropped
		}
		local = true
	default:
		// Looked up with the rest of the batch before routing (lookup6Batch).
		if id := h.route6[i]; id != 0 {
			e = h.snap.routes.get(id)
		}
		local = e != nil && e.typ == Local
	}
	var x ext6
	switch nh := ip.NextHeader(); nh {
	case proto.ProtoIPv6HopByHop, proto.ProtoIPv6Routing, proto.ProtoIPv6DestOpts, proto.ProtoIPv6Fragment:
		x = walkExt(ip, local)
	default: // no extension headers, the common case
		x.proto, x.off, x.nhOff = nh, proto.IPv6HeaderLen, proto.IPv6NextHeaderOffset
	}
	if x.drop != 0 {
		if x.hasErr {
			*out = h.icmp6ErrorMc(b, p, proto.ICMPv6ParamProblem, x.pcode, x.ptr, x.anyMc, *out)
		}
		p.Drop(x.drop)
		return verdictDropped
	}
	if local {
		if e != nil && !h.localUsable(&dst) {
			p.Drop(DropIPv6Tentative)
			return verdictDropped
		}
		h.meta[i] = pktMeta{iface: inIf, l4: x.proto, frag: x.frag, nhOff: uint16(x.nhOff)}
		p.L4 = int16(ethLen + x.off)
		*in = append(*in, i)
		return verdictDropped
	}
	if e == nil {
		*out = h.icmp6Error(b, p, proto.ICMPv6DestUnreachable, proto.ICMPv6NoRoute, 0, *out)
		p.Drop(pipeline.DropNoRoute)
		return verdictDropped
	}
	switch e.typ {
	case Blackhole:
		// The issue asks blackhole routes of IPv6 to answer administratively prohibited (RFC 4443 §3.1
		// code 1), as a filter does, where IPv4's stay silent.
		*out = h.icmp6Error(b, p, proto.ICMPv6DestUnreachable, proto.ICMPv6AdminProhibited, 0, *out)
		p.Drop(DropIPv6AdminProhibited)
		return verdictDropped
	case Unreachable:
		*out = h.icmp6Error(b, p, proto.ICMPv6DestUnreachable, proto.ICMPv6NoRoute, 0, *out)
		p.Drop(pipeline.DropUnreachableRoute)
		return verdictDropped
	}
	if proto.Ethernet(d).Dst().IsMulticast() {
		p.Drop(pipeline.DropL2Broadcast)
		return verdictDropped
	}
	// RFC 4291 §2.5.6: "Routers must not forward any packets with Link-Local source or destination
	// addresses to other links"; RFC 4443 §3.1: code 2, beyond scope of source address.
	if src := ip.Src16(); isLinkLocal6(&src) {
		*out = h.icmp6Error(b, p, proto.ICMPv6DestUnreachable, proto.ICMPv6BeyondScope, 0, *out)
		p.Drop(DropIPv6LinkLocal)
		return verdictDropped
	}
	ifc := &h.ifs[e.iface]
	if !ifc.ok {
		p.Drop(pipeline.DropBadPort)
		return verdictDropped
	}
	nh, nhA := e.gw6, e.route.NextHop
	if nh == (naddr{}) {
		nh, nhA = naddr6(&dst), netip.AddrFrom16(dst)
	}
	h.meta[i] = pktMeta{iface: e.iface, nh: nh}
	p.OutPort = ifc.port
	p.NextHop = nhA
	if h.direct && !h.forwardable6(ip, ifc.mtu) {
		return verdictRefused
	}
	if !x.frag && h.partialFrom(p) && proto.FinishPartialChecksum(ip.Src(), ip.Dst(), x.proto, ip[x.off:]) {
		inc(&h.ctr.csumCompleted)
	}
	return verdictForward
}

// localUsable reports whether dst, a Local route's address, is usable (not tentative or duplicate).
func (h *handler) localUsable(dst *[16]byte) bool {
	a := naddr6(dst)
	for i := range h.ifs {
		if x := h.ifs[i].ours6(a); x != nil {
			return x.usable()
		}
	}
	return false
}

// forwardable6 is ip6_forward's checks: the hop limit allows forwarding (RFC 8200 §3: decremented by one
// by each node that forwards; a router MUST NOT forward with 0 left, RFC 4443 §3.3) and the packet fits
// the egress MTU (RFC 8200 §5: routers do not fragment). It decrements the hop limit; otherwise
// forwardError6 says why. IPv6 has no header checksum to update.
func (h *handler) forwardable6(ip proto.IPv6, mtu int) bool {
	if ip.HopLimit() <= 1 || len(ip) > mtu {
		return false
	}
	ip.DecrementHopLimit()
	inc(&h.ctr.forwarded6)
	return true
}

// forwardError6 drops a packet forwardable6 refused with Time Exceeded (hop limit exceeded in transit,
// RFC 4443 §3.3) or Packet Too Big carrying the next-hop MTU (RFC 4443 §3.2, RFC 8201 §4).
func (h *handler) forwardError6(b *pipeline.Batch, p *pipeline.Packet, i uint16, out []uint16) []uint16 {
	if proto.IPv6(p.Data()[ethLen:]).HopLimit() <= 1 {
		out = h.icmp6Error(b, p, proto.ICMPv6TimeExceeded, proto.ICMPv6HopLimitExceeded, 0, out)
		p.Drop(pipeline.DropTTLExpired)
		return out
	}
	out = h.icmp6Error(b, p, proto.ICMPv6PacketTooBig, 0, uint32(h.ifs[h.meta[i].iface].mtu), out)
	p.Drop(pipeline.DropFragNeeded)
	return out
}

// deliver6 is ip6_input_finish: the upper layer of a packet for this host. Fragments are not reassembled
// (atomic fragments are whole packets, RFC 6946).
func (h *handler) deliver6(b *pipeline.Batch, p *pipeline.Packet, i uint16, out []uint16) []uint16 {
	m := h.meta[i]
	if m.frag {
		p.Drop(pipeline.DropFragment)
		return out
	}
	switch m.l4 {
	case proto.ProtoICMPv6:
		return h.icmp6Input(b, p, i, out)
	case proto.ProtoUDP:
		return h.udp6Input(b, p, out)
	case proto.ProtoTCP:
		return h.tcpInput(b, p, out)
	case proto.ProtoIPv6NoNext:
		// RFC 8200 §4.7: nothing follows; the packet is consumed.
		inc(&h.ctr.delivered)
		p.Consume()
		return out
	}
	// RFC 8200 §4: an unrecognised Next Header: discard and send Parameter Problem code 1 pointing at it.
	out = h.icmp6Error(b, p, proto.ICMPv6ParamProblem, proto.ICMPv6UnrecognizedNext, uint32(m.nhOff), out)
	p.Drop(pipeline.DropUnknownProtocol)
	return out
}

// setEgress6 routes a packet the stack generated (ICMPv6, UDP) by route e to dst.
func (h *handler) setEgress6(q *pipeline.Packet, qi uint16, iface int32, gw naddr, dst netip.Addr) {
	nh := gw
	if nh == (naddr{}) {
		nh = naddrOf(dst)
	}
	h.meta[qi] = pktMeta{iface: iface, nh: nh}
	q.OutPort = h.ifs[iface].port
	q.NextHop = dst
	q.L3 = ethLen
	q.L4 = ethLen + proto.IPv6HeaderLen
}

// route6Back finds the way back to src for an answer (an ICMPv6 error, an echo reply): a link-local
// source is on the interface the packet came in by (inIf); anything else by a unicast route.
func (h *handler) route6Back(src *[16]byte, inIf int32) (iface int32, gw naddr, ok bool) {
	if isLinkLocal6(src) {
		if inIf < 0 || !h.ifs[inIf].ok {
			return 0, naddr{}, false
		}
		return inIf, naddr{}, true
	}
	e := h.snap.lookup6(src)
	if e == nil || e.typ != Unicast || !h.ifs[e.iface].ok {
		return 0, naddr{}, false
	}
	return e.iface, e.gw6, true
}
