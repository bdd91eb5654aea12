package labrun

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/leakwatch"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
)

func TestParseExposition(t *testing.T) {
	text := `# HELP x_total A counter.
# TYPE x_total counter
x_total 3
y{a="1",b="with \"quote\" and , comma"} 2.5 1700000000000
z{} 1e3
`
	got, err := parseExposition(text)
	if err != nil {
		t.Fatal(err)
	}
	want := []sample{
		{"x_total", nil, 3},
		{"y", map[string]string{"a": "1", "b": `with "quote" and , comma`}, 2.5},
		{"z", map[string]string{}, 1000},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	for _, bad := range []string{"novalue", `x{a="1"`, `x{a=1} 2`, "x notanumber", "{} 1"} {
		if _, err := parseExposition(bad + "\n"); err == nil {
			t.Errorf("%q: want an error", bad)
		}
	}
}

func TestSessionsFromMetrics(t *testing.T) {
	text := `tcpcopy_sessions_opened_total 10
tcpcopy_sessions_active 2
tcpcopy_ring_drops_total 0
tcpcopy_sessions_closed_total{outcome="reproduced",reason="none"} 5
tcpcopy_sessions_closed_total{outcome="reproduced",reason="idle"} 1
tcpcopy_sessions_closed_total{outcome="failed",reason="no_synack"} 1
tcpcopy_sessions_closed_total{outcome="failed",reason="target_rst"} 1
tcpcopy_packets_dropped_total{reason="invalid"} 0
tcpcopy_fidelity_ratio 0.75
tcpcopy_captured_bytes_total 1000
tcpcopy_acked_bytes_total 900
tcpcopy_reconnects_total 4
tcpcopy_uncopied_bytes_total{reason="target_rst"} 100
tcpcopy_uncopied_requests_total{reason="target_rst"} 2
tcpcopy_uncopied_bytes_total{reason="shed"} 100
tcpcopy_uncopied_requests_total{reason="shed"} 1
tcpcopy_uncopied_bytes_total{reason="no_synack"} 1000
tcpcopy_uncopied_requests_total{reason="no_synack"} 3
intercept_other 1
`
	s, values, err := sessionsFromMetrics(text)
	if err != nil {
		t.Fatal(err)
	}
	want := &Sessions{Source: "metrics", Opened: 10, Open: 2, Reproduced: 6, Failed: 2, Ends: []SessionEnd{
		{"reproduced", "none", 5}, {"reproduced", "idle", 1}, {"failed", "no_synack", 1}, {"failed", "target_rst", 1},
	}, Copy: CopyStats{Known: true, Fidelity: 0.75, CapturedBytes: 1000, AckedBytes: 900, UncopiedBytes: 1200, UncopiedRequests: 6,
		Reconnects: 4, Uncopied: []Uncopied{{"no_synack", 1000, 3}, {"shed", 100, 1}, {"target_rst", 100, 2}}}}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("got %+v\nwant %+v", s, want)
	}
	if len(values) != 7 || values["tcpcopy_sessions_active"] != 2 || values["tcpcopy_fidelity_ratio"] != 0.75 {
		t.Errorf("values %v: want the 7 unlabelled tcpcopy_ metrics", values)
	}
	if _, _, err := sessionsFromMetrics("intercept_captured_total 1\n"); err == nil {
		t.Error("metrics without tcpcopy's sessions: want an error")
	}
}

func TestSessionsFromLog(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "tcpcopy.stderr")
	log := `time=2026-01-01T00:00:00.000Z level=INFO msg="tcpcopy started" mappings="[80-198.51.100.2:8080]"
time=2026-01-01T00:00:01.000Z level=INFO msg="tcpcopy stopped" sessions=1 reproduced=1 partial=0 failed=0
time=2026-01-01T00:00:02.000Z level=INFO msg="tcpcopy stopped" sessions=12 requests=30 reproduced=7 partial=2 failed=3 fidelity=0.9000 captured_bytes=900 acked_bytes=900 uncopied_bytes=100 uncopied_requests=2 partial_target_rst=2 failed_no_synack=2 note="a=b c"
`
	if err := os.WriteFile(path, []byte(log), 0o644); err != nil {
		t.Fatal(err)
	}
	s, err := sessionsFromLog(path)
	if err != nil {
		t.Fatal(err)
	}
	want := &Sessions{Source: "log", Opened: 12, Reproduced: 7, Partial: 2, Failed: 3, Ends: []SessionEnd{
		{"reproduced", "", 7}, {"partial", "target_rst", 2}, {"failed", "no_synack", 2}, {"failed", "unknown", 1},
	}, Copy: CopyStats{Known: true, Fidelity: 0.9, CapturedBytes: 900, AckedBytes: 900, UncopiedBytes: 100, UncopiedRequests: 2}}
	if !reflect.DeepEqual(s, want) {
		t.Errorf("got %+v\nwant %+v", s, want)
	}
	os.WriteFile(path, []byte("level=INFO msg=started\n"), 0o644)
	if _, err := sessionsFromLog(path); err == nil {
		t.Error("log without summary: want an error")
	}
}

