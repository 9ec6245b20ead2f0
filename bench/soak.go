package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/umem"
)

// The soak runs the xdpnet l3fwd DUT (the stack) at the generator's full rate for a long time and watches what
// must stay flat: memory (RSS, heap), garbage collections, and frames. The generator runs in the same process,
// so RSS, heap and GC are the whole bench process's: generator, DUT and the sampling itself.
//
//	go run ./bench -scenario soak -duration 10m [-every 10s]

// Bounds of "flat", after the warmup (the first sample taken at least soakWarmup into the run).
const (
	soakWarmup = 30 * time.Second
	// RSS grows by a few pages as threads and rarely used paths touch memory; a leak of one allocation per
	// packet would grow by megabytes per second.
	soakRSSBound  = 4 << 20
	soakHeapBound = 2 << 20
)

// soakGCBound is how many GC cycles after the warmup still count as flat: the runtime forces one every two
// minutes even with no allocation (forcegcperiod), and the sampling itself allocates a little; one more per
// minute of slack.
func soakGCBound(d time.Duration) uint32 {
	return uint32(d/(2*time.Minute)) + uint32(d/time.Minute) + 2
}

// soakSample is one row of the soak table.
type soakSample struct {
	At              time.Duration
	SinkPPS, GenPPS float64
	RSS, HeapInuse  uint64
	NumGC           uint32
	Mallocs         uint64
	RxIn, TxOut     uint64 // DUT: taken off in0's RX ring, put on out0's TX ring
	Dropped         uint64 // DUT drops by its own counters (every reason)
	KernelDrops     uint64 // DUT sockets' XDP_STATISTICS drops (RX ring full, fill ring empty, rx_dropped)
	// HeldByHandler is RxIn - TxOut - Dropped: frames between RX and a verdict or in the stack's neighbour queue,
	// less the frames the stack made itself (ARP requests) plus those it consumed (ARP replies).
	HeldByHandler     int64
	GenNoBuffer, Load float64
}

// SoakReport is the soak's result.
type SoakReport struct {
	Machine  Machine
	Date     string
	Duration string
	Every    string
	Samples  []soakSample
	// After shutdown: the DUT's and the generator's frame accounting (poller.Frames, then CheckFrames).
	DUTFrames, GenFrames []umem.Accounting
	DUTCheck, GenCheck   string
	// Totals at the end.
	Sent, Counted, DUTRx, DUTTx, DUTDropped, KernelDrops uint64
	DropsByName                                          map[string]uint64
	// Judgement.
	RSSGrowth, HeapGrowth int64
	GCAfterWarmup         uint32
	GCBound               uint32
	Flat                  bool
	Verdict               []string
}

// vmRSS reads VmRSS from /proc/self/status in bytes.
func vmRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			f := strings.Fields(v)
			if len(f) > 0 {
				kb, _ := strconv.ParseUint(f[0], 10, 64)
				return kb << 10
			}
		}
	}
	return 0
}

