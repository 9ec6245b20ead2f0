package tcp

import (
	"errors"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/proto"
)

// rst injects a RST from c's peer at sequence number seq.
func (w *wire) rst(side int, c *Conn, seq Seq) {
	w.inject(side, c.id.remote, c.id.local, proto.TCPFields{Seq: uint32(seq), Flags: proto.TCPFlagRST}, nil)
}

func TestSimultaneousOpen(t *testing.T) {
	w := newWire(t, Config{}, 5)
	pa, pb := netip.AddrPortFrom(addrA, 1000), netip.AddrPortFrom(addrB, 2000)
	a, err := w.eng[0].Connect(pa, pb)
	if err != nil {
		t.Fatal(err)
	}
	b, err := w.eng[1].Connect(pb, pa)
	if err != nil {
		t.Fatal(err)
	}
	var synAcks [2]int
	sawSynRcvd := [2]bool{}
	w.onSend = func(from int, tc proto.TCP) {
		if tc.Flags() == proto.TCPFlagSYN|proto.TCPFlagACK {
			synAcks[from]++
		}
		sawSynRcvd[0] = sawSynRcvd[0] || a.state == StateSynReceived
		sawSynRcvd[1] = sawSynRcvd[1] || b.state == StateSynReceived
	}
	if !w.run(10*time.Second, nil, func() bool { return a.State() == StateEstablished && b.State() == StateEstablished }) {
		t.Fatalf("simultaneous open: states %v %v", a.State(), b.State())
	}
	if synAcks[0] == 0 || synAcks[1] == 0 || !sawSynRcvd[0] || !sawSynRcvd[1] {
		t.Errorf("both sides should pass SYN-RECEIVED and send SYN-ACK: %v %v", synAcks, sawSynRcvd)
	}
	if !a.tsOK || !b.wsOK || !a.sackOK {
		t.Error("options not negotiated on simultaneous open")
	}
	transfer(t, w, a, b, 200000, 100000)
}

func TestSimultaneousClose(t *testing.T) {
	w := newWire(t, Config{MSL: 10 * time.Second}, 6)
	a, b := w.pair()
	a.Close()
	b.Close()
	var closing [2]bool
	w.onSend = func(int, proto.TCP) {
		closing[0] = closing[0] || a.state == StateClosing
		closing[1] = closing[1] || b.state == StateClosing
	}
	if !w.run(time.Second, nil, func() bool { return a.State() == StateTimeWait && b.State() == StateTimeWait }) {
		t.Fatalf("states %v %v, want both TIME-WAIT", a.State(), b.State())
	}
	if !closing[0] || !closing[1] {
		t.Errorf("both sides should pass CLOSING: %v", closing)
	}
	w.run(time.Minute, nil, nil)
	if w.eng[0].Conns()+w.eng[1].Conns() != 0 || w.eng[0].Stat(StatTimeWaitExpired)+w.eng[1].Stat(StatTimeWaitExpired) != 2 {
		t.Fatalf("after 2*MSL: %d %d connections, %d %d expired", w.eng[0].Conns(), w.eng[1].Conns(),
			w.eng[0].Stat(StatTimeWaitExpired), w.eng[1].Stat(StatTimeWaitExpired))
	}
}

func TestHalfClose(t *testing.T) {
	w := newWire(t, Config{}, 7)
	a, b := w.pair()
	a.CloseWrite()
	k := newSink()
	w.run(time.Second, func() { k.drain(b) }, func() bool { return k.eof && a.State() == StateFinWait2 })
	if !k.eof || b.State() != StateCloseWait || a.State() != StateFinWait2 {
		t.Fatalf("after a's FIN: eof %v, states %v %v", k.eof, a.State(), b.State())
	}
	if _, err := a.Write([]byte("x")); !errors.Is(err, syscall.EPIPE) {
		t.Errorf("write after CloseWrite: %v, want EPIPE", err)
	}
	// The other direction still works, and ends with b's FIN.
	s := newStream(1, 300000)
	ka := newSink()
	w.sendAll(b, a, s, b.Close, ka, time.Minute)
	if !ka.eof || ka.n != 300000 || string(ka.h.Sum(nil)) != string(s.h.w.Sum(nil)) {
		t.Fatalf("b->a after half-close: %d bytes eof %v", ka.n, ka.eof)
	}
	w.run(time.Second, nil, func() bool { return b.State() == StateClosed })
	if a.State() != StateTimeWait || b.State() != StateClosed {
		t.Fatalf("states %v %v, want TIME-WAIT CLOSED", a.State(), b.State())
	}
}

