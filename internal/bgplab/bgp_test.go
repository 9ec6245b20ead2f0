//go:build bgp

package bgplab

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/internal/netlab"
)

// The lab's plan (see doc.go).
const (
	genAddr      = "198.18.0.2"
	r0Addr       = "198.18.0.1"
	r1Addr       = "198.18.1.1"
	upAddr       = "198.18.1.2"
	learnedAddr  = "198.19.128.1"    // up's lo: reached only through the route BGP teaches
	learnedPfx   = "198.19.128.0/24" // the one announced prefix inside the benchmarking range
	metricsAddr  = "127.0.0.1:9464"
	convergeTime = 20 * time.Minute
)

// tableSize is the number of announced prefixes, learnedPfx included (XDPNET_BGP_PREFIXES sets another for a
// quick run); burstSize of them are withdrawn and announced again at once.
var tableSize, burstSize = 1_000_000, 100_000

func init() {
	if n, err := strconv.Atoi(os.Getenv("XDPNET_BGP_PREFIXES")); err == nil && n >= 10 {
		tableSize, burstSize = n, n/10
	}
}

var xdpfwdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xdpnet-bgplab")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	xdpfwdBin = filepath.Join(dir, "xdpfwd")
	if out, err := exec.Command("go", "build", "-o", xdpfwdBin, "../../cmd/xdpfwd").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build xdpfwd: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// lab is the running lab: the hosts, xdpfwd, and the two daemons' control sockets.
type lab struct {
	gen, rtr, up    *netlab.Host
	xdpfwd          *netlab.Proc
	rtrBird, upBird *netlab.Proc
	rtrSock, upSock string
	dir             string
}

