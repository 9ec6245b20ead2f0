package tcp

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdpnet/xdpnet/proto"
)

// Config sets the engine's limits and timers. Zero fields take the defaults written next to them.
type Config struct {
	// MTU is the IP MTU of the path; the MSS announced and used is at most MTU-40 (RFC 9293 §3.7.1,
	// RFC 879). Default 1500.
	MTU int
	// SendBuffer and RecvBuffer are the per-connection buffer sizes in bytes a connection starts with.
	// Default 256 KiB each.
	SendBuffer, RecvBuffer int
	// SendBufferMax caps send-buffer autotuning (as Linux's tcp_wmem[2]): while the application is
	// blocked on a full send buffer, the buffer grows to twice what the windows let be in flight
	// (min(cwnd, SND.WND)), so that a fast path is not capped at SendBuffer in flight (sndBufExpand).
	// Default 4 MiB when SendBuffer is left at its default; when SendBuffer is set and SendBufferMax is
	// not, autotuning is off (as setting SO_SNDBUF turns it off on Linux).
	SendBufferMax int
	// RecvBufferMax caps receive-buffer autotuning: a connection whose application reads more per
	// round trip than its buffer can cover gets a larger buffer (and window), up to this size and within
	// MemoryLimit (see rcvSpaceAdjust). The window scale we offer is chosen for this size. Default 4 MiB
	// when RecvBuffer is left at its default; when RecvBuffer is set and RecvBufferMax is not, autotuning
	// is off (as setting SO_RCVBUF turns it off on Linux). At or below RecvBuffer autotuning is off.
	RecvBufferMax int
	// MemoryLimit caps the bytes queued in all connections together - data in send queues (unsent or
	// unacknowledged), in receive queues (unread) and out of order - as Linux's tcp_mem does: a connection
	// is charged for what it holds, not for the size of its buffers, so an idle one costs next to nothing
	// (Engine.MemUsed). Beyond 7/8 of it (memory pressure) Write queues at most minSndQueue bytes per
	// connection and buffers stop growing; beyond all of it arriving data is dropped unless the
	// connection's receive queue is empty (DropRcvMemory), and SYNs, handshakes and dials are refused
	// (DropMemoryLimit). Default 256 MiB.
	MemoryLimit int64
	// MaxTimeWait bounds the connections in TIME-WAIT (Linux's tcp_max_tw_buckets). A TIME-WAIT entry holds
	// no buffers and no memory charge, only the connection's state (about 3 KiB); beyond the bound a
	// connection that would enter TIME-WAIT goes straight to CLOSED (StatTimeWaitOverflow), as Linux does
	// when its bucket table is full. Default 8192.
	MaxTimeWait int
	// MaxOutOfOrder bounds the out-of-order queue: how many separate ranges of data beyond RCV.NXT are kept.
	// Default 32.
	MaxOutOfOrder int
	// SynQueueLen bounds the half-open (SYN-RECEIVED) connections per listener; beyond it the listener
	// answers with SYN cookies (RFC 4987 §3.6). Default 128.
	SynQueueLen int
	// AcceptBacklog is the accept queue length per listener. Default 128.
	AcceptBacklog int
	// MinRTO, InitialRTO and MaxRTO bound the retransmission timeout (RFC 6298 §2). RFC 6298 asks for a
	// 1 s minimum; like Linux the default is 200 ms. InitialRTO defaults to 1 s, MaxRTO to 60 s.
	MinRTO, InitialRTO, MaxRTO time.Duration
	// DelayedAck is the delayed-ACK timeout, at most 200 ms (RFC 1122 §4.2.3.2 says < 0.5 s; RFC 5681
	// §4.2 says 500 ms at most, we stay well under). Default 40 ms.
	DelayedAck time.Duration
	// MSL is the maximum segment lifetime; TIME-WAIT lasts 2*MSL (RFC 9293 §3.4.2). Default 30 s.
	MSL time.Duration
	// FinWait2Timeout ends a FIN-WAIT-2 connection whose application has closed it. Default 60 s.
	FinWait2Timeout time.Duration
	// MaxRetries is how many RTOs in a row end a connection with ETIMEDOUT (Linux's tcp_retries2), and how
	// many zero-window probes in a row may go unanswered; SynRetries the same for SYN and SYN-ACK.
	// Defaults 15 and 6.
	MaxRetries, SynRetries int
	// OrphanRetries replaces MaxRetries for a connection its application has closed (an orphan), whose
	// data nobody waits for, and also bounds the zero-window probes sent to an orphan whatever the answers
	// (Linux's tcp_orphan_retries; its 0 means 8). Default 8.
	OrphanRetries int
	// MaxOrphans bounds the connections closed by their application but not yet done (FIN-WAIT-1/2,
	// CLOSING, LAST-ACK; Linux's tcp_max_orphans): one more is reset at once (StatOrphanOverflow).
	// Default 4096.
	MaxOrphans int
	// ChallengeACKLimit is the engine-wide budget of challenge ACKs per second (RFC 5961 §7), drawn
	// afresh each second at random between half and one and a half times this value, as Linux's
	// tcp_challenge_ack_limit since CVE-2016-5696: a fixed budget shared by all connections let an
	// off-path host count the challenge ACKs left in a second and so learn whether its spoofed RST or
	// SYN hit the window of someone else's connection. Default 1000.
	ChallengeACKLimit int
	// InvalidRateLimit is the least time between two replies of one connection to segments it does not
	// accept - challenge ACKs, ACKs to out-of-window or PAWS-failed segments (Linux's
	// tcp_invalid_ratelimit, which is also 500 ms by default). Default 500 ms.
	InvalidRateLimit time.Duration
	// CongestionControl is the algorithm of new connections: CUBIC (RFC 9438, the zero value) or Reno;
	// Listener.SetCongestionControl and Conn.SetCongestionControl choose per listener and connection.
	CongestionControl CongestionControl
	// DisableHyStart turns HyStart++ (RFC 9406) off: the first slow start then runs until a loss, as
	// RFC 5681 has it.
	DisableHyStart bool
	// DisableMTUProbing turns packetization-layer PMTUD (RFC 4821, pmtu.go) off; it is on as with Linux's
	// tcp_mtu_probing=1: only after RTOs of full-sized segments suggest an ICMP black hole.
	DisableMTUProbing bool
	// BaseMSS is the MSS a suspected black hole drops to first (Linux's tcp_base_mss). Default 1024.
	BaseMSS int
	// MTUProbeInterval is how long a connection whose MTU search has converged waits before probing
	// upward again (Linux's tcp_probe_interval). Default 10 minutes.
	MTUProbeInterval time.Duration
	// KeepAlive is the keep-alive setting of new connections (off unless Enable; zero durations and count
	// take net.KeepAliveConfig's defaults, 15 s, 15 s and 9). Conn.SetKeepAlive, SetKeepAlivePeriod and
	// SetKeepAliveConfig change it per connection.
	KeepAlive net.KeepAliveConfig
	// NoDelay disables Nagle's algorithm on new connections (Conn.SetNoDelay changes it per connection).
	NoDelay bool
	// Key is the secret of the ISN and SYN cookie hashes; all zero means a random key.
	Key [16]byte
	// Disable* turn options off: RFC 7323 timestamps and window scaling, RFC 2018 SACK.
	DisableTimestamps, DisableWindowScale, DisableSACK bool
}

