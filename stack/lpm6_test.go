package stack

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"net/netip"
	"runtime"
	"sync"
	"testing"
	"time"
)

// commitNow commits with no reader running: every unlinked trie slot is reusable at once.
func (t *lpm6) commitNow() { t.commit(0, math.MaxUint64) }

// refLPM6 is the slow, obviously correct reference: a map searched from /128 down.
type refLPM6 map[netip.Prefix]uint32

func (r refLPM6) lookup(a netip.Addr) uint32 {
	for l := 128; l >= 0; l-- {
		p, _ := a.Prefix(l)
		if id, ok := r[p]; ok {
			return id
		}
	}
	return 0
}

// ipv6TableLengths is the prefix-length distribution of the IPv6 default-free zone (per mille, rounded;
// RIPE RIS and bgp.potaroo.net reports of 2024: /48 about half, then /32, /44, /40, /36, /29 ...).
var ipv6TableLengths = []struct{ bits, perMille int }{
	{16, 1}, {19, 1}, {20, 1}, {24, 2}, {28, 8}, {29, 32}, {30, 6}, {31, 4}, {32, 120}, {33, 10}, {34, 10},
	{35, 6}, {36, 40}, {37, 4}, {38, 8}, {39, 6}, {40, 62}, {41, 4}, {42, 12}, {43, 4}, {44, 70}, {45, 14},
	{46, 30}, {47, 25}, {48, 515}, {56, 3}, {64, 2},
}

// syntheticIPv6Table makes n distinct prefixes with the real length distribution, laid out as the real table
// is: allocations of /29-/32 in 2000::/3, and the longer prefixes more-specifics inside random allocations.
func syntheticIPv6Table(r *rand.Rand, n int) []netip.Prefix {
	var cum []int
	s := 0
	for _, l := range ipv6TableLengths {
		s += l.perMille
		cum = append(cum, s)
	}
	allocs := make([][16]byte, n/8+1)
	for i := range allocs {
		a := &allocs[i]
		a[0] = 0x20 | byte(r.IntN(0x20)) // 2000::/3
		a[1], a[2], a[3] = byte(r.Uint32()), byte(r.Uint32()), byte(r.Uint32())
	}
	seen := map[netip.Prefix]bool{}
	out := make([]netip.Prefix, 0, n)
	for len(out) < n {
		x := r.IntN(s)
		bits := 48
		for i, c := range cum {
			if x < c {
				bits = ipv6TableLengths[i].bits
				break
			}
		}
		a := allocs[r.IntN(len(allocs))]
		for i := 4; i < 16; i++ {
			a[i] = byte(r.Uint32())
		}
		p := netip.PrefixFrom(netip.AddrFrom16(a), bits).Masked()
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// inside returns a random address inside p.
func inside(r *rand.Rand, p netip.Prefix) netip.Addr {
	a := p.Addr().As16()
	for i := p.Bits(); i < 128; i++ {
		if r.IntN(2) == 1 {
			a[i/8] |= 0x80 >> (i % 8)
		}
	}
	return netip.AddrFrom16(a)
}

func TestLPM6MatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(6, 6))
	tbl, ref := newLPM6(), refLPM6{}
	// Nested and overlapping prefixes of every length, some sharing /16s, plus a default route.
	var ps []netip.Prefix
	base := netip.MustParseAddr("2001:2::")
	for i := 0; i < 3000; i++ {
		bits := r.IntN(129)
		a := base
		if r.IntN(4) == 0 {
			a = inside(r, netip.MustParsePrefix("2000::/3"))
		} else {
			a = inside(r, netip.PrefixFrom(base, 20))
		}
		ps = append(ps, netip.PrefixFrom(a, bits).Masked())
	}
	ps = append(ps, netip.MustParsePrefix("::/0"), netip.MustParsePrefix("2001::/16"), netip.MustParsePrefix("2000::/3"))
	var batch [64][16]byte
	var wants [64]uint32
	check := func(when string) {
		t.Helper()
		for i := 0; i < 20000; i++ {
			var a netip.Addr
			if i%2 == 0 {
				a = inside(r, ps[r.IntN(len(ps))])
			} else {
				a = inside(r, netip.MustParsePrefix("::/0"))
			}
			b := a.As16()
			want := ref.lookup(a)
			if got := tbl.lookup(&b); got != want {
				t.Fatalf("%s: lookup %v = %d, want %d", when, a, got, want)
			}
			batch[i%64], wants[i%64] = b, want
			if i%64 == 63 {
				var out [64]uint32
				tbl.lookupBatch(batch[:], out[:])
				if out != wants {
					t.Fatalf("%s: lookupBatch %v, want %v", when, out, wants)
				}
			}
		}
	}
	for i, p := range ps {
		tbl.set(p, uint32(i+1))
		ref[p] = uint32(i + 1)
		if i%500 == 0 {
			tbl.commitNow() // some /16s rebuilt several times, others once with many prefixes
		}
	}
	tbl.commitNow()
	check("after inserts")
	// Delete half (the short ones too), replace some, check again.
	for i, p := range ps {
		switch i % 4 {
		case 0, 1:
			tbl.set(p, 0)
			delete(ref, p)
		case 2:
			tbl.set(p, uint32(100000+i))
			ref[p] = uint32(100000 + i)
		}
	}
	tbl.commitNow()
	check("after deletes and replacements")
	for _, p := range ps {
		tbl.set(p, 0)
		delete(ref, p)
	}
	tbl.commitNow()
	check("after deleting everything")
	for i, e := range tbl.cur.Load().direct {
		if e != 0 {
			t.Fatalf("empty table: direct entry %d is %#x", i, e)
		}
	}
}

