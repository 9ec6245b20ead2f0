// Command bench measures xdpnet against other packet-processing implementations on veth pairs in network
// namespaces (gen -> dut -> sink), on this machine:
//
//	go run ./bench [-runs 3] [-duration 3s] [-scenarios rxdrop,txonly,l2fwd,l3fwd,l2fwd-2q,tcp,tcpfwd,rtt] [-sizes 64,...,imix] [-json FILE] [-out DIR]
//	go run ./bench -scenario soak -duration 10m [-every 10s]
//	go run ./bench -scenario tcppath -runs 5 [-loss 0,1,5] [-path-size 67108864]
//
// Scenarios: rxdrop (the DUT receives and drops; counted at the DUT), txonly (the generator alone; counted at
// its peer), l2fwd (MAC-rewrite forwarding in0 -> out0), l3fwd (IPv4 routing in0 -> out0), l2fwd-2q (l2fwd on two
// queues), tcp (one Linux TCP flow into xdpnet's stack and into Linux over a veth, in Gbit/s; see tcp.go),
// tcpfwd (iperf3 through the DUT, 1 and 8 flows, offloads on and off) and rtt (ping through the DUT; both in
// tcpfwd.go). l2fwd and l3fwd run every -sizes frame size (RFC 2544's and the IMIX), and after the full-rate
// window a fixed-rate phase measures the whole-system CPU per forwarded packet from /proc/stat (syscpu.go).
// Implementations: xdpnet (the poller with pktgen's sink, an l2fwd handler or the stack), asavie
// (github.com/asavie/xdp: its own l2fwd example, and an rxdrop on its API), kernel (ip_forward=1; Linux TCP in
// tcp) and dpdk (dpdk-testpmd with the AF_XDP PMD in mac forwarding mode, when installed: in l2fwd, and in
// l3fwd as a reference that does not route; it reserves 2 MiB huge pages for the run and gives them back at the
// end). Each configuration runs -runs times, interleaved with the others, and the median is reported, with the
// ratio to the scenario's reference implementation. The generator is the kernel's XDP live-frames generator
// (internal/pktgen.Live) on -gen-cpu, or with -gen xsk (and always for txonly and l2fwd-2q) pktgen on the
// poller; DUTs are pinned to -dut-cpu. Packets are counted at the sink by a tc ingress program
// (bench/xdpcount) whose work RPS moves to the generator's CPU, after a warmup, over -duration.
//
// The soak (soak.go) runs the xdpnet l3fwd DUT at full rate for -duration and prints memory, GC and frame
// accounting samples with a verdict on whether they stayed flat (and writes soak.md to -out).
//
// It needs root. It writes a markdown table to stdout, and results.json, results.md and results.svg to -out.
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/bench/xdpcount"
	"github.com/xdpnet/xdpnet/internal/pktgen"
	"github.com/xdpnet/xdpnet/poller"
)

type options struct {
	runs             int
	warmup, duration time.Duration
	scenarios        []string
	flows            int
	genCPU, dutCPU   int
	gen              string // "live" or "xsk"
	genMode, dutMode string
	dutBudget        int
	dutRing          int
	pathCC           string // tcppath: Linux's congestion control ("" keeps the default)
	threadedNAPI     bool
	asavieBin        string
	idle             time.Duration
	quiet            bool
	impls            []string // nil: all
	// sizes are the frame sizes of l2fwd and l3fwd ("64".."1518", "imix").
	sizes []string
	// cpuRate is the offered load (pps) of the fixed-rate phase of l2fwd and l3fwd, tcpRate tcpfwd's (bit/s, all
	// flows); 0 skips the phase.
	cpuRate   int
	tcpRate   float64
	pings     int
	xdpfwdBin string
}

// rfc2544Sizes are the frame sizes of RFC 2544 §9.1 for Ethernet, and the simple IMIX (pktgen.IMIX).
var rfc2544Sizes = []string{"64", "128", "256", "512", "1024", "1280", "1518", "imix"}

// implementations of each scenario, reference (the ratio's denominator) first after xdpnet.
var implsOf = map[string][]string{
	"rxdrop":   {"xdpnet", "asavie"},
	"txonly":   {"xdpnet"},
	"l2fwd":    {"xdpnet", "asavie", "dpdk"},
	"l3fwd":    {"xdpnet", "kernel", "dpdk"},
	"l2fwd-2q": {"xdpnet"},
	"tcp":      {"xdpnet", "kernel"},
	"tcpfwd":   {"xdpnet", "kernel", "dpdk"},
	"rtt":      {"xdpnet", "xdpnet-busy", "kernel", "dpdk"},
}

var reference = map[string]string{"rxdrop": "asavie", "l2fwd": "asavie", "l3fwd": "kernel", "tcp": "kernel", "tcpfwd": "kernel", "rtt": "kernel"}

var allScenarios = []string{"rxdrop", "txonly", "l2fwd", "l3fwd", "l2fwd-2q", "tcp", "tcpfwd", "rtt"}

// params are a scenario's configurations: frame sizes of l2fwd and l3fwd, flows and offloads of tcpfwd.
func params(o *options, sc string) []string {
	switch sc {
	case "l2fwd", "l3fwd":
		return o.sizes
	case "tcpfwd":
		return tcpfwdParams
	}
	return []string{""}
}

// runsIn says whether impl takes part in sc with param: testpmd's mac forward passes a veth peer's partial
// checksums through, so in tcpfwd it runs with offloads off only.
func runsIn(sc, param, impl string) bool {
	return !(sc == "tcpfwd" && impl == "dpdk" && !offloadsOff(param))
}

// bitScenario: the scenario's figure is a TCP payload rate (bit/s), not pps.
func bitScenario(sc string) bool { return sc == "tcp" || sc == "tcpfwd" }

