package e2e

// The response comparison (pkg/compare, tcpcopy --compare-bytes, on by
// default) with the real binaries. The lab's target answers like the
// online server, or is told to answer differently for a known share of
// the requests (labrun.Config.TargetDiffer: another status, a changed
// header, one body byte more, one body byte changed, a late answer),
// deterministically by the requests' sequence numbers. tcpcopy's verdicts
// must be exactly what the target was told: every changed answer differs
// with the kind of its first change and is in the diff log, every other
// answer is the same, nothing is missing or left uncompared. Live, over
// keep-alive and short connections, with Content-Length and chunked
// bodies, small and of 1 MiB; and replayed offline from a tcpdump
// recording of the live run, against the responses in the recording.

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
	"github.com/tcpcopy-go/tcpcopy/internal/testbin"
)

func TestCompareResponses(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name   string
		differ string
		load   load.Options
		// offline: record the live run and replay the recording against a
		// target told the same.
		offline bool
		// chunked: how many answers must have come chunked: -1 none, 0
		// some, 1 all.
		chunked int
		respLen int64 // every answer's body length (online's)
	}{
		{
			name: "identical", chunked: 0, respLen: recorder.DefaultRespSize,
			load: load.Options{Rate: 60, Duration: 2500 * time.Millisecond, MaxRequests: 150, Mode: load.Mixed, RequestsPerConn: 5,
				BodySizes: []int{0, 100, 1460, 20000}, RespChunked: 0.5, Concurrency: 4},
		},
		{
			// 500 for every 50th request, one body byte for every 100th
			// from the 25th on (none of them a 500); then the recording
			// replayed offline against a target told the same.
			name: "status and body", differ: "status:500:50,body:100@24", offline: true, chunked: -1, respLen: recorder.DefaultRespSize,
			load: load.Options{Rate: 100, Duration: 3 * time.Second, MaxRequests: 300, Mode: load.Mixed, RequestsPerConn: 5,
				BodySizes: []int{0, 100, 1460, 20000}, Concurrency: 4},
		},
		{
			// Chunked bodies of three chunks, the changed byte beyond
			// --compare-bytes; late answers are the same.
			name: "chunked", differ: "header:13@6,length:17@2,body:11@4,status:503:29@20,slow:10:100ms", chunked: 1, respLen: 10000,
			load: load.Options{Rate: 60, Duration: 2500 * time.Millisecond, MaxRequests: 150, Mode: load.KeepAlive, RequestsPerConn: 10,
				BodySizes: []int{0, 4096}, RespSize: 10000, RespChunked: 1, Concurrency: 4},
		},
		{
			// Answers of 1 MiB with a Content-Length, the changed byte
			// in the middle.
			name: "1 MiB", differ: "status:500:9@3,body:7@1,length:11@5", chunked: -1, respLen: 1 << 20,
			load: load.Options{Rate: 12, Duration: 3 * time.Second, MaxRequests: 36, Mode: load.Mixed, RequestsPerConn: 4,
				BodySizes: []int{0, 1000}, RespSize: 1 << 20, Concurrency: 3, Timeout: 10 * time.Second},
		},
		{
			// Answers that stop for 50 ms after half their body: the bytes
			// are the same, so are the verdicts.
			name: "paused answers", differ: "pause:5@2:50ms,pause:5:50ms", chunked: -1, respLen: 65536,
			load: load.Options{Rate: 20, Duration: 2 * time.Second, MaxRequests: 40, Mode: load.KeepAlive, RequestsPerConn: 5,
				BodySizes: []int{0}, RespSize: 65536, Concurrency: 2},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			d, err := recorder.ParseDiffer(tt.differ)
			if err != nil {
				t.Fatal(err)
			}
			cfg := labrun.Config{GRO: true, Load: tt.load, TargetDiffer: d, DiffLog: true}
			if tt.offline {
				cfg.Pcap = filepath.Join(t.TempDir(), "live.pcap")
			}
			rep, online, target := run(t, cfg)
			checkAllCopied(t, rep, online, target)
			checkAnswers(t, rep.Dir, online, tt.chunked, tt.respLen)
			told := checkTold(t, d, online, target)
			checkVerdicts(t, "live", rep.Responses, told, len(online))
			if rep.Responses != nil && rep.Responses.Source != "metrics" {
				t.Errorf("live: verdicts from %q, want the metrics", rep.Responses.Source)
			}
			checkDiffLog(t, "live", rep.DiffLog, told)
			if !tt.offline {
				return
			}
			if p := rep.Pcap; p == nil || p.Captured == 0 || p.DroppedByKernel != 0 {
				t.Fatalf("tcpdump recording: %+v", p)
			}
			// The recording replayed: the target's answers are compared
			// with the online answers in the file.
			off := cmpReplay(t, cfg.Pcap, d)
			offCheckCopies(t, &offRecording{online: online}, &offResult{target: off.target, summary: off.summary}, 1)
			offTold := checkTold(t, d, online, off.target)
			rs, err := labrun.ResponsesFromLog(off.stderr)
			if err != nil {
				t.Fatal(err)
			}
			checkVerdicts(t, "offline", rs, offTold, len(online))
			dl, err := labrun.ReadDiffLog(offTold, off.diffLog)
			if err != nil {
				t.Fatal(err)
			}
			checkDiffLog(t, "offline", dl, offTold)
		})
	}
}

