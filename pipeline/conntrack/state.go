package conntrack

import (
	"time"

	"github.com/xdpnet/xdpnet/proto"
)

// State is a connection's state. TCP connections go through the states nf_conntrack_proto_tcp names (its
// tcp_conntracks table, without the sequence-window checks); other protocols stay in StateNone and differ
// only by their flags (Replied, Assured).
type State uint8

const (
	StateNone        State = iota // not TCP
	StateSynSent                  // SYN seen in the original direction
	StateSynRecv                  // SYN+ACK seen in reply
	StateEstablished              // handshake completed
	StateFinWait                  // one side sent FIN
	StateCloseWait                // the FIN was acknowledged, the other side has not closed yet
	StateLastAck                  // both sides sent FIN, the last one not yet acknowledged
	StateTimeWait                 // both FINs acknowledged
	StateClose                    // RST seen
	numStates
)

var stateNames = [numStates]string{"NONE", "SYN_SENT", "SYN_RECV", "ESTABLISHED", "FIN_WAIT", "CLOSE_WAIT",
	"LAST_ACK", "TIME_WAIT", "CLOSE"}

func (s State) String() string {
	if s < numStates {
		return stateNames[s]
	}
	return "STATE?"
}

// Flags are what a connection has shown, as the kernel's IPS_* status bits.
type Flags uint8

const (
	// Replied: a packet was seen in the reply direction (IPS_SEEN_REPLY).
	Replied Flags = 1 << iota
	// Assured: the connection proved to be real (TCP: the handshake completed; UDP: a packet in the
	// original direction after the reply; ICMP: a reply) and is never dropped early (IPS_ASSURED).
	Assured
	finOrig  // FIN seen in the original direction
	finReply // FIN seen in the reply direction
)

// The state word: State in the low byte, Flags in the next.
func word(s State, f Flags) uint32  { return uint32(s) | uint32(f)<<8 }
func split(w uint32) (State, Flags) { return State(w), Flags(w >> 8) }

// Timeouts are how long a connection lives without packets, by protocol and state, as the kernel's
// net.netfilter.nf_conntrack_*_timeout sysctls; DefaultTimeouts gives the kernel's defaults.
type Timeouts struct {
	TCPSynSent, TCPSynRecv, TCPEstablished, TCPFinWait, TCPCloseWait, TCPLastAck, TCPTimeWait, TCPClose time.Duration
	// UDP: until a reply and after (nf_conntrack_udp_timeout); UDPStream once assured
	// (nf_conntrack_udp_timeout_stream).
	UDP, UDPStream time.Duration
	ICMP           time.Duration
	// Generic: any other protocol (nf_conntrack_generic_timeout).
	Generic time.Duration
}

// DefaultTimeouts are Linux's defaults.
func DefaultTimeouts() Timeouts {
	return Timeouts{
		TCPSynSent: 120 * time.Second, TCPSynRecv: 60 * time.Second, TCPEstablished: 5 * 24 * time.Hour,
		TCPFinWait: 120 * time.Second, TCPCloseWait: 60 * time.Second, TCPLastAck: 30 * time.Second,
		TCPTimeWait: 120 * time.Second, TCPClose: 10 * time.Second,
		UDP: 30 * time.Second, UDPStream: 120 * time.Second, ICMP: 30 * time.Second, Generic: 600 * time.Second,
	}
}

// fill replaces zero fields by the defaults.
func (t *Timeouts) fill() {
	d := DefaultTimeouts()
	for _, p := range []struct{ v, def *time.Duration }{
		{&t.TCPSynSent, &d.TCPSynSent}, {&t.TCPSynRecv, &d.TCPSynRecv}, {&t.TCPEstablished, &d.TCPEstablished},
		{&t.TCPFinWait, &d.TCPFinWait}, {&t.TCPCloseWait, &d.TCPCloseWait}, {&t.TCPLastAck, &d.TCPLastAck},
		{&t.TCPTimeWait, &d.TCPTimeWait}, {&t.TCPClose, &d.TCPClose}, {&t.UDP, &d.UDP},
		{&t.UDPStream, &d.UDPStream}, {&t.ICMP, &d.ICMP}, {&t.Generic, &d.Generic},
	} {
		if *p.v <= 0 {
			*p.v = *p.def
		}
	}
}