func TestTimeWaitExpiry(t *testing.T) {
	w := newWire(t, Config{MSL: 5 * time.Second}, 8)
	a, b := w.pair()
	a.Close()
	w.run(time.Second, nil, func() bool { return b.State() == StateCloseWait })
	b.Close()
	w.run(time.Second, nil, func() bool { return a.State() == StateTimeWait && b.State() == StateClosed })
	if a.State() != StateTimeWait {
		t.Fatalf("a in %v, want TIME-WAIT", a.State())
	}
	start := w.now
	// A retransmitted FIN is acknowledged and restarts the 2*MSL timer.
	w.run(3*time.Second, nil, nil)
	var acks int
	w.onSend = func(from int, tc proto.TCP) {
		if from == 0 && tc.Flags() == proto.TCPFlagACK && Seq(tc.Ack()) == a.rcvNxt {
			acks++
		}
	}
	restart := w.now
	// b is gone and would answer our ACK with a RST, which ends TIME-WAIT (RFC 1337's "assassination",
	// accepted here as by Linux's default); keep the wire quiet to watch the timer.
	w.drop = func(int, proto.TCP) bool { return true }
	w.inject(0, a.id.remote, a.id.local, proto.TCPFields{Seq: uint32(a.rcvNxt - 1), Ack: uint32(a.sndMax),
		Flags: proto.TCPFlagFIN | proto.TCPFlagACK, Window: 1000}, nil)
	if acks != 1 {
		t.Fatalf("retransmitted FIN in TIME-WAIT got %d ACKs, want 1", acks)
	}
	w.run(time.Duration(restart+int64(10*time.Second)-w.now)-time.Millisecond, nil, nil)
	if a.State() != StateTimeWait {
		t.Fatalf("TIME-WAIT ended after %v, before 2*MSL from the last FIN", time.Duration(w.now-start))
	}
	w.run(10*time.Millisecond, nil, nil)
	if a.State() != StateClosed || w.eng[0].Conns() != 0 {
		t.Fatalf("TIME-WAIT did not expire: %v", a.State())
	}
}

