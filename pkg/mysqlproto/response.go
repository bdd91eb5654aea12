package mysqlproto

import (
	"encoding/binary"
)

// Kinds of the first byte of a server packet in the phases we follow.
const (
	OKHeader       = 0x00
	MoreDataHeader = 0x01 // AuthMoreData (caching_sha2_password, sha256_password)
	LocalInfile    = 0xfb // a COM_QUERY answer asking for a LOAD DATA LOCAL file
	EOFHeader      = 0xfe // also AuthSwitchRequest during the login
	ErrHeader      = 0xff
)

// caching_sha2_password's AuthMoreData values and the client's request for
// the server's public key.
const (
	FastAuthOK       = 0x03
	FullAuthRequired = 0x04
	RequestPublicKey = 0x02
)

// ServerError is an ERR packet's content.
type ServerError struct {
	Code    uint16
	State   string // SQLSTATE, empty if absent
	Message string
}

func (e *ServerError) Error() string {
	s := "mysql error " + itoa(int(e.Code))
	if e.State != "" {
		s += " (" + e.State + ")"
	}
	return s + ": " + e.Message
}

func itoa(v int) string {
	if v == 0 {
		return "0"
	}
	var b [20]byte
	i := len(b)
	for v > 0 {
		i--
		b[i] = byte('0' + v%10)
		v /= 10
	}
	return string(b[i:])
}

// ParseError decodes an ERR packet payload (its first byte 0xff).
func ParseError(p []byte) (*ServerError, error) {
	if len(p) < 3 || p[0] != ErrHeader {
		return nil, ErrShort
	}
	e := &ServerError{Code: binary.LittleEndian.Uint16(p[1:])}
	b := p[3:]
	if len(b) >= 6 && b[0] == '#' {
		e.State = string(b[1:6])
		b = b[6:]
	}
	if len(b) > 256 {
		b = b[:256] // enough for a log line
	}
	e.Message = string(b)
	return e, nil
}

// AuthSwitch is an AuthSwitchRequest: the server asks the client to
// answer with another plugin and nonce.
type AuthSwitch struct {
	Plugin string
	Data   []byte // the new nonce (its final NUL removed)
}

// ParseAuthSwitch decodes an AuthSwitchRequest payload (first byte 0xfe).
func ParseAuthSwitch(p []byte) (AuthSwitch, error) {
	var a AuthSwitch
	if len(p) < 2 || p[0] != EOFHeader {
		return a, ErrShort
	}
	name, n, err := readNul(p[1:])
	if err != nil {
		return a, err
	}
	a.Plugin = string(name)
	d := p[1+n:]
	if k := len(d); k > 0 && d[k-1] == 0 {
		d = d[:k-1]
	}
	a.Data = append([]byte(nil), d...)
	return a, nil
}

// PrepareOK is the first packet of the answer to COM_STMT_PREPARE.
type PrepareOK struct {
	StmtID  uint32
	Columns uint16
	Params  uint16
}

// ParsePrepareOK decodes a COM_STMT_PREPARE_OK payload (first byte 0x00,
// at least 12 bytes).
func ParsePrepareOK(p []byte) (PrepareOK, error) {
	if len(p) < 12 {
		return PrepareOK{}, ErrShort
	}
	if p[0] != OKHeader {
		return PrepareOK{}, ErrMalformed
	}
	return PrepareOK{
		StmtID:  binary.LittleEndian.Uint32(p[1:]),
		Columns: binary.LittleEndian.Uint16(p[5:]),
		Params:  binary.LittleEndian.Uint16(p[7:]),
	}, nil
}

// Packets walks the complete packets at the start of b: for each it
// calls f with the sequence id and payload, until f returns false or the
// rest of b is not a whole packet. It returns the bytes consumed.
func Packets(b []byte, f func(seq uint8, payload []byte) bool) int {
	off := 0
	for len(b)-off >= HeaderLen {
		n, seq := Header(b[off:])
		if len(b)-off-HeaderLen < n {
			break
		}
		p := b[off+HeaderLen : off+HeaderLen+n]
		off += HeaderLen + n
		if !f(seq, p) {
			break
		}
	}
	return off
}
