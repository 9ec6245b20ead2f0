package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/netlab"
	"github.com/xdpnet/xdpnet/stack"
	"github.com/xdpnet/xdpnet/stack/tcp"
)

// The routed test network: a Linux router between Linux curl and httpd, everything at its defaults
// (offloads on) but the router's forwarding.
//
//	cli eth0 198.18.3.1/24 ---- eth1 198.18.3.254 rtr eth0 198.18.4.254 ---- eth0 srv (httpd 198.18.4.2/24, gw .254)
const (
	rcliAddr = "198.18.3.1"
	rtrCli   = "198.18.3.254"
	rtrSrv   = "198.18.4.254"
	rsrvAddr = "198.18.4.2"
)

// startRoutedLab builds cli, rtr and srv and runs httpd in srv with the files.
func startRoutedLab(t *testing.T, files map[string]int) (*httpLab, *netlab.Host) {
	t.Helper()
	lab := netlab.NewT(t)
	l := &httpLab{cli: lab.MustAddHost(t, "cli"), srv: lab.MustAddHost(t, "srv"), root: t.TempDir(), sums: map[string]string{}}
	rtr := lab.MustAddHost(t, "rtr")
	// One queue on the poller's link, as in startLab.
	if _, err := lab.LinkWith(rtr, "eth0", l.srv, "eth0", netlab.LinkOptions{Queues: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.LinkWith(l.cli, "eth0", rtr, "eth1", netlab.LinkOptions{}); err != nil {
		t.Fatal(err)
	}
	up := map[*netlab.Host][]string{l.cli: {"eth0"}, rtr: {"eth0", "eth1"}, l.srv: {"eth0"}}
	for h, ifs := range up {
		for _, k := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
			if err := h.Sysctl(k, "1"); err != nil {
				t.Fatal(err)
			}
		}
		for _, i := range ifs {
			if err := h.SetUp(i); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := rtr.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	for _, a := range []struct {
		h       *netlab.Host
		ifname  string
		address string
	}{{l.cli, "eth0", rcliAddr + "/24"}, {rtr, "eth1", rtrCli + "/24"}, {rtr, "eth0", rtrSrv + "/24"}} {
		if err := a.h.AddAddr(a.ifname, a.address); err != nil {
			t.Fatal(err)
		}
	}
	for h, ifs := range up {
		for _, i := range ifs {
			if err := h.WaitOperUp(i, 5*time.Second); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := l.cli.AddRoute("198.18.4.0/24", rtrCli); err != nil {
		t.Fatal(err)
	}
	l.serve(t, files, config{iface: "eth0", addr: netip.MustParsePrefix(rsrvAddr + "/24"), gw: netip.MustParseAddr(rtrSrv),
		root: l.root, port: 80}, nil)
	return l, rtr
}

// nft runs nft with each argument list in h.
func nft(t *testing.T, h *netlab.Host, rules ...[]string) {
	t.Helper()
	for _, args := range rules {
		if out, err := h.Run(context.Background(), "nft", args...); err != nil {
			t.Fatalf("nft %v: %v: %s", args, err, out)
		}
	}
}

// nftCounter reads the packets of the named counter of table inet xn in h.
func nftCounter(t *testing.T, h *netlab.Host, name string) int {
	t.Helper()
	out, err := h.Run(context.Background(), "nft", "list", "counter", "inet", "xn", name)
	if err != nil {
		t.Fatalf("nft list counter %s: %v: %s", name, err, out)
	}
	m := regexp.MustCompile(`packets (\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("no packet count in %s", out)
	}
	n, _ := strconv.Atoi(string(m[1]))
	return n
}

// downloadLoweringMTU has curl in cli download 64m from srv and lowers rtr's MTU towards cli to 1280 once
// 8 MiB have arrived; it checks the file and returns the bytes curl had when the MTU went down. curl reads
// at most 32 MiB/s, so that the transfer is still running then on any machine.
func downloadLoweringMTU(t *testing.T, l *httpLab, rtr *netlab.Host) int64 {
	t.Helper()
	dst := filepath.Join(t.TempDir(), "got")
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := l.cli.Command(ctx, "curl", "-sS", "--max-time", "85", "--limit-rate", "32M", "-o", dst, "http://"+rsrvAddr+"/64m")
	var out bytes.Buffer // read after Wait only
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var at int64 = -1
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	for at < 0 {
		select {
		case err := <-done:
			t.Fatalf("curl ended before 8 MiB arrived: %v %s (tcp stats %v)", err, out.String(), nonZero(l.s.TCPStats()))
		case <-tick.C:
			if fi, err := os.Stat(dst); err == nil && fi.Size() >= 8<<20 {
				at = fi.Size()
				if err := rtr.SetMTU("eth1", 1280); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	if err := <-done; err != nil {
		t.Fatalf("curl: %v %s (tcp stats %v)", err, out.String(), nonZero(l.s.TCPStats()))
	}
	if got := fileSum(t, dst); got != l.sums["64m"] {
		t.Fatalf("download: sha256 %s, want %s", got, l.sums["64m"])
	}
	return at
}

// TestPathMTUDropsMidTransferVeth: the router's link towards curl goes from MTU 1500 to 1280 while httpd
// sends 64 MiB; the router's kernel answers the next full-sized segment with ICMP fragmentation needed
// (next-hop MTU 1280, RFC 1191), the connection's MSS drops to 1240, what was in flight is resent at that
// size, and the file arrives intact.
func TestPathMTUDropsMidTransferVeth(t *testing.T) {
	netlab.RequireTool(t, "curl")
	netlab.RequireTool(t, "nft")
	l, rtr := startRoutedLab(t, map[string]int{"64m": 64 << 20})
	// Count the router's frag-needed on their way out, so that the test knows the kernel sent them.
	nft(t, rtr, []string{"add", "table", "inet", "xn"},
		[]string{"add", "counter", "inet", "xn", "fragneeded"},
		[]string{"add", "chain", "inet", "xn", "out", "{ type filter hook output priority 0; }"},
		[]string{"add", "rule", "inet", "xn", "out", "icmp", "type", "destination-unreachable", "icmp", "code", "frag-needed", "counter", "name", "fragneeded"})
	at := downloadLoweringMTU(t, l, rtr)
	st := l.s.TCPStats()
	t.Logf("MTU lowered after %d bytes; router sent %d frag-needed; tcp stats %v", at, nftCounter(t, rtr, "fragneeded"), nonZero(st))
	if n := nftCounter(t, rtr, "fragneeded"); n == 0 {
		t.Fatalf("the router sent no fragmentation needed: the path MTU never bit")
	}
	if st[tcp.StatPMTUUpdates.String()] == 0 {
		t.Fatalf("no connection took the router's MTU (StatPMTUUpdates 0): %v", nonZero(st))
	}
}

// TestPathMTUBlackHoleVeth: the same with the router's ICMP dropped by nftables on its way out, an ICMP
// black hole (RFC 2923 §2.1): full-sized segments vanish without a word, and the transfer completes
// through packetization-layer PMTUD (RFC 4821) - RTOs of full-sized segments lower the MSS, and upward
// probes find the largest size that passes.
func TestPathMTUBlackHoleVeth(t *testing.T) {
	netlab.RequireTool(t, "curl")
	netlab.RequireTool(t, "nft")
	l, rtr := startRoutedLab(t, map[string]int{"64m": 64 << 20})
	nft(t, rtr, []string{"add", "table", "inet", "xn"},
		[]string{"add", "counter", "inet", "xn", "fragneeded"},
		[]string{"add", "chain", "inet", "xn", "out", "{ type filter hook output priority 0; }"},
		[]string{"add", "rule", "inet", "xn", "out", "icmp", "type", "destination-unreachable", "counter", "name", "fragneeded", "drop"})
	at := downloadLoweringMTU(t, l, rtr)
	st := l.s.TCPStats()
	dropped := nftCounter(t, rtr, "fragneeded")
	t.Logf("MTU lowered after %d bytes; %d ICMP dropped at the router; tcp stats %v", at, dropped, nonZero(st))
	if dropped == 0 {
		t.Fatalf("the router sent no ICMP to drop: the path MTU never bit")
	}
	if st[tcp.StatPMTUUpdates.String()] != 0 {
		t.Fatalf("%d ICMP-driven MSS updates through a black hole", st[tcp.StatPMTUUpdates.String()])
	}
	if st[tcp.StatMTUProbeLowered.String()] == 0 {
		t.Fatalf("the MSS was never lowered by RFC 4821 black-hole detection: %v", nonZero(st))
	}
}

// TestKeepAliveVanishedPeerVeth: a server connection on our stack with keep-alive (idle 2 s, interval
// 1 s, 3 probes) to a Linux client stays up while the client answers the probes, and ends with ETIMEDOUT
// once nftables in cli drops everything: 2 s + 3 x 1 s after the last segment heard, which the test
// bounds from below (a peer that answers is never given up) and above (with a second of slack for the
// busy machine).
func TestKeepAliveVanishedPeerVeth(t *testing.T) {
	netlab.RequireTool(t, "nft")
	const idle, interval, count = 2 * time.Second, time.Second, 3
	var ln *stack.TCPListener
	l := startLab(t, nil, func(s *stack.Stack) {
		var err error
		if ln, err = s.ListenTCP(netip.MustParseAddrPort(srvAddr + ":9")); err != nil {
			t.Fatal(err)
		}
	})
	defer ln.Close()
	type result struct {
		err error
		at  time.Time
	}
	res := make(chan result, 1)
	go func() {
		c, err := ln.AcceptTCP()
		if err != nil {
			res <- result{err: err}
			return
		}
		defer c.Close()
		c.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: idle, Interval: interval, Count: count})
		_, err = io.Copy(io.Discard, c)
		res <- result{err: fmt.Errorf("read: %w", err), at: time.Now()}
	}()
	l.dialFromCli(t, 9)
	// Alive: the Linux client answers the probes, which keep the connection up well past idle + count *
	// interval.
	select {
	case r := <-res:
		t.Fatalf("connection ended with a live peer: %v", r.err)
	case <-time.After(2 * (idle + count*interval)):
	}
	probes := l.s.TCPStat(tcp.StatKeepAliveProbes)
	if probes < 2 {
		t.Fatalf("%d keep-alive probes in %v of idle, want one every %v", probes, 2*(idle+count*interval), idle)
	}
	// Vanished: nothing in or out of cli any more. The last segment the server heard is the answer to its
	// last probe, at most one idle time ago.
	nft(t, l.cli, []string{"add", "table", "inet", "xn"},
		[]string{"add", "chain", "inet", "xn", "in", "{ type filter hook input priority 0; policy drop; }"},
		[]string{"add", "chain", "inet", "xn", "out", "{ type filter hook output priority 0; policy drop; }"})
	gone := time.Now()
	var r result
	select {
	case r = <-res:
	case <-time.After(3 * (idle + count*interval)):
		t.Fatalf("vanished peer not detected after %v (tcp stats %v)", 3*(idle+count*interval), nonZero(l.s.TCPStats()))
	}
	if !errors.Is(r.err, syscall.ETIMEDOUT) {
		t.Fatalf("connection ended with %v, want ETIMEDOUT", r.err)
	}
	took := r.at.Sub(gone)
	t.Logf("vanished peer detected after %v; %d probes while alive; tcp stats %v", took.Round(time.Millisecond), probes, nonZero(l.s.TCPStats()))
	// Detection comes count*interval after the first unanswered probe, which is sent at most idle after
	// the peer vanished (and no sooner than the last answer plus idle).
	if took < count*interval || took > idle+count*interval+time.Second {
		t.Fatalf("vanished peer detected after %v, want between %v and %v", took, count*interval, idle+count*interval+time.Second)
	}
	if n := l.s.TCPStat(tcp.StatKeepAliveTimeouts); n != 1 {
		t.Fatalf("%d keep-alive timeouts, want 1", n)
	}
}

// TestCurlIPv6Veth: Linux curl downloads 64 MiB from httpd over IPv6 (http://[2001:2:0:1::2]/, the
// neighbour found by NDP, MSS from the IPv6 MTU) and uploads 32 MiB, both intact.
func TestCurlIPv6Veth(t *testing.T) {
	netlab.RequireTool(t, "curl")
	l := startLabFamily(t, true, map[string]int{"64m": 64 << 20, "32m": 32 << 20}, nil)
	dst := filepath.Join(t.TempDir(), "got")
	url := "http://[" + srv6Addr + "]/"
	l.curl(t, "-6", "-g", "-o", dst, url+"64m")
	if got := fileSum(t, dst); got != l.sums["64m"] {
		t.Fatalf("download over IPv6: sha256 %s, want %s", got, l.sums["64m"])
	}
	if ans := l.curl(t, "-6", "-g", "-T", filepath.Join(l.root, "32m"), url+"upload"); ans != l.sums["32m"]+"\n" {
		t.Fatalf("upload over IPv6: server hashed %q, want %s", ans, l.sums["32m"])
	}
	// The connections were IPv6 ones: the Linux side's view of them.
	out, err := l.cli.Run(context.Background(), "ip", "-6", "neigh", "show", srv6Addr)
	if err != nil || len(out) == 0 {
		t.Fatalf("no NDP entry for %s in cli: %v %s", srv6Addr, err, out)
	}
	t.Logf("neighbour %s; tcp stats %v", out, nonZero(l.s.TCPStats()))
}
