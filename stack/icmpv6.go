package stack

import (
	"net/netip"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
)

// icmp6_send and icmpv6_rcv: ICMPv6 errors about received packets (RFC 4443 §2.4, §3), rate limited, and
// echo (§4). Neighbour Discovery's messages are handed to ndp.go.

// DropNDPRedirect: a Redirect; a router does not take them (RFC 4861 §8: redirects are for hosts).
var DropNDPRedirect = pipeline.RegisterDropReason("ndp_redirect_ignored")

// icmp6ErrorMax is the largest ICMPv6 error: RFC 4443 §2.4 (c): "as much of invoking packet as possible
// without the ICMPv6 packet exceeding the minimum IPv6 MTU" (1280).
const icmp6ErrorMax = minMTU6

// icmp6Error is icmp6_send: an ICMPv6 error about p (which must still hold its Ethernet and IPv6 headers
// as received), appended to out for the Output hook. It sends nothing where RFC 4443 §2.4 (e) says "an
// ICMPv6 error message MUST NOT be originated as a result of receiving":
//   - an ICMPv6 error message or a Redirect (e.1, e.2),
//   - a packet to a multicast address, or sent as link-layer multicast or broadcast (e.3-e.5), except a
//     Packet Too Big and a Parameter Problem code 2 about an option whose type asks for one even then
//     (icmp6ErrorMc with anyMc),
//   - a packet whose source does not identify a single node: unspecified, multicast (e.6).
//
// Errors are rate limited (§2.4 (f)) by a bucket of their own, with ICMPv4's rate and burst.
func (h *handler) icmp6Error(b *pipeline.Batch, p *pipeline.Packet, typ, code uint8, param uint32, out []uint16) []uint16 {
	return h.icmp6ErrorMc(b, p, typ, code, param, false, out)
}

func (h *handler) icmp6ErrorMc(b *pipeline.Batch, p *pipeline.Packet, typ, code uint8, param uint32, anyMc bool, out []uint16) []uint16 {
	d := p.Data()
	if !isIPv6Frame(d) || len(d) < ethLen+proto.IPv6HeaderLen {
		return out
	}
	ip := proto.IPv6(d[ethLen:])
	src, dst := ip.Src16(), ip.Dst16()
	if typ != proto.ICMPv6PacketTooBig && !anyMc && (isMulticast6(&dst) || proto.Ethernet(d).Dst().IsMulticast()) {
		return out
	}
	if isUnspecified6(&src) || isMulticast6(&src) || isLoopback6(&src) || isMapped6(&src) {
		return out
	}
	u, err := ip.UpperLayer()
	if err != proto.OK {
		return out // a chain we cannot walk may hide an ICMPv6 error: say nothing
	}
	if u.Protocol == proto.ProtoICMPv6 && u.FragmentOffset == 0 {
		m, err := proto.ParseICMPv6(ip[u.Offset:])
		if err != proto.OK || m.IsError() || m.Type() == proto.ICMPv6Redirect {
			return out
		}
	}
	inIf := int32(-1)
	if int(p.InPort) < len(h.portIface) {
		inIf = h.portIface[p.InPort]
	}
	iface, gw, ok := h.route6Back(&src, inIf)
	if !ok {
		return out
	}
	if !h.s.icmp6.allow(h.now) {
		inc(&h.ctr.icmp6Limited)
		return out
	}
	ifc := &h.ifs[iface]
	dstA := netip.AddrFrom16(src)
	// RFC 4443 §2.2: the source is the destination of the invoking packet if that was one of our
	// unicast addresses; otherwise an address of the interface the error leaves by.
	var srcA netip.Addr
	if !isMulticast6(&dst) && h.localUsable(&dst) {
		srcA = netip.AddrFrom16(dst)
	} else if srcA = ifc.source6For(dstA); !srcA.IsValid() && !isLinkLocal6(&src) {
		srcA = h.routerID6()
	}
	if !srcA.IsValid() {
		return out
	}
	quote := min(len(ip), icmp6ErrorMax-proto.IPv6HeaderLen-proto.ICMPv6HeaderLen)
	q, ok := b.Alloc()
	if !ok {
		return out
	}
	qi := uint16(b.N - 1)
	if !q.SetLen(ethLen + proto.IPv6HeaderLen + proto.ICMPv6HeaderLen + quote) {
		q.Drop(pipeline.DropNoBuffer)
		return out
	}
	qd := q.Data()
	proto.EthernetFields{EtherType: proto.EtherTypeIPv6}.Encode(qd)
	proto.IPv6Fields{NextHeader: proto.ProtoICMPv6, HopLimit: defaultTTL, Src: srcA, Dst: dstA,
		PayloadLen: proto.ICMPv6HeaderLen + quote}.Encode(qd[ethLen:])
	proto.ICMPv6Fields{Type: typ, Code: code, MTU: param, Pointer: param}.Encode(qd[ethLen+proto.IPv6HeaderLen:], ip[:quote], srcA, dstA)
	h.setEgress6(q, qi, iface, gw, dstA)
	inc(&h.ctr.icmp6ErrOut)
	return append(out, qi)
}

