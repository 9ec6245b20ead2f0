package stack

import (
	"math/bits"
	"net/netip"
	"slices"
	"sync/atomic"
)

// oldLPM6 is the IPv6 table this package had before lpm6.go's poptrie (a 16-bit direct table over stride-8
// tries with 256-bit maps, reached through a chunk table of trie pointers), kept here only as the
// baseline of BenchmarkLookup6: the two run side by side so that their ratio is measured on the same
// machine in the same run.
type oldLPM6 struct {
	direct []uint32 // by the first 16 bits: a route id, or oldTrie6Flag | a trie slot
	// tries holds the trie of each slot in chunks that are allocated on demand and never move, so that
	// the writer adds slots while readers index them without a lock (a growing slice's header would be
	// read torn, and its old array would miss the new slots).
	tries  *[oldTrie6Chunks]atomic.Pointer[oldTrie6Chunk]
	ntries uint32 // the writer's next never used slot

	// The writer's state.
	rib   map[netip.Prefix]uint32   // every prefix and its route id: what the table is built from
	byTop map[uint32][]netip.Prefix // prefixes longer than /16, by their first 16 bits, sorted
	dirty map[uint32]bool           // /16s changed since the last commit
	free  []uint32                  // trie slots no reader can still be using
	limbo []limboItem               // trie slots unlinked at an epoch, reusable after it
}

const oldTrie6Flag = 1 << 31

// Trie slots: 1024 chunks of 1024, a million in all - 16 times the /16s there are, which leaves room for
// the slots waiting out a grace period.
const (
	oldTrie6ChunkShift = 10
	oldTrie6Chunks     = 1 << 10
)

type oldTrie6Chunk [1 << oldTrie6ChunkShift]atomic.Pointer[oldTrie6]

// trie returns the trie of slot i, which a direct entry named.
func (t *oldLPM6) trie(i uint32) *oldTrie6 {
	return t.tries[(i>>oldTrie6ChunkShift)&(oldTrie6Chunks-1)].Load()[i&(1<<oldTrie6ChunkShift-1)].Load()
}

// oldTrie6 holds the nodes of one /16 (nodes[0] is the root, for the address's third byte) and the route
// ids of its leaf runs.
type oldTrie6 struct {
	nodes  []oldNode6
	values []uint32
}

// oldNode6 is one stride of 8 bits: slot s (the address byte at this level) either leads to a child node or
// ends the lookup with a route id. child and run are 256-bit maps: child marks slots with a child (found at
// nodes[cfirst + the number of child slots before s]); run marks the slots where a new value starts in the
// leaf-pushed array of the node's 256 values (slot 0 always does; a child slot continues the run before
// it), so that values[vfirst + runs up to s - 1] is the slot's route id.
type oldNode6 struct {
	child, run     [4]uint64
	cfirst, vfirst uint32
}

func newOldLPM6() *oldLPM6 {
	return &oldLPM6{direct: make([]uint32, 1<<16), tries: new([oldTrie6Chunks]atomic.Pointer[oldTrie6Chunk]), rib: map[netip.Prefix]uint32{},
		byTop: map[uint32][]netip.Prefix{}, dirty: map[uint32]bool{}}
}

// rank counts the bits of m below bit s, plus bit s itself when inclusive.
func oldRank(m *[4]uint64, s uint8, inclusive bool) uint32 {
	w := s >> 6
	below := uint64(1)<<(s&63) - 1
	if inclusive {
		below = below<<1 | 1
	}
	r := bits.OnesCount64(m[w] & below)
	switch w {
	case 3:
		r += bits.OnesCount64(m[2])
		fallthrough
	case 2:
		r += bits.OnesCount64(m[1])
		fallthrough
	case 1:
		r += bits.OnesCount64(m[0])
	}
	return uint32(r)
}

