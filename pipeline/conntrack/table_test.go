package conntrack

import (
	"sync"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/proto"
)

const (
	syn    = proto.TCPFlagSYN
	synack = proto.TCPFlagSYN | proto.TCPFlagACK
	ack    = proto.TCPFlagACK
	fin    = proto.TCPFlagFIN | proto.TCPFlagACK
	rst    = proto.TCPFlagRST
)

func tcp(sport uint16) Tuple {
	return Tuple{Src: 0xc6120002, Dst: 0xc6130002, SrcPort: sport, DstPort: 80, Proto: proto.ProtoTCP}
}

func newTable(t testing.TB, cfg Config) *Table {
	t.Helper()
	tb, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

func mustTrack(t *testing.T, tb *Table, tu Tuple, f proto.TCPFlags, now int64, want State, wantDir Dir) Conn {
	t.Helper()
	c, v, ok := tb.Track(tu, f, now)
	if !ok || v != Valid {
		t.Fatalf("Track %v %v: ok=%v verdict=%v", tu, f, ok, v)
	}
	if c.State != want || c.Dir != wantDir {
		t.Fatalf("Track %v %v: state %v dir %v, want %v %v", tu, f, c.State, c.Dir, want, wantDir)
	}
	return c
}

// TestTCPLifecycle follows one connection through the states nf_conntrack shows for a normal open and
// close, and checks each state's timeout.
func TestTCPLifecycle(t *testing.T) {
	tb := newTable(t, Config{Max: 1024})
	to := DefaultTimeouts()
	o := tcp(40000)
	r := o.Invert()
	now := int64(1e9)
	c, res := tb.Insert(o, r, syn, now)
	if res != Inserted || c.State != StateSynSent || c.Expires != now+int64(to.TCPSynSent) {
		t.Fatalf("insert: %v %+v", res, c)
	}
	c = mustTrack(t, tb, r, synack, now, StateSynRecv, Reply)
	if c.Flags&Replied == 0 || c.Flags&Assured != 0 {
		t.Fatalf("after SYN+ACK flags %b", c.Flags)
	}
	c = mustTrack(t, tb, o, ack, now, StateEstablished, Original)
	if c.Flags&Assured == 0 || c.Expires != now+int64(to.TCPEstablished) {
		t.Fatalf("established: %+v", c)
	}
	mustTrack(t, tb, o, fin, now, StateFinWait, Original)
	c = mustTrack(t, tb, r, ack, now, StateCloseWait, Reply)
	if c.Expires != now+int64(to.TCPCloseWait) {
		t.Fatalf("close wait expiry %d", c.Expires-now)
	}
	mustTrack(t, tb, r, fin, now, StateLastAck, Reply)
	c = mustTrack(t, tb, o, ack, now, StateTimeWait, Original)
	if c.Expires != now+int64(to.TCPTimeWait) {
		t.Fatalf("time wait expiry %d", c.Expires-now)
	}
	// A new SYN on the same ports reopens it (port reuse after TIME_WAIT).
	c = mustTrack(t, tb, o, syn, now, StateSynSent, Original)
	if c.Flags&(Replied|Assured) != 0 {
		t.Fatalf("reopened connection keeps flags %b", c.Flags)
	}
	// RST closes; the entry lives TCPClose more and is then gone.
	mustTrack(t, tb, r, rst, now, StateClose, Reply)
	if _, ok := tb.Lookup(o, now+int64(to.TCPClose)-1); !ok {
		t.Fatal("closed connection gone before its timeout")
	}
	if _, _, ok := tb.Track(o, ack, now+int64(to.TCPClose)); ok {
		t.Fatal("closed connection still found after its timeout")
	}
	if st := tb.Stats(); st.Entries != 0 || st.Expired != 1 {
		t.Fatalf("stats after expiry: %+v", st)
	}
}

func TestTCPInvalid(t *testing.T) {
	tb := newTable(t, Config{Max: 64})
	o := tcp(1)
	tb.Insert(o, o.Invert(), syn, 0)
	if _, v, ok := tb.Track(o, synack, 0); !ok || v != Invalid {
		t.Fatalf("SYN+ACK in the original direction: ok=%v verdict=%v, want Invalid", ok, v)
	}
	if c, _ := tb.Lookup(o, 0); c.State != StateSynSent {
		t.Fatalf("an invalid packet changed the state to %v", c.State)
	}
	if tb.Stats().Invalid != 1 {
		t.Fatal("invalid not counted")
	}
}

func TestUDPAndICMPTimeouts(t *testing.T) {
	to := Timeouts{UDP: 30 * time.Second, UDPStream: 120 * time.Second, ICMP: 5 * time.Second}
	tb := newTable(t, Config{Max: 64, Timeouts: to})
	u := Tuple{Src: 1, Dst: 2, SrcPort: 5000, DstPort: 53, Proto: proto.ProtoUDP}
	c, _ := tb.Insert(u, u.Invert(), 0, 0)
	if c.Expires != int64(to.UDP) {
		t.Fatalf("new UDP expiry %v", time.Duration(c.Expires))
	}
	c, _, _ = tb.Track(u.Invert(), 0, 0)
	if c.Flags != Replied || c.Expires != int64(to.UDP) {
		t.Fatalf("replied UDP: flags %b expiry %v", c.Flags, time.Duration(c.Expires))
	}
	c, _, _ = tb.Track(u, 0, 0)
	if c.Flags != Replied|Assured || c.Expires != int64(to.UDPStream) {
		t.Fatalf("UDP stream: flags %b expiry %v", c.Flags, time.Duration(c.Expires))
	}
	i := Tuple{Src: 1, Dst: 2, SrcPort: 77, Proto: proto.ProtoICMP}
	c, _ = tb.Insert(i, i.Invert(), 0, 0)
	if c.Expires != int64(to.ICMP) {
		t.Fatalf("ICMP expiry %v", time.Duration(c.Expires))
	}
	if _, ok := tb.Lookup(i, int64(to.ICMP)); ok {
		t.Fatal("ICMP entry alive after its timeout")
	}
	tb.Sweep(int64(to.ICMP), tb.Max())
	if st := tb.Stats(); st.Entries != 1 || st.Expired != 1 {
		t.Fatalf("after sweep: entries %d expired %d, want 1 1", st.Entries, st.Expired)
	}
}

// TestReplyTupleUnique: a reply tuple a live connection holds is refused (NAT then picks another port); once
// that connection has expired, it is free again.
func TestReplyTupleUnique(t *testing.T) {
	tb := newTable(t, Config{Max: 64})
	a := tcp(1000)
	b := tcp(2000)
	shared := Tuple{Src: a.Dst, Dst: 0xc6130001, SrcPort: 80, DstPort: 1024, Proto: proto.ProtoTCP}
	if _, r := tb.Insert(a, shared, syn, 0); r != Inserted {
		t.Fatal(r)
	}
	if _, r := tb.Insert(b, shared, syn, 0); r != Clash {
		t.Fatalf("second connection with the same reply tuple: %v, want clash", r)
	}
	if _, r := tb.Insert(a, a.Invert(), syn, 0); r != Exists {
		t.Fatalf("same original tuple again: %v, want exists", r)
	}
	later := int64(DefaultTimeouts().TCPSynSent)
	if _, r := tb.Insert(b, shared, syn, later); r != Inserted {
		t.Fatalf("reply tuple of an expired connection: %v, want inserted", r)
	}
	if _, r := tb.Insert(a, a, syn, 0); r != Malformed {
		t.Fatalf("reply == original: %v", r)
	}
}

// TestEarlyDrop fills a one-stripe table: new connections replace the oldest unassured one; assured ones
// stay; when only assured ones are left, inserts are refused and counted.
func TestEarlyDrop(t *testing.T) {
	tb := newTable(t, Config{Max: 8, Stripes: 1})
	for i := uint16(0); i < 4; i++ { // four assured
		o := tcp(i)
		tb.Insert(o, o.Invert(), syn, 0)
		tb.Track(o.Invert(), synack, 0)
		tb.Track(o, ack, 0)
	}
	for i := uint16(100); i < 104; i++ { // four unreplied
		o := tcp(i)
		tb.Insert(o, o.Invert(), syn, int64(i))
	}
	o := tcp(200)
	if _, r := tb.Insert(o, o.Invert(), syn, 1000); r != Inserted {
		t.Fatalf("insert into a full table with unassured entries: %v", r)
	}
	if _, ok := tb.Lookup(tcp(100), 1000); ok {
		t.Fatal("the oldest unassured connection was not the one dropped")
	}
	for _, p := range []uint16{101, 102, 103, 0, 1, 2, 3} {
		if _, ok := tb.Lookup(tcp(p), 1000); !ok {
			t.Fatalf("connection %d dropped", p)
		}
	}
	for i := uint16(300); i < 310; i++ {
		tb.Insert(tcp(i), tcp(i).Invert(), syn, 2000)
	}
	st := tb.Stats()
	if st.Entries != 8 || st.EarlyDrop != 11 || st.Assured != 4 {
		t.Fatalf("stats %+v", st)
	}
	// Assure the rest; then there is nothing to drop.
	tb.Conns(func(c Conn, _ [2]uint64) {
		if c.Flags&Assured == 0 {
			tb.Track(c.Reply, synack, 2000)
			tb.Track(c.Orig, ack, 2000)
		}
	})
	if _, r := tb.Insert(tcp(999), tcp(999).Invert(), syn, 3000); r != Full {
		t.Fatalf("insert into a table of assured connections: %v, want full", r)
	}
	if st := tb.Stats(); st.Refused != 1 || st.Entries != 8 {
		t.Fatalf("refusal not counted: %+v", st)
	}
}

// TestIndexChurn inserts a connection every 200 ms into a one-stripe table whose UDP connections live 30
// s, so that about 150 are live and expired ones leave all the time (by Sweep, by a lookup, or when an
// insert meets them): backward-shift deletion runs over wrapped probe runs. Against a model of what is
// live, every live tuple must stay reachable in both directions and the count must agree.
func TestIndexChurn(t *testing.T) {
	tb := newTable(t, Config{Max: 256, Stripes: 1})
	const life = int64(30 * time.Second)
	type rec struct {
		u  Tuple
		at int64
	}
	var live []rec
	now := int64(0)
	for i := 0; i < 20000; i++ {
		now += int64(200 * time.Millisecond)
		u := Tuple{Src: uint32(i * 7919), Dst: 9, SrcPort: uint16(i), DstPort: 53, Proto: proto.ProtoUDP}
		if _, r := tb.Insert(u, u.Invert(), 0, now); r != Inserted {
			t.Fatalf("insert %d: %v", i, r)
		}
		live = append(live, rec{u, now})
		for len(live) > 0 && now-live[0].at >= life {
			live = live[1:]
		}
		switch i % 3 {
		case 0:
			tb.Sweep(now, 8)
		case 1:
			tb.Lookup(Tuple{Src: uint32((i - 160) * 7919), Dst: 9, SrcPort: uint16(i - 160), DstPort: 53, Proto: proto.ProtoUDP}, now)
		}
		if i%97 != 0 {
			continue
		}
		for _, r := range live {
			if c, ok := tb.Lookup(r.u, now); !ok || c.Dir != Original {
				t.Fatalf("step %d: live %v not found", i, r.u)
			}
			if c, ok := tb.Lookup(r.u.Invert(), now); !ok || c.Dir != Reply {
				t.Fatalf("step %d: reply of live %v not found", i, r.u)
			}
		}
		tb.Sweep(now, tb.Max())
		if st := tb.Stats(); st.Entries != uint64(len(live)) || st.EarlyDrop != 0 {
			t.Fatalf("step %d: %d entries, model %d (early drops %d)", i, st.Entries, len(live), st.EarlyDrop)
		}
	}
}

// TestConcurrent runs the two directions of many connections on two goroutines, as two pollers do; run
// with -race.
func TestConcurrent(t *testing.T) {
	tb := newTable(t, Config{Max: 4096})
	const n = 2000
	for i := 0; i < n; i++ {
		o := tcp(uint16(i))
		tb.Insert(o, Tuple{Src: o.Dst, Dst: 0xc6130001, SrcPort: 80, DstPort: uint16(10000 + i), Proto: proto.ProtoTCP}, syn, 0)
	}
	var wg sync.WaitGroup
	for d := 0; d < 2; d++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for round := 0; round < 5; round++ {
				for i := 0; i < n; i++ {
					o := tcp(uint16(i))
					if d == 0 {
						tb.Track(o, ack, 1)
					} else {
						tb.Track(Tuple{Src: o.Dst, Dst: 0xc6130001, SrcPort: 80, DstPort: uint16(10000 + i), Proto: proto.ProtoTCP}, synack, 1)
					}
					tb.Sweep(1, 2)
				}
			}
		}()
	}
	wg.Wait()
	if st := tb.Stats(); st.Entries != n || st.Found != 2*5*n {
		t.Fatalf("stats %+v", st)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{{Max: -1}, {Max: MaxMax + 1}, {Max: 100, Stripes: 3}} {
		if _, err := New(c); err == nil {
			t.Errorf("New(%+v) accepted", c)
		}
	}
}

func TestNoAllocs(t *testing.T) {
	tb := newTable(t, Config{})
	o := tcp(5)
	tb.Insert(o, o.Invert(), syn, 0)
	i := uint16(0)
	n := testing.AllocsPerRun(1000, func() {
		tb.Track(o, ack, 1)
		tb.Track(o.Invert(), ack, 1)
		i++
		u := Tuple{Src: 7, Dst: 8, SrcPort: i, DstPort: 53, Proto: proto.ProtoUDP}
		tb.Insert(u, u.Invert(), 0, 2)
		tb.Sweep(3, 4)
	})
	if n != 0 {
		t.Fatalf("%v allocations per packet", n)
	}
}

func BenchmarkTrack(b *testing.B) {
	tb := newTable(b, Config{})
	var ts []Tuple
	for i := 0; i < 1000; i++ {
		o := Tuple{Src: 0xc6120002 + uint32(i), Dst: 0xc6130002, SrcPort: 4000, DstPort: 53, Proto: proto.ProtoUDP}
		tb.Insert(o, o.Invert(), 0, 0)
		ts = append(ts, o)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tb.Track(ts[i%len(ts)], 0, 1)
	}
}
