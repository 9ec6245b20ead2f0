package xdpprog_test

import (
	"bytes"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"github.com/asavie/xdp"
	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/xdpnet/xdpnet/internal/xdpprog"
)

// The other half of the program's contract: with a socket in the slot, frames of that queue go to the socket
// and not to the kernel; Unregister gives them back to the kernel. The AF_XDP socket comes from asavie/xdp
// (only its socket, not its program) so that this test does not depend on xdpnet's own rings package.
func TestRegisteredSocketTakesQueueTrafficVeth(t *testing.T) {
	for _, mode := range []xdpprog.Mode{xdpprog.ModeNative, xdpprog.ModeGeneric} {
		t.Run(mode.String(), func(t *testing.T) {
			lab := newPair(t)
			idx := lab.b.ifindex(t, lab.ifB)
			p, err := attachIn(t, lab.b, idx, xdpprog.Options{Mode: mode})
			if err != nil {
				t.Fatal(err)
			}
			// b's kernel will not see ARP while the socket holds queue 0: give a a static neighbour entry.
			lb, err := lab.b.nl.LinkByIndex(idx)
			if err != nil {
				t.Fatal(err)
			}
			la, err := lab.a.nl.LinkByName(lab.ifA)
			if err != nil {
				t.Fatal(err)
			}
			if err := lab.a.nl.NeighSet(&netlink.Neigh{
				LinkIndex: la.Attrs().Index, Family: unix.AF_INET, State: netlink.NUD_PERMANENT,
				IP: lab.ipB, HardwareAddr: lb.Attrs().HardwareAddr,
			}); err != nil {
				t.Fatal(err)
			}

			var xsk *xdp.Socket
			if err := lab.b.do(func() (err error) {
				xsk, err = xdp.NewSocket(idx, 0, nil) // bind(2) resolves idx in this namespace
				return err
			}); err != nil {
				t.Fatalf("AF_XDP socket on %s queue 0: %v", lab.ifB, err)
			}
			defer xsk.Close()
			xsk.Fill(xsk.GetDescs(xsk.NumFreeFillSlots()))
			if err := p.Register(0, xsk.FD()); err != nil {
				t.Fatalf("Register(0, xsk): %v", err)
			}

			var ca, cb *net.UDPConn
			if err := lab.a.do(func() (err error) { ca, err = net.ListenUDP("udp4", &net.UDPAddr{IP: lab.ipA}); return err }); err != nil {
				t.Fatal(err)
			}
			defer ca.Close()
			if err := lab.b.do(func() (err error) { cb, err = net.ListenUDP("udp4", &net.UDPAddr{IP: lab.ipB}); return err }); err != nil {
				t.Fatal(err)
			}
			defer cb.Close()
			marker := []byte("xdpprog-to-socket-" + lab.ifB)
			if _, err := ca.WriteToUDP(marker, cb.LocalAddr().(*net.UDPAddr)); err != nil {
				t.Fatal(err)
			}

			found := false
			deadline := time.Now().Add(5 * time.Second)
			for !found && time.Now().Before(deadline) {
				n, _, err := xsk.Poll(100)
				if err != nil && !errors.Is(err, unix.EINTR) {
					t.Fatalf("poll AF_XDP socket: %v", err)
				}
				if n == 0 {
					continue
				}
				for _, d := range xsk.Receive(n) {
					if bytes.Contains(xsk.GetFrame(d), marker) {
						found = true
					}
				}
			}
			if !found {
				t.Fatalf("datagram never reached the AF_XDP socket registered for %s queue 0", lab.ifB)
			}
			// It went to the socket instead of the kernel: the UDP socket must not have it.
			cb.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
			buf := make([]byte, 2048)
			if k, _, err := cb.ReadFromUDP(buf); err == nil {
				t.Fatalf("kernel socket also received %q while queue 0 was redirected", buf[:k])
			} else if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal(err)
			}

			if err := p.Unregister(0); err != nil {
				t.Fatal(err)
			}
			back := []byte("xdpprog-back-to-kernel")
			if _, err := ca.WriteToUDP(back, cb.LocalAddr().(*net.UDPAddr)); err != nil {
				t.Fatal(err)
			}
			cb.SetReadDeadline(time.Now().Add(5 * time.Second))
			k, _, err := cb.ReadFromUDP(buf)
			if err != nil || !bytes.Equal(buf[:k], back) {
				t.Fatalf("after Unregister the kernel socket got %q, %v; want %q", buf[:k], err, back)
			}
		})
	}
}
