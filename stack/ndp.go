package stack

import (
	"net/netip"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
)

// ndisc_rcv and the Neighbor Discovery messages the stack sends (RFC 4861): the IPv6 resolver of the
// neighbour state machine in neigh.go, as ARP (arp.go) is the IPv4 one. Entries, held packets, probes,
// bounds and the collector are shared; what NDP adds is its messages and RFC 4861 §7.2.5's rules for
// advertisements.
//
// The NUD states map onto neigh.go's: INCOMPLETE, REACHABLE, STALE and (after MaxProbes unanswered
// solicitations) FAILED are the same; DELAY and PROBE are folded into STALE: a stale entry that traffic
// uses is probed at once (no DELAY_FIRST_PROBE_TIME wait for an upper-layer hint, which a router's
// forwarded traffic never gives), with unicast solicitations to the cached MAC as PROBE sends them
// (§7.3.3), every ProbeInterval (RetransTimer), MaxProbes times (MAX_UNICAST_SOLICIT), the MAC used
// meanwhile. A solicitation from a neighbour creates or updates its entry as STALE (§7.2.3); a solicited
// advertisement makes it REACHABLE.

// Drop reasons of NDP.
var (
	// DropNDPInvalid: a Neighbor Solicitation or Advertisement that fails RFC 4861 §7.1's checks (hop
	// limit 255, code 0, options well formed, target not multicast, the rules for ::).
	DropNDPInvalid = pipeline.RegisterDropReason("ndp_invalid")
	// DropNDPNotForUs: a solicitation for an address that is not ours (no proxy NDP).
	DropNDPNotForUs = pipeline.RegisterDropReason("ndp_not_for_us")
)

// ndpHopLimit is the hop limit every ND message carries and every receiver checks (RFC 4861 §7.1): a
// message that crossed a router cannot have it.
const ndpHopLimit = 255

