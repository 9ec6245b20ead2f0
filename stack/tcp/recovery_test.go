package tcp

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/proto"
)

// TestZeroWindowProbe fills the receiver's buffer while its application does not read: the window closes,
// the sender probes it with backing-off probes, and when the application reads the transfer completes.
func TestZeroWindowProbe(t *testing.T) {
	w := newWire(t, Config{RecvBuffer: 16 << 10, SendBuffer: 64 << 10}, 20)
	a, b := w.pair()
	s := newStream(5, 100000)
	var probes []int64
	w.onSend = func(from int, tc proto.TCP) {
		if from == 0 && len(tc.Payload()) == 1 && a.sndWnd == 0 {
			probes = append(probes, w.now)
		}
	}
	w.run(30*time.Second, func() { pumpWrite(a, s) }, nil)
	if b.rcv.n != b.rcv.cap() || a.sndWnd != 0 {
		t.Fatalf("window did not close: receiver holds %d of %d, sender sees window %d", b.rcv.n, b.rcv.cap(), a.sndWnd)
	}
	if len(probes) < 3 || w.eng[0].Stat(StatZeroWindowProbes) < 3 {
		t.Fatalf("%d probes in 30 s", len(probes))
	}
	for i := 2; i < len(probes); i++ {
		if d0, d1 := probes[i-1]-probes[i-2], probes[i]-probes[i-1]; d1 < d0 {
			t.Errorf("probe interval shrank: %v then %v", time.Duration(d0), time.Duration(d1))
		}
	}
	if a.State() != StateEstablished || w.eng[0].Stat(StatConnTimeouts) != 0 {
		t.Fatalf("persist must not time the connection out: %v", a.State())
	}
	// The receiver never took more than its buffer, and advertised no more than it had.
	if w.eng[1].Stat(DropRcvBufFull) > uint64(len(probes)) {
		t.Errorf("%d segments beyond the buffer, more than the probes", w.eng[1].Stat(DropRcvBufFull))
	}
	k := newSink()
	w.sendAll(a, b, s, a.CloseWrite, k, 10*time.Minute)
	if !k.eof || k.n != 100000 || string(k.h.Sum(nil)) != string(s.h.w.Sum(nil)) {
		t.Fatalf("after the window opened: %d bytes, eof %v", k.n, k.eof)
	}
}

