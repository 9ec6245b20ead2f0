package archtest

import (
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/xdpnet/xdpnet"

// allowed lists, per package, the packages of this module and outside modules it may depend on
// (transitively). The standard library is always allowed, except where forbidden below.
var allowed = map[string][]string{
	"proto":     {},
	"pipeline":  {"proto"},
	"stack":     {"pipeline", "proto", "stack/tcp", "internal/deadline"},
	"stack/tcp": {"proto", "internal/deadline"},
	"umem":      {"golang.org/x/sys/"},
	"rings":     {"umem", "golang.org/x/sys/"},

	// Connection tracking and NAT are pipeline stages (nf_conntrack, nf_nat): plain Go over packets.
	"pipeline/conntrack": {"proto"},
	"pipeline/nat":       {"pipeline", "pipeline/conntrack", "proto"},
}

// directImports lists, for packages whose transitive dependencies are too many to list (they sit on top of
// the poller), what they may import directly besides the standard library.
var directImports = map[string][]string{
	// metrics reads the poller's and the stack's snapshots; it sits beside cmd/*, below nothing.
	"metrics": {"pipeline", "poller", "stack", "github.com/prometheus/"},
}

// noPrometheus lists packages that must not depend on Prometheus, even transitively: their counters are
// plain snapshots, exported by package metrics to whoever wants them.
var noPrometheus = []string{"poller", "rings", "umem", "pipeline", "stack", "proto"}

// Packages above the poller are plain Go over byte slices: their own code must not open sockets or make
// system calls (the standard library they use may, for time and files).
var forbiddenStd = map[string][]string{
	"proto":    {"net", "syscall", "os", "os/exec", "unsafe"},
	"pipeline": {"net", "syscall", "os/exec", "golang.org/x/sys/unix"},
	// stack implements net.PacketConn and net.Conn, so it uses net's types and errno values, never a socket.
	"stack": {"os/exec", "golang.org/x/sys/unix"},
	// stack/tcp likewise: net.Conn and errno values, no sockets.
	"stack/tcp": {"os/exec", "golang.org/x/sys/unix"},

	"pipeline/conntrack": {"net", "syscall", "os", "os/exec", "golang.org/x/sys/unix"},
	"pipeline/nat":       {"net", "syscall", "os", "os/exec", "golang.org/x/sys/unix"},
}

func goList(t *testing.T, args ...string) []string {
	t.Helper()
	out, err := exec.Command("go", append([]string{"list"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("go list %v: %v\n%s", args, err, out)
	}
	return strings.Fields(string(out))
}

func TestDependencyDirection(t *testing.T) {
	for pkg, ok := range allowed {
		for _, d := range goList(t, "-deps", "-f", "{{if not .Standard}}{{.ImportPath}}{{end}}", module+"/"+pkg) {
			if d != module+"/"+pkg && !permitted(d, ok) {
				t.Errorf("%s depends on %s; DESIGN.md allows only %v", pkg, d, ok)
			}
		}
		for _, imp := range goList(t, "-f", "{{join .Imports \" \"}}", module+"/"+pkg) {
			for _, f := range forbiddenStd[pkg] {
				if imp == f {
					t.Errorf("%s imports %s; DESIGN.md keeps it free of sockets and system calls", pkg, imp)
				}
			}
		}
	}
}

func TestDirectImports(t *testing.T) {
	for pkg, ok := range directImports {
		for _, imp := range goList(t, "-f", "{{join .Imports \" \"}}", module+"/"+pkg) {
			if strings.Contains(strings.SplitN(imp, "/", 2)[0], ".") && !permitted(imp, ok) {
				t.Errorf("%s imports %s; DESIGN.md allows only %v", pkg, imp, ok)
			}
		}
	}
	for _, pkg := range noPrometheus {
		for _, d := range goList(t, "-deps", "-f", "{{.ImportPath}}", module+"/"+pkg) {
			if strings.HasPrefix(d, "github.com/prometheus/") || d == module+"/metrics" {
				t.Errorf("%s depends on %s: metrics are exported by package metrics, not by the packet path", pkg, d)
			}
		}
	}
}

func TestNothingImportsCommands(t *testing.T) {
	for _, line := range goList(t, "-f", "{{.ImportPath}}:{{join .Imports \",\"}}", module+"/...") {
		pkg, imports, _ := strings.Cut(line, ":")
		for _, imp := range strings.Split(imports, ",") {
			for _, top := range []string{"/cmd/", "/bench", "/examples/"} {
				// A leaf may have packages of its own (bench/xdpcount); nothing else may import them.
				if strings.HasPrefix(imp, module+top) && !strings.HasPrefix(pkg, leafRoot(imp)) {
					t.Errorf("%s imports %s: commands, benchmarks and examples are leaves", pkg, imp)
				}
			}
		}
	}
}

func permitted(dep string, ok []string) bool {
	for _, a := range ok {
		if strings.HasSuffix(a, "/") && strings.HasPrefix(dep, a) || dep == module+"/"+a {
			return true
		}
	}
	return false
}

// leafRoot is the command, bench or example an import path belongs to: module/cmd/xdpfwd for
// module/cmd/xdpfwd/x, module/bench for module/bench/xdpcount.
func leafRoot(imp string) string {
	parts := strings.Split(strings.TrimPrefix(imp, module+"/"), "/")
	n := 2
	if parts[0] == "bench" {
		n = 1
	}
	return module + "/" + strings.Join(parts[:min(n, len(parts))], "/")
}
