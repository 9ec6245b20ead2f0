// Package poller is xdpnet's NAPI: one goroutine per queue index, locked to an OS thread pinned to a CPU, that
// owns that queue on every port (interface) - one UMEM shared by the queue's AF_XDP sockets on all ports, so a
// frame received on one port is sent on another without a copy - and moves packets between the rings and a
// pipeline.Handler in batches.
//
// One loop iteration: reap completions to the frame pool, refill the fill rings, peek up to Budget RX
// descriptors per port into a pipeline.Batch and call Handler.Process, place each packet by verdict (Tx: on the
// egress port's TX ring; Drop: back to the pool and counted by reason; Accept left over: dropped as
// DropUnhandled; Stolen: now the handler's), submit TX and kick the kernel only when it asks (need_wakeup, or
// copy mode), then call Handler.Tick with an empty batch and place what it emits. In Busy mode the loop spins;
// in Adaptive mode (the default) it spins while there is traffic and for IdleSpin after the last packet, then
// sleeps in ppoll(2) on the RX sockets and an eventfd that pipeline.Waker writes, until traffic, a wake, or the
// time Tick asked for. Like a NIC's interrupt coalescing it learns the idle gaps: when they are regular (a
// periodic flow) the sleep ends shortly before the next packet is due and the loop polls for it, so that
// packet does not pay the wake-up (idlePolicy).
//
// Ownership and concurrency: rings, UMEM, frame pool, Batch and Handler of a queue are touched only by that
// queue's goroutine, without locks. Stats may be called from any goroutine at any time: counters are
// aggregated per batch and published with one atomic store each. New, Run, Close and CheckFrames are called by
// the owner: Run once; CheckFrames when Run is not running.
//
// Links: while Run runs, a watcher goroutine follows the ports' links through rtnetlink (in the network namespace
// New ran in) and publishes each port's state - present, up, ifindex, MTU - as an immutable value swapped
// atomically; each queue compares one generation counter per loop iteration and, when it moved, acts on its own
// goroutine between batches: TX to a port that is down (administratively, or without carrier) or deleted is
// dropped as pipeline.DropLinkDown, RX from it simply stops; a deleted interface's socket is closed and the
// frames on its rings taken back (those on RX and TX counted as link_down); when an interface of the same
// name appears again the watcher attaches the XDP program to it and every queue opens a new socket on it
// sharing the queue's UMEM (registering it again if no other port of the queue has a socket) and registers it.
// Handlers learn of changes through the optional PortObserver method, on their own goroutine; Poller.Ports
// and Stats show the current state. The queue threads enter the interfaces' namespace, since binding a socket
// resolves the ifindex in the namespace of the thread that made the socket.
//
// Steering (Config.Steer): by default the XDP program gives every frame of a port's queues to the poller.
// Steer.Match compiles a filter (VLAN, EtherType, IP protocol, ports, prefixes) into the program instead, so
// that only those frames come to user space and the kernel keeps the rest (XDP_PASS): ARP, ping, SSH and
// other services on the host go on working. Steer.XSKMaps hands the choice to the embedder's own XDP
// program, which redirects into an XSKMAP the poller fills with its sockets.
//
// Start checks (New): an interface whose MTU does not fit a frame (frame size - XDP_PACKET_HEADROOM - headroom
// - Ethernet header) is refused (ErrMTU); RX queues the interface uses (ethtool -l) beyond Config.Queues get a
// warning naming them, since their frames go to the kernel instead of the pipeline.
//
// Panics: nothing in the loop panics on what the kernel or a handler returns. An RX descriptor is checked
// against the frame pool before it is believed: one outside the UMEM, naming a frame that was not lent to a
// fill ring, or running past its frame is refused and counted (PortStats.RxBadAddr, RxNotOwned, RxBadLen); a
// completion of a frame that was not sent, or a frame a handler returns twice, is refused and shows up in the
// frame accounting (CheckFrames). A Handler that panics takes the process down, as any goroutine does.
package poller
