package poller

import (
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/xdpnet/xdpnet/internal/xdpprog"
	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/rings"
	"github.com/xdpnet/xdpnet/umem"
)

// PollMode is how a queue's loop waits for traffic.
type PollMode int

const (
	// Adaptive spins while traffic flows and sleeps in poll(2) after IdleSpins empty loops, as NAPI goes back
	// to interrupts. It is the default.
	Adaptive PollMode = iota
	// Busy spins all the time: lowest latency, one full core per queue.
	Busy
)

func (m PollMode) String() string {
	switch m {
	case Adaptive:
		return "adaptive"
	case Busy:
		return "busy"
	}
	return "PollMode(" + strconv.Itoa(int(m)) + ")"
}

// ParsePollMode reads "adaptive" or "busy".
func ParsePollMode(s string) (PollMode, error) {
	switch s {
	case "adaptive", "":
		return Adaptive, nil
	case "busy":
		return Busy, nil
	}
	return 0, fmt.Errorf("unknown poll mode %q (want adaptive or busy)", s)
}

// XDPMode is how the XDP program that steers frames into the sockets is attached (ip link's xdpdrv/xdpgeneric).
type XDPMode int

const (
	// XDPAuto tries native mode and falls back to generic mode if the driver refuses; New logs why.
	XDPAuto XDPMode = iota
	// XDPNative runs the program in the driver's receive path, before an skb exists (XDP_FLAGS_DRV_MODE).
	// Only native mode gives AF_XDP zero-copy and the full speed.
	XDPNative
	// XDPGeneric runs the program after the skb is built (XDP_FLAGS_SKB_MODE). Any interface supports it;
	// AF_XDP then works in copy mode only.
	XDPGeneric
)

// String returns "auto", "native" or "generic", the words ParseXDPMode reads.
func (m XDPMode) String() string {
	if m < XDPAuto || m > XDPGeneric {
		return "XDPMode(" + strconv.Itoa(int(m)) + ")"
	}
	return m.internal().String()
}

// ParseXDPMode reads "auto" (or ""), "native" or "generic".
func ParseXDPMode(s string) (XDPMode, error) {
	switch s {
	case "auto", "":
		return XDPAuto, nil
	case "native":
		return XDPNative, nil
	case "generic":
		return XDPGeneric, nil
	}
	return 0, fmt.Errorf("unknown XDP mode %q (want auto, native or generic)", s)
}

// internal is the attach mode as xdpprog spells it (withDefaults refuses other values).
func (m XDPMode) internal() xdpprog.Mode {
	switch m {
	case XDPAuto:
		return xdpprog.ModeAuto
	case XDPNative:
		return xdpprog.ModeNative
	case XDPGeneric:
		return xdpprog.ModeGeneric
	}
	return xdpprog.Mode(m)
}

// Bind modes, re-exported so that a poller user needs only this package.
const (
	BindAuto     = rings.BindAuto
	BindZeroCopy = rings.BindZeroCopy
	BindCopy     = rings.BindCopy
)

// Config describes a Poller. Zero values take the defaults noted.
type Config struct {
	// Interfaces are the ports: port i is Interfaces[i]. They are looked up in the network namespace of the
	// thread that calls New.
	Interfaces []string
	// Queues is the number of queue indexes, 0..Queues-1, each with its own goroutine (default 1).
	Queues int
	// CPUs pins queue q to CPUs[q%len(CPUs)]; empty means no pinning.
	CPUs []int
	// Mode is Adaptive (default) or Busy.
	Mode PollMode
	// Bind is the AF_XDP bind mode (default BindAuto: zero-copy when the driver can).
	Bind rings.BindMode
	// XDPMode is the XDP attach mode (default XDPAuto: native, falling back to generic).
	XDPMode XDPMode
	// ReplaceXDP allows displacing an XDP program attached through netlink.
	ReplaceXDP bool
	// Steer chooses the frames that go to the handlers, leaving the others to Linux (see Steer); nil takes
	// every frame of the ports.
	Steer *Steer
	// BusyPoll sets SO_PREFER_BUSY_POLL/SO_BUSY_POLL/SO_BUSY_POLL_BUDGET on the sockets and makes Busy mode
	// drive the driver with recvfrom when idle.
	BusyPoll bool
	// HugePages backs each UMEM with huge pages when available.
	HugePages bool

	// FrameSize is 2048 (default) or 4096.
	FrameSize int
	// Headroom is the UMEM headroom in front of each packet, beyond the kernel's 256 (default 256).
	Headroom int
	// FramesPerQueue is the UMEM size of each queue in frames (default max(8192, 2*ports*RingSize)).
	FramesPerQueue int
	// RingSize is the size of every ring, a power of two (default 2048).
	RingSize int
	// Budget is the most RX descriptors taken from one port per batch (default 64, at most pipeline.MaxBatch).
	Budget int
	// IdleSpin is how long Adaptive mode keeps polling after the last packet before it sleeps in poll(2)
	// (default 50us): long enough to catch the reply of a request it just forwarded (each round trip
	// crosses the router twice) and the next packet of a burst without paying a wake-up; short enough that
	// under partial load the CPU goes back to others. Like interrupt coalescing, it trades CPU for latency.
	IdleSpin time.Duration
	// IdleTimeout is the longest Adaptive mode sleeps when Tick asks for no wakeup (default 100ms).
	IdleTimeout time.Duration

	// NewHandler builds each queue's Handler (required).
	NewHandler pipeline.NewHandler
	// Logger receives setup notices (mode fallbacks); nil means slog.Default().
	Logger *slog.Logger

	// attach loads and attaches the XDP program of one port (ifindex, in the namespace of the thread that
	// calls New, or of the link watcher when an interface is re-created); nil means xdpprog.Attach, the
	// program that redirects every frame of a queue. It is not public: its types live in internal/xdpprog.
	// The module's own commands set it through xdpprog.SetPollerAttach (kernel-mirror mode attaches the
	// transit program), tests of this package directly.
	attach xdpprog.AttachFunc
}

