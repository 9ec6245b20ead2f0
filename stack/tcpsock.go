package stack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
	"github.com/xdpnet/xdpnet/stack/tcp"
)

// This file plugs the TCP engine (package tcp) into the stack, following tcp's doc.go: one Engine per
// queue, created with the handler; local delivery verifies the checksum and hands each segment to the
// queue's engine (which answers closed ports with RST itself); the handler's Tick runs the engine's Tick;
// the engine's Output builds the IPv4 or IPv6 frame in the batch being processed, the way udpBuild does.

// DropTCPBroadcast counts TCP segments sent to a broadcast address: TCP is unicast only (RFC 1122
// §4.2.3.10: "A TCP implementation MUST silently discard an incoming SYN segment that is addressed to a
// broadcast or multicast address"; no other segment can belong to a connection either).
var DropTCPBroadcast = pipeline.RegisterDropReason("tcp_broadcast")

// tcpReserve is the batch room a segment leaves free while a received batch is processed: the packets
// after the one being delivered may still need a frame for an ICMP error or a fragment. The engine keeps
// what does not fit and sends it from the next Tick.
const tcpReserve = 16

// tcpShared is the TCP state of a Stack that every queue sees: the engines (one per queue) and the
// listeners, so that a listener opened before a queue starts is added to that queue's engine too.
type tcpShared struct {
	mu        sync.Mutex
	queues    []*tcpQueue
	listeners []*TCPListener
}

// tcpQueue is the TCP of one handler: its engine, and the batch the engine's Output writes into while
// the handler's goroutine is inside Engine.Input or Engine.Tick.
type tcpQueue struct {
	h   *handler
	eng *tcp.Engine

	b       *pipeline.Batch
	out     []uint16
	reserve int
	inBatch bool // the engine is between BeginBatch and Flush

	noRoute, noBuffer atomic.Uint64
}

// newTCPQueue builds the engine of h's queue and opens the stack's listeners on it. The MSS the engine
// announces follows the smallest MTU of the queue's interfaces, so that no segment it sends needs
// fragmenting on any of them.
func (s *Stack) newTCPQueue(h *handler) *tcpQueue {
	cfg := s.cfg.TCP
	cfg.MTU = h.tcpMTU()
	t := &tcpQueue{h: h}
	var w tcp.Waker
	if h.q.Waker != nil {
		w = h.q.Waker
	}
	t.eng = tcp.NewEngine(cfg, t, w)
	s.tcp.mu.Lock()
	defer s.tcp.mu.Unlock()
	s.tcp.queues = append(s.tcp.queues, t)
	for _, l := range s.tcp.listeners {
		if err := l.attach(t.eng); err != nil {
			s.log.Warn("tcp listener not opened on a new queue", "addr", l.addr, "queue", h.q.Queue, "err", err)
		}
	}
	return t
}

// tcpMTU is the IP MTU the queue's engine uses for new connections: Config.TCP.MTU lowered to the smallest
// MTU of the queue's interfaces (0: neither is known, the engine's default).
func (h *handler) tcpMTU() int {
	mtu := h.s.cfg.TCP.MTU
	for i := range h.ifs {
		if h.ifs[i].ok && h.ifs[i].mtu > 0 && (mtu == 0 || h.ifs[i].mtu < mtu) {
			mtu = h.ifs[i].mtu
		}
	}
	return mtu
}