// ndpInput handles a Neighbor Solicitation or Advertisement for this host (RFC 4861 §7.1 validation,
// §7.2.3-7.2.5 processing, RFC 4862 §5.4.3-5.4.4 for tentative addresses).
func (h *handler) ndpInput(b *pipeline.Batch, p *pipeline.Packet, i uint16, ip proto.IPv6, m proto.ICMPv6, out []uint16) []uint16 {
	inIf := h.meta[i].iface
	ifc := &h.ifs[inIf]
	src, dst := ip.Src16(), ip.Dst16()
	opts, oerr := m.NDPOptions()
	target := m.TargetAddress()
	if ip.HopLimit() != ndpHopLimit || m.Code() != 0 || oerr != proto.OK || target.IsMulticast() {
		p.Drop(DropNDPInvalid)
		return out
	}
	ta := naddrOf(target)
	ethSrc := proto.Ethernet(p.Data()).Src()
	if m.Type() == proto.ICMPv6NeighborAdvertisement {
		// §7.1.2: "If the IP Destination Address is a multicast address the Solicited flag is zero." An
		// advertisement comes from an address of its sender (§4.4), never ::.
		if isMulticast6(&dst) && m.NAFlags()&proto.NAFlagSolicited != 0 || isUnspecified6(&src) {
			p.Drop(DropNDPInvalid)
			return out
		}
		inc(&h.ctr.naIn)
		if x := ifc.ours6(ta); x != nil {
			if ethSrc != ifc.mac {
				h.dadConflict(inIf, x, ethSrc, "neighbour advertisement")
			}
			p.Consume()
			return out
		}
		// §7.2.5: with no entry for the target the advertisement is discarded: entries are made by the
		// traffic that needs them, so unsolicited advertisements cannot fill the table.
		if n := h.s.neigh.get(nkey{uint32(inIf), ta}); n != nil {
			h.naUpdate(n, m.NAFlags(), &opts)
		}
		p.Consume()
		return out
	}

	unspec := isUnspecified6(&src)
	// §7.1.1: from :: the destination is a solicited-node group and there is no source link-layer option.
	if unspec && (!proto.IsSolicitedNodeMulticast(&dst) || opts.HasSourceLinkAddr) {
		p.Drop(DropNDPInvalid)
		return out
	}
	inc(&h.ctr.nsIn)
	x := ifc.ours6(ta)
	if x == nil {
		p.Drop(DropNDPNotForUs)
		return out
	}
	if ethSrc == ifc.mac { // our own solicitation, looped back by a switch or a bridge
		p.Consume()
		return out
	}
	switch x.state.Load() {
	case addrTentative:
		// RFC 4862 §5.4.3: a DAD solicitation (from ::) for our tentative address: another node wants it
		// too. A solicitation from a unicast source is for the address's future owner: discarded.
		if unspec {
			h.dadConflict(inIf, x, ethSrc, "neighbour solicitation")
		}
		p.Consume()
		return out
	case addrDuplicate:
		p.Consume()
		return out
	}
	flags := proto.NAFlagRouter | proto.NAFlagOverride
	var naDst netip.Addr
	var naMAC proto.MAC
	if unspec {
		// §7.2.4: an answer to a DAD probe goes to all-nodes, Solicited clear.
		naDst, naMAC = proto.AllNodesMulticast, proto.MulticastMAC(proto.AllNodesMulticast)
	} else {
		flags |= proto.NAFlagSolicited
		naDst, naMAC = ip.Src(), ethSrc
		if opts.HasSourceLinkAddr && !opts.SourceLinkAddr.IsMulticast() {
			naMAC = opts.SourceLinkAddr
			if ifc.onLink6(&src) {
				h.learn6(inIf, naddr6(&src), naMAC)
			}
		}
	}
	// Answer in place, out of the port the solicitation came in by.
	const naLen = 24 + 8 // NA with the target link-layer address option
	if !p.SetLen(ethLen + proto.IPv6HeaderLen + naLen) {
		p.Drop(pipeline.DropNoBuffer)
		return out
	}
	d := p.Data()
	proto.EthernetFields{Dst: naMAC, Src: ifc.mac, EtherType: proto.EtherTypeIPv6}.Encode(d)
	proto.IPv6Fields{NextHeader: proto.ProtoICMPv6, HopLimit: ndpHopLimit, Src: target, Dst: naDst, PayloadLen: naLen}.Encode(d[ethLen:])
	proto.NDPNeighborFields{Type: proto.ICMPv6NeighborAdvertisement, Flags: flags, Target: target,
		LinkAddr: ifc.mac, HasLinkAddr: true}.Encode(d[ethLen+proto.IPv6HeaderLen:], target, naDst)
	p.Send(ifc.port)
	inc(&h.ctr.naOut)
	return out
}

// naUpdate applies a Neighbor Advertisement to an existing entry (RFC 4861 §7.2.5).
func (h *handler) naUpdate(n *neighbour, flags uint8, o *proto.NDPOptions) {
	solicited := flags&proto.NAFlagSolicited != 0
	override := flags&proto.NAFlagOverride != 0
	st := NeighbourState(n.state.Load())
	if st == NeighbourIncomplete || st == NeighbourFailed {
		// "If the link layer has addresses and no Target Link-Layer Address option is included, the
		// receiving node SHOULD silently discard the received advertisement."
		if !o.HasTargetLinkAddr || o.TargetLinkAddr.IsMulticast() {
			return
		}
		if solicited {
			if n.confirm(o.TargetLinkAddr, h.now) {
				inc(&h.ctr.resolved)
			}
		} else if n.learnStale(o.TargetLinkAddr) {
			inc(&h.ctr.resolved)
		}
		return
	}
	same := !o.HasTargetLinkAddr || macWord(o.TargetLinkAddr) == n.mac.Load()
	if !override && !same {
		// "If the Override flag is clear and the supplied link-layer address differs ... If the state of
		// the entry is REACHABLE, set it to STALE, but do not update the entry in any other way."
		if st == NeighbourReachable {
			n.state.CompareAndSwap(uint32(NeighbourReachable), uint32(NeighbourStale))
		}
		return
	}
	switch {
	case solicited:
		mac := n.macValue()
		if o.HasTargetLinkAddr && !o.TargetLinkAddr.IsMulticast() {
			mac = o.TargetLinkAddr
		}
		n.confirm(mac, h.now)
	case !same && !o.TargetLinkAddr.IsMulticast():
		n.learnStale(o.TargetLinkAddr)
	}
}

