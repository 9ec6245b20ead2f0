package stack

import (
	"encoding/binary"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
)

// noCheck marks a case whose drop reason is not asserted.
const noCheck = pipeline.DropReason(0xffff)

// fix recomputes the IPv4 header checksum of an Ethernet frame after a test edited the header.
func fix(f []byte) []byte {
	hl := int(f[14]&0xf) * 4
	if hl < 20 || 14+hl > len(f) {
		return f
	}
	f[24], f[25] = 0, 0
	binary.BigEndian.PutUint16(f[24:], proto.Checksum(f[14:14+hl]))
	return f
}

// TestBadFramesDropped feeds malformed and forbidden frames: each is dropped with its reason, nothing is
// forwarded, nothing panics, no frame leaks.
func TestBadFramesDropped(t *testing.T) {
	good := func() []byte {
		return udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipFar, 2), 64, []byte("payload!"))
	}
	withSrc := func(a string) []byte {
		return udpFrame(macLan, macA, netip.AddrPortFrom(netip.MustParseAddr(a), 1), netip.AddrPortFrom(ipFar, 2), 64, nil)
	}
	withDst := func(a string) []byte {
		return udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(netip.MustParseAddr(a), 2), 64, nil)
	}
	edit := func(f func([]byte) []byte) []byte { return f(good()) }
	cases := []struct {
		name  string
		frame []byte
		why   pipeline.DropReason
	}{
		{"runt ethernet", good()[:10], pipeline.DropTruncated},
		{"ip shorter than 20", good()[:14+19], pipeline.DropTruncated},
		{"version 6 in ipv4 ethertype", edit(func(f []byte) []byte { f[14] = 0x65; return fix(f) }), pipeline.DropIPVersion},
		{"ihl 4", edit(func(f []byte) []byte { f[14] = 0x44; return f }), pipeline.DropIPHeaderLength},
		{"ihl 15 past frame", edit(func(f []byte) []byte { f[14] = 0x4f; return f }), pipeline.DropIPHeaderLength},
		{"total length < header", edit(func(f []byte) []byte { binary.BigEndian.PutUint16(f[16:], 19); return fix(f) }), pipeline.DropIPTotalLength},
		{"total length > frame", edit(func(f []byte) []byte { binary.BigEndian.PutUint16(f[16:], 1000); return fix(f) }), pipeline.DropIPTotalLength},
		{"bad checksum", edit(func(f []byte) []byte { f[24] ^= 0xff; return f }), pipeline.DropIPChecksum},
		{"ttl 0", edit(func(f []byte) []byte { f[22] = 0; return fix(f) }), pipeline.DropTTLExpired},
		{"ttl 1", edit(func(f []byte) []byte { f[22] = 1; return fix(f) }), pipeline.DropTTLExpired},
		{"source 0/8", withSrc("0.1.2.3"), pipeline.DropMartianSource},
		{"source 0.0.0.0 forwarded", withSrc("0.0.0.0"), pipeline.DropMartianSource},
		{"source loopback", withSrc("127.0.0.1"), pipeline.DropMartianSource},
		{"source class E", withSrc("240.0.0.1"), pipeline.DropMartianSource},
		{"source limited broadcast", withSrc("255.255.255.255"), pipeline.DropMartianSource},
		{"source link-local", withSrc("169.254.1.1"), pipeline.DropMartianSource},
		{"source multicast", withSrc("224.0.0.5"), pipeline.DropMartianSource},
		{"destination loopback", withDst("127.0.0.1"), pipeline.DropMartianDestination},
		{"destination 0/8", withDst("0.0.0.9"), pipeline.DropMartianDestination},
		{"destination class E", withDst("250.1.1.1"), pipeline.DropMartianDestination},
		{"destination link-local", withDst("169.254.0.9"), pipeline.DropMartianDestination},
		{"destination multicast", withDst("239.1.1.1"), DropMulticast},
		{"link-layer broadcast to forward", edit(func(f []byte) []byte { copy(f, proto.BroadcastMAC[:]); return f }), pipeline.DropL2Broadcast},
		{"link-layer multicast to forward", edit(func(f []byte) []byte { f[0] = 0x01; return f }), pipeline.DropL2Broadcast},
		{"unicast to another MAC", edit(func(f []byte) []byte { f[5] = 0x99; return f }), pipeline.DropL2NotForUs},
		{"vlan tagged", edit(func(f []byte) []byte { binary.BigEndian.PutUint16(f[12:], 0x8100); return f }), pipeline.DropVLAN},
		{"ipv6", edit(func(f []byte) []byte { binary.BigEndian.PutUint16(f[12:], 0x86dd); return f }), pipeline.DropIPv6Unsupported},
		{"unknown ethertype", edit(func(f []byte) []byte { binary.BigEndian.PutUint16(f[12:], 0x88cc); return f }), pipeline.DropUnknownEtherType},
		{"truncated arp", arpFrame(proto.ARPRequest, macA, proto.BroadcastMAC, ipA, proto.MAC{}, ipLan)[:14+20], pipeline.DropARPMalformed},
		{"fragment for us", func() []byte {
			f := udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipLan, 7), 64, nil)
			binary.BigEndian.PutUint16(f[20:], 0x2000)
			return fix(f)
		}(), pipeline.DropFragment},
		{"non-first fragment for us", func() []byte {
			f := udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipLan, 7), 64, nil)
			binary.BigEndian.PutUint16(f[20:], 0x0010)
			return fix(f)
		}(), pipeline.DropFragment},
		{"options with bad length", optionsFrame([]byte{7, 9, 4, 0}), pipeline.DropIPOptions},
		{"loose source route", optionsFrame([]byte{131, 3, 4, 0}), pipeline.DropIPOptions},
		{"udp for us with bad checksum", func() []byte {
			f := udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipLan, 7), 64, []byte("abc"))
			f[len(f)-1] ^= 1
			return f
		}(), pipeline.DropUDPMalformed},
		{"udp length beyond ip", func() []byte {
			f := udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipLan, 7), 64, []byte("abc"))
			binary.BigEndian.PutUint16(f[38:], 200)
			return f
		}(), pipeline.DropUDPMalformed},
		{"icmp bad checksum", func() []byte {
			f := echoFrame(macLan, macA, ipA, ipLan, 64, 1, 1, []byte("x"))
			f[len(f)-1] ^= 1
			return f
		}(), pipeline.DropICMPMalformed},
		{"protocol nobody handles", func() []byte {
			return ipFrame(macLan, macA, proto.IPv4Fields{TTL: 64, Protocol: 99, Src: ipA, Dst: ipLan}, []byte("abcd"))
		}(), pipeline.DropUnknownProtocol},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t, nil)
			e.inject(portLan, c.frame)
			if s := e.l.Sent(portWan); len(s) != 0 {
				t.Fatalf("forwarded %d frames", len(s))
			}
			// Whatever went back to A must be an ICMP error (never anything forwarded).
			for _, f := range e.l.Sent(portLan) {
				if p := parseOut(t, f); p.icmp == nil || !p.icmp.IsError() {
					t.Fatalf("sent back something other than an ICMP error")
				}
			}
			want := c.why
			if want == noCheck { // forwarded traffic is not checked above L3: a router passes the bad UDP checksum on
				return
			}
			if n := e.l.Dropped(want); n != 1 {
				t.Fatalf("dropped %v, want one %v", e.l.DropSummary(), want)
			}
			e.checkHeld()
		})
	}
}

