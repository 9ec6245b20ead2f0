package stack

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/pipeline/memlink"
	"github.com/xdpnet/xdpnet/proto"
)

// The test network (RFC 2544 benchmarking addresses):
//
//	host A 198.18.0.2 (macA) --- port 0 "lan" 198.18.0.1/24 [stack] 198.19.0.1/24 "wan" port 1 --- router B 198.19.0.2 (macB)
//
// Routes: 198.18.200.0/24 via B, 198.18.60.0/24 blackhole, 198.18.70.0/24 unreachable, 198.18.80.0/24 via
// 198.19.0.99 (a gateway that never answers ARP).
var (
	macLan = proto.MAC{0x02, 0, 0, 0, 0, 0x01}
	macWan = proto.MAC{0x02, 0, 0, 0, 0, 0x02}
	macA   = proto.MAC{0x02, 0xaa, 0, 0, 0, 0x0a}
	macB   = proto.MAC{0x02, 0xbb, 0, 0, 0, 0x0b}

	ipLan  = netip.MustParseAddr("198.18.0.1")
	ipWan  = netip.MustParseAddr("198.19.0.1")
	ipA    = netip.MustParseAddr("198.18.0.2")
	ipB    = netip.MustParseAddr("198.19.0.2")
	ipFar  = netip.MustParseAddr("198.18.200.7") // behind B
	ipDead = netip.MustParseAddr("198.18.80.1")  // behind a silent gateway
	ipNone = netip.MustParseAddr("198.18.50.1")  // no route
	ipBH   = netip.MustParseAddr("198.18.60.1")  // blackhole
	ipUnr  = netip.MustParseAddr("198.18.70.1")  // unreachable
)

const (
	portLan = 0
	portWan = 1
)

type env struct {
	t *testing.T
	s *Stack
	l *memlink.Link
}