// soak runs the soak for o.duration, a sample every every. progress, when not nil, gets each sample.
func soak(o *options, m Machine, every time.Duration, progress func(soakSample)) (*SoakReport, error) {
	rep := &SoakReport{Machine: m, Date: time.Now().UTC().Format(time.RFC3339), Duration: o.duration.String(), Every: every.String()}
	t, err := newTopo(1)
	if err != nil {
		return nil, err
	}
	defer t.close()
	d, err := startDUT(t, o, "l3fwd", "xdpnet")
	if err != nil {
		return nil, err
	}
	d.stop = once(d.stop)
	defer d.stop()
	c, err := attachCounter(t.sink, "eth0")
	if err != nil {
		return nil, err
	}
	defer c.Close()
	count := func() uint64 { n, _ := c.Count(); return n }
	g, gp, stopGen, err := startGen(t, o, 1, "")
	if err != nil {
		return nil, err
	}
	stopGen = once(stopGen)
	defer stopGen()

	dutCounters := func() (rx, tx, dropped, kd uint64) {
		s := d.p.Stats()
		rx, tx = s.Ports[0].RxPackets, s.Ports[1].TxPackets
		for _, n := range s.Drops {
			dropped += n
		}
		for _, ps := range s.Ports {
			kd += socketDrops(ps.Kernel)
		}
		return
	}
	start := time.Now()
	lastT, lastC, lastG := start, count(), g.Sent()
	tick := time.NewTicker(every)
	defer tick.Stop()
	var ms runtime.MemStats
	for now := range tick.C {
		cn, gn := count(), g.Sent()
		dt := now.Sub(lastT).Seconds()
		runtime.ReadMemStats(&ms)
		rx, tx, dropped, kd := dutCounters()
		s := soakSample{At: now.Sub(start).Round(time.Second), SinkPPS: float64(cn-lastC) / dt, GenPPS: float64(gn-lastG) / dt,
			RSS: vmRSS(), HeapInuse: ms.HeapInuse, NumGC: ms.NumGC, Mallocs: ms.Mallocs,
			RxIn: rx, TxOut: tx, Dropped: dropped, KernelDrops: kd, HeldByHandler: int64(rx) - int64(tx) - int64(dropped),
			GenNoBuffer: float64(g.NoBuffer()), Load: loadAvg()}
		rep.Samples = append(rep.Samples, s)
		if progress != nil {
			progress(s)
		}
		lastT, lastC, lastG = now, cn, gn
		if now.Sub(start) >= o.duration {
			break
		}
	}
	// Stop the generator first (the DUT's drain waits for quiet), then the DUT; then every frame must be back.
	if err := stopGen(); err != nil {
		return nil, fmt.Errorf("stop generator: %w", err)
	}
	time.Sleep(100 * time.Millisecond) // frames on the veth still reach the DUT and the sink
	if err := d.stop(); err != nil {
		return nil, fmt.Errorf("stop DUT: %w", err)
	}
	rep.Sent, rep.Counted = g.Sent(), count()
	rep.DUTRx, rep.DUTTx, rep.DUTDropped, rep.KernelDrops = dutCounters()
	rep.DropsByName = d.p.Stats().DropsByName()
	rep.DUTFrames, _ = d.p.Frames()
	rep.GenFrames, _ = gp.Frames()
	rep.DUTCheck, rep.GenCheck = "ok", "ok"
	if err := d.p.CheckFrames(); err != nil {
		rep.DUTCheck = err.Error()
	}
	if err := gp.CheckFrames(); err != nil {
		rep.GenCheck = err.Error()
	}
	judgeSoak(rep)
	return rep, nil
}

// judgeSoak compares the last sample with the first one after the warmup.
func judgeSoak(rep *SoakReport) {
	if len(rep.Samples) == 0 {
		rep.Verdict = append(rep.Verdict, "no samples")
		return
	}
	base := rep.Samples[0]
	for _, s := range rep.Samples {
		if s.At >= soakWarmup {
			base = s
			break
		}
	}
	last := rep.Samples[len(rep.Samples)-1]
	rep.RSSGrowth = int64(last.RSS) - int64(base.RSS)
	rep.HeapGrowth = int64(last.HeapInuse) - int64(base.HeapInuse)
	rep.GCAfterWarmup = last.NumGC - base.NumGC
	rep.GCBound = soakGCBound(last.At - base.At)
	rep.Flat = true
	check := func(ok bool, f string, a ...any) {
		v := "ok: "
		if !ok {
			v = "NOT FLAT: "
			rep.Flat = false
		}
		rep.Verdict = append(rep.Verdict, v+fmt.Sprintf(f, a...))
	}
	check(rep.RSSGrowth <= soakRSSBound, "RSS %+.2f MiB from %v to %v (bound %d MiB)", float64(rep.RSSGrowth)/(1<<20), base.At, last.At, soakRSSBound>>20)
	check(rep.HeapGrowth <= soakHeapBound, "heap in use %+.2f MiB from %v to %v (bound %d MiB)", float64(rep.HeapGrowth)/(1<<20), base.At, last.At, soakHeapBound>>20)
	check(rep.GCAfterWarmup <= rep.GCBound, "%d GC cycles from %v to %v (bound %d: the runtime's forced GC every 2 min plus slack)", rep.GCAfterWarmup, base.At, last.At, rep.GCBound)
	check(rep.DUTCheck == "ok", "DUT frame accounting after shutdown: %s", rep.DUTCheck)
	check(rep.GenCheck == "ok", "generator frame accounting after shutdown: %s", rep.GenCheck)
	// End to end: every frame the generator sent reached the DUT's in0 socket or was dropped at it, and every
	// IPv4 frame the DUT forwarded reached the sink's counter (the DUT's tx also holds the few ARP requests the
	// stack made, which the counter passes to the kernel uncounted).
	lost := int64(rep.Sent) - int64(rep.DUTRx) - int64(rep.KernelDrops)
	check(lost == 0, "generator sent %d = DUT received %d + dropped at the DUT socket %d (unaccounted %d)", rep.Sent, rep.DUTRx, rep.KernelDrops, lost)
	extra := int64(rep.DUTTx) - int64(rep.Counted)
	check(extra >= 0 && extra <= 64, "DUT forwarded %d, sink counted %d IPv4 frames (the difference %d is ARP the stack sent; bound 0..64)", rep.DUTTx, rep.Counted, extra)
	var maxHeld int64
	for _, s := range rep.Samples {
		maxHeld = max(maxHeld, abs(s.HeldByHandler))
	}
	// Not an exact identity: the stack also transmits frames it made (ARP requests) and consumes some it
	// received (ARP replies) without a drop; frames are checked exactly by CheckFrames above.
	check(maxHeld <= int64(2*pipeline.MaxBatch), "DUT rx - tx - dropped in any sample: at most %d in absolute value (bound %d, two batches)", maxHeld, 2*pipeline.MaxBatch)
}

