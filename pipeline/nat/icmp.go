package nat

import (
	"encoding/binary"

	"github.com/xdpnet/xdpnet/pipeline/conntrack"
	"github.com/xdpnet/xdpnet/proto"
)

// icmpError translates an ICMP error whose quoted packet belongs to a tracked connection (RFC 5508 §4.2,
// REQ-4: a NAT MUST translate the embedded IP header and transport header of ICMP errors, and §4.3 the
// checksums that cover them). The quote is a packet of the connection going the other way, as it was when
// the error's sender saw it: inverted, its tuple is the tuple of the error's own direction d. At nat-dst
// (src false) the error's destination and the quote's source become what packets of direction d leave
// with; at nat-src, its source and the quote's destination. The quoted IP header checksum, the quoted
// transport checksum (when the quote holds it) and the ICMP checksum are updated incrementally. It reports
// whether it changed anything; an error about nothing tracked is left as it is.
func (n *NAT) icmpError(v *view, src bool, now int64) bool {
	m := v.l4
	inner := m[proto.ICMPv4HeaderLen:]
	// RFC 792: the quote is the internet header plus at least 64 bits of the datagram's data.
	if len(inner) < proto.IPv4MinHeaderLen || inner[0]>>4 != 4 {
		return false
	}
	ihl := int(inner[0]&0xf) * 4
	if ihl < proto.IPv4MinHeaderLen || len(inner) < ihl+8 {
		return false
	}
	iip := proto.IPv4(inner)
	if iip.FragmentOffset() != 0 {
		return false // no ports to find the connection by
	}
	l4 := inner[ihl:]
	it := conntrack.Tuple{Src: iip.Src32(), Dst: iip.Dst32(), Proto: iip.Protocol()}
	switch it.Proto {
	case proto.ProtoTCP, proto.ProtoUDP:
		it.SrcPort = binary.BigEndian.Uint16(l4[l4SrcPort:])
		it.DstPort = binary.BigEndian.Uint16(l4[l4DstPort:])
	case proto.ProtoICMP:
		switch l4[0] {
		case proto.ICMPv4EchoRequest:
			it.SrcPort = binary.BigEndian.Uint16(l4[icmpEchoID:])
		case proto.ICMPv4EchoReply:
			it.DstPort = binary.BigEndian.Uint16(l4[icmpEchoID:])
		default:
			return false // RFC 1812 §4.3.2.7: no error is sent about an error
		}
	}
	c, ok := n.table.Lookup(it.Invert(), now)
	if !ok {
		return false
	}
	td := c.Tuple(c.Dir)
	w := c.Tuple(1 - c.Dir).Invert()
	var addr uint32
	var port uint16
	if src {
		if w.Src == td.Src && w.SrcPort == td.SrcPort {
			return false
		}
		addr, port = w.Src, w.SrcPort
	} else {
		if w.Dst == td.Dst && w.DstPort == td.DstPort {
			return false
		}
		addr, port = w.Dst, w.DstPort
	}
	// Everything rewritten in the quote lies in its header and the first 20 bytes of its transport
	// header; the ICMP checksum follows the change of that region's sum (RFC 1624 eqn. 3, for a sum of
	// words as for one word).
	region := inner[:min(len(inner), ihl+proto.TCPMinHeaderLen)&^1]
	before := proto.Fold(proto.Sum(region, 0))
	rewrite(v.ip, nil, src, addr, 0)
	rewrite(iip, l4, !src, addr, port)
	after := proto.Fold(proto.Sum(region, 0))
	cs := binary.BigEndian.Uint16(m[icmpCsum:])
	binary.BigEndian.PutUint16(m[icmpCsum:], proto.UpdateChecksum16(cs, before, after))
	return true
}
