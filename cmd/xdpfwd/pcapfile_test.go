package main

import (
	"encoding/binary"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/xdpnet/xdpnet/pipeline"
)

// TestPcapFilesRotateBounded: a capture through the tap into pcapFiles keeps at most N files of at most
// --pcap-size bytes, FILE newest and FILE.(N-1) oldest, each a pcap of its own, all 0600.
func TestPcapFilesRotateBounded(t *testing.T) {
	path := filepath.Join(t.TempDir(), "cap.pcap")
	const files, size = 3, 24 + 4*(16+1000) // the header and four 1000-byte records (minPcapSize for snaplen 2048)
	pf, err := createPcapFiles(path, files, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	tap, err := pipeline.NewTap(pf.cur, pipeline.TapConfig{FileSize: size, Next: pf.next})
	if err != nil {
		t.Fatal(err)
	}
	const n = 20 // 5 files' worth: the 2 oldest are gone
	for i := range n {
		buf := make([]byte, 256+1000)
		binary.BigEndian.PutUint32(buf[256:], uint32(i))
		var b pipeline.Batch
		b.Pkts[0].Reset(buf, 0, 256, len(buf))
		b.N = 1
		tap.Process(&b, []uint16{0})
	}
	if err := tap.Close(); err != nil {
		t.Fatal(err)
	}
	if err := pf.close(); err != nil {
		t.Fatal(err)
	}
	if tap.Rotations() != 4 {
		t.Fatalf("%d rotations, want 4 for 20 records at 4 a file", tap.Rotations())
	}
	if _, err := os.Lstat(path + "." + "3"); err == nil {
		t.Fatalf("%s.3 exists: more than %d files kept", path, files)
	}
	// Oldest first: FILE.2 has records 8-11, FILE.1 12-15, FILE 16-19.
	want := uint32(8)
	for _, name := range []string{path + ".2", path + ".1", path} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 || fi.Size() > size {
			t.Errorf("%s: mode %v, %d bytes; want 0600 and at most %d", name, fi.Mode().Perm(), fi.Size(), size)
		}
		b, _ := os.ReadFile(name)
		if len(b) < 24 || binary.LittleEndian.Uint32(b) != 0xa1b2c3d4 {
			t.Fatalf("%s does not start with a pcap header", name)
		}
		for b = b[24:]; len(b) >= 16; {
			cl := int(binary.LittleEndian.Uint32(b[8:]))
			if got := binary.BigEndian.Uint32(b[16:]); got != want {
				t.Fatalf("%s: record %d where %d was due", name, got, want)
			}
			want++
			b = b[16+cl:]
		}
	}
	if want != n {
		t.Fatalf("the kept files end at record %d, want %d", want, n)
	}
}

