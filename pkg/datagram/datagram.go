// Package datagram decodes captured IPv4 and IPv6 UDP datagrams (RFC 768)
// and builds their copies: tcpcopy's UDP path (C TCPCopy's --udp build,
// tcpcopy-c.md §3.15).
//
// [Parsed.Decode] fills a caller-owned summary of one datagram (addresses
// and ports, the IP fields a copy keeps, where the payload is) and never
// fails, never allocates: malformed input sets Valid false and a [Reason]
// the caller counts. [Fields.Encode] builds a datagram into a caller
// buffer, with a fresh IPv4 or IPv6 header, the UDP checksum computed over
// the whole datagram (never 0: RFC 768 sends 0 as 0xffff, and a zero UDP
// checksum is invalid over IPv6, RFC 8200 §8.1) and the IPv4 header
// checksum. A copy is built rather than rewritten in place because it may
// carry several copies' source ports (-n), and because the captured IP
// options and IPv6 extension headers are not copied: they belong to the
// path from the client, not to the one to the target.
//
// Fragments are not datagrams: Decode marks them ReasonFragment, and the
// caller reassembles them first (package ipfrag). Checksums are taken from
// package ipmangle, their one home.
package datagram

import (
	"encoding/binary"
	"net/netip"

	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
)

// ProtocolUDP is the IPv4 protocol / IPv6 next header number of UDP.
const ProtocolUDP = 17

// HeaderLen is the length of the UDP header.
const HeaderLen = 8

// Reason says why Decode marked a packet invalid.
type Reason uint8

// Decode outcomes.
const (
	ReasonOK        Reason = iota // a well-formed IPv4 or IPv6 UDP datagram
	ReasonShort                   // b ends before the end of the IP and UDP headers
	ReasonVersion                 // IP version neither 4 nor 6
	ReasonIPHeader                // IPv4 IHL below 5, or IP length below the header
	ReasonExtHeader               // a bad IPv6 extension header chain (see Decode)
	ReasonFragment                // an IPv4 or IPv6 fragment: reassemble it first
	ReasonNotUDP                  // another protocol
	ReasonLength                  // UDP length below 8 or beyond the IP length, or an IPv6 jumbogram
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonOK:        "ok",
	ReasonShort:     "short",
	ReasonVersion:   "bad-version",
	ReasonIPHeader:  "bad-ip-header",
	ReasonExtHeader: "bad-ipv6-ext-header",
	ReasonFragment:  "fragment",
	ReasonNotUDP:    "not-udp",
	ReasonLength:    "bad-udp-length",
}

// String returns a short lowercase name.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// maxExtHeaders bounds the IPv6 extension header walk.
const maxExtHeaders = 16

// IPv6 extension headers walked by Decode (RFC 8200 §4, RFC 4302).
const (
	protoHopByHop = 0
	protoRouting  = 43
	protoFragment = 44
	protoAH       = 51
	protoDstOpts  = 60
)

// Parsed is a caller-owned summary of one datagram, filled by Decode.
// Offsets are from the start of the packet. Fields other than Valid and
// Reason are meaningful only when Valid.
type Parsed struct {
	// Valid reports a well-formed IPv4 or IPv6 UDP datagram whose IP and
	// UDP headers are in b; Reason says why not.
	Valid  bool
	Reason Reason
	// Truncated reports that b holds fewer bytes than the UDP length says:
	// the payload is cut (a capture snap length) and cannot be copied.
	Truncated bool
	// IPVersion is 4 or 6.
	IPVersion uint8
	Src, Dst  netip.AddrPort
	// TOS is the IPv4 type of service or the IPv6 traffic class.
	TOS uint8
	// TTL is the IPv4 TTL or the IPv6 hop limit.
	TTL uint8
	// FlowLabel is the IPv6 flow label.
	FlowLabel uint32
	// ID and DontFragment are the IPv4 identification and DF flag.
	ID           uint16
	DontFragment bool
	// UDPOffset is the offset of the UDP header; PayloadOffset that of the
	// payload, UDPOffset+8.
	UDPOffset     int
	PayloadOffset int
	// PayloadLen is the payload length according to the UDP length field
	// (bytes after it up to the IP length are padding and not copied).
	PayloadLen int
}

// Payload returns the payload: b[PayloadOffset:PayloadOffset+PayloadLen].
// It returns nil when p is not valid or Truncated. The result aliases b.
func (p *Parsed) Payload(b []byte) []byte {
	if !p.Valid || p.Truncated || p.PayloadOffset+p.PayloadLen > len(b) {
		return nil
	}
	return b[p.PayloadOffset : p.PayloadOffset+p.PayloadLen]
}

