package nat

import (
	"sync"
	"time"

	"github.com/xdpnet/xdpnet/pipeline"
)

// Fragments. A fragment after the first carries no transport header, so its connection cannot be found
// from it. The kernel reassembles before tracking (nf_defrag_ipv4); xdpnet does not reassemble. Instead,
// as VPP's NAT does without reassembly, each hook remembers how it translated the first fragment of a
// datagram (by source, destination, protocol and IP ID as the hook saw them) and translates the later
// fragments' address the same way; their payload needs nothing, the transport checksum having been
// updated in the first. A later fragment that arrives before its first, or after fragTimeout, or whose
// record a colliding datagram replaced, is dropped (DropFragment) when it would leave by a masquerading
// interface untranslated; elsewhere it goes on as it is.

// fragSlots bounds the records (one per datagram in flight; a newer datagram takes a colliding slot).
const fragSlots = 4096

// fragTimeout is how long a record lives: the kernel's net.ipv4.ipfrag_time.
const fragTimeout = int64(30 * time.Second)

type fragKey struct {
	src, dst uint32
	id       uint16
	proto    uint8
	src2     bool // recorded by nat-src (else nat-dst)
}

type fragSlot struct {
	key     fragKey
	addr    uint32
	expires int64
}

type fragCache struct {
	mu    [16]sync.Mutex
	slots [fragSlots]fragSlot
}

func (k fragKey) slot() int {
	h := (uint64(k.src)<<32 | uint64(k.dst)) * 0x9e3779b97f4a7c15
	h ^= uint64(k.id)<<8 | uint64(k.proto)
	h *= 0xbf58476d1ce4e5b9
	if k.src2 {
		h ^= 1
	}
	return int(h>>40) % fragSlots
}

func keyOf(v *view, src bool) fragKey {
	return fragKey{src: v.ip.Src32(), dst: v.ip.Dst32(), id: v.ip.ID(), proto: v.t.Proto, src2: src}
}

// remember records, for the first fragment of a datagram about to be translated at one hook, the address
// that hook gives it.
func (n *NAT) remember(v *view, src bool, addr uint32, now int64) {
	if !v.first {
		return
	}
	k := keyOf(v, src)
	i := k.slot()
	mu := &n.frags.mu[i%len(n.frags.mu)]
	mu.Lock()
	n.frags.slots[i] = fragSlot{key: k, addr: addr, expires: now + fragTimeout}
	mu.Unlock()
}

// fragment translates a later fragment as its first was at this hook; false when there is no record.
func (n *NAT) fragment(p *pipeline.Packet, v *view, src bool, now int64) bool {
	k := keyOf(v, src)
	i := k.slot()
	mu := &n.frags.mu[i%len(n.frags.mu)]
	mu.Lock()
	s := n.frags.slots[i]
	mu.Unlock()
	if s.key != k || now-s.expires >= 0 {
		return false
	}
	rewrite(v.ip, nil, src, s.addr, 0)
	inc(&n.ctrOf(p).fragments)
	return true
}
