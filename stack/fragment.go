package stack

import (
	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
)

// ip_fragment: splitting a datagram that does not fit the egress MTU (RFC 791 §3.2).

// fragment splits p per RFC 791 §3.2 ("Fragmentation"): every fragment but the last carries a multiple of
// 8 data octets, the first keeps all options, the others only those with the copied flag (RFC 791 §3.1),
// MF is set on all but the last (or on all if the original had MF), offsets add to the original offset.
// p becomes the first fragment; the others are fresh frames at b.Pkts[first:last].
func (h *handler) fragment(b *pipeline.Batch, p *pipeline.Packet, i uint16, mtu int) (first, last int, ok bool) {
	d := p.Data()
	ip := proto.IPv4(d[ethLen:])
	hl := ip.HeaderLen()
	payload := ip[hl:]
	var hdr2 [proto.IPv4MaxHeaderLen]byte
	copy(hdr2[:], ip[:proto.IPv4MinHeaderLen])
	hl2 := proto.IPv4MinHeaderLen
	for o := ip.Options(); len(o) > 0; {
		typ, opt, rest, _ := proto.NextIPv4Option(o)
		if typ != proto.IPv4OptEnd && proto.IPv4OptionCopied(typ) {
			hl2 += copy(hdr2[hl2:], opt)
		}
		o = rest
	}
	for hl2%4 != 0 {
		hdr2[hl2] = 0
		hl2++
	}
	per1 := (mtu - hl) &^ 7
	per2 := (mtu - hl2) &^ 7
	if per1 <= 0 || per2 <= 0 {
		p.Drop(pipeline.DropFragmentFailed)
		return 0, 0, false
	}
	need := (len(payload) - per1 + per2 - 1) / per2
	if b.Room() < need {
		p.Drop(pipeline.DropFragmentFailed)
		return 0, 0, false
	}
	origOff := int(ip.FragmentOffset())
	origMF := ip.MoreFragments()
	df := ip.DontFragment()
	first = b.N
	for off := per1; off < len(payload); off += per2 {
		q, ok := b.Alloc()
		n := min(per2, len(payload)-off)
		if !ok || !q.SetLen(ethLen+hl2+n) {
			if ok {
				q.Drop(pipeline.DropFragmentFailed)
			}
			for j := first; j < b.N; j++ {
				b.Pkts[j].Drop(pipeline.DropFragmentFailed)
			}
			p.Drop(pipeline.DropFragmentFailed)
			return 0, 0, false
		}
		qd := q.Data()
		copy(qd, d[:ethLen])
		fh := proto.IPv4(qd[ethLen:])
		copy(fh, hdr2[:hl2])
		fh.SetHeaderLen(hl2)
		fh.SetTotalLength(uint16(hl2 + n))
		fh.SetFlagsFragment(df, off+n < len(payload) || origMF, uint16(origOff+off))
		fh.SetChecksum(fh.ComputeChecksum())
		copy(fh[hl2:], payload[off:off+n])
		h.meta[b.N-1] = h.meta[i]
		q.OutPort, q.NextHop, q.L3, q.L4 = p.OutPort, p.NextHop, ethLen, int16(ethLen+hl2)
	}
	last = b.N
	ip.SetTotalLength(uint16(hl + per1))
	ip.SetFlagsFragment(df, true, uint16(origOff))
	p.SetLen(ethLen + hl + per1)
	inc(&h.ctr.fragmented)
	add(&h.ctr.fragsOut, uint64(last-first+1))
	return first, last, true
}
