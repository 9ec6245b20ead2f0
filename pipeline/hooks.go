package pipeline

import (
	"fmt"
	"sort"
)

// Hook is a point in the packet path where stages run, named after netfilter's.
type Hook uint8

const (
	PreRouting  Hook = iota // every received IP packet, before the route lookup
	Input                   // packets for this host, before local delivery
	Forward                 // packets routed through this host
	Output                  // packets this host generates, before they join the egress path
	PostRouting             // every packet about to leave, after routing
	NumHooks
)

var hookNames = [NumHooks]string{"prerouting", "input", "forward", "output", "postrouting"}

func (h Hook) String() string {
	if h < NumHooks {
		return hookNames[h]
	}
	return "hook?"
}

// ParseHook reads a hook name as printed by String (for flags and config).
func ParseHook(s string) (Hook, error) {
	for i, n := range hookNames {
		if n == s {
			return Hook(i), nil
		}
	}
	return 0, fmt.Errorf("unknown hook %q (want one of prerouting, input, forward, output, postrouting)", s)
}

// Stage is a step run at a hook over the packets of a batch selected for it. sel holds indexes into
// b.Pkts of packets that are still Accept when the stage starts; a stage decides some of them (Drop, Tx,
// Steal) and leaves the rest Accept to go on. It must not allocate per packet.
type Stage interface {
	Process(b *Batch, sel []uint16)
}

// PacketFunc adapts a per-packet function to a Stage, for stages with nothing to share across a batch.
type PacketFunc func(p *Packet)

// Process calls f for each selected packet that is still undecided.
func (f PacketFunc) Process(b *Batch, sel []uint16) {
	for _, i := range sel {
		if p := &b.Pkts[i]; p.Verdict == Accept {
			f(p)
		}
	}
}

type registered struct {
	priority int
	name     string
	stage    Stage
}

// Hooks holds the stages of each hook. Register stages before the drivers start; Run is then read-only and
// may be shared by every queue's goroutine.
type Hooks struct {
	stages [NumHooks][]registered
}

// Register places stage at hook; stages run in ascending priority, equal priorities in registration order
// (as netfilter's NF_IP_PRI_*).
func (h *Hooks) Register(hook Hook, priority int, name string, stage Stage) {
	s := append(h.stages[hook], registered{priority, name, stage})
	sort.SliceStable(s, func(i, j int) bool { return s[i].priority < s[j].priority })
	h.stages[hook] = s
}

// Stages lists the names of the stages at hook, in run order.
func (h *Hooks) Stages(hook Hook) []string {
	var names []string
	for _, r := range h.stages[hook] {
		names = append(names, r.name)
	}
	return names
}

// Empty reports whether no stage is registered at hook, so a caller can skip building a selection.
func (h *Hooks) Empty(hook Hook) bool { return h == nil || len(h.stages[hook]) == 0 }

// Run passes the selected packets through the stages at hook and returns sel narrowed, in place, to the
// packets still Accept afterwards.
func (h *Hooks) Run(hook Hook, b *Batch, sel []uint16) []uint16 {
	if h == nil {
		return sel
	}
	for _, r := range h.stages[hook] {
		if len(sel) == 0 {
			break
		}
		r.stage.Process(b, sel)
		sel = keepUndecided(b, sel)
	}
	return sel
}

func keepUndecided(b *Batch, sel []uint16) []uint16 {
	n := 0
	for _, i := range sel {
		if b.Pkts[i].Verdict == Accept {
			sel[n] = i
			n++
		}
	}
	return sel[:n]
}
