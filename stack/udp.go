package stack

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"sync"
	"time"

	"github.com/xdpnet/xdpnet/internal/deadline"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
)

// datagram is one UDP payload on its way between a poller and an application. Buffers are recycled
// through dgPool so that the poller does not allocate per datagram.
type datagram struct {
	buf    []byte
	n      int
	remote netip.AddrPort // source when received, destination when sent
	local  netip.AddrPort // destination when received, source when sent (address may be unspecified)
}

var dgPool = sync.Pool{New: func() any { return &datagram{buf: make([]byte, 2048)} }}

func getDatagram(n int) *datagram {
	dg := dgPool.Get().(*datagram)
	if cap(dg.buf) < n {
		dg.buf = make([]byte, n)
	}
	dg.buf = dg.buf[:cap(dg.buf)]
	dg.n = n
	return dg
}

// udpTable maps local ports to sockets. Like the neighbour table it is an immutable map swapped on change,
// so the pollers look sockets up without a lock.
type udpTable struct {
	mu       sync.Mutex
	m        atomicMap[uint16, []*UDPConn]
	nextPort uint16
}

func (t *udpTable) init() {
	t.m.store(map[uint16][]*UDPConn{})
	t.nextPort = ephemeralFirst
}

// Ephemeral ports (RFC 6335 §6: 49152-65535).
const ephemeralFirst = 49152

// lookup finds the socket bound to dst:port, or to the unspecified address and port.
func (t *udpTable) lookup(dst netip.Addr, port uint16) *UDPConn {
	var wild *UDPConn
	for _, c := range t.m.load()[port] {
		la := c.laddr.Addr()
		if la == dst {
			return c
		}
		// [::] takes both families (a dual-stack socket); 0.0.0.0 only IPv4, as Linux's.
		if la.IsUnspecified() && (la.Is6() || dst.Is4()) {
			wild = c
		}
	}
	return wild
}

// ErrAddrInUse is returned by ListenUDP for a taken address and port.
var ErrAddrInUse = errors.New("address already in use (close the other socket or pick another port)")

