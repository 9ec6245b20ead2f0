package pipeline_test

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/pipeline/memlink"
	"github.com/xdpnet/xdpnet/proto"
)

// exampleUDP is an Ethernet + IPv4 + UDP frame built with proto's encoders.
func exampleUDP(src, dst string, dport uint16, payload string) []byte {
	s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
	f := make([]byte, 14+20+8+len(payload))
	n := proto.EthernetFields{Dst: proto.MAC{2, 0, 0, 0, 0, 0xa}, Src: proto.MAC{2, 0, 0, 0, 0, 1}, EtherType: proto.EtherTypeIPv4}.Encode(f)
	n += proto.IPv4Fields{TTL: 64, Protocol: proto.ProtoUDP, Src: s, Dst: d, PayloadLen: 8 + len(payload)}.Encode(f[n:])
	copy(f[n+8:], payload)
	proto.UDPFields{SrcPort: 4000, DstPort: dport, PayloadLen: len(payload)}.EncodeChecksum(f[n:], s, d)
	return f
}

// macRewriter is a complete stateless Handler: every frame leaves by the other port with its destination MAC
// rewritten in place. On a poller nothing is copied: the frame's descriptor moves from one port's RX ring to
// the other's TX ring. It holds no frame and keeps no timer, so it has no Tick.
type macRewriter struct{ dst proto.MAC }

func (m *macRewriter) Process(b *pipeline.Batch) {
	for i := range b.Packets() {
		p := &b.Pkts[i]
		eth, err := proto.ParseEthernet(p.Data())
		if err != proto.OK {
			p.Drop(pipeline.DropTruncated) // every drop has a named, counted reason
			continue
		}
		eth.SetDst(m.dst)
		p.Send(1 - p.InPort)
	}
}

