package stack

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"io"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/pipeline/memlink"
	"github.com/xdpnet/xdpnet/proto"
	"github.com/xdpnet/xdpnet/stack/tcp"
)

// The IPv6 side of the test network (RFC 5180 benchmarking addresses), beside the IPv4 one of stack_test.go:
//
//	host A 2001:2::2 (macA) --- lan 2001:2::1/64 [stack] 2001:2:0:1::1/64 wan --- router B 2001:2:0:1::2 (macB)
//
// Routes: 2001:2:100::/48 via B, 2001:2:60::/48 blackhole, 2001:2:70::/48 unreachable, 2001:2:80::/48 via
// 2001:2:0:1::99 (never answers).
var (
	ip6Lan  = netip.MustParseAddr("2001:2::1")
	ip6Wan  = netip.MustParseAddr("2001:2:0:1::1")
	ip6A    = netip.MustParseAddr("2001:2::2")
	ip6B    = netip.MustParseAddr("2001:2:0:1::2")
	ip6Far  = netip.MustParseAddr("2001:2:100::7")
	ip6None = netip.MustParseAddr("2001:2:50::1")
	ip6BH   = netip.MustParseAddr("2001:2:60::1")
	ip6Unr  = netip.MustParseAddr("2001:2:70::1")
	ip6Dead = netip.MustParseAddr("2001:2:80::1")
	llA     = netip.MustParseAddr("fe80::aa:1")
	llLan   = linkLocalFromMAC(macLan).Addr()
)

func dualRoutes(c *Config) {
	dual(c)
	c.Routes = append(c.Routes,
		Route{Prefix: netip.MustParsePrefix("2001:2:100::/48"), NextHop: ip6B},
		Route{Prefix: netip.MustParsePrefix("2001:2:60::/48"), Type: Blackhole},
		Route{Prefix: netip.MustParsePrefix("2001:2:70::/48"), Type: Unreachable},
		Route{Prefix: netip.MustParsePrefix("2001:2:80::/48"), NextHop: netip.MustParseAddr("2001:2:0:1::99")})
}

// newEnv6 builds the dual-stack network: it checks the start-up messages (a gratuitous ARP and a DAD
// solicitation for the link-local and the global address on each port), lets DAD finish, and teaches the
// stack A's and B's MACs over IPv4 (ARP) and IPv6 (a solicitation answered, then a solicited
// advertisement that makes the entry reachable).
func newEnv6(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	cfg := testConfig()
	dualRoutes(&cfg)
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := memlink.New(memlink.Config{
		Ports:      []memlink.PortConfig{{Name: "lan", MAC: macLan}, {Name: "wan", MAC: macWan}},
		NewHandler: s.NewHandler,
	})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, s: s, l: l}
	l.Poll()
	for port, ours := range map[int][]netip.Addr{portLan: {llLan, ip6Lan}, portWan: {linkLocalFromMAC(macWan).Addr(), ip6Wan}} {
		var dad []netip.Addr
		for _, f := range l.Sent(port) {
			if proto.Ethernet(f).EtherType() != proto.EtherTypeIPv6 {
				continue
			}
			p := parseOut6(t, f)
			if p.icmp == nil || p.icmp.Type() != proto.ICMPv6NeighborSolicitation || p.ip.Src() != netip.IPv6Unspecified() ||
				p.ip.HopLimit() != 255 || p.ip.Dst() != proto.SolicitedNodeMulticast(p.icmp.TargetAddress()) ||
				p.eth.Dst() != proto.MulticastMAC(p.ip.Dst()) || len(p.icmp.NDPOptionBytes()) != 0 {
				t.Fatalf("port %d: start-up frame is not a DAD solicitation: % x", port, f)
			}
			dad = append(dad, p.icmp.TargetAddress())
		}
		if len(dad) != 2 || dad[0] != ours[0] || dad[1] != ours[1] {
			t.Fatalf("port %d: DAD for %v, want %v", port, dad, ours)
		}
	}
	// Nothing is used before DAD ends: a solicitation for a tentative address goes unanswered.
	e.inject(portLan, nsFrame(macA, ip6A, ip6Lan, true))
	e.none()
	l.Advance(time.Second)
	e.none()
	e.learn(portLan, macA, ipA, ipLan)
	e.learn(portWan, macB, ipB, ipWan)
	e.learn6(portLan, macA, ip6A, ip6Lan)
	e.learn6(portWan, macB, ip6B, ip6Wan)
	return e
}

