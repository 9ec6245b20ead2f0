package main

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"
	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/metrics"
	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/poller"
	"github.com/xdpnet/xdpnet/proto"
	"github.com/xdpnet/xdpnet/stack"
)

// TestExampleConfigChecks: the shipped example.yaml passes `xdpfwd check`.
func TestExampleConfigChecks(t *testing.T) {
	var stdout, stderr bytes.Buffer
	if code := realMain(context.Background(), []string{"check", "--config", "example.yaml"}, &stdout, &stderr); code != exitOK {
		t.Fatalf("check example.yaml: exit %d\n%s", code, stderr.String())
	}
	if stdout.String() != "ok\n" {
		t.Errorf("check example.yaml printed %q, want \"ok\\n\"", stdout.String())
	}
	fc, err := loadConfig("example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if len(fc.ifaces) != 2 || len(fc.routes) != 3 || len(fc.acl) != 3 || fc.metrics != defaultMetricsAddr {
		t.Errorf("example.yaml read as %d interfaces, %d routes, %d acl rules, metrics %q", len(fc.ifaces), len(fc.routes), len(fc.acl), fc.metrics)
	}
}

const goodHead = `interfaces:
  - name: r0
    addresses: [198.18.0.1/24]
  - name: r1
    addresses: [198.19.0.1/24]
`

// TestCheckBadConfigLines: each bad config is refused with exit 2 and FILE:LINE pointing at the culprit.
func TestCheckBadConfigLines(t *testing.T) {
	for _, c := range []struct {
		name, text string
		want       []string // "LINE: fragment", each must appear
	}{
		{"nexthop", goodHead + "routes:\n  - prefix: 198.20.0.0/16\n    via: x\n",
			[]string{`:8: route 198.20.0.0/16: next hop "x" is not an IPv4 address`}},
		{"hostbits", goodHead + "routes:\n  - prefix: 198.20.0.0/16\n    via: 198.19.0.2\n  - prefix: 198.21.0.1/16\n    via: 198.19.0.2\n",
			[]string{":9: route 198.21.0.1/16: prefix has host bits set; did you mean 198.21.0.0/16?"}},
		{"unreachable-nexthop", goodHead + "routes:\n  - prefix: 198.20.0.0/16\n    via: 198.30.0.2\n",
			[]string{":7: route 198.20.0.0/16: next hop 198.30.0.2 is on none of the interfaces' networks"}},
		{"duplicate-route", goodHead + "routes:\n  - {prefix: 198.20.0.0/16, via: 198.19.0.2}\n  - {prefix: 198.20.0.0/16, type: blackhole}\n",
			[]string{":8: route 198.20.0.0/16: given twice (first at line 7)"}},
		{"acl", goodHead + "acl:\n  - drop udp to any port 53\n  - drop udp port 5\n",
			[]string{`:8: acl rule "drop udp port 5": unexpected "port"`}},
		{"mode-and-unknown", goodHead + "mode: fast\nqueues: 0\nfrobnicate: yes\n",
			[]string{`:6: mode: unknown poll mode "fast"`, `:7: queues "0"`, `:8: unknown setting "frobnicate"`}},
		{"iface", "interfaces:\n  - name: r0\n    addresses: [198.18.0.1]\n",
			[]string{`:3: interface address "198.18.0.1" is not an IPv4 address with prefix length`}},
		{"no-interfaces", "mode: busy\n", []string{":1: no interfaces:"}},
		{"kernel", goodHead + "kernel: maybe\ntable: -1\n", []string{`:6: kernel "maybe": want true or false`, `:7: table "-1"`}},
		{"metrics", goodHead + "metrics: localhost\n", []string{`:6: metrics: "localhost": want HOST:PORT`}},
		{"yaml", goodHead + "routes: [\n", []string{":6: not valid YAML"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "xdpfwd.yaml")
			if err := os.WriteFile(path, []byte(c.text), 0o644); err != nil {
				t.Fatal(err)
			}
			var stdout, stderr bytes.Buffer
			if code := realMain(context.Background(), []string{"check", "--config", path}, &stdout, &stderr); code != exitUsage {
				t.Fatalf("exit %d, want %d\n%s", code, exitUsage, stderr.String())
			}
			for _, w := range c.want {
				if !strings.Contains(stderr.String(), path+w) {
					t.Errorf("stderr lacks %q:\n%s", path+w, stderr.String())
				}
			}
			if strings.Contains(stdout.String(), "ok") {
				t.Errorf("stdout says ok for a bad config: %q", stdout.String())
			}
		})
	}
}

