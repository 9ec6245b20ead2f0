package main

import (
	"net/netip"
	"strings"
	"testing"
)

func TestIfaceFlag(t *testing.T) {
	var f ifaceFlags
	for _, v := range []string{"r0=198.18.0.1/24", "r1", "r0=198.18.1.1/24,2001:2::1/64"} {
		if err := f.Set(v); err != nil {
			t.Fatalf("Set(%q): %v", v, err)
		}
	}
	if len(f) != 2 || f[0].Name != "r0" || len(f[0].Addrs) != 3 || f[1].Name != "r1" || len(f[1].Addrs) != 0 {
		t.Fatalf("got %+v", f)
	}
	for _, bad := range []string{"", "=198.18.0.1/24", "r0=198.18.0.1", "r0=2001:2::1", "r0=::ffff:198.18.0.1/120", "averyveryverylongname=198.18.0.1/24"} {
		if err := f.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
}

func TestRouteFlag(t *testing.T) {
	var f routeFlags
	for _, v := range []string{"198.19.0.0/16=198.18.0.2", "default=198.18.0.254", "203.0.113.0/24=blackhole", "198.51.100.0/24=unreachable",
		"2001:2:100::/48=2001:2::2", "::/0=fe80::1%r1", "2001:2:200::/48=unreachable"} {
		if err := f.Set(v); err != nil {
			t.Fatalf("Set(%q): %v", v, err)
		}
	}
	want := []routeSpec{
		{netip.MustParsePrefix("198.19.0.0/16"), netip.MustParseAddr("198.18.0.2"), "via"},
		{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParseAddr("198.18.0.254"), "via"},
		{netip.MustParsePrefix("203.0.113.0/24"), netip.Addr{}, "blackhole"},
		{netip.MustParsePrefix("198.51.100.0/24"), netip.Addr{}, "unreachable"},
		{netip.MustParsePrefix("2001:2:100::/48"), netip.MustParseAddr("2001:2::2"), "via"},
		{netip.MustParsePrefix("::/0"), netip.MustParseAddr("fe80::1%r1"), "via"},
		{netip.MustParsePrefix("2001:2:200::/48"), netip.Addr{}, "unreachable"},
	}
	for i := range want {
		if f[i] != want[i] {
			t.Errorf("route %d = %+v, want %+v", i, f[i], want[i])
		}
	}
	err := f.Set("198.19.0.1/16=198.18.0.2")
	if err == nil || !strings.Contains(err.Error(), "did you mean 198.19.0.0/16") {
		t.Errorf("host bits: got %v", err)
	}
	for _, bad := range []string{"198.19.0.0/16", "x=198.18.0.2", "198.19.0.0/16=nowhere", "198.19.0.0/16=2001:2::2",
		"2001:2:100::/48=198.18.0.2", "2001:2:100::/48=2001:2::2%r1"} {
		if err := f.Set(bad); err == nil {
			t.Errorf("Set(%q) accepted", bad)
		}
	}
}

func TestParseCPUList(t *testing.T) {
	got, err := parseCPUList("0,2-3")
	if err != nil || len(got) != 3 || got[0] != 0 || got[1] != 2 || got[2] != 3 {
		t.Fatalf("parseCPUList = %v, %v", got, err)
	}
	for _, bad := range []string{"a", "3-1", "1-x"} {
		if _, err := parseCPUList(bad); err == nil {
			t.Errorf("parseCPUList(%q) accepted", bad)
		}
	}
}