// learn6 sends a solicitation from (mac, ip) for our address, checks the advertisement, and confirms ip
// with a solicited advertisement.
func (e *env) learn6(port int, mac proto.MAC, ip, ours netip.Addr) {
	e.t.Helper()
	e.inject(port, nsFrame(mac, ip, ours, true))
	ourMAC := macLan
	if port == portWan {
		ourMAC = macWan
	}
	p := parseOut6(e.t, e.only(port))
	if p.eth.Dst() != mac || p.eth.Src() != ourMAC || p.icmp == nil || p.icmp.Type() != proto.ICMPv6NeighborAdvertisement ||
		p.ip.Src() != ours || p.ip.Dst() != ip || p.ip.HopLimit() != 255 || p.icmp.TargetAddress() != ours ||
		p.icmp.NAFlags() != proto.NAFlagRouter|proto.NAFlagSolicited|proto.NAFlagOverride {
		e.t.Fatalf("advertisement wrong: % x", p.eth)
	}
	if o, err := p.icmp.NDPOptions(); err != proto.OK || !o.HasTargetLinkAddr || o.TargetLinkAddr != ourMAC {
		e.t.Fatalf("advertisement options %+v %v", o, err)
	}
	if n, ok := e.neighbour(ip); !ok || n.State != NeighbourStale || n.MAC != mac {
		e.t.Fatalf("after a solicitation: %+v %v, want a stale entry (RFC 4861 §7.2.3)", n, ok)
	}
	e.inject(port, naFrame(mac, ip, ours, ip, proto.NAFlagSolicited|proto.NAFlagOverride, mac))
	e.none()
	if n, ok := e.neighbour(ip); !ok || n.State != NeighbourReachable {
		e.t.Fatalf("after a solicited advertisement: %+v %v", n, ok)
	}
}

// ip6Frame builds Ethernet + IPv6 + payload; next is the Next Header.
func ip6Frame(dstMAC, srcMAC proto.MAC, src, dst netip.Addr, next, hop uint8, payload []byte) []byte {
	b := make([]byte, 14+40+len(payload))
	proto.EthernetFields{Dst: dstMAC, Src: srcMAC, EtherType: proto.EtherTypeIPv6}.Encode(b)
	proto.IPv6Fields{NextHeader: next, HopLimit: hop, Src: src, Dst: dst, PayloadLen: len(payload)}.Encode(b[14:])
	copy(b[54:], payload)
	return b
}

func icmp6Msg(f proto.ICMPv6Fields, src, dst netip.Addr, data []byte) []byte {
	m := make([]byte, 8+len(data))
	f.Encode(m, data, src, dst)
	return m
}

func echo6Frame(dstMAC, srcMAC proto.MAC, src, dst netip.Addr, hop uint8, data []byte) []byte {
	return ip6Frame(dstMAC, srcMAC, src, dst, proto.ProtoICMPv6, hop,
		icmp6Msg(proto.ICMPv6Fields{Type: proto.ICMPv6EchoRequest, ID: 7, Seq: 1}, src, dst, data))
}

func udp6Frame(dstMAC, srcMAC proto.MAC, src, dst netip.AddrPort, hop uint8, data []byte) []byte {
	return ip6Frame(dstMAC, srcMAC, src.Addr(), dst.Addr(), proto.ProtoUDP, hop, udpPayload(src, dst, data))
}

// nsFrame is a solicitation from (mac, src) for target, to its solicited-node group, with the source
// link-layer option when sll.
func nsFrame(mac proto.MAC, src, target netip.Addr, sll bool) []byte {
	dst := proto.SolicitedNodeMulticast(target)
	m := make([]byte, 32)
	n := proto.NDPNeighborFields{Type: proto.ICMPv6NeighborSolicitation, Target: target, LinkAddr: mac, HasLinkAddr: sll}.Encode(m, src, dst)
	return ip6Frame(proto.MulticastMAC(dst), mac, src, dst, proto.ProtoICMPv6, 255, m[:n])
}

func naFrame(mac proto.MAC, src, dst, target netip.Addr, flags uint8, tll proto.MAC) []byte {
	m := make([]byte, 32)
	n := proto.NDPNeighborFields{Type: proto.ICMPv6NeighborAdvertisement, Flags: flags, Target: target, LinkAddr: tll, HasLinkAddr: true}.Encode(m, src, dst)
	dmac := macLan
	if netip.MustParsePrefix("2001:2:0:1::/64").Contains(dst) {
		dmac = macWan
	}
	if dst.IsMulticast() {
		dmac = proto.MulticastMAC(dst)
	}
	return ip6Frame(dmac, mac, src, dst, proto.ProtoICMPv6, 255, m[:n])
}

// parsed6 is a transmitted IPv6 frame, checked on the way: Ethernet, payload length, the ICMPv6 or UDP
// checksum.
type parsed6 struct {
	eth  proto.Ethernet
	ip   proto.IPv6
	icmp proto.ICMPv6
	udp  proto.UDP
}

