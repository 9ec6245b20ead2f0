package stack_test

import (
	"fmt"
	"net/netip"

	"github.com/xdpnet/xdpnet/pipeline/memlink"
	"github.com/xdpnet/xdpnet/proto"
	"github.com/xdpnet/xdpnet/stack"
)

// A router with two interfaces, driven by pipeline/memlink instead of the AF_XDP poller (the handler is
// the same): it announces itself, answers a host's ARP request and ping, and forwards the host's UDP
// datagram to a network behind a gateway whose MAC it first resolves with ARP, holding the datagram
// meanwhile. Each frame the stack sends is printed as tcpdump would summarize it.
func Example() {
	lan, _ := stack.ParseInterface("lan=198.18.0.1/24")
	wan, _ := stack.ParseInterface("wan=198.19.0.1/24")
	s, err := stack.New(stack.Config{
		Interfaces: []stack.Interface{lan, wan},
		Routes:     []stack.Route{{Prefix: netip.MustParsePrefix("198.18.200.0/24"), NextHop: netip.MustParseAddr("198.19.0.2")}},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	macLan, macWan := proto.MAC{2, 0, 0, 0, 0, 1}, proto.MAC{2, 0, 0, 0, 0, 2}
	l, err := memlink.New(memlink.Config{
		Ports:      []memlink.PortConfig{{Name: "lan", MAC: macLan}, {Name: "wan", MAC: macWan}},
		NewHandler: s.NewHandler, // one handler per queue; memlink runs one queue
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	inject := func(port int, frame []byte) {
		if err := l.Inject(port, frame); err != nil {
			fmt.Println(err)
		}
	}
	show := func() {
		for port, name := range []string{"lan", "wan"} {
			for _, f := range l.Sent(port) {
				fmt.Printf("%s: %s\n", name, summary(f))
			}
		}
	}
	l.Poll() // the first loop: gratuitous ARP on each interface
	show()

	host, hostIP := proto.MAC{2, 0, 0, 0, 0, 0xa}, netip.MustParseAddr("198.18.0.2")
	gw, gwIP := proto.MAC{2, 0, 0, 0, 0, 0xb}, netip.MustParseAddr("198.19.0.2")
	broadcast := proto.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

	inject(0, arp(proto.ARPRequest, host, broadcast, hostIP, proto.MAC{}, netip.MustParseAddr("198.18.0.1")))
	show()
	inject(0, ping(host, macLan, hostIP, netip.MustParseAddr("198.18.0.1")))
	show()
	inject(0, udp(host, macLan, hostIP, netip.MustParseAddr("198.18.200.5"), []byte("hello")))
	show() // the datagram waits for the gateway's MAC
	inject(1, arp(proto.ARPReply, gw, macWan, gwIP, macWan, netip.MustParseAddr("198.19.0.1")))
	show()
	st := s.Stats()
	fmt.Println("forwarded", st.Forwarded, "echo replies", st.ICMPEchoRepliesOut)

	// Output:
	// lan: 02:00:00:00:00:01 > ff:ff:ff:ff:ff:ff ARP announcement of 198.18.0.1
	// wan: 02:00:00:00:00:02 > ff:ff:ff:ff:ff:ff ARP announcement of 198.19.0.1
	// lan: 02:00:00:00:00:01 > 02:00:00:00:00:0a ARP reply 198.18.0.1 is-at 02:00:00:00:00:01
	// lan: 02:00:00:00:00:01 > 02:00:00:00:00:0a IP 198.18.0.1 > 198.18.0.2 ttl 64 ICMP echo reply id 7 seq 1
	// wan: 02:00:00:00:00:02 > ff:ff:ff:ff:ff:ff ARP who-has 198.19.0.2 tell 198.19.0.1
	// wan: 02:00:00:00:00:02 > 02:00:00:00:00:0b IP 198.18.0.2 > 198.18.200.5 ttl 63 UDP 1000 > 53 "hello"
	// forwarded 1 echo replies 1
}

// summary is a one-line description of an Ethernet frame carrying ARP, ICMP echo or UDP.
func summary(f []byte) string {
	eth, err := proto.ParseEthernet(f)
	if err != proto.OK {
		return "bad frame"
	}
	head := fmt.Sprintf("%v > %v ", eth.Src(), eth.Dst())
	switch eth.EtherType() {
	case proto.EtherTypeARP:
		a, err := proto.ParseARP(eth.Payload())
		if err != proto.OK {
			return head + "bad ARP"
		}
		if a.IsGratuitous() {
			return head + fmt.Sprintf("ARP announcement of %v", a.SenderIP())
		}
		if a.Op() == proto.ARPRequest {
			return head + fmt.Sprintf("ARP who-has %v tell %v", a.TargetIP(), a.SenderIP())
		}
		return head + fmt.Sprintf("ARP reply %v is-at %v", a.SenderIP(), a.SenderMAC())
	case proto.EtherTypeIPv4:
		ip, err := proto.ParseIPv4(eth.Payload())
		if err != proto.OK {
			return head + "bad IPv4"
		}
		head += fmt.Sprintf("IP %v > %v ttl %d ", ip.Src(), ip.Dst(), ip.TTL())
		switch ip.Protocol() {
		case proto.ProtoICMP:
			if m, err := proto.ParseICMPv4(ip.Payload()); err == proto.OK && m.Type() == proto.ICMPv4EchoReply {
				return head + fmt.Sprintf("ICMP echo reply id %d seq %d", m.ID(), m.Seq())
			}
		case proto.ProtoUDP:
			if u, err := proto.ParseUDP(ip.Payload()); err == proto.OK {
				return head + fmt.Sprintf("UDP %d > %d %q", u.SrcPort(), u.DstPort(), u.Payload())
			}
		}
		return head + fmt.Sprintf("protocol %d", ip.Protocol())
	}
	return head + fmt.Sprintf("ethertype %#04x", uint16(eth.EtherType()))
}

// arp builds an ARP frame from src to dst, padded to Ethernet's 60-byte minimum.
func arp(op uint16, src, dst proto.MAC, sip netip.Addr, tha proto.MAC, tip netip.Addr) []byte {
	b := make([]byte, 60)
	n := proto.EthernetFields{Dst: dst, Src: src, EtherType: proto.EtherTypeARP}.Encode(b)
	proto.ARPFields{Op: op, SenderMAC: src, SenderIP: sip, TargetMAC: tha, TargetIP: tip}.Encode(b[n:])
	return b
}

// ipv4 builds Ethernet + IPv4 with TTL 64 around payload.
func ipv4(src, dst proto.MAC, from, to netip.Addr, protocol uint8, payload []byte) []byte {
	b := make([]byte, 14+20+len(payload))
	n := proto.EthernetFields{Dst: dst, Src: src, EtherType: proto.EtherTypeIPv4}.Encode(b)
	n += proto.IPv4Fields{TTL: 64, Protocol: protocol, Src: from, Dst: to, PayloadLen: len(payload)}.Encode(b[n:])
	copy(b[n:], payload)
	return b
}

// ping builds an ICMP echo request, id 7 seq 1.
func ping(src, dst proto.MAC, from, to netip.Addr) []byte {
	m := make([]byte, 8+4)
	proto.ICMPv4Fields{Type: proto.ICMPv4EchoRequest, ID: 7, Seq: 1}.Encode(m, []byte("ping"))
	return ipv4(src, dst, from, to, proto.ProtoICMP, m)
}

// udp builds a UDP datagram from port 1000 to port 53.
func udp(src, dst proto.MAC, from, to netip.Addr, data []byte) []byte {
	u := make([]byte, 8+len(data))
	copy(u[8:], data)
	proto.UDPFields{SrcPort: 1000, DstPort: 53, PayloadLen: len(data)}.EncodeChecksum(u, from, to)
	return ipv4(src, dst, from, to, proto.ProtoUDP, u)
}
