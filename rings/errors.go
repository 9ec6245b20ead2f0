package rings

import (
	"errors"
	"fmt"

	"golang.org/x/sys/unix"
)

var (
	// ErrRingSize: a ring size that is not a power of two.
	ErrRingSize = errors.New("ring size must be a power of two")
	// ErrQueueBusy: another AF_XDP socket is bound to the queue.
	ErrQueueBusy = errors.New("queue already bound by another AF_XDP socket")
	// ErrPermission: the process lacks the capabilities AF_XDP needs.
	ErrPermission = errors.New("operation not permitted")
	// ErrNoDevice: the interface does not exist (in this network namespace).
	ErrNoDevice = errors.New("no such network interface")
	// ErrNoQueue: the queue id is not below the interface's queue count.
	ErrNoQueue = errors.New("no such queue")
	// ErrZeroCopy: zero-copy was required and the driver cannot do it.
	ErrZeroCopy = errors.New("zero-copy not supported")
	// ErrNotSupported: the kernel has no AF_XDP (CONFIG_XDP_SOCKETS).
	ErrNotSupported = errors.New("AF_XDP not supported by this kernel")
)

// SocketError is what Open returns: the step that failed, where, a sentinel for errors.Is, the errno, and a
// message that says what to do.
type SocketError struct {
	Step   string // "create socket", "bind", ...
	Ifname string
	Queue  int
	Kind   error // one of the sentinels above, or nil
	Errno  error // the system error, or nil
	Advice string
}

func (e *SocketError) Error() string {
	s := fmt.Sprintf("AF_XDP socket on %s queue %d: %s", e.Ifname, e.Queue, e.Step)
	if e.Errno != nil {
		s += ": " + e.Errno.Error()
	}
	if e.Advice != "" {
		s += " (" + e.Advice + ")"
	}
	return s
}

// Is matches the sentinel.
func (e *SocketError) Is(target error) bool { return e.Kind != nil && target == e.Kind }

// Unwrap returns the errno.
func (e *SocketError) Unwrap() error { return e.Errno }

const permAdvice = "run as root, or grant CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW and CAP_IPC_LOCK, e.g. `setcap cap_net_admin,cap_bpf,cap_net_raw,cap_ipc_lock+ep BINARY`"

// explain maps an errno from a step of opening a socket to an error that says what is wrong and what to do.
// queues is the interface's queue count, 0 if unknown.
func explain(step, ifname string, queue, queues int, bind BindMode, err error) error {
	e := &SocketError{Step: step, Ifname: ifname, Queue: queue, Errno: err}
	switch {
	case errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES):
		e.Kind, e.Advice = ErrPermission, permAdvice
	case errors.Is(err, unix.EAFNOSUPPORT):
		e.Kind, e.Advice = ErrNotSupported, "the kernel lacks CONFIG_XDP_SOCKETS; AF_XDP needs Linux 4.18, shared UMEM across interfaces 5.10"
	case step == "bind" && errors.Is(err, unix.EBUSY):
		e.Kind = ErrQueueBusy
		e.Advice = fmt.Sprintf("queue %d of %s is already bound by another AF_XDP socket; stop the other program or use another queue", queue, ifname)
	case errors.Is(err, unix.ENODEV) || errors.Is(err, unix.ENXIO):
		e.Kind = ErrNoDevice
		e.Advice = fmt.Sprintf("interface %s does not exist in this network namespace; check `ip link`", ifname)
	case step == "bind" && errors.Is(err, unix.EINVAL) && queues > 0 && queue >= queues:
		e.Kind = ErrNoQueue
		e.Advice = queueAdvice(ifname, queue, queues)
	case step == "bind" && bind == BindZeroCopy && (errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.EINVAL)):
		e.Kind = ErrZeroCopy
		e.Advice = fmt.Sprintf("the driver of %s does not support AF_XDP zero-copy on queue %d or the XDP program is in generic mode; use copy or auto bind mode", ifname, queue)
	case errors.Is(err, unix.ENOMEM) || errors.Is(err, unix.ENOBUFS):
		e.Advice = "the UMEM and rings are pinned memory: raise RLIMIT_MEMLOCK (`ulimit -l unlimited`) or grant CAP_IPC_LOCK, or use fewer frames/smaller rings"
	case step == "bind" && errors.Is(err, unix.EINVAL):
		e.Advice = "the kernel refused the bind: check that the interface is up, the rings are set, and that sharing a UMEM across interfaces needs Linux 5.10 or later"
	}
	return e
}

func queueAdvice(ifname string, queue, queues int) string {
	return fmt.Sprintf("%s has %d queue(s), so queue %d does not exist; use queues 0..%d or add queues with `ethtool -L %s combined %d`",
		ifname, queues, queue, queues-1, ifname, queue+1)
}
