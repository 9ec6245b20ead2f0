package main

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/xdpnet/xdpnet/stack"
)

// ifaceSpec is one --iface value: NAME=ADDR/PLEN[,ADDR/PLEN...] (IPv4 or IPv6), or NAME alone to take the
// interface's IPv4 and global IPv6 addresses from the kernel.
type ifaceSpec struct {
	Name  string
	Addrs []netip.Prefix // empty: ask the kernel
}

// routeSpec is one --route value: PREFIX=NEXTHOP, PREFIX=blackhole or PREFIX=unreachable, IPv4 or IPv6;
// a link-local IPv6 next hop names its interface as a zone (fe80::1%r1), which the stack takes as the
// route's interface.
type routeSpec struct {
	Prefix  netip.Prefix
	NextHop netip.Addr
	Kind    string // "via", "blackhole", "unreachable"
}

// ifaceFlags collects repeated --iface flags; the same NAME given twice adds addresses to one port.
type ifaceFlags []ifaceSpec

func (f *ifaceFlags) String() string {
	var parts []string
	for _, s := range *f {
		parts = append(parts, s.Name)
	}
	return strings.Join(parts, ",")
}

func (f *ifaceFlags) Set(v string) error {
	i, err := stack.ParseInterface(v)
	if err != nil {
		return err
	}
	name, spec := i.Name, ifaceSpec{Name: i.Name, Addrs: i.Addrs}
	for i := range *f {
		if (*f)[i].Name == name {
			(*f)[i].Addrs = append((*f)[i].Addrs, spec.Addrs...)
			return nil
		}
	}
	*f = append(*f, spec)
	return nil
}

// routeFlags collects repeated --route flags.
type routeFlags []routeSpec

func (f *routeFlags) String() string { return fmt.Sprint(len(*f), " routes") }

func (f *routeFlags) Set(v string) error {
	pfx, target, ok := strings.Cut(v, "=")
	if !ok {
		return fmt.Errorf("%q: want PREFIX=NEXTHOP, PREFIX=blackhole or PREFIX=unreachable, e.g. 198.19.0.0/16=198.18.0.2 or 2001:2:100::/48=2001:2::2", v)
	}
	var r routeSpec
	if pfx == "default" {
		pfx = "0.0.0.0/0"
	}
	p, err := netip.ParsePrefix(pfx)
	if err != nil || p.Addr().Is4In6() {
		return fmt.Errorf("%q: %q is not a prefix such as 198.19.0.0/16, 2001:2:100::/48, default or ::/0", v, pfx)
	}
	if p != p.Masked() {
		return fmt.Errorf("%q: prefix %s has host bits set; did you mean %s?", v, p, p.Masked())
	}
	r.Prefix = p
	switch target {
	case "blackhole", "unreachable":
		r.Kind = target
	default:
		nh, err := netip.ParseAddr(target)
		if err != nil || nh.Is4() != p.Addr().Is4() || nh.Is4In6() {
			return fmt.Errorf("%q: next hop %q is not an address of the prefix's family (or blackhole/unreachable)", v, target)
		}
		if nh.Zone() != "" && !nh.IsLinkLocalUnicast() {
			return fmt.Errorf("%q: next hop %q: only a link-local next hop takes an interface as zone (fe80::1%%r1)", v, target)
		}
		r.Kind, r.NextHop = "via", nh
	}
	*f = append(*f, r)
	return nil
}

// parseCPUList reads "0,2-3" into CPU numbers.
func parseCPUList(s string) ([]int, error) {
	var cpus []int
	if s == "" {
		return nil, nil
	}
	for _, part := range strings.Split(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		var a, b int
		if _, err := fmt.Sscanf(lo, "%d", &a); err != nil {
			return nil, fmt.Errorf("--cpus %q: %q is not a CPU number (want a list like 0,2-3)", s, part)
		}
		b = a
		if isRange {
			if _, err := fmt.Sscanf(hi, "%d", &b); err != nil || b < a {
				return nil, fmt.Errorf("--cpus %q: %q is not a range like 2-3", s, part)
			}
		}
		for c := a; c <= b; c++ {
			cpus = append(cpus, c)
		}
	}
	return cpus, nil
}