// TestSynFloodThenCookie fills a listener's SYN queue with spoofed SYNs that never complete; further SYNs
// are answered with SYN cookies, and a real client then connects through a cookie.
func TestSynFloodThenCookie(t *testing.T) {
	w := newWire(t, Config{SynQueueLen: 4}, 21)
	l, _ := w.eng[1].Listen(netip.AddrPortFrom(netip.IPv4Unspecified(), 80))
	spoof := netip.MustParseAddr("198.18.7.7")
	w.drop = func(from int, tc proto.TCP) bool { return from == 1 && tc.DstPort() < 2000 } // to the spoofed hosts
	for p := uint16(1000); p < 1010; p++ {
		w.inject(1, netip.AddrPortFrom(spoof, p), netip.AddrPortFrom(addrB, 80),
			proto.TCPFields{Seq: uint32(p) * 1000, Flags: proto.TCPFlagSYN, Window: 65535,
				Options: proto.TCPOptions{MSS: 1460, HasMSS: true}}, nil)
	}
	e := w.eng[1]
	if l.synq != 4 || e.Conns() != 4 || e.Stat(StatCookiesSent) != 6 {
		t.Fatalf("flood: synq %d, conns %d, cookies %d; want 4, 4, 6", l.synq, e.Conns(), e.Stat(StatCookiesSent))
	}
	a, _ := w.eng[0].Connect(netip.AddrPortFrom(addrA, 0), netip.AddrPortFrom(addrB, 80))
	var b *Conn
	w.run(5*time.Second, nil, func() bool {
		if b == nil {
			b = accepted(l)
		}
		return b != nil && a.State() == StateEstablished
	})
	if b == nil || e.Stat(StatCookiesAccepted) != 1 {
		t.Fatalf("cookie connection: accepted %v, cookies accepted %d, client %v", b != nil, e.Stat(StatCookiesAccepted), a.State())
	}
	// The client's options came back in the timestamp it echoed (RFC 4987 §3.6, cookieTSval).
	if !b.wsOK || !b.tsOK || !b.sackOK || b.mss != 1460 || !a.wsOK || !a.tsOK || !a.sackOK ||
		b.sndScale != a.rcvScale || b.rcvScale != a.sndScale || e.Stat(StatCookieOptions) != 1 {
		t.Errorf("cookie connection options: ws %v (scales %d/%d, client %d/%d) ts %v sack %v mss %d",
			b.wsOK, b.sndScale, b.rcvScale, a.sndScale, a.rcvScale, b.tsOK, b.sackOK, b.mss)
	}
	// A forged ACK with a wrong cookie is refused with a RST.
	var rsts int
	w.onSend = func(from int, tc proto.TCP) {
		if from == 1 && tc.Flags().Has(proto.TCPFlagRST) {
			rsts++
		}
	}
	w.inject(1, netip.AddrPortFrom(spoof, 1500), netip.AddrPortFrom(addrB, 80),
		proto.TCPFields{Seq: 5, Ack: 12345, Flags: proto.TCPFlagACK, Window: 100}, nil)
	if e.Stat(DropBadCookie) != 1 || rsts != 1 {
		t.Fatalf("bad cookie: counted %d, RSTs %d", e.Stat(DropBadCookie), rsts)
	}
	w.onSend = nil
	transfer(t, w, a, b, 300000, 200000)
	// The half-open entries time out after SynRetries and free the queue.
	w.run(5*time.Minute, nil, nil)
	if l.synq != 0 {
		t.Fatalf("synq %d after the half-open connections timed out", l.synq)
	}
	// Minutes after the last overflow a bare ACK is not taken for a cookie at all, even a valid one
	// (tcp_synq_no_recent_overflow).
	w.now += int64(3 * time.Minute) // run returns once the wire is idle
	id := connID{local: netip.AddrPortFrom(addrB, 80), remote: netip.AddrPortFrom(spoof, 1501)}
	good := e.cookie(id, 99, 1460, w.now)
	w.inject(1, id.remote, id.local, proto.TCPFields{Seq: 100, Ack: uint32(good + 1), Flags: proto.TCPFlagACK, Window: 100}, nil)
	if e.Stat(DropCookieNoOverflow) != 1 || e.Stat(StatCookiesAccepted) != 1 || e.Stat(DropBadCookie) != 1 {
		t.Fatalf("cookie long after the overflow: no-overflow drops %d, accepted %d",
			e.Stat(DropCookieNoOverflow), e.Stat(StatCookiesAccepted))
	}
}

// TestAcceptBacklogFull keeps a completed handshake out of a full accept queue until Accept makes room.
func TestAcceptBacklogFull(t *testing.T) {
	w := newWire(t, Config{AcceptBacklog: 1}, 22)
	l, _ := w.eng[1].Listen(netip.AddrPortFrom(addrB, 80))
	a1, _ := w.eng[0].Connect(netip.AddrPortFrom(addrA, 0), netip.AddrPortFrom(addrB, 80))
	w.run(time.Second, nil, func() bool { return len(l.acceptCh) == 1 })
	a2, _ := w.eng[0].Connect(netip.AddrPortFrom(addrA, 0), netip.AddrPortFrom(addrB, 80))
	w.run(500*time.Millisecond, nil, nil)
	if len(l.acceptCh) != 1 || w.eng[1].Stat(DropAcceptQueueFull) == 0 {
		t.Fatalf("accept queue %d, drops %d", len(l.acceptCh), w.eng[1].Stat(DropAcceptQueueFull))
	}
	c1, _ := l.AcceptTCP()
	w.run(10*time.Second, nil, func() bool { return len(l.acceptCh) == 1 })
	c2, _ := l.AcceptTCP()
	if c1.RemoteAddrPort() != a1.LocalAddrPort() || c2.RemoteAddrPort() != a2.LocalAddrPort() {
		t.Fatalf("accepted %v %v, dialed from %v %v", c1.RemoteAddrPort(), c2.RemoteAddrPort(), a1.LocalAddrPort(), a2.LocalAddrPort())
	}
}

