package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/asavie/xdp"
	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/internal/pktgen"
	"github.com/xdpnet/xdpnet/internal/xdpprog"
	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/poller"
	"github.com/xdpnet/xdpnet/proto"
	"github.com/xdpnet/xdpnet/stack"
)

// errNA marks an implementation that cannot run here; the table prints n/a and the reason.
var errNA = errors.New("not available")

// dut is a running device under test.
type dut struct {
	// count reads the DUT's own receive counter (rxdrop measures there); nil when the sink counts.
	count func() uint64
	// tid is the xdpnet DUT's poller thread (0 for others).
	tid func() int
	// kdrops is what the kernel dropped on the way to the DUT's AF_XDP sockets (RX ring full, fill ring empty),
	// for the xdpnet DUTs and asavie's rxdrop (nil for others).
	kdrops func() uint64
	// p is the xdpnet DUT's poller (nil for others).
	p *poller.Poller
	// output is what a DUT process printed so far (nil for in-process DUTs).
	output func() string
	// cpu is the CPU time the DUT has used so far, in ns (user+system, schedstat's run time): the xdpnet DUT's
	// poller threads, asavie's rxdrop loop thread, or every thread of a DUT process. nil where there is no DUT
	// of its own (kernel forwarding, txonly).
	cpu  func() uint64
	stop func() error
}

// l2fwdHandler is the MAC-rewrite forwarder of the xdpnet l2fwd scenario: port 0 -> port 1, destination MAC
// set to the sink's and source to out0's, as testpmd's mac mode and examples/l2fwd do.
type l2fwdHandler struct{ dst, src proto.MAC }

func (h *l2fwdHandler) Process(b *pipeline.Batch) {
	for i := range b.N {
		p := &b.Pkts[i]
		d := p.Data()
		if len(d) < proto.EthernetHeaderLen || p.InPort != 0 {
			p.Drop(pipeline.DropUnhandled)
			continue
		}
		copy(d[0:6], h.dst[:])
		copy(d[6:12], h.src[:])
		p.Send(1)
	}
}

func (h *l2fwdHandler) Tick(*pipeline.Batch) int64 { return 0 }

func pollerDUT(t *topo, o *options, queues int, ifs []string, nh pipeline.NewHandler, count func() uint64) (*dut, error) {
	cpus := []int{o.dutCPU}
	if queues > 1 {
		cpus = []int{o.dutCPU, o.genCPU}
	}
	mode, err := poller.ParsePollMode(o.dutMode)
	if err != nil {
		return nil, err
	}
	p, stop, err := runPoller(t.dut, poller.Config{Interfaces: ifs, Queues: queues, CPUs: cpus, Mode: mode, Budget: o.dutBudget, RingSize: o.dutRing, NewHandler: nh})
	if err != nil {
		return nil, err
	}
	return &dut{p: p, count: count, stop: stop, cpu: func() uint64 {
		var ns uint64
		for _, q := range p.Stats().Queues {
			if q.TID != 0 {
				v, _ := threadCPU(q.TID)
				ns += v
			}
		}
		return ns
	}, kdrops: func() uint64 {
		var n uint64
		for _, ps := range p.Stats().Ports {
			n += socketDrops(ps.Kernel)
		}
		return n
	}, tid: func() int {
		if s := p.Stats(); len(s.Queues) > 0 {
			return s.Queues[0].TID
		}
		return 0
	}}, nil
}