// checkAnswers checks the online server's answers as the load client got
// them: their body length and how many came chunked (-1 none, 0 some and
// not all, 1 all).
func checkAnswers(t *testing.T, dir string, online []recorder.Entry, chunked int, respLen int64) {
	t.Helper()
	rs, err := load.ReadResults(filepath.Join(dir, "load.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, r := range rs {
		if r.RespChunked {
			n++
		}
		if r.RespLen != respLen {
			t.Errorf("request %s: answer of %d bytes, want %d", r.ID, r.RespLen, respLen)
		}
	}
	switch {
	case chunked < 0 && n > 0, chunked > 0 && n != len(rs), chunked == 0 && (n == 0 || n == len(rs)):
		t.Errorf("%d of %d answers chunked", n, len(rs))
	}
	t.Logf("%d answers of %d bytes, %d chunked", len(rs), respLen, n)
}

// checkTold checks what the target changed against the rules d, request
// by request (recorder.Differ.For on the online requests' sequence
// numbers), and returns it.
func checkTold(t *testing.T, d recorder.Differ, online, target []recorder.Entry) *labrun.Told {
	t.Helper()
	told := labrun.ToldBy(d, online, target)
	want := map[string]int{}
	answers, slow, paused := 0, 0, 0
	seen := map[string]bool{}
	for _, e := range online {
		if seen[e.ID] {
			continue
		}
		seen[e.ID] = true
		seq, ok := recorder.Seq(e.ID)
		if !ok {
			t.Fatalf("id %q has no sequence number", e.ID)
		}
		a := d.For(seq, 2)
		if a.Delay > 0 {
			slow++
		}
		if a.Pause > 0 {
			paused++
		}
		if k := recorder.FirstKind(a.Changed); k != "" {
			want[k]++
			answers++
		}
	}
	if told.Answers != answers || told.Slow != slow || told.Paused != paused {
		t.Errorf("the target changed %d answers (%v), delayed %d and paused %d, want %d (%v), %d and %d",
			told.Answers, told.Kinds, told.Slow, told.Paused, answers, want, slow, paused)
	}
	for k, n := range want {
		if told.Kinds[k] != n {
			t.Errorf("the target changed %d answers first by %s, want %d", told.Kinds[k], k, n)
		}
	}
	if len(d) > 0 && answers+slow+paused == 0 {
		t.Errorf("rules %s changed nothing in %d requests: the test checks nothing", d, len(online))
	}
	return told
}

// checkVerdicts checks tcpcopy's verdicts: one per request, each as the
// target was told.
func checkVerdicts(t *testing.T, what string, rs *labrun.Responses, told *labrun.Told, requests int) {
	t.Helper()
	if rs == nil {
		t.Errorf("%s: no verdicts", what)
		return
	}
	if len(told.Rules) == 0 {
		told = nil
	}
	rs.CheckAsTold(told)
	if !rs.AsTold {
		t.Errorf("%s: verdicts not as told: %v (%+v)", what, rs.NotAsTold, *rs)
	}
	if rs.Total() != uint64(requests) {
		t.Errorf("%s: %d verdicts (%d same, %d differ, %d missing, %d not compared) for %d requests",
			what, rs.Total(), rs.Same, rs.Differs, rs.Missing, rs.NotCompared, requests)
	}
	if told != nil {
		for _, p := range told.StatusPairs {
			found := false
			for _, q := range rs.StatusPairs {
				if q == p {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: status pairs %+v, want %+v among them", what, rs.StatusPairs, p)
			}
		}
	}
	t.Logf("%s: %d same, %d differ %v, %d missing, %d not compared", what, rs.Same, rs.Differs, rs.Kinds, rs.Missing, rs.NotCompared)
}

// checkDiffLog checks that the diff log has a line for each changed
// answer, with its kind, and nothing else.
func checkDiffLog(t *testing.T, what string, d *labrun.DiffLog, told *labrun.Told) {
	t.Helper()
	if d == nil {
		t.Errorf("%s: no diff log", what)
		return
	}
	if d.Lines != told.Answers || d.AsTold != told.Answers || d.Unexpected != 0 || d.NotLogged != 0 {
		t.Errorf("%s: diff log of %d lines: %d as told, %d unexpected %v, %d changed answers not logged; the target changed %d",
			what, d.Lines, d.AsTold, d.Unexpected, d.First, d.NotLogged, told.Answers)
	}
	if told.Kinds["header"] > 0 && d.Headers["Content-Type"] != told.Kinds["header"] {
		t.Errorf("%s: diff log names the headers %v, want Content-Type %d times", what, d.Headers, told.Kinds["header"])
	}
}

// cmpReplayed is what an offline replay with comparison produced.
type cmpReplayed struct {
	target  []recorder.Entry
	summary map[string]any // "offline replay finished"
	stderr  string         // tcpcopy's log (JSON)
	diffLog string
}

// cmpReplay replays pcap with the real tcpcopy (-i FILE, --diff-log) in a
// fresh lab whose target recorder is told d, like offReplayIn.
func cmpReplay(t *testing.T, pcap string, d recorder.Differ) *cmpReplayed {
	t.Helper()
	tcpcopyBin, interceptBin := testbin.Build(t, "tcpcopy"), testbin.Build(t, "intercept")
	topo := netlab.NewForTest(t, netlab.Options{GRO: true})
	defer topo.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	out := &cmpReplayed{diffLog: filepath.Join(dir, "diff.jsonl")}
	targetLog := filepath.Join(dir, "target.jsonl")
	srv, err := topo.StartEnv(netlab.Target, []string{labrun.ChildEnv + "=1"}, self,
		append(labrun.ServeArgs(targetLog, ":8080"), d.Args()...)...)
	if err != nil {
		t.Fatal(err)
	}
	if err := topo.WaitListening(ctx, netlab.Target, labrun.TargetPort); err != nil {
		t.Fatal(err)
	}
	vars := labrun.Vars(topo)
	iargs, err := labrun.Expand(labrun.DefaultInterceptArgs, vars)
	if err != nil {
		t.Fatal(err)
	}
	icpt, err := topo.Start(netlab.Assistant, interceptBin, iargs...)
	if err != nil {
		t.Fatal(err)
	}
	if err := topo.WaitListening(ctx, netlab.Assistant, labrun.InterceptPort); err != nil {
		t.Fatal(err)
	}
	args, err := labrun.Expand([]string{"-x", "80-{target.online_v4}:8080", "-s", "{assistant.online_v4}",
		"-i", pcap, "--log-format", "json", "--stats-interval", "0", "--diff-log", out.diffLog}, vars)
	if err != nil {
		t.Fatal(err)
	}
	tc, err := topo.Start(netlab.Online, tcpcopyBin, args...)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-tc.Done():
	case <-ctx.Done():
		t.Fatalf("tcpcopy %v did not finish the replay: %s", args, tc.StderrTail(2000))
	}
	if err := tc.Err(); err != nil {
		t.Fatalf("tcpcopy %v: %v", args, err)
	}
	if err := icpt.Stop(); err != nil {
		t.Errorf("intercept: %v", err)
	}
	if err := srv.Stop(); err != nil {
		t.Errorf("target recorder: %v", err)
	}
	if out.target, err = recorder.ReadLog(targetLog); err != nil {
		t.Fatal(err)
	}
	out.stderr = tc.StderrPath
	out.summary = offLogLine(t, tc.StderrPath, "offline replay finished")
	if out.summary == nil {
		t.Fatalf("no summary in tcpcopy's log: %s", tc.StderrTail(2000))
	}
	return out
}
