package archtest

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestOutsideModuleBuildsAppliance is an embedder's view: a module of its own (another module path, so
// internal/ is closed to it) that requires xdpnet through a replace directive builds an appliance from the
// public packages - poller, pipeline, stack, proto, metrics - and runs it over the in-memory link. A public API that
// needs an internal type fails to compile here.
func TestOutsideModuleBuildsAppliance(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a module: not in -short")
	}
	root := goList(t, "-m", "-f", "{{.Dir}}")[0]
	goVersion := goList(t, "-m", "-f", "{{.GoVersion}}")[0]
	dir := t.TempDir()
	src, err := os.ReadFile("testdata/appliance/main.go")
	if err != nil {
		t.Fatal(err)
	}
	sum, err := os.ReadFile(filepath.Join(root, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	gomod := "module example.com/appliance\n\ngo " + goVersion + "\n\nrequire " + module + " v0.0.0\n\nreplace " + module + " => " + root + "\n"
	for name, b := range map[string][]byte{"go.mod": []byte(gomod), "go.sum": sum, "main.go": src} {
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	run := func(name string, args ...string) string {
		t.Helper()
		cmd := exec.Command(name, args...)
		cmd.Dir = dir
		// -mod=mod lets go fill in the requirements the replaced module brings (from the module cache).
		cmd.Env = append(os.Environ(), "GOWORK=off", "GOFLAGS=-mod=mod")
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%s %v: %v\n%s", name, args, err, out)
		}
		return string(out)
	}
	run("go", "mod", "tidy")
	bin := filepath.Join(dir, "appliance")
	run("go", "build", "-o", bin, ".")
	out := run(bin, "-memlink", "-iface", "eth0=198.18.0.1/24")
	for _, want := range []string{"arp reply: 198.18.0.1 is-at 02:00:00:00:00:01\n", "xdpnet_stack_arp_replies_out_total 1\n"} {
		if !strings.Contains(out, want) {
			t.Fatalf("appliance printed %q, want %q", out, want)
		}
	}
	// A bad flag is reported with what to use, through the public parser.
	cmd := exec.Command(bin, "-xdp-mode", "skb")
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "auto, native or generic") {
		t.Fatalf("appliance -xdp-mode skb: %v\n%s", err, out)
	}
}
