package stack

import (
	"net/netip"
	"sync/atomic"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
)

// icmp_send and icmp_rcv: ICMP errors about received packets (RFC 1812 §4.3.2), rate limited, and echo.

// DropEchoBroadcast: an echo request to a broadcast address (RFC 1122 §3.2.2.6, against smurf attacks).
var DropEchoBroadcast = pipeline.RegisterDropReason("icmp_echo_broadcast")

// icmpErrorMax is the largest ICMP error datagram: RFC 1812 §4.3.2.3 "The ICMP datagram SHOULD contain as
// much of the original datagram as possible without the length of the ICMP datagram exceeding 576 bytes."
const icmpErrorMax = 576

// icmpError generates an ICMP error about p (which must still hold the Ethernet and IP headers as
// received) and appends it to out for the Output hook. It generates nothing where RFC 1812 §4.3.2.7 says
// "an ICMP error message MUST NOT be sent as the result of receiving":
//   - an ICMP error message,
//   - a packet destined to an IP broadcast or multicast address,
//   - a packet sent as a link-layer broadcast or multicast,
//   - a non-initial fragment,
//   - a packet whose source does not define a single host (0/8, 127/8, class D/E, a broadcast).
//
// Errors are also rate limited (§4.3.2.8), across the whole stack.
func (h *handler) icmpError(b *pipeline.Batch, p *pipeline.Packet, typ, code uint8, mtu uint16, out []uint16) []uint16 {
	d := p.Data()
	if len(d) < ethLen+proto.IPv4MinHeaderLen || proto.Ethernet(d).Dst().IsMulticast() {
		return out
	}
	ip := proto.IPv4(d[ethLen:])
	hl := ip.HeaderLen()
	src, dst := ip.Src32(), ip.Dst32()
	if dst == limitedB || isMulticast(dst) || isMulticast(src) || martian(src) || ip.FragmentOffset() != 0 {
		return out
	}
	if ip.Protocol() == proto.ProtoICMP && (len(ip) <= hl || proto.ICMPv4IsError(ip.Payload()[0])) {
		return out
	}
	if e := h.snap.lookup(dst); e != nil && e.typ == Broadcast {
		return out
	}
	back := h.snap.lookup(src)
	// A packet from one of our own addresses (or a broadcast one) gets no ICMP: we would be telling ourselves.
	if back == nil || back.typ != Unicast || !h.ifs[back.iface].ok {
		return out
	}
	if !h.s.icmp.allow(h.now) {
		inc(&h.ctr.icmpLimited)
		return out
	}
	ifc := &h.ifs[back.iface]
	dstA := addrFrom4(src)
	// RFC 1812 §4.3.2.4: the source MUST be an address of the interface the ICMP message leaves by (the
	// router-id when that interface has none).
	srcA := ifc.sourceFor(dstA)
	if !srcA.IsValid() {
		srcA = h.routerID()
		if !srcA.IsValid() {
			return out
		}
	}
	quote := min(len(ip), icmpErrorMax-proto.IPv4MinHeaderLen-proto.ICMPv4HeaderLen)
	q, ok := b.Alloc()
	if !ok {
		return out
	}
	qi := uint16(b.N - 1)
	if !q.SetLen(ethLen + proto.IPv4MinHeaderLen + proto.ICMPv4HeaderLen + quote) {
		q.Drop(pipeline.DropNoBuffer)
		return out
	}
	qd := q.Data()
	proto.EthernetFields{EtherType: proto.EtherTypeIPv4}.Encode(qd)
	h.ipID++
	proto.IPv4Fields{ID: h.ipID, TTL: defaultTTL, Protocol: proto.ProtoICMP, Src: srcA, Dst: dstA,
		PayloadLen: proto.ICMPv4HeaderLen + quote}.Encode(qd[ethLen:])
	proto.ICMPv4Fields{Type: typ, Code: code, MTU: mtu}.Encode(qd[ethLen+proto.IPv4MinHeaderLen:], ip[:quote])
	h.setEgress(q, qi, back, src)
	inc(&h.ctr.icmpErrOut)
	return append(out, qi)
}

