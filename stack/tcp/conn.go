package tcp

import (
	"github.com/xdpnet/xdpnet/internal/deadline"
	"sync"
	"syscall"

	"github.com/xdpnet/xdpnet/proto"
)

type seqRange struct{ left, right Seq }

// maxSACKScoreboard bounds the SACK scoreboard (ranges the peer reported above SND.UNA). At 5% loss a
// 256 KiB window has about ten holes; when more ranges arrive the lowest are kept, since recovery works
// from the bottom.
const maxSACKScoreboard = 32

// maxRexmits bounds the retransmissions that RFC 6675 recovery tracks at once (see rexmit). One beyond it
// is sent but not tracked: its loss is found by the RTO only.
const maxRexmits = 64

// Conn is one TCP connection. The engine's owner goroutine runs its state machine (segments, timers);
// applications use it as a net.Conn. Both sides meet under mu; the owner never blocks on the application.
type Conn struct {
	e  *Engine
	id connID
	l  *Listener // the listener of a passive open until it is queued for Accept
	mu sync.Mutex

	state State

	// Send sequence variables, RFC 9293 §3.3.1. snd holds the data from SND.UNA on: sent and unacknowledged
	// first, then not yet sent. sndMax is the highest sequence number sent (SND.NXT moves back on an RTO).
	iss, sndUna, sndNxt, sndMax Seq
	sndWnd, maxSndWnd           uint32
	sndWl1, sndWl2              Seq
	sndScale                    uint8
	snd                         ring
	finQueued                   bool // the application will send no more: a FIN follows the data
	finAckedFlag                bool // the peer acknowledged our FIN
	probeEnd                    Seq  // end of the last zero-window probe: ACKs up to it are acceptable

	// Receive sequence variables. rcvAdv is the right edge of the window last advertised.
	irs, rcvNxt, rcvAdv Seq
	rcvScale            uint8
	rcv                 ring
	bufAt               int64                       // next idle check of the rings' memory (ring.fit; 0 = none held)
	ooo                 []seqRange                  // out-of-order ranges beyond RCV.NXT, sorted, disjoint; data is in rcv
	oooRecent           [proto.TCPMaxSACKBlocks]Seq // a byte of each recently received out-of-order segment, newest first
	nOOORecent          int
	finRcvd             bool // the peer's FIN was processed: reads end with EOF after the data
	oooFin              bool // a FIN arrived beyond a hole, at oooFinSeq
	oooFinSeq           Seq
	rcvSinceAck         int // bytes received since the last ACK sent (delayed ACK, RFC 5681 §4.2)
	// Receive-buffer autotuning (rcvSpaceAdjust): the application's read position at the start of the
	// current interval, when it started, and the most the application read in one interval.
	spaceSeq Seq
	spaceAt  int64
	space    int

	// Options (RFC 7323, RFC 2018). mss is the largest payload the peer accepts without options, what the
	// path lets through (pmtu.go): synMSS the handshake's, pathMSS the least an ICMP message or the
	// interface MTU set (0: none).
	mss, synMSS, pathMSS uint16
	plpmtud              plpmtud
	wsOK, tsOK, sackOK   bool
	tsRecent             uint32
	tsRecentAt           int64 // when TS.Recent was last set (RFC 7323 §5.5)
	lastAckSent          Seq
	sacked               [maxSACKScoreboard]seqRange
	nsacked              int
	rexmitHole           Seq // next sequence number the SACK-based loss recovery may retransmit (NewReno path)
	rexmits              [maxRexmits]rexmit
	nrexmits             int
	rescueRxt            Seq   // RFC 6675 RescueRxt: recovery point of the last rescue retransmission
	rescueSet            bool  // rescueRxt is defined
	rackAt               int64 // next RACK deadline: a pending lost edge, or a retransmission without news (0 = off)
	rackEdge             Seq   // RACK: unSACKed bytes below it are lost
	rackPend             Seq   // RACK: becomes rackEdge at rackPendAt unless SACKed by then
	rackPendAt           int64
	tlpAt                int64 // RFC 8985 §7 tail loss probe timer (0 = off)
	tlpOut               bool  // a probe was sent and no ACK advanced SND.UNA since
	memCharged           int   // bytes this connection holds in the engine's memUsed (recharge)
	inTimeWait           bool  // counted in the engine's TIME-WAIT entries
	orphan               bool  // counted in the engine's orphans
	lastInvalidAck       int64 // when the last reply to an unacceptable segment left (Config.InvalidRateLimit)
	lastRcvAt            int64 // when the last acceptable segment arrived (keep-alive idle time)

	// Socket options (sockopt.go): keep-alive and its timer and unanswered probes, SO_LINGER, and the
	// buffer sizes the application set (which turn autotuning off; 0: not set).
	ka                   keepAlive
	kaAt                 int64
	kaProbes             int
	linger               int
	rcvLocked, sndLocked bool
	sndFull              bool // Write found the send buffer full and waits (sndBufExpand)
	rcvLimit, sndLimit   int

	// RTT estimation and retransmission timer, RFC 6298.
	srtt, rttvar, rto int64
	hasRTT            bool
	rttTiming         bool
	rttSeq            Seq
	rttStart          int64
	retries           int
	persistN          int   // zero-window probes since the window closed (their backoff)
	probesOut         int   // zero-window probes (and RTOs that found the window closed) since the last ACK
	probeStart        int64 // when the first of those probesOut was sent (probeTimeout)

	// Timers (monotonic ns, 0 = off). rexmitAt is the RTO, or the persist timer when persist is set.
	rexmitAt   int64
	persist    bool
	delackAt   int64
	waitAt     int64 // TIME-WAIT end, or the FIN-WAIT-2 timeout
	ackNow     bool
	ackStretch bool // two full segments arrived in order since the last ACK: ACK now, or at the batch end
	ackQueued  bool // in the engine's Flush list

	// Congestion control, RFC 5681 and NewReno RFC 6582; during SACK recovery RFC 6937 PRR sets cwnd from
	// what was delivered (prrDelivered) and sent (prrOut) since recovery began with recoverFS in flight.
	cwnd, ssthresh       uint32
	dupAcks              int
	recover              Seq
	inRecovery           bool
	noDelay              bool
	prrDelivered, prrOut uint32
	recoverFS            uint32
	bytesAcked           uint32 // RFC 3465 §2.1: acknowledged bytes not yet turned into congestion avoidance growth
	cc                   ccState

	// Application side.
	rdCh, wrCh chan struct{} // capacity 1: "something changed", re-checked under mu
	estCh      chan struct{} // closed when the handshake ends, either way
	doneCh     chan struct{} // closed when the connection is gone (reset, timeout, closed)
	closedCh   chan struct{} // closed by Close
	estDone    bool
	doneDone   bool
	err        error // why the connection ended abnormally
	appClosed  bool  // Close was called: reads fail, late data resets
	shutWrReq  bool  // CloseWrite or Close: queue the FIN on the owner
	abortReq   bool  // the application wants a RST (Close with unread data, Listener.Close)
	needSyn    bool  // active open not yet sent
	pending    bool  // in the engine's pending list; guarded by e.pendMu
	rdl, wdl   deadline.Deadline
	seg        Segment
}

