package main

import (
	"context"
	"encoding/binary"
	"net"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/internal/netlab"
)

// startKernelLab builds gen - router - sink with the addresses configured in the router's kernel (as an
// operator would with ip addr) and ip_forward=0, and starts `xdpfwd run --kernel --iface r0 --iface r1`.
func startKernelLab(t *testing.T, extra ...string) *routerLab {
	return startKernelLabWith(t, labOptions{}, extra...)
}

func startKernelLabWith(t *testing.T, o labOptions, extra ...string) *routerLab {
	t.Helper()
	netlab.RequirePrivileges(t)
	l, err := newRouterLab(t.Name(), o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})
	if err := l.startRouter(xdpfwdBin, append([]string{"--kernel", "--iface", "r0", "--iface", "r1"}, extra...)...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("xdpfwd output:\n%s", l.xdpfwd.Output())
		}
	})
	assertNoKernelForwarding(t, l)
	return l
}

// portRx reads the rx_packets column of a port from the summary table.
func portRx(t *testing.T, out, port string) uint64 {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + port + ` +(\d+) `).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no %s line in the summary:\n%s", port, out)
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n
}

func hasNeigh(t *testing.T, h *netlab.Host, ifn, ip string) bool {
	t.Helper()
	l, err := h.Link(ifn)
	if err != nil {
		t.Fatal(err)
	}
	ns, err := h.Netlink().NeighList(l.Attrs().Index, unix.AF_INET)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		if n.IP.String() == ip && n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE) != 0 {
			return true
		}
	}
	return false
}

// TestKernelMirrorForwardingVeth: with ip_forward=0, ping and UDP gen -> sink go through xdpfwd (its stats
// count them), the router's own address is answered by the kernel (xdpfwd never sees those frames), and the
// sink's MAC, which the router's kernel did not know, was resolved by the kernel at xdpfwd's request.
func TestKernelMirrorForwardingVeth(t *testing.T) {
	l := startKernelLab(t)
	if hasNeigh(t, l.router, "r1", sinkAddr) {
		t.Fatal("the router's kernel already knows the sink: the test of resolution through the kernel would prove nothing")
	}
	// Transit first: the first datagram finds no neighbour, the stack holds it and asks the kernel (NTF_USE).
	gen, sink := udpPair(t, l, sinkAddr, 4000)
	sizes := []int{4, 100, 1000, 1472, 64, 300}
	for i, n := range sizes {
		if _, err := gen.Write(payload(i, n)); err != nil {
			t.Fatal(err)
		}
	}
	got := readAll(sink, len(sizes), 5*time.Second)
	for i, n := range sizes {
		if string(got[i]) != string(payload(i, n)) {
			t.Errorf("datagram %d (%d bytes) not delivered intact (got %d bytes)", i, n, len(got[i]))
		}
	}
	if !hasNeigh(t, l.router, "r1", sinkAddr) {
		t.Error("the router's kernel has no neighbour entry for the sink: xdpfwd did not resolve through it")
	}
	mustPing(t, l.gen, "-c", "5", "-i", "0.05", "-W", "2", sinkAddr)
	// To the box: answered by the kernel, not xdpfwd (it has no echo in this mode).
	mustPing(t, l.gen, "-c", "4", "-i", "0.05", "-W", "2", r0Addr)
	mustPing(t, l.sink, "-c", "3", "-i", "0.05", "-W", "2", r1Addr)
	out := stopRouter(t, l)
	// r0 received the 6 datagrams and 5 echo requests; the 4 pings to r0 and every ARP went to the kernel.
	if rx := portRx(t, out, "r0"); rx != uint64(len(sizes))+5 {
		t.Errorf("r0 rx_packets %d, want %d (transit only)", rx, len(sizes)+5)
	}
	// r1 received the 5 echo replies only (the sink's pings to r1 went to the kernel).
	if rx := portRx(t, out, "r1"); rx != 5 {
		t.Errorf("r1 rx_packets %d, want 5", rx)
	}
	if f := counter(out, "stack", "forwarded"); f != uint64(len(sizes))+10 {
		t.Errorf("stack forwarded %d, want %d", f, len(sizes)+10)
	}
	if d := counter(out, "stack", "icmp_echo_replies_out"); d != 0 {
		t.Errorf("xdpfwd answered %d pings itself; the kernel should have", d)
	}
	if a := counter(out, "stack", "arp_requests_out"); a != 0 {
		t.Errorf("xdpfwd sent %d ARP requests; in kernel-mirror mode the kernel resolves", a)
	}
	if r := counter(out, "stack", "held_released"); r == 0 {
		t.Error("no packet was held for resolution and released: the first datagram should have waited for the kernel's ARP")
	}
	if !strings.Contains(out, "resolve_requests=") || strings.Contains(out, "resolve_requests=0 ") {
		t.Errorf("the mirror sent no resolve request:\n%s", out)
	}
}

