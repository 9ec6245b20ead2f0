// Command appliance is what an embedder outside the xdpnet module writes: an IPv4 host on one interface,
// using only the public packages, with its metrics. With -memlink it runs over an in-memory link, answers one ARP request and
// prints what it sent, so that a test without privileges can run it; without, it runs over AF_XDP.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"net/netip"
	"os"
	"os/signal"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/xdpnet/xdpnet/metrics"
	"github.com/xdpnet/xdpnet/pipeline/memlink"
	"github.com/xdpnet/xdpnet/poller"
	"github.com/xdpnet/xdpnet/proto"
	"github.com/xdpnet/xdpnet/stack"
)

func main() {
	iface := flag.String("iface", "eth0=198.18.0.1/24", "NAME=ADDR/PLEN")
	mode := flag.String("xdp-mode", "auto", "auto, native or generic")
	mem := flag.Bool("memlink", false, "run over an in-memory link and answer one ARP request")
	flag.Parse()

	ifc, err := stack.ParseInterface(*iface)
	if err != nil {
		log.Fatal(err)
	}
	st, err := stack.New(stack.Config{Interfaces: []stack.Interface{ifc}})
	if err != nil {
		log.Fatal(err)
	}
	if *mem {
		if err := arpOverMemory(st, ifc); err != nil {
			log.Fatal(err)
		}
		return
	}

	xm, err := poller.ParseXDPMode(*mode)
	if err != nil {
		log.Fatal(err)
	}
	p, err := poller.New(poller.Config{Interfaces: []string{ifc.Name}, XDPMode: xm, Bind: poller.BindAuto, NewHandler: st.NewHandler})
	if err != nil {
		log.Fatal(err)
	}
	defer p.Close()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	if err := p.Run(ctx); err != nil {
		log.Fatal(err)
	}
}

func arpOverMemory(st *stack.Stack, ifc stack.Interface) error {
	mine := proto.MAC{0x02, 0, 0, 0, 0, 1}
	peer := proto.MAC{0x02, 0, 0, 0, 0, 2}
	l, err := memlink.New(memlink.Config{Ports: []memlink.PortConfig{{Name: ifc.Name, MAC: mine}}, NewHandler: st.NewHandler})
	if err != nil {
		return err
	}
	req := make([]byte, 60)
	n := proto.EthernetFields{Dst: proto.MAC{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, Src: peer, EtherType: proto.EtherTypeARP}.Encode(req)
	proto.ARPFields{Op: proto.ARPRequest, SenderMAC: peer, SenderIP: netip.MustParseAddr("198.18.0.2"),
		TargetIP: ifc.Addrs[0].Addr()}.Encode(req[n:])
	if err := l.Inject(0, req); err != nil {
		return err
	}
	for _, f := range l.Sent(0) {
		e, perr := proto.ParseEthernet(f)
		if perr != 0 || e.EtherType() != proto.EtherTypeARP {
			continue
		}
		if a, perr := proto.ParseARP(e.Payload()); perr == 0 && a.Op() == proto.ARPReply {
			fmt.Printf("arp reply: %s is-at %s\n", a.SenderIP(), a.SenderMAC())
			return printMetric(st, "xdpnet_stack_arp_replies_out_total")
		}
	}
	return fmt.Errorf("no ARP reply")
}

// printMetric gathers the stack's metrics as a scrape would and prints one series.
func printMetric(st *stack.Stack, name string) error {
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(metrics.NewCollector(nil, st))
	fams, err := reg.Gather()
	if err != nil {
		return err
	}
	for _, f := range fams {
		if f.GetName() == name {
			fmt.Printf("%s %v\n", name, f.GetMetric()[0].GetCounter().GetValue())
			return nil
		}
	}
	return fmt.Errorf("no metric %s", name)
}
