package ipfrag

import (
	"encoding/binary"
	"net/netip"

	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
)

var (
	client4 = netip.MustParseAddr("192.0.2.10")
	server4 = netip.MustParseAddr("192.0.2.1")
	client6 = netip.MustParseAddr("2001:db8:1::10")
	server6 = netip.MustParseAddr("2001:db8:1::1")
)

// udp4 builds an IPv4 UDP datagram (no DF, ID 0x1234, TTL 64) with n
// payload bytes and valid checksums, after opts IPv4 option bytes.
func udp4(n int, opts ...byte) []byte {
	hl := 20 + len(opts)
	b := make([]byte, hl+8+n)
	b[0] = 0x40 | byte(hl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:], 0x1234)
	b[8], b[9] = 64, 17
	s, d := client4.As4(), server4.As4()
	copy(b[12:], s[:])
	copy(b[16:], d[:])
	copy(b[20:], opts)
	fillUDP(b[hl:], n, ipmangle.PseudoHeaderChecksum(client4, server4, 17, 8+n))
	h := ipmangle.IPv4(b)
	h.SetChecksum(h.CalculateChecksum())
	return b
}

// ext is an IPv6 extension header for udp6: its type and its bytes (the
// first, its Next Header, is filled in by udp6).
type ext struct {
	typ byte
	b   []byte
}

var (
	hopByHop = ext{protoHopByHop, []byte{0, 0, 1, 4, 0, 0, 0, 0}}  // PadN(4)
	dstOpts  = ext{protoDstOpts, []byte{0, 0, 1, 4, 0, 0, 0, 0}}   // PadN(4)
	routing  = ext{protoRouting, []byte{0, 0, 253, 0, 0, 0, 0, 0}} // experimental type 253, segments left 0
)

// udp6 builds an IPv6 UDP datagram (hop limit 64) with n payload bytes
// after the extension headers exts, and a valid UDP checksum.
func udp6(n int, exts ...ext) []byte {
	hl := 40
	for _, e := range exts {
		hl += len(e.b)
	}
	b := make([]byte, hl+8+n)
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
	b[7] = 64
	s, d := client6.As16(), server6.As16()
	copy(b[8:], s[:])
	copy(b[24:], d[:])
	nhOff, off := 6, 40
	for _, e := range exts {
		b[nhOff] = e.typ
		copy(b[off:], e.b)
		nhOff = off
		off += len(e.b)
	}
	b[nhOff] = 17
	fillUDP(b[hl:], n, ipmangle.PseudoHeaderChecksum(client6, server6, 17, 8+n))
	return b
}

// fillUDP writes a UDP header (ports 40000 → 53) and a counting payload
// of n bytes into b, with the checksum over pseudo.
func fillUDP(b []byte, n int, pseudo uint32) {
	binary.BigEndian.PutUint16(b[0:], 40000)
	binary.BigEndian.PutUint16(b[2:], 53)
	binary.BigEndian.PutUint16(b[4:], uint16(8+n))
	for i := range n {
		b[8+i] = byte(i*7 + i>>8)
	}
	c := ipmangle.Checksum(b[:8+n], pseudo)
	if c == 0 {
		c = 0xffff
	}
	binary.BigEndian.PutUint16(b[6:], c)
}

// fragments splits pkt to mtu with id and returns copies of the
// fragments.
func fragments(pkt []byte, mtu int, id uint32) [][]byte {
	var f Fragmenter
	if !f.Reset(pkt, mtu, id) {
		return nil
	}
	buf := make([]byte, mtu)
	var out [][]byte
	for frag := f.Next(buf); frag != nil; frag = f.Next(buf) {
		out = append(out, append([]byte(nil), frag...))
	}
	return out
}
