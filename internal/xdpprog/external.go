package xdpprog

import (
	"fmt"

	"github.com/cilium/ebpf"
)

// UseXSKMap returns a Program for an interface whose XDP program is someone else's: an embedder's own
// program that calls bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS) for the frames it wants in user
// space. xsks is that program's XSKMAP (BPF_MAP_TYPE_XSKMAP, key = rx queue index); Register puts the
// sockets in it. Nothing is loaded or attached: the embedder attaches (and re-attaches, when the interface is
// re-created) its program itself, and Close only releases this Program's handle on the map, leaving the
// embedder's handle and program alone.
//
// The interface must exist in the calling thread's namespace and the map must have a slot for each of its
// rx queues (opts.Queues as for Attach); opts.Mode and opts.Replace do not apply.
func UseXSKMap(ifindex int, opts Options, xsks *ebpf.Map) (*Program, error) {
	if xsks == nil {
		return nil, fmt.Errorf("use XSKMAP on interface index %d: no map (give the XSKMAP your XDP program redirects into)", ifindex)
	}
	nlink, err := lookupLink(ifindex)
	if err != nil {
		return nil, err
	}
	name := nlink.Attrs().Name
	if xsks.Type() != ebpf.XSKMap || xsks.KeySize() != 4 || xsks.ValueSize() != 4 {
		return nil, fmt.Errorf("use XSKMAP on %s: the map is a %v with %d-byte keys and %d-byte values; it must be an XSKMap (BPF_MAP_TYPE_XSKMAP) with 4-byte keys (rx queue index) and values",
			name, xsks.Type(), xsks.KeySize(), xsks.ValueSize())
	}
	rxq := max(nlink.Attrs().NumRxQueues, 1)
	queues := max(opts.Queues, rxq)
	if int(xsks.MaxEntries()) < queues {
		return nil, fmt.Errorf("use XSKMAP on %s: the map has %d slots but %s has %d rx queues (and %d are asked for); create it with MaxEntries >= %d",
			name, xsks.MaxEntries(), name, rxq, opts.Queues, queues)
	}
	own, err := xsks.Clone()
	if err != nil {
		return nil, fmt.Errorf("use XSKMAP on %s: duplicate the map's handle: %w", name, err)
	}
	return &Program{ifname: name, ifindex: ifindex, queues: int(xsks.MaxEntries()), mode: ModeAuto, xsks: own}, nil
}