// TestResetInEachState drives a connection to each state and checks what an exact RST does there.
func TestResetInEachState(t *testing.T) {
	onlyFINs := func(from int, tc proto.TCP) bool { // drop pure ACKs, keep FINs
		return !tc.Flags().Has(proto.TCPFlagFIN) && len(tc.Payload()) == 0
	}
	tests := []struct {
		name    string
		setup   func(w *wire, a, b *Conn) (side int, c *Conn)
		state   State
		wantErr error
	}{
		{"ESTABLISHED", func(w *wire, a, b *Conn) (int, *Conn) { return 1, b }, StateEstablished, syscall.ECONNRESET},
		{"FIN-WAIT-1", func(w *wire, a, b *Conn) (int, *Conn) {
			w.drop = func(from int, _ proto.TCP) bool { return from == 1 }
			a.CloseWrite()
			w.run(10*time.Millisecond, nil, nil)
			return 0, a
		}, StateFinWait1, syscall.ECONNRESET},
		{"FIN-WAIT-2", func(w *wire, a, b *Conn) (int, *Conn) {
			a.CloseWrite()
			w.run(time.Second, nil, func() bool { return a.State() == StateFinWait2 })
			return 0, a
		}, StateFinWait2, syscall.ECONNRESET},
		{"CLOSE-WAIT", func(w *wire, a, b *Conn) (int, *Conn) {
			a.CloseWrite()
			w.run(time.Second, nil, func() bool { return b.State() == StateCloseWait })
			return 1, b
		}, StateCloseWait, syscall.ECONNRESET},
		{"CLOSING", func(w *wire, a, b *Conn) (int, *Conn) {
			w.drop = onlyFINs
			a.CloseWrite()
			b.CloseWrite()
			w.run(100*time.Millisecond, nil, func() bool { return a.State() == StateClosing })
			w.drop = func(int, proto.TCP) bool { return true }
			return 0, a
		}, StateClosing, nil},
		{"LAST-ACK", func(w *wire, a, b *Conn) (int, *Conn) {
			a.CloseWrite()
			w.run(time.Second, nil, func() bool { return b.State() == StateCloseWait })
			w.drop = func(from int, _ proto.TCP) bool { return from == 0 }
			b.CloseWrite()
			w.run(10*time.Millisecond, nil, nil)
			return 1, b
		}, StateLastAck, nil},
		{"TIME-WAIT", func(w *wire, a, b *Conn) (int, *Conn) {
			a.CloseWrite()
			w.run(time.Second, nil, func() bool { return b.State() == StateCloseWait })
			b.CloseWrite()
			w.run(time.Second, nil, func() bool { return a.State() == StateTimeWait })
			return 0, a
		}, StateTimeWait, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			w := newWire(t, Config{}, 10)
			a, b := w.pair()
			side, c := tc.setup(w, a, b)
			if c.State() != tc.state {
				t.Fatalf("setup reached %v, want %v", c.State(), tc.state)
			}
			w.rst(side, c, c.rcvNxt)
			if c.State() != StateClosed || w.eng[side].Conns() != 0 {
				t.Fatalf("after RST: %v, %d connections", c.State(), w.eng[side].Conns())
			}
			if !errors.Is(c.err, tc.wantErr) && !(tc.wantErr == nil && c.err == nil) {
				t.Errorf("error %v, want %v", c.err, tc.wantErr)
			}
			if w.eng[side].Stat(StatResetsIn) != 1 {
				t.Errorf("resets_in %d", w.eng[side].Stat(StatResetsIn))
			}
			if tc.wantErr != nil {
				if _, err := c.Read(make([]byte, 10)); !errors.Is(err, tc.wantErr) && tc.state != StateCloseWait {
					t.Errorf("Read after RST: %v", err)
				}
			}
		})
	}

	t.Run("SYN-SENT", func(t *testing.T) {
		w := newWire(t, Config{}, 11)
		a, _ := w.eng[0].Connect(netip.AddrPortFrom(addrA, 0), netip.AddrPortFrom(addrB, 81)) // nobody listens
		w.run(time.Second, nil, func() bool { return a.State() == StateClosed })
		if !errors.Is(a.Handshake(t.Context()), syscall.ECONNREFUSED) {
			t.Fatalf("connect to a closed port: %v (%v)", a.err, a.State())
		}
		if w.eng[1].Stat(DropNoConnection) != 1 || w.eng[1].Stat(StatResetsOut) != 1 {
			t.Errorf("closed port: drops %d resets %d", w.eng[1].Stat(DropNoConnection), w.eng[1].Stat(StatResetsOut))
		}
	})

	t.Run("SYN-RECEIVED", func(t *testing.T) {
		w := newWire(t, Config{}, 12)
		l, _ := w.eng[1].Listen(netip.AddrPortFrom(addrB, 80))
		w.drop = func(from int, tc proto.TCP) bool { return from == 0 && !tc.Flags().Has(proto.TCPFlagSYN) }
		a, _ := w.eng[0].Connect(netip.AddrPortFrom(addrA, 0), netip.AddrPortFrom(addrB, 80))
		w.run(20*time.Millisecond, nil, nil)
		var half *Conn
		for _, c := range w.eng[1].conns {
			half = c
		}
		if half == nil || half.State() != StateSynReceived || l.synq != 1 {
			t.Fatalf("no half-open connection")
		}
		w.rst(1, half, half.rcvNxt)
		if w.eng[1].Conns() != 0 || l.synq != 0 {
			t.Fatalf("half-open connection not removed by RST: %d, synq %d", w.eng[1].Conns(), l.synq)
		}
		_ = a
	})
}

