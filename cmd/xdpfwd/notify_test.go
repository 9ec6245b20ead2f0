package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/netlab"
	"github.com/xdpnet/xdpnet/stack"
)

// notifyListener is the service manager's side of sd_notify: a unixgram socket that collects datagrams.
type notifyListener struct {
	conn *net.UnixConn
	msgs chan string
}

// listenNotify binds a unixgram socket at name (a path, or @name in the abstract namespace of the calling
// thread's network namespace) and collects what arrives until the test ends.
func listenNotify(t *testing.T, name string) *notifyListener {
	t.Helper()
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: name, Net: "unixgram"})
	if err != nil {
		t.Fatalf("listen on %s: %v", name, err)
	}
	t.Cleanup(func() { conn.Close() })
	return startNotifyListener(conn)
}

func startNotifyListener(conn *net.UnixConn) *notifyListener {
	n := &notifyListener{conn: conn, msgs: make(chan string, 100)}
	go func() {
		buf := make([]byte, 4096)
		for {
			k, err := conn.Read(buf)
			if err != nil {
				close(n.msgs)
				return
			}
			n.msgs <- string(buf[:k])
		}
	}()
	return n
}

// next waits for the next datagram that contains want (a regexp), returning it and the ones skipped on the way.
func (n *notifyListener) next(t *testing.T, want string, timeout time.Duration) (string, []string) {
	t.Helper()
	re := regexp.MustCompile(want)
	var skipped []string
	deadline := time.After(timeout)
	for {
		select {
		case m, ok := <-n.msgs:
			if !ok {
				t.Fatalf("notify socket closed waiting for %q (got %q)", want, skipped)
			}
			if re.MatchString(m) {
				return m, skipped
			}
			skipped = append(skipped, m)
		case <-deadline:
			t.Fatalf("no notification matching %q within %v (got %q)", want, timeout, skipped)
		}
	}
}

// TestNotifier: with NOTIFY_SOCKET naming a real unixgram socket, a path or an abstract @name, the
// assignments arrive as one datagram and the variable is unset (nothing xdpfwd starts inherits it); unset,
// nothing is sent; a vsock address or an over-long name is refused with what is wanted.
func TestNotifier(t *testing.T) {
	for _, name := range []string{filepath.Join(t.TempDir(), "notify"), fmt.Sprintf("@xdpfwd-test-%d-%d", os.Getpid(), time.Now().UnixNano())} {
		l := listenNotify(t, name)
		t.Setenv("NOTIFY_SOCKET", name)
		sd, err := newNotifier()
		if err != nil || sd == nil {
			t.Fatalf("NOTIFY_SOCKET=%s: %v, %v", name, sd, err)
		}
		if v, ok := os.LookupEnv("NOTIFY_SOCKET"); ok {
			t.Errorf("NOTIFY_SOCKET still set (%q) after newNotifier", v)
		}
		if err := sd.send("READY=1", status("forwarding on r0\nand r1")); err != nil {
			t.Fatalf("send to %s: %v", name, err)
		}
		if err := sd.send(reloading()...); err != nil {
			t.Fatal(err)
		}
		if m, _ := l.next(t, ".", 2*time.Second); m != "READY=1\nSTATUS=forwarding on r0; and r1" {
			t.Errorf("%s: got %q", name, m)
		}
		if m, _ := l.next(t, ".", 2*time.Second); !regexp.MustCompile(`^RELOADING=1\nMONOTONIC_USEC=[1-9]\d*$`).MatchString(m) {
			t.Errorf("%s: reloading sent %q", name, m)
		}
		sd.close()
	}

	os.Unsetenv("NOTIFY_SOCKET")
	if sd, err := newNotifier(); sd != nil || err != nil {
		t.Errorf("without NOTIFY_SOCKET: %v, %v; want nil, nil", sd, err)
	}
	var none *notifier
	if err := none.send("READY=1"); err != nil {
		t.Errorf("nil notifier: %v", err)
	}
	for _, bad := range []string{"vsock:2:1234", "relative/path", "/" + strings.Repeat("x", 120)} {
		t.Setenv("NOTIFY_SOCKET", bad)
		if sd, err := newNotifier(); sd != nil || err == nil || !strings.Contains(err.Error(), "NOTIFY_SOCKET") {
			t.Errorf("NOTIFY_SOCKET=%q: %v, %v; want an error naming NOTIFY_SOCKET", bad, sd, err)
		}
	}
	// A socket nobody listens on: the send fails with the address, it does not block or panic.
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody"))
	sd, err := newNotifier()
	if err != nil {
		t.Fatal(err)
	}
	defer sd.close()
	if err := sd.send("READY=1"); err == nil || !strings.Contains(err.Error(), "nobody") {
		t.Errorf("send to a missing socket: %v", err)
	}
}

