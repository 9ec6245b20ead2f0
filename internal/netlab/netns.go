package netlab

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// netnsDir is where iproute2 keeps named network namespaces; a namespace
// bind-mounted there is what `ip netns exec NAME` and `ip netns list` see.
const netnsDir = "/run/netns"

// errThreadLost marks a failure to switch a thread back to its namespace.
// The thread is then left locked so that the Go runtime destroys it when its
// goroutine exits, instead of handing a thread in the wrong namespace to
// other goroutines.
var errThreadLost = errors.New("restore the thread's network namespace failed; the thread is discarded")

// onFreshThread runs fn on a new goroutine locked to its OS thread and waits
// for it. If fn returns with the thread still in a foreign namespace (keep is
// false), the goroutine exits without unlocking and the runtime kills the
// thread. A panic in fn is carried back and re-raised in the caller.
func onFreshThread(fn func() (keep bool, err error)) error {
	type result struct {
		err   error
		panic any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		keep := false
		defer func() {
			if p := recover(); p != nil {
				done <- result{panic: p}
			}
			if keep {
				runtime.UnlockOSThread()
			}
		}()
		var err error
		keep, err = fn()
		done <- result{err: err}
	}()
	r := <-done
	if r.panic != nil {
		panic(r.panic)
	}
	return r.err
}

// createNamedNetns makes a new network namespace and bind-mounts it at
// /run/netns/name, as `ip netns add` does. It never leaves the calling
// goroutine's thread in the new namespace.
func createNamedNetns(name string) (netns.NsHandle, error) {
	if err := prepareNetnsDir(); err != nil {
		return netns.None(), privHint(err)
	}
	path := filepath.Join(netnsDir, name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return netns.None(), fmt.Errorf("create namespace file %s: %w", path, err)
	}
	f.Close()

	err = onFreshThread(func() (bool, error) {
		orig, err := netns.Get()
		if err != nil {
			return true, fmt.Errorf("open current network namespace: %w", err)
		}
		defer orig.Close()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return true, fmt.Errorf("unshare network namespace: %w", err)
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		mountErr := unix.Mount(src, path, "none", unix.MS_BIND, "")
		if err := netns.Set(orig); err != nil {
			return false, fmt.Errorf("%w: %v", errThreadLost, err)
		}
		if mountErr != nil {
			return true, fmt.Errorf("bind-mount network namespace at %s: %w", path, mountErr)
		}
		return true, nil
	})
	if err != nil {
		os.Remove(path)
		return netns.None(), privHint(err)
	}
	h, err := netns.GetFromPath(path)
	if err != nil {
		deleteNamedNetns(name)
		return netns.None(), fmt.Errorf("open network namespace %s: %w", path, err)
	}
	return h, nil
}

var netnsDirReady struct {
	sync.Mutex
	done bool
}

// prepareNetnsDir makes /run/netns a mount point with shared propagation, as
// `ip netns add` does before its first namespace. Without it, a later
// `ip netns add` by anyone bind-mounts /run/netns onto itself, and the lower
// copies of our namespace mounts then keep their files busy, so Close could
// not remove them. A flock on the directory keeps two processes from
// stacking two bind mounts.
func prepareNetnsDir() error {
	netnsDirReady.Lock()
	defer netnsDirReady.Unlock()
	if netnsDirReady.done {
		return nil
	}
	if err := os.MkdirAll(netnsDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", netnsDir, err)
	}
	fd, err := unix.Open(netnsDir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", netnsDir, err)
	}
	defer unix.Close(fd)
	if err := unix.Flock(fd, unix.LOCK_EX); err != nil {
		return fmt.Errorf("lock %s: %w", netnsDir, err)
	}
	defer unix.Flock(fd, unix.LOCK_UN)
	err = unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	if errors.Is(err, unix.EINVAL) {
		// Not a mount point yet: make it one, keeping any namespaces
		// already mounted below it (MS_REC), then share it.
		if err := unix.Mount(netnsDir, netnsDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mount %s onto itself: %w", netnsDir, err)
		}
		err = unix.Mount("", netnsDir, "none", unix.MS_SHARED|unix.MS_REC, "")
	}
	if err != nil {
		return fmt.Errorf("make %s a shared mount: %w", netnsDir, err)
	}
	netnsDirReady.done = true
	return nil
}

// deleteNamedNetns undoes createNamedNetns. The namespace itself, with its
// interfaces, goes away when nothing else (a process, an open handle) holds
// it. A missing or unmounted file is not an error, so that cleanup after a
// crash half-way through createNamedNetns works.
func deleteNamedNetns(name string) error {
	path := filepath.Join(netnsDir, name)
	err := unix.Unmount(path, unix.MNT_DETACH)
	if err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("unmount network namespace %s: %w", path, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("remove network namespace file %s: %w", path, err)
	}
	return nil
}

// privHint adds what to do to permission errors.
func privHint(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("%w (run as root, or grant CAP_SYS_ADMIN and CAP_NET_ADMIN)", err)
	}
	return err
}
