package wire

import (
	"fmt"
)

// Offer layout: a version-6 client message (C msg_clt_t) whose client
// address and port are zero and whose type is Version6. C intercept reads the
// first 8 bytes (C MSG_CLT_MIN_SIZE), requires the zero address, only warns
// about the type, and reads and ignores bytes 8..13; we put the Magic and the
// highest version tcpcopy speaks there.
const (
	offerTypeOff    = 6
	offerMagicOff   = 8
	offerVersionOff = 12
)

// AppendOffer appends the 14-byte handshake every tcpcopy connection starts
// with. With v7 false it is exactly C tcpcopy's handshake (all zero except
// type = 6); with v7 true bytes 8..11 carry [Magic] and bytes 12..13 the
// highest version offered (7), which a C intercept ignores.
func AppendOffer(dst []byte, v7 bool) []byte {
	var m [ClientMsgSize]byte
	be.PutUint16(m[offerTypeOff:], Version6)
	if v7 {
		copy(m[offerMagicOff:], Magic)
		be.PutUint16(m[offerVersionOff:], Version7)
	}
	return append(dst, m[:]...)
}

// Offer is the decoded handshake of a tcpcopy connection.
type Offer struct {
	// Type is the handshake's type field, C INTERNAL_VERSION: 6 for C
	// TCPCopy 1.x and for us. C intercept only warns on a mismatch, and so
	// do we (the caller may log it).
	Type uint16
	// MaxVersion is the highest version the client speaks: Version6 for a
	// handshake without [Magic] (any C tcpcopy), else the version field of
	// the offer (saturated to 255).
	MaxVersion uint8
}

// parseOffer decodes a 14-byte handshake. C intercept rejects a first
// message whose client address or port is not zero ("client too old").
func parseOffer(m []byte) (Offer, error) {
	for _, c := range m[:offerTypeOff] {
		if c != 0 {
			return Offer{}, fmt.Errorf("%w: handshake client address not zero (not a TCPCopy 1.x client)", ErrFraming)
		}
	}
	o := Offer{Type: be.Uint16(m[offerTypeOff:]), MaxVersion: Version6}
	if string(m[offerMagicOff:offerMagicOff+len(Magic)]) == Magic {
		v := be.Uint16(m[offerVersionOff:])
		o.MaxVersion = uint8(min(v, 255))
	}
	return o, nil
}

// Hello layout, sent by our intercept in answer to an offer carrying Magic.
// Byte 0..1 are zero: a C combined frame starts with a count of 1..16 and a
// C plain stream with an IPv4 header (0x45..0x4f), so no C intercept ever
// sends 0x0000 first.
const (
	helloMagicOff   = 2
	helloLenOff     = 6
	helloVersionOff = 8
	helloFlagsOff   = 9
	helloPrefixOff  = 10
	helloCompareOff = 12 // version 7: u16 longest compare window, 0 none

	helloFlagCombined = 1 << 0
	helloFlagPayload  = 1 << 1
	helloFlagUDP      = 1 << 3 // version 7: intercept routes UDP answers
)

// AppendHello appends the Hello our intercept sends in answer to an offer
// carrying [Magic]: the version it will speak and, for version 6, the
// framing (so a Go tcpcopy needs no matching configuration), for version 7
// the longest payload prefix it will put in records. Answering Version6
// lets a Go intercept that has version 7 disabled save the client its
// timeout. With f.Auth (version 7) the flags say that a challenge
// ([AppendChallenge]) follows; with f.UDP that intercept routes UDP
// answers. f must be valid.
func AppendHello(dst []byte, f Format) []byte {
	f.mustValid()
	var h [HelloLen]byte
	copy(h[helloMagicOff:], Magic)
	be.PutUint16(h[helloLenOff:], HelloLen)
	h[helloVersionOff] = f.Version
	if f.Version == Version6 {
		if f.Combined {
			h[helloFlagsOff] |= helloFlagCombined
		}
		if f.Payload {
			h[helloFlagsOff] |= helloFlagPayload
		}
	} else {
		be.PutUint16(h[helloPrefixOff:], uint16(f.PrefixLen))
		be.PutUint16(h[helloCompareOff:], uint16(f.Compare))
		if f.Auth {
			h[helloFlagsOff] |= helloFlagAuth
		}
		if f.UDP {
			h[helloFlagsOff] |= helloFlagUDP
		}
	}
	return append(dst, h[:]...)
}

