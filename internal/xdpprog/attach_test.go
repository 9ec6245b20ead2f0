package xdpprog_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/internal/netlab"
	"github.com/xdpnet/xdpnet/internal/xdpprog"
)

// attachIn attaches in h's namespace and closes the program at cleanup.
func attachIn(t *testing.T, h *host, ifindex int, opts xdpprog.Options) (*xdpprog.Program, error) {
	t.Helper()
	var p *xdpprog.Program
	err := h.do(func() (err error) {
		p, err = xdpprog.Attach(ifindex, opts)
		return err
	})
	if p != nil {
		t.Cleanup(func() { p.Close() })
	}
	return p, err
}

// attachedIn is AttachedProgramID in h's namespace.
func attachedIn(t *testing.T, h *host, ifindex int) (uint32, bool) {
	t.Helper()
	var id uint32
	var ok bool
	if err := h.do(func() (err error) {
		id, ok, err = xdpprog.AttachedProgramID(ifindex)
		return err
	}); err != nil {
		t.Fatalf("AttachedProgramID(%d) in %s: %v", ifindex, h.name, err)
	}
	return id, ok
}

func mustID(t *testing.T, p *xdpprog.Program) uint32 {
	t.Helper()
	id, err := p.ProgramID()
	if err != nil || id == 0 {
		t.Fatalf("ProgramID() = %d, %v", id, err)
	}
	return id
}

func TestAttachNativeVethDetachOnClose(t *testing.T) {
	lab := newPair(t)
	idx := lab.b.ifindex(t, lab.ifB)
	p, err := attachIn(t, lab.b, idx, xdpprog.Options{Mode: xdpprog.ModeNative})
	if err != nil {
		t.Fatalf("Attach native on veth %s: %v", lab.ifB, err)
	}
	if p.Mode() != xdpprog.ModeNative || p.FallbackReason() != nil {
		t.Fatalf("Mode() = %v, FallbackReason() = %v; want native, nil", p.Mode(), p.FallbackReason())
	}
	id := mustID(t, p)
	got, ok := attachedIn(t, lab.b, idx)
	if !ok || got != id {
		t.Fatalf("AttachedProgramID = %d, %v; want %d, true", got, ok, id)
	}
	// netlink must see it in driver mode, not generic.
	l, err := lab.b.nl.LinkByIndex(idx)
	if err != nil {
		t.Fatal(err)
	}
	if m := l.Attrs().Xdp.AttachMode; m != nl.XDP_ATTACHED_DRV {
		t.Fatalf("netlink attach mode = %d, want XDP_ATTACHED_DRV (%d)", m, nl.XDP_ATTACHED_DRV)
	}
	// The other end must be untouched.
	if _, ok := attachedIn(t, lab.a, lab.a.ifindex(t, lab.ifA)); ok {
		t.Fatalf("program appeared on the peer %s", lab.ifA)
	}

	if err := p.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if got, ok := attachedIn(t, lab.b, idx); ok {
		t.Fatalf("after Close, program id %d still attached to %s", got, lab.ifB)
	}
	if err := p.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if err := p.Register(0, 0); !errors.Is(err, xdpprog.ErrClosed) {
		t.Fatalf("Register after Close = %v, want ErrClosed", err)
	}
	if _, err := p.ProgramID(); !errors.Is(err, xdpprog.ErrClosed) {
		t.Fatalf("ProgramID after Close = %v, want ErrClosed", err)
	}
}

