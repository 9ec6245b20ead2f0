package netlab

import (
	"strings"
	"testing"
)

func TestPrefixRoundTrip(t *testing.T) {
	for _, pid := range []int{1, 2, 4242, 32768, 99999, maxPID} {
		seen := map[string]bool{}
		for c := 0; c < counterSpan; c++ {
			p, err := encodePrefix(pid, c)
			if err != nil {
				t.Fatalf("encodePrefix(%d, %d): %v", pid, c, err)
			}
			if len(p) != prefixLen || !strings.HasPrefix(p, "xn") {
				t.Fatalf("encodePrefix(%d, %d) = %q, want xn + %d characters", pid, c, p, prefixDigits)
			}
			if seen[p] {
				t.Fatalf("encodePrefix(%d, %d) = %q repeats an earlier counter", pid, c, p)
			}
			seen[p] = true
			got, ok := decodePrefix(p + "-role")
			if !ok || got != pid {
				t.Fatalf("decodePrefix(%q) = %d, %v, want %d, true", p, got, ok, pid)
			}
		}
	}
	if _, err := encodePrefix(maxPID+1, 0); err == nil {
		t.Errorf("encodePrefix(%d, 0) succeeded, want an error", maxPID+1)
	}
}

func TestDecodePrefixRejects(t *testing.T) {
	for _, n := range []string{"", "xn", "xn000", "eth0", "veth1234567", "xn0000-", "xn00!00-r", "xy00a00-r"} {
		if pid, ok := decodePrefix(n); ok {
			t.Errorf("decodePrefix(%q) = %d, true; want false", n, pid)
		}
	}
}

func TestCheckIfName(t *testing.T) {
	good := []string{"eth0", "lo", "a", "123456789012345", "veth-x.1"}
	bad := []string{"", ".", "..", "1234567890123456", "a/b", "a:b", "a b"}
	for _, n := range good {
		if err := checkIfName(n); err != nil {
			t.Errorf("checkIfName(%q) = %v, want nil", n, err)
		}
	}
	for _, n := range bad {
		if err := checkIfName(n); err == nil {
			t.Errorf("checkIfName(%q) = nil, want an error", n)
		}
	}
}

// The temporary names Link uses in the root namespace must fit IFNAMSIZ for
// as many pairs as a lab can sensibly make.
func TestTempVethNameLength(t *testing.T) {
	p, err := encodePrefix(maxPID, counterSpan-1)
	if err != nil {
		t.Fatal(err)
	}
	n := p + "b" + "9999999"
	if err := checkIfName(n); err != nil {
		t.Fatalf("temporary name for pair 9999999: %v", err)
	}
	if !isTempVethName(n) || !isTempVethName(p+"a1") {
		t.Errorf("isTempVethName does not recognise %q or %q", n, p+"a1")
	}
	if isTempVethName(p+"-r1") || isTempVethName(p+"a") || isTempVethName(p+"a1x") {
		t.Errorf("isTempVethName accepts a non-temporary name")
	}
}

func TestCheckRole(t *testing.T) {
	for _, r := range []string{"r1", "client", "router_1", "a.b-c"} {
		if err := checkRole(r); err != nil {
			t.Errorf("checkRole(%q) = %v", r, err)
		}
	}
	for _, r := range []string{"", "a/b", "a b", strings.Repeat("x", 33)} {
		if checkRole(r) == nil {
			t.Errorf("checkRole(%q) = nil, want an error", r)
		}
	}
}
