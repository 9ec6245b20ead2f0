package pipeline

import "github.com/xdpnet/xdpnet/proto"

// FinishPartialChecksum completes, in Ethernet frame f, a TCP or UDP checksum that a sender in host memory
// left partial (see proto.FinishPartialChecksum), and reports whether it did. A handler that sends frames on
// without the stack (a bridge, an L2 forwarder) calls it for packets from ports with
// PortInfo.PartialChecksums, so that no frame leaves with a checksum its receiver rejects: AF_XDP transmits
// a new skb, which the receiver verifies. It handles IPv4 (not fragments) and IPv6 whose next header is
// TCP or UDP, behind up to two VLAN tags. It does not allocate.
func FinishPartialChecksum(f []byte) bool {
	var l2 proto.L2
	if l2.Parse(f) != proto.OK {
		return false
	}
	switch l2.EtherType {
	case proto.EtherTypeIPv4:
		ip, err := proto.ParseIPv4(f[l2.L3Offset:])
		if err != proto.OK || ip.IsFragment() {
			return false
		}
		return proto.FinishPartialChecksum(ip.Src(), ip.Dst(), ip.Protocol(), ip.Payload())
	case proto.EtherTypeIPv6:
		ip, err := proto.ParseIPv6(f[l2.L3Offset:])
		if err != proto.OK {
			return false
		}
		return proto.FinishPartialChecksum(ip.Src(), ip.Dst(), ip.NextHeader(), ip.Payload())
	}
	return false
}