// Decode fills p from the packet b, which starts at the IP header. It
// never panics, never allocates and reads nothing outside b; p is reset
// first.
//
//   - IPv4 (RFC 791): IHL at least 5, total length at least the header.
//     MF or a fragment offset makes a fragment. The header checksum is not
//     verified.
//   - IPv6 (RFC 8200): payload length 0 (a jumbogram) is ReasonLength.
//     Hop-by-Hop (first only), Destination Options, Routing with Segments
//     Left 0, AH and atomic Fragment headers are walked to UDP; a Fragment
//     header with M or an offset makes a fragment. More than 16 extension
//     headers, or one running past the payload, is ReasonExtHeader.
//   - UDP (RFC 768): the length field must be at least 8 and fit in the IP
//     length. The UDP checksum is not verified (a copy gets a new one).
func (p *Parsed) Decode(b []byte) {
	*p = Parsed{}
	if len(b) == 0 {
		p.Reason = ReasonShort
		return
	}
	switch b[0] >> 4 {
	case 4:
		p.decode4(b)
	case 6:
		p.decode6(b)
	default:
		p.Reason = ReasonVersion
	}
}

func (p *Parsed) decode4(b []byte) {
	if len(b) < ipmangle.IPv4MinimumSize {
		p.Reason = ReasonShort
		return
	}
	h := ipmangle.IPv4(b)
	hl, tl := h.HeaderLength(), int(h.TotalLength())
	switch {
	case hl < ipmangle.IPv4MinimumSize || tl < hl:
		p.Reason = ReasonIPHeader
		return
	case len(b) < hl:
		p.Reason = ReasonShort
		return
	case h.Protocol() != ProtocolUDP:
		p.Reason = ReasonNotUDP
		return
	case h.Flags()&ipmangle.IPv4FlagMoreFragments != 0 || h.FragmentOffset() != 0:
		p.Reason = ReasonFragment
		return
	}
	if !p.decodeUDP(b, hl, tl) {
		return
	}
	p.IPVersion = 4
	p.TOS, p.TTL, p.ID = h.TOS(), h.TTL(), h.ID()
	p.DontFragment = h.Flags()&ipmangle.IPv4FlagDontFragment != 0
	p.Src = netip.AddrPortFrom(h.Src(), p.Src.Port())
	p.Dst = netip.AddrPortFrom(h.Dst(), p.Dst.Port())
}

func (p *Parsed) decode6(b []byte) {
	if len(b) < ipmangle.IPv6MinimumSize {
		p.Reason = ReasonShort
		return
	}
	h := ipmangle.IPv6(b)
	pl := int(h.PayloadLength())
	if pl == 0 {
		p.Reason = ReasonLength
		return
	}
	end := ipmangle.IPv6MinimumSize + pl
	off, nh := ipmangle.IPv6MinimumSize, h.NextHeader()
	for n := 0; nh != ProtocolUDP; n++ {
		switch nh {
		case protoHopByHop, protoRouting, protoDstOpts, protoAH, protoFragment:
		default:
			p.Reason = ReasonNotUDP
			return
		}
		if n == maxExtHeaders || off+8 > end {
			p.Reason = ReasonExtHeader
			return
		}
		if off+8 > len(b) {
			p.Reason = ReasonShort
			return
		}
		hl := (int(b[off+1]) + 1) * 8
		switch nh {
		case protoHopByHop:
			if off != ipmangle.IPv6MinimumSize {
				p.Reason = ReasonExtHeader
				return
			}
		case protoRouting:
			if b[off+3] != 0 { // Segments Left: not yet at its destination
				p.Reason = ReasonExtHeader
				return
			}
		case protoAH:
			hl = (int(b[off+1]) + 2) * 4
		case protoFragment:
			hl = 8
			if binary.BigEndian.Uint16(b[off+2:])&0xfff9 != 0 {
				p.Reason = ReasonFragment
				return
			}
		}
		if off+hl > end {
			p.Reason = ReasonExtHeader
			return
		}
		nh = b[off]
		off += hl
	}
	if !p.decodeUDP(b, off, end) {
		return
	}
	p.IPVersion = 6
	p.TOS, p.TTL, p.FlowLabel = h.TrafficClass(), h.HopLimit(), h.FlowLabel()
	p.Src = netip.AddrPortFrom(h.Src(), p.Src.Port())
	p.Dst = netip.AddrPortFrom(h.Dst(), p.Dst.Port())
}