func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

func (c *Conn) signalEstablished() {
	if !c.estDone {
		c.estDone = true
		close(c.estCh)
	}
}

func (c *Conn) smss() uint32 {
	m := uint32(c.mss)
	if c.tsOK {
		m -= 12
	}
	return max(m, 64)
}

func (c *Conn) allocBuffers() {
	if c.snd.cap() != 0 {
		return
	}
	// Logical sizes only: the memory comes as data does (ring).
	c.snd.size = c.e.cfg.SendBuffer
	c.rcv.size = c.e.cfg.RecvBuffer
}

// held is what the connection is charged against Config.MemoryLimit: the bytes in its send queue (unsent
// and unacknowledged) and the span of its receive buffer from the first unread byte to the furthest
// out-of-order one (rcv.end) - not the size of its buffers, as Linux's tcp_mem charges the skbs queued, not
// SO_SNDBUF and SO_RCVBUF. A connection charged its two buffers from the handshake on, and 512 connections
// whose peers had closed their windows took all of the 256 MiB, so every later SYN was dropped. The span,
// not the sum of the out-of-order ranges, because the ring's memory must cover it: a peer sending one byte
// at the far end of the window makes the buffer that large, and is charged for it. A closed connection
// holds nothing.
func (c *Conn) held() int {
	if c.state == StateClosed {
		return 0
	}
	return c.snd.n + c.rcv.end
}

// recharge brings the engine's memUsed in line with what c holds now. It runs under c.mu: on the owner
// after every step (afterConn, remove) and in Write and Read, which change the queues from the
// application's side.
func (c *Conn) recharge() {
	if d := c.held() - c.memCharged; d != 0 {
		c.memCharged += d
		c.e.memUsed.Add(int64(d))
	}
}

// sndMemRoom is how much more Write may queue under the memory limit: anything below memory pressure,
// beyond it only up to minSndQueue queued (Linux's sk_stream_wait_memory then waits; here Write waits for
// the ACKs of what is queued).
func (c *Conn) sndMemRoom() int {
	if !c.e.memPressure() {
		return c.snd.free()
	}
	return max(minSndQueue-c.snd.n, 0)
}

// releaseBuffers gives back the memory of the buffers no data can pass through any more: the send buffer
// once our FIN is queued and all data before it acknowledged (only the FIN may still need sending, and it
// has no payload), the receive buffer once the peer's FIN arrived (unread data left then moves to a buffer
// of its own size, given back when the application has read it). Without this a connection kept its
// buffers and their charge through TIME-WAIT, 2*MSL, and a server closing ~9 connections a second filled
// the 256 MiB MemoryLimit with TIME-WAIT entries and then dropped every SYN. Linux frees a socket no later
// than tcp_time_wait, which puts a small inet_timewait_sock in its place; here the Conn stays (the
// application may still hold it), without buffers. Owner only, e.mu and c.mu held.
func (c *Conn) releaseBuffers() {
	if c.snd.cap() != 0 && c.finQueued && c.snd.n == 0 {
		c.snd = ring{}
	}
	if c.rcv.cap() != 0 && c.finRcvd && c.rcv.n < c.rcv.cap() {
		var b []byte
		if c.rcv.n > 0 {
			b = make([]byte, c.rcv.n) // once per connection, for data the application has yet to read
			c.rcv.read(b)
		}
		c.rcv = ring{buf: b, size: len(b), n: len(b), end: len(b)}
		c.ooo = c.ooo[:0] // nothing beyond the FIN
	}
}

// negotiate applies the options of the peer's SYN (RFC 7323 §2.2, §3.2; RFC 2018 §2; RFC 9293 §3.7.1).
// "If a Window Scale option is received ... but no Window Scale option was sent, ... or vice versa" the
// scaling is off; the same holds for timestamps and SACK. A passive opener only offers what it received.
func (c *Conn) negotiate(now int64, o *proto.TCPOptions, wnd uint16) {
	cfg := &c.e.cfg
	peerMSS := uint16(536) // RFC 9293 §3.7.1: the default send MSS when none is received
	if o.HasMSS && o.MSS > 0 {
		peerMSS = o.MSS
	}
	c.mss = min(peerMSS, c.e.ourMSS(c.id.remote.Addr()))
	c.synMSS = c.mss
	if c.pathMSS != 0 {
		c.mss = min(c.mss, c.pathMSS)
	}
	c.wsOK = o.HasWindowScale && !cfg.DisableWindowScale
	if c.wsOK {
		c.sndScale = min(o.WindowScale, 14) // RFC 7323 §2.3: larger values are taken as 14
		c.rcvScale = c.e.rcvScale
	} else {
		c.sndScale, c.rcvScale = 0, 0
	}
	c.sackOK = o.SACKPermitted && !cfg.DisableSACK
	c.tsOK = o.HasTimestamps && !cfg.DisableTimestamps
	if c.tsOK {
		c.tsRecent, c.tsRecentAt = o.TSval, now
	}
	c.sndWnd = uint32(wnd) // RFC 7323 §2.2: the window field of a SYN is never scaled
	c.maxSndWnd = c.sndWnd
	c.initCC()
}

