package pipeline

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"
)

// pcap file format (classic libpcap, https://www.tcpdump.org/manpages/pcap-savefile.5.html). Written in the
// host's byte order, which the magic number tells readers.
const (
	pcapMagicMicro  = 0xa1b2c3d4
	pcapMagicNano   = 0xa1b23c4d
	pcapLinkEther   = 1 // LINKTYPE_ETHERNET
	pcapFileHdrLen  = 24
	pcapRecHdrLen   = 16
	defaultSnaplen  = 2048
	defaultTapSlots = 1024
)

// TapConfig configures a Tap. Zero values pick the defaults.
type TapConfig struct {
	// Snaplen is the most bytes kept of each packet (default 2048); longer packets are cut, and the record
	// keeps their original length, as tcpdump -s does.
	Snaplen int
	// Slots is the number of packets the ring buffers between the packet path and the writer (default 1024,
	// rounded up to a power of two). When the writer falls behind and the ring is full, copies are dropped
	// and counted, never waited for.
	Slots int
	// Nanosecond writes nanosecond timestamps (magic 0xa1b23c4d) instead of microseconds.
	Nanosecond bool
	// Filter, when set, picks the packets to copy. It runs on the packet path: it must be fast and must not
	// allocate or change the packet.
	Filter func(p *Packet) bool
}

// Tap is a Stage that copies the packets it sees to a pcap stream, like an AF_PACKET socket under tcpdump.
// It never changes a verdict nor holds a packet back: a packet is copied into a preallocated slot of a
// bounded ring and goes on; a writer goroutine drains the ring to the io.Writer. Process may run on several
// queue goroutines at once (the ring is a bounded multi-producer queue after Vyukov); Close must be called
// once, after which copies are counted as dropped.
type Tap struct {
	mask    uint64
	snaplen int
	nano    bool
	filter  func(p *Packet) bool
	slots   []tapSlot
	data    []byte // slots' packet bytes, snaplen each

	tail   atomic.Uint64 // next slot producers claim
	head   uint64        // next slot the writer reads; the writer's alone
	wake   chan struct{}
	closed atomic.Bool
	done   chan struct{}
	once   sync.Once

	captured, dropped atomic.Uint64

	w   *bufio.Writer
	err error // first write error, read after done
}

type tapSlot struct {
	// seq is the slot's turn: pos when free for the producer of position pos, pos+1 when filled for the
	// writer. Producers store it with release semantics after filling the slot; the writer loads it before
	// reading (sync/atomic is sequentially consistent, which covers both).
	seq     atomic.Uint64
	ts      int64
	caplen  uint32
	origlen uint32
	_       [32]byte // keep neighbouring slots off one cache line for concurrent producers
}

// NewTap writes the pcap file header to w and starts the writer goroutine.
func NewTap(w io.Writer, cfg TapConfig) (*Tap, error) {
	if cfg.Snaplen <= 0 {
		cfg.Snaplen = defaultSnaplen
	}
	if cfg.Slots <= 0 {
		cfg.Slots = defaultTapSlots
	}
	n := 1
	for n < cfg.Slots {
		n <<= 1
	}
	t := &Tap{
		mask:    uint64(n - 1),
		snaplen: cfg.Snaplen,
		nano:    cfg.Nanosecond,
		filter:  cfg.Filter,
		slots:   make([]tapSlot, n),
		data:    make([]byte, n*cfg.Snaplen),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
		w:       bufio.NewWriterSize(w, 64<<10),
	}
	for i := range t.slots {
		t.slots[i].seq.Store(uint64(i))
	}
	var hdr [pcapFileHdrLen]byte
	magic := uint32(pcapMagicMicro)
	if cfg.Nanosecond {
		magic = pcapMagicNano
	}
	binary.NativeEndian.PutUint32(hdr[0:], magic)
	binary.NativeEndian.PutUint16(hdr[4:], 2) // version 2.4
	binary.NativeEndian.PutUint16(hdr[6:], 4)
	binary.NativeEndian.PutUint32(hdr[16:], uint32(cfg.Snaplen))
	binary.NativeEndian.PutUint32(hdr[20:], pcapLinkEther)
	if _, err := t.w.Write(hdr[:]); err != nil {
		return nil, fmt.Errorf("write pcap header: %w", err)
	}
	if err := t.w.Flush(); err != nil {
		return nil, fmt.Errorf("write pcap header: %w", err)
	}
	go t.writer()
	return t, nil
}

