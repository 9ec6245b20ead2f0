package stack

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/stack/tcp"
)

// Interface configures the IP side of one port, matched to the driver's ports by Name.
type Interface struct {
	Name string
	// Addrs are this host's addresses with their network (198.18.0.1/24, 2001:2::1/64), of either family;
	// each adds a local route and a connected route. An interface with an IPv6 address speaks IPv6: it
	// also gets a link-local address (RFC 4291 §2.5.6, fe80::/64 with the port's MAC as modified EUI-64,
	// RFC 4291 App. A) unless Addrs holds one, and it checks every IPv6 address with Duplicate Address
	// Detection before using it (RFC 4862 §5.4). An interface without one ignores IPv6, as before.
	Addrs []netip.Prefix
	// MTU is the IP MTU; 0 takes the port's MTU (and 1500 if the port reports none).
	MTU int
}

// ParseInterface reads an interface in the form command lines give it: NAME=ADDR/PLEN[,ADDR/PLEN...]
// (eth0=198.18.0.1/24 or eth0=198.18.0.1/24,2001:2::1/64), or NAME alone for an interface without an
// address. NAME is a Linux interface name (at most 15 characters, no '/' or space) and each ADDR/PLEN an
// IPv4 or IPv6 address with its prefix length.
func ParseInterface(s string) (Interface, error) {
	name, addrs, hasAddr := strings.Cut(s, "=")
	if name == "" || len(name) > 15 || strings.ContainsAny(name, "/ ") {
		return Interface{}, fmt.Errorf("%q: want NAME=ADDR/PLEN[,ADDR/PLEN...] or NAME (an interface name of at most 15 characters)", s)
	}
	i := Interface{Name: name}
	if hasAddr {
		for _, addr := range strings.Split(addrs, ",") {
			p, err := netip.ParsePrefix(addr)
			if err != nil || p.Addr().Zone() != "" || p.Addr().Is4In6() {
				return Interface{}, fmt.Errorf("%q: %q is not an address with prefix length, e.g. 198.18.0.1/24 or 2001:2::1/64", s, addr)
			}
			i.Addrs = append(i.Addrs, p)
		}
	}
	return i, nil
}

// Config configures a Stack.
type Config struct {
	Interfaces []Interface
	// Routes are added after the connected routes of Interfaces.
	Routes []Route
	// Hooks run at the five hook points; nil runs none.
	Hooks *pipeline.Hooks
	// NeighbourQueueLen bounds the packets each queue holds per unresolved next hop (default 16; the
	// kernel's unres_qlen). HeldPacketsPerQueue bounds the packets each queue holds for all unresolved next
	// hops together (default 1024): their frames come from the queue's frame pool, which must keep room to
	// receive, so keep it well below the pool (the poller's FramesPerQueue, at least 8192 by default).
	NeighbourQueueLen   int
	HeldPacketsPerQueue int
	// The neighbour table's bounds, as the kernel's net.ipv4.neigh.default.gc_thresh1/2/3 and gc_stale_time
	// (zero takes the default in parentheses): below NeighbourGCThresh1 (128) entries nothing is collected;
	// from NeighbourGCThresh2 (512) on a new entry collects at most every 5 s; at NeighbourGCThresh3 (1024)
	// a new entry is made only if collecting frees a place. Collection removes failed entries, entries
	// idle for 5 s (when forced) or NeighbourGCStaleTime (60s, every 5 s), and, to make room for a next hop
	// that traffic waits for, an entry learnt from an ARP request and never used.
	NeighbourGCThresh1, NeighbourGCThresh2, NeighbourGCThresh3 int
	NeighbourGCStaleTime                                       time.Duration
	// ICMPRate is the rate of ICMP error messages in messages per second, for the whole stack (RFC 1812
	// §4.3.2.8); 0 means 1000, a negative value means unlimited. ICMPBurst is the bucket depth (default 50).
	ICMPRate  int
	ICMPBurst int
	// UDPQueueLen bounds each UDP socket's receive queue in datagrams (default 256); SendQueueLen bounds each
	// queue's send queue (default 256).
	UDPQueueLen  int
	SendQueueLen int
	// Neighbour timers; zero values take the defaults in parentheses. ReachableTime (30s): how long a
	// confirmed neighbour is used before it turns stale. ProbeInterval (1s): the least time between two ARP
	// requests for one address. MaxProbes (3): unanswered requests before the neighbour fails.
	// FailedHold (3s): how long a failed neighbour answers host unreachable before a new resolution.
	ReachableTime, ProbeInterval, FailedHold time.Duration
	MaxProbes                                int
	// Resolver, when set, makes neighbour resolution external (the kernel-mirror mode): the stack sends no
	// ARP requests and no gratuitous ARP, calls Resolver where it would send a request (at most once per
	// ProbeInterval per neighbour, from the poller goroutine: it must not block), and takes MACs only from
	// SetNeighbour (external.go). Entries then never age by themselves: the resolver's owner reports changes.
	Resolver NeighbourResolver
	// NoDAD uses IPv6 addresses at once, without Duplicate Address Detection (RFC 4862 §5.1:
	// DupAddrDetectTransmits 0; Linux's accept_dad=0), for links where no other node can hold them.
	NoDAD bool
	// Logger receives configuration warnings (a configured interface the driver lacks, ...); nil discards.
	Logger *slog.Logger
	// TCP configures the TCP engine of every queue (buffers, timers, backlog); its MTU is further
	// lowered to the smallest MTU of the queue's interfaces, which clamps the MSS.
	TCP tcp.Config
}

