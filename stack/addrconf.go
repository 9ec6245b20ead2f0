package stack

import (
	"fmt"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
)

// addrconf: the IPv6 addresses of an interface (the kernel's addrconf.c): the configured ones, the
// link-local one made from the MAC, and Duplicate Address Detection before any of them is used (RFC 4862
// §5.4).

// minMTU6 is IPv6's minimum link MTU (RFC 8200 §5).
const minMTU6 = 1280

// dadWait is how long DAD waits for an answer to its one solicitation: RetransTimer (RFC 4861 §10,
// 1 s) times DupAddrDetectTransmits (RFC 4862 §5.1, 1).
const dadWait = int64(time.Second)

// States of an IPv6 address (RFC 4862 §2).
const (
	addrTentative = iota // DAD running: not used as a source, packets to it not accepted
	addrPreferred        // usable
	addrDuplicate        // DAD found another owner: disabled
)

// addr6 is one IPv6 address of an interface, shared by every queue. DAD's progress is in atomics: the
// queue that wins dadSent sends the solicitation, and the state moves with compare-and-swap.
type addr6 struct {
	prefix netip.Prefix
	a      naddr
	b      [16]byte
	state  atomic.Uint32
	dadAt  atomic.Int64 // when the DAD solicitation went out
	// dadSent is 0 before the solicitation, 1 once a queue took it on.
	dadSent atomic.Uint32
	// loggedAt rate-limits the log line about a neighbour that claims this address once it is in use.
	loggedAt atomic.Int64
}

// newAddr6 makes an address, tentative until DAD ends, or preferred at once without DAD.
func newAddr6(p netip.Prefix, noDAD bool) *addr6 {
	x := &addr6{prefix: p, a: naddrOf(p.Addr()), b: p.Addr().As16()}
	x.state.Store(addrTentative)
	if noDAD {
		x.state.Store(addrPreferred)
		x.dadSent.Store(1)
	}
	x.loggedAt.Store(neverProbed)
	return x
}

func (x *addr6) usable() bool { return x.state.Load() == addrPreferred }

// iface6 is the IPv6 side of an interface: its configured addresses (global scope, each with a local and
// a connected route) and its link-local address (no route: link-local destinations are never forwarded,
// RFC 4291 §2.5.6, so ipv6 routes them by interface).
type iface6 struct {
	addrs []*addr6
	// ll is configured (Interface.Addrs had a fe80::/10 address) or made from the port's MAC by the first
	// queue that sees the port (ensureLinkLocal); the MAC of every queue's view of a port is the same.
	ll    atomic.Pointer[addr6]
	noDAD bool
}

// addAddr6 adds an IPv6 address to the interface being configured and returns the routes it makes (the
// caller fills in the interface).
func (c *ifaceConf) addAddr6(p netip.Prefix) ([]routeEntry, error) {
	a := p.Addr()
	if p.Bits() > 128 || a.Zone() != "" {
		return nil, fmt.Errorf("address %v is not a valid IPv6 address with prefix length (write it as 2001:2::1/64)", p)
	}
	if a.Is4In6() || !a.IsGlobalUnicast() && !a.IsLinkLocalUnicast() {
		return nil, fmt.Errorf("%v is not a usable unicast address (multicast, loopback, unspecified and IPv4-mapped addresses cannot be assigned)", p)
	}
	if c.v6 == nil {
		c.v6 = &iface6{noDAD: c.noDAD}
	}
	if a.IsLinkLocalUnicast() {
		if c.v6.ll.Load() != nil {
			return nil, fmt.Errorf("second link-local address %v (an interface has one)", p)
		}
		c.v6.ll.Store(newAddr6(p, c.noDAD))
		return nil, nil
	}
	for _, x := range c.v6.addrs {
		if x.prefix.Addr() == a {
			return nil, fmt.Errorf("address %v given twice", p)
		}
	}
	c.v6.addrs = append(c.v6.addrs, newAddr6(p, c.noDAD))
	host := netip.PrefixFrom(a, 128)
	r := []routeEntry{{route: Route{Prefix: host, Type: Local}, typ: Local, depth: 128}}
	if p.Bits() < 128 {
		r = append(r, routeEntry{route: Route{Prefix: p.Masked()}, typ: Unicast, depth: p.Bits()})
	}
	return r, nil
}

// linkLocalFromMAC is fe80::/64 with the interface identifier made from mac as modified EUI-64 (RFC 4291
// §2.5.1 and App. A): ff:fe in the middle, the universal/local bit inverted.
func linkLocalFromMAC(mac proto.MAC) netip.Prefix {
	a := [16]byte{0: 0xfe, 1: 0x80, 8: mac[0] ^ 0x02, 9: mac[1], 10: mac[2], 11: 0xff, 12: 0xfe, 13: mac[3], 14: mac[4], 15: mac[5]}
	return netip.PrefixFrom(netip.AddrFrom16(a), 64)
}

// ensureLinkLocal gives the interface its link-local address from the port's MAC, once.
func (v *iface6) ensureLinkLocal(mac proto.MAC) *addr6 {
	if x := v.ll.Load(); x != nil {
		return x
	}
	v.ll.CompareAndSwap(nil, newAddr6(linkLocalFromMAC(mac), v.noDAD))
	return v.ll.Load()
}

