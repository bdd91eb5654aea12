package labbench

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
)

func TestParsePhases(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   string
		want []Phase // nil: an error
		err  string  // in the error
	}{
		{name: "all", in: "all", want: Phases},
		{name: "default round trip", in: FormatPhases(Phases), want: Phases},
		{name: "one", in: "loss", want: []Phase{PhaseLoss}},
		{name: "two with spaces", in: " matrix , loss ", want: []Phase{PhaseMatrix, PhaseLoss}},
		{name: "run order whatever the order given", in: "climb,loss,goals", want: []Phase{PhaseGoals, PhaseLoss, PhaseClimb}},
		{name: "unknown", in: "matrix,stress", err: `unknown phase "stress" (known: goals, matrix, loss, targets, compare, climb, or all)`},
		{name: "case matters", in: "Matrix", err: `unknown phase "Matrix"`},
		{name: "empty", in: "", err: "no phase given (known: goals, matrix, loss, targets, compare, climb, or all)"},
		{name: "empty item", in: "goals,", err: `unknown phase ""`},
		{name: "all among others", in: "all,loss", err: `unknown phase "all"`},
		{name: "twice", in: "loss,loss", err: `phase "loss" given twice`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParsePhases(tt.in)
			if tt.want == nil {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParsePhases(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParsePhases(%q): %v", tt.in, err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("ParsePhases(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseStacksAndLevels(t *testing.T) {
	names := func(s []labrun.ClientStack) string {
		var n []string
		for _, c := range s {
			n = append(n, c.Name)
		}
		return strings.Join(n, ",")
	}
	levels := func(s []labrun.LossLevel) string {
		var n []string
		for _, l := range s {
			n = append(n, l.Name)
		}
		return strings.Join(n, ",")
	}
	for _, tt := range []struct {
		name    string
		stacks  bool // ParseStacks, else ParseLossLevels
		in      string
		want    string // names, comma-separated
		wantErr string
	}{
		{name: "all stacks", stacks: true, in: "all", want: names(labrun.ClientStacks)},
		{name: "stacks in the order given", stacks: true, in: "mss536, linux", want: "mss536,linux"},
		{name: "unknown stack", stacks: true, in: "linux,windows95", wantErr: `unknown client stack "windows95" (known: linux, no-timestamps`},
		{name: "stack twice", stacks: true, in: "ecn,ecn", wantErr: `"ecn" given twice`},
		{name: "no stack", stacks: true, in: "", wantErr: `unknown client stack ""`},
		{name: "all levels", in: "all", want: levels(labrun.LossLevels)},
		{name: "one level", in: "loss-0-5", want: "loss-0-5"},
		{name: "unknown level", in: "loss-3-3", wantErr: `unknown loss level "loss-3-3" (known: loss-1-1, loss-2-2, loss-5-0, loss-0-5)`},
		{name: "level twice", in: "loss-1-1,loss-1-1", wantErr: `"loss-1-1" given twice`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var got string
			var err error
			if tt.stacks {
				var s []labrun.ClientStack
				s, err = ParseStacks(tt.in)
				got = names(s)
			} else {
				var l []labrun.LossLevel
				l, err = ParseLossLevels(tt.in)
				got = levels(l)
			}
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("%q: got %q, %v; want an error with %q", tt.in, got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("%q: got %q, %v; want %q", tt.in, got, err, tt.want)
			}
		})
	}
}

func TestLossGoal(t *testing.T) {
	for _, tt := range []struct {
		copy, response float64
		want           float64
	}{
		{1, 1, 100},
		{0, 1, 100},
		{0.5, 0, 100},
		{2, 2, 99.99},
		{1, 2, 99.99},
		{5, 0, 99.99},
		{0, 5, 99.99},
		{3, 0, 99.99},
		{5, 1, 0},
		{2.5, 2.5, 0},
		{0, 6, 0},
	} {
		l := labrun.LossLevel{Name: "x", Copy: tt.copy, Response: tt.response}
		if got := LossGoal(l); got != tt.want {
			t.Errorf("LossGoal(copy %g%%, response %g%%) = %g, want %g", tt.copy, tt.response, got, tt.want)
		}
	}
	// Every named level has a goal.
	for _, l := range labrun.LossLevels {
		if LossGoal(l) == 0 {
			t.Errorf("%s has no goal", l.Name)
		}
	}
}

func TestCopyWhy(t *testing.T) {
	for _, tt := range []struct {
		name string
		c    recorder.Comparison
		want []string
	}{
		{name: "all copied", c: recorder.Comparison{Online: 120, Target: 120, Matched: 120, Fidelity: 100}},
		{name: "nothing recorded", c: recorder.Comparison{}, want: []string{"live: no request recorded online"}},
		{name: "one different, one missing", c: recorder.Comparison{Online: 120, Target: 119, Matched: 118, Mismatched: 1, Missing: 1},
			want: []string{"live: 118 of 120 requests byte-identical (1 different, 1 missing)"}},
		{name: "duplicates and strangers", c: recorder.Comparison{Online: 10, Target: 13, Matched: 10, Duplicates: 2, Unexpected: 1},
			want: []string{"live: 2 duplicates", "live: 1 unexpected requests"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := copyWhy("live", tt.c); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

func TestStackRow(t *testing.T) {
	ok := recorder.Comparison{Online: 120, Target: 120, Matched: 120, Fidelity: 100}
	bad := recorder.Comparison{Online: 120, Target: 120, Matched: 119, Mismatched: 1, Fidelity: 100 * 119.0 / 120}
	for _, tt := range []struct {
		name  string
		r     StackResult
		row   string
		bench string
	}{
		{
			name: "met",
			r:    StackResult{Stack: "linux", Rate: 40, Live: ok, Offline: &ok, TcpcopyCPU: 0.321, OfflineTcpcopyCPU: 0.284, Met: true},
			row:  "linux                 120       100.000%          0          100.000%          0           0.32  met",
			bench: "BenchmarkLabClientStack/linux 1 40 req/s 120 requests 100.000 fidelity-% 0 body-mismatches 0.321 tcpcopy-cpu-s " +
				"100.000 offline-fidelity-% 0 offline-body-mismatches 0.284 offline-tcpcopy-cpu-s",
		},
		{
			name: "missed offline",
			r: StackResult{Stack: "target-mtu1400", Rate: 40, Live: ok, Offline: &bad, TcpcopyCPU: 1.5,
				Why: "offline: 119 of 120 requests byte-identical (1 different, 0 missing)", Dir: "/tmp/x"},
			row: "target-mtu1400        120       100.000%          0           99.167%          1           1.50  " +
				"MISSED (offline: 119 of 120 requests byte-identical (1 different, 0 missing); logs in /tmp/x)",
			bench: "BenchmarkLabClientStack/target-mtu1400 1 40 req/s 120 requests 100.000 fidelity-% 0 body-mismatches 1.500 tcpcopy-cpu-s " +
				"99.167 offline-fidelity-% 1 offline-body-mismatches 0.000 offline-tcpcopy-cpu-s",
		},
		{
			name:  "not replayed",
			r:     StackResult{Stack: "ecn", Rate: 40, Live: ok, TcpcopyCPU: 0.3, Why: "offline replay failed: boom"},
			row:   "ecn                   120       100.000%          0                 -          -           0.30  MISSED (offline replay failed: boom)",
			bench: "BenchmarkLabClientStack/ecn 1 40 req/s 120 requests 100.000 fidelity-% 0 body-mismatches 0.300 tcpcopy-cpu-s",
		},
		{
			name: "live run failed",
			r:    StackResult{Stack: "jumbo-client", Rate: 40, Why: "live run failed: lab setup failed", Dir: "/tmp/y"},
			row:  "jumbo-client            0         0.000%          0                 -          -           0.00  MISSED (live run failed: lab setup failed; logs in /tmp/y)",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.row(); got != tt.row {
				t.Errorf("row\n%q\nwant\n%q", got, tt.row)
			}
			if got := tt.r.benchLine(); got != tt.bench {
				t.Errorf("benchmark line\n%q\nwant\n%q", got, tt.bench)
			}
			// The columns line up with the header's: each figure ends
			// where its heading ends.
			checkColumns(t, stackHeader, tt.row, []string{"requests", "live fidelity", "different", "offline fidelity", "different", "tcpcopy cpu-s"})
		})
	}
}

// checkColumns checks that in row the field under each of headings ends
// where the heading does in header.
func checkColumns(t *testing.T, header, row string, headings []string) {
	t.Helper()
	from := 0
	for _, h := range headings {
		i := strings.Index(header[from:], h)
		if i < 0 {
			t.Fatalf("no %q in the header", h)
		}
		end := from + i + len(h)
		from = end
		if end > len(row) || row[end-1] == ' ' || (end < len(row) && row[end] != ' ') {
			t.Errorf("column %q (ends at %d) does not line up in\n%s\n%s", h, end, header, row)
		}
	}
}

func TestLossRow(t *testing.T) {
	step := Step{Mode: "short", Rate: 200, Achieved: 200.2, Requests: 1000, Fidelity: 100, Pass: true,
		TcpcopyCPU10k: 3.516, InterceptCPU10k: 2.465, LoadCPU10k: 7.144, ServersCPU10k: 7.201,
		TcpcopyRSS: 33 << 20, InterceptRSS: 30 << 20, LatencyP50: 1.72, LatencyP99: 252.93}
	missed := step
	missed.Mode, missed.Requests, missed.Fidelity, missed.Pass = "keepalive", 1000, 99.9, false
	missed.Why, missed.Dir = "fidelity 99.900% < 99.99%", "/tmp/z"
	for _, tt := range []struct {
		name  string
		r     LossResult
		row   string
		bench string
	}{
		{
			name: "met",
			r:    LossResult{Level: "loss-1-1", LossCopy: 1, LossResponse: 1, MinFidelity: 100, DroppedCopy: 77, DroppedResponse: 100, Step: step},
			row:  "loss-1-1   short          1000  100.000%            77       100  252.9 ms               3.52  >= 100%    met",
			bench: "BenchmarkLabLoss/loss-1-1-short 1 200 req/s 200.2 achieved-req/s 100.000 fidelity-% 3.516 tcpcopy-cpu-s/10k-req " +
				"2.465 intercept-cpu-s/10k-req 7.144 loadgen-cpu-s/10k-req 7.201 servers-cpu-s/10k-req 33.0 tcpcopy-peak-MiB " +
				"30.0 intercept-peak-MiB 1.72 copy-p50-ms 252.93 copy-p99-ms 77 copy-frames-dropped 100 response-frames-dropped",
		},
		{
			name: "missed",
			r:    LossResult{Level: "loss-5-0", LossCopy: 5, MinFidelity: 99.99, DroppedCopy: 512, Step: missed},
			row:  "loss-5-0   keepalive      1000   99.900%           512         0  252.9 ms               3.52  >= 99.99%  MISSED (fidelity 99.900% < 99.99%; logs in /tmp/z)",
			bench: "BenchmarkLabLoss/loss-5-0-keepalive 1 200 req/s 200.2 achieved-req/s 99.900 fidelity-% 3.516 tcpcopy-cpu-s/10k-req " +
				"2.465 intercept-cpu-s/10k-req 7.144 loadgen-cpu-s/10k-req 7.201 servers-cpu-s/10k-req 33.0 tcpcopy-peak-MiB " +
				"30.0 intercept-peak-MiB 1.72 copy-p50-ms 252.93 copy-p99-ms 512 copy-frames-dropped 0 response-frames-dropped",
		},
		{
			name: "run failed",
			r: LossResult{Level: "loss-0-5", LossResponse: 5, MinFidelity: 99.99,
				Step: Step{Mode: "short", Rate: 200, Why: "the run failed: nft missing"}},
			row: "loss-0-5   short             0    0.000%             0         0    0.0 ms               0.00  >= 99.99%  MISSED (the run failed: nft missing)",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.r.row(); got != tt.row {
				t.Errorf("row\n%q\nwant\n%q", got, tt.row)
			}
			if got := tt.r.benchLine(); got != tt.bench {
				t.Errorf("benchmark line\n%q\nwant\n%q", got, tt.bench)
			}
			checkColumns(t, lossHeader, tt.row, []string{"requests", "fidelity", "dropped copy", "response", "copy p99", "tcpcopy cpu-s/10k"})
		})
	}
}

func TestOfflineArgs(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   []string
		want []string
	}{
		{name: "default", in: labrun.DefaultTcpcopyArgs,
			want: []string{"-x", "80-{target.online_v4}:8080", "-s", "{assistant.online_v4}", "-i", "/tmp/c.pcap",
				"--log-format", "json", "--stats-interval", "0"}},
		{name: "no -i", in: []string{"-x", "80-192.0.2.1:8080"},
			want: []string{"-x", "80-192.0.2.1:8080", "-i", "/tmp/c.pcap", "--log-format", "json", "--stats-interval", "0"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			before := slices.Clone(tt.in)
			if got := offlineArgs(tt.in, "/tmp/c.pcap"); !slices.Equal(got, tt.want) {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if !slices.Equal(tt.in, before) {
				t.Errorf("the live arguments changed: %q", tt.in)
			}
		})
	}
}

func TestLogLine(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stderr")
	text := `{"time":"x","level":"INFO","msg":"tcpcopy started"}
not json
{"time":"x","level":"INFO","msg":"offline replay finished","requests":120,"failed":0,"fidelity":"1.0000"}
{"time":"x","level":"WARN","msg":"something after"}
`
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := logLine(path, "offline replay finished")
	if err != nil {
		t.Fatal(err)
	}
	if s := summaryText(got); s != "failed=0 fidelity=1.0000 requests=120" {
		t.Errorf("summary %q", s)
	}
	if got, err := logLine(path, "never logged"); err != nil || got != nil {
		t.Errorf("a message not logged: %v, %v", got, err)
	}
	if _, err := logLine(filepath.Join(t.TempDir(), "none"), "x"); err == nil {
		t.Errorf("no error for a missing file")
	}
}

func TestSizesText(t *testing.T) {
	for _, tt := range []struct {
		in   []int
		want string
	}{
		{nil, "none"},
		{[]int{0}, "0 B"},
		{MatrixBodySizes, "20000 B and 1 MiB"},
		{DefaultBodySizes, "0 B, 64 B, 512 B, 1460 B and 4 KiB"},
	} {
		if got := sizesText(tt.in); got != tt.want {
			t.Errorf("sizesText(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestWritePhases checks the result files of a run of the matrix and the
// loss table only: their benchmark and JSON lines, and no climb lines.
func TestWritePhases(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{OutDir: dir, Phases: []Phase{PhaseMatrix, PhaseLoss}}
	cfg.setDefaults()
	ok := recorder.Comparison{Online: 120, Target: 120, Matched: 120, Fidelity: 100}
	step := Step{Mode: "short", Rate: 200, Achieved: 200, Requests: 1000, Fidelity: 100, Pass: true, TcpcopyCPU10k: 3.5}
	missed := step
	missed.Mode, missed.Fidelity, missed.Pass, missed.Why = "keepalive", 99.9, false, "fidelity 99.900% < 99.99%"
	r := &Result{Start: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Best: map[string]Step{}, Limit: map[string]string{},
		Stacks: []StackResult{
			{Stack: "linux", Rate: 40, Live: ok, Offline: &ok, TcpcopyCPU: 0.3, Met: true},
			{Stack: "ecn", Rate: 40, Why: "live run failed: x"}, // no benchmark line
		},
		Loss: []LossResult{
			{Level: "loss-1-1", LossCopy: 1, LossResponse: 1, MinFidelity: 100, DroppedCopy: 7, DroppedResponse: 9, Step: step},
			{Level: "loss-2-2", LossCopy: 2, LossResponse: 2, MinFidelity: 99.99, Step: missed},
		}}
	files, err := r.write(cfg)
	if err != nil {
		t.Fatal(err)
	}
	txt, _ := os.ReadFile(files[0])
	got := checkBenchstat(t, string(txt))
	want := []string{"BenchmarkLabClientStack/linux", "BenchmarkLabLoss/loss-1-1-short", "BenchmarkLabLoss/loss-2-2-keepalive"}
	if !slices.Equal(got, want) {
		t.Errorf("benchmarks %v, want %v\n%s", got, want, txt)
	}
	for _, w := range []string{"matrix-load: mixed 40/s for 3s, bodies [20000 1048576]\n", "loss-load: 200/s for 5s\n",
		" 7 copy-frames-dropped 9 response-frames-dropped\n", " 99.900 fidelity-% "} {
		if !strings.Contains(string(txt), w) {
			t.Errorf("no %q in\n%s", w, txt)
		}
	}
	if strings.Contains(string(txt), "limit-") {
		t.Errorf("climb limits without a climb:\n%s", txt)
	}
	jl, _ := os.ReadFile(files[1])
	var kinds []string
	for _, line := range strings.Split(strings.TrimSpace(string(jl)), "\n") {
		var v struct {
			Kind    string          `json:"kind"`
			Stack   string          `json:"stack"`
			Level   string          `json:"level"`
			Mode    string          `json:"mode"`
			Met     *bool           `json:"met"`
			Pass    *bool           `json:"pass"`
			Offline json.RawMessage `json:"offline"`
		}
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatal(err)
		}
		switch v.Kind {
		case "stack":
			kinds = append(kinds, "stack:"+v.Stack)
			if v.Met == nil {
				t.Errorf("no met in %s", line)
			}
		case "loss":
			kinds = append(kinds, "loss:"+v.Level+"-"+v.Mode)
			if v.Pass == nil {
				t.Errorf("no pass in %s", line)
			}
		default:
			kinds = append(kinds, v.Kind)
		}
	}
	want = []string{"stack:linux", "stack:ecn", "loss:loss-1-1-short", "loss:loss-2-2-keepalive"}
	if !slices.Equal(kinds, want) {
		t.Errorf("json lines %v, want %v", kinds, want)
	}
}

func TestMatrixLab(t *testing.T) {
	cfg := Config{Lab: labrun.Config{ClientSysctls: []string{"net.ipv4.tcp_ecn=0"}}}
	cfg.setDefaults()
	s, err := labrun.ClientStackByName("data-on-ack")
	if err != nil {
		t.Fatal(err)
	}
	lab := matrixLab(cfg, s, "/tmp/d")
	l := lab.Load
	if l.Mode != load.Mixed || l.Rate != 40 || l.Duration != 3*time.Second || l.MaxRequests != 121 ||
		!slices.Equal(l.Methods, []string{"GET", "POST"}) || !slices.Equal(l.BodySizes, []int{20000, 1 << 20}) || !l.DataOnAck {
		t.Errorf("load %+v", l)
	}
	if lab.Pcap != "/tmp/d/client.pcap" || lab.Dir != "/tmp/d/live" || lab.Tail != 2*time.Second || lab.ClientStack != "data-on-ack" {
		t.Errorf("lab pcap %q, dir %q, tail %s, stack %q", lab.Pcap, lab.Dir, lab.Tail, lab.ClientStack)
	}
	// The climb's load is left alone.
	if cfg.Lab.Load.DataOnAck || !slices.Equal(cfg.Lab.Load.BodySizes, DefaultBodySizes) {
		t.Errorf("the bench's load changed: %+v", cfg.Lab.Load)
	}
}

func TestStackDetails(t *testing.T) {
	off := recorder.Comparison{Online: 120, Target: 119, Matched: 118, Mismatched: 1, Missing: 1,
		MissingIDs: []string{"ab-7"}, MismatchedIDs: []string{"ab-9"}}
	r := StackResult{Stack: "mss536", Offline: &off, Replay: map[string]any{"failed": 1.0, "requests": 120.0}}
	rep := &labrun.Report{ID: "tcg-123456", Copying: true, Network: labrun.Network{ClientStack: "mss536", ClientMSS: 536}}
	got := stackDetails(r, rep)
	for _, w := range []string{
		"    lab tcg-123456: ",
		"    client     stack mss536: MSS 536",
		"    offline    119 requests recorded at the target: 118 matched, 1 with a different body, 1 missing, 0 duplicates, 0 unexpected\n",
		"    offline    missing ab-7\n",
		"    offline    different ab-9\n",
		"    offline    tcpcopy: failed=1 requests=120\n",
	} {
		if !strings.Contains(got, w) {
			t.Errorf("no %q in\n%s", w, got)
		}
	}
	for line := range strings.Lines(got) {
		if !strings.HasPrefix(line, "    ") || !strings.HasSuffix(line, "\n") {
			t.Errorf("line %q not indented or not ended", line)
		}
	}
	if got := stackDetails(StackResult{Stack: "ecn"}, nil); got != "" {
		t.Errorf("details of a stack without runs: %q", got)
	}
}
