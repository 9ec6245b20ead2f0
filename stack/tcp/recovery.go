package tcp

import "github.com/xdpnet/xdpnet/proto"

// SACK-based loss recovery, RFC 6675 (conservative), with a RACK-style check (RFC 8985) for lost
// retransmissions. Connections without SACK keep RFC 6582 NewReno (input.go).
//
// The scoreboard (c.sacked) holds the ranges the peer reported above SND.UNA. From it:
//   - IsLost(s): more than (DupThresh-1)*SMSS bytes, or DupThresh discontiguous ranges, are SACKed above
//     s. Since both only grow toward lower s, every unSACKed byte below one edge (lostEdge) is lost;
//   - pipe: the bytes believed in the network, RFC 6675 §4 SetPipe;
//   - NextSeg: rule 1, the first lost hole not already retransmitted; rule 2, new data; rule 4, one rescue
//     retransmission per recovery (rule 3 - unSACKed but not yet lost - is left out: on a reordering path it
//     only adds spurious retransmissions).
//
// "Already retransmitted" is kept per segment (c.rexmits) with its send time, instead of RFC 6675's single
// HighRxt: that is what lets a lost retransmission be found. RFC 8985 §6.2 marks a segment lost when a
// segment sent after it was delivered and more than an RTT plus a reordering window has passed since it
// left. We approximate "sent after it" by time: an ACK reporting new delivery that arrives later than
// SRTT + reordering window after the retransmission was caused by a segment sent after it. A timer (two
// SRTTs plus the window, as RFC 8985's TLP waits) covers the case where no ACK comes at all, because the
// last retransmissions of a window were lost and nothing new may be sent. A retransmission found lost
// loses its record, so NextSeg rule 1 sends it again - without an RTO, and without collapsing cwnd.

type rexmit struct {
	left, right Seq
	at          int64 // when it was sent (monotonic ns)
}

const dupThresh = 3

// lostEdge returns the sequence number below which every unSACKed byte is lost (IsLost, RFC 6675 §4);
// SND.UNA when nothing is.
func (c *Conn) lostEdge() Seq {
	edge := c.sndUna
	if c.rackEdge.GreaterThan(edge) && c.rackEdge.LessEq(c.sndMax) {
		edge = c.rackEdge
	}
	if c.nsacked >= dupThresh {
		edge = c.sacked[c.nsacked-dupThresh].left
	}
	limit := uint32(dupThresh-1) * c.smss()
	var acc uint32
	for i := c.nsacked - 1; i >= 0; i-- {
		r := c.sacked[i]
		acc += uint32(r.right - r.left)
		if acc > limit {
			return seqMax(edge, r.left)
		}
	}
	return edge
}

// sackedIn counts the SACKed bytes in [from, to).
func (c *Conn) sackedIn(from, to Seq) uint32 {
	var n uint32
	for i := 0; i < c.nsacked; i++ {
		l, r := seqMax(c.sacked[i].left, from), seqMin(c.sacked[i].right, to)
		if l.LessThan(r) {
			n += uint32(r - l)
		}
	}
	return n
}

// pipe is RFC 6675 §4 SetPipe: unSACKed bytes not yet lost, plus retransmitted bytes still outstanding.
func (c *Conn) pipe(lost Seq) uint32 {
	p := uint32(0)
	if lost.LessThan(c.sndMax) {
		p = uint32(c.sndMax-lost) - c.sackedIn(lost, c.sndMax)
	}
	for i := 0; i < c.nrexmits; i++ {
		if r := seqMin(c.rexmits[i].right, lost); c.rexmits[i].left.LessThan(r) {
			p += uint32(r - c.rexmits[i].left)
		}
	}
	return p
}

// nextLost is NextSeg rule 1: the first unSACKed, lost, not yet retransmitted range below lost, at most
// one SMSS.
func (c *Conn) nextLost(lost Seq) (Seq, int) {
	s := c.sndUna
	for s.LessThan(lost) {
		end := lost
		moved := false
		for i := 0; i < c.nsacked; i++ {
			r := c.sacked[i]
			if s.InRange(r.left, r.right) {
				s, moved = r.right, true
				break
			}
			if s.LessThan(r.left) {
				end = seqMin(end, r.left)
				break
			}
		}
		if moved {
			continue
		}
		for i := 0; i < c.nrexmits; i++ {
			x := c.rexmits[i]
			if s.InRange(x.left, x.right) {
				s, moved = x.right, true
				break
			}
			if s.LessThan(x.left) {
				end = seqMin(end, x.left)
			}
		}
		if moved {
			continue
		}
		if s.LessThan(end) {
			return s, min(int(end-s), int(c.smss()))
		}
	}
	return 0, 0
}

