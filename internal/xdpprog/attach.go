package xdpprog

import (
	"errors"
	"fmt"
	"math"
	"sync"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// Options tells Attach how to attach.
type Options struct {
	// Mode is the attach mode; the zero value ModeAuto tries native then generic.
	Mode Mode
	// Replace allows Attach to detach an XDP program that was attached through netlink (ip link, libbpf's
	// legacy path) before attaching ours. A program held by a bpf_link is never displaced.
	Replace bool
	// Queues is the number of XSKMAP slots, one per rx queue index. It must be at least the interface's
	// number of rx queues, or a frame on a higher queue could never reach a socket; 0 means exactly that
	// number.
	Queues int
}

// Program is the redirect program attached to one interface. See the package doc for concurrency.
type Program struct {
	ifname   string
	ifindex  int
	queues   int
	mode     Mode
	fallback error

	// mu guards closed against the map and link being closed under a concurrent Register.
	mu     sync.RWMutex
	closed bool
	xsks   *ebpf.Map
	prog   *ebpf.Program
	link   link.Link
}

// programBuilder turns the XSKMAP into the program to load; Attach uses redirectSpec, a later AttachTransit
// will pass its own.
type programBuilder func(xsks *ebpf.Map) (*ebpf.ProgramSpec, error)

// Attach loads the redirect program with an XSKMAP of opts.Queues slots and attaches it to the interface
// ifindex (in the calling thread's network namespace) through a bpf_link, so that it is detached when the
// Program is closed or the process exits.
func Attach(ifindex int, opts Options) (*Program, error) {
	return attach(ifindex, opts, redirectSpec)
}

var (
	memlockMu   sync.Mutex
	memlockDone bool
)

// removeMemlock lifts RLIMIT_MEMLOCK once per process: kernels before 5.11 charge BPF maps and programs
// against it and the default (64 KiB or 8 MiB) is too small. On newer kernels (memcg accounting) it is a no-op.
// A failure is not remembered (unlike sync.Once would): a call from a thread without capabilities must not
// spoil later calls from one that has them.
func removeMemlock() error {
	memlockMu.Lock()
	defer memlockMu.Unlock()
	if memlockDone {
		return nil
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return err
	}
	memlockDone = true
	return nil
}

func attach(ifindex int, opts Options, build programBuilder) (*Program, error) {
	if opts.Mode < ModeAuto || opts.Mode > ModeGeneric {
		return nil, fmt.Errorf("attach XDP program to interface index %d: invalid mode %v (use ModeAuto, ModeNative or ModeGeneric)", ifindex, opts.Mode)
	}
	nlink, err := lookupLink(ifindex)
	if err != nil {
		return nil, err
	}
	attrs := nlink.Attrs()
	name := attrs.Name

	queues := opts.Queues
	rxq := max(attrs.NumRxQueues, 1)
	switch {
	case queues == 0:
		queues = rxq
	case queues < 0 || queues > math.MaxUint32:
		return nil, fmt.Errorf("attach XDP program to %s: Options.Queues %d out of range (use 0 for the number of rx queues, %d)", name, opts.Queues, rxq)
	case queues < rxq:
		return nil, fmt.Errorf("attach XDP program to %s: Options.Queues %d is less than the %d rx queues of %s; set it to at least %d (or 0)", name, queues, rxq, name, rxq)
	}

	if err := removeMemlock(); err != nil {
		return nil, wrapErr(name, "remove RLIMIT_MEMLOCK", err)
	}

	// Refuse early, before loading anything, when the interface is taken and Replace is not set.
	if xdp := attrs.Xdp; xdp != nil && xdp.Attached && !opts.Replace {
		return nil, displace(nlink, xdp, false)
	}

	xsks, err := ebpf.NewMap(xsksSpec(queues))
	if err != nil {
		return nil, wrapErr(name, "create XSKMAP", err)
	}
	spec, err := build(xsks)
	if err != nil {
		xsks.Close()
		return nil, fmt.Errorf("attach XDP program to %s: build program: %w", name, err)
	}
	prog, err := ebpf.NewProgram(spec)
	if err != nil {
		xsks.Close()
		return nil, wrapErr(name, "load program", err)
	}

	// Detach a program we may replace only now that ours has passed the verifier, so that a load failure
	// leaves the interface as it was.
	var replaced uint32
	if xdp := attrs.Xdp; xdp != nil && xdp.Attached {
		if err := displace(nlink, xdp, true); err != nil {
			prog.Close()
			xsks.Close()
			return nil, err
		}
		replaced = xdp.ProgId
	}

	l, mode, fallback, err := attachLink(prog, ifindex, name, opts.Mode)
	if err != nil {
		if replaced != 0 {
			err = fmt.Errorf("%w (the replaced program id %d was already detached)", err, replaced)
		}
		prog.Close()
		xsks.Close()
		if errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) {
			// Someone attached between our check and ours; say who, as the check would have.
			if ae := attachedNow(ifindex); ae != nil {
				return nil, ae
			}
		}
		return nil, wrapErr(name, "attach in "+opts.Mode.String()+" mode", err)
	}
	return &Program{
		ifname:   name,
		ifindex:  ifindex,
		queues:   queues,
		mode:     mode,
		fallback: fallback,
		xsks:     xsks,
		prog:     prog,
		link:     l,
	}, nil
}

