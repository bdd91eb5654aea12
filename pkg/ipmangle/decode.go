package ipmangle

import (
	"net/netip"
)

// Reason says why [Parsed.Decode] marked a packet invalid. Callers count
// drops per Reason.
type Reason uint8

// Decode outcomes.
const (
	ReasonOK        Reason = iota // a well-formed IPv4 or IPv6 TCP packet (Valid)
	ReasonShort                   // b ends before the end of the IP and TCP headers
	ReasonVersion                 // IP version neither 4 nor 6
	ReasonIPHeader                // IPv4 IHL below 5
	ReasonLength                  // IP length field below the header length, 0 (IPv4 TSO, IPv6 jumbogram)
	ReasonExtHeader               // bad IPv6 extension header chain (see Decode)
	ReasonFragment                // an IPv4 or IPv6 fragment (see Decode)
	ReasonNotTCP                  // not TCP: another protocol, ESP, or no next header
	ReasonTCPHeader               // TCP data offset below 5 or beyond the IP length
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonOK:        "ok",
	ReasonShort:     "short",
	ReasonVersion:   "bad-version",
	ReasonIPHeader:  "bad-ip-header",
	ReasonLength:    "bad-ip-length",
	ReasonExtHeader: "bad-ipv6-ext-header",
	ReasonFragment:  "fragment",
	ReasonNotTCP:    "not-tcp",
	ReasonTCPHeader: "bad-tcp-header",
}

// String returns a short lowercase name, usable as a counter label.
func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// maxExtHeaders bounds the IPv6 extension header walk, so that the cost of
// Decode stays small whatever the input (RFC 8200 §4.1 recommends at most
// one of each kind, Destination Options at most twice).
const maxExtHeaders = 16

// Parsed is a caller-owned summary of one packet, filled by [Parsed.Decode].
// Offsets are from the start of the packet (the IP header). Fields other
// than Valid, Reason and Fragment are meaningful only when Valid is true.
// A Parsed does not reference the packet bytes: the rewrites take the
// packet and its Parsed side by side and keep both in step.
type Parsed struct {
	// IPVersion is 4 or 6 for a valid packet, 0 when invalid.
	IPVersion uint8
	// Valid reports a well-formed IPv4 or IPv6 TCP packet whose IP and TCP
	// headers are all in b. When false, Reason says why.
	Valid bool
	// Reason is ReasonOK when Valid, else the cause of the drop.
	Reason Reason
	// Truncated reports that b holds fewer bytes than the IP length field
	// says: the headers are all there but the payload is (partly) missing,
	// as in a capture with a small snaplen or an intercept header record.
	// Rewrites still work (incrementally: they keep a checksum that was
	// right over the full packet right); FixChecksums fixes only the IPv4
	// header checksum, and Segmenter refuses such packets.
	Truncated bool
	// Fragment reports an IPv4 fragment (MF set or offset non-zero) or an
	// IPv6 fragment header with MF set or offset non-zero. Fragments are
	// always invalid (Reason ReasonFragment), first fragments included:
	// their TCP length and checksum cover bytes in other fragments. An IPv6
	// atomic fragment (RFC 6946: fragment header with offset 0 and M 0) is a
	// whole packet and is decoded normally, Fragment false.
	Fragment bool

	// IPHeaderLen is the length of the IPv4 header with options, or of the
	// IPv6 fixed header plus every extension header before TCP.
	IPHeaderLen int
	// TCPOffset is the offset of the TCP header; equal to IPHeaderLen.
	TCPOffset int
	// TCPHeaderLen is the TCP header length in bytes, options included.
	TCPHeaderLen int
	// PayloadOffset is the offset of the TCP payload, TCPOffset+TCPHeaderLen.
	PayloadOffset int
	// PayloadLen is the TCP payload length according to the IP length
	// field, whether or not b holds all of it.
	PayloadLen int
	// TotalLen is the packet length according to the IP length field:
	// PayloadOffset+PayloadLen. b[:TotalLen] is the packet without trailing
	// link-layer padding when TotalLen <= len(b); TotalLen > len(b) exactly
	// when Truncated.
	TotalLen int

	Src, Dst netip.AddrPort
	Seq, Ack uint32
	Flags    TCPFlags
	// Window is the raw window field (not scaled).
	Window uint16

	// MSSOffset is the offset of the kind byte of the MSS option, 0 if
	// absent; MSS is its value.
	MSSOffset int
	MSS       uint16
	// WScaleOffset is the offset of the kind byte of the window scale
	// option, 0 if absent; WScale is its shift count (capped at
	// MaxWindowScale as RFC 7323 §2.3 says), -1 if absent.
	WScaleOffset int
	WScale       int8
	// SACKPermitted reports a SACK-permitted option (RFC 2018).
	SACKPermitted bool
	// SACKOffset is the offset of the kind byte of a SACK blocks option, 0
	// if absent.
	SACKOffset int
	// TSOffset is the offset of the kind byte of the timestamps option
	// (RFC 7323 §3), 0 if absent; TSVal and TSEcr are its values.
	TSOffset int
	TSVal    uint32
	TSEcr    uint32
	// BadOptions reports a malformed option list (an option length below 2
	// or running past the header). Like Linux (tcp_parse_options), parsing
	// stops there and the options found before it are kept; the packet
	// stays Valid. Known options of the wrong length are skipped, not
	// reported here.
	BadOptions bool
}

