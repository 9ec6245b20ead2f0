package tcp

import (
	"errors"
	"io"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/proto"
)

// TestOutOfOrderQueueBound sends segments beyond a hole: at most MaxOutOfOrder separate ranges are kept,
// the rest are dropped and counted, SACK blocks report what is kept, and the stream still completes.
func TestOutOfOrderQueueBound(t *testing.T) {
	w := newWire(t, Config{MaxOutOfOrder: 3}, 40)
	a, b := w.pair()
	base := b.rcvNxt
	var sacks []proto.TCPOptions
	w.onSend = func(from int, tc proto.TCP) {
		if from == 1 {
			o, _ := proto.ParseTCPOptions(tc.Options())
			sacks = append(sacks, o)
		}
	}
	w.drop = func(from int, _ proto.TCP) bool { return true } // keep a's own traffic out of the way
	for i := range 6 {
		// Disjoint 100-byte pieces at 1000, 2000, ... beyond RCV.NXT.
		w.inject(1, b.id.remote, b.id.local, proto.TCPFields{Seq: uint32(base) + uint32(1000*(i+1)),
			Ack: uint32(b.sndMax), Flags: proto.TCPFlagACK, Window: 65535,
			Options: proto.TCPOptions{HasTimestamps: true, TSval: b.tsRecent + 1}}, make([]byte, 100))
	}
	if len(b.ooo) != 3 || w.eng[1].Stat(DropOutOfOrderFull) != 3 {
		t.Fatalf("out-of-order ranges %d, drops %d; want 3 and 3", len(b.ooo), w.eng[1].Stat(DropOutOfOrderFull))
	}
	last := sacks[len(sacks)-1]
	// RFC 2018 §4: the first block is the most recently kept segment, then the most recently reported.
	if last.NSACK != 3 || Seq(last.SACK[0].Left) != base+3000 || Seq(last.SACK[1].Left) != base+2000 || Seq(last.SACK[2].Right) != base+1100 {
		t.Errorf("SACK blocks %+v", last)
	}
	// An adjacent piece merges instead of taking a new range.
	w.inject(1, b.id.remote, b.id.local, proto.TCPFields{Seq: uint32(base) + 1100, Ack: uint32(b.sndMax),
		Flags: proto.TCPFlagACK, Window: 65535, Options: proto.TCPOptions{HasTimestamps: true, TSval: b.tsRecent + 1}}, make([]byte, 50))
	if len(b.ooo) != 3 || b.ooo[0].right != base+1150 {
		t.Fatalf("merge: %v", b.ooo)
	}
	checkLimits(t, w.eng[1], b)
	w.drop = nil
	_ = a
}

// TestMemoryLimit: connections cost their queued data, not their buffers, so more connections than the
// buffers would fit are made; once the data queued reaches Config.MemoryLimit, arriving data beyond an
// empty queue is dropped, and SYNs and dials are refused, until the application reads.
func TestMemoryLimit(t *testing.T) {
	cfg := Config{SendBuffer: 64 << 10, RecvBuffer: 64 << 10, MemoryLimit: 100 << 10}
	w := newWire(t, cfg, 41)
	l, _ := w.eng[1].Listen(netip.AddrPortFrom(addrB, 80))
	var a, b [4]*Conn
	for i := range a {
		a[i], b[i] = w.dial(l) // 4 x 128 KiB of buffers: the old accounting refused the second
	}
	srv := w.eng[1]
	if srv.MemUsed() != 0 || w.eng[0].MemUsed() != 0 {
		t.Fatalf("idle connections charged: server %d, client %d", srv.MemUsed(), w.eng[0].MemUsed())
	}
	// Two clients send 60 KiB each; the server's application does not read.
	a[0].tryWrite(make([]byte, 60<<10))
	w.run(time.Second, nil, nil)
	a[1].tryWrite(make([]byte, 60<<10))
	w.run(time.Second, nil, nil)
	if !srv.memOver() || srv.Stat(DropRcvMemory) == 0 || b[1].rcv.n == 0 || b[1].rcv.n == 60<<10 {
		t.Fatalf("server memory %d of %d, data drops %d, second connection received %d",
			srv.MemUsed(), cfg.MemoryLimit, srv.Stat(DropRcvMemory), b[1].rcv.n)
	}
	checkCharged(t, srv, b[:])
	w.inject(1, netip.MustParseAddrPort("198.18.0.9:5000"), netip.AddrPortFrom(addrB, 80),
		proto.TCPFields{Seq: 1, Flags: proto.TCPFlagSYN, Window: 1000}, nil)
	if srv.Stat(DropMemoryLimit) != 1 {
		t.Fatalf("SYN beyond the memory limit not dropped")
	}
	if _, err := srv.Connect(netip.AddrPortFrom(addrB, 0), netip.AddrPortFrom(addrA, 80)); !errors.Is(err, ErrMemoryLimit) {
		t.Fatalf("dial beyond the memory limit: %v", err)
	}
	// The application reads: memory comes back and the rest of the data arrives.
	k := newSink()
	w.run(10*time.Second, func() { k.drain(b[0]); k.drain(b[1]) }, func() bool { return k.n == 120<<10 })
	if k.n != 120<<10 || srv.MemUsed() != 0 {
		t.Fatalf("read %d of %d, server memory %d", k.n, 120<<10, srv.MemUsed())
	}
	w.dial(l)
}

