package tcp_test

import (
	"fmt"
	"io"
	"net/netip"

	"github.com/xdpnet/xdpnet/proto"
	"github.com/xdpnet/xdpnet/stack/tcp"
)

// Example connects two engines the way the stack wires one to a poller: Output encodes each segment into
// a frame (here a byte slice; the IP header would go in front), the receiving side verifies the checksum
// and calls Input, and the owner calls Tick on every loop.
func Example() {
	type frame struct {
		to       int
		src, dst netip.Addr
		b        []byte
	}
	var wire []frame
	var eng [2]*tcp.Engine
	for i := range eng {
		from := i
		eng[i] = tcp.NewEngine(tcp.Config{}, tcp.OutputFunc(func(s *tcp.Segment) bool {
			b := make([]byte, s.Len()) // a poller would encode into a UMEM frame after the IP header
			s.Encode(b)
			wire = append(wire, frame{1 - from, s.Src.Addr(), s.Dst.Addr(), b})
			return true // false would mean "no frame now": the engine retries on the next Tick
		}), nil)
	}
	now := int64(1e12)
	loop := func() { // the owner's loop: deliver what arrived, then Tick
		for len(wire) > 0 {
			f := wire[0]
			wire = wire[1:]
			seg, err := proto.ParseTCP(f.b)
			if err != proto.OK || !seg.ChecksumValid(f.src, f.dst) {
				continue // the stack drops and counts these before TCP sees them
			}
			eng[f.to].Input(now, f.src, f.dst, seg)
		}
		eng[0].Tick(now)
		eng[1].Tick(now)
		now += 1e6
	}

	server := netip.MustParseAddrPort("198.18.0.2:80")
	l, _ := eng[1].Listen(server)
	c, _ := eng[0].Connect(netip.MustParseAddrPort("198.18.0.1:0"), server)
	for range 5 {
		loop()
	}
	s, _ := l.AcceptTCP()
	fmt.Println(c.State(), s.State())

	c.Write([]byte("hello, xdpnet"))
	c.CloseWrite()
	for range 5 {
		loop()
	}
	got, _ := io.ReadAll(s)
	fmt.Printf("%s, server now %v\n", got, s.State())
	// Output:
	// ESTABLISHED ESTABLISHED
	// hello, xdpnet, server now CLOSE-WAIT
}
