// Package stack is xdpnet's ip_rcv, routing, ip_forward and ip_local_deliver: a user-space dual-stack
// (IPv4 and IPv6) router and host that runs as a pipeline.Handler on each driver queue (the AF_XDP poller, or pipeline/memlink in tests)
// and never touches a socket itself.
//
// A Stack holds what every queue shares: the interfaces (Config.Interfaces, matched to the driver's ports by
// name) and their IPv6 addresses' DAD state, the routing table of both families, the neighbour table (ARP
// and NDP entries in one), the ICMP and ICMPv6 rate limits and the UDP sockets. Stack.NewHandler
// builds the handler of one queue; the handler owns that queue's packets, including those held while their
// next hop is resolved (their frames belong to the queue's FrameSource), and releases them from Tick.
//
// Per batch, Process validates each frame (RFC 1812 §5.2.2; for IPv6 the fixed header, RFC 8200 §3), runs
// the PreRouting hook, walks IPv6 extension headers and looks the destination up (the IPv6 destinations of
// the whole batch together, so that their cache misses overlap), runs Input and delivers
// (ICMP echo, UDP, TCP; ICMPv6 echo and NDP, UDP and TCP over IPv6) or runs Forward and forwards (TTL, MTU, RFC
// 1812 §5.3; hop limit and packet too big, RFC 8200 and RFC 4443 - IPv6 is never fragmented), runs
// Output over the packets the stack generates (ICMP errors, echo replies), PostRouting over everything about
// to leave, and finally resolves the next hop (ARP or NDP), rewrites the MACs and sets verdict Tx. Every packet not
// sent, held or consumed is dropped with a named pipeline.DropReason. Stages with no hook between them run
// in one pass over the batch (validation, routing and the TTL/MTU checks), which changes nothing a hook or
// the wire can see: generated packets come out in the same order.
//
// The handler is a pipeline.PortObserver: when the driver reports a link change, the interface takes the
// port's new MAC and (unless Config fixed it) MTU, and announces its addresses again when the link comes up
// or its MAC changes.
//
// Concurrency: the routing table is a DIR-24-8 array for IPv4 and a poptrie for IPv6 (lpm6.go: a direct
// table of /18s over stride-6 nodes, each /18's subtrie republished with one atomic store) that one writer at a time
// (AddRoute, DeleteRoute, SyncRoutes) changes in place while the pollers read it without a lock; an update
// costs what its prefix covers (under a microsecond for a /24), and each address moves from its old route to
// its new one in one step. What an update unlinks (a tbl8 group, an lpm6 subtrie, a route id) is reused only after every
// queue has finished the batch it was in (an epoch per queue, set at the start of Process and Tick). The
// neighbour table is a hash table with lock-free lookups, O(1) inserts under striped locks, and entries
// made of atomics; its collector (the kernel's gc_thresh1/2/3 and gc_stale_time) marks what it removes, so
// that a queue's cached pointer is looked up again. The socket tables are copy-on-write maps. Stack methods
// are safe for concurrent use; a handler is used by its driver's goroutine only; UDPConn methods are safe
// for concurrent use by applications.
//
// TCP (tcpsock.go) is package stack/tcp's engine, one per queue: local delivery verifies the checksum
// (DropTCPMalformed) and hands the segment to the queue's engine, which answers closed ports with RST; the
// engine's segments are built in the batch like UDP's and its timers run from Tick. ListenTCP opens a
// listener on every queue's engine ([::] takes both families) and merges their accept queues; an ICMPv6
// Packet Too Big quoting a segment goes to the engine's path MTU. DialTCP routes the destination, picks the
// source address and a queue. The MSS follows the smallest MTU of the queue's interfaces. TCPStats sums the
// engines' counters.
//
// The files follow the kernel's path, one step each, so that a reader who knows the kernel finds them by
// name:
//
//	handler.go   the queue's handler: the batch's way through the steps and hooks (netif_receive_skb's
//	             dispatch by EtherType, Tick, Drain)
//	ipv4.go      ip_rcv (validation, martians), ip_route_input, ip_forward, ip_local_deliver, ip_output
//	ipv6.go      ipv6_rcv, the extension header walk, ip6_route_input, ip6_forward, ip6_input
//	addrconf.go  IPv6 addresses: link-local from the MAC, duplicate address detection (addrconf.c)
//	fragment.go  ip_fragment
//	neigh.go     the neighbour state machine (neigh_output, held packets, probes) and its external API
//	neightable.go the neighbour table (neigh_lookup, neigh_create) and its collector (neigh_forced_gc,
//	             neigh_periodic_work)
//	arp.go       arp_rcv, arp_solicit, announcements: the IPv4 resolver of neigh.go
//	ndp.go       ndisc_rcv, ndisc_solicit: the IPv6 resolver of neigh.go (RFC 4861)
//	icmp.go      icmp_send (errors, rate limited) and icmp_rcv (echo)
//	icmpv6.go    icmp6_send (RFC 4443 errors, rate limited) and icmpv6_rcv (echo)
//	route.go     the FIB and its API; lpm.go its DIR-24-8 table, lpm6.go the IPv6 one
//	udp.go       UDP sockets and udp_rcv; tcpsock.go the TCP sockets over stack/tcp
//	port.go      link events from the driver (the netdev notifier)
//	stats.go     counters (the SNMP MIB)
//
// Time comes only from pipeline.Batch.Now, so tests drive timers (ARP retries, aging) with a fake clock.
// Nothing panics on packet contents; the per-packet path does not allocate (TestNoAllocs).
//
// IPv6 is enabled on an interface by giving it an IPv6 address. What differs from the kernel: no router
// advertisements are sent or taken (routes are configured), no SLAAC, no MLD (the stack listens to
// all-nodes and its solicited-node groups and accepts any multicast MAC), no DELAY/PROBE states of their
// own (ndp.go), no random delay before DAD, NDP messages and ARP bypass the Output/PostRouting hooks, and a
// link-local address made from the MAC is kept when the MAC changes.
//
// Not supported: VLANs, reassembly (fragments for this host are dropped, IPv4 and IPv6), IP options
// processing (they are forwarded untouched; source routes and IPv6 type 0 routing headers are dropped),
// ICMP redirects (sent or taken), multicast routing, link-local UDP and TCP sockets, ICMP fragmentation
// needed (IPv4) for the TCP engine's path MTU (ICMPv6 Packet Too Big reaches it); for TCP see stack/tcp's
// doc.go (and DialTCPFrom: with several queues the answers must reach the dialling queue).
package stack
