package tcpcopy

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	imetrics "github.com/tcpcopy-go/tcpcopy/internal/metrics"
	"github.com/tcpcopy-go/tcpcopy/pkg/compare"
	"github.com/tcpcopy-go/tcpcopy/pkg/tcpstate"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// fakeSnapshot is an engine snapshot with every number the page shows
// set: 1000 of 1200 captured bytes acknowledged (200 uncopied), 3
// sessions reproduced, 1 partial and 2 failed, two intercepts, and a
// comparison with 90 same, 42 differing, 5 missing, 3 not compared.
func fakeSnapshot() snapshot {
	var s snapshot
	s.st.Requests = 77
	s.st.Opened = 6
	s.st.Active = 2
	s.st.CapturedBytes = 1000
	s.st.AckedBytes = 900
	s.st.UncopiedBytes[tcpstate.ReasonTargetRST] = 200
	s.st.UncopiedRequests[tcpstate.ReasonTargetRST] = 4
	s.st.Closed[tcpstate.Reproduced][tcpstate.ReasonNone] = 3
	s.st.Closed[tcpstate.Partial][tcpstate.ReasonTargetRST] = 1
	s.st.Closed[tcpstate.Failed][tcpstate.ReasonNoSynAck] = 2
	s.st.Latency.Target.Counts[6] = 10 // (5 ms, 10 ms]
	s.st.Latency.Online.Counts[3] = 10 // (500 µs, 1 ms]
	s.links = LinkStats{Up: 2, Servers: []ServerLinkStats{
		{Addr: netip.MustParseAddrPort("198.51.100.130:36524"), Up: 2, Format: wire.Format{Version: wire.Version7, Compare: 2048}},
		{Addr: netip.MustParseAddrPort("203.0.113.3:36524"), Up: 0},
	}}
	s.cmp.On = true
	s.cmp.Stats.Verdicts = [compare.NumVerdicts]uint64{90, 42, 5, 3}
	s.cmp.Stats.Kinds[compare.KindStatus] = 40
	s.cmp.Stats.Kinds[compare.KindBody] = 2
	s.cmp.Stats.NotCompared[compare.ReasonOnlineIncomplete] = 3
	s.cmp.Stats.Statuses = map[int]uint64{200200: 90, 200500: 40, 404404: 1, 200404: 2}
	s.cmp.Written = 47
	return s
}

// fakeDiffs are two differences, newest first; the request line is one
// an attacker could send.
func fakeDiffs() []*Diff {
	return []*Diff{
		{Time: time.Unix(1700000001, 0).UTC(), Verdict: "differs", Kind: "status", Client: "192.0.2.10:40000",
			Target: "198.51.100.2:8080", Index: 2, Request: `GET /<script>alert(1)</script> HTTP/1.1`, Offset: 9,
			Online:  DiffSide{Status: 200, Length: 4203, Body: 4096, TimeMS: 1.5, Bytes: `HTTP/1.1 200 OK\r\n`},
			TargetR: DiffSide{Status: 500, Length: 61, Body: 20, TimeMS: 3.25, Bytes: `HTTP/1.1 500 Internal Server Error\r\n`}},
		{Time: time.Unix(1700000000, 0).UTC(), Verdict: "missing", Client: "192.0.2.10:40001",
			Target: "198.51.100.2:8080", Index: 0, Request: "POST /lab/x HTTP/1.1", Offset: -1,
			Online: DiffSide{Status: 200, Length: 100, Body: 10, Bytes: `HTTP/1.1 200 OK\r\n`}},
	}
}

func fakePage(s snapshot, comparing bool, diffs []*Diff) *page {
	info := pageInfo{start: time.Unix(1700000000, 0), mappings: []string{"192.0.2.1:80-198.51.100.2:8080"}, compareBytes: 2048}
	if !s.cmp.On {
		info.compareBytes = 0
	}
	return makePage(func() snapshot { return s }, func() bool { return comparing }, func() []*Diff { return diffs },
		info, slog.New(slog.DiscardHandler))
}

// servePage serves p beside /metrics, as Run does, and returns its base
// URL.
func servePage(t *testing.T, p *page) string {
	t.Helper()
	ln, err := imetrics.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- imetrics.Serve(ctx, ln, imetrics.NewRegistry(), slog.New(slog.DiscardHandler), p.mount())
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "http://" + ln.Addr().String()
}

