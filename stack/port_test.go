package stack

import (
	"net/netip"
	"testing"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
)

// portChanged reports a link change of port to the handler the way the poller does (pipeline.PortObserver).
func (e *env) portChanged(port int, mac proto.MAC, mtu int, up bool) {
	e.t.Helper()
	obs, ok := e.l.Handler().(pipeline.PortObserver)
	if !ok {
		e.t.Fatal("the stack's handler does not implement pipeline.PortObserver")
	}
	info := e.l.Ports()[port]
	info.MAC, info.MTU = mac, mtu
	obs.PortChanged(info, up)
}

func dfFrame(size int) []byte {
	f := proto.IPv4Fields{TTL: 64, Protocol: proto.ProtoUDP, DontFragment: true, Src: ipA, Dst: ipFar}
	return ipFrame(macLan, macA, f, udpPayload(netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipFar, 2), make([]byte, size)))
}

// TestPortChangedMTU: an MTU change reported by the driver is the egress MTU from then on: a DF packet that
// fitted gets "fragmentation needed" with the new MTU, a packet without DF is fragmented to it, and a larger
// MTU lets it through again.
func TestPortChangedMTU(t *testing.T) {
	e := newEnv(t, nil)
	in := dfFrame(1400)
	e.inject(portLan, in)
	if out := e.only(portWan); len(out) != len(in) {
		t.Fatalf("forwarded %d bytes, want %d", len(out), len(in))
	}

	e.portChanged(portWan, macWan, 1280, true)
	e.inject(portLan, in)
	checkICMPError(t, e.only(portLan), proto.ICMPv4DestUnreachable, proto.ICMPv4FragNeeded, 1280, in, ipLan)
	e.none()

	// Without DF: fragments of at most 1280 bytes of IP.
	f := proto.IPv4Fields{TTL: 64, Protocol: proto.ProtoUDP, Src: ipA, Dst: ipFar}
	e.inject(portLan, ipFrame(macLan, macA, f, udpPayload(netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipFar, 2), make([]byte, 1400))))
	frags := e.l.Sent(portWan)
	if len(frags) != 2 {
		t.Fatalf("%d fragments, want 2 (drops %v)", len(frags), e.l.DropSummary())
	}
	for _, fr := range frags {
		if n := len(fr) - ethLen; n > 1280 {
			t.Errorf("fragment of %d bytes on a 1280-byte MTU", n)
		}
	}

	e.portChanged(portWan, macWan, 9000, true)
	e.inject(portLan, in)
	if out := e.only(portWan); len(out) != len(in) {
		t.Fatalf("after MTU 9000: forwarded %d bytes, want %d", len(out), len(in))
	}
	if e.l.Dropped(pipeline.DropFragNeeded) != 1 {
		t.Errorf("drops %v", e.l.DropSummary())
	}
	e.checkHeld()
}

// TestPortChangedConfiguredMTU: an MTU set in Config stays whatever the link reports; an MTU of 0 (unknown)
// changes nothing.
func TestPortChangedConfiguredMTU(t *testing.T) {
	e := newEnv(t, func(c *Config) { c.Interfaces[1].MTU = 1280 })
	e.portChanged(portWan, macWan, 9000, true)
	in := dfFrame(1400)
	e.inject(portLan, in)
	checkICMPError(t, e.only(portLan), proto.ICMPv4DestUnreachable, proto.ICMPv4FragNeeded, 1280, in, ipLan)

	e2 := newEnv(t, nil)
	e2.portChanged(portWan, macWan, 1280, true)
	e2.portChanged(portWan, macWan, 0, true)
	e2.inject(portLan, in)
	checkICMPError(t, e2.only(portLan), proto.ICMPv4DestUnreachable, proto.ICMPv4FragNeeded, 1280, in, ipLan)
}

// TestPortChangedMAC: a new MAC is the source of what the interface sends and the destination it accepts
// (frames to the old one are for another station now), and is announced with gratuitous ARP.
func TestPortChangedMAC(t *testing.T) {
	e := newEnv(t, nil)
	newMAC := proto.MAC{0x02, 0, 0, 0, 0, 0x22}
	e.portChanged(portWan, newMAC, 1500, true)
	e.l.Poll()
	g := e.only(portWan)
	eth, _ := proto.ParseEthernet(g)
	a := mustARP(t, g)
	if eth.Src() != newMAC || eth.Dst() != proto.BroadcastMAC || a.Op() != proto.ARPRequest ||
		a.SenderMAC() != newMAC || a.SenderIP() != ipWan || a.TargetIP() != ipWan {
		t.Fatalf("after a MAC change: %v -> %v %+v, want a gratuitous ARP announcing %v at %v", eth.Src(), eth.Dst(), a.Fields(), ipWan, newMAC)
	}
	e.l.Poll()
	e.none() // announced once

	in := dfFrame(100)
	e.inject(portLan, in)
	out := parseOut(t, e.only(portWan))
	if out.eth.Src() != newMAC || out.eth.Dst() != macB {
		t.Errorf("forwarded %v -> %v, want %v -> %v", out.eth.Src(), out.eth.Dst(), newMAC, macB)
	}
	// B answers towards the new MAC; a frame to the old MAC is not ours any more.
	back := udpFrame(newMAC, macB, netip.AddrPortFrom(ipB, 1), netip.AddrPortFrom(ipA, 2), 64, []byte("x"))
	e.inject(portWan, back)
	if out := parseOut(t, e.only(portLan)); out.eth.Dst() != macA {
		t.Errorf("reply forwarded to %v, want %v", out.eth.Dst(), macA)
	}
	old := udpFrame(macWan, macB, netip.AddrPortFrom(ipB, 1), netip.AddrPortFrom(ipA, 2), 64, []byte("x"))
	e.inject(portWan, old)
	e.none()
	if e.l.Dropped(pipeline.DropL2NotForUs) != 1 {
		t.Errorf("drops %v, want one l2_not_for_us", e.l.DropSummary())
	}
	e.checkHeld()
}

// TestPortChangedUpDown: a link going down announces nothing; coming back up announces the addresses
// again.
func TestPortChangedUpDown(t *testing.T) {
	e := newEnv(t, nil)
	e.portChanged(portLan, macLan, 1500, false)
	e.l.Poll()
	e.none()
	e.portChanged(portLan, macLan, 1500, true)
	e.l.Poll()
	a := mustARP(t, e.only(portLan))
	if a.SenderIP() != ipLan || a.TargetIP() != ipLan {
		t.Errorf("after link up: %+v, want a gratuitous ARP for %v", a.Fields(), ipLan)
	}
	e.none()
	// An unchanged report (the driver repeats one after a socket reopen) sends nothing.
	e.portChanged(portLan, macLan, 1500, true)
	e.l.Poll()
	e.none()
}
