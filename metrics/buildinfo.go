package metrics

import (
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// modulePath is xdpnet's module, whose version BuildInfo reports.
const modulePath = "github.com/xdpnet/xdpnet"

// Build describes the running binary, as `go version -m` shows it.
type Build struct {
	// Version is xdpnet's module version: a release tag, a pseudo-version, or "(devel)" for a build in the
	// module's own tree (go build without -buildvcs stamping a tag).
	Version string
	// GoVersion is the toolchain that built the binary (go1.26.8).
	GoVersion string
	// Revision is the VCS commit of the main module, "" when the build had no VCS information (go build
	// -buildvcs=false, or outside a repository); Modified says the tree had uncommitted changes.
	Revision string
	Modified bool
}

// BuildInfo reads the running binary's build information. In xdpfwd xdpnet is the main module; in an
// embedder's program it is a dependency, and Revision is the embedder's commit.
func BuildInfo() Build {
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return Build{Version: "unknown", GoVersion: "unknown"}
	}
	return buildFrom(bi)
}

func buildFrom(bi *debug.BuildInfo) Build {
	b := Build{Version: "unknown", GoVersion: bi.GoVersion}
	if bi.Main.Path == modulePath {
		b.Version = bi.Main.Version
	}
	for _, d := range bi.Deps {
		if d.Path == modulePath {
			b.Version = d.Version
			if d.Replace != nil && d.Replace.Version != "" {
				b.Version = d.Replace.Version
			}
		}
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			b.Revision = s.Value
		case "vcs.modified":
			b.Modified = s.Value == "true"
		}
	}
	return b
}

// String is one line for a version command: "(devel) go1.26.8 commit 0d72882... (modified)".
func (b Build) String() string {
	s := b.Version + " " + b.GoVersion
	if b.Revision != "" {
		s += " commit " + b.Revision
		if b.Modified {
			s += " (modified)"
		}
	}
	return s
}

// NewBuildInfoCollector returns the gauge xdpnet_build_info, always 1, whose labels carry BuildInfo: version,
// goversion, revision and modified - the idiom of Prometheus' own *_build_info, so that a query can join any
// series with the version that produced it.
func NewBuildInfoCollector() prometheus.Collector {
	return newBuildInfoCollector(BuildInfo())
}

func newBuildInfoCollector(b Build) prometheus.Collector {
	modified := "false"
	if b.Modified {
		modified = "true"
	}
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Namespace: Namespace, Name: "build_info",
		Help:        "Build information of the running binary: xdpnet's module version, the Go version and the VCS commit; always 1.",
		ConstLabels: prometheus.Labels{"version": b.Version, "goversion": b.GoVersion, "revision": b.Revision, "modified": modified},
	})
	g.Set(1)
	return g
}