func TestPageServes(t *testing.T) {
	base := servePage(t, fakePage(fakeSnapshot(), true, fakeDiffs()))
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	tests := []struct {
		name, method, path string
		status             int
		ctype              string // prefix of Content-Type
		body               string // in the body
		page               bool   // carries the page's security headers
	}{
		{"page", "GET", "/", 200, "text/html; charset=utf-8", `<script src="/page/page.js" defer></script>`, true},
		{"page HEAD", "HEAD", "/", 200, "text/html; charset=utf-8", "", true},
		{"script", "GET", "/page/page.js", 200, "text/javascript; charset=utf-8", "/api/status", true},
		{"style", "GET", "/page/page.css", 200, "text/css; charset=utf-8", ".diff", true},
		{"icon", "GET", "/page/favicon.svg", 200, "image/svg+xml", "<svg", true},
		{"status", "GET", "/api/status", 200, "application/json", `"fidelity":0.75`, true},
		{"status since", "GET", "/api/status?since=5", 200, "application/json", `"samples":[]`, true},
		{"status bad since", "GET", "/api/status?since=x", 400, "text/plain", "since", true},
		{"metrics", "GET", "/metrics", 200, "text/plain", "go_goroutines", false},
		{"unknown", "GET", "/nope", 404, "text/plain", "not found", true},
		{"unknown file", "GET", "/page/nope.js", 404, "text/plain", "not found", true},
		{"not a page file", "GET", "/page/page.go", 404, "text/plain", "not found", true},
		{"page dir", "GET", "/page/", 404, "text/plain", "not found", true},
		{"index by name", "GET", "/index.html", 404, "text/plain", "not found", true},
		{"api dir", "GET", "/api/", 404, "text/plain", "not found", true},
		{"post", "POST", "/", 405, "text/plain", "", true},
		{"post status", "POST", "/api/status", 405, "text/plain", "", true},
		{"delete", "DELETE", "/page/page.js", 405, "text/plain", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req, err := http.NewRequest(tt.method, base+tt.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tt.status, body)
			}
			if got := resp.Header.Get("Content-Type"); !strings.HasPrefix(got, tt.ctype) {
				t.Errorf("Content-Type %q, want %q", got, tt.ctype)
			}
			if !strings.Contains(string(body), tt.body) {
				t.Errorf("body does not contain %q:\n%.300s", tt.body, body)
			}
			if !tt.page {
				return
			}
			for h, want := range map[string]string{
				"Content-Security-Policy": pageCSP,
				"X-Content-Type-Options":  "nosniff",
				"X-Frame-Options":         "DENY",
			} {
				if got := resp.Header.Get(h); got != want {
					t.Errorf("%s = %q, want %q", h, got, want)
				}
			}
			if !strings.HasPrefix(pageCSP, "default-src 'self';") {
				t.Errorf("CSP %q does not start with default-src 'self'", pageCSP)
			}
		})
	}
}

// getStatus fetches and decodes /api/status of p.
func getStatus(t *testing.T, p *page, query string) map[string]any {
	t.Helper()
	resp, err := http.Get(servePage(t, p) + "/api/status" + query)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil {
		t.Fatal(err)
	}
	return m
}

// field returns the value at a dotted path of decoded JSON ("a.b.0.c"),
// or an error string naming what is missing.
func field(v any, path string) any {
	for _, k := range strings.Split(path, ".") {
		switch x := v.(type) {
		case map[string]any:
			var ok bool
			if v, ok = x[k]; !ok {
				return "<no field " + k + ">"
			}
		case []any:
			i, err := strconv.Atoi(k)
			if err != nil || i >= len(x) {
				return "<no element " + k + ">"
			}
			v = x[i]
		default:
			return "<not an object at " + k + ">"
		}
	}
	return v
}

