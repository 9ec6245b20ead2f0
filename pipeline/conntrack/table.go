package conntrack

import (
	"fmt"
	"math"
	"math/bits"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdpnet/xdpnet/proto"
)

// DefaultMax is the default bound on connections (the kernel's nf_conntrack_max is of this order on a
// small host).
const DefaultMax = 65536

// MaxMax is the largest Config.Max: entry numbers are 24 bits in the index.
const MaxMax = 1 << 24

// refreshStep is the least gain for which a packet moves a connection's expiry within one state: a
// connection may so expire up to this much before its timeout after its last packet.
const refreshStep = int64(time.Second)

// Config configures a Table.
type Config struct {
	// Max bounds the connections (default DefaultMax); the table is allocated for it at New.
	Max int
	// Timeouts per protocol and state; zero fields take DefaultTimeouts.
	Timeouts Timeouts
	// Stripes is the number of lock stripes, a power of two; 0 picks up to 64, keeping at least 64
	// connections per stripe.
	Stripes int
}

// Conn is a connection as a lookup returns it: a copy, valid for the packet at hand.
type Conn struct {
	// ID names the connection while it lives (Table.Get); a later connection may reuse it.
	ID    uint32
	Dir   Dir // the direction of the packet looked up
	Orig  Tuple
	Reply Tuple
	State State
	Flags Flags
	// Expires is when the connection times out without further packets (the caller's clock, ns).
	Expires int64
}

// Tuple is the tuple of direction d.
func (c *Conn) Tuple(d Dir) Tuple {
	if d == Original {
		return c.Orig
	}
	return c.Reply
}

// Stats are the table's counters, summed over the stripes.
type Stats struct {
	Entries    uint64 // connections in the table now (expired ones not yet removed included)
	Max        uint64
	Found      uint64 // lookups that found a connection
	NotFound   uint64 // lookups that found none
	Invalid    uint64 // packets that did not fit their connection's TCP state
	Inserted   uint64 // connections added
	Exists     uint64 // inserts whose original tuple was already in the table
	Clash      uint64 // inserts refused because the reply tuple was taken (NAT tries another)
	Expired    uint64 // connections removed after their timeout
	EarlyDrop  uint64 // connections removed to make room (not assured, oldest first)
	Refused    uint64 // inserts refused because the stripe was full of assured connections
	IndexFull  uint64 // inserts refused because the stripe's index had no free slot (cannot happen below Max)
	ByState    [numStates]uint64
	Assured    uint64 // live connections with Assured
	Unreplied  uint64 // live connections without Replied
	StripeSize uint64 // connections per stripe: the bound early drop works within
}

type counters struct {
	found, notFound, invalid, inserted, exists, clash, expired, earlyDrop, refused, indexFull uint64
}

// entry is one connection. orig and reply are written only while both their stripes are locked; the state
// word and expiry are atomics, since the two directions update them under different locks; pkts[d] is
// written under the lock of direction d's stripe.
type entry struct {
	orig, reply Tuple
	sw          atomic.Uint32
	expires     atomic.Int64
	// prev and next link the owner stripe's FIFO of connections not yet assured, oldest first (early drop);
	// notInFIFO when unlinked.
	prev, next int32
	live       bool
	pkts       [2]uint64
}

const (
	none      = -1
	notInFIFO = -2
)

// stripe is one lock's share: the entries it owns (connections whose original tuple hashes here) and an
// open-addressing index (linear probing) of every tuple, of either direction, that hashes here.
type stripe struct {
	mu    sync.Mutex
	slots []uint64 // 0 empty; else hash low 32 bits << 32 | (entry+1) << 1 | dir
	mask  uint32
	free  []int32 // entries of this stripe not in use (a stack)
	first int32   // entry range [first, first+len)
	n     int     // live entries owned
	head  int32   // FIFO of entries not yet assured: head is the oldest
	tail  int32
	sweep int // makeRoom's cursor within the stripe's entries
	id    int
	ctr   counters
	_     [64]byte // keep neighbouring stripes' locks off one cache line
}