func parseOut6(t *testing.T, f []byte) parsed6 {
	t.Helper()
	eth, err := proto.ParseEthernet(f)
	if err != proto.OK || eth.EtherType() != proto.EtherTypeIPv6 {
		t.Fatalf("transmitted frame is not IPv6: % x", f)
	}
	ip, err := proto.ParseIPv6(eth.Payload())
	if err != proto.OK || len(ip) != len(eth.Payload()) {
		t.Fatalf("transmitted IPv6 does not parse or has trailing bytes: %v", err)
	}
	p := parsed6{eth: eth, ip: ip}
	u, err := ip.UpperLayer()
	if err != proto.OK || u.IsFragment() {
		return p
	}
	switch u.Protocol {
	case proto.ProtoICMPv6:
		m, err := proto.ParseICMPv6(ip[u.Offset:])
		if err != proto.OK || !m.ChecksumValid(ip.Src(), ip.Dst()) {
			t.Fatalf("transmitted ICMPv6 malformed or bad checksum")
		}
		p.icmp = m
	case proto.ProtoUDP:
		d, err := proto.ParseUDP(ip[u.Offset:])
		if err != proto.OK || !d.ChecksumValid(ip.Src(), ip.Dst()) {
			t.Fatalf("transmitted UDP malformed or bad checksum")
		}
		p.udp = d
	}
	return p
}

// checkICMP6Error checks an ICMPv6 error to A on lan: type, code, the MTU/pointer word, the source, and
// that it quotes want (the invoking packet from its IPv6 header on, cut to fit 1280 bytes).
func checkICMP6Error(t *testing.T, f []byte, typ, code uint8, param uint32, want []byte, src netip.Addr) {
	t.Helper()
	p := parseOut6(t, f)
	if p.icmp == nil || p.icmp.Type() != typ || p.icmp.Code() != code || binary.BigEndian.Uint32(p.icmp[4:]) != param {
		t.Fatalf("want ICMPv6 %d/%d param %d, got % x", typ, code, param, p.ip)
	}
	if p.ip.Src() != src || p.eth.Dst() != macA || p.eth.Src() != macLan || len(p.ip) > 1280 {
		t.Errorf("error from %v (%v -> %v), %d bytes; want from %v to A", p.ip.Src(), p.eth.Src(), p.eth.Dst(), len(p.ip), src)
	}
	q := want[14:]
	if len(q) > 1280-48 {
		q = q[:1280-48]
	}
	if !bytes.Equal(p.icmp.Payload(), q) {
		t.Errorf("quote differs:\n got % x\nwant % x", p.icmp.Payload(), q)
	}
}

func TestDAD6(t *testing.T) {
	e := newEnv6(t, nil)
	st := e.s.Stats()
	if st.DADProbesOut != 4 || st.DADConflicts != 0 {
		t.Errorf("stats %+v", st)
	}
	for _, i := range e.s.ifaces {
		if !i.v6.ll.Load().usable() || !i.v6.addrs[0].usable() {
			t.Errorf("%s: addresses not preferred after DAD", i.name)
		}
	}
	// A node claiming our address in use is logged, and the address stays (RFC 4862 §5.4.4).
	e.inject(portLan, naFrame(macA, ip6Lan, proto.AllNodesMulticast, ip6Lan, proto.NAFlagOverride, macA))
	e.none()
	if !e.s.ifaces[0].v6.addrs[0].usable() || e.s.Stats().DADConflicts != 1 {
		t.Errorf("address in use disabled by an advertisement, or conflict not counted")
	}
	// A DAD probe for our address in use is answered to all-nodes, Solicited clear (RFC 4861 §7.2.4).
	e.inject(portLan, nsFrame(macA, netip.IPv6Unspecified(), ip6Lan, false))
	p := parseOut6(t, e.only(portLan))
	if p.ip.Dst() != proto.AllNodesMulticast || p.eth.Dst() != proto.MulticastMAC(proto.AllNodesMulticast) ||
		p.icmp.NAFlags() != proto.NAFlagRouter|proto.NAFlagOverride {
		t.Errorf("answer to a DAD probe: % x", p.ip)
	}
	// A DAD probe from :: must come without a source link-layer option (RFC 4861 §7.1.1).
	e.inject(portLan, nsFrame(macA, netip.IPv6Unspecified(), ip6Lan, true))
	e.none()
	if e.l.Dropped(DropNDPInvalid) != 1 {
		t.Errorf("drops %v", e.l.DropSummary())
	}
	e.checkHeld()
}

