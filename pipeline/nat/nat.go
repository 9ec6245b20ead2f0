package nat

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/pipeline/conntrack"
	"github.com/xdpnet/xdpnet/proto"
)

// Drop reasons of the NAT stages.
var (
	// DropInvalid: a TCP segment that does not fit its connection's state (conntrack.Invalid), or a segment
	// other than a SYN that would start a connection (nf_conntrack_tcp_loose=0).
	DropInvalid = pipeline.RegisterDropReason("nat_invalid")
	// DropTableFull: the connection table had no room (conntrack.Full: its stripe holds only assured
	// connections).
	DropTableFull = pipeline.RegisterDropReason("nat_table_full")
	// DropNoPort: every external port tried for a new mapping is held by a live connection.
	DropNoPort = pipeline.RegisterDropReason("nat_no_port")
	// DropUnsolicited: a packet from a masquerading interface, of no connection and no forward, that would
	// be routed inside.
	DropUnsolicited = pipeline.RegisterDropReason("nat_unsolicited")
	// DropUnsupported: a packet that would leave by a masquerading interface but cannot be translated (an
	// ICMP query other than echo).
	DropUnsupported = pipeline.RegisterDropReason("nat_unsupported")
	// DropMalformed: a transport header too short to read the ports from.
	DropMalformed = pipeline.RegisterDropReason("nat_malformed")
	// DropFragment: a fragment after the first whose datagram's first fragment was not seen (or is too old
	// for the fragment cache): its ports, and so its mapping, are unknown.
	DropFragment = pipeline.RegisterDropReason("nat_fragment")
)

// Masquerade translates the source of connections leaving by Interface to Addr (nf_nat's MASQUERADE with a
// fixed address, or SNAT --to-source Addr).
type Masquerade struct {
	// Interface is the egress port's name (pipeline.PortInfo.Name).
	Interface string
	// Addr is the address put in the source; normally the interface's own.
	Addr netip.Addr
	// PortMin..PortMax is the range of external TCP and UDP ports (default 1024..65535). A connection keeps
	// its own source port when that is free and in range, as Linux does; ICMP echo identifiers use the
	// whole 16-bit space.
	PortMin, PortMax uint16
}

// Forward is a port forward (DNAT): new connections of Proto arriving on Interface for Addr:Port go to To.
type Forward struct {
	Proto     uint8 // proto.ProtoTCP or proto.ProtoUDP
	Interface string
	Addr      netip.Addr
	Port      uint16
	To        netip.AddrPort
}

func (f Forward) String() string {
	return fmt.Sprintf("%s:%d=%s (%s on %s)", protoName(f.Proto), f.Port, f.To, f.Addr, f.Interface)
}

func protoName(p uint8) string {
	switch p {
	case proto.ProtoTCP:
		return "tcp"
	case proto.ProtoUDP:
		return "udp"
	}
	return strconv.Itoa(int(p))
}

// ParseForward reads a forward as command lines give it: PROTO:PORT=ADDR:PORT (tcp:8080=198.18.0.2:80,
// udp:5353=198.18.0.2:53). Interface and Addr are left for the caller (the outside interface).
func ParseForward(s string) (Forward, error) {
	const want = "want PROTO:PORT=ADDR:PORT, e.g. tcp:8080=198.18.0.2:80 (PROTO tcp or udp)"
	l, r, ok := strings.Cut(s, "=")
	ps, port, ok2 := strings.Cut(l, ":")
	if !ok || !ok2 {
		return Forward{}, fmt.Errorf("forward %q: %s", s, want)
	}
	var f Forward
	switch ps {
	case "tcp":
		f.Proto = proto.ProtoTCP
	case "udp":
		f.Proto = proto.ProtoUDP
	default:
		return Forward{}, fmt.Errorf("forward %q: protocol %q: %s", s, ps, want)
	}
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 {
		return Forward{}, fmt.Errorf("forward %q: external port %q is not a port 1..65535: %s", s, port, want)
	}
	f.Port = uint16(n)
	to, err := netip.ParseAddrPort(r)
	if err != nil || !to.Addr().Is4() || to.Port() == 0 {
		return Forward{}, fmt.Errorf("forward %q: target %q is not an IPv4 ADDR:PORT: %s", s, r, want)
	}
	f.To = to
	return f, nil
}