// Table is the connection table. See the package documentation.
type Table struct {
	cfg        Config
	to         timeoutNs
	seed       [2]uint64
	stripes    []stripe
	shift      uint // stripe = hash >> shift
	per        int  // entries per stripe
	entries    []entry
	sweepNext  atomic.Uint32
	stripeBits int
}

// New allocates a table for cfg.Max connections.
func New(cfg Config) (*Table, error) {
	if cfg.Max == 0 {
		cfg.Max = DefaultMax
	}
	if cfg.Max < 1 || cfg.Max > MaxMax {
		return nil, fmt.Errorf("conntrack: Max %d: want 1..%d connections", cfg.Max, MaxMax)
	}
	if cfg.Stripes == 0 {
		cfg.Stripes = 1
		for cfg.Stripes < 64 && cfg.Max/(cfg.Stripes*2) >= 64 {
			cfg.Stripes *= 2
		}
	}
	if cfg.Stripes < 1 || cfg.Stripes&(cfg.Stripes-1) != 0 || cfg.Stripes > cfg.Max {
		return nil, fmt.Errorf("conntrack: Stripes %d: want a power of two no larger than Max (%d), or 0 for the default", cfg.Stripes, cfg.Max)
	}
	cfg.Timeouts.fill()
	tb := &Table{cfg: cfg, to: cfg.Timeouts.ns(), seed: [2]uint64{rand.Uint64(), rand.Uint64()}}
	tb.stripeBits = bits.TrailingZeros(uint(cfg.Stripes))
	tb.shift = uint(64 - tb.stripeBits)
	tb.per = (cfg.Max + cfg.Stripes - 1) / cfg.Stripes
	tb.entries = make([]entry, tb.per*cfg.Stripes)
	// Two tuples per connection; four slots per connection keep the index at most half full on average. The
	// reply tuples of one stripe's connections land in other stripes, so a stripe's index load varies around
	// 2*per; 4*per leaves room for that (IndexFull counts the overflow that never happens in practice).
	nslots := 1 << bits.Len(uint(4*tb.per-1))
	tb.stripes = make([]stripe, cfg.Stripes)
	for i := range tb.stripes {
		s := &tb.stripes[i]
		s.slots = make([]uint64, nslots)
		s.mask = uint32(nslots - 1)
		s.first = int32(i * tb.per)
		s.id = i
		s.free = make([]int32, tb.per)
		for j := range s.free {
			s.free[j] = s.first + int32(tb.per-1-j)
		}
		s.head, s.tail = none, none
	}
	for i := range tb.entries {
		tb.entries[i].prev = notInFIFO
		tb.entries[i].expires.Store(math.MaxInt64)
	}
	return tb, nil
}

// Max is the bound on connections.
func (tb *Table) Max() int { return len(tb.entries) }

func (tb *Table) stripeOf(h uint64) *stripe { return &tb.stripes[h>>tb.shift] }

func (tb *Table) owner(idx int32) *stripe { return &tb.stripes[int(idx)/tb.per] }

// find returns the slot position and value of tuple t (hash h) in s, or -1.
func (tb *Table) find(s *stripe, h uint64, t Tuple) (int, uint64) {
	tag := uint64(uint32(h)) << 32
	for i, n := uint32(h)&s.mask, 0; n <= int(s.mask); i, n = (i+1)&s.mask, n+1 {
		v := s.slots[i]
		if v == 0 {
			return -1, 0
		}
		if v&^0xffffffff != tag {
			continue
		}
		e := &tb.entries[int32(v>>1&0xffffff)-1]
		if v&1 == 0 && e.orig == t || v&1 == 1 && e.reply == t {
			return int(i), v
		}
	}
	return -1, 0
}

// put adds tuple t (hash h) of entry idx, direction d, to s's index; false when the index is full.
func (s *stripe) put(h uint64, idx int32, d Dir) bool {
	v := uint64(uint32(h))<<32 | uint64(idx+1)<<1 | uint64(d)
	for i, n := uint32(h)&s.mask, 0; n <= int(s.mask); i, n = (i+1)&s.mask, n+1 {
		if s.slots[i] == 0 {
			s.slots[i] = v
			return true
		}
	}
	return false
}

