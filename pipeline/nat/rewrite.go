package nat

import (
	"encoding/binary"
	"net/netip"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/pipeline/conntrack"
	"github.com/xdpnet/xdpnet/proto"
)

// Offsets of the transport fields a translation touches, under their RFCs' header diagrams (proto has the
// diagrams; its views need whole headers, and a quoted packet inside an ICMP error or a first fragment may
// carry only eight bytes of one).
const (
	l4SrcPort   = 0  // TCP and UDP source port (RFC 9293 §3.1, RFC 768)
	l4DstPort   = 2  // destination port
	udpChecksum = 6  // RFC 768
	tcpFlags    = 13 // RFC 9293 §3.1
	tcpChecksum = 16
	icmpCsum    = 2 // RFC 792
	icmpEchoID  = 4 // the identifier of echo and echo reply
)

// kind classifies a packet for the stages.
type kind uint8

const (
	kTrack     kind = iota // TCP, UDP, ICMP echo, or another protocol (tracked by addresses alone)
	kEchoReply             // an ICMP echo reply: only an existing connection may carry it
	kICMPError             // an ICMP error quoting a packet
	kICMPOther             // an ICMP query other than echo: not translated
	kFragment              // a fragment after the first: no transport header
	kMalformed             // a transport header too short for its ports
)

// view is a parsed IPv4 packet of the batch.
type view struct {
	ip   proto.IPv4
	l4   []byte // the transport header and what follows; nil for a fragment after the first
	t    conntrack.Tuple
	tcpf proto.TCPFlags
	kind kind
	// first: a first fragment (MF set, offset 0), whose translation the fragment cache remembers.
	first bool
}

// parse reads the IPv4 packet at p.L3 (the stack has validated the header and cut the frame to Total
// Length). It returns false for anything else (IPv6, ARP), which the stages leave alone.
func parse(p *pipeline.Packet, v *view) bool {
	if p.L3 < 0 {
		return false
	}
	d := p.Data()
	if int(p.L3) >= len(d) || d[p.L3]>>4 != 4 {
		return false
	}
	ip, err := proto.ParseIPv4(d[p.L3:])
	if err != proto.OK {
		return false
	}
	*v = view{ip: ip}
	v.t = conntrack.Tuple{Src: ip.Src32(), Dst: ip.Dst32(), Proto: ip.Protocol()}
	if ip.FragmentOffset() != 0 {
		v.kind = kFragment
		return true
	}
	v.first = ip.MoreFragments()
	l4 := ip.Payload()
	v.l4 = l4
	switch v.t.Proto {
	case proto.ProtoTCP:
		// RFC 1858 §3: a first fragment too short to hold the TCP flags is the tiny-fragment attack.
		if len(l4) < proto.TCPMinHeaderLen {
			v.kind = kMalformed
			return true
		}
		v.tcpf = proto.TCPFlags(l4[tcpFlags])
		fallthrough
	case proto.ProtoUDP:
		if len(l4) < proto.UDPHeaderLen {
			v.kind = kMalformed
			return true
		}
		v.t.SrcPort = binary.BigEndian.Uint16(l4[l4SrcPort:])
		v.t.DstPort = binary.BigEndian.Uint16(l4[l4DstPort:])
	case proto.ProtoICMP:
		if len(l4) < proto.ICMPv4HeaderLen {
			v.kind = kMalformed
			return true
		}
		switch typ := l4[0]; {
		case typ == proto.ICMPv4EchoRequest:
			v.t.SrcPort = binary.BigEndian.Uint16(l4[icmpEchoID:])
		case typ == proto.ICMPv4EchoReply:
			v.t.DstPort = binary.BigEndian.Uint16(l4[icmpEchoID:])
			v.kind = kEchoReply
		case proto.ICMPv4IsError(typ):
			v.kind = kICMPError
		default:
			v.kind = kICMPOther
		}
	}
	return true
}

// rewrite sets the source (src) or destination address and port of ip, whose transport header (possibly
// cut short, as in an ICMP error's quote) is l4, and keeps every checksum it touches right: the IPv4
// header's, and the TCP or UDP checksum over the pseudo header and the port (RFC 1624 incremental
// updates; a UDP checksum of 0, "none" (RFC 768), stays 0), or the ICMP checksum over an echo identifier.
// l4 nil (a fragment after the first) rewrites the address alone. A field l4 is too short to hold is
// not written.
func rewrite(ip proto.IPv4, l4 []byte, src bool, addr uint32, port uint16) {
	old := ip.Dst32()
	if src {
		old = ip.Src32()
	}
	oa, na := addrOf(old), addrOf(addr)
	if old != addr {
		if src {
			ip.SetSrc(na)
		} else {
			ip.SetDst(na)
		}
	}
	if l4 == nil {
		return
	}
	portOff := l4DstPort
	if src {
		portOff = l4SrcPort
	}
	switch ip.Protocol() {
	case proto.ProtoTCP:
		if len(l4) < l4DstPort+2 {
			return
		}
		oldPort := binary.BigEndian.Uint16(l4[portOff:])
		binary.BigEndian.PutUint16(l4[portOff:], port)
		if len(l4) >= tcpChecksum+2 {
			c := binary.BigEndian.Uint16(l4[tcpChecksum:])
			c = proto.UpdateChecksumAddr(c, oa, na)
			c = proto.UpdateChecksum16(c, oldPort, port)
			binary.BigEndian.PutUint16(l4[tcpChecksum:], c)
		}
	case proto.ProtoUDP:
		if len(l4) < proto.UDPHeaderLen {
			return
		}
		oldPort := binary.BigEndian.Uint16(l4[portOff:])
		binary.BigEndian.PutUint16(l4[portOff:], port)
		if c := binary.BigEndian.Uint16(l4[udpChecksum:]); c != 0 {
			c = proto.UpdateChecksumAddr(c, oa, na)
			c = proto.UpdateChecksum16(c, oldPort, port)
			if c == 0 {
				c = 0xffff // RFC 768: a computed 0 is sent as all ones
			}
			binary.BigEndian.PutUint16(l4[udpChecksum:], c)
		}
	case proto.ProtoICMP:
		// The identifier is the source "port" of a request and the destination "port" of a reply.
		if len(l4) < proto.ICMPv4HeaderLen || (src != (l4[0] == proto.ICMPv4EchoRequest)) {
			return
		}
		if l4[0] != proto.ICMPv4EchoRequest && l4[0] != proto.ICMPv4EchoReply {
			return
		}
		oldID := binary.BigEndian.Uint16(l4[icmpEchoID:])
		binary.BigEndian.PutUint16(l4[icmpEchoID:], port)
		c := binary.BigEndian.Uint16(l4[icmpCsum:])
		binary.BigEndian.PutUint16(l4[icmpCsum:], proto.UpdateChecksum16(c, oldID, port))
	}
}

func addrOf(a uint32) netip.Addr {
	return netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)})
}

// finishPartial completes a TCP or UDP checksum that a veth peer left partial (pipeline.PortInfo.
// PartialChecksums) before the packet is rewritten: an incremental update is exact on a complete
// checksum only, and after the rewrite the field no longer looks partial to the stack.
func (n *NAT) finishPartial(p *pipeline.Packet, v *view, ports []portInfo) {
	if v.l4 == nil || v.first || int(p.InPort) >= len(ports) || !ports[p.InPort].partial {
		return
	}
	if proto.FinishPartialChecksum(v.ip.Src(), v.ip.Dst(), v.t.Proto, v.l4) {
		inc(&n.ctrOf(p).csumCompleted)
	}
}
