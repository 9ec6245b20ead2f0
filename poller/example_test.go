package poller_test

import (
	"context"
	"log"
	"net/netip"
	"os/signal"
	"syscall"

	"github.com/cilium/ebpf"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/poller"
)

// dnsHandler would answer the DNS queries it is given; here it drops them.
type dnsHandler struct{}

func (dnsHandler) Process(b *pipeline.Batch) {
	for i := range b.Packets() {
		b.Pkts[i].Drop(pipeline.DropFiltered)
	}
}

func (dnsHandler) Tick(*pipeline.Batch) int64 { return 0 }

// An appliance on a host takes only its own traffic: UDP/53 to one address, over IPv4 and IPv6. Everything
// else on eth0 - ARP, NDP, ping, SSH, other services - stays with Linux, as if xdpnet were not there. It needs
// root (or CAP_NET_ADMIN, CAP_BPF, CAP_NET_RAW and CAP_IPC_LOCK), so the example has no output to check.
func ExampleSteer() {
	cfg := poller.Config{
		Interfaces: []string{"eth0"},
		NewHandler: func(*pipeline.QueueInfo) pipeline.Handler { return dnsHandler{} },
		Steer: &poller.Steer{Match: []poller.Match{{
			Protocol:    17, // UDP
			DstPorts:    []poller.PortRange{poller.Port(53)},
			DstPrefixes: []netip.Prefix{netip.MustParsePrefix("198.18.0.53/32"), netip.MustParsePrefix("2001:2::53/128")},
		}}},
	}
	p, err := poller.New(cfg)
	if err != nil {
		log.Fatal(err) // e.g. a Match that cannot be compiled, saying how to fix it
	}
	defer p.Close()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := p.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

// With an XDP program of one's own (built with clang, loaded with cilium/ebpf), xdpnet only needs the XSKMAP
// the program redirects into: bpf_redirect_map(&xsks, ctx->rx_queue_index, XDP_PASS) for the frames it
// wants in user space. The poller attaches nothing and registers its sockets in the map.
func ExampleSteer_ownProgram() {
	coll, err := ebpf.LoadCollection("steer.o") // your program, with a map "xsks" of type XSKMAP
	if err != nil {
		log.Fatal(err)
	}
	defer coll.Close()
	// Attach coll.Programs["steer"] to eth0 with link.AttachXDP, then:
	p, err := poller.New(poller.Config{
		Interfaces: []string{"eth0"},
		NewHandler: func(*pipeline.QueueInfo) pipeline.Handler { return dnsHandler{} },
		Steer:      &poller.Steer{XSKMaps: map[string]*ebpf.Map{"eth0": coll.Maps["xsks"]}},
	})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	if err := p.Run(context.Background()); err != nil {
		log.Fatal(err)
	}
}