func testConfig() Config {
	return Config{
		Interfaces: []Interface{
			{Name: "lan", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.0.1/24")}},
			{Name: "wan", Addrs: []netip.Prefix{netip.MustParsePrefix("198.19.0.1/24")}},
		},
		Routes: []Route{
			{Prefix: netip.MustParsePrefix("198.18.200.0/24"), NextHop: ipB},
			{Prefix: netip.MustParsePrefix("198.18.60.0/24"), Type: Blackhole},
			{Prefix: netip.MustParsePrefix("198.18.70.0/24"), Type: Unreachable},
			{Prefix: netip.MustParsePrefix("198.18.80.0/24"), NextHop: netip.MustParseAddr("198.19.0.99")},
		},
		ICMPRate: -1,
	}
}

// newEnv builds the stack on a memlink with ports lan and wan, lets the start-up gratuitous ARPs go, and
// teaches it A's and B's MACs with ARP requests from them (checking the replies).
func newEnv(t *testing.T, mod func(*Config)) *env {
	t.Helper()
	return newEnvPorts(t, mod, []memlink.PortConfig{{Name: "lan", MAC: macLan}, {Name: "wan", MAC: macWan}})
}

// newEnvPorts is newEnv with the two ports given (their names and MACs must be lan's and wan's).
func newEnvPorts(t *testing.T, mod func(*Config), ports []memlink.PortConfig) *env {
	t.Helper()
	return newEnvFrames(t, mod, ports, 0)
}

// newEnvFrames is newEnvPorts with a frame pool of the given size (0: memlink's default).
func newEnvFrames(t *testing.T, mod func(*Config), ports []memlink.PortConfig, frames int) *env {
	t.Helper()
	cfg := testConfig()
	if mod != nil {
		mod(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l, err := memlink.New(memlink.Config{
		Ports:      ports,
		Frames:     frames,
		NewHandler: s.NewHandler,
	})
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, s: s, l: l}
	l.Poll()
	for port, ip := range map[int]netip.Addr{portLan: ipLan, portWan: ipWan} {
		g := l.Sent(port)
		if len(g) != 1 {
			t.Fatalf("port %d: %d frames at start, want 1 gratuitous ARP", port, len(g))
		}
		a := mustARP(t, g[0])
		if a.Op() != proto.ARPRequest || a.SenderIP() != ip || a.TargetIP() != ip {
			t.Fatalf("port %d: start-up ARP %+v is not a gratuitous announcement of %v", port, a.Fields(), ip)
		}
	}
	e.learn(portLan, macA, ipA, ipLan)
	e.learn(portWan, macB, ipB, ipWan)
	return e
}

// learn injects an ARP request from (mac, ip) for our address and checks the reply.
func (e *env) learn(port int, mac proto.MAC, ip, ours netip.Addr) {
	e.t.Helper()
	e.inject(port, arpFrame(proto.ARPRequest, mac, proto.BroadcastMAC, ip, proto.MAC{}, ours))
	out := e.l.Sent(port)
	if len(out) != 1 {
		e.t.Fatalf("ARP request for %v: %d replies", ours, len(out))
	}
	eth, _ := proto.ParseEthernet(out[0])
	a := mustARP(e.t, out[0])
	ourMAC := macLan
	if port == portWan {
		ourMAC = macWan
	}
	if eth.Dst() != mac || eth.Src() != ourMAC || a.Op() != proto.ARPReply || a.SenderIP() != ours ||
		a.SenderMAC() != ourMAC || a.TargetIP() != ip || a.TargetMAC() != mac {
		e.t.Fatalf("ARP reply wrong: eth %v -> %v, %+v", eth.Src(), eth.Dst(), a.Fields())
	}
}

func (e *env) inject(port int, frame []byte) {
	e.t.Helper()
	if err := e.l.Inject(port, frame); err != nil {
		e.t.Fatal(err)
	}
	if err := e.l.Err(); err != nil {
		e.t.Fatal(err)
	}
}

// checkHeld checks frame accounting: exactly the packets the handler says it holds are outstanding.
func (e *env) checkHeld() {
	e.t.Helper()
	var held int
	for _, h := range *e.s.handlers.Load() {
		held += h.nheld
	}
	if err := e.l.CheckAccounting(held); err != nil {
		e.t.Fatal(err)
	}
}

func mustARP(t *testing.T, f []byte) proto.ARP {
	t.Helper()
	eth, err := proto.ParseEthernet(f)
	if err != proto.OK || eth.EtherType() != proto.EtherTypeARP {
		t.Fatalf("not an ARP frame: % x", f)
	}
	a, err := proto.ParseARP(eth.Payload())
	if err != proto.OK {
		t.Fatalf("bad ARP: %v", err)
	}
	return a
}

func arpFrame(op uint16, src, dst proto.MAC, sip netip.Addr, tha proto.MAC, tip netip.Addr) []byte {
	b := make([]byte, 60) // padded to the Ethernet minimum
	proto.EthernetFields{Dst: dst, Src: src, EtherType: proto.EtherTypeARP}.Encode(b)
	proto.ARPFields{Op: op, SenderMAC: src, SenderIP: sip, TargetMAC: tha, TargetIP: tip}.Encode(b[14:])
	return b
}

// ipFrame builds Ethernet + IPv4 (+ payload) with a valid checksum.
func ipFrame(dstMAC, srcMAC proto.MAC, f proto.IPv4Fields, payload []byte) []byte {
	f.PayloadLen = len(payload)
	b := make([]byte, 14+20+len(payload))
	proto.EthernetFields{Dst: dstMAC, Src: srcMAC, EtherType: proto.EtherTypeIPv4}.Encode(b)
	proto.IPv4Fields(f).Encode(b[14:])
	copy(b[34:], payload)
	return b
}

func udpPayload(src, dst netip.AddrPort, data []byte) []byte {
	b := make([]byte, 8+len(data))
	copy(b[8:], data)
	proto.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), PayloadLen: len(data)}.EncodeChecksum(b, src.Addr(), dst.Addr())
	return b
}

