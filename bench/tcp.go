package main

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/internal/netlab"
	"github.com/xdpnet/xdpnet/poller"
	"github.com/xdpnet/xdpnet/stack"
)

// The tcp scenario: one TCP flow from Linux in the snd host to a receiver in the rcv host over one veth pair,
//
//	snd (eth0 198.18.2.1) --veth, MTU 1500, 1 queue-- (eth0 198.18.2.2) rcv
//
// with GSO, GRO, TSO and TX checksum offloads off on both ends (netlab DisableOffloads, as
// examples/httpd's BenchmarkTCPOneFlowVeth does), for like-for-like numbers only: at the defaults the Linux
// receiver would get 64 KiB TSO segments straight from the sender, while veth turns its peer's TSO off for
// xdpnet's XDP program; with the offloads off both receivers get the 1500-byte segments a wire would carry.
// Implementations: xdpnet (a poller and stack.Stack in rcv, ListenTCP, the reader discards) and kernel (Linux
// TCP in rcv, a Go reader that discards). The sender is the same in both: a Go net.Dial writer in snd, its thread
// pinned to -gen-cpu; the xdpnet poller is pinned to -dut-cpu like the other xdpnet DUTs. Throughput is counted
// at the receiver (bytes the application read) over the window, after the warmup.
var (
	tcpSndPrefix = "198.18.2.1/24"
	tcpRcvPrefix = netip.MustParsePrefix("198.18.2.2/24")
	tcpRcvAddr   = netip.AddrPortFrom(tcpRcvPrefix.Addr(), 9000)
)

// tcpChunk is the size of each Write of the sender and each Read of the receiver.
const tcpChunk = 64 << 10

type tcpTopo struct {
	lab      *netlab.Lab
	snd, rcv *netlab.Host
}

func newTCPTopo() (*tcpTopo, error) {
	lab, err := netlab.New("bench")
	if err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			lab.Close()
		}
	}()
	t := &tcpTopo{lab: lab}
	if t.snd, err = lab.AddHost("snd"); err != nil {
		return nil, err
	}
	if t.rcv, err = lab.AddHost("rcv"); err != nil {
		return nil, err
	}
	// One queue: the xdpnet poller reads one queue, and a second would steer the flow's segments (or ARP) to a
	// queue nobody reads.
	if _, err := lab.LinkWith(t.snd, "eth0", t.rcv, "eth0", netlab.LinkOptions{Queues: 1, MTU: 1500}); err != nil {
		return nil, err
	}
	for _, h := range []*netlab.Host{t.snd, t.rcv} {
		if err := h.Sysctl("net.ipv6.conf.eth0.disable_ipv6", "1"); err != nil {
			return nil, err
		}
		if err := h.DisableOffloads("eth0"); err != nil {
			return nil, err
		}
		if err := h.SetUp("eth0"); err != nil {
			return nil, err
		}
	}
	if err := t.snd.AddAddr("eth0", tcpSndPrefix); err != nil {
		return nil, err
	}
	for _, h := range []*netlab.Host{t.snd, t.rcv} {
		if err := h.WaitOperUp("eth0", 5*time.Second); err != nil {
			return nil, err
		}
	}
	ok = true
	return t, nil
}

// tcpSink accepts one connection and reads it to EOF, counting the bytes and (when sum is set) their CRC-32C.
type tcpSink struct {
	n    atomic.Uint64
	sum  bool
	crc  uint32
	err  error
	done chan struct{}
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func serveSink(ln net.Listener, sum bool) *tcpSink {
	s := &tcpSink{sum: sum, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		c, err := ln.Accept()
		if err != nil {
			s.err = err
			return
		}
		defer c.Close()
		buf := make([]byte, tcpChunk)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if s.sum {
					s.crc = crc32.Update(s.crc, castagnoli, buf[:n])
				}
				s.n.Add(uint64(n))
			}
			if err != nil {
				if !errors.Is(err, io.EOF) {
					s.err = err
				}
				return
			}
		}
	}()
	return s
}

// tcpReceiver is a running receiver in t.rcv: ln to accept on, stop to tear it down.
type tcpReceiver struct {
	ln   net.Listener
	stop func() error
}

func startTCPReceiver(t *tcpTopo, o *options, impl string) (*tcpReceiver, error) {
	switch impl {
	case "kernel":
		if err := t.rcv.AddAddr("eth0", tcpRcvPrefix.String()); err != nil {
			return nil, err
		}
		var ln net.Listener
		// A socket keeps the namespace it was made in: listen inside rcv, accept from anywhere.
		if err := t.rcv.Do(func() (err error) { ln, err = net.Listen("tcp", tcpRcvAddr.String()); return err }); err != nil {
			return nil, err
		}
		return &tcpReceiver{ln: ln, stop: func() error { return ln.Close() }}, nil
	case "xdpnet":
		// The engine's defaults, as the kernel receiver has Linux's: a 256 KiB receive buffer that
		// autotuning grows (up to 4 MiB) while the reader keeps up, as Linux's grows up to tcp_rmem's 6 MiB.
		st, err := stack.New(stack.Config{Interfaces: []stack.Interface{{Name: "eth0", Addrs: []netip.Prefix{tcpRcvPrefix}}}})
		if err != nil {
			return nil, err
		}
		mode, err := poller.ParsePollMode(o.dutMode)
		if err != nil {
			return nil, err
		}
		_, stopPoller, err := runPoller(t.rcv, poller.Config{Interfaces: []string{"eth0"}, Queues: 1, CPUs: []int{o.dutCPU},
			Mode: mode, Budget: o.dutBudget, RingSize: o.dutRing, NewHandler: st.NewHandler})
		if err != nil {
			return nil, err
		}
		ln, err := st.ListenTCP(tcpRcvAddr)
		if err != nil {
			stopPoller()
			return nil, err
		}
		return &tcpReceiver{ln: ln, stop: func() error {
			lerr := ln.Close()
			if err := stopPoller(); err != nil && !errors.Is(err, context.Canceled) {
				return err
			}
			return lerr
		}}, nil
	}
	return nil, fmt.Errorf("%w: no %s implementation of tcp", errNA, impl)
}

