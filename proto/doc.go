// Package proto provides zero-copy views over the wire formats xdpnet handles
// (Ethernet with 802.1Q/802.1ad tags, ARP, IPv4, IPv6 and its extension headers,
// ICMPv4, ICMPv6 with Neighbor Discovery, UDP and TCP) and the Internet
// checksum, full (RFC 1071) and incremental (RFC 1624).
//
// Each header is a named []byte type (IPv4, UDP, ...) whose methods are named
// after the RFC fields and read or write the bytes in place; nothing is copied
// and nothing is allocated. Byte offsets are unexported constants placed under
// the RFC header diagram in each file. A view is made by its checked parser
// (ParseIPv4, ParseUDP, ...), which validates every length the accessors rely
// on exactly once: after a parser returns OK, no accessor or setter of the
// returned view panics, whatever the bytes were. A view made by a plain
// conversion (IPv4(b)) carries no such promise. Parsers check structure only;
// semantic checks that a router may want to count separately (header
// checksum, TTL, martian addresses) are separate calls such as
// IPv4.ChecksumValid.
//
// ParseL2 walks the Ethernet header and up to two VLAN tags; on the hot
// path, L2.Parse fills an L2 the caller keeps instead of returning one by
// value, which Go does through memory (about 5 ns per packet here).
//
// Parsers return an Error, a small integer with a String method, instead of
// an error built per packet, so that a drop reason can be counted without
// allocating. OK (zero) means success.
//
// Packets are built with the value structs IPv4Fields, UDPFields, TCPFields
// and so on (the "Repr" pattern of smoltcp): fill in the fields and call
// Encode on a buffer. Encode returns the number of bytes written, or 0 when
// the buffer is too short or the fields cannot be encoded; it never panics.
//
// Setters that change a field covered by a header checksum (IPv4.SetTTL,
// IPv4.SetSrc, UDP.SetDstPort, ICMPv4.SetType, ...) update that checksum
// incrementally per RFC 1624, so a valid checksum stays valid. The transport
// checksums also cover the IP pseudo header; changing an IP address does not
// touch the transport header, use UpdateChecksumAddr for that (NAT).
//
// Views are plain slices: they are as safe for concurrent use as the bytes
// they point at. In xdpnet a packet belongs to one poller goroutine at a
// time, and so do its views.
package proto
