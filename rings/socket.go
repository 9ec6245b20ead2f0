package rings

import (
	"errors"
	"fmt"
	"strconv"
	"sync"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/umem"
)

// BindMode says whether a socket uses the driver's zero-copy support.
type BindMode int

const (
	// BindAuto lets the kernel use zero-copy when the driver supports it and copy mode otherwise; Socket.ZeroCopy
	// reports which (XDP_OPTIONS).
	BindAuto BindMode = iota
	// BindZeroCopy requires zero-copy (XDP_ZEROCOPY); bind fails when the driver cannot.
	BindZeroCopy
	// BindCopy forces copy mode (XDP_COPY).
	BindCopy
)

var bindNames = [...]string{"auto", "zerocopy", "copy"}

func (m BindMode) String() string {
	if m >= 0 && int(m) < len(bindNames) {
		return bindNames[m]
	}
	return "BindMode(" + strconv.Itoa(int(m)) + ")"
}

// ParseBindMode reads "auto", "zerocopy" (or "zc", "zero-copy") or "copy".
func ParseBindMode(s string) (BindMode, error) {
	switch s {
	case "auto", "":
		return BindAuto, nil
	case "zerocopy", "zc", "zero-copy":
		return BindZeroCopy, nil
	case "copy":
		return BindCopy, nil
	}
	return 0, fmt.Errorf("unknown bind mode %q (want auto, zerocopy or copy)", s)
}

// Config describes one socket.
type Config struct {
	Ifname  string // for messages
	Ifindex int
	Queue   int
	// Queues is the interface's number of queues, used to explain a bad queue id; 0 if unknown.
	Queues int

	// Area is the UMEM. The first socket on an Area registers it (Shared nil); the others pass the socket that
	// registered it in Shared and bind with XDP_SHARED_UMEM. Every socket gets its own fill and completion
	// rings (Linux 5.10+: required when the sharing socket is bound to another interface or queue).
	Area   *umem.Area
	Shared *Socket

	FillSize, CompSize, RxSize, TxSize int
	// Bind is ignored for a sharing socket: the kernel gives it the mode of the socket that registered the UMEM.
	Bind BindMode
	// NeedWakeup sets XDP_USE_NEED_WAKEUP: the kernel says through ring flags when it needs a syscall, so a busy
	// poller makes none. (Also inherited by sharing sockets.)
	NeedWakeup bool

	// BusyPoll enables SO_PREFER_BUSY_POLL with BusyPollUsec (SO_BUSY_POLL, default 20) and BusyPollBudget
	// (SO_BUSY_POLL_BUDGET, default 64): the driver's NAPI then runs in our syscalls instead of softirq.
	BusyPoll       bool
	BusyPollUsec   int
	BusyPollBudget int

	// TxBudget is, in copy mode, the most frames one sendto transmits (XDP_MAX_TX_SKB_BUDGET, Linux 6.17+;
	// the kernel's default, and the only value before 6.17, is 32). 0 leaves the default; larger values are
	// capped to TxSize. A kernel without the option keeps 32 (TxBudget then reports 32).
	TxBudget int
}

// Socket is an AF_XDP socket bound to one queue of one interface, with its four rings mapped.
type Socket struct {
	Fill *FillRing
	Comp *CompRing
	RX   *RxRing
	TX   *TxRing

	ifname     string
	queue      int
	zeroCopy   bool
	needWakeup bool
	txBudget   int

	mu    sync.RWMutex // guards fd against Close while Statistics runs elsewhere
	fd    int
	mmaps [][]byte
}

