package netlab

import (
	"errors"
	"fmt"
	"net"
	"runtime"
	"strconv"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Lab is a set of hosts (named network namespaces) and the veth pairs that
// join them. Everything it creates is named with its prefix and removed by
// Close. A Lab's methods may be called from several goroutines.
type Lab struct {
	name   string
	prefix string

	mu     sync.Mutex
	closed bool
	hosts  []*Host
	veths  []*Veth
	procs  []*Proc
	nveth  int
}

// New creates an empty lab. name is only for messages (a test name, "demo").
// New first removes what crashed earlier runs left behind (see CleanStale).
func New(name string) (*Lab, error) {
	if err := CleanStale(); err != nil {
		// A stale leftover that cannot be removed does not stop a new lab:
		// the new prefix cannot collide with it.
		_ = err
	}
	p, err := reservePrefix()
	if err != nil {
		return nil, err
	}
	return &Lab{name: name, prefix: p}, nil
}

// NewT returns a new lab for a test, closed by t.Cleanup. It skips or fails
// the test as RequirePrivileges does when the process lacks privileges.
func NewT(t testing.TB) *Lab {
	t.Helper()
	RequirePrivileges(t)
	l, err := New(t.Name())
	if err != nil {
		t.Fatalf("netlab: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("netlab: close lab %s (%s): %v", l.prefix, l.name, err)
		}
	})
	return l
}

// Prefix returns the lab's unique prefix, such as "xn0a3Zk".
func (l *Lab) Prefix() string { return l.prefix }

// Name returns the name given to New.
func (l *Lab) Name() string { return l.name }

// Hosts returns the lab's hosts in creation order.
func (l *Lab) Hosts() []*Host {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Host(nil), l.hosts...)
}

// AddHost creates a host: a named network namespace prefix-role with its
// loopback interface up. role must be unique within the lab.
func (l *Lab) AddHost(role string) (*Host, error) {
	if err := checkRole(role); err != nil {
		return nil, err
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, fmt.Errorf("add host %s: lab %s is closed", role, l.prefix)
	}
	for _, h := range l.hosts {
		if h.role == role {
			return nil, fmt.Errorf("add host %s: lab %s already has a host with that role", role, l.prefix)
		}
	}
	name := l.prefix + "-" + role
	ns, err := createNamedNetns(name)
	if err != nil {
		return nil, fmt.Errorf("add host %s: %w", role, err)
	}
	h := &Host{lab: l, role: role, name: name, ns: ns}
	// Registered before anything else can fail so that Close removes it.
	l.hosts = append(l.hosts, h)
	h.nl, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("add host %s: open netlink in namespace %s: %w", role, name, err)
	}
	if err := h.SetUp("lo"); err != nil {
		return nil, fmt.Errorf("add host %s: %w", role, err)
	}
	return h, nil
}

// MustAddHost is AddHost that fails the test on error.
func (l *Lab) MustAddHost(t testing.TB, role string) *Host {
	t.Helper()
	h, err := l.AddHost(role)
	if err != nil {
		t.Fatalf("netlab: %v", err)
	}
	return h
}

// Endpoint is one end of a veth pair, as seen inside its host.
type Endpoint struct {
	Host  *Host
	Name  string // interface name inside Host, such as "eth0"
	Index int    // ifindex inside Host
	MAC   net.HardwareAddr
}

// HWAddr returns MAC as an array, the form hot-path code compares.
func (e Endpoint) HWAddr() [6]byte {
	var a [6]byte
	copy(a[:], e.MAC)
	return a
}

// Veth is a veth pair joining two hosts.
type Veth struct {
	A, B Endpoint
}

// LinkOptions tunes a veth pair made by LinkWith.
type LinkOptions struct {
	// Queues is how many RX and TX queues each end is created with: the most
	// that SetQueues can enable later. Zero means runtime.NumCPU().
	Queues int
	// MTU of both ends; zero leaves the kernel default (1500).
	MTU int
	// MACA and MACB, when set, are the ends' MAC addresses; otherwise the
	// kernel picks random ones.
	MACA, MACB net.HardwareAddr
}

// Link creates a veth pair with one end named aIf in a and the other named
// bIf in b, both down. Names are private to a namespace, so short names such
// as "eth0" can be used in every host.
func (l *Lab) Link(a *Host, aIf string, b *Host, bIf string) (*Veth, error) {
	return l.LinkWith(a, aIf, b, bIf, LinkOptions{})
}

