package tcp

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/proto"
)

func TestHandshakeNegotiatesOptions(t *testing.T) {
	w := newWire(t, Config{MTU: 1500}, 1)
	a, b := w.pair()
	if b.State() != StateEstablished {
		t.Fatalf("server state %v", b.State())
	}
	for _, c := range []*Conn{a, b} {
		if !c.wsOK || !c.tsOK || !c.sackOK || c.mss != 1460 {
			t.Errorf("%v: ws %v ts %v sack %v mss %d, want all options and MSS 1460", c.id.local, c.wsOK, c.tsOK, c.sackOK, c.mss)
		}
		if c.rcvScale != 7 { // the autotuning cap, 4 MiB, >> 7 fits 16 bits
			t.Errorf("rcvScale %d, want 7", c.rcvScale)
		}
	}
	if a.id.local != b.id.remote || a.id.remote != b.id.local {
		t.Errorf("4-tuples do not match: %v %v", a.id, b.id)
	}
	if w.eng[0].Stat(StatActiveOpens) != 1 || w.eng[1].Stat(StatPassiveOpens) != 1 {
		t.Errorf("open counters %d %d", w.eng[0].Stat(StatActiveOpens), w.eng[1].Stat(StatPassiveOpens))
	}
}

func TestMSSClampedToMTU(t *testing.T) {
	w := newWire(t, Config{MTU: 1280}, 1)
	a, b := w.pair()
	if a.mss != 1240 || b.mss != 1240 {
		t.Fatalf("mss %d %d, want 1240", a.mss, b.mss)
	}
	var big int
	w.onSend = func(from int, tc proto.TCP) {
		if len(tc) > 1240+20+40 || len(tc.Payload()) > 1240 {
			big++
		}
	}
	transfer(t, w, a, b, 100000, 0)
	if big != 0 {
		t.Fatalf("%d segments larger than the MTU allows", big)
	}
}

// stream is a deterministic pseudo-random byte source with a running hash.
type stream struct {
	rng  *rand.Rand
	left int
	h    hashWriter
	buf  []byte
	off  int
}

type hashWriter struct {
	w interface {
		Write([]byte) (int, error)
		Sum([]byte) []byte
	}
}

func newStream(seed int64, n int) *stream {
	return &stream{rng: rand.New(rand.NewSource(seed)), left: n, h: hashWriter{w: sha256.New()}}
}

// sendAll writes s on from, calls closeFn once all of it is written, and reads to into k until EOF or d of
// simulated time; the caller checks k.
func (w *wire) sendAll(from, to *Conn, s *stream, closeFn func() error, k *sink, d time.Duration) {
	closed := false
	w.run(d, func() {
		pumpWrite(from, s)
		if !closed && s.left == 0 && s.off == len(s.buf) {
			closeFn()
			closed = true
		}
		k.drain(to)
	}, func() bool { return k.eof })
}

// pump moves data: writes from src into a, reads from b into the sink hash.
func pumpWrite(c *Conn, s *stream) {
	for s.left > 0 || s.off < len(s.buf) {
		if s.off == len(s.buf) {
			n := min(s.left, 8192)
			s.buf = make([]byte, n)
			s.rng.Read(s.buf)
			s.h.w.Write(s.buf)
			s.left -= n
			s.off = 0
		}
		n := c.tryWrite(s.buf[s.off:])
		s.off += n
		if n == 0 {
			return
		}
	}
}

type sink struct {
	h interface {
		Write([]byte) (int, error)
		Sum([]byte) []byte
	}
	n   int
	eof bool
	err error
	buf []byte
}

func newSink() *sink { return &sink{h: sha256.New(), buf: make([]byte, 65536)} }

func (k *sink) drain(c *Conn) {
	for !k.eof && k.err == nil {
		n, err := c.tryRead(k.buf)
		k.h.Write(k.buf[:n])
		k.n += n
		if err == io.EOF {
			k.eof = true
		} else if err != nil {
			k.err = err
		}
		if n == 0 {
			return
		}
	}
}