// ListenUDP opens a UDP socket on laddr, which must be one of the stack's addresses, 0.0.0.0 (all IPv4
// addresses) or :: (all addresses of both families); port 0 picks a free ephemeral port. Link-local
// addresses (which need a zone) are not supported. The socket is served by the pollers: received datagrams wait
// in a queue of Config.UDPQueueLen (further ones drop as DropSocketQueueFull), sent ones go through a
// queue's send queue and leave on its next Tick.
func (s *Stack) ListenUDP(laddr netip.AddrPort) (*UDPConn, error) {
	a := laddr.Addr().Unmap()
	if !a.IsValid() {
		a = netip.IPv4Unspecified()
	}
	if a.Zone() != "" || a.IsLinkLocalUnicast() {
		return nil, fmt.Errorf("listen udp %v: link-local addresses are not supported (listen on :: or a global address)", laddr)
	}
	if !a.IsUnspecified() {
		if r, ok := s.Lookup(a); !ok || r.Type != Local {
			return nil, fmt.Errorf("listen udp %v: %v is not an address of this stack (add it to an Interface, or listen on 0.0.0.0)", laddr, a)
		}
	}
	t := &s.udp
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.m.load()
	port := laddr.Port()
	if port == 0 {
		for range 65536 - ephemeralFirst {
			cand := t.nextPort
			t.nextPort++
			if t.nextPort == 0 {
				t.nextPort = ephemeralFirst
			}
			if len(old[cand]) == 0 {
				port = cand
				break
			}
		}
		if port == 0 {
			return nil, fmt.Errorf("listen udp %v: no free ephemeral port (close some sockets)", laddr)
		}
	}
	for _, c := range old[port] {
		if c.laddr.Addr() == a || c.laddr.Addr().IsUnspecified() || a.IsUnspecified() {
			return nil, fmt.Errorf("listen udp %v: %w", netip.AddrPortFrom(a, port), ErrAddrInUse)
		}
	}
	c := &UDPConn{s: s, laddr: netip.AddrPortFrom(a, port), rx: make(chan *datagram, s.cfg.UDPQueueLen),
		closed: make(chan struct{})}
	c.rdl.Init()
	c.wdl.Init()
	m := make(map[uint16][]*UDPConn, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[port] = append(append([]*UDPConn(nil), old[port]...), c)
	t.m.store(m)
	return c, nil
}

func (t *udpTable) remove(c *UDPConn) {
	t.mu.Lock()
	defer t.mu.Unlock()
	old := t.m.load()
	m := make(map[uint16][]*UDPConn, len(old))
	for k, v := range old {
		m[k] = v
	}
	var l []*UDPConn
	for _, x := range old[c.laddr.Port()] {
		if x != c {
			l = append(l, x)
		}
	}
	if len(l) == 0 {
		delete(m, c.laddr.Port())
	} else {
		m[c.laddr.Port()] = l
	}
	t.m.store(m)
}

// UDPConn is a UDP socket of a Stack. It implements net.PacketConn; its methods are safe for concurrent use.
type UDPConn struct {
	s         *Stack
	laddr     netip.AddrPort
	rx        chan *datagram
	closed    chan struct{}
	closeOnce sync.Once
	rdl, wdl  deadline.Deadline
}

var _ net.PacketConn = (*UDPConn)(nil)

// deliver queues a received datagram; false when the queue is full. Called by pollers.
func (c *UDPConn) deliver(payload []byte, from, to netip.AddrPort) bool {
	if len(c.rx) == cap(c.rx) {
		return false
	}
	dg := getDatagram(len(payload))
	copy(dg.buf, payload)
	dg.remote, dg.local = from, to
	select {
	case c.rx <- dg:
		return true
	default:
		dgPool.Put(dg)
		return false
	}
}

// ReadFromUDPAddrPort reads one datagram into p (the excess of a longer one is lost, as with a kernel
// socket) and returns its length and source.
func (c *UDPConn) ReadFromUDPAddrPort(p []byte) (int, netip.AddrPort, error) {
	select {
	case <-c.closed:
		return 0, netip.AddrPort{}, c.opErr("read", net.ErrClosed)
	default:
	}
	select {
	case dg := <-c.rx:
		n := copy(p, dg.buf[:dg.n])
		from := dg.remote
		dgPool.Put(dg)
		return n, from, nil
	case <-c.closed:
		return 0, netip.AddrPort{}, c.opErr("read", net.ErrClosed)
	case <-c.rdl.Done():
		return 0, netip.AddrPort{}, c.opErr("read", os.ErrDeadlineExceeded)
	}
}

// ReadFrom implements net.PacketConn.
func (c *UDPConn) ReadFrom(p []byte) (int, net.Addr, error) {
	n, from, err := c.ReadFromUDPAddrPort(p)
	if err != nil {
		return 0, nil, err
	}
	return n, net.UDPAddrFromAddrPort(from), nil
}

// WriteToUDPAddrPort queues p for addr on one of the stack's queues (chosen by addr, so one flow keeps its
// order) and wakes that queue. It blocks while the send queue is full, until the write deadline.
func (c *UDPConn) WriteToUDPAddrPort(p []byte, addr netip.AddrPort) (int, error) {
	a := addr.Addr().Unmap()
	if !a.IsValid() || addr.Port() == 0 {
		return 0, c.opErr("write", fmt.Errorf("destination %v is not an address and port", addr))
	}
	if a.Is4() {
		if d := addr4(a); martian(d) || isMulticast(d) {
			return 0, c.opErr("write", fmt.Errorf("destination %v is not a host address (0/8, 127/8, 169.254/16, 224/3 are not supported)", addr))
		}
		if len(p) > 0xffff-proto.IPv4MinHeaderLen-proto.UDPHeaderLen {
			return 0, c.opErr("write", errors.New("datagram longer than 65507 bytes"))
		}
	} else {
		if !a.IsGlobalUnicast() || a.Zone() != "" {
			return 0, c.opErr("write", fmt.Errorf("destination %v is not a global unicast address (link-local, multicast and loopback are not supported)", addr))
		}
		if len(p) > 0xffff-proto.UDPHeaderLen {
			return 0, c.opErr("write", errors.New("datagram longer than 65527 bytes"))
		}
	}
	if la := c.laddr.Addr(); la.Is4() && !a.Is4() || la.Is6() && !la.IsUnspecified() && !a.Is6() {
		return 0, c.opErr("write", fmt.Errorf("destination %v is not of the socket's address family (%v)", addr, la))
	}
	select {
	case <-c.closed:
		return 0, c.opErr("write", net.ErrClosed)
	default:
	}
	hs := *c.s.handlers.Load()
	if len(hs) == 0 {
		return 0, c.opErr("write", ErrNoQueue)
	}
	sum := uint(addr.Port())
	for _, x := range a.As16() {
		sum += uint(x)
	}
	h := hs[int(sum)%len(hs)]
	dg := getDatagram(len(p))
	copy(dg.buf, p)
	dg.remote, dg.local = netip.AddrPortFrom(a, addr.Port()), c.laddr
	select {
	case h.tx <- dg:
	case <-c.closed:
		dgPool.Put(dg)
		return 0, c.opErr("write", net.ErrClosed)
	case <-c.wdl.Done():
		dgPool.Put(dg)
		return 0, c.opErr("write", os.ErrDeadlineExceeded)
	}
	if h.q.Waker != nil {
		h.q.Waker.Wake()
	}
	return len(p), nil
}

// WriteTo implements net.PacketConn; addr must be a *net.UDPAddr.
func (c *UDPConn) WriteTo(p []byte, addr net.Addr) (int, error) {
	ua, ok := addr.(*net.UDPAddr)
	if !ok {
		return 0, c.opErr("write", fmt.Errorf("address %v is a %T, want *net.UDPAddr", addr, addr))
	}
	return c.WriteToUDPAddrPort(p, ua.AddrPort())
}

// Close unbinds the socket and wakes blocked readers and writers. Datagrams already queued for sending
// still leave.
func (c *UDPConn) Close() error {
	err := c.opErr("close", net.ErrClosed)
	c.closeOnce.Do(func() {
		err = nil
		close(c.closed)
		c.s.udp.remove(c)
	})
	return err
}

// LocalAddr returns the bound address as a *net.UDPAddr.
func (c *UDPConn) LocalAddr() net.Addr { return net.UDPAddrFromAddrPort(c.laddr) }

// LocalAddrPort returns the bound address.
func (c *UDPConn) LocalAddrPort() netip.AddrPort { return c.laddr }

// SetDeadline sets both deadlines.
func (c *UDPConn) SetDeadline(t time.Time) error {
	c.rdl.Set(t)
	c.wdl.Set(t)
	return nil
}

// SetReadDeadline implements net.PacketConn.
func (c *UDPConn) SetReadDeadline(t time.Time) error { c.rdl.Set(t); return nil }

// SetWriteDeadline implements net.PacketConn.
func (c *UDPConn) SetWriteDeadline(t time.Time) error { c.wdl.Set(t); return nil }

func (c *UDPConn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "udp", Addr: net.UDPAddrFromAddrPort(c.laddr), Err: err}
}

