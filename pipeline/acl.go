package pipeline

import (
	"encoding/binary"
	"errors"
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

// Rule matches IPv4 and IPv6 packets on the 5-tuple (and the ICMP type). Zero fields match anything, so the
// zero Rule with Action ActionDrop is a "drop everything" catch-all for both families.
type Rule struct {
	// Src and Dst are IPv4 or IPv6 prefixes; the zero (invalid) Prefix means any address of either family.
	// A prefix also chooses the family: a rule with an IPv4 prefix matches only IPv4 packets, one with an
	// IPv6 prefix only IPv6 packets (so ::/0 means "any IPv6 packet"). Src and Dst of different families
	// are refused.
	Src, Dst netip.Prefix
	// Protocol is the IP protocol number, for IPv6 the Next Header that ends the extension header chain
	// (the upper layer: tcp, udp, icmpv6, ...); 0 means any (0 is Hop-by-Hop, which never ends a chain).
	Protocol uint8
	// SrcPorts and DstPorts restrict TCP, UDP, UDP-Lite and SCTP ports. A rule with a port range only
	// matches packets that carry ports.
	SrcPorts, DstPorts PortRange
	// ICMPType, when MatchICMPType is set, restricts an icmp or icmpv6 rule to one message type (a flag
	// rather than a zero value, since ICMP type 0 is echo reply). Such a rule never matches a non-first
	// fragment, whose type is not known.
	ICMPType      uint8
	MatchICMPType bool
	Action        Action
	// Reason is counted when the rule drops; DropNone means DropFiltered.
	Reason DropReason
}

// hasPorts lists the protocols whose header starts with source and destination port (so the ports are the
// first four bytes of the L4 header whatever the protocol).
var hasPorts = [256]bool{proto.ProtoTCP: true, proto.ProtoUDP: true, 132: true /* SCTP */, 136: true /* UDP-Lite */}

// isICMP lists the protocols whose header starts with a message type.
var isICMP = [256]bool{proto.ProtoICMP: true, proto.ProtoICMPv6: true}

// FiveTuple is what the ACL looks at.
type FiveTuple struct {
	// Src and Dst are the addresses: all 16 bytes for IPv6, the first 4 for IPv4.
	Src, Dst [16]byte
	IPv6     bool
	// Protocol is the IPv4 protocol, or the IPv6 upper-layer protocol after the extension headers.
	Protocol         uint8
	HasPorts         bool // false for protocols without ports and for non-first fragments
	SrcPort, DstPort uint16
	HasICMPType      bool // an ICMP or ICMPv6 message that is not a non-first fragment
	ICMPType         uint8
}

// SrcAddr is t.Src as an address of t's family.
func (t *FiveTuple) SrcAddr() netip.Addr { return tupleAddr(&t.Src, t.IPv6) }

// DstAddr is t.Dst as an address of t's family.
func (t *FiveTuple) DstAddr() netip.Addr { return tupleAddr(&t.Dst, t.IPv6) }

func tupleAddr(a *[16]byte, v6 bool) netip.Addr {
	if v6 {
		return netip.AddrFrom16(*a)
	}
	return netip.AddrFrom4([4]byte(a[:4]))
}

// Tuple reads the 5-tuple of p. p.Data() starts at the Ethernet header unless p.L3 is set, in which case
// the IP header is at p.L3 and its version says the family. It returns ok=false and a drop reason for IP
// that cannot be parsed, and ok=false with DropNone for frames that are not IP at all (ARP), which the ACL
// leaves alone. An IPv6 extension header chain is walked with proto's bounded walker (IPv6.UpperLayer); a
// chain it refuses (a header past the packet, Hop-by-Hop not first, more headers than a valid chain has)
// is DropIPv6ExtChain.
func Tuple(p *Packet) (t FiveTuple, reason DropReason, ok bool) {
	d := p.Data()
	l3 := int(p.L3)
	var v6 bool
	if p.L3 < 0 {
		var l2 proto.L2
		if l2.Parse(d) != proto.OK {
			return t, DropTruncated, false
		}
		switch l2.EtherType {
		case proto.EtherTypeIPv4:
		case proto.EtherTypeIPv6:
			v6 = true
		default:
			return t, DropNone, false
		}
		l3 = l2.L3Offset
	} else {
		if l3 >= len(d) {
			return t, DropTruncated, false
		}
		switch d[l3] >> 4 {
		case 4:
		case 6:
			v6 = true
		default:
			// The driver set L3 on something that is neither: not ours to judge.
			return t, DropNone, false
		}
	}
	if l3 > len(d) {
		return t, DropTruncated, false
	}
	var l4 []byte
	var first bool // the L4 header is here (not a non-first fragment)
	if v6 {
		ip, err := proto.ParseIPv6(d[l3:])
		switch err {
		case proto.OK:
		case proto.ErrVersion:
			return t, DropIPVersion, false
		default:
			if len(d)-l3 < proto.IPv6HeaderLen {
				return t, DropTruncated, false
			}
			return t, DropIPTotalLength, false // Payload Length past the frame
		}
		u, uerr := ip.UpperLayer()
		if uerr != proto.OK {
			return t, DropIPv6ExtChain, false
		}
		t.IPv6 = true
		t.Src, t.Dst, t.Protocol = ip.Src16(), ip.Dst16(), u.Protocol
		l4, first = ip[u.Offset:], u.FragmentOffset == 0
	} else {
		ip, err := proto.ParseIPv4(d[l3:])
		switch err {
		case proto.OK:
		case proto.ErrVersion:
			return t, DropIPVersion, false
		case proto.ErrHeaderLength:
			return t, DropIPHeaderLength, false
		case proto.ErrTotalLength:
			return t, DropIPTotalLength, false
		default:
			return t, DropTruncated, false
		}
		*(*[4]byte)(t.Src[:4]), *(*[4]byte)(t.Dst[:4]), t.Protocol = ip.Src4(), ip.Dst4(), ip.Protocol()
		l4, first = ip.Payload(), ip.FragmentOffset() == 0
	}
	if !first {
		return t, DropNone, true
	}
	// A first fragment that does not hold the ports or the ICMP header is refused as truncated: a filter
	// cannot judge it, and RFC 7112 §5 lets an IPv6 node drop a first fragment without the upper-layer
	// header (the tiny-fragment attack of RFC 1858 §3 for IPv4).
	switch {
	case hasPorts[t.Protocol]:
		if len(l4) < 4 {
			return t, DropTruncated, false
		}
		t.HasPorts = true
		t.SrcPort, t.DstPort = binary.BigEndian.Uint16(l4), binary.BigEndian.Uint16(l4[2:])
	case isICMP[t.Protocol]:
		if len(l4) < 4 { // type, code, checksum (RFC 792, RFC 4443 §2.1)
			return t, DropTruncated, false
		}
		t.HasICMPType, t.ICMPType = true, l4[0]
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
// read. Rules are split per family and protocol first, so a UDP packet never looks at TCP-only rules nor an
// IPv4 packet at IPv6 rules; IPv6 addresses are searched as 128-bit keys. The ICMP type shares the
// destination port field, in values above every port, so "to any port 53" never matches an ICMP message of
// type 53. Memory is O(rules²/64) per field in the worst case (identical vectors are stored once).
type ACL struct {
	rules  []Rule
	byProt [2][256]uint16 // family (0 IPv4, 1 IPv6), protocol -> index into tables
	tables []aclTable
}

// aclTable holds the rules of one family and protocol (those naming it and those with any protocol).
type aclTable struct {
	rule   []int32 // bit index -> index into ACL.rules
	words  int     // 64-bit words per vector
	aggs   int     // words per aggregate
	fields [4]aclField
}

// aclField is one field's elementary intervals.
type aclField struct {
	starts  []uint32 // ascending, starts[0] == 0: ports and IPv4 addresses
	starts6 []u128   // the same for IPv6 addresses
	vec     []int32  // interval -> vector index
	bits    []uint64 // vectors, words each
	agg     []uint64 // aggregates, aggs each
}

const (
	fSrc = iota
	fDst
	fSport
	fDport
	noPort   = 1 << 16    // the port field value of a packet without ports
	icmpBase = noPort + 1 // the destination port field value of ICMP type 0
	dportMax = icmpBase + 255
)

// u128 is an IPv6 address as a number, for the interval search.
type u128 struct{ hi, lo uint64 }

func u128From(a *[16]byte) u128 {
	return u128{binary.BigEndian.Uint64(a[:8]), binary.BigEndian.Uint64(a[8:])}
}

func (x u128) less(y u128) bool { return x.hi < y.hi || x.hi == y.hi && x.lo < y.lo }

func (x u128) add1() u128 {
	if x.lo == ^uint64(0) {
		return u128{x.hi + 1, 0}
	}
	return u128{x.hi, x.lo + 1}
}

var u128Max = u128{^uint64(0), ^uint64(0)}

// family reports which families rule r can match: an address prefix fixes it, otherwise both.
func (r *Rule) family() (v4, v6 bool) {
	for _, p := range [2]netip.Prefix{r.Src, r.Dst} {
		if p.IsValid() {
			return p.Addr().Is4(), p.Addr().Is6()
		}
	}
	return true, true
}

// checkPrefix refuses a prefix inside ::ffff:0:0/96, IPv4-mapped IPv6 addresses: no packet carries one (RFC
// 4291 §2.5.5.2), so an IPv4 prefix was meant.
func checkPrefix(p netip.Prefix) error {
	if p.IsValid() && p.Bits() >= 96 && p.Addr().Is4In6() {
		return fmt.Errorf("%s is an IPv4-mapped IPv6 prefix, which no packet carries (write the IPv4 prefix %s)",
			p, netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96).Masked())
	}
	return nil
}

// validate refuses a rule that cannot match what its writer meant; ParseRule and NewACL share it.
func (r *Rule) validate() error {
	for _, p := range [2]netip.Prefix{r.Src, r.Dst} {
		if err := checkPrefix(p); err != nil {
			return err
		}
	}
	if r.Src.IsValid() && r.Dst.IsValid() && r.Src.Addr().Is4() != r.Dst.Addr().Is4() {
		return fmt.Errorf("source %s and destination %s are of different families (write one rule per family)", r.Src, r.Dst)
	}
	switch v4, v6 := r.family(); {
	case !v4 && r.Protocol == proto.ProtoICMP:
		return errors.New("icmp is ICMP for IPv4; with IPv6 addresses use icmpv6")
	case !v6 && r.Protocol == proto.ProtoICMPv6:
		return errors.New("icmpv6 is ICMP for IPv6; with IPv4 addresses use icmp")
	}
	for _, pr := range [2]PortRange{r.SrcPorts, r.DstPorts} {
		if pr.Lo > pr.Hi {
			return fmt.Errorf("port range %d-%d is backwards", pr.Lo, pr.Hi)
		}
		if !pr.Any() && r.Protocol != 0 && !hasPorts[r.Protocol] {
			return fmt.Errorf("protocol %d has no ports (ports go with tcp, udp, sctp or udplite)", r.Protocol)
		}
	}
	if r.MatchICMPType && !isICMP[r.Protocol] {
		return errors.New("an ICMP type needs protocol icmp or icmpv6")
	}
	if r.Action > ActionDrop {
		return fmt.Errorf("unknown action %d", r.Action)
	}
	return nil
}

// NewACL checks and compiles rules.
func NewACL(rules []Rule) (*ACL, error) {
	a := &ACL{rules: slices.Clone(rules)}
	for i, r := range a.rules {
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("acl rule %d (%s): %w", i+1, r, err)
		}
		if r.Reason == DropNone {
			a.rules[i].Reason = DropFiltered
		}
	}
	// Per family, table "any other protocol" holds only the rules with protocol any.
	for fam := range 2 {
		var named []uint8
		for _, r := range a.rules {
			if r.Protocol != 0 && r.matchesFamily(fam) && !slices.Contains(named, r.Protocol) {
				named = append(named, r.Protocol)
			}
		}
		other := uint16(len(a.tables))
		a.tables = append(a.tables, a.compile(fam, 0))
		for pr := range a.byProt[fam] {
			a.byProt[fam][pr] = other
		}
		for _, pr := range named {
			a.byProt[fam][pr] = uint16(len(a.tables))
			a.tables = append(a.tables, a.compile(fam, pr))
		}
	}
	return a, nil
}

func (r *Rule) matchesFamily(fam int) bool {
	v4, v6 := r.family()
	return fam == 0 && v4 || fam == 1 && v6
}

// ranges returns rule r's interval in field f of a table of family fam (0 IPv4, 1 IPv6); addresses of IPv4
// and ports fill lo.lo and hi.lo.
func (r *Rule) ranges(fam, f int) (lo, hi u128) {
	switch f {
	case fSrc, fDst:
		p := r.Src
		if f == fDst {
			p = r.Dst
		}
		if fam == 1 {
			if !p.IsValid() {
				return u128{}, u128Max
			}
			a := p.Masked().Addr().As16()
			lo = u128From(&a)
			// The host bits of the prefix, as a 128-bit mask.
			var m u128
			if b := p.Bits(); b < 64 {
				m = u128{^uint64(0) >> b, ^uint64(0)}
			} else {
				m = u128{0, ^uint64(0) >> (b - 64)} // Go defines a shift by 64 as 0: a /128 has no host bits
			}
			return lo, u128{lo.hi | m.hi, lo.lo | m.lo}
		}
		if !p.IsValid() {
			return u128{}, u128{0, 0xffffffff}
		}
		p = p.Masked()
		l := binary.BigEndian.Uint32(p.Addr().AsSlice())
		return u128{0, uint64(l)}, u128{0, uint64(l | uint32(uint64(0xffffffff)>>p.Bits()))}
	case fDport:
		if r.MatchICMPType {
			v := uint64(icmpBase) + uint64(r.ICMPType)
			return u128{0, v}, u128{0, v}
		}
		if r.DstPorts.Any() {
			return u128{}, u128{0, dportMax}
		}
		return u128{0, uint64(r.DstPorts.Lo)}, u128{0, uint64(r.DstPorts.Hi)}
	default:
		if r.SrcPorts.Any() {
			return u128{}, u128{0, noPort}
		}
		return u128{0, uint64(r.SrcPorts.Lo)}, u128{0, uint64(r.SrcPorts.Hi)}
	}
}

// fieldMax is the largest value of field f in a table of family fam.
func fieldMax(fam, f int) u128 {
	switch {
	case f == fDport:
		return u128{0, dportMax}
	case f == fSport:
		return u128{0, noPort}
	case fam == 1:
		return u128Max
	default:
		return u128{0, 0xffffffff}
	}
}

func (a *ACL) compile(fam int, protocol uint8) aclTable {
	var t aclTable
	for i, r := range a.rules {
		if (r.Protocol == 0 || r.Protocol == protocol) && r.matchesFamily(fam) {
			t.rule = append(t.rule, int32(i))
		}
	}
	n := len(t.rule)
	t.words = (n + 63) / 64
	t.aggs = (t.words + 63) / 64
	for f := range t.fields {
		fl := &t.fields[f]
		max := fieldMax(fam, f)
		cuts := []u128{{}}
		for _, ri := range t.rule {
			lo, hi := a.rules[ri].ranges(fam, f)
			cuts = append(cuts, lo)
			if hi.less(max) {
				cuts = append(cuts, hi.add1())
			}
		}
		slices.SortFunc(cuts, func(x, y u128) int {
			switch {
			case x.less(y):
				return -1
			case y.less(x):
				return 1
			}
			return 0
		})
		cuts = slices.Compact(cuts)
		v6addr := fam == 1 && f <= fDst
		for _, c := range cuts {
			if v6addr {
				fl.starts6 = append(fl.starts6, c)
			} else {
				fl.starts = append(fl.starts, uint32(c.lo))
			}
		}
		seen := map[string]int32{}
		vec := make([]uint64, t.words)
		for _, s := range cuts {
			clear(vec)
			for bit, ri := range t.rule {
				if lo, hi := a.rules[ri].ranges(fam, f); !s.less(lo) && !hi.less(s) {
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
func (fl *aclField) find(v uint32) int {
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
	return int(fl.vec[lo])
}

// find6 is find for an IPv6 address field.
func (fl *aclField) find6(v u128) int {
	lo, hi := 0, len(fl.starts6)
	for hi-lo > 1 {
		m := int(uint(lo+hi) >> 1)
		if !v.less(fl.starts6[m]) {
			lo = m
		} else {
			hi = m
		}
	}
	return int(fl.vec[lo])
}

// Rules returns the rules as given (with DropNone reasons replaced by DropFiltered).
func (a *ACL) Rules() []Rule { return a.rules }

// Lookup returns the index of the first rule that matches t, or -1.
func (a *ACL) Lookup(t *FiveTuple) int {
	fam := 0
	if t.IPv6 {
		fam = 1
	}
	tb := &a.tables[a.byProt[fam][t.Protocol]]
	if len(tb.rule) == 0 {
		return -1
	}
	sp, dp := uint32(noPort), uint32(noPort)
	switch {
	case t.HasPorts:
		sp, dp = uint32(t.SrcPort), uint32(t.DstPort)
	case t.HasICMPType:
		dp = icmpBase + uint32(t.ICMPType)
	}
	var v0, v1 int
	if t.IPv6 {
		v0 = tb.fields[fSrc].find6(u128From(&t.Src))
		v1 = tb.fields[fDst].find6(u128From(&t.Dst))
	} else {
		v0 = tb.fields[fSrc].find(binary.BigEndian.Uint32(t.Src[:4]))
		v1 = tb.fields[fDst].find(binary.BigEndian.Uint32(t.Dst[:4]))
	}
	v2 := tb.fields[fSport].find(sp)
	v3 := tb.fields[fDport].find(dp)
	w, g := tb.words, tb.aggs
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
	src, dst := t.SrcAddr(), t.DstAddr()
	for i := range a.rules {
		r := &a.rules[i]
		if r.Protocol != 0 && r.Protocol != t.Protocol {
			continue
		}
		if r.Src.IsValid() && !r.Src.Contains(src) || r.Dst.IsValid() && !r.Dst.Contains(dst) {
			continue // Contains is false across families
		}
		if v4, v6 := r.family(); t.IPv6 && !v6 || !t.IPv6 && !v4 {
			continue
		}
		if !portMatch(r.SrcPorts, t.HasPorts, t.SrcPort) || !portMatch(r.DstPorts, t.HasPorts, t.DstPort) {
			continue
		}
		if r.MatchICMPType && !(t.HasICMPType && t.ICMPType == r.ICMPType) {
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
// IPv4 or IPv6 and cannot be parsed (a firewall must not pass what it cannot classify); otherwise left undecided.
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
