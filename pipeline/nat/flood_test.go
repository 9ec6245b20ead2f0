package nat_test

import (
	"net/netip"
	"testing"

	"github.com/xdpnet/xdpnet/pipeline/conntrack"
	"github.com/xdpnet/xdpnet/pipeline/nat"
	"github.com/xdpnet/xdpnet/proto"
)

// flow i of a flood: from one of the two inside hosts, a port of its own, to one of 7 server ports (so that
// the reply tuples, which share the gateway's address, do not run out of external ports first).
func floodFlow(i int) (netip.AddrPort, netip.AddrPort, proto.MAC) {
	h, mac := hostA, macA
	if i%2 == 1 {
		h, mac = hostB, macA2
	}
	return ap(h, uint16(1024+i/2)), ap(srvS, uint16(80+i%7)), mac
}

// handshake opens flows [from, to) in batches of 64: SYN out, SYN+ACK back to the port each SYN left
// with, ACK out. It returns the external address of each flow that got through (invalid where not).
func (g *gw) handshake(from, to int) []netip.AddrPort {
	ext := make([]netip.AddrPort, to-from)
	for lo := from; lo < to; lo += 64 {
		hi := min(lo+64, to)
		var syns [][]byte
		for i := lo; i < hi; i++ {
			a, s, mac := floodFlow(i)
			syns = append(syns, tcpFrame(macIn, mac, a, s, proto.TCPFlagSYN, 1, 0))
		}
		g.send(portIn, syns...)
		var acks [][]byte
		for _, f := range g.l.Sent(portOut) {
			o := parse(g.t, f)
			acks = append(acks, tcpFrame(macOut, macS, o.dst(), o.src(), proto.TCPFlagSYN|proto.TCPFlagACK, 7, 2))
		}
		g.send(portOut, acks...)
		var final [][]byte
		for _, f := range g.l.Sent(portIn) {
			b := parse(g.t, f)
			if b.ip.Protocol() != proto.ProtoTCP {
				continue
			}
			i := int(b.dst().Port()-1024)*2 + map[netip.Addr]int{hostA: 0, hostB: 1}[b.ip.Dst()]
			_, _, mac := floodFlow(i)
			final = append(final, tcpFrame(macIn, mac, b.dst(), b.src(), proto.TCPFlagACK, 2, 8))
		}
		g.send(portIn, final...)
		g.l.Sent(portOut)
		g.l.Sent(portIn) // RSTs the stack answers to SYN+ACKs of dropped flows
	}
	for i := from; i < to; i++ {
		a, s, _ := floodFlow(i)
		if c, ok := g.n.Table().Lookup(tuple(a, s, proto.ProtoTCP), g.l.Now()); ok && c.State == conntrack.StateEstablished {
			ext[i-from] = netip.AddrPortFrom(c.Reply.DstAddr(), c.Reply.DstPort)
		}
	}
	return ext
}

func tuple(a, s netip.AddrPort, pr uint8) conntrack.Tuple {
	return conntrack.Tuple{Src: conntrack.Addr32(a.Addr()), Dst: conntrack.Addr32(s.Addr()), SrcPort: a.Port(),
		DstPort: s.Port(), Proto: pr}
}

// checkEstablished sends one segment each way on flows [0, n) and fails unless every one is translated.
func (g *gw) checkEstablished(ext []netip.AddrPort) {
	g.t.Helper()
	for lo := 0; lo < len(ext); lo += 64 {
		hi := min(lo+64, len(ext))
		var out, back [][]byte
		for i := lo; i < hi; i++ {
			a, s, mac := floodFlow(i)
			out = append(out, tcpFrame(macIn, mac, a, s, proto.TCPFlagACK|proto.TCPFlagPSH, 2, 8))
			back = append(back, tcpFrame(macOut, macS, s, ext[i], proto.TCPFlagACK, 8, 2))
		}
		g.send(portIn, out...)
		if got := g.l.Sent(portOut); len(got) != hi-lo {
			g.t.Fatalf("established flows %d-%d: %d of %d segments left (drops %v)", lo, hi, len(got), hi-lo, g.l.DropSummary())
		}
		g.send(portOut, back...)
		got := g.l.Sent(portIn)
		if len(got) != hi-lo {
			g.t.Fatalf("established flows %d-%d: %d of %d replies came back (drops %v)", lo, hi, len(got), hi-lo, g.l.DropSummary())
		}
		for j, f := range got {
			a, _, _ := floodFlow(lo + j)
			if d := parse(g.t, f).dst(); d != a {
				g.t.Fatalf("flow %d's reply went to %v, want %v", lo+j, d, a)
			}
		}
	}
}

