package caps

import (
	"os"
	"testing"
)

func TestEffective(t *testing.T) {
	s, err := Effective()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 && !s.Has(NetAdmin) {
		t.Errorf("root without CAP_NET_ADMIN? CapEff %#x", uint64(s))
	}
	if Set(1<<BPF).Has(NetAdmin) || !Set(1<<BPF).Has(BPF) {
		t.Error("Has reads the wrong bit")
	}
}
