package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/poller"
	"github.com/xdpnet/xdpnet/rings"
	"github.com/xdpnet/xdpnet/stack"
)

// The configuration file is YAML with the flags of `run` as keys (see example.yaml). It is walked as a
// yaml.Node tree rather than unmarshalled into a struct so that every error names the line it comes from:
// an operator editing a router's config at 3 a.m. wants "xdpfwd.yaml:12: ...", not "field routes[3]".

// fileConfig is a parsed, checked configuration file. set records the top-level keys present, so that
// flags given on the command line can override exactly those.
type fileConfig struct {
	path string
	set  map[string]bool

	ifaces    ifaceFlags
	routes    []stack.Route
	mode      string
	idleSpin  time.Duration
	queues    int
	cpus      string
	bind      string
	xdpMode   string
	metrics   string
	pcap      string
	pcapHook  string
	pcapSize  int64
	pcapFiles int
	stats     time.Duration
	logFormat string
	acl       []pipeline.Rule
	kernel    kernelOptions // kernel: and table:, as --kernel and --table
}

// configError is one problem in a configuration file, at a line.
type configError struct {
	file string
	line int
	msg  string
}

func (e *configError) Error() string { return fmt.Sprintf("%s:%d: %s", e.file, e.line, e.msg) }

// configKeys are the keys a configuration file may have, in the order `check` documents them.
var configKeys = []string{"interfaces", "routes", "acl", "mode", "idle-spin", "queues", "cpus", "bind", "xdp-mode", "metrics",
	"pcap", "pcap-hook", "pcap-size", "pcap-files", "stats", "log-format", "kernel", "table"}

// loadConfig reads and checks a configuration file. The error, when not nil, joins one *configError per
// problem found (errors.Join), so `check` can list them all.
func loadConfig(path string) (*fileConfig, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	return parseConfig(path, b)
}

// parseConfig checks the YAML text b; path is only used in messages.
func parseConfig(path string, b []byte) (*fileConfig, error) {
	p := &configParser{c: &fileConfig{path: path, set: map[string]bool{}}, file: path}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		// yaml.v3 says "yaml: line 12: ..."; turn it into FILE:12 like every other error here.
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		if rest, ok := strings.CutPrefix(msg, "line "); ok {
			if n, tail, ok := strings.Cut(rest, ": "); ok {
				if ln, err := strconv.Atoi(n); err == nil {
					return nil, &configError{path, ln, "not valid YAML: " + tail}
				}
			}
		}
		return nil, &configError{path, 1, "not valid YAML: " + msg}
	}
	if len(doc.Content) == 0 {
		return nil, &configError{path, 1, "empty file (want at least interfaces:, see example.yaml)"}
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, &configError{path, root.Line, "want a mapping of settings (interfaces:, routes:, ...) at the top"}
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if p.c.set[k.Value] {
			p.errf(k, "%s given twice", k.Value)
			continue
		}
		p.c.set[k.Value] = true
		p.top(k, v)
	}
	if !p.c.set["interfaces"] {
		p.errs = append(p.errs, &configError{path, root.Line, "no interfaces: (want at least one, e.g. - {name: r0, addresses: [198.18.0.1/24]})"})
	}
	p.checkRoutes()
	if len(p.errs) > 0 {
		return nil, errors.Join(p.errs...)
	}
	return p.c, nil
}

type configParser struct {
	c          *fileConfig
	file       string
	errs       []error
	routeNodes []*yaml.Node
}

func (p *configParser) errf(n *yaml.Node, format string, args ...any) {
	p.errs = append(p.errs, &configError{p.file, n.Line, fmt.Sprintf(format, args...)})
}

func (p *configParser) scalar(k, v *yaml.Node) (string, bool) {
	if v.Kind != yaml.ScalarNode {
		p.errf(v, "%s: want a single value", k.Value)
		return "", false
	}
	return v.Value, true
}