func udpFrame(dstMAC, srcMAC proto.MAC, src, dst netip.AddrPort, ttl uint8, data []byte) []byte {
	return ipFrame(dstMAC, srcMAC, proto.IPv4Fields{TTL: ttl, Protocol: proto.ProtoUDP, ID: 0x1234, Src: src.Addr(), Dst: dst.Addr()},
		udpPayload(src, dst, data))
}

func echoFrame(dstMAC, srcMAC proto.MAC, src, dst netip.Addr, ttl uint8, id, seq uint16, data []byte) []byte {
	m := make([]byte, 8+len(data))
	proto.ICMPv4Fields{Type: proto.ICMPv4EchoRequest, ID: id, Seq: seq}.Encode(m, data)
	return ipFrame(dstMAC, srcMAC, proto.IPv4Fields{TTL: ttl, Protocol: proto.ProtoICMP, Src: src, Dst: dst}, m)
}

// parsed is a transmitted IPv4 frame, checked on the way: Ethernet, header checksum, total length.
type parsed struct {
	eth  proto.Ethernet
	ip   proto.IPv4
	icmp proto.ICMPv4 // when Protocol is ICMP
}

func parseOut(t *testing.T, f []byte) parsed {
	t.Helper()
	eth, err := proto.ParseEthernet(f)
	if err != proto.OK || eth.EtherType() != proto.EtherTypeIPv4 {
		t.Fatalf("transmitted frame is not IPv4: % x", f)
	}
	ip, err := proto.ParseIPv4(eth.Payload())
	if err != proto.OK {
		t.Fatalf("transmitted IPv4 does not parse: %v", err)
	}
	if !ip.ChecksumValid() {
		t.Fatalf("transmitted IPv4 header checksum wrong")
	}
	if int(ip.TotalLength()) != len(eth.Payload()) {
		t.Fatalf("total length %d but %d bytes after Ethernet", ip.TotalLength(), len(eth.Payload()))
	}
	p := parsed{eth: eth, ip: ip}
	if ip.Protocol() == proto.ProtoICMP && !ip.IsFragment() {
		m, err := proto.ParseICMPv4(ip.Payload())
		if err != proto.OK || !m.ChecksumValid() {
			t.Fatalf("transmitted ICMP malformed or bad checksum")
		}
		p.icmp = m
	}
	return p
}

// only returns the single frame sent on port, failing if there is not exactly one.
func (e *env) only(port int) []byte {
	e.t.Helper()
	s := e.l.Sent(port)
	if len(s) != 1 {
		e.t.Fatalf("port %d sent %d frames, want 1 (drops %v)", port, len(s), e.l.DropSummary())
	}
	return s[0]
}

func (e *env) none() {
	e.t.Helper()
	for p := range 2 {
		if s := e.l.Sent(p); len(s) != 0 {
			e.t.Fatalf("port %d sent %d frames, want none; first % x", p, len(s), s[0])
		}
	}
}

func TestARPRequestAnswered(t *testing.T) {
	e := newEnv(t, nil) // newEnv checks the replies
	ns := e.s.Neighbours()
	found := 0
	for _, n := range ns {
		if (n.Addr == ipA && n.MAC == macA && n.Interface == "lan") || (n.Addr == ipB && n.MAC == macB && n.Interface == "wan") {
			if n.State != NeighbourReachable {
				t.Errorf("%v state %v, want reachable", n.Addr, n.State)
			}
			found++
		}
	}
	if found != 2 {
		t.Errorf("neighbours not learnt from requests: %+v", ns)
	}
	// A request for someone else's address is not answered and teaches nothing.
	e.inject(portLan, arpFrame(proto.ARPRequest, macA, proto.BroadcastMAC, ipA, proto.MAC{}, netip.MustParseAddr("198.18.0.77")))
	e.none()
	if e.l.Dropped(pipeline.DropARPNotForUs) != 1 {
		t.Errorf("drops %v, want one arp_not_for_us", e.l.DropSummary())
	}
	st := e.s.Stats()
	if st.ARPRepliesOut != 2 || st.ARPGratuitousOut != 2 {
		t.Errorf("stats %+v", st)
	}
	e.checkHeld()
}