// lookup returns the route id of the longest prefix covering a (a 16-byte address), or 0.
func (t *oldLPM6) lookup(a *[16]byte) uint32 {
	e := atomic.LoadUint32(&t.direct[uint32(a[0])<<8|uint32(a[1])])
	if e&oldTrie6Flag == 0 {
		return e
	}
	tr := t.trie(e &^ oldTrie6Flag)
	n := &tr.nodes[0]
	for i := 2; i < 16; i++ {
		s := a[i]
		if n.child[s>>6]&(1<<(s&63)) != 0 {
			n = &tr.nodes[n.cfirst+oldRank(&n.child, s, false)]
			continue
		}
		return tr.values[n.vfirst+oldRank(&n.run, s, true)-1]
	}
	return 0 // not reached: nothing is longer than /128
}

// lookupBatch is lookup over up to 64 addresses, a level at a time: the node loads of different addresses
// do not depend on each other, so the CPU overlaps their cache misses, where one lookup waits for each of
// its levels in turn (the vector idea of VPP). out[i] is the route id of addrs[i].
func (t *oldLPM6) lookupBatch(addrs [][16]byte, out []uint32) {
	var trs [64]*oldTrie6
	var at [64]int32 // node index of each address still walking, -1 when done
	n := min(len(addrs), len(out), 64)
	walking := 0
	for i := range n {
		a := &addrs[i]
		e := atomic.LoadUint32(&t.direct[uint32(a[0])<<8|uint32(a[1])])
		if e&oldTrie6Flag == 0 {
			out[i], at[i] = e, -1
			continue
		}
		trs[i], at[i] = t.trie(e&^oldTrie6Flag), 0
		walking++
	}
	for level := 2; walking > 0 && level < 16; level++ {
		for i := range n {
			if at[i] < 0 {
				continue
			}
			tr := trs[i]
			nd := &tr.nodes[at[i]]
			s := addrs[i][level]
			if nd.child[s>>6]&(1<<(s&63)) != 0 {
				at[i] = int32(nd.cfirst + oldRank(&nd.child, s, false))
				continue
			}
			out[i], at[i] = tr.values[nd.vfirst+oldRank(&nd.run, s, true)-1], -1
			walking--
		}
	}
}

// set makes id the route of p (id 0 removes it). Lookups see the change after commit.
func (t *oldLPM6) set(p netip.Prefix, id uint32) {
	if id == 0 {
		if _, ok := t.rib[p]; !ok {
			return
		}
		delete(t.rib, p)
	} else {
		t.rib[p] = id
	}
	a := p.Addr().As16()
	first := uint32(a[0])<<8 | uint32(a[1])
	if p.Bits() <= 16 {
		// A prefix of 16 bits or fewer is the default of every /16 it covers.
		for top := first; top < first+1<<(16-p.Bits()); top++ {
			t.dirty[top] = true
		}
		return
	}
	l := t.byTop[first]
	i, found := slices.BinarySearchFunc(l, p, oldComparePrefix)
	switch {
	case id == 0 && found:
		l = slices.Delete(l, i, i+1)
	case id != 0 && !found:
		l = slices.Insert(l, i, p)
	}
	if len(l) == 0 {
		delete(t.byTop, first)
	} else {
		t.byTop[first] = l
	}
	t.dirty[first] = true
}

// commit rebuilds every /16 that set changed and publishes each with one atomic store. epoch is the
// routeTable's current epoch, safe the oldest one a reader may still be in: a trie slot unlinked now is
// reused only once safe has passed epoch.
func (t *oldLPM6) commit(epoch, safe uint64) {
	t.limbo = reclaimLimbo(t.limbo, safe, &t.free)
	for top := range t.dirty {
		old := t.direct[top]
		e := t.bestShort(top)
		if l := t.byTop[top]; len(l) > 0 {
			tr := &oldTrie6{}
			tr.build(t, l, 16, e)
			var slot uint32
			if k := len(t.free); k > 0 {
				slot, t.free = t.free[k-1], t.free[:k-1]
			} else {
				slot = t.ntries
				if slot>>oldTrie6ChunkShift >= oldTrie6Chunks {
					panic("oldLPM6: a million trie slots") // 16 per /16: a reader stuck in one epoch
				}
				t.ntries++
				if t.tries[slot>>oldTrie6ChunkShift].Load() == nil {
					// Published before any direct entry names a slot in it.
					t.tries[slot>>oldTrie6ChunkShift].Store(new(oldTrie6Chunk))
				}
			}
			t.tries[slot>>oldTrie6ChunkShift].Load()[slot&(1<<oldTrie6ChunkShift-1)].Store(tr)
			e = oldTrie6Flag | slot
		}
		atomic.StoreUint32(&t.direct[top], e)
		if old&oldTrie6Flag != 0 {
			t.limbo = append(t.limbo, limboItem{idx: old &^ oldTrie6Flag, epoch: epoch})
		}
	}
	clear(t.dirty)
}

