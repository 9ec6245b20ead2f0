package pipeline

import "github.com/xdpnet/xdpnet/proto"

// MaxBatch is how many packets a Batch holds: the received vector plus the packets stages generate while
// handling it (ICMP errors, ARP requests, replies). A poller's RX budget must leave room for those.
const MaxBatch = 256

// FrameSource hands out and takes back frames: the UMEM frame pool of a poller queue in production, heap
// frames in tests. It is used by the one goroutine that drives the batch.
type FrameSource interface {
	// Get returns a free frame and its address, or ok=false when none is free.
	Get() (addr uint64, frame []byte, ok bool)
	// Put returns a frame; every frame obtained from Get or received is put back exactly once.
	Put(addr uint64)
	// Headroom is the room reserved at the front of each frame for pushed headers.
	Headroom() int
}

// Batch is a vector of packets handled together. Packets [0, N) are live.
type Batch struct {
	Pkts [MaxBatch]Packet
	N    int
	// Frames supplies frames for generated packets and takes back dropped ones.
	Frames FrameSource
	// Now is the driver's monotonic clock in nanoseconds when the batch started.
	Now int64
}

// Reset empties the batch.
func (b *Batch) Reset(now int64) { b.N, b.Now = 0, now }

// Packets is the live part of the batch.
func (b *Batch) Packets() []Packet { return b.Pkts[:b.N] }

// Room is how many more packets fit.
func (b *Batch) Room() int { return MaxBatch - b.N }

// Append adds p (a stolen packet being sent, say) to the batch; false when the batch is full.
func (b *Batch) Append(p *Packet) bool {
	if b.N == MaxBatch {
		return false
	}
	b.Pkts[b.N] = *p
	b.N++
	return true
}

// Alloc adds a packet with a fresh frame to the batch, empty and starting after the headroom. It fails when
// the batch is full or the frame source is empty; callers count that as DropNoBuffer.
func (b *Batch) Alloc() (*Packet, bool) {
	if b.N == MaxBatch || b.Frames == nil {
		return nil, false
	}
	addr, frame, ok := b.Frames.Get()
	if !ok {
		return nil, false
	}
	p := &b.Pkts[b.N]
	b.N++
	h := b.Frames.Headroom()
	p.Reset(frame, addr, h, h)
	return p, true
}

// Waker wakes a driver that sleeps waiting for traffic, so that Ticker.Tick runs soon. Safe from any goroutine.
type Waker interface{ Wake() }

// PortInfo describes one port (an interface) of the driver.
type PortInfo struct {
	Index   uint16
	Name    string
	Ifindex int
	MAC     proto.MAC
	MTU     int
	// PartialChecksums: the port's peer is in this host's memory (veth), so a TCP or UDP frame may arrive with
	// its checksum left partial by the sender's TX checksum offload (CHECKSUM_PARTIAL: the field holds only the
	// pseudo-header sum; AF_XDP does not say so). No wire can corrupt such a frame, so a handler may accept it
	// and must finish the checksum before the frame leaves (proto.FinishPartialChecksum). Real NICs deliver
	// complete checksums.
	PartialChecksums bool
}

// QueueInfo is what a Handler learns about the queue it runs on when it is created.
type QueueInfo struct {
	Queue  int
	Ports  []PortInfo
	Frames FrameSource
	Waker  Waker
}

// Handler is the per-queue logic a driver runs, on the driver's goroutine. A stateless handler (a bridge, a
// MAC rewriter) has only Process; one that holds packets or keeps timers also implements Ticker.
type Handler interface {
	// Process gives every packet of a received batch a verdict. It may append generated packets.
	Process(b *Batch)
}

// Ticker is an optional Handler method, for handlers that hold or produce packets outside a received batch
// (neighbour queues, timers, application sends). The driver calls Tick on every loop with an empty batch;
// Tick returns the monotonic time in ns at which it next needs a Tick even without traffic, or 0 for none,
// and the driver may sleep until then. A handler without Tick asks for no timed wake-up.
type Ticker interface {
	Tick(b *Batch) (wakeAt int64)
}

// Tick is what a driver calls on each loop: h's Tick when h is a Ticker, otherwise nothing (deadline 0). It
// does not allocate.
func Tick(h Handler, b *Batch) (wakeAt int64) {
	if t, ok := h.(Ticker); ok {
		return t.Tick(b)
	}
	return 0
}

// Drainer is an optional Handler method: at driver shutdown, after RX has stopped, the driver calls Drain
// with an empty batch so the handler can emit or drop the packets it holds; they are placed like Ticker.Tick's.
// Without it, frames a handler holds at shutdown are reported as leaked by the driver's accounting.
type Drainer interface {
	Drain(b *Batch)
}

// PortObserver is an optional Handler method. When a port's link goes down or up, changes MTU or MAC, or is
// deleted and re-created (new ifindex), the driver calls PortChanged on each queue's handler, on that
// queue's goroutine between batches, with the port as it is now and whether it can transmit (up:
// administratively up, carrier on, and present). Running on the handler's own goroutine, it updates the
// handler's per-port state (egress MTU for fragmentation and "packet too big", the source MAC, whether to
// route out of the port) without locks.
type PortObserver interface {
	PortChanged(port PortInfo, up bool)
}

// NewHandler builds the Handler of one queue.
type NewHandler func(q *QueueInfo) Handler
