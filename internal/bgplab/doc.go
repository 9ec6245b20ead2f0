// Package bgplab runs xdpfwd under a real routing daemon: BIRD 2 in the router's namespace peers over BGP
// with another BIRD upstream that announces a full-size synthetic Internet table, the router's BIRD installs
// it in the kernel, and xdpfwd in kernel-mirror mode follows every route over netlink and forwards to the
// one learned prefix that lies inside the benchmarking range.
//
//	gen 198.18.0.2 ---- r0 198.18.0.1 [router: BIRD AS 65001, kernel table, xdpfwd --kernel] r1 198.18.1.1 ---- 198.18.1.2 up (BIRD AS 65002)
//	                                                                                                    198.19.128.1 on up's lo
//
// Every other announced prefix lies outside 198.18.0.0/15: it is installed and compared, never sent to.
//
// The test (build tag bgp, `make bgp`) takes minutes and half a gigabyte per daemon, so `make test` does not
// build it; `make test` runs the table generator's own test (table_test.go). The package's only code is the
// generator of the synthetic table (table.go).
package bgplab