// transfer sends n bytes from a to b and m bytes from b to a at the same time, then half-closes both ways,
// and checks that both byte streams arrive intact (SHA-256) and end with EOF.
func transfer(t *testing.T, w *wire, a, b *Conn, n, m int) {
	t.Helper()
	sa, sb := newStream(int64(n), n), newStream(int64(m)+7, m)
	ka, kb := newSink(), newSink()
	closedA, closedB := false, false
	ok := w.run(10*time.Minute, func() {
		pumpWrite(a, sa)
		pumpWrite(b, sb)
		if !closedA && sa.left == 0 && sa.off == len(sa.buf) {
			a.CloseWrite()
			closedA = true
		}
		if !closedB && sb.left == 0 && sb.off == len(sb.buf) {
			b.CloseWrite()
			closedB = true
		}
		kb.drain(b)
		ka.drain(a)
	}, func() bool { return ka.eof && kb.eof || ka.err != nil || kb.err != nil })
	if !ok || ka.err != nil || kb.err != nil {
		t.Fatalf("transfer did not finish: a->b %d/%d eof %v err %v, b->a %d/%d eof %v err %v; states %v %v",
			kb.n, n, kb.eof, kb.err, ka.n, m, ka.eof, ka.err, a.State(), b.State())
	}
	if kb.n != n || !bytes.Equal(kb.h.Sum(nil), sa.h.w.Sum(nil)) {
		t.Fatalf("a->b: %d bytes, want %d, hash mismatch", kb.n, n)
	}
	if ka.n != m || !bytes.Equal(ka.h.Sum(nil), sb.h.w.Sum(nil)) {
		t.Fatalf("b->a: %d bytes, want %d, hash mismatch", ka.n, m)
	}
}

func TestTransferBothWays(t *testing.T) {
	w := newWire(t, Config{}, 2)
	a, b := w.pair()
	transfer(t, w, a, b, 4<<20, 3<<20)
	if w.eng[0].Stat(StatRetransmits)+w.eng[1].Stat(StatRetransmits) != 0 {
		t.Errorf("retransmissions on a clean wire: %d %d", w.eng[0].Stat(StatRetransmits), w.eng[1].Stat(StatRetransmits))
	}
	// Both sides closed their write half and read EOF: one goes through TIME-WAIT, the other ends.
	w.run(2*time.Minute, nil, func() bool { return w.eng[0].Conns()+w.eng[1].Conns() == 0 })
	if n := w.eng[0].Conns() + w.eng[1].Conns(); n != 0 {
		t.Fatalf("%d connections left after TIME-WAIT (states %v %v)", n, a.State(), b.State())
	}
}

func TestTransferWithLoss(t *testing.T) {
	for _, seed := range []int64{3, 4} {
		w := newWire(t, Config{}, seed)
		a, b := w.pair()
		w.loss = 0.05
		w.dup = 0.01
		w.jitter = int64(3 * time.Millisecond)
		transfer(t, w, a, b, 2<<20, 1<<20)
		e0, e1 := w.eng[0], w.eng[1]
		t.Logf("seed %d: retransmits %d/%d fast %d/%d sack %d/%d timeouts %d/%d, ooo drops %d/%d",
			seed, e0.Stat(StatRetransmits), e1.Stat(StatRetransmits), e0.Stat(StatFastRetransmits), e1.Stat(StatFastRetransmits),
			e0.Stat(StatSACKRetransmits), e1.Stat(StatSACKRetransmits), e0.Stat(StatTimeouts), e1.Stat(StatTimeouts),
			e0.Stat(DropOutOfOrderFull), e1.Stat(DropOutOfOrderFull))
		if e0.Stat(StatFastRetransmits) == 0 {
			t.Errorf("no fast retransmit with 5%% loss")
		}
	}
}

var _ = errors.Is
var _ = syscall.ECONNRESET
var _ = netip.Addr{}

