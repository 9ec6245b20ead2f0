package pipeline

import "net/netip"

// Verdict is what happens to a packet at the end of a batch.
type Verdict uint8

const (
	// Accept means "keep going": the packet has not been decided yet. A packet still Accept when the batch
	// ends was not handled by anyone and is dropped as DropUnhandled.
	Accept Verdict = iota
	// Drop returns the frame to its source and counts Packet.Reason.
	Drop
	// Stolen means a stage kept the packet (a neighbour queue waiting for ARP, a TCP queue); the driver must
	// forget it without freeing the frame.
	Stolen
	// Tx sends the packet out of Packet.OutPort.
	Tx
	// Consumed means a stage used the packet up (a datagram copied to its socket, an ARP reply learnt): the
	// driver returns the frame without counting a drop, as the kernel's consume_skb differs from kfree_skb.
	Consumed
)

var verdictNames = [...]string{Accept: "accept", Drop: "drop", Stolen: "stolen", Tx: "tx", Consumed: "consumed"}

func (v Verdict) String() string {
	if int(v) < len(verdictNames) {
		return verdictNames[v]
	}
	return "verdict?"
}

// Packet is a view over one frame, like the kernel's sk_buff: data lives in frame[start:end], with headroom
// before it for headers to be pushed. Packets are values inside a Batch; copy one out only to steal it.
type Packet struct {
	frame      []byte
	start, end int

	// Addr is the frame's address in its FrameSource (the UMEM offset of frame[0]).
	Addr uint64
	// L3 and L4 are offsets into Data() found by parsing; -1 until known.
	L3, L4 int16
	// InPort is the index of the port the packet arrived on; Queue is the queue it arrived on.
	InPort, Queue uint16
	// OutPort is the egress port index once routed (meaningful with verdict Tx).
	OutPort uint16
	// Verdict and Reason: see Drop, Steal and Send.
	Verdict Verdict
	Reason  DropReason
	// NextHop is the IP next hop chosen by routing (the destination itself when directly connected).
	NextHop netip.Addr
	// Mark is free for stages to carry a classification between hooks (like skb->mark).
	Mark uint32
}

// Reset points p at frame, with data in frame[start:end], and clears everything parsing and routing found.
func (p *Packet) Reset(frame []byte, addr uint64, start, end int) {
	*p = Packet{frame: frame, start: start, end: end, Addr: addr, L3: -1, L4: -1}
}

// Data is the packet's bytes; writes go straight to the frame.
func (p *Packet) Data() []byte { return p.frame[p.start:p.end] }

// Len is the number of data bytes.
func (p *Packet) Len() int { return p.end - p.start }

// Frame is the whole frame the packet lives in.
func (p *Packet) Frame() []byte { return p.frame }

// Offset is where the data starts within the frame; it is also the headroom left for Push.
func (p *Packet) Offset() int { return p.start }

// Tailroom is the free space after the data.
func (p *Packet) Tailroom() int { return len(p.frame) - p.end }

// Pull strips n bytes from the front (skb_pull). Parsed offsets are relative to the data start and
// are shifted with it; an offset that falls off the front becomes -1.
func (p *Packet) Pull(n int) bool {
	if n < 0 || n > p.end-p.start {
		return false
	}
	p.start += n
	p.L3 = shift(p.L3, -n)
	p.L4 = shift(p.L4, -n)
	return true
}

// Push prepends n bytes of headroom to the data (skb_push) and returns them for the caller to fill.
func (p *Packet) Push(n int) ([]byte, bool) {
	if n < 0 || n > p.start {
		return nil, false
	}
	p.start -= n
	p.L3 = shift(p.L3, n)
	p.L4 = shift(p.L4, n)
	return p.frame[p.start : p.start+n], true
}

// SetLen sets the data length, trimming (padding removal) or growing into tailroom.
func (p *Packet) SetLen(n int) bool {
	if n < 0 || p.start+n > len(p.frame) {
		return false
	}
	p.end = p.start + n
	return true
}

func shift(off int16, by int) int16 {
	if off < 0 {
		return off
	}
	if v := int(off) + by; v >= 0 {
		return int16(v)
	}
	return -1
}

// Drop marks the packet dropped for reason.
func (p *Packet) Drop(reason DropReason) { p.Verdict, p.Reason = Drop, reason }

// Send marks the packet for transmission on port.
func (p *Packet) Send(port uint16) { p.Verdict, p.OutPort = Tx, port }

// Steal marks the packet as kept by the caller, who now owns its frame.
func (p *Packet) Steal() { p.Verdict = Stolen }

// Consume marks the packet as used up: its frame goes back to the source and no drop is counted.
func (p *Packet) Consume() { p.Verdict = Consumed }