// lookupLink finds ifindex in the calling thread's network namespace.
func lookupLink(ifindex int) (netlink.Link, error) {
	l, err := netlink.LinkByIndex(ifindex)
	if err == nil {
		return l, nil
	}
	var nf netlink.LinkNotFoundError
	if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) || ifindex <= 0 {
		return nil, fmt.Errorf("attach XDP program to interface index %d: %w (check `ip -o link` in the network namespace of the calling thread)", ifindex, ErrNoInterface)
	}
	return nil, wrapErr(fmt.Sprintf("interface index %d", ifindex), "look up interface", err)
}

// attachLink attaches prog in the requested mode and returns the mode in effect and, for ModeAuto that had to
// fall back to generic mode, the reason native mode was refused.
func attachLink(prog *ebpf.Program, ifindex int, ifname string, want Mode) (l link.Link, got Mode, fallback error, err error) {
	try := func(flags link.XDPAttachFlags) (link.Link, error) {
		return link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: flags})
	}
	switch want {
	case ModeNative:
		l, err = try(link.XDPDriverMode)
		return l, ModeNative, nil, err
	case ModeGeneric:
		l, err = try(link.XDPGenericMode)
		return l, ModeGeneric, nil, err
	}
	l, err = try(link.XDPDriverMode)
	if err == nil {
		return l, ModeNative, nil, nil
	}
	// A permission problem or a conflicting program would fail generic mode the same way; reporting the
	// native error keeps the message about the real cause.
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EBUSY) || errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENODEV) {
		return nil, ModeAuto, nil, err
	}
	native := err
	l, err = try(link.XDPGenericMode)
	if err != nil {
		return nil, ModeAuto, nil, fmt.Errorf("native mode: %v; generic mode: %w", native, err)
	}
	return l, ModeGeneric, fmt.Errorf("native mode refused by the driver of %s: %w", ifname, native), nil
}

// displace handles an XDP program already on the interface: an *AttachedError unless replace is set and the
// program was attached through netlink, in which case it is detached through netlink.
func displace(nlink netlink.Link, xdp *netlink.LinkXdp, replace bool) error {
	attrs := nlink.Attrs()
	ae := &AttachedError{
		Ifname:    attrs.Name,
		Ifindex:   attrs.Index,
		ProgramID: xdp.ProgId,
		Generic:   xdp.AttachMode == nl.XDP_ATTACHED_SKB,
	}
	ae.LinkID, ae.ViaLink = owningLink(attrs.Index, xdp.ProgId)
	if !replace || ae.ViaLink {
		return ae
	}
	var flags int
	switch xdp.AttachMode {
	case nl.XDP_ATTACHED_DRV:
		flags = nl.XDP_FLAGS_DRV_MODE
	case nl.XDP_ATTACHED_SKB:
		flags = nl.XDP_FLAGS_SKB_MODE
	default:
		// Offloaded or several programs at once: detaching the wrong one would be worse than refusing.
		return fmt.Errorf("%w (it is attached in offload or multi mode, which Replace does not handle)", ae)
	}
	if err := netlink.LinkSetXdpFdWithFlags(nlink, -1, flags); err != nil {
		if errors.Is(err, unix.EBUSY) {
			// The kernel says "Can't replace active BPF XDP link": owningLink could not see it (a race, or
			// link ids not readable); report it as link-owned all the same.
			ae.LinkID, _ = owningLink(attrs.Index, xdp.ProgId)
			ae.ViaLink = true
			return ae
		}
		return wrapErr(attrs.Name, fmt.Sprintf("detach XDP program id %d", xdp.ProgId), err)
	}
	return nil
}

// owningLink returns the id of the XDP bpf_link that holds progID on ifindex; ok is false if there is none (the
// program was attached through netlink) or links cannot be listed. Link ids are global while ifindexes are per
// namespace, so the program id, which is global too, is what really identifies the link.
func owningLink(ifindex int, progID uint32) (id uint32, ok bool) {
	it := new(link.Iterator)
	defer it.Close()
	for it.Next() {
		info, err := it.Link.Info()
		if err != nil || info.Type != link.XDPType || info.Program != ebpf.ProgramID(progID) {
			continue
		}
		if x := info.XDP(); x != nil && x.Ifindex == uint32(ifindex) {
			return uint32(it.ID), true
		}
	}
	return 0, false
}

// attachedNow returns the *AttachedError for what is attached to ifindex now, or nil.
func attachedNow(ifindex int) *AttachedError {
	nlink, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		return nil
	}
	xdp := nlink.Attrs().Xdp
	if xdp == nil || !xdp.Attached {
		return nil
	}
	ae := &AttachedError{
		Ifname:    nlink.Attrs().Name,
		Ifindex:   ifindex,
		ProgramID: xdp.ProgId,
		Generic:   xdp.AttachMode == nl.XDP_ATTACHED_SKB,
	}
	ae.LinkID, ae.ViaLink = owningLink(ifindex, xdp.ProgId)
	return ae
}

