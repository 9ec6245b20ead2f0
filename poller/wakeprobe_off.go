//go:build !latencydebug

package poller

// wakeProbe is empty outside debug builds (wakeprobe.go); the calls compile to nothing.
type wakeProbe struct{}

func (q *queue) probeWoke()           {}
func (q *queue) probePacket(b []byte) {}
func (q *queue) probeReport()         {}
func (q *queue) probeFlushed()        {}
