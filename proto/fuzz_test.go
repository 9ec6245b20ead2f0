package proto

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

// Every parser is fuzzed: after it returns OK, every accessor and setter of
// the view must run without panicking and the view must respect the lengths
// the parser promised. Seeds are real frames from the other tests.

func seedFrames(f *testing.F) [][]byte {
	return [][]byte{
		unhexFrame(f, linuxPing4Request), unhexFrame(f, linuxPing4Reply),
		unhexFrame(f, linuxPing6Request), unhexFrame(f, linuxPing6Reply),
	}
}

func FuzzParseL2(f *testing.F) {
	for _, s := range seedFrames(f) {
		f.Add(s)
	}
	f.Add([]byte{0: 1, 12: 0x81, 13: 0, 14: 0x20, 15: 0x05, 16: 0x08, 17: 0x00})
	f.Add([]byte{12: 0x88, 13: 0xa8, 14: 0, 15: 1, 16: 0x81, 17: 0, 18: 0, 19: 2, 20: 0x86, 21: 0xdd})
	f.Fuzz(func(t *testing.T, b []byte) {
		eth, e := ParseEthernet(b)
		if e == OK {
			_, _, _, _ = eth.Dst().String(), eth.Src(), eth.EtherType().String(), eth.Payload()
			_ = eth.Fields()
			eth.SetDst(eth.Src())
		} else if len(b) >= EthernetHeaderLen {
			t.Fatalf("ParseEthernet rejected %d bytes: %v", len(b), e)
		}
		l, e := ParseL2(b)
		if e != OK {
			return
		}
		if l.NVLAN < 0 || l.NVLAN > 2 || l.L3Offset != EthernetHeaderLen+VLANTagLen*l.NVLAN || l.L3Offset > len(b) {
			t.Fatalf("ParseL2 = %+v for %d bytes", l, len(b))
		}
		if got := EtherType(binary.BigEndian.Uint16(b[l.L3Offset-2:])); got != l.EtherType || got == EtherTypeVLAN || got == EtherTypeQinQ {
			t.Fatalf("EtherType %v, bytes say %v", l.EtherType, got)
		}
	})
}

func FuzzParseARP(f *testing.F) {
	b := make([]byte, ARPLen)
	ARPFields{Op: ARPRequest, SenderMAC: macA, SenderIP: v4A, TargetIP: v4B}.Encode(b)
	f.Add(b)
	f.Add(append(b, make([]byte, 18)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		a, e := ParseARP(b)
		if e != OK {
			return
		}
		if len(a) != ARPLen {
			t.Fatalf("view is %d bytes", len(a))
		}
		fl := a.Fields()
		_ = a.IsGratuitous()
		out := make([]byte, ARPLen)
		if fl.Encode(out) != ARPLen || !bytes.Equal(out, a) {
			t.Fatalf("re-encode differs:\n % x\n % x", out, []byte(a))
		}
	})
}