// icmp6Input is icmpv6_rcv: it checks the message (RFC 4443 §2.3: the checksum over the pseudo header),
// answers echo requests to our unicast addresses in place (§4.2: the reply carries the request's
// identifier, sequence and data), hands Neighbour Discovery to ndpInput and consumes the rest (§2.4 (b):
// unknown informational messages are discarded; errors would go to the upper layer, which takes none yet).
func (h *handler) icmp6Input(b *pipeline.Batch, p *pipeline.Packet, i uint16, out []uint16) []uint16 {
	d := p.Data()
	ip := proto.IPv6(d[ethLen:])
	m, err := proto.ParseICMPv6(d[p.L4:])
	if err != proto.OK || !m.ChecksumValid(ip.Src(), ip.Dst()) {
		p.Drop(pipeline.DropICMPMalformed)
		return out
	}
	switch m.Type() {
	case proto.ICMPv6EchoRequest:
	case proto.ICMPv6NeighborSolicitation, proto.ICMPv6NeighborAdvertisement:
		return h.ndpInput(b, p, i, ip, m, out)
	case proto.ICMPv6Redirect:
		p.Drop(DropNDPRedirect)
		return out
	case proto.ICMPv6PacketTooBig:
		h.tcpPacketTooBig(m.Payload(), m.MTU())
		inc(&h.ctr.delivered)
		p.Consume()
		return out
	default:
		inc(&h.ctr.delivered)
		p.Consume()
		return out
	}
	inc(&h.ctr.delivered)
	src, dst := ip.Src16(), ip.Dst16()
	// RFC 4443 §4.2 allows answering an echo to a multicast address; it is not, against amplification, as
	// for IPv4's broadcasts.
	if isMulticast6(&dst) || proto.Ethernet(d).Dst().IsMulticast() {
		p.Drop(DropEchoBroadcast)
		return out
	}
	iface, gw, ok := h.route6Back(&src, h.meta[i].iface)
	if !ok {
		p.Drop(pipeline.DropNoRoute)
		return out
	}
	// Extension headers are not echoed: move the Ethernet and fixed IPv6 headers up to the message.
	if ext := int(p.L4) - ethLen - proto.IPv6HeaderLen; ext > 0 {
		copy(d[ext:], d[:ethLen+proto.IPv6HeaderLen])
		p.Pull(ext)
		d = p.Data()
		ip = proto.IPv6(d[ethLen:])
		ip.SetNextHeader(proto.ProtoICMPv6)
		ip.SetPayloadLength(uint16(len(ip) - proto.IPv6HeaderLen))
	}
	ip.SetSrc(netip.AddrFrom16(dst))
	ip.SetDst(netip.AddrFrom16(src))
	ip.SetHopLimit(defaultTTL)
	// Swapping the addresses keeps the pseudo header's sum: only the type changes the checksum.
	proto.ICMPv6(d[ethLen+proto.IPv6HeaderLen:]).SetType(proto.ICMPv6EchoReply)
	h.setEgress6(p, i, iface, gw, netip.AddrFrom16(src))
	inc(&h.ctr.echo6Out)
	return append(out, i)
}