// bestShort is the route id of the longest prefix of length <= 16 covering /16 number top.
func (t *oldLPM6) bestShort(top uint32) uint32 {
	var a [16]byte
	a[0], a[1] = byte(top>>8), byte(top)
	addr := netip.AddrFrom16(a)
	for l := 16; l >= 0; l-- {
		p, _ := addr.Prefix(l)
		if id, ok := t.rib[p]; ok {
			return id
		}
	}
	return 0
}

// build appends to tr the nodes for prefixes (sorted, all longer than depth, all inside one depth-bit
// prefix whose best shorter route is def), root first and every node's children contiguous (breadth first).
func (tr *oldTrie6) build(t *oldLPM6, prefixes []netip.Prefix, depth int, def uint32) {
	type job struct {
		prefixes []netip.Prefix
		depth    int
		def      uint32
	}
	queue := []job{{prefixes, depth, def}}
	tr.nodes = append(tr.nodes, oldNode6{})
	for k := 0; k < len(queue); k++ {
		j := queue[k]
		b := j.depth / 8
		var vals [256]uint32
		for i := range vals {
			vals[i] = j.def
		}
		// Paint the prefixes ending in this stride, shortest first, so that longer ones win (leaf pushing).
		for l := j.depth + 1; l <= j.depth+8; l++ {
			for _, p := range j.prefixes {
				if p.Bits() == l {
					s := int(p.Addr().As16()[b])
					for x := s; x < s+1<<(j.depth+8-l); x++ {
						vals[x] = t.rib[p]
					}
				}
			}
		}
		// A node's index is its job's index in the queue, so its children will be where the queue ends now.
		n := oldNode6{cfirst: uint32(len(queue))}
		// Children: the slots under which longer prefixes exist; sorted input makes each slot's a run.
		for i := 0; i < len(j.prefixes); {
			s := j.prefixes[i].Addr().As16()[b]
			var deeper []netip.Prefix
			for ; i < len(j.prefixes) && j.prefixes[i].Addr().As16()[b] == s; i++ {
				if j.prefixes[i].Bits() > j.depth+8 {
					deeper = append(deeper, j.prefixes[i])
				}
			}
			if len(deeper) > 0 {
				n.child[s>>6] |= 1 << (s & 63)
				queue = append(queue, job{deeper, j.depth + 8, vals[s]})
			}
		}
		n.vfirst = uint32(len(tr.values))
		for s := 0; s < 256; s++ {
			isChild := n.child[s>>6]&(1<<(s&63)) != 0
			if s == 0 || !isChild && vals[s] != tr.values[len(tr.values)-1] {
				n.run[s>>6] |= 1 << (s & 63)
				tr.values = append(tr.values, vals[s])
			}
		}
		tr.nodes[k] = n
		// Reserve the children's places; they are filled when their jobs come up, in queue order.
		for range len(queue) - len(tr.nodes) {
			tr.nodes = append(tr.nodes, oldNode6{})
		}
	}
}

// oldComparePrefix orders prefixes by address, then by length: a prefix comes before the longer ones inside it,
// and the prefixes under one slot of a node are contiguous.
func oldComparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// memory is the bytes the direct table and the tries hold.
func (t *oldLPM6) memory() int {
	total := len(t.direct)*4 + oldTrie6Chunks*8 + int(t.ntries+1<<oldTrie6ChunkShift-1)>>oldTrie6ChunkShift*(1<<oldTrie6ChunkShift)*8
	for i := range t.ntries {
		if tr := t.trie(i); tr != nil {
			total += 48 + cap(tr.nodes)*72 + cap(tr.values)*4
		}
	}
	return total
}
