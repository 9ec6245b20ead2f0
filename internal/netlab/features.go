package netlab

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"
	"sort"
	"strings"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Netdev features are switched the way ethtool -K does it: read the names
// of the feature bits (string set ETH_SS_FEATURES), then ETHTOOL_SFEATURES
// with a valid/requested bitmap. The legacy one-feature ioctls (ETHTOOL_STSO
// and friends) miss bits added later, such as tx-tcp-accecn-segmentation
// (Linux 6.18), so ethtool -k would still show TSO on.
const (
	ethSSFeatures = 4  // ETH_SS_FEATURES
	ethGstringLen = 32 // ETH_GSTRING_LEN
)

// featureNames returns the kernel's feature names, indexed by bit.
func featureNames(fd int, ifname string) ([]string, error) {
	// struct ethtool_sset_info { u32 cmd, reserved; u64 sset_mask; u32 data[]; }
	info := make([]byte, 16+4)
	binary.NativeEndian.PutUint32(info[0:], unix.ETHTOOL_GSSET_INFO)
	binary.NativeEndian.PutUint64(info[8:], 1<<ethSSFeatures)
	err := ethtool(fd, ifname, unsafe.Pointer(&info[0]))
	runtime.KeepAlive(info)
	if err != nil {
		return nil, fmt.Errorf("count features: %w", err)
	}
	if binary.NativeEndian.Uint64(info[8:])&(1<<ethSSFeatures) == 0 {
		return nil, fmt.Errorf("count features: driver reports no feature names")
	}
	n := int(binary.NativeEndian.Uint32(info[16:]))
	// struct ethtool_gstrings { u32 cmd, string_set, len; u8 data[]; }
	gs := make([]byte, 12+n*ethGstringLen)
	binary.NativeEndian.PutUint32(gs[0:], unix.ETHTOOL_GSTRINGS)
	binary.NativeEndian.PutUint32(gs[4:], ethSSFeatures)
	binary.NativeEndian.PutUint32(gs[8:], uint32(n))
	err = ethtool(fd, ifname, unsafe.Pointer(&gs[0]))
	runtime.KeepAlive(gs)
	if err != nil {
		return nil, fmt.Errorf("read feature names: %w", err)
	}
	names := make([]string, n)
	for i := range names {
		s := gs[12+i*ethGstringLen : 12+(i+1)*ethGstringLen]
		if j := bytes.IndexByte(s, 0); j >= 0 {
			s = s[:j]
		}
		names[i] = string(s)
	}
	return names, nil
}

// featureState is one feature's bits from ETHTOOL_GFEATURES.
type featureState struct {
	available, requested, active, neverChanged bool
}

// getFeatures returns the state of every feature bit.
func getFeatures(fd int, ifname string, n int) ([]featureState, error) {
	words := (n + 31) / 32
	// struct ethtool_gfeatures { u32 cmd, size; struct { u32 available,
	// requested, active, never_changed; } features[size]; }
	buf := make([]byte, 8+words*16)
	binary.NativeEndian.PutUint32(buf[0:], unix.ETHTOOL_GFEATURES)
	binary.NativeEndian.PutUint32(buf[4:], uint32(words))
	err := ethtool(fd, ifname, unsafe.Pointer(&buf[0]))
	runtime.KeepAlive(buf)
	if err != nil {
		return nil, fmt.Errorf("read features: %w", err)
	}
	st := make([]featureState, n)
	for i := range st {
		w := buf[8+(i/32)*16:]
		bit := uint32(1) << (i % 32)
		st[i] = featureState{
			available:    binary.NativeEndian.Uint32(w[0:])&bit != 0,
			requested:    binary.NativeEndian.Uint32(w[4:])&bit != 0,
			active:       binary.NativeEndian.Uint32(w[8:])&bit != 0,
			neverChanged: binary.NativeEndian.Uint32(w[12:])&bit != 0,
		}
	}
	return st, nil
}