// Validate reports a field NewEngine cannot take as given (it uses the default instead).
func (c *Config) Validate() error {
	if c.CongestionControl >= numCC {
		return fmt.Errorf("tcp config: congestion control %d unknown (use tcp.CUBIC or tcp.Reno)", c.CongestionControl)
	}
	return nil
}

func (c *Config) setDefaults() {
	def := func(v *int, d int) {
		if *v <= 0 {
			*v = d
		}
	}
	defD := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	def(&c.MTU, 1500)
	if c.CongestionControl >= numCC {
		c.CongestionControl = CUBIC
	}
	c.MTU = max(c.MTU, 128)
	if c.SendBuffer <= 0 {
		c.SendBuffer = 256 << 10
		def(&c.SendBufferMax, 4<<20)
	}
	if c.RecvBuffer <= 0 {
		c.RecvBuffer = 256 << 10
		def(&c.RecvBufferMax, 4<<20)
	}
	c.RecvBuffer = min(c.RecvBuffer, 1<<30) // RFC 7323 §2.3: the window is below 2^30
	c.SendBuffer = min(c.SendBuffer, 1<<30)
	c.SendBufferMax = min(max(c.SendBufferMax, c.SendBuffer), 1<<30)
	c.RecvBufferMax = min(max(c.RecvBufferMax, c.RecvBuffer), 1<<30)
	if c.MemoryLimit <= 0 {
		c.MemoryLimit = 256 << 20
	}
	def(&c.MaxOutOfOrder, 32)
	def(&c.BaseMSS, 1024)
	c.BaseMSS = max(c.BaseMSS, minProbeMSS)
	defD(&c.MTUProbeInterval, 10*time.Minute)
	def(&c.MaxTimeWait, 8192)
	def(&c.SynQueueLen, 128)
	def(&c.AcceptBacklog, 128)
	defD(&c.MinRTO, 200*time.Millisecond)
	defD(&c.InitialRTO, time.Second)
	defD(&c.MaxRTO, 60*time.Second)
	defD(&c.DelayedAck, 40*time.Millisecond)
	c.DelayedAck = min(c.DelayedAck, 200*time.Millisecond)
	defD(&c.MSL, 30*time.Second)
	defD(&c.FinWait2Timeout, 60*time.Second)
	def(&c.MaxRetries, 15)
	def(&c.SynRetries, 6)
	def(&c.OrphanRetries, 8)
	def(&c.MaxOrphans, 4096)
	def(&c.ChallengeACKLimit, 1000)
	defD(&c.InvalidRateLimit, 500*time.Millisecond)
}