// timeoutNs is the table's timeouts in nanoseconds, indexed for the per-packet path.
type timeoutNs struct {
	tcp                 [numStates]int64
	udp, udpStream, icm int64
	generic             int64
}

func (t Timeouts) ns() timeoutNs {
	var n timeoutNs
	n.tcp = [numStates]int64{
		StateNone: int64(t.TCPClose), StateSynSent: int64(t.TCPSynSent), StateSynRecv: int64(t.TCPSynRecv),
		StateEstablished: int64(t.TCPEstablished), StateFinWait: int64(t.TCPFinWait),
		StateCloseWait: int64(t.TCPCloseWait), StateLastAck: int64(t.TCPLastAck),
		StateTimeWait: int64(t.TCPTimeWait), StateClose: int64(t.TCPClose),
	}
	n.udp, n.udpStream, n.icm, n.generic = int64(t.UDP), int64(t.UDPStream), int64(t.ICMP), int64(t.Generic)
	return n
}

func (n *timeoutNs) of(p uint8, s State, f Flags) int64 {
	switch p {
	case proto.ProtoTCP:
		return n.tcp[s]
	case proto.ProtoUDP:
		if f&Assured != 0 {
			return n.udpStream
		}
		return n.udp
	case proto.ProtoICMP:
		return n.icm
	}
	return n.generic
}

// Verdict is what tracking a packet concluded.
type Verdict uint8

const (
	// Valid: the packet fits the connection's state.
	Valid Verdict = iota
	// Invalid: a TCP packet that cannot belong here (a SYN+ACK in the original direction, a SYN in reply
	// after the handshake); nf_conntrack marks such packets INVALID, and a NAT drops them.
	Invalid
)

// next is the TCP state machine: the state after a packet with flags in direction d, loosely after
// nf_conntrack_proto_tcp's tcp_conntracks table (states, not sequence numbers).
func next(s State, f Flags, d Dir, tf proto.TCPFlags) (State, Flags, Verdict) {
	switch {
	case tf&proto.TCPFlagRST != 0:
		return StateClose, f, Valid
	case tf&proto.TCPFlagSYN != 0 && tf&proto.TCPFlagACK == 0:
		if d == Original {
			switch s {
			case StateNone, StateSynSent:
				return StateSynSent, f, Valid
			case StateTimeWait, StateClose:
				// A new connection on the same ports (the kernel reopens TIME_WAIT/CLOSE likewise).
				return StateSynSent, 0, Valid
			}
			return s, f, Valid // a retransmitted SYN
		}
		if s == StateSynSent { // simultaneous open
			return StateSynRecv, f, Valid
		}
		return s, f, Invalid
	case tf&proto.TCPFlagSYN != 0: // SYN+ACK
		if d == Reply && (s == StateSynSent || s == StateSynRecv) {
			return StateSynRecv, f, Valid
		}
		if d == Reply && s == StateEstablished {
			return s, f, Valid // a retransmission whose ACK was lost
		}
		return s, f, Invalid
	}
	if tf&proto.TCPFlagFIN != 0 {
		if d == Original {
			f |= finOrig
		} else {
			f |= finReply
		}
		switch {
		case f&(finOrig|finReply) == finOrig|finReply:
			if s == StateTimeWait {
				return s, f, Valid
			}
			return StateLastAck, f, Valid
		case s == StateEstablished || s == StateSynRecv || s == StateSynSent:
			return StateFinWait, f, Valid
		}
		return s, f, Valid
	}
	if tf&proto.TCPFlagACK != 0 {
		switch s {
		case StateSynRecv:
			if d == Original {
				return StateEstablished, f | Assured, Valid
			}
		case StateFinWait:
			// The side that did not send the FIN acknowledges it.
			if d == Original && f&finReply != 0 || d == Reply && f&finOrig != 0 {
				return StateCloseWait, f, Valid
			}
		case StateLastAck:
			return StateTimeWait, f, Valid
		}
	}
	return s, f, Valid
}