func TestAttachAutoPrefersNativeVeth(t *testing.T) {
	lab := newPair(t)
	p, err := attachIn(t, lab.b, lab.b.ifindex(t, lab.ifB), xdpprog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if p.Mode() != xdpprog.ModeNative || p.FallbackReason() != nil {
		t.Fatalf("Mode() = %v, FallbackReason() = %v; want native, nil", p.Mode(), p.FallbackReason())
	}
	if p.Queues() < 1 {
		t.Fatalf("Queues() = %d", p.Queues())
	}
}

// Loopback has no native XDP (no ndo_bpf): auto must fall back and say why, forced native must fail.
func TestAttachAutoFallsBackToGenericLoopback(t *testing.T) {
	requirePriv(t)
	h := newHost(t, "xpglo")
	lo := h.ifindex(t, "lo")

	if _, err := attachIn(t, h, lo, xdpprog.Options{Mode: xdpprog.ModeNative}); err == nil {
		t.Fatal("forced native mode on lo succeeded; loopback has no native XDP")
	} else if !strings.Contains(err.Error(), "lo") || !strings.Contains(err.Error(), "native") {
		t.Fatalf("error %q should name the interface and the mode", err)
	}

	p, err := attachIn(t, h, lo, xdpprog.Options{Mode: xdpprog.ModeAuto})
	if err != nil {
		t.Fatalf("auto on lo: %v", err)
	}
	if p.Mode() != xdpprog.ModeGeneric {
		t.Fatalf("Mode() = %v, want generic", p.Mode())
	}
	r := p.FallbackReason()
	if r == nil || !errors.Is(r, unix.EOPNOTSUPP) || !strings.Contains(r.Error(), "lo") {
		t.Fatalf("FallbackReason() = %v; want an EOPNOTSUPP naming lo", r)
	}
	id := mustID(t, p)
	if got, ok := attachedIn(t, h, lo); !ok || got != id {
		t.Fatalf("AttachedProgramID = %d, %v; want %d", got, ok, id)
	}
}

// passProgram loads "return XDP_PASS", the kind of program someone else (ip link, a libbpf tool) leaves behind.
func passProgram(t *testing.T) *ebpf.Program {
	t.Helper()
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{
		Name: "xpg_other", Type: ebpf.XDP, License: "Dual BSD/GPL",
		Instructions: asm.Instructions{asm.Mov.Imm(asm.R0, 2), asm.Return()},
	})
	if err != nil {
		t.Fatalf("load foreign program: %v", err)
	}
	t.Cleanup(func() { prog.Close() })
	return prog
}

func TestAttachLegacyProgramRefusedThenReplacedVeth(t *testing.T) {
	for _, tc := range []struct {
		name  string
		flags int
		off   string
	}{
		{"driver", nl.XDP_FLAGS_DRV_MODE, "xdp off"},
		{"generic", nl.XDP_FLAGS_SKB_MODE, "xdpgeneric off"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lab := newPair(t)
			idx := lab.b.ifindex(t, lab.ifB)
			other := passProgram(t)
			err := lab.b.do(func() error {
				l, err := netlink.LinkByIndex(idx)
				if err != nil {
					return err
				}
				return netlink.LinkSetXdpFdWithFlags(l, other.FD(), tc.flags)
			})
			if err != nil {
				t.Fatalf("attach foreign program through netlink: %v", err)
			}
			info, err := other.Info()
			if err != nil {
				t.Fatal(err)
			}
			otherID, _ := info.ID()

			_, err = attachIn(t, lab.b, idx, xdpprog.Options{})
			if !errors.Is(err, xdpprog.ErrAlreadyAttached) {
				t.Fatalf("Attach over a legacy program without Replace = %v, want ErrAlreadyAttached", err)
			}
			var ae *xdpprog.AttachedError
			if !errors.As(err, &ae) || ae.ProgramID != uint32(otherID) || ae.ViaLink || ae.Ifname != lab.ifB {
				t.Fatalf("AttachedError = %+v; want program %d on %s, not via link", ae, otherID, lab.ifB)
			}
			msg := err.Error()
			for _, want := range []string{
				lab.ifB,
				fmt.Sprintf("already has XDP program id %d attached", otherID),
				fmt.Sprintf("`ip link set dev %s %s`", lab.ifB, tc.off),
				"Replace",
			} {
				if !strings.Contains(msg, want) {
					t.Errorf("error %q does not contain %q", msg, want)
				}
			}
			if got, _ := attachedIn(t, lab.b, idx); got != uint32(otherID) {
				t.Fatalf("refused Attach disturbed the foreign program: attached id %d, want %d", got, otherID)
			}

			p, err := attachIn(t, lab.b, idx, xdpprog.Options{Replace: true})
			if err != nil {
				t.Fatalf("Attach with Replace: %v", err)
			}
			id := mustID(t, p)
			if got, ok := attachedIn(t, lab.b, idx); !ok || got != id {
				t.Fatalf("after Replace AttachedProgramID = %d, %v; want ours %d", got, ok, id)
			}
			if err := p.Close(); err != nil {
				t.Fatal(err)
			}
			if got, ok := attachedIn(t, lab.b, idx); ok {
				t.Fatalf("after Close program %d still attached (Close does not restore the replaced one)", got)
			}
		})
	}
}

