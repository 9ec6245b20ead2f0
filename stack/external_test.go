package stack

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/pipeline/memlink"
	"github.com/xdpnet/xdpnet/proto"
)

type resolveCall struct {
	iface string
	addr  netip.Addr
}

// newExtEnv is the test network of stack_test.go with an external resolver and no static routes.
func newExtEnv(t *testing.T) (*env, *[]resolveCall) {
	t.Helper()
	calls := &[]resolveCall{}
	cfg := testConfig()
	cfg.Routes = nil
	cfg.Resolver = func(iface string, addr netip.Addr) { *calls = append(*calls, resolveCall{iface, addr}) }
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
	e.none() // the kernel owns ARP: no gratuitous announcements
	if err := s.SetNeighbour("lan", ipA, macA); err != nil {
		t.Fatal(err)
	}
	return e, calls
}

// TestExternalNeighbourResolution: with a Resolver the stack sends no ARP; it holds packets, asks the resolver
// (rate limited), releases them on SetNeighbour, never ages an external entry, answers host unreachable after
// FailNeighbour, and resolves again after ForgetNeighbour.
func TestExternalNeighbourResolution(t *testing.T) {
	e, calls := newExtEnv(t)
	if err := e.s.SyncRoutes([]Route{{Prefix: netip.MustParsePrefix("198.18.200.0/24"), NextHop: ipB}}, nil); err != nil {
		t.Fatal(err)
	}
	send := func(i byte) []byte {
		f := udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipFar, 2), 64, []byte{i})
		e.inject(portLan, f)
		return f
	}
	send(0)
	send(1)
	e.none()
	if len(*calls) != 1 || (*calls)[0] != (resolveCall{"wan", ipB}) {
		t.Fatalf("resolver calls %v, want one for wan %v", *calls, ipB)
	}
	if e.l.Outstanding() != 2 {
		t.Fatalf("%d frames held, want 2", e.l.Outstanding())
	}
	wakes := e.l.Wakes()
	if err := e.s.SetNeighbour("wan", ipB, macB); err != nil {
		t.Fatal(err)
	}
	if e.l.Wakes() == wakes {
		t.Errorf("SetNeighbour did not wake the queue")
	}
	e.l.Poll()
	out := e.l.Sent(portWan)
	if len(out) != 2 {
		t.Fatalf("%d released, want 2 (drops %v)", len(out), e.l.DropSummary())
	}
	for i, f := range out {
		p := parseOut(t, f)
		if p.eth.Dst() != macB || p.eth.Src() != macWan || p.ip.TTL() != 63 || p.ip.Payload()[8] != byte(i) {
			t.Errorf("released %d: %v -> %v TTL %d", i, p.eth.Src(), p.eth.Dst(), p.ip.TTL())
		}
	}
	e.checkHeld()

	// No aging of its own: long after ReachableTime the entry is used with no new resolver call.
	e.l.Advance(10 * DefaultReachableTime)
	send(2)
	if p := parseOut(t, e.only(portWan)); p.eth.Dst() != macB {
		t.Fatalf("after a long idle: sent to %v, want %v", p.eth.Dst(), macB)
	}
	if len(*calls) != 1 {
		t.Fatalf("resolver called %d times, want 1: external entries do not age", len(*calls))
	}

	// Failed: immediate host unreachable from the lan address, no resolver call.
	if err := e.s.FailNeighbour("wan", ipB); err != nil {
		t.Fatal(err)
	}
	in := send(3)
	want := append([]byte(nil), in...)
	want[22]--
	fix(want)
	checkICMPError(t, e.only(portLan), proto.ICMPv4DestUnreachable, proto.ICMPv4HostUnreachable, 0, want, ipLan)
	if e.l.Dropped(pipeline.DropNeighbourFailed) != 1 || len(*calls) != 1 {
		t.Fatalf("drops %v, resolver calls %d", e.l.DropSummary(), len(*calls))
	}

	// Forgotten: the next packet is held and asks again.
	if err := e.s.ForgetNeighbour("wan", ipB); err != nil {
		t.Fatal(err)
	}
	send(4)
	e.none()
	if len(*calls) != 2 || e.l.Outstanding() != 1 {
		t.Fatalf("after ForgetNeighbour: %d resolver calls, %d held; want 2 and 1", len(*calls), e.l.Outstanding())
	}
	if err := e.s.SetNeighbour("wan", ipB, proto.MAC{0x02, 0xbb, 0, 0, 0, 0x0c}); err != nil {
		t.Fatal(err)
	}
	e.l.Poll()
	if p := parseOut(t, e.only(portWan)); p.eth.Dst() != (proto.MAC{0x02, 0xbb, 0, 0, 0, 0x0c}) {
		t.Fatalf("released to %v, want the new MAC", p.eth.Dst())
	}
	e.checkHeld()
}