func (p *configParser) top(k, v *yaml.Node) {
	c := p.c
	switch k.Value {
	case "interfaces":
		p.interfaces(v)
	case "routes":
		p.routes(v)
	case "acl":
		p.acl(v)
	case "mode":
		if s, ok := p.scalar(k, v); ok {
			if _, err := poller.ParsePollMode(s); err != nil {
				p.errf(v, "mode: %v", err)
			}
			c.mode = s
		}
	case "idle-spin":
		if s, ok := p.scalar(k, v); ok {
			d, err := time.ParseDuration(s)
			if err != nil || d <= 0 || d > time.Second {
				p.errf(v, "idle-spin %q: want a duration from 1us to 1s, such as 50us", s)
			}
			c.idleSpin = d
		}
	case "queues":
		if s, ok := p.scalar(k, v); ok {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 {
				p.errf(v, "queues %q: want a number of at least 1", s)
			}
			c.queues = n
		}
	case "cpus":
		if s, ok := p.scalar(k, v); ok {
			if _, err := parseCPUList(s); err != nil {
				p.errf(v, "cpus: %v", strings.TrimPrefix(err.Error(), "--"))
			}
			c.cpus = s
		}
	case "bind":
		if s, ok := p.scalar(k, v); ok {
			if _, err := rings.ParseBindMode(s); err != nil {
				p.errf(v, "bind: %v", err)
			}
			c.bind = s
		}
	case "xdp-mode":
		if s, ok := p.scalar(k, v); ok {
			if s != "auto" && s != "native" && s != "generic" {
				p.errf(v, "xdp-mode %q: want auto, native or generic", s)
			}
			c.xdpMode = s
		}
	case "metrics":
		if s, ok := p.scalar(k, v); ok {
			if err := checkListenAddr(s); err != nil {
				p.errf(v, "metrics: %v", err)
			}
			c.metrics = s
		}
	case "pcap":
		c.pcap, _ = p.scalar(k, v)
	case "pcap-hook":
		if s, ok := p.scalar(k, v); ok {
			if _, err := pipeline.ParseHook(s); err != nil {
				p.errf(v, "pcap-hook: %v", err)
			}
			c.pcapHook = s
		}
	case "pcap-size":
		if s, ok := p.scalar(k, v); ok {
			n, err := parseSize(s)
			if err == nil {
				err = checkPcapBounds(n, defaultPcapFiles)
			}
			if err != nil {
				p.errf(v, "pcap-size: %v", strings.TrimPrefix(err.Error(), "--pcap-size "))
			}
			c.pcapSize = n
		}
	case "pcap-files":
		if s, ok := p.scalar(k, v); ok {
			n, err := strconv.Atoi(s)
			if err != nil || n < 1 || n > maxPcapFiles {
				p.errf(v, "pcap-files %q: want a number of files from 1 to %d", s, maxPcapFiles)
			}
			c.pcapFiles = n
		}
	case "stats":
		if s, ok := p.scalar(k, v); ok {
			d, err := time.ParseDuration(s)
			if err != nil || d < 0 {
				p.errf(v, "stats %q: want an interval such as 10s, or 0 for off", s)
			}
			c.stats = d
		}
	case "log-format":
		if s, ok := p.scalar(k, v); ok {
			if s != "text" && s != "json" {
				p.errf(v, "log-format %q: want text or json", s)
			}
			c.logFormat = s
		}
	case "kernel":
		if s, ok := p.scalar(k, v); ok {
			b, err := strconv.ParseBool(s)
			if err != nil {
				p.errf(v, "kernel %q: want true or false", s)
			}
			c.kernel.enabled = b
		}
	case "table":
		if s, ok := p.scalar(k, v); ok {
			n, err := strconv.Atoi(s)
			if err != nil || n < 0 {
				p.errf(v, "table %q: want a routing table number such as 254 (main)", s)
			}
			c.kernel.table = n
		}
	default:
		p.errf(k, "unknown setting %q (want one of %s)", k.Value, strings.Join(configKeys, ", "))
	}
}

func (p *configParser) interfaces(v *yaml.Node) {
	if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
		p.errf(v, "interfaces: want a list, e.g. - {name: r0, addresses: [198.18.0.1/24]}")
		return
	}
	for _, it := range v.Content {
		if it.Kind != yaml.MappingNode {
			p.errf(it, "interface: want name: and addresses:, e.g. {name: r0, addresses: [198.18.0.1/24]}")
			continue
		}
		var spec ifaceSpec
		for i := 0; i+1 < len(it.Content); i += 2 {
			k, val := it.Content[i], it.Content[i+1]
			switch k.Value {
			case "name":
				spec.Name = val.Value
				if val.Kind != yaml.ScalarNode || spec.Name == "" || len(spec.Name) > 15 || strings.ContainsAny(spec.Name, "/ =") {
					p.errf(val, "interface name %q: want an interface name of at most 15 characters", val.Value)
				}
			case "addresses":
				addrs := val.Content
				if val.Kind == yaml.ScalarNode {
					addrs = []*yaml.Node{val}
				}
				for _, a := range addrs {
					pf, err := netip.ParsePrefix(a.Value)
					if a.Kind != yaml.ScalarNode || err != nil || pf.Addr().Is4In6() {
						p.errf(a, "interface address %q is not an IPv4 address with prefix length, e.g. 198.18.0.1/24, nor an IPv6 one, e.g. 2001:2::1/64", a.Value)
						continue
					}
					spec.Addrs = append(spec.Addrs, pf)
				}
			default:
				p.errf(k, "interface: unknown key %q (want name, addresses)", k.Value)
			}
		}
		if spec.Name == "" {
			p.errf(it, "interface without a name:")
			continue
		}
		for _, have := range p.c.ifaces {
			if have.Name == spec.Name {
				p.errf(it, "interface %s listed twice (give all its addresses in one entry)", spec.Name)
			}
		}
		p.c.ifaces = append(p.c.ifaces, spec)
	}
}

