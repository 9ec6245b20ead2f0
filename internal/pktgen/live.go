package pktgen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"runtime"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"github.com/cilium/ebpf/rlimit"
	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/proto"
)

// Live is the kernel's own XDP traffic generator driven from Go: an XDP program run with BPF_PROG_RUN in
// BPF_F_TEST_XDP_LIVE_FRAMES mode (Linux 5.18+, what xdp-tools' xdp-trafficgen uses). The kernel builds each
// frame from a template in a page pool, runs the program, which sets the flow's UDP source port and redirects
// the frame out of one interface, and hands it to that driver's ndo_xdp_xmit - on veth, straight into the
// peer's receive ring as an xdp_frame, with no skb and no AF_XDP copy. It is several times cheaper per frame
// than any AF_XDP generator in copy mode, which is what a benchmark needs when the generator and the device
// under test share two cores: the generator must not be the ceiling of what it measures (RFC 2544 §6).
//
// Frames are Config's (BuildFrame), except that the UDP checksum is 0 ("not computed", RFC 768), because the
// program rewrites the source port per frame and an IPv4 UDP checksum is optional. With a Mix the template is
// the largest frame, and the program sets each frame's length (bpf_xdp_adjust_tail) and rewrites the IPv4
// total length, header checksum and UDP length to that size's prebuilt values. The frame goes out of
// Ifindex, which must be a veth whose peer has an XDP program attached (or another driver that implements
// ndo_xdp_xmit); Rate and Count are not supported.
type Live struct {
	prog    *ebpf.Program
	counter *ebpf.Map
	frame   []byte
}

// liveSize is one frame size of a Mix as the live program writes it: the length without FCS, the positions of
// the mix cycle that have it (bit k for position k) and the header fields that depend on the length, as the
// bytes the frame carries (network order), loaded as native-endian immediates.
type liveSize struct {
	flen                 int
	positions            uint64
	totLen, csum, udpLen int32
}

// Offsets of the length-dependent fields in the frame (no IP options).
const (
	ipTotLenOff = proto.EthernetHeaderLen + 2
	ipCsumOff   = proto.EthernetHeaderLen + 10
	udpLenOff   = udpSrcPortOff + 4
)

// liveRepeat is how many frames one BPF_PROG_RUN call emits. Each call sets up and tears down a page pool,
// which costs about 20 ms here whatever the count, so a call must be long to amortise it: 2^21 frames is
// 0.5-1 s on veth (2^19 still left the DUT idle 4% of the time), which is also how long Run takes to notice
// a cancelled context.
const liveRepeat = 1 << 21

// udpSrcPortOff is the UDP source port's offset in the frame (no IP options).
const udpSrcPortOff = proto.EthernetHeaderLen + proto.IPv4MinHeaderLen

// NewLive loads the generator program for cfg, sending out of ifindex in the calling thread's network
// namespace (the program resolves ifindex there when it runs, so Run must run in the same namespace).
func NewLive(cfg Config, ifindex int) (*Live, error) {
	g, err := NewGenerator(cfg)
	if err != nil {
		return nil, err
	}
	if cfg.Rate != 0 || cfg.Count != 0 {
		return nil, fmt.Errorf("%w: the live XDP generator has no Rate or Count; use the AF_XDP Generator", ErrConfig)
	}
	if err := rlimit.RemoveMemlock(); err != nil {
		return nil, fmt.Errorf("pktgen: remove memlock limit: %w", err)
	}
	// The template is the largest frame; a mix program trims (or grows) each frame to its size.
	var sizes []liveSize
	largest := 0
	for pos, d := range g.mix {
		if d == uint8(len(sizes)) {
			t := g.TemplateOf(0, g.sizes[d]+FCSLen)
			hw := func(off int) int32 { return int32(binary.NativeEndian.Uint16(t[off:])) }
			sizes = append(sizes, liveSize{flen: len(t), totLen: hw(ipTotLenOff), csum: hw(ipCsumOff), udpLen: hw(udpLenOff)})
			if len(t) > sizes[largest].flen {
				largest = int(d)
			}
		}
		sizes[d].positions |= 1 << pos
	}
	frame := g.TemplateOf(0, sizes[largest].flen+FCSLen)
	udp := frame[udpSrcPortOff:]
	udp[6], udp[7] = 0, 0
	if len(sizes) == 1 {
		sizes = nil // one size: the template is the frame, nothing to adjust
	}
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "pktgen_live", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("pktgen: create counter map: %w", err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "pktgen_live", Type: ebpf.XDP, License: "Dual BSD/GPL",
		Instructions: liveInstructions(m, g.cfg.Src.Port(), g.cfg.Flows, ifindex, sizes, len(g.mix))})
	if err != nil {
		m.Close()
		return nil, fmt.Errorf("pktgen: load live generator program: %w", err)
	}
	return &Live{prog: prog, counter: m, frame: frame}, nil
}

