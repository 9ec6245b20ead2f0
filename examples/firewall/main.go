// Command firewall filters IPv4 and IPv6 traffic between two interfaces with an ACL, in user space on AF_XDP.
//
//	firewall -in veth0 -out veth1 -rules rules.txt [-pcap tap.pcap]
//
// Every frame received on one interface is sent out of the other, unless the first ACL rule it matches says
// drop. Frames that are not IP (ARP) are bridged unfiltered; IP that cannot be parsed (a truncated header, an
// IPv6 extension header chain that cannot be walked) is dropped with its reason. The rules file has one rule
// a line, as pipeline.ParseRule documents; an address makes a rule IPv4's or IPv6's, a rule without one
// matches both:
//
//	accept udp from 198.18.0.53 to any port 53
//	accept udp from 2001:2::53 to any port 53
//	drop udp to any port 53 reason dns_blocked
//	drop tcp to 198.18.1.0/24 port 1-1023
//	drop tcp to 2001:2:0:1::/64 port 1-1023
//	drop icmpv6 type echo-request from 2001:2:0:9::/64
//
// For IPv6 the protocol and ports are those after the extension headers. Keep ICMPv6's neighbour discovery
// (nd-neighbor-solicit, nd-neighbor-advert) flowing, or the two sides cannot resolve each other.
//
// It shows how a program embeds the pipeline: build Hooks, register stages, hand the poller a NewHandler.
// It needs root (or CAP_NET_ADMIN, CAP_BPF and CAP_NET_RAW). Stop it with Ctrl-C; it prints the drop counters.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/poller"
)

func main() {
	in := flag.String("in", "", "first interface (port 0)")
	out := flag.String("out", "", "second interface (port 1)")
	rulesPath := flag.String("rules", "", "ACL rules file, one rule a line (see go doc pipeline.ParseRule)")
	pcapPath := flag.String("pcap", "", "also write every received frame to this pcap file")
	every := flag.Duration("stats", 0, "log the counters at this interval (0: only at exit)")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: firewall -in IF -out IF -rules FILE [-pcap FILE]\n\n"+
			"Bridges IF<->IF and drops the IPv4 and IPv6 packets the rules drop.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	if *in == "" || *out == "" || *rulesPath == "" {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(*in, *out, *rulesPath, *pcapPath, *every); err != nil {
		slog.Error("firewall", "err", err)
		os.Exit(1)
	}
}

func run(in, out, rulesPath, pcapPath string, every time.Duration) error {
	hooks, closeTap, err := buildHooks(rulesPath, pcapPath)
	if err != nil {
		return err
	}
	defer closeTap()

	p, err := poller.New(poller.Config{Interfaces: []string{in, out}, NewHandler: newBridge(hooks)})
	if err != nil {
		return err
	}
	defer p.Close()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if every > 0 {
		go func() {
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				select {
				case <-ctx.Done():
					return
				case <-t.C:
					logStats(p.Stats())
				}
			}
		}()
	}
	slog.Info("firewall running", "in", in, "out", out, "rules", rulesPath)
	err = p.Run(ctx)
	logStats(p.Stats())
	return err
}

// buildHooks reads the rules and places the ACL at Forward and, with -pcap, a tap at PreRouting (ahead of
// the ACL, so the capture shows what arrived, dropped or not).
func buildHooks(rulesPath, pcapPath string) (*pipeline.Hooks, func(), error) {
	f, err := os.Open(rulesPath)
	if err != nil {
		return nil, nil, fmt.Errorf("open rules: %w", err)
	}
	rules, err := pipeline.ParseRules(f)
	f.Close()
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", rulesPath, err)
	}
	acl, err := pipeline.NewACL(rules)
	if err != nil {
		return nil, nil, fmt.Errorf("%s: %w", rulesPath, err)
	}
	hooks := new(pipeline.Hooks)
	hooks.Register(pipeline.Forward, 0, "acl", acl)
	closeTap := func() {}
	if pcapPath != "" {
		pf, err := os.Create(pcapPath)
		if err != nil {
			return nil, nil, fmt.Errorf("create pcap: %w", err)
		}
		tap, err := pipeline.NewTap(pf, pipeline.TapConfig{Nanosecond: true})
		if err != nil {
			pf.Close()
			return nil, nil, err
		}
		hooks.Register(pipeline.PreRouting, -100, "tap", tap)
		closeTap = func() {
			if err := tap.Close(); err != nil {
				slog.Error("pcap", "err", err)
			}
			pf.Close()
			slog.Info("pcap closed", "file", pcapPath, "captured", tap.Captured(), "copies_dropped", tap.Dropped())
		}
	}
	return hooks, closeTap, nil
}

func logStats(s poller.Stats) {
	for _, ps := range s.Ports {
		slog.Info("port", "name", ps.Name, "rx", ps.RxPackets, "tx", ps.TxPackets)
	}
	for name, n := range s.DropsByName() {
		slog.Info("drops", "reason", name, "packets", n)
	}
}
