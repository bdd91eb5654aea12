package labrun

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
)

func TestResponsesFromMetrics(t *testing.T) {
	text := `tcpcopy_sessions_opened_total 10
# TYPE tcpcopy_responses_compared_total counter
tcpcopy_responses_compared_total{verdict="same"} 970
tcpcopy_responses_compared_total{verdict="differs"} 30
tcpcopy_responses_compared_total{verdict="missing"} 1
tcpcopy_responses_compared_total{verdict="not_compared"} 2
tcpcopy_response_differences_total{kind="status"} 20
tcpcopy_response_differences_total{kind="header"} 0
tcpcopy_response_differences_total{kind="length"} 0
tcpcopy_response_differences_total{kind="body"} 10
tcpcopy_responses_not_compared_total{reason="online_incomplete"} 2
tcpcopy_responses_not_compared_total{reason="too_many_pending"} 0
tcpcopy_response_status_pairs_total{online="200",target="200"} 980
tcpcopy_response_status_pairs_total{online="200",target="500"} 20
tcpcopy_diff_log_written_total 31
tcpcopy_diff_log_dropped_total 0
`
	got, err := responsesFromMetrics(text)
	if err != nil {
		t.Fatal(err)
	}
	want := &Responses{Source: "metrics", Same: 970, Differs: 30, Missing: 1, NotCompared: 2,
		Kinds:          map[string]uint64{"status": 20, "body": 10},
		NotComparedWhy: map[string]uint64{"online_incomplete": 2},
		StatusPairs:    []StatusPair{{200, 200, 980}, {200, 500, 20}},
		DiffLogWritten: 31}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if got.Total() != 1003 || !reflect.DeepEqual(got.Changed(), []StatusPair{{200, 500, 20}}) {
		t.Errorf("total %d, changed %v", got.Total(), got.Changed())
	}
	// The comparison off: no verdicts.
	if got, err := responsesFromMetrics("tcpcopy_sessions_opened_total 10\n"); got != nil || err != nil {
		t.Errorf("without verdicts: %+v, %v", got, err)
	}
}