// TestRTOBackoff cuts the return path: the sender retransmits with a doubling timeout (RFC 6298 §5.5)
// until MaxRetries, then gives up with ETIMEDOUT and a RST.
func TestRTOBackoff(t *testing.T) {
	w := newWire(t, Config{MaxRetries: 6, MinRTO: 200 * time.Millisecond}, 23)
	a, _ := w.pair()
	w.drop = func(from int, _ proto.TCP) bool { return from == 1 }
	var sends []int64
	var rst bool
	w.onSend = func(from int, tc proto.TCP) {
		if from == 0 && len(tc.Payload()) > 0 {
			sends = append(sends, w.now)
		}
		rst = rst || from == 0 && tc.Flags().Has(proto.TCPFlagRST)
	}
	a.tryWrite([]byte("hello"))
	w.run(10*time.Minute, nil, func() bool { return a.State() == StateClosed })
	// The first retransmission is RFC 8985's tail loss probe, two SRTTs (plus the delayed-ACK allowance for
	// a single segment) after the data; it does not back off the RTO, which counts from the data.
	if len(sends) != 8 || w.eng[0].Stat(StatTailLossProbes) != 1 {
		t.Fatalf("%d transmissions, %d probes; want 1 + one probe + MaxRetries(6)", len(sends), w.eng[0].Stat(StatTailLossProbes))
	}
	if d := sends[1] - sends[0]; d >= int64(200*time.Millisecond) {
		t.Errorf("loss probe %v after the data, not before the RTO", time.Duration(d))
	}
	sends = append(sends[:1], sends[2:]...)
	first := sends[1] - sends[0]
	if first < int64(200*time.Millisecond) || first > int64(time.Second) {
		t.Errorf("first RTO %v", time.Duration(first))
	}
	for i := 2; i < len(sends); i++ {
		if d, prev := sends[i]-sends[i-1], sends[i-1]-sends[i-2]; d != 2*prev {
			t.Errorf("RTO %d: %v after %v, want double", i, time.Duration(d), time.Duration(prev))
		}
	}
	if !errors.Is(a.err, syscall.ETIMEDOUT) || !rst || w.eng[0].Stat(StatTimeouts) != 7 {
		t.Fatalf("end: err %v, rst %v, timeouts %d", a.err, rst, w.eng[0].Stat(StatTimeouts))
	}
}

// TestFastRetransmit loses one data segment: three duplicate ACKs trigger its retransmission long before
// the RTO, and NewReno recovery finishes without a timeout.
func TestFastRetransmit(t *testing.T) {
	w := newWire(t, Config{}, 24)
	a, b := w.pair()
	var lost Seq
	var lostAt, rexmitAt int64
	dups := 0
	w.drop = func(from int, tc proto.TCP) bool {
		if from == 0 && len(tc.Payload()) > 0 && lostAt == 0 && Seq(tc.Seq()).GreaterThan(a.iss+20000) {
			lost, lostAt = Seq(tc.Seq()), w.now
			return true
		}
		if from == 0 && lostAt != 0 && rexmitAt == 0 && Seq(tc.Seq()) == lost {
			rexmitAt = w.now
		}
		if from == 1 && lostAt != 0 && rexmitAt == 0 && Seq(tc.Ack()) == lost {
			dups++
		}
		return false
	}
	transfer(t, w, a, b, 500000, 0)
	if rexmitAt == 0 || w.eng[0].Stat(StatFastRetransmits) == 0 || w.eng[0].Stat(StatTimeouts) != 0 {
		t.Fatalf("fast retransmit %d, timeouts %d", w.eng[0].Stat(StatFastRetransmits), w.eng[0].Stat(StatTimeouts))
	}
	if dups < 3 {
		t.Errorf("retransmitted after %d duplicate ACKs", dups)
	}
	if d := rexmitAt - lostAt; d >= a.rto {
		t.Errorf("retransmission %v after the loss, not before the RTO %v", time.Duration(d), time.Duration(a.rto))
	}
}

