package bgplab

import (
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
)

// v4Lengths is the prefix-length distribution of the public IPv4 table, in prefixes per million, rounded
// from the CIDR Report's figures for 2024 (about 1 000 000 prefixes; /24 alone is 60%, /22 and /23 together
// 23%, nothing longer than /24 is accepted between networks).
var v4Lengths = [...]struct{ bits, perMillion int }{
	{8, 16}, {9, 13}, {10, 37}, {11, 100}, {12, 300}, {13, 600}, {14, 1200}, {15, 2100}, {16, 13500},
	{17, 8500}, {18, 14500}, {19, 26000}, {20, 45000}, {21, 55000}, {22, 120000}, {23, 105000}, {24, 608134},
}

// benchmarking is RFC 2544's range: the lab's own addresses, never part of the synthetic table, so that no
// synthetic route can take the lab's traffic.
var benchmarking = netip.MustParsePrefix("198.18.0.0/15")

// SyntheticV4 returns n distinct IPv4 prefixes with the length distribution of the public table, the same
// for the same seed. Like the real table it has covering prefixes (a /16 over some of its /24s); unlike it,
// it avoids 0/8, 127/8, multicast and reserved space (224/3) and the benchmarking range 198.18.0.0/15.
func SyntheticV4(n int, seed uint64) []netip.Prefix {
	rng := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	seen := make(map[netip.Prefix]bool, n)
	out := make([]netip.Prefix, 0, n)
	for _, l := range v4Lengths {
		want := (l.perMillion*n + 500_000) / 1_000_000
		for got := 0; got < want; {
			var a [4]byte
			binary.BigEndian.PutUint32(a[:], rng.Uint32())
			p := netip.PrefixFrom(netip.AddrFrom4(a), l.bits).Masked()
			if !usable(p) || seen[p] {
				continue // every length wants far fewer prefixes than it has room for
			}
			seen[p] = true
			out = append(out, p)
			got++
		}
	}
	// Rounding per length may leave the total a few off n: fill with /24s.
	for len(out) < n {
		var a [4]byte
		binary.BigEndian.PutUint32(a[:], rng.Uint32())
		if p := netip.PrefixFrom(netip.AddrFrom4(a), 24).Masked(); usable(p) && !seen[p] {
			seen[p] = true
			out = append(out, p)
		}
	}
	rng.Shuffle(len(out), func(i, j int) { out[i], out[j] = out[j], out[i] })
	return out[:n]
}

// usable says whether p may be announced in the lab: unicast space outside 0/8, 127/8 and the benchmarking
// range (neither inside it nor covering it).
func usable(p netip.Prefix) bool {
	first := p.Addr().As4()[0]
	return first != 0 && first != 127 && first < 224 && !p.Overlaps(benchmarking)
}
