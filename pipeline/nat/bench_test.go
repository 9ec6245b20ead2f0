package nat_test

import (
	"encoding/binary"
	"fmt"
	"testing"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/pipeline/nat"
	"github.com/xdpnet/xdpnet/proto"
)

// stageBench runs the two NAT stages without the stack: a batch of frames, PreRouting, the egress a route
// lookup would choose, PostRouting - the stages' own cost per packet, as a poller would pay it.
type stageBench struct {
	n      *nat.NAT
	hooks  pipeline.Hooks
	b      pipeline.Batch
	frames [pipeline.MaxBatch][]byte
	tmpl   [][]byte // frames as received: flows outbound, then their replies inbound
	in     []uint16 // ingress port of each template
	sel    [pipeline.MaxBatch]uint16
}

// newStageBench makes flows masqueraded UDP flows with 64-byte frames and their replies.
func newStageBench(tb testing.TB, flows int) *stageBench {
	tb.Helper()
	n, err := nat.New(nat.Config{Masquerade: []nat.Masquerade{{Interface: "out", Addr: gwOut}}})
	if err != nil {
		tb.Fatal(err)
	}
	n.SetPorts([]pipeline.PortInfo{{Index: portIn, Name: "in"}, {Index: portOut, Name: "out"}})
	s := &stageBench{n: n}
	n.Register(&s.hooks)
	for i := range s.frames {
		s.frames[i] = make([]byte, 2048)
	}
	for i := 0; i < flows; i++ {
		s.tmpl = append(s.tmpl, udpFrame(macIn, macA, ap(hostA, uint16(10000+i)), ap(srvS, 53), "0123456789abcdef01"))
		s.in = append(s.in, portIn)
	}
	// One pass creates the connections; the replies to the ports they got become the other templates.
	for lo := 0; lo < flows; lo += 64 {
		s.run(lo, min(lo+64, flows), 0)
		for i := 0; i < s.b.N; i++ {
			p := &s.b.Pkts[i]
			if p.Verdict != pipeline.Accept {
				tb.Fatalf("packet %d: %v %v", lo+i, p.Verdict, p.Reason)
			}
			ip := proto.IPv4(p.Data()[proto.EthernetHeaderLen:])
			ext := ap(ip.Src(), binary.BigEndian.Uint16(ip.Payload()))
			s.tmpl = append(s.tmpl, udpFrame(macOut, macS, ap(srvS, 53), ext, "0123456789abcdef01"))
			s.in = append(s.in, portOut)
		}
	}
	return s
}

// run puts templates [lo, hi) in the batch and passes it through both hooks.
func (s *stageBench) run(lo, hi int, now int64) {
	s.b.Reset(now)
	sel := s.sel[:0]
	for i := lo; i < hi; i++ {
		p := &s.b.Pkts[s.b.N]
		f := s.frames[s.b.N]
		p.Reset(f, 0, 256, 256+copy(f[256:], s.tmpl[i]))
		p.L3, p.L4 = proto.EthernetHeaderLen, proto.EthernetHeaderLen+proto.IPv4MinHeaderLen
		p.InPort = s.in[i]
		sel = append(sel, uint16(s.b.N))
		s.b.N++
	}
	sel = s.hooks.Run(pipeline.PreRouting, &s.b, sel)
	for _, i := range sel {
		p := &s.b.Pkts[i]
		p.OutPort = portOut // what routing decides: 198.19.0.2 is outside, the inside hosts inside
		if p.InPort == portOut {
			p.OutPort = portIn
		}
	}
	s.hooks.Run(pipeline.PostRouting, &s.b, sel)
}

// TestNoAllocs: the stages allocate nothing per packet, for established flows both ways and for new ones
// (connection creation and port allocation included).
func TestNoAllocs(t *testing.T) {
	s := newStageBench(t, 1000)
	i := 0
	if n := testing.AllocsPerRun(200, func() {
		lo := (i * 64) % len(s.tmpl)
		s.run(lo, min(lo+64, len(s.tmpl)), 1)
		i++
	}); n != 0 {
		t.Fatalf("%v allocations per batch of established flows", n)
	}
	// New flows: every batch is 64 flows the table has not seen.
	fresh := newStageBench(t, 0)
	const runs = 101 // AllocsPerRun's warm-up call and 100 measured
	for j := 0; j < runs*64; j++ {
		fresh.tmpl = append(fresh.tmpl, udpFrame(macIn, macA2, ap(hostB, uint16(20000+j)), ap(srvS, 53), "x"))
		fresh.in = append(fresh.in, portIn)
	}
	next := 0
	if n := testing.AllocsPerRun(runs-1, func() {
		fresh.run(next, next+64, 2)
		next += 64
	}); n != 0 {
		t.Fatalf("%v allocations per batch of new flows", n)
	}
	if st := fresh.n.Stats(); st.Created != runs*64 {
		t.Fatalf("%d connections created in the new-flow runs, want %d", st.Created, runs*64)
	}
}

// BenchmarkStages: established flows, half outbound (source translated at PostRouting), half replies
// (destination translated at PreRouting), up to 64 packets per batch; ns/op is per packet.
func BenchmarkStages(b *testing.B) {
	for _, flows := range []int{1, 1000, 50000} {
		b.Run(fmt.Sprintf("flows=%d", flows), func(b *testing.B) {
			s := newStageBench(b, flows)
			b.ReportAllocs()
			b.ResetTimer()
			// b.N packets, in batches of up to 64 taken in turn from the templates.
			for done, lo := 0, 0; done < b.N; {
				hi := min(lo+64, len(s.tmpl), lo+b.N-done)
				s.run(lo, hi, 1)
				done += hi - lo
				if lo = hi; lo == len(s.tmpl) {
					lo = 0
				}
			}
		})
	}
}
