package stack

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"slices"
	"sync/atomic"
)

// lpm6 is the IPv6 longest-prefix-match table, a poptrie (Asai and Ohara, "Poptrie: A Compressed Trie with
// Population Count for Fast and Scalable Software IP Routing Table Lookup", SIGCOMM 2015): a direct table
// indexed by the first 18 bits of the address, whose entry is either the route of the longest prefix of
// length <= 18 or the offset of a node, and under it nodes of stride 6. A node is a block of uint32 words
// in one array:
//
//	vector   64 bits: slot s (the next 6 address bits) leads to a child node
//	leafvec  64 bits: slot s starts a new run of equal leaves among the slots without a child
//	the child offsets, one per bit of vector, in slot order
//	the leaves (route ids, leaf-pushed, runs compressed), one per bit of leafvec
//
// so a child is words[4 + popcount(vector below s)] and a leaf words[4 + popcount(vector) + popcount(leafvec
// up to s) - 1]. Poptrie keeps leaves and nodes in two arrays and finds children by arithmetic; here a node's
// leaves sit in its own block (a word per child more), so the last step - the one that misses the cache, the
// deep nodes of a 220 000-prefix table being too many to stay cached - reads one line, not two (a design
// choice, not measured against the two-array layout). The 18 direct bits and the stride of 6 put a /48,
// half of the table, in the fifth node (18, 24, 30, 36, 42 -> 48) and a /32 in the third; a lookup of an
// address in the synthetic table takes 4.5 node steps and touches 3.8 distinct cache lines on average.
//
// Measured (BenchmarkLookup6: 220 000 synthetic prefixes with the real length distribution, one core
// (-cpu 1), the old and the new table in the same run; a 2-core VM shared with other work, figures from a
// quiet moment, best and worst of 5 runs; under load, batch lookups took 40-90 ns instead of 31):
//
//	                       addresses in the table's prefixes      uniformly random        memory
//	                       one at a time     lookupBatch          one     lookupBatch
//	old stride-8 tries     3.7-7.0 M/s       7.0-8.8 M/s          53 M/s  159 M/s         25.9 MiB
//	this poptrie           5.2-17.9 M/s      31.6-32.2 M/s        119 M/s 227 M/s         13.3 MiB used,
//	                                                                                      19.8 allocated
//
// How it got there: memory latency on this machine is about 4 ns within 1 MiB, 20 ns within 4 MiB and
// 110-190 ns beyond 8 MiB (a pointer chase), so what counts is how many dependent misses a lookup has and
// how many lookups have theirs in flight at once. The old table had many (direct entry, a chunk of trie
// pointers, the trie, its node slice, a 72-byte node over two lines, a separate values array). This layout
// alone took the batch from 143 to 131 ns per lookup: a level-at-a-time walk with ordinary loads keeps only
// about a dozen misses in flight, since each load holds its place in the reorder buffer until it completes.
// Prefetching a level's nodes before reading them (prefetch6, assembly: Go has no prefetch intrinsic) took
// it to 52 ns; prefetching each chunk of 8 addresses' children as soon as they are known, so that they load
// while the rest of the level is worked on, to 31-40 ns. Transparent huge pages under the node array gained
// 13% on single lookups in a trial with mmap'd memory; through the Go heap the advice (adviseHuge) takes
// effect only on memory not touched before, so it is given but not counted on. A 24-bit direct table would
// save one node step for 64 MiB more; not tried. The forwarding path looks up the destinations of a whole
// batch with lookupBatch (handler.lookup6Batch).
//
// Concurrency: the arrays readers see (direct entries and node words) hang off one atomic pointer (fib6).
// An update (set, then commit) rebuilds the subtrie of each /18 it touched from the prefixes recorded for
// it into free words of the array - words no reader can reach - and publishes it with one atomic store of
// the direct entry, so a reader sees each /18 before or after the update, never half of it, without a lock.
// The words of the subtrie it replaced are reused only after the grace period (routeTable.safeEpoch).
// When the array has no room, or an update touches most of the table, commit rebuilds everything into new
// arrays and swaps the pointer; readers still on the old arrays finish there, and nothing is ever written
// to arrays that were swapped out. An update costs the size of the /18's subtrie (BenchmarkRouteUpdate6:
// about 10 us to add or delete a /48 in a full table); a prefix of /18 or shorter repaints the direct
// entries it covers and rebuilds the subtries under it. One writer at a time.
type lpm6 struct {
	cur atomic.Pointer[fib6]

	// The writer's state.
	rib      map[netip.Prefix]uint32   // every prefix and its route id: what the table is built from
	byTop    map[uint32][]netip.Prefix // prefixes longer than /18, by their first 18 bits, sorted
	short    []uint32                  // by the first 18 bits: the route id of the longest prefix <= /18
	depth    []int8                    // the length of that prefix, -1 for none
	dirty    []uint32                  // /18s changed since the last commit
	isDirt   []bool
	size     map[uint32]uint32   // the words of each region (a subtrie) by its offset, allocated or free
	free     map[uint32][]uint32 // regions no reader can still be using, by size
	limbo    []limboItem         // regions unlinked at an epoch, reusable after it
	used     uint32              // words handed out from the start of the array (the rest is never used)
	rebuilds int                 // times the whole table was rebuilt (tests)
	b        builder6
}

