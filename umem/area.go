package umem

import (
	"errors"
	"fmt"
	"log/slog"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Frame sizes the kernel accepts in aligned mode that xdpnet supports: a frame must hold a full-MTU Ethernet
// frame plus headroom, and aligned chunks must be a power of two between 2048 and the page size.
const (
	FrameSize2K = 2048
	FrameSize4K = 4096
)

// XDPPacketHeadroom is the room the kernel reserves in front of every received packet (XDP_PACKET_HEADROOM), on
// top of the UMEM headroom given at registration.
const XDPPacketHeadroom = 256

// ErrFrameSize is matched by the error New returns for a frame size other than 2048 or 4096.
var ErrFrameSize = errors.New("frame size must be 2048 or 4096")

// Options describes an Area.
type Options struct {
	// Frames is the number of frames; it must be at least 1.
	Frames int
	// FrameSize is FrameSize2K or FrameSize4K.
	FrameSize int
	// Headroom is reserved by the kernel at the front of each received frame, after XDPPacketHeadroom is
	// added; with it stages can push headers (encapsulation) without moving the packet.
	Headroom int
	// HugePages asks for MAP_HUGETLB; when the system has no free huge pages the Area falls back to normal
	// pages and says so through Logger.
	HugePages bool
	// Logger receives the huge page fallback notice; nil means slog.Default().
	Logger *slog.Logger
}

// Area is the UMEM: Frames*FrameSize bytes mapped once, registered with one AF_XDP socket and shared by the
// others (XDP_SHARED_UMEM). Frame addresses are byte offsets into the Area; frame i starts at i*FrameSize.
type Area struct {
	mem       []byte
	frameSize int
	frames    int
	headroom  int
	huge      bool
}

// New maps an Area. The memory is populated at once (MAP_POPULATE), so the first packets do not take page
// faults.
func New(o Options) (*Area, error) {
	if o.FrameSize != FrameSize2K && o.FrameSize != FrameSize4K {
		return nil, fmt.Errorf("umem: frame size %d: %w (2048 fits a 1500-byte MTU frame with headroom, 4096 jumbo-ish frames up to ~3.5 KB)", o.FrameSize, ErrFrameSize)
	}
	if o.Frames < 1 {
		return nil, fmt.Errorf("umem: %d frames: need at least 1 (a queue needs about fill ring + TX ring + one batch)", o.Frames)
	}
	if o.Headroom < 0 || o.Headroom+XDPPacketHeadroom+128 > o.FrameSize {
		return nil, fmt.Errorf("umem: headroom %d leaves no room for a packet in a %d-byte frame (the kernel adds %d more); use a headroom below %d",
			o.Headroom, o.FrameSize, XDPPacketHeadroom, o.FrameSize-XDPPacketHeadroom-128)
	}
	size := o.Frames * o.FrameSize
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	flags := unix.MAP_PRIVATE | unix.MAP_ANONYMOUS | unix.MAP_POPULATE
	a := &Area{frameSize: o.FrameSize, frames: o.Frames, headroom: o.Headroom}
	if o.HugePages {
		const huge = 2 << 20
		hsize := (size + huge - 1) &^ (huge - 1)
		mem, err := unix.Mmap(-1, 0, hsize, unix.PROT_READ|unix.PROT_WRITE, flags|unix.MAP_HUGETLB)
		if err == nil {
			a.mem, a.huge = mem[:size], true
			return a, nil
		}
		log.Warn("umem: huge pages unavailable, using normal pages (reserve some with `sysctl vm.nr_hugepages=N`)",
			"bytes", hsize, "err", err)
	}
	mem, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, flags)
	if err != nil {
		return nil, fmt.Errorf("umem: mmap %d bytes: %w (lower the frame count or raise the memory limit)", size, err)
	}
	a.mem = mem
	return a, nil
}

// FrameSize is the size of one frame.
func (a *Area) FrameSize() int { return a.frameSize }

// Frames is the number of frames.
func (a *Area) Frames() int { return a.frames }

// Headroom is the UMEM headroom given to the kernel at registration.
func (a *Area) Headroom() int { return a.headroom }

// RxOffset is where the kernel places received data in a frame: XDP_PACKET_HEADROOM plus the UMEM headroom.
func (a *Area) RxOffset() int { return XDPPacketHeadroom + a.headroom }

// HugePages reports whether the Area is backed by huge pages.
func (a *Area) HugePages() bool { return a.huge }

// Bytes is the whole Area.
func (a *Area) Bytes() []byte { return a.mem }

// Base returns the address of the frame that contains addr (aligned mode: mask the low bits).
func (a *Area) Base(addr uint64) uint64 { return addr &^ uint64(a.frameSize-1) }

// Frame returns the frame that contains addr, as a full-capacity slice of FrameSize bytes. addr must lie in
// the Area (it panics otherwise, like any out-of-range slice).
func (a *Area) Frame(addr uint64) []byte {
	b := a.Base(addr)
	return a.mem[b : b+uint64(a.frameSize) : b+uint64(a.frameSize)]
}

// Contains reports whether addr lies inside the Area.
func (a *Area) Contains(addr uint64) bool { return addr < uint64(len(a.mem)) }

// Register registers the Area as the UMEM of the AF_XDP socket fd (XDP_UMEM_REG). Other sockets then share it by
// binding with XDP_SHARED_UMEM and fd.
func (a *Area) Register(fd int) error {
	reg := unix.XDPUmemReg{
		Addr:     uint64(uintptr(unsafe.Pointer(&a.mem[0]))),
		Len:      uint64(len(a.mem)),
		Size:     uint32(a.frameSize),
		Headroom: uint32(a.headroom),
	}
	_, _, errno := unix.Syscall6(unix.SYS_SETSOCKOPT, uintptr(fd), unix.SOL_XDP, unix.XDP_UMEM_REG,
		uintptr(unsafe.Pointer(&reg)), unsafe.Sizeof(reg), 0)
	if errno != 0 {
		return fmt.Errorf("register UMEM (%d frames of %d bytes): %w%s", a.frames, a.frameSize, errno, regHint(errno))
	}
	return nil
}

func regHint(e unix.Errno) string {
	switch e {
	case unix.EPERM:
		return " (run as root or grant CAP_NET_ADMIN, CAP_NET_RAW and CAP_IPC_LOCK)"
	case unix.ENOMEM, unix.ENOBUFS:
		return " (the UMEM is pinned: raise RLIMIT_MEMLOCK with `ulimit -l unlimited` or grant CAP_IPC_LOCK, or use fewer frames)"
	}
	return ""
}

// Close unmaps the Area. Sockets using it must be closed first.
func (a *Area) Close() error {
	if a.mem == nil {
		return nil
	}
	mem := a.mem
	a.mem = nil
	// cap covers the rounded-up huge page mapping too.
	return unix.Munmap(mem[:cap(mem)])
}