// unitSetting returns the values of key= in xdpfwd.service, in order.
func unitSetting(t *testing.T, key string) []string {
	t.Helper()
	b, err := os.ReadFile("xdpfwd.service")
	if err != nil {
		t.Fatal(err)
	}
	var vs []string
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, key+"="); ok {
			vs = append(vs, v)
		}
	}
	return vs
}

// TestServiceUnit: the unit is Type=notify, its RestartPreventExitStatus= is the status xdpfwd exits with
// for a configuration error, and a reload checks the file before the SIGHUP. The statuses are the real
// ones: bad flags, a bad file and a missing file give the prevented status, a failure at run time does not.
// With systemd-analyze installed, the unit also passes `systemd-analyze verify` without a warning.
func TestServiceUnit(t *testing.T) {
	if got := unitSetting(t, "Type"); len(got) != 1 || got[0] != "notify" {
		t.Errorf("Type=%v, want notify", got)
	}
	prevent := unitSetting(t, "RestartPreventExitStatus")
	if len(prevent) != 1 {
		t.Fatalf("RestartPreventExitStatus=%v, want one value", prevent)
	}
	code, err := strconv.Atoi(prevent[0])
	if err != nil || code != exitUsage {
		t.Errorf("RestartPreventExitStatus=%s, want %d (exitUsage)", prevent[0], exitUsage)
	}
	if got := unitSetting(t, "Restart"); len(got) != 1 || got[0] != "on-failure" {
		t.Errorf("Restart=%v, want on-failure", got)
	}
	if pre := unitSetting(t, "ExecStartPre"); len(pre) != 0 {
		t.Errorf("ExecStartPre=%v: systemd restarts after a failed ExecStartPre whatever its status", pre)
	}
	reload := unitSetting(t, "ExecReload")
	if len(reload) != 2 || !strings.Contains(reload[0], "xdpfwd check --config") || !strings.Contains(reload[1], "kill -HUP $MAINPID") {
		t.Errorf("ExecReload=%q, want the check and then kill -HUP $MAINPID", reload)
	}

	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	os.WriteFile(bad, []byte("interfaces:\n  - name: r0\n    addresses: [198.18.0.1]\n"), 0o644)
	for _, c := range []struct {
		args []string
		want int
	}{
		{[]string{"run", "--config", bad}, code},
		{[]string{"run", "--config", filepath.Join(dir, "missing.yaml")}, code},
		{[]string{"run", "--iface", "r0=198.18.0.1/24", "--mode", "fast"}, code},
		{[]string{"check", "--config", bad}, code},
		// Nothing listens there: a failure at run time, which a restart may cure.
		{[]string{"stats", "--metrics", "127.0.0.1:1", "--count", "1"}, exitFailure},
	} {
		var stdout, stderr bytes.Buffer
		if got := realMain(context.Background(), c.args, &stdout, &stderr); got != c.want {
			t.Errorf("%q: exit %d, want %d (stderr %q)", c.args, got, c.want, stderr.String())
		}
	}

	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Logf("systemd-analyze not installed: the unit's syntax is not verified by systemd here")
		return
	}
	unit, err := os.ReadFile("xdpfwd.service")
	if err != nil {
		t.Fatal(err)
	}
	// verify wants the programs to exist: point the unit at the test binary.
	p := filepath.Join(dir, "xdpfwd.service")
	os.WriteFile(p, bytes.ReplaceAll(unit, []byte("/usr/local/bin/xdpfwd"), []byte(xdpfwdBin)), 0o644)
	out, err := exec.Command(sa, "verify", p).CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestSystemdNotifyVeth: started the way systemd starts a Type=notify service (NOTIFY_SOCKET naming a
// unixgram socket), xdpfwd sends READY=1 with a STATUS= naming its ports once it forwards - a ping through it
// works as soon as READY=1 is read -, RELOADING=1 and then READY=1 around a SIGHUP reload (also a failed one,
// whose STATUS= says so), and STOPPING=1 on SIGTERM before its clean exit.
func TestSystemdNotifyVeth(t *testing.T) {
	netlab.RequirePrivileges(t)
	l, err := newRouterLab(t.Name(), labOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	sock := filepath.Join(t.TempDir(), "notify")
	sd := listenNotify(t, sock)
	cfg := filepath.Join(t.TempDir(), "xdpfwd.yaml")
	if err := os.WriteFile(cfg, []byte(reloadConfigHead), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := l.router.Start("env", "NOTIFY_SOCKET="+sock, xdpfwdBin, "run", "--config", cfg)
	if err != nil {
		t.Fatal(err)
	}
	l.xdpfwd = p
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("xdpfwd output:\n%s", p.Output())
		}
	})
	m, _ := sd.next(t, `(?m)^READY=1$`, 15*time.Second)
	if !strings.Contains(m, "STATUS=forwarding on r0="+r0Addr+"/24 r1="+r1Addr+"/24") {
		t.Errorf("READY=1 datagram without the ports' STATUS=: %q", m)
	}
	mustPing(t, l.gen, "-c", "1", "-W", "2", sinkAddr)

	os.WriteFile(cfg, []byte(reloadConfigHead+"routes:\n  - prefix: 198.19.21.0/24\n    via: 198.19.0.2\n"), 0o644)
	p.Cmd.Process.Signal(syscall.SIGHUP)
	m, _ = sd.next(t, `(?m)^RELOADING=1$`, 5*time.Second)
	if !regexp.MustCompile(`(?m)^MONOTONIC_USEC=[1-9]\d*$`).MatchString(m) {
		t.Errorf("RELOADING=1 without MONOTONIC_USEC: %q", m)
	}
	m, _ = sd.next(t, `(?m)^READY=1$`, 5*time.Second)
	if !strings.Contains(m, "STATUS=reloaded "+cfg+": 1 routes added, 0 deleted") {
		t.Errorf("READY=1 after the reload: %q", m)
	}
	os.WriteFile(cfg, []byte(reloadConfigHead+"routes:\n  - prefix: 198.19.21.0/24\n    via: nowhere\n"), 0o644)
	p.Cmd.Process.Signal(syscall.SIGHUP)
	sd.next(t, `(?m)^RELOADING=1$`, 5*time.Second)
	m, _ = sd.next(t, `(?m)^READY=1$`, 5*time.Second)
	if !strings.Contains(m, "STATUS=reload of "+cfg+" failed, running the previous configuration: "+cfg+":9:") {
		t.Errorf("READY=1 after a failed reload: %q", m)
	}

	sum := stopRouter(t, l)
	m, _ = sd.next(t, `(?m)^STOPPING=1$`, time.Second)
	if !strings.Contains(m, "STATUS=stopping") {
		t.Errorf("STOPPING=1 without STATUS=: %q", m)
	}
	if m, _ = sd.next(t, `STATUS=stopped`, time.Second); !strings.Contains(m, "frame accounting OK") {
		t.Errorf("last STATUS=: %q", m)
	}
	if !strings.Contains(sum, "frame accounting: OK") {
		t.Errorf("summary:\n%s", sum)
	}
}

