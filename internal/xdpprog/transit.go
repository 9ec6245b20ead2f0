package xdpprog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// The transit program steers only transit traffic to the AF_XDP socket and gives everything else to the
// kernel. It is the data-plane half of the kernel-mirror mode (internal/kmirror): the kernel stays the control
// plane (ARP, NDP, ICMP to the box, SSH, routing daemons) and sees every frame the fast path does not handle.
// It is built from the same parts as the steering program (parse.go): the Ethernet parse, the IPv4 and IPv6
// section checks and the redirect/pass tail; what it tests in the sections is its own (TTL, multicast, and a
// lookup in the KernelPrefixes maps, which a steering rule's compiled prefixes cannot express: the kernel's
// addresses and routes change at run time).
//
// Decision, in order (the first that applies wins):
//
//	frame shorter than Ethernet header                   -> XDP_PASS (odd frames are the kernel's to judge)
//	EtherType not IPv4 or IPv6 (ARP, VLAN tags, LLDP...) -> XDP_PASS
//	IPv4:
//	  header cut short, version != 4, IHL < 5            -> XDP_PASS
//	  destination multicast or class E (>= 224.0.0.0)    -> XDP_PASS (includes 255.255.255.255)
//	  destination's longest KernelPrefixes entry ToKernel
//	    (an address of the box, a directed broadcast, a
//	    route via an interface we do not own)            -> XDP_PASS
//	IPv6:
//	  header cut short, version != 6                     -> XDP_PASS
//	  destination multicast (ff00::/8) or link-local
//	    (fe80::/10)                                      -> XDP_PASS (NDP, MLD, link-local traffic: the kernel's)
//	  destination's longest KernelPrefixes entry ToKernel
//	    (an address of the box, a route we do not own)   -> XDP_PASS (ICMPv6 and NDP to the box's addresses)
//	otherwise                                            -> bpf_redirect_map(xsks, rx_queue_index, XDP_PASS)
//
// TTL, hop limit, IPv4 options and IPv6 extension headers are not looked at: a transit packet that expires
// here, or carries options or a Hop-by-Hop header, goes to the fast path like any other, whose stack
// handles it as a router must (Time Exceeded, RFC 1812 §5.3.1 and RFC 4443 §3.3, rate-limited; options
// checked and forwarded, RFC 1812 §5.2.4, source routes refused; Hop-by-Hop processed, RFC 8200 §4.3).
// The kernel would not: with its forwarding off (the point of the mode) it drops a packet that is not for it
// without a word, so traceroute would show a silent hop and ping -R would get no answer. A packet for the
// box, expiring or with options, goes to the kernel with the rest of the box's traffic.
//
// IPv4 fragments are transit traffic like any other packet (the stack forwards fragments untouched and
// refragments nothing it does not have to); a fragment for the box matches a local /32 and goes to the
// kernel, which reassembles it. The same holds for IPv6 fragments (a Fragment header after the fixed one).
const (
	transitProgName    = "xdpnet_transit"
	kernelMapName      = "xdpnet_kernel"
	kernel6MapName     = "xdpnet_kernel6"
	kernelSymbol       = "kernel"
	kernel6Symbol      = "kernel6"
	firstMulticastByte = 224
	// stackKey is where the LPM key is built: struct bpf_lpm_trie_key { __u32 prefixlen; __u8 data[]; } of
	// 8 bytes (IPv4) or 20 bytes (IPv6) at fp-24.
	stackKey = -24
)

