package compare

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/tcpcopy-go/tcpcopy/pkg/streamhash"
)

// exchange is one request and both answers, as the test feeds them.
type exchange struct {
	req            string
	online, target string // "" means no answer
	// onSeg and tgSeg cut the answers into segments of these sizes (0:
	// one segment).
	onSeg, tgSeg int
	// lose drops the target's n-th segment (1-based), as a lost record.
	lose int
	// noHash sends the target's segments without hashes.
	noHash bool
}

// conn drives one Conn like tcpcopy does: the client's requests, then the
// online answer, then the target's, each acknowledging the request.
type conn struct {
	t       *testing.T
	c       *Conn
	seq     uint32 // client
	onSeq   uint32
	tgSeq   uint32
	onAck   uint32 // the client's ack: online bytes seen
	now     int64
	results []Result
}

func newConn(t *testing.T, cfg *Config, syn bool) *conn {
	cv := &conn{t: t, seq: 1001, onSeq: 5001, tgSeq: 9001, onAck: 5001, now: 1e9}
	e := NewEngine(cfg, func(r *Result) {
		c := *r
		c.Request = bytes.Clone(r.Request)
		c.Header = bytes.Clone(r.Header)
		c.Online.Bytes = bytes.Clone(r.Online.Bytes)
		c.Target.Bytes = bytes.Clone(r.Target.Bytes)
		cv.results = append(cv.results, c)
	})
	cv.c = e.NewConn()
	if syn {
		cv.c.Client(cv.now, true, 1000, 0, nil)
	}
	return cv
}

// segments cuts b into pieces of n bytes (all of it for n <= 0).
func segments(b []byte, n int) [][]byte {
	if n <= 0 || n >= len(b) {
		return [][]byte{b}
	}
	var out [][]byte
	for len(b) > 0 {
		k := min(n, len(b))
		out = append(out, b[:k])
		b = b[k:]
	}
	return out
}

// greet feeds a greeting sent before any request.
func (cv *conn) greet(online, target string) {
	for _, p := range segments([]byte(online), 0) {
		cv.c.Online(cv.now, cv.onSeq, cv.seq, p, len(p), false)
		cv.onSeq += uint32(len(p))
	}
	cv.onAck = cv.onSeq
	if target != "" {
		cv.target([]byte(target), 0, cv.seq, 0, false)
	}
}

func (cv *conn) run(x exchange) {
	cv.now += 1e6
	cv.c.Client(cv.now, false, cv.seq, cv.onAck, []byte(x.req))
	cv.c.Requested(cv.now+5e5, cv.onAck)
	cv.seq += uint32(len(x.req))
	cv.now += 1e6
	for _, p := range segments([]byte(x.online), x.onSeg) {
		cv.c.Online(cv.now, cv.onSeq, cv.seq, p, len(p), false)
		cv.onSeq += uint32(len(p))
	}
	cv.onAck = cv.onSeq
	if x.target != "" {
		cv.target([]byte(x.target), x.tgSeg, cv.seq, x.lose, x.noHash)
	}
}

// target feeds b as records the way intercept sends them: every segment
// hashed, the first Config.Bytes bytes of the answer as prefixes.
func (cv *conn) target(b []byte, seg int, ack uint32, lose int, noHash bool) {
	start := cv.tgSeq
	window := cv.c.e.cfg.Bytes
	for i, p := range segments(b, seg) {
		seq := cv.tgSeq
		cv.tgSeq += uint32(len(p))
		if i+1 == lose {
			continue
		}
		var prefix []byte
		if off := int(seq - start); off < window {
			prefix = p[:min(len(p), window-off)]
		}
		cv.c.Target(cv.now+2e5, seq, ack, len(p), prefix, streamhash.Sum(p), !noHash, false)
	}
}

func (cv *conn) finish() []Result {
	cv.c.Finish(cv.now)
	return cv.results
}

func httpResp(status string, headers []string, body string) string {
	var b strings.Builder
	b.WriteString("HTTP/1.1 " + status + "\r\n")
	for _, h := range headers {
		b.WriteString(h + "\r\n")
	}
	fmt.Fprintf(&b, "Content-Length: %d\r\n\r\n%s", len(body), body)
	return b.String()
}

