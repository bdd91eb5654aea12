// Package dnslab is the lab's DNS service, for the UDP copy tests: a
// hand-written codec for the few DNS messages it needs (RFC 1035 §4.1,
// EDNS(0) RFC 6891, padding RFC 7830), a UDP server that answers and
// records every query it gets, and a bounded query load.
//
// The messages are shaped for what a UDP copier must get right: small
// queries, EDNS queries whose padding makes the datagram larger than the
// link MTU (the client's kernel fragments them), answers larger than the
// client allows (the server sets the TC bit, RFC 1035 §4.2.1) and EDNS
// answers larger than the MTU (fragmented toward the client). A query
// asks for its answer size in its name, so the server needs no table:
// q17-big-a3000.v4.lab.example asks for about 3000 bytes of TXT records.
//
// Nothing here is a general DNS implementation: names are not
// compressed in queries, and only the question and an OPT record are
// read.
package dnslab

import (
	"encoding/binary"
	"errors"
	"strconv"
	"strings"
)

// DNS constants used here (RFC 1035, RFC 6891, RFC 7830).
const (
	headerLen    = 12
	typeTXT      = 16
	typeOPT      = 41
	classIN      = 1
	optPadding   = 12
	flagQR       = 0x8000
	flagTC       = 0x0200
	flagRD       = 0x0100
	flagRA       = 0x0080
	maxLabel     = 63
	maxPlainUDP  = 512 // the answer size a client without EDNS accepts
	maxTXTString = 255
)

var errMalformed = errors.New("dnslab: malformed message")

// Query is what a query asks.
type Query struct {
	ID   uint16
	Name string // without the trailing dot
	// EDNS reports an OPT record; UDPSize is its UDP payload size and
	// Padding the length of its padding option's data.
	EDNS    bool
	UDPSize uint16
	Padding int
}

// AppendQuery appends q as a query for TXT records (RD set) to b.
func AppendQuery(b []byte, q Query) []byte {
	ar := uint16(0)
	if q.EDNS {
		ar = 1
	}
	b = binary.BigEndian.AppendUint16(b, q.ID)
	b = binary.BigEndian.AppendUint16(b, flagRD)
	b = binary.BigEndian.AppendUint16(b, 1) // QDCOUNT
	b = binary.BigEndian.AppendUint16(b, 0) // ANCOUNT
	b = binary.BigEndian.AppendUint16(b, 0) // NSCOUNT
	b = binary.BigEndian.AppendUint16(b, ar)
	b = appendName(b, q.Name)
	b = binary.BigEndian.AppendUint16(b, typeTXT)
	b = binary.BigEndian.AppendUint16(b, classIN)
	if q.EDNS {
		b = appendOPT(b, q.UDPSize, q.Padding)
	}
	return b
}

// appendName appends name in wire format: labels, then the root.
func appendName(b []byte, name string) []byte {
	for l := range strings.SplitSeq(strings.TrimSuffix(name, "."), ".") {
		if l == "" {
			continue
		}
		l = l[:min(len(l), maxLabel)]
		b = append(b, byte(len(l)))
		b = append(b, l...)
	}
	return append(b, 0)
}

// appendOPT appends an OPT record (RFC 6891 §6.1.2) with a padding option
// of padding zero bytes when padding > 0.
func appendOPT(b []byte, udpSize uint16, padding int) []byte {
	b = append(b, 0) // root name
	b = binary.BigEndian.AppendUint16(b, typeOPT)
	b = binary.BigEndian.AppendUint16(b, udpSize) // CLASS: UDP payload size
	b = binary.BigEndian.AppendUint32(b, 0)       // extended RCODE, version 0, flags
	if padding <= 0 {
		return binary.BigEndian.AppendUint16(b, 0)
	}
	b = binary.BigEndian.AppendUint16(b, uint16(4+padding))
	b = binary.BigEndian.AppendUint16(b, optPadding)
	b = binary.BigEndian.AppendUint16(b, uint16(padding))
	return append(b, make([]byte, padding)...)
}

// ParseQuery reads a query: the header, one question, and an OPT record
// among the additional records.
func ParseQuery(b []byte) (Query, error) {
	var q Query
	if len(b) < headerLen {
		return q, errMalformed
	}
	q.ID = binary.BigEndian.Uint16(b)
	flags := binary.BigEndian.Uint16(b[2:])
	if flags&flagQR != 0 || binary.BigEndian.Uint16(b[4:]) != 1 {
		return q, errMalformed
	}
	name, off, err := readName(b, headerLen)
	if err != nil || off+4 > len(b) {
		return q, errMalformed
	}
	q.Name = name
	off += 4 // QTYPE, QCLASS
	ar := int(binary.BigEndian.Uint16(b[10:]))
	for range ar {
		_, o, err := readName(b, off)
		if err != nil || o+10 > len(b) {
			return q, errMalformed
		}
		typ, class := binary.BigEndian.Uint16(b[o:]), binary.BigEndian.Uint16(b[o+2:])
		rdlen := int(binary.BigEndian.Uint16(b[o+8:]))
		rdata := o + 10
		if rdata+rdlen > len(b) {
			return q, errMalformed
		}
		if typ == typeOPT {
			q.EDNS, q.UDPSize = true, class
			for i := rdata; i+4 <= rdata+rdlen; {
				code, n := binary.BigEndian.Uint16(b[i:]), int(binary.BigEndian.Uint16(b[i+2:]))
				if code == optPadding {
					q.Padding = n
				}
				i += 4 + n
			}
		}
		off = rdata + rdlen
	}
	return q, nil
}