// Open creates the socket, sets up its rings, registers or shares the UMEM and binds.
func Open(c Config) (*Socket, error) {
	for _, r := range []struct {
		what string
		n    int
	}{{"fill ring", c.FillSize}, {"completion ring", c.CompSize}, {"RX ring", c.RxSize}, {"TX ring", c.TxSize}} {
		if err := CheckSize(r.what, r.n); err != nil {
			return nil, fmt.Errorf("AF_XDP socket on %s queue %d: %w", c.Ifname, c.Queue, err)
		}
	}
	if c.Area == nil {
		return nil, fmt.Errorf("AF_XDP socket on %s queue %d: no UMEM area", c.Ifname, c.Queue)
	}
	if c.Queues > 0 && (c.Queue < 0 || c.Queue >= c.Queues) {
		return nil, &SocketError{Step: "check queue", Ifname: c.Ifname, Queue: c.Queue, Kind: ErrNoQueue, Advice: queueAdvice(c.Ifname, c.Queue, c.Queues)}
	}
	fd, err := unix.Socket(unix.AF_XDP, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, explain("create socket", c.Ifname, c.Queue, c.Queues, c.Bind, err)
	}
	s := &Socket{fd: fd, ifname: c.Ifname, queue: c.Queue}
	if err := s.setup(c); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

func (s *Socket) setup(c Config) error {
	fail := func(step string, err error) error {
		return explain(step, c.Ifname, c.Queue, c.Queues, c.Bind, err)
	}
	if c.Shared == nil {
		if err := c.Area.Register(s.fd); err != nil {
			if errors.Is(err, unix.EPERM) {
				return fail("register UMEM", unix.EPERM)
			}
			return fmt.Errorf("AF_XDP socket on %s queue %d: %w", c.Ifname, c.Queue, err)
		}
	}
	for _, o := range []struct {
		opt int
		n   int
	}{{unix.XDP_UMEM_FILL_RING, c.FillSize}, {unix.XDP_UMEM_COMPLETION_RING, c.CompSize}, {unix.XDP_RX_RING, c.RxSize}, {unix.XDP_TX_RING, c.TxSize}} {
		if err := unix.SetsockoptInt(s.fd, unix.SOL_XDP, o.opt, o.n); err != nil {
			return fail("set ring size", err)
		}
	}
	if c.BusyPoll {
		usec, budget := c.BusyPollUsec, c.BusyPollBudget
		if usec <= 0 {
			usec = 20
		}
		if budget <= 0 {
			budget = 64
		}
		for _, o := range []struct {
			opt, v int
			name   string
		}{{unix.SO_PREFER_BUSY_POLL, 1, "SO_PREFER_BUSY_POLL"}, {unix.SO_BUSY_POLL, usec, "SO_BUSY_POLL"}, {unix.SO_BUSY_POLL_BUDGET, budget, "SO_BUSY_POLL_BUDGET"}} {
			if err := unix.SetsockoptInt(s.fd, unix.SOL_SOCKET, o.opt, o.v); err != nil {
				return fail("set "+o.name, err)
			}
		}
	}
	var off unix.XDPMmapOffsets
	optlen := uint32(unsafe.Sizeof(off))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(s.fd), unix.SOL_XDP, unix.XDP_MMAP_OFFSETS,
		uintptr(unsafe.Pointer(&off)), uintptr(unsafe.Pointer(&optlen)), 0); e != 0 {
		return fail("get ring offsets", e)
	}
	fill, fillBase, err := s.mapRing(off.Fr, c.FillSize, 8, unix.XDP_UMEM_PGOFF_FILL_RING, true)
	if err != nil {
		return fail("mmap fill ring", err)
	}
	s.Fill = &FillRing{ring: fill, addrs: addrSlice(fillBase, off.Fr.Desc, uint32(c.FillSize))}
	comp, compBase, err := s.mapRing(off.Cr, c.CompSize, 8, unix.XDP_UMEM_PGOFF_COMPLETION_RING, false)
	if err != nil {
		return fail("mmap completion ring", err)
	}
	s.Comp = &CompRing{ring: comp, addrs: addrSlice(compBase, off.Cr.Desc, uint32(c.CompSize))}
	descSize := uint64(unsafe.Sizeof(unix.XDPDesc{}))
	rx, rxBase, err := s.mapRing(off.Rx, c.RxSize, descSize, unix.XDP_PGOFF_RX_RING, false)
	if err != nil {
		return fail("mmap RX ring", err)
	}
	s.RX = &RxRing{ring: rx, descs: descSlice(rxBase, off.Rx.Desc, uint32(c.RxSize))}
	tx, txBase, err := s.mapRing(off.Tx, c.TxSize, descSize, unix.XDP_PGOFF_TX_RING, true)
	if err != nil {
		return fail("mmap TX ring", err)
	}
	s.TX = &TxRing{ring: tx, descs: descSlice(txBase, off.Tx.Desc, uint32(c.TxSize))}

	sa := &unix.SockaddrXDP{Ifindex: uint32(c.Ifindex), QueueID: uint32(c.Queue)}
	if c.Shared != nil {
		// The kernel refuses mode flags on a sharing socket: it takes them from the UMEM's first socket.
		sa.Flags = unix.XDP_SHARED_UMEM
		sa.SharedUmemFD = uint32(c.Shared.fd)
	} else {
		switch c.Bind {
		case BindZeroCopy:
			sa.Flags |= unix.XDP_ZEROCOPY
		case BindCopy:
			sa.Flags |= unix.XDP_COPY
		}
		if c.NeedWakeup {
			sa.Flags |= unix.XDP_USE_NEED_WAKEUP
		}
	}
	if c.Ifindex <= 0 {
		return fail("bind", unix.ENODEV)
	}
	if err := unix.Bind(s.fd, sa); err != nil {
		return fail("bind", err)
	}
	// XDP_OPTIONS says what the kernel chose (auto mode, or inherited from the sharing socket).
	opts, err := unix.GetsockoptInt(s.fd, unix.SOL_XDP, unix.XDP_OPTIONS)
	if err != nil {
		return fail("get options", err)
	}
	s.zeroCopy = opts&unix.XDP_OPTIONS_ZEROCOPY != 0
	s.txBudget = copyTxBatch
	if c.TxBudget > copyTxBatch && !s.zeroCopy {
		// Fewer system calls per batch: a copy-mode sendto stops after max_tx_budget frames. Older kernels
		// refuse the option (ENOPROTOOPT) and keep 32; that is only slower, not an error.
		n := min(c.TxBudget, c.TxSize)
		if unix.SetsockoptInt(s.fd, unix.SOL_XDP, unix.XDP_MAX_TX_SKB_BUDGET, n) == nil {
			s.txBudget = n
		}
	}
	if c.Shared != nil {
		s.needWakeup = c.Shared.needWakeup
	} else {
		s.needWakeup = c.NeedWakeup
	}
	return nil
}