// ServerKind classifies the first bytes intercept sends on a connection.
type ServerKind uint8

// Results of [ClassifyServerBytes].
const (
	// ServerNeedMore: too few bytes to decide.
	ServerNeedMore ServerKind = iota
	// ServerHello: the bytes start with a Hello of the returned length.
	ServerHello
	// ServerRecords: the bytes are a version-6 record stream (a C intercept
	// or ours without version 7); nothing is consumed.
	ServerRecords
	// ServerInvalid: the bytes start with 0x0000 but are not a valid Hello.
	ServerInvalid
)

// String returns the kind's name.
func (k ServerKind) String() string {
	switch k {
	case ServerNeedMore:
		return "need-more"
	case ServerHello:
		return "hello"
	case ServerRecords:
		return "records"
	case ServerInvalid:
		return "invalid"
	}
	return fmt.Sprintf("ServerKind(%d)", uint8(k))
}

// ClassifyServerBytes classifies b, the first bytes received from intercept.
// For ServerHello n is the Hello's length (bytes to consume, <= len(b)); for
// ServerNeedMore n is the smallest total length that can decide; otherwise
// n is 0. It never reads beyond b and never allocates.
func ClassifyServerBytes(b []byte) (k ServerKind, n int) {
	if len(b) >= 1 && b[0] != 0 || len(b) >= 2 && b[1] != 0 {
		return ServerRecords, 0
	}
	for i := 0; i < len(Magic) && helloMagicOff+i < len(b); i++ {
		if b[helloMagicOff+i] != Magic[i] {
			return ServerInvalid, 0
		}
	}
	if len(b) < helloVersionOff {
		return ServerNeedMore, helloVersionOff
	}
	l := int(be.Uint16(b[helloLenOff:]))
	if l < HelloLen || l > MaxHelloLen {
		return ServerInvalid, 0
	}
	if len(b) < l {
		return ServerNeedMore, l
	}
	return ServerHello, l
}

// ParseHello decodes a Hello whose length ClassifyServerBytes reported; b
// may extend past it. Bytes of the Hello beyond the fields known here are
// ignored (a longer Hello from a newer peer is fine); reserved flag bits are
// ignored. A prefix length above MaxPrefixLen is clamped. For version 7,
// flag bit 2 sets Format.Auth: the caller must authenticate
// ([RecordReader.ReadChallenge]) before anything else.
func ParseHello(b []byte) (Format, error) {
	k, n := ClassifyServerBytes(b)
	if k != ServerHello {
		return Format{}, fmt.Errorf("%w: not a hello (%v)", ErrFraming, k)
	}
	h := b[:n]
	f := Format{Version: h[helloVersionOff]}
	switch f.Version {
	case Version6:
		f.Combined = h[helloFlagsOff]&helloFlagCombined != 0
		f.Payload = h[helloFlagsOff]&helloFlagPayload != 0
	case Version7:
		f.PrefixLen = min(int(be.Uint16(h[helloPrefixOff:])), MaxPrefixLen)
		f.Compare = min(int(be.Uint16(h[helloCompareOff:])), MaxPrefixLen)
		f.Auth = h[helloFlagsOff]&helloFlagAuth != 0
		f.UDP = h[helloFlagsOff]&helloFlagUDP != 0
	default:
		return Format{}, fmt.Errorf("%w: hello with unknown version %d", ErrFraming, f.Version)
	}
	return f, nil
}
