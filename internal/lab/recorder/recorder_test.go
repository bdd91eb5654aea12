package recorder

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func hash(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func newServer(t *testing.T, opts Options) (*httptest.Server, *Recorder, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "log.jsonl")
	f, err := OpenLog(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	rec := New(f, opts)
	srv := httptest.NewServer(rec)
	t.Cleanup(srv.Close)
	return srv, rec, path
}

func TestConcurrentRequests(t *testing.T) {
	srv, rec, path := newServer(t, Options{})
	type sent struct {
		method string
		body   []byte
		resp   int
	}
	rng := rand.New(rand.NewPCG(1, 2))
	want := map[string]sent{}
	sizes := []int{0, 1, 1000, 65536, 300000}
	for i := range 60 {
		s := sent{method: http.MethodGet, resp: -1}
		if i%2 == 1 {
			s.method = http.MethodPost
			s.body = make([]byte, sizes[i%len(sizes)])
			for j := range s.body {
				s.body[j] = byte(rng.Uint32())
			}
		}
		if i%3 == 0 {
			s.resp = i * 100
		}
		want[fmt.Sprintf("req-%03d", i)] = s
	}

	var wg sync.WaitGroup
	errs := make(chan error, len(want))
	for id, s := range want {
		wg.Go(func() {
			url := srv.URL + "/p/" + id
			if s.resp >= 0 {
				url += "?resp=" + strconv.Itoa(s.resp)
			}
			req, _ := http.NewRequest(s.method, url, bytes.NewReader(s.body))
			req.Header.Set(IDHeader, id)
			resp, err := srv.Client().Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			body, _ := io.ReadAll(resp.Body)
			wantLen := DefaultRespSize
			if s.resp >= 0 {
				wantLen = s.resp
			}
			switch {
			case resp.StatusCode != http.StatusOK:
				errs <- fmt.Errorf("%s: status %d", id, resp.StatusCode)
			case len(body) != wantLen:
				errs <- fmt.Errorf("%s: response %d bytes, want %d", id, len(body), wantLen)
			case resp.Header.Get(BodySHA256Header) != hash(s.body):
				errs <- fmt.Errorf("%s: response hash header %s, want %s", id, resp.Header.Get(BodySHA256Header), hash(s.body))
			case resp.Header.Get(IDHeader) != id:
				errs <- fmt.Errorf("%s: id echoed as %q", id, resp.Header.Get(IDHeader))
			case !bytes.HasPrefix(pattern, body[:min(len(body), len(pattern))]):
				errs <- fmt.Errorf("%s: response body is not the pattern", id)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}

	if got := rec.Count(); got != int64(len(want)) {
		t.Errorf("Count: got %d, want %d", got, len(want))
	}
	entries, err := ReadLog(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(want) {
		t.Fatalf("log has %d entries, want %d", len(entries), len(want))
	}
	for _, e := range entries {
		s, ok := want[e.ID]
		if !ok {
			t.Errorf("unexpected id %q", e.ID)
			continue
		}
		if e.Method != s.method || e.BodyLen != int64(len(s.body)) || e.BodySHA256 != hash(s.body) {
			t.Errorf("%s: got %s len %d hash %s, want %s len %d hash %s",
				e.ID, e.Method, e.BodyLen, e.BodySHA256, s.method, len(s.body), hash(s.body))
		}
		if !strings.HasPrefix(e.Path, "/p/"+e.ID) || e.Status != http.StatusOK || e.Err != "" {
			t.Errorf("%s: path %q status %d err %q", e.ID, e.Path, e.Status, e.Err)
		}
		if e.Time.IsZero() || e.Remote == "" || e.Local == "" {
			t.Errorf("%s: missing time, remote or local: %+v", e.ID, e)
		}
	}
}

func TestBodyLimitAndChunked(t *testing.T) {
	srv, _, path := newServer(t, Options{MaxBody: 1000})
	cases := []struct {
		name       string
		body       []byte
		chunked    bool
		wantStatus int
		wantLen    int64
		wantCL     int64
	}{
		{"at limit", bytes.Repeat([]byte("a"), 1000), false, 200, 1000, 1000},
		{"over limit", bytes.Repeat([]byte("b"), 5000), false, 413, 1001, 5000},
		{"chunked", bytes.Repeat([]byte("c"), 700), true, 200, 700, -1},
	}
	for _, c := range cases {
		var r io.Reader = bytes.NewReader(c.body)
		if c.chunked {
			r = io.MultiReader(r) // hides the length: sent chunked
		}
		req, _ := http.NewRequest(http.MethodPost, srv.URL+"/", r)
		req.Header.Set(IDHeader, c.name)
		resp, err := srv.Client().Do(req)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != c.wantStatus {
			t.Errorf("%s: status %d, want %d", c.name, resp.StatusCode, c.wantStatus)
		}
	}
	entries, err := ReadLog(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(cases) {
		t.Fatalf("got %d entries, want %d", len(entries), len(cases))
	}
	for i, c := range cases {
		e := entries[i]
		if e.ID != c.name || e.Status != c.wantStatus || e.BodyLen != c.wantLen || e.ContentLength != c.wantCL {
			t.Errorf("%s: got id %q status %d len %d content-length %d, want status %d len %d content-length %d",
				c.name, e.ID, e.Status, e.BodyLen, e.ContentLength, c.wantStatus, c.wantLen, c.wantCL)
		}
		if (c.wantStatus == 413) != (e.Err != "") {
			t.Errorf("%s: err %q", c.name, e.Err)
		}
	}
}

func TestDecodeLog(t *testing.T) {
	good := `{"id":"a","method":"GET","body_len":0}` + "\n" + `{"id":"b","method":"POST","body_len":3}` + "\n"
	cases := []struct {
		name    string
		in      string
		wantN   int
		wantErr bool
	}{
		{"empty", "", 0, false},
		{"good", good, 2, false},
		{"blank lines", "\n" + good + "\n", 2, false},
		{"torn last line", good + `{"id":"c","meth`, 2, false},
		{"bad middle line", `{"id":` + "\n" + good, 0, true},
	}
	for _, c := range cases {
		got, err := DecodeLog(strings.NewReader(c.in))
		if (err != nil) != c.wantErr || len(got) != c.wantN {
			t.Errorf("%s: got %d entries, err %v; want %d, error %v", c.name, len(got), err, c.wantN, c.wantErr)
		}
	}
	if _, err := ReadLog(filepath.Join(t.TempDir(), "missing")); err == nil {
		t.Error("ReadLog of a missing file: want an error")
	}
}

func TestCompare(t *testing.T) {
	e := func(id, method string, n int64, h string) Entry {
		return Entry{ID: id, Method: method, BodyLen: n, BodySHA256: h}
	}
	online := []Entry{
		e("1", "GET", 0, "x"),
		e("2", "POST", 10, "h2"),
		e("3", "POST", 10, "h3"),
		e("4", "GET", 0, "x"),
		e("4", "GET", 0, "x"), // retried by the client: counts once
		e("", "GET", 0, "x"),  // no id: cannot match
	}
	target := []Entry{
		e("1", "GET", 0, "x"),
		e("1", "GET", 0, "x"),   // duplicate copy
		e("2", "POST", 9, "h2"), // short body
		e("4", "GET", 0, "x"),
		e("9", "GET", 0, "x"), // never sent to online
		e("", "GET", 0, "x"),
	}
	got := Compare(online, target)
	want := Comparison{
		Online: 5, Target: 6, Matched: 2, Mismatched: 1, Missing: 2, Duplicates: 1, Unexpected: 2,
		Fidelity: 40, MissingIDs: []string{"3"}, MismatchedIDs: []string{"2"},
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	if c := Compare(nil, nil); c.Fidelity != 0 || c.Online != 0 {
		t.Errorf("empty: got %+v", c)
	}
}

func TestServe(t *testing.T) {
	var buf bytes.Buffer
	var mu sync.Mutex
	rec := New(writerFunc(func(b []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(b)
	}), Options{})
	ctx, cancel := context.WithCancel(context.Background())
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- ServeListeners(ctx, []net.Listener{ln}, rec, slog.New(slog.DiscardHandler)) }()
	resp, err := http.Get("http://" + ln.Addr().String() + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve: %v", err)
	}
	if rec.Count() != 1 {
		t.Errorf("recorded %d, want 1", rec.Count())
	}
	if err := Serve(context.Background(), []string{"256.0.0.1:1"}, rec, slog.New(slog.DiscardHandler)); err == nil {
		t.Error("Serve on a bad address: want an error")
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(b []byte) (int, error) { return f(b) }

func TestCompareLatency(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	var online, target []Entry
	for i := range 100 {
		id := fmt.Sprintf("r-%d", i)
		online = append(online, Entry{ID: id, Method: "GET", Time: t0})
		target = append(target, Entry{ID: id, Method: "GET", Time: t0.Add(time.Duration(i+1) * time.Millisecond)})
	}
	c := Compare(online, target)
	if c.LatencyP50 != 51*time.Millisecond || c.LatencyP99 != 100*time.Millisecond || c.LatencyMax != 100*time.Millisecond {
		t.Errorf("latency p50 %v p99 %v max %v", c.LatencyP50, c.LatencyP99, c.LatencyMax)
	}
}

// TestForwardedForAndHead checks what the recorder keeps of a request's
// head: X-Forwarded-For as received, the protocol, and a digest that is
// the same for the same bytes on two connections and differs when a
// header does.
func TestForwardedForAndHead(t *testing.T) {
	srv, _, path := newServer(t, Options{})
	send := func(id, xff string) {
		t.Helper()
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "POST /lab/%s HTTP/1.1\r\nHost: app\r\n%s: same\r\nX-Forwarded-For: %s\r\nContent-Length: 3\r\nConnection: close\r\n\r\nabc", id, IDHeader, xff)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	send("a", "192.0.2.10")
	send("a", "192.0.2.10")
	send("a", "192.0.2.10, 198.51.100.7")
	es, err := ReadLog(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 3 {
		t.Fatalf("%d entries, want 3", len(es))
	}
	for i, want := range []string{"192.0.2.10", "192.0.2.10", "192.0.2.10, 198.51.100.7"} {
		if es[i].ForwardedFor != want || es[i].Proto != "HTTP/1.1" {
			t.Errorf("entry %d: forwarded for %q, proto %q; want %q, HTTP/1.1", i, es[i].ForwardedFor, es[i].Proto, want)
		}
	}
	if es[0].HeadSHA256 == "" || es[0].HeadSHA256 != es[1].HeadSHA256 {
		t.Errorf("the same head on two connections: digests %q and %q", es[0].HeadSHA256, es[1].HeadSHA256)
	}
	if es[2].HeadSHA256 == es[0].HeadSHA256 {
		t.Errorf("another X-Forwarded-For, the same digest %q", es[2].HeadSHA256)
	}
}
