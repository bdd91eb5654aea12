package pcapfile

import (
	"bufio"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"math/bits"
)

// MaxPacketLen is the largest captured length of one packet record:
// libpcap's MAXIMUM_SNAPLEN. Larger records are reported as damage.
const MaxPacketLen = 262144

// maxBlockLen bounds a pcapng block (Wireshark's limit too).
const maxBlockLen = 16 << 20

// Format is the container format of a capture file.
type Format uint8

// Formats.
const (
	FormatPcap   Format = iota + 1 // classic pcap (pcap-savefile(5))
	FormatPcapNG                   // pcapng
)

func (f Format) String() string {
	switch f {
	case FormatPcap:
		return "pcap"
	case FormatPcapNG:
		return "pcapng"
	}
	return "unknown"
}

// Magic numbers, as read in big-endian order from the first four bytes.
const (
	magicMicros           = 0xa1b2c3d4
	magicNanos            = 0xa1b23c4d
	magicMicrosSwapped    = 0xd4c3b2a1
	magicNanosSwapped     = 0x4d3cb2a1
	magicGzip             = 0x1f8b // first two bytes
	blockSHB              = 0x0a0d0d0a
	byteOrderMagic        = 0x1a2b3c4d
	byteOrderMagicSwapped = 0x4d3c2b1a
	blockIDB              = 0x00000001
	blockPB               = 0x00000002 // obsolete Packet Block
	blockSPB              = 0x00000003
	blockEPB              = 0x00000006
)

// Header sizes.
const (
	pcapFileHeaderLen   = 24
	pcapRecordHeaderLen = 16
	blockHeaderLen      = 8  // type, total length
	blockOverhead       = 12 // header plus the trailing total length
	shbMinBody          = 16 // byte-order magic, version, section length
	idbMinBody          = 8
	epbMinBody          = 20
	pbMinBody           = 20
	spbMinBody          = 4
)

// pcapng option codes (draft-ietf-opsawg-pcapng §4.2).
const (
	optEndOfOpt  = 0
	optTSResol   = 9
	optTSOffset  = 14
	maxTSResol10 = 19 // 10^-19 s still fits a uint64 count of ticks
)

// FormatError reports a damaged or unsupported file. Offset is the byte
// offset, in the uncompressed stream, of the record or block where the
// problem was found (for gzip files the offset of the compressed file is
// not known). Err is the underlying I/O or decompression error, if any.
type FormatError struct {
	Offset int64
	Msg    string
	Err    error
}

func (e *FormatError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("offset %d: %s: %v", e.Offset, e.Msg, e.Err)
	}
	return fmt.Sprintf("offset %d: %s", e.Offset, e.Msg)
}

func (e *FormatError) Unwrap() error { return e.Err }

// Packet describes the record Next returned.
type Packet struct {
	// Data is the captured frame, link-layer header included. It is valid
	// until the next call to Next.
	Data []byte
	// Len is the frame's length on the wire; it exceeds len(Data) when the
	// capture's snap length cut the frame.
	Len int
	// Time is the capture time in Unix nanoseconds. A pcapng Simple Packet
	// Block has no time: it gets the time of the packet before it.
	Time int64
	// LinkType is the link type of the interface the packet was captured
	// on.
	LinkType LinkType
	// Interface is the pcapng interface number within its section; 0 for
	// pcap files.
	Interface int
	// Offset is the byte offset of the record in the uncompressed stream.
	Offset int64
	// Anomalies say how the record disagrees with its file: it was read
	// as it is, but the file may be damaged or written by a broken tool.
	Anomalies Anomaly
}

// Anomaly flags a record that is readable but inconsistent.
type Anomaly uint8

// Record anomalies.
const (
	// CapLenAboveSnapLen: the record holds more bytes than the snap length
	// of its file (pcap) or interface (pcapng). libpcap cuts such records
	// to the snap length; we keep the bytes and flag them.
	CapLenAboveSnapLen Anomaly = 1 << iota
	// OrigLenBelowCapLen: the record's original length is below its
	// captured length; Len is the captured length.
	OrigLenBelowCapLen
)

// iface is a pcapng interface description.
type iface struct {
	link    LinkType
	snapLen uint32
	// Timestamps are counts of 10^-dec s (binary false) or 2^-exp s.
	binary bool
	exp    uint8
	offset int64 // if_tsoffset, seconds
}