func (c *Conn) tsNow(now int64) uint32 { return tsClock(now, c.iss) }

// tsClock is the TSval clock of a connection: milliseconds, offset by its ISS so that the timestamps of
// different connections say nothing about each other or the host's uptime.
func tsClock(now int64, iss Seq) uint32 { return uint32(now/1e6) + uint32(iss)*0x9e37 }

// window computes the window field to send and records the advertised right edge (RCV.ADV).
// RFC 9293 §3.8.6.2.2 (receiver SWS avoidance): the right edge moves only by min(RcvBuffer/2, MSS) or more;
// RFC 7323 §2.4 and RFC 9293 §3.8.6: the advertised right edge never moves left.
func (c *Conn) window() uint16 {
	var avail, capacity int
	switch {
	case c.rcv.cap() == 0 && c.finRcvd:
		avail, capacity = 0, 0 // released (releaseBuffers): keep the edge already advertised
	case c.rcv.cap() != 0:
		// 2^scale - 1 bytes of the buffer are never offered: once RCV.NXT has moved by a length that is
		// not a multiple of 2^scale, the edge already advertised can only be kept by rounding the field
		// up (below), by as much, and the peer may then fill the window to the rounded edge.
		avail, capacity = max(c.rcv.free()-(1<<c.rcvScale-1), 0), c.rcv.cap()
		if c.rcvLimit > 0 { // SetReadBuffer made it smaller than the buffer
			avail = min(avail, max(c.rcvLimit-c.rcv.n-(1<<c.rcvScale-1), 0))
		}
	default:
		avail, capacity = c.e.cfg.RecvBuffer, c.e.cfg.RecvBuffer
	}
	adv := int64(int32(c.rcvAdv - c.rcvNxt))
	if adv < 0 {
		adv = 0
	}
	if int64(avail) > adv && int64(avail)-adv < int64(min(capacity/2, int(c.mss))) {
		avail = int(adv)
	}
	f := uint32(avail) >> c.rcvScale
	if uint64(f)<<c.rcvScale < uint64(adv) {
		f = uint32((adv + 1<<c.rcvScale - 1) >> c.rcvScale)
	}
	f = min(f, 0xffff)
	c.rcvAdv = c.rcvNxt + Seq(f<<c.rcvScale)
	return uint16(f)
}

// rcvSpaceMinInterval is the shortest interval over which rcvSpaceAdjust measures the application's reads.
// The wire RTT on a veth is tens of microseconds, but the receiving application, the owner and the sender
// may share a CPU (the poller sleeps in poll(2) with millisecond timeouts, the scheduler slices in
// milliseconds): the window has to cover that long a pause of the reader, or the sender stalls on it.
// Linux's receiver measures no shorter either: its RTT estimate comes from millisecond timestamps.
const rcvSpaceMinInterval = int64(1e6)

// rcvSpaceAdjust is receive-buffer autotuning after Linux's tcp_rcv_space_adjust (dynamic right-sizing):
// once per interval (SRTT, at least rcvSpaceMinInterval) it looks at how much the application read. When
// that is more than in any interval before, the buffer - and with it the window - grows to twice that
// plus 16 segments, at least doubling, up to Config.RecvBufferMax, the window the scale allows and
// MemoryLimit. A reader that keeps up at a high rate gets a window for it; a slow reader or a connection
// that moves little keeps the small RecvBuffer, so memory goes where the data flows. Buffer sizes never
// shrink. Growing sets the size only: the memory follows when data needs it (ring.writeAt), a handful of
// times per connection, never per segment in a steady state. Owner only, e.mu and c.mu held.
func (c *Conn) rcvSpaceAdjust(now int64) {
	cfg := &c.e.cfg
	limit := min(cfg.RecvBufferMax, 0xffff<<c.rcvScale)
	if c.rcv.cap() == 0 || c.rcv.cap() >= limit || c.rcvLocked {
		return
	}
	copied := c.rcvNxt - Seq(c.rcv.n) // the application's read position (copied_seq)
	if c.spaceAt == 0 {
		c.spaceSeq, c.spaceAt, c.space = copied, now, 10*int(c.mss)
		return
	}
	if now-c.spaceAt < max(c.srtt, rcvSpaceMinInterval) {
		return
	}
	n := int(copied - c.spaceSeq)
	c.spaceSeq, c.spaceAt = copied, now
	if n <= c.space {
		return
	}
	c.space = n
	want := 2*n + 16*int(c.mss)
	if want <= c.rcv.cap() {
		return
	}
	if c.e.memPressure() {
		return // as Linux's tcp_rcv_space_adjust under tcp_memory_pressure: keep the window
	}
	c.rcv.grow(min(max(want, 2*c.rcv.cap()), limit))
	c.e.inc(StatRcvBufGrown)
}