// countingStack is a stack whose forwarded counters grow by 1000 IPv4 and 100 IPv6 packets per read.
type countingStack struct {
	fixedStack
	reads uint64
}

func (c *countingStack) Stats() stack.Stats {
	c.reads++
	s := c.s
	s.Forwarded6 = 100 * c.reads
	s.Forwarded = 1000*c.reads + s.Forwarded6
	return s
}

// TestNotifyStatus: while running, STATUS= says what is forwarded per family, from the counters' growth
// over the interval.
func TestNotifyStatus(t *testing.T) {
	name := filepath.Join(t.TempDir(), "notify")
	l := listenNotify(t, name)
	t.Setenv("NOTIFY_SOCKET", name)
	sd, err := newNotifier()
	if err != nil {
		t.Fatal(err)
	}
	defer sd.close()
	p, _ := fixedStats(1)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); notifyStatus(ctx, sd, 50*time.Millisecond, p, &countingStack{}) }()
	m, _ := l.next(t, "^STATUS=forwarding ", 5*time.Second)
	cancel()
	<-done
	// 1000 and 100 packets per read over about 50 ms: tens of thousands and thousands per second.
	if !regexp.MustCompile(`^STATUS=forwarding [1-9]\d{3,} pps IPv4, [1-9]\d{2,} pps IPv6; 0 drops/s; 0 neighbours$`).MatchString(m) {
		t.Errorf("status %q", m)
	}
}
