//go:build latency

// The latency and bulk-TCP measurement of issue 11: not part of make test (it measures, it asserts nothing
// about speed). Run it as root, alone on the machine:
//
//	flock /tmp/xdpnet-bench.lock go test -tags latency -run TestLatencyTable -v -count=1 ./cmd/xdpfwd/
//
// XDPNET_LATENCY_RUNS sets the rounds (default 1); XDPNET_LATENCY_MODES the xdpfwd modes (default
// "adaptive,busy"); XDPNET_LATENCY_OFFLOADS the offload settings (default "off,defaults");
// XDPNET_LATENCY_ARGS extra xdpfwd flags (space-separated); XDPNET_LATENCY_PERF a directory for a
// system-wide `perf record -g` of each iperf3 window.
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/netlab"
)

// latencyResult is one configuration's numbers in one round.
type latencyResult struct {
	offloads string // "off" or "defaults"
	dut      string // kernel, xdpfwd-adaptive, xdpfwd-busy
	round    int

	rttMin, rttAvg, rttMax, rttMdev float64 // us
	pingLoss                        string

	gbit     [2]float64 // 1 flow, 8 flows: what the receiver got
	retrans  [2]int64
	sysBusy  [2]float64 // busy time of all CPUs over the iperf3 window, in cores (user+nice+system+irq+softirq)
	dutCPU   [2]float64 // xdpfwd's own threads over the same window, in cores (n/a for the kernel)
	pingBusy float64    // all CPUs during the ping run, in cores
	pingDUT  float64    // xdpfwd during the ping run, in cores
}

// TestLatencyTable builds gen - router - sink and measures, through the kernel's forwarding and through
// xdpfwd in each mode: ping RTT (ping -i 0.002 -c 1000 -q) and iperf3 TCP gen -> sink with 1 and 8 flows
// for 5 s each, with the whole machine's CPU use over each window.
//
// Two offload settings: "off" switches GRO, GSO, TSO and TX checksum offload off on all four veth ends, so
// that the kernel forwards the same 1500-byte frames xdpfwd does (xdpfwd does not do GRO/GSO, the kernel's
// forwarding passes 64 KiB GSO packets through at defaults): the like-for-like comparison. "defaults" leaves
// every veth as created, as users' containers have them. Nothing else is changed on the Linux peers.
func TestLatencyTable(t *testing.T) {
	netlab.RequirePrivileges(t)
	runs := 1
	if s := os.Getenv("XDPNET_LATENCY_RUNS"); s != "" {
		runs, _ = strconv.Atoi(s)
	}
	modes := []string{"adaptive", "busy"}
	if s := os.Getenv("XDPNET_LATENCY_MODES"); s != "" {
		modes = strings.Split(s, ",")
	}
	offs := []string{"off", "defaults"}
	if s := os.Getenv("XDPNET_LATENCY_OFFLOADS"); s != "" {
		offs = strings.Split(s, ",")
	}
	extra := strings.Fields(os.Getenv("XDPNET_LATENCY_ARGS"))
	duts := []string{"kernel"}
	for _, m := range modes {
		duts = append(duts, "xdpfwd-"+m)
	}
	up, _ := os.ReadFile("/proc/loadavg")
	t.Logf("load at start: %s", strings.TrimSpace(string(up)))
	var res []latencyResult
	for r := 1; r <= runs; r++ {
		for _, off := range offs {
			for _, dut := range duts {
				x := measureLatency(t, off, dut, extra)
				x.round = r
				res = append(res, x)
				t.Logf("%s offloads %s: rtt avg %.1f us, 1 flow %.2f Gbit/s, 8 flows %.2f Gbit/s", dut, off, x.rttAvg, x.gbit[0], x.gbit[1])
			}
		}
	}
	up, _ = os.ReadFile("/proc/loadavg")
	t.Logf("load at end: %s", strings.TrimSpace(string(up)))
	fmt.Println(latencyTable(res))
}

