package poller

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/xdpnet/xdpnet/internal/netlab"
	"github.com/xdpnet/xdpnet/rings"
	"github.com/xdpnet/xdpnet/umem"
)

const childEnv = "XDPNET_POLLER_NOPRIV_CHILD"

// TestNoPrivilegesChild runs this test binary again as an unprivileged user with every capability dropped
// (setpriv) and checks, in the child, that opening an AF_XDP socket fails with an error saying which
// privileges to get.
func TestNoPrivilegesChild(t *testing.T) {
	if os.Getenv(childEnv) == "1" {
		area, err := umem.New(umem.Options{Frames: 16, FrameSize: 2048})
		if err != nil {
			t.Fatal(err)
		}
		defer area.Close()
		_, err = rings.Open(rings.Config{Ifname: "lo", Ifindex: 1, Queue: 0, Area: area,
			FillSize: 16, CompSize: 16, RxSize: 16, TxSize: 16})
		if !errors.Is(err, rings.ErrPermission) {
			t.Fatalf("unprivileged Open: %v, want ErrPermission", err)
		}
		for _, s := range []string{"run as root", "CAP_NET_ADMIN", "CAP_BPF", "CAP_NET_RAW", "CAP_IPC_LOCK"} {
			if !strings.Contains(err.Error(), s) {
				t.Fatalf("%q does not say %q", err, s)
			}
		}
		nh, _ := newRecorder(-1)
		_, err = New(Config{Interfaces: []string{"lo"}, NewHandler: nh, RingSize: 64, FramesPerQueue: 1024})
		if err == nil || !strings.Contains(err.Error(), "CAP_NET_ADMIN") {
			t.Fatalf("unprivileged New: %v, want a message naming the capabilities", err)
		}
		t.Logf("unprivileged errors: %v", err)
		return
	}
	netlab.RequirePrivileges(t)
	setpriv := netlab.RequireTool(t, "setpriv")
	cmd := exec.Command(setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", "--bounding-set=-all",
		os.Args[0], "-test.run=^TestNoPrivilegesChild$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "PASS") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
