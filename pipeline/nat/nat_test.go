package nat_test

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/pipeline/conntrack"
	"github.com/xdpnet/xdpnet/pipeline/nat"
	"github.com/xdpnet/xdpnet/proto"
)

// TestMasqueradeUDP: a datagram from inside leaves with the gateway's address and the inside host's own
// port (free and in range); the reply comes back to the inside host; checksums verify both ways.
func TestMasqueradeUDP(t *testing.T) {
	g := newGW(t, gwOpts{})
	a, s := ap(hostA, 40000), ap(srvS, 53)
	out := parse(t, g.one(portIn, udpFrame(macIn, macA, a, s, "query"), portOut))
	if out.src() != ap(gwOut, 40000) || out.dst() != s || out.ip.TTL() != 63 {
		t.Fatalf("out: %v -> %v ttl %d, want %v -> %v ttl 63", out.src(), out.dst(), out.ip.TTL(), ap(gwOut, 40000), s)
	}
	if out.eth.Dst() != macS || out.eth.Src() != macOut {
		t.Fatalf("out MACs %v -> %v", out.eth.Src(), out.eth.Dst())
	}
	back := parse(t, g.one(portOut, udpFrame(macOut, macS, s, out.src(), "answer"), portIn))
	if back.src() != s || back.dst() != a || string(proto.UDP(back.l4).Payload()) != "answer" {
		t.Fatalf("back: %v -> %v", back.src(), back.dst())
	}
	st := g.n.Stats()
	if st.Created != 1 || st.Translated != 2 || st.Conntrack.Entries != 1 {
		t.Fatalf("stats %+v", st)
	}
}

// TestMasqueradePortClash: two inside hosts with the same source port to the same server get different
// external ports; each reply reaches its own host.
func TestMasqueradePortClash(t *testing.T) {
	g := newGW(t, gwOpts{})
	s := ap(srvS, 53)
	o1 := parse(t, g.one(portIn, udpFrame(macIn, macA, ap(hostA, 5000), s, "a"), portOut))
	o2 := parse(t, g.one(portIn, udpFrame(macIn, macA2, ap(hostB, 5000), s, "b"), portOut))
	if o1.src().Port() != 5000 || o2.src().Port() == 5000 || o2.src().Addr() != gwOut {
		t.Fatalf("external ports %v and %v: want 5000 kept for the first, another for the second", o1.src(), o2.src())
	}
	if o2.src().Port() < 1024 {
		t.Fatalf("external port %d outside the default range 1024-65535", o2.src().Port())
	}
	b2 := parse(t, g.one(portOut, udpFrame(macOut, macS, s, o2.src(), "2"), portIn))
	b1 := parse(t, g.one(portOut, udpFrame(macOut, macS, s, o1.src(), "1"), portIn))
	if b1.dst() != ap(hostA, 5000) || b2.dst() != ap(hostB, 5000) || b2.eth.Dst() != macA2 {
		t.Fatalf("replies went to %v and %v", b1.dst(), b2.dst())
	}
}

// TestPortAllocationNeverReusesLive fills a small port range: every live mapping keeps its port, the
// mapping that finds none is dropped and counted, and an expired mapping's port is given again.
func TestPortAllocationNeverReusesLive(t *testing.T) {
	g := newGW(t, gwOpts{portMin: 2000, portMax: 2015})
	s := ap(srvS, 53)
	seen := map[uint16]netip.AddrPort{}
	for i := 0; i < 16; i++ {
		in := ap(hostA, uint16(3000+i))
		o := parse(t, g.one(portIn, udpFrame(macIn, macA, in, s, "x"), portOut))
		p := o.src().Port()
		if p < 2000 || p > 2015 {
			t.Fatalf("port %d outside 2000-2015", p)
		}
		if prev, ok := seen[p]; ok {
			t.Fatalf("port %d given to %v and %v", p, prev, in)
		}
		seen[p] = in
	}
	g.none(portIn, udpFrame(macIn, macA, ap(hostA, 4000), s, "x"), nat.DropNoPort)
	// The same flows again keep their ports.
	for p, in := range seen {
		if o := parse(t, g.one(portIn, udpFrame(macIn, macA, in, s, "x"), portOut)); o.src().Port() != p {
			t.Fatalf("%v moved from port %d to %d", in, p, o.src().Port())
		}
	}
	// After the UDP timeout, the ports are free again.
	g.l.Advance(31 * time.Second)
	o := parse(t, g.one(portIn, udpFrame(macIn, macA, ap(hostA, 4000), s, "x"), portOut))
	if p := o.src().Port(); p < 2000 || p > 2015 {
		t.Fatalf("port %d after expiry", p)
	}
}