// Result is one configuration's runs.
type Result struct {
	Scenario, Impl string
	// Param is the frame size of l2fwd and l3fwd ("64".."1518", "imix"), the flows and offloads of tcpfwd.
	Param     string    `json:",omitempty"`
	Runs      []float64 `json:"RunsPPS,omitempty"`
	MedianPPS float64   `json:",omitempty"`
	// RunsBitsPerSec and MedianBitsPerSec replace the pps fields for the tcp and tcpfwd scenarios: the TCP
	// payload rate at the receiver, in bit/s; Ratio is then this rate over the kernel's in the same round. In
	// the pps scenarios they are the frames counted at the sink in bit/s (frame bytes + FCS, no preamble or gap).
	RunsBitsPerSec   []float64 `json:",omitempty"`
	MedianBitsPerSec float64   `json:",omitempty"`
	GenPPS           float64   // median generator rate
	// SocketDropPPS is the median rate of frames the kernel dropped at the DUT's AF_XDP sockets (xdpnet DUTs and
	// asavie's rxdrop; 0 where not read).
	SocketDropPPS float64
	// Ratio is the median over rounds of this run's pps / the reference's pps in the same round: adjacent runs
	// share the machine's background load, so the per-round ratio is steadier than a ratio of medians.
	Ratio float64 `json:",omitempty"`
	// LoadAvg is the 1-minute load average when each run started (other work on the machine shows here).
	LoadAvg []float64
	// AllocsPerPacket is runtime Mallocs during the window / packets (xdpnet l2fwd, l3fwd).
	AllocsPerPacket *float64 `json:",omitempty"`
	// CPUNsPerPacketRuns is, per run, the DUT's CPU time over the window (user+system of its threads, schedstat
	// run time) divided by the packets counted in the same window (forwarded, or received for rxdrop), in ns.
	// Empty where the DUT has no threads of its own (kernel forwarding, txonly). CPUNsPerPacket is the median.
	CPUNsPerPacketRuns []float64 `json:",omitempty"`
	CPUNsPerPacket     float64   `json:",omitempty"`
	// CPUPercent is the median of the DUT's CPU time over the window, in percent of one core.
	CPUPercent float64 `json:",omitempty"`
	// CPURatio is the median over rounds of this run's CPU ns/packet / xdpnet's in the same round (not set for
	// xdpnet itself): 1.4 means this implementation spends 1.4 times xdpnet's CPU per packet.
	CPURatio float64 `json:",omitempty"`
	// SysCPURuns is, per run, the whole-system busy CPU time (/proc/stat: user+nice+system+irq+softirq of all
	// CPUs) over the fixed-rate window divided by the packets forwarded in it (tcpfwd: by the 1448-byte segments
	// of payload delivered), in ns; SysCPU is the median, SysCPURatio the median over rounds of this run's over
	// xdpnet's. OfferedRate is the fixed rate (pps; tcpfwd: bit/s), Delivered the median share of it that
	// arrived, BusyPct and StealPct the median busy and steal time in percent of all CPUs.
	// SysCPU subtracts the user+system time of processes outside the bench (others' work on a shared machine);
	// SysCPURaw keeps it (the plain /proc/stat figure) and OthersPct is their share of all CPUs.
	SysCPURuns  []float64 `json:",omitempty"`
	SysCPU      float64   `json:",omitempty"`
	SysCPURaw   float64   `json:",omitempty"`
	OthersPct   float64   `json:",omitempty"`
	SysCPURatio float64   `json:",omitempty"`
	OfferedRate float64   `json:",omitempty"`
	Delivered   float64   `json:",omitempty"`
	BusyPct     float64   `json:",omitempty"`
	StealPct    float64   `json:",omitempty"`
	// Retransmits is tcpfwd's median of TCP retransmissions in the unlimited window (iperf3's sender).
	Retransmits *float64 `json:",omitempty"`
	// RTTRuns are rtt's runs in microseconds; RTT the medians of their fields; Lost the echo requests without
	// reply, summed over runs.
	RTTRuns                                         []rttStats `json:",omitempty"`
	RTT                                             *rttStats  `json:",omitempty"`
	Lost                                            int        `json:",omitempty"`
	Error                                           string     `json:",omitempty"`
	genRuns                                         []float64
	dropRuns                                        []float64
	allocs                                          []float64
	cpuPct                                          []float64
	byRound                                         map[int]float64
	cpuRound                                        map[int]float64
	sysRound                                        map[int]float64
	delivered, busy, steal, retrans, sysRaw, others []float64
}

// Machine describes where the numbers come from.
type Machine struct {
	CPU    string
	Cores  int
	Kernel string
	Go     string
}

// Report is the JSON output.
type Report struct {
	Machine   Machine
	Date      string
	Runs      int
	Warmup    string
	Duration  string
	DUTMode   string
	DUTBudget int
	// GOMAXPROCS of the bench process (benchProcs).
	GOMAXPROCS int
	// CPURate (pps) and TCPRate (bit/s) are the offered loads of the fixed-rate phases.
	CPURate int
	TCPRate float64
	Results []*Result
	// IdleCPUPercent is the xdpnet DUT's (adaptive mode, l3fwd stack) poller thread CPU time with no traffic,
	// in percent of one core.
	IdleCPUPercent *float64 `json:",omitempty"`
}

type trialResult struct {
	pps, genPPS, kdropPPS float64
	// bps is the tcp scenario's payload rate at the receiver, bit/s (pps and genPPS are 0 there).
	bps float64
	// detail breaks the xdpnet DUT's socket drops down (per second over the window), with its loop counters.
	detail string
	allocs float64 // -1: not measured
	// cpuPerPkt is the DUT's CPU ns per counted packet over the window, cpuPct its CPU time in percent of one
	// core; both -1 when the DUT has no threads of its own to read.
	cpuPerPkt, cpuPct float64
	// sysCPU is the fixed-rate phase's whole-system CPU ns per forwarded packet (-1: not measured), with the
	// busy and steal shares of all CPUs and the share of the offered load delivered.
	sysCPU, busyPct, stealPct, delivered float64
	// sysCPURaw is sysCPU with other processes' time left in (the plain /proc/stat figure), othersPct their
	// share of all CPUs.
	sysCPURaw, othersPct float64
	retrans              int
	rtt                  *rttStats
	lost                 int
}

// benchProcs is the bench process's GOMAXPROCS. The generator's pollers, the in-process DUTs' pollers and the
// Linux TCP sender of the tcp scenario share this one Go process, where in a deployment they would be other
// processes or machines. A pinned poller holds its P while it polls, so with GOMAXPROCS = 2 the generator or
// the sender took the P the DUT's application goroutines needed (the tcp receiver's reader ran on half a P).
// Enough Ps for all of them leave the CPUs to the kernel's scheduler and the pinning, as separate processes
// would have them.
func benchProcs() int { return max(4, 2*runtime.NumCPU()) }