// TestSACKAvoidsResendingSACKedData loses several segments of one window: recovery retransmits exactly the
// lost ones, never bytes the receiver reported in SACK blocks.
func TestSACKAvoidsResendingSACKedData(t *testing.T) {
	w := newWire(t, Config{}, 25)
	a, b := w.pair()
	lost := map[Seq]bool{}
	sent := map[Seq]int{}
	n := 0
	w.drop = func(from int, tc proto.TCP) bool {
		if from != 0 || len(tc.Payload()) == 0 {
			return false
		}
		s := Seq(tc.Seq())
		sent[s]++
		if sent[s] == 1 && s.GreaterThan(a.iss+50000) && n < 6 && s.Sub(a.iss)/1448%3 == 0 {
			lost[s] = true
			n++
			return true
		}
		return false
	}
	transfer(t, w, a, b, 400000, 0)
	if len(lost) != 6 {
		t.Fatalf("lost %d segments", len(lost))
	}
	for s, k := range sent {
		if k > 1 && !lost[s] {
			t.Errorf("segment %d sent %d times but was never lost", s.Sub(a.iss), k)
		}
	}
	if w.eng[0].Stat(StatSACKRetransmits) == 0 || w.eng[0].Stat(StatTimeouts) != 0 {
		t.Errorf("sack retransmits %d, timeouts %d", w.eng[0].Stat(StatSACKRetransmits), w.eng[0].Stat(StatTimeouts))
	}
}

// TestPRRRecovery loses a segment near the end of a transfer, so that the ACK that ends the recovery leaves
// nothing in flight. Recovery must end with cwnd at ssthresh (RFC 6937 §3), not at RFC 6582's FlightSize +
// SMSS: that left a single segment in flight after such a recovery, and a lone segment waits for the
// peer's delayed-ACK timer (at 5% loss, most of the time of a transfer to Linux).
func TestPRRRecovery(t *testing.T) {
	w := newWire(t, Config{}, 26)
	a, b := w.pair()
	const total = 1 << 20
	lost := false
	w.drop = func(from int, tc proto.TCP) bool {
		if from == 0 && len(tc.Payload()) > 0 && !lost && Seq(tc.Seq()).GreaterEq(a.iss+1+total-8*1448) {
			lost = true
			return true
		}
		return false
	}
	transfer(t, w, a, b, total, 0)
	w.run(time.Second, nil, nil) // the last ACKs reach a
	if w.eng[0].Stat(StatFastRetransmits) != 1 || w.eng[0].Stat(StatTimeouts) != 0 || a.inRecovery {
		t.Fatalf("fast retransmits %d, timeouts %d, still in recovery %v; want one recovery, ended",
			w.eng[0].Stat(StatFastRetransmits), w.eng[0].Stat(StatTimeouts), a.inRecovery)
	}
	// Only the ACKs of the last data and of the FIN came after the recovery: cwnd grew from where it ended
	// by less than a segment.
	if a.cwnd < a.ssthresh || a.cwnd < 2*a.smss() {
		t.Errorf("cwnd %d after recovery, want at least ssthresh %d (and two segments)", a.cwnd, a.ssthresh)
	}
}

// TestTransferStress repeats lossy, reordering, duplicating transfers with small and odd buffer sizes over
// many seeds: slow readers, small windows and lost window updates must never stall a connection (a
// window-limited retransmission once did, held back by sender SWS avoidance).
func TestTransferStress(t *testing.T) {
	seeds := 24
	if testing.Short() {
		seeds = 4
	}
	for seed := int64(100); seed < 100+int64(seeds); seed++ {
		cfg := Config{RecvBuffer: 3000 + int(seed%7)*4099, SendBuffer: 5000 + int(seed%5)*3001, MaxOutOfOrder: 1 + int(seed%4)}
		w := newWire(t, cfg, seed)
		a, b := w.pair()
		w.loss = 0.02 + float64(seed%4)*0.02
		w.dup = 0.01
		w.jitter = int64(seed%3) * int64(2*time.Millisecond)
		transfer(t, w, a, b, 150000+int(seed)*1000, 50000)
		for i, c := range []*Conn{a, b} {
			checkLimits(t, w.eng[i], c)
		}
	}
}

