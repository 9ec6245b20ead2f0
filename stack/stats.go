package stack

import "sync/atomic"

// The stack's counters (the kernel's SNMP MIB counters): one set per queue, written by that queue alone,
// summed on read.

// counters are one handler's statistics. Only the handler's goroutine writes them (inc is a load and a
// store, no locked instruction); Stack.Stats reads them atomically from anywhere.
type counters struct {
	arpReqIn, arpRepIn, arpReqOut, arpRepOut, garpOut atomic.Uint64
	resolved, failed, released                        atomic.Uint64
	notLearnt                                         atomic.Uint64
	forwarded, delivered, fragmented, fragsOut        atomic.Uint64
	icmpErrOut, icmpLimited, echoOut                  atomic.Uint64
	udpIn, udpOut, udpNoRoute, udpNoBuf               atomic.Uint64
	csumCompleted                                     atomic.Uint64
	forwarded6, icmp6ErrOut, icmp6Limited, echo6Out   atomic.Uint64
	nsIn, naIn, nsOut, naOut, dadOut, dadConflicts    atomic.Uint64
}

func inc(c *atomic.Uint64) { c.Store(c.Load() + 1) }

func add(c *atomic.Uint64, n uint64) { c.Store(c.Load() + n) }

func (c *counters) addTo(t *Stats) {
	t.ARPRequestsIn += c.arpReqIn.Load()
	t.ARPRepliesIn += c.arpRepIn.Load()
	t.ARPRequestsOut += c.arpReqOut.Load()
	t.ARPRepliesOut += c.arpRepOut.Load()
	t.ARPGratuitousOut += c.garpOut.Load()
	t.NeighboursResolved += c.resolved.Load()
	t.NeighboursFailed += c.failed.Load()
	t.HeldReleased += c.released.Load()
	t.ARPNotLearnt += c.notLearnt.Load()
	t.Forwarded += c.forwarded.Load()
	t.Delivered += c.delivered.Load()
	t.Fragmented += c.fragmented.Load()
	t.FragmentsOut += c.fragsOut.Load()
	t.ICMPErrorsOut += c.icmpErrOut.Load()
	t.ICMPRateLimited += c.icmpLimited.Load()
	t.ICMPEchoRepliesOut += c.echoOut.Load()
	t.UDPDelivered += c.udpIn.Load()
	t.UDPSent += c.udpOut.Load()
	t.UDPSendNoRoute += c.udpNoRoute.Load()
	t.UDPSendNoBuffer += c.udpNoBuf.Load()
	t.ChecksumsCompleted += c.csumCompleted.Load()
	t.Forwarded6 += c.forwarded6.Load()
	t.ICMPv6ErrorsOut += c.icmp6ErrOut.Load()
	t.ICMPv6RateLimited += c.icmp6Limited.Load()
	t.ICMPv6EchoRepliesOut += c.echo6Out.Load()
	t.NDPSolicitationsIn += c.nsIn.Load()
	t.NDPAdvertisementsIn += c.naIn.Load()
	t.NDPSolicitationsOut += c.nsOut.Load()
	t.NDPAdvertisementsOut += c.naOut.Load()
	t.DADProbesOut += c.dadOut.Load()
	t.DADConflicts += c.dadConflicts.Load()
}

// Stats are the stack's counters, summed over the queues. Drops are counted by the driver per reason.
type Stats struct {
	ARPRequestsIn, ARPRepliesIn   uint64
	ARPRequestsOut, ARPRepliesOut uint64
	ARPGratuitousOut              uint64
	NeighboursResolved            uint64
	NeighboursFailed              uint64
	HeldReleased                  uint64 // packets sent after their neighbour resolved
	// The neighbour table: entries now, made, removed by the collector, and refused because the table was
	// at NeighbourGCThresh3 with nothing to collect (those packets drop as neighbour_table_full).
	NeighbourEntries                                        uint64
	NeighboursCreated, NeighboursRemoved, NeighboursRefused uint64
	// ARPNotLearnt counts ARP messages aimed at our address whose sender is not on the interface's
	// networks (or is a network or broadcast address of one): answered, never learnt.
	ARPNotLearnt                    uint64
	Forwarded                       uint64
	Delivered                       uint64 // packets delivered locally (ICMP, UDP)
	Fragmented, FragmentsOut        uint64 // packets fragmented, fragments made
	ICMPErrorsOut, ICMPRateLimited  uint64
	ICMPEchoRepliesOut              uint64
	UDPDelivered, UDPSent           uint64
	UDPSendNoRoute, UDPSendNoBuffer uint64
	// ChecksumsCompleted counts forwarded TCP and UDP packets whose checksum a sender in host memory had
	// left partial (veth TX checksum offload) and the stack completed.
	ChecksumsCompleted uint64
	// IPv6: Forwarded6 is the IPv6 part of Forwarded; ICMPv6 errors have a rate limit of their own.
	Forwarded6                                uint64
	ICMPv6ErrorsOut, ICMPv6RateLimited        uint64
	ICMPv6EchoRepliesOut                      uint64
	NDPSolicitationsIn, NDPAdvertisementsIn   uint64
	NDPSolicitationsOut, NDPAdvertisementsOut uint64
	// DADProbesOut counts Duplicate Address Detection solicitations; DADConflicts the addresses another
	// node claimed (disabled while tentative, logged when in use).
	DADProbesOut, DADConflicts uint64
}

// Stats sums the counters of every handler.
func (s *Stack) Stats() Stats {
	var t Stats
	for _, h := range *s.handlers.Load() {
		h.ctr.addTo(&t)
	}
	t.NeighbourEntries = uint64(max(s.neigh.count.Load(), 0))
	t.NeighboursCreated = s.neigh.made.Load()
	t.NeighboursRemoved = s.neigh.removed.Load()
	t.NeighboursRefused = s.neigh.refused.Load()
	return t
}
