package pktgen

import (
	"sync"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/poller"
)

// DropReceived is the drop reason of frames a Sink (or a Generator's receive side) consumed on purpose, so
// that they are told apart from real drops in the poller's counters.
var DropReceived = pipeline.RegisterDropReason("pktgen_received")

// Sink counts and drops every frame it receives: the "rxdrop" mode.
type Sink struct {
	mu     sync.Mutex
	queues []*sinkQueue
}

type sinkQueue struct {
	packets, bytes uint64
	pub            counters
}

// NewSink returns a Sink; pass its NewHandler as poller.Config.NewHandler.
func NewSink() *Sink { return &Sink{} }

// NewHandler is a pipeline.NewHandler.
func (s *Sink) NewHandler(q *pipeline.QueueInfo) pipeline.Handler {
	s.mu.Lock()
	defer s.mu.Unlock()
	sq := &sinkQueue{}
	s.queues = append(s.queues, sq)
	return sq
}

// Process counts the batch and drops it. The byte count reads only the descriptor lengths, never the data,
// so the sink measures the data path and not the memory bandwidth of touching each frame.
func (q *sinkQueue) Process(b *pipeline.Batch) {
	var bytes uint64
	for i := range b.N {
		p := &b.Pkts[i]
		bytes += uint64(p.Len())
		p.Drop(DropReceived)
	}
	q.packets += uint64(b.N)
	q.bytes += bytes
	q.pub.rxPackets.Store(q.packets)
	q.pub.rxBytes.Store(q.bytes)
}

// Tick has nothing to emit.
func (q *sinkQueue) Tick(*pipeline.Batch) int64 { return 0 }

// Received sums the queues' counters.
func (s *Sink) Received() (packets, bytes uint64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range s.queues {
		packets += q.pub.rxPackets.Load()
		bytes += q.pub.rxBytes.Load()
	}
	return
}

// SizeFor sets the ring and UMEM sizes of a generator's poller config so that the frames a queue can have on
// their way out never exceed its TX ring: the poller then never drops a generated frame as DropTxRingFull, and
// Generator.Sent is what went out. (The poller keeps min(RingSize, (FramesPerQueue-256)/(2*ports)) frames in each
// fill ring; the rest is free for TX.)
func SizeFor(c *poller.Config) {
	c.RingSize = 4096
	c.FramesPerQueue = 4096
}
