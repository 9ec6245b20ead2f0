package xdpprog

import (
	"errors"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/asm"
	"golang.org/x/sys/unix"
)

func TestModeString(t *testing.T) {
	for m, want := range map[Mode]string{ModeAuto: "auto", ModeNative: "native", ModeGeneric: "generic", Mode(7): "Mode(7)"} {
		if got := m.String(); got != want {
			t.Errorf("Mode(%d).String() = %q, want %q", int(m), got, want)
		}
	}
}

// The listing is the program: check it instruction by instruction, so that an edit that, say, reads the wrong
// xdp_md field or passes XDP_DROP as the miss action fails here before it reaches a verifier.
func TestRedirectInstructions(t *testing.T) {
	insns := redirectInstructions()
	if len(insns) != 5 {
		t.Fatalf("%d instructions, want 5:\n%v", len(insns), insns)
	}
	ld := insns[0]
	if ld.OpCode != asm.LoadMemOp(asm.Word) || ld.Dst != asm.R2 || ld.Src != asm.R1 || ld.Offset != 16 {
		t.Errorf("insn 0 = %v, want R2 = *(u32 *)(R1 + 16) (ctx->rx_queue_index)", ld)
	}
	if ld.Symbol() != redirectProgName {
		t.Errorf("insn 0 symbol = %q, want %q", ld.Symbol(), redirectProgName)
	}
	if m := insns[1]; !m.IsLoadFromMap() || m.Dst != asm.R1 || m.Reference() != xsksSymbol {
		t.Errorf("insn 1 = %v, want R1 = map %q", m, xsksSymbol)
	}
	if f := insns[2]; f.OpCode != asm.Mov.Op(asm.ImmSource) || f.Dst != asm.R3 || f.Constant != 2 {
		t.Errorf("insn 2 = %v, want R3 = 2 (XDP_PASS on a miss)", f)
	}
	if c := insns[3]; !c.IsBuiltinCall() || asm.BuiltinFunc(c.Constant) != asm.FnRedirectMap {
		t.Errorf("insn 3 = %v, want call bpf_redirect_map", c)
	}
	if r := insns[4]; r.OpCode != asm.Return().OpCode {
		t.Errorf("insn 4 = %v, want exit", r)
	}
	t.Logf("redirect program:\n%v", insns)
}

func TestErrorMessages(t *testing.T) {
	perm := wrapErr("eth0", "load program", fmt.Errorf("load program: %w", unix.EPERM))
	if got, want := perm.Error(), "attach XDP program to eth0: operation not permitted (run as root or grant CAP_NET_ADMIN and CAP_BPF)"; got != want {
		t.Errorf("EPERM message = %q, want %q", got, want)
	}
	if !errors.Is(perm, os.ErrPermission) || !errors.Is(perm, unix.EPERM) {
		t.Errorf("EPERM error %v does not unwrap to os.ErrPermission", perm)
	}
	other := wrapErr("eth0", "create XSKMAP", unix.ENOMEM)
	if !errors.Is(other, unix.ENOMEM) || !strings.Contains(other.Error(), "eth0: create XSKMAP") {
		t.Errorf("wrapped error = %v", other)
	}

	legacy := &AttachedError{Ifname: "eth0", Ifindex: 2, ProgramID: 42}
	if got, want := legacy.Error(), "attach XDP program to eth0: eth0 already has XDP program id 42 attached; detach it with `ip link set dev eth0 xdp off` or pass Replace"; got != want {
		t.Errorf("legacy message = %q, want %q", got, want)
	}
	legacy.Generic = true
	if !strings.Contains(legacy.Error(), "`ip link set dev eth0 xdpgeneric off`") {
		t.Errorf("generic-mode message %q lacks xdpgeneric off", legacy.Error())
	}
	linked := &AttachedError{Ifname: "eth0", ProgramID: 42, ViaLink: true, LinkID: 9}
	if m := linked.Error(); !strings.Contains(m, "program id 42") || !strings.Contains(m, "bpf_link id 9") || strings.Contains(m, "ip link set") {
		t.Errorf("link message = %q", m)
	}
	if !errors.Is(fmt.Errorf("x: %w", linked), ErrAlreadyAttached) {
		t.Error("AttachedError does not match ErrAlreadyAttached")
	}
}

func TestAttachRejectsBadOptions(t *testing.T) {
	if _, err := Attach(1, Options{Mode: Mode(9)}); err == nil || !strings.Contains(err.Error(), "invalid mode") {
		t.Errorf("Attach with Mode(9) = %v, want invalid mode", err)
	}
}

func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("XDPNET_REQUIRE_PRIV") == "1" {
		tb.Fatal("needs root for bpf(2); XDPNET_REQUIRE_PRIV=1 forbids skipping")
	}
	tb.Skip("needs root for bpf(2)")
}

// loadRedirect loads the program with an empty XSKMAP, without attaching it anywhere.
func loadRedirect(tb testing.TB, queues int) *ebpf.Program {
	tb.Helper()
	requireRoot(tb)
	if err := removeMemlock(); err != nil {
		tb.Fatal(err)
	}
	xsks, err := ebpf.NewMap(xsksSpec(queues))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { xsks.Close() })
	spec, err := redirectSpec(xsks)
	if err != nil {
		tb.Fatal(err)
	}
	prog, err := ebpf.NewProgram(spec)
	if err != nil {
		tb.Fatalf("verifier rejected the redirect program: %v", err)
	}
	tb.Cleanup(func() { prog.Close() })
	return prog
}

// testFrame is an Ethernet + IPv4 + UDP frame (198.18.0.1:1000 -> 198.18.0.2:2000, 4 bytes "ping"); the
// program does not parse it, BPF_PROG_TEST_RUN only needs a real-sized frame.
var testFrame = []byte{
	0x02, 0, 0, 0, 0, 0x02, 0x02, 0, 0, 0, 0, 0x01, 0x08, 0x00, // Ethernet, type IPv4
	0x45, 0, 0, 32, 0, 0, 0x40, 0, 64, 17, 0xd1, 0xb6, 198, 18, 0, 1, 198, 18, 0, 2, // IPv4, UDP
	0x03, 0xe8, 0x07, 0xd0, 0, 12, 0, 0, 'p', 'i', 'n', 'g', // UDP
}

// BPF_PROG_TEST_RUN: with the slot empty the program must return XDP_PASS.
func TestRedirectProgramPassesOnEmptySlot(t *testing.T) {
	prog := loadRedirect(t, 4)
	ret, err := prog.Run(&ebpf.RunOptions{Data: testFrame})
	if err != nil {
		t.Fatalf("test run: %v", err)
	}
	if ret != xdpPass {
		t.Fatalf("program returned %d on an empty XSKMAP slot, want XDP_PASS (%d)", ret, xdpPass)
	}
}

// BenchmarkRedirectProgram measures the program itself in the kernel (BPF_PROG_TEST_RUN, empty slot): the
// per-packet cost xdpnet adds in front of the stack. All b.N runs happen in one bpf(2) call, so ns/op is the
// kernel time plus one syscall spread over b.N; kernel-ns/run is the kernel's own average.
func BenchmarkRedirectProgram(b *testing.B) {
	prog := loadRedirect(b, 4)
	b.ReportAllocs()
	b.ResetTimer()
	ret, per, err := prog.Benchmark(testFrame, b.N, nil)
	if err != nil {
		b.Fatal(err)
	}
	if ret != xdpPass {
		b.Fatalf("returned %d, want XDP_PASS", ret)
	}
	b.ReportMetric(float64(per.Nanoseconds()), "kernel-ns/run")
}
