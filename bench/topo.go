package main

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

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

// startGen runs the generator in the gen host: busy polling on its own CPU, flows UDP flows to the sink's
// address through the DUT's in0 MAC.
func startGen(t *topo, o *options, queues int) (*pktgen.Generator, *poller.Poller, func() error, error) {
	g, err := pktgen.NewGenerator(pktgen.Config{
		SrcMAC: proto.MAC(t.genDut.A.HWAddr()), DstMAC: proto.MAC(t.genDut.B.HWAddr()),
		Src: genAddr, Dst: sinkAddr, Flows: o.flows, FrameSize: 64, Queues: queues,
	})
	if err != nil {
		return nil, nil, nil, err
	}
	mode, err := poller.ParsePollMode(o.genMode)
	if err != nil {
		return nil, nil, nil, err
	}
	cfg := poller.Config{Interfaces: []string{"eth0"}, Queues: queues, Mode: mode, NewHandler: g.NewHandler}
	if o.genCPU >= 0 {
		cfg.CPUs = []int{o.genCPU}
	}
	pktgen.SizeFor(&cfg)
	p, stop, err := runPoller(t.gen, cfg)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("generator: %w", err)
	}
	return g, p, func() error { g.Stop(); return stop() }, nil
}

// attachCounter puts the counting XDP program on ifname in h.
func attachCounter(h *netlab.Host, ifname string) (*xdpcount.Counter, error) {
	var c *xdpcount.Counter
	err := h.Do(func() error {
		l, err := h.Link(ifname)
		if err != nil {
			return err
		}
		c, err = xdpcount.Attach(l.Attrs().Index)
		return err
	})
	return c, err
}

func mac(e netlab.Endpoint) net.HardwareAddr { return e.MAC }
