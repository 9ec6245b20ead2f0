// Package conntrack is xdpnet's nf_conntrack: a bounded table of connections, each known by the 5-tuple of
// its original direction and of its reply direction, with TCP's state followed loosely (no sequence-window
// checks) and a timeout per protocol and state, as the kernel's nf_conntrack_*_timeout sysctls set them.
// Package pipeline/nat builds NAT44 on it, as nf_nat builds on nf_conntrack: NAT chooses a connection's
// reply tuple (the translated address and port) and the table guarantees that no two live connections
// share a tuple in either direction, which is what makes a port mapping unique.
//
// Bound and eviction: the table holds at most Config.Max connections, allocated at New (no allocation per
// packet or per connection). It is cut into stripes (64 for the default size), each with its own lock, its
// own share of the entries and its own open-addressing index; a connection belongs to the stripe its
// original tuple hashes to (a seeded hash, so that remote hosts cannot aim at one stripe). When that stripe
// is full, a new connection takes the place of the stripe's oldest connection that is not yet assured (no
// reply seen, a TCP handshake not completed) - nf_conntrack's early_drop, which likewise looks only near
// the new connection's hash - and is refused, counted, when every connection there is assured. The bound
// is thus kept per stripe: a new connection can be refused while other stripes have room, which the
// seeded hash makes matter only when the table is nearly full (after TestFloodAssured in pipeline/nat,
// all 65 536 entries are in use). Also as nf_conntrack, "not assured" includes connections that saw
// a reply but not yet more (a TCP handshake in SYN_RECV, a UDP query answered once). Expired
// connections are removed when a packet finds them, when a new connection needs their place or tuple, and
// by Sweep, which a stage calls a few entries at a time.
//
// Concurrency: one table serves every poller queue. With NAT, the two directions of a connection arrive on
// different interfaces, where RSS hashes different tuples (the reply carries the translated ones), so they
// land on unrelated queues; per-queue tables would need every reply steered back to the queue of its
// original (VPP hands packets between workers for this; AF_XDP queues have no cheap handoff), so the table
// is shared and lock-striped instead. A packet's lookup holds the lock of the stripe its tuple hashes to;
// adding or removing a connection holds the locks of both its tuples' stripes (taken in stripe order), so a
// connection found under either lock cannot vanish while it is used. The state word and the expiry, which
// both directions update under different locks, are atomics. All methods are safe for concurrent use.
//
// Time is the caller's monotonic clock in nanoseconds (pipeline.Batch.Now). Nothing panics on packet
// contents; Track, Lookup, Insert and Sweep do not allocate.
package conntrack