func TestAttachForeignLinkNotReplacedVeth(t *testing.T) {
	lab := newPair(t)
	idx := lab.b.ifindex(t, lab.ifB)
	first, err := attachIn(t, lab.b, idx, xdpprog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	firstID := mustID(t, first)
	for _, replace := range []bool{false, true} {
		_, err := attachIn(t, lab.b, idx, xdpprog.Options{Replace: replace})
		var ae *xdpprog.AttachedError
		if !errors.As(err, &ae) || !errors.Is(err, xdpprog.ErrAlreadyAttached) {
			t.Fatalf("second Attach (Replace=%v) = %v; want *AttachedError", replace, err)
		}
		if !ae.ViaLink || ae.LinkID == 0 || ae.ProgramID != firstID {
			t.Fatalf("Replace=%v: AttachedError = %+v; want via link, link id set, program %d", replace, ae, firstID)
		}
		for _, want := range []string{lab.ifB, fmt.Sprintf("program id %d", firstID), fmt.Sprintf("bpf_link id %d", ae.LinkID)} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not contain %q", err, want)
			}
		}
		if got, _ := attachedIn(t, lab.b, idx); got != firstID {
			t.Fatalf("Replace=%v disturbed the first program: attached %d, want %d", replace, got, firstID)
		}
	}
}

func TestAttachMissingInterface(t *testing.T) {
	links, err := netlink.LinkList()
	if err != nil {
		t.Skipf("cannot list links: %v", err)
	}
	missing := 1000
	for _, l := range links {
		missing = max(missing, l.Attrs().Index+1000)
	}
	_, err = xdpprog.Attach(missing, xdpprog.Options{})
	if !errors.Is(err, xdpprog.ErrNoInterface) || !strings.Contains(err.Error(), strconv.Itoa(missing)) {
		t.Fatalf("Attach(%d) = %v; want ErrNoInterface naming index %d", missing, err, missing)
	}
	if _, _, err := xdpprog.AttachedProgramID(missing); !errors.Is(err, xdpprog.ErrNoInterface) {
		t.Fatalf("AttachedProgramID(%d) = %v; want ErrNoInterface", missing, err)
	}
	if _, err := xdpprog.Attach(0, xdpprog.Options{}); !errors.Is(err, xdpprog.ErrNoInterface) {
		t.Fatalf("Attach(0) = %v; want ErrNoInterface", err)
	}
}

func TestAttachQueuesBelowRxQueuesRefused(t *testing.T) {
	lab := newPair(t)
	// A veth with 4 rx queues in b; Options.Queues 2 would leave queues 2 and 3 unreachable.
	name := "xpgq0"
	if _, err := lab.lab.LinkWith(lab.a.h, "xpgq1", lab.b.h, name, netlab.LinkOptions{Queues: 4}); err != nil {
		t.Fatal(err)
	}
	idx := lab.b.ifindex(t, name)
	_, err := attachIn(t, lab.b, idx, xdpprog.Options{Queues: 2})
	if err == nil || !strings.Contains(err.Error(), "at least 4") {
		t.Fatalf("Attach with Queues 2 on 4 rx queues = %v; want an error asking for at least 4", err)
	}
	p, err := attachIn(t, lab.b, idx, xdpprog.Options{Mode: xdpprog.ModeGeneric})
	if err != nil {
		t.Fatal(err)
	}
	if p.Queues() != 4 {
		t.Fatalf("Queues() = %d with Options.Queues 0 on 4 rx queues, want 4", p.Queues())
	}
	if err := p.Register(4, 0); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("Register(4) on 4 slots = %v, want out of range", err)
	}
}

