//go:build !amd64 && !arm64

package stack

// prefetch6 is a no-op where there is no assembly for it: lookupBatch is then correct, only slower.
func prefetch6(w *uint32, at *uint32, n int) {}
