package main

import (
	"fmt"
	"net"
	"net/netip"
	"strings"

	"github.com/vishvananda/netlink"
)

// Checks at start that no one loses traffic silently. The poller refuses an MTU that does not fit a frame
// and warns about RX queues without a socket; this file adds what only xdpfwd knows: in the normal mode it
// takes every frame of its interfaces, so the kernel stops seeing them - the box's default route, or the
// session of the person starting it, may go through one of them.

// takeoverWarnings lists, for the normal mode (kernelMode false: the kernel-mirror mode leaves the kernel its
// own traffic), each interface whose traffic the kernel itself needs: one that carries the kernel's default
// route (IPv4 or IPv6), and one that the session in sshConn (the SSH_CONNECTION variable: "client port server
// port") arrives on - the server address is on it, or the route back to the client leaves through it. It
// reads the kernel of the calling thread's network namespace; what it cannot read, it does not warn about.
func takeoverWarnings(ifaces []string, kernelMode bool, sshConn string) []string {
	if kernelMode {
		return nil
	}
	var client, server netip.Addr
	if f := strings.Fields(sshConn); len(f) == 4 {
		client, _ = netip.ParseAddr(f[0])
		server, _ = netip.ParseAddr(f[2])
	}
	var out []string
	const fix = "use --kernel (kernel-mirror mode: the kernel keeps its own traffic and xdpfwd forwards the transit), or manage the box through another interface"
	for _, name := range ifaces {
		l, err := netlink.LinkByName(name)
		if err != nil {
			continue
		}
		idx := l.Attrs().Index
		if via := defaultRouteVia(idx); via != "" {
			out = append(out, fmt.Sprintf("the kernel's default route goes through %s (%s), and xdpfwd takes every frame %s receives: the box's own traffic (DNS, updates, a routing daemon, management) will stop; %s",
				name, via, name, fix))
		}
		if !client.IsValid() || !server.IsValid() {
			continue
		}
		if onLink(l, server) || routeDev(client) == idx {
			out = append(out, fmt.Sprintf("this session (SSH from %s to %s) reaches the box through %s, and xdpfwd takes every frame %s receives: the session will hang once it starts; %s",
				client, server, name, name, fix))
		}
	}
	return out
}

// defaultRouteVia describes the default routes of the main table that leave through ifindex ("" if none).
func defaultRouteVia(ifindex int) string {
	routes, err := netlink.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: 254}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return ""
	}
	var vias []string
	for _, r := range routes {
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		hops := []*netlink.NexthopInfo{{LinkIndex: r.LinkIndex, Gw: r.Gw}}
		if len(r.MultiPath) > 0 {
			hops = r.MultiPath
		}
		for _, h := range hops {
			if h.LinkIndex != ifindex {
				continue
			}
			if h.Gw != nil {
				vias = append(vias, "default via "+h.Gw.String())
			} else {
				vias = append(vias, "default")
			}
		}
	}
	return strings.Join(vias, ", ")
}

// onLink reports whether a is an address of link l.
func onLink(l netlink.Link, a netip.Addr) bool {
	addrs, err := netlink.AddrList(l, netlink.FAMILY_ALL)
	if err != nil {
		return false
	}
	for _, x := range addrs {
		if x.IPNet != nil && x.IP.Equal(net.IP(a.AsSlice())) {
			return true
		}
	}
	return false
}

// routeDev is the interface the kernel would send to a through (0 if it has no route).
func routeDev(a netip.Addr) int {
	rs, err := netlink.RouteGet(net.IP(a.AsSlice()))
	if err != nil || len(rs) == 0 {
		return 0
	}
	return rs[0].LinkIndex
}
