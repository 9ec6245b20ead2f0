// Package rings is xdpnet's driver descriptor rings: the four single-producer/single-consumer rings AF_XDP
// shares with the kernel (fill, RX, TX, completion), and the Socket that creates them, maps them, binds to one
// queue of one interface and registers or shares a UMEM.
//
// A ring is a power-of-two array of descriptors plus a producer and a consumer index that run freely over
// uint32 and wrap at 2^32; entry i lives at i&mask. As in libxdp's xsk.h, each side keeps a cached copy of the
// other side's index and reads the shared one only when the cache says there is not enough room or data, so a
// busy ring costs one shared cache line access per batch, not per descriptor. Every access to a shared index is
// a sync/atomic operation; each is commented with the kernel access it pairs with (net/xdp/xsk_queue.h).
// Rings over ordinary memory (NewFillPair and friends) let the arithmetic be tested, and a poller be driven,
// without a kernel.
//
// Ownership: a ring, and a Socket's rings, are used by one goroutine (the poller queue that owns the socket);
// nothing here locks. Socket.Statistics and Socket.FD may be called from other goroutines while the socket is
// open. Close must not race with ring use.
//
// Panics: Reserve/Peek never hand out more entries than exist; Set/Desc/Addr index with the mask and cannot go
// out of range. Using a ring after its Socket is closed faults (the memory is unmapped).
package rings
