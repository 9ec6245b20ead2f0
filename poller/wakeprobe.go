//go:build latencydebug

package poller

import (
	"encoding/binary"
	"fmt"
	"os"
	"time"
)

// The latency probe of a debug build (-tags latencydebug), for the breakdown of issue 11. ping puts its send
// time (a struct timeval of CLOCK_REALTIME) at the start of the ICMP echo payload, and the echo reply carries
// it back, so for each echo request and reply the router forwards the probe knows how long ago ping sent the
// request: when the queue holds the packet (split by whether the queue was asleep in ppoll(2), and then how
// long after ppoll returned, or polling), and when the sendto that transmitted it returned (copy mode: the
// kernel's transmit, and whatever it ran inline, happen inside it). Printed to stderr when the queue stops.
// Never in a release build: it reads every received frame.
type wakeProbe struct {
	woke    int64      // CLOCK_REALTIME ns when ppoll last returned with traffic, 0 once a packet was seen
	pending [2]int64   // send time of an echo request (0) / reply (1) received in this loop, 0 if none
	in      [2][2]stat // [request/reply][polling/asleep]: send -> packet in hand
	out     [2]stat    // send -> sendto returned
	after   stat       // ppoll returned -> packet in hand
}

type stat struct{ n, sum int64 }

func (s *stat) add(d int64) { s.n++; s.sum += d }
func (s stat) String() string {
	if s.n == 0 {
		return "-"
	}
	return fmt.Sprintf("%.1f us (%d)", float64(s.sum)/float64(s.n)/1e3, s.n)
}

func (q *queue) probeWoke() { q.probe.woke = time.Now().UnixNano() }

func (q *queue) probePacket(b []byte) {
	const ipOff, icmpOff = 14, 14 + 20
	if len(b) < icmpOff+8+16 || b[12] != 0x08 || b[13] != 0 || b[ipOff] != 0x45 || b[ipOff+9] != 1 || (b[icmpOff] != 8 && b[icmpOff] != 0) {
		return
	}
	kind := 0
	if b[icmpOff] == 0 {
		kind = 1
	}
	sent := int64(binary.LittleEndian.Uint64(b[icmpOff+8:]))*1e9 + int64(binary.LittleEndian.Uint64(b[icmpOff+16:]))*1e3
	t := time.Now().UnixNano()
	if d := t - sent; d < 0 || d > int64(time.Second) {
		return
	}
	p := &q.probe
	if p.woke != 0 {
		p.in[kind][1].add(t - sent)
		p.after.add(t - p.woke)
	} else {
		p.in[kind][0].add(t - sent)
	}
	p.woke = 0
	p.pending[kind] = sent
}

// probeFlushed runs after flushTX: the packets probed in this loop have been handed to the kernel.
func (q *queue) probeFlushed() {
	p := &q.probe
	if p.pending[0]|p.pending[1] == 0 {
		return
	}
	t := time.Now().UnixNano()
	for k := range p.pending {
		if p.pending[k] != 0 {
			p.out[k].add(t - p.pending[k])
			p.pending[k] = 0
		}
	}
}

func (q *queue) probeReport() {
	p := &q.probe
	fmt.Fprintf(os.Stderr, "wakeprobe queue %d: time since ping sent the request (average, count): "+
		"request in hand %v polling, %v asleep (of which after ppoll returned %v); request sent on %v; "+
		"reply in hand %v polling, %v asleep; reply sent on %v\n",
		q.id, p.in[0][0], p.in[0][1], p.after, p.out[0], p.in[1][0], p.in[1][1], p.out[1])
}
