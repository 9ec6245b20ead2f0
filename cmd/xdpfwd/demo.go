package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync/atomic"
	"time"

	"github.com/xdpnet/xdpnet/internal/netlab"
	"github.com/xdpnet/xdpnet/internal/pktgen"
	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/poller"
	"github.com/xdpnet/xdpnet/proto"
)

type demoOptions struct {
	duration time.Duration
	rate     int
	size     int
	gen      string
}

func newDemoFlags(out io.Writer) (*flag.FlagSet, *demoOptions) {
	o := &demoOptions{}
	fs := flag.NewFlagSet("xdpfwd demo", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.DurationVar(&o.duration, "duration", 10*time.Second, "how long the UDP flood runs")
	fs.IntVar(&o.rate, "rate", 0, "UDP flood rate in packets per second; 0 = as fast as the generator's socket can send")
	fs.IntVar(&o.size, "size", 18, "UDP payload `BYTES` of the flood, 18..1472 (18 makes 64-byte Ethernet frames)")
	fs.StringVar(&o.gen, "gen", "pktgen", "flood generator: pktgen (AF_XDP generator and sink on gen's and sink's eth0,\n"+
		"internal/pktgen) or socket (a Linux UDP socket in gen, counted by a UDP socket in sink)")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `Usage: xdpfwd demo [--duration 10s] [--rate PPS]

Builds three network namespaces joined by veth pairs (at their default offloads), both families on each,

  gen 198.18.0.2/24      (eth0) --- (r0) 198.18.0.1/24      router 198.19.0.1/24      (r1) --- (eth0) 198.19.0.2/24      sink
      2001:2::2/64                         2001:2::1/64             2001:2:0:1::1/64                   2001:2:0:1::2/64

with the router's kernel forwarding off (net.ipv4.ip_forward=0, net.ipv6.conf.all.forwarding=0), starts
"xdpfwd run" in the router, then for IPv4 and for IPv6 runs ping through the router and to it, traceroute
to the sink (the router is hop 1), a UDP transfer and a TCP transfer between Linux sockets in gen and sink
(checked byte for byte); then a UDP flood from gen to sink over IPv4, printing packets per second and drops
by reason every second. At the end it stops xdpfwd (SIGTERM), prints its summary with what it forwarded
per family, and removes the namespaces, also on Ctrl-C or failure.

Needs root (CAP_SYS_ADMIN for namespaces, plus what run needs). Takes about duration + 15 seconds.

Flags:
`)
		fs.PrintDefaults()
	}
	return fs, o
}

func cmdDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := newDemoFlags(io.Discard)
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (see xdpfwd help demo)", fs.Arg(0))
	}
	if o.duration <= 0 || o.rate < 0 || o.size < 18 || o.size > 1472 {
		return usagef("want --duration > 0, --rate >= 0 and 18 <= --size <= 1472")
	}
	if o.gen != "pktgen" && o.gen != "socket" {
		return usagef("--gen %q: want pktgen or socket", o.gen)
	}
	if m := netlab.MissingPrivileges(); m != "" {
		return fmt.Errorf("the demo builds network namespaces and attaches XDP: %s", m)
	}
	exe, err := os.Executable()
	if err != nil {
		return fmt.Errorf("find my own binary to run in the router namespace: %w", err)
	}
	d := &demo{out: stdout, o: o, log: slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	return d.run(ctx, exe)
}

type demo struct {
	log *slog.Logger
	out io.Writer
	o   *demoOptions
	l   *routerLab
}

func (d *demo) printf(format string, args ...any) { fmt.Fprintf(d.out, format, args...) }

