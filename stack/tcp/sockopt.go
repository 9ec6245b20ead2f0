package tcp

import (
	"net"
	"syscall"
	"time"

	"github.com/xdpnet/xdpnet/proto"
)

// The socket options of *net.TCPConn that a Conn offers too: keep-alive, linger, buffer sizes.

// Keep-alive defaults, those of Go's net.KeepAliveConfig for a zero field.
const (
	defaultKeepAliveIdle     = 15 * time.Second
	defaultKeepAliveInterval = 15 * time.Second
	defaultKeepAliveCount    = 9
)

// keepAlive is a connection's keep-alive setting (RFC 1122 §4.2.3.6), in ns.
type keepAlive struct {
	on             bool
	idle, interval int64
	count          int
}

// set applies cfg as net.TCPConn.SetKeepAliveConfig does: zero fields take the defaults, negative ones
// keep the current value.
func (k *keepAlive) set(cfg net.KeepAliveConfig) {
	k.on = cfg.Enable
	switch {
	case cfg.Idle == 0:
		k.idle = int64(defaultKeepAliveIdle)
	case cfg.Idle > 0:
		k.idle = int64(max(cfg.Idle, time.Second))
	}
	switch {
	case cfg.Interval == 0:
		k.interval = int64(defaultKeepAliveInterval)
	case cfg.Interval > 0:
		k.interval = int64(max(cfg.Interval, time.Second))
	}
	switch {
	case cfg.Count == 0:
		k.count = defaultKeepAliveCount
	case cfg.Count > 0:
		k.count = min(cfg.Count, 127) // Linux's MAX_TCP_KEEPCNT
	}
}

// SetKeepAlive turns keep-alive probes on or off (SO_KEEPALIVE); the timing is the engine's
// Config.KeepAlive, the defaults of net.KeepAliveConfig where that is zero, or what SetKeepAlivePeriod and
// SetKeepAliveConfig set.
func (c *Conn) SetKeepAlive(on bool) error {
	c.mu.Lock()
	c.ka.on = on
	c.kaAt = 0
	c.mu.Unlock()
	c.e.markPending(c) // the owner arms (or forgets) the timer
	return nil
}

// SetKeepAlivePeriod sets how long the connection must be idle before the first probe (TCP_KEEPIDLE), as
// net.TCPConn.SetKeepAlivePeriod does since Go 1.23; at least one second.
func (c *Conn) SetKeepAlivePeriod(d time.Duration) error {
	c.mu.Lock()
	c.ka.idle = int64(max(d, time.Second))
	c.kaAt = 0
	c.mu.Unlock()
	c.e.markPending(c)
	return nil
}

// SetKeepAliveConfig sets keep-alive as net.TCPConn.SetKeepAliveConfig: after Idle without anything
// received, a probe every Interval; after Count unanswered probes the connection ends with ETIMEDOUT
// (a peer that vanished is found after Idle + Count*Interval). Zero fields take 15 s, 15 s and 9,
// negative ones keep their value.
func (c *Conn) SetKeepAliveConfig(cfg net.KeepAliveConfig) error {
	c.mu.Lock()
	c.ka.set(cfg)
	c.kaAt = 0
	c.mu.Unlock()
	c.e.markPending(c)
	return nil
}

// armKeepAlive starts the keep-alive timer of a synchronized connection that has keep-alive on and no
// timer yet. Owner only.
func (c *Conn) armKeepAlive(now int64) {
	if !c.ka.on || c.kaAt != 0 || !c.state.synchronized() || c.state == StateTimeWait {
		if !c.ka.on {
			c.kaAt = 0
		}
		return
	}
	if c.lastRcvAt == 0 {
		c.lastRcvAt = now
	}
	c.kaAt = c.lastRcvAt + c.ka.idle + int64(c.kaProbes)*c.ka.interval
}

