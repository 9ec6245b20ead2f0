package proto

import (
	"encoding/hex"
	"net/netip"
	"strings"
	"testing"
)

// Frames captured with tcpdump -xx on the loopback of a network namespace
// while running Linux ping (iputils) to itself; loopback frames carry zero MACs.
const (
	linuxPing4Request = `0000 0000 0000 0000 0000 0000 0800 4500
		002c fe1d 4000 4001 ea8b c612 6301 c612
		6301 0800 3ba0 383a 0001 0317 076b 0000
		0000 6ca2 0d00 0000 0000`
	linuxPing4Reply = `0000 0000 0000 0000 0000 0000 0800 4500
		002c fe1e 0000 4001 2a8b c612 6301 c612
		6301 0000 43a0 383a 0001 0317 076b 0000
		0000 6ca2 0d00 0000 0000`
	linuxPing6Request = `0000 0000 0000 0000 0000 0000 86dd 6005
		aa15 0018 3a40 2001 0db8 0000 0000 0000
		0000 0000 0099 2001 0db8 0000 0000 0000
		0000 0000 0099 8000 e38e 384d 0001 0317
		076b 0000 0000 eea9 0e00 0000 0000`
	linuxPing6Reply = `0000 0000 0000 0000 0000 0000 86dd 600a
		e894 0018 3a40 2001 0db8 0000 0000 0000
		0000 0000 0099 2001 0db8 0000 0000 0000
		0000 0000 0099 8100 e28e 384d 0001 0317
		076b 0000 0000 eea9 0e00 0000 0000`
)

