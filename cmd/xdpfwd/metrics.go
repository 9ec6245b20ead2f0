package main

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/poller"
	"github.com/xdpnet/xdpnet/stack"
)

// defaultMetricsPort is where --metrics and `xdpfwd stats` meet when no address is given to stats. 9469 is
// free in the Prometheus default port allocations list (exporters use 9100-9999).
const defaultMetricsPort = 9469

// defaultMetricsAddr is the address `xdpfwd stats` reads by default; `run` serves metrics only when given
// --metrics (e.g. --metrics 127.0.0.1:9469).
const defaultMetricsAddr = "127.0.0.1:9469"

// collector is a prometheus.Collector that reads the poller's and the stack's snapshots at scrape time, so
// the packet path does no metrics work at all: its counters are the ones it keeps anyway (published once
// per batch with an atomic store), and a scrape costs one Stats() call each.
type collector struct {
	p     statsSource
	st    stackSource
	extra func() (reloadsOK, reloadsFailed uint64, aclRules int)
}

// statsSource and stackSource are what the collector reads; *poller.Poller and *stack.Stack satisfy them,
// and tests feed fixed snapshots.
type statsSource interface{ Stats() poller.Stats }

type stackSource interface {
	Stats() stack.Stats
	Neighbours() []stack.Neighbour
	Routes() []stack.Route
}

func metricDesc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc("xdpnet_"+name, help, labels, nil)
}

var (
	pqLabels = []string{"port", "queue"}

	descRxPackets     = metricDesc("rx_packets_total", "Packets taken off the AF_XDP RX ring.", pqLabels...)
	descRxBytes       = metricDesc("rx_bytes_total", "Bytes of the packets taken off the RX ring.", pqLabels...)
	descTxPackets     = metricDesc("tx_packets_total", "Packets put on the AF_XDP TX ring.", pqLabels...)
	descTxBytes       = metricDesc("tx_bytes_total", "Bytes of the packets put on the TX ring.", pqLabels...)
	descFillRingEmpty = metricDesc("fill_ring_empty_total", "Poll loops that found the fill ring empty (the kernel had no frame to receive into).", pqLabels...)
	descTxRingFull    = metricDesc("tx_ring_full_total", "Packets dropped because the TX ring was full.", pqLabels...)
	descRxBadDescs    = metricDesc("rx_bad_descs_total", "RX descriptors refused, by kind: bad_addr (outside the UMEM), not_owned (a frame not lent to the kernel), bad_len (past the frame's end). Non-zero means a driver or kernel bug.", "port", "queue", "kind")

	descXDPRxDropped      = metricDesc("xdp_rx_dropped_total", "Kernel XDP_STATISTICS rx_dropped: frames the kernel dropped for this socket.", pqLabels...)
	descXDPRxInvalid      = metricDesc("xdp_rx_invalid_descs_total", "Kernel XDP_STATISTICS rx_invalid_descs.", pqLabels...)
	descXDPTxInvalid      = metricDesc("xdp_tx_invalid_descs_total", "Kernel XDP_STATISTICS tx_invalid_descs.", pqLabels...)
	descXDPRxRingFull     = metricDesc("xdp_rx_ring_full_total", "Kernel XDP_STATISTICS rx_ring_full: frames dropped because the RX ring was full.", pqLabels...)
	descXDPRxFillEmpty    = metricDesc("xdp_rx_fill_ring_empty_descs_total", "Kernel XDP_STATISTICS rx_fill_ring_empty_descs: frames dropped because the fill ring was empty.", pqLabels...)
	descXDPTxRingEmpty    = metricDesc("xdp_tx_ring_empty_descs_total", "Kernel XDP_STATISTICS tx_ring_empty_descs.", pqLabels...)
	descRingLevel         = metricDesc("ring_entries", "Entries waiting on an AF_XDP ring at the end of the queue's last busy batch (ring: fill, rx, tx, completion).", "port", "queue", "ring")
	descFreeFrames        = metricDesc("free_frames", "Frames in the queue's UMEM pool at the end of its last busy batch.", "queue")
	descDrops             = metricDesc("drops_total", "Packets dropped, by reason (pipeline.DropReason names).", "queue", "reason")
	descLoops             = metricDesc("poller_loops_total", "Poll loop iterations: kind busy found work, idle found none.", "queue", "kind")
	descSleeps            = metricDesc("poller_sleeps_total", "Times the poll loop slept in poll(2) (adaptive mode).", "queue")
	descBusyRatio         = metricDesc("poller_busy_ratio", "Busy loops / all loops since start, per queue (like the share of softnet time with work).", "queue")
	descNeighbours        = metricDesc("neighbours", "ARP table entries, by state.", "state")
	descRoutes            = metricDesc("routes", "Routes in the table (unicast, blackhole, unreachable; connected included).")
	descReloads           = metricDesc("config_reloads_total", "SIGHUP configuration reloads, by result (ok, failed).", "result")
	descACLRules          = metricDesc("acl_rules", "Rules of the ACL at the forward hook now.")
	neighbourStates       = []stack.NeighbourState{stack.NeighbourIncomplete, stack.NeighbourReachable, stack.NeighbourStale, stack.NeighbourFailed}
	stackCounterDescs     = map[string]*prometheus.Desc{}
	stackCounterNamesList []string
)

