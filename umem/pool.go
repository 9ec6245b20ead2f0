package umem

import (
	"fmt"
	"strings"
)

// State is where a frame is. The Pool keeps one per frame.
type State uint8

const (
	// Free: on the Pool's stack.
	Free State = iota
	// Fill: given to the kernel on a fill ring; it comes back on an RX ring (or is still in the fill ring,
	// or held by a zero-copy driver, until the socket closes).
	Fill
	// InFlight: a packet of the batch being processed.
	InFlight
	// TX: on a TX ring or still being sent; it comes back on a completion ring.
	TX
	// Held: stolen by a handler (neighbour queue, TCP queue), which must send it or Put it.
	Held
	numStates
)

var stateNames = [numStates]string{"free", "fill", "in_flight", "tx", "held"}

func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return "state?"
}

// Pool is the free-frame stack of an Area: O(1) Get and Put, no allocation after NewPool. It implements
// pipeline.FrameSource. It is used by one goroutine.
type Pool struct {
	area  *Area
	stack []uint64
	n     int
	state []State
	shift uint
	// violations counts refused Puts (double free, foreign address) and unexpected transitions; the first
	// is kept for Check.
	violations uint64
	first      string
}

// NewPool returns a pool holding every frame of a.
func NewPool(a *Area) *Pool {
	p := &Pool{area: a, stack: make([]uint64, a.frames), state: make([]State, a.frames)}
	for s := a.frameSize; s > 1; s >>= 1 {
		p.shift++
	}
	// Hand out low addresses first: it keeps a lightly loaded queue in fewer pages.
	for i := range a.frames {
		p.stack[i] = uint64(a.frames-1-i) * uint64(a.frameSize)
	}
	p.n = a.frames
	return p
}

// Area is the pool's Area.
func (p *Pool) Area() *Area { return p.area }

// Len is the number of free frames.
func (p *Pool) Len() int { return p.n }

// Headroom is the room before packet data in frames from Get, the same offset the kernel uses on receive, so
// generated and received packets have the same headroom to push into.
func (p *Pool) Headroom() int { return p.area.RxOffset() }

// Get takes a free frame; the frame is InFlight until Mark or Put.
func (p *Pool) Get() (addr uint64, frame []byte, ok bool) {
	addr, ok = p.GetAddr(InFlight)
	if !ok {
		return 0, nil, false
	}
	return addr, p.area.Frame(addr), true
}

// GetAddr takes a free frame and records it as being in state to (Fill, when it goes to a fill ring).
func (p *Pool) GetAddr(to State) (uint64, bool) {
	if p.n == 0 {
		return 0, false
	}
	p.n--
	addr := p.stack[p.n]
	p.state[addr>>p.shift] = to
	return addr, true
}

// Put returns a frame (any address inside it) to the pool. A Put of a frame that is already free, or of an
// address outside the Area, is refused and counted as a violation.
func (p *Pool) Put(addr uint64) {
	i := addr >> p.shift
	if i >= uint64(len(p.state)) {
		p.violate("put of address outside the UMEM", addr)
		return
	}
	if p.state[i] == Free {
		p.violate("double put (frame already free)", addr)
		return
	}
	p.state[i] = Free
	p.stack[p.n] = i << p.shift
	p.n++
}

// Index is the number of the frame that contains addr (its address over the frame size), for tables kept
// next to the pool's own.
func (p *Pool) Index(addr uint64) int { return int(addr >> p.shift) }

// Mark records that the frame at addr moved from state from to state to, as when the poller takes a frame off
// the RX ring (Fill to InFlight), puts it on a TX ring (InFlight to TX) or sees a handler steal it (InFlight to
// Held). A frame found in another state is a violation: it means the kernel or a handler returned a frame that
// was not theirs. It reports whether the transition was as expected; the state is set to to either way.
func (p *Pool) Mark(addr uint64, from, to State) bool {
	i := addr >> p.shift
	if i >= uint64(len(p.state)) {
		p.violate("address outside the UMEM", addr)
		return false
	}
	ok := p.state[i] == from
	if !ok {
		p.violateTransition(addr, p.state[i], from, to)
	}
	p.state[i] = to
	return ok
}

// Set records the frame at addr as being in state to without checking where it was; for frames whose
// previous place can legitimately vary (a packet in a batch may be a received one or one a handler held).
func (p *Pool) Set(addr uint64, to State) {
	if i := addr >> p.shift; i < uint64(len(p.state)) {
		p.state[i] = to
	}
}

// StateOf reports the recorded state of the frame containing addr.
func (p *Pool) StateOf(addr uint64) State {
	if i := addr >> p.shift; i < uint64(len(p.state)) {
		return p.state[i]
	}
	return numStates
}

