package pipeline

import (
	"encoding/binary"
	"fmt"
	"math/bits"
	"net/netip"
	"slices"

	"github.com/xdpnet/xdpnet/proto"
)

// Action is what an ACL rule does with a packet it matches.
type Action uint8

const (
	// ActionAccept lets the packet go on to the next stage (the ACL does not decide it).
	ActionAccept Action = iota
	// ActionDrop drops it with the rule's reason.
	ActionDrop
)

func (a Action) String() string {
	if a == ActionDrop {
		return "drop"
	}
	return "accept"
}

// PortRange is an inclusive range of TCP/UDP/SCTP ports. The zero value {0, 0} means any port, including a
// packet that has no ports at all (ICMP, a non-first fragment); port 0 alone cannot be asked for since it is
// not a port anyone uses.
type PortRange struct{ Lo, Hi uint16 }

// Any reports whether r is the zero "any port" range.
func (r PortRange) Any() bool { return r == PortRange{} }

// Rule matches IPv4 packets on the 5-tuple. Zero fields match anything, so the zero Rule with Action
// ActionDrop is a "drop everything" catch-all.
type Rule struct {
	// Src and Dst are IPv4 prefixes; the zero (invalid) Prefix means any address.
	Src, Dst netip.Prefix
	// Protocol is the IP protocol number; 0 means any (0 is IPv6 hop-by-hop, which never follows IPv4).
	Protocol uint8
	// SrcPorts and DstPorts restrict TCP, UDP, UDP-Lite and SCTP ports. A rule with a port range only
	// matches packets that carry ports.
	SrcPorts, DstPorts PortRange
	Action             Action
	// Reason is counted when the rule drops; DropNone means DropFiltered.
	Reason DropReason
}

// hasPorts lists the protocols whose header starts with source and destination port (so the ports are the
// first four bytes of the L4 header whatever the protocol).
var hasPorts = [256]bool{proto.ProtoTCP: true, proto.ProtoUDP: true, 132: true /* SCTP */, 136: true /* UDP-Lite */}

// FiveTuple is what the ACL looks at.
type FiveTuple struct {
	Src, Dst         [4]byte
	Protocol         uint8
	HasPorts         bool // false for protocols without ports and for non-first fragments
	SrcPort, DstPort uint16
}

// Tuple reads the 5-tuple of p. p.Data() starts at the Ethernet header unless p.L3 is set, in which case
// the IPv4 header is at p.L3. It returns ok=false and a drop reason for IPv4 that cannot be parsed, and
// ok=false with DropNone for frames that are not IPv4 at all (ARP, IPv6), which the ACL leaves alone.
func Tuple(p *Packet) (t FiveTuple, reason DropReason, ok bool) {
	d := p.Data()
	l3 := int(p.L3)
	if p.L3 < 0 {
		l2, err := proto.ParseL2(d)
		if err != proto.OK {
			return t, DropTruncated, false
		}
		if l2.EtherType != proto.EtherTypeIPv4 {
			return t, DropNone, false
		}
		l3 = l2.L3Offset
	}
	if l3 > len(d) {
		return t, DropTruncated, false
	}
	ip, err := proto.ParseIPv4(d[l3:])
	switch err {
	case proto.OK:
	case proto.ErrVersion:
		if p.L3 >= 0 {
			// The stack set L3 on something that is not IPv4 (IPv6 on a dual path): not ours to judge.
			return t, DropNone, false
		}
		return t, DropIPVersion, false
	case proto.ErrHeaderLength:
		return t, DropIPHeaderLength, false
	case proto.ErrTotalLength:
		return t, DropIPTotalLength, false
	default:
		return t, DropTruncated, false
	}
	t.Src, t.Dst, t.Protocol = ip.Src4(), ip.Dst4(), ip.Protocol()
	if hasPorts[t.Protocol] && ip.FragmentOffset() == 0 {
		l4 := ip.Payload()
		if len(l4) < 4 {
			return t, DropTruncated, false
		}
		t.HasPorts = true
		t.SrcPort, t.DstPort = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
	}
	return t, DropNone, true
}

// ACL is a compiled, immutable list of rules: the first rule that matches decides, and a packet no rule
// matches goes on undecided. It is a Stage and may be shared by every queue.
//
// Lookup is the bit-vector scheme of Lakshman and Stiliadis (SIGCOMM 1998): each of the four fields (source,
// destination, source port, destination port) is cut into elementary intervals at the rule boundaries, and
// each interval carries the bit vector of the rules whose range covers it. A packet costs one binary search
// per field and an AND of four vectors; the lowest set bit is the first matching rule. To keep the AND from
// growing with the rule count, each vector also has an aggregate (Baboescu and Varghese's ABV, SIGCOMM
// 2001): one bit per 64-bit word, set when the word is not zero, so only words that can hold a common bit are
// read. Rules are split per protocol first, so a UDP packet never looks at TCP-only rules. Memory is
// O(rules²/64) per field in the worst case (identical vectors are stored once).
type ACL struct {
	rules  []Rule
	byProt [256]uint8 // protocol -> index into tables
	tables []aclTable
}