func unhexFrame(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestLinuxPing4(t *testing.T) {
	host := netip.MustParseAddr("198.18.99.1")
	for _, c := range []struct {
		frame string
		typ   uint8
		id    uint16
		df    bool
	}{{linuxPing4Request, ICMPv4EchoRequest, 0xfe1d, true}, {linuxPing4Reply, ICMPv4EchoReply, 0xfe1e, false}} {
		frame := unhexFrame(t, c.frame)
		l, e := ParseL2(frame)
		if e != OK || l.EtherType != EtherTypeIPv4 || l.NVLAN != 0 {
			t.Fatalf("ParseL2 %+v %v", l, e)
		}
		ip := checkIPv4(t, frame[l.L3Offset:], ttl(64), srcDst(host, host), protocol(ProtoICMP), payloadLen(24))
		if ip.ID() != c.id || ip.DontFragment() != c.df {
			t.Errorf("id %#x DF %v", ip.ID(), ip.DontFragment())
		}
		m, e := ParseICMPv4(ip.Payload())
		if e != OK || m.Type() != c.typ || m.Code() != 0 || m.ID() != 0x383a || m.Seq() != 1 || !m.ChecksumValid() {
			t.Errorf("ICMP %v type %d id %#x seq %d valid %v", e, m.Type(), m.ID(), m.Seq(), m.ChecksumValid())
		}
	}
	// Answer the request in place as a router's ICMP echo responder would,
	// and compare the ICMP part with what Linux answered.
	req, rep := unhexFrame(t, linuxPing4Request), unhexFrame(t, linuxPing4Reply)
	m, _ := ParseICMPv4(req[34:])
	m.SetType(ICMPv4EchoReply)
	if string(req[34:]) != string(rep[34:]) {
		t.Errorf("in-place reply\n % x\nLinux\n % x", req[34:], rep[34:])
	}
}

func TestLinuxPing6(t *testing.T) {
	host := netip.MustParseAddr("2001:db8::99")
	for _, c := range []struct {
		frame string
		typ   uint8
	}{{linuxPing6Request, ICMPv6EchoRequest}, {linuxPing6Reply, ICMPv6EchoReply}} {
		frame := unhexFrame(t, c.frame)
		eth, e := ParseEthernet(frame)
		if e != OK || eth.EtherType() != EtherTypeIPv6 {
			t.Fatal(e)
		}
		ip, e := ParseIPv6(eth.Payload())
		if e != OK || ip.HopLimit() != 64 || ip.Src() != host || ip.Dst() != host || ip.PayloadLength() != 24 {
			t.Fatalf("IPv6 %v %+v", e, ip.Fields())
		}
		ul, e := ip.UpperLayer()
		if e != OK || ul.Protocol != ProtoICMPv6 || ul.Offset != 40 || ul.HasFragment {
			t.Fatalf("UpperLayer %+v %v", ul, e)
		}
		m, e := ParseICMPv6(ip[ul.Offset:])
		if e != OK || m.Type() != c.typ || m.ID() != 0x384d || m.Seq() != 1 || !m.ChecksumValid(ip.Src(), ip.Dst()) {
			t.Errorf("ICMPv6 %v type %d id %#x seq %d", e, m.Type(), m.ID(), m.Seq())
		}
		if m.ChecksumValid(ip.Src(), netip.MustParseAddr("2001:db8::98")) {
			t.Error("checksum verified with the wrong pseudo header")
		}
	}
}

// Malformed input: every parser names the reason.
func TestParseErrors(t *testing.T) {
	ping := unhexFrame(t, linuxPing4Request)[14:]
	mod := func(b []byte, f func([]byte)) []byte {
		b = append([]byte(nil), b...)
		f(b)
		return b
	}
	ipv6 := unhexFrame(t, linuxPing6Request)[14:]
	for _, c := range []struct {
		name string
		got  Error
		want Error
	}{
		{"ethernet short", second(ParseEthernet(make([]byte, 13))), ErrTruncated},
		{"arp short", second(ParseARP(make([]byte, 27))), ErrTruncated},
		{"ipv4 ok", second(ParseIPv4(ping)), OK},
		{"ipv4 short", second(ParseIPv4(ping[:19])), ErrTruncated},
		{"ipv4 version 6", second(ParseIPv4(mod(ping, func(b []byte) { b[0] = 0x65 }))), ErrVersion},
		{"ipv4 IHL 4", second(ParseIPv4(mod(ping, func(b []byte) { b[0] = 0x44 }))), ErrHeaderLength},
		{"ipv4 IHL past end", second(ParseIPv4(mod(ping, func(b []byte) { b[0] = 0x4f })[:40])), ErrTruncated},
		{"ipv4 total < IHL", second(ParseIPv4(mod(ping, func(b []byte) { b[2], b[3] = 0, 19 }))), ErrTotalLength},
		{"ipv4 total > buffer", second(ParseIPv4(ping[:43])), ErrTruncated},
		{"ipv4 bad option", IPv4(mod(append(ping[:20:20], 7, 9, 0, 0), func(b []byte) { b[0] = 0x46 })).ValidateOptions(), ErrOptionLength},
		{"ipv6 ok", second(ParseIPv6(ipv6)), OK},
		{"ipv6 short", second(ParseIPv6(ipv6[:39])), ErrTruncated},
		{"ipv6 version", second(ParseIPv6(mod(ipv6, func(b []byte) { b[0] = 0x45 }))), ErrVersion},
		{"ipv6 payload > buffer", second(ParseIPv6(ipv6[:63])), ErrTruncated},
		{"icmpv4 short", second(ParseICMPv4(make([]byte, 7))), ErrTruncated},
		{"icmpv6 NS short", second(ParseICMPv6([]byte{135, 0, 0, 0, 0, 0, 0, 0})), ErrTruncated},
		{"udp short", second(ParseUDP(make([]byte, 7))), ErrTruncated},
		{"udp length 7", second(ParseUDP([]byte{0, 1, 0, 2, 0, 7, 0, 0})), ErrTotalLength},
		{"udp length > buffer", second(ParseUDP([]byte{0, 1, 0, 2, 0, 9, 0, 0})), ErrTruncated},
		{"tcp short", second(ParseTCP(make([]byte, 19))), ErrTruncated},
		{"tcp offset 4", second(ParseTCP(append([]byte{12: 0x40}, make([]byte, 7)...))), ErrHeaderLength},
		{"tcp offset past end", second(ParseTCP(append([]byte{12: 0x60}, make([]byte, 7)...))), ErrTruncated},
		{"tcp opt len 1", second(ParseTCPOptions([]byte{2, 1, 0, 0})), ErrOptionLength},
		{"tcp opt past end", second(ParseTCPOptions([]byte{1, 8, 10, 0, 0, 0, 1})), ErrOptionLength},
		{"tcp MSS len 3", second(ParseTCPOptions([]byte{2, 3, 0, 1})), ErrOptionLength},
		{"tcp SACK 5 blocks", second(ParseTCPOptions(append([]byte{5, 42}, make([]byte, 40)...))), ErrOptionLength},
		{"tcp unknown skipped", second(ParseTCPOptions([]byte{99, 3, 0, 0})), OK},
		{"ndp opt len 0", second(ParseNDPOptions([]byte{1, 0, 0, 0, 0, 0, 0, 0})), ErrOptionLength},
		{"ndp opt past end", second(ParseNDPOptions([]byte{1, 2, 0, 0, 0, 0, 0, 0})), ErrOptionLength},
		{"ndp prefix /129", second(ParseNDPOptions(append([]byte{3, 4, 129}, make([]byte, 29)...))), ErrOptionLength},
	} {
		if c.got != c.want {
			t.Errorf("%s: got %v, want %v", c.name, c.got, c.want)
		}
	}
	if ErrChecksum.Error() != "proto: bad checksum" || Error(200).String() != "unknown error" {
		t.Errorf("Error strings: %q %q", ErrChecksum.Error(), Error(200).String())
	}
}

func second[T any](_ T, e Error) Error { return e }

func TestMAC(t *testing.T) {
	m, err := ParseMAC("02:00:5E:10:00:FF")
	if err != nil || m != (MAC{2, 0, 0x5e, 0x10, 0, 0xff}) || m.String() != "02:00:5e:10:00:ff" {
		t.Fatalf("ParseMAC = %v, %v", m, err)
	}
	if m2, err := ParseMAC("02-00-5e-10-00-ff"); err != nil || m2 != m {
		t.Errorf("dash form: %v %v", m2, err)
	}
	for _, bad := range []string{"", "02:00:5e:10:00", "02:00:5e:10:00:fg", "02:00:5e:10:00:ff:", "02.00.5e.10.00.ff"} {
		if _, err := ParseMAC(bad); err == nil {
			t.Errorf("ParseMAC(%q) accepted", bad)
		}
	}
	if !BroadcastMAC.IsBroadcast() || !BroadcastMAC.IsMulticast() || m.IsMulticast() || !(MAC{0x33, 0x33}).IsMulticast() {
		t.Error("broadcast/multicast bits")
	}
	if EtherTypeIPv6.String() != "IPv6" || EtherType(0x88cc).String() != "0x88cc" {
		t.Errorf("EtherType strings %q %q", EtherTypeIPv6, EtherType(0x88cc))
	}
	if TCPFlags(TCPFlagSYN|TCPFlagACK).String() != "S." || TCPFlags(0).String() != "none" {
		t.Errorf("TCPFlags strings %q", TCPFlags(TCPFlagSYN|TCPFlagACK))
	}
	a := netip.MustParseAddr("2001:db8::12:3456")
	if SolicitedNodeMulticast(a) != netip.MustParseAddr("ff02::1:ff12:3456") ||
		MulticastMAC(SolicitedNodeMulticast(a)) != (MAC{0x33, 0x33, 0xff, 0x12, 0x34, 0x56}) {
		t.Errorf("solicited-node %v %v", SolicitedNodeMulticast(a), MulticastMAC(SolicitedNodeMulticast(a)))
	}
}

func TestEncodeShortBuffers(t *testing.T) {
	short := make([]byte, 3)
	for name, n := range map[string]int{
		"ethernet": EthernetFields{}.Encode(short),
		"arp":      ARPFields{SenderIP: v4A, TargetIP: v4B}.Encode(short),
		"arp v6":   ARPFields{SenderIP: v6A, TargetIP: v4B}.Encode(make([]byte, 28)),
		"ipv4":     IPv4Fields{Src: v4A, Dst: v4B}.Encode(short),
		"ipv4 v6":  IPv4Fields{Src: v6A, Dst: v4B}.Encode(make([]byte, 20)),
		"ipv4 big": IPv4Fields{Src: v4A, Dst: v4B, PayloadLen: 65516}.Encode(make([]byte, 20)),
		"ipv6":     IPv6Fields{Src: v6A, Dst: v6B}.Encode(short),
		"icmpv4":   ICMPv4Fields{}.Encode(make([]byte, 8), []byte{1}),
		"icmpv6":   ICMPv6Fields{}.Encode(short, nil, v6A, v6B),
		"ndp":      NDPNeighborFields{Type: ICMPv6NeighborSolicitation, Target: v6A, HasLinkAddr: true}.Encode(make([]byte, 24), v6A, v6B),
		"udp":      UDPFields{}.Encode(short),
		"udp data": UDPFields{PayloadLen: 10}.EncodeChecksum(make([]byte, 12), v4A, v4B),
		"tcp":      TCPFields{Options: TCPOptions{HasMSS: true}}.Encode(make([]byte, 23)),
		"vlan":     EncodeVLANTag(short, EtherTypeVLAN, 1),
	} {
		if n != 0 {
			t.Errorf("%s: Encode into a short buffer returned %d, want 0", name, n)
		}
	}
}