// Defaults of Config.
const (
	DefaultNeighbourQueueLen    = 16
	DefaultHeldPacketsPerQueue  = 1024
	DefaultNeighbourGCThresh1   = 128
	DefaultNeighbourGCThresh2   = 512
	DefaultNeighbourGCThresh3   = 1024
	DefaultNeighbourGCStaleTime = 60 * time.Second
	DefaultICMPRate             = 1000
	DefaultICMPBurst            = 50
	DefaultUDPQueueLen          = 256
	DefaultSendQueueLen         = 256
	DefaultReachableTime        = 30 * time.Second
	DefaultProbeInterval        = time.Second
	DefaultFailedHold           = 3 * time.Second
	DefaultMaxProbes            = 3
	// TTL of the packets the stack originates (RFC 1700 default).
	defaultTTL = 64
)

// ifaceConf is a configured interface; port data (MAC, MTU, port index) lives in each handler, which gets
// it from its QueueInfo.
type ifaceConf struct {
	name  string
	addrs []netip.Prefix // IPv4
	v6    *iface6        // nil: the interface does not speak IPv6
	mtu   int
	noDAD bool // Config.NoDAD, for addAddr6
}

// Stack is a user-space IPv4 and IPv6 router and host. One Stack serves every queue: routes, neighbours and sockets
// are shared, each queue's Handler keeps its own packets.
type Stack struct {
	cfg    Config
	log    *slog.Logger
	ifaces []ifaceConf
	rt     *routeTable
	neigh  neighTable
	icmp   rateLimiter
	icmp6  rateLimiter
	garp   atomic.Bool
	now    atomic.Int64 // the latest driver clock seen, for Neighbours

	reachableNs, probeNs, failedNs int64
	maxProbes                      uint32

	mu       sync.Mutex
	handlers atomic.Pointer[[]*handler]
	udp      udpTable
	tcp      tcpShared                           // engines and listeners (tcp.go)
	ports    atomic.Pointer[[]pipeline.PortInfo] // from the first handler, for names in Neighbours
}