// startDUT starts implementation impl of scenario sc in t's dut host.
func startDUT(t *topo, o *options, sc, impl string) (*dut, error) {
	queues := 1
	if sc == "l2fwd-2q" {
		queues = 2
	}
	sinkMAC := proto.MAC(t.dutSink.B.HWAddr())
	outMAC := proto.MAC(t.dutSink.A.HWAddr())
	switch sc + "/" + impl {
	case "txonly/xdpnet":
		return &dut{stop: func() error { return nil }}, nil
	case "rxdrop/xdpnet":
		s := pktgen.NewSink()
		return pollerDUT(t, o, 1, []string{"in0"}, s.NewHandler, func() uint64 { n, _ := s.Received(); return n })
	case "rxdrop/asavie":
		return asavieRxdrop(t, o)
	case "l2fwd/xdpnet", "l2fwd-2q/xdpnet":
		return pollerDUT(t, o, queues, []string{"in0", "out0"}, func(*pipeline.QueueInfo) pipeline.Handler {
			return &l2fwdHandler{dst: sinkMAC, src: outMAC}
		}, nil)
	case "l2fwd/asavie":
		if o.asavieBin == "" {
			return nil, fmt.Errorf("%w: asavie l2fwd example did not build", errNA)
		}
		return command(t, o, o.asavieBin, "-inlink", "in0", "-outlink", "out0",
			"-inlinkdst", t.dutSink.B.MAC.String(), "-outlinkdst", t.genDut.A.MAC.String())
	case "l2fwd/dpdk", "l3fwd/dpdk":
		// In l3fwd too, mac mode: testpmd does not route, so there it is the reference for the raw forwarding
		// cost (receive, rewrite the MACs, transmit) that the routers pay on top of.
		return testpmd(t, o)
	case "l3fwd/xdpnet":
		st, err := stack.New(stack.Config{Interfaces: []stack.Interface{
			{Name: "in0", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.0.2/24")}},
			{Name: "out0", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.1.2/24")}},
		}})
		if err != nil {
			return nil, err
		}
		return pollerDUT(t, o, 1, []string{"in0", "out0"}, st.NewHandler, nil)
	case "l3fwd/kernel":
		return kernelDUT(t, o)
	}
	return nil, fmt.Errorf("%w: no %s implementation of %s", errNA, impl, sc)
}

// kernelDUT turns on Linux forwarding in the dut host. Two things make it a fair DUT on veth:
//   - an XDP program on in0 that passes everything (xdpnet's redirect program with no socket registered):
//     veth takes frames redirected by the live generator (ndo_xdp_xmit) only when its peer runs XDP, and the
//     xdpnet and asavie DUTs have theirs there too;
//   - RPS on in0 to the DUT CPU: veth receives in softirq on the sending CPU, which is the generator's, so
//     without it the kernel would forward on the generator's CPU and leave its own idle. With RPS the
//     routing, netfilter hooks and transmit to out0 run on the DUT CPU, as a poller's work does.
func kernelDUT(t *topo, o *options) (*dut, error) {
	if err := t.dut.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		return nil, err
	}
	if o.dutCPU >= 0 {
		if err := setRPS(t.dut, "in0", o.dutCPU); err != nil {
			return nil, err
		}
	}
	var prog *xdpprog.Program
	if err := t.dut.Do(func() error {
		l, err := t.dut.Link("in0")
		if err != nil {
			return err
		}
		prog, err = xdpprog.Attach(l.Attrs().Index, xdpprog.Options{Mode: xdpprog.ModeNative})
		return err
	}); err != nil {
		return nil, fmt.Errorf("XDP pass program on in0: %w", err)
	}
	return &dut{stop: prog.Close}, nil
}

// command runs a DUT program in the dut host pinned to the DUT CPU.
func command(t *topo, o *options, bin string, args ...string) (*dut, error) {
	return startCommand(t, "taskset", append([]string{"-c", fmt.Sprint(o.dutCPU), bin}, args...)...)
}

// startCommand runs name in the dut host; stop sends SIGTERM (then SIGKILL after 2 s). A program that exits
// within 300 ms fails the start with its output; one that fails later fails stop with its output.
func startCommand(t *topo, name string, args ...string) (*dut, error) {
	ctx, cancel := context.WithCancel(context.Background())
	cmd := t.dut.Command(ctx, name, args...)
	out := &syncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	// testpmd without -i waits for a line on stdin before it quits: give it a pipe that stays open.
	pr, pw := io.Pipe()
	cmd.Stdin = pr
	cmd.Cancel = func() error { return cmd.Process.Signal(unix.SIGTERM) }
	cmd.WaitDelay = 2 * time.Second
	if err := cmd.Start(); err != nil {
		cancel()
		return nil, err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		cancel()
		return nil, fmt.Errorf("%s exited at start: %v: %s", name, err, lastLines(out.String(), 8))
	case <-time.After(300 * time.Millisecond):
	}
	pid := cmd.Process.Pid // ip netns exec, nsenter, taskset and stdbuf all exec in place: this is the DUT
	return &dut{output: out.String, cpu: func() uint64 { return processCPU(pid) }, stop: func() error {
		select {
		case err := <-exited:
			cancel()
			return fmt.Errorf("%s exited during the run: %v: %s", name, err, lastLines(out.String(), 8))
		default:
		}
		cancel()
		pw.Close()
		<-exited
		return nil
	}}, nil
}

// syncBuffer is an output buffer a child process writes while the bench reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	if len(l) > n {
		l = l[len(l)-n:]
	}
	return strings.Join(l, " | ")
}

