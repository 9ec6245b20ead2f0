package proto

import (
	"bytes"
	"testing"
)

func TestNextIPv4Option(t *testing.T) {
	// NOP, Record Route (length 7), LSRR (length 3), End, padding.
	o := []byte{IPv4OptNOP, IPv4OptRR, 7, 4, 0, 0, 0, 0, IPv4OptLSRR, 3, 4, IPv4OptEnd, 0}
	var got []uint8
	for rest := o; len(rest) > 0; {
		typ, opt, r, ok := NextIPv4Option(rest)
		if !ok {
			t.Fatalf("valid options refused at %x", rest)
		}
		if typ == IPv4OptEnd {
			break
		}
		if opt[0] != typ {
			t.Fatalf("option bytes %x do not start with type %d", opt, typ)
		}
		got = append(got, typ)
		rest = r
	}
	if !bytes.Equal(got, []byte{IPv4OptNOP, IPv4OptRR, IPv4OptLSRR}) {
		t.Fatalf("walked %v", got)
	}
	if !IPv4OptionCopied(IPv4OptLSRR) || IPv4OptionCopied(IPv4OptRR) {
		t.Error("copied flag wrong")
	}
	for _, bad := range [][]byte{{IPv4OptRR}, {IPv4OptRR, 1}, {IPv4OptRR, 9, 0}} {
		if _, _, rest, ok := NextIPv4Option(bad); ok || len(rest) != 0 {
			t.Errorf("malformed %x accepted", bad)
		}
	}
}