// remove empties slot pos and shifts the following run back (deletion without tombstones in linear
// probing), so that every remaining tuple stays reachable from its home slot.
func (s *stripe) remove(pos uint32) {
	for {
		s.slots[pos] = 0
		j := pos
		for {
			j = (j + 1) & s.mask
			v := s.slots[j]
			if v == 0 {
				return
			}
			home := uint32(v>>32) & s.mask
			// Move v into the hole unless its home lies cyclically in (pos, j].
			if (j > pos && (home <= pos || home > j)) || (j < pos && home <= pos && home > j) {
				s.slots[pos] = v
				pos = j
				break
			}
		}
	}
}

func (s *stripe) fifoPush(tb *Table, idx int32) {
	e := &tb.entries[idx]
	e.prev, e.next = s.tail, none
	if s.tail == none {
		s.head = idx
	} else {
		tb.entries[s.tail].next = idx
	}
	s.tail = idx
}

func (s *stripe) fifoUnlink(tb *Table, idx int32) {
	e := &tb.entries[idx]
	if e.prev == notInFIFO {
		return
	}
	if e.prev == none {
		s.head = e.next
	} else {
		tb.entries[e.prev].next = e.next
	}
	if e.next == none {
		s.tail = e.prev
	} else {
		tb.entries[e.next].prev = e.prev
	}
	e.prev, e.next = notInFIFO, none
}

// lock2 locks the stripes a and b in stripe order (once when they are the same).
func (tb *Table) lock2(a, b *stripe) {
	switch {
	case a == b:
		a.mu.Lock()
	case a.id < b.id:
		a.mu.Lock()
		b.mu.Lock()
	default:
		b.mu.Lock()
		a.mu.Lock()
	}
}

func unlock2(a, b *stripe) {
	a.mu.Unlock()
	if b != a {
		b.mu.Unlock()
	}
}

// del removes entry idx; the caller holds the locks of both its tuples' stripes. why counts the removal.
func (tb *Table) del(idx int32, why *uint64) {
	e := &tb.entries[idx]
	for d, t := range [2]Tuple{e.orig, e.reply} {
		h := tb.hash(t)
		s := tb.stripeOf(h)
		if pos, v := tb.find(s, h, t); pos >= 0 && int32(v>>1&0xffffff)-1 == idx && Dir(v&1) == Dir(d) {
			s.remove(uint32(pos))
		}
	}
	o := tb.owner(idx)
	o.fifoUnlink(tb, idx)
	e.live = false
	e.pkts = [2]uint64{}
	e.expires.Store(math.MaxInt64)
	o.free = append(o.free, idx)
	o.n--
	*why++
}

// otherStripe is the stripe of the tuple of idx that is not in direction d.
func (tb *Table) otherStripe(idx int32, d Dir) *stripe {
	e := &tb.entries[idx]
	if d == Original {
		return tb.stripeOf(tb.hash(e.reply))
	}
	return tb.stripeOf(tb.hash(e.orig))
}

func (tb *Table) fill(c *Conn, idx int32, d Dir) {
	e := &tb.entries[idx]
	s, f := split(e.sw.Load())
	*c = Conn{ID: uint32(idx), Dir: d, Orig: e.orig, Reply: e.reply, State: s, Flags: f &^ (finOrig | finReply),
		Expires: e.expires.Load()}
}

// Lookup finds the connection tuple t belongs to (either direction) without changing it: for ICMP errors,
// which quote a packet of a connection but are not part of its state.
func (tb *Table) Lookup(t Tuple, now int64) (Conn, bool) {
	var c Conn
	h := tb.hash(t)
	s := tb.stripeOf(h)
	s.mu.Lock()
	pos, v := tb.find(s, h, t)
	if pos < 0 {
		s.ctr.notFound++
		s.mu.Unlock()
		return c, false
	}
	idx := int32(v>>1&0xffffff) - 1
	if now-tb.entries[idx].expires.Load() >= 0 {
		s.ctr.notFound++
		s.mu.Unlock()
		return c, false
	}
	s.ctr.found++
	tb.fill(&c, idx, Dir(v&1))
	s.mu.Unlock()
	return c, true
}