// sndBufExpand is send-buffer autotuning after Linux's tcp_sndbuf_expand: when the application waits on
// a full send buffer and the windows would let more than half of it be in flight, the buffer grows to
// twice min(cwnd, SND.WND) (at least doubling), up to Config.SendBufferMax and within MemoryLimit. The
// buffer then covers a round trip of data in flight plus as much queued behind it, as Linux's sndmem of
// 2 * cwnd segments does. It sets the size; the memory follows as Write fills it. Owner only, e.mu and
// c.mu held.
func (c *Conn) sndBufExpand() {
	if !c.sndFull || c.sndLocked || c.snd.cap() == 0 || c.finQueued {
		return
	}
	cfg := &c.e.cfg
	capNow := c.snd.cap()
	wnd := int(min(c.cwnd, c.sndWnd))
	if capNow >= cfg.SendBufferMax || 2*wnd <= capNow {
		return
	}
	if c.e.memPressure() {
		return // Write queues little now anyway (sndMemRoom)
	}
	c.snd.grow(min(max(2*wnd, 2*capNow), cfg.SendBufferMax))
	c.sndFull = false
	c.e.inc(StatSndBufGrown)
}

// noteOOO records that an out-of-order segment starting at seq was kept: its block is reported first
// from now on (sackBlocks).
func (c *Conn) noteOOO(seq Seq) {
	n := min(c.nOOORecent, len(c.oooRecent)-1)
	copy(c.oooRecent[1:n+1], c.oooRecent[:n])
	c.oooRecent[0] = seq
	c.nOOORecent = n + 1
}

// sackBlocks fills b with the SACK blocks of an ACK, RFC 2018 §4: "the first SACK block ... MUST specify
// the contiguous block of data containing the segment which triggered this ACK", and the others SHOULD
// repeat "the most recently reported SACK blocks": the blocks of the most recently received segments,
// newest first, each once. Then, if there is room, the lowest blocks not yet named. Reporting the lowest
// blocks after the first, as before, never repeated a higher block once newer data arrived below it:
// with more holes than blocks (a Linux BBR sender at 5% loss keeps dozens), an ACK lost with the only
// report of a block left the sender to retransmit it - 5534 retransmissions of 64 MiB where a Linux
// receiver drew 2498 (bench tcppath, recv 5%).
func (c *Conn) sackBlocks(b *[proto.TCPMaxSACKBlocks]proto.TCPSACKBlock) int {
	k := 0
	add := func(r seqRange) {
		for i := 0; i < k; i++ {
			if Seq(b[i].Left) == r.left {
				return
			}
		}
		b[k] = proto.TCPSACKBlock{Left: uint32(r.left), Right: uint32(r.right)}
		k++
	}
	for i := 0; i < c.nOOORecent && k < len(b); i++ {
		s := c.oooRecent[i]
		for _, r := range c.ooo {
			if s.InRange(r.left, r.right) {
				add(r)
				break
			}
		}
	}
	for _, r := range c.ooo {
		if k == len(b) {
			break
		}
		add(r)
	}
	return k
}

// xmit sends one segment: n bytes of the send buffer from seq (n may be 0), with flags. It returns false
// when Output had no room; then nothing changed (but RCV.ADV, which may only grow) and the connection is
// queued so that the owner's next Tick tries again.
func (c *Conn) xmit(now int64, seq Seq, n int, flags proto.TCPFlags) bool {
	s := &c.seg
	s.Src, s.Dst = c.id.local, c.id.remote
	f := &s.Fields
	*f = proto.TCPFields{SrcPort: c.id.local.Port(), DstPort: c.id.remote.Port(), Seq: uint32(seq), Flags: flags}
	if flags.Has(proto.TCPFlagACK) {
		f.Ack = uint32(c.rcvNxt)
		f.Window = c.window()
	}
	if c.tsOK {
		f.Options.HasTimestamps = true
		f.Options.TSval = c.tsNow(now)
		f.Options.TSecr = c.tsRecent
	}
	if c.sackOK && len(c.ooo) > 0 && flags.Has(proto.TCPFlagACK) {
		f.Options.NSACK = c.sackBlocks(&f.Options.SACK)
	}
	s.Data[0], s.Data[1] = nil, nil
	if n > 0 {
		// RFC 9293 §3.7.1 / RFC 6691: options shorten the payload so the segment still fits the MSS. A FIN
		// (and PSH) only goes with the last byte.
		if room := int(c.mss) - f.Options.EncodedLen(); n > room {
			n = max(room, 1)
			f.Flags &^= proto.TCPFlagFIN | proto.TCPFlagPSH
		}
		s.Data[0], s.Data[1] = c.snd.peek(int(seq-c.sndUna), n)
	}
	if !c.e.out.Send(s) {
		c.e.inc(StatOutputFull)
		c.e.requeue(c)
		return false
	}
	c.e.inc(StatSegsOut)
	if flags.Has(proto.TCPFlagACK) {
		c.lastAckSent = c.rcvNxt
		c.ackNow, c.ackStretch = false, false
		c.delackAt = 0
		c.rcvSinceAck = 0
	}
	return true
}

// sendSyn sends our SYN (SYN-SENT) or SYN-ACK (SYN-RECEIVED) with the options we offer.
func (c *Conn) sendSyn(now int64) {
	s := &c.seg
	s.Src, s.Dst = c.id.local, c.id.remote
	s.Data[0], s.Data[1] = nil, nil
	f := &s.Fields
	*f = proto.TCPFields{SrcPort: c.id.local.Port(), DstPort: c.id.remote.Port(), Seq: uint32(c.iss),
		Flags: proto.TCPFlagSYN, Window: uint16(min(c.e.cfg.RecvBuffer, 0xffff))}
	cfg := &c.e.cfg
	f.Options.MSS, f.Options.HasMSS = c.e.ourMSS(c.id.remote.Addr()), true
	if c.state == StateSynReceived {
		f.Flags |= proto.TCPFlagACK
		f.Ack = uint32(c.rcvNxt)
		c.lastAckSent = c.rcvNxt
	}
	if c.state == StateSynSent {
		f.Options.HasWindowScale = !cfg.DisableWindowScale
		f.Options.WindowScale = c.rcvScale
		f.Options.SACKPermitted = !cfg.DisableSACK
		f.Options.HasTimestamps = !cfg.DisableTimestamps
		f.Options.TSval = c.tsNow(now)
	} else {
		f.Options.HasWindowScale, f.Options.WindowScale = c.wsOK, c.rcvScale
		f.Options.SACKPermitted = c.sackOK
		if c.tsOK {
			f.Options.HasTimestamps, f.Options.TSval, f.Options.TSecr = true, c.tsNow(now), c.tsRecent
		}
	}
	c.rcvAdv = c.rcvNxt + Seq(f.Window)
	if c.rexmitAt == 0 {
		c.rexmitAt = now + c.rto
	}
	if !c.rttTiming && c.retries == 0 {
		c.rttTiming, c.rttSeq, c.rttStart = true, c.iss+1, now
	}
	if c.e.out.Send(s) {
		c.e.inc(StatSegsOut)
	} else {
		c.e.inc(StatOutputFull) // the SYN timer sends it again
	}
}

