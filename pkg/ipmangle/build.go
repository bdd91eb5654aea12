package ipmangle

import (
	"net/netip"
)

// Fields describes a TCP packet to build with [Fields.Encode]: the SYNs,
// ACKs, RSTs and data packets tcpcopy makes itself.
type Fields struct {
	// Src and Dst are both IPv4 or both IPv6 (IPv4-mapped addresses count
	// as IPv6 and build an IPv6 packet).
	Src, Dst netip.AddrPort
	Seq, Ack uint32 // Ack is written as given, even without the ACK flag
	Flags    TCPFlags
	Window   uint16
	// MSS is the value of an MSS option; 0 means no MSS option.
	MSS uint16
	// WScale is the shift count of a window scale option, 0 to 14; below 0
	// means no window scale option. Note that the zero value asks for a
	// shift of 0: set -1 to leave the option out.
	WScale int8
	// SACKPermitted adds a SACK-permitted option (RFC 2018).
	SACKPermitted bool
	// HasTS adds a timestamps option with TSVal and TSEcr (RFC 7323 §3).
	HasTS        bool
	TSVal, TSEcr uint32
	// TTL is the IPv4 TTL or IPv6 hop limit; 0 means 64 (Linux's default,
	// and what C TCPCopy uses).
	TTL uint8
	// ID is the IPv4 identification field (unused for IPv6).
	ID uint16
	// DontFragment sets the IPv4 DF flag. C TCPCopy sets DF on every
	// packet it makes; set it to match.
	DontFragment bool
	// Payload is copied after the TCP header; may be nil.
	Payload []byte
}

// Default TTL / hop limit of built packets.
const defaultTTL = 64

func (f *Fields) ipHeaderLen() int {
	if f.Src.Addr().Is4() {
		return IPv4MinimumSize
	}
	return IPv6MinimumSize
}

// optionsLen returns the length of the TCP options Encode writes, a
// multiple of 4.
func (f *Fields) optionsLen() int {
	n := 0
	if f.MSS != 0 {
		n += 4 // MSS
	}
	if f.HasTS {
		n += 12 // SACK_PERM or NOP,NOP; then TS
	} else if f.SACKPermitted {
		n += 4 // NOP,NOP,SACK_PERM
	}
	if f.WScale >= 0 {
		n += 4 // NOP,WS
	}
	return n
}

// Len returns the size of the packet Encode writes (whether or not the
// fields are valid).
func (f *Fields) Len() int {
	return f.ipHeaderLen() + TCPMinimumSize + f.optionsLen() + len(f.Payload)
}

// valid reports whether Encode can build a packet from f.
func (f *Fields) valid() bool {
	s, d := f.Src.Addr(), f.Dst.Addr()
	if !s.IsValid() || !d.IsValid() || s.Is4() != d.Is4() || f.WScale > MaxWindowScale {
		return false
	}
	if s.Is4() {
		return f.Len() <= 0xffff
	}
	return f.Len()-IPv6MinimumSize <= 0xffff
}

// Encode writes the packet described by f at the start of dst and returns
// its length, f.Len(), or 0 if dst is shorter than that or f is invalid
// (mixed address families, WScale above 14, a packet above 65535 bytes).
// It does not allocate.
//
// The IPv4 header has no options, TOS 0, the given ID, TTL and DF; the
// IPv6 header has traffic class and flow label 0 and no extension headers.
// The TCP options are laid out as Linux's tcp_options_write lays them out,
// each in 32-bit words, in this order:
//
//	MSS                          02 04 mm mm
//	SACK-permitted + timestamps  04 02 08 0a vv vv vv vv ee ee ee ee
//	 or timestamps alone         01 01 08 0a vv vv vv vv ee ee ee ee
//	 or SACK-permitted alone     01 01 04 02
//	window scale                 01 03 03 ss
//
// so a Linux SYN is MSS, SACK_PERM+TS, NOP+WS, and an ACK with timestamps is
// NOP, NOP, TS. Both checksums are computed.
func (f *Fields) Encode(dst []byte) int {
	n := f.Len()
	if len(dst) < n || !f.valid() {
		return 0
	}
	b := dst[:n]
	ttl := f.TTL
	if ttl == 0 {
		ttl = defaultTTL
	}
	ihl, ver := f.ipHeaderLen(), uint8(6)
	if ihl == IPv4MinimumSize {
		ver = 4
		h := IPv4(b)
		h.SetVersionIHL(IPv4MinimumSize)
		h.SetTOS(0)
		h.SetTotalLength(uint16(n))
		h.SetID(f.ID)
		var fl uint8
		if f.DontFragment {
			fl = IPv4FlagDontFragment
		}
		h.SetFlagsFragmentOffset(fl, 0)
		h.SetTTL(ttl)
		h.SetProtocol(ProtocolTCP)
		h.SetSrc(f.Src.Addr())
		h.SetDst(f.Dst.Addr())
		h.SetChecksum(h.CalculateChecksum())
	} else {
		h := IPv6(b)
		h.SetVersionTCFlow(0, 0)
		h.SetPayloadLength(uint16(n - IPv6MinimumSize))
		h.SetNextHeader(ProtocolTCP)
		h.SetHopLimit(ttl)
		h.SetSrc(f.Src.Addr())
		h.SetDst(f.Dst.Addr())
	}

	t := TCP(b[ihl:])
	thl := TCPMinimumSize + f.optionsLen()
	t.SetSrcPort(f.Src.Port())
	t.SetDstPort(f.Dst.Port())
	t.SetSeq(f.Seq)
	t.SetAck(f.Ack)
	t.SetDataOffset(thl)
	t.SetFlags(f.Flags)
	t.SetWindow(f.Window)
	t.SetChecksum(0)
	t.SetUrgentPtr(0)
	o := t[TCPMinimumSize:thl]
	if f.MSS != 0 {
		o[0], o[1] = TCPOptionMSS, TCPOptionMSSLen
		put16(o, 2, f.MSS)
		o = o[4:]
	}
	switch {
	case f.HasTS:
		if f.SACKPermitted {
			o[0], o[1] = TCPOptionSACKPermitted, TCPOptionSACKPermittedLen
		} else {
			o[0], o[1] = TCPOptionNOP, TCPOptionNOP
		}
		o[2], o[3] = TCPOptionTimestamp, TCPOptionTimestampLen
		put32(o, 4, f.TSVal)
		put32(o, 8, f.TSEcr)
		o = o[12:]
	case f.SACKPermitted:
		o[0], o[1], o[2], o[3] = TCPOptionNOP, TCPOptionNOP, TCPOptionSACKPermitted, TCPOptionSACKPermittedLen
		o = o[4:]
	}
	if f.WScale >= 0 {
		o[0], o[1], o[2], o[3] = TCPOptionNOP, TCPOptionWindowScale, TCPOptionWindowScaleLen, uint8(f.WScale)
	}
	copy(t[thl:], f.Payload)
	t.SetChecksum(t.CalculateChecksum(pseudoFromPacket(b, ver, len(t))))
	return n
}