func init() {
	xdpprog.SetPollerAttach = func(cfg any, f xdpprog.AttachFunc) { cfg.(*Config).attach = f }
}

func (c *Config) withDefaults() (Config, error) {
	d := *c
	if len(d.Interfaces) == 0 {
		return d, fmt.Errorf("poller: no interfaces (set Config.Interfaces)")
	}
	if len(d.Interfaces) > 1<<16 {
		return d, fmt.Errorf("poller: %d interfaces; at most 65536 ports", len(d.Interfaces))
	}
	seen := map[string]bool{}
	for _, n := range d.Interfaces {
		if seen[n] {
			return d, fmt.Errorf("poller: interface %s listed twice (each port is one interface)", n)
		}
		seen[n] = true
	}
	if d.NewHandler == nil {
		return d, fmt.Errorf("poller: no Config.NewHandler")
	}
	if d.Queues == 0 {
		d.Queues = 1
	}
	if d.Queues < 0 {
		return d, fmt.Errorf("poller: Queues %d: must be positive", d.Queues)
	}
	if d.XDPMode < XDPAuto || d.XDPMode > XDPGeneric {
		return d, fmt.Errorf("poller: unknown XDP mode %v (use XDPAuto, XDPNative or XDPGeneric)", d.XDPMode)
	}
	if d.Steer != nil {
		if d.attach != nil {
			return d, fmt.Errorf("poller: Config.Steer cannot be combined with the program the module's own command chose (kernel-mirror mode); leave Steer nil there")
		}
		f, err := d.steerAttach()
		if err != nil {
			return d, err
		}
		d.attach = f
	}
	if d.attach == nil {
		d.attach = xdpprog.Attach
	}
	if d.Mode != Adaptive && d.Mode != Busy {
		return d, fmt.Errorf("poller: unknown poll mode %v (use Adaptive or Busy)", d.Mode)
	}
	if d.Bind < rings.BindAuto || d.Bind > rings.BindCopy {
		return d, fmt.Errorf("poller: unknown bind mode %v (use BindAuto, BindZeroCopy or BindCopy)", d.Bind)
	}
	if d.FrameSize == 0 {
		d.FrameSize = umem.FrameSize2K
	}
	if d.FrameSize != umem.FrameSize2K && d.FrameSize != umem.FrameSize4K {
		return d, fmt.Errorf("poller: frame size %d: %w", d.FrameSize, umem.ErrFrameSize)
	}
	if d.Headroom == 0 {
		d.Headroom = 256
	}
	if d.RingSize == 0 {
		d.RingSize = 2048
	}
	if err := rings.CheckSize("poller: ring", d.RingSize); err != nil {
		return d, err
	}
	if d.FramesPerQueue == 0 {
		d.FramesPerQueue = max(8192, 2*len(d.Interfaces)*d.RingSize)
	}
	if need := len(d.Interfaces)*64 + pipeline.MaxBatch; d.FramesPerQueue < need {
		return d, fmt.Errorf("poller: FramesPerQueue %d is too few for %d port(s); use at least %d (about 2 x ports x RingSize is comfortable)",
			d.FramesPerQueue, len(d.Interfaces), need)
	}
	if d.Budget == 0 {
		d.Budget = 64
	}
	if d.Budget < 1 || d.Budget > pipeline.MaxBatch {
		return d, fmt.Errorf("poller: Budget %d out of range 1..%d (pipeline.MaxBatch)", d.Budget, pipeline.MaxBatch)
	}
	if d.IdleSpin == 0 {
		d.IdleSpin = 50 * time.Microsecond
	}
	if d.IdleSpin < 0 || d.IdleSpin > time.Second {
		return d, fmt.Errorf("poller: IdleSpin %v out of range 0..1s", d.IdleSpin)
	}
	if d.IdleTimeout == 0 {
		d.IdleTimeout = 100 * time.Millisecond
	}
	if d.Logger == nil {
		d.Logger = slog.Default()
	}
	return d, nil
}
