package xdpprog

// AttachFunc loads and attaches the XDP program of one interface: Attach, or a closure over AttachTransit.
type AttachFunc func(ifindex int, opts Options) (*Program, error)

// SetPollerAttach makes cfg, a *poller.Config, attach its ports' programs with f instead of Attach. Package
// poller sets it in its init; it exists because the choice of program takes this package's types, which an
// exported field of poller.Config may not (an embedder outside the module could not name them), while the
// module's own commands still need it (xdpfwd's kernel-mirror mode). It is typed with any because this
// package cannot import poller, which imports it.
var SetPollerAttach func(cfg any, f AttachFunc)
