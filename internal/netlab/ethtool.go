package netlab

import (
	"fmt"
	"runtime"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The ETHTOOL ioctl takes a struct ifreq whose union holds a pointer to the
// command structure (include/uapi/linux/if.h: ifr_data). x/sys/unix keeps its
// pointer-carrying ifreq unexported, hence this copy: 16 bytes of name, then
// the 24-byte union.
type ifreqData struct {
	name [unix.IFNAMSIZ]byte
	data unsafe.Pointer
	_    [24 - unsafe.Sizeof(uintptr(0))]byte
}

// ethtoolChannels is struct ethtool_channels (include/uapi/linux/ethtool.h).
type ethtoolChannels struct {
	cmd           uint32
	maxRx         uint32
	maxTx         uint32
	maxOther      uint32
	maxCombined   uint32
	rxCount       uint32
	txCount       uint32
	otherCount    uint32
	combinedCount uint32
}

// Channels is an interface's queue configuration as ethtool -l shows it.
type Channels struct {
	MaxRx, MaxTx, MaxCombined int
	Rx, Tx, Combined          int
}

// ethtool issues one SIOCETHTOOL ioctl for ifname; it must run inside Do.
func ethtool(fd int, ifname string, data unsafe.Pointer) error {
	var ifr ifreqData
	copy(ifr.name[:unix.IFNAMSIZ-1], ifname)
	ifr.data = data
	_, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SIOCETHTOOL, uintptr(unsafe.Pointer(&ifr)))
	runtime.KeepAlive(&ifr)
	if errno != 0 {
		return errno
	}
	return nil
}

// withEthtool runs fn with an ioctl socket opened inside the host.
func (h *Host) withEthtool(fn func(fd int) error) error {
	return h.Do(func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open ioctl socket: %w", err)
		}
		defer unix.Close(fd)
		return fn(fd)
	})
}

func getChannels(fd int, ifname string) (ethtoolChannels, error) {
	ch := ethtoolChannels{cmd: unix.ETHTOOL_GCHANNELS}
	err := ethtool(fd, ifname, unsafe.Pointer(&ch))
	runtime.KeepAlive(&ch)
	return ch, err
}

// Queues returns the queue configuration of ifname (ethtool -l).
func (h *Host) Queues(ifname string) (Channels, error) {
	var c Channels
	err := h.withEthtool(func(fd int) error {
		ch, err := getChannels(fd, ifname)
		if err != nil {
			return err
		}
		c = Channels{
			MaxRx: int(ch.maxRx), MaxTx: int(ch.maxTx), MaxCombined: int(ch.maxCombined),
			Rx: int(ch.rxCount), Tx: int(ch.txCount), Combined: int(ch.combinedCount),
		}
		return nil
	})
	if err != nil {
		return Channels{}, fmt.Errorf("get queues of %s in %s: %w", ifname, h.name, err)
	}
	return c, nil
}

// SetQueues sets ifname to n queues: n combined channels where the driver
// has them (ethtool -L DEV combined N), otherwise n RX and n TX queues (veth:
// ethtool -L DEV rx N tx N). A veth made by Link can have up to
// LinkOptions.Queues (default runtime.NumCPU()).
func (h *Host) SetQueues(ifname string, n int) error {
	if n <= 0 {
		return fmt.Errorf("set queues of %s in %s: %d queues, need at least 1", ifname, h.name, n)
	}
	err := h.withEthtool(func(fd int) error {
		ch, err := getChannels(fd, ifname)
		if err != nil {
			return fmt.Errorf("read channels: %w", err)
		}
		if ch.maxCombined > 0 {
			if uint32(n) > ch.maxCombined {
				return fmt.Errorf("%d combined queues asked, the driver allows at most %d", n, ch.maxCombined)
			}
			ch.combinedCount = uint32(n)
		} else {
			if uint32(n) > ch.maxRx || uint32(n) > ch.maxTx {
				return fmt.Errorf("%d queues asked, the driver allows at most %d RX and %d TX (create the veth with LinkOptions.Queues >= %d)", n, ch.maxRx, ch.maxTx, n)
			}
			ch.rxCount, ch.txCount = uint32(n), uint32(n)
		}
		ch.cmd = unix.ETHTOOL_SCHANNELS
		err = ethtool(fd, ifname, unsafe.Pointer(&ch))
		runtime.KeepAlive(&ch)
		return err
	})
	if err != nil {
		return fmt.Errorf("set queues of %s in %s to %d: %w", ifname, h.name, n, err)
	}
	return nil
}
