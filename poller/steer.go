package poller

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/vishvananda/netlink"

	"github.com/xdpnet/xdpnet/internal/xdpprog"
)

// Steer chooses which received frames go to the handlers and which stay with Linux: an appliance on a host
// takes its own traffic (say UDP/53, or one prefix) while ARP, ping, SSH and the rest keep working through
// the kernel. Give either Match or XSKMaps. A nil Config.Steer takes every frame of the ports.
type Steer struct {
	// Match lists the frames to take: a frame that matches any entry goes to user space, every other frame
	// gets XDP_PASS and goes up the kernel's stack. The entries are compiled into the XDP program when New
	// (or a re-created interface) attaches it; they cannot change while the poller runs.
	Match []Match
	// XSKMaps hands steering to the embedder's own XDP program: xdpnet attaches none to the ports, and puts
	// the AF_XDP socket of queue q of port NAME at key q of XSKMaps[NAME], an XSKMAP (BPF_MAP_TYPE_XSKMAP,
	// 4-byte keys and values, MaxEntries at least the interface's rx queues) that the embedder's program
	// redirects into with bpf_redirect_map(&map, ctx->rx_queue_index, XDP_PASS). Every port needs its own
	// map. The embedder loads and attaches its program (before or after New) and re-attaches it when an
	// interface is re-created; the poller re-registers its sockets in the same map. Keep the maps open while
	// the poller runs (the poller holds handles of its own only on the ports' current interfaces).
	XSKMaps map[string]*ebpf.Map
}

// Untagged as Match.VLAN takes only frames without a VLAN tag.
const Untagged = xdpprog.Untagged

// Match is one choice of frames: it matches when every field it sets matches. The zero Match takes every
// well-formed frame. What the XDP program can see:
//
//   - VLAN: the id of one 802.1Q or 802.1ad tag (0: any frame; Untagged: no tag). A NIC that strips tags
//     (rx-vlan-offload) hides them from XDP: there every frame looks untagged.
//   - EtherType: the type after at most one tag (0: any).
//   - Protocol: the IPv4 protocol or the IPv6 next header of the fixed header (0: any). An IPv6 packet with
//     extension headers does not match a Match naming a protocol or ports.
//   - SrcPorts, DstPorts: need Protocol TCP (6), UDP (17), SCTP (132) or UDP-Lite (136). An IPv4 fragment,
//     first or later, never matches a Match with ports, so a fragmented datagram stays with Linux whole.
//   - SrcPrefixes, DstPrefixes: IPv4 or IPv6; prefixes of one family only match packets of that family.
//
// A frame whose VLAN tag or IP header is cut short or malformed matches nothing and goes to Linux. At most
// 256 Matches, 1024 prefixes and 1024 port ranges in all; for larger sets (a routing table's worth of
// prefixes) use your own program with an LPM map (Steer.XSKMaps).
type Match struct {
	VLAN        int
	EtherType   uint16
	Protocol    uint8
	SrcPorts    []PortRange
	DstPorts    []PortRange
	SrcPrefixes []netip.Prefix
	DstPrefixes []netip.Prefix
}

// PortRange is First..Last, both included.
type PortRange struct{ First, Last uint16 }

// Port is the range of the single port n.
func Port(n uint16) PortRange { return PortRange{n, n} }

// rules converts the Matches to the XDP program's rules.
func (s *Steer) rules() []xdpprog.Rule {
	conv := func(rs []PortRange) []xdpprog.PortRange {
		out := make([]xdpprog.PortRange, len(rs))
		for i, r := range rs {
			out[i] = xdpprog.PortRange{First: r.First, Last: r.Last}
		}
		return out
	}
	out := make([]xdpprog.Rule, len(s.Match))
	for i, m := range s.Match {
		out[i] = xdpprog.Rule{VLAN: m.VLAN, EtherType: m.EtherType, Protocol: m.Protocol,
			SrcPorts: conv(m.SrcPorts), DstPorts: conv(m.DstPorts),
			SrcPrefixes: append([]netip.Prefix(nil), m.SrcPrefixes...), DstPrefixes: append([]netip.Prefix(nil), m.DstPrefixes...)}
	}
	return out
}

// steerAttach checks c.Steer and returns the attach function it asks for (nil for none: every frame).
func (c *Config) steerAttach() (xdpprog.AttachFunc, error) {
	s := c.Steer
	if s == nil {
		return nil, nil
	}
	switch {
	case len(s.Match) > 0 && len(s.XSKMaps) > 0:
		return nil, errors.New("poller: Config.Steer has both Match and XSKMaps; give Match for xdpnet's program, or XSKMaps for your own")
	case len(s.Match) > 0:
		rules := s.rules()
		if err := xdpprog.CheckRules(rules); err != nil {
			return nil, fmt.Errorf("poller: Config.Steer.Match: %w", err)
		}
		return func(ifindex int, opts xdpprog.Options) (*xdpprog.Program, error) {
			return xdpprog.AttachSteer(ifindex, opts, rules)
		}, nil
	case len(s.XSKMaps) > 0:
		maps := make(map[string]*ebpf.Map, len(s.XSKMaps))
		ports := map[string]bool{}
		for _, n := range c.Interfaces {
			ports[n] = true
		}
		seen := map[*ebpf.Map]string{}
		for name, m := range s.XSKMaps {
			if !ports[name] {
				return nil, fmt.Errorf("poller: Config.Steer.XSKMaps names %s, which is not in Config.Interfaces", name)
			}
			if m == nil {
				return nil, fmt.Errorf("poller: Config.Steer.XSKMaps[%s] is nil", name)
			}
			if other, ok := seen[m]; ok {
				return nil, fmt.Errorf("poller: Config.Steer.XSKMaps: %s and %s share one map; each port needs its own (the key is the queue index)", other, name)
			}
			seen[m] = name
			maps[name] = m
		}
		for _, n := range c.Interfaces {
			if maps[n] == nil {
				return nil, fmt.Errorf("poller: Config.Steer.XSKMaps has no map for %s; give every port one", n)
			}
		}
		return func(ifindex int, opts xdpprog.Options) (*xdpprog.Program, error) {
			l, err := netlink.LinkByIndex(ifindex)
			if err != nil {
				return nil, fmt.Errorf("use XSKMAP on interface index %d: %w", ifindex, err)
			}
			m := maps[l.Attrs().Name]
			if m == nil {
				return nil, fmt.Errorf("use XSKMAP on %s: Config.Steer.XSKMaps has no map for it", l.Attrs().Name)
			}
			return xdpprog.UseXSKMap(ifindex, opts, m)
		}, nil
	}
	return nil, errors.New("poller: Config.Steer is empty; give Match (frames to take) or XSKMaps (your own XDP program), or leave Steer nil to take every frame")
}