func TestDAD6Conflict(t *testing.T) {
	cfg := testConfig()
	dual(&cfg)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := memlink.New(memlink.Config{Ports: []memlink.PortConfig{{Name: "lan", MAC: macLan}, {Name: "wan", MAC: macWan}}, NewHandler: s.NewHandler})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, s: s, l: l}
	l.Poll()
	l.Sent(portLan)
	l.Sent(portWan)
	// Another node runs DAD for 2001:2::1 at the same time: both must give it up (RFC 4862 §5.4.3).
	e.inject(portLan, nsFrame(macA, netip.IPv6Unspecified(), ip6Lan, false))
	// Another node already owns wan's address: its advertisement ends our DAD (§5.4.4).
	e.inject(portWan, naFrame(macB, ip6Wan, proto.AllNodesMulticast, ip6Wan, proto.NAFlagOverride, macB))
	l.Advance(2 * time.Second)
	if x := s.ifaces[0].v6.addrs[0]; x.state.Load() != addrDuplicate {
		t.Errorf("lan address state %d, want duplicate", x.state.Load())
	}
	if x := s.ifaces[1].v6.addrs[0]; x.state.Load() != addrDuplicate {
		t.Errorf("wan address state %d, want duplicate", x.state.Load())
	}
	if !s.ifaces[0].v6.ll.Load().usable() {
		t.Errorf("link-local address disabled too")
	}
	// A disabled address is neither answered for nor accepted.
	e.inject(portLan, nsFrame(macA, llA, ip6Lan, true))
	e.inject(portLan, echo6Frame(macLan, macA, ip6A, ip6Lan, 64, nil))
	e.none()
	if e.l.Dropped(DropIPv6Tentative) != 1 || s.Stats().DADConflicts != 2 {
		t.Errorf("drops %v, stats %+v", e.l.DropSummary(), s.Stats())
	}
	e.checkHeld()
}

func TestForward6(t *testing.T) {
	e := newEnv6(t, nil)
	in := udp6Frame(macLan, macA, netip.AddrPortFrom(ip6A, 1000), netip.AddrPortFrom(ip6Far, 53), 64, []byte("hello"))
	e.inject(portLan, in)
	p := parseOut6(t, e.only(portWan))
	if p.eth.Dst() != macB || p.eth.Src() != macWan || p.ip.HopLimit() != 63 || p.udp == nil || string(p.udp.Payload()) != "hello" {
		t.Errorf("forwarded %v -> %v hop %d: % x", p.eth.Src(), p.eth.Dst(), p.ip.HopLimit(), p.ip)
	}
	want := append([]byte(nil), in[14:]...)
	want[7] = 63
	if !bytes.Equal(p.ip, want) {
		t.Errorf("forwarded packet changed beyond the hop limit")
	}
	if st := e.s.Stats(); st.Forwarded6 != 1 || st.Forwarded != 1 {
		t.Errorf("stats %+v", st)
	}
	// Ethernet padding is not part of the packet.
	padded := append(append([]byte(nil), in...), 0, 0, 0, 0)
	e.inject(portLan, padded)
	if p := parseOut6(t, e.only(portWan)); len(p.ip) != len(in)-14 {
		t.Errorf("padding forwarded")
	}
	e.checkHeld()
}

func TestNeighbourResolution6(t *testing.T) {
	e := newEnv6(t, nil)
	ip6C := netip.MustParseAddr("2001:2:0:1::3")
	macC := proto.MAC{0x02, 0xcc, 0, 0, 0, 0x0c}
	for i := range 3 {
		e.inject(portLan, udp6Frame(macLan, macA, netip.AddrPortFrom(ip6A, 1), netip.AddrPortFrom(ip6C, 2), 64, []byte{byte(i)}))
	}
	p := parseOut6(t, e.only(portWan))
	sn := proto.SolicitedNodeMulticast(ip6C)
	if p.icmp == nil || p.icmp.Type() != proto.ICMPv6NeighborSolicitation || p.icmp.TargetAddress() != ip6C ||
		p.ip.Dst() != sn || p.eth.Dst() != proto.MulticastMAC(sn) || p.ip.Src() != ip6Wan || p.ip.HopLimit() != 255 {
		t.Fatalf("solicitation % x", p.ip)
	}
	if o, _ := p.icmp.NDPOptions(); !o.HasSourceLinkAddr || o.SourceLinkAddr != macWan {
		t.Errorf("solicitation without our link-layer address")
	}
	// An advertisement without the Solicited flag for an incomplete entry makes it stale (RFC 4861
	// §7.2.5) and releases the held packets.
	e.inject(portWan, naFrame(macC, ip6C, ip6Wan, ip6C, proto.NAFlagOverride, macC))
	out := e.l.Sent(portWan)
	if len(out) != 3 {
		t.Fatalf("%d released, want 3", len(out))
	}
	for i, f := range out {
		p := parseOut6(t, f)
		if p.eth.Dst() != macC || p.ip.HopLimit() != 63 || p.udp.Payload()[0] != byte(i) {
			t.Errorf("released %d wrong", i)
		}
	}
	// Stale and used: probed with a unicast solicitation to the cached MAC (RFC 4861 §7.3.3), used meanwhile.
	e.l.Advance(time.Second)
	e.inject(portLan, udp6Frame(macLan, macA, netip.AddrPortFrom(ip6A, 1), netip.AddrPortFrom(ip6C, 2), 64, nil))
	out = e.l.Sent(portWan)
	if len(out) != 2 {
		t.Fatalf("%d frames, want the probe and the packet", len(out))
	}
	probe := parseOut6(t, out[1]) // the packet keeps its place in the batch; the probe comes after
	if probe.icmp == nil || probe.icmp.Type() != proto.ICMPv6NeighborSolicitation || probe.ip.Dst() != ip6C || probe.eth.Dst() != macC {
		t.Errorf("probe % x", probe.ip)
	}
	// An advertisement for an address nobody asked for makes no entry.
	e.inject(portWan, naFrame(macC, netip.MustParseAddr("2001:2:0:1::44"), ip6Wan, netip.MustParseAddr("2001:2:0:1::44"), proto.NAFlagOverride, macC))
	if _, ok := e.neighbour(netip.MustParseAddr("2001:2:0:1::44")); ok {
		t.Errorf("unsolicited advertisement created an entry")
	}
	e.checkHeld()
}