func FuzzParseIPv4(f *testing.F) {
	for _, s := range seedFrames(f)[:2] {
		f.Add(s[14:])
	}
	opt := unhexFrame(f, "4600 0020 0001 0000 4011 0000 c612 0001 c613 0102 9404 0000 0000 0000 0000 0000")
	f.Add(opt)
	f.Fuzz(func(t *testing.T, b []byte) {
		ip, e := ParseIPv4(b)
		if e != OK {
			return
		}
		hl := ip.HeaderLen()
		if hl < 20 || hl > len(ip) || int(ip.TotalLength()) != len(ip) || len(ip.Payload()) != len(ip)-hl || ip.Version() != 4 {
			t.Fatalf("view invariants: hl %d total %d len %d", hl, ip.TotalLength(), len(ip))
		}
		_, _, _, _ = ip.Src(), ip.Dst(), ip.Options(), ip.ValidateOptions()
		_, _, _, _, _ = ip.DontFragment(), ip.MoreFragments(), ip.FragmentOffset(), ip.IsFragment(), ip.Flags()
		fl := ip.Fields()
		valid := ip.ChecksumValid()
		if valid != (ip.ComputeChecksum() == ip.Checksum()) && ip.Checksum() != 0 && ip.Checksum() != 0xffff {
			t.Fatalf("ChecksumValid %v but computed %#04x stored %#04x", valid, ip.ComputeChecksum(), ip.Checksum())
		}
		ip.SetChecksum(ip.ComputeChecksum())
		if !ip.ChecksumValid() {
			t.Fatal("ComputeChecksum does not verify")
		}
		ip.DecrementTTL()
		ip.SetSrc(v4B)
		ip.SetTOS(^ip.TOS())
		ip.SetFlagsFragment(true, false, 8)
		if !ip.ChecksumValid() {
			t.Fatal("setters broke the checksum")
		}
		if ip.IHL() == 5 && ip.Flags()&4 == 0 {
			out := make([]byte, 20)
			fl.FragmentOffset = fl.FragmentOffset &^ 7
			if fl.Encode(out) != 20 {
				t.Fatalf("re-encode of %+v failed", fl)
			}
		}
	})
}

func FuzzParseIPv6(f *testing.F) {
	for _, s := range seedFrames(f)[2:] {
		f.Add(s[14:])
	}
	// Hop-by-Hop, Destination Options, Fragment, UDP.
	f.Add(unhexFrame(f, `6000 0000 0024 0040 2001 0db8 0000 0000 0000 0000 0000 000a 2001 0db8 0001 0000 0000 0000 0000 000b
		3c00 0502 0000 0100 2c00 1e04 0102 0304 1100 0001 0000 cafe 0001 0002 000c 0000 6162 6364`))
	f.Fuzz(func(t *testing.T, b []byte) {
		ip, e := ParseIPv6(b)
		if e != OK {
			return
		}
		if len(ip) != IPv6HeaderLen+int(ip.PayloadLength()) {
			t.Fatalf("view %d bytes, payload length %d", len(ip), ip.PayloadLength())
		}
		_, _, _, _ = ip.Fields(), ip.Src16(), ip.Dst16(), ip.Payload()
		ul, e := ip.UpperLayer()
		if e != OK {
			return
		}
		if ul.Offset < IPv6HeaderLen || ul.Offset > len(ip) || (ul.HasFragment && ul.FragmentHeaderOffset+8 > len(ip)) {
			t.Fatalf("UpperLayer %+v outside %d bytes", ul, len(ip))
		}
		switch ul.Protocol {
		case ProtoIPv6HopByHop, ProtoIPv6Routing, ProtoIPv6DestOpts, ProtoIPv6Fragment:
			if ul.FragmentOffset == 0 {
				t.Fatalf("walk stopped at extension header %d: %+v", ul.Protocol, ul)
			}
		}
		ip.DecrementHopLimit()
		ip.SetFlowLabel(0xfffff)
		ip.SetTrafficClass(0xff)
		if ip.Version() != 6 || ip.FlowLabel() != 0xfffff || ip.TrafficClass() != 0xff {
			t.Fatal("setters clobbered neighbouring bits")
		}
	})
}

func FuzzParseICMPv4(f *testing.F) {
	for _, s := range seedFrames(f)[:2] {
		f.Add(s[34:])
	}
	f.Add([]byte{3, 4, 0, 0, 0, 0, 5, 0x78})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, e := ParseICMPv4(b)
		if e != OK {
			return
		}
		_, _, _, _, _ = m.ID(), m.Seq(), m.NextHopMTU(), m.Pointer(), m.RestOfHeader()
		_, _ = m.IsError(), m.Payload()
		m.SetChecksum(m.ComputeChecksum())
		m.SetType(m.Type() ^ 8)
		m.SetCode(m.Code() + 1)
		if !m.ChecksumValid() {
			t.Fatal("SetType/SetCode broke the checksum")
		}
		out := make([]byte, len(m))
		fl := ICMPv4Fields{Type: m.Type(), Code: m.Code(), ID: m.ID(), Seq: m.Seq(), MTU: m.NextHopMTU(), Pointer: m.Pointer()}
		if fl.Encode(out, m.Payload()) != len(m) || !ICMPv4(out).ChecksumValid() {
			t.Fatal("Encode of parsed fields failed")
		}
	})
}

