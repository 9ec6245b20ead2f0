package tcp

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/proto"
)

// The socket options have the shape of *net.TCPConn's.
var _ interface {
	SetKeepAlive(bool) error
	SetKeepAlivePeriod(time.Duration) error
	SetKeepAliveConfig(net.KeepAliveConfig) error
	SetLinger(int) error
	SetReadBuffer(int) error
	SetWriteBuffer(int) error
	SetNoDelay(bool)
} = (*Conn)(nil)

// TestKeepAliveFindsVanishedPeer: with keep-alive (Idle 10 s, Interval 2 s, Count 3) an idle connection
// sends its first probe - <SEQ=SND.UNA-1>, no data - after 10 s without traffic; a live peer answers each
// one and the connection stays. Once the peer vanishes the connection ends with ETIMEDOUT 10 + 3*2 s after
// the last segment it received, not before. Without keep-alive an idle connection sends nothing for hours.
func TestKeepAliveFindsVanishedPeer(t *testing.T) {
	w := newWire(t, Config{}, 60)
	a, b := w.pair()
	var probes []int64
	w.onSend = func(from int, tc proto.TCP) {
		if from == 0 {
			if tc.Flags().Has(proto.TCPFlagRST) {
				probes = append(probes, w.now)
				return
			}
			if len(tc.Payload()) != 0 || Seq(tc.Seq()) != a.sndUna-1 || !tc.Flags().Has(proto.TCPFlagACK) {
				t.Errorf("keep-alive probe seq %d (SND.UNA %d), %d bytes, flags %v", tc.Seq(), a.sndUna, len(tc.Payload()), tc.Flags())
			}
			probes = append(probes, w.now)
		}
	}
	w.now += int64(2 * time.Hour)
	w.run(time.Minute, nil, nil)
	if len(probes) != 0 || w.eng[0].Stat(StatKeepAliveProbes) != 0 {
		t.Fatalf("%d segments from an idle connection without keep-alive", len(probes))
	}
	start := w.now
	a.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true, Idle: 10 * time.Second, Interval: 2 * time.Second, Count: 3})
	w.run(65*time.Second, nil, nil)
	// The peer answers every probe, so each one comes a full idle time after the previous answer.
	if len(probes) != 6 || probes[0]-start < int64(10*time.Second) || probes[0]-start > int64(11*time.Second) ||
		a.State() != StateEstablished || w.eng[0].Stat(StatKeepAliveProbes) != 6 {
		t.Fatalf("%d probes in 65 s with a live peer (first after %v), state %v; want 6, the first after 10 s",
			len(probes), time.Duration(probes[0]-start), a.State())
	}
	lastHeard := a.lastRcvAt
	w.drop = func(int, proto.TCP) bool { return true } // the peer is gone
	probes = probes[:0]
	w.run(time.Minute, nil, func() bool { return a.State() == StateClosed })
	gone := w.now - lastHeard
	if a.State() != StateClosed || !errors.Is(a.err, syscall.ETIMEDOUT) || w.eng[0].Stat(StatKeepAliveTimeouts) != 1 {
		t.Fatalf("peer gone: state %v err %v", a.State(), a.err)
	}
	if gone < int64(16*time.Second) || gone > int64(17*time.Second) || len(probes) != 4 { // 3 probes and the RST
		t.Fatalf("vanished peer found after %v with %d segments, want 16 s (10 s idle + 3 * 2 s) and 3 probes + RST",
			time.Duration(gone), len(probes))
	}
	_ = b
}

// TestKeepAliveWaitsForData: while data is in flight the retransmission timer watches the peer; keep-alive
// sends no probe however long the idle time is exceeded.
func TestKeepAliveWaitsForData(t *testing.T) {
	w := newWire(t, Config{KeepAlive: net.KeepAliveConfig{Enable: true, Idle: time.Second, Interval: time.Second, Count: 2}}, 61)
	a, _ := w.pair()
	w.drop = func(from int, tc proto.TCP) bool { return from == 1 }
	a.tryWrite(make([]byte, 1000))
	w.run(20*time.Second, nil, nil)
	if w.eng[0].Stat(StatKeepAliveProbes) != 0 || w.eng[0].Stat(StatTimeouts) == 0 {
		t.Fatalf("keep-alive probes %d, RTOs %d with data in flight", w.eng[0].Stat(StatKeepAliveProbes), w.eng[0].Stat(StatTimeouts))
	}
}

