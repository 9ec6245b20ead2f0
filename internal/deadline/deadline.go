// Package deadline provides the read/write deadline of a net.Conn or net.PacketConn whose data moves through
// channels rather than a file descriptor: a channel that is closed when the deadline passes and re-armed when
// it is set again (the pattern of net.Pipe). The stack's UDP sockets and TCP connections share it.
//
// A Deadline is safe for concurrent use; Set may be called from any goroutine while others wait on Done.
package deadline

import (
	"sync"
	"time"
)

// Deadline is one deadline. Call Init before use.
type Deadline struct {
	mu     sync.Mutex
	timer  *time.Timer
	cancel chan struct{}
}

// Init arms nothing: no deadline.
func (d *Deadline) Init() { d.cancel = make(chan struct{}) }

// Set sets the deadline to t; the zero time means none, a past time expires it at once.
func (d *Deadline) Set(t time.Time) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.timer != nil && !d.timer.Stop() {
		<-d.cancel // the timer fired and closed it; wait so we do not race with it
	}
	d.timer = nil
	closed := false
	select {
	case <-d.cancel:
		closed = true
	default:
	}
	if t.IsZero() {
		if closed {
			d.cancel = make(chan struct{})
		}
		return
	}
	if dur := time.Until(t); dur > 0 {
		if closed {
			d.cancel = make(chan struct{})
		}
		ch := d.cancel
		d.timer = time.AfterFunc(dur, func() { close(ch) })
		return
	}
	if !closed {
		close(d.cancel)
	}
}

// Done is closed when the deadline passes. Fetch it again after Set: Set may replace the channel.
func (d *Deadline) Done() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.cancel
}