// An external resolver that never answers: MaxProbes calls a ProbeInterval apart, then host unreachable.
func TestExternalResolverSilent(t *testing.T) {
	e, calls := newExtEnv(t)
	if err := e.s.SyncRoutes([]Route{{Prefix: netip.MustParsePrefix("198.18.200.0/24"), NextHop: ipB}}, nil); err != nil {
		t.Fatal(err)
	}
	e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipFar, 2), 64, nil))
	for range 10 {
		w := e.l.WakeAt()
		if w == 0 {
			break
		}
		e.l.AdvanceTo(w)
		if len(e.l.Sent(portWan)) != 0 {
			t.Fatal("the stack sent something on wan: with a Resolver it must not ARP")
		}
	}
	if len(*calls) != DefaultMaxProbes {
		t.Errorf("%d resolver calls, want %d", len(*calls), DefaultMaxProbes)
	}
	if e.l.Dropped(pipeline.DropNeighbourFailed) != 1 || len(e.l.Sent(portLan)) != 1 {
		t.Errorf("drops %v; want one neighbour_failed with its host unreachable", e.l.DropSummary())
	}
	e.checkHeld()
}

func TestSyncRoutes(t *testing.T) {
	e, _ := newExtEnv(t)
	s := e.s
	p200 := netip.MustParsePrefix("198.18.200.0/24")
	p201 := netip.MustParsePrefix("198.18.201.0/24")
	if err := s.SyncRoutes([]Route{
		{Prefix: p200, NextHop: ipB},
		{Prefix: p201, Type: Blackhole},
	}, nil); err != nil {
		t.Fatal(err)
	}
	// Replace in place (ip route replace) and delete a missing prefix in the same update.
	if err := s.SyncRoutes([]Route{{Prefix: p200, NextHop: netip.MustParseAddr("198.19.0.3"), Interface: "wan"}},
		[]netip.Prefix{p201, netip.MustParsePrefix("198.18.202.0/24")}); err != nil {
		t.Fatal(err)
	}
	if r, ok := s.Lookup(ipFar); !ok || r.NextHop != netip.MustParseAddr("198.19.0.3") {
		t.Fatalf("Lookup(%v) = %v %v, want via 198.19.0.3", ipFar, r, ok)
	}
	if r, ok := s.Lookup(netip.MustParseAddr("198.18.201.1")); ok {
		t.Fatalf("deleted blackhole still there: %v", r)
	}
	// The kernel reports the connected route too: replacing it with itself is fine.
	if err := s.ReplaceRoute(Route{Prefix: netip.MustParsePrefix("198.18.0.0/24"), Interface: "lan"}); err != nil {
		t.Fatal(err)
	}
	// Interface addresses are never replaced, and a bad route fails the whole update.
	if err := s.ReplaceRoute(Route{Prefix: netip.MustParsePrefix("198.18.0.1/32"), Type: Blackhole}); !errors.Is(err, ErrBadRoute) {
		t.Fatalf("replacing a local address: %v, want ErrBadRoute", err)
	}
	err := s.SyncRoutes([]Route{{Prefix: p201, Type: Unreachable}, {Prefix: p200, Interface: "nope"}}, nil)
	if !errors.Is(err, ErrBadRoute) {
		t.Fatalf("bad interface: %v, want ErrBadRoute", err)
	}
	if _, ok := s.Lookup(netip.MustParseAddr("198.18.201.1")); ok {
		t.Fatal("a failed SyncRoutes left part of its routes")
	}
	if r, ok := s.Lookup(ipFar); !ok || r.NextHop != netip.MustParseAddr("198.19.0.3") {
		t.Fatalf("a failed SyncRoutes changed %v", r)
	}
	if err := s.SetNeighbour("nope", ipB, macB); !errors.Is(err, ErrNoInterface) {
		t.Fatalf("SetNeighbour on an unknown interface: %v", err)
	}
	if err := s.SetNeighbour("wan", ipB, proto.BroadcastMAC); err == nil {
		t.Fatal("SetNeighbour accepted a broadcast MAC")
	}
}
