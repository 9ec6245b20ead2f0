package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/netlab"
	"github.com/xdpnet/xdpnet/pipeline/nat"
	"github.com/xdpnet/xdpnet/poller"
)

// The test network: Linux hosts (their own stacks, default offloads) around natgw.
//
//	in  eth0 198.18.0.2/24 ---- ein [natgw] eout ---- rtr eth0 198.19.0.254/24, eth1 198.19.1.1/24 ---- srv eth0 198.19.1.2/24
//	    (default via .1)        198.18.0.1  198.19.0.1   (Linux router, no route to 198.18.0.0/24)      (default via 198.19.1.1)
//
// natgw: -inside ein=198.18.0.1/24 -outside eout=198.19.0.1/24 -gw 198.19.0.254 -forward tcp:8080=198.18.0.2:80
// -forward udp:5353=198.18.0.2:53. The outside cannot route to the inside network at all: whatever reaches
// an inside host from outside went through the NAT.
const (
	inAddr  = "198.18.0.2"
	gwIn    = "198.18.0.1"
	gwOut   = "198.19.0.1"
	rtrAddr = "198.19.0.254"
	srvAddr = "198.19.1.2"
)

type natLab struct {
	in, gw, rtr, srv *netlab.Host
	n                *nat.NAT
	p                *poller.Poller
}

func startNATLab(t *testing.T, extra ...string) *natLab {
	t.Helper()
	queues := 1
	if len(extra) == 2 && extra[0] == "-queues" {
		queues = 2
	}
	lab := netlab.NewT(t)
	l := &natLab{in: lab.MustAddHost(t, "in"), gw: lab.MustAddHost(t, "gw"), rtr: lab.MustAddHost(t, "rtr"), srv: lab.MustAddHost(t, "srv")}
	// As many queues as natgw runs: a veth with more would steer flows to a queue nobody reads.
	one := netlab.LinkOptions{Queues: queues}
	for _, p := range []struct {
		a     *netlab.Host
		aIf   string
		b     *netlab.Host
		bIf   string
		queue bool
	}{{l.in, "eth0", l.gw, "ein", true}, {l.gw, "eout", l.rtr, "eth0", true}, {l.rtr, "eth1", l.srv, "eth0", false}} {
		if _, err := lab.LinkWith(p.a, p.aIf, p.b, p.bIf, one); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range []*netlab.Host{l.in, l.gw, l.rtr, l.srv} {
		for _, k := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
			if err := h.Sysctl(k, "1"); err != nil {
				t.Fatal(err)
			}
		}
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(l.in.AddAddr("eth0", inAddr+"/24"))
	must(l.rtr.AddAddr("eth0", rtrAddr+"/24"))
	must(l.rtr.AddAddr("eth1", "198.19.1.1/24"))
	must(l.srv.AddAddr("eth0", srvAddr+"/24"))
	must(l.rtr.Sysctl("net.ipv4.ip_forward", "1"))
	for _, e := range []struct {
		h   *netlab.Host
		if_ string
	}{{l.in, "eth0"}, {l.gw, "ein"}, {l.gw, "eout"}, {l.rtr, "eth0"}, {l.rtr, "eth1"}, {l.srv, "eth0"}} {
		must(e.h.SetUp(e.if_))
	}
	for _, e := range []struct {
		h   *netlab.Host
		if_ string
	}{{l.in, "eth0"}, {l.gw, "ein"}, {l.gw, "eout"}, {l.rtr, "eth0"}, {l.rtr, "eth1"}, {l.srv, "eth0"}} {
		must(e.h.WaitOperUp(e.if_, 5*time.Second))
	}
	must(l.in.AddRoute("default", gwIn))
	must(l.srv.AddRoute("default", "198.19.1.1"))

	cfg, err := parseFlags(append([]string{"-inside", "ein=" + gwIn + "/24", "-outside", "eout=" + gwOut + "/24", "-gw", rtrAddr,
		"-forward", "tcp:8080=" + inAddr + ":80", "-forward", "udp:5353=" + inAddr + ":53"}, extra...), os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	ready := make(chan struct{})
	go func() {
		done <- run(ctx, cfg, l.gw.Do, func(n *nat.NAT, p *poller.Poller) { l.n, l.p = n, p; close(ready) })
	}()
	select {
	case <-ready:
	case err := <-done:
		cancel()
		t.Fatalf("natgw: %v", err)
	case <-time.After(90 * time.Second): // generous: building the UMEMs is slow under -race on a loaded host
		cancel()
		t.Fatal("natgw did not start")
	}
	var once sync.Once
	t.Cleanup(func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("natgw: %v", err)
			}
		})
	})
	return l
}

