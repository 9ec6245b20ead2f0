package stack

import (
	"encoding/binary"
	"sync"
	"sync/atomic"

	"github.com/xdpnet/xdpnet/proto"
)

// neverProbed is probeAt before the first request: far enough in the past that one is due at any clock.
const neverProbed = -1 << 62

// nkey names a neighbour: an IPv4 address on an interface.
type nkey struct {
	iface uint32
	ip    uint32
}

// neighbour is one ARP entry, shared by every queue. Its fields are atomics so that pollers read and
// update it without a lock: the MAC is one 64-bit word (never torn), and state changes that must happen once
// (a probe slot, failing) use compare-and-swap.
type neighbour struct {
	key       nkey
	state     atomic.Uint32 // NeighbourState
	mac       atomic.Uint64
	confirmed atomic.Int64 // when an ARP message last confirmed the MAC
	probeAt   atomic.Int64 // when the last request was sent; the per-address rate limit
	probes    atomic.Uint32
	failedAt  atomic.Int64
}

func (n *neighbour) macValue() proto.MAC {
	v := n.mac.Load()
	return proto.MAC{byte(v >> 40), byte(v >> 32), byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}
}

func macWord(m proto.MAC) uint64 {
	return uint64(m[0])<<40 | uint64(m[1])<<32 | uint64(m[2])<<24 | uint64(m[3])<<16 | uint64(m[4])<<8 | uint64(m[5])
}

// putMAC writes the neighbour's MAC into b[0:6] (an Ethernet destination).
func (n *neighbour) putMAC(b []byte) {
	v := n.mac.Load()
	_ = b[5]
	binary.BigEndian.PutUint32(b, uint32(v>>16))
	binary.BigEndian.PutUint16(b[4:], uint16(v))
}

// confirm records an ARP message from the neighbour: the MAC is known and it is alive.
func (n *neighbour) confirm(m proto.MAC, now int64) (wasResolved bool) {
	n.mac.Store(macWord(m))
	n.confirmed.Store(now)
	n.probes.Store(0)
	old := NeighbourState(n.state.Swap(uint32(NeighbourReachable)))
	return old == NeighbourIncomplete || old == NeighbourFailed
}

// neighTable maps keys to entries through an immutable map swapped on insert: lookups are a plain map read
// of the current version, and entries are created rarely (a new next hop), under mu.
type neighTable struct {
	mu sync.Mutex
	m  atomic.Pointer[map[nkey]*neighbour]
}

func (t *neighTable) init() {
	m := map[nkey]*neighbour{}
	t.m.Store(&m)
}

func (t *neighTable) get(k nkey) *neighbour { return (*t.m.Load())[k] }

// getOrCreate returns the entry for k, making an incomplete one if there is none.
// maxNeighbours bounds the table: entries are never removed (see neighCache), and each insert copies the
// map, so an address sweep over a large connected network must not grow it without end.
const maxNeighbours = 16384

// getOrCreate returns the entry for k, making an incomplete one if there is none; nil when the table is full.
func (t *neighTable) getOrCreate(k nkey) (n *neighbour, created bool) {
	if n := t.get(k); n != nil {
		return n, false
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	old := *t.m.Load()
	if n := old[k]; n != nil {
		return n, false
	}
	if len(old) >= maxNeighbours {
		return nil, false
	}
	m := make(map[nkey]*neighbour, len(old)+1)
	for kk, v := range old {
		m[kk] = v
	}
	n = &neighbour{key: k}
	n.state.Store(uint32(NeighbourIncomplete))
	n.probeAt.Store(neverProbed)
	m[k] = n
	t.m.Store(&m)
	return n, true
}

// neighCache is a queue's direct-mapped cache in front of the shared map, so the forwarding path finds a
// next hop with one hash and one compare instead of a map lookup. Entries are never removed from the
// table, so a cached pointer stays the entry for its key.
type neighCache [256]*neighbour

func (c *neighCache) lookup(t *neighTable, k nkey) *neighbour {
	h := (k.ip*0x9e3779b1 + k.iface) >> 24
	if n := c[h]; n != nil && n.key == k {
		return n
	}
	n, _ := t.getOrCreate(k)
	if n != nil {
		c[h] = n
	}
	return n
}

// rateLimiter is a lock-free GCRA token bucket (a virtual scheduling "theoretical arrival time"): a message
// is allowed when tat - now <= tolerance, which is burst messages at rate per second.
type rateLimiter struct {
	interval, tolerance int64
	tat                 atomic.Int64
}

func (r *rateLimiter) init(rate, burst int) {
	if rate < 0 {
		return // unlimited: interval 0
	}
	r.interval = int64(1e9) / int64(rate)
	r.tolerance = int64(burst-1) * r.interval
}

func (r *rateLimiter) allow(now int64) bool {
	if r.interval == 0 {
		return true
	}
	for {
		old := r.tat.Load()
		t := max(old, now)
		if t-now > r.tolerance {
			return false
		}
		if r.tat.CompareAndSwap(old, t+r.interval) {
			return true
		}
	}
}
