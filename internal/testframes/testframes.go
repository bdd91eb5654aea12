// Package testframes builds real Ethernet frames carrying IPv4 or IPv6
// with TCP or UDP, checksums included, for the filter and capture tests of
// pkg/bpfgen, pkg/capture and pkg/pcapfilter. It is used by tests only.
package testframes

import (
	"encoding/binary"
	"net/netip"
)

// Frame describes one Ethernet frame carrying IPv4 or IPv6.
type Frame struct {
	VLAN      uint16 // 802.1Q VID carried in-band; 0 = untagged
	Src, Dst  netip.Addr
	Proto     uint8 // IP protocol / IPv6 next header of the transport: 6 TCP, 17 UDP
	SPort     uint16
	DPort     uint16
	IPOpts    int    // IPv4 option bytes (multiple of 4, at most 40): NOPs
	FragOff   uint16 // IPv4 fragment offset in 8-byte units
	MoreFrags bool   // IPv4 MF flag
	HopByHop  bool   // IPv6: an 8-byte hop-by-hop header before the transport
	Frag6     bool   // IPv6: a fragment header (M set) before the transport
	Frag6Off  uint16 // IPv6: that fragment header's offset in 8-byte units (0: the first fragment)
	Payload   int    // bytes of transport payload
}

var (
	macDst = [6]byte{0x02, 0, 0, 0, 0, 0x01}
	macSrc = [6]byte{0x02, 0, 0, 0, 0, 0x02}
)

// Bytes encodes the frame with valid IPv4, TCP and UDP checksums.
func (f Frame) Bytes() []byte {
	b := append([]byte(nil), macDst[:]...)
	b = append(b, macSrc[:]...)
	if f.VLAN != 0 {
		b = binary.BigEndian.AppendUint16(b, 0x8100) // TPID
		b = binary.BigEndian.AppendUint16(b, f.VLAN) // PCP 0, DEI 0, VID
	}
	l4 := f.transport()
	if f.Src.Is4() {
		b = binary.BigEndian.AppendUint16(b, 0x0800)
		ihl := 20 + f.IPOpts
		ip := make([]byte, ihl)
		ip[0] = 0x40 | byte(ihl/4)                              // version 4, IHL
		binary.BigEndian.PutUint16(ip[2:], uint16(ihl+len(l4))) // total length
		binary.BigEndian.PutUint16(ip[4:], 0x1234)              // identification
		fl := f.FragOff & 0x1fff                                // fragment offset
		if f.MoreFrags {
			fl |= 0x2000 // MF
		}
		binary.BigEndian.PutUint16(ip[6:], fl)
		ip[8] = 64      // TTL
		ip[9] = f.Proto // protocol
		s, d := f.Src.As4(), f.Dst.As4()
		copy(ip[12:], s[:])
		copy(ip[16:], d[:])
		for i := 20; i < ihl; i++ {
			ip[i] = 1 // NOP option
		}
		binary.BigEndian.PutUint16(ip[10:], ^fold(sum(0, ip)))
		f.l4Checksum(l4, s[:], d[:])
		return append(append(b, ip...), l4...)
	}
	b = binary.BigEndian.AppendUint16(b, 0x86dd)
	ip := make([]byte, 40)
	ip[0] = 0x60 // version 6
	var ext []byte
	ip[6] = f.Proto // next header
	switch {
	case f.HopByHop:
		ext = []byte{f.Proto, 0, 1, 4, 0, 0, 0, 0} // next header, length 0, PadN(4)
		ip[6] = 0
	case f.Frag6:
		ext = []byte{f.Proto, 0, 0, 1, 0, 0, 0x12, 0x34} // next header, offset + M, identification
		binary.BigEndian.PutUint16(ext[2:], f.Frag6Off<<3|1)
		ip[6] = 44
	}
	binary.BigEndian.PutUint16(ip[4:], uint16(len(ext)+len(l4))) // payload length
	ip[7] = 64                                                   // hop limit
	s, d := f.Src.As16(), f.Dst.As16()
	copy(ip[8:], s[:])
	copy(ip[24:], d[:])
	f.l4Checksum(l4, s[:], d[:])
	return append(append(append(b, ip...), ext...), l4...)
}

func (f Frame) transport() []byte {
	var l4 []byte
	switch f.Proto {
	case 6:
		l4 = make([]byte, 20+f.Payload)
		binary.BigEndian.PutUint32(l4[4:], 1000) // sequence number
		l4[12] = 5 << 4                          // data offset
		l4[13] = 0x02                            // SYN
		binary.BigEndian.PutUint16(l4[14:], 65535)
	case 17:
		l4 = make([]byte, 8+f.Payload)
		binary.BigEndian.PutUint16(l4[4:], uint16(len(l4)))
	default:
		l4 = make([]byte, 8+f.Payload)
	}
	binary.BigEndian.PutUint16(l4[0:], f.SPort)
	binary.BigEndian.PutUint16(l4[2:], f.DPort)
	for i := len(l4) - f.Payload; i < len(l4); i++ {
		l4[i] = byte(i)
	}
	return l4
}

func (f Frame) l4Checksum(l4, src, dst []byte) {
	var off int
	switch f.Proto {
	case 6:
		off = 16
	case 17:
		off = 6
	default:
		return
	}
	var ph uint32
	ph = sum(ph, src)
	ph = sum(ph, dst)
	ph += uint32(f.Proto) + uint32(len(l4))
	binary.BigEndian.PutUint16(l4[off:], ^fold(sum(ph, l4)))
}

// sum adds b to the RFC 1071 one's complement accumulator acc.
func sum(acc uint32, b []byte) uint32 {
	for len(b) >= 2 {
		acc += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		acc += uint32(b[0]) << 8
	}
	return acc
}

// fold folds the carries of an RFC 1071 accumulator into 16 bits.
func fold(acc uint32) uint16 {
	for acc>>16 != 0 {
		acc = acc&0xffff + acc>>16
	}
	return uint16(acc)
}