// sendAck sends a pure ACK. Its sequence number is SND.MAX, not SND.NXT: after an RTO pulled SND.NXT back
// (go-back-N), an ACK numbered below the peer's RCV.NXT would fail its acceptability test (RFC 9293
// §3.10.7.4) and be dropped - and the peer's ACKs to us likewise, a deadlock Linux avoids the same way
// (its snd_nxt never moves back).
func (c *Conn) sendAck(now int64) { _ = c.xmit(now, c.sndMax, 0, proto.TCPFlagACK) }

// challengeACK is RFC 5961 §3.2/§4.2/§5.2: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>, rate limited first per
// connection (Config.InvalidRateLimit), then by the engine-wide random budget - Linux's
// tcp_send_challenge_ack. The per-connection limit is what keeps one connection from spending the
// budget, so that the budget left says nothing about a particular connection.
func (c *Conn) challengeACK(now int64) {
	if c.invalidLimited(now) {
		c.e.inc(StatACKSkippedChallenge)
		return
	}
	if c.e.challengeOK(now) {
		c.sendAck(now)
	}
}

// oowLimited reports whether the ACK that answers an unacceptable segment (out of window, PAWS, an ACK of
// data not sent) must be left out, and counts it under st: Linux's tcp_oow_rate_limited, at most one per
// Config.InvalidRateLimit per connection, so that two endpoints that disagree on the sequence space (or a
// forger) cannot make an ACK loop at wire speed. Segments that carry data or a FIN are always answered
// ("Data packets without SYNs are not likely part of an ACK loop"): the peer's loss recovery and a
// retransmitted FIN in TIME-WAIT depend on that ACK.
func (c *Conn) oowLimited(now int64, segLen uint32, syn bool, st Stat) bool {
	if segLen > 0 && !syn {
		return false
	}
	if c.invalidLimited(now) {
		c.e.inc(st)
		return true
	}
	return false
}

// invalidLimited is Linux's __tcp_oow_rate_limited: true when this connection answered a segment it did
// not accept less than Config.InvalidRateLimit ago; otherwise it notes now as the time of this answer.
func (c *Conn) invalidLimited(now int64) bool {
	if c.lastInvalidAck != 0 && now-c.lastInvalidAck < int64(c.e.cfg.InvalidRateLimit) {
		return true
	}
	c.lastInvalidAck = now
	return false
}

// sendRST aborts with <SEQ=SND.NXT><CTL=RST> (RFC 9293 §3.10.5, ABORT).
func (c *Conn) sendRST() {
	s := &c.seg
	s.Src, s.Dst = c.id.local, c.id.remote
	s.Data[0], s.Data[1] = nil, nil
	s.Fields = proto.TCPFields{SrcPort: c.id.local.Port(), DstPort: c.id.remote.Port(), Seq: uint32(c.sndMax),
		Ack: uint32(c.rcvNxt), Flags: proto.TCPFlagRST | proto.TCPFlagACK}
	if c.e.out.Send(s) {
		c.e.inc(StatResetsOut)
		c.e.inc(StatSegsOut)
	} else {
		c.e.inc(StatOutputFull)
	}
}

// terminate moves to CLOSED, records why (nil for an orderly end) and wakes the application. The engine
// removes the connection from its table after the current step.
func (c *Conn) terminate(err error) {
	if c.state == StateClosed {
		return
	}
	c.state = StateClosed
	if c.err == nil {
		c.err = err
	}
	c.rexmitAt, c.delackAt, c.waitAt, c.persist, c.rackAt, c.tlpAt, c.kaAt, c.bufAt = 0, 0, 0, false, 0, 0, 0, 0
	c.signalEstablished()
	if !c.doneDone {
		c.doneDone = true
		close(c.doneCh)
	}
	signal(c.rdCh)
	signal(c.wrCh)
}

// unorphan takes c out of the engine's orphan count (it closed or entered TIME-WAIT). Owner only.
func (c *Conn) unorphan() {
	if c.orphan {
		c.orphan = false
		c.e.orphans--
	}
}

// retryLimit is tcp_retries2, or tcp_orphan_retries once the application closed the connection: nobody
// waits for an orphan's data, and Linux gives up on it sooner (tcp_write_timeout, tcp_probe_timer).
func (c *Conn) retryLimit() int {
	if c.appClosed {
		return min(c.e.cfg.OrphanRetries, c.e.cfg.MaxRetries)
	}
	return c.e.cfg.MaxRetries
}

func (c *Conn) nextTimer() int64 {
	t := int64(0)
	for _, x := range [7]int64{c.rexmitAt, c.delackAt, c.waitAt, c.rackAt, c.tlpAt, c.kaAt, c.bufAt} {
		if x != 0 && (t == 0 || x < t) {
			t = x
		}
	}
	return t
}

