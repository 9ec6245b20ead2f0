package main

import "github.com/xdpnet/xdpnet/pipeline"

// bridge is the per-queue handler: every frame received on one port goes out of the other, after the
// PreRouting stages (the optional pcap tap) and the Forward stages (the ACL). What a stage decides (a drop)
// stays decided; the rest is sent, with any checksum a veth peer left partial completed. It never holds a
// frame, so it has no Tick.
type bridge struct {
	hooks   *pipeline.Hooks
	partial [2]bool // by port: PortInfo.PartialChecksums
	sel     [pipeline.MaxBatch]uint16
}

func newBridge(hooks *pipeline.Hooks) pipeline.NewHandler {
	return func(q *pipeline.QueueInfo) pipeline.Handler {
		br := &bridge{hooks: hooks}
		for _, p := range q.Ports {
			if int(p.Index) < len(br.partial) {
				br.partial[p.Index] = p.PartialChecksums
			}
		}
		return br
	}
}

// Process runs the hooks once per batch (not per packet), as the pipeline wants.
func (br *bridge) Process(b *pipeline.Batch) {
	sel := br.sel[:0]
	for i := range b.N {
		sel = append(sel, uint16(i))
	}
	sel = br.hooks.Run(pipeline.PreRouting, b, sel)
	sel = br.hooks.Run(pipeline.Forward, b, sel)
	for _, i := range sel {
		p := &b.Pkts[i]
		if br.partial[p.InPort&1] {
			pipeline.FinishPartialChecksum(p.Data())
		}
		p.Send(1 - p.InPort) // ports are 0 (-in) and 1 (-out)
	}
}
