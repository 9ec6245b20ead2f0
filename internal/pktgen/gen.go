package pktgen

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
)

// FCSLen is the Ethernet frame check sequence the NIC appends: a 64-byte frame on the wire is 60 bytes in a
// descriptor.
const FCSLen = 4

// MinFrameSize and MaxFrameSize bound Config.FrameSize (on-wire sizes, FCS included).
const (
	MinFrameSize = 64
	MaxFrameSize = 1518
)

// hdrLen is Ethernet + IPv4 (no options) + UDP.
const hdrLen = proto.EthernetHeaderLen + proto.IPv4MinHeaderLen + proto.UDPHeaderLen

// DefaultBurst is how many frames a Tick emits at most by default: one poller batch.
const DefaultBurst = 64

// MaxMix is the longest Config.Mix (the live generator picks a frame's size with a 64-bit mask per size).
const MaxMix = 64

// IMIX is the simple IMIX: 64-, 576- and 1500-byte frames (on the wire, FCS included) in the ratio 7:4:1,
// spread over the cycle so that the large frames do not come in runs. The mean frame is 354.3 bytes.
var IMIX = []int{64, 576, 64, 64, 576, 64, 1500, 64, 576, 64, 576, 64}

// Config describes the traffic of a Generator.
type Config struct {
	// SrcMAC and DstMAC are the Ethernet addresses; DstMAC is the next hop (the device under test).
	SrcMAC, DstMAC proto.MAC
	// Src and Dst are the IPv4 endpoints. Flow i uses source port Src.Port()+i (wrapping at 65535).
	Src, Dst netip.AddrPort
	// Flows is the number of flows (UDP source ports), 1..65536 (default 1).
	Flows int
	// FrameSize is the on-wire frame size including the FCS, MinFrameSize..MaxFrameSize (default 64); the
	// frames handed to AF_XDP are FrameSize-FCSLen bytes long.
	FrameSize int
	// Rate limits the generator to about this many packets per second over all queues; 0 is as fast as
	// possible.
	Rate int
	// Mix, when set, replaces FrameSize: the on-wire sizes of consecutive frames, cycled through (each
	// MinFrameSize..MaxFrameSize, at most MaxMix entries; IMIX is one). Each queue cycles on its own.
	Mix []int
	// Count stops the generator after this many packets over all queues; 0 is unlimited.
	Count uint64
	// Port is the egress port index (the poller's Config.Interfaces index).
	Port uint16
	// Burst is the most frames one Tick emits (default DefaultBurst, at most pipeline.MaxBatch).
	Burst int
	// Queues is how many poller queues share Rate and Count (default 1); set it to the poller's Queues.
	Queues int
}

// ErrConfig is wrapped by every configuration error of NewGenerator.
var ErrConfig = errors.New("pktgen: bad configuration")

// Generator emits frames from the Tick of each queue's handler and counts (and drops) what it receives.
type Generator struct {
	cfg Config
	// sizes are the distinct frame lengths (without FCS) in the order Mix first names them; tmpls[d] holds
	// Flows templates of sizes[d] bytes back to back; mix is the cycle of indexes into sizes (one entry, 0,
	// without a Mix).
	sizes  []int
	tmpls  [][]byte
	mix    []uint8
	mu     sync.Mutex
	queues []*genQueue
	start  atomic.Int64 // wall clock ns of the first Tick, 0 before
	// stopped makes every Tick emit nothing, so that a poller shutting down (its drain keeps calling Tick)
	// sees the generator go quiet and its TX completions come back.
	stopped atomic.Bool
}

// counters is one queue's published counters on its own cache lines.
type counters struct {
	_                                  [64]byte
	sent, rxPackets, rxBytes, noBuffer atomic.Uint64
	_                                  [64]byte
}

type genQueue struct {
	g        *Generator
	port     uint16
	flow     int
	pos      int    // position in the generator's mix
	share    uint64 // this queue's part of Count (0: unlimited)
	rate     float64
	t0       int64 // batch clock of the first Tick
	sent     uint64
	noBuffer uint64
	rxP, rxB uint64
	pub      counters
}

