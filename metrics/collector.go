package metrics

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/poller"
	"github.com/xdpnet/xdpnet/stack"
)

// Namespace prefixes every series name: xdpnet_rx_packets_total. A program that adds series of its own next
// to the Collector's (xdpfwd's config_reloads_total) uses it too.
const Namespace = "xdpnet"

// PollerSource is what a Collector reads of a poller; *poller.Poller satisfies it.
type PollerSource interface{ Stats() poller.Stats }

// StackSource is what a Collector reads of a stack; *stack.Stack satisfies it.
type StackSource interface {
	Stats() stack.Stats
	Neighbours() []stack.Neighbour
	RouteCounts() (ipv4, ipv6 int)
}

// Collector is a prometheus.Collector over one poller and one stack, either of which may be nil (a bridge
// built on the poller alone has no stack). Register it with a prometheus.Registry.
type Collector struct {
	p  PollerSource
	st StackSource
}

// NewCollector returns a Collector reading p and st; a nil source emits none of its series.
func NewCollector(p PollerSource, st StackSource) *Collector {
	c := &Collector{p: p, st: st}
	// A typed nil (a nil *poller.Poller in an interface) would panic at the first scrape; treat it as absent.
	if p, ok := p.(*poller.Poller); ok && p == nil {
		c.p = nil
	}
	if st, ok := st.(*stack.Stack); ok && st == nil {
		c.st = nil
	}
	return c
}

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(Namespace+"_"+name, help, labels, nil)
}

var (
	pqLabels = []string{"port", "queue"}

	descRxPackets     = desc("rx_packets_total", "Packets taken off the AF_XDP RX ring.", pqLabels...)
	descRxBytes       = desc("rx_bytes_total", "Bytes of the packets taken off the RX ring.", pqLabels...)
	descTxPackets     = desc("tx_packets_total", "Packets put on the AF_XDP TX ring.", pqLabels...)
	descTxBytes       = desc("tx_bytes_total", "Bytes of the packets put on the TX ring.", pqLabels...)
	descFillRingEmpty = desc("fill_ring_empty_total", "Poll loops that found the fill ring empty (the kernel had no frame to receive into).", pqLabels...)
	descTxRingFull    = desc("tx_ring_full_total", "Packets dropped because the TX ring was full.", pqLabels...)
	descRxBadDescs    = desc("rx_bad_descs_total", "RX descriptors refused, by kind: bad_addr (outside the UMEM), not_owned (a frame not lent to the kernel), bad_len (past the frame's end). Non-zero means a driver or kernel bug.", "port", "queue", "kind")

	descXDPRxDropped   = desc("xdp_rx_dropped_total", "Kernel XDP_STATISTICS rx_dropped: frames the kernel dropped for this socket.", pqLabels...)
	descXDPRxInvalid   = desc("xdp_rx_invalid_descs_total", "Kernel XDP_STATISTICS rx_invalid_descs.", pqLabels...)
	descXDPTxInvalid   = desc("xdp_tx_invalid_descs_total", "Kernel XDP_STATISTICS tx_invalid_descs.", pqLabels...)
	descXDPRxRingFull  = desc("xdp_rx_ring_full_total", "Kernel XDP_STATISTICS rx_ring_full: frames dropped because the RX ring was full.", pqLabels...)
	descXDPRxFillEmpty = desc("xdp_rx_fill_ring_empty_descs_total", "Kernel XDP_STATISTICS rx_fill_ring_empty_descs: frames dropped because the fill ring was empty.", pqLabels...)
	descXDPTxRingEmpty = desc("xdp_tx_ring_empty_descs_total", "Kernel XDP_STATISTICS tx_ring_empty_descs.", pqLabels...)
	descRingLevel      = desc("ring_entries", "Entries waiting on an AF_XDP ring at the end of the queue's last busy batch (ring: fill, rx, tx, completion).", "port", "queue", "ring")
	descFreeFrames     = desc("free_frames", "Frames in the queue's UMEM pool at the end of its last busy batch.", "queue")
	descDrops          = desc("drops_total", "Packets dropped, by reason (pipeline.DropReason names).", "queue", "reason")
	descLoops          = desc("poller_loops_total", "Poll loop iterations: kind busy found work, idle found none.", "queue", "kind")
	descSleeps         = desc("poller_sleeps_total", "Times the poll loop slept in poll(2) (adaptive mode).", "queue")
	descBusyRatio      = desc("poller_busy_ratio", "Busy loops / all loops since start, per queue (like the share of softnet time with work).", "queue")
	descNeighbours     = desc("neighbours", "ARP table entries, by state.", "state")
	descRoutes         = desc("routes", "Routes in the table (unicast, blackhole, unreachable; connected included).")

	neighbourStates = []stack.NeighbourState{stack.NeighbourIncomplete, stack.NeighbourReachable, stack.NeighbourStale, stack.NeighbourFailed}
	// stackCounterDescs is in the order of stackCounters.
	stackCounterDescs []*prometheus.Desc
)

// StackCounter is one counter of stack.Stats under its metric name: the Collector exports it as
// xdpnet_stack_NAME_total.
type StackCounter struct {
	Name  string
	Value uint64
}

// StackCounters lists the counters of s that the Collector exports, in the order it emits them, so that a
// program printing a summary (xdpfwd's exit summary) shows the same names as its metrics.
func StackCounters(s stack.Stats) []StackCounter {
	return []StackCounter{
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
	for _, c := range StackCounters(stack.Stats{}) {
		stackCounterDescs = append(stackCounterDescs, desc("stack_"+c.Name+"_total", "Stack counter "+c.Name+" (stack.Stats), summed over the queues."))
	}
}

// Describe implements prometheus.Collector.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	if c.p != nil {
		for _, d := range []*prometheus.Desc{descRxPackets, descRxBytes, descTxPackets, descTxBytes, descFillRingEmpty,
			descTxRingFull, descRxBadDescs, descXDPRxDropped, descXDPRxInvalid, descXDPTxInvalid, descXDPRxRingFull,
			descXDPRxFillEmpty, descXDPTxRingEmpty, descRingLevel, descFreeFrames, descDrops, descLoops, descSleeps,
			descBusyRatio} {
			ch <- d
		}
	}
	if c.st != nil {
		ch <- descNeighbours
		ch <- descRoutes
		for _, d := range stackCounterDescs {
			ch <- d
		}
	}
}

// Collect implements prometheus.Collector: one snapshot of each source per scrape.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
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
			for r, n := 1, pipeline.NumDropReasons(); r < n && r < len(q.Drops); r++ {
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
		for i, sc := range StackCounters(c.st.Stats()) {
			counter(stackCounterDescs[i], sc.Value)
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
		v4, v6 := c.st.RouteCounts()
		gauge(descRoutes, float64(v4+v6))
	}
}
