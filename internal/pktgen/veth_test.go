package pktgen

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/internal/netlab"
	"github.com/xdpnet/xdpnet/poller"
	"github.com/xdpnet/xdpnet/proto"
)

// pair builds two hosts joined by a one-queue veth: g (198.18.0.1) and r (198.18.0.2).
func pair(t *testing.T) (g, r *netlab.Host, v *netlab.Veth) {
	t.Helper()
	lab := netlab.NewT(t)
	g, r = lab.MustAddHost(t, "gen"), lab.MustAddHost(t, "rcv")
	v, err := lab.LinkWith(g, "eth0", r, "eth0", netlab.LinkOptions{Queues: 1})
	if err != nil {
		t.Fatal(err)
	}
	for h, a := range map[*netlab.Host]string{g: "198.18.0.1/24", r: "198.18.0.2/24"} {
		// No IPv6: its router solicitations and MLD reports would be counted by exact-count checks.
		if err := h.Sysctl("net.ipv6.conf.eth0.disable_ipv6", "1"); err != nil {
			t.Fatal(err)
		}
		if err := h.AddAddr("eth0", a); err != nil {
			t.Fatal(err)
		}
		if err := h.SetUp("eth0"); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range []*netlab.Host{g, r} {
		if err := h.WaitOperUp("eth0", 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return g, r, v
}

// start makes a poller in h (New inside Do, because it looks up interfaces and binds in the calling thread's
// namespace) and runs it from an ordinary goroutine; the returned stop cancels it, waits and checks the frames.
// Stop a Generator (Generator.Stop) before its poller: the poller's drain waits for a quiet queue.
func start(t *testing.T, h *netlab.Host, cfg poller.Config) (p *poller.Poller, stop func()) {
	t.Helper()
	var err error
	t0 := time.Now()
	for {
		err = h.Do(func() error {
			var err error
			p, err = poller.New(cfg)
			return err
		})
		// A queue just released by a closed poller stays bound until the kernel frees the old XSKMAP (RCU,
		// after the last reference goes): retry EBUSY for a while.
		if err == nil || !errors.Is(err, unix.EBUSY) || time.Since(t0) > 5*time.Second {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err == nil && time.Since(t0) > 20*time.Millisecond {
		t.Logf("queue was busy for %v after the previous poller closed", time.Since(t0).Round(time.Millisecond))
	}
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var runErr error
	wg.Add(1)
	go func() { defer wg.Done(); runErr = p.Run(ctx) }()
	once := sync.Once{}
	stop = func() {
		once.Do(func() {
			cancel()
			wg.Wait()
			if runErr != nil {
				t.Errorf("Run: %v", runErr)
			}
			if err := p.CheckFrames(); err != nil {
				t.Errorf("frames: %v", err)
			}
			p.Close()
		})
	}
	t.Cleanup(stop)
	return p, stop
}

func genConfig(v *netlab.Veth) Config {
	return Config{SrcMAC: proto.MAC(v.A.HWAddr()), DstMAC: proto.MAC(v.B.HWAddr()),
		Src: netip.MustParseAddrPort("198.18.0.1:4000"), Dst: netip.MustParseAddrPort("198.18.0.2:9")}
}

// TestGeneratorToUDPSocketVeth sends a counted, rate-limited stream over 8 flows to a Linux UDP socket in the
// other namespace: the kernel accepts every frame (so both checksums are right), the socket gets exactly Count
// datagrams with the expected payload, evenly over the 8 source ports.
func TestGeneratorToUDPSocketVeth(t *testing.T) {
	g, r, v := pair(t)
	var conn *net.UDPConn
	if err := r.Do(func() error {
		var err error
		conn, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(198, 18, 0, 2), Port: 9})
		if err != nil {
			return err
		}
		rc, _ := conn.SyscallConn()
		rc.Control(func(fd uintptr) { err = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20) })
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	cfg := genConfig(v)
	cfg.Flows, cfg.Count, cfg.Rate = 8, 4000, 200_000
	gen, err := NewGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	pc := poller.Config{Interfaces: []string{"eth0"}, NewHandler: gen.NewHandler}
	SizeFor(&pc)
	p, stop := start(t, g, pc)

	want := gen.Template(0)[hdrLen:]
	ports := map[int]int{}
	buf := make([]byte, 2048)
	got := 0
	for {
		conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		n, from, err := conn.ReadFromUDPAddrPort(buf)
		if err != nil {
			break
		}
		if string(buf[:n]) != string(want) {
			t.Fatalf("datagram %d payload %x, want %x", got, buf[:n], want)
		}
		if from.Addr() != netip.MustParseAddr("198.18.0.1") {
			t.Fatalf("datagram from %v", from)
		}
		ports[int(from.Port())]++
		got++
	}
	stop()
	st := p.Stats()
	if got != 4000 || gen.Sent() != 4000 || st.Ports[0].TxPackets != 4000 {
		t.Fatalf("socket got %d datagrams; generator sent %d, poller TX %d; want 4000 (drops %v)", got, gen.Sent(), st.Ports[0].TxPackets, st.DropsByName())
	}
	if len(ports) != 8 {
		t.Fatalf("source ports %v, want 8 flows", ports)
	}
	for port, n := range ports {
		if port < 4000 || port >= 4008 || n != 500 {
			t.Fatalf("source ports %v, want 500 each from 4000..4007", ports)
		}
	}
}

// TestGeneratorToSinkVeth runs a generator in one namespace and a Sink in the other, both on the poller: with
// a count and a rate the sink gets exactly that count; unlimited, the sink sees traffic and never more than was
// sent.
func TestGeneratorToSinkVeth(t *testing.T) {
	g, r, v := pair(t)
	sink := NewSink()
	sp, stopSink := start(t, r, poller.Config{Interfaces: []string{"eth0"}, NewHandler: sink.NewHandler})

	cfg := genConfig(v)
	cfg.Count, cfg.Rate, cfg.FrameSize = 3000, 300_000, 128
	gen, _ := NewGenerator(cfg)
	pc := poller.Config{Interfaces: []string{"eth0"}, NewHandler: gen.NewHandler}
	SizeFor(&pc)
	_, stopGen := start(t, g, pc)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if n, _ := sink.Received(); n >= 3000 {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // anything extra would show now
	gen.Stop()
	stopGen()
	if n, b := sink.Received(); n != 3000 || b != 3000*124 {
		t.Fatalf("sink received %d packets, %d bytes; want 3000 and %d (generator sent %d)", n, b, 3000*124, gen.Sent())
	}

	cfg.Count, cfg.Rate, cfg.FrameSize = 0, 0, 64
	fast, _ := NewGenerator(cfg)
	pc.NewHandler = fast.NewHandler
	_, stopFast := start(t, g, pc)
	n0, _ := sink.Received()
	time.Sleep(300 * time.Millisecond)
	fast.Stop()
	stopFast()
	time.Sleep(50 * time.Millisecond)
	n1, _ := sink.Received()
	stopSink()
	if n1-n0 == 0 || n1-n0 > fast.Sent() {
		t.Fatalf("unlimited: sink got %d, generator sent %d", n1-n0, fast.Sent())
	}
	st := sp.Stats()
	t.Logf("unlimited 300 ms: sent %d, sink got %d (%.0f pps); sink kernel drops %+v", fast.Sent(), n1-n0,
		float64(n1-n0)/0.3, st.Ports[0].Kernel)
}
