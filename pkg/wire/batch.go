package wire

import (
	"math"
)

// Batcher accumulates the records intercept sends on one connection into a
// reusable buffer, so that a batch goes out in one write. It encodes in the
// connection's format: version-6 combined frames (u16 count + records),
// version-6 plain records, or version-7 record messages.
//
// Typical use, per captured response routed to this connection:
//
//	if !b.Add(pkt, payloadLen, ts, payload) {
//		write(b.Bytes()); b.Reset()
//		b.Add(pkt, payloadLen, ts, payload) // always fits an empty batch
//	}
//	if b.Full() { write(b.Bytes()); b.Reset() }
//
// plus a flush of a non-empty batch from a timer (C intercept flushes when
// the millisecond clock moved since the last record was added, and from a
// periodic timer of a few milliseconds). A Batcher is not safe for
// concurrent use. It allocates only in NewBatcher.
type Batcher struct {
	f       Format
	start   int // bytes before the first record (the combined count)
	limit   int // records per batch
	max     int // largest allowed limit
	n       int // records in the batch
	buf     []byte
	dropped uint64
}

// NewBatcher returns an empty Batcher for format f holding at most limit
// records per batch; limit <= 0 or above the format's maximum means the
// maximum: 16 (6 with 192-byte records) for version 6, combined or not (C
// intercept sends one record per write when not combined; grouping them is
// invisible to a stream reader), and no count limit for version 7, whose
// batches are bounded by MaxBatchBytes. It panics if f is invalid.
func NewBatcher(f Format, limit int) *Batcher {
	f.mustValid()
	b := &Batcher{f: f}
	size := MaxBatchBytes
	if f.Version == Version6 {
		b.max = f.maxCombined()
		size = b.max * f.recordSize()
		if f.Combined {
			b.start = countLen
			size += countLen
		}
	} else {
		b.max = math.MaxInt
	}
	b.buf = make([]byte, b.start, size)
	b.SetLimit(limit)
	return b
}

// SetLimit sets the maximum number of records per batch (C intercept's
// adaptive combined count, option -n); n <= 0 or above the format's maximum
// means the maximum. A batch already above the new limit is Full.
func (b *Batcher) SetLimit(n int) {
	if n <= 0 || n > b.max {
		n = b.max
	}
	b.limit = n
}

// Limit returns the maximum number of records per batch.
func (b *Batcher) Limit() int { return b.limit }

// Format returns the Batcher's format.
func (b *Batcher) Format() Format { return b.f }

// Cap returns the bytes the Batcher's buffer holds at most, fixed at
// NewBatcher: what it costs in memory.
func (b *Batcher) Cap() int { return cap(b.buf) }

// Len returns the number of records in the batch.
func (b *Batcher) Len() int { return b.n }

// Dropped returns how many records Add dropped because they could not be
// encoded.
func (b *Batcher) Dropped() uint64 { return b.dropped }

// Full reports whether the next Add is certain to return false: the batch
// holds Limit records, or (version 7) too few bytes are left for a record
// of maximal size.
func (b *Batcher) Full() bool {
	if b.n >= b.limit {
		return true
	}
	return b.f.Version == Version7 &&
		cap(b.buf)-len(b.buf) < rec7HdrOff+2*tcpMaxLen+max(b.f.PrefixLen, b.f.Compare)+rec7HashLen
}

// Bytes returns the encoded batch, ready for one write: nil if it holds no
// record (C never sends a combined count of 0). The slice is valid until
// the next Add or Reset.
func (b *Batcher) Bytes() []byte {
	if b.n == 0 {
		return nil
	}
	if b.start == countLen {
		be.PutUint16(b.buf, uint16(b.n))
	}
	return b.buf
}

// Reset empties the batch, keeping the buffer.
func (b *Batcher) Reset() {
	b.buf = b.buf[:b.start]
	b.n = 0
}

// Add appends one record to the batch. pkt holds the captured packet from
// the IP header on (at least the IP and TCP headers with all options; bytes
// after the TCP header are ignored), payloadLen the packet's real TCP
// payload length, ts the capture time in ns since the Unix epoch (0 if
// unknown; version 6 has no room for it), prefix the captured payload bytes
// (may be shorter than payloadLen, or nil).
//
// Add returns false only when the batch has no room for the record: the
// caller writes Bytes, calls Reset and adds again (an empty batch always has
// room). A record that cannot be encoded is dropped, counted in Dropped, and
// Add returns true: malformed headers, IPv6 in a version-6 format, a
// payload length that does not fit the format's length field.
//
// Version 6 encodes what C intercept does (IPv4 header's first 20 bytes,
// TCP header cut to 44 bytes with doff unchanged, and for 192-byte records
// the payload at 20 + doff*4 when 0 < payloadLen <= 128), except that an
// IPv4 header with options gets ihl = 5 and tot_len reduced by the option
// length, so that a C tcpcopy finds the TCP header at ihl*4 and still
// computes the right payload length. tot_len is written as 20 + doff*4 +
// payloadLen (equal to the captured one less the options when payloadLen is
// consistent) and the IPv4 checksum is recomputed when the header changed.
//
// Version 7 copies the IPv4 header with options, or the IPv6 fixed header
// with extension headers removed (next header set to TCP or UDP, payload
// length field reduced, flag ExtHeadersStripped), then the TCP header with
// all options (or the UDP header, flag UDPRecord, only if the format has
// UDP), then min(len(prefix), PrefixLen, payloadLen) prefix bytes.
// Version 6 cannot carry UDP: such a packet is dropped and counted.
//
// Add does not allocate.
func (b *Batcher) Add(pkt []byte, payloadLen int, ts int64, prefix []byte) bool {
	return b.AddHashed(pkt, payloadLen, ts, prefix, 0, false)
}

