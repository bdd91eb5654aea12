package mysqlproto

import (
	"bytes"
	"testing"
)

// The decoders never panic, never read out of range, and what they decode
// encodes back to something that decodes the same.

func FuzzParseGreeting(f *testing.F) {
	f.Add(unhex(f, realGreeting)[HeaderLen:])
	f.Add([]byte{10, 'x', 0})
	f.Add([]byte{10})
	f.Fuzz(func(t *testing.T, b []byte) {
		g, err := ParseGreeting(b)
		if err != nil {
			return
		}
		if len(g.Scramble) > len(b) {
			t.Fatalf("scramble of %d bytes from %d", len(g.Scramble), len(b))
		}
		g2, err := ParseGreeting(AppendGreeting(nil, &g))
		if err != nil {
			t.Fatalf("re-encoded greeting: %v", err)
		}
		if g2.ServerVersion != g.ServerVersion || g2.Caps != g.Caps || g2.Plugin != g.Plugin && !bytes.ContainsRune([]byte(g.Plugin), 0) {
			t.Fatalf("round trip: %+v != %+v", g2, g)
		}
	})
}

func FuzzParseHandshakeResponse(f *testing.F) {
	f.Add(unhex(f, realResponse)[HeaderLen:])
	f.Add(AppendHandshakeResponse(nil, &HandshakeResponse{Caps: ClientProtocol41 | ClientSSL, SSLRequest: true}))
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParseHandshakeResponse(b)
		if err != nil || r.SSLRequest {
			return
		}
		if r.Caps&(ClientPluginAuthLenencClientData|ClientSecureConnection) == ClientSecureConnection && len(r.AuthData) > 255 {
			t.Fatal("1-byte length over 255")
		}
		enc := AppendHandshakeResponse(nil, &r)
		r2, err := ParseHandshakeResponse(enc)
		if err != nil {
			// A NUL inside a name cannot be written back; the rest must be.
			if bytes.ContainsRune([]byte(r.User+r.Database+r.Plugin), 0) || r.Caps&(ClientSecureConnection|ClientPluginAuthLenencClientData) == 0 {
				return
			}
			t.Fatalf("re-encoded: %v", err)
		}
		if r2.User != r.User || !bytes.Equal(r2.AuthData, r.AuthData) {
			t.Fatalf("round trip: %+v != %+v", r2, r)
		}
	})
}

func FuzzParseChangeUser(f *testing.F) {
	caps := ClientProtocol41 | ClientSecureConnection | ClientPluginAuth | ClientConnectAttrs
	f.Add(AppendChangeUser(nil, &ChangeUser{User: "u", Database: "d", AuthData: []byte{1, 2}}, caps), caps)
	f.Fuzz(func(t *testing.T, b []byte, caps uint32) {
		_, _ = ParseChangeUser(b, caps)
	})
}

func FuzzServerPackets(f *testing.F) {
	f.Add(unhex(f, realPrepareOK))
	f.Add(AppendPacket(nil, 2, []byte{0xfe, 'a', 0, 1, 2, 0}))
	f.Add(AppendPacket(nil, 2, []byte{0xff, 0x15, 0x04, '#', '2', '8', '0', '0', '0', 'x'}))
	f.Fuzz(func(t *testing.T, b []byte) {
		n := Packets(b, func(seq uint8, p []byte) bool {
			_, _ = ParsePrepareOK(p)
			_, _ = ParseAuthSwitch(p)
			_, _ = ParseError(p)
			_, _ = ParsePublicKey(p)
			return true
		})
		if n < 0 || n > len(b) {
			t.Fatalf("consumed %d of %d", n, len(b))
		}
		_, _, _, _ = ReadLenEnc(b)
	})
}

func FuzzReadOnly(f *testing.F) {
	for _, q := range []string{"SELECT 1", "/*!50000 INSERT */", "SET @@global.x=1", "select 'a\\'b'; -- x\n", "WITH x AS (SELECT 1) DELETE FROM t"} {
		f.Add([]byte(q))
	}
	f.Fuzz(func(t *testing.T, q []byte) {
		ro, verb := ReadOnly(q)
		if ro && verb == "" {
			t.Fatal("read-only without a statement")
		}
		// A statement appended after a write never makes it read-only.
		if ro2, _ := ReadOnly(append(append([]byte("DELETE FROM t;"), q...), []byte("\n;SELECT 1")...)); ro2 {
			t.Fatalf("%q after a DELETE is read-only", q)
		}
	})
}
