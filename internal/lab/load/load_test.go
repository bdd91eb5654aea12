package load

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
)

// server is an httptest server running a recorder that counts connections.
type server struct {
	*httptest.Server
	conns atomic.Int64
	mu    sync.Mutex
	log   bytes.Buffer
}

func (s *server) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.log.Write(b)
}

func (s *server) entries(t *testing.T) []recorder.Entry {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	es, err := recorder.DecodeLog(bytes.NewReader(s.log.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	return es
}

func newServer(t *testing.T) *server {
	t.Helper()
	s := &server{}
	s.Server = httptest.NewUnstartedServer(recorder.New(s, recorder.Options{}))
	s.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}
	s.Start()
	t.Cleanup(s.Close)
	return s
}

// checkAgainstServer checks that every successful result was recorded by
// the server with the same method, length and hash, and that ids are unique.
func checkAgainstServer(t *testing.T, s *server, rs []Result) {
	t.Helper()
	ids := map[string]bool{}
	for _, r := range rs {
		if ids[r.ID] {
			t.Errorf("duplicate id %s", r.ID)
		}
		ids[r.ID] = true
	}
	byID := map[string]recorder.Entry{}
	for _, e := range s.entries(t) {
		byID[e.ID] = e
	}
	for _, r := range rs {
		if !r.OK() {
			t.Errorf("request %d failed: status %d err %s", r.Seq, r.Status, r.Err)
			continue
		}
		e, ok := byID[r.ID]
		if !ok {
			t.Errorf("request %s not recorded", r.ID)
			continue
		}
		if e.Method != r.Method || e.BodyLen != int64(r.BodyLen) || e.BodySHA256 != r.BodySHA256 {
			t.Errorf("%s: server got %s %d %s, client sent %s %d %s", r.ID, e.Method, e.BodyLen, e.BodySHA256, r.Method, r.BodyLen, r.BodySHA256)
		}
	}
}

func TestBoundedByCount(t *testing.T) {
	s := newServer(t)
	var log bytes.Buffer
	rs, err := Run(context.Background(), Options{URL: s.URL, MaxRequests: 30, Duration: 20 * time.Second, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 30 {
		t.Fatalf("got %d results, want 30", len(rs))
	}
	for i, r := range rs {
		if r.Seq != i {
			t.Fatalf("result %d has seq %d: not sorted", i, r.Seq)
		}
	}
	checkAgainstServer(t, s, rs)
	if got := strings.Count(log.String(), "\n"); got != 30 {
		t.Errorf("log has %d lines, want 30", got)
	}
}

func TestBoundedByTime(t *testing.T) {
	s := newServer(t)
	start := time.Now()
	rs, err := Run(context.Background(), Options{URL: s.URL, Rate: 50, Duration: 400 * time.Millisecond, MaxRequests: 10000, BodySizes: []int{0, 100}})
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("run took %v, want about 400ms", d)
	}
	// 50/s for 0.4 s: 20 requests (seq 0 at t=0 ... seq 19 at 0.38 s),
	// fewer when the machine is starved: the dispatcher never queues.
	if len(rs) < 1 || len(rs) > 20 {
		t.Errorf("got %d requests, want about 20", len(rs))
	}
	checkAgainstServer(t, s, rs)
}

func TestCancel(t *testing.T) {
	s := newServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	rs, err := Run(ctx, Options{URL: s.URL, Rate: 20, Duration: time.Minute, MaxRequests: 10000, BodySizes: []int{0, 100}})
	if err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	if d > 2*time.Second {
		t.Errorf("run took %v after cancel at 200ms", d)
	}
	// About 4 (20/s for 0.2 s); on a starved machine the cancel is seen
	// late, so bound by the time actually elapsed.
	if max := int(d.Seconds()*20) + 1; len(rs) == 0 || len(rs) > max {
		t.Errorf("got %d requests in %v, want 1..%d", len(rs), d, max)
	}
}

func TestConnectionModes(t *testing.T) {
	cases := []struct {
		name      string
		mode      Mode
		wantConns func(int64) bool
		wantKA    func(Result) bool
	}{
		// 2 workers share 40 requests, 10 per connection: 4 connections,
		// 5 when the workers did not get 20 each.
		{"keepalive", KeepAlive, func(n int64) bool { return n == 4 || n == 5 }, func(r Result) bool { return r.KeepAlive }},
		{"short", Short, func(n int64) bool { return n == 40 }, func(r Result) bool { return !r.KeepAlive && !r.Reused }},
		{"mixed", Mixed, func(n int64) bool { return n > 4 && n < 40 }, func(Result) bool { return true }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s := newServer(t)
			rs, err := Run(context.Background(), Options{
				URL: s.URL, Mode: c.mode, MaxRequests: 40, Concurrency: 2, RequestsPerConn: 10, Seed: 7,
			})
			if err != nil {
				t.Fatal(err)
			}
			if len(rs) != 40 {
				t.Fatalf("got %d results, want 40", len(rs))
			}
			checkAgainstServer(t, s, rs)
			if n := s.conns.Load(); !c.wantConns(n) {
				t.Errorf("server saw %d connections", n)
			}
			if n := int64(Summarize(rs).Connections); n != s.conns.Load() {
				t.Errorf("client counted %d connections, server %d", n, s.conns.Load())
			}
			perConn := map[string]int{}
			for _, r := range rs {
				perConn[r.Local]++
				if !c.wantKA(r) {
					t.Errorf("request %d: keepalive %v reused %v", r.Seq, r.KeepAlive, r.Reused)
				}
			}
			for local, n := range perConn {
				if n > 10 {
					t.Errorf("connection from %s carried %d requests, want at most 10", local, n)
				}
			}
		})
	}
}

func TestBodySizesAndPlan(t *testing.T) {
	s := newServer(t)
	sizes := []int{0, 7, 5000, 70000}
	opts := Options{URL: s.URL, MaxRequests: 60, Methods: []string{"GET", "POST", "POST"}, BodySizes: sizes, Seed: 42, IDPrefix: "a"}
	rs, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	checkAgainstServer(t, s, rs)
	seen := map[int]bool{}
	methods := map[string]int{}
	for _, r := range rs {
		methods[r.Method]++
		if r.Method == "GET" {
			if r.BodyLen != 0 {
				t.Errorf("GET %d has a %d-byte body", r.Seq, r.BodyLen)
			}
			continue
		}
		if !slices.Contains(sizes, r.BodyLen) {
			t.Errorf("request %d: body size %d not in %v", r.Seq, r.BodyLen, sizes)
		}
		seen[r.BodyLen] = true
	}
	if len(seen) != len(sizes) {
		t.Errorf("sizes used: %v, want all of %v", seen, sizes)
	}
	if methods["GET"] == 0 || methods["POST"] <= methods["GET"] {
		t.Errorf("method mix %v, want about 1 GET for 2 POST", methods)
	}

	// Same seed, same plan: method, size and content per sequence number.
	opts.IDPrefix = "b"
	rs2, err := Run(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	for i := range rs {
		a, b := rs[i], rs2[i]
		if a.Method != b.Method || a.BodyLen != b.BodyLen || a.BodySHA256 != b.BodySHA256 {
			t.Errorf("seq %d differs between runs: %s %d %s vs %s %d %s", i, a.Method, a.BodyLen, a.BodySHA256, b.Method, b.BodyLen, b.BodySHA256)
		}
	}
	// Distinct bodies of one size have distinct content.
	hashes := map[string]bool{}
	for _, r := range rs {
		if r.BodyLen == 5000 {
			if hashes[r.BodySHA256] {
				t.Errorf("two 5000-byte bodies with the same hash")
			}
			hashes[r.BodySHA256] = true
		}
	}
}

func TestLocalAddrsAndRespSize(t *testing.T) {
	s := newServer(t)
	srcs := []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}
	rs, err := Run(context.Background(), Options{URL: s.URL, Mode: Short, MaxRequests: 10, LocalAddrs: srcs, RespSize: 3000})
	if err != nil {
		t.Fatal(err)
	}
	checkAgainstServer(t, s, rs)
	remotes := map[string]int{}
	for _, e := range s.entries(t) {
		host, _, _ := net.SplitHostPort(e.Remote)
		remotes[host]++
	}
	if remotes["127.0.0.1"] != 5 || remotes["127.0.0.2"] != 5 {
		t.Errorf("sources seen by the server: %v, want 5 each", remotes)
	}
	for _, r := range rs {
		if r.RespLen != 3000 {
			t.Errorf("request %d: response %d bytes, want 3000", r.Seq, r.RespLen)
		}
	}
}

// TestRespChunked checks that a share of the requests asks for a chunked
// answer, drawn from the plan, and that the results say which came
// chunked.
func TestRespChunked(t *testing.T) {
	for _, tt := range []struct {
		share    float64
		min, max int // chunked answers of 40
	}{{0, 0, 0}, {0.5, 10, 30}, {1, 40, 40}} {
		s := newServer(t)
		rs, err := Run(context.Background(), Options{URL: s.URL, MaxRequests: 40, RespSize: 5000, RespChunked: tt.share, Seed: 3})
		if err != nil {
			t.Fatal(err)
		}
		checkAgainstServer(t, s, rs)
		asked := map[string]bool{}
		for _, e := range s.entries(t) {
			asked[e.ID] = strings.Contains(e.Path, "chunked=1") && strings.Contains(e.Path, "resp=5000")
			if e.Chunked != asked[e.ID] {
				t.Errorf("%s: recorded chunked %v for %s", e.ID, e.Chunked, e.Path)
			}
		}
		n := 0
		for _, r := range rs {
			if r.RespChunked {
				n++
			}
			if r.RespChunked != asked[r.ID] || r.RespLen != 5000 {
				t.Errorf("share %v, %s: chunked %v (asked %v), %d bytes", tt.share, r.ID, r.RespChunked, asked[r.ID], r.RespLen)
			}
		}
		if n < tt.min || n > tt.max {
			t.Errorf("share %v: %d of %d answers chunked, want %d..%d", tt.share, n, len(rs), tt.min, tt.max)
		}
	}
}

func TestReusePorts(t *testing.T) {
	s := newServer(t)
	rs, err := Run(context.Background(), Options{URL: s.URL, Mode: Short, MaxRequests: 40, Concurrency: 2, ReusePorts: true,
		LocalAddrs: []netip.Addr{netip.MustParseAddr("127.0.0.3")}})
	if err != nil {
		t.Fatal(err)
	}
	checkAgainstServer(t, s, rs)
	remotes := map[string]int{}
	for _, e := range s.entries(t) {
		remotes[e.Remote]++
	}
	if len(remotes) != 2 || remotes["127.0.0.3:40000"]+remotes["127.0.0.3:40001"] != 40 {
		t.Errorf("sources seen by the server: %v, want 127.0.0.3:40000 and :40001 only", remotes)
	}
	if n := s.conns.Load(); n != 40 {
		t.Errorf("%d connections, want one per request", n)
	}
}

func TestLogRoundTrip(t *testing.T) {
	s := newServer(t)
	var log bytes.Buffer
	rs, err := Run(context.Background(), Options{URL: s.URL, MaxRequests: 12, Log: &log})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "load.jsonl")
	if err := writeFile(path, log.Bytes()); err != nil {
		t.Fatal(err)
	}
	got, err := ReadResults(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(rs) {
		t.Fatalf("read %d results, want %d", len(got), len(rs))
	}
	for i := range rs {
		a, b := rs[i], got[i]
		if a.ID != b.ID || a.BodySHA256 != b.BodySHA256 || a.Latency != b.Latency || !a.Start.Equal(b.Start) {
			t.Errorf("result %d: got %+v, want %+v", i, b, a)
		}
	}
}

func TestBadOptions(t *testing.T) {
	for _, o := range []Options{
		{},
		{URL: "ftp://x"},
		{URL: "http://"},
		{URL: "http://x", Rate: -1},
		{URL: "http://x", BodySizes: []int{-1}},
		{URL: "http://x", Mode: Mixed + 1},
		{URL: "http://x", RespChunked: -0.1},
		{URL: "http://x", RespChunked: 1.5},
		{URL: "http://x", Pipeline: -1},
		{URL: "http://x", Pipeline: 2, Mode: Short},
		{URL: "http://x", Pipeline: 2, ExpectContinue: true},
		{URL: "https://x", Pipeline: 2},
		{URL: "http://x", Think: -time.Second},
		{URL: "http://x", Think: time.Second, Mode: Short},
	} {
		if _, err := Run(context.Background(), o); err == nil {
			t.Errorf("%+v: want an error", o)
		}
	}
	for _, s := range []string{"keepalive", "short", "mixed"} {
		m, err := ParseMode(s)
		if err != nil || m.String() != s {
			t.Errorf("ParseMode(%q) = %v, %v", s, m, err)
		}
	}
	if _, err := ParseMode("fast"); err == nil {
		t.Error(`ParseMode("fast"): want an error`)
	}
}

func writeFile(path string, b []byte) error { return os.WriteFile(path, b, 0o644) }

// TestExpectContinue checks that requests with a body announce
// "Expect: 100-continue" and get the recorder's interim response before
// sending the body, and that bodiless requests do not.
func TestExpectContinue(t *testing.T) {
	var expects atomic.Int64
	s := &server{}
	rec := recorder.New(s, recorder.Options{})
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Expect") == "100-continue" {
			expects.Add(1)
		}
		rec.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	rs, err := Run(context.Background(), Options{URL: s.URL, MaxRequests: 24, Methods: []string{"GET", "POST"},
		BodySizes: []int{0, 100, 70000}, ExpectContinue: true, Concurrency: 2})
	if err != nil {
		t.Fatal(err)
	}
	checkAgainstServer(t, s, rs)
	withBody := 0
	for _, r := range rs {
		if r.BodyLen > 0 {
			withBody++
		}
		if r.Continued != (r.BodyLen > 0) {
			t.Errorf("request %d (%s, %d bytes): continued %v, want %v", r.Seq, r.Method, r.BodyLen, r.Continued, r.BodyLen > 0)
		}
		// The body followed the interim response, not the timeout.
		if r.Latency >= ExpectContinueTimeout {
			t.Errorf("request %d took %v: waited for the 100-continue timeout", r.Seq, r.Latency)
		}
	}
	if withBody == 0 {
		t.Fatal("no request had a body")
	}
	if n := expects.Load(); n != int64(withBody) {
		t.Errorf("server saw %d requests with Expect: 100-continue, want %d", n, withBody)
	}
}

// TestDataOnAckRequests checks that requests still work over sockets with
// TCP_DEFER_ACCEPT; that the request rides on the handshake's last ACK is
// checked on a capture in the lab (labrun TestDataOnAckCapture).
func TestDataOnAckRequests(t *testing.T) {
	s := newServer(t)
	rs, err := Run(context.Background(), Options{URL: s.URL, Mode: Mixed, MaxRequests: 20, DataOnAck: true})
	if err != nil {
		t.Fatal(err)
	}
	checkAgainstServer(t, s, rs)
	for _, r := range rs {
		if r.Latency > 150*time.Millisecond {
			t.Errorf("request %d took %v: the handshake ACK waited for the delayed-ACK timer", r.Seq, r.Latency)
		}
	}
}
