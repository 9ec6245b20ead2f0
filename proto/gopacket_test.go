package proto

// Cross-checks against gopacket, an independent encoder/decoder: parse what
// gopacket serialised, and have gopacket decode (and re-serialise, checksums
// included) what our Encode wrote.

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

var (
	macA = MAC{0x02, 0, 0, 0, 0, 0x0a}
	macB = MAC{0x02, 0, 0, 0, 0, 0x0b}
	v4A  = netip.MustParseAddr("198.18.0.1")
	v4B  = netip.MustParseAddr("198.19.1.2")
	v6A  = netip.MustParseAddr("2001:db8::a")
	v6B  = netip.MustParseAddr("2001:db8:1::b")
)

func ipOf(a netip.Addr) net.IP { return net.IP(a.AsSlice()) }

func hw(m MAC) net.HardwareAddr { return net.HardwareAddr(m[:]) }

// gpSerialize serialises layers with gopacket, fixing lengths and checksums.
func gpSerialize(t testing.TB, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		t.Fatalf("gopacket serialise: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// gpReserialize decodes frame with gopacket, asks it to recompute every
// length and checksum, and requires the result to equal frame byte for byte:
// our encoders then agree with gopacket on every field and checksum.
func gpReserialize(t *testing.T, frame []byte, first gopacket.LayerType) gopacket.Packet {
	t.Helper()
	p := gopacket.NewPacket(frame, first, gopacket.Default)
	if el := p.ErrorLayer(); el != nil {
		t.Fatalf("gopacket decode: %v", el.Error())
	}
	var ls []gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	for _, l := range p.Layers() {
		switch l := l.(type) {
		case *layers.IPv4, *layers.IPv6:
			nl = l.(gopacket.NetworkLayer)
		case *layers.TCP:
			l.SetNetworkLayerForChecksum(nl)
		case *layers.UDP:
			l.SetNetworkLayerForChecksum(nl)
		case *layers.ICMPv6:
			l.SetNetworkLayerForChecksum(nl)
		}
		if s, ok := l.(gopacket.SerializableLayer); ok {
			ls = append(ls, s)
		} else if _, ok := l.(*gopacket.Payload); !ok {
			t.Fatalf("gopacket cannot serialise layer %v", l.LayerType())
		}
	}
	if app := p.ApplicationLayer(); app != nil {
		if _, ok := app.(gopacket.SerializableLayer); !ok {
			ls = append(ls, gopacket.Payload(app.Payload()))
		}
	}
	got := gpSerialize(t, ls...)
	if first == layers.LayerTypeEthernet && len(got) == 60 && len(frame) < 60 &&
		bytes.Equal(got[len(frame):], make([]byte, 60-len(frame))) {
		got = got[:len(frame)] // gopacket pads Ethernet frames to the 60-byte minimum
	}
	if !bytes.Equal(got, frame) {
		t.Fatalf("gopacket re-serialised a different frame:\n ours     % x\n gopacket % x", frame, got)
	}
	return p
}

// Checkers in the style of gVisor's checker package.
type ipv4Check func(*testing.T, IPv4)

func checkIPv4(t *testing.T, b []byte, checks ...ipv4Check) IPv4 {
	t.Helper()
	ip, e := ParseIPv4(b)
	if e != OK {
		t.Fatalf("ParseIPv4: %v", e)
	}
	if !ip.ChecksumValid() {
		t.Errorf("IPv4 header checksum %#04x invalid (want %#04x)", ip.Checksum(), ip.ComputeChecksum())
	}
	for _, c := range checks {
		c(t, ip)
	}
	return ip
}

func ttl(n uint8) ipv4Check {
	return func(t *testing.T, ip IPv4) {
		t.Helper()
		if ip.TTL() != n {
			t.Errorf("TTL = %d, want %d", ip.TTL(), n)
		}
	}
}

func srcDst(s, d netip.Addr) ipv4Check {
	return func(t *testing.T, ip IPv4) {
		t.Helper()
		if ip.Src() != s || ip.Dst() != d {
			t.Errorf("addresses %s -> %s, want %s -> %s", ip.Src(), ip.Dst(), s, d)
		}
	}
}

func protocol(p uint8) ipv4Check {
	return func(t *testing.T, ip IPv4) {
		t.Helper()
		if ip.Protocol() != p {
			t.Errorf("Protocol = %d, want %d", ip.Protocol(), p)
		}
	}
}

func payloadLen(n int) ipv4Check {
	return func(t *testing.T, ip IPv4) {
		t.Helper()
		if len(ip.Payload()) != n {
			t.Errorf("payload %d bytes, want %d", len(ip.Payload()), n)
		}
	}
}

func TestParseGopacketIPv4UDP(t *testing.T) {
	data := []byte("hello, xdpnet, a payload long enough to need no Ethernet padding")
	gip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Id: 0x1234, Flags: layers.IPv4DontFragment, Protocol: layers.IPProtocolUDP,
		SrcIP: ipOf(v4A), DstIP: ipOf(v4B), TOS: 0xb8}
	gudp := &layers.UDP{SrcPort: 4000, DstPort: 53}
	gudp.SetNetworkLayerForChecksum(gip)
	frame := gpSerialize(t,
		&layers.Ethernet{SrcMAC: hw(macA), DstMAC: hw(macB), EthernetType: layers.EthernetTypeIPv4},
		gip, gudp, gopacket.Payload(data))
	frame = append(frame, 0, 0, 0, 0, 0, 0, 0) // Ethernet padding must not leak into the payload

	eth, e := ParseEthernet(frame)
	if e != OK || eth.Dst() != macB || eth.Src() != macA || eth.EtherType() != EtherTypeIPv4 {
		t.Fatalf("Ethernet: %v dst %v src %v type %v", e, eth.Dst(), eth.Src(), eth.EtherType())
	}
	ip := checkIPv4(t, eth.Payload(), ttl(64), srcDst(v4A, v4B), protocol(ProtoUDP), payloadLen(8+len(data)))
	if ip.ID() != 0x1234 || !ip.DontFragment() || ip.MoreFragments() || ip.IsFragment() || ip.TOS() != 0xb8 || ip.DSCP() != 46 {
		t.Errorf("IPv4 fields: id %#x DF %v MF %v frag %v TOS %#x", ip.ID(), ip.DontFragment(), ip.MoreFragments(), ip.IsFragment(), ip.TOS())
	}
	u, e := ParseUDP(ip.Payload())
	if e != OK {
		t.Fatalf("ParseUDP: %v", e)
	}
	if u.SrcPort() != 4000 || u.DstPort() != 53 || int(u.Length()) != 8+len(data) || !bytes.Equal(u.Payload(), data) {
		t.Errorf("UDP %d -> %d len %d payload %q", u.SrcPort(), u.DstPort(), u.Length(), u.Payload())
	}
	if !u.ChecksumValid(ip.Src(), ip.Dst()) || u.ComputeChecksum(ip.Src(), ip.Dst()) != u.Checksum() {
		t.Errorf("UDP checksum %#04x invalid, computed %#04x", u.Checksum(), u.ComputeChecksum(ip.Src(), ip.Dst()))
	}
}

func TestParseGopacketIPv4Options(t *testing.T) {
	frame := gpSerialize(t,
		&layers.IPv4{Version: 4, TTL: 1, Protocol: layers.IPProtocolUDP, SrcIP: ipOf(v4A), DstIP: ipOf(v4B),
			Flags: layers.IPv4MoreFragments, FragOffset: 185,
			Options: []layers.IPv4Option{{OptionType: 148, OptionLength: 4, OptionData: []byte{0, 0}}}}, // Router Alert
		gopacket.Payload(make([]byte, 16)))
	ip := checkIPv4(t, frame, ttl(1), payloadLen(16))
	if ip.HeaderLen() != 24 || !bytes.Equal(ip.Options(), []byte{148, 4, 0, 0}) || ip.ValidateOptions() != OK {
		t.Errorf("header len %d options % x (%v)", ip.HeaderLen(), ip.Options(), ip.ValidateOptions())
	}
	if !ip.MoreFragments() || ip.FragmentOffset() != 185*8 || !ip.IsFragment() {
		t.Errorf("MF %v offset %d", ip.MoreFragments(), ip.FragmentOffset())
	}
}

func TestEncodeIPv4UDPDecodedByGopacket(t *testing.T) {
	data := []byte("0123456789abcdefg") // odd length exercises the padded checksum byte
	b := make([]byte, 128)
	n := EthernetFields{Dst: macB, Src: macA, EtherType: EtherTypeIPv4}.Encode(b)
	n += IPv4Fields{TOS: 0x10, ID: 7, DontFragment: true, TTL: 63, Protocol: ProtoUDP, Src: v4A, Dst: v4B,
		PayloadLen: UDPHeaderLen + len(data)}.Encode(b[n:])
	copy(b[n+UDPHeaderLen:], data)
	n += UDPFields{SrcPort: 1234, DstPort: 5678, PayloadLen: len(data)}.EncodeChecksum(b[n:], v4A, v4B)
	if n != 14+20+8+len(data) {
		t.Fatalf("encoded %d bytes", n)
	}
	p := gpReserialize(t, b[:n], layers.LayerTypeEthernet)
	ip4 := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
	if ip4.TTL != 63 || ip4.Id != 7 || ip4.Flags != layers.IPv4DontFragment || !ip4.SrcIP.Equal(ipOf(v4A)) || ip4.TOS != 0x10 {
		t.Errorf("gopacket sees %+v", ip4)
	}
	udp := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
	if udp.SrcPort != 1234 || udp.DstPort != 5678 || !bytes.Equal(udp.Payload, data) {
		t.Errorf("gopacket sees UDP %d -> %d %q", udp.SrcPort, udp.DstPort, udp.Payload)
	}
}

func TestIPv4SettersKeepChecksumValid(t *testing.T) {
	frame := gpSerialize(t,
		&layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: ipOf(v4A), DstIP: ipOf(v4B)},
		gopacket.Payload(make([]byte, 20)))
	ip := checkIPv4(t, frame)
	if got := ip.DecrementTTL(); got != 63 {
		t.Fatalf("DecrementTTL = %d", got)
	}
	checkIPv4(t, frame, ttl(63))
	ip.SetSrc(netip.MustParseAddr("198.18.200.7"))
	ip.SetDst(netip.MustParseAddr("198.19.0.255"))
	ip.SetTTL(255)
	ip.SetTOS(0xfc)
	ip.SetID(0xfffe)
	ip.SetFlagsFragment(false, true, 1480)
	ip.SetProtocol(ProtoUDP)
	checkIPv4(t, frame, ttl(255), srcDst(netip.MustParseAddr("198.18.200.7"), netip.MustParseAddr("198.19.0.255")), protocol(ProtoUDP))
	if ip.SetSrc(v6A) {
		t.Error("SetSrc accepted an IPv6 address")
	}
	if !ip.MoreFragments() || ip.FragmentOffset() != 1480 || ip.DontFragment() || ip.ID() != 0xfffe || ip.TOS() != 0xfc {
		t.Errorf("fields after setters: %+v", ip.Fields())
	}
	// gopacket agrees with the incrementally updated checksum.
	gpReserialize(t, frame, layers.LayerTypeIPv4)
}

