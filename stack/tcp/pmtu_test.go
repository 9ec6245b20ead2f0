package tcp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/proto"
)

// ptb is an ICMP "fragmentation needed" a router in the wire would send about one of engine 0's segments.
type ptb struct {
	local, remote netip.AddrPort
	seq           uint32
}

// mtuRouter makes the wire a path whose MTU is mtu for engine 0's segments (IPv4: 20 bytes of IP header):
// bigger ones are dropped, and when icmp is set a frag-needed is queued for delivery by deliver.
type mtuRouter struct {
	mtu     int
	icmp    bool
	pending []ptb
	big     int // segments dropped as too big
}

func (r *mtuRouter) install(w *wire) {
	w.drop = func(from int, tc proto.TCP) bool {
		if from != 0 || len(tc)+proto.IPv4MinHeaderLen <= r.mtu {
			return false
		}
		r.big++
		if r.icmp {
			r.pending = append(r.pending, ptb{netip.AddrPortFrom(w.addr[0], tc.SrcPort()), netip.AddrPortFrom(w.addr[1], tc.DstPort()), tc.Seq()})
		}
		return true
	}
}

func (r *mtuRouter) deliver(w *wire) {
	for _, m := range r.pending {
		w.eng[0].PacketTooBig(w.now, m.local, m.remote, m.seq, r.mtu)
	}
	r.pending = r.pending[:0]
}

// TestPacketTooBig: the path MTU drops to 1280 mid-transfer and the router says so (RFC 1191): the MSS
// goes to 1240 at the first message, what was in flight is sent again at the new size at once - no RTO,
// no congestion response - and the transfer completes intact.
func TestPacketTooBig(t *testing.T) {
	w := newWire(t, Config{}, 70)
	a, b := w.pair()
	r := &mtuRouter{mtu: 1280, icmp: true}
	s, k := newStream(1, 4<<20), newSink()
	w.run(30*time.Millisecond, func() { pumpWrite(a, s); k.drain(b) }, nil) // full-sized segments in flight
	if a.mss != 1460 || k.n == 0 {
		t.Fatalf("before the MTU drop: mss %d, %d bytes moved", a.mss, k.n)
	}
	r.install(w)
	w.onStep = func() { r.deliver(w) }
	var late int
	w.onSend = func(from int, tc proto.TCP) {
		if from == 0 && a.mss == 1240 && len(tc)+20 > 1280 {
			late++
		}
	}
	w.sendAll(a, b, s, a.CloseWrite, k, time.Minute)
	if !k.eof || k.n != 4<<20 {
		t.Fatalf("transfer through the lowered MTU: %d of %d bytes, eof %v", k.n, 4<<20, k.eof)
	}
	e := w.eng[0]
	if a.mss != 1240 || e.Stat(StatPMTUUpdates) != 1 || r.big == 0 || late != 0 {
		t.Fatalf("mss %d, PMTU updates %d, too-big segments %d, %d too big after the update", a.mss, e.Stat(StatPMTUUpdates), r.big, late)
	}
	if e.Stat(StatTimeouts) != 0 || a.ssthresh != initialSSThresh {
		t.Errorf("the MTU drop was taken for congestion: %d RTOs, ssthresh %d", e.Stat(StatTimeouts), a.ssthresh)
	}
	// Later messages for the same connection: the MTU is not lower any more.
	if e.Stat(DropICMPMTUNotLower) != uint64(r.big-1) {
		t.Errorf("%d messages not lowering the MTU, want %d", e.Stat(DropICMPMTUNotLower), r.big-1)
	}
}

// TestPacketTooBigValidation: RFC 5927 §4.1 - a message is believed only for an existing connection and a
// sequence number in flight; the MTU never goes below 552 (IPv4); a zero MTU field takes RFC 1191's next
// lower plateau.
func TestPacketTooBigValidation(t *testing.T) {
	w := newWire(t, Config{}, 71)
	a, _ := w.pair()
	e := w.eng[0]
	w.drop = func(from int, tc proto.TCP) bool { return from == 0 } // keep data in flight
	a.tryWrite(make([]byte, 20000))
	w.tick()
	if a.sndMax == a.sndUna {
		t.Fatal("nothing in flight")
	}
	l, r := a.id.local, a.id.remote
	for _, tc := range []struct {
		local, remote netip.AddrPort
		seq           Seq
		mtu           int
		want          Stat
		mss           uint16
	}{
		{l, netip.AddrPortFrom(r.Addr(), r.Port()+1), a.sndUna, 1280, DropICMPNoConnection, 1460},
		{l, r, a.sndUna - 1, 1280, DropICMPOutOfWindow, 1460},
		{l, r, a.sndMax, 1280, DropICMPOutOfWindow, 1460},
		{l, r, a.sndUna + 5000, 1500, DropICMPMTUNotLower, 1460},
		{l, r, a.sndUna + 5000, 0, StatPMTUUpdates, 1452}, // plateau 1492
		{l, r, a.sndUna, 100, StatPMTUUpdates, 512},       // floor 552
		{l, r, a.sndUna, 60, DropICMPMTUNotLower, 512},
	} {
		if got := e.PacketTooBig(w.now, tc.local, tc.remote, uint32(tc.seq), tc.mtu); got != tc.want || a.mss != tc.mss {
			t.Errorf("PacketTooBig(seq SND.UNA%+d, mtu %d): %v, mss %d; want %v, mss %d", int32(tc.seq-a.sndUna), tc.mtu, got, a.mss, tc.want, tc.mss)
		}
	}
}

