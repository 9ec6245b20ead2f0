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
// checks that traffic flowed (pps > 0). It asserts nothing about speed. Implementations that cannot run on this
// machine (errNA: dpdk-testpmd not installed or no huge pages, the asavie example not building) are logged and skipped.
func TestScenariosSmoke(t *testing.T) {
	netlab.RequirePrivileges(t)
	if testing.Short() {
		t.Skip("runs every scenario for about a second each")
	}
	o := &options{runs: 1, warmup: 300 * time.Millisecond, duration: 500 * time.Millisecond, flows: 4,
		genCPU: 0, dutCPU: 1, genMode: "busy", dutMode: "adaptive", dutBudget: 32, quiet: true}
	if n := len(os.Getenv("XDPNET_BENCH_NOPIN")); n > 0 {
		o.genCPU = -1
	}
	bin, err := buildAsavie(t.TempDir())
	if err != nil {
		t.Logf("asavie l2fwd example does not build (%v); its scenario will be n/a", err)
	}
	o.asavieBin = bin
	t.Cleanup(releaseHugepages)
	for _, sc := range allScenarios {
		for _, impl := range implsOf[sc] {
			t.Run(sc+"/"+impl, func(t *testing.T) {
				r, err := trial(o, sc, impl)
				if errors.Is(err, errNA) {
					t.Skipf("%v", err)
				}
				if err != nil {
					t.Fatal(err)
				}
				t.Logf("%.3f Mpps (generator %.3f Mpps)", r.pps/1e6, r.genPPS/1e6)
				if r.pps <= 0 {
					t.Fatalf("no traffic measured (generator %.0f pps)", r.genPPS)
				}
			})
		}
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
		{Scenario: "l2fwd", Impl: "xdpnet", Runs: []float64{2e6}, MedianPPS: 2e6, Ratio: 2, AllocsPerPacket: &a},
		{Scenario: "l2fwd", Impl: "asavie", Runs: []float64{1e6}, MedianPPS: 1e6, Ratio: 1},
		{Scenario: "l2fwd", Impl: "dpdk", Error: "not available: no testpmd"},
	}}
	md := table(rep)
	for _, want := range []string{"| l2fwd | xdpnet | 2.000 | 2.000 |", "2.00x asavie", "| l2fwd | dpdk | n/a |", "no testpmd"} {
		if !contains(md, want) {
			t.Fatalf("table lacks %q:\n%s", want, md)
		}
	}
	svg := chart(rep)
	if !contains(svg, "<svg") || !contains(svg, ">n/a<") || !contains(svg, "xdpnet") {
		t.Fatalf("chart:\n%s", svg)
	}
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
