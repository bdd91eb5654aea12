package ipfrag

import (
	"encoding/binary"

	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
)

// IPv4 option bits (RFC 791 §3.1).
const (
	optEOL    = 0
	optNOP    = 1
	optCopied = 0x80
)

// Fragmenter splits one whole IPv4 or IPv6 datagram into fragments of at
// most an MTU (see the package documentation for the headers they get).
//
// Usage, with buf at least mtu bytes long:
//
//	if f.Reset(pkt, mtu, id) {
//		for frag := f.Next(buf); frag != nil; frag = f.Next(buf) {
//			send(frag)
//		}
//	}
//
// A datagram that fits the MTU yields one packet equal to it. The zero
// Fragmenter is done. A Fragmenter reads the datagram given to Reset
// until it is done or reset again, never writes it, and never allocates.
type Fragmenter struct {
	pkt     []byte
	version uint8
	// hdr1 is the header of the first fragment, hdr2 that of the others
	// (IPv4: the options without the copied flag removed); for IPv6 both
	// are the unfragmentable part.
	hdr1, hdr2 []byte
	opts       [60]byte // hdr2's storage for IPv4
	nhOff      int      // IPv6: the byte naming the header after the unfragmentable part
	nh         uint8    // IPv6: that header's type, the Fragment header's Next Header
	data       []byte   // the fragmentable part
	mtu        int
	id         uint32
	off        int // data bytes emitted
	whole      bool
	busy       bool
}

// Reset prepares f to fragment the datagram pkt (starting at its IP
// header, exactly as long as its IP length field says) to mtu bytes, with
// identification id (IPv4 uses its low 16 bits; Linux's raw sockets
// replace an IPv4 identification of 0, so give another one). It returns
// false, leaving f done, if pkt is not a whole well-formed IPv4 or IPv6
// datagram (already a fragment, an IPv6 jumbogram, lengths that disagree
// with len(pkt)), or if mtu leaves no room for 8 bytes of data after the
// headers while pkt does not fit.
func (f *Fragmenter) Reset(pkt []byte, mtu int, id uint32) bool {
	*f = Fragmenter{}
	if len(pkt) == 0 {
		return false
	}
	switch pkt[0] >> 4 {
	case 4:
		if !f.reset4(pkt) {
			return false
		}
	case 6:
		if !f.reset6(pkt) {
			return false
		}
	default:
		return false
	}
	f.pkt, f.mtu, f.id = pkt, mtu, id
	if len(pkt) <= mtu {
		f.whole, f.busy = true, true
		return true
	}
	extra := 0
	if f.version == 6 {
		extra = 8 // the Fragment header
	}
	if mtu-len(f.hdr1)-extra < 8 || mtu-len(f.hdr2)-extra < 8 {
		*f = Fragmenter{}
		return false
	}
	f.busy = true
	return true
}

func (f *Fragmenter) reset4(pkt []byte) bool {
	h := ipmangle.IPv4(pkt)
	if !h.IsValid(len(pkt)) || int(h.TotalLength()) != len(pkt) || h.Flags()&ipmangle.IPv4FlagMoreFragments != 0 || h.FragmentOffset() != 0 {
		return false
	}
	hl := h.HeaderLength()
	f.version = 4
	f.hdr1 = pkt[:hl]
	f.data = pkt[hl:]
	// Later fragments: the fixed header and the copied options, padded
	// with EOL to a multiple of 4.
	n := copy(f.opts[:], pkt[:20])
	for i := 20; i < hl; {
		t := pkt[i]
		if t == optEOL {
			break
		}
		if t == optNOP {
			i++
			continue
		}
		if i+1 >= hl || pkt[i+1] < 2 || i+int(pkt[i+1]) > hl {
			break // malformed: keep what was copied
		}
		l := int(pkt[i+1])
		if t&optCopied != 0 {
			n += copy(f.opts[n:], pkt[i:i+l])
		}
		i += l
	}
	for n%4 != 0 {
		f.opts[n] = optEOL
		n++
	}
	f.hdr2 = f.opts[:n]
	return true
}

func (f *Fragmenter) reset6(pkt []byte) bool {
	if len(pkt) < 40 {
		return false
	}
	pl := int(binary.BigEndian.Uint16(pkt[4:]))
	if pl == 0 || 40+pl != len(pkt) {
		return false
	}
	// The unfragmentable part ends after the last Routing header, or after
	// the Hop-by-Hop header when there is no Routing header (RFC 8200
	// §4.5). Destination Options before a Routing header belong to it.
	unfrag, nhOff := 40, 6
	nh, off := pkt[6], 40
walk:
	for range maxExtHeaders {
		switch nh {
		case protoHopByHop, protoRouting, protoDstOpts:
		case protoFragment:
			return false // already fragmented
		default:
			break walk
		}
		if off+8 > len(pkt) {
			return false
		}
		hl := (int(pkt[off+1]) + 1) * 8
		if off+hl > len(pkt) || (nh == protoHopByHop && off != 40) {
			return false
		}
		if nh == protoHopByHop || nh == protoRouting {
			unfrag, nhOff = off+hl, off
		}
		nh = pkt[off]
		off += hl
	}
	f.version = 6
	f.hdr1 = pkt[:unfrag]
	f.hdr2 = f.hdr1
	f.nhOff = nhOff
	f.nh = pkt[nhOff]
	f.data = pkt[unfrag:]
	return true
}

// Next writes the next fragment into buf (at least the MTU given to Reset
// long) and returns it, or nil when there are no more.
func (f *Fragmenter) Next(buf []byte) []byte {
	if !f.busy {
		return nil
	}
	if f.whole {
		f.busy = false
		return buf[:copy(buf, f.pkt)]
	}
	hdr := f.hdr2
	if f.off == 0 {
		hdr = f.hdr1
	}
	if f.version == 4 {
		return f.next4(buf, hdr)
	}
	return f.next6(buf, hdr)
}

func (f *Fragmenter) next4(buf, hdr []byte) []byte {
	chunk := (f.mtu - len(hdr)) &^ 7
	n := min(chunk, len(f.data)-f.off)
	more := f.off+n < len(f.data)
	hl := copy(buf, hdr)
	copy(buf[hl:], f.data[f.off:f.off+n])
	h := ipmangle.IPv4(buf)
	h.SetVersionIHL(hl)
	h.SetTotalLength(uint16(hl + n))
	h.SetID(uint16(f.id))
	var flags uint8
	if more {
		flags = ipmangle.IPv4FlagMoreFragments
	}
	h.SetFlagsFragmentOffset(flags, uint16(f.off))
	h.SetChecksum(h.CalculateChecksum())
	f.off += n
	f.busy = more
	return buf[:hl+n]
}

func (f *Fragmenter) next6(buf, hdr []byte) []byte {
	chunk := (f.mtu - len(hdr) - 8) &^ 7
	n := min(chunk, len(f.data)-f.off)
	more := f.off+n < len(f.data)
	u := copy(buf, hdr)
	buf[f.nhOff] = protoFragment
	fh := buf[u : u+8]
	fh[0] = f.nh
	fh[1] = 0
	fo := uint16(f.off)
	if more {
		fo |= 1
	}
	binary.BigEndian.PutUint16(fh[2:], fo)
	binary.BigEndian.PutUint32(fh[4:], f.id)
	copy(buf[u+8:], f.data[f.off:f.off+n])
	binary.BigEndian.PutUint16(buf[4:], uint16(u+8+n-40))
	f.off += n
	f.busy = more
	return buf[:u+8+n]
}