// Process implements Stage: copy each selected packet the filter accepts. Verdicts are left as they are.
func (t *Tap) Process(b *Batch, sel []uint16) {
	now := time.Now().UnixNano()
	queued := false
	for _, i := range sel {
		p := &b.Pkts[i]
		if t.filter != nil && !t.filter(p) {
			continue
		}
		queued = t.enqueue(p.Data(), now) || queued
	}
	if queued {
		t.signal()
	}
}

// Capture copies one packet (for callers outside a hook, such as a driver's RX tap). It reports whether the
// copy was queued; false means it was dropped (ring full, or the tap is closed).
func (t *Tap) Capture(p *Packet) bool {
	if t.filter != nil && !t.filter(p) {
		return false
	}
	if !t.enqueue(p.Data(), time.Now().UnixNano()) {
		return false
	}
	t.signal()
	return true
}

func (t *Tap) signal() {
	select {
	case t.wake <- struct{}{}:
	default: // the writer has a wake-up pending already
	}
}

func (t *Tap) enqueue(d []byte, now int64) bool {
	if t.closed.Load() {
		t.dropped.Add(1)
		return false
	}
	pos := t.tail.Load()
	for {
		s := &t.slots[pos&t.mask]
		seq := s.seq.Load()
		switch {
		case seq == pos:
			if !t.tail.CompareAndSwap(pos, pos+1) {
				pos = t.tail.Load()
				continue
			}
			n := copy(t.data[int(pos&t.mask)*t.snaplen:][:t.snaplen], d)
			s.ts, s.caplen, s.origlen = now, uint32(n), uint32(len(d))
			s.seq.Store(pos + 1)
			t.captured.Add(1)
			return true
		case seq < pos:
			// The slot still holds the record of pos-len(slots): the writer is a whole ring behind.
			t.dropped.Add(1)
			return false
		default:
			pos = t.tail.Load() // another producer took pos
		}
	}
}

func (t *Tap) writer() {
	defer close(t.done)
	var rec [pcapRecHdrLen]byte
	for {
		s := &t.slots[t.head&t.mask]
		if s.seq.Load() == t.head+1 {
			if t.err == nil {
				sec, frac := s.ts/1e9, s.ts%1e9
				if !t.nano {
					frac /= 1e3
				}
				binary.NativeEndian.PutUint32(rec[0:], uint32(sec))
				binary.NativeEndian.PutUint32(rec[4:], uint32(frac))
				binary.NativeEndian.PutUint32(rec[8:], s.caplen)
				binary.NativeEndian.PutUint32(rec[12:], s.origlen)
				off := int(t.head&t.mask) * t.snaplen
				if _, err := t.w.Write(rec[:]); err != nil {
					t.err = err
				} else if _, err := t.w.Write(t.data[off : off+int(s.caplen)]); err != nil {
					t.err = err
				}
			}
			s.seq.Store(t.head + t.mask + 1) // free for the producer of position head+len(slots)
			t.head++
			continue
		}
		// Nothing ready (or the next slot is claimed but not yet filled): make what we have visible, then sleep.
		if t.err == nil {
			if err := t.w.Flush(); err != nil {
				t.err = err
			}
		}
		if t.closed.Load() && t.head == t.tail.Load() {
			return
		}
		if t.closed.Load() {
			// A producer claimed a slot before Close and is still copying into it: it finishes within a copy.
			time.Sleep(10 * time.Microsecond)
			continue
		}
		<-t.wake
	}
}

// Captured is the number of packets queued for writing.
func (t *Tap) Captured() uint64 { return t.captured.Load() }

// Dropped is the number of copies lost because the ring was full or the tap closed. The packets themselves
// were not affected.
func (t *Tap) Dropped() uint64 { return t.dropped.Load() }

// ErrTapClosed is returned by a second Close.
var ErrTapClosed = errors.New("pipeline: tap already closed")

// Close stops taking copies, waits until the writer has written and flushed every queued one, and returns
// the first write error. It does not close the underlying writer.
func (t *Tap) Close() error {
	first := false
	t.once.Do(func() { first = true })
	if !first {
		return ErrTapClosed
	}
	t.closed.Store(true)
	t.signal()
	<-t.done
	if t.err != nil {
		return fmt.Errorf("write pcap: %w", t.err)
	}
	return nil
}