// New checks cfg, builds the connected, local and broadcast routes of the interfaces and adds cfg.Routes.
func New(cfg Config) (*Stack, error) {
	if cfg.NeighbourQueueLen <= 0 {
		cfg.NeighbourQueueLen = DefaultNeighbourQueueLen
	}
	if cfg.HeldPacketsPerQueue <= 0 {
		cfg.HeldPacketsPerQueue = DefaultHeldPacketsPerQueue
	}
	if cfg.NeighbourGCThresh1 <= 0 {
		cfg.NeighbourGCThresh1 = DefaultNeighbourGCThresh1
	}
	if cfg.NeighbourGCThresh2 <= 0 {
		cfg.NeighbourGCThresh2 = max(DefaultNeighbourGCThresh2, cfg.NeighbourGCThresh1)
	}
	if cfg.NeighbourGCThresh3 <= 0 {
		cfg.NeighbourGCThresh3 = max(DefaultNeighbourGCThresh3, cfg.NeighbourGCThresh2)
	}
	if cfg.NeighbourGCThresh1 > cfg.NeighbourGCThresh2 || cfg.NeighbourGCThresh2 > cfg.NeighbourGCThresh3 {
		return nil, fmt.Errorf("neighbour GC thresholds %d, %d, %d: want NeighbourGCThresh1 <= NeighbourGCThresh2 <= NeighbourGCThresh3",
			cfg.NeighbourGCThresh1, cfg.NeighbourGCThresh2, cfg.NeighbourGCThresh3)
	}
	if cfg.NeighbourGCThresh3 > 1<<24 {
		return nil, fmt.Errorf("NeighbourGCThresh3 %d: at most %d entries (the table's buckets are allocated at start)", cfg.NeighbourGCThresh3, 1<<24)
	}
	if cfg.NeighbourGCStaleTime <= 0 {
		cfg.NeighbourGCStaleTime = DefaultNeighbourGCStaleTime
	}
	if cfg.ICMPRate == 0 {
		cfg.ICMPRate = DefaultICMPRate
	}
	if cfg.ICMPBurst <= 0 {
		cfg.ICMPBurst = DefaultICMPBurst
	}
	if cfg.UDPQueueLen <= 0 {
		cfg.UDPQueueLen = DefaultUDPQueueLen
	}
	if cfg.SendQueueLen <= 0 {
		cfg.SendQueueLen = DefaultSendQueueLen
	}
	if cfg.ReachableTime <= 0 {
		cfg.ReachableTime = DefaultReachableTime
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = DefaultProbeInterval
	}
	if cfg.FailedHold <= 0 {
		cfg.FailedHold = DefaultFailedHold
	}
	if cfg.MaxProbes <= 0 {
		cfg.MaxProbes = DefaultMaxProbes
	}
	if cfg.Resolver != nil {
		cfg.ReachableTime = externalReachable
	}
	s := &Stack{cfg: cfg, log: cfg.Logger, rt: newRouteTable(),
		reachableNs: int64(cfg.ReachableTime), probeNs: int64(cfg.ProbeInterval),
		failedNs: int64(cfg.FailedHold), maxProbes: uint32(cfg.MaxProbes)}
	if s.log == nil {
		s.log = slog.New(slog.DiscardHandler)
	}
	s.icmp.init(cfg.ICMPRate, cfg.ICMPBurst)
	s.icmp6.init(cfg.ICMPRate, cfg.ICMPBurst)
	s.neigh.init(cfg.NeighbourGCThresh1, cfg.NeighbourGCThresh2, cfg.NeighbourGCThresh3, cfg.NeighbourGCStaleTime)
	s.udp.init()
	s.handlers.Store(&[]*handler{})

	var base []routeEntry
	for i, ic := range cfg.Interfaces {
		if ic.Name == "" {
			return nil, fmt.Errorf("interface %d has no Name (use the port's name)", i)
		}
		if s.ifaceByName(ic.Name) >= 0 {
			return nil, fmt.Errorf("interface %q configured twice (merge its addresses into one Interface)", ic.Name)
		}
		if ic.MTU != 0 && (ic.MTU < 68 || ic.MTU > 65535) {
			return nil, fmt.Errorf("interface %q: MTU %d out of range (RFC 791: at least 68; at most 65535)", ic.Name, ic.MTU)
		}
		conf := ifaceConf{name: ic.Name, mtu: ic.MTU, noDAD: cfg.NoDAD}
		for _, a := range ic.Addrs {
			if a.IsValid() && a.Addr().Is6() && !a.Addr().Is4In6() {
				r, err := conf.addAddr6(a)
				if err != nil {
					return nil, fmt.Errorf("interface %q: %w", ic.Name, err)
				}
				idx := int32(len(s.ifaces))
				for _, e := range r {
					e.iface, e.route.Interface = idx, ic.Name
					base = append(base, e)
				}
				continue
			}
			if a.IsValid() && a.Addr().Is4In6() && a.Bits() >= 96 {
				a = netip.PrefixFrom(a.Addr().Unmap(), a.Bits()-96)
			}
			if !a.IsValid() || !a.Addr().Is4() || a.Bits() > 32 {
				return nil, fmt.Errorf("interface %q: address %v is not a valid address with prefix length (write it as 198.18.0.1/24 or 2001:2::1/64)", ic.Name, a)
			}
			u := addr4(a.Addr())
			if martian(u) || a.Addr().IsMulticast() {
				return nil, fmt.Errorf("interface %q: %v is not a usable unicast address", ic.Name, a)
			}
			conf.addrs = append(conf.addrs, a)
			idx := int32(len(s.ifaces))
			host := netip.PrefixFrom(a.Addr(), 32)
			base = append(base, routeEntry{route: Route{Prefix: host, Interface: ic.Name, Type: Local}, typ: Local, iface: idx, depth: 32})
			if a.Bits() < 32 {
				base = append(base, routeEntry{route: Route{Prefix: a.Masked(), Interface: ic.Name}, typ: Unicast, iface: idx, depth: a.Bits()})
			}
			// RFC 3021: a /31 has no broadcast address.
			if a.Bits() < 31 {
				bc := addrFrom4(u | (1<<(32-a.Bits()) - 1))
				base = append(base, routeEntry{route: Route{Prefix: netip.PrefixFrom(bc, 32), Interface: ic.Name, Type: Broadcast}, typ: Broadcast, iface: idx, depth: 32})
			}
		}
		if conf.v6 != nil && ic.MTU != 0 && ic.MTU < minMTU6 {
			return nil, fmt.Errorf("interface %q: MTU %d is below IPv6's minimum of 1280 (RFC 8200 §5)", ic.Name, ic.MTU)
		}
		s.ifaces = append(s.ifaces, conf)
	}
	err := s.rt.update(func(w *routeWriter) error {
		for _, e := range base {
			if err := w.add(e); err != nil {
				if e.typ == Unicast {
					return fmt.Errorf("connected route of interface %s: %w (two interfaces on one network are not supported)", e.route.Interface, err)
				}
				if _, ok := w.get(e.route.Prefix); ok && e.typ == Broadcast {
					continue // two addresses in one network share a broadcast address
				}
				return err
			}
		}
		for _, r := range cfg.Routes {
			e, err := s.checkRoute(r)
			if err != nil {
				return err
			}
			if err := w.add(e); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Stack) ifaceByName(name string) int {
	for i := range s.ifaces {
		if s.ifaces[i].name == name {
			return i
		}
	}
	return -1
}

// connectedIface is the interface with a network that contains a, or -1.
func (s *Stack) connectedIface(a netip.Addr) int {
	best, bits := -1, -1
	for i := range s.ifaces {
		for _, p := range s.ifaces[i].addrs {
			if p.Contains(a) && p.Bits() > bits {
				best, bits = i, p.Bits()
			}
		}
		if v6 := s.ifaces[i].v6; v6 != nil {
			for _, x := range v6.addrs {
				if p := x.prefix; p.Contains(a) && p.Bits() > bits {
					best, bits = i, p.Bits()
				}
			}
		}
	}
	return best
}

// ErrNoQueue is returned by UDP writes before any handler runs.
var ErrNoQueue = errors.New("stack: no queue is running (start the driver, which calls NewHandler, before sending)")
