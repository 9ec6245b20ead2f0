package xdpprog

import (
	"encoding/binary"
	"strconv"

	"github.com/cilium/ebpf/asm"
)

// This file is the machinery the steering program (steer.go) and the transit program (transit.go) share: a
// listing builder with labels, the Ethernet/802.1Q parse that leaves the L3 header in a register, the entry
// checks of an IPv4 and an IPv6 section, and the common tail (redirect into the XSKMAP or XDP_PASS). A
// program built from it reads, in C:
//
//	SEC("xdp") int prog(struct xdp_md *ctx)
//	{
//		void *data = (void *)(long)ctx->data, *end = (void *)(long)ctx->data_end;
//		if (data + 14 > end) return XDP_PASS;
//		__u16 type = *(__u16 *)(data + 12); void *l3 = data + 14; __u32 vlan = UNTAGGED;
//		if (vlans && (type == htons(0x8100) || type == htons(0x88a8))) {   // one tag, 802.1Q or 802.1ad
//			if (data + 18 > end) return XDP_PASS;
//			vlan = ntohs(*(__u16 *)(data + 14)) & 0xfff; type = *(__u16 *)(data + 16); l3 = data + 18;
//		}
//		if (type == htons(0x0800)) goto ipv4;      // checks l3 + 20 <= end, version 4, IHL >= 5
//		if (type == htons(0x86dd)) goto ipv6;      // checks l3 + 40 <= end, version 6
//		... other ...
//	redirect:
//		return bpf_redirect_map(&xsks, ctx->rx_queue_index, miss);
//	pass:
//		return XDP_PASS;
//	}
//
// Registers kept across the whole program (callee-saved, so they survive helper calls): R6 = ctx, R7 = the
// L3 header (a packet pointer), R8 = the EtherType as a 16-bit load from the packet reads it (see
// loadedBE16), R9 = data_end. The verifier checks every packet read against data_end: a frame too short for
// what a section reads goes to XDP_PASS, never out of bounds.

// Registers with a fixed role (see above).
const (
	regCtx     = asm.R6
	regL3      = asm.R7
	regEthType = asm.R8
	regEnd     = asm.R9
)

// Offsets in the frame and in the headers.
const (
	ethHeaderLen  = 14
	vlanHeaderLen = 4
	ethTypeOff    = 12
	ipv4HeaderLen = 20
	ipv6HeaderLen = 40
	xdpMdData     = 0
	xdpMdDataEnd  = 4

	ipv4VerIHLOff   = 0
	ipv4FragOff     = 6
	ipv4ProtocolOff = 9
	ipv4SrcOff      = 12
	ipv4DstOff      = 16

	ipv6NextHeaderOff = 6
	ipv6SrcOff        = 8
	ipv6DstOff        = 24
)

// EtherTypes the parse knows.
const (
	etherTypeIPv4   = 0x0800
	etherTypeIPv6   = 0x86dd
	etherType8021Q  = 0x8100
	etherType8021AD = 0x88a8
)

// untaggedVLAN is the value of the VLAN stack slot for a frame without a tag: above every 12-bit VLAN id.
const untaggedVLAN = 1 << 12

// stackVLAN is where the parse leaves the VLAN id (a u32 at fp-4) when it parses tags.
const stackVLAN = -4

// Labels of the common parts.
const (
	labelPass     = "pass"
	labelRedirect = "redirect"
	labelIPv4     = "ipv4"
	labelIPv6     = "ipv6"
)

// loadedBE16 is the value a 16-bit load from the packet gives for the big-endian bytes of v: BPF loads are
// in the host's byte order, so constants compared with an unconverted load must be read the same way.
func loadedBE16(v uint16) int32 {
	var b [2]byte
	binary.BigEndian.PutUint16(b[:], v)
	return int32(binary.NativeEndian.Uint16(b[:]))
}

// listing builds an instruction list with labels. A label names the next instruction emitted; two labels
// on one spot get a no-op jump between them, since an instruction carries one symbol. The verifier refuses
// unreachable instructions, so the listing drops code after an unconditional jump or exit up to the next
// label something jumps to (every jump here goes forward, so a label's references are known when it is
// placed).
type listing struct {
	insns   asm.Instructions
	pending string
	n       int             // for fresh labels
	dead    bool            // the next instruction cannot be reached
	jumped  map[string]bool // labels referenced by a jump emitted so far
}

func (l *listing) emit(ins ...asm.Instruction) {
	for _, in := range ins {
		if l.dead {
			continue
		}
		if l.pending != "" {
			in = in.WithSymbol(l.pending)
			l.pending = ""
		}
		l.insns = append(l.insns, in)
		op := in.OpCode.JumpOp()
		if ref := in.Reference(); ref != "" && op != asm.InvalidJumpOp && op != asm.Call {
			if l.jumped == nil {
				l.jumped = map[string]bool{}
			}
			l.jumped[ref] = true
		}
		if op == asm.Ja || op == asm.Exit {
			l.dead = true
		}
	}
}

// label makes name the label of the next instruction.
func (l *listing) label(name string) {
	if l.dead && !l.jumped[name] {
		return // nothing reaches this spot
	}
	l.dead = false
	if l.pending != "" {
		l.emit(asm.Ja.Label(name)) // "goto next instruction": lets the pending label have one of its own
		l.dead = false
	}
	l.pending = name
}