// TestRecvBufferAutotune: a reader that keeps up with a 10 ms RTT flow gets a larger receive buffer and
// window than the 256 KiB it started with (Config.RecvBufferMax, rcvSpaceAdjust), the memory accounting
// following what is queued; a connection whose RecvBuffer was set explicitly, and one whose application does not read,
// keep theirs.
func TestRecvBufferAutotune(t *testing.T) {
	w := newWire(t, Config{SendBuffer: 1 << 20}, 30)
	a, b := w.pair()
	e := w.eng[1]
	// The buffer is released after the FIN (releaseBuffers): watch it, the accounting and the window while
	// data flows.
	var peak, peakWnd int
	w.onSend = func(from int, tc proto.TCP) {
		if from != 1 || b.finRcvd {
			return
		}
		peak = max(peak, b.rcv.cap())
		peakWnd = max(peakWnd, int(tc.Window())<<b.rcvScale)
		if b.memCharged > b.snd.cap()+b.rcv.cap() || e.MemUsed() != int64(b.memCharged) {
			t.Fatalf("memory accounting: charged %d, buffers %d + %d, engine %d", b.memCharged, b.snd.cap(), b.rcv.cap(), e.MemUsed())
		}
	}
	transfer(t, w, a, b, 16<<20, 0)
	if peak <= 256<<10 || peak > 4<<20 || e.Stat(StatRcvBufGrown) == 0 {
		t.Fatalf("receive buffer %d after 16 MiB read as it came (grown %d times), want above 256 KiB and at most 4 MiB",
			peak, e.Stat(StatRcvBufGrown))
	}
	if peakWnd <= 256<<10 {
		t.Errorf("window at most %d after the buffer grew", peakWnd)
	}

	w = newWire(t, Config{SendBuffer: 1 << 20, RecvBuffer: 256 << 10}, 31)
	a, b = w.pair()
	peak = 0 // the buffer is released after the FIN (releaseBuffers): watch it while data flows
	w.onSend = func(int, proto.TCP) { peak = max(peak, b.rcv.cap()) }
	transfer(t, w, a, b, 16<<20, 0)
	if peak != 256<<10 || w.eng[1].Stat(StatRcvBufGrown) != 0 {
		t.Errorf("explicit RecvBuffer: buffer %d, grown %d times; want 256 KiB, never", peak, w.eng[1].Stat(StatRcvBufGrown))
	}

	w = newWire(t, Config{SendBuffer: 1 << 20}, 32)
	a, b = w.pair()
	s := newStream(5, 4<<20)
	w.run(10*time.Second, func() { pumpWrite(a, s) }, nil)
	if b.rcv.cap() != 256<<10 || b.rcv.n != b.rcv.cap() {
		t.Errorf("application not reading: buffer %d holding %d, want 256 KiB, full", b.rcv.cap(), b.rcv.n)
	}
}

// TestDialWindowWithinBuffer: whatever the peer's ISN (both halves of the sequence space relative to 0,
// and around the wrap), the window a dialled connection advertises after the SYN-ACK never exceeds its
// receive buffer. RCV.ADV was once set from an RCV.NXT of 0 in SYN-SENT and kept, so that for about half
// of the ISNs the connection advertised 0xffff<<7 bytes (8 MiB) against 256 KiB.
func TestDialWindowWithinBuffer(t *testing.T) {
	for _, isn := range []uint32{1, 0x10000, 0x7fff0000, 0x80000001, 0x90000000, 0xfff00000, 0xffffff00} {
		w := newWire(t, Config{}, 52)
		w.drop = func(int, proto.TCP) bool { return true }
		var syn, ack proto.TCP
		w.onSend = func(from int, tc proto.TCP) {
			switch {
			case tc.Flags() == proto.TCPFlagSYN:
				syn = tc
			case tc.Flags() == proto.TCPFlagACK && ack == nil:
				ack = tc
			}
		}
		a, err := w.eng[0].Connect(netip.AddrPortFrom(addrA, 0), netip.AddrPortFrom(addrB, 80))
		if err != nil {
			t.Fatal(err)
		}
		w.tick()
		if syn == nil {
			t.Fatal("no SYN")
		}
		w.inject(0, a.id.remote, a.id.local, proto.TCPFields{Seq: isn, Ack: syn.Seq() + 1,
			Flags: proto.TCPFlagSYN | proto.TCPFlagACK, Window: 65535,
			Options: proto.TCPOptions{MSS: 1460, HasMSS: true, HasWindowScale: true, WindowScale: 7}}, nil)
		if a.State() != StateEstablished || ack == nil {
			t.Fatalf("ISN %#x: state %v", isn, a.State())
		}
		buf := a.rcv.cap()
		if got := int(ack.Window()) << a.rcvScale; got > buf {
			t.Errorf("ISN %#x: first ACK advertises %d bytes, buffer %d", isn, got, buf)
		}
		if d := int(int32(a.rcvAdv - a.rcvNxt)); d < 0 || d > buf {
			t.Errorf("ISN %#x: RCV.ADV - RCV.NXT = %d, buffer %d", isn, d, buf)
		}
		if got := int(a.window()) << a.rcvScale; got > buf || got < buf/2 {
			t.Errorf("ISN %#x: window %d, buffer %d", isn, got, buf)
		}
	}
}

