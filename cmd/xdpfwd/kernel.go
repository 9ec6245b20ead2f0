package main

import (
	"flag"
	"fmt"
	"log/slog"

	"github.com/xdpnet/xdpnet/internal/kmirror"
	"github.com/xdpnet/xdpnet/internal/xdpprog"
	"github.com/xdpnet/xdpnet/poller"
	"github.com/xdpnet/xdpnet/stack"
)

// kernelOptions are the flags of the kernel-mirror mode (internal/kmirror has the model and its diagram):
// the kernel stays the control plane - addresses, routes and neighbours are configured with iproute2 or a
// routing daemon - and xdpfwd forwards the IPv4 and IPv6 transit traffic; everything else stays in the kernel.
type kernelOptions struct {
	enabled bool
	table   int
}

func addKernelFlags(fs *flag.FlagSet, k *kernelOptions) {
	fs.BoolVar(&k.enabled, "kernel", false, "kernel-mirror mode: the kernel keeps the control plane (give --iface NAME only; addresses,\n"+
		"routes and neighbours are the kernel's, followed over netlink) and xdpfwd forwards the IPv4 and IPv6\n"+
		"transit traffic; ARP, NDP, link-local and multicast, and traffic for the box go to the kernel.\n"+
		"ip_forward and IPv6 forwarding may stay 0")
	fs.IntVar(&k.table, "table", 0, "with --kernel: the kernel routing table to mirror (`ID`; 0 = main, 254)")
}

// check validates the kernel-mode flags against the interfaces.
func (k kernelOptions) check(ifaces ifaceFlags) error {
	if !k.enabled {
		if k.table != 0 {
			return usagef("--table needs --kernel (it names the kernel routing table to mirror)")
		}
		return nil
	}
	if k.table < 0 {
		return usagef("--table %d: want a kernel table id such as 254 (main) or 100", k.table)
	}
	for _, s := range ifaces {
		if len(s.Addrs) > 0 {
			return usagef("--kernel --iface %s=%v: in kernel-mirror mode the addresses are the kernel's; give --iface %s and add addresses with `ip addr add`", s.Name, s.Addrs[0], s.Name)
		}
	}
	return nil
}

// kernelMode is the mirror of one run; a nil *kernelMode is the normal mode and its methods do nothing.
type kernelMode struct {
	kp  *xdpprog.KernelPrefixes
	m   *kmirror.Mirror
	log *slog.Logger
}

// setupKernel prepares the kernel-mirror mode before the stack and the poller exist: it makes the XDP map of
// kernel prefixes, the mirror (in this process's network namespace), points the stack's neighbour resolution
// at the kernel and the poller at the transit program. It returns nil when --kernel is off.
func setupKernel(k kernelOptions, sc *stack.Config, pc *poller.Config, log *slog.Logger) (*kernelMode, error) {
	if !k.enabled {
		return nil, nil
	}
	kp, err := xdpprog.NewKernelPrefixes(0)
	if err != nil {
		return nil, fmt.Errorf("--kernel: %w", err)
	}
	m, err := kmirror.New(kmirror.Config{Interfaces: pc.Interfaces, Table: k.table, Prefixes: kp, Logger: log})
	if err != nil {
		kp.Close()
		return nil, usagef("--kernel: %v", err)
	}
	sc.Resolver = m.Resolve
	sc.NoDAD = true // the kernel ran duplicate address detection for its addresses; NDP is its own
	xdpprog.SetPollerAttach(pc, func(ifindex int, opts xdpprog.Options) (*xdpprog.Program, error) {
		return xdpprog.AttachTransit(ifindex, opts, kp)
	})
	return &kernelMode{kp: kp, m: m, log: log}, nil
}

// start applies the kernel's current state to st and follows it from then on. It runs before the poller
// attaches the transit program, so the box's addresses are in the XDP map before any frame is redirected.
func (km *kernelMode) start(st *stack.Stack) error {
	if km == nil {
		return nil
	}
	if err := km.m.Start(st); err != nil {
		return fmt.Errorf("--kernel: %w", err)
	}
	km.log.Info("kernel-mirror mode: following the kernel", "routes", len(st.Routes()))
	return nil
}

// stats are the mirror's counters; the zero Stats in normal mode.
func (km *kernelMode) stats() kmirror.Stats {
	if km == nil {
		return kmirror.Stats{}
	}
	return km.m.Stats()
}

// failed is closed when the mirror has given up following the kernel (it lost events and could not
// subscribe again): the table would go stale, so run stops with an error. nil (never ready) in normal mode.
func (km *kernelMode) failed() <-chan struct{} {
	if km == nil {
		return nil
	}
	return km.m.Failed()
}

// err says why failed was closed.
func (km *kernelMode) err() error {
	if km == nil {
		return nil
	}
	if err := km.m.Err(); err != nil {
		return fmt.Errorf("--kernel: %w; restart xdpfwd to read the kernel's state again", err)
	}
	return nil
}

// close stops following the kernel and logs the mirror's counters.
func (km *kernelMode) close() {
	if km == nil {
		return
	}
	km.m.Close()
	km.kp.Close()
	s := km.m.Stats()
	km.log.Info("kernel mirror stopped", "route_events", s.RouteEvents, "route_updates", s.RouteUpdates,
		"route_errors", s.RouteErrors, "neighbours_set", s.NeighboursSet, "neighbours_failed", s.NeighboursFailed,
		"resolve_requests", s.ResolveRequests, "resolve_dropped", s.ResolveDropped, "resolve_errors", s.ResolveErrors,
		"resyncs", s.Resyncs, "resync_errors", s.ResyncErrors)
}