// Config configures a NAT.
type Config struct {
	Masquerade []Masquerade
	Forwards   []Forward
	// Hairpin lets hosts behind Interface reach the Forwards through their outside address (NAT
	// loopback): such a connection goes back out of the interface it came in by, to a server on the same
	// side, so its source is translated too, to Addr (PortMin..PortMax as for Masquerade), and the
	// server's answers come back through the gateway instead of straight to the client.
	Hairpin []Masquerade
	// Conntrack configures the connection table (its bound, timeouts).
	Conntrack conntrack.Config
}

// MaxQueues bounds the queues whose packets the stages count separately; packets of higher queue numbers
// share the last counter block (their counts are then approximate).
const MaxQueues = 64

// NAT is NAT44 with its connection table, run as two pipeline stages (Register). See the package
// documentation.
type NAT struct {
	table *conntrack.Table
	masq  []masq // Config.Masquerade, then Config.Hairpin
	nmasq int    // how many of masq are Masquerade
	fwd   []fwd
	ports atomic.Pointer[[]portInfo]
	salt  atomic.Uint32
	ctr   [MaxQueues]counters
	frags fragCache
}

type masq struct {
	Masquerade
	addr     uint32
	lo, size uint32
}

type fwd struct {
	Forward
	addr, to uint32
}

// portInfo is what the stages know of a port (by index).
type portInfo struct {
	name    string
	masq    int16 // index into masq of the port's Masquerade, or -1
	hairpin int16 // index into masq of the port's Hairpin, or -1
	fwd     bool  // forwards arrive here
	partial bool  // PortInfo.PartialChecksums
}

// New checks cfg and allocates the connection table.
func New(cfg Config) (*NAT, error) {
	n := &NAT{}
	for i, m := range append(append([]Masquerade{}, cfg.Masquerade...), cfg.Hairpin...) {
		if m.Interface == "" || !m.Addr.Is4() {
			return nil, fmt.Errorf("nat: masquerade or hairpin %d: want an interface name and an IPv4 address", i)
		}
		if m.PortMin == 0 && m.PortMax == 0 {
			m.PortMin, m.PortMax = 1024, 65535
		}
		if m.PortMin == 0 || m.PortMin > m.PortMax {
			return nil, fmt.Errorf("nat: masquerade on %s: port range %d-%d: want 1 <= PortMin <= PortMax", m.Interface, m.PortMin, m.PortMax)
		}
		n.masq = append(n.masq, masq{Masquerade: m, addr: conntrack.Addr32(m.Addr), lo: uint32(m.PortMin),
			size: uint32(m.PortMax-m.PortMin) + 1})
	}
	for _, f := range cfg.Forwards {
		if f.Proto != proto.ProtoTCP && f.Proto != proto.ProtoUDP {
			return nil, fmt.Errorf("nat: forward %v: protocol must be tcp or udp", f)
		}
		if f.Interface == "" || !f.Addr.Is4() || f.Port == 0 || !f.To.Addr().Is4() || f.To.Port() == 0 {
			return nil, fmt.Errorf("nat: forward %v: want an interface, an IPv4 address and port, and an IPv4 target with a port", f)
		}
		for _, g := range n.fwd {
			if g.Proto == f.Proto && g.Addr == f.Addr && g.Port == f.Port {
				return nil, fmt.Errorf("nat: forwards %v and %v take the same external port", g.Forward, f)
			}
		}
		n.fwd = append(n.fwd, fwd{Forward: f, addr: conntrack.Addr32(f.Addr), to: conntrack.Addr32(f.To.Addr())})
	}
	n.nmasq = len(cfg.Masquerade)
	if len(n.masq) == 0 && len(n.fwd) == 0 {
		return nil, errors.New("nat: nothing to do: give at least one Masquerade or Forward")
	}
	t, err := conntrack.New(cfg.Conntrack)
	if err != nil {
		return nil, err
	}
	n.table = t
	empty := []portInfo{}
	n.ports.Store(&empty)
	return n, nil
}

