package tcp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"math/rand"
	"net"
	"net/netip"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/proto"
)

type chanWaker chan struct{}

func (w chanWaker) Wake() {
	select {
	case w <- struct{}{}:
	default:
	}
}

// driver runs two engines on one owner goroutine with the real clock, as a poller would: it sleeps until
// the next timer or a Wake, then ticks and delivers. Segments are encoded and parsed as real bytes.
type driver struct {
	e    [2]*Engine
	q    [2][][]byte
	src  [2][]netip.Addr
	wake chanWaker
	stop chan struct{}
	done chan struct{}
	base time.Time
}

func startDriver(t *testing.T, cfg Config, loss float64) *driver {
	d := &driver{wake: make(chanWaker, 1), stop: make(chan struct{}), done: make(chan struct{}), base: time.Now()}
	rng := rand.New(rand.NewSource(1))
	for i := range 2 {
		to := 1 - i
		d.e[i] = NewEngine(cfg, OutputFunc(func(s *Segment) bool {
			if loss > 0 && rng.Float64() < loss {
				return true // lost on the wire
			}
			b := make([]byte, s.Len())
			s.Encode(b)
			d.q[to] = append(d.q[to], b)
			d.src[to] = append(d.src[to], s.Src.Addr())
			return true
		}), d.wake)
	}
	go d.loop()
	t.Cleanup(func() { close(d.stop); <-d.done })
	return d
}

func (d *driver) now() int64 { return int64(time.Since(d.base)) + int64(time.Hour) }

func (d *driver) loop() {
	defer close(d.done)
	timer := time.NewTimer(time.Millisecond)
	for {
		var next int64
		for range 100 {
			next = 0
			for i := range 2 {
				if w := d.e[i].Tick(d.now()); w != 0 && (next == 0 || w < next) {
					next = w
				}
			}
			if len(d.q[0])+len(d.q[1]) == 0 {
				break
			}
			for i := range 2 {
				q, src := d.q[i], d.src[i]
				d.q[i], d.src[i] = nil, nil
				for k, b := range q {
					tc, perr := proto.ParseTCP(b)
					dst := addrA
					if i == 1 {
						dst = addrB
					}
					if perr != proto.OK || !tc.ChecksumValid(src[k], dst) {
						panic("bad segment on the wire")
					}
					d.e[i].Input(d.now(), src[k], dst, tc)
				}
			}
		}
		sleep := 5 * time.Millisecond
		if next != 0 {
			sleep = min(sleep, time.Duration(next-d.now()))
		}
		timer.Reset(max(sleep, 50*time.Microsecond))
		select {
		case <-d.stop:
			return
		case <-d.wake:
		case <-timer.C:
		}
	}
}