// connID is the demultiplexing key, RFC 9293 §3.3.1: "the pair of sockets identifies the connection".
type connID struct {
	local, remote netip.AddrPort
}

// Engine is the TCP of one poller: its connection table (demultiplexer keyed by the 4-tuple), listeners,
// timers and counters. Input and Tick are called by one goroutine, the owner; Listen, Dial and the Conn
// and Listener methods are safe from any goroutine.
type Engine struct {
	cfg   Config
	out   Output
	waker Waker
	k0    uint64
	k1    uint64

	mu        sync.Mutex // held by the owner during Input and Tick; taken briefly by Dial, Listen, Close
	conns     map[connID]*Conn
	listeners map[netip.AddrPort]*Listener
	portTable [portTableLen]uint16 // RFC 6056 Algorithm 4's table of per-bucket counters
	memUsed   atomic.Int64         // bytes queued in all connections (Config.MemoryLimit); changed under the connection's mu
	timeWait  int                  // connections in TIME-WAIT (Config.MaxTimeWait)
	orphans   int                  // connections closed by their application, not yet CLOSED or in TIME-WAIT (Config.MaxOrphans)
	nextTimer int64
	now       int64
	chStart   int64 // challenge ACK budget: start of the current second and ACKs left in it
	chLeft    int
	scratch   Segment
	rcvScale  uint8

	pendMu    sync.Mutex
	pending   []*Conn
	pendSpare []*Conn

	batching bool    // between BeginBatch and Flush: stretch ACKs wait for Flush
	ackq     []*Conn // connections with a stretch ACK waiting for Flush

	stats [numStats]atomic.Uint64
}

// NewEngine returns an engine that emits segments through out. waker, which may be nil, is called when
// an application goroutine queued work for the owner (it should make the owner call Tick soon).
func NewEngine(cfg Config, out Output, waker Waker) *Engine {
	cfg.setDefaults()
	e := &Engine{cfg: cfg, out: out, waker: waker, conns: map[connID]*Conn{},
		listeners: map[netip.AddrPort]*Listener{}}
	key := cfg.Key
	if key == [16]byte{} {
		_, _ = rand.Read(key[:])
	}
	e.k0, e.k1 = binary.LittleEndian.Uint64(key[:8]), binary.LittleEndian.Uint64(key[8:])
	for i := range e.portTable {
		// RFC 6056 §3.3.4: "table[i] = random() % 65536" - from the secret key, which is random unless
		// the configuration fixes it.
		e.portTable[i] = uint16(sipHash24(e.k1, e.k0, []byte{byte(i), 'p'}))
	}
	for e.rcvScale < 14 && cfg.RecvBufferMax>>e.rcvScale > 0xffff {
		e.rcvScale++
	}
	return e
}

// ourMSS is the MSS we announce and use on connections with addresses of a's family: the MTU less the IP
// and TCP headers (RFC 9293 §3.7.1; 60 bytes for IPv6, RFC 8200 §5). Called with e.mu held.
func (e *Engine) ourMSS(a netip.Addr) uint16 {
	return uint16(min(e.cfg.MTU-ipOverhead(a), 0xffff))
}

// MemUsed returns the bytes queued in all connections, what Config.MemoryLimit caps. Safe from any
// goroutine.
func (e *Engine) MemUsed() int64 { return e.memUsed.Load() }

// minSndQueue is what a connection may always queue for sending, whatever the memory pressure: Linux's
// tcp_wmem[0] (tcp_wmem_schedule's "guarantee some progress"). Without it a connection that has nothing
// queued could wait for memory that no event of its own ever announces.
const minSndQueue = 4096

// memOver reports whether the engine is at or beyond Config.MemoryLimit: SYNs, handshakes and dials are
// refused, arriving data is dropped (but into an empty receive queue).
func (e *Engine) memOver() bool { return e.memUsed.Load() >= e.cfg.MemoryLimit }

// memPressure reports whether the engine is beyond 7/8 of Config.MemoryLimit (as Linux's tcp_mem[1]):
// Write queues at most minSndQueue per connection and buffers do not grow. The eighth kept free of send
// data is what lets connections that cannot drain their send queues - a peer that closed its window and
// vanished - leave room for new connections and for arriving data.
func (e *Engine) memPressure() bool {
	return e.memUsed.Load() >= e.cfg.MemoryLimit-e.cfg.MemoryLimit/8
}

// Config returns the configuration with defaults filled in.
func (e *Engine) Config() Config { return e.cfg }

// Ephemeral ports (RFC 6335 §6: 49152-65535).
const ephemeralFirst = 49152

const portTableLen = 256

