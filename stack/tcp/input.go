package tcp

import (
	"syscall"

	"github.com/xdpnet/xdpnet/proto"
)

// pawsIdle is RFC 7323 §5.5's 24 days, after which TS.Recent is no longer valid.
const pawsIdle = 24 * 24 * 3600 * int64(1e9)

// segment processes an arriving segment for this connection, RFC 9293 §3.10.7.3 (SYN-SENT) and §3.10.7.4
// (the other states), with RFC 5961's stricter RST, SYN and ACK checks and RFC 7323's PAWS.
func (c *Conn) segment(now int64, h proto.TCP, o *proto.TCPOptions, payload []byte) {
	switch c.state {
	case StateClosed:
		return
	case StateSynSent:
		if c.needSyn {
			c.e.inc(DropBadState) // our SYN has not even left yet
			return
		}
		c.synSent(now, h, o)
		return
	}
	flags := h.Flags()
	seq, ack := Seq(h.Seq()), Seq(h.Ack())
	segLen := uint32(len(payload))
	if flags.Has(proto.TCPFlagSYN) {
		segLen++
	}
	if flags.Has(proto.TCPFlagFIN) {
		segLen++
	}

	// A retransmitted SYN while we are in SYN-RECEIVED: our SYN-ACK was lost, send it again.
	if c.state == StateSynReceived && flags&(proto.TCPFlagSYN|proto.TCPFlagACK|proto.TCPFlagRST) == proto.TCPFlagSYN && seq == c.irs {
		c.sendSyn(now)
		return
	}

	// RFC 7323 §5.3 R1: PAWS, "If there is a Timestamps option in the arriving segment, SEG.TSval < TS.Recent
	// ... then treat the arriving segment as not acceptable: Send an acknowledgment in reply ... and drop".
	// RFC 7323 §5.5: after 24 days without an update TS.Recent is no longer valid - the peer's clock may
	// have wrapped into its "past" half meanwhile - so the test is skipped and the segment's TSval becomes
	// TS.Recent (Linux's TCP_PAWS_24DAYS).
	tsStale := false
	if c.tsOK && o.HasTimestamps && !flags.Has(proto.TCPFlagRST) && int32(o.TSval-c.tsRecent) < 0 {
		if now-c.tsRecentAt <= pawsIdle {
			c.e.inc(DropPAWS)
			if !c.oowLimited(now, segLen, flags.Has(proto.TCPFlagSYN), StatACKSkippedPAWS) {
				c.sendAck(now)
			}
			return
		}
		tsStale = true
	}

	// First, check the sequence number (RFC 9293 §3.10.7.4, the four-case acceptability table).
	rcvWnd := uint32(0)
	if d := int32(c.rcvAdv - c.rcvNxt); d > 0 {
		rcvWnd = uint32(d)
	}
	if c.rcv.cap() != 0 {
		rcvWnd = max(rcvWnd, uint32(c.rcv.free()))
	}
	ok := false
	switch {
	case segLen == 0 && rcvWnd == 0:
		ok = seq == c.rcvNxt
	case segLen == 0:
		ok = seq.InWindow(c.rcvNxt, rcvWnd)
	case rcvWnd == 0:
		// "If the RCV.WND is zero, no segments will be acceptable, but special allowance should be made to
		// accept valid ACKs, URGs, and RSTs": keep the control part, the data is trimmed below.
		ok = seq == c.rcvNxt
	default:
		ok = seq.InWindow(c.rcvNxt, rcvWnd) || (seq+Seq(segLen-1)).InWindow(c.rcvNxt, rcvWnd)
	}
	if !ok {
		c.e.inc(DropOutOfWindow)
		if !flags.Has(proto.TCPFlagRST) {
			// "<SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>" - also re-ACKs a retransmitted FIN in TIME-WAIT.
			if c.state == StateTimeWait && flags.Has(proto.TCPFlagFIN) {
				c.waitAt = now + 2*int64(c.e.cfg.MSL)
			}
			if !c.oowLimited(now, segLen, flags.Has(proto.TCPFlagSYN), StatACKSkippedSeq) {
				c.sendAck(now)
			}
		}
		return
	}
	c.lastRcvAt, c.kaProbes = now, 0 // the peer is there (keep-alive)

	// Second, the RST bit, RFC 5961 §3.2: "If the RST bit is set and the sequence number exactly matches the
	// next expected sequence number (RCV.NXT), then TCP MUST reset the connection ... Otherwise (in the
	// window but not exact) TCP MUST send an ACK (challenge ACK)".
	if flags.Has(proto.TCPFlagRST) {
		if seq != c.rcvNxt {
			c.e.inc(DropRSTNotExact)
			c.challengeACK(now)
			return
		}
		c.e.inc(StatResetsIn)
		switch c.state {
		case StateSynReceived:
			if c.l != nil {
				// Passive open: back to LISTEN, which for us means the half-open entry goes away.
				c.terminate(nil)
				return
			}
			c.terminate(syscall.ECONNREFUSED)
		case StateClosing, StateLastAck, StateTimeWait:
			c.terminate(nil)
		default:
			c.terminate(syscall.ECONNRESET)
		}
		return
	}

	// Fourth, the SYN bit, RFC 5961 §4.2: a SYN on a synchronized connection, whatever its sequence number,
	// gets a challenge ACK and is dropped.
	if flags.Has(proto.TCPFlagSYN) {
		c.e.inc(DropSYNInWindow)
		c.challengeACK(now)
		return
	}

	// Fifth, the ACK field. "if the ACK bit is off, drop the segment and return".
	if !flags.Has(proto.TCPFlagACK) {
		c.e.inc(DropNoACK)
		return
	}
	// RFC 7323 §4.3: TS.Recent follows the segment that covers Last.ACK.sent.
	if c.tsOK && o.HasTimestamps && seq.LessEq(c.lastAckSent) && (int32(o.TSval-c.tsRecent) >= 0 || tsStale) {
		c.tsRecent, c.tsRecentAt = o.TSval, now
	}

	if c.state == StateSynReceived {
		// "If SND.UNA < SEG.ACK =< SND.NXT, then enter ESTABLISHED state ... If the segment acknowledgment is
		// not acceptable, form a reset segment <SEQ=SEG.ACK><CTL=RST>".
		if !(c.sndUna.LessThan(ack) && ack.LessEq(c.sndNxt)) {
			c.e.inc(DropBadState)
			c.e.sendReset(c.id, h)
			return
		}
		if !c.establish(now, h, o) {
			return
		}
	}

	if !c.processAck(now, seq, ack, h.Window(), o, len(payload), flags) {
		return
	}
	if c.state == StateClosed {
		return
	}

	switch c.state {
	case StateTimeWait:
		// "The only thing that can arrive in this state is a retransmission of the remote FIN. Acknowledge
		// it, and restart the 2 MSL timeout."
		if flags.Has(proto.TCPFlagFIN) {
			c.waitAt = now + 2*int64(c.e.cfg.MSL)
			c.sendAck(now)
		}
		return
	case StateEstablished, StateFinWait1, StateFinWait2:
		// Seventh, the segment text.
		if c.appClosed && len(payload) > 0 && seq.Add(uint32(len(payload))).GreaterThan(c.rcvNxt) {
			// RFC 1122 §4.2.2.13 / RFC 2525 §2.17: the application is gone; tell the peer its data is lost.
			c.e.inc(DropDataAfterClose)
			c.sendRST()
			c.terminate(nil)
			return
		}
		c.receive(now, seq, payload, flags.Has(proto.TCPFlagFIN))
	default:
		// CLOSE-WAIT, CLOSING, LAST-ACK: the FIN was received; a retransmitted one is acknowledged, new
		// data after it is a protocol error and is dropped.
		if flags.Has(proto.TCPFlagFIN) || len(payload) > 0 {
			c.ackNow = true
		}
		if len(payload) > 0 && seq.Add(uint32(len(payload))).GreaterThan(c.rcvNxt) {
			c.e.inc(DropBadState)
		}
	}
	c.output(now)
	switch {
	case c.ackNow:
		c.sendAck(now)
	case c.ackStretch && c.e.batching:
		c.e.queueAck(c) // one ACK for the batch (Engine.BeginBatch)
	case c.ackStretch:
		c.sendAck(now)
	case c.rcvSinceAck > 0 && c.delackAt == 0:
		c.delackAt = now + int64(c.e.cfg.DelayedAck)
	}
}

