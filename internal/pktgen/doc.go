// Package pktgen is xdpnet's traffic generator and sink, built as pipeline.Handlers so that they run on the
// AF_XDP poller like any other application (the benchmarks dogfood the poller with them).
//
// A Generator emits Ethernet/IPv4/UDP frames (64 bytes on the wire by default, as RFC 2544 and xdpsock use) out
// of one port from its Tick: each frame is a copy of a template prebuilt per flow, so that varying the UDP
// source port over Flows flows costs nothing per packet (the checksums are computed once per flow). It can be
// limited to a rate in packets per second and to a packet count. What arrives on the generator's queues is
// counted and dropped, so a Generator alone is the "txonly" mode. A Sink counts and drops everything it
// receives ("rxdrop").
//
// Live is the other generator: not on the poller but the kernel's XDP live-frames mode (BPF_PROG_RUN with
// BPF_F_TEST_XDP_LIVE_FRAMES), several times cheaper per frame than AF_XDP in copy mode, for benchmarks where
// the generator must not be what limits the measurement.
//
// Ownership and concurrency: NewHandler is called by the poller once per queue; each queue's handler is used
// by that queue's goroutine only and keeps its counters locally, publishing them with one atomic store each per
// batch. Sent, Received and the other readers may be called from any goroutine at any time; they lag the loop by
// at most one batch. Nothing panics on received frames; New functions return errors for bad configuration.
package pktgen