// httpServer starts python's http.server in h on addr:port serving dir, and returns it; its log names
// every client address.
func httpServer(t *testing.T, h *netlab.Host, addr string, port int) *netlab.Proc {
	t.Helper()
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "hello"), []byte("hello through the NAT\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 16<<20)
	rand.NewChaCha8([32]byte{7}).Read(big)
	if err := os.WriteFile(filepath.Join(dir, "big"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	// http.server with a listen backlog of 128 instead of socketserver's 5, which would drop the SYNs of
	// 50 parallel connections and make the test wait for their retransmission.
	p, err := h.Start("/usr/bin/python3", "-u", "-c", `
import functools, http.server, sys
class Server(http.server.ThreadingHTTPServer):
    request_queue_size = 128
handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=sys.argv[3])
srv = Server((sys.argv[1], int(sys.argv[2])), handler)
print("Serving HTTP", flush=True)
srv.serve_forever()
`, addr, fmt.Sprint(port), dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Stop(time.Second) })
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(string(p.Output()), "Serving HTTP") {
		if time.Now().After(deadline) {
			t.Fatalf("http.server did not start: %s", p.Output())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return p
}

func run2(t *testing.T, h *netlab.Host, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := h.Command(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %v in %s: %v\n%s%s", name, args, h.Name(), err, out.String(), errb.String())
	}
	return out.String()
}

func (l *natLab) logStats(t *testing.T) {
	st := l.n.Stats()
	t.Logf("nat: translated %d created %d icmp errors %d checksums completed %d; conntrack entries %d inserted %d clash %d refused %d",
		st.Translated, st.Created, st.ICMPErrors, st.CsumCompleted, st.Conntrack.Entries, st.Conntrack.Inserted,
		st.Conntrack.Clash, st.Conntrack.Refused)
}

// TestNATGatewayVeth runs what a NAT gateway's users do, with Linux hosts on both sides.
func TestNATGatewayVeth(t *testing.T) { testNATGateway(t) }

// TestNATGatewayTwoQueuesVeth is the same with two queues on every veth and two poller goroutines: the
// Linux peers spread flows over both, so the two directions of many connections are handled by different
// goroutines over the one table.
func TestNATGatewayTwoQueuesVeth(t *testing.T) { testNATGateway(t, "-queues", "2") }

func testNATGateway(t *testing.T, extra ...string) {
	netlab.RequireTool(t, "curl")
	netlab.RequireTool(t, "/usr/bin/python3")
	netlab.RequireTool(t, "ping")
	netlab.RequireTool(t, "traceroute")
	l := startNATLab(t, extra...)
	defer l.logStats(t)
	if len(extra) > 0 {
		// Both queues must have carried traffic, or the test proves nothing about sharing the table.
		defer func() {
			for _, q := range l.p.Stats().Queues {
				var rx uint64
				for _, p := range q.Ports {
					rx += p.RxPackets
				}
				t.Logf("queue %d received %d packets", q.Queue, rx)
				if rx == 0 {
					t.Errorf("queue %d received nothing", q.Queue)
				}
			}
		}()
	}
	srv := httpServer(t, l.srv, srvAddr, 8000)

	t.Run("CurlSeesGatewayAddress", func(t *testing.T) {
		out := run2(t, l.in, "curl", "-sS", "--max-time", "20", "http://"+srvAddr+":8000/hello")
		if out != "hello through the NAT\n" {
			t.Fatalf("curl got %q", out)
		}
		// The server logs its client: it must be the gateway's outside address, never the inside host.
		log := string(srv.Output())
		if !strings.Contains(log, gwOut+" - - ") || strings.Contains(log, inAddr) {
			t.Fatalf("server log does not show %s as the client:\n%s", gwOut, log)
		}
	})

	t.Run("Download16MiB", func(t *testing.T) {
		// Every segment's checksum rewritten (and completed: the server's veth leaves them partial); the
		// content must arrive intact.
		out := run2(t, l.in, "sh", "-c", "curl -sS --max-time 60 http://"+srvAddr+":8000/big | sha256sum")
		big := make([]byte, 16<<20)
		rand.NewChaCha8([32]byte{7}).Read(big)
		if want := fmt.Sprintf("%x", sha256.Sum256(big)); !strings.HasPrefix(out, want) {
			t.Fatalf("sha256 of the download %q, want %s", out, want)
		}
	})

	t.Run("Parallel50TCP", func(t *testing.T) {
		args := []string{"-sS", "--max-time", "60", "--parallel", "--parallel-max", "50", "--parallel-immediate", "-w", "%{http_code}\\n"}
		for range 50 {
			args = append(args, "-o", "/dev/null", "-H", "Connection: close", "http://"+srvAddr+":8000/hello")
		}
		before := l.n.Stats().Conntrack.Inserted
		out := run2(t, l.in, "curl", args...)
		if n := strings.Count(out, "200\n"); n != 50 {
			t.Fatalf("%d of 50 parallel requests succeeded:\n%s", n, out)
		}
		if n := l.n.Stats().Conntrack.Inserted - before; n < 50 {
			t.Fatalf("%d connections tracked for 50 parallel requests", n)
		}
		if n := strings.Count(string(srv.Output()), gwOut+" - - "); n < 51 {
			t.Fatalf("server logged %d requests from %s, want 51", n, gwOut)
		}
	})

	t.Run("UDPRequestReply", func(t *testing.T) {
		// The server answers each datagram with the address it came from.
		echo, err := l.srv.Start("/usr/bin/python3", "-u", "-c", `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("`+srvAddr+`", 7777))
print("ready", flush=True)
while True:
    d, a = s.recvfrom(2048)
    s.sendto(("%s:%d %s" % (a[0], a[1], d.decode())).encode(), a)
`)
		if err != nil {
			t.Fatal(err)
		}
		defer echo.Stop(time.Second)
		for !strings.Contains(string(echo.Output()), "ready") {
			time.Sleep(20 * time.Millisecond)
		}
		out := run2(t, l.in, "/usr/bin/python3", "-c", `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for i in range(5):
    s.sendto(b"ping%d" % i, ("`+srvAddr+`", 7777))
    try:
        print(s.recvfrom(2048)[0].decode())
        break
    except socket.timeout:
        pass
`)
		if !strings.HasPrefix(out, gwOut+":") || !strings.Contains(out, " ping") {
			t.Fatalf("UDP reply %q: want the server to have seen %s", out, gwOut)
		}
	})

	t.Run("UDPFragments", func(t *testing.T) {
		// 4000-byte datagrams both ways: Linux fragments them (MTU 1500), natgw translates the first
		// fragment by its ports and the later ones through its fragment cache, the peers reassemble.
		echo, err := l.srv.Start("/usr/bin/python3", "-u", "-c", `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("`+srvAddr+`", 7778))
print("ready", flush=True)
while True:
    d, a = s.recvfrom(65535)
    s.sendto(("%s %d " % (a[0], len(d))).encode() + b"y" * 4000, a)
`)
		if err != nil {
			t.Fatal(err)
		}
		defer echo.Stop(time.Second)
		for !strings.Contains(string(echo.Output()), "ready") {
			time.Sleep(20 * time.Millisecond)
		}
		before := l.n.Stats().Fragments
		out := run2(t, l.in, "/usr/bin/python3", "-c", `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, 10, 0)  # IP_MTU_DISCOVER = IP_PMTUDISC_DONT: fragment, no DF
s.settimeout(2)
for i in range(5):
    s.sendto(b"x" * 4000, ("`+srvAddr+`", 7778))
    try:
        d = s.recvfrom(65535)[0]
        print(d[:24].decode().split(" ")[0], d[:24].decode().split(" ")[1], len(d))
        break
    except socket.timeout:
        pass
`)
		f := strings.Fields(out)
		if n := 0; len(f) == 3 {
			n, _ = strconv.Atoi(f[2])
			f[2] = strconv.FormatBool(n > 4000)
		}
		if len(f) != 3 || f[0] != gwOut || f[1] != "4000" || f[2] != "true" {
			t.Fatalf("fragmented UDP through the NAT: %q, want the server to see %s and 4000 bytes, and a 4000+ byte answer", out, gwOut)
		}
		if n := l.n.Stats().Fragments - before; n < 4 {
			t.Fatalf("%d later fragments translated, want at least 4 (two each way)", n)
		}
	})

	t.Run("Ping", func(t *testing.T) {
		out := run2(t, l.in, "ping", "-c", "3", "-i", "0.2", "-W", "2", srvAddr)
		if !strings.Contains(out, "3 received") {
			t.Fatalf("ping through the NAT:\n%s", out)
		}
	})

	t.Run("Traceroute", func(t *testing.T) {
		// Hop 1 is the gateway itself, hop 2 the Linux router (its Time Exceeded goes to the gateway's
		// outside address and must be translated back to the inside host), hop 3 the server.
		out := run2(t, l.in, "traceroute", "-n", "-q", "1", "-N", "1", "-w", "3", "-m", "5", srvAddr)
		lines := strings.Split(strings.TrimSpace(out), "\n")
		want := []string{gwIn, rtrAddr, srvAddr}
		if len(lines) < 4 {
			t.Fatalf("traceroute:\n%s", out)
		}
		for i, w := range want {
			if f := strings.Fields(lines[i+1]); len(f) < 2 || f[1] != w {
				t.Fatalf("traceroute hop %d is not %s:\n%s", i+1, w, out)
			}
		}
		if l.n.Stats().ICMPErrors == 0 {
			t.Fatal("no ICMP error translated")
		}
	})

	t.Run("PortForwardTCP", func(t *testing.T) {
		inside := httpServer(t, l.in, inAddr, 80)
		out := run2(t, l.srv, "curl", "-sS", "--max-time", "20", "http://"+gwOut+":8080/hello")
		if out != "hello through the NAT\n" {
			t.Fatalf("curl to the forwarded port got %q", out)
		}
		if log := string(inside.Output()); !strings.Contains(log, srvAddr+" - - ") {
			t.Fatalf("inside server did not see the outside client %s:\n%s", srvAddr, log)
		}
	})

	t.Run("Hairpin", func(t *testing.T) {
		// The inside host reaches its own server through the outside address and the forwarded port; the
		// server sees the gateway's inside address as the client.
		inside := httpServer(t, l.in, inAddr, 80)
		out := run2(t, l.in, "curl", "-sS", "--max-time", "20", "http://"+gwOut+":8080/hello")
		if out != "hello through the NAT\n" {
			t.Fatalf("curl to the forwarded port from inside got %q", out)
		}
		if log := string(inside.Output()); !strings.Contains(log, gwIn+" - - ") {
			t.Fatalf("inside server did not see the gateway's inside address %s:\n%s", gwIn, log)
		}
	})

	t.Run("PortForwardUDP", func(t *testing.T) {
		echo, err := l.in.Start("/usr/bin/python3", "-u", "-c", `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("`+inAddr+`", 53))
print("ready", flush=True)
while True:
    d, a = s.recvfrom(2048)
    s.sendto(b"inside saw " + a[0].encode(), a)
`)
		if err != nil {
			t.Fatal(err)
		}
		defer echo.Stop(time.Second)
		for !strings.Contains(string(echo.Output()), "ready") {
			time.Sleep(20 * time.Millisecond)
		}
		out := run2(t, l.srv, "/usr/bin/python3", "-c", `
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.settimeout(2)
for i in range(5):
    s.sendto(b"q", ("`+gwOut+`", 5353))
    try:
        d, a = s.recvfrom(2048)
        print(d.decode(), a[0], a[1])
        break
    except socket.timeout:
        pass
`)
		if want := "inside saw " + srvAddr + " " + gwOut + " 5353"; strings.TrimSpace(out) != want {
			t.Fatalf("UDP through the forward: %q, want %q", out, want)
		}
	})

	t.Run("NoWayIn", func(t *testing.T) {
		// The router is told the inside network is behind the gateway; still nothing it sends gets in.
		if err := l.rtr.AddRoute("198.18.0.0/24", gwOut); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if out, err := l.rtr.Command(ctx, "ping", "-c", "2", "-i", "0.2", "-W", "1", inAddr).CombinedOutput(); err == nil {
			t.Fatalf("ping from outside reached the inside host:\n%s", out)
		}
		if d := l.unsolicited(); d == 0 {
			t.Fatal("no nat_unsolicited drops counted")
		}
	})
}

func (l *natLab) unsolicited() uint64 {
	return l.p.Stats().DropsByName()[nat.DropUnsolicited.String()]
}

func TestFlagErrors(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "both -inside and -outside are required"},
		{[]string{"-inside", "eth1", "-outside", "eth0=198.19.0.1/24"}, "one IPv4 address"},
		{[]string{"-inside", "eth1=198.18.0.1/24", "-outside", "eth1=198.19.0.1/24"}, "give two interfaces"},
		{[]string{"-inside", "eth1=198.18.0.1/16", "-outside", "eth0=198.18.5.1/24"}, "overlap"},
		{[]string{"-inside", "eth1=198.18.0.1/24", "-outside", "eth0=198.19.0.1/24", "-gw", "198.20.0.1"}, "not on the outside network"},
		{[]string{"-inside", "eth1=198.18.0.1/24", "-outside", "eth0=198.19.0.1/24", "-forward", "tcp:80"}, "PROTO:PORT=ADDR:PORT"},
		{[]string{"-inside", "eth1=198.18.0.1/24", "-outside", "eth0=198.19.0.1/24", "-forward", "tcp:80=198.19.0.5:80"}, "not on the inside network"},
		{[]string{"-inside", "eth1=198.18.0.1/24", "-outside", "eth0=198.19.0.1/24", "-max-conns", "0"}, "-max-conns"},
		{[]string{"-inside", "eth1=198.18.0.1/24", "-outside", "eth0=198.19.0.1/24", "-queues", "0"}, "-queues"},
		{[]string{"-inside", "eth1=198.18.0.1/24", "-outside", "eth0=198.19.0.1/24", "extra"}, "unexpected argument"},
	} {
		_, err := parseFlags(c.args, os.Stderr)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: error %v, want one saying %q", c.args, err, c.want)
		}
	}
	c, err := parseFlags([]string{"-inside", "eth1=198.18.0.1/24", "-outside", "eth0=198.19.0.1/24", "-gw", "198.19.0.254",
		"-forward", "tcp:8080=198.18.0.2:80", "-forward", "udp:53=198.18.0.3:53"}, os.Stderr)
	if err != nil || len(c.forwards) != 2 || c.forwards[1].Addr != netip.MustParseAddr("198.19.0.1") || c.forwards[0].Interface != "eth0" {
		t.Fatalf("%+v %v", c, err)
	}
}

