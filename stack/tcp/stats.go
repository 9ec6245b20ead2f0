package tcp

// Stat names one of the engine's counters. Drop* counters count segments (or connection attempts) thrown
// away, one per reason, so that no drop is silent.
type Stat uint8

const (
	StatSegsIn Stat = iota
	StatSegsOut
	StatRetransmits
	StatFastRetransmits
	StatSACKRetransmits
	StatTimeouts
	StatZeroWindowProbes
	StatChallengeACKs
	StatChallengeACKLimited // the engine-wide challenge ACK budget was spent (Config.ChallengeACKLimit)
	StatResetsIn
	StatResetsOut
	StatActiveOpens
	StatPassiveOpens
	StatCookiesSent
	StatCookiesAccepted
	StatTimeWaitExpired
	StatConnTimeouts
	StatOutputFull          // Output.Send had no room (data retried on the next Tick)
	StatLostRetransmits     // a retransmission found lost without an RTO (RACK-style, RFC 8985 §6.2)
	StatRescueRetransmits   // RFC 6675 §4 NextSeg rule 4 retransmissions
	StatTailLossProbes      // RFC 8985 §7 loss probes
	StatRcvBufGrown         // receive buffer autotuning grew a connection's buffer (Config.RecvBufferMax)
	StatSndBufGrown         // send buffer autotuning grew a connection's buffer (Config.SendBufferMax)
	StatTimeWaitOverflow    // Config.MaxTimeWait reached: the connection closed instead of TIME-WAIT (Linux TCPTimeWaitOverflow)
	StatPersistTimeouts     // connections ended by unanswered zero-window probes (also counted in StatConnTimeouts)
	StatOrphanOverflow      // Config.MaxOrphans reached: a connection closed by its application was reset (Linux TCPAbortOnMemory)
	StatACKSkippedChallenge // challenge ACK not sent: one went to this connection less than Config.InvalidRateLimit ago
	StatACKSkippedSeq       // ACK to an out-of-window segment (or an ACK of unsent data) not sent, the same limit
	StatACKSkippedPAWS      // ACK to a PAWS-failed segment not sent, the same limit
	StatMSSLowered          // connections whose MSS Engine.LowerMTU lowered
	StatCookieOptions       // connections accepted through a SYN cookie that kept their options (timestamp-encoded)
	StatKeepAliveProbes     // keep-alive probes sent (RFC 1122 §4.2.3.6)
	StatKeepAliveTimeouts   // connections ended by unanswered keep-alive probes (also counted in StatConnTimeouts)
	StatPMTUUpdates         // ICMP fragmentation needed / packet too big lowered a connection's MSS (Engine.PacketTooBig)
	StatMTUProbeLowered     // RTOs of full-sized segments lowered a connection's MSS (RFC 4821 black hole)
	StatMTUProbes           // RFC 4821 upward probes sent
	StatMTUProbeRaised      // acknowledged probes that raised a connection's MSS
	StatMTUProbeFailed      // probes lost
	StatHyStartCSS          // HyStart++ saw the RTT rise in slow start and entered Conservative Slow Start (RFC 9406)
	StatHyStartExits        // HyStart++ ended slow start after its CSS rounds, before any loss

	DropBadOptions       // option bytes that do not parse
	DropNoConnection     // no connection or listener (answered with RST unless it was one)
	DropOutOfWindow      // sequence number outside the receive window (answered with an ACK, StatACKSkippedSeq)
	DropPAWS             // RFC 7323 §5 old timestamp (answered with an ACK, StatACKSkippedPAWS)
	DropAckTooNew        // acknowledges data not yet sent (RFC 9293 §3.10.7.4)
	DropAckTooOld        // acknowledgment below SND.UNA - MAX.SND.WND (RFC 5961 §5.2)
	DropNoACK            // synchronized state segment without ACK
	DropRcvBufFull       // data beyond the receive buffer (trimmed)
	DropOutOfOrderFull   // out-of-order data with the out-of-order queue full
	DropAcceptQueueFull  // handshake completed but the accept queue is full
	DropMemoryLimit      // Config.MemoryLimit reached: a SYN, a handshake or a dial refused
	DropRcvMemory        // Config.MemoryLimit reached: arriving data dropped (the receive queue was not empty)
	DropBadCookie        // ACK to a listener with no valid SYN cookie
	DropCookieNoOverflow // ACK to a listener that sent no SYN cookie recently: not checked as one (answered with RST)
	DropRSTNotExact      // RST in window but not at RCV.NXT (challenge ACK sent, RFC 5961 §3.2)
	DropSYNInWindow      // SYN on a synchronized connection (challenge ACK sent, RFC 5961 §4.2)
	DropDataAfterClose   // data for an application that closed (connection reset, RFC 1122 §4.2.2.13)
	DropBadState         // segment not acceptable in the connection's state
	DropICMPNoConnection // Engine.PacketTooBig for a connection that does not exist
	DropICMPOutOfWindow  // Engine.PacketTooBig quoting a sequence number not in flight (RFC 5927 §4.1)
	DropICMPMTUNotLower  // Engine.PacketTooBig with an MTU not below the connection's
	numStats
)

var statNames = [numStats]string{
	"segs_in", "segs_out", "retransmits", "fast_retransmits", "sack_retransmits", "timeouts",
	"zero_window_probes", "challenge_acks", "challenge_acks_limited", "resets_in", "resets_out",
	"active_opens", "passive_opens", "cookies_sent", "cookies_accepted", "time_wait_expired", "conn_timeouts", "output_full",
	"lost_retransmits", "rescue_retransmits", "tail_loss_probes", "rcvbuf_grown", "sndbuf_grown",
	"time_wait_overflow", "persist_timeouts", "orphan_overflow",
	"ack_skipped_challenge", "ack_skipped_seq", "ack_skipped_paws",
	"mss_lowered", "cookie_options", "keepalive_probes", "keepalive_timeouts", "pmtu_updates", "mtu_probe_lowered", "mtu_probes", "mtu_probe_raised", "mtu_probe_failed", "hystart_css", "hystart_exits",
	"drop_bad_options", "drop_no_connection", "drop_out_of_window", "drop_paws", "drop_ack_too_new",
	"drop_ack_too_old", "drop_no_ack", "drop_rcvbuf_full", "drop_out_of_order_full", "drop_accept_queue_full",
	"drop_memory_limit", "drop_rcv_memory", "drop_bad_cookie", "drop_cookie_no_overflow", "drop_rst_not_exact", "drop_syn_in_window",
	"drop_data_after_close", "drop_bad_state",
	"drop_icmp_no_connection", "drop_icmp_out_of_window", "drop_icmp_mtu_not_lower",
}

func (s Stat) String() string {
	if s < numStats {
		return statNames[s]
	}
	return "unknown"
}

// State is a connection state, RFC 9293 §3.3.2.
type State uint8

const (
	StateClosed State = iota
	StateSynSent
	StateSynReceived
	StateEstablished
	StateFinWait1
	StateFinWait2
	StateCloseWait
	StateClosing
	StateLastAck
	StateTimeWait
)

var stateNames = [...]string{"CLOSED", "SYN-SENT", "SYN-RECEIVED", "ESTABLISHED", "FIN-WAIT-1", "FIN-WAIT-2",
	"CLOSE-WAIT", "CLOSING", "LAST-ACK", "TIME-WAIT"}

func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}
