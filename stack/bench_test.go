package stack

import (
	"net/netip"
	"testing"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
)

// benchFrames is a FrameSource over heap frames that never runs dry: generated packets are not expected
// on the forward path, so Get just hands out one scratch frame.
type benchFrames struct{ scratch []byte }

func (f *benchFrames) Get() (uint64, []byte, bool) { return 1 << 40, f.scratch, true }
func (f *benchFrames) Put(uint64)                  {}
func (f *benchFrames) Headroom() int               { return 256 }

// forwardSetup builds a stack with A and B resolved and a batch of n copies of a UDP packet A -> far.
func forwardSetup(tb testing.TB, n int) (*handler, *pipeline.Batch, [][]byte, []byte) {
	s, err := New(testConfig())
	if err != nil {
		tb.Fatal(err)
	}
	fs := &benchFrames{scratch: make([]byte, 2048)}
	q := &pipeline.QueueInfo{Frames: fs, Ports: []pipeline.PortInfo{
		{Index: 0, Name: "lan", MAC: macLan, MTU: 1500}, {Index: 1, Name: "wan", MAC: macWan, MTU: 1500}}}
	h := s.NewHandler(q).(*handler)
	s.garp.Store(true)
	for _, k := range []struct {
		iface int
		ip    netip.Addr
		mac   proto.MAC
	}{{0, ipA, macA}, {1, ipB, macB}} {
		nb, _ := s.neigh.getOrCreate(nkey{uint32(k.iface), naddr4(addr4(k.ip))}, 0, true)
		nb.confirm(k.mac, 0)
	}
	tmpl := udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1000), netip.AddrPortFrom(ipFar, 53), 64, make([]byte, 18))
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = make([]byte, 2048)
	}
	return h, &pipeline.Batch{Frames: fs}, frames, tmpl
}

// refill resets the batch with n received copies of tmpl (what a poller does when it peeks the RX ring).
func refill(b *pipeline.Batch, frames [][]byte, tmpl []byte, now int64) {
	b.Reset(now)
	for i, fr := range frames {
		copy(fr[256:], tmpl)
		p := &b.Pkts[i]
		p.Reset(fr, uint64(i), 256, 256+len(tmpl))
	}
	b.N = len(frames)
}

func TestNoAllocs(t *testing.T) {
	h, b, frames, tmpl := forwardSetup(t, 64)
	now := int64(1e9)
	run := func() {
		refill(b, frames, tmpl, now)
		h.Process(b)
	}
	run()
	for i := range b.N {
		if b.Pkts[i].Verdict != pipeline.Tx || b.Pkts[i].OutPort != 1 {
			t.Fatalf("packet %d: verdict %v port %d, want tx on 1 (reason %v)", i, b.Pkts[i].Verdict, b.Pkts[i].OutPort, b.Pkts[i].Reason)
		}
	}
	if a := testing.AllocsPerRun(100, run); a != 0 {
		t.Errorf("forward path: %v allocations per batch, want 0", a)
	}
	if a := testing.AllocsPerRun(100, func() { h.Tick(b) }); a != 0 {
		t.Errorf("idle Tick: %v allocations, want 0", a)
	}
}