// stackCounters lists the stack's counters under their metric names (xdpnet_stack_NAME_total).
func stackCounters(s stack.Stats) []struct {
	name string
	v    uint64
} {
	return []struct {
		name string
		v    uint64
	}{
		{"arp_requests_in", s.ARPRequestsIn}, {"arp_replies_in", s.ARPRepliesIn},
		{"arp_requests_out", s.ARPRequestsOut}, {"arp_replies_out", s.ARPRepliesOut},
		{"arp_gratuitous_out", s.ARPGratuitousOut}, {"neighbours_resolved", s.NeighboursResolved},
		{"neighbours_failed", s.NeighboursFailed}, {"held_released", s.HeldReleased},
		{"forwarded", s.Forwarded}, {"delivered", s.Delivered}, {"fragmented", s.Fragmented},
		{"fragments_out", s.FragmentsOut}, {"icmp_errors_out", s.ICMPErrorsOut},
		{"icmp_rate_limited", s.ICMPRateLimited}, {"icmp_echo_replies_out", s.ICMPEchoRepliesOut},
		{"udp_delivered", s.UDPDelivered}, {"udp_sent", s.UDPSent},
		{"udp_send_no_route", s.UDPSendNoRoute}, {"udp_send_no_buffer", s.UDPSendNoBuffer},
		{"checksums_completed", s.ChecksumsCompleted},
		{"neighbours_created", s.NeighboursCreated}, {"neighbours_removed", s.NeighboursRemoved},
		{"neighbours_refused", s.NeighboursRefused}, {"arp_not_learnt", s.ARPNotLearnt},
		{"forwarded6", s.Forwarded6}, {"icmpv6_errors_out", s.ICMPv6ErrorsOut},
		{"icmpv6_rate_limited", s.ICMPv6RateLimited}, {"icmpv6_echo_replies_out", s.ICMPv6EchoRepliesOut},
		{"ndp_solicitations_in", s.NDPSolicitationsIn}, {"ndp_advertisements_in", s.NDPAdvertisementsIn},
		{"ndp_solicitations_out", s.NDPSolicitationsOut}, {"ndp_advertisements_out", s.NDPAdvertisementsOut},
		{"dad_probes_out", s.DADProbesOut}, {"dad_conflicts", s.DADConflicts},
	}
}