func main() {
	runtime.GOMAXPROCS(benchProcs())
	o := &options{}
	flag.IntVar(&o.runs, "runs", 3, "runs of each configuration (interleaved); the median is reported")
	flag.DurationVar(&o.warmup, "warmup", time.Second, "traffic time before counting")
	flag.DurationVar(&o.duration, "duration", 3*time.Second, "counting window of each run")
	scen := flag.String("scenarios", strings.Join(allScenarios, ","), "comma-separated scenarios")
	one := flag.String("scenario", "", "one scenario; \"soak\" runs l3fwd xdpnet at full rate for -duration, sampling every -every; \"tcppath\" times curl against an HTTP server on xdpnet and on Linux (tcppath.go)")
	lossFlag := flag.String("loss", "0,1,5", "tcppath: random loss percentages, both ways")
	pathDirs := flag.String("path-cases", "send,recv,flood", "tcppath: which of send (server -> curl), recv (curl -> server) and flood (download during a SYN flood) to run")
	flag.StringVar(&o.pathCC, "path-cc", "", "tcppath: congestion control of the Linux hosts (net.ipv4.tcp_congestion_control in both namespaces, e.g. cubic); empty keeps the host's default")
	pathSize := flag.Int64("path-size", 64<<20, "tcppath: bytes of the file moved")
	every := flag.Duration("every", 10*time.Second, "soak: sampling interval")
	impls := flag.String("impls", "", "comma-separated implementations to run (default all: xdpnet,asavie,kernel,dpdk)")
	flag.IntVar(&o.flows, "flows", 16, "UDP flows (source ports) the generator varies over")
	sizes := flag.String("sizes", strings.Join(rfc2544Sizes, ","), "frame sizes of l2fwd and l3fwd, on the wire with FCS (64..1518), or imix")
	flag.IntVar(&o.cpuRate, "cpu-rate", 100000, "offered load (pps) of the fixed-rate phase of l2fwd and l3fwd, where the whole-system CPU per packet is measured; 0 skips it")
	flag.Float64Var(&o.tcpRate, "tcp-rate", 1e9, "total iperf3 rate (bit/s) of tcpfwd's fixed-rate phase; 0 skips it")
	flag.IntVar(&o.pings, "pings", 500, "echo requests per rtt run, 2 ms apart")
	flag.StringVar(&o.xdpfwdBin, "xdpfwd", "", "xdpfwd binary for tcpfwd and rtt (default: build ./cmd/xdpfwd)")
	flag.StringVar(&o.gen, "gen", "live", "generator: live (the kernel's XDP live-frames generator; txonly and l2fwd-2q still use xsk) or xsk (pktgen on the xdpnet poller)")
	flag.StringVar(&o.genMode, "gen-mode", "busy", "poll mode of the generator: busy or adaptive")
	flag.IntVar(&o.genCPU, "gen-cpu", 0, "CPU of the generator")
	flag.IntVar(&o.dutCPU, "dut-cpu", 1, "CPU of the device under test")
	flag.DurationVar(&o.idle, "idle", 3*time.Second, "window for the idle CPU measurement (0 skips it)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the whole run (generator and in-process DUTs) to this file")
	// On veth AF_XDP runs in copy mode, where one sendto transmits at most 32 frames (the kernel's generic xmit
	// budget). The poller now kicks until its TX ring is empty (bounded, poller/queue.go flushTX), but 32 still
	// measured better than 64, side by side (README.md, "DUT budget"): with 64 the DUT forwarded a smaller share
	// of the generated frames in l2fwd (0.53-0.66 vs 0.70-0.75) and l3fwd (0.39-0.54 vs 0.45-0.60).
	flag.IntVar(&o.dutBudget, "dut-budget", 32, "RX budget per port per loop of the xdpnet DUT (0: the poller's default, 64)")
	flag.IntVar(&o.dutRing, "dut-ring", 0, "ring size of the xdpnet DUT's sockets (0: the poller's default, 2048)")
	flag.BoolVar(&o.threadedNAPI, "threaded-napi", false, "run in0's NAPI as a kernel thread pinned to the DUT CPU, as a NIC's receive work on the poller's core (see README.md)")
	flag.StringVar(&o.dutMode, "dut-mode", "adaptive", "poll mode of the xdpnet DUT: adaptive or busy")
	jsonPath := flag.String("json", "", "JSON results file (default DIR/results.json)")
	outDir := flag.String("out", "bench/out", "directory for results.json, results.md and the chart results.svg")
	flag.Parse()
	o.scenarios = strings.Split(*scen, ",")
	if *one != "" && *one != "soak" && *one != "tcppath" {
		o.scenarios = []string{*one}
	}
	if *impls != "" {
		o.impls = strings.Split(*impls, ",")
	}
	o.sizes = strings.Split(*sizes, ",")
	for _, sz := range o.sizes {
		var c pktgen.Config
		frameConfig(&c, sz)
		if sz != "imix" && (c.FrameSize < pktgen.MinFrameSize || c.FrameSize > pktgen.MaxFrameSize || fmt.Sprint(c.FrameSize) != sz) {
			fmt.Fprintf(os.Stderr, "bench: -sizes: %q is no frame size: want %d..%d (bytes on the wire, FCS included) or imix\n", sz, pktgen.MinFrameSize, pktgen.MaxFrameSize)
			os.Exit(2)
		}
	}
	for _, s := range o.scenarios {
		if implsOf[s] == nil {
			fmt.Fprintf(os.Stderr, "bench: unknown scenario %q (want some of %s)\n", s, strings.Join(allScenarios, ","))
			os.Exit(2)
		}
	}
	if o.gen != "live" && o.gen != "xsk" {
		fmt.Fprintf(os.Stderr, "bench: -gen %q: want live or xsk\n", o.gen)
		os.Exit(2)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "bench: needs root (network namespaces, XDP, AF_XDP); run it with sudo")
		os.Exit(1)
	}
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	if *jsonPath == "" {
		*jsonPath = filepath.Join(*outDir, "results.json")
	}
	m := machine()
	fmt.Printf("machine: %s, %d cores, Linux %s, %s\n\n", m.CPU, m.Cores, m.Kernel, m.Go)
	if *one == "tcppath" {
		var losses []int
		for _, f := range strings.Split(*lossFlag, ",") {
			n, err := strconv.Atoi(f)
			if err != nil || n < 0 || n >= 100 {
				fmt.Fprintf(os.Stderr, "bench: -loss: %q is no percentage: want e.g. 0,1,5\n", f)
				os.Exit(2)
			}
			losses = append(losses, n)
		}
		if err := runTCPPath(o, m, strings.Split(*pathDirs, ","), losses, *pathSize, *outDir); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	if *one == "soak" {
		if err := runSoak(o, m, *every, *outDir); err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(1)
		}
		return
	}
	tmp, _ := os.MkdirTemp("", "xdpnet-bench")
	defer os.RemoveAll(tmp)
	if bin, err := buildAsavie(tmp); err == nil {
		o.asavieBin = bin
	} else {
		fmt.Fprintln(os.Stderr, "bench:", err)
	}
	if o.xdpfwdBin == "" {
		if bin, err := buildXdpfwd(tmp); err == nil {
			o.xdpfwdBin = bin
		} else {
			fmt.Fprintln(os.Stderr, "bench:", err)
		}
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench: cpuprofile:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	// Ctrl-C: give the huge pages back (the namespaces a killed run leaves are removed by the next run's
	// netlab.New, which cleans labs of processes that no longer run).
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, unix.SIGTERM)
	go func() {
		<-sig
		releaseHugepages()
		fmt.Fprintln(os.Stderr, "\nbench: interrupted")
		os.Exit(130)
	}()
	rep := run(o, m)
	releaseHugepages()
	md := table(rep)
	fmt.Print(md)
	if err := writeOutputs(rep, md, *jsonPath, *outDir); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
	fmt.Printf("\nwrote %s, %s, %s\n", *jsonPath, filepath.Join(*outDir, "results.md"), filepath.Join(*outDir, "results.svg"))
}

