package xdpprog

import (
	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// Names the kernel shows in bpftool/ip link; BPF object names are at most 15 characters.
const (
	redirectProgName = "xdpnet_redirect"
	xsksMapName      = "xdpnet_xsks"
)

// xsksSymbol is the reference the listing uses for the XSKMAP until the loaded map is associated with it.
const xsksSymbol = "xsks"

// Offsets in struct xdp_md (include/uapi/linux/bpf.h), the context the kernel passes an XDP program in R1:
//
//	struct xdp_md {
//		__u32 data;             // 0
//		__u32 data_end;         // 4
//		__u32 data_meta;        // 8
//		__u32 ingress_ifindex;  // 12
//		__u32 rx_queue_index;   // 16
//		__u32 egress_ifindex;   // 20
//	};
const xdpMdRxQueueIndex = 16

// xdpPass is XDP_PASS from enum xdp_action: hand the frame to the kernel stack.
const xdpPass = 2

// redirectInstructions is the redirect program, equivalent to this C:
//
//	SEC("xdp") int xdpnet_redirect(struct xdp_md *ctx)
//	{
//		return bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS);
//	}
//
// It needs no bpf_map_lookup_elem before the redirect: since Linux 5.3 bpf_redirect_map returns the action in
// the low bits of flags when the slot is empty, which is what sends queues without a socket to the kernel.
// The map load references xsksSymbol; the caller associates the real map before loading.
func redirectInstructions() asm.Instructions {
	return asm.Instructions{
		// On entry R1 = ctx (struct xdp_md *).
		// R2 = ctx->rx_queue_index: the key, i.e. the XSKMAP slot of this queue.
		asm.LoadMem(asm.R2, asm.R1, xdpMdRxQueueIndex, asm.Word).WithSymbol(redirectProgName),
		// R1 = &xsks (ctx is no longer needed; R1 becomes the helper's first argument).
		asm.LoadMapPtr(asm.R1, 0).WithReference(xsksSymbol),
		// R3 = flags = XDP_PASS: the action bpf_redirect_map returns when slot R2 holds no socket.
		asm.Mov.Imm(asm.R3, xdpPass),
		// R0 = bpf_redirect_map(R1 map, R2 key, R3 flags): XDP_REDIRECT on a hit, XDP_PASS on a miss.
		asm.FnRedirectMap.Call(),
		// return R0.
		asm.Return(),
	}
}

// redirectSpec returns the ProgramSpec of the redirect program bound to xsks.
func redirectSpec(xsks *ebpf.Map) (*ebpf.ProgramSpec, error) {
	insns := redirectInstructions()
	if err := insns.AssociateMap(xsksSymbol, xsks); err != nil {
		return nil, err
	}
	return &ebpf.ProgramSpec{
		Name:         redirectProgName,
		Type:         ebpf.XDP,
		License:      "Dual BSD/GPL",
		Instructions: insns,
	}, nil
}

// xsksSpec describes the XSKMAP: key = rx queue index (u32), value = AF_XDP socket fd (u32) on update; the
// kernel stores the socket, not the fd number.
func xsksSpec(entries int) *ebpf.MapSpec {
	return &ebpf.MapSpec{
		Name:       xsksMapName,
		Type:       ebpf.XSKMap,
		KeySize:    4,
		ValueSize:  4,
		MaxEntries: uint32(entries),
	}
}