// AddHashed is Add with the payload's hash (version 7 with Compare): the
// record carries hash when hashed is set, and up to max(PrefixLen,
// Compare) prefix bytes. The caller decides how many of the payload's
// first bytes to pass in prefix (the start of a response). Version 6
// ignores the hash.
func (b *Batcher) AddHashed(pkt []byte, payloadLen int, ts int64, prefix []byte, hash uint64, hashed bool) bool {
	if b.n >= b.limit {
		return false
	}
	c, ok := parseCaptured(pkt)
	if !ok || payloadLen < 0 {
		b.dropped++
		return true
	}
	if b.f.Version == Version7 {
		return b.add7(pkt, c, payloadLen, ts, prefix, hash, hashed)
	}
	if c.v6 || c.udp || payloadLen > math.MaxUint16-ipv4MinLen-c.tcpLen {
		b.dropped++
		return true
	}
	size := b.f.recordSize()
	if cap(b.buf)-len(b.buf) < size {
		return false
	}
	off := len(b.buf)
	b.buf = b.buf[:off+size]
	encode6(b.buf[off:], pkt, c, payloadLen, prefix, b.f.Payload)
	b.n++
	return true
}

// encode6 writes one version-6 record into dst (len = record size).
func encode6(dst, pkt []byte, c captured, payloadLen int, prefix []byte, payload bool) {
	clear(dst)
	copy(dst[:ipv4MinLen], pkt)
	tot := ipv4MinLen + c.tcpLen + payloadLen
	if c.ipLen != ipv4MinLen || int(be.Uint16(pkt[ipv4TotLenOff:])) != tot {
		dst[0] = 0x45
		be.PutUint16(dst[ipv4TotLenOff:], uint16(tot))
		be.PutUint16(dst[ipv4ChecksumOff:], ipv4Checksum(dst[:ipv4MinLen]))
	}
	copy(dst[rec6TCPOff:rec6TCPOff+min(c.tcpLen, MaxTCPHeader6)], pkt[c.tcpOff:])
	if payload && payloadLen > 0 && payloadLen <= MaxPayload6 {
		// C places the payload at 20 + doff*4; for doff > 11 C writes past
		// its record, we keep what fits.
		copy(dst[rec6TCPOff+c.tcpLen:], prefix[:min(len(prefix), payloadLen)])
	}
}

func (b *Batcher) add7(pkt []byte, c captured, payloadLen int, ts int64, prefix []byte, hash uint64, hashed bool) bool {
	if uint64(payloadLen) > math.MaxUint32 || c.udp && !b.f.UDP {
		b.dropped++
		return true
	}
	var v6PayLen int
	if c.v6 && c.extLen > 0 {
		v6PayLen = int(be.Uint16(pkt[ipv6PayLenOff:]))
		if v6PayLen != 0 && v6PayLen < c.extLen {
			b.dropped++
			return true
		}
	}
	hl := c.ipLen + c.tcpLen
	pl := min(len(prefix), max(b.f.PrefixLen, b.f.Compare), payloadLen)
	need := rec7HdrOff + hl + pl
	if hashed {
		need += rec7HashLen
	}
	if cap(b.buf)-len(b.buf) < need {
		return false
	}
	off := len(b.buf)
	b.buf = b.buf[:off+need]
	m := b.buf[off:]
	be.PutUint16(m[msgLenOff:], uint16(need))
	m[msgTypeOff] = msgRecord
	m[msgFlagOff] = 0
	be.PutUint64(m[rec7TimeOff:], uint64(ts))
	be.PutUint32(m[rec7PayLenOff:], uint32(payloadLen))
	be.PutUint16(m[rec7HdrLenOff:], uint16(hl))
	be.PutUint16(m[rec7PrefixLenOff:], uint16(pl))
	h := m[rec7HdrOff : rec7HdrOff+hl]
	copy(h[:c.ipLen], pkt)
	copy(h[c.ipLen:], pkt[c.tcpOff:c.tcpOff+c.tcpLen])
	if c.udp {
		m[msgFlagOff] |= rec7FlagUDP
	}
	if c.v6 && c.extLen > 0 {
		m[msgFlagOff] |= rec7FlagExtStripped
		h[ipv6NextOff] = protoTCP
		if c.udp {
			h[ipv6NextOff] = protoUDP
		}
		if v6PayLen != 0 {
			be.PutUint16(h[ipv6PayLenOff:], uint16(v6PayLen-c.extLen))
		}
	}
	copy(m[rec7HdrOff+hl:], prefix[:pl])
	if hashed {
		m[msgFlagOff] |= rec7FlagHash
		be.PutUint64(m[rec7HdrOff+hl+pl:], hash)
	}
	b.n++
	return true
}