// A Handler run by memlink, the in-memory driver: the same NewHandler goes into poller.Config.NewHandler to
// run on AF_XDP sockets.
func ExampleHandler() {
	link, err := memlink.New(memlink.Config{
		Ports: []memlink.PortConfig{{Name: "in"}, {Name: "out"}},
		NewHandler: func(q *pipeline.QueueInfo) pipeline.Handler {
			return &macRewriter{dst: proto.MAC{2, 0, 0, 0, 0, 0xb}}
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	// One batch of two frames on port "in": a UDP datagram and a 3-byte runt.
	link.InjectBatch(0, exampleUDP("198.18.0.1", "198.18.1.1", 53, "query"), []byte{1, 2, 3})

	for _, f := range link.Sent(1) {
		eth, _ := proto.ParseEthernet(f)
		fmt.Println("out:", len(f), "bytes to", eth.Dst())
	}
	fmt.Println("drops:", link.DropSummary())
	fmt.Println("frames leaked:", link.CheckAccounting(0))
	// Output:
	// out: 47 bytes to 02:00:00:00:00:0b
	// drops: map[truncated:1]
	// frames leaked: <nil>
}

// delayLine holds every frame for a fixed time before sending it on: a Handler that keeps frames (verdict
// Stolen) and so implements Ticker, to send them when they are due, and Drainer, to give them back when the
// driver stops. Its queue is bounded, as everything remote traffic can grow must be.
type delayLine struct {
	delay int64 // ns
	held  []heldPacket
}

type heldPacket struct {
	pkt pipeline.Packet
	due int64
}

var dropDelayFull = pipeline.RegisterDropReason("example_delay_full")

func (d *delayLine) Process(b *pipeline.Batch) {
	for i := range b.Packets() {
		p := &b.Pkts[i]
		if len(d.held) == cap(d.held) {
			p.Drop(dropDelayFull)
			continue
		}
		p.Steal() // the frame is ours until we send it or give it back
		d.held = append(d.held, heldPacket{*p, b.Now + d.delay})
	}
}

// Tick sends the frames that are due by appending them to the driver's empty batch, and returns when the
// next one is due so that an idle driver sleeps until then.
func (d *delayLine) Tick(b *pipeline.Batch) (wakeAt int64) {
	n := 0
	for ; n < len(d.held) && d.held[n].due <= b.Now && b.Room() > 0; n++ {
		p := &d.held[n].pkt
		p.Send(1 - p.InPort)
		b.Append(p)
	}
	d.held = d.held[:copy(d.held, d.held[n:])]
	if len(d.held) > 0 {
		return d.held[0].due
	}
	return 0
}

// Drain drops what is still held when the driver stops, so that no frame leaks.
func (d *delayLine) Drain(b *pipeline.Batch) {
	for i := range d.held {
		p := &d.held[i].pkt
		p.Drop(pipeline.DropShutdown)
		b.Append(p)
	}
	d.held = d.held[:0]
}

// A Handler with a timer: memlink's fake clock moves only with Advance, so the example (like a test) runs
// without sleeping.
func ExampleTicker() {
	d := &delayLine{delay: int64(time.Millisecond), held: make([]heldPacket, 0, 2)}
	link, err := memlink.New(memlink.Config{
		Ports:      []memlink.PortConfig{{Name: "a"}, {Name: "b"}},
		NewHandler: func(*pipeline.QueueInfo) pipeline.Handler { return d },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	f := exampleUDP("198.18.0.1", "198.18.1.1", 9, "x")
	link.InjectBatch(0, f, f, f) // the third finds the queue full
	fmt.Printf("held %d, next tick in %v, sent %d\n", len(d.held), time.Duration(link.WakeAt()-link.Now()), len(link.Sent(1)))

	link.Advance(time.Millisecond)
	fmt.Printf("after 1ms: held %d, next tick %d, sent %d\n", len(d.held), link.WakeAt(), len(link.Sent(1)))

	link.Inject(1, f)
	link.Drain() // what a poller does when it stops
	fmt.Println("drops:", link.DropSummary())
	fmt.Println("frames leaked:", link.CheckAccounting(len(d.held)))
	// Output:
	// held 2, next tick in 1ms, sent 0
	// after 1ms: held 0, next tick 0, sent 2
	// drops: map[example_delay_full:1 shutdown:1]
	// frames leaked: <nil>
}

var dropTelnet = pipeline.RegisterDropReason("example_telnet")

// dstPort reads the UDP/TCP destination port of an untagged IPv4 frame, or -1.
func dstPort(p *pipeline.Packet) int {
	d := p.Data()
	if len(d) < 14+20+4 || binary.BigEndian.Uint16(d[12:]) != 0x0800 {
		return -1
	}
	ihl := int(d[14]&0xf) * 4
	if len(d) < 14+ihl+4 {
		return -1
	}
	return int(binary.BigEndian.Uint16(d[14+ihl+2:]))
}

// hookBridge runs the hooks over each batch, once per hook rather than once per packet, and sends what the stages
// leave undecided out of the other port.
type hookBridge struct {
	hooks *pipeline.Hooks
	sel   [pipeline.MaxBatch]uint16
}

func (br *hookBridge) Process(b *pipeline.Batch) {
	sel := br.sel[:0]
	for i := range b.N {
		sel = append(sel, uint16(i))
	}
	sel = br.hooks.Run(pipeline.PreRouting, b, sel)
	sel = br.hooks.Run(pipeline.Forward, b, sel)
	for _, i := range sel {
		b.Pkts[i].Send(1 - b.Pkts[i].InPort)
	}
}

// Stages at hooks: a counter at PreRouting, and at Forward an ACL and a function stage, run in priority order.
// A stage sees only the packets no earlier stage decided.
func ExampleHooks() {
	var hooks pipeline.Hooks
	seen := 0
	hooks.Register(pipeline.PreRouting, -100, "count", pipeline.PacketFunc(func(*pipeline.Packet) { seen++ }))
	hooks.Register(pipeline.Forward, 10, "no-telnet", pipeline.PacketFunc(func(p *pipeline.Packet) {
		if dstPort(p) == 23 {
			p.Drop(dropTelnet)
		}
	}))
	rules, _ := pipeline.ParseRules(strings.NewReader("drop udp to any port 53\n"))
	acl, _ := pipeline.NewACL(rules)
	hooks.Register(pipeline.Forward, 0, "acl", acl) // priority 0 runs before no-telnet's 10
	fmt.Println("forward:", hooks.Stages(pipeline.Forward))

	link, err := memlink.New(memlink.Config{
		Ports:      []memlink.PortConfig{{Name: "in"}, {Name: "out"}},
		NewHandler: func(*pipeline.QueueInfo) pipeline.Handler { return &hookBridge{hooks: &hooks} },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	link.InjectBatch(0,
		exampleUDP("198.18.0.1", "198.18.1.1", 53, "dns"),
		exampleUDP("198.18.0.1", "198.18.1.1", 23, "telnet"),
		exampleUDP("198.18.0.1", "198.18.1.1", 80, "web"))
	fmt.Println("seen:", seen, "sent:", len(link.Sent(1)), "drops:", link.DropSummary())
	// Output:
	// forward: [acl no-telnet]
	// seen: 3 sent: 1 drops: map[example_telnet:1 filtered:1]
}

// Pull and Push move the packet's start within its frame, as skb_pull and skb_push do: here an 802.1Q tag is
// inserted in front of the EtherType without moving the payload, using the frame's headroom.
func ExamplePacket_Push() {
	frame := make([]byte, 128)
	const headroom = 32
	n := copy(frame[headroom:], exampleUDP("198.18.0.1", "198.18.1.1", 53, "q"))
	var p pipeline.Packet
	p.Reset(frame, 0, headroom, headroom+n)

	var macs [12]byte
	copy(macs[:], p.Data()[:12])
	p.Pull(12) // drop the MAC addresses: data now starts at the EtherType
	hdr, ok := p.Push(12 + 4)
	if !ok {
		fmt.Println("no headroom")
		return
	}
	copy(hdr, macs[:])
	binary.BigEndian.PutUint16(hdr[12:], 0x8100) // TPID
	binary.BigEndian.PutUint16(hdr[14:], 7)      // priority 0, VLAN 7

	l2, _ := proto.ParseL2(p.Data())
	fmt.Println("len", p.Len(), "offset", p.Offset(), "vlan", l2.VLANs[0], l2.EtherType)
	// Output:
	// len 47 offset 28 vlan 7 IPv4
}
