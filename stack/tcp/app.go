package tcp

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

var _ net.Conn = (*Conn)(nil)

// Handshake waits until the connection is established, or fails (ECONNREFUSED, ETIMEDOUT) or ctx ends,
// in which case the connection is aborted.
func (c *Conn) Handshake(ctx context.Context) error {
	select {
	case <-c.estCh:
	case <-ctx.Done():
		c.abort()
		return c.opErr("dial", ctx.Err())
	}
	c.mu.Lock()
	err := c.err
	st := c.state
	c.mu.Unlock()
	if err != nil {
		return c.opErr("dial", err)
	}
	if st == StateClosed {
		return c.opErr("dial", syscall.ECONNRESET)
	}
	return nil
}

func (c *Conn) abort() {
	c.mu.Lock()
	c.abortReq = true
	c.appClosed = true
	c.mu.Unlock()
	c.e.markPending(c)
}

// State returns the connection's state (RFC 9293 §3.3.2).
func (c *Conn) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Read reads received data; io.EOF after the peer's FIN, ECONNRESET after a RST.
func (c *Conn) Read(p []byte) (int, error) {
	for {
		c.mu.Lock()
		if c.appClosed {
			c.mu.Unlock()
			return 0, c.opErr("read", net.ErrClosed)
		}
		if c.rcv.n > 0 {
			n := c.rcv.read(p)
			c.recharge()
			more := c.rcv.n > 0
			update := false
			if c.state.synchronized() && !c.finRcvd {
				adv := int64(int32(c.rcvAdv - c.rcvNxt))
				update = int64(c.rcv.free())-adv >= int64(min(c.rcv.cap()/2, int(c.mss)))
			} else if c.finRcvd && c.rcv.n == 0 {
				update = true // the owner releases the buffer (releaseBuffers)
			}
			c.mu.Unlock()
			if more {
				signal(c.rdCh)
			}
			if update {
				c.e.markPending(c)
			}
			return n, nil
		}
		if len(p) == 0 {
			c.mu.Unlock()
			return 0, nil
		}
		if c.finRcvd {
			c.mu.Unlock()
			return 0, io.EOF
		}
		if c.err != nil {
			err := c.err
			c.mu.Unlock()
			return 0, c.opErr("read", err)
		}
		if c.state == StateClosed {
			c.mu.Unlock()
			return 0, io.EOF
		}
		c.mu.Unlock()
		select {
		case <-c.rdCh:
		case <-c.closedCh:
		case <-c.doneCh:
			// Loop once more: data may still be buffered.
			c.mu.Lock()
			if c.rcv.n == 0 {
				err := c.err
				c.mu.Unlock()
				if err != nil {
					return 0, c.opErr("read", err)
				}
				return 0, io.EOF
			}
			c.mu.Unlock()
		case <-c.rdl.Done():
			return 0, c.opErr("read", os.ErrDeadlineExceeded)
		}
	}
}

// Write queues p in the send buffer, blocking while it is full. The data stays there until acknowledged.
func (c *Conn) Write(p []byte) (int, error) {
	total := 0
	for {
		c.mu.Lock()
		switch {
		case c.appClosed:
			c.mu.Unlock()
			return total, c.opErr("write", net.ErrClosed)
		case c.err != nil:
			err := c.err
			c.mu.Unlock()
			return total, c.opErr("write", err)
		case c.state == StateSynSent || c.state == StateSynReceived:
			// Connect returned before the handshake: wait for it like a kernel socket's blocking send.
			c.mu.Unlock()
			select {
			case <-c.estCh:
			case <-c.closedCh:
			case <-c.wdl.Done():
				return total, c.opErr("write", os.ErrDeadlineExceeded)
			}
			continue
		case c.shutWrReq || c.state != StateEstablished && c.state != StateCloseWait:
			c.mu.Unlock()
			return total, c.opErr("write", syscall.EPIPE)
		}
		q := p[total:]
		q = q[:min(len(q), c.sndRoom(), c.sndMemRoom())]
		n := c.snd.write(q)
		c.recharge()
		c.sndFull = n < len(p)-total // the owner may grow the buffer (sndBufExpand)
		c.mu.Unlock()
		if n > 0 {
			total += n
			c.e.markPending(c)
		}
		if total == len(p) {
			return total, nil
		}
		select {
		case <-c.wrCh:
		case <-c.closedCh:
		case <-c.doneCh:
		case <-c.wdl.Done():
			return total, c.opErr("write", os.ErrDeadlineExceeded)
		}
	}
}

// CloseWrite sends a FIN after the buffered data (half-close); reading continues.
func (c *Conn) CloseWrite() error {
	c.mu.Lock()
	if c.appClosed {
		c.mu.Unlock()
		return c.opErr("close", net.ErrClosed)
	}
	c.shutWrReq = true
	c.mu.Unlock()
	c.e.markPending(c)
	return nil
}

