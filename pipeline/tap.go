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
	// FileSize, when positive, bounds the bytes written to one output, as tcpdump -C does: before a record
	// that would pass it, the writer flushes, asks Next for a new output and starts it with a pcap file
	// header, so every piece is a complete capture. It must hold the file header and one full record
	// (24 + 16 + Snaplen bytes). Next is called on the writer goroutine; it owns the outputs (it closes,
	// renames or deletes the previous one, bounding their number). An error from Next stops the capture like
	// a write error: later copies are discarded and counted in Dropped, Close returns the error.
	FileSize int64
	Next     func() (io.Writer, error)
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

	captured, dropped, rotations atomic.Uint64

	w       *bufio.Writer
	hdr     [pcapFileHdrLen]byte
	limit   int64 // FileSize; 0: unbounded
	next    func() (io.Writer, error)
	written int64 // bytes in the current output; the writer's alone
	err     error // first write error, read after done
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
	if cfg.FileSize > 0 {
		if need := int64(pcapFileHdrLen + pcapRecHdrLen + cfg.Snaplen); cfg.FileSize < need {
			return nil, fmt.Errorf("pcap file size %d bytes: want at least %d (the file header and one record of snaplen %d)", cfg.FileSize, need, cfg.Snaplen)
		}
		if cfg.Next == nil {
			return nil, errors.New("pcap file size set without Next to give the next output")
		}
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
		limit:   max(cfg.FileSize, 0),
		next:    cfg.Next,
	}
	for i := range t.slots {
		t.slots[i].seq.Store(uint64(i))
	}
	magic := uint32(pcapMagicMicro)
	if cfg.Nanosecond {
		magic = pcapMagicNano
	}
	binary.NativeEndian.PutUint32(t.hdr[0:], magic)
	binary.NativeEndian.PutUint16(t.hdr[4:], 2) // version 2.4
	binary.NativeEndian.PutUint16(t.hdr[6:], 4)
	binary.NativeEndian.PutUint32(t.hdr[16:], uint32(cfg.Snaplen))
	binary.NativeEndian.PutUint32(t.hdr[20:], pcapLinkEther)
	if err := t.writeHeader(); err != nil {
		return nil, err
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

// writeHeader starts the current output with the pcap file header and makes it visible at once, so that even
// an output that gets no packet is a valid capture.
func (t *Tap) writeHeader() error {
	if _, err := t.w.Write(t.hdr[:]); err != nil {
		return fmt.Errorf("write pcap header: %w", err)
	}
	if err := t.w.Flush(); err != nil {
		return fmt.Errorf("write pcap header: %w", err)
	}
	t.written = pcapFileHdrLen
	return nil
}

// rotate moves to the next output: what is buffered goes to the current one first.
func (t *Tap) rotate() error {
	if err := t.w.Flush(); err != nil {
		return err
	}
	w, err := t.next()
	if err != nil {
		return fmt.Errorf("next pcap file: %w", err)
	}
	t.w.Reset(w)
	t.rotations.Add(1)
	return t.writeHeader()
}

func (t *Tap) writer() {
	defer close(t.done)
	var rec [pcapRecHdrLen]byte
	for {
		s := &t.slots[t.head&t.mask]
		if s.seq.Load() == t.head+1 {
			if n := int64(pcapRecHdrLen + s.caplen); t.err == nil && t.limit > 0 && t.written+n > t.limit {
				t.err = t.rotate()
			}
			if t.err != nil {
				t.dropped.Add(1) // the capture stopped at the first error: this copy is lost
			} else {
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
				t.written += int64(pcapRecHdrLen + s.caplen)
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

// Dropped is the number of copies lost because the ring was full, the tap closed, or the capture stopped at a
// write error. The packets themselves were not affected.
func (t *Tap) Dropped() uint64 { return t.dropped.Load() }

// Rotations is the number of times the writer moved to a new output (TapConfig.FileSize).
func (t *Tap) Rotations() uint64 { return t.rotations.Load() }

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