// TestLPM6Memory builds a full-size synthetic IPv6 table and reports what it costs (and that it answers).
func TestLPM6Memory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 220 000-prefix table")
	}
	tbl, ps, r := fullTable6()
	for i := 0; i < 1000; i++ {
		k := r.IntN(len(ps))
		a := inside(r, ps[k]).As16()
		if tbl.lookup(&a) == 0 {
			t.Fatalf("no route for an address inside %v", ps[k])
		}
	}
	used := len(tbl.cur.Load().direct)*4 + int(tbl.used)*4
	t.Logf("%d prefixes: %.1f MiB allocated (%.0f bytes per prefix), %.1f MiB in use (the rest is room for updates)",
		len(ps), float64(tbl.memory())/(1<<20), float64(tbl.memory())/float64(len(ps)), float64(used)/(1<<20))
}

// fullTable6 is a table of 220 000 synthetic prefixes (syntheticIPv6Table), route id = index + 1.
func fullTable6() (*lpm6, []netip.Prefix, *rand.Rand) {
	r := rand.New(rand.NewPCG(1, 1))
	ps := syntheticIPv6Table(r, 220000)
	tbl := newLPM6()
	for i, p := range ps {
		tbl.set(p, uint32(i+1))
	}
	tbl.commitNow()
	return tbl, ps, r
}

// addressesIn returns n random addresses, each inside a random prefix of ps.
func addressesIn(r *rand.Rand, ps []netip.Prefix, n int) [][16]byte {
	addrs := make([][16]byte, n)
	for i := range addrs {
		addrs[i] = inside(r, ps[r.IntN(len(ps))]).As16()
	}
	return addrs
}

// lpm6Bench is the full-size table of the lookup benchmarks, built once, in both implementations.
var lpm6Bench struct {
	sync.Once
	tbl     *lpm6
	old     *oldLPM6
	inTable [][16]byte // addresses inside random prefixes of the table
	uniform [][16]byte // uniformly random addresses
}

func lpm6BenchTables() {
	lpm6Bench.Do(func() {
		tbl, ps, r := fullTable6()
		old := newOldLPM6()
		for i, p := range ps {
			old.set(p, uint32(i+1))
		}
		old.commit(0, math.MaxUint64)
		uni := make([][16]byte, 1<<16)
		for i := range uni {
			binary.BigEndian.PutUint64(uni[i][:8], r.Uint64())
			binary.BigEndian.PutUint64(uni[i][8:], r.Uint64())
		}
		lpm6Bench.tbl, lpm6Bench.old, lpm6Bench.inTable, lpm6Bench.uniform = tbl, old, addressesIn(r, ps, 1<<16), uni
	})
}

// cpuClock measures a benchmark's lookups in wall-clock and in the CPU time of its thread.
type cpuClock struct {
	start time.Duration
	ok    bool
}