// prober sends a numbered UDP datagram every interval from gen to dst and records when each arrives at the
// sink.
type prober struct {
	mu      sync.Mutex
	arrived []time.Time
	stop    chan struct{}
	once    sync.Once
	wg      sync.WaitGroup
}

func startProber(t *testing.T, l *routerLab, dst string, interval time.Duration) *prober {
	gen, sink := udpPair(t, l, dst, 4100)
	p := &prober{stop: make(chan struct{})}
	p.wg.Add(2)
	go func() {
		defer p.wg.Done()
		b := make([]byte, 16)
		for i := 0; ; i++ {
			select {
			case <-p.stop:
				return
			case <-time.After(interval):
			}
			binary.BigEndian.PutUint32(b, uint32(i))
			gen.Write(b)
		}
	}()
	go func() {
		defer p.wg.Done()
		buf := make([]byte, 64)
		for {
			sink.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
			_, err := sink.Read(buf)
			if err == nil {
				p.mu.Lock()
				p.arrived = append(p.arrived, time.Now())
				p.mu.Unlock()
				continue
			}
			select {
			case <-p.stop:
				return
			default:
			}
		}
	}()
	return p
}

func (p *prober) times() []time.Time {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]time.Time(nil), p.arrived...)
}

func (p *prober) close() { p.once.Do(func() { close(p.stop) }); p.wg.Wait() }

// routeFollowBound: the requirement, a route added or removed with `ip route` changes forwarding
// within 100 ms (measured here: about 1 ms; see internal/kmirror's routeBound).
const routeFollowBound = 100 * time.Millisecond

// TestKernelMirrorRouteAddDeleteVeth: `ip route add 198.19.7.7/32 via <sink>` in the router's kernel makes
// xdpfwd forward to that second sink address; `ip route del` stops it. Each is measured from the netlink
// call to the first (last) probe datagram through.
func TestKernelMirrorRouteAddDeleteVeth(t *testing.T) {
	l := startKernelLab(t)
	const extra = "198.19.7.7"
	if err := l.sink.AddAddr("eth0", extra+"/32"); err != nil {
		t.Fatal(err)
	}
	// Resolve the sink first, so the measurement is of the route alone.
	mustPing(t, l.gen, "-c", "1", "-W", "2", sinkAddr)
	p := startProber(t, l, extra, time.Millisecond)
	defer p.close()
	time.Sleep(100 * time.Millisecond)
	if n := len(p.times()); n != 0 {
		t.Fatalf("%d probes reached %s before the route exists", n, extra)
	}
	r1, err := l.router.Link("r1")
	if err != nil {
		t.Fatal(err)
	}
	route := &netlink.Route{
		LinkIndex: r1.Attrs().Index,
		Dst:       &net.IPNet{IP: net.ParseIP(extra).To4(), Mask: net.CIDRMask(32, 32)},
		Gw:        net.ParseIP(sinkAddr).To4(),
	}
	added := time.Now()
	if err := l.router.Netlink().RouteAdd(route); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for len(p.times()) == 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	ts := p.times()
	if len(ts) == 0 {
		t.Fatal("no probe went through after ip route add")
	}
	addLatency := ts[0].Sub(added)
	t.Logf("ip route add -> first probe through: %v", addLatency)
	if addLatency > routeFollowBound {
		t.Errorf("route add took %v to take effect, want < %v", addLatency, routeFollowBound)
	}
	time.Sleep(50 * time.Millisecond)
	deleted := time.Now()
	if err := l.router.Netlink().RouteDel(route); err != nil {
		t.Fatal(err)
	}
	time.Sleep(routeFollowBound + 200*time.Millisecond)
	ts = p.times()
	last := ts[len(ts)-1]
	delLatency := last.Sub(deleted)
	t.Logf("ip route del -> last probe through: %v (%d probes through in all)", delLatency, len(ts))
	if delLatency > routeFollowBound {
		t.Errorf("route delete took %v to take effect, want < %v", delLatency, routeFollowBound)
	}
	if time.Since(last) < 200*time.Millisecond {
		t.Errorf("probes still arriving %v after the route was deleted", time.Since(deleted))
	}
	p.close()
	out := stopRouter(t, l)
	if n := counter(out, "drop", "no_route"); n == 0 {
		t.Errorf("no no_route drops: the probes before the add and after the delete should have been dropped by xdpfwd\n%s", out)
	}
}