// keepAliveFire is Linux's tcp_keepalive_timer: while data is in flight or waiting (the retransmission and
// persist timers watch the peer then) or something arrived within the idle time, it only re-arms;
// otherwise it sends a probe, <SEQ=SND.UNA-1><ACK=RCV.NXT> with no data (RFC 1122 §4.2.3.6: "an
// implementation SHOULD send a keep-alive segment with no data", to which any TCP answers with an ACK),
// and after ka.count unanswered probes ends the connection with ETIMEDOUT.
func (c *Conn) keepAliveFire(now int64) {
	if !c.ka.on || !c.state.synchronized() || c.state == StateTimeWait {
		return
	}
	if c.sndMax != c.sndUna || c.snd.n > 0 {
		c.kaAt = now + c.ka.idle
		return
	}
	if idle := now - c.lastRcvAt; idle < c.ka.idle+int64(c.kaProbes)*c.ka.interval {
		c.kaAt = c.lastRcvAt + c.ka.idle + int64(c.kaProbes)*c.ka.interval
		return
	}
	if c.kaProbes >= c.ka.count {
		c.e.inc(StatKeepAliveTimeouts)
		c.e.inc(StatConnTimeouts)
		c.sendRST()
		c.terminate(syscall.ETIMEDOUT)
		return
	}
	c.e.inc(StatKeepAliveProbes)
	_ = c.xmit(now, c.sndUna-1, 0, proto.TCPFlagACK) // if Output is full, the next interval tries again
	c.kaProbes++
	c.kaAt = now + c.ka.interval
}

// SetLinger sets what Close does with data not yet sent or acknowledged, as net.TCPConn.SetLinger: sec < 0
// (the default) sends it in the background; sec == 0 discards it and resets the connection (RFC 9293
// §3.10.5 ABORT); sec > 0 makes Close wait up to sec seconds for the peer to acknowledge everything
// including the FIN, after which the connection carries on in the background.
func (c *Conn) SetLinger(sec int) error {
	c.mu.Lock()
	c.linger = sec
	c.mu.Unlock()
	return nil
}

// lingerWait blocks Close for a positive linger time until our FIN is acknowledged or the connection ended.
func (c *Conn) lingerWait(sec int) {
	t := time.NewTimer(time.Duration(sec) * time.Second)
	defer t.Stop()
	for {
		c.mu.Lock()
		done := c.finAckedFlag || c.state == StateClosed || c.state == StateTimeWait
		c.mu.Unlock()
		if done {
			return
		}
		select {
		case <-c.wrCh:
		case <-c.doneCh:
		case <-t.C:
			return
		}
	}
}

// SetReadBuffer sets the receive buffer size (SO_RCVBUF) and turns receive-buffer autotuning off for
// the connection, as setting SO_RCVBUF does on Linux. A larger size grows the buffer now (up to
// the window the negotiated scale can express; ErrMemoryLimit under memory pressure, Config.MemoryLimit); a smaller one limits the window
// offered from now on (what is buffered or already offered stays).
func (c *Conn) SetReadBuffer(bytes int) error {
	if bytes <= 0 {
		return c.opErr("set", syscall.EINVAL)
	}
	e := c.e
	e.mu.Lock()
	defer e.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.rcvLocked = true
	bytes = min(bytes, 0xffff<<c.rcvScale, 1<<30)
	c.rcvLimit = bytes
	if c.rcv.cap() != 0 && bytes > c.rcv.cap() {
		if e.memPressure() {
			return c.opErr("set", ErrMemoryLimit)
		}
		c.rcv.grow(bytes)
	}
	return nil
}

// SetWriteBuffer sets the send buffer size (SO_SNDBUF) and turns send-buffer autotuning off for the
// connection. A larger size grows the buffer now (ErrMemoryLimit under memory pressure, Config.MemoryLimit); a smaller one makes Write
// block once that much is buffered.
func (c *Conn) SetWriteBuffer(bytes int) error {
	if bytes <= 0 {
		return c.opErr("set", syscall.EINVAL)
	}
	e := c.e
	e.mu.Lock()
	defer e.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sndLocked = true
	bytes = min(bytes, 1<<30)
	c.sndLimit = bytes
	if c.snd.cap() != 0 && bytes > c.snd.cap() {
		if e.memPressure() {
			return c.opErr("set", ErrMemoryLimit)
		}
		c.snd.grow(bytes)
	}
	return nil
}

// sndRoom is how many more bytes Write may buffer.
func (c *Conn) sndRoom() int {
	room := c.snd.free()
	if c.sndLimit > 0 {
		room = min(room, max(c.sndLimit-c.snd.n, 0))
	}
	return room
}
