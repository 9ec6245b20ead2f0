package stack

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
)

// ext builds one Hop-by-Hop, Routing or Destination Options header: next, the length, then body, padded
// with zeros (Pad1) to a multiple of 8.
func ext(next uint8, body ...byte) []byte {
	n := (2 + len(body) + 7) &^ 7
	b := make([]byte, n)
	b[0], b[1] = next, uint8(n/8-1)
	copy(b[2:], body)
	return b
}

// frag builds a Fragment header.
func frag(next uint8, off uint16, more bool) []byte {
	b := make([]byte, 8)
	b[0] = next
	v := off &^ 7
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(b[2:], v)
	binary.BigEndian.PutUint32(b[4:], 0xabcd)
	return b
}

func cat(parts ...[]byte) []byte {
	var b []byte
	for _, p := range parts {
		b = append(b, p...)
	}
	return b
}

// TestBadFrames6 is the malformed-frame table for IPv6: each frame from A is dropped with its reason,
// answered as the RFCs say, or forwarded - and nothing is forwarded that should not be.
func TestBadFrames6(t *testing.T) {
	e := newEnv6(t, nil)
	e.learn6(portLan, macA, llA, llLan)
	udpTo := func(dst netip.Addr) []byte {
		return udpPayload(netip.AddrPortFrom(ip6A, 1), netip.AddrPortFrom(dst, 2), []byte("data"))
	}
	echoTo := func(dst netip.Addr) []byte {
		return icmp6Msg(proto.ICMPv6Fields{Type: proto.ICMPv6EchoRequest, ID: 1, Seq: 2}, ip6A, dst, []byte("ping"))
	}
	raw := func(src, dst netip.Addr, next, hop uint8, payload []byte) []byte {
		return ip6Frame(macLan, macA, src, dst, next, hop, payload)
	}
	fwd := func(next uint8, payload []byte) []byte { return raw(ip6A, ip6Far, next, 64, payload) }
	local := func(next uint8, payload []byte) []byte { return raw(ip6A, ip6Lan, next, 64, payload) }
	opt := func(typ uint8) []byte { return []byte{typ, 2, 0, 0} }
	const (
		hbh  = proto.ProtoIPv6HopByHop
		dopt = proto.ProtoIPv6DestOpts
		rt   = proto.ProtoIPv6Routing
		fr   = proto.ProtoIPv6Fragment
		udp  = proto.ProtoUDP
		icmp = proto.ProtoICMPv6
	)
	type icmpWant struct {
		typ, code uint8
		param     uint32
	}
	pp := func(code uint8, ptr uint32) *icmpWant { return &icmpWant{proto.ICMPv6ParamProblem, code, ptr} }
	long := make([][]byte, 9)
	for i := range long {
		long[i] = ext(dopt)
	}
	long[8][0] = udp
	cases := []struct {
		name    string
		frame   []byte
		drop    pipeline.DropReason // 0: forwarded (or answered, see reply)
		icmp    *icmpWant
		forward bool
		reply   uint8 // an informational answer expected (echo reply)
	}{
		{name: "truncated header", frame: raw(ip6A, ip6Far, udp, 64, nil)[:14+30], drop: pipeline.DropTruncated},
		{name: "version 4", frame: func() []byte { f := fwd(udp, udpTo(ip6Far)); f[14] = 0x40; return f }(), drop: pipeline.DropIPVersion},
		{name: "payload length past frame", frame: func() []byte { f := fwd(udp, udpTo(ip6Far)); f[19] += 9; return f }(), drop: DropIPv6PayloadLength},
		{name: "multicast source", frame: raw(netip.MustParseAddr("ff02::1"), ip6Far, udp, 64, udpTo(ip6Far)), drop: pipeline.DropMartianSource},
		{name: "unspecified source", frame: raw(netip.IPv6Unspecified(), ip6Far, udp, 64, udpTo(ip6Far)), drop: pipeline.DropMartianSource},
		{name: "loopback source", frame: raw(netip.IPv6Loopback(), ip6Lan, udp, 64, udpTo(ip6Lan)), drop: pipeline.DropMartianSource},
		{name: "IPv4-mapped source", frame: raw(netip.MustParseAddr("::ffff:198.18.0.2"), ip6Far, udp, 64, udpTo(ip6Far)), drop: pipeline.DropMartianSource},
		{name: "loopback destination", frame: raw(ip6A, netip.IPv6Loopback(), udp, 64, udpTo(ip6Far)), drop: pipeline.DropMartianDestination},
		{name: "unspecified destination", frame: raw(ip6A, netip.IPv6Unspecified(), udp, 64, udpTo(ip6Far)), drop: pipeline.DropMartianDestination},
		{name: "link-local destination not ours", frame: raw(ip6A, netip.MustParseAddr("fe80::99"), udp, 64, udpTo(ip6Far)), drop: DropIPv6LinkLocal},
		{name: "link-local source to forward", frame: raw(llA, ip6Far, udp, 64, udpTo(ip6Far)), drop: DropIPv6LinkLocal,
			icmp: &icmpWant{proto.ICMPv6DestUnreachable, proto.ICMPv6BeyondScope, 0}},
		{name: "group not joined", frame: raw(ip6A, netip.MustParseAddr("ff02::2"), udp, 64, udpTo(ip6Far)), drop: DropIPv6NotJoined},
		{name: "global multicast", frame: raw(ip6A, netip.MustParseAddr("ff0e::1"), udp, 64, udpTo(ip6Far)), drop: DropIPv6NotJoined},
		{name: "hop limit 1", frame: raw(ip6A, ip6Far, udp, 1, udpTo(ip6Far)), drop: pipeline.DropTTLExpired,
			icmp: &icmpWant{proto.ICMPv6TimeExceeded, 0, 0}},
		{name: "hop limit 0 to us is delivered", frame: raw(ip6A, ip6Lan, icmp, 0, echoTo(ip6Lan)), reply: proto.ICMPv6EchoReply},
		{name: "RH0 forwarded", frame: fwd(rt, cat(ext(udp, 0, 1, 0, 0, 0, 0), udpTo(ip6Far))), drop: DropIPv6RH0},
		{name: "RH0 for us", frame: local(rt, cat(ext(udp, 0, 0, 0, 0, 0, 0), udpTo(ip6Lan))), drop: DropIPv6RH0},
		{name: "SRH forwarded", frame: fwd(rt, cat(ext(udp, 4, 1, 0, 0, 0, 0), udpTo(ip6Far))), forward: true},
		{name: "SRH with segments left for us", frame: local(rt, cat(ext(udp, 4, 1, 0, 0, 0, 0), udpTo(ip6Lan))), drop: DropIPv6Routing,
			icmp: pp(proto.ICMPv6ErroneousHeader, 42)},
		{name: "nine extension headers", frame: fwd(dopt, cat(append(long, udpTo(ip6Far))...)), drop: DropIPv6ExtChainLong},
		{name: "extension bytes over the bound", frame: fwd(dopt, cat(ext(udp, make([]byte, 300)...), udpTo(ip6Far))), drop: DropIPv6ExtChainLong},
		{name: "header past the packet", frame: fwd(dopt, []byte{udp, 3, 0, 0, 0, 0, 0, 0}), drop: DropIPv6ExtHeader},
		{name: "Hop-by-Hop not first", frame: fwd(dopt, cat(ext(hbh), ext(udp), udpTo(ip6Far))), drop: DropIPv6ExtHeader},
		{name: "Hop-by-Hop padding and router alert", frame: fwd(hbh, cat(ext(udp, 5, 2, 0, 0, 1, 0), udpTo(ip6Far))), forward: true},
		{name: "Hop-by-Hop unknown, skip", frame: fwd(hbh, cat(ext(udp, opt(0x1e)...), udpTo(ip6Far))), forward: true},
		{name: "Hop-by-Hop unknown, discard", frame: fwd(hbh, cat(ext(udp, opt(0x5e)...), udpTo(ip6Far))), drop: DropIPv6Option},
		{name: "Hop-by-Hop unknown, discard and answer", frame: fwd(hbh, cat(ext(udp, opt(0x9e)...), udpTo(ip6Far))), drop: DropIPv6Option,
			icmp: pp(proto.ICMPv6UnrecognizedOption, 42)},
		{name: "Hop-by-Hop unknown, answer unless multicast", frame: fwd(hbh, cat(ext(udp, opt(0xde)...), udpTo(ip6Far))), drop: DropIPv6Option,
			icmp: pp(proto.ICMPv6UnrecognizedOption, 42)},
		{name: "Hop-by-Hop option past its header", frame: fwd(hbh, cat(ext(udp, 1, 9), udpTo(ip6Far))), drop: DropIPv6ExtHeader},
		{name: "jumbo payload", frame: fwd(hbh, cat(ext(udp, 0xc2, 4, 0, 1, 0, 0), udpTo(ip6Far))), drop: DropIPv6Option,
			icmp: pp(proto.ICMPv6UnrecognizedOption, 42)},
		{name: "destination option not looked at on the way", frame: fwd(dopt, cat(ext(udp, opt(0x5e)...), udpTo(ip6Far))), forward: true},
		{name: "destination option for us, discard", frame: local(dopt, cat(ext(udp, opt(0x5e)...), udpTo(ip6Lan))), drop: DropIPv6Option},
		{name: "atomic fragment forwarded", frame: fwd(fr, cat(frag(udp, 0, false), udpTo(ip6Far))), forward: true},
		{name: "atomic fragment for us", frame: local(fr, cat(frag(icmp, 0, false), echoTo(ip6Lan))), reply: proto.ICMPv6EchoReply},
		{name: "first fragment for us", frame: local(fr, cat(frag(udp, 0, true), udpTo(ip6Lan))), drop: pipeline.DropFragment},
		{name: "later fragment for us", frame: local(fr, cat(frag(udp, 64, false), udpTo(ip6Lan))), drop: pipeline.DropFragment},
		{name: "fragment forwarded", frame: fwd(fr, cat(frag(udp, 0, true), udpTo(ip6Far))), forward: true},
		{name: "later fragment forwarded", frame: fwd(fr, cat(frag(udp, 1232, false), []byte("tail of a packet"))), forward: true},
		{name: "unknown next header for us", frame: local(253, []byte("12345678")), drop: pipeline.DropUnknownProtocol,
			icmp: pp(proto.ICMPv6UnrecognizedNext, 6)},
		{name: "UDP zero checksum", frame: local(udp, func() []byte { u := udpTo(ip6Lan); u[6], u[7] = 0, 0; return u }()), drop: pipeline.DropUDPMalformed},
		{name: "UDP bad checksum", frame: local(udp, func() []byte { u := udpTo(ip6Lan); u[7]++; return u }()), drop: pipeline.DropUDPMalformed},
		{name: "TCP bad checksum", frame: local(proto.ProtoTCP, make([]byte, 20)), drop: pipeline.DropTCPMalformed},
		{name: "ICMPv6 bad checksum", frame: local(icmp, func() []byte { m := echoTo(ip6Lan); m[2]++; return m }()), drop: pipeline.DropICMPMalformed},
		{name: "ICMPv6 truncated", frame: local(icmp, []byte{128, 0, 0}), drop: pipeline.DropICMPMalformed},
		{name: "echo to all-nodes", frame: ip6Frame(proto.MulticastMAC(proto.AllNodesMulticast), macA, ip6A, proto.AllNodesMulticast, icmp, 64,
			icmp6Msg(proto.ICMPv6Fields{Type: proto.ICMPv6EchoRequest}, ip6A, proto.AllNodesMulticast, nil)), drop: DropEchoBroadcast},
		{name: "solicitation with hop limit 64", frame: func() []byte { f := nsFrame(macA, ip6A, ip6Lan, true); f[21] = 64; return f }(), drop: DropNDPInvalid},
		{name: "solicitation with a zero-length option", frame: func() []byte {
			m := make([]byte, 32)
			proto.NDPNeighborFields{Type: proto.ICMPv6NeighborSolicitation, Target: ip6Lan, HasLinkAddr: true}.Encode(m, ip6A, ip6Lan)
			m[25] = 0
			binary.BigEndian.PutUint16(m[2:], 0)
			binary.BigEndian.PutUint16(m[2:], proto.ICMPv6(m).ComputeChecksum(ip6A, ip6Lan))
			return raw(ip6A, ip6Lan, icmp, 255, m)
		}(), drop: DropNDPInvalid},
		{name: "solicitation for another address", frame: nsFrame(macA, ip6A, netip.MustParseAddr("2001:2::1:1"), true), drop: DropIPv6NotJoined},
		{name: "solicitation for another address, our group", frame: nsFrame(macA, ip6A, netip.MustParseAddr("2001:2:5::1"), true), drop: DropNDPNotForUs},
		{name: "advertisement from ::", frame: naFrame(macA, netip.IPv6Unspecified(), proto.AllNodesMulticast, ip6Lan, proto.NAFlagOverride, macA), drop: DropNDPInvalid},
		{name: "solicited advertisement to all-nodes", frame: naFrame(macA, ip6A, proto.AllNodesMulticast, ip6A, proto.NAFlagSolicited, macA), drop: DropNDPInvalid},
		{name: "redirect", frame: local(icmp, func() []byte {
			m := make([]byte, 40)
			m[0] = proto.ICMPv6Redirect
			binary.BigEndian.PutUint16(m[2:], proto.ICMPv6(m).ComputeChecksum(ip6A, ip6Lan))
			return m
		}()), drop: DropNDPRedirect},
		{name: "error about an error", frame: raw(ip6A, ip6Far, icmp, 1,
			icmp6Msg(proto.ICMPv6Fields{Type: proto.ICMPv6DestUnreachable}, ip6A, ip6Far, make([]byte, 48))), drop: pipeline.DropTTLExpired},
		{name: "link-layer multicast to forward", frame: func() []byte {
			f := fwd(udp, udpTo(ip6Far))
			copy(f, []byte{0x33, 0x33, 0, 0, 0, 1})
			return f
		}(), drop: pipeline.DropL2Broadcast},
	}
	for _, c := range cases {
		var before uint64
		if c.drop != 0 {
			before = e.l.Dropped(c.drop)
		}
		e.inject(portLan, c.frame)
		wan, lan := e.l.Sent(portWan), e.l.Sent(portLan)
		if c.forward {
			if len(wan) != 1 || len(lan) != 0 {
				t.Errorf("%s: %d frames forwarded, %d back; want forwarded (drops %v)", c.name, len(wan), len(lan), e.l.DropSummary())
			}
			continue
		}
		if len(wan) != 0 {
			t.Errorf("%s: forwarded", c.name)
		}
		if c.drop != 0 && e.l.Dropped(c.drop) != before+1 {
			t.Errorf("%s: drops %v, want one more %v", c.name, e.l.DropSummary(), c.drop)
		}
		switch {
		case c.icmp != nil:
			if len(lan) != 1 {
				t.Errorf("%s: %d frames back, want an ICMPv6 error", c.name, len(lan))
				continue
			}
			from := ip6Lan
			if c.icmp.typ == proto.ICMPv6DestUnreachable && c.icmp.code == proto.ICMPv6BeyondScope {
				from = llLan
			}
			checkICMP6Error(t, lan[0], c.icmp.typ, c.icmp.code, c.icmp.param, c.frame, from)
		case c.reply != 0:
			if len(lan) != 1 {
				t.Errorf("%s: %d frames back, want an answer", c.name, len(lan))
				continue
			}
			if p := parseOut6(t, lan[0]); p.icmp == nil || p.icmp.Type() != c.reply {
				t.Errorf("%s: answer % x", c.name, p.ip)
			}
		default:
			if len(lan) != 0 {
				t.Errorf("%s: %d frames back, want none: % x", c.name, len(lan), lan[0])
			}
		}
	}
	e.checkHeld()
}

