package mysqlproto

import (
	"encoding/binary"
	"errors"
)

// Errors of the decoders.
var (
	// ErrShort: the packet ends before a field that must be there.
	ErrShort = errors.New("mysqlproto: packet too short")
	// ErrMalformed: a field has a value the protocol does not allow.
	ErrMalformed = errors.New("mysqlproto: malformed packet")
)

// HeaderLen is the size of a packet header: a 3-byte little-endian payload
// length and a 1-byte sequence id.
const HeaderLen = 4

// MaxPayload is the longest payload of one packet; a payload of exactly
// MaxPayload is continued by the next packet (a command longer than 16 MiB).
const MaxPayload = 1<<24 - 1

// Header returns the payload length and sequence id of the packet header
// at the start of b, which must hold HeaderLen bytes.
func Header(b []byte) (n int, seq uint8) {
	return int(b[0]) | int(b[1])<<8 | int(b[2])<<16, b[3]
}

// PutHeader writes a packet header for a payload of n bytes (at most
// MaxPayload) with sequence id seq into b[:HeaderLen].
func PutHeader(b []byte, n int, seq uint8) {
	b[0], b[1], b[2], b[3] = byte(n), byte(n>>8), byte(n>>16), seq
}

// AppendPacket appends payload framed as one packet with sequence id seq.
// payload must be shorter than MaxPayload (login packets always are).
func AppendPacket(dst []byte, seq uint8, payload []byte) []byte {
	var h [HeaderLen]byte
	PutHeader(h[:], len(payload), seq)
	return append(append(dst, h[:]...), payload...)
}

// Capability flags (MySQL "Capabilities Flags"). The low 32 bits are
// exchanged in the greeting and the HandshakeResponse; MariaDB's extended
// capabilities (Ext*) travel separately.
const (
	ClientLongPassword               uint32 = 1 << 0 // MariaDB: CLIENT_MYSQL
	ClientFoundRows                  uint32 = 1 << 1
	ClientLongFlag                   uint32 = 1 << 2
	ClientConnectWithDB              uint32 = 1 << 3
	ClientNoSchema                   uint32 = 1 << 4
	ClientCompress                   uint32 = 1 << 5
	ClientODBC                       uint32 = 1 << 6
	ClientLocalFiles                 uint32 = 1 << 7
	ClientIgnoreSpace                uint32 = 1 << 8
	ClientProtocol41                 uint32 = 1 << 9
	ClientInteractive                uint32 = 1 << 10
	ClientSSL                        uint32 = 1 << 11
	ClientIgnoreSigpipe              uint32 = 1 << 12
	ClientTransactions               uint32 = 1 << 13
	ClientReserved                   uint32 = 1 << 14
	ClientSecureConnection           uint32 = 1 << 15
	ClientMultiStatements            uint32 = 1 << 16
	ClientMultiResults               uint32 = 1 << 17
	ClientPSMultiResults             uint32 = 1 << 18
	ClientPluginAuth                 uint32 = 1 << 19
	ClientConnectAttrs               uint32 = 1 << 20
	ClientPluginAuthLenencClientData uint32 = 1 << 21
	ClientCanHandleExpiredPasswords  uint32 = 1 << 22
	ClientSessionTrack               uint32 = 1 << 23
	ClientDeprecateEOF               uint32 = 1 << 24
	ClientOptionalResultsetMetadata  uint32 = 1 << 25
	ClientZstdCompression            uint32 = 1 << 26
	ClientQueryAttributes            uint32 = 1 << 27
)

// DefaultCaps are the capabilities of a login tcpcopy makes up for a
// connection whose own login it never saw and learnt nothing about: what
// common client libraries ask for (text and binary protocol, several
// results, multi-statements, LOAD DATA LOCAL), minus compression and TLS.
const DefaultCaps = ClientLongPassword | ClientLongFlag | ClientProtocol41 | ClientTransactions |
	ClientSecureConnection | ClientMultiStatements | ClientMultiResults | ClientPSMultiResults |
	ClientPluginAuth | ClientLocalFiles | ClientPluginAuthLenencClientData