func TestParseL2VLAN(t *testing.T) {
	payload := gpSerialize(t, &layers.IPv4{Version: 4, TTL: 9, Protocol: 253, SrcIP: ipOf(v4A), DstIP: ipOf(v4B)})
	for _, c := range []struct {
		name   string
		ls     []gopacket.SerializableLayer
		n      int
		vlans  [2]uint16
		offset int
	}{
		{"untagged", []gopacket.SerializableLayer{
			&layers.Ethernet{SrcMAC: hw(macA), DstMAC: hw(macB), EthernetType: layers.EthernetTypeIPv4}}, 0, [2]uint16{}, 14},
		{"802.1Q", []gopacket.SerializableLayer{
			&layers.Ethernet{SrcMAC: hw(macA), DstMAC: hw(macB), EthernetType: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{Priority: 5, VLANIdentifier: 100, Type: layers.EthernetTypeIPv4}}, 1, [2]uint16{100}, 18},
		{"QinQ", []gopacket.SerializableLayer{
			&layers.Ethernet{SrcMAC: hw(macA), DstMAC: hw(macB), EthernetType: layers.EthernetTypeQinQ},
			&layers.Dot1Q{VLANIdentifier: 4000, Type: layers.EthernetTypeDot1Q},
			&layers.Dot1Q{Priority: 3, DropEligible: true, VLANIdentifier: 7, Type: layers.EthernetTypeIPv4}}, 2, [2]uint16{4000, 7}, 22},
	} {
		t.Run(c.name, func(t *testing.T) {
			frame := gpSerialize(t, append(c.ls, gopacket.Payload(payload))...)
			l, e := ParseL2(frame)
			if e != OK || l.EtherType != EtherTypeIPv4 || l.NVLAN != c.n || l.VLANs != c.vlans || l.L3Offset != c.offset {
				t.Fatalf("ParseL2 = %+v, %v", l, e)
			}
			checkIPv4(t, frame[l.L3Offset:], ttl(9))
			if c.n == 2 && l.TCIs[1] != 3<<13|1<<12|7 {
				t.Errorf("inner TCI %#04x", l.TCIs[1])
			}
		})
	}
	three := gpSerialize(t, &layers.Ethernet{SrcMAC: hw(macA), DstMAC: hw(macB), EthernetType: layers.EthernetTypeQinQ},
		&layers.Dot1Q{VLANIdentifier: 1, Type: layers.EthernetTypeQinQ},
		&layers.Dot1Q{VLANIdentifier: 2, Type: layers.EthernetTypeDot1Q},
		&layers.Dot1Q{VLANIdentifier: 3, Type: layers.EthernetTypeIPv4}, gopacket.Payload(payload))
	if _, e := ParseL2(three); e != ErrVLANDepth {
		t.Errorf("three tags: %v, want %v", e, ErrVLANDepth)
	}
	if _, e := ParseL2(three[:16]); e != ErrTruncated {
		t.Errorf("cut tag: %v, want %v", e, ErrTruncated)
	}
}

func TestARPGopacket(t *testing.T) {
	frame := gpSerialize(t,
		&layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4, HwAddressSize: 6, ProtAddressSize: 4,
			Operation: layers.ARPRequest, SourceHwAddress: hw(macA), SourceProtAddress: ipOf(v4A),
			DstHwAddress: make([]byte, 6), DstProtAddress: ipOf(v4B)},
		gopacket.Payload(make([]byte, 18))) // padding to 60 bytes with an Ethernet header
	a, e := ParseARP(frame)
	if e != OK || len(a) != ARPLen {
		t.Fatalf("ParseARP: %v len %d", e, len(a))
	}
	want := ARPFields{Op: ARPRequest, SenderMAC: macA, SenderIP: v4A, TargetIP: v4B}
	if a.Fields() != want || a.IsGratuitous() {
		t.Errorf("Fields = %+v, want %+v", a.Fields(), want)
	}
	reply := ARPFields{Op: ARPReply, SenderMAC: macB, SenderIP: v4B, TargetMAC: macA, TargetIP: v4A}
	b := make([]byte, ARPLen)
	if reply.Encode(b) != ARPLen {
		t.Fatal("Encode failed")
	}
	p := gpReserialize(t, b, layers.LayerTypeARP)
	ga := p.Layer(layers.LayerTypeARP).(*layers.ARP)
	if ga.Operation != layers.ARPReply || !bytes.Equal(ga.SourceHwAddress, macB[:]) || !net.IP(ga.DstProtAddress).Equal(ipOf(v4A)) {
		t.Errorf("gopacket sees %+v", ga)
	}
	bad := append([]byte(nil), frame...)
	bad[1] = 6 // IEEE 802 hardware type
	if _, e := ParseARP(bad); e != ErrHardwareType {
		t.Errorf("hardware type 6: %v", e)
	}
}

