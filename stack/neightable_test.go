package stack

import (
	"math/rand/v2"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
)

// lanHost is the i-th address of the lan network after A (198.18.0.3 on); with lan18 that is up to
// 198.18.63.254.
func lanHost(i int) netip.Addr {
	return addrFrom4(addr4(netip.MustParseAddr("198.18.0.3")) + uint32(i))
}

func lan18(c *Config) {
	c.Interfaces[0].Addrs = []netip.Prefix{netip.MustParsePrefix("198.18.0.1/18")}
	c.Routes = nil // 198.18.60.0/24 and the others would fall inside the /18
}

func spoofMAC(i int) proto.MAC { return proto.MAC{0x02, 0x5f, 0, byte(i >> 16), byte(i >> 8), byte(i)} }

// spoofARP sends ARP requests for our lan address from senders lanHost(from) .. lanHost(to-1), each with its
// own MAC, in full batches, and throws the replies away.
func (e *env) spoofARP(from, to int) {
	e.t.Helper()
	var batch [][]byte
	for i := from; i < to; i++ {
		batch = append(batch, arpFrame(proto.ARPRequest, spoofMAC(i), proto.BroadcastMAC, lanHost(i), proto.MAC{}, ipLan))
		if len(batch) == pipeline.MaxBatch || i == to-1 {
			if err := e.l.InjectBatch(portLan, batch...); err != nil {
				e.t.Fatal(err)
			}
			e.l.Sent(portLan)
			batch = batch[:0]
		}
	}
}

func (e *env) neighbour(addr netip.Addr) (Neighbour, bool) {
	for _, n := range e.s.Neighbours() {
		if n.Addr == addr {
			return n, true
		}
	}
	return Neighbour{}, false
}

// TestARPLearnsOnlyOnLinkSenders: an ARP request for our address is answered whatever its sender, but only
// a host address of the interface's network is learnt; an unsolicited reply teaches nothing new.
func TestARPLearnsOnlyOnLinkSenders(t *testing.T) {
	e := newEnv(t, nil)
	before := e.s.Stats().NeighbourEntries
	for _, sip := range []string{
		"198.19.0.77",  // wan's network, asking on lan
		"198.18.1.5",   // no network of ours
		"198.18.0.0",   // lan's network address
		"198.18.0.255", // lan's broadcast address
	} {
		e.learnNot(portLan, netip.MustParseAddr(sip))
	}
	// A reply for our address that nobody asked for, from a host on the network.
	e.inject(portLan, arpFrame(proto.ARPReply, spoofMAC(1), macLan, lanHost(1), macLan, ipLan))
	if _, ok := e.neighbour(lanHost(1)); ok {
		t.Errorf("an unsolicited ARP reply made an entry")
	}
	st := e.s.Stats()
	if st.NeighbourEntries != before {
		t.Errorf("%d entries, want %d: %v", st.NeighbourEntries, before, e.s.Neighbours())
	}
	if st.ARPNotLearnt != 4 {
		t.Errorf("ARPNotLearnt %d, want 4", st.ARPNotLearnt)
	}
	// A host of the network is learnt.
	e.learn(portLan, spoofMAC(2), lanHost(2), ipLan)
	if n, ok := e.neighbour(lanHost(2)); !ok || n.MAC != spoofMAC(2) || n.State != NeighbourReachable {
		t.Errorf("on-link sender: %+v %v", n, ok)
	}
}

// learnNot sends an ARP request for our address from sip and checks it is answered and not learnt.
func (e *env) learnNot(port int, sip netip.Addr) {
	e.t.Helper()
	e.inject(port, arpFrame(proto.ARPRequest, spoofMAC(9), proto.BroadcastMAC, sip, proto.MAC{}, ipLan))
	if a := mustARP(e.t, e.only(port)); a.Op() != proto.ARPReply || a.TargetIP() != sip {
		e.t.Errorf("request from %v: answer %+v", sip, a.Fields())
	}
	if _, ok := e.neighbour(sip); ok {
		e.t.Errorf("sender %v learnt", sip)
	}
}

