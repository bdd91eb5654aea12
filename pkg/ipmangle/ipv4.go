package ipmangle

import (
	"encoding/binary"
	"net/netip"
)

// Offsets of the IPv4 header fields (RFC 791 §3.1).
const (
	ipv4VersIHL   = 0
	ipv4TOS       = 1
	ipv4TotalLen  = 2
	ipv4ID        = 4
	ipv4FlagsFrag = 6
	ipv4TTL       = 8
	ipv4Protocol  = 9
	ipv4Checksum  = 10
	ipv4Src       = 12
	ipv4Dst       = 16
)

const (
	// IPv4MinimumSize is the size of an IPv4 header without options.
	IPv4MinimumSize = 20
	// IPv4MaximumHeaderSize is the size of an IPv4 header with 40 bytes of
	// options (IHL 15).
	IPv4MaximumHeaderSize = 60
	// ProtocolTCP is the IPv4 protocol / IPv6 next header number of TCP.
	ProtocolTCP = 6
)

// IPv4 header flags, as returned by [IPv4.Flags] (RFC 791 §3.1).
const (
	IPv4FlagMoreFragments = 1 << 0
	IPv4FlagDontFragment  = 1 << 1
)

// IPv4 is a view of an IPv4 header (RFC 791 §3.1) at the start of a
// packet. Accessors read fixed offsets and panic if the slice is too
// short: check [IPv4.IsValid] (or decode with [Parsed.Decode]) first.
// Setters write one raw field and do not update the header checksum; use
// the package-level rewrites (SetSrc, SetTTL, ...) to change fields of a
// packet whose checksums must stay right.
type IPv4 []byte

// Version returns the IP version field (4 for IPv4).
func (b IPv4) Version() uint8 { return b[ipv4VersIHL] >> 4 }

// HeaderLength returns the header length in bytes (IHL × 4), options included.
func (b IPv4) HeaderLength() int { return int(b[ipv4VersIHL]&0x0f) * 4 }

// TOS returns the type of service byte (DSCP and ECN).
func (b IPv4) TOS() uint8 { return b[ipv4TOS] }

// TotalLength returns the total length field: header plus data, in bytes.
func (b IPv4) TotalLength() uint16 { return binary.BigEndian.Uint16(b[ipv4TotalLen:]) }

// ID returns the identification field.
func (b IPv4) ID() uint16 { return binary.BigEndian.Uint16(b[ipv4ID:]) }

// Flags returns the three flag bits ([IPv4FlagDontFragment], [IPv4FlagMoreFragments]).
func (b IPv4) Flags() uint8 { return b[ipv4FlagsFrag] >> 5 }

// FragmentOffset returns the fragment offset in bytes (the field × 8).
func (b IPv4) FragmentOffset() uint16 {
	return binary.BigEndian.Uint16(b[ipv4FlagsFrag:]) << 3
}

// TTL returns the time to live.
func (b IPv4) TTL() uint8 { return b[ipv4TTL] }

// Protocol returns the protocol number of the payload ([ProtocolTCP] for TCP).
func (b IPv4) Protocol() uint8 { return b[ipv4Protocol] }

// Checksum returns the header checksum field.
func (b IPv4) Checksum() uint16 { return binary.BigEndian.Uint16(b[ipv4Checksum:]) }

// Src returns the source address.
func (b IPv4) Src() netip.Addr { return netip.AddrFrom4([4]byte(b[ipv4Src : ipv4Src+4])) }

// Dst returns the destination address.
func (b IPv4) Dst() netip.Addr { return netip.AddrFrom4([4]byte(b[ipv4Dst : ipv4Dst+4])) }

// SetVersionIHL sets the version to 4 and the header length to n bytes
// (n must be a multiple of 4 between 20 and 60).
func (b IPv4) SetVersionIHL(n int) { b[ipv4VersIHL] = 4<<4 | uint8(n/4)&0x0f }

// SetTOS sets the type of service byte.
func (b IPv4) SetTOS(v uint8) { b[ipv4TOS] = v }

// SetTotalLength sets the total length field.
func (b IPv4) SetTotalLength(v uint16) { binary.BigEndian.PutUint16(b[ipv4TotalLen:], v) }

// SetID sets the identification field.
func (b IPv4) SetID(v uint16) { binary.BigEndian.PutUint16(b[ipv4ID:], v) }

// SetFlagsFragmentOffset sets the flag bits and the fragment offset (in
// bytes, a multiple of 8).
func (b IPv4) SetFlagsFragmentOffset(flags uint8, offset uint16) {
	binary.BigEndian.PutUint16(b[ipv4FlagsFrag:], uint16(flags)<<13|offset>>3)
}

// SetTTL sets the time to live.
func (b IPv4) SetTTL(v uint8) { b[ipv4TTL] = v }

// SetProtocol sets the protocol number.
func (b IPv4) SetProtocol(v uint8) { b[ipv4Protocol] = v }

// SetChecksum sets the header checksum field.
func (b IPv4) SetChecksum(v uint16) { binary.BigEndian.PutUint16(b[ipv4Checksum:], v) }

// SetSrc sets the source address; a must be an IPv4 address.
func (b IPv4) SetSrc(a netip.Addr) { a4 := a.As4(); copy(b[ipv4Src:], a4[:]) }

// SetDst sets the destination address; a must be an IPv4 address.
func (b IPv4) SetDst(a netip.Addr) { a4 := a.As4(); copy(b[ipv4Dst:], a4[:]) }

// CalculateChecksum returns the header checksum the header should carry:
// the RFC 1071 checksum of the HeaderLength bytes with the checksum field
// taken as zero. Store it with SetChecksum.
func (b IPv4) CalculateChecksum() uint16 {
	return ^uint16(Sum(b[ipv4Checksum+2:b.HeaderLength()], Sum(b[:ipv4Checksum], 0)))
}

// IsChecksumValid reports whether the stored header checksum is correct.
func (b IPv4) IsChecksumValid() bool { return Checksum(b[:b.HeaderLength()], 0) == 0 }

// IsValid reports whether b holds a complete IPv4 header that is
// consistent with a packet of pktSize bytes: version 4, IHL ≥ 5, the
// header present in b, and HeaderLength ≤ TotalLength ≤ pktSize. It does
// not look at the checksum, the protocol or fragmentation.
func (b IPv4) IsValid(pktSize int) bool {
	if len(b) < IPv4MinimumSize || b.Version() != 4 {
		return false
	}
	hl := b.HeaderLength()
	tl := int(b.TotalLength())
	return hl >= IPv4MinimumSize && hl <= len(b) && hl <= tl && tl <= pktSize
}