// NewGenerator checks cfg and prebuilds one frame template per flow.
func NewGenerator(cfg Config) (*Generator, error) {
	c := cfg
	if c.Flows == 0 {
		c.Flows = 1
	}
	if c.FrameSize == 0 {
		c.FrameSize = MinFrameSize
	}
	if c.Burst == 0 {
		c.Burst = DefaultBurst
	}
	if c.Queues == 0 {
		c.Queues = 1
	}
	mix := []int{c.FrameSize}
	if len(c.Mix) > 0 {
		mix = c.Mix
	}
	switch {
	case !c.Src.Addr().Is4() || !c.Dst.Addr().Is4():
		return nil, fmt.Errorf("%w: Src %v and Dst %v must be IPv4 address:port pairs", ErrConfig, c.Src, c.Dst)
	case c.Flows < 1 || c.Flows > 65536:
		return nil, fmt.Errorf("%w: Flows %d out of range 1..65536", ErrConfig, c.Flows)
	case len(mix) > MaxMix:
		return nil, fmt.Errorf("%w: Mix has %d sizes, at most %d", ErrConfig, len(mix), MaxMix)
	case c.Rate < 0:
		return nil, fmt.Errorf("%w: Rate %d is negative (0 means unlimited)", ErrConfig, c.Rate)
	case c.Burst < 1 || c.Burst > pipeline.MaxBatch:
		return nil, fmt.Errorf("%w: Burst %d out of range 1..%d", ErrConfig, c.Burst, pipeline.MaxBatch)
	case c.Queues < 1:
		return nil, fmt.Errorf("%w: Queues %d must be positive", ErrConfig, c.Queues)
	}
	g := &Generator{cfg: c}
	for _, size := range mix {
		if size < MinFrameSize || size > MaxFrameSize {
			return nil, fmt.Errorf("%w: frame size %d out of range %d..%d (on-wire bytes, FCS included)", ErrConfig, size, MinFrameSize, MaxFrameSize)
		}
		d := slices.Index(g.sizes, size-FCSLen)
		if d < 0 {
			d = len(g.sizes)
			flen := size - FCSLen
			g.sizes = append(g.sizes, flen)
			t := make([]byte, c.Flows*flen)
			for i := 0; i < c.Flows; i++ {
				BuildFrame(t[i*flen:(i+1)*flen], c, i)
			}
			g.tmpls = append(g.tmpls, t)
		}
		g.mix = append(g.mix, uint8(d))
	}
	return g, nil
}

// BuildFrame writes flow i's frame of cfg into b (len(b) is the frame length without FCS, at least 42): the
// headers, then a payload whose byte k is k, with both checksums computed. Tests use it as the expected bytes.
func BuildFrame(b []byte, cfg Config, i int) {
	payload := len(b) - hdrLen
	proto.EthernetFields{Dst: cfg.DstMAC, Src: cfg.SrcMAC, EtherType: proto.EtherTypeIPv4}.Encode(b)
	ip := b[proto.EthernetHeaderLen:]
	proto.IPv4Fields{TTL: 64, Protocol: proto.ProtoUDP, Src: cfg.Src.Addr(), Dst: cfg.Dst.Addr(),
		PayloadLen: proto.UDPHeaderLen + payload, DontFragment: true}.Encode(ip)
	udp := ip[proto.IPv4MinHeaderLen:]
	for k := range payload {
		udp[proto.UDPHeaderLen+k] = byte(k)
	}
	proto.UDPFields{SrcPort: FlowPort(cfg, i), DstPort: cfg.Dst.Port(), PayloadLen: payload}.
		EncodeChecksum(udp, cfg.Src.Addr(), cfg.Dst.Addr())
}

// FlowPort is the UDP source port of flow i.
func FlowPort(cfg Config, i int) uint16 { return uint16(int(cfg.Src.Port()) + i) }

// FrameLen is the length of the frames handed to AF_XDP (FrameSize without the FCS; with a Mix, its first
// size's).
func (g *Generator) FrameLen() int { return g.sizes[g.mix[0]] }

// Template returns a copy of flow i's frame (with a Mix, of its first size).
func (g *Generator) Template(i int) []byte { return g.TemplateOf(i, g.FrameLen()+FCSLen) }

// TemplateOf returns a copy of flow i's frame of on-wire size size, nil if the generator makes no frames of
// that size.
func (g *Generator) TemplateOf(i, size int) []byte {
	d := slices.Index(g.sizes, size-FCSLen)
	if d < 0 {
		return nil
	}
	flen := g.sizes[d]
	return append([]byte(nil), g.tmpls[d][i*flen:(i+1)*flen]...)
}

