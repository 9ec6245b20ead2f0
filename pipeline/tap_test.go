package pipeline

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

type pcapRecord struct {
	ts              time.Time
	caplen, origlen int
	data            []byte
}

// readPcap is an independent reader for what the tap writes (little-endian host assumed, as on amd64/arm64).
func readPcap(t *testing.T, b []byte) (magic, snaplen, linktype uint32, recs []pcapRecord) {
	t.Helper()
	if len(b) < 24 {
		t.Fatalf("pcap of %d bytes has no file header", len(b))
	}
	magic = binary.LittleEndian.Uint32(b)
	if v1, v2 := binary.LittleEndian.Uint16(b[4:]), binary.LittleEndian.Uint16(b[6:]); v1 != 2 || v2 != 4 {
		t.Fatalf("version %d.%d", v1, v2)
	}
	snaplen, linktype = binary.LittleEndian.Uint32(b[16:]), binary.LittleEndian.Uint32(b[20:])
	b = b[24:]
	for len(b) > 0 {
		if len(b) < 16 {
			t.Fatalf("truncated record header")
		}
		sec, frac := binary.LittleEndian.Uint32(b), binary.LittleEndian.Uint32(b[4:])
		cl, ol := int(binary.LittleEndian.Uint32(b[8:])), int(binary.LittleEndian.Uint32(b[12:]))
		if len(b) < 16+cl {
			t.Fatalf("truncated record")
		}
		ns := int64(frac)
		if magic == pcapMagicMicro {
			ns *= 1000
		}
		recs = append(recs, pcapRecord{time.Unix(int64(sec), ns), cl, ol, b[16 : 16+cl]})
		b = b[16+cl:]
	}
	return
}

func batchOf(frames ...[]byte) (*Batch, []uint16) {
	b := new(Batch)
	var sel []uint16
	for i, f := range frames {
		buf := make([]byte, 256+len(f))
		copy(buf[256:], f)
		b.Pkts[i].Reset(buf, uint64(i), 256, 256+len(f))
		sel = append(sel, uint16(i))
	}
	b.N = len(frames)
	return b, sel
}

func TestTapWritesPcap(t *testing.T) {
	for _, nano := range []bool{false, true} {
		var out bytes.Buffer
		tap, err := NewTap(&out, TapConfig{Snaplen: 100, Nanosecond: nano})
		if err != nil {
			t.Fatal(err)
		}
		frames := testFrames()
		b, sel := batchOf(frames...)
		before := time.Now()
		var h Hooks
		h.Register(PreRouting, -200, "drop-second", PacketFunc(func(p *Packet) {
			if p.Addr == 1 {
				p.Drop(DropFiltered)
			}
		}))
		h.Register(PreRouting, -100, "tap", tap)
		left := h.Run(PreRouting, b, sel)
		if len(left) != len(frames)-1 || b.Pkts[1].Verdict != Drop || b.Pkts[0].Verdict != Accept {
			t.Fatalf("the tap changed verdicts: %d left", len(left))
		}
		if err := tap.Close(); err != nil {
			t.Fatal(err)
		}
		if tap.Close() != ErrTapClosed {
			t.Error("second Close")
		}
		magic, snaplen, lt, recs := readPcap(t, out.Bytes())
		wantMagic := uint32(pcapMagicMicro)
		if nano {
			wantMagic = pcapMagicNano
		}
		if magic != wantMagic || snaplen != 100 || lt != 1 {
			t.Errorf("header magic %#x snaplen %d linktype %d", magic, snaplen, lt)
		}
		// Run skips decided packets, so the dropped one (index 1) is not seen by a stage after the drop.
		want := [][]byte{frames[0], frames[2], frames[3], frames[4]}
		if len(recs) != len(want) || tap.Captured() != 4 || tap.Dropped() != 0 {
			t.Fatalf("%d records, captured %d dropped %d", len(recs), tap.Captured(), tap.Dropped())
		}
		for i, r := range recs {
			w := want[i]
			cut := w[:min(len(w), 100)]
			if !bytes.Equal(r.data, cut) || r.origlen != len(w) || r.caplen != len(cut) {
				t.Errorf("record %d: caplen %d origlen %d, want %d %d", i, r.caplen, r.origlen, len(cut), len(w))
			}
			if d := r.ts.Sub(before); d < -time.Millisecond || d > time.Minute {
				t.Errorf("record %d timestamp %v, captured at %v", i, r.ts, before)
			}
		}
	}
}

func TestTapFilter(t *testing.T) {
	var out bytes.Buffer
	tap, _ := NewTap(&out, TapConfig{Filter: func(p *Packet) bool { return p.Len() > 100 }})
	frames := testFrames()
	b, sel := batchOf(frames...)
	tap.Process(b, sel)
	if tap.Capture(&b.Pkts[0]) {
		t.Error("Capture ignored the filter")
	}
	tap.Close()
	_, _, _, recs := readPcap(t, out.Bytes())
	if len(recs) != 1 || !bytes.Equal(recs[0].data, frames[4]) {
		t.Errorf("filter kept %d records", len(recs))
	}
}