func (d *demo) run(ctx context.Context, exe string) (err error) {
	// A kernel booted with ipv6.disable=1 has no /proc/sys/net/ipv6: the demo then shows IPv4 alone, and says so.
	_, err = os.Stat("/proc/sys/net/ipv6")
	v6 := err == nil
	d.printf("== building the lab: gen %s -- %s router %s -- sink %s (router ip_forward=0)\n", genAddr, r0Addr, r1Addr, sinkAddr)
	if v6 {
		d.printf("                     gen %s -- %s router %s -- sink %s (router ipv6 forwarding=0)\n", gen6Addr, r06Addr, r16Addr, sink6Addr)
	} else {
		d.printf("== this kernel has no IPv6 (/proc/sys/net/ipv6 is missing; booted with ipv6.disable=1?): IPv4 only\n")
	}
	l, err := newRouterLab("demo", labOptions{IPv6: v6})
	if err != nil {
		return fmt.Errorf("build lab: %w", err)
	}
	d.l = l
	defer func() {
		d.printf("== removing the lab (%s-*)\n", l.lab.Prefix())
		if cerr := l.Close(); cerr != nil && err == nil {
			err = fmt.Errorf("remove lab: %w", cerr)
		}
	}()
	r0, r1, sysctls := r0Addr+"/24", r1Addr+"/24", []string{"net.ipv4.ip_forward"}
	if v6 {
		r0, r1, sysctls = r0+","+r06Addr+"/64", r1+","+r16Addr+"/64", append(sysctls, "net.ipv6.conf.all.forwarding")
	}
	args := []string{"--iface", "r0=" + r0, "--iface", "r1=" + r1, "--stats", "1s", "--log-format", "json"}
	d.printf("== starting in the router namespace: xdpfwd run %s\n", strings.Join(args, " "))
	if err := l.startRouter(exe, args...); err != nil {
		return err
	}
	for _, k := range sysctls {
		if v, err := l.router.ReadSysctl(k); err != nil || v != "0" {
			return fmt.Errorf("router namespace has %s=%s (%v); the demo wants 0 so only xdpfwd forwards", k, v, err)
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}

	d.printf("== IPv4\n")
	d.step(ctx, "ping through the router (gen -> sink)", l.gen, "ping", "-c", "3", "-i", "0.2", "-W", "2", sinkAddr)
	d.step(ctx, "ping the router itself (gen -> r0)", l.gen, "ping", "-c", "3", "-i", "0.2", "-W", "2", r0Addr)
	d.traceroute(ctx, sinkAddr)
	if err := d.transfers(ctx, sinkAddr); err != nil {
		return err
	}

	if v6 {
		d.printf("== IPv6 (the router's addresses answer once its duplicate address detection is over)\n")
		if err := l.waitIPv6(ctx, 10*time.Second); err != nil {
			return err
		}
		d.step(ctx, "ping -6 through the router (gen -> sink)", l.gen, "ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", sink6Addr)
		d.step(ctx, "ping -6 the router itself (gen -> r0)", l.gen, "ping", "-6", "-c", "3", "-i", "0.2", "-W", "2", r06Addr)
		d.traceroute(ctx, sink6Addr)
		if err := d.transfers(ctx, sink6Addr); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	var sent, recv uint64
	var ferr error
	if d.o.gen == "pktgen" {
		sent, recv, ferr = d.floodPktgen(ctx)
	} else {
		sent, recv, ferr = d.floodSocket(ctx)
	}
	if ferr != nil {
		return ferr
	}

	d.printf("== stopping xdpfwd (SIGTERM)\n")
	stopErr := l.xdpfwd.Stop(5 * time.Second)
	waitErr := l.xdpfwd.Wait()
	out := l.xdpfwd.Output()
	if i := bytes.Index(out, []byte("xdpfwd summary")); i >= 0 {
		for _, line := range strings.Split(string(out[i:]), "\n") {
			if line != "" && !strings.HasPrefix(line, "{") {
				d.printf("   %s\n", line)
			}
		}
	}
	loss := 0.0
	if sent > 0 {
		loss = 100 * float64(sent-min(recv, sent)) / float64(sent)
	}
	d.printf("== flood: sent %d datagrams in %v, sink received %d (%.1f%% lost on the way)\n", sent, d.o.duration, recv, loss)
	sum := string(out)
	fwd, fwd6 := counter(sum, "stack", "forwarded"), counter(sum, "stack", "forwarded6")
	d.printf("== xdpfwd forwarded %d IPv4 and %d IPv6 packets\n", fwd-min(fwd6, fwd), fwd6)
	if stopErr != nil && !errors.Is(stopErr, netlab.ErrProcExited) {
		return stopErr
	}
	if waitErr != nil {
		return fmt.Errorf("xdpfwd did not exit cleanly: %v", waitErr)
	}
	if !bytes.Contains(out, []byte("frame accounting: OK")) {
		return errors.New("xdpfwd's frame accounting check did not pass (see its summary above)")
	}
	if recv == 0 {
		return errors.New("no flood datagram reached the sink")
	}
	d.printf("== done\n")
	return nil
}

// step runs a command in a host and prints its output indented.
func (d *demo) step(ctx context.Context, title string, h *netlab.Host, name string, args ...string) {
	d.printf("== %s: %s %s\n", title, name, strings.Join(args, " "))
	cctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	out, err := h.Command(cctx, name, args...).CombinedOutput()
	for _, line := range strings.Split(strings.TrimRight(string(out), "\n"), "\n") {
		d.printf("   %s\n", line)
	}
	if err != nil {
		d.printf("   (%s: %v)\n", name, err)
	}
}

// traceroute shows the router as hop 1 on the way to dst (traceroute, or tracepath where it is missing).
func (d *demo) traceroute(ctx context.Context, dst string) {
	fam := "-4"
	if netip.MustParseAddr(dst).Is6() {
		fam = "-6"
	}
	if _, err := exec.LookPath("traceroute"); err == nil {
		d.step(ctx, "traceroute: the router is hop 1", d.l.gen, "traceroute", fam, "-n", "-q", "1", "-w", "1", dst)
	} else {
		d.step(ctx, "tracepath: the router is hop 1", d.l.gen, "tracepath", fam, "-n", dst)
	}
}

// Sizes of the transfers in the demo's per-family part.
const (
	demoUDPCount = 5000
	demoUDPSize  = 1200
	demoTCPBytes = 64 << 20
)

// transfers sends demoUDPCount datagrams and then demoTCPBytes over one TCP connection from gen to dst on
// the sink, between Linux sockets at their defaults (the veths' offloads on: partial checksums, TSO
// segments), and checks what arrived byte for byte. A lost datagram is reported, not an error (UDP may
// lose); no datagram at all, a changed one or a TCP stream that differs is.
func (d *demo) transfers(ctx context.Context, dst string) error {
	network, fam := "udp4", "IPv4"
	if netip.MustParseAddr(dst).Is6() {
		network, fam = "udp6", "IPv6"
	}
	const udpPort, tcpPort = 5001, 5002
	var sinkConn, genConn *net.UDPConn
	if err := d.l.sink.Do(func() (err error) {
		if sinkConn, err = net.ListenUDP(network, &net.UDPAddr{IP: net.ParseIP(dst), Port: udpPort}); err == nil {
			sinkConn.SetReadBuffer(8 << 20)
		}
		return err
	}); err != nil {
		return fmt.Errorf("sink UDP socket: %w", err)
	}
	defer sinkConn.Close()
	if err := d.l.gen.Do(func() (err error) {
		genConn, err = net.DialUDP(network, nil, &net.UDPAddr{IP: net.ParseIP(dst), Port: udpPort})
		return err
	}); err != nil {
		return fmt.Errorf("generator UDP socket: %w", err)
	}
	defer genConn.Close()
	d.printf("== UDP over %s, gen -> %s: %d datagrams of %d bytes\n", fam, net.JoinHostPort(dst, fmt.Sprint(udpPort)), demoUDPCount, demoUDPSize)
	got, bad := make([]bool, demoUDPCount), 0
	recvDone := make(chan struct{})
	go func() {
		defer close(recvDone)
		buf := make([]byte, 2048)
		for {
			sinkConn.SetReadDeadline(time.Now().Add(time.Second))
			n, err := sinkConn.Read(buf)
			if err != nil {
				return
			}
			i := int(binary.BigEndian.Uint32(buf))
			if n != demoUDPSize || i >= demoUDPCount || !bytes.Equal(buf[:n], demoDatagram(i)) {
				bad++
				continue
			}
			got[i] = true
		}
	}()
	start := time.Now()
	for i := range demoUDPCount {
		// 50 000 datagrams a second: a pace a socket keeps without its own queue overflowing.
		if wait := time.Until(start.Add(time.Duration(i) * 20 * time.Microsecond)); wait > 0 {
			time.Sleep(wait)
		}
		if _, err := genConn.Write(demoDatagram(i)); err != nil {
			return fmt.Errorf("UDP over %s: send: %w", fam, err)
		}
	}
	<-recvDone
	n := 0
	for _, ok := range got {
		if ok {
			n++
		}
	}
	d.printf("   sent %d, sink received %d intact (%d lost, %d changed)\n", demoUDPCount, n, demoUDPCount-n, bad)
	if n == 0 || bad > 0 {
		return fmt.Errorf("UDP over %s through the router: %d of %d datagrams arrived intact, %d changed", fam, n, demoUDPCount, bad)
	}

	tcpAddr := net.JoinHostPort(dst, fmt.Sprint(tcpPort))
	var ln net.Listener
	if err := d.l.sink.Do(func() (err error) {
		ln, err = net.Listen(strings.Replace(network, "udp", "tcp", 1), tcpAddr)
		return err
	}); err != nil {
		return fmt.Errorf("sink TCP socket: %w", err)
	}
	defer ln.Close()
	d.printf("== TCP over %s, gen -> %s: %d MiB\n", fam, tcpAddr, demoTCPBytes>>20)
	type result struct {
		n   int64
		sum [sha256.Size]byte
		err error
	}
	res := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			res <- result{err: err}
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(60 * time.Second))
		h := sha256.New()
		n, err := io.Copy(h, c)
		res <- result{n: n, sum: [sha256.Size]byte(h.Sum(nil)), err: err}
	}()
	var c net.Conn
	if err := d.l.gen.Do(func() (err error) {
		c, err = net.DialTimeout("tcp", tcpAddr, 5*time.Second)
		return err
	}); err != nil {
		return fmt.Errorf("TCP over %s: connect: %w", fam, err)
	}
	c.SetDeadline(time.Now().Add(60 * time.Second))
	h := sha256.New()
	start = time.Now()
	chunk := make([]byte, 1<<20)
	var werr error
	for i := 0; i < demoTCPBytes/len(chunk) && werr == nil; i++ {
		for j := range chunk {
			chunk[j] = byte(i*131 + j*7 + j>>8)
		}
		h.Write(chunk)
		_, werr = c.Write(chunk)
	}
	c.Close()
	r := <-res
	took := time.Since(start)
	if werr == nil {
		werr = r.err
	}
	if werr != nil || r.n != demoTCPBytes || r.sum != [sha256.Size]byte(h.Sum(nil)) {
		return fmt.Errorf("TCP over %s through the router: %d of %d bytes arrived (same bytes: %v; %v)", fam, r.n, demoTCPBytes,
			r.sum == [sha256.Size]byte(h.Sum(nil)), werr)
	}
	d.printf("   %d MiB arrived intact (SHA-256 equal) in %v, %.0f Mbit/s\n", r.n>>20, took.Round(time.Millisecond),
		float64(r.n)*8/took.Seconds()/1e6)
	return nil
}