func TestKernelFlagsChecked(t *testing.T) {
	for _, args := range [][]string{
		{"--kernel", "--iface", "r0=198.18.0.1/24"},
		{"--table", "100", "--iface", "r0"},
		{"--kernel", "--table", "-1", "--iface", "r0"},
	} {
		o, err := parseRunArgs(args, nil)
		if err == nil {
			_, err = o.check()
		}
		if err == nil {
			t.Errorf("%v: accepted", args)
			continue
		}
		if _, ok := err.(usageError); !ok {
			t.Errorf("%v: %v is not a usage error", args, err)
		}
	}
	o, err := parseRunArgs([]string{"--kernel", "--table", "100", "--iface", "r0", "--iface", "r1"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	c, err := o.check()
	if err != nil {
		t.Fatal(err)
	}
	if !c.kernel.enabled || c.kernel.table != 100 {
		t.Fatalf("kernel options %+v", c.kernel)
	}
}

// TestKernelMirrorIPv6Veth: in kernel-mirror mode a dual-stack router forwards IPv6 transit in the fast path
// with the kernel's IPv6 forwarding off - Linux peers at their defaults ping through it, get hop limit
// exceeded from it, exchange UDP - while NDP and traffic for the box stay with the kernel; an IPv6 route
// added and deleted with `ip -6 route` starts and stops forwarding.
func TestKernelMirrorIPv6Veth(t *testing.T) {
	l := startKernelLabWith(t, labOptions{IPv6: true})
	assertNoKernelForwarding6(t, l)
	if err := l.waitIPv6(context.Background(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	out := mustPing(t, l.gen, "-6", "-c", "3", "-i", "0.2", "-W", "2", sink6Addr)
	if !strings.Contains(out, "ttl=63") {
		t.Errorf("reply through one router should have hop limit 63:\n%s", out)
	}
	mustPing(t, l.sink, "-6", "-c", "2", "-i", "0.2", "-W", "2", r16Addr) // the kernel's own address
	out = runIn(t, l.gen, "ping", "-6", "-c", "1", "-t", "1", "-W", "2", sink6Addr)
	if !strings.Contains(out, "From "+r06Addr) || !strings.Contains(out, "Time exceeded: Hop limit") {
		t.Errorf("ping -6 -t 1: want \"From %s ... Time exceeded: Hop limit\":\n%s", r06Addr, out)
	}

	// A prefix behind the sink, routed by the router's kernel only while the route exists.
	const far, farAddr = "2001:2:0:77::/64", "2001:2:0:77::1"
	if err := l.sink.AddAddr("lo", farAddr+"/128"); err != nil {
		t.Fatal(err)
	}
	if out, err := l.router.Run(context.Background(), "ip", "-6", "route", "add", far, "via", sink6Addr); err != nil {
		t.Fatalf("ip -6 route add: %v\n%s", err, out)
	}
	waitPing := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for {
			_, err := l.gen.Run(context.Background(), "ping", "-6", "-c", "1", "-W", "1", farAddr)
			if (err == nil) == want {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("ping -6 %s: answered %v, want %v within 5s", farAddr, err == nil, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	waitPing(true)
	if out, err := l.router.Run(context.Background(), "ip", "-6", "route", "del", far); err != nil {
		t.Fatalf("ip -6 route del: %v\n%s", err, out)
	}
	waitPing(false)

	out = stopRouter(t, l)
	if f := counter(out, "stack", "forwarded6"); f < 6 {
		t.Errorf("stack forwarded6 %d, want the echo requests and replies through the fast path", f)
	}
	if a := counter(out, "stack", "ndp_solicitations_out"); a != 0 {
		t.Errorf("xdpfwd sent %d neighbour solicitations; in kernel-mirror mode the kernel resolves", a)
	}
}