func TestTCPGopacket(t *testing.T) {
	opts := []layers.TCPOption{
		{OptionType: layers.TCPOptionKindMSS, OptionLength: 4, OptionData: []byte{0x05, 0xb4}},
		{OptionType: layers.TCPOptionKindSACKPermitted, OptionLength: 2},
		{OptionType: layers.TCPOptionKindTimestamps, OptionLength: 10, OptionData: []byte{0, 0, 0, 1, 0, 0, 0, 2}},
		{OptionType: layers.TCPOptionKindNop},
		{OptionType: 254, OptionLength: 4, OptionData: []byte{0xbe, 0xef}}, // experimental: skipped
		{OptionType: layers.TCPOptionKindWindowScale, OptionLength: 3, OptionData: []byte{7}},
	}
	data := []byte("GET / HTTP/1.0\r\n\r\n")
	for _, v6 := range []bool{false, true} {
		var nl gopacket.SerializableLayer
		var src, dst netip.Addr
		tcp := &layers.TCP{SrcPort: 40000, DstPort: 80, Seq: 0xdeadbeef, Ack: 17, SYN: true, ACK: true, ECE: true,
			Window: 64240, Urgent: 0, Options: opts}
		if v6 {
			src, dst = v6A, v6B
			ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolTCP, SrcIP: ipOf(src), DstIP: ipOf(dst)}
			tcp.SetNetworkLayerForChecksum(ip)
			nl = ip
		} else {
			src, dst = v4A, v4B
			ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP, SrcIP: ipOf(src), DstIP: ipOf(dst)}
			tcp.SetNetworkLayerForChecksum(ip)
			nl = ip
		}
		seg := gpSerialize(t, nl, tcp, gopacket.Payload(data))
		if v6 {
			seg = seg[IPv6HeaderLen:]
		} else {
			seg = seg[IPv4MinHeaderLen:]
		}
		tc, e := ParseTCP(seg)
		if e != OK {
			t.Fatalf("ParseTCP: %v", e)
		}
		if tc.SrcPort() != 40000 || tc.DstPort() != 80 || tc.Seq() != 0xdeadbeef || tc.Ack() != 17 ||
			tc.Flags() != TCPFlagSYN|TCPFlagACK|TCPFlagECE || tc.Window() != 64240 || !bytes.Equal(tc.Payload(), data) {
			t.Errorf("TCP fields: %d %d %#x %d %v %d", tc.SrcPort(), tc.DstPort(), tc.Seq(), tc.Ack(), tc.Flags(), tc.Window())
		}
		if !tc.ChecksumValid(src, dst) || tc.ComputeChecksum(src, dst) != tc.Checksum() {
			t.Errorf("v6=%v: TCP checksum %#04x invalid, computed %#04x", v6, tc.Checksum(), tc.ComputeChecksum(src, dst))
		}
		o, e := ParseTCPOptions(tc.Options())
		want := TCPOptions{MSS: 1460, HasMSS: true, SACKPermitted: true, TSval: 1, TSecr: 2, HasTimestamps: true,
			WindowScale: 7, HasWindowScale: true}
		if e != OK || o != want {
			t.Errorf("ParseTCPOptions = %+v, %v; want %+v", o, e, want)
		}
		tc.SetSeq(1)
		tc.SetAck(0xffffffff)
		tc.SetFlags(TCPFlagRST)
		tc.SetWindow(0)
		tc.SetSrcPort(1)
		tc.SetDstPort(65535)
		if !tc.ChecksumValid(src, dst) {
			t.Errorf("v6=%v: setters broke the TCP checksum", v6)
		}
	}
}