// demoDatagram is datagram i of the UDP transfer: its number, then bytes that depend on it.
func demoDatagram(i int) []byte {
	b := make([]byte, demoUDPSize)
	binary.BigEndian.PutUint32(b, uint32(i))
	for j := 4; j < len(b); j++ {
		b[j] = byte(i*31 + j)
	}
	return b
}

// floodSocket sends UDP from a Linux socket in gen to one in sink for the duration.
func (d *demo) floodSocket(ctx context.Context) (sent, recv uint64, err error) {
	const port = 9
	var sinkConn, genConn *net.UDPConn
	if err := d.l.sink.Do(func() error {
		c, err := net.ListenUDP("udp4", &net.UDPAddr{IP: net.ParseIP(sinkAddr), Port: port})
		if err == nil {
			c.SetReadBuffer(8 << 20)
		}
		sinkConn = c
		return err
	}); err != nil {
		return 0, 0, fmt.Errorf("sink socket: %w", err)
	}
	defer sinkConn.Close()
	if err := d.l.gen.Do(func() error {
		c, err := net.DialUDP("udp4", nil, &net.UDPAddr{IP: net.ParseIP(sinkAddr), Port: port})
		genConn = c
		return err
	}); err != nil {
		return 0, 0, fmt.Errorf("generator socket: %w", err)
	}
	defer genConn.Close()

	var nSent, nRecv atomic.Uint64
	go func() {
		buf := make([]byte, 2048)
		for {
			if _, err := sinkConn.Read(buf); err != nil {
				return
			}
			nRecv.Add(1)
		}
	}()
	fctx, cancel := context.WithTimeout(ctx, d.o.duration)
	defer cancel()
	sendDone := make(chan struct{})
	go func() {
		defer close(sendDone)
		payload := make([]byte, d.o.size)
		copy(payload, "xdpfwd demo flood")
		start := time.Now()
		for fctx.Err() == nil {
			if d.o.rate > 0 {
				due := uint64(time.Since(start).Seconds() * float64(d.o.rate))
				if nSent.Load() >= due {
					time.Sleep(time.Millisecond)
					continue
				}
			}
			if _, err := genConn.Write(payload); err == nil {
				nSent.Add(1)
			}
		}
	}()
	d.printf("== UDP flood from a Linux socket, gen -> sink:%d, %d-byte payload, %s, for %v\n", port, d.o.size, d.rateText(), d.o.duration)
	err = d.live(ctx, fctx, sendDone, nSent.Load, nRecv.Load)
	return nSent.Load(), nRecv.Load(), err
}