func TestRegisterRejectsNonXSKSocketVeth(t *testing.T) {
	lab := newPair(t)
	p, err := attachIn(t, lab.b, lab.b.ifindex(t, lab.ifB), xdpprog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := p.Register(0, fd); !errors.Is(err, unix.EOPNOTSUPP) || !strings.Contains(err.Error(), "AF_XDP") {
		t.Fatalf("Register(0, UDP socket) = %v; want EOPNOTSUPP saying it must be AF_XDP", err)
	}
	if err := p.Unregister(0); err != nil {
		t.Fatalf("Unregister of an empty slot = %v, want nil", err)
	}
	if err := p.Register(-1, fd); err == nil {
		t.Fatal("Register(-1) succeeded")
	}
}

// TestHelperProcess is a child process, not a test by itself. In namespace XDPPROG_NETNS, mode "attach"
// (TestProgramDetachedOnKill9Veth) attaches to XDPPROG_IFINDEX, prints "attached <id>" and waits to be killed;
// mode "nocaps" (TestAttachWithoutCapabilitiesSaysWhatToDo) drops every capability first and prints the error.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv("XDPPROG_HELPER")
	if mode == "" {
		t.Skip("helper process for TestProgramDetachedOnKill9Veth and TestAttachWithoutCapabilitiesSaysWhatToDo")
	}
	runtime.LockOSThread() // Attach resolves the ifindex in this thread's namespace; capabilities are per thread
	ns, err := netns.GetFromName(os.Getenv("XDPPROG_NETNS"))
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	if err := netns.Set(ns); err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	if mode == "nocaps" {
		hdr := unix.CapUserHeader{Version: unix.LINUX_CAPABILITY_VERSION_3}
		var data [2]unix.CapUserData // all zero: no effective, permitted or inheritable capability
		if err := unix.Capset(&hdr, &data[0]); err != nil {
			fmt.Println("capset", err)
			os.Exit(2)
		}
	}
	idx, _ := strconv.Atoi(os.Getenv("XDPPROG_IFINDEX"))
	p, err := xdpprog.Attach(idx, xdpprog.Options{})
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	id, err := p.ProgramID()
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	fmt.Println("attached", id)
	time.Sleep(time.Minute) // the parent kills us long before; never Close
	os.Exit(3)
}

