//go:build stress

package adversary

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/xdpnet/xdpnet/internal/netlab"
)

// The binaries under attack, built once by TestMain.
var xdpfwdBin, httpdBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "xdpnet-adversary")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	xdpfwdBin, httpdBin = filepath.Join(dir, "xdpfwd"), filepath.Join(dir, "httpd")
	for bin, pkg := range map[string]string{xdpfwdBin: "../../cmd/xdpfwd", httpdBin: "../../examples/httpd"} {
		if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", pkg, err, out)
			os.RemoveAll(dir)
			os.Exit(1)
		}
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// The bounds the README's "Reliability" section states for the resident memory of each binary after an
// attack and a settle of settleTime, at its default settings with one queue.
const (
	xdpfwdRSSLimit = 192 << 20
	httpdRSSLimit  = 448 << 20
	settleTime     = 60 * time.Second
)

// python is Debian's interpreter, which has scapy.
const python = "/usr/bin/python3"

// prepare turns IPv6 off (no router solicitations or MLD on the links: only the traffic the test makes)
// and brings lo up.
func prepare(t *testing.T, hs ...*netlab.Host) {
	t.Helper()
	for _, h := range hs {
		for _, k := range []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"} {
			if err := h.Sysctl(k, "1"); err != nil {
				t.Fatal(err)
			}
		}
		if err := h.SetUp("lo"); err != nil {
			t.Fatal(err)
		}
	}
}

func addrUp(t *testing.T, h *netlab.Host, ifname string, prefixes ...string) {
	t.Helper()
	for _, p := range prefixes {
		if err := h.AddAddr(ifname, p); err != nil {
			t.Fatal(err)
		}
	}
	if err := h.SetUp(ifname); err != nil {
		t.Fatal(err)
	}
}

func waitUp(t *testing.T, pairs ...any) {
	t.Helper()
	for i := 0; i < len(pairs); i += 2 {
		if err := pairs[i].(*netlab.Host).WaitOperUp(pairs[i+1].(string), 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

// startProc starts name args in h and waits until its output contains ready.
func startProc(t *testing.T, h *netlab.Host, ready string, name string, args ...string) *netlab.Proc {
	t.Helper()
	p, err := h.Start(name, args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		p.Stop(5 * time.Second)
		if t.Failed() {
			t.Logf("%s output:\n%s", filepath.Base(name), tail(p.Output(), 60))
		}
	})
	deadline := time.After(20 * time.Second)
	for !bytes.Contains(p.Output(), []byte(ready)) {
		select {
		case <-p.Done():
			t.Fatalf("%s exited at start (%v):\n%s", name, p.Wait(), p.Output())
		case <-deadline:
			t.Fatalf("%s did not say %q within 20s:\n%s", name, ready, p.Output())
		case <-time.After(20 * time.Millisecond):
		}
	}
	return p
}

func tail(b []byte, lines int) string {
	s := strings.Split(string(b), "\n")
	if len(s) > lines {
		s = s[len(s)-lines:]
	}
	return strings.Join(s, "\n")
}

// run runs a command in h, failing the test on a timeout or a non-zero exit.
func run(t *testing.T, h *netlab.Host, timeout time.Duration, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	out, err := h.Command(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, tail(out, 40))
	}
	return string(out)
}

// connectWithin opens a TCP connection from h to addr and fails the test unless the handshake completes
// within d.
func connectWithin(t *testing.T, h *netlab.Host, addr string, d time.Duration) {
	t.Helper()
	var c net.Conn
	err := h.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", addr, d)
		return err
	})
	if err != nil {
		// Not fatal: the checks after an attack go on, so that the exit counters say why.
		t.Errorf("new connection to %s not accepted within %v: %v", addr, d, err)
		return
	}
	c.Close()
}