func optionsFrame(opts []byte) []byte {
	f := udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipFar, 2), 64, nil)
	hl := 20 + len(opts)
	out := make([]byte, 0, len(f)+len(opts))
	out = append(out, f[:34]...)
	out = append(out, opts...)
	out = append(out, f[34:]...)
	out[14] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(out[16:], uint16(len(out)-14))
	return fix(out)
}

// TestNoICMPAboutICMPErrorsOrBroadcasts checks the RFC 1812 §4.3.2.7 exclusions.
func TestNoICMPAboutICMPErrorsOrBroadcasts(t *testing.T) {
	e := newEnv(t, nil)
	// An ICMP error with TTL 1 in transit: dropped, no time exceeded about it.
	m := make([]byte, 8+28)
	proto.ICMPv4Fields{Type: proto.ICMPv4DestUnreachable, Code: 3}.Encode(m, make([]byte, 28))
	e.inject(portLan, ipFrame(macLan, macA, proto.IPv4Fields{TTL: 1, Protocol: proto.ProtoICMP, Src: ipA, Dst: ipFar}, m))
	// A non-first fragment with TTL 1.
	f := udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipFar, 2), 1, nil)
	binary.BigEndian.PutUint16(f[20:], 0x0008)
	e.inject(portLan, fix(f))
	// A broadcast UDP to a closed port: no port unreachable.
	e.inject(portLan, udpFrame(proto.BroadcastMAC, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(netip.MustParseAddr("255.255.255.255"), 9), 64, nil))
	e.inject(portLan, udpFrame(proto.BroadcastMAC, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(netip.MustParseAddr("198.18.0.255"), 9), 64, nil))
	e.none()
	if e.l.Dropped(pipeline.DropTTLExpired) != 2 || e.l.Dropped(pipeline.DropUDPNoSocket) != 2 {
		t.Errorf("drops %v", e.l.DropSummary())
	}
	e.checkHeld()
}

