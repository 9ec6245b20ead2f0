package stack

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/pipeline/memlink"
	"github.com/xdpnet/xdpnet/proto"
)

// makePartial turns a frame's complete TCP or UDP checksum into what a Linux sender with TX checksum
// offload leaves (CHECKSUM_PARTIAL): the folded pseudo-header sum, not complemented.
func makePartial(t *testing.T, f []byte) {
	t.Helper()
	ip, _ := proto.ParseIPv4(f[14:])
	off := 16
	if ip.Protocol() == proto.ProtoUDP {
		off = 6
	}
	seg := ip.Payload()
	binary.BigEndian.PutUint16(seg[off:], proto.Fold(proto.PseudoHeaderSum(ip.Src(), ip.Dst(), ip.Protocol(), len(seg))))
	if !proto.IsPartialChecksum(ip.Src(), ip.Dst(), ip.Protocol(), seg) {
		t.Fatal("test frame not partial")
	}
}

func l4Valid(f []byte) bool {
	ip, _ := proto.ParseIPv4(f[14:])
	seg := ip.Payload()
	return proto.Fold(proto.Sum(seg, proto.PseudoHeaderSum(ip.Src(), ip.Dst(), ip.Protocol(), len(seg)))) == 0xffff
}

// A frame from a veth peer with its default TX checksum offload carries a partial checksum; forwarded out
// of AF_XDP it becomes a new skb whose receiver verifies it, so the router must complete it.
func TestForwardCompletesPartialChecksum(t *testing.T) {
	e := newEnvPorts(t, nil, []memlink.PortConfig{{Name: "lan", MAC: macLan, PartialChecksums: true}, {Name: "wan", MAC: macWan}})
	src, dst := netip.AddrPortFrom(ipA, 40000), netip.AddrPortFrom(ipFar, 53)
	udp := udpFrame(macLan, macA, src, dst, 64, []byte("partial checksum, 33 bytes long.."))
	makePartial(t, udp)
	tcp := tcpFrame(t, proto.TCPFields{SrcPort: 40001, DstPort: 80, Seq: 1, Ack: 1, Flags: proto.TCPFlagACK, Window: 512})
	proto.EthernetFields{Dst: macLan, Src: macA, EtherType: proto.EtherTypeIPv4}.Encode(tcp)
	ip := proto.IPv4(tcp[14:])
	ip.SetSrc(ipA)
	ip.SetDst(ipFar)
	makePartial(t, tcp)
	for _, f := range [][]byte{udp, tcp} {
		e.inject(portLan, f)
		out := e.l.Sent(portWan)
		if len(out) != 1 {
			t.Fatalf("%d frames forwarded, want 1", len(out))
		}
		if !l4Valid(out[0]) {
			t.Fatalf("forwarded with a checksum the receiver rejects: % x", out[0])
		}
	}
	if got := e.s.Stats().ChecksumsCompleted; got != 2 {
		t.Errorf("ChecksumsCompleted = %d, want 2", got)
	}
	e.checkHeld()
}

// From a port on a wire (not a veth) the router does not judge transport checksums: a frame is forwarded
// as it came, and a partial-looking checksum for this host is a bad one.
func TestPartialChecksumOnlyFromMemoryPorts(t *testing.T) {
	e := newEnv(t, nil)
	src, dst := netip.AddrPortFrom(ipA, 40000), netip.AddrPortFrom(ipFar, 53)
	f := udpFrame(macLan, macA, src, dst, 64, []byte("not from a veth"))
	makePartial(t, f)
	e.inject(portLan, f)
	out := e.l.Sent(portWan)
	if len(out) != 1 || l4Valid(out[0]) {
		t.Fatalf("forwarded %d frames; a wire port's checksum must be left as it came", len(out))
	}
	if got := e.s.Stats().ChecksumsCompleted; got != 0 {
		t.Errorf("ChecksumsCompleted = %d, want 0", got)
	}

	c, err := e.s.ListenUDP(netip.AddrPortFrom(ipLan, 53))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	local := udpFrame(macLan, macA, src, netip.AddrPortFrom(ipLan, 53), 64, []byte("to us"))
	makePartial(t, local)
	before := e.l.Drops()[pipeline.DropUDPMalformed]
	e.inject(portLan, local)
	if e.l.Drops()[pipeline.DropUDPMalformed] != before+1 {
		t.Error("partial UDP checksum from a wire port was not dropped as udp_malformed")
	}
}

// For this host, a partial checksum from a veth port is accepted (the kernel trusts CHECKSUM_PARTIAL), and
// a really wrong one is still dropped.
func TestLocalUDPAcceptsPartialFromMemoryPort(t *testing.T) {
	e := newEnvPorts(t, nil, []memlink.PortConfig{{Name: "lan", MAC: macLan, PartialChecksums: true}, {Name: "wan", MAC: macWan}})
	c, err := e.s.ListenUDP(netip.AddrPortFrom(ipLan, 53))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	src := netip.AddrPortFrom(ipA, 40000)
	f := udpFrame(macLan, macA, src, netip.AddrPortFrom(ipLan, 53), 64, []byte("query"))
	makePartial(t, f)
	e.inject(portLan, f)
	if got := e.s.Stats().UDPDelivered; got != 1 {
		t.Fatalf("UDPDelivered = %d, want 1", got)
	}
	bad := udpFrame(macLan, macA, src, netip.AddrPortFrom(ipLan, 53), 64, []byte("query"))
	bad[len(bad)-1] ^= 0xff
	before := e.l.Drops()[pipeline.DropUDPMalformed]
	e.inject(portLan, bad)
	if e.l.Drops()[pipeline.DropUDPMalformed] != before+1 {
		t.Error("a wrong checksum from a veth port was accepted")
	}
}