// nanos converts a timestamp in the interface's units to Unix
// nanoseconds (wrapping silently on absurd values).
func (f *iface) nanos(ts uint64) int64 {
	var sec, ns uint64
	switch {
	case f.binary:
		if f.exp == 0 {
			sec = ts
			break
		}
		sec = ts >> f.exp
		frac := ts & (1<<f.exp - 1)
		hi, lo := bits.Mul64(frac, 1e9)
		ns = hi<<(64-f.exp) | lo>>f.exp
	case f.exp <= 9:
		per := pow10[f.exp]
		sec, ns = ts/per, ts%per*pow10[9-f.exp]
	default:
		per := pow10[f.exp]
		sec, ns = ts/per, ts%per/pow10[f.exp-9]
	}
	return int64(sec)*1e9 + int64(ns) + f.offset*1e9
}

var pow10 = [...]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

// Reader reads packet records. Make it with NewReader.
type Reader struct {
	in         *bufio.Reader
	gz         *gzip.Reader
	format     Format
	compressed bool
	off        int64 // offset of the next unread byte
	swap       bool  // the current section is little-endian
	hdr        [blockHeaderLen + shbMinBody]byte
	buf        []byte
	pkt        Packet
	err        error

	// pcap
	link LinkType
	nano bool
	snap uint32 // the file header's snap length; 0: not given

	// pcapng
	ifaces   []iface
	lastTime int64
}

// NewReader reads the file header from r and returns a Reader positioned
// at the first packet record. The format is recognised by its magic
// number; gzip-compressed input (magic 1f 8b) is decompressed first.
func NewReader(r io.Reader) (*Reader, error) {
	rd := &Reader{in: bufio.NewReaderSize(r, 64<<10)}
	magic, err := rd.in.Peek(4)
	if len(magic) >= 2 && uint16(magic[0])<<8|uint16(magic[1]) == magicGzip {
		gz, err := gzip.NewReader(rd.in)
		if err != nil {
			return nil, &FormatError{Msg: "bad gzip header", Err: err}
		}
		rd.gz, rd.compressed = gz, true
		rd.in = bufio.NewReaderSize(gz, 256<<10)
		magic, err = rd.in.Peek(4)
		if err != nil && len(magic) < 4 {
			return nil, rd.ioError(0, "no capture file header in the gzip stream", len(magic), 4, err)
		}
	} else if err != nil {
		return nil, rd.ioError(0, "no capture file header", len(magic), 4, err)
	}
	switch be32(magic) {
	case magicMicros, magicNanos, magicMicrosSwapped, magicNanosSwapped:
		rd.format = FormatPcap
		err = rd.readPcapHeader()
	case blockSHB:
		rd.format = FormatPcapNG
		if _, err = rd.in.Discard(4); err == nil {
			rd.off = 4
			err = rd.readSHB(0)
		}
	default:
		return nil, &FormatError{Msg: fmt.Sprintf("not a pcap or pcapng file (starts with % x)", magic)}
	}
	if err != nil {
		return nil, err
	}
	return rd, nil
}

// Format returns the file's container format.
func (r *Reader) Format() Format { return r.format }

// Compressed reports whether the file is gzip-compressed.
func (r *Reader) Compressed() bool { return r.compressed }

// LinkType returns the link type of a pcap file, or of the first interface
// of a pcapng file's first section (0 and false if it has none yet).
func (r *Reader) LinkType() (LinkType, bool) {
	if r.format == FormatPcap {
		return r.link, true
	}
	if len(r.ifaces) > 0 {
		return r.ifaces[0].link, true
	}
	return 0, false
}

// Next advances to the next packet record. It returns false at the end of
// the file or at damage; Err tells which.
func (r *Reader) Next() bool {
	if r.err != nil {
		return false
	}
	if r.format == FormatPcap {
		return r.nextPcap()
	}
	return r.nextNG()
}

// Packet returns the current record. It is valid after Next returned true,
// until the next call to Next.
func (r *Reader) Packet() *Packet { return &r.pkt }

// Err returns nil after a clean end of the file, or the error that stopped
// Next: a *FormatError carrying the offset.
func (r *Reader) Err() error { return r.err }

// fail records a sticky error and returns false.
func (r *Reader) fail(off int64, format string, args ...any) bool {
	r.err = &FormatError{Offset: off, Msg: fmt.Sprintf(format, args...)}
	return false
}

// ioError describes a failed read of want bytes at off, of which got
// arrived.
func (r *Reader) ioError(off int64, what string, got, want int, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return &FormatError{Offset: off, Msg: fmt.Sprintf("%s: the file ends after %d of %d bytes", what, got, want)}
	}
	return &FormatError{Offset: off, Msg: what, Err: err}
}

