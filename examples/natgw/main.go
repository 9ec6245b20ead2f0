// Command natgw is a NAT gateway in user space on AF_XDP: it routes between an inside and an outside
// interface, masquerades connections from inside behind the outside address, and forwards chosen ports
// of the outside address to inside servers.
//
//	natgw -inside eth1=198.18.0.1/24 -outside eth0=198.19.0.1/24 [-gw 198.19.0.254] \
//	      [-forward tcp:8080=198.18.0.2:80] [-forward udp:5353=198.18.0.3:53] [-max-conns 65536] [-queues 1]
//
// It is the stack (package stack: ARP, routing, ICMP) with the NAT stages of package pipeline/nat at its
// PreRouting and PostRouting hooks, driven by the poller: what an iptables/nftables user writes as
//
//	nft add rule ip nat postrouting oifname eth0 masquerade
//	nft add rule ip nat prerouting iifname eth0 tcp dport 8080 dnat to 198.18.0.2:80
//
// plus a forward policy that lets nothing from outside in except the replies and the forwards, and hairpin
// NAT so that inside hosts reach the forwards by the outside address too. The
// interfaces are taken over by XDP: give them addresses Linux does not use. It needs root (or
// CAP_NET_ADMIN, CAP_BPF and CAP_NET_RAW). With -queues N, N poller goroutines share one connection
// table (the two directions of a connection arrive on unrelated queues). Stop it with Ctrl-C; it prints
// the NAT and drop counters.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/pipeline/conntrack"
	"github.com/xdpnet/xdpnet/pipeline/nat"
	"github.com/xdpnet/xdpnet/poller"
	"github.com/xdpnet/xdpnet/stack"
)

// config is what the flags say.
type config struct {
	inside, outside stack.Interface
	gw              netip.Addr
	forwards        []nat.Forward
	maxConns        int
	queues          int
	stats           time.Duration
}

type forwardFlags []string

func (f *forwardFlags) String() string     { return strings.Join(*f, ",") }
func (f *forwardFlags) Set(s string) error { *f = append(*f, s); return nil }

func main() {
	cfg, err := parseFlags(os.Args[1:], os.Stderr)
	if errors.Is(err, flag.ErrHelp) {
		os.Exit(0)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "natgw: %v\n", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, nil, nil); err != nil {
		slog.Error("natgw", "err", err)
		os.Exit(1)
	}
}

// parseFlags reads the command line; its errors say what to give instead.
func parseFlags(args []string, out *os.File) (config, error) {
	fs := flag.NewFlagSet("natgw", flag.ContinueOnError)
	fs.SetOutput(out)
	inside := fs.String("inside", "", "inside interface and its address, NAME=ADDR/PLEN (e.g. eth1=198.18.0.1/24)")
	outside := fs.String("outside", "", "outside interface and its address, NAME=ADDR/PLEN; connections from inside leave with ADDR")
	gw := fs.String("gw", "", "default gateway on the outside network (optional: without it only the outside network is reached)")
	var fwds forwardFlags
	fs.Var(&fwds, "forward", "port forward PROTO:PORT=ADDR:PORT from the outside address to an inside server (repeatable; tcp or udp)")
	maxConns := fs.Int("max-conns", conntrack.DefaultMax, "bound on tracked connections (nf_conntrack_max)")
	queues := fs.Int("queues", 1, "queues (and poller goroutines) per interface; the interfaces need at least as many")
	stats := fs.Duration("stats", 0, "log the counters at this interval (0: only at exit)")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: natgw -inside IF=ADDR/PLEN -outside IF=ADDR/PLEN [-gw ADDR] [-forward tcp:8080=198.18.0.2:80]...\n\n"+
			"Routes between the interfaces, masquerades inside connections behind the outside address and\n"+
			"forwards ports of the outside address to inside servers.\n\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected argument %q (flags only; see -help)", fs.Arg(0))
	}
	var c config
	var err error
	if *inside == "" || *outside == "" {
		return c, errors.New("both -inside and -outside are required, e.g. -inside eth1=198.18.0.1/24 -outside eth0=198.19.0.1/24")
	}
	if c.inside, err = parseIface("-inside", *inside); err != nil {
		return c, err
	}
	if c.outside, err = parseIface("-outside", *outside); err != nil {
		return c, err
	}
	if c.inside.Name == c.outside.Name {
		return c, fmt.Errorf("-inside and -outside both name %s: give two interfaces", c.inside.Name)
	}
	if c.inside.Addrs[0].Masked().Overlaps(c.outside.Addrs[0].Masked()) {
		return c, fmt.Errorf("-inside %s and -outside %s overlap: the two networks must be distinct", c.inside.Addrs[0], c.outside.Addrs[0])
	}
	if *gw != "" {
		if c.gw, err = netip.ParseAddr(*gw); err != nil || !c.gw.Is4() {
			return c, fmt.Errorf("-gw %q: want an IPv4 address on the outside network, e.g. 198.19.0.254", *gw)
		}
		if !c.outside.Addrs[0].Contains(c.gw) {
			return c, fmt.Errorf("-gw %s is not on the outside network %s: give the outside router's address", c.gw, c.outside.Addrs[0].Masked())
		}
	}
	for _, s := range fwds {
		f, err := nat.ParseForward(s)
		if err != nil {
			return c, fmt.Errorf("-forward: %w", err)
		}
		if !c.inside.Addrs[0].Contains(f.To.Addr()) {
			return c, fmt.Errorf("-forward %s: %s is not on the inside network %s", s, f.To.Addr(), c.inside.Addrs[0].Masked())
		}
		f.Interface, f.Addr = c.outside.Name, c.outside.Addrs[0].Addr()
		c.forwards = append(c.forwards, f)
	}
	if *maxConns < 1 || *maxConns > conntrack.MaxMax {
		return c, fmt.Errorf("-max-conns %d: want 1..%d", *maxConns, conntrack.MaxMax)
	}
	if *queues < 1 || *queues > nat.MaxQueues {
		return c, fmt.Errorf("-queues %d: want 1..%d", *queues, nat.MaxQueues)
	}
	c.maxConns, c.queues, c.stats = *maxConns, *queues, *stats
	return c, nil
}

