package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/internal/netlab"
)

func TestConfigFlags(t *testing.T) {
	cfg, dst, err := config("a", "b", "02:00:00:00:00:09", 2, "busy", "copy", "0,1")
	if err != nil || dst.String() != "02:00:00:00:00:09" || cfg.Queues != 2 || cfg.Mode.String() != "busy" ||
		cfg.Bind.String() == "" || len(cfg.CPUs) != 2 {
		t.Fatalf("config: %+v %v %v", cfg, dst, err)
	}
	for _, bad := range [][]string{{"zz", "adaptive", "auto", ""}, {"02:00:00:00:00:09", "lazy", "auto", ""},
		{"02:00:00:00:00:09", "adaptive", "sometimes", ""}, {"02:00:00:00:00:09", "adaptive", "auto", "x"}} {
		if _, _, err := config("a", "b", bad[0], 1, bad[1], bad[2], bad[3]); err == nil {
			t.Errorf("config %v: no error", bad)
		}
	}
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// packetSocket opens an AF_PACKET socket bound to ifname inside h.
func packetSocket(t *testing.T, h *netlab.Host, ifname string) (fd, ifindex int) {
	t.Helper()
	err := h.Do(func() error {
		l, err := h.Link(ifname)
		if err != nil {
			return err
		}
		ifindex = l.Attrs().Index
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		if err := unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: ifindex}); err != nil {
			return err
		}
		return unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 300_000})
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fd) })
	return fd, ifindex
}

// TestL2fwdBinaryVeth builds the command, runs it in a namespace between two veth pairs
// (src --veth-- dut --veth-- dst), sends frames from src and checks that dst receives every one of them with the
// new destination MAC, the egress MAC as source and the rest of the bytes unchanged; then SIGTERM must end it
// cleanly with a summary.
func TestL2fwdBinaryVeth(t *testing.T) {
	lab := netlab.NewT(t)
	bin := filepath.Join(t.TempDir(), "l2fwd")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	src, dut, dst := lab.MustAddHost(t, "src"), lab.MustAddHost(t, "dut"), lab.MustAddHost(t, "dst")
	v1, err := lab.LinkWith(src, "eth0", dut, "in0", netlab.LinkOptions{Queues: 1})
	if err != nil {
		t.Fatal(err)
	}
	v2, err := lab.LinkWith(dut, "out0", dst, "eth0", netlab.LinkOptions{Queues: 1})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []netlab.Endpoint{v1.A, v1.B, v2.A, v2.B} {
		// No IPv6: its solicitations would be forwarded too and muddle the count.
		if err := e.Host.Sysctl("net.ipv6.conf."+e.Name+".disable_ipv6", "1"); err != nil {
			t.Fatal(err)
		}
		if err := e.Host.SetUp(e.Name); err != nil {
			t.Fatal(err)
		}
	}
	for _, e := range []netlab.Endpoint{v1.A, v1.B, v2.A, v2.B} {
		if err := e.Host.WaitOperUp(e.Name, 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	newDst := "02:00:5e:00:53:01"
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := dut.Command(ctx, bin, "-in", "in0", "-out", "out0", "-dst-mac", newDst)
	var stdout bytes.Buffer
	pr, pw := net.Pipe()
	cmd.Stdout = pw
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan bool, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			stdout.WriteString(sc.Text() + "\n")
			if strings.HasPrefix(sc.Text(), "l2fwd:") {
				started <- true
			}
		}
	}()
	select {
	case <-started:
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("l2fwd did not start; stderr:\n%s", stderr.String())
	}

	sfd, sidx := packetSocket(t, src, "eth0")
	rfd, _ := packetSocket(t, dst, "eth0")
	const n = 200
	frame := func(i int) []byte {
		b := make([]byte, 60)
		copy(b, v1.B.MAC) // to the DUT's in0
		copy(b[6:], v1.A.MAC)
		binary.BigEndian.PutUint16(b[12:], 0x88b5) // IEEE local experimental: nothing else uses it
		binary.BigEndian.PutUint32(b[14:], uint32(i))
		for j := 18; j < len(b); j++ {
			b[j] = byte(i + j)
		}
		return b
	}
	for i := range n {
		if err := unix.Sendto(sfd, frame(i), 0, &unix.SockaddrLinklayer{Ifindex: sidx, Halen: 6}); err != nil {
			t.Fatal(err)
		}
		if i%32 == 31 {
			time.Sleep(time.Millisecond) // stay under the veth queue and socket limits
		}
	}
	got := 0
	buf := make([]byte, 2048)
	wantDst, _ := net.ParseMAC(newDst)
	for got < n {
		m, _, err := unix.Recvfrom(rfd, buf, 0)
		if err != nil {
			break
		}
		f := buf[:m]
		if m < 18 || binary.BigEndian.Uint16(f[12:]) != 0x88b5 {
			continue
		}
		i := int(binary.BigEndian.Uint32(f[14:]))
		want := frame(i)
		copy(want, wantDst)
		copy(want[6:], v2.A.MAC)
		if !bytes.Equal(f, want) {
			t.Fatalf("frame %d:\n got %x\nwant %x", i, f, want)
		}
		if i != got {
			t.Fatalf("frame %d arrived as number %d (reordered or lost)", i, got)
		}
		got++
	}
	if got != n {
		t.Fatalf("dst received %d of %d frames", got, n)
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	err = cmd.Wait()
	pw.Close()
	<-copied
	if err != nil {
		t.Fatalf("l2fwd exit after SIGTERM: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	out := stdout.String()
	if !strings.Contains(out, "summary:") || !strings.Contains(out, "forwarded 200 on out0") {
		t.Fatalf("no summary with the count in the output:\n%s\nstderr:\n%s", out, stderr.String())
	}
	t.Logf("output:\n%s", out)
}