// aclTable holds the rules of one protocol (those naming it and those with any protocol).
type aclTable struct {
	rule   []int32 // bit index -> index into ACL.rules
	words  int     // 64-bit words per vector
	aggs   int     // words per aggregate
	fields [4]aclField
}

// aclField is one field's elementary intervals.
type aclField struct {
	starts []uint32 // ascending, starts[0] == 0
	vec    []int32  // interval -> vector index
	bits   []uint64 // vectors, words each
	agg    []uint64 // aggregates, aggs each
}

const (
	fSrc = iota
	fDst
	fSport
	fDport
	noPort = 1 << 16 // the port field value of a packet without ports
)

// NewACL checks and compiles rules. Rules with IPv6 prefixes are refused: the ACL is IPv4 only for now.
func NewACL(rules []Rule) (*ACL, error) {
	a := &ACL{rules: slices.Clone(rules)}
	for i, r := range a.rules {
		for _, p := range []netip.Prefix{r.Src, r.Dst} {
			if p.IsValid() && !p.Addr().Is4() {
				return nil, fmt.Errorf("acl rule %d (%s): %s is not an IPv4 prefix (the ACL matches IPv4 only)", i+1, r, p)
			}
		}
		for _, pr := range []PortRange{r.SrcPorts, r.DstPorts} {
			if pr.Lo > pr.Hi {
				return nil, fmt.Errorf("acl rule %d (%s): port range %d-%d is backwards", i+1, r, pr.Lo, pr.Hi)
			}
			if !pr.Any() && r.Protocol != 0 && !hasPorts[r.Protocol] {
				return nil, fmt.Errorf("acl rule %d (%s): protocol %d has no ports (use tcp, udp, sctp or udplite)", i+1, r, r.Protocol)
			}
		}
		if r.Action > ActionDrop {
			return nil, fmt.Errorf("acl rule %d: unknown action %d", i+1, r.Action)
		}
		if r.Reason == DropNone {
			a.rules[i].Reason = DropFiltered
		}
	}
	// Table 0 is "any other protocol": only the rules with protocol any.
	var named []uint8
	for _, r := range a.rules {
		if r.Protocol != 0 && !slices.Contains(named, r.Protocol) {
			named = append(named, r.Protocol)
		}
	}
	a.tables = make([]aclTable, 1+len(named))
	a.tables[0] = a.compile(0)
	for i, pr := range named {
		a.tables[1+i] = a.compile(pr)
		a.byProt[pr] = uint8(1 + i)
	}
	return a, nil
}

// ranges returns rule r's interval in field f.
func (r *Rule) ranges(f int) (lo, hi uint32) {
	switch f {
	case fSrc, fDst:
		p := r.Src
		if f == fDst {
			p = r.Dst
		}
		if !p.IsValid() {
			return 0, 0xffffffff
		}
		p = p.Masked()
		lo = binary.BigEndian.Uint32(p.Addr().AsSlice())
		return lo, lo | uint32(uint64(0xffffffff)>>p.Bits())
	default:
		pr := r.SrcPorts
		if f == fDport {
			pr = r.DstPorts
		}
		if pr.Any() {
			return 0, noPort
		}
		return uint32(pr.Lo), uint32(pr.Hi)
	}
}

func (a *ACL) compile(protocol uint8) aclTable {
	var t aclTable
	for i, r := range a.rules {
		if r.Protocol == 0 || r.Protocol == protocol {
			t.rule = append(t.rule, int32(i))
		}
	}
	n := len(t.rule)
	t.words = (n + 63) / 64
	t.aggs = (t.words + 63) / 64
	for f := range t.fields {
		fl := &t.fields[f]
		max := uint64(0xffffffff)
		if f >= fSport {
			max = noPort
		}
		cuts := []uint32{0}
		for _, ri := range t.rule {
			lo, hi := a.rules[ri].ranges(f)
			cuts = append(cuts, lo)
			if uint64(hi) < max {
				cuts = append(cuts, hi+1)
			}
		}
		slices.Sort(cuts)
		fl.starts = slices.Compact(cuts)
		seen := map[string]int32{}
		vec := make([]uint64, t.words)
		for _, s := range fl.starts {
			clear(vec)
			for bit, ri := range t.rule {
				if lo, hi := a.rules[ri].ranges(f); lo <= s && s <= hi {
					vec[bit/64] |= 1 << (bit % 64)
				}
			}
			key := fmt.Sprint(vec)
			idx, ok := seen[key]
			if !ok {
				idx = int32(len(fl.bits) / max1(t.words))
				seen[key] = idx
				fl.bits = append(fl.bits, vec...)
				agg := make([]uint64, t.aggs)
				for w, x := range vec {
					if x != 0 {
						agg[w/64] |= 1 << (w % 64)
					}
				}
				fl.agg = append(fl.agg, agg...)
			}
			fl.vec = append(fl.vec, idx)
		}
	}
	return t
}

