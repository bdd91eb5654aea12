package ipmangle

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// Sum returns the RFC 1071 one's complement sum of b, added to initial and
// folded to 16 bits (the result is at most 0xffff). It is neither
// complemented nor byte-swapped.
//
// Sums chain: Sum(b2, Sum(b1, init)) == Sum(append(b1, b2...), init) as long
// as b1 has an even length (the 16-bit word boundaries must not shift).
// initial may be any uint32, for example a [PseudoHeaderChecksum].
//
// Sum reads 8 bytes per step with end-around carry (RFC 1071 §4.1 with
// 64-bit words, which fold to the same 16-bit sum); it does not allocate.
func Sum(b []byte, initial uint32) uint32 {
	ac := uint64(initial)
	var carry uint64
	for len(b) >= 32 {
		ac, carry = bits.Add64(ac, binary.BigEndian.Uint64(b[0:8]), carry)
		ac, carry = bits.Add64(ac, binary.BigEndian.Uint64(b[8:16]), carry)
		ac, carry = bits.Add64(ac, binary.BigEndian.Uint64(b[16:24]), carry)
		ac, carry = bits.Add64(ac, binary.BigEndian.Uint64(b[24:32]), carry)
		b = b[32:]
	}
	for len(b) >= 8 {
		ac, carry = bits.Add64(ac, binary.BigEndian.Uint64(b[0:8]), carry)
		b = b[8:]
	}
	if len(b) >= 4 {
		ac, carry = bits.Add64(ac, uint64(binary.BigEndian.Uint32(b[0:4])), carry)
		b = b[4:]
	}
	if len(b) >= 2 {
		ac, carry = bits.Add64(ac, uint64(binary.BigEndian.Uint16(b[0:2])), carry)
		b = b[2:]
	}
	if len(b) == 1 {
		// RFC 1071 §4.1: a trailing odd byte is padded with a zero byte.
		ac, carry = bits.Add64(ac, uint64(b[0])<<8, carry)
	}
	ac, carry = bits.Add64(ac, 0, carry)
	ac += carry // ac wrapped to 0 if carry is set here, so this cannot overflow.
	return uint32(fold64(ac))
}

// fold64 folds a 64-bit one's complement sum to 16 bits.
func fold64(s uint64) uint16 {
	s = (s >> 32) + (s & 0xffffffff) // <= 0x1_ffff_fffe
	s = (s >> 32) + (s & 0xffffffff) // <= 0xffff_ffff
	return fold32(uint32(s))
}

// fold32 folds a 32-bit one's complement sum to 16 bits.
func fold32(s uint32) uint16 {
	s = (s >> 16) + (s & 0xffff) // <= 0x1_fffe
	s = (s >> 16) + (s & 0xffff) // <= 0xffff
	return uint16(s)
}

// Checksum returns the Internet checksum of b: the complement of
// Sum(b, initial). Pass the checksummed bytes with the checksum field
// zeroed to get the value to store, or with the stored checksum to verify
// (a correct packet gives 0).
func Checksum(b []byte, initial uint32) uint16 {
	return ^uint16(Sum(b, initial))
}

// PseudoHeaderChecksum returns the one's complement sum (folded, not
// complemented, usable as initial for [Sum] and [Checksum]) of the TCP/UDP
// pseudo-header: RFC 9293 §3.1 for IPv4 (src, dst, zero, protocol, 16-bit
// length) and RFC 8200 §8.1 for IPv6 (src, dst, 32-bit upper-layer length,
// zeros, next header). length is the TCP header plus payload length in
// bytes. When both addresses are IPv4 the IPv4 form is used; otherwise both
// are summed as 16-byte addresses (an IPv4 one as IPv4-mapped IPv6). Both
// addresses of a packet are always of one family.
func PseudoHeaderChecksum(src, dst netip.Addr, proto uint8, length int) uint32 {
	var s uint32
	if src.Is4() && dst.Is4() {
		a, b := src.As4(), dst.As4()
		s = uint32(binary.BigEndian.Uint16(a[0:2])) + uint32(binary.BigEndian.Uint16(a[2:4])) +
			uint32(binary.BigEndian.Uint16(b[0:2])) + uint32(binary.BigEndian.Uint16(b[2:4]))
	} else {
		a, b := src.As16(), dst.As16()
		s = Sum(a[:], Sum(b[:], 0))
	}
	l := uint32(length)
	s += uint32(proto) + l>>16 + l&0xffff
	return uint32(fold32(s))
}

