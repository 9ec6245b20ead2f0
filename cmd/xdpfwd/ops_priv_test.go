package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/xdpnet/xdpnet/internal/netlab"
)

// The metrics endpoint listens on the router namespace's loopback; tests reach it from there.
const labMetricsAddr = "127.0.0.1:9469"

// scrapeIn fetches /metrics from addr inside host h: the connection is made in h's namespace (Do), then
// the HTTP exchange runs over it from this goroutine.
func scrapeIn(t *testing.T, h *netlab.Host, addr string) map[string]*dto.MetricFamily {
	t.Helper()
	var conn net.Conn
	if err := h.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", addr, 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("connect to metrics at %s in %s: %v", addr, h.Name(), err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	req, _ := http.NewRequest("GET", "http://"+addr+"/metrics", nil)
	if err := req.Write(conn); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), req)
	if err != nil {
		t.Fatalf("read metrics response: %v", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /metrics: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatalf("parse metrics: %v", err)
	}
	return fams
}

// metricSum adds the values of the series of family name whose labels include want (label=value pairs).
func metricSum(fams map[string]*dto.MetricFamily, name string, want ...string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
	sum, found := 0.0, false
next:
	for _, m := range f.Metric {
		for i := 0; i+1 < len(want); i += 2 {
			if label(m, want[i]) != want[i+1] {
				continue next
			}
		}
		sum += value(m)
		found = true
	}
	return sum, found
}

