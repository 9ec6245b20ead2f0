package nat_test

import (
	"net/netip"
	"sync"
	"testing"

	"github.com/xdpnet/xdpnet/pipeline/memlink"
	"github.com/xdpnet/xdpnet/proto"
)

// TestTwoQueues: the two directions of masqueraded connections on two queues at once, as RSS spreads
// them (the replies carry the translated tuple, which hashes to an unrelated queue). Each queue has its
// own handler over the one stack and NAT; run with -race.
func TestTwoQueues(t *testing.T) {
	g := newGW(t, gwOpts{})
	l1, err := memlink.New(memlink.Config{
		Ports:      []memlink.PortConfig{{Name: "in", MAC: macIn}, {Name: "out", MAC: macOut}},
		Frames:     4096,
		Queue:      1,
		NewHandler: g.n.NewHandler(g.s.NewHandler),
	})
	if err != nil {
		t.Fatal(err)
	}
	l1.Poll()
	l1.Sent(portIn)
	l1.Sent(portOut)
	const flows = 31 * 64
	ext := make([]netip.AddrPort, flows)
	for i := 0; i < flows; i++ {
		a, s, mac := floodFlow(i)
		ext[i] = parse(t, g.one(portIn, udpFrame(macIn, mac, a, s, "open"), portOut)).src()
	}
	var wg sync.WaitGroup
	errs := make(chan string, 2)
	wg.Add(2)
	go func() { // queue 0: outbound on the established flows, and new ones
		defer wg.Done()
		for round := 0; round < 5; round++ {
			for lo := 0; lo < flows; lo += 64 {
				var fs [][]byte
				for i := lo; i < lo+64; i++ {
					a, s, mac := floodFlow(i)
					fs = append(fs, udpFrame(macIn, mac, a, s, "more"))
				}
				a, s, mac := floodFlow(flows + round*1000 + lo/64)
				fs = append(fs, udpFrame(macIn, mac, a, s, "new"))
				g.l.InjectBatch(portIn, fs...)
				g.l.Poll()
				out := g.l.Sent(portOut)
				if len(out) != len(fs) {
					errs <- "queue 0 lost packets"
					return
				}
				for j, f := range out[:64] {
					ip := proto.IPv4(f[14:])
					if ip.Src() != gwOut || netip.AddrPortFrom(ip.Src(), proto.UDP(ip.Payload()).SrcPort()) != ext[lo+j] {
						errs <- "queue 0: flow left with another mapping"
						return
					}
				}
			}
		}
	}()
	go func() { // queue 1: the replies
		defer wg.Done()
		for round := 0; round < 5; round++ {
			for lo := 0; lo < flows; lo += 64 {
				var fs [][]byte
				for i := lo; i < lo+64; i++ {
					_, s, _ := floodFlow(i)
					fs = append(fs, udpFrame(macOut, macS, s, ext[i], "reply"))
				}
				l1.InjectBatch(portOut, fs...)
				l1.Poll()
				back := l1.Sent(portIn)
				if len(back) != len(fs) {
					errs <- "queue 1 lost replies"
					return
				}
				for j, f := range back {
					a, _, _ := floodFlow(lo + j)
					ip := proto.IPv4(f[14:])
					if netip.AddrPortFrom(ip.Dst(), proto.UDP(ip.Payload()).DstPort()) != a ||
						!proto.UDP(ip.Payload()).ChecksumValid(ip.Src(), ip.Dst()) {
						errs <- "queue 1: reply to the wrong host or with a bad checksum"
						return
					}
				}
			}
		}
	}()
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Fatal(e)
	}
	if err := g.l.Err(); err != nil {
		t.Fatal(err)
	}
	if err := l1.Err(); err != nil {
		t.Fatal(err)
	}
	st := g.n.Stats()
	if st.Conntrack.Entries != flows+5*flows/64 || st.Conntrack.Assured != flows {
		t.Fatalf("entries %d assured %d", st.Conntrack.Entries, st.Conntrack.Assured)
	}
}
