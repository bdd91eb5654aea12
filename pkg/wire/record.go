package wire

import (
	"errors"
	"fmt"
	"io"
	"math"
	"time"
)

// Version-6 record layout (C msg_server_t): the captured IPv4 header's first
// 20 bytes, then the TCP header at offset 20 whatever ihl says, cut to 44
// bytes, zero padded; in 192-byte records the payload (if 0 < len <= 128)
// at 20 + doff*4.
const (
	rec6TCPOff = ipv4MinLen
	countLen   = 2 // combined frame count, u16 big-endian
)

// Version-7 record layout, after the message header (length, type 0x81,
// flags): u64 capture time (ns since the Unix epoch, 0 = unknown), u32
// payload length, u16 header length H, u16 prefix length P, H header bytes,
// P prefix bytes, with flag rec7FlagHash the u64 hash of the whole payload
// (package streamhash), then bytes a newer peer may add (ignored).
const (
	rec7TimeOff      = 4
	rec7PayLenOff    = 12
	rec7HdrLenOff    = 16
	rec7PrefixLenOff = 18
	rec7HdrOff       = 20

	rec7FlagExtStripped = 1 << 0
	rec7FlagHash        = 1 << 1
	rec7FlagUDP         = 1 << 2 // the header is IP + UDP, not IP + TCP
	rec7HashLen         = 8
)

// RecordFlags tell how a record's header differs from the captured one.
type RecordFlags uint8

// Record flags.
const (
	// OptionsCut: a version-6 record carried a TCP header longer than 44
	// bytes, cut by intercept; Header has doff clamped to 11 (and tot_len
	// reduced to match), its options are cut at byte 44 (possibly in the
	// middle of an option). PayloadLen is right.
	OptionsCut RecordFlags = 1 << iota
	// IPOptionsDropped: a version-6 record's IPv4 header had ihl > 5; the
	// options were never copied by intercept; Header has ihl = 5 and
	// tot_len reduced to match. PayloadLen is right.
	IPOptionsDropped
	// ExtHeadersStripped: intercept removed IPv6 extension headers
	// (version 7); Header has next header TCP and a payload length field
	// reduced to match.
	ExtHeadersStripped
	// UDPRecord: the record is a UDP datagram's (version 7, record flag
	// bit 2): Header is the IP header and the 8-byte UDP header, and
	// PayloadLen the UDP payload length. It answers a UDP route.
	UDPRecord
)

// Record is one response record: the headers of a packet the target sent
// to a replayed client, as captured by intercept, without the payload.
//
// The slices are views into the reader's buffer, valid until the next call
// of Next; the caller may modify them in place.
type Record struct {
	// Header is the IP header (IPv4 with options, or the IPv6 fixed
	// header) followed by the TCP header with options. Its length fields
	// still count the payload, which is not present: for version 6,
	// tot_len - ihl*4 - doff*4 == PayloadLen always holds; for version 7
	// they are as captured (PayloadLen wins if they disagree, e.g. for
	// BIG TCP packets whose IPv4 tot_len is 0). The TCP checksum is the
	// original one and cannot be verified without the payload.
	Header []byte
	// PayloadLen is the TCP payload length of the captured packet.
	PayloadLen int
	// Captured is the capture time in nanoseconds since the Unix epoch;
	// 0 if unknown (always for version 6).
	Captured int64
	// Prefix holds the first bytes of the payload, if the format carries
	// them (version 6 with Payload: the whole payload when 0 < PayloadLen
	// <= 128, else nothing; version 7: up to the negotiated prefix length).
	// len(Prefix) <= PayloadLen.
	Prefix []byte
	// Flags tell how Header differs from the captured headers.
	Flags RecordFlags
	// Hash is the streamhash of the packet's whole payload, if Hashed
	// (version 7 with the response comparison on; intercept hashes only
	// payloads it captured whole).
	Hash   uint64
	Hashed bool

	ipLen int
}

// IP returns the IP header part of Header.
func (r *Record) IP() []byte { return r.Header[:r.ipLen] }

// TCP returns the TCP header part of Header (options included); for a
// UDPRecord, the UDP header.
func (r *Record) TCP() []byte { return r.Header[r.ipLen:] }

// UDP reports whether r is a UDP datagram's record ([UDPRecord]).
func (r *Record) UDP() bool { return r.Flags&UDPRecord != 0 }

// Time returns Captured as a time.Time (the zero Time if unknown).
func (r *Record) Time() time.Time {
	if r.Captured == 0 {
		return time.Time{}
	}
	return time.Unix(0, r.Captured)
}

var errHelloAfterNext = errors.New("wire: ReadHello called after Next")

