package xdpprog

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
)

// The steering program gives the AF_XDP sockets only the frames an embedder chose and leaves the rest to
// Linux (XDP_PASS): an appliance on a host takes, say, UDP/53 or one prefix, while ARP, ping, SSH and
// everything else keep working through the kernel. The choice is a list of Rules compiled into the
// program: a frame that matches any rule is redirected; a rule matches when every field it sets matches.
//
// What a rule can look at, and what a frame must be for it to match:
//
//	VLAN         the id of one 802.1Q or 802.1ad tag, or Untagged; a NIC that strips tags
//	             (rx-vlan-offload) hides them from XDP, so there every frame looks untagged
//	EtherType    the type after at most one tag (so 0x8100 itself is not a valid EtherType to match)
//	Protocol     IPv4 protocol, or IPv6 next header of the fixed header: an IPv6 packet with extension
//	             headers does not match a rule naming a protocol or ports (it goes to Linux)
//	ports        TCP/UDP/SCTP/UDP-Lite source and destination ports, in ranges; an IPv4 fragment, first or
//	             later, never matches a rule with ports (later ones carry no ports; keeping the whole
//	             datagram with Linux is better than splitting it)
//	prefixes     source and destination prefixes of either family; a rule with prefixes of one family
//	             matches only that family
//
// A frame whose VLAN tag or IP header (IPv4: 20 bytes, version 4, IHL >= 5; IPv6: 40 bytes, version 6) is
// cut short or malformed matches no rule, not even one with no fields: malformed frames are the kernel's to
// judge. A rule with ports does not match a packet whose first 4 bytes of L4 header are missing. The
// verifier proves that no read goes past the frame. Prefixes are compared in the program (about 4
// instructions for IPv4, up to 16 for IPv6), which suits a few hundred; MaxPrefixes bounds them.

// Untagged as Rule.VLAN matches frames without a VLAN tag only.
const Untagged = -1

// Limits of a filter: they keep the program far below the verifier's limits.
const (
	MaxRules    = 256
	MaxPrefixes = 1024 // over all rules
	MaxPorts    = 1024 // port ranges over all rules
)

// PortRange is First..Last, both included.
type PortRange struct{ First, Last uint16 }

// Rule is one choice of frames. The zero value matches every well-formed frame.
type Rule struct {
	VLAN        int    // 0: any (tagged or not); 1..4094: that id; Untagged: no tag
	EtherType   uint16 // 0: any
	Protocol    uint8  // 0: any; needed with ports
	SrcPorts    []PortRange
	DstPorts    []PortRange
	SrcPrefixes []netip.Prefix
	DstPrefixes []netip.Prefix
}

// ErrBadRule is matched by the errors CheckRules returns.
var ErrBadRule = errors.New("bad steering rule")

// families says which sections of the program a rule goes in.
func (r *Rule) families() (v4, v6, other bool) {
	v4, v6, other = true, true, true
	if r.EtherType != 0 {
		v4, v6, other = r.EtherType == etherTypeIPv4, r.EtherType == etherTypeIPv6, r.EtherType != etherTypeIPv4 && r.EtherType != etherTypeIPv6
	}
	if r.Protocol != 0 || len(r.SrcPorts)+len(r.DstPorts)+len(r.SrcPrefixes)+len(r.DstPrefixes) > 0 {
		other = false
	}
	for _, ps := range [][]netip.Prefix{r.SrcPrefixes, r.DstPrefixes} {
		if len(ps) == 0 {
			continue
		}
		has4, has6 := false, false
		for _, p := range ps {
			if p.Addr().Is4() {
				has4 = true
			} else {
				has6 = true
			}
		}
		v4, v6 = v4 && has4, v6 && has6
	}
	return v4, v6, other
}