// transitInstructions is the transit program. miss is the action bpf_redirect_map returns when the queue's
// XSKMAP slot is empty: XDP_PASS in production (a queue without a socket is the kernel's); tests pass another
// action to tell "reached the redirect" from "decided to pass" under BPF_PROG_TEST_RUN, where no socket can be
// registered. The IPv4 section in C (the IPv6 one is alike, with a 20-byte key):
//
//	if (ip[16] >= 224) return XDP_PASS;
//	struct { __u32 len; __u32 addr; } key = { 32, *(__u32 *)(ip + 16) };
//	__u8 *v = bpf_map_lookup_elem(&kernel, &key);
//	if (v && *v) return XDP_PASS;
//	return bpf_redirect_map(&xsks, ctx->rx_queue_index, miss);
func transitInstructions(miss int32) asm.Instructions {
	l := &listing{}
	// No VLAN parse: a tagged frame's EtherType is 0x8100, which is "other" and goes to the kernel.
	l.entry(transitProgName, false)
	l.emit(asm.Ja.Label(labelPass))

	l.ipv4Section()
	l.emit(
		// Destination 224.0.0.0 and above: multicast, class E, limited broadcast.
		asm.LoadMem(asm.R1, regL3, ipv4DstOff, asm.Byte),
		asm.JGE.Imm(asm.R1, firstMulticastByte, labelPass),
		// key = {prefixlen 32, dst as it is on the wire}.
		asm.LoadMem(asm.R1, regL3, ipv4DstOff, asm.Word),
		asm.StoreMem(asm.RFP, stackKey+4, asm.R1, asm.Word),
		asm.StoreImm(asm.RFP, stackKey, 32, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(kernelSymbol),
	)
	l.kernelLookup()

	l.ipv6Section()
	l.emit(
		// Multicast ff00::/8 (solicited-node NS, MLD, all-nodes): first byte 0xff.
		asm.LoadMem(asm.R1, regL3, ipv6DstOff, asm.Byte),
		asm.JEq.Imm(asm.R1, 0xff, labelPass),
		// Link-local fe80::/10: RFC 4291 §2.5.6, never forwarded.
		asm.LoadMem(asm.R1, regL3, ipv6DstOff, asm.Half),
		asm.HostTo(asm.BE, asm.R1, asm.Half),
		asm.And.Imm(asm.R1, 0xffc0),
		asm.JEq.Imm(asm.R1, 0xfe80, labelPass),
		asm.StoreImm(asm.RFP, stackKey, 128, asm.Word),
	)
	for w := int16(0); w < 4; w++ {
		l.emit(
			asm.LoadMem(asm.R1, regL3, ipv6DstOff+4*w, asm.Word),
			asm.StoreMem(asm.RFP, stackKey+4+4*w, asm.R1, asm.Word),
		)
	}
	l.emit(asm.LoadMapPtr(asm.R1, 0).WithReference(kernel6Symbol))
	l.kernelLookup()

	l.tail(miss)
	return l.insns
}

// kernelLookup emits the LPM lookup of the key at stackKey in the map R1 points to: no entry, or a FastPath
// one, redirects; a ToKernel one passes.
func (l *listing) kernelLookup() {
	l.emit(
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, stackKey),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, labelRedirect),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.Byte),
		asm.JNE.Imm(asm.R1, 0, labelPass),
		asm.Ja.Label(labelRedirect),
	)
}

// transitSpec returns the ProgramSpec of the transit program bound to xsks and kp's maps.
func transitSpec(xsks *ebpf.Map, kp *KernelPrefixes, miss int32) (*ebpf.ProgramSpec, error) {
	insns := transitInstructions(miss)
	if err := insns.AssociateMap(xsksSymbol, xsks); err != nil {
		return nil, err
	}
	if err := insns.AssociateMap(kernelSymbol, kp.m); err != nil {
		return nil, err
	}
	if err := insns.AssociateMap(kernel6Symbol, kp.m6); err != nil {
		return nil, err
	}
	return &ebpf.ProgramSpec{
		Name:         transitProgName,
		Type:         ebpf.XDP,
		License:      "Dual BSD/GPL",
		Instructions: insns,
	}, nil
}

// AttachTransit loads the transit program (see the decision table above) with an XSKMAP of opts.Queues
// slots, reading kp for the destinations that belong to the kernel, and attaches it to ifindex like Attach:
// through a bpf_link, with the same mode fallback and Replace rules. One KernelPrefixes may serve every
// interface; the caller keeps it open while it updates it (the programs hold their own reference).
func AttachTransit(ifindex int, opts Options, kp *KernelPrefixes) (*Program, error) {
	if kp == nil || kp.m == nil || kp.m6 == nil {
		return nil, fmt.Errorf("attach transit XDP program to interface index %d: no KernelPrefixes (create one with NewKernelPrefixes)", ifindex)
	}
	return attach(ifindex, opts, func(xsks *ebpf.Map) (*ebpf.ProgramSpec, error) {
		return transitSpec(xsks, kp, xdpPass)
	})
}

// PrefixOwner says who handles packets to a destination that a KernelPrefixes entry covers.
type PrefixOwner uint8

const (
	// FastPath: the AF_XDP socket (the user-space stack) forwards it.
	FastPath PrefixOwner = 0
	// ToKernel: XDP_PASS, the kernel handles it (addresses of the box, routes via interfaces xdpnet does not
	// own).
	ToKernel PrefixOwner = 1
)

func (o PrefixOwner) String() string {
	switch o {
	case FastPath:
		return "fast-path"
	case ToKernel:
		return "kernel"
	}
	return fmt.Sprintf("PrefixOwner(%d)", uint8(o))
}

// DefaultKernelPrefixes is the capacity NewKernelPrefixes uses for 0.
const DefaultKernelPrefixes = 65536

// ErrBadPrefix is returned for a prefix that is not valid.
var ErrBadPrefix = errors.New("xdpprog: invalid prefix")

// KernelPrefixes are the longest-prefix-match maps (BPF_MAP_TYPE_LPM_TRIE, one per family) the transit
// program consults: the longest entry covering a destination decides whether the kernel (ToKernel) or the
// fast path (FastPath) gets the packet; a destination no entry covers goes to the fast path. Addresses of the
// box go in as /32 and /128 ToKernel entries, so that they win over the connected route that covers them.
//
// Concurrency: Set and Delete are single bpf(2) map updates, safe from any goroutine and while packets flow;
// a packet sees the map before or after an update, never half of it.
type KernelPrefixes struct {
	m, m6 *ebpf.Map
}