// TestChallengeACK checks RFC 5961: a RST or SYN in the window but not at RCV.NXT gets an ACK and leaves
// the connection alone; a RST outside the window is dropped silently; one connection answers at most one
// such segment per Config.InvalidRateLimit.
func TestChallengeACK(t *testing.T) {
	w := newWire(t, Config{}, 13)
	_, b := w.pair()
	var out []proto.TCP
	w.onSend = func(from int, tc proto.TCP) {
		if from == 1 {
			out = append(out, tc)
		}
	}
	e := w.eng[1]
	w.rst(1, b, b.rcvNxt+1000)
	if b.State() != StateEstablished || len(out) != 1 || out[0].Flags() != proto.TCPFlagACK ||
		Seq(out[0].Ack()) != b.rcvNxt || Seq(out[0].Seq()) != b.sndMax {
		t.Fatalf("in-window RST: state %v, replies %d", b.State(), len(out))
	}
	if e.Stat(DropRSTNotExact) != 1 || e.Stat(StatChallengeACKs) != 1 {
		t.Errorf("counters: rst_not_exact %d challenge %d", e.Stat(DropRSTNotExact), e.Stat(StatChallengeACKs))
	}
	// Within 500 ms of the last challenge ACK, this connection stays silent.
	out = nil
	w.now += int64(400 * time.Millisecond)
	w.inject(1, b.id.remote, b.id.local, proto.TCPFields{Seq: uint32(b.rcvNxt + 5), Flags: proto.TCPFlagSYN, Window: 100}, nil)
	if b.State() != StateEstablished || len(out) != 0 || e.Stat(DropSYNInWindow) != 1 || e.Stat(StatACKSkippedChallenge) != 1 {
		t.Fatalf("in-window SYN 400 ms later: state %v, replies %d, skipped %d", b.State(), len(out), e.Stat(StatACKSkippedChallenge))
	}
	w.now += int64(100 * time.Millisecond)
	w.inject(1, b.id.remote, b.id.local, proto.TCPFields{Seq: uint32(b.rcvNxt + 5), Flags: proto.TCPFlagSYN, Window: 100}, nil)
	if b.State() != StateEstablished || len(out) != 1 || Seq(out[0].Ack()) != b.rcvNxt || e.Stat(DropSYNInWindow) != 2 {
		t.Fatalf("in-window SYN 500 ms later: state %v, replies %d", b.State(), len(out))
	}
	out = nil
	w.now += int64(time.Second)
	w.rst(1, b, b.rcvNxt+1<<30)
	if b.State() != StateEstablished || len(out) != 0 {
		t.Fatalf("out-of-window RST: state %v, replies %d", b.State(), len(out))
	}
	w.rst(1, b, b.rcvNxt)
	if b.State() != StateClosed {
		t.Fatalf("exact RST: %v", b.State())
	}
}