// HasTS reports whether the packet has a timestamps option.
func (p *Parsed) HasTS() bool { return p.TSOffset != 0 }

// HasMSS reports whether the packet has an MSS option.
func (p *Parsed) HasMSS() bool { return p.MSSOffset != 0 }

// Payload returns the TCP payload bytes that b holds: b[PayloadOffset:
// min(TotalLen, len(b))], shorter than PayloadLen when Truncated. It
// returns nil if p is not valid for b. The result aliases b.
func (p *Parsed) Payload(b []byte) []byte {
	if !p.usable(b) {
		return nil
	}
	return b[p.PayloadOffset:min(p.TotalLen, len(b))]
}

// usable reports whether p is valid and its headers lie in b, the guard
// every function that writes into b by p's offsets uses.
func (p *Parsed) usable(b []byte) bool {
	return p.Valid && p.PayloadOffset <= len(b) && p.PayloadOffset >= IPv4MinimumSize+TCPMinimumSize
}

// Decode fills p from the packet b, which starts at the IP header. It never
// panics, never allocates, and reads no byte outside b. p is reset first.
//
// The rules, for IPv4 (RFC 791) and IPv6 (RFC 8200) carrying TCP (RFC 9293):
//
//   - The IP length field decides where the packet ends. Bytes in b past it
//     (Ethernet padding of short frames) are ignored. If b is shorter than
//     it, the packet is Truncated but still Valid as long as every IP and
//     TCP header byte is in b.
//   - IPv4: IHL must be at least 5; total length 0 (what Linux GSO/TSO
//     super-packets above 64 KiB carry) or below the header length is
//     ReasonLength. The header checksum is not verified: captured packets
//     may carry partial checksums.
//   - IPv4 fragments and IPv6 non-atomic fragments are invalid with
//     Fragment set, as in C TCPCopy, which counts and drops them; see
//     [Parsed.Fragment].
//   - IPv6: payload length 0 (a jumbogram, RFC 2675, or an empty packet) is
//     ReasonLength. Hop-by-Hop, Routing, Fragment, Destination Options and
//     AH headers are walked to TCP; ESP, No Next Header and any other
//     protocol is ReasonNotTCP. ReasonExtHeader is returned for a
//     Hop-by-Hop header that is not first, a header running past the
//     payload length, more than 16 extension headers, or a Routing header
//     with Segments Left above 0 (the packet is not yet at its final
//     destination, which a copier always is, and its TCP checksum would
//     use an address from inside the Routing header).
//   - TCP: the data offset must be at least 5 and the header must fit the IP
//     length (ReasonTCPHeader). Options are parsed like Linux's
//     tcp_parse_options: EOL ends the list, NOP is skipped, an option with
//     a length below 2 or beyond the header stops the parse (BadOptions,
//     packet still valid), known options of the wrong length are skipped,
//     a repeated option overrides the earlier one. MSS, window scale and
//     SACK-permitted are reported on any segment, not only on SYNs; callers
//     decide what to honour. The TCP checksum is not verified.
func (p *Parsed) Decode(b []byte) {
	*p = Parsed{WScale: -1}
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
	if len(b) < IPv4MinimumSize {
		p.Reason = ReasonShort
		return
	}
	h := IPv4(b)
	hl := h.HeaderLength()
	tl := int(h.TotalLength())
	switch {
	case hl < IPv4MinimumSize:
		p.Reason = ReasonIPHeader
		return
	case tl < hl:
		p.Reason = ReasonLength
		return
	case len(b) < hl:
		p.Reason = ReasonShort
		return
	case h.Protocol() != ProtocolTCP:
		p.Reason = ReasonNotTCP
		return
	case h.Flags()&IPv4FlagMoreFragments != 0 || h.FragmentOffset() != 0:
		p.Fragment = true
		p.Reason = ReasonFragment
		return
	}
	if !p.decodeTCP(b, hl, tl) {
		return
	}
	p.IPVersion = 4
	p.Src = netip.AddrPortFrom(h.Src(), p.Src.Port())
	p.Dst = netip.AddrPortFrom(h.Dst(), p.Dst.Port())
}