// tcpMTUChanged follows an interface's new MTU in the queue's engine: new connections take the MSS of
// tcpMTU, and when the MTU went down, the connections whose route leaves through that interface lower
// their MSS to it. Without that, every full-sized segment they send is refused before it leaves (DF:
// DropFragNeeded) and the connection black-holes; Linux gets there through the route's PMTU.
func (h *handler) tcpMTUChanged(iface int32, lowered bool) {
	t := h.tcp
	if t == nil {
		return
	}
	if mtu := h.tcpMTU(); mtu > 0 {
		t.eng.SetMTU(mtu)
	}
	if !lowered {
		return
	}
	// PortChanged runs between batches: enter the routing table as a batch does.
	f := h.s.rt.enter(h.rd)
	defer h.rd.leave()
	t.eng.LowerMTU(h.ifs[iface].mtu, func(_, remote netip.AddrPort) bool {
		var e *routeEntry
		if a := remote.Addr(); a.Is4() {
			e = f.lookup(addr4(a))
		} else {
			a16 := a.As16()
			if isLinkLocal6(&a16) {
				return false // no link-local connections (DialTCP and ListenTCP refuse them)
			}
			e = f.lookup6(&a16)
		}
		return e != nil && e.iface == iface
	})
}

// Send is the engine's Output: route the destination, build Ethernet + IPv4 + the segment in a new frame
// of the current batch and put it on the list for the Output hook. It runs on the handler's goroutine.
func (t *tcpQueue) Send(seg *tcp.Segment) bool {
	b, h := t.b, t.h
	if b == nil || b.Room() <= t.reserve {
		return false
	}
	dst := seg.Dst.Addr()
	if dst.Is6() {
		return t.send6(seg)
	}
	d4 := addr4(dst)
	e := h.snap.lookup(d4)
	if e == nil || e.typ != Unicast || !h.ifs[e.iface].ok {
		// Like ip_queue_xmit failing: the segment is lost, the engine's timers retransmit it.
		inc(&t.noRoute)
		return true
	}
	n := seg.Len()
	q, qi, done := t.newFrame(proto.IPv4MinHeaderLen, n)
	if q == nil {
		return done
	}
	d := q.Data()
	proto.EthernetFields{EtherType: proto.EtherTypeIPv4}.Encode(d)
	h.ipID++
	// DF as Linux sets it: the MSS already fits the smallest MTU of the queue, so DF never costs a drop
	// here, and a router further on answers with fragmentation needed instead of fragmenting.
	proto.IPv4Fields{ID: h.ipID, DontFragment: true, TTL: defaultTTL, Protocol: proto.ProtoTCP,
		Src: seg.Src.Addr(), Dst: dst, PayloadLen: n}.Encode(d[ethLen:])
	seg.Encode(d[ethLen+proto.IPv4MinHeaderLen:])
	h.setEgress(q, qi, e, d4)
	t.out = append(t.out, qi)
	return true
}

// newFrame takes a frame of the batch for a segment of n bytes behind an L3 header of l3 bytes. Without
// one, done is Send's answer: false when the batch has no frame now (the engine keeps the segment), true
// when the segment is larger than a frame (only with a configured MTU beyond the frame size: it is lost,
// and counted, and the engine's timers retransmit it).
func (t *tcpQueue) newFrame(l3, n int) (q *pipeline.Packet, qi uint16, done bool) {
	q, ok := t.b.Alloc()
	if !ok {
		inc(&t.noBuffer)
		return nil, 0, false
	}
	if !q.SetLen(ethLen + l3 + n) {
		q.Drop(pipeline.DropNoBuffer)
		inc(&t.noBuffer)
		return nil, 0, true
	}
	return q, uint16(t.b.N - 1), true
}

