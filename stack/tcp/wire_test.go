package tcp

import (
	"math/rand"
	"net/netip"
	"sort"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/proto"
)

// wire connects two engines back to back through an in-memory link with a fake clock. Every segment is
// encoded to real bytes with Segment.Encode, its checksum verified with proto's pseudo-header helpers, and
// parsed back with proto.ParseTCP before the other engine sees it. Loss, duplication and reordering come
// from a seeded RNG.
type wire struct {
	t       testing.TB
	now     int64
	eng     [2]*Engine
	addr    [2]netip.Addr
	q       []wpkt
	seq     int
	rng     *rand.Rand
	delay   int64
	loss    float64
	dup     float64
	jitter  int64 // reorder: extra random delay up to this
	drop    func(from int, t proto.TCP) bool
	onSend  func(from int, t proto.TCP)
	onStep  func() // runs before every step, outside the engines (deliver what Output queued for them)
	wake    [2]int64
	sent    [2]int
	wrapped int     // segments whose payload wrapped around the send buffer
	refuse  float64 // probability that Output reports no room
	refused int
	badSums int
}

type wpkt struct {
	at   int64
	ord  int
	to   int
	src  netip.Addr
	dst  netip.Addr
	data []byte
}

var (
	addrA = netip.MustParseAddr("198.18.0.1")
	addrB = netip.MustParseAddr("198.18.0.2")
)

func newWire(t testing.TB, cfg Config, seed int64) *wire {
	w := &wire{t: t, now: int64(time.Hour), addr: [2]netip.Addr{addrA, addrB}, rng: rand.New(rand.NewSource(seed)),
		delay: int64(5 * time.Millisecond)}
	for i := range 2 {
		i := i
		c := cfg
		c.Key[0] = byte(i + 1)
		w.eng[i] = NewEngine(c, OutputFunc(func(s *Segment) bool { return w.output(i, s) }), nil)
	}
	return w
}

func (w *wire) output(from int, s *Segment) bool {
	if w.refuse > 0 && w.rng.Float64() < w.refuse {
		w.refused++
		return false // Output has no room: nothing leaves
	}
	if len(s.Data[1]) > 0 {
		w.wrapped++
	}
	b := make([]byte, s.Len())
	if n := s.Encode(b); n != len(b) {
		w.t.Fatalf("Encode wrote %d of %d bytes", n, len(b))
	}
	if s.Src.Addr() != w.addr[from] {
		w.t.Fatalf("engine %d sent from %v", from, s.Src)
	}
	tc, err := proto.ParseTCP(b)
	if err != proto.OK {
		w.t.Fatalf("emitted segment does not parse: %v", err)
	}
	// The checksum over the pseudo header, computed independently of Encode.
	if proto.Fold(proto.Sum(b, proto.PseudoHeaderSum(s.Src.Addr(), s.Dst.Addr(), proto.ProtoTCP, len(b)))) != 0xffff {
		w.badSums++
		w.t.Errorf("bad checksum on emitted segment %v", tc.Flags())
	}
	w.sent[from]++
	if w.onSend != nil {
		w.onSend(from, tc)
	}
	if w.drop != nil && w.drop(from, tc) {
		return true
	}
	if w.loss > 0 && w.rng.Float64() < w.loss {
		return true
	}
	n := 1
	if w.dup > 0 && w.rng.Float64() < w.dup {
		n = 2
	}
	for range n {
		at := w.now + w.delay
		if w.jitter > 0 {
			at += w.rng.Int63n(w.jitter)
		}
		w.seq++
		w.q = append(w.q, wpkt{at: at, ord: w.seq, to: 1 - from, src: s.Src.Addr(), dst: s.Dst.Addr(), data: b})
	}
	return true
}

// inject delivers a hand-built segment to engine `to` now.
func (w *wire) inject(to int, src, dst netip.AddrPort, f proto.TCPFields, payload []byte) {
	f.SrcPort, f.DstPort = src.Port(), dst.Port()
	b := make([]byte, f.HeaderLen()+len(payload))
	copy(b[f.HeaderLen():], payload)
	f.EncodeChecksum(b, len(payload), src.Addr(), dst.Addr())
	tc, _ := proto.ParseTCP(b)
	if !tc.ChecksumValid(src.Addr(), dst.Addr()) {
		w.t.Fatal("inject: bad checksum")
	}
	w.eng[to].Input(w.now, src.Addr(), dst.Addr(), tc)
	w.tick()
}

func (w *wire) tick() {
	for i := range 2 {
		w.wake[i] = w.eng[i].Tick(w.now)
	}
}

// step advances to the next event (a packet arrival or a timer) and processes it; false when idle.
func (w *wire) step() bool { return w.stepUntil(1 << 62) }

// stepUntil is step that does not go past the time limit.
func (w *wire) stepUntil(limit int64) bool {
	if w.onStep != nil {
		w.onStep()
	}
	w.tick()
	next := int64(0)
	for _, p := range w.q {
		if next == 0 || p.at < next {
			next = p.at
		}
	}
	for _, t := range w.wake {
		if t != 0 && (next == 0 || t < next) {
			next = t
		}
	}
	if next == 0 {
		return false
	}
	if next > limit {
		w.now = max(w.now, limit)
		return true
	}
	if next > w.now {
		w.now = next
	}
	sort.SliceStable(w.q, func(i, j int) bool {
		if w.q[i].at != w.q[j].at {
			return w.q[i].at < w.q[j].at
		}
		return w.q[i].ord < w.q[j].ord
	})
	k := 0
	for k < len(w.q) && w.q[k].at <= w.now {
		k++
	}
	due := append([]wpkt(nil), w.q[:k]...)
	w.q = append(w.q[:0], w.q[k:]...)
	for _, p := range due {
		tc, err := proto.ParseTCP(p.data)
		if err != proto.OK || !tc.ChecksumValid(p.src, p.dst) {
			w.t.Fatalf("segment on the wire does not verify")
		}
		w.eng[p.to].Input(w.now, p.src, p.dst, tc)
	}
	w.tick()
	return true
}

// run steps until cond is true (checked after app runs on each step) or d of fake time passed.
func (w *wire) run(d time.Duration, app func(), cond func() bool) bool {
	end := w.now + int64(d)
	for w.now < end {
		if app != nil {
			app()
		}
		if cond != nil && cond() {
			return true
		}
		if !w.stepUntil(end) {
			if app == nil {
				return cond != nil && cond()
			}
			// Idle: let time pass so that application polling continues.
			w.now += int64(time.Millisecond)
		}
	}
	return cond != nil && cond()
}

func accepted(l *Listener) *Conn {
	select {
	case c := <-l.acceptCh:
		return c
	default:
		return nil
	}
}

// pair establishes a connection from engine 0 to a listener on engine 1.
func (w *wire) pair() (a, b *Conn) {
	w.t.Helper()
	l, err := w.eng[1].Listen(netip.AddrPortFrom(addrB, 80))
	if err != nil {
		w.t.Fatal(err)
	}
	a, err = w.eng[0].Connect(netip.AddrPortFrom(addrA, 0), netip.AddrPortFrom(addrB, 80))
	if err != nil {
		w.t.Fatal(err)
	}
	if !w.run(10*time.Second, nil, func() bool {
		if b == nil {
			b = accepted(l)
		}
		return b != nil && a.State() == StateEstablished
	}) {
		w.t.Fatalf("no connection: client %v, accepted %v", a.State(), b != nil)
	}
	return a, b
}
