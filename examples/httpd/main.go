// Command httpd is a net/http file server on xdpnet's own TCP/IP stack: the poller takes the interface's
// frames with AF_XDP and the stack (package stack, with stack/tcp) answers ARP, ICMP and TCP in user
// space; the kernel's TCP never sees the connections.
//
//	httpd -iface NAME=ADDR/PLEN [-gw ADDR] -root DIR [-port 80]
//
// GET serves the files under DIR (http.FileServer). PUT or POST to /upload answers with the hex SHA-256 of
// the request body, hashed as it streams in (nothing is buffered beyond the TCP receive buffer), so a client
// can check that an upload arrived intact. The stack owns ADDR: do not configure it on the interface in the
// kernel as well. It runs until SIGINT or SIGTERM, then stops accepting, lets running requests finish
// (5 s at most) and detaches from the interface. It needs root (or CAP_NET_ADMIN, CAP_BPF and CAP_NET_RAW).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/xdpnet/xdpnet/poller"
	"github.com/xdpnet/xdpnet/stack"
)

type config struct {
	iface string
	addr  netip.Prefix
	gw    netip.Addr
	root  string
	port  int
}

func main() {
	var cfg config
	var ifaceFlag, gwFlag string
	flag.StringVar(&ifaceFlag, "iface", "", "interface and the stack's address on it, NAME=ADDR/PLEN (e.g. eth0=198.18.0.2/24)")
	flag.StringVar(&gwFlag, "gw", "", "default gateway (optional)")
	flag.StringVar(&cfg.root, "root", "", "directory to serve")
	flag.IntVar(&cfg.port, "port", 80, "TCP port")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: httpd -iface NAME=ADDR/PLEN [-gw ADDR] -root DIR [-port 80]\n\n"+
			"Serves DIR over HTTP on xdpnet's user-space TCP/IP stack; PUT or POST /upload answers the body's SHA-256.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	var err error
	if cfg.iface, cfg.addr, err = parseIface(ifaceFlag); err == nil && gwFlag != "" {
		cfg.gw, err = netip.ParseAddr(gwFlag)
	}
	if err == nil && cfg.root == "" {
		err = errors.New("-root is required")
	}
	if err == nil && (cfg.port <= 0 || cfg.port > 65535) {
		err = fmt.Errorf("-port %d out of range", cfg.port)
	}
	if err != nil || flag.NArg() > 0 {
		if err != nil {
			fmt.Fprintln(os.Stderr, "httpd:", err)
		}
		flag.Usage()
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, cfg, nil, nil); err != nil {
		slog.Error("httpd", "err", err)
		os.Exit(1)
	}
}

// parseIface reads NAME=ADDR/PLEN (stack.ParseInterface), where the address is required.
func parseIface(s string) (string, netip.Prefix, error) {
	i, err := stack.ParseInterface(s)
	if err == nil && len(i.Addrs) == 0 {
		err = fmt.Errorf("%q: the stack needs its address: want NAME=ADDR/PLEN, e.g. eth0=198.18.0.2/24", s)
	}
	if err != nil {
		return "", netip.Prefix{}, fmt.Errorf("-iface %w", err)
	}
	return i.Name, i.Addrs[0], nil
}

// newStack is the stack of one interface with an optional default route.
func newStack(cfg config) (*stack.Stack, error) {
	sc := stack.Config{Interfaces: []stack.Interface{{Name: cfg.iface, Addrs: []netip.Prefix{cfg.addr}}}}
	if cfg.gw.IsValid() {
		sc.Routes = []stack.Route{{Prefix: netip.MustParsePrefix("0.0.0.0/0"), NextHop: cfg.gw}}
	}
	return stack.New(sc)
}

// handler serves root and /upload.
func handler(root string) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", http.FileServer(http.Dir(root)))
	mux.HandleFunc("/upload", upload)
	return mux
}

// upload answers the SHA-256 of the body, hashed while it streams.
func upload(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPut && r.Method != http.MethodPost {
		w.Header().Set("Allow", "PUT, POST")
		http.Error(w, "use PUT or POST", http.StatusMethodNotAllowed)
		return
	}
	h := sha256.New()
	n, err := io.Copy(h, r.Body)
	if err != nil {
		http.Error(w, "reading the body: "+err.Error(), http.StatusBadRequest)
		return
	}
	slog.Debug("upload", "bytes", n, "from", r.RemoteAddr)
	fmt.Fprintf(w, "%s\n", hex.EncodeToString(h.Sum(nil)))
}

// run serves until ctx ends. open, when set, runs poller creation (tests switch into a namespace there);
// started, when set, is told the stack once the listener is up.
func run(ctx context.Context, cfg config, open func(func() error) error, started func(*stack.Stack)) error {
	s, err := newStack(cfg)
	if err != nil {
		return err
	}
	if open == nil {
		open = func(f func() error) error { return f() }
	}
	var p *poller.Poller
	if err := open(func() (err error) {
		p, err = poller.New(poller.Config{Interfaces: []string{cfg.iface}, NewHandler: s.NewHandler})
		return err
	}); err != nil {
		return err
	}
	defer p.Close()
	pctx, pstop := context.WithCancel(context.Background())
	pdone := make(chan error, 1)
	go func() { pdone <- p.Run(pctx) }()

	ln, err := s.ListenTCP(netip.AddrPortFrom(cfg.addr.Addr(), uint16(cfg.port)))
	if err != nil {
		pstop()
		<-pdone
		return err
	}
	srv := &http.Server{Handler: handler(cfg.root), ReadHeaderTimeout: 10 * time.Second}
	sdone := make(chan error, 1)
	go func() { sdone <- srv.Serve(ln) }()
	slog.Info("httpd serving", "addr", ln.Addr(), "root", cfg.root, "iface", cfg.iface)
	if started != nil {
		started(s)
	}
	select {
	case <-ctx.Done():
	case err = <-sdone:
	case err = <-pdone:
		pdone <- err
	}
	// Shutdown needs the poller running: the FINs and the last data still have to leave.
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	serr := srv.Shutdown(sctx)
	cancel()
	pstop()
	perr := <-pdone
	ps := p.Stats().Ports[0]
	k := ps.Kernel
	slog.Info("httpd stopped", "tcp", s.TCPStats(), "rx_packets", ps.RxPackets,
		"kernel_rx_drop", k.Rx_dropped+k.Rx_ring_full+k.Rx_fill_ring_empty_descs)
	// Every frame back where it belongs: what a flood or a bug would leak shows here.
	if err := p.CheckFrames(); err != nil {
		slog.Error("frame accounting: FAILED", "err", err)
		return fmt.Errorf("frame accounting: %w", err)
	}
	slog.Info("frame accounting: OK")
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	if perr != nil && !errors.Is(perr, context.Canceled) {
		return perr
	}
	if serr != nil {
		return fmt.Errorf("shutdown: %w", serr)
	}
	return nil
}