func (s *Socket) mmap(length uint64, pgoff int64) (unsafe.Pointer, error) {
	mem, err := unix.Mmap(s.fd, pgoff, int(length), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		return nil, err
	}
	s.mmaps = append(s.mmaps, mem)
	return unsafe.Pointer(&mem[0]), nil
}

// mapRing maps one ring of size entries of entrySize bytes at pgoff and returns its index part, set up for
// the producer or consumer side, and the mapping's base for the entries.
func (s *Socket) mapRing(off unix.XDPRingOffset, size int, entrySize uint64, pgoff int64, prod bool) (ring, unsafe.Pointer, error) {
	var r ring
	base, err := s.mmap(off.Desc+uint64(size)*entrySize, pgoff)
	if err != nil {
		return r, nil, err
	}
	r.init(base, off, uint32(size), prod)
	return r, base, nil
}

// FD is the socket's file descriptor (for the XSKMAP and poll(2)); -1 after Close.
func (s *Socket) FD() int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.fd
}

// copyTxBatch is the kernel's TX_BATCH_SIZE: what one copy-mode sendto sends without XDP_MAX_TX_SKB_BUDGET.
const copyTxBatch = 32

// TxBudget is the most frames one copy-mode kick transmits (see Config.TxBudget).
func (s *Socket) TxBudget() int { return s.txBudget }

