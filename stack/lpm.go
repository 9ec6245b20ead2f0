package stack

import (
	"encoding/binary"
	"net/netip"
	"sync/atomic"
)

// dir248 is a DIR-24-8 longest-prefix-match table (Gupta, Lin, McKeown, "Routing Lookups in Hardware at
// Memory Access Speeds", 1998; the layout of DPDK's rte_lpm): tbl24 has one entry per /24, and a /24 that
// holds longer prefixes points at a group of 256 entries in tbl8 indexed by the last octet. A lookup is one
// load, two when the /24 is split (three counting the tbl8 chunk pointer, which stays in cache).
//
// An entry is a uint32:
//
//	bit 31      group flag: bits 0-23 are a tbl8 group index
//	bits 24-29  depth: the prefix length of the route the entry holds (route entries only)
//	bits 0-23   route id (0 = no route)
//
// Keeping the depth in the entry lets an insert paint a range without asking anyone which prefix each entry
// came from: an entry is overwritten when its depth is <= the new prefix length.
//
// Concurrency: one writer (routeTable holds its mutex) changes the table in place while any number of
// readers look up without a lock. Every entry is read and written with a 32-bit atomic, so a reader sees
// each entry either before or after a store, never torn; an update that paints many entries is not atomic as
// a whole, which is what the kernel's FIB gives too (each address moves from its old route to its new one
// exactly once). A new tbl8 group is filled before the tbl24 entry that points at it is stored; a group that
// is unlinked (folded back into its tbl24 entry) goes to limbo and is reused only after the grace period
// routeTable establishes (see routeTable.safeEpoch), because a reader may have loaded the old tbl24 entry
// and still be reading the group. tbl8 is a fixed array of chunk pointers so that it grows without moving:
// a chunk is published before any group in it is linked, and is never freed.
type dir248 struct {
	tbl24 *[1 << 24]uint32 // 64 MiB
	tbl8  *[tbl8Chunks]atomic.Pointer[tbl8Chunk]

	// Writer state.
	ngroups    uint32      // groups ever allocated: the next new index
	freeGroups []uint32    // unlinked and past their grace period
	limbo      []limboItem // unlinked, readers may still hold them
	epoch      uint64      // stamped on what this update unlinks (routeTable sets it)
}

// limboItem is a group or route id unlinked at epoch: reusable once every reader has left that epoch.
type limboItem struct {
	idx   uint32
	epoch uint64
}

const (
	lpmGroupFlag  = 1 << 31
	lpmDepthShift = 24
	lpmIDMask     = 1<<24 - 1
	// maxRouteID bounds the route ids an entry can hold.
	maxRouteID = lpmIDMask

	// tbl8 is cut into chunks of 1024 groups (1 MiB); 16384 chunk pointers cover every 24-bit group index.
	tbl8ChunkShift  = 10
	tbl8ChunkGroups = 1 << tbl8ChunkShift
	tbl8Chunks      = (lpmIDMask + 1) >> tbl8ChunkShift
)

type tbl8Chunk [tbl8ChunkGroups * 256]uint32

func newDir248() *dir248 {
	t := &dir248{tbl24: new([1 << 24]uint32), tbl8: new([tbl8Chunks]atomic.Pointer[tbl8Chunk])}
	adviseHuge(t.tbl24[:])
	return t
}

// lookup returns the route id of the longest prefix covering a, or 0. It is safe concurrently with the
// writer: both loads are atomic (plain MOVs on amd64 and arm64), and the group a tbl24 entry names stays
// valid until the caller's grace period ends.
func (t *dir248) lookup(a uint32) uint32 {
	e := atomic.LoadUint32(&t.tbl24[a>>8])
	if e&lpmGroupFlag != 0 {
		c := t.tbl8[(e>>tbl8ChunkShift)&(tbl8Chunks-1)].Load()
		e = atomic.LoadUint32(&c[(e&(tbl8ChunkGroups-1))<<8|a&0xff])
	}
	return e & lpmIDMask
}

// group is tbl8 group gi, which must be allocated.
func (t *dir248) group(gi uint32) *[256]uint32 {
	c := t.tbl8[gi>>tbl8ChunkShift].Load()
	return (*[256]uint32)(c[(gi&(tbl8ChunkGroups-1))<<8:])
}

func lpmEntry(id uint32, depth int) uint32 { return id | uint32(depth)<<lpmDepthShift }

func entryDepth(e uint32) int { return int(e>>lpmDepthShift) & 0x3f }

// The writer reads entries with plain loads (it is the only one who stores) and stores them atomically.
func store(p *uint32, v uint32) { atomic.StoreUint32(p, v) }

// insert makes id the route of every address of p/depth whose current route is no more specific.
func (t *dir248) insert(p uint32, depth int, id uint32) {
	ne := lpmEntry(id, depth)
	if depth <= 24 {
		first := p >> 8
		n := uint32(1) << (24 - depth)
		for i := first; i < first+n; i++ {
			e := t.tbl24[i]
			if e&lpmGroupFlag != 0 {
				g := t.group(e & lpmIDMask)
				for j, ge := range g {
					if entryDepth(ge) <= depth {
						store(&g[j], ne)
					}
				}
				continue
			}
			if entryDepth(e) <= depth {
				store(&t.tbl24[i], ne)
			}
		}
		return
	}
	i := p >> 8
	first := p & 0xff
	n := uint32(1) << (32 - depth)
	e := t.tbl24[i]
	if e&lpmGroupFlag == 0 {
		// Build the group completely, then link it: a reader sees the old entry or the finished group.
		gi := t.newGroup(e)
		g := t.group(gi)
		for j := first; j < first+n; j++ {
			g[j] = ne
		}
		store(&t.tbl24[i], lpmGroupFlag|gi)
		return
	}
	g := t.group(e & lpmIDMask)
	for j := first; j < first+n; j++ {
		if entryDepth(g[j]) <= depth {
			store(&g[j], ne)
		}
	}
}

