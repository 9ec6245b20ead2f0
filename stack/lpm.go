package stack

import (
	"encoding/binary"
	"net/netip"
)

// dir248 is a DIR-24-8 longest-prefix-match table (Gupta, Lin, McKeown, "Routing Lookups in Hardware at
// Memory Access Speeds", 1998; the layout of DPDK's rte_lpm): tbl24 has one entry per /24, and a /24 that
// holds longer prefixes points at a group of 256 entries in tbl8 indexed by the last octet. A lookup is one
// load, two when the /24 is split.
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
// A dir248 is immutable once published: writers clone it, change the clone and swap it in (see routeTable),
// so readers need no lock and never see a half-painted range.
type dir248 struct {
	tbl24      []uint32 // 1<<24 entries, 64 MiB
	tbl8       []uint32 // groups of 256
	freeGroups []uint32
}

const (
	lpmGroupFlag  = 1 << 31
	lpmDepthShift = 24
	lpmIDMask     = 1<<24 - 1
	// maxRouteID bounds the route ids an entry can hold.
	maxRouteID = lpmIDMask
)

func newDir248() *dir248 {
	t := &dir248{tbl24: make([]uint32, 1<<24)}
	adviseHuge(t.tbl24)
	return t
}

// clone copies the table for a writer; the copy shares nothing with t.
func (t *dir248) clone() *dir248 {
	c := &dir248{
		tbl24:      make([]uint32, len(t.tbl24)),
		tbl8:       make([]uint32, len(t.tbl8), cap(t.tbl8)),
		freeGroups: append([]uint32(nil), t.freeGroups...),
	}
	adviseHuge(c.tbl24)
	copy(c.tbl24, t.tbl24)
	copy(c.tbl8, t.tbl8)
	return c
}

// lookup returns the route id of the longest prefix covering a, or 0.
func (t *dir248) lookup(a uint32) uint32 {
	e := t.tbl24[a>>8]
	if e&lpmGroupFlag != 0 {
		e = t.tbl8[(e&lpmIDMask)<<8|a&0xff]
	}
	return e & lpmIDMask
}

func lpmEntry(id uint32, depth int) uint32 { return id | uint32(depth)<<lpmDepthShift }

func entryDepth(e uint32) int { return int(e>>lpmDepthShift) & 0x3f }

// insert makes id the route of every address of p/depth whose current route is no more specific.
func (t *dir248) insert(p uint32, depth int, id uint32) {
	ne := lpmEntry(id, depth)
	if depth <= 24 {
		first := p >> 8
		n := uint32(1) << (24 - depth)
		for i := first; i < first+n; i++ {
			e := t.tbl24[i]
			if e&lpmGroupFlag != 0 {
				g := t.tbl8[(e&lpmIDMask)<<8 : (e&lpmIDMask+1)<<8]
				for j, ge := range g {
					if entryDepth(ge) <= depth {
						g[j] = ne
					}
				}
				continue
			}
			if entryDepth(e) <= depth {
				t.tbl24[i] = ne
			}
		}
		return
	}
	i := p >> 8
	e := t.tbl24[i]
	if e&lpmGroupFlag == 0 {
		gi := t.newGroup(e)
		t.tbl24[i] = lpmGroupFlag | gi
		e = t.tbl24[i]
	}
	g := t.tbl8[(e&lpmIDMask)<<8 : (e&lpmIDMask+1)<<8]
	first := p & 0xff
	n := uint32(1) << (32 - depth)
	for j := first; j < first+n; j++ {
		if entryDepth(g[j]) <= depth {
			g[j] = ne
		}
	}
}

// remove replaces the entries of p/depth that hold id (those where p was the longest match) with repl, the
// entry of the next longest prefix covering p (0 for none), and folds a group back into its tbl24 entry
// when all its 256 entries became equal.
func (t *dir248) remove(p uint32, depth int, id uint32, repl uint32) {
	old := lpmEntry(id, depth)
	if depth <= 24 {
		first := p >> 8
		n := uint32(1) << (24 - depth)
		for i := first; i < first+n; i++ {
			e := t.tbl24[i]
			if e&lpmGroupFlag != 0 {
				g := t.tbl8[(e&lpmIDMask)<<8 : (e&lpmIDMask+1)<<8]
				for j, ge := range g {
					if ge == old {
						g[j] = repl
					}
				}
				t.maybeFold(i)
				continue
			}
			if e == old {
				t.tbl24[i] = repl
			}
		}
		return
	}
	i := p >> 8
	e := t.tbl24[i]
	if e&lpmGroupFlag == 0 {
		return
	}
	g := t.tbl8[(e&lpmIDMask)<<8 : (e&lpmIDMask+1)<<8]
	first := p & 0xff
	n := uint32(1) << (32 - depth)
	for j := first; j < first+n; j++ {
		if g[j] == old {
			g[j] = repl
		}
	}
	t.maybeFold(i)
}

func (t *dir248) newGroup(fill uint32) uint32 {
	var gi uint32
	if n := len(t.freeGroups); n > 0 {
		gi = t.freeGroups[n-1]
		t.freeGroups = t.freeGroups[:n-1]
	} else {
		gi = uint32(len(t.tbl8) >> 8)
		t.tbl8 = append(t.tbl8, make([]uint32, 256)...)
	}
	g := t.tbl8[gi<<8 : (gi+1)<<8]
	for j := range g {
		g[j] = fill
	}
	return gi
}

// maybeFold turns the group under tbl24[i] back into a plain entry when no prefix longer than /24 is left
// in it (all entries equal and of depth <= 24).
func (t *dir248) maybeFold(i uint32) {
	e := t.tbl24[i]
	if e&lpmGroupFlag == 0 {
		return
	}
	gi := e & lpmIDMask
	g := t.tbl8[gi<<8 : (gi+1)<<8]
	v := g[0]
	if entryDepth(v) > 24 {
		return
	}
	for _, ge := range g[1:] {
		if ge != v {
			return
		}
	}
	t.tbl24[i] = v
	t.freeGroups = append(t.freeGroups, gi)
}

// memory is the table's size in bytes.
func (t *dir248) memory() int { return 4*len(t.tbl24) + 4*cap(t.tbl8) }

// groups is the number of tbl8 groups in use.
func (t *dir248) groups() int { return len(t.tbl8)>>8 - len(t.freeGroups) }

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
