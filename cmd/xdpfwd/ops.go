package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/xdpnet/xdpnet/pipeline"
	"github.com/xdpnet/xdpnet/poller"
	"github.com/xdpnet/xdpnet/stack"
)

// This file is what `run` needs in deployment: the configuration file, the metrics endpoint and SIGHUP
// reloads of routes and ACL rules. run.go calls into it at four points (flags, config, start, stop).

func addOpsFlags(fs *flag.FlagSet, o *runOptions) {
	fs.StringVar(&o.config, "config", "", "read settings from this YAML `FILE` (see example.yaml; check it with xdpfwd check);\n"+
		"flags given on the command line override the file, SIGHUP reloads its routes and acl")
	fs.StringVar(&o.metrics, "metrics", "", "serve Prometheus metrics (xdpnet_*) at http://`ADDR`/metrics, e.g. 127.0.0.1:9469\n"+
		"(the address xdpfwd stats reads by default); empty: off")
}

// loadConfigFile merges --config into o: the file's settings, except those given on the command line.
func (o *runOptions) loadConfigFile(fs *flag.FlagSet) error {
	if o.config == "" {
		return nil
	}
	fc, err := loadConfig(o.config)
	if err != nil {
		return usageError{err}
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) {
		if k, ok := flagToKey[f.Name]; ok {
			given[k] = true
		} else {
			given[f.Name] = true
		}
	})
	fc.apply(o, given)
	return nil
}

// opsConfig is the deployment part of runConfig.
type opsConfig struct {
	configPath string
	metrics    string
	acl        []pipeline.Rule
	// fileRoutes are the routes the config file gave, which a reload diffs against. routesOwner, when not
	// empty, says who owns the routes instead (--route on the command line, or the kernel in --kernel
	// mode), so a reload leaves them alone.
	fileRoutes  []stack.Route
	routesOwner string
}

func (o *runOptions) opsConfig() opsConfig {
	c := opsConfig{configPath: o.config, metrics: o.metrics, acl: o.acl, fileRoutes: o.fileRoutes}
	switch {
	case o.kernel.enabled:
		c.routesOwner = "--kernel mode follows the kernel's routes"
	case len(o.routes) > 0:
		c.routesOwner = "--route on the command line overrides the file"
	}
	return c
}

// aclSwitch is the forward-hook stage: an indirection to the current ACL, so that a reload swaps the rules
// with one atomic store and the pollers never take a lock. A nil ACL passes everything.
type aclSwitch struct{ cur atomic.Pointer[pipeline.ACL] }

// Process implements pipeline.Stage.
func (s *aclSwitch) Process(b *pipeline.Batch, sel []uint16) {
	if a := s.cur.Load(); a != nil {
		a.Process(b, sel)
	}
}

func (s *aclSwitch) rules() int {
	if a := s.cur.Load(); a != nil {
		return len(a.Rules())
	}
	return 0
}

// ops is the running deployment machinery of one `run`.
type ops struct {
	cfg      opsConfig
	log      *slog.Logger
	sd       *notifier // the service manager, told of reloads; nil: none
	acl      *aclSwitch
	ln       net.Listener
	srv      *http.Server
	hup      chan os.Signal
	wg       sync.WaitGroup
	routes   []stack.Route // the file's routes as applied now
	reloadOK atomic.Uint64
	reloadKO atomic.Uint64
}

// newOps registers the ACL stage at the forward hook (always with --config, so a reload can add rules to a
// router that started without any), opens the metrics listener (so a taken port fails before any XDP
// program is attached) and starts catching SIGHUP (whose default action would kill the router).
func newOps(cfg opsConfig, hooks *pipeline.Hooks, log *slog.Logger, sd *notifier) (*ops, error) {
	o := &ops{cfg: cfg, log: log, sd: sd, acl: new(aclSwitch), routes: cfg.fileRoutes}
	if len(cfg.acl) > 0 {
		a, err := pipeline.NewACL(cfg.acl)
		if err != nil {
			return nil, usagef("acl: %v", err)
		}
		o.acl.cur.Store(a)
	}
	if cfg.configPath != "" || len(cfg.acl) > 0 {
		hooks.Register(pipeline.Forward, 0, "acl", o.acl)
	}
	if cfg.metrics != "" {
		ln, err := net.Listen("tcp", cfg.metrics)
		if err != nil {
			return nil, fmt.Errorf("--metrics: %w (pick a free address, e.g. 127.0.0.1:%d)", err, defaultMetricsPort)
		}
		o.ln = ln
	}
	o.hup = make(chan os.Signal, 1)
	signal.Notify(o.hup, syscall.SIGHUP)
	return o, nil
}