// RecordReader decodes the record stream intercept sends on one
// connection. Create it with NewRecordReader; it is not safe for concurrent
// use.
type RecordReader struct {
	in        inbuf
	f         Format
	started   bool // Next was called
	remaining int  // records left in the current combined frame
	rec       Record
	skipped   uint64
	err       error
	eof       bool
}

// recordBufSize returns the reader buffer size for f: the largest message
// plus read-ahead.
func recordBufSize(f Format) int {
	if f.Version == Version7 {
		return MaxServerMsgLen + 16384
	}
	return 16384
}

// NewRecordReader returns a reader of the records intercept sends on r in
// format f: the fallback format if the caller will call ReadHello, else
// the format configured to match a C intercept. It allocates its buffer
// once (16 KiB for version 6, 80 KiB for version 7). It panics if f is
// invalid.
func NewRecordReader(r io.Reader, f Format) *RecordReader {
	f.mustValid()
	return &RecordReader{in: inbuf{rd: r, buf: make([]byte, recordBufSize(f))}, f: f}
}

// Format returns the format records are decoded with.
func (rr *RecordReader) Format() Format { return rr.f }

// ReadHello reads intercept's answer to an offer, before the first Next.
// The caller bounds the wait with a read deadline on the connection; a C
// intercept sends nothing in answer to an offer.
//
//   - A Hello: the reader switches to the announced format (growing its
//     buffer once if needed) and returns it with a nil error.
//   - Record bytes (a C intercept built with --single sends records without
//     routes): it returns the fallback format and [ErrNoHello]; the bytes
//     stay buffered for Next.
//   - A read error (e.g. the deadline): returned wrapped, not sticky, so
//     the caller can clear the deadline and use Next with the fallback
//     format. Bytes already read stay buffered; a partial Hello then makes
//     Next fail with ErrFraming.
//   - An invalid Hello: a sticky error wrapping ErrFraming. The end of the
//     stream is sticky too.
func (rr *RecordReader) ReadHello() (Format, error) {
	if rr.err != nil {
		return rr.f, rr.err
	}
	if rr.eof {
		return rr.f, io.EOF
	}
	if rr.started {
		return rr.f, errHelloAfterNext
	}
	for {
		k, n := ClassifyServerBytes(rr.in.buffered())
		switch k {
		case ServerRecords:
			return rr.f, ErrNoHello
		case ServerInvalid:
			rr.err = fmt.Errorf("%w: first bytes are neither a hello nor records", ErrFraming)
			return rr.f, rr.err
		case ServerHello:
			f, err := ParseHello(rr.in.buffered())
			if err != nil {
				rr.err = err
				return rr.f, err
			}
			rr.in.take(n)
			rr.f = f
			rr.in.grow(recordBufSize(f))
			return f, nil
		}
		if err := rr.in.fill(n); err != nil {
			switch err {
			case io.EOF:
				rr.eof = true
				return rr.f, err
			case io.ErrUnexpectedEOF:
				rr.err = fmt.Errorf("wire: waiting for hello: %w", err)
				return rr.f, rr.err
			}
			return rr.f, fmt.Errorf("wire: waiting for hello: %w", err)
		}
	}
}

// Next decodes the next record. It returns false at the end of the stream
// or on an error (see Err). Records that are well framed but malformed
// (not IPv4+TCP for version 6, inconsistent lengths, unknown version-7
// message types) are skipped and counted in Skipped. It does not allocate.
func (rr *RecordReader) Next() bool {
	if rr.err != nil || rr.eof {
		return false
	}
	rr.started = true
	for {
		var ok bool
		switch {
		case rr.f.Version == Version7:
			ok = rr.next7()
		case rr.f.Combined:
			ok = rr.nextCombined()
		default:
			ok = rr.nextPlain()
		}
		if ok {
			return true
		}
		if rr.err != nil || rr.eof {
			return false
		}
		rr.skipped++
	}
}

// Record returns the record decoded by the last successful Next.
func (rr *RecordReader) Record() Record { return rr.rec }

// Err returns the error that stopped the reader, or nil if the stream ended
// cleanly at a frame boundary (or has not ended).
func (rr *RecordReader) Err() error { return rr.err }

// Skipped returns how many well-framed records Next skipped.
func (rr *RecordReader) Skipped() uint64 { return rr.skipped }

func (rr *RecordReader) fail(err error, boundary bool) {
	if err == io.EOF {
		if boundary {
			rr.eof = true
			return
		}
		err = io.ErrUnexpectedEOF
	}
	rr.err = fmt.Errorf("wire: reading records: %w", err)
}

func (rr *RecordReader) nextPlain() bool {
	size := rr.f.recordSize()
	if err := rr.in.fill(size); err != nil {
		rr.fail(err, true)
		return false
	}
	return decode6(rr.in.take(size), rr.f.Payload, &rr.rec)
}

