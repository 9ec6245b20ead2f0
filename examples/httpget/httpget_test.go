package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/netlab"
)

// TestGetFromLinuxServerVeth: httpget's client on xdpnet's stack (namespace cli, 198.18.0.1) fetches
// 16 MiB from Linux's python3 -m http.server (namespace srv, 198.18.0.2), intact.
func TestGetFromLinuxServerVeth(t *testing.T) {
	netlab.RequireTool(t, "/usr/bin/python3")
	lab := netlab.NewT(t)
	cli, srv := lab.MustAddHost(t, "cli"), lab.MustAddHost(t, "srv")
	// One queue: the poller reads queue 0 only.
	if _, err := lab.LinkWith(cli, "eth0", srv, "eth0", netlab.LinkOptions{Queues: 1}); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*netlab.Host{cli, srv} {
		if err := h.Sysctl("net.ipv6.conf.all.disable_ipv6", "1"); err != nil {
			t.Fatal(err)
		}
		if err := h.SetUp("eth0"); err != nil {
			t.Fatal(err)
		}
	}
	if err := srv.AddAddr("eth0", "198.18.0.2/24"); err != nil {
		t.Fatal(err)
	}
	for _, h := range []*netlab.Host{cli, srv} {
		if err := h.WaitOperUp("eth0", 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	root := t.TempDir()
	b := make([]byte, 16<<20)
	rand.NewChaCha8([32]byte{7}).Read(b)
	if err := os.WriteFile(filepath.Join(root, "f"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	p, err := srv.Start("/usr/bin/python3", "-m", "http.server", "--bind", "198.18.0.2", "--directory", root, "8000")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Stop(time.Second)
	// Wait for the Linux server to listen.
	deadline := time.Now().Add(10 * time.Second)
	for {
		var c net.Conn
		err := srv.Do(func() (err error) { c, err = net.DialTimeout("tcp", "198.18.0.2:8000", time.Second); return err })
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("python http.server not listening: %v %s", err, p.Output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cfg := config{iface: "eth0", addr: netip.MustParsePrefix("198.18.0.1/24"), url: "http://198.18.0.2:8000/f"}
	r, err := run(ctx, cfg, cli.Do)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(r.Status, "200") || r.Length != int64(len(b)) || r.SHA256 != hex.EncodeToString(sum[:]) {
		t.Fatalf("got %+v, want 200, %d bytes, sha256 %x", r, len(b), sum)
	}
}