// appEvents runs what the application asked for since the last Tick.
func (c *Conn) appEvents(now int64) {
	if c.state == StateClosed {
		return
	}
	if c.abortReq {
		// RFC 9293 §3.10.5 ABORT: SYN-SENT just deletes the TCB; other states send <SEQ=SND.NXT><CTL=RST>.
		if c.state != StateSynSent {
			c.sendRST()
		}
		c.terminate(nil)
		return
	}
	if c.needSyn {
		c.needSyn = false
		c.iss = c.e.isn(c.id, now)
		c.sndUna, c.sndNxt, c.sndMax = c.iss, c.iss+1, c.iss+1
		c.recover = c.iss
		c.sendSyn(now)
		return
	}
	if c.shutWrReq && !c.finQueued {
		// RFC 9293 §3.10.4 CLOSE: "queue this until all preceding SENDs have been segmentized, then form a
		// FIN segment and send it. In any case, enter FIN-WAIT-1 state" (CLOSE-WAIT: LAST-ACK).
		switch c.state {
		case StateEstablished:
			c.finQueued = true
			c.state = StateFinWait1
		case StateCloseWait:
			c.finQueued = true
			c.state = StateLastAck
		case StateSynReceived, StateSynSent:
			// Not yet synchronized: nothing sent, just go away (RFC 9293 §3.10.4 SYN-SENT).
			c.terminate(nil)
			return
		}
	}
	if c.appClosed && !c.orphan && c.state != StateClosed && c.state != StateTimeWait {
		// Linux's tcp_close: beyond tcp_max_orphans the newly orphaned connection is reset ("too many
		// orphaned sockets") rather than left to hold its buffers through the close.
		if c.e.orphans >= c.e.cfg.MaxOrphans {
			c.e.inc(StatOrphanOverflow)
			c.sendRST()
			c.terminate(nil)
			return
		}
		c.orphan = true
		c.e.orphans++
	}
	if c.appClosed && c.state == StateFinWait2 && c.waitAt == 0 {
		c.waitAt = now + int64(c.e.cfg.FinWait2Timeout)
	}
	c.output(now)
	if c.rcv.cap() != 0 && (c.state == StateEstablished || c.state == StateFinWait1 || c.state == StateFinWait2) {
		// A Read made room: tell the peer if the window grew enough (receiver SWS avoidance). Only while
		// the peer may still send: after its FIN a window update is noise, and one that reaches a peer
		// which already closed draws a RST that ends our TIME-WAIT.
		adv := int64(int32(c.rcvAdv - c.rcvNxt))
		if int64(c.rcv.free())-adv >= int64(min(c.rcv.cap()/2, int(c.mss))) {
			c.ackNow = true
		}
	}
	if c.ackNow || c.ackStretch { // ackStretch: Output was full when Flush tried
		c.sendAck(now)
	}
}

func (s State) synchronized() bool { return s >= StateEstablished }

// canSendData reports whether the state lets new data or a FIN leave.
func (s State) canSend() bool {
	switch s {
	case StateEstablished, StateCloseWait, StateFinWait1, StateClosing, StateLastAck:
		return true
	}
	return false
}

// output sends what the windows allow: new data, the FIN, retransmissions after SND.NXT was pulled back.
// RFC 9293 §3.8.6.2.1 (sender SWS avoidance) and §3.7.4 (Nagle): a segment shorter than the MSS leaves
// only if it is all the data there is and nothing is in flight (or NoDelay, or the FIN follows), or if it
// is at least half the largest window the peer offered.
func (c *Conn) output(now int64) {
	if !c.state.canSend() {
		return
	}
	smss := int(c.smss())
	for i := 0; i < 1<<16; i++ {
		dataEnd := c.sndUna + Seq(c.snd.n)
		n := 0
		if c.sndNxt.LessThan(dataEnd) {
			avail := int(dataEnd - c.sndNxt)
			wnd := min(c.sndWnd, c.cwnd)
			inflight := uint32(c.sndNxt - c.sndUna)
			usable := 0
			if inflight < wnd {
				usable = int(wnd - inflight)
			}
			n = min(avail, usable, smss)
			if n == 0 {
				break
			}
			if c.plpmtud.on && c.sendMTUProbe(now, avail, usable) {
				continue
			}
			// Retransmissions (below SND.MAX) go as they are: holding them back for SWS or Nagle could
			// leave a connection whose window update was lost with nothing ever sent again.
			if n < smss && !c.sndNxt.LessThan(c.sndMax) {
				if n == avail {
					if !c.noDelay && inflight > 0 && !c.finQueued {
						break // Nagle: wait for the ACK of what is in flight
					}
				} else if uint32(n) < c.maxSndWnd/2 {
					break // SWS: the persist timer overrides if nothing is in flight
				}
			}
		} else if !(c.finQueued && c.sndNxt == dataEnd) {
			break
		}
		flags := proto.TCPFlagACK
		fin := c.finQueued && c.sndNxt+Seq(n) == dataEnd
		if fin {
			flags |= proto.TCPFlagFIN
		}
		if n > 0 && c.sndNxt+Seq(n) == dataEnd {
			flags |= proto.TCPFlagPSH
		}
		if !c.sendData(now, c.sndNxt, n, flags) {
			return // Output is full: the next Tick continues
		}
	}
	// Nothing in flight but data waiting: the persist timer probes a zero window (RFC 9293 §3.8.6.1) and
	// overrides sender SWS avoidance.
	dataEnd := c.sndUna + Seq(c.snd.n)
	if c.sndNxt.LessThan(dataEnd) && c.sndNxt == c.sndUna && c.rexmitAt == 0 {
		c.armPersist(now)
	}
}

// armPersist sets the persist timer: the RTO backed off by the probes sent since the window closed, at
// most MaxRTO, and no later than the probeTimeout of the probes gone unanswered.
func (c *Conn) armPersist(now int64) {
	c.persist = true
	c.rexmitAt = now + min(c.rto<<min(c.persistN, 16), int64(c.e.cfg.MaxRTO))
	if c.probesOut > 0 {
		c.rexmitAt = min(c.rexmitAt, c.probeStart+c.e.probeTimeout(c.retryLimit()))
	}
}