// read fills b, which continues the record or block at start: done bytes
// of it were read before b, want bytes make the whole. A clean end of the
// file before the first byte of a record (done == 0, nothing read) returns
// io.EOF; any other short read returns a *FormatError.
func (r *Reader) read(b []byte, start int64, what string, done, want int) error {
	n, err := io.ReadFull(r.in, b)
	r.off += int64(n)
	switch {
	case err == nil:
		return nil
	case n == 0 && done == 0 && err == io.EOF:
		return io.EOF
	}
	return r.ioError(start, what, done+n, want, err)
}

// grow returns r.buf resized to n bytes.
func (r *Reader) grow(n int) []byte {
	if cap(r.buf) < n {
		r.buf = make([]byte, n, max(n, 2*cap(r.buf)))
	}
	return r.buf[:n]
}

// readBlock reads n bytes of the block at start (done bytes of it read
// before) into r.buf. The buffer grows with what really arrives, so that
// a damaged length field in a small file costs no large allocation.
func (r *Reader) readBlock(n int, start int64, done, want int) ([]byte, error) {
	const step = 1 << 20
	if n <= max(cap(r.buf), step) {
		b := r.grow(n)
		return b, r.read(b, start, "block", done, want)
	}
	b := r.buf[:0]
	for len(b) < n {
		chunk := min(n-len(b), step)
		if cap(b)-len(b) < chunk {
			nb := make([]byte, len(b), min(n, 2*cap(b)+chunk))
			copy(nb, b)
			b = nb
			r.buf = b
		}
		if err := r.read(b[len(b):len(b)+chunk], start, "block", done+len(b), want); err != nil {
			return nil, err
		}
		b = b[:len(b)+chunk]
	}
	return b, nil
}

func (r *Reader) u16(b []byte) uint16 {
	if r.swap {
		return uint16(b[0]) | uint16(b[1])<<8
	}
	return uint16(b[0])<<8 | uint16(b[1])
}

func (r *Reader) u32(b []byte) uint32 {
	if r.swap {
		return uint32(b[0]) | uint32(b[1])<<8 | uint32(b[2])<<16 | uint32(b[3])<<24
	}
	return be32(b)
}

func be32(b []byte) uint32 {
	return uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
}

// readPcapHeader reads the 24-byte pcap file header.
func (r *Reader) readPcapHeader() error {
	h := r.hdr[:pcapFileHeaderLen]
	if err := r.read(h, 0, "pcap file header", 0, pcapFileHeaderLen); err != nil {
		return err
	}
	switch be32(h) {
	case magicMicros:
	case magicNanos:
		r.nano = true
	case magicMicrosSwapped:
		r.swap = true
	case magicNanosSwapped:
		r.swap, r.nano = true, true
	}
	if major := r.u16(h[4:]); major != 2 {
		return &FormatError{Offset: 4, Msg: fmt.Sprintf("pcap version %d.%d is not supported (2.x is)", major, r.u16(h[6:]))}
	}
	// Records say their own captured length; the snap length only tells
	// whether they are consistent. The upper bits of the link type field
	// carry FCS information (pcap-linktype(7)); the link type is in the
	// low 16 bits.
	r.snap = r.u32(h[16:])
	r.link = LinkType(r.u32(h[20:]) & 0xffff)
	return nil
}

func (r *Reader) nextPcap() bool {
	start := r.off
	h := r.hdr[:pcapRecordHeaderLen]
	if err := r.read(h, start, "packet record", 0, pcapRecordHeaderLen); err != nil {
		if err != io.EOF {
			r.err = err
		}
		return false
	}
	sec, frac := r.u32(h), r.u32(h[4:])
	capLen, origLen := r.u32(h[8:]), r.u32(h[12:])
	if capLen > MaxPacketLen {
		return r.fail(start, "packet record claims %d captured bytes, more than %d: damaged file", capLen, MaxPacketLen)
	}
	data := r.grow(int(capLen))
	if err := r.read(data, start, "packet record", pcapRecordHeaderLen, pcapRecordHeaderLen+int(capLen)); err != nil {
		r.err = err
		return false
	}
	ns := int64(frac)
	if !r.nano {
		ns *= 1000
	}
	r.pkt = Packet{
		Data:      data,
		Len:       int(max(origLen, capLen)),
		Time:      int64(sec)*1e9 + ns,
		LinkType:  r.link,
		Offset:    start,
		Anomalies: anomalies(capLen, origLen, r.snap),
	}
	return true
}

// anomalies checks a record's lengths against each other and the snap
// length (0: none given).
func anomalies(capLen, origLen, snap uint32) Anomaly {
	var a Anomaly
	if snap > 0 && capLen > snap {
		a |= CapLenAboveSnapLen
	}
	if origLen < capLen {
		a |= OrigLenBelowCapLen
	}
	return a
}

