package main

import (
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/xdpnet/xdpnet/metrics"
)

// defaultMetricsPort is where --metrics and `xdpfwd stats` meet when no address is given to stats. 9469 is
// free in the Prometheus default port allocations list (exporters use 9100-9999).
const defaultMetricsPort = 9469

// defaultMetricsAddr is the address `xdpfwd stats` reads by default; `run` serves metrics only when given
// --metrics (e.g. --metrics 127.0.0.1:9469).
const defaultMetricsAddr = "127.0.0.1:9469"

// newRegistry holds everything /metrics serves: the poller's and the stack's series, xdpfwd's own, the build
// information, and the go_* (goroutines, GC, heap) and process_* (CPU, RSS, open fds) series every Go
// exporter has.
func newRegistry(p metrics.PollerSource, st metrics.StackSource, own opsCollector) *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metrics.NewCollector(p, st), own, metrics.NewBuildInfoCollector(),
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
