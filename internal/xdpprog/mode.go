package xdpprog

import "strconv"

// Mode is the XDP attach mode.
type Mode int

const (
	// ModeAuto tries native mode and falls back to generic mode if the driver refuses; Program.FallbackReason
	// says why.
	ModeAuto Mode = iota
	// ModeNative runs the program in the driver's receive path, before an skb exists (XDP_FLAGS_DRV_MODE).
	// Only native mode gives AF_XDP zero-copy and the full speed.
	ModeNative
	// ModeGeneric runs the program after the skb is built (XDP_FLAGS_SKB_MODE). Any interface supports it;
	// AF_XDP then works in copy mode only.
	ModeGeneric
)

// String returns "auto", "native" or "generic".
func (m Mode) String() string {
	switch m {
	case ModeAuto:
		return "auto"
	case ModeNative:
		return "native"
	case ModeGeneric:
		return "generic"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}
