package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// procStopTimeout is how long Lab.Close waits after SIGTERM before SIGKILL.
const procStopTimeout = 3 * time.Second

// ErrProcExited is returned by Proc.Stop when the process had already exited
// on its own before Stop; Proc.Wait tells how it ended.
var ErrProcExited = errors.New("process had already exited")

// Proc is a long-running program started in a host with Host.Start. Its
// output is kept in memory (see Output). Lab.Close stops every Proc of the
// lab that is still running.
type Proc struct {
	Cmd *exec.Cmd

	out    lockedBuffer
	done   chan struct{}
	err    error // set before done closes
	mu     sync.Mutex
	exited bool
}

// Start starts name with args in the host and returns without waiting for
// it. Stop it with Stop; Lab.Close stops it otherwise.
func (h *Host) Start(name string, args ...string) (*Proc, error) {
	cmd := h.Command(context.Background(), name, args...)
	p := &Proc{Cmd: cmd, done: make(chan struct{})}
	cmd.Stdout = &p.out
	cmd.Stderr = &p.out
	h.lab.mu.Lock()
	if h.lab.closed {
		h.lab.mu.Unlock()
		return nil, fmt.Errorf("start %s in %s: lab is closed", name, h.name)
	}
	if err := cmd.Start(); err != nil {
		h.lab.mu.Unlock()
		return nil, fmt.Errorf("start %s in %s: %w", name, h.name, err)
	}
	h.lab.procs = append(h.lab.procs, p)
	h.lab.mu.Unlock()
	go func() {
		p.err = cmd.Wait()
		p.mu.Lock()
		p.exited = true
		p.mu.Unlock()
		close(p.done)
	}()
	return p, nil
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Wait waits for the process to exit and returns exec.Cmd.Wait's error.
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// Output returns what the process has written to stdout and stderr so far.
func (p *Proc) Output() []byte { return p.out.Bytes() }

// Stop sends SIGTERM, then SIGKILL if the process has not exited after
// timeout, and waits for it. It returns ErrProcExited if the process had
// exited before Stop, and nil if it ended from the signal. Stop may be
// called more than once.
func (p *Proc) Stop(timeout time.Duration) error {
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	if exited {
		return ErrProcExited
	}
	if err := p.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		select {
		case <-p.done:
			return ErrProcExited
		default:
			return fmt.Errorf("stop %s: %w", p.Cmd.Path, err)
		}
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-p.done:
		return nil
	case <-t.C:
	}
	p.Cmd.Process.Kill()
	<-p.done
	return nil
}

// lockedBuffer is a bytes.Buffer that the process's output copier and
// Output may use at the same time.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}
