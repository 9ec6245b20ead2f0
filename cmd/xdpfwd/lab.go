package main

import (
	"bytes"
	"context"
	"fmt"
	"strconv"
	"time"

	"github.com/xdpnet/xdpnet/internal/netlab"
)

// The demo's (and the integration tests') addresses, all from the RFC 2544 benchmarking range.
const (
	genAddr   = "198.18.0.2"
	r0Addr    = "198.18.0.1"
	r1Addr    = "198.19.0.1"
	sinkAddr  = "198.19.0.2"
	genPrefix = "/24"
)

// The IPv6 addresses of the lab with labOptions.IPv6, from the benchmarking range 2001:2::/48 (RFC 5180).
const (
	gen6Addr  = "2001:2::2"
	r06Addr   = "2001:2::1"
	r16Addr   = "2001:2:0:1::1"
	sink6Addr = "2001:2:0:1::2"
)

// routerLab is three namespaces in a row: gen (eth0) - (r0) router (r1) - (eth0) sink. The router's kernel
// has the addresses but forwards nothing (ip_forward=0): only xdpfwd does.
type routerLab struct {
	lab                *netlab.Lab
	gen, router, sink  *netlab.Host
	genLink, sinkLink  *netlab.Veth
	xdpfwd             *netlab.Proc
	xdpfwdOutputOffset int
}

type labOptions struct {
	// R1MTU, when non-zero, is the MTU of the router-sink link (both ends).
	R1MTU int
	// IPv6 makes the lab dual-stack: IPv6 stays on in every namespace at its defaults (router
	// solicitations, MLD reports and DAD go on the links), the hosts get the *6Addr addresses and default
	// routes via the router, the router's kernel has r06Addr and r16Addr too, with
	// net.ipv6.conf.all.forwarding=0. Without it IPv6 is off, and the links carry only the traffic a
	// test makes.
	IPv6 bool
	// BareRouter leaves the router's kernel without addresses of its own (but the link-local ones IPv6
	// makes by itself): whatever answers for the router's addresses is xdpfwd.
	BareRouter bool
}

// newRouterLab builds the lab. On error everything made so far is removed.
func newRouterLab(name string, o labOptions) (l *routerLab, err error) {
	lab, err := netlab.New(name)
	if err != nil {
		return nil, err
	}
	l = &routerLab{lab: lab}
	defer func() {
		if err != nil {
			lab.Close()
		}
	}()
	if l.gen, err = lab.AddHost("gen"); err != nil {
		return nil, err
	}
	if l.router, err = lab.AddHost("router"); err != nil {
		return nil, err
	}
	if l.sink, err = lab.AddHost("sink"); err != nil {
		return nil, err
	}
	// One queue per veth end: the sender's TX queue picks the receiver's RX queue, and xdpfwd runs one
	// queue by default, so with more queues some flows (ARP, ping) would land where no socket listens.
	if l.genLink, err = lab.LinkWith(l.gen, "eth0", l.router, "r0", netlab.LinkOptions{Queues: 1}); err != nil {
		return nil, err
	}
	if l.sinkLink, err = lab.LinkWith(l.router, "r1", l.sink, "eth0", netlab.LinkOptions{Queues: 1, MTU: o.R1MTU}); err != nil {
		return nil, err
	}
	type ifc struct {
		h     *netlab.Host
		name  string
		addrs []string
	}
	ifcs := []ifc{{l.gen, "eth0", []string{genAddr + "/24"}}, {l.router, "r0", []string{r0Addr + "/24"}},
		{l.router, "r1", []string{r1Addr + "/24"}}, {l.sink, "eth0", []string{sinkAddr + "/24"}}}
	if o.IPv6 {
		for i, a := range []string{gen6Addr, r06Addr, r16Addr, sink6Addr} {
			ifcs[i].addrs = append(ifcs[i].addrs, a+"/64")
		}
		if err := l.router.Sysctl("net.ipv6.conf.all.forwarding", "0"); err != nil {
			return nil, err
		}
	} else {
		for _, h := range []*netlab.Host{l.gen, l.router, l.sink} {
			// IPv6 off: no router solicitations or MLD reports on the links, only the traffic we make.
			for _, k := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
				if err := h.Sysctl(k, "1"); err != nil {
					return nil, err
				}
			}
		}
	}
	if err := l.router.Sysctl("net.ipv4.ip_forward", "0"); err != nil {
		return nil, err
	}
	if o.BareRouter {
		ifcs[1].addrs, ifcs[2].addrs = nil, nil
	}
	for _, c := range ifcs {
		for _, a := range c.addrs {
			if err := c.h.AddAddr(c.name, a); err != nil {
				return nil, err
			}
		}
		if err := c.h.SetUp(c.name); err != nil {
			return nil, err
		}
	}
	for _, c := range ifcs {
		if err := c.h.WaitOperUp(c.name, 5*time.Second); err != nil {
			return nil, err
		}
	}
	type route struct {
		h   *netlab.Host
		via string
	}
	routes := []route{{l.gen, r0Addr}, {l.sink, r1Addr}}
	if o.IPv6 {
		routes = append(routes, route{l.gen, r06Addr}, route{l.sink, r16Addr})
	}
	for _, r := range routes {
		if err := r.h.AddRoute("default", r.via); err != nil {
			return nil, err
		}
	}
	return l, nil
}

// startRouter starts `exe run args...` in the router namespace and waits until it says it is running.
func (l *routerLab) startRouter(exe string, args ...string) error {
	return l.startRouterCmd(exe, append([]string{"run"}, args...)...)
}

// startRouterCmd starts the command line name args... in the router namespace - xdpfwd itself, or a wrapper
// (setpriv, prlimit) that runs it - and waits until xdpfwd says it is running.
func (l *routerLab) startRouterCmd(name string, args ...string) error {
	p, err := l.router.Start(name, args...)
	if err != nil {
		return err
	}
	l.xdpfwd = p
	deadline := time.After(15 * time.Second)
	for {
		if bytes.Contains(p.Output(), []byte("xdpfwd running")) {
			return nil
		}
		select {
		case <-p.Done():
			return fmt.Errorf("xdpfwd exited at start (%v):\n%s", p.Wait(), p.Output())
		case <-deadline:
			return fmt.Errorf("xdpfwd did not start within 15s:\n%s", p.Output())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// newOutput returns what xdpfwd wrote since the last call.
func (l *routerLab) newOutput() []byte {
	out := l.xdpfwd.Output()
	if l.xdpfwdOutputOffset > len(out) {
		l.xdpfwdOutputOffset = 0
	}
	b := out[l.xdpfwdOutputOffset:]
	l.xdpfwdOutputOffset = len(out)
	return b
}

// waitIPv6 waits until the router answers ping -6 on r06Addr: its addresses stay tentative while duplicate
// address detection runs (a second, RFC 4862 §5.4) after xdpfwd starts.
func (l *routerLab) waitIPv6(ctx context.Context, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		cctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		out, _ := l.gen.Command(cctx, "ping", "-6", "-c", "1", "-W", "1", r06Addr).CombinedOutput()
		cancel()
		if bytes.Contains(out, []byte(" 1 received")) {
			return nil
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the router's IPv6 address %s did not answer ping -6 within %v:\n%s", r06Addr, timeout, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// ipForward reads the router namespace's net.ipv4.ip_forward.
func (l *routerLab) ipForward() (int, error) {
	v, err := l.router.ReadSysctl("net.ipv4.ip_forward")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(v)
}

func (l *routerLab) Close() error { return l.lab.Close() }