func TestForward(t *testing.T) {
	e := newEnv(t, nil)
	src, dst := netip.AddrPortFrom(ipA, 5000), netip.AddrPortFrom(ipFar, 53)
	in := udpFrame(macLan, macA, src, dst, 64, []byte("hello through the router"))
	e.inject(portLan, in)
	p := parseOut(t, e.only(portWan))
	if p.eth.Src() != macWan || p.eth.Dst() != macB {
		t.Errorf("MACs %v -> %v, want %v -> %v", p.eth.Src(), p.eth.Dst(), macWan, macB)
	}
	if p.ip.TTL() != 63 {
		t.Errorf("TTL %d, want 63", p.ip.TTL())
	}
	if p.ip.Src() != ipA || p.ip.Dst() != ipFar {
		t.Errorf("addresses changed: %v -> %v", p.ip.Src(), p.ip.Dst())
	}
	// Everything after the TTL and checksum is unchanged.
	if got, want := p.ip.Payload(), in[34:]; string(got) != string(want) {
		t.Errorf("payload changed")
	}
	if st := e.s.Stats(); st.Forwarded != 1 {
		t.Errorf("Forwarded = %d", st.Forwarded)
	}
	// Connected destination: the next hop is the destination itself.
	e.inject(portWan, udpFrame(macWan, macB, dst, src, 10, []byte("back")))
	p = parseOut(t, e.only(portLan))
	if p.eth.Dst() != macA || p.ip.TTL() != 9 {
		t.Errorf("reverse: dst MAC %v TTL %d", p.eth.Dst(), p.ip.TTL())
	}
	e.checkHeld()
}

// checkICMPError checks an ICMP error sent to host A about the frame orig.
func checkICMPError(t *testing.T, f []byte, typ, code uint8, mtu uint16, orig []byte, from netip.Addr) {
	t.Helper()
	p := parseOut(t, f)
	if p.icmp == nil {
		t.Fatalf("not ICMP: protocol %d", p.ip.Protocol())
	}
	if p.eth.Dst() != macA || p.eth.Src() != macLan {
		t.Errorf("MACs %v -> %v", p.eth.Src(), p.eth.Dst())
	}
	if p.ip.Dst() != ipA || p.ip.Src() != from {
		t.Errorf("ICMP %v -> %v, want %v -> %v", p.ip.Src(), p.ip.Dst(), from, ipA)
	}
	if p.icmp.Type() != typ || p.icmp.Code() != code {
		t.Errorf("ICMP type/code %d/%d, want %d/%d", p.icmp.Type(), p.icmp.Code(), typ, code)
	}
	if typ == proto.ICMPv4DestUnreachable && code == proto.ICMPv4FragNeeded && p.icmp.NextHopMTU() != mtu {
		t.Errorf("next-hop MTU %d, want %d", p.icmp.NextHopMTU(), mtu)
	}
	// RFC 1812 §4.3.2.3: as much of the original as fits in 576 bytes.
	oip := orig[14:]
	want := oip[:min(len(oip), 576-28)]
	if got := p.icmp.Payload(); string(got) != string(want) {
		t.Errorf("quoted %d bytes, want the %d first bytes of the original datagram", len(got), len(want))
	}
	if len(p.ip) > 576 {
		t.Errorf("ICMP error is %d bytes, more than 576", len(p.ip))
	}
}

func TestTimeExceeded(t *testing.T) {
	e := newEnv(t, nil)
	for _, ttl := range []uint8{0, 1} {
		in := udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipFar, 2), ttl, make([]byte, 1000))
		e.inject(portLan, in)
		checkICMPError(t, e.only(portLan), proto.ICMPv4TimeExceeded, proto.ICMPv4TTLExceeded, 0, in, ipLan)
		e.none()
	}
	if e.l.Dropped(pipeline.DropTTLExpired) != 2 {
		t.Errorf("drops %v", e.l.DropSummary())
	}
	e.checkHeld()
}