func TestNeighbourFailure6(t *testing.T) {
	e := newEnv6(t, nil)
	in := udp6Frame(macLan, macA, netip.AddrPortFrom(ip6A, 1), netip.AddrPortFrom(ip6Dead, 2), 64, []byte{1})
	e.inject(portLan, in)
	requests := len(e.l.Sent(portWan))
	for range 10 {
		if w := e.l.WakeAt(); w == 0 {
			break
		}
		e.l.AdvanceTo(e.l.WakeAt())
		requests += len(e.l.Sent(portWan))
	}
	if requests != DefaultMaxProbes {
		t.Errorf("%d solicitations, want %d", requests, DefaultMaxProbes)
	}
	want := append([]byte(nil), in...)
	want[14+7]-- // quoted after the forwarding step
	checkICMP6Error(t, e.only(portLan), proto.ICMPv6DestUnreachable, proto.ICMPv6AddrUnreachable, 0, want, ip6Lan)
	e.checkHeld()
}

func TestForward6Errors(t *testing.T) {
	e := newEnv6(t, func(c *Config) { c.Interfaces[1].MTU = 1280 })
	e.learn6(portLan, macA, llA, llLan)
	udp := func(dst netip.Addr, hop uint8, n int) []byte {
		return udp6Frame(macLan, macA, netip.AddrPortFrom(ip6A, 1), netip.AddrPortFrom(dst, 2), hop, make([]byte, n))
	}
	for _, c := range []struct {
		name       string
		in         []byte
		typ, code  uint8
		param      uint32
		drop       pipeline.DropReason
		fromLocal  netip.Addr
		noResponse bool
	}{
		{name: "hop limit 1", in: udp(ip6Far, 1, 10), typ: proto.ICMPv6TimeExceeded, drop: pipeline.DropTTLExpired},
		{name: "hop limit 0", in: udp(ip6Far, 0, 10), typ: proto.ICMPv6TimeExceeded, drop: pipeline.DropTTLExpired},
		{name: "too big", in: udp(ip6Far, 64, 1400), typ: proto.ICMPv6PacketTooBig, param: 1280, drop: pipeline.DropFragNeeded},
		{name: "no route", in: udp(ip6None, 64, 10), typ: proto.ICMPv6DestUnreachable, code: proto.ICMPv6NoRoute, drop: pipeline.DropNoRoute},
		{name: "blackhole", in: udp(ip6BH, 64, 10), typ: proto.ICMPv6DestUnreachable, code: proto.ICMPv6AdminProhibited, drop: DropIPv6AdminProhibited},
		{name: "unreachable", in: udp(ip6Unr, 64, 10), typ: proto.ICMPv6DestUnreachable, code: proto.ICMPv6NoRoute, drop: pipeline.DropUnreachableRoute},
		{name: "link-local source", in: udp6Frame(macLan, macA, netip.AddrPortFrom(llA, 1), netip.AddrPortFrom(ip6Far, 2), 64, nil),
			typ: proto.ICMPv6DestUnreachable, code: proto.ICMPv6BeyondScope, drop: DropIPv6LinkLocal, fromLocal: llLan},
		{name: "closed port", in: udp(ip6Lan, 64, 10), typ: proto.ICMPv6DestUnreachable, code: proto.ICMPv6PortUnreachable, drop: pipeline.DropUDPNoSocket},
	} {
		before := e.l.Dropped(c.drop)
		e.inject(portLan, c.in)
		if len(e.l.Sent(portWan)) != 0 {
			t.Errorf("%s: forwarded", c.name)
		}
		from := ip6Lan
		if c.fromLocal.IsValid() {
			from = c.fromLocal
		}
		out := e.l.Sent(portLan)
		if len(out) != 1 {
			t.Errorf("%s: %d frames back, want the error", c.name, len(out))
			continue
		}
		p := parseOut6(t, out[0])
		if p.ip.Dst() != netip.AddrFrom16(proto.IPv6(c.in[14:]).Src16()) {
			t.Errorf("%s: error to %v", c.name, p.ip.Dst())
		}
		checkICMP6Error(t, out[0], c.typ, c.code, c.param, c.in, from)
		if e.l.Dropped(c.drop) != before+1 {
			t.Errorf("%s: drops %v, want one more %v", c.name, e.l.DropSummary(), c.drop)
		}
	}
	e.checkHeld()
}