// DefaultCharset is utf8mb4_general_ci, the collation of a made-up login.
const DefaultCharset = 45

// Command bytes (the first payload byte of a command packet).
const (
	ComSleep            = 0x00
	ComQuit             = 0x01
	ComInitDB           = 0x02
	ComQuery            = 0x03
	ComFieldList        = 0x04
	ComCreateDB         = 0x05
	ComDropDB           = 0x06
	ComRefresh          = 0x07
	ComShutdown         = 0x08
	ComStatistics       = 0x09
	ComProcessInfo      = 0x0a
	ComConnect          = 0x0b
	ComProcessKill      = 0x0c
	ComDebug            = 0x0d
	ComPing             = 0x0e
	ComTime             = 0x0f
	ComDelayedInsert    = 0x10
	ComChangeUser       = 0x11
	ComBinlogDump       = 0x12
	ComTableDump        = 0x13
	ComConnectOut       = 0x14
	ComRegisterSlave    = 0x15
	ComStmtPrepare      = 0x16
	ComStmtExecute      = 0x17
	ComStmtSendLongData = 0x18
	ComStmtClose        = 0x19
	ComStmtReset        = 0x1a
	ComSetOption        = 0x1b
	ComStmtFetch        = 0x1c
	ComDaemon           = 0x1d
	ComBinlogDumpGTID   = 0x1e
	ComResetConnection  = 0x1f
	// ComStmtBulkExecute is MariaDB's array-binding execute.
	ComStmtBulkExecute = 0xfa
)

// KnownCommand reports whether c is a command byte a client sends in the
// command phase.
func KnownCommand(c byte) bool {
	return c <= ComResetConnection || c == ComStmtBulkExecute
}

// HasStmtID reports whether command c carries a statement id in its
// payload bytes 1..4 (little-endian).
func HasStmtID(c byte) bool {
	switch c {
	case ComStmtExecute, ComStmtSendLongData, ComStmtClose, ComStmtReset, ComStmtFetch, ComStmtBulkExecute:
		return true
	}
	return false
}

// StmtIDOffset is the offset of the statement id in such a command's
// payload.
const StmtIDOffset = 1

// ReadLenEnc reads a length-encoded integer at the start of b and returns
// it and its size. null is set for the NULL marker 0xfb.
func ReadLenEnc(b []byte) (v uint64, n int, null bool, err error) {
	if len(b) == 0 {
		return 0, 0, false, ErrShort
	}
	switch c := b[0]; {
	case c < 0xfb:
		return uint64(c), 1, false, nil
	case c == 0xfb:
		return 0, 1, true, nil
	case c == 0xfc:
		if len(b) < 3 {
			return 0, 0, false, ErrShort
		}
		return uint64(binary.LittleEndian.Uint16(b[1:])), 3, false, nil
	case c == 0xfd:
		if len(b) < 4 {
			return 0, 0, false, ErrShort
		}
		return uint64(b[1]) | uint64(b[2])<<8 | uint64(b[3])<<16, 4, false, nil
	case c == 0xfe:
		if len(b) < 9 {
			return 0, 0, false, ErrShort
		}
		return binary.LittleEndian.Uint64(b[1:]), 9, false, nil
	}
	return 0, 0, false, ErrMalformed // 0xff
}

// AppendLenEnc appends v as a length-encoded integer.
func AppendLenEnc(dst []byte, v uint64) []byte {
	switch {
	case v < 0xfb:
		return append(dst, byte(v))
	case v < 1<<16:
		return append(dst, 0xfc, byte(v), byte(v>>8))
	case v < 1<<24:
		return append(dst, 0xfd, byte(v), byte(v>>8), byte(v>>16))
	}
	dst = append(dst, 0xfe)
	return binary.LittleEndian.AppendUint64(dst, v)
}

// readNul returns the bytes up to the first NUL at the start of b and the
// number of bytes read including the NUL.
func readNul(b []byte) ([]byte, int, error) {
	for i, c := range b {
		if c == 0 {
			return b[:i], i + 1, nil
		}
	}
	return nil, 0, ErrShort
}
