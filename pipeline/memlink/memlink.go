package memlink

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
)

// Defaults for Config fields left zero.
const (
	DefaultFrames    = 1024
	DefaultFrameSize = 2048
	DefaultHeadroom  = 256
	DefaultMTU       = 1500
	// StartTime is the fake clock's first reading in ns. It is not 0 so that a Tick returning 0 ("no timer")
	// can never be mistaken for a deadline.
	StartTime = int64(1_000_000_000)
)

// Errors returned by Inject.
var (
	ErrNoFrames     = errors.New("memlink: no free frame (the handler holds them all; raise Config.Frames or look for a leak)")
	ErrFrameTooLong = errors.New("memlink: frame longer than FrameSize-Headroom (raise Config.FrameSize)")
	ErrBadPort      = errors.New("memlink: no such port (ports are numbered from 0 in Config.Ports order)")
	ErrBatchFull    = errors.New("memlink: more frames than pipeline.MaxBatch in one batch")
)

// PortConfig describes one port of the link.
type PortConfig struct {
	Name string
	MAC  proto.MAC
	// MTU is the L3 MTU; 0 means DefaultMTU.
	MTU int
	// TxCapacity bounds how many frames Sent may hold for this port before further Tx verdicts are dropped as
	// DropTxRingFull, to exercise a full TX ring; 0 means unbounded.
	TxCapacity int
	// PartialChecksums marks the port as a veth-like memory link (pipeline.PortInfo.PartialChecksums).
	PartialChecksums bool
}

// Config builds a Link.
type Config struct {
	Ports []PortConfig
	// Frames is the number of frames in the pool (DefaultFrames if 0).
	Frames int
	// FrameSize and Headroom are as in a UMEM (DefaultFrameSize, DefaultHeadroom if 0).
	FrameSize, Headroom int
	// Queue is the queue index reported to the handler and stamped on packets.
	Queue int
	// NewHandler builds the handler under test.
	NewHandler pipeline.NewHandler
}

// Link drives one Handler over in-memory ports.
type Link struct {
	ports    []pipeline.PortInfo
	txCap    []int
	sent     [][][]byte
	pool     *Frames
	handler  pipeline.Handler
	queue    uint16
	now      int64
	wakeAt   int64
	drops    pipeline.DropCounters
	consumed uint64
	batch    pipeline.Batch
	waker    waker
	txCount  []uint64
}

type waker struct{ n atomic.Uint64 }

func (w *waker) Wake() { w.n.Add(1) }

// New builds the frame pool and the ports and calls cfg.NewHandler.
func New(cfg Config) (*Link, error) {
	if cfg.NewHandler == nil {
		return nil, errors.New("memlink: Config.NewHandler is nil (pass the constructor of the handler under test)")
	}
	if len(cfg.Ports) == 0 {
		return nil, errors.New("memlink: no ports (add at least one PortConfig)")
	}
	if cfg.Frames == 0 {
		cfg.Frames = DefaultFrames
	}
	if cfg.FrameSize == 0 {
		cfg.FrameSize = DefaultFrameSize
	}
	if cfg.Headroom == 0 {
		cfg.Headroom = DefaultHeadroom
	}
	if cfg.Headroom >= cfg.FrameSize {
		return nil, fmt.Errorf("memlink: headroom %d leaves no room in %d-byte frames", cfg.Headroom, cfg.FrameSize)
	}
	l := &Link{
		pool:    NewFrames(cfg.Frames, cfg.FrameSize, cfg.Headroom),
		queue:   uint16(cfg.Queue),
		now:     StartTime,
		sent:    make([][][]byte, len(cfg.Ports)),
		txCap:   make([]int, len(cfg.Ports)),
		txCount: make([]uint64, len(cfg.Ports)),
	}
	for i, pc := range cfg.Ports {
		mtu := pc.MTU
		if mtu == 0 {
			mtu = DefaultMTU
		}
		name := pc.Name
		if name == "" {
			name = fmt.Sprintf("mem%d", i)
		}
		l.ports = append(l.ports, pipeline.PortInfo{Index: uint16(i), Name: name, Ifindex: i + 1, MAC: pc.MAC, MTU: mtu,
			PartialChecksums: pc.PartialChecksums})
		l.txCap[i] = pc.TxCapacity
	}
	l.batch.Frames = l.pool
	l.handler = cfg.NewHandler(&pipeline.QueueInfo{Queue: cfg.Queue, Ports: l.ports, Frames: l.pool, Waker: &l.waker})
	if l.handler == nil {
		return nil, errors.New("memlink: NewHandler returned nil")
	}
	return l, nil
}

// Ports is the port list given to the handler.
func (l *Link) Ports() []pipeline.PortInfo { return l.ports }

// Handler is the handler under test.
func (l *Link) Handler() pipeline.Handler { return l.handler }

// Frames is the link's frame pool.
func (l *Link) Frames() *Frames { return l.pool }

// Consumed counts packets the handler used up (verdict Consumed).
func (l *Link) Consumed() uint64 { return l.consumed }

// Now is the fake clock in ns.
func (l *Link) Now() int64 { return l.now }

// WakeAt is the deadline the handler returned from its last Tick (0 for none).
func (l *Link) WakeAt() int64 { return l.wakeAt }

// Wakes is how many times the handler's Waker was called.
func (l *Link) Wakes() uint64 { return l.waker.n.Load() }

// Inject receives frame on port: one driver loop with a batch of that one frame, then a Tick.
func (l *Link) Inject(port int, frame []byte) error { return l.InjectBatch(port, frame) }

