package pipeline

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/xdpnet/xdpnet/proto"
)

// partialUDPFrame builds Ethernet (+ VLAN tags) + IPv4 or IPv6 + UDP whose checksum is left partial, as a
// Linux sender with TX checksum offload leaves it: the folded pseudo-header sum.
func partialUDPFrame(t *testing.T, src, dst netip.Addr, vlans int, fragment bool) []byte {
	t.Helper()
	payload := []byte("a datagram from a veth peer at its defaults")
	udp := make([]byte, proto.UDPHeaderLen+len(payload))
	copy(udp[proto.UDPHeaderLen:], payload)
	proto.UDPFields{SrcPort: 40000, DstPort: 53, PayloadLen: len(payload)}.Encode(udp)
	binary.BigEndian.PutUint16(udp[6:], proto.Fold(proto.PseudoHeaderSum(src, dst, proto.ProtoUDP, len(udp))))
	et := proto.EtherTypeIPv4
	if src.Is6() {
		et = proto.EtherTypeIPv6
	}
	f := make([]byte, 12) // destination and source MAC
	for range vlans {
		f = binary.BigEndian.AppendUint16(f, uint16(proto.EtherTypeVLAN))
		f = binary.BigEndian.AppendUint16(f, 100) // TCI: VLAN 100
	}
	f = binary.BigEndian.AppendUint16(f, uint16(et))
	if src.Is4() {
		ip := make([]byte, proto.IPv4MinHeaderLen)
		proto.IPv4Fields{TTL: 64, Protocol: proto.ProtoUDP, Src: src, Dst: dst, PayloadLen: len(udp), MoreFragments: fragment}.Encode(ip)
		f = append(f, ip...)
	} else {
		ip := make([]byte, proto.IPv6HeaderLen)
		proto.IPv6Fields{NextHeader: proto.ProtoUDP, HopLimit: 64, Src: src, Dst: dst, PayloadLen: len(udp)}.Encode(ip)
		f = append(f, ip...)
	}
	return append(f, udp...)
}

func udpValid(t *testing.T, f []byte) bool {
	var l2 proto.L2
	if l2.Parse(f) != proto.OK {
		t.Fatal("bad L2")
	}
	var src, dst netip.Addr
	var seg []byte
	if l2.EtherType == proto.EtherTypeIPv4 {
		ip, _ := proto.ParseIPv4(f[l2.L3Offset:])
		src, dst, seg = ip.Src(), ip.Dst(), ip.Payload()
	} else {
		ip, _ := proto.ParseIPv6(f[l2.L3Offset:])
		src, dst, seg = ip.Src(), ip.Dst(), ip.Payload()
	}
	return proto.UDP(seg).ChecksumValid(src, dst)
}

func TestFinishPartialChecksumFrames(t *testing.T) {
	v4a, v4b := netip.MustParseAddr("198.18.0.2"), netip.MustParseAddr("198.19.0.2")
	v6a, v6b := netip.MustParseAddr("2001:2::2"), netip.MustParseAddr("2001:2:0:1::2")
	for _, c := range []struct {
		name     string
		src, dst netip.Addr
		vlans    int
	}{{"ipv4", v4a, v4b, 0}, {"ipv6", v6a, v6b, 0}, {"ipv4 802.1Q", v4a, v4b, 1}, {"ipv6 QinQ", v6a, v6b, 2}} {
		f := partialUDPFrame(t, c.src, c.dst, c.vlans, false)
		if udpValid(t, f) {
			t.Fatalf("%s: test frame not partial", c.name)
		}
		if !FinishPartialChecksum(f) || !udpValid(t, f) {
			t.Errorf("%s: not completed", c.name)
		}
		if FinishPartialChecksum(f) {
			t.Errorf("%s: a complete checksum was taken as partial again", c.name)
		}
	}
	frag := partialUDPFrame(t, v4a, v4b, 0, true)
	if FinishPartialChecksum(frag) {
		t.Error("a fragment was changed: Linux completes checksums before fragmenting")
	}
	if FinishPartialChecksum(frag[:20]) {
		t.Error("a truncated frame was changed")
	}
	if n := testing.AllocsPerRun(100, func() { FinishPartialChecksum(frag) }); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
