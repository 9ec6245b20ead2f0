package poller

import (
	"bytes"
	"sync/atomic"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/pipeline"
)

// sendOnWake emits one frame from Tick when an application goroutine asked for it.
type sendOnWake struct {
	pending *atomic.Bool
	frame   []byte
}

func (h *sendOnWake) Process(b *pipeline.Batch) {
	for i := range b.Packets() {
		b.Pkts[i].Drop(pipeline.DropFiltered)
	}
}

func (h *sendOnWake) Tick(b *pipeline.Batch) int64 {
	if !h.pending.CompareAndSwap(true, false) {
		return 0
	}
	p, ok := b.Alloc()
	if !ok {
		return 0
	}
	p.SetLen(len(h.frame))
	copy(p.Data(), h.frame)
	p.Send(0)
	return 0
}

// TestWakerWakesSleepingQueueVeth: an application goroutine's Wake gets a sleeping Adaptive queue to run Tick
// at once, long before its 10s idle timeout.
func TestWakerWakesSleepingQueueVeth(t *testing.T) {
	dut, peer, v := twoHosts(t)
	var pending atomic.Bool
	var waker pipeline.Waker
	frame := testFrame(v.B.HWAddr(), v.A.HWAddr(), etherReply, 42, 100)
	nh := func(q *pipeline.QueueInfo) pipeline.Handler {
		waker = q.Waker
		return &sendOnWake{pending: &pending, frame: frame}
	}
	p, stop := startPoller(t, dut, Config{Interfaces: []string{"eth0"}, NewHandler: nh, RingSize: 256, FramesPerQueue: 1024,
		IdleTimeout: 10 * time.Second, IdleSpin: 20 * time.Microsecond})
	defer stop()
	ps := openPacket(t, peer, "eth0")
	deadline := time.Now().Add(3 * time.Second)
	for p.Stats().Queues[0].Sleeps < 1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond) // now in poll(2) for up to 10s
	pending.Store(true)
	waker.Wake()
	got := ps.capture(etherReply, 1, 3*time.Second)
	if len(got) != 1 || !bytes.Equal(got[0], frame) {
		t.Fatalf("peer got %x after Wake, want %x", got, frame)
	}
}
