package proto

import (
	"testing"

	"github.com/gopacket/gopacket/layers"
)

// TestIPv6ExtHeaderViews walks gopacket's encoding of Hop-by-Hop (Router Alert, PadN), Destination
// Options (an unknown option) and Fragment headers with the views.
func TestIPv6ExtHeaderViews(t *testing.T) {
	hbh := &layers.IPv6HopByHop{Options: []*layers.IPv6HopByHopOption{
		{OptionType: IPv6OptRouterAlert, OptionLength: 2, OptionData: []byte{0, 0}},
		{OptionType: IPv6OptPadN, OptionLength: 0}}}
	hbh.NextHeader = layers.IPProtocolIPv6Destination
	dst := &layers.IPv6Destination{Options: []*layers.IPv6DestinationOption{{OptionType: 0x9e, OptionLength: 4, OptionData: []byte{1, 2, 3, 4}}}}
	dst.NextHeader = layers.IPProtocolIPv6Fragment
	frag := &layers.IPv6Fragment{NextHeader: layers.IPProtocolUDP, FragmentOffset: 0, MoreFragments: false, Identification: 7}
	ip := &layers.IPv6{Version: 6, HopLimit: 2, NextHeader: layers.IPProtocolIPv6HopByHop, SrcIP: ipOf(v6A), DstIP: ipOf(v6B)}
	udp := &layers.UDP{SrcPort: 1, DstPort: 2}
	udp.SetNetworkLayerForChecksum(ip)
	v6, e := ParseIPv6(gpSerialize(t, ip, hbh, dst, frag, udp))
	if e != OK {
		t.Fatal(e)
	}
	h, e := ParseIPv6ExtHeader(v6[IPv6HeaderLen:])
	if e != OK || h.NextHeader() != ProtoIPv6DestOpts || len(h) != 8 {
		t.Fatalf("hop-by-hop %v % x", e, h)
	}
	var types []uint8
	for o := h.Options(); len(o) > 0; {
		typ, opt, rest, e := NextIPv6Option(o)
		if e != OK || len(opt) == 0 {
			t.Fatalf("options: %v", e)
		}
		types = append(types, typ)
		o = rest
	}
	if len(types) != 2 || types[0] != IPv6OptRouterAlert || types[1] != IPv6OptPadN {
		t.Errorf("hop-by-hop options %v", types)
	}
	d, e := ParseIPv6ExtHeader(v6[IPv6HeaderLen+8:])
	if e != OK || d.NextHeader() != ProtoIPv6Fragment {
		t.Fatalf("destination options %v", e)
	}
	typ, _, _, _ := NextIPv6Option(d.Options())
	if typ != 0x9e || IPv6OptionAction(typ) != IPv6OptActionDiscardICMP {
		t.Errorf("destination option %#x action %d", typ, IPv6OptionAction(typ))
	}
	f, e := ParseIPv6Fragment(v6[IPv6HeaderLen+16:])
	if e != OK || f.NextHeader() != ProtoUDP || !f.IsAtomic() || f.MoreFragments() || f.FragmentOffset() != 0 {
		t.Errorf("fragment %v % x", e, f)
	}
	// Truncation is an error, never a panic.
	if _, e := ParseIPv6ExtHeader(v6[IPv6HeaderLen : IPv6HeaderLen+7]); e != ErrExtensionHeader {
		t.Errorf("short header: %v", e)
	}
	if _, _, _, e := NextIPv6Option([]byte{1, 5, 0}); e != ErrOptionLength {
		t.Errorf("option past its header: %v", e)
	}
	if _, e := ParseIPv6Fragment(make([]byte, 7)); e != ErrExtensionHeader {
		t.Errorf("short fragment header: %v", e)
	}
}

func TestIsSolicitedNodeMulticast(t *testing.T) {
	g := SolicitedNodeMulticast(v6A).As16()
	if !IsSolicitedNodeMulticast(&g) {
		t.Errorf("%v not solicited-node", SolicitedNodeMulticast(v6A))
	}
	a := AllNodesMulticast.As16()
	if IsSolicitedNodeMulticast(&a) {
		t.Errorf("ff02::1 taken for a solicited-node group")
	}
}

func FuzzIPv6Options(f *testing.F) {
	f.Add([]byte{5, 2, 0, 0, 1, 0})
	f.Add([]byte{0, 0, 1, 3, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		for n := 0; len(b) > 0; n++ {
			_, opt, rest, e := NextIPv6Option(b)
			if e != OK {
				return
			}
			if len(opt)+len(rest) != len(b) || len(opt) == 0 {
				t.Fatalf("option split %d + %d of %d", len(opt), len(rest), len(b))
			}
			b = rest
		}
	})
}