func machine() Machine {
	m := Machine{CPU: "unknown", Cores: runtime.NumCPU(), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		m.Kernel = unix.ByteSliceToString(u.Release[:])
	}
	return m
}

// run does every run of every configuration, interleaved: run 1 of all, then run 2 of all, ...
func run(o *options, m Machine) *Report {
	rep := &Report{Machine: m, Date: time.Now().UTC().Format(time.RFC3339), Runs: o.runs, Warmup: o.warmup.String(), Duration: o.duration.String(),
		DUTMode: o.dutMode, DUTBudget: o.dutBudget, GOMAXPROCS: runtime.GOMAXPROCS(0), CPURate: o.cpuRate, TCPRate: o.tcpRate}
	var cfgs []*Result
	for _, s := range o.scenarios {
		for _, p := range params(o, s) {
			for _, impl := range implsOf[s] {
				if (o.impls == nil || slices.Contains(o.impls, impl) || (impl == "xdpnet-busy" && slices.Contains(o.impls, "xdpnet"))) && runsIn(s, p, impl) {
					cfgs = append(cfgs, &Result{Scenario: s, Impl: impl, Param: p})
				}
			}
		}
	}
	rep.Results = cfgs
	total, done := o.runs*len(cfgs), 0
	start := time.Now()
	for r := 0; r < o.runs; r++ {
		for _, c := range cfgs {
			done++
			if c.Error != "" {
				continue // not available: do not retry
			}
			name := strings.TrimSpace(c.Scenario + " " + c.Param)
			if !o.quiet {
				fmt.Fprintf(os.Stderr, "\r[%2d/%d %3.0fs] %-8s %-6s run %d/%d ...                    ", done, total, time.Since(start).Seconds(), name, c.Impl, r+1, o.runs)
			}
			c.LoadAvg = append(c.LoadAvg, loadAvg())
			tr, err := trial(o, c.Scenario, c.Impl, c.Param)
			if err != nil {
				c.Error = err.Error()
				if !o.quiet {
					fmt.Fprintf(os.Stderr, "\r[%2d/%d] %s %s: %v\n", done, total, name, c.Impl, err)
				}
				continue
			}
			c.record(r, tr)
			if !o.quiet {
				fmt.Fprintf(os.Stderr, "\r[%2d/%d %3.0fs] %-8s %-6s run %d/%d: %s\n", done, total, time.Since(start).Seconds(), name, c.Impl, r+1, o.runs, tr.progress(c.Scenario))
			}
		}
	}
	for _, c := range cfgs {
		c.summarize()
	}
	for _, c := range cfgs {
		for _, d := range cfgs {
			if d.Scenario != c.Scenario || d.Param != c.Param {
				continue
			}
			if d.Impl == "xdpnet" && c.Impl != "xdpnet" {
				c.CPURatio = roundRatio(c.cpuRound, d.cpuRound)
				c.SysCPURatio = roundRatio(c.sysRound, d.sysRound)
			}
			if d.Impl == reference[c.Scenario] {
				c.Ratio = roundRatio(c.byRound, d.byRound)
			}
		}
	}
	if o.idle > 0 {
		if !o.quiet {
			fmt.Fprintf(os.Stderr, "\ridle CPU of the adaptive xdpnet DUT over %v ...                         ", o.idle)
		}
		if pct, err := idleCPU(o); err == nil {
			rep.IdleCPUPercent = &pct
		} else {
			fmt.Fprintln(os.Stderr, "\nbench: idle CPU:", err)
		}
		if !o.quiet {
			fmt.Fprintln(os.Stderr)
		}
	}
	return rep
}

// record adds round r's trial to c. The per-round value the ratio compares is pps, the TCP payload rate
// (tcp, tcpfwd) or the average RTT (rtt).
func (c *Result) record(r int, tr trialResult) {
	if c.byRound == nil {
		c.byRound, c.cpuRound, c.sysRound = map[int]float64{}, map[int]float64{}, map[int]float64{}
	}
	switch {
	case c.Scenario == "rtt":
		c.RTTRuns = append(c.RTTRuns, *tr.rtt)
		c.Lost += tr.lost
		c.byRound[r] = tr.rtt.Avg
	case bitScenario(c.Scenario):
		c.RunsBitsPerSec = append(c.RunsBitsPerSec, tr.bps)
		c.byRound[r] = tr.bps
		if c.Scenario == "tcpfwd" {
			c.retrans = append(c.retrans, float64(tr.retrans))
		}
	default:
		c.Runs = append(c.Runs, tr.pps)
		c.byRound[r] = tr.pps
		if tr.bps > 0 {
			c.RunsBitsPerSec = append(c.RunsBitsPerSec, tr.bps)
		}
		c.genRuns = append(c.genRuns, tr.genPPS)
		c.dropRuns = append(c.dropRuns, tr.kdropPPS)
	}
	if tr.allocs >= 0 {
		c.allocs = append(c.allocs, tr.allocs)
	}
	if tr.cpuPerPkt >= 0 {
		c.CPUNsPerPacketRuns = append(c.CPUNsPerPacketRuns, tr.cpuPerPkt)
		c.cpuPct = append(c.cpuPct, tr.cpuPct)
		c.cpuRound[r] = tr.cpuPerPkt
	}
	if tr.sysCPU >= 0 {
		c.SysCPURuns = append(c.SysCPURuns, tr.sysCPU)
		c.sysRound[r] = tr.sysCPU
		c.delivered = append(c.delivered, tr.delivered)
		c.busy = append(c.busy, tr.busyPct)
		c.steal = append(c.steal, tr.stealPct)
		c.sysRaw = append(c.sysRaw, tr.sysCPURaw)
		c.others = append(c.others, tr.othersPct)
	}
}

