package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/netlab"
)

// xdpfwdBin is the real binary, built once by TestMain, that the privileged tests run in the router namespace.
var xdpfwdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xdpfwd-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Chmod(dir, 0o755) // TestNotRoot runs the binary as nobody
	xdpfwdBin = filepath.Join(dir, "xdpfwd")
	if out, err := exec.Command("go", "build", "-o", xdpfwdBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "build xdpfwd: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// startLab builds gen - router - sink, starts xdpfwd in the router with the two interfaces and extra flags,
// and checks that the router's kernel does not forward.
func startLab(t *testing.T, o labOptions, extra ...string) *routerLab {
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
	args := append([]string{"--iface", "r0=" + r0Addr + "/24", "--iface", "r1=" + r1Addr + "/24"}, extra...)
	if err := l.startRouter(xdpfwdBin, args...); err != nil {
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

func assertNoKernelForwarding(t *testing.T, l *routerLab) {
	t.Helper()
	f, err := l.ipForward()
	if err != nil {
		t.Fatal(err)
	}
	if f != 0 {
		t.Fatalf("router namespace net.ipv4.ip_forward = %d, want 0 (only xdpfwd may forward)", f)
	}
}

// stopRouter sends SIGTERM and checks the clean exit: status 0, a summary, frame accounting OK. It returns
// xdpfwd's output.
func stopRouter(t *testing.T, l *routerLab) string {
	t.Helper()
	assertNoKernelForwarding(t, l)
	if err := l.xdpfwd.Stop(10 * time.Second); err != nil {
		t.Fatalf("stop xdpfwd: %v", err)
	}
	out := string(l.xdpfwd.Output())
	if err := l.xdpfwd.Wait(); err != nil {
		t.Fatalf("xdpfwd exit after SIGTERM: %v (want status 0)\n%s", err, out)
	}
	if !strings.Contains(out, "xdpfwd summary") || !strings.Contains(out, "frame accounting: OK") {
		t.Fatalf("xdpfwd summary without \"frame accounting: OK\":\n%s", out)
	}
	return out
}

// runIn runs a program in a host with a timeout and returns its output; a non-zero exit is not an error
// here (ping exits 1 when an ICMP error came back instead of a reply), the caller checks the output.
func runIn(t *testing.T, h *netlab.Host, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := h.Command(ctx, name, args...).CombinedOutput()
	if ctx.Err() != nil {
		t.Fatalf("%s %v timed out: %s", name, args, out)
	}
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return string(out)
}

func mustPing(t *testing.T, h *netlab.Host, args ...string) string {
	t.Helper()
	out := runIn(t, h, "ping", args...)
	if !regexp.MustCompile(`, 0% packet loss`).MatchString(out) {
		t.Fatalf("ping %v lost packets:\n%s", args, out)
	}
	return out
}

// TestPingThroughAndToRouterVeth: Linux ping gen -> sink through xdpfwd, and to both router addresses; then
// SIGTERM gives status 0, a summary and clean frame accounting.
func TestPingThroughAndToRouterVeth(t *testing.T) {
	l := startLab(t, labOptions{})
	out := mustPing(t, l.gen, "-c", "3", "-i", "0.2", "-W", "2", sinkAddr)
	if !strings.Contains(out, "ttl=63") {
		t.Errorf("reply through one router should have TTL 63:\n%s", out)
	}
	mustPing(t, l.gen, "-c", "3", "-i", "0.2", "-W", "2", r0Addr)
	mustPing(t, l.gen, "-c", "3", "-i", "0.2", "-W", "2", r1Addr)
	mustPing(t, l.sink, "-c", "3", "-i", "0.2", "-W", "2", genAddr)
	sum := stopRouter(t, l)
	if n := counter(sum, "stack", "forwarded"); n < 12 {
		t.Errorf("stack forwarded = %d, want >= 12 (6 echo requests and 6 replies)\n%s", n, sum)
	}
	if n := counter(sum, "stack", "icmp_echo_replies_out"); n != 6 {
		t.Errorf("icmp_echo_replies_out = %d, want 6\n%s", n, sum)
	}
}

// TestTTLExceededAndTracerouteVeth: TTL 1 gets Time to live exceeded from the router; traceroute shows the
// router as hop 1 and the sink as hop 2.
func TestTTLExceededAndTracerouteVeth(t *testing.T) {
	l := startLab(t, labOptions{})
	out := runIn(t, l.gen, "ping", "-c", "1", "-t", "1", "-W", "2", sinkAddr)
	if !strings.Contains(out, "From "+r0Addr) || !strings.Contains(out, "Time to live exceeded") {
		t.Errorf("ping -t 1: want \"From %s ... Time to live exceeded\":\n%s", r0Addr, out)
	}
	if _, err := exec.LookPath("traceroute"); err == nil {
		out = runIn(t, l.gen, "traceroute", "-n", "-q", "1", "-w", "2", "-m", "5", sinkAddr)
		if !regexp.MustCompile(`(?m)^ 1  `+regexp.QuoteMeta(r0Addr)+` `).MatchString(out) ||
			!regexp.MustCompile(`(?m)^ 2  `+regexp.QuoteMeta(sinkAddr)+` `).MatchString(out) {
			t.Errorf("traceroute: want hop 1 %s and hop 2 %s:\n%s", r0Addr, sinkAddr, out)
		}
	} else {
		out = runIn(t, l.gen, "tracepath", "-n", "-m", "5", sinkAddr)
		if !regexp.MustCompile(`(?m)^ 1: +`+regexp.QuoteMeta(r0Addr)).MatchString(out) ||
			!regexp.MustCompile(`(?m)^ 2: +`+regexp.QuoteMeta(sinkAddr)).MatchString(out) {
			t.Errorf("tracepath: want hop 1 %s and hop 2 %s:\n%s", r0Addr, sinkAddr, out)
		}
	}
	sum := stopRouter(t, l)
	if counter(sum, "drop", "ttl_expired") < 2 {
		t.Errorf("want ttl_expired drops from ping -t 1 and traceroute:\n%s", sum)
	}
}

// TestFragmentationVeth: the router-sink link has MTU 1280. Without DF the router fragments a 1428-byte
// echo and the ping succeeds; with DF the router answers Frag needed with mtu = 1280. The DF-less ping runs
// first: afterwards gen caches the path MTU and would fragment by itself.
func TestFragmentationVeth(t *testing.T) {
	l := startLab(t, labOptions{R1MTU: 1280})
	mustPing(t, l.gen, "-c", "2", "-i", "0.2", "-W", "2", "-M", "dont", "-s", "1400", sinkAddr)
	out := runIn(t, l.gen, "ping", "-c", "1", "-W", "2", "-M", "do", "-s", "1400", sinkAddr)
	if !strings.Contains(out, "Frag needed and DF set (mtu = 1280)") {
		t.Errorf("ping -M do -s 1400: want \"Frag needed and DF set (mtu = 1280)\":\n%s", out)
	}
	sum := stopRouter(t, l)
	if n := counter(sum, "stack", "fragmented"); n < 2 {
		t.Errorf("stack fragmented = %d, want >= 2 (the router, not gen, fragmented the echo requests)\n%s", n, sum)
	}
	if counter(sum, "drop", "frag_needed") < 1 {
		t.Errorf("want a frag_needed drop:\n%s", sum)
	}
}

// TestNetUnreachableVeth: a destination the router has no route for gets Destination Net Unreachable.
func TestNetUnreachableVeth(t *testing.T) {
	l := startLab(t, labOptions{})
	out := runIn(t, l.gen, "ping", "-c", "1", "-W", "2", "198.19.200.1")
	if !strings.Contains(out, "From "+r0Addr) || !strings.Contains(out, "Destination Net Unreachable") {
		t.Errorf("want Destination Net Unreachable from %s:\n%s", r0Addr, out)
	}
	sum := stopRouter(t, l)
	if counter(sum, "drop", "no_route") != 1 {
		t.Errorf("want one no_route drop:\n%s", sum)
	}
}

// udpPair opens a socket on the sink (port) and one on gen connected to dst:port.
func udpPair(t *testing.T, l *routerLab, dst string, port int) (gen, sink *net.UDPConn) {
	t.Helper()
	if err := l.sink.Do(func() (err error) {
		sink, err = net.ListenUDP("udp4", &net.UDPAddr{Port: port})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sink.Close() })
	if err := l.gen.Do(func() (err error) {
		gen, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP(dst), Port: port})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gen.Close() })
	return gen, sink
}

func payload(i, n int) []byte {
	b := make([]byte, n)
	binary.BigEndian.PutUint32(b, uint32(i))
	for j := 4; j < n; j++ {
		b[j] = byte(i*31 + j)
	}
	return b
}

// readAll reads want datagrams (or until timeout) and returns them by sequence number.
func readAll(c *net.UDPConn, want int, timeout time.Duration) map[int][]byte {
	got := map[int][]byte{}
	buf := make([]byte, 65536)
	c.SetReadDeadline(time.Now().Add(timeout))
	for len(got) < want {
		n, _, err := c.ReadFromUDP(buf)
		if err != nil {
			break
		}
		if n >= 4 {
			got[int(binary.BigEndian.Uint32(buf))] = bytes.Clone(buf[:n])
		}
	}
	return got
}

// TestUDPAcrossRouterVeth: datagrams between Linux sockets, both ways, with their payloads compared. xdpfwd
// takes its addresses from the kernel here (--iface NAME alone).
func TestUDPAcrossRouterVeth(t *testing.T) {
	netlab.RequirePrivileges(t)
	l, err := newRouterLab(t.Name(), labOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := l.startRouter(xdpfwdBin, "--iface", "r0", "--iface", "r1"); err != nil {
		t.Fatal(err)
	}
	assertNoKernelForwarding(t, l)
	gen, sink := udpPair(t, l, sinkAddr, 4000)
	sizes := []int{4, 18, 100, 512, 1000, 1472}
	for i, n := range sizes {
		if _, err := gen.Write(payload(i, n)); err != nil {
			t.Fatal(err)
		}
	}
	got := readAll(sink, len(sizes), 5*time.Second)
	var from *net.UDPAddr
	for i, n := range sizes {
		if !bytes.Equal(got[i], payload(i, n)) {
			t.Errorf("datagram %d (%d bytes): got %d bytes, want the bytes sent", i, n, len(got[i]))
		}
	}
	// And back: the sink answers to the address the datagrams came from.
	sink.SetReadDeadline(time.Now().Add(2 * time.Second))
	gen.Write(payload(99, 64))
	buf := make([]byte, 2048)
	n, from, err := sink.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("sink read: %v", err)
	}
	if from.IP.String() != genAddr {
		t.Errorf("datagram source %v, want %s (a router must not rewrite it)", from, genAddr)
	}
	if _, err := sink.WriteToUDP(buf[:n], from); err != nil {
		t.Fatal(err)
	}
	back := readAll(gen, 1, 3*time.Second)
	if !bytes.Equal(back[99], payload(99, 64)) {
		t.Errorf("reply sink -> gen not received intact: %x", back[99])
	}
	stopRouter(t, l)
}

// TestNextHopAppearsLaterVeth: a route via 198.19.0.3, which nobody has yet. Datagrams sent now wait in the
// neighbour queue while the router retries ARP; once the sink takes that address they are delivered.
func TestNextHopAppearsLaterVeth(t *testing.T) {
	l := startLab(t, labOptions{}, "--route", "198.19.5.0/24=198.19.0.3")
	// The sink owns the final destination; the next hop address comes later.
	if err := l.sink.AddAddr("eth0", "198.19.5.1/32"); err != nil {
		t.Fatal(err)
	}
	gen, sink := udpPair(t, l, "198.19.5.1", 4001)
	const n = 5
	for i := 0; i < n; i++ {
		if _, err := gen.Write(payload(i, 200)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second)
	if err := l.sink.AddAddr("eth0", "198.19.0.3/24"); err != nil {
		t.Fatal(err)
	}
	got := readAll(sink, n, 6*time.Second)
	for i := 0; i < n; i++ {
		if !bytes.Equal(got[i], payload(i, 200)) {
			t.Errorf("datagram %d held for the late next hop: not delivered intact (got %d bytes)", i, len(got[i]))
		}
	}
	sum := stopRouter(t, l)
	if c := counter(sum, "stack", "held_released"); c < n {
		t.Errorf("held_released = %d, want >= %d\n%s", c, n, sum)
	}
}

// TestNextHopNeverAnswersVeth: a route via 198.19.0.99, which never answers ARP. A burst larger than the
// neighbour queue is cut to the queue length (neighbour_queue_full), the held packets are dropped when
// resolution fails (neighbour_failed), and ping sees Destination Host Unreachable.
func TestNextHopNeverAnswersVeth(t *testing.T) {
	l := startLab(t, labOptions{}, "--route", "198.19.6.0/24=198.19.0.99")
	gen, _ := udpPair(t, l, "198.19.6.1", 4002)
	const burst = 200
	for i := 0; i < burst; i++ {
		if _, err := gen.Write(payload(i, 100)); err != nil {
			t.Fatal(err)
		}
	}
	out := runIn(t, l.gen, "ping", "-c", "6", "-i", "1", "-W", "1", "198.19.6.1")
	if !strings.Contains(out, "Destination Host Unreachable") {
		t.Errorf("ping via a dead next hop: want Destination Host Unreachable:\n%s", out)
	}
	sum := stopRouter(t, l)
	// The default neighbour queue holds 16 packets per next hop per queue; the rest of the burst is refused.
	if qf := counter(sum, "drop", "neighbour_queue_full"); qf < burst-16 {
		t.Errorf("neighbour_queue_full = %d, want >= %d (the queue must stay bounded at 16)\n%s", qf, burst-16, sum)
	}
	if nf := counter(sum, "drop", "neighbour_failed"); nf < 1 {
		t.Errorf("want neighbour_failed drops:\n%s", sum)
	}
}

// TestPcapTapVeth: --pcap with --pcap-hook forward writes the forwarded echo requests and replies.
func TestPcapTapVeth(t *testing.T) {
	file := filepath.Join(t.TempDir(), "fwd.pcap")
	l := startLab(t, labOptions{}, "--pcap", file, "--pcap-hook", "forward")
	mustPing(t, l.gen, "-c", "3", "-i", "0.2", "-W", "2", sinkAddr)
	mustPing(t, l.gen, "-c", "1", "-W", "2", r0Addr) // local, not at forward
	stopRouter(t, l)
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b23c4d {
		t.Fatalf("%s is not a nanosecond pcap file (%d bytes)", file, len(b))
	}
	n := 0
	for off := 24; off+16 <= len(b); n++ {
		off += 16 + int(binary.LittleEndian.Uint32(b[off+8:]))
	}
	if n != 6 {
		t.Errorf("pcap at forward has %d packets, want 6 (3 requests, 3 replies)", n)
	}
	// tshark reads it back: six ICMP echoes between gen and sink, none malformed.
	tshark := netlab.RequireTool(t, "tshark")
	// Output, not CombinedOutput: tshark warns on stderr when run as root.
	out, err := exec.Command(tshark, "-r", file, "-T", "fields", "-e", "ip.src", "-e", "ip.dst", "-e", "icmp.type").Output()
	if err != nil {
		t.Fatalf("tshark -r: %v\n%s", err, out)
	}
	var requests, replies int
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		switch strings.Join(strings.Fields(line), " ") {
		case genAddr + " " + sinkAddr + " 8":
			requests++
		case sinkAddr + " " + genAddr + " 0":
			replies++
		default:
			t.Errorf("tshark: unexpected packet %q", line)
		}
	}
	if requests != 3 || replies != 3 {
		t.Errorf("tshark saw %d requests and %d replies, want 3 and 3:\n%s", requests, replies, out)
	}
	if out, _ := exec.Command(tshark, "-r", file, "-Y", "_ws.malformed || _ws.expert.severity >= error").Output(); len(strings.TrimSpace(string(out))) > 0 {
		t.Errorf("tshark finds malformed packets:\n%s", out)
	}
}

// TestKillLeavesNoXDPVeth: SIGKILL gives xdpfwd no chance to clean up; the XDP programs still go, because
// they are attached through bpf_links owned by the process.
func TestKillLeavesNoXDPVeth(t *testing.T) {
	l := startLab(t, labOptions{})
	for _, ifn := range []string{"r0", "r1"} {
		if !xdpAttached(t, l.router, ifn) {
			t.Fatalf("%s: no XDP program while xdpfwd runs; the check below would prove nothing", ifn)
		}
	}
	if err := l.xdpfwd.Cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	l.xdpfwd.Wait()
	deadline := time.Now().Add(3 * time.Second)
	for _, ifn := range []string{"r0", "r1"} {
		for xdpAttached(t, l.router, ifn) {
			if time.Now().After(deadline) {
				t.Fatalf("%s still has an XDP program 3s after xdpfwd was killed", ifn)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}

func xdpAttached(t *testing.T, h *netlab.Host, ifn string) bool {
	t.Helper()
	lk, err := h.Link(ifn)
	if err != nil {
		t.Fatal(err)
	}
	x := lk.Attrs().Xdp
	return x != nil && (x.Attached || x.ProgId != 0)
}

// TestBadFlags: flag and configuration errors exit 2 with a message naming the problem; no system access.
func TestBadFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "no subcommand"},
		{[]string{"frob"}, `unknown subcommand "frob"`},
		{[]string{"run"}, "no interfaces"},
		{[]string{"run", "--iface", "r0=198.18.0.1"}, "is not an address with prefix length"},
		{[]string{"run", "--iface", "r0=198.18.0.1/24", "--route", "198.19.0.1/16=198.18.0.2"}, "did you mean 198.19.0.0/16"},
		{[]string{"run", "--iface", "r0=198.18.0.1/24", "--route", "198.19.0.0/16"}, "want PREFIX=NEXTHOP"},
		{[]string{"run", "--iface", "r0=198.18.0.1/24", "--mode", "fast"}, `unknown poll mode "fast"`},
		{[]string{"run", "--iface", "r0=198.18.0.1/24", "--bind", "fast"}, `unknown bind mode "fast"`},
		{[]string{"run", "--iface", "r0=198.18.0.1/24", "--xdp-mode", "fast"}, `--xdp-mode "fast"`},
		{[]string{"run", "--iface", "r0=198.18.0.1/24", "--queues", "0"}, "--queues 0"},
		{[]string{"run", "--iface", "r0=198.18.0.1/24", "--cpus", "3-1"}, `"3-1" is not a range`},
		{[]string{"run", "--iface", "r0=198.18.0.1/24", "--log-format", "xml"}, `--log-format "xml"`},
		{[]string{"run", "--iface", "r0=198.18.0.1/24", "--pcap-hook", "nowhere"}, `unknown hook "nowhere"`},
		{[]string{"run", "--iface", "r0=198.18.0.1/24", "--stats", "-1s"}, "--stats"},
		{[]string{"run", "--iface", "r0=198.18.0.1/24", "extra"}, `unexpected argument "extra"`},
		{[]string{"run", "--bogus"}, "-bogus"},
		{[]string{"demo", "--duration", "0s"}, "--duration"},
		{[]string{"help", "frob"}, `unknown subcommand "frob"`},
	} {
		var stdout, stderr bytes.Buffer
		code := realMain(context.Background(), c.args, &stdout, &stderr)
		if code != exitUsage {
			t.Errorf("%q: exit %d, want %d (stderr %q)", c.args, code, exitUsage, stderr.String())
		}
		if !strings.Contains(stderr.String(), c.want) {
			t.Errorf("%q: stderr %q does not name the problem (%q)", c.args, stderr.String(), c.want)
		}
	}
}

// TestHelp: every flag and subcommand is explained, on stdout, with status 0.
func TestHelp(t *testing.T) {
	for _, c := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"run", "demo", "help"}},
		{[]string{"help", "run"}, []string{"-iface", "-route", "-mode", "-queues", "-cpus", "-bind", "-xdp-mode", "-replace", "-stats", "-log-format", "-pcap", "-pcap-hook", "-pcap-size", "-pcap-files", "-config", "-metrics"}},
		{[]string{"help", "stats"}, []string{"-metrics", "-interval", "-count"}},
		{[]string{"help", "check"}, []string{"-config"}},
		{[]string{"run", "-h"}, []string{"-iface"}},
		{[]string{"help", "demo"}, []string{"-duration", "-rate"}},
	} {
		var stdout, stderr bytes.Buffer
		if code := realMain(context.Background(), c.args, &stdout, &stderr); code != exitOK {
			t.Errorf("%q: exit %d, want 0", c.args, code)
		}
		for _, w := range c.want {
			if !strings.Contains(stdout.String(), w) {
				t.Errorf("%q: help does not mention %s", c.args, w)
			}
		}
	}
}