func TestParseTextRecord(t *testing.T) {
	got := parseTextRecord(`time=x level=INFO msg="a \"b\" c" k=v empty= last="z"`)
	want := map[string]string{"time": "x", "level": "INFO", "msg": `a "b" c`, "k": "v", "empty": "", "last": "z"}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestSumSessions(t *testing.T) {
	a := &Sessions{Source: "metrics", Opened: 3, Reproduced: 2, Failed: 1, Ends: []SessionEnd{{"reproduced", "none", 2}, {"failed", "shed", 1}},
		Copy: CopyStats{Known: true, Fidelity: 0.5, CapturedBytes: 100, AckedBytes: 50, Reconnects: 1}}
	b := &Sessions{Source: "log", Opened: 2, Open: 1, Reproduced: 1, Ends: []SessionEnd{{"reproduced", "none", 1}},
		Copy: CopyStats{Known: true, Fidelity: 1, CapturedBytes: 200, AckedBytes: 200}}
	got := sumSessions([]*Sessions{a, nil, b})
	want := &Sessions{Source: "mixed", Opened: 5, Open: 1, Reproduced: 3, Failed: 1, Ends: []SessionEnd{{"reproduced", "none", 3}, {"failed", "shed", 1}},
		Copy: CopyStats{Known: true, Fidelity: 250.0 / 300, CapturedBytes: 300, AckedBytes: 250, Reconnects: 1}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	// One instance: its own ratio, whatever its byte counts.
	if got := sumSessions([]*Sessions{{Copy: CopyStats{Known: true, Fidelity: 0.25}}}); got.Copy.Fidelity != 0.25 {
		t.Errorf("one instance: fidelity %v, want 0.25", got.Copy.Fidelity)
	}
	// An instance that reported none: unknown.
	if got := sumSessions([]*Sessions{a, {Opened: 1}}); got.Copy.Known {
		t.Errorf("one instance without a fidelity: %+v should not be known", got.Copy)
	}
	if sumSessions([]*Sessions{nil}) != nil {
		t.Error("no sessions: want nil")
	}
}

func TestLost(t *testing.T) {
	e := func(id, remote string, n int64) recorder.Entry {
		return recorder.Entry{ID: id, Method: "POST", BodyLen: n, BodySHA256: "h" + id, Remote: remote}
	}
	online := []recorder.Entry{e("1", "c:1", 5), e("2", "c:1", 5), e("3", "c:2", 5), e("4", "c:3", 5), e("4", "c:3", 5)}
	target := []recorder.Entry{e("1", "c:1", 5), e("4", "c:3", 5)}
	bad := e("3", "c:2", 4) // short body: lost too
	target = append(target, bad)
	results := []load.Result{{ID: "2", Local: "c:1"}, {ID: "3", Local: "c:2"}}
	got := lost(online, target, results, &Sessions{Failed: 1, Partial: 0, Open: 1})
	want := &Lost{Requests: 2, Connections: 2, NotReproduced: 2, Explained: true}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	got = lost(online, target, results, &Sessions{Failed: 1})
	if got.Explained {
		t.Errorf("2 connections lost requests, 1 session failed: %+v should not be explained", got)
	}
	if got := lost(online[:1], target, nil, nil); got != nil {
		t.Errorf("nothing lost: got %+v", got)
	}
}

func TestWriteText(t *testing.T) {
	r := &Report{
		ID: "tcg-000000", Dir: "/tmp/x", Elapsed: 3 * time.Second, URL: "http://192.0.2.1:80", Copying: true,
		Compare: recorder.Comparison{Online: 10, Target: 9, Matched: 9, Missing: 1, Fidelity: 90, MissingIDs: []string{"a-3"}},
		Sessions: &Sessions{Source: "metrics", Opened: 4, Reproduced: 3, Failed: 1, Ends: []SessionEnd{{"reproduced", "none", 3}, {"failed", "no_synack", 1}},
			Copy: CopyStats{Known: true, Fidelity: 0.9, Reconnects: 7, UncopiedBytes: 300, UncopiedRequests: 1, Uncopied: []Uncopied{{"no_synack", 300, 1}}}},
		Server: ServerReport{Name: "nginx-kr100", Software: "nginx 1.22.1 in front of the target recorder", Limits: "keepalive_requests 100",
			Proc: &ProcReport{CPUSeconds: 0.25}},
		Lost:      &Lost{Requests: 1, Connections: 1, NotReproduced: 1, Explained: true},
		Leaks:     &leakwatch.Result{Ready: true, Done: true},
		Tcpcopies: []*ProcReport{{CPUSeconds: 1}, {CPUSeconds: 2}},
		Intercept: &ProcReport{CPUSeconds: 0.5, Restarts: 1},
	}
	var b strings.Builder
	if err := r.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	if lines := strings.Split(b.String(), "\n"); len(lines) < 4 || lines[1] != "client     stack linux: the lab's Linux defaults" ||
		lines[2] != "server     nginx-kr100: nginx 1.22.1 in front of the target recorder; keepalive_requests 100" || lines[3] != "loss       none" {
		t.Errorf("report does not start with the client stack, the target server and the loss:\n%s", b.String())
	}
	for _, want := range []string{
		"fidelity   90.0%; tcpcopy reports 90.00% (request bytes acknowledged by the target / captured + uncopied)",
		"  reconnects 7: the target closed connections with requests pending, tcpcopy opened new ones",
		"uncopied   1 requests (300 bytes) no session carried, their session had ended: no_synack 1 requests 300 bytes",
		"nginx      cpu 0.25 s",
		"sessions   4 opened: 3 reproduced, 0 partial, 1 failed, 0 open at stop (tcpcopy metrics before stop)",
		"  failed   no_synack 1",
		"lost       1 requests on 1 client connections, 1 sessions not reproduced: each is on a session tcpcopy did not reproduce",
		"leaks      0 packets from the target reached the client namespace",
		"tcpcopy#2  cpu 2.00 s",
		"restarted 1 times",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, b.String())
		}
	}
}