// enterSACKRecovery is RFC 6675 §5 steps 4.1-4.3: RecoveryPoint = HighData, ssthresh = max(FlightSize/2,
// 2*SMSS) (RFC 5681 eq. 4), retransmit the first unacknowledged segment, then send what pipe allows.
// Instead of RFC 6675's cwnd = ssthresh at once, RFC 6937 PRR (prrCwnd) brings cwnd down to ssthresh over
// the recovery, in step with the ACKs: that keeps the ACK clock running, where halving at once stops the
// sender until pipe has drained below the new cwnd - at 5% loss, with a handful of segments in flight,
// often for good, so that only a timer could send again.
func (c *Conn) enterSACKRecovery(now int64, delivered uint32) {
	smss := c.smss()
	flight := uint32(c.sndMax - c.sndUna)
	if c.plpmtud.probing {
		c.mtuProbeLost(now) // the probe may be the loss: search lower (RFC 4821 §7.6.2)
	}
	c.ccCongestion(now)
	// RFC 6937 §3: "prr_delivered = 0 ... prr_out = 0 ... RecoverFS = snd.nxt - snd.una".
	c.prrDelivered, c.prrOut, c.recoverFS = delivered, 0, flight
	c.cwnd = c.ssthresh
	c.recover = c.sndMax
	c.inRecovery = true
	c.rescueSet = false
	c.nrexmits = 0
	c.e.inc(StatFastRetransmits)
	n := int(smss)
	if c.nsacked > 0 {
		n = min(n, int(c.sacked[0].left-c.sndUna))
	}
	// The first segment is lost by definition here (three duplicate ACKs may come with too little SACK
	// information to say so): should its retransmission be lost too, NextSeg sends it again.
	c.rackEdge = seqMax(c.rackEdge, c.sndUna+Seq(max(n, 1)))
	c.tlpAt = 0
	if sent := c.retransmitAt(now, c.sndUna, n); sent > 0 {
		c.trackRexmit(c.sndUna, sent, now)
	}
	c.rexmitAt = now + c.rto
	c.prrCwnd(c.pipe(c.lostEdge()), delivered)
	c.sackSend(now)
}

// prrCwnd sets cwnd for the next sends of a recovery, RFC 6937 §3:
//
//	if (pipe > ssthresh) { sndcnt = CEIL(prr_delivered * ssthresh / RecoverFS) - prr_out }   // PRR
//	else { limit = MAX(prr_delivered - prr_out, DeliveredData) + MSS;                        // SSRB
//	       sndcnt = MIN(ssthresh - pipe, limit) }
//	cwnd = pipe + sndcnt
//
// cwnd is what sackSendLoop compares pipe against; the sends it allows add to prr_out.
func (c *Conn) prrCwnd(pipe, delivered uint32) {
	var sndcnt int64
	if pipe > c.ssthresh {
		fs := max(int64(c.recoverFS), 1)
		sndcnt = (int64(c.prrDelivered)*int64(c.ssthresh)+fs-1)/fs - int64(c.prrOut)
	} else {
		limit := max(int64(c.prrDelivered)-int64(c.prrOut), int64(delivered)) + int64(c.smss())
		sndcnt = min(int64(c.ssthresh-pipe), limit)
	}
	c.cwnd = pipe + uint32(max(sndcnt, 0))
}

// sackStep runs on every ACK during SACK recovery: forget retransmissions that were delivered, find lost
// ones, and send while pipe < cwnd (RFC 6675 §5 step C).
func (c *Conn) sackStep(now int64, delivered uint32) {
	c.prrDelivered += delivered
	c.pruneRexmits()
	if delivered > 0 && c.hasRTT {
		c.markLostRexmits(now, c.srtt+c.reoWnd())
	}
	c.prrCwnd(c.pipe(c.lostEdge()), delivered)
	c.sackSend(now)
}