// readName reads an uncompressed name at off and returns it and the
// offset after it.
func readName(b []byte, off int) (string, int, error) {
	var sb strings.Builder
	for {
		if off >= len(b) {
			return "", 0, errMalformed
		}
		n := int(b[off])
		off++
		if n == 0 {
			return sb.String(), off, nil
		}
		if n > maxLabel || off+n > len(b) || sb.Len() > 255 {
			return "", 0, errMalformed
		}
		if sb.Len() > 0 {
			sb.WriteByte('.')
		}
		sb.Write(b[off : off+n])
		off += n
	}
}

// AnswerSize returns the answer size a query name asks for: the number
// after "-a" in its first label (q17-big-a3000.v4.lab.example asks for
// 3000), 0 if none.
func AnswerSize(name string) int {
	first, _, _ := strings.Cut(name, ".")
	for tok := range strings.SplitSeq(first, "-") {
		if len(tok) > 1 && tok[0] == 'a' {
			if n, err := strconv.Atoi(tok[1:]); err == nil && n >= 0 {
				return min(n, 65000)
			}
		}
	}
	return 0
}

// AppendResponse appends the response to query msg (parsed as q): TXT
// records of about AnswerSize(q.Name) bytes in all, or, when the whole
// response would exceed what the client accepts (512 bytes without EDNS,
// its UDP size with), no answer and the TC bit. It reports whether the
// response was truncated.
func AppendResponse(b []byte, msg []byte, q Query) ([]byte, bool) {
	limit := maxPlainUDP
	if q.EDNS {
		limit = max(maxPlainUDP, int(q.UDPSize))
	}
	_, qend, _ := readName(msg, headerLen)
	question := msg[headerLen : qend+4]
	size := AnswerSize(q.Name)
	// Each TXT record: pointer to the question name (2), type, class,
	// TTL, RDLENGTH (10), then strings of up to 255 bytes each with a
	// length byte.
	nrec := 0
	if size > 0 {
		nrec = (size + 1000 - 1) / 1000
	}
	total := headerLen + len(question) + nrec*12 + size + (size+maxTXTString-1)/maxTXTString
	if q.EDNS {
		total += 11
	}
	tc := total > limit
	if tc {
		nrec = 0
	}
	flags := uint16(flagQR | flagRD | flagRA)
	if tc {
		flags |= flagTC
	}
	b = binary.BigEndian.AppendUint16(b, q.ID)
	b = binary.BigEndian.AppendUint16(b, flags)
	b = binary.BigEndian.AppendUint16(b, 1)
	b = binary.BigEndian.AppendUint16(b, uint16(nrec))
	b = binary.BigEndian.AppendUint16(b, 0)
	ar := uint16(0)
	if q.EDNS {
		ar = 1
	}
	b = binary.BigEndian.AppendUint16(b, ar)
	b = append(b, question...)
	left := size
	for i := range nrec {
		n := min(1000, left)
		if i == nrec-1 {
			n = left
		}
		left -= n
		b = append(b, 0xc0, headerLen) // the question's name
		b = binary.BigEndian.AppendUint16(b, typeTXT)
		b = binary.BigEndian.AppendUint16(b, classIN)
		b = binary.BigEndian.AppendUint32(b, 60)
		rdlen := n + (n+maxTXTString-1)/maxTXTString
		b = binary.BigEndian.AppendUint16(b, uint16(rdlen))
		for n > 0 {
			s := min(n, maxTXTString)
			b = append(b, byte(s))
			for j := range s {
				b = append(b, 'a'+byte(j%26))
			}
			n -= s
		}
	}
	if q.EDNS {
		b = appendOPT(b, 4096, 0)
	}
	return b, tc
}

// ParseResponse reads the ID, the TC bit and the answer count of a
// response.
func ParseResponse(b []byte) (id uint16, tc bool, answers int, err error) {
	if len(b) < headerLen || binary.BigEndian.Uint16(b[2:])&flagQR == 0 {
		return 0, false, 0, errMalformed
	}
	return binary.BigEndian.Uint16(b), binary.BigEndian.Uint16(b[2:])&flagTC != 0, int(binary.BigEndian.Uint16(b[6:])), nil
}