// liveInstructions is, in C:
//
//	u64 *n = bpf_map_lookup_elem(&counter, &zero);       // per-CPU: no atomics
//	if (!n) return XDP_ABORTED;
//	u64 i = (*n)++;
//	if (mix) {                                           // sizes != nil
//		u64 bit = 1 << (i % mixLen); int d = 0;
//		for each size d > 0: if (bit & sizes[d].positions) class = d;
//		if (bpf_xdp_adjust_tail(ctx, sizes[class].flen - (data_end - data))) return XDP_ABORTED;
//	}
//	if (data + 42 > data_end) return XDP_ABORTED;
//	udp->source = htons(port + i % flows);
//	if (mix) { ip->tot_len = ...; ip->check = ...; udp->len = ...; }   // sizes[class]'s
//	return bpf_redirect(ifindex, 0);
//
// R6 holds the context, R7 the frame number and R8 the size class across the helper calls.
func liveInstructions(m *ebpf.Map, port uint16, flows, ifindex int, sizes []liveSize, mixLen int) asm.Instructions {
	const (
		xdpAborted   = 0
		xdpMdData    = 0
		xdpMdDataEnd = 4
	)
	var classify, rewrite asm.Instructions
	if sizes != nil {
		classify = asm.Instructions{
			asm.Mov.Reg(asm.R2, asm.R7),
			asm.Mod.Imm(asm.R2, int32(mixLen)),
			asm.Mov.Imm(asm.R3, 1),
			asm.LSh.Reg(asm.R3, asm.R2),
			asm.Mov.Imm(asm.R8, 0),
		}
		for d := 1; d < len(sizes); d++ {
			next := fmt.Sprintf("class%d", d+1)
			classify = append(classify,
				asm.LoadImm(asm.R4, int64(sizes[d].positions), asm.DWord),
				asm.And.Reg(asm.R4, asm.R3),
				asm.JEq.Imm(asm.R4, 0, next),
				asm.Mov.Imm(asm.R8, int32(d)),
				asm.Mov.Reg(asm.R8, asm.R8).WithSymbol(next), // a no-op to carry the label
			)
		}
		classify = append(classify, asm.Mov.Imm(asm.R2, int32(sizes[0].flen)))
		for d := 1; d < len(sizes); d++ {
			next := fmt.Sprintf("len%d", d+1)
			classify = append(classify,
				asm.JNE.Imm(asm.R8, int32(d), next),
				asm.Mov.Imm(asm.R2, int32(sizes[d].flen)),
				asm.Mov.Reg(asm.R2, asm.R2).WithSymbol(next),
			)
		}
		classify = append(classify,
			asm.LoadMem(asm.R3, asm.R6, xdpMdData, asm.Word),
			asm.LoadMem(asm.R4, asm.R6, xdpMdDataEnd, asm.Word),
			asm.Sub.Reg(asm.R4, asm.R3),
			asm.Sub.Reg(asm.R2, asm.R4),
			asm.Mov.Reg(asm.R1, asm.R6),
			asm.FnXdpAdjustTail.Call(),
			asm.JNE.Imm(asm.R0, 0, "abort"),
		)
		for d, sz := range sizes {
			next := fmt.Sprintf("hdr%d", d+1)
			rewrite = append(rewrite,
				asm.JNE.Imm(asm.R8, int32(d), next),
				asm.StoreImm(asm.R2, ipTotLenOff, int64(sz.totLen), asm.Half),
				asm.StoreImm(asm.R2, ipCsumOff, int64(sz.csum), asm.Half),
				asm.StoreImm(asm.R2, udpLenOff, int64(sz.udpLen), asm.Half),
				asm.Mov.Reg(asm.R2, asm.R2).WithSymbol(next),
			)
		}
	}
	var insns asm.Instructions
	insns = append(insns,
		asm.Mov.Reg(asm.R6, asm.R1),
		asm.StoreImm(asm.RFP, -4, 0, asm.Word),
		asm.Mov.Reg(asm.R2, asm.RFP),
		asm.Add.Imm(asm.R2, -4),
		asm.LoadMapPtr(asm.R1, m.FD()),
		asm.FnMapLookupElem.Call(),
		asm.JEq.Imm(asm.R0, 0, "abort"),
		asm.LoadMem(asm.R1, asm.R0, 0, asm.DWord),
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.Add.Imm(asm.R2, 1),
		asm.StoreMem(asm.R0, 0, asm.R2, asm.DWord),
		asm.Mov.Reg(asm.R7, asm.R1),
	)
	insns = append(insns, classify...)
	insns = append(insns,
		asm.Mov.Reg(asm.R1, asm.R7),
		asm.Mod.Imm(asm.R1, int32(flows)),
		asm.Add.Imm(asm.R1, int32(port)),
		asm.HostTo(asm.BE, asm.R1, asm.Half),
		asm.LoadMem(asm.R2, asm.R6, xdpMdData, asm.Word),
		asm.LoadMem(asm.R3, asm.R6, xdpMdDataEnd, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, hdrLen),
		asm.JGT.Reg(asm.R4, asm.R3, "abort"),
		asm.StoreMem(asm.R2, udpSrcPortOff, asm.R1, asm.Half),
	)
	insns = append(insns, rewrite...)
	return append(insns,
		asm.Mov.Imm(asm.R1, int32(ifindex)),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRedirect.Call(),
		asm.Return(),
		asm.Mov.Imm(asm.R0, xdpAborted).WithSymbol("abort"),
		asm.Return(),
	)
}

