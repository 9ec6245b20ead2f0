package tcp

import (
	"net/netip"

	"github.com/xdpnet/xdpnet/proto"
)

// Segment is one segment the engine wants sent. It is only valid during Output.Send: the payload slices
// point into the connection's send buffer and the struct itself is reused for the next segment.
type Segment struct {
	Src, Dst netip.AddrPort // the IP source and destination come from here
	Fields   proto.TCPFields
	// Data is the payload, in two pieces when it wraps around the send buffer; Data[1] is often empty.
	Data [2][]byte
}

// PayloadLen returns the number of data bytes.
func (s *Segment) PayloadLen() int { return len(s.Data[0]) + len(s.Data[1]) }

// Len returns the TCP segment length, header with options plus payload: the IP payload length.
func (s *Segment) Len() int { return s.Fields.HeaderLen() + s.PayloadLen() }

// Encode writes the TCP header, options and payload to b with the checksum over the RFC 9293 §3.1
// pseudo-header of Src.Addr() -> Dst.Addr(), and returns the segment length, or 0 if b is shorter than
// Len(). The caller puts the IP header in front.
func (s *Segment) Encode(b []byte) int {
	hl := s.Fields.HeaderLen()
	n := hl + s.PayloadLen()
	if len(b) < n {
		return 0
	}
	k := copy(b[hl:], s.Data[0])
	copy(b[hl+k:], s.Data[1])
	return s.Fields.EncodeChecksum(b[:n], n-hl, s.Src.Addr(), s.Dst.Addr())
}

// Output takes the segments an Engine emits. It is called on the goroutine that drives the Engine (from
// Input and Tick), with connection locks held: it must not call back into the Engine or a Conn. A typical
// implementation encodes the segment into a frame (Segment.Encode after the IP header) and queues it.
//
// Send returns false when it has no room now (no free frame, a full batch). The engine then treats the
// segment as not sent: data stays unsent, a due ACK stays due, and the connection is retried on the next
// Tick, which returns "now" as its wake-up time. Retransmissions, probes, RSTs and SYNs that find no room
// are left to their timers.
type Output interface {
	Send(seg *Segment) bool
}

// Waker is what the engine's owner supplies so that application goroutines can wake its loop after they
// queued work (Write, Close, Dial, a Read that opened the window). pipeline.Waker satisfies it.
type Waker interface{ Wake() }

// OutputFunc adapts a function to Output.
type OutputFunc func(seg *Segment) bool

// Send implements Output.
func (f OutputFunc) Send(seg *Segment) bool { return f(seg) }
