// Package pipeline is xdpnet's sk_buff and netfilter: a Packet is a view over one frame with a movable data
// start and end, a Batch is a vector of packets processed together (as VPP does), and Hooks run ordered stages
// at the five netfilter hook points over a batch.
//
// Ownership: a Batch and every Packet in it belong to the goroutine that drives it (a poller queue, or an
// in-memory link in tests); nothing here is safe for concurrent use. A Packet's frame belongs to its
// FrameSource; when a stage keeps a packet past the end of a batch (verdict Stolen) it owns the frame and must
// either send it later (Ticker.Tick) or return it with FrameSource.Put, exactly once.
//
// Nothing here allocates or panics per packet: Pull/Push/Trim report failure with a bool, verdicts and drop
// reasons are small integers.
package pipeline
