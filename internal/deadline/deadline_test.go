package deadline

import (
	"testing"
	"time"
)

func expired(d *Deadline) bool {
	select {
	case <-d.Done():
		return true
	default:
		return false
	}
}

func TestDeadline(t *testing.T) {
	var d Deadline
	d.Init()
	if expired(&d) {
		t.Fatal("expired with no deadline")
	}
	d.Set(time.Now().Add(-time.Second))
	if !expired(&d) {
		t.Fatal("past deadline not expired")
	}
	d.Set(time.Time{})
	if expired(&d) {
		t.Fatal("cleared deadline still expired")
	}
	d.Set(time.Now().Add(20 * time.Millisecond))
	if expired(&d) {
		t.Fatal("future deadline expired at once")
	}
	select {
	case <-d.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("deadline never passed")
	}
	d.Set(time.Now().Add(time.Hour)) // re-arm after expiry
	if expired(&d) {
		t.Fatal("re-armed deadline still expired")
	}
	d.Set(time.Now().Add(time.Hour)) // replace a pending timer
	d.Set(time.Time{})
	if expired(&d) {
		t.Fatal("cleared pending deadline expired")
	}
}
