package metrics

import (
	"bytes"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/poller"
	"github.com/xdpnet/xdpnet/stack"
)

type fixedPoller poller.Stats

func (f fixedPoller) Stats() poller.Stats { return poller.Stats(f) }

type fixedStack struct {
	s      stack.Stats
	neigh  []stack.Neighbour
	routes []stack.Route
}

func (f *fixedStack) Stats() stack.Stats            { return f.s }
func (f *fixedStack) Neighbours() []stack.Neighbour { return f.neigh }
func (f *fixedStack) RouteCounts() (v4, v6 int) {
	for _, r := range f.routes {
		if r.Prefix.Addr().Is4() {
			v4++
		} else {
			v6++
		}
	}
	return v4, v6
}

// expose gathers cs through a pedantic registry (which checks every metric against its Desc) as text.
func expose(t *testing.T, cs ...prometheus.Collector) string {
	t.Helper()
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(cs...)
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	for _, f := range fams {
		if _, err := expfmt.MetricFamilyToText(&buf, f); err != nil {
			t.Fatal(err)
		}
	}
	return buf.String()
}

func TestCollectorSeries(t *testing.T) {
	var drops pipeline.DropCounters
	drops[pipeline.DropTTLExpired] = 3
	ports := []poller.PortStats{
		{Name: "eth0", RxPackets: 1000, RxBytes: 64000, RxNotOwned: 1, Kernel: unix.XDPStatistics{Rx_dropped: 2}, FillLevel: 7},
		{Port: 1, Name: "eth1", TxPackets: 1000, TxBytes: 64000, TxRingFull: 4},
	}
	p := fixedPoller{Queues: []poller.QueueStats{{Queue: 1, Ports: ports, Drops: drops, BusyLoops: 100, IdleLoops: 300, FreeFrames: 8000}}}
	st := &fixedStack{s: stack.Stats{Forwarded: 990, NDPSolicitationsOut: 5},
		neigh:  []stack.Neighbour{{State: stack.NeighbourReachable}, {State: stack.NeighbourReachable}, {State: stack.NeighbourStale}},
		routes: make([]stack.Route, 3)}
	text := expose(t, NewCollector(p, st))
	for _, want := range []string{
		`xdpnet_rx_packets_total{port="eth0",queue="1"} 1000`,
		`xdpnet_tx_bytes_total{port="eth1",queue="1"} 64000`,
		`xdpnet_rx_bad_descs_total{kind="not_owned",port="eth0",queue="1"} 1`,
		`xdpnet_xdp_rx_dropped_total{port="eth0",queue="1"} 2`,
		`xdpnet_tx_ring_full_total{port="eth1",queue="1"} 4`,
		`xdpnet_ring_entries{port="eth0",queue="1",ring="fill"} 7`,
		`xdpnet_free_frames{queue="1"} 8000`,
		`xdpnet_drops_total{queue="1",reason="ttl_expired"} 3`,
		`xdpnet_drops_total{queue="1",reason="no_route"} 0`,
		`xdpnet_poller_loops_total{kind="idle",queue="1"} 300`,
		`xdpnet_poller_busy_ratio{queue="1"} 0.25`,
		`xdpnet_neighbours{state="reachable"} 2`,
		`xdpnet_neighbours{state="failed"} 0`,
		`xdpnet_routes 3`,
		`xdpnet_stack_forwarded_total 990`,
		`xdpnet_stack_ndp_solicitations_out_total 5`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("exposition lacks %q", want)
		}
	}
	// Every stack counter is exported, under the name StackCounters gives it.
	for _, c := range StackCounters(stack.Stats{}) {
		if !strings.Contains(text, "xdpnet_stack_"+c.Name+"_total ") {
			t.Errorf("no series for stack counter %s", c.Name)
		}
	}
}

// TestCollectorOneSource: a program with only a poller (a bridge) or only a stack (over memlink) registers
// the Collector with the other source nil, typed or not, and gets the series of the one it has.
func TestCollectorOneSource(t *testing.T) {
	p := fixedPoller{Queues: []poller.QueueStats{{Queue: 0, Ports: []poller.PortStats{{Name: "eth0", RxPackets: 1}}}}}
	var nilStack *stack.Stack
	text := expose(t, NewCollector(p, nilStack))
	if !strings.Contains(text, `xdpnet_rx_packets_total{port="eth0",queue="0"} 1`) || strings.Contains(text, "xdpnet_stack_") {
		t.Errorf("poller only:\n%s", text)
	}
	var nilPoller *poller.Poller
	text = expose(t, NewCollector(nilPoller, &fixedStack{s: stack.Stats{Delivered: 4}}))
	if !strings.Contains(text, "xdpnet_stack_delivered_total 4\n") || strings.Contains(text, "xdpnet_rx_") {
		t.Errorf("stack only:\n%s", text)
	}
	if text := expose(t, NewCollector(nil, nil)); text != "" {
		t.Errorf("no sources exposed:\n%s", text)
	}
}