// wrapErr adds the interface and the step, and turns any EPERM into the message that says how to fix it.
func wrapErr(ifname, step string, err error) error {
	if errors.Is(err, unix.EPERM) {
		return &permissionError{ifname: ifname, err: err}
	}
	return fmt.Errorf("attach XDP program to %s: %s: %w", ifname, step, err)
}

// AttachedProgramID reports the id of the XDP program attached to ifindex (in the calling thread's network
// namespace), whoever attached it, as netlink shows it. ok is false when none is attached. With programs in
// several modes at once the kernel reports no single id and id is 0 with ok true.
func AttachedProgramID(ifindex int) (id uint32, ok bool, err error) {
	l, err := netlink.LinkByIndex(ifindex)
	if err != nil {
		var nf netlink.LinkNotFoundError
		if errors.As(err, &nf) || errors.Is(err, unix.ENODEV) {
			return 0, false, fmt.Errorf("query XDP program of interface index %d: %w", ifindex, ErrNoInterface)
		}
		return 0, false, fmt.Errorf("query XDP program of interface index %d: %w", ifindex, err)
	}
	xdp := l.Attrs().Xdp
	if xdp == nil || !xdp.Attached {
		return 0, false, nil
	}
	return xdp.ProgId, true, nil
}

// Register puts the AF_XDP socket xskFD in the XSKMAP slot of queue: from now on frames received on that
// queue go to the socket. The kernel keeps a reference to the socket, not the fd number, and empties the
// slot by itself when the socket is closed.
func (p *Program) Register(queue int, xskFD int) error {
	if queue < 0 || queue >= p.queues {
		return fmt.Errorf("register AF_XDP socket on %s: queue %d out of range [0, %d) (raise Options.Queues)", p.ifname, queue, p.queues)
	}
	if xskFD < 0 || xskFD > math.MaxInt32 {
		return fmt.Errorf("register AF_XDP socket on %s queue %d: invalid fd %d", p.ifname, queue, xskFD)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	if err := p.xsks.Update(uint32(queue), uint32(xskFD), ebpf.UpdateAny); err != nil {
		if errors.Is(err, unix.EOPNOTSUPP) {
			return fmt.Errorf("register fd %d on %s queue %d: %w (the fd must be an AF_XDP socket)", xskFD, p.ifname, queue, err)
		}
		return fmt.Errorf("register fd %d on %s queue %d: %w", xskFD, p.ifname, queue, err)
	}
	return nil
}

// Unregister empties the XSKMAP slot of queue, so that its frames go back to the kernel stack. Emptying an
// empty slot is not an error.
func (p *Program) Unregister(queue int) error {
	if queue < 0 || queue >= p.queues {
		return fmt.Errorf("unregister AF_XDP socket on %s: queue %d out of range [0, %d)", p.ifname, queue, p.queues)
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return ErrClosed
	}
	if err := p.xsks.Delete(uint32(queue)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("unregister %s queue %d: %w", p.ifname, queue, err)
	}
	return nil
}

// Mode returns the mode in effect: ModeNative or ModeGeneric; ModeAuto only for a Program of UseXSKMap,
// whose XDP program (and its mode) is the embedder's.
func (p *Program) Mode() Mode { return p.mode }

// External reports whether the XDP program is someone else's (UseXSKMap).
func (p *Program) External() bool { return p.prog == nil }

// FallbackReason returns why native mode was refused when ModeAuto fell back to generic mode, nil otherwise.
// Callers should log it: generic mode means AF_XDP copy mode and a fraction of the native packet rate.
func (p *Program) FallbackReason() error { return p.fallback }

// Ifindex returns the interface the program is attached to.
func (p *Program) Ifindex() int { return p.ifindex }

// Queues returns the number of XSKMAP slots.
func (p *Program) Queues() int { return p.queues }

// ProgramID returns the kernel's id of the loaded program, the one AttachedProgramID and `ip link` show.
func (p *Program) ProgramID() (uint32, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	if p.closed {
		return 0, ErrClosed
	}
	if p.prog == nil {
		return 0, fmt.Errorf("program info on %s: the XDP program is not xdpnet's (UseXSKMap); ask AttachedProgramID", p.ifname)
	}
	info, err := p.prog.Info()
	if err != nil {
		return 0, fmt.Errorf("program info on %s: %w", p.ifname, err)
	}
	id, ok := info.ID()
	if !ok {
		return 0, fmt.Errorf("program info on %s: kernel reports no program id", p.ifname)
	}
	return uint32(id), nil
}

// Close detaches the program from the interface and frees the program and the XSKMAP. Frames go back to the
// kernel stack at once. For a Program of UseXSKMap it only releases its handle on the embedder's map (the
// sockets leave the map when they are closed). Close is idempotent.
func (p *Program) Close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	var errs []error
	if p.prog != nil {
		if err := p.link.Close(); err != nil {
			errs = append(errs, fmt.Errorf("detach XDP program from %s: %w", p.ifname, err))
		}
		if err := p.prog.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	if err := p.xsks.Close(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