// ephemeralPort picks the local port of an active open by RFC 6056 §3.3.4, Algorithm 4 (double-hash port
// selection; Linux's __inet_hash_connect does the same with a larger table): a keyed hash of the local
// address and the destination gives an offset into the ephemeral range, another selects a counter in
// portTable that is added to it, so that consecutive connections to one destination take consecutive
// ports (no collision with their own TIME-WAIT entries for a long time) while the ports used towards one
// destination tell nothing about those used towards another. Ports handed out one after the other, as
// before, let an off-path host that dials us once guess the port of our next connection to a victim, one
// of the two numbers a blind RST or data injection needs (RFC 6056 §1). It returns the port (0 when none
// is free), and the table slot and value to store. Called with e.mu held.
func (e *Engine) ephemeralPort(laddr netip.Addr, raddr netip.AddrPort) (port uint16, idx int, next uint16) {
	h := e.tupleHash(connID{local: netip.AddrPortFrom(laddr, 0), remote: raddr}, 0x706f7274, 0, 0) // "port"
	// F() and G() of RFC 6056 (keyed, independent): the two halves of one SipHash.
	offset, idx := uint32(h), int(h>>32)%portTableLen
	next = e.portTable[idx]
	const num = 65536 - ephemeralFirst
	for range num {
		p := uint16(ephemeralFirst + (offset+uint32(next))%num)
		next++
		la := netip.AddrPortFrom(laddr, p)
		if e.conns[connID{local: la, remote: raddr}] == nil && e.listeners[la] == nil &&
			e.listeners[netip.AddrPortFrom(netip.IPv4Unspecified(), p)] == nil {
			return p, idx, next
		}
	}
	return 0, idx, next
}

func (e *Engine) inc(s Stat) { e.stats[s].Store(e.stats[s].Load() + 1) }

// Stat returns one counter. Safe from any goroutine.
func (e *Engine) Stat(s Stat) uint64 { return e.stats[s].Load() }

// Stats returns all counters by name (for metrics export; allocates).
func (e *Engine) Stats() map[string]uint64 {
	m := make(map[string]uint64, numStats)
	for s := Stat(0); s < numStats; s++ {
		m[s.String()] = e.stats[s].Load()
	}
	return m
}

// Conns returns the number of connections in the table (any state but LISTEN).
func (e *Engine) Conns() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return len(e.conns)
}

// noteTimer makes the next Tick deadline at most t (0 = none).
func (e *Engine) noteTimer(t int64) {
	if t != 0 && (e.nextTimer == 0 || t < e.nextTimer) {
		e.nextTimer = t
	}
}

// markPending queues c for the owner's next Tick and wakes the owner. Called by application goroutines
// without c.mu held.
func (e *Engine) markPending(c *Conn) {
	e.pendMu.Lock()
	if c.pending {
		e.pendMu.Unlock()
		return
	}
	c.pending = true
	e.pending = append(e.pending, c)
	e.pendMu.Unlock()
	if e.waker != nil {
		e.waker.Wake()
	}
}

// requeue puts c on the pending list from the owner goroutine (Output was full): no Wake, Tick reports
// that it wants to run again at once.
func (e *Engine) requeue(c *Conn) {
	e.pendMu.Lock()
	if !c.pending {
		c.pending = true
		e.pending = append(e.pending, c)
	}
	e.pendMu.Unlock()
}

// Input processes one arriving segment. src and dst are the IP addresses; seg is the TCP header and
// payload, already cut to the IP payload length and checksum-verified by the caller (proto.TCP.ChecksumValid).
// It runs on the owner goroutine and may call Output.Send.
func (e *Engine) Input(now int64, src, dst netip.Addr, seg proto.TCP) {
	e.mu.Lock()
	e.now = now
	e.inc(StatSegsIn)
	o, perr := proto.ParseTCPOptions(seg.Options())
	if perr != proto.OK {
		e.inc(DropBadOptions)
		e.mu.Unlock()
		return
	}
	id := connID{local: netip.AddrPortFrom(dst, seg.DstPort()), remote: netip.AddrPortFrom(src, seg.SrcPort())}
	if c := e.conns[id]; c != nil {
		c.mu.Lock()
		c.segment(now, seg, &o, seg.Payload())
		e.afterConn(c)
		c.mu.Unlock()
		e.mu.Unlock()
		return
	}
	e.noConn(now, id, seg, &o)
	e.mu.Unlock()
}