// learnStale records a MAC that no solicitation of ours confirmed: the entry is STALE, used at once and
// probed when traffic uses it. It reports whether the entry was unresolved before.
func (n *neighbour) learnStale(m proto.MAC) bool {
	n.mac.Store(macWord(m))
	n.probes.Store(0)
	for {
		old := NeighbourState(n.state.Load())
		if old == neighRemoved {
			return false
		}
		if n.state.CompareAndSwap(uint32(old), uint32(NeighbourStale)) {
			return old == NeighbourIncomplete || old == NeighbourFailed
		}
	}
}

// learn6 is §7.2.3's "the recipient SHOULD create or update the Neighbor Cache entry for the IP Source
// Address of the solicitation": a new entry or a changed MAC becomes STALE; an entry whose MAC is the same
// keeps its state. Like ARP (arpInput), an entry made this way is one nothing sent to yet, which the
// collector may take back for a next hop that traffic waits for.
func (h *handler) learn6(inIf int32, a naddr, mac proto.MAC) {
	n, _ := h.s.neigh.getOrCreate(nkey{uint32(inIf), a}, h.now, false)
	if n == nil {
		return
	}
	st := NeighbourState(n.state.Load())
	if st == NeighbourIncomplete || st == NeighbourFailed || n.mac.Load() != macWord(mac) {
		if n.learnStale(mac) {
			inc(&h.ctr.resolved)
		}
	}
}

// onLink6 reports whether a is on one of the interface's links: link-local, or inside one of its
// prefixes and not its own address. Only such senders are learnt, as for ARP (onLink).
func (ifc *hiface) onLink6(a *[16]byte) bool {
	if isLinkLocal6(a) {
		return true
	}
	addr := netip.AddrFrom16(*a)
	for _, x := range ifc.v6.addrs {
		if x.prefix.Contains(addr) && x.b != *a {
			return true
		}
	}
	return false
}

// ndpSolicit is ndisc_solicit: a Neighbor Solicitation for target, multicast to its solicited-node group
// while the entry has no MAC, unicast to the cached MAC when it has one (RFC 4861 §7.2.2, §7.3.3).
func (h *handler) ndpSolicit(b *pipeline.Batch, ifc *hiface, n *neighbour, target netip.Addr) {
	src := ifc.source6For(target)
	if !src.IsValid() {
		return // every address of the interface is tentative: no source to ask from yet
	}
	dst := proto.SolicitedNodeMulticast(target)
	mac := proto.MulticastMAC(dst)
	if st := NeighbourState(n.state.Load()); st == NeighbourStale || st == NeighbourReachable {
		dst, mac = target, n.macValue()
	}
	if h.sendNDP(b, ifc, proto.ICMPv6NeighborSolicitation, 0, src, dst, mac, target, true) {
		inc(&h.ctr.nsOut)
	}
}

// sendNDP builds a Neighbor Solicitation or Advertisement in a fresh frame and sends it on ifc; withLL
// adds our link-layer address (never from ::, RFC 4861 §4.3).
func (h *handler) sendNDP(b *pipeline.Batch, ifc *hiface, typ, flags uint8, src, dst netip.Addr, dstMAC proto.MAC, target netip.Addr, withLL bool) bool {
	if !ifc.ok {
		return false
	}
	q, ok := b.Alloc()
	if !ok {
		return false
	}
	n := 24
	if withLL {
		n += 8
	}
	if !q.SetLen(ethLen + proto.IPv6HeaderLen + n) {
		q.Drop(pipeline.DropNoBuffer)
		return false
	}
	d := q.Data()
	proto.EthernetFields{Dst: dstMAC, Src: ifc.mac, EtherType: proto.EtherTypeIPv6}.Encode(d)
	proto.IPv6Fields{NextHeader: proto.ProtoICMPv6, HopLimit: ndpHopLimit, Src: src, Dst: dst, PayloadLen: n}.Encode(d[ethLen:])
	proto.NDPNeighborFields{Type: typ, Flags: flags, Target: target, LinkAddr: ifc.mac, HasLinkAddr: withLL}.Encode(d[ethLen+proto.IPv6HeaderLen:], src, dst)
	q.Send(ifc.port)
	return true
}