// Track finds the connection of a packet with tuple t and advances it: TCP state by tcpFlags (ignored for
// other protocols), Replied/Assured, the expiry. ok is false when no live connection has the tuple (an
// expired one is removed). v is Invalid for a TCP packet that does not fit the state; the connection is
// then left as it was, as nf_conntrack leaves it for an INVALID packet.
func (tb *Table) Track(t Tuple, tcpFlags proto.TCPFlags, now int64) (c Conn, v Verdict, ok bool) {
	h := tb.hash(t)
	s := tb.stripeOf(h)
	s.mu.Lock()
	pos, sv := tb.find(s, h, t)
	if pos < 0 {
		s.ctr.notFound++
		s.mu.Unlock()
		return c, Valid, false
	}
	idx, d := int32(sv>>1&0xffffff)-1, Dir(sv&1)
	e := &tb.entries[idx]
	if now-e.expires.Load() >= 0 {
		s.ctr.notFound++
		s.mu.Unlock()
		tb.reap(t, now)
		return c, Valid, false
	}
	s.ctr.found++
	e.pkts[d]++
	for {
		w := e.sw.Load()
		st, f := split(w)
		nst, nf, verdict := st, f, Valid
		if t.Proto == proto.ProtoTCP {
			nst, nf, verdict = next(st, f, d, tcpFlags)
			if verdict == Invalid {
				s.ctr.invalid++
				tb.fill(&c, idx, d)
				s.mu.Unlock()
				return c, Invalid, true
			}
		}
		if d == Reply {
			nf |= Replied
			if t.Proto == proto.ProtoICMP {
				nf |= Assured
			}
		} else if t.Proto == proto.ProtoUDP && nf&Replied != 0 {
			nf |= Assured // traffic both ways and more: a stream (nf_conntrack_udp's IPS_ASSURED)
		}
		nw := word(nst, nf)
		if nw != w && !e.sw.CompareAndSwap(w, nw) {
			continue
		}
		// The expiry follows the state this packet left; a late store from the other direction can only
		// replace it with a timeout of a state seen a moment ago. Within a state it is moved only when it
		// gains a second or more (as nf_ct_refresh skips small changes), sparing most packets the store.
		if exp := now + tb.to.of(t.Proto, nst, nf); nw != w || exp-e.expires.Load() >= refreshStep {
			e.expires.Store(exp)
		}
		if nst == StateSynSent && st != StateSynSent && st != StateNone && d == Original {
			// Reopened from TIME_WAIT/CLOSE: not assured any more, early drop may take it again.
			if e.prev == notInFIFO {
				s.fifoPush(tb, idx)
			}
		}
		break
	}
	tb.fill(&c, idx, d)
	s.mu.Unlock()
	return c, Valid, true
}

// Get returns the live connection id with its tuple in direction d, for a later hook of a packet Track
// already classified; ok is false when it has gone.
func (tb *Table) Get(id uint32, d Dir) (Conn, bool) {
	var c Conn
	if int(id) >= len(tb.entries) {
		return c, false
	}
	idx := int32(id)
	s := tb.owner(idx)
	s.mu.Lock()
	if !tb.entries[idx].live {
		s.mu.Unlock()
		return c, false
	}
	tb.fill(&c, idx, d)
	s.mu.Unlock()
	return c, true
}

// reap removes the connection holding tuple t if it has expired. It takes the locks itself.
func (tb *Table) reap(t Tuple, now int64) {
	h := tb.hash(t)
	s := tb.stripeOf(h)
	s.mu.Lock()
	pos, v := tb.find(s, h, t)
	if pos < 0 {
		s.mu.Unlock()
		return
	}
	idx, d := int32(v>>1&0xffffff)-1, Dir(v&1)
	o := tb.otherStripe(idx, d)
	if o != s && !o.mu.TryLock() {
		// Locks are taken in stripe order: let go and take both.
		s.mu.Unlock()
		tb.lock2(s, o)
		if p2, v2 := tb.find(s, h, t); p2 < 0 || v2 != v || tb.otherStripe(idx, d) != o {
			unlock2(s, o)
			return
		}
	}
	if now-tb.entries[idx].expires.Load() >= 0 {
		tb.del(idx, &tb.owner(idx).ctr.expired)
	}
	unlock2(s, o)
}