// readSHB reads a Section Header Block whose 4-byte type, at start, was
// already consumed. Its byte-order magic sets the byte order of the
// section; the interfaces of the previous section are forgotten.
func (r *Reader) readSHB(start int64) error {
	h := r.hdr[:blockHeaderLen+shbMinBody]
	if err := r.read(h[4:], start, "section header block", 4, len(h)); err != nil {
		if err == io.EOF {
			err = r.ioError(start, "section header block", 4, len(h), io.ErrUnexpectedEOF)
		}
		return err
	}
	switch be32(h[8:]) {
	case byteOrderMagic:
		r.swap = false
	case byteOrderMagicSwapped:
		r.swap = true
	default:
		return &FormatError{Offset: start + 8, Msg: fmt.Sprintf("bad pcapng byte-order magic % x", h[8:12])}
	}
	if major := r.u16(h[12:]); major != 1 {
		return &FormatError{Offset: start + 12, Msg: fmt.Sprintf("pcapng version %d.%d is not supported (1.x is)", major, r.u16(h[14:]))}
	}
	total := r.u32(h[4:])
	if total < blockOverhead+shbMinBody || total%4 != 0 || total > maxBlockLen {
		return &FormatError{Offset: start, Msg: fmt.Sprintf("bad section header block length %d", total)}
	}
	// Options (unused) and the trailing length.
	rest, err := r.readBlock(int(total)-len(h), start, len(h), int(total))
	if err != nil {
		return err
	}
	if tail := r.u32(rest[len(rest)-4:]); tail != total {
		return &FormatError{Offset: start, Msg: fmt.Sprintf("section header block length %d does not match its trailer %d", total, tail)}
	}
	r.ifaces = r.ifaces[:0]
	return nil
}

func (r *Reader) nextNG() bool {
	for {
		start := r.off
		h := r.hdr[:blockHeaderLen]
		if err := r.read(h[:4], start, "block", 0, blockHeaderLen); err != nil {
			if err != io.EOF {
				r.err = err
			}
			return false
		}
		if be32(h) == blockSHB { // a palindrome: same in both byte orders
			if err := r.readSHB(start); err != nil {
				r.err = err
				return false
			}
			continue
		}
		if err := r.read(h[4:], start, "block", 4, blockHeaderLen); err != nil {
			r.err = err
			return false
		}
		typ, total := r.u32(h), r.u32(h[4:])
		if total < blockOverhead || total%4 != 0 || total > maxBlockLen {
			return r.fail(start, "bad block length %d (block type %#x)", total, typ)
		}
		bodyLen := int(total) - blockOverhead
		switch typ {
		case blockIDB, blockEPB, blockSPB, blockPB:
		default:
			// Another block type: skip its body, check its trailer.
			n, err := r.in.Discard(bodyLen)
			r.off += int64(n)
			if err != nil {
				r.err = r.ioError(start, "block", blockHeaderLen+n, int(total), err)
				return false
			}
			t := r.hdr[:4]
			if err := r.read(t, start, "block", int(total)-4, int(total)); err != nil {
				r.err = err
				return false
			}
			if tail := r.u32(t); tail != total {
				return r.fail(start, "block length %d does not match its trailer %d", total, tail)
			}
			continue
		}
		body, err := r.readBlock(bodyLen+4, start, blockHeaderLen, int(total))
		if err != nil {
			r.err = err
			return false
		}
		if tail := r.u32(body[bodyLen:]); tail != total {
			return r.fail(start, "block length %d does not match its trailer %d", total, tail)
		}
		body = body[:bodyLen]
		switch typ {
		case blockIDB:
			if !r.addInterface(start, body) {
				return false
			}
		case blockEPB:
			return r.enhancedPacket(start, body)
		case blockSPB:
			return r.simplePacket(start, body)
		case blockPB:
			return r.obsoletePacket(start, body)
		}
	}
}

