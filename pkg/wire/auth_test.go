package wire

import (
	"bytes"
	"errors"
	"io"
	"os"
	"testing"
	"testing/iotest"
	"time"
)

// The secret and nonces of the fixtures (docs/protocol.md §4.6).
var (
	docSecret = []byte("example secret from docs/protocol.md, never use it")
	docNi     = seqNonce(0xa0)
	docNt     = seqNonce(0xc0)
)

func seqNonce(first byte) Nonce {
	var n Nonce
	for i := range n {
		n[i] = first + byte(i)
	}
	return n
}

func TestAuthFixtures(t *testing.T) {
	mt := TcpcopyMAC(docSecret, docNi, docNt)
	mi := InterceptMAC(docSecret, docNi, docNt)
	tests := []struct {
		name string
		got  []byte
	}{
		{"hello-v7-auth", AppendHello(nil, Format{Version: Version7, PrefixLen: 128, Auth: true})},
		{"v7-challenge", AppendChallenge(nil, docNi)},
		{"v7-auth", AppendAuth(nil, Auth{Nonce: docNt, MAC: mt})},
		{"v7-auth-ok", AppendAuthOK(nil, mi)},
	}
	for _, tt := range tests {
		if want := fixture(t, tt.name); !bytes.Equal(tt.got, want) {
			t.Errorf("%s:\n got % x\nwant % x", tt.name, tt.got, want)
		}
	}
	f, err := ParseHello(fixture(t, "hello-v7-auth"))
	if err != nil || f != (Format{Version: Version7, PrefixLen: 128, Auth: true}) {
		t.Errorf("ParseHello(hello-v7-auth) = %+v, %v", f, err)
	}
	// The auth bit means nothing in a version-6 Hello, and a Hello without
	// it asks for nothing.
	h6 := fixture(t, "hello-v6-combined")
	h6[9] |= helloFlagAuth
	if f, err := ParseHello(h6); err != nil || f.Auth {
		t.Errorf("version-6 Hello with bit 2: %+v, %v", f, err)
	}
	if f, _ := ParseHello(fixture(t, "hello-v7")); f.Auth {
		t.Error("hello-v7 asks for authentication")
	}
}

func TestAuthMACs(t *testing.T) {
	mt := TcpcopyMAC(docSecret, docNi, docNt)
	mi := InterceptMAC(docSecret, docNi, docNt)
	tests := []struct {
		name string
		a, b MAC
		same bool
	}{
		{"same inputs", mt, TcpcopyMAC(docSecret, docNi, docNt), true},
		{"roles differ: no reflection", mt, mi, false},
		{"other secret", mt, TcpcopyMAC([]byte("another secret of the same kind!"), docNi, docNt), false},
		{"other challenge: no replay", mt, TcpcopyMAC(docSecret, seqNonce(1), docNt), false},
		{"nonces swapped", mt, TcpcopyMAC(docSecret, docNt, docNi), false},
	}
	for _, tt := range tests {
		if got := EqualMAC(tt.a, tt.b); got != tt.same {
			t.Errorf("%s: EqualMAC = %v, want %v", tt.name, got, tt.same)
		}
	}
	a, err := NewNonce()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := NewNonce()
	if a == b || a == (Nonce{}) {
		t.Errorf("NewNonce returned %x and %x", a, b)
	}
}

