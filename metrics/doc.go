// Package metrics exports xdpnet's counters to Prometheus: a Collector that reads a poller's and a stack's
// snapshots (poller.Stats, stack.Stats, the neighbour and route tables) at scrape time, and the build
// information of the running binary (BuildInfo, NewBuildInfoCollector). Any program that runs a poller or a
// stack registers it with its own registry; the series are named xdpnet_* with the labels port, queue,
// reason, ring, kind and state as cmd/xdpfwd has always exposed them, so dashboards work for every embedder.
//
// Ownership and concurrency: the packet path does no metrics work at all. Its counters are the ones the
// poller and the stack keep anyway (published once per batch with an atomic store); a scrape costs one
// Stats call per source and may run on any goroutine, concurrently with the pollers. Collect does not panic
// on any snapshot content.
package metrics
