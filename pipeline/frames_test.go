package pipeline

import (
	"encoding/binary"
	"net/netip"
)

// Test frames are built here with encoding/binary only, independently of proto, so that a bug in proto's
// encoders cannot hide a matching bug in its parsers.

var (
	testMACA = [6]byte{0x02, 0, 0, 0, 0, 0x0a}
	testMACB = [6]byte{0x02, 0, 0, 0, 0, 0x0b}
)

func csum(b []byte, sum uint32) uint16 {
	for len(b) >= 2 {
		sum += uint32(b[0])<<8 | uint32(b[1])
		b = b[2:]
	}
	if len(b) == 1 {
		sum += uint32(b[0]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// ipv4Frame builds Ethernet + IPv4 (+ UDP or TCP header with ports, or an ICMP echo) with valid checksums.
func ipv4Frame(src, dst string, protocol uint8, sport, dport uint16, payload []byte) []byte {
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	var l4 []byte
	switch protocol {
	case 17:
		l4 = make([]byte, 8+len(payload))
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
		copy(l4[8:], payload)
	case 6:
		l4 = make([]byte, 20+len(payload))
		binary.BigEndian.PutUint16(l4[0:], sport)
		binary.BigEndian.PutUint16(l4[2:], dport)
		binary.BigEndian.PutUint32(l4[4:], 1000) // seq
		l4[12] = 5 << 4
		l4[13] = 0x02 // SYN
		binary.BigEndian.PutUint16(l4[14:], 65535)
		copy(l4[20:], payload)
	case 1:
		l4 = make([]byte, 8+len(payload))
		l4[0] = 8 // echo request
		binary.BigEndian.PutUint16(l4[4:], 0x1234)
		binary.BigEndian.PutUint16(l4[6:], 1)
		copy(l4[8:], payload)
		binary.BigEndian.PutUint16(l4[2:], csum(l4, 0))
	default:
		l4 = append([]byte(nil), payload...)
	}
	if protocol == 17 || protocol == 6 {
		var ps uint32
		for i := 0; i < 4; i += 2 {
			ps += uint32(binary.BigEndian.Uint16(s[i:])) + uint32(binary.BigEndian.Uint16(d[i:]))
		}
		ps += uint32(protocol) + uint32(len(l4))
		off := 6
		if protocol == 6 {
			off = 16
		}
		c := csum(l4, ps)
		if c == 0 && protocol == 17 {
			c = 0xffff
		}
		binary.BigEndian.PutUint16(l4[off:], c)
	}
	f := make([]byte, 14+20+len(l4))
	copy(f[0:], testMACB[:])
	copy(f[6:], testMACA[:])
	binary.BigEndian.PutUint16(f[12:], 0x0800)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
	binary.BigEndian.PutUint16(ip[4:], 0x0101)
	ip[6] = 0x40 // DF
	ip[8] = 64
	ip[9] = protocol
	copy(ip[12:], s[:])
	copy(ip[16:], d[:])
	binary.BigEndian.PutUint16(ip[10:], csum(ip, 0))
	copy(f[34:], l4)
	return f
}

// arpFrame is a broadcast ARP request from 198.18.0.1 for 198.18.0.2.
func arpFrame() []byte {
	f := make([]byte, 42)
	for i := range 6 {
		f[i] = 0xff
	}
	copy(f[6:], testMACA[:])
	binary.BigEndian.PutUint16(f[12:], 0x0806)
	a := f[14:]
	binary.BigEndian.PutUint16(a[0:], 1)
	binary.BigEndian.PutUint16(a[2:], 0x0800)
	a[4], a[5] = 6, 4
	binary.BigEndian.PutUint16(a[6:], 1)
	copy(a[8:], testMACA[:])
	copy(a[14:], []byte{198, 18, 0, 1})
	copy(a[24:], []byte{198, 18, 0, 2})
	return f
}

// testFrames is a small set of real frames for seeds and tap tests.
func testFrames() [][]byte {
	return [][]byte{
		ipv4Frame("198.18.0.1", "198.18.1.2", 17, 40000, 53, []byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\x07example\x03com\x00\x00\x01\x00\x01")),
		ipv4Frame("198.18.0.1", "198.18.1.2", 6, 40001, 22, nil),
		ipv4Frame("198.18.0.1", "198.18.1.2", 1, 0, 0, []byte("ping payload 0123456789")),
		arpFrame(),
		ipv4Frame("198.18.5.9", "198.18.1.3", 17, 5000, 5001, make([]byte, 1000)),
	}
}