// TestMasqueradeTCP runs a connection through the gateway, checks the table's state at each step, and the
// refusal of a segment that would open a connection without SYN.
func TestMasqueradeTCP(t *testing.T) {
	g := newGW(t, gwOpts{})
	a, s := ap(hostA, 33000), ap(srvS, 80)
	state := func(want conntrack.State) {
		t.Helper()
		c, ok := g.n.Table().Lookup(conntrack.Tuple{Src: conntrack.Addr32(hostA), Dst: conntrack.Addr32(srvS),
			SrcPort: 33000, DstPort: 80, Proto: proto.ProtoTCP}, g.l.Now())
		if !ok || c.State != want {
			t.Fatalf("state %v (found %v), want %v", c.State, ok, want)
		}
	}
	o := parse(t, g.one(portIn, tcpFrame(macIn, macA, a, s, proto.TCPFlagSYN, 100, 0), portOut))
	ext := o.src()
	state(conntrack.StateSynSent)
	b := parse(t, g.one(portOut, tcpFrame(macOut, macS, s, ext, proto.TCPFlagSYN|proto.TCPFlagACK, 500, 101), portIn))
	if b.dst() != a || proto.TCP(b.l4).Ack() != 101 {
		t.Fatalf("SYN+ACK to %v", b.dst())
	}
	state(conntrack.StateSynRecv)
	g.one(portIn, tcpFrame(macIn, macA, a, s, proto.TCPFlagACK, 101, 501), portOut)
	state(conntrack.StateEstablished)
	g.one(portIn, tcpFrame(macIn, macA, a, s, proto.TCPFlagFIN|proto.TCPFlagACK, 101, 501), portOut)
	state(conntrack.StateFinWait)
	g.one(portOut, tcpFrame(macOut, macS, s, ext, proto.TCPFlagFIN|proto.TCPFlagACK, 501, 102), portIn)
	state(conntrack.StateLastAck)
	g.one(portIn, tcpFrame(macIn, macA, a, s, proto.TCPFlagACK, 102, 502), portOut)
	state(conntrack.StateTimeWait)

	// An ACK of no connection does not open one.
	g.none(portIn, tcpFrame(macIn, macA, ap(hostA, 33001), s, proto.TCPFlagACK, 1, 1), nat.DropInvalid)
	// Nothing from outside reaches inside unasked.
	g.none(portOut, udpFrame(macOut, macS, s, ap(hostA, 9), "x"), nat.DropUnsolicited)
}

// TestPing: echo identifiers are mapped like ports; two inside hosts with the same identifier both get
// their replies.
func TestPing(t *testing.T) {
	g := newGW(t, gwOpts{})
	o1 := parse(t, g.one(portIn, echoFrame(macIn, macA, hostA, srvS, proto.ICMPv4EchoRequest, 7, 1, 64), portOut))
	o2 := parse(t, g.one(portIn, echoFrame(macIn, macA2, hostB, srvS, proto.ICMPv4EchoRequest, 7, 1, 64), portOut))
	if o1.ip.Src() != gwOut || o2.ip.Src() != gwOut || o1.port(0) == o2.port(0) {
		t.Fatalf("requests leave as %v id %d and %v id %d", o1.ip.Src(), o1.port(0), o2.ip.Src(), o2.port(0))
	}
	r2 := parse(t, g.one(portOut, echoFrame(macOut, macS, srvS, gwOut, proto.ICMPv4EchoReply, o2.port(0), 1, 64), portIn))
	r1 := parse(t, g.one(portOut, echoFrame(macOut, macS, srvS, gwOut, proto.ICMPv4EchoReply, o1.port(0), 1, 64), portIn))
	if r1.ip.Dst() != hostA || r1.port(0) != 7 || r2.ip.Dst() != hostB || r2.port(0) != 7 {
		t.Fatalf("replies to %v id %d and %v id %d", r1.ip.Dst(), r1.port(0), r2.ip.Dst(), r2.port(0))
	}
	// An echo reply of no request is not translated; to the gateway's address, the gateway's stack drops it.
	g.send(portOut, echoFrame(macOut, macS, srvS, gwOut, proto.ICMPv4EchoReply, 999, 1, 64))
	if n := len(g.l.Sent(portIn)); n != 0 {
		t.Fatalf("stray echo reply forwarded inside")
	}
}

