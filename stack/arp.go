package stack

import (
	"net/netip"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/proto"
)

// arp_rcv and the ARP messages the stack sends: requests to resolve a neighbour (RFC 826), replies for our
// addresses, and announcements (RFC 5227 §3).

// arpInput is arp_rcv (RFC 826 "Packet Reception"): learn the sender if we are the target or already know
// it, answer requests for our addresses.
func (h *handler) arpInput(b *pipeline.Batch, p *pipeline.Packet, inIf int32) {
	a, err := proto.ParseARP(p.Data()[ethLen:])
	if err != proto.OK {
		p.Drop(pipeline.DropARPMalformed)
		return
	}
	if inIf < 0 {
		p.Drop(pipeline.DropARPNotForUs)
		return
	}
	ifc := &h.ifs[inIf]
	sip, tip := a.SenderIP(), a.TargetIP()
	sha := a.SenderMAC()
	ours := false
	for _, pf := range ifc.addrs {
		if pf.Addr() == tip {
			ours = true
			break
		}
	}
	op := a.Op()
	switch op {
	case proto.ARPRequest:
		inc(&h.ctr.arpReqIn)
	case proto.ARPReply:
		inc(&h.ctr.arpRepIn)
	}
	// RFC 826: "If the pair <protocol type, sender protocol address> is already in my translation table,
	// update the sender hardware address field ... If I am the target ... add the triplet". A sender of
	// 0.0.0.0 is an address probe (RFC 5227) and teaches nothing; a multicast sender MAC is never learnt;
	// nor is a sender off the interface's networks, which no route of ours sends to directly and which
	// would let anyone fill the table. New entries come from requests only, as Linux does with its default
	// arp_accept=0: a reply nobody asked for (we make the entry when we ask) adds nothing.
	learnable := sip.Is4() && !sha.IsMulticast() && ifc.onLink(addr4(sip))
	if learnable {
		k := nkey{uint32(inIf), naddr4(addr4(sip))}
		var n *neighbour
		if ours && op == proto.ARPRequest {
			n, _ = h.s.neigh.getOrCreate(k, h.now, false)
		} else {
			n = h.s.neigh.get(k)
		}
		if n != nil && n.confirm(sha, h.now) {
			inc(&h.ctr.resolved)
		}
	} else if ours && sip.Is4() && !sip.IsUnspecified() {
		inc(&h.ctr.notLearnt)
	}
	if op != proto.ARPRequest || !ours {
		if ours || (learnable && op == proto.ARPReply) || a.IsGratuitous() {
			p.Consume()
			return
		}
		p.Drop(pipeline.DropARPNotForUs)
		return
	}
	// Answer in place: the reply goes back out of the port the request came in on.
	d := p.Data()
	if !p.SetLen(ethLen + proto.ARPLen) {
		p.Drop(pipeline.DropARPMalformed)
		return
	}
	d = p.Data()
	proto.EthernetFields{Dst: sha, Src: ifc.mac, EtherType: proto.EtherTypeARP}.Encode(d)
	proto.ARPFields{Op: proto.ARPReply, SenderMAC: ifc.mac, SenderIP: tip, TargetMAC: sha, TargetIP: sip}.Encode(d[ethLen:])
	p.Send(ifc.port)
	inc(&h.ctr.arpRepOut)
}

// onLink reports whether a is a host address on one of the interface's networks: inside the prefix, not
// ours, and neither the network's address nor its broadcast address (RFC 1812 §5.3.5.1; a /31 has
// neither, RFC 3021).
func (ifc *hiface) onLink(a uint32) bool {
	for _, pf := range ifc.addrs {
		bits := pf.Bits()
		if bits == 0 {
			continue
		}
		ours := addr4(pf.Addr())
		mask := ^uint32(0) << (32 - bits)
		if a&mask != ours&mask || a == ours {
			continue
		}
		if bits < 31 && (a&^mask == 0 || a|mask == ^uint32(0)) {
			continue
		}
		return true
	}
	return false
}

// arpSolicit is arp_solicit: a broadcast request for target from our address on its network.
func (h *handler) arpSolicit(b *pipeline.Batch, ifc *hiface, target netip.Addr) {
	if h.sendARP(b, ifc, proto.ARPRequest, proto.BroadcastMAC, ifc.sourceFor(target), proto.MAC{}, target) {
		inc(&h.ctr.arpReqOut)
	}
}

// sendARP builds an ARP packet in a fresh frame and sends it on ifc.
func (h *handler) sendARP(b *pipeline.Batch, ifc *hiface, op uint16, dstMAC proto.MAC, sip netip.Addr, tha proto.MAC, tip netip.Addr) bool {
	if !ifc.ok || !sip.IsValid() {
		return false
	}
	q, ok := b.Alloc()
	if !ok || !q.SetLen(ethLen+proto.ARPLen) {
		if ok {
			q.Drop(pipeline.DropNoBuffer)
		}
		return false
	}
	d := q.Data()
	proto.EthernetFields{Dst: dstMAC, Src: ifc.mac, EtherType: proto.EtherTypeARP}.Encode(d)
	proto.ARPFields{Op: op, SenderMAC: ifc.mac, SenderIP: sip, TargetMAC: tha, TargetIP: tip}.Encode(d[ethLen:])
	q.Send(ifc.port)
	return true
}

// gratuitous announces every address on every port (RFC 5227 §3 "ARP Announcement": a request with sender
// and target both our address), so neighbours update caches that may hold a previous owner's MAC.
func (h *handler) gratuitous(b *pipeline.Batch) {
	for i := range h.ifs {
		ifc := &h.ifs[i]
		for _, a := range ifc.addrs {
			if b.Room() == 0 {
				return
			}
			if h.sendARP(b, ifc, proto.ARPRequest, proto.BroadcastMAC, a.Addr(), proto.MAC{}, a.Addr()) {
				inc(&h.ctr.garpOut)
			}
		}
	}
}

// announceChanged sends the gratuitous ARPs PortChanged asked for, as far as the batch has room (the rest
// go at the next Tick).
func (h *handler) announceChanged(b *pipeline.Batch) {
	h.announce = false
	for i := range h.ifs {
		ifc := &h.ifs[i]
		if !ifc.announce {
			continue
		}
		if b.Room() < len(ifc.addrs) {
			h.announce = true
			return
		}
		ifc.announce = false
		for _, a := range ifc.addrs {
			if h.sendARP(b, ifc, proto.ARPRequest, proto.BroadcastMAC, a.Addr(), proto.MAC{}, a.Addr()) {
				inc(&h.ctr.garpOut)
			}
		}
	}
}
