package tcp

import "math"

// Congestion control: what happens to cwnd and ssthresh on an ACK of new data outside loss recovery and on
// a congestion event. Loss detection and recovery (RFC 6675 with RFC 6937 PRR, NewReno, RTO) are shared;
// the algorithm only decides the growth and the reduction, as a Linux tcp_congestion_ops does.

// CongestionControl names a congestion control algorithm (Config.CongestionControl,
// Listener.SetCongestionControl, Conn.SetCongestionControl).
type CongestionControl uint8

const (
	// CUBIC is RFC 9438, Linux's default: a window that grows as a cubic function of the time since the
	// last congestion event, multiplicative decrease by 0.7, and a Reno-friendly region that keeps it at
	// least as fast as Reno where Reno would be faster (short RTTs, small windows).
	CUBIC CongestionControl = iota
	// Reno is RFC 5681 congestion avoidance (one SMSS per window of acknowledged data, RFC 3465 byte
	// counting) and halving on a congestion event.
	Reno
	numCC
)

func (cc CongestionControl) String() string {
	switch cc {
	case CUBIC:
		return "cubic"
	case Reno:
		return "reno"
	}
	return "unknown"
}

// RFC 9438 §5: "C SHOULD be set to 0.4", "β_cubic SHOULD be set to 0.7"; §4.3: α_cubic = 3(1-β)/(1+β).
const (
	cubicC     = 0.4
	cubicBeta  = 0.7
	cubicAlpha = 3 * (1 - cubicBeta) / (1 + cubicBeta)
)

// HyStart++ constants, RFC 9406 §4.3 ("It is RECOMMENDED that a HyStart++ implementation use the following
// constants"). hsL is the non-paced L: this engine does not pace.
const (
	hsMinRTTThresh   = int64(4e6)  // MIN_RTT_THRESH, 4 ms
	hsMaxRTTThresh   = int64(16e6) // MAX_RTT_THRESH, 16 ms
	hsMinRTTDivisor  = 8
	hsNRTTSample     = 8
	hsCSSGrowthDiv   = 4
	hsCSSRounds      = 5
	hsL              = 8
	hsNone           = int64(math.MaxInt64) // "infinity"
	initialSSThresh  = 1 << 30
	maxCwnd          = 1 << 30
	hyStartOff       = 0 // hsPhase: not (or no longer) running
	hyStartSlowStart = 1
	hyStartConservSS = 2
)

// ccState is the per-connection state of the congestion control algorithms.
type ccState struct {
	algo CongestionControl

	// CUBIC, RFC 9438 §4 (windows in bytes, K in seconds). epochStart is the start of the current
	// congestion avoidance stage (0: not started); wMax the window before the last reduction (0: none, or
	// reset by an RTO - then the stage starts with K = 0 and W_max = cwnd, §4.8 and §4.10); cwndPrior the
	// cwnd when ssthresh was last set, where α_cubic becomes 1; wEst the Reno-friendly estimate.
	epochStart int64
	wMax       float64
	k          float64
	wEst       float64
	cwndPrior  uint32

	// HyStart++, RFC 9406 §4.2, during the initial slow start only (§4.3).
	hsPhase       uint8
	hsWindowEnd   Seq
	hsRoundOpen   bool
	hsLastMin     int64
	hsCurMin      int64
	hsSamples     int
	hsCSSBaseline int64
	hsCSSRounds   int
}

// initCC sets the initial window, RFC 5681 §3.1 as updated by RFC 6928 (IW = min(10*MSS, max(2*MSS, 14600))),
// an "arbitrarily high" ssthresh, and starts HyStart++ for the first slow start.
func (c *Conn) initCC() {
	m := c.smss()
	c.cwnd = min(10*m, max(2*m, 14600))
	c.ssthresh = initialSSThresh
	algo := c.cc.algo
	c.cc = ccState{algo: algo, hsLastMin: hsNone, hsCurMin: hsNone, hsCSSBaseline: hsNone}
	if !c.e.cfg.DisableHyStart {
		c.cc.hsPhase = hyStartSlowStart
	}
}

