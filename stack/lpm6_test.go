package stack

import (
	"math"
	"math/rand/v2"
	"net/netip"
	"testing"
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
	for i := range tbl.direct {
		if tbl.direct[i] != 0 {
			t.Fatalf("empty table: direct entry %d is %#x", i, tbl.direct[i])
		}
	}
}

// TestLPM6Memory builds a full-size synthetic IPv6 table and reports what it costs (and that it answers).
func TestLPM6Memory(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 220 000-prefix table")
	}
	r := rand.New(rand.NewPCG(1, 1))
	ps := syntheticIPv6Table(r, 220000)
	tbl := newLPM6()
	for i, p := range ps {
		tbl.set(p, uint32(i+1))
	}
	tbl.commitNow()
	for i := 0; i < 1000; i++ {
		k := r.IntN(len(ps))
		a := inside(r, ps[k]).As16()
		if tbl.lookup(&a) == 0 {
			t.Fatalf("no route for an address inside %v", ps[k])
		}
	}
	t.Logf("%d prefixes: %.1f MiB (%.0f bytes per prefix)", len(ps), float64(tbl.memory())/(1<<20), float64(tbl.memory())/float64(len(ps)))
}

// BenchmarkLookup6 looks up random addresses inside random prefixes of a full-size synthetic IPv6 table
// (220 000 prefixes with the real length distribution), so that lookups go as deep as the table does.
func BenchmarkLookup6(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	ps := syntheticIPv6Table(r, 220000)
	tbl := newLPM6()
	for i, p := range ps {
		tbl.set(p, uint32(i+1))
	}
	tbl.commitNow()
	addrs := make([][16]byte, 1<<16)
	for i := range addrs {
		addrs[i] = inside(r, ps[r.IntN(len(ps))]).As16()
	}
	b.ReportAllocs()
	b.ResetTimer()
	var sink uint32
	for i := 0; i < b.N; i++ {
		sink += tbl.lookup(&addrs[i&(len(addrs)-1)])
	}
	b.StopTimer()
	if sink == 0 {
		b.Fatal("no lookup found a route")
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mlookups/s")
}

// BenchmarkLookup6Batch is BenchmarkLookup6 the way the forwarding path would call it: 64 addresses a
// batch, walked a level at a time (lookupBatch). ns/op is per lookup.
func BenchmarkLookup6Batch(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	ps := syntheticIPv6Table(r, 220000)
	tbl := newLPM6()
	for i, p := range ps {
		tbl.set(p, uint32(i+1))
	}
	tbl.commitNow()
	addrs := make([][16]byte, 1<<16)
	for i := range addrs {
		addrs[i] = inside(r, ps[r.IntN(len(ps))]).As16()
	}
	var out [64]uint32
	b.ReportAllocs()
	b.ResetTimer()
	var sink uint32
	for i := 0; i < b.N; i += 64 {
		j := i & (len(addrs) - 1)
		tbl.lookupBatch(addrs[j:j+64], out[:])
		sink += out[7]
	}
	b.StopTimer()
	_ = sink
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mlookups/s")
	b.ReportMetric(float64(tbl.memory())/(1<<20), "MiB")
}

// BenchmarkRouteUpdate6 adds and deletes a /48 in a full-size table: one /16's trie rebuilt each time.
func BenchmarkRouteUpdate6(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	ps := syntheticIPv6Table(r, 220000)
	tbl := newLPM6()
	for i, p := range ps {
		tbl.set(p, uint32(i+1))
	}
	tbl.commitNow()
	p := netip.PrefixFrom(inside(r, ps[0]), 48).Masked()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		tbl.set(p, 7)
		tbl.commitNow()
		tbl.set(p, 0)
		tbl.commitNow()
	}
}