// TestPcapFilesRefuseExisting: an existing FILE, a symbolic link at FILE (to a file that must stay as it
// is) or an existing FILE.k of the rotation is refused with what to do; nothing is written.
func TestPcapFilesRefuseExisting(t *testing.T) {
	dir := t.TempDir()
	victim := filepath.Join(dir, "victim")
	if err := os.WriteFile(victim, []byte("keep me"), 0o644); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link.pcap")
	if err := os.Symlink(victim, link); err != nil {
		t.Fatal(err)
	}
	dangling := filepath.Join(dir, "dangling.pcap")
	if err := os.Symlink(filepath.Join(dir, "nothing-here"), dangling); err != nil {
		t.Fatal(err)
	}
	rotated := filepath.Join(dir, "rot.pcap")
	if err := os.WriteFile(rotated+".2", nil, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{victim, link, dangling, rotated} {
		_, err := createPcapFiles(path, 3, slog.New(slog.DiscardHandler))
		if err == nil || !strings.Contains(err.Error(), "move or delete it") {
			t.Errorf("%s: %v, want a refusal that says to move or delete it", filepath.Base(path), err)
		}
	}
	if b, _ := os.ReadFile(victim); string(b) != "keep me" {
		t.Errorf("the symbolic link's target was written: %q", b)
	}
	if _, err := os.Lstat(filepath.Join(dir, "nothing-here")); err == nil {
		t.Error("a file was created through a dangling symbolic link")
	}
	if _, err := os.Lstat(rotated); err == nil {
		t.Error("FILE was created although FILE.2 was in the way")
	}
}

// TestPcapFilesSymlinkAtRotation: a symbolic link put at FILE.1 between rotations is replaced by the
// rename, not followed; its target is untouched.
func TestPcapFilesSymlinkAtRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "cap.pcap")
	pf, err := createPcapFiles(path, 2, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	victim := filepath.Join(dir, "victim")
	os.WriteFile(victim, []byte("keep me"), 0o644)
	if err := os.Symlink(victim, path+".1"); err != nil {
		t.Fatal(err)
	}
	w, err := pf.next()
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "x")
	pf.close()
	if b, _ := os.ReadFile(victim); string(b) != "keep me" {
		t.Errorf("rotation wrote through a symbolic link: %q", b)
	}
	if fi, err := os.Lstat(path + ".1"); err != nil || fi.Mode()&os.ModeSymlink != 0 {
		t.Errorf("%s.1 is %v (%v), want the rotated capture", path, fi.Mode(), err)
	}
}

func TestPcapFlagsAndConfig(t *testing.T) {
	for s, want := range map[string]int64{"4096": 4096, "512K": 512 << 10, "100M": 100 << 20, "2g": 2 << 30} {
		if n, err := parseSize(s); err != nil || n != want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", s, n, err, want)
		}
	}
	for _, s := range []string{"", "M", "-1", "10T", "1.5M", "99999999999999999G"} {
		if _, err := parseSize(s); err == nil {
			t.Errorf("parseSize(%q) accepted", s)
		}
	}
	o, err := parseRunArgs([]string{"--iface", "r0=198.18.0.1/24", "--pcap", "x.pcap"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	c, err := o.check()
	if err != nil || c.pcapSize != defaultPcapSize || c.pcapFiles != defaultPcapFiles {
		t.Fatalf("defaults: size %d files %d err %v", c.pcapSize, c.pcapFiles, err)
	}
	for _, bad := range [][]string{{"--pcap-size", "1K"}, {"--pcap-files", "0"}, {"--pcap-size", "lots"}} {
		o, err := parseRunArgs(append([]string{"--iface", "r0=198.18.0.1/24"}, bad...), io.Discard)
		if err == nil {
			_, err = o.check()
		}
		if err == nil || !strings.Contains(err.Error(), "want") {
			t.Errorf("%v: %v, want an error that says what to give", bad, err)
		}
	}
	cfg := "interfaces:\n  - {name: r0, addresses: [198.18.0.1/24]}\npcap: /tmp/x.pcap\npcap-size: 10M\npcap-files: 3\n"
	fc, err := parseConfig("t.yaml", []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	o = &runOptions{pcapSize: defaultPcapSize, pcapFiles: defaultPcapFiles}
	fc.apply(o, map[string]bool{})
	if o.pcapSize != 10<<20 || o.pcapFiles != 3 {
		t.Errorf("from the file: size %d files %d", o.pcapSize, o.pcapFiles)
	}
	if _, err := parseConfig("t.yaml", []byte(cfg+"pcap-size: 10\n")); err == nil {
		t.Error("pcap-size given twice accepted")
	}
	_, err = parseConfig("t.yaml", []byte("interfaces:\n  - {name: r0, addresses: [198.18.0.1/24]}\npcap-size: 1K\npcap-files: 0\n"))
	if err == nil || !strings.Contains(err.Error(), "t.yaml:3: pcap-size") || !strings.Contains(err.Error(), "t.yaml:4: pcap-files") {
		t.Errorf("bad pcap keys: %v", err)
	}
}
