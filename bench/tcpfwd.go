package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/xdpnet/xdpnet/internal/netlab"
)

// The tcpfwd and rtt scenarios: Linux endpoints in gen and sink, the DUT routing between them (same hosts and
// addresses as l3fwd),
//
//	gen (eth0 198.18.0.1) --veth-- (in0 198.18.0.2) dut (out0 198.18.1.2) --veth-- (eth0 198.18.1.1) sink
//
// with routes on the endpoints through the DUT's addresses and permanent neighbour entries for them (testpmd
// answers no ARP). DUTs: xdpnet is the router command, cmd/xdpfwd (a process, its poller on -dut-cpu, -dut-mode;
// in rtt also busy mode as xdpnet-busy); kernel is Linux forwarding with RPS on in0 and out0 to -dut-cpu; dpdk
// is testpmd's mac forward (no routing, no TTL: the raw forwarding reference), in tcpfwd only with offloads off
// because it passes the partial checksums of a veth peer at its defaults through and the sink drops those
// segments.
//
// tcpfwd runs iperf3 (client in gen, server in sink, both pinned to -gen-cpu) with 1 and 8 TCP flows, every
// veth at its defaults (TSO, GSO, GRO, checksum offload on) and again with offloads off on all four ends. Each
// trial runs iperf3 twice on one topology: unlimited, for the rate the receiver got (Gbit/s of payload), then
// limited to -tcp-rate in total, while /proc/stat gives the whole-system CPU per 1448-byte segment of payload
// delivered (an MSS at MTU 1500 with timestamps: one data packet with offloads off). rtt pings the sink from
// gen through the DUT, -pings echo requests 2 ms apart.

// tcpfwdParams are tcpfwd's configurations: flows and offloads.
var tcpfwdParams = []string{"1 flow, offloads on", "8 flows, offloads on", "1 flow, offloads off", "8 flows, offloads off"}

// mss is the TCP payload of one full segment at MTU 1500 with the timestamp option Linux uses (1500-20-20-12).
const mss = 1448

func tcpfwdFlows(param string) int {
	n, _ := strconv.Atoi(strings.Fields(param)[0])
	return max(n, 1)
}

func offloadsOff(param string) bool { return strings.HasSuffix(param, "offloads off") }

// routedTopo is newTopo with the endpoints routed through the DUT, for Linux endpoints.
func routedTopo(offOff bool) (*topo, error) {
	t, err := newTopo(1)
	if err != nil {
		return nil, err
	}
	err = func() error {
		if offOff {
			for _, e := range []netlab.Endpoint{t.genDut.A, t.genDut.B, t.dutSink.A, t.dutSink.B} {
				if err := e.Host.DisableOffloads(e.Name); err != nil {
					return err
				}
			}
		}
		if err := t.gen.AddRoute("198.18.1.0/24", "198.18.0.2"); err != nil {
			return err
		}
		if err := t.sink.AddRoute("198.18.0.0/24", "198.18.1.2"); err != nil {
			return err
		}
		if err := t.gen.Neigh("eth0", "198.18.0.2", t.genDut.B.MAC); err != nil {
			return err
		}
		return t.sink.Neigh("eth0", "198.18.1.2", t.dutSink.A.MAC)
	}()
	if err != nil {
		t.close()
		return nil, err
	}
	return t, nil
}

