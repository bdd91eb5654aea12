package wire

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
)

// Authentication (docs/protocol.md §4.6): version 7 only, and only when
// intercept has a shared secret. intercept sets [Format.Auth] in its Hello
// and sends a challenge right after it; tcpcopy answers with an auth
// message, intercept confirms with an auth-ok message. Each side proves
// that it knows the secret with an HMAC-SHA-256 over both sides' fresh
// random nonces, under a label naming its role: no secret travels, a
// recorded exchange cannot be replayed (the other side's nonce is new on
// every connection), and one side's proof cannot be reflected as the
// other's. C peers never see any of it: a C tcpcopy offers no version 7
// (intercept with a secret refuses it), and a C intercept sends no Hello
// (tcpcopy with a secret refuses it).
//
// The messages authenticate the peers of a connection, not the bytes that
// follow: someone who can change the TCP stream on the path can still
// change routes and records. Keep the link on a network you trust.

// Sizes of the authentication fields.
const (
	// NonceLen is the length of each side's random nonce.
	NonceLen = 32
	// MACLen is the length of an HMAC-SHA-256 proof.
	MACLen = sha256.Size
)

// AuthHMACSHA256 is the one authentication algorithm: HMAC-SHA-256 with
// 32-byte nonces. It is the algorithm byte of the three messages.
const AuthHMACSHA256 = 1

// Version-7 authentication messages: u8 algorithm, 3 reserved bytes, then
// the fields.
const (
	msgAuth      = 0x04 // tcpcopy → intercept: nonce, MAC
	msgChallenge = 0x82 // intercept → tcpcopy: nonce
	msgAuthOK    = 0x83 // intercept → tcpcopy: MAC

	authAlgOff    = 4
	authFieldOff  = 8
	challengeLen  = authFieldOff + NonceLen
	authLen       = authFieldOff + NonceLen + MACLen
	authOKLen     = authFieldOff + MACLen
	helloFlagAuth = 1 << 2 // Hello flags, version 7: a challenge follows
)

// The labels bind each proof to the role that makes it.
const (
	labelTcpcopy   = "tcpcopy-go auth v7: tcpcopy\x00"
	labelIntercept = "tcpcopy-go auth v7: intercept\x00"
)

// Nonce is one side's random contribution to an authentication.
type Nonce [NonceLen]byte

// MAC is a proof of the secret: an HMAC-SHA-256.
type MAC [MACLen]byte

// Auth is tcpcopy's answer to a challenge: its own nonce and its proof.
type Auth struct {
	Nonce Nonce
	MAC   MAC
}

// ErrAuth is wrapped by the errors of the authentication exchange that mean
// the peer does not know the secret or does not authenticate as expected.
// The connection must be closed.
var ErrAuth = errors.New("wire: authentication failed")

// NewNonce returns a nonce from crypto/rand.
func NewNonce() (Nonce, error) {
	var n Nonce
	if _, err := io.ReadFull(rand.Reader, n[:]); err != nil {
		return n, fmt.Errorf("wire: nonce: %w", err)
	}
	return n, nil
}

// TcpcopyMAC returns tcpcopy's proof for the challenge nonce ni (from
// intercept) and its own nonce nt: HMAC-SHA-256(secret, "tcpcopy-go auth
// v7: tcpcopy" 0x00 || ni || nt).
func TcpcopyMAC(secret []byte, ni, nt Nonce) MAC { return authMAC(secret, labelTcpcopy, ni, nt) }

// InterceptMAC returns intercept's proof: HMAC-SHA-256(secret, "tcpcopy-go
// auth v7: intercept" 0x00 || ni || nt).
func InterceptMAC(secret []byte, ni, nt Nonce) MAC { return authMAC(secret, labelIntercept, ni, nt) }

func authMAC(secret []byte, label string, ni, nt Nonce) MAC {
	h := hmac.New(sha256.New, secret)
	h.Write([]byte(label))
	h.Write(ni[:])
	h.Write(nt[:])
	var m MAC
	h.Sum(m[:0])
	return m
}

// EqualMAC compares two proofs in constant time.
func EqualMAC(a, b MAC) bool { return hmac.Equal(a[:], b[:]) }

// AppendChallenge appends intercept's challenge (sent right after a Hello
// with Format.Auth).
func AppendChallenge(dst []byte, ni Nonce) []byte {
	var m [challengeLen]byte
	putAuthHeader(m[:], msgChallenge)
	copy(m[authFieldOff:], ni[:])
	return append(dst, m[:]...)
}

