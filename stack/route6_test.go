package stack

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
)

// dual is testConfig with IPv6 on both interfaces: lan 2001:2::1/64, wan 2001:2:0:1::1/64.
func dual(c *Config) {
	c.Interfaces[0].Addrs = append(c.Interfaces[0].Addrs, netip.MustParsePrefix("2001:2::1/64"))
	c.Interfaces[1].Addrs = append(c.Interfaces[1].Addrs, netip.MustParsePrefix("2001:2:0:1::1/64"))
}

func TestInterfaceAddrs6(t *testing.T) {
	cfg := testConfig()
	dual(&cfg)
	cfg.Interfaces[1].Addrs = append(cfg.Interfaces[1].Addrs, netip.MustParsePrefix("fe80::1/64"))
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ dst, want string }{
		{"2001:2::1", "local 2001:2::1/128 dev lan"},
		{"2001:2::77", "2001:2::/64 dev lan"},
		{"2001:2:0:1::9", "2001:2:0:1::/64 dev wan"},
		{"198.18.0.9", "198.18.0.0/24 dev lan"},
	} {
		r, ok := s.Lookup(netip.MustParseAddr(c.dst))
		if !ok || r.String() != c.want {
			t.Errorf("Lookup(%s) = %v, %v; want %s", c.dst, r, ok, c.want)
		}
	}
	// Link-local addresses are not routed (RFC 4291 §2.5.6); the configured one is wan's.
	if r, ok := s.Lookup(netip.MustParseAddr("fe80::1")); ok {
		t.Errorf("link-local address routed: %v", r)
	}
	if ll := s.ifaces[1].v6.ll.Load(); ll == nil || ll.prefix.String() != "fe80::1/64" {
		t.Errorf("wan link-local %v, want the configured fe80::1/64", ll)
	}
	for _, bad := range []struct{ addr, err string }{
		{"ff02::1/64", "not a usable unicast"},
		{"::1/128", "not a usable unicast"},
		{"::/0", "not a usable unicast"},
	} {
		cfg := testConfig()
		cfg.Interfaces[0].Addrs = append(cfg.Interfaces[0].Addrs, netip.MustParsePrefix(bad.addr))
		if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), bad.err) {
			t.Errorf("address %s: %v, want an error saying %q", bad.addr, err, bad.err)
		}
	}
	cfg = testConfig()
	dual(&cfg)
	cfg.Interfaces[0].MTU = 1200
	if _, err := New(cfg); err == nil || !strings.Contains(err.Error(), "1280") {
		t.Errorf("IPv6 interface with MTU 1200: %v, want an error about IPv6's minimum", err)
	}
}

func TestLinkLocalFromMAC(t *testing.T) {
	// RFC 4291 App. A: 34-56-78-9A-BC-DE becomes 3656:78ff:fe9a:bcde.
	got := linkLocalFromMAC(proto.MAC{0x34, 0x56, 0x78, 0x9a, 0xbc, 0xde})
	if got.String() != "fe80::3656:78ff:fe9a:bcde/64" {
		t.Errorf("link-local %v", got)
	}
	got = linkLocalFromMAC(macLan) // 02:00:00:00:00:01, locally administered: the bit is cleared
	if got.String() != "fe80::ff:fe00:1/64" {
		t.Errorf("link-local %v", got)
	}
}