// establish completes the three-way handshake in SYN-RECEIVED. For a passive open it allocates the
// buffers and queues the connection for Accept; false means the ACK was dropped (the peer retransmits).
func (c *Conn) establish(now int64, h proto.TCP, o *proto.TCPOptions) bool {
	if l := c.l; l != nil {
		if l.isClosed.Load() {
			c.sendRST()
			c.terminate(nil)
			return false
		}
		if len(l.acceptCh) >= cap(l.acceptCh) {
			c.e.inc(DropAcceptQueueFull)
			return false
		}
		if c.e.memOver() {
			c.e.inc(DropMemoryLimit)
			c.sendRST()
			c.terminate(nil)
			return false
		}
		c.allocBuffers()
		l.synq--
		c.l = nil
		c.e.inc(StatPassiveOpens)
		l.acceptCh <- c
	}
	c.state = StateEstablished
	// The ACK covers our SYN: SND.UNA moves over it here, so that the ACK processing that follows counts
	// only data (and a FIN) as acknowledged.
	if c.sndUna == c.iss {
		c.sndUna = c.iss + 1
		if c.rttTiming && c.retries == 0 {
			c.rttSample(now - c.rttStart)
		}
		c.rttTiming = false
		c.rexmitAt = 0
	}
	// RFC 9293 §3.10.7.4: "set SND.WND <- SEG.WND, SND.WL1 <- SEG.SEQ, SND.WL2 <- SEG.ACK" (now scaled).
	c.sndWnd = uint32(h.Window()) << c.sndScale
	c.maxSndWnd = max(c.maxSndWnd, c.sndWnd)
	c.sndWl1, c.sndWl2 = Seq(h.Seq()), Seq(h.Ack())
	c.retries = 0
	c.signalEstablished()
	signal(c.wrCh)
	return true
}

