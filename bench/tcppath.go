package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/internal/netlab"
	"github.com/xdpnet/xdpnet/poller"
	"github.com/xdpnet/xdpnet/stack"
	"github.com/xdpnet/xdpnet/stack/tcp"
)

// The tcppath scenario (-scenario tcppath): the time Linux curl takes to move one file over HTTP to or from a server on
// xdpnet's stack, against the same server on Linux's TCP, side by side in one run, through a Linux router:
//
//	cli (curl, eth0 198.18.5.1) -- (eth0 .5.254) rtr (eth1 198.18.6.254) --1 queue-- (eth0 198.18.6.2) srv (net/http: xdpnet or Linux)
//
// Directions: send is the server sending (curl downloads: xdpnet -> Linux against Linux -> Linux), recv the
// server receiving (curl uploads with PUT and the server hashes the body: Linux -> xdpnet against Linux ->
// Linux). Both servers are the same net/http handler in the bench process; only the listener differs
// (stack.ListenTCP on a poller pinned to -dut-cpu, or net.Listen in srv's namespace). Loss: nftables in the
// router's forward chain drops that percentage of TCP packets at random, both directions (numgen random) -
// in the router and not in cli, because a drop on the sender's own output hook is no loss to Linux's TCP:
// the transmit fails, and it sends the segment again at once. All MTUs are 1500; GSO, GRO, TSO and the
// checksum offloads are off on every veth end in every run, with and without loss: at the defaults the
// Linux server would hand 64 KiB TSO segments to the veth, of which nftables drops whole ones, where
// xdpnet (veth turns TSO off towards an XDP program) sends MTU-sized segments; with the offloads off both
// lose and carry the segments a wire would. Every run builds fresh namespaces, so that Linux's
// per-destination TCP metrics (ssthresh, RTT) do not carry over from one run to the next. -path-cc sets the
// Linux server's congestion control; the default is the host's (check it: BBR, where the host has it, barely
// reacts to random loss, where CUBIC - xdpnet's - halves its rate by 30% on each loss event).
//
// The SYN-flood figure: curl's download time of the same file from each server with and without hping3
// flooding the server's port at 50 000 SYN/s (-i u20) from 198.18.5.99, one spoofed address inside
// 198.18.0.0/15 with a new source port per SYN (--rand-source would leave the range); the SYN queue stays
// full and curl's connection is accepted through a SYN cookie (checked for xdpnet).
var (
	pathCliPrefix = "198.18.5.1/24"
	pathRtrCli    = "198.18.5.254/24"
	pathRtrSrv    = netip.MustParsePrefix("198.18.6.254/24")
	pathSrvPrefix = netip.MustParsePrefix("198.18.6.2/24")
	pathFloodSrc  = "198.18.5.99"
)

// pathServer is the HTTP server of one tcppath run.
type pathServer struct {
	lab           *netlab.Lab
	cli, rtr, srv *netlab.Host
	st            *stack.Stack // the xdpnet server's stack (nil for Linux)
	stop          func() error
}

// pathFile is the file every run moves, written once per bench run.
type pathFile struct {
	dir, name string
	size      int64
	sum       string
}

func writePathFile(dir string, size int64) (*pathFile, error) {
	b := make([]byte, size)
	rand.NewChaCha8([32]byte{5}).Read(b)
	f := &pathFile{dir: dir, name: "blob", size: size}
	s := sha256.Sum256(b)
	f.sum = hex.EncodeToString(s[:])
	return f, os.WriteFile(filepath.Join(dir, f.name), b, 0o644)
}

// pathHandler serves dir and answers a PUT to /upload with the body's hex SHA-256, as examples/httpd does.
func pathHandler(dir string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", http.FileServer(http.Dir(dir)))
	mux.HandleFunc("/upload", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		if _, err := io.Copy(h, r.Body); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, "%s\n", hex.EncodeToString(h.Sum(nil)))
	})
	return mux
}