// tcpSender is one Linux TCP connection from t.snd to the receiver, written from a goroutine whose thread is
// pinned to cpu (-1: not pinned).
type tcpSender struct {
	conn net.Conn
	sent atomic.Uint64
	crc  uint32
	err  error
	done chan struct{}
}

// startTCPSender connects and writes: total bytes of random data, then closes its write side (total > 0), or the
// same 64 KiB chunk until stop (total 0).
func startTCPSender(t *tcpTopo, cpu int, total int64) (*tcpSender, error) {
	var c net.Conn
	if err := t.snd.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", tcpRcvAddr.String(), 5*time.Second)
		return err
	}); err != nil {
		return nil, fmt.Errorf("connect to %v from the sender: %w", tcpRcvAddr, err)
	}
	s := &tcpSender{conn: c, done: make(chan struct{})}
	buf := make([]byte, tcpChunk)
	rand.NewChaCha8([32]byte{7}).Read(buf)
	go func() {
		defer close(s.done)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		if cpu >= 0 {
			var set unix.CPUSet
			set.Set(cpu)
			unix.SchedSetaffinity(0, &set)
			// The thread goes back to the pool when unlocked: give it every CPU again.
			defer func() {
				set.Zero()
				for i := range runtime.NumCPU() {
					set.Set(i)
				}
				unix.SchedSetaffinity(0, &set)
			}()
		}
		rng := rand.NewChaCha8([32]byte{9})
		for left := total; total == 0 || left > 0; {
			b := buf
			if total > 0 {
				// Fresh bytes every chunk, so that a misplaced or repeated segment changes the CRC.
				rng.Read(buf)
				b = buf[:min(int64(len(buf)), left)]
				s.crc = crc32.Update(s.crc, castagnoli, b)
			}
			n, err := c.Write(b)
			s.sent.Add(uint64(n))
			left -= int64(n)
			if err != nil {
				if total > 0 {
					s.err = err
				}
				return
			}
		}
		if tc, ok := c.(*net.TCPConn); ok {
			s.err = tc.CloseWrite()
		}
	}()
	return s, nil
}

// stop ends a windowed sender: closing the connection unblocks its Write.
func (s *tcpSender) stop() {
	s.conn.Close()
	<-s.done
}

// tcpTrial runs one flow for the warmup and the window and returns the receiver's rate in bit/s.
func tcpTrial(o *options, impl string) (trialResult, error) {
	res := trialResult{allocs: -1, cpuPerPkt: -1, cpuPct: -1, sysCPU: -1}
	t, err := newTCPTopo()
	if err != nil {
		return res, err
	}
	defer t.lab.Close()
	r, err := startTCPReceiver(t, o, impl)
	if err != nil {
		return res, err
	}
	stopRcv := once(r.stop)
	defer stopRcv()
	sink := serveSink(r.ln, false)
	snd, err := startTCPSender(t, o.genCPU, 0)
	if err != nil {
		return res, err
	}
	var stopOnce sync.Once
	stopSnd := func() { stopOnce.Do(snd.stop) }
	defer stopSnd()
	time.Sleep(o.warmup)
	c0, t0 := sink.n.Load(), time.Now()
	time.Sleep(o.duration)
	c1, t1 := sink.n.Load(), time.Now()
	stopSnd()
	select {
	case <-sink.done:
	case <-time.After(2 * time.Second):
	}
	res.bps = float64(c1-c0) * 8 / t1.Sub(t0).Seconds()
	if err := stopRcv(); err != nil {
		return res, err
	}
	if c1 == c0 {
		return res, fmt.Errorf("no bytes reached the %s receiver in the window (sender wrote %d bytes; receiver: %v)", impl, snd.sent.Load(), sink.err)
	}
	return res, nil
}

// tcpTransfer sends total bytes of random data over one flow to impl's receiver and waits for the receiver to
// read them to EOF. It returns what each side counted and their CRC-32Cs, for the smoke test's "arrived intact".
func tcpTransfer(o *options, impl string, total int64, timeout time.Duration) (sent, got uint64, sentCRC, gotCRC uint32, err error) {
	t, err := newTCPTopo()
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer t.lab.Close()
	r, err := startTCPReceiver(t, o, impl)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	stopRcv := once(r.stop)
	defer stopRcv()
	sink := serveSink(r.ln, true)
	snd, err := startTCPSender(t, o.genCPU, total)
	if err != nil {
		return 0, 0, 0, 0, err
	}
	defer snd.conn.Close()
	select {
	case <-sink.done:
	case <-time.After(timeout):
		snd.conn.Close()
		<-snd.done
		return snd.sent.Load(), sink.n.Load(), 0, 0, fmt.Errorf("receiver saw no EOF within %v", timeout)
	}
	<-snd.done
	if snd.err != nil {
		return snd.sent.Load(), sink.n.Load(), snd.crc, sink.crc, fmt.Errorf("sender: %w", snd.err)
	}
	if sink.err != nil {
		return snd.sent.Load(), sink.n.Load(), snd.crc, sink.crc, fmt.Errorf("receiver: %w", sink.err)
	}
	return snd.sent.Load(), sink.n.Load(), snd.crc, sink.crc, stopRcv()
}
