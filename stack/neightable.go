package stack

import (
	"math/bits"
	"sync"
	"sync/atomic"
	"time"
)

// The neighbour table (the kernel's neigh_table: neigh_lookup, neigh_create, neigh_forced_gc,
// neigh_periodic_work), shared by every queue.
//
// It is a chained hash table whose bucket count is fixed at New (twice GCThresh3, a power of two): lookups
// walk a chain with atomic loads and take no lock; inserts and removals take one of neighStripes locks (the
// one of the bucket) and cost O(1), a chain being about one entry long. A removed entry is unlinked and
// marked neighRemoved but left intact - its next pointer still leads on - so a reader in the middle of a
// chain, or a queue that cached the pointer (neighCache, handler.lastNeigh), sees the mark and looks the
// key up again; the garbage collector frees it when the last pointer is gone, which is what the kernel's
// RCU grace period and reference count do for its entries.
//
// Bounds, as the kernel's gc_thresh1/2/3 (net.ipv4.neigh.default.gc_thresh*): below GCThresh1 nothing is
// collected; from GCThresh2 on, an insert collects (forced GC) at most every 5 s; at GCThresh3 every
// insert collects first and is refused if that frees nothing (neighbour_table_full). Every gcInterval the
// periodic pass removes failed entries and entries neither used nor confirmed for GCStaleTime.

// neighRemoved is the state of an entry the collector unlinked (never reported: Neighbours lists only
// linked entries). It is terminal: state changes made elsewhere never leave it (setState, confirm).
const neighRemoved NeighbourState = 15

// neighStripes is the number of writer locks; a bucket's lock is its index modulo neighStripes.
const neighStripes = 64

// Forced GC: an entry idle for forcedIdle may go (the kernel's neigh_forced_gc removes entries not updated
// for 5 s), and one pass looks at no more than forcedScan buckets (a clock hand goes round the table
// across passes), so that an insert into a full table costs a bounded time.
const (
	forcedIdle     = int64(5 * time.Second)
	forcedInterval = int64(5 * time.Second) // between forced passes above GCThresh2
	forcedScan     = 1024
	gcInterval     = int64(5 * time.Second) // between periodic passes
	// usedGrain is how stale an entry's used time may be: the per-packet path stores it at most once per
	// usedGrain, so a busy next hop does not turn its cache line into a store per packet.
	usedGrain = int64(time.Second)
)

type neighTable struct {
	buckets []atomic.Pointer[neighbour]
	shift   uint8
	locks   [neighStripes]sync.Mutex
	count   atomic.Int64

	thresh1, thresh2, thresh3 int64
	staleNs                   int64

	gcMu       sync.Mutex // one collector at a time; taken before a stripe lock, never after
	hand       int        // forced GC's next bucket (under gcMu)
	lastForced atomic.Int64
	nextGC     atomic.Int64

	made, removed, refused atomic.Uint64
}

func (t *neighTable) init(thresh1, thresh2, thresh3 int, stale time.Duration) {
	t.thresh1, t.thresh2, t.thresh3 = int64(thresh1), int64(thresh2), int64(thresh3)
	t.staleNs = int64(stale)
	n := 1 << bits.Len(uint(2*thresh3-1)) // the power of two >= 2*thresh3
	t.buckets = make([]atomic.Pointer[neighbour], n)
	t.shift = uint8(32 - bits.TrailingZeros(uint(n)))
	t.lastForced.Store(-1 << 62)
}

func (t *neighTable) bucket(k nkey) uint32 {
	// Fibonacci hashing: the multiplication spreads consecutive addresses over the top bits.
	x := k.a.lo ^ bits.RotateLeft64(k.a.hi, 29)
	return uint32((x<<8|uint64(k.iface))*0x9e3779b97f4a7c15>>32) >> t.shift
}

// get returns the live entry for k, or nil. Lock-free.
func (t *neighTable) get(k nkey) *neighbour {
	for n := t.buckets[t.bucket(k)].Load(); n != nil; n = n.next.Load() {
		if n.key == k && NeighbourState(n.state.Load()) != neighRemoved {
			return n
		}
	}
	return nil
}

