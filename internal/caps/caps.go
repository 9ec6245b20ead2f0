// Package caps reads the process's effective Linux capabilities, so that commands and tests can say which
// capability is missing before the kernel answers a bare EPERM. It only reads /proc/self/status; the set read
// is the calling thread group's main thread's, which is what matters unless a thread dropped its own.
package caps

import (
	"bufio"
	"errors"
	"os"
	"strconv"
	"strings"
)

// Capability numbers (include/uapi/linux/capability.h).
const (
	NetAdmin = 12
	NetRaw   = 13
	IPCLock  = 14
	SysAdmin = 21
	BPF      = 39
)

// Set is a capability bit set.
type Set uint64

// Has reports whether capability c is in the set.
func (s Set) Has(c uint) bool { return s&(1<<c) != 0 }

// Effective returns the process's effective capabilities.
func Effective() (Set, error) {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "CapEff:"); ok {
			n, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return Set(n), err
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, errors.New("no CapEff line in /proc/self/status")
}
