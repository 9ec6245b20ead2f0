package stack

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// randomPrefixes makes n distinct prefixes with a length mix like a BGP table: about 60% /24, the rest
// spread over /8-/23, and 2% longer than /24 (which need tbl8 groups).
func randomPrefixes(r *rand.Rand, n int) []netip.Prefix {
	seen := make(map[netip.Prefix]bool, n)
	out := make([]netip.Prefix, 0, n)
	for len(out) < n {
		var l int
		switch x := r.IntN(100); {
		case x < 60:
			l = 24
		case x < 98:
			l = 8 + r.IntN(16)
		default:
			l = 25 + r.IntN(8)
		}
		p, _ := addrFrom4(r.Uint32()).Prefix(l)
		if !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	return out
}

// TestDir248MatchesReference inserts and deletes random prefixes and compares every lookup with the
// reference at random and at boundary addresses.
func TestDir248MatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := range 4 {
		tbl, ref := newDir248(), refLPM{}
		ps := randomPrefixes(r, 3000)
		// Short and host prefixes too, around shared addresses, so they nest.
		ps = append(ps, netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("10.0.0.0/8"),
			netip.MustParsePrefix("10.1.0.0/16"), netip.MustParsePrefix("10.1.2.0/24"),
			netip.MustParsePrefix("10.1.2.128/25"), netip.MustParsePrefix("10.1.2.129/32"))
		for i, p := range ps {
			id := uint32(i + 1)
			if _, dup := ref[p]; dup {
				continue
			}
			tbl.insert(addr4(p.Addr()), p.Bits(), id)
			ref[p] = id
		}
		check := func(stage string) {
			t.Helper()
			probe := func(a netip.Addr) {
				if got, want := tbl.lookup(addr4(a)), ref.lookup(a); got != want {
					t.Fatalf("round %d %s: lookup %v = %d, reference %d", round, stage, a, got, want)
				}
			}
			for range 20000 {
				probe(addrFrom4(r.Uint32()))
			}
			for p := range ref {
				probe(p.Addr())
				probe(addrFrom4(addr4(p.Addr()) | (1<<(32-p.Bits()) - 1)))
				probe(addrFrom4(addr4(p.Addr()) - 1))
			}
		}
		check("after insert")
		// Delete half, with the same replacement rule routeWriter.remove uses.
		for p, id := range ref {
			if r.IntN(2) == 0 {
				continue
			}
			delete(ref, p)
			var repl uint32
			for l := p.Bits() - 1; l >= 0; l-- {
				q, _ := p.Addr().Prefix(l)
				if rid, ok := ref[q]; ok {
					repl = lpmEntry(rid, l)
					break
				}
			}
			tbl.remove(addr4(p.Addr()), p.Bits(), id, repl)
		}
		check("after delete")
		groupsBefore := tbl.groups()
		for p, id := range ref {
			delete(ref, p)
			tbl.remove(addr4(p.Addr()), p.Bits(), id, 0)
		}
		check("after delete all")
		if g := tbl.groups(); g != 0 {
			t.Errorf("round %d: %d tbl8 groups still in use after deleting every route (%d before)", round, g, groupsBefore)
		}
	}
}

// fuzzLen maps a fuzz byte to a prefix length: /16-/32 mostly, /0-/15 (which paint 256 to 16M entries) only
// for bytes 0xf0-0xff, so that the fuzzer spends its time on many operations rather than on a few huge ones.
func fuzzLen(b byte) int {
	if b >= 0xf0 {
		return int(b & 0xf)
	}
	return 16 + int(b%17)
}

// fuzzTable is FuzzLPM's table, emptied after each input rather than allocated (64 MiB) for each.
var fuzzTable struct {
	t  *routeTable
	rd *fibReader
}

