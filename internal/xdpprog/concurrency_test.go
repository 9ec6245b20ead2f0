package xdpprog_test

import (
	"errors"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/internal/xdpprog"
)

// Register/Unregister/ProgramID from many goroutines while Close runs: every call returns either its normal
// result or ErrClosed, never a use of a closed map fd (run with -race).
func TestConcurrentRegisterAndCloseVeth(t *testing.T) {
	lab := newPair(t)
	p, err := attachIn(t, lab.b, lab.b.ifindex(t, lab.ifB), xdpprog.Options{})
	if err != nil {
		t.Fatal(err)
	}
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)

	var wg sync.WaitGroup
	start := make(chan struct{})
	errc := make(chan error, 64)
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			for i := range 200 {
				var err error
				switch (g + i) % 3 {
				case 0:
					err = p.Unregister(0)
				case 1:
					// A UDP socket is refused with EOPNOTSUPP: the map update really ran.
					if err = p.Register(0, fd); errors.Is(err, unix.EOPNOTSUPP) {
						err = nil
					}
				case 2:
					_, err = p.ProgramID()
				}
				if err != nil && !errors.Is(err, xdpprog.ErrClosed) {
					errc <- err
					return
				}
			}
		}()
	}
	close(start)
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Errorf("concurrent call: %v", err)
	}
}
