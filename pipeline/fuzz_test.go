package pipeline_test

import (
	"encoding/binary"
	"io"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/pipeline/memlink"
)

// bridge is a two-port handler in the shape a firewall has: tap at PreRouting, ACL at Forward, then out of the
// other port. It holds (steals) every frame whose source MAC ends in 0x5e until the next Tick, to exercise the
// Stolen path in the accounting.
type bridge struct {
	hooks *pipeline.Hooks
	sel   [pipeline.MaxBatch]uint16
	held  []pipeline.Packet
}

func (br *bridge) Process(b *pipeline.Batch) {
	sel := br.sel[:0]
	for i := range b.N {
		sel = append(sel, uint16(i))
	}
	sel = br.hooks.Run(pipeline.PreRouting, b, sel)
	sel = br.hooks.Run(pipeline.Forward, b, sel)
	for _, i := range sel {
		p := &b.Pkts[i]
		if d := p.Data(); len(d) >= 12 && d[11] == 0x5e {
			p.Steal()
			br.held = append(br.held, *p)
			continue
		}
		p.Send(1 - p.InPort)
	}
}

func (br *bridge) Tick(b *pipeline.Batch) int64 {
	for i := range br.held {
		if b.Room() == 0 {
			br.held = br.held[:copy(br.held, br.held[i:])]
			return b.Now + 1
		}
		br.held[i].Send(1 - br.held[i].InPort)
		b.Append(&br.held[i])
	}
	br.held = br.held[:0]
	return 0
}

func newBridgeLink(tb testing.TB, frames int) (*memlink.Link, *bridge, *pipeline.Tap) {
	rules, err := pipeline.ParseRules(strings.NewReader(`
drop udp to any port 53
accept tcp from 198.18.0.0/24 to 198.18.1.0/24 port 22
drop tcp to any port 1-1023
drop 47
drop udp from 2001:2::/48 to any port 5353
drop icmpv6 type echo-request
`))
	if err != nil {
		tb.Fatal(err)
	}
	acl, err := pipeline.NewACL(rules)
	if err != nil {
		tb.Fatal(err)
	}
	tap, err := pipeline.NewTap(io.Discard, pipeline.TapConfig{Slots: 64, Snaplen: 128})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { tap.Close() })
	hooks := new(pipeline.Hooks)
	hooks.Register(pipeline.PreRouting, 0, "tap", tap)
	hooks.Register(pipeline.Forward, 0, "acl", acl)
	var br *bridge
	l, err := memlink.New(memlink.Config{
		Ports:  []memlink.PortConfig{{Name: "in"}, {Name: "out"}},
		Frames: frames,
		NewHandler: func(q *pipeline.QueueInfo) pipeline.Handler {
			br = &bridge{hooks: hooks}
			return br
		},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return l, br, tap
}

func udpFrame(src, dst string, sport, dport uint16) []byte {
	f := make([]byte, 14+20+8)
	copy(f, []byte{2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa, 8, 0})
	ip := f[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], 28)
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	binary.BigEndian.PutUint16(ip[20:], sport)
	binary.BigEndian.PutUint16(ip[22:], dport)
	binary.BigEndian.PutUint16(ip[24:], 8)
	return f
}

// udp6Frame is Ethernet + IPv6 + a Destination Options header (PadN) + UDP.
func udp6Frame(src, dst string, sport, dport uint16) []byte {
	f := make([]byte, 14+40+8+8)
	copy(f, []byte{2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa, 0x86, 0xdd})
	ip := f[14:]
	ip[0], ip[6], ip[7] = 0x60, 60, 64
	binary.BigEndian.PutUint16(ip[4:], 16)
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	ip[40], ip[41], ip[42], ip[43] = 17, 0, 1, 4 // next UDP, 8 bytes, PadN of 4
	binary.BigEndian.PutUint16(ip[48:], sport)
	binary.BigEndian.PutUint16(ip[50:], dport)
	binary.BigEndian.PutUint16(ip[52:], 8)
	return f
}

