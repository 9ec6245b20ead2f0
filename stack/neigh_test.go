package stack

import (
	"net/netip"
	"testing"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/pipeline/memlink"
)

var defaultPorts = []memlink.PortConfig{{Name: "lan", MAC: macLan}, {Name: "wan", MAC: macWan}}

// wan23 puts the wan interface on 198.19.0.1/23: 510 hosts besides ours, most of them absent.
func wan23(c *Config) {
	c.Interfaces[1].Addrs = []netip.Prefix{netip.MustParsePrefix("198.19.0.1/23")}
}

// hostOfWan23 is the i-th address of 198.19.0.0/23 after ours and B's (198.19.0.3 on).
func hostOfWan23(i int) netip.Addr {
	return addrFrom4(addr4(netip.MustParseAddr("198.19.0.3")) + uint32(i))
}

// floodAbsent sends per packets to each of hosts absent hosts of the wan /23 from A, in full batches, and
// checks after each batch that the queue never holds more than limit frames.
func (e *env) floodAbsent(hosts, per, limit int) (sent int) {
	e.t.Helper()
	var batch [][]byte
	flush := func() {
		if len(batch) == 0 {
			return
		}
		e.l.InjectBatch(portLan, batch...) // an error (no frame left) fails below, on Outstanding
		if err := e.l.Err(); err != nil {
			e.t.Fatal(err)
		}
		if o := e.l.Outstanding(); o > limit {
			e.t.Fatalf("after %d packets the queue holds %d frames, want at most %d", sent, o, limit)
		}
		e.l.Sent(portWan)
		batch = batch[:0]
	}
	for r := range per {
		for i := range hosts {
			batch = append(batch, udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(hostOfWan23(i), 9), 64, []byte{byte(r)}))
			sent++
			if len(batch) == pipeline.MaxBatch {
				flush()
			}
		}
	}
	flush()
	return sent
}

// TestHeldPacketsBoundedPerQueue: packets for many unresolved next hops stop being held at
// HeldPacketsPerQueue (neighbour_held_limit), each neighbour still at most NeighbourQueueLen; the queue keeps
// receiving, and when the neighbours fail every held frame comes back.
func TestHeldPacketsBoundedPerQueue(t *testing.T) {
	e := newEnv(t, func(c *Config) {
		wan23(c)
		c.NeighbourQueueLen = 4
		c.HeldPacketsPerQueue = 10
	})
	for i := range 5 { // 5 hosts x 4 packets: the first 10 are held
		for r := range 4 {
			e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(hostOfWan23(i), 9), 64, []byte{byte(r)}))
		}
	}
	e.checkHeld()
	if o := e.l.Outstanding(); o != 10 {
		t.Fatalf("%d frames held, want 10", o)
	}
	if d := e.l.Dropped(DropHeldLimit); d != 10 {
		t.Errorf("%d neighbour_held_limit drops, want 10 (drops %v)", d, e.l.DropSummary())
	}
	// The per-neighbour bound comes first: a fifth packet to the first host is neighbour_queue_full.
	e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(hostOfWan23(0), 9), 64, nil))
	if d := e.l.Dropped(pipeline.DropNeighbourQueueFull); d != 1 {
		t.Errorf("%d neighbour_queue_full drops, want 1 (drops %v)", d, e.l.DropSummary())
	}
	// A resolved next hop is not affected.
	e.l.Sent(portWan)
	e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipB, 9), 64, nil))
	if p := parseOut(t, e.only(portWan)); p.eth.Dst() != macB {
		t.Errorf("packet to B went to %v", p.eth.Dst())
	}
	for range 10 {
		if e.l.WakeAt() == 0 {
			break
		}
		e.l.AdvanceTo(e.l.WakeAt())
	}
	if o := e.l.Outstanding(); o != 0 {
		t.Errorf("%d frames still held after the neighbours failed", o)
	}
	if d := e.l.Dropped(pipeline.DropNeighbourFailed); d != 10 {
		t.Errorf("%d neighbour_failed drops, want the 10 held (drops %v)", d, e.l.DropSummary())
	}
	e.checkHeld()
}

// TestHeldFloodKeepsQueueReceiving is the flood of issue #12: 16 packets to each of the 508 absent hosts
// of a connected /23 over a 2048-frame pool. Before the bound the queue held 8128 frames - all of them - and
// could receive nothing; now it holds at most DefaultHeldPacketsPerQueue and goes on forwarding.
func TestHeldFloodKeepsQueueReceiving(t *testing.T) {
	e := newEnvFrames(t, wan23, defaultPorts, 2048)
	sent := e.floodAbsent(508, DefaultNeighbourQueueLen, DefaultHeldPacketsPerQueue)
	held := e.l.Outstanding()
	if held != DefaultHeldPacketsPerQueue {
		t.Errorf("%d frames held after the flood, want the bound %d", held, DefaultHeldPacketsPerQueue)
	}
	if d := e.l.Dropped(DropHeldLimit); d != uint64(sent-held) {
		t.Errorf("%d neighbour_held_limit drops, want %d (drops %v)", d, sent-held, e.l.DropSummary())
	}
	e.inject(portLan, udpFrame(macLan, macA, netip.AddrPortFrom(ipA, 1), netip.AddrPortFrom(ipB, 9), 64, nil))
	if p := parseOut(t, e.only(portWan)); p.eth.Dst() != macB {
		t.Errorf("packet to B went to %v", p.eth.Dst())
	}
	e.checkHeld()
	for range 20 {
		if e.l.WakeAt() == 0 {
			break
		}
		e.l.AdvanceTo(e.l.WakeAt())
	}
	if o := e.l.Outstanding(); o != 0 {
		t.Errorf("%d frames still held after the neighbours failed", o)
	}
	e.checkHeld()
}