func startCPU() cpuClock {
	runtime.LockOSThread() // RUSAGE_THREAD must see the benchmark's thread; unlocked in report
	c, ok := threadCPU()
	return cpuClock{c, ok}
}

// report adds the rate per wall-clock second (Mlookups/s) and, where the thread's CPU time is known, the
// CPU time per lookup (cpu-ns/lookup): the machine the figures were taken on was shared, and a lookup
// descheduled in the middle counted the other programs' time in the wall-clock figure.
func (c cpuClock) report(b *testing.B, n int) {
	end, ok := threadCPU()
	runtime.UnlockOSThread()
	b.ReportMetric(float64(n)/b.Elapsed().Seconds()/1e6, "Mlookups/s")
	if ok && c.ok && n > 0 {
		b.ReportMetric(float64((end-c.start).Nanoseconds())/float64(n), "cpu-ns/lookup")
	}
}

// BenchmarkLookup6 looks up addresses in a full-size synthetic IPv6 table (220 000 prefixes with the real
// length distribution, syntheticIPv6Table): addresses inside random prefixes of the table (random host
// bits), so that lookups go as deep as the table does, and uniformly random addresses (7 in 8 outside
// 2000::/3); one at a time (lookup) and 64 a call (lookupBatch, as a batch of packets would); in this
// table (lpm6) and in the one it replaced (old), so that the two are compared in the same run. ns/op is
// per lookup.
func BenchmarkLookup6(b *testing.B) {
	lpm6BenchTables()
	impls := []struct {
		name   string
		lookup func(*[16]byte) uint32
		batch  func([][16]byte, []uint32)
		mem    func() int
	}{
		{"lpm6", lpm6Bench.tbl.lookup, lpm6Bench.tbl.lookupBatch, lpm6Bench.tbl.memory},
		{"old", lpm6Bench.old.lookup, lpm6Bench.old.lookupBatch, lpm6Bench.old.memory},
	}
	for _, im := range impls {
		for _, set := range []struct {
			name  string
			addrs [][16]byte
		}{{"inTable", lpm6Bench.inTable}, {"uniform", lpm6Bench.uniform}} {
			addrs := set.addrs
			b.Run(im.name+"/"+set.name+"/single", func(b *testing.B) {
				b.ReportAllocs()
				var sink uint32
				cpu := startCPU()
				for i := 0; b.Loop(); i++ {
					sink += im.lookup(&addrs[i&(len(addrs)-1)])
				}
				cpu.report(b, b.N)
				if sink == 0 && set.name == "inTable" {
					b.Fatal("no lookup found a route")
				}
				b.ReportMetric(float64(im.mem())/(1<<20), "MiB")
			})
			b.Run(im.name+"/"+set.name+"/batch", func(b *testing.B) {
				b.ReportAllocs()
				var out [64]uint32
				var sink uint32
				n := 0
				cpu := startCPU()
				for j := 0; b.Loop(); j += 64 {
					j &= len(addrs) - 1
					im.batch(addrs[j:j+64], out[:])
					sink += out[7]
					n += 64
				}
				cpu.report(b, n)
				if sink == 0 && set.name == "inTable" {
					b.Fatal("no lookup found a route")
				}
				b.ReportMetric(float64(im.mem())/(1<<20), "MiB")
			})
		}
	}
}

// BenchmarkRouteUpdate6 adds and deletes a /48 in a full-size table: one /16's trie rebuilt each time.
func BenchmarkRouteUpdate6(b *testing.B) {
	tbl, ps, r := fullTable6()
	p := netip.PrefixFrom(inside(r, ps[0]), 48).Masked()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tbl.set(p, 7)
		tbl.commitNow()
		tbl.set(p, 0)
		tbl.commitNow()
	}
}

// linearLPM6 is the naive reference: every prefix in a slice, each lookup a scan for the longest one that
// contains the address.
type linearLPM6 []struct {
	p  netip.Prefix
	id uint32
}

func (l linearLPM6) lookup(a netip.Addr) uint32 {
	best, bits := uint32(0), -1
	for _, e := range l {
		if e.p.Bits() > bits && e.p.Contains(a) {
			best, bits = e.id, e.p.Bits()
		}
	}
	return best
}