// TestHooks6: IPv6 packets pass the hooks at the same places as IPv4's, and with a Forward hook the hop
// limit and MTU checks run after it (forwardable6 on the hook's survivors).
func TestHooks6(t *testing.T) {
	var seen [pipeline.NumHooks]int
	hooks := &pipeline.Hooks{}
	for h := range pipeline.NumHooks {
		hooks.Register(h, 0, h.String(), pipeline.PacketFunc(func(p *pipeline.Packet) { seen[h]++ }))
	}
	e := newEnv6(t, func(c *Config) { c.Hooks = hooks })
	seen = [pipeline.NumHooks]int{}
	e.inject(portLan, udp6Frame(macLan, macA, netip.AddrPortFrom(ip6A, 1), netip.AddrPortFrom(ip6Far, 2), 64, nil)) // forward
	e.inject(portLan, echo6Frame(macLan, macA, ip6A, ip6Lan, 64, nil))                                              // input + output
	in := udp6Frame(macLan, macA, netip.AddrPortFrom(ip6A, 1), netip.AddrPortFrom(ip6Far, 2), 1, nil)               // forward, refused
	e.inject(portLan, in)
	want := [pipeline.NumHooks]int{pipeline.PreRouting: 3, pipeline.Input: 1, pipeline.Forward: 2, pipeline.Output: 2, pipeline.PostRouting: 3}
	if seen != want {
		t.Errorf("hook counts %v, want %v", seen, want)
	}
	wan, lan := e.l.Sent(portWan), e.l.Sent(portLan)
	if len(wan) != 1 || len(lan) != 2 {
		t.Fatalf("%d forwarded, %d back; want 1 and 2 (drops %v)", len(wan), len(lan), e.l.DropSummary())
	}
	if p := parseOut6(t, wan[0]); p.ip.HopLimit() != 63 {
		t.Errorf("hop limit %d after the Forward hook, want 63", p.ip.HopLimit())
	}
	checkICMP6Error(t, lan[1], proto.ICMPv6TimeExceeded, 0, 0, in, ip6Lan)
}

func TestICMPv6RateLimit(t *testing.T) {
	e := newEnv6(t, func(c *Config) { c.ICMPRate, c.ICMPBurst = 10, 3 })
	for range 10 {
		e.inject(portLan, udp6Frame(macLan, macA, netip.AddrPortFrom(ip6A, 1), netip.AddrPortFrom(ip6None, 2), 64, nil))
	}
	if n := len(e.l.Sent(portLan)); n != 3 {
		t.Errorf("%d ICMPv6 errors in a burst, want 3 (the bucket depth)", n)
	}
	// ICMPv4 has its own bucket (RFC 4443 §2.4 (f) limits ICMPv6 on its own).
	e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipNone, 2), 64, nil))
	if n := len(e.l.Sent(portLan)); n != 1 {
		t.Errorf("%d ICMPv4 errors after the ICMPv6 burst, want 1", n)
	}
	e.l.Advance(100 * time.Millisecond)
	e.inject(portLan, udp6Frame(macLan, macA, netip.AddrPortFrom(ip6A, 1), netip.AddrPortFrom(ip6None, 2), 64, nil))
	e.inject(portLan, udp6Frame(macLan, macA, netip.AddrPortFrom(ip6A, 1), netip.AddrPortFrom(ip6None, 2), 64, nil))
	if n := len(e.l.Sent(portLan)); n != 1 {
		t.Errorf("%d ICMPv6 errors after 100ms, want 1", n)
	}
	if st := e.s.Stats(); st.ICMPv6RateLimited != 8 || st.ICMPv6ErrorsOut != 4 {
		t.Errorf("ICMPv6RateLimited = %d, ICMPv6ErrorsOut = %d; want 8 and 4", st.ICMPv6RateLimited, st.ICMPv6ErrorsOut)
	}
}

// TestHeldPacketsBounded6: packets for unresolved IPv6 next hops are held within the same bounds as IPv4's
// (NeighbourQueueLen per next hop, HeldPacketsPerQueue in all), and each new next hop costs one
// solicitation.
func TestHeldPacketsBounded6(t *testing.T) {
	e := newEnv6(t, func(c *Config) { c.HeldPacketsPerQueue, c.NeighbourQueueLen = 8, 2 })
	var frames [][]byte
	for i := range 20 {
		dst := netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 0, 0, 0, 1, 15: byte(0x10 + i)})
		for range 2 {
			frames = append(frames, udp6Frame(macLan, macA, netip.AddrPortFrom(ip6A, 1), netip.AddrPortFrom(dst, 2), 64, nil))
		}
	}
	frames = append(frames, frames[0]) // a third for the first next hop
	if err := e.l.InjectBatch(portLan, frames...); err != nil {
		t.Fatal(err)
	}
	if n := len(e.l.Sent(portWan)); n != 20 {
		t.Errorf("%d solicitations, want one per next hop (20)", n)
	}
	if e.l.Dropped(DropHeldLimit) != 32 || e.l.Dropped(pipeline.DropNeighbourQueueFull) != 1 || e.l.Outstanding() != 8 {
		t.Errorf("drops %v, %d held; want 32 neighbour_held_limit, 1 neighbour_queue_full, 8 held", e.l.DropSummary(), e.l.Outstanding())
	}
	e.checkHeld()
	e.l.Drain()
	e.checkHeld()
}

