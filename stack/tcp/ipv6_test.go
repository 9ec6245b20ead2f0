package tcp

import (
	"net/netip"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/proto"
)

// Addresses from the IPv6 benchmarking range, RFC 5180 (2001:2::/48).
var (
	addr6A = netip.MustParseAddr("2001:2::1")
	addr6B = netip.MustParseAddr("2001:2::2")
)

// newWire6 is newWire with IPv6 addresses: every segment's checksum is verified over the IPv6
// pseudo-header (RFC 8200 §8.1) by the wire, independently of Segment.Encode.
func newWire6(t testing.TB, cfg Config, seed int64) *wire {
	w := newWire(t, cfg, seed)
	w.addr = [2]netip.Addr{addr6A, addr6B}
	return w
}

// dialTo connects engine 0 from the address from to l's port on to and waits for both ends.
func (w *wire) dialTo(l *Listener, from, to netip.Addr) (a, b *Conn) {
	w.t.Helper()
	a, err := w.eng[0].Connect(netip.AddrPortFrom(from, 0), netip.AddrPortFrom(to, l.addr.Port()))
	if err != nil {
		w.t.Fatal(err)
	}
	w.run(10*time.Second, nil, func() bool {
		if b == nil {
			b = accepted(l)
		}
		return b != nil && a.State() == StateEstablished
	})
	if b == nil || a.State() != StateEstablished {
		w.t.Fatalf("no connection %v -> %v: client %v, accepted %v", from, to, a.State(), b != nil)
	}
	return a, b
}

// TestIPv6Engines: two engines back to back over IPv6 addresses. The listener on [::] takes the
// connection, the MSS is MTU - 60 (RFC 8200's 40-byte header), all options are negotiated, and data
// moves both ways intact through loss, duplication and reordering, every segment checksummed over the
// IPv6 pseudo-header.
func TestIPv6Engines(t *testing.T) {
	w := newWire6(t, Config{MTU: 1500}, 90)
	l, err := w.eng[1].Listen(netip.MustParseAddrPort("[::]:80"))
	if err != nil {
		t.Fatal(err)
	}
	var synMSS []uint16
	w.onSend = func(from int, tc proto.TCP) {
		if tc.Flags().Has(proto.TCPFlagSYN) {
			o, _ := proto.ParseTCPOptions(tc.Options())
			synMSS = append(synMSS, o.MSS)
		}
		if len(tc.Payload()) > 1440-12 {
			t.Errorf("%d-byte payload over IPv6 with MTU 1500", len(tc.Payload()))
		}
	}
	a, b := w.dialTo(l, addr6A, addr6B)
	if len(synMSS) != 2 || synMSS[0] != 1440 || synMSS[1] != 1440 {
		t.Fatalf("SYN and SYN-ACK announced MSS %v, want 1440 (1500 - 60)", synMSS)
	}
	for _, c := range []*Conn{a, b} {
		if c.mss != 1440 || !c.wsOK || !c.tsOK || !c.sackOK {
			t.Errorf("%v: mss %d ws %v ts %v sack %v", c.id.local, c.mss, c.wsOK, c.tsOK, c.sackOK)
		}
	}
	if b.RemoteAddrPort() != a.LocalAddrPort() || b.LocalAddrPort().Addr() != addr6B {
		t.Fatalf("accepted %v -> %v, dialled from %v", b.RemoteAddrPort(), b.LocalAddrPort(), a.LocalAddrPort())
	}
	w.loss, w.dup, w.jitter = 0.02, 0.01, int64(2*time.Millisecond)
	transfer(t, w, a, b, 2<<20, 1<<20)
	if w.badSums != 0 || w.eng[0].Stat(StatRetransmits) == 0 {
		t.Fatalf("%d bad checksums, %d retransmissions", w.badSums, w.eng[0].Stat(StatRetransmits))
	}

	// Packet Too Big (RFC 8201): never below 1280, the IPv6 minimum MTU.
	w = newWire6(t, Config{}, 91)
	l, _ = w.eng[1].Listen(netip.AddrPortFrom(addr6B, 80))
	a, _ = w.dialTo(l, addr6A, addr6B)
	w.drop = func(from int, tc proto.TCP) bool { return from == 0 }
	a.tryWrite(make([]byte, 10000))
	w.tick()
	if st := w.eng[0].PacketTooBig(w.now, a.id.local, a.id.remote, uint32(a.sndUna), 1000); st != StatPMTUUpdates || a.mss != 1220 {
		t.Fatalf("Packet Too Big with MTU 1000: %v, mss %d; want 1220 (1280 - 60)", st, a.mss)
	}
}

// TestDualStackListener: a listener on [::] also takes IPv4 connections (with an IPv4 MSS); one on
// 0.0.0.0 takes IPv4 only; one bound to an address is chosen before the wildcard.
func TestDualStackListener(t *testing.T) {
	w := newWire(t, Config{}, 92)
	any6, _ := w.eng[1].Listen(netip.MustParseAddrPort("[::]:80"))
	a, b := w.dialTo(any6, addrA, addrB)
	if b.mss != 1460 || a.mss != 1460 {
		t.Fatalf("IPv4 through a [::] listener: mss %d/%d, want 1460", a.mss, b.mss)
	}
	any4, _ := w.eng[1].Listen(netip.MustParseAddrPort("0.0.0.0:80"))
	exact, _ := w.eng[1].Listen(netip.AddrPortFrom(addrB, 80))
	if _, b := w.dialTo(exact, addrA, addrB); b == nil {
		t.Fatal("no connection through the exact listener")
	}
	exact.Close()
	if _, b := w.dialTo(any4, addrA, addrB); b == nil {
		t.Fatal("no connection through the 0.0.0.0 listener")
	}

	w = newWire6(t, Config{}, 93)
	w.eng[1].Listen(netip.MustParseAddrPort("0.0.0.0:80"))
	c, _ := w.eng[0].Connect(netip.AddrPortFrom(addr6A, 0), netip.AddrPortFrom(addr6B, 80))
	w.run(time.Second, nil, func() bool { return c.State() == StateClosed })
	if c.State() != StateClosed || w.eng[1].Stat(DropNoConnection) == 0 {
		t.Fatalf("IPv6 SYN to a 0.0.0.0 listener: client %v; want refused", c.State())
	}
}
