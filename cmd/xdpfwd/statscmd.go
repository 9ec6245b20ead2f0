package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"golang.org/x/sys/unix"
)

// `xdpfwd stats` is ethtool -S plus /proc/net/softnet_stat for xdpfwd: it reads the metrics endpoint of a
// running router twice per interval and prints rates. It reads the text exposition format through
// prometheus/common/expfmt, the parser Prometheus itself uses, so it follows whatever the collector emits.

const statsUsage = `Usage: xdpfwd stats [--metrics ADDR] [--interval 1s] [--count N]

Reads the metrics of a running "xdpfwd run --metrics ADDR" and prints, every interval: per port the rx/tx
packets per second and totals, TX ring full and kernel (XDP) drops; drops per second by reason; per queue
the poller busy ratio (busy loops / all loops in the interval, like the share of softnet time with work)
and poll(2) sleeps per second. Stops after --count tables, or at Ctrl-C.

Flags:
`

type statsOptions struct {
	addr     string
	interval time.Duration
	count    int
}

func cmdStats(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	o := statsOptions{}
	fs := flag.NewFlagSet("xdpfwd stats", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.addr, "metrics", defaultMetricsAddr, "`ADDR` (HOST:PORT or an http:// URL) of xdpfwd run's --metrics endpoint")
	fs.DurationVar(&o.interval, "interval", time.Second, "time between two tables")
	fs.IntVar(&o.count, "count", 0, "stop after `N` tables; 0: until Ctrl-C")
	fs.Usage = func() { fmt.Fprint(fs.Output(), statsUsage); fs.PrintDefaults() }
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usagef("unexpected argument %q (see xdpfwd help stats)", fs.Arg(0))
	}
	if o.interval <= 0 {
		return usagef("--interval %v: want a positive interval such as 1s", o.interval)
	}
	if o.count < 0 {
		return usagef("--count %d: want 0 (forever) or more", o.count)
	}
	url := o.addr
	if !strings.Contains(url, "://") {
		url = "http://" + url + "/metrics"
	}
	client := &http.Client{Timeout: 5 * time.Second}
	prev, err := scrape(ctx, client, url)
	if err != nil {
		return err
	}
	clear := isTerminal(stdout)
	t := time.NewTicker(o.interval)
	defer t.Stop()
	for n := 0; o.count == 0 || n < o.count; n++ {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		cur, err := scrape(ctx, client, url)
		if err != nil {
			return err
		}
		if clear {
			fmt.Fprint(stdout, "\033[H\033[2J")
		}
		writeStatsTable(stdout, o.addr, prev, cur)
		prev = cur
	}
	return nil
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	_, err := unix.IoctlGetTermios(int(f.Fd()), unix.TCGETS)
	return err == nil
}

// statsSample is one scrape, summed the way the table shows it.
type statsSample struct {
	at    time.Time
	ports map[string]*portSample
	order []string // ports in first-seen order (the collector emits them in --iface order)
	drops map[string]float64
	// per queue
	busy, idle, sleeps map[string]float64
	forwarded          float64
	forwardedByFamily  map[string]float64 // ipv4, ipv6
	neighbours         float64
	routes             float64
}

type portSample struct {
	rxPackets, rxBytes, txPackets, txBytes, txRingFull, kernelDrops float64
}

func scrape(ctx context.Context, c *http.Client, url string) (*statsSample, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		return nil, usagef("--metrics: %v", err)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, fmt.Errorf("read metrics: %w (is \"xdpfwd run --metrics ADDR\" running, and is --metrics the same ADDR?)", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("read metrics from %s: %s", url, resp.Status)
	}
	return parseMetrics(resp.Body, time.Now())
}

