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

// FuzzProcess6 is FuzzProcess on the dual-stack configuration with IPv6 seeds: nothing panics, every frame
// is accounted for, and every IPv6 packet that leaves parses, carries a valid ICMPv6 or UDP checksum
// where it has one, and has hop limit left.
func FuzzProcess6(f *testing.F) {
	src, far := netip.AddrPortFrom(ip6A, 1), netip.AddrPortFrom(ip6Far, 2)
	f.Add(udp6Frame(macLan, macA, src, far, 64, []byte("x")), uint8(0))
	f.Add(udp6Frame(macLan, macA, src, far, 1, []byte("x")), uint8(0))
	f.Add(echo6Frame(macLan, macA, ip6A, ip6Lan, 64, []byte("ping")), uint8(0))
	f.Add(nsFrame(macB, ip6B, ip6Wan, true), uint8(1))
	f.Add(naFrame(macB, ip6B, ip6Wan, ip6B, proto.NAFlagSolicited, macB), uint8(1))
	f.Add(nsFrame(macB, netip.IPv6Unspecified(), ip6Wan, false), uint8(1))
	f.Add(ip6Frame(macLan, macA, ip6A, ip6Far, proto.ProtoIPv6HopByHop, 64, cat(ext(proto.ProtoUDP, 0x9e, 2, 0, 0), udpPayload(src, far, nil))), uint8(0))
	f.Add(ip6Frame(macLan, macA, ip6A, ip6Lan, proto.ProtoIPv6Fragment, 64, cat(frag(proto.ProtoICMPv6, 0, false),
		icmp6Msg(proto.ICMPv6Fields{Type: proto.ICMPv6EchoRequest}, ip6A, ip6Lan, nil))), uint8(0))
	f.Add(ip6Frame(macLan, macA, ip6A, ip6Far, proto.ProtoIPv6Routing, 64, cat(ext(proto.ProtoUDP, 0, 1, 0, 0, 0, 0), udpPayload(src, far, nil))), uint8(0))
	f.Add(udp6Frame(macLan, macA, src, netip.AddrPortFrom(ip6Dead, 2), 64, make([]byte, 1400)), uint8(0))
	cfg := testConfig()
	dualRoutes(&cfg)
	s, err := New(cfg)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, frame []byte, port uint8) {
		l, err := memlink.New(memlink.Config{
			Ports:      []memlink.PortConfig{{Name: "lan", MAC: macLan}, {Name: "wan", MAC: macWan, MTU: 1280}},
			Frames:     64,
			NewHandler: s.NewHandler,
		})
		if err != nil {
			t.Fatal(err)
		}
		h := l.Handler().(*handler)
		defer s.removeHandler(h)
		l.Advance(2 * time.Second) // DAD done
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
				case proto.EtherTypeIPv6:
					ip, perr := proto.ParseIPv6(eth.Payload())
					if perr != proto.OK || ip.HopLimit() == 0 || len(ip) > 1500 {
						t.Fatalf("sent a bad IPv6 packet")
					}
					if ip.NextHeader() == proto.ProtoICMPv6 {
						if m, err := proto.ParseICMPv6(ip.Payload()); err != proto.OK || !m.ChecksumValid(ip.Src(), ip.Dst()) {
							t.Fatalf("sent a bad ICMPv6 message")
						}
					}
				default:
					t.Fatalf("sent ethertype %v", eth.EtherType())
				}
			}
		}
		if err := l.CheckAccounting(h.nheld); err != nil {
			t.Fatal(err)
		}
		if l.Dropped(pipeline.DropUnhandled) != 0 {
			t.Fatalf("a packet was left undecided: %v", l.DropSummary())
		}
	})
}