// synSent is RFC 9293 §3.10.7.3.
func (c *Conn) synSent(now int64, h proto.TCP, o *proto.TCPOptions) {
	flags := h.Flags()
	seq, ack := Seq(h.Seq()), Seq(h.Ack())
	ackOK := false
	if flags.Has(proto.TCPFlagACK) {
		// "If SEG.ACK =< ISS or SEG.ACK > SND.NXT, send a reset (unless the RST bit is set) ... and discard".
		if ack.LessEq(c.iss) || ack.GreaterThan(c.sndNxt) {
			c.e.inc(DropBadState)
			c.e.sendReset(c.id, h)
			return
		}
		ackOK = true
	}
	if flags.Has(proto.TCPFlagRST) {
		// "If the ACK was acceptable, then signal to the user 'error: connection reset', drop the segment,
		// enter CLOSED state" (RFC 5961 §3.2 keeps this for SYN-SENT). Otherwise drop it.
		if ackOK {
			c.e.inc(StatResetsIn)
			c.terminate(syscall.ECONNREFUSED)
		} else {
			c.e.inc(DropBadState)
		}
		return
	}
	if !flags.Has(proto.TCPFlagSYN) {
		c.e.inc(DropBadState)
		return
	}
	c.irs = seq
	c.rcvNxt = seq + 1
	// Our SYN offered its (unscaled) window field before RCV.NXT was known; its right edge counts from
	// here. sendSyn set RCV.ADV from an RCV.NXT of 0, and left so, window() - which never moves the edge
	// left - advertised up to 0xffff<<scale (8 MiB) against a 256 KiB buffer for half of the peer's ISNs.
	c.rcvAdv = c.rcvNxt + Seq(min(c.e.cfg.RecvBuffer, 0xffff))
	c.negotiate(now, o, h.Window())
	if !c.wsOK {
		c.rcvScale = 0
	}
	if ackOK {
		// Our SYN is acknowledged: ESTABLISHED. Data carried by the SYN-ACK is not taken (it is
		// retransmitted by the peer after our ACK).
		c.sndUna = ack
		if c.rttTiming && ack.GreaterEq(c.rttSeq) && c.retries == 0 {
			c.rttSample(now - c.rttStart)
		}
		c.rttTiming = false
		c.rexmitAt = 0
		c.retries = 0
		c.state = StateEstablished
		c.sndWl1, c.sndWl2 = seq, ack
		c.signalEstablished()
		signal(c.wrCh)
		c.sendAck(now)
		return
	}
	// Simultaneous open: "Otherwise enter SYN-RECEIVED, form a SYN,ACK segment <SEQ=ISS><ACK=RCV.NXT>".
	c.state = StateSynReceived
	c.rexmitAt = 0
	c.sendSyn(now)
}