func measureLatency(t *testing.T, offloads, dut string, extra []string) latencyResult {
	t.Helper()
	x := latencyResult{offloads: offloads, dut: dut}
	l, err := newRouterLab(fmt.Sprintf("lat%s%s", offloads[:1], dut[len(dut)-1:]), labOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	if offloads == "off" {
		for _, e := range []struct {
			h   *netlab.Host
			ifn string
		}{{l.gen, "eth0"}, {l.router, "r0"}, {l.router, "r1"}, {l.sink, "eth0"}} {
			if err := e.h.DisableOffloads(e.ifn); err != nil {
				t.Fatal(err)
			}
		}
	}
	pid := 0
	if dut == "kernel" {
		if err := l.router.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
			t.Fatal(err)
		}
	} else {
		args := append([]string{"--iface", "r0=" + r0Addr + "/24", "--iface", "r1=" + r1Addr + "/24",
			"--mode", strings.TrimPrefix(dut, "xdpfwd-")}, extra...)
		if err := l.startRouter(xdpfwdBin, args...); err != nil {
			t.Fatal(err)
		}
		pid = l.xdpfwd.Cmd.Process.Pid
	}
	// Neighbours resolved and caches warm before anything is timed.
	runIn(t, l.gen, "ping", "-c", "3", "-i", "0.05", "-q", sinkAddr)

	s0, d0 := cpuBusy(), procCPU(pid)
	w0 := time.Now()
	out := runIn(t, l.gen, "ping", "-i", "0.002", "-c", "1000", "-q", sinkAddr)
	el := time.Since(w0).Seconds()
	x.pingBusy, x.pingDUT = (cpuBusy()-s0)/el, (procCPU(pid)-d0)/el
	if m := regexp.MustCompile(`= ([\d.]+)/([\d.]+)/([\d.]+)/([\d.]+) ms`).FindStringSubmatch(out); m != nil {
		f := func(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v * 1000 }
		x.rttMin, x.rttAvg, x.rttMax, x.rttMdev = f(m[1]), f(m[2]), f(m[3]), f(m[4])
	} else {
		t.Errorf("%s: ping: no rtt line:\n%s", dut, out)
	}
	if m := regexp.MustCompile(`([\d.]+)% packet loss`).FindStringSubmatch(out); m != nil {
		x.pingLoss = m[1] + "%"
	}
	for i, flows := range []int{1, 8} {
		x.gbit[i], x.retrans[i], x.sysBusy[i], x.dutCPU[i] = iperf3Flows(t, l, flows, pid)
	}
	if pid != 0 {
		// A clean exit and exact frame accounting, or the numbers do not count; the summary's counters
		// (drops by reason, socket statistics) say where frames were lost.
		t.Logf("%s offloads %s: xdpfwd summary:\n%s", dut, offloads, stopRouter(t, l))
	}
	return x
}