// CheckRules reports the first rule that cannot be compiled, saying how to fix it.
func CheckRules(rules []Rule) error {
	if len(rules) == 0 {
		return fmt.Errorf("%w: no rules (give at least one; a rule with no fields matches every frame)", ErrBadRule)
	}
	if len(rules) > MaxRules {
		return fmt.Errorf("%w: %d rules, at most %d", ErrBadRule, len(rules), MaxRules)
	}
	var prefixes, ports int
	for i, r := range rules {
		bad := func(format string, a ...any) error {
			return fmt.Errorf("%w %d: %s", ErrBadRule, i, fmt.Sprintf(format, a...))
		}
		switch {
		case r.VLAN == Untagged || r.VLAN == 0:
		case r.VLAN < 1 || r.VLAN > 4094:
			return bad("VLAN %d out of range (1..4094, 0 for any, Untagged for none)", r.VLAN)
		}
		switch r.EtherType {
		case etherType8021Q, etherType8021AD:
			return bad("EtherType %#04x is a VLAN tag; match it with VLAN and give the EtherType after the tag", r.EtherType)
		}
		if r.EtherType != 0 && r.EtherType < 0x0600 {
			return bad("EtherType %#04x is an 802.3 length, not a type (types start at 0x0600)", r.EtherType)
		}
		if r.Protocol != 0 && r.EtherType != 0 && r.EtherType != etherTypeIPv4 && r.EtherType != etherTypeIPv6 {
			return bad("Protocol %d needs EtherType IPv4 (0x0800), IPv6 (0x86dd) or 0, not %#04x", r.Protocol, r.EtherType)
		}
		if len(r.SrcPorts)+len(r.DstPorts) > 0 {
			switch r.Protocol {
			case 6, 17, 132, 136: // TCP, UDP, SCTP, UDP-Lite: ports at offsets 0 and 2
			default:
				return bad("ports need Protocol TCP (6), UDP (17), SCTP (132) or UDP-Lite (136), not %d", r.Protocol)
			}
		}
		for _, pr := range append(append([]PortRange(nil), r.SrcPorts...), r.DstPorts...) {
			if pr.First > pr.Last {
				return bad("port range %d-%d is empty (First > Last)", pr.First, pr.Last)
			}
		}
		ports += len(r.SrcPorts) + len(r.DstPorts)
		for _, ps := range [][]netip.Prefix{r.SrcPrefixes, r.DstPrefixes} {
			for _, p := range ps {
				if !p.IsValid() || p.Addr().Zone() != "" {
					return bad("prefix %v is not valid (write it as 198.18.0.0/15 or 2001:2::/48)", p)
				}
				if p.Addr().Is4In6() {
					return bad("prefix %v is an IPv4-mapped IPv6 prefix; give it as IPv4", p)
				}
				if p.Addr().Is4() && r.EtherType == etherTypeIPv6 || p.Addr().Is6() && r.EtherType == etherTypeIPv4 {
					return bad("prefix %v cannot match EtherType %#04x", p, r.EtherType)
				}
			}
			prefixes += len(ps)
		}
		if v4, v6, other := r.families(); !v4 && !v6 && !other {
			return bad("source and destination prefixes of different families: no packet can match (split it in two rules)")
		}
	}
	if prefixes > MaxPrefixes {
		return fmt.Errorf("%w: %d prefixes, at most %d (for more, redirect into the XSKMAP from your own XDP program with an LPM map)", ErrBadRule, prefixes, MaxPrefixes)
	}
	if ports > MaxPorts {
		return fmt.Errorf("%w: %d port ranges, at most %d (merge neighbouring ports into ranges)", ErrBadRule, ports, MaxPorts)
	}
	return nil
}

// regL4 is the steering program's L4 header pointer, checked for 4 bytes (the two ports), or 0 when the
// packet has no ports to match (a fragment, or cut short). Rules read the ports from the packet each time
// rather than from a stack copy: the verifier links a value filled from the stack to its slot, so the ranges
// learnt by one rule's port compares would follow every later path, and no two states would ever prune
// (the program took millions of verifier steps at 64 port rules).
const regL4 = asm.R5

const steerProgName = "xdpnet_steer"