// gate is a writer that blocks until released, to make the ring fill up.
type gate struct {
	release chan struct{}
	once    sync.Once
	buf     bytes.Buffer
}

func (g *gate) Write(b []byte) (int, error) {
	<-g.release
	return g.buf.Write(b)
}

func TestTapOverflowDropsCopiesNotPackets(t *testing.T) {
	g := &gate{release: make(chan struct{})}
	// The header is written in NewTap, so let it through first.
	go func() { g.release <- struct{}{} }()
	tap, err := NewTap(g, TapConfig{Slots: 8})
	if err != nil {
		t.Fatal(err)
	}
	f := testFrames()[0]
	frames := make([][]byte, 20)
	for i := range frames {
		frames[i] = append([]byte(nil), f...)
		frames[i][len(f)-1] = byte(i)
	}
	b, sel := batchOf(frames...)
	for i := range 20 {
		b.Pkts[i].Send(1)
	}
	tap.Process(b, sel)
	for i := range 20 {
		if b.Pkts[i].Verdict != Tx {
			t.Fatal("verdict changed")
		}
	}
	// The writer is blocked (in its first flush at the latest), so at most 8 fit.
	if tap.Captured() != 8 || tap.Dropped() != 12 {
		t.Errorf("captured %d dropped %d, want 8 12", tap.Captured(), tap.Dropped())
	}
	close(g.release)
	if err := tap.Close(); err != nil {
		t.Fatal(err)
	}
	_, _, _, recs := readPcap(t, g.buf.Bytes())
	if len(recs) != 8 {
		t.Fatalf("%d records, want 8", len(recs))
	}
	for i, r := range recs {
		if r.data[len(r.data)-1] != byte(i) {
			t.Errorf("record %d holds packet %d: order lost", i, r.data[len(r.data)-1])
		}
	}
	// After Close, copies are dropped and the packet still untouched.
	if tap.Capture(&b.Pkts[0]) || tap.Dropped() != 13 {
		t.Error("capture after close")
	}
}

func TestTapConcurrentProducers(t *testing.T) {
	var out bytes.Buffer
	tap, _ := NewTap(&out, TapConfig{Slots: 64, Snaplen: 64})
	frames := testFrames()
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			b, sel := batchOf(frames...)
			for i := range 500 {
				for j := range b.N {
					b.Pkts[j].Data()[len(frames[j])-1] = byte(g*16 + i%16)
				}
				tap.Process(b, sel)
			}
		}()
	}
	wg.Wait()
	if err := tap.Close(); err != nil {
		t.Fatal(err)
	}
	_, _, _, recs := readPcap(t, out.Bytes())
	if uint64(len(recs)) != tap.Captured() || tap.Captured()+tap.Dropped() != 4*500*uint64(len(frames)) {
		t.Errorf("%d records, captured %d, dropped %d", len(recs), tap.Captured(), tap.Dropped())
	}
	for i, r := range recs {
		if r.caplen != min(64, r.origlen) {
			t.Fatalf("record %d torn: caplen %d origlen %d", i, r.caplen, r.origlen)
		}
	}
}

func TestTapNoAllocs(t *testing.T) {
	tap, _ := NewTap(discard{}, TapConfig{Slots: 4096})
	defer tap.Close()
	b, sel := batchOf(testFrames()...)
	if n := testing.AllocsPerRun(200, func() { tap.Process(b, sel) }); n != 0 {
		t.Errorf("Tap.Process allocates %v times per batch", n)
	}
	if n := testing.AllocsPerRun(200, func() { tap.Capture(&b.Pkts[0]) }); n != 0 {
		t.Errorf("Tap.Capture allocates %v times", n)
	}
}

type discard struct{}

func (discard) Write(b []byte) (int, error) { return len(b), nil }

func BenchmarkTapEnqueue(b *testing.B) {
	tap, _ := NewTap(discard{}, TapConfig{Slots: 4096})
	defer tap.Close()
	frames := testFrames()
	bt, sel := batchOf(frames[0], frames[1], frames[2], frames[3])
	b.ReportAllocs()
	for b.Loop() {
		tap.Process(bt, sel)
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*4), "ns/pkt")
	b.ReportMetric(float64(tap.Dropped())/float64(b.N*4), "dropped/pkt")
}

