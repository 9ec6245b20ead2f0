package pktgen

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/poller"
)

// recorder checks every frame against the live generator's frames and counts source ports; its counters are
// read after the poller stopped.
type recorder struct {
	want  []byte // flow 0's frame, UDP checksum 0
	ports map[uint16]int
	bad   int
	first []byte
}

func (r *recorder) Process(b *pipeline.Batch) {
	for i := range b.N {
		p := &b.Pkts[i]
		d := p.Data()
		port := uint16(0)
		if len(d) == len(r.want) {
			port = binary.BigEndian.Uint16(d[udpSrcPortOff:])
			w := append([]byte(nil), r.want...)
			binary.BigEndian.PutUint16(w[udpSrcPortOff:], port)
			if !bytes.Equal(d, w) {
				port = 0
			}
		}
		if port == 0 {
			if r.bad++; r.first == nil {
				r.first = append([]byte(nil), d...)
			}
		} else {
			r.ports[port]++
		}
		p.Drop(DropReceived)
	}
}

func (r *recorder) Tick(*pipeline.Batch) int64 { return 0 }

// TestLiveRefusesRateAndCount: the kernel generator runs flat out, so a Rate or a Count is a configuration
// error that names the generator to use instead (checked before anything is loaded: no privileges needed).
func TestLiveRefusesRateAndCount(t *testing.T) {
	for _, c := range []Config{{Rate: 1000}, {Count: 10}} {
		c.Src, c.Dst = netip.MustParseAddrPort("198.18.0.1:4000"), netip.MustParseAddrPort("198.18.0.2:9")
		if _, err := NewLive(c, 1); !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), "AF_XDP Generator") {
			t.Errorf("NewLive(%+v) = %v, want ErrConfig naming the AF_XDP Generator", c, err)
		}
	}
}

// TestLiveToPollerVeth runs the live XDP generator in one namespace against a poller in the other: every frame
// that arrives is the template with its flow's source port and a zero UDP checksum, all 8 flows arrive in equal
// shares (the program cycles through them), nothing arrives that was not sent, and Run stops on cancel.
func TestLiveToPollerVeth(t *testing.T) {
	g, r, v := pair(t)
	cfg := genConfig(v)
	cfg.Flows = 8
	var live *Live
	var ifindex int
	if err := g.Do(func() error {
		l, err := g.Link("eth0")
		if err != nil {
			return err
		}
		ifindex = l.Attrs().Index
		live, err = NewLive(cfg, ifindex)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	rec := &recorder{want: live.frame, ports: map[uint16]int{}}
	p, stop := start(t, r, poller.Config{Interfaces: []string{"eth0"}, Mode: poller.Busy,
		NewHandler: func(*pipeline.QueueInfo) pipeline.Handler { return rec }})

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var runErr error
	wg.Add(1)
	go func() {
		defer wg.Done()
		runErr = g.Do(func() error { return live.Run(ctx, -1) })
	}()
	time.Sleep(300 * time.Millisecond)
	cancel()
	wg.Wait()
	if runErr != nil {
		t.Fatal(runErr)
	}
	time.Sleep(50 * time.Millisecond)
	stop()
	sent := live.Sent()
	got := 0
	for _, n := range rec.ports {
		got += n
	}
	t.Logf("sent %d in 300 ms, received %d, ports %v, receiver stats %+v", sent, got, rec.ports, p.Stats().Ports[0].Kernel)
	if rec.bad > 0 {
		t.Fatalf("%d frames differ from the template, first %x, want (port aside) %x", rec.bad, rec.first, rec.want)
	}
	if got == 0 || uint64(got) > sent {
		t.Fatalf("received %d frames, generator sent %d", got, sent)
	}
	if len(rec.ports) != 8 {
		t.Fatalf("source ports %v, want 8 flows from 4000", rec.ports)
	}
	for port, n := range rec.ports {
		if port < 4000 || port >= 4008 || n < got/8/2 {
			t.Fatalf("source ports %v: want 4000..4007 in about equal shares", rec.ports)
		}
	}
}

// mixRecorder checks frames of several sizes against the live generator's frames of that size (source port
// aside) and counts them by size.
type mixRecorder struct {
	want   map[int][]byte // by length, UDP checksum 0
	sizes  map[int]int
	bad    int
	first  []byte
	frames int
}

func (r *mixRecorder) Process(b *pipeline.Batch) {
	for i := range b.N {
		p := &b.Pkts[i]
		d := p.Data()
		w, ok := r.want[len(d)]
		if ok {
			w = append([]byte(nil), w...)
			copy(w[udpSrcPortOff:], d[udpSrcPortOff:udpSrcPortOff+2])
			ok = bytes.Equal(d, w)
		}
		if !ok {
			if r.bad++; r.first == nil {
				r.first = append([]byte(nil), d...)
			}
		} else {
			r.sizes[len(d)+FCSLen]++
		}
		p.Drop(DropReceived)
	}
}

func (r *mixRecorder) Tick(*pipeline.Batch) int64 { return 0 }

// TestLiveMixVeth runs the live generator with the IMIX cycle against a poller: every frame is the pktgen
// frame of its size (IPv4 total length, header checksum and UDP length rewritten by the program, which trims
// or grows the largest template), and the sizes arrive in the ratio 7:4:1.
func TestLiveMixVeth(t *testing.T) {
	g, r, v := pair(t)
	cfg := genConfig(v)
	cfg.Flows, cfg.FrameSize, cfg.Mix = 4, 0, IMIX
	ref, err := NewGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	rec := &mixRecorder{want: map[int][]byte{}, sizes: map[int]int{}}
	for _, size := range []int{64, 576, 1500} {
		f := ref.TemplateOf(0, size)
		f[udpSrcPortOff+6], f[udpSrcPortOff+7] = 0, 0
		rec.want[len(f)] = f
	}
	var live *Live
	if err := g.Do(func() error {
		l, err := g.Link("eth0")
		if err != nil {
			return err
		}
		live, err = NewLive(cfg, l.Attrs().Index)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer live.Close()
	_, stop := start(t, r, poller.Config{Interfaces: []string{"eth0"}, Mode: poller.Busy,
		NewHandler: func(*pipeline.QueueInfo) pipeline.Handler { return rec }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- g.Do(func() error { return live.Run(ctx, -1) }) }()
	time.Sleep(300 * time.Millisecond)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	time.Sleep(50 * time.Millisecond)
	stop()
	t.Logf("sent %d, received by size %v, bad %d", live.Sent(), rec.sizes, rec.bad)
	if rec.bad > 0 {
		t.Fatalf("%d frames are no IMIX frame of the generator, first (%d bytes) %x", rec.bad, len(rec.first), rec.first)
	}
	small, mid, large := rec.sizes[64], rec.sizes[576], rec.sizes[1500]
	if large < 100 {
		t.Fatalf("sizes %v: too few frames to judge the mix", rec.sizes)
	}
	// Frames lost at the receiver's socket may skew the shares a little; 7:4:1 within 20%.
	if f := float64(small) / float64(large); f < 5.6 || f > 8.4 {
		t.Fatalf("sizes %v: 64:1500 = %.2f, want about 7", rec.sizes, f)
	}
	if f := float64(mid) / float64(large); f < 3.2 || f > 4.8 {
		t.Fatalf("sizes %v: 576:1500 = %.2f, want about 4", rec.sizes, f)
	}
}
