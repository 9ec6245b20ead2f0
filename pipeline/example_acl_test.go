package pipeline_test

import (
	"fmt"
	"strings"

	"github.com/xdpnet/xdpnet/pipeline"
)

// An ACL read from a rules file and placed at the Forward hook: a handler calls Hooks.Run(Forward, ...) on the
// packets it routes, and the ACL drops those the first matching drop rule names.
func ExampleACL() {
	rules, err := pipeline.ParseRules(strings.NewReader(`
accept udp from 198.18.0.53 to any port 53   # the resolver
drop udp to any port 53 reason example_dns   # everyone else's DNS
accept icmp
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

	for _, t := range []pipeline.FiveTuple{
		{Src: [4]byte{198, 18, 0, 53}, Dst: [4]byte{198, 18, 1, 1}, Protocol: 17, HasPorts: true, SrcPort: 3333, DstPort: 53},
		{Src: [4]byte{198, 18, 0, 7}, Dst: [4]byte{198, 18, 1, 1}, Protocol: 17, HasPorts: true, SrcPort: 3333, DstPort: 53},
		{Src: [4]byte{198, 18, 9, 7}, Dst: [4]byte{198, 18, 1, 1}, Protocol: 1},
		{Src: [4]byte{198, 18, 9, 7}, Dst: [4]byte{198, 18, 1, 1}, Protocol: 6, HasPorts: true, SrcPort: 1, DstPort: 80},
	} {
		i := acl.Lookup(&t)
		fmt.Printf("%v:%d -> rule %d\n", t.Src, t.DstPort, i)
	}
	// Output:
	// accept udp from 198.18.0.53 to any port 53
	// drop udp to any port 53 reason example_dns
	// accept icmp
	// drop from 198.18.9.0/24
	// [198 18 0 53]:53 -> rule 0
	// [198 18 0 7]:53 -> rule 1
	// [198 18 9 7]:0 -> rule 2
	// [198 18 9 7]:80 -> rule 3
}