// TestICMPErrorTranslation: traceroute through the NAT. A router outside answers a UDP probe whose TTL ran
// out with Time Exceeded quoting the translated probe; the gateway sends it to the inside host with the
// quote translated back (addresses, port, quoted IP checksum, quoted UDP checksum), every checksum valid.
func TestICMPErrorTranslation(t *testing.T) {
	for _, c := range []struct {
		name  string
		proto uint8
		full  bool
	}{{"udp-8-bytes", proto.ProtoUDP, false}, {"udp-whole", proto.ProtoUDP, true}, {"tcp-8-bytes", proto.ProtoTCP, false},
		{"tcp-whole", proto.ProtoTCP, true}} {
		t.Run(c.name, func(t *testing.T) {
			g := newGW(t, gwOpts{})
			a, f := ap(hostA, 45000), ap(farF, 33434)
			l4 := udp(a, f, "probe")
			if c.proto == proto.ProtoTCP {
				l4 = tcp(a, f, proto.TCPFlagSYN, 1, 0, "")
			}
			probe := ipFrame(macIn, macA, proto.IPv4Fields{Protocol: c.proto, Src: hostA, Dst: farF, TTL: 2}, l4)
			sent := g.one(portIn, probe, portOut)
			o := parse(t, sent)
			if o.ip.TTL() != 1 || o.ip.Src() != gwOut || o.eth.Dst() != macR {
				t.Fatalf("probe leaves with ttl %d from %v to %v", o.ip.TTL(), o.ip.Src(), o.eth.Dst())
			}
			// R: TTL would reach 0 - Time Exceeded to the probe's (translated) source.
			te := icmpErrFrame(macOut, macR, rtrR, gwOut, proto.ICMPv4TimeExceeded, proto.ICMPv4TTLExceeded, sent, c.full)
			back := parse(t, g.one(portOut, te, portIn))
			if back.ip.Src() != rtrR || back.ip.Dst() != hostA || back.eth.Dst() != macA {
				t.Fatalf("time exceeded %v -> %v", back.ip.Src(), back.ip.Dst())
			}
			m := proto.ICMPv4(back.l4)
			if m.Type() != proto.ICMPv4TimeExceeded {
				t.Fatalf("type %d", m.Type())
			}
			q := proto.IPv4(m.Payload())
			if q.Src() != hostA || q.Dst() != farF || !proto.IPv4(q[:q.HeaderLen()]).ChecksumValid() {
				t.Fatalf("quote %v -> %v, header checksum valid %v", q.Src(), q.Dst(), proto.IPv4(q[:q.HeaderLen()]).ChecksumValid())
			}
			ql4 := q[q.HeaderLen():]
			if binary.BigEndian.Uint16(ql4) != 45000 || binary.BigEndian.Uint16(ql4[2:]) != 33434 {
				t.Fatalf("quoted ports %d -> %d", binary.BigEndian.Uint16(ql4), binary.BigEndian.Uint16(ql4[2:]))
			}
			// The whole segment quoted: its checksum must verify, and be what the inside host sent.
			if c.full && c.proto == proto.ProtoUDP &&
				(!proto.UDP(ql4).ChecksumValid(hostA, farF) || proto.UDP(ql4).Checksum() != proto.UDP(probe[34:]).Checksum()) {
				t.Fatal("quoted UDP checksum not restored")
			}
			if c.full && c.proto == proto.ProtoTCP &&
				(!proto.TCP(ql4).ChecksumValid(hostA, farF) || proto.TCP(ql4).Checksum() != proto.TCP(probe[34:]).Checksum()) {
				t.Fatal("quoted TCP checksum not restored")
			}
			if st := g.n.Stats(); st.ICMPErrors != 1 {
				t.Fatalf("ICMP errors translated: %d", st.ICMPErrors)
			}
		})
	}
}