// ours6 returns the interface's address a (any state), or nil.
func (ifc *hiface) ours6(a naddr) *addr6 {
	if ifc.v6 == nil {
		return nil
	}
	if ll := ifc.ll; ll != nil && ll.a == a {
		return ll
	}
	for _, x := range ifc.v6.addrs {
		if x.a == a {
			return x
		}
	}
	return nil
}

// joined reports whether the interface listens to multicast group g: all-nodes (ff02::1) and the
// solicited-node groups of its addresses (RFC 4861 §7.2.1; RFC 4862 §5.4.2 joins them before DAD).
func (ifc *hiface) joined(g *[16]byte) bool {
	if ifc.v6 == nil {
		return false
	}
	if *g == proto.AllNodesMulticast.As16() {
		return true
	}
	if !proto.IsSolicitedNodeMulticast(g) {
		return false
	}
	if ll := ifc.ll; ll != nil && ll.b[13] == g[13] && ll.b[14] == g[14] && ll.b[15] == g[15] {
		return true
	}
	for _, x := range ifc.v6.addrs {
		if x.b[13] == g[13] && x.b[14] == g[14] && x.b[15] == g[15] {
			return true
		}
	}
	return false
}

// source6For picks this interface's address to speak to dst (RFC 6724 §5, in short): for a link-local
// destination the link-local address; else a usable global address on dst's network, else the first
// usable global one, else the link-local address. The zero Addr when none is usable yet (DAD running).
func (ifc *hiface) source6For(dst netip.Addr) netip.Addr {
	if ifc.v6 == nil {
		return netip.Addr{}
	}
	ll := ifc.ll
	if dst.IsLinkLocalUnicast() || dst.IsLinkLocalMulticast() {
		if ll != nil && ll.usable() {
			return ll.prefix.Addr()
		}
		return netip.Addr{}
	}
	var first netip.Addr
	for _, x := range ifc.v6.addrs {
		if !x.usable() {
			continue
		}
		if x.prefix.Contains(dst) {
			return x.prefix.Addr()
		}
		if !first.IsValid() {
			first = x.prefix.Addr()
		}
	}
	if first.IsValid() {
		return first
	}
	if ll != nil && ll.usable() {
		return ll.prefix.Addr()
	}
	return netip.Addr{}
}

// routerID6 is the source of last resort for ICMPv6 errors leaving an interface without a usable global
// address: the first usable global address of any interface.
func (h *handler) routerID6() netip.Addr {
	for i := range h.ifs {
		if v := h.ifs[i].v6; v != nil {
			for _, x := range v.addrs {
				if x.usable() {
					return x.prefix.Addr()
				}
			}
		}
	}
	return netip.Addr{}
}

// dad runs Duplicate Address Detection (RFC 4862 §5.4) from Tick: for each tentative address one queue
// sends a Neighbor Solicitation from :: to the address's solicited-node group; an address that no one
// claimed within dadWait becomes preferred. ndpInput marks an address duplicate on a conflicting NS or
// NA. It returns when it needs the next Tick (0: nothing pending). The random delay before the first
// solicitation (§5.4.2) is left out: the stack does not restart on mass power-up.
func (h *handler) dad(b *pipeline.Batch) int64 {
	var wake int64
	for i := range h.ifs {
		ifc := &h.ifs[i]
		if ifc.v6 == nil || !ifc.ok {
			continue
		}
		check := func(x *addr6) {
			if x == nil || x.state.Load() != addrTentative {
				return
			}
			if x.dadSent.Load() == 0 {
				if b.Room() == 0 || !x.dadSent.CompareAndSwap(0, 1) {
					wake = h.now
					return
				}
				x.dadAt.Store(h.now)
				h.sendNDP(b, ifc, proto.ICMPv6NeighborSolicitation, 0, netip.IPv6Unspecified(), proto.SolicitedNodeMulticast(x.prefix.Addr()),
					proto.MulticastMAC(proto.SolicitedNodeMulticast(x.prefix.Addr())), x.prefix.Addr(), false)
				inc(&h.ctr.dadOut)
			}
			at := x.dadAt.Load() + dadWait
			if h.now >= at && x.dadAt.Load() != 0 {
				if x.state.CompareAndSwap(addrTentative, addrPreferred) {
					h.s.log.Info("IPv6 address ready (duplicate address detection found no other owner)",
						"interface", h.s.ifaces[i].name, "address", x.prefix)
				}
				return
			}
			if wake == 0 || at < wake {
				wake = at
			}
		}
		check(ifc.ll)
		for _, x := range ifc.v6.addrs {
			check(x)
		}
	}
	return wake
}

// dadConflict disables a tentative address another node uses or is about to use (RFC 4862 §5.4.5), or
// logs, at most every 10 s, a neighbour claiming an address in use (§5.4.4: the address stays).
func (h *handler) dadConflict(ifc int32, x *addr6, from proto.MAC, what string) {
	name := h.s.ifaces[ifc].name
	if x.state.CompareAndSwap(addrTentative, addrDuplicate) {
		inc(&h.ctr.dadConflicts)
		h.s.log.Error("IPv6 address disabled: duplicate address detection found another owner (change the address or the other node's)",
			"interface", name, "address", x.prefix, "other", from.String(), "message", what)
		return
	}
	if last := x.loggedAt.Load(); h.now-last >= int64(10*time.Second) && x.loggedAt.CompareAndSwap(last, h.now) {
		inc(&h.ctr.dadConflicts)
		h.s.log.Warn("another node claims an IPv6 address of this interface", "interface", name,
			"address", x.prefix, "other", from.String(), "message", what)
	}
}