// addInterface reads an Interface Description Block.
func (r *Reader) addInterface(start int64, body []byte) bool {
	if len(body) < idbMinBody {
		return r.fail(start, "interface description block too short (%d bytes)", len(body))
	}
	if len(r.ifaces) >= 1<<16 {
		return r.fail(start, "more than 65536 interfaces in one section")
	}
	f := iface{link: LinkType(r.u16(body)), snapLen: r.u32(body[4:]), exp: 6} // default: microseconds
	opts := body[idbMinBody:]
	for len(opts) >= 4 {
		code, n := r.u16(opts), int(r.u16(opts[2:]))
		if code == optEndOfOpt {
			break
		}
		padded := (n + 3) &^ 3
		if 4+padded > len(opts) {
			return r.fail(start, "interface description block option %d runs past the block", code)
		}
		v := opts[4 : 4+n]
		switch code {
		case optTSResol:
			if n != 1 {
				return r.fail(start, "if_tsresol option of %d bytes", n)
			}
			f.binary, f.exp = v[0]&0x80 != 0, v[0]&0x7f
			if (f.binary && f.exp > 63) || (!f.binary && f.exp > maxTSResol10) {
				return r.fail(start, "unsupported timestamp resolution %#x", v[0])
			}
		case optTSOffset:
			if n != 8 {
				return r.fail(start, "if_tsoffset option of %d bytes", n)
			}
			f.offset = int64(uint64(r.u32(v))<<32 | uint64(r.u32(v[4:])))
			if r.swap {
				f.offset = int64(uint64(r.u32(v[4:]))<<32 | uint64(r.u32(v)))
			}
		}
		opts = opts[4+padded:]
	}
	r.ifaces = append(r.ifaces, f)
	return true
}

// ifaceFor returns interface id of the current section.
func (r *Reader) ifaceFor(start int64, id uint32) (*iface, bool) {
	if int64(id) >= int64(len(r.ifaces)) {
		return nil, r.fail(start, "packet of interface %d, but the section describes %d interfaces", id, len(r.ifaces))
	}
	return &r.ifaces[id], true
}

// packet fills r.pkt from a packet block's fields.
func (r *Reader) packet(start int64, f *iface, id int, ts uint64, data []byte, origLen uint32) bool {
	r.lastTime = f.nanos(ts)
	r.pkt = Packet{
		Data:      data,
		Len:       max(int(origLen), len(data)),
		Time:      r.lastTime,
		LinkType:  f.link,
		Interface: id,
		Offset:    start,
		Anomalies: anomalies(uint32(len(data)), origLen, f.snapLen),
	}
	return true
}

func (r *Reader) enhancedPacket(start int64, body []byte) bool {
	if len(body) < epbMinBody {
		return r.fail(start, "enhanced packet block too short (%d bytes)", len(body))
	}
	id := r.u32(body)
	f, ok := r.ifaceFor(start, id)
	if !ok {
		return false
	}
	ts := uint64(r.u32(body[4:]))<<32 | uint64(r.u32(body[8:]))
	capLen, origLen := r.u32(body[12:]), r.u32(body[16:])
	if capLen > MaxPacketLen || int64(capLen) > int64(len(body)-epbMinBody) {
		return r.fail(start, "enhanced packet block claims %d captured bytes in a %d-byte block", capLen, len(body)+blockOverhead)
	}
	return r.packet(start, f, int(id), ts, body[epbMinBody:epbMinBody+capLen], origLen)
}

func (r *Reader) obsoletePacket(start int64, body []byte) bool {
	if len(body) < pbMinBody {
		return r.fail(start, "packet block too short (%d bytes)", len(body))
	}
	id := uint32(r.u16(body))
	f, ok := r.ifaceFor(start, id)
	if !ok {
		return false
	}
	ts := uint64(r.u32(body[4:]))<<32 | uint64(r.u32(body[8:]))
	capLen, origLen := r.u32(body[12:]), r.u32(body[16:])
	if capLen > MaxPacketLen || int64(capLen) > int64(len(body)-pbMinBody) {
		return r.fail(start, "packet block claims %d captured bytes in a %d-byte block", capLen, len(body)+blockOverhead)
	}
	return r.packet(start, f, int(id), ts, body[pbMinBody:pbMinBody+capLen], origLen)
}

// simplePacket reads a Simple Packet Block: interface 0, no timestamp, the
// captured length is the original length cut to the snap length (and to
// the block).
func (r *Reader) simplePacket(start int64, body []byte) bool {
	if len(body) < spbMinBody {
		return r.fail(start, "simple packet block too short (%d bytes)", len(body))
	}
	f, ok := r.ifaceFor(start, 0)
	if !ok {
		return false
	}
	origLen := r.u32(body)
	capLen := int64(origLen)
	if f.snapLen > 0 {
		capLen = min(capLen, int64(f.snapLen))
	}
	capLen = min(capLen, int64(len(body)-spbMinBody), MaxPacketLen)
	data := body[spbMinBody : spbMinBody+capLen]
	r.pkt = Packet{Data: data, Len: max(int(origLen), len(data)), Time: r.lastTime, LinkType: f.link, Offset: start}
	return true
}