func TestEncodeTCPDecodedByGopacket(t *testing.T) {
	f := TCPFields{SrcPort: 80, DstPort: 40000, Seq: 1, Ack: 2, Flags: TCPFlagACK | TCPFlagPSH | TCPFlagFIN, Window: 512,
		Options: TCPOptions{TSval: 100, TSecr: 200, HasTimestamps: true,
			SACK: [4]TCPSACKBlock{{10, 20}, {30, 40}, {50, 60}, {70, 80}}, NSACK: 4}}
	data := []byte("xyz")
	b := make([]byte, 200)
	n := IPv4Fields{TTL: 64, Protocol: ProtoTCP, Src: v4A, Dst: v4B, PayloadLen: f.HeaderLen() + len(data)}.Encode(b)
	copy(b[n+f.HeaderLen():], data)
	m := f.EncodeChecksum(b[n:], len(data), v4A, v4B)
	if m == 0 || f.HeaderLen() != 20+40 {
		t.Fatalf("EncodeChecksum = %d, header %d", m, f.HeaderLen())
	}
	p := gpReserialize(t, b[:n+m], layers.LayerTypeIPv4)
	gt := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if !gt.ACK || !gt.PSH || !gt.FIN || gt.SYN || gt.Window != 512 || !bytes.Equal(gt.Payload, data) {
		t.Errorf("gopacket sees %+v", gt)
	}
	var sack []byte
	for _, o := range gt.Options {
		if o.OptionType == layers.TCPOptionKindSACK {
			sack = o.OptionData
		}
	}
	// TS takes 12 bytes, so only 3 SACK blocks fit in 40 (as in Linux).
	if len(sack) != 24 {
		t.Errorf("gopacket sees %d SACK bytes, want 24", len(sack))
	}
	o, e := ParseTCPOptions(TCP(b[n:]).Options())
	if e != OK || o.NSACK != 3 || o.SACK[2] != (TCPSACKBlock{50, 60}) || o.TSval != 100 {
		t.Errorf("round trip options %+v %v", o, e)
	}
}

