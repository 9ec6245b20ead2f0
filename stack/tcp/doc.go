// Package tcp is xdpnet's TCP (RFC 9293): the connection engine that the stack feeds with arriving segments
// and that hands back the segments to send, plus the net.Conn and net.Listener that applications use.
//
// An Engine belongs to one poller goroutine, its owner, which calls Input for every checksum-verified
// segment addressed to this host and Tick on every loop (Tick returns when the next timer is due). The
// engine emits segments through the Output given to NewEngine, synchronously from Input and Tick; a
// Segment is only valid during that call (its payload points into the send buffer), and Segment.Encode
// writes the TCP header, options, payload and checksum in one go. Application goroutines never touch the
// owner's state directly: Conn and Listener methods meet the engine under a per-connection mutex, and
// anything that needs the owner to act (data written, a close, a dial, a read that opened the window)
// puts the connection on a pending list and calls the owner's Waker. The owner never blocks on an
// application.
//
// Implemented: IPv4 and IPv6 connections (the checksum over either pseudo-header, MSS = MTU - 40 or - 60,
// listeners on an address, on 0.0.0.0, or on [::] for both families); all RFC 9293 states including
// simultaneous open and close and TIME-WAIT (2*MSL, configurable); sequence arithmetic modulo 2^32 (Seq);
// RFC 6528 ISNs (SipHash-2-4 of the 4-tuple under a secret key, plus a 4 µs clock); RFC 6056 ephemeral ports
// (Algorithm 4, double hash); RFC 5961 challenge ACKs for RSTs and SYNs in the window and for old ACKs,
// limited per connection and by a random engine-wide budget as Linux does since CVE-2016-5696, and the ACKs
// to out-of-window and PAWS-failed segments limited per connection (Config.InvalidRateLimit,
// tcp_invalid_ratelimit); MSS (clamped to Config.MTU, lowered on live connections by Engine.LowerMTU), path
// MTU discovery from ICMP (Engine.PacketTooBig, RFC 1191 and RFC 8201, validated as RFC 5927 §4.1 advises)
// and, for black holes, packetization-layer PMTUD (RFC 4821, as Linux's tcp_mtu_probing=1: down after RTOs of
// full-sized segments, then upward probes; pmtu.go), RFC 7323 window scaling, timestamps (RTT, PAWS,
// TS.Recent expiry after 24 days), RFC 2018 SACK (blocks sent from the out-of-order queue, received ones kept
// in a scoreboard); RFC 6675 conservative SACK loss recovery (IsLost, pipe, NextSeg rules 1, 2 and 4) with
// RFC 6937 proportional rate reduction and RFC 8985 RACK-style time-based loss marking of holes and of lost
// retransmissions, and tail loss probes that resend the last segment (recovery.go says why); RFC 6298 RTO
// (SRTT/RTTVAR, Karn, exponential backoff, configurable minimum); congestion control CUBIC (RFC 9438, the
// default, with fast convergence and the Reno-friendly region) or Reno (RFC 5681 with RFC 3465 byte
// counting), chosen per engine, listener or connection (cc.go), RFC 6928's initial window and HyStart++
// (RFC 9406) for the first slow start, fast retransmit and RFC 6582 NewReno for peers without SACK;
// zero-window probing, given up after MaxRetries unanswered probes (tcp_retries2) or once probes went
// unanswered for the time MaxRetries backed-off RTOs take (Linux's tcp_model_timeout; 522 s at the
// defaults, so a peer that vanished behind a closed window is given up within MaxRTO + 522 s); sender and
// receiver SWS avoidance; delayed ACKs (every second full segment - or one per connection per received batch, between
// BeginBatch and Flush - and Config.DelayedAck at most 200 ms); Nagle with SetNoDelay; a bounded out-of-order
// queue stored in the receive buffer itself; per-connection buffers whose memory is allocated as data arrives (from 4 KiB, doubling up to the buffer size) and given back once a buffer is empty and unwritten for a second (ring.go), so an idle connection holds none, with receive-buffer autotuning after
// Linux's (a buffer grows while the application reads more per round trip than it holds, up to
// Config.RecvBufferMax) and send-buffer autotuning after Linux's tcp_sndbuf_expand (a blocked writer's buffer
// grows to twice what the windows let be in flight, up to Config.SendBufferMax), a global memory cap on the bytes queued (Config.MemoryLimit, charged
// for data held, not buffer sizes, as Linux's tcp_mem), buffers given back as soon as no data can pass through them any more (at the latest on entering TIME-WAIT); bounds
// on TIME-WAIT entries (Config.MaxTimeWait, tcp_max_tw_buckets) and on connections closed by their
// application (Config.MaxOrphans and OrphanRetries, tcp_max_orphans and tcp_orphan_retries); listeners with a
// SYN queue bound, an accept backlog and RFC 4987 SYN cookies beyond it, accepted only shortly after an
// overflow, which keep window scaling and SACK in the timestamp as Linux does; keep-alive (RFC 1122
// §4.2.3.6), SetLinger, SetReadBuffer and SetWriteBuffer with *net.TCPConn's signatures (sockopt.go). Every
// dropped segment and every refusal is counted (Stat).
//
// Not implemented: urgent data (URG is ignored), ECN, RFC 6191 TIME-WAIT reuse, data carried on SYNs
// (ignored; the peer retransmits it), pacing, CUBIC's undo of spurious reductions (RFC 9438 §4.9) and its
// app-limited rule (cwnd grows on every ACK of new data), full per-segment RACK (send times are kept for
// retransmissions only; original transmissions are judged by sequence order), RFC 6675 NextSeg rule 3, D-SACK
// undo, loss probes during recovery, lowering a grown buffer size (its memory is given back when idle). SYN-cookie connections from clients without
// timestamps have no window scaling or SACK.
//
// Plugging it into a poller: one Engine per queue, created in the queue's handler with an Output that builds
// the frame in the current pipeline.Batch (route the destination, Ethernet + IPv4 header with protocol 6 (or
// IPv6 with next header 6), then Segment.Encode for the rest; when no frame is free Send returns false and
// the engine keeps the data or ACK for a later Tick) and with the queue's pipeline.Waker. Local delivery
// hands every checksum-verified TCP segment for a local address to Input (the engine answers unknown ports
// with RST itself), between a BeginBatch before the first segment of a received batch and a Flush after the
// last (the batch's ACKs leave in Flush), and the handler's Tick calls Engine.Tick and merges its wake-up
// time; an ICMP fragmentation-needed or ICMPv6 Packet Too Big that quotes a TCP segment goes to
// Engine.PacketTooBig, an interface MTU change to SetMTU and LowerMTU. Listeners must exist on every queue's
// engine (or flows be steered to one queue), since RSS picks the queue by the 4-tuple.
//
// Nothing panics on segment contents. The established-state data path (Input of an in-order segment, the ACK
// it causes, Flush, Tick) does not allocate (TestNoAllocs); a buffer's memory is
// allocated when data first reaches past it, a few times in a connection's life (and again after it was given
// back while idle).
package tcp
