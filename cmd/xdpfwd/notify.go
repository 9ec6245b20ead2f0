package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// The service manager protocol of sd_notify(3), for xdpfwd.service's Type=notify: systemd passes the path of
// a datagram socket in $NOTIFY_SOCKET and waits for READY=1 before it counts the service as started (and
// before `systemctl start` returns, and units ordered After= it start). A datagram is newline-separated
// VAR=VALUE assignments. xdpfwd sends
//
//	READY=1, STATUS=...            once the ports are up: XDP attached, sockets bound, routes in the table
//	RELOADING=1, MONOTONIC_USEC=   when a SIGHUP reload begins; READY=1 and STATUS= when it is over
//	STATUS=...                     now and then while running (what is forwarded)
//	STOPPING=1, STATUS=...         when it begins to drain and detach on SIGTERM/SIGINT
//
// The datagram is written here with one sendto(2) rather than through libsystemd or a Go package: that is the
// whole protocol.

// notifier sends to the service manager; a nil *notifier (no $NOTIFY_SOCKET) sends nothing.
type notifier struct {
	fd   int
	addr *unix.SockaddrUnix
}

// newNotifier opens a datagram socket towards $NOTIFY_SOCKET, or returns nil when it is not set (xdpfwd not
// started by systemd, or Type= is not notify). A name starting with '@' is a socket in the abstract namespace
// (the '@' stands for the leading NUL byte, as systemd writes it; x/sys/unix makes the same translation). The
// variable is unset, as sd_notify's unset_environment does, so nothing xdpfwd might start inherits it.
func newNotifier() (*notifier, error) {
	name := os.Getenv("NOTIFY_SOCKET")
	if name == "" {
		return nil, nil
	}
	os.Unsetenv("NOTIFY_SOCKET")
	if name[0] != '/' && name[0] != '@' {
		// systemd 254+ can also hand out vsock:CID:PORT, for virtual machines; not for a router's service.
		return nil, fmt.Errorf("NOTIFY_SOCKET=%q: want a socket path (/run/...) or an abstract name (@...)", name)
	}
	if len(name) > len(unix.RawSockaddrUnix{}.Path) {
		return nil, fmt.Errorf("NOTIFY_SOCKET=%q: longer than a unix socket address holds", name)
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("NOTIFY_SOCKET: socket: %w", err)
	}
	return &notifier{fd: fd, addr: &unix.SockaddrUnix{Name: name}}, nil
}

// send writes the assignments as one datagram. A full socket buffer is not waited for (MSG_DONTWAIT): a status
// line dropped is better than a router that blocks on its service manager.
func (n *notifier) send(assignments ...string) error {
	if n == nil {
		return nil
	}
	msg := strings.Join(assignments, "\n")
	for {
		err := unix.Sendto(n.fd, []byte(msg), unix.MSG_NOSIGNAL|unix.MSG_DONTWAIT, n.addr)
		if !errors.Is(err, unix.EINTR) {
			if err != nil {
				return fmt.Errorf("notify the service manager (NOTIFY_SOCKET=%s): %w", n.addr.Name, err)
			}
			return nil
		}
	}
}

func (n *notifier) close() {
	if n != nil {
		unix.Close(n.fd)
	}
}

// status is a STATUS= assignment; the value is one line.
func status(format string, args ...any) string {
	return "STATUS=" + strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", "; ")
}

// reloading is what sd_notify(3) asks a service to send when it begins to reload: RELOADING=1 with the
// CLOCK_MONOTONIC time, so that the manager can tell this reload's READY=1 from an earlier one.
func reloading() []string {
	var ts unix.Timespec
	unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts)
	usec := ts.Nano() / int64(time.Microsecond)
	return []string{"RELOADING=1", "MONOTONIC_USEC=" + strconv.FormatInt(usec, 10)}
}
