package ipmangle

import (
	"encoding/binary"
)

// Offsets of the TCP header fields (RFC 9293 §3.1).
const (
	tcpSrcPort    = 0
	tcpDstPort    = 2
	tcpSeq        = 4
	tcpAck        = 8
	tcpDataOffset = 12
	tcpFlags      = 13
	tcpWindow     = 14
	tcpChecksum   = 16
	tcpUrgent     = 18
)

const (
	// TCPMinimumSize is the size of a TCP header without options.
	TCPMinimumSize = 20
	// TCPMaximumHeaderSize is the size of a TCP header with 40 bytes of
	// options (data offset 15).
	TCPMaximumHeaderSize = 60
)

// TCP option kinds (RFC 9293 §3.2, RFC 7323 §2-3) and the lengths this
// package accepts for them.
const (
	TCPOptionEOL           = 0
	TCPOptionNOP           = 1
	TCPOptionMSS           = 2
	TCPOptionWindowScale   = 3
	TCPOptionSACKPermitted = 4
	TCPOptionSACK          = 5
	TCPOptionTimestamp     = 8

	TCPOptionMSSLen           = 4
	TCPOptionWindowScaleLen   = 3
	TCPOptionSACKPermittedLen = 2
	TCPOptionTimestampLen     = 10

	// MaxWindowScale is the largest window scale shift RFC 7323 §2.3
	// allows; larger values are taken as 14.
	MaxWindowScale = 14
)

// TCPFlags is the TCP flags byte (byte 13 of the header; RFC 9293 §3.1,
// RFC 3168 for ECE and CWR). The ninth flag bit (AE/NS, in byte 12) is not
// part of it.
type TCPFlags uint8

// TCP flag bits.
const (
	FIN TCPFlags = 1 << iota
	SYN
	RST
	PSH
	ACK
	URG
	ECE
	CWR
)

// Has reports whether all bits of f2 are set in f.
func (f TCPFlags) Has(f2 TCPFlags) bool { return f&f2 == f2 }

var flagNames [256]string

func init() {
	const letters = "FSRPAUEC"
	for i := range flagNames {
		var buf [8]byte
		n := 0
		for bit := range 8 {
			if i&(1<<bit) != 0 {
				buf[n] = letters[bit]
				n++
			}
		}
		if n == 0 {
			flagNames[i] = "-"
			continue
		}
		flagNames[i] = string(buf[:n])
	}
}

// String returns one letter per set flag, from the lowest bit up:
// F(IN) S(YN) R(ST) P(SH) A(CK) U(RG) E(CE) C(WR); SYN|ACK is "SA",
// PSH|ACK is "PA", and no flag is "-". It does not allocate.
func (f TCPFlags) String() string { return flagNames[f] }

// TCP is a view of a TCP header (RFC 9293 §3.1), possibly followed by its
// payload. Accessors read fixed offsets and panic if the slice is shorter
// than 20 bytes: check [TCP.IsValid] (or decode with [Parsed.Decode])
// first. Setters write one raw field and do not update the checksum; use
// the package-level rewrites (SetSeq, SetAck, ...) on a packet whose
// checksum must stay right.
type TCP []byte

// SrcPort returns the source port.
func (b TCP) SrcPort() uint16 { return binary.BigEndian.Uint16(b[tcpSrcPort:]) }

// DstPort returns the destination port.
func (b TCP) DstPort() uint16 { return binary.BigEndian.Uint16(b[tcpDstPort:]) }

// Seq returns the sequence number.
func (b TCP) Seq() uint32 { return binary.BigEndian.Uint32(b[tcpSeq:]) }

// Ack returns the acknowledgment number.
func (b TCP) Ack() uint32 { return binary.BigEndian.Uint32(b[tcpAck:]) }

// DataOffset returns the header length in bytes (data offset × 4).
func (b TCP) DataOffset() int { return int(b[tcpDataOffset]>>4) * 4 }

// Flags returns the flags byte.
func (b TCP) Flags() TCPFlags { return TCPFlags(b[tcpFlags]) }

// Window returns the window field (unscaled).
func (b TCP) Window() uint16 { return binary.BigEndian.Uint16(b[tcpWindow:]) }

// Checksum returns the checksum field.
func (b TCP) Checksum() uint16 { return binary.BigEndian.Uint16(b[tcpChecksum:]) }

// UrgentPtr returns the urgent pointer.
func (b TCP) UrgentPtr() uint16 { return binary.BigEndian.Uint16(b[tcpUrgent:]) }

// Options returns the option bytes, b[20:DataOffset], or nil if the data
// offset is below 20 or beyond the slice. The result aliases b.
func (b TCP) Options() []byte {
	n := b.DataOffset()
	if n <= TCPMinimumSize || n > len(b) {
		return nil
	}
	return b[TCPMinimumSize:n]
}

// SetSrcPort sets the source port.
func (b TCP) SetSrcPort(v uint16) { binary.BigEndian.PutUint16(b[tcpSrcPort:], v) }

// SetDstPort sets the destination port.
func (b TCP) SetDstPort(v uint16) { binary.BigEndian.PutUint16(b[tcpDstPort:], v) }

// SetSeq sets the sequence number.
func (b TCP) SetSeq(v uint32) { binary.BigEndian.PutUint32(b[tcpSeq:], v) }

// SetAck sets the acknowledgment number.
func (b TCP) SetAck(v uint32) { binary.BigEndian.PutUint32(b[tcpAck:], v) }

// SetDataOffset sets the header length to n bytes (a multiple of 4 between
// 20 and 60), clearing the reserved and AE bits of byte 12.
func (b TCP) SetDataOffset(n int) { b[tcpDataOffset] = uint8(n/4) << 4 }

// SetFlags sets the flags byte.
func (b TCP) SetFlags(f TCPFlags) { b[tcpFlags] = uint8(f) }

// SetWindow sets the window field.
func (b TCP) SetWindow(v uint16) { binary.BigEndian.PutUint16(b[tcpWindow:], v) }

// SetChecksum sets the checksum field.
func (b TCP) SetChecksum(v uint16) { binary.BigEndian.PutUint16(b[tcpChecksum:], v) }

// SetUrgentPtr sets the urgent pointer.
func (b TCP) SetUrgentPtr(v uint16) { binary.BigEndian.PutUint16(b[tcpUrgent:], v) }

// CalculateChecksum returns the checksum that the segment b (header and
// the whole payload) should carry, with the checksum field taken as zero.
// pseudo is the [PseudoHeaderChecksum] for len(b) bytes.
func (b TCP) CalculateChecksum(pseudo uint32) uint16 {
	return ^uint16(Sum(b[tcpChecksum+2:], Sum(b[:tcpChecksum], pseudo)))
}

// IsValid reports whether b holds a complete TCP header: at least 20
// bytes, and a data offset between 20 bytes and len(b).
func (b TCP) IsValid() bool {
	if len(b) < TCPMinimumSize {
		return false
	}
	n := b.DataOffset()
	return n >= TCPMinimumSize && n <= len(b)
}