// processAck is the ACK processing of the synchronized states. It returns false when the segment must be
// dropped.
func (c *Conn) processAck(now int64, seq, ack Seq, wnd uint16, o *proto.TCPOptions, dataLen int, flags proto.TCPFlags) bool {
	// RFC 5961 §5.2: acceptable if (SND.UNA - MAX.SND.WND) =< SEG.ACK =< SND.NXT (SND.MAX here: after an RTO
	// pulled SND.NXT back, ACKs up to the highest sequence sent are good).
	if ack.GreaterThan(c.sndMax) && !(c.persistN > 0 && ack.LessEq(c.probeEnd)) {
		c.e.inc(DropAckTooNew)
		segLen := uint32(dataLen)
		if flags.Has(proto.TCPFlagFIN) {
			segLen++
		}
		if !c.oowLimited(now, segLen, false, StatACKSkippedSeq) {
			c.sendAck(now)
		}
		return false
	}
	if ack.LessThan(c.sndUna - Seq(max(c.maxSndWnd, 1))) {
		c.e.inc(DropAckTooOld)
		c.challengeACK(now)
		return false
	}
	c.probesOut, c.probeStart = 0, 0 // an acceptable ACK: the peer is there (Linux's tcp_ack clears icsk_probes_out)
	newSACK := false
	una0, sacked0 := c.sndUna, c.sackedBytes()
	if c.sackOK && o.NSACK > 0 {
		newSACK = c.recordSACK(o)
	}
	newWnd := uint32(wnd) << c.sndScale
	// RFC 5681 §2 "DUPLICATE ACKNOWLEDGMENT": no data, no SYN/FIN, same ack, same window, data outstanding.
	// With SACK an ACK that reports newly received data above SND.UNA counts too, even if it carries data
	// or a window change (RFC 6675 §2 counts SACKed segments, not pure duplicates): otherwise a
	// connection with data flowing both ways, whose ACKs ride on data, could only recover by RTO.
	dup := ack == c.sndUna && !flags.Has(proto.TCPFlagFIN) && c.sndMax != c.sndUna &&
		(dataLen == 0 && newWnd == c.sndWnd || newSACK)

	// Window update, RFC 9293 §3.10.7.4: "If SND.WL1 < SEG.SEQ or (SND.WL1 = SEG.SEQ and SND.WL2 =< SEG.ACK),
	// set SND.WND <- SEG.WND, set SND.WL1 <- SEG.SEQ, and set SND.WL2 <- SEG.ACK."
	if c.sndWl1.LessThan(seq) || (c.sndWl1 == seq && c.sndWl2.LessEq(ack)) {
		c.sndWnd = newWnd
		c.maxSndWnd = max(c.maxSndWnd, newWnd)
		c.sndWl1, c.sndWl2 = seq, ack
		if newWnd > 0 && c.persist {
			c.persist, c.rexmitAt, c.persistN = false, 0, 0
		}
	}

	advanced := ack.GreaterThan(c.sndUna)
	if advanced {
		c.ackNew(now, ack, o)
	} else if dup {
		c.dupAck(now)
	}
	if c.sackOK && c.state.canSend() {
		c.rackUpdate(now)
		// RFC 6675 §5: recovery starts when DupThresh duplicate ACKs arrived or the first unacknowledged
		// byte is lost by the SACK information (or by RACK), unless an RTO's recovery point is not passed.
		// RFC 6937 §3: "DeliveredData = Change in snd.una + Change in SACKed" (a SACKed range that the
		// cumulative ACK now covers counts once).
		delivered := uint32(max(int32(c.sndUna-una0)+int32(c.sackedBytes()-sacked0), 0))
		if c.canEnterRecovery() {
			c.enterSACKRecovery(now, delivered)
		} else if c.inRecovery && (advanced || dup) {
			c.sackStep(now, delivered)
		}
		c.armRACK()
		if advanced {
			c.tlpOut = false
		}
		c.armTLP(now)
	}

	// State changes that hinge on our FIN being acknowledged.
	finAcked := c.finAckedFlag
	switch c.state {
	case StateFinWait1:
		if finAcked {
			c.state = StateFinWait2
			if c.appClosed {
				c.waitAt = now + int64(c.e.cfg.FinWait2Timeout)
			}
		}
	case StateClosing:
		if finAcked {
			c.enterTimeWait(now)
		}
	case StateLastAck:
		if finAcked {
			c.terminate(nil)
			return false
		}
	}
	return true
}

