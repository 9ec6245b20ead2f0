package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Host is one network namespace of a Lab. Its configuration methods talk
// netlink to the namespace through a handle bound to it, so they do not move
// the caller's thread and may be called from any goroutine.
type Host struct {
	lab  *Lab
	role string
	name string
	ns   netns.NsHandle
	nl   *netlink.Handle
}

// Name returns the namespace name, usable with `ip netns exec NAME ...`.
func (h *Host) Name() string { return h.name }

// Role returns the role given to AddHost.
func (h *Host) Role() string { return h.role }

// Lab returns the lab the host belongs to.
func (h *Host) Lab() *Lab { return h.lab }

// Path returns the namespace's bind mount, such as /run/netns/xn0a3Zk-r1.
func (h *Host) Path() string { return filepath.Join(netnsDir, h.name) }

// NsHandle returns the host's namespace handle. It is owned by the Host and
// closed by Lab.Close; do not close it.
func (h *Host) NsHandle() netns.NsHandle { return h.ns }

// Netlink returns a netlink handle bound to the host's namespace, for
// configuration this package does not wrap. It is owned by the Host and
// closed by Lab.Close; do not close it.
func (h *Host) Netlink() *netlink.Handle { return h.nl }

// Do runs fn on an OS thread switched into the host's namespace and waits for
// it. Sockets fn opens stay in the namespace after Do returns, so the usual
// pattern is to open a socket in Do and use it outside.
//
// Only the thread that runs fn is in the namespace: goroutines fn starts run
// on other threads, in the root namespace. fn runs on a fresh goroutine; if
// the thread cannot be switched back afterwards it is discarded, never
// reused. A panic in fn is re-raised in the caller.
func (h *Host) Do(fn func() error) error {
	var fnErr error
	err := onFreshThread(func() (bool, error) {
		orig, err := netns.Get()
		if err != nil {
			return true, fmt.Errorf("open current network namespace: %w", err)
		}
		defer orig.Close()
		if err := netns.Set(h.ns); err != nil {
			return true, fmt.Errorf("enter namespace %s: %w", h.name, privHint(err))
		}
		restored := false
		defer func() {
			// Runs on panic too; an unrestored thread is not unlocked
			// (onFreshThread) and so dies with its goroutine.
			if !restored {
				netns.Set(orig)
			}
		}()
		fnErr = fn()
		if err := netns.Set(orig); err != nil {
			restored = true // do not retry in the deferred call
			return false, fmt.Errorf("%w: %v", errThreadLost, err)
		}
		restored = true
		return true, nil
	})
	if err != nil {
		return errors.Join(fnErr, err)
	}
	return fnErr
}

// Command returns a command that runs name with args inside the host's
// namespace. It runs `ip netns exec`, which also gives the program a /sys
// that shows the namespace's interfaces; without iproute2 it falls back to
// nsenter (util-linux), where /sys still shows the root namespace.
func (h *Host) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	ip, err := exec.LookPath("ip")
	return h.command(ctx, err == nil, ip, name, args...)
}

// command builds the Command for either launcher. Both exec the program in
// place (no fork), so signals and ctx cancellation reach it directly.
func (h *Host) command(ctx context.Context, useIP bool, ip, name string, args ...string) *exec.Cmd {
	if useIP {
		return exec.CommandContext(ctx, ip, append([]string{"netns", "exec", h.name, name}, args...)...)
	}
	return exec.CommandContext(ctx, "nsenter", append([]string{"--net=" + h.Path(), "--", name}, args...)...)
}

// Run runs name with args inside the host's namespace and returns its
// combined output. A failure's error includes the output.
func (h *Host) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	out, err := h.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		return out, fmt.Errorf("run %s %s in %s: %w: %s", name, strings.Join(args, " "), h.name, err, bytes.TrimSpace(out))
	}
	return out, nil
}

// Link returns the netlink view of interface ifname in the host.
func (h *Host) Link(ifname string) (netlink.Link, error) {
	lk, err := h.nl.LinkByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("find interface %s in %s: %w", ifname, h.name, err)
	}
	return lk, nil
}

// AddAddr adds prefix ("198.18.0.1/24", "2001:db8::1/64") to ifname.
// IPv6 addresses skip duplicate address detection so they work at once.
func (h *Host) AddAddr(ifname, prefix string) error {
	p, err := netip.ParsePrefix(prefix)
	if err != nil {
		return fmt.Errorf("add address to %s in %s: %w", ifname, h.name, err)
	}
	lk, err := h.Link(ifname)
	if err != nil {
		return err
	}
	a := &netlink.Addr{IPNet: &net.IPNet{
		IP:   net.IP(p.Addr().AsSlice()),
		Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen()),
	}}
	if p.Addr().Is6() {
		a.Flags = unix.IFA_F_NODAD
	}
	if err := h.nl.AddrAdd(lk, a); err != nil {
		return fmt.Errorf("add address %s to %s in %s: %w", prefix, ifname, h.name, err)
	}
	return nil
}

// SetUp brings ifname up.
func (h *Host) SetUp(ifname string) error {
	lk, err := h.Link(ifname)
	if err != nil {
		return err
	}
	if err := h.nl.LinkSetUp(lk); err != nil {
		return fmt.Errorf("set %s up in %s: %w", ifname, h.name, err)
	}
	return nil
}