func TestProgramDetachedOnKill9Veth(t *testing.T) {
	lab := newPair(t)
	idx := lab.b.ifindex(t, lab.ifB)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "XDPPROG_HELPER=attach", "XDPPROG_NETNS="+lab.b.name, "XDPPROG_IFINDEX="+strconv.Itoa(idx))
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer cmd.Wait()
	defer cmd.Process.Kill()

	var childID uint32
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "attached "); ok {
			id, err := strconv.ParseUint(rest, 10, 32)
			if err != nil {
				t.Fatalf("child said %q", line)
			}
			childID = uint32(id)
			break
		}
		if strings.HasPrefix(line, "error") {
			t.Fatalf("child: %s", line)
		}
	}
	if childID == 0 {
		t.Fatalf("child never attached (scan: %v)", sc.Err())
	}
	if got, ok := attachedIn(t, lab.b, idx); !ok || got != childID {
		t.Fatalf("while the child runs AttachedProgramID = %d, %v; want %d", got, ok, childID)
	}

	if err := cmd.Process.Signal(unix.SIGKILL); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	werr := cmd.Wait()
	var ee *exec.ExitError
	if ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus); !errors.As(werr, &ee) || !ok || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("child did not die of SIGKILL: %v", werr)
	}
	// The link's last reference was the child's fd: the kernel detaches as the process's files are released.
	// Poll rather than sleep; 1s is far more than it takes (the elapsed time is logged).
	for {
		_, ok := attachedIn(t, lab.b, idx)
		if !ok {
			t.Logf("program detached %v after SIGKILL", time.Since(killed))
			return
		}
		if time.Since(killed) > time.Second {
			t.Fatalf("program %d still attached to %s 1s after the owning process was killed", childID, lab.ifB)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// udpExchange sends n datagrams a->b, each echoed b->a, and fails if any is lost.
func udpExchange(t *testing.T, lab *pair, n int) {
	t.Helper()
	listen := func(h *host, ip net.IP) *net.UDPConn {
		var c *net.UDPConn
		if err := h.do(func() (err error) {
			c, err = net.ListenUDP("udp4", &net.UDPAddr{IP: ip})
			return err
		}); err != nil {
			t.Fatalf("listen in %s: %v", h.name, err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	ca, cb := listen(lab.a, lab.ipA), listen(lab.b, lab.ipB)
	bAddr := cb.LocalAddr().(*net.UDPAddr)
	buf := make([]byte, 2048)
	for i := range n {
		msg := []byte(fmt.Sprintf("xdpprog pass %d", i))
		if _, err := ca.WriteToUDP(msg, bAddr); err != nil {
			t.Fatal(err)
		}
		cb.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, from, err := cb.ReadFromUDP(buf)
		if err != nil || string(buf[:k]) != string(msg) {
			t.Fatalf("b did not receive datagram %d through the program: %q, %v", i, buf[:k], err)
		}
		if _, err := cb.WriteToUDP(buf[:k], from); err != nil {
			t.Fatal(err)
		}
		ca.SetReadDeadline(time.Now().Add(5 * time.Second))
		k, _, err = ca.ReadFromUDP(buf)
		if err != nil || string(buf[:k]) != string(msg) {
			t.Fatalf("a did not get echo %d: %q, %v", i, buf[:k], err)
		}
	}
}

// With no socket registered, every queue misses in the XSKMAP and the program must return XDP_PASS: traffic
// (ARP, UDP, ICMP) flows as if it were not there. The run counter proves frames did go through it.
func TestPassesTrafficWithoutSocketVeth(t *testing.T) {
	requirePriv(t)
	stats, err := ebpf.EnableStats(uint32(unix.BPF_STATS_RUN_TIME))
	if err != nil {
		t.Fatalf("enable BPF stats: %v", err)
	}
	defer stats.Close()
	for _, mode := range []xdpprog.Mode{xdpprog.ModeNative, xdpprog.ModeGeneric} {
		t.Run(mode.String(), func(t *testing.T) {
			lab := newPair(t)
			p, err := attachIn(t, lab.b, lab.b.ifindex(t, lab.ifB), xdpprog.Options{Mode: mode})
			if err != nil {
				t.Fatal(err)
			}
			const n = 20
			udpExchange(t, lab, n)

			prog, err := ebpf.NewProgramFromID(ebpf.ProgramID(mustID(t, p)))
			if err != nil {
				t.Fatal(err)
			}
			defer prog.Close()
			st, err := prog.Stats()
			if err != nil {
				t.Fatal(err)
			}
			if st.RunCount < n {
				t.Fatalf("program ran %d times for %d datagrams into %s; traffic bypassed it", st.RunCount, n, lab.ifB)
			}

			ping := exec.Command("ip", "netns", "exec", lab.a.name, "ping", "-c", "3", "-i", "0.2", "-W", "2", lab.ipB.String())
			if out, err := ping.CombinedOutput(); err != nil {
				t.Fatalf("ping %s -> %s with the program on %s: %v\n%s", lab.ifA, lab.ipB, lab.ifB, err, out)
			}
		})
	}
}

// Attach in a process without capabilities must fail with the message that says what to grant. It runs in a
// child (TestHelperProcess, mode "nocaps") because capabilities dropped on one of this process's threads could
// land on the main thread, which Go never retires, and /proc/self/status would then show them missing.
func TestAttachWithoutCapabilitiesSaysWhatToDo(t *testing.T) {
	lab := newPair(t)
	idx := lab.b.ifindex(t, lab.ifB)
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), "XDPPROG_HELPER=nocaps", "XDPPROG_NETNS="+lab.b.name, "XDPPROG_IFINDEX="+strconv.Itoa(idx))
	out, _ := cmd.Output()
	want := "error attach XDP program to " + lab.ifB + ": operation not permitted (run as root or grant CAP_NET_ADMIN and CAP_BPF)"
	if got := strings.TrimSpace(string(out)); got != want {
		t.Fatalf("child without capabilities said %q; want %q", got, want)
	}
	if _, ok := attachedIn(t, lab.b, idx); ok {
		t.Fatal("a program got attached anyway")
	}
}