// TestLostWindowUpdate: the receiver's window closes, its application reads, and the window update is
// lost; the sender's persist timer finds the open window.
func TestLostWindowUpdate(t *testing.T) {
	w := newWire(t, Config{RecvBuffer: 8192}, 47)
	a, b := w.pair()
	s := newStream(3, 50000)
	w.run(2*time.Second, func() { pumpWrite(a, s) }, func() bool { return a.sndWnd == 0 })
	if a.sndWnd != 0 {
		t.Fatal("window did not close")
	}
	lost := 0
	w.drop = func(from int, tc proto.TCP) bool {
		if from == 1 && tc.Window() > 0 && lost < 1 {
			lost++
			return true
		}
		return false
	}
	k := newSink()
	k.drain(b)
	w.tick()
	if lost != 1 {
		t.Fatalf("no window update sent after the read (%d)", lost)
	}
	w.sendAll(a, b, s, a.CloseWrite, k, time.Minute)
	if !k.eof || k.n != 50000 || w.eng[0].Stat(StatZeroWindowProbes) == 0 {
		t.Fatalf("after a lost window update: %d bytes, eof %v, probes %d", k.n, k.eof, w.eng[0].Stat(StatZeroWindowProbes))
	}
}

// TestLossRecovery8MiB moves 8 MiB one way (and 1 MiB back) with 5% of the segments lost in both directions
// and a little reordering: SACK loss recovery and the detection of lost retransmissions must repair nearly
// every loss without a retransmission timeout. Before RFC 6675 recovery and the lost-retransmission check
// the same transfer took dozens of RTOs.
func TestLossRecovery8MiB(t *testing.T) {
	for _, seed := range []int64{7, 8} {
		w := newWire(t, Config{}, seed)
		a, b := w.pair()
		w.loss = 0.05
		w.jitter = int64(time.Millisecond)
		start := w.now
		transfer(t, w, a, b, 8<<20, 1<<20)
		e0, e1 := w.eng[0], w.eng[1]
		t.Logf("seed %d: %v simulated; timeouts %d/%d, retransmits %d/%d, fast %d/%d, sack %d/%d, lost retransmits %d/%d",
			seed, time.Duration(w.now-start), e0.Stat(StatTimeouts), e1.Stat(StatTimeouts),
			e0.Stat(StatRetransmits), e1.Stat(StatRetransmits), e0.Stat(StatFastRetransmits), e1.Stat(StatFastRetransmits),
			e0.Stat(StatSACKRetransmits), e1.Stat(StatSACKRetransmits), e0.Stat(StatLostRetransmits), e1.Stat(StatLostRetransmits))
		if n := e0.Stat(StatTimeouts); n >= 10 {
			t.Errorf("seed %d: %d retransmission timeouts for 8 MiB at 5%% loss, want fewer than 10", seed, n)
		}
		if e0.Stat(StatSACKRetransmits) == 0 {
			t.Errorf("seed %d: no SACK-based retransmissions", seed)
		}
	}
}

// TestLossRecoveryNewReno: without SACK (Config.DisableSACK) the same lossy transfer completes intact through
// RFC 6582 NewReno, and none of the SACK machinery (RACK marking, loss probes, rescue) runs.
func TestLossRecoveryNewReno(t *testing.T) {
	w := newWire(t, Config{DisableSACK: true}, 9)
	a, b := w.pair()
	w.loss = 0.05
	w.jitter = int64(time.Millisecond)
	transfer(t, w, a, b, 2<<20, 256<<10)
	e0 := w.eng[0]
	t.Logf("timeouts %d, fast %d, retransmits %d", e0.Stat(StatTimeouts), e0.Stat(StatFastRetransmits), e0.Stat(StatRetransmits))
	if a.sackOK || b.sackOK || e0.Stat(StatFastRetransmits) == 0 {
		t.Fatalf("sack %v/%v, fast retransmits %d", a.sackOK, b.sackOK, e0.Stat(StatFastRetransmits))
	}
	if n := e0.Stat(StatSACKRetransmits) + e0.Stat(StatLostRetransmits) + e0.Stat(StatTailLossProbes) + e0.Stat(StatRescueRetransmits); n != 0 {
		t.Errorf("%d SACK-recovery events on a connection without SACK", n)
	}
}

// closeWindow has a write from a until b, whose application does not read, closes its window.
func closeWindow(t *testing.T, w *wire, a *Conn) *stream {
	t.Helper()
	s := newStream(5, 200000)
	w.run(30*time.Second, func() { pumpWrite(a, s) }, func() bool { return a.sndWnd == 0 && a.persist })
	if a.sndWnd != 0 {
		t.Fatal("window did not close")
	}
	return s
}

