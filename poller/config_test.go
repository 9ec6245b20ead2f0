package poller

import (
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xdpnet/xdpnet/internal/xdpprog"
	"github.com/xdpnet/xdpnet/pipeline"
)

func TestParseXDPMode(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want XDPMode
		xdp  xdpprog.Mode
	}{{"", XDPAuto, xdpprog.ModeAuto}, {"auto", XDPAuto, xdpprog.ModeAuto}, {"native", XDPNative, xdpprog.ModeNative}, {"generic", XDPGeneric, xdpprog.ModeGeneric}} {
		m, err := ParseXDPMode(tc.in)
		if err != nil || m != tc.want || m.internal() != tc.xdp {
			t.Errorf("ParseXDPMode(%q) = %v (%v), %v; want %v (%v)", tc.in, m, m.internal(), err, tc.want, tc.xdp)
		}
		if tc.in != "" && m.String() != tc.in {
			t.Errorf("%v.String() = %q, want %q", m, m.String(), tc.in)
		}
	}
	if _, err := ParseXDPMode("skb"); err == nil || !strings.Contains(err.Error(), "auto, native or generic") {
		t.Errorf(`ParseXDPMode("skb") error %v; want one naming the choices`, err)
	}
	if s := XDPMode(7).String(); s != "XDPMode(7)" {
		t.Errorf("XDPMode(7).String() = %q", s)
	}
}

func TestConfigXDPModeAndAttach(t *testing.T) {
	nh := func(*pipeline.QueueInfo) pipeline.Handler { return nil }
	c := Config{Interfaces: []string{"eth0"}, NewHandler: nh, XDPMode: XDPMode(3)}
	if _, err := c.withDefaults(); err == nil || !strings.Contains(err.Error(), "XDPGeneric") {
		t.Fatalf("XDPMode 3 accepted or unhelpful error: %v", err)
	}

	c.XDPMode = XDPGeneric
	d, err := c.withDefaults()
	if err != nil {
		t.Fatal(err)
	}
	if d.attach == nil {
		t.Fatal("no default attach function")
	}

	// The module's commands choose the program through the hook; the Config keeps it through the defaults.
	called := 0
	xdpprog.SetPollerAttach(&c, func(int, xdpprog.Options) (*xdpprog.Program, error) { called++; return nil, nil })
	if d, err = c.withDefaults(); err != nil {
		t.Fatal(err)
	}
	d.attach(1, xdpprog.Options{})
	if called != 1 {
		t.Fatal("the attach function set through xdpprog.SetPollerAttach was not kept")
	}
}

func TestConfigSteer(t *testing.T) {
	nh := func(*pipeline.QueueInfo) pipeline.Handler { return nil }
	m0, m1 := new(ebpf.Map), new(ebpf.Map)
	for _, c := range []struct {
		steer *Steer
		say   string
	}{
		{&Steer{}, "give Match"},
		{&Steer{Match: []Match{{}}, XSKMaps: map[string]*ebpf.Map{"eth0": m0, "eth1": m1}}, "both Match and XSKMaps"},
		{&Steer{Match: []Match{{DstPorts: []PortRange{Port(53)}}}}, "ports need Protocol"},
		{&Steer{Match: []Match{{VLAN: 5000}}}, "VLAN 5000 out of range"},
		{&Steer{XSKMaps: map[string]*ebpf.Map{"eth0": m0}}, "no map for eth1"},
		{&Steer{XSKMaps: map[string]*ebpf.Map{"eth0": m0, "eth1": m1, "eth2": m1}}, "eth2, which is not in Config.Interfaces"},
		{&Steer{XSKMaps: map[string]*ebpf.Map{"eth0": m0, "eth1": nil}}, "XSKMaps[eth1] is nil"},
		{&Steer{XSKMaps: map[string]*ebpf.Map{"eth0": m0, "eth1": m0}}, "share one map"},
	} {
		cfg := Config{Interfaces: []string{"eth0", "eth1"}, NewHandler: nh, Steer: c.steer}
		if _, err := cfg.withDefaults(); err == nil || !strings.Contains(err.Error(), c.say) {
			t.Errorf("Steer %+v: %v, want an error saying %q", c.steer, err, c.say)
		}
	}
	for _, s := range []*Steer{
		{Match: []Match{{Protocol: 17, DstPorts: []PortRange{Port(53)}}}},
		{XSKMaps: map[string]*ebpf.Map{"eth0": m0, "eth1": m1}},
	} {
		cfg := Config{Interfaces: []string{"eth0", "eth1"}, NewHandler: nh, Steer: s}
		if d, err := cfg.withDefaults(); err != nil || d.attach == nil {
			t.Errorf("Steer %+v: %v (attach set: %v)", s, err, d.attach != nil)
		}
		// The kernel-mirror program and a Steer are exclusive.
		xdpprog.SetPollerAttach(&cfg, func(int, xdpprog.Options) (*xdpprog.Program, error) { return nil, nil })
		if _, err := cfg.withDefaults(); err == nil || !strings.Contains(err.Error(), "kernel-mirror") {
			t.Errorf("Steer with the kernel-mirror program: %v, want a refusal", err)
		}
	}
}