// BeginBatch tells the engine that the Input calls up to the next Flush belong to one received batch. Until
// then the ACK that in-order data calls for (every second full-sized segment) is held back, and Flush sends
// one per connection for the whole batch - the ACK frequency Linux's GRO gives, at a fraction of the cost
// per segment (in AF_XDP copy mode every ACK is a sendto's skb allocation and veth transmit). Out-of-order
// data, a segment that fills a hole, a duplicate, a FIN and window probes are still answered at once.
//
// RFC 5681 §4.2: "An ACK SHOULD be generated for at least every second full-sized segment" (RFC 9293
// §3.8.6.3 keeps it), a SHOULD from which "an implementor should indeed only deviate ... after careful
// consideration of the implications", pointing to RFC 2525's stretch ACK violation: fewer ACKs can grow
// the sender's window more slowly and release its data in bursts. The considerations here: a batch is what
// arrived while the owner was busy with the previous one, so an ACK is held for microseconds, never for a
// timer; the sender counts bytes, not ACKs, where it is Linux (RFC 3465 byte counting: slow start and
// tcp_cong_avoid_ai add what an ACK covers), so a stretch ACK grows its window as much as the ACKs it
// replaces (this engine's congestion avoidance counts bytes too; its slow start takes at most 2*SMSS per
// ACK, RFC 3465 §2.2's limit, and so grows more slowly behind a batching receiver); the burst it releases
// is at most the batch it acknowledges; and a Linux receiver gives the same ACK frequency whenever GRO
// merges a batch into one segment. Owner only.
func (e *Engine) BeginBatch() {
	e.mu.Lock()
	e.batching = true
	e.mu.Unlock()
}

// Flush sends the ACKs held since BeginBatch, at most one per connection, and ends the batch. Owner only.
func (e *Engine) Flush(now int64) {
	e.mu.Lock()
	e.now = now
	e.batching = false
	for i, c := range e.ackq {
		c.mu.Lock()
		c.ackQueued = false
		if c.ackStretch && c.state != StateClosed {
			c.sendAck(now)
			e.afterConn(c)
		}
		c.mu.Unlock()
		e.ackq[i] = nil
	}
	e.ackq = e.ackq[:0]
	e.mu.Unlock()
}

// queueAck holds c's stretch ACK for Flush. Owner only, e.mu and c.mu held.
func (e *Engine) queueAck(c *Conn) {
	if !c.ackQueued {
		c.ackQueued = true
		e.ackq = append(e.ackq, c)
	}
}

// afterConn runs after any processing of c on the owner: the table and timer bookkeeping.
func (e *Engine) afterConn(c *Conn) {
	if c.state == StateClosed {
		e.remove(c)
		return
	}
	c.releaseBuffers()
	c.recharge()
	if c.ka.on && c.kaAt == 0 {
		c.armKeepAlive(e.now)
	}
	if c.bufAt == 0 && (c.snd.buf != nil || c.rcv.buf != nil) {
		c.armBufCheck(e.now)
	}
	e.noteTimer(c.nextTimer())
}

// remove takes c out of the table and releases its memory accounting. Owner only, e.mu and c.mu held.
func (e *Engine) remove(c *Conn) {
	if e.conns[c.id] == c {
		delete(e.conns, c.id)
		c.recharge() // CLOSED holds nothing: gives back all it was charged
		if c.inTimeWait {
			e.timeWait--
			c.inTimeWait = false
		}
		c.unorphan()
		if c.l != nil {
			c.l.synq--
			c.l = nil
		}
	}
}

// Tick runs application requests (data written, closes, dials) and due timers, and returns when it wants
// to run again (monotonic ns, 0 for never). Owner only. It costs one pass over the table only when a
// timer is due.
func (e *Engine) Tick(now int64) (wakeAt int64) {
	e.mu.Lock()
	e.now = now
	e.pendMu.Lock()
	list := e.pending
	e.pending = e.pendSpare[:0]
	e.pendMu.Unlock()
	for i, c := range list {
		e.pendMu.Lock()
		c.pending = false
		e.pendMu.Unlock()
		c.mu.Lock()
		c.appEvents(now)
		e.afterConn(c)
		c.mu.Unlock()
		list[i] = nil
	}
	e.pendSpare = list[:0]
	if e.nextTimer != 0 && now >= e.nextTimer {
		e.nextTimer = 0
		for _, c := range e.conns {
			c.mu.Lock()
			c.timers(now)
			e.afterConn(c)
			c.mu.Unlock()
		}
	}
	w := e.nextTimer
	e.pendMu.Lock()
	if len(e.pending) > 0 {
		w = now // Output was full or an application queued work meanwhile: run again at once
	}
	e.pendMu.Unlock()
	e.mu.Unlock()
	return w
}

// NextTimer returns the deadline Tick last returned or a later Input set. Owner only.
func (e *Engine) NextTimer() int64 {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.nextTimer
}

// challengeOK reports whether another challenge ACK may go out now under the engine-wide budget
// (RFC 5961 §7), which is random in [limit/2, limit*3/2) each second, as Linux's tcp_send_challenge_ack
// draws it: "half + get_random_u32_below(ack_limit)".
func (e *Engine) challengeOK(now int64) bool {
	if now-e.chStart >= int64(time.Second) {
		lim := e.cfg.ChallengeACKLimit
		e.chStart, e.chLeft = now, (lim+1)/2+mrand.IntN(lim)
	}
	if e.chLeft <= 0 {
		e.inc(StatChallengeACKLimited)
		return false
	}
	e.chLeft--
	e.inc(StatChallengeACKs)
	return true
}