// fib6 is what readers load: the direct table and the node words.
type fib6 struct {
	direct []uint32 // 1 << lpm6Direct entries: a route id, or lpm6Node | a node's offset
	words  []uint32
}

const (
	lpm6Direct = 18
	lpm6Stride = 6
	lpm6Node   = 1 << 31
	// A node's header: vector and leafvec, two words each.
	lpm6Header = 4
	// lookupBatch prefetches the next level's nodes after every lpm6Chunk addresses it has stepped.
	lpm6Chunk = 8
)

func newLPM6() *lpm6 {
	t := &lpm6{rib: map[netip.Prefix]uint32{}, byTop: map[uint32][]netip.Prefix{}, short: make([]uint32, 1<<lpm6Direct),
		depth: make([]int8, 1<<lpm6Direct), isDirt: make([]bool, 1<<lpm6Direct), size: map[uint32]uint32{}, free: map[uint32][]uint32{}}
	t.b.rib = t.rib
	for i := range t.depth {
		t.depth[i] = -1
	}
	f := &fib6{direct: make([]uint32, 1<<lpm6Direct), words: make([]uint32, 1<<12)}
	adviseHuge(f.direct)
	t.cur.Store(f)
	return t
}

// lookup returns the route id of the longest prefix covering a (a 16-byte address), or 0.
func (t *lpm6) lookup(a *[16]byte) uint32 {
	f := t.cur.Load()
	hi, lo := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])
	e := atomic.LoadUint32(&f.direct[hi>>(64-lpm6Direct)])
	if e&lpm6Node == 0 {
		return e
	}
	// The address bits after the direct ones, left aligned: each level takes the top 6.
	hi, lo = hi<<lpm6Direct|lo>>(64-lpm6Direct), lo<<lpm6Direct
	w := f.words
	o := e &^ lpm6Node
	for {
		n := w[o:]
		_ = n[lpm6Header-1]
		vec := uint64(n[0]) | uint64(n[1])<<32
		bit := uint64(1) << (hi >> (64 - lpm6Stride))
		if vec&bit == 0 {
			leaves := uint64(n[2]) | uint64(n[3])<<32
			return n[lpm6Header+bits.OnesCount64(vec)+bits.OnesCount64(leaves&(bit|(bit-1)))-1]
		}
		o = n[lpm6Header+bits.OnesCount64(vec&(bit-1))]
		hi, lo = hi<<lpm6Stride|lo>>(64-lpm6Stride), lo<<lpm6Stride
	}
}