// TestMetricsEndpointVeth: during ping traffic (and one TTL-1 ping) the endpoint shows non-zero RX/TX
// counters for both ports, a ttl_expired drop series, the stack counters, neighbours and routes; then
// `xdpfwd stats --count 2` against it prints a table with both ports.
func TestMetricsEndpointVeth(t *testing.T) {
	l := startLab(t, labOptions{}, "--metrics", labMetricsAddr)
	if !strings.Contains(string(l.xdpfwd.Output()), "metrics listening") {
		t.Errorf("no \"metrics listening\" log line:\n%s", l.xdpfwd.Output())
	}
	mustPing(t, l.gen, "-c", "5", "-i", "0.2", "-W", "2", sinkAddr)
	runIn(t, l.gen, "ping", "-c", "1", "-t", "1", "-W", "2", sinkAddr)
	fams := scrapeIn(t, l.router, labMetricsAddr)
	for _, c := range []struct {
		name   string
		labels []string
		min    float64
	}{
		{"xdpnet_rx_packets_total", []string{"port", "r0"}, 6},
		{"xdpnet_rx_bytes_total", []string{"port", "r0"}, 6 * 98},
		{"xdpnet_tx_packets_total", []string{"port", "r1"}, 5},
		{"xdpnet_rx_packets_total", []string{"port", "r1"}, 5},
		{"xdpnet_tx_packets_total", []string{"port", "r0"}, 6},
		{"xdpnet_drops_total", []string{"reason", "ttl_expired"}, 1},
		{"xdpnet_stack_forwarded_total", nil, 10},
		{"xdpnet_stack_icmp_errors_out_total", nil, 1},
		{"xdpnet_neighbours", []string{"state", "reachable"}, 2},
		{"xdpnet_routes", nil, 2},
		{"xdpnet_poller_loops_total", []string{"kind", "busy"}, 1},
		// The fill rings hold frames lent to the kernel to receive into; the pool keeps the rest.
		{"xdpnet_ring_entries", []string{"port", "r0", "ring", "fill"}, 1},
		{"xdpnet_free_frames", nil, 1},
	} {
		v, ok := metricSum(fams, c.name, c.labels...)
		if !ok || v < c.min {
			t.Errorf("%s%v = %v (present %v), want >= %v", c.name, c.labels, v, ok, c.min)
		}
	}
	for _, name := range []string{"xdpnet_fill_ring_empty_total", "xdpnet_tx_ring_full_total", "xdpnet_xdp_rx_dropped_total",
		"xdpnet_xdp_rx_ring_full_total", "xdpnet_poller_busy_ratio", "xdpnet_poller_sleeps_total"} {
		if _, ok := metricSum(fams, name); !ok {
			t.Errorf("no %s series", name)
		}
	}
	if v, _ := metricSum(fams, "xdpnet_drops_total", "reason", "no_route"); v != 0 {
		t.Errorf("no_route drops = %v, want 0 (no such traffic was sent)", v)
	}

	// The live table, from inside the router namespace, while a ping runs so the rates are not all zero.
	ping, err := l.gen.Start("ping", "-c", "20", "-i", "0.1", "-W", "1", sinkAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer ping.Stop(time.Second)
	out := runIn(t, l.router, xdpfwdBin, "stats", "--metrics", labMetricsAddr, "--count", "2", "--interval", "500ms")
	if n := strings.Count(out, "xdpfwd stats from "+labMetricsAddr); n != 2 {
		t.Errorf("stats --count 2 printed %d tables, want 2:\n%s", n, out)
	}
	for _, want := range []string{`(?m)^ *port +rx_pps +tx_pps`, `(?m)^ *r0 +\d+ +\d+ `, `(?m)^ *r1 +\d+ +\d+ `, `(?m)^drops/s: `,
		`(?m)^ *queue +busy_ratio`, `(?m)^ *0 +0\.\d{3} `, `(?m)^forwarded/s: [1-9]`} {
		if !regexp.MustCompile(want).MatchString(out) {
			t.Errorf("stats output does not match %q:\n%s", want, out)
		}
	}
	stopRouter(t, l)
}

// TestStatsNoEndpoint: stats against an address where nothing listens fails (status 1) and says what to
// check. No privileges needed: it dials a closed loopback port.
func TestStatsNoEndpoint(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	var stdout, stderr bytes.Buffer
	code := realMain(context.Background(), []string{"stats", "--metrics", addr, "--count", "1"}, &stdout, &stderr)
	if code != exitFailure || !strings.Contains(stderr.String(), "--metrics") {
		t.Errorf("exit %d, stderr %q; want 1 and a hint about --metrics", code, stderr.String())
	}
}

const reloadConfigHead = `interfaces:
  - name: r0
    addresses: [198.18.0.1/24]
  - name: r1
    addresses: [198.19.0.1/24]
log-format: text
`

// TestReloadUnderTrafficVeth: a paced UDP flow gen -> sink (2000 datagrams over about 2 s to port 5001, and
// every 10th slot one to port 5002) runs while the config file gains a route and an ACL rule that drops
// port 5002, and xdpfwd gets SIGHUP in the middle. The new route works afterwards, port 5002 is dropped
// from then on, not one datagram of the 5001 flow is lost, and frame accounting is OK at exit. A bad
// config on a second SIGHUP is refused with its line and changes nothing.
func TestReloadUnderTrafficVeth(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "xdpfwd.yaml")
	if err := os.WriteFile(cfg, []byte(reloadConfigHead+"acl: []\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l := startLab(t, labOptions{}, "--config", cfg)
	// The next route's destination lives on the sink; before the reload the router has no route for it.
	if err := l.sink.AddAddr("eth0", "198.19.21.1/32"); err != nil {
		t.Fatal(err)
	}
	if out := runIn(t, l.gen, "ping", "-c", "1", "-W", "2", "198.19.21.1"); !strings.Contains(out, "Destination Net Unreachable") {
		t.Fatalf("before the reload 198.19.21.1 should be unreachable:\n%s", out)
	}
	mustPing(t, l.gen, "-c", "1", "-W", "2", sinkAddr) // resolve the sink's MAC before the flow

	gen, sink := udpPair(t, l, sinkAddr, 5001)
	gen2, sink2 := udpPair(t, l, sinkAddr, 5002)
	for _, c := range []*net.UDPConn{sink, sink2} {
		c.SetReadBuffer(4 << 20)
	}
	type arrival struct {
		seen map[int]bool
		mu   sync.Mutex
	}
	count := func(c *net.UDPConn, a *arrival, wg *sync.WaitGroup) {
		defer wg.Done()
		buf := make([]byte, 2048)
		for {
			c.SetReadDeadline(time.Now().Add(2 * time.Second))
			n, _, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			if n >= 4 {
				a.mu.Lock()
				a.seen[int(binary.BigEndian.Uint32(buf))] = true
				a.mu.Unlock()
			}
		}
	}
	got1, got2 := &arrival{seen: map[int]bool{}}, &arrival{seen: map[int]bool{}}
	var wg sync.WaitGroup
	wg.Add(2)
	go count(sink, got1, &wg)
	go count(sink2, got2, &wg)

	const total = 2000
	reloadAt := total / 2
	var sent2 []int // sequence numbers sent to 5002, and whether the reload was confirmed before
	confirmedAt := -1
	start := time.Now()
	for i := range total {
		// 1 datagram per millisecond, paced against the start so scheduling hiccups do not stretch the flow.
		if d := time.Until(start.Add(time.Duration(i) * time.Millisecond)); d > 0 {
			time.Sleep(d)
		}
		if _, err := gen.Write(payload(i, 200)); err != nil {
			t.Fatalf("send %d: %v", i, err)
		}
		if i%10 == 0 {
			gen2.Write(payload(i, 200))
			sent2 = append(sent2, i)
		}
		if i == reloadAt {
			if err := os.WriteFile(cfg, []byte(reloadConfigHead+
				"routes:\n  - prefix: 198.19.21.0/24\n    via: 198.19.0.2\n"+
				"acl:\n  - drop udp to 198.19.0.2 port 5002 reason blocked_port\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			l.newOutput()
			if err := l.xdpfwd.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		}
		if i > reloadAt && i%5 == 0 && confirmedAt < 0 && bytes.Contains(l.xdpfwd.Output(), []byte("msg=reloaded")) {
			confirmedAt = i
		}
	}
	flowTook := time.Since(start)
	wg.Wait()
	if confirmedAt < 0 {
		t.Fatalf("no \"reloaded\" log line during the flow:\n%s", l.newOutput())
	}
	t.Logf("flow of %d datagrams took %v; reload confirmed at datagram %d", total, flowTook, confirmedAt)

	var lost []int
	for i := range total {
		if !got1.seen[i] {
			lost = append(lost, i)
		}
	}
	if len(lost) > 0 {
		t.Errorf("unaffected flow lost %d of %d datagrams across the reload: %v", len(lost), total, lost[:min(len(lost), 20)])
	}
	before, after := 0, 0
	for _, i := range sent2 {
		switch {
		case i < reloadAt && got2.seen[i]:
			before++
		case i > confirmedAt && got2.seen[i]:
			after++
		}
	}
	if before == 0 {
		t.Errorf("port 5002 got nothing before the reload: the flow did not work to begin with")
	}
	if after != 0 {
		t.Errorf("port 5002 got %d datagrams sent after the reload was confirmed: the ACL rule did not take effect", after)
	}
	mustPing(t, l.gen, "-c", "3", "-i", "0.2", "-W", "2", "198.19.21.1") // the new route

	// A bad config: refused with file and line, the running rules stay.
	if err := os.WriteFile(cfg, []byte(reloadConfigHead+"routes:\n  - prefix: 198.22.0.0/16\n    via: nowhere\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	l.newOutput()
	l.xdpfwd.Cmd.Process.Signal(syscall.SIGHUP)
	deadline := time.Now().Add(5 * time.Second)
	var out string
	for !strings.Contains(out, "reload failed") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		out += string(l.newOutput())
	}
	if want := cfg + `:9: route 198.22.0.0/16: next hop \"nowhere\" is not an IPv4 address`; !strings.Contains(out, "keeping the running configuration") || !strings.Contains(out, want) {
		t.Errorf("bad reload: want the error with %q and the old config kept:\n%s", want, out)
	}
	mustPing(t, l.gen, "-c", "1", "-W", "2", "198.19.21.1")
	gen2.Write(payload(99999, 200))

	sum := stopRouter(t, l)
	// Every 5002 datagram sent after the reload was confirmed, and the one after the failed reload, must be
	// counted under the rule's reason; none sent before the SIGHUP can be.
	lo, hi := uint64(1), uint64(1)
	for _, i := range sent2 {
		if i > confirmedAt {
			lo++
		}
		if i > reloadAt {
			hi++
		}
	}
	if n := counter(sum, "drop", "blocked_port"); n < lo || n > hi {
		t.Errorf("drop blocked_port = %d, want %d..%d\n%s", n, lo, hi, sum)
	}
}

// startRouterAs starts xdpfwd in the router namespace through a wrapper command line (prlimit, setpriv)
// and waits until it runs.
func startRouterAs(l *routerLab, wrapper []string, args ...string) error {
	return l.startRouterCmd(wrapper[0], slices.Concat(wrapper[1:], []string{xdpfwdBin, "run"}, args)...)
}

// serviceCaps reads AmbientCapabilities= from xdpfwd.service: the set the test proves.
func serviceCaps(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("xdpfwd.service")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "AmbientCapabilities="); ok {
			return strings.Fields(v)
		}
	}
	t.Fatal("xdpfwd.service has no AmbientCapabilities= line")
	return nil
}

// setprivArgs is the command line that runs a program as nobody with exactly caps (ambient, so they
// survive the exec into xdpfwd). RLIMIT_MEMLOCK stays what the test has: raising it to the unit's
// LimitMEMLOCK=infinity needs CAP_SYS_RESOURCE, which a container may not have, so the set proven here is
// the one that works under the usual 8 MiB limit too.
func setprivArgs(caps []string) []string {
	var set []string
	for _, c := range caps {
		set = append(set, "+"+strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	list := "-all"
	if len(set) > 0 {
		list += "," + strings.Join(set, ",")
	}
	args := []string{"env", "XDPFWD_SKIP_CAP_CHECK=1", "setpriv", "--reuid=65534", "--regid=65534",
		"--clear-groups", "--inh-caps=" + list}
	if len(set) > 0 {
		args = append(args, "--ambient-caps="+strings.Join(set, ","))
	}
	return args
}

// TestServiceCapabilitiesVeth: xdpfwd runs as nobody with exactly the unit's AmbientCapabilities and
// forwards a ping; with any one of those capabilities taken away it does not
// start, so the set is minimal.
func TestServiceCapabilitiesVeth(t *testing.T) {
	netlab.RequirePrivileges(t)
	for _, tool := range []string{"setpriv"} {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("XDPNET_REQUIRE_PRIV") == "1" {
				t.Fatalf("%s (util-linux) not installed", tool)
			}
			t.Skipf("%s (util-linux) not installed", tool)
		}
	}
	caps := serviceCaps(t)
	run := func(t *testing.T, caps []string) (*routerLab, error) {
		l, err := newRouterLab(t.Name(), labOptions{})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l, startRouterAs(l, setprivArgs(caps), "--iface", "r0="+r0Addr+"/24", "--iface", "r1="+r1Addr+"/24")
	}
	t.Run("exact", func(t *testing.T) {
		l, err := run(t, caps)
		if err != nil {
			t.Fatalf("as nobody with %v: %v", caps, err)
		}
		mustPing(t, l.gen, "-c", "3", "-i", "0.2", "-W", "2", sinkAddr)
		stopRouter(t, l)
	})
	for i, c := range caps {
		less := append(append([]string{}, caps[:i]...), caps[i+1:]...)
		t.Run("without_"+c, func(t *testing.T) {
			l, err := run(t, less)
			if err == nil {
				l.xdpfwd.Stop(5 * time.Second)
				t.Fatalf("xdpfwd started without %s (caps %v): the unit's set is not minimal", c, less)
			}
			if strings.Contains(err.Error(), "missing CAP_") {
				t.Fatalf("xdpfwd's own capability check refused; the test wants the kernel's answer: %v", err)
			}
			t.Logf("without %s (the kernel refuses, xdpfwd's own check is off):\n%v", c, err)
		})
	}
}

// TestReloadRouteChangeUnderTrafficVeth: the "reload under traffic". A third namespace, sink2,
// hangs off the router's r2; both sinks have the address 198.19.100.1 and 2001:2:0:100::1. The config routes
// 198.19.100.0/24 and 2001:2:0:100::/64 via sink; while a paced UDP stream of each family (one datagram a
// millisecond for 3 s) runs from gen to those addresses, the file is changed to route both via sink2 and
// xdpfwd gets SIGHUP. Counted at the two sinks: every datagram arrives, exactly once, and the cut-over is
// clean - all that sink got comes before all that sink2 got - so the routes switched in place and never
// disappeared in between (no unreachable, no fall-back to a shorter prefix).
//
// sink2 is resolved (a ping) before the switch, so that what is measured is the route change alone. To a next
// hop nobody has resolved yet, the first datagrams wait in the neighbour's queue (16 packets, the stack's
// NeighbourQueueLen) for ARP/NDP: at this rate a resolution that takes more than 16 ms - seen here when the
// router's poller waited for a CPU shared with other tests - drops the excess as neighbour_queue_full.
func TestReloadRouteChangeUnderTrafficVeth(t *testing.T) {
	netlab.RequirePrivileges(t)
	l, err := newRouterLab(t.Name(), labOptions{IPv6: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	const (
		r2Addr, sink2Addr   = "198.19.2.1", "198.19.2.2"
		r26Addr, sink26Addr = "2001:2:0:2::1", "2001:2:0:2::2"
		dst, dst6           = "198.19.100.1", "2001:2:0:100::1"
		port                = 6001
	)
	sink2 := l.lab.MustAddHost(t, "sink2")
	if _, err := l.lab.LinkWith(l.router, "r2", sink2, "eth0", netlab.LinkOptions{Queues: 1}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		h         *netlab.Host
		ifn, addr string
	}{{l.router, "r2", r2Addr + "/24"}, {l.router, "r2", r26Addr + "/64"}, {sink2, "eth0", sink2Addr + "/24"},
		{sink2, "eth0", sink26Addr + "/64"}, {l.sink, "eth0", dst + "/32"}, {l.sink, "eth0", dst6 + "/128"},
		{sink2, "eth0", dst + "/32"}, {sink2, "eth0", dst6 + "/128"}} {
		if err := a.h.AddAddr(a.ifn, a.addr); err != nil {
			t.Fatal(err)
		}
	}
	if err := errors.Join(l.router.SetUp("r2"), sink2.SetUp("eth0")); err != nil {
		t.Fatal(err)
	}
	if err := errors.Join(l.router.WaitOperUp("r2", 5*time.Second), sink2.WaitOperUp("eth0", 5*time.Second)); err != nil {
		t.Fatal(err)
	}
	for _, via := range []string{r2Addr, r26Addr} {
		if err := sink2.AddRoute("default", via); err != nil {
			t.Fatal(err)
		}
	}

	head := "interfaces:\n" +
		"  - {name: r0, addresses: [" + r0Addr + "/24, " + r06Addr + "/64]}\n" +
		"  - {name: r1, addresses: [" + r1Addr + "/24, " + r16Addr + "/64]}\n" +
		"  - {name: r2, addresses: [" + r2Addr + "/24, " + r26Addr + "/64]}\n"
	routes := func(via, via6 string) []byte {
		return []byte(head + "routes:\n" +
			"  - {prefix: 198.19.100.0/24, via: " + via + "}\n" +
			"  - {prefix: 2001:2:0:100::/64, via: " + via6 + "}\n")
	}
	cfg := filepath.Join(t.TempDir(), "xdpfwd.yaml")
	if err := os.WriteFile(cfg, routes(sinkAddr, sink6Addr), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := l.startRouter(xdpfwdBin, "--config", cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("xdpfwd output:\n%s", l.xdpfwd.Output())
		}
	})
	assertNoKernelForwarding6(t, l)
	if err := l.waitIPv6(context.Background(), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	// Both paths resolved: gen's router, the router's sink and sink2 (once r2's IPv6 address is past DAD).
	mustPing(t, l.gen, "-c", "1", "-W", "2", dst)
	mustPing(t, l.gen, "-6", "-c", "1", "-W", "2", dst6)
	mustPing(t, l.gen, "-c", "1", "-W", "2", sink2Addr)
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(runIn(t, l.gen, "ping", "-6", "-c", "1", "-W", "1", sink26Addr), " 1 received"); {
		if time.Now().After(deadline) {
			t.Fatalf("sink2's %s never answered through the router", sink26Addr)
		}
		time.Sleep(200 * time.Millisecond)
	}

	type flow struct {
		name      string
		gen       *net.UDPConn
		sinks     [2]*net.UDPConn
		seen      [2]map[int]int // sequence number -> times received, per sink
		mu        sync.Mutex
		readersWG sync.WaitGroup
	}
	newFlow := func(network, addr string) *flow {
		f := &flow{name: network}
		for i, h := range []*netlab.Host{l.sink, sink2} {
			f.seen[i] = map[int]int{}
			if err := h.Do(func() (err error) {
				f.sinks[i], err = net.ListenUDP(network, &net.UDPAddr{IP: net.ParseIP(addr), Port: port})
				return err
			}); err != nil {
				t.Fatal(err)
			}
			f.sinks[i].SetReadBuffer(4 << 20)
			t.Cleanup(func() { f.sinks[i].Close() })
		}
		if err := l.gen.Do(func() (err error) {
			f.gen, err = net.DialUDP(network, nil, &net.UDPAddr{IP: net.ParseIP(addr), Port: port})
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.gen.Close() })
		for i, c := range f.sinks {
			f.readersWG.Add(1)
			go func() {
				defer f.readersWG.Done()
				buf := make([]byte, 2048)
				for {
					c.SetReadDeadline(time.Now().Add(2 * time.Second))
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if n >= 4 {
						f.mu.Lock()
						f.seen[i][int(binary.BigEndian.Uint32(buf))]++
						f.mu.Unlock()
					}
				}
			}()
		}
		return f
	}
	flows := []*flow{newFlow("udp4", dst), newFlow("udp6", dst6)}

	const total, reloadAt = 3000, 1000
	start := time.Now()
	for i := range total {
		if d := time.Until(start.Add(time.Duration(i) * time.Millisecond)); d > 0 {
			time.Sleep(d)
		}
		for _, f := range flows {
			if _, err := f.gen.Write(payload(i, 100)); err != nil {
				t.Fatalf("%s: send %d: %v", f.name, i, err)
			}
		}
		if i == reloadAt {
			if err := os.WriteFile(cfg, routes(sink2Addr, sink26Addr), 0o644); err != nil {
				t.Fatal(err)
			}
			if err := l.xdpfwd.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		}
	}
	t.Logf("%d datagrams per family in %v, SIGHUP after datagram %d", total, time.Since(start), reloadAt)
	for _, f := range flows {
		f.readersWG.Wait()
	}
	if out := string(l.xdpfwd.Output()); !strings.Contains(out, "msg=reloaded") || !strings.Contains(out, "routes_added=2 routes_deleted=2") {
		t.Fatalf("no \"reloaded\" line with both routes changed:\n%s", out)
	}

	for _, f := range flows {
		var lost, dup []int
		last1, first2 := -1, total
		for i := range total {
			n1, n2 := f.seen[0][i], f.seen[1][i]
			switch {
			case n1+n2 == 0:
				lost = append(lost, i)
			case n1+n2 > 1:
				dup = append(dup, i)
			}
			if n1 > 0 {
				last1 = i
			}
			if n2 > 0 && first2 == total {
				first2 = i
			}
		}
		t.Logf("%s: sink got 0..%d (%d datagrams), sink2 got %d.. (%d datagrams)", f.name, last1, len(f.seen[0]), first2, len(f.seen[1]))
		if len(lost) > 0 {
			t.Errorf("%s: %d of %d datagrams lost across the route change: %v", f.name, len(lost), total, lost[:min(len(lost), 20)])
		}
		if len(dup) > 0 {
			t.Errorf("%s: %d datagrams arrived twice: %v", f.name, len(dup), dup[:min(len(dup), 20)])
		}
		if last1 < reloadAt || first2 == total || last1 >= first2 {
			t.Errorf("%s: want a clean cut-over after datagram %d: the last at sink %d, the first at sink2 %d", f.name, reloadAt, last1, first2)
		}
	}
	sum := stopRouter(t, l)
	for _, r := range []string{"no_route", "unreachable_route", "neighbour_failed", "neighbour_queue_full", "neighbour_held_limit",
		"neighbour_table_full", "neighbour_removed", "tx_ring_full", "no_buffer"} {
		if n := counter(sum, "drop", r); n != 0 {
			t.Errorf("drop %s = %d, want 0\n%s", r, n, sum)
		}
	}
}