func TestPageStatus(t *testing.T) {
	off := fakeSnapshot()
	off.cmp = compareSnapshot{}
	type want struct {
		path  string
		value any // decoded JSON: float64, string, bool, []any, map[string]any
	}
	tests := []struct {
		name      string
		s         snapshot
		comparing bool
		diffs     []*Diff
		want      []want
	}{
		{"comparing", fakeSnapshot(), true, fakeDiffs(), []want{
			{"started", float64(1700000000000)},
			{"mappings", []any{"192.0.2.1:80-198.51.100.2:8080"}},
			{"fidelity", 0.75}, // 900 / (1000 + 200)
			{"captured_bytes", float64(1000)},
			{"acked_bytes", float64(900)},
			{"uncopied_bytes", float64(200)},
			{"requests", float64(77)},
			{"uncopied_requests", float64(4)},
			{"sessions", map[string]any{"opened": float64(6), "active": float64(2), "reproduced": float64(3),
				"partial": float64(1), "failed": float64(2), "top_failures": []any{
					map[string]any{"name": "no_synack", "count": float64(2)},
					map[string]any{"name": "target_rst", "count": float64(1)}}}},
			{"links.up", float64(2)},
			{"links.intercepts.0", map[string]any{"addr": "198.51.100.130:36524", "up": float64(2), "version": float64(7), "compare": float64(2048)}},
			{"links.intercepts.1", map[string]any{"addr": "203.0.113.3:36524", "up": float64(0), "version": float64(0), "compare": float64(0)}},
			{"response_times.target.n", float64(10)},
			{"response_times.target.p50_ms", 7.5},
			{"response_times.online.p50_ms", 0.75},
			{"compare.state", "on"},
			{"compare.bytes", float64(2048)},
			{"compare.verdicts", map[string]any{"same": float64(90), "differs": float64(42), "missing": float64(5), "not_compared": float64(3)}},
			{"compare.kinds", map[string]any{"status": float64(40), "header": float64(0), "length": float64(0), "body": float64(2),
				"mysql_result": float64(0), "mysql_error": float64(0), "mysql_affected_rows": float64(0), "mysql_columns": float64(0),
				"mysql_rows": float64(0), "mysql_checksum": float64(0)}},
			{"compare.not_compared", []any{map[string]any{"name": "online_incomplete", "count": float64(3)}}},
			{"compare.status_changes", []any{ // same-status pairs left out
				map[string]any{"online": float64(200), "target": float64(500), "count": float64(40)},
				map[string]any{"online": float64(200), "target": float64(404), "count": float64(2)}}},
			{"compare.diff_log_written", float64(47)},
			{"compare.diff_log_dropped", float64(0)},
			{"samples", []any{}},
			{"differences.0.request", "GET /<script>alert(1)</script> HTTP/1.1"},
			{"differences.0.verdict", "differs"},
			{"differences.0.kind", "status"},
			{"differences.0.offset", float64(9)},
			{"differences.0.online.status", float64(200)},
			{"differences.0.online.time_ms", 1.5},
			{"differences.0.online.bytes", `HTTP/1.1 200 OK\r\n`},
			{"differences.0.target_response.status", float64(500)},
			{"differences.0.target_response.length", float64(61)},
			{"differences.1.verdict", "missing"},
			{"differences.1.time", "2023-11-14T22:13:20Z"},
		}},
		{"no link compares", fakeSnapshot(), false, fakeDiffs(), []want{
			{"compare.state", "no_link"},
			{"compare.verdicts.differs", float64(42)},
		}},
		{"comparison off", off, false, nil, []want{
			{"compare.state", "off"},
			{"compare.bytes", float64(0)},
			{"compare.verdicts", map[string]any{}},
			{"compare.kinds", map[string]any{}},
			{"compare.status_changes", []any{}},
			{"differences", []any{}},
			{"fidelity", 0.75},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := getStatus(t, fakePage(tt.s, tt.comparing, tt.diffs), "")
			for _, w := range tt.want {
				if got := field(m, w.path); !reflect.DeepEqual(got, w.value) {
					t.Errorf("%s = %#v, want %#v", w.path, got, w.value)
				}
			}
			for _, k := range []string{"version", "now"} {
				if _, ok := m[k]; !ok {
					t.Errorf("no field %q", k)
				}
			}
		})
	}
}

// TestPageSamples feeds the sampler a run of snapshots and checks the
// per-second deltas, ?since= and the bound of the ring.
func TestPageSamples(t *testing.T) {
	s := fakeSnapshot()
	s.st.Requests, s.st.Latency = 0, tcpstate.Latency{}
	s.cmp.Stats.Verdicts = [compare.NumVerdicts]uint64{}
	p := fakePage(s, true, nil)
	t0 := time.Unix(1700000000, 0)
	// Second i: i requests, target times in (5 ms, 10 ms], online times
	// in (500 µs, 1 ms], one difference every other second.
	for i := 1; i <= 3; i++ {
		s.st.Requests += uint64(i)
		s.st.Latency.Target.Counts[6] += uint64(i)
		s.st.Latency.Online.Counts[3] += uint64(i)
		s.cmp.Stats.Verdicts[compare.Same] += uint64(i)
		s.cmp.Stats.Verdicts[compare.Differs] += uint64(i % 2)
		p.record(t0.Add(time.Duration(i)*time.Second), &s)
	}
	p.record(t0.Add(4*time.Second), &s) // a quiet second
	got := p.samples(0)
	want := []pageSample{
		{T: 1700000001000, Requests: 1, Target: pageTimes{1, 7.5, 9.95}, Online: pageTimes{1, 0.75, 0.995}, Same: 1, Differs: 1},
		{T: 1700000002000, Requests: 2, Target: pageTimes{2, 7.5, 9.95}, Online: pageTimes{2, 0.75, 0.995}, Same: 2},
		{T: 1700000003000, Requests: 3, Target: pageTimes{3, 7.5, 9.95}, Online: pageTimes{3, 0.75, 0.995}, Same: 3, Differs: 1},
		{T: 1700000004000},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("samples\n got %+v\nwant %+v", got, want)
	}
	if got := p.samples(1700000002000); len(got) != 2 || got[0].T != 1700000003000 {
		t.Errorf("samples since the second one: %+v, want the third and fourth", got)
	}

	// The ring keeps the last pageSamples, and taking a sample
	// allocates nothing.
	for i := 5; i <= 1000; i++ {
		p.record(t0.Add(time.Duration(i)*time.Second), &s)
	}
	got = p.samples(0)
	if len(got) != pageSamples || got[0].T != t0.Add(401*time.Second).UnixMilli() || got[len(got)-1].T != t0.Add(1000*time.Second).UnixMilli() {
		t.Errorf("%d samples from %d to %d, want %d from 401 s to 1000 s", len(got), got[0].T, got[len(got)-1].T, pageSamples)
	}
	i := 1000
	if n := testing.AllocsPerRun(100, func() { i++; p.record(t0.Add(time.Duration(i)*time.Second), &s) }); n != 0 {
		t.Errorf("record allocates %v times, want 0", n)
	}
}