// FuzzLPM drives the routing table and the reference with the same updates from the fuzz input and checks
// every lookup agrees after each one. Each 6-byte operation is: op, four address bytes, prefix length
// (fuzzLen). Ops: add, delete, replace (delete and add in one update), and a reader entering or leaving a
// batch; while it is inside, the entries it looked up when it entered must not change (their ids are not
// reused), however the table churns.
func FuzzLPM(f *testing.F) {
	f.Add([]byte{0, 10, 0, 0, 0, 0xf8, 1, 10, 1, 2, 3, 32, 2, 10, 1, 2, 3})
	f.Add([]byte{0, 0, 0, 0, 0, 0xf0, 0, 192, 168, 1, 128, 25, 1, 0, 0, 0, 0, 0xf0})
	f.Add([]byte{0, 198, 18, 1, 0, 24, 0, 198, 18, 1, 128, 25, 3, 198, 18, 1, 200, 0,
		1, 198, 18, 1, 128, 25, 2, 198, 18, 1, 0, 24, 0, 198, 18, 1, 64, 26, 3, 0, 0, 0, 0, 0,
		0, 198, 18, 1, 128, 25})
	f.Fuzz(func(t *testing.T, ops []byte) {
		if fuzzTable.t == nil {
			fuzzTable.t = newRouteTable()
			fuzzTable.rd = fuzzTable.t.register()
		}
		tbl, rd, ref := fuzzTable.t, fuzzTable.rd, map[netip.Prefix]bool{}
		defer func() {
			rd.leave()
			err := tbl.update(func(w *routeWriter) error {
				for p := range ref {
					if _, err := w.remove(p); err != nil {
						return err
					}
				}
				return nil
			})
			if err != nil || len(tbl.byPrefix) != 0 || tbl.lpm.groups() != 0 {
				t.Fatalf("emptying the table: %v, %d routes and %d groups left", err, len(tbl.byPrefix), tbl.lpm.groups())
			}
		}()
		type heldEntry struct {
			e    *routeEntry
			copy routeEntry
		}
		var held []heldEntry
		inside := false
		for len(ops) >= 6 {
			op, a, l := ops[0]%4, uint32(ops[1])<<24|uint32(ops[2])<<16|uint32(ops[3])<<8|uint32(ops[4]), fuzzLen(ops[5])
			ops = ops[6:]
			p, _ := addrFrom4(a).Prefix(l)
			probes := []uint32{a, a ^ 1, a ^ 0x80, a ^ 0x100, a ^ 0x800000}
			err := tbl.update(func(w *routeWriter) error {
				_, ok := w.get(p)
				switch {
				case op == 0 && !ok:
					ref[p] = true
					return w.add(testEntry(p))
				case op == 1 && ok:
					delete(ref, p)
					_, err := w.remove(p)
					return err
				case op == 2 && ok:
					if _, err := w.remove(p); err != nil {
						return err
					}
					return w.add(testEntry(p))
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if op == 3 {
				if inside {
					rd.leave()
					held = held[:0]
				} else {
					f := tbl.enter(rd)
					for _, x := range probes {
						if e := f.lookup(x); e != nil {
							held = append(held, heldEntry{e, *e})
						}
					}
				}
				inside = !inside
			}
			for _, h := range held {
				if *h.e != h.copy {
					t.Fatalf("an entry held by a reader inside its batch changed: %v -> %v", h.copy.route, h.e.route)
				}
			}
			for _, x := range probes {
				want, ok := refRoute(ref, x)
				e := tbl.lookup(x)
				if (e != nil) != ok || (e != nil && (e.route.Prefix != want || checkEntry(e, x) != "")) {
					t.Fatalf("lookup %v = %v, reference %v (found %v)", addrFrom4(x), e, want, ok)
				}
			}
		}
	})
}

// TestRouteAPI covers AddRoute/DeleteRoute/Routes/Lookup, including the fallback to a shorter prefix after
// a delete and the errors a person sees.
func TestRouteAPI(t *testing.T) {
	s, err := New(Config{Interfaces: []Interface{{Name: "wan", Addrs: []netip.Prefix{netip.MustParsePrefix("198.19.0.1/24")}}}})
	if err != nil {
		t.Fatal(err)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.AddRoute(Route{Prefix: netip.MustParsePrefix("0.0.0.0/0"), NextHop: netip.MustParseAddr("198.19.0.254")}))
	must(s.AddRoute(Route{Prefix: netip.MustParsePrefix("198.18.0.0/16"), NextHop: netip.MustParseAddr("198.19.0.2")}))
	must(s.AddRoute(Route{Prefix: netip.MustParsePrefix("198.18.5.0/24"), Type: Blackhole}))
	if err := s.AddRoute(Route{Prefix: netip.MustParsePrefix("198.18.5.0/24"), Type: Unreachable}); err == nil {
		t.Error("duplicate prefix accepted")
	}
	if err := s.AddRoute(Route{Prefix: netip.MustParsePrefix("198.18.6.1/24"), Type: Blackhole}); err == nil {
		t.Error("prefix with host bits accepted")
	}
	if err := s.AddRoute(Route{Prefix: netip.MustParsePrefix("198.18.7.0/24"), NextHop: netip.MustParseAddr("203.0.113.1")}); err == nil {
		t.Error("next hop off every connected network accepted")
	}
	cases := []struct {
		dst  string
		want string
	}{
		{"8.8.8.8", "0.0.0.0/0 via 198.19.0.254 dev wan"},
		{"198.18.1.1", "198.18.0.0/16 via 198.19.0.2 dev wan"},
		{"198.18.5.9", "blackhole 198.18.5.0/24"},
		{"198.19.0.7", "198.19.0.0/24 dev wan"},
		{"198.19.0.1", "local 198.19.0.1/32 dev wan"},
		{"198.19.0.255", "broadcast 198.19.0.255/32 dev wan"},
	}
	for _, c := range cases {
		r, ok := s.Lookup(netip.MustParseAddr(c.dst))
		if !ok || r.String() != c.want {
			t.Errorf("Lookup(%s) = %v, %v; want %s", c.dst, r, ok, c.want)
		}
	}
	must(s.DeleteRoute(netip.MustParsePrefix("198.18.5.0/24")))
	if r, _ := s.Lookup(netip.MustParseAddr("198.18.5.9")); r.Prefix.Bits() != 16 {
		t.Errorf("after delete, 198.18.5.9 -> %v, want the /16", r)
	}
	if err := s.DeleteRoute(netip.MustParsePrefix("198.18.5.0/24")); err == nil {
		t.Error("deleting a missing route succeeded")
	}
	if err := s.DeleteRoute(netip.MustParsePrefix("198.19.0.1/32")); err == nil {
		t.Error("deleting a local address route succeeded")
	}
	if n := len(s.Routes()); n != 3 {
		t.Errorf("Routes() has %d entries, want 3 (connected, default, /16): %v", n, s.Routes())
	}
}

// BenchmarkLookup measures DIR-24-8 lookups of random destinations over 1M random prefixes.
func BenchmarkLookup(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	tbl := newDir248()
	for i, p := range randomPrefixes(r, 1<<20) {
		tbl.insert(addr4(p.Addr()), p.Bits(), uint32(i+1))
	}
	b.ReportAllocs()
	b.ResetTimer()
	// A xorshift per iteration: every lookup is a fresh random address over the whole 64 MiB tbl24, so
	// the number includes cache and TLB misses (no small working set of destinations).
	var sink uint32
	x := uint32(2463534242)
	for b.Loop() {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		sink += tbl.lookup(x)
	}
	_ = sink
	b.ReportMetric(float64(tbl.memory())/(1<<20), "MiB")
	b.ReportMetric(float64(tbl.groups()), "tbl8-groups")
}

// BenchmarkLookupBatch is BenchmarkLookup the way the forwarding path calls it: a vector of 64 random
// destinations looked up in one loop, whose independent loads the CPU overlaps. ns/op is per lookup.
func BenchmarkLookupBatch(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	tbl := newDir248()
	for i, p := range randomPrefixes(r, 1<<20) {
		tbl.insert(addr4(p.Addr()), p.Bits(), uint32(i+1))
	}
	var dst, out [64]uint32
	x := uint32(2463534242)
	b.ReportAllocs()
	b.ResetTimer()
	var sink uint32
	for i := 0; i < b.N; i += len(dst) {
		for j := range dst {
			x ^= x << 13
			x ^= x >> 17
			x ^= x << 5
			dst[j] = x
		}
		for j, a := range dst {
			out[j] = tbl.lookup(a)
		}
		sink += out[7]
	}
	_ = sink
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e3*1e3, "ns/lookup")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/1e6, "Mlookups/s")
}