// testpmd runs DPDK's testpmd with the AF_XDP PMD on in0 (and out0) of the dut host: mac forwarding in0 ->
// out0 with the sink's MAC as destination, out0 -> in0 with the generator's. (An rxdrop with --forward-mode=rxonly
// is not offered: it would be counted from testpmd's periodic statistics, a different counter from the others.)
//
// Cores: EAL needs a main lcore besides the forwarding lcore. The main lcore runs on the generator's CPU, where
// it only blocks reading stdin (testpmd's "Press enter to exit"), and the one forwarding lcore polls on the DUT
// CPU, like the other DUTs. Memory: huge pages (see hugepages.go: with --no-huge the PMD stalls), a small mbuf
// pool, --in-memory (no runtime files, so parallel DPDK processes do not meet).
func testpmd(t *topo, o *options) (*dut, error) {
	bin, err := exec.LookPath("dpdk-testpmd")
	if err != nil {
		return nil, fmt.Errorf("%w: dpdk-testpmd not found in PATH (Debian: apt-get install dpdk-dev)", errNA)
	}
	if o.genCPU < 0 || o.genCPU == o.dutCPU {
		return nil, fmt.Errorf("%w: testpmd needs two distinct CPUs (main lcore -gen-cpu, forwarding lcore -dut-cpu)", errNA)
	}
	if err := reserveHugepages(); err != nil {
		return nil, err
	}
	args := []string{"-l", fmt.Sprintf("%d,%d", o.genCPU, o.dutCPU), "--main-lcore", fmt.Sprint(o.genCPU),
		"--no-pci", "--in-memory", "-m", fmt.Sprint(testpmdMemoryMB), "--log-level=lib.eal:error",
		"--vdev", "net_af_xdp0,iface=in0,start_queue=0,queue_count=1",
		"--vdev", "net_af_xdp1,iface=out0,start_queue=0,queue_count=1", "--",
		"--forward-mode=mac", "--eth-peer=1," + t.dutSink.B.MAC.String(), "--eth-peer=0," + t.genDut.A.MAC.String(),
		"--auto-start", "--nb-cores=1", "--total-num-mbufs=8192"}
	// stdbuf: testpmd's stdout is a pipe here, and block-buffered it would show "Press enter" only at exit.
	d, err := startCommand(t, "stdbuf", append([]string{"-oL", bin}, args...)...)
	if err != nil {
		return nil, err
	}
	// Port setup and the link check take a second or two: wait until forwarding runs ("Press enter to exit"
	// follows "Start automatic packet forwarding"), so that the warmup and the window measure forwarding.
	for deadline := time.Now().Add(15 * time.Second); !strings.Contains(d.output(), "Press enter to exit"); {
		if time.Now().After(deadline) {
			d.stop()
			return nil, fmt.Errorf("testpmd did not start forwarding within 15 s: %s", lastLines(d.output(), 8))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return d, nil
}

// asavieRxdrop is an rxdrop on asavie/xdp's public API with its default options, as its README shows:
// NewProgram/Attach/NewSocket/Register, then Fill, Poll, Receive in a loop. The loop's OS thread is pinned to the
// DUT CPU, as the xdpnet poller's is.
func asavieRxdrop(t *topo, o *options) (*dut, error) {
	var prog *xdp.Program
	var xsk *xdp.Socket
	var ifindex int
	err := t.dut.Do(func() error {
		l, err := t.dut.Link("in0")
		if err != nil {
			return err
		}
		ifindex = l.Attrs().Index
		if prog, err = xdp.NewProgram(1); err != nil {
			return fmt.Errorf("asavie NewProgram: %w", err)
		}
		if err = prog.Attach(ifindex); err != nil {
			return fmt.Errorf("asavie Attach: %w", err)
		}
		// The same UMEM and ring sizes as the xdpnet DUT's poller defaults (8192 frames, rings of 2048), not
		// asavie's defaults (128 frames, rings of 64), which drop at the socket at these rates.
		opts := xdp.SocketOptions{NumFrames: 8192, FrameSize: 2048, FillRingNumDescs: 2048,
			CompletionRingNumDescs: 2048, RxRingNumDescs: 2048, TxRingNumDescs: 2048}
		if xsk, err = xdp.NewSocket(ifindex, 0, &opts); err != nil {
			return fmt.Errorf("asavie NewSocket: %w", err)
		}
		return prog.Register(0, xsk.FD())
	})
	if err != nil {
		return nil, err
	}
	var n atomic.Uint64
	var quit atomic.Bool
	var tid atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		tid.Store(int64(unix.Gettid()))
		var set unix.CPUSet
		set.Set(o.dutCPU)
		unix.SchedSetaffinity(0, &set)
		for !quit.Load() {
			xsk.Fill(xsk.GetDescs(xsk.NumFreeFillSlots()))
			// The README polls with -1; a 100 ms timeout only lets the loop notice stop.
			numRx, _, err := xsk.Poll(100)
			if err != nil {
				continue
			}
			xsk.Receive(numRx)
			n.Add(uint64(numRx))
		}
		set.Zero()
		for c := 0; c < runtime.NumCPU(); c++ {
			set.Set(c)
		}
		unix.SchedSetaffinity(0, &set)
	}()
	fd := xsk.FD()
	return &dut{count: n.Load, cpu: func() uint64 {
		v, _ := threadCPU(int(tid.Load()))
		return v
	}, kdrops: func() uint64 {
		st, err := xdpStatistics(fd)
		if err != nil {
			return 0
		}
		return socketDrops(st)
	}, stop: func() error {
		quit.Store(true)
		wg.Wait()
		return t.dut.Do(func() error {
			prog.Unregister(0)
			prog.Detach(ifindex)
			xsk.Close()
			return prog.Close()
		})
	}}, nil
}

// processCPU is the CPU time, in ns, of every thread of process pid so far (the first field of each
// /proc/PID/task/TID/schedstat: time on a CPU, user and system). A thread that exited is no longer counted;
// the DUT processes here start their threads before forwarding starts and keep them until they quit.
func processCPU(pid int) uint64 {
	dir := fmt.Sprintf("/proc/%d/task", pid)
	ents, err := os.ReadDir(dir)
	if err != nil {
		return 0
	}
	var ns uint64
	for _, e := range ents {
		b, err := os.ReadFile(dir + "/" + e.Name() + "/schedstat")
		if err != nil {
			continue
		}
		var v uint64
		if _, err := fmt.Sscan(string(b), &v); err == nil {
			ns += v
		}
	}
	return ns
}

// socketDrops is the frames the kernel dropped on the way into an AF_XDP socket. rx_dropped already counts a frame
// that found the fill ring empty (measured on Linux 6.18 copy mode: rx_dropped == rx_fill_ring_empty_descs in
// every run), so the fill-ring counter is not added again; a full RX ring is counted apart.
func socketDrops(st unix.XDPStatistics) uint64 { return st.Rx_dropped + st.Rx_ring_full }

// xdpStatistics reads an AF_XDP socket's XDP_STATISTICS (asavie's Socket.Stats also reads its loop's counters,
// which the loop goroutine writes without synchronisation).
func xdpStatistics(fd int) (unix.XDPStatistics, error) {
	var st unix.XDPStatistics
	optlen := uint32(unsafe.Sizeof(st))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_STATISTICS,
		uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&optlen)), 0); e != 0 {
		return st, e
	}
	return st, nil
}

// buildAsavie builds asavie/xdp's own l2fwd example from the module cache into dir.
func buildAsavie(dir string) (string, error) {
	bin := dir + "/asavie-l2fwd"
	cmd := exec.Command("go", "build", "-o", bin, "github.com/asavie/xdp/examples/l2fwd")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build github.com/asavie/xdp/examples/l2fwd: %w", err)
	}
	return bin, nil
}

// buildXdpfwd builds the router command of this module (cmd/xdpfwd) into dir: tcpfwd and rtt run it as the
// xdpnet DUT, as a user would.
func buildXdpfwd(dir string) (string, error) {
	bin := dir + "/xdpfwd"
	cmd := exec.Command("go", "build", "-o", bin, "github.com/xdpnet/xdpnet/cmd/xdpfwd")
	cmd.Stderr = os.Stderr
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go build github.com/xdpnet/xdpnet/cmd/xdpfwd (run the bench inside the module): %w", err)
	}
	return bin, nil
}