func TestICMPRateLimit(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.ICMPRate, c.ICMPBurst = 10, 3 })
	for range 10 {
		e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipNone, 2), 64, nil))
	}
	if n := len(e.l.Sent(portLan)); n != 3 {
		t.Errorf("%d ICMP errors in a burst, want 3 (the bucket depth)", n)
	}
	e.l.Advance(100 * time.Millisecond) // one token at 10/s
	e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipNone, 2), 64, nil))
	e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipNone, 2), 64, nil))
	if n := len(e.l.Sent(portLan)); n != 1 {
		t.Errorf("%d ICMP errors after 100ms, want 1", n)
	}
	if st := e.s.Stats(); st.ICMPRateLimited != 8 {
		t.Errorf("ICMPRateLimited = %d, want 8", st.ICMPRateLimited)
	}
}

// TestNeighbourResolution: packets to an unknown next hop wait, one ARP request goes out (no more than
// one per second), the reply releases them in order, and the queue is bounded.
func TestNeighbourResolution(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.NeighbourQueueLen = 4 })
	ipC := netip.MustParseAddr("198.19.0.3")
	macC := proto.MAC{0x02, 0xcc, 0, 0, 0, 0x0c}
	for i := range 6 {
		e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipC, 2), 64, []byte{byte(i)}))
	}
	out := e.l.Sent(portWan)
	if len(out) != 1 {
		t.Fatalf("%d frames on wan, want 1 ARP request", len(out))
	}
	a := mustARP(t, out[0])
	if a.Op() != proto.ARPRequest || a.TargetIP() != ipC || a.SenderIP() != ipWan || a.SenderMAC() != macWan {
		t.Fatalf("request %+v", a.Fields())
	}
	if e.l.Dropped(pipeline.DropNeighbourQueueFull) != 2 {
		t.Errorf("drops %v, want 2 neighbour_queue_full", e.l.DropSummary())
	}
	e.checkHeld()
	if e.l.Outstanding() != 4 {
		t.Errorf("%d frames held, want 4", e.l.Outstanding())
	}
	e.inject(portWan, arpFrame(proto.ARPReply, macC, macWan, ipC, macWan, ipWan))
	out = e.l.Sent(portWan)
	if len(out) != 4 {
		t.Fatalf("%d released, want 4", len(out))
	}
	for i, f := range out {
		p := parseOut(t, f)
		if p.eth.Dst() != macC || p.eth.Src() != macWan || p.ip.TTL() != 63 || p.ip.Payload()[8] != byte(i) {
			t.Errorf("released %d: %v -> %v TTL %d data %d", i, p.eth.Src(), p.eth.Dst(), p.ip.TTL(), p.ip.Payload()[8])
		}
	}
	e.checkHeld()
	if e.l.Outstanding() != 0 {
		t.Errorf("%d frames still held", e.l.Outstanding())
	}
}

// TestHeldPacketsDrainedAtShutdown: packets waiting for ARP when the driver stops are handed back as
// counted drops, so no frame leaks.
func TestHeldPacketsDrainedAtShutdown(t *testing.T) {
	e := newEnv(t, nil)
	ipC := netip.MustParseAddr("198.19.0.3")
	for i := range 3 {
		e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipC, 2), 64, []byte{byte(i)}))
	}
	if e.l.Outstanding() != 3 {
		t.Fatalf("%d frames held before shutdown, want 3", e.l.Outstanding())
	}
	e.l.Drain()
	if e.l.Outstanding() != 0 || e.l.Dropped(pipeline.DropShutdown) != 3 {
		t.Fatalf("after Drain: %d frames outstanding, drops %v; want 0 and 3 shutdown", e.l.Outstanding(), e.l.DropSummary())
	}
	e.checkHeld()
}