func TestEcho6(t *testing.T) {
	e := newEnv6(t, nil)
	e.learn6(portLan, macA, llA, llLan)
	for _, c := range []struct{ src, dst netip.Addr }{{ip6A, ip6Lan}, {ip6A, ip6Wan}, {llA, llLan}} {
		in := echo6Frame(macLan, macA, c.src, c.dst, 64, []byte("abcdefgh"))
		e.inject(portLan, in)
		p := parseOut6(t, e.only(portLan))
		if p.icmp == nil || p.icmp.Type() != proto.ICMPv6EchoReply || p.ip.Src() != c.dst || p.ip.Dst() != c.src ||
			p.eth.Dst() != macA || p.ip.HopLimit() != 64 || string(p.icmp.Payload()) != "abcdefgh" ||
			p.icmp.ID() != 7 || p.icmp.Seq() != 1 {
			t.Errorf("echo %v -> %v: reply % x", c.src, c.dst, p.ip)
		}
	}
	// Extension headers are not echoed.
	m := icmp6Msg(proto.ICMPv6Fields{Type: proto.ICMPv6EchoRequest, ID: 3, Seq: 4}, ip6A, ip6Lan, []byte("x"))
	e.inject(portLan, ip6Frame(macLan, macA, ip6A, ip6Lan, proto.ProtoIPv6DestOpts, 64, cat(ext(proto.ProtoICMPv6, 1, 0), m)))
	p := parseOut6(t, e.only(portLan))
	if p.ip.NextHeader() != proto.ProtoICMPv6 || p.icmp == nil || p.icmp.Type() != proto.ICMPv6EchoReply || int(p.ip.PayloadLength()) != len(m) {
		t.Errorf("reply to an echo with a destination options header: % x", p.ip)
	}
	if st := e.s.Stats(); st.ICMPv6EchoRepliesOut != 4 {
		t.Errorf("stats %+v", st)
	}
	e.checkHeld()
}

