package poller

import (
	"encoding/binary"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/internal/netlab"
	"github.com/xdpnet/xdpnet/pipeline"
)

// Byte offsets in the multi-queue test frames, after the 14-byte Ethernet header: sequence (4), sending queue.
const mqQueueOff = 18

// queueGen is the peer's handler: it sends count frames from its own queue (so veth delivers them to the same
// queue index on the other end), paced so the receiver's fill ring keeps up, and counts the replies.
type queueGen struct {
	q        int
	left     int
	seq      int
	next     int64
	dst, src [6]byte
	replies  *[2]atomic.Int64
}

func (g *queueGen) Process(b *pipeline.Batch) {
	for i := range b.Packets() {
		p := &b.Pkts[i]
		d := p.Data()
		if len(d) > mqQueueOff && binary.BigEndian.Uint16(d[12:]) == etherReply {
			g.replies[g.q].Add(1)
			p.Consume()
			continue
		}
		p.Drop(pipeline.DropFiltered)
	}
}

func (g *queueGen) Tick(b *pipeline.Batch) int64 {
	if g.left == 0 {
		return 0
	}
	if b.Now < g.next {
		return g.next
	}
	for range min(8, g.left) {
		p, ok := b.Alloc()
		if !ok {
			break
		}
		f := testFrame(g.dst, g.src, etherTest, g.seq, 64)
		f[mqQueueOff] = byte(g.q)
		p.SetLen(len(f))
		copy(p.Data(), f)
		p.Send(0)
		g.seq++
		g.left--
	}
	g.next = b.Now + int64(500*time.Microsecond)
	return g.next
}

// queueEcho is the DUT's handler: it answers every test frame on the port it came from and counts, per
// queue, the frames received and those that arrived on another queue than the one they were sent from.
type queueEcho struct {
	q      int
	got    *[2]atomic.Int64
	wrongQ *atomic.Int64
}

func (h *queueEcho) Process(b *pipeline.Batch) {
	for i := range b.Packets() {
		p := &b.Pkts[i]
		d := p.Data()
		if len(d) <= mqQueueOff || binary.BigEndian.Uint16(d[12:]) != etherTest {
			p.Drop(pipeline.DropFiltered)
			continue
		}
		h.got[h.q].Add(1)
		if int(d[mqQueueOff]) != h.q || int(p.Queue) != h.q {
			h.wrongQ.Add(1)
		}
		var mac [6]byte
		copy(mac[:], d[0:6])
		copy(d[0:6], d[6:12])
		copy(d[6:12], mac[:])
		binary.BigEndian.PutUint16(d[12:], etherReply)
		p.Send(p.InPort)
	}
}

func (h *queueEcho) Tick(*pipeline.Batch) int64 { return 0 }