// checkCharged: the engine is charged exactly what its connections hold.
func checkCharged(t *testing.T, e *Engine, cs []*Conn) {
	t.Helper()
	sum := 0
	for _, c := range cs {
		c.mu.Lock()
		if c.memCharged != c.held() {
			t.Fatalf("connection charged %d, holds %d", c.memCharged, c.held())
		}
		sum += c.memCharged
		c.mu.Unlock()
	}
	if e.MemUsed() != int64(sum) {
		t.Fatalf("engine charged %d, its connections hold %d", e.MemUsed(), sum)
	}
}

// TestCloseWithUnreadDataResets: closing with received data unread sends a RST (RFC 1122 §4.2.2.13), and
// data arriving for a fully closed connection resets it as well.
func TestCloseWithUnreadDataResets(t *testing.T) {
	w := newWire(t, Config{}, 43)
	a, b := w.pair()
	a.tryWrite([]byte("unread"))
	w.run(time.Second, nil, func() bool { return b.rcv.n == 6 })
	b.Close()
	w.run(time.Second, nil, func() bool { return a.State() == StateClosed })
	if !errors.Is(a.err, syscall.ECONNRESET) || b.State() != StateClosed {
		t.Fatalf("close with unread data: peer %v %v, closer %v", a.State(), a.err, b.State())
	}

	w = newWire(t, Config{}, 44)
	a, b = w.pair()
	b.Close() // nothing unread: a FIN
	w.run(time.Second, nil, func() bool { return a.State() == StateCloseWait })
	a.tryWrite([]byte("late data"))
	w.run(time.Second, nil, func() bool { return a.State() == StateClosed })
	if !errors.Is(a.err, syscall.ECONNRESET) || w.eng[1].Stat(DropDataAfterClose) != 1 {
		t.Fatalf("data after close: %v %v, drops %d", a.State(), a.err, w.eng[1].Stat(DropDataAfterClose))
	}
}

// TestNagleAndNoDelay: with Nagle a second small write waits for the ACK of the first; with NoDelay it
// leaves at once.
func TestNagleAndNoDelay(t *testing.T) {
	for _, nodelay := range []bool{false, true} {
		w := newWire(t, Config{}, 45)
		a, _ := w.pair()
		a.SetNoDelay(nodelay)
		w.tick()
		var small int
		w.onSend = func(from int, tc proto.TCP) {
			if from == 0 && len(tc.Payload()) > 0 {
				small++
			}
		}
		a.tryWrite([]byte("a"))
		w.tick()
		a.tryWrite([]byte("b"))
		w.tick()
		want := 1
		if nodelay {
			want = 2
		}
		if small != want {
			t.Errorf("nodelay %v: %d segments before any ACK, want %d", nodelay, small, want)
		}
		w.run(time.Second, nil, nil)
		if a.snd.n != 0 {
			t.Errorf("nodelay %v: %d bytes never acknowledged", nodelay, a.snd.n)
		}
	}
}