// sendReset answers a segment that belongs to no connection, RFC 9293 §3.10.7.1: "If the ACK bit is off,
// sequence number zero is used, <SEQ=0><ACK=SEG.SEQ+SEG.LEN><CTL=RST,ACK>. If the ACK bit is on,
// <SEQ=SEG.ACK><CTL=RST>". A RST is never answered.
func (e *Engine) sendReset(id connID, seg proto.TCP) {
	f := seg.Flags()
	if f.Has(proto.TCPFlagRST) {
		return
	}
	s := &e.scratch
	*s = Segment{Src: id.local, Dst: id.remote}
	s.Fields.SrcPort, s.Fields.DstPort = id.local.Port(), id.remote.Port()
	if f.Has(proto.TCPFlagACK) {
		s.Fields.Seq = seg.Ack()
		s.Fields.Flags = proto.TCPFlagRST
	} else {
		n := uint32(len(seg.Payload()))
		if f.Has(proto.TCPFlagSYN) {
			n++
		}
		if f.Has(proto.TCPFlagFIN) {
			n++
		}
		s.Fields.Ack = seg.Seq() + n
		s.Fields.Flags = proto.TCPFlagRST | proto.TCPFlagACK
	}
	if e.out.Send(s) {
		e.inc(StatResetsOut)
		e.inc(StatSegsOut)
	} else {
		e.inc(StatOutputFull)
	}
}

// listener finds the listener for a local address: bound to that address, else to the unspecified
// address of its family, else - for IPv4 - to [::], which listens on both families as a Linux socket
// without IPV6_V6ONLY does.
func (e *Engine) listener(local netip.AddrPort) *Listener {
	if l := e.listeners[local]; l != nil {
		return l
	}
	port := local.Port()
	if local.Addr().Is4() {
		if l := e.listeners[netip.AddrPortFrom(netip.IPv4Unspecified(), port)]; l != nil {
			return l
		}
	}
	return e.listeners[netip.AddrPortFrom(netip.IPv6Unspecified(), port)]
}

// noConn handles a segment with no connection: LISTEN processing (RFC 9293 §3.10.7.2) or CLOSED.
func (e *Engine) noConn(now int64, id connID, seg proto.TCP, o *proto.TCPOptions) {
	l := e.listener(id.local)
	f := seg.Flags()
	if l == nil {
		e.inc(DropNoConnection)
		e.sendReset(id, seg)
		return
	}
	switch {
	case f.Has(proto.TCPFlagRST):
		// "An incoming RST should be ignored."
		e.inc(DropNoConnection)
	case f.Has(proto.TCPFlagACK) && !f.Has(proto.TCPFlagSYN):
		// Possibly the third segment of a handshake answered with a SYN cookie - but only if the listener
		// sent cookies recently (Linux's tcp_synq_no_recent_overflow): otherwise every bare ACK would be a
		// guess at a 24-bit hash that, once right, opens a connection without a handshake.
		if l.lastOverflow == 0 || now-l.lastOverflow > cookieValid {
			e.inc(DropCookieNoOverflow)
			e.sendReset(id, seg)
			return
		}
		if !e.cookieAccept(now, l, id, seg, o) {
			e.sendReset(id, seg)
		}
	case f.Has(proto.TCPFlagSYN) && !f.Has(proto.TCPFlagACK) && !f.Has(proto.TCPFlagFIN):
		e.listenSYN(now, l, id, seg, o)
	default:
		e.inc(DropNoConnection)
	}
}

// listenSYN is the SYN arriving in LISTEN: a SYN-RECEIVED connection while the SYN queue has room, a SYN
// cookie beyond it (RFC 4987 §3.6).
func (e *Engine) listenSYN(now int64, l *Listener, id connID, seg proto.TCP, o *proto.TCPOptions) {
	if len(l.acceptCh) >= cap(l.acceptCh) {
		// Nowhere to put the connection even once established (Linux drops here too).
		e.inc(DropAcceptQueueFull)
		return
	}
	if l.synq >= e.cfg.SynQueueLen {
		e.inc(StatCookiesSent)
		l.lastOverflow = now
		mss := uint16(536)
		if o.HasMSS {
			mss = o.MSS
		}
		iss := e.cookie(id, Seq(seg.Seq()), min(mss, e.ourMSS(id.remote.Addr())), now)
		s := &e.scratch
		*s = Segment{Src: id.local, Dst: id.remote}
		s.Fields = proto.TCPFields{SrcPort: id.local.Port(), DstPort: id.remote.Port(), Seq: uint32(iss),
			Ack: seg.Seq() + 1, Flags: proto.TCPFlagSYN | proto.TCPFlagACK,
			Window: uint16(min(e.cfg.RecvBuffer, 0xffff))}
		s.Fields.Options.MSS, s.Fields.Options.HasMSS = e.ourMSS(id.remote.Addr()), true
		if o.HasTimestamps && !e.cfg.DisableTimestamps {
			// The options the cookie cannot carry ride in the low bits of our timestamp, which the
			// client echoes in every segment (cookieOptions).
			opts := cookieOptions(o, &e.cfg)
			ts := &s.Fields.Options
			ts.HasTimestamps, ts.TSval, ts.TSecr = true, cookieTSval(now, iss, opts), o.TSval
			ts.HasWindowScale, ts.WindowScale = opts&cookieNoWS != cookieNoWS, e.rcvScale
			ts.SACKPermitted = opts&cookieSACK != 0
		}
		if e.out.Send(s) {
			e.inc(StatSegsOut)
		} else {
			e.inc(StatOutputFull)
		}
		return
	}
	if e.memOver() {
		e.inc(DropMemoryLimit)
		return
	}
	c := e.newConn(id)
	c.cc.algo = l.cc
	c.l = l
	l.synq++
	c.state = StateSynReceived
	c.iss = e.isn(id, now)
	c.sndUna, c.sndNxt, c.sndMax = c.iss, c.iss+1, c.iss+1
	c.recover = c.iss
	c.irs = Seq(seg.Seq())
	c.rcvNxt = c.irs + 1
	c.negotiate(now, o, seg.Window())
	e.conns[id] = c
	c.mu.Lock()
	c.sendSyn(now)
	e.afterConn(c)
	c.mu.Unlock()
}