func FuzzParseICMPv6(f *testing.F) {
	for _, s := range seedFrames(f)[2:] {
		f.Add(s[54:])
	}
	b := make([]byte, 32)
	NDPNeighborFields{Type: ICMPv6NeighborAdvertisement, Flags: NAFlagSolicited, Target: v6A, LinkAddr: macA, HasLinkAddr: true}.Encode(b, v6A, v6B)
	f.Add(b)
	f.Add(append([]byte{134, 0, 0, 0, 64, 0x80, 7, 8, 0, 0, 0, 1, 0, 0, 0, 2, 5, 1, 0, 0, 0, 0, 5, 0xdc, 3, 4, 64, 0xc0},
		make([]byte, 28)...))
	f.Fuzz(func(t *testing.T, b []byte) {
		m, e := ParseICMPv6(b)
		if e != OK {
			return
		}
		_, _, _, _, _ = m.ID(), m.Seq(), m.MTU(), m.Pointer(), m.NAFlags()
		_, _ = m.TargetAddress(), m.NDPOptionBytes()
		_, _ = m.RouterAdvertisement()
		o, e := m.NDPOptions()
		if e == OK && (o.NPrefix > NDPMaxPrefixes || o.NPrefix < 0) {
			t.Fatalf("NPrefix %d", o.NPrefix)
		}
		m.SetChecksum(m.ComputeChecksum(v6A, v6B))
		m.SetType(m.Type() ^ 1)
		if !m.ChecksumValid(v6A, v6B) {
			t.Fatal("SetType broke the checksum")
		}
	})
}

func FuzzParseUDP(f *testing.F) {
	b := make([]byte, 20)
	UDPFields{SrcPort: 53, DstPort: 4000, PayloadLen: 12}.EncodeChecksum(b, v4A, v4B)
	f.Add(b, true)
	f.Add([]byte{0, 1, 0, 2, 0, 8, 0, 0, 0xff}, false)
	f.Fuzz(func(t *testing.T, b []byte, v4 bool) {
		u, e := ParseUDP(b)
		if e != OK {
			return
		}
		if int(u.Length()) != len(u) || len(u.Payload()) != len(u)-8 {
			t.Fatalf("Length %d, view %d", u.Length(), len(u))
		}
		src, dst := v6A, v6B
		if v4 {
			src, dst = v4A, v4B
		}
		u.SetChecksum(u.ComputeChecksum(src, dst))
		if u.Checksum() == 0 || !u.ChecksumValid(src, dst) {
			t.Fatalf("computed checksum %#04x does not verify", u.Checksum())
		}
		u.SetSrcPort(^u.SrcPort())
		u.SetDstPort(u.DstPort() + 1)
		if !u.ChecksumValid(src, dst) {
			t.Fatal("port setters broke the checksum")
		}
	})
}

