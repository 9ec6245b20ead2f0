//go:build amd64 || arm64

package stack

// prefetch6 asks the CPU to bring the cache line of w[at[i]] for each i < n, without waiting for it (and
// without faulting, whatever the address): lookupBatch issues the loads of a whole level this way before
// it reads any of them, so their misses overlap however many there are - an ordinary load would hold its
// place in the reorder buffer until it completed, which caps the misses in flight at about a dozen.
// Go has no prefetch intrinsic outside the runtime, hence the assembly (PREFETCHT0, PRFM PLDL1KEEP).
//
//go:noescape
func prefetch6(w *uint32, at *uint32, n int)