// TestTwoQueuesPinnedVeth: on a veth pair with two queues, a DUT poller with Queues: 2 and CPUs {0,1} receives
// the peer's traffic on both queues - each frame on the queue index it was sent from - and answers it from the
// same queue; both queue threads are pinned (sched_getaffinity of each TID is exactly its CPU), per-queue stats
// show both worked, and the frame accounting of both pollers is exact afterwards.
func TestTwoQueuesPinnedVeth(t *testing.T) {
	lab := netlab.NewT(t)
	dut, peer := lab.MustAddHost(t, "dut"), lab.MustAddHost(t, "peer")
	quietHost(t, dut)
	quietHost(t, peer)
	v, err := lab.LinkWith(dut, "eth0", peer, "eth0", netlab.LinkOptions{Queues: 2})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range []netlab.Endpoint{v.A, v.B} {
		if err := e.Host.SetUp(e.Name); err != nil {
			t.Fatal(err)
		}
	}
	for _, h := range []*netlab.Host{dut, peer} {
		if err := h.WaitOperUp("eth0", 5*time.Second); err != nil {
			t.Fatal(err)
		}
	}

	var got [2]atomic.Int64
	var wrongQ atomic.Int64
	cpus := []int{0, 1}
	dp, dstop := startPoller(t, dut, Config{Interfaces: []string{"eth0"}, Queues: 2, CPUs: cpus, RingSize: 512,
		NewHandler: func(q *pipeline.QueueInfo) pipeline.Handler {
			return &queueEcho{q: q.Queue, got: &got, wrongQ: &wrongQ}
		}})

	const perQueue = 400
	var replies [2]atomic.Int64
	pp, pstop := startPoller(t, peer, Config{Interfaces: []string{"eth0"}, Queues: 2, RingSize: 512,
		NewHandler: func(q *pipeline.QueueInfo) pipeline.Handler {
			return &queueGen{q: q.Queue, left: perQueue, dst: v.A.HWAddr(), src: v.B.HWAddr(), replies: &replies}
		}})

	deadline := time.Now().Add(10 * time.Second)
	for replies[0].Load()+replies[1].Load() < 2*perQueue && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}

	// Pinning: read each queue thread's CPU mask from the kernel while Run runs.
	st := dp.Stats()
	for qi, qs := range st.Queues {
		if qs.TID == 0 {
			t.Fatalf("queue %d has no thread", qi)
		}
		var set unix.CPUSet
		if err := unix.SchedGetaffinity(qs.TID, &set); err != nil {
			t.Fatalf("sched_getaffinity(%d): %v", qs.TID, err)
		}
		if set.Count() != 1 || !set.IsSet(cpus[qi]) || qs.CPU != cpus[qi] {
			t.Errorf("queue %d thread %d: affinity has %d CPUs (CPU %d set: %v), want only CPU %d", qi, qs.TID, set.Count(), cpus[qi], set.IsSet(cpus[qi]), cpus[qi])
		}
	}

	pstop()
	dstop()
	st = dp.Stats()
	for qi, qs := range st.Queues {
		t.Logf("dut queue %d: cpu %d rx %d tx %d busy loops %d; handler got %d; peer got %d replies",
			qi, qs.CPU, qs.Ports[0].RxPackets, qs.Ports[0].TxPackets, qs.BusyLoops, got[qi].Load(), replies[qi].Load())
		if got[qi].Load() != perQueue || qs.Ports[0].TxPackets != perQueue || qs.Ports[0].RxPackets < perQueue {
			t.Errorf("dut queue %d: handler got %d, stats %+v; want %d each", qi, got[qi].Load(), qs.Ports[0], perQueue)
		}
		if replies[qi].Load() != perQueue {
			t.Errorf("peer queue %d got %d replies, want %d", qi, replies[qi].Load(), perQueue)
		}
	}
	if n := wrongQ.Load(); n != 0 {
		t.Errorf("%d frames arrived on another queue than the one they were sent from", n)
	}
	if drops := st.DropsByName(); len(drops) != 0 {
		t.Errorf("dut dropped %v", drops)
	}
	if err := pp.CheckFrames(); err != nil {
		t.Errorf("peer: %v", err)
	}
}

// TestBusyPollOptionsVeth: BusyPoll sets SO_PREFER_BUSY_POLL, SO_BUSY_POLL and SO_BUSY_POLL_BUDGET on every
// socket. veth accepts them (they are socket options; the kernel checks only the caller's CAP_NET_ADMIN), so
// New succeeds - an error here would name the option - and forwarding works in both poll modes. Whether the
// driver's NAPI is then actually busy-polled is the driver's business: veth runs its NAPI from the peer's xmit,
// so the options change nothing measurable there.
func TestBusyPollOptionsVeth(t *testing.T) {
	for _, mode := range []PollMode{Busy, Adaptive} {
		t.Run(mode.String(), func(t *testing.T) {
			dut, peer, v := twoHosts(t)
			nh, got := newRecorder(-1)
			p, stop := startPoller(t, dut, Config{Interfaces: []string{"eth0"}, NewHandler: nh, RingSize: 512, FramesPerQueue: 2048,
				Mode: mode, BusyPoll: true})
			for _, fd := range socketFDs(p) {
				pref, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_PREFER_BUSY_POLL)
				if err != nil || pref != 1 {
					t.Fatalf("SO_PREFER_BUSY_POLL = %d, %v", pref, err)
				}
				us, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_BUSY_POLL)
				if err != nil || us <= 0 {
					t.Fatalf("SO_BUSY_POLL = %d, %v", us, err)
				}
			}
			ps := openPacket(t, peer, "eth0")
			const n = 200
			for i := range n {
				ps.send(t, testFrame(v.A.HWAddr(), v.B.HWAddr(), etherTest, i, 100))
			}
			replies := ps.capture(etherReply, n, 5*time.Second)
			stop()
			if len(got()) != n || len(replies) != n {
				t.Fatalf("handler got %d, peer %d replies, of %d; stats %+v", len(got()), len(replies), n, p.Stats().Ports)
			}
		})
	}
}

// socketFDs lists the socket fds of every queue's ports (test only, while Run runs).
func socketFDs(p *Poller) []int {
	var out []int
	for _, q := range p.qs {
		for i := range q.ports {
			if s := q.ports[i].statSock.Load(); s != nil {
				out = append(out, s.FD())
			}
		}
	}
	return out
}