// TestICMPErrorAboutPing: a port or host unreachable quoting an echo request maps the identifier back.
func TestICMPErrorAboutPing(t *testing.T) {
	g := newGW(t, gwOpts{})
	sent := g.one(portIn, echoFrame(macIn, macA2, hostB, farF, proto.ICMPv4EchoRequest, 0x4242, 9, 64), portOut)
	un := icmpErrFrame(macOut, macR, rtrR, gwOut, proto.ICMPv4DestUnreachable, proto.ICMPv4HostUnreachable, sent, true)
	back := parse(t, g.one(portOut, un, portIn))
	q := proto.IPv4(proto.ICMPv4(back.l4).Payload())
	qm := proto.ICMPv4(q[q.HeaderLen():])
	if back.ip.Dst() != hostB || q.Src() != hostB || qm.ID() != 0x4242 || !qm.ChecksumValid() {
		t.Fatalf("unreachable to %v quoting %v id %#x (quoted checksum valid %v)", back.ip.Dst(), q.Src(), qm.ID(), qm.ChecksumValid())
	}
}

// TestGatewayErrorHidesInside: when the gateway itself must answer a translated packet with an error (a
// reply whose TTL runs out on the way in), the error towards the outside quotes the packet as the outside
// sent it, not the inside address.
func TestGatewayErrorHidesInside(t *testing.T) {
	g := newGW(t, gwOpts{})
	a, s := ap(hostA, 41000), ap(srvS, 53)
	o := parse(t, g.one(portIn, udpFrame(macIn, macA, a, s, "q"), portOut))
	reply := ipFrame(macOut, macS, proto.IPv4Fields{Protocol: proto.ProtoUDP, Src: srvS, Dst: gwOut, TTL: 1}, udp(s, o.src(), "r"))
	te := parse(t, g.one(portOut, reply, portOut))
	q := proto.IPv4(proto.ICMPv4(te.l4).Payload())
	ql4 := q[q.HeaderLen():]
	if te.ip.Dst() != srvS || q.Dst() != gwOut || binary.BigEndian.Uint16(ql4[2:]) != o.src().Port() ||
		!proto.IPv4(q[:q.HeaderLen()]).ChecksumValid() {
		t.Fatalf("time exceeded to %v quotes dst %v port %d", te.ip.Dst(), q.Dst(), binary.BigEndian.Uint16(ql4[2:]))
	}
}

// TestForward: a port forward takes a connection from outside to an inside server; the server's replies
// leave with the gateway's address and the forwarded port.
func TestForward(t *testing.T) {
	g := newGW(t, gwOpts{forwards: []nat.Forward{{Proto: proto.ProtoTCP, Interface: "out", Addr: gwOut, Port: 8080,
		To: ap(hostB, 80)}}})
	c := ap(srvS, 51000)
	in := parse(t, g.one(portOut, tcpFrame(macOut, macS, c, ap(gwOut, 8080), proto.TCPFlagSYN, 1, 0), portIn))
	if in.src() != c || in.dst() != ap(hostB, 80) || in.eth.Dst() != macA2 {
		t.Fatalf("forwarded SYN %v -> %v", in.src(), in.dst())
	}
	out := parse(t, g.one(portIn, tcpFrame(macIn, macA2, ap(hostB, 80), c, proto.TCPFlagSYN|proto.TCPFlagACK, 9, 2), portOut))
	if out.src() != ap(gwOut, 8080) || out.dst() != c {
		t.Fatalf("server's SYN+ACK %v -> %v", out.src(), out.dst())
	}
	// No masquerade mapping may take the forwarded port.
	for i := 0; i < 50; i++ {
		o := parse(t, g.one(portIn, udpFrame(macIn, macA, ap(hostA, 8080), ap(srvS, uint16(7000+i)), "x"), portOut))
		if o.src().Port() == 8080 && o.ip.Protocol() == proto.ProtoTCP {
			t.Fatal("masquerade gave the forwarded port")
		}
	}
	o := parse(t, g.one(portIn, tcpFrame(macIn, macA, ap(hostA, 8080), ap(srvS, 443), proto.TCPFlagSYN, 1, 0), portOut))
	if o.src().Port() == 8080 {
		t.Fatal("a TCP masquerade mapping took the forwarded TCP port")
	}
}

