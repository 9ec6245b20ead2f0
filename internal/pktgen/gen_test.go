package pktgen

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/pipeline/memlink"
	"github.com/xdpnet/xdpnet/proto"
)

var (
	macA = proto.MAC{0x02, 0, 0, 0, 0, 0xa}
	macB = proto.MAC{0x02, 0, 0, 0, 0, 0xb}
)

func testConfig() Config {
	return Config{SrcMAC: macA, DstMAC: macB,
		Src: netip.MustParseAddrPort("198.18.0.1:1024"), Dst: netip.MustParseAddrPort("198.18.1.1:9")}
}

func newLink(t testing.TB, nh pipeline.NewHandler) *memlink.Link {
	t.Helper()
	l, err := memlink.New(memlink.Config{Ports: []memlink.PortConfig{{Name: "p0", MAC: macA}}, Frames: 1024, NewHandler: nh})
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// TestTemplateGopacket decodes every flow's template with gopacket, an independent decoder, and checks the
// fields and both checksums.
func TestTemplateGopacket(t *testing.T) {
	cfg := testConfig()
	cfg.Flows = 5
	for _, size := range []int{64, 128, 1518} {
		cfg.FrameSize = size
		g, err := NewGenerator(cfg)
		if err != nil {
			t.Fatal(err)
		}
		if g.FrameLen() != size-FCSLen {
			t.Fatalf("FrameLen %d, want %d", g.FrameLen(), size-FCSLen)
		}
		for i := 0; i < cfg.Flows; i++ {
			b := g.Template(i)
			pkt := gopacket.NewPacket(b, layers.LayerTypeEthernet, gopacket.Default)
			if el := pkt.ErrorLayer(); el != nil {
				t.Fatalf("size %d flow %d: gopacket: %v", size, i, el.Error())
			}
			eth := pkt.Layer(layers.LayerTypeEthernet).(*layers.Ethernet)
			ip := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			udp := pkt.Layer(layers.LayerTypeUDP).(*layers.UDP)
			if !bytes.Equal(eth.SrcMAC, macA[:]) || !bytes.Equal(eth.DstMAC, macB[:]) {
				t.Fatalf("MACs %v -> %v", eth.SrcMAC, eth.DstMAC)
			}
			if ip.SrcIP.String() != "198.18.0.1" || ip.DstIP.String() != "198.18.1.1" || ip.TTL != 64 || int(ip.Length) != size-FCSLen-14 {
				t.Fatalf("IPv4 %+v", ip)
			}
			if int(udp.SrcPort) != 1024+i || udp.DstPort != 9 || int(udp.Length) != size-FCSLen-34 {
				t.Fatalf("UDP %+v", udp)
			}
			// Re-serialise with gopacket computing the checksums; the bytes must not change.
			buf := gopacket.NewSerializeBuffer()
			udp.SetNetworkLayerForChecksum(ip)
			if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true},
				eth, ip, udp, gopacket.Payload(udp.Payload)); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(buf.Bytes(), b) {
				t.Fatalf("size %d flow %d: gopacket's checksums differ:\n got %x\nwant %x", size, i, b, buf.Bytes())
			}
		}
	}
}

func TestConfigErrors(t *testing.T) {
	for _, mod := range []func(*Config){
		func(c *Config) { c.Src = netip.MustParseAddrPort("[2001:db8::1]:1") },
		func(c *Config) { c.Flows = 65537 },
		func(c *Config) { c.FrameSize = 63 },
		func(c *Config) { c.FrameSize = 1519 },
		func(c *Config) { c.Rate = -1 },
		func(c *Config) { c.Burst = pipeline.MaxBatch + 1 },
	} {
		c := testConfig()
		mod(&c)
		if _, err := NewGenerator(c); !errors.Is(err, ErrConfig) {
			t.Errorf("%+v: err %v, want ErrConfig", c, err)
		}
	}
}