// decodeUDP decodes the UDP header at off of a packet whose IP length
// says it ends at end.
func (p *Parsed) decodeUDP(b []byte, off, end int) bool {
	if off+HeaderLen > end {
		p.Reason = ReasonLength
		return false
	}
	if off+HeaderLen > len(b) {
		p.Reason = ReasonShort
		return false
	}
	u := b[off:]
	ul := int(binary.BigEndian.Uint16(u[4:]))
	if ul < HeaderLen || off+ul > end {
		p.Reason = ReasonLength
		return false
	}
	p.Valid, p.Reason = true, ReasonOK
	p.Src = netip.AddrPortFrom(netip.Addr{}, binary.BigEndian.Uint16(u[0:]))
	p.Dst = netip.AddrPortFrom(netip.Addr{}, binary.BigEndian.Uint16(u[2:]))
	p.UDPOffset = off
	p.PayloadOffset = off + HeaderLen
	p.PayloadLen = ul - HeaderLen
	p.Truncated = off+ul > len(b)
	return true
}

// Fields describes a datagram for Encode.
type Fields struct {
	// Src and Dst are both IPv4 or both IPv6 (IPv4-mapped addresses count
	// as IPv6).
	Src, Dst netip.AddrPort
	// TOS is the IPv4 type of service or IPv6 traffic class.
	TOS uint8
	// TTL is the IPv4 TTL or IPv6 hop limit; 0 means 64.
	TTL uint8
	// FlowLabel is the IPv6 flow label (20 bits).
	FlowLabel uint32
	// ID and DontFragment are the IPv4 identification and DF flag.
	ID           uint16
	DontFragment bool
	// Payload is the UDP payload.
	Payload []byte
}

// defaultTTL is Linux's default TTL, and C TCPCopy's.
const defaultTTL = 64

func (f *Fields) ipHeaderLen() int {
	if f.Src.Addr().Is4() && f.Dst.Addr().Is4() {
		return ipmangle.IPv4MinimumSize
	}
	return ipmangle.IPv6MinimumSize
}

// Len returns the length of the datagram Encode builds.
func (f *Fields) Len() int { return f.ipHeaderLen() + HeaderLen + len(f.Payload) }

// MaxPayload is the largest payload of an IPv4 datagram (65535 less the
// IPv4 and UDP headers); over IPv6 up to 65527 bytes fit.
const MaxPayload = 65535 - ipmangle.IPv4MinimumSize - HeaderLen

// Encode builds the datagram into b and returns its length. It returns 0,
// writing nothing, if b is shorter than Len or the datagram would exceed
// what the IP length fields hold. It does not allocate.
func (f *Fields) Encode(b []byte) int {
	ihl := f.ipHeaderLen()
	n := ihl + HeaderLen + len(f.Payload)
	if len(b) < n || n-ihl > 65535 || (ihl == ipmangle.IPv4MinimumSize && n > 65535) {
		return 0
	}
	ttl := f.TTL
	if ttl == 0 {
		ttl = defaultTTL
	}
	src, dst := f.Src.Addr(), f.Dst.Addr()
	if ihl == ipmangle.IPv4MinimumSize {
		h := ipmangle.IPv4(b)
		h.SetVersionIHL(ihl)
		h.SetTOS(f.TOS)
		h.SetTotalLength(uint16(n))
		h.SetID(f.ID)
		var flags uint8
		if f.DontFragment {
			flags = ipmangle.IPv4FlagDontFragment
		}
		h.SetFlagsFragmentOffset(flags, 0)
		h.SetTTL(ttl)
		h.SetProtocol(ProtocolUDP)
		h.SetSrc(src)
		h.SetDst(dst)
		h.SetChecksum(0)
		h.SetChecksum(h.CalculateChecksum())
	} else {
		h := ipmangle.IPv6(b)
		h.SetVersionTCFlow(f.TOS, f.FlowLabel)
		h.SetPayloadLength(uint16(n - ihl))
		h.SetNextHeader(ProtocolUDP)
		h.SetHopLimit(ttl)
		h.SetSrc(src)
		h.SetDst(dst)
	}
	u := b[ihl:n]
	binary.BigEndian.PutUint16(u[0:], f.Src.Port())
	binary.BigEndian.PutUint16(u[2:], f.Dst.Port())
	binary.BigEndian.PutUint16(u[4:], uint16(len(u)))
	binary.BigEndian.PutUint16(u[6:], 0)
	copy(u[HeaderLen:], f.Payload)
	c := ipmangle.Checksum(u, ipmangle.PseudoHeaderChecksum(src, dst, ProtocolUDP, len(u)))
	if c == 0 {
		c = 0xffff // RFC 768: a computed 0 is sent as all ones
	}
	binary.BigEndian.PutUint16(u[6:], c)
	return n
}
