// Package nat is xdpnet's nf_nat for IPv4: masquerading (source NAT to an interface's address) and port
// forwarding (destination NAT), as two pipeline stages over the connection table of package
// pipeline/conntrack, the way nf_nat sits on nf_conntrack.
//
// nat-dst runs at PreRouting (netfilter's NF_IP_PRI_NAT_DST): it tracks every IPv4 packet and translates
// destinations before the route lookup - a new connection that matches a Forward, and every later packet
// whose connection says so (the replies of masqueraded connections go back to their inside host).
// nat-src runs at PostRouting (NF_IP_PRI_NAT_SRC): it translates sources after routing, and creates the
// connections of new flows, as nf_conntrack confirms a connection only when its first packet leaves: a
// flow that leaves by a Masquerade interface gets an external port that no live connection holds (its own
// source port when free, as Linux keeps it), a forwarded one its reply tuple. Packets the host itself
// sends are not tracked. Only a SYN opens a TCP connection; ICMP echo is tracked by its identifier, which
// masquerading maps like a port; other protocols are translated by address alone. Unsolicited packets
// from a masquerading interface that would be routed inside are dropped (DropUnsolicited): nothing
// outside opens a connection inward except through a Forward.
//
// In RFC 4787's terms (§4.1, §5) mapping and filtering are address-and-port-dependent, as Linux's: a
// connection's reply tuple is unique, so two connections from one inside port to different peers may get
// different external ports (they keep the inside port when it is free, which is usually), and only the
// peer of a connection can answer through it.
//
// ICMP errors quoting a tracked packet (time exceeded from a router on the way, port unreachable) are
// translated with their quote: outer address, quoted addresses and ports, the quoted IP and transport
// checksums and the ICMP checksum (RFC 5508 §4). All checksums are updated incrementally (RFC 1624); a
// TCP or UDP checksum left partial by a veth peer's offload is completed first (SetPorts learns which
// ports may deliver such frames). Fragments: the first fragment is translated like a whole packet and
// each hook remembers what it did, so later fragments of the datagram get the same addresses; a later
// fragment seen before its first is dropped where it would leak an inside address (frag.go). With
// Config.Hairpin, inside hosts reach the forwards through the outside address too (NAT loopback): the
// connection's source is translated as well, so that the server answers through the gateway.
//
// Both stages carry state from PreRouting to PostRouting in pipeline.Packet.Mark, so no other stage may
// change Mark between them. The stages are safe for every queue's goroutine at once: the table is shared
// and lock-striped (see conntrack), per-queue counters are written by their queue only. Nothing allocates
// or panics per packet.
package nat