// TestNeighbourFailure: after MaxProbes requests a second apart with no answer, the held packets are
// dropped as neighbour_failed and each answered with host unreachable.
func TestNeighbourFailure(t *testing.T) {
	e := newEnv(t, nil)
	var ins [][]byte
	for i := range 2 {
		in := udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipDead, 2), 64, []byte{byte(i)})
		ins = append(ins, in)
		e.inject(portLan, in)
	}
	requests := len(e.l.Sent(portWan))
	for range 10 {
		if w := e.l.WakeAt(); w == 0 {
			break
		}
		e.l.AdvanceTo(e.l.WakeAt())
		requests += len(e.l.Sent(portWan))
	}
	if requests != DefaultMaxProbes {
		t.Errorf("%d ARP requests, want %d", requests, DefaultMaxProbes)
	}
	errs := e.l.Sent(portLan)
	if len(errs) != 2 {
		t.Fatalf("%d ICMP errors, want 2 (drops %v)", len(errs), e.l.DropSummary())
	}
	for i, f := range errs {
		// The quoted header has the TTL already decremented by the forwarding step.
		want := append([]byte(nil), ins[i]...)
		want[22]--
		fix(want)
		checkICMPError(t, f, proto.ICMPv4DestUnreachable, proto.ICMPv4HostUnreachable, 0, want, ipLan)
	}
	if e.l.Dropped(pipeline.DropNeighbourFailed) != 2 {
		t.Errorf("drops %v", e.l.DropSummary())
	}
	// While failed, new packets are answered at once, without a new request.
	e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipDead, 2), 64, nil))
	if len(e.l.Sent(portWan)) != 0 || len(e.l.Sent(portLan)) != 1 {
		t.Errorf("failed neighbour: expected one immediate host unreachable and no request")
	}
	var st NeighbourState = 99
	for _, n := range e.s.Neighbours() {
		if n.Addr == netip.MustParseAddr("198.19.0.99") {
			st = n.State
		}
	}
	if st != NeighbourFailed {
		t.Errorf("neighbour state %v, want failed", st)
	}
	e.checkHeld()
}

// TestNeighbourAging: a reachable entry turns stale after ReachableTime, is still used, and is re-probed.
func TestNeighbourAging(t *testing.T) {
	e := newEnv(t, nil)
	e.l.Advance(DefaultReachableTime + time.Second)
	e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipFar, 2), 64, nil))
	out := e.l.Sent(portWan)
	if len(out) != 2 {
		t.Fatalf("%d frames, want the forwarded packet and a re-probe", len(out))
	}
	if a := mustARP(t, out[1]); a.TargetIP() != ipB {
		t.Errorf("probe for %v", a.TargetIP())
	}
	if p := parseOut(t, out[0]); p.eth.Dst() != macB {
		t.Errorf("stale neighbour not used")
	}
	e.inject(portWan, arpFrame(proto.ARPReply, macB, macWan, ipB, macWan, ipWan))
	for _, n := range e.s.Neighbours() {
		if n.Addr == ipB && n.State != NeighbourReachable {
			t.Errorf("after reply: %v", n.State)
		}
	}
	e.checkHeld()
}

func TestPortUnreachable(t *testing.T) {
	e := newEnv(t, nil)
	in := udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipLan, 9), 64, []byte("anyone?"))
	e.inject(portLan, in)
	checkICMPError(t, e.only(portLan), proto.ICMPv4DestUnreachable, proto.ICMPv4PortUnreachable, 0, in, ipLan)
	if e.l.Dropped(pipeline.DropUDPNoSocket) != 1 {
		t.Errorf("drops %v", e.l.DropSummary())
	}
}