// getOrCreate returns the entry for k, making an incomplete one if there is none; nil (counted as refused)
// when the table is at GCThresh3 and collecting freed nothing. need says traffic waits for the entry
// (neigh_output), as opposed to an entry learnt from an ARP request: to make room for a needed entry the
// collector may also take a learnt entry that nothing ever sent to, however fresh, so that a flood of
// spoofed ARP requests cannot keep a real next hop out.
func (t *neighTable) getOrCreate(k nkey, now int64, need bool) (n *neighbour, created bool) {
	if n := t.get(k); n != nil {
		return n, false
	}
	c := t.count.Load()
	if c >= t.thresh3 || (c >= t.thresh2 && now-t.lastForced.Load() >= forcedInterval) {
		t.forcedGC(now, need)
	}
	// Reserve a place first, so that concurrent inserts never take the table past GCThresh3.
	if t.count.Add(1) > t.thresh3 {
		t.count.Add(-1)
		if n := t.get(k); n != nil { // made meanwhile by another queue
			return n, false
		}
		t.refused.Add(1)
		return nil, false
	}
	bi := t.bucket(k)
	mu := &t.locks[bi%neighStripes]
	mu.Lock()
	for x := t.buckets[bi].Load(); x != nil; x = x.next.Load() {
		if x.key == k && NeighbourState(x.state.Load()) != neighRemoved {
			mu.Unlock()
			t.count.Add(-1)
			return x, false
		}
	}
	n = &neighbour{key: k, created: now}
	n.state.Store(uint32(NeighbourIncomplete))
	n.probeAt.Store(neverProbed)
	if need {
		n.used.Store(now)
	}
	n.next.Store(t.buckets[bi].Load())
	t.buckets[bi].Store(n)
	mu.Unlock()
	t.made.Add(1)
	return n, true
}

// remove unlinks n if it is still in the table and marks it removed; false if it was gone already.
func (t *neighTable) remove(n *neighbour) bool {
	bi := t.bucket(n.key)
	mu := &t.locks[bi%neighStripes]
	mu.Lock()
	defer mu.Unlock()
	link := &t.buckets[bi]
	for x := link.Load(); x != nil; x = x.next.Load() {
		if x == n {
			// Readers on n keep walking through n.next, which is left as it is.
			link.Store(n.next.Load())
			n.state.Store(uint32(neighRemoved))
			t.count.Add(-1)
			t.removed.Add(1)
			return true
		}
		link = &x.next
	}
	return false
}

// lastActive is the latest of when n was made, confirmed and used.
func (n *neighbour) lastActive() int64 {
	return max(n.created, n.confirmed.Load(), n.used.Load())
}

// forcedGC is neigh_forced_gc: it removes failed entries and entries idle for forcedIdle until the table
// is back at GCThresh2, looking at no more than forcedScan buckets. For a needed entry in a full table it
// also takes, if nothing else went, one learnt entry that was never used.
func (t *neighTable) forcedGC(now int64, need bool) {
	t.gcMu.Lock()
	defer t.gcMu.Unlock()
	if t.count.Load() < t.thresh2 { // another queue collected meanwhile
		return
	}
	t.lastForced.Store(now)
	goal := t.count.Load() - t.thresh2
	var spare *neighbour
	freed := int64(0)
	for i := 0; i < forcedScan && i < len(t.buckets) && freed < max(goal, 1); i++ {
		bi := t.hand
		t.hand = (t.hand + 1) & (len(t.buckets) - 1)
		for n := t.buckets[bi].Load(); n != nil; n = n.next.Load() {
			switch {
			case n.external.Load():
			case NeighbourState(n.state.Load()) == NeighbourFailed || now-n.lastActive() > forcedIdle:
				if t.remove(n) {
					freed++
				}
			case need && spare == nil && n.used.Load() == 0:
				spare = n
			}
		}
	}
	if freed == 0 && spare != nil && t.count.Load() >= t.thresh3 {
		t.remove(spare)
	}
}

// periodicGC is neigh_periodic_work: when due and the table holds GCThresh1 entries or more, it removes
// failed entries and those neither made, confirmed nor used for GCStaleTime. Entries an external resolver
// set (SetNeighbour) are its owner's to remove. It reports when the next pass is due, 0 when none is
// needed (below GCThresh1).
func (t *neighTable) periodicGC(now int64) int64 {
	next := t.nextGC.Load()
	if t.count.Load() < t.thresh1 {
		return 0
	}
	if now < next {
		return next
	}
	if !t.nextGC.CompareAndSwap(next, now+gcInterval) || !t.gcMu.TryLock() {
		return now + gcInterval // another queue is on it
	}
	defer t.gcMu.Unlock()
	for bi := range t.buckets {
		for n := t.buckets[bi].Load(); n != nil; n = n.next.Load() {
			if n.external.Load() {
				continue
			}
			if NeighbourState(n.state.Load()) == NeighbourFailed || now-n.lastActive() > t.staleNs {
				t.remove(n)
			}
		}
	}
	return now + gcInterval
}

// each calls f for every linked entry.
func (t *neighTable) each(f func(*neighbour)) {
	for bi := range t.buckets {
		for n := t.buckets[bi].Load(); n != nil; n = n.next.Load() {
			if NeighbourState(n.state.Load()) != neighRemoved {
				f(n)
			}
		}
	}
}