// TestTCPOverIPv6Memlink runs TCP between two stacks over IPv6 (DAD off, static neighbours): a listener on
// [::] accepts a connection dialled to 2001:2::2, and 256 KiB go each way intact.
func TestTCPOverIPv6Memlink(t *testing.T) {
	ip6 := [2]netip.Addr{netip.MustParseAddr("2001:2::1"), netip.MustParseAddr("2001:2::2")}
	p := &tcpPair{t: t, stop: make(chan struct{}), done: make(chan struct{}), rng: rand.New(rand.NewPCG(1, 2))}
	for i := range 2 {
		s, err := New(Config{Interfaces: []Interface{{Name: "eth0", Addrs: []netip.Prefix{netip.PrefixFrom(ip6[i], 64)}}},
			ICMPRate: -1, NoDAD: true})
		if err != nil {
			t.Fatal(err)
		}
		l, err := memlink.New(memlink.Config{Ports: []memlink.PortConfig{{Name: "eth0", MAC: tcpMAC[i]}}, Frames: 4096,
			NewHandler: s.NewHandler})
		if err != nil {
			t.Fatal(err)
		}
		p.s[i], p.l[i] = s, l
	}
	for i := range 2 {
		if err := p.s[i].SetNeighbour("eth0", ip6[1-i], tcpMAC[1-i]); err != nil {
			t.Fatal(err)
		}
	}
	go p.pump()
	t.Cleanup(p.close)
	for _, bad := range []string{"[2001:2::9]:81", "[fe80::1]:81"} {
		if l, err := p.s[1].ListenTCP(netip.MustParseAddrPort(bad)); err == nil {
			l.Close()
			t.Errorf("listened on %s", bad)
		}
	}
	ln, err := p.s[1].ListenTCP(netip.MustParseAddrPort("[::]:80"))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if _, err := p.s[1].ListenTCP(netip.MustParseAddrPort("0.0.0.0:80")); err == nil {
		t.Errorf("0.0.0.0:80 and [::]:80 both listening")
	}
	data := make([]byte, 256<<10)
	for i := range data {
		data[i] = byte(i*7 + i>>9)
	}
	srv := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			srv <- err
			return
		}
		defer c.Close()
		if ra := c.RemoteAddr().(*net.TCPAddr).AddrPort().Addr(); ra != ip6[0] {
			srv <- errors.New("accepted from " + ra.String())
			return
		}
		got, err := io.ReadAll(c)
		if err == nil && !bytes.Equal(got, data) {
			err = errors.New("server received different bytes")
		}
		if err == nil {
			_, err = c.Write(data)
		}
		srv <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := p.s[0].DialTCP(ctx, netip.AddrPortFrom(ip6[1], 80))
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	defer c.Close()
	tc := c.(*tcp.Conn)
	if la := tc.LocalAddrPort().Addr(); la != ip6[0] {
		t.Errorf("local address %v, want %v", la, ip6[0])
	}
	c.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		c.Write(data)
		tc.CloseWrite()
	}()
	got, err := io.ReadAll(c)
	if err != nil || !bytes.Equal(got, data) {
		t.Fatalf("client read %d bytes (%v), want the %d sent back", len(got), err, len(data))
	}
	if err := <-srv; err != nil {
		t.Fatalf("server: %v", err)
	}
	if n := p.s[0].TCPStat(tcp.StatActiveOpens); n != 1 {
		t.Errorf("active opens %d", n)
	}
	// An ICMPv6 Packet Too Big quoting a segment reaches the engine: for this connection (nothing in
	// flight, so out of window) and for a port with none.
	ptb := func(lport uint16) []byte {
		quote := make([]byte, 40+20)
		proto.IPv6Fields{NextHeader: proto.ProtoTCP, HopLimit: 64, Src: ip6[0], Dst: ip6[1], PayloadLen: 1400}.Encode(quote)
		proto.TCPFields{SrcPort: lport, DstPort: 80, Seq: 12345, Flags: proto.TCPFlagACK}.Encode(quote[40:])
		router := netip.MustParseAddr("2001:2::99")
		m := icmp6Msg(proto.ICMPv6Fields{Type: proto.ICMPv6PacketTooBig, MTU: 1280}, router, ip6[0], quote)
		return ip6Frame(tcpMAC[0], tcpMAC[1], router, ip6[0], proto.ProtoICMPv6, 64, m)
	}
	p.mu.Lock()
	err = p.l[0].InjectBatch(0, ptb(tc.LocalAddrPort().Port()), ptb(tc.LocalAddrPort().Port()+1))
	p.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	if a, b := p.s[0].TCPStat(tcp.DropICMPOutOfWindow), p.s[0].TCPStat(tcp.DropICMPNoConnection); a != 1 || b != 1 {
		t.Errorf("packet too big: %d out of window, %d without a connection; want 1 and 1", a, b)
	}
}