func TestIPv6ExtensionHeadersGopacket(t *testing.T) {
	hbh := &layers.IPv6HopByHop{Options: []*layers.IPv6HopByHopOption{
		{OptionType: 5, OptionLength: 2, OptionData: []byte{0, 0}}, // Router Alert
		{OptionType: 1, OptionLength: 0}}}                          // PadN
	hbh.NextHeader = layers.IPProtocolIPv6Destination
	dst := &layers.IPv6Destination{Options: []*layers.IPv6DestinationOption{{OptionType: 0x1e, OptionLength: 4, OptionData: []byte{1, 2, 3, 4}}}}
	dst.NextHeader = layers.IPProtocolIPv6Fragment
	frag := &layers.IPv6Fragment{NextHeader: layers.IPProtocolUDP, FragmentOffset: 0, MoreFragments: true, Identification: 0xcafe}
	ip := &layers.IPv6{Version: 6, TrafficClass: 0xa0, FlowLabel: 0x12345, HopLimit: 2, NextHeader: layers.IPProtocolIPv6HopByHop,
		SrcIP: ipOf(v6A), DstIP: ipOf(v6B)}
	udp := &layers.UDP{SrcPort: 1, DstPort: 2}
	udp.SetNetworkLayerForChecksum(ip)
	pkt := gpSerialize(t, ip, hbh, dst, frag, udp, gopacket.Payload("abcd"))
	pkt = append(pkt, 0, 0) // padding

	v6, e := ParseIPv6(pkt)
	if e != OK || len(v6) != len(pkt)-2 {
		t.Fatalf("ParseIPv6: %v len %d", e, len(v6))
	}
	if v6.TrafficClass() != 0xa0 || v6.FlowLabel() != 0x12345 || v6.HopLimit() != 2 || v6.Src() != v6A || v6.Dst() != v6B {
		t.Errorf("fields %+v", v6.Fields())
	}
	ul, e := v6.UpperLayer()
	if e != OK {
		t.Fatalf("UpperLayer: %v", e)
	}
	want := IPv6UpperLayer{Protocol: ProtoUDP, Offset: 40 + 8 + 8 + 8, HasFragment: true, MoreFragments: true,
		FragmentID: 0xcafe, FragmentHeaderOffset: 56, HopByHop: true}
	if ul != want || !ul.IsFragment() {
		t.Fatalf("UpperLayer = %+v, want %+v", ul, want)
	}
	u, e := ParseUDP(v6[ul.Offset:])
	if e != OK || string(u.Payload()) != "abcd" {
		t.Fatalf("UDP: %v %q", e, u.Payload())
	}
	if !u.ChecksumValid(v6.Src(), v6.Dst()) {
		t.Errorf("UDP over IPv6 checksum invalid")
	}

	// Hop-by-Hop anywhere but first is a bad chain (RFC 8200 §4.1).
	bad := append([]byte(nil), pkt...)
	bad[40+8] = byte(ProtoIPv6HopByHop) // the Destination Options header's Next Header
	if _, e := IPv6(bad[:len(pkt)-2]).UpperLayer(); e != ErrExtensionHeader {
		t.Errorf("misplaced hop-by-hop: %v", e)
	}
	// A header length that runs past the packet.
	bad = append([]byte(nil), pkt[:len(pkt)-2]...)
	bad[41] = 200
	if _, e := IPv6(bad).UpperLayer(); e != ErrExtensionHeader {
		t.Errorf("long hop-by-hop: %v", e)
	}

	// Our encoder, gopacket's decoder.
	b := make([]byte, 40+8+4)
	IPv6Fields{TrafficClass: 1, FlowLabel: 0xfffff, NextHeader: ProtoUDP, HopLimit: 255, Src: v6A, Dst: v6B, PayloadLen: 12}.Encode(b)
	copy(b[48:], "wxyz")
	UDPFields{SrcPort: 9, DstPort: 7, PayloadLen: 4}.EncodeChecksum(b[40:], v6A, v6B)
	gpReserialize(t, b, layers.LayerTypeIPv6)
}

