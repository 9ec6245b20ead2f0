package xdpprog_test

import (
	"errors"
	"strings"
	"testing"

	"github.com/cilium/ebpf"

	"github.com/xdpnet/xdpnet/internal/xdpprog"
)

// UseXSKMap checks the embedder's map, attaches nothing, and on Close leaves the embedder's handle usable.
func TestUseXSKMapChecksAndLeavesAttachAlone(t *testing.T) {
	h := newHost(t, "xskm")
	idx := h.ifindex(t, "lo")
	newMap := func(spec ebpf.MapSpec) *ebpf.Map {
		t.Helper()
		m, err := ebpf.NewMap(&spec)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	hash := newMap(ebpf.MapSpec{Type: ebpf.Hash, KeySize: 4, ValueSize: 4, MaxEntries: 4})
	xsks := newMap(ebpf.MapSpec{Type: ebpf.XSKMap, KeySize: 4, ValueSize: 4, MaxEntries: 2})
	for _, c := range []struct {
		m    *ebpf.Map
		opts xdpprog.Options
		say  string
	}{
		{nil, xdpprog.Options{}, "no map"},
		{hash, xdpprog.Options{}, "must be an XSKMap"},
		{xsks, xdpprog.Options{Queues: 4}, "MaxEntries >= 4"},
	} {
		err := h.do(func() error { _, err := xdpprog.UseXSKMap(idx, c.opts, c.m); return err })
		if err == nil || !strings.Contains(err.Error(), c.say) {
			t.Errorf("UseXSKMap(%v, %+v): %v, want an error saying %q", c.m, c.opts, err, c.say)
		}
	}
	var p *xdpprog.Program
	if err := h.do(func() (err error) { p, err = xdpprog.UseXSKMap(idx, xdpprog.Options{}, xsks); return err }); err != nil {
		t.Fatal(err)
	}
	if !p.External() || p.Queues() != 2 {
		t.Fatalf("External %v Queues %d, want true and the map's 2 slots", p.External(), p.Queues())
	}
	if _, err := p.ProgramID(); err == nil {
		t.Fatal("ProgramID of an embedder's program: no error")
	}
	if err := h.do(func() error {
		if id, ok, err := xdpprog.AttachedProgramID(idx); err != nil || ok {
			t.Errorf("lo runs XDP program %d (%v, %v): UseXSKMap must attach nothing", id, ok, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := p.Register(0, 0); err == nil {
		t.Fatal("Register of a non-socket fd: no error")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	if err := xsks.Delete(uint32(0)); err != nil && !errors.Is(err, ebpf.ErrKeyNotExist) {
		t.Fatalf("the embedder's map after Close: %v", err)
	}
}