// TestLowerMTU: after an interface's MTU went down, Engine.LowerMTU lowers the MSS of the connections
// routed through it: new segments and the retransmission of one sent (and lost) before the change fit the
// new MTU, and the stream arrives intact. Others keep theirs; SetMTU sets what new connections announce.
func TestLowerMTU(t *testing.T) {
	w := newWire(t, Config{}, 59)
	l, _ := w.eng[1].Listen(netip.AddrPortFrom(addrB, 80))
	a, b := w.dial(l)
	other, _ := w.dial(l)
	if a.mss != 1460 {
		t.Fatalf("mss %d", a.mss)
	}
	const newMTU = 1280
	lowered := false
	var lost Seq
	var lostSent, rexmitSize, big int
	w.onSend = func(from int, tc proto.TCP) {
		if from != 0 || tc.DstPort() != a.id.remote.Port() || len(tc.Payload()) == 0 {
			return
		}
		if lowered && 20+len(tc) > newMTU {
			big++
		}
		if lowered && Seq(tc.Seq()) == lost {
			rexmitSize = len(tc.Payload())
		}
	}
	w.drop = func(from int, tc proto.TCP) bool {
		if from == 0 && len(tc.Payload()) > 1300 && lostSent == 0 {
			lost, lostSent = Seq(tc.Seq()), len(tc.Payload())
			return true
		}
		return false
	}
	s := newStream(7, 300000)
	k := newSink()
	pumpWrite(a, s)
	w.tick() // the first flight leaves at the old MSS, one full-sized segment is lost
	if lostSent == 0 {
		t.Fatal("no full-sized segment before the MTU change")
	}
	match := func(local, remote netip.AddrPort) bool { return local == a.id.local }
	if n := w.eng[0].LowerMTU(newMTU, match); n != 1 || w.eng[0].Stat(StatMSSLowered) != 1 {
		t.Fatalf("LowerMTU changed %d connections", n)
	}
	lowered = true
	if a.mss != newMTU-40 || other.mss != 1460 {
		t.Fatalf("mss %d and %d, want %d and 1460", a.mss, other.mss, newMTU-40)
	}
	w.sendAll(a, b, s, a.CloseWrite, k, time.Minute)
	if !k.eof || k.n != 300000 || string(k.h.Sum(nil)) != string(s.h.w.Sum(nil)) {
		t.Fatalf("transfer after the MTU change: %d bytes, eof %v", k.n, k.eof)
	}
	if big != 0 || rexmitSize == 0 || rexmitSize >= lostSent {
		t.Fatalf("%d segments over the new MTU; segment lost at %d bytes retransmitted at %d", big, lostSent, rexmitSize)
	}
	if n := w.eng[0].LowerMTU(1400, nil); n != 1 || other.mss != 1360 || a.mss != newMTU-40 {
		t.Errorf("LowerMTU(1400) for all: %d changed, mss %d and %d", n, other.mss, a.mss)
	}
	w.eng[1].SetMTU(1000)
	w.drop, w.onSend = nil, nil
	c, _ := w.dial(l)
	if c.mss != 960 {
		t.Errorf("after SetMTU(1000) on the server a new connection has mss %d, want 960", c.mss)
	}
}

// TestSendBufferAutotune: over a 40 ms RTT path with a reader that keeps up, a sender whose application
// keeps its send buffer full gets a larger buffer (Config.SendBufferMax, sndBufExpand) and so more than the
// initial 256 KiB in flight; one whose SendBuffer was set explicitly, or that called SetWriteBuffer, keeps
// its buffer and the cap.
func TestSendBufferAutotune(t *testing.T) {
	run := func(cfg Config, lock bool) (flight int, a *Conn, e *Engine) {
		w := newWire(t, cfg, 80)
		w.delay = int64(20 * time.Millisecond)
		a, b := w.pair()
		if lock {
			a.SetWriteBuffer(256 << 10)
		}
		e = w.eng[0]
		w.onSend = func(from int, tc proto.TCP) {
			if from == 0 {
				flight = max(flight, int(a.sndMax-a.sndUna))
				if a.memCharged > a.snd.cap()+a.rcv.cap() || e.MemUsed() != int64(a.memCharged) {
					t.Fatalf("memory accounting: charged %d, buffers %d + %d, engine %d", a.memCharged, a.snd.cap(), a.rcv.cap(), e.MemUsed())
				}
			}
		}
		transfer(t, w, a, b, 32<<20, 0)
		return flight, a, e
	}
	flight, a, e := run(Config{}, false)
	if flight <= 256<<10 || e.Stat(StatSndBufGrown) == 0 {
		t.Fatalf("at most %d bytes in flight, send buffer grown %d times; want beyond 256 KiB", flight, e.Stat(StatSndBufGrown))
	}
	t.Logf("autotuned: %d bytes in flight at most, buffer grown %d times", flight, e.Stat(StatSndBufGrown))
	for _, tc := range []struct {
		cfg  Config
		lock bool
	}{{Config{SendBuffer: 256 << 10}, false}, {Config{}, true}} {
		flight, a, e = run(tc.cfg, tc.lock)
		if flight > 256<<10 || e.Stat(StatSndBufGrown) != 0 {
			t.Errorf("%+v locked %v: %d bytes in flight, grown %d times; want the buffer kept", tc.cfg, tc.lock, flight, e.Stat(StatSndBufGrown))
		}
	}
	_ = a
}
