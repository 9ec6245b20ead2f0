package stack

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/pipeline/memlink"
	"github.com/xdpnet/xdpnet/proto"
)

// FuzzProcess feeds arbitrary frames to the whole handler: nothing panics, every frame is accounted for
// (sent, dropped, or held by the handler), and nothing but ARP and well-formed IPv4 leaves.
func FuzzProcess(f *testing.F) {
	f.Add(udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipFar, 2), 64, []byte("x")), uint8(0))
	f.Add(echoFrame(macLan, macA, ipA, ipLan, 64, 1, 1, []byte("ping")), uint8(0))
	f.Add(arpFrame(proto.ARPRequest, macB, proto.BroadcastMAC, ipB, proto.MAC{}, ipWan), uint8(1))
	f.Add(udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipDead, 2), 64, make([]byte, 1600)), uint8(0))
	f.Add(optionsFrame([]byte{0x88, 4, 1, 2}), uint8(0))
	s, err := New(testConfig())
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, frame []byte, port uint8) {
		l, err := memlink.New(memlink.Config{
			Ports:      []memlink.PortConfig{{Name: "lan", MAC: macLan}, {Name: "wan", MAC: macWan, MTU: 576}},
			Frames:     64,
			NewHandler: s.NewHandler,
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(frame) > memlink.DefaultFrameSize-memlink.DefaultHeadroom {
			frame = frame[:memlink.DefaultFrameSize-memlink.DefaultHeadroom]
		}
		if err := l.Inject(int(port%2), frame); err != nil {
			t.Fatal(err)
		}
		l.Advance(10 * time.Second) // fail any pending resolution
		l.Advance(10 * time.Second)
		for p := range 2 {
			for _, out := range l.Sent(p) {
				eth, perr := proto.ParseEthernet(out)
				if perr != proto.OK {
					t.Fatalf("sent a runt")
				}
				switch eth.EtherType() {
				case proto.EtherTypeARP:
				case proto.EtherTypeIPv4:
					ip, perr := proto.ParseIPv4(eth.Payload())
					if perr != proto.OK || !ip.ChecksumValid() || ip.TTL() == 0 {
						t.Fatalf("sent a bad IPv4 packet")
					}
				default:
					t.Fatalf("sent ethertype %v", eth.EtherType())
				}
			}
		}
		h := l.Handler().(*handler)
		defer s.removeHandler(h)
		if err := l.CheckAccounting(h.nheld); err != nil {
			t.Fatal(err)
		}
		if l.Dropped(pipeline.DropUnhandled) != 0 {
			t.Fatalf("a packet was left undecided: %v", l.DropSummary())
		}
	})
}
