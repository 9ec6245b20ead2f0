package main

import "github.com/xdpnet/xdpnet/pipeline"

// bridge is the per-queue handler: every frame received on one port goes out of the other, after the
// PreRouting stages (the optional pcap tap) and the Forward stages (the ACL). What a stage decides (a drop)
// stays decided; the rest is sent. It never holds a frame.
type bridge struct {
	hooks *pipeline.Hooks
	sel   [pipeline.MaxBatch]uint16
}

func newBridge(hooks *pipeline.Hooks) pipeline.NewHandler {
	return func(q *pipeline.QueueInfo) pipeline.Handler { return &bridge{hooks: hooks} }
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
		p.Send(1 - p.InPort) // ports are 0 (-in) and 1 (-out)
	}
}

// Tick has nothing to emit: a bridge keeps no state.
func (br *bridge) Tick(*pipeline.Batch) int64 { return 0 }