// TestNeighbourTableSpoofedARPFlood is issue #12's lock-out: 16 000 spoofed ARP requests from senders on
// the network fill the table; it stays at GCThresh3, refuses (and counts) what it cannot take, and a real
// next hop needed by traffic still gets an entry at once - and ten minutes later.
func TestNeighbourTableSpoofedARPFlood(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		lan18(c)
		c.NeighbourGCThresh1, c.NeighbourGCThresh2, c.NeighbourGCThresh3 = 64, 256, 1024
	})
	e.spoofARP(0, 16000)
	st := e.s.Stats()
	if st.NeighbourEntries != 1024 || st.NeighboursRefused == 0 {
		t.Fatalf("after the flood: %d entries, %d refused; want 1024 and some refused", st.NeighbourEntries, st.NeighboursRefused)
	}
	if got := len(e.s.Neighbours()); got != 1024 {
		t.Fatalf("Neighbours lists %d entries, want 1024", got)
	}
	// A new next hop (C on wan) that traffic needs: its entry takes the place of a learnt, unused one.
	ipC := netip.MustParseAddr("198.19.0.3")
	macC := proto.MAC{0x02, 0xcc, 0, 0, 0, 0x0c}
	resolveC := func() {
		t.Helper()
		e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipC, 2), 64, nil))
		if a := mustARP(t, e.only(portWan)); a.TargetIP() != ipC {
			t.Fatalf("request for %v, want %v", a.TargetIP(), ipC)
		}
		e.inject(portWan, arpFrame(proto.ARPReply, macC, macWan, ipC, macWan, ipWan))
		if p := parseOut(t, e.only(portWan)); p.eth.Dst() != macC {
			t.Fatalf("released packet to %v", p.eth.Dst())
		}
	}
	resolveC()
	if d := e.l.Dropped(DropNeighbourTableFull); d != 0 {
		t.Fatalf("%d neighbour_table_full drops", d)
	}
	// Ten minutes on, with the flood going on (the spoofed senders repeating), the periodic collection has
	// removed what idled and the table still takes what traffic needs.
	for range 20 {
		e.l.Advance(30 * time.Second)
		e.spoofARP(16000, 16064)
	}
	if err := e.s.ForgetNeighbour("wan", ipC); err != nil {
		t.Fatal(err)
	}
	e.spoofARP(0, 2000)
	resolveC()
	st = e.s.Stats()
	if st.NeighbourEntries > 1024 || st.NeighboursRemoved == 0 || st.NeighboursCreated != st.NeighboursRemoved+st.NeighbourEntries {
		t.Errorf("stats %+v: entries over the bound, or made != removed + present", st)
	}
	e.checkHeld()
}

// TestNeighbourGCPeriodic: above GCThresh1 the periodic pass removes failed entries at once and others
// after GCStaleTime without use; a neighbour in use stays, and nothing is collected below GCThresh1.
func TestNeighbourGCPeriodic(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		lan18(c)
		c.NeighbourGCThresh1, c.NeighbourGCThresh2, c.NeighbourGCThresh3 = 8, 64, 128
	})
	e.spoofARP(0, 6) // 2 + 6 entries: at GCThresh1
	// A next hop that fails (198.18.0.200 never answers).
	dead := lanHost(197)
	e.inject(portWan, udpFrame(macWan, macB, netip.AddrPortFrom(ipB, 1), netip.AddrPortFrom(dead, 2), 64, nil))
	for range 10 {
		if n, _ := e.neighbour(dead); n.State == NeighbourFailed {
			break
		}
		e.l.Advance(time.Second)
	}
	e.l.Advance(time.Duration(gcInterval)) // the next periodic pass
	if _, ok := e.neighbour(dead); ok {
		t.Errorf("failed neighbour %v not collected", dead)
	}
	// Keep B in use; the spoofed senders and A idle.
	for range 7 {
		e.l.Advance(10 * time.Second)
		e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipB, 2), 64, nil))
		e.l.Sent(portWan)
	}
	e.l.Advance(5 * time.Second)
	if _, ok := e.neighbour(ipB); !ok {
		t.Errorf("B, in use, was collected")
	}
	if _, ok := e.neighbour(lanHost(0)); ok {
		t.Errorf("spoofed sender idle for 70 s not collected: %v", e.s.Neighbours())
	}
	// Below GCThresh1 nothing goes, however idle (A, whom we sent nothing, is still there).
	e.l.Advance(10 * time.Minute)
	if _, ok := e.neighbour(ipA); !ok {
		t.Errorf("A collected below GCThresh1: %v", e.s.Neighbours())
	}
	e.checkHeld()
}

