package nat_test

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/pipeline/conntrack"
	"github.com/xdpnet/xdpnet/pipeline/memlink"
	"github.com/xdpnet/xdpnet/pipeline/nat"
	"github.com/xdpnet/xdpnet/proto"
	"github.com/xdpnet/xdpnet/stack"
)

// The test network (RFC 2544 addresses): a NAT gateway on the stack between an inside network and an
// outside one, over memlink.
//
//	inside hosts 198.18.0.20, .30 --- port 0 "in" 198.18.0.1/24 [stack+NAT] 198.19.0.1/24 "out" port 1 --- S 198.19.0.2
//	                                                                                                  --- R 198.19.0.254 (router to 198.19.100.0/24)
var (
	macIn  = proto.MAC{0x02, 0, 0, 0, 0, 0x01}
	macOut = proto.MAC{0x02, 0, 0, 0, 0, 0x02}
	macA   = proto.MAC{0x02, 0xaa, 0, 0, 0, 0x0a}
	macA2  = proto.MAC{0x02, 0xaa, 0, 0, 0, 0x0b}
	macS   = proto.MAC{0x02, 0x55, 0, 0, 0, 0x05}
	macR   = proto.MAC{0x02, 0x77, 0, 0, 0, 0x07}

	gwIn  = netip.MustParseAddr("198.18.0.1")
	gwOut = netip.MustParseAddr("198.19.0.1")
	hostA = netip.MustParseAddr("198.18.0.20") // its address words sum differently from gwOut's, so that address changes move checksums
	hostB = netip.MustParseAddr("198.18.0.30")
	srvS  = netip.MustParseAddr("198.19.0.2")
	rtrR  = netip.MustParseAddr("198.19.0.254")
	farF  = netip.MustParseAddr("198.19.100.9") // behind R
)

const (
	portIn  = 0
	portOut = 1
)

type gw struct {
	t *testing.T
	n *nat.NAT
	s *stack.Stack
	l *memlink.Link
}

type gwOpts struct {
	ct       conntrack.Config
	forwards []nat.Forward
	partial  bool // both ports deliver partial checksums (veth)
	hairpin  bool // hairpin on the inside port, to gwIn
	portMin  uint16
	portMax  uint16
}