// InsertResult says what Insert did.
type InsertResult uint8

const (
	Inserted  InsertResult = iota
	Exists                 // the original tuple (or its inverse) belongs to a live connection, returned instead
	Clash                  // the reply tuple belongs to a live connection: choose another (NAT)
	Full                   // no room: the stripe holds only assured connections (counted as Refused)
	Malformed              // the reply tuple equals the original one
)

var insertNames = [...]string{"inserted", "exists", "clash", "full", "malformed"}

func (r InsertResult) String() string {
	if int(r) < len(insertNames) {
		return insertNames[r]
	}
	return "insert?"
}

// Insert adds a connection whose first packet, with tcpFlags, had tuple orig and whose answers will carry
// reply (orig inverted, or translated by NAT). It refuses a reply tuple that a live connection holds in
// either direction, which is how NAT never reuses a live mapping. When the original tuple is already
// known (a packet of the same new flow on another queue got there first) it returns that connection,
// tracked with this packet. When the stripe is full it removes the oldest connection there that is not
// assured (early drop), or refuses.
func (tb *Table) Insert(orig, reply Tuple, tcpFlags proto.TCPFlags, now int64) (Conn, InsertResult) {
	var c Conn
	if orig == reply || orig.Proto != reply.Proto {
		return c, Malformed
	}
	ho, hr := tb.hash(orig), tb.hash(reply)
	so, sr := tb.stripeOf(ho), tb.stripeOf(hr)
	for attempt := 0; ; attempt++ {
		tb.lock2(so, sr)
		if pos, v := tb.find(so, ho, orig); pos >= 0 {
			if attempt < 2 && tb.expired(v, now) {
				unlock2(so, sr)
				tb.reap(orig, now)
				continue
			}
			so.ctr.exists++
			unlock2(so, sr)
			c, _, _ = tb.Track(orig, tcpFlags, now)
			return c, Exists
		}
		if pos, v := tb.find(sr, hr, reply); pos >= 0 {
			if attempt < 2 && tb.expired(v, now) {
				unlock2(so, sr)
				tb.reap(reply, now)
				continue
			}
			so.ctr.clash++
			unlock2(so, sr)
			return c, Clash
		}
		break
	}
	// Both stripes locked, neither tuple present.
	if len(so.free) == 0 && !tb.makeRoom(so, sr, now) {
		so.ctr.refused++
		unlock2(so, sr)
		return c, Full
	}
	idx := so.free[len(so.free)-1]
	if !so.put(ho, idx, Original) {
		so.ctr.indexFull++
		unlock2(so, sr)
		return c, Full
	}
	if !sr.put(hr, idx, Reply) {
		pos, _ := tb.find(so, ho, orig)
		so.remove(uint32(pos))
		so.ctr.indexFull++
		unlock2(so, sr)
		return c, Full
	}
	so.free = so.free[:len(so.free)-1]
	so.n++
	e := &tb.entries[idx]
	e.orig, e.reply, e.live, e.pkts = orig, reply, true, [2]uint64{1, 0}
	st, f := StateNone, Flags(0)
	if orig.Proto == proto.ProtoTCP {
		st, f, _ = next(StateNone, 0, Original, tcpFlags)
	}
	e.sw.Store(word(st, f))
	e.expires.Store(now + tb.to.of(orig.Proto, st, f))
	so.fifoPush(tb, idx)
	so.ctr.inserted++
	tb.fill(&c, idx, Original)
	unlock2(so, sr)
	return c, Inserted
}

func (tb *Table) expired(v uint64, now int64) bool {
	return now-tb.entries[int32(v>>1&0xffffff)-1].expires.Load() >= 0
}