// enterTimeWait starts the 2*MSL wait, or closes at once when Config.MaxTimeWait connections already wait
// (Linux's tcp_max_tw_buckets: "TCP: time wait bucket table overflow"). Its buffers are gone by now
// (releaseBuffers), so an entry costs only its state.
func (c *Conn) enterTimeWait(now int64) {
	if c.e.timeWait >= c.e.cfg.MaxTimeWait {
		c.e.inc(StatTimeWaitOverflow)
		c.terminate(nil)
		return
	}
	c.e.timeWait++
	c.inTimeWait = true
	c.unorphan() // a TIME-WAIT entry is not an orphan, as in Linux
	c.state = StateTimeWait
	c.rexmitAt, c.persist, c.delackAt, c.kaAt = 0, false, 0, 0
	c.waitAt = now + 2*int64(c.e.cfg.MSL) // RFC 9293 §3.4.2: "wait ... 2 MSL"
	signal(c.rdCh)
	signal(c.wrCh)
}

// ackNew handles an ACK for new data: free the send buffer, sample the RTT, grow or repair the congestion
// window (RFC 5681 §3.1, RFC 6582 §3.2) and restart the retransmission timer (RFC 6298 §5.2-5.3).
func (c *Conn) ackNew(now int64, ack Seq, o *proto.TCPOptions) {
	acked := uint32(ack - c.sndUna)
	rtt := int64(0)
	if c.tsOK && o.HasTimestamps && o.TSecr != 0 {
		// RFC 7323 §4.1: the RTT from the echoed timestamp; valid for retransmissions too.
		rtt = max(int64(c.tsNow(now)-o.TSecr)*1e6, 1000) // 1 µs: below the clock's granularity
		c.rttSample(rtt)
		c.rttTiming = false
	} else if c.rttTiming && ack.GreaterEq(c.rttSeq) {
		rtt = max(now-c.rttStart, 1000)
		c.rttSample(rtt)
		c.rttTiming = false
	}
	data := min(int(acked), c.snd.n)
	c.snd.discard(data)
	if int(acked) > data {
		c.finAckedFlag = true
	}
	c.sndUna = ack
	if c.sndNxt.LessThan(ack) {
		c.sndNxt = ack // the peer took bytes sent before an RTO, or a zero-window probe
	}
	if c.sndMax.LessThan(ack) {
		c.sndMax = ack // the probe byte
	}
	c.retries = 0
	if c.plpmtud.probing && ack.GreaterEq(c.plpmtud.probeEnd) {
		c.mtuProbeAcked()
	}
	// Prune the SACK scoreboard below SND.UNA.
	k := 0
	for i := 0; i < c.nsacked; i++ {
		r := c.sacked[i]
		if r.right.LessEq(ack) {
			continue
		}
		r.left = seqMax(r.left, ack)
		c.sacked[k] = r
		k++
	}
	c.nsacked = k

	smss := c.smss()
	if c.inRecovery {
		if ack.GreaterEq(c.recover) {
			if c.sackOK {
				// RFC 6937 §3: "on exiting recovery ... cwnd = ssthresh". RFC 6582's FlightSize + SMSS
				// would leave one segment in flight after a recovery that retransmitted the last hole,
				// and a lone segment waits out the peer's delayed-ACK timer (40 ms on Linux).
				c.cwnd = c.ssthresh
			} else {
				// Full acknowledgment, RFC 6582 §3.2 step 3: "Set cwnd to min(ssthresh, FlightSize + SMSS)".
				flight := uint32(c.sndMax - c.sndUna)
				c.cwnd = min(c.ssthresh, flight+smss)
			}
			c.inRecovery = false
			c.dupAcks = 0
			c.nrexmits = 0
		} else if c.sackOK {
			// RFC 6675: a partial ACK changes neither cwnd nor what is sent directly; sackStep decides
			// from pipe and the scoreboard.
		} else {
			// Partial acknowledgment: retransmit the first unacknowledged segment, "deflate the congestion
			// window by the amount of new data acknowledged ... add back SMSS bytes".
			c.e.inc(StatFastRetransmits)
			c.retransmitAt(now, c.sndUna, int(smss))
			c.rexmitHole = seqMax(c.rexmitHole, c.sndUna+Seq(smss))
			if acked >= c.cwnd {
				c.cwnd = smss
			} else {
				c.cwnd -= acked
			}
			if acked >= smss {
				c.cwnd += smss
			}
		}
	} else {
		c.dupAcks = 0
		// RFC 3465 byte counting: the window grows by what the ACKs cover, not by how many there are, so a
		// receiver that ACKs every second segment or once per batch (Engine.BeginBatch) does not slow it.
		c.ccAck(now, acked, rtt)
	}
	c.sndBufExpand()
	if c.sndUna == c.sndMax {
		if !c.persist {
			c.rexmitAt = 0
		}
	} else if !c.persist {
		c.rexmitAt = now + c.rto
	}
	signal(c.wrCh)
}