// tcpInput is the protocol 6 branch of local delivery (IPv4 and IPv6): checksum check, then the engine.
func (h *handler) tcpInput(b *pipeline.Batch, p *pipeline.Packet, out []uint16) []uint16 {
	var src, dst netip.Addr
	var segb []byte
	if d := p.Data(); isIPv6Frame(d) {
		ip := proto.IPv6(d[ethLen:])
		if ip.Dst().IsMulticast() {
			p.Drop(DropTCPBroadcast)
			return out
		}
		src, dst, segb = ip.Src(), ip.Dst(), d[p.L4:]
	} else {
		ip := proto.IPv4(d[ethLen:])
		src, dst = ip.Src(), ip.Dst()
		if d := addr4(dst); d == limitedB {
			p.Drop(DropTCPBroadcast)
			return out
		} else if e := h.snap.lookup(d); e != nil && e.typ == Broadcast {
			p.Drop(DropTCPBroadcast)
			return out
		}
		segb = ip[ip.HeaderLen():]
	}
	seg, err := proto.ParseTCP(segb)
	if err != proto.OK || !seg.ChecksumValid(src, dst) && !h.partialOK(p, src, dst, proto.ProtoTCP, seg) {
		p.Drop(pipeline.DropTCPMalformed)
		return out
	}
	t := h.tcp
	t.b, t.out, t.reserve = b, out, tcpReserve
	if !t.inBatch {
		t.inBatch = true
		t.eng.BeginBatch()
	}
	t.eng.Input(h.now, src, dst, seg)
	out = t.out
	t.b, t.out = nil, nil
	// The engine copied the payload into the connection's buffer: the frame is done with.
	p.Consume()
	inc(&h.ctr.delivered)
	return out
}

// tcpFlush ends the engine's batch after local delivery: the ACKs it held for the batch's in-order data
// leave now, one per connection (tcp.Engine.BeginBatch).
func (h *handler) tcpFlush(b *pipeline.Batch, out []uint16) []uint16 {
	t := h.tcp
	if !t.inBatch {
		return out
	}
	t.inBatch = false
	t.b, t.out, t.reserve = b, out, tcpReserve
	t.eng.Flush(h.now)
	out = t.out
	t.b, t.out = nil, nil
	return out
}

// tcpTick runs the engine's timers and application requests from the handler's Tick and returns the
// packets it built and its wake-up time merged into wake.
func (h *handler) tcpTick(b *pipeline.Batch, out []uint16, wake int64) ([]uint16, int64) {
	t := h.tcp
	t.b, t.out, t.reserve = b, out, 4
	w := t.eng.Tick(h.now)
	out = t.out
	t.b, t.out = nil, nil
	if w != 0 && (wake == 0 || w < wake) {
		wake = w
	}
	return out, wake
}

// TCPListener is a listening TCP socket of a Stack, open on every queue's engine (RSS spreads the
// connections of one port over the queues); the connections established on any queue come out of one
// Accept. It implements net.Listener; its methods are safe for concurrent use.
type TCPListener struct {
	s      *Stack
	addr   netip.AddrPort
	acc    chan *tcp.Conn
	closed chan struct{}
	once   sync.Once
	subs   []*tcp.Listener // guarded by s.tcp.mu
	wg     sync.WaitGroup
}

var _ net.Listener = (*TCPListener)(nil)

// attach opens the listener on e and starts moving its accepted connections to the merged queue.
// Called with s.tcp.mu held.
func (l *TCPListener) attach(e *tcp.Engine) error {
	sub, err := e.Listen(l.addr)
	if err != nil {
		return err
	}
	l.subs = append(l.subs, sub)
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			c, err := sub.AcceptTCP()
			if err != nil {
				return
			}
			select {
			case l.acc <- c:
			case <-l.closed:
				c.Close()
				return
			}
		}
	}()
	return nil
}