// TestConfigFlagsOverride: flags on the command line win over the file; the rest comes from the file.
func TestConfigFlagsOverride(t *testing.T) {
	o, err := parseRunArgs([]string{"--config", "example.yaml", "--mode", "busy", "--iface", "x0=198.18.5.1/24"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.mode != "busy" {
		t.Errorf("mode %q, want busy from the command line", o.mode)
	}
	if len(o.ifaces) != 1 || o.ifaces[0].Name != "x0" {
		t.Errorf("interfaces %+v, want only x0 from the command line", o.ifaces)
	}
	if o.logFormat != "json" || o.metrics != defaultMetricsAddr || len(o.fileRoutes) != 3 || len(o.acl) != 3 {
		t.Errorf("from the file: log-format %q metrics %q routes %d acl %d", o.logFormat, o.metrics, len(o.fileRoutes), len(o.acl))
	}
	c, err := o.check()
	if err != nil {
		t.Fatal(err)
	}
	if c.poller.Mode != poller.Busy || len(c.stack.Routes) != 3 || c.ops.configPath != "example.yaml" || c.ops.routesOwner != "" {
		t.Errorf("runConfig: mode %v, %d routes, ops %+v", c.poller.Mode, len(c.stack.Routes), c.ops)
	}
	if _, err := parseRunArgs([]string{"--config", "nonexistent.yaml"}, io.Discard); err == nil || !strings.Contains(err.Error(), "nonexistent.yaml") {
		t.Errorf("missing config file: %v", err)
	}
}

func route(pfx, via string) stack.Route {
	r := stack.Route{Prefix: netip.MustParsePrefix(pfx)}
	if via == "blackhole" {
		r.Type = stack.Blackhole
	} else {
		r.NextHop = netip.MustParseAddr(via)
	}
	return r
}

// TestApplyRoutesDiff: a reload adds, replaces and deletes exactly the routes that changed, and a bad new
// route leaves the table as it was.
func TestApplyRoutesDiff(t *testing.T) {
	old := []stack.Route{route("198.20.0.0/16", "198.19.0.2"), route("198.21.0.0/16", "198.19.0.2"), route("198.22.0.0/16", "blackhole")}
	st, err := stack.New(stack.Config{
		Interfaces: []stack.Interface{{Name: "r0", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.0.1/24")}},
			{Name: "r1", Addrs: []netip.Prefix{netip.MustParsePrefix("198.19.0.1/24")}}},
		Routes: old,
	})
	if err != nil {
		t.Fatal(err)
	}
	next := []stack.Route{route("198.20.0.0/16", "198.19.0.2"), route("198.21.0.0/16", "198.18.0.2"), route("198.23.0.0/16", "198.19.0.3")}
	added, deleted, err := applyRoutes(st, old, next)
	if err != nil || added != 2 || deleted != 2 {
		t.Fatalf("applyRoutes = %d added, %d deleted, %v; want 2, 2, nil", added, deleted, err)
	}
	for _, c := range []struct{ dst, nh string }{{"198.20.1.1", "198.19.0.2"}, {"198.21.1.1", "198.18.0.2"}, {"198.23.1.1", "198.19.0.3"}} {
		r, ok := st.Lookup(netip.MustParseAddr(c.dst))
		if !ok || r.NextHop != netip.MustParseAddr(c.nh) {
			t.Errorf("after reload %s -> %v (%v), want via %s", c.dst, r, ok, c.nh)
		}
	}
	if r, ok := st.Lookup(netip.MustParseAddr("198.22.1.1")); ok {
		t.Errorf("deleted blackhole 198.22.0.0/16 still matches: %v", r)
	}
	before := st.Routes()
	// 198.24.0.0/16 via a next hop on no network: refused, and nothing else changes either.
	_, _, err = applyRoutes(st, next, append(next[:1:1], route("198.24.0.0/16", "203.0.113.1")))
	if err == nil {
		t.Fatal("a route via an unreachable next hop was accepted")
	}
	if after := st.Routes(); len(after) != len(before) {
		t.Errorf("failed reload changed the table: %v -> %v", before, after)
	}
}

// TestApplyRoutesAllOrNothing: a reload whose first routes are good changes and whose second half is bad (a
// next hop on no network, an interface that does not exist, a prefix that is a connected route) changes
// nothing at all: the running table is the one from before, route for route.
func TestApplyRoutesAllOrNothing(t *testing.T) {
	old := []stack.Route{route("198.20.0.0/16", "198.19.0.2"), route("198.21.0.0/16", "198.19.0.2"),
		route("198.22.0.0/16", "blackhole"), route("198.23.0.0/16", "198.19.0.3")}
	st, err := stack.New(stack.Config{
		Interfaces: []stack.Interface{{Name: "r0", Addrs: []netip.Prefix{netip.MustParsePrefix("198.18.0.1/24")}},
			{Name: "r1", Addrs: []netip.Prefix{netip.MustParsePrefix("198.19.0.1/24")}}},
		Routes: old,
	})
	if err != nil {
		t.Fatal(err)
	}
	before := st.Routes()
	// First half: a changed next hop, a deletion (198.21/16 left out), a new route. All valid.
	good := []stack.Route{route("198.20.0.0/16", "198.18.0.2"), route("198.22.0.0/16", "blackhole"), route("198.24.0.0/16", "198.18.0.9")}
	noIface := route("198.23.0.0/16", "198.19.0.3")
	noIface.Interface = "r9"
	for name, bad := range map[string][]stack.Route{
		"next hop on no network":   {route("198.23.0.0/16", "203.0.113.1")},
		"interface not configured": {noIface},
		"connected prefix":         {route("198.23.0.0/16", "198.19.0.3"), route("198.19.0.0/24", "198.18.0.2")},
	} {
		added, deleted, err := applyRoutes(st, old, append(append([]stack.Route{}, good...), bad...))
		if err == nil || added != 0 || deleted != 0 {
			t.Errorf("%s: applyRoutes = %d, %d, %v; want an error and nothing applied", name, added, deleted, err)
		}
		if after := st.Routes(); !slices.Equal(after, before) {
			t.Errorf("%s: a failed reload changed the table:\n before %v\n after  %v", name, before, after)
		}
	}
	// The same first half with a valid second half goes in whole.
	if _, _, err := applyRoutes(st, old, append(good, route("198.23.0.0/16", "198.19.0.4"))); err != nil {
		t.Fatal(err)
	}
	for dst, nh := range map[string]string{"198.20.1.1": "198.18.0.2", "198.23.1.1": "198.19.0.4", "198.24.1.1": "198.18.0.9"} {
		if r, ok := st.Lookup(netip.MustParseAddr(dst)); !ok || r.NextHop != netip.MustParseAddr(nh) {
			t.Errorf("%s -> %v %v, want via %s", dst, r, ok, nh)
		}
	}
	if r, ok := st.Lookup(netip.MustParseAddr("198.21.1.1")); ok {
		t.Errorf("198.21.0.0/16 left out of the file still matches: %v", r)
	}
}

// udpFrame builds Ethernet + IPv4 + UDP bytes with correct checksums.
func udpFrame(src, dst string, sport, dport uint16) []byte {
	b := make([]byte, 14+20+8+4)
	binary.BigEndian.PutUint16(b[12:], 0x0800)
	ip := b[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], 20+8+4)
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	binary.BigEndian.PutUint16(ip[10:], proto.Checksum(ip[:20]))
	udp := ip[20:]
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], 12)
	return b
}

