package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"regexp"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/netlab"
)

// TestPeersAtDefaultsVeth: gen and sink are Linux hosts whose veths keep their default offloads, as every
// container's do: TX checksum offload on, so their TCP and UDP checksums reach xdpfwd partial. Through
// xdpfwd, traceroute and tracepath see both hops, 1000 UDP datagrams between Linux sockets arrive, and
// iperf3 moves TCP both ways; the router completes the checksums it forwards (checksums_completed).
func TestPeersAtDefaultsVeth(t *testing.T) {
	l := startLab(t, labOptions{})
	for _, h := range []*netlab.Host{l.gen, l.sink} {
		f, err := h.Features("eth0")
		if err != nil {
			t.Fatal(err)
		}
		if !f["tx-checksum-ip-generic"] {
			t.Fatalf("%s eth0: TX checksum offload is off; this test is about veths at their defaults", h.Role())
		}
	}

	out := runIn(t, l.gen, "traceroute", "-n", "-q", "1", "-w", "2", "-m", "5", sinkAddr)
	if !regexp.MustCompile(`(?m)^ 1  `+regexp.QuoteMeta(r0Addr)+` `).MatchString(out) ||
		!regexp.MustCompile(`(?m)^ 2  `+regexp.QuoteMeta(sinkAddr)+` `).MatchString(out) {
		t.Errorf("traceroute: want hop 1 %s and hop 2 %s:\n%s", r0Addr, sinkAddr, out)
	}
	out = runIn(t, l.gen, "tracepath", "-n", "-m", "5", sinkAddr)
	if !regexp.MustCompile(`(?m)^ 1: +`+regexp.QuoteMeta(r0Addr)).MatchString(out) ||
		!regexp.MustCompile(`(?m)^ 2: +`+regexp.QuoteMeta(sinkAddr)).MatchString(out) {
		t.Errorf("tracepath: want hop 1 %s and hop 2 %s:\n%s", r0Addr, sinkAddr, out)
	}

	// 1000 datagrams of 1000 bytes, paced so that socket buffers, not the router, would be the limit.
	gen, sink := udpPair(t, l, sinkAddr, 4001)
	const n = 1000
	// The sink reads while gen sends: its socket buffer (rmem_default) holds only ~90 such datagrams.
	done := make(chan map[int][]byte)
	go func() { done <- readAll(sink, n, 5*time.Second) }()
	for i := range n {
		if _, err := gen.Write(payload(i, 1000)); err != nil {
			t.Fatal(err)
		}
		if i%50 == 49 {
			time.Sleep(2 * time.Millisecond)
		}
	}
	got := <-done
	intact := 0
	for i := range n {
		if bytes.Equal(got[i], payload(i, 1000)) {
			intact++
		}
	}
	if intact < n*99/100 {
		t.Errorf("%d of %d UDP datagrams arrived intact, want at least 99%%", intact, n)
	}

	for _, reverse := range []bool{false, true} {
		if bytes := iperf3(t, l, reverse); bytes < 1<<20 {
			t.Errorf("iperf3 (reverse %v) moved %d bytes through xdpfwd", reverse, bytes)
		}
	}

	sum := stopRouter(t, l)
	if counter(sum, "stack", "checksums_completed") == 0 {
		t.Errorf("no partial checksum completed: were the peers' offloads at their defaults?\n%s", sum)
	}
}

// iperf3 runs a 2-second TCP test gen -> sink (sink -> gen when reverse) and returns the bytes the
// receiver got.
func iperf3(t *testing.T, l *routerLab, reverse bool) int64 {
	t.Helper()
	srv, err := l.sink.Start("iperf3", "-s", "-1", "-B", sinkAddr, "-p", "5211")
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Stop(5 * time.Second)
	args := []string{"-c", sinkAddr, "-p", "5211", "-t", "2", "-J"}
	if reverse {
		args = append(args, "-R")
	}
	var out string
	for try := 0; try < 20; try++ { // until the server listens
		out = runIn(t, l.gen, "iperf3", args...)
		if !bytes.Contains([]byte(out), []byte("Connection refused")) && !bytes.Contains([]byte(out), []byte("unable to connect")) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	var r struct {
		End struct {
			SumReceived struct {
				Bytes int64 `json:"bytes"`
			} `json:"sum_received"`
		} `json:"end"`
		Error string `json:"error"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Error != "" {
		t.Fatalf("iperf3 %v: %v %s\n%s", args, err, r.Error, out)
	}
	t.Log(fmt.Sprintf("iperf3 reverse=%v: %.2f Gbit/s", reverse, float64(r.End.SumReceived.Bytes)*8/2e9))
	return r.End.SumReceived.Bytes
}