// reoWnd is RACK's reordering window (RFC 8985 §6.2 uses min_rtt/4), at least a millisecond for timer
// granularity.
func (c *Conn) reoWnd() int64 { return max(c.srtt/4, 1e6) }

// pruneRexmits drops records below SND.UNA or wholly SACKed: they were delivered.
func (c *Conn) pruneRexmits() {
	k := 0
	for i := 0; i < c.nrexmits; i++ {
		x := c.rexmits[i]
		if x.right.LessEq(c.sndUna) {
			continue
		}
		x.left = seqMax(x.left, c.sndUna)
		if c.sackedIn(x.left, x.right) == uint32(x.right-x.left) {
			continue
		}
		c.rexmits[k] = x
		k++
	}
	c.nrexmits = k
}

// markLostRexmits forgets the retransmissions sent more than age ago: lost, so NextSeg sends them again.
func (c *Conn) markLostRexmits(now, age int64) {
	k := 0
	for i := 0; i < c.nrexmits; i++ {
		if now-c.rexmits[i].at >= age {
			c.e.inc(StatLostRetransmits)
			continue
		}
		c.rexmits[k] = c.rexmits[i]
		k++
	}
	c.nrexmits = k
}

// retransmitted reports whether the byte at s was retransmitted and is not yet known lost or delivered:
// "S3 > HighRxt" of RFC 6675's rule 4 with per-segment records, so that the rescue retransmission does
// not repeat the hole rule 1 has just resent.
func (c *Conn) retransmitted(s Seq) bool {
	for i := 0; i < c.nrexmits; i++ {
		if s.InRange(c.rexmits[i].left, c.rexmits[i].right) {
			return true
		}
	}
	return false
}

func (c *Conn) trackRexmit(seq Seq, n int, now int64) {
	if c.nrexmits < maxRexmits {
		c.rexmits[c.nrexmits] = rexmit{seq, seq + Seq(n), now}
		c.nrexmits++
	}
}

// rackWait is how long a retransmission may go without news before rackTimeout counts it lost.
func (c *Conn) rackWait() int64 {
	if !c.hasRTT {
		return c.rto
	}
	return min(2*c.srtt+c.reoWnd(), c.rto)
}

// armRACK sets the timer for a pending lost edge and the oldest tracked retransmission.
func (c *Conn) armRACK() {
	c.rackAt = c.rackPendAt
	// After an RTO and until an ACK makes progress (retries > 0), the backed-off RTO, not this timer of two
	// SRTTs, decides when a retransmission that drew no ACK at all is sent again (rtoRecovery).
	if !c.inRecovery || c.nrexmits == 0 || c.retries > 0 {
		return
	}
	oldest := c.rexmits[0].at
	for i := 1; i < c.nrexmits; i++ {
		oldest = min(oldest, c.rexmits[i].at)
	}
	if t := oldest + c.rackWait(); c.rackAt == 0 || t < c.rackAt {
		c.rackAt = t
	}
}

// rackUpdate is the time-based loss marking of RFC 8985 §6.2 for original transmissions. Segments are sent
// in sequence order, so every unSACKed byte below the highest SACKed block was sent before the segment
// just delivered; RACK declares it lost once a reordering window has passed since (for segments sent in
// one burst, "now >= xmit_ts + RTT + reo_wnd" is that). A hole seen now becomes lost at now + reo_wnd
// unless it is SACKed by then. This is what finds a loss when the window is too small for three
// duplicate ACKs - at 5% loss cwnd hovers around five segments.
func (c *Conn) rackUpdate(now int64) {
	if c.rackEdge.LessThan(c.sndUna) || c.rackEdge.GreaterThan(c.sndMax) {
		c.rackEdge = c.sndUna
	}
	if c.rackPendAt != 0 && now >= c.rackPendAt {
		c.rackEdge = seqMax(c.rackEdge, c.rackPend)
		c.rackPendAt = 0
	}
	if c.rackPendAt == 0 && c.nsacked > 0 {
		if top := c.sacked[c.nsacked-1].left; top.GreaterThan(c.rackEdge) {
			c.rackPend, c.rackPendAt = top, now+c.reoWnd()
		}
	}
}

