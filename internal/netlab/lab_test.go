package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// twoHosts builds h1 --veth-- h2 with 198.18.0.1/24 and 198.18.0.2/24.
func twoHosts(t *testing.T) (*Lab, *Host, *Host, *Veth) {
	t.Helper()
	l := NewT(t)
	h1 := l.MustAddHost(t, "h1")
	h2 := l.MustAddHost(t, "h2")
	v := l.MustLink(t, h1, "eth0", h2, "eth0")
	for _, s := range []struct {
		h    *Host
		addr string
	}{{h1, "198.18.0.1/24"}, {h2, "198.18.0.2/24"}} {
		if err := s.h.AddAddr("eth0", s.addr); err != nil {
			t.Fatal(err)
		}
		if err := s.h.SetUp("eth0"); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range []*Host{h1, h2} {
		if err := h.WaitOperUp("eth0", 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return l, h1, h2, v
}

func TestLinkEndpointsVeth(t *testing.T) {
	_, h1, h2, v := twoHosts(t)
	if v.A.Host != h1 || v.B.Host != h2 || v.A.Name != "eth0" || v.B.Name != "eth0" {
		t.Fatalf("endpoints = %s:%s, %s:%s; want h1:eth0, h2:eth0", v.A.Host.Role(), v.A.Name, v.B.Host.Role(), v.B.Name)
	}
	for _, e := range []Endpoint{v.A, v.B} {
		lk, err := e.Host.Link(e.Name)
		if err != nil {
			t.Fatal(err)
		}
		if lk.Type() != "veth" || lk.Attrs().Index != e.Index || lk.Attrs().HardwareAddr.String() != e.MAC.String() {
			t.Errorf("%s:%s is %s index %d MAC %s; endpoint says index %d MAC %s",
				e.Host.Role(), e.Name, lk.Type(), lk.Attrs().Index, lk.Attrs().HardwareAddr, e.Index, e.MAC)
		}
		if len(e.MAC) != 6 {
			t.Errorf("%s:%s MAC %v is not 6 bytes", e.Host.Role(), e.Name, e.MAC)
		}
	}
	// The pair's ends are each other's peers.
	lk, _ := h1.Link("eth0")
	var peer int
	if err := h1.Do(func() (err error) {
		// VethPeerIndex asks through the ethtool ioctl, which resolves
		// names in the calling thread's namespace.
		peer, err = netlink.VethPeerIndex(lk.(*netlink.Veth))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if peer != v.B.Index {
		t.Errorf("h1:eth0 peer index %d, want h2:eth0 index %d", peer, v.B.Index)
	}
	// Nothing of the pair is left in the root namespace.
	for _, n := range []string{"eth0"} {
		if lk, err := netlink.LinkByName(n); err == nil && lk.Type() == "veth" {
			t.Errorf("root namespace has veth %s", n)
		}
	}
	for _, n := range []string{h1.Lab().Prefix() + "a1", h1.Lab().Prefix() + "b1"} {
		if _, err := netlink.LinkByName(n); err == nil {
			t.Errorf("temporary interface %s still in the root namespace", n)
		}
	}
}

func TestPingVeth(t *testing.T) {
	RequireTool(t, "ping")
	_, h1, h2, _ := twoHosts(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Several tries each: on a loaded machine the first ARP exchange can outlast one second.
	if out, err := h1.Run(ctx, "ping", "-c3", "-i0.2", "-W2", "198.18.0.2"); err != nil {
		t.Fatalf("h1 -> h2: %v\n%s", err, out)
	}
	if out, err := h2.Run(ctx, "ping", "-c3", "-i0.2", "-W2", "198.18.0.1"); err != nil {
		t.Fatalf("h2 -> h1: %v\n%s", err, out)
	}
	// lo is up in every host.
	if out, err := h1.Run(ctx, "ping", "-c1", "-W1", "127.0.0.1"); err != nil {
		t.Fatalf("h1 -> 127.0.0.1: %v\n%s", err, out)
	}
	// IPv6 works at once: addresses skip duplicate address detection.
	if err := h1.AddAddr("eth0", "2001:db8::1/64"); err != nil {
		t.Fatal(err)
	}
	if err := h2.AddAddr("eth0", "2001:db8::2/64"); err != nil {
		t.Fatal(err)
	}
	if out, err := h1.Run(ctx, "ping", "-6", "-c1", "-W1", "2001:db8::2"); err != nil {
		t.Fatalf("h1 -> 2001:db8::2: %v\n%s", err, out)
	}
	// An address outside the lab is unreachable: the hosts have no route.
	if out, err := h1.Run(ctx, "ping", "-c1", "-W1", "198.19.0.1"); err == nil {
		t.Fatalf("h1 reached 198.19.0.1 without a route:\n%s", out)
	}
}

// Sockets opened inside Do stay in the namespace when used outside it.
func TestUDPExchangeVeth(t *testing.T) {
	_, h1, h2, _ := twoHosts(t)
	var srv, cli *net.UDPConn
	if err := h2.Do(func() (err error) {
		srv, err = net.ListenUDP("udp4", &net.UDPAddr{IP: net.IPv4(198, 18, 0, 2), Port: 9000})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	if err := h1.Do(func() (err error) {
		cli, err = net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.IPv4(198, 18, 0, 2), Port: 9000})
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	if _, err := cli.Write([]byte("hello h2")); err != nil {
		t.Fatal(err)
	}
	srv.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 64)
	n, from, err := srv.ReadFromUDP(buf)
	if err != nil {
		t.Fatalf("h2 did not receive: %v", err)
	}
	if string(buf[:n]) != "hello h2" || !from.IP.Equal(net.IPv4(198, 18, 0, 1)) {
		t.Fatalf("h2 got %q from %v, want \"hello h2\" from 198.18.0.1", buf[:n], from)
	}
	if _, err := srv.WriteToUDP([]byte("hello h1"), from); err != nil {
		t.Fatal(err)
	}
	cli.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err = cli.Read(buf)
	if err != nil || string(buf[:n]) != "hello h1" {
		t.Fatalf("h1 got %q, %v; want \"hello h1\"", buf[:n], err)
	}
}

func TestDoRestoresNamespace(t *testing.T) {
	l := NewT(t)
	h := l.MustAddHost(t, "h")
	root, err := netns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer root.Close()
	var inside netns.NsHandle
	if err := h.Do(func() (err error) {
		inside, err = netns.Get()
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer inside.Close()
	if !inside.Equal(h.NsHandle()) {
		t.Errorf("Do ran in %v, want the host's namespace %v", inside, h.NsHandle())
	}
	if inside.Equal(root) {
		t.Errorf("Do ran in the root namespace")
	}
	// Every thread the runtime may hand this goroutine must still be in the
	// root namespace; check many times with the thread locked and unlocked.
	for i := 0; i < 50; i++ {
		if err := h.Do(func() error { return nil }); err != nil {
			t.Fatal(err)
		}
		cur, err := netns.Get()
		if err != nil {
			t.Fatal(err)
		}
		eq := cur.Equal(root)
		cur.Close()
		if !eq {
			t.Fatalf("after Do #%d the caller's thread is not in the root namespace", i)
		}
	}
	want := errors.New("from fn")
	if err := h.Do(func() error { return want }); !errors.Is(err, want) {
		t.Errorf("Do returned %v, want fn's error", err)
	}
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Errorf("recovered %v, want the panic of fn", p)
			}
		}()
		h.Do(func() error { panic("boom") })
	}()
}

func TestCloseRemovesEverything(t *testing.T) {
	RequirePrivileges(t)
	l, err := New(t.Name())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	a, err := l.AddHost("a")
	if err != nil {
		t.Fatal(err)
	}
	b, err := l.AddHost("b")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Link(a, "eth0", b, "eth0"); err != nil {
		t.Fatal(err)
	}
	p, err := a.Start("sleep", "60")
	if err != nil {
		t.Fatal(err)
	}
	// A process started without Start must not outlive the lab either.
	stray := b.Command(context.Background(), "sleep", "60")
	if err := stray.Start(); err != nil {
		t.Fatal(err)
	}
	waitInNetns(t, stray.Process.Pid, b.Path())
	strayDone := make(chan error, 1)
	go func() { strayDone <- stray.Wait() }()
	// The namespace is visible to iproute2 while the lab is open.
	if _, err := exec.LookPath("ip"); err == nil {
		out, err := exec.Command("ip", "netns", "list").CombinedOutput()
		if err != nil || !strings.Contains(string(out), a.Name()) {
			t.Fatalf("ip netns list does not show %s: %v\n%s", a.Name(), err, out)
		}
		out, err = exec.Command("ip", "netns", "exec", b.Name(), "ip", "-o", "link", "show", "eth0").CombinedOutput()
		if err != nil || !strings.Contains(string(out), "eth0@") {
			t.Fatalf("ip netns exec %s ip link show eth0: %v\n%s", b.Name(), err, out)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	select {
	case <-p.Done():
	default:
		t.Errorf("Close left the process started in %s running", a.Name())
	}
	select {
	case <-strayDone:
	case <-time.After(5 * time.Second):
		t.Errorf("Close left a process started with Command in %s running", b.Name())
		stray.Process.Kill()
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	assertGone(t, l.Prefix())
	if _, err := l.AddHost("c"); err == nil {
		t.Errorf("AddHost on a closed lab succeeded")
	}
}

// assertGone fails unless nothing named with prefix is left.
func assertGone(t *testing.T, prefix string) {
	t.Helper()
	ents, _ := os.ReadDir(netnsDir)
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), prefix) {
			t.Errorf("%s still exists", filepath.Join(netnsDir, e.Name()))
		}
	}
	links, err := netlink.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		t.Fatal(err)
	}
	for _, lk := range links {
		if strings.HasPrefix(lk.Attrs().Name, prefix) {
			t.Errorf("interface %s still in the root namespace", lk.Attrs().Name)
		}
	}
}

// waitInNetns waits until process pid has entered the namespace at path
// (nsenter switches after it starts).
func waitInNetns(t *testing.T, pid int, path string) {
	t.Helper()
	var want unix.Stat_t
	if err := unix.Stat(path, &want); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var st unix.Stat_t
		err := unix.Stat(fmt.Sprintf("/proc/%d/ns/net", pid), &st)
		if err == nil && st.Dev == want.Dev && st.Ino == want.Ino {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d never entered %s", pid, path)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// deadPID returns a PID that no process has.
func deadPID(t *testing.T) int {
	t.Helper()
	for pid := maxPID - 1; pid > maxPID-10000; pid-- {
		if !pidAlive(pid) {
			return pid
		}
	}
	t.Fatal("no free PID found")
	return 0
}

func TestCleanStaleRemovesDeadPIDLab(t *testing.T) {
	RequirePrivileges(t)
	pid := deadPID(t)
	prefix, err := encodePrefix(pid, 7)
	if err != nil {
		t.Fatal(err)
	}
	// What a crash leaves: a namespace, and a veth pair still in the root
	// namespace under its temporary names.
	name := prefix + "-r1"
	ns, err := createNamedNetns(name)
	if err != nil {
		t.Fatal(err)
	}
	ns.Close()
	// A program the crashed run left in the namespace.
	orphan := exec.Command("nsenter", "--net="+filepath.Join(netnsDir, name), "--", "sleep", "60")
	if err := orphan.Start(); err != nil {
		t.Fatal(err)
	}
	orphanDone := make(chan error, 1)
	go func() { orphanDone <- orphan.Wait() }()
	t.Cleanup(func() { orphan.Process.Kill() })
	waitInNetns(t, orphan.Process.Pid, filepath.Join(netnsDir, name))
	attrs := netlink.NewLinkAttrs()
	attrs.Name = prefix + "a1"
	if err := netlink.LinkAdd(&netlink.Veth{LinkAttrs: attrs, PeerName: prefix + "b1"}); err != nil {
		deleteNamedNetns(name)
		t.Fatal(err)
	}
	// Something of a live process must survive.
	live := NewT(t)
	lh := live.MustAddHost(t, "keep")
	t.Cleanup(func() {
		deleteNamedNetns(name)
		if lk, err := netlink.LinkByName(prefix + "a1"); err == nil {
			netlink.LinkDel(lk)
		}
	})

	if err := CleanStale(); err != nil {
		t.Fatalf("CleanStale: %v", err)
	}
	assertGone(t, prefix)
	select {
	case <-orphanDone:
	case <-time.After(5 * time.Second):
		t.Errorf("CleanStale left the crashed run's process running in %s", name)
	}
	if _, err := os.Stat(lh.Path()); err != nil {
		t.Errorf("CleanStale removed the live lab's namespace: %v", err)
	}
}

// A leftover with this process's PID but no open lab came from an earlier
// process that had the same PID.
func TestCleanStaleRemovesOwnPIDOrphan(t *testing.T) {
	RequirePrivileges(t)
	prefix, err := encodePrefix(os.Getpid(), counterSpan-1)
	if err != nil {
		t.Fatal(err)
	}
	if prefixOpen(prefix) {
		t.Skip("prefix in use by this process")
	}
	name := prefix + "-old"
	ns, err := createNamedNetns(name)
	if err != nil {
		t.Fatal(err)
	}
	ns.Close()
	t.Cleanup(func() { deleteNamedNetns(name) })
	if err := CleanStale(); err != nil {
		t.Fatal(err)
	}
	assertGone(t, prefix)
}

func TestNewPrefixesUnique(t *testing.T) {
	RequirePrivileges(t)
	seen := map[string]bool{}
	for i := 0; i < 5; i++ {
		l, err := New("u")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		if seen[l.Prefix()] {
			t.Fatalf("prefix %s handed out twice", l.Prefix())
		}
		seen[l.Prefix()] = true
		if pid, ok := decodePrefix(l.Prefix()); !ok || pid != os.Getpid() {
			t.Errorf("prefix %s decodes to pid %d, %v; want %d", l.Prefix(), pid, ok, os.Getpid())
		}
	}
}

func TestLinkRejectsLongName(t *testing.T) {
	l := NewT(t)
	a := l.MustAddHost(t, "a")
	b := l.MustAddHost(t, "b")
	if _, err := l.Link(a, "0123456789abcdef", b, "eth0"); err == nil {
		t.Fatal("Link accepted a 16-byte interface name")
	}
	// The longest valid name works.
	v, err := l.Link(a, "0123456789abcde", b, "eth0")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.Link(v.A.Name); err != nil {
		t.Fatal(err)
	}
	if _, err := l.AddHost("a"); err == nil {
		t.Error("AddHost accepted a second host with role a")
	}
}

func TestHostConfigVeth(t *testing.T) {
	_, h1, h2, v := twoHosts(t)
	if err := h1.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		t.Fatal(err)
	}
	if got, err := h1.ReadSysctl("net.ipv4.ip_forward"); err != nil || got != "1" {
		t.Errorf("h1 ip_forward = %q, %v; want 1", got, err)
	}
	if got, err := h2.ReadSysctl("net.ipv4.ip_forward"); err != nil || got != "0" {
		t.Errorf("h2 ip_forward = %q, %v; want 0 (sysctl leaked between hosts)", got, err)
	}
	if err := h1.SetMTU("eth0", 1400); err != nil {
		t.Fatal(err)
	}
	if lk, _ := h1.Link("eth0"); lk.Attrs().MTU != 1400 {
		t.Errorf("MTU = %d, want 1400", lk.Attrs().MTU)
	}
	if err := h1.AddRoute("198.18.1.0/24", "198.18.0.2"); err != nil {
		t.Fatal(err)
	}
	if err := h1.AddRoute("default", "198.18.0.2"); err != nil {
		t.Fatal(err)
	}
	routes, err := h1.Netlink().RouteGet(net.IPv4(198, 18, 1, 7))
	if err != nil || len(routes) == 0 || !routes[0].Gw.Equal(net.IPv4(198, 18, 0, 2)) {
		t.Errorf("route to 198.18.1.7 = %v, %v; want via 198.18.0.2", routes, err)
	}
	routes, err = h1.Netlink().RouteGet(net.IPv4(198, 19, 9, 9))
	if err != nil || len(routes) == 0 || !routes[0].Gw.Equal(net.IPv4(198, 18, 0, 2)) {
		t.Errorf("default route = %v, %v; want via 198.18.0.2", routes, err)
	}
	if err := h1.Neigh("eth0", "198.18.0.2", v.B.MAC); err != nil {
		t.Fatal(err)
	}
	neighs, err := h1.Netlink().NeighList(v.A.Index, netlink.FAMILY_V4)
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, n := range neighs {
		if n.IP.Equal(net.IPv4(198, 18, 0, 2)) && n.HardwareAddr.String() == v.B.MAC.String() && n.State == netlink.NUD_PERMANENT {
			found = true
		}
	}
	if !found {
		t.Errorf("no permanent neighbour 198.18.0.2 at %s in %v", v.B.MAC, neighs)
	}
	if err := h1.Sysctl("net/ipv4/conf/eth0/rp_filter", "2"); err != nil {
		t.Fatal(err)
	}
	if got, err := h1.ReadSysctl("net.ipv4.conf.eth0.rp_filter"); err != nil || got != "2" {
		t.Errorf("rp_filter = %q, %v; want 2", got, err)
	}
	if a := v.A.HWAddr(); !bytes.Equal(a[:], v.A.MAC) {
		t.Errorf("HWAddr() = %x, want %s", a, v.A.MAC)
	}
}

// Both launchers run the program in the host: ip netns exec (with /sys of
// the host) and the nsenter fallback for machines without iproute2.
func TestCommandLaunchers(t *testing.T) {
	l := NewT(t)
	h := l.MustAddHost(t, "h")
	ip, err := exec.LookPath("ip")
	launchers := []bool{false}
	if err == nil {
		launchers = append(launchers, true)
	}
	for _, useIP := range launchers {
		out, err := h.command(context.Background(), useIP, ip, "cat", "/proc/net/dev").CombinedOutput()
		if err != nil {
			t.Fatalf("useIP=%v: %v\n%s", useIP, err, out)
		}
		if strings.Count(string(out), ":") != 1 || !strings.Contains(string(out), "lo:") {
			t.Errorf("useIP=%v: /proc/net/dev lists more than lo:\n%s", useIP, out)
		}
	}
}

func BenchmarkDo(b *testing.B) {
	if MissingPrivileges() != "" {
		b.Skip(MissingPrivileges())
	}
	l, err := New("bench")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	h, err := l.AddHost("h")
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		if err := h.Do(func() error { return nil }); err != nil {
			b.Fatal(err)
		}
	}
}

func TestSetQueuesVeth(t *testing.T) {
	l := NewT(t)
	a := l.MustAddHost(t, "a")
	b := l.MustAddHost(t, "b")
	if _, err := l.LinkWith(a, "eth0", b, "eth0", LinkOptions{Queues: 4}); err != nil {
		t.Fatal(err)
	}
	c, err := a.Queues("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxRx != 4 || c.MaxTx != 4 {
		t.Fatalf("queues %+v, want max 4 RX and 4 TX", c)
	}
	if err := a.SetQueues("eth0", 2); err != nil {
		t.Fatal(err)
	}
	if c, err = a.Queues("eth0"); err != nil || c.Rx != 2 || c.Tx != 2 {
		t.Fatalf("after SetQueues(2): %+v, %v", c, err)
	}
	if err := a.SetQueues("eth0", 5); err == nil {
		t.Error("SetQueues(5) on a 4-queue veth succeeded")
	}
}

func TestDisableOffloadsVeth(t *testing.T) {
	_, h1, _, _ := twoHosts(t)
	before, err := h1.Features("eth0")
	if err != nil {
		t.Fatal(err)
	}
	if !before["tx-tcp-segmentation"] || !before["tx-checksum-ip-generic"] {
		t.Fatalf("a new veth should have TSO and TX checksum on: %v", before)
	}
	if err := h1.DisableOffloads("eth0"); err != nil {
		t.Fatal(err)
	}
	after, err := h1.Features("eth0")
	if err != nil {
		t.Fatal(err)
	}
	for name, on := range after {
		if on && isOffload(name) {
			t.Errorf("%s still on after DisableOffloads", name)
		}
	}
	if !after["rx-checksum"] {
		t.Errorf("DisableOffloads switched off rx-checksum, which it should leave alone")
	}
	if _, err := exec.LookPath("ethtool"); err == nil {
		out, err := h1.Run(context.Background(), "ethtool", "-k", "eth0")
		if err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"generic-receive-offload: off", "generic-segmentation-offload: off", "tcp-segmentation-offload: off", "tx-checksumming: off"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("ethtool -k eth0 lacks %q:\n%s", want, out)
			}
		}
	}
}

func TestSetFeaturesVeth(t *testing.T) {
	_, h1, _, _ := twoHosts(t)
	if err := h1.SetFeatures("eth0", map[string]bool{"rx-gro": true}); err != nil {
		t.Fatal(err)
	}
	if f, err := h1.Features("eth0"); err != nil || !f["rx-gro"] {
		t.Fatalf("rx-gro = %v, %v after switching it on", f["rx-gro"], err)
	}
	if err := h1.SetFeatures("eth0", map[string]bool{"rx-gro": false}); err != nil {
		t.Fatal(err)
	}
	if f, err := h1.Features("eth0"); err != nil || f["rx-gro"] {
		t.Fatalf("rx-gro = %v, %v after switching it off", f["rx-gro"], err)
	}
	if err := h1.SetFeatures("eth0", map[string]bool{"no-such-feature": false}); err == nil {
		t.Error("SetFeatures accepted an unknown feature name")
	}
	if err := h1.SetFeatures("eth0", map[string]bool{"loopback": true}); err == nil {
		t.Error("SetFeatures switched on loopback, which veth has fixed off")
	}
}

func TestProcStop(t *testing.T) {
	l := NewT(t)
	h := l.MustAddHost(t, "h")
	// A process that ignores SIGTERM is killed after the timeout.
	p, err := h.Start("sh", "-c", "trap '' TERM; echo ready; while :; do sleep 0.1; done")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(string(p.Output()), "ready") {
		if time.Now().After(deadline) {
			t.Fatalf("process never printed ready; output %q", p.Output())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := p.Stop(200 * time.Millisecond); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.Done():
	default:
		t.Fatal("Stop returned with the process running")
	}
	if err := p.Stop(time.Second); !errors.Is(err, ErrProcExited) {
		t.Errorf("second Stop = %v, want ErrProcExited", err)
	}
	// The process ran in the host: it sees only lo.
	out, err := h.Run(context.Background(), "cat", "/proc/net/dev")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(string(out), ":") != 1 || !strings.Contains(string(out), "lo:") {
		t.Errorf("/proc/net/dev in the host lists more than lo:\n%s", out)
	}
}

// A Link that fails half-way (the name is taken in one host) leaves no
// interface behind, in the hosts or in the root namespace.
func TestLinkFailureLeavesNothing(t *testing.T) {
	l := NewT(t)
	a := l.MustAddHost(t, "a")
	b := l.MustAddHost(t, "b")
	l.MustLink(t, a, "eth0", b, "eth0")
	if _, err := l.Link(a, "eth1", b, "eth0"); err == nil {
		t.Fatal("Link reused the name eth0 in host b")
	}
	for _, h := range []*Host{a, b} {
		links, err := h.Netlink().LinkList()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, lk := range links {
			names = append(names, lk.Attrs().Name)
		}
		if len(links) != 2 {
			t.Errorf("host %s has interfaces %v, want lo and eth0", h.Role(), names)
		}
	}
	links, err := netlink.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		t.Fatal(err)
	}
	for _, lk := range links {
		if strings.HasPrefix(lk.Attrs().Name, l.Prefix()) {
			t.Errorf("interface %s left in the root namespace", lk.Attrs().Name)
		}
	}
}

func TestWaitOperUpNeedsPeer(t *testing.T) {
	l := NewT(t)
	a := l.MustAddHost(t, "a")
	b := l.MustAddHost(t, "b")
	l.MustLink(t, a, "eth0", b, "eth0")
	if err := a.SetUp("eth0"); err != nil {
		t.Fatal(err)
	}
	if err := a.WaitOperUp("eth0", 100*time.Millisecond); err == nil {
		t.Fatal("WaitOperUp succeeded with the peer down")
	}
	if err := b.SetUp("eth0"); err != nil {
		t.Fatal(err)
	}
	if err := a.WaitOperUp("eth0", 5*time.Second); err != nil {
		t.Fatal(err)
	}
}