var (
	dateA = "Date: Fri, 04 Dec 2026 19:00:00 GMT"
	dateB = "Date: Fri, 04 Dec 2026 19:00:01 GMT"
	big   = strings.Repeat("0123456789abcdef", 65536) // 1 MiB
)

func changed(s string, at int) string {
	b := []byte(s)
	b[at] ^= 0x20
	return string(b)
}

func TestVerdicts(t *testing.T) {
	get := "GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
	ok := httpResp("200 OK", []string{dateA, "Content-Type: text/plain"}, "hello world")
	okLater := httpResp("200 OK", []string{dateB, "Content-Type: text/plain"}, "hello world")
	tests := []struct {
		name string
		x    exchange
		want Result // Verdict, Kind, Reason, Header, Offset, statuses
	}{
		{"same, volatile Date aside", exchange{req: get, online: ok, target: okLater},
			Result{Verdict: Same, HTTP: true, Offset: -1, Online: Side{Status: 200}, Target: Side{Status: 200}}},
		{"same, cut differently", exchange{req: get, online: ok, target: okLater, onSeg: 7, tgSeg: 13},
			Result{Verdict: Same, HTTP: true, Offset: -1, Online: Side{Status: 200}, Target: Side{Status: 200}}},
		{"status", exchange{req: get, online: ok, target: httpResp("500 Internal Server Error", []string{dateB, "Content-Type: text/plain"}, "hello world")},
			Result{Verdict: Differs, Kind: KindStatus, HTTP: true, Offset: -1, Online: Side{Status: 200}, Target: Side{Status: 500}}},
		{"header value", exchange{req: get, online: ok, target: httpResp("200 OK", []string{dateB, "Content-Type: text/html"}, "hello world")},
			Result{Verdict: Differs, Kind: KindHeader, Header: []byte("Content-Type"), HTTP: true, Offset: -1, Online: Side{Status: 200}, Target: Side{Status: 200}}},
		{"header only on the target", exchange{req: get, online: ok, target: httpResp("200 OK", []string{dateB, "Content-Type: text/plain", "X-New: 1"}, "hello world")},
			Result{Verdict: Differs, Kind: KindHeader, Header: []byte("X-New"), HTTP: true, Offset: -1, Online: Side{Status: 200}, Target: Side{Status: 200}}},
		{"header order does not matter", exchange{req: get, online: httpResp("200 OK", []string{"A: 1", "B: 2"}, "x"), target: httpResp("200 OK", []string{"b: 2", "A: 1"}, "x")},
			Result{Verdict: Same, HTTP: true, Offset: -1, Online: Side{Status: 200}, Target: Side{Status: 200}}},
		{"body byte", exchange{req: get, online: ok, target: changed(okLater, len(okLater)-3)},
			Result{Verdict: Differs, Kind: KindBody, HTTP: true, Offset: len(ok) - 3, Online: Side{Status: 200}, Target: Side{Status: 200}}},
		{"body length", exchange{req: get, online: ok, target: httpResp("200 OK", []string{dateB, "Content-Type: text/plain"}, "hello world!")},
			Result{Verdict: Differs, Kind: KindLength, HTTP: true, Offset: -1, Online: Side{Status: 200}, Target: Side{Status: 200}}},
		{"1 MiB same", exchange{req: get, online: httpResp("200 OK", []string{dateA}, big), target: httpResp("200 OK", []string{dateB}, big), onSeg: 65483, tgSeg: 1448},
			Result{Verdict: Same, HTTP: true, Offset: -1, Online: Side{Status: 200}, Target: Side{Status: 200}}},
		{"1 MiB, a byte deep inside", exchange{req: get, online: httpResp("200 OK", []string{dateA}, big), target: httpResp("200 OK", []string{dateB}, changed(big, 700000)), onSeg: 1448, tgSeg: 1448},
			Result{Verdict: Differs, Kind: KindBody, HTTP: true, Offset: -1, Online: Side{Status: 200}, Target: Side{Status: 200}}},
		{"missing", exchange{req: get, online: ok},
			Result{Verdict: Missing, Offset: -1}},
		{"online not captured", exchange{req: get, target: ok},
			Result{Verdict: NotCompared, Reason: ReasonNoOnline, Offset: -1}},
		{"a record lost", exchange{req: get, online: ok, target: okLater, tgSeg: 10, lose: 2},
			Result{Verdict: NotCompared, Reason: ReasonTargetIncomplete, Offset: -1}},
		{"no hash", exchange{req: get, online: ok, target: okLater, noHash: true},
			Result{Verdict: NotCompared, Reason: ReasonTargetIncomplete, Offset: -1}},
		{"not HTTP, same", exchange{req: "\x01\x02ping", online: "\x00\x05pong!", target: "\x00\x05pong!"},
			Result{Verdict: Same, Offset: -1}},
		{"not HTTP, differs", exchange{req: "\x01\x02ping", online: "\x00\x05pong!", target: "\x00\x05pang!"},
			Result{Verdict: Differs, Kind: KindBody, Offset: 3}},
		{"chunked same", exchange{req: get, online: "HTTP/1.1 200 OK\r\n" + dateA + "\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			target: "HTTP/1.1 200 OK\r\n" + dateB + "\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", tgSeg: 9},
			Result{Verdict: Same, HTTP: true, Offset: -1, Online: Side{Status: 200}, Target: Side{Status: 200}}},
		{"304 without body", exchange{req: get, online: "HTTP/1.1 304 Not Modified\r\n" + dateA + "\r\n\r\n", target: "HTTP/1.1 304 Not Modified\r\n" + dateB + "\r\n\r\n"},
			Result{Verdict: Same, HTTP: true, Offset: -1, Online: Side{Status: 304}, Target: Side{Status: 304}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &Config{}
			cfg.Init()
			cv := newConn(t, cfg, true)
			cv.run(tt.x)
			rs := cv.finish()
			if len(rs) != 1 {
				t.Fatalf("%d results, want 1: %+v", len(rs), rs)
			}
			r, w := rs[0], tt.want
			if r.Verdict != w.Verdict || r.Kind != w.Kind || r.Reason != w.Reason || !bytes.Equal(r.Header, w.Header) ||
				r.Offset != w.Offset || r.HTTP != w.HTTP || r.Online.Status != w.Online.Status || r.Target.Status != w.Target.Status {
				t.Errorf("got %v/%v/%v header %q offset %d http %v status %d→%d\nwant %v/%v/%v header %q offset %d http %v status %d→%d",
					r.Verdict, r.Kind, r.Reason, r.Header, r.Offset, r.HTTP, r.Online.Status, r.Target.Status,
					w.Verdict, w.Kind, w.Reason, w.Header, w.Offset, w.HTTP, w.Online.Status, w.Target.Status)
			}
			if string(r.Request) != "GET /x HTTP/1.1" && tt.x.req == get {
				t.Errorf("request line %q", r.Request)
			}
			if r.Verdict != Same && r.Verdict != NotCompared && len(r.Online.Bytes) == 0 {
				t.Errorf("no detail bytes for a %v", r.Verdict)
			}
			if tt.x.online != "" && r.Online.Time != 1e6 || tt.x.target != "" && r.Verdict != NotCompared && r.Target.Time != 7e5 {
				t.Errorf("times %d, %d", r.Online.Time, r.Target.Time)
			}
		})
	}
}

// TestKeepAlive pairs the n-th answer with the n-th over one connection,
// including an Expect: 100-continue request, whose body is a request of
// its own (the client sent it after the interim answer).
func TestKeepAlive(t *testing.T) {
	cfg := &Config{}
	cfg.Init()
	cv := newConn(t, cfg, true)
	cont := "HTTP/1.1 100 Continue\r\n\r\n"
	cv.run(exchange{req: "POST /a HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n", online: cont, target: cont})
	cv.run(exchange{req: "abc", online: httpResp("201 Created", []string{dateA}, "made"), target: httpResp("201 Created", []string{dateB}, "made"), tgSeg: 3})
	for i := range 5 {
		body := fmt.Sprintf("item %d", i)
		tg := body
		if i == 3 {
			tg = "item X"
		}
		cv.run(exchange{req: fmt.Sprintf("GET /%d HTTP/1.1\r\n\r\n", i), online: httpResp("200 OK", nil, body), target: httpResp("200 OK", nil, tg), onSeg: 5, tgSeg: 11})
	}
	rs := cv.finish()
	var got []string
	for _, r := range rs {
		got = append(got, fmt.Sprintf("%d:%v%s", r.Index, r.Verdict, map[bool]string{true: "/" + r.Kind.String()}[r.Kind != KindNone]))
	}
	want := "0:same 1:same 2:same 3:same 4:same 5:differs/body 6:same"
	if strings.Join(got, " ") != want {
		t.Errorf("got  %s\nwant %s", strings.Join(got, " "), want)
	}
	st := cv.c.e.Stats()
	if st.Verdicts[Same] != 6 || st.Verdicts[Differs] != 1 || st.Statuses[200200] != 5 || st.Statuses[100100] != 1 || st.Statuses[201201] != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestGreeting: with the connection's start captured, what the server
// sends before any request is compared too; without it, answers to
// requests from before the copy started are not.
func TestGreeting(t *testing.T) {
	cfg := &Config{}
	cfg.Init()
	cv := newConn(t, cfg, true)
	cv.greet("220 mail.example ESMTP\r\n", "220 test.example ESMTP\r\n")
	cv.run(exchange{req: "QUIT\r\n", online: "221 bye\r\n", target: "221 bye\r\n"})
	rs := cv.finish()
	if len(rs) != 2 || rs[0].Index != -1 || rs[0].Verdict != Differs || rs[1].Verdict != Same {
		t.Errorf("results %+v", rs)
	}

	cv = newConn(t, cfg, false)
	// The online server still answers a request from before the copy.
	cv.c.Online(cv.now, cv.onSeq, cv.seq, []byte("HTTP/1.1 200 OK\r\n\r\n"), 19, false)
	cv.onSeq += 19
	cv.onAck = cv.onSeq
	cv.run(exchange{req: "GET / HTTP/1.1\r\n\r\n", online: httpResp("200 OK", nil, "a"), target: httpResp("200 OK", nil, "a")})
	if rs := cv.finish(); len(rs) != 1 || rs[0].Verdict != Same || rs[0].Index != 0 {
		t.Errorf("without the SYN: %+v", rs)
	}
}

func TestMasksAndIgnoredHeaders(t *testing.T) {
	get := "GET / HTTP/1.1\r\n\r\n"
	cfg := &Config{IgnoreHeaders: []string{"X-Build"}, Masks: []*regexp.Regexp{regexp.MustCompile(`"ts":\d+`)}}
	cfg.Init()
	cv := newConn(t, cfg, true)
	cv.run(exchange{req: get, online: httpResp("200 OK", []string{"X-Build: 1", dateA}, `{"ts":1700000000,"v":1}`),
		target: httpResp("200 OK", []string{"X-Build: 2", dateB}, `{"ts":1700000123,"v":1}`)})
	// Date is compared now: not in the list.
	cv.run(exchange{req: get, online: httpResp("200 OK", nil, `{"ts":1,"v":1}`), target: httpResp("200 OK", nil, `{"ts":2,"v":2}`)})
	// A body beyond Bytes: masks cannot apply.
	long := strings.Repeat("x", 3000)
	cv.run(exchange{req: get, online: httpResp("200 OK", nil, `{"ts":1}`+long), target: httpResp("200 OK", nil, `{"ts":2}`+long)})
	rs := cv.finish()
	if len(rs) != 3 || rs[0].Verdict != Differs || rs[0].Kind != KindHeader || string(rs[0].Header) != "Date" {
		t.Fatalf("first %+v", rs[0])
	}
	if rs[1].Verdict != Differs || rs[1].Kind != KindBody || rs[2].Verdict != Differs || !rs[2].Unmasked {
		t.Errorf("results %+v %+v", rs[1], rs[2])
	}

	cfg = &Config{Masks: []*regexp.Regexp{regexp.MustCompile(`"ts":\d+`)}}
	cfg.Init()
	cv = newConn(t, cfg, true)
	cv.run(exchange{req: get, online: httpResp("200 OK", []string{dateA}, `{"ts":17,"v":1}`), target: httpResp("200 OK", []string{dateB}, `{"ts":1800,"v":1}`)})
	// The masked field has another length on each side (and so has
	// Content-Length): the masked bodies are equal, so are the answers.
	if rs := cv.finish(); len(rs) != 1 || rs[0].Verdict != Same {
		t.Errorf("masked timestamp of another length: %+v", rs)
	}
}

// TestPendingBound: a target that never answers does not make a
// connection keep every online answer.
func TestPendingBound(t *testing.T) {
	cfg := &Config{MaxPending: 4}
	cfg.Init()
	cv := newConn(t, cfg, true)
	for i := range 10 {
		cv.run(exchange{req: fmt.Sprintf("GET /%d HTTP/1.1\r\n\r\n", i), online: httpResp("200 OK", nil, "x")})
		if n := len(cv.c.slots); n > 4 {
			t.Fatalf("%d slots kept", n)
		}
	}
	rs := cv.finish()
	st := cv.c.e.Stats()
	if len(rs) != 10 || st.NotCompared[ReasonTooMany] != 6 || st.Verdicts[Missing] != 4 {
		t.Errorf("%d results, stats %+v", len(rs), st)
	}
}

func TestNoAllocsPerSegment(t *testing.T) {
	cfg := &Config{}
	cfg.Init()
	e := NewEngine(cfg, nil)
	c := e.NewConn()
	c.Client(0, true, 1000, 0, nil)
	resp := []byte(httpResp("200 OK", []string{dateA}, strings.Repeat("y", 1000)))
	h := streamhash.Sum(resp)
	seq, on, tg := uint32(1001), uint32(5001), uint32(9001)
	req := []byte("GET / HTTP/1.1\r\n\r\n")
	cycle := func() {
		c.Client(1, false, seq, on, req)
		seq += uint32(len(req))
		c.Online(2, on, seq, resp, len(resp), false)
		on += uint32(len(resp))
		c.Target(3, tg, seq, len(resp), resp, h, true, false)
		tg += uint32(len(resp))
	}
	for range 10 {
		cycle()
	}
	if n := testing.AllocsPerRun(200, cycle); n != 0 {
		t.Errorf("%v allocations per request and answers", n)
	}
}

// TestPortReuse: a new SYN on the same Conn ends the old connection's
// pairs and starts afresh.
func TestPortReuse(t *testing.T) {
	cfg := &Config{}
	cfg.Init()
	cv := newConn(t, cfg, true)
	cv.run(exchange{req: "GET /1 HTTP/1.1\r\n\r\n", online: httpResp("200 OK", nil, "a")}) // the target has not answered yet
	cv.c.Client(cv.now, true, 77000, 0, nil)
	if len(cv.results) != 1 || cv.results[0].Verdict != Missing {
		t.Fatalf("the old connection: %+v", cv.results)
	}
	cv.seq, cv.onSeq, cv.tgSeq, cv.onAck = 77001, 1, 1, 1
	cv.run(exchange{req: "GET /2 HTTP/1.1\r\n\r\n", online: httpResp("200 OK", nil, "b"), target: httpResp("200 OK", nil, "b")})
	if rs := cv.finish(); len(rs) != 2 || rs[1].Verdict != Same || rs[1].Index != 0 {
		t.Errorf("the new connection: %+v", rs)
	}
}

// TestTick: the last answers of a connection that went quiet are decided
// without waiting for its end.
func TestTick(t *testing.T) {
	cfg := &Config{}
	cfg.Init()
	cv := newConn(t, cfg, true)
	cv.run(exchange{req: "GET /1 HTTP/1.1\r\n\r\n", online: httpResp("200 OK", nil, "a"), target: httpResp("200 OK", nil, "a")})
	t1 := cv.now + 2e5                                                                     // the target's last record
	cv.run(exchange{req: "GET /2 HTTP/1.1\r\n\r\n", online: httpResp("200 OK", nil, "b")}) // the target is slow
	cv.c.Tick(t1 + Quiet - 1)
	if len(cv.results) != 0 {
		t.Fatalf("decided too early: %+v", cv.results)
	}
	cv.c.Tick(t1 + Quiet)
	if len(cv.results) != 1 || cv.results[0].Verdict != Same {
		t.Fatalf("after the quiet time: %+v", cv.results)
	}
	cv.c.Tick(cv.now + MissingAfter - 1)
	if len(cv.results) != 1 {
		t.Fatalf("the slow answer was decided missing too early")
	}
	cv.c.Tick(cv.now + MissingAfter)
	if len(cv.results) != 2 || cv.results[1].Verdict != Missing {
		t.Fatalf("after MissingAfter: %+v", cv.results)
	}
}

// TestTargetPending: an answer whose head declares more bytes than came
// is pending (tcpcopy holds the next request); a complete one, one
// without a length, and a HEAD request's are not.
func TestTargetPending(t *testing.T) {
	cfg := &Config{}
	cfg.Init()
	long := httpResp("200 OK", nil, strings.Repeat("x", 3000))
	for _, c := range []struct {
		name   string
		req    string
		target string
		lose   int
		want   bool
	}{
		{"complete", "GET / HTTP/1.1\r\n\r\n", long, 0, false},
		{"tail to come", "GET / HTTP/1.1\r\n\r\n", long, 4, true},
		{"head request", "HEAD / HTTP/1.1\r\n\r\n", long, 4, false},
		{"chunked", "GET / HTTP/1.1\r\n\r\n", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + strings.Repeat("x", 2000), 3, false},
		{"not http", "PING\r\n", strings.Repeat("x", 3000), 3, false},
	} {
		cv := newConn(t, cfg, true)
		cv.run(exchange{req: c.req, online: long, target: c.target, tgSeg: 1000, lose: c.lose})
		if got := cv.c.TargetPending(); got != c.want {
			t.Errorf("%s: TargetPending = %v, want %v", c.name, got, c.want)
		}
	}
}

// TestMissingTail: an answer whose last segment was not seen, followed by
// the next answer, cannot be compared; it does not differ in length.
func TestMissingTail(t *testing.T) {
	cfg := &Config{}
	cfg.Init()
	a := httpResp("200 OK", nil, strings.Repeat("a", 2500))
	b := httpResp("200 OK", nil, "b")

	cv := newConn(t, cfg, true) // the target's last record lost
	cv.run(exchange{req: "GET /1 HTTP/1.1\r\n\r\n", online: a, target: a, tgSeg: 1000, lose: 3})
	cv.run(exchange{req: "GET /2 HTTP/1.1\r\n\r\n", online: b, target: b})
	rs := cv.finish()
	if len(rs) != 2 || rs[0].Verdict != NotCompared || rs[0].Reason != ReasonTargetIncomplete || rs[1].Verdict != Same {
		t.Errorf("target's tail lost: %+v", rs)
	}

	cv = newConn(t, cfg, true) // the capture lost the online answer's tail
	cv.now += 1e6
	req := "GET /1 HTTP/1.1\r\n\r\n"
	cv.c.Client(cv.now, false, cv.seq, cv.onAck, []byte(req))
	cv.seq += uint32(len(req))
	for i, p := range segments([]byte(a), 1000) {
		if i < 2 {
			cv.c.Online(cv.now, cv.onSeq, cv.seq, p, len(p), false)
		}
		cv.onSeq += uint32(len(p))
	}
	cv.onAck = cv.onSeq
	cv.target([]byte(a), 0, cv.seq, 0, false)
	cv.run(exchange{req: "GET /2 HTTP/1.1\r\n\r\n", online: b, target: b})
	rs = cv.finish()
	if len(rs) != 2 || rs[0].Verdict != NotCompared || rs[0].Reason != ReasonOnlineIncomplete || rs[1].Verdict != Same {
		t.Errorf("online tail lost: %+v", rs)
	}
}
