package main

import (
	"strings"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/netlab"
)

// TestTakeoverWarningsNetns: in a router namespace whose default route leaves through r0, and with an SSH
// session arriving on r1 (the server address is r1's) or through r0 (the route back to the client), the
// normal mode warns for each, naming the interface and --kernel; the kernel-mirror mode does not warn.
func TestTakeoverWarningsNetns(t *testing.T) {
	lab := netlab.NewT(t)
	r := lab.MustAddHost(t, "r")
	p := lab.MustAddHost(t, "p")
	lab.MustLink(t, r, "r0", p, "p0")
	lab.MustLink(t, r, "r1", p, "p1")
	lab.MustLink(t, r, "r2", p, "p2")
	for _, c := range []struct{ ifn, addr string }{{"r0", "198.18.5.1/24"}, {"r1", "198.18.6.1/24"}, {"r2", "198.18.7.1/24"}} {
		if err := r.AddAddr(c.ifn, c.addr); err != nil {
			t.Fatal(err)
		}
		if err := r.SetUp(c.ifn); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.AddAddr("lo", "198.18.99.1/32"); err != nil {
		t.Fatal(err)
	}
	if err := r.SetUp("lo"); err != nil {
		t.Fatal(err)
	}
	if err := r.AddRoute("default", "198.18.5.2"); err != nil {
		t.Fatal(err)
	}
	warn := func(ifaces []string, kernel bool, ssh string) (w []string) {
		t.Helper()
		if err := r.Do(func() error { w = takeoverWarnings(ifaces, kernel, ssh); return nil }); err != nil {
			t.Fatal(err)
		}
		return w
	}
	has := func(ws []string, subs ...string) bool {
		for _, w := range ws {
			ok := true
			for _, s := range subs {
				ok = ok && strings.Contains(w, s)
			}
			if ok {
				return true
			}
		}
		return false
	}
	ifaces := []string{"r0", "r1", "r2"}

	w := warn(ifaces, false, "198.18.6.9 50022 198.18.6.1 22")
	if len(w) != 2 || !has(w, "default route goes through r0", "default via 198.18.5.2", "--kernel") ||
		!has(w, "SSH from 198.18.6.9 to 198.18.6.1", "through r1", "--kernel") {
		t.Errorf("default route via r0, session on r1: got %d warnings:\n%s", len(w), strings.Join(w, "\n"))
	}
	// A session to an address on lo from a client behind the default route arrives through r0.
	w = warn(ifaces, false, "198.21.0.7 40000 198.18.99.1 22")
	if !has(w, "SSH from 198.21.0.7 to 198.18.99.1", "through r0") || has(w, "through r1") || has(w, "through r2") {
		t.Errorf("session via the default route: got\n%s", strings.Join(w, "\n"))
	}
	if w := warn([]string{"r2"}, false, "198.18.6.9 50022 198.18.6.1 22"); len(w) != 0 {
		t.Errorf("r2 carries neither the default route nor the session, yet:\n%s", strings.Join(w, "\n"))
	}
	if w := warn(ifaces, true, "198.18.6.9 50022 198.18.6.1 22"); len(w) != 0 {
		t.Errorf("kernel-mirror mode warned:\n%s", strings.Join(w, "\n"))
	}
}

// TestMTURefusedVeth: xdpfwd run on an interface whose MTU does not fit a frame exits 2 with the numbers
// and what to do, instead of dropping every large frame without a word.
func TestMTURefusedVeth(t *testing.T) {
	netlab.RequirePrivileges(t)
	l, err := newRouterLab(t.Name(), labOptions{R1MTU: 3000})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	err = l.startRouter(xdpfwdBin, "--iface", "r0="+r0Addr+"/24", "--iface", "r1="+r1Addr+"/24")
	if err == nil {
		t.Fatal("xdpfwd started on an MTU 3000 interface with 2048-byte frames")
	}
	select {
	case <-l.xdpfwd.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("xdpfwd still running")
	}
	out := string(l.xdpfwd.Output())
	for _, s := range []string{"r1 has MTU 3000", "at most 1522 bytes", "ip link set dev r1 mtu 1522"} {
		if !strings.Contains(out, s) {
			t.Errorf("the refusal does not say %q:\n%s", s, out)
		}
	}
	if err := l.xdpfwd.Wait(); err == nil || !strings.Contains(err.Error(), "exit status 2") {
		t.Errorf("exit: %v, want status 2 (a configuration the user must change)", err)
	}
}
