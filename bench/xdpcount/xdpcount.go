// Package xdpcount is the benchmarks' packet counter at the sink: an XDP program that counts and drops IPv4
// frames in a per-CPU array and passes everything else (ARP, so that a router in front can resolve the sink's
// address) to the kernel. Counting in XDP costs the sink almost nothing, so the sink never limits what it
// measures and needs no CPU of its own on a two-core machine.
//
// A Counter is attached with a bpf_link (it goes away with the process or Close) in the network namespace of
// the calling thread. Count may be called from any goroutine.
package xdpcount

import (
	"fmt"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/link"
	"github.com/cilium/ebpf/rlimit"
)

// XDP actions (enum xdp_action) and struct xdp_md offsets.
const (
	xdpDrop       = 1
	xdpPass       = 2
	xdpMdData     = 0
	xdpMdDataEnd  = 4
	etherTypeOff  = 12
	ethHeaderLen  = 14
	etherTypeIPv4 = 0x0008 // 0x0800 as the little-endian load of the big-endian field reads it
)

// Counter is an attached counting program.
type Counter struct {
	m    *ebpf.Map
	prog *ebpf.Program
	l    link.Link
}

// instructions is, in C:
//
//	if (data + 14 > data_end || eth->h_proto != htons(ETH_P_IP)) return XDP_PASS;
//	u64 *n = bpf_map_lookup_elem(&counts, &zero); if (n) *n += 1;   // per-CPU: no atomics needed
//	return XDP_DROP;
func instructions(m *ebpf.Map) asm.Instructions {
	return asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, xdpMdData, asm.Word),
		asm.LoadMem(asm.R3, asm.R1, xdpMdDataEnd, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, ethHeaderLen),
		asm.JGT.Reg(asm.R4, asm.R3, "pass"),
		asm.LoadMem(asm.R5, asm.R2, etherTypeOff, asm.Half),
		asm.JNE.Imm(asm.R5, etherTypeIPv4, "pass"),
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "drop"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Add.Imm(asm.R1, 1),
		asm.StoreMem(asm.R0, 0, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, xdpDrop).WithSymbol("drop"),
		asm.Return(),
		asm.Mov.Imm(asm.R0, xdpPass).WithSymbol("pass"),
		asm.Return(),
	}
}

// Attach loads the program and attaches it (native XDP) to ifindex in the calling thread's namespace.
func Attach(ifindex int) (*Counter, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("xdpcount: remove memlock limit: %w", err)
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "xdpcount", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("xdpcount: create map: %w", err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "xdpcount", Type: ebpf.XDP, License: "Dual BSD/GPL", Instructions: instructions(m)})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("xdpcount: load program: %w", err)
	}
	l, err := link.AttachXDP(link.XDPOptions{Program: prog, Interface: ifindex, Flags: link.XDPDriverMode})
	if err != nil {
		prog.Close()
		m.Close()
		return nil, fmt.Errorf("xdpcount: attach to interface %d: %w", ifindex, err)
	}
	return &Counter{m: m, prog: prog, l: l}, nil
}

// Count is the number of IPv4 frames dropped so far, summed over CPUs.
func (c *Counter) Count() (uint64, error) {
	var vals []uint64
	if err := c.m.Lookup(uint32(0), &vals); err != nil {
		return 0, fmt.Errorf("xdpcount: read counter: %w", err)
	}
	var s uint64
	for _, v := range vals {
		s += v
	}
	return s, nil
}

// Close detaches and unloads.
func (c *Counter) Close() error {
	err := c.l.Close()
	c.prog.Close()
	c.m.Close()
	return err
}
