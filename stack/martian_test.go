package stack

import (
	"context"
	"net/netip"
	"testing"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
)

// synFrom is a TCP SYN to our lan address port 80 (closed) from src, as a frame from A.
func synFrom(src netip.Addr) []byte {
	n := proto.TCPFields{}.HeaderLen()
	b := make([]byte, ethLen+proto.IPv4MinHeaderLen+n)
	proto.EthernetFields{Dst: macLan, Src: macA, EtherType: proto.EtherTypeIPv4}.Encode(b)
	proto.IPv4Fields{TTL: 64, Protocol: proto.ProtoTCP, Src: src, Dst: ipLan, PayloadLen: n}.Encode(b[ethLen:])
	proto.TCPFields{SrcPort: 40000, DstPort: 80, Seq: 1000, Flags: proto.TCPFlagSYN, Window: 65535}.EncodeChecksum(b[ethLen+proto.IPv4MinHeaderLen:], 0, src, ipLan)
	return b
}

// TestNoRepliesToUnspecifiedSource: with a default route, a packet from 0.0.0.0 to our address would have
// been answered towards 0.0.0.0 (an echo reply, a TCP RST); it is a martian source unless it goes to the
// limited broadcast, as a DHCP DISCOVER does, and then nothing answers it.
func TestNoRepliesToUnspecifiedSource(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		c.Routes = append(c.Routes, Route{Prefix: netip.MustParsePrefix("0.0.0.0/0"), NextHop: ipB})
	})
	zero := netip.IPv4Unspecified()
	e.inject(portLan, echoFrame(macLan, macA, zero, ipLan, 64, 1, 1, nil))
	e.inject(portLan, synFrom(zero))
	e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(zero, 68), netip.AddrPortFrom(ipLan, 9), 64, nil))
	e.none()
	if d := e.l.Dropped(pipeline.DropMartianSource); d != 3 {
		t.Errorf("%d martian_source drops, want 3 (drops %v)", d, e.l.DropSummary())
	}
	// 0.0.0.0 -> 255.255.255.255 reaches a UDP socket (DHCP), and a closed port gets no ICMP.
	c, err := e.s.ListenUDP(netip.MustParseAddrPort("0.0.0.0:67"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	bc := netip.AddrFrom4([4]byte{255, 255, 255, 255})
	e.inject(portLan, udpFrame(proto.BroadcastMAC, macA, netip.AddrPortFrom(zero, 68), netip.AddrPortFrom(bc, 67), 64, []byte("discover")))
	e.inject(portLan, udpFrame(proto.BroadcastMAC, macA, netip.AddrPortFrom(zero, 68), netip.AddrPortFrom(bc, 69), 64, nil))
	e.none()
	if st := e.s.Stats(); st.UDPDelivered != 1 {
		t.Errorf("UDPDelivered %d, want the DISCOVER", st.UDPDelivered)
	}
	// Nor does the stack send to 0.0.0.0 when asked to.
	if _, err := c.WriteToUDPAddrPort([]byte("x"), netip.AddrPortFrom(zero, 68)); err == nil {
		t.Error("UDP write to 0.0.0.0 accepted")
	}
	if _, err := e.s.DialTCP(context.Background(), netip.AddrPortFrom(zero, 80)); err == nil {
		t.Error("TCP dial to 0.0.0.0 accepted")
	}
	e.checkHeld()
}

// TestDirectedBroadcastSourceIsMartian: a connected network's broadcast address as a source is refused
// and counted, whether the packet is for us or to forward, and whichever port it came in on.
func TestDirectedBroadcastSourceIsMartian(t *testing.T) {
	e := newEnv(t, nil)
	lanBC := netip.MustParseAddr("198.18.0.255")
	wanBC := netip.MustParseAddr("198.19.0.255")
	e.inject(portLan, echoFrame(macLan, macA, lanBC, ipLan, 64, 1, 1, nil))
	e.inject(portLan, synFrom(lanBC))
	e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(lanBC, 1), netip.AddrPortFrom(ipFar, 2), 64, nil))
	e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(wanBC, 1), netip.AddrPortFrom(ipFar, 2), 64, nil))
	e.none()
	if d := e.l.Dropped(pipeline.DropMartianSource); d != 4 {
		t.Errorf("%d martian_source drops, want 4 (drops %v)", d, e.l.DropSummary())
	}
	// The network's other addresses are hosts like any.
	e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(netip.MustParseAddr("198.18.0.254"), 1), netip.AddrPortFrom(ipFar, 2), 64, nil))
	if p := parseOut(t, e.only(portWan)); p.eth.Dst() != macB {
		t.Errorf("forwarded to %v", p.eth.Dst())
	}
	e.checkHeld()
}