// startRouter starts impl as the DUT between Linux endpoints and waits until a ping crosses it.
func startRouter(t *topo, o *options, impl string) (*dut, error) {
	var d *dut
	var err error
	switch impl {
	case "xdpnet", "xdpnet-busy":
		if o.xdpfwdBin == "" {
			return nil, fmt.Errorf("%w: cmd/xdpfwd did not build", errNA)
		}
		mode := o.dutMode
		if impl == "xdpnet-busy" {
			mode = "busy"
		}
		d, err = startCommand(t, o.xdpfwdBin, "run", "--iface", "in0=198.18.0.2/24", "--iface", "out0=198.18.1.2/24",
			"--cpus", fmt.Sprint(o.dutCPU), "--mode", mode)
	case "kernel":
		if err := t.dut.Sysctl("net.ipv4.ip_forward", "1"); err != nil {
			return nil, err
		}
		for _, ifn := range []string{"in0", "out0"} {
			if err := setRPS(t.dut, ifn, o.dutCPU); err != nil {
				return nil, err
			}
		}
		d = &dut{stop: func() error { return nil }}
	case "dpdk":
		d, err = testpmd(t, o)
	default:
		return nil, fmt.Errorf("%w: no %s router", errNA, impl)
	}
	if err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		if _, perr := t.gen.Run(context.Background(), "ping", "-c", "1", "-W", "1", sinkAddr.Addr().String()); perr == nil {
			return d, nil
		}
		if time.Now().After(deadline) {
			out := ""
			if d.output != nil {
				out = ": " + lastLines(d.output(), 8)
			}
			d.stop()
			return nil, fmt.Errorf("no ping through the %s DUT within 10 s%s", impl, out)
		}
	}
}

