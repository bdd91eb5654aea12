package mysqlproto

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
)

// ErrPublicKey: the server's public key could not be read.
var ErrPublicKey = errors.New("mysqlproto: server public key is not an RSA public key in PEM")

// NativeAuth returns mysql_native_password's answer to nonce for
// password (MySQL "Native Authentication"): SHA1(password) XOR
// SHA1(nonce + SHA1(SHA1(password))), 20 bytes; empty for an empty
// password.
func NativeAuth(password string, nonce []byte) []byte {
	if password == "" {
		return nil
	}
	h1 := sha1.Sum([]byte(password))
	h2 := sha1.Sum(h1[:])
	d := sha1.New()
	d.Write(nonce)
	d.Write(h2[:])
	var h3 [sha1.Size]byte
	d.Sum(h3[:0])
	for i := range h1 {
		h1[i] ^= h3[i]
	}
	return h1[:]
}

// CachingSHA2Auth returns caching_sha2_password's fast-path answer to
// nonce for password (MySQL "Caching_sha2_password information"):
// XOR(SHA256(password), SHA256(SHA256(SHA256(password)), nonce)), 32
// bytes; empty for an empty password.
func CachingSHA2Auth(password string, nonce []byte) []byte {
	if password == "" {
		return nil
	}
	h1 := sha256.Sum256([]byte(password))
	h2 := sha256.Sum256(h1[:])
	d := sha256.New()
	d.Write(h2[:])
	d.Write(nonce)
	var h3 [sha256.Size]byte
	d.Sum(h3[:0])
	for i := range h1 {
		h1[i] ^= h3[i]
	}
	return h1[:]
}

// xorPassword returns password with a final NUL, XORed with nonce
// repeated: what caching_sha2_password (and sha256_password) encrypt with
// the server's public key.
func xorPassword(password string, nonce []byte) []byte {
	b := append([]byte(password), 0)
	if len(nonce) == 0 {
		return b
	}
	for i := range b {
		b[i] ^= nonce[i%len(nonce)]
	}
	return b
}

// ParsePublicKey reads the server's RSA public key as AuthMoreData
// carries it: PEM, "PUBLIC KEY" (PKIX) or "RSA PUBLIC KEY" (PKCS #1).
func ParsePublicKey(pemBytes []byte) (*rsa.PublicKey, error) {
	blk, _ := pem.Decode(pemBytes)
	if blk == nil {
		return nil, ErrPublicKey
	}
	if k, err := x509.ParsePKIXPublicKey(blk.Bytes); err == nil {
		if rk, ok := k.(*rsa.PublicKey); ok {
			return rk, nil
		}
		return nil, ErrPublicKey
	}
	if k, err := x509.ParsePKCS1PublicKey(blk.Bytes); err == nil {
		return k, nil
	}
	return nil, ErrPublicKey
}

// EncryptPassword returns caching_sha2_password's full-path answer over
// an unencrypted connection: XOR(password + NUL, nonce) encrypted with the
// server's public key, RSA-OAEP with SHA-1 (OpenSSL's
// RSA_PKCS1_OAEP_PADDING). random is the randomness source (rand.Reader
// if nil).
func EncryptPassword(password string, nonce []byte, key *rsa.PublicKey, random io.Reader) ([]byte, error) {
	if random == nil {
		random = rand.Reader
	}
	return rsa.EncryptOAEP(sha1.New(), random, key, xorPassword(password, nonce), nil)
}

// DecryptPassword undoes EncryptPassword with the private key (for tests
// that play the server).
func DecryptPassword(ct, nonce []byte, key *rsa.PrivateKey) (string, error) {
	b, err := rsa.DecryptOAEP(sha1.New(), nil, key, ct, nil)
	if err != nil {
		return "", err
	}
	b = xorPassword(string(b[:max(len(b)-1, 0)]), nonce) // undo the XOR (the NUL XORs back)
	if len(b) > 0 {
		b = b[:len(b)-1]
	}
	return string(b), nil
}