// AppendAuth appends tcpcopy's answer to a challenge; it must be its first
// message after the Hello.
func AppendAuth(dst []byte, a Auth) []byte {
	var m [authLen]byte
	putAuthHeader(m[:], msgAuth)
	copy(m[authFieldOff:], a.Nonce[:])
	copy(m[authFieldOff+NonceLen:], a.MAC[:])
	return append(dst, m[:]...)
}

// AppendAuthOK appends intercept's proof, sent once tcpcopy's proof is
// verified.
func AppendAuthOK(dst []byte, mi MAC) []byte {
	var m [authOKLen]byte
	putAuthHeader(m[:], msgAuthOK)
	copy(m[authFieldOff:], mi[:])
	return append(dst, m[:]...)
}

func putAuthHeader(m []byte, typ byte) {
	be.PutUint16(m[msgLenOff:], uint16(len(m)))
	m[msgTypeOff] = typ
	m[authAlgOff] = AuthHMACSHA256
}

// decodeAuth decodes the body of a version-7 auth message m (type msgAuth);
// false for one too short or of an unknown algorithm.
func decodeAuth(m []byte, out *Auth) bool {
	if len(m) < authLen || m[authAlgOff] != AuthHMACSHA256 {
		return false
	}
	copy(out.Nonce[:], m[authFieldOff:])
	copy(out.MAC[:], m[authFieldOff+NonceLen:])
	return true
}

var errControlAfterNext = errors.New("wire: authentication message read after Next")

// ReadChallenge reads intercept's challenge, the first message after a
// Hello with Format.Auth, and returns its nonce. Anything else there (a
// record, another type, a short message, an unknown algorithm) is a sticky
// error wrapping [ErrAuth]. The caller bounds the wait with a read
// deadline; read errors are sticky too.
func (rr *RecordReader) ReadChallenge() (Nonce, error) {
	var n Nonce
	m, err := rr.readControl(msgChallenge, challengeLen, "challenge")
	if err != nil {
		return n, err
	}
	copy(n[:], m[authFieldOff:])
	return n, nil
}

// ReadAuthOK reads intercept's proof, the first message after tcpcopy's
// auth message, with the rules of ReadChallenge. The caller compares it
// with [InterceptMAC] using [EqualMAC].
func (rr *RecordReader) ReadAuthOK() (MAC, error) {
	var mac MAC
	m, err := rr.readControl(msgAuthOK, authOKLen, "auth-ok")
	if err != nil {
		return mac, err
	}
	copy(mac[:], m[authFieldOff:])
	return mac, nil
}

// readControl reads one version-7 message that must be of type typ, at
// least size bytes long, with the known algorithm.
func (rr *RecordReader) readControl(typ byte, size int, name string) ([]byte, error) {
	switch {
	case rr.started:
		return nil, errControlAfterNext
	case rr.err != nil:
		return nil, rr.err
	case rr.eof:
		return nil, fmt.Errorf("%w: waiting for %s: %w", ErrAuth, name, io.ErrUnexpectedEOF)
	case rr.f.Version != Version7:
		return nil, fmt.Errorf("%w: %s on a version-%d connection", ErrAuth, name, rr.f.Version)
	}
	if err := rr.in.fill(msgHdrLen); err != nil {
		rr.err = fmt.Errorf("%w: waiting for %s: %w", ErrAuth, name, eofUnexpected(err))
		return nil, rr.err
	}
	h := rr.in.buffered()
	n := int(be.Uint16(h[msgLenOff:]))
	if h[msgTypeOff] != typ || n < size || n > MaxHelloLen {
		rr.err = fmt.Errorf("%w: expected %s (type %#02x, %d bytes), got type %#02x of %d bytes", ErrAuth, name, typ, size, h[msgTypeOff], n)
		return nil, rr.err
	}
	if err := rr.in.fill(n); err != nil {
		rr.err = fmt.Errorf("%w: reading %s: %w", ErrAuth, name, eofUnexpected(err))
		return nil, rr.err
	}
	m := rr.in.take(n)
	if m[authAlgOff] != AuthHMACSHA256 {
		rr.err = fmt.Errorf("%w: %s with unknown algorithm %d", ErrAuth, name, m[authAlgOff])
		return nil, rr.err
	}
	return m, nil
}

// eofUnexpected turns a clean EOF into io.ErrUnexpectedEOF: inside a
// handshake the stream must not end.
func eofUnexpected(err error) error {
	if err == io.EOF {
		return io.ErrUnexpectedEOF
	}
	return err
}