func (d *demo) rateText() string {
	if d.o.rate > 0 {
		return fmt.Sprintf("%d pps", d.o.rate)
	}
	return "as fast as it can"
}

// floodPktgen runs the AF_XDP generator on gen's eth0 and the AF_XDP sink on sink's eth0 (internal/pktgen on
// the poller, set up inside each namespace) for the duration. Their XDP programs take every frame of those
// interfaces, so this runs after the ping and traceroute steps, and detaches when done.
func (d *demo) floodPktgen(ctx context.Context) (sent, recv uint64, err error) {
	src := netip.MustParseAddrPort(genAddr + ":1024")
	dst := netip.MustParseAddrPort(sinkAddr + ":9")
	gen, err := pktgen.NewGenerator(pktgen.Config{
		SrcMAC: proto.MAC(d.l.genLink.A.HWAddr()), DstMAC: proto.MAC(d.l.genLink.B.HWAddr()),
		Src: src, Dst: dst, Flows: 16, FrameSize: max(pktgen.MinFrameSize, d.o.size+46), Rate: d.o.rate,
	})
	if err != nil {
		return 0, 0, err
	}
	sink := pktgen.NewSink()
	start := func(h *netlab.Host, nh pipeline.NewHandler) (*poller.Poller, error) {
		pc := poller.Config{Interfaces: []string{"eth0"}, NewHandler: nh, Logger: d.log}
		pktgen.SizeFor(&pc)
		var p *poller.Poller
		err := h.Do(func() (err error) {
			p, err = poller.New(pc)
			return err
		})
		return p, err
	}
	sp, err := start(d.l.sink, sink.NewHandler)
	if err != nil {
		return 0, 0, fmt.Errorf("pktgen sink in %s: %w", d.l.sink.Name(), err)
	}
	defer sp.Close()
	gp, err := start(d.l.gen, gen.NewHandler)
	if err != nil {
		return 0, 0, fmt.Errorf("pktgen generator in %s: %w", d.l.gen.Name(), err)
	}
	defer gp.Close()

	fctx, cancel := context.WithTimeout(ctx, d.o.duration)
	defer cancel()
	sctx, stopSink := context.WithCancel(context.Background())
	sinkDone, genDone := make(chan error, 1), make(chan struct{})
	go func() { sinkDone <- sp.Run(sctx) }()
	var genErr error
	go func() { genErr = gp.Run(fctx); close(genDone) }()
	d.printf("== UDP flood from the AF_XDP generator (internal/pktgen), gen -> sink:%d, %d-byte frames, 16 flows, %s, for %v\n",
		dst.Port(), max(pktgen.MinFrameSize, d.o.size+46), d.rateText(), d.o.duration)
	received := func() uint64 { n, _ := sink.Received(); return n }
	err = d.live(ctx, fctx, genDone, gen.Sent, received)
	stopSink()
	if serr := <-sinkDone; serr != nil && err == nil {
		err = fmt.Errorf("pktgen sink: %w", serr)
	}
	if genErr != nil && err == nil {
		err = fmt.Errorf("pktgen generator: %w", genErr)
	}
	return gen.Sent(), received(), err
}

