package tcp

import (
	"math"
	"net/netip"
	"testing"
	"time"
)

// ackRounds feeds c's congestion control the ACKs of rounds of a full window each, one ACK per two segments,
// rtt apart, for d of fake time, and returns the time reached. Not in recovery, no loss.
func ackRounds(c *Conn, now int64, rtt time.Duration, d time.Duration) int64 {
	end := now + int64(d)
	smss := c.smss()
	for now < end {
		w := c.cwnd
		c.sndNxt += Seq(w)
		c.sndMax = c.sndNxt
		for acked := uint32(0); acked < w; acked += 2 * smss {
			n := min(2*smss, w-acked)
			c.sndUna += Seq(n)
			c.ccAck(now, n, int64(rtt))
		}
		now += int64(rtt)
	}
	return now
}

// cubicConn returns a connection in congestion avoidance right after a loss at cwnd = flight = 100 segments.
func cubicConn(t *testing.T, cc CongestionControl, rtt time.Duration) (*Conn, int64) {
	_, a, _ := newDirect(t, Config{CongestionControl: cc})
	smss := a.smss()
	a.srtt, a.hasRTT = int64(rtt), true
	a.cwnd = 100 * smss
	a.sndMax = a.sndUna + Seq(100*smss)
	a.sndNxt = a.sndMax
	now := int64(time.Hour)
	a.ccCongestion(now)
	a.cwnd = a.ssthresh // what recovery ends with (RFC 6937)
	a.sndUna = a.sndMax
	return a, now
}

// TestCUBICWindowCurve: after a loss at W_max = 100 segments, CUBIC (RFC 9438) sets ssthresh to 0.7 of the
// flight, then regrows along W(t) = C(t-K)^3 + W_max: back at W_max after K = cbrt(W_max*(1-β)/C) seconds
// (4.2 s), fast before (concave), slow near W_max, fast again beyond it (convex). Reno halves and adds one
// segment per RTT. 100 ms RTT, where the cubic function is above the Reno-friendly estimate.
func TestCUBICWindowCurve(t *testing.T) {
	rtt := 100 * time.Millisecond
	a, now := cubicConn(t, CUBIC, rtt)
	smss := a.smss()
	if a.ssthresh != 70*smss {
		t.Fatalf("ssthresh %d segments after a loss at 100, want 70 (β = 0.7)", a.ssthresh/smss)
	}
	k := math.Cbrt(100 * (1 - cubicBeta) / cubicC)
	seg := func() float64 { return float64(a.cwnd) / float64(smss) }
	now = ackRounds(a, now, rtt, time.Duration(k/2*1e9))
	half := seg()
	now = ackRounds(a, now, rtt, time.Duration(k/2*1e9))
	atK := seg()
	ackRounds(a, now, rtt, time.Duration(k*1e9))
	after := seg()
	// W(K/2) = 100 - 0.4*(K/2)^3 = 96.25: most of the regrowth happens in the first half.
	if half < 90 || half > 100 || atK < 97 || atK > 106 || after < 120 {
		t.Fatalf("cwnd %.1f segments at K/2, %.1f at K = %.1f s, %.1f at 2K; want about 96, 100, 130", half, atK, k, after)
	}
	if half-70 < 3*(atK-half) {
		t.Errorf("not concave: +%.1f segments in the first half, +%.1f in the second", half-70, atK-half)
	}

	r, now := cubicConn(t, Reno, rtt)
	if r.ssthresh != 50*smss {
		t.Fatalf("Reno ssthresh %d segments, want 50", r.ssthresh/smss)
	}
	ackRounds(r, now, rtt, time.Duration(k*1e9))
	if got := float64(r.cwnd) / float64(smss); got < 88 || got > 95 {
		t.Errorf("Reno cwnd %.1f segments after %.1f s (42 RTTs), want 50 + 42", got, k)
	}
}

// TestCUBICRenoFriendly: at a 1 ms RTT the cubic function barely moves in a second, and CUBIC follows the
// Reno-friendly estimate (RFC 9438 §4.3): α = 3(1-β)/(1+β) segments per RTT up to the window before the
// loss, then one per RTT - at least as fast as Reno.
func TestCUBICRenoFriendly(t *testing.T) {
	rtt := time.Millisecond
	a, now := cubicConn(t, CUBIC, rtt)
	smss := a.smss()
	ackRounds(a, now, rtt, 500*time.Millisecond)
	// 30/α = 57 RTTs to 100, then 443 more at one per RTT: 543.
	if got := a.cwnd / smss; got < 500 || got > 560 {
		t.Fatalf("cwnd %d segments after 500 RTTs, want about 543 (W_est)", got)
	}
}

