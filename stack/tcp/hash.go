package tcp

import (
	"encoding/binary"
	"math/bits"

	"github.com/xdpnet/xdpnet/proto"
)

// sipHash24 is SipHash-2-4 (Aumasson and Bernstein, 2012), the keyed PRF RFC 6528 §3 suggests for F():
// "F() is a pseudorandom function (PRF) of the connection-id and some secret data". It is written out here
// (about 40 lines) so that the package needs nothing outside the standard library, and it takes a fixed
// array so that hashing a 4-tuple does not allocate.
func sipHash24(k0, k1 uint64, m []byte) uint64 {
	v0 := k0 ^ 0x736f6d6570736575
	v1 := k1 ^ 0x646f72616e646f6d
	v2 := k0 ^ 0x6c7967656e657261
	v3 := k1 ^ 0x7465646279746573
	round := func() {
		v0 += v1
		v1 = bits.RotateLeft64(v1, 13)
		v1 ^= v0
		v0 = bits.RotateLeft64(v0, 32)
		v2 += v3
		v3 = bits.RotateLeft64(v3, 16)
		v3 ^= v2
		v0 += v3
		v3 = bits.RotateLeft64(v3, 21)
		v3 ^= v0
		v2 += v1
		v1 = bits.RotateLeft64(v1, 17)
		v1 ^= v2
		v2 = bits.RotateLeft64(v2, 32)
	}
	n := len(m)
	for len(m) >= 8 {
		w := binary.LittleEndian.Uint64(m)
		v3 ^= w
		round()
		round()
		v0 ^= w
		m = m[8:]
	}
	var last [8]byte
	copy(last[:], m)
	last[7] = byte(n)
	w := binary.LittleEndian.Uint64(last[:])
	v3 ^= w
	round()
	round()
	v0 ^= w
	v2 ^= 0xff
	round()
	round()
	round()
	round()
	return v0 ^ v1 ^ v2 ^ v3
}

// tupleHash hashes the connection id (local and remote address and port) with extra words (a clock, a
// client ISN, an MSS index) under the engine's secret key.
func (e *Engine) tupleHash(id connID, x0, x1, x2 uint32) uint64 {
	var b [48]byte
	la, ra := id.local.Addr().As16(), id.remote.Addr().As16()
	copy(b[0:], la[:])
	copy(b[16:], ra[:])
	binary.LittleEndian.PutUint16(b[32:], id.local.Port())
	binary.LittleEndian.PutUint16(b[34:], id.remote.Port())
	binary.LittleEndian.PutUint32(b[36:], x0)
	binary.LittleEndian.PutUint32(b[40:], x1)
	binary.LittleEndian.PutUint32(b[44:], x2)
	return sipHash24(e.k0, e.k1, b[:])
}

// isn returns the initial sequence number of a connection, RFC 6528 §3:
//
//	ISN = M + F(localip, localport, remoteip, remoteport, secretkey)
//
// "where M is the 4 microsecond timer". F is SipHash-2-4 keyed with Config.Key, so that ISNs of different
// connections are unrelated and an off-path attacker cannot predict them, while those of one 4-tuple keep
// increasing with time (which protects against old duplicates, RFC 9293 §3.4.1).
func (e *Engine) isn(id connID, now int64) Seq {
	return Seq(uint32(e.tupleHash(id, 0, 0, 0)) + uint32(now/4000))
}

// SYN cookies (RFC 4987 §3.6). When the SYN queue is full the listener keeps no state: it encodes what it
// needs in the ISN of its SYN-ACK and rebuilds the connection from the ACK that echoes it (ack-1):
//
//	bits 31..27  t mod 32, t a 64-second counter (the cookie is valid for two periods)
//	bits 26..24  the index of the client's MSS in cookieMSS (rounded down)
//	bits 23..0   SipHash(key, 4-tuple, t, client ISN, MSS index), truncated
//
// The hash covers the whole counter and the MSS index, as Linux's cookie_v4_init_sequence covers its count
// and MSS index: hashing only the 5 bits of t that the cookie carries made a cookie valid again every 32
// periods (34 minutes), and leaving the index out let an attacker pick any MSS for a valid cookie.
// The options of the client's SYN that the ISN has no room for travel in our timestamp, as Linux's
// cookie_init_timestamp does (RFC 4987 §3.6: "the timestamp option could be used to store ... window
// scaling and SACK"): when the SYN carries timestamps, the TSval of the SYN-ACK has the client's window
// scale (15: none) in bits 0-3 and SACK-permitted in bit 4, and the client echoes it in the TSecr of its
// ACK. Bit 5 is ECN in Linux; this engine does not do ECN and leaves it 0. The options are not covered by
// the hash - a client can only claim options for the connection it completes itself. Without
// timestamps, window scaling and SACK are off on a cookie connection, as in Linux.
var cookieMSS = [8]uint16{216, 536, 1024, 1220, 1360, 1440, 1452, 1460}

const cookiePeriod = 64e9 // ns

// cookieValid is how long after a listener last answered a SYN with a cookie it accepts cookies: the
// two periods a cookie lives (Linux's tcp_synq_no_recent_overflow, TCP_SYNCOOKIE_VALID).
const cookieValid = 2 * cookiePeriod

func (e *Engine) cookie(id connID, clientISN Seq, mss uint16, now int64) Seq {
	t := uint32(now / cookiePeriod)
	idx := uint32(0)
	for i, m := range cookieMSS {
		if m <= mss {
			idx = uint32(i)
		}
	}
	h := uint32(e.tupleHash(id, t, uint32(clientISN), idx)) & 0xffffff
	return Seq(t&31<<27 | idx<<24 | h)
}

// checkCookie validates the cookie in an ACK (SEG.ACK - 1) and returns the MSS it encodes.
func (e *Engine) checkCookie(id connID, clientISN, c Seq, now int64) (uint16, bool) {
	cur := uint32(now / cookiePeriod)
	age := (cur - uint32(c)>>27) & 31
	if age > 1 {
		return 0, false
	}
	idx := uint32(c) >> 24 & 7
	if uint32(e.tupleHash(id, cur-age, uint32(clientISN), idx))&0xffffff != uint32(c)&0xffffff {
		return 0, false
	}
	return cookieMSS[idx], true
}

// Bits of a SYN cookie's TSval (cookieTSval).
const (
	cookieNoWS    = 0xf  // bits 0-3: the client's window scale, this value when it sent none
	cookieSACK    = 0x10 // bit 4: SACK permitted
	cookieOptMask = 0x3f // bits 0-5 (bit 5, ECN in Linux, stays 0)
)

// cookieOptions encodes the options of the client's SYN that a cookie connection keeps, as far as
// this engine's configuration allows them.
func cookieOptions(o *proto.TCPOptions, cfg *Config) uint32 {
	opts := uint32(cookieNoWS)
	if o.HasWindowScale && !cfg.DisableWindowScale {
		opts = uint32(min(o.WindowScale, 14))
	}
	if o.SACKPermitted && !cfg.DisableSACK {
		opts |= cookieSACK
	}
	return opts
}

// cookieTSval is the TSval of a cookie SYN-ACK: the connection's timestamp clock (tsClock, offset by the
// cookie ISS, as the connection will have it) with opts in the low bits, moved back by 64 ms if that put
// it ahead of the clock, so that the connection's timestamps never go backwards (Linux does the same).
func cookieTSval(now int64, iss Seq, opts uint32) uint32 {
	base := tsClock(now, iss)
	ts := base&^cookieOptMask | opts
	if int32(ts-base) > 0 {
		ts -= cookieOptMask + 1
	}
	return ts
}
