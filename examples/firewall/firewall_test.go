package main

import (
	"encoding/binary"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/pipeline/memlink"
)

// udp6 is Ethernet + IPv6 + Hop-by-Hop (PadN) + a Fragment header (atomic, RFC 6946) + UDP: the ports lie
// behind two extension headers.
func udp6(src, dst string, dport uint16) []byte {
	f := make([]byte, 14+40+8+8+8)
	copy(f, []byte{2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa, 0x86, 0xdd})
	ip := f[14:]
	ip[0], ip[6], ip[7] = 0x60, 0, 64 // next header Hop-by-Hop
	binary.BigEndian.PutUint16(ip[4:], 24)
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	copy(ip[40:], []byte{44, 0, 1, 4, 0, 0, 0, 0}) // Hop-by-Hop: next Fragment, PadN
	copy(ip[48:], []byte{17, 0, 0, 0, 0, 0, 0, 9}) // Fragment: next UDP, offset 0, M 0, id 9
	binary.BigEndian.PutUint16(ip[56:], 4000)
	binary.BigEndian.PutUint16(ip[58:], dport)
	binary.BigEndian.PutUint16(ip[60:], 8)
	return f
}

func udp(src, dst [4]byte, dport uint16) []byte {
	f := make([]byte, 14+28)
	copy(f, []byte{2, 0, 0, 0, 0, 0xb, 2, 0, 0, 0, 0, 0xa, 8, 0})
	ip := f[14:]
	ip[0], ip[8], ip[9] = 0x45, 64, 17
	binary.BigEndian.PutUint16(ip[2:], 28)
	copy(ip[12:], src[:])
	copy(ip[16:], dst[:])
	binary.BigEndian.PutUint16(ip[20:], 4000)
	binary.BigEndian.PutUint16(ip[22:], dport)
	binary.BigEndian.PutUint16(ip[24:], 8)
	return f
}

// TestFirewallBridgesAndFilters runs the firewall's handler, built from a rules file, over an in-memory link.
func TestFirewallBridgesAndFilters(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules")
	os.WriteFile(rules, []byte("accept udp from 198.18.0.53 to any port 53\ndrop udp to any port 53 reason fw_test_dns\n"), 0o644)
	pcap := filepath.Join(dir, "tap.pcap")
	hooks, closeTap, err := buildHooks(rules, pcap)
	if err != nil {
		t.Fatal(err)
	}
	l, err := memlink.New(memlink.Config{Ports: []memlink.PortConfig{{Name: "in"}, {Name: "out"}}, NewHandler: newBridge(hooks)})
	if err != nil {
		t.Fatal(err)
	}
	a, b, res := [4]byte{198, 18, 0, 1}, [4]byte{198, 18, 1, 1}, [4]byte{198, 18, 0, 53}
	arp := []byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 2, 0, 0, 0, 0, 0xa, 8, 6}
	l.InjectBatch(0, udp(a, b, 53), udp(res, b, 53), udp(a, b, 80), arp)
	l.Inject(1, udp(b, a, 53))
	if n := len(l.Sent(1)); n != 3 {
		t.Errorf("in->out sent %d, want 3 (resolver DNS, port 80, ARP)", n)
	}
	if n := len(l.Sent(0)); n != 0 {
		t.Errorf("out->in sent %d, want 0 (DNS)", n)
	}
	dns, _ := pipeline.DropReasonByName("fw_test_dns")
	if l.Dropped(dns) != 2 {
		t.Errorf("drops %v", l.DropSummary())
	}
	if err := l.CheckAccounting(0); err != nil {
		t.Error(err)
	}
	closeTap()
	if st, err := os.Stat(pcap); err != nil || st.Size() != 24+5*16+4*42+14 {
		t.Errorf("pcap: %v %v", st, err)
	}
}

// TestFirewallIPv6 runs the firewall's handler over IPv6 frames: rules with IPv6 prefixes match only IPv6,
// rules without an address both families, ports are found behind extension headers, and a frame whose
// extension header chain cannot be walked is dropped with its reason and counted.
func TestFirewallIPv6(t *testing.T) {
	dir := t.TempDir()
	rules := filepath.Join(dir, "rules")
	os.WriteFile(rules, []byte(`accept udp from 2001:2::53 to any port 53
drop udp from 2001:2::/48 to any port 53 reason fw_test6_dns
drop udp to any port 5353 reason fw_test_mdns
drop udp from 198.18.0.0/15 to any port 54 reason fw_test_v4_54
`), 0o644)
	hooks, closeTap, err := buildHooks(rules, "")
	if err != nil {
		t.Fatal(err)
	}
	defer closeTap()
	l, err := memlink.New(memlink.Config{Ports: []memlink.PortConfig{{Name: "in"}, {Name: "out"}}, NewHandler: newBridge(hooks)})
	if err != nil {
		t.Fatal(err)
	}
	a, b := "2001:2::7", "2001:2:0:1::1"
	badChain := udp6(a, b, 80)
	badChain[14+48] = 0 // the Fragment header names Hop-by-Hop, which must come first (RFC 8200 §4.1)
	l.InjectBatch(0,
		udp6(a, b, 53),            // dropped: fw_test6_dns
		udp6("2001:2::53", b, 53), // the resolver: sent
		udp6(a, b, 5353),          // dropped by the rule without an address: fw_test_mdns
		udp6(a, b, 54),            // sent: the port-54 rule is IPv4's
		udp([4]byte{198, 18, 0, 1}, [4]byte{198, 18, 1, 1}, 54),   // dropped: fw_test_v4_54
		udp([4]byte{198, 18, 0, 1}, [4]byte{198, 18, 1, 1}, 5353), // dropped: fw_test_mdns
		badChain,
	)
	if n := len(l.Sent(1)); n != 2 {
		t.Errorf("sent %d, want 2 (the resolver's DNS, UDP/54 over IPv6)", n)
	}
	for name, want := range map[string]uint64{"fw_test6_dns": 1, "fw_test_mdns": 2, "fw_test_v4_54": 1} {
		if r, _ := pipeline.DropReasonByName(name); l.Dropped(r) != want {
			t.Errorf("%s drops %d, want %d: %v", name, l.Dropped(r), want, l.DropSummary())
		}
	}
	if l.Dropped(pipeline.DropIPv6ExtChain) != 1 {
		t.Errorf("bad extension header chain not counted: %v", l.DropSummary())
	}
	if err := l.CheckAccounting(0); err != nil {
		t.Error(err)
	}
}
