//go:build stress

package adversary

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/netlab"
)

// The router lab: gen (the legitimate client, and the attacker's interface) - xdpfwd - sink.
//
//	gen eth0 198.18.0.2/15 ---- r0 198.18.0.1/15 [xdpfwd] 198.19.240.1/20 r1 ---- eth0 198.19.240.2/20 sink
//
// r0's /15 makes every spoofed sender of 198.18.0.0/15 learnable, so the neighbour table's collector is
// what bounds it; r1's /20 has 4092 absent hosts.
const (
	genAddr  = "198.18.0.2"
	r0Addr   = "198.18.0.1"
	r1Addr   = "198.19.240.1"
	sinkAddr = "198.19.240.2"
	sinkNet  = "198.19.240.0/20"
	metrics  = "127.0.0.1:9477"
	// Default of stack.Config.NeighbourGCThresh3.
	neighbourBound = 1024
)

type routerLab struct {
	gen, router, sink *netlab.Host
	xdpfwd            *netlab.Proc
}

func newRouterLab(t *testing.T) *routerLab {
	t.Helper()
	netlab.RequirePrivileges(t)
	lab := netlab.NewT(t)
	l := &routerLab{gen: lab.MustAddHost(t, "gen"), router: lab.MustAddHost(t, "rtr"), sink: lab.MustAddHost(t, "sink")}
	// One queue per veth end, as xdpfwd runs one queue by default.
	if _, err := lab.LinkWith(l.gen, "eth0", l.router, "r0", netlab.LinkOptions{Queues: 1}); err != nil {
		t.Fatal(err)
	}
	if _, err := lab.LinkWith(l.router, "r1", l.sink, "eth0", netlab.LinkOptions{Queues: 1}); err != nil {
		t.Fatal(err)
	}
	prepare(t, l.gen, l.router, l.sink)
	if err := l.router.Sysctl("net.ipv4.ip_forward", "0"); err != nil {
		t.Fatal(err)
	}
	addrUp(t, l.gen, "eth0", genAddr+"/15")
	addrUp(t, l.router, "r0", r0Addr+"/15")
	addrUp(t, l.router, "r1", r1Addr+"/20")
	addrUp(t, l.sink, "eth0", sinkAddr+"/20")
	waitUp(t, l.gen, "eth0", l.router, "r0", l.router, "r1", l.sink, "eth0")
	// sink's /20 lies inside gen's /15: a more specific route sends it through the router.
	if err := l.gen.AddRoute(sinkNet, r0Addr); err != nil {
		t.Fatal(err)
	}
	if err := l.sink.AddRoute("default", r1Addr); err != nil {
		t.Fatal(err)
	}
	l.xdpfwd = startProc(t, l.router, "xdpfwd running", xdpfwdBin, "run",
		"--iface", "r0="+r0Addr+"/15", "--iface", "r1="+r1Addr+"/20", "--metrics", metrics)
	startProc(t, l.sink, "", "ncat", "-l", "-k", "8080")
	time.Sleep(300 * time.Millisecond) // ncat's listen
	run(t, l.gen, 10*time.Second, "ping", "-n", "-c", "3", "-i", "0.2", sinkAddr)
	connectWithin(t, l.gen, sinkAddr+":8080", time.Second)
	return l
}

func (l *routerLab) metrics(t *testing.T) string {
	t.Helper()
	return run(t, l.router, 10*time.Second, "curl", "-sS", "http://"+metrics+"/metrics")
}

// after is the end of every router attack: the legitimate client's new connections and pings go through,
// the neighbour table is within its bound, the counters named in want are non-zero (in the metrics,
// xdpnet_NAME), memory settles under the bound, and xdpfwd exits with exact frame accounting.
func (l *routerLab) after(t *testing.T, want ...string) string {
	t.Helper()
	connectWithin(t, l.gen, sinkAddr+":8080", time.Second)
	m := l.metrics(t)
	if n := metric(m, "xdpnet_neighbours"); n > neighbourBound {
		t.Errorf("%v neighbour entries, over the bound %d", n, neighbourBound)
	}
	for _, w := range want {
		if metric(m, w) == 0 {
			t.Errorf("counter %s is zero or missing in xdpfwd's metrics", w)
		}
	}
	settleRSS(t, l.xdpfwd, xdpfwdRSSLimit)
	connectWithin(t, l.gen, sinkAddr+":8080", time.Second)
	out := run(t, l.gen, 20*time.Second, "ping", "-n", "-c", "5", "-i", "0.2", sinkAddr)
	if !strings.Contains(out, " 0% packet loss") {
		t.Errorf("after the settle, ping lost packets:\n%s", out)
	}
	return stopChecked(t, l.xdpfwd, "xdpfwd")
}

