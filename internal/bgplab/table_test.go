package bgplab

import (
	"net/netip"
	"testing"
)

// The synthetic table has the size, the lengths and the exclusions the lab relies on: every prefix distinct,
// none touching 198.18.0.0/15 (the lab's traffic must never match a synthetic route), /24 the most common
// length, and the same table for the same seed.
func TestSyntheticV4(t *testing.T) {
	const n = 200_000
	tab := SyntheticV4(n, 1)
	if len(tab) != n {
		t.Fatalf("%d prefixes, want %d", len(tab), n)
	}
	seen := map[netip.Prefix]bool{}
	lengths := map[int]int{}
	for _, p := range tab {
		if seen[p] {
			t.Fatalf("%v twice", p)
		}
		seen[p] = true
		if p != p.Masked() || !p.Addr().Is4() {
			t.Fatalf("%v is not a masked IPv4 prefix", p)
		}
		if p.Overlaps(benchmarking) || !usable(p) {
			t.Fatalf("%v is outside the space the lab may announce", p)
		}
		lengths[p.Bits()]++
	}
	for _, l := range v4Lengths {
		want := l.perMillion * n / 1_000_000
		if got := lengths[l.bits]; got < want-want/10-2 || got > want+want/10+2 {
			t.Errorf("/%d: %d prefixes, want about %d", l.bits, got, want)
		}
	}
	if lengths[24] < n/2 {
		t.Errorf("/24 is %d of %d, want the majority as in the public table", lengths[24], n)
	}
	again := SyntheticV4(n, 1)
	for i := range tab {
		if tab[i] != again[i] {
			t.Fatalf("prefix %d differs between two runs with the same seed: %v, %v", i, tab[i], again[i])
		}
	}
}
