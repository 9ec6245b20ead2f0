package main

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/xdpnet/xdpnet/stack"
)

// The start line lists a small table and counts a large one; /routes lists the table in `ip route` form.
func TestWriteRoutes(t *testing.T) {
	routes := []stack.Route{ // as Stack.Routes returns them: IPv4 before IPv6, by prefix
		{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Type: stack.Blackhole},
		{Prefix: netip.MustParsePrefix("198.18.0.0/15"), NextHop: netip.MustParseAddr("198.18.1.2"), Interface: "r1"},
		{Prefix: netip.MustParsePrefix("198.18.0.0/24"), Interface: "r0"},
		{Prefix: netip.MustParsePrefix("198.19.0.0/16"), NextHop: netip.MustParseAddr("198.18.1.2"), Interface: "r1"},
		{Prefix: netip.MustParsePrefix("2001:2::/48"), NextHop: netip.MustParseAddr("fe80::1"), Interface: "r1"},
	}
	if s := routeSummary(routes[:2]); s != "blackhole 10.0.0.0/8; 198.18.0.0/15 via 198.18.1.2 dev r1" {
		t.Errorf("summary of two routes: %q", s)
	}
	var b strings.Builder
	if err := writeRoutes(&b, routes); err != nil {
		t.Fatal(err)
	}
	want := `blackhole 10.0.0.0/8
198.18.0.0/15 via 198.18.1.2 dev r1
198.18.0.0/24 dev r0
198.19.0.0/16 via 198.18.1.2 dev r1
2001:2::/48 via fe80::1 dev r1
`
	if b.String() != want {
		t.Errorf("/routes:\n%s\nwant:\n%s", b.String(), want)
	}
	if s := routeSummary(make([]stack.Route, 1000)); !strings.HasPrefix(s, "1000 ") {
		t.Errorf("summary of 1000 routes: %q, want the count", s)
	}
}