// makeRoom frees an entry of s, whose lock the caller holds with held's: an expired one among the next
// few, else the oldest connection of its FIFO that is not assured (early drop). Assured connections met on
// the way leave the FIFO. A victim whose other stripe is locked by someone else is passed over, as the
// locks are not taken out of order.
func (tb *Table) makeRoom(s, held *stripe, now int64) bool {
	lockOther := func(idx int32) (*stripe, bool) {
		o := tb.stripeOf(tb.hash(tb.entries[idx].reply))
		if o == s || o == held {
			return o, true
		}
		return o, o.mu.TryLock()
	}
	release := func(o *stripe) {
		if o != s && o != held {
			o.mu.Unlock()
		}
	}
	// Expired connections first: a few, from the stripe's sweep cursor.
	for i := 0; i < 16; i++ {
		s.sweep = (s.sweep + 1) % tb.per
		idx := s.first + int32(s.sweep)
		e := &tb.entries[idx]
		if e.live && now-e.expires.Load() >= 0 {
			if o, ok := lockOther(idx); ok {
				tb.del(idx, &s.ctr.expired)
				release(o)
				return true
			}
		}
	}
	for idx := s.head; idx != none; {
		e := &tb.entries[idx]
		nx := e.next
		_, f := split(e.sw.Load())
		if f&Assured != 0 && now-e.expires.Load() < 0 {
			s.fifoUnlink(tb, idx)
		} else if o, ok := lockOther(idx); ok {
			if f&Assured != 0 {
				tb.del(idx, &s.ctr.expired)
			} else {
				tb.del(idx, &s.ctr.earlyDrop)
			}
			release(o)
			return true
		}
		idx = nx
	}
	return false
}

// Sweep removes expired connections among the next n entries of the table, round robin: a stage calls it
// once per batch with a small n, so that connections nobody looks up again still leave.
func (tb *Table) Sweep(now int64, n int) {
	end := tb.sweepNext.Add(uint32(n))
	for i := end - uint32(n); i != end; i++ {
		idx := int32(i % uint32(len(tb.entries)))
		e := &tb.entries[idx]
		// Free entries hold a far expiry (del), so most entries are passed over without the lock.
		if now-e.expires.Load() < 0 {
			continue
		}
		s := tb.owner(idx)
		s.mu.Lock()
		if !e.live || now-e.expires.Load() < 0 {
			s.mu.Unlock()
			continue
		}
		o := tb.stripeOf(tb.hash(e.reply))
		if o == s || o.mu.TryLock() {
			tb.del(idx, &s.ctr.expired)
			if o != s {
				o.mu.Unlock()
			}
		}
		s.mu.Unlock()
	}
}

// Stats sums the stripes' counters and walks the live connections for the gauges.
func (tb *Table) Stats() Stats {
	st := Stats{Max: uint64(len(tb.entries)), StripeSize: uint64(tb.per)}
	for i := range tb.stripes {
		s := &tb.stripes[i]
		s.mu.Lock()
		c := s.ctr
		st.Entries += uint64(s.n)
		for idx := s.first; idx < s.first+int32(tb.per); idx++ {
			e := &tb.entries[idx]
			if !e.live {
				continue
			}
			state, f := split(e.sw.Load())
			st.ByState[state]++
			if f&Assured != 0 {
				st.Assured++
			}
			if f&Replied == 0 {
				st.Unreplied++
			}
		}
		s.mu.Unlock()
		st.Found += c.found
		st.NotFound += c.notFound
		st.Invalid += c.invalid
		st.Inserted += c.inserted
		st.Exists += c.exists
		st.Clash += c.clash
		st.Expired += c.expired
		st.EarlyDrop += c.earlyDrop
		st.Refused += c.refused
		st.IndexFull += c.indexFull
	}
	return st
}

// Conns calls fn with every live connection (a copy; Dir is Original), stripe by stripe: for tests and
// for showing the table, not for the packet path.
func (tb *Table) Conns(fn func(c Conn, pkts [2]uint64)) {
	for i := range tb.stripes {
		s := &tb.stripes[i]
		s.mu.Lock()
		for idx := s.first; idx < s.first+int32(tb.per); idx++ {
			if e := &tb.entries[idx]; e.live {
				var c Conn
				tb.fill(&c, idx, Original)
				pkts := e.pkts
				s.mu.Unlock()
				fn(c, pkts)
				s.mu.Lock()
			}
		}
		s.mu.Unlock()
	}
}