func TestICMPv4Gopacket(t *testing.T) {
	frame := gpSerialize(t,
		&layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: 0x77, Seq: 3},
		gopacket.Payload("ping data"))
	m, e := ParseICMPv4(frame)
	if e != OK || m.Type() != ICMPv4EchoRequest || m.ID() != 0x77 || m.Seq() != 3 || !m.ChecksumValid() || m.IsError() {
		t.Fatalf("ICMPv4 %v type %d id %d seq %d valid %v", e, m.Type(), m.ID(), m.Seq(), m.ChecksumValid())
	}
	m.SetType(ICMPv4EchoReply)
	if !m.ChecksumValid() || m.ComputeChecksum() != m.Checksum() {
		t.Fatal("SetType broke the checksum")
	}
	gpReserialize(t, frame, layers.LayerTypeICMPv4)

	// Frag-needed built by us, decoded by gopacket.
	inner := gpSerialize(t, &layers.IPv4{Version: 4, TTL: 5, Protocol: layers.IPProtocolUDP, SrcIP: ipOf(v4A), DstIP: ipOf(v4B)},
		gopacket.Payload(make([]byte, 8)))
	b := make([]byte, 100)
	n := ICMPv4Fields{Type: ICMPv4DestUnreachable, Code: ICMPv4FragNeeded, MTU: 1400}.Encode(b, inner)
	p := gpReserialize(t, b[:n], layers.LayerTypeICMPv4)
	gi := p.Layer(layers.LayerTypeICMPv4).(*layers.ICMPv4)
	if gi.TypeCode != layers.CreateICMPv4TypeCode(3, 4) || gi.Seq != 1400 {
		t.Errorf("gopacket sees %v seq/mtu %d", gi.TypeCode, gi.Seq)
	}
	m, _ = ParseICMPv4(b[:n])
	if m.NextHopMTU() != 1400 || !m.IsError() || !bytes.Equal(m.Payload(), inner) {
		t.Errorf("frag needed: MTU %d error %v", m.NextHopMTU(), m.IsError())
	}
}

