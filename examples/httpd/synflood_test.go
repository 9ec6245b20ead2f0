package main

import (
	"path/filepath"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/netlab"
	"github.com/xdpnet/xdpnet/stack/tcp"
)

// TestSYNFloodCookieOptionsVeth: hping3 floods httpd with 50 000 SYNs a second (-i u20) from a spoofed
// source inside 198.18.0.0/15 (one address, a new source port per SYN - not --rand-source, which would
// leave the range), the SYN queue stays full, and a real curl that connects during the flood is accepted
// through a SYN cookie that kept its window scale and SACK (encoded in the timestamp, RFC 4987 §3.6) and
// downloads 32 MiB intact. The download times with and without the flood are logged: a cookie connection
// without window scaling would be held to a 64 KiB window.
func TestSYNFloodCookieOptionsVeth(t *testing.T) {
	netlab.RequireTool(t, "curl")
	netlab.RequireTool(t, "hping3")
	l := startLab(t, map[string]int{"32m": 32 << 20}, nil)
	get := func() time.Duration {
		dst := filepath.Join(t.TempDir(), "got")
		t0 := time.Now()
		l.curl(t, "-o", dst, "http://"+srvAddr+"/32m")
		d := time.Since(t0)
		if got := fileSum(t, dst); got != l.sums["32m"] {
			t.Fatalf("download: sha256 %s, want %s", got, l.sums["32m"])
		}
		return d
	}
	quiet := get()
	if n := l.s.TCPStat(tcp.StatCookiesSent); n != 0 {
		t.Fatalf("%d SYN cookies before the flood", n)
	}
	flood, err := l.cli.Start("hping3", "-q", "-S", "-p", "80", "-i", "u20", "-a", "198.18.0.99", srvAddr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { flood.Stop(time.Second) })
	deadline := time.Now().Add(20 * time.Second)
	for l.s.TCPStat(tcp.StatCookiesSent) < 1000 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if l.s.TCPStat(tcp.StatCookiesSent) < 1000 {
		t.Fatalf("the flood did not overflow the SYN queue: %v; hping3: %s", nonZero(l.s.TCPStats()), flood.Output())
	}
	during := get()
	sent := l.s.TCPStat(tcp.StatCookiesSent)
	flood.Stop(time.Second)
	st := l.s.TCPStats()
	t.Logf("32 MiB in %v without the flood, %v during it (%.0f%%); %d cookies sent; tcp stats %v",
		quiet.Round(time.Millisecond), during.Round(time.Millisecond), 100*quiet.Seconds()/during.Seconds(), sent, nonZero(st))
	if st[tcp.StatCookiesAccepted.String()] < 1 || st[tcp.StatCookieOptions.String()] < 1 {
		t.Fatalf("curl's connection did not come through a cookie with its options: accepted %d, with options %d",
			st[tcp.StatCookiesAccepted.String()], st[tcp.StatCookieOptions.String()])
	}
}
