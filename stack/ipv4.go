package stack

import (
	"encoding/binary"
	"net/netip"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
)

// ip_rcv, ip_route_input, ip_forward, ip_local_deliver and ip_output: the IPv4 steps of the path a packet
// takes through one queue's handler (handler.go runs them over the batch).

// DropMulticast: multicast routing is not supported.
var DropMulticast = pipeline.RegisterDropReason("ip_multicast_unsupported")

// optionsOK checks the options are well formed (RFC 791 §3.1) and refuses source routing: RFC 7126 §4.3/4.4
// recommends dropping LSRR and SSRR packets, and not processing them spares the router from rewriting them.
// Other options (record route, timestamp) are forwarded untouched.
func (h *handler) optionsOK(ip proto.IPv4) bool {
	if ip.ValidateOptions() != proto.OK {
		return false
	}
	for o := ip.Options(); len(o) > 0; {
		typ, _, rest, _ := proto.NextIPv4Option(o)
		if typ == proto.IPv4OptLSRR || typ == proto.IPv4OptSSRR {
			return false
		}
		o = rest
	}
	return true
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

// martian reports addresses that are never a valid source or destination of a forwarded packet
// (RFC 1812 §5.3.7, RFC 3927 §7 for link-local): 0/8 "this network", 127/8 loopback, 169.254/16
// link-local, 240/4 reserved (which includes the limited broadcast 255.255.255.255).
func martian(a uint32) bool {
	switch a >> 24 {
	case 0, 127:
		return true
	}
	return a>>16 == 169<<8|254 || a>>28 == 0xf
}

func isMulticast(a uint32) bool { return a>>28 == 0xe }

// directedBroadcast reports whether a is the broadcast address of one of the connected networks.
func (h *handler) directedBroadcast(a uint32) bool {
	for _, bc := range h.bcast {
		if a == bc {
			return true
		}
	}
	return false
}

// route looks up the destination of a validated packet and records the egress in meta and the packet.
func (h *handler) route(p *pipeline.Packet, i uint16) int {
	d := p.Data()
	ip := proto.IPv4(d[ethLen:])
	dst := ip.Dst32()
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
	if proto.Ethernet(d).Dst().IsMulticast() {
		p.Drop(pipeline.DropL2Broadcast)
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
	h.meta[i] = pktMeta{iface: e.iface, nh: naddr4(nh)}
	p.OutPort = ifc.port
	p.NextHop = addrFrom4(nh)
	if h.direct && !forwardable(ip, ifc.mtu) {
		return verdictRefused
	}
	if h.partialFrom(p) {
		h.finishPartial(ip)
	}
	return verdictForward
}

// partialFrom reports whether p came from a port whose peer may leave TCP and UDP checksums partial
// (pipeline.PortInfo.PartialChecksums: a veth with its default TX checksum offload).
func (h *handler) partialFrom(p *pipeline.Packet) bool {
	return int(p.InPort) < len(h.partial) && h.partial[p.InPort]
}

// finishPartial completes a TCP or UDP checksum that the sender left partial, as its device would have
// (proto.FinishPartialChecksum), before the Forward hook sees the packet: the receiver of a frame that
// AF_XDP transmits gets a new skb and verifies every checksum, where the kernel would have passed the
// partial one on with the skb. Fragments are left alone: Linux completes a checksum before it fragments.
func (h *handler) finishPartial(ip proto.IPv4) {
	if !ip.IsFragment() && proto.FinishPartialChecksum(ip.Src(), ip.Dst(), ip.Protocol(), ip.Payload()) {
		inc(&h.ctr.csumCompleted)
	}
}

// partialOK reports whether a TCP or UDP segment for this host whose checksum does not verify carries a
// partial one from a port whose peer is in host memory: accepted, since no wire could have corrupted it,
// as the kernel trusts a CHECKSUM_PARTIAL skb from veth.
func (h *handler) partialOK(p *pipeline.Packet, src, dst netip.Addr, protocol uint8, seg []byte) bool {
	return h.partialFrom(p) && proto.IsPartialChecksum(src, dst, protocol, seg)
}

// forwardable runs forwardable or forwardable6 on a packet the Forward hook let through.
func (h *handler) forwardable(p *pipeline.Packet, i uint16) bool {
	d, mtu := p.Data(), h.ifs[h.meta[i].iface].mtu
	if isIPv6Frame(d) {
		return h.forwardable6(d[ethLen:], mtu)
	}
	return forwardable(d[ethLen:], mtu)
}

// forwardable is ip_forward's checks on a routed packet: if the TTL allows forwarding and the packet fits
// the egress MTU (or may be fragmented), it decrements the TTL and returns true; otherwise forwardError
// says why.
func forwardable(ip proto.IPv4, mtu int) bool {
	// RFC 1812 §5.3.1: "a router MUST NOT ... forward a packet with a TTL of zero or one".
	// RFC 1812 §5.2.6 / RFC 1191 §4: a datagram with DF set that does not fit the next hop's MTU is discarded.
	if len(ip) < proto.IPv4MinHeaderLen || ip.TTL() <= 1 || (len(ip) > mtu && ip.DontFragment()) {
		return false
	}
	// RFC 1812 §5.3.1: decrement by one, checksum updated incrementally (RFC 1624).
	ip.DecrementTTL()
	return true
}

// forwardError drops a packet forwardable refused, with the ICMP error its check calls for: Time Exceeded
// (quoting the header as received, TTL not decremented), or Destination Unreachable, Fragmentation Needed
// carrying the next-hop MTU.
func (h *handler) forwardError(b *pipeline.Batch, p *pipeline.Packet, i uint16, out []uint16) []uint16 {
	if isIPv6Frame(p.Data()) {
		return h.forwardError6(b, p, i, out)
	}
	if proto.IPv4(p.Data()[ethLen:]).TTL() <= 1 {
		out = h.icmpError(b, p, proto.ICMPv4TimeExceeded, proto.ICMPv4TTLExceeded, 0, out)
		p.Drop(pipeline.DropTTLExpired)
		return out
	}
	mtu := h.ifs[h.meta[i].iface].mtu
	out = h.icmpError(b, p, proto.ICMPv4DestUnreachable, proto.ICMPv4FragNeeded, uint16(mtu), out)
	p.Drop(pipeline.DropFragNeeded)
	return out
}

// deliver is ip_local_deliver: ICMP and UDP for this host. Fragments are not reassembled.
func (h *handler) deliver(b *pipeline.Batch, p *pipeline.Packet, i uint16, out []uint16) []uint16 {
	d := p.Data()
	if isIPv6Frame(d) {
		return h.deliver6(b, p, i, out)
	}
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
		// keeps no DF) or a hook grew the packet. IPv6 is never fragmented on the way (RFC 8200 §5), and
		// what the stack builds fits.
		if d := p.Data(); isIPv6Frame(d) || proto.IPv4(d[ethLen:]).DontFragment() {
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

func (h *handler) setEgress(q *pipeline.Packet, qi uint16, e *routeEntry, dst uint32) {
	nh := e.gateway
	if nh == 0 {
		nh = dst
	}
	h.meta[qi] = pktMeta{iface: e.iface, nh: naddr4(nh)}
	q.OutPort = h.ifs[e.iface].port
	q.NextHop = addrFrom4(nh)
	q.L3 = ethLen
	q.L4 = ethLen + proto.IPv4MinHeaderLen
}

// ipv4Rcv is ip_rcv: the IPv4 header validation of RFC 1812 §5.2.2 and the martian checks of §5.3.7. It
// returns true for a valid packet, with the frame trimmed to Total Length and L3/L4 set.
func (h *handler) ipv4Rcv(p *pipeline.Packet, ipb []byte) bool {
	// RFC 1812 §5.2.2: the packet length must be at least 20, the checksum must verify, the version must be
	// 4, the IHL at least 5 and the total length at least the header length; otherwise the packet MUST be
	// silently discarded.
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
			if proto.IPv4(ipb).HeaderLen() > len(ipb) {
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
	src, dst := ip.Src32(), ip.Dst32()
	// RFC 1812 §5.3.7 martians; the limited broadcast as a destination is local. 0.0.0.0 as a source is
	// taken only towards the limited broadcast (a DHCP client's DISCOVER, RFC 2131 §4.1; Linux's
	// ip_route_input_slow likewise), where nothing answers it - so no ICMP or TCP reply ever goes to
	// 0.0.0.0. A directed broadcast address of a connected network names no host (RFC 1812 §5.3.7: "a
	// router SHOULD NOT forward ... a packet whose source is an IP broadcast address"; Linux's
	// fib_validate_source refuses it as a martian source too).
	if src == 0 {
		if dst != limitedB {
			p.Drop(pipeline.DropMartianSource)
			return false
		}
	} else if martian(src) || isMulticast(src) || h.directedBroadcast(src) {
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
