// Command httpget fetches one URL over xdpnet's own TCP/IP stack (an http.Transport whose DialContext is
// Stack.DialTCP) and prints the status, the body length and its SHA-256.
//
//	httpget -iface NAME=ADDR/PLEN [-gw ADDR] URL
//
// The URL's host must be an IPv4 address (there is no DNS resolver on the stack). The stack owns ADDR: do
// not configure it on the interface in the kernel as well. It needs root (or CAP_NET_ADMIN, CAP_BPF and
// CAP_NET_RAW).
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
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
	url   string
}

// result is what httpget prints.
type result struct {
	Status string
	Length int64
	SHA256 string
}

func main() {
	var cfg config
	var ifaceFlag, gwFlag string
	flag.StringVar(&ifaceFlag, "iface", "", "interface and the stack's address on it, NAME=ADDR/PLEN (e.g. eth0=198.18.0.1/24)")
	flag.StringVar(&gwFlag, "gw", "", "default gateway (optional)")
	timeout := flag.Duration("timeout", time.Minute, "give up after this long")
	flag.Usage = func() {
		fmt.Fprintf(flag.CommandLine.Output(), "usage: httpget -iface NAME=ADDR/PLEN [-gw ADDR] URL\n\n"+
			"GETs URL over xdpnet's user-space TCP/IP stack; prints status, length and SHA-256 of the body.\n\n")
		flag.PrintDefaults()
	}
	flag.Parse()
	var err error
	if cfg.iface, cfg.addr, err = parseIface(ifaceFlag); err == nil && gwFlag != "" {
		cfg.gw, err = netip.ParseAddr(gwFlag)
	}
	if err == nil && flag.NArg() != 1 {
		err = errors.New("give exactly one URL")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "httpget:", err)
		flag.Usage()
		os.Exit(2)
	}
	cfg.url = flag.Arg(0)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	r, err := run(ctx, cfg, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "httpget:", err)
		os.Exit(1)
	}
	fmt.Printf("status: %s\nlength: %d\nsha256: %s\n", r.Status, r.Length, r.SHA256)
}

// parseIface reads NAME=ADDR/PLEN (stack.ParseInterface), where the address is required.
func parseIface(s string) (string, netip.Prefix, error) {
	i, err := stack.ParseInterface(s)
	if err == nil && len(i.Addrs) == 0 {
		err = fmt.Errorf("%q: the stack needs its address: want NAME=ADDR/PLEN, e.g. eth0=198.18.0.1/24", s)
	}
	if err != nil {
		return "", netip.Prefix{}, fmt.Errorf("-iface %w", err)
	}
	return i.Name, i.Addrs[0], nil
}

// run starts the stack and poller, GETs cfg.url and stops them. open, when set, runs poller creation
// (tests switch into a namespace there).
func run(ctx context.Context, cfg config, open func(func() error) error) (result, error) {
	sc := stack.Config{Interfaces: []stack.Interface{{Name: cfg.iface, Addrs: []netip.Prefix{cfg.addr}}}}
	if cfg.gw.IsValid() {
		sc.Routes = []stack.Route{{Prefix: netip.MustParsePrefix("0.0.0.0/0"), NextHop: cfg.gw}}
	}
	s, err := stack.New(sc)
	if err != nil {
		return result{}, err
	}
	if open == nil {
		open = func(f func() error) error { return f() }
	}
	var p *poller.Poller
	if err := open(func() (err error) {
		p, err = poller.New(poller.Config{Interfaces: []string{cfg.iface}, NewHandler: s.NewHandler})
		return err
	}); err != nil {
		return result{}, err
	}
	defer p.Close()
	pctx, pstop := context.WithCancel(context.Background())
	pdone := make(chan error, 1)
	go func() { pdone <- p.Run(pctx) }()
	defer func() { pstop(); <-pdone }()

	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			ap, err := netip.ParseAddrPort(addr)
			if err != nil {
				return nil, fmt.Errorf("dial %s: the host must be an IPv4 address (no DNS on the stack)", addr)
			}
			return s.DialTCP(ctx, ap)
		},
		DisableCompression: true, // the length and hash are of the body as served
	}
	defer tr.CloseIdleConnections()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, cfg.url, nil)
	if err != nil {
		return result{}, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return result{}, err
	}
	defer resp.Body.Close()
	h := sha256.New()
	n, err := io.Copy(h, resp.Body)
	if err != nil {
		return result{}, fmt.Errorf("reading the body after %d bytes: %w", n, err)
	}
	return result{Status: resp.Status, Length: n, SHA256: hex.EncodeToString(h.Sum(nil))}, nil
}