// TestAuthExchange runs the whole exchange between a RouteReader
// (intercept) and a RecordReader (tcpcopy), then a route and a record.
func TestAuthExchange(t *testing.T) {
	f := Format{Version: Version7, PrefixLen: 128, Auth: true}
	toTcpcopy := cat(AppendHello(nil, f), AppendChallenge(nil, docNi),
		AppendAuthOK(nil, InterceptMAC(docSecret, docNi, docNt)), fixture(t, "v7-record-ipv6-synack"))
	toIntercept := cat(AppendOffer(nil, true), AppendAuth(nil, Auth{Nonce: docNt, MAC: TcpcopyMAC(docSecret, docNi, docNt)}),
		fixture(t, "v7-route-add-ipv4"))
	for _, rd := range readers(toTcpcopy) {
		t.Run("tcpcopy/"+rd.name, func(t *testing.T) {
			rr := NewRecordReader(rd.r, f6Combined)
			got, err := rr.ReadHello()
			if err != nil || !got.Auth {
				t.Fatalf("ReadHello = %+v, %v", got, err)
			}
			ni, err := rr.ReadChallenge()
			if err != nil || ni != docNi {
				t.Fatalf("ReadChallenge = %x, %v", ni, err)
			}
			mi, err := rr.ReadAuthOK()
			if err != nil || !EqualMAC(mi, InterceptMAC(docSecret, ni, docNt)) {
				t.Fatalf("ReadAuthOK = %x, %v", mi, err)
			}
			if !rr.Next() || rr.Record().PayloadLen != 0 || rr.Next() || rr.Err() != nil {
				t.Fatalf("record after authentication: %v", rr.Err())
			}
			if _, err := rr.ReadChallenge(); !errors.Is(err, errControlAfterNext) {
				t.Errorf("ReadChallenge after Next: %v", err)
			}
		})
	}
	for _, rd := range readers(toIntercept) {
		t.Run("intercept/"+rd.name, func(t *testing.T) {
			rr := NewRouteReader(rd.r)
			if _, err := rr.ReadOffer(); err != nil {
				t.Fatal(err)
			}
			rr.SetVersion(Version7)
			if !rr.Next() || rr.Msg().Kind != MsgAuth {
				t.Fatalf("first message %+v, %v", rr.Msg(), rr.Err())
			}
			a := rr.Msg().Auth
			if a.Nonce != docNt || !EqualMAC(a.MAC, TcpcopyMAC(docSecret, docNi, a.Nonce)) {
				t.Errorf("auth = %+v", a)
			}
			if !rr.Next() || rr.Msg().Kind != MsgRoute {
				t.Fatalf("second message %+v, %v", rr.Msg(), rr.Err())
			}
		})
	}
}

func TestRouteReaderAuthSkips(t *testing.T) {
	good := fixture(t, "v7-auth")
	short := append([]byte(nil), good[:71]...)
	be.PutUint16(short, 71)
	alg := append([]byte(nil), good...)
	alg[4] = 2
	longer := cat(good, []byte{1, 2, 3})
	be.PutUint16(longer, 75)
	tests := []struct {
		name    string
		msg     []byte
		deliver bool
	}{
		{"fixture", good, true},
		{"a newer peer's longer message", longer, true},
		{"too short", short, false},
		{"unknown algorithm", alg, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rr := NewRouteReader(bytes.NewReader(cat(AppendOffer(nil, true), tt.msg)))
			rr.ReadOffer()
			rr.SetVersion(Version7)
			got := rr.Next()
			if got != tt.deliver || rr.Err() != nil {
				t.Fatalf("Next = %v (%v), want %v", got, rr.Err(), tt.deliver)
			}
			if got && rr.Msg().Auth.Nonce != docNt {
				t.Errorf("nonce %x", rr.Msg().Auth.Nonce)
			}
			if !got && rr.Skipped() != 1 {
				t.Errorf("Skipped = %d", rr.Skipped())
			}
		})
	}
}

