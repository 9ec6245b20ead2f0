package pipeline

import (
	"bufio"
	"fmt"
	"io"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
)

var protoNames = map[string]uint8{"tcp": 6, "udp": 17, "icmp": 1, "icmpv6": 58, "sctp": 132, "udplite": 136}

// icmpTypeNames are the message types nft knows by name (nft describe icmp_type / icmpv6_type), by protocol.
var icmpTypeNames = map[uint8]map[string]uint8{
	1: {"echo-reply": 0, "destination-unreachable": 3, "source-quench": 4, "redirect": 5, "echo-request": 8,
		"router-advertisement": 9, "router-solicitation": 10, "time-exceeded": 11, "parameter-problem": 12,
		"timestamp-request": 13, "timestamp-reply": 14},
	58: {"destination-unreachable": 1, "packet-too-big": 2, "time-exceeded": 3, "parameter-problem": 4,
		"echo-request": 128, "echo-reply": 129, "mld-listener-query": 130, "mld-listener-report": 131,
		"mld-listener-done": 132, "nd-router-solicit": 133, "nd-router-advert": 134, "nd-neighbor-solicit": 135,
		"nd-neighbor-advert": 136, "nd-redirect": 137, "mld2-listener-report": 143},
}

var reasonName = regexp.MustCompile(`^[a-z][a-z0-9]*(_[a-z0-9]+)*$`)

// ParseRule reads one rule in the text form of configuration files (ParseRules reads one a line):
//
//	ACTION [PROTO [type TYPE]] [from ADDR [port PORTS]] [to ADDR [port PORTS]] [reason NAME]
//
//	ACTION  accept | drop
//	PROTO   any | tcp | udp | icmp | icmpv6 | sctp | udplite | a protocol number 1-255   (default any)
//	TYPE    an ICMP (icmp) or ICMPv6 (icmpv6) message type: 0-255 or a name as nft spells it
//	        (echo-request, echo-reply, destination-unreachable, time-exceeded, parameter-problem,
//	        packet-too-big, nd-neighbor-solicit, ...)
//	ADDR    any | 198.18.0.0/24 | 198.18.0.1 | 2001:2::/48 | 2001:2::1                 (default any)
//	PORTS   any | 53 | 1024-65535                                                      (default any)
//	NAME    a snake_case drop reason; unknown names are registered (default filtered)
//
// A rule matches both IPv4 and IPv6 unless an address makes it one family's: "from 2001:2::/48" matches
// only IPv6, "to 0.0.0.0/0" only IPv4, "from ::/0" every IPv6 packet. For IPv6 the protocol is the
// upper layer found after the extension headers. icmp is IPv4's ICMP (1) and icmpv6 IPv6's (58).
//
// Examples:
//
//	drop udp from 198.18.0.0/24 to any port 53
//	accept tcp to 198.18.1.10 port 22
//	accept tcp to 2001:2:0:1::10 port 22
//	accept icmpv6 type nd-neighbor-solicit
//	drop icmpv6 type echo-request from 2001:2:0:9::/64
//	drop from 198.18.9.0/24 reason blocked_net
//	drop                                     # everything else, IPv4 and IPv6
//
// '#' starts a comment; blank lines are ignored. Rule.String prints this form, and it parses back to the
// same rule.
func ParseRule(s string) (Rule, error) {
	var r Rule
	f := strings.Fields(s)
	if len(f) == 0 {
		return r, fmt.Errorf("empty rule (want e.g. %q)", "drop udp from 198.18.0.0/24 to any port 53")
	}
	switch f[0] {
	case "accept":
		r.Action = ActionAccept
	case "drop":
		r.Action = ActionDrop
	default:
		return r, fmt.Errorf("rule must start with accept or drop, not %q", f[0])
	}
	f = f[1:]
	if len(f) > 0 && f[0] != "from" && f[0] != "to" && f[0] != "reason" && f[0] != "type" {
		p, err := parseProto(f[0])
		if err != nil {
			return r, err
		}
		r.Protocol = p
		f = f[1:]
	}
	seen := map[string]bool{}
	for len(f) > 0 {
		kw := f[0]
		if seen[kw] {
			return r, fmt.Errorf("%q given twice", kw)
		}
		seen[kw] = true
		if len(f) < 2 {
			return r, fmt.Errorf("%q needs a value", kw)
		}
		switch kw {
		case "from", "to":
			p, err := parseAddr(f[1])
			if err != nil {
				return r, err
			}
			var ports PortRange
			f = f[2:]
			if len(f) >= 1 && f[0] == "port" {
				if len(f) < 2 {
					return r, fmt.Errorf("%q needs a value", "port")
				}
				if ports, err = parsePorts(f[1]); err != nil {
					return r, err
				}
				f = f[2:]
			}
			if kw == "from" {
				r.Src, r.SrcPorts = p, ports
			} else {
				r.Dst, r.DstPorts = p, ports
			}
		case "type":
			if !isICMP[r.Protocol] {
				return r, fmt.Errorf("type given without protocol icmp or icmpv6")
			}
			t, err := parseICMPType(r.Protocol, f[1])
			if err != nil {
				return r, err
			}
			r.ICMPType, r.MatchICMPType = t, true
			f = f[2:]
		case "reason":
			if !reasonName.MatchString(f[1]) {
				return r, fmt.Errorf("reason %q is not a snake_case name", f[1])
			}
			if r.Action != ActionDrop {
				return r, fmt.Errorf("reason given on an accept rule")
			}
			dr, err := DropReasonNamed(f[1])
			if err != nil {
				return r, err
			}
			r.Reason = dr
			f = f[2:]
		default:
			return r, fmt.Errorf("unexpected %q (want type, from, to or reason)", kw)
		}
	}
	if err := r.validate(); err != nil {
		return r, err
	}
	return r, nil
}