// dupAck counts duplicate ACKs: the third starts fast retransmit and NewReno fast recovery (RFC 5681 §3.2,
// RFC 6582 §3.2); later ones inflate cwnd and, with SACK information, retransmit the next hole
// (a small part of RFC 6675: never a range the receiver reported as SACKed).
func (c *Conn) dupAck(now int64) {
	c.dupAcks++
	smss := c.smss()
	if c.sackOK {
		// RFC 6675: the caller starts and runs recovery; RFC 3042 limited transmit still applies before it.
		if !c.inRecovery && c.dupAcks < dupThresh {
			c.limitedTransmit(now)
		}
		return
	}
	if !c.inRecovery {
		if c.dupAcks < 3 {
			c.limitedTransmit(now)
			return
		}
		// RFC 6582 §3.2 step 2: only "if the Cumulative Acknowledgment field covers more than recover"
		// (avoids repeated fast retransmits of one window after an RTO). recover here is one past the
		// highest sequence number sent, so "covers more" is SND.UNA >= recover.
		if c.dupAcks == 3 && c.sndUna.GreaterEq(c.recover) {
			if c.plpmtud.probing {
				c.mtuProbeLost(now)
			}
			c.ccCongestion(now)
			c.recover = c.sndMax
			c.inRecovery = true
			c.e.inc(StatFastRetransmits)
			c.retransmitAt(now, c.sndUna, int(smss))
			c.rexmitHole = c.sndUna + Seq(smss)
			c.cwnd = c.ssthresh + 3*smss
			c.rexmitAt = now + c.rto
		}
		return
	}
	c.cwnd += smss
	if c.nsacked > 0 {
		if seq, n := c.nextHole(c.rexmitHole); n > 0 {
			c.e.inc(StatSACKRetransmits)
			c.retransmitAt(now, seq, n)
			c.rexmitHole = seq + Seq(n)
		}
	}
}

