package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/xdpnet/xdpnet/metrics"
)

// Exit codes.
const (
	exitOK      = 0
	exitFailure = 1
	exitUsage   = 2
)

// usageError marks an error in the flags or the configuration they describe: exit code 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

func usagef(format string, args ...any) error { return usageError{fmt.Errorf(format, args...)} }

const topUsage = `xdpfwd - an IPv4 and IPv6 router in user space on AF_XDP (xdpnet)

Usage:
  xdpfwd run  --iface NAME=ADDR/PLEN [--iface ...] [--route PREFIX=NEXTHOP ...] [flags]
  xdpfwd run  --config FILE [flags that override the file]
  xdpfwd demo [--duration 10s] [--rate PPS]
  xdpfwd stats [--metrics ADDR] [--interval 1s] [--count N]
  xdpfwd check --config FILE
  xdpfwd version
  xdpfwd help [run|demo|stats|check]

Subcommands:
  run   route IPv4 and IPv6 between the given interfaces until SIGINT/SIGTERM, then print a
        summary (packets per port, drops by reason, frame accounting). The kernel's own forwarding
        (net.ipv4.ip_forward, net.ipv6.conf.all.forwarding) can stay 0: xdpfwd takes every frame of
        those interfaces.
  demo  build a three-namespace dual-stack lab (gen -> router -> sink), run "xdpfwd run" in the
        router, drive ping, traceroute, UDP and TCP over IPv4 and IPv6 and a UDP flood through it,
        show live rates, remove the lab.
  stats show a live table (pps per port, drops per second by reason, poller busy ratio) read from
        the metrics endpoint of a running "xdpfwd run --metrics ADDR" (default ` + defaultMetricsAddr + `).
  check check a configuration file: print "ok", or every error as FILE:LINE: message (exit 2).
  version print xdpnet's module version, the Go version and the commit the binary was built from
        (also --version; the same as the xdpnet_build_info metric).
  help  show this text, or the flags of a subcommand.

SIGHUP makes run re-read --config and apply its routes and acl rules without stopping traffic: a
changed route switches to its new next hop in place, it never disappears in between. Started by systemd
with Type=notify (NOTIFY_SOCKET set), run reports READY=1 once it forwards, reloads and STATUS= lines.

Both need root, or CAP_NET_ADMIN, CAP_NET_RAW, CAP_BPF and CAP_IPC_LOCK (demo also CAP_SYS_ADMIN
for network namespaces). Run "xdpfwd help run" for every flag of run.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := realMain(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// realMain runs one subcommand and returns the exit code. ctx is cancelled by SIGINT/SIGTERM.
func realMain(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, topUsage)
		fmt.Fprintln(stderr, "\nxdpfwd: no subcommand given (want run, demo, stats, check, version or help)")
		return exitUsage
	}
	var err error
	switch cmd, rest := args[0], args[1:]; cmd {
	case "run":
		err = cmdRun(ctx, rest, stdout, stderr)
	case "demo":
		err = cmdDemo(ctx, rest, stdout, stderr)
	case "stats":
		err = cmdStats(ctx, rest, stdout, stderr)
	case "check":
		err = cmdCheck(rest, stdout, stderr)
	case "version", "-version", "--version":
		fmt.Fprintln(stdout, "xdpfwd "+metrics.BuildInfo().String())
		return exitOK
	case "help", "-h", "-help", "--help":
		return cmdHelp(rest, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "xdpfwd: unknown subcommand %q (want run, demo, stats, check, version or help; see xdpfwd help)\n", cmd)
		return exitUsage
	}
	switch {
	case err == nil, errors.Is(err, errHelpShown):
		return exitOK
	case errors.As(err, new(usageError)):
		fmt.Fprintf(stderr, "xdpfwd %s: %v\n", args[0], err)
		return exitUsage
	default:
		fmt.Fprintf(stderr, "xdpfwd %s: %v\n", args[0], err)
		return exitFailure
	}
}

// errHelpShown is returned by a subcommand that printed its help because of -h/--help.
var errHelpShown = errors.New("help shown")

// parseFlags parses a subcommand's flags. -h prints the subcommand's usage to stdout (errHelpShown); any other
// parse error is a usageError, reported once by main without the long usage.
func parseFlags(fs *flag.FlagSet, args []string, stdout io.Writer) error {
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fs.Usage()
		return errHelpShown
	}
	if err != nil {
		return usageError{err}
	}
	return nil
}

func cmdHelp(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stdout, topUsage)
		return exitOK
	}
	switch args[0] {
	case "run":
		fs, _ := newRunFlags(stdout)
		fs.Usage()
	case "demo":
		fs, _ := newDemoFlags(stdout)
		fs.Usage()
	case "stats":
		cmdStats(context.Background(), []string{"-h"}, stdout, stderr)
	case "check":
		cmdCheck([]string{"-h"}, stdout, stderr)
	default:
		fmt.Fprintf(stderr, "xdpfwd help: unknown subcommand %q (want run, demo, stats or check)\n", args[0])
		return exitUsage
	}
	return exitOK
}