// FuzzPipeline runs arbitrary frames through memlink, the hooks, the tap and the ACL: nothing may panic, and
// every frame is accounted for (outstanding frames are exactly the ones the handler holds).
func FuzzPipeline(f *testing.F) {
	f.Add(udpFrame("198.18.0.1", "198.18.1.1", 1000, 53), uint8(1))
	f.Add(udpFrame("198.18.0.1", "198.18.1.1", 1000, 5353), uint8(3))
	tcp := udpFrame("198.18.0.1", "198.18.1.1", 1000, 22)
	tcp[14+9] = 6
	f.Add(tcp, uint8(2))
	held := udpFrame("198.18.0.1", "198.18.1.1", 1, 2)
	held[11] = 0x5e
	f.Add(held, uint8(7))
	f.Add([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 1, 8, 6, 0, 1, 8, 0, 6, 4, 0, 1}, uint8(1))
	f.Add([]byte{}, uint8(0))
	f.Add(udp6Frame("2001:2::1", "2001:2:0:1::1", 1000, 5353), uint8(2))
	f.Add(udp6Frame("2001:2::1", "2001:2:0:1::1", 1000, 53), uint8(1))
	f.Fuzz(func(t *testing.T, frame []byte, copies uint8) {
		if len(frame) > memlink.DefaultFrameSize-memlink.DefaultHeadroom {
			frame = frame[:memlink.DefaultFrameSize-memlink.DefaultHeadroom]
		}
		l, br, _ := newBridgeLink(t, 64)
		n := int(copies%8) + 1
		batch := make([][]byte, n)
		for i := range batch {
			batch[i] = frame
		}
		for port := range 2 {
			if err := l.InjectBatch(port, batch...); err != nil {
				t.Fatal(err)
			}
			if err := l.CheckAccounting(len(br.held)); err != nil {
				t.Fatal(err)
			}
		}
		l.Advance(time.Millisecond)
		if err := l.CheckAccounting(len(br.held)); err != nil {
			t.Fatal(err)
		}
		sent := len(l.Sent(0)) + len(l.Sent(1))
		var dropped uint64
		for _, c := range l.Drops() {
			dropped += c
		}
		if uint64(sent)+dropped+uint64(len(br.held)) != uint64(2*n) {
			t.Fatalf("%d frames in, %d sent + %d dropped + %d held", 2*n, sent, dropped, len(br.held))
		}
	})
}

// FuzzHooksRun checks Run's contract on arbitrary verdict patterns: the result is exactly the packets still
// Accept, in order, and no stage sees a decided packet.
func FuzzHooksRun(f *testing.F) {
	f.Add([]byte{0, 1, 2, 3, 0, 0, 1}, uint8(3))
	f.Add([]byte{}, uint8(0))
	f.Fuzz(func(t *testing.T, plan []byte, nstages uint8) {
		var b pipeline.Batch
		b.N = min(len(plan), pipeline.MaxBatch)
		sel := make([]uint16, b.N)
		for i := range b.N {
			b.Pkts[i].Mark = uint32(plan[i])
			sel[i] = uint16(i)
		}
		var h pipeline.Hooks
		stages := int(nstages % 6)
		for s := range stages {
			h.Register(pipeline.Forward, -s, "s", pipeline.PacketFunc(func(p *pipeline.Packet) {
				if p.Verdict != pipeline.Accept {
					t.Fatal("stage saw a decided packet")
				}
				// Stage s decides packets whose mark (mod 8) names it: 0-2 drop/send/steal at stage 0..
				if int(p.Mark%8)/3 == stages-1-s {
					switch p.Mark % 3 {
					case 0:
						p.Drop(pipeline.DropFiltered)
					case 1:
						p.Send(0)
					case 2:
						p.Steal()
					}
				}
			}))
		}
		out := h.Run(pipeline.Forward, &b, sel)
		j := 0
		for i := range b.N {
			if b.Pkts[i].Verdict == pipeline.Accept {
				if j >= len(out) || out[j] != uint16(i) {
					t.Fatalf("Run returned %v; packet %d is Accept", out, i)
				}
				j++
			}
		}
		if j != len(out) {
			t.Fatalf("Run returned %v, %d Accept", out, j)
		}
	})
}

func TestBridgeThroughMemlink(t *testing.T) {
	l, br, tap := newBridgeLink(t, 32)
	if err := l.InjectBatch(0,
		udpFrame("198.18.0.1", "198.18.1.1", 1000, 53),
		udpFrame("198.18.0.1", "198.18.1.1", 1000, 5353),
		[]byte{1, 2, 3},
		udp6Frame("2001:2::1", "2001:2:0:1::1", 1000, 5353),
		udp6Frame("2001:2::1", "2001:2:0:1::1", 1000, 5354),
	); err != nil {
		t.Fatal(err)
	}
	if got := len(l.Sent(1)); got != 2 {
		t.Errorf("sent %d to port 1, want 2 (the UDP to ports other than 53, and IPv6 UDP to 5354)", got)
	}
	if l.Dropped(pipeline.DropFiltered) != 2 || l.Dropped(pipeline.DropTruncated) != 1 {
		t.Errorf("drops %v", l.DropSummary())
	}
	if err := l.CheckAccounting(len(br.held)); err != nil {
		t.Error(err)
	}
	if tap.Captured()+tap.Dropped() != 5 {
		t.Errorf("tap saw %d", tap.Captured()+tap.Dropped())
	}
}