func TestReadChallengeErrors(t *testing.T) {
	hello := AppendHello(nil, Format{Version: Version7, PrefixLen: 128, Auth: true})
	ch := fixture(t, "v7-challenge")
	alg := append([]byte(nil), ch...)
	alg[4] = 9
	short := append([]byte(nil), ch[:39]...)
	be.PutUint16(short, 39)
	tests := []struct {
		name string
		in   []byte
		want error
	}{
		{"a record instead", cat(hello, fixture(t, "v7-record-ipv6-synack")), ErrAuth},
		{"auth-ok instead", cat(hello, fixture(t, "v7-auth-ok")), ErrAuth},
		{"too short", cat(hello, short), ErrAuth},
		{"unknown algorithm", cat(hello, alg), ErrAuth},
		{"huge length", cat(hello, []byte{0xff, 0xff, 0x82, 0}), ErrAuth},
		{"end of stream", hello, io.ErrUnexpectedEOF},
		{"cut", cat(hello, ch[:20]), io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rr := NewRecordReader(bytes.NewReader(tt.in), f6Combined)
			if _, err := rr.ReadHello(); err != nil {
				t.Fatal(err)
			}
			_, err := rr.ReadChallenge()
			if !errors.Is(err, tt.want) {
				t.Errorf("err = %v, want %v", err, tt.want)
			}
			if _, err2 := rr.ReadAuthOK(); err2 == nil || rr.Next() {
				t.Error("the error is not sticky")
			}
		})
	}
	// On a version-6 connection there is nothing to read.
	rr := NewRecordReader(bytes.NewReader(fixture(t, "v6-combined-2")), f6Combined)
	if _, err := rr.ReadChallenge(); !errors.Is(err, ErrAuth) {
		t.Errorf("version 6: %v", err)
	}
}

// TestReadChallengeDeadline: a read error (the caller's deadline) stops
// the exchange.
func TestReadChallengeDeadline(t *testing.T) {
	hello := AppendHello(nil, Format{Version: Version7, Auth: true})
	r := io.MultiReader(bytes.NewReader(hello), iotest.ErrReader(os.ErrDeadlineExceeded))
	rr := NewRecordReader(r, f6Combined)
	if _, err := rr.ReadHello(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := rr.ReadChallenge(); !errors.Is(err, os.ErrDeadlineExceeded) || !errors.Is(err, ErrAuth) {
		t.Errorf("err = %v", err)
	}
	if time.Since(start) > time.Second {
		t.Error("slow")
	}
}

// authSeeds are FuzzAuth's seeds: what intercept sends to tcpcopy.
func authSeeds(t testing.TB) [][]byte {
	hello := fixture(t, "hello-v7-auth")
	return [][]byte{
		cat(hello, fixture(t, "v7-challenge"), fixture(t, "v7-auth-ok"), fixture(t, "v7-record-ipv6-synack")),
		cat(hello, fixture(t, "v7-auth-ok")),
		cat(hello, []byte{0, 40, 0x82, 0, 1}),
		cat(fixture(t, "hello-v7"), fixture(t, "v7-challenge")),
	}
}

// FuzzAuth reads a Hello, a challenge and an auth-ok, then records, from
// any bytes: never a panic, never a message out of order, and the same
// outcome whatever the read sizes.
func FuzzAuth(f *testing.F) {
	for _, s := range authSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		run := func(r io.Reader) string {
			rr := NewRecordReader(r, f6Combined)
			hf, herr := rr.ReadHello()
			ni, cerr := rr.ReadChallenge()
			mi, aerr := rr.ReadAuthOK()
			if cerr == nil && (herr != nil || hf.Version != Version7) {
				t.Fatalf("challenge %x read after hello %+v, %v", ni, hf, herr)
			}
			if aerr == nil && cerr != nil {
				t.Fatalf("auth-ok %x read after a failed challenge %v", mi, cerr)
			}
			n := 0
			for rr.Next() {
				n++
			}
			return string(ni[:]) + string(mi[:]) + errString(herr) + errString(cerr) + errString(aerr) + errString(rr.Err()) + string(rune(n))
		}
		if a, b := run(bytes.NewReader(data)), run(iotest.OneByteReader(bytes.NewReader(data))); a != b {
			t.Fatalf("whole vs one-byte reads differ:\n%q\n%q", a, b)
		}
	})
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}