// TestCountAndFlows runs a counted generator over memlink: it stops at Count, rotates over the flows in order
// and every frame is its flow's template.
func TestCountAndFlows(t *testing.T) {
	cfg := testConfig()
	cfg.Flows, cfg.Count, cfg.Burst = 3, 200, 64
	g, err := NewGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l := newLink(t, g.NewHandler)
	var got [][]byte
	for range 10 {
		l.Advance(time.Millisecond)
		got = append(got, l.Sent(0)...)
	}
	if len(got) != 200 || g.Sent() != 200 || !g.Done() {
		t.Fatalf("sent %d frames, Sent()=%d Done=%v; want 200", len(got), g.Sent(), g.Done())
	}
	for i, f := range got {
		if !bytes.Equal(f, g.Template(i%3)) {
			t.Fatalf("frame %d is not flow %d's template", i, i%3)
		}
	}
	if err := l.CheckAccounting(0); err != nil {
		t.Fatal(err)
	}
}

// TestRate checks the limiter against the fake clock: 1000 pps for one simulated second is 1001 packets (one
// at t0), and Tick asks to be woken when the next packet is due.
func TestRate(t *testing.T) {
	cfg := testConfig()
	cfg.Rate = 1000
	g, _ := NewGenerator(cfg)
	l := newLink(t, g.NewHandler)
	l.Poll()
	n := len(l.Sent(0))
	for range 1000 {
		w := l.Advance(time.Millisecond)
		n += len(l.Sent(0))
		if w <= l.Now() || w > l.Now()+int64(2*time.Millisecond) {
			t.Fatalf("wakeAt %d, now %d: want the next millisecond", w, l.Now())
		}
	}
	if n != 1001 {
		t.Fatalf("sent %d in 1 s at 1000 pps, want 1001", n)
	}
	// A stalled loop catches up by at most one burst per tick, and never beyond the rate.
	l.Advance(100 * time.Millisecond)
	if got := len(l.Sent(0)); got != 64 {
		t.Fatalf("after a 100 ms stall sent %d, want one burst of 64", got)
	}
	l.Poll()
	if got := len(l.Sent(0)); got != 36 {
		t.Fatalf("catch-up sent %d, want the remaining 36", got)
	}
}

// TestQueueShares splits Count and Rate over queues.
func TestQueueShares(t *testing.T) {
	cfg := testConfig()
	cfg.Count, cfg.Queues = 5, 2
	g, _ := NewGenerator(cfg)
	l0, l1 := newLink(t, g.NewHandler), newLink(t, g.NewHandler)
	l0.Poll()
	l1.Poll()
	if a, b := len(l0.Sent(0)), len(l1.Sent(0)); a != 3 || b != 2 {
		t.Fatalf("queues sent %d and %d, want 3 and 2", a, b)
	}
}

func TestSinkAndReceiveSide(t *testing.T) {
	s := NewSink()
	l := newLink(t, s.NewHandler)
	f := make([]byte, 60)
	for range 3 {
		if err := l.InjectBatch(0, f, f); err != nil {
			t.Fatal(err)
		}
	}
	if p, b := s.Received(); p != 6 || b != 360 {
		t.Fatalf("sink counted %d packets %d bytes, want 6 and 360", p, b)
	}
	if l.Dropped(DropReceived) != 6 || l.Outstanding() != 0 {
		t.Fatalf("drops %v, outstanding %d", l.DropSummary(), l.Outstanding())
	}
	g, _ := NewGenerator(testConfig())
	cfg := testConfig()
	cfg.Count = 1
	g, _ = NewGenerator(cfg)
	lg := newLink(t, g.NewHandler)
	lg.InjectBatch(0, f)
	if p, _ := g.Received(); p != 1 || lg.Dropped(DropReceived) != 1 {
		t.Fatalf("generator received %d, drops %v", p, lg.DropSummary())
	}
}

// TestNoAllocs: neither Tick nor Process allocates.
func TestNoAllocs(t *testing.T) {
	g, _ := NewGenerator(testConfig())
	l := newLink(t, g.NewHandler)
	if n := testing.AllocsPerRun(100, func() { l.Advance(time.Microsecond); l.Sent(0) }); n > 1 {
		// memlink itself copies the sent frames; the generator's share is checked below without it.
		t.Logf("memlink loop allocs %v", n)
	}
	frames := memlink.NewFrames(512, 2048, 256)
	h := g.NewHandler(&pipeline.QueueInfo{Frames: frames})
	var b pipeline.Batch
	b.Frames = frames
	if n := testing.AllocsPerRun(100, func() {
		b.Reset(0)
		pipeline.Tick(h, &b)
		for i := range b.N {
			frames.Put(b.Pkts[i].Addr)
		}
	}); n != 0 {
		t.Fatalf("Tick allocates %v times", n)
	}
	s := NewSink()
	sh := s.NewHandler(&pipeline.QueueInfo{Frames: frames})
	if n := testing.AllocsPerRun(100, func() {
		b.Reset(0)
		pipeline.Tick(h, &b)
		sh.Process(&b)
		for i := range b.N {
			frames.Put(b.Pkts[i].Addr)
		}
	}); n != 0 {
		t.Fatalf("Sink.Process allocates %v times", n)
	}
}

