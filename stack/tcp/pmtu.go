package tcp

import (
	"net/netip"

	"github.com/xdpnet/xdpnet/proto"
)

// Path MTU: the MSS of a connection follows the path, from ICMP (RFC 1191, RFC 8201) when the path sends
// it, and from its own losses when it does not (RFC 4821 packetization-layer PMTUD, as Linux's
// tcp_mtu_probing=1 does it).

// ipOverhead is the IP and TCP header bytes of a segment without options: MSS = MTU - ipOverhead (RFC 9293
// §3.7.1; RFC 8200 §5 for the 40-byte IPv6 header).
func ipOverhead(a netip.Addr) int {
	if a.Is4() || a.Is4In6() {
		return proto.IPv4MinHeaderLen + proto.TCPMinHeaderLen
	}
	return proto.IPv6HeaderLen + proto.TCPMinHeaderLen
}

// mssForMTU is the MSS an IP MTU allows for connections with addresses of a's family.
func mssForMTU(mtu int, a netip.Addr) uint16 {
	return uint16(min(max(mtu, minMTU(a))-ipOverhead(a), 0xffff))
}

// minMTU is the smallest path MTU a Packet Too Big may set. IPv6: RFC 8201 §4, "a node MUST NOT reduce its
// estimate of the Path MTU below the IPv6 minimum link MTU" (1280). IPv4: RFC 791's 68 would be allowed, but
// like Linux (ip_rt_min_pmtu) we go no lower than 552: a forged message with a tiny MTU would otherwise cut
// a connection's segments to a few bytes of payload each (RFC 5927 §7.1 discusses the attack).
func minMTU(a netip.Addr) int {
	if a.Is4() || a.Is4In6() {
		return 552
	}
	return 1280
}

// mtuPlateaus is RFC 1191 §7's table, for a "fragmentation needed" from a router that leaves the next-hop
// MTU field zero (RFC 1191 §5: "the host should ... use the next smaller plateau").
var mtuPlateaus = [...]int{65535, 32000, 17914, 8166, 4352, 2002, 1492, 1006, 508, 296, 68}