func TestUDPSocket(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.UDPQueueLen = 2 })
	c, err := e.s.ListenUDP(netip.AddrPortFrom(ipLan, 7000))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := e.s.ListenUDP(netip.MustParseAddrPort("0.0.0.0:7000")); err == nil {
		t.Error("second bind of port 7000 succeeded")
	}
	from := netip.AddrPortFrom(ipA, 4000)
	for i := range 3 {
		e.inject(portLan, udpFrame(macLan, macA, from, netip.AddrPortFrom(ipLan, 7000), 64, []byte{'m', byte('0' + i)}))
	}
	if e.l.Dropped(pipeline.DropSocketQueueFull) != 1 {
		t.Errorf("drops %v, want one socket_queue_full", e.l.DropSummary())
	}
	e.checkHeld()
	buf := make([]byte, 100)
	c.SetReadDeadline(time.Now().Add(time.Second))
	for i := range 2 {
		n, addr, err := c.ReadFrom(buf)
		if err != nil {
			t.Fatal(err)
		}
		if string(buf[:n]) != string([]byte{'m', byte('0' + i)}) || addr.(*net.UDPAddr).AddrPort() != from {
			t.Errorf("read %q from %v", buf[:n], addr)
		}
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	if _, _, err := c.ReadFrom(buf); err == nil || !err.(net.Error).Timeout() {
		t.Errorf("read past the deadline: %v, want a timeout", err)
	}
	// Reply: WriteTo queues and wakes the poller; the next Tick builds the frame.
	wakes := e.l.Wakes()
	if _, err := c.WriteTo([]byte("pong"), net.UDPAddrFromAddrPort(from)); err != nil {
		t.Fatal(err)
	}
	if e.l.Wakes() != wakes+1 {
		t.Error("WriteTo did not wake the queue")
	}
	e.l.Poll()
	p := parseOut(t, e.only(portLan))
	u, perr := proto.ParseUDP(p.ip.Payload())
	if perr != proto.OK || !u.ChecksumValid(p.ip.Src(), p.ip.Dst()) || u.Checksum() == 0 {
		t.Fatalf("UDP out malformed or bad checksum")
	}
	if p.ip.Src() != ipLan || p.ip.Dst() != ipA || u.SrcPort() != 7000 || u.DstPort() != 4000 ||
		string(u.Payload()) != "pong" || p.eth.Dst() != macA || p.ip.TTL() != defaultTTL {
		t.Errorf("sent %v:%d -> %v:%d %q", p.ip.Src(), u.SrcPort(), p.ip.Dst(), u.DstPort(), u.Payload())
	}
	// A wildcard socket with an ephemeral port picks the egress interface's address as source.
	w, err := e.s.ListenUDP(netip.AddrPort{})
	if err != nil {
		t.Fatal(err)
	}
	if w.LocalAddrPort().Port() < ephemeralFirst {
		t.Errorf("ephemeral port %d", w.LocalAddrPort().Port())
	}
	if _, err := w.WriteToUDPAddrPort([]byte("far"), netip.AddrPortFrom(ipFar, 53)); err != nil {
		t.Fatal(err)
	}
	e.l.Poll()
	p = parseOut(t, e.only(portWan))
	if p.ip.Src() != ipWan || p.eth.Dst() != macB {
		t.Errorf("wildcard send from %v to MAC %v", p.ip.Src(), p.eth.Dst())
	}
	w.Close()
	c.Close()
	if _, _, err := c.ReadFrom(buf); err == nil {
		t.Error("read after close succeeded")
	}
	// Closed: port unreachable again.
	e.inject(portLan, udpFrame(macLan, macA, from, netip.AddrPortFrom(ipLan, 7000), 64, nil))
	if e.l.Dropped(pipeline.DropUDPNoSocket) != 1 {
		t.Errorf("after close: drops %v", e.l.DropSummary())
	}
	e.checkHeld()
}

// TestHooks checks each hook sees the packets it should, and that a PreRouting drop stops a packet.
func TestHooks(t *testing.T) {
	var seen [pipeline.NumHooks]int
	hooks := &pipeline.Hooks{}
	for h := range pipeline.NumHooks {
		hooks.Register(h, 0, h.String(), pipeline.PacketFunc(func(p *pipeline.Packet) {
			seen[h]++
			if h == pipeline.PreRouting && p.Len() >= 14+20 && p.Data()[14+9] == 99 {
				p.Drop(pipeline.DropFiltered)
			}
		}))
	}
	e := newEnv(t, func(c *Config) { c.Hooks = hooks })
	seen = [pipeline.NumHooks]int{}
	e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipFar, 2), 64, nil)) // forward
	e.inject(portLan, echoFrame(macLan, macA, ipA, ipLan, 64, 1, 1, nil))                                        // input + output
	e.inject(portLan, ipFrame(macLan, macA, proto.IPv4Fields{TTL: 64, Protocol: 99, Src: ipA, Dst: ipFar}, nil)) // filtered
	want := [pipeline.NumHooks]int{pipeline.PreRouting: 3, pipeline.Input: 1, pipeline.Forward: 1, pipeline.Output: 1, pipeline.PostRouting: 2}
	if seen != want {
		t.Errorf("hook counts %v, want %v", seen, want)
	}
	if e.l.Dropped(pipeline.DropFiltered) != 1 || len(e.l.Sent(portWan)) != 1 || len(e.l.Sent(portLan)) != 1 {
		t.Errorf("drops %v", e.l.DropSummary())
	}
}