func (p *Parsed) decode6(b []byte) {
	if len(b) < IPv6MinimumSize {
		p.Reason = ReasonShort
		return
	}
	h := IPv6(b)
	pl := int(h.PayloadLength())
	if pl == 0 {
		p.Reason = ReasonLength
		return
	}
	end := IPv6MinimumSize + pl
	off := IPv6MinimumSize
	nh := h.NextHeader()
	for n := 0; nh != ProtocolTCP; n++ {
		if n == maxExtHeaders {
			p.Reason = ReasonExtHeader
			return
		}
		hl := 8
		switch nh {
		case ProtocolHopByHop, ProtocolRouting, ProtocolDstOpts, ProtocolFragment, ProtocolAH:
		default:
			p.Reason = ReasonNotTCP
			return
		}
		// Every header walked is at least 8 bytes long and has its length
		// in its second byte.
		if off+8 > end {
			p.Reason = ReasonExtHeader
			return
		}
		if off+8 > len(b) {
			p.Reason = ReasonShort
			return
		}
		switch nh {
		case ProtocolHopByHop:
			if off != IPv6MinimumSize {
				p.Reason = ReasonExtHeader
				return
			}
			hl = (int(b[off+1]) + 1) * 8
		case ProtocolDstOpts:
			hl = (int(b[off+1]) + 1) * 8
		case ProtocolRouting:
			if b[off+3] != 0 { // Segments Left
				p.Reason = ReasonExtHeader
				return
			}
			hl = (int(b[off+1]) + 1) * 8
		case ProtocolAH:
			hl = (int(b[off+1]) + 2) * 4 // RFC 4302 §2.2: 32-bit words minus 2
		case ProtocolFragment:
			fo := get16(b, off+2) // offset (13 bits), reserved (2), M (1)
			if fo&^0x6 != 0 {
				p.Fragment = true
				p.Reason = ReasonFragment
				return
			}
		}
		if off+hl > end {
			p.Reason = ReasonExtHeader
			return
		}
		if off+hl > len(b) {
			p.Reason = ReasonShort
			return
		}
		nh = b[off]
		off += hl
	}
	if !p.decodeTCP(b, off, end) {
		return
	}
	p.IPVersion = 6
	p.Src = netip.AddrPortFrom(h.Src(), p.Src.Port())
	p.Dst = netip.AddrPortFrom(h.Dst(), p.Dst.Port())
}

// decodeTCP decodes the TCP header at off of a packet whose IP length says
// it ends at end, and sets every field but IPVersion and the addresses.
func (p *Parsed) decodeTCP(b []byte, off, end int) bool {
	if off+TCPMinimumSize > end {
		p.Reason = ReasonTCPHeader
		return false
	}
	if off+TCPMinimumSize > len(b) {
		p.Reason = ReasonShort
		return false
	}
	t := TCP(b[off:])
	hl := t.DataOffset()
	if hl < TCPMinimumSize || off+hl > end {
		p.Reason = ReasonTCPHeader
		return false
	}
	if off+hl > len(b) {
		p.Reason = ReasonShort
		return false
	}
	p.Valid = true
	p.Reason = ReasonOK
	p.IPHeaderLen = off
	p.TCPOffset = off
	p.TCPHeaderLen = hl
	p.PayloadOffset = off + hl
	p.PayloadLen = end - off - hl
	p.TotalLen = end
	p.Truncated = end > len(b)
	p.Src = netip.AddrPortFrom(netip.Addr{}, t.SrcPort())
	p.Dst = netip.AddrPortFrom(netip.Addr{}, t.DstPort())
	p.Seq = t.Seq()
	p.Ack = t.Ack()
	p.Flags = t.Flags()
	p.Window = t.Window()
	p.parseOptions(b, off+TCPMinimumSize, off+hl)
	return true
}

// alignedTS is the first word of the option list of nearly every Linux
// segment after the handshake: NOP, NOP, timestamps (RFC 7323 Appendix A).
const alignedTS = TCPOptionNOP<<24 | TCPOptionNOP<<16 | TCPOptionTimestamp<<8 | TCPOptionTimestampLen

// parseOptions parses the TCP options in b[i:end].
func (p *Parsed) parseOptions(b []byte, i, end int) {
	if end-i == 12 && get32(b, i) == alignedTS {
		// Fast path, as Linux's tcp_parse_aligned_timestamp.
		p.TSOffset = i + 2
		p.TSVal = get32(b, i+4)
		p.TSEcr = get32(b, i+8)
		return
	}
	for i < end {
		kind := b[i]
		switch kind {
		case TCPOptionEOL:
			return
		case TCPOptionNOP:
			i++
			continue
		}
		if i+2 > end {
			p.BadOptions = true
			return
		}
		n := int(b[i+1])
		if n < 2 || i+n > end {
			p.BadOptions = true
			return
		}
		switch {
		case kind == TCPOptionMSS && n == TCPOptionMSSLen:
			p.MSSOffset = i
			p.MSS = get16(b, i+2)
		case kind == TCPOptionWindowScale && n == TCPOptionWindowScaleLen:
			p.WScaleOffset = i
			p.WScale = int8(min(b[i+2], MaxWindowScale))
		case kind == TCPOptionSACKPermitted && n == TCPOptionSACKPermittedLen:
			p.SACKPermitted = true
		case kind == TCPOptionSACK && n >= 10 && (n-2)%8 == 0:
			p.SACKOffset = i
		case kind == TCPOptionTimestamp && n == TCPOptionTimestampLen:
			p.TSOffset = i
			p.TSVal = get32(b, i+2)
			p.TSEcr = get32(b, i+6)
		}
		i += n
	}
}