// arpFlood sends n ARP messages from n spoofed senders of 198.18.0.0/15 (198.18.1.0 on, each with its own
// MAC), alternately requests for the router's address and replies to it, from gen's eth0 through a raw
// AF_PACKET socket.
const arpFlood = `
import socket, struct, sys
n = int(sys.argv[1]); router = socket.inet_aton(sys.argv[2])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("eth0", 0))
base = struct.unpack("!I", socket.inet_aton("198.18.1.0"))[0]
bc = b"\xff" * 6
for i in range(n):
    mac = b"\x02\x5f" + struct.pack("!I", i)
    sip = struct.pack("!I", base + i)
    op = 1 + (i & 1)
    arp = struct.pack("!HHBBH", 1, 0x0800, 6, 4, op) + mac + sip + (b"\x00" * 6 if op == 1 else bc) + router
    frame = bc + mac + b"\x08\x06" + arp + b"\x00" * 18
    while True:
        try:
            s.send(frame)
            break
        except BlockingIOError:
            pass
        except OSError as e:
            if e.errno != 105: raise  # ENOBUFS: the qdisc is full, try again
print("sent", n)
`

// TestARPFloodSpoofedSenders: 100 000 ARP requests and replies from spoofed senders, all on the router's
// network, while gen pings the sink through it. The table stays within gc_thresh3, the legitimate next hops
// keep working, and refusals and removals are counted.
func TestARPFloodSpoofedSenders(t *testing.T) {
	l := newRouterLab(t)
	stop := pinger(t, l.gen, sinkAddr)
	out := run(t, l.gen, 5*time.Minute, python, "-c", arpFlood, "100000", r0Addr)
	if !strings.Contains(out, "sent 100000") {
		t.Fatalf("flood: %s", out)
	}
	if loss := stop(); loss > 10 {
		t.Errorf("the legitimate client lost %.1f%% of its pings during the flood", loss)
	}
	sum := l.after(t, "xdpnet_stack_neighbours_refused_total", "xdpnet_stack_neighbours_removed_total")
	t.Logf("xdpfwd summary:\n%s", tail([]byte(sum), 40))
	if n := counter(sum, "stack", "arp_replies_out"); n < 1000 {
		t.Errorf("only %d ARP replies out: the requests for our address were not answered", n)
	}
}

// udpSweep sends UDP datagrams to every host of 198.19.240.0/20 but ours and the sink's, round after
// round, for the given seconds.
const udpSweep = `
import socket, struct, sys, time
secs = float(sys.argv[1])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setblocking(False)
base = struct.unpack("!I", socket.inet_aton("198.19.240.0"))[0]
dsts = [socket.inet_ntoa(struct.pack("!I", base + i)) for i in range(3, 4095)]
end = time.time() + secs; n = 0
while time.time() < end:
    for d in dsts:
        try:
            s.sendto(b"x" * 64, (d, 9)); n += 1
        except OSError:
            pass
print("sent", n)
`

// TestAbsentHostsSweep: 60 s of datagrams to every absent host of a connected /20. Held packets stay
// within their per-queue bound, failed and refused next hops are counted, and the sink stays reachable.
func TestAbsentHostsSweep(t *testing.T) {
	l := newRouterLab(t)
	stop := pinger(t, l.gen, sinkAddr)
	out := run(t, l.gen, 3*time.Minute, python, "-c", udpSweep, "60")
	if !strings.HasPrefix(out, "sent ") {
		t.Fatalf("sweep: %s", out)
	}
	if loss := stop(); loss > 10 {
		t.Errorf("the legitimate client lost %.1f%% of its pings during the sweep", loss)
	}
	m := l.metrics(t)
	for _, reason := range []string{"neighbour_held_limit", "neighbour_queue_full", "neighbour_failed", "neighbour_table_full"} {
		t.Logf("drops %s: %v", reason, metric(m, fmt.Sprintf(`xdpnet_drops_total{reason=%q}`, reason)))
	}
	sum := l.after(t, "xdpnet_stack_neighbours_failed_total", "xdpnet_stack_neighbours_removed_total")
	t.Logf("xdpfwd summary:\n%s", tail([]byte(sum), 40))
	if counter(sum, "drop", "neighbour_failed")+counter(sum, "drop", "neighbour_held_limit")+counter(sum, "drop", "neighbour_table_full") == 0 {
		t.Errorf("no drop names the absent hosts (neighbour_failed, neighbour_held_limit, neighbour_table_full)")
	}
}
