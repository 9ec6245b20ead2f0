package nat_test

import (
	"testing"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
)

// FuzzStages feeds arbitrary frames, arriving on either port, through both stages (with connections
// already in the table, so that lookups hit): nothing may panic, and a packet the stages leave undecided
// or translate must still be inside its frame.
func FuzzStages(f *testing.F) {
	s := newStageBench(f, 4)
	for _, tm := range s.tmpl {
		f.Add(tm, false)
		f.Add(tm, true)
	}
	// An error quoting a packet as it left (its reply is template 4): the translated path.
	reply := proto.IPv4(s.tmpl[4][proto.EthernetHeaderLen:])
	left := udpFrame(macOut, macOut, ap(gwOut, proto.UDP(reply.Payload()).DstPort()), ap(srvS, 53), "q")
	f.Add(icmpErrFrame(macOut, macR, rtrR, gwOut, proto.ICMPv4TimeExceeded, 0, left, false), true)
	f.Add(icmpErrFrame(macOut, macR, rtrR, gwOut, proto.ICMPv4DestUnreachable, 3, left, true), true)
	f.Add(tcpFrame(macIn, macA, ap(hostA, 1), ap(srvS, 2), proto.TCPFlagSYN, 1, 0), false)
	f.Add(echoFrame(macIn, macA, hostA, srvS, proto.ICMPv4EchoRequest, 1, 1, 64), false)
	f.Fuzz(func(t *testing.T, frame []byte, outside bool) {
		if len(frame) > 1500 {
			return
		}
		in := uint16(portIn)
		if outside {
			in = portOut
		}
		s.tmpl = append(s.tmpl[:0], frame)
		s.in = append(s.in[:0], in)
		s.run(0, 1, 1)
		p := &s.b.Pkts[0]
		if p.Verdict == pipeline.Drop && p.Reason == pipeline.DropNone {
			t.Fatal("dropped without a reason")
		}
		if p.Len() != len(frame) {
			t.Fatalf("length changed from %d to %d", len(frame), p.Len())
		}
	})
}