// TestDelayedACK: one small segment is acknowledged after the delayed-ACK timeout, two full segments at once.
func TestDelayedACK(t *testing.T) {
	w := newWire(t, Config{DelayedAck: 100 * time.Millisecond}, 46)
	a, b := w.pair()
	var ackAt []int64
	w.onSend = func(from int, tc proto.TCP) {
		if from == 1 && len(tc.Payload()) == 0 {
			ackAt = append(ackAt, w.now)
		}
	}
	a.tryWrite([]byte("x"))
	start := w.now
	w.run(time.Second, nil, func() bool { return len(ackAt) > 0 })
	if len(ackAt) != 1 || ackAt[0]-start < int64(100*time.Millisecond) || ackAt[0]-start > int64(110*time.Millisecond) {
		t.Fatalf("ACK of one small segment after %v", time.Duration(ackAt[0]-start))
	}
	ackAt = nil
	a.tryWrite(make([]byte, 2*int(a.smss())))
	start = w.now
	w.run(time.Second, nil, func() bool { return len(ackAt) > 0 })
	if d := ackAt[0] - start; d > int64(20*time.Millisecond) {
		t.Fatalf("ACK of two full segments after %v, want at once", time.Duration(d))
	}
	_ = b
}

// TestOutputBackpressure: when Output has no room for 30% of the segments (no free frame, a full batch),
// nothing is lost for good: data stays unsent and due ACKs stay due until a later Tick.
func TestOutputBackpressure(t *testing.T) {
	w := newWire(t, Config{}, 48)
	a, b := w.pair()
	w.refuse = 0.3
	transfer(t, w, a, b, 1<<20, 1<<20)
	if w.refused == 0 || w.eng[0].Stat(StatOutputFull) == 0 {
		t.Fatalf("Output never refused (%d)", w.refused)
	}
	// A refused data segment does not count as sent, so the Ticks that follow carry on by themselves.
	if wake := w.eng[0].Tick(w.now); wake != 0 && wake < w.now {
		t.Fatalf("wake-up in the past: %d < %d", wake, w.now)
	}
	t.Logf("refused %d, timeouts %d/%d", w.refused, w.eng[0].Stat(StatTimeouts), w.eng[1].Stat(StatTimeouts))
}

// dial connects a new client on engine 0 to l on engine 1.
func (w *wire) dial(l *Listener) (a, b *Conn) {
	w.t.Helper()
	a, err := w.eng[0].Connect(netip.AddrPortFrom(addrA, 0), l.addr)
	if err != nil {
		w.t.Fatal(err)
	}
	w.run(10*time.Second, nil, func() bool {
		if b == nil {
			b = accepted(l)
		}
		return b != nil && a.State() == StateEstablished
	})
	if b == nil {
		w.t.Fatalf("no connection: client %v", a.State())
	}
	return a, b
}

// closeExchange is one `Connection: close` request: the client sends a request, the server answers and
// closes first (so the server ends in TIME-WAIT), the client reads to EOF and closes.
func (w *wire) closeExchange(a, b *Conn) {
	w.t.Helper()
	a.tryWrite([]byte("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"))
	w.run(time.Second, nil, func() bool { return b.rcv.n > 0 })
	b.tryRead(make([]byte, 100))
	b.tryWrite(make([]byte, 5000))
	b.Close()
	k := newSink()
	w.run(10*time.Second, func() { k.drain(a) }, func() bool { return k.eof })
	a.Close()
	w.run(10*time.Second, nil, func() bool { return a.State() == StateClosed && b.State() != StateFinWait2 })
}