// Complete returns a frame that came back on a completion ring: it must have been TX.
func (p *Pool) Complete(addr uint64) {
	i := addr >> p.shift
	if i >= uint64(len(p.state)) {
		p.violate("completion of address outside the UMEM", addr)
		return
	}
	if p.state[i] != TX {
		// A frame completed twice (or never sent) would be pushed twice: refuse it.
		p.violateTransition(addr, p.state[i], TX, Free)
		return
	}
	p.state[i] = Free
	p.stack[p.n] = i << p.shift
	p.n++
}

func (p *Pool) violate(what string, addr uint64) {
	p.violations++
	if p.first == "" {
		p.first = fmt.Sprintf("%s: %#x", what, addr)
	}
}

func (p *Pool) violateTransition(addr uint64, was, from, to State) {
	p.violations++
	if p.first == "" {
		p.first = fmt.Sprintf("frame %#x moved %s->%s but was %s", addr, from, to, was)
	}
}

// Violations is the number of refused or unexpected frame movements so far.
func (p *Pool) Violations() uint64 { return p.violations }

// Accounting says where every frame of a pool is. Ring-level detail (how many of the Fill frames are still in
// the fill ring, how many the kernel put on the RX ring) comes from the ring indexes, filled in by the owner of
// the rings; the per-state counts come from the Pool's records.
type Accounting struct {
	Total int
	// Counts by recorded state; they always add up to Total.
	Free, Fill, InFlight, TX, Held int
	// Ring detail of Fill and TX, from the ring indexes: FillRing+RXRing+InKernelRX = Fill and
	// TXRing+CompRing+InKernelTX = TX at a quiescent point. InKernel* are frames a driver holds
	// between rings (zero-copy drivers keep fill frames in their hardware ring).
	FillRing, RXRing, InKernelRX int
	TXRing, CompRing, InKernelTX int
	// Violations counts refused or unexpected movements; First describes the first.
	Violations uint64
	First      string
	// StackDepth is the number of addresses on the free stack; it must equal Free.
	StackDepth int
}

// Account counts frames by state. It walks one byte per frame; call it from the pool's goroutine, or after
// that goroutine has stopped.
func (p *Pool) Account() Accounting {
	var c [numStates + 1]int
	for _, s := range p.state {
		if s < numStates {
			c[s]++
		} else {
			c[numStates]++
		}
	}
	return Accounting{
		Total: len(p.state), Free: c[Free], Fill: c[Fill], InFlight: c[InFlight], TX: c[TX], Held: c[Held],
		Violations: p.violations, First: p.first, StackDepth: p.n,
	}
}

// Check returns an error unless the accounting is exact: states add up to Total, the free count matches the
// pool's stack, the ring detail is consistent, and no violation happened.
func (a Accounting) Check() error {
	var bad []string
	if s := a.Free + a.Fill + a.InFlight + a.TX + a.Held; s != a.Total {
		bad = append(bad, fmt.Sprintf("states add up to %d, not %d", s, a.Total))
	}
	if a.StackDepth != a.Free {
		bad = append(bad, fmt.Sprintf("free stack holds %d addresses but %d frames are recorded free", a.StackDepth, a.Free))
	}
	if a.FillRing+a.RXRing > a.Fill || a.InKernelRX < 0 {
		bad = append(bad, fmt.Sprintf("fill ring %d + RX ring %d exceed the %d frames given to the kernel", a.FillRing, a.RXRing, a.Fill))
	}
	if a.TXRing+a.CompRing > a.TX || a.InKernelTX < 0 {
		bad = append(bad, fmt.Sprintf("TX ring %d + completion ring %d exceed the %d frames sent", a.TXRing, a.CompRing, a.TX))
	}
	if a.Violations != 0 {
		bad = append(bad, fmt.Sprintf("%d frame ownership violations, first: %s", a.Violations, a.First))
	}
	if bad == nil {
		return nil
	}
	return fmt.Errorf("frame accounting: %s (%s)", strings.Join(bad, "; "), a)
}

// CheckAllFree is Check plus: every frame is back in the pool, as after a clean shutdown.
func (a Accounting) CheckAllFree() error {
	if err := a.Check(); err != nil {
		return err
	}
	if a.Free != a.Total {
		return fmt.Errorf("frame accounting: %d of %d frames are not back in the pool (%s)", a.Total-a.Free, a.Total, a)
	}
	return nil
}

func (a Accounting) String() string {
	return fmt.Sprintf("total=%d free=%d fill=%d(ring %d, rx %d, driver %d) in_flight=%d tx=%d(ring %d, completion %d, driver %d) held=%d",
		a.Total, a.Free, a.Fill, a.FillRing, a.RXRing, a.InKernelRX, a.InFlight, a.TX, a.TXRing, a.CompRing, a.InKernelTX, a.Held)
}