// TestZeroWindowPeerVanishes: a receiver that keeps its window closed but answers the probes keeps the
// connection for as long as it likes (RFC 9293 §3.8.6.1); one that stops answering is given up after
// MaxRetries unanswered probes (tcp_retries2), and an orphan after OrphanRetries probes, answered or not
// (tcp_orphan_retries). The probes were once never counted, so such a connection stayed forever, also
// after its application closed it.
func TestZeroWindowPeerVanishes(t *testing.T) {
	cfg := Config{RecvBuffer: 16 << 10, SendBuffer: 64 << 10, MaxRetries: 6, OrphanRetries: 3, MaxRTO: 10 * time.Second}
	w := newWire(t, cfg, 53)
	a, _ := w.pair()
	s := closeWindow(t, w, a)
	w.run(10*time.Minute, func() { pumpWrite(a, s) }, nil)
	e := w.eng[0]
	if a.State() != StateEstablished || e.Stat(StatZeroWindowProbes) < 20 {
		t.Fatalf("answered probes: %v after %d probes, want ESTABLISHED", a.State(), e.Stat(StatZeroWindowProbes))
	}
	w.drop = func(from int, _ proto.TCP) bool { return from == 1 } // the receiver is gone
	probes := e.Stat(StatZeroWindowProbes)
	w.run(10*time.Minute, nil, func() bool { return a.State() == StateClosed })
	if !errors.Is(a.err, syscall.ETIMEDOUT) || e.Conns() != 0 || e.Stat(StatPersistTimeouts) != 1 {
		t.Fatalf("vanished receiver: %v %v, %d connections, persist timeouts %d", a.State(), a.err, e.Conns(), e.Stat(StatPersistTimeouts))
	}
	if n := e.Stat(StatZeroWindowProbes) - probes; n > 6 {
		t.Errorf("%d unanswered probes, want at most MaxRetries (6)", n)
	}

	// An orphan: closed by its application with data still waiting for the closed window.
	w = newWire(t, cfg, 54)
	a, _ = w.pair()
	closeWindow(t, w, a)
	a.Close()
	e = w.eng[0]
	probes = e.Stat(StatZeroWindowProbes)
	w.run(time.Hour, nil, func() bool { return a.State() == StateClosed })
	if a.State() != StateClosed || e.Conns() != 0 || e.orphans != 0 || e.Stat(StatPersistTimeouts) != 1 {
		t.Fatalf("orphan, receiver answering: %v, %d connections, %d orphans, persist timeouts %d",
			a.State(), e.Conns(), e.orphans, e.Stat(StatPersistTimeouts))
	}
	if n := e.Stat(StatZeroWindowProbes) - probes; n > 3 {
		t.Errorf("orphan: %d probes, want at most OrphanRetries (3)", n)
	}
}

// TestOrphanLimit: beyond Config.MaxOrphans a connection its application closes is reset at once
// (tcp_max_orphans) instead of joining the others waiting for an ACK of their FIN.
func TestOrphanLimit(t *testing.T) {
	w := newWire(t, Config{MaxOrphans: 2}, 55)
	l, _ := w.eng[1].Listen(netip.AddrPortFrom(addrB, 80))
	var cs []*Conn
	for range 3 {
		a, _ := w.dial(l)
		cs = append(cs, a)
	}
	w.drop = func(from int, _ proto.TCP) bool { return from == 1 } // the FINs are never acknowledged
	var rsts int
	w.onSend = func(from int, tc proto.TCP) {
		if from == 0 && tc.Flags().Has(proto.TCPFlagRST) {
			rsts++
		}
	}
	for _, c := range cs {
		c.Close()
		w.tick()
	}
	e := w.eng[0]
	if cs[0].State() != StateFinWait1 || cs[1].State() != StateFinWait1 || cs[2].State() != StateClosed {
		t.Fatalf("states %v %v %v, want FIN-WAIT-1 FIN-WAIT-1 CLOSED", cs[0].State(), cs[1].State(), cs[2].State())
	}
	if e.orphans != 2 || e.Conns() != 2 || rsts != 1 || e.Stat(StatOrphanOverflow) != 1 {
		t.Fatalf("orphans %d, connections %d, resets %d, overflows %d; want 2, 2, 1, 1", e.orphans, e.Conns(), rsts, e.Stat(StatOrphanOverflow))
	}
	// The orphans end after OrphanRetries RTOs (default 8) and free their places.
	w.run(time.Hour, nil, func() bool { return e.Conns() == 0 })
	if e.orphans != 0 || e.Conns() != 0 {
		t.Fatalf("after the retries: %d orphans, %d connections", e.orphans, e.Conns())
	}
}