// cookieAccept rebuilds a connection from the ACK that completes a SYN-cookie handshake.
func (e *Engine) cookieAccept(now int64, l *Listener, id connID, seg proto.TCP, o *proto.TCPOptions) bool {
	iss := Seq(seg.Ack() - 1)
	irs := Seq(seg.Seq() - 1)
	mss, ok := e.checkCookie(id, irs, iss, now)
	if !ok {
		e.inc(DropBadCookie)
		return false
	}
	if len(l.acceptCh) >= cap(l.acceptCh) {
		e.inc(DropAcceptQueueFull)
		return true // silently: the client retransmits
	}
	if e.memOver() {
		e.inc(DropMemoryLimit)
		return false
	}
	e.inc(StatCookiesAccepted)
	c := e.newConn(id)
	c.cc.algo = l.cc
	c.iss, c.irs = iss, irs
	c.sndUna, c.sndNxt, c.sndMax = iss+1, iss+1, iss+1
	c.recover = iss
	c.rcvNxt = irs + 1
	c.rcvScale = 0
	if o.HasTimestamps && o.TSecr != 0 && !e.cfg.DisableTimestamps {
		// RFC 4987 §3.6 as Linux does it: the options of the client's SYN come back in the TSecr.
		c.tsOK, c.tsRecent, c.tsRecentAt = true, o.TSval, now
		opts := o.TSecr & cookieOptMask
		if ws := uint8(opts & cookieNoWS); ws != cookieNoWS && !e.cfg.DisableWindowScale {
			c.wsOK, c.sndScale, c.rcvScale = true, min(ws, 14), e.rcvScale
		}
		c.sackOK = opts&cookieSACK != 0 && !e.cfg.DisableSACK
		e.inc(StatCookieOptions)
	}
	c.mss = min(mss, e.ourMSS(id.remote.Addr()))
	c.synMSS = c.mss
	c.lastAckSent = c.rcvNxt
	c.rcvAdv = c.rcvNxt + Seq(min(e.cfg.RecvBuffer, 0xffff))
	c.allocBuffers()
	c.state = StateEstablished
	c.sndWnd = uint32(seg.Window()) << c.sndScale
	c.maxSndWnd = c.sndWnd
	c.sndWl1, c.sndWl2 = Seq(seg.Seq()), Seq(seg.Ack())
	c.initCC()
	e.conns[id] = c
	e.inc(StatPassiveOpens)
	l.acceptCh <- c
	c.mu.Lock()
	c.signalEstablished()
	if len(seg.Payload()) > 0 || seg.Flags().Has(proto.TCPFlagFIN) {
		c.segment(now, seg, o, seg.Payload())
	}
	e.afterConn(c)
	c.mu.Unlock()
	return true
}

func (e *Engine) newConn(id connID) *Conn {
	c := &Conn{e: e, id: id, noDelay: e.cfg.NoDelay, rto: int64(e.cfg.InitialRTO),
		rdCh: make(chan struct{}, 1), wrCh: make(chan struct{}, 1), estCh: make(chan struct{}),
		doneCh: make(chan struct{}), closedCh: make(chan struct{}),
		ooo: make([]seqRange, 0, e.cfg.MaxOutOfOrder)}
	c.mss = 536
	c.cc.algo = e.cfg.CongestionControl
	c.ka.set(e.cfg.KeepAlive)
	c.linger = -1
	c.rdl.Init()
	c.wdl.Init()
	return c
}

// SetMTU sets the IP MTU of the paths that connections opened from now on announce and use, as
// Config.MTU does at the start (MSS = MTU - 40, or - 60 for IPv6); it may go up or down. Existing connections keep their
// MSS: LowerMTU changes theirs. The stack calls it with the smallest MTU of the queue's interfaces when
// one of them changes. Safe from any goroutine.
func (e *Engine) SetMTU(mtu int) {
	mtu = max(mtu, 128)
	e.mu.Lock()
	e.cfg.MTU = mtu
	e.mu.Unlock()
}