// TestBGPFullTable: a full table learned over BGP reaches xdpfwd through the kernel, every route of it;
// forwarding to the learned prefix works and stops when it is withdrawn; a burst of 100 000 withdrawals and
// re-announcements leaves xdpfwd's table equal to the kernel's. It logs the time from the session coming up
// to the last route in the kernel and in xdpfwd, and the memory of each process.
func TestBGPFullTable(t *testing.T) {
	netlab.RequirePrivileges(t)
	bird := netlab.RequireTool(t, "bird")
	birdc := netlab.RequireTool(t, "birdc")
	l := newLab(t)

	table := SyntheticV4(tableSize-1, 1)
	main, burst := table[burstSize:], table[:burstSize]
	writeStatic(t, filepath.Join(l.dir, "main.conf"), "main", main)
	writeStatic(t, filepath.Join(l.dir, "burst.conf"), "burst", burst)

	l.xdpfwd = startProc(t, l.rtr, "metrics listening", xdpfwdBin, "run", "--kernel", "--iface", "r0", "--iface", "r1",
		"--metrics", metricsAddr)
	kernelBase, fwdBase := kernelRoutes(t, l.rtr), xdpfwdRoutes(t, l.rtr)
	t.Logf("before BGP: kernel %d prefixes, xdpfwd %d routes", kernelBase, fwdBase)

	l.rtrSock, l.upSock = filepath.Join(l.dir, "rtr.ctl"), filepath.Join(l.dir, "up.ctl")
	writeFile(t, filepath.Join(l.dir, "rtr.conf"), fmt.Sprintf(rtrConf, r1Addr, r1Addr, upAddr))
	writeFile(t, filepath.Join(l.dir, "up.conf"), fmt.Sprintf(upConf, upAddr, l.dir, l.dir, learnedPfx, upAddr, r1Addr))
	l.rtrBird = startProc(t, l.rtr, "", bird, "-f", "-c", filepath.Join(l.dir, "rtr.conf"), "-s", l.rtrSock)
	parse := time.Now()
	l.upBird = startProc(t, l.up, "", bird, "-f", "-c", filepath.Join(l.dir, "up.conf"), "-s", l.upSock)

	// The session comes up once up's BIRD has read its million static routes.
	up := l.waitFor(t, "the BGP session Established", 5*time.Minute, func() bool {
		return strings.Contains(birdcOut(l.rtr, birdc, l.rtrSock, "show", "protocols", "upstream"), "Established")
	})
	t.Logf("BGP session up %v after up's BIRD started (its configuration holds %d static routes)", up.Sub(parse).Round(time.Millisecond), tableSize)

	// From the session up: when the kernel and xdpfwd hold the whole table.
	var kernelDone, fwdDone time.Time
	deadline := time.Now().Add(convergeTime)
	for kernelDone.IsZero() || fwdDone.IsZero() {
		if time.Now().After(deadline) {
			t.Fatalf("not converged within %v: kernel %d of %d, xdpfwd %d of %d", convergeTime,
				kernelRoutes(t, l.rtr)-kernelBase, tableSize, xdpfwdRoutes(t, l.rtr)-fwdBase, tableSize)
		}
		now := time.Now()
		if kernelDone.IsZero() && kernelRoutes(t, l.rtr)-kernelBase >= tableSize {
			kernelDone = now
		}
		if fwdDone.IsZero() && xdpfwdRoutes(t, l.rtr)-fwdBase >= tableSize {
			fwdDone = now
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("session up -> %d routes: in the kernel after %v, in xdpfwd after %v", tableSize,
		kernelDone.Sub(up).Round(10*time.Millisecond), fwdDone.Sub(up).Round(10*time.Millisecond))
	logRSS(t, "with the full table", l)
	compareTables(t, l, tableSize)

	// Forwarding to the learned prefix, with the kernel's own forwarding off: only xdpfwd can carry it.
	mustRun(t, l.gen, time.Minute, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", learnedAddr)
	birdc1(t, l.up, birdc, l.upSock, "disable", "lab")
	l.waitFor(t, "the withdrawal of "+learnedPfx+" in xdpfwd", time.Minute, func() bool {
		return xdpfwdRoutes(t, l.rtr)-fwdBase == tableSize-1
	})
	if out, err := run(l.gen, 30*time.Second, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "1", learnedAddr); err == nil {
		t.Errorf("ping to %s still answered after its prefix was withdrawn:\n%s", learnedAddr, out)
	}
	birdc1(t, l.up, birdc, l.upSock, "enable", "lab")
	l.waitFor(t, "the re-announcement of "+learnedPfx+" in xdpfwd", time.Minute, func() bool {
		return xdpfwdRoutes(t, l.rtr)-fwdBase == tableSize
	})
	mustRun(t, l.gen, time.Minute, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", learnedAddr)

	// The burst: 100 000 withdrawals, then the same 100 000 announced again, as fast as BIRD sends them.
	resyncsBefore := metric(t, l.rtr, "xdpnet_kernel_mirror_resyncs_total")
	burstStart := time.Now()
	birdc1(t, l.up, birdc, l.upSock, "disable", "burst")
	birdc1(t, l.up, birdc, l.upSock, "enable", "burst")
	// Converged when the kernel holds the whole table again and xdpfwd agrees, both steady for two seconds.
	var steadySince time.Time
	l.waitFor(t, "the burst to settle", convergeTime, func() bool {
		k, f := kernelRoutes(t, l.rtr)-kernelBase, xdpfwdRoutes(t, l.rtr)-fwdBase
		if k != tableSize || f != tableSize {
			steadySince = time.Time{}
			return false
		}
		if steadySince.IsZero() {
			steadySince = time.Now()
		}
		return time.Since(steadySince) >= 2*time.Second
	})
	t.Logf("burst of %d withdrawals and re-announcements settled in %v; kernel-mirror resyncs during it: %v",
		burstSize, steadySince.Sub(burstStart).Round(10*time.Millisecond), metric(t, l.rtr, "xdpnet_kernel_mirror_resyncs_total")-resyncsBefore)
	compareTables(t, l, tableSize)
	mustRun(t, l.gen, time.Minute, "ping", "-n", "-c", "3", "-i", "0.2", "-W", "2", learnedAddr)
	logRSS(t, "after the burst", l)

	if err := l.xdpfwd.Stop(30 * time.Second); err != nil {
		t.Fatalf("stop xdpfwd: %v", err)
	}
	if err := l.xdpfwd.Wait(); err != nil {
		t.Errorf("xdpfwd exit after SIGTERM: %v\n%s", err, tail(l.xdpfwd.Output(), 40))
	}
}

// The two daemons' configurations. The router's BIRD learns over BGP and installs into the kernel's main
// table; up's BIRD announces its static routes (blackholes to itself: BGP sends them with next hop up).
const rtrConf = `router id %s;
log stderr { warning, error, fatal };
protocol device { scan time 10; }
protocol kernel {
	ipv4 { import none; export all; };
	learn off;
	merge paths off;
}
protocol bgp upstream {
	local %s as 65001;
	neighbor %s as 65002;
	connect delay time 1;
	connect retry time 2;
	ipv4 { import all; export none; };
}
`

const upConf = `router id %s;
log stderr { warning, error, fatal };
protocol device { scan time 10; }
include "%s/main.conf";
include "%s/burst.conf";
protocol static lab { ipv4; route %s blackhole; }
protocol bgp downstream {
	local %s as 65002;
	neighbor %s as 65001;
	connect delay time 1;
	connect retry time 2;
	ipv4 { import none; export all; };
}
`

func newLab(t *testing.T) *lab {
	t.Helper()
	nl := netlab.NewT(t)
	l := &lab{gen: nl.MustAddHost(t, "gen"), rtr: nl.MustAddHost(t, "rtr"), up: nl.MustAddHost(t, "up"), dir: t.TempDir()}
	os.Chmod(l.dir, 0o755)
	// One queue per veth, the one xdpfwd's default --queues 1 serves: a frame on a queue without a socket
	// would go to the kernel, which does not forward here.
	for _, p := range [][4]any{{l.gen, "eth0", l.rtr, "r0"}, {l.rtr, "r1", l.up, "eth0"}} {
		_, err := nl.LinkWith(p[0].(*netlab.Host), p[1].(string), p[2].(*netlab.Host), p[3].(string), netlab.LinkOptions{Queues: 1})
		check(t, err)
	}
	for _, h := range []*netlab.Host{l.gen, l.rtr, l.up} {
		check(t, h.Sysctl("net.ipv6.conf.all.disable_ipv6", "1"))
		check(t, h.Sysctl("net.ipv6.conf.default.disable_ipv6", "1"))
		check(t, h.SetUp("lo"))
	}
	check(t, l.rtr.Sysctl("net.ipv4.ip_forward", "0")) // only xdpfwd forwards
	for _, a := range []struct {
		h       *netlab.Host
		ifname  string
		address string
	}{{l.gen, "eth0", genAddr + "/24"}, {l.rtr, "r0", r0Addr + "/24"}, {l.rtr, "r1", r1Addr + "/24"},
		{l.up, "eth0", upAddr + "/24"}, {l.up, "lo", learnedAddr + "/32"}} {
		check(t, a.h.AddAddr(a.ifname, a.address))
		check(t, a.h.SetUp(a.ifname))
	}
	for _, e := range []struct {
		h      *netlab.Host
		ifname string
	}{{l.gen, "eth0"}, {l.rtr, "r0"}, {l.rtr, "r1"}, {l.up, "eth0"}} {
		check(t, e.h.WaitOperUp(e.ifname, 5*time.Second))
	}
	check(t, l.gen.AddRoute("0.0.0.0/0", r0Addr))
	check(t, l.up.AddRoute("198.18.0.0/24", r1Addr))
	return l
}

// writeStatic writes a BIRD static protocol called name: one blackhole route per prefix.
func writeStatic(t *testing.T, path, name string, ps []netip.Prefix) {
	t.Helper()
	var b bytes.Buffer
	fmt.Fprintf(&b, "protocol static %s {\n\tipv4;\n", name)
	for _, p := range ps {
		fmt.Fprintf(&b, "\troute %v blackhole;\n", p)
	}
	b.WriteString("}\n")
	writeFile(t, path, b.String())
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	check(t, os.WriteFile(path, []byte(s), 0o644))
}

// kernelRoutes is the number of prefixes in the router's main FIB trie (/proc/net/fib_triestat, cheap at a
// million routes where a dump is not). It reads the file from a thread in the router's namespace.
func kernelRoutes(t *testing.T, h *netlab.Host) int {
	t.Helper()
	var b []byte
	check(t, h.Do(func() (err error) {
		b, err = os.ReadFile("/proc/thread-self/net/fib_triestat")
		return err
	}))
	m := regexp.MustCompile(`(?s)Main:.*?Prefixes:\s+(\d+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no Main prefixes in fib_triestat:\n%s", b)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// xdpfwdRoutes is xdpfwd's route count from its metrics.
func xdpfwdRoutes(t *testing.T, h *netlab.Host) int { return int(metric(t, h, "xdpnet_routes")) }

// get fetches a path of xdpfwd's metrics listener from inside the router's namespace. The socket is made on
// a thread in that namespace (net/http would dial from another goroutine, in the test's own namespace); the
// request is then an ordinary one over it.
func get(t *testing.T, h *netlab.Host, path string) []byte {
	t.Helper()
	var c net.Conn
	check(t, h.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", metricsAddr, 5*time.Second)
		return err
	}))
	defer c.Close()
	c.SetDeadline(time.Now().Add(time.Minute))
	fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: xdpfwd\r\nConnection: close\r\n\r\n", path)
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	check(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	check(t, err)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", path, resp.Status)
	}
	return body
}

// metric is the sum of a metric's samples in xdpfwd's exposition (0 when absent).
func metric(t *testing.T, h *netlab.Host, name string) float64 {
	t.Helper()
	var sum float64
	for _, m := range regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(name)+`(\{[^}]*\})? ([0-9.e+-]+)$`).FindAllSubmatch(get(t, h, "/metrics"), -1) {
		v, _ := strconv.ParseFloat(string(m[2]), 64)
		sum += v
	}
	return sum
}

// compareTables checks that xdpfwd's table holds exactly the kernel's BGP routes: the same prefixes, each via
// up, and want of them.
func compareTables(t *testing.T, l *lab, want int) {
	t.Helper()
	start := time.Now()
	routes, err := l.rtr.Netlink().RouteListFiltered(netlink.FAMILY_V4,
		&netlink.Route{Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_BIRD}, netlink.RT_FILTER_TABLE|netlink.RT_FILTER_PROTOCOL)
	check(t, err)
	kernel := make([]string, 0, len(routes))
	for _, r := range routes {
		kernel = append(kernel, fmt.Sprintf("%v via %v", r.Dst, r.Gw))
	}
	var fwd []string
	sc := bufio.NewScanner(bytes.NewReader(get(t, l.rtr, "/routes")))
	for sc.Scan() {
		if line := sc.Text(); strings.Contains(line, " via "+upAddr) {
			f := strings.Fields(line)
			fwd = append(fwd, f[0]+" via "+upAddr)
		}
	}
	sort.Strings(kernel)
	sort.Strings(fwd)
	if len(kernel) != want {
		t.Errorf("the kernel holds %d BIRD routes, want %d", len(kernel), want)
	}
	diff := 0
	for i, j := 0, 0; i < len(kernel) || j < len(fwd); {
		switch {
		case j == len(fwd) || i < len(kernel) && kernel[i] < fwd[j]:
			if diff++; diff <= 10 {
				t.Errorf("in the kernel, not in xdpfwd: %s", kernel[i])
			}
			i++
		case i == len(kernel) || fwd[j] < kernel[i]:
			if diff++; diff <= 10 {
				t.Errorf("in xdpfwd, not in the kernel: %s", fwd[j])
			}
			j++
		default:
			i++
			j++
		}
	}
	if diff > 0 {
		t.Errorf("%d differences between the kernel's %d routes and xdpfwd's %d", diff, len(kernel), len(fwd))
	} else {
		t.Logf("xdpfwd's table equals the kernel's: %d routes via %s (compared in %v)", len(fwd), upAddr, time.Since(start).Round(time.Millisecond))
	}
}

// logRSS logs the resident memory of xdpfwd and the two daemons.
func logRSS(t *testing.T, when string, l *lab) {
	t.Helper()
	t.Logf("RSS %s: xdpfwd %d MiB, router's BIRD %d MiB, up's BIRD %d MiB", when,
		rss(t, l.xdpfwd)>>20, rss(t, l.rtrBird)>>20, rss(t, l.upBird)>>20)
}

func rss(t *testing.T, p *netlab.Proc) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Cmd.Process.Pid))
	check(t, err)
	m := regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmRSS for pid %d", p.Cmd.Process.Pid)
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n << 10
}

func birdcOut(h *netlab.Host, birdc, sock string, args ...string) string {
	out, _ := run(h, 30*time.Second, birdc, append([]string{"-s", sock}, args...)...)
	return out
}

// birdc1 runs one birdc command and fails the test unless BIRD did it.
func birdc1(t *testing.T, h *netlab.Host, birdc, sock string, args ...string) {
	t.Helper()
	out, err := run(h, 30*time.Second, birdc, append([]string{"-s", sock}, args...)...)
	if err != nil || !strings.Contains(out, args[0]+"d") {
		t.Fatalf("birdc %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// waitFor polls cond every 100 ms until it holds and returns when it did, or fails the test after limit or
// as soon as one of the lab's processes has exited.
func (l *lab) waitFor(t *testing.T, what string, limit time.Duration, cond func() bool) time.Time {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		for _, p := range []*netlab.Proc{l.xdpfwd, l.rtrBird, l.upBird} {
			select {
			case <-p.Done():
				t.Fatalf("waiting for %s: %s exited (%v)", what, filepath.Base(p.Cmd.Path), p.Wait())
			default:
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("no %s within %v", what, limit)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Now()
}

// startProc starts name args in h and waits until its output contains ready (at once for "").
func startProc(t *testing.T, h *netlab.Host, ready, name string, args ...string) *netlab.Proc {
	t.Helper()
	p, err := h.Start(name, args...)
	check(t, err)
	t.Cleanup(func() {
		p.Stop(10 * time.Second)
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), tail(p.Output(), 40))
		}
	})
	deadline := time.After(30 * time.Second)
	for !bytes.Contains(p.Output(), []byte(ready)) {
		select {
		case <-p.Done():
			t.Fatalf("%s exited at start (%v):\n%s", name, p.Wait(), p.Output())
		case <-deadline:
			t.Fatalf("%s did not say %q within 30s:\n%s", name, ready, p.Output())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return p
}

func run(h *netlab.Host, timeout time.Duration, name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := h.Command(ctx, name, args...).CombinedOutput()
	return string(out), err
}

func mustRun(t *testing.T, h *netlab.Host, timeout time.Duration, name string, args ...string) {
	t.Helper()
	if out, err := run(h, timeout, name, args...); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

func tail(b []byte, lines int) string {
	s := strings.Split(string(b), "\n")
	if len(s) > lines {
		s = s[len(s)-lines:]
	}
	return strings.Join(s, "\n")
}

func check(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