// Run emits frames as fast as the kernel takes them until ctx is done, on the calling goroutine's thread,
// pinned to cpu when cpu >= 0. Run it in the namespace NewLive was called in (netlab's Host.Do): the kernel
// resolves the program's ifindex in the namespace of the thread that runs it. A pinned thread is not given
// back to the Go runtime: Run returns with the thread still locked, so it ends with its goroutine.
func (l *Live) Run(ctx context.Context, cpu int) error {
	runtime.LockOSThread()
	if cpu >= 0 {
		var set unix.CPUSet
		set.Set(cpu)
		if err := unix.SchedSetaffinity(0, &set); err != nil {
			return fmt.Errorf("pktgen: pin the live generator to CPU %d: %w", cpu, err)
		}
	} else {
		defer runtime.UnlockOSThread()
	}
	opts := &ebpf.RunOptions{Data: l.frame, Repeat: liveRepeat, Flags: unix.BPF_F_TEST_XDP_LIVE_FRAMES}
	for ctx.Err() == nil {
		if _, err := l.prog.Run(opts); err != nil {
			if errors.Is(err, unix.EINVAL) {
				return fmt.Errorf("pktgen: run live XDP generator: %w (live frames need Linux 5.18 or later)", err)
			}
			return fmt.Errorf("pktgen: run live XDP generator: %w", err)
		}
	}
	return nil
}

// Sent is the number of frames the program has redirected, summed over CPUs. A frame the target interface
// could not take (its peer's ring full) is counted here and dropped by the driver, so measure what arrived at
// the receiver, not this, where it matters.
func (l *Live) Sent() uint64 {
	var vals []uint64
	if err := l.counter.Lookup(uint32(0), &vals); err != nil {
		return 0
	}
	var s uint64
	for _, v := range vals {
		s += v
	}
	return s
}

// Close unloads the program.
func (l *Live) Close() error {
	l.prog.Close()
	return l.counter.Close()
}
