package pipeline

import (
	"regexp"
	"slices"
	"strings"
	"testing"
)

func newPacket(frameLen, start, end int) *Packet {
	f := make([]byte, frameLen)
	for i := range f {
		f[i] = byte(i)
	}
	p := new(Packet)
	p.Reset(f, 4096, start, end)
	return p
}

func TestPacketPullPushSetLen(t *testing.T) {
	p := newPacket(64, 16, 40)
	if p.Len() != 24 || p.Offset() != 16 || p.Tailroom() != 24 || p.Data()[0] != 16 || p.Addr != 4096 {
		t.Fatalf("after Reset: len %d off %d tail %d", p.Len(), p.Offset(), p.Tailroom())
	}
	if p.L3 != -1 || p.L4 != -1 || p.Verdict != Accept {
		t.Fatalf("Reset left L3 %d L4 %d verdict %v", p.L3, p.L4, p.Verdict)
	}
	p.L3, p.L4 = 14, 34
	if !p.Pull(14) || p.Data()[0] != 30 || p.Len() != 10 {
		t.Fatalf("Pull(14): data[0] %d len %d", p.Data()[0], p.Len())
	}
	if p.L3 != 0 || p.L4 != 20 {
		t.Errorf("after Pull(14) L3 %d L4 %d, want 0 20", p.L3, p.L4)
	}
	if !p.Pull(1) || p.L3 != -1 || p.L4 != 19 {
		t.Errorf("Pull past L3: L3 %d L4 %d, want -1 19", p.L3, p.L4)
	}
	if p.Pull(p.Len()+1) || p.Pull(-1) {
		t.Error("Pull beyond the data or negative succeeded")
	}
	if !p.Pull(p.Len()) || p.Len() != 0 {
		t.Error("Pull of the whole data failed")
	}

	p = newPacket(64, 16, 40)
	p.L3 = 0
	h, ok := p.Push(16)
	if !ok || len(h) != 16 || h[0] != 0 || p.Offset() != 0 || p.Len() != 40 {
		t.Fatalf("Push(16) = %v len %d off %d", ok, len(h), p.Offset())
	}
	if p.L3 != 16 || p.L4 != -1 {
		t.Errorf("Push shifted L3 to %d L4 to %d, want 16 -1", p.L3, p.L4)
	}
	h[0] = 0xaa
	if p.Frame()[0] != 0xaa {
		t.Error("Push did not return the frame's bytes")
	}
	if _, ok := p.Push(1); ok {
		t.Error("Push beyond the headroom succeeded")
	}
	if _, ok := p.Push(-1); ok {
		t.Error("negative Push succeeded")
	}

	p = newPacket(64, 16, 40)
	if !p.SetLen(48) || p.Len() != 48 || p.Tailroom() != 0 {
		t.Errorf("SetLen to the end of the frame: len %d tail %d", p.Len(), p.Tailroom())
	}
	if p.SetLen(49) || p.SetLen(-1) || p.Len() != 48 {
		t.Error("SetLen beyond the frame or negative succeeded or changed the length")
	}
	if !p.SetLen(4) || p.Len() != 4 || p.Data()[3] != 19 {
		t.Error("SetLen trim failed")
	}
}

func TestPacketVerdicts(t *testing.T) {
	p := newPacket(64, 0, 10)
	p.Drop(DropTTLExpired)
	if p.Verdict != Drop || p.Reason != DropTTLExpired {
		t.Errorf("Drop: %v %v", p.Verdict, p.Reason)
	}
	p.Send(3)
	if p.Verdict != Tx || p.OutPort != 3 {
		t.Errorf("Send: %v %d", p.Verdict, p.OutPort)
	}
	p.Steal()
	if p.Verdict != Stolen {
		t.Errorf("Steal: %v", p.Verdict)
	}
	for v, want := range map[Verdict]string{Accept: "accept", Drop: "drop", Stolen: "stolen", Tx: "tx", 9: "verdict?"} {
		if v.String() != want {
			t.Errorf("Verdict(%d) = %q, want %q", v, v.String(), want)
		}
	}
}

// heapFrames is a minimal FrameSource for the core tests; memlink has the accounting one.
type heapFrames struct {
	free [][]byte
	got  int
}

func (h *heapFrames) Get() (uint64, []byte, bool) {
	if len(h.free) == 0 {
		return 0, nil, false
	}
	f := h.free[len(h.free)-1]
	h.free = h.free[:len(h.free)-1]
	h.got++
	return uint64(h.got), f, true
}
func (h *heapFrames) Put(uint64)    {}
func (h *heapFrames) Headroom() int { return 32 }

