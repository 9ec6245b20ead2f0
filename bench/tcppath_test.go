package main

import (
	"testing"

	"github.com/xdpnet/xdpnet/internal/netlab"
)

// TestTCPPathSmoke runs each tcppath case once with 4 MiB: curl's download arrives whole and the upload's
// SHA-256 as the server hashed it matches (pathServer.curlTime checks both), through 1% loss in the router,
// and during the SYN flood curl's connection to xdpnet comes through a SYN cookie. Nothing about speed.
func TestTCPPathSmoke(t *testing.T) {
	netlab.RequirePrivileges(t)
	for _, tool := range []string{"curl", "nft", "hping3"} {
		netlab.RequireTool(t, tool)
	}
	o := &options{dutCPU: 1, dutMode: "adaptive", dutBudget: 32}
	f, err := writePathFile(t.TempDir(), 4<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []*pathCase{
		{dir: "send", loss: 1, impl: "xdpnet"}, {dir: "send", loss: 1, impl: "kernel"},
		{dir: "recv", loss: 1, impl: "xdpnet"}, {dir: "recv", loss: 1, impl: "kernel"},
		{dir: "flood", impl: "xdpnet"},
	} {
		t.Run(c.name()+"/"+c.impl, func(t *testing.T) {
			d, err := pathTrial(o, c, f)
			if err != nil {
				t.Fatal(err)
			}
			t.Logf("%v", d)
		})
	}
}