// TestPartialChecksums: frames from veth peers with partial TCP/UDP checksums are completed before their
// translation, in both directions, and leave with valid checksums.
func TestPartialChecksums(t *testing.T) {
	g := newGW(t, gwOpts{partial: true, forwards: []nat.Forward{{Proto: proto.ProtoUDP, Interface: "out", Addr: gwOut,
		Port: 5353, To: ap(hostA, 53)}}})
	partial := func(f []byte) []byte {
		ip := proto.IPv4(f[14:])
		l4 := ip.Payload()
		off := 6
		if ip.Protocol() == proto.ProtoTCP {
			off = 16
		}
		binary.BigEndian.PutUint16(l4[off:], proto.Fold(proto.PseudoHeaderSum(ip.Src(), ip.Dst(), ip.Protocol(), len(l4))))
		return f
	}
	a, s := ap(hostA, 40001), ap(srvS, 80)
	o := parse(t, g.one(portIn, partial(tcpFrame(macIn, macA, a, s, proto.TCPFlagSYN, 1, 0)), portOut))
	parse(t, g.one(portOut, partial(tcpFrame(macOut, macS, s, o.src(), proto.TCPFlagSYN|proto.TCPFlagACK, 1, 2)), portIn))
	parse(t, g.one(portOut, partial(udpFrame(macOut, macS, ap(srvS, 999), ap(gwOut, 5353), "dns?")), portIn))
	if st := g.n.Stats(); st.CsumCompleted != 2 {
		t.Fatalf("partial checksums completed before a rewrite: %d, want 2 (the reply and the forward)", st.CsumCompleted)
	}
}

// TestFragments: the first fragment of a large datagram is translated with its ports; later fragments get
// the same address through the fragment cache; a later fragment whose first was never seen is dropped
// rather than leave with the inside address.
func TestFragments(t *testing.T) {
	g := newGW(t, gwOpts{})
	a, s := ap(hostA, 42000), ap(srvS, 53)
	data := make([]byte, 1000)
	for i := range data {
		data[i] = byte(i)
	}
	whole := udp(a, s, string(data))
	first := ipFrame(macIn, macA, proto.IPv4Fields{Protocol: proto.ProtoUDP, Src: hostA, Dst: srvS, ID: 77, MoreFragments: true}, whole[:512])
	second := ipFrame(macIn, macA, proto.IPv4Fields{Protocol: proto.ProtoUDP, Src: hostA, Dst: srvS, ID: 77, FragmentOffset: 512}, whole[512:])
	o1 := parse(t, g.one(portIn, first, portOut))
	o2 := parse(t, g.one(portIn, second, portOut))
	if o1.ip.Src() != gwOut || o2.ip.Src() != gwOut || o2.ip.FragmentOffset() != 512 {
		t.Fatalf("fragments leave from %v and %v", o1.ip.Src(), o2.ip.Src())
	}
	// Reassembled, the translated datagram's checksum verifies.
	re := append(append([]byte{}, o1.l4...), o2.l4...)
	if !proto.UDP(re).ChecksumValid(gwOut, srvS) {
		t.Fatal("reassembled datagram's UDP checksum does not verify")
	}
	orphan := ipFrame(macIn, macA, proto.IPv4Fields{Protocol: proto.ProtoUDP, Src: hostA, Dst: srvS, ID: 78, FragmentOffset: 512}, whole[512:])
	g.none(portIn, orphan, nat.DropFragment)
}