// canEnterRecovery is RFC 6675 §5's trigger (DupThresh duplicate ACKs, or IsLost(HighACK+1)) with RACK's
// lost edge, but never before an RTO's recovery point is acknowledged (RFC 6675 §5.1).
func (c *Conn) canEnterRecovery() bool {
	return !c.inRecovery && c.sndUna != c.sndMax && c.sndNxt == c.sndMax && c.sndUna.GreaterEq(c.recover) &&
		(c.dupAcks >= dupThresh || c.lostEdge().GreaterThan(c.sndUna))
}

// rackTimeout runs when a pending lost edge is due or a retransmission had no news for two SRTTs.
func (c *Conn) rackTimeout(now int64) {
	if !c.sackOK || !c.state.canSend() {
		return
	}
	c.rackUpdate(now)
	if c.canEnterRecovery() {
		c.enterSACKRecovery(now, 0)
	} else if c.inRecovery {
		c.pruneRexmits()
		if c.retries == 0 { // see armRACK
			c.markLostRexmits(now, c.rackWait())
		}
		c.sackSend(now)
	}
	c.armRACK()
}

// rtoRecovery follows the first RTO of a SACK connection, as Linux's tcp_enter_loss does: the scoreboard
// is kept, every unSACKed byte below SND.MAX is marked lost, cwnd restarts at one segment, and the holes
// are resent as in a SACK recovery whose recovery point is SND.MAX - never a byte the peer SACKed, and
// with RACK's check for lost retransmissions. PRR's slow-start reduction bound (RFC 6937 §3, SSRB: pipe
// is far below ssthresh here) grows cwnd by what each ACK delivers plus a segment, as slow start would;
// recovery ends with cwnd = ssthresh when the ACK passes the recovery point. Go-back-N from SND.UNA (RFC
// 5681 §3.1, RFC 6298 §5.4) instead resends what the peer already holds, and a loss among those
// resends - at 5% loss and a few dozen segments, the rule - cannot start a fast recovery (SND.NXT is below
// SND.MAX) nor a loss probe: it waits for a second RTO of twice the length. A peer that reneged on its
// SACKs (RFC 2018 §8, RFC 6675 §5.1) leaves the same data unacknowledged until the next RTO, which
// clears the scoreboard and goes back N (rtoFire). Owner only.
func (c *Conn) rtoRecovery(now int64) {
	c.prrDelivered, c.prrOut, c.recoverFS = 0, 0, uint32(c.sndMax-c.sndUna)
	c.sndNxt = c.sndMax
	c.recover = c.sndMax
	c.inRecovery = true
	c.rescueSet = false
	c.dupAcks = 0
	c.nrexmits = 0
	c.rackEdge, c.rackPendAt, c.rackAt, c.tlpAt = c.sndMax, 0, 0, 0
	c.sackSend(now)
}

// armTLP (re)starts the tail loss probe timer, RFC 8985 §7.2: PTO = 2*SRTT, plus the peer's delayed-ACK
// time when only one segment is in flight, and never later than the RTO.
func (c *Conn) armTLP(now int64) {
	c.tlpAt = 0
	if !c.sackOK || c.tlpOut || c.inRecovery || !c.hasRTT || c.persist || c.sndUna == c.sndMax ||
		c.sndNxt != c.sndMax || !c.state.canSend() {
		return
	}
	pto := 2 * c.srtt
	if uint32(c.sndMax-c.sndUna) <= c.smss() {
		pto += int64(c.e.cfg.DelayedAck)
	}
	if t := now + max(pto, 1e6); c.rexmitAt == 0 || t < c.rexmitAt {
		c.tlpAt = t
	}
}

