package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/pipeline/memlink"
)

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
