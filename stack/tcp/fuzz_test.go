package tcp

import (
	"encoding/binary"
	"net/netip"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/proto"
)

// checkLimits asserts the bounds the engine promises whatever arrives.
func checkLimits(t testing.TB, e *Engine, c *Conn) {
	t.Helper()
	cfg := e.Config()
	if c.rcv.n > c.rcv.cap() || c.snd.n > c.snd.cap() || c.rcv.cap() > cfg.RecvBufferMax || c.snd.cap() > cfg.SendBuffer {
		t.Fatalf("buffers over their limits: rcv %d/%d snd %d/%d", c.rcv.n, c.rcv.cap(), c.snd.n, c.snd.cap())
	}
	if len(c.ooo) > cfg.MaxOutOfOrder || cap(c.ooo) != cfg.MaxOutOfOrder {
		t.Fatalf("out-of-order queue %d (cap %d) over %d", len(c.ooo), cap(c.ooo), cfg.MaxOutOfOrder)
	}
	for i, r := range c.ooo {
		if !c.rcvNxt.LessThan(r.left) || !r.left.LessThan(r.right) || int(r.right-c.rcvNxt) > c.rcv.free() {
			t.Fatalf("out-of-order range %d [%d,%d) outside (RCV.NXT %d, +%d]", i, r.left, r.right, c.rcvNxt, c.rcv.free())
		}
		if i > 0 && !c.ooo[i-1].right.LessThan(r.left) {
			t.Fatalf("out-of-order ranges overlap")
		}
	}
	if c.nsacked > maxSACKScoreboard {
		t.Fatalf("scoreboard %d", c.nsacked)
	}
	if e.memUsed < 0 || e.memUsed > cfg.MemoryLimit {
		t.Fatalf("memory accounting %d", e.memUsed)
	}
}

// FuzzEstablishedSegment feeds arbitrary segments to an established connection (with data in flight both
// ways): the header is taken from the input, with the ports forced to the connection's so that it reaches
// it, and the sequence and acknowledgment numbers optionally made relative to RCV.NXT and SND.UNA so
// that the fuzzer reaches the in-window paths; mode&4 delivers it twice in one received batch
// (BeginBatch, Flush). Nothing may panic and no buffer may exceed its limit.
func FuzzEstablishedSegment(f *testing.F) {
	hdr := func(flags proto.TCPFlags, seqOff, ackOff uint32, opts proto.TCPOptions, payload int) []byte {
		fl := proto.TCPFields{Seq: seqOff, Ack: ackOff, Flags: flags, Window: 1000, Options: opts}
		b := make([]byte, 1+fl.HeaderLen()+payload)
		b[0] = 3 // relative seq and ack
		fl.Encode(b[1:])
		return b
	}
	f.Add(hdr(proto.TCPFlagACK|proto.TCPFlagPSH, 0, 0, proto.TCPOptions{}, 100))
	f.Add(hdr(proto.TCPFlagACK, 3000, 0, proto.TCPOptions{}, 1448))
	f.Add(hdr(proto.TCPFlagRST, 10, 0, proto.TCPOptions{}, 0))
	f.Add(hdr(proto.TCPFlagSYN, 10, 0, proto.TCPOptions{MSS: 1, HasMSS: true}, 0))
	f.Add(hdr(proto.TCPFlagFIN|proto.TCPFlagACK, 5000, 0, proto.TCPOptions{}, 10))
	f.Add(hdr(proto.TCPFlagACK, 0, 2000, proto.TCPOptions{NSACK: 2, SACK: [4]proto.TCPSACKBlock{{Left: 3000, Right: 4000}, {Left: 5000, Right: 9000}}}, 0))
	f.Add(hdr(proto.TCPFlagACK, 0, 0, proto.TCPOptions{HasTimestamps: true, TSval: 1}, 0))
	f.Add(hdr(proto.TCPFlagACK, 0xffffff00, 0x7fffffff, proto.TCPOptions{}, 0))
	f.Add(hdr(proto.TCPFlagFIN|proto.TCPFlagACK, 0, 0, proto.TCPOptions{}, 10)) // in-order FIN: buffers released
	batch := hdr(proto.TCPFlagACK, 0, 0, proto.TCPOptions{}, 1448)
	batch[0] |= 4
	f.Add(batch)
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) < 1+proto.TCPMinHeaderLen {
			return
		}
		w := newWire(t, Config{RecvBuffer: 8192, SendBuffer: 8192, MaxOutOfOrder: 4}, 1)
		a, b := w.pair()
		a.tryWrite(make([]byte, 6000))
		b.tryWrite(make([]byte, 6000))
		w.run(6*time.Millisecond, nil, nil) // data in flight
		mode := data[0]
		seg := append([]byte(nil), data[1:]...)
		binary.BigEndian.PutUint16(seg[0:], b.id.remote.Port())
		binary.BigEndian.PutUint16(seg[2:], b.id.local.Port())
		b.mu.Lock()
		rcvNxt, sndUna := b.rcvNxt, b.sndUna
		b.mu.Unlock()
		if mode&1 != 0 {
			binary.BigEndian.PutUint32(seg[4:], binary.BigEndian.Uint32(seg[4:])+uint32(rcvNxt))
		}
		if mode&2 != 0 {
			binary.BigEndian.PutUint32(seg[8:], binary.BigEndian.Uint32(seg[8:])+uint32(sndUna))
		}
		tc, perr := proto.ParseTCP(seg)
		if perr != proto.OK {
			return
		}
		if mode&4 != 0 { // as part of a received batch: a stretch ACK waits for Flush
			w.eng[1].BeginBatch()
			w.eng[1].Input(w.now, addrA, addrB, tc)
			w.eng[1].Input(w.now, addrA, addrB, tc)
			w.eng[1].Flush(w.now)
		} else {
			w.eng[1].Input(w.now, addrA, addrB, tc)
		}
		checkLimits(t, w.eng[1], b)
		w.run(2*time.Second, func() { b.tryRead(make([]byte, 4096)); a.tryRead(make([]byte, 4096)) }, nil)
		checkLimits(t, w.eng[1], b)
		checkLimits(t, w.eng[0], a)
	})
}

// FuzzListenerSegment feeds arbitrary segments to a listener (no connection yet).
func FuzzListenerSegment(f *testing.F) {
	f.Add([]byte{0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x02, 0xff, 0xff, 0, 0, 0, 0})
	f.Add([]byte{0x9c, 0x40, 0, 80, 0, 0, 0, 1, 0, 0, 0, 9, 0x50, 0x10, 0xff, 0xff, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, data []byte) {
		w := newWire(t, Config{SynQueueLen: 1}, 1)
		w.eng[1].Listen(netip.AddrPortFrom(addrB, 80))
		tc, perr := proto.ParseTCP(data)
		if perr != proto.OK {
			return
		}
		w.eng[1].Input(w.now, addrA, addrB, tc)
		w.eng[1].Input(w.now, addrA, addrB, tc)
		w.run(time.Minute, nil, nil)
		for _, c := range w.eng[1].conns {
			checkLimits(t, w.eng[1], c)
		}
	})
}