// Close closes both directions. Buffered data is still sent, followed by a FIN; if received data was left
// unread the connection is reset instead (RFC 1122 §4.2.2.13), as are data arriving later.
func (c *Conn) Close() error {
	c.mu.Lock()
	if c.appClosed {
		c.mu.Unlock()
		return c.opErr("close", net.ErrClosed)
	}
	c.appClosed = true
	c.shutWrReq = true
	if (c.rcv.n > 0 || c.linger == 0) && c.state != StateClosed {
		c.abortReq = true // SetLinger(0): discard what is unsent, RST
	}
	linger := c.linger
	close(c.closedCh)
	c.mu.Unlock()
	c.e.markPending(c)
	if linger > 0 {
		c.lingerWait(linger)
	}
	return nil
}

// SetNoDelay turns Nagle's algorithm off (true) or on.
func (c *Conn) SetNoDelay(on bool) {
	c.mu.Lock()
	c.noDelay = on
	c.mu.Unlock()
	c.e.markPending(c)
}

// LocalAddr returns a *net.TCPAddr.
func (c *Conn) LocalAddr() net.Addr { return net.TCPAddrFromAddrPort(c.id.local) }

// RemoteAddr returns a *net.TCPAddr.
func (c *Conn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(c.id.remote) }

// LocalAddrPort and RemoteAddrPort return the 4-tuple.
func (c *Conn) LocalAddrPort() netip.AddrPort  { return c.id.local }
func (c *Conn) RemoteAddrPort() netip.AddrPort { return c.id.remote }

// SetDeadline implements net.Conn.
func (c *Conn) SetDeadline(t time.Time) error {
	c.rdl.Set(t)
	c.wdl.Set(t)
	return nil
}

// SetReadDeadline implements net.Conn.
func (c *Conn) SetReadDeadline(t time.Time) error { c.rdl.Set(t); return nil }

// SetWriteDeadline implements net.Conn.
func (c *Conn) SetWriteDeadline(t time.Time) error { c.wdl.Set(t); return nil }

func (c *Conn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: net.TCPAddrFromAddrPort(c.id.local),
		Addr: net.TCPAddrFromAddrPort(c.id.remote), Err: err}
}

// tryRead and tryWrite are the non-blocking halves of Read and Write, for owners (and tests) that drive
// everything from one goroutine.
func (c *Conn) tryRead(p []byte) (int, error) {
	c.mu.Lock()
	n := c.rcv.read(p)
	c.recharge()
	var err error
	if n == 0 {
		switch {
		case c.finRcvd:
			err = io.EOF
		case c.err != nil:
			err = c.err
		}
	}
	c.mu.Unlock()
	if n > 0 {
		c.e.markPending(c)
	}
	return n, err
}

func (c *Conn) tryWrite(p []byte) int {
	c.mu.Lock()
	n := 0
	if c.state == StateEstablished || c.state == StateCloseWait {
		n = c.snd.write(p[:min(len(p), c.sndRoom(), c.sndMemRoom())])
		c.recharge()
		c.sndFull = n < len(p)
	}
	c.mu.Unlock()
	if n > 0 {
		c.e.markPending(c)
	}
	return n
}

// Listener is a listening socket: connections completing the handshake wait in its accept queue
// (Config.AcceptBacklog); half-open ones count against Config.SynQueueLen, beyond which SYN cookies answer.
type Listener struct {
	e        *Engine
	addr     netip.AddrPort
	acceptCh chan *Conn
	closed   chan struct{}
	once     sync.Once
	isClosed atomic.Bool
	synq     int // half-open connections; owner only
	// lastOverflow is when the SYN queue last overflowed and a SYN cookie was sent (0: never); cookies are
	// accepted only for cookieValid after it. Owner only.
	lastOverflow int64
	cc           CongestionControl // of the connections it accepts; guarded by e.mu
}

// SetCongestionControl sets the congestion control of the connections the listener accepts from now on.
func (l *Listener) SetCongestionControl(cc CongestionControl) error {
	if cc >= numCC {
		return errUnknownCC
	}
	l.e.mu.Lock()
	l.cc = cc
	l.e.mu.Unlock()
	return nil
}

var _ net.Listener = (*Listener)(nil)

// ErrListenerClosed wraps net.ErrClosed for Accept on a closed listener.
var ErrListenerClosed = net.ErrClosed

// Accept waits for the next connection.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.AcceptTCP()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// AcceptTCP is Accept returning the concrete type.
func (l *Listener) AcceptTCP() (*Conn, error) {
	select {
	case c := <-l.acceptCh:
		return c, nil
	case <-l.closed:
		return nil, &net.OpError{Op: "accept", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed}
	}
}

// Close stops listening and resets the connections waiting to be accepted.
func (l *Listener) Close() error {
	err := error(&net.OpError{Op: "close", Net: "tcp", Addr: l.Addr(), Err: net.ErrClosed})
	l.once.Do(func() {
		err = nil
		l.isClosed.Store(true)
		l.e.mu.Lock()
		if l.e.listeners[l.addr] == l {
			delete(l.e.listeners, l.addr)
		}
		l.e.mu.Unlock()
		close(l.closed)
		for {
			select {
			case c := <-l.acceptCh:
				c.abort()
			default:
				return
			}
		}
	})
	return err
}

// Addr returns the listening address as a *net.TCPAddr.
func (l *Listener) Addr() net.Addr { return net.TCPAddrFromAddrPort(l.addr) }
