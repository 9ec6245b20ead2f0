package pktgen

import (
	"context"
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
// program rewrites the source port per frame and an IPv4 UDP checksum is optional. The frame goes out of
// Ifindex, which must be a veth whose peer has an XDP program attached (or another driver that implements
// ndo_xdp_xmit); Rate and Count are not supported.
type Live struct {
	prog    *ebpf.Program
	counter *ebpf.Map
	frame   []byte
}

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
	frame := g.Template(0)
	udp := frame[udpSrcPortOff:]
	udp[6], udp[7] = 0, 0
	m, err := ebpf.NewMap(&ebpf.MapSpec{Name: "pktgen_live", Type: ebpf.PerCPUArray, KeySize: 4, ValueSize: 8, MaxEntries: 1})
	if err != nil {
		return nil, fmt.Errorf("pktgen: create counter map: %w", err)
	}
	prog, err := ebpf.NewProgram(&ebpf.ProgramSpec{Name: "pktgen_live", Type: ebpf.XDP, License: "Dual BSD/GPL",
		Instructions: liveInstructions(m, g.cfg.Src.Port(), g.cfg.Flows, ifindex)})
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
//	if (data + 42 > data_end) return XDP_ABORTED;
//	udp->source = htons(port + i % flows);
//	return bpf_redirect(ifindex, 0);
func liveInstructions(m *ebpf.Map, port uint16, flows, ifindex int) asm.Instructions {
	const (
		xdpAborted   = 0
		xdpMdData    = 0
		xdpMdDataEnd = 4
	)
	return asm.Instructions{
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
		asm.Mod.Imm(asm.R1, int32(flows)),
		asm.Add.Imm(asm.R1, int32(port)),
		asm.HostTo(asm.BE, asm.R1, asm.Half),
		asm.LoadMem(asm.R2, asm.R6, xdpMdData, asm.Word),
		asm.LoadMem(asm.R3, asm.R6, xdpMdDataEnd, asm.Word),
		asm.Mov.Reg(asm.R4, asm.R2),
		asm.Add.Imm(asm.R4, hdrLen),
		asm.JGT.Reg(asm.R4, asm.R3, "abort"),
		asm.StoreMem(asm.R2, udpSrcPortOff, asm.R1, asm.Half),
		asm.Mov.Imm(asm.R1, int32(ifindex)),
		asm.Mov.Imm(asm.R2, 0),
		asm.FnRedirect.Call(),
		asm.Return(),
		asm.Mov.Imm(asm.R0, xdpAborted).WithSymbol("abort"),
		asm.Return(),
	}
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
