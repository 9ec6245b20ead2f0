package nat_test

import (
	"fmt"
	"net/netip"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/pipeline/memlink"
	"github.com/xdpnet/xdpnet/pipeline/nat"
	"github.com/xdpnet/xdpnet/proto"
)

// twoPortRouter stands in for package stack in this example: it runs the hooks the way the stack does
// (PreRouting, its routing decision - here: out of the other port -, PostRouting) and sends what is left.
type twoPortRouter struct {
	hooks *pipeline.Hooks
	sel   [pipeline.MaxBatch]uint16
}

func (r *twoPortRouter) Process(b *pipeline.Batch) {
	sel := r.sel[:0]
	for i := range b.Packets() {
		b.Pkts[i].L3 = proto.EthernetHeaderLen // the stack's ip_rcv sets this after validating the header
		sel = append(sel, uint16(i))
	}
	sel = r.hooks.Run(pipeline.PreRouting, b, sel)
	for _, i := range sel {
		b.Pkts[i].OutPort = 1 - b.Pkts[i].InPort
	}
	for _, i := range r.hooks.Run(pipeline.PostRouting, b, sel) {
		b.Pkts[i].Send(b.Pkts[i].OutPort)
	}
}

func (r *twoPortRouter) Tick(*pipeline.Batch) int64 { return 0 }

func udpDatagram(src, dst netip.AddrPort, data string) []byte {
	b := make([]byte, proto.EthernetHeaderLen+proto.IPv4MinHeaderLen+proto.UDPHeaderLen+len(data))
	proto.EthernetFields{EtherType: proto.EtherTypeIPv4}.Encode(b)
	proto.IPv4Fields{TTL: 64, Protocol: proto.ProtoUDP, Src: src.Addr(), Dst: dst.Addr(),
		PayloadLen: proto.UDPHeaderLen + len(data)}.Encode(b[proto.EthernetHeaderLen:])
	u := b[proto.EthernetHeaderLen+proto.IPv4MinHeaderLen:]
	copy(u[proto.UDPHeaderLen:], data)
	proto.UDPFields{SrcPort: src.Port(), DstPort: dst.Port(), PayloadLen: len(data)}.EncodeChecksum(u, src.Addr(), dst.Addr())
	return b
}

func show(frame []byte) string {
	ip := proto.IPv4(frame[proto.EthernetHeaderLen:])
	u := proto.UDP(ip.Payload())
	return fmt.Sprintf("%v:%d -> %v:%d (checksums ok: %v)", ip.Src(), u.SrcPort(), ip.Dst(), u.DstPort(),
		ip.ChecksumValid() && u.ChecksumValid(ip.Src(), ip.Dst()))
}

// Example masquerades a DNS query from an inside host behind the outside address, and translates the
// answer back, over an in-memory link with ports "inside" (0) and "outside" (1).
func Example() {
	n, err := nat.New(nat.Config{
		Masquerade: []nat.Masquerade{{Interface: "outside", Addr: netip.MustParseAddr("198.19.0.1")}},
	})
	if err != nil {
		panic(err)
	}
	hooks := new(pipeline.Hooks)
	n.Register(hooks)
	link, err := memlink.New(memlink.Config{
		Ports: []memlink.PortConfig{{Name: "inside"}, {Name: "outside"}},
		// n.NewHandler tells the NAT the ports (names, partial checksums) as each queue starts.
		NewHandler: n.NewHandler(func(*pipeline.QueueInfo) pipeline.Handler { return &twoPortRouter{hooks: hooks} }),
	})
	if err != nil {
		panic(err)
	}
	query := udpDatagram(netip.MustParseAddrPort("198.18.0.2:5000"), netip.MustParseAddrPort("198.19.0.53:53"), "query")
	fmt.Println("inside sends:  ", show(query))
	link.Inject(0, query)
	link.Poll()
	out := link.Sent(1)[0]
	fmt.Println("outside gets:  ", show(out))

	answer := udpDatagram(netip.MustParseAddrPort("198.19.0.53:53"), netip.MustParseAddrPort("198.19.0.1:5000"), "answer")
	fmt.Println("outside sends: ", show(answer))
	link.Inject(1, answer)
	link.Poll()
	fmt.Println("inside gets:   ", show(link.Sent(0)[0]))
	fmt.Println("connections:   ", n.Stats().Conntrack.Entries)
	// Output:
	// inside sends:   198.18.0.2:5000 -> 198.19.0.53:53 (checksums ok: true)
	// outside gets:   198.19.0.1:5000 -> 198.19.0.53:53 (checksums ok: true)
	// outside sends:  198.19.0.53:53 -> 198.19.0.1:5000 (checksums ok: true)
	// inside gets:    198.19.0.53:53 -> 198.18.0.2:5000 (checksums ok: true)
	// connections:    1
}
