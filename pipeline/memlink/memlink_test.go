package memlink

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/pipeline"
)

// testHandler bridges port 0 to port 1, drops frames whose first byte is 0xff, leaves 0xee undecided, and
// holds frames whose first byte is 0x01 until 10ms have passed, then sends them from Tick. 0x02 makes it
// allocate a fresh frame and send a copy out of port 1 as well (a generated packet).
type testHandler struct {
	q      *pipeline.QueueInfo
	held   []pipeline.Packet
	heldAt int64
}

func (h *testHandler) Process(b *pipeline.Batch) {
	n := b.N
	for i := range n {
		p := &b.Pkts[i]
		switch p.Data()[0] {
		case 0xff:
			p.Drop(pipeline.DropFiltered)
		case 0xee:
		case 0x01:
			p.Steal()
			h.held = append(h.held, *p)
			h.heldAt = b.Now
		case 0x02:
			g, ok := b.Alloc()
			if !ok {
				p.Drop(pipeline.DropNoBuffer)
				continue
			}
			g.SetLen(p.Len())
			copy(g.Data(), b.Pkts[i].Data())
			g.Data()[0] = 0x03
			g.Send(1)
			b.Pkts[i].Send(1)
		default:
			p.Send(1)
		}
	}
}

func (h *testHandler) Tick(b *pipeline.Batch) int64 {
	if len(h.held) == 0 {
		return 0
	}
	if b.Now < h.heldAt+int64(10*time.Millisecond) {
		return h.heldAt + int64(10*time.Millisecond)
	}
	for i := range h.held {
		h.held[i].Send(1)
		b.Append(&h.held[i])
	}
	h.held = h.held[:0]
	return 0
}