func TestUDPSocket6(t *testing.T) {
	e := newEnv6(t, nil)
	c, err := e.s.ListenUDP(netip.MustParseAddrPort("[::]:5000"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := e.s.ListenUDP(netip.MustParseAddrPort("[2001:2::9]:5001")); err == nil {
		t.Errorf("listened on an address that is not ours")
	}
	// [::] takes both families.
	e.inject(portLan, udp6Frame(macLan, macA, netip.AddrPortFrom(ip6A, 777), netip.AddrPortFrom(ip6Lan, 5000), 64, []byte("six")))
	e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 778), netip.AddrPortFrom(ipLan, 5000), 64, []byte("four")))
	buf := make([]byte, 100)
	for _, want := range []struct {
		data string
		from netip.AddrPort
	}{{"six", netip.AddrPortFrom(ip6A, 777)}, {"four", netip.AddrPortFrom(ipA, 778)}} {
		n, from, err := c.ReadFromUDPAddrPort(buf)
		if err != nil || string(buf[:n]) != want.data || from != want.from {
			t.Errorf("read %q from %v (%v), want %q from %v", buf[:n], from, err, want.data, want.from)
		}
	}
	if _, err := c.WriteToUDPAddrPort([]byte("answer"), netip.AddrPortFrom(ip6Far, 53)); err != nil {
		t.Fatal(err)
	}
	e.l.Poll()
	p := parseOut6(t, e.only(portWan))
	if p.udp == nil || string(p.udp.Payload()) != "answer" || p.ip.Src() != ip6Wan || p.udp.SrcPort() != 5000 || p.udp.Checksum() == 0 || p.eth.Dst() != macB {
		t.Errorf("sent % x", p.ip)
	}
	for _, bad := range []string{"[ff02::1]:5", "[fe80::1]:5", "[::1]:5"} {
		if _, err := c.WriteToUDPAddrPort(nil, netip.MustParseAddrPort(bad)); err == nil {
			t.Errorf("write to %s accepted", bad)
		}
	}
	c4, err := e.s.ListenUDP(netip.MustParseAddrPort("0.0.0.0:6000"))
	if err != nil {
		t.Fatal(err)
	}
	defer c4.Close()
	// 0.0.0.0 is IPv4 only: an IPv6 datagram to its port is answered port unreachable.
	in := udp6Frame(macLan, macA, netip.AddrPortFrom(ip6A, 777), netip.AddrPortFrom(ip6Lan, 6000), 64, []byte("six"))
	e.inject(portLan, in)
	checkICMP6Error(t, e.only(portLan), proto.ICMPv6DestUnreachable, proto.ICMPv6PortUnreachable, 0, in, ip6Lan)
	if _, err := c4.WriteToUDPAddrPort(nil, netip.AddrPortFrom(ip6Far, 53)); err == nil {
		t.Errorf("IPv4 socket wrote to an IPv6 address")
	}
	e.checkHeld()
}
