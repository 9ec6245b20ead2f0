package pipeline

import "testing"

// hookBatch is a batch of 64 undecided packets and a selection of all of them.
func hookBatch() (*Batch, []uint16, []uint16) {
	b := new(Batch)
	frame := make([]byte, 2048)
	for i := range 64 {
		b.Pkts[i].Reset(frame, 0, 256, 320)
	}
	b.N = 64
	all := make([]uint16, 64)
	for i := range all {
		all[i] = uint16(i)
	}
	return b, all, make([]uint16, 64)
}

func fiveHooks(h *Hooks, b *Batch, all, sel []uint16) int {
	n := 0
	for hook := PreRouting; hook < NumHooks; hook++ {
		s := h.Run(hook, b, sel[:copy(sel, all)])
		n += len(s)
	}
	return n
}

func oneStageEach() *Hooks {
	h := new(Hooks)
	for hook := PreRouting; hook < NumHooks; hook++ {
		h.Register(hook, 0, "mark", PacketFunc(func(p *Packet) { p.Mark++ }))
	}
	return h
}

func TestHookTraversalNoAllocs(t *testing.T) {
	b, all, sel := hookBatch()
	for _, h := range []*Hooks{new(Hooks), oneStageEach()} {
		if n := testing.AllocsPerRun(100, func() { fiveHooks(h, b, all, sel) }); n != 0 {
			t.Errorf("five hooks allocate %v per batch", n)
		}
	}
	if b.Pkts[0].Mark == 0 {
		t.Error("stages did not run")
	}
}

func BenchmarkHooksEmpty5(b *testing.B) {
	bt, all, sel := hookBatch()
	h := new(Hooks)
	b.ReportAllocs()
	for b.Loop() {
		fiveHooks(h, bt, all, sel)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/pkt")
}

func BenchmarkHooksPacketFunc5(b *testing.B) {
	bt, all, sel := hookBatch()
	h := oneStageEach()
	b.ReportAllocs()
	for b.Loop() {
		fiveHooks(h, bt, all, sel)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*64), "ns/pkt")
}