// TestHyStartPlusPlus: slow start with RTT samples that stay flat grows as slow start; when the least RTT of
// a round rises by more than RttThresh over the previous round's, HyStart++ (RFC 9406) enters Conservative
// Slow Start (a quarter of the growth), and after CSS_ROUNDS rounds ends slow start with ssthresh = cwnd -
// before any loss. A falling RTT during CSS returns to slow start.
func TestHyStartPlusPlus(t *testing.T) {
	_, a, _ := newDirect(t, Config{})
	smss := a.smss()
	if a.cc.hsPhase != hyStartSlowStart || a.ssthresh != initialSSThresh {
		t.Fatalf("HyStart++ not running at the start: phase %d ssthresh %d", a.cc.hsPhase, a.ssthresh)
	}
	now := int64(time.Hour)
	round := func(rtt time.Duration) uint32 {
		before := a.cwnd
		now = ackRounds(a, now, rtt, rtt) // one round
		return a.cwnd - before
	}
	for range 3 {
		w := a.cwnd
		if g := round(20 * time.Millisecond); g != w {
			t.Fatalf("slow start grew %d for a window of %d, want doubling", g, w)
		}
	}
	// RttThresh = max(4 ms, min(20/8 ms, 16 ms)) = 4 ms: 25 ms is a rise; the round that sees it switches
	// after its eighth sample.
	round(25 * time.Millisecond)
	if a.cc.hsPhase != hyStartConservSS || a.e.Stat(StatHyStartCSS) != 1 {
		t.Fatalf("phase %d after an RTT rise of 5 ms, want CSS", a.cc.hsPhase)
	}
	w := a.cwnd
	if g := round(25 * time.Millisecond); g > w/4+smss || g < w/4-smss {
		t.Fatalf("CSS grew %d for a window of %d, want a quarter", g, w)
	}
	// The RTT falls below the CSS baseline: slow start was left spuriously, resume it.
	round(15 * time.Millisecond)
	if a.cc.hsPhase != hyStartSlowStart {
		t.Fatalf("phase %d after the RTT fell below the baseline, want slow start", a.cc.hsPhase)
	}
	round(15 * time.Millisecond)
	round(25 * time.Millisecond) // rise again: CSS
	for range hsCSSRounds + 1 {
		round(25 * time.Millisecond)
	}
	// ssthresh = cwnd when the fifth CSS round ended; the rest of that round's ACKs grew cwnd a little in
	// congestion avoidance.
	if a.cc.hsPhase != hyStartOff || a.ssthresh > a.cwnd || a.cwnd-a.ssthresh > a.cwnd/16 || a.e.Stat(StatHyStartExits) != 1 {
		t.Fatalf("after %d CSS rounds: phase %d, ssthresh %d cwnd %d; want slow start ended with ssthresh = cwnd",
			hsCSSRounds, a.cc.hsPhase, a.ssthresh, a.cwnd)
	}
	// Then congestion avoidance, CUBIC with K = 0 and W_max = cwnd (RFC 9438 §4.10): slow growth.
	w = a.cwnd
	if g := round(25 * time.Millisecond); g == 0 || g > w/8 {
		t.Errorf("first CA round after HyStart++ grew %d of %d", g, w)
	}
}

// TestCongestionControlSelection: the engine default, a listener's choice for the connections it
// accepts, and a dialled connection's own choice.
func TestCongestionControlSelection(t *testing.T) {
	if err := (&Config{CongestionControl: 9}).Validate(); err == nil {
		t.Error("Validate accepts congestion control 9")
	}
	w := newWire(t, Config{}, 40)
	l, _ := w.eng[1].Listen(netip.AddrPortFrom(addrB, 80))
	if err := l.SetCongestionControl(Reno); err != nil {
		t.Fatal(err)
	}
	if l.SetCongestionControl(numCC) == nil {
		t.Error("listener accepts an unknown congestion control")
	}
	a, _ := w.eng[0].Connect(netip.AddrPortFrom(addrA, 0), netip.AddrPortFrom(addrB, 80))
	if a.CongestionControl() != CUBIC {
		t.Fatalf("dialled connection starts with %v, want the default cubic", a.CongestionControl())
	}
	a.SetCongestionControl(Reno)
	var b *Conn
	w.run(5*time.Second, nil, func() bool { b = accepted(l); return b != nil })
	if b == nil || b.CongestionControl() != Reno || a.CongestionControl() != Reno {
		t.Fatalf("accepted %v; want reno on both", b)
	}
	transfer(t, w, a, b, 1<<20, 1<<20)
}

// TestCCNoAllocs: the per-ACK congestion control of both algorithms, in slow start (HyStart++) and
// congestion avoidance, allocates nothing.
func TestCCNoAllocs(t *testing.T) {
	for _, cc := range []CongestionControl{CUBIC, Reno} {
		a, now := cubicConn(t, cc, 10*time.Millisecond)
		if n := testing.AllocsPerRun(100, func() { now = ackRounds(a, now, 10*time.Millisecond, 10*time.Millisecond) }); n != 0 {
			t.Errorf("%v congestion avoidance: %v allocations per round", cc, n)
		}
		_, b, _ := newDirect(t, Config{CongestionControl: cc})
		if n := testing.AllocsPerRun(20, func() { now = ackRounds(b, now, 10*time.Millisecond, 10*time.Millisecond) }); n != 0 {
			t.Errorf("%v slow start: %v allocations per round", cc, n)
		}
	}
}
