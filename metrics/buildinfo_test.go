package metrics

import (
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
)

func TestBuildFrom(t *testing.T) {
	settings := []debug.BuildSetting{{Key: "vcs.revision", Value: "0123abcd"}, {Key: "vcs.modified", Value: "true"}}
	// xdpfwd: xdpnet is the main module.
	b := buildFrom(&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: modulePath, Version: "v0.3.0"}, Settings: settings})
	if b != (Build{Version: "v0.3.0", GoVersion: "go1.26.8", Revision: "0123abcd", Modified: true}) {
		t.Errorf("main module: %+v", b)
	}
	if s := b.String(); s != "v0.3.0 go1.26.8 commit 0123abcd (modified)" {
		t.Errorf("String() = %q", s)
	}
	// An embedder: xdpnet is a dependency; the commit is the embedder's.
	b = buildFrom(&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "example.com/appliance", Version: "(devel)"},
		Deps: []*debug.Module{{Path: "golang.org/x/sys", Version: "v0.50.0"}, {Path: modulePath, Version: "v0.4.1"}}})
	if b.Version != "v0.4.1" || b.Revision != "" || b.String() != "v0.4.1 go1.26.8" {
		t.Errorf("dependency: %+v %q", b, b.String())
	}
	// Neither: say so rather than report the main module's version as xdpnet's.
	if b = buildFrom(&debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Path: "example.com/x", Version: "v9"}}); b.Version != "unknown" {
		t.Errorf("no xdpnet module: version %q", b.Version)
	}
}

func TestBuildInfoCollector(t *testing.T) {
	text := expose(t, newBuildInfoCollector(Build{Version: "v0.3.0", GoVersion: "go1.26.8", Revision: "0123abcd"}))
	want := `xdpnet_build_info{goversion="go1.26.8",modified="false",revision="0123abcd",version="v0.3.0"} 1` + "\n"
	if !strings.Contains(text, want) {
		t.Errorf("exposition %q lacks %q", text, want)
	}
	// The test binary's own: the running Go version, whatever the module version is.
	if text := expose(t, NewBuildInfoCollector()); !strings.Contains(text, `goversion="`+runtime.Version()+`"`) {
		t.Errorf("build info of the test binary: %q", text)
	}
}