func newTestLink(t *testing.T) (*Link, *testHandler) {
	t.Helper()
	var h *testHandler
	l, err := New(Config{
		Ports:  []PortConfig{{Name: "a"}, {Name: "b", MTU: 9000}},
		Frames: 8,
		NewHandler: func(q *pipeline.QueueInfo) pipeline.Handler {
			h = &testHandler{q: q}
			return h
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return l, h
}

func TestLinkPlacesByVerdict(t *testing.T) {
	l, h := newTestLink(t)
	if got := h.q.Ports[1]; got.Name != "b" || got.MTU != 9000 || got.Index != 1 {
		t.Errorf("port 1 = %+v", got)
	}
	if h.q.Ports[0].MTU != DefaultMTU {
		t.Errorf("default MTU = %d", h.q.Ports[0].MTU)
	}
	if err := l.InjectBatch(0, []byte{0x10, 1, 2}, []byte{0xff, 9}, []byte{0xee}, []byte{0x02, 7}); err != nil {
		t.Fatal(err)
	}
	sent := l.Sent(1)
	want := [][]byte{{0x10, 1, 2}, {0x02, 7}, {0x03, 7}}
	if len(sent) != len(want) {
		t.Fatalf("sent %x, want %x", sent, want)
	}
	for i := range want {
		if !bytes.Equal(sent[i], want[i]) {
			t.Errorf("sent[%d] = %x, want %x", i, sent[i], want[i])
		}
	}
	if len(l.Sent(1)) != 0 {
		t.Error("Sent did not forget what it returned")
	}
	if got := l.Dropped(pipeline.DropFiltered); got != 1 {
		t.Errorf("filtered drops = %d, want 1", got)
	}
	if got := l.Dropped(pipeline.DropUnhandled); got != 1 {
		t.Errorf("unhandled drops = %d, want 1 (the 0xee frame)", got)
	}
	if err := l.CheckAccounting(0); err != nil {
		t.Error(err)
	}
}

func TestLinkStolenHeldUntilClockAdvances(t *testing.T) {
	l, h := newTestLink(t)
	if err := l.Inject(0, []byte{0x01, 0xaa}); err != nil {
		t.Fatal(err)
	}
	if err := l.CheckAccounting(len(h.held)); err != nil || len(h.held) != 1 {
		t.Fatalf("held %d: %v", len(h.held), err)
	}
	if err := l.CheckAccounting(0); err == nil || !strings.Contains(err.Error(), "1 leaked") {
		t.Errorf("CheckAccounting(0) with one stolen frame = %v, want a leak", err)
	}
	if l.WakeAt() != StartTime+int64(10*time.Millisecond) {
		t.Errorf("WakeAt = %d", l.WakeAt())
	}
	l.Advance(5 * time.Millisecond)
	if len(l.Sent(1)) != 0 {
		t.Fatal("sent before the deadline")
	}
	l.Advance(5 * time.Millisecond)
	if s := l.Sent(1); len(s) != 1 || !bytes.Equal(s[0], []byte{0x01, 0xaa}) {
		t.Fatalf("after deadline sent %x", s)
	}
	if err := l.CheckAccounting(0); err != nil {
		t.Error(err)
	}
}

func TestLinkInjectErrors(t *testing.T) {
	l, _ := newTestLink(t)
	if err := l.Inject(2, []byte{1}); !errors.Is(err, ErrBadPort) {
		t.Errorf("bad port: %v", err)
	}
	if err := l.Inject(0, make([]byte, DefaultFrameSize)); !errors.Is(err, ErrFrameTooLong) {
		t.Errorf("long frame: %v", err)
	}
	// Eight frames in the pool: steal eight, the ninth has no frame.
	for i := range 8 {
		if err := l.Inject(0, []byte{0x01, byte(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.Inject(0, []byte{0x01}); !errors.Is(err, ErrNoFrames) {
		t.Errorf("pool empty: %v", err)
	}
	l.Advance(time.Second)
	if got := len(l.Sent(1)); got != 8 {
		t.Errorf("sent %d after release, want 8", got)
	}
	if err := l.CheckAccounting(0); err != nil {
		t.Error(err)
	}
}

func TestLinkTxCapacity(t *testing.T) {
	l, err := New(Config{
		Ports:      []PortConfig{{}, {TxCapacity: 1}},
		NewHandler: func(q *pipeline.QueueInfo) pipeline.Handler { return &testHandler{q: q} },
	})
	if err != nil {
		t.Fatal(err)
	}
	l.InjectBatch(0, []byte{0x10}, []byte{0x11})
	if len(l.Sent(1)) != 1 || l.Dropped(pipeline.DropTxRingFull) != 1 {
		t.Errorf("TX capacity 1: drops %v", l.DropSummary())
	}
	if err := l.CheckAccounting(0); err != nil {
		t.Error(err)
	}
}

// doublePut returns the frame of a packet it also sends: the link must notice. It has no Tick (Ticker is
// optional).
type doublePut struct{ q *pipeline.QueueInfo }

func (d doublePut) Process(b *pipeline.Batch) {
	for i := range b.N {
		d.q.Frames.Put(b.Pkts[i].Addr)
		b.Pkts[i].Send(0)
	}
}

func TestLinkDetectsDoublePut(t *testing.T) {
	l, err := New(Config{
		Ports:      []PortConfig{{}},
		NewHandler: func(q *pipeline.QueueInfo) pipeline.Handler { return doublePut{q} },
	})
	if err != nil {
		t.Fatal(err)
	}
	l.Inject(0, []byte{1, 2, 3})
	if err := l.CheckAccounting(0); err == nil || !strings.Contains(err.Error(), "already free") {
		t.Errorf("double put not reported: %v", err)
	}
}

func TestFramesPoisonedOnPut(t *testing.T) {
	f := NewFrames(2, 64, 16)
	addr, fr, ok := f.Get()
	if !ok || len(fr) != 64 || cap(fr) != 64 {
		t.Fatalf("Get = %d %d %v", len(fr), cap(fr), ok)
	}
	fr[20] = 1
	f.Put(addr)
	if fr[20] != 0xdd {
		t.Error("freed frame not poisoned")
	}
	f.Put(addr + 1)
	if f.Err() == nil {
		t.Error("bad address not reported")
	}
}

// sendAll is a stateless handler without Tick: the link runs it and reports no deadline.
type sendAll struct{}

func (sendAll) Process(b *pipeline.Batch) {
	for i := range b.N {
		b.Pkts[i].Send(0)
	}
}

func TestLinkHandlerWithoutTick(t *testing.T) {
	l, err := New(Config{Ports: []PortConfig{{}}, NewHandler: func(*pipeline.QueueInfo) pipeline.Handler { return sendAll{} }})
	if err != nil {
		t.Fatal(err)
	}
	if err := l.InjectBatch(0, []byte{1}, []byte{2}); err != nil {
		t.Fatal(err)
	}
	if got := len(l.Sent(0)); got != 2 || l.WakeAt() != 0 || l.Advance(time.Second) != 0 {
		t.Errorf("sent %d, wakeAt %d: want 2 and no deadline", got, l.WakeAt())
	}
	if err := l.CheckAccounting(0); err != nil {
		t.Error(err)
	}
}
