// Package umem is xdpnet's DMA memory: one mmap'd Area cut into fixed-size frames that the kernel and user
// space pass back and forth through the AF_XDP rings, and a Pool, the stack of frame addresses that are free.
//
// Ownership: an Area is created and closed by one owner (a poller queue); its bytes are shared with the kernel
// once registered with a socket. A Pool is used by one goroutine, the one that drives the queue's rings; it has
// no locks and does not allocate. Every frame is at any time in exactly one place (State); the Pool records each
// transition in a byte per frame, so Accounting can say where every frame is and a double Put is caught instead
// of corrupting the stack.
//
// Panics: nothing panics on bad input from the kernel. Put of an address outside the Area or of a frame that is
// already free does not panic either; it is counted as a violation, refused, and reported by Check. Methods
// called after Close may panic (the mapping is gone).
package umem