// TestPageStatusBounded checks that an answer stays small however long
// the run and however many status pairs changed.
func TestPageStatusBounded(t *testing.T) {
	s := fakeSnapshot()
	for o := 100; o < 600; o++ {
		s.cmp.Stats.Statuses[o*1000+599] = uint64(o)
	}
	var diffs []*Diff
	for range keepLatest {
		diffs = append(diffs, fakeDiffs()[0])
	}
	p := fakePage(s, true, diffs)
	for i := range 3 * pageSamples {
		p.record(time.Unix(int64(i), 0), &s)
	}
	st := p.status(&s, time.Now(), 0)
	if len(st.Samples) != pageSamples || len(st.Compare.StatusChanges) != pageTopPairs || len(st.Differences) != keepLatest {
		t.Errorf("%d samples, %d status pairs, %d differences; want %d, %d, %d",
			len(st.Samples), len(st.Compare.StatusChanges), len(st.Differences), pageSamples, pageTopPairs, keepLatest)
	}
	if c, want := st.Compare.StatusChanges[0], (pageStatusPair{Online: 598, Target: 599, Count: 598}); c != want {
		t.Errorf("first status pair %+v, want the most frequent change %+v", c, want)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) > 256<<10 {
		t.Errorf("status is %d bytes, want at most 256 KiB", len(b))
	}
}

// TestPageFromEngine reads a real engine's counters through newPage.
func TestPageFromEngine(t *testing.T) {
	pl := newPipeline(t)
	x := newExchange(pl)
	for range 20 {
		x.run(pl)
	}
	pl.e.disp.workers[0].publish()
	p := newPage(pl.e, slog.New(slog.DiscardHandler))
	p.tick(time.Now())
	m := getStatus(t, p, "")
	for path, want := range map[string]any{
		"requests":                float64(20),
		"sessions.opened":         float64(1),
		"fidelity":                float64(1),
		"mappings":                []any{"192.0.2.1:80-198.51.100.2:8080"},
		"links.intercepts.0.up":   float64(0),
		"compare.state":           "no_link", // on by default; no link is up
		"samples.0.requests":      float64(20),
		"samples.0.target.n":      float64(20),
		"response_times.online.n": float64(19),
	} {
		if got := field(m, path); !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %#v, want %#v", path, got, want)
		}
	}
}

// TestPageAssetsSafe checks the embedded files for what would break the
// page's promises: content from the traffic must never be parsed as HTML,
// and nothing may be loaded from elsewhere (the page works offline).
func TestPageAssetsSafe(t *testing.T) {
	files, err := pageFS.ReadDir("page")
	if err != nil {
		t.Fatal(err)
	}
	forbidden := []struct {
		name string
		re   *regexp.Regexp
	}{
		{"HTML from strings", regexp.MustCompile(`innerHTML|outerHTML|insertAdjacentHTML|document\.write|DOMParser|createContextualFragment`)},
		{"code from strings", regexp.MustCompile(`\beval\(|new Function|setTimeout\(['"]`)},
		{"another origin", regexp.MustCompile(`(src|href)=["']?(https?:)?//|url\(\s*['"]?(https?:)?//|@import|fetch\(\s*['"]https?:`)},
		{"inline script or style", regexp.MustCompile(`<script>|<style|\son[a-z]+=|style=`)},
	}
	for _, f := range files {
		if _, ok := pageTypes[f.Name()[strings.LastIndexByte(f.Name(), '.'):]]; !ok {
			t.Errorf("%s: no content type for this extension", f.Name())
		}
		b, err := pageFS.ReadFile("page/" + f.Name())
		if err != nil {
			t.Fatal(err)
		}
		for _, fb := range forbidden {
			if loc := fb.re.FindIndex(b); loc != nil {
				t.Errorf("%s: %s: %q", f.Name(), fb.name, b[loc[0]:loc[1]])
			}
		}
	}
}
