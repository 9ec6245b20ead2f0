// Package xdpcount is the benchmarks' packet counter at the sink: a BPF program that counts (frames and their
// bytes, Ethernet header to the end, no FCS) and drops IPv4 frames in a per-CPU array and passes everything else (ARP, so that a router in front can resolve the sink's
// address) to the kernel. It runs either as XDP (Attach) or at the tc ingress hook (AttachIngress). On veth the
// two differ in where the sink's work lands: an XDP program on the receiving end makes veth queue every frame
// to that end's NAPI on the sending CPU - which is the device under test's - and convert each skb back to an
// xdp_buff (a page copy when the headroom is short); without XDP the frame goes through the backlog queue,
// which RPS can steer to another CPU, so that the sink costs the device under test nothing.
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

// hook is where the program runs: its context's data and data_end offsets and its pass and drop verdicts.
type hook struct {
	data, dataEnd int16
	// length is the offset of the whole frame's length in the context, -1 where data_end - data is the frame
	// (XDP without fragments); an skb's linear part (data_end - data) can be shorter than the frame.
	length     int16
	pass, drop int32
}

var (
	xdpHook = hook{data: 0, dataEnd: 4, length: -1, pass: 2, drop: 1}  // struct xdp_md; XDP_PASS, XDP_DROP
	tcHook  = hook{data: 76, dataEnd: 80, length: 0, pass: 0, drop: 2} // struct __sk_buff (len); TC_ACT_OK, TC_ACT_SHOT
)

const (
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
//	u64 len = ctx->len or data_end - data;
//	u64 *n = bpf_map_lookup_elem(&counts, &zero);                   // per-CPU: no atomics needed
//	if (n) { n[0] += 1; n[1] += len; }
//	return XDP_DROP;
//
// with the context offsets and verdicts of h.
func instructions(m *ebpf.Map, h hook) asm.Instructions {
	length := asm.Instructions{asm.Mov.Reg(asm.R6, asm.R3), asm.Sub.Reg(asm.R6, asm.R2)}
	if h.length >= 0 {
		length = asm.Instructions{asm.LoadMem(asm.R6, asm.R1, h.length, asm.Word)}
	}
	insns := asm.Instructions{
		asm.LoadMem(asm.R2, asm.R1, h.data, asm.Word),
		asm.LoadMem(asm.R3, asm.R1, h.dataEnd, asm.Word),
	}
	insns = append(insns, length...)
	return append(insns,
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
		asm.LoadMem(asm.R1, asm.R0, 8, asm.DWord),
		asm.Add.Reg(asm.R1, asm.R6),
		asm.StoreMem(asm.R0, 8, asm.R1, asm.DWord),
		asm.Mov.Imm(asm.R0, h.drop).WithSymbol("drop"),
		asm.Return(),
		asm.Mov.Imm(asm.R0, h.pass).WithSymbol("pass"),
		asm.Return(),
	)
}

// Attach loads the program and attaches it (native XDP) to ifindex in the calling thread's namespace.
func Attach(ifindex int) (*Counter, error) {
	return attach(ifindex, xdpHook, ebpf.XDP, func(p *ebpf.Program) (link.Link, error) {
		return link.AttachXDP(link.XDPOptions{Program: p, Interface: ifindex, Flags: link.XDPDriverMode})
	})
}

// AttachIngress loads the program and attaches it at ifindex's tc ingress hook (tcx, Linux 6.6+) in the calling
// thread's namespace.
func AttachIngress(ifindex int) (*Counter, error) {
	return attach(ifindex, tcHook, ebpf.SchedCLS, func(p *ebpf.Program) (link.Link, error) {
		return link.AttachTCX(link.TCXOptions{Program: p, Interface: ifindex, Attach: ebpf.AttachTCXIngress})
	})
}

func attach(ifindex int, h hook, typ ebpf.ProgramType, attachTo func(*ebpf.Program) (link.Link, error)) (*Counter, error) {
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("xdpcount: remove memlock limit: %w", err)
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "xdpcount", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 16, MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("xdpcount: create map: %w", err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "xdpcount", Type: typ, License: "Dual BSD/GPL", Instructions: instructions(m, h)})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("xdpcount: load program: %w", err)
	}
	l, err := attachTo(prog)
	if err != nil {
		prog.Close()
		m.Close()
		return nil, fmt.Errorf("xdpcount: attach to interface %d: %w", ifindex, err)
	}
	return &Counter{m: m, prog: prog, l: l}, nil
}

// Count is the number of IPv4 frames dropped so far, summed over CPUs.
func (c *Counter) Count() (uint64, error) {
	n, _, err := c.Counts()
	return n, err
}

// Counts is the number of IPv4 frames dropped so far and their bytes (Ethernet header to the end of the
// frame, without the FCS), summed over CPUs.
func (c *Counter) Counts() (frames, bytes uint64, err error) {
	var vals [][2]uint64
	if err := c.m.Lookup(uint32(0), &vals); err != nil {
		return 0, 0, fmt.Errorf("xdpcount: read counter: %w", err)
	}
	for _, v := range vals {
		frames += v[0]
		bytes += v[1]
	}
	return frames, bytes, nil
}

// Close detaches and unloads.
func (c *Counter) Close() error {
	err := c.l.Close()
	c.prog.Close()
	c.m.Close()
	return err
}
