package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"syscall"
)

// The file side of --pcap: a capture bounded in size and number of files, rotated like tcpdump -C/-W (and
// named like logrotate): FILE is the one being written, FILE.1 the one before it, ... FILE.(N-1) the oldest;
// when FILE reaches --pcap-size, FILE.(N-1) is removed, the others move up one and a new FILE starts. A
// capture holds the packets of the network it is on, so the files are created 0600 and never through a
// symbolic link or over an existing file (O_CREAT|O_EXCL|O_NOFOLLOW): a file that is in the way is an error
// that says to move it, not something to overwrite.

// Defaults: at most 5 files of 100 MiB, 500 MiB of disk.
const (
	defaultPcapSize  = 100 << 20
	defaultPcapFiles = 5
	maxPcapFiles     = 1000
	// minPcapSize holds the pcap file header and one record of the tap's default snaplen (2048).
	minPcapSize = 24 + 16 + 2048
)

// pcapFiles is a running --pcap capture's files; next is the pipeline.TapConfig.Next of its tap and runs on
// the tap's writer goroutine, close after the tap is closed.
type pcapFiles struct {
	path  string
	files int
	cur   *os.File
	log   *slog.Logger
}

// name is FILE for k = 0, FILE.k after.
func (p *pcapFiles) name(k int) string {
	if k == 0 {
		return p.path
	}
	return p.path + "." + strconv.Itoa(k)
}

// createExclusive makes a new file that only the owner can read; it fails if anything, a symbolic link
// included, is at path.
func createExclusive(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL|syscall.O_NOFOLLOW, 0o600)
}

// createPcapFiles creates FILE for a capture of at most files files. Neither FILE nor any FILE.k the
// rotation would use may exist.
func createPcapFiles(path string, files int, log *slog.Logger) (*pcapFiles, error) {
	p := &pcapFiles{path: path, files: files, log: log}
	for k := 0; k < files; k++ {
		if _, err := os.Lstat(p.name(k)); err == nil {
			return nil, p.exists(p.name(k))
		}
	}
	f, err := createExclusive(path)
	if errors.Is(err, fs.ErrExist) {
		return nil, p.exists(path)
	}
	if err != nil {
		return nil, err
	}
	p.cur = f
	return p, nil
}

func (p *pcapFiles) exists(name string) error {
	return fmt.Errorf("%s already exists: xdpfwd does not overwrite files (nor write through symbolic links); move or delete it, or give another --pcap FILE", name)
}

// next closes FILE, shifts the older files up by one (dropping the oldest) and starts a new FILE.
func (p *pcapFiles) next() (io.Writer, error) {
	err := p.rotate()
	if err != nil {
		p.log.Error("pcap: cannot start the next file; the capture stops here", "file", p.path, "err", err)
		return nil, err
	}
	p.log.Info("pcap: rotated", "file", p.path, "files", p.files)
	return p.cur, nil
}

func (p *pcapFiles) rotate() error {
	if err := p.cur.Close(); err != nil {
		return err
	}
	p.cur = nil
	if err := os.Remove(p.name(p.files - 1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	for k := p.files - 2; k >= 0; k-- {
		// rename(2) moves the name itself: a symbolic link put in the way is replaced, never followed.
		if err := os.Rename(p.name(k), p.name(k+1)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	f, err := createExclusive(p.path)
	if err != nil {
		return err
	}
	p.cur = f
	return nil
}

func (p *pcapFiles) close() error {
	if p.cur == nil {
		return nil
	}
	err := p.cur.Close()
	p.cur = nil
	return err
}

// byteSize is a flag value of bytes with an optional binary suffix: 4096, 512K, 100M, 2G.
type byteSize int64

func (b *byteSize) String() string { return formatSize(int64(*b)) }

func (b *byteSize) Set(s string) error {
	n, err := parseSize(s)
	if err != nil {
		return err
	}
	*b = byteSize(n)
	return nil
}

func parseSize(s string) (int64, error) {
	num, mult := s, int64(1)
	if i := len(s) - 1; i > 0 {
		switch strings.ToUpper(s[i:]) {
		case "K":
			num, mult = s[:i], 1<<10
		case "M":
			num, mult = s[:i], 1<<20
		case "G":
			num, mult = s[:i], 1<<30
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("%q is not a size: want bytes with an optional K, M or G (KiB, MiB, GiB), e.g. 100M", s)
	}
	return n * mult, nil
}

func formatSize(n int64) string {
	for _, u := range []struct {
		s string
		m int64
	}{{"G", 1 << 30}, {"M", 1 << 20}, {"K", 1 << 10}} {
		if n >= u.m && n%u.m == 0 {
			return strconv.FormatInt(n/u.m, 10) + u.s
		}
	}
	return strconv.FormatInt(n, 10)
}

// checkPcapBounds validates --pcap-size and --pcap-files.
func checkPcapBounds(size int64, files int) error {
	if size < minPcapSize {
		return fmt.Errorf("--pcap-size %s: want at least %d bytes (a pcap header and one full packet), e.g. 100M", formatSize(size), minPcapSize)
	}
	if files < 1 || files > maxPcapFiles {
		return fmt.Errorf("--pcap-files %d: want 1 to %d files (FILE, FILE.1, ...; the oldest is removed when FILE is full)", files, maxPcapFiles)
	}
	return nil
}
