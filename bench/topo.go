package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/bench/xdpcount"
	"github.com/xdpnet/xdpnet/internal/netlab"
	"github.com/xdpnet/xdpnet/internal/pktgen"
	"github.com/xdpnet/xdpnet/poller"
	"github.com/xdpnet/xdpnet/proto"
)

// Addresses (RFC 2544 range): gen 198.18.0.1 --- 198.18.0.2 in0 [dut] out0 198.18.1.2 --- 198.18.1.1 sink.
var (
	genAddr  = netip.MustParseAddrPort("198.18.0.1:1024")
	sinkAddr = netip.MustParseAddrPort("198.18.1.1:9")
)

// topo is one trial's hosts: gen --veth-- dut --veth-- sink, built fresh for every trial so that no state
// (XDP programs a killed process left, bound queues, neighbour entries) carries over between trials.
type topo struct {
	lab             *netlab.Lab
	gen, dut, sink  *netlab.Host
	genDut, dutSink *netlab.Veth
}

func newTopo(queues int) (*topo, error) {
	lab, err := netlab.New("bench")
	if err != nil {
		return nil, err
	}
	t := &topo{lab: lab}
	ok := false
	defer func() {
		if !ok {
			lab.Close()
		}
	}()
	for _, h := range []**netlab.Host{&t.gen, &t.dut, &t.sink} {
		role := map[**netlab.Host]string{&t.gen: "gen", &t.dut: "dut", &t.sink: "sink"}[h]
		if *h, err = lab.AddHost(role); err != nil {
			return nil, err
		}
	}
	o := netlab.LinkOptions{Queues: queues}
	if t.genDut, err = lab.LinkWith(t.gen, "eth0", t.dut, "in0", o); err != nil {
		return nil, err
	}
	if t.dutSink, err = lab.LinkWith(t.dut, "out0", t.sink, "eth0", o); err != nil {
		return nil, err
	}
	for _, e := range []struct {
		ep   netlab.Endpoint
		addr string
	}{{t.genDut.A, "198.18.0.1/24"}, {t.genDut.B, "198.18.0.2/24"}, {t.dutSink.A, "198.18.1.2/24"}, {t.dutSink.B, "198.18.1.1/24"}} {
		h, n := e.ep.Host, e.ep.Name
		// IPv6 off: no solicitations or MLD reports in the counts.
		if err := h.Sysctl("net.ipv6.conf."+n+".disable_ipv6", "1"); err != nil {
			return nil, err
		}
		if err := h.AddAddr(n, e.addr); err != nil {
			return nil, err
		}
		if err := h.SetUp(n); err != nil {
			return nil, err
		}
	}
	for _, e := range []netlab.Endpoint{t.genDut.A, t.genDut.B, t.dutSink.A, t.dutSink.B} {
		if err := e.Host.WaitOperUp(e.Name, 5*time.Second); err != nil {
			return nil, err
		}
	}
	if err := t.dut.Sysctl("net.ipv4.ip_forward", "0"); err != nil {
		return nil, err
	}
	ok = true
	return t, nil
}

func (t *topo) close() { t.lab.Close() }