func TestBatchAllocAppend(t *testing.T) {
	var b Batch
	if _, ok := b.Alloc(); ok {
		t.Fatal("Alloc without a frame source succeeded")
	}
	b.Frames = &heapFrames{free: [][]byte{make([]byte, 128)}}
	b.Reset(77)
	p, ok := b.Alloc()
	if !ok || b.N != 1 || p != &b.Pkts[0] || p.Offset() != 32 || p.Len() != 0 || p.Addr != 1 || p.L3 != -1 {
		t.Fatalf("Alloc: ok %v N %d off %d len %d", ok, b.N, p.Offset(), p.Len())
	}
	if _, ok := b.Alloc(); ok || b.N != 1 {
		t.Error("Alloc with an empty source succeeded or grew the batch")
	}
	q := *newPacket(64, 0, 5)
	q.Send(2)
	for b.Room() > 0 {
		if !b.Append(&q) {
			t.Fatalf("Append failed with room %d", b.Room())
		}
	}
	if b.N != MaxBatch || b.Append(&q) || len(b.Packets()) != MaxBatch {
		t.Errorf("full batch: N %d", b.N)
	}
	if b.Pkts[1].Verdict != Tx || b.Pkts[1].OutPort != 2 || b.Now != 77 {
		t.Error("Append did not copy the packet")
	}
	b.Frames.(*heapFrames).free = [][]byte{make([]byte, 128)}
	if _, ok := b.Alloc(); ok {
		t.Error("Alloc on a full batch succeeded")
	}
	b.Reset(5)
	if b.N != 0 || b.Now != 5 || b.Room() != MaxBatch {
		t.Error("Reset")
	}
}

type recordStage struct {
	name string
	log  *[]string
	f    func(p *Packet)
}

func (r recordStage) Process(b *Batch, sel []uint16) {
	*r.log = append(*r.log, r.name)
	for _, i := range sel {
		if b.Pkts[i].Verdict != Accept {
			*r.log = append(*r.log, "saw decided packet")
		}
		if r.f != nil {
			r.f(&b.Pkts[i])
		}
	}
}

func TestHooksOrderByPriority(t *testing.T) {
	var h Hooks
	var log []string
	h.Register(Forward, 10, "c", recordStage{name: "c", log: &log})
	h.Register(Forward, -5, "a", recordStage{name: "a", log: &log})
	h.Register(Forward, 10, "d", recordStage{name: "d", log: &log})
	h.Register(Forward, 0, "b", recordStage{name: "b", log: &log})
	h.Register(Input, 0, "in", recordStage{name: "in", log: &log})
	if got := h.Stages(Forward); !slices.Equal(got, []string{"a", "b", "c", "d"}) {
		t.Errorf("Stages(Forward) = %v", got)
	}
	var b Batch
	b.N = 1
	b.Pkts[0] = *newPacket(64, 0, 10)
	sel := []uint16{0}
	h.Run(Forward, &b, sel)
	if !slices.Equal(log, []string{"a", "b", "c", "d"}) {
		t.Errorf("run order %v", log)
	}
	if !h.Empty(PostRouting) || h.Empty(Input) || !(*Hooks)(nil).Empty(Input) {
		t.Error("Empty")
	}
	if got := (*Hooks)(nil).Run(Input, &b, sel); len(got) != 1 {
		t.Error("nil Hooks must pass everything through")
	}
}

