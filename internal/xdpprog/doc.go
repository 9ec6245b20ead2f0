// Package xdpprog builds, loads and attaches the XDP program that decides, per received frame, whether xdpnet
// takes it (AF_XDP socket) or the kernel stack does.
//
// The program is written with the cilium/ebpf asm instruction builder, so building xdpnet needs no clang. It
// reads ctx->rx_queue_index and calls bpf_redirect_map(&xsks, queue, XDP_PASS) on an XSKMAP: a frame that
// arrives on a queue whose slot holds an AF_XDP socket goes to that socket; a frame on a queue with an empty
// slot gets XDP_PASS (the low bits of the flags argument are the action on a miss) and continues up the normal
// kernel path, so attaching the program with no socket registered changes nothing for traffic.
//
// The program is attached through a bpf_link (BPF_LINK_CREATE), not the legacy netlink IFLA_XDP attribute.
// The link's only reference is a file descriptor of this process, so the kernel detaches the program when the
// process exits for any reason, kill -9 included: a crashed xdpnet never leaves a black-holing program behind.
// Attach tries native (driver) mode first and falls back to generic (SKB) mode, reporting why; a caller may
// force either mode. It refuses to displace a program someone else attached unless asked to (Options.Replace),
// and even then it will not touch a program held by another bpf_link, which belongs to a live process.
//
// Network namespaces: Attach and AttachedProgramID resolve ifindex in the network namespace of the calling OS
// thread. A caller that switches namespaces must hold runtime.LockOSThread across the call.
//
// Concurrency: a Program is safe for use from any goroutine. Register and Unregister are single bpf(2) map
// updates and may run concurrently with each other and with packets being redirected; Close waits for
// in-flight Register/Unregister calls and makes later ones return ErrClosed. Nothing in this package panics on
// bad input; errors say what to do.
//
// Three programs share one way of being built (parse.go: a listing builder, the Ethernet/VLAN parse, the IPv4
// and IPv6 header checks, the redirect tail) and attached (attach.go: bpf_link, replace and fallback rules):
//
//   - the redirect program (Attach, program.go) takes every frame of a queue;
//   - the steering program (AttachSteer, steer.go) takes the frames that match an embedder's Rules (VLAN,
//     EtherType, protocol, ports, prefixes) and passes the rest to the kernel;
//   - the transit program (AttachTransit, transit.go) is the kernel-mirror mode's: it redirects only IPv4
//     and IPv6 transit traffic (expiring or with options too: the stack handles them as a router must) and
//     passes everything else (ARP, NDP, malformed headers, multicast, link-local, and destinations the
//     KernelPrefixes LPM maps give to the kernel, such as the box's own addresses).
//
// UseXSKMap is for an embedder's own XDP program: nothing is attached, the sockets go into its XSKMAP.
package xdpprog
