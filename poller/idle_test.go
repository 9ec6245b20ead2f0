package poller

import (
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const us = int64(time.Microsecond)

// feed runs the policy over idle gaps (in us): an idle period starts at some time and traffic arrives gap us
// later. It returns when the last idle period started.
func feed(ip *idlePolicy, gaps ...int64) int64 {
	t := int64(time.Second)
	for _, g := range gaps {
		ip.since = t
		t += g * us
		ip.arrived(t, 50*time.Microsecond)
		t += 10 * us // a packet's worth of work
	}
	ip.since = t
	return t
}

// TestIdlePolicyPeriodic: a flow with a regular gap (a ping every 2 ms) is predicted: the sleep ends a margin
// before the next packet and polling goes on until a margin after it.
func TestIdlePolicyPeriodic(t *testing.T) {
	var ip idlePolicy
	start := feed(&ip, 2000, 2000, 2010, 1990, 2000, 2000, 2005, 1995, 2000, 2000)
	now := start + 50*us // IdleSpin over
	d := ip.predict(now)
	if d == 0 {
		t.Fatalf("no prediction for a 2ms period (gap %v, dev %v)", time.Duration(ip.gap), time.Duration(ip.dev))
	}
	due := start + ip.gap
	if wake := now + int64(d); wake >= due || wake < due-100*us {
		t.Errorf("sleep ends %v before the packet is due, want a margin of 20..100us", time.Duration(due-wake))
	}
	if ip.spinUntil <= due || ip.spinUntil > due+100*us {
		t.Errorf("polling until %v after the due time, want 20..100us", time.Duration(ip.spinUntil-due))
	}
	// Woken a little before the packet: keep polling, do not sleep again.
	if d := ip.predict(due - 5*us); d != 0 || ip.spinUntil <= due-5*us {
		t.Errorf("at the due time: sleep %v, spinUntil in %v; want polling", d, time.Duration(ip.spinUntil-(due-5*us)))
	}
	// The packet did not come: past spinUntil, no prediction (sleep until traffic).
	ip.spinUntil = 0
	if d := ip.predict(due + 200*us); d != 0 || ip.spinUntil != 0 {
		t.Errorf("late packet: sleep %v, spinUntil %d; want no prediction", d, ip.spinUntil)
	}
}

// TestIdlePolicyIrregular: gaps that vary (bursty or random traffic) and gaps too short for the margin are not
// predicted; gaps inside a burst (shorter than IdleSpin) are not learned.
func TestIdlePolicyIrregular(t *testing.T) {
	for _, c := range []struct {
		name string
		gaps []int64
	}{
		{"random", []int64{300, 5000, 900, 12000, 200, 7000, 2500, 400, 9000, 1500}},
		{"too short for the margin", []int64{100, 100, 100, 100, 100, 100, 100, 100}},
		{"few samples", []int64{2000, 2000}},
	} {
		var ip idlePolicy
		start := feed(&ip, c.gaps...)
		if d := ip.predict(start + 50*us); d != 0 || ip.spinUntil != 0 {
			t.Errorf("%s: predicted a sleep of %v (gap %v, dev %v)", c.name, d, time.Duration(ip.gap), time.Duration(ip.dev))
		}
	}
	var ip idlePolicy
	feed(&ip, 10, 20, 30, 40, 10, 20)
	if ip.samples != 0 {
		t.Errorf("learned %d gaps shorter than IdleSpin", ip.samples)
	}
}

// TestCopyTxBudgetVeth: a copy-mode socket gets the TX budget the poller asks for where the kernel has
// XDP_MAX_TX_SKB_BUDGET (Linux 6.17+), so that one sendto sends a whole batch; older kernels keep 32.
func TestCopyTxBudgetVeth(t *testing.T) {
	dut, _, _ := twoHosts(t)
	nh, _ := newRecorder(-1)
	p, stop := startPoller(t, dut, Config{Interfaces: []string{"eth0"}, NewHandler: nh, RingSize: 1024, FramesPerQueue: 4096, Bind: BindCopy})
	defer stop()
	var u unix.Utsname
	unix.Uname(&u)
	var major, minor int
	fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor)
	want := copyTxBudget
	if major < 6 || major == 6 && minor < 17 {
		want = 32
	}
	if got := p.qs[0].ports[0].sock.TxBudget(); got != want {
		t.Errorf("TX budget %d on Linux %d.%d, want %d", got, major, minor, want)
	}
}
