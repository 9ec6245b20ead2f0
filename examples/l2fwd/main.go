// Command l2fwd forwards every frame that arrives on one interface out of another, in user space on AF_XDP,
// rewriting the destination MAC address (and, like DPDK testpmd's "mac" forwarding mode, the source MAC to the
// egress interface's own address).
//
//	l2fwd -in IF -out IF -dst-mac MAC [-queues N] [-mode adaptive|busy] [-bind auto|zerocopy|copy]
//
// The forwarding is zero-copy: the poller shares one UMEM between the two interfaces' sockets, so a received
// frame is rewritten in place and its descriptor moved to the other interface's TX ring. Frames arriving on
// -out are dropped (the forwarding is one-way). It prints the rates each second and a summary when it gets
// SIGINT or SIGTERM. It needs root (or CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW and CAP_IPC_LOCK).
//
// It is also a short example of the public API: a pipeline.Handler, a poller.Config, Run until a signal.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/poller"
	"github.com/xdpnet/xdpnet/proto"
)

// dropWrongPort counts frames that arrived on -out, which this one-way forwarder does not forward.
var dropWrongPort = pipeline.RegisterDropReason("l2fwd_from_out")

// forwarder is the handler of one queue: port 0 is -in, port 1 is -out. It holds no frame and has no timer,
// so it has no Tick (pipeline.Ticker is optional).
type forwarder struct {
	dst, src proto.MAC
	// partial: -in is a veth, whose peer leaves TCP and UDP checksums partial by default; they are
	// completed before the frame leaves (pipeline.FinishPartialChecksum).
	partial bool
}

func (f *forwarder) Process(b *pipeline.Batch) {
	for i := range b.N {
		p := &b.Pkts[i]
		eth, perr := proto.ParseEthernet(p.Data())
		if p.InPort != 0 || perr != proto.OK {
			if perr != proto.OK {
				p.Drop(pipeline.DropTruncated)
			} else {
				p.Drop(dropWrongPort)
			}
			continue
		}
		eth.SetDst(f.dst)
		eth.SetSrc(f.src)
		if f.partial {
			pipeline.FinishPartialChecksum(p.Data())
		}
		p.Send(1)
	}
}

func main() {
	in := flag.String("in", "", "interface frames arrive on (required)")
	out := flag.String("out", "", "interface frames leave by (required)")
	dstMAC := flag.String("dst-mac", "", "destination MAC address written into every forwarded frame (required)")
	queues := flag.Int("queues", 1, "number of queues to serve, each on its own goroutine and OS thread")
	mode := flag.String("mode", "adaptive", "poll mode: adaptive (sleep in poll(2) when idle) or busy (spin)")
	bind := flag.String("bind", "auto", "AF_XDP bind mode: auto, zerocopy or copy")
	cpus := flag.String("cpus", "", "comma-separated CPUs to pin the queues to (default: no pinning)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: l2fwd -in IF -out IF -dst-mac MAC [flags]\n\n"+
			"Forwards every frame from -in to -out with the destination MAC set to -dst-mac.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *in == "" || *out == "" || *dstMAC == "" || flag.NArg() > 0 {
		flag.Usage()
		os.Exit(2)
	}
	cfg, dst, err := config(*in, *out, *dstMAC, *queues, *mode, *bind, *cpus)
	if err != nil {
		fmt.Fprintln(os.Stderr, "l2fwd:", err)
		os.Exit(2)
	}
	if err := run(cfg, dst); err != nil {
		fmt.Fprintln(os.Stderr, "l2fwd:", err)
		os.Exit(1)
	}
}

func config(in, out, dstMAC string, queues int, mode, bind, cpus string) (poller.Config, proto.MAC, error) {
	cfg := poller.Config{Interfaces: []string{in, out}, Queues: queues}
	dst, err := proto.ParseMAC(dstMAC)
	if err != nil {
		return cfg, dst, fmt.Errorf("-dst-mac %q: %v (want six hex bytes, 02:00:00:00:00:01)", dstMAC, err)
	}
	if cfg.Mode, err = poller.ParsePollMode(mode); err != nil {
		return cfg, dst, fmt.Errorf("-mode: %w", err)
	}
	switch bind {
	case "auto":
		cfg.Bind = poller.BindAuto
	case "zerocopy":
		cfg.Bind = poller.BindZeroCopy
	case "copy":
		cfg.Bind = poller.BindCopy
	default:
		return cfg, dst, fmt.Errorf("-bind %q: want auto, zerocopy or copy", bind)
	}
	if cpus != "" {
		for _, s := range strings.Split(cpus, ",") {
			var c int
			if _, err := fmt.Sscan(s, &c); err != nil || c < 0 {
				return cfg, dst, fmt.Errorf("-cpus %q: want a comma-separated list of CPU numbers", cpus)
			}
			cfg.CPUs = append(cfg.CPUs, c)
		}
	}
	return cfg, dst, nil
}

func run(cfg poller.Config, dst proto.MAC) error {
	var outMAC proto.MAC
	cfg.NewHandler = func(q *pipeline.QueueInfo) pipeline.Handler {
		outMAC = q.Ports[1].MAC
		return &forwarder{dst: dst, src: q.Ports[1].MAC, partial: q.Ports[0].PartialChecksums}
	}
	p, err := poller.New(cfg)
	if err != nil {
		return err
	}
	defer p.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fmt.Printf("l2fwd: %s -> %s, dst %s src %s, %d queue(s), %s mode\n", cfg.Interfaces[0], cfg.Interfaces[1], dst, outMAC, max(cfg.Queues, 1), cfg.Mode)

	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastRx, lastTx uint64
	last := start
	for {
		select {
		case err := <-done:
			summary(p.Stats(), time.Since(start))
			return err
		case t := <-tick.C:
			s := p.Stats()
			rx, tx := s.Ports[0].RxPackets, s.Ports[1].TxPackets
			dt := t.Sub(last).Seconds()
			fmt.Printf("%8.0fs  rx %10.0f pps  tx %10.0f pps\n", t.Sub(start).Seconds(), float64(rx-lastRx)/dt, float64(tx-lastTx)/dt)
			lastRx, lastTx, last = rx, tx, t
		}
	}
}

func summary(s poller.Stats, d time.Duration) {
	rx, tx := s.Ports[0].RxPackets, s.Ports[1].TxPackets
	fmt.Printf("summary: %.1f s, received %d on %s, forwarded %d on %s, average %.0f pps\n",
		d.Seconds(), rx, s.Ports[0].Name, tx, s.Ports[1].Name, float64(tx)/d.Seconds())
	for name, n := range s.DropsByName() {
		fmt.Printf("summary: dropped %d (%s)\n", n, name)
	}
	k := s.Ports[0].Kernel
	// rx_dropped already includes the frames that found the fill ring empty; a full RX ring is counted apart.
	if k.Rx_dropped+k.Rx_ring_full > 0 {
		fmt.Printf("summary: kernel dropped %d on %s (rx ring full %d, fill ring empty %d; a fill ring that runs empty means this program did not get the CPU often enough)\n",
			k.Rx_dropped+k.Rx_ring_full, s.Ports[0].Name, k.Rx_ring_full, k.Rx_fill_ring_empty_descs)
	}
}
