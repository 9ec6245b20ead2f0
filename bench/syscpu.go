package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/xdpnet/xdpnet/internal/pktgen"
	"github.com/xdpnet/xdpnet/poller"
)

// The whole-system CPU figure: busy time of every CPU from /proc/stat over a window at a fixed offered load,
// divided by the packets forwarded in it. The DUT's threads, its softirq work wherever it runs (RPS, veth's
// receive on the sender's CPU, a NAPI thread), the generator and the sink are all in it; the generator and the
// sink are the same for every DUT, so differences between DUTs are the DUTs'. Where a DUT's work runs cannot
// move it out of the figure, unlike the per-thread DUT CPU column, which misses what a DUT makes the kernel do
// on other CPUs (kernel forwarding has no thread at all). A DUT that polls without sleeping pays for its idle
// spinning here, as it does on a real machine, where that core is taken from everything else.

// userHZ is the unit of /proc/stat (USER_HZ, sysconf(_SC_CLK_TCK)): 100 on every Linux architecture Go supports.
const userHZ = 100

// cpuTimes is the first line of /proc/stat (all CPUs), in USER_HZ ticks, and the other processes' time.
type cpuTimes struct {
	busy   uint64 // user + nice + system + irq + softirq (guest time is inside user)
	steal  uint64
	total  uint64 // every field but guest and guest_nice (already in user and nice)
	others othersTicks
}

func readCPUTimes() (cpuTimes, error) {
	f, err := os.Open("/proc/stat")
	if err != nil {
		return cpuTimes{}, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		if len(fs) < 9 || fs[0] != "cpu" {
			continue
		}
		var v [8]uint64 // user nice system idle iowait irq softirq steal
		for i := range v {
			if _, err := fmt.Sscan(fs[i+1], &v[i]); err != nil {
				return cpuTimes{}, fmt.Errorf("/proc/stat: %q: %w", sc.Text(), err)
			}
		}
		t := cpuTimes{busy: v[0] + v[1] + v[2] + v[5] + v[6], steal: v[7], others: readOthers()}
		for _, x := range v {
			t.total += x
		}
		return t, nil
	}
	return cpuTimes{}, fmt.Errorf("/proc/stat has no cpu line")
}

// sysCPU is the whole-system CPU over a window: busy ns, the part of it other processes used (othersNs), and
// busy, others' and steal time in percent of all CPUs' time.
type sysCPU struct {
	busyNs, othersNs             float64
	busyPct, othersPct, stealPct float64
}

func sysCPUDelta(a, b cpuTimes) sysCPU {
	tot := float64(b.total - a.total)
	if tot <= 0 {
		return sysCPU{}
	}
	busy, others := float64(b.busy-a.busy), float64(othersDelta(a.others, b.others))
	others = min(others, busy)
	return sysCPU{busyNs: busy * 1e9 / userHZ, othersNs: others * 1e9 / userHZ,
		busyPct: 100 * busy / tot, othersPct: 100 * others / tot, stealPct: 100 * float64(b.steal-a.steal) / tot}
}

// set stores the window's figures per unit (packets, or segments in tcpfwd). A window in which other
// processes' time was all of the busy time measured nothing (the two are sampled by different ticks, and a
// busy machine swamps a cheap DUT): sysCPU stays -1 and the run is left out of the medians.
func (c sysCPU) set(res *trialResult, units float64) {
	res.sysCPURaw = c.busyNs / units
	if c.busyNs > c.othersNs {
		res.sysCPU = (c.busyNs - c.othersNs) / units
	}
	res.busyPct, res.othersPct, res.stealPct = c.busyPct, c.othersPct, c.stealPct
}

// fixedRatePhase replaces the trial's full-rate generator with pktgen's AF_XDP generator limited to
// o.cpuRate packets per second, waits o.warmup/2 and measures over o.duration: the whole-system CPU per
// forwarded packet, and the share of the offered packets that reached the sink (a DUT that drops at this rate
// makes the figure meaningless; the table shows the share). The generator runs in adaptive mode and sleeps
// as soon as its rings are empty (IdleSpin 1 ns), so that its CPU time is what its packets cost, not spinning: the
// poller's sleep has millisecond granularity, so it sends the packets due in bursts about every millisecond
// (100 frames at 100 kpps, well inside every DUT's rings), and the rate holds over the window.
func fixedRatePhase(t *topo, o *options, param string, count func() (uint64, uint64), res *trialResult) error {
	cfg := genConfig(t, o, 1, param)
	cfg.Rate = o.cpuRate
	g, _, stop, err := startGenWith(t, o, cfg, poller.Adaptive, time.Nanosecond)
	if err != nil {
		return err
	}
	defer stop()
	time.Sleep(max(o.warmup/2, 300*time.Millisecond))
	c0, _ := count()
	g0, s0 := g.Sent(), mustCPUTimes()
	time.Sleep(o.duration)
	c1, _ := count()
	g1, s1 := g.Sent(), mustCPUTimes()
	if err := stop(); err != nil {
		return err
	}
	if c1 <= c0 || g1 <= g0 {
		return fmt.Errorf("fixed-rate phase: nothing forwarded (sent %d, counted %d)", g1-g0, c1-c0)
	}
	sysCPUDelta(s0, s1).set(res, float64(c1-c0))
	res.delivered = float64(c1-c0) / float64(g1-g0)
	return nil
}

func mustCPUTimes() cpuTimes {
	t, err := readCPUTimes()
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
	}
	return t
}

// frameConfig sets cfg's frame size from a size parameter ("64".."1518", "imix"; "" is 64).
func frameConfig(cfg *pktgen.Config, param string) {
	switch param {
	case "", "64":
		cfg.FrameSize = 64
	case "imix":
		cfg.FrameSize, cfg.Mix = 0, pktgen.IMIX
	default:
		fmt.Sscan(param, &cfg.FrameSize)
	}
}

// othersTicks is the user+system time (USER_HZ ticks) of every process outside this bench and its children
// (the DUT processes, iperf3, ping), kernel threads excluded: on a shared machine, the part of /proc/stat's busy
// time that other people's work added. A process that exits during the window is missed; one that starts in it
// counts whole. Their softirq work (their own veth tests) cannot be told apart and stays in the figure.
type othersTicks map[int]uint64

const pfKthread = 0x00200000 // PF_KTHREAD, include/linux/sched.h

func readOthers() othersTicks {
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	type proc struct {
		ppid  int
		ticks uint64
		kthr  bool
	}
	procs := map[int]proc{}
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscan(e.Name(), &pid); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		// Fields after the command: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime.
		f := strings.Fields(string(b[i+1:]))
		if len(f) < 13 {
			continue
		}
		var p proc
		var flags, ut, st uint64
		fmt.Sscan(f[1], &p.ppid)
		fmt.Sscan(f[6], &flags)
		fmt.Sscan(f[11], &ut)
		fmt.Sscan(f[12], &st)
		p.ticks, p.kthr = ut+st, flags&pfKthread != 0
		procs[pid] = p
	}
	self := os.Getpid()
	mine := func(pid int) bool {
		for n := 0; pid > 1 && n < 64; n++ {
			if pid == self {
				return true
			}
			pid = procs[pid].ppid
		}
		return false
	}
	o := othersTicks{}
	for pid, p := range procs {
		if !p.kthr && !mine(pid) {
			o[pid] = p.ticks
		}
	}
	return o
}

// othersDelta is the others' ticks between two readings.
func othersDelta(a, b othersTicks) uint64 {
	var d uint64
	for pid, t := range b {
		if t >= a[pid] {
			d += t - a[pid]
		}
	}
	return d
}
