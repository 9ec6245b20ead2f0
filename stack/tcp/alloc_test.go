package tcp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/proto"
)

// direct connects two engines without a delay queue and with preallocated frames, as a poller would: the
// harness of TestNoAllocs and the benchmarks.
type direct struct {
	e   [2]*Engine
	q   [2][]dseg // segments waiting for delivery to side i
	now int64
}

type dseg struct {
	b        []byte
	n        int
	src, dst netip.Addr
}

func newDirect(tb testing.TB, cfg Config) (*direct, *Conn, *Conn) {
	d := &direct{now: int64(time.Hour)}
	for i := range 2 {
		d.q[i] = make([]dseg, 0, 512)
		for k := 0; k < cap(d.q[i]); k++ {
			d.q[i] = append(d.q[i], dseg{b: make([]byte, 2048)})
		}
		d.q[i] = d.q[i][:0]
	}
	for i := range 2 {
		to := 1 - i
		d.e[i] = NewEngine(cfg, OutputFunc(func(s *Segment) bool {
			q := d.q[to]
			if len(q) == cap(q) {
				return false // no frame: the engine retries on the next Tick
			}
			q = q[:len(q)+1]
			x := &q[len(q)-1]
			x.n = s.Encode(x.b)
			x.src, x.dst = s.Src.Addr(), s.Dst.Addr()
			d.q[to] = q
			return true
		}), nil)
	}
	l, err := d.e[1].Listen(netip.AddrPortFrom(addrB, 80))
	if err != nil {
		tb.Fatal(err)
	}
	a, err := d.e[0].Connect(netip.AddrPortFrom(addrA, 0), netip.AddrPortFrom(addrB, 80))
	if err != nil {
		tb.Fatal(err)
	}
	d.pump()
	b, err := l.AcceptTCP()
	if err != nil || a.State() != StateEstablished {
		tb.Fatalf("no connection: %v %v", err, a.State())
	}
	return d, a, b
}

// pump ticks both engines and delivers until nothing is in flight.
func (d *direct) pump() {
	for range 1000 {
		d.e[0].Tick(d.now)
		d.e[1].Tick(d.now)
		if len(d.q[0]) == 0 && len(d.q[1]) == 0 {
			return
		}
		for i := range 2 {
			q := d.q[i]
			d.q[i] = q[len(q):] // outputs during delivery go to the other side's queue
			d.e[i].BeginBatch() // what is queued arrives as one batch, as a poller's RX batch does
			for k := range q {
				x := &q[k]
				d.e[i].Input(d.now, x.src, x.dst, proto.TCP(x.b[:x.n]))
			}
			d.e[i].Flush(d.now)
			d.q[i] = q[:0]
		}
	}
}

// TestNoAllocs checks the established-state data path: the application writes, the owner sends, the peer
// takes the segments in, acknowledges them, the application reads.
func TestNoAllocs(t *testing.T) {
	d, a, b := newDirect(t, Config{})
	chunk := make([]byte, 4*1448)
	rbuf := make([]byte, 64<<10)
	moved := 0
	step := func() {
		a.tryWrite(chunk)
		d.pump()
		n, _ := b.tryRead(rbuf)
		moved += n
		d.pump()
		d.now += int64(time.Millisecond)
	}
	for range 100 {
		step() // reach steady state: windows open, slices grown
	}
	moved = 0
	if n := testing.AllocsPerRun(200, step); n != 0 {
		t.Fatalf("established data path allocates %v times per step", n)
	}
	if moved != 201*len(chunk) {
		t.Fatalf("moved %d bytes, want %d", moved, 201*len(chunk))
	}
	if a.State() != StateEstablished || b.rcv.n != 0 || a.snd.n != 0 {
		t.Fatalf("state %v, rcv %d, snd %d", a.State(), b.rcv.n, a.snd.n)
	}
}