// TestFloodAssured: 100 000 TCP connections that all complete their handshake against a 65 536-entry
// table. Assured connections are never dropped early, so once a stripe is full its new connections are
// refused, counted as conntrack Refused and dropped as nat_table_full; the table never holds more than its
// bound; the first 1000 connections, established before, are unharmed.
func TestFloodAssured(t *testing.T) {
	if testing.Short() {
		t.Skip("100 000 handshakes")
	}
	g := newGW(t, gwOpts{})
	first := g.handshake(0, 1000)
	for i, e := range first {
		if !e.IsValid() {
			t.Fatalf("flow %d not established before the flood", i)
		}
	}
	g.handshake(1000, 100_000)
	st := g.n.Stats().Conntrack
	t.Logf("conntrack after 100 000 handshakes: entries %d inserted %d refused %d early drops %d (stripe size %d)",
		st.Entries, st.Inserted, st.Refused, st.EarlyDrop, st.StripeSize)
	if st.Entries > 65536 || st.Entries < 60000 {
		t.Fatalf("%d entries in a 65 536-entry table", st.Entries)
	}
	if st.Refused == 0 || st.Refused != g.l.Dropped(nat.DropTableFull) {
		t.Fatalf("refused %d, dropped as %v %d: want them equal and non-zero", st.Refused, nat.DropTableFull, g.l.Dropped(nat.DropTableFull))
	}
	if st.Inserted+st.Refused != 100_000 || st.Inserted != st.Entries+st.EarlyDrop {
		t.Fatalf("accounting: inserted %d + refused %d != 100 000, or inserted != entries %d + early drops %d",
			st.Inserted, st.Refused, st.Entries, st.EarlyDrop)
	}
	g.checkEstablished(first)
}

// TestFloodUnreplied: 1000 established connections, then 100 000 UDP flows nobody answers. The table stays
// within its bound by dropping the oldest unreplied flows (early drop, counted); nothing is refused and the
// established connections are unharmed.
func TestFloodUnreplied(t *testing.T) {
	if testing.Short() {
		t.Skip("100 000 flows")
	}
	g := newGW(t, gwOpts{})
	first := g.handshake(0, 1000)
	for lo := 0; lo < 100_000; lo += 64 {
		var fs [][]byte
		for i := lo; i < min(lo+64, 100_000); i++ {
			_, s, _ := floodFlow(i)
			fs = append(fs, udpFrame(macIn, macA, ap(hostA, uint16(2000+i%60000)), ap(s.Addr(), uint16(1000+i/60000)), "x"))
		}
		g.send(portIn, fs...)
		if n := len(g.l.Sent(portOut)); n != len(fs) {
			t.Fatalf("flows %d..: %d of %d left (drops %v)", lo, n, len(fs), g.l.DropSummary())
		}
	}
	st := g.n.Stats().Conntrack
	t.Logf("conntrack after the flood: entries %d inserted %d early drops %d refused %d", st.Entries, st.Inserted, st.EarlyDrop, st.Refused)
	if st.Entries > 65536 || st.Refused != 0 || st.EarlyDrop < 100_000+1000-65536 || st.Inserted != st.Entries+st.EarlyDrop {
		t.Fatalf("stats %+v", st)
	}
	g.checkEstablished(first)
}