func init() {
	for _, c := range stackCounters(stack.Stats{}) {
		stackCounterDescs[c.name] = metricDesc("stack_"+c.name+"_total", "Stack counter "+c.name+" (stack.Stats), summed over the queues.")
		stackCounterNamesList = append(stackCounterNamesList, c.name)
	}
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRxPackets, descRxBytes, descTxPackets, descTxBytes, descFillRingEmpty,
		descTxRingFull, descRxBadDescs, descXDPRxDropped, descXDPRxInvalid, descXDPTxInvalid, descXDPRxRingFull, descXDPRxFillEmpty,
		descXDPTxRingEmpty, descRingLevel, descFreeFrames, descDrops, descLoops, descSleeps, descBusyRatio, descNeighbours, descRoutes,
		descReloads, descACLRules} {
		ch <- d
	}
	for _, n := range stackCounterNamesList {
		ch <- stackCounterDescs[n]
	}
}

// Collect implements prometheus.Collector: one snapshot of each source per scrape.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	if c.p != nil {
		s := c.p.Stats()
		for _, q := range s.Queues {
			qs := strconv.Itoa(q.Queue)
			for _, ps := range q.Ports {
				counter(descRxPackets, ps.RxPackets, ps.Name, qs)
				counter(descRxBytes, ps.RxBytes, ps.Name, qs)
				counter(descTxPackets, ps.TxPackets, ps.Name, qs)
				counter(descTxBytes, ps.TxBytes, ps.Name, qs)
				counter(descFillRingEmpty, ps.FillRingEmpty, ps.Name, qs)
				counter(descTxRingFull, ps.TxRingFull, ps.Name, qs)
				counter(descRxBadDescs, ps.RxBadAddr, ps.Name, qs, "bad_addr")
				counter(descRxBadDescs, ps.RxNotOwned, ps.Name, qs, "not_owned")
				counter(descRxBadDescs, ps.RxBadLen, ps.Name, qs, "bad_len")
				k := ps.Kernel
				counter(descXDPRxDropped, k.Rx_dropped, ps.Name, qs)
				counter(descXDPRxInvalid, k.Rx_invalid_descs, ps.Name, qs)
				counter(descXDPTxInvalid, k.Tx_invalid_descs, ps.Name, qs)
				counter(descXDPRxRingFull, k.Rx_ring_full, ps.Name, qs)
				counter(descXDPRxFillEmpty, k.Rx_fill_ring_empty_descs, ps.Name, qs)
				counter(descXDPTxRingEmpty, k.Tx_ring_empty_descs, ps.Name, qs)
				gauge(descRingLevel, float64(ps.FillLevel), ps.Name, qs, "fill")
				gauge(descRingLevel, float64(ps.RxLevel), ps.Name, qs, "rx")
				gauge(descRingLevel, float64(ps.TxLevel), ps.Name, qs, "tx")
				gauge(descRingLevel, float64(ps.CompLevel), ps.Name, qs, "completion")
			}
			gauge(descFreeFrames, float64(q.FreeFrames), qs)
			// Every registered reason, zeros included, so rate() works from the first drop of a kind.
			for r, n := 1, pipeline.NumDropReasons(); r < n; r++ {
				counter(descDrops, q.Drops[r], qs, pipeline.DropReason(r).String())
			}
			counter(descLoops, q.BusyLoops, qs, "busy")
			counter(descLoops, q.IdleLoops, qs, "idle")
			counter(descSleeps, q.Sleeps, qs)
			ratio := 0.0
			if all := q.BusyLoops + q.IdleLoops; all > 0 {
				ratio = float64(q.BusyLoops) / float64(all)
			}
			gauge(descBusyRatio, ratio, qs)
		}
	}
	if c.st != nil {
		for _, sc := range stackCounters(c.st.Stats()) {
			counter(stackCounterDescs[sc.name], sc.v)
		}
		var byState [4]int
		for _, n := range c.st.Neighbours() {
			if int(n.State) < len(byState) {
				byState[n.State]++
			}
		}
		for _, s := range neighbourStates {
			gauge(descNeighbours, float64(byState[s]), s.String())
		}
		gauge(descRoutes, float64(len(c.st.Routes())))
	}
	if c.extra != nil {
		ok, failed, rules := c.extra()
		counter(descReloads, ok, "ok")
		counter(descReloads, failed, "failed")
		gauge(descACLRules, float64(rules))
	}
}
