package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/netlab"
	"github.com/xdpnet/xdpnet/stack"
)

// sendFromCli pushes the file at path to addr with one Linux TCP connection from cli (ncat --send-only)
// and returns how long it took.
func sendFromCli(b *testing.B, cli *netlab.Host, addr, path string) time.Duration {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	f, err := os.Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	host, port, _ := net.SplitHostPort(addr)
	cmd := cli.Command(ctx, "ncat", "--send-only", host, port)
	cmd.Stdin = f
	start := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("ncat: %v %s", err, out)
	}
	return time.Since(start)
}

// BenchmarkTCPOneFlowVeth: one Linux TCP flow over a veth (MTU 1500, GSO/GRO/TSO and checksum offloads
// off) into xdpnet's stack (a sink on port 9000), and, in the same run, into Linux on the same veth with
// the poller gone. Reports Gbit/s of each.
func BenchmarkTCPOneFlowVeth(b *testing.B) {
	netlab.RequireTool(b, "ncat")
	const size = 256 << 20
	var sink *stack.TCPListener
	l := startLab(b, nil, func(s *stack.Stack) {
		var err error
		if sink, err = s.ListenTCP(netip.MustParseAddrPort(srvAddr + ":9000")); err != nil {
			b.Fatal(err)
		}
		go func() {
			for {
				c, err := sink.Accept()
				if err != nil {
					return
				}
				go func() { io.Copy(io.Discard, c); c.Close() }()
			}
		}()
	})
	// Like for like, and only here: the tests run the veth at its defaults, but with them the Linux receiver
	// would get 64 KiB TSO segments straight from the sender while xdpnet gets 1500-byte frames (veth turns
	// its peer's TSO off while XDP is attached). Offloads off on both ends give both receivers the segments
	// a wire would carry.
	for _, h := range []*netlab.Host{l.cli, l.srv} {
		if err := h.DisableOffloads("eth0"); err != nil {
			b.Fatal(err)
		}
	}
	path := filepath.Join(b.TempDir(), "blob")
	if err := os.WriteFile(path, make([]byte, size), 0o644); err != nil {
		b.Fatal(err)
	}
	var xdp, lin time.Duration
	for range b.N {
		xdp += sendFromCli(b, l.cli, srvAddr+":9000", path)
	}
	sink.Close()
	l.stop()
	// Linux on the same veth end: the address in the kernel, ncat listening.
	if err := l.srv.AddAddr("eth0", srvAddr+"/24"); err != nil {
		b.Fatal(err)
	}
	for range b.N {
		p, err := l.srv.Start("ncat", "-l", srvAddr, "9001", "--recv-only", "-o", "/dev/null")
		if err != nil {
			b.Fatal(err)
		}
		time.Sleep(200 * time.Millisecond)
		lin += sendFromCli(b, l.cli, srvAddr+":9001", path)
		p.Stop(2 * time.Second)
	}
	gbps := func(d time.Duration) float64 { return float64(size) * 8 * float64(b.N) / d.Seconds() / 1e9 }
	b.ReportMetric(gbps(xdp), "xdpnet-Gbit/s")
	b.ReportMetric(gbps(lin), "linux-Gbit/s")
	b.ReportMetric(0, "ns/op")
	fmt.Fprintf(os.Stderr, "one flow, 256 MiB x %d: xdpnet %.2f Gbit/s, linux %.2f Gbit/s\n", b.N, gbps(xdp), gbps(lin))
}