func TestHooksRunNarrowsSelection(t *testing.T) {
	var h Hooks
	var log []string
	// The first stage drops even packets, the second sends multiples of 3, the third must see only the rest.
	h.Register(PreRouting, 0, "drop-even", recordStage{name: "1", log: &log, f: func(p *Packet) {
		if p.Mark%2 == 0 {
			p.Drop(DropFiltered)
		}
	}})
	h.Register(PreRouting, 1, "tx-3", recordStage{name: "2", log: &log, f: func(p *Packet) {
		if p.Mark%3 == 0 {
			p.Send(1)
		}
	}})
	var seen []uint32
	h.Register(PreRouting, 2, "rest", PacketFunc(func(p *Packet) { seen = append(seen, p.Mark) }))
	h.Register(PreRouting, 3, "steal-all", recordStage{name: "4", log: &log, f: func(p *Packet) { p.Steal() }})
	h.Register(PreRouting, 4, "never", recordStage{name: "never", log: &log})

	var b Batch
	sel := make([]uint16, 0, 12)
	for i := range 12 {
		b.Pkts[i] = *newPacket(64, 0, 10)
		b.Pkts[i].Mark = uint32(i)
		sel = append(sel, uint16(i))
	}
	b.N = 12
	out := h.Run(PreRouting, &b, sel)
	if len(out) != 0 {
		t.Errorf("after steal-all %d left", len(out))
	}
	if !slices.Equal(seen, []uint32{1, 5, 7, 11}) {
		t.Errorf("third stage saw %v", seen)
	}
	if slices.Contains(log, "saw decided packet") || slices.Contains(log, "never") {
		t.Errorf("log %v: a stage saw a decided packet, or ran with nothing selected", log)
	}
	if b.Pkts[3].Verdict != Tx || b.Pkts[4].Verdict != Drop || b.Pkts[5].Verdict != Stolen {
		t.Error("verdicts")
	}

	// Without the steal stage, Run returns exactly the undecided packets in order.
	var h2 Hooks
	h2.Register(Output, 0, "drop-even", PacketFunc(func(p *Packet) {
		if p.Mark%2 == 0 {
			p.Drop(DropFiltered)
		}
	}))
	for i := range 12 {
		b.Pkts[i].Verdict = Accept
		sel = append(sel[:i], uint16(i))
	}
	out = h2.Run(Output, &b, sel[:12])
	if !slices.Equal(out, []uint16{1, 3, 5, 7, 9, 11}) {
		t.Errorf("narrowed selection %v", out)
	}
}

func TestHookNames(t *testing.T) {
	for h := range NumHooks {
		got, err := ParseHook(h.String())
		if err != nil || got != h {
			t.Errorf("ParseHook(%q) = %v, %v", h.String(), got, err)
		}
	}
	if _, err := ParseHook("FORWARD"); err == nil || !strings.Contains(err.Error(), "want one of") {
		t.Errorf("ParseHook of an unknown name: %v", err)
	}
	if NumHooks.String() != "hook?" {
		t.Error("out of range hook name")
	}
}

var snake = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

func TestDropReasonNames(t *testing.T) {
	seen := map[string]DropReason{}
	for r := DropNone; r < numBuiltinDropReasons; r++ {
		n := r.String()
		if !snake.MatchString(n) {
			t.Errorf("reason %d name %q is not snake_case", r, n)
		}
		if o, dup := seen[n]; dup {
			t.Errorf("reasons %d and %d share the name %q", o, r, n)
		}
		seen[n] = r
	}
	for r, want := range map[DropReason]string{DropUnhandled: "unhandled", DropTTLExpired: "ttl_expired",
		DropFiltered: "filtered", DropTapOverflow: "tap_overflow", DropIPChecksum: "ip_checksum"} {
		if r.String() != want {
			t.Errorf("%d.String() = %q, want %q", r, r.String(), want)
		}
	}
	if got := DropReason(MaxDropReasons + 3).String(); got != "drop_reason_131" {
		t.Errorf("unknown reason name %q", got)
	}
}

func TestRegisterDropReason(t *testing.T) {
	before := NumDropReasons()
	r := RegisterDropReason("test_custom_reason")
	if int(r) != before || r.String() != "test_custom_reason" || NumDropReasons() != before+1 {
		t.Errorf("registered %d %q, NumDropReasons %d (before %d)", r, r.String(), NumDropReasons(), before)
	}
	for _, name := range []string{"test_custom_reason", "filtered"} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("registering %q twice did not panic", name)
				}
			}()
			RegisterDropReason(name)
		}()
	}
	if NumDropReasons() != before+1 {
		t.Error("a failed registration added a reason")
	}
}

type processOnly struct{ n int }

func (h *processOnly) Process(*Batch) { h.n++ }

type ticking struct{ processOnly }

func (*ticking) Tick(b *Batch) int64 { return b.Now + 5 }

// TestTickOptional: Tick runs a Ticker's Tick and gives a handler without one no deadline, without allocating.
func TestTickOptional(t *testing.T) {
	b := &Batch{Now: 100}
	var plain, timed Handler = &processOnly{}, &ticking{}
	if w := Tick(plain, b); w != 0 {
		t.Errorf("Tick(process-only handler) = %d, want 0", w)
	}
	if w := Tick(timed, b); w != 105 {
		t.Errorf("Tick(Ticker) = %d, want 105", w)
	}
	if n := testing.AllocsPerRun(100, func() { Tick(plain, b); Tick(timed, b) }); n != 0 {
		t.Errorf("Tick allocates %v times", n)
	}
}
