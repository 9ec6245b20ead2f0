package main

import (
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/netlab"
)

// TestScenariosSmoke runs every scenario with every implementation available here for a very short window and
// checks that traffic flowed (pps > 0), that the sink's byte count matches the frame size, that the fixed-rate
// phase measured the whole-system CPU, that iperf3 through the DUT moved data and that pings crossed it. It
// asserts nothing about speed. l2fwd and l3fwd run with 64-byte frames and the IMIX, tcpfwd with 1 flow at
// default offloads and 8 flows with offloads off (every DUT takes part in one of them). Implementations that cannot run on this
// machine (errNA: dpdk-testpmd not installed or no huge pages, the asavie example not building) are logged and skipped.
func TestScenariosSmoke(t *testing.T) {
	netlab.RequirePrivileges(t)
	if testing.Short() {
		t.Skip("runs every scenario for about a second each")
	}
	o := &options{runs: 1, warmup: 300 * time.Millisecond, duration: 500 * time.Millisecond, flows: 4,
		genCPU: 0, dutCPU: 1, gen: "live", genMode: "busy", dutMode: "adaptive", dutBudget: 32, quiet: true,
		cpuRate: 20000, tcpRate: 2e8, pings: 50}
	if n := len(os.Getenv("XDPNET_BENCH_NOPIN")); n > 0 {
		o.genCPU = -1
	}
	bin, err := buildAsavie(t.TempDir())
	if err != nil {
		t.Logf("asavie l2fwd example does not build (%v); its scenario will be n/a", err)
	}
	o.asavieBin = bin
	if o.xdpfwdBin, err = buildXdpfwd(t.TempDir()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(releaseHugepages)
	smokeParams := map[string][]string{"l2fwd": {"64", "imix"}, "l3fwd": {"64", "imix"}, "tcpfwd": {tcpfwdParams[0], tcpfwdParams[3]}, "": {""}}
	for _, sc := range allScenarios {
		ps := smokeParams[sc]
		if ps == nil {
			ps = smokeParams[""]
		}
		for _, param := range ps {
			for _, impl := range implsOf[sc] {
				if !runsIn(sc, param, impl) {
					continue
				}
				t.Run(strings.TrimSpace(sc+" "+param)+"/"+impl, func(t *testing.T) { smoke(t, o, sc, impl, param) })
			}
		}
	}
}

func smoke(t *testing.T, o *options, sc, impl, param string) {
	if sc == "tcp" {
		tcpSmoke(t, o, impl)
		return
	}
	r, err := trial(o, sc, impl, param)
	if errors.Is(err, errNA) {
		netlab.MissingTool(t, err.Error()) // e.g. dpdk-testpmd missing: make test installs it
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Log(r.progress(sc))
	switch sc {
	case "rtt":
		if r.rtt == nil || r.rtt.Min <= 0 || r.rtt.Avg < r.rtt.Min || r.rtt.P99 < r.rtt.P50 || r.lost > o.pings/2 {
			t.Fatalf("RTT %+v, %d of %d lost", r.rtt, r.lost, o.pings)
		}
		return
	case "tcpfwd":
		if r.bps <= 0 || r.sysCPURaw <= 0 || r.delivered <= 0 {
			t.Fatalf("iperf3 through %s: %.0f bit/s, fixed-rate CPU %.0f ns/segment, delivered %.2f", impl, r.bps, r.sysCPURaw, r.delivered)
		}
		return
	}
	if r.pps <= 0 {
		t.Fatalf("no traffic measured (generator %.0f pps)", r.genPPS)
	}
	if sc == "l2fwd" || sc == "l3fwd" {
		// The sink counts bytes: bits per frame are the frame's size (FCS included) times 8, or the IMIX mean.
		want, tol := 64.0, 0.5
		if param == "imix" {
			want, tol = 354.3, 0.15*354.3 // what the DUT dropped skews the mix a little
		}
		if got := r.bps / r.pps / 8; got < want-tol || got > want+tol {
			t.Fatalf("%.0f bit/s at %.0f pps: %.1f bytes per frame at the sink, want %.1f", r.bps, r.pps, got, want)
		}
		// sysCPU itself is -1 when other processes' time swamped the window (a busy machine): not asserted.
		if r.sysCPURaw <= 0 || r.delivered <= 0 || r.busyPct <= 0 {
			t.Fatalf("fixed-rate phase: whole-system CPU %.0f ns/packet, delivered %.2f, busy %.1f%%", r.sysCPURaw, r.delivered, r.busyPct)
		}
	}
	if impl == "xdpnet" && sc != "txonly" && (r.cpuPerPkt <= 0 || r.cpuPct <= 0) {
		t.Fatalf("xdpnet DUT CPU not measured: %v ns/packet, %v%% of a core", r.cpuPerPkt, r.cpuPct)
	}
	if (impl == "kernel" || sc == "txonly") && r.cpuPerPkt != -1 {
		t.Fatalf("%s %s has no DUT thread, yet DUT CPU %v ns/packet", sc, impl, r.cpuPerPkt)
	}
}

// tcpSmoke sends 8 MiB of random bytes over one flow to impl's receiver and checks that every byte arrived, in
// order (byte count and CRC-32C of both sides), then runs the windowed trial and checks that it measured a rate.
func tcpSmoke(t *testing.T, o *options, impl string) {
	const total = 8 << 20
	sent, got, sentCRC, gotCRC, err := tcpTransfer(o, impl, total, 20*time.Second)
	if err != nil {
		t.Fatalf("sent %d, received %d: %v", sent, got, err)
	}
	if sent != total || got != total {
		t.Fatalf("sender wrote %d bytes, receiver read %d, want %d each", sent, got, total)
	}
	if sentCRC != gotCRC {
		t.Fatalf("%d bytes arrived but CRC-32C %08x != sent %08x: the stream was reordered or corrupted", got, gotCRC, sentCRC)
	}
	r, err := trial(o, "tcp", impl, "")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d bytes intact (CRC-32C %08x); windowed: %.2f Gbit/s", got, gotCRC, r.bps/1e9)
	if r.bps <= 0 {
		t.Fatal("no rate measured in the window")
	}
}

func TestMedianAndTable(t *testing.T) {
	if m := median([]float64{3, 1, 2}); m != 2 {
		t.Fatalf("median %v", m)
	}
	if m := median([]float64{4, 1, 2, 3}); m != 2.5 {
		t.Fatalf("median %v", m)
	}
	a := 0.0
	rep := &Report{Machine: Machine{CPU: "x", Cores: 2, Kernel: "6.18"}, Runs: 1, Results: []*Result{
		{Scenario: "l2fwd", Impl: "xdpnet", Runs: []float64{2e6}, MedianPPS: 2e6, Ratio: 2, AllocsPerPacket: &a,
			CPUNsPerPacketRuns: []float64{400}, CPUNsPerPacket: 400, CPUPercent: 80},
		{Scenario: "l2fwd", Impl: "asavie", Runs: []float64{1e6}, MedianPPS: 1e6, Ratio: 1,
			CPUNsPerPacketRuns: []float64{1000}, CPUNsPerPacket: 1000, CPUPercent: 100, CPURatio: 2.5},
		{Scenario: "l3fwd", Impl: "kernel", Runs: []float64{1e6}, MedianPPS: 1e6},
		{Scenario: "l2fwd", Impl: "dpdk", Error: "not available: no testpmd"},
		{Scenario: "l3fwd", Impl: "dpdk", Runs: []float64{3e6}, MedianPPS: 3e6},
		{Scenario: "tcp", Impl: "xdpnet", RunsBitsPerSec: []float64{3e9, 4e9}, MedianBitsPerSec: 3.5e9, Ratio: 0.5},
		{Scenario: "tcp", Impl: "kernel", RunsBitsPerSec: []float64{7e9, 7e9}, MedianBitsPerSec: 7e9, Ratio: 1},
		{Scenario: "l3fwd", Param: "imix", Impl: "xdpnet", Runs: []float64{0.5e6}, MedianPPS: 0.5e6, RunsBitsPerSec: []float64{1.42e9}, MedianBitsPerSec: 1.42e9,
			SysCPURuns: []float64{3000}, SysCPU: 3000, SysCPURaw: 4000, Delivered: 0.99, BusyPct: 30, OthersPct: 10},
		{Scenario: "l3fwd", Param: "imix", Impl: "kernel", Runs: []float64{0.25e6}, MedianPPS: 0.25e6, SysCPURuns: []float64{1500}, SysCPU: 1500, SysCPURaw: 1600,
			SysCPURatio: 0.5, Delivered: 1, BusyPct: 15, OthersPct: 1},
		{Scenario: "tcpfwd", Param: tcpfwdParams[2], Impl: "xdpnet", RunsBitsPerSec: []float64{2e9}, MedianBitsPerSec: 2e9, Ratio: 0.5, Retransmits: &a,
			SysCPURuns: []float64{900}, SysCPU: 900, Delivered: 1, BusyPct: 40},
		{Scenario: "tcpfwd", Param: tcpfwdParams[2], Impl: "dpdk", Error: "not available: no testpmd"},
		{Scenario: "rtt", Impl: "xdpnet-busy", RTTRuns: []rttStats{{Min: 10, Avg: 20, P50: 15, P99: 90, Max: 100}}, RTT: &rttStats{Min: 10, Avg: 20, P50: 15, P99: 90, Max: 100}, Ratio: 2},
	}, CPURate: 100000, TCPRate: 1e9}
	md := table(rep)
	for _, want := range []string{"| l2fwd | 64 | xdpnet | 2.000 | 2.000 |  |", "2.00x asavie", "| l2fwd | 64 | dpdk | n/a |", "no testpmd",
		"| 0.000 | 400 | 80 |  |", "| 1000 | 100 | 2.50x xdpnet |", "| l3fwd | 64 | kernel | 1.000 | 1.000 |  | 0.000 |  |  | n/a | n/a |  |", "DUT CPU n/a: kernel forwarding",
		"| l3fwd | imix | xdpnet | 0.500 | 0.500 | 1.42 |", "at a fixed 100 kpps", "| l3fwd | imix | xdpnet | 3000 | 3000 |  | 4000 | 99.0% (lossy) | 30 | 10 | 0.0 |",
		"| l3fwd | imix | kernel | 1500 | 1500 | 0.50x | 1600 | 100.0% |", "at 1.0 Gbit/s offered", "| 1 flow, offloads off | xdpfwd (adaptive) | 2.00 | 2.00 | 0.50x | 0 | 900 |  | 100.0% | 40 |",
		"| 1 flow, offloads off | testpmd mac forward | n/a |", "| xdpfwd (busy) | 10 | 20 | 15 | 90 | 100 | 2.0x | 0 |",
		"testpmd does not route: mac-forward reference", "in Gbit/s (not Mpps)", "| xdpnet (poller + stack, ListenTCP) | 3.50 | 3.00, 4.00 | 0.50x |",
		"| Linux (kernel TCP) | 7.00 | 7.00, 7.00 |  |"} {
		if !contains(md, want) {
			t.Fatalf("table lacks %q:\n%s", want, md)
		}
	}
	svg := chart(rep)
	if contains(svg, ">tcp<") {
		t.Fatalf("chart (Mpps) draws the tcp scenario (Gbit/s):\n%s", svg)
	}
	if !contains(svg, "<svg") || !contains(svg, ">n/a<") || !contains(svg, "xdpnet") {
		t.Fatalf("chart:\n%s", svg)
	}
}

func TestRoundRatio(t *testing.T) {
	// asavie spends 2x, 1x and 3x xdpnet's CPU per packet in rounds 0-2; round 3 has no asavie run.
	asavie := map[int]float64{0: 800, 1: 500, 2: 1500}
	xdpnet := map[int]float64{0: 400, 1: 500, 2: 500, 3: 450}
	if r := roundRatio(asavie, xdpnet); r != 2 {
		t.Fatalf("roundRatio = %v, want 2 (median of 2, 1, 3)", r)
	}
	if r := roundRatio(map[int]float64{0: 1}, map[int]float64{1: 1}); r != 0 {
		t.Fatalf("no common round: roundRatio = %v, want 0", r)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

// TestSoakSmoke runs the soak for 2 s (the real one is `go run ./bench -scenario soak -duration 10m`): samples
// are taken, traffic flows, and after shutdown every frame of the DUT and the generator is back in its pool.
// Memory flatness over 2 s means nothing and is not asserted.
func TestSoakSmoke(t *testing.T) {
	netlab.RequirePrivileges(t)
	o := &options{duration: 2 * time.Second, flows: 4, genCPU: 0, dutCPU: 1, genMode: "busy", dutMode: "adaptive", dutBudget: 32}
	rep, err := soak(o, machine(), 500*time.Millisecond, nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Samples) < 3 {
		t.Fatalf("%d samples in 2 s at 500 ms", len(rep.Samples))
	}
	if rep.Counted == 0 || rep.DUTTx == 0 {
		t.Fatalf("no traffic: sink counted %d, DUT forwarded %d", rep.Counted, rep.DUTTx)
	}
	if rep.DUTCheck != "ok" || rep.GenCheck != "ok" {
		t.Fatalf("frame accounting after shutdown: DUT %s, generator %s", rep.DUTCheck, rep.GenCheck)
	}
	if rep.Sent != rep.DUTRx+rep.KernelDrops {
		t.Fatalf("generator sent %d, DUT received %d and its sockets dropped %d: %d frames unaccounted", rep.Sent, rep.DUTRx, rep.KernelDrops, int64(rep.Sent)-int64(rep.DUTRx+rep.KernelDrops))
	}
	if len(rep.DUTFrames) != 1 || rep.DUTFrames[0].Free != rep.DUTFrames[0].Total {
		t.Fatalf("DUT frames after shutdown: %v", rep.DUTFrames)
	}
	md := soakTable(rep)
	for _, want := range []string{"| t | sink Mpps", "Verdict:", "DUT queue 0 frames after shutdown: total="} {
		if !strings.Contains(md, want) {
			t.Fatalf("soak table lacks %q:\n%s", want, md)
		}
	}
}

func TestJudgeSoak(t *testing.T) {
	mk := func(at time.Duration, rss, heap uint64, gc uint32) soakSample {
		return soakSample{At: at, RSS: rss, HeapInuse: heap, NumGC: gc}
	}
	rep := &SoakReport{DUTCheck: "ok", GenCheck: "ok", Sent: 100, DUTRx: 90, KernelDrops: 10, DUTTx: 92, Counted: 90, Samples: []soakSample{
		mk(10*time.Second, 10<<20, 5<<20, 1), mk(30*time.Second, 30<<20, 6<<20, 2), mk(10*time.Minute, 31<<20, 6<<20, 8)}}
	judgeSoak(rep)
	if !rep.Flat || rep.RSSGrowth != 1<<20 || rep.GCAfterWarmup != 6 {
		t.Fatalf("flat run judged %v (RSS %+d, GC %d): %v", rep.Flat, rep.RSSGrowth, rep.GCAfterWarmup, rep.Verdict)
	}
	rep.Samples[2].RSS = 80 << 20
	rep.Verdict = nil
	judgeSoak(rep)
	if rep.Flat {
		t.Fatalf("RSS +50 MiB judged flat: %v", rep.Verdict)
	}
	rep.Samples[2].RSS = 31 << 20
	rep.Sent = 101
	rep.Verdict = nil
	judgeSoak(rep)
	if rep.Flat {
		t.Fatalf("a frame unaccounted between generator and DUT judged flat: %v", rep.Verdict)
	}
	rep.Sent = 100
	rep.DUTCheck = "queue 0: 3 frames in flight"
	rep.Verdict = nil
	judgeSoak(rep)
	if rep.Flat {
		t.Fatalf("lost frames judged flat: %v", rep.Verdict)
	}
}