// steerInstructions compiles rules (checked by CheckRules) into the steering program; miss is as for
// transitInstructions.
func steerInstructions(rules []Rule, miss int32) asm.Instructions {
	l := &listing{}
	l.entry(steerProgName, true)
	var in4, in6, inOther []int
	ports4, ports6 := false, false
	for i := range rules {
		v4, v6, other := rules[i].families()
		hasPorts := len(rules[i].SrcPorts)+len(rules[i].DstPorts) > 0
		if v4 {
			in4 = append(in4, i)
			ports4 = ports4 || hasPorts
		}
		if v6 {
			in6 = append(in6, i)
			ports6 = ports6 || hasPorts
		}
		if other {
			inOther = append(inOther, i)
		}
	}
	// Other EtherTypes (ARP, LLDP, ...).
	for _, i := range inOther {
		l.rule(&rules[i], 0)
	}
	l.emit(asm.Ja.Label(labelPass))

	// IPv4: R1 = header length (20..60) from ipv4Section.
	l.ipv4Section()
	if ports4 {
		noPorts := l.fresh("rules4")
		l.emit(
			asm.Mov.Imm(regL4, 0),
			// Any fragment (MF set or offset non-zero) has no ports to match, or only in its first piece.
			asm.LoadMem(asm.R2, regL3, ipv4FragOff, asm.Half),
			asm.HostTo(asm.BE, asm.R2, asm.Half),
			asm.And.Imm(asm.R2, 0x3fff),
			asm.JNE.Imm(asm.R2, 0, noPorts),
			// L4 header = L3 + IHL*4; its first 4 bytes must be inside the frame.
			asm.Mov.Reg(asm.R3, regL3),
			asm.Add.Reg(asm.R3, asm.R1),
			asm.Mov.Reg(asm.R4, asm.R3),
			asm.Add.Imm(asm.R4, 4),
			asm.JGT.Reg(asm.R4, regEnd, noPorts),
			asm.Mov.Reg(regL4, asm.R3),
		)
		l.label(noPorts)
	}
	for _, i := range in4 {
		l.rule(&rules[i], 4)
	}
	l.emit(asm.Ja.Label(labelPass))

	// IPv6.
	l.ipv6Section()
	if ports6 {
		noPorts := l.fresh("rules6")
		l.emit(
			asm.Mov.Imm(regL4, 0),
			asm.Mov.Reg(asm.R3, regL3),
			asm.Add.Imm(asm.R3, ipv6HeaderLen),
			asm.Mov.Reg(asm.R4, asm.R3),
			asm.Add.Imm(asm.R4, 4),
			asm.JGT.Reg(asm.R4, regEnd, noPorts),
			asm.Mov.Reg(regL4, asm.R3),
		)
		l.label(noPorts)
	}
	for _, i := range in6 {
		l.rule(&rules[i], 6)
	}
	l.emit(asm.Ja.Label(labelPass))

	l.tail(miss)
	return l.insns
}

// rule emits the test of one rule in the section of family (4, 6, or 0 for other EtherTypes): every field
// that does not match jumps to the next rule; a match jumps to the redirect.
func (l *listing) rule(r *Rule, family int) {
	next := l.fresh("next")
	switch r.VLAN {
	case 0:
	case Untagged:
		l.emit(asm.LoadMem(asm.R1, asm.RFP, stackVLAN, asm.Word), asm.JNE.Imm(asm.R1, untaggedVLAN, next))
	default:
		l.emit(asm.LoadMem(asm.R1, asm.RFP, stackVLAN, asm.Word), asm.JNE.Imm(asm.R1, int32(r.VLAN), next))
	}
	if family == 0 && r.EtherType != 0 {
		l.emit(asm.JNE.Imm(regEthType, loadedBE16(r.EtherType), next))
	}
	if r.Protocol != 0 {
		off := int16(ipv4ProtocolOff)
		if family == 6 {
			off = ipv6NextHeaderOff
		}
		l.emit(asm.LoadMem(asm.R1, regL3, off, asm.Byte), asm.JNE.Imm(asm.R1, int32(r.Protocol), next))
	}
	if len(r.SrcPorts)+len(r.DstPorts) > 0 {
		l.emit(asm.JEq.Imm(regL4, 0, next))
		l.ports(r.SrcPorts, 0, next)
		l.ports(r.DstPorts, 2, next)
	}
	srcOff, dstOff := int16(ipv4SrcOff), int16(ipv4DstOff)
	if family == 6 {
		srcOff, dstOff = ipv6SrcOff, ipv6DstOff
	}
	l.prefixes(r.SrcPrefixes, family, srcOff, next)
	l.prefixes(r.DstPrefixes, family, dstOff, next)
	l.emit(asm.Ja.Label(labelRedirect))
	l.label(next)
}