// TestBlackHolePLPMTUD: the path MTU drops to 1280 and nobody says so (ICMP filtered). RTOs of full-sized
// segments make the connection suspect a black hole (RFC 4821, Linux's tcp_mtu_probing=1): the MSS drops
// to BaseMSS, the transfer completes, and upward probes then find the path's size again, within 8 bytes.
func TestBlackHolePLPMTUD(t *testing.T) {
	w := newWire(t, Config{MTUProbeInterval: 100 * time.Millisecond}, 72)
	a, b := w.pair()
	s, k := newStream(2, 64<<20), newSink()
	w.run(30*time.Millisecond, func() { pumpWrite(a, s); k.drain(b) }, nil)
	r := &mtuRouter{mtu: 1280}
	r.install(w)
	w.sendAll(a, b, s, a.CloseWrite, k, 10*time.Minute)
	e := w.eng[0]
	if !k.eof || k.n != 64<<20 {
		t.Fatalf("transfer through a black hole: %d of %d bytes, eof %v, mss %d, lowered %d", k.n, 64<<20, k.eof, a.mss, e.Stat(StatMTUProbeLowered))
	}
	// 1280 - 20 (IP) - 20 (TCP) = 1240 bytes of MSS pass.
	if e.Stat(StatMTUProbeLowered) == 0 || e.Stat(StatMTUProbeRaised) == 0 || e.Stat(StatMTUProbeFailed) == 0 || a.mss > 1240 || a.mss < 1232 {
		t.Fatalf("mss %d; lowered %d, probes %d raised %d failed %d; want the MSS found again near 1240",
			a.mss, e.Stat(StatMTUProbeLowered), e.Stat(StatMTUProbes), e.Stat(StatMTUProbeRaised), e.Stat(StatMTUProbeFailed))
	}
	t.Logf("mss %d; RTOs %d, lowered %d, probes %d raised %d failed %d", a.mss, e.Stat(StatTimeouts),
		e.Stat(StatMTUProbeLowered), e.Stat(StatMTUProbes), e.Stat(StatMTUProbeRaised), e.Stat(StatMTUProbeFailed))

	// With probing off the same path never completes: the full-sized segment times out until MaxRetries.
	w = newWire(t, Config{DisableMTUProbing: true, MaxRetries: 5}, 73)
	a, b = w.pair()
	s, k = newStream(2, 1<<20), newSink()
	r.install(w)
	w.sendAll(a, b, s, a.CloseWrite, k, 10*time.Minute)
	if k.eof || a.State() != StateClosed {
		t.Fatalf("black hole without probing: eof %v, state %v", k.eof, a.State())
	}
}

// TestMTUProbeAfterOutage: three RTOs in a row on a path whose MTU is fine (an outage of a few seconds)
// also drop the MSS to BaseMSS - the engine cannot tell - but the upward search starts at once and, the
// path letting everything through, brings the MSS back within 8 bytes (the search's end, Linux's
// tcp_probe_threshold) of the handshake's within the transfer, not after MTUProbeInterval (10 minutes).
func TestMTUProbeAfterOutage(t *testing.T) {
	w := newWire(t, Config{}, 74)
	a, b := w.pair()
	s, k := newStream(3, 16<<20), newSink()
	w.run(30*time.Millisecond, func() { pumpWrite(a, s); k.drain(b) }, nil)
	w.drop = func(int, proto.TCP) bool { return true }
	w.run(3*time.Second, func() { pumpWrite(a, s) }, func() bool { return a.mss < 1460 })
	if a.mss != 1024 || w.eng[0].Stat(StatMTUProbeLowered) != 1 {
		t.Fatalf("after %d RTOs: mss %d, want 1024", w.eng[0].Stat(StatTimeouts), a.mss)
	}
	w.drop = nil
	w.sendAll(a, b, s, a.CloseWrite, k, time.Minute)
	if !k.eof || a.mss < 1460-8 || a.mss > 1460 || w.eng[0].Stat(StatMTUProbeFailed) != 0 {
		t.Fatalf("eof %v, mss %d after the outage (probes %d, raised %d, failed %d); want 1452-1460 again", k.eof, a.mss,
			w.eng[0].Stat(StatMTUProbes), w.eng[0].Stat(StatMTUProbeRaised), w.eng[0].Stat(StatMTUProbeFailed))
	}
}