// routerID is the address used when an interface has none: the first configured address.
func (h *handler) routerID() netip.Addr {
	for i := range h.ifs {
		if len(h.ifs[i].addrs) > 0 {
			return h.ifs[i].addrs[0].Addr()
		}
	}
	return netip.Addr{}
}

// icmpInput answers echo requests in place (RFC 1122 §3.2.2.6: the reply carries the request's data,
// identifier and sequence) and consumes the other messages.
func (h *handler) icmpInput(b *pipeline.Batch, p *pipeline.Packet, i uint16, out []uint16) []uint16 {
	d := p.Data()
	ip := proto.IPv4(d[ethLen:])
	hl := ip.HeaderLen()
	m, err := proto.ParseICMPv4(ip[hl:])
	if err != proto.OK || !m.ChecksumValid() {
		p.Drop(pipeline.DropICMPMalformed)
		return out
	}
	inc(&h.ctr.delivered)
	if m.Type() != proto.ICMPv4EchoRequest {
		if m.Type() == proto.ICMPv4DestUnreachable && m.Code() == proto.ICMPv4FragNeeded {
			h.tcpFragNeeded(m.Payload(), m.NextHopMTU()) // RFC 1191 path MTU discovery
		}
		p.Consume()
		return out
	}
	dst := ip.Dst32()
	// RFC 1122 §3.2.2.6: "An ICMP Echo Request destined to an IP broadcast or IP multicast address MAY be
	// silently discarded" - and is, against smurf amplification.
	if proto.Ethernet(d).Dst().IsMulticast() || dst == limitedB {
		p.Drop(DropEchoBroadcast)
		return out
	}
	if e := h.snap.lookup(dst); e == nil || e.typ != Local {
		p.Drop(DropEchoBroadcast)
		return out
	}
	src := ip.Src32()
	back := h.snap.lookup(src)
	if back == nil || back.typ != Unicast || !h.ifs[back.iface].ok {
		p.Drop(pipeline.DropNoRoute)
		return out
	}
	// Options are not echoed: move the Ethernet header and fixed IP header over them.
	if hl > proto.IPv4MinHeaderLen {
		copy(d[hl-proto.IPv4MinHeaderLen:], d[:ethLen+proto.IPv4MinHeaderLen])
		p.Pull(hl - proto.IPv4MinHeaderLen)
		d = p.Data()
		ip = proto.IPv4(d[ethLen:])
		ip.SetHeaderLen(proto.IPv4MinHeaderLen)
		ip.SetTotalLength(uint16(p.Len() - ethLen))
	}
	ip.SetSrc(ip.Dst())
	ip.SetDst(addrFrom4(src))
	ip.SetTTL(defaultTTL)
	ip.SetFlagsFragment(false, false, 0)
	ip.SetChecksum(ip.ComputeChecksum())
	proto.ICMPv4(d[ethLen+proto.IPv4MinHeaderLen:]).SetType(proto.ICMPv4EchoReply)
	h.setEgress(p, i, back, src)
	inc(&h.ctr.echoOut)
	return append(out, i)
}

// rateLimiter is a lock-free GCRA token bucket (a virtual scheduling "theoretical arrival time"): a message
// is allowed when tat - now <= tolerance, which is burst messages at rate per second.
type rateLimiter struct {
	interval, tolerance int64
	tat                 atomic.Int64
}

func (r *rateLimiter) init(rate, burst int) {
	if rate < 0 {
		return // unlimited: interval 0
	}
	r.interval = int64(1e9) / int64(rate)
	r.tolerance = int64(burst-1) * r.interval
}

func (r *rateLimiter) allow(now int64) bool {
	if r.interval == 0 {
		return true
	}
	for {
		old := r.tat.Load()
		t := max(old, now)
		if t-now > r.tolerance {
			return false
		}
		if r.tat.CompareAndSwap(old, t+r.interval) {
			return true
		}
	}
}
