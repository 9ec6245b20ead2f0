package xdpprog

import (
	"errors"
	"fmt"
)

var (
	// ErrAlreadyAttached is matched (errors.Is) by the *AttachedError Attach returns when the interface
	// already runs an XDP program that Attach will not displace.
	ErrAlreadyAttached = errors.New("XDP program already attached")
	// ErrNoInterface: the ifindex names no interface in the calling thread's network namespace.
	ErrNoInterface = errors.New("no such network interface")
	// ErrClosed is returned by methods of a Program after Close.
	ErrClosed = errors.New("xdpprog: program closed")
)

// AttachedError describes the XDP program that stands in the way of Attach.
type AttachedError struct {
	Ifname    string
	Ifindex   int
	ProgramID uint32
	// Generic is true when the program runs in generic (SKB) mode, which changes the ip command to remove it.
	Generic bool
	// ViaLink is true when a bpf_link holds the program. A bpf_link lives as long as its owner holds it
	// open: neither Replace nor ip link can remove it. False means it was attached through netlink.
	ViaLink bool
	// LinkID is the id of that bpf_link, 0 if it could not be found out.
	LinkID uint32
}

func (e *AttachedError) Error() string {
	if e.ViaLink {
		link, find := "a bpf_link", "`bpftool link show` names it"
		if e.LinkID != 0 {
			link = fmt.Sprintf("bpf_link id %d", e.LinkID)
			find = fmt.Sprintf("`bpftool link show id %d` names it", e.LinkID)
		}
		return fmt.Sprintf("attach XDP program to %s: %s already has XDP program id %d attached through %s, "+
			"which another process (or another Program in this one) holds open; Replace cannot displace a bpf_link: "+
			"close that Program or stop its owner (%s)",
			e.Ifname, e.Ifname, e.ProgramID, link, find)
	}
	off := "xdp off"
	if e.Generic {
		off = "xdpgeneric off"
	}
	return fmt.Sprintf("attach XDP program to %s: %s already has XDP program id %d attached; "+
		"detach it with `ip link set dev %s %s` or pass Replace",
		e.Ifname, e.Ifname, e.ProgramID, e.Ifname, off)
}

// Is makes errors.Is(err, ErrAlreadyAttached) true.
func (e *AttachedError) Is(target error) bool { return target == ErrAlreadyAttached }

// permissionError is what any EPERM on the way to attaching becomes: the person reading it needs the fix,
// not which of the bpf(2) or netlink calls was the first to refuse. Unwrap keeps the detail (and makes
// errors.Is(err, os.ErrPermission) true).
type permissionError struct {
	ifname string
	err    error
}

func (e *permissionError) Error() string {
	return "attach XDP program to " + e.ifname +
		": operation not permitted (run as root or grant CAP_NET_ADMIN and CAP_BPF)"
}

func (e *permissionError) Unwrap() error { return e.err }
