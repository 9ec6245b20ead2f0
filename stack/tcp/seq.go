package tcp

// Seq is a TCP sequence number. RFC 9293 §3.4: "It is essential to remember that the actual sequence number
// space is finite, though very large ... all arithmetic dealing with sequence numbers must be performed
// modulo 2**32". Comparisons are therefore made on the signed 32-bit difference, which is correct as long
// as the two numbers are less than 2^31 apart (the window is at most 2^30, RFC 7323 §2.3).
type Seq uint32

// LessThan reports s < t modulo 2^32.
func (s Seq) LessThan(t Seq) bool { return int32(s-t) < 0 }

// LessEq reports s <= t modulo 2^32.
func (s Seq) LessEq(t Seq) bool { return int32(s-t) <= 0 }

// GreaterThan reports s > t modulo 2^32.
func (s Seq) GreaterThan(t Seq) bool { return int32(s-t) > 0 }

// GreaterEq reports s >= t modulo 2^32.
func (s Seq) GreaterEq(t Seq) bool { return int32(s-t) >= 0 }

// Add returns s + n modulo 2^32.
func (s Seq) Add(n uint32) Seq { return s + Seq(n) }

// Sub returns the distance from t to s (s - t) modulo 2^32; meaningful when t <= s.
func (s Seq) Sub(t Seq) uint32 { return uint32(s - t) }

// InRange reports lo <= s < hi modulo 2^32 (an empty range when lo == hi).
func (s Seq) InRange(lo, hi Seq) bool { return uint32(s-lo) < uint32(hi-lo) }

// InWindow reports lo <= s < lo+wnd modulo 2^32.
func (s Seq) InWindow(lo Seq, wnd uint32) bool { return uint32(s-lo) < wnd }

func seqMax(a, b Seq) Seq {
	if a.LessThan(b) {
		return b
	}
	return a
}

func seqMin(a, b Seq) Seq {
	if a.LessThan(b) {
		return a
	}
	return b
}