func (l *linearLPM6) set(p netip.Prefix, id uint32) {
	for i, e := range *l {
		if e.p == p {
			if id == 0 {
				*l = append((*l)[:i], (*l)[i+1:]...)
			} else {
				(*l)[i].id = id
			}
			return
		}
	}
	if id != 0 {
		*l = append(*l, struct {
			p  netip.Prefix
			id uint32
		}{p, id})
	}
}

// TestLPM6Differential runs random inserts, replacements and deletes of prefixes of every length (many
// nested, many sharing a /18 and its nodes, some of /18 and shorter) against linearLPM6, committing after
// random numbers of changes - so that subtries are rebuilt in place, their regions reused after a lagging
// grace period, and the whole table rebuilt when it runs out of room - and compares lookup and lookupBatch
// with the reference on addresses inside the prefixes, next to their edges, and at random.
func TestLPM6Differential(t *testing.T) {
	for seed := range uint64(2) {
		r := rand.New(rand.NewPCG(seed, 13))
		tbl, ref := newLPM6(), linearLPM6{}
		// A pool of prefixes to draw from: clustered under a few /32s and /18s, so that nodes are shared.
		bases := []netip.Prefix{netip.MustParsePrefix("2001:2::/32"), netip.MustParsePrefix("2001:2:8000::/33"),
			netip.MustParsePrefix("2a00::/12"), netip.MustParsePrefix("2001:db8::/32"), netip.MustParsePrefix("::/0")}
		var pool []netip.Prefix
		for range 2000 {
			base := bases[r.IntN(len(bases))]
			bits := base.Bits() + r.IntN(129-base.Bits())
			if r.IntN(8) == 0 {
				bits = r.IntN(19) // /18 and shorter: direct entries
			}
			pool = append(pool, netip.PrefixFrom(inside(r, base), bits).Masked())
		}
		epoch, safe := uint64(1), uint64(1)
		var batch [64][16]byte
		var out [64]uint32
		check := func(step int) {
			t.Helper()
			for i := range 64 {
				var a netip.Addr
				switch p := pool[r.IntN(len(pool))]; r.IntN(4) {
				case 0:
					a = inside(r, p)
				case 1: // the last address before p, or p's first
					a = p.Addr()
					if r.IntN(2) == 0 && a.Prev().IsValid() {
						a = a.Prev()
					}
				case 2: // p's last address, or the one after it
					a = lastAddr(p)
					if r.IntN(2) == 0 && a.Next().IsValid() {
						a = a.Next()
					}
				default:
					a = inside(r, netip.MustParsePrefix("::/0"))
				}
				batch[i] = a.As16()
			}
			tbl.lookupBatch(batch[:], out[:])
			for i := range batch {
				a := netip.AddrFrom16(batch[i])
				want := ref.lookup(a)
				if got := tbl.lookup(&batch[i]); got != want {
					t.Fatalf("seed %d step %d: lookup %v = %d, want %d", seed, step, a, got, want)
				}
				if out[i] != want {
					t.Fatalf("seed %d step %d: lookupBatch %v = %d, want %d", seed, step, a, out[i], want)
				}
			}
		}
		for step := range 600 {
			for range 1 + r.IntN(1+r.IntN(40)) {
				p := pool[r.IntN(len(pool))]
				id := uint32(0)
				if r.IntN(3) != 0 {
					id = 1 + r.Uint32N(1<<24-1)
				}
				tbl.set(p, id)
				ref.set(p, id)
			}
			// Readers lag: what this commit unlinks is reused only a few commits later.
			tbl.commit(epoch, safe)
			epoch++
			if r.IntN(3) == 0 {
				safe = epoch
			}
			check(step)
		}
		if len(ref) == 0 || tbl.rebuilds == 0 || tbl.rebuilds > 300 {
			t.Fatalf("%d prefixes at the end, %d rebuilds: the test did not exercise the table", len(ref), tbl.rebuilds)
		}
		t.Logf("seed %d: %d prefixes, %d rebuilds, %d words used of %d", seed, len(ref), tbl.rebuilds, tbl.used, len(tbl.cur.Load().words))
	}
}

// lastAddr is the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	a := p.Addr().As16()
	for i := p.Bits(); i < 128; i++ {
		a[i/8] |= 0x80 >> (i % 8)
	}
	return netip.AddrFrom16(a)
}