// summarize sets the medians once every round ran.
func (c *Result) summarize() {
	c.MedianBitsPerSec = median(c.RunsBitsPerSec)
	c.MedianPPS, c.GenPPS, c.SocketDropPPS = median(c.Runs), median(c.genRuns), median(c.dropRuns)
	if len(c.allocs) > 0 {
		a := median(c.allocs)
		c.AllocsPerPacket = &a
	}
	c.CPUNsPerPacket, c.CPUPercent = median(c.CPUNsPerPacketRuns), median(c.cpuPct)
	c.SysCPU, c.Delivered, c.BusyPct, c.StealPct = median(c.SysCPURuns), median(c.delivered), median(c.busy), median(c.steal)
	c.SysCPURaw, c.OthersPct = median(c.sysRaw), median(c.others)
	if len(c.retrans) > 0 {
		m := median(c.retrans)
		c.Retransmits = &m
	}
	if len(c.RTTRuns) > 0 {
		f := func(get func(rttStats) float64) float64 {
			var v []float64
			for _, s := range c.RTTRuns {
				v = append(v, get(s))
			}
			return median(v)
		}
		c.RTT = &rttStats{Min: f(func(s rttStats) float64 { return s.Min }), Avg: f(func(s rttStats) float64 { return s.Avg }),
			P50: f(func(s rttStats) float64 { return s.P50 }), P99: f(func(s rttStats) float64 { return s.P99 }), Max: f(func(s rttStats) float64 { return s.Max })}
	}
}

// progress is one trial's line on stderr.
func (tr trialResult) progress(sc string) string {
	var s string
	switch {
	case sc == "rtt":
		return fmt.Sprintf("RTT min %.0f avg %.0f p99 %.0f us, %d lost", tr.rtt.Min, tr.rtt.Avg, tr.rtt.P99, tr.lost)
	case bitScenario(sc):
		s = fmt.Sprintf("%.2f Gbit/s", tr.bps/1e9)
		if sc == "tcpfwd" {
			s += fmt.Sprintf(", %d retransmits", tr.retrans)
		}
	default:
		s = fmt.Sprintf("%.3f Mpps, %.2f Gbit/s (generator %.3f Mpps, DUT socket drops %.3f Mpps", tr.pps/1e6, tr.bps/1e9, tr.genPPS/1e6, tr.kdropPPS/1e6)
		if tr.cpuPerPkt >= 0 {
			s += fmt.Sprintf(", DUT CPU %.0f ns/packet at %.0f%% of a core", tr.cpuPerPkt, tr.cpuPct)
		}
		s += ")"
	}
	if tr.sysCPURaw > 0 {
		s += fmt.Sprintf("; fixed rate: whole-system CPU %.0f ns/packet (%.0f with other processes), %.1f%% delivered, busy %.0f%% (others %.0f%%), steal %.1f%%", tr.sysCPU, tr.sysCPURaw, 100*tr.delivered, tr.busyPct, tr.othersPct, tr.stealPct)
	}
	return s + tr.detail
}

// roundRatio is the median over the rounds both have of a's value / b's.
func roundRatio(a, b map[int]float64) float64 {
	var rs []float64
	for r, v := range a {
		if w := b[r]; w > 0 && v > 0 {
			rs = append(rs, v/w)
		}
	}
	return median(rs)
}

func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	var l float64
	fmt.Sscan(string(b), &l)
	return l
}

// once makes a stop function safe to call again (explicitly, then deferred); later calls return the first
// call's error.
func once(f func() error) func() error {
	var o sync.Once
	var err error
	return func() error {
		o.Do(func() { err = f() })
		return err
	}
}

