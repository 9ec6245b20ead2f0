package pipeline_test

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/xdpnet/xdpnet/pipeline"
)

// An ACL read from a rules file and placed at the Forward hook: a handler calls Hooks.Run(Forward, ...) on the
// packets it routes, and the ACL drops those the first matching drop rule names. Rules without an address
// match both families; an address makes a rule IPv4's or IPv6's.
func ExampleACL() {
	rules, err := pipeline.ParseRules(strings.NewReader(`
accept udp from 198.18.0.53 to any port 53   # the resolver
accept udp from 2001:2::53 to any port 53    # the resolver, over IPv6
drop udp to any port 53 reason example_dns   # everyone else's DNS, both families
accept icmpv6 type nd-neighbor-solicit
drop icmpv6 from 2001:2:0:9::/64
drop from 198.18.9.0/24
`))
	if err != nil {
		fmt.Println(err)
		return
	}
	acl, err := pipeline.NewACL(rules)
	if err != nil {
		fmt.Println(err)
		return
	}
	var hooks pipeline.Hooks
	hooks.Register(pipeline.Forward, 0, "acl", acl)
	for _, r := range acl.Rules() {
		fmt.Println(r)
	}

	// Tuples as Tuple reads them from packets: an IPv4 address fills the first 4 bytes.
	addr := func(s string) (b [16]byte) {
		copy(b[:], netip.MustParseAddr(s).AsSlice())
		return b
	}
	udp := func(src, dst string, v6 bool) pipeline.FiveTuple {
		return pipeline.FiveTuple{Src: addr(src), Dst: addr(dst), IPv6: v6, Protocol: 17, HasPorts: true, SrcPort: 3333, DstPort: 53}
	}
	for _, t := range []pipeline.FiveTuple{
		udp("198.18.0.53", "198.18.1.1", false),
		udp("198.18.0.7", "198.18.1.1", false),
		udp("2001:2::53", "2001:2:0:1::1", true),
		udp("2001:2::7", "2001:2:0:1::1", true),
		{Src: addr("2001:2:0:9::9"), Dst: addr("ff02::1:ff00:1"), IPv6: true, Protocol: 58, HasICMPType: true, ICMPType: 135},
		{Src: addr("2001:2:0:9::9"), Dst: addr("2001:2:0:1::1"), IPv6: true, Protocol: 58, HasICMPType: true, ICMPType: 128},
		{Src: addr("198.18.9.7"), Dst: addr("198.18.1.1"), Protocol: 6, HasPorts: true, SrcPort: 1, DstPort: 80},
		{Src: addr("198.18.8.7"), Dst: addr("198.18.1.1"), Protocol: 6, HasPorts: true, SrcPort: 1, DstPort: 80},
	} {
		fmt.Printf("%v -> %v proto %d -> rule %d\n", t.SrcAddr(), t.DstAddr(), t.Protocol, acl.Lookup(&t))
	}
	// Output:
	// accept udp from 198.18.0.53 to any port 53
	// accept udp from 2001:2::53 to any port 53
	// drop udp to any port 53 reason example_dns
	// accept icmpv6 type nd-neighbor-solicit
	// drop icmpv6 from 2001:2:0:9::/64
	// drop from 198.18.9.0/24
	// 198.18.0.53 -> 198.18.1.1 proto 17 -> rule 0
	// 198.18.0.7 -> 198.18.1.1 proto 17 -> rule 2
	// 2001:2::53 -> 2001:2:0:1::1 proto 17 -> rule 1
	// 2001:2::7 -> 2001:2:0:1::1 proto 17 -> rule 2
	// 2001:2:0:9::9 -> ff02::1:ff00:1 proto 58 -> rule 3
	// 2001:2:0:9::9 -> 2001:2:0:1::1 proto 58 -> rule 4
	// 198.18.9.7 -> 198.18.1.1 proto 6 -> rule 5
	// 198.18.8.7 -> 198.18.1.1 proto 6 -> rule -1
}