// ListenTCP opens a TCP listener on laddr, which must be one of the stack's addresses, 0.0.0.0 (all IPv4
// addresses) or :: (all addresses of both families, as a Linux socket without IPV6_V6ONLY), with a port;
// link-local addresses are not supported. Connections are served by the pollers; Config.TCP sets buffers, backlog and SYN
// queue (beyond which SYN cookies answer).
func (s *Stack) ListenTCP(laddr netip.AddrPort) (*TCPListener, error) {
	a := laddr.Addr().Unmap()
	if !a.IsValid() {
		a = netip.IPv4Unspecified()
	}
	if a.Zone() != "" || a.IsLinkLocalUnicast() {
		return nil, fmt.Errorf("listen tcp %v: link-local addresses are not supported (listen on :: or a global address)", laddr)
	}
	if laddr.Port() == 0 {
		return nil, fmt.Errorf("listen tcp %v: give a port to listen on", laddr)
	}
	if !a.IsUnspecified() {
		if r, ok := s.Lookup(a); !ok || r.Type != Local {
			return nil, fmt.Errorf("listen tcp %v: %v is not an address of this stack (add it to an Interface, or listen on 0.0.0.0)", laddr, a)
		}
	}
	laddr = netip.AddrPortFrom(a, laddr.Port())
	s.tcp.mu.Lock()
	defer s.tcp.mu.Unlock()
	for _, o := range s.tcp.listeners {
		if o.addr.Port() == laddr.Port() && (o.addr.Addr() == a || o.addr.Addr().IsUnspecified() || a.IsUnspecified()) {
			return nil, fmt.Errorf("listen tcp %v: %w", laddr, ErrAddrInUse)
		}
	}
	l := &TCPListener{s: s, addr: laddr, acc: make(chan *tcp.Conn), closed: make(chan struct{})}
	for _, t := range s.tcp.queues {
		if err := l.attach(t.eng); err != nil {
			l.closeSubs()
			return nil, err
		}
	}
	s.tcp.listeners = append(s.tcp.listeners, l)
	return l, nil
}

// Accept waits for the next connection on any queue.
func (l *TCPListener) Accept() (net.Conn, error) {
	c, err := l.AcceptTCP()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// AcceptTCP is Accept returning the concrete type.
func (l *TCPListener) AcceptTCP() (*tcp.Conn, error) {
	select {
	case c := <-l.acc:
		return c, nil
	case <-l.closed:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed}
	}
}

// Close stops listening on every queue; connections not yet accepted are reset. Established connections
// stay open.
func (l *TCPListener) Close() error {
	err := error(&net.OpError{Op: "close", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed})
	l.once.Do(func() {
		err = nil
		close(l.closed)
		t := &l.s.tcp
		t.mu.Lock()
		for i, x := range t.listeners {
			if x == l {
				t.listeners = append(t.listeners[:i:i], t.listeners[i+1:]...)
				break
			}
		}
		l.closeSubs()
		t.mu.Unlock()
		l.wg.Wait()
	})
	return err
}

func (l *TCPListener) closeSubs() {
	for _, sub := range l.subs {
		sub.Close()
	}
	l.subs = nil
}

// Addr returns the listening address as a *net.TCPAddr.
func (l *TCPListener) Addr() net.Addr { return net.TCPAddrFromAddrPort(l.addr) }

// AddrPort returns the listening address.
func (l *TCPListener) AddrPort() netip.AddrPort { return l.addr }

// ErrNoRoute is returned by DialTCP for a destination the routing table cannot reach.
var ErrNoRoute = errors.New("no route to host (add a route or an interface on its network)")