func (p *configParser) routes(v *yaml.Node) {
	if v.Kind != yaml.SequenceNode {
		p.errf(v, "routes: want a list, e.g. - {prefix: 198.20.0.0/16, via: 198.19.0.2}")
		return
	}
	seen := map[netip.Prefix]int{}
	for _, it := range v.Content {
		if it.Kind != yaml.MappingNode {
			p.errf(it, "route: want prefix: with via: or type:, e.g. {prefix: 198.20.0.0/16, via: 198.19.0.2}")
			continue
		}
		var r stack.Route
		var pfxText, via, typ string
		var viaNode *yaml.Node
		for i := 0; i+1 < len(it.Content); i += 2 {
			k, val := it.Content[i], it.Content[i+1]
			switch k.Value {
			case "prefix":
				pfxText = val.Value
			case "via":
				via, viaNode = val.Value, val
			case "type":
				typ = val.Value
			case "interface":
				r.Interface = val.Value
			default:
				p.errf(k, "route: unknown key %q (want prefix, via, type, interface)", k.Value)
			}
		}
		name := pfxText
		if name == "default" {
			pfxText = "0.0.0.0/0"
		}
		pfx, err := netip.ParsePrefix(pfxText)
		switch {
		case pfxText == "":
			p.errf(it, "route without a prefix: (want e.g. prefix: 198.20.0.0/16, or default)")
			continue
		case err != nil || pfx.Addr().Is4In6():
			p.errf(it, "route %s: %q is not a prefix such as 198.19.0.0/16, 2001:2:100::/48, default or ::/0", name, name)
			continue
		case pfx != pfx.Masked():
			p.errf(it, "route %s: prefix has host bits set; did you mean %s?", name, pfx.Masked())
			continue
		}
		r.Prefix = pfx
		if line, dup := seen[pfx]; dup {
			p.errf(it, "route %s: given twice (first at line %d)", name, line)
			continue
		}
		seen[pfx] = it.Line
		switch typ {
		case "", "unicast":
			r.Type = stack.Unicast
			if via == "" && r.Interface == "" {
				p.errf(it, "route %s: needs via: NEXTHOP (or type: blackhole/unreachable, or interface:)", name)
				continue
			}
			if via != "" {
				nh, err := netip.ParseAddr(via)
				if err != nil || nh.Is4() != pfx.Addr().Is4() || nh.Is4In6() {
					fam := "IPv4"
					if pfx.Addr().Is6() {
						fam = "IPv6"
					}
					p.errf(viaNode, "route %s: next hop %q is not an %s address", name, via, fam)
					continue
				}
				// A link-local next hop may name its interface as a zone: fe80::1%r1.
				if z := nh.Zone(); z != "" {
					if !nh.IsLinkLocalUnicast() || r.Interface != "" && r.Interface != z {
						p.errf(viaNode, "route %s: next hop %q: a zone names the interface of a link-local next hop (or use interface:)", name, via)
						continue
					}
					r.Interface, nh = z, nh.WithZone("")
				}
				r.NextHop = nh
			}
		case "blackhole", "unreachable":
			if via != "" {
				p.errf(viaNode, "route %s: a %s route has no next hop (remove via:)", name, typ)
				continue
			}
			r.Type = stack.Blackhole
			if typ == "unreachable" {
				r.Type = stack.Unreachable
			}
		default:
			p.errf(it, "route %s: type %q: want unicast, blackhole or unreachable", name, typ)
			continue
		}
		p.c.routes = append(p.c.routes, r)
		p.routeNodes = append(p.routeNodes, it)
	}
}

// checkRoutes checks what the stack would refuse at start or reload, with the route's line: an interface
// that is not configured, a next hop on no connected network. It needs every interface's addresses, so it
// is skipped when one takes them from the kernel.
func (p *configParser) checkRoutes() {
	nets := map[string][]netip.Prefix{}
	for _, ic := range p.c.ifaces {
		if len(ic.Addrs) == 0 {
			return
		}
		nets[ic.Name] = ic.Addrs
	}
	for i, r := range p.c.routes {
		n := p.routeNodes[i]
		if r.Interface != "" {
			if _, ok := nets[r.Interface]; !ok {
				p.errf(n, "route %s: interface %q is not one of the interfaces:", r.Prefix, r.Interface)
				continue
			}
		}
		if !r.NextHop.IsValid() || r.Interface != "" {
			continue
		}
		found := false
		for _, ps := range nets {
			for _, a := range ps {
				if a.Masked().Contains(r.NextHop) {
					found = true
				}
			}
		}
		if !found {
			p.errf(n, "route %s: next hop %s is on none of the interfaces' networks (add interface:, or fix via:)", r.Prefix, r.NextHop)
		}
	}
}

