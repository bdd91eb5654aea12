// Package seqnum implements wrap-safe TCP sequence number arithmetic
// (RFC 9293, section 3.4).
//
// A sequence number lives on a circle of size 2^32: a value is "less than"
// another when it lies in the half-circle behind it. Callers never compare raw
// uint32 values; they use Value and Size so that sessions keep working when
// the sequence space wraps, which a long keep-alive connection or a random ISN
// near 2^32 makes routine.
//
// The package is a leaf: it imports nothing of this module, does not allocate
// and is safe for concurrent use (all operations are on values).
package seqnum

// Value is a TCP sequence or acknowledgement number.
type Value uint32

// Size is a distance in the sequence space, such as a segment length or a
// window. Sizes up to 2^31-1 are meaningful for comparisons.
type Size uint32

// LessThan reports whether v comes before w, accounting for wrap-around:
// v < w iff w-v, taken as a signed 32-bit number, is positive. Values
// exactly 2^31 apart are ambiguous (each is less than the other); TCP keeps
// windows far below that.
func (v Value) LessThan(w Value) bool { return int32(v-w) < 0 }

// LessThanEq reports whether v comes before w or equals it.
func (v Value) LessThanEq(w Value) bool { return v == w || v.LessThan(w) }

// InRange reports whether a <= v < b, where [a, b) is a half-open interval
// of the sequence space that is shorter than 2^31.
func (v Value) InRange(a, b Value) bool { return v-a < b-a }

// InWindow reports whether v lies in the window of size s that starts at
// first, i.e. first <= v < first+s.
func (v Value) InWindow(first Value, s Size) bool { return v.InRange(first, first.Add(s)) }

// Add returns v advanced by s, wrapping at 2^32.
func (v Value) Add(s Size) Value { return v + Value(s) }

// Sub returns the distance from w forward to v (v - w), wrapping at 2^32.
// It is meaningful when w.LessThanEq(v).
func (v Value) Sub(w Value) Size { return Size(v - w) }

// UpdateForward advances *v by s.
func (v *Value) UpdateForward(s Size) { *v += Value(s) }

// Max returns whichever of a and b comes later in the sequence space.
func Max(a, b Value) Value {
	if a.LessThan(b) {
		return b
	}
	return a
}

// Min returns whichever of a and b comes earlier in the sequence space.
func Min(a, b Value) Value {
	if a.LessThan(b) {
		return a
	}
	return b
}

// Overlap returns how many bytes of the segment [seq, seq+n) lie before
// edge, clamped to [0, n]. It is the number of bytes a receiver whose next
// expected sequence number is edge has already seen.
func Overlap(seq Value, n Size, edge Value) Size {
	if edge.LessThanEq(seq) {
		return 0
	}
	d := edge.Sub(seq)
	if d > n {
		return n
	}
	return d
}