// TestForward6Batch: a batch of many IPv6 destinations, mixed with IPv4, is routed with the batch's
// lookups done together (lookup6Batch) - each packet by its own destination, a run of one destination
// across the 64-address chunks too - and with a PreRouting hook, after the hook, on the destination it
// wrote.
func TestForward6Batch(t *testing.T) {
	for _, withHook := range []bool{false, true} {
		var hooks *pipeline.Hooks
		if withHook {
			// Rewrites 2001:2:50::/48 (no route) to 2001:2:100::/48 (via B), as a DNAT would.
			hooks = &pipeline.Hooks{}
			hooks.Register(pipeline.PreRouting, 0, "rewrite", pipeline.PacketFunc(func(p *pipeline.Packet) {
				if d := p.Data(); proto.Ethernet(d).EtherType() == proto.EtherTypeIPv6 {
					if ip := proto.IPv6(d[14:]); ip.Dst16()[5] == 0x50 {
						old := ip.Dst()
						ip[24+4], ip[24+5] = 0x01, 0x00 // 2001:2:50:: -> 2001:2:100:: (Dst is at offset 24)
						u := proto.UDP(ip[40:])
						u.SetChecksum(proto.UpdateChecksumAddr(u.Checksum(), old, ip.Dst()))
					}
				}
			}))
		}
		e := newEnv6(t, func(c *Config) { c.Hooks = hooks })
		var frames [][]byte
		want := map[string]int{}
		// 170 frames, so that the ICMPv6 errors they cause fit in the batch (MaxBatch) beside them.
		for i := range 100 {
			n := uint16(i + 1)
			switch i % 4 {
			case 0:
				frames = append(frames, udp6Frame(macLan, macA, netip.AddrPortFrom(ip6A, n), netip.AddrPortFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0, 2, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(n >> 8), byte(n)}), 2), 64, nil))
				want["forwarded6"]++
			case 1:
				frames = append(frames, udp6Frame(macLan, macA, netip.AddrPortFrom(ip6A, n), netip.AddrPortFrom(ip6BH, 2), 64, nil))
				want["admin prohibited"]++
			case 2:
				frames = append(frames, udp6Frame(macLan, macA, netip.AddrPortFrom(ip6A, n), netip.AddrPortFrom(ip6None, 2), 64, nil))
				if withHook {
					want["forwarded6"]++
				} else {
					want["no route"]++
				}
			case 3:
				frames = append(frames, udpFrame(macLan, macA, netip.AddrPortFrom(ipA, n), netip.AddrPortFrom(netip.MustParseAddr("198.18.200.9"), 2), 64, nil))
				want["forwarded4"]++
			}
		}
		for range 70 { // a run of one destination, longer than a lookup chunk
			frames = append(frames, udp6Frame(macLan, macA, netip.AddrPortFrom(ip6A, 7), netip.AddrPortFrom(ip6Far, 2), 64, nil))
			want["forwarded6"]++
		}
		if err := e.l.InjectBatch(portLan, frames...); err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		far := netip.MustParsePrefix("2001:2:100::/48")
		for _, f := range e.l.Sent(portWan) {
			if proto.Ethernet(f).EtherType() == proto.EtherTypeIPv4 {
				got["forwarded4"]++
				continue
			}
			p := parseOut6(t, f)
			if !far.Contains(p.ip.Dst()) || p.eth.Dst() != macB || p.ip.HopLimit() != 63 {
				t.Errorf("hook %v: forwarded to %v via %v hop limit %d", withHook, p.ip.Dst(), p.eth.Dst(), p.ip.HopLimit())
			}
			got["forwarded6"]++
		}
		for _, f := range e.l.Sent(portLan) {
			p := parseOut6(t, f)
			inner, perr := proto.ParseIPv6(p.icmp.Payload())
			switch {
			case perr != proto.OK:
				t.Errorf("hook %v: a frame back that quotes no IPv6 packet: % x", withHook, f)
			case p.icmp.Type() == proto.ICMPv6DestUnreachable && p.icmp.Code() == proto.ICMPv6AdminProhibited && inner.Dst() == ip6BH:
				got["admin prohibited"]++
			case p.icmp.Type() == proto.ICMPv6DestUnreachable && p.icmp.Code() == proto.ICMPv6NoRoute && inner.Dst() == ip6None:
				got["no route"]++
			default:
				t.Errorf("hook %v: ICMPv6 type %d code %d about %v", withHook, p.icmp.Type(), p.icmp.Code(), inner.Dst())
			}
		}
		if !maps.Equal(got, want) {
			t.Errorf("hook %v: %v, want %v (drops %v)", withHook, got, want, e.l.DropSummary())
		}
		e.checkHeld()
	}
}
