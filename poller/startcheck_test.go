package poller

import (
	"bytes"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/xdpnet/xdpnet/internal/netlab"
)

func TestCheckMTUNumbers(t *testing.T) {
	for _, c := range []struct {
		mtu, frame, headroom int
		ok                   bool
		says                 []string
	}{
		{1500, 2048, 256, true, nil},
		{1522, 2048, 256, true, nil},
		{1523, 2048, 256, false, []string{"MTU 1523", "at most 1522 bytes", "2048 - 256 kernel headroom - 256 headroom - 14 Ethernet header", "mtu 1522", "4096-byte frames"}},
		{9000, 2048, 256, false, []string{"MTU 9000", "mtu 1522"}},
		{3570, 4096, 256, true, nil},
		{9000, 4096, 256, false, []string{"at most 3570 bytes", "mtu 3570"}},
	} {
		err := checkMTU("eth9", c.mtu, c.frame, c.headroom)
		if (err == nil) != c.ok {
			t.Errorf("MTU %d, %d-byte frames: %v, want ok %v", c.mtu, c.frame, err, c.ok)
			continue
		}
		if err != nil && !errors.Is(err, ErrMTU) {
			t.Errorf("MTU %d: %v is not ErrMTU", c.mtu, err)
		}
		for _, s := range c.says {
			if !strings.Contains(err.Error(), s) {
				t.Errorf("MTU %d: %q does not say %q", c.mtu, err, s)
			}
		}
		if err != nil && c.frame == 4096 && strings.Contains(err.Error(), "4096-byte frames") {
			t.Errorf("suggests 4096-byte frames to a 4096-byte configuration: %v", err)
		}
	}
}

func TestUnservedQueues(t *testing.T) {
	for _, c := range []struct {
		served, active int
		want           string
	}{{1, 1, ""}, {2, 1, ""}, {1, 2, "1"}, {1, 4, "1-3"}, {2, 8, "2-7"}} {
		if got := unservedQueues(c.served, c.active); got != c.want {
			t.Errorf("unservedQueues(%d, %d) = %q, want %q", c.served, c.active, got, c.want)
		}
	}
}

// syncBuffer is a log sink for handlers writing from several goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}
func (s *syncBuffer) String() string { s.mu.Lock(); defer s.mu.Unlock(); return s.b.String() }

// TestStartChecksVeth: on a veth with 4 RX queues (as netlab creates it, ethtool -L raised) a poller on 1
// queue warns, naming queues 1-3 and the two ways out; on a veth lowered to 1 queue it does not warn; with
// the MTU raised past what a 2048-byte frame holds, New refuses with ErrMTU and the numbers and leaves
// nothing attached. (One veth per case: a queue stays busy for a while after its socket is closed.)
func TestStartChecksVeth(t *testing.T) {
	lab := netlab.NewT(t)
	dut := lab.MustAddHost(t, "dut")
	peer := lab.MustAddHost(t, "peer")
	for _, c := range []struct {
		ifname string
		queues int
	}{{"four", 4}, {"one", 1}, {"jumbo", 1}} {
		if _, err := lab.LinkWith(dut, c.ifname, peer, c.ifname, netlab.LinkOptions{Queues: 4}); err != nil {
			t.Fatal(err)
		}
		for _, h := range []*netlab.Host{dut, peer} {
			if err := h.SetUp(c.ifname); err != nil {
				t.Fatal(err)
			}
		}
		if err := dut.SetQueues(c.ifname, c.queues); err != nil {
			t.Fatal(err)
		}
	}
	newOn := func(ifname string) (string, error) {
		var logs syncBuffer
		nh, _ := newRecorder(-1)
		var p *Poller
		err := dut.Do(func() (err error) {
			p, err = New(Config{Interfaces: []string{ifname}, Queues: 1, NewHandler: nh, RingSize: 64, FramesPerQueue: 1024,
				Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			return err
		})
		if err == nil {
			p.Close()
		}
		return logs.String(), err
	}

	logs, err := newOn("four")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"RX queues 1-3 of four have no AF_XDP socket", "xdpfwd --queues 4", "ethtool -L four", "rx_queues_unserved=1-3"} {
		if !strings.Contains(logs, s) {
			t.Errorf("4 RX queues, 1 served: the log does not say %q:\n%s", s, logs)
		}
	}

	if logs, err = newOn("one"); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(logs, "no AF_XDP socket") {
		t.Errorf("1 RX queue, 1 served: warned anyway:\n%s", logs)
	}

	if err := dut.SetMTU("jumbo", 3000); err != nil {
		t.Fatal(err)
	}
	_, err = newOn("jumbo")
	if !errors.Is(err, ErrMTU) || !strings.Contains(err.Error(), "MTU 3000") || !strings.Contains(err.Error(), "mtu 1522") {
		t.Fatalf("MTU 3000 on 2048-byte frames: New = %v, want ErrMTU with the numbers", err)
	}
	t.Logf("refused: %v", err)
	l, err := dut.Link("jumbo")
	if err != nil {
		t.Fatal(err)
	}
	if x := l.Attrs().Xdp; x != nil && x.Attached {
		t.Errorf("an XDP program is attached after the refusal: %+v", x)
	}
}
