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
	if c.rcv.n > c.rcv.cap() || c.snd.n > c.snd.cap() || c.rcv.cap() > cfg.RecvBufferMax || c.snd.cap() > cfg.SendBufferMax {
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
	if c.state.synchronized() && (c.mss < minProbeMSS || c.sndScale > 14 || c.rcvScale > 14) {
		t.Fatalf("mss %d, scales %d/%d", c.mss, c.sndScale, c.rcvScale)
	}
	if c.memCharged != c.held() || e.MemUsed() < int64(c.memCharged) || e.MemUsed() > cfg.MemoryLimit {
		t.Fatalf("memory accounting: engine %d, connection charged %d, holds %d", e.MemUsed(), c.memCharged, c.held())
	}
}

// FuzzEstablishedSegment feeds arbitrary segments to an established connection (with data in flight both
// ways): the header is taken from the input, with the ports forced to the connection's so that it reaches
// it, and the sequence and acknowledgment numbers optionally made relative to RCV.NXT and SND.UNA so
// that the fuzzer reaches the in-window paths; mode&4 delivers it twice in one received batch
// (BeginBatch, Flush); mode&8 also hands the engine a Packet Too Big quoting the segment's
// acknowledgment number as our sequence number and its window as the MTU. Nothing may panic and no buffer
// may exceed its limit.
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
	ptb := hdr(proto.TCPFlagACK, 0, 100, proto.TCPOptions{}, 0)
	ptb[0] |= 8
	f.Add(ptb)
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
		if mode&8 != 0 {
			w.eng[1].PacketTooBig(w.now, b.id.local, b.id.remote, tc.Ack(), int(tc.Window()))
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

// FuzzCookieACK completes SYN-cookie handshakes with arbitrary segments: the header and options come from
// the input (the TSecr that carries the cookie's options included), the ports and the acknowledgment
// number are forced to a valid cookie for the tuple and the segment's sequence number. The connection
// built must respect every bound, whatever options it claims.
func FuzzCookieACK(f *testing.F) {
	ack := func(opts proto.TCPOptions, payload int) []byte {
		fl := proto.TCPFields{Seq: 1001, Flags: proto.TCPFlagACK, Window: 1000, Options: opts}
		b := make([]byte, fl.HeaderLen()+payload)
		fl.Encode(b)
		return b
	}
	f.Add(ack(proto.TCPOptions{HasTimestamps: true, TSval: 5, TSecr: 0x17}, 0))
	f.Add(ack(proto.TCPOptions{HasTimestamps: true, TSval: 5, TSecr: 0x3f}, 100))
	f.Add(ack(proto.TCPOptions{}, 10))
	f.Fuzz(func(t *testing.T, data []byte) {
		w := newWire(t, Config{SynQueueLen: 1, RecvBuffer: 8192, SendBuffer: 8192}, 1)
		e := w.eng[1]
		l, _ := e.Listen(netip.AddrPortFrom(addrB, 80))
		l.lastOverflow = w.now
		seg := append([]byte(nil), data...)
		tc, perr := proto.ParseTCP(seg)
		if perr != proto.OK {
			return
		}
		binary.BigEndian.PutUint16(seg[0:], 40000)
		binary.BigEndian.PutUint16(seg[2:], 80)
		id := connID{local: netip.AddrPortFrom(addrB, 80), remote: netip.AddrPortFrom(addrA, 40000)}
		binary.BigEndian.PutUint32(seg[8:], uint32(e.cookie(id, Seq(tc.Seq()-1), 1460, w.now))+1)
		e.Input(w.now, addrA, addrB, tc)
		if _, oerr := proto.ParseTCPOptions(tc.Options()); oerr == proto.OK && tc.Flags() == proto.TCPFlagACK && e.Stat(StatCookiesAccepted) != 1 {
			t.Fatalf("valid cookie ACK not accepted: bad cookies %d", e.Stat(DropBadCookie))
		}
		w.run(time.Minute, nil, nil)
		for _, c := range e.conns {
			checkLimits(t, e, c)
		}
	})
}
