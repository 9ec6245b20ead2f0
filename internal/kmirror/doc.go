// Package kmirror makes the Linux kernel the control plane of an xdpnet router (the kernel-mirror mode of
// `xdpfwd run --kernel`): it follows the kernel's addresses, routes and neighbours over netlink and applies
// them to a stack.Stack and to the transit XDP program's KernelPrefixes map, and it resolves next hops by
// asking the kernel (netlink NTF_USE) instead of sending ARP itself.
//
// The model (after VPP's linux-cp, without its TAP mirror: whatever the fast path does not take simply stays
// in the kernel, because the XDP program returns XDP_PASS for it):
//
//	iproute2, sshd, bird/frr            netlink events: addresses, routes, neighbours
//	         |                      +----------------------------------------------+
//	         v                      |                                              v
//	+-----------------+             |                        +------------------------------------+
//	|  Linux kernel   |-------------+                        | kmirror                            |
//	|  ARP, ICMP, TCP,|<------ RTM_NEWNEIGH + NTF_USE -------- |  routes -> stack.SyncRoutes        |
//	|  ip_forward=0 ok|         ("resolve 198.18.2.2")       |  neigh  -> stack.SetNeighbour      |
//	+-----------------+                                      |  addrs  -> KernelPrefixes /32 /128 |
//	         ^ XDP_PASS: ARP, NDP, malformed headers,        +------------------------------------+
//	         | multicast, link-local, to the box,
//	         | kernel-only routes
//	r0 --> [transit XDP] --XDP_REDIRECT (IPv4/IPv6 transit)--> AF_XDP --> stack (xdpfwd) --> AF_XDP --> r1
//
// Both families are followed: IPv4 and IPv6 addresses, routes (additions, replacements and deletions) and
// neighbours (ARP and NDP entries).
//
// Routes: the routes of one table (main by default) are mirrored into the stack. Unicast routes whose output
// interface is one the stack owns become stack routes (the first owned hop of a multipath route: no ECMP);
// blackhole becomes Blackhole; unreachable and prohibit become Unreachable (answered with host unreachable,
// not admin prohibited). Every other route (via an interface the stack does not own, nexthop objects, throw,
// nat...) is entered as a ToKernel prefix in the XDP map, so its packets go to the kernel, which routes them
// itself (when its ip_forward allows). IPv6 link-local and multicast routes (fe80::/64, ff00::/8 on every
// interface) are not mirrored at all: the transit program leaves those destinations to the kernel anyway.
// An IPv6 route through an interface that has no IPv6 address in the stack is refused by the stack and
// left to the kernel (RouteErrors). Of several kernel routes for one prefix (metrics, TOS), the one with
// the lowest metric is used. Bursts of route changes are applied as one stack update (one table copy).
//
// Addresses: every IPv4 address of the namespace (any interface, lo included) and the directed broadcast of
// its network are ToKernel /32 entries, every IPv6 address a ToKernel /128, so traffic for the box (ICMPv6
// echo, NDP to a global address, SSH) always reaches the kernel. The stack's own
// interface addresses (its ICMP error source) are those given to stack.New; address changes after the start
// reach the XDP map and the routes, not the ICMP source.
//
// Neighbours: kernel entries on owned interfaces in REACHABLE, STALE, DELAY, PROBE, PERMANENT or NOARP state
// give the stack its MACs; FAILED makes the stack answer host unreachable; a deleted entry is forgotten (the
// next packet asks again). Mirror.Resolve, the stack's Config.Resolver, queues "resolve X" without blocking; a
// goroutine sends it to the kernel as RTM_NEWNEIGH with NTF_USE, the kernel ARPs (or sends a neighbour
// solicitation for an IPv6 address), and its REACHABLE event releases the packets the stack held.
//
// Lost events: a netlink socket whose receive buffer overflows (a burst of route changes while the mirror is
// busy) makes the kernel drop events and report ENOBUFS. The mirror then subscribes again and re-reads
// addresses, routes or neighbours, reconciling with what it had: routes deleted meanwhile leave the stack in
// the same all-or-nothing SyncRoutes that adds the new ones, neighbours gone from the kernel are forgotten
// (Stats.Resyncs, and a log line). If it cannot subscribe again after a few attempts it stops and closes
// Failed (xdpfwd exits non-zero), since a table that no longer follows the kernel goes stale unseen.
//
// Concurrency: New starts nothing; Start subscribes, applies the kernel's current state and returns, leaving
// one goroutine per event stream and one for resolutions. Resolve is safe from any goroutine and never
// blocks; Stats from anywhere; Close once. Nothing here panics on what the kernel sends.
package kmirror
