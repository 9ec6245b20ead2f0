package stack

import (
	"net/netip"
	"testing"
)

// BenchmarkSyncRoutes is the cost of one mirrored route change: one copy of the DIR-24-8 table.
func BenchmarkSyncRoutes(b *testing.B) {
	s, err := New(testConfig())
	if err != nil {
		b.Fatal(err)
	}
	p := netip.MustParsePrefix("198.18.201.0/24")
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		if i%2 == 0 {
			err = s.SyncRoutes([]Route{{Prefix: p, NextHop: ipB}}, nil)
		} else {
			err = s.SyncRoutes(nil, []netip.Prefix{p})
		}
		if err != nil {
			b.Fatal(err)
		}
	}
}