// TestLingerZeroResets: SetLinger(0) makes Close discard unsent data and reset the connection.
func TestLingerZeroResets(t *testing.T) {
	w := newWire(t, Config{}, 62)
	a, b := w.pair()
	w.drop = func(from int, tc proto.TCP) bool { return from == 0 && len(tc.Payload()) > 0 }
	a.tryWrite(make([]byte, 5000))
	w.run(100*time.Millisecond, nil, nil)
	w.drop = nil
	a.SetLinger(0)
	a.Close()
	w.run(time.Second, nil, func() bool { return b.State() == StateClosed })
	if b.State() != StateClosed || !errors.Is(b.err, syscall.ECONNRESET) || b.rcv.n != 0 {
		t.Fatalf("peer after SetLinger(0) and Close: state %v err %v, %d bytes received", b.State(), b.err, b.rcv.n)
	}
}

// TestLingerWaits: with SetLinger(5) Close returns only once the peer acknowledged the data and the FIN
// (real time, driver goroutine).
func TestLingerWaits(t *testing.T) {
	d := startDriver(t, Config{}, 0)
	l, _ := d.e[1].Listen(netip.AddrPortFrom(addrB, 80))
	a, err := d.e[0].Dial(context.Background(), netip.AddrPortFrom(addrA, 0), netip.AddrPortFrom(addrB, 80))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := l.AcceptTCP()
	go io.Copy(io.Discard, b)
	a.SetLinger(5)
	a.Write(make([]byte, 1<<20))
	a.Close()
	a.mu.Lock()
	acked := a.finAckedFlag
	a.mu.Unlock()
	if !acked {
		t.Fatalf("Close with linger returned before the FIN was acknowledged (state %v)", a.State())
	}
}

// TestSocketBuffers: SetWriteBuffer grows the send buffer or limits what
// Write buffers; SetReadBuffer grows the receive buffer or limits the window offered, and turns
// receive-buffer autotuning off.
func TestSocketBuffers(t *testing.T) {
	w := newWire(t, Config{}, 63)
	a, b := w.pair()
	e0 := w.eng[0]
	used := e0.MemUsed()
	if err := a.SetWriteBuffer(1 << 20); err != nil || a.snd.cap() != 1<<20 || e0.MemUsed() != used {
		t.Fatalf("SetWriteBuffer(1 MiB): %v, buffer %d, memory %d -> %d (a buffer is not charged, its data is)", err, a.snd.cap(), used, e0.MemUsed())
	}
	if a.SetWriteBuffer(0) == nil {
		t.Error("SetWriteBuffer(0) accepted")
	}
	b.SetReadBuffer(4000) // before b sends anything after the handshake, whose window was 64 KiB
	b.SetWriteBuffer(10000)
	if n := b.tryWrite(make([]byte, 50000)); n != 10000 {
		t.Fatalf("wrote %d bytes with a 10000-byte write buffer", n)
	}
	w.run(time.Second, nil, nil)
	// b reads nothing for a second at a time: the first time the peer fills the window already offered
	// (64 KiB at the handshake, a window is never taken back, and each ACK that keeps its right edge rounds
	// it up to the window scale), after that at most the 4000 bytes set.
	if n := a.tryWrite(make([]byte, 200000)); n != 200000 {
		t.Fatalf("wrote %d of 200000", n)
	}
	k := newSink()
	for i := 0; k.n < 200000 && i < 200; i++ {
		w.run(time.Second, nil, nil)
		if b.rcv.n > 80000 || i > 0 && b.rcv.n > 4000 {
			t.Fatalf("round %d: %d bytes buffered with a 4000-byte read buffer", i, b.rcv.n)
		}
		k.drain(b)
	}
	if k.n != 200000 || b.rcv.cap() != 256<<10 || w.eng[1].Stat(StatRcvBufGrown) != 0 {
		t.Fatalf("read %d of 200000, receive buffer %d (grown %d times)", k.n, b.rcv.cap(), w.eng[1].Stat(StatRcvBufGrown))
	}
	ka := newSink()
	ka.drain(a)
	if err := b.SetReadBuffer(2 << 20); err != nil || b.rcv.cap() != 2<<20 {
		t.Fatalf("SetReadBuffer(2 MiB): %v, buffer %d", err, b.rcv.cap())
	}
	if ka.n != 10000 {
		t.Fatalf("a read %d of b's 10000 bytes", ka.n)
	}
	transfer(t, w, a, b, 1<<20, 0)
}