// LowerMTU lowers the MSS of existing connections to what an IP MTU of mtu allows (mtu - 40, IPv6 mtu
// - 60), for the
// connections for which match (nil: all) reports true - those whose route leaves through the interface
// whose MTU went down - and returns how many it changed (StatMSSLowered). A connection's MSS never
// goes up here. Segments are cut from the send buffer as they leave, so new data and retransmissions of
// data sent before (after an RTO or in loss recovery) both take the new size; segments already handed to
// Output are not touched. match is called with the engine's lock held and must not call the engine.
// Safe from any goroutine.
func (e *Engine) LowerMTU(mtu int, match func(local, remote netip.AddrPort) bool) int {
	n := 0
	e.mu.Lock()
	for _, c := range e.conns {
		c.mu.Lock()
		mss := uint16(min(max(mtu, 128)-ipOverhead(c.id.remote.Addr()), 0xffff))
		if c.state != StateClosed && c.state != StateTimeWait && c.mss > mss && (match == nil || match(c.id.local, c.id.remote)) {
			c.mss = mss
			c.pathMSS = mss
			n++
			e.inc(StatMSSLowered)
		}
		c.mu.Unlock()
	}
	e.mu.Unlock()
	return n
}

// Errors returned by Listen and Dial.
var (
	ErrAddrInUse   = errors.New("address already in use (close the other listener or connection, or pick another port)")
	ErrMemoryLimit = errors.New("tcp memory limit reached (raise Config.MemoryLimit or close connections)")
	ErrNoPort      = errors.New("no free ephemeral port for this destination (close some connections)")
	errUnknownCC   = errors.New("unknown congestion control (use tcp.CUBIC or tcp.Reno)")
)

// Listen opens a listener on laddr. An unspecified address listens on all local addresses: 0.0.0.0 (or
// the zero Addr) on those of IPv4, [::] on those of both families (a Linux socket without IPV6_V6ONLY);
// a listener bound to an address, then one on its family's unspecified address, come first.
func (e *Engine) Listen(laddr netip.AddrPort) (*Listener, error) {
	if laddr.Port() == 0 {
		return nil, fmt.Errorf("listen tcp %v: a listening port must be given", laddr)
	}
	a := laddr.Addr().Unmap()
	if !a.IsValid() {
		a = netip.IPv4Unspecified()
	}
	laddr = netip.AddrPortFrom(a, laddr.Port())
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.listeners[laddr] != nil {
		return nil, fmt.Errorf("listen tcp %v: %w", laddr, ErrAddrInUse)
	}
	l := &Listener{e: e, addr: laddr, acceptCh: make(chan *Conn, e.cfg.AcceptBacklog), closed: make(chan struct{}),
		cc: e.cfg.CongestionControl}
	e.listeners[laddr] = l
	return l, nil
}

// Connect starts an active open from laddr (port 0 picks an ephemeral port) to raddr and returns at
// once; the SYN leaves on the owner's next Tick. Conn.Handshake waits for the outcome. laddr's address
// must be the source the caller's routing chose.
func (e *Engine) Connect(laddr, raddr netip.AddrPort) (*Conn, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.memOver() {
		e.inc(DropMemoryLimit)
		return nil, fmt.Errorf("dial tcp %v: %w", raddr, ErrMemoryLimit)
	}
	id := connID{local: laddr, remote: raddr}
	if laddr.Port() == 0 {
		p, idx, next := e.ephemeralPort(laddr.Addr(), raddr)
		e.portTable[idx] = next
		if p == 0 {
			return nil, fmt.Errorf("dial tcp %v: %w", raddr, ErrNoPort)
		}
		id.local = netip.AddrPortFrom(laddr.Addr(), p)
	} else if e.conns[id] != nil {
		return nil, fmt.Errorf("dial tcp %v from %v: %w", raddr, laddr, ErrAddrInUse)
	}
	c := e.newConn(id)
	c.state = StateSynSent
	c.needSyn = true
	c.rcvScale = e.rcvScale
	if e.cfg.DisableWindowScale {
		c.rcvScale = 0
	}
	c.allocBuffers()
	e.conns[id] = c
	e.inc(StatActiveOpens)
	e.pendMu.Lock()
	c.pending = true
	e.pending = append(e.pending, c)
	e.pendMu.Unlock()
	if e.waker != nil {
		e.waker.Wake()
	}
	return c, nil
}

// Dial is Connect followed by Handshake: it blocks until the connection is established, refused, timed
// out or ctx ends.
func (e *Engine) Dial(ctx context.Context, laddr, raddr netip.AddrPort) (*Conn, error) {
	c, err := e.Connect(laddr, raddr)
	if err != nil {
		return nil, err
	}
	if err := c.Handshake(ctx); err != nil {
		return nil, err
	}
	return c, nil
}
