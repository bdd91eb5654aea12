package ipfrag

import (
	"encoding/binary"
	"net/netip"
)

// Kind says what [Fragment.Decode] found.
type Kind uint8

// Decode outcomes.
const (
	// NotFragment: not an IPv4 or IPv6 fragment (a whole packet, an IPv6
	// atomic fragment, or not IP at all).
	NotFragment Kind = iota
	// IsFragment: a well-formed fragment whose data is all in the buffer.
	IsFragment
	// Truncated: a fragment whose data the buffer does not hold whole (a
	// capture snap length cut it). It cannot be reassembled.
	Truncated
	// Malformed: a fragment whose length fields or extension headers are
	// inconsistent.
	Malformed
)

// maxExtHeaders bounds the IPv6 extension header walk (as package
// ipmangle does).
const maxExtHeaders = 16

// IPv6 next header numbers walked by Decode (RFC 8200 §4, RFC 4302).
const (
	protoHopByHop = 0
	protoRouting  = 43
	protoFragment = 44
	protoAH       = 51
	protoDstOpts  = 60
)

// Fragment is what Decode reads of one fragment. Offsets are from the
// start of the packet (its IP header).
type Fragment struct {
	// Version is 4 or 6.
	Version uint8
	// Src and Dst are the packet's addresses.
	Src, Dst netip.Addr
	// ID is the IPv4 identification (16 bits) or the IPv6 Fragment
	// Identification (32 bits).
	ID uint32
	// Proto is the IPv4 protocol, or the Next Header of the IPv6 Fragment
	// header: the transport of the whole datagram (17 for UDP).
	Proto uint8
	// Offset is where the fragment's data goes in the datagram's
	// fragmentable part, in bytes (a multiple of 8).
	Offset int
	// More is the MF (IPv4) or M (IPv6) flag: more fragments follow.
	More bool
	// DataOff is the offset of the fragment's data: the IPv4 header
	// length, or the end of the IPv6 Fragment header.
	DataOff int
	// DataLen is the data length according to the IP length field.
	DataLen int
	// FragHeaderOff is, for IPv6, the offset of the Fragment header: the
	// length of the unfragmentable part (fixed header and the extension
	// headers before the Fragment header).
	FragHeaderOff int
	// NextHeaderOff is, for IPv6, the offset of the byte that names the
	// Fragment header (6 in the fixed header, or the first byte of the
	// extension header before it).
	NextHeaderOff int
}

// Decode fills f from the packet b (starting at its IP header) and says
// whether it is a fragment. It never allocates, never panics and reads
// nothing outside b. f's fields are meaningful for IsFragment, and for
// Truncated except DataLen's bytes being in b; for a Malformed IPv4
// fragment only Proto is set.
//
//   - IPv4: MF set or a non-zero fragment offset. The header length must
//     be at least 20 and the total length at least the header length.
//   - IPv6: a Fragment header reached through Hop-by-Hop (first only),
//     Destination Options, Routing and AH headers, with M set or a
//     non-zero offset (RFC 6946: offset 0 without M is an atomic fragment,
//     a whole packet). Payload length 0 (a jumbogram) is not a fragment.
func (f *Fragment) Decode(b []byte) Kind {
	*f = Fragment{}
	if len(b) == 0 {
		return NotFragment
	}
	switch b[0] >> 4 {
	case 4:
		return f.decode4(b)
	case 6:
		return f.decode6(b)
	}
	return NotFragment
}

func (f *Fragment) decode4(b []byte) Kind {
	if len(b) < 20 {
		return NotFragment
	}
	ff := binary.BigEndian.Uint16(b[6:])
	more, off := ff&0x2000 != 0, int(ff&0x1fff)*8
	if !more && off == 0 {
		return NotFragment
	}
	hl := int(b[0]&0x0f) * 4
	tl := int(binary.BigEndian.Uint16(b[2:]))
	if hl < 20 || tl < hl || hl > len(b) {
		f.Proto = b[9] // so that the caller can count it by protocol
		return Malformed
	}
	f.Version = 4
	f.Src = netip.AddrFrom4([4]byte(b[12:16]))
	f.Dst = netip.AddrFrom4([4]byte(b[16:20]))
	f.ID = uint32(binary.BigEndian.Uint16(b[4:]))
	f.Proto = b[9]
	f.Offset = off
	f.More = more
	f.DataOff = hl
	f.DataLen = tl - hl
	if tl > len(b) {
		return Truncated
	}
	return IsFragment
}

func (f *Fragment) decode6(b []byte) Kind {
	if len(b) < 40 {
		return NotFragment
	}
	pl := int(binary.BigEndian.Uint16(b[4:]))
	if pl == 0 {
		return NotFragment
	}
	end := 40 + pl
	nh, nhOff, off := b[6], 6, 40
	for n := 0; ; n++ {
		if n == maxExtHeaders {
			return NotFragment
		}
		switch nh {
		case protoHopByHop, protoRouting, protoDstOpts, protoAH, protoFragment:
		default:
			return NotFragment // the transport, before any Fragment header
		}
		if off+8 > end || off+8 > len(b) {
			// The header is cut: a fragment we cannot see, or junk.
			return NotFragment
		}
		if nh == protoFragment {
			fo := binary.BigEndian.Uint16(b[off+2:])
			if fo&0xfff9 == 0 {
				return NotFragment // atomic fragment: a whole packet
			}
			f.Version = 6
			f.Src = netip.AddrFrom16([16]byte(b[8:24]))
			f.Dst = netip.AddrFrom16([16]byte(b[24:40]))
			f.ID = binary.BigEndian.Uint32(b[off+4:])
			f.Proto = b[off]
			f.Offset = int(fo &^ 7)
			f.More = fo&1 != 0
			f.DataOff = off + 8
			f.DataLen = end - off - 8
			f.FragHeaderOff = off
			f.NextHeaderOff = nhOff
			if end > len(b) {
				return Truncated
			}
			return IsFragment
		}
		var hl int
		switch nh {
		case protoHopByHop:
			if off != 40 {
				return NotFragment
			}
			hl = (int(b[off+1]) + 1) * 8
		case protoAH:
			hl = (int(b[off+1]) + 2) * 4
		default:
			hl = (int(b[off+1]) + 1) * 8
		}
		nh, nhOff = b[off], off
		off += hl
	}
}
