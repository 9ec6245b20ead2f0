package rings

import (
	"fmt"
	"math/bits"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// ring is the index arithmetic shared by the four rings. A producer ring keeps cachedCons = consumer + size,
// so that cachedCons - cachedProd is the free room; a consumer ring keeps cachedProd, so that
// cachedProd - cachedCons is what is ready. Both differences are correct across the 2^32 wrap because they are
// computed in uint32.
type ring struct {
	producer *uint32
	consumer *uint32
	flags    *uint32
	mask     uint32
	size     uint32

	cachedProd uint32
	cachedCons uint32
}

func (r *ring) init(base unsafe.Pointer, off unix.XDPRingOffset, size uint32, producerSide bool) {
	r.producer = (*uint32)(unsafe.Add(base, off.Producer))
	r.consumer = (*uint32)(unsafe.Add(base, off.Consumer))
	r.flags = (*uint32)(unsafe.Add(base, off.Flags))
	r.size, r.mask = size, size-1
	// The indexes may not start at zero (a fake starting near 2^32, or a ring reused); start from what is there.
	r.cachedProd = atomic.LoadUint32(r.producer)
	r.cachedCons = atomic.LoadUint32(r.consumer)
	if producerSide {
		r.cachedCons += size
	}
}

// Size is the number of entries.
func (r *ring) Size() uint32 { return r.size }

// NeedWakeup reports whether the kernel asked, through the ring's flags word, to be woken with a syscall
// (XDP_RING_NEED_WAKEUP; sendto for TX, poll or recvfrom for fill). The kernel writes the flag with
// WRITE_ONCE (xsk_set_rx_need_wakeup/xsk_set_tx_need_wakeup); an atomic load keeps us from caching it.
func (r *ring) NeedWakeup() bool { return atomic.LoadUint32(r.flags)&unix.XDP_RING_NEED_WAKEUP != 0 }

// SetNeedWakeup sets or clears the need_wakeup flag, as the kernel does. Only a fake kernel calls it.
func (r *ring) SetNeedWakeup(on bool) {
	if on {
		atomic.StoreUint32(r.flags, unix.XDP_RING_NEED_WAKEUP)
	} else {
		atomic.StoreUint32(r.flags, 0)
	}
}

// freeEntries is the producer's room, refreshing the cached consumer only when the cache shows less than n.
func (r *ring) freeEntries(n uint32) uint32 {
	free := r.cachedCons - r.cachedProd
	if free >= n {
		return free
	}
	// (A) Acquire-load of the consumer index: pairs with the kernel's smp_store_release of ring->consumer in
	// __xskq_cons_release (D). Seeing the new index means the kernel has finished reading those entries, so we
	// may overwrite them.
	r.cachedCons = atomic.LoadUint32(r.consumer) + r.size
	return r.cachedCons - r.cachedProd
}

// reserve claims up to n entries for writing and returns the index of the first and how many it got.
func (r *ring) reserve(n uint32) (idx, got uint32) {
	got = min(n, r.freeEntries(n))
	idx = r.cachedProd
	r.cachedProd += got
	return idx, got
}

// submit publishes the next n reserved entries to the kernel.
func (r *ring) submit(n uint32) {
	// (B) Release-store of the producer index: pairs with the kernel's smp_load_acquire of ring->producer in
	// __xskq_cons_peek (C). The entries written before this store are visible to the kernel once it sees the
	// index. We are the only writer of producer, so the plain read of the old value is exact.
	atomic.StoreUint32(r.producer, *r.producer+n)
}

// cancel gives back the last n reserved entries that were not submitted.
func (r *ring) cancelReserve(n uint32) { r.cachedProd -= n }

// availEntries is what the consumer may read, refreshing the cached producer only when the cache is empty
// (libxdp does the same: it keeps the shared producer's cache line out of the fast path).
func (r *ring) availEntries(n uint32) uint32 {
	entries := r.cachedProd - r.cachedCons
	if entries == 0 {
		// (C) Acquire-load of the producer index: pairs with the kernel's smp_store_release of ring->producer in
		// __xskq_prod_submit / xskq_prod_submit_n (B). Entries up to the index are fully written when we read
		// them.
		r.cachedProd = atomic.LoadUint32(r.producer)
		entries = r.cachedProd - r.cachedCons
	}
	return min(entries, n)
}

// peek claims up to n ready entries for reading.
func (r *ring) peek(n uint32) (idx, got uint32) {
	got = r.availEntries(n)
	idx = r.cachedCons
	r.cachedCons += got
	return idx, got
}

// release hands the next n read entries back to the kernel.
func (r *ring) release(n uint32) {
	// (D) Release-store of the consumer index: pairs with the kernel's smp_load_acquire of ring->consumer in
	// xskq_prod_nb_free/xskq_cons_present... (A). Our reads of the entries happen before the kernel may
	// overwrite them. We are the only writer of consumer.
	atomic.StoreUint32(r.consumer, *r.consumer+n)
}

// cancelPeek un-reads the last n peeked entries that were not released.
func (r *ring) cancelPeek(n uint32) { r.cachedCons -= n }

// Pending is, for a producer ring, the entries submitted and not yet consumed by the other side; for a consumer
// ring, the entries produced and not yet released. It reads both shared indexes; for accounting, not the hot path.
func (r *ring) Pending() uint32 {
	return atomic.LoadUint32(r.producer) - atomic.LoadUint32(r.consumer)
}

// Indexes returns the shared producer and consumer indexes (for tests and diagnostics).
func (r *ring) Indexes() (prod, cons uint32) {
	return atomic.LoadUint32(r.producer), atomic.LoadUint32(r.consumer)
}

// FillRing is the producer side of an address ring: the fill ring, where user space gives the kernel empty
// frames to receive into. (A fake kernel uses it as the producer of a completion ring.)
type FillRing struct {
	ring
	addrs []uint64
}

// Reserve claims up to n entries; write them with Set(idx+i, addr) and then Submit(got).
func (r *FillRing) Reserve(n uint32) (idx, got uint32) { return r.reserve(n) }

// Set writes entry idx.
func (r *FillRing) Set(idx uint32, addr uint64) { r.addrs[idx&r.mask] = addr }

// Addr reads back entry idx (to take frames back from a closed socket's fill ring).
func (r *FillRing) Addr(idx uint32) uint64 { return r.addrs[idx&r.mask] }

// Submit publishes n entries.
func (r *FillRing) Submit(n uint32) { r.submit(n) }

// Cancel gives back n reserved entries not submitted.
func (r *FillRing) Cancel(n uint32) { r.cancelReserve(n) }

// Free is the room for new entries (refreshing the consumer index if needed).
func (r *FillRing) Free() uint32 { return r.freeEntries(r.size) }

// CompRing is the consumer side of an address ring: the completion ring, where the kernel returns frames it
// has sent. (A fake kernel uses it as the consumer of a fill ring.)
type CompRing struct {
	ring
	addrs []uint64
}

// Peek claims up to n ready entries; read them with Addr(idx+i) and then Release(got).
func (r *CompRing) Peek(n uint32) (idx, got uint32) { return r.peek(n) }

// Addr reads entry idx.
func (r *CompRing) Addr(idx uint32) uint64 { return r.addrs[idx&r.mask] }

// Release hands n read entries back.
func (r *CompRing) Release(n uint32) { r.release(n) }

// Cancel un-reads n peeked entries.
func (r *CompRing) Cancel(n uint32) { r.cancelPeek(n) }

// TxRing is the producer side of a descriptor ring: the TX ring. (A fake kernel uses it to produce RX.)
type TxRing struct {
	ring
	descs []unix.XDPDesc
}

// Reserve claims up to n entries; fill them through Desc(idx+i) and then Submit(got).
func (r *TxRing) Reserve(n uint32) (idx, got uint32) { return r.reserve(n) }

// Desc is entry idx, to be written.
func (r *TxRing) Desc(idx uint32) *unix.XDPDesc { return &r.descs[idx&r.mask] }

// Submit publishes n entries.
func (r *TxRing) Submit(n uint32) { r.submit(n) }

// Cancel gives back n reserved entries not submitted.
func (r *TxRing) Cancel(n uint32) { r.cancelReserve(n) }

// Free is the room for new entries.
func (r *TxRing) Free() uint32 { return r.freeEntries(r.size) }

// RxRing is the consumer side of a descriptor ring: the RX ring. (A fake kernel uses it to consume TX.)
type RxRing struct {
	ring
	descs []unix.XDPDesc
}

// Peek claims up to n ready entries; read them with Desc(idx+i) and then Release(got).
func (r *RxRing) Peek(n uint32) (idx, got uint32) { return r.peek(n) }

// Desc is entry idx.
func (r *RxRing) Desc(idx uint32) *unix.XDPDesc { return &r.descs[idx&r.mask] }

// Release hands n read entries back.
func (r *RxRing) Release(n uint32) { r.release(n) }

// Cancel un-reads n peeked entries.
func (r *RxRing) Cancel(n uint32) { r.cancelPeek(n) }

// CheckSize returns an error unless n is a power of two the kernel accepts for a ring.
func CheckSize(what string, n int) error {
	if n <= 0 || n > 1<<30 || bits.OnesCount(uint(n)) != 1 {
		lo := 1
		if n > 1 {
			lo = 1 << (bits.Len(uint(n)) - 1)
		}
		return fmt.Errorf("%s size %d: %w (use a power of two such as %d or %d)", what, n, ErrRingSize, lo, lo*2)
	}
	return nil
}

func addrSlice(base unsafe.Pointer, off uint64, n uint32) []uint64 {
	return unsafe.Slice((*uint64)(unsafe.Add(base, off)), n)
}

func descSlice(base unsafe.Pointer, off uint64, n uint32) []unix.XDPDesc {
	return unsafe.Slice((*unix.XDPDesc)(unsafe.Add(base, off)), n)
}

// memLayout is a kernel-like layout for a ring in ordinary memory: producer and consumer on separate cache
// lines as the kernel places them (struct xdp_ring is ____cacheline_aligned), then flags, then entries.
func memLayout() unix.XDPRingOffset {
	return unix.XDPRingOffset{Producer: 0, Consumer: 64, Flags: 128, Desc: 192}
}

func newMem(size uint32, entry uintptr) unsafe.Pointer {
	words := (192 + uintptr(size)*entry + 7) / 8
	return unsafe.Pointer(unsafe.SliceData(make([]uint64, words)))
}

// NewFillPair returns a fill ring over ordinary memory and the kernel's view of it (a consumer of addresses),
// so that tests and fakes can play the kernel. start is the initial value of both indexes (use values near
// 2^32 to test the wrap). size must be a power of two.
func NewFillPair(size, start uint32) (*FillRing, *CompRing) {
	m := newMem(size, 8)
	off := memLayout()
	*(*uint32)(unsafe.Add(m, off.Producer)) = start
	*(*uint32)(unsafe.Add(m, off.Consumer)) = start
	u := &FillRing{addrs: addrSlice(m, off.Desc, size)}
	u.init(m, off, size, true)
	k := &CompRing{addrs: u.addrs}
	k.init(m, off, size, false)
	return u, k
}

// NewCompPair returns a completion ring over ordinary memory and the kernel's (producer) view of it.
func NewCompPair(size, start uint32) (*CompRing, *FillRing) {
	k, u := NewFillPair(size, start)
	return u, k
}

// NewTxPair returns a TX ring over ordinary memory and the kernel's (consumer) view of it.
func NewTxPair(size, start uint32) (*TxRing, *RxRing) {
	m := newMem(size, unsafe.Sizeof(unix.XDPDesc{}))
	off := memLayout()
	*(*uint32)(unsafe.Add(m, off.Producer)) = start
	*(*uint32)(unsafe.Add(m, off.Consumer)) = start
	u := &TxRing{descs: descSlice(m, off.Desc, size)}
	u.init(m, off, size, true)
	k := &RxRing{descs: u.descs}
	k.init(m, off, size, false)
	return u, k
}

// NewRxPair returns an RX ring over ordinary memory and the kernel's (producer) view of it.
func NewRxPair(size, start uint32) (*RxRing, *TxRing) {
	k, u := NewTxPair(size, start)
	return u, k
}