// runPoller makes a poller inside h (New looks up interfaces and binds in the calling thread's namespace) and
// runs it from an ordinary goroutine until the returned stop is called.
func runPoller(h *netlab.Host, cfg poller.Config) (*poller.Poller, func() error, error) {
	var p *poller.Poller
	if err := h.Do(func() error {
		var err error
		p, err = poller.New(cfg)
		return err
	}); err != nil {
		return nil, nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var runErr error
	wg.Add(1)
	go func() { defer wg.Done(); runErr = p.Run(ctx) }()
	var once sync.Once
	return p, func() error {
		once.Do(func() {
			cancel()
			wg.Wait()
			p.Close()
		})
		return runErr
	}, nil
}

// source is the traffic of one trial: how many frames it has sent, and how to stop it.
type source struct {
	sent func() uint64
	stop func() error
}

// startSource starts the trial's generator. The live XDP generator (-gen live, the default) is the kernel's
// own (pktgen.Live): several times cheaper per frame than an AF_XDP generator in copy mode, so that on two
// cores the device under test, not the generator, limits what is measured. txonly measures xdpnet's own
// transmit path, and the live generator sends on one queue only (veth picks the peer's queue by the sending
// CPU), so txonly and the two-queue scenario always use pktgen on the poller.
func startSource(t *topo, o *options, sc, param string, queues int) (source, error) {
	if o.gen == "live" && sc != "txonly" && queues == 1 {
		return startLive(t, o, param)
	}
	g, _, stop, err := startGen(t, o, queues, param)
	if err != nil {
		return source{}, err
	}
	return source{sent: g.Sent, stop: stop}, nil
}

// startLive runs pktgen.Live in the gen host on -gen-cpu, sending out of eth0 towards the DUT's in0.
func startLive(t *topo, o *options, param string) (source, error) {
	var live *pktgen.Live
	if err := t.gen.Do(func() error {
		l, err := t.gen.Link("eth0")
		if err != nil {
			return err
		}
		live, err = pktgen.NewLive(genConfig(t, o, 1, param), l.Attrs().Index)
		return err
	}); err != nil {
		return source{}, fmt.Errorf("live generator: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- t.gen.Do(func() error { return live.Run(ctx, o.genCPU) }) }()
	return source{sent: live.Sent, stop: func() error {
		cancel()
		err := <-done
		live.Close()
		return err
	}}, nil
}

// genConfig is the generator's traffic: o.flows UDP flows to the sink's address through the DUT's in0 MAC, in
// frames of the size param names ("64".."1518", "imix"; "" is 64).
func genConfig(t *topo, o *options, queues int, param string) pktgen.Config {
	c := pktgen.Config{SrcMAC: proto.MAC(t.genDut.A.HWAddr()), DstMAC: proto.MAC(t.genDut.B.HWAddr()),
		Src: genAddr, Dst: sinkAddr, Flows: o.flows, Queues: queues}
	frameConfig(&c, param)
	return c
}

// startGen runs the generator in the gen host, polling (-gen-mode) on its own CPU.
func startGen(t *topo, o *options, queues int, param string) (*pktgen.Generator, *poller.Poller, func() error, error) {
	mode, err := poller.ParsePollMode(o.genMode)
	if err != nil {
		return nil, nil, nil, err
	}
	return startGenWith(t, o, genConfig(t, o, queues, param), mode, 0)
}

// startGenWith runs a generator of gc in the gen host; idleSpin is the poller's (0: its default).
func startGenWith(t *topo, o *options, gc pktgen.Config, mode poller.PollMode, idleSpin time.Duration) (*pktgen.Generator, *poller.Poller, func() error, error) {
	g, err := pktgen.NewGenerator(gc)
	if err != nil {
		return nil, nil, nil, err
	}
	queues := gc.Queues
	cfg := poller.Config{Interfaces: []string{"eth0"}, Queues: queues, Mode: mode, IdleSpin: idleSpin, NewHandler: g.NewHandler}
	if o.genCPU >= 0 {
		cfg.CPUs = []int{o.genCPU}
	}
	pktgen.SizeFor(&cfg)
	p, stop, err := runPoller(t.gen, cfg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("generator: %w", err)
	}
	return g, p, once(func() error { g.Stop(); return stop() }), nil
}

// attachCounter puts the counting XDP program on ifname in h (txonly counts at the DUT's in0 this way).
func attachCounter(h *netlab.Host, ifname string) (*xdpcount.Counter, error) {
	return attachIn(h, ifname, xdpcount.Attach)
}

// attachSink counts at the sink's eth0 at the tc ingress hook, with RPS sending the sink's receive work to the
// generator's CPU: the DUT CPU then carries the DUT's own work (its transmit, up to handing each frame to
// veth) and none of the sink's. An XDP counter there would run the sink's NAPI, and an skb-to-xdp_buff copy
// per frame, on the DUT's CPU (bench/xdpcount).
func attachSink(t *topo, o *options) (*xdpcount.Counter, error) {
	if o.genCPU >= 0 {
		if err := setRPS(t.sink, "eth0", o.genCPU); err != nil {
			return nil, err
		}
	}
	return attachIn(t.sink, "eth0", xdpcount.AttachIngress)
}

func attachIn(h *netlab.Host, ifname string, attach func(ifindex int) (*xdpcount.Counter, error)) (*xdpcount.Counter, error) {
	var c *xdpcount.Counter
	err := h.Do(func() error {
		l, err := h.Link(ifname)
		if err != nil {
			return err
		}
		c, err = attach(l.Attrs().Index)
		return err
	})
	return c, err
}

// setRPS steers what ifname's (single) receive queue hands to the stack to cpu, by Receive Packet Steering. It
// writes through `ip netns exec`, which mounts a /sys that shows the namespace's interfaces.
func setRPS(h *netlab.Host, ifname string, cpu int) error {
	path := "/sys/class/net/" + ifname + "/queues/rx-0/rps_cpus"
	if out, err := h.Run(context.Background(), "sh", "-c", fmt.Sprintf("echo %x > %s", 1<<cpu, path)); err != nil {
		return fmt.Errorf("RPS on %s to CPU %d: %v: %s", ifname, cpu, err, out)
	}
	return nil
}

// threadNAPI makes ifname's NAPI a kernel thread ("napi/IFNAME-ID", threaded NAPI) and pins it to cpu: the
// receive work veth otherwise does in softirq on the sending CPU then runs on cpu, as a NIC's does on the CPU
// that takes its queue's interrupt.
func threadNAPI(h *netlab.Host, ifname string, cpu int) error {
	if out, err := h.Run(context.Background(), "sh", "-c", "echo 1 > /sys/class/net/"+ifname+"/threaded"); err != nil {
		return fmt.Errorf("threaded NAPI on %s: %v: %s", ifname, err, out)
	}
	var set unix.CPUSet
	set.Set(cpu)
	for deadline := time.Now().Add(time.Second); ; time.Sleep(10 * time.Millisecond) {
		pids, err := napiThreads(ifname)
		if err == nil && len(pids) > 0 {
			for _, pid := range pids {
				if err := unix.SchedSetaffinity(pid, &set); err != nil {
					return fmt.Errorf("pin NAPI thread %d of %s to CPU %d: %w", pid, ifname, cpu, err)
				}
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no NAPI thread of %s after enabling threaded NAPI (%v)", ifname, err)
		}
	}
}

// napiThreads lists the kernel threads named napi/IFNAME-*.
func napiThreads(ifname string) ([]int, error) {
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	var pids []int
	for _, d := range dirs {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		comm, err := os.ReadFile("/proc/" + d.Name() + "/comm")
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(comm)), "napi/"+ifname+"-") {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

func mac(e netlab.Endpoint) net.HardwareAddr { return e.MAC }