// TestNetConnBlocking uses the application API from goroutines - Dial, Accept, io.Copy, CloseWrite,
// deadlines - over engines driven by a separate owner goroutine, with 2% loss.
func TestNetConnBlocking(t *testing.T) {
	d := startDriver(t, Config{MinRTO: 20 * time.Millisecond, InitialRTO: 100 * time.Millisecond}, 0.02)
	l, err := d.e[1].Listen(netip.AddrPortFrom(addrB, 8080))
	if err != nil {
		t.Fatal(err)
	}
	var nl net.Listener = l
	var srv *Conn
	var srvMu sync.Mutex
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // echo the SHA-256 of everything received
		defer wg.Done()
		c, err := nl.Accept()
		if err != nil {
			t.Error(err)
			return
		}
		srvMu.Lock()
		srv = c.(*Conn)
		srvMu.Unlock()
		h := sha256.New()
		if _, err := io.Copy(h, c); err != nil {
			t.Errorf("server read: %v", err)
		}
		c.Write(h.Sum(nil))
		c.Close()
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := d.e[0].Dial(ctx, netip.AddrPortFrom(addrA, 0), netip.AddrPortFrom(addrB, 8080))
	if err != nil {
		t.Fatal(err)
	}
	var nc net.Conn = c
	nc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	if _, err := nc.Read(make([]byte, 1)); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read with a passed deadline: %v", err)
	}
	nc.SetReadDeadline(time.Time{})
	data := make([]byte, 4<<20)
	rand.New(rand.NewSource(2)).Read(data)
	want := sha256.Sum256(data)
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	if n, err := nc.Write(data); n != len(data) || err != nil {
		srvMu.Lock()
		s := srv
		srvMu.Unlock()
		c.mu.Lock()
		t.Logf("client %v una %d nxt %d max %d sndn %d wnd %d cwnd %d rexmit in %v persist %v rec %v dup %d", c.state, c.sndUna, c.sndNxt, c.sndMax, c.snd.n, c.sndWnd, c.cwnd, time.Duration(c.rexmitAt-d.now()), c.persist, c.inRecovery, c.dupAcks)
		c.mu.Unlock()
		if s != nil {
			s.mu.Lock()
			t.Logf("server %v rcvNxt %d rcvAdv %d rcvn %d free %d ooo %v delack %v", s.state, s.rcvNxt, s.rcvAdv, s.rcv.n, s.rcv.free(), s.ooo, s.delackAt)
			s.mu.Unlock()
		}
		t.Fatalf("write: %d %v", n, err)
	}
	c.CloseWrite()
	got, err := io.ReadAll(nc)
	if err != nil || !bytes.Equal(got, want[:]) {
		t.Fatalf("echoed hash %x (%v), want %x", got, err, want)
	}
	nc.Close()
	wg.Wait()
	if nc.RemoteAddr().String() != "198.18.0.2:8080" || nc.LocalAddr().(*net.TCPAddr).IP.String() != "198.18.0.1" {
		t.Errorf("addresses %v %v", nc.LocalAddr(), nc.RemoteAddr())
	}
	l.Close()
	if _, err := l.Accept(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("accept on a closed listener: %v", err)
	}
}

// TestCloseUnblocksRead: a Read blocked in one goroutine returns when another closes the connection.
func TestCloseUnblocksRead(t *testing.T) {
	d := startDriver(t, Config{}, 0)
	l, _ := d.e[1].Listen(netip.AddrPortFrom(addrB, 8081))
	go func() {
		c, err := l.Accept()
		if err == nil {
			time.Sleep(time.Second)
			c.Close()
		}
	}()
	c, err := d.e[0].Dial(context.Background(), netip.AddrPortFrom(addrA, 0), netip.AddrPortFrom(addrB, 8081))
	if err != nil {
		t.Fatal(err)
	}
	res := make(chan error, 1)
	go func() {
		_, err := c.Read(make([]byte, 10))
		res <- err
	}()
	time.Sleep(20 * time.Millisecond)
	c.Close()
	select {
	case err := <-res:
		if !errors.Is(err, net.ErrClosed) {
			t.Fatalf("blocked read after Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not unblock Read")
	}
}

// TestDialRefusedAndTimeout: a closed port refuses (ECONNREFUSED); with every segment lost the SYN is
// retried SynRetries times and the dial fails with ETIMEDOUT, or earlier when the context ends.
func TestDialRefusedAndTimeout(t *testing.T) {
	d := startDriver(t, Config{}, 0)
	_, err := d.e[0].Dial(context.Background(), netip.AddrPortFrom(addrA, 0), netip.AddrPortFrom(addrB, 9))
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial closed port: %v", err)
	}
	lossy := startDriver(t, Config{InitialRTO: 10 * time.Millisecond, SynRetries: 2}, 1.0)
	start := time.Now()
	_, err = lossy.e[0].Dial(context.Background(), netip.AddrPortFrom(addrA, 0), netip.AddrPortFrom(addrB, 9))
	if !errors.Is(err, syscall.ETIMEDOUT) || time.Since(start) < 70*time.Millisecond {
		t.Fatalf("dial into the void: %v after %v (want ETIMEDOUT after 10+20+40 ms)", err, time.Since(start))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	lossy2 := startDriver(t, Config{}, 1.0)
	_, err = lossy2.e[0].Dial(ctx, netip.AddrPortFrom(addrA, 0), netip.AddrPortFrom(addrB, 9))
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("dial with a context deadline: %v", err)
	}
	// The aborted connection leaves the table on the owner's next Tick.
	deadline := time.Now().Add(5 * time.Second)
	for lossy2.e[0].Conns() != 0 && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	if n := lossy2.e[0].Conns(); n != 0 {
		t.Fatalf("%d connections left after the dial was abandoned", n)
	}
}