// ZeroCopy reports whether the kernel bound the socket in zero-copy mode.
func (s *Socket) ZeroCopy() bool { return s.zeroCopy }

// NeedWakeup reports whether the socket uses XDP_USE_NEED_WAKEUP.
func (s *Socket) NeedWakeup() bool { return s.needWakeup }

// Ifname and Queue say where the socket is bound.
func (s *Socket) Ifname() string { return s.ifname }

// Queue is the queue id the socket is bound to.
func (s *Socket) Queue() int { return s.queue }

// Kick asks the kernel to send what is on the TX ring (sendto with MSG_DONTWAIT). In copy mode the kernel
// transmits inside this call; in zero-copy mode it schedules the driver. EAGAIN, EBUSY, ENOBUFS and ENETDOWN
// mean "not now": the descriptors stay on the ring and the next kick retries, so they are not errors.
//
// Kick and WakeRx are raw system calls, invisible to the Go scheduler: they never block (MSG_DONTWAIT), but in
// copy mode a kick transmits up to 32 frames and takes 20-30 us, long enough for the runtime's sysmon to see
// the calling goroutine's P "blocked in a system call", hand it off, and keep polling every 20 us. With the
// ordinary syscall that cost a busy poller about 13% of its CPU (sysmon's thread ran on the poller's CPU) and
// l2fwd about a sixth of its packet rate on veth. A raw call holds the P, which a poller pinned to its own
// thread wants anyway.
func (s *Socket) Kick() error {
	_, _, e := unix.RawSyscall6(unix.SYS_SENDTO, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
	switch e {
	case 0, unix.EAGAIN, unix.EBUSY, unix.ENOBUFS, unix.ENETDOWN:
		return nil
	}
	return e
}

// WakeRx asks the kernel to refill the driver from the fill ring when the fill ring says need_wakeup
// (recvfrom with MSG_DONTWAIT, as libxdp's xsk_ring_prod__needs_wakeup users do). Errors are "not now".
func (s *Socket) WakeRx() {
	unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(s.fd), 0, 0, unix.MSG_DONTWAIT, 0, 0)
}

// Statistics reads the kernel's counters for the socket (XDP_STATISTICS). Safe from any goroutine.
func (s *Socket) Statistics() (unix.XDPStatistics, error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	var st unix.XDPStatistics
	if s.fd < 0 {
		return st, fmt.Errorf("statistics of %s queue %d: socket closed", s.ifname, s.queue)
	}
	optlen := uint32(unsafe.Sizeof(st))
	if _, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(s.fd), unix.SOL_XDP, unix.XDP_STATISTICS,
		uintptr(unsafe.Pointer(&st)), uintptr(unsafe.Pointer(&optlen)), 0); e != 0 {
		return st, fmt.Errorf("statistics of %s queue %d: %w", s.ifname, s.queue, e)
	}
	return st, nil
}

// CloseFD closes the socket but keeps the rings mapped, so that their last contents (frames still on the fill
// ring) can be read back after the kernel has let go of them. Unmap finishes the job.
func (s *Socket) CloseFD() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fd < 0 {
		return nil
	}
	err := unix.Close(s.fd)
	s.fd = -1
	return err
}

// Unmap unmaps the rings; the socket must be closed (CloseFD) first, and the rings are unusable afterwards.
func (s *Socket) Unmap() error {
	var errs []error
	for _, m := range s.mmaps {
		if err := unix.Munmap(m); err != nil {
			errs = append(errs, err)
		}
	}
	s.mmaps = nil
	return errors.Join(errs...)
}

// Close closes the socket and unmaps its rings.
func (s *Socket) Close() error {
	return errors.Join(s.CloseFD(), s.Unmap())
}