func (p *configParser) acl(v *yaml.Node) {
	if v.Kind != yaml.SequenceNode {
		p.errf(v, "acl: want a list of rules, e.g. - drop udp to any port 53")
		return
	}
	for _, it := range v.Content {
		if it.Kind != yaml.ScalarNode {
			p.errf(it, "acl: want each rule as one line of text, e.g. - drop udp to any port 53")
			continue
		}
		r, err := pipeline.ParseRule(it.Value)
		if err != nil {
			p.errf(it, "acl rule %q: %v", it.Value, err)
			continue
		}
		p.c.acl = append(p.c.acl, r)
	}
	if len(p.c.acl) > 0 {
		if _, err := pipeline.NewACL(p.c.acl); err != nil {
			p.errf(v, "acl: %v", err)
		}
	}
}

// checkListenAddr checks a HOST:PORT to listen on.
func checkListenAddr(s string) error {
	host, port, err := splitHostPort(s)
	if err != nil {
		return err
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("%q: port %q is not a number 0-65535", s, port)
	}
	_ = host
	return nil
}

func splitHostPort(s string) (host, port string, err error) {
	i := strings.LastIndexByte(s, ':')
	if i < 0 {
		return "", "", fmt.Errorf("%q: want HOST:PORT, e.g. 127.0.0.1:%d or :%d", s, defaultMetricsPort, defaultMetricsPort)
	}
	return s[:i], s[i+1:], nil
}

// apply copies the settings of the file that the command line did not give into o. Repeatable flags
// (--iface, --route) replace the file's list as a whole when given at all.
func (c *fileConfig) apply(o *runOptions, onCommandLine map[string]bool) {
	take := func(key string) bool { return c.set[key] && !onCommandLine[key] }
	if take("interfaces") {
		o.ifaces = c.ifaces
	}
	if take("routes") {
		o.fileRoutes = c.routes
	}
	if take("acl") {
		o.acl = c.acl
	}
	if take("mode") {
		o.mode = c.mode
	}
	if take("idle-spin") {
		o.idleSpin = c.idleSpin
	}
	if take("queues") {
		o.queues = c.queues
	}
	if take("cpus") {
		o.cpus = c.cpus
	}
	if take("bind") {
		o.bind = c.bind
	}
	if take("xdp-mode") {
		o.xdpMode = c.xdpMode
	}
	if take("metrics") {
		o.metrics = c.metrics
	}
	if take("pcap") {
		o.pcap = c.pcap
	}
	if take("pcap-hook") {
		o.pcapHook = c.pcapHook
	}
	if take("pcap-size") {
		o.pcapSize = byteSize(c.pcapSize)
	}
	if take("pcap-files") {
		o.pcapFiles = c.pcapFiles
	}
	if take("stats") {
		o.stats = c.stats
	}
	if take("log-format") {
		o.logFormat = c.logFormat
	}
	if take("kernel") {
		o.kernel.enabled = c.kernel.enabled
	}
	if take("table") {
		o.kernel.table = c.kernel.table
	}
}

// flagToKey maps the flags of run to the config keys they override.
var flagToKey = map[string]string{"iface": "interfaces", "route": "routes"}

const checkUsage = `Usage: xdpfwd check --config FILE

Checks a configuration file without touching the system: prints "ok" and exits 0, or prints every
problem as FILE:LINE: message and exits 2.
`

// cmdCheck is `xdpfwd check --config FILE`.
func cmdCheck(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("xdpfwd check", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	path := fs.String("config", "", "the configuration `FILE` to check")
	fs.Usage = func() { fmt.Fprint(fs.Output(), checkUsage); fs.PrintDefaults() }
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if *path == "" && fs.NArg() == 1 {
		*path = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return usagef("unexpected argument %q (see xdpfwd check -h)", fs.Arg(0))
	}
	if *path == "" {
		return usagef("no --config FILE given")
	}
	if _, err := loadConfig(*path); err != nil {
		var ce *configError
		if errors.As(err, &ce) || isJoined(err) {
			for _, line := range strings.Split(err.Error(), "\n") {
				fmt.Fprintln(stderr, line)
			}
			return usageError{errAlreadyReported}
		}
		return usageError{err}
	}
	fmt.Fprintln(stdout, "ok")
	return nil
}

func isJoined(err error) bool {
	_, ok := err.(interface{ Unwrap() []error })
	return ok
}

// errAlreadyReported is a usage error whose text was already printed.
var errAlreadyReported = errors.New("configuration has errors")