// DialTCP opens a connection to raddr from the address of the interface the route to raddr leaves by and
// an ephemeral port, and waits for the handshake (ECONNREFUSED after a RST, ETIMEDOUT after
// Config.TCP.SynRetries, ctx's error when it ends first). The returned net.Conn is a *tcp.Conn.
func (s *Stack) DialTCP(ctx context.Context, raddr netip.AddrPort) (net.Conn, error) {
	c, err := s.DialTCPFrom(ctx, netip.AddrPort{}, raddr)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// DialTCPFrom is DialTCP from laddr: an unspecified address picks the source as DialTCP does, port 0 an
// ephemeral port.
//
// With several queues the connection lives on one queue's engine, chosen by raddr; the answers must come
// back on that queue, which RSS decides by the 4-tuple. Use one queue (or steer the flows) for clients.
func (s *Stack) DialTCPFrom(ctx context.Context, laddr, raddr netip.AddrPort) (*tcp.Conn, error) {
	ra := raddr.Addr().Unmap()
	if !ra.IsValid() || raddr.Port() == 0 {
		return nil, fmt.Errorf("dial tcp %v: not an address and port", raddr)
	}
	if ra.Is4() {
		if d := addr4(ra); martian(d) || isMulticast(d) {
			return nil, fmt.Errorf("dial tcp %v: not a host address (0/8, 127/8, 169.254/16 and 224/3 name no peer)", raddr)
		}
	} else if !ra.IsGlobalUnicast() || ra.Zone() != "" {
		return nil, fmt.Errorf("dial tcp %v: not a global unicast address (link-local, multicast and loopback are not supported)", raddr)
	}
	raddr = netip.AddrPortFrom(ra, raddr.Port())
	src := laddr.Addr().Unmap()
	if !src.IsValid() || src.IsUnspecified() {
		e := s.rt.lookupLocked(ra)
		if e == nil || e.typ == Blackhole || e.typ == Unreachable || e.typ == Broadcast {
			return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(raddr), Err: ErrNoRoute}
		}
		if e.typ == Local {
			return nil, fmt.Errorf("dial tcp %v: connecting to the stack's own address is not supported", raddr)
		}
		src = s.sourceFor(e.iface, ra)
		if !src.IsValid() {
			return nil, fmt.Errorf("dial tcp %v: interface %s has no address to send from", raddr, s.ifaces[e.iface].name)
		}
	} else if r, ok := s.Lookup(src); !ok || r.Type != Local || src.Is4() != ra.Is4() {
		return nil, fmt.Errorf("dial tcp %v: %v is not an address of this stack of the destination's family", raddr, src)
	}
	s.tcp.mu.Lock()
	qs := s.tcp.queues
	s.tcp.mu.Unlock()
	if len(qs) == 0 {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Addr: net.TCPAddrFromAddrPort(raddr), Err: ErrNoQueue}
	}
	sum := uint(raddr.Port())
	for _, x := range ra.As16() {
		sum += uint(x)
	}
	t := qs[int(sum)%len(qs)]
	return t.eng.Dial(ctx, netip.AddrPortFrom(src, laddr.Port()), raddr)
}

// sourceFor picks interface iface's address for dst: one on dst's network, else the first (for IPv6 only
// addresses whose DAD is done).
func (s *Stack) sourceFor(iface int32, dst netip.Addr) netip.Addr {
	if iface < 0 || int(iface) >= len(s.ifaces) {
		return netip.Addr{}
	}
	if dst.Is6() {
		v6 := s.ifaces[iface].v6
		if v6 == nil {
			return netip.Addr{}
		}
		return (&hiface{v6: v6}).source6For(dst)
	}
	addrs := s.ifaces[iface].addrs
	for _, a := range addrs {
		if a.Contains(dst) {
			return a.Addr()
		}
	}
	if len(addrs) > 0 {
		return addrs[0].Addr()
	}
	return netip.Addr{}
}

// TCPStat sums one engine counter over the queues.
func (s *Stack) TCPStat(st tcp.Stat) uint64 {
	s.tcp.mu.Lock()
	defer s.tcp.mu.Unlock()
	var n uint64
	for _, t := range s.tcp.queues {
		n += t.eng.Stat(st)
	}
	return n
}

// TCPStats sums the engine counters over the queues, by name (tcp.Stat names), plus the stack's own:
// tcp_out_no_route (segments for a destination with no route) and tcp_out_no_buffer (no frame or batch
// room; the engine kept the data and retried). It allocates; it is meant for metrics export.
func (s *Stack) TCPStats() map[string]uint64 {
	s.tcp.mu.Lock()
	defer s.tcp.mu.Unlock()
	m := map[string]uint64{"tcp_out_no_route": 0, "tcp_out_no_buffer": 0}
	for _, t := range s.tcp.queues {
		for k, v := range t.eng.Stats() {
			m[k] += v
		}
		m["tcp_out_no_route"] += t.noRoute.Load()
		m["tcp_out_no_buffer"] += t.noBuffer.Load()
	}
	return m
}