// probeTimeout is how long zero-window probes may go unanswered before the connection ends: the time
// n+1 timeouts take backed off from MinRTO up to MaxRTO - Linux's tcp_model_timeout, which turns
// tcp_retries2 into a time the same way. Counting probes alone was not enough: a window that stayed shut
// while the peer answered had backed the probes off to MaxRTO, and MaxRetries more of them took 16
// minutes. At the defaults (200 ms, 60 s, 15) it is 102.2 s + 7 * 60 s = 522.2 s, so a connection whose
// peer vanished behind a closed window ends at most MaxRTO + 522.2 s (9 min 42 s) after it vanished, an
// orphan (OrphanRetries 8) after at most 60 s + 102.2 s.
func (e *Engine) probeTimeout(n int) int64 {
	t, rto := int64(0), int64(e.cfg.MinRTO)
	for range n + 1 {
		t += rto
		rto = min(2*rto, int64(e.cfg.MaxRTO))
	}
	return t
}

// noteProbe counts a zero-window probe (or an RTO that found the window closed) that waits for an answer.
func (c *Conn) noteProbe(now int64) {
	if c.probesOut == 0 {
		c.probeStart = now
	}
	c.probesOut++
}

// sendData transmits [seq, seq+n) (+FIN) and advances SND.NXT, SND.MAX and the timers; false when Output
// was full.
func (c *Conn) sendData(now int64, seq Seq, n int, flags proto.TCPFlags) bool {
	if !c.xmit(now, seq, n, flags) {
		return false
	}
	n = c.seg.PayloadLen()
	flags = c.seg.Fields.Flags
	if c.inRecovery {
		c.prrOut += uint32(n)
	}
	if seq.LessThan(c.sndMax) {
		c.e.inc(StatRetransmits)
		if c.rttTiming && c.rttSeq.GreaterThan(seq) {
			c.rttTiming = false // Karn's algorithm: no RTT sample from a retransmitted segment
		}
	} else if !c.rttTiming && n > 0 {
		c.rttTiming, c.rttSeq, c.rttStart = true, seq+Seq(n), now
	}
	end := seq + Seq(n)
	if flags.Has(proto.TCPFlagFIN) && seq+Seq(n) == c.sndUna+Seq(c.snd.n) {
		end++
	}
	if c.sndNxt.LessThan(end) {
		c.sndNxt = end
	}
	if c.sndMax.LessThan(end) {
		c.sndMax = end
	}
	if c.persist {
		c.persist, c.rexmitAt = false, 0
	}
	if c.rexmitAt == 0 && c.sndUna != c.sndMax {
		c.rexmitAt = now + c.rto // RFC 6298 §5.1
	}
	if c.sackOK && !seq.LessThan(c.sndMax-Seq(n)) {
		c.armTLP(now) // RFC 8985 §7.2: restart the probe timer after new data
	}
	return true
}

// retransmitAt resends one segment at seq without moving SND.NXT (fast retransmit, partial ACKs, SACK
// holes). It returns the sequence space sent (payload and FIN), 0 when nothing left.
func (c *Conn) retransmitAt(now int64, seq Seq, limit int) int {
	dataEnd := c.sndUna + Seq(c.snd.n)
	n := 0
	if seq.LessThan(dataEnd) {
		n = min(int(dataEnd-seq), int(c.smss()), limit)
	}
	flags := proto.TCPFlagACK
	if c.finQueued && seq+Seq(n) == dataEnd && c.sndMax.GreaterThan(dataEnd) {
		flags |= proto.TCPFlagFIN
	}
	if n == 0 && !flags.Has(proto.TCPFlagFIN) {
		return 0
	}
	if !c.xmit(now, seq, n, flags) {
		return 0 // lost locally: the RTO or a later duplicate ACK covers it
	}
	c.e.inc(StatRetransmits)
	if c.rttTiming && c.rttSeq.GreaterThan(seq) {
		c.rttTiming = false
	}
	sent := c.seg.PayloadLen()
	if c.inRecovery {
		c.prrOut += uint32(sent)
	}
	if c.seg.Fields.Flags.Has(proto.TCPFlagFIN) {
		sent++
	}
	return sent
}

// rttSample updates SRTT, RTTVAR and RTO, RFC 6298 §2.2-2.4 (K=4, alpha=1/8, beta=1/4, G=1 ms).
func (c *Conn) rttSample(r int64) {
	if r <= 0 {
		r = 1000 // below the clock granularity
	}
	if !c.hasRTT {
		c.srtt, c.rttvar, c.hasRTT = r, r/2, true
	} else {
		d := c.srtt - r
		if d < 0 {
			d = -d
		}
		c.rttvar = (3*c.rttvar + d) / 4
		c.srtt = (7*c.srtt + r) / 8
	}
	rto := c.srtt + max(1e6, 4*c.rttvar)
	c.rto = min(max(rto, int64(c.e.cfg.MinRTO)), int64(c.e.cfg.MaxRTO))
}

// timers runs the timers that are due.
func (c *Conn) timers(now int64) {
	if c.waitAt != 0 && now >= c.waitAt {
		c.waitAt = 0
		switch c.state {
		case StateTimeWait:
			c.e.inc(StatTimeWaitExpired)
			c.terminate(nil)
			return
		case StateFinWait2:
			c.terminate(nil)
			return
		}
	}
	if c.rexmitAt != 0 && now >= c.rexmitAt {
		c.rexmitAt = 0
		if c.persist {
			c.persistFire(now)
		} else {
			c.rtoFire(now)
		}
		if c.state == StateClosed {
			return
		}
	}
	if c.rackAt != 0 && now >= c.rackAt {
		c.rackAt = 0
		c.rackTimeout(now)
	}
	if c.tlpAt != 0 && now >= c.tlpAt {
		c.tlpAt = 0
		c.tlpFire(now)
	}
	if c.delackAt != 0 && now >= c.delackAt {
		c.delackAt = 0
		c.sendAck(now)
	}
	if c.kaAt != 0 && now >= c.kaAt {
		c.kaAt = 0
		c.keepAliveFire(now)
	}
	if c.bufAt != 0 && now >= c.bufAt {
		c.bufAt = 0
		s, r := c.snd.fit(), c.rcv.fit()
		if s || r {
			c.armBufCheck(now)
		}
	}
}

