package xdpprog_test

// Test hosts built directly with netlink + netns: internal/netlab is being written at the same time and is not
// usable yet. Move to netlab.NewT once it is committed.

import (
	"fmt"
	"net"
	"os"
	"runtime"
	"sync/atomic"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
)

// requirePriv skips when not root, or fails when CI demands privileged tests (XDPNET_REQUIRE_PRIV=1).
func requirePriv(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("XDPNET_REQUIRE_PRIV") == "1" {
		t.Fatal("needs root (network namespaces, bpf); XDPNET_REQUIRE_PRIV=1 forbids skipping")
	}
	t.Skip("needs root for network namespaces and bpf(2); run as root (CI sets XDPNET_REQUIRE_PRIV=1)")
}

var labSeq atomic.Int32

// host is one named network namespace.
type host struct {
	name string
	ns   netns.NsHandle
	nl   *netlink.Handle
}

// do runs fn on an OS thread switched into h's namespace. The thread is thrown away if it cannot be switched
// back, so no other goroutine ever runs in the wrong namespace.
func (h *host) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		if err := netns.Set(h.ns); err != nil {
			errc <- err
			return
		}
		ferr := fn()
		if err := netns.Set(orig); err != nil {
			errc <- fmt.Errorf("%v (and restoring the namespace: %v)", ferr, err)
			return // locked thread exits with the goroutine
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

func (h *host) ifindex(t *testing.T, ifname string) int {
	t.Helper()
	l, err := h.nl.LinkByName(ifname)
	if err != nil {
		t.Fatalf("%s: link %s: %v", h.name, ifname, err)
	}
	return l.Attrs().Index
}

// newHost creates namespace name with lo up, deleted at cleanup.
func newHost(t *testing.T, name string) *host {
	t.Helper()
	var ns netns.NsHandle
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := netns.Get()
		if err != nil {
			errc <- err
			return
		}
		defer orig.Close()
		ns, err = netns.NewNamed(name) // also switches this thread into it
		if rerr := netns.Set(orig); rerr != nil {
			errc <- fmt.Errorf("restore namespace: %v", rerr)
			return
		}
		runtime.UnlockOSThread()
		errc <- err
	}()
	if err := <-errc; err != nil {
		t.Fatalf("create netns %s: %v", name, err)
	}
	h := &host{name: name, ns: ns}
	t.Cleanup(func() {
		if h.nl != nil {
			h.nl.Close()
		}
		h.ns.Close()
		if err := netns.DeleteNamed(name); err != nil {
			t.Errorf("delete netns %s: %v", name, err)
		}
	})
	nh, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatalf("netlink handle in %s: %v", name, err)
	}
	h.nl = nh
	lo, err := nh.LinkByName("lo")
	if err == nil {
		err = nh.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("%s: lo up: %v", name, err)
	}
	return h
}

// pair is two hosts joined by a veth pair: a.ifA (198.18.0.1/30) <-> b.ifB (198.18.0.2/30).
type pair struct {
	a, b     *host
	ifA, ifB string
	ipA, ipB net.IP
}

// newPair builds the two hosts, named "xpg<pid>n<seq>a" / "...b", the veths "xpg<pid>n<seq>a0" / "...b0".
func newPair(t *testing.T) *pair {
	t.Helper()
	requirePriv(t)
	base := fmt.Sprintf("xpg%dn%d", os.Getpid(), labSeq.Add(1))
	p := &pair{
		a: newHost(t, base+"a"), b: newHost(t, base+"b"),
		ifA: base + "a0", ifB: base + "b0",
		ipA: net.IPv4(198, 18, 0, 1).To4(), ipB: net.IPv4(198, 18, 0, 2).To4(),
	}
	veth := &netlink.Veth{
		LinkAttrs:     netlink.LinkAttrs{Name: p.ifA},
		PeerName:      p.ifB,
		PeerNamespace: netlink.NsFd(int(p.b.ns)),
	}
	if err := p.a.nl.LinkAdd(veth); err != nil {
		t.Fatalf("add veth %s/%s: %v", p.ifA, p.ifB, err)
	}
	for _, side := range []struct {
		h   *host
		if_ string
		ip  net.IP
	}{{p.a, p.ifA, p.ipA}, {p.b, p.ifB, p.ipB}} {
		l, err := side.h.nl.LinkByName(side.if_)
		if err != nil {
			t.Fatalf("%s: %v", side.if_, err)
		}
		addr := &netlink.Addr{IPNet: &net.IPNet{IP: side.ip, Mask: net.CIDRMask(30, 32)}}
		if err := side.h.nl.AddrAdd(l, addr); err != nil {
			t.Fatalf("%s: add %s: %v", side.if_, addr, err)
		}
		if err := side.h.nl.LinkSetUp(l); err != nil {
			t.Fatalf("%s: up: %v", side.if_, err)
		}
	}
	return p
}