// InjectBatch receives frames on port as one batch (at most pipeline.MaxBatch), then runs a Tick, as one poller
// loop would. The frames are copied; the caller keeps its slices. On error nothing was injected.
func (l *Link) InjectBatch(port int, frames ...[]byte) error {
	if port < 0 || port >= len(l.ports) {
		return ErrBadPort
	}
	if len(frames) > pipeline.MaxBatch {
		return ErrBatchFull
	}
	if len(frames) > l.pool.Free() {
		return ErrNoFrames
	}
	for _, f := range frames {
		if len(f) > l.pool.size-l.pool.headroom {
			return ErrFrameTooLong
		}
	}
	b := &l.batch
	b.Reset(l.now)
	for _, f := range frames {
		addr, buf, _ := l.pool.Get()
		p := &b.Pkts[b.N]
		b.N++
		h := l.pool.headroom
		copy(buf[h:], f)
		p.Reset(buf, addr, h, h+len(f))
		p.InPort, p.Queue = uint16(port), l.queue
	}
	l.handler.Process(b)
	l.place(b)
	l.Poll()
	return nil
}

// Poll runs one idle driver loop: the handler's Tick (when it is a pipeline.Ticker) with an empty batch at the
// current time, then places what it emitted. It returns the handler's next deadline (0 without a Tick).
func (l *Link) Poll() int64 {
	b := &l.batch
	b.Reset(l.now)
	l.wakeAt = pipeline.Tick(l.handler, b)
	l.place(b)
	return l.wakeAt
}

// Drain does what a driver does at shutdown: it lets a handler that implements pipeline.Drainer hand back
// the packets it holds, and places them.
func (l *Link) Drain() {
	d, ok := l.handler.(pipeline.Drainer)
	if !ok {
		return
	}
	b := &l.batch
	b.Reset(l.now)
	d.Drain(b)
	l.place(b)
}

// Advance moves the clock forward by d and runs Poll, as a poller waking from sleep would.
func (l *Link) Advance(d time.Duration) int64 {
	l.now += int64(d)
	return l.Poll()
}

// AdvanceTo moves the clock to t (if later) and runs Poll.
func (l *Link) AdvanceTo(t int64) int64 {
	if t > l.now {
		l.now = t
	}
	return l.Poll()
}

// place does what a poller does at the end of a batch.
func (l *Link) place(b *pipeline.Batch) {
	for i := range b.N {
		p := &b.Pkts[i]
		switch p.Verdict {
		case pipeline.Tx:
			port := int(p.OutPort)
			switch {
			case port >= len(l.ports):
				l.drop(p, pipeline.DropBadPort)
			case l.txCap[port] > 0 && len(l.sent[port]) >= l.txCap[port]:
				l.drop(p, pipeline.DropTxRingFull)
			default:
				l.sent[port] = append(l.sent[port], append([]byte(nil), p.Data()...))
				l.txCount[port]++
				l.pool.put(p.Addr, "transmitted")
			}
		case pipeline.Drop:
			l.drop(p, p.Reason)
		case pipeline.Stolen:
			// The handler owns the frame now.
		case pipeline.Consumed:
			l.consumed++
			l.pool.Put(p.Addr)
		case pipeline.Accept:
			l.drop(p, pipeline.DropUnhandled)
		default:
			l.pool.fail(fmt.Errorf("memlink: packet %d has verdict %d that is none of Accept, Drop, Stolen, Tx, Consumed; dropped as unhandled", i, p.Verdict))
			l.drop(p, pipeline.DropUnhandled)
		}
	}
	b.N = 0
}

func (l *Link) drop(p *pipeline.Packet, r pipeline.DropReason) {
	if int(r) < len(l.drops) {
		l.drops[r]++
	}
	l.pool.put(p.Addr, "dropped")
}

// Sent returns the frames transmitted on port since the last call and forgets them.
func (l *Link) Sent(port int) [][]byte {
	if port < 0 || port >= len(l.sent) {
		return nil
	}
	s := l.sent[port]
	l.sent[port] = nil
	return s
}

// TxCount is how many frames were ever transmitted on port.
func (l *Link) TxCount(port int) uint64 {
	if port < 0 || port >= len(l.txCount) {
		return 0
	}
	return l.txCount[port]
}

// Drops is a copy of the drop counters, indexed by reason.
func (l *Link) Drops() pipeline.DropCounters { return l.drops }

// Dropped is the count for one reason.
func (l *Link) Dropped(r pipeline.DropReason) uint64 {
	if int(r) < len(l.drops) {
		return l.drops[r]
	}
	return 0
}

// DropSummary lists the non-zero counters by name, for test failure messages.
func (l *Link) DropSummary() map[string]uint64 {
	m := map[string]uint64{}
	for r, n := range l.drops {
		if n != 0 {
			m[pipeline.DropReason(r).String()] = n
		}
	}
	return m
}

// Outstanding is the number of frames not in the free pool. Between calls these are the frames the handler
// holds (stolen packets, frames it took with Get).
func (l *Link) Outstanding() int { return l.pool.Outstanding() }

// Err is the first ownership violation seen (a frame put back twice or put back while still in a batch), or nil.
func (l *Link) Err() error { return l.pool.Err() }

// CheckAccounting returns an error unless no ownership violation happened and exactly held frames are
// outstanding, held being what the handler says it keeps (0 for a handler that keeps nothing).
func (l *Link) CheckAccounting(held int) error {
	if err := l.pool.Err(); err != nil {
		return err
	}
	if n := l.pool.Outstanding(); n != held {
		return fmt.Errorf("memlink: %d frames outstanding but the handler holds %d: %d leaked (a Drop path that forgot the frame, or a stolen packet never sent nor put back)", n, held, n-held)
	}
	return nil
}