func median(v []float64) float64 {
	s := slices.Clone(v)
	slices.Sort(s)
	if len(s) == 0 {
		return 0
	}
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// trial runs one configuration once on a fresh topology. In l2fwd and l3fwd, after the full-rate window, a
// fixed-rate phase (fixedRatePhase) measures the whole-system CPU per packet with the same DUT.
func trial(o *options, sc, impl, param string) (trialResult, error) {
	switch sc {
	case "tcp":
		return tcpTrial(o, impl)
	case "tcpfwd":
		return tcpfwdTrial(o, impl, param)
	case "rtt":
		return rttTrial(o, impl)
	}
	res := trialResult{allocs: -1, cpuPerPkt: -1, cpuPct: -1, sysCPU: -1}
	queues := 1
	if sc == "l2fwd-2q" {
		queues = 2
	}
	t, err := newTopo(queues)
	if err != nil {
		return res, err
	}
	defer t.close()
	d, err := startDUT(t, o, sc, impl)
	if err != nil {
		return res, err
	}
	d.stop = once(d.stop)
	defer d.stop()
	if o.threadedNAPI {
		if err := threadNAPI(t.dut, "in0", o.dutCPU); err != nil {
			return res, err
		}
	}
	// count is frames and bytes at the counting point (bytes 0 where only frames are counted).
	count := func() (uint64, uint64) { return d.count(), 0 }
	if d.count == nil {
		attach := func() (*xdpcount.Counter, error) { return attachSink(t, o) }
		if sc == "txonly" {
			attach = func() (*xdpcount.Counter, error) { return attachCounter(t.dut, "in0") }
		}
		c, err := attach()
		if err != nil {
			return res, err
		}
		defer c.Close()
		count = func() (uint64, uint64) { n, b, _ := c.Counts(); return n, b }
	}
	src, err := startSource(t, o, sc, param, queues)
	if err != nil {
		return res, err
	}
	stopGen := once(src.stop)
	defer stopGen()
	time.Sleep(o.warmup)
	measureAllocs := impl == "xdpnet" && (sc == "l2fwd" || sc == "l3fwd")
	var ms0, ms1 runtime.MemStats
	if measureAllocs {
		runtime.ReadMemStats(&ms0)
	}
	kd := func() uint64 { return 0 }
	if d.kdrops != nil {
		kd = d.kdrops
	}
	var s0, s1 poller.Stats
	if d.p != nil {
		s0 = d.p.Stats()
	}
	var w0, w1 uint64
	if d.tid != nil {
		w0 = runDelay(d.tid())
	}
	cpu := func() uint64 { return 0 }
	if d.cpu != nil {
		cpu = d.cpu
	}
	c0, b0 := count()
	g0, k0, u0, t0 := src.sent(), kd(), cpu(), time.Now()
	time.Sleep(o.duration)
	c1, b1 := count()
	g1, k1, u1, t1 := src.sent(), kd(), cpu(), time.Now()
	if d.p != nil {
		s1 = d.p.Stats()
		w1 = runDelay(d.tid())
		res.detail = dutDetail(s0, s1, t1.Sub(t0)) + fmt.Sprintf("; poller thread waited for a CPU %.1f ms/s", float64(w1-w0)/1e6/t1.Sub(t0).Seconds())
	}
	if measureAllocs {
		runtime.ReadMemStats(&ms1)
	}
	dt := t1.Sub(t0).Seconds()
	res.pps, res.genPPS, res.kdropPPS = float64(c1-c0)/dt, float64(g1-g0)/dt, float64(k1-k0)/dt
	if b1 > b0 {
		res.bps = float64(b1-b0+pktgen.FCSLen*(c1-c0)) * 8 / dt
	}
	if measureAllocs && c1 > c0 {
		res.allocs = float64(ms1.Mallocs-ms0.Mallocs) / float64(c1-c0)
	}
	if d.cpu != nil && c1 > c0 && u1 >= u0 {
		res.cpuPerPkt = float64(u1-u0) / float64(c1-c0)
		res.cpuPct = 100 * float64(u1-u0) / float64(t1.Sub(t0).Nanoseconds())
	}
	if err := stopGen(); err != nil {
		return res, err
	}
	if o.cpuRate > 0 && (sc == "l2fwd" || sc == "l3fwd") && c1 > c0 {
		if err := fixedRatePhase(t, o, param, count, &res); err != nil {
			return res, err
		}
	}
	if err := d.stop(); err != nil {
		return res, err
	}
	if c1 == c0 && d.output != nil {
		// An external DUT that ran but forwarded nothing: show why (its own log), not a 0 in the table.
		return res, fmt.Errorf("nothing reached the sink; DUT output: %s", lastLines(d.output(), 12))
	}
	return res, nil
}

// runDelay is a thread's total time spent runnable but waiting for a CPU (schedstat's second field, ns): the
// time another task held the DUT's CPU.
func runDelay(tid int) uint64 {
	if tid == 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/schedstat", tid))
	if err != nil {
		return 0
	}
	var run, wait uint64
	fmt.Sscan(string(b), &run, &wait)
	return wait
}

// dutDetail is the per-second rate of the xdpnet DUT's kernel-side drops by kind (XDP_STATISTICS of in0's
// socket) and of its loop counters over a window: the evidence for why a DUT dropped at its socket.
func dutDetail(a, b poller.Stats, d time.Duration) string {
	if len(a.Ports) == 0 || len(b.Ports) == 0 || len(a.Queues) == 0 || len(b.Queues) == 0 {
		return ""
	}
	sec := d.Seconds()
	r := func(x, y uint64) float64 { return float64(y-x) / sec }
	ka, kb := a.Ports[0].Kernel, b.Ports[0].Kernel
	qa, qb := a.Queues[0], b.Queues[0]
	return fmt.Sprintf("\n        in0 socket/s: rx_dropped %.0f, rx_ring_full %.0f, fill_ring_empty %.0f; loops/s: fill ring found empty %.0f, busy %.0f, idle %.0f, sleeps %.0f",
		r(ka.Rx_dropped, kb.Rx_dropped), r(ka.Rx_ring_full, kb.Rx_ring_full), r(ka.Rx_fill_ring_empty_descs, kb.Rx_fill_ring_empty_descs),
		r(a.Ports[0].FillRingEmpty, b.Ports[0].FillRingEmpty), r(qa.BusyLoops, qb.BusyLoops), r(qa.IdleLoops, qb.IdleLoops), r(qa.Sleeps, qb.Sleeps))
}

// idleCPU runs the xdpnet l3fwd DUT (adaptive mode) with no traffic and reads its poller thread's CPU time
// from /proc/self/task/TID/schedstat (nanoseconds on CPU) over o.idle.
func idleCPU(o *options) (float64, error) {
	t, err := newTopo(1)
	if err != nil {
		return 0, err
	}
	defer t.close()
	d, err := startDUT(t, o, "l3fwd", "xdpnet")
	if err != nil {
		return 0, err
	}
	defer d.stop()
	time.Sleep(500 * time.Millisecond)
	tid := d.tid()
	if tid == 0 {
		return 0, errors.New("poller thread id unknown")
	}
	c0, err := threadCPU(tid)
	if err != nil {
		return 0, err
	}
	t0 := time.Now()
	time.Sleep(o.idle)
	c1, err := threadCPU(tid)
	if err != nil {
		return 0, err
	}
	return 100 * float64(c1-c0) / float64(time.Since(t0).Nanoseconds()), nil
}

func threadCPU(tid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/task/%d/schedstat", tid))
	if err != nil {
		return 0, err
	}
	var ns uint64
	_, err = fmt.Sscan(string(b), &ns)
	return ns, err
}

// table renders the report as markdown.
func table(rep *Report) string {
	var b strings.Builder
	m := rep.Machine
	fmt.Fprintf(&b, "Machine: %s, %d cores, Linux %s, %s. %d interleaved runs per configuration, %s warmup, %s window; median. xdpnet DUT: %s mode, budget %d; bench GOMAXPROCS %d.\n\n",
		m.CPU, m.Cores, m.Kernel, m.Go, rep.Runs, rep.Warmup, rep.Duration, rep.DUTMode, rep.DUTBudget, rep.GOMAXPROCS)
	pps := slices.ContainsFunc(rep.Results, func(r *Result) bool { return ppsScenario(r.Scenario) })
	if pps {
		fmt.Fprintf(&b, "| scenario | frame bytes | implementation | median Mpps | runs (Mpps) | Gbit/s | generator Mpps | ratio (median per round) | DUT socket drops Mpps | DUT CPU ns/packet | DUT CPU %% of a core | CPU/packet vs xdpnet (median per round) |\n|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n")
	}
	for _, r := range rep.Results {
		if !ppsScenario(r.Scenario) {
			continue // bit/s and RTT: their own tables below
		}
		size := r.Param
		if size == "" {
			size = "64"
		}
		if r.Error != "" && len(r.Runs) == 0 {
			fmt.Fprintf(&b, "| %s | %s | %s | n/a | | | | | | | | |\n", r.Scenario, size, r.Impl)
			continue
		}
		var runs []string
		for _, v := range r.Runs {
			runs = append(runs, fmt.Sprintf("%.3f", v/1e6))
		}
		ratio := ""
		if r.Ratio > 0 && r.Impl != reference[r.Scenario] {
			ratio = fmt.Sprintf("%.2fx %s", r.Ratio, reference[r.Scenario])
		}
		drops := ""
		if (r.Impl == "xdpnet" && r.Scenario != "txonly") || (r.Impl == "asavie" && r.Scenario == "rxdrop") {
			drops = fmt.Sprintf("%.3f", r.SocketDropPPS/1e6)
		}
		cpuNs, cpuPct, cpuRatio := "n/a", "n/a", ""
		if r.Scenario == "txonly" {
			cpuNs, cpuPct = "", "" // no DUT
		}
		if len(r.CPUNsPerPacketRuns) > 0 {
			cpuNs, cpuPct = fmt.Sprintf("%.0f", r.CPUNsPerPacket), fmt.Sprintf("%.0f", r.CPUPercent)
		}
		if r.CPURatio > 0 {
			cpuRatio = fmt.Sprintf("%.2fx xdpnet", r.CPURatio)
		}
		gbit := ""
		if r.MedianBitsPerSec > 0 {
			gbit = fmt.Sprintf("%.2f", r.MedianBitsPerSec/1e9)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.3f | %s | %s | %.3f | %s | %s | %s | %s | %s |\n", r.Scenario, size, r.Impl, r.MedianPPS/1e6, strings.Join(runs, ", "), gbit, r.GenPPS/1e6, ratio, drops, cpuNs, cpuPct, cpuRatio)
	}
	b.WriteString(sysCPUTable(rep))
	b.WriteString(tcpTable(rep))
	b.WriteString(tcpfwdTable(rep))
	b.WriteString(rttTable(rep))
	var notes []string
	seen := map[string]bool{}
	note := func(n string) {
		if !seen[n] {
			seen[n] = true
			notes = append(notes, n)
		}
	}
	for _, r := range rep.Results {
		name := strings.TrimSpace(r.Scenario + " " + r.Param)
		if r.Impl == "dpdk" && r.Scenario == "l3fwd" {
			note("- l3fwd dpdk: testpmd does not route: mac-forward reference (AF_XDP PMD, --forward-mode=mac, destination MAC the sink's; no TTL, checksum, route lookup or ARP), the raw forwarding cost to set l3fwd against")
		}
		if r.AllocsPerPacket != nil {
			note(fmt.Sprintf("- %s %s: %.6f heap allocations per packet during the window (runtime MemStats.Mallocs delta / packets, whole process)", name, r.Impl, *r.AllocsPerPacket))
		}
		if r.Error != "" {
			note(fmt.Sprintf("- %s %s: %s", name, r.Impl, r.Error))
		}
		if r.Impl == "kernel" && r.Scenario == "l3fwd" && len(r.Runs) > 0 {
			note("- l3fwd kernel: DUT CPU n/a: kernel forwarding has no DUT thread; it runs in softirq on the DUT CPU (RPS on in0), with an XDP program passing everything on in0 (veth takes the live generator's frames only then); the whole-system CPU table has its cost")
		}
	}
	if pps {
		notes = append(notes, "- Gbit/s: the frames counted at the sink, their bytes plus the 4-byte FCS (no preamble or inter-frame gap). imix: the simple IMIX, 64-, 576- and 1500-byte frames 7:4:1 (pktgen.IMIX, mean 354.3 bytes)",
			"- DUT CPU: CPU time (user+system, schedstat run time) over the window of the xdpnet DUT's poller threads, asavie's rxdrop loop thread, or every thread of the asavie l2fwd / testpmd process, divided by the packets counted (forwarded; received for rxdrop). Softirq work that runs while a DUT thread is on the CPU (e.g. the veth transmit of its sendto) is charged to it (no IRQ time accounting in this kernel). CPU/packet vs xdpnet: this implementation's ns/packet over xdpnet's in the same round, median of the rounds")
	}
	lo, hi := 1e9, 0.0
	for _, r := range rep.Results {
		for _, l := range r.LoadAvg {
			lo, hi = min(lo, l), max(hi, l)
		}
	}
	if hi > 0 {
		notes = append(notes, fmt.Sprintf("- 1-minute load average at the start of the runs: %.2f to %.2f on %d cores (above ~2 means other work shared the CPUs)", lo, hi, rep.Machine.Cores))
	}
	if rep.IdleCPUPercent != nil {
		notes = append(notes, fmt.Sprintf("- idle: the adaptive xdpnet DUT (l3fwd stack) used %.2f%% of a core with no traffic", *rep.IdleCPUPercent))
	}
	if len(notes) > 0 {
		b.WriteString("\n" + strings.Join(notes, "\n") + "\n")
	}
	return b.String()
}

// ppsScenario: the scenario's figure is packets per second (the main table and the chart).
func ppsScenario(sc string) bool { return !bitScenario(sc) && sc != "rtt" }

// sysCPUTable renders the fixed-rate phase of l2fwd and l3fwd: whole-system CPU per forwarded packet.
func sysCPUTable(rep *Report) string {
	var b strings.Builder
	for _, r := range rep.Results {
		if len(r.SysCPURuns) == 0 || !ppsScenario(r.Scenario) {
			continue
		}
		if b.Len() == 0 {
			fmt.Fprintf(&b, "\nWhole-system CPU per forwarded packet at a fixed %.0f kpps (pktgen's AF_XDP generator, adaptive, on the generator's CPU): busy time of all CPUs from /proc/stat (user+nice+system+irq+softirq) over the window, less the user+system time of processes outside the bench, / packets counted at the sink. Generator and sink are in it and the same for every DUT; a DUT that spins pays for its spinning. \"with others\" keeps other processes' time in (the plain /proc/stat figure).\n\n", float64(rep.CPURate)/1e3)
			b.WriteString("| scenario | frame bytes | implementation | whole-system CPU ns/packet | runs (ns/packet) | vs xdpnet (median per round) | with others ns/packet | delivered | busy % of all CPUs | others % | steal % |\n|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|\n")
		}
		var runs []string
		for _, v := range r.SysCPURuns {
			runs = append(runs, fmt.Sprintf("%.0f", v))
		}
		ratio := ""
		if r.SysCPURatio > 0 {
			ratio = fmt.Sprintf("%.2fx", r.SysCPURatio)
		}
		fmt.Fprintf(&b, "| %s | %s | %s | %.0f | %s | %s | %.0f | %s | %.0f | %.0f | %.1f |\n", r.Scenario, r.Param, r.Impl, r.SysCPU, strings.Join(runs, ", "), ratio, r.SysCPURaw, deliveredCell(r.Delivered), r.BusyPct, r.OthersPct, r.StealPct)
	}
	return b.String()
}

// deliveredCell is the share of the offered load that arrived, flagged when the DUT lost more than 0.5% (the
// rate was then not one it sustains, and the CPU figure is per packet of a lossy run).
func deliveredCell(d float64) string {
	s := fmt.Sprintf("%.1f%%", 100*d)
	if d < 0.995 {
		s += " (lossy)"
	}
	return s
}

var routerName = map[string]string{"xdpnet": "xdpfwd (adaptive)", "xdpnet-busy": "xdpfwd (busy)", "kernel": "kernel forwarding", "dpdk": "testpmd mac forward"}

// tcpfwdTable renders tcpfwd: iperf3 through the DUT.
func tcpfwdTable(rep *Report) string {
	var b strings.Builder
	for _, r := range rep.Results {
		if r.Scenario != "tcpfwd" {
			continue
		}
		if b.Len() == 0 {
			fmt.Fprintf(&b, "\ntcpfwd: iperf3 gen -> sink through the DUT (MTU 1500), payload rate at the receiver in Gbit/s; whole-system CPU (/proc/stat busy of all CPUs less other processes' time, as above) per 1448-byte segment of payload delivered, at %.1f Gbit/s offered in total\n\n", rep.TCPRate/1e9)
			b.WriteString("| flows, offloads | DUT | median Gbit/s | runs (Gbit/s) | ratio to kernel (median per round) | retransmits | whole-system CPU ns/segment | vs xdpfwd (median per round) | delivered | busy % of all CPUs | others % |\n|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n")
		}
		if r.Error != "" && len(r.RunsBitsPerSec) == 0 {
			fmt.Fprintf(&b, "| %s | %s | n/a | | | | | | | | |\n", r.Param, routerName[r.Impl])
			continue
		}
		var runs []string
		for _, v := range r.RunsBitsPerSec {
			runs = append(runs, fmt.Sprintf("%.2f", v/1e9))
		}
		ratio, re, sys, sysRatio, del, busy, others := "", "", "", "", "", "", ""
		if r.Ratio > 0 && r.Impl != reference[r.Scenario] {
			ratio = fmt.Sprintf("%.2fx", r.Ratio)
		}
		if r.Retransmits != nil {
			re = fmt.Sprintf("%.0f", *r.Retransmits)
		}
		if len(r.SysCPURuns) > 0 {
			sys, del, busy, others = fmt.Sprintf("%.0f", r.SysCPU), deliveredCell(r.Delivered), fmt.Sprintf("%.0f", r.BusyPct), fmt.Sprintf("%.0f", r.OthersPct)
		}
		if r.SysCPURatio > 0 {
			sysRatio = fmt.Sprintf("%.2fx", r.SysCPURatio)
		}
		fmt.Fprintf(&b, "| %s | %s | %.2f | %s | %s | %s | %s | %s | %s | %s | %s |\n", r.Param, routerName[r.Impl], r.MedianBitsPerSec/1e9, strings.Join(runs, ", "), ratio, re, sys, sysRatio, del, busy, others)
	}
	return b.String()
}

// rttTable renders rtt: ping through the DUT.
func rttTable(rep *Report) string {
	var b strings.Builder
	for _, r := range rep.Results {
		if r.Scenario != "rtt" {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("\nrtt: ping gen -> sink through the DUT, echo requests 2 ms apart, RTT in microseconds (medians of the runs' figures)\n\n")
			b.WriteString("| DUT | min | avg | p50 | p99 | max | avg vs kernel (median per round) | lost |\n|---|---:|---:|---:|---:|---:|---:|---:|\n")
		}
		if r.RTT == nil {
			fmt.Fprintf(&b, "| %s | n/a | | | | | | |\n", routerName[r.Impl])
			continue
		}
		ratio := ""
		if r.Ratio > 0 && r.Impl != reference[r.Scenario] {
			ratio = fmt.Sprintf("%.1fx", r.Ratio)
		}
		fmt.Fprintf(&b, "| %s | %.0f | %.0f | %.0f | %.0f | %.0f | %s | %d |\n", routerName[r.Impl], r.RTT.Min, r.RTT.Avg, r.RTT.P50, r.RTT.P99, r.RTT.Max, ratio, r.Lost)
	}
	return b.String()
}

func writeOutputs(rep *Report, md, jsonPath, dir string) error {
	j, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(jsonPath, append(j, '\n'), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "results.md"), []byte(md), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "results.svg"), []byte(chart(rep)), 0o644)
}