// ports emits "the port at off in the L4 header is in one of ranges, else goto next" (nothing for no
// ranges).
func (l *listing) ports(ranges []PortRange, off int16, next string) {
	if len(ranges) == 0 {
		return
	}
	ok := l.fresh("port_ok")
	l.emit(asm.LoadMem(asm.R1, regL4, off, asm.Half), asm.HostTo(asm.BE, asm.R1, asm.Half))
	for _, pr := range ranges {
		if pr.First == pr.Last {
			l.emit(asm.JEq.Imm(asm.R1, int32(pr.First), ok))
			continue
		}
		miss := l.fresh("port_miss")
		l.emit(asm.JLT.Imm(asm.R1, int32(pr.First), miss), asm.JLE.Imm(asm.R1, int32(pr.Last), ok))
		l.label(miss)
	}
	l.emit(asm.Ja.Label(next))
	l.label(ok)
}

// prefixes emits "the address at off in the L3 header is in one of ps (those of family), else goto next".
// Each prefix is compared 32 bits at a time, in host order after a byte swap, under its mask: 32-bit
// compares, since a 64-bit compare would sign-extend the immediate.
func (l *listing) prefixes(ps []netip.Prefix, family int, off int16, next string) {
	var mine []netip.Prefix
	for _, p := range ps {
		if p.Addr().Is4() == (family == 4) {
			mine = append(mine, p.Masked())
		}
	}
	if len(mine) == 0 {
		return
	}
	ok := l.fresh("prefix_ok")
	for _, p := range mine {
		miss := l.fresh("prefix_miss")
		a := p.Addr().AsSlice()
		for w := 0; w*32 < p.Bits(); w++ {
			bits := min(p.Bits()-w*32, 32)
			want := uint32(a[4*w])<<24 | uint32(a[4*w+1])<<16 | uint32(a[4*w+2])<<8 | uint32(a[4*w+3])
			l.emit(
				asm.LoadMem(asm.R1, regL3, off+int16(4*w), asm.Word),
				asm.HostTo(asm.BE, asm.R1, asm.Word),
			)
			if bits < 32 {
				l.emit(asm.And.Imm32(asm.R1, int32(^uint32(0)<<(32-bits))))
			}
			l.emit(asm.JNE.Imm32(asm.R1, int32(want), miss))
		}
		l.emit(asm.Ja.Label(ok))
		l.label(miss)
	}
	l.emit(asm.Ja.Label(next))
	l.label(ok)
}

// steerSpec returns the ProgramSpec of the steering program bound to xsks.
func steerSpec(xsks *ebpf.Map, rules []Rule, miss int32) (*ebpf.ProgramSpec, error) {
	if err := CheckRules(rules); err != nil {
		return nil, err
	}
	insns := steerInstructions(rules, miss)
	if err := insns.AssociateMap(xsksSymbol, xsks); err != nil {
		return nil, err
	}
	return &ebpf.ProgramSpec{
		Name:         steerProgName,
		Type:         ebpf.XDP,
		License:      "Dual BSD/GPL",
		Instructions: insns,
	}, nil
}

// AttachSteer loads the steering program for rules with an XSKMAP of opts.Queues slots and attaches it to
// ifindex like Attach (bpf_link, mode fallback, Replace rules). Frames no rule matches get XDP_PASS.
func AttachSteer(ifindex int, opts Options, rules []Rule) (*Program, error) {
	if err := CheckRules(rules); err != nil {
		return nil, fmt.Errorf("attach steering XDP program to interface index %d: %w", ifindex, err)
	}
	rules = cloneRules(rules)
	return attach(ifindex, opts, func(xsks *ebpf.Map) (*ebpf.ProgramSpec, error) {
		return steerSpec(xsks, rules, xdpPass)
	})
}

// cloneRules copies rules so that a caller changing its slices later does not change a program being
// re-attached (to a re-created interface) from them.
func cloneRules(rules []Rule) []Rule {
	out := make([]Rule, len(rules))
	for i, r := range rules {
		r.SrcPorts = append([]PortRange(nil), r.SrcPorts...)
		r.DstPorts = append([]PortRange(nil), r.DstPorts...)
		r.SrcPrefixes = append([]netip.Prefix(nil), r.SrcPrefixes...)
		r.DstPrefixes = append([]netip.Prefix(nil), r.DstPrefixes...)
		out[i] = r
	}
	return out
}