func parseProto(s string) (uint8, error) {
	if s == "any" {
		return 0, nil
	}
	if p, ok := protoNames[s]; ok {
		return p, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("unknown protocol %q (want any, tcp, udp, icmp, icmpv6, sctp, udplite or a number 1-255)", s)
	}
	return uint8(n), nil
}

func parseAddr(s string) (netip.Prefix, error) {
	if s == "any" {
		return netip.Prefix{}, nil
	}
	var p netip.Prefix
	var err error
	if strings.Contains(s, "/") {
		p, err = netip.ParsePrefix(s)
	} else {
		var a netip.Addr
		if a, err = netip.ParseAddr(s); err == nil && a.Zone() == "" {
			p = netip.PrefixFrom(a, a.BitLen())
		}
	}
	if err != nil || !p.IsValid() {
		return p, fmt.Errorf("address %q is not any, an IPv4 or IPv6 address, or a prefix ADDR/LEN (without a %%zone)", s)
	}
	return p.Masked(), nil
}

func parseICMPType(protocol uint8, s string) (uint8, error) {
	if t, ok := icmpTypeNames[protocol][s]; ok {
		return t, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return 0, fmt.Errorf("type %q is neither a number 0-255 nor a known %s type name (e.g. echo-request)", s, protoName(protocol))
	}
	return uint8(n), nil
}

func protoName(p uint8) string {
	for n, v := range protoNames {
		if v == p {
			return n
		}
	}
	return strconv.Itoa(int(p))
}

func parsePorts(s string) (PortRange, error) {
	if s == "any" {
		return PortRange{}, nil
	}
	lo, hi, found := strings.Cut(s, "-")
	if !found {
		hi = lo
	}
	l, err1 := strconv.ParseUint(lo, 10, 16)
	h, err2 := strconv.ParseUint(hi, 10, 16)
	if err1 != nil || err2 != nil || l > h || h == 0 {
		return PortRange{}, fmt.Errorf("ports %q are not any, a port 1-65535 or a range LO-HI", s)
	}
	return PortRange{uint16(l), uint16(h)}, nil
}

// ParseRules reads rules in the text form, one a line, and reports errors with their line number.
func ParseRules(r io.Reader) ([]Rule, error) {
	var rules []Rule
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if strings.TrimSpace(line) == "" {
			continue
		}
		rule, err := ParseRule(line)
		if err != nil {
			return nil, fmt.Errorf("rules line %d: %w", n, err)
		}
		rules = append(rules, rule)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read rules: %w", err)
	}
	return rules, nil
}

// String prints r in the text form ParseRule reads.
func (r Rule) String() string {
	var b strings.Builder
	b.WriteString(r.Action.String())
	if r.Protocol != 0 {
		b.WriteString(" " + protoName(r.Protocol))
	}
	if r.MatchICMPType {
		name := strconv.Itoa(int(r.ICMPType))
		for n, t := range icmpTypeNames[r.Protocol] {
			if t == r.ICMPType {
				name = n
			}
		}
		b.WriteString(" type " + name)
	}
	side := func(kw string, p netip.Prefix, ports PortRange) {
		if !p.IsValid() && ports.Any() {
			return
		}
		b.WriteString(" " + kw + " ")
		switch {
		case !p.IsValid():
			b.WriteString("any")
		case p.IsSingleIP():
			b.WriteString(p.Addr().String())
		default:
			b.WriteString(p.String())
		}
		switch {
		case ports.Any():
		case ports.Lo == ports.Hi:
			fmt.Fprintf(&b, " port %d", ports.Lo)
		default:
			fmt.Fprintf(&b, " port %d-%d", ports.Lo, ports.Hi)
		}
	}
	side("from", r.Src, r.SrcPorts)
	side("to", r.Dst, r.DstPorts)
	if r.Action == ActionDrop && r.Reason != DropNone && r.Reason != DropFiltered {
		b.WriteString(" reason " + r.Reason.String())
	}
	return b.String()
}