// lookupBatch is lookup over up to 64 addresses, a level at a time: the node loads of different addresses
// do not depend on each other, so the CPU overlaps their cache misses, where one lookup waits for each of
// its levels in turn (the vector idea of VPP). The step has no branch on what the node holds - a
// mispredicted one would discard the loads of the addresses after it - so it computes both the child and
// the leaf: the leaf it writes for an address that goes on is overwritten at a later level. out[i] is the
// route id of addrs[i].
func (t *lpm6) lookupBatch(addrs [][16]byte, out []uint32) {
	f := t.cur.Load()
	n := min(len(addrs), len(out), 64)
	// The addresses still walking, compacted each level into the other list: a level reads one and
	// writes the other, so that no load waits on a store whose index is still unknown.
	var st [2]walk6
	cur, next := &st[0], &st[1]
	k := 0
	for i := range n {
		a := &addrs[i]
		h, l := binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])
		e := atomic.LoadUint32(&f.direct[h>>(64-lpm6Direct)])
		out[i] = e
		cur.hi[k], cur.lo[k], cur.at[k], cur.idx[k] = h<<lpm6Direct|l>>(64-lpm6Direct), l<<lpm6Direct, e&^lpm6Node, uint8(i)
		k += int(e >> 31) // walks on only if e is a node
	}
	w := f.words
	prefetch6(&w[0], &cur.at[0], k)
	for k > 0 {
		j := 0
		for i0 := 0; i0 < k; i0 += lpm6Chunk {
			j0 := j
			for i := i0; i < min(i0+lpm6Chunk, k); i++ {
				nd := w[cur.at[i]:]
				_ = nd[lpm6Header-1]
				vec := uint64(nd[0]) | uint64(nd[1])<<32
				leaves := uint64(nd[2]) | uint64(nd[3])<<32
				h, l := cur.hi[i], cur.lo[i]
				s := h >> (64 - lpm6Stride)
				bit := uint64(1) << s
				child := nd[lpm6Header+bits.OnesCount64(vec&(bit-1))]
				out[cur.idx[i]] = nd[lpm6Header+bits.OnesCount64(vec)+bits.OnesCount64(leaves&(bit|(bit-1)))-1]
				next.hi[j], next.lo[j], next.at[j], next.idx[j] = h<<lpm6Stride|l>>(64-lpm6Stride), l<<lpm6Stride, child, cur.idx[i]
				j += int((vec & bit) >> s)
			}
			// The children of this chunk load while the rest of the level is worked on.
			prefetch6(&w[0], &next.at[j0], j-j0)
		}
		k = j
		cur, next = next, cur
	}
}

// walk6 is the addresses lookupBatch is walking: the address bits not yet used, left aligned, the node
// to read, and the index in the caller's slice.
type walk6 struct {
	hi, lo [64]uint64
	at     [64]uint32
	idx    [64]uint8
}

// set makes id the route of p (id 0 removes it). Lookups see the change after commit.
func (t *lpm6) set(p netip.Prefix, id uint32) {
	old, had := t.rib[p]
	if id == 0 && !had || id == old && had {
		return
	}
	if id == 0 {
		delete(t.rib, p)
	} else {
		t.rib[p] = id
	}
	a := p.Addr().As16()
	first := uint32(binary.BigEndian.Uint64(a[:8]) >> (64 - lpm6Direct))
	if l := p.Bits(); l <= lpm6Direct {
		// A prefix of 18 bits or fewer is the default of every /18 it covers that no longer one covers,
		// as a DIR-24-8 entry is: each /18 remembers the length of the prefix it holds.
		repl, rl := id, int8(l)
		if id == 0 {
			repl, rl = t.covering6(p)
		}
		for top := first; top < first+1<<(lpm6Direct-l); top++ {
			if t.depth[top] <= int8(l) {
				t.short[top], t.depth[top] = repl, rl
				t.markDirty(top)
			}
		}
		return
	}
	ps := t.byTop[first]
	i, found := slices.BinarySearchFunc(ps, p, comparePrefix)
	switch {
	case id == 0:
		ps = slices.Delete(ps, i, i+1)
	case !found:
		ps = slices.Insert(ps, i, p)
	}
	if len(ps) == 0 {
		delete(t.byTop, first)
	} else {
		t.byTop[first] = ps
	}
	t.markDirty(first)
}

// covering6 is the route id and length of the longest prefix shorter than p that covers it (-1: none).
func (t *lpm6) covering6(p netip.Prefix) (uint32, int8) {
	for l := p.Bits() - 1; l >= 0; l-- {
		q, _ := p.Addr().Prefix(l)
		if id, ok := t.rib[q]; ok {
			return id, int8(l)
		}
	}
	return 0, -1
}

func (t *lpm6) markDirty(top uint32) {
	if !t.isDirt[top] {
		t.isDirt[top] = true
		t.dirty = append(t.dirty, top)
	}
}