func TestNetUnreachable(t *testing.T) {
	e := newEnv(t, nil)
	in := udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipNone, 2), 64, []byte("x"))
	e.inject(portLan, in)
	checkICMPError(t, e.only(portLan), proto.ICMPv4DestUnreachable, proto.ICMPv4NetUnreachable, 0, in, ipLan)
	in = udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipUnr, 2), 64, []byte("x"))
	e.inject(portLan, in)
	checkICMPError(t, e.only(portLan), proto.ICMPv4DestUnreachable, proto.ICMPv4HostUnreachable, 0, in, ipLan)
	e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipBH, 2), 64, []byte("x")))
	e.none()
	for r, n := range map[pipeline.DropReason]uint64{pipeline.DropNoRoute: 1, pipeline.DropUnreachableRoute: 1, pipeline.DropBlackhole: 1} {
		if e.l.Dropped(r) != n {
			t.Errorf("%v: %d, want %d (%v)", r, e.l.Dropped(r), n, e.l.DropSummary())
		}
	}
	e.checkHeld()
}

func TestFragNeeded(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Interfaces[1].MTU = 1280 })
	f := proto.IPv4Fields{TTL: 64, Protocol: proto.ProtoUDP, DontFragment: true, Src: ipA, Dst: ipFar}
	in := ipFrame(macLan, macA, f, udpPayload(netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipFar, 2), make([]byte, 1400)))
	e.inject(portLan, in)
	checkICMPError(t, e.only(portLan), proto.ICMPv4DestUnreachable, proto.ICMPv4FragNeeded, 1280, in, ipLan)
	e.none()
	if e.l.Dropped(pipeline.DropFragNeeded) != 1 {
		t.Errorf("drops %v", e.l.DropSummary())
	}
	e.checkHeld()
}

func TestFragmentation(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Interfaces[1].MTU = 576 })
	data := make([]byte, 1400)
	for i := range data {
		data[i] = byte(i * 7)
	}
	// A record-route option (not copied to later fragments) followed by a copied option (type 0x88 stream
	// id, length 4), to check RFC 791's option rules.
	opts := []byte{7, 7, 4, 0, 0, 0, 0, 0x88, 4, 0xab, 0xcd, 0}
	udp := udpPayload(netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipFar, 2), data)
	hl := 20 + len(opts)
	in := make([]byte, 14+hl+len(udp))
	proto.EthernetFields{Dst: macLan, Src: macA, EtherType: proto.EtherTypeIPv4}.Encode(in)
	ip := in[14:]
	proto.IPv4Fields{TTL: 64, ID: 0x4242, Protocol: proto.ProtoUDP, Src: ipA, Dst: ipFar, PayloadLen: len(udp)}.Encode(ip)
	ip[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(ip[2:], uint16(hl+len(udp)))
	copy(ip[20:], opts)
	copy(ip[hl:], udp)
	ip[10], ip[11] = 0, 0
	binary.BigEndian.PutUint16(ip[10:], proto.Checksum(ip[:hl]))
	e.inject(portLan, in)
	frags := e.l.Sent(portWan)
	if len(frags) < 3 {
		t.Fatalf("%d fragments (drops %v)", len(frags), e.l.DropSummary())
	}
	var re []byte
	for i, f := range frags {
		p := parseOut(t, f)
		if len(p.ip) > 576 {
			t.Errorf("fragment %d is %d bytes > MTU 576", i, len(p.ip))
		}
		if p.eth.Dst() != macB || p.ip.TTL() != 63 || p.ip.ID() != 0x4242 {
			t.Errorf("fragment %d: dst %v TTL %d ID %#x", i, p.eth.Dst(), p.ip.TTL(), p.ip.ID())
		}
		if int(p.ip.FragmentOffset()) != len(re) {
			t.Errorf("fragment %d offset %d, want %d", i, p.ip.FragmentOffset(), len(re))
		}
		last := i == len(frags)-1
		if p.ip.MoreFragments() == last {
			t.Errorf("fragment %d MF=%v", i, p.ip.MoreFragments())
		}
		if !last && len(p.ip.Payload())%8 != 0 {
			t.Errorf("fragment %d carries %d bytes, not a multiple of 8", i, len(p.ip.Payload()))
		}
		wantOpts := opts
		if i > 0 {
			wantOpts = []byte{0x88, 4, 0xab, 0xcd}
		}
		if got := p.ip.Options(); string(got) != string(wantOpts) {
			t.Errorf("fragment %d options % x, want % x", i, got, wantOpts)
		}
		re = append(re, p.ip.Payload()...)
	}
	if string(re) != string(udp) {
		t.Errorf("reassembled payload differs from the original")
	}
	if st := e.s.Stats(); st.Fragmented != 1 || st.FragmentsOut != uint64(len(frags)) {
		t.Errorf("stats %+v", st)
	}
	e.checkHeld()
}