// ccAck grows cwnd for acked newly acknowledged bytes outside loss recovery; rtt is the RTT sample this
// ACK gave (0: none).
func (c *Conn) ccAck(now int64, acked uint32, rtt int64) {
	smss := c.smss()
	if c.cwnd < c.ssthresh {
		if c.cc.hsPhase != hyStartOff {
			c.hyStart(now, acked, rtt)
		} else {
			c.cwnd += min(acked, 2*smss) // slow start, RFC 3465 §2.2 with L = 2*SMSS
		}
	} else if c.cc.algo == Reno {
		// Congestion avoidance, RFC 3465 §2.1: one SMSS per cwnd of acknowledged data (RFC 5681 §3.1
		// prefers this to eq. 3's per-ACK approximation).
		c.bytesAcked += acked
		if c.bytesAcked >= c.cwnd {
			c.bytesAcked -= c.cwnd
			c.cwnd += smss
		}
	} else {
		c.cubicAvoid(now, acked)
	}
	c.cwnd = min(c.cwnd, maxCwnd)
}

// hyStart is slow start under HyStart++, RFC 9406 §4.2: rounds end when the ACK passes the SND.NXT of the
// round's start; a round whose least RTT is above the previous round's by more than RttThresh (a queue
// building up) moves to Conservative Slow Start, which grows by a quarter of slow start; CSS_ROUNDS rounds
// of CSS end slow start (ssthresh = cwnd), an RTT back below the baseline returns to slow start.
func (c *Conn) hyStart(now int64, acked uint32, rtt int64) {
	h := &c.cc
	if !h.hsRoundOpen || c.sndUna.GreaterEq(h.hsWindowEnd) {
		// "lastRoundMinRTT = currentRoundMinRTT; currentRoundMinRTT = infinity; rttSampleCount = 0"
		if h.hsRoundOpen && h.hsPhase == hyStartConservSS {
			h.hsCSSRounds++
			if h.hsCSSRounds >= hsCSSRounds {
				// "If CSS_ROUNDS rounds are complete, enter congestion avoidance by setting the ssthresh
				// to the current cwnd."
				c.ssthresh = max(c.cwnd, 2*c.smss())
				c.cc.cwndPrior = c.cwnd
				h.hsPhase = hyStartOff
				c.e.inc(StatHyStartExits)
				return
			}
		}
		h.hsRoundOpen, h.hsWindowEnd = true, c.sndNxt
		h.hsLastMin, h.hsCurMin, h.hsSamples = h.hsCurMin, hsNone, 0
	}
	inc := min(acked, hsL*c.smss())
	if h.hsPhase == hyStartConservSS {
		inc /= hsCSSGrowthDiv
	}
	c.cwnd += inc
	if rtt <= 0 {
		return
	}
	h.hsCurMin = min(h.hsCurMin, rtt)
	h.hsSamples++
	if h.hsSamples < hsNRTTSample || h.hsCurMin == hsNone {
		return
	}
	switch h.hsPhase {
	case hyStartSlowStart:
		if h.hsLastMin == hsNone {
			return
		}
		thresh := max(hsMinRTTThresh, min(h.hsLastMin/hsMinRTTDivisor, hsMaxRTTThresh))
		if h.hsCurMin >= h.hsLastMin+thresh {
			h.hsCSSBaseline = h.hsCurMin
			h.hsPhase, h.hsCSSRounds = hyStartConservSS, 0
			c.e.inc(StatHyStartCSS)
		}
	case hyStartConservSS:
		if h.hsCurMin < h.hsCSSBaseline {
			// "the previous exit from slow start was spurious": resume slow start.
			h.hsCSSBaseline = hsNone
			h.hsPhase = hyStartSlowStart
		}
	}
}