func aclBatch(frames ...[]byte) (*pipeline.Batch, []uint16) {
	b := new(pipeline.Batch)
	sel := make([]uint16, len(frames))
	for i, f := range frames {
		buf := make([]byte, 2048)
		copy(buf[256:], f)
		b.Pkts[i].Reset(buf, 0, 256, 256+len(f))
		sel[i] = uint16(i)
	}
	b.N = len(frames)
	return b, sel
}

// TestACLSwitch: the stage passes everything with no ACL, applies the one stored, and a swap changes the
// verdicts of the next batch.
func TestACLSwitch(t *testing.T) {
	s := new(aclSwitch)
	to53 := udpFrame("198.18.0.2", "198.19.0.2", 1000, 53)
	to54 := udpFrame("198.18.0.2", "198.19.0.2", 1000, 54)
	b, sel := aclBatch(to53, to54)
	s.Process(b, sel)
	for i := range 2 {
		if b.Pkts[i].Verdict != pipeline.Accept {
			t.Fatalf("no ACL: packet %d verdict %v", i, b.Pkts[i].Verdict)
		}
	}
	rules, err := pipeline.ParseRules(strings.NewReader("drop udp to any port 53\n"))
	if err != nil {
		t.Fatal(err)
	}
	a, err := pipeline.NewACL(rules)
	if err != nil {
		t.Fatal(err)
	}
	s.cur.Store(a)
	b, sel = aclBatch(to53, to54)
	s.Process(b, sel)
	if b.Pkts[0].Verdict != pipeline.Drop || b.Pkts[0].Reason != pipeline.DropFiltered || b.Pkts[1].Verdict != pipeline.Accept {
		t.Errorf("with the rule: verdicts %v/%v %v, want drop(filtered), accept", b.Pkts[0].Verdict, b.Pkts[0].Reason, b.Pkts[1].Verdict)
	}
	if s.rules() != 1 {
		t.Errorf("rules() = %d", s.rules())
	}
}

