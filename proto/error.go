package proto

// Error is the reason a parser rejected a packet. It is a small integer so a
// parser can return it by value without allocating and a router can use it to
// index a drop counter. OK (the zero value) means the packet was accepted.
//
// Error implements error, but OK is not nil when stored in an error
// interface: compare with OK, not with nil.
type Error uint8

// Parser results. Add new values at the end: routers may use them as indexes.
const (
	OK                 Error = iota // accepted
	ErrTruncated                    // the buffer is shorter than the header or a field says it should be
	ErrVersion                      // the IP version field is not the one the parser expects
	ErrHeaderLength                 // IPv4 IHL < 5 or TCP data offset < 5, or beyond the packet
	ErrTotalLength                  // IPv4 total length / IPv6 payload length / UDP length inconsistent with the buffer
	ErrChecksum                     // a checksum does not verify
	ErrOptionLength                 // an IPv4, TCP or NDP option has an impossible length
	ErrExtensionHeader              // the IPv6 extension header chain is malformed
	ErrHardwareType                 // ARP for something other than Ethernet/IPv4
	ErrVLANDepth                    // more than two VLAN tags
	ErrType                         // the message type does not allow this operation (e.g. NDP fields of an echo)
	errorCount                      // number of Error values, for tables
)

var errorNames = [errorCount]string{
	OK:                 "ok",
	ErrTruncated:       "truncated",
	ErrVersion:         "bad version",
	ErrHeaderLength:    "bad header length",
	ErrTotalLength:     "bad total length",
	ErrChecksum:        "bad checksum",
	ErrOptionLength:    "bad option length",
	ErrExtensionHeader: "bad extension header chain",
	ErrHardwareType:    "unsupported hardware or protocol type",
	ErrVLANDepth:       "too many VLAN tags",
	ErrType:            "wrong message type",
}

// String returns a short lower-case name, suitable as a metric label.
func (e Error) String() string {
	if e < errorCount {
		return errorNames[e]
	}
	return "unknown error"
}

// Error implements the error interface.
func (e Error) Error() string { return "proto: " + e.String() }
