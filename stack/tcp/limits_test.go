package tcp

import (
	"errors"
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
	// RFC 2018 §4: the first block is the most recently kept segment, then the others.
	if last.NSACK != 3 || Seq(last.SACK[0].Left) != base+3000 || Seq(last.SACK[1].Left) != base+1000 || Seq(last.SACK[2].Right) != base+2100 {
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

// TestMemoryLimit refuses connections beyond Config.MemoryLimit on both the passive and the active side.
func TestMemoryLimit(t *testing.T) {
	cfg := Config{SendBuffer: 64 << 10, RecvBuffer: 64 << 10, MemoryLimit: 3 * 128 << 10}
	w := newWire(t, cfg, 41)
	l, _ := w.eng[1].Listen(netip.AddrPortFrom(addrB, 80))
	for i := range 4 {
		if _, err := w.eng[0].Connect(netip.AddrPortFrom(addrA, 0), netip.AddrPortFrom(addrB, 80)); err != nil {
			if i != 3 || !errors.Is(err, ErrMemoryLimit) {
				t.Fatalf("connect %d: %v", i, err)
			}
		}
	}
	w.run(5*time.Second, nil, nil)
	if len(l.acceptCh) != 3 || w.eng[0].memUsed != 3*128<<10 {
		t.Fatalf("accepted %d, client memory %d", len(l.acceptCh), w.eng[0].memUsed)
	}
	// The server is at its limit too: a fourth client is turned away.
	if w.eng[1].memUsed != 3*128<<10 {
		t.Fatalf("server memory %d", w.eng[1].memUsed)
	}
	w.inject(1, netip.MustParseAddrPort("198.18.0.9:5000"), netip.AddrPortFrom(addrB, 80),
		proto.TCPFields{Seq: 1, Flags: proto.TCPFlagSYN, Window: 1000}, nil)
	if w.eng[1].Stat(DropMemoryLimit) != 1 {
		t.Fatalf("SYN beyond the memory limit not dropped")
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
