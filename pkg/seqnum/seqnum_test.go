package seqnum

import (
	"math"
	"testing"
)

func TestLessThan(t *testing.T) {
	tests := []struct {
		name string
		v, w Value
		want bool
	}{
		{"equal", 5, 5, false},
		{"plain less", 5, 6, true},
		{"plain greater", 6, 5, false},
		{"across wrap", math.MaxUint32 - 10, 10, true},
		{"across wrap reversed", 10, math.MaxUint32 - 10, false},
		{"zero after max", math.MaxUint32, 0, true},
		{"half circle minus one", 0, 1<<31 - 1, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.v.LessThan(tt.w); got != tt.want {
				t.Errorf("%d.LessThan(%d) = %v, want %v", tt.v, tt.w, got, tt.want)
			}
			if got, want := tt.v.LessThanEq(tt.w), tt.want || tt.v == tt.w; got != want {
				t.Errorf("%d.LessThanEq(%d) = %v, want %v", tt.v, tt.w, got, want)
			}
		})
	}
}

func TestInWindow(t *testing.T) {
	tests := []struct {
		name  string
		v     Value
		first Value
		size  Size
		want  bool
	}{
		{"start", 100, 100, 10, true},
		{"last", 109, 100, 10, true},
		{"end excluded", 110, 100, 10, false},
		{"before", 99, 100, 10, false},
		{"empty window", 100, 100, 0, false},
		{"wrapping window inside high", math.MaxUint32, math.MaxUint32 - 5, 10, true},
		{"wrapping window inside low", 3, math.MaxUint32 - 5, 10, true},
		{"wrapping window past end", 4, math.MaxUint32 - 5, 10, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.v.InWindow(tt.first, tt.size); got != tt.want {
				t.Errorf("%d.InWindow(%d, %d) = %v, want %v", tt.v, tt.first, tt.size, got, tt.want)
			}
		})
	}
}

func TestAddSubWrap(t *testing.T) {
	v := Value(math.MaxUint32 - 1)
	w := v.Add(5)
	if w != 3 {
		t.Fatalf("Add across wrap = %d, want 3", w)
	}
	if got := w.Sub(v); got != 5 {
		t.Errorf("Sub across wrap = %d, want 5", got)
	}
	v.UpdateForward(5)
	if v != w {
		t.Errorf("UpdateForward = %d, want %d", v, w)
	}
	if got := Max(math.MaxUint32, 2); got != 2 {
		t.Errorf("Max across wrap = %d, want 2", got)
	}
	if got := Min(math.MaxUint32, 2); got != math.MaxUint32 {
		t.Errorf("Min across wrap = %d, want %d", got, uint32(math.MaxUint32))
	}
}

func TestOverlap(t *testing.T) {
	tests := []struct {
		name string
		seq  Value
		n    Size
		edge Value
		want Size
	}{
		{"all new", 100, 10, 100, 0},
		{"edge behind", 100, 10, 50, 0},
		{"partly seen", 100, 10, 104, 4},
		{"all seen", 100, 10, 110, 10},
		{"edge far ahead", 100, 10, 1000, 10},
		{"across wrap", math.MaxUint32 - 1, 10, 2, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Overlap(tt.seq, tt.n, tt.edge); got != tt.want {
				t.Errorf("Overlap(%d, %d, %d) = %d, want %d", tt.seq, tt.n, tt.edge, got, tt.want)
			}
		})
	}
}

// FuzzOrder checks that LessThan is a strict order on any window of the
// circle shorter than 2^31: antisymmetric, and consistent with Add/Sub.
func FuzzOrder(f *testing.F) {
	f.Add(uint32(0), uint32(1))
	f.Add(uint32(math.MaxUint32), uint32(7))
	f.Fuzz(func(t *testing.T, a, d uint32) {
		d &= 1<<31 - 1
		v := Value(a)
		w := v.Add(Size(d))
		if d > 0 && (!v.LessThan(w) || w.LessThan(v)) {
			t.Fatalf("%d+%d: order broken", a, d)
		}
		if got := w.Sub(v); got != Size(d) {
			t.Fatalf("(%d+%d)-%d = %d", a, d, a, got)
		}
	})
}