// TestTimeWaitReleasesMemory: a TIME-WAIT connection holds no buffers and no memory charge, so a server
// closing connection after connection does not reach Config.MemoryLimit with them (it did: each kept
// 512 KiB for 2*MSL, and new SYNs were then dropped); the number of TIME-WAIT entries is bounded by
// Config.MaxTimeWait, beyond which a connection closes at once and is counted.
func TestTimeWaitReleasesMemory(t *testing.T) {
	cfg := Config{SendBuffer: 64 << 10, RecvBuffer: 64 << 10, MemoryLimit: 2 * 128 << 10, MaxTimeWait: 12}
	w := newWire(t, cfg, 50)
	l, _ := w.eng[1].Listen(netip.AddrPortFrom(addrB, 80))
	e := w.eng[1]
	for i := range 15 {
		a, b := w.dial(l)
		w.closeExchange(a, b)
		if i < 12 && (b.State() != StateTimeWait || e.timeWait != i+1) {
			t.Fatalf("connection %d: server %v, %d in TIME-WAIT", i, b.State(), e.timeWait)
		}
		if i >= 12 && b.State() != StateClosed {
			t.Fatalf("connection %d beyond MaxTimeWait: server %v, want CLOSED", i, b.State())
		}
		if e.MemUsed() != 0 || b.memCharged != 0 || i < 12 && (b.snd.cap() != 0 || b.rcv.cap() != 0 || b.snd.buf != nil || b.rcv.buf != nil) {
			t.Fatalf("connection %d: server memory %d, connection charged %d after the close", i, e.MemUsed(), b.memCharged)
		}
		if w.eng[0].MemUsed() != 0 {
			t.Fatalf("connection %d: client memory %d after CLOSED", i, w.eng[0].MemUsed())
		}
	}
	if e.Stat(DropMemoryLimit) != 0 || e.Conns() != 12 || e.Stat(StatTimeWaitOverflow) != 3 {
		t.Fatalf("memory drops %d, connections %d, TIME-WAIT overflows %d; want 0, 12, 3",
			e.Stat(DropMemoryLimit), e.Conns(), e.Stat(StatTimeWaitOverflow))
	}
	w.run(2*time.Minute, nil, nil)
	if e.Conns() != 0 || e.timeWait != 0 || e.Stat(StatTimeWaitExpired) != 12 {
		t.Fatalf("after 2*MSL: %d connections, %d in TIME-WAIT, %d expired", e.Conns(), e.timeWait, e.Stat(StatTimeWaitExpired))
	}
}

// TestReleaseKeepsUnreadData: the peer's FIN releases the receive buffer, but data the application has not
// read stays readable, charged until it is read.
func TestReleaseKeepsUnreadData(t *testing.T) {
	w := newWire(t, Config{SendBuffer: 64 << 10, RecvBuffer: 64 << 10}, 51)
	a, b := w.pair()
	b.tryWrite([]byte("response"))
	b.Close()
	w.run(time.Second, nil, func() bool { return a.State() == StateCloseWait })
	e := w.eng[0]
	if a.rcv.n != 8 || a.rcv.cap() != 8 || e.MemUsed() != 8 {
		t.Fatalf("after the FIN: %d unread in a %d-byte buffer, memory %d; want 8, 8, 8", a.rcv.n, a.rcv.cap(), e.MemUsed())
	}
	buf := make([]byte, 100)
	if n, err := a.Read(buf); n != 8 || err != nil || string(buf[:n]) != "response" {
		t.Fatalf("read %q %v", buf[:n], err)
	}
	w.tick()
	if _, err := a.Read(buf); err != io.EOF || a.rcv.cap() != 0 || a.rcv.buf != nil || e.MemUsed() != 0 {
		t.Fatalf("after reading: %v, buffer %d, memory %d", err, a.rcv.cap(), e.MemUsed())
	}
}

// TestStatNames: every counter has its own name (statNames is sized by numStats, so a missing name would
// compile and export an empty one).
func TestStatNames(t *testing.T) {
	seen := map[string]Stat{}
	for s := Stat(0); s < numStats; s++ {
		n := s.String()
		if n == "" {
			t.Errorf("stat %d has no name", s)
		}
		if o, dup := seen[n]; dup {
			t.Errorf("stats %d and %d are both %q", o, s, n)
		}
		seen[n] = s
	}
	if StatMSSLowered.String() != "mss_lowered" || DropCookieNoOverflow.String() != "drop_cookie_no_overflow" {
		t.Errorf("names out of line with the constants: %v %v", StatMSSLowered, DropCookieNoOverflow)
	}
}
