// Package secret reads the shared secret of --secret-file, which
// authenticates the links between tcpcopy and intercept (docs/protocol.md
// §4.5). The secret never leaves this process: it is not logged, not put in
// errors, and only HMACs of it go on the wire.
package secret

import (
	"bytes"
	"fmt"
	"io"
	"os"
)

// Limits of a secret, after the trailing newline is removed.
const (
	// MinLen is the shortest secret accepted: an HMAC proof of a short
	// secret can be brute-forced offline from one recorded exchange.
	MinLen = 16
	// MaxLen is the longest secret accepted (a file larger than this is
	// not a secret file).
	MaxLen = 4096
)

// Read returns the secret in the file at path: its bytes, with one
// trailing newline (LF or CRLF) removed so that `echo ... > file` works.
// It refuses a file that is not a regular file, that its group or others
// may read or write (like ssh refuses a private key: "chmod 600 FILE"), or
// whose secret is shorter than MinLen or longer than MaxLen. Errors name
// the file, never its content.
func Read(path string) (Bytes, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("secret file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("secret file: %w", err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("secret file %s: not a regular file", path)
	}
	if perm := st.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("secret file %s: permissions %#o let others read or change it; chmod 600 %s", path, perm, path)
	}
	b, err := io.ReadAll(io.LimitReader(f, MaxLen+3))
	if err != nil {
		return nil, fmt.Errorf("secret file %s: %w", path, err)
	}
	b = bytes.TrimSuffix(b, []byte("\n"))
	b = bytes.TrimSuffix(b, []byte("\r"))
	switch {
	case len(b) < MinLen:
		return nil, fmt.Errorf("secret file %s: the secret has %d bytes, at least %d are needed (e.g. head -c 32 /dev/urandom | base64 > %s)", path, len(b), MinLen, path)
	case len(b) > MaxLen:
		return nil, fmt.Errorf("secret file %s: longer than %d bytes", path, MaxLen)
	}
	return b, nil
}

// Bytes is a secret. It formats as "[secret]" with every fmt verb, so that
// a Config printed for debugging does not show it.
type Bytes []byte

// String returns "[secret]".
func (Bytes) String() string { return "[secret]" }

// GoString returns "[secret]".
func (Bytes) GoString() string { return "[secret]" }

// Format writes "[secret]" whatever the verb.
func (Bytes) Format(f fmt.State, _ rune) { _, _ = f.Write([]byte("[secret]")) }
