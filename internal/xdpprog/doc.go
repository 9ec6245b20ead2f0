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
// The transit program (AttachTransit, transit.go) is the kernel-mirror mode's: it redirects only IPv4 transit
// traffic and passes everything else (ARP, IPv6, options, TTL <= 1, multicast, and destinations a KernelPrefixes
// LPM map gives to the kernel, such as the box's own addresses) to the kernel. It shares the attach, replace and
// fallback logic of attach.go.
package xdpprog
