package stack

import (
	"encoding/binary"
	"net/netip"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
)

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
	if len(d) < ethLen+proto.IPv4MinHeaderLen || d[0]&1 != 0 {
		return out
	}
	ip := d[ethLen:]
	hl := int(ip[0]&0xf) * 4
	src := binary.BigEndian.Uint32(ip[12:])
	dst := binary.BigEndian.Uint32(ip[16:])
	if dst == limitedB || isMulticast(dst) || isMulticast(src) || martian(src) ||
		binary.BigEndian.Uint16(ip[6:])&0x1fff != 0 {
		return out
	}
	if ip[9] == proto.ProtoICMP && (len(ip) <= hl || proto.ICMPv4IsError(ip[hl])) {
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

func (h *handler) setEgress(q *pipeline.Packet, qi uint16, e *routeEntry, dst uint32) {
	nh := e.gateway
	if nh == 0 {
		nh = dst
	}
	h.meta[qi] = pktMeta{iface: e.iface, nh: nh}
	q.OutPort = h.ifs[e.iface].port
	q.NextHop = addrFrom4(nh)
	q.L3 = ethLen
	q.L4 = ethLen + proto.IPv4MinHeaderLen
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

// deliver is ip_local_deliver: ICMP and UDP for this host. Fragments are not reassembled.
func (h *handler) deliver(b *pipeline.Batch, p *pipeline.Packet, i uint16, out []uint16) []uint16 {
	d := p.Data()
	ip := proto.IPv4(d[ethLen:])
	if ip.IsFragment() {
		p.Drop(pipeline.DropFragment)
		return out
	}
	switch ip.Protocol() {
	case proto.ProtoICMP:
		return h.icmpInput(b, p, i, out)
	case proto.ProtoUDP:
		return h.udpInput(b, p, out)
	case proto.ProtoTCP:
		// Closed ports are answered by the engine with RST (RFC 9293 §3.10.7.1), not with ICMP.
		return h.tcpInput(b, p, out)
	default:
		out = h.icmpError(b, p, proto.ICMPv4DestUnreachable, proto.ICMPv4ProtoUnreachable, 0, out)
		p.Drop(pipeline.DropUnknownProtocol)
	}
	return out
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
		p.Consume()
		return out
	}
	dst := binary.BigEndian.Uint32(ip[16:])
	// RFC 1122 §3.2.2.6: "An ICMP Echo Request destined to an IP broadcast or IP multicast address MAY be
	// silently discarded" - and is, against smurf amplification.
	if d[0]&1 != 0 || dst == limitedB {
		p.Drop(DropEchoBroadcast)
		return out
	}
	if e := h.snap.lookup(dst); e == nil || e.typ != Local {
		p.Drop(DropEchoBroadcast)
		return out
	}
	src := binary.BigEndian.Uint32(ip[12:])
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
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(p.Len()-ethLen))
	}
	ipb := ip[:proto.IPv4MinHeaderLen]
	binary.BigEndian.PutUint32(ipb[12:], dst)
	binary.BigEndian.PutUint32(ipb[16:], src)
	ipb[8] = defaultTTL
	binary.BigEndian.PutUint16(ipb[6:], 0)
	ipb[10], ipb[11] = 0, 0
	binary.BigEndian.PutUint16(ipb[10:], proto.Checksum(ipb))
	proto.ICMPv4(d[ethLen+proto.IPv4MinHeaderLen:]).SetType(proto.ICMPv4EchoReply)
	h.setEgress(p, i, back, src)
	inc(&h.ctr.echoOut)
	return append(out, i)
}

// udpInput delivers a datagram to its socket, or answers port unreachable (RFC 1122 §4.1.3.1).
func (h *handler) udpInput(b *pipeline.Batch, p *pipeline.Packet, out []uint16) []uint16 {
	d := p.Data()
	ip := proto.IPv4(d[ethLen:])
	u, err := proto.ParseUDP(ip.Payload())
	src, dst := ip.Src(), ip.Dst()
	if err != proto.OK || !u.ChecksumValid(src, dst) {
		p.Drop(pipeline.DropUDPMalformed)
		return out
	}
	c := h.s.udp.lookup(dst, u.DstPort())
	if c == nil {
		out = h.icmpError(b, p, proto.ICMPv4DestUnreachable, proto.ICMPv4PortUnreachable, 0, out)
		p.Drop(pipeline.DropUDPNoSocket)
		return out
	}
	if !c.deliver(u.Payload(), netip.AddrPortFrom(src, u.SrcPort()), netip.AddrPortFrom(dst, u.DstPort())) {
		p.Drop(pipeline.DropSocketQueueFull)
		return out
	}
	inc(&h.ctr.udpIn)
	inc(&h.ctr.delivered)
	p.Consume()
	return out
}