// pseudoFromPacket is PseudoHeaderChecksum for TCP with the addresses read
// straight from the IP header of b (IPv4 bytes 12-19, IPv6 bytes 8-39).
func pseudoFromPacket(b []byte, version uint8, length int) uint32 {
	var s uint32
	if version == 4 {
		s = Sum(b[ipv4Src:ipv4Dst+4], 0)
	} else {
		s = Sum(b[ipv6Src:ipv6Dst+16], 0)
	}
	l := uint32(length)
	s += ProtocolTCP + l>>16 + l&0xffff
	return uint32(fold32(s))
}

// UpdateChecksum16 returns checksum updated for one 16-bit word of the
// checksummed data changing from old to new (RFC 1624 eqn. 3:
// HC' = ~(~HC + ~m + m')). The word must be 16-bit aligned relative to
// the start of the checksummed data. The result equals a full recompute
// whenever checksum was a correct, fully computed checksum.
func UpdateChecksum16(checksum, old, new uint16) uint16 {
	return ^fold32(uint32(^checksum) + uint32(^old) + uint32(new))
}

// UpdateChecksum32 is [UpdateChecksum16] for a 32-bit field (two adjacent
// aligned words), such as a sequence number or an IPv4 address.
func UpdateChecksum32(checksum uint16, old, new uint32) uint16 {
	return ^fold32(uint32(^checksum) +
		uint32(^uint16(old>>16)) + uint32(^uint16(old)) +
		uint32(uint16(new>>16)) + uint32(uint16(new)))
}

// updateChecksumSums is RFC 1624 eqn. 3 with the folded sums of the old and
// new contents of a changed, 16-bit aligned region.
func updateChecksumSums(checksum uint16, oldSum, newSum uint32) uint16 {
	return ^fold32(uint32(^checksum) + uint32(^uint16(oldSum)) + newSum)
}

// patch overwrites b[off:off+len(v)] with v and updates the 16-bit
// checksums stored at b[cs1:] and, if cs2 >= 0, b[cs2:]. Both checksummed
// areas must start at an even offset of b (true for the IP header at 0 and
// the TCP header at IHL or 40+8k), so a field at any offset is handled by
// summing the aligned window around it. The window [off&^1, end rounded up)
// must lie in b and must not overlap a checksum field.
func patch(b []byte, off int, v []byte, cs1, cs2 int) {
	lo := off &^ 1
	hi := (off + len(v) + 1) &^ 1
	w := b[lo:hi]
	oldSum := sumWords(w)
	copy(b[off:], v)
	newSum := sumWords(w)
	put16(b, cs1, updateChecksumSums(get16(b, cs1), oldSum, newSum))
	if cs2 >= 0 {
		put16(b, cs2, updateChecksumSums(get16(b, cs2), oldSum, newSum))
	}
}

// sumWords is Sum for the few bytes of a rewritten field: an even-length
// w of at most a few hundred bytes, 16 bits at a time, without Sum's setup.
func sumWords(w []byte) uint32 {
	var s uint32
	for i := 0; i+1 < len(w); i += 2 {
		s += uint32(w[i])<<8 | uint32(w[i+1])
	}
	return uint32(fold32(s))
}

func get16(b []byte, off int) uint16 { return binary.BigEndian.Uint16(b[off:]) }

func put16(b []byte, off int, v uint16) { binary.BigEndian.PutUint16(b[off:], v) }

func get32(b []byte, off int) uint32 { return binary.BigEndian.Uint32(b[off:]) }

func put32(b []byte, off int, v uint32) { binary.BigEndian.PutUint32(b[off:], v) }

// FixChecksums recomputes from scratch the IPv4 header checksum (RFC 791)
// and, unless p.Truncated, the TCP checksum over the whole segment
// (RFC 9293 §3.1). It is meant for captured packets, whose checksums may
// be partial or absent because of checksum offload and GRO; the result is
// always correct regardless of what the fields held. Bytes past p.TotalLen
// (link-layer padding) are not covered. A truncated packet keeps its TCP
// checksum untouched (the payload needed to compute it is missing). Does
// nothing if p is not Valid.
func FixChecksums(b []byte, p *Parsed) {
	if !p.usable(b) {
		return
	}
	if p.IPVersion == 4 {
		h := IPv4(b)
		h.SetChecksum(h.CalculateChecksum())
	}
	if p.Truncated {
		return
	}
	seg := b[p.TCPOffset:p.TotalLen]
	TCP(seg).SetChecksum(TCP(seg).CalculateChecksum(pseudoFromPacket(b, p.IPVersion, len(seg))))
}