// live prints a line a second until fctx ends and sendDone closes: what gen sent, what the router's ports
// moved (from xdpfwd's json stats lines), what the sink got, and the router's drops.
func (d *demo) live(ctx, fctx context.Context, sendDone <-chan struct{}, sentFn, recvFn func() uint64) error {
	d.printf("   %4s %10s %12s %12s %12s %12s %10s  %s\n", "t", "gen_pps", "r0_rx_pps", "r1_tx_pps", "r0_tx_pps", "r1_rx_pps", "sink_pps", "router drops/s")
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	var lastSent, lastRecv uint64
	d.l.newOutput()
	for t := 1; ; t++ {
		select {
		case <-fctx.Done():
			<-sendDone
			time.Sleep(300 * time.Millisecond) // the last packets in flight
			return ctx.Err()
		case <-tick.C:
		}
		s, r := sentFn(), recvFn()
		st := lastStats(d.l.newOutput())
		d.printf("   %3ds %10d %12s %12s %12s %12s %10d  %s\n", t, s-lastSent, st["r0_rx_pps"], st["r1_tx_pps"], st["r0_tx_pps"], st["r1_rx_pps"], r-lastRecv, st["drops"])
		lastSent, lastRecv = s, r
	}
}

// lastStats returns the fields of the last "stats" json line in out, as strings ("-" for missing ones).
func lastStats(out []byte) map[string]string {
	m := map[string]string{}
	for _, line := range bytes.Split(out, []byte("\n")) {
		if !bytes.HasPrefix(line, []byte("{")) {
			continue
		}
		var rec map[string]any
		if json.Unmarshal(line, &rec) != nil || rec["msg"] != "stats" {
			continue
		}
		clear(m)
		for k, v := range rec {
			m[k] = fmt.Sprint(v)
		}
	}
	for _, k := range []string{"r0_rx_pps", "r1_tx_pps", "r0_tx_pps", "r1_rx_pps", "drops"} {
		if _, ok := m[k]; !ok {
			m[k] = "-"
		}
	}
	return m
}