// Features returns the active netdev features of ifname by kernel name, as
// ethtool -k lists them ("rx-gro", "tx-tcp-segmentation", ...).
func (h *Host) Features(ifname string) (map[string]bool, error) {
	m := map[string]bool{}
	err := h.withEthtool(func(fd int) error {
		names, err := featureNames(fd, ifname)
		if err != nil {
			return err
		}
		st, err := getFeatures(fd, ifname, len(names))
		if err != nil {
			return err
		}
		for i, n := range names {
			if n != "" {
				m[n] = st[i].active
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read features of %s in %s: %w", ifname, h.name, err)
	}
	return m, nil
}

// SetFeatures switches netdev features of ifname by kernel name, like
// ethtool -K with the long names. It fails on a name the kernel does not
// know or a feature the driver cannot change, and when the kernel keeps a
// feature other than asked (a dependency such as TSO needing TX checksums).
func (h *Host) SetFeatures(ifname string, want map[string]bool) error {
	err := h.withEthtool(func(fd int) error {
		return setFeatures(fd, ifname, func(name string, st featureState) (on, set bool, err error) {
			on, ok := want[name]
			if !ok {
				return false, false, nil
			}
			if !st.available {
				return false, false, fmt.Errorf("feature %s is fixed %v by the driver", name, onOff(st.active))
			}
			return on, true, nil
		}, keys(want))
	})
	if err != nil {
		return fmt.Errorf("set features of %s in %s: %w", ifname, h.name, err)
	}
	return nil
}

// setFeatures asks for each feature that decide chooses, checks that every
// name in mustExist is known, and verifies the result.
func setFeatures(fd int, ifname string, decide func(string, featureState) (on, set bool, err error), mustExist []string) error {
	names, err := featureNames(fd, ifname)
	if err != nil {
		return err
	}
	known := make(map[string]bool, len(names))
	for _, n := range names {
		known[n] = true
	}
	for _, n := range mustExist {
		if !known[n] {
			return fmt.Errorf("unknown feature %q (ethtool -k lists the names)", n)
		}
	}
	st, err := getFeatures(fd, ifname, len(names))
	if err != nil {
		return err
	}
	words := (len(names) + 31) / 32
	// struct ethtool_sfeatures { u32 cmd, size; struct { u32 valid,
	// requested; } features[size]; }
	buf := make([]byte, 8+words*8)
	binary.NativeEndian.PutUint32(buf[0:], unix.ETHTOOL_SFEATURES)
	binary.NativeEndian.PutUint32(buf[4:], uint32(words))
	wanted := map[int]bool{}
	var errs []error
	for i, n := range names {
		on, set, err := decide(n, st[i])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if !set {
			continue
		}
		wanted[i] = on
		w := buf[8+(i/32)*8:]
		bit := uint32(1) << (i % 32)
		binary.NativeEndian.PutUint32(w[0:], binary.NativeEndian.Uint32(w[0:])|bit)
		if on {
			binary.NativeEndian.PutUint32(w[4:], binary.NativeEndian.Uint32(w[4:])|bit)
		}
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if len(wanted) == 0 {
		return nil
	}
	// A positive return (ETHTOOL_F_WISH) means some bits were not applied;
	// reading the state back below reports which.
	err = ethtool(fd, ifname, unsafe.Pointer(&buf[0]))
	runtime.KeepAlive(buf)
	if err != nil {
		return fmt.Errorf("write features: %w", err)
	}
	st, err = getFeatures(fd, ifname, len(names))
	if err != nil {
		return err
	}
	var stuck []string
	for i, on := range wanted {
		if st[i].active != on {
			stuck = append(stuck, names[i]+" "+onOff(st[i].active))
		}
	}
	if len(stuck) > 0 {
		sort.Strings(stuck)
		return fmt.Errorf("kernel kept %s (a feature it depends on is off?)", strings.Join(stuck, ", "))
	}
	return nil
}

// isOffload reports whether feature name coalesces received frames,
// segments sent ones or fills in their checksums: what DisableOffloads
// switches off. Names as in net/ethtool/common.c netdev_features_strings.
func isOffload(name string) bool {
	switch name {
	case "rx-gro", "rx-gro-hw", "rx-gro-list", "rx-lro", "rx-udp-gro-forwarding",
		"tx-generic-segmentation", "tx-udp-segmentation":
		return true
	}
	return strings.HasPrefix(name, "tx-checksum-") ||
		strings.HasPrefix(name, "tx-tcp") && strings.HasSuffix(name, "-segmentation")
}

// DisableOffloads switches off receive coalescing (GRO, hardware GRO, LRO),
// segmentation (GSO, TSO, USO) and TX checksum offload on ifname, like
// ethtool -K DEV gro off lro off gso off tso off tx off, so that frames on
// the wire have the size and checksums the sender's stack computed. Features
// the driver has fixed are left as they are.
func (h *Host) DisableOffloads(ifname string) error {
	err := h.withEthtool(func(fd int) error {
		return setFeatures(fd, ifname, func(name string, st featureState) (bool, bool, error) {
			return false, isOffload(name) && st.available && (st.active || st.requested), nil
		}, nil)
	})
	if err != nil {
		return fmt.Errorf("disable offloads of %s in %s: %w", ifname, h.name, err)
	}
	return nil
}

func onOff(b bool) string {
	if b {
		return "on"
	}
	return "off"
}

func keys(m map[string]bool) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	return ks
}
