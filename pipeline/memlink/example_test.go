package memlink_test

import (
	"fmt"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/pipeline/memlink"
	"github.com/xdpnet/xdpnet/proto"
)

// reflector sends every frame back out of the port it came in on, with the MAC addresses swapped in place.
type reflector struct{}

func (reflector) Process(b *pipeline.Batch) {
	for i := range b.Packets() {
		p := &b.Pkts[i]
		eth, err := proto.ParseEthernet(p.Data())
		if err != proto.OK {
			p.Drop(pipeline.DropTruncated)
			continue
		}
		src, dst := eth.Src(), eth.Dst()
		eth.SetSrc(dst)
		eth.SetDst(src)
		p.Send(p.InPort)
	}
}

// Testing a handler as a poller would run it: frames go in as byte slices, one batch per InjectBatch, and
// what the handler sends is collected per port. A port's TxCapacity stands in for a full TX ring; the frame
// accounting catches a handler that loses or double-frees a frame.
func Example() {
	link, err := memlink.New(memlink.Config{
		Ports:      []memlink.PortConfig{{Name: "eth0", MAC: proto.MAC{2, 0, 0, 0, 0, 1}, TxCapacity: 1}},
		NewHandler: func(*pipeline.QueueInfo) pipeline.Handler { return reflector{} },
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	frame := make([]byte, 60)
	proto.EthernetFields{Dst: proto.MAC{2, 0, 0, 0, 0, 1}, Src: proto.MAC{2, 0, 0, 0, 0, 9}, EtherType: proto.EtherTypeIPv4}.Encode(frame)
	if err := link.InjectBatch(0, frame, frame); err != nil {
		fmt.Println(err)
		return
	}
	for _, f := range link.Sent(0) {
		eth, _ := proto.ParseEthernet(f)
		fmt.Println("sent to", eth.Dst(), "from", eth.Src())
	}
	fmt.Println("tx:", link.TxCount(0), "drops:", link.DropSummary())
	fmt.Println("outstanding:", link.Outstanding(), "accounting:", link.CheckAccounting(0))
	// Output:
	// sent to 02:00:00:00:00:09 from 02:00:00:00:00:01
	// tx: 1 drops: map[tx_ring_full:1]
	// outstanding: 0 accounting: <nil>
}
