package netlab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// CleanStale removes the namespaces and root-namespace interfaces that
// earlier runs left behind: those whose lab prefix encodes a PID that no
// longer runs, or this process's PID but no lab this process has open (an
// earlier process that had the same PID). Labs of running processes are left
// alone, so parallel test binaries do not disturb each other. New calls it.
func CleanStale() error {
	var errs []error
	ents, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		errs = append(errs, fmt.Errorf("list %s: %w", netnsDir, err))
	}
	for _, e := range ents {
		n := e.Name()
		if len(n) <= prefixLen || n[prefixLen] != '-' || !isStale(n) {
			continue
		}
		// Programs the crashed run started in the namespace would keep it
		// and its veths alive.
		killNetnsProcs(filepath.Join(netnsDir, n))
		if err := deleteNamedNetns(n); err != nil {
			errs = append(errs, fmt.Errorf("remove stale namespace: %w", err))
		}
	}

	links, err := netlink.LinkList()
	if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
		errs = append(errs, fmt.Errorf("list interfaces: %w", err))
	}
	for _, lk := range links {
		n := lk.Attrs().Name
		if !isTempVethName(n) || !isStale(n) {
			continue
		}
		if err := netlink.LinkDel(lk); err != nil && !errors.Is(err, unix.ENODEV) {
			errs = append(errs, fmt.Errorf("remove stale interface %s: %w", n, err))
		}
	}
	return errors.Join(errs...)
}

// isTempVethName reports whether n looks like a name Link gives a veth end
// in the root namespace: prefix, 'a' or 'b', decimal number.
func isTempVethName(n string) bool {
	if len(n) < prefixLen+2 || (n[prefixLen] != 'a' && n[prefixLen] != 'b') {
		return false
	}
	return strings.Trim(n[prefixLen+1:], "0123456789") == ""
}

// isStale reports whether name starts with the prefix of a lab that nobody
// can close any more.
func isStale(name string) bool {
	pid, ok := decodePrefix(name)
	if !ok {
		return false
	}
	if pid == os.Getpid() {
		return !prefixOpen(name[:prefixLen])
	}
	return !pidAlive(pid)
}

// pidAlive reports whether a process with this PID exists. EPERM means it
// exists but belongs to someone else.
func pidAlive(pid int) bool {
	err := unix.Kill(pid, 0)
	return err == nil || errors.Is(err, unix.EPERM)
}