// TestBatchAck: ten in-order full segments (the initial window) that arrive in one batch (BeginBatch ... Flush) get one ACK
// at the end of the batch, covering all of them; the same segments one per batch get the RFC 5681 §4.2 ACK
// for every second segment.
func TestBatchAck(t *testing.T) {
	for _, batched := range []bool{true, false} {
		d, a, b := newDirect(t, Config{NoDelay: true})
		a.tryWrite(make([]byte, 10*int(a.smss())))
		d.e[0].Tick(d.now) // the ten segments are now in d.q[1]
		segs := d.q[1]
		if len(segs) != 10 {
			t.Fatalf("%d segments sent, want 10", len(segs))
		}
		d.q[1] = segs[len(segs):]
		if batched {
			d.e[1].BeginBatch()
		}
		for k := range segs {
			x := &segs[k]
			d.e[1].Input(d.now, x.src, x.dst, proto.TCP(x.b[:x.n]))
		}
		if batched {
			if len(d.q[0]) != 0 {
				t.Fatalf("%d ACKs before Flush", len(d.q[0]))
			}
			d.e[1].Flush(d.now)
		}
		acks := d.q[0]
		want := 5
		if batched {
			want = 1
		}
		if len(acks) != want {
			t.Fatalf("batched %v: %d ACKs for 10 segments, want %d", batched, len(acks), want)
		}
		if last := proto.TCP(acks[len(acks)-1].b[:acks[len(acks)-1].n]); Seq(last.Ack()) != b.rcvNxt || b.rcvNxt != a.sndMax {
			t.Fatalf("batched %v: last ACK %d, receiver at %d, sender sent up to %d", batched, last.Ack(), b.rcvNxt, a.sndMax)
		}
	}
}

// TestCongestionAvoidanceCountsBytes: in congestion avoidance the window grows by what the ACKs cover
// (RFC 3465 §2.1), so one stretch ACK for a batch of ten segments grows it as much as five ACKs of two.
func TestCongestionAvoidanceCountsBytes(t *testing.T) {
	var smss uint32
	grow := func(segsPerAck int) uint32 {
		d, a, _ := newDirect(t, Config{NoDelay: true, CongestionControl: Reno})
		smss = a.smss()
		a.mu.Lock()
		a.cwnd, a.ssthresh = 10*smss, 10*smss
		a.mu.Unlock()
		a.tryWrite(make([]byte, 10*int(smss)))
		d.e[0].Tick(d.now)
		if len(d.q[1]) != 10 {
			t.Fatalf("%d segments sent, want 10", len(d.q[1]))
		}
		a.mu.Lock()
		defer a.mu.Unlock()
		var o proto.TCPOptions
		for k := 0; k < 10; k += segsPerAck {
			a.ackNew(d.now, a.sndUna+Seq(segsPerAck)*Seq(smss), &o)
		}
		if a.sndUna != a.sndMax {
			t.Fatalf("not all acknowledged")
		}
		return a.cwnd - 10*smss
	}
	one, five := grow(10), grow(2)
	if one != five || one != smss {
		t.Fatalf("cwnd grew by %d with one ACK, %d with five, for a window's worth of data; want one SMSS each", one, five)
	}
}

// BenchmarkDataPath moves 64 KiB per op from one engine to the other through real encoded segments
// (checksums included) and the ACKs back.
func BenchmarkDataPath(b *testing.B) {
	d, x, y := newDirect(b, Config{})
	chunk := make([]byte, 64<<10)
	rbuf := make([]byte, 64<<10)
	b.SetBytes(int64(len(chunk)))
	b.ReportAllocs()
	move := func() {
		off := 0
		for off < len(chunk) {
			off += x.tryWrite(chunk[off:])
			d.pump()
			y.tryRead(rbuf)
			d.pump()
			d.now += int64(100 * time.Microsecond)
		}
	}
	for range 256 {
		move() // 16 MiB first: receive-buffer autotuning reaches its size before the measurement
	}
	for b.Loop() {
		move()
	}
}

// BenchmarkInputInOrder measures Input of one in-order 1448-byte segment on an established connection
// (the receive path alone, with its delayed-ACK bookkeeping).
func BenchmarkInputInOrder(b *testing.B) {
	d, x, y := newDirect(b, Config{RecvBuffer: 1 << 20})
	seg := make([]byte, 2048)
	payload := make([]byte, 1448)
	rbuf := make([]byte, 1<<20)
	b.ReportAllocs()
	b.SetBytes(1448)
	for b.Loop() {
		y.mu.Lock()
		seq, ack := y.rcvNxt, y.sndMax
		y.mu.Unlock()
		f := proto.TCPFields{SrcPort: x.id.local.Port(), DstPort: x.id.remote.Port(), Seq: uint32(seq), Ack: uint32(ack),
			Flags: proto.TCPFlagACK, Window: 65535}
		n := f.HeaderLen()
		copy(seg[n:], payload)
		f.EncodeChecksum(seg[:n+len(payload)], len(payload), addrA, addrB)
		d.e[1].Input(d.now, addrA, addrB, proto.TCP(seg[:n+len(payload)]))
		d.q[0] = d.q[0][:0] // ACKs to the sender are not needed here
		if y.rcv.free() < 4096 {
			y.tryRead(rbuf)
		}
	}
}
