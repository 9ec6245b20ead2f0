//go:build stress

package adversary

import (
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/netlab"
)

// The server lab: Linux clients in cli, examples/httpd on xdpnet's stack in srv.
//
//	cli eth0 198.18.0.1/24, 198.18.0.3/24 (kernel) ---- veth ---- srv eth0 (httpd, 198.18.0.2/24)
//
// 198.18.0.3 is the attacker's address where an attack needs one that can vanish.
const (
	cliAddr = "198.18.0.1"
	atkAddr = "198.18.0.3"
	srvAddr = "198.18.0.2"
)

type httpLab struct {
	cli, srv *netlab.Host
	httpd    *netlab.Proc
}

func newHTTPLab(t *testing.T) *httpLab {
	t.Helper()
	netlab.RequirePrivileges(t)
	lab := netlab.NewT(t)
	l := &httpLab{cli: lab.MustAddHost(t, "cli"), srv: lab.MustAddHost(t, "srv")}
	if _, err := lab.LinkWith(l.cli, "eth0", l.srv, "eth0", netlab.LinkOptions{Queues: 1}); err != nil {
		t.Fatal(err)
	}
	prepare(t, l.cli, l.srv)
	addrUp(t, l.cli, "eth0", cliAddr+"/24", atkAddr+"/24")
	if err := l.srv.SetUp("eth0"); err != nil {
		t.Fatal(err)
	}
	waitUp(t, l.cli, "eth0", l.srv, "eth0")
	root := t.TempDir()
	os.Chmod(root, 0o755)
	for name, size := range map[string]int{"small": 512, "big": 32 << 20} {
		if err := os.WriteFile(filepath.Join(root, name), make([]byte, size), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	l.httpd = startProc(t, l.srv, "httpd serving", httpdBin, "-iface", "eth0="+srvAddr+"/24", "-root", root)
	run(t, l.cli, 20*time.Second, "curl", "-sS", "--max-time", "10", "-o", "/dev/null", "http://"+srvAddr+"/small")
	connectWithin(t, l.cli, srvAddr+":80", time.Second)
	return l
}

// after is the end of every server attack: a new connection is accepted within a second and a request
// served, memory settles under the bound, and httpd exits cleanly with its frame accounting. It returns
// httpd's TCP counters (its exit line), which the caller checks for the ones naming what was refused.
func (l *httpLab) after(t *testing.T) map[string]uint64 {
	t.Helper()
	connectWithin(t, l.cli, srvAddr+":80", time.Second)
	settleRSS(t, l.httpd, httpdRSSLimit)
	connectWithin(t, l.cli, srvAddr+":80", time.Second)
	run(t, l.cli, 20*time.Second, "curl", "-sS", "--max-time", "10", "-o", "/dev/null", "http://"+srvAddr+"/small")
	out := stopChecked(t, l.httpd, "httpd")
	st := map[string]uint64{}
	if m := regexp.MustCompile(`tcp=map\[([^\]]*)\]`).FindStringSubmatch(out); m != nil {
		for _, kv := range strings.Fields(m[1]) {
			k, v, _ := strings.Cut(kv, ":")
			st[k], _ = strconv.ParseUint(v, 10, 64)
		}
	} else {
		t.Errorf("httpd's exit line has no TCP counters:\n%s", tail([]byte(out), 20))
	}
	t.Logf("httpd TCP counters: %v", st)
	return st
}

// TestHTTPConnectionCloseFlood: 20 000 requests with Connection: close at the highest rate ab reaches.
// Each leaves a TIME-WAIT entry on the side that closed; none of them may keep buffers or lock out new
// connections.
func TestHTTPConnectionCloseFlood(t *testing.T) {
	l := newHTTPLab(t)
	out := run(t, l.cli, 10*time.Minute, "ab", "-q", "-n", "20000", "-c", "32", "-s", "10", "-H", "Connection: close",
		"http://"+srvAddr+"/small")
	t.Logf("ab:\n%s", out)
	if !strings.Contains(out, "Complete requests:      20000") || !strings.Contains(out, "Failed requests:        0") {
		t.Errorf("ab did not complete 20000 requests without failure")
	}
	st := l.after(t)
	if st["passive_opens"] < 20000 {
		t.Errorf("passive_opens %d, want at least 20000", st["passive_opens"])
	}
}

// zeroWindow opens n connections from the attacker's address, asks each for a large file and never reads:
// the server fills the window and probes it. Then it prints "ready" and sleeps; the test removes the
// address, so the probes go unanswered (the clients vanish, with no RST).
const zeroWindow = `
import socket, sys, time
n = int(sys.argv[1]); host = sys.argv[2]; src = sys.argv[3]
socks = []
for i in range(n):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.bind((src, 0))
    s.connect((host, 80))
    s.sendall(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
    socks.append(s)
print("ready", len(socks), flush=True)
time.sleep(3600)
`

// TestZeroWindowVanish: 1000 connections that close their window and vanish. Unanswered zero-window
// probes end them (persist timeouts), orphans are bounded, and memory comes back.
func TestZeroWindowVanish(t *testing.T) {
	l := newHTTPLab(t)
	p := startProc(t, l.cli, "ready 1000", python, "-c", zeroWindow, "1000", srvAddr, atkAddr)
	time.Sleep(5 * time.Second) // windows fill
	connectWithin(t, l.cli, srvAddr+":80", time.Second)
	// The clients vanish: their address goes away, the kernel drops what comes to it without an answer.
	run(t, l.cli, 10*time.Second, "ip", "addr", "del", atkAddr+"/24", "dev", "eth0")
	defer p.Stop(time.Second)
	// Zero-window probes back off to MaxRTO; MaxRetries (15) unanswered ones take several minutes.
	time.Sleep(4 * time.Minute)
	st := l.after(t)
	if st["persist_timeouts"]+st["conn_timeouts"] < 1000 {
		t.Errorf("persist_timeouts %d, conn_timeouts %d: want the 1000 vanished connections ended", st["persist_timeouts"], st["conn_timeouts"])
	}
}

// rstSpray is a long download on a fixed client port while spoofed RSTs with random sequence numbers
// are sent at that connection (scapy builds them, a raw socket sends them).
const rstSpray = `
import random, sys
from scapy.all import IP, TCP, Ether, sendp, conf
conf.verb = 0
src, dst, sport, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
pkts = [IP(src=src, dst=dst)/TCP(sport=sport, dport=80, flags="R", seq=random.getrandbits(32)) for _ in range(n)]
from scapy.all import send
send(pkts, iface="eth0")
print("sent", n)
`

// TestSpoofedRSTs: 20 000 RSTs at random sequence numbers against a running download. RFC 5961 §3: only an
// RST exactly at RCV.NXT resets; others in the window get a challenge ACK (rate limited). The download must
// finish intact.
func TestSpoofedRSTs(t *testing.T) {
	l := newHTTPLab(t)
	dl, err := l.cli.Start("curl", "-sS", "--max-time", "300", "--limit-rate", "2M", "--local-port", "40080",
		"-o", "/dev/null", "-w", "%{size_download}\n", "http://"+srvAddr+"/big")
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	out := run(t, l.cli, 5*time.Minute, python, "-c", rstSpray, cliAddr, srvAddr, "40080", "20000")
	if !strings.Contains(out, "sent 20000") {
		t.Fatalf("rst spray: %s", out)
	}
	if err := dl.Wait(); err != nil {
		t.Errorf("the download under spoofed RSTs failed: %v\n%s", err, dl.Output())
	}
	if got := strings.TrimSpace(string(dl.Output())); got != strconv.Itoa(32<<20) {
		t.Errorf("downloaded %q bytes, want %d", got, 32<<20)
	}
	st := l.after(t)
	if st["challenge_acks"]+st["challenge_acks_limited"]+st["ack_skipped_challenge"]+st["drop_rst_not_exact"] == 0 {
		t.Errorf("no counter names the spoofed RSTs (challenge_acks, challenge_acks_limited, ack_skipped_challenge, drop_rst_not_exact)")
	}
}
