package pipeline

import (
	"fmt"
	"sync"
)

// DropReason names why a packet was dropped, in the spirit of the kernel's SKB_DROP_REASON_*. Each has its
// own counter. The built-in reasons cover the layers xdpnet implements; stages add theirs with
// RegisterDropReason at init time.
type DropReason uint16

const (
	DropNone               DropReason = iota
	DropUnhandled                     // still Accept at the end of the batch: no stage took it
	DropNoBuffer                      // no frame or batch slot for a generated packet
	DropTxRingFull                    // the egress TX ring had no room
	DropBadPort                       // verdict Tx to a port the driver does not have
	DropTruncated                     // shorter than its headers claim
	DropL2NotForUs                    // unicast to another MAC
	DropL2Broadcast                   // link-layer broadcast/multicast that must not be forwarded
	DropVLAN                          // tagged frame on an untagged port
	DropUnknownEtherType              // neither IPv4, ARP nor IPv6
	DropIPv6Unsupported               // IPv6 on a path that does not handle it
	DropIPVersion                     // version field not 4
	DropIPHeaderLength                // IHL < 5 or beyond the frame
	DropIPTotalLength                 // total length < IHL or > frame
	DropIPChecksum                    // header checksum wrong
	DropIPOptions                     // options the path does not handle
	DropTTLExpired                    // TTL <= 1 on forward
	DropNoRoute                       // no route: net unreachable
	DropBlackhole                     // blackhole route
	DropUnreachableRoute              // unreachable/prohibit route
	DropMartianSource                 // RFC 1812 §5.3.7 source
	DropMartianDestination            // RFC 1812 §5.3.7 destination
	DropFragNeeded                    // DF set and larger than the egress MTU
	DropFragment                      // fragment on a path that does not reassemble
	DropFragmentFailed                // could not fragment (no frames, too many pieces)
	DropNeighbourFailed               // next hop never answered ARP
	DropNeighbourQueueFull            // too many packets waiting for one next hop
	DropARPMalformed                  // ARP that is not Ethernet/IPv4 or is truncated
	DropARPNotForUs                   // ARP for an address we do not own
	DropICMPMalformed                 // ICMP too short or bad checksum
	DropICMPRateLimited               // ICMP error suppressed by the rate limit
	DropUnknownProtocol               // local delivery to a protocol nobody handles
	DropUDPMalformed                  // UDP length or checksum wrong
	DropUDPNoSocket                   // no socket on the port (answered with port unreachable)
	DropSocketQueueFull               // socket receive queue full
	DropTCPMalformed                  // TCP header or checksum wrong
	DropTCPNoSocket                   // no TCP socket (answered with RST)
	DropFiltered                      // an ACL stage refused it
	DropTapOverflow                   // a tap copy could not be queued (the packet itself goes on)
	DropShutdown                      // held by a handler (e.g. waiting for ARP) when its driver stopped
	DropLinkDown                      // the egress link is down or gone (deleted), or the frame was on the rings of a deleted link
	DropIPv6ExtChain                  // an IPv6 extension header chain a filter could not walk (proto's IPv6.UpperLayer refused it)
	numBuiltinDropReasons
)

var (
	dropNamesMu sync.Mutex
	dropNames   = []string{
		"none", "unhandled", "no_buffer", "tx_ring_full", "bad_port", "truncated", "l2_not_for_us",
		"l2_broadcast", "vlan", "unknown_ethertype", "ipv6_unsupported", "ip_version", "ip_header_length",
		"ip_total_length", "ip_checksum", "ip_options", "ttl_expired", "no_route", "blackhole",
		"unreachable_route", "martian_source", "martian_destination", "frag_needed", "fragment",
		"fragment_failed", "neighbour_failed", "neighbour_queue_full", "arp_malformed", "arp_not_for_us",
		"icmp_malformed", "icmp_rate_limited", "unknown_protocol", "udp_malformed", "udp_no_socket",
		"socket_queue_full", "tcp_malformed", "tcp_no_socket", "filtered", "tap_overflow", "shutdown",
		"link_down", "ipv6_ext_chain",
	}
)

// MaxDropReasons bounds the reasons that can exist, so counters can be fixed arrays.
const MaxDropReasons = 128

func init() {
	if len(dropNames) != int(numBuiltinDropReasons) {
		panic("pipeline: dropNames out of step with the DropReason constants")
	}
}

// RegisterDropReason adds a named reason for a custom stage. Call it at init time; it panics on a duplicate
// name or when MaxDropReasons are used, both programming errors.
func RegisterDropReason(name string) DropReason {
	dropNamesMu.Lock()
	defer dropNamesMu.Unlock()
	for _, n := range dropNames {
		if n == name {
			panic(fmt.Sprintf("pipeline: drop reason %q registered twice", name))
		}
	}
	if len(dropNames) == MaxDropReasons {
		panic("pipeline: too many drop reasons")
	}
	dropNames = append(dropNames, name)
	return DropReason(len(dropNames) - 1)
}

// NumDropReasons is how many reasons exist now (built-in and registered).
func NumDropReasons() int {
	dropNamesMu.Lock()
	defer dropNamesMu.Unlock()
	return len(dropNames)
}

// String is the reason's snake_case name, as used in metrics.
func (r DropReason) String() string {
	dropNamesMu.Lock()
	defer dropNamesMu.Unlock()
	if int(r) < len(dropNames) {
		return dropNames[r]
	}
	return fmt.Sprintf("drop_reason_%d", r)
}

// DropCounters counts drops by reason. One per driver goroutine; readers elsewhere use Snapshot-style copies.
type DropCounters [MaxDropReasons]uint64

// DropReasonByName finds a reason by its String name.
func DropReasonByName(name string) (DropReason, bool) {
	dropNamesMu.Lock()
	defer dropNamesMu.Unlock()
	for i, n := range dropNames {
		if n == name {
			return DropReason(i), true
		}
	}
	return 0, false
}

// DropReasonNamed returns the reason called name, registering it if it does not exist yet; for reasons
// named in configuration files. It fails only when MaxDropReasons are used.
func DropReasonNamed(name string) (DropReason, error) {
	dropNamesMu.Lock()
	defer dropNamesMu.Unlock()
	for i, n := range dropNames {
		if n == name {
			return DropReason(i), nil
		}
	}
	if len(dropNames) == MaxDropReasons {
		return 0, fmt.Errorf("cannot add drop reason %q: all %d are used", name, MaxDropReasons)
	}
	dropNames = append(dropNames, name)
	return DropReason(len(dropNames) - 1), nil
}