// limitedTransmit is RFC 3042 §2: on the first and second duplicate ACK send one new segment if the
// peer's window allows, "the congestion window is not changed". It lets a small window still collect
// three duplicate ACKs after a loss instead of waiting for the RTO.
func (c *Conn) limitedTransmit(now int64) {
	dataEnd := c.sndUna + Seq(c.snd.n)
	inflight := uint32(c.sndNxt - c.sndUna)
	if !c.state.canSend() || !c.sndNxt.LessThan(dataEnd) || c.sndWnd <= inflight || c.sndNxt.LessThan(c.sndMax) {
		return
	}
	n := min(int(c.smss()), int(dataEnd-c.sndNxt), int(c.sndWnd-inflight))
	if n < int(c.smss()) && n < int(dataEnd-c.sndNxt) {
		return // RFC 3042: only full-sized segments, or the last of the data
	}
	c.sendData(now, c.sndNxt, n, proto.TCPFlagACK)
}

// recordSACK merges received SACK blocks into the scoreboard (RFC 2018 §5). Blocks outside
// (SND.UNA, SND.MAX] are ignored (RFC 2883 D-SACKs below SND.UNA included).
// It reports whether the scoreboard grew.
func (c *Conn) recordSACK(o *proto.TCPOptions) bool {
	before := c.sackedBytes()
	for i := 0; i < o.NSACK && i < proto.TCPMaxSACKBlocks; i++ {
		l, r := Seq(o.SACK[i].Left), Seq(o.SACK[i].Right)
		if !l.LessThan(r) || l.LessEq(c.sndUna) || r.GreaterThan(c.sndMax) {
			continue
		}
		c.addSACK(seqRange{l, r})
	}
	return c.sackedBytes() > before
}

func (c *Conn) sackedBytes() uint32 {
	var n uint32
	for i := 0; i < c.nsacked; i++ {
		n += uint32(c.sacked[i].right - c.sacked[i].left)
	}
	return n
}

func (c *Conn) addSACK(nr seqRange) {
	// Merge overlapping or adjacent blocks, keep them sorted by left edge.
	k := 0
	var out [maxSACKScoreboard + 1]seqRange
	placed := false
	for i := 0; i < c.nsacked; i++ {
		r := c.sacked[i]
		if r.right.LessThan(nr.left) {
			out[k] = r
			k++
			continue
		}
		if nr.right.LessThan(r.left) {
			if !placed {
				out[k] = nr
				k++
				placed = true
			}
			out[k] = r
			k++
			continue
		}
		nr.left, nr.right = seqMin(nr.left, r.left), seqMax(nr.right, r.right)
	}
	if !placed {
		out[k] = nr
		k++
	}
	// Keep the lowest blocks: they describe the holes that matter first.
	c.nsacked = min(k, maxSACKScoreboard)
	copy(c.sacked[:], out[:c.nsacked])
}

// nextHole returns the first not-SACKed range (at most one SMSS) at or after from and below the highest
// SACKed sequence number.
func (c *Conn) nextHole(from Seq) (Seq, int) {
	s := seqMax(from, c.sndUna)
	for i := 0; i < c.nsacked; i++ {
		r := c.sacked[i]
		if s.InRange(r.left, r.right) {
			s = r.right
			continue
		}
		if s.LessThan(r.left) {
			n := min(int(r.left-s), int(c.smss()))
			return s, n
		}
	}
	return 0, 0
}