func abs(v int64) int64 {
	if v < 0 {
		return -v
	}
	return v
}

// soakTable renders the report as markdown.
func soakTable(rep *SoakReport) string {
	var b strings.Builder
	m := rep.Machine
	fmt.Fprintf(&b, "Soak: xdpnet l3fwd (the stack) at the generator's full rate for %s, sampled every %s. Machine: %s, %d cores, Linux %s, %s. %s.\n\n",
		rep.Duration, rep.Every, m.CPU, m.Cores, m.Kernel, m.Go, rep.Date)
	b.WriteString("| t | sink Mpps | gen Mpps | RSS MiB | heap in use MiB | GC cycles | mallocs | DUT rx | DUT tx | DUT dropped | kernel drops | held | load |\n")
	b.WriteString("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, s := range rep.Samples {
		fmt.Fprintf(&b, "| %v | %.3f | %.3f | %.1f | %.2f | %d | %d | %d | %d | %d | %d | %d | %.2f |\n",
			s.At, s.SinkPPS/1e6, s.GenPPS/1e6, float64(s.RSS)/(1<<20), float64(s.HeapInuse)/(1<<20), s.NumGC, s.Mallocs,
			s.RxIn, s.TxOut, s.Dropped, s.KernelDrops, s.HeldByHandler, s.Load)
	}
	fmt.Fprintf(&b, "\nAt the end: generator sent %d, sink counted %d; DUT received %d, forwarded %d, dropped %d %v; kernel drops at the DUT sockets %d.\n",
		rep.Sent, rep.Counted, rep.DUTRx, rep.DUTTx, rep.DUTDropped, rep.DropsByName, rep.KernelDrops)
	for qi, a := range rep.DUTFrames {
		fmt.Fprintf(&b, "DUT queue %d frames after shutdown: %s\n", qi, a)
	}
	for qi, a := range rep.GenFrames {
		fmt.Fprintf(&b, "generator queue %d frames after shutdown: %s\n", qi, a)
	}
	verdict := "FLAT"
	if !rep.Flat {
		verdict = "NOT FLAT"
	}
	fmt.Fprintf(&b, "\nVerdict: %s\n", verdict)
	for _, v := range rep.Verdict {
		fmt.Fprintf(&b, "- %s\n", v)
	}
	b.WriteString("\n(held = DUT rx - tx - dropped at the sample: frames between the RX ring and a verdict or kept by the stack's neighbour queue, less ARP frames the stack made, plus ARP replies it consumed. poller.Frames counts frames by state only while Run is not running - it returns ErrRunning - so the per-state accounting is taken after shutdown.)\n")
	return b.String()
}

// runSoak is main's -scenario soak.
func runSoak(o *options, m Machine, every time.Duration, outDir string) error {
	if o.duration < every {
		return errors.New("soak: -duration must be at least -every")
	}
	fmt.Fprintf(os.Stderr, "soak: l3fwd xdpnet for %v, a sample every %v\n", o.duration, every)
	rep, err := soak(o, m, every, func(s soakSample) {
		fmt.Fprintf(os.Stderr, "%6v  sink %.3f Mpps  RSS %.1f MiB  heap %.2f MiB  GC %d  held %d  load %.2f\n",
			s.At, s.SinkPPS/1e6, float64(s.RSS)/(1<<20), float64(s.HeapInuse)/(1<<20), s.NumGC, s.HeldByHandler, s.Load)
	})
	if err != nil {
		return err
	}
	md := soakTable(rep)
	fmt.Print(md)
	if outDir != "" {
		if err := os.WriteFile(outDir+"/soak.md", []byte(md), 0o644); err != nil {
			return err
		}
	}
	if !rep.Flat {
		return errors.New("soak: not flat (see the verdict)")
	}
	return nil
}
