package main

import (
	"bytes"
	"context"
	"log/slog"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/common/expfmt"
)

// TestVersion: `xdpfwd version` and --version print the module version, the Go version, and exit 0.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}, {"-version"}} {
		var out, errb bytes.Buffer
		if code := realMain(context.Background(), args, &out, &errb); code != exitOK {
			t.Fatalf("%v: exit %d, stderr %q", args, code, errb.String())
		}
		// A test binary is built in the module's tree: version (devel), and no VCS stamp.
		if s := out.String(); !strings.HasPrefix(s, "xdpfwd ") || !strings.Contains(s, " "+runtime.Version()) {
			t.Errorf("%v printed %q; want xdpfwd VERSION %s ...", args, s, runtime.Version())
		}
	}
}

func TestLogLevel(t *testing.T) {
	for _, tc := range []struct {
		flag       string
		debug, inf bool
	}{{"debug", true, true}, {"info", false, true}, {"WARN", false, false}, {"error", false, false}} {
		l, err := parseLogLevel(tc.flag)
		if err != nil {
			t.Fatalf("%s: %v", tc.flag, err)
		}
		var buf bytes.Buffer
		log := newLogger("json", l, &buf)
		log.Debug("d")
		log.Info("i")
		log.Warn("w")
		s := buf.String()
		if strings.Contains(s, `"msg":"d"`) != tc.debug || strings.Contains(s, `"msg":"i"`) != tc.inf ||
			strings.Contains(s, `"msg":"w"`) != (l <= slog.LevelWarn) {
			t.Errorf("--log-level %s wrote %q", tc.flag, s)
		}
	}
	for _, bad := range []string{"trace", "", "info+2", "verbose"} {
		if _, err := parseLogLevel(bad); err == nil {
			t.Errorf("log level %q accepted", bad)
		}
	}
	var out, errb bytes.Buffer
	code := realMain(context.Background(), []string{"run", "--iface", "r0=198.18.0.1/24", "--log-level", "loud"}, &out, &errb)
	if code != exitUsage || !strings.Contains(errb.String(), "want debug, info, warn or error") {
		t.Errorf("--log-level loud: exit %d, stderr %q", code, errb.String())
	}
}

// TestRegistry: /metrics serves the poller and stack series, xdpfwd's own, xdpnet_build_info and the Go and
// process collectors; xdpfwd stats still reads it.
func TestRegistry(t *testing.T) {
	p, st := fixedStats(1)
	reg := newRegistry(p, st, opsCollector{func() (uint64, uint64, int) { return 0, 0, 0 }})
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	have := map[string]bool{}
	for _, f := range fams {
		have[f.GetName()] = true
		if _, err := expfmt.MetricFamilyToText(&buf, f); err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range []string{"xdpnet_rx_packets_total", "xdpnet_stack_forwarded_total", "xdpnet_ip_forwarded_total", "xdpnet_config_reloads_total",
		"xdpnet_build_info", "go_goroutines", "go_memstats_heap_alloc_bytes", "process_cpu_seconds_total", "process_resident_memory_bytes"} {
		if !have[name] {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	if want := `goversion="` + runtime.Version() + `"`; !strings.Contains(buf.String(), want) {
		t.Errorf("xdpnet_build_info lacks %s", want)
	}
	if _, err := parseMetrics(&buf, time.Now()); err != nil {
		t.Errorf("xdpfwd stats cannot read it: %v", err)
	}
}
