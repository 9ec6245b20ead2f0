// Package netlab builds test hosts for xdpnet's privileged tests, the demo
// and the benchmarks: network namespaces joined by veth pairs, made through
// netlink, with addresses from 198.18.0.0/15 and 2001:db8::/32 so that no
// traffic leaves them.
//
// A Lab owns everything it creates: named namespaces (bind mounts under
// /run/netns, so `ip netns exec NAME` works while a test runs), veth pairs and
// processes started with Host.Start. Close removes all of it and may be called
// more than once; NewT arranges it through t.Cleanup, so a failed test cleans
// up too. Every name starts with the lab's prefix, "xn" plus five characters
// that encode the creating process's PID and a counter; CleanStale (called by
// New) uses the PID to remove what a crashed run left behind without touching
// the labs of processes still running.
//
// Lab and Host methods may be called from several goroutines. Host
// configuration (addresses, routes, neighbours) goes through a netlink handle
// bound to the namespace and does not move the caller's thread. Host.Do runs
// a function on a locked OS thread switched into the namespace; only that
// thread is in the namespace, so the function must not start goroutines that
// expect to be in it. Sockets it opens stay in the namespace after it
// returns. A thread that cannot be switched back is discarded, never reused.
//
// A test builds its hosts like this:
//
//	lab := netlab.NewT(t) // skips (or fails under XDPNET_REQUIRE_PRIV=1) when not root
//	h1, _ := lab.AddHost("h1")
//	h2, _ := lab.AddHost("h2")
//	v, _ := lab.Link(h1, "eth0", h2, "eth0") // v.A.Index, v.B.MAC, ...
//	h1.AddAddr("eth0", "198.18.0.1/24")
//	h1.SetUp("eth0") // likewise h2
//	h1.WaitOperUp("eth0", 5*time.Second) // else the first packets wait for an ARP retry
//	out, err := h1.Run(ctx, "ping", "-c1", "-W1", "198.18.0.2")
//
// Host.Command runs programs through `ip netns exec`, or nsenter(1) where
// iproute2 is not installed; queues and offloads are set through the ETHTOOL
// ioctl, so the ethtool program is not needed.
//
// Nothing in the package panics on bad input; a panic inside a Do function is
// re-raised in the goroutine that called Do.
package netlab