// BenchmarkTick is the generator's per-packet cost without the rings: ns/op is per 64-frame burst.
func BenchmarkTick(b *testing.B) {
	cfg := testConfig()
	cfg.Flows = 256
	g, _ := NewGenerator(cfg)
	frames := newSlab(512)
	h := g.NewHandler(&pipeline.QueueInfo{Frames: frames})
	var bt pipeline.Batch
	bt.Frames = frames
	b.ReportAllocs()
	for b.Loop() {
		bt.Reset(0)
		pipeline.Tick(h, &bt)
		for i := range bt.N {
			frames.Put(bt.Pkts[i].Addr)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*DefaultBurst), "ns/pkt")
}

// slab is a minimal FrameSource (a stack of free frames) so that the benchmark measures the generator rather
// than memlink's checking frames.
type slab struct {
	mem  []byte
	free []uint64
}

func newSlab(n int) *slab {
	s := &slab{mem: make([]byte, n*2048)}
	for i := range n {
		s.free = append(s.free, uint64(i*2048))
	}
	return s
}

func (s *slab) Get() (uint64, []byte, bool) {
	if len(s.free) == 0 {
		return 0, nil, false
	}
	a := s.free[len(s.free)-1]
	s.free = s.free[:len(s.free)-1]
	return a, s.mem[a : a+2048], true
}
func (s *slab) Put(a uint64)  { s.free = append(s.free, a) }
func (s *slab) Headroom() int { return 256 }

// TestMix: a generator with the IMIX cycle emits frames whose sizes follow the cycle (per queue, across
// Ticks) and each frame is its flow's template of that size, which gopacket decodes with valid lengths.
func TestMix(t *testing.T) {
	cfg := testConfig()
	cfg.Flows, cfg.Mix, cfg.Count, cfg.Burst = 5, IMIX, 100, 7
	g, err := NewGenerator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	l := newLink(t, g.NewHandler)
	var got [][]byte
	for range 20 {
		l.Advance(time.Millisecond)
		got = append(got, l.Sent(0)...)
	}
	if len(got) != 100 {
		t.Fatalf("sent %d frames, want 100", len(got))
	}
	bySize := map[int]int{}
	for i, f := range got {
		size := IMIX[i%len(IMIX)]
		if len(f) != size-FCSLen || !bytes.Equal(f, g.TemplateOf(i%5, size)) {
			t.Fatalf("frame %d: %d bytes, want flow %d's %d-byte template", i, len(f), i%5, size)
		}
		pkt := gopacket.NewPacket(f, layers.LayerTypeEthernet, gopacket.Default)
		ip, _ := pkt.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
		if ip == nil || int(ip.Length) != len(f)-proto.EthernetHeaderLen {
			t.Fatalf("frame %d: IPv4 layer %v, want total length %d", i, ip, len(f)-proto.EthernetHeaderLen)
		}
		bySize[size]++
	}
	// 100 frames = 8 cycles of 12 (56, 32, 8) plus 64, 576, 64, 64.
	if bySize[64] != 59 || bySize[576] != 33 || bySize[1500] != 8 {
		t.Fatalf("sizes %v, want 59 x 64, 33 x 576, 8 x 1500", bySize)
	}
	if g.TemplateOf(0, 128) != nil {
		t.Fatal("TemplateOf a size the mix lacks is not nil")
	}
	for _, bad := range [][]int{{64, 63}, {2000}, make([]int, MaxMix+1)} {
		c := testConfig()
		c.Mix = bad
		if _, err := NewGenerator(c); !errors.Is(err, ErrConfig) {
			t.Errorf("Mix %v: err %v, want ErrConfig", bad, err)
		}
	}
}