func max1(n int) int {
	if n == 0 {
		return 1
	}
	return n
}

// find returns the vector index of the interval holding v.
func (fl *aclField) find(v uint32) int32 {
	// Last start <= v; starts[0] == 0 so there always is one.
	lo, hi := 0, len(fl.starts)
	for hi-lo > 1 {
		m := int(uint(lo+hi) >> 1)
		if fl.starts[m] <= v {
			lo = m
		} else {
			hi = m
		}
	}
	return fl.vec[lo]
}

// Rules returns the rules as given (with DropNone reasons replaced by DropFiltered).
func (a *ACL) Rules() []Rule { return a.rules }

// Lookup returns the index of the first rule that matches t, or -1.
func (a *ACL) Lookup(t *FiveTuple) int {
	tb := &a.tables[a.byProt[t.Protocol]]
	if len(tb.rule) == 0 {
		return -1
	}
	sp, dp := uint32(noPort), uint32(noPort)
	if t.HasPorts {
		sp, dp = uint32(t.SrcPort), uint32(t.DstPort)
	}
	w, g := tb.words, tb.aggs
	v0 := int(tb.fields[fSrc].find(binary.BigEndian.Uint32(t.Src[:])))
	v1 := int(tb.fields[fDst].find(binary.BigEndian.Uint32(t.Dst[:])))
	v2 := int(tb.fields[fSport].find(sp))
	v3 := int(tb.fields[fDport].find(dp))
	b0, b1 := tb.fields[fSrc].bits[v0*w:v0*w+w], tb.fields[fDst].bits[v1*w:v1*w+w]
	b2, b3 := tb.fields[fSport].bits[v2*w:v2*w+w], tb.fields[fDport].bits[v3*w:v3*w+w]
	a0, a1 := tb.fields[fSrc].agg[v0*g:v0*g+g], tb.fields[fDst].agg[v1*g:v1*g+g]
	a2, a3 := tb.fields[fSport].agg[v2*g:v2*g+g], tb.fields[fDport].agg[v3*g:v3*g+g]
	for ai := range a0 {
		m := a0[ai] & a1[ai] & a2[ai] & a3[ai]
		for m != 0 {
			wi := ai*64 + bits.TrailingZeros64(m)
			if x := b0[wi] & b1[wi] & b2[wi] & b3[wi]; x != 0 {
				return int(tb.rule[wi*64+bits.TrailingZeros64(x)])
			}
			m &= m - 1
		}
	}
	return -1
}

// LookupLinear is the slow, obviously correct reference for Lookup: try the rules in order.
func (a *ACL) LookupLinear(t *FiveTuple) int {
	src, dst := netip.AddrFrom4(t.Src), netip.AddrFrom4(t.Dst)
	for i := range a.rules {
		r := &a.rules[i]
		if r.Protocol != 0 && r.Protocol != t.Protocol {
			continue
		}
		if r.Src.IsValid() && !r.Src.Contains(src) || r.Dst.IsValid() && !r.Dst.Contains(dst) {
			continue
		}
		if !portMatch(r.SrcPorts, t.HasPorts, t.SrcPort) || !portMatch(r.DstPorts, t.HasPorts, t.DstPort) {
			continue
		}
		return i
	}
	return -1
}

func portMatch(r PortRange, has bool, port uint16) bool {
	return r.Any() || has && r.Lo <= port && port <= r.Hi
}

// Decide applies the ACL to one packet: dropped by the first matching drop rule, or when it claims to be
// IPv4 and cannot be parsed (a firewall must not pass what it cannot classify); otherwise left undecided.
func (a *ACL) Decide(p *Packet) {
	t, reason, ok := Tuple(p)
	if !ok {
		if reason != DropNone {
			p.Drop(reason)
		}
		return
	}
	if i := a.Lookup(&t); i >= 0 && a.rules[i].Action == ActionDrop {
		p.Drop(a.rules[i].Reason)
	}
}

// Process implements Stage.
func (a *ACL) Process(b *Batch, sel []uint16) {
	for _, i := range sel {
		if p := &b.Pkts[i]; p.Verdict == Accept {
			a.Decide(p)
		}
	}
}