func TestICMPv6NDPGopacket(t *testing.T) {
	ip := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: ipOf(v6A), DstIP: ipOf(v6B)}
	icmp := func(typ uint8) *layers.ICMPv6 {
		l := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
		l.SetNetworkLayerForChecksum(ip)
		return l
	}
	target := netip.MustParseAddr("2001:db8::77")
	prefix := make([]byte, 30)
	prefix[0], prefix[1] = 64, 0xc0
	copy(prefix[2:], []byte{0, 0, 0x0e, 0x10, 0, 0, 0x07, 0x08})
	p6 := netip.MustParseAddr("2001:db8:5::").As16()
	copy(prefix[14:], p6[:])
	for _, c := range []struct {
		name string
		l    gopacket.SerializableLayer
		typ  uint8
		chk  func(t *testing.T, m ICMPv6)
	}{
		{"NS", &layers.ICMPv6NeighborSolicitation{TargetAddress: ipOf(target),
			Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: macA[:]}}}, ICMPv6NeighborSolicitation,
			func(t *testing.T, m ICMPv6) {
				o, e := m.NDPOptions()
				if m.TargetAddress() != target || e != OK || !o.HasSourceLinkAddr || o.SourceLinkAddr != macA {
					t.Errorf("NS target %v options %+v %v", m.TargetAddress(), o, e)
				}
			}},
		{"NA", &layers.ICMPv6NeighborAdvertisement{Flags: 0x60, TargetAddress: ipOf(target),
			Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: macB[:]}}}, ICMPv6NeighborAdvertisement,
			func(t *testing.T, m ICMPv6) {
				o, e := m.NDPOptions()
				if m.NAFlags() != NAFlagSolicited|NAFlagOverride || e != OK || o.TargetLinkAddr != macB {
					t.Errorf("NA flags %#x options %+v %v", m.NAFlags(), o, e)
				}
			}},
		{"RA", &layers.ICMPv6RouterAdvertisement{HopLimit: 64, Flags: 0x80, RouterLifetime: 1800, ReachableTime: 30000, RetransTimer: 1000,
			Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptSourceAddress, Data: macA[:]},
				{Type: layers.ICMPv6OptMTU, Data: []byte{0, 0, 0, 0, 0x05, 0xdc}},
				{Type: layers.ICMPv6OptPrefixInfo, Data: prefix}}}, ICMPv6RouterAdvertisement,
			func(t *testing.T, m ICMPv6) {
				ra, e := m.RouterAdvertisement()
				if e != OK || ra != (RAFields{CurHopLimit: 64, Managed: true, RouterLifetime: 1800, ReachableTime: 30000, RetransTimer: 1000}) {
					t.Errorf("RA %+v %v", ra, e)
				}
				o, e := m.NDPOptions()
				want := NDPPrefixInfo{Prefix: netip.MustParsePrefix("2001:db8:5::/64"), OnLink: true, Autonomous: true,
					ValidLifetime: 3600, PreferredLifetime: 1800}
				if e != OK || o.MTU != 1500 || !o.HasMTU || o.NPrefix != 1 || o.Prefixes[0] != want {
					t.Errorf("RA options %+v %v", o, e)
				}
			}},
		{"RS", &layers.ICMPv6RouterSolicitation{}, ICMPv6RouterSolicitation, func(t *testing.T, m ICMPv6) {
			if o, e := m.NDPOptions(); e != OK || o != (NDPOptions{}) {
				t.Errorf("RS options %+v %v", o, e)
			}
		}},
		{"echo", &layers.ICMPv6Echo{Identifier: 5, SeqNumber: 6}, ICMPv6EchoRequest, func(t *testing.T, m ICMPv6) {
			if m.ID() != 5 || m.Seq() != 6 || m.TargetAddress().IsValid() || m.IsError() {
				t.Errorf("echo id %d seq %d", m.ID(), m.Seq())
			}
			if _, e := m.NDPOptions(); e != ErrType {
				t.Errorf("NDPOptions of echo: %v", e)
			}
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			pkt := gpSerialize(t, ip, icmp(c.typ), c.l)
			v6, e := ParseIPv6(pkt)
			if e != OK {
				t.Fatal(e)
			}
			m, e := ParseICMPv6(v6.Payload())
			if e != OK || m.Type() != c.typ {
				t.Fatalf("ParseICMPv6: %v type %d", e, m.Type())
			}
			if !m.ChecksumValid(v6A, v6B) || m.ComputeChecksum(v6A, v6B) != m.Checksum() {
				t.Errorf("checksum %#04x invalid, computed %#04x", m.Checksum(), m.ComputeChecksum(v6A, v6B))
			}
			c.chk(t, m)
		})
	}

	// Our NS/NA and echo reply, gopacket's decoder.
	for _, f := range []NDPNeighborFields{
		{Type: ICMPv6NeighborSolicitation, Target: target, LinkAddr: macA, HasLinkAddr: true},
		{Type: ICMPv6NeighborAdvertisement, Flags: NAFlagSolicited | NAFlagRouter, Target: target, LinkAddr: macB, HasLinkAddr: true},
		{Type: ICMPv6NeighborSolicitation, Target: target},
	} {
		b := make([]byte, 100)
		n := f.Encode(b[40:], v6A, v6B)
		IPv6Fields{NextHeader: ProtoICMPv6, HopLimit: 255, Src: v6A, Dst: v6B, PayloadLen: n}.Encode(b)
		p := gpReserialize(t, b[:40+n], layers.LayerTypeIPv6)
		if f.Type == ICMPv6NeighborAdvertisement {
			na := p.Layer(layers.LayerTypeICMPv6NeighborAdvertisement).(*layers.ICMPv6NeighborAdvertisement)
			if !na.Router() || !na.Solicited() || na.Override() || !na.TargetAddress.Equal(ipOf(target)) {
				t.Errorf("gopacket sees NA %+v", na)
			}
		}
	}
	b := make([]byte, 100)
	n := ICMPv6Fields{Type: ICMPv6PacketTooBig, MTU: 1280}.Encode(b[40:], make([]byte, 48), v6A, v6B)
	IPv6Fields{NextHeader: ProtoICMPv6, HopLimit: 64, Src: v6A, Dst: v6B, PayloadLen: n}.Encode(b)
	m, _ := ParseICMPv6(b[40 : 40+n])
	if m.MTU() != 1280 || !m.IsError() || !m.ChecksumValid(v6A, v6B) {
		t.Errorf("packet too big: MTU %d valid %v", m.MTU(), m.ChecksumValid(v6A, v6B))
	}
}