// NewKernelPrefixes creates empty maps of at most max entries per family (0 means DefaultKernelPrefixes).
func NewKernelPrefixes(max int) (*KernelPrefixes, error) {
	if max == 0 {
		max = DefaultKernelPrefixes
	}
	if max < 0 || max > 1<<24 {
		return nil, fmt.Errorf("create kernel prefix map: size %d out of range 1..%d", max, 1<<24)
	}
	if err := removeMemlock(); err != nil {
		return nil, fmt.Errorf("create kernel prefix map: remove RLIMIT_MEMLOCK: %w", err)
	}
	newMap := func(name string, addrLen uint32) (*ebpf.Map, error) {
		m, err := ebpf.NewMap(&ebpf.MapSpec{
			Name:       name,
			Type:       ebpf.LPMTrie,
			KeySize:    4 + addrLen, // struct bpf_lpm_trie_key { __u32 prefixlen; __u8 data[]; }
			ValueSize:  1,
			MaxEntries: uint32(max),
			Flags:      1, // BPF_F_NO_PREALLOC, which LPM tries require
		})
		if err == nil {
			return m, nil
		}
		if errors.Is(err, ebpf.ErrNotSupported) {
			return nil, fmt.Errorf("create kernel prefix map: %w (LPM tries need Linux 4.11+)", err)
		}
		return nil, fmt.Errorf("create kernel prefix map: %w (run as root or grant CAP_BPF)", err)
	}
	m, err := newMap(kernelMapName, 4)
	if err != nil {
		return nil, err
	}
	m6, err := newMap(kernel6MapName, 16)
	if err != nil {
		m.Close()
		return nil, err
	}
	return &KernelPrefixes{m: m, m6: m6}, nil
}

// lpmKey returns the LPM key of p and the map of its family. An IPv4-mapped IPv6 prefix (::ffff:a.b.c.d/n,
// n >= 96) is the IPv4 prefix it maps.
func (k *KernelPrefixes) lpmKey(p netip.Prefix) ([]byte, *ebpf.Map, error) {
	if !p.IsValid() {
		return nil, nil, fmt.Errorf("%v: %w", p, ErrBadPrefix)
	}
	bits := p.Bits()
	if p.Addr().Is4In6() {
		if bits < 96 {
			return nil, nil, fmt.Errorf("%v: %w (an IPv4-mapped prefix shorter than /96)", p, ErrBadPrefix)
		}
		bits -= 96
	}
	a := p.Addr().Unmap().WithZone("")
	p = netip.PrefixFrom(a, bits).Masked()
	key := binary.NativeEndian.AppendUint32(nil, uint32(bits))
	key = append(key, p.Addr().AsSlice()...)
	if a.Is4() {
		return key, k.m, nil
	}
	return key, k.m6, nil
}

// Set makes p's packets go to owner (host bits of p are ignored).
func (k *KernelPrefixes) Set(p netip.Prefix, owner PrefixOwner) error {
	key, m, err := k.lpmKey(p)
	if err != nil {
		return fmt.Errorf("set kernel prefix: %w", err)
	}
	if err := m.Update(key, []byte{byte(owner)}, ebpf.UpdateAny); err != nil {
		return fmt.Errorf("set kernel prefix %v: %w (raise the map size of NewKernelPrefixes if it is full)", p, err)
	}
	return nil
}

// Delete removes the entry for p; a missing entry is not an error.
func (k *KernelPrefixes) Delete(p netip.Prefix) error {
	key, m, err := k.lpmKey(p)
	if err != nil {
		return fmt.Errorf("delete kernel prefix: %w", err)
	}
	if err := m.Delete(key); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		return fmt.Errorf("delete kernel prefix %v: %w", p, err)
	}
	return nil
}

// Lookup returns the owner of the longest entry covering a, as the transit program would find it; ok is false
// when no entry covers it (the fast path's).
func (k *KernelPrefixes) Lookup(a netip.Addr) (owner PrefixOwner, ok bool, err error) {
	key, m, err := k.lpmKey(netip.PrefixFrom(a.Unmap(), a.Unmap().BitLen()))
	if err != nil {
		return 0, false, err
	}
	var v [1]byte
	if err := m.Lookup(key, &v); err != nil {
		if errors.Is(err, ebpf.ErrKeyNotExist) {
			return 0, false, nil
		}
		return 0, false, err
	}
	return PrefixOwner(v[0]), true, nil
}

// Close releases this process's handles on the maps; attached programs keep their own reference until they
// are closed.
func (k *KernelPrefixes) Close() error {
	if k == nil || k.m == nil {
		return nil
	}
	return errors.Join(k.m.Close(), k.m6.Close())
}
