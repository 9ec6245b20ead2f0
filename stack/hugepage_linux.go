package stack

import (
	"syscall"
	"unsafe"
)

// adviseHuge asks for transparent huge pages under the tbl24 array. A random lookup touches one of 16384 4K
// pages, so with small pages nearly every lookup is also a TLB miss; with 2 MiB pages the 64 MiB fit in 32
// TLB entries. It is advice only (THP may be off): errors are ignored.
func adviseHuge(t []uint32) {
	if len(t) == 0 {
		return
	}
	const huge = 2 << 20
	start := uintptr(unsafe.Pointer(&t[0]))
	end := start + uintptr(len(t))*4
	a := (start + huge - 1) &^ (huge - 1)
	if a >= end {
		return
	}
	off := (a - start) / 4 // start is 4-aligned and a 2 MiB-aligned, so this is exact
	b := unsafe.Slice((*byte)(unsafe.Pointer(&t[off])), end-a)
	_ = syscall.Madvise(b, 14) // MADV_HUGEPAGE
}