// TestMissingInterface: an interface that does not exist is a configuration error (status 2) that says how
// to check. Needs privileges to get past the capability check; it touches nothing.
func TestMissingInterface(t *testing.T) {
	netlab.RequirePrivileges(t)
	var stdout, stderr bytes.Buffer
	code := realMain(context.Background(), []string{"run", "--iface", "xnnosuch0=198.18.0.1/24"}, &stdout, &stderr)
	if code != exitUsage || !strings.Contains(stderr.String(), "xnnosuch0") || !strings.Contains(stderr.String(), "ip link") {
		t.Errorf("exit %d, stderr %q; want 2 and a message naming xnnosuch0 and `ip link`", code, stderr.String())
	}
}

// TestDemoVeth runs `xdpfwd demo` as `make demo` does (shorter) and checks it shows both families working,
// ends well and leaves no namespace.
func TestDemoVeth(t *testing.T) {
	netlab.RequirePrivileges(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, xdpfwdBin, "demo", "--duration", "2s").CombinedOutput()
	if err != nil {
		t.Fatalf("xdpfwd demo: %v\n%s", err, out)
	}
	// Both families: ping through the router and to it without loss, the router as traceroute's hop 1,
	// UDP and TCP transfers intact, forwarded packets of each family in the summary.
	for _, want := range []string{
		`== ping through the router \(gen -> sink\): .*\n(.*\n)*?.* 3 received, 0% packet loss`,
		`== ping the router itself \(gen -> r0\): .*\n(.*\n)*?.* 3 received, 0% packet loss`,
		`== ping -6 through the router \(gen -> sink\): .*\n(.*\n)*?.* 3 received, 0% packet loss`,
		`== ping -6 the router itself \(gen -> r0\): .*\n(.*\n)*?.* 3 received, 0% packet loss`,
		`\n +1  ` + regexp.QuoteMeta(r0Addr) + ` `,
		`\n +1  ` + regexp.QuoteMeta(r06Addr) + ` `,
		`== UDP over IPv4.*\n +sent 5000, sink received \d+ intact \(\d+ lost, 0 changed\)`,
		`== UDP over IPv6.*\n +sent 5000, sink received \d+ intact \(\d+ lost, 0 changed\)`,
		`== TCP over IPv4.*\n +64 MiB arrived intact`,
		`== TCP over IPv6.*\n +64 MiB arrived intact`,
		`== xdpfwd forwarded [1-9]\d* IPv4 and [1-9]\d* IPv6 packets`,
		`frame accounting: OK`, `== done`, `== removing the lab`,
	} {
		if !regexp.MustCompile(want).Match(out) {
			t.Errorf("demo output does not match %q:\n%s", want, out)
		}
	}
	// Other tests may run labs at the same time: look only for this demo's prefix.
	m := regexp.MustCompile(`removing the lab \((xn[0-9A-Za-z]+)-\*\)`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("demo output does not name its lab prefix:\n%s", out)
	}
	if left, _ := filepath.Glob("/run/netns/" + m[1] + "-*"); len(left) > 0 {
		t.Errorf("demo left namespaces behind: %v", left)
	}
}

// TestNotRoot: without privileges, run says which capabilities it needs (status 1). It runs the binary as
// nobody through setpriv(1), which needs root to switch users.
func TestNotRoot(t *testing.T) {
	netlab.RequirePrivileges(t)
	setpriv := netlab.RequireTool(t, "setpriv")
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all",
		xdpfwdBin, "run", "--iface", "r0=198.18.0.1/24")
	out, err := cmd.CombinedOutput()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != exitFailure {
		t.Fatalf("as nobody: %v, want exit status %d\n%s", err, exitFailure, out)
	}
	for _, want := range []string{"CAP_NET_ADMIN", "CAP_NET_RAW", "CAP_BPF", "run as root"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("message does not name %s: %s", want, out)
		}
	}
}