// startPathServer builds the hosts and starts impl's server (xdpnet or kernel) with lossPct% loss in cli.
func startPathServer(o *options, impl string, f *pathFile, lossPct int) (ps *pathServer, err error) {
	lab, err := netlab.New("bench")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			lab.Close()
		}
	}()
	ps = &pathServer{lab: lab}
	if ps.cli, err = lab.AddHost("cli"); err != nil {
		return nil, err
	}
	if ps.rtr, err = lab.AddHost("rtr"); err != nil {
		return nil, err
	}
	if ps.srv, err = lab.AddHost("srv"); err != nil {
		return nil, err
	}
	// One queue on the server's link: the xdpnet poller reads one queue.
	if _, err := lab.LinkWith(ps.cli, "eth0", ps.rtr, "eth0", netlab.LinkOptions{MTU: 1500}); err != nil {
		return nil, err
	}
	if _, err := lab.LinkWith(ps.rtr, "eth1", ps.srv, "eth0", netlab.LinkOptions{Queues: 1, MTU: 1500}); err != nil {
		return nil, err
	}
	ifs := []struct {
		h   *netlab.Host
		dev string
	}{{ps.cli, "eth0"}, {ps.rtr, "eth0"}, {ps.rtr, "eth1"}, {ps.srv, "eth0"}}
	for _, i := range ifs {
		if err := i.h.Sysctl("net.ipv6.conf."+i.dev+".disable_ipv6", "1"); err != nil {
			return nil, err
		}
		if err := i.h.DisableOffloads(i.dev); err != nil {
			return nil, err
		}
		if err := i.h.SetUp(i.dev); err != nil {
			return nil, err
		}
	}
	if err := ps.rtr.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
		return nil, err
	}
	for _, a := range []struct {
		h         *netlab.Host
		dev, addr string
	}{{ps.cli, "eth0", pathCliPrefix}, {ps.rtr, "eth0", pathRtrCli}, {ps.rtr, "eth1", pathRtrSrv.String()}} {
		if err := a.h.AddAddr(a.dev, a.addr); err != nil {
			return nil, err
		}
	}
	for _, i := range ifs {
		if err := i.h.WaitOperUp(i.dev, 5*time.Second); err != nil {
			return nil, err
		}
	}
	if err := ps.cli.AddRoute(pathSrvPrefix.Masked().String(), strings.Split(pathRtrCli, "/")[0]); err != nil {
		return nil, err
	}
	if lossPct > 0 {
		// In the router's forward path, so that neither end's TCP sees the drop: on a sender's own
		// output hook Linux would learn of it (the transmit fails) and send again at once.
		p := strconv.Itoa(lossPct)
		for _, args := range [][]string{
			{"add", "table", "inet", "xnloss"},
			{"add", "chain", "inet", "xnloss", "lossy", "{ type filter hook forward priority 0; }"},
			{"add", "rule", "inet", "xnloss", "lossy", "meta", "l4proto", "tcp", "numgen", "random", "mod", "100", "<", p, "drop"},
		} {
			if out, err := ps.rtr.Run(context.Background(), "nft", args...); err != nil {
				return nil, fmt.Errorf("nft %v: %w: %s", args, err, out)
			}
		}
	}
	laddr := netip.AddrPortFrom(pathSrvPrefix.Addr(), 80)
	var ln net.Listener
	var stopPoller func() error
	switch impl {
	case "kernel":
		if err := ps.srv.AddAddr("eth0", pathSrvPrefix.String()); err != nil {
			return nil, err
		}
		if err := ps.srv.AddRoute("default", pathRtrSrv.Addr().String()); err != nil {
			return nil, err
		}
		// -path-cc is set on the listening socket (TCP_CONGESTION), which the connections inherit: a
		// namespace may not make an algorithm outside net.ipv4.tcp_allowed_congestion_control its default,
		// but a privileged socket may use any the kernel has.
		lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
			if o.pathCC == "" {
				return nil
			}
			var serr error
			if err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptString(int(fd), unix.IPPROTO_TCP, unix.TCP_CONGESTION, o.pathCC)
			}); err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("-path-cc %s: setsockopt TCP_CONGESTION: %w (see net.ipv4.tcp_available_congestion_control)", o.pathCC, serr)
			}
			return nil
		}}
		if err := ps.srv.Do(func() (err error) { ln, err = lc.Listen(context.Background(), "tcp", laddr.String()); return err }); err != nil {
			return nil, err
		}
	case "xdpnet":
		st, err := stack.New(stack.Config{Interfaces: []stack.Interface{{Name: "eth0", Addrs: []netip.Prefix{pathSrvPrefix}}},
			Routes: []stack.Route{{Prefix: netip.MustParsePrefix("0.0.0.0/0"), NextHop: pathRtrSrv.Addr()}}})
		if err != nil {
			return nil, err
		}
		ps.st = st
		mode, err := poller.ParsePollMode(o.dutMode)
		if err != nil {
			return nil, err
		}
		if _, stopPoller, err = runPoller(ps.srv, poller.Config{Interfaces: []string{"eth0"}, Queues: 1, CPUs: []int{o.dutCPU},
			Mode: mode, Budget: o.dutBudget, RingSize: o.dutRing, NewHandler: st.NewHandler}); err != nil {
			return nil, err
		}
		if ln, err = st.ListenTCP(laddr); err != nil {
			stopPoller()
			return nil, err
		}
	default:
		return nil, fmt.Errorf("%w: no %s implementation of tcppath", errNA, impl)
	}
	srv := &http.Server{Handler: pathHandler(f.dir)}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	ps.stop = once(func() error {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		srv.Shutdown(ctx)
		cancel()
		<-done
		var err error
		if stopPoller != nil {
			if err = stopPoller(); errors.Is(err, context.Canceled) {
				err = nil
			}
		}
		lab.Close()
		return err
	})
	return ps, nil
}