// udpOutput builds the frames of queued datagrams (Tick), each routed and appended to out for Output.
func (h *handler) udpOutput(b *pipeline.Batch, out []uint16) []uint16 {
	for b.Room() > 4 {
		var dg *datagram
		select {
		case dg = <-h.tx:
		default:
			return out
		}
		out = h.udpBuild(b, dg, out)
		dgPool.Put(dg)
	}
	return out
}

func (h *handler) udpBuild(b *pipeline.Batch, dg *datagram, out []uint16) []uint16 {
	if dg.remote.Addr().Is6() {
		return h.udpBuild6(b, dg, out)
	}
	dst := addr4(dg.remote.Addr())
	e := h.snap.lookup(dst)
	if e == nil || e.typ != Unicast || !h.ifs[e.iface].ok {
		inc(&h.ctr.udpNoRoute)
		return out
	}
	ifc := &h.ifs[e.iface]
	src := dg.local.Addr().Unmap()
	if src.IsUnspecified() {
		src = ifc.sourceFor(dg.remote.Addr())
		if !src.IsValid() {
			src = h.routerID()
		}
	}
	q, ok := b.Alloc()
	if !ok {
		inc(&h.ctr.udpNoBuf)
		return out
	}
	qi := uint16(b.N - 1)
	n := ethLen + proto.IPv4MinHeaderLen + proto.UDPHeaderLen + dg.n
	if !q.SetLen(n) {
		// The datagram does not fit one frame; building it straight into fragments is not supported.
		inc(&h.ctr.udpNoBuf)
		q.Drop(pipeline.DropNoBuffer)
		return out
	}
	d := q.Data()
	proto.EthernetFields{EtherType: proto.EtherTypeIPv4}.Encode(d)
	h.ipID++
	proto.IPv4Fields{ID: h.ipID, TTL: defaultTTL, Protocol: proto.ProtoUDP, Src: src, Dst: dg.remote.Addr(),
		PayloadLen: proto.UDPHeaderLen + dg.n}.Encode(d[ethLen:])
	udp := d[ethLen+proto.IPv4MinHeaderLen:]
	copy(udp[proto.UDPHeaderLen:], dg.buf[:dg.n])
	proto.UDPFields{SrcPort: dg.local.Port(), DstPort: dg.remote.Port(), PayloadLen: dg.n}.EncodeChecksum(udp, src, dg.remote.Addr())
	h.setEgress(q, qi, e, dst)
	inc(&h.ctr.udpOut)
	return append(out, qi)
}