// TestTapTsharkReadsPcap writes real frames and has tshark decode them: the file must open, every field
// must come out as written, and nothing may be flagged malformed.
func TestTapTsharkReadsPcap(t *testing.T) {
	tshark, err := exec.LookPath("tshark")
	if err != nil {
		if os.Getenv("XDPNET_REQUIRE_PRIV") == "1" {
			t.Fatal("tshark not installed (apt-get install tshark); XDPNET_REQUIRE_PRIV=1 forbids skipping")
		}
		t.Skip("tshark not installed (apt-get install tshark)")
	}
	for _, nano := range []bool{false, true} {
		path := filepath.Join(t.TempDir(), "tap.pcap")
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		tap, err := NewTap(f, TapConfig{Nanosecond: nano})
		if err != nil {
			t.Fatal(err)
		}
		b, sel := batchOf(testFrames()...)
		tap.Process(b, sel)
		if err := tap.Close(); err != nil {
			t.Fatal(err)
		}
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(tshark, "-r", path, "-T", "fields", "-E", "separator=,",
			"-e", "frame.len", "-e", "eth.src", "-e", "ip.src", "-e", "ip.dst", "-e", "udp.dstport",
			"-e", "tcp.dstport", "-e", "icmp.type", "-e", "arp.dst.proto_ipv4", "-e", "dns.qry.name").Output()
		if err != nil {
			t.Fatalf("tshark: %v\n%s", err, stderr(err))
		}
		want := strings.Join([]string{
			"71,02:00:00:00:00:0a,198.18.0.1,198.18.1.2,53,,,,example.com",
			"54,02:00:00:00:00:0a,198.18.0.1,198.18.1.2,,22,,,",
			"65,02:00:00:00:00:0a,198.18.0.1,198.18.1.2,,,8,,",
			"42,02:00:00:00:00:0a,,,,,,198.18.0.2,",
			"1042,02:00:00:00:00:0a,198.18.5.9,198.18.1.3,5001,,,,",
		}, "\n") + "\n"
		if string(out) != want {
			t.Errorf("nano=%v: tshark decoded\n%s\nwant\n%s", nano, out, want)
		}
		mal, err := exec.Command(tshark, "-r", path, "-Y", "_ws.malformed || _ws.expert.severity >= error").Output()
		if err != nil || len(bytes.TrimSpace(mal)) != 0 {
			t.Errorf("tshark flags malformed packets: %v\n%s", err, mal)
		}
	}
}

func stderr(err error) []byte {
	if ee, ok := err.(*exec.ExitError); ok {
		return ee.Stderr
	}
	return nil
}

// TestTapRotatesAtFileSize: with FileSize set, the capture is cut at record boundaries into outputs of at
// most FileSize bytes, each a complete pcap with its own header, and together they hold every record in
// order; a size that cannot hold one record, or a size without Next, is refused; an error from Next stops
// the capture, counts the later copies as dropped and comes back from Close.
func TestTapRotatesAtFileSize(t *testing.T) {
	const snap, size = 100, 24 + 3*(16+64) + 10 // room for three 64-byte records per file
	var outs []*bytes.Buffer
	next := func() (io.Writer, error) {
		outs = append(outs, new(bytes.Buffer))
		return outs[len(outs)-1], nil
	}
	first, _ := next()
	tap, err := NewTap(first, TapConfig{Snaplen: snap, FileSize: size, Next: next})
	if err != nil {
		t.Fatal(err)
	}
	const n = 10
	for i := range n {
		frame := make([]byte, 64)
		binary.BigEndian.PutUint32(frame, uint32(i))
		b, sel := batchOf(frame)
		tap.Process(b, sel)
	}
	if err := tap.Close(); err != nil {
		t.Fatal(err)
	}
	if len(outs) != 4 || tap.Rotations() != 3 {
		t.Fatalf("%d outputs, %d rotations; want 4 files of at most 3 records for %d records", len(outs), tap.Rotations(), n)
	}
	seq := 0
	for i, o := range outs {
		if o.Len() > size {
			t.Errorf("output %d has %d bytes, over the %d bound", i, o.Len(), size)
		}
		_, sl, _, recs := readPcap(t, o.Bytes())
		if sl != snap || len(recs) == 0 {
			t.Errorf("output %d: snaplen %d, %d records", i, sl, len(recs))
		}
		for _, r := range recs {
			if got := binary.BigEndian.Uint32(r.data); got != uint32(seq) {
				t.Fatalf("output %d: record %d where %d was due", i, got, seq)
			}
			seq++
		}
	}
	if seq != n || tap.Dropped() != 0 {
		t.Fatalf("%d records written, %d dropped; want %d, 0", seq, tap.Dropped(), n)
	}

	if _, err := NewTap(io.Discard, TapConfig{Snaplen: snap, FileSize: 24 + 16 + snap - 1, Next: next}); err == nil {
		t.Error("a file size that cannot hold one record was accepted")
	}
	if _, err := NewTap(io.Discard, TapConfig{FileSize: 1 << 20}); err == nil {
		t.Error("a file size without Next was accepted")
	}

	failing := errors.New("disk full")
	tap, err = NewTap(io.Discard, TapConfig{Snaplen: snap, FileSize: size, Next: func() (io.Writer, error) { return nil, failing }})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		b, sel := batchOf(make([]byte, 64))
		tap.Process(b, sel)
	}
	if err := tap.Close(); !errors.Is(err, failing) {
		t.Fatalf("Close = %v, want the error of Next", err)
	}
	if tap.Dropped() != 2 {
		t.Fatalf("dropped %d, want the 2 copies after the third", tap.Dropped())
	}
}