// parseMetrics reads the text exposition format into a sample.
func parseMetrics(r io.Reader, at time.Time) (*statsSample, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(r)
	if err != nil {
		return nil, fmt.Errorf("parse metrics: %w", err)
	}
	s := &statsSample{at: at, ports: map[string]*portSample{}, drops: map[string]float64{},
		busy: map[string]float64{}, idle: map[string]float64{}, sleeps: map[string]float64{}, forwardedByFamily: map[string]float64{}}
	if _, ok := fams["xdpnet_rx_packets_total"]; !ok {
		return nil, errors.New("parse metrics: no xdpnet_rx_packets_total (is this an xdpfwd metrics endpoint?)")
	}
	port := func(m *dto.Metric) *portSample {
		name := label(m, "port")
		ps := s.ports[name]
		if ps == nil {
			ps = &portSample{}
			s.ports[name] = ps
			s.order = append(s.order, name)
		}
		return ps
	}
	each := func(name string, fn func(m *dto.Metric, v float64)) {
		if f := fams[name]; f != nil {
			for _, m := range f.Metric {
				fn(m, value(m))
			}
		}
	}
	each("xdpnet_rx_packets_total", func(m *dto.Metric, v float64) { port(m).rxPackets += v })
	each("xdpnet_rx_bytes_total", func(m *dto.Metric, v float64) { port(m).rxBytes += v })
	each("xdpnet_tx_packets_total", func(m *dto.Metric, v float64) { port(m).txPackets += v })
	each("xdpnet_tx_bytes_total", func(m *dto.Metric, v float64) { port(m).txBytes += v })
	each("xdpnet_tx_ring_full_total", func(m *dto.Metric, v float64) { port(m).txRingFull += v })
	for _, k := range []string{"xdpnet_xdp_rx_dropped_total", "xdpnet_xdp_rx_ring_full_total", "xdpnet_xdp_rx_fill_ring_empty_descs_total"} {
		each(k, func(m *dto.Metric, v float64) { port(m).kernelDrops += v })
	}
	each("xdpnet_drops_total", func(m *dto.Metric, v float64) { s.drops[label(m, "reason")] += v })
	each("xdpnet_poller_loops_total", func(m *dto.Metric, v float64) {
		if label(m, "kind") == "busy" {
			s.busy[label(m, "queue")] += v
		} else {
			s.idle[label(m, "queue")] += v
		}
	})
	each("xdpnet_poller_sleeps_total", func(m *dto.Metric, v float64) { s.sleeps[label(m, "queue")] += v })
	each("xdpnet_stack_forwarded_total", func(m *dto.Metric, v float64) { s.forwarded += v })
	each("xdpnet_ip_forwarded_total", func(m *dto.Metric, v float64) { s.forwardedByFamily[label(m, "family")] += v })
	each("xdpnet_neighbours", func(m *dto.Metric, v float64) { s.neighbours += v })
	each("xdpnet_routes", func(m *dto.Metric, v float64) { s.routes += v })
	return s, nil
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func value(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return m.Counter.GetValue()
	case m.Gauge != nil:
		return m.Gauge.GetValue()
	case m.Untyped != nil:
		return m.Untyped.GetValue()
	}
	return 0
}

// writeStatsTable prints the rates between two samples and the totals of the later one.
func writeStatsTable(w io.Writer, addr string, prev, cur *statsSample) {
	sec := cur.at.Sub(prev.at).Seconds()
	if sec <= 0 {
		sec = 1
	}
	rate := func(a, b float64) float64 {
		if b < a { // the router restarted: counters began again
			return b / sec
		}
		return (b - a) / sec
	}
	fmt.Fprintf(w, "xdpfwd stats from %s at %s (interval %.2fs)\n", addr, cur.at.Format("15:04:05"), sec)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "port\trx_pps\ttx_pps\trx_Mbps\ttx_Mbps\trx_packets\ttx_packets\ttx_ring_full\tkernel_drops\t")
	for _, name := range cur.order {
		c, p := cur.ports[name], prev.ports[name]
		if p == nil {
			p = &portSample{}
		}
		fmt.Fprintf(tw, "%s\t%.0f\t%.0f\t%.2f\t%.2f\t%.0f\t%.0f\t%.0f\t%.0f\t\n", name,
			rate(p.rxPackets, c.rxPackets), rate(p.txPackets, c.txPackets),
			rate(p.rxBytes, c.rxBytes)*8/1e6, rate(p.txBytes, c.txBytes)*8/1e6,
			c.rxPackets, c.txPackets, c.txRingFull, c.kernelDrops)
	}
	tw.Flush()
	var drops []string
	for reason, v := range cur.drops {
		if r := rate(prev.drops[reason], v); r > 0 {
			drops = append(drops, fmt.Sprintf("%s=%.0f", reason, r))
		}
	}
	sort.Strings(drops)
	if len(drops) == 0 {
		drops = []string{"none"}
	}
	fmt.Fprintf(w, "drops/s: %s\n", strings.Join(drops, " "))
	var queues []string
	for q := range cur.busy {
		queues = append(queues, q)
	}
	sort.Strings(queues)
	tw = tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "queue\tbusy_ratio\tloops/s\tsleeps/s\t")
	for _, q := range queues {
		db, di := rate(prev.busy[q], cur.busy[q]), rate(prev.idle[q], cur.idle[q])
		ratio := 0.0
		if db+di > 0 {
			ratio = db / (db + di)
		}
		fmt.Fprintf(tw, "%s\t%.3f\t%.0f\t%.0f\t\n", q, ratio, db+di, rate(prev.sleeps[q], cur.sleeps[q]))
	}
	tw.Flush()
	fmt.Fprintf(w, "forwarded/s: %.0f (ipv4 %.0f, ipv6 %.0f)   neighbours: %.0f   routes: %.0f\n\n", rate(prev.forwarded, cur.forwarded),
		rate(prev.forwardedByFamily["ipv4"], cur.forwardedByFamily["ipv4"]), rate(prev.forwardedByFamily["ipv6"], cur.forwardedByFamily["ipv6"]),
		cur.neighbours, cur.routes)
}