// TestCookieKeepsOptions: what a SYN-cookie SYN-ACK offers and what the connection built from the ACK
// keeps, for SYNs with and without each option: the window scale and SACK-permitted travel in the low
// bits of our TSval and come back in the client's TSecr; without timestamps they are lost, as in Linux.
func TestCookieKeepsOptions(t *testing.T) {
	client := netip.MustParseAddr("198.18.0.9")
	for i, tc := range []struct {
		ts, ws, sack bool
		scale        uint8
	}{
		{true, true, true, 7}, {true, true, false, 3}, {true, false, true, 0}, {true, true, true, 14},
		{false, true, true, 7},
	} {
		w := newWire(t, Config{SynQueueLen: 1}, int64(50+i))
		e := w.eng[1]
		l, _ := e.Listen(netip.AddrPortFrom(addrB, 80))
		l.synq = 1 // the queue is full: SYNs get cookies
		var synack proto.TCP
		w.drop = func(from int, seg proto.TCP) bool {
			if from == 1 && seg.Flags().Has(proto.TCPFlagSYN) {
				synack = append(proto.TCP(nil), seg...)
			}
			return true
		}
		src := netip.AddrPortFrom(client, uint16(40000+i))
		dst := netip.AddrPortFrom(addrB, 80)
		syn := proto.TCPFields{Seq: 1000, Flags: proto.TCPFlagSYN, Window: 65535,
			Options: proto.TCPOptions{MSS: 1460, HasMSS: true, HasWindowScale: tc.ws, WindowScale: tc.scale,
				SACKPermitted: tc.sack, HasTimestamps: tc.ts, TSval: 777}}
		w.inject(1, src, dst, syn, nil)
		if synack == nil || e.Stat(StatCookiesSent) != 1 {
			t.Fatalf("case %d: no cookie SYN-ACK", i)
		}
		so, _ := proto.ParseTCPOptions(synack.Options())
		if so.HasTimestamps != tc.ts || so.HasWindowScale != (tc.ts && tc.ws) || so.SACKPermitted != (tc.ts && tc.sack) ||
			tc.ts && (so.TSecr != 777 || int32(so.TSval-tsClock(w.now, Seq(synack.Seq()))) > 0) {
			t.Fatalf("case %d: SYN-ACK options %+v", i, so)
		}
		ack := proto.TCPFields{Seq: 1001, Ack: synack.Seq() + 1, Flags: proto.TCPFlagACK, Window: 1000}
		if tc.ts {
			ack.Options = proto.TCPOptions{HasTimestamps: true, TSval: 778, TSecr: so.TSval}
		}
		w.inject(1, src, dst, ack, nil)
		b := accepted(l)
		if b == nil {
			t.Fatalf("case %d: cookie ACK not accepted (bad cookies %d)", i, e.Stat(DropBadCookie))
		}
		wantScale := uint8(0)
		if tc.ts && tc.ws {
			wantScale = tc.scale
		}
		if b.tsOK != tc.ts || b.wsOK != (tc.ts && tc.ws) || b.sackOK != (tc.ts && tc.sack) || b.sndScale != wantScale ||
			b.sndWnd != 1000<<wantScale || b.wsOK && b.rcvScale != e.rcvScale || !b.wsOK && b.rcvScale != 0 {
			t.Errorf("case %d %+v: connection ts %v ws %v (snd %d rcv %d, wnd %d) sack %v", i, tc, b.tsOK, b.wsOK,
				b.sndScale, b.rcvScale, b.sndWnd, b.sackOK)
		}
		if tc.ts && (b.tsRecent != 778 || b.tsNow(w.now) != tsClock(w.now, Seq(synack.Seq()))) {
			t.Errorf("case %d: TS.Recent %d, clock not the one the SYN-ACK used", i, b.tsRecent)
		}
	}
}