// TestNeighbourRemovedWhileCached: a queue that cached an entry (lastNeigh, neighCache) and holds packets
// for it finds it removed: the held packets drop as neighbour_removed, and the next packet makes a new
// entry and asks again instead of using the old MAC.
func TestNeighbourRemovedWhileCached(t *testing.T) {
	e := newEnv(t, nil)
	ipC := netip.MustParseAddr("198.19.0.3")
	send := func() {
		e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipC, 2), 64, nil))
	}
	send()
	send()
	e.l.Sent(portWan)
	n := e.s.neigh.get(nkey{1, naddr4(addr4(ipC))})
	if n == nil || !e.s.neigh.remove(n) {
		t.Fatal("no entry for C to remove")
	}
	e.l.Poll()
	if d := e.l.Dropped(DropNeighbourRemoved); d != 2 || e.l.Outstanding() != 0 {
		t.Fatalf("%d neighbour_removed drops, %d frames outstanding; want 2 and 0", d, e.l.Outstanding())
	}
	// B's entry is the queue's lastNeigh after this; remove it and send again.
	e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipFar, 2), 64, nil))
	e.l.Sent(portWan)
	e.s.neigh.remove(e.s.neigh.get(nkey{1, naddr4(addr4(ipB))}))
	e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipFar, 2), 64, nil))
	if a := mustARP(t, e.only(portWan)); a.TargetIP() != ipB {
		t.Fatalf("want a new request for B, got %+v", a.Fields())
	}
	e.inject(portWan, arpFrame(proto.ARPReply, macB, macWan, ipB, macWan, ipWan))
	if p := parseOut(t, e.only(portWan)); p.eth.Dst() != macB {
		t.Errorf("released to %v", p.eth.Dst())
	}
	e.checkHeld()
}

// TestExternalNeighboursNotCollected: entries an external resolver set are its owner's; the collector
// leaves them however idle, until ForgetNeighbour hands them back.
func TestExternalNeighboursNotCollected(t *testing.T) {
	e, _ := newExtEnv(t)
	e.s.neigh.thresh1 = 0
	e.l.Advance(10 * time.Minute)
	e.l.Advance(time.Minute)
	if _, ok := e.neighbour(ipA); !ok {
		t.Fatalf("external entry collected")
	}
	if err := e.s.ForgetNeighbour("lan", ipA); err != nil {
		t.Fatal(err)
	}
	e.l.Advance(time.Minute) // the first pass after ForgetNeighbour: idle for 11 min
	if _, ok := e.neighbour(ipA); ok {
		t.Errorf("forgotten entry not collected")
	}
}

// TestNeighbourTableConcurrent: queues creating, looking up and collecting at once (run with -race) keep
// the count exact and never hand out a removed entry for a key that has a live one.
func TestNeighbourTableConcurrent(t *testing.T) {
	var tb neighTable
	tb.init(16, 64, 256, time.Second)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(uint64(g), 1))
			for i := range 20000 {
				now := int64(i) * int64(time.Millisecond)
				k := nkey{uint32(r.IntN(2)), naddr4(uint32(r.IntN(1000)))}
				switch r.IntN(4) {
				case 0:
					if n := tb.get(k); n != nil {
						tb.remove(n)
					}
				case 1:
					tb.periodicGC(now)
				default:
					if n, _ := tb.getOrCreate(k, now, r.IntN(2) == 0); n != nil && n.key != k {
						t.Errorf("entry for %v returned for %v", n.key, k)
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	linked := 0
	tb.each(func(*neighbour) { linked++ })
	if int64(linked) != tb.count.Load() || linked > 256 {
		t.Errorf("%d linked, count %d, bound 256", linked, tb.count.Load())
	}
	if tb.made.Load() != tb.removed.Load()+uint64(linked) {
		t.Errorf("made %d != removed %d + linked %d", tb.made.Load(), tb.removed.Load(), linked)
	}
}

// BenchmarkNeighbourInsert makes and removes entries in a table of 16384: the cost does not grow with the
// table (the old copy-on-write map copied every entry on each insert).
func BenchmarkNeighbourInsert(b *testing.B) {
	var tb neighTable
	tb.init(1<<14, 1<<14, 1<<14, time.Minute)
	for i := range 1<<14 - 1 {
		tb.getOrCreate(nkey{0, naddr4(uint32(i))}, 0, true)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n, _ := tb.getOrCreate(nkey{1, naddr4(uint32(i))}, 0, true)
		tb.remove(n)
	}
}