func TestEchoReply(t *testing.T) {
	e := newEnv(t, nil)
	e.inject(portLan, echoFrame(macLan, macA, ipA, ipWan, 5, 0x77, 3, []byte("ping data")))
	p := parseOut(t, e.only(portLan))
	if p.icmp == nil || p.icmp.Type() != proto.ICMPv4EchoReply || p.icmp.ID() != 0x77 || p.icmp.Seq() != 3 ||
		string(p.icmp.Payload()) != "ping data" {
		t.Fatalf("bad echo reply %v", p.icmp)
	}
	if p.ip.Src() != ipWan || p.ip.Dst() != ipA || p.eth.Dst() != macA || p.eth.Src() != macLan || p.ip.TTL() != 64 {
		t.Errorf("reply %v -> %v (%v -> %v) TTL %d", p.ip.Src(), p.ip.Dst(), p.eth.Src(), p.eth.Dst(), p.ip.TTL())
	}
	// To the subnet broadcast: ignored (RFC 1122 §3.2.2.6 MAY, against smurf).
	e.inject(portLan, echoFrame(proto.BroadcastMAC, macA, ipA, netip.MustParseAddr("198.18.0.255"), 5, 1, 1, nil))
	e.none()
	if e.l.Dropped(DropEchoBroadcast) != 1 {
		t.Errorf("drops %v", e.l.DropSummary())
	}
	e.checkHeld()
}

func TestParseInterface(t *testing.T) {
	for _, c := range []struct {
		in, name, addr, err string
	}{
		{in: "eth0=198.18.0.1/24", name: "eth0", addr: "198.18.0.1/24"},
		{in: "r0", name: "r0"},
		{in: "averyveryverylongname=198.18.0.1/24", err: "at most 15 characters"},
		{in: "=198.18.0.1/24", err: "want NAME=ADDR/PLEN"},
		{in: "eth0=198.18.0.1", err: "not an address with prefix length"},
		{in: "eth0=2001:2::1/64", name: "eth0", addr: "2001:2::1/64"},
		{in: "eth0=198.18.0.1/24,2001:2::1/64", name: "eth0", addr: "198.18.0.1/24 2001:2::1/64"},
		{in: "eth0=198.18.0.1/24,", err: "not an address with prefix length"},
		{in: "eth0=fe80::1%eth0/64", err: "not an address with prefix length"},
		{in: "eth 0=198.18.0.1/24", err: "want NAME"},
	} {
		i, err := ParseInterface(c.in)
		switch {
		case c.err != "":
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("ParseInterface(%q) = %+v, %v; want an error saying %q", c.in, i, err, c.err)
			}
		case err != nil || i.Name != c.name || fmt.Sprint(i.Addrs) != "["+c.addr+"]":
			t.Errorf("ParseInterface(%q) = %+v, %v; want %s %s", c.in, i, err, c.name, c.addr)
		}
	}
}
