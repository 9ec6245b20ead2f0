package tcp

import (
	"encoding/binary"
	"encoding/hex"
	"net/netip"
	"testing"

	"github.com/xdpnet/xdpnet/proto"
)

// pseudoChecksumOK verifies a TCP checksum the long way: the RFC 9293 §3.1 pseudo header written out as
// bytes (source, destination, zero, PTCL, TCP length) in front of the segment, summed with proto.Checksum.
func pseudoChecksumOK(src, dst netip.Addr, seg []byte) bool {
	b := make([]byte, 12+len(seg))
	s4, d4 := src.As4(), dst.As4()
	copy(b[0:], s4[:])
	copy(b[4:], d4[:])
	b[9] = 6
	binary.BigEndian.PutUint16(b[10:], uint16(len(seg)))
	copy(b[12:], seg)
	return proto.Checksum(b) == 0
}

// TestSYNBytes checks the SYN the engine emits, byte by byte.
func TestSYNBytes(t *testing.T) {
	var raw []byte
	e := NewEngine(Config{MTU: 1500, Key: [16]byte{9}}, OutputFunc(func(s *Segment) bool {
		raw = make([]byte, s.Len())
		s.Encode(raw)
		return true
	}), nil)
	c, _ := e.Connect(netip.MustParseAddrPort("198.18.0.1:40000"), netip.MustParseAddrPort("198.18.0.2:80"))
	e.Tick(1e12)
	if raw == nil {
		t.Fatal("no SYN")
	}
	tc, perr := proto.ParseTCP(raw)
	if perr != proto.OK {
		t.Fatal(perr)
	}
	if tc.SrcPort() != 40000 || tc.DstPort() != 80 || tc.Flags() != proto.TCPFlagSYN || Seq(tc.Seq()) != c.iss ||
		tc.Ack() != 0 || tc.Window() != 65535 || len(tc.Payload()) != 0 {
		t.Errorf("SYN header: %v %d->%d seq %d win %d", tc.Flags(), tc.SrcPort(), tc.DstPort(), tc.Seq(), tc.Window())
	}
	// Linux's order: MSS, SACK permitted, timestamps, NOP, window scale.
	opts := hex.EncodeToString(tc.Options())
	if opts[:12] != "020405b40402" || opts[12:16] != "080a" || opts[32:] != "01030307" {
		t.Errorf("SYN options %s", opts)
	}
	o, _ := proto.ParseTCPOptions(tc.Options())
	if !o.HasMSS || o.MSS != 1460 || !o.SACKPermitted || !o.HasTimestamps || o.TSecr != 0 || o.WindowScale != 7 {
		t.Errorf("SYN options %+v", o)
	}
	if !pseudoChecksumOK(netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2"), raw) ||
		!tc.ChecksumValid(netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")) {
		t.Error("SYN checksum does not verify")
	}
}

// TestListenerAnswersLinuxSYN feeds the bytes of a SYN as Linux 6.x sends it (options MSS 1460, SACK_PERM,
// TS, NOP, WS 7) and checks the SYN-ACK.
func TestListenerAnswersLinuxSYN(t *testing.T) {
	syn, _ := hex.DecodeString("a2b40050" + "12345678" + "00000000" + "a002" + "faf0" + "0000" + "0000" +
		"020405b4" + "0402080a" + "0001e240" + "00000000" + "01030307")
	src, dst := netip.MustParseAddr("198.18.0.1"), netip.MustParseAddr("198.18.0.2")
	proto.TCP(syn).SetChecksum(proto.TCP(syn).ComputeChecksum(src, dst))
	if !pseudoChecksumOK(src, dst, syn) {
		t.Fatal("test SYN checksum")
	}
	var raw []byte
	e := NewEngine(Config{}, OutputFunc(func(s *Segment) bool {
		raw = make([]byte, s.Len())
		s.Encode(raw)
		return true
	}), nil)
	if _, err := e.Listen(netip.MustParseAddrPort("198.18.0.2:80")); err != nil {
		t.Fatal(err)
	}
	tcp, _ := proto.ParseTCP(syn)
	e.Input(1e12, src, dst, tcp)
	sa, perr := proto.ParseTCP(raw)
	if perr != proto.OK || !pseudoChecksumOK(dst, src, raw) {
		t.Fatalf("SYN-ACK does not parse or verify")
	}
	o, _ := proto.ParseTCPOptions(sa.Options())
	if sa.Flags() != proto.TCPFlagSYN|proto.TCPFlagACK || sa.Ack() != 0x12345679 || sa.SrcPort() != 80 || sa.DstPort() != 0xa2b4 {
		t.Errorf("SYN-ACK %v ack %#x ports %d->%d", sa.Flags(), sa.Ack(), sa.SrcPort(), sa.DstPort())
	}
	if o.MSS != 1460 || !o.SACKPermitted || !o.HasTimestamps || o.TSecr != 123456 || !o.HasWindowScale || o.WindowScale != 7 {
		t.Errorf("SYN-ACK options %+v", o)
	}
	// A bare ACK for a port nobody listens on gets <SEQ=SEG.ACK><CTL=RST> (RFC 9293 §3.10.7.1).
	ack, _ := hex.DecodeString("a2b40051" + "12345679" + "0badcafe" + "5010" + "faf0" + "0000" + "0000")
	proto.TCP(ack).SetChecksum(proto.TCP(ack).ComputeChecksum(src, dst))
	raw = nil
	e.Input(1e12, src, dst, proto.TCP(ack))
	r, _ := proto.ParseTCP(raw)
	if raw == nil || r.Flags() != proto.TCPFlagRST || r.Seq() != 0x0badcafe || !pseudoChecksumOK(dst, src, raw) {
		t.Fatalf("reset for a closed port: %x", raw)
	}
}

// TestSendBufferWrap sends through a send buffer whose size is no multiple of the MSS, so segments are
// gathered from both ends of the ring (Segment.Data[1]); the SHA-256 of the stream proves the bytes.
func TestSendBufferWrap(t *testing.T) {
	w := newWire(t, Config{SendBuffer: 10007, RecvBuffer: 30011}, 30)
	a, b := w.pair()
	transfer(t, w, a, b, 300000, 300000)
	if w.wrapped == 0 {
		t.Fatal("no segment wrapped around the send buffer")
	}
}
