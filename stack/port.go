package stack

import "github.com/xdpnet/xdpnet/pipeline"

// PortChanged implements pipeline.PortObserver: the driver reports, on this queue's goroutine between
// batches, that a port's link changed (MTU, MAC, ifindex, up or down). The interface on that port takes the
// new MAC (as the source of what it sends, and as the destination it accepts) and, unless Config fixed its
// MTU, the new MTU, so that forwarding answers "fragmentation needed" and fragments by the MTU the link has
// now, and TCP's MSS follows it (tcpMTUChanged). When the link comes up or its MAC changes, the interface's addresses are announced again with
// gratuitous ARP at the next Tick (as Linux does with arp_notify; RFC 5227 §3), so that neighbours replace
// a MAC they cached; not with an external Resolver, whose owner (the kernel) does its own announcing.
//
// A port that is down still routes: what leaves through it is dropped by the driver's TX gate (link_down),
// which counts it where a person looks for link problems, as Linux keeps routes of a link without carrier.
func (h *handler) PortChanged(port pipeline.PortInfo, up bool) {
	idx := int(port.Index)
	if idx >= len(h.portIface) {
		return // not a port this queue was built with
	}
	h.portMAC[idx] = port.MAC
	i := h.portIface[idx]
	if i < 0 {
		return
	}
	ifc := &h.ifs[i]
	announce := up && (ifc.down || ifc.mac != port.MAC)
	ifc.mac = port.MAC
	ifc.down = !up
	// A reported MTU of 0 means the driver does not know it: keep the one in use.
	if old := ifc.mtu; h.s.ifaces[i].mtu == 0 && port.MTU > 0 && port.MTU != old {
		ifc.mtu = port.MTU
		h.tcpMTUChanged(i, port.MTU < old)
	}
	if announce && h.s.cfg.Resolver == nil {
		ifc.announce = true
		h.announce = true
	}
}