// TestChallengeACKSideChannel is CVE-2016-5696: with one fixed engine-wide budget, an off-path host spent
// it with in-window RSTs on its own connection, sent a spoofed RST at a guessed sequence number of a
// victim's connection, and counted the challenge ACKs left in the second: one fewer meant the guess was in
// the victim's window. Per-connection limiting keeps the attacker's connection from spending the budget,
// and the budget is random in [limit/2, limit*3/2) each second.
func TestChallengeACKSideChannel(t *testing.T) {
	w := newWire(t, Config{ChallengeACKLimit: 4}, 56)
	l, _ := w.eng[1].Listen(netip.AddrPortFrom(addrB, 80))
	_, attacker := w.dial(l)
	_, victim := w.dial(l)
	var acks [2]int
	w.onSend = func(from int, tc proto.TCP) {
		if from == 1 && tc.DstPort() == attacker.id.remote.Port() {
			acks[0]++
		}
		if from == 1 && tc.DstPort() == victim.id.remote.Port() {
			acks[1]++
		}
	}
	w.now += int64(time.Second)
	for i := range 20 {
		w.rst(1, attacker, attacker.rcvNxt+Seq(100+i))
	}
	w.rst(1, victim, victim.rcvNxt+100)
	if acks[0] != 1 || acks[1] != 1 || w.eng[1].Stat(StatACKSkippedChallenge) != 19 {
		t.Fatalf("challenge ACKs: attacker %d, victim %d, skipped %d; want 1, 1, 19", acks[0], acks[1],
			w.eng[1].Stat(StatACKSkippedChallenge))
	}

	// The engine-wide budget: between 2 and 5 per second for a limit of 4, not the same every second.
	e := NewEngine(Config{ChallengeACKLimit: 4}, OutputFunc(func(*Segment) bool { return true }), nil)
	seen := map[int]bool{}
	for sec := range 200 {
		now := int64(time.Hour) + int64(sec)*int64(time.Second)
		n := 0
		for range 10 {
			if e.challengeOK(now) {
				n++
			}
		}
		if n < 2 || n > 5 {
			t.Fatalf("second %d: %d challenge ACKs, want 2 to 5", sec, n)
		}
		seen[n] = true
	}
	if len(seen) < 3 {
		t.Errorf("budgets seen %v: not random", seen)
	}
}

// TestEphemeralPortsRFC6056: the local ports of connections to one destination follow one another, but
// where they start depends on the destination and a secret (RFC 6056 §3.3.4), so the port of a dial
// towards an attacker says nothing about the next dial towards someone else. They were handed out in
// sequence from 49152.
func TestEphemeralPortsRFC6056(t *testing.T) {
	out := OutputFunc(func(*Segment) bool { return true })
	e := NewEngine(Config{Key: [16]byte{9}}, out, nil)
	dial := func(e *Engine, dst string) uint16 {
		c, err := e.Connect(netip.AddrPortFrom(addrA, 0), netip.MustParseAddrPort(dst))
		if err != nil {
			t.Fatal(err)
		}
		return c.id.local.Port()
	}
	p1, p2 := dial(e, "198.18.0.2:80"), dial(e, "198.18.0.2:80")
	q1, r1 := dial(e, "198.18.0.2:81"), dial(e, "198.18.0.3:80")
	p3 := dial(e, "198.18.0.2:80")
	for _, p := range []uint16{p1, p2, q1, r1, p3} {
		if p < ephemeralFirst {
			t.Fatalf("port %d outside the ephemeral range", p)
		}
	}
	if p2 != p1+1 || p3 != p2+1 {
		t.Errorf("ports towards one destination %d %d %d, want consecutive", p1, p2, p3)
	}
	near := func(a, b uint16) bool { return a-b < 8 || b-a < 8 }
	if near(q1, p2) || near(r1, q1) || near(r1, p2) {
		t.Errorf("ports towards other destinations %d %d follow those towards the first %d %d", q1, r1, p1, p2)
	}
	if p1 == ephemeralFirst {
		t.Errorf("first port %d", p1)
	}
	if e2 := NewEngine(Config{Key: [16]byte{10}}, out, nil); dial(e2, "198.18.0.2:80") == p1 {
		t.Errorf("another key picks the same port %d", p1)
	}
	// A port taken by a listener (here the next one in line) is skipped.
	next, _, _ := e.ephemeralPort(addrA, netip.MustParseAddrPort("198.18.0.2:80"))
	if _, err := e.Listen(netip.AddrPortFrom(netip.IPv4Unspecified(), next)); err != nil {
		t.Fatal(err)
	}
	if p := dial(e, "198.18.0.2:80"); p == next {
		t.Errorf("picked port %d held by a listener", p)
	}
}