// WaitOperUp waits until ifname's operational state is up: both veth ends
// are up and the kernel's link watcher has activated the queueing
// discipline. Until then (up to a second after SetUp) the kernel drops what
// is sent, ARP requests included, which delays the first packets by the ARP
// retry time. Call it after bringing both ends of a link up.
func (h *Host) WaitOperUp(ifname string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		lk, err := h.Link(ifname)
		if err != nil {
			return err
		}
		st := lk.Attrs().OperState
		if st == netlink.OperUp {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("wait for %s in %s to be up: still %s after %v (is the peer up?)", ifname, h.name, st, timeout)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// SetDown brings ifname down.
func (h *Host) SetDown(ifname string) error {
	lk, err := h.Link(ifname)
	if err != nil {
		return err
	}
	if err := h.nl.LinkSetDown(lk); err != nil {
		return fmt.Errorf("set %s down in %s: %w", ifname, h.name, err)
	}
	return nil
}

// SetMTU sets the MTU of ifname.
func (h *Host) SetMTU(ifname string, mtu int) error {
	lk, err := h.Link(ifname)
	if err != nil {
		return err
	}
	if err := h.nl.LinkSetMTU(lk, mtu); err != nil {
		return fmt.Errorf("set MTU of %s in %s to %d: %w", ifname, h.name, mtu, err)
	}
	return nil
}

// AddRoute adds a route to dst ("198.18.1.0/24", "2001:db8:1::/64" or
// "default", which is IPv4 unless via is IPv6) through gateway via. The
// output interface is found by the kernel from via.
func (h *Host) AddRoute(dst, via string) error {
	gw, err := netip.ParseAddr(via)
	if err != nil {
		return fmt.Errorf("add route %s via %s in %s: %w", dst, via, h.name, err)
	}
	var p netip.Prefix
	if dst == "default" {
		p = netip.PrefixFrom(netip.IPv4Unspecified(), 0)
		if gw.Is6() {
			p = netip.PrefixFrom(netip.IPv6Unspecified(), 0)
		}
	} else if p, err = netip.ParsePrefix(dst); err != nil {
		return fmt.Errorf("add route %s via %s in %s: %w", dst, via, h.name, err)
	}
	r := &netlink.Route{
		Dst: &net.IPNet{IP: net.IP(p.Masked().Addr().AsSlice()), Mask: net.CIDRMask(p.Bits(), p.Addr().BitLen())},
		Gw:  net.IP(gw.AsSlice()),
	}
	if err := h.nl.RouteAdd(r); err != nil {
		return fmt.Errorf("add route %s via %s in %s: %w (is an address of %s's subnet on an interface that is up?)", dst, via, h.name, err, via)
	}
	return nil
}

// sysctlPath maps a key to its file. Like sysctl(8), a key with '/' is
// taken as a path, which is how to name an interface with a dot in it
// ("net/ipv4/conf/eth0.100/rp_filter").
func sysctlPath(key string) string {
	if strings.Contains(key, "/") {
		return filepath.Join("/proc/sys", key)
	}
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

// Sysctl sets a sysctl inside the host, such as
// Sysctl("net.ipv4.ip_forward", "0"). Only per-namespace keys (most of
// net.*) are private to the host; others change the whole machine.
func (h *Host) Sysctl(key, value string) error {
	path := sysctlPath(key)
	return h.Do(func() error {
		// /proc/sys/net resolves to the namespace of the thread that opens
		// it, so the open must happen inside Do.
		if err := os.WriteFile(path, []byte(value), 0o644); err != nil {
			return fmt.Errorf("sysctl %s=%s in %s: %w", key, value, h.name, err)
		}
		return nil
	})
}

// ReadSysctl reads a sysctl inside the host.
func (h *Host) ReadSysctl(key string) (string, error) {
	path := sysctlPath(key)
	var v []byte
	err := h.Do(func() error {
		var err error
		v, err = os.ReadFile(path)
		return err
	})
	if err != nil {
		return "", fmt.Errorf("read sysctl %s in %s: %w", key, h.name, err)
	}
	return strings.TrimSpace(string(v)), nil
}

// Neigh adds or replaces a permanent neighbour entry: ip is at mac on ifname.
func (h *Host) Neigh(ifname, ip string, mac net.HardwareAddr) error {
	a, err := netip.ParseAddr(ip)
	if err != nil {
		return fmt.Errorf("add neighbour %s on %s in %s: %w", ip, ifname, h.name, err)
	}
	lk, err := h.Link(ifname)
	if err != nil {
		return err
	}
	fam := netlink.FAMILY_V4
	if a.Is6() {
		fam = netlink.FAMILY_V6
	}
	n := &netlink.Neigh{
		LinkIndex:    lk.Attrs().Index,
		Family:       fam,
		State:        netlink.NUD_PERMANENT,
		IP:           net.IP(a.AsSlice()),
		HardwareAddr: mac,
	}
	if err := h.nl.NeighSet(n); err != nil {
		return fmt.Errorf("add neighbour %s at %s on %s in %s: %w", ip, mac, ifname, h.name, err)
	}
	return nil
}

// delLink deletes ifname; an interface that is already gone is not an error.
func (h *Host) delLink(ifname string) error {
	lk, err := h.nl.LinkByName(ifname)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) {
			return nil
		}
		return err
	}
	return h.nl.LinkDel(lk)
}
