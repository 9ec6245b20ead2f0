package poller

import (
	"slices"

	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/pipeline"
)

// PortStats counts one port's traffic, on one queue or summed over queues.
type PortStats struct {
	Port int
	Name string
	// RxPackets/RxBytes: taken off the RX ring. TxPackets/TxBytes: put on the TX ring.
	RxPackets, RxBytes, TxPackets, TxBytes uint64
	// FillRingEmpty counts loops that found the fill ring empty (the kernel had no frame to receive into).
	// TxRingFull counts packets dropped because the TX ring was full.
	FillRingEmpty, TxRingFull uint64
	// RX descriptors refused (the frame is not touched, nor counted in RxPackets): RxBadAddr points outside
	// the UMEM; RxNotOwned names a frame that was not lent to the kernel (free, already received, being sent
	// or held: a duplicated or stale descriptor); RxBadLen runs past the end of its frame (the frame goes
	// back to the pool). The kernel never produces them; a non-zero count is a driver or kernel bug.
	RxBadAddr, RxNotOwned, RxBadLen uint64
	// FillLevel, RxLevel, TxLevel and CompLevel are the entries waiting on each ring at the end of the
	// queue's last busy batch (per queue only; summed in Stats.Ports): frames lent to the kernel to receive
	// into, received frames not yet taken, frames not yet sent, sent frames not yet reaped.
	FillLevel, RxLevel, TxLevel, CompLevel uint32
	// Kernel is the socket's XDP_STATISTICS (drops the kernel saw: RX ring full, fill ring empty, invalid
	// descriptors), including the sockets closed when the link was deleted.
	Kernel unix.XDPStatistics
	// Link state, in Stats.Ports only (zero in QueueStats): Up is true when the link can transmit (TX to a
	// down link is dropped as link_down); Present is false while the interface is deleted. MTU and Ifindex
	// are current. LinkDowns counts up-to-down transitions seen while Run ran; Reopens counts re-created
	// interfaces the port was reopened on.
	Up, Present        bool
	MTU, Ifindex       int
	LinkDowns, Reopens uint64
}

// QueueStats is one queue's counters.
type QueueStats struct {
	Queue int
	CPU   int // -1 when not pinned
	TID   int // the OS thread running the queue, 0 before Run
	Ports []PortStats
	// Drops counts packets dropped by reason.
	Drops pipeline.DropCounters
	// FreeFrames is the frame pool's size at the end of the last busy batch.
	FreeFrames int
	// BusyLoops found work, IdleLoops found none, Sleeps are poll(2) sleeps (Adaptive mode).
	BusyLoops, IdleLoops, Sleeps uint64
}

// Stats is a snapshot of every counter.
type Stats struct {
	Queues []QueueStats
	// Ports sums each port over the queues; Drops sums the queues.
	Ports []PortStats
	Drops pipeline.DropCounters
}

// DropsByName lists the non-zero drop counters by reason name.
func (s Stats) DropsByName() map[string]uint64 {
	m := map[string]uint64{}
	for r, n := range s.Drops {
		if n != 0 {
			m[pipeline.DropReason(r).String()] = n
		}
	}
	return m
}

// Stats returns a snapshot of the counters. It is safe from any goroutine, while Run runs or not. Loop counters
// are published once per batch, so a snapshot lags the loop by at most one batch.
func (p *Poller) Stats() Stats {
	p.mu.Lock()
	kst := p.kstats
	ports := slices.Clone(p.ports)
	p.mu.Unlock()
	var s Stats
	s.Ports = make([]PortStats, len(ports))
	for i, pi := range ports {
		ps := &s.Ports[i]
		ps.Port, ps.Name, ps.MTU, ps.Ifindex = i, pi.Name, pi.MTU, pi.Ifindex
		if i < len(p.links) {
			if st := p.links[i].Load(); st != nil {
				ps.Up, ps.Present = st.up && st.present, st.present
			}
			ps.LinkDowns, ps.Reopens = p.linkDowns[i].Load(), p.reopens[i].Load()
		}
	}
	for qi, q := range p.qs {
		qs := QueueStats{Queue: q.id, CPU: q.cpu, TID: int(q.tid.Load()),
			BusyLoops: q.pubLoops.busy.Load(), IdleLoops: q.pubLoops.idle.Load(), Sleeps: q.pubLoops.sleeps.Load(),
			FreeFrames: int(q.pubFree.Load())}
		for r := range qs.Drops {
			qs.Drops[r] = q.pubDrops[r].Load()
			s.Drops[r] += qs.Drops[r]
		}
		for i := range q.ports {
			qp := &q.ports[i]
			ps := PortStats{Port: i, Name: ports[i].Name,
				RxPackets: qp.pub.rxPackets.Load(), RxBytes: qp.pub.rxBytes.Load(),
				TxPackets: qp.pub.txPackets.Load(), TxBytes: qp.pub.txBytes.Load(),
				FillRingEmpty: qp.pub.fillEmpty.Load(), TxRingFull: qp.pub.txFull.Load(),
				RxBadAddr: qp.pub.rxBadAddr.Load(), RxNotOwned: qp.pub.rxNotOwned.Load(), RxBadLen: qp.pub.rxBadLen.Load(),
				FillLevel: qp.pub.fillLevel.Load(), RxLevel: qp.pub.rxLevel.Load(),
				TxLevel: qp.pub.txLevel.Load(), CompLevel: qp.pub.compLevel.Load()}
			if kst != nil {
				ps.Kernel = kst[qi][i]
			} else {
				if s := qp.statSock.Load(); s != nil {
					ps.Kernel, _ = s.Statistics()
				}
				if b := qp.kbase.Load(); b != nil {
					ps.Kernel = addXDPStats(ps.Kernel, *b)
				}
			}
			qs.Ports = append(qs.Ports, ps)
			t := &s.Ports[i]
			t.RxPackets += ps.RxPackets
			t.RxBytes += ps.RxBytes
			t.TxPackets += ps.TxPackets
			t.TxBytes += ps.TxBytes
			t.FillRingEmpty += ps.FillRingEmpty
			t.TxRingFull += ps.TxRingFull
			t.RxBadAddr += ps.RxBadAddr
			t.RxNotOwned += ps.RxNotOwned
			t.RxBadLen += ps.RxBadLen
			t.FillLevel += ps.FillLevel
			t.RxLevel += ps.RxLevel
			t.TxLevel += ps.TxLevel
			t.CompLevel += ps.CompLevel
			t.Kernel.Rx_dropped += ps.Kernel.Rx_dropped
			t.Kernel.Rx_invalid_descs += ps.Kernel.Rx_invalid_descs
			t.Kernel.Tx_invalid_descs += ps.Kernel.Tx_invalid_descs
			t.Kernel.Rx_ring_full += ps.Kernel.Rx_ring_full
			t.Kernel.Rx_fill_ring_empty_descs += ps.Kernel.Rx_fill_ring_empty_descs
			t.Kernel.Tx_ring_empty_descs += ps.Kernel.Tx_ring_empty_descs
		}
		s.Queues = append(s.Queues, qs)
	}
	return s
}