// receive is the seventh and eighth steps: the segment text and the FIN. Data is trimmed to RCV.NXT on the
// left and to the receive buffer on the right; in-order data is appended, later data waits in the
// out-of-order queue (ranges over the buffer's free space).
func (c *Conn) receive(now int64, seq Seq, payload []byte, fin bool) {
	if seq.LessThan(c.rcvNxt) {
		skip := uint32(c.rcvNxt - seq)
		if int(skip) >= len(payload) {
			if fin && seq+Seq(len(payload)) == c.rcvNxt {
				// The data is old but the FIN right after it is new.
				payload = nil
				seq = c.rcvNxt
			} else {
				payload, fin = nil, false
				c.ackNow = true // a duplicate: the peer lost our ACK
			}
		} else {
			payload = payload[skip:]
			seq = c.rcvNxt
		}
	}
	if len(payload) > 0 {
		off := int(seq - c.rcvNxt)
		space := c.rcv.free()
		if off+len(payload) > space {
			c.e.inc(DropRcvBufFull)
			fin = false
			if off >= space {
				payload = nil
			} else {
				payload = payload[:space-off]
			}
			c.ackNow = true
		}
		if len(payload) > 0 && c.e.memOver() && (off > 0 || c.rcv.n > 0 || len(c.ooo) > 0) {
			// Config.MemoryLimit reached: the data is dropped (the peer sends it again) unless it is in
			// order and the receive queue is empty, which Linux's tcp_data_queue also forces through
			// (sk_forced_mem_schedule) so that every connection can make progress.
			c.e.inc(DropRcvMemory)
			payload, fin = nil, false
			c.ackNow = true
		}
		if len(payload) > 0 {
			if off == 0 {
				c.rcv.writeAt(0, payload)
				end := seq + Seq(len(payload))
				filled := false
				for len(c.ooo) > 0 && c.ooo[0].left.LessEq(end) {
					end = seqMax(end, c.ooo[0].right)
					c.ooo = append(c.ooo[:0], c.ooo[1:]...)
					filled = true
				}
				c.rcv.commit(int(end - c.rcvNxt))
				c.rcvNxt = end
				c.rcvSinceAck += len(payload)
				c.rcvSpaceAdjust(now)
				// RFC 5681 §4.2: ACK at least every second full-sized segment (at the end of the batch,
				// see Engine.BeginBatch), and at once when a segment fills a hole.
				if filled {
					c.ackNow = true
				} else if c.rcvSinceAck >= 2*int(c.mss)-2*40 {
					c.ackStretch = true
				}
				signal(c.rdCh)
			} else {
				if c.insertOOO(seqRange{seq, seq + Seq(len(payload))}) {
					c.rcv.writeAt(off, payload)
					c.noteOOO(seq)
				} else {
					c.e.inc(DropOutOfOrderFull)
				}
				c.ackNow = true // RFC 5681 §4.2: an out-of-order segment is ACKed at once (a dup ACK)
			}
		}
	}
	if fin {
		fs := seq + Seq(len(payload))
		if fs == c.rcvNxt {
			c.processFin(now)
		} else {
			c.oooFin, c.oooFinSeq = true, fs
			c.ackNow = true
		}
	}
	if c.oooFin && c.oooFinSeq == c.rcvNxt && !c.finRcvd {
		c.processFin(now)
	}
}

// insertOOO adds a range to the sorted, disjoint out-of-order list; false when it is full.
func (c *Conn) insertOOO(nr seqRange) bool {
	i := 0
	for i < len(c.ooo) && c.ooo[i].right.LessThan(nr.left) {
		i++
	}
	j := i
	for j < len(c.ooo) && c.ooo[j].left.LessEq(nr.right) {
		nr.left, nr.right = seqMin(nr.left, c.ooo[j].left), seqMax(nr.right, c.ooo[j].right)
		j++
	}
	if i == j {
		if len(c.ooo) == cap(c.ooo) {
			return false
		}
		c.ooo = append(c.ooo, seqRange{})
		copy(c.ooo[i+1:], c.ooo[i:])
		c.ooo[i] = nr
		return true
	}
	c.ooo[i] = nr
	c.ooo = append(c.ooo[:i+1], c.ooo[j:]...)
	return true
}

// processFin is the eighth step: "advance RCV.NXT over the FIN ... and send an acknowledgment".
func (c *Conn) processFin(now int64) {
	if c.finRcvd {
		return
	}
	c.finRcvd = true
	c.oooFin = false
	c.rcvNxt++
	c.ackNow = true
	signal(c.rdCh)
	switch c.state {
	case StateSynReceived, StateEstablished:
		c.state = StateCloseWait
	case StateFinWait1:
		if c.finAckedFlag {
			c.enterTimeWait(now)
		} else {
			c.state = StateClosing // simultaneous close
		}
	case StateFinWait2:
		c.enterTimeWait(now)
	}
}
