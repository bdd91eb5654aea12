// Package streamhash is a checksum of byte streams that can be computed in
// pieces: the hash of a stream is derived from the hashes and lengths of
// its parts, in order, whatever the cut points, and the hash of a part is
// derived from the hash of the whole and of the rest. intercept hashes each
// captured response segment; tcpcopy combines them into the hash of a
// whole response and takes the headers off to get the body's hash, then
// compares it with the hash of the online server's response, which it cut
// into other segments.
//
// The hash of bytes b[0..n) is the polynomial
//
//	H(b) = b[0]·x^(n-1) + b[1]·x^(n-2) + ... + b[n-1]   (mod p)
//
// with p = 2^61 − 1 (a Mersenne prime: reduction is a shift and an add) and
// x a fixed base, the same in every process (both ends of a comparison must
// agree). Then H(a‖b) = H(a)·x^len(b) + H(b). Two different byte strings of
// length up to n collide with probability at most n/p for a base chosen at
// random, about 2^-45 for a 64 KiB segment: strong enough to tell whether
// two responses differ, not meant to resist someone crafting collisions.
//
// Sum costs a 64-bit multiplication and eight table lookups per eight
// bytes (about 1 GB/s); Combine and Cut about 2·log2(n) multiplications.
// Nothing allocates.
package streamhash

import "math/bits"

// P is the modulus, 2^61 − 1.
const P = 1<<61 - 1

// base is x: a fixed odd constant below P (the first 61 bits of the
// fractional part of the golden ratio).
const base = 0x9e3779b97f4a7c1 & P

// mul returns a·b mod P for a, b < P.
func mul(a, b uint64) uint64 {
	hi, lo := bits.Mul64(a, b)
	// a·b = hi·2^64 + lo ≡ hi·8 + lo>>61 + (lo & P), since 2^61 ≡ 1; with
	// hi < 2^58 the first two terms are at most P, the sum at most 2P.
	r := (hi<<3 | lo>>61) + lo&P
	r = r&P + r>>61
	if r >= P {
		r -= P
	}
	return r
}

// add returns a+b mod P for a, b < P.
func add(a, b uint64) uint64 {
	r := a + b
	if r >= P {
		r -= P
	}
	return r
}

// pow2 holds x^(2^i) mod P.
var pow2 [64]uint64

// x8 is x^8; byteTab[k][c] is c·x^(7-k), the contribution of byte c at
// position k of an 8-byte block (Update).
var (
	x8      uint64
	byteTab [8][256]uint64
)

func init() {
	pow2[0] = base
	for i := 1; i < len(pow2); i++ {
		pow2[i] = mul(pow2[i-1], pow2[i-1])
	}
	x8 = pow2[3]
	for k := range 8 {
		xk := xPow(uint64(7 - k))
		for c := range 256 {
			byteTab[k][c] = mul(uint64(c), xk)
		}
	}
}

// reduce returns r mod P for any r.
func reduce(r uint64) uint64 {
	r = r&P + r>>61
	r = r&P + r>>61
	if r >= P {
		r -= P
	}
	return r
}

// xPow returns x^n mod P.
func xPow(n uint64) uint64 {
	r := uint64(1)
	for i := 0; n != 0; i, n = i+1, n>>1 {
		if n&1 != 0 {
			r = mul(r, pow2[i])
		}
	}
	return r
}

// Sum returns the hash of b.
func Sum(b []byte) uint64 { return Update(0, b) }

// Update returns the hash of a‖b given h = H(a). It takes 8 bytes a step:
// h·x^8 plus the block's own polynomial, whose terms come from byteTab
// and do not wait for h, so one multiplication per 8 bytes is on the
// dependency chain.
func Update(h uint64, b []byte) uint64 {
	for len(b) >= 8 {
		in := byteTab[0][b[0]] + byteTab[1][b[1]] + byteTab[2][b[2]] + byteTab[3][b[3]] +
			byteTab[4][b[4]] + byteTab[5][b[5]] + byteTab[6][b[6]] + byteTab[7][b[7]] // < 8P
		h = add(mul(h, x8), reduce(in))
		b = b[8:]
	}
	for _, c := range b {
		h = add(mul(h, base), uint64(c))
	}
	return h
}

// Combine returns H(a‖b) from ha = H(a), hb = H(b) and n = len(b).
func Combine(ha, hb uint64, n int) uint64 {
	return add(mul(ha, xPow(uint64(n))), hb)
}

// Cut returns H(b) from hab = H(a‖b), ha = H(a) and n = len(b): the hash
// of the rest of a stream whose start is known (a response's body, given
// the hash of the whole response and its header bytes).
func Cut(hab, ha uint64, n int) uint64 {
	t := mul(ha, xPow(uint64(n)))
	return add(hab, P-t)
}
