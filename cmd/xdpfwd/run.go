package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"github.com/xdpnet/xdpnet/internal/caps"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/metrics"
	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/poller"
	"github.com/xdpnet/xdpnet/rings"
	"github.com/xdpnet/xdpnet/stack"
)

// runOptions is what the flags of `xdpfwd run` say.
type runOptions struct {
	ifaces    ifaceFlags
	routes    routeFlags
	mode      string
	idleSpin  time.Duration
	queues    int
	cpus      string
	bind      string
	xdpMode   string
	replace   bool
	stats     time.Duration
	logFormat string
	logLevel  string
	pcap      string
	pcapHook  string
	pcapSize  byteSize
	pcapFiles int
	// ops.go: --config and --metrics; fileRoutes and acl come from the config file only.
	config     string
	metrics    string
	fileRoutes []stack.Route
	acl        []pipeline.Rule
	kernel     kernelOptions // kernel.go: --kernel, --table
}

func newRunFlags(out io.Writer) (*flag.FlagSet, *runOptions) {
	o := &runOptions{pcapSize: defaultPcapSize, pcapFiles: defaultPcapFiles}
	fs := flag.NewFlagSet("xdpfwd run", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Var(&o.ifaces, "iface", "a port: `NAME=ADDR/PLEN[,ADDR/PLEN]` (e.g. r0=198.18.0.1/24,2001:2::1/64; an IPv6 address\n"+
		"turns IPv6 on for the port), or NAME alone to take its addresses from the kernel (IPv4, and IPv6 of\n"+
		"global scope; the link-local one xdpfwd makes from the MAC); repeat for each interface (the same NAME\n"+
		"twice adds addresses)")
	fs.Var(&o.routes, "route", "a static route: `PREFIX=NEXTHOP` (198.20.0.0/16=198.19.0.2, 2001:2:100::/48=fe80::2%r1;\n"+
		"PREFIX may be default for 0.0.0.0/0, or ::/0),\n"+
		"PREFIX=blackhole (drop silently) or PREFIX=unreachable (drop, answer ICMP unreachable); repeatable.\n"+
		"Connected routes of the --iface addresses are added by themselves")
	fs.StringVar(&o.mode, "mode", "adaptive", "poll mode: adaptive (spin under load, sleep in poll(2) when idle) or busy (always spin, a full core per queue)")
	fs.DurationVar(&o.idleSpin, "idle-spin", 50*time.Microsecond, "adaptive mode: how long a queue keeps polling after its last packet before it sleeps (`DURATION`);\n"+
		"longer catches more packets without a wake-up (lower latency), shorter leaves more CPU to other programs")
	fs.IntVar(&o.queues, "queues", 1, "number of queues per interface, each with its own poller thread (at most the interfaces' queue count)")
	fs.StringVar(&o.cpus, "cpus", "", "pin queue q to the q-th CPU of this `LIST` (e.g. 0,2-3); empty: no pinning")
	fs.StringVar(&o.bind, "bind", "auto", "AF_XDP bind mode: auto (zero-copy when the driver can), copy or zerocopy")
	fs.StringVar(&o.xdpMode, "xdp-mode", "auto", "XDP attach mode: auto (native, falling back to generic), native or generic")
	fs.BoolVar(&o.replace, "replace", false, "replace an XDP program already attached to an interface through netlink")
	fs.DurationVar(&o.stats, "stats", 0, "log one line of counters (pps per port, drops by reason) every `DURATION`; 0 = off")
	fs.StringVar(&o.logFormat, "log-format", "text", "log format on stderr: text or json")
	fs.StringVar(&o.logLevel, "log-level", "info", "the least severe log records written: debug, info, warn or error")
	fs.StringVar(&o.pcap, "pcap", "", "write a pcap capture of the packets seen at --pcap-hook to `FILE` (read it with tcpdump -r).\n"+
		"The file is created 0600 and must not exist (nor FILE.1, ...): xdpfwd never overwrites a file or follows a\n"+
		"symbolic link. When FILE reaches --pcap-size it becomes FILE.1 (FILE.1 becomes FILE.2, ...) and a new FILE\n"+
		"starts; at most --pcap-files files are kept, the oldest is removed")
	fs.Var(&o.pcapSize, "pcap-size", "with --pcap: the most bytes in one capture file (`SIZE`, e.g. 100M, 1G; K, M, G are KiB, MiB, GiB)")
	fs.IntVar(&o.pcapFiles, "pcap-files", defaultPcapFiles, "with --pcap: the most capture files kept (`N`), the one being written included;\n"+
		"disk used is at most N x --pcap-size")
	fs.StringVar(&o.pcapHook, "pcap-hook", "prerouting", "hook the --pcap tap sits at: prerouting, input, forward, output or postrouting")
	addOpsFlags(fs, o)
	addKernelFlags(fs, &o.kernel)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: xdpfwd run --iface NAME=ADDR/PLEN [--iface ...] [--route PREFIX=NEXTHOP ...] [flags]

Routes IPv4 and IPv6 between the interfaces in user space (AF_XDP): every frame those interfaces receive
goes to xdpfwd, which answers ARP, NDP and ping for its addresses, forwards (TTL and hop limit,
fragmentation or packet too big, ICMP and ICMPv6 errors as RFC 1812 and RFC 4443 ask), and resolves next
hops with ARP and NDP. Stop it with SIGINT or SIGTERM: it then prints a summary (packets
per port, drops by reason, frame accounting) and exits 0.

At start it refuses an interface whose MTU is larger than a 2048-byte frame holds (1522), and warns
about RX queues that --queues leaves to the kernel and, unless --kernel, about an interface that carries
the kernel's default route or this SSH session: xdpfwd takes every frame those interfaces receive.

Example:
  xdpfwd run --iface r0=198.18.0.1/24 --iface r1=198.19.0.1/24 --route 198.20.0.0/16=198.19.0.2 --stats 1s

Needs root, or CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF and CAP_IPC_LOCK.

Flags:
`)
		fs.PrintDefaults()
	}
	return fs, o
}

// runConfig is runOptions checked and converted.
type runConfig struct {
	poller    poller.Config
	stack     stack.Config
	stats     time.Duration
	pcap      string
	pcapHook  pipeline.Hook
	pcapSize  int64
	pcapFiles int
	logLevel  slog.Level
	ops       opsConfig
	kernel    kernelOptions
}

func parseRunArgs(args []string, out io.Writer) (*runOptions, error) {
	fs, o := newRunFlags(io.Discard) // errors are reported once, by the caller, without the long usage
	if err := parseFlags(fs, args, out); err != nil {
		return nil, err
	}
	if err := o.loadConfigFile(fs); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, usagef("unexpected argument %q (every setting is a flag; see xdpfwd help run)", fs.Arg(0))
	}
	if len(o.ifaces) == 0 {
		return nil, usagef("no interfaces: give at least one --iface NAME=ADDR/PLEN (e.g. --iface r0=198.18.0.1/24)")
	}
	return o, nil
}

// check validates the options that need no system access.
func (o *runOptions) check() (*runConfig, error) {
	c := &runConfig{stats: o.stats, pcap: o.pcap, pcapSize: int64(o.pcapSize), pcapFiles: o.pcapFiles}
	var err error
	if c.poller.Mode, err = poller.ParsePollMode(o.mode); err != nil {
		return nil, usagef("--mode: %v", err)
	}
	if o.idleSpin <= 0 || o.idleSpin > time.Second {
		return nil, usagef("--idle-spin %v: want a duration from 1us to 1s, such as 50us", o.idleSpin)
	}
	c.poller.IdleSpin = o.idleSpin
	if o.queues < 1 {
		return nil, usagef("--queues %d: want at least 1", o.queues)
	}
	c.poller.Queues = o.queues
	if c.poller.CPUs, err = parseCPUList(o.cpus); err != nil {
		return nil, usageError{err}
	}
	if c.poller.Bind, err = rings.ParseBindMode(o.bind); err != nil {
		return nil, usagef("--bind: %v", err)
	}
	if c.poller.XDPMode, err = poller.ParseXDPMode(o.xdpMode); err != nil {
		return nil, usagef("--xdp-mode %q: want auto, native or generic", o.xdpMode)
	}
	c.poller.ReplaceXDP = o.replace
	if o.stats < 0 {
		return nil, usagef("--stats %v: want a positive interval such as 1s, or 0 for off", o.stats)
	}
	if o.logFormat != "text" && o.logFormat != "json" {
		return nil, usagef("--log-format %q: want text or json", o.logFormat)
	}
	if c.logLevel, err = parseLogLevel(o.logLevel); err != nil {
		return nil, usagef("--log-level %q: want debug, info, warn or error", o.logLevel)
	}
	if c.pcapHook, err = pipeline.ParseHook(o.pcapHook); err != nil {
		return nil, usagef("--pcap-hook: %v", err)
	}
	if err := checkPcapBounds(c.pcapSize, c.pcapFiles); err != nil {
		return nil, usageError{err}
	}
	for _, r := range o.routes {
		sr := stack.Route{Prefix: r.Prefix, NextHop: r.NextHop}
		switch r.Kind {
		case "blackhole":
			sr.Type = stack.Blackhole
		case "unreachable":
			sr.Type = stack.Unreachable
		default:
			sr.Type = stack.Unicast
		}
		c.stack.Routes = append(c.stack.Routes, sr)
	}
	c.stack.Routes = append(c.stack.Routes, o.fileRoutes...)
	c.ops = o.opsConfig()
	if err := o.kernel.check(o.ifaces); err != nil {
		return nil, err
	}
	c.kernel = o.kernel
	for _, s := range o.ifaces {
		c.poller.Interfaces = append(c.poller.Interfaces, s.Name)
		c.stack.Interfaces = append(c.stack.Interfaces, stack.Interface{Name: s.Name, Addrs: s.Addrs})
	}
	return c, nil
}

// kernelAddrs fills in the addresses of interfaces given without one, from the kernel of the current
// network namespace: its IPv4 addresses and its global IPv6 ones (kernelPrefixes). In kernel-mirror mode
// they are where the stack starts; internal/kmirror follows their changes.
func kernelAddrs(ifaces []stack.Interface) error {
	for i := range ifaces {
		if len(ifaces[i].Addrs) > 0 {
			continue
		}
		name := ifaces[i].Name
		l, err := netlink.LinkByName(name)
		if err != nil {
			return usagef("--iface %s: no such interface in this network namespace (check `ip link`): %v", name, err)
		}
		as, err := netlink.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			return fmt.Errorf("--iface %s: read its addresses: %w", name, err)
		}
		if ifaces[i].Addrs = kernelPrefixes(as); len(ifaces[i].Addrs) == 0 {
			return usagef("--iface %s: the interface has no IPv4 address and no global IPv6 address; give one with --iface %s=ADDR/PLEN or add one with `ip addr add`", name, name)
		}
	}
	return nil
}

// kernelPrefixes picks the addresses xdpfwd takes over from those the kernel has on an interface: every
// IPv4 one, and the IPv6 ones of global scope (unique local ones included). IPv6 link-local addresses are
// left to the stack, which makes its own from the MAC (RFC 4291 §2.5.6) and answers NDP for it; temporary
// addresses (RFC 8981) are a host's source addresses, not an interface's; an address whose duplicate address
// detection failed belongs to another node. A tentative one is taken: the stack runs DAD for it itself
// (RFC 4862 §5.4).
func kernelPrefixes(as []netlink.Addr) []netip.Prefix {
	var ps []netip.Prefix
	for _, a := range as {
		if a.IPNet == nil {
			continue
		}
		ones, _ := a.Mask.Size()
		if ip4 := a.IP.To4(); ip4 != nil && len(a.Mask) == net.IPv4len {
			ip, _ := netip.AddrFromSlice(ip4)
			ps = append(ps, netip.PrefixFrom(ip, ones))
			continue
		}
		ip, ok := netip.AddrFromSlice(a.IP.To16())
		if !ok || ip.Is4In6() || ip.IsLinkLocalUnicast() || a.Scope != unix.RT_SCOPE_UNIVERSE ||
			a.Flags&(unix.IFA_F_DADFAILED|unix.IFA_F_TEMPORARY) != 0 {
			continue
		}
		ps = append(ps, netip.PrefixFrom(ip, ones))
	}
	return ps
}

// missingCaps names the capabilities `run` lacks, or returns "".
func missingCaps() string {
	eff, err := caps.Effective()
	if err != nil {
		return ""
	}
	var miss []string
	if !eff.Has(caps.NetAdmin) {
		miss = append(miss, "CAP_NET_ADMIN")
	}
	if !eff.Has(caps.NetRaw) {
		miss = append(miss, "CAP_NET_RAW")
	}
	if !eff.Has(caps.BPF) && !eff.Has(caps.SysAdmin) {
		miss = append(miss, "CAP_BPF")
	}
	var rl unix.Rlimit
	if !eff.Has(caps.IPCLock) && (unix.Getrlimit(unix.RLIMIT_MEMLOCK, &rl) != nil || rl.Cur != unix.RLIM_INFINITY) {
		// XDP_UMEM_REG charges the UMEM to RLIMIT_MEMLOCK unless the process has CAP_IPC_LOCK.
		miss = append(miss, "CAP_IPC_LOCK")
	}
	return strings.Join(miss, ", ")
}

// parseLogLevel reads the names slog prints: debug, info, warn, error (any case).
func parseLogLevel(s string) (slog.Level, error) {
	var l slog.Level
	switch strings.ToLower(s) {
	case "debug", "info", "warn", "error":
		return l, l.UnmarshalText([]byte(s))
	}
	return l, fmt.Errorf("unknown log level %q", s)
}

func newLogger(format string, level slog.Level, w io.Writer) *slog.Logger {
	opts := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

func cmdRun(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o, err := parseRunArgs(args, stdout)
	if err != nil {
		if errors.Is(err, errHelpShown) {
			return err
		}
		if !errors.As(err, new(usageError)) {
			return err
		}
		return usagef("%v (see xdpfwd help run)", err)
	}
	c, err := o.check()
	if err != nil {
		return err
	}
	log := newLogger(o.logFormat, c.logLevel, stderr)
	// XDPFWD_SKIP_CAP_CHECK=1 lets the kernel, not this guess, refuse: the test that proves the systemd
	// unit's capability set minimal needs to see each missing capability actually fail.
	if m := missingCaps(); m != "" && os.Getenv("XDPFWD_SKIP_CAP_CHECK") != "1" {
		return fmt.Errorf("missing %s: run as root, or grant them, e.g. sudo setcap cap_net_admin,cap_net_raw,cap_bpf,cap_ipc_lock+ep %s", m, exeName())
	}
	if err := kernelAddrs(c.stack.Interfaces); err != nil {
		return err
	}
	for _, w := range takeoverWarnings(c.poller.Interfaces, c.kernel.enabled, os.Getenv("SSH_CONNECTION")) {
		log.Warn("xdpfwd: " + w)
	}
	return runRouter(ctx, c, log, stdout)
}

func exeName() string {
	if p, err := os.Executable(); err == nil {
		return p
	}
	return "xdpfwd"
}

// runRouter builds the stack and the poller, runs until ctx ends and prints the summary to out.
func runRouter(ctx context.Context, c *runConfig, log *slog.Logger, out io.Writer) error {
	hooks := new(pipeline.Hooks)
	var tap *pipeline.Tap
	var pcapFiles *pcapFiles
	if c.pcap != "" {
		pf, err := createPcapFiles(c.pcap, c.pcapFiles, log)
		if err != nil {
			return usagef("--pcap: %v", err)
		}
		pcapFiles = pf
		tap, err = pipeline.NewTap(pf.cur, pipeline.TapConfig{Nanosecond: true, FileSize: c.pcapSize, Next: pf.next})
		if err != nil {
			pf.close()
			return fmt.Errorf("--pcap: %w", err)
		}
		// First at its hook, so the capture shows what arrived there whatever later stages decide.
		hooks.Register(c.pcapHook, -1000, "pcap", tap)
	}
	closeTap := func() {
		if tap == nil {
			return
		}
		if err := tap.Close(); err != nil {
			log.Error("pcap", "file", c.pcap, "err", err)
		}
		if err := pcapFiles.close(); err != nil {
			log.Error("pcap", "file", c.pcap, "err", err)
		}
		log.Info("pcap closed", "file", c.pcap, "hook", c.pcapHook.String(), "captured", tap.Captured(),
			"copies_dropped", tap.Dropped(), "rotations", tap.Rotations())
		tap = nil
	}
	defer closeTap()

	sd, err := newNotifier()
	if err != nil {
		// systemd's start times out without READY=1; say why in the journal.
		log.Error("xdpfwd: cannot notify the service manager", "err", err)
	}
	defer sd.close()
	ops, err := newOps(c.ops, hooks, log, sd)
	if err != nil {
		return err
	}
	defer ops.close()

	sc := c.stack
	sc.Hooks = hooks
	sc.Logger = log
	km, err := setupKernel(c.kernel, &sc, &c.poller, log)
	if err != nil {
		return err
	}
	defer km.close()
	st, err := stack.New(sc)
	if err != nil {
		return usagef("configuration: %v", err)
	}
	if err := km.start(st); err != nil {
		return err
	}
	pc := c.poller
	pc.NewHandler = st.NewHandler
	pc.Logger = log
	p, err := poller.New(pc)
	if err != nil {
		if errors.Is(err, rings.ErrNoDevice) || errors.Is(err, rings.ErrNoQueue) || errors.Is(err, poller.ErrMTU) {
			return usageError{err}
		}
		return err
	}
	defer p.Close()
	if procs := runtime.GOMAXPROCS(0); procs <= pc.Queues {
		// Each polling queue holds a P (poller.Run warns about this); the control plane - netlink following,
		// metrics, SIGHUP reloads - needs one of its own. The OS still schedules the threads on the CPUs.
		runtime.GOMAXPROCS(pc.Queues + 1)
		log.Info("xdpfwd: GOMAXPROCS raised so that the control plane keeps a P", "from", procs, "to", pc.Queues+1)
	}

	var ifs []string
	for _, ic := range c.stack.Interfaces {
		for _, a := range ic.Addrs {
			ifs = append(ifs, ic.Name+"="+a.String())
		}
	}
	routes := st.Routes()
	log.Info("xdpfwd running", "interfaces", strings.Join(ifs, " "), "queues", pc.Queues, "mode", pc.Mode.String(),
		"routes", routeSummary(routes), "pid", os.Getpid())

	start := time.Now()
	statsDone := make(chan struct{})
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	ops.start(runCtx, p, st, km)
	// Ready: the programs are attached and the sockets bound (poller.New), the routes are in the table, the
	// metrics listener and the SIGHUP handler are up. Frames arriving before Run's queues start wait on the
	// RX rings.
	if err := sd.send("READY=1", status("forwarding on %s; %d routes", strings.Join(ifs, " "), len(routes))); err != nil {
		log.Error("xdpfwd: cannot notify the service manager", "err", err)
	}
	mirrorLost := make(chan error, 1)
	go func() {
		select {
		case <-km.failed():
			log.Error("kernel mirror stopped following the kernel; stopping", "err", km.err())
			mirrorLost <- km.err()
			sd.send("STOPPING=1", status("kernel mirror lost: %v; stopping", km.err()))
			cancel()
		case <-runCtx.Done():
			sd.send("STOPPING=1", status("stopping: draining the queues, detaching XDP"))
		}
	}()
	go func() {
		defer close(statsDone)
		if c.stats > 0 {
			periodicStats(runCtx, c.stats, p, st, log)
		}
	}()
	statusDone := make(chan struct{})
	go func() {
		defer close(statusDone)
		if sd != nil {
			notifyStatus(runCtx, sd, 10*time.Second, p, st)
		}
	}()
	runErr := p.Run(runCtx)
	cancel()
	<-statsDone
	<-statusDone
	closeTap()
	checkErr := p.CheckFrames()
	writeSummary(out, time.Since(start), p.Stats(), st.Stats(), checkErr)
	log.Info("xdpfwd stopped", "uptime", time.Since(start).Round(time.Millisecond).String(), "frame_accounting", okOr(checkErr))
	sd.send(status("stopped after %s; frame accounting %s", time.Since(start).Round(time.Second), okOr(checkErr)))
	if runErr != nil {
		return runErr
	}
	select {
	case err := <-mirrorLost:
		return err
	default:
	}
	if checkErr != nil {
		return fmt.Errorf("frame accounting failed (a bug in xdpnet; please report it with this output): %w", checkErr)
	}
	return nil
}

func okOr(err error) string {
	if err == nil {
		return "OK"
	}
	return err.Error()
}

// periodicStats logs one line per interval: per-port packet rates and the drops of the interval by reason.
// The keys are stable (the demo reads them): "<port>_rx_pps", "<port>_tx_pps", "drops", "forwarded" (both
// families), "forwarded6" (its IPv6 part).
func periodicStats(ctx context.Context, every time.Duration, p *poller.Poller, st *stack.Stack, log *slog.Logger) {
	t := time.NewTicker(every)
	defer t.Stop()
	prev, prevSt, prevT := p.Stats(), st.Stats(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cur, curSt := p.Stats(), st.Stats()
			sec := now.Sub(prevT).Seconds()
			attrs := []any{"interval", now.Sub(prevT).Round(time.Millisecond).String()}
			for i, ps := range cur.Ports {
				attrs = append(attrs,
					ps.Name+"_rx_pps", uint64(float64(ps.RxPackets-prev.Ports[i].RxPackets)/sec),
					ps.Name+"_tx_pps", uint64(float64(ps.TxPackets-prev.Ports[i].TxPackets)/sec))
			}
			var d pipeline.DropCounters
			for r := range d {
				d[r] = cur.Drops[r] - prev.Drops[r]
			}
			attrs = append(attrs, "drops", dropsString(d), "forwarded", curSt.Forwarded-prevSt.Forwarded,
				"forwarded6", curSt.Forwarded6-prevSt.Forwarded6)
			log.Info("stats", attrs...)
			prev, prevSt, prevT = cur, curSt, now
		}
	}
}

// notifyStatus tells the service manager every interval what is forwarded, for `systemctl status`.
func notifyStatus(ctx context.Context, sd *notifier, every time.Duration, p metrics.PollerSource, st metrics.StackSource) {
	t := time.NewTicker(every)
	defer t.Stop()
	prev, prevSt, prevT := p.Stats(), st.Stats(), time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			cur, curSt := p.Stats(), st.Stats()
			sec := now.Sub(prevT).Seconds()
			var drops uint64
			for r := range cur.Drops {
				drops += cur.Drops[r] - prev.Drops[r]
			}
			fwd6 := curSt.Forwarded6 - prevSt.Forwarded6
			fwd4 := curSt.Forwarded - prevSt.Forwarded - min(fwd6, curSt.Forwarded-prevSt.Forwarded)
			sd.send(status("forwarding %.0f pps IPv4, %.0f pps IPv6; %.0f drops/s; %d neighbours",
				float64(fwd4)/sec, float64(fwd6)/sec, float64(drops)/sec, curSt.NeighbourEntries))
			prev, prevSt, prevT = cur, curSt, now
		}
	}
}

// dropsString prints non-zero drop counters as "reason=n,reason=n", sorted by name; "none" when there are none.
func dropsString(d pipeline.DropCounters) string {
	var parts []string
	for r, n := range d {
		if n != 0 {
			parts = append(parts, pipeline.DropReason(r).String()+"="+strconv.FormatUint(n, 10))
		}
	}
	if len(parts) == 0 {
		return "none"
	}
	sort.Strings(parts)
	return strings.Join(parts, ",")
}

// writeSummary prints the end-of-run report. Its lines are meant for people and for tests: "drop REASON N"
// lines, "stack NAME N" lines and a "frame accounting: OK" line.
func writeSummary(w io.Writer, uptime time.Duration, ps poller.Stats, ss stack.Stats, check error) {
	fmt.Fprintf(w, "xdpfwd summary after %s\n", uptime.Round(time.Millisecond))
	fmt.Fprintf(w, "%-6s %12s %14s %12s %14s %12s %14s\n", "port", "rx_packets", "rx_bytes", "tx_packets", "tx_bytes", "tx_ring_full", "kernel_rx_drop")
	for _, p := range ps.Ports {
		fmt.Fprintf(w, "%-6s %12d %14d %12d %14d %12d %14d\n", p.Name, p.RxPackets, p.RxBytes, p.TxPackets, p.TxBytes, p.TxRingFull,
			p.Kernel.Rx_dropped+p.Kernel.Rx_ring_full+p.Kernel.Rx_fill_ring_empty_descs)
	}
	names := ps.DropsByName()
	keys := make([]string, 0, len(names))
	for k := range names {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if len(keys) == 0 {
		fmt.Fprintln(w, "drops: none")
	} else {
		fmt.Fprintln(w, "drops by reason:")
	}
	for _, k := range keys {
		fmt.Fprintf(w, "drop %-24s %d\n", k, names[k])
	}
	// The same counters as the metrics, and the table's size now.
	for _, c := range metrics.StackCounters(ss) {
		fmt.Fprintf(w, "stack %-24s %d\n", c.Name, c.Value)
	}
	fmt.Fprintf(w, "stack %-24s %d\n", "neighbour_entries", ss.NeighbourEntries)
	if check == nil {
		fmt.Fprintln(w, "frame accounting: OK")
	} else {
		fmt.Fprintf(w, "frame accounting: FAILED: %v\n", check)
	}
}

// counter reads "drop REASON N" or "stack NAME N" from a summary writeSummary wrote; 0 when absent.
func counter(summary, kind, name string) uint64 {
	m := regexp.MustCompile(`(?m)^` + kind + ` ` + regexp.QuoteMeta(name) + ` +(\d+)$`).FindStringSubmatch(summary)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n
}

// routeSummary is the routes for the start line: all of them for a small table, the count alone for a large
// one (a routing daemon's full table is a million routes; `xdpfwd routes` prints them).
func routeSummary(routes []stack.Route) string {
	const listed = 16
	if len(routes) > listed {
		return fmt.Sprintf("%d (listed at /routes on the --metrics address)", len(routes))
	}
	s := make([]string, len(routes))
	for i, r := range routes {
		s[i] = r.String()
	}
	return strings.Join(s, "; ")
}
