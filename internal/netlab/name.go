package netlab

import (
	"fmt"
	"os"
	"strings"
	"sync"
)

// A lab prefix is "xn" followed by prefixDigits base-62 digits that encode
// pid*counterSpan + counter. Interface names are limited to 15 bytes
// (IFNAMSIZ-1), and the temporary veth names in the root namespace are the
// prefix plus a side letter plus a number, so the prefix must stay at 7 bytes.
//
// Encoding the PID lets CleanStale tell the leftovers of a crashed process
// (PID gone) from the labs of a live one, without any lock file. 62^5 is
// 916,132,832; the largest Linux PID is 4,194,304 (PID_MAX_LIMIT on 64-bit),
// so 200 counter values per PID fit.
const (
	prefixLead   = "xn"
	prefixDigits = 5
	prefixLen    = len(prefixLead) + prefixDigits
	counterSpan  = 200
	maxPID       = 1 << 22
	alphabet     = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"

	// maxIfName is IFNAMSIZ-1: the kernel rejects longer interface names.
	maxIfName = 15
)

// encodePrefix returns the lab prefix for pid and counter.
func encodePrefix(pid, counter int) (string, error) {
	if pid <= 0 || pid > maxPID {
		return "", fmt.Errorf("encode lab prefix: pid %d outside 1..%d", pid, maxPID)
	}
	v := uint64(pid)*counterSpan + uint64(counter%counterSpan)
	var b [prefixLen]byte
	copy(b[:], prefixLead)
	for i := prefixLen - 1; i >= len(prefixLead); i-- {
		b[i] = alphabet[v%uint64(len(alphabet))]
		v /= uint64(len(alphabet))
	}
	return string(b[:]), nil
}

// decodePrefix returns the PID encoded in the first prefixLen bytes of name,
// and false when name does not start with a lab prefix.
func decodePrefix(name string) (pid int, ok bool) {
	if len(name) < prefixLen || !strings.HasPrefix(name, prefixLead) {
		return 0, false
	}
	var v uint64
	for i := len(prefixLead); i < prefixLen; i++ {
		d := strings.IndexByte(alphabet, name[i])
		if d < 0 {
			return 0, false
		}
		v = v*uint64(len(alphabet)) + uint64(d)
	}
	pid = int(v / counterSpan)
	if pid <= 0 || pid > maxPID {
		return 0, false
	}
	return pid, true
}

// live holds the prefixes of the labs this process has open, so that
// CleanStale can also remove leftovers of an earlier process that had the
// same PID as this one, and New never reuses a prefix that is still open.
var live struct {
	sync.Mutex
	counter  int
	prefixes map[string]bool
}

// reservePrefix picks a prefix for a new lab that no open lab of this process
// uses and that has nothing left on the system.
func reservePrefix() (string, error) {
	live.Lock()
	defer live.Unlock()
	if live.prefixes == nil {
		live.prefixes = make(map[string]bool)
	}
	pid := os.Getpid()
	for range counterSpan {
		c := live.counter
		live.counter++
		p, err := encodePrefix(pid, c)
		if err != nil {
			return "", err
		}
		if live.prefixes[p] || prefixInUse(p) {
			continue
		}
		live.prefixes[p] = true
		return p, nil
	}
	return "", fmt.Errorf("reserve lab prefix: all %d prefixes of pid %d are in use (close labs you no longer need)", counterSpan, pid)
}

func releasePrefix(p string) {
	live.Lock()
	delete(live.prefixes, p)
	live.Unlock()
}

func prefixOpen(p string) bool {
	live.Lock()
	defer live.Unlock()
	return live.prefixes[p]
}

// prefixInUse reports whether any named namespace starts with prefix p.
func prefixInUse(p string) bool {
	ents, err := os.ReadDir(netnsDir)
	if err != nil {
		return false
	}
	for _, e := range ents {
		if strings.HasPrefix(e.Name(), p+"-") {
			return true
		}
	}
	return false
}

// checkIfName returns an error when the kernel would refuse name as an
// interface name (dev_valid_name in net/core/dev.c).
func checkIfName(name string) error {
	if name == "" || name == "." || name == ".." {
		return fmt.Errorf("interface name %q: must be a non-empty name other than . and ..", name)
	}
	if len(name) > maxIfName {
		return fmt.Errorf("interface name %q: %d bytes, the kernel allows at most %d", name, len(name), maxIfName)
	}
	if strings.ContainsAny(name, "/: \t\n\r\v\f") {
		return fmt.Errorf("interface name %q: must not contain '/', ':' or white space", name)
	}
	return nil
}

// checkRole returns an error when role cannot be part of a namespace name.
func checkRole(role string) error {
	if role == "" || len(role) > 32 {
		return fmt.Errorf("host role %q: must be 1 to 32 characters", role)
	}
	for _, c := range role {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.'
		if !ok {
			return fmt.Errorf("host role %q: use only letters, digits, '_', '-' and '.'", role)
		}
	}
	return nil
}
