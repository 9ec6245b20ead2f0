package main

import (
	"bufio"
	"io"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/xdpnet/xdpnet/internal/kmirror"
	"github.com/xdpnet/xdpnet/metrics"
	"github.com/xdpnet/xdpnet/stack"
)

// defaultMetricsPort is where --metrics and `xdpfwd stats` meet when no address is given to stats. 9469 is
// free in the Prometheus default port allocations list (exporters use 9100-9999).
const defaultMetricsPort = 9469

// defaultMetricsAddr is the address `xdpfwd stats` reads by default; `run` serves metrics only when given
// --metrics (e.g. --metrics 127.0.0.1:9469).
const defaultMetricsAddr = "127.0.0.1:9469"

// newRegistry holds everything /metrics serves: the poller's and the stack's series, the stack's split by IP
// family, xdpfwd's own, the build
// information, and the go_* (goroutines, GC, heap) and process_* (CPU, RSS, open fds) series every Go
// exporter has.
func newRegistry(p metrics.PollerSource, st metrics.StackSource, own opsCollector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(p, st), familyCollector{st}, own, metrics.NewBuildInfoCollector(),
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// opsCollector exports what only xdpfwd has, next to metrics.Collector's poller and stack series: the
// SIGHUP reloads and the ACL's size, read at scrape time.
type opsCollector struct {
	read func() (reloadsOK, reloadsFailed uint64, aclRules int)
}

var (
	descReloads  = prometheus.NewDesc(metrics.Namespace+"_config_reloads_total", "SIGHUP configuration reloads, by result (ok, failed).", []string{"result"}, nil)
	descACLRules = prometheus.NewDesc(metrics.Namespace+"_acl_rules", "Rules of the ACL at the forward hook now.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c opsCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descReloads
	ch <- descACLRules
}

// Collect implements prometheus.Collector.
func (c opsCollector) Collect(ch chan<- prometheus.Metric) {
	ok, failed, rules := c.read()
	ch <- prometheus.MustNewConstMetric(descReloads, prometheus.CounterValue, float64(ok), "ok")
	ch <- prometheus.MustNewConstMetric(descReloads, prometheus.CounterValue, float64(failed), "failed")
	ch <- prometheus.MustNewConstMetric(descACLRules, prometheus.GaugeValue, float64(rules))
}

// familyCollector splits what the stack exports as totals by IP family, so that a dashboard of a dual-stack
// router shows IPv4 and IPv6 side by side: packets forwarded, ICMP errors sent, routes and neighbour entries
// (ARP for IPv4, NDP for IPv6), each with a family label (ipv4, ipv6).
type familyCollector struct{ st metrics.StackSource }

var (
	familyLabel         = []string{"family"}
	descFamilyForwarded = prometheus.NewDesc(metrics.Namespace+"_ip_forwarded_total", "Packets forwarded, by IP family.", familyLabel, nil)
	descFamilyICMPOut   = prometheus.NewDesc(metrics.Namespace+"_ip_icmp_errors_out_total", "ICMP (ipv4) and ICMPv6 (ipv6) error messages sent.", familyLabel, nil)
	descFamilyRoutes    = prometheus.NewDesc(metrics.Namespace+"_ip_routes", "Routes in the table, by IP family (connected included).", familyLabel, nil)
	descFamilyNeigh     = prometheus.NewDesc(metrics.Namespace+"_ip_neighbours", "Neighbour entries, by IP family: ARP (ipv4) and NDP (ipv6).", familyLabel, nil)
)

// Describe implements prometheus.Collector.
func (c familyCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descFamilyForwarded, descFamilyICMPOut, descFamilyRoutes, descFamilyNeigh} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c familyCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.st.Stats()
	var routes, neigh [2]int // [0] IPv4, [1] IPv6
	fam := func(a netip.Addr) int {
		if a.Is4() || a.Is4In6() {
			return 0
		}
		return 1
	}
	routes[0], routes[1] = c.st.RouteCounts()
	for _, n := range c.st.Neighbours() {
		neigh[fam(n.Addr)]++
	}
	for i, f := range [2]string{"ipv4", "ipv6"} {
		fwd, icmp := s.Forwarded-min(s.Forwarded6, s.Forwarded), s.ICMPErrorsOut // Forwarded counts both families
		if i == 1 {
			fwd, icmp = s.Forwarded6, s.ICMPv6ErrorsOut
		}
		ch <- prometheus.MustNewConstMetric(descFamilyForwarded, prometheus.CounterValue, float64(fwd), f)
		ch <- prometheus.MustNewConstMetric(descFamilyICMPOut, prometheus.CounterValue, float64(icmp), f)
		ch <- prometheus.MustNewConstMetric(descFamilyRoutes, prometheus.GaugeValue, float64(routes[i]), f)
		ch <- prometheus.MustNewConstMetric(descFamilyNeigh, prometheus.GaugeValue, float64(neigh[i]), f)
	}
}

// mirrorCollector exports the kernel mirror's counters (kernel-mirror mode only): how many netlink events it
// followed, how often it lost events and read the kernel's state again, and what the stack refused.
type mirrorCollector struct{ read func() kmirror.Stats }

var (
	descMirrorEvents    = prometheus.NewDesc(metrics.Namespace+"_kernel_mirror_events_total", "Netlink events followed from the kernel, by kind (route, address, neighbour).", []string{"kind"}, nil)
	descMirrorUpdates   = prometheus.NewDesc(metrics.Namespace+"_kernel_mirror_route_updates_total", "Route table updates made from the kernel's route events (one per burst).", nil, nil)
	descMirrorRefused   = prometheus.NewDesc(metrics.Namespace+"_kernel_mirror_route_errors_total", "Kernel routes the stack refused.", nil, nil)
	descMirrorResyncs   = prometheus.NewDesc(metrics.Namespace+"_kernel_mirror_resyncs_total", "Event subscriptions lost (e.g. ENOBUFS in a burst) and renewed with the kernel's state read again.", nil, nil)
	descMirrorResyncErr = prometheus.NewDesc(metrics.Namespace+"_kernel_mirror_resync_errors_total", "Failed attempts to subscribe again after losing events.", nil, nil)
)

// Describe implements prometheus.Collector.
func (c mirrorCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descMirrorEvents, descMirrorUpdates, descMirrorRefused, descMirrorResyncs, descMirrorResyncErr} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (c mirrorCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.read()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(descMirrorEvents, s.RouteEvents, "route")
	counter(descMirrorEvents, s.AddrEvents, "address")
	counter(descMirrorEvents, s.NeighEvents, "neighbour")
	counter(descMirrorUpdates, s.RouteUpdates)
	counter(descMirrorRefused, s.RouteErrors)
	counter(descMirrorResyncs, s.Resyncs)
	counter(descMirrorResyncErr, s.ResyncErrors)
}

// writeRoutes writes the routing table as /routes serves it: one route a line in `ip route` form, in the
// order given (Stack.Routes sorts them, IPv4 before IPv6, by prefix).
func writeRoutes(w io.Writer, routes []stack.Route) error {
	bw := bufio.NewWriterSize(w, 64<<10)
	for _, r := range routes {
		bw.WriteString(r.String())
		bw.WriteByte('\n')
	}
	return bw.Flush()
}