// iperfResult is what the bench reads of iperf3's JSON report (the sums exclude the -O warmup).
type iperfResult struct {
	End struct {
		SumSent struct {
			Retransmits int `json:"retransmits"`
		} `json:"sum_sent"`
		SumReceived struct {
			Bytes         float64 `json:"bytes"`
			BitsPerSecond float64 `json:"bits_per_second"`
		} `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// iperf runs the client in gen against the server in sink: flows connections for the warmup (omitted) and
// the window, at rate bit/s in total (0: unlimited). during runs after the warmup, while the window runs.
func iperf(t *topo, o *options, flows int, rate float64, during func()) (iperfResult, error) {
	var r iperfResult
	warm, win := int(math.Ceil(o.warmup.Seconds())), int(math.Ceil(o.duration.Seconds()))
	args := []string{"-c", sinkAddr.Addr().String(), "-P", fmt.Sprint(flows), "-t", fmt.Sprint(win), "-O", fmt.Sprint(warm), "-J"}
	if o.genCPU >= 0 {
		args = append(args, "-A", fmt.Sprint(o.genCPU))
	}
	if rate > 0 {
		args = append(args, "-b", fmt.Sprint(int64(rate/float64(flows)))) // iperf3's -b is per stream
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Duration(warm+win+20)*time.Second)
	defer cancel()
	cmd := t.gen.Command(ctx, "iperf3", args...)
	var out strings.Builder
	cmd.Stdout = &out
	if err := cmd.Start(); err != nil {
		return r, err
	}
	if during != nil {
		during()
	}
	err := cmd.Wait()
	if jerr := json.Unmarshal([]byte(out.String()), &r); jerr != nil {
		return r, fmt.Errorf("iperf3 %s: %v; output: %s", strings.Join(args, " "), err, lastLines(out.String(), 6))
	}
	if r.Error != "" || err != nil {
		return r, fmt.Errorf("iperf3 %s: %v %s", strings.Join(args, " "), err, r.Error)
	}
	return r, nil
}

// tcpfwdTrial is one tcpfwd configuration on a fresh topology: the unlimited rate, then the fixed-rate CPU.
func tcpfwdTrial(o *options, impl, param string) (trialResult, error) {
	res := trialResult{allocs: -1, cpuPerPkt: -1, cpuPct: -1, sysCPU: -1}
	t, err := routedTopo(offloadsOff(param))
	if err != nil {
		return res, err
	}
	defer t.close()
	d, err := startRouter(t, o, impl)
	if err != nil {
		return res, err
	}
	d.stop = once(d.stop)
	defer d.stop()
	srvArgs := []string{"-s", "-B", sinkAddr.Addr().String()}
	if o.genCPU >= 0 {
		srvArgs = append(srvArgs, "-A", fmt.Sprint(o.genCPU))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := t.sink.Command(ctx, "iperf3", srvArgs...)
	if err := srv.Start(); err != nil {
		return res, fmt.Errorf("iperf3 server: %w", err)
	}
	defer srv.Wait()
	defer cancel()
	time.Sleep(200 * time.Millisecond)
	flows := tcpfwdFlows(param)
	full, err := iperf(t, o, flows, 0, nil)
	if err != nil {
		return res, err
	}
	res.bps, res.retrans = full.End.SumReceived.BitsPerSecond, full.End.SumSent.Retransmits
	if o.tcpRate > 0 {
		var s0, s1 cpuTimes
		lim, err := iperf(t, o, flows, o.tcpRate, func() {
			// Connection setup, then iperf3's omitted warmup (whole seconds, as -O got it): the CPU window
			// is the window whose bytes iperf3 reports.
			time.Sleep(time.Duration(math.Ceil(o.warmup.Seconds()))*time.Second + 100*time.Millisecond)
			s0 = mustCPUTimes()
			time.Sleep(time.Duration(math.Ceil(o.duration.Seconds())) * time.Second)
			s1 = mustCPUTimes()
		})
		if err != nil {
			return res, err
		}
		if segs := lim.End.SumReceived.Bytes / mss; segs > 0 {
			sysCPUDelta(s0, s1).set(&res, segs)
			res.delivered = lim.End.SumReceived.BitsPerSecond / o.tcpRate
		}
	}
	return res, d.stop()
}

// rttTrial pings the sink from gen through impl: -pings echo requests 2 ms apart, RTTs from each reply.
func rttTrial(o *options, impl string) (trialResult, error) {
	res := trialResult{allocs: -1, cpuPerPkt: -1, cpuPct: -1, sysCPU: -1}
	t, err := routedTopo(false)
	if err != nil {
		return res, err
	}
	defer t.close()
	d, err := startRouter(t, o, impl)
	if err != nil {
		return res, err
	}
	d.stop = once(d.stop)
	defer d.stop()
	args := []string{"ping", "-i", "0.002", "-c", fmt.Sprint(o.pings), "-W", "1", sinkAddr.Addr().String()}
	if o.genCPU >= 0 {
		args = append([]string{"-c", fmt.Sprint(o.genCPU)}, args...)
	}
	out, err := t.gen.Run(context.Background(), "taskset", args...)
	if err != nil {
		var ee *exec.ExitError
		if !(errors.As(err, &ee) && ee.ExitCode() == 1) { // 1: some replies missing, still measured
			return res, fmt.Errorf("ping: %v: %s", err, lastLines(string(out), 4))
		}
	}
	rtts := pingRTTs(string(out))
	if len(rtts) == 0 {
		return res, fmt.Errorf("ping: no replies: %s", lastLines(string(out), 4))
	}
	res.rtt = rttSummary(rtts)
	res.lost = o.pings - len(rtts)
	return res, d.stop()
}

// pingRTTs reads the time=X ms of every reply line of ping's output, in microseconds.
func pingRTTs(out string) []float64 {
	var v []float64
	for _, l := range strings.Split(out, "\n") {
		_, after, ok := strings.Cut(l, " time=")
		if !ok {
			continue
		}
		f := strings.Fields(after)
		if len(f) == 0 {
			continue
		}
		if x, err := strconv.ParseFloat(f[0], 64); err == nil {
			v = append(v, x*1000)
		}
	}
	return v
}

// rttStats are one run's RTTs in microseconds.
type rttStats struct{ Min, Avg, P50, P99, Max float64 }

func rttSummary(v []float64) *rttStats {
	s := slices.Clone(v)
	slices.Sort(s)
	sum := 0.0
	for _, x := range s {
		sum += x
	}
	pct := func(p float64) float64 { return s[min(len(s)-1, int(math.Ceil(p*float64(len(s))))-1)] }
	return &rttStats{Min: s[0], Avg: sum / float64(len(s)), P50: pct(0.50), P99: pct(0.99), Max: s[len(s)-1]}
}
