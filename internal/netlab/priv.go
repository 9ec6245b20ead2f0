package netlab

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"testing"
)

// RequireEnv is the environment variable that turns a privilege skip into a
// failure, so that a CI run cannot pass by skipping every privileged test.
const RequireEnv = "XDPNET_REQUIRE_PRIV"

// Capability bits (include/uapi/linux/capability.h).
const (
	capNetAdmin = 12
	capNetRaw   = 13
	capSysAdmin = 21
	capBPF      = 39
)

// MissingPrivileges returns what the process lacks to build labs and run
// AF_XDP, or "" when it has everything: CAP_SYS_ADMIN (setns, mounts under
// /run/netns), CAP_NET_ADMIN, CAP_NET_RAW and CAP_BPF (or CAP_SYS_ADMIN,
// which implies it).
func MissingPrivileges() string {
	eff, err := effectiveCaps()
	if err != nil {
		if os.Geteuid() == 0 {
			return ""
		}
		return fmt.Sprintf("not root and cannot read capabilities: %v", err)
	}
	var missing []string
	has := func(bit uint) bool { return eff&(1<<bit) != 0 }
	if !has(capSysAdmin) {
		missing = append(missing, "CAP_SYS_ADMIN")
	}
	if !has(capNetAdmin) {
		missing = append(missing, "CAP_NET_ADMIN")
	}
	if !has(capNetRaw) {
		missing = append(missing, "CAP_NET_RAW")
	}
	if !has(capBPF) && !has(capSysAdmin) {
		missing = append(missing, "CAP_BPF")
	}
	if len(missing) == 0 {
		return ""
	}
	return "missing " + strings.Join(missing, ", ") + " (run as root, e.g. sudo go test ./...)"
}

func effectiveCaps() (uint64, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		if v, ok := strings.CutPrefix(s.Text(), "CapEff:"); ok {
			return strconv.ParseUint(strings.TrimSpace(v), 16, 64)
		}
	}
	if err := s.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no CapEff line in /proc/self/status")
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