func TestACLSwitchNoAllocs(t *testing.T) {
	s := new(aclSwitch)
	rules, _ := pipeline.ParseRules(strings.NewReader("drop udp to any port 53\naccept\n"))
	a, _ := pipeline.NewACL(rules)
	s.cur.Store(a)
	f := udpFrame("198.18.0.2", "198.19.0.2", 1000, 54)
	b, sel := aclBatch(f, f, f, f)
	if n := testing.AllocsPerRun(100, func() { s.Process(b, sel) }); n != 0 {
		t.Errorf("aclSwitch.Process allocates %v per batch", n)
	}
}

func BenchmarkACLSwitch(b *testing.B) {
	s := new(aclSwitch)
	rules, _ := pipeline.ParseRules(strings.NewReader("drop udp to any port 53\ndrop from 198.18.9.0/24\n"))
	a, _ := pipeline.NewACL(rules)
	s.cur.Store(a)
	frames := make([][]byte, 64)
	for i := range frames {
		frames[i] = udpFrame("198.18.0.2", "198.19.0.2", 1000, uint16(100+i))
	}
	bt, sel := aclBatch(frames...)
	b.ReportAllocs()
	for b.Loop() {
		s.Process(bt, sel)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/pkt")
}

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

func fixedStats(scale uint64) (fixedPoller, *fixedStack) {
	var drops pipeline.DropCounters
	drops[pipeline.DropTTLExpired] = 3 * scale
	ps := []poller.PortStats{
		{Port: 0, Name: "r0", RxPackets: 1000 * scale, RxBytes: 64000 * scale, TxPackets: 10 * scale, TxBytes: 640 * scale,
			Kernel: unix.XDPStatistics{Rx_dropped: 2}},
		{Port: 1, Name: "r1", RxPackets: 10 * scale, RxBytes: 640 * scale, TxPackets: 1000 * scale, TxBytes: 64000 * scale, TxRingFull: 4},
	}
	q := poller.QueueStats{Queue: 0, CPU: -1, Ports: ps, Drops: drops, BusyLoops: 100 * scale, IdleLoops: 300 * scale, Sleeps: scale}
	return fixedPoller{Queues: []poller.QueueStats{q}, Ports: ps, Drops: drops},
		&fixedStack{s: stack.Stats{Forwarded: 990 * scale, Forwarded6: 90 * scale, ICMPErrorsOut: 3 * scale, ICMPv6ErrorsOut: scale},
			neigh: []stack.Neighbour{{Addr: netip.MustParseAddr("198.18.0.2"), State: stack.NeighbourReachable},
				{Addr: netip.MustParseAddr("2001:2::2"), State: stack.NeighbourReachable},
				{Addr: netip.MustParseAddr("198.19.0.2"), State: stack.NeighbourStale}},
			routes: []stack.Route{route("198.18.0.0/24", "blackhole"), route("198.19.0.0/24", "blackhole"), route("2001:2::/64", "blackhole")}}
}

// TestCollectorAndStatsTable: the collector's exposition has the xdpnet_ series with the right values, and
// the stats subcommand's parser and table read it back (rates between two scrapes).
func TestCollectorAndStatsTable(t *testing.T) {
	expose := func(scale uint64) []byte {
		p, st := fixedStats(scale)
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(metrics.NewCollector(p, st), familyCollector{st}, opsCollector{func() (uint64, uint64, int) { return 1, 0, 2 }})
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
		return buf.Bytes()
	}
	text := string(expose(1))
	for _, want := range []string{
		`xdpnet_rx_packets_total{port="r0",queue="0"} 1000`,
		`xdpnet_tx_bytes_total{port="r1",queue="0"} 64000`,
		`xdpnet_drops_total{queue="0",reason="ttl_expired"} 3`,
		`xdpnet_drops_total{queue="0",reason="no_route"} 0`,
		`xdpnet_xdp_rx_dropped_total{port="r0",queue="0"} 2`,
		`xdpnet_tx_ring_full_total{port="r1",queue="0"} 4`,
		`xdpnet_poller_busy_ratio{queue="0"} 0.25`,
		`xdpnet_neighbours{state="reachable"} 2`,
		`xdpnet_routes 3`,
		`xdpnet_stack_forwarded_total 990`,
		`xdpnet_config_reloads_total{result="ok"} 1`,
		`xdpnet_acl_rules 2`,
		`xdpnet_ip_forwarded_total{family="ipv4"} 900`,
		`xdpnet_ip_forwarded_total{family="ipv6"} 90`,
		`xdpnet_ip_icmp_errors_out_total{family="ipv4"} 3`,
		`xdpnet_ip_icmp_errors_out_total{family="ipv6"} 1`,
		`xdpnet_ip_routes{family="ipv4"} 2`,
		`xdpnet_ip_routes{family="ipv6"} 1`,
		`xdpnet_ip_neighbours{family="ipv4"} 2`,
		`xdpnet_ip_neighbours{family="ipv6"} 1`,
	} {
		if !strings.Contains(text, want+"\n") {
			t.Errorf("exposition lacks %q", want)
		}
	}
	t0 := time.Unix(1000, 0)
	a, err := parseMetrics(bytes.NewReader(expose(1)), t0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := parseMetrics(bytes.NewReader(expose(3)), t0.Add(2*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	writeStatsTable(&out, "test", a, b)
	table := out.String()
	// r0: rx 1000 -> 3000 over 2 s = 1000 pps; ttl_expired 3 -> 9 = 3/s; busy 200 of 800 loops.
	for _, want := range []string{"r0", "r1", "1000", "3000", "ttl_expired=3", "0.250", "forwarded/s: 990 (ipv4 900, ipv6 90)"} {
		if !strings.Contains(table, want) {
			t.Errorf("table lacks %q:\n%s", want, table)
		}
	}
	if _, err := parseMetrics(strings.NewReader("other_metric 1\n"), t0); err == nil {
		t.Error("a non-xdpfwd endpoint was accepted")
	}
}