// rss is the resident set size of process pid, from /proc.
func rss(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^VmRSS:\s+(\d+) kB`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmRSS in /proc/%d/status", pid)
	}
	n, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return n << 10
}

// settleRSS waits settleTime and checks the process's RSS against limit.
func settleRSS(t *testing.T, p *netlab.Proc, limit int64) {
	t.Helper()
	time.Sleep(settleTime)
	if r := rss(t, p.Cmd.Process.Pid); r > limit {
		t.Errorf("RSS %d MiB after a %v settle, over the bound of %d MiB", r>>20, settleTime, limit>>20)
	} else {
		t.Logf("RSS %d MiB after a %v settle (bound %d MiB)", r>>20, settleTime, limit>>20)
	}
}

// counter reads "KIND NAME N" (xdpfwd's summary: "drop neighbour_held_limit 12", "stack forwarded 5").
func counter(out, kind, name string) uint64 {
	m := regexp.MustCompile(`(?m)^` + kind + ` ` + regexp.QuoteMeta(name) + ` +(\d+)$`).FindStringSubmatch(out)
	if m == nil {
		return 0
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n
}

// metric sums the samples of a Prometheus metric in a text exposition: all label sets, or those that contain
// every one of labels (`reason="neighbour_held_limit"`).
func metric(text, name string, labels ...string) float64 {
	var sum float64
next:
	for _, m := range regexp.MustCompile(`(?m)^`+regexp.QuoteMeta(name)+`(\{[^}]*\})? ([0-9.e+-]+)$`).FindAllStringSubmatch(text, -1) {
		for _, l := range labels {
			if !strings.Contains(m[1], l) {
				continue next
			}
		}
		v, _ := strconv.ParseFloat(m[2], 64)
		sum += v
	}
	return sum
}

// stopChecked sends SIGTERM, waits for a clean exit and checks the frame accounting line; it returns the
// output.
func stopChecked(t *testing.T, p *netlab.Proc, what string) string {
	t.Helper()
	if err := p.Stop(15 * time.Second); err != nil {
		t.Fatalf("stop %s: %v", what, err)
	}
	out := string(p.Output())
	if err := p.Wait(); err != nil {
		t.Fatalf("%s exit after SIGTERM: %v (want status 0)\n%s", what, err, tail([]byte(out), 60))
	}
	if !strings.Contains(out, "frame accounting: OK") {
		t.Errorf("%s did not report \"frame accounting: OK\" at exit:\n%s", what, tail([]byte(out), 60))
	}
	return out
}

// pinger runs ping from h to addr every 200 ms until stop is called, which returns the loss in percent.
func pinger(t *testing.T, h *netlab.Host, addr string) (stop func() float64) {
	t.Helper()
	p, err := h.Start("ping", "-n", "-i", "0.2", addr)
	if err != nil {
		t.Fatal(err)
	}
	return func() float64 {
		p.Cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.Done():
		case <-time.After(5 * time.Second):
			p.Stop(time.Second)
		}
		m := regexp.MustCompile(`(\d+) packets transmitted, (\d+) received`).FindSubmatch(p.Output())
		if m == nil {
			t.Fatalf("ping summary missing:\n%s", tail(p.Output(), 10))
		}
		tx, _ := strconv.Atoi(string(m[1]))
		rx, _ := strconv.Atoi(string(m[2]))
		if tx == 0 {
			return 100
		}
		return 100 * float64(tx-rx) / float64(tx)
	}
}

// legitHTTP is the legitimate client of the server attacks: from h, every 200 ms until stop is called, it
// opens a new connection to addr (the handshake within a second), asks for path with Connection: close and
// reads the whole answer (within two seconds more), which must be a 200 of want bytes. stop returns the
// number of tries and a description of each failure.
func legitHTTP(h *netlab.Host, addr, path string, want int) (stop func() (tries int, fails []string)) {
	quit, done := make(chan struct{}), make(chan struct{})
	var fails []string
	tries := 0
	req := []byte("GET " + path + " HTTP/1.1\r\nHost: " + addr + "\r\nConnection: close\r\n\r\n")
	once := func() error {
		return h.Do(func() error {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err != nil {
				return fmt.Errorf("connect: %w", err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(2 * time.Second))
			if _, err := c.Write(req); err != nil {
				return fmt.Errorf("request: %w", err)
			}
			resp, err := io.ReadAll(c)
			if err != nil {
				return fmt.Errorf("answer after %d bytes: %w", len(resp), err)
			}
			head, body, _ := bytes.Cut(resp, []byte("\r\n\r\n"))
			if !bytes.HasPrefix(head, []byte("HTTP/1.1 200 ")) || len(body) != want {
				return fmt.Errorf("answer %q with %d bytes of body, want 200 and %d", bytes.SplitN(head, []byte("\r\n"), 2)[0], len(body), want)
			}
			return nil
		})
	}
	go func() {
		defer close(done)
		tick := time.NewTicker(200 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-quit:
				return
			case <-tick.C:
			}
			tries++
			if err := once(); err != nil {
				fails = append(fails, time.Now().Format("15:04:05.000 ")+err.Error())
			}
		}
	}()
	return func() (int, []string) {
		close(quit)
		<-done
		return tries, fails
	}
}

// checkLegit fails the test if the legitimate client failed more than maxFails of its tries or made fewer
// than minTries.
func checkLegit(t *testing.T, what string, tries int, fails []string, minTries, maxFails int) {
	t.Helper()
	t.Logf("legitimate client during %s: %d tries, %d failed", what, tries, len(fails))
	if tries < minTries {
		t.Errorf("the legitimate client made only %d tries during %s, want at least %d", tries, what, minTries)
	}
	if len(fails) > maxFails {
		if len(fails) > 10 {
			fails = append(fails[:5:5], append([]string{"..."}, fails[len(fails)-5:]...)...)
		}
		t.Errorf("the legitimate client failed %d of %d tries during %s (at most %d allowed):\n%s", len(fails), tries, what, maxFails, strings.Join(fails, "\n"))
	}
}