// parseIface reads NAME=ADDR/PLEN with exactly one IPv4 address.
func parseIface(flagName, s string) (stack.Interface, error) {
	i, err := stack.ParseInterface(s)
	if err == nil && (len(i.Addrs) != 1 || !i.Addrs[0].Addr().Is4()) {
		err = fmt.Errorf("%q: want NAME=ADDR/PLEN with one IPv4 address, e.g. eth0=198.19.0.1/24", s)
	}
	if err != nil {
		return i, fmt.Errorf("%s %w", flagName, err)
	}
	return i, nil
}

// build makes the NAT and the stack with the NAT's stages at its hooks.
func build(c config) (*nat.NAT, *stack.Stack, error) {
	n, err := nat.New(nat.Config{
		Masquerade: []nat.Masquerade{{Interface: c.outside.Name, Addr: c.outside.Addrs[0].Addr()}},
		Forwards:   c.forwards,
		// Inside hosts reach the forwards by the outside address too (NAT loopback).
		Hairpin:   []nat.Masquerade{{Interface: c.inside.Name, Addr: c.inside.Addrs[0].Addr()}},
		Conntrack: conntrack.Config{Max: c.maxConns},
	})
	if err != nil {
		return nil, nil, err
	}
	hooks := new(pipeline.Hooks)
	n.Register(hooks)
	sc := stack.Config{Interfaces: []stack.Interface{c.inside, c.outside}, Hooks: hooks}
	if c.gw.IsValid() {
		sc.Routes = []stack.Route{{Prefix: netip.MustParsePrefix("0.0.0.0/0"), NextHop: c.gw}}
	}
	s, err := stack.New(sc)
	if err != nil {
		return nil, nil, err
	}
	return n, s, nil
}

// run routes until ctx ends. open, when set, runs poller creation (tests switch into a namespace there);
// started, when set, is told the NAT and the poller once the poller is built.
func run(ctx context.Context, c config, open func(func() error) error, started func(*nat.NAT, *poller.Poller)) error {
	n, s, err := build(c)
	if err != nil {
		return err
	}
	if open == nil {
		open = func(f func() error) error { return f() }
	}
	var p *poller.Poller
	if err := open(func() (err error) {
		p, err = poller.New(poller.Config{Interfaces: []string{c.inside.Name, c.outside.Name}, Queues: c.queues,
			NewHandler: n.NewHandler(s.NewHandler)})
		return err
	}); err != nil {
		return err
	}
	defer p.Close()
	if procs := runtime.GOMAXPROCS(0); procs <= c.queues {
		// Each polling queue holds a P; the rest of the program (stats, signals) needs one of its own.
		runtime.GOMAXPROCS(c.queues + 1)
	}
	var fw []string
	for _, f := range c.forwards {
		fw = append(fw, f.String())
	}
	slog.Info("natgw running", "inside", c.inside.Name+"="+c.inside.Addrs[0].String(),
		"outside", c.outside.Name+"="+c.outside.Addrs[0].String(), "gw", c.gw, "forwards", strings.Join(fw, " "),
		"max_conns", c.maxConns, "queues", c.queues)
	if started != nil {
		started(n, p)
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if c.stats > 0 {
		go func() {
			t := time.NewTicker(c.stats)
			defer t.Stop()
			for {
				select {
				case <-rctx.Done():
					return
				case <-t.C:
					logStats(n, p)
				}
			}
		}()
	}
	err = p.Run(rctx)
	logStats(n, p)
	if cerr := p.CheckFrames(); cerr != nil {
		return fmt.Errorf("frame accounting: %w", cerr)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

func logStats(n *nat.NAT, p *poller.Poller) {
	st := n.Stats()
	ct := st.Conntrack
	slog.Info("nat", "translated", st.Translated, "created", st.Created, "icmp_errors", st.ICMPErrors,
		"fragments", st.Fragments, "checksums_completed", st.CsumCompleted)
	slog.Info("conntrack", "entries", ct.Entries, "max", ct.Max, "assured", ct.Assured, "unreplied", ct.Unreplied,
		"inserted", ct.Inserted, "expired", ct.Expired, "early_drop", ct.EarlyDrop, "refused", ct.Refused,
		"clash", ct.Clash, "invalid", ct.Invalid)
	ps := p.Stats()
	for _, port := range ps.Ports {
		slog.Info("port", "name", port.Name, "rx", port.RxPackets, "tx", port.TxPackets)
	}
	for name, c := range ps.DropsByName() {
		slog.Info("drops", "reason", name, "packets", c)
	}
}