// fragment splits p per RFC 791 §3.2 ("Fragmentation"): every fragment but the last carries a multiple of
// 8 data octets, the first keeps all options, the others only those with the copied flag (RFC 791 §3.1),
// MF is set on all but the last (or on all if the original had MF), offsets add to the original offset.
// p becomes the first fragment; the others are fresh frames at b.Pkts[first:last].
func (h *handler) fragment(b *pipeline.Batch, p *pipeline.Packet, i uint16, mtu int) (first, last int, ok bool) {
	d := p.Data()
	ip := proto.IPv4(d[ethLen:])
	hl := ip.HeaderLen()
	payload := ip[hl:]
	var hdr2 [proto.IPv4MaxHeaderLen]byte
	copy(hdr2[:], ip[:proto.IPv4MinHeaderLen])
	hl2 := proto.IPv4MinHeaderLen
	for o := ip.Options(); len(o) > 0; {
		if o[0] == 0 {
			break
		}
		if o[0] == 1 {
			o = o[1:]
			continue
		}
		if o[0]&0x80 != 0 {
			hl2 += copy(hdr2[hl2:], o[:o[1]])
		}
		o = o[o[1]:]
	}
	for hl2%4 != 0 {
		hdr2[hl2] = 0
		hl2++
	}
	per1 := (mtu - hl) &^ 7
	per2 := (mtu - hl2) &^ 7
	if per1 <= 0 || per2 <= 0 {
		p.Drop(pipeline.DropFragmentFailed)
		return 0, 0, false
	}
	need := (len(payload) - per1 + per2 - 1) / per2
	if b.Room() < need {
		p.Drop(pipeline.DropFragmentFailed)
		return 0, 0, false
	}
	origOff := int(ip.FragmentOffset())
	origMF := ip.MoreFragments()
	df := ip.DontFragment()
	first = b.N
	for off := per1; off < len(payload); off += per2 {
		q, ok := b.Alloc()
		n := min(per2, len(payload)-off)
		if !ok || !q.SetLen(ethLen+hl2+n) {
			if ok {
				q.Drop(pipeline.DropFragmentFailed)
			}
			for j := first; j < b.N; j++ {
				b.Pkts[j].Drop(pipeline.DropFragmentFailed)
			}
			p.Drop(pipeline.DropFragmentFailed)
			return 0, 0, false
		}
		qd := q.Data()
		copy(qd, d[:ethLen])
		fh := proto.IPv4(qd[ethLen:])
		copy(fh, hdr2[:hl2])
		fh[0] = 0x40 | byte(hl2/4)
		binary.BigEndian.PutUint16(fh[2:], uint16(hl2+n))
		v := uint16(origOff+off) / 8
		if off+n < len(payload) || origMF {
			v |= 0x2000
		}
		if df {
			v |= 0x4000
		}
		binary.BigEndian.PutUint16(fh[6:], v)
		copy(fh[hl2:], payload[off:off+n])
		fh[10], fh[11] = 0, 0
		binary.BigEndian.PutUint16(fh[10:], proto.Checksum(fh[:hl2]))
		h.meta[b.N-1] = h.meta[i]
		q.OutPort, q.NextHop, q.L3, q.L4 = p.OutPort, p.NextHop, ethLen, int16(ethLen+hl2)
	}
	last = b.N
	binary.BigEndian.PutUint16(ip[2:], uint16(hl+per1))
	binary.BigEndian.PutUint16(ip[6:], binary.BigEndian.Uint16(ip[6:])|0x2000)
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], proto.Checksum(ip[:hl]))
	p.SetLen(ethLen + hl + per1)
	inc(&h.ctr.fragmented)
	add(&h.ctr.fragsOut, uint64(last-first+1))
	return first, last, true
}