// bufIdleInterval is how often the owner looks for ring memory to give back (ring.fit): a ring not
// written for a whole interval gives back its buffer if it is empty, or what it does not need. Long
// against a round trip, so that a flow moving data keeps its buffer (no allocation or copy in the steady
// state), short enough that memory held by idle connections - issue #12's attack - returns within seconds.
const bufIdleInterval = int64(1e9)

// armBufCheck schedules the next idle check of c's rings. The deadlines fall on multiples of the interval,
// so that the checks of all connections share the engine's timer pass instead of each costing one.
func (c *Conn) armBufCheck(now int64) {
	c.bufAt = (now/bufIdleInterval + 1) * bufIdleInterval
}

// rtoFire is RFC 6298 §5.4-5.6 (retransmit the earliest unacknowledged segment, back off the timer) and
// RFC 5681 §3.1 eq. 4 (ssthresh = max(FlightSize/2, 2*SMSS), cwnd = 1 SMSS).
func (c *Conn) rtoFire(now int64) {
	c.retries++
	c.e.inc(StatTimeouts)
	limit := c.retryLimit()
	if c.state == StateSynSent || c.state == StateSynReceived {
		limit = c.e.cfg.SynRetries
	}
	if c.retries > limit {
		c.e.inc(StatConnTimeouts)
		if c.state.synchronized() {
			c.sendRST()
		}
		c.terminate(syscall.ETIMEDOUT)
		return
	}
	c.rto = min(c.rto*2, int64(c.e.cfg.MaxRTO))
	c.rttTiming = false
	switch c.state {
	case StateSynSent, StateSynReceived:
		c.e.inc(StatRetransmits)
		c.sendSyn(now)
		return
	}
	if c.sndUna == c.sndMax {
		return
	}
	if c.plpmtud.probing {
		c.mtuProbeLost(now)
	}
	c.blackHole()
	smss := c.smss()
	if c.retries == 1 {
		// RFC 5681 §3.1: ssthresh is set at the first RTO only; "the value of ssthresh is held constant"
		// while the same data times out again.
		c.ccCongestion(now)
	}
	c.ccTimeout()
	c.cwnd, c.bytesAcked = smss, 0
	if c.sackOK && c.retries == 1 && c.sndWnd > 0 && c.state.canSend() {
		c.rexmitAt = now + c.rto
		c.rtoRecovery(now)
		return
	}
	c.sndNxt = c.sndUna
	c.recover = c.sndMax // RFC 6582 §3.2 step 4
	c.inRecovery = false
	c.dupAcks = 0
	// RFC 2018 §8: "after a retransmit timeout the data sender SHOULD turn off all of the SACKed bits" -
	// here from the second RTO of the same data on (rtoRecovery keeps them after the first).
	c.nsacked = 0
	c.nrexmits, c.rackAt, c.rackPendAt, c.rackEdge, c.tlpAt = 0, 0, 0, c.sndUna, 0
	c.rexmitAt = now + c.rto
	c.output(now)
	if c.sndNxt == c.sndUna && c.sndWnd == 0 {
		// The window is closed: nothing could be retransmitted. Probe it instead of counting RTOs toward
		// MaxRetries, which would end a connection whose receiver is merely slow (RFC 9293 §3.8.6.1); the
		// RTO counts as an unanswered probe instead, so a receiver that is gone is still found.
		c.persist = true
		c.retries = 0
		c.noteProbe(now)
	}
	if c.rexmitAt == 0 {
		c.rexmitAt = now + c.rto
	}
}

// persistFire probes a zero window with one byte, or sends what a small window allows (RFC 9293 §3.8.6.1).
// The probe does not move SND.NXT: if the peer takes the byte its ACK goes past SND.NXT, up to SND.MAX.
func (c *Conn) persistFire(now int64) {
	c.persist = false
	dataEnd := c.sndUna + Seq(c.snd.n)
	if !c.sndNxt.LessThan(dataEnd) || !c.state.canSend() {
		return
	}
	inflight := uint32(c.sndNxt - c.sndUna)
	if c.sndWnd > inflight {
		n := min(int(c.sndWnd-inflight), int(dataEnd-c.sndNxt), int(c.smss()))
		c.sendData(now, c.sndNxt, n, proto.TCPFlagACK|proto.TCPFlagPSH)
		return
	}
	// RFC 9293 §3.8.6.1: the receiver may keep its window closed indefinitely as long as it answers the
	// probes - but a receiver that stopped answering is gone: like Linux's tcp_probe_timer, end the
	// connection after MaxRetries unanswered probes (OrphanRetries for an orphan, which also ends after
	// OrphanRetries probes however they were answered: nobody waits for its data), or once they went
	// unanswered for probeTimeout, whichever comes first.
	limit := c.retryLimit()
	if c.probesOut >= limit || c.probesOut > 0 && now-c.probeStart >= c.e.probeTimeout(limit) ||
		c.appClosed && c.persistN >= c.e.cfg.OrphanRetries {
		c.e.inc(StatPersistTimeouts)
		c.e.inc(StatConnTimeouts)
		c.sendRST()
		c.terminate(syscall.ETIMEDOUT)
		return
	}
	c.e.inc(StatZeroWindowProbes)
	_ = c.xmit(now, c.sndNxt, 1, proto.TCPFlagACK) // if Output is full, the next probe goes later
	c.probeEnd = c.sndNxt + 1
	c.persistN++
	c.noteProbe(now)
	c.armPersist(now)
}
