package netlab

import (
	"fmt"
	"github.com/xdpnet/xdpnet/internal/caps"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// RequireEnv is the environment variable that turns a privilege skip into a
// failure, so that a CI run cannot pass by skipping every privileged test.
const RequireEnv = "XDPNET_REQUIRE_PRIV"

// MissingPrivileges returns what the process lacks to build labs and run
// AF_XDP, or "" when it has everything: CAP_SYS_ADMIN (setns, mounts under
// /run/netns), CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF (or CAP_SYS_ADMIN,
// which implies it).
func MissingPrivileges() string {
	eff, err := caps.Effective()
	if err != nil {
		if os.Geteuid() == 0 {
			return ""
		}
		return fmt.Sprintf("not root and cannot read capabilities: %v", err)
	}
	var missing []string
	has := eff.Has
	if !has(caps.SysAdmin) {
		missing = append(missing, "CAP_SYS_ADMIN")
	}
	if !has(caps.NetAdmin) {
		missing = append(missing, "CAP_NET_ADMIN")
	}
	if !has(caps.NetRaw) {
		missing = append(missing, "CAP_NET_RAW")
	}
	if !has(caps.BPF) && !has(caps.SysAdmin) {
		missing = append(missing, "CAP_BPF")
	}
	if len(missing) == 0 {
		return ""
	}
	return "missing " + strings.Join(missing, ", ") + " (run as root, e.g. sudo go test ./...)"
}

// RequirePrivileges skips the test when the process lacks the privileges
// for network namespaces and AF_XDP, saying which are missing. When
// XDPNET_REQUIRE_PRIV=1 it fails the test instead.
func RequirePrivileges(t testing.TB) {
	t.Helper()
	missing := MissingPrivileges()
	if missing == "" {
		return
	}
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("privileged test cannot run: %s; %s=1 makes this a failure instead of a skip", missing, RequireEnv)
	}
	t.Skipf("privileged test skipped: %s; set %s=1 to fail instead of skipping", missing, RequireEnv)
}

// MissingTool ends a test that cannot run because a program it talks to (ping, curl, tshark, scapy) is
// missing: a skip saying what, or a failure when XDPNET_REQUIRE_PRIV=1, since `make test` installs them all.
func MissingTool(t testing.TB, what string) {
	t.Helper()
	if os.Getenv(RequireEnv) == "1" {
		t.Fatalf("%s; `make test` installs it (.ci/install-deps), and %s=1 forbids skipping", what, RequireEnv)
	}
	t.Skipf("%s (run .ci/install-deps)", what)
}

// RequireTool returns the path of the program name (looked up in PATH unless absolute), or ends the test
// through MissingTool.
func RequireTool(t testing.TB, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		MissingTool(t, name+" is not installed")
	}
	return p
}