func (rr *RecordReader) nextCombined() bool {
	size := rr.f.recordSize()
	if rr.remaining == 0 {
		if err := rr.in.fill(countLen); err != nil {
			rr.fail(err, true)
			return false
		}
		n := int(be.Uint16(rr.in.take(countLen)))
		if n == 0 || n > rr.f.maxCombined() {
			rr.err = fmt.Errorf("%w: combined frame count %d not in 1..%d", ErrFraming, n, rr.f.maxCombined())
			return false
		}
		rr.remaining = n
	}
	if err := rr.in.fill(size); err != nil {
		rr.fail(err, false)
		return false
	}
	rr.remaining--
	return decode6(rr.in.take(size), rr.f.Payload, &rr.rec)
}

// decode6 validates and normalises one version-6 record in place (see
// Record and the package doc). It reports false for a malformed record.
func decode6(b []byte, payload bool, out *Record) bool {
	ip := b[:ipv4MinLen]
	if ip[0]>>4 != 4 || ip[ipv4ProtoOff] != protoTCP {
		return false
	}
	ihl := int(ip[0]&0x0f) * 4
	doff := int(b[rec6TCPOff+tcpDoffOff]>>4) * 4
	tot := int(be.Uint16(ip[ipv4TotLenOff:]))
	if ihl < ipv4MinLen || doff < tcpMinLen || tot < ihl+doff {
		return false
	}
	plen := tot - ihl - doff
	var flags RecordFlags
	tcpLen := doff
	if doff > MaxTCPHeader6 {
		tcpLen = MaxTCPHeader6
		flags |= OptionsCut
		b[rec6TCPOff+tcpDoffOff] = MaxTCPHeader6/4<<4 | b[rec6TCPOff+tcpDoffOff]&0x0f
	}
	if ihl > ipv4MinLen {
		flags |= IPOptionsDropped
		ip[0] = 0x45
	}
	if flags != 0 {
		be.PutUint16(ip[ipv4TotLenOff:], uint16(ipv4MinLen+tcpLen+plen))
		be.PutUint16(ip[ipv4ChecksumOff:], ipv4Checksum(ip))
	}
	hl := rec6TCPOff + tcpLen
	*out = Record{Header: b[:hl:hl], PayloadLen: plen, Flags: flags, ipLen: ipv4MinLen}
	if payload && plen > 0 && plen <= MaxPayload6 {
		// C copies the payload to 20 + the original doff*4; with doff > 11
		// part of it fell off the end of C's record.
		start := rec6TCPOff + doff
		end := min(start+plen, len(b))
		out.Prefix = b[start:end:end]
	}
	return true
}

func (rr *RecordReader) next7() bool {
	if err := rr.in.fill(msgHdrLen); err != nil {
		rr.fail(err, true)
		return false
	}
	n := int(be.Uint16(rr.in.buffered()[msgLenOff:]))
	if n < msgHdrLen {
		rr.err = fmt.Errorf("%w: message length %d below %d", ErrFraming, n, msgHdrLen)
		return false
	}
	if err := rr.in.fill(n); err != nil {
		rr.fail(err, false)
		return false
	}
	return decode7(rr.in.take(n), &rr.rec)
}

// decode7 validates one version-7 message; it reports false for an unknown
// type or a malformed record.
func decode7(m []byte, out *Record) bool {
	if m[msgTypeOff] != msgRecord || len(m) < rec7HdrOff {
		return false
	}
	hl := int(be.Uint16(m[rec7HdrLenOff:]))
	pl := int(be.Uint16(m[rec7PrefixLenOff:]))
	plen := be.Uint32(m[rec7PayLenOff:])
	if rec7HdrOff+hl+pl > len(m) || plen > math.MaxInt32 || uint32(pl) > plen {
		return false
	}
	h := m[rec7HdrOff : rec7HdrOff+hl : rec7HdrOff+hl]
	udp := m[msgFlagOff]&rec7FlagUDP != 0
	ipLen, ok := checkHeader7(h, udp)
	if !ok {
		return false
	}
	*out = Record{
		Header:     h,
		PayloadLen: int(plen),
		Captured:   int64(be.Uint64(m[rec7TimeOff:])),
		ipLen:      ipLen,
	}
	if pl > 0 {
		out.Prefix = m[rec7HdrOff+hl : rec7HdrOff+hl+pl : rec7HdrOff+hl+pl]
	}
	if m[msgFlagOff]&rec7FlagExtStripped != 0 {
		out.Flags |= ExtHeadersStripped
	}
	if udp {
		out.Flags |= UDPRecord
	}
	if m[msgFlagOff]&rec7FlagHash != 0 {
		end := rec7HdrOff + hl + pl
		if end+rec7HashLen > len(m) {
			return false
		}
		out.Hash, out.Hashed = be.Uint64(m[end:]), true
	}
	return true
}
