package main

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
)

// testpmd's AF_XDP PMD needs its mbuf pool in huge pages: with --no-huge (4 KiB pages) it received 12 frames and
// then the kernel dropped every other one at the socket (testpmd: "RX-packets: 12 RX-dropped: 2712448", the
// socket's XDP_STATISTICS rx_dropped), on Linux 6.18 with Debian's DPDK 22.11. So the bench reserves 2 MiB pages
// for the run and gives back what it added when it ends. --in-memory takes them through memfd, so no hugetlbfs
// mount is needed.

const (
	nrHugepages     = "/proc/sys/vm/nr_hugepages"
	freeHugepages   = "/sys/kernel/mm/hugepages/hugepages-2048kB/free_hugepages"
	testpmdMemoryMB = 128 // testpmd -m: 8192 mbufs of 2176 bytes and the rings fit with room to spare
)

var hugepages struct {
	once         sync.Once
	err          error
	restore      func()
	removeRunDir bool
}

const dpdkRunDir = "/var/run/dpdk"

func readInt(path string) (int, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(strings.TrimSpace(string(b)))
}

// reserveHugepages makes sure testpmdMemoryMB of free 2 MiB pages exist, adding to vm.nr_hugepages if needed,
// once per process. releaseHugepages undoes it.
func reserveHugepages() error {
	hugepages.once.Do(func() {
		// EAL makes /var/run/dpdk/rte even with --in-memory: remove it (only if empty) when we made it.
		if _, err := os.Stat(dpdkRunDir); os.IsNotExist(err) {
			hugepages.removeRunDir = true
		}
		need := testpmdMemoryMB / 2
		free, err := readInt(freeHugepages)
		if err != nil {
			hugepages.err = fmt.Errorf("%w: read %s: %v (no 2 MiB huge page support?)", errNA, freeHugepages, err)
			return
		}
		if free >= need {
			return
		}
		total, err := readInt(nrHugepages)
		if err != nil {
			hugepages.err = fmt.Errorf("%w: read %s: %v", errNA, nrHugepages, err)
			return
		}
		want := total + need - free
		if err := os.WriteFile(nrHugepages, []byte(strconv.Itoa(want)), 0o644); err != nil {
			hugepages.err = fmt.Errorf("%w: set %s to %d: %v", errNA, nrHugepages, want, err)
			return
		}
		hugepages.restore = func() { os.WriteFile(nrHugepages, []byte(strconv.Itoa(total)), 0o644) }
		if free, _ = readInt(freeHugepages); free < need {
			hugepages.err = fmt.Errorf("%w: asked the kernel for %d more 2 MiB huge pages and got %d free of %d needed (memory too fragmented?)", errNA, want-total, free, need)
		}
	})
	return hugepages.err
}

// releaseHugepages gives back the huge pages reserveHugepages added, and removes the empty runtime directory
// testpmd left.
func releaseHugepages() {
	if hugepages.removeRunDir {
		os.Remove(dpdkRunDir + "/rte")
		os.Remove(dpdkRunDir)
		hugepages.removeRunDir = false
	}
	if hugepages.restore != nil {
		hugepages.restore()
		hugepages.restore = nil
	}
}