// tcpTable renders the tcp scenario's results: one TCP flow's payload rate at the receiver, in Gbit/s.
func tcpTable(rep *Report) string {
	var b strings.Builder
	for _, r := range rep.Results {
		if r.Scenario != "tcp" {
			continue
		}
		if b.Len() == 0 {
			b.WriteString("\ntcp: one Linux TCP flow over a veth (MTU 1500; GSO, GRO, TSO and checksum offloads off on both ends), payload read by the receiver's application, in Gbit/s (not Mpps)\n\n")
			b.WriteString("| receiver | median Gbit/s | runs (Gbit/s) | ratio to Linux -> Linux (median per round) |\n|---|---:|---|---:|\n")
		}
		name := map[string]string{"xdpnet": "xdpnet (poller + stack, ListenTCP)", "kernel": "Linux (kernel TCP)"}[r.Impl]
		if r.Error != "" && len(r.RunsBitsPerSec) == 0 {
			fmt.Fprintf(&b, "| %s | n/a | | |\n", name)
			continue
		}
		var runs []string
		for _, v := range r.RunsBitsPerSec {
			runs = append(runs, fmt.Sprintf("%.2f", v/1e9))
		}
		ratio := ""
		if r.Ratio > 0 && r.Impl != reference[r.Scenario] {
			ratio = fmt.Sprintf("%.2fx", r.Ratio)
		}
		fmt.Fprintf(&b, "| %s | %.2f | %s | %s |\n", name, r.MedianBitsPerSec/1e9, strings.Join(runs, ", "), ratio)
	}
	return b.String()
}
