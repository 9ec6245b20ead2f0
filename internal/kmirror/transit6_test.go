package kmirror

import (
	"context"
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/xdpnet/xdpnet/internal/netlab"
	"github.com/xdpnet/xdpnet/internal/xdpprog"
	"github.com/xdpnet/xdpnet/poller"
	"github.com/xdpnet/xdpnet/stack"
)

// transitLab is gen (g0 2001:2:0:1::2) - (r0 ::1) router (r1 2001:2:0:2::1) - (s0 ::2) sink, every veth at
// its default offloads, the router's kernel with IPv6 forwarding off, and in the router the kernel-mirror
// data path as xdpfwd --kernel builds it: the transit program on r0 and r1, a poller, a stack whose routes
// and neighbours the mirror takes from the kernel.
type transitLab struct {
	gen, router, sink *netlab.Host
	p                 *poller.Poller
	st                *stack.Stack
	m                 *Mirror
}

func newTransitLab(t *testing.T) *transitLab {
	t.Helper()
	lab := netlab.NewT(t)
	l := &transitLab{gen: lab.MustAddHost(t, "gen"), router: lab.MustAddHost(t, "rtr"), sink: lab.MustAddHost(t, "sink")}
	// One queue each: the poller serves queue 0 (as xdpfwd --queues 1 would).
	if _, err := lab.LinkWith(l.gen, "g0", l.router, "r0", netlab.LinkOptions{Queues: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.LinkWith(l.router, "r1", l.sink, "s0", netlab.LinkOptions{Queues: 1}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		h         *netlab.Host
		ifn, addr string
	}{{l.gen, "g0", "2001:2:0:1::2/64"}, {l.router, "r0", "2001:2:0:1::1/64"}, {l.router, "r1", "2001:2:0:2::1/64"}, {l.sink, "s0", "2001:2:0:2::2/64"},
		{l.gen, "g0", "198.18.1.2/24"}, {l.router, "r0", "198.18.1.1/24"}, {l.router, "r1", "198.18.2.1/24"}, {l.sink, "s0", "198.18.2.2/24"}} {
		if err := c.h.AddAddr(c.ifn, c.addr); err != nil {
			t.Fatal(err)
		}
		if err := c.h.SetUp(c.ifn); err != nil {
			t.Fatal(err)
		}
	}
	for _, c := range []struct {
		h        *netlab.Host
		ifn, via string
	}{{l.gen, "g0", "2001:2:0:1::1"}, {l.sink, "s0", "2001:2:0:2::1"}, {l.gen, "g0", "198.18.1.1"}, {l.sink, "s0", "198.18.2.1"}} {
		waitDAD(t, c.h, c.ifn)
		if err := c.h.AddRoute("default", c.via); err != nil {
			t.Fatal(err)
		}
	}
	waitDAD(t, l.router, "r0")
	waitDAD(t, l.router, "r1")
	if v, err := l.router.ReadSysctl("net.ipv6.conf.all.forwarding"); err != nil || strings.TrimSpace(v) != "0" {
		t.Fatalf("router's IPv6 forwarding is %q (%v); the test needs the kernel's default, 0, to prove the fast path forwards", v, err)
	}

	kp, err := xdpprog.NewKernelPrefixes(0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { kp.Close() })
	ns := l.router.NsHandle()
	if l.m, err = New(Config{NetNS: &ns, Interfaces: []string{"r0", "r1"}, Prefixes: kp}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.m.Close() })
	l.st, err = stack.New(stack.Config{
		Interfaces: []stack.Interface{
			{Name: "r0", Addrs: []netip.Prefix{netip.MustParsePrefix("2001:2:0:1::1/64"), netip.MustParsePrefix("198.18.1.1/24")}},
			{Name: "r1", Addrs: []netip.Prefix{netip.MustParsePrefix("2001:2:0:2::1/64"), netip.MustParsePrefix("198.18.2.1/24")}},
		},
		Resolver: l.m.Resolve,
		NoDAD:    true, // the kernel did DAD for its addresses
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.m.Start(l.st); err != nil {
		t.Fatal(err)
	}
	pc := poller.Config{Interfaces: []string{"r0", "r1"}, NewHandler: l.st.NewHandler, RingSize: 256, FramesPerQueue: 2048}
	xdpprog.SetPollerAttach(&pc, func(ifindex int, opts xdpprog.Options) (*xdpprog.Program, error) {
		return xdpprog.AttachTransit(ifindex, opts, kp)
	})
	if err := l.router.Do(func() (err error) { l.p, err = poller.New(pc); return err }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.p.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("poller Run: %v", err)
		}
		if err := l.p.Close(); err != nil {
			t.Errorf("poller Close: %v", err)
		}
	})
	return l
}

func (l *transitLab) rx(port int) uint64 { return l.p.Stats().Ports[port].RxPackets }

func mustMAC(t *testing.T, h *netlab.Host, ifn string) net.HardwareAddr {
	t.Helper()
	l, err := h.Link(ifn)
	if err != nil {
		t.Fatal(err)
	}
	return l.Attrs().HardwareAddr
}

// TestTransitFastPathDualStackVeth: with the router kernel's forwarding off, ping -6 and ping from gen to
// sink cross the router through the transit program and the stack (the poller counts exactly the transit
// packets), the next hops' MACs are learnt through the kernel's NDP and ARP at the mirror's request, and the
// router's own addresses (ping to them), its link-local address, NDP and ARP stay with the kernel: the poller
// never sees them. Transit that expires at the router gets Time Exceeded from the stack, and transit with
// IPv4 options is forwarded by it (the kernel, with forwarding off, would drop both silently), so ping -t 1,
// traceroute -6 and ping -R work through the router.
func TestTransitFastPathDualStackVeth(t *testing.T) {
	l := newTransitLab(t)
	ctx := context.Background()
	ping := func(h *netlab.Host, args ...string) string {
		t.Helper()
		out, err := h.Run(ctx, "ping", append([]string{"-c", "5", "-i", "0.1", "-W", "3"}, args...)...)
		if err != nil {
			t.Fatalf("ping %v: %v\n%s\nstats %+v %+v", args, err, out, l.p.Stats().Ports, l.m.Stats())
		}
		return string(out)
	}
	ping(l.gen, "-6", "2001:2:0:2::2")
	ping(l.gen, "198.18.2.2")
	if l.rx(0) != 10 || l.rx(1) != 10 {
		t.Errorf("poller rx r0 %d r1 %d, want the 10 echo requests and 10 replies only", l.rx(0), l.rx(1))
	}
	if s := l.st.Stats(); s.Forwarded6 != 10 || s.Forwarded != 20 {
		t.Errorf("stack forwarded %d packets, %d of them IPv6; want 20 and 10", s.Forwarded, s.Forwarded6)
	}
	if s := l.m.Stats(); s.ResolveRequests == 0 || s.ResolveErrors != 0 || s.RouteErrors != 0 {
		t.Errorf("mirror stats %+v: want the next hops resolved through the kernel, without errors", s)
	}

	// The router's own addresses, and its link-local one, are the kernel's.
	ll := linkLocal(mustMAC(t, l.router, "r0"))
	for _, a := range []string{"2001:2:0:1::1", "2001:2:0:2::1", ll.String() + "%g0", "198.18.1.1", "198.18.2.1"} {
		ping(l.gen, a)
	}
	if l.rx(0) != 10 || l.rx(1) != 10 {
		t.Errorf("after pinging the router: poller rx r0 %d r1 %d, want still 10 and 10 (the kernel answered)", l.rx(0), l.rx(1))
	}

	// Expiring transit: Time Exceeded from the router's address on the gen side.
	for _, c := range []struct{ args, want string }{
		{"-6 -t 1 2001:2:0:2::2", "From 2001:2:0:1::1 icmp_seq=1 Time exceeded: Hop limit"},
		{"-t 1 198.18.2.2", "From 198.18.1.1 icmp_seq=1 Time to live exceeded"},
	} {
		out, _ := l.gen.Run(ctx, "ping", append([]string{"-c", "1", "-W", "2"}, strings.Fields(c.args)...)...)
		if !strings.Contains(string(out), c.want) {
			t.Errorf("ping %s: want %q, got\n%s", c.args, c.want, out)
		}
	}
	// IPv4 options in transit: the stack checks and forwards them (the kernel, forwarding off, would drop them).
	if out := ping(l.gen, "-R", "198.18.2.2"); !strings.Contains(out, "RR:") {
		t.Errorf("ping -R: no record route in the replies:\n%s", out)
	}
	out, err := l.gen.Run(ctx, "traceroute", "-6", "-n", "-q", "1", "-w", "2", "2001:2:0:2::2")
	if err != nil || !strings.Contains(string(out), " 1  2001:2:0:1::1 ") || !strings.Contains(string(out), " 2  2001:2:0:2::2 ") {
		t.Errorf("traceroute -6: %v, want the router then the sink:\n%s", err, out)
	}
}
