package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/netlab"
	"github.com/xdpnet/xdpnet/stack"
	"github.com/xdpnet/xdpnet/stack/tcp"
)

// The test network: Linux (its own TCP) in namespace cli, httpd on xdpnet's stack in namespace srv, on
// the two ends of one veth.
//
//	cli eth0 198.18.0.1/24 (kernel) ---- veth ---- srv eth0 (XDP -> poller -> stack 198.18.0.2/24)
//
// startLabFamily's IPv6 variant puts the same link in 2001:2:0:1::/64, from the benchmarking range
// 2001:2::/48 (RFC 5180).
const (
	cliAddr  = "198.18.0.1"
	srvAddr  = "198.18.0.2"
	cli6Addr = "2001:2:0:1::1"
	srv6Addr = "2001:2:0:1::2"
)

type httpLab struct {
	cli, srv *netlab.Host
	s        *stack.Stack
	root     string
	sums     map[string]string // file name -> hex SHA-256
	stop     func()            // stops httpd (again: no-op)
}

// startLab builds the hosts, writes the files (name -> size) and runs httpd in-process in srv.
func startLab(t testing.TB, files map[string]int, extra func(s *stack.Stack)) *httpLab {
	t.Helper()
	return startLabFamily(t, false, files, extra)
}

// startLabFamily is startLab over IPv4 or, with v6, over IPv6 only: cli6Addr and srv6Addr instead of
// cliAddr and srvAddr, IPv6 left on in cli (at its defaults) and off in srv, whose kernel must not answer
// for the stack.
func startLabFamily(t testing.TB, v6 bool, files map[string]int, extra func(s *stack.Stack)) *httpLab {
	t.Helper()
	lab := netlab.NewT(t)
	l := &httpLab{cli: lab.MustAddHost(t, "cli"), srv: lab.MustAddHost(t, "srv"), root: t.TempDir(), sums: map[string]string{}}
	// One queue each way: the poller runs one queue, and a veth with more would steer some flows (and
	// ARP) to a queue nobody reads.
	if _, err := lab.LinkWith(l.cli, "eth0", l.srv, "eth0", netlab.LinkOptions{Queues: 1}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*netlab.Host{l.cli, l.srv} {
		for _, k := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
			if v6 && h == l.cli {
				break
			}
			if err := h.Sysctl(k, "1"); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.SetUp("eth0"); err != nil {
			t.Fatal(err)
		}
	}
	cliPrefix, srvPrefix := cliAddr+"/24", srvAddr+"/24"
	if v6 {
		cliPrefix, srvPrefix = cli6Addr+"/64", srv6Addr+"/64"
	}
	if err := l.cli.AddAddr("eth0", cliPrefix); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*netlab.Host{l.cli, l.srv} {
		if err := h.WaitOperUp("eth0", 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	if os.Getenv("XN_TCPDUMP") != "" {
		pr, _ := l.cli.Start("tcpdump", "-nni", "eth0", "-c", "20")
		t.Cleanup(func() { pr.Stop(time.Second); t.Logf("tcpdump:\n%s", pr.Output()) })
	}
	if f := os.Getenv("XN_PCAP"); f != "" {
		// The whole run's headers, for tshark: where a slow transfer waits (timers, delayed ACKs).
		pr, _ := l.cli.Start("tcpdump", "-nni", "eth0", "-s", "96", "-w", f)
		t.Cleanup(func() { pr.Stop(time.Second) })
		time.Sleep(500 * time.Millisecond)
	}
	l.serve(t, files, config{iface: "eth0", addr: netip.MustParsePrefix(srvPrefix), root: l.root, port: 80}, extra)
	return l
}

// serve writes the files (name -> size) under l.root and runs httpd with cfg in-process in l.srv; extra,
// when set, is called with its stack once it listens.
func (l *httpLab) serve(t testing.TB, files map[string]int, cfg config, extra func(s *stack.Stack)) {
	t.Helper()
	rng := rand.NewChaCha8([32]byte{1})
	for name, size := range files {
		b := make([]byte, size)
		rng.Read(b)
		if err := os.WriteFile(filepath.Join(l.root, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
		s := sha256.Sum256(b)
		l.sums[name] = hex.EncodeToString(s[:])
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan *stack.Stack, 1)
	go func() { done <- run(ctx, cfg, l.srv.Do, func(s *stack.Stack) { ready <- s }) }()
	select {
	case l.s = <-ready:
		if d, _ := time.ParseDuration(os.Getenv("XN_WAIT")); d > 0 {
			time.Sleep(d)
		}
	case err := <-done:
		cancel()
		t.Fatalf("httpd: %v", err)
	case <-time.After(20 * time.Second):
		cancel()
		t.Fatal("httpd did not start")
	}
	var once sync.Once
	l.stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("httpd shutdown: %v", err)
			}
		})
	}
	t.Cleanup(l.stop)
	if extra != nil {
		extra(l.s)
	}
}

// curl runs curl in cli and returns stdout; a failure is fatal.
func (l *httpLab) curl(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := l.cli.Command(ctx, "curl", append([]string{"-sS", "--max-time", "85"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("curl %v: %v: %s (tcp stats %v)", args, err, errb.String(), l.s.TCPStats())
	}
	return out.String()
}

func fileSum(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	io.Copy(h, f)
	return hex.EncodeToString(h.Sum(nil))
}

// downloadUpload GETs name and PUTs it back to /upload, checking both digests.
func (l *httpLab) downloadUpload(t *testing.T, get, put string) {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "got")
	t0 := time.Now()
	l.curl(t, "-o", dst, "http://"+srvAddr+"/"+get)
	if got := fileSum(t, dst); got != l.sums[get] {
		t.Fatalf("download of %s: sha256 %s, want %s", get, got, l.sums[get])
	}
	t1 := time.Now()
	ans := strings.TrimSpace(l.curl(t, "-T", filepath.Join(l.root, put), "http://"+srvAddr+"/upload"))
	if ans != l.sums[put] {
		t.Fatalf("upload of %s: server hashed %q, want %s", put, ans, l.sums[put])
	}
	t.Logf("download of %s %v, upload of %s %v", get, t1.Sub(t0).Round(time.Millisecond), put, time.Since(t1).Round(time.Millisecond))
}

// TestCurlDownloadUploadVeth: Linux curl downloads 64 MiB from httpd and uploads 32 MiB, intact.
func TestCurlDownloadUploadVeth(t *testing.T) {
	netlab.RequireTool(t, "curl")
	l := startLab(t, map[string]int{"64m": 64 << 20, "32m": 32 << 20}, nil)
	l.downloadUpload(t, "64m", "32m")
	t.Logf("tcp stats: %v", nonZero(l.s.TCPStats()))
}

// TestCurlLossVeth: the same 64 MiB down and 32 MiB up with 5% of TCP segments dropped both ways by
// nftables in cli. SACK recovery (RFC 6675) with RFC 6937 PRR, RACK-style loss marking, tail loss probes
// that resend the last segment (which the Linux receiver acknowledges at once, where new data would wait for
// its delayed-ACK timer), CUBIC and HyStart++ repair the losses mostly without an RTO. Seven runs on the
// shared 2-core test machine: 64 MiB down in 3.0-6.3 s (Linux -> Linux over the same veth and loss: 0.9-6.1
// s); with Reno and no such probes it took 15-18 s.
func TestCurlLossVeth(t *testing.T) {
	netlab.RequireTool(t, "curl")
	netlab.RequireTool(t, "nft")
	l := startLab(t, map[string]int{"64m": 64 << 20, "32m": 32 << 20}, nil)
	ctx := context.Background()
	for _, args := range [][]string{
		{"add", "table", "inet", "xn"},
		{"add", "chain", "inet", "xn", "in", "{ type filter hook input priority 0; }"},
		{"add", "chain", "inet", "xn", "out", "{ type filter hook output priority 0; }"},
		{"add", "rule", "inet", "xn", "in", "meta", "l4proto", "tcp", "numgen", "random", "mod", "100", "<", "5", "drop"},
		{"add", "rule", "inet", "xn", "out", "meta", "l4proto", "tcp", "numgen", "random", "mod", "100", "<", "5", "drop"},
	} {
		if out, err := l.cli.Run(ctx, "nft", args...); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
	}
	l.downloadUpload(t, "64m", "32m")
	st := l.s.TCPStats()
	if st[tcp.StatRetransmits.String()] == 0 || st[tcp.StatSACKRetransmits.String()] == 0 {
		t.Errorf("no (SACK) retransmissions from our side under 5%% loss: %v", nonZero(st))
	}
	// Before SACK recovery 16 MiB down (8 up) took ~220 RTOs, about 900 at these sizes; the runs above took
	// 12-25. Each RTO costs at least MinRTO (200 ms).
	if n := st[tcp.StatTimeouts.String()]; n > 64 {
		t.Errorf("%d retransmission timeouts for 64 MiB down at 5%% loss, want at most 64 (one per MiB): %v", n, nonZero(st))
	}
	t.Logf("tcp stats: %v", nonZero(st))
}

// TestCurlParallelVeth: 200 requests over 50 parallel connections all succeed.
func TestCurlParallelVeth(t *testing.T) {
	netlab.RequireTool(t, "curl")
	l := startLab(t, map[string]int{"f": 100 << 10}, nil)
	args := []string{"--parallel", "--parallel-max", "50", "-w", "%{http_code} %{size_download}\\n"}
	for range 200 {
		args = append(args, "-o", "/dev/null", "-H", "Connection: close", "http://"+srvAddr+"/f")
	}
	out := l.curl(t, args...)
	ok := strings.Count(out, fmt.Sprintf("200 %d\n", 100<<10))
	if ok != 200 {
		t.Fatalf("%d of 200 requests complete; output:\n%s", ok, out)
	}
	if n := l.s.TCPStat(tcp.StatPassiveOpens); n < 200 {
		t.Errorf("%d passive opens, want 200 (one connection per request)", n)
	}
}

// TestSYNFloodVeth: 5000 SYNs from random sources in 198.18.0.0/24 (scapy) while curl still gets its
// file: the SYN queue overflows and SYN cookies answer.
func TestSYNFloodVeth(t *testing.T) {
	netlab.RequireTool(t, "curl")
	netlab.RequireTool(t, "/usr/bin/python3")
	if err := exec.Command("/usr/bin/python3", "-c", "import scapy.all").Run(); err != nil {
		netlab.MissingTool(t, "python3-scapy is not installed for /usr/bin/python3")
	}
	l := startLab(t, map[string]int{"1m": 1 << 20}, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	flood := l.cli.Command(ctx, "/usr/bin/python3", "-c", `
from scapy.all import IP, TCP, RandIP, RandShort, send, conf
conf.verb = 0
send(IP(src=RandIP('198.18.0.0/24'), dst='`+srvAddr+`')/TCP(flags='S', dport=80, sport=RandShort()), count=5000)
`)
	var ferr bytes.Buffer
	flood.Stderr = &ferr
	if err := flood.Start(); err != nil {
		t.Fatal(err)
	}
	// Wait until the flood has filled the SYN queue, then connect for real during it.
	deadline := time.Now().Add(30 * time.Second)
	for l.s.TCPStat(tcp.StatCookiesSent) == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if l.s.TCPStat(tcp.StatCookiesSent) == 0 {
		flood.Wait()
		t.Fatalf("no SYN cookies after the flood started: %v %s", nonZero(l.s.TCPStats()), ferr.String())
	}
	dst := filepath.Join(t.TempDir(), "got")
	l.curl(t, "-o", dst, "http://"+srvAddr+"/1m")
	if got := fileSum(t, dst); got != l.sums["1m"] {
		t.Fatalf("download during the flood: sha256 %s, want %s", got, l.sums["1m"])
	}
	if err := flood.Wait(); err != nil {
		t.Fatalf("scapy: %v: %s", err, ferr.String())
	}
	st := l.s.TCPStats()
	t.Logf("tcp stats: %v", nonZero(st))
	if st[tcp.StatCookiesSent.String()] < 1000 {
		t.Errorf("only %d SYN cookies for 5000 SYNs", st[tcp.StatCookiesSent.String()])
	}
}

// TestClosedPortRefusedVeth: curl to a port nobody listens on gets "Connection refused" (the engine's RST).
func TestClosedPortRefusedVeth(t *testing.T) {
	netlab.RequireTool(t, "curl")
	l := startLab(t, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	out, err := l.cli.Command(ctx, "curl", "-v", "--max-time", "10", "http://"+srvAddr+":81/").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Connection refused") {
		t.Fatalf("curl to a closed port: %v %s, want Connection refused", err, out)
	}
	if n := l.s.TCPStat(tcp.StatResetsOut); n == 0 {
		t.Errorf("no RST counted")
	}
}

// dialFromCli opens a Linux TCP connection from the cli namespace.
func (l *httpLab) dialFromCli(t *testing.T, port int) *net.TCPConn {
	t.Helper()
	var c net.Conn
	err := l.cli.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", fmt.Sprintf("%s:%d", srvAddr, port), 10*time.Second)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(30 * time.Second))
	return c.(*net.TCPConn)
}

// TestHalfCloseVeth: a Linux client sends its request and shuts down its sending side; the server on
// our stack reads to EOF and still sends its reply after the client's FIN (CLOSE-WAIT works).
func TestHalfCloseVeth(t *testing.T) {
	var ln *stack.TCPListener
	l := startLab(t, nil, func(s *stack.Stack) {
		var err error
		if ln, err = s.ListenTCP(netip.MustParseAddrPort(srvAddr + ":7")); err != nil {
			t.Fatal(err)
		}
	})
	defer ln.Close()
	srvErr := make(chan error, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			srvErr <- err
			return
		}
		defer c.Close()
		b, err := io.ReadAll(c)
		if err != nil {
			srvErr <- err
			return
		}
		if st := c.State(); st != tcp.StateCloseWait {
			srvErr <- fmt.Errorf("server state after EOF %v, want CLOSE-WAIT", st)
			return
		}
		s := sha256.Sum256(b)
		_, err = fmt.Fprintf(c, "%d %x", len(b), s)
		srvErr <- err
	}()
	c := l.dialFromCli(t, 7)
	req := bytes.Repeat([]byte("half-close "), 30000)
	if _, err := c.Write(req); err != nil {
		t.Fatal(err)
	}
	if err := c.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the reply after our FIN: %v", err)
	}
	s := sha256.Sum256(req)
	if want := fmt.Sprintf("%d %x", len(req), s); string(got) != want {
		t.Fatalf("reply %q, want %q", got, want)
	}
	if err := <-srvErr; err != nil {
		t.Fatal(err)
	}
}

// TestTimeWaitVeth: the server on our stack closes first (active close); after the Linux client closes
// too, the connection is in TIME-WAIT on our side, and still in the engine's table.
func TestTimeWaitVeth(t *testing.T) {
	var ln *stack.TCPListener
	l := startLab(t, nil, func(s *stack.Stack) {
		var err error
		if ln, err = s.ListenTCP(netip.MustParseAddrPort(srvAddr + ":8")); err != nil {
			t.Fatal(err)
		}
	})
	defer ln.Close()
	acc := make(chan *tcp.Conn, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			close(acc)
			return
		}
		c.Write([]byte("bye"))
		c.Close()
		acc <- c
	}()
	c := l.dialFromCli(t, 8)
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "bye" {
		t.Fatalf("read %q %v", got, err)
	}
	c.Close()
	sc := <-acc
	if sc == nil {
		t.Fatal("accept failed")
	}
	deadline := time.Now().Add(5 * time.Second)
	for sc.State() != tcp.StateTimeWait && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if st := sc.State(); st != tcp.StateTimeWait {
		t.Fatalf("after our active close the connection is %v, want TIME-WAIT", st)
	}
	if n := l.s.TCPConns(); n != 1 {
		t.Errorf("%d connections in the table, want the one in TIME-WAIT", n)
	}
	// The Linux side closed passively: no TIME-WAIT there.
	if out, err := l.cli.Run(context.Background(), "ss", "-Htan", "state", "time-wait"); err == nil && len(bytes.TrimSpace(out)) != 0 {
		t.Errorf("Linux client in TIME-WAIT too: %s", out)
	}
}

func nonZero(m map[string]uint64) map[string]uint64 {
	o := map[string]uint64{}
	for k, v := range m {
		if v != 0 {
			o[k] = v
		}
	}
	return o
}