// Table is the connection table.
func (n *NAT) Table() *conntrack.Table { return n.table }

// SetPorts tells the NAT the driver's ports, so that rules find their interfaces by name and partial
// checksums from veth peers are completed before a rewrite (PortInfo.PartialChecksums). Call it from the
// pipeline.NewHandler of each queue (the ports are the same on every queue) before traffic flows; a rule
// whose interface is not among the ports never matches.
func (n *NAT) SetPorts(ports []pipeline.PortInfo) {
	maxp := 0
	for _, p := range ports {
		maxp = max(maxp, int(p.Index)+1)
	}
	pi := make([]portInfo, maxp)
	for i := range pi {
		pi[i].masq, pi[i].hairpin = -1, -1
	}
	for _, p := range ports {
		x := &pi[p.Index]
		x.name, x.partial = p.Name, p.PartialChecksums
		for i, m := range n.masq {
			switch {
			case m.Interface != p.Name:
			case i < n.nmasq:
				x.masq = int16(i)
			default:
				x.hairpin = int16(i)
			}
		}
		for _, f := range n.fwd {
			if f.Interface == p.Name {
				x.fwd = true
			}
		}
	}
	n.ports.Store(&pi)
}

// NewHandler wraps the NewHandler of the queue's handler (the stack's) so that SetPorts runs for each
// queue.
func (n *NAT) NewHandler(next pipeline.NewHandler) pipeline.NewHandler {
	return func(q *pipeline.QueueInfo) pipeline.Handler {
		n.SetPorts(q.Ports)
		return next(q)
	}
}

// Priorities at which Register places the stages, after netfilter's NF_IP_PRI_NAT_DST (-100) and
// NF_IP_PRI_NAT_SRC (100).
const (
	PriorityDst = -100
	PrioritySrc = 100
)

// Register places the stages: "nat-dst" at PreRouting (destination translation before the route lookup:
// port forwards, and the replies of masqueraded connections back to their inside host) and "nat-src" at
// PostRouting (source translation after it: masquerading, and the replies of forwarded connections).
func (n *NAT) Register(h *pipeline.Hooks) {
	h.Register(pipeline.PreRouting, PriorityDst, "nat-dst", dstStage{n})
	h.Register(pipeline.PostRouting, PrioritySrc, "nat-src", srcStage{n})
}

// counters of one queue: written by that queue's goroutine only (Store of Load+1, no locked add), read by
// Stats from anywhere.
type counters struct {
	translated, created, icmpErrors, csumCompleted, fragments atomic.Uint64
	_                                                         [24]byte
}

func inc(c *atomic.Uint64) { c.Store(c.Load() + 1) }

func (n *NAT) ctrOf(p *pipeline.Packet) *counters {
	return &n.ctr[min(int(p.Queue), MaxQueues-1)]
}

// Stats are the NAT's counters; drops are counted by the driver under the Drop* reasons.
type Stats struct {
	Translated    uint64 // packets rewritten (a packet translated at both hooks counts twice)
	Created       uint64 // connections created by the stages
	ICMPErrors    uint64 // ICMP errors whose quoted packet was translated
	CsumCompleted uint64 // partial TCP/UDP checksums completed before a rewrite
	Fragments     uint64 // fragments after the first translated through the fragment cache
	Conntrack     conntrack.Stats
}

// Stats sums the queues' counters and the table's.
func (n *NAT) Stats() Stats {
	var s Stats
	for i := range n.ctr {
		c := &n.ctr[i]
		s.Translated += c.translated.Load()
		s.Created += c.created.Load()
		s.ICMPErrors += c.icmpErrors.Load()
		s.CsumCompleted += c.csumCompleted.Load()
		s.Fragments += c.fragments.Load()
	}
	s.Conntrack = n.table.Stats()
	return s
}