// cubicAvoid is CUBIC's congestion avoidance, RFC 9438 §4.2-4.5, in bytes: W_cubic(t) = C*(t-K)^3 + W_max
// segments, the target W_cubic(t+RTT) kept within [cwnd, 1.5*cwnd], and the Reno-friendly estimate W_est
// (§4.3), which wins where it is larger.
func (c *Conn) cubicAvoid(now int64, acked uint32) {
	h := &c.cc
	smss := float64(c.smss())
	cwnd := float64(c.cwnd)
	if h.epochStart == 0 {
		// A congestion avoidance stage begins. K = cubic_root((W_max - cwnd_epoch)/C) (§4.2 eq. 2); with no
		// W_max above cwnd (after an RTO, or slow start ended by HyStart++ without a loss) "K is set to 0,
		// and W_max is set to the congestion window size at the beginning of the current congestion
		// avoidance stage" (§4.8, §4.10), and W_est starts at cwnd.
		h.epochStart = now
		if h.wMax > cwnd {
			h.k = math.Cbrt((h.wMax - cwnd) / smss / cubicC)
		} else {
			h.wMax, h.k = cwnd, 0
		}
		h.wEst = cwnd
	}
	t := float64(now-h.epochStart) / 1e9
	rtt := float64(c.srtt) / 1e9
	wCubic := func(t float64) float64 { d := t - h.k; return cubicC*d*d*d*smss + h.wMax }
	// §4.3: W_est += α_cubic * segments_acked / cwnd, with α_cubic = 1 once W_est reached cwnd_prior.
	alpha := cubicAlpha
	if h.wEst >= float64(h.cwndPrior) {
		alpha = 1
	}
	h.wEst += alpha * float64(acked) * smss / cwnd
	if wCubic(t) < h.wEst {
		// §4.3 Reno-friendly region: "cwnd SHOULD be set to W_est".
		c.cwnd = uint32(min(h.wEst, maxCwnd))
		return
	}
	// §4.4/§4.5 concave and convex regions: cwnd grows by (target - cwnd)/cwnd per acknowledged segment.
	target := min(max(wCubic(t+rtt), cwnd), 1.5*cwnd)
	c.cwnd = uint32(min(cwnd+(target-cwnd)*float64(acked)/cwnd, maxCwnd))
}

// ccCongestion is the reduction at a congestion event (fast retransmit, RACK or SACK loss, the first RTO):
// ssthresh = max(FlightSize/2, 2*SMSS) for Reno (RFC 5681 eq. 4), FlightSize*β_cubic for CUBIC (RFC 9438
// §4.6) with fast convergence (§4.7). It ends HyStart++ (RFC 9406 §4.2: a loss during slow start or CSS
// ends it). The caller sets cwnd (PRR, NewReno inflation, or one segment after an RTO).
func (c *Conn) ccCongestion(now int64) {
	smss := c.smss()
	flight := uint32(c.sndMax - c.sndUna)
	h := &c.cc
	h.hsPhase = hyStartOff
	c.bytesAcked = 0
	if h.algo == Reno {
		c.ssthresh = max(flight/2, 2*smss)
		return
	}
	cwnd := float64(c.cwnd)
	// §4.7: "if cwnd < W_max and fast convergence is enabled, further reduce W_max".
	if cwnd < h.wMax {
		h.wMax = cwnd * (1 + cubicBeta) / 2
	} else {
		h.wMax = cwnd
	}
	h.cwndPrior = c.cwnd
	h.epochStart = 0
	c.ssthresh = max(uint32(float64(flight)*cubicBeta), 2*smss)
}

// ccTimeout follows ccCongestion on an RTO: RFC 9438 §4.8, the next congestion avoidance stage starts with
// K = 0 and W_max = its starting cwnd.
func (c *Conn) ccTimeout() {
	c.cc.wMax, c.cc.epochStart = 0, 0
}

// SetCongestionControl switches the connection's congestion control (like Linux's TCP_CONGESTION socket
// option): for a dialled connection call it right after Engine.Connect; on a live connection the new
// algorithm starts from the current cwnd and ssthresh.
func (c *Conn) SetCongestionControl(cc CongestionControl) error {
	if cc >= numCC {
		return errUnknownCC
	}
	c.mu.Lock()
	if c.cc.algo != cc {
		c.cc.algo = cc
		c.cc.epochStart, c.cc.wMax = 0, 0
		c.bytesAcked = 0
	}
	c.mu.Unlock()
	return nil
}

// CongestionControl returns the connection's congestion control algorithm.
func (c *Conn) CongestionControl() CongestionControl {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cc.algo
}