// curlTime runs one curl in cli - a download of f (send) or its upload (recv) - and returns curl's own
// time_total, after checking that every byte arrived (the size downloaded, the SHA-256 the server answers).
func (ps *pathServer) curlTime(dir string, f *pathFile) (time.Duration, error) {
	url := "http://" + pathSrvPrefix.Addr().String() + "/"
	args := []string{"-sS", "--max-time", "180", "-w", "\n%{http_code} %{size_download} %{time_total}"}
	if dir == "send" {
		args = append(args, "-o", "/dev/null", url+f.name)
	} else {
		args = append(args, "-T", filepath.Join(f.dir, f.name), url+"upload")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 190*time.Second)
	defer cancel()
	cmd := ps.cli.Command(ctx, "curl", args...)
	var errb strings.Builder
	cmd.Stderr = &errb
	out, err := cmd.Output()
	if err != nil {
		return 0, fmt.Errorf("curl: %w: %s", err, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	var code, size int64
	var secs float64
	if _, err := fmt.Sscanf(lines[len(lines)-1], "%d %d %g", &code, &size, &secs); err != nil || code != 200 {
		return 0, fmt.Errorf("curl answered %q", out)
	}
	if dir == "send" && size != f.size {
		return 0, fmt.Errorf("downloaded %d bytes of %d", size, f.size)
	}
	if dir == "recv" && (len(lines) < 2 || lines[0] != f.sum) {
		return 0, fmt.Errorf("upload hashed %q by the server, want %s", lines[0], f.sum)
	}
	return time.Duration(secs * float64(time.Second)), nil
}

// pathCase is one configuration of the scenario and its times.
type pathCase struct {
	dir   string // send, recv, or flood (send with the SYN flood) and quiet (send without, its reference)
	loss  int
	impl  string
	times []float64 // seconds
	err   string
}

func (c *pathCase) name() string {
	switch c.dir {
	case "flood", "quiet":
		return c.dir
	}
	return fmt.Sprintf("%s %d%%", c.dir, c.loss)
}

// pathTrial runs one case once.
func pathTrial(o *options, c *pathCase, f *pathFile) (time.Duration, error) {
	ps, err := startPathServer(o, c.impl, f, c.loss)
	if err != nil {
		return 0, err
	}
	defer ps.stop()
	dir := c.dir
	if dir == "flood" {
		flood, err := ps.cli.Start("hping3", "-q", "-S", "-p", "80", "-i", "u20", "-a", pathFloodSrc, pathSrvPrefix.Addr().String())
		if err != nil {
			return 0, fmt.Errorf("hping3: %w", err)
		}
		defer flood.Stop(time.Second)
		// Let the flood fill the SYN queue before curl connects.
		time.Sleep(time.Second)
		select {
		case <-flood.Done():
			return 0, fmt.Errorf("hping3 ended: %s", flood.Output())
		default:
		}
	}
	if dir == "flood" || dir == "quiet" {
		dir = "send"
	}
	d, err := ps.curlTime(dir, f)
	if err != nil {
		return 0, err
	}
	if c.dir == "flood" && ps.st != nil && ps.st.TCPStat(tcp.StatCookiesAccepted) == 0 {
		return 0, fmt.Errorf("curl's connection did not come through a SYN cookie (tcp stats %v)", ps.st.TCPStats())
	}
	return d, ps.stop()
}

// runTCPPath runs every case -runs times, interleaved, and prints the table (also written to DIR/tcppath.md).
func runTCPPath(o *options, m Machine, dirs []string, losses []int, size int64, outDir string) error {
	for _, tool := range []string{"curl", "nft", "hping3"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("tcppath needs %s: %w", tool, err)
		}
	}
	tmp, err := os.MkdirTemp("", "xdpnet-tcppath")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	f, err := writePathFile(tmp, size)
	if err != nil {
		return err
	}
	var cases []*pathCase
	for _, dir := range dirs {
		if dir != "send" && dir != "recv" {
			continue
		}
		for _, loss := range losses {
			for _, impl := range []string{"xdpnet", "kernel"} {
				if o.impls != nil && !slices.Contains(o.impls, impl) {
					continue
				}
				cases = append(cases, &pathCase{dir: dir, loss: loss, impl: impl})
			}
		}
	}
	for _, dir := range []string{"quiet", "flood"} {
		if !slices.Contains(dirs, "flood") {
			break
		}
		for _, impl := range []string{"xdpnet", "kernel"} {
			if o.impls != nil && !slices.Contains(o.impls, impl) {
				continue
			}
			cases = append(cases, &pathCase{dir: dir, impl: impl})
		}
	}
	start := time.Now()
	for r := range o.runs {
		for i, c := range cases {
			if c.err != "" {
				continue
			}
			fmt.Fprintf(os.Stderr, "\r[%3.0fs] round %d/%d, %d/%d: %-10s %-6s ...          ", time.Since(start).Seconds(), r+1, o.runs, i+1, len(cases), c.name(), c.impl)
			d, err := pathTrial(o, c, f)
			if err != nil {
				c.err = err.Error()
				fmt.Fprintf(os.Stderr, "\n%s %s: %v\n", c.name(), c.impl, err)
				continue
			}
			c.times = append(c.times, d.Seconds())
		}
	}
	fmt.Fprintln(os.Stderr)
	md := pathTable(o, m, cases, size)
	fmt.Print(md)
	return os.WriteFile(filepath.Join(outDir, "tcppath.md"), []byte(md), 0o644)
}

func pathTable(o *options, m Machine, cases []*pathCase, size int64) string {
	var b strings.Builder
	fmt.Fprintf(&b, "tcppath: Linux curl moving %d MiB over HTTP to/from a server on xdpnet or on Linux TCP through a Linux router (veth, MTU 1500; GSO, GRO, TSO and checksum offloads off on every end, so that both servers send and lose MTU-sized segments), loss by nftables numgen in the router's forward chain, both ways; median of %d fresh-namespace runs, curl's time_total; %s, %d cores, Linux %s, load average %.2f at the end\n\n",
		size>>20, o.runs, m.CPU, m.Cores, m.Kernel, loadAvg())
	cc := o.pathCC
	if cc == "" {
		// A new network namespace starts with the initial namespace's choice.
		b, _ := os.ReadFile("/proc/sys/net/ipv4/tcp_congestion_control")
		cc = strings.TrimSpace(string(b)) + " (this host's default)"
	}
	fmt.Fprintf(&b, "Congestion control of the Linux server: %s; of curl, the sender of the uploads to both servers: this host's default; of xdpnet: CUBIC (RFC 9438) with HyStart++.\n\n", cc)
	b.WriteString("| case | xdpnet s (median) | Linux s (median) | xdpnet / Linux time | xdpnet runs | Linux runs |\n|---|---|---|---|---|---|\n")
	find := func(name, impl string) *pathCase {
		for _, c := range cases {
			if c.name() == name && c.impl == impl {
				return c
			}
		}
		return nil
	}
	runs := func(c *pathCase) string {
		if c.err != "" {
			return "error: " + c.err
		}
		s := make([]string, len(c.times))
		for i, t := range c.times {
			s[i] = fmt.Sprintf("%.2f", t)
		}
		return strings.Join(s, " ")
	}
	seen := map[string]bool{}
	for _, c := range cases {
		if seen[c.name()] {
			continue
		}
		seen[c.name()] = true
		x, k := find(c.name(), "xdpnet"), find(c.name(), "kernel")
		label := map[string]string{"send": "send (server -> curl)", "recv": "recv (curl -> server)", "quiet": "download, no flood", "flood": "download, 50 000 SYN/s flood"}[c.dir]
		if c.dir == "send" || c.dir == "recv" {
			label += fmt.Sprintf(", %d%% loss", c.loss)
		}
		if x == nil || k == nil {
			continue
		}
		xm, km := median(x.times), median(k.times)
		ratio := "-"
		if len(x.times) > 0 && len(k.times) > 0 {
			ratio = fmt.Sprintf("%.2fx", xm/km)
		}
		fmt.Fprintf(&b, "| %s | %.2f | %.2f | %s | %s | %s |\n", label, xm, km, ratio, runs(x), runs(k))
	}
	for _, impl := range []string{"xdpnet", "kernel"} {
		q, fl := find("quiet", impl), find("flood", impl)
		if q != nil && fl != nil && len(q.times) > 0 && len(fl.times) > 0 {
			fmt.Fprintf(&b, "\n%s: download rate during the SYN flood %.0f%% of the rate without it (medians)", impl, 100*median(q.times)/median(fl.times))
		}
	}
	b.WriteString("\n")
	return b.String()
}