// LinkWith is Link with options.
func (l *Lab) LinkWith(a *Host, aIf string, b *Host, bIf string, o LinkOptions) (*Veth, error) {
	for _, n := range []string{aIf, bIf} {
		if err := checkIfName(n); err != nil {
			return nil, fmt.Errorf("link %s:%s to %s:%s: %w", a.role, aIf, b.role, bIf, err)
		}
	}
	if a.lab != l || b.lab != l {
		return nil, fmt.Errorf("link %s:%s to %s:%s: hosts belong to another lab", a.role, aIf, b.role, bIf)
	}
	if a == b {
		return nil, fmt.Errorf("link %s:%s to %s:%s: both ends in the same host is not supported", a.role, aIf, b.role, bIf)
	}
	q := o.Queues
	if q <= 0 {
		q = runtime.NumCPU()
	}

	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil, fmt.Errorf("link %s:%s to %s:%s: lab %s is closed", a.role, aIf, b.role, bIf, l.prefix)
	}
	l.nveth++
	n := l.nveth
	l.mu.Unlock()

	// The pair is made in the root namespace under names only this lab
	// uses, so creation cannot clash with anything, and a crash leaves names
	// CleanStale recognises. Then each end moves to its host and is renamed.
	tmpA := l.prefix + "a" + strconv.Itoa(n)
	tmpB := l.prefix + "b" + strconv.Itoa(n)
	if len(tmpA) > maxIfName {
		return nil, fmt.Errorf("link %s:%s to %s:%s: lab %s made too many veth pairs", a.role, aIf, b.role, bIf, l.prefix)
	}
	attrs := netlink.NewLinkAttrs()
	attrs.Name = tmpA
	attrs.NumTxQueues = q
	attrs.NumRxQueues = q
	if o.MTU > 0 {
		attrs.MTU = o.MTU
	}
	if o.MACA != nil {
		attrs.HardwareAddr = o.MACA
	}
	v := &netlink.Veth{
		LinkAttrs:        attrs,
		PeerName:         tmpB,
		PeerNumTxQueues:  uint32(q),
		PeerNumRxQueues:  uint32(q),
		PeerHardwareAddr: o.MACB,
	}
	if o.MTU > 0 {
		v.PeerMTU = uint32(o.MTU)
	}
	if err := netlink.LinkAdd(v); err != nil {
		return nil, fmt.Errorf("link %s:%s to %s:%s: create veth %s/%s: %w", a.role, aIf, b.role, bIf, tmpA, tmpB, privHint(err))
	}
	ea, errA := moveInto(tmpA, a, aIf)
	eb, errB := moveInto(tmpB, b, bIf)
	if err := errors.Join(errA, errB); err != nil {
		// Deleting either end deletes the pair, wherever it is now.
		if lk, e := netlink.LinkByName(tmpA); e == nil {
			netlink.LinkDel(lk)
		} else if ea.Host != nil {
			ea.Host.delLink(ea.Name)
		} else if lk, e := netlink.LinkByName(tmpB); e == nil {
			netlink.LinkDel(lk)
		} else if eb.Host != nil {
			eb.Host.delLink(eb.Name)
		}
		return nil, fmt.Errorf("link %s:%s to %s:%s: %w", a.role, aIf, b.role, bIf, err)
	}
	vp := &Veth{A: ea, B: eb}
	l.mu.Lock()
	l.veths = append(l.veths, vp)
	l.mu.Unlock()
	return vp, nil
}

// MustLink is Link that fails the test on error.
func (l *Lab) MustLink(t testing.TB, a *Host, aIf string, b *Host, bIf string) *Veth {
	t.Helper()
	v, err := l.Link(a, aIf, b, bIf)
	if err != nil {
		t.Fatalf("netlab: %v", err)
	}
	return v
}

// moveInto moves root-namespace interface tmp into h and renames it to name.
// The returned Endpoint has Host set once the interface is in h.
func moveInto(tmp string, h *Host, name string) (Endpoint, error) {
	lk, err := netlink.LinkByName(tmp)
	if err != nil {
		return Endpoint{}, fmt.Errorf("find %s: %w", tmp, err)
	}
	if err := netlink.LinkSetNsFd(lk, int(h.ns)); err != nil {
		return Endpoint{}, fmt.Errorf("move %s into %s: %w", tmp, h.name, err)
	}
	ep := Endpoint{Host: h, Name: tmp}
	lk, err = h.nl.LinkByName(tmp)
	if err != nil {
		return ep, fmt.Errorf("find %s in %s: %w", tmp, h.name, err)
	}
	if err := h.nl.LinkSetName(lk, name); err != nil {
		return ep, fmt.Errorf("rename %s to %s in %s: %w", tmp, name, h.name, err)
	}
	ep.Name = name
	// The ifindex survives the move unless the target namespace already
	// uses it, so read it (and the MAC) again.
	lk, err = h.nl.LinkByName(name)
	if err != nil {
		return ep, fmt.Errorf("find %s in %s: %w", name, h.name, err)
	}
	ep.Index = lk.Attrs().Index
	ep.MAC = append(net.HardwareAddr(nil), lk.Attrs().HardwareAddr...)
	return ep, nil
}

// Close stops the processes started with Host.Start (SIGTERM, then SIGKILL),
// kills any other process still in the lab's namespaces, deletes the lab's
// veth pairs and namespaces, and releases its prefix. It may be called more than
// once; later calls return nil. It tries every step and returns all errors.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	procs, veths, hosts := l.procs, l.veths, l.hosts
	l.procs, l.veths, l.hosts = nil, nil, nil
	l.mu.Unlock()

	var errs []error
	for _, p := range procs {
		if err := p.Stop(procStopTimeout); err != nil && !errors.Is(err, ErrProcExited) {
			errs = append(errs, err)
		}
	}
	// Deleting a veth explicitly makes removal synchronous: a namespace is
	// torn down asynchronously by the kernel once its last reference goes.
	for _, v := range veths {
		if err := v.A.Host.delLink(v.A.Name); err != nil {
			errs = append(errs, fmt.Errorf("delete veth %s in %s: %w", v.A.Name, v.A.Host.name, err))
		}
	}
	for _, h := range hosts {
		// Programs started with Command rather than Start would keep the
		// namespace alive after its name is gone.
		killNetnsProcs(h.Path())
		if h.nl != nil {
			h.nl.Close()
		}
		if h.ns != netns.None() {
			h.ns.Close()
		}
		if err := deleteNamedNetns(h.name); err != nil {
			errs = append(errs, err)
		}
	}
	releasePrefix(l.prefix)
	return errors.Join(errs...)
}