// commit rebuilds every /18 that set changed and publishes each with one atomic store. epoch is the
// routeTable's current epoch, safe the oldest one a reader may still be in: a region unlinked now is
// reused only once safe has passed epoch.
func (t *lpm6) commit(epoch, safe uint64) {
	defer t.clearDirty()
	var freed []uint32
	t.limbo = reclaimLimbo(t.limbo, safe, &freed)
	for _, off := range freed {
		s := t.size[off]
		t.free[s] = append(t.free[s], off)
	}
	// Rebuilding most subtries in place would need the room of two tables: rebuild everything instead.
	// (A short prefix dirties every /18 it covers; most of them are only a direct entry to store.)
	if len(t.dirty) > 1024 {
		sub := 0
		for _, top := range t.dirty {
			if len(t.byTop[top]) > 0 {
				sub++
			}
		}
		if sub > 1024 && sub > len(t.byTop)/2 {
			t.rebuild()
			return
		}
	}
	f := t.cur.Load()
	for _, top := range t.dirty {
		e := t.short[top]
		if ps := t.byTop[top]; len(ps) > 0 {
			t.b.subtrie(ps, t.short[top])
			base, ok := t.alloc(uint32(len(t.b.words)))
			if !ok {
				t.rebuild()
				return
			}
			t.b.place(f.words[base:], base)
			e = lpm6Node | base
		}
		old := f.direct[top]
		atomic.StoreUint32(&f.direct[top], e)
		if old&lpm6Node != 0 {
			t.limbo = append(t.limbo, limboItem{idx: old &^ lpm6Node, epoch: epoch})
		}
	}
}

func (t *lpm6) clearDirty() {
	for _, top := range t.dirty {
		t.isDirt[top] = false
	}
	t.dirty = t.dirty[:0]
}

// alloc returns the start of a free region of at least n words, or false when the array has no room.
func (t *lpm6) alloc(n uint32) (uint32, bool) {
	n = sizeClass6(n)
	// Best fit among the free regions of up to twice the size: a subtrie that grew or shrank by a prefix
	// lands in a neighbouring class.
	for c := n; c <= 2*n; c = sizeClass6(c + 1) {
		if l := t.free[c]; len(l) > 0 {
			off := l[len(l)-1]
			t.free[c] = l[:len(l)-1]
			return off, true
		}
	}
	f := t.cur.Load()
	if int(t.used)+int(n) > len(f.words) {
		return 0, false
	}
	off := t.used
	t.used += n
	t.size[off] = n
	return off, true
}

// sizeClass6 rounds a region's size up so that freed regions fit later ones: to 8 words (32 bytes, which
// also keeps regions aligned) up to 256 words, then to an eighth of the power of two below (at most 12.5%
// unused).
func sizeClass6(n uint32) uint32 {
	if n <= 256 {
		return (n + 7) &^ 7
	}
	s := uint(bits.Len32(n) - 4)
	return (n + 1<<s - 1) >> s << s
}

// rebuild builds the whole table into new arrays, with room for growth, and swaps them in. Readers on the
// old arrays finish there; the old arrays are never written again, so nothing in them waits for a grace
// period.
func (t *lpm6) rebuild() {
	t.rebuilds++
	f := &fib6{direct: slices.Clone(t.short)}
	adviseHuge(f.direct)
	var words []uint32
	clear(t.size)
	clear(t.free)
	t.limbo = t.limbo[:0]
	for top, ps := range t.byTop {
		t.b.subtrie(ps, t.short[top])
		base := uint32(len(words))
		n := sizeClass6(uint32(len(t.b.words)))
		words = append(words, make([]uint32, n)...)
		t.b.place(words[base:], base)
		t.size[base] = n
		f.direct[top] = lpm6Node | base
	}
	t.used = uint32(len(words))
	// Room for half as much again before the next rebuild: updates write new subtries there while the
	// ones they replace wait out their grace period.
	f.words = make([]uint32, len(words)+len(words)/2+1<<16)
	adviseHuge(f.words) // before the first touch, when the kernel picks the page size (if the memory is new)
	copy(f.words, words)
	t.cur.Store(f)
}

// builder6 builds one subtrie into words, with offsets relative to its start.
type builder6 struct {
	rib   map[netip.Prefix]uint32
	words []uint32
	ptrs  []uint32 // the words that hold a child offset, to relocate
}