// TestInvalidReplyRateLimit: ACKs answering out-of-window and PAWS-failed segments without data go out at
// most once per Config.InvalidRateLimit per connection (tcp_invalid_ratelimit) and the others are counted;
// segments with data are always answered, since the peer's recovery depends on that ACK.
func TestInvalidReplyRateLimit(t *testing.T) {
	w := newWire(t, Config{}, 57)
	_, b := w.pair()
	e := w.eng[1]
	var acks int
	w.onSend = func(from int, tc proto.TCP) {
		if from == 1 && tc.Flags() == proto.TCPFlagACK {
			acks++
		}
	}
	ts := func(v uint32) proto.TCPOptions { return proto.TCPOptions{HasTimestamps: true, TSval: v} }
	for range 5 { // pure ACKs far outside the window
		w.inject(1, b.id.remote, b.id.local, proto.TCPFields{Seq: uint32(b.rcvNxt + 1<<30), Ack: uint32(b.sndMax),
			Flags: proto.TCPFlagACK, Window: 1000, Options: ts(b.tsRecent + 1)}, nil)
	}
	if acks != 1 || e.Stat(DropOutOfWindow) != 5 || e.Stat(StatACKSkippedSeq) != 4 {
		t.Fatalf("out-of-window: %d ACKs, %d drops, %d skipped; want 1, 5, 4", acks, e.Stat(DropOutOfWindow), e.Stat(StatACKSkippedSeq))
	}
	acks = 0
	w.now += int64(500 * time.Millisecond)
	for range 5 { // pure ACKs with an old timestamp
		w.inject(1, b.id.remote, b.id.local, proto.TCPFields{Seq: uint32(b.rcvNxt), Ack: uint32(b.sndMax),
			Flags: proto.TCPFlagACK, Window: 1000, Options: ts(b.tsRecent - 10)}, nil)
	}
	if acks != 1 || e.Stat(DropPAWS) != 5 || e.Stat(StatACKSkippedPAWS) != 4 {
		t.Fatalf("PAWS: %d ACKs, %d drops, %d skipped; want 1, 5, 4", acks, e.Stat(DropPAWS), e.Stat(StatACKSkippedPAWS))
	}
	acks = 0
	for range 3 { // old data, duplicates of what was received: every one is answered
		w.inject(1, b.id.remote, b.id.local, proto.TCPFields{Seq: uint32(b.rcvNxt - 200), Ack: uint32(b.sndMax),
			Flags: proto.TCPFlagACK, Window: 1000, Options: ts(b.tsRecent + 1)}, make([]byte, 100))
	}
	if acks != 3 {
		t.Fatalf("duplicate data: %d ACKs, want 3", acks)
	}
}

// TestPAWSIdle24Days: RFC 7323 §5.5 - after 24 days without an update TS.Recent is invalid, and a segment
// whose timestamp is "older" (the peer's clock wrapped meanwhile) is accepted and sets TS.Recent.
func TestPAWSIdle24Days(t *testing.T) {
	w := newWire(t, Config{}, 58)
	_, b := w.pair()
	old := b.tsRecent - 1000
	seg := func() {
		w.inject(1, b.id.remote, b.id.local, proto.TCPFields{Seq: uint32(b.rcvNxt), Ack: uint32(b.sndMax),
			Flags: proto.TCPFlagACK | proto.TCPFlagPSH, Window: 1000,
			Options: proto.TCPOptions{HasTimestamps: true, TSval: old}}, []byte("x"))
	}
	seg()
	if b.rcv.n != 0 || w.eng[1].Stat(DropPAWS) != 1 {
		t.Fatalf("old timestamp accepted: %d bytes, PAWS drops %d", b.rcv.n, w.eng[1].Stat(DropPAWS))
	}
	w.now += int64(23 * 24 * time.Hour)
	seg()
	if b.rcv.n != 0 || w.eng[1].Stat(DropPAWS) != 2 {
		t.Fatalf("after 23 days: %d bytes, PAWS drops %d", b.rcv.n, w.eng[1].Stat(DropPAWS))
	}
	w.now += int64(2 * 24 * time.Hour)
	seg()
	if b.rcv.n != 1 || b.tsRecent != old || w.eng[1].Stat(DropPAWS) != 2 {
		t.Fatalf("after 25 days: %d bytes, TS.Recent %d (want %d), PAWS drops %d", b.rcv.n, b.tsRecent, old, w.eng[1].Stat(DropPAWS))
	}
}
