package streamhash

import (
	"bytes"
	"math/big"
	"math/rand/v2"
	"testing"
)

// refSum is H(b) computed with big integers, straight from the definition.
func refSum(b []byte) uint64 {
	p := new(big.Int).SetUint64(P)
	x := new(big.Int).SetUint64(base)
	h := new(big.Int)
	for _, c := range b {
		h.Mul(h, x)
		h.Add(h, new(big.Int).SetUint64(uint64(c)))
		h.Mod(h, p)
	}
	return h.Uint64()
}

func TestMulAgainstBig(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	p := new(big.Int).SetUint64(P)
	edge := []uint64{0, 1, 2, P - 1, P - 2, 1 << 60, 1<<61 - 2, 0x1fff_ffff_ffff_fffe}
	for i := range 20000 {
		var a, b uint64
		if i < len(edge)*len(edge) {
			a, b = edge[i/len(edge)], edge[i%len(edge)]
		} else {
			a, b = r.Uint64N(P), r.Uint64N(P)
		}
		want := new(big.Int).Mul(new(big.Int).SetUint64(a), new(big.Int).SetUint64(b))
		want.Mod(want, p)
		if got := mul(a, b); got != want.Uint64() {
			t.Fatalf("mul(%#x, %#x) = %#x, want %#x", a, b, got, want.Uint64())
		}
	}
}

func TestSumMatchesDefinition(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
	}{
		{"empty", nil},
		{"one byte", []byte{0xff}},
		{"http head", []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello")},
		{"zeros", make([]byte, 1000)},
		{"ones", bytes.Repeat([]byte{0xff}, 3000)},
	}
	for _, tt := range tests {
		if got, want := Sum(tt.b), refSum(tt.b); got != want {
			t.Errorf("%s: Sum = %#x, want %#x", tt.name, got, want)
		}
	}
}

// TestPieces: the hash of a stream cut anywhere is the combination of the
// hashes of its pieces, and a piece's hash is recovered from the whole and
// the rest.
func TestPieces(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for range 500 {
		a := make([]byte, r.IntN(3000))
		b := make([]byte, r.IntN(70000))
		for i := range a {
			a[i] = byte(r.Uint32())
		}
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		whole := Sum(append(append([]byte(nil), a...), b...))
		if got := Combine(Sum(a), Sum(b), len(b)); got != whole {
			t.Fatalf("Combine over %d+%d bytes = %#x, want %#x", len(a), len(b), got, whole)
		}
		if got := Update(Sum(a), b); got != whole {
			t.Fatalf("Update = %#x, want %#x", got, whole)
		}
		if got := Cut(whole, Sum(a), len(b)); got != Sum(b) {
			t.Fatalf("Cut = %#x, want %#x", got, Sum(b))
		}
	}
}

// TestDetectsSmallChanges: one changed byte, two swapped bytes, a byte
// moved, a zero appended: all change the hash.
func TestDetectsSmallChanges(t *testing.T) {
	b := []byte(`{"id":12345,"name":"alice","items":[1,2,3],"total":99.50}` + string(bytes.Repeat([]byte("padding "), 200)))
	h := Sum(b)
	seen := map[uint64]string{}
	for i := range b {
		c := bytes.Clone(b)
		c[i] ^= 1
		if Sum(c) == h {
			t.Fatalf("flipping a bit of byte %d keeps the hash", i)
		}
		for j := i + 1; j < len(b); j += 61 {
			if b[i] == b[j] {
				continue
			}
			s := bytes.Clone(b)
			s[i], s[j] = s[j], s[i]
			hs := Sum(s)
			if hs == h {
				t.Fatalf("swapping bytes %d and %d keeps the hash", i, j)
			}
			seen[hs] = ""
		}
	}
	if Sum(append(bytes.Clone(b), 0)) == h || Sum(b[1:]) == Sum(b[:len(b)-1]) {
		t.Errorf("a trailing zero or a shift keeps the hash")
	}
}

func TestNoAllocs(t *testing.T) {
	b := make([]byte, 1448)
	if n := testing.AllocsPerRun(100, func() {
		h := Sum(b)
		h = Combine(h, Sum(b[:100]), 100)
		_ = Cut(h, 7, 100)
	}); n != 0 {
		t.Errorf("%v allocations", n)
	}
}

func FuzzPieces(f *testing.F) {
	f.Add([]byte("HTTP/1.1 200 OK\r\n\r\n"), 5)
	f.Add([]byte{}, 0)
	f.Fuzz(func(t *testing.T, b []byte, cut int) {
		if len(b) == 0 {
			cut = 0
		} else {
			cut = (cut%(len(b)+1) + len(b) + 1) % (len(b) + 1)
		}
		a, rest := b[:cut], b[cut:]
		if Combine(Sum(a), Sum(rest), len(rest)) != Sum(b) || Cut(Sum(b), Sum(a), len(rest)) != Sum(rest) {
			t.Fatalf("pieces of %q at %d do not add up", b, cut)
		}
		if len(b) < 200 && Sum(b) != refSum(b) {
			t.Fatalf("Sum(%q) differs from the definition", b)
		}
	})
}

func BenchmarkSum(b *testing.B) {
	buf := make([]byte, 1448)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	for b.Loop() {
		Sum(buf)
	}
}

func BenchmarkCombine(b *testing.B) {
	b.ReportAllocs()
	h := uint64(1)
	for b.Loop() {
		h = Combine(h, 12345, 1448)
	}
}