// NewHandler is a pipeline.NewHandler: pass it as poller.Config.NewHandler.
func (g *Generator) NewHandler(q *pipeline.QueueInfo) pipeline.Handler {
	g.mu.Lock()
	defer g.mu.Unlock()
	qi := len(g.queues)
	gq := &genQueue{g: g, port: g.cfg.Port, flow: qi % g.cfg.Flows}
	n := uint64(g.cfg.Queues)
	if g.cfg.Count > 0 {
		gq.share = g.cfg.Count / n
		if uint64(qi) < g.cfg.Count%n {
			gq.share++
		}
		// A queue whose share is 0 sends nothing: Tick compares sent >= share first.
	}
	if g.cfg.Rate > 0 {
		gq.rate = float64(g.cfg.Rate) / float64(n)
	}
	gq.t0 = -1
	g.queues = append(g.queues, gq)
	return gq
}

// Process counts and drops what arrives on the generator's ports (txonly ignores its receive side).
func (q *genQueue) Process(b *pipeline.Batch) {
	for i := range b.N {
		p := &b.Pkts[i]
		q.rxB += uint64(p.Len())
		p.Drop(DropReceived)
	}
	q.rxP += uint64(b.N)
	q.pub.rxPackets.Store(q.rxP)
	q.pub.rxBytes.Store(q.rxB)
}

// Tick emits up to Burst frames, fewer when the rate or the count says so.
func (q *genQueue) Tick(b *pipeline.Batch) int64 {
	g := q.g
	if g.stopped.Load() {
		return 0
	}
	if q.t0 < 0 {
		q.t0 = b.Now
		g.start.CompareAndSwap(0, time.Now().UnixNano())
	}
	n := uint64(g.cfg.Burst)
	if g.cfg.Count > 0 {
		if q.sent >= q.share {
			return 0
		}
		n = min(n, q.share-q.sent)
	}
	var wake int64
	if q.rate > 0 {
		// Allowed so far: one packet at t0, then rate per second; the debt never grows while we are behind,
		// because the comparison is with what we sent, not with a token count.
		allowed := uint64(float64(b.Now-q.t0)*q.rate/1e9) + 1
		if allowed <= q.sent {
			return q.t0 + int64(float64(q.sent)*1e9/q.rate)
		}
		n = min(n, allowed-q.sent)
		wake = q.t0 + int64(float64(q.sent+n)*1e9/q.rate)
	}
	flows := g.cfg.Flows
	f, pos := q.flow, q.pos
	var k uint64
	for ; k < n; k++ {
		p, ok := b.Alloc()
		if !ok {
			q.noBuffer++
			q.pub.noBuffer.Store(q.noBuffer)
			break
		}
		d := g.mix[pos]
		flen := g.sizes[d]
		p.SetLen(flen)
		copy(p.Data(), g.tmpls[d][f*flen:(f+1)*flen])
		p.Send(q.port)
		if f++; f == flows {
			f = 0
		}
		if pos++; pos == len(g.mix) {
			pos = 0
		}
	}
	q.flow, q.pos = f, pos
	q.sent += k
	q.pub.sent.Store(q.sent)
	if k < n {
		return 0 // out of frames: the next loop (after completions) tries again
	}
	return wake
}

// Sent is the number of frames handed to the poller for transmission, over all queues. The poller drops
// frames when the TX ring is full (poller Stats, DropTxRingFull); SizeFor avoids that.
func (g *Generator) Sent() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	var s uint64
	for _, q := range g.queues {
		s += q.pub.sent.Load()
	}
	return s
}

// Received is what arrived on the generator's queues (and was dropped).
func (g *Generator) Received() (packets, bytes uint64) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, q := range g.queues {
		packets += q.pub.rxPackets.Load()
		bytes += q.pub.rxBytes.Load()
	}
	return
}

// NoBuffer counts Ticks that ran out of free frames (TX completions are behind).
func (g *Generator) NoBuffer() uint64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	var s uint64
	for _, q := range g.queues {
		s += q.pub.noBuffer.Load()
	}
	return s
}

// Stop makes the generator emit nothing more, from any goroutine. Call it before cancelling the poller's Run:
// Run's drain waits until the queue is quiet, which a generator that keeps emitting never is.
func (g *Generator) Stop() { g.stopped.Store(true) }

// Done reports whether a generator with a Count has emitted all of it.
func (g *Generator) Done() bool {
	return g.cfg.Count > 0 && g.Sent() >= g.cfg.Count
}