// place copies the subtrie to dst, which starts at offset base of the array.
func (b *builder6) place(dst []uint32, base uint32) {
	copy(dst, b.words)
	for _, p := range b.ptrs {
		dst[p] += base
	}
}

// subtrie builds the nodes for ps (sorted, all longer than /18, all in one /18 whose best shorter route is
// def), root first at offset 0, each node followed by its children's subtries in slot order (depth first),
// so that a chain of nodes with one child each - the path to a lone /48 - lies in consecutive words.
func (b *builder6) subtrie(ps []netip.Prefix, def uint32) {
	b.words, b.ptrs = b.words[:0], b.ptrs[:0]
	b.node(ps, lpm6Direct, def)
}

// bits6 is the 6 bits of the address hi:lo at bit d (0 is the most significant).
func bits6(hi, lo uint64, d int) uint32 {
	var x uint64
	switch {
	case d == 0:
		x = hi
	case d < 64:
		x = hi<<d | lo>>(64-d)
	default:
		x = lo << (d - 64)
	}
	return uint32(x >> (64 - lpm6Stride))
}

// slot6 is the slot of p in a node for bits d..d+5.
func slot6(p netip.Prefix, d int) uint32 {
	a := p.Addr().As16()
	return bits6(binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:]), d)
}

// node appends the node for bits d..d+5 of the prefixes ps (all longer than d), then its children's.
func (b *builder6) node(ps []netip.Prefix, d int, def uint32) {
	var vals [64]uint32
	for i := range vals {
		vals[i] = def
	}
	// Paint the prefixes that end in this stride (leaf pushing). In sorted order a prefix comes before
	// the longer ones inside it, so the longest wins.
	for _, p := range ps {
		if l := p.Bits(); l <= d+lpm6Stride {
			s := slot6(p, d)
			id := b.rib[p]
			for x := s; x < s+1<<(d+lpm6Stride-l); x++ {
				vals[x] = id
			}
		}
	}
	// Children: the slots under which longer prefixes exist; sorted input makes each slot's a run.
	var vec uint64
	var runs [64][2]int // the run of ps under each child slot
	for i := 0; i < len(ps); {
		s := slot6(ps[i], d)
		j, deeper := i, false
		for ; j < len(ps) && slot6(ps[j], d) == s; j++ {
			deeper = deeper || ps[j].Bits() > d+lpm6Stride
		}
		if deeper {
			vec |= 1 << s
			runs[s] = [2]int{i, j}
		}
		i = j
	}
	var leafvec uint64
	var leaves [64]uint32
	nl := 0
	for s := range 64 {
		if vec&(1<<s) == 0 && (nl == 0 || vals[s] != leaves[nl-1]) {
			leafvec |= 1 << s
			leaves[nl] = vals[s]
			nl++
		}
	}
	// Blocks start on 16 bytes, so that a header never straddles a cache line.
	for len(b.words)%4 != 0 {
		b.words = append(b.words, 0)
	}
	at := len(b.words) + lpm6Header // the first child offset
	b.words = append(b.words, uint32(vec), uint32(vec>>32), uint32(leafvec), uint32(leafvec>>32))
	b.words = append(b.words, make([]uint32, bits.OnesCount64(vec))...)
	b.words = append(b.words, leaves[:nl]...)
	for s := range 64 {
		if vec&(1<<s) == 0 {
			continue
		}
		var sub []netip.Prefix
		for _, p := range ps[runs[s][0]:runs[s][1]] {
			if p.Bits() > d+lpm6Stride {
				sub = append(sub, p)
			}
		}
		for len(b.words)%4 != 0 {
			b.words = append(b.words, 0)
		}
		b.words[at] = uint32(len(b.words))
		b.ptrs = append(b.ptrs, uint32(at))
		at++
		b.node(sub, d+lpm6Stride, vals[s])
	}
}

// comparePrefix orders prefixes by address, then by length: a prefix comes before the longer ones inside it,
// and the prefixes under one slot of a node are contiguous.
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// memory is the bytes the direct table and the node array hold (the array's unused room included).
func (t *lpm6) memory() int {
	f := t.cur.Load()
	return len(f.direct)*4 + len(f.words)*4
}
