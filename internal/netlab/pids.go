package netlab

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// killNetnsProcs SIGKILLs every other process whose network namespace is the
// one mounted at path, as `ip netns pids` finds them. A process left in a
// namespace keeps it, and its veths, alive after the name is gone. It
// returns how many processes it signalled.
func killNetnsProcs(path string) int {
	var want unix.Stat_t
	if err := unix.Stat(path, &want); err != nil {
		return 0
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return 0
	}
	self := os.Getpid()
	n := 0
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		var st unix.Stat_t
		if err := unix.Stat(filepath.Join("/proc", e.Name(), "ns", "net"), &st); err != nil {
			continue
		}
		if st.Dev == want.Dev && st.Ino == want.Ino {
			if err := unix.Kill(pid, unix.SIGKILL); err == nil || !errors.Is(err, unix.ESRCH) {
				n++
			}
		}
	}
	return n
}