func FuzzParseTCP(f *testing.F) {
	b := make([]byte, 64)
	n := TCPFields{SrcPort: 1, DstPort: 2, Flags: TCPFlagSYN, Options: TCPOptions{MSS: 1460, HasMSS: true, SACKPermitted: true,
		HasTimestamps: true, TSval: 1, HasWindowScale: true, WindowScale: 7}}.EncodeChecksum(b, 4, v4A, v4B)
	f.Add(b[:n])
	f.Add(make([]byte, 20))
	f.Fuzz(func(t *testing.T, b []byte) {
		tc, e := ParseTCP(b)
		if e != OK {
			return
		}
		if tc.HeaderLen() < 20 || tc.HeaderLen() > len(tc) || len(tc.Options()) != tc.HeaderLen()-20 {
			t.Fatalf("header len %d of %d", tc.HeaderLen(), len(tc))
		}
		_, _, _, _, _ = tc.Seq(), tc.Ack(), tc.Flags().String(), tc.Window(), tc.Urgent()
		_, _ = tc.Payload(), tc.DataOffset()
		_, _ = ParseTCPOptions(tc.Options())
		tc.SetChecksum(tc.ComputeChecksum(v6A, v6B))
		tc.SetSeq(tc.Seq() + 1)
		tc.SetAck(^tc.Ack())
		tc.SetFlags(tc.Flags() ^ TCPFlagACK)
		tc.SetWindow(7)
		tc.SetSrcPort(8)
		if !tc.ChecksumValid(v6A, v6B) || tc.HeaderLen() != len(b)-len(tc.Payload()) {
			t.Fatal("setters broke the checksum or the data offset")
		}
	})
}

func FuzzParseTCPOptions(f *testing.F) {
	f.Add([]byte{2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7})
	f.Add([]byte{1, 1, 5, 18, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 4})
	f.Add([]byte{254, 4, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		o, e := ParseTCPOptions(b)
		if e != OK {
			return
		}
		if o.NSACK < 0 || o.NSACK > TCPMaxSACKBlocks {
			t.Fatalf("NSACK %d", o.NSACK)
		}
		out := make([]byte, 40)
		n := o.Encode(out)
		if n != o.EncodedLen() || n%4 != 0 || n > 40 {
			t.Fatalf("Encode wrote %d, EncodedLen %d", n, o.EncodedLen())
		}
		o2, e := ParseTCPOptions(out[:n])
		_, blocks := o.layout()
		o.NSACK = blocks
		for i := blocks; i < TCPMaxSACKBlocks; i++ {
			o.SACK[i] = TCPSACKBlock{}
		}
		if e != OK || o2 != o {
			t.Fatalf("round trip:\n %+v\n %+v (%v)", o, o2, e)
		}
	})
}

// FuzzPseudoHeader cross-checks PseudoHeaderSum with a byte-built pseudo header.
func FuzzPseudoHeader(f *testing.F) {
	f.Add([]byte{198, 18, 0, 1, 198, 19, 0, 1}, uint8(17), uint16(20))
	f.Add(append(v6A.AsSlice(), v6B.AsSlice()...), uint8(58), uint16(0xffff))
	f.Fuzz(func(t *testing.T, a []byte, proto uint8, n uint16) {
		var src, dst netip.Addr
		switch {
		case len(a) >= 32:
			src, dst = netip.AddrFrom16([16]byte(a[:16])), netip.AddrFrom16([16]byte(a[16:32]))
		case len(a) >= 8:
			src, dst = netip.AddrFrom4([4]byte(a[:4])), netip.AddrFrom4([4]byte(a[4:8]))
		default:
			return
		}
		got, want := Fold(PseudoHeaderSum(src, dst, proto, int(n))), uint16(pseudoRef(src, dst, proto, int(n)))
		if got != want && !(got == 0xffff && want == 0) && !(got == 0 && want == 0xffff) {
			t.Fatalf("%s %s %d %d: %#04x, reference %#04x", src, dst, proto, n, got, want)
		}
	})
}

// FuzzL2ParseInPlace checks that L2.Parse into a dirty L2 equals ParseL2.
func FuzzL2ParseInPlace(f *testing.F) {
	f.Add([]byte{12: 0x88, 13: 0xa8, 14: 0, 15: 1, 16: 0x81, 17: 0, 18: 0, 19: 2, 20: 0x86, 21: 0xdd}, []byte{12: 0x08})
	f.Fuzz(func(t *testing.T, a, b []byte) {
		var l L2
		l.Parse(a) // leave state behind
		eb := l.Parse(b)
		want, ew := ParseL2(b)
		if eb != ew || l != want {
			t.Fatalf("in place %+v %v, by value %+v %v", l, eb, want, ew)
		}
	})
}
