package xdpprog_test

import (
	"net"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/xdpnet/xdpnet/internal/netlab"
)

// requirePriv skips when not privileged, or fails when CI demands privileged tests (XDPNET_REQUIRE_PRIV=1).
func requirePriv(t *testing.T) {
	t.Helper()
	netlab.RequirePrivileges(t)
}

// host adapts a netlab.Host to the few things these tests use.
type host struct {
	name string // the named namespace, for `ip netns exec` and netns.GetFromName
	ns   netns.NsHandle
	nl   *netlink.Handle
	h    *netlab.Host
}

func wrap(h *netlab.Host) *host {
	return &host{name: h.Name(), ns: h.NsHandle(), nl: h.Netlink(), h: h}
}

// do runs fn on an OS thread switched into the host's namespace (Attach resolves ifindex there).
func (h *host) do(fn func() error) error { return h.h.Do(fn) }

func (h *host) ifindex(t *testing.T, ifname string) int {
	t.Helper()
	l, err := h.nl.LinkByName(ifname)
	if err != nil {
		t.Fatalf("%s: link %s: %v", h.name, ifname, err)
	}
	return l.Attrs().Index
}

// newHost creates one namespace (lo up), removed at cleanup.
func newHost(t *testing.T, role string) *host {
	t.Helper()
	requirePriv(t)
	lab := netlab.NewT(t)
	return wrap(lab.MustAddHost(t, role))
}

// pair is two hosts joined by a veth pair: a.ifA (198.18.0.1/30) <-> b.ifB (198.18.0.2/30), one queue each
// so that all traffic uses queue 0 (the tests register a socket on queue 0 only).
type pair struct {
	lab      *netlab.Lab
	a, b     *host
	ifA, ifB string
	ipA, ipB net.IP
}

func newPair(t *testing.T) *pair {
	t.Helper()
	requirePriv(t)
	lab := netlab.NewT(t) // namespaces named with netlab's unique per-process prefix
	p := &pair{
		lab: lab,
		a:   wrap(lab.MustAddHost(t, "xpga")), b: wrap(lab.MustAddHost(t, "xpgb")),
		ifA: "xpga0", ifB: "xpgb0",
		ipA: net.IPv4(198, 18, 0, 1).To4(), ipB: net.IPv4(198, 18, 0, 2).To4(),
	}
	if _, err := lab.LinkWith(p.a.h, p.ifA, p.b.h, p.ifB, netlab.LinkOptions{Queues: 1}); err != nil {
		t.Fatal(err)
	}
	for _, side := range []struct {
		h      *host
		ifname string
		prefix string
	}{{p.a, p.ifA, "198.18.0.1/30"}, {p.b, p.ifB, "198.18.0.2/30"}} {
		if err := side.h.h.AddAddr(side.ifname, side.prefix); err != nil {
			t.Fatal(err)
		}
		if err := side.h.h.SetUp(side.ifname); err != nil {
			t.Fatal(err)
		}
	}
	return p
}