// BenchmarkForward runs the whole handler (validation, hooks, lookup, TTL, neighbour, MAC rewrite) over
// batches of 64 UDP packets; ns/op is per packet.
func BenchmarkForward(b *testing.B) {
	h, batch, frames, tmpl := forwardSetup(b, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(frames) {
		refill(batch, frames, tmpl, 1e9)
		h.Process(batch)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpps")
}

// BenchmarkForwardRefill is BenchmarkForward's own overhead - restoring the 64 frames and resetting the
// packets, as a poller does when it peeks the RX ring - so that BenchmarkForward minus this is the stack's
// share; ns/op is per packet.
func BenchmarkForwardRefill(b *testing.B) {
	_, batch, frames, tmpl := forwardSetup(b, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(frames) {
		refill(batch, frames, tmpl, 1e9)
	}
}

// forwardSetup6 is forwardSetup for IPv6: the dual-stack configuration with DAD done, B resolved, and a
// batch of n copies of a UDP packet A -> far (2001:2:100::7, via B).
func forwardSetup6(tb testing.TB, n int) (*handler, *pipeline.Batch, [][]byte, []byte) {
	cfg := testConfig()
	dualRoutes(&cfg)
	s, err := New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	fs := &benchFrames{scratch: make([]byte, 2048)}
	q := &pipeline.QueueInfo{Frames: fs, Ports: []pipeline.PortInfo{
		{Index: 0, Name: "lan", MAC: macLan, MTU: 1500}, {Index: 1, Name: "wan", MAC: macWan, MTU: 1500}}}
	h := s.NewHandler(q).(*handler)
	s.garp.Store(true)
	for _, ic := range s.ifaces {
		for _, x := range append([]*addr6{ic.v6.ll.Load()}, ic.v6.addrs...) {
			x.dadSent.Store(1)
			x.state.Store(addrPreferred)
		}
	}
	nb, _ := s.neigh.getOrCreate(nkey{1, naddrOf(ip6B)}, 0, true)
	nb.confirm(macB, 0)
	tmpl := udp6Frame(macLan, macA, netip.AddrPortFrom(ip6A, 1000), netip.AddrPortFrom(ip6Far, 53), 64, make([]byte, 18))
	frames := make([][]byte, n)
	for i := range frames {
		frames[i] = make([]byte, 2048)
	}
	return h, &pipeline.Batch{Frames: fs}, frames, tmpl
}

func TestNoAllocs6(t *testing.T) {
	h, b, frames, tmpl := forwardSetup6(t, 64)
	now := int64(1e9)
	run := func() {
		refill(b, frames, tmpl, now)
		h.Process(b)
	}
	run()
	for i := range b.N {
		if b.Pkts[i].Verdict != pipeline.Tx || b.Pkts[i].OutPort != 1 {
			t.Fatalf("packet %d: verdict %v port %d, want tx on 1 (reason %v)", i, b.Pkts[i].Verdict, b.Pkts[i].OutPort, b.Pkts[i].Reason)
		}
	}
	if a := testing.AllocsPerRun(100, run); a != 0 {
		t.Errorf("IPv6 forward path: %v allocations per batch, want 0", a)
	}
	if a := testing.AllocsPerRun(100, func() { h.Tick(b) }); a != 0 {
		t.Errorf("idle Tick: %v allocations, want 0", a)
	}
}

// BenchmarkForward6 is BenchmarkForward for IPv6 (lpm6 lookup, hop limit, NDP neighbour); ns/op is per
// packet.
func BenchmarkForward6(b *testing.B) {
	h, batch, frames, tmpl := forwardSetup6(b, 64)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(frames) {
		refill(batch, frames, tmpl, 1e9)
		h.Process(batch)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpps")
}

// BenchmarkForward6FullTable is BenchmarkForward6 with a full-size synthetic IPv6 table (220 000 routes via
// B, syntheticIPv6Table) and every packet of a batch to a different destination inside a random one of
// them, so that the route lookups miss the cache as they would on a transit router. ns/op is per packet.
func BenchmarkForward6FullTable(b *testing.B) {
	h, batch, frames, _ := forwardSetup6(b, 64)
	_, ps, r := fullTable6()
	routes := make([]Route, len(ps))
	for i, p := range ps {
		routes[i] = Route{Prefix: p, NextHop: ip6B}
	}
	if err := h.s.SyncRoutes(routes, nil); err != nil {
		b.Fatal(err)
	}
	dsts := addressesIn(r, ps, 1<<12)
	tmpls := make([][]byte, len(dsts))
	for i, d := range dsts {
		tmpls[i] = udp6Frame(macLan, macA, netip.AddrPortFrom(ip6A, 1000), netip.AddrPortFrom(netip.AddrFrom16(d), 53), 64, make([]byte, 18))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += len(frames) {
		batch.Reset(1e9)
		for k, fr := range frames {
			t := tmpls[(i+k)&(len(tmpls)-1)]
			copy(fr[256:], t)
			batch.Pkts[k].Reset(fr, uint64(k), 256, 256+len(t))
		}
		batch.N = len(frames)
		h.Process(batch)
		if i == 0 && batch.Pkts[0].Verdict != pipeline.Tx {
			b.Fatalf("verdict %v (%v), want tx", batch.Pkts[0].Verdict, batch.Pkts[0].Reason)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mpps")
}
