package poller

import (
	"errors"
	"fmt"
	"runtime"
	"strconv"
	"strings"
	"unsafe"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/proto"
	"github.com/xdpnet/xdpnet/umem"
)

// Checks New makes on each interface before it takes it, so that a user on a real NIC does not lose traffic
// silently: the MTU must fit a frame (else refused: ErrMTU), and every RX queue the interface uses should
// have a socket (else a warning naming the queues whose traffic goes to the kernel instead).

// ErrMTU: the interface's MTU is larger than a UMEM frame can hold.
var ErrMTU = errors.New("MTU does not fit a UMEM frame")

// maxMTU is the largest MTU whose full-size frames fit a UMEM frame: what is left after the kernel's
// XDP_PACKET_HEADROOM, the UMEM headroom and the Ethernet header. A longer frame would be dropped by the
// kernel on receive (copy mode counts it in rx_dropped), and the stack could not build one to send.
func maxMTU(frameSize, headroom int) int {
	return frameSize - umem.XDPPacketHeadroom - headroom - proto.EthernetHeaderLen
}

// checkMTU refuses an interface whose MTU does not fit, with the numbers and what to do.
func checkMTU(name string, mtu, frameSize, headroom int) error {
	room := maxMTU(frameSize, headroom)
	if mtu <= room {
		return nil
	}
	alt := ""
	if frameSize < umem.FrameSize4K && mtu <= maxMTU(umem.FrameSize4K, headroom) {
		alt = " or use 4096-byte frames (Config.FrameSize),"
	}
	return fmt.Errorf("poller: %s has MTU %d, but a %d-byte frame holds packets of at most %d bytes (%d - %d kernel headroom - %d headroom - %d Ethernet header): %w; lower the MTU (ip link set dev %s mtu %d),%s or a smaller Config.Headroom",
		name, mtu, frameSize, room, frameSize, umem.XDPPacketHeadroom, headroom, proto.EthernetHeaderLen, ErrMTU, name, room, alt)
}

// startChecks refuses an interface whose MTU does not fit a frame and warns about RX queues no socket
// serves.
func (p *Poller) startChecks(a *netlink.LinkAttrs) error {
	c := &p.cfg
	if err := checkMTU(a.Name, a.MTU, c.FrameSize, c.Headroom); err != nil {
		return err
	}
	active, known := activeRxQueues(a.Name)
	if !known {
		active = max(a.NumRxQueues, 1) // allocated, which may be more than the driver uses
	}
	if active > c.Queues {
		p.log.Warn("poller: "+queueAdvice(a.Name, c.Queues, active), "interface", a.Name, "queues_served", c.Queues,
			"rx_queues", active, "rx_queues_unserved", unservedQueues(c.Queues, active))
	}
	return nil
}

// ifreqData is struct ifreq with its union holding ifr_data, the pointer SIOCETHTOOL reads (x/sys/unix keeps
// its pointer-carrying ifreq unexported): 16 bytes of name, then the 24-byte union.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// ethtoolChannels is struct ethtool_channels (include/uapi/linux/ethtool.h).
type ethtoolChannels struct {
	cmd                                       uint32
	maxRx, maxTx, maxOther, maxCombined       uint32
	rxCount, txCount, otherCount, combinedCnt uint32
}

// activeRxQueues is the number of RX queues ifname uses now, as `ethtool -l` shows them (rx + combined
// channels). It asks in the calling thread's network namespace. ok is false when the driver does not say
// (no ETHTOOL_GCHANNELS); the caller then knows only the number of queues allocated.
func activeRxQueues(ifname string) (n int, ok bool) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return 0, false
	}
	defer unix.Close(fd)
	ch := ethtoolChannels{cmd: unix.ETHTOOL_GCHANNELS}
	var ifr ifreqData
	copy(ifr.name[:unix.IFNAMSIZ-1], ifname)
	ifr.data = unsafe.Pointer(&ch)
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&ifr)
	runtime.KeepAlive(&ch)
	if errno != 0 {
		return 0, false
	}
	n = int(ch.rxCount + ch.combinedCnt)
	return n, n > 0
}

// unservedQueues lists the RX queues from served up to active-1 as "1-3" (or "" when none).
func unservedQueues(served, active int) string {
	switch {
	case active <= served:
		return ""
	case active-1 == served:
		return strconv.Itoa(served)
	default:
		return strconv.Itoa(served) + "-" + strconv.Itoa(active-1)
	}
}

// queueAdvice is the warning for an interface with RX queues that have no socket: the XDP program passes
// their frames to the kernel (no XSKMAP entry), so that traffic bypasses the pipeline unnoticed.
func queueAdvice(name string, served, active int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "RX queues %s of %s have no AF_XDP socket: frames the NIC steers there (RSS) go to the kernel, not to the pipeline; ", unservedQueues(served, active), name)
	fmt.Fprintf(&b, "serve all %d (Config.Queues; xdpfwd --queues %d), or steer everything to the served ones (ethtool -L %s combined %d; a veth: ethtool -L %s rx %d tx %d)",
		active, active, name, served, name, served, served)
	return b.String()
}
