// Command xdpfwd is an IPv4 and IPv6 router in user space: the xdpnet stack on AF_XDP sockets, one poller goroutine per
// queue, forwarding between the interfaces it is given while the kernel's own forwarding stays off.
//
//	xdpfwd run --iface r0=198.18.0.1/24 --iface r1=198.19.0.1/24 [--route 198.20.0.0/16=198.19.0.2]
//	xdpfwd run --config /etc/xdpfwd/xdpfwd.yaml [--metrics 127.0.0.1:9469]
//	xdpfwd demo [--duration 10s] [--rate PPS]
//	xdpfwd stats [--metrics 127.0.0.1:9469] [--interval 1s] [--count N]
//	xdpfwd check --config FILE
//	xdpfwd help [run|demo|stats|check]
//
// run routes until SIGINT or SIGTERM and then prints a summary: packets per port, drops by reason, and the
// frame accounting check (every UMEM frame back in its pool). demo builds three dual-stack network namespaces
// (generator, router, sink), runs `xdpfwd run` in the router, drives ping, traceroute, UDP and TCP over both
// families and an IPv4 UDP flood through it and removes everything again. Exit codes: 0 success, 1 runtime
// failure, 2 bad flags or configuration (xdpfwd.service's RestartPreventExitStatus=2: a restart would not
// fix it).
//
// Layout: main.go dispatches subcommands, run.go is `run` (flags, stack on the poller, stats, summary), demo.go
// is `demo`, lab.go builds the gen - router - sink namespaces that the demo and the integration tests share.
// For deployment: config.go reads the YAML --config file (and is `check`), ops.go serves --metrics, holds the
// forward-hook ACL behind an atomic pointer and reloads routes and ACL on SIGHUP, metrics.go holds
// xdpfwd's own series next to package metrics' collector (reloads, ACL size, the stack's counters by IP
// family), notify.go tells systemd (Type=notify, sd_notify's READY=1, RELOADING=1, STOPPING=1, STATUS=),
// statscmd.go is `stats`. pcapfile.go creates and rotates the --pcap files; startcheck.go warns at start about interfaces
// whose traffic the kernel itself needs (default route, the SSH session). example.yaml and xdpfwd.service are
// the example configuration and systemd unit.
package main