// fresh returns a label not used before in this listing.
func (l *listing) fresh(what string) string {
	l.n++
	return what + "_" + strconv.Itoa(l.n)
}

// entry emits the program's start: the context and packet registers, the Ethernet header, and with vlans
// one 802.1Q/802.1ad tag (its id in the stackVLAN slot). It leaves R7 at the L3 header, R8 the EtherType,
// and jumps to labelIPv4 or labelIPv6 for those EtherTypes; the code emitted next handles every other one.
// Without vlans a tagged frame is "other" with EtherType 0x8100.
func (l *listing) entry(name string, vlans bool) {
	l.emit(
		asm.Mov.Reg(regCtx, asm.R1).WithSymbol(name),
		asm.LoadMem(asm.R2, regCtx, xdpMdData, asm.Word),
		asm.LoadMem(regEnd, regCtx, xdpMdDataEnd, asm.Word),
		// The Ethernet header, checked before the first packet read, as the verifier demands.
		asm.Mov.Reg(regL3, asm.R2),
		asm.Add.Imm(regL3, ethHeaderLen),
		asm.JGT.Reg(regL3, regEnd, labelPass),
		asm.LoadMem(regEthType, asm.R2, ethTypeOff, asm.Half),
	)
	if vlans {
		tagged, parsed := l.fresh("tagged"), l.fresh("l3")
		l.emit(
			asm.StoreImm(asm.RFP, stackVLAN, untaggedVLAN, asm.Word),
			asm.JEq.Imm(regEthType, loadedBE16(etherType8021Q), tagged),
			asm.JEq.Imm(regEthType, loadedBE16(etherType8021AD), tagged),
			asm.Ja.Label(parsed),
		)
		l.label(tagged)
		l.emit(
			asm.Mov.Reg(regL3, asm.R2),
			asm.Add.Imm(regL3, ethHeaderLen+vlanHeaderLen),
			asm.JGT.Reg(regL3, regEnd, labelPass),
			// TCI: PCP(3) DEI(1) VID(12).
			asm.LoadMem(asm.R1, asm.R2, ethHeaderLen, asm.Half),
			asm.HostTo(asm.BE, asm.R1, asm.Half),
			asm.And.Imm(asm.R1, 0x0fff),
			asm.StoreMem(asm.RFP, stackVLAN, asm.R1, asm.Word),
			asm.LoadMem(regEthType, asm.R2, ethHeaderLen+vlanHeaderLen-2, asm.Half),
		)
		l.label(parsed)
	}
	l.emit(
		asm.JEq.Imm(regEthType, loadedBE16(etherTypeIPv4), labelIPv4),
		asm.JEq.Imm(regEthType, loadedBE16(etherTypeIPv6), labelIPv6),
	)
}

// ipv4Section starts the IPv4 section: a 20-byte header inside the frame, version 4, IHL >= 5. It leaves
// the header length in bytes (20..60) in R1 for the caller. A frame that fails goes to XDP_PASS: odd frames
// are the kernel's to judge.
func (l *listing) ipv4Section() {
	l.label(labelIPv4)
	l.emit(
		asm.Mov.Reg(asm.R1, regL3),
		asm.Add.Imm(asm.R1, ipv4HeaderLen),
		asm.JGT.Reg(asm.R1, regEnd, labelPass),
		asm.LoadMem(asm.R1, regL3, ipv4VerIHLOff, asm.Byte),
		asm.Mov.Reg(asm.R2, asm.R1),
		asm.RSh.Imm(asm.R2, 4),
		asm.JNE.Imm(asm.R2, 4, labelPass),
		asm.And.Imm(asm.R1, 0x0f),
		asm.JLT.Imm(asm.R1, 5, labelPass),
		asm.LSh.Imm(asm.R1, 2),
	)
}

// ipv6Section starts the IPv6 section: a 40-byte header inside the frame, version 6.
func (l *listing) ipv6Section() {
	l.label(labelIPv6)
	l.emit(
		asm.Mov.Reg(asm.R1, regL3),
		asm.Add.Imm(asm.R1, ipv6HeaderLen),
		asm.JGT.Reg(asm.R1, regEnd, labelPass),
		asm.LoadMem(asm.R1, regL3, 0, asm.Byte),
		asm.RSh.Imm(asm.R1, 4),
		asm.JNE.Imm(asm.R1, 6, labelPass),
	)
}

// tail emits the redirect (R0 = bpf_redirect_map(&xsks, ctx->rx_queue_index, miss)) and the pass exits.
// miss is what bpf_redirect_map returns when the queue's slot holds no socket: XDP_PASS in production.
func (l *listing) tail(miss int32) {
	l.label(labelRedirect)
	l.emit(
		asm.LoadMem(asm.R2, regCtx, xdpMdRxQueueIndex, asm.Word),
		asm.LoadMapPtr(asm.R1, 0).WithReference(xsksSymbol),
		asm.Mov.Imm(asm.R3, miss),
		asm.FnRedirectMap.Call(),
		asm.Return(),
	)
	l.label(labelPass)
	l.emit(
		asm.Mov.Imm(asm.R0, xdpPass),
		asm.Return(),
	)
}