// PacketTooBig takes an ICMP "fragmentation needed and DF set" (RFC 1191, type 3 code 4) or ICMPv6 "Packet
// Too Big" (RFC 8201) about a segment this engine sent: local and remote are the quoted segment's source
// and destination, seq its sequence number, mtu the message's next-hop MTU (0 when the router did not
// give one). As RFC 5927 §4.1 advises, the message is believed only if it names a connection and a
// sequence number in flight - SND.UNA =< seq < SND.NXT (SND.MAX here) - so that a blind attacker must
// guess both. A believable MTU below the connection's lowers its MSS to mtu minus the headers (never below
// minMTU) and resends what is in flight at the new size at once, without a congestion response (RFC 1191
// §6.5 does not count it as congestion; Linux's tcp_simple_retransmit). It returns the counter it
// incremented: StatPMTUUpdates, or the reason the message changed nothing. Owner only (it may send).
func (e *Engine) PacketTooBig(now int64, local, remote netip.AddrPort, seq uint32, mtu int) Stat {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.now = now
	c := e.conns[connID{local: local, remote: remote}]
	if c == nil {
		e.inc(DropICMPNoConnection)
		return DropICMPNoConnection
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	st := c.packetTooBig(now, Seq(seq), mtu)
	e.inc(st)
	e.afterConn(c)
	return st
}

func (c *Conn) packetTooBig(now int64, seq Seq, mtu int) Stat {
	if c.state == StateClosed || c.state == StateTimeWait || c.state == StateSynReceived && c.l != nil ||
		!(c.sndUna.LessEq(seq) && seq.LessThan(c.sndMax)) {
		return DropICMPOutOfWindow
	}
	a := c.id.remote.Addr()
	cur := int(c.mss) + ipOverhead(a)
	if mtu == 0 {
		for _, p := range mtuPlateaus {
			if p < cur {
				mtu = p
				break
			}
		}
	}
	mss := mssForMTU(mtu, a)
	if mss >= c.mss {
		return DropICMPMTUNotLower
	}
	c.pathMSS = mss
	c.lowerMSS(now, mss)
	return StatPMTUUpdates
}

// lowerMSS sets a smaller MSS and, if data is in flight, sends it again cut to the new size: go-back-N
// from SND.UNA as after an RTO, but keeping cwnd and ssthresh - the segments were too big, not a sign of
// congestion. Owner only.
func (c *Conn) lowerMSS(now int64, mss uint16) {
	c.mss = mss
	if !c.state.synchronized() || c.sndUna == c.sndMax || !c.state.canSend() {
		return
	}
	c.sndNxt = c.sndUna
	c.recover = c.sndMax
	c.inRecovery, c.dupAcks, c.rttTiming = false, 0, false
	c.nsacked, c.nrexmits = 0, 0
	c.rackAt, c.rackPendAt, c.rackEdge, c.tlpAt = 0, 0, c.sndUna, 0
	c.rexmitAt = now + c.rto
	c.output(now)
}

// Packetization-layer PMTUD (RFC 4821) as Linux's tcp_mtu_probing=1: a path that drops big packets
// without telling (an ICMP black hole) shows as RTOs of full-sized segments. After mtuProbeRTOs of them in
// a row the MSS drops to Config.BaseMSS (Linux's tcp_base_mss), and halves on every further one down to
// minProbeMSS; from then on the connection probes upward (sendMTUProbe), one segment of the size halfway
// between what is known to pass and what failed, and takes the size when it is acknowledged - at once
// until the search converges, then every Config.MTUProbeInterval.
const (
	mtuProbeRTOs = 3  // Linux: tcp_retries1
	minProbeMSS  = 48 // Linux: tcp_mtu_probe_floor, tcp_min_snd_mss
)

// blackHole runs at an RTO that resends a full-sized segment. Owner only.
func (c *Conn) blackHole() {
	cfg := &c.e.cfg
	if cfg.DisableMTUProbing || c.retries < mtuProbeRTOs || !c.state.synchronized() {
		return
	}
	if c.snd.n < int(c.smss()) {
		return // what timed out was not full-sized: not a sign of a too small path MTU
	}
	p := &c.plpmtud
	var mss uint16
	if !p.on {
		// Linux: "icsk_mtup.enabled = 1" with search_low at tcp_base_mss.
		p.on = true
		mss = uint16(min(int(c.mss), cfg.BaseMSS))
	} else {
		mss = max(min(c.mss/2, uint16(cfg.BaseMSS)), minProbeMSS)
	}
	if mss >= c.mss {
		return
	}
	p.high = c.mss - 1 // the size that timed out does not pass
	p.low = mss
	p.probeEnd, p.probing = 0, false
	// Search upward at once, as Linux's tcp_mtu_probe does while the search range is wide: three RTOs in a
	// row may as well have been bad luck on a lossy path, which must not cost its MSS for long.
	p.nextAt = c.e.now
	c.mss = mss
	c.e.inc(StatMTUProbeLowered)
}

// plpmtud is a connection's RFC 4821 search state: low passed (or is the floor), high is the largest
// size not known to fail (the MSS from the handshake or ICMP at most).
type plpmtud struct {
	on        bool
	low, high uint16
	probing   bool // a probe is in flight: [probeSeq, probeEnd) with MSS probeMSS
	probeSeq  Seq
	probeEnd  Seq
	probeMSS  uint16
	nextAt    int64 // earliest time of the next probe
}

// mtuProbeSize returns the MSS of an upward probe due now, 0 for none: RFC 4821 §7.5's search, halfway
// between low and high, while the gap is wider than 8 bytes (Linux's tcp_probe_threshold) - a
// search that converged waits Config.MTUProbeInterval and starts again from the handshake's MSS.
func (c *Conn) mtuProbeSize(now int64) uint16 {
	p := &c.plpmtud
	if !p.on || p.probing || now < p.nextAt || c.inRecovery || c.sndNxt != c.sndMax {
		return 0
	}
	if p.high <= p.low+8 {
		p.high = c.peerMSS()
		p.nextAt = now + int64(c.e.cfg.MTUProbeInterval)
		return 0
	}
	return p.low + (p.high-p.low+1)/2
}

// peerMSS is the largest MSS the connection may use: the peer's and ours from the handshake, and what
// ICMP said about the path.
func (c *Conn) peerMSS() uint16 {
	m := c.synMSS
	if c.pathMSS != 0 {
		m = min(m, c.pathMSS)
	}
	return m
}

// mtuProbeAcked and mtuProbeLost end a probe: RFC 4821 §7.6.1, an acknowledged probe raises the MSS to its
// size; §7.6.2, a lost one lowers the search's upper bound and is otherwise repaired as any loss. Owner
// only.
func (c *Conn) mtuProbeAcked() {
	p := &c.plpmtud
	p.probing = false
	p.low = p.probeMSS
	if p.probeMSS > c.mss {
		c.mss = p.probeMSS
		c.e.inc(StatMTUProbeRaised)
	}
}

func (c *Conn) mtuProbeLost(now int64) {
	p := &c.plpmtud
	p.probing = false
	p.high = p.probeMSS - 1
	p.nextAt = now // the next, smaller probe once the loss is repaired
	c.e.inc(StatMTUProbeFailed)
}

// sendMTUProbe sends an upward probe (RFC 4821 §7.4) as the next new segment, if one is due and the data
// and both windows have room for it; false when it sent nothing. Owner only.
func (c *Conn) sendMTUProbe(now int64, avail, usable int) bool {
	ps := c.mtuProbeSize(now)
	if ps == 0 {
		return false
	}
	size := int(ps)
	if c.tsOK {
		size -= 12
	}
	if avail < size || usable < size {
		return false
	}
	seq := c.sndNxt
	saved := c.mss
	c.mss = ps // for this segment only: xmit cuts at c.mss
	ok := c.sendData(now, seq, size, proto.TCPFlagACK)
	c.mss = saved
	if !ok {
		return false
	}
	p := &c.plpmtud
	p.probing, p.probeSeq, p.probeEnd, p.probeMSS = true, seq, seq+Seq(size), ps
	c.e.inc(StatMTUProbes)
	return true
}
