package ipmangle

import (
	"encoding/binary"
	"net/netip"
)

// Offsets of the IPv6 fixed header fields (RFC 8200 §3).
const (
	ipv6VersTCFlow = 0
	ipv6PayloadLen = 4
	ipv6NextHeader = 6
	ipv6HopLimit   = 7
	ipv6Src        = 8
	ipv6Dst        = 24
)

// IPv6MinimumSize is the size of the IPv6 fixed header.
const IPv6MinimumSize = 40

// IPv6 next header numbers of the extension headers that Decode walks
// (RFC 8200 §4, RFC 4302 for AH) and of the ones that end the walk.
const (
	ProtocolHopByHop = 0  // Hop-by-Hop Options, RFC 8200 §4.3
	ProtocolRouting  = 43 // Routing, RFC 8200 §4.4
	ProtocolFragment = 44 // Fragment, RFC 8200 §4.5
	ProtocolESP      = 50 // Encapsulating Security Payload, RFC 4303 (not walked)
	ProtocolAH       = 51 // Authentication Header, RFC 4302
	ProtocolNoNext   = 59 // No Next Header, RFC 8200 §4.7
	ProtocolDstOpts  = 60 // Destination Options, RFC 8200 §4.6
)

// IPv6 is a view of the IPv6 fixed header (RFC 8200 §3) at the start of a
// packet. Accessors read fixed offsets and panic if the slice is shorter
// than 40 bytes: check [IPv6.IsValid] (or decode with [Parsed.Decode])
// first. Setters write one raw field; IPv6 has no header checksum, but the
// addresses are in the TCP pseudo-header, so use [SetSrc] and [SetDst] on a
// packet whose TCP checksum must stay right.
type IPv6 []byte

// Version returns the IP version field (6 for IPv6).
func (b IPv6) Version() uint8 { return b[ipv6VersTCFlow] >> 4 }

// TrafficClass returns the traffic class byte (DSCP and ECN).
func (b IPv6) TrafficClass() uint8 {
	return uint8(binary.BigEndian.Uint16(b[ipv6VersTCFlow:]) >> 4)
}

// FlowLabel returns the 20-bit flow label.
func (b IPv6) FlowLabel() uint32 { return binary.BigEndian.Uint32(b[ipv6VersTCFlow:]) & 0xfffff }

// PayloadLength returns the payload length field: the bytes after the fixed
// header, extension headers included.
func (b IPv6) PayloadLength() uint16 { return binary.BigEndian.Uint16(b[ipv6PayloadLen:]) }

// NextHeader returns the type of the header after the fixed header.
func (b IPv6) NextHeader() uint8 { return b[ipv6NextHeader] }

// HopLimit returns the hop limit.
func (b IPv6) HopLimit() uint8 { return b[ipv6HopLimit] }

// Src returns the source address.
func (b IPv6) Src() netip.Addr { return netip.AddrFrom16([16]byte(b[ipv6Src : ipv6Src+16])) }

// Dst returns the destination address.
func (b IPv6) Dst() netip.Addr { return netip.AddrFrom16([16]byte(b[ipv6Dst : ipv6Dst+16])) }

// SetVersionTCFlow sets the version to 6, the traffic class and the flow label.
func (b IPv6) SetVersionTCFlow(tc uint8, flow uint32) {
	binary.BigEndian.PutUint32(b[ipv6VersTCFlow:], 6<<28|uint32(tc)<<20|flow&0xfffff)
}

// SetPayloadLength sets the payload length field.
func (b IPv6) SetPayloadLength(v uint16) { binary.BigEndian.PutUint16(b[ipv6PayloadLen:], v) }

// SetNextHeader sets the next header field.
func (b IPv6) SetNextHeader(v uint8) { b[ipv6NextHeader] = v }

// SetHopLimit sets the hop limit.
func (b IPv6) SetHopLimit(v uint8) { b[ipv6HopLimit] = v }

// SetSrc sets the source address (a is written as 16 bytes, IPv4 addresses
// as IPv4-mapped).
func (b IPv6) SetSrc(a netip.Addr) { a16 := a.As16(); copy(b[ipv6Src:], a16[:]) }

// SetDst sets the destination address (see SetSrc).
func (b IPv6) SetDst(a netip.Addr) { a16 := a.As16(); copy(b[ipv6Dst:], a16[:]) }

// IsValid reports whether b holds a complete IPv6 fixed header of version 6
// whose payload length is non-zero (zero means a jumbogram, RFC 2675, which
// this package does not handle) and fits a packet of pktSize bytes.
func (b IPv6) IsValid(pktSize int) bool {
	if len(b) < IPv6MinimumSize || b.Version() != 6 {
		return false
	}
	pl := int(b.PayloadLength())
	return pl != 0 && IPv6MinimumSize+pl <= pktSize
}