// iperf3Flows runs iperf3 -P flows for 5 s gen -> sink and returns the receiver's Gbit/s, the sender's
// retransmits, the CPU busy time of the machine and of pid (0: none) over the window, in cores.
func iperf3Flows(t *testing.T, l *routerLab, flows, pid int) (gbit float64, retrans int64, sys, dut float64) {
	t.Helper()
	srv, err := l.sink.Start("iperf3", "-s", "-1", "-B", sinkAddr, "-p", "5212")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(5 * time.Second)
	args := []string{"-c", sinkAddr, "-p", "5212", "-t", "5", "-P", strconv.Itoa(flows), "-J"}
	var out string
	var s0, d0 float64
	var w0 time.Time
	for try := 0; try < 20; try++ { // until the server listens
		stop := perfRecord(t, fmt.Sprintf("%s-%d", l.lab.Name(), flows))
		s0, d0, w0 = cpuBusy(), procCPU(pid), time.Now()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		b, _ := l.gen.Command(ctx, "iperf3", args...).CombinedOutput()
		cancel()
		stop()
		out = string(b)
		if !strings.Contains(out, "Connection refused") && !strings.Contains(out, "unable to connect") {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	el := time.Since(w0).Seconds()
	sys, dut = (cpuBusy()-s0)/el, (procCPU(pid)-d0)/el
	var r struct {
		End struct {
			SumSent struct {
				Retransmits int64 `json:"retransmits"`
			} `json:"sum_sent"`
			SumReceived struct {
				Bits float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Error != "" {
		t.Errorf("iperf3 %v: %v %s\n%s", args, err, r.Error, out)
		return 0, 0, sys, dut
	}
	return r.End.SumReceived.Bits / 1e9, r.End.SumSent.Retransmits, sys, dut
}

// perfRecord starts `perf record -a -g` into $XDPNET_LATENCY_PERF/name.data when that variable names a
// directory, and returns what stops it.
func perfRecord(t *testing.T, name string) (stop func()) {
	dir := os.Getenv("XDPNET_LATENCY_PERF")
	if dir == "" {
		return func() {}
	}
	cmd := exec.Command("perf", "record", "-a", "-g", "-q", "-o", filepath.Join(dir, name+".data"))
	if err := cmd.Start(); err != nil {
		t.Logf("perf record: %v", err)
		return func() {}
	}
	return func() {
		cmd.Process.Signal(os.Interrupt)
		cmd.Wait()
	}
}

// cpuBusy is the busy time of all CPUs since boot, in seconds: user + nice + system + irq + softirq from
// /proc/stat (steal and idle left out).
func cpuBusy() float64 {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return 0
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Scan()
	fs := strings.Fields(sc.Text()) // cpu user nice system idle iowait irq softirq steal ...
	var sum float64
	for _, i := range []int{1, 2, 3, 6, 7} {
		if i < len(fs) {
			v, _ := strconv.ParseFloat(fs[i], 64)
			sum += v
		}
	}
	return sum / 100 // USER_HZ
}

// procCPU is the CPU time of every thread of pid so far, in seconds (schedstat: time on a CPU, in ns).
func procCPU(pid int) float64 {
	if pid == 0 {
		return 0
	}
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/schedstat", pid))
	var ns float64
	for _, p := range tasks {
		b, err := os.ReadFile(p)
		if err != nil {
			continue
		}
		if fs := strings.Fields(string(b)); len(fs) > 0 {
			v, _ := strconv.ParseFloat(fs[0], 64)
			ns += v
		}
	}
	return ns / 1e9
}

// latencyTable prints the results, one row per configuration and round, with the ratios to the kernel of
// the same offload setting in the same round.
func latencyTable(res []latencyResult) string {
	sort.SliceStable(res, func(i, j int) bool {
		if res[i].offloads != res[j].offloads {
			return res[i].offloads == "off"
		}
		return false
	})
	kern := map[string]latencyResult{}
	for _, r := range res {
		if r.dut == "kernel" {
			kern[fmt.Sprint(r.offloads, r.round)] = r
		}
	}
	var b strings.Builder
	b.WriteString("| offloads | DUT | round | ping RTT avg (min/max/mdev) us | RTT vs kernel | ping CPU all/DUT cores | TCP 1 flow Gbit/s (retr) | vs kernel | CPU all/DUT cores | TCP 8 flows Gbit/s (retr) | vs kernel | CPU all/DUT cores |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range res {
		k := kern[fmt.Sprint(r.offloads, r.round)]
		ratio := func(a, b float64) string {
			if b == 0 {
				return "-"
			}
			return fmt.Sprintf("%.2fx", a/b)
		}
		dutc := func(v float64) string {
			if r.dut == "kernel" {
				return "-"
			}
			return fmt.Sprintf("%.2f", v)
		}
		fmt.Fprintf(&b, "| %s | %s | %d | %.1f (%.1f/%.1f/%.1f) loss %s | %s | %.2f/%s | %.2f (%d) | %s | %.2f/%s | %.2f (%d) | %s | %.2f/%s |\n",
			r.offloads, r.dut, r.round, r.rttAvg, r.rttMin, r.rttMax, r.rttMdev, r.pingLoss, ratio(r.rttAvg, k.rttAvg),
			r.pingBusy, dutc(r.pingDUT),
			r.gbit[0], r.retrans[0], ratio(r.gbit[0], k.gbit[0]), r.sysBusy[0], dutc(r.dutCPU[0]),
			r.gbit[1], r.retrans[1], ratio(r.gbit[1], k.gbit[1]), r.sysBusy[1], dutc(r.dutCPU[1]))
	}
	return b.String()
}