func TestConfigErrors(t *testing.T) {
	bad := []nat.Config{
		{},
		{Masquerade: []nat.Masquerade{{Interface: "out"}}},
		{Masquerade: []nat.Masquerade{{Interface: "out", Addr: gwOut, PortMin: 9, PortMax: 8}}},
		{Forwards: []nat.Forward{{Proto: proto.ProtoICMP, Interface: "out", Addr: gwOut, Port: 1, To: ap(hostA, 1)}}},
		{Forwards: []nat.Forward{
			{Proto: proto.ProtoTCP, Interface: "out", Addr: gwOut, Port: 1, To: ap(hostA, 1)},
			{Proto: proto.ProtoTCP, Interface: "out", Addr: gwOut, Port: 1, To: ap(hostB, 1)}}},
	}
	for _, c := range bad {
		if _, err := nat.New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

func TestParseForward(t *testing.T) {
	f, err := nat.ParseForward("tcp:8080=198.18.0.2:80")
	if err != nil || f.Proto != proto.ProtoTCP || f.Port != 8080 || f.To != netip.MustParseAddrPort("198.18.0.2:80") {
		t.Fatalf("%+v %v", f, err)
	}
	if f, err := nat.ParseForward("udp:53=198.18.0.3:5353"); err != nil || f.Proto != proto.ProtoUDP {
		t.Fatalf("%+v %v", f, err)
	}
	for _, s := range []string{"", "tcp:8080", "sctp:1=198.18.0.2:1", "tcp:0=198.18.0.2:80", "tcp:80=198.18.0.2",
		"tcp:80=[2001:2::1]:80", "tcp:70000=198.18.0.2:80"} {
		if _, err := nat.ParseForward(s); err == nil {
			t.Errorf("ParseForward(%q) accepted", s)
		}
	}
}

// TestInsideErrorGoesOut: an inside host answers a reply it no longer wants with Port Unreachable; the
// error leaves with the gateway's address and its quote shows the packet as the outside sent it.
func TestInsideErrorGoesOut(t *testing.T) {
	g := newGW(t, gwOpts{})
	a, s := ap(hostA, 46000), ap(srvS, 53)
	o := parse(t, g.one(portIn, udpFrame(macIn, macA, a, s, "q"), portOut))
	in := g.one(portOut, udpFrame(macOut, macS, s, o.src(), "late answer"), portIn)
	un := icmpErrFrame(macIn, macA, hostA, srvS, proto.ICMPv4DestUnreachable, proto.ICMPv4PortUnreachable, in, true)
	out := parse(t, g.one(portIn, un, portOut))
	q := proto.IPv4(proto.ICMPv4(out.l4).Payload())
	qu := proto.UDP(q.Payload())
	if out.ip.Src() != gwOut || out.ip.Dst() != srvS || q.Src() != srvS || q.Dst() != gwOut || qu.DstPort() != o.src().Port() {
		t.Fatalf("error %v -> %v quoting %v -> %v:%d, want %v -> %v quoting %v -> %v", out.ip.Src(), out.ip.Dst(),
			q.Src(), q.Dst(), qu.DstPort(), gwOut, srvS, srvS, o.src())
	}
	if !qu.ChecksumValid(q.Src(), q.Dst()) || !proto.IPv4(q[:q.HeaderLen()]).ChecksumValid() {
		t.Fatal("quoted checksums wrong")
	}
}

// TestHairpin: an inside host reaches an inside server through the outside address and the forwarded port;
// the server sees the gateway's inside address (so it answers through the gateway), and the client sees
// the answer come from the outside address and port it called.
func TestHairpin(t *testing.T) {
	fw := []nat.Forward{{Proto: proto.ProtoTCP, Interface: "out", Addr: gwOut, Port: 8080, To: ap(hostB, 80)}}
	g := newGW(t, gwOpts{forwards: fw, hairpin: true})
	a := ap(hostA, 50000)
	in := parse(t, g.one(portIn, tcpFrame(macIn, macA, a, ap(gwOut, 8080), proto.TCPFlagSYN, 1, 0), portIn))
	if in.dst() != ap(hostB, 80) || in.src().Addr() != gwIn || in.eth.Dst() != macA2 {
		t.Fatalf("hairpinned SYN %v -> %v (to %v)", in.src(), in.dst(), in.eth.Dst())
	}
	back := parse(t, g.one(portIn, tcpFrame(macIn, macA2, ap(hostB, 80), in.src(), proto.TCPFlagSYN|proto.TCPFlagACK, 9, 2), portIn))
	if back.src() != ap(gwOut, 8080) || back.dst() != a || back.eth.Dst() != macA {
		t.Fatalf("server's answer %v -> %v", back.src(), back.dst())
	}
	// Without Hairpin the same SYN is the gateway's own (its stack answers RST), not forwarded.
	g2 := newGW(t, gwOpts{forwards: fw})
	g2.send(portIn, tcpFrame(macIn, macA, a, ap(gwOut, 8080), proto.TCPFlagSYN, 1, 0))
	for _, f := range g2.l.Sent(portIn) {
		if p := parse(t, f); p.ip.Dst() == hostB {
			t.Fatal("forwarded inside without Hairpin")
		}
	}
}