// udpInput delivers an IPv4 datagram to its socket (udpRcv).
func (h *handler) udpInput(b *pipeline.Batch, p *pipeline.Packet, out []uint16) []uint16 {
	ip := proto.IPv4(p.Data()[ethLen:])
	return h.udpRcv(b, p, ip.Src(), ip.Dst(), ip.Payload(), out)
}

// udpRcv is udp_rcv for both families: checksum (a partial one accepted from a veth port), then the
// socket, or port unreachable (RFC 1122 §4.1.3.1, RFC 4443 §3.1) when none is bound.
func (h *handler) udpRcv(b *pipeline.Batch, p *pipeline.Packet, src, dst netip.Addr, seg []byte, out []uint16) []uint16 {
	u, err := proto.ParseUDP(seg)
	if err != proto.OK || !u.ChecksumValid(src, dst) && !h.partialOK(p, src, dst, proto.ProtoUDP, u) {
		p.Drop(pipeline.DropUDPMalformed)
		return out
	}
	if dst.IsMulticast() { // IPv4 multicast never gets here: routing drops it
		p.Drop(DropMulticast)
		return out
	}
	c := h.s.udp.lookup(dst, u.DstPort())
	if c == nil {
		if dst.Is4() {
			out = h.icmpError(b, p, proto.ICMPv4DestUnreachable, proto.ICMPv4PortUnreachable, 0, out)
		} else {
			out = h.icmp6Error(b, p, proto.ICMPv6DestUnreachable, proto.ICMPv6PortUnreachable, 0, out)
		}
		p.Drop(pipeline.DropUDPNoSocket)
		return out
	}
	if !c.deliver(u.Payload(), netip.AddrPortFrom(src, u.SrcPort()), netip.AddrPortFrom(dst, u.DstPort())) {
		p.Drop(pipeline.DropSocketQueueFull)
		return out
	}
	inc(&h.ctr.udpIn)
	inc(&h.ctr.delivered)
	p.Consume()
	return out
}

// udpBuild6 is udpBuild for an IPv6 destination: the checksum is mandatory (RFC 8200 §8.1), and a
// datagram that does not fit the egress MTU is dropped (frag_needed; the stack does not fragment).
func (h *handler) udpBuild6(b *pipeline.Batch, dg *datagram, out []uint16) []uint16 {
	dstA := dg.remote.Addr()
	d16 := dstA.As16()
	e := h.snap.lookup6(&d16)
	if e == nil || e.typ != Unicast || !h.ifs[e.iface].ok {
		inc(&h.ctr.udpNoRoute)
		return out
	}
	ifc := &h.ifs[e.iface]
	src := dg.local.Addr()
	if src.IsUnspecified() {
		if src = ifc.source6For(dstA); !src.IsValid() {
			src = h.routerID6()
		}
	}
	if !src.Is6() {
		inc(&h.ctr.udpNoRoute) // no usable address yet (DAD running)
		return out
	}
	q, ok := b.Alloc()
	if !ok {
		inc(&h.ctr.udpNoBuf)
		return out
	}
	qi := uint16(b.N - 1)
	if !q.SetLen(ethLen + proto.IPv6HeaderLen + proto.UDPHeaderLen + dg.n) {
		inc(&h.ctr.udpNoBuf)
		q.Drop(pipeline.DropNoBuffer)
		return out
	}
	d := q.Data()
	proto.EthernetFields{EtherType: proto.EtherTypeIPv6}.Encode(d)
	proto.IPv6Fields{NextHeader: proto.ProtoUDP, HopLimit: defaultTTL, Src: src, Dst: dstA,
		PayloadLen: proto.UDPHeaderLen + dg.n}.Encode(d[ethLen:])
	udp := d[ethLen+proto.IPv6HeaderLen:]
	copy(udp[proto.UDPHeaderLen:], dg.buf[:dg.n])
	proto.UDPFields{SrcPort: dg.local.Port(), DstPort: dg.remote.Port(), PayloadLen: dg.n}.EncodeChecksum(udp, src, dstA)
	h.setEgress6(q, qi, e.iface, e.gw6, dstA)
	inc(&h.ctr.udpOut)
	return append(out, qi)
}

// udp6Input is udpv6_rcv (udpRcv): a zero checksum is an error over IPv6 (RFC 8200 §8.1: "IPv6 receivers
// MUST discard UDP packets containing a zero checksum"; proto.UDP.ChecksumValid says so).
func (h *handler) udp6Input(b *pipeline.Batch, p *pipeline.Packet, out []uint16) []uint16 {
	d := p.Data()
	ip := proto.IPv6(d[ethLen:])
	return h.udpRcv(b, p, ip.Src(), ip.Dst(), d[p.L4:], out)
}