func newGW(t *testing.T, o gwOpts) *gw {
	t.Helper()
	var hp []nat.Masquerade
	if o.hairpin {
		hp = []nat.Masquerade{{Interface: "in", Addr: gwIn}}
	}
	n, err := nat.New(nat.Config{
		Masquerade: []nat.Masquerade{{Interface: "out", Addr: gwOut, PortMin: o.portMin, PortMax: o.portMax}},
		Forwards:   o.forwards,
		Conntrack:  o.ct,
		Hairpin:    hp,
	})
	if err != nil {
		t.Fatal(err)
	}
	hooks := new(pipeline.Hooks)
	n.Register(hooks)
	s, err := stack.New(stack.Config{
		Interfaces: []stack.Interface{
			{Name: "in", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.0.1/24")}},
			{Name: "out", Addrs: []netip.Prefix{netip.MustParsePrefix("198.19.0.1/24")}},
		},
		Routes:   []stack.Route{{Prefix: netip.MustParsePrefix("198.19.100.0/24"), NextHop: rtrR}},
		Hooks:    hooks,
		ICMPRate: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	l, err := memlink.New(memlink.Config{
		Ports: []memlink.PortConfig{
			{Name: "in", MAC: macIn, PartialChecksums: o.partial},
			{Name: "out", MAC: macOut, PartialChecksums: o.partial},
		},
		Frames:     8192,
		NewHandler: n.NewHandler(s.NewHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	g := &gw{t: t, n: n, s: s, l: l}
	l.Poll()
	l.Sent(portIn)
	l.Sent(portOut)
	g.learn(portIn, macA, hostA, gwIn)
	g.learn(portIn, macA2, hostB, gwIn)
	g.learn(portOut, macS, srvS, gwOut)
	g.learn(portOut, macR, rtrR, gwOut)
	return g
}

func (g *gw) learn(port int, mac proto.MAC, ip, ours netip.Addr) {
	g.t.Helper()
	b := make([]byte, 60)
	proto.EthernetFields{Dst: proto.BroadcastMAC, Src: mac, EtherType: proto.EtherTypeARP}.Encode(b)
	proto.ARPFields{Op: proto.ARPRequest, SenderMAC: mac, SenderIP: ip, TargetIP: ours}.Encode(b[14:])
	g.send(port, b)
	if out := g.l.Sent(port); len(out) != 1 {
		g.t.Fatalf("ARP from %v: %d replies", ip, len(out))
	}
}

// send injects frames on port and runs one batch.
func (g *gw) send(port int, frames ...[]byte) {
	g.t.Helper()
	if err := g.l.InjectBatch(port, frames...); err != nil {
		g.t.Fatal(err)
	}
	g.l.Poll()
	if err := g.l.Err(); err != nil {
		g.t.Fatal(err)
	}
}

// one injects a frame and returns the one frame that left by port out, failing otherwise.
func (g *gw) one(in int, frame []byte, out int) []byte {
	g.t.Helper()
	g.send(in, frame)
	var got [][]byte
	for _, f := range g.l.Sent(out) {
		if proto.Ethernet(f).EtherType() != proto.EtherTypeARP { // neighbour probes after time passed
			got = append(got, f)
		}
	}
	if len(got) != 1 {
		g.t.Fatalf("%d frames out of port %d, want 1 (drops %v)", len(got), out, g.l.DropSummary())
	}
	return got[0]
}

func (g *gw) none(in int, frame []byte, why pipeline.DropReason) {
	g.t.Helper()
	before := g.l.Dropped(why)
	g.send(in, frame)
	if n := len(g.l.Sent(portIn)) + len(g.l.Sent(portOut)); n != 0 {
		g.t.Fatalf("%d frames sent, want none", n)
	}
	if g.l.Dropped(why) != before+1 {
		g.t.Fatalf("not dropped as %v: drops %v", why, g.l.DropSummary())
	}
}

// Frame builders (independent of the code under test: proto's encoders compute full checksums).

func ipFrame(dstMAC, srcMAC proto.MAC, f proto.IPv4Fields, payload []byte) []byte {
	if f.TTL == 0 {
		f.TTL = 64
	}
	f.PayloadLen = len(payload)
	b := make([]byte, 14+20+len(payload))
	proto.EthernetFields{Dst: dstMAC, Src: srcMAC, EtherType: proto.EtherTypeIPv4}.Encode(b)
	f.Encode(b[14:])
	copy(b[34:], payload)
	return b
}

func udp(src, dst netip.AddrPort, data string) []byte {
	b := make([]byte, 8+len(data))
	copy(b[8:], data)
	proto.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), PayloadLen: len(data)}.EncodeChecksum(b, src.Addr(), dst.Addr())
	return b
}

func tcp(src, dst netip.AddrPort, flags proto.TCPFlags, seq, ack uint32, data string) []byte {
	f := proto.TCPFields{SrcPort: src.Port(), DstPort: dst.Port(), Seq: seq, Ack: ack, Flags: flags, Window: 65535}
	b := make([]byte, 20+len(data))
	copy(b[20:], data)
	f.EncodeChecksum(b, len(data), src.Addr(), dst.Addr())
	return b
}

func echo(typ uint8, id, seq uint16) []byte {
	b := make([]byte, 8+16)
	proto.ICMPv4Fields{Type: typ, ID: id, Seq: seq}.Encode(b, []byte("0123456789abcdef"))
	return b
}

func udpFrame(dmac, smac proto.MAC, src, dst netip.AddrPort, data string) []byte {
	return ipFrame(dmac, smac, proto.IPv4Fields{Protocol: proto.ProtoUDP, Src: src.Addr(), Dst: dst.Addr()}, udp(src, dst, data))
}

func tcpFrame(dmac, smac proto.MAC, src, dst netip.AddrPort, flags proto.TCPFlags, seq, ack uint32) []byte {
	return ipFrame(dmac, smac, proto.IPv4Fields{Protocol: proto.ProtoTCP, Src: src.Addr(), Dst: dst.Addr(), DontFragment: true},
		tcp(src, dst, flags, seq, ack, ""))
}

func echoFrame(dmac, smac proto.MAC, src, dst netip.Addr, typ uint8, id, seq uint16, ttl uint8) []byte {
	return ipFrame(dmac, smac, proto.IPv4Fields{Protocol: proto.ProtoICMP, Src: src, Dst: dst, TTL: ttl}, echo(typ, id, seq))
}

// icmpErrFrame is an ICMP error from src to dst quoting the IP packet of frame quoted (header + 8 bytes,
// or all of it with full).
func icmpErrFrame(dmac, smac proto.MAC, src, dst netip.Addr, typ, code uint8, quoted []byte, full bool) []byte {
	ip := quoted[14:]
	n := proto.IPv4(ip).HeaderLen() + 8
	if full {
		n = len(ip)
	}
	b := make([]byte, 8+n)
	proto.ICMPv4Fields{Type: typ, Code: code}.Encode(b, ip[:n])
	return ipFrame(dmac, smac, proto.IPv4Fields{Protocol: proto.ProtoICMP, Src: src, Dst: dst}, b)
}

// pkt is a parsed frame the gateway sent, with its checksums checked by proto.
type pkt struct {
	ip  proto.IPv4
	l4  []byte
	eth proto.Ethernet
}

func parse(t *testing.T, f []byte) pkt {
	t.Helper()
	eth, err := proto.ParseEthernet(f)
	if err != proto.OK || eth.EtherType() != proto.EtherTypeIPv4 {
		t.Fatalf("not IPv4: % x", f)
	}
	ip, err := proto.ParseIPv4(eth.Payload())
	if err != proto.OK || !ip.ChecksumValid() {
		t.Fatalf("bad IPv4 header (%v, checksum valid %v)", err, ip.ChecksumValid())
	}
	p := pkt{ip: ip, l4: ip.Payload(), eth: eth}
	if ip.IsFragment() && ip.FragmentOffset() != 0 {
		return p
	}
	switch ip.Protocol() {
	case proto.ProtoTCP:
		if !ip.IsFragment() && !proto.TCP(p.l4).ChecksumValid(ip.Src(), ip.Dst()) {
			t.Fatalf("TCP checksum wrong after translation")
		}
	case proto.ProtoUDP:
		if !ip.IsFragment() && !proto.UDP(p.l4).ChecksumValid(ip.Src(), ip.Dst()) {
			t.Fatalf("UDP checksum wrong after translation")
		}
	case proto.ProtoICMP:
		if !proto.ICMPv4(p.l4).ChecksumValid() {
			t.Fatalf("ICMP checksum wrong after translation")
		}
	}
	return p
}

func (p pkt) src() netip.AddrPort { return netip.AddrPortFrom(p.ip.Src(), p.port(0)) }
func (p pkt) dst() netip.AddrPort { return netip.AddrPortFrom(p.ip.Dst(), p.port(2)) }

func (p pkt) port(off int) uint16 {
	switch p.ip.Protocol() {
	case proto.ProtoTCP, proto.ProtoUDP:
		return binary.BigEndian.Uint16(p.l4[off:])
	case proto.ProtoICMP:
		return binary.BigEndian.Uint16(p.l4[4:]) // the echo identifier
	}
	return 0
}

func ap(a netip.Addr, port uint16) netip.AddrPort { return netip.AddrPortFrom(a, port) }