func TestRouteAPI6(t *testing.T) {
	cfg := testConfig()
	dual(&cfg)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	gw := netip.MustParseAddr("2001:2:0:1::2")
	pfx := netip.MustParsePrefix("2001:2:100::/48")
	if err := s.AddRoute(Route{Prefix: pfx, NextHop: gw}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddRoute(Route{Prefix: netip.MustParsePrefix("2001:2:200::/48"), NextHop: netip.MustParseAddr("fe80::2"), Interface: "wan"}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddRoute(Route{Prefix: netip.MustParsePrefix("2001:2:210::/48"), NextHop: netip.MustParseAddr("fe80::3%lan")}); err != nil {
		t.Fatal(err)
	}
	if r, ok := s.Lookup(netip.MustParseAddr("2001:2:210::1")); !ok || r.String() != "2001:2:210::/48 via fe80::3 dev lan" {
		t.Errorf("route with a zoned next hop: %v", r)
	}
	if err := s.DeleteRoute(netip.MustParsePrefix("2001:2:210::/48")); err != nil {
		t.Fatal(err)
	}
	if err := s.AddRoute(Route{Prefix: netip.MustParsePrefix("2001:2:300::/48"), Type: Blackhole}); err != nil {
		t.Fatal(err)
	}
	r, ok := s.Lookup(netip.MustParseAddr("2001:2:100::5"))
	if !ok || r.String() != "2001:2:100::/48 via 2001:2:0:1::2 dev wan" {
		t.Errorf("lookup %v %v", r, ok)
	}
	for _, c := range []struct {
		r   Route
		err string
	}{
		{Route{Prefix: pfx, NextHop: gw}, "route exists"},
		{Route{Prefix: netip.MustParsePrefix("2001:2:100::1/48"), NextHop: gw}, "host bits"},
		{Route{Prefix: netip.MustParsePrefix("2001:2:400::/48"), NextHop: netip.MustParseAddr("198.19.0.2")}, "must be IPv6"},
		{Route{Prefix: netip.MustParsePrefix("2001:2:400::/48"), NextHop: netip.MustParseAddr("2001:2:9::1")}, "no connected network"},
		{Route{Prefix: netip.MustParsePrefix("2001:2:400::/48"), NextHop: netip.MustParseAddr("fe80::9")}, "needs the Interface"},
		{Route{Prefix: netip.MustParsePrefix("fe80::/64"), Interface: "lan"}, "not routed"},
		{Route{Prefix: netip.MustParsePrefix("198.18.99.0/24"), NextHop: gw}, "must be IPv4"},
	} {
		if err := s.AddRoute(c.r); err == nil || !strings.Contains(err.Error(), c.err) {
			t.Errorf("AddRoute(%v) = %v, want %q", c.r, err, c.err)
		}
	}
	if got := fmt.Sprint(s.Routes()); got != "[198.18.0.0/24 dev lan blackhole 198.18.60.0/24 unreachable 198.18.70.0/24 "+
		"198.18.80.0/24 via 198.19.0.99 dev wan 198.18.200.0/24 via 198.19.0.2 dev wan 198.19.0.0/24 dev wan "+
		"2001:2::/64 dev lan 2001:2:0:1::/64 dev wan 2001:2:100::/48 via 2001:2:0:1::2 dev wan "+
		"2001:2:200::/48 via fe80::2 dev wan blackhole 2001:2:300::/48]" {
		t.Errorf("Routes() = %s", got)
	}
	// SyncRoutes deletes IPv6 prefixes and replaces in place.
	gw2 := netip.MustParseAddr("2001:2::9")
	if err := s.SyncRoutes([]Route{{Prefix: pfx, NextHop: gw2}}, []netip.Prefix{netip.MustParsePrefix("2001:2:300::/48"), netip.MustParsePrefix("2001:2:999::/48")}); err != nil {
		t.Fatal(err)
	}
	if r, ok := s.Lookup(netip.MustParseAddr("2001:2:100::5")); !ok || r.NextHop != gw2 || r.Interface != "lan" {
		t.Errorf("after replace: %v %v", r, ok)
	}
	if r, ok := s.Lookup(netip.MustParseAddr("2001:2:300::5")); ok {
		t.Errorf("deleted blackhole still there: %v", r)
	}
	if err := s.DeleteRoute(pfx); err != nil {
		t.Fatal(err)
	}
	if r, ok := s.Lookup(netip.MustParseAddr("2001:2:100::5")); ok {
		t.Errorf("deleted route still there: %v", r)
	}
	if err := s.DeleteRoute(netip.MustParsePrefix("2001:2::1/128")); !errors.Is(err, ErrBadRoute) {
		t.Errorf("deleting a local address: %v", err)
	}
	// A default route catches the rest; the route ids of both families come from one space.
	if err := s.AddRoute(Route{Prefix: netip.MustParsePrefix("::/0"), NextHop: gw}); err != nil {
		t.Fatal(err)
	}
	if r, ok := s.Lookup(netip.MustParseAddr("2001:db8::1")); !ok || r.Prefix.Bits() != 0 {
		t.Errorf("default: %v %v", r, ok)
	}
	if r, ok := s.Lookup(netip.MustParseAddr("198.51.100.1")); ok {
		t.Errorf("IPv6 default route answers IPv4: %v", r)
	}
}

// testEntry6 is testEntry for an IPv6 prefix: gw6 carries a tag derived from the prefix, so that a reader
// sees an entry overwritten (an id reused) while it still held it.
func testEntry6(p netip.Prefix) routeEntry {
	a := p.Addr().As16()
	return routeEntry{route: Route{Prefix: p, Type: Blackhole}, typ: Blackhole, iface: -1, gw6: naddr{naddr6(&a).hi ^ 0x5a, uint64(p.Bits())}, depth: p.Bits()}
}

// TestRouteTableConcurrentReaders6 is TestRouteTableConcurrentReaders for IPv6: queues look addresses up
// in lpm6 while updates add, remove and replace prefixes; every answer is a consistent entry whose prefix
// covers the address, so that neither a trie slot nor a route id was reused under a reader (the grace
// period lpm6.commit shares with DIR-24-8).
func TestRouteTableConcurrentReaders6(t *testing.T) {
	tbl := newRouteTable()
	def := netip.MustParsePrefix("::/0")
	if err := tbl.update(func(w *routeWriter) error { return w.add(testEntry6(def)) }); err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(9, 10))
	var universe []netip.Prefix
	for range 200 {
		var a [16]byte
		a[0], a[1], a[2], a[3] = 0x20, 0x01, 0, byte(r.IntN(4))
		a[4], a[5], a[6] = byte(r.IntN(3)), byte(r.IntN(256)), byte(r.IntN(256))
		p, _ := netip.AddrFrom16(a).Prefix(16 + r.IntN(49))
		universe = append(universe, p)
	}
	var addrs [][16]byte
	for _, p := range universe {
		addrs = append(addrs, p.Addr().As16(), inside(r, p).As16())
	}
	check := func(e *routeEntry, a *[16]byte) string {
		p := e.route.Prefix
		pa := p.Addr().As16()
		switch {
		case !p.IsValid():
			return "an empty entry"
		case e.gw6 != (naddr{naddr6(&pa).hi ^ 0x5a, uint64(p.Bits())}) || e.depth != p.Bits():
			return "an entry whose fields disagree (torn or reused while read): " + p.String()
		case !p.Contains(netip.AddrFrom16(*a)):
			return "a route that does not cover the address: " + p.String()
		}
		return ""
	}
	var stop atomic.Bool
	var wg sync.WaitGroup
	var lookups atomic.Int64
	errs := make(chan string, 4)
	for g := range 2 {
		rd := tbl.register()
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for !stop.Load() {
				f := tbl.enter(rd)
				// One queue looks up one address at a time, the other 64 at once (lookupBatch).
				var batch [64][16]byte
				var ids [64]uint32
				for k := range 64 {
					batch[k] = addrs[(n+k*7+g)%len(addrs)]
				}
				if g == 1 {
					f.lpm6.lookupBatch(batch[:], ids[:])
				}
				for k := range 64 {
					a := &batch[k]
					var e *routeEntry
					switch {
					case g == 0:
						e = f.lookup6(a)
					case ids[k] != 0:
						e = f.routes.get(ids[k])
					}
					if e == nil {
						errs <- "lookup " + netip.AddrFrom16(*a).String() + ": no route, but the default route is always there"
						rd.leave()
						return
					}
					if msg := check(e, a); msg != "" {
						errs <- "lookup " + netip.AddrFrom16(*a).String() + ": " + msg
						rd.leave()
						return
					}
				}
				rd.leave()
				n += 64
				lookups.Add(64)
			}
		}()
	}
	deadline := time.Now().Add(1500 * time.Millisecond)
	updates := 0
	for time.Now().Before(deadline) && len(errs) == 0 {
		err := tbl.update(func(w *routeWriter) error {
			for range 1 + r.IntN(3) {
				p := universe[r.IntN(len(universe))]
				if _, ok := w.get(p); !ok {
					if err := w.add(testEntry6(p)); err != nil {
						return err
					}
					continue
				}
				if _, err := w.remove(p); err != nil {
					return err
				}
				if r.IntN(2) == 0 {
					if err := w.add(testEntry6(p)); err != nil {
						return err
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		updates++
	}
	stop.Store(true)
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if lookups.Load() == 0 || updates < 100 {
		t.Fatalf("only %d lookups and %d updates ran: the test proves nothing", lookups.Load(), updates)
	}
	// With every reader between batches, what updates unlink is reusable at once: more updates take no
	// new words: the array grows by no more than a region of each size class the subtrie passes through.
	n := tbl.lpm6.used
	for i := range 20 {
		p := universe[i]
		if err := tbl.update(func(w *routeWriter) error {
			if _, ok := w.get(p); ok {
				_, err := w.remove(p)
				return err
			}
			return w.add(testEntry6(p))
		}); err != nil {
			t.Fatal(err)
		}
	}
	largest := uint32(0)
	for _, s := range tbl.lpm6.size {
		largest = max(largest, s)
	}
	if tbl.lpm6.used > n+3*largest {
		t.Errorf("lpm6 handed out %d more words over 20 updates with no reader in a batch (regions of up to %d words): unlinked subtries are not reused", tbl.lpm6.used-n, largest)
	}
	t.Logf("%d updates, %d lookups, %d lpm6 words, %d whole-table rebuilds, %d route ids", updates, lookups.Load(), tbl.lpm6.used, tbl.lpm6.rebuilds, tbl.nextID)
}

// TestSyncRoutesDeletesIPv6: IPv6 prefixes given to SyncRoutes to delete leave the table the forwarding
// path reads - a packet to them falls to the covering route, or gets no route - alongside IPv4 deletions in
// the same call; prefixes of every depth (a /64 under a /48 under a /40, and ::/0, which lives in lpm6's
// direct table); an absent prefix is no error; an interface's own address is refused and the whole call
// with it.
func TestSyncRoutesDeletesIPv6(t *testing.T) {
	e := newEnv6(t, nil)
	// send sends a UDP packet from A to dst and returns what came out on wan (forwarded) or, failing that,
	// the ICMPv6 error back to A (nil if neither).
	send := func(dst string) (fwd bool, icmp proto.ICMPv6) {
		t.Helper()
		e.inject(portLan, udp6Frame(macLan, macA, netip.AddrPortFrom(ip6A, 1), netip.AddrPortFrom(netip.MustParseAddr(dst), 2), 64, []byte("x")))
		if out := e.l.Sent(portWan); len(out) == 1 {
			return true, nil
		}
		if out := e.l.Sent(portLan); len(out) == 1 {
			return false, parseOut6(t, out[0]).icmp
		}
		t.Fatalf("to %s: neither forwarded nor answered", dst)
		return false, nil
	}
	wantForward := func(dst string) {
		t.Helper()
		if fwd, icmp := send(dst); !fwd {
			t.Errorf("to %s: not forwarded (ICMPv6 type %d code %d)", dst, icmp.Type(), icmp.Code())
		}
	}
	wantError := func(dst string, code uint8) {
		t.Helper()
		fwd, icmp := send(dst)
		if fwd || icmp == nil || icmp.Type() != proto.ICMPv6DestUnreachable || icmp.Code() != code {
			t.Errorf("to %s: forwarded %v, ICMPv6 %v; want destination unreachable code %d", dst, fwd, icmp, code)
		}
	}
	p := netip.MustParsePrefix
	if err := e.s.SyncRoutes([]Route{
		{Prefix: p("2001:2:400::/40"), Type: Unreachable},
		{Prefix: p("2001:2:400::/48"), NextHop: ip6B},
		{Prefix: p("2001:2:400:5::/64"), Type: Blackhole},
	}, nil); err != nil {
		t.Fatal(err)
	}
	wantForward("2001:2:400:1::7")
	wantError("2001:2:400:5::7", proto.ICMPv6AdminProhibited)
	wantError("2001:2:4ff::7", proto.ICMPv6NoRoute) // the /40

	// The /48 and the /64 go, with an IPv4 route and a prefix that was never there in the same call.
	if err := e.s.SyncRoutes(nil, []netip.Prefix{p("2001:2:400::/48"), p("2001:2:400:5::/64"), p("198.18.200.0/24"), p("2001:2:999::/48")}); err != nil {
		t.Fatal(err)
	}
	wantError("2001:2:400:1::7", proto.ICMPv6NoRoute) // now the /40's
	wantError("2001:2:400:5::7", proto.ICMPv6NoRoute)
	if r, ok := e.s.Lookup(netip.MustParseAddr("198.18.200.1")); ok {
		t.Errorf("IPv4 route deleted in the same call still there: %v", r)
	}
	before := e.l.Dropped(pipeline.DropNoRoute)
	if err := e.s.SyncRoutes(nil, []netip.Prefix{p("2001:2:400::/40")}); err != nil {
		t.Fatal(err)
	}
	wantError("2001:2:400:1::7", proto.ICMPv6NoRoute)
	if e.l.Dropped(pipeline.DropNoRoute) != before+1 {
		t.Errorf("after the last covering route went: drops %v, want one more no_route", e.l.DropSummary())
	}

	// A default route, in lpm6's direct table rather than a trie, comes and goes the same way.
	if err := e.s.SyncRoutes([]Route{{Prefix: p("::/0"), NextHop: ip6B}}, nil); err != nil {
		t.Fatal(err)
	}
	wantForward("2001:2:400:1::7")
	wantForward("3fff::1")
	if err := e.s.SyncRoutes(nil, []netip.Prefix{p("::/0")}); err != nil {
		t.Fatal(err)
	}
	wantError("3fff::1", proto.ICMPv6NoRoute)

	// An interface's own address cannot be deleted, and the call that tried deletes nothing.
	err := e.s.SyncRoutes(nil, []netip.Prefix{p("2001:2:100::/48"), p("2001:2::1/128")})
	if !errors.Is(err, ErrBadRoute) {
		t.Errorf("deleting lan's address: %v, want ErrBadRoute", err)
	}
	wantForward("2001:2:100::7")
	for _, r := range e.s.Routes() {
		switch r.Prefix {
		case p("2001:2:400::/40"), p("2001:2:400::/48"), p("2001:2:400:5::/64"), p("::/0"):
			t.Errorf("deleted route still listed: %v", r)
		}
	}
	e.checkHeld()
}

// RouteCounts agrees with Routes, family by family, as routes come and go (local and broadcast entries are in
// neither).
func TestRouteCounts(t *testing.T) {
	e := newEnv6(t, nil)
	check := func(when string) {
		t.Helper()
		var v4, v6 int
		for _, r := range e.s.Routes() {
			if r.Prefix.Addr().Is4() {
				v4++
			} else {
				v6++
			}
		}
		if c4, c6 := e.s.RouteCounts(); c4 != v4 || c6 != v6 {
			t.Errorf("%s: RouteCounts %d, %d; Routes has %d IPv4 and %d IPv6", when, c4, c6, v4, v6)
		}
	}
	check("connected routes only")
	p := netip.MustParsePrefix
	if err := e.s.SyncRoutes([]Route{{Prefix: p("2001:2:400::/40"), Type: Unreachable}, {Prefix: p("198.18.200.0/24"), Type: Blackhole},
		{Prefix: p("198.18.201.0/24"), Type: Blackhole}}, nil); err != nil {
		t.Fatal(err)
	}
	check("after adding routes")
	if c4, c6 := e.s.RouteCounts(); c4 < 2 || c6 < 1 {
		t.Errorf("RouteCounts %d, %d: the added routes are missing", c4, c6)
	}
	if err := e.s.SyncRoutes(nil, []netip.Prefix{p("198.18.200.0/24")}); err != nil {
		t.Fatal(err)
	}
	check("after deleting one")
}
