package stack

import "sync/atomic"

// atomicMap holds an immutable map that writers replace as a whole (copy on write).
type atomicMap[K comparable, V any] struct{ p atomic.Pointer[map[K]V] }

func (a *atomicMap[K, V]) load() map[K]V   { return *a.p.Load() }
func (a *atomicMap[K, V]) store(m map[K]V) { a.p.Store(&m) }