// start serves metrics from p and st and handles SIGHUP until ctx ends.
func (o *ops) start(ctx context.Context, p *poller.Poller, st *stack.Stack, km *kernelMode) {
	if o.ln != nil {
		reg := newRegistry(p, st, opsCollector{func() (uint64, uint64, int) {
			return o.reloadOK.Load(), o.reloadKO.Load(), o.acl.rules()
		}})
		if km != nil {
			reg.MustRegister(mirrorCollector{km.stats})
		}
		mux := http.NewServeMux()
		mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(o.log.Handler(), slog.LevelError)}))
		mux.HandleFunc("/routes", func(w http.ResponseWriter, r *http.Request) { writeRoutes(w, st.Routes()) })
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path != "/" {
				http.NotFound(w, r)
				return
			}
			fmt.Fprintln(w, "xdpfwd: metrics at /metrics, the routing table at /routes")
		})
		o.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		o.log.Info("metrics listening", "addr", o.ln.Addr().String(), "path", "/metrics")
		o.wg.Add(1)
		go func() {
			defer o.wg.Done()
			if err := o.srv.Serve(o.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				o.log.Error("metrics server stopped", "err", err)
			}
		}()
	}
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		for {
			select {
			case <-ctx.Done():
				return
			case <-o.hup:
				o.reload(st)
			}
		}
	}()
}

// close stops the metrics server and the SIGHUP handler; ctx given to start must be done (or start never
// called).
func (o *ops) close() {
	signal.Stop(o.hup)
	if o.srv != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		o.srv.Shutdown(ctx)
		cancel()
	} else if o.ln != nil {
		o.ln.Close()
	}
	o.wg.Wait()
}

// reload re-reads the config file and applies its routes and ACL rules. Nothing changes unless the whole
// file is valid and the new ACL compiles; the other settings (interfaces, queues, metrics, ...) take effect
// only at the next start. The service manager hears RELOADING=1 before and READY=1 after, with the outcome
// as STATUS=.
func (o *ops) reload(st *stack.Stack) {
	if o.cfg.configPath == "" {
		o.log.Warn("SIGHUP ignored: started without --config, nothing to reload")
		return
	}
	o.sd.send(reloading()...)
	added, deleted, rules, err := o.apply(st)
	if err != nil {
		o.reloadKO.Add(1)
		o.log.Error("reload failed, keeping the running configuration", "file", o.cfg.configPath,
			"err", strings.ReplaceAll(err.Error(), "\n", "; "))
		o.sd.send("READY=1", status("reload of %s failed, running the previous configuration: %v", o.cfg.configPath, err))
		return
	}
	o.reloadOK.Add(1)
	o.log.Info("reloaded", "file", o.cfg.configPath, "routes_added", added, "routes_deleted", deleted, "acl_rules", rules)
	o.sd.send("READY=1", status("reloaded %s: %d routes added, %d deleted, %d acl rules", o.cfg.configPath, added, deleted, rules))
}

// apply is reload's work: routes added and deleted (applyRoutes), and the rules of the new ACL.
func (o *ops) apply(st *stack.Stack) (added, deleted, rules int, err error) {
	fc, err := loadConfig(o.cfg.configPath)
	if err != nil {
		return 0, 0, 0, err
	}
	var acl *pipeline.ACL
	if len(fc.acl) > 0 {
		if acl, err = pipeline.NewACL(fc.acl); err != nil {
			return 0, 0, 0, err
		}
	}
	if o.cfg.routesOwner != "" {
		if fc.set["routes"] {
			o.log.Warn("reload: routes: ignored", "why", o.cfg.routesOwner)
		}
	} else {
		if added, deleted, err = applyRoutes(st, o.routes, fc.routes); err != nil {
			return 0, 0, 0, err
		}
		o.routes = fc.routes
	}
	o.acl.cur.Store(acl) // from the next batch on; a batch in flight finishes with the old rules
	return added, deleted, len(fc.acl), nil
}

// applyRoutes moves the table from the routes old to the routes new in one stack.SyncRoutes: all or none.
// Every route is checked before anything changes, so a reload whose second half is bad leaves the running
// table exactly as it was; a changed route switches from old to new in place, never passing through a
// shorter prefix. A prefix new to the file must not already be in the table (a connected route of an
// interface): SyncRoutes would replace it, which a file that never owned it cannot mean. added counts new
// and changed routes, deleted gone and changed ones.
func applyRoutes(st *stack.Stack, old, new []stack.Route) (added, deleted int, err error) {
	oldBy := make(map[netip.Prefix]stack.Route, len(old))
	for _, r := range old {
		oldBy[r.Prefix] = r
	}
	inTable := map[netip.Prefix]bool{}
	for _, r := range st.Routes() {
		inTable[r.Prefix] = true
	}
	newBy := make(map[netip.Prefix]bool, len(new))
	var set []stack.Route
	for _, r := range new {
		newBy[r.Prefix] = true
		was, ok := oldBy[r.Prefix]
		switch {
		case !ok && inTable[r.Prefix]:
			return 0, 0, fmt.Errorf("route %s: the table has a route for this prefix that the file did not add (a connected route?): %w", r.Prefix, stack.ErrRouteExists)
		case !ok:
			set = append(set, r)
			added++
		case was != r:
			set = append(set, r)
			added++
			deleted++
		}
	}
	var del []netip.Prefix
	for _, r := range old {
		if !newBy[r.Prefix] {
			del = append(del, r.Prefix)
			deleted++
		}
	}
	if len(set) == 0 && len(del) == 0 {
		return 0, 0, nil
	}
	if err := st.SyncRoutes(set, del); err != nil {
		return 0, 0, fmt.Errorf("routes (none changed): %w", err)
	}
	return added, deleted, nil
}
