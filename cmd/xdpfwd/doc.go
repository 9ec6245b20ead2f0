// Command xdpfwd is an IPv4 router in user space: the xdpnet stack on AF_XDP sockets, one poller goroutine per
// queue, forwarding between the interfaces it is given while the kernel's own forwarding stays off.
//
//	xdpfwd run --iface r0=198.18.0.1/24 --iface r1=198.19.0.1/24 [--route 198.20.0.0/16=198.19.0.2]
//	xdpfwd demo [--duration 10s] [--rate PPS]
//	xdpfwd help [run|demo]
//
// run routes until SIGINT or SIGTERM and then prints a summary: packets per port, drops by reason, and the
// frame accounting check (every UMEM frame back in its pool). demo builds three network namespaces
// (generator, router, sink), runs `xdpfwd run` in the router, drives ping, traceroute and a UDP flood through
// it and removes everything again. Exit codes: 0 success, 1 runtime failure, 2 bad flags or configuration.
//
// Layout: main.go dispatches subcommands, run.go is `run` (flags, stack on the poller, stats, summary), demo.go
// is `demo`, lab.go builds the gen - router - sink namespaces that the demo and the integration tests share.
package main