// TestLossProbeResendsLast: a receiver that holds its ACKs (as Linux does while its application has not
// read) gets, after the probe timeout, the last segment again rather than new data - a duplicate it
// answers at once - and the sender carries on without an RTO.
func TestLossProbeResendsLast(t *testing.T) {
	w := newWire(t, Config{NoDelay: true}, 24)
	a, b := w.pair()
	transfer0 := newStream(5, 1<<20)
	k := newSink()
	w.run(200*time.Millisecond, func() { pumpWrite(a, transfer0); k.drain(b) }, func() bool { return k.n > 200<<10 })
	// From now on b's ACKs of in-order data are lost (held); its answers to duplicates get through. The
	// window is small, so data waits behind it.
	a.mu.Lock()
	a.cwnd, a.ssthresh = 10*a.smss(), 10*a.smss()
	a.mu.Unlock()
	var probe proto.TCP
	var probeMax Seq
	newData := false
	held := true
	w.drop = func(from int, tc proto.TCP) bool {
		if from == 0 && a.tlpOut && probe == nil {
			probe, probeMax = append(proto.TCP(nil), tc...), a.sndMax
			newData = a.snd.n > int(a.sndMax-a.sndUna)
		}
		return from == 1 && held && !(probe != nil && len(tc.Payload()) == 0)
	}
	w.run(time.Second, func() { k.drain(b) }, func() bool { return probe != nil })
	if probe == nil {
		t.Fatalf("no loss probe (probes %d, RTOs %d)", w.eng[0].Stat(StatTailLossProbes), w.eng[0].Stat(StatTimeouts))
	}
	if end := Seq(probe.Seq()) + Seq(len(probe.Payload())); end != probeMax || !newData {
		t.Fatalf("probe [%d, %d), SND.MAX %d, new data waiting %v: want the last segment though new data waits",
			probe.Seq(), end, probeMax, newData)
	}
	held = false
	w.sendAll(a, b, transfer0, a.CloseWrite, k, time.Minute)
	if !k.eof || w.eng[0].Stat(StatTimeouts) != 0 {
		t.Fatalf("eof %v, %d RTOs", k.eof, w.eng[0].Stat(StatTimeouts))
	}
}

// TestRTOKeepsSACKScoreboard: segments 0 and 4 of ten are lost, and so is every retransmission of them
// until the RTO; the peer SACKed the other eight. After the RTO (rtoRecovery, as Linux's tcp_enter_loss)
// only the two holes are sent again - none of the SACKed segments, which go-back-N would resend once the
// cumulative ACK passes the first hole - and the data is acknowledged without a second RTO.
func TestRTOKeepsSACKScoreboard(t *testing.T) {
	w := newWire(t, Config{}, 72)
	a, _ := w.pair()
	smss := int(a.smss())
	base := a.sndUna
	hole := func(s Seq) bool { i := int(s-base) / smss; return i == 0 || i == 4 }
	var resent []Seq
	w.onSend = func(from int, tc proto.TCP) {
		if from == 0 && len(tc.Payload()) > 0 && w.eng[0].Stat(StatTimeouts) > 0 {
			resent = append(resent, Seq(tc.Seq()))
		}
	}
	w.drop = func(from int, tc proto.TCP) bool {
		return from == 0 && len(tc.Payload()) > 0 && w.eng[0].Stat(StatTimeouts) == 0 && hole(Seq(tc.Seq()))
	}
	a.tryWrite(make([]byte, 10*smss))
	if !w.run(10*time.Second, nil, func() bool { return a.sndUna == base+Seq(10*smss) }) {
		t.Fatalf("not all acknowledged: SND.UNA at %d of %d", a.sndUna-base, 10*smss)
	}
	if n := w.eng[0].Stat(StatTimeouts); n != 1 {
		t.Fatalf("%d RTOs, want 1", n)
	}
	if len(resent) != 2 {
		t.Errorf("%d segments sent after the RTO (%v), want the 2 holes", len(resent), resent)
	}
	for _, s := range resent {
		if !hole(s) {
			t.Errorf("SACKed segment %d sent again after the RTO", int(s-base)/smss)
		}
	}
}
