// Package memlink is an in-memory driver for a pipeline.Handler, the test double of the poller (in the manner of
// gVisor's link/channel): frames are injected as byte slices, the handler's Process (and Tick, for a
// pipeline.Ticker) run exactly as a poller queue runs them, and what the handler transmits is collected per
// port for the test to read.
//
// Frames live in one heap slab cut into fixed-size frames, like a UMEM, handed out by a FrameSource that tracks
// the state of every frame. At the end of each batch the Link places every packet by its verdict: Tx copies the
// data to the port's sent list and frees the frame (as a TX completion would), Drop frees it and counts the
// reason, Stolen leaves it to the handler, Accept frees it as DropUnhandled. Between calls, every frame not free
// is held by the handler, so Outstanding must equal what the handler says it holds; a frame put back twice, put
// back while still in a batch, or never put back shows up in Err, Outstanding or CheckAccounting.
//
// Time is a fake monotonic clock that moves only with Advance, so timer-driven behaviour (ARP aging, TCP
// retransmission) is tested without sleeping.
//
// A Link is used by one goroutine, like a poller queue. Only Waker.Wake may be called from other goroutines.
// Nothing panics on packet contents; freed frames are overwritten with 0xdd so that a handler that reads a
// frame after giving it back sees garbage rather than the old packet.
package memlink
