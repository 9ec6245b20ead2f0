package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/internal/netlab"
)

// late6Addr is added to the sink while xdpfwd runs.
const late6Addr = "2001:2:0:1::3"

// newRouterLab6 builds gen (eth0) - (r0) router (r1) - (eth0) sink with both families (labOptions.IPv6:
// IPv6 at its defaults in every namespace), a router-sink link of MTU 1280, IPv6's minimum, and a router whose
// kernel has no addresses of its own beyond its automatic link-local ones, with forwarding off for both
// families; then it starts xdpfwd with the router's addresses of both families and waits until it answers
// ping -6.
func newRouterLab6(t *testing.T) *routerLab {
	t.Helper()
	netlab.RequirePrivileges(t)
	l, err := newRouterLab(t.Name(), labOptions{IPv6: true, R1MTU: 1280, BareRouter: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("close lab: %v", err)
		}
	})
	args := []string{"--iface", "r0=" + r0Addr + "/24," + r06Addr + "/64", "--iface", "r1=" + r1Addr + "/24," + r16Addr + "/64"}
	if err := l.startRouter(xdpfwdBin, args...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("xdpfwd output:\n%s", l.xdpfwd.Output())
		}
	})
	// Duplicate address detection keeps the router's addresses tentative for a second (RFC 4862 §5.4).
	if err := l.waitIPv6(context.Background(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return l
}

func assertNoKernelForwarding6(t *testing.T, l *routerLab) {
	t.Helper()
	assertNoKernelForwarding(t, l)
	v, err := l.router.ReadSysctl("net.ipv6.conf.all.forwarding")
	if err != nil {
		t.Fatal(err)
	}
	if v != "0" {
		t.Fatalf("router namespace net.ipv6.conf.all.forwarding = %s, want 0 (only xdpfwd may forward)", v)
	}
}

// TestIPv6RouterVeth runs Linux's IPv6 tools through xdpfwd at their default settings: ping to the router
// and through it, hop limit exceeded (ping -t 1, traceroute -6), packet too big over the 1280-byte link
// (ping -M do, tracepath's path MTU), no route, UDP between Linux sockets, and a next hop that appears
// while xdpfwd runs, found by NDP once its failed entry's hold time is over.
func TestIPv6RouterVeth(t *testing.T) {
	l := newRouterLab6(t)
	assertNoKernelForwarding6(t, l)

	out := mustPing(t, l.gen, "-6", "-c", "3", "-i", "0.2", "-W", "2", sink6Addr)
	if !strings.Contains(out, "ttl=63") {
		t.Errorf("reply through one router should have hop limit 63:\n%s", out)
	}
	mustPing(t, l.gen, "-6", "-c", "3", "-i", "0.2", "-W", "2", r16Addr)
	mustPing(t, l.sink, "-6", "-c", "3", "-i", "0.2", "-W", "2", gen6Addr)
	mustPing(t, l.sink, "-6", "-c", "2", "-i", "0.2", "-W", "2", r16Addr)
	// IPv4 still works beside it.
	mustPing(t, l.gen, "-c", "2", "-i", "0.2", "-W", "2", sinkAddr)

	out = runIn(t, l.gen, "ping", "-6", "-c", "1", "-t", "1", "-W", "2", sink6Addr)
	if !strings.Contains(out, "From "+r06Addr) || !strings.Contains(out, "Time exceeded: Hop limit") {
		t.Errorf("ping -6 -t 1: want \"From %s ... Time exceeded: Hop limit\":\n%s", r06Addr, out)
	}
	out = runIn(t, l.gen, netlab.RequireTool(t, "traceroute"), "-6", "-n", "-q", "1", "-w", "2", "-m", "5", sink6Addr)
	if !regexp.MustCompile(`(?m)^ 1  `+regexp.QuoteMeta(r06Addr)+` `).MatchString(out) ||
		!regexp.MustCompile(`(?m)^ 2  `+regexp.QuoteMeta(sink6Addr)+` `).MatchString(out) {
		t.Errorf("traceroute -6: want hop 1 %s and hop 2 %s:\n%s", r06Addr, sink6Addr, out)
	}

	out = runIn(t, l.gen, "ping", "-6", "-c", "1", "-W", "2", "-M", "do", "-s", "1400", sink6Addr)
	if !strings.Contains(out, "From "+r06Addr) || !strings.Contains(out, "Packet too big: mtu=1280") {
		t.Errorf("ping -6 -M do -s 1400: want \"From %s ... Packet too big: mtu=1280\":\n%s", r06Addr, out)
	}
	// gen has cached the path MTU now; tracepath finds it anyway (it reads the cache and its own probes).
	out = runIn(t, l.gen, netlab.RequireTool(t, "tracepath"), "-6", "-n", "-m", "5", sink6Addr)
	if !strings.Contains(out, "pmtu 1280") || !regexp.MustCompile(`(?m)^ 1: +`+regexp.QuoteMeta(r06Addr)).MatchString(out) {
		t.Errorf("tracepath -6: want hop 1 %s and pmtu 1280:\n%s", r06Addr, out)
	}

	out = runIn(t, l.gen, "ping", "-6", "-c", "1", "-W", "2", "2001:2:0:99::1")
	if !strings.Contains(out, "From "+r06Addr) || !strings.Contains(out, "Destination unreachable: No route") {
		t.Errorf("want \"Destination unreachable: No route\" from %s:\n%s", r06Addr, out)
	}

	// UDP between Linux sockets, both ways, with the veths' partial checksums completed by the router.
	var sinkC, genC *net.UDPConn
	if err := l.sink.Do(func() (err error) {
		sinkC, err = net.ListenUDP("udp6", &net.UDPAddr{Port: 9996})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer sinkC.Close()
	if err := l.gen.Do(func() (err error) {
		genC, err = net.DialUDP("udp6", nil, &net.UDPAddr{IP: net.ParseIP(sink6Addr), Port: 9996})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer genC.Close()
	for i := range 20 {
		if _, err := genC.Write(payload(i, 1000)); err != nil {
			t.Fatal(err)
		}
	}
	got := readAll(sinkC, 20, 5*time.Second)
	for i := range 20 {
		if string(got[i]) != string(payload(i, 1000)) {
			t.Errorf("datagram %d gen -> sink lost or changed (%d of 20 arrived)", i, len(got))
			break
		}
	}
	for i := range 20 {
		if _, err := sinkC.WriteToUDP(payload(100+i, 1200), genC.LocalAddr().(*net.UDPAddr)); err != nil {
			t.Fatal(err)
		}
	}
	got = readAll(genC, 20, 5*time.Second)
	for i := range 20 {
		if string(got[100+i]) != string(payload(100+i, 1200)) {
			t.Errorf("datagram %d sink -> gen lost or changed (%d of 20 arrived)", i, len(got))
			break
		}
	}

	// TCP between Linux sockets (offloads on: TSO segments and partial checksums), 4 MiB intact.
	var tln net.Listener
	if err := l.sink.Do(func() (err error) {
		tln, err = net.Listen("tcp6", "["+sink6Addr+"]:9997")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer tln.Close()
	tcpData := make([]byte, 4<<20)
	for i := range tcpData {
		tcpData[i] = byte(i*13 + i>>10)
	}
	tcpGot := make(chan []byte, 1)
	go func() {
		c, err := tln.Accept()
		if err != nil {
			tcpGot <- nil
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		b, _ := io.ReadAll(c)
		tcpGot <- b
	}()
	var tc net.Conn
	if err := l.gen.Do(func() (err error) {
		tc, err = net.DialTimeout("tcp6", "["+sink6Addr+"]:9997", 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	tc.SetDeadline(time.Now().Add(20 * time.Second))
	if _, err := tc.Write(tcpData); err != nil {
		t.Errorf("TCP write: %v", err)
	}
	tc.Close()
	if b := <-tcpGot; !bytes.Equal(b, tcpData) {
		t.Errorf("TCP over IPv6 through the router: %d bytes arrived of %d, or different", len(b), len(tcpData))
	}

	// A next hop that is not there: NDP fails and the sender hears address unreachable.
	out = runIn(t, l.gen, "ping", "-6", "-c", "1", "-W", "6", late6Addr)
	if !strings.Contains(out, "Destination unreachable: Address unreachable") {
		t.Errorf("ping to an absent host: want \"Address unreachable\":\n%s", out)
	}
	// It appears; once the failed entry's hold time is over, NDP resolves it.
	if err := l.sink.AddAddr("eth0", late6Addr+"/64"); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	for {
		out = runIn(t, l.gen, "ping", "-6", "-c", "1", "-W", "1", late6Addr)
		if strings.Contains(out, "1 received") {
			break
		}
		if ctx.Err() != nil {
			t.Fatalf("the late host never became reachable:\n%s", out)
		}
		time.Sleep(500 * time.Millisecond)
	}

	sum := stopRouter(t, l)
	for _, c := range []struct {
		name string
		min  uint64
	}{{"ttl_expired", 2}, {"frag_needed", 1}, {"no_route", 1}, {"neighbour_failed", 1}} {
		if n := counter(sum, "drop", c.name); n < c.min {
			t.Errorf("drop %s = %d, want >= %d\n%s", c.name, n, c.min, sum)
		}
	}
	if n := counter(sum, "drop", "ipv6_unsupported"); n != 0 {
		t.Errorf("%d IPv6 frames dropped as unsupported\n%s", n, sum)
	}
}

// TestConfigIPv6: the YAML configuration takes IPv6 addresses and routes (a link-local next hop with its
// interface as a zone or as interface:), and refuses a next hop of the other family with its line.
func TestConfigIPv6(t *testing.T) {
	fc, err := parseConfig("x.yaml", []byte(`interfaces:
  - name: r0
    addresses: [198.18.0.1/24, 2001:2::1/64]
  - name: r1
    addresses: [2001:2:0:1::1/64, fe80::1/64]
routes:
  - prefix: 2001:2:100::/48
    via: 2001:2:0:1::2
  - prefix: ::/0
    via: fe80::2%r1
  - prefix: 2001:2:200::/48
    via: fe80::3
    interface: r1
  - prefix: 2001:2:300::/48
    type: blackhole
`))
	if err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(fc.ifaces); got != "[{r0 [198.18.0.1/24 2001:2::1/64]} {r1 [2001:2:0:1::1/64 fe80::1/64]}]" {
		t.Errorf("interfaces %s", got)
	}
	var routes []string
	for _, r := range fc.routes {
		routes = append(routes, r.String())
	}
	if got := strings.Join(routes, "; "); got != "2001:2:100::/48 via 2001:2:0:1::2; ::/0 via fe80::2 dev r1; "+
		"2001:2:200::/48 via fe80::3 dev r1; blackhole 2001:2:300::/48" {
		t.Errorf("routes %s", got)
	}
	for _, c := range []struct{ text, want string }{
		{"interfaces:\n  - name: r0\n    addresses: [2001:2::1/64]\nroutes:\n  - prefix: 2001:2:100::/48\n    via: 198.18.0.2\n",
			"x.yaml:6: route 2001:2:100::/48: next hop \"198.18.0.2\" is not an IPv6 address"},
		{"interfaces:\n  - name: r0\n    addresses: [2001:2::1/64]\nroutes:\n  - prefix: 2001:2:100::/48\n    via: 2001:2:9::1\n",
			"x.yaml:5: route 2001:2:100::/48: next hop 2001:2:9::1 is on none of the interfaces' networks"},
		{"interfaces:\n  - name: r0\n    addresses: [2001:2::1]\n", "x.yaml:3: interface address \"2001:2::1\" is not an IPv4 address with prefix length"},
		{"interfaces:\n  - name: r0\n    addresses: [2001:2::1/64]\nroutes:\n  - prefix: 2001:2:100::/48\n    via: 2001:2::2%r0\n",
			"a zone names the interface of a link-local next hop"},
	} {
		_, err := parseConfig("x.yaml", []byte(c.text))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("config %q: %v, want %q", c.text, err, c.want)
		}
	}
}

// TestKernelPrefixes: --iface NAME alone takes IPv4 addresses and global IPv6 ones (unique local included,
// tentative included: the stack runs DAD itself), and leaves link-local, temporary and DAD-failed ones;
// kernel-mirror mode (v6 false) takes IPv4 only.
func TestKernelPrefixes(t *testing.T) {
	addr := func(s string, scope, flags int) netlink.Addr {
		p := netip.MustParsePrefix(s)
		return netlink.Addr{IPNet: &net.IPNet{IP: p.Addr().AsSlice(), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
			Scope: scope, Flags: flags}
	}
	as := []netlink.Addr{
		addr("198.18.0.1/24", unix.RT_SCOPE_UNIVERSE, 0),
		addr("198.18.1.1/32", unix.RT_SCOPE_HOST, 0),
		addr("2001:2::1/64", unix.RT_SCOPE_UNIVERSE, unix.IFA_F_PERMANENT),
		addr("2001:2:0:5::1/64", unix.RT_SCOPE_UNIVERSE, unix.IFA_F_TENTATIVE),
		addr("fd00:2::1/48", unix.RT_SCOPE_UNIVERSE, 0),
		addr("fe80::1/64", unix.RT_SCOPE_LINK, unix.IFA_F_PERMANENT),
		addr("2001:2::99/64", unix.RT_SCOPE_UNIVERSE, unix.IFA_F_TEMPORARY),
		addr("2001:2::98/64", unix.RT_SCOPE_UNIVERSE, unix.IFA_F_DADFAILED|unix.IFA_F_TENTATIVE),
		addr("::1/128", unix.RT_SCOPE_HOST, 0),
		{},
	}
	if got, want := fmt.Sprint(kernelPrefixes(as)), "[198.18.0.1/24 198.18.1.1/32 2001:2::1/64 2001:2:0:5::1/64 fd00:2::1/48]"; got != want {
		t.Errorf("kernelPrefixes = %s, want %s", got, want)
	}
}

// TestIfaceFromKernelIPv6Veth: `--iface r0 --iface r1` in a router namespace whose kernel has an IPv4 and
// an IPv6 address on each interface takes both: xdpfwd says so at start, answers ping -6 on them, forwards
// IPv6 and IPv4 between gen and sink, leaves the kernel's link-local addresses out, and its metrics count
// each family apart.
func TestIfaceFromKernelIPv6Veth(t *testing.T) {
	netlab.RequirePrivileges(t)
	l, err := newRouterLab(t.Name(), labOptions{IPv6: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := l.startRouter(xdpfwdBin, "--iface", "r0", "--iface", "r1", "--metrics", labMetricsAddr); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("xdpfwd output:\n%s", l.xdpfwd.Output())
		}
	})
	assertNoKernelForwarding6(t, l)
	m := regexp.MustCompile(`msg="xdpfwd running" interfaces="([^"]*)"`).FindSubmatch(l.xdpfwd.Output())
	if m == nil {
		t.Fatalf("no \"xdpfwd running\" line with the interfaces:\n%s", l.xdpfwd.Output())
	}
	if got, want := string(m[1]), "r0="+r0Addr+"/24 r0="+r06Addr+"/64 r1="+r1Addr+"/24 r1="+r16Addr+"/64"; got != want {
		t.Errorf("interfaces taken from the kernel: %q, want %q", got, want)
	}
	if err := l.waitIPv6(context.Background(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	out := mustPing(t, l.gen, "-6", "-c", "3", "-i", "0.2", "-W", "2", sink6Addr)
	if !strings.Contains(out, "ttl=63") {
		t.Errorf("reply through one router should have hop limit 63:\n%s", out)
	}
	mustPing(t, l.sink, "-6", "-c", "2", "-i", "0.2", "-W", "2", r16Addr)
	mustPing(t, l.gen, "-c", "2", "-i", "0.2", "-W", "2", sinkAddr)
	// The metrics split by family: 6 IPv6 and 4 IPv4 packets forwarded by the pings through, a connected
	// route of each family per port, neighbours gen and sink in each.
	fams := scrapeIn(t, l.router, labMetricsAddr)
	for _, c := range []struct {
		name, family string
		min          float64
	}{{"xdpnet_ip_forwarded_total", "ipv6", 6}, {"xdpnet_ip_forwarded_total", "ipv4", 4}, {"xdpnet_ip_routes", "ipv4", 2},
		{"xdpnet_ip_routes", "ipv6", 2}, {"xdpnet_ip_neighbours", "ipv4", 2}, {"xdpnet_ip_neighbours", "ipv6", 2}} {
		if v, ok := metricSum(fams, c.name, "family", c.family); !ok || v < c.min {
			t.Errorf("%s{family=%q} = %v (present %v), want >= %v", c.name, c.family, v, ok, c.min)
		}
	}
	sum := stopRouter(t, l)
	if n := counter(sum, "stack", "forwarded6"); n < 6 {
		t.Errorf("stack forwarded6 = %d, want >= 6 (3 echo requests and 3 replies)\n%s", n, sum)
	}
}
