package load

import (
	"context"
	"crypto/tls"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labtls"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
)

// newTLSServer is newServer over TLS with a throwaway CA's certificate
// for 127.0.0.1, offering HTTP/2 and HTTP/1.1; it returns the CA file.
func newTLSServer(t *testing.T) (*server, string) {
	t.Helper()
	f, err := labtls.Write(t.TempDir(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(f.Cert, f.Key)
	if err != nil {
		t.Fatal(err)
	}
	s := &server{}
	s.Server = httptest.NewUnstartedServer(recorder.New(s, recorder.Options{}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Config.ErrorLog = log.New(io.Discard, "", 0) // the untrusted handshakes
	s.EnableHTTP2 = true
	s.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	s.StartTLS()
	t.Cleanup(s.Close)
	return s, f.CA
}

func TestHTTPS(t *testing.T) {
	for _, tt := range []struct {
		name  string
		mode  Mode
		http2 bool
		proto string
	}{
		{"keep-alive", KeepAlive, false, "HTTP/1.1"},
		{"short", Short, false, "HTTP/1.1"},
		{"keep-alive h2", KeepAlive, true, "HTTP/2.0"},
		{"short h2", Short, true, "HTTP/2.0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, ca := newTLSServer(t)
			rs, err := Run(context.Background(), Options{URL: s.URL, CA: ca, HTTP2: tt.http2, Mode: tt.mode,
				MaxRequests: 24, RequestsPerConn: 6, Concurrency: 2, BodySizes: []int{0, 100, 70000}, Duration: 20 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			checkAgainstServer(t, s, rs)
			for _, r := range rs {
				if r.Proto != tt.proto || r.WireLen != 0 {
					t.Errorf("request %d: proto %q, wire length %d; want %s, 0 (not known over TLS)", r.Seq, r.Proto, r.WireLen, tt.proto)
				}
			}
			// 24 requests, 6 a connection: 4, and one more for each
			// worker whose share is not a multiple of 6.
			lo, hi := int64(4), int64(5)
			if tt.mode == Short {
				lo, hi = 24, 24
			}
			if got := s.conns.Load(); got < lo || got > hi {
				t.Errorf("%d connections, want %d..%d", got, lo, hi)
			}
			st := Summarize(rs)
			if tt.http2 && st.HTTP2 != len(rs) || !tt.http2 && st.HTTP2 != 0 {
				t.Errorf("Stats.HTTP2 = %d of %d", st.HTTP2, len(rs))
			}
		})
	}
}

// TestHTTPSUntrusted: a server certificate the CA did not sign fails
// every request, and the options that need https are refused for http.
func TestHTTPSUntrusted(t *testing.T) {
	s, _ := newTLSServer(t)
	_, other := newTLSServer(t)
	rs, err := Run(context.Background(), Options{URL: s.URL, CA: other, MaxRequests: 3, Duration: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if r.OK() || !strings.Contains(r.Err, "certificate") {
			t.Errorf("request %d with another CA: status %d, err %q; want a certificate error", r.Seq, r.Status, r.Err)
		}
	}
	for _, o := range []Options{
		{URL: "http://127.0.0.1:1", CA: other},
		{URL: "http://127.0.0.1:1", HTTP2: true},
		{URL: s.URL, CA: s.URL},
	} {
		if _, err := Run(context.Background(), o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}