// remove replaces the entries of p/depth that hold id (those where p was the longest match) with repl, the
// entry of the next longest prefix covering p (0 for none) or, for a route replaced in place, the new
// route's entry; and folds a group back into its tbl24 entry when all its 256 entries became equal.
func (t *dir248) remove(p uint32, depth int, id uint32, repl uint32) {
	old := lpmEntry(id, depth)
	if depth <= 24 {
		first := p >> 8
		n := uint32(1) << (24 - depth)
		for i := first; i < first+n; i++ {
			e := t.tbl24[i]
			if e&lpmGroupFlag != 0 {
				g := t.group(e & lpmIDMask)
				for j, ge := range g {
					if ge == old {
						store(&g[j], repl)
					}
				}
				t.maybeFold(i)
				continue
			}
			if e == old {
				store(&t.tbl24[i], repl)
			}
		}
		return
	}
	i := p >> 8
	e := t.tbl24[i]
	if e&lpmGroupFlag == 0 {
		return
	}
	g := t.group(e & lpmIDMask)
	first := p & 0xff
	n := uint32(1) << (32 - depth)
	for j := first; j < first+n; j++ {
		if g[j] == old {
			store(&g[j], repl)
		}
	}
	t.maybeFold(i)
}

// newGroup returns an unlinked group filled with fill: a reclaimed one, or a new one (with a new chunk
// published first when the last is full). The 24-bit group index space (16M groups, 16 GiB) is larger than
// the number of /24s, so it runs out only if 16M groups sit in limbo at once, which needs a reader stuck
// inside one batch while the writer churns: newGroup then panics rather than corrupt the table.
func (t *dir248) newGroup(fill uint32) uint32 {
	var gi uint32
	if n := len(t.freeGroups); n > 0 {
		gi = t.freeGroups[n-1]
		t.freeGroups = t.freeGroups[:n-1]
	} else {
		gi = t.ngroups
		if gi > lpmIDMask {
			panic("stack: DIR-24-8 tbl8 group index space exhausted (a route reader never left its batch)")
		}
		if gi&(tbl8ChunkGroups-1) == 0 {
			t.tbl8[gi>>tbl8ChunkShift].Store(new(tbl8Chunk))
		}
		t.ngroups++
	}
	// Nobody reads the group: it is new, or its grace period is over (see limbo).
	g := t.group(gi)
	for j := range g {
		g[j] = fill
	}
	return gi
}

// maybeFold turns the group under tbl24[i] back into a plain entry when no prefix longer than /24 is left
// in it (all entries equal and of depth <= 24). The group goes to limbo: readers that loaded the old tbl24
// entry still read it, and find the same entry the fold stored.
func (t *dir248) maybeFold(i uint32) {
	e := t.tbl24[i]
	if e&lpmGroupFlag == 0 {
		return
	}
	gi := e & lpmIDMask
	g := t.group(gi)
	v := g[0]
	if entryDepth(v) > 24 {
		return
	}
	for _, ge := range g[1:] {
		if ge != v {
			return
		}
	}
	store(&t.tbl24[i], v)
	t.limbo = append(t.limbo, limboItem{gi, t.epoch})
}

// reclaim makes the groups unlinked before epoch safe reusable.
func (t *dir248) reclaim(safe uint64) {
	t.limbo = reclaimLimbo(t.limbo, safe, &t.freeGroups)
}

// reclaimLimbo moves the items of limbo stamped before safe to free and returns what stays. Items are
// stamped in increasing epoch order, so the reusable ones are a prefix.
func reclaimLimbo(limbo []limboItem, safe uint64, free *[]uint32) []limboItem {
	k := 0
	for k < len(limbo) && limbo[k].epoch < safe {
		*free = append(*free, limbo[k].idx)
		k++
	}
	if k == 0 {
		return limbo
	}
	n := copy(limbo, limbo[k:])
	return limbo[:n]
}

// memory is the table's size in bytes.
func (t *dir248) memory() int {
	return 4*len(t.tbl24) + 8*len(t.tbl8) + 4*256*int((t.ngroups+tbl8ChunkGroups-1)&^(tbl8ChunkGroups-1))
}

// groups is the number of tbl8 groups linked into tbl24.
func (t *dir248) groups() int { return int(t.ngroups) - len(t.freeGroups) - len(t.limbo) }

// refLPM is the slow, obviously correct reference: a map from prefix to route id, searched from /32 down.
type refLPM map[netip.Prefix]uint32

func (r refLPM) lookup(a netip.Addr) uint32 {
	for l := 32; l >= 0; l-- {
		p, _ := a.Prefix(l)
		if id, ok := r[p]; ok {
			return id
		}
	}
	return 0
}

func addr4(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

func addrFrom4(u uint32) netip.Addr {
	var b [4]byte
	binary.BigEndian.PutUint32(b[:], u)
	return netip.AddrFrom4(b)
}