func TestResponsesFromLog(t *testing.T) {
	for _, tt := range []struct {
		name string
		log  string
		want *Responses // nil: none
		err  string
	}{
		{
			name: "text",
			log: `time=2026-01-01T00:00:00Z level=INFO msg="tcpcopy started" compare_bytes=2048
time=2026-01-01T00:00:09Z level=INFO msg="tcpcopy stopped" sessions=9 reproduced=9 same=270 differs=30 missing=0 not_compared=3 differences="status=20 body=10" status_changes=200->500=20 not_compared_why="online_incomplete=2 too_many_pending=1"`,
			want: &Responses{Source: "log", Same: 270, Differs: 30, NotCompared: 3,
				Kinds: map[string]uint64{"status": 20, "body": 10}, NotComparedWhy: map[string]uint64{"online_incomplete": 2, "too_many_pending": 1},
				StatusPairs: []StatusPair{{200, 500, 20}}},
		},
		{
			name: "json, the last line",
			log: `{"time":"2026-01-01T00:00:00Z","level":"INFO","msg":"tcpcopy stopped","same":1,"differs":0,"missing":0,"not_compared":0,"differences":"none","status_changes":"none"}
{"time":"2026-01-01T00:00:01Z","level":"INFO","msg":"tcpcopy stopped","sessions":3,"same":1234567,"differs":2,"missing":1,"not_compared":0,"differences":"header=2","status_changes":"none"}
{"time":"2026-01-01T00:00:01Z","level":"INFO","msg":"offline replay finished","sessions":3}`,
			want: &Responses{Source: "log", Same: 1234567, Differs: 2, Missing: 1, Kinds: map[string]uint64{"header": 2}},
		},
		{
			name: "comparison off",
			log:  `time=2026-01-01T00:00:09Z level=INFO msg="tcpcopy stopped" sessions=9 reproduced=9`,
		},
		{
			name: "no summary",
			log:  `time=2026-01-01T00:00:00Z level=INFO msg="tcpcopy started"`,
			err:  `no "tcpcopy stopped" line`,
		},
		{
			name: "bad count",
			log:  `time=2026-01-01T00:00:09Z level=INFO msg="tcpcopy stopped" same=x differs=0 missing=0 not_compared=0`,
			err:  `same="x"`,
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "tcpcopy.stderr")
			if err := os.WriteFile(path, []byte(tt.log+"\n"), 0o644); err != nil {
				t.Fatal(err)
			}
			got, err := ResponsesFromLog(path)
			if tt.err != "" {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("got %+v, %v; want an error with %q", got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestSumResponses(t *testing.T) {
	a := &Responses{Source: "metrics", Same: 5, Differs: 1, Kinds: map[string]uint64{"body": 1}, StatusPairs: []StatusPair{{200, 200, 6}}}
	b := &Responses{Source: "log", Same: 2, Missing: 1, AtStop: 1, StatusPairs: []StatusPair{{200, 200, 2}, {200, 500, 1}}}
	got := sumResponses([]*Responses{a, nil, b})
	want := &Responses{Source: "mixed", Same: 7, Differs: 1, Missing: 1, AtStop: 1, Kinds: map[string]uint64{"body": 1},
		StatusPairs: []StatusPair{{200, 200, 8}, {200, 500, 1}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if sumResponses([]*Responses{nil}) != nil {
		t.Error("no verdicts: want nil")
	}
}

// toldFixture is a target told "status:500:3,body:4@1,slow:5:1ms" that
// answered requests x-0 .. x-9.
func toldFixture(t *testing.T) (recorder.Differ, []recorder.Entry, []recorder.Entry) {
	t.Helper()
	d, err := recorder.ParseDiffer("status:500:3,body:4@1,slow:5:1ms")
	if err != nil {
		t.Fatal(err)
	}
	var online, target []recorder.Entry
	for i := range 10 {
		id := "x-" + string(rune('0'+i))
		online = append(online, recorder.Entry{ID: id, Status: 200})
		a := d.For(i, 32)
		e := recorder.Entry{ID: id, Status: 200, Changed: a.Changed, Delay: a.Delay}
		if a.Status != 0 {
			e.Status = a.Status
		}
		target = append(target, e)
	}
	return d, online, target
}

func TestToldAndAsTold(t *testing.T) {
	d, online, target := toldFixture(t)
	told := ToldBy(d, online, target)
	// status: 2, 5, 8; body: 1, 5, 9 (5 is a 500 first); slow: 4, 9.
	if told.Answers != 5 || !reflect.DeepEqual(told.Kinds, map[string]int{"status": 3, "body": 2}) ||
		!reflect.DeepEqual(told.Changes, map[string]int{"status": 3, "body": 3}) || told.Slow != 2 ||
		!reflect.DeepEqual(told.StatusPairs, []StatusPair{{200, 500, 3}}) || told.Differ != d.String() || len(told.Rules) != 3 {
		t.Errorf("told %+v", told)
	}
	for id, k := range map[string]string{"x-2": "status", "x-5": "status", "x-1": "body", "x-4": "", "x-0": ""} {
		if got := told.KindOf(id); got != k {
			t.Errorf("KindOf(%s) = %q, want %q", id, got, k)
		}
	}
	for _, tt := range []struct {
		name string
		rs   Responses
		told *Told
		why  []string // nil: as told
	}{
		{name: "as told", rs: Responses{Same: 5, Differs: 5, Kinds: map[string]uint64{"status": 3, "body": 2}}, told: told},
		{name: "nothing told, all same", rs: Responses{Same: 10}},
		{name: "a kind short", rs: Responses{Same: 6, Differs: 4, Kinds: map[string]uint64{"status": 3, "body": 1}}, told: told,
			why: []string{"body differs in 1 responses, the target changed 2"}},
		{name: "another kind", rs: Responses{Same: 4, Differs: 6, Kinds: map[string]uint64{"status": 3, "body": 2, "length": 1}}, told: told,
			why: []string{"length differs in 1 responses, the target changed 0"}},
		{name: "missing and not compared", rs: Responses{Same: 8, Missing: 1, NotCompared: 1, NotComparedWhy: map[string]uint64{"target_incomplete": 1}},
			why: []string{"1 missing", "1 not compared (target_incomplete 1)"}},
		{name: "differs without kinds", rs: Responses{Same: 9, Differs: 1}, why: []string{"1 responses differ, the target changed 0"}},
	} {
		tt.rs.CheckAsTold(tt.told)
		if tt.rs.AsTold != (tt.why == nil) || !reflect.DeepEqual(tt.rs.NotAsTold, tt.why) {
			t.Errorf("%s: as told %v, %q; want %q", tt.name, tt.rs.AsTold, tt.rs.NotAsTold, tt.why)
		}
	}
}

func TestReadDiffLog(t *testing.T) {
	d, online, target := toldFixture(t)
	told := ToldBy(d, online, target)
	dir := t.TempDir()
	path := filepath.Join(dir, "diff.jsonl")
	line := func(verdict, kind, header, id string) string {
		return `{"verdict":"` + verdict + `","kind":"` + kind + `","header":"` + header + `","request":"GET /lab/` + id + `?resp=32 HTTP/1.1","offset":-1}` + "\n"
	}
	// Rotated: the oldest lines in diff.jsonl.1.
	if err := os.WriteFile(path+".1", []byte(line("differs", "status", "", "x-2")+line("differs", "status", "", "x-5")), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(line("differs", "status", "", "x-8")+line("differs", "body", "", "x-1")+
		line("differs", "header", "X-Lab-Id", "x-3")+line("missing", "", "", "x-6")+line("differs", "length", "", "x-9")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := ReadDiffLog(told, path)
	if err != nil {
		t.Fatal(err)
	}
	want := &DiffLog{Files: []string{path + ".1", path}, Lines: 7, Differs: 6, Missing: 1,
		Kinds: map[string]int{"status": 3, "body": 1, "header": 1, "length": 1}, Headers: map[string]int{"X-Lab-Id": 1},
		AsTold: 4, Unexpected: 3, NotLogged: 1,
		First: []string{"differs header id x-3 offset -1 (told: nothing)", "missing  id x-6 offset -1 (told: nothing)",
			"differs length id x-9 offset -1 (told: body)"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	if _, err := ReadDiffLog(told, filepath.Join(dir, "none.jsonl")); err == nil {
		t.Error("a missing diff log: want an error")
	}
	if err := os.WriteFile(path, []byte("{not json\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadDiffLog(nil, path); err == nil || !strings.Contains(err.Error(), "diff.jsonl: line 1:") {
		t.Errorf("a bad line: %v", err)
	}
}

func TestRequestID(t *testing.T) {
	for in, want := range map[string]string{
		"GET /lab/ab12-7?resp=32 HTTP/1.1": "ab12-7",
		"POST /lab/ab12-8 HTTP/1.1":        "ab12-8",
		"GET /other HTTP/1.1":              "",
		"":                                 "",
	} {
		if got := requestID(in); got != want {
			t.Errorf("requestID(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestWriteCompare(t *testing.T) {
	d, online, target := toldFixture(t)
	told := ToldBy(d, online, target)
	rs := &Responses{Source: "metrics", Same: 5, Differs: 5, Kinds: map[string]uint64{"status": 3, "body": 2},
		StatusPairs: []StatusPair{{200, 200, 7}, {200, 500, 3}}, AtStop: 1}
	rs.CheckAsTold(told)
	r := &Report{Copying: true, Responses: rs, Told: told,
		DiffLog: &DiffLog{Files: []string{"/x/diff.jsonl"}, Lines: 5, Differs: 5, Kinds: map[string]int{"status": 3, "body": 2}, AsTold: 5}}
	var b strings.Builder
	r.writeCompare(&b)
	want := `compare    10 responses: 5 same, 5 differ (status 3, body 2), 0 missing, 0 not compared (tcpcopy metrics before stop; 1 more judged at stop)
  status   200->500 3; unchanged 200 7
  told     target status:500:3,body:4@1,slow:5:1ms: status 500 for every 3rd request; one body byte changed for every 4th request from the 2nd on; 1ms late for every 5th request
  told     5 answers changed: status 3, body 2; 2 slow, 0 paused: verdicts as told
diff log   5 lines in /x/diff.jsonl: 5 differ (status 3, body 2), 0 missing; 5 as told, 0 unexpected, 0 changed answers not logged
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	// Nothing told, and a verdict that is not as expected.
	rs = &Responses{Source: "log", Same: 9, Differs: 1, Kinds: map[string]uint64{"header": 1}}
	rs.CheckAsTold(nil)
	r = &Report{Copying: true, Responses: rs}
	b.Reset()
	r.writeCompare(&b)
	want = `compare    10 responses: 9 same, 1 differ (header 1), 0 missing, 0 not compared (tcpcopy's final log line)
  check    the target answered like online, yet: header differs in 1 responses, the target changed 0
`
	if b.String() != want {
		t.Errorf("got\n%s\nwant\n%s", b.String(), want)
	}
	b.Reset()
	(&Report{Copying: true, Told: told}).writeCompare(&b)
	if !strings.HasPrefix(b.String(), "compare    unknown: no verdicts") {
		t.Errorf("told but no verdicts:\n%s", b.String())
	}
}

func TestFlagValue(t *testing.T) {
	args := []string{"-x", "80-a:8080", "--diff-log", "/d/diff.jsonl", "--metrics-addr=127.0.0.1:9"}
	for name, want := range map[string]string{"--diff-log": "/d/diff.jsonl", "--metrics-addr": "127.0.0.1:9", "-x": "80-a:8080", "--none": ""} {
		if got := flagValue(args, name); got != want {
			t.Errorf("flagValue(%s) = %q, want %q", name, got, want)
		}
	}
}
