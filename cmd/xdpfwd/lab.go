package main

import (
	"bytes"
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
		h      *netlab.Host
		name   string
		prefix string
	}
	ifcs := []ifc{{l.gen, "eth0", genAddr + "/24"}, {l.router, "r0", r0Addr + "/24"}, {l.router, "r1", r1Addr + "/24"}, {l.sink, "eth0", sinkAddr + "/24"}}
	for _, h := range []*netlab.Host{l.gen, l.router, l.sink} {
		// IPv6 off: no router solicitations or MLD reports on the links, only the traffic we make.
		for _, k := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
			if err := h.Sysctl(k, "1"); err != nil {
				return nil, err
			}
		}
	}
	if err := l.router.Sysctl("net.ipv4.ip_forward", "0"); err != nil {
		return nil, err
	}
	for _, c := range ifcs {
		if err := c.h.AddAddr(c.name, c.prefix); err != nil {
			return nil, err
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
	if err := l.gen.AddRoute("default", r0Addr); err != nil {
		return nil, err
	}
	if err := l.sink.AddRoute("default", r1Addr); err != nil {
		return nil, err
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

// ipForward reads the router namespace's net.ipv4.ip_forward.
func (l *routerLab) ipForward() (int, error) {
	v, err := l.router.ReadSysctl("net.ipv4.ip_forward")
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(v)
}

func (l *routerLab) Close() error { return l.lab.Close() }