// TestNATFloodVeth: a TCP connection through natgw is established, then the inside floods 100 000 UDP flows
// (two source addresses, 50 000 source ports each, each to a destination port of its own so that the
// external ports towards the server do not run out first; nobody answers them) at the default 65 536-entry
// table.
// The table stays within its bound by dropping the oldest unreplied flows early (counted), and the
// established connection still carries data both ways. (Refusal, when only assured connections are left
// to drop, is shown by pipeline/nat's TestFloodAssured: a Linux peer cannot cheaply complete 100 000
// handshakes here.)
func TestNATFloodVeth(t *testing.T) {
	netlab.RequireTool(t, "hping3")
	netlab.RequireTool(t, "/usr/bin/python3")
	l := startNATLab(t)
	defer l.logStats(t)
	echo, err := l.srv.Start("/usr/bin/python3", "-u", "-c", `
import socket
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("`+srvAddr+`", 9000))
s.listen(4)
print("ready", flush=True)
c, a = s.accept()
print("client", a[0], flush=True)
while True:
    d = c.recv(4096)
    if not d:
        break
    c.sendall(d)
`)
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Stop(time.Second)
	for !strings.Contains(string(echo.Output()), "ready") {
		time.Sleep(20 * time.Millisecond)
	}
	var conn net.Conn
	if err := l.in.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", srvAddr+":9000", 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	roundTrip := func(msg string) {
		t.Helper()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write([]byte(msg)); err != nil {
			t.Fatalf("write %q: %v", msg, err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(conn, buf); err != nil || string(buf) != msg {
			t.Fatalf("echo of %q: %q %v", msg, buf, err)
		}
	}
	roundTrip("before the flood")

	for _, src := range []string{"198.18.0.2", "198.18.0.3"} {
		out, err := l.in.Command(context.Background(), "hping3", "--udp", "-q", "-c", "50000", "-i", "u10",
			"-a", src, "-s", "10000", "-p", "++1000", srvAddr).CombinedOutput()
		if err != nil && !strings.Contains(string(out), "packets transmitted") {
			t.Fatalf("hping3: %v\n%s", err, out)
		}
	}
	time.Sleep(200 * time.Millisecond) // the last frames through the gateway
	roundTrip("after the flood")

	st := l.n.Stats().Conntrack
	t.Logf("conntrack: entries %d inserted %d early drops %d refused %d assured %d", st.Entries, st.Inserted,
		st.EarlyDrop, st.Refused, st.Assured)
	if st.Entries > 65536 {
		t.Fatalf("%d entries in a 65 536-entry table", st.Entries)
	}
	// hping3 may lose some of its 100 000 frames on a loaded host; at least the table must have filled.
	if st.EarlyDrop == 0 || st.Inserted != st.Entries+st.EarlyDrop+st.Expired {
		t.Fatalf("no early drops, or the counters disagree: %+v", st)
	}
	if !strings.Contains(string(echo.Output()), "client "+gwOut) {
		t.Fatalf("the echo server did not see the gateway's address: %s", echo.Output())
	}
}