// tlpFire sends the loss probe: the last segment again. Its ACK carries the SACK information that lets
// RACK find a tail loss without an RTO.
//
// RFC 8985 §7.3 (and Linux's tcp_send_loss_probe) prefer a new segment when there is one and fall back to
// the last. We always send the last, because a probe is there to draw an ACK, and only a duplicate is sure
// to draw one at once: a receiver that is merely holding its ACK - Linux holds it up to its 40 ms
// delayed-ACK timer when its application has not yet read the data, whatever the segment count - answers
// a duplicate immediately (RFC 9293 §3.10.7.4: an unacceptable segment is answered, Linux enters quickack
// for it) but sits on new data as on the rest. After a tail loss both kinds of probe get an ACK with the
// SACK blocks RACK needs. Measured with examples/httpd's TestCurlLossVeth (64 MiB to Linux curl, 5% loss
// both ways): 8.8-12.2 s in 4 runs with new data as the probe, 4.3-4.4 s in 3 with the last segment;
// ~40% of the time had gone to 40 ms waits and to RTOs after the one held ACK was lost. The cost is one
// duplicate segment per probe (about 150 in those 64 MiB).
func (c *Conn) tlpFire(now int64) {
	if !c.sackOK || c.tlpOut || c.inRecovery || c.sndUna == c.sndMax || c.sndNxt != c.sndMax || !c.state.canSend() {
		return
	}
	c.tlpOut = true
	c.e.inc(StatTailLossProbes)
	// The last segment sent, never beyond SND.MAX (retransmitAt adds the FIN if it was sent).
	hi := c.sndMax
	start := c.sndUna
	if hi.GreaterThan(start + Seq(c.smss())) {
		start = hi - Seq(c.smss())
	}
	c.retransmitAt(now, start, int(hi-start))
}

// sackSend is RFC 6675 §5 step C: "while (cwnd - pipe) >= 1 SMSS" send NextSeg.
func (c *Conn) sackSend(now int64) {
	if c.state.canSend() {
		c.sackSendLoop(now)
	}
	c.armRACK()
}

func (c *Conn) sackSendLoop(now int64) {
	smss := c.smss()
	for range 1 << 12 {
		lost := c.lostEdge()
		if c.pipe(lost)+smss > c.cwnd {
			return
		}
		// Rule 1: a lost hole.
		if s, n := c.nextLost(lost); n > 0 {
			sent := c.retransmitAt(now, s, n)
			if sent <= 0 {
				return // Output is full, or nothing to send there
			}
			c.e.inc(StatSACKRetransmits)
			c.trackRexmit(s, sent, now)
			continue
		}
		// Rule 2: new data the receiver's window allows.
		if sent, ok := c.sendNew(now); ok {
			if !sent {
				return
			}
			continue
		}
		// Rule 4: one rescue retransmission of the highest unSACKed byte per recovery.
		if !c.rescueSet || c.sndUna.GreaterThan(c.rescueRxt) {
			hi := c.sndMax
			if c.nsacked > 0 && c.sacked[c.nsacked-1].right == c.sndMax {
				hi = c.sacked[c.nsacked-1].left
			}
			// Never the FIN: a spurious FIN retransmission that reaches a peer in TIME-WAIT after our
			// side closed draws an ACK that our (then closed) side answers with a RST, and RFC 9293 lets
			// that RST end the peer's TIME-WAIT early. The RTO and the loss probe still repair a lost FIN.
			hi = seqMin(hi, c.sndUna+Seq(c.snd.n))
			lo := c.sndUna
			for i := 0; i < c.nsacked; i++ {
				if c.sacked[i].right.LessEq(hi) {
					lo = seqMax(lo, c.sacked[i].right)
				}
			}
			if lo.LessThan(hi) && !c.retransmitted(hi-1) {
				n := min(int(hi-lo), int(smss))
				c.rescueRxt, c.rescueSet = c.recover, true
				if c.retransmitAt(now, hi-Seq(n), n) > 0 {
					c.e.inc(StatRescueRetransmits)
				}
			}
		}
		return
	}
}

// sendNew is NextSeg rule 2: one new segment, if there is data and the peer's window has room. ok is false
// when there is nothing to send; sent is false when Output was full.
func (c *Conn) sendNew(now int64) (sent, ok bool) {
	if c.sndNxt != c.sndMax {
		return false, false
	}
	dataEnd := c.sndUna + Seq(c.snd.n)
	if !c.sndNxt.LessThan(dataEnd) {
		return false, false
	}
	inflight := uint32(c.sndNxt - c.sndUna)
	if c.sndWnd <= inflight {
		return false, false
	}
	avail := int(dataEnd - c.sndNxt)
	n := min(avail, int(c.sndWnd-inflight), int(c.smss()))
	if n < int(c.smss()) && n < avail {
		return false, false // sender SWS avoidance: wait for a full segment's room
	}
	flags := proto.TCPFlagACK
	if c.sndNxt+Seq(n) == dataEnd {
		flags |= proto.TCPFlagPSH
		if c.finQueued {
			flags |= proto.TCPFlagFIN
		}
	}
	return c.sendData(now, c.sndNxt, n, flags), true
}