// TCPConns is the number of TCP connections in the engines' tables (every state but LISTEN, including
// TIME-WAIT).
func (s *Stack) TCPConns() int {
	s.tcp.mu.Lock()
	defer s.tcp.mu.Unlock()
	n := 0
	for _, t := range s.tcp.queues {
		n += t.eng.Conns()
	}
	return n
}

// send6 is Send for an IPv6 destination: no DF to set (IPv6 routers never fragment, RFC 8200 §5), and the
// engine's MSS already leaves room for the 40-byte header.
func (t *tcpQueue) send6(seg *tcp.Segment) bool {
	h := t.h
	dst := seg.Dst.Addr()
	d16 := dst.As16()
	e := h.snap.lookup6(&d16)
	if e == nil || e.typ != Unicast || !h.ifs[e.iface].ok {
		inc(&t.noRoute)
		return true
	}
	n := seg.Len()
	q, qi, done := t.newFrame(proto.IPv6HeaderLen, n)
	if q == nil {
		return done
	}
	d := q.Data()
	proto.EthernetFields{EtherType: proto.EtherTypeIPv6}.Encode(d)
	proto.IPv6Fields{NextHeader: proto.ProtoTCP, HopLimit: defaultTTL, Src: seg.Src.Addr(), Dst: dst, PayloadLen: n}.Encode(d[ethLen:])
	seg.Encode(d[ethLen+proto.IPv6HeaderLen:])
	h.setEgress6(q, qi, e.iface, e.gw6, dst)
	t.out = append(t.out, qi)
	return true
}

// tcpFragNeeded hands an ICMP Fragmentation Needed that quotes a TCP segment of ours (RFC 1191: its IPv4
// header and at least the segment's first 8 bytes) to the queue's engine, which checks it against the
// connection (RFC 5927) and lowers the path MTU. mtu is 0 from routers older than RFC 1191.
func (h *handler) tcpFragNeeded(quote []byte, mtu uint16) {
	if len(quote) < proto.IPv4MinHeaderLen {
		return
	}
	ip := proto.IPv4(quote) // cut after 8 bytes of the segment: Total Length overstates it, as ParseIPv4 would say
	hl := ip.HeaderLen()
	if ip.Version() != 4 || hl < proto.IPv4MinHeaderLen || len(quote) < hl+8 || ip.Protocol() != proto.ProtoTCP || ip.FragmentOffset() != 0 {
		return
	}
	seg := proto.TCP(quote[hl:]) // the source port, destination port and sequence number are its first 8 bytes
	h.tcp.eng.PacketTooBig(h.now, netip.AddrPortFrom(ip.Src(), seg.SrcPort()), netip.AddrPortFrom(ip.Dst(), seg.DstPort()),
		seg.Seq(), int(mtu))
}

// tcpPacketTooBig hands an ICMPv6 Packet Too Big that quotes a TCP segment of ours to the queue's engine
// (RFC 8201 §4; the engine believes it only for a connection and a sequence number in flight, RFC 5927
// §4.1). quote is the invoking packet from its IPv6 header on.
func (h *handler) tcpPacketTooBig(quote []byte, mtu uint32) {
	ip, err := proto.ParseIPv6(quote)
	if err == proto.ErrTruncated && len(quote) >= proto.IPv6HeaderLen {
		ip, err = proto.IPv6(quote), proto.OK // the quote is cut to fit 1280 bytes: Payload Length overstates it
	}
	if err != proto.OK {
		return
	}
	u, uerr := ip.UpperLayer()
	// The source port, destination port and sequence number are the segment's first 8 bytes.
	if uerr != proto.OK || u.Protocol != proto.ProtoTCP || u.FragmentOffset != 0 || len(ip)-u.Offset < 8 {
		return
	}
	seg := proto.TCP(ip[u.Offset:])
	h.tcp.eng.PacketTooBig(h.now, netip.AddrPortFrom(ip.Src(), seg.SrcPort()), netip.AddrPortFrom(ip.Dst(), seg.DstPort()),
		seg.Seq(), int(min(mtu, 1<<16-1)))
}
