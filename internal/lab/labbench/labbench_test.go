package labbench

import (
	"bufio"
	"encoding/json"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
)

// checkBenchstat checks the benchstat text format: configuration lines
// "key: value", benchmark lines "BenchmarkName N (value unit)...".
func checkBenchstat(t *testing.T, text string) (benchmarks []string) {
	t.Helper()
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if !strings.HasPrefix(line, "Benchmark") {
			if k, _, ok := strings.Cut(line, ": "); !ok || strings.ContainsAny(k, " \t") {
				t.Errorf("not a configuration line: %q", line)
			}
			continue
		}
		f := strings.Fields(line)
		if len(f) < 4 || len(f)%2 != 0 {
			t.Errorf("benchmark line with %d fields: %q", len(f), line)
			continue
		}
		if f[1] != "1" {
			t.Errorf("iterations %q in %q", f[1], line)
		}
		for i := 2; i < len(f); i += 2 {
			if _, err := strconv.ParseFloat(f[i], 64); err != nil {
				t.Errorf("value %q in %q", f[i], line)
			}
		}
		benchmarks = append(benchmarks, f[0])
	}
	return benchmarks
}

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{OutDir: dir, Modes: []load.Mode{load.Short, load.KeepAlive}}
	cfg.setDefaults()
	step := Step{Mode: "short", Rate: 400, Achieved: 399.5, Requests: 2000, Fidelity: 100, Pass: true,
		TcpcopyCPU10k: 1.5, InterceptCPU10k: 0.5, TcpcopyRSS: 40 << 20, InterceptRSS: 30 << 20}
	failed := step
	failed.Rate, failed.Pass, failed.Why = 800, false, "fidelity"
	// Goal steps come first, as Run runs them; the failed one gets no
	// benchmark line.
	goal := step
	goal.Rate, goal.Goal, goal.TcpcopyCPU10k = 2000, true, 0.7
	goal2 := goal
	goal2.TcpcopyCPU10k = 0.8
	goalFailed := goal
	goalFailed.Pass, goalFailed.Why = false, "fidelity"
	g := Goal{Mode: load.Short, Rate: 2000, MaxTcpcopyCPU10k: 0.75}
	r := &Result{Start: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Steps: []Step{goal, goal2, goalFailed, step, failed},
		Best: map[string]Step{"short": step}, Limit: map[string]string{"short": "fidelity", "keepalive": "budget"},
		Goals: []GoalResult{summarize(g, []Step{goal, goal2, goalFailed}, 3)}}
	files, err := r.write(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || !strings.HasSuffix(files[0], "lab-20260102T030405Z.txt") {
		t.Fatalf("files %v", files)
	}
	txt, _ := os.ReadFile(files[0])
	got := checkBenchstat(t, string(txt))
	want := []string{"BenchmarkLabMaxRate/mode=short", "BenchmarkLabStep/mode=short/rate=400",
		"BenchmarkLabGoal/mode=short/rate=2000", "BenchmarkLabGoal/mode=short/rate=2000"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("benchmarks %v, want %v\n%s", got, want, txt)
	}
	for _, w := range []string{"limit-short: fidelity", " 400 max-req/s ", " 1.500 tcpcopy-cpu-s/10k-req ", " 40.0 tcpcopy-peak-MiB ",
		"BenchmarkLabGoal/mode=short/rate=2000 1 2000 req/s ", " 0.700 tcpcopy-cpu-s/10k-req ", " 0.800 tcpcopy-cpu-s/10k-req "} {
		if !strings.Contains(string(txt), w) {
			t.Errorf("no %q in\n%s", w, txt)
		}
	}
	jl, _ := os.ReadFile(files[1])
	var kinds []string
	for _, line := range strings.Split(strings.TrimSpace(string(jl)), "\n") {
		var v struct {
			Kind string  `json:"kind"`
			Rate float64 `json:"rate"`
			Goal bool    `json:"goal"`
		}
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatal(err)
		}
		kind := v.Kind
		if v.Goal {
			kind += "(goal)"
		}
		kinds = append(kinds, kind+"@"+strconv.Itoa(int(v.Rate)))
		if v.Kind == "goal" {
			var g struct {
				Mode   string    `json:"mode"`
				Target float64   `json:"max_tcpcopy_cpu_s_per_10k"`
				CPU    []float64 `json:"tcpcopy_cpu_s_per_10k"`
				Median float64   `json:"tcpcopy_cpu_s_per_10k_median"`
				Met    bool      `json:"met"`
				Why    string    `json:"why"`
			}
			if err := json.Unmarshal([]byte(line), &g); err != nil {
				t.Fatal(err)
			}
			if g.Mode != "short" || g.Target != 0.75 || len(g.CPU) != 3 || g.Median != 0.7 || g.Met || g.Why != "a step failed: fidelity" {
				t.Errorf("goal line %s", line)
			}
		}
	}
	want = []string{"step(goal)@2000", "step(goal)@2000", "step(goal)@2000", "step@400", "step@800", "best@400", "goal@2000"}
	if strings.Join(kinds, " ") != strings.Join(want, " ") {
		t.Errorf("json lines %v, want %v", kinds, want)
	}
}

func TestParseGoals(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   string
		want []Goal // nil: an error
		err  string // in the error
	}{
		{name: "default", in: FormatGoals(DefaultGoals), want: DefaultGoals},
		{name: "one", in: " short:100:2.5 ", want: []Goal{{Mode: load.Short, Rate: 100, MaxTcpcopyCPU10k: 2.5}}},
		{name: "spaces", in: "mixed:10.5:1, keepalive:20:0.1",
			want: []Goal{{Mode: load.Mixed, Rate: 10.5, MaxTcpcopyCPU10k: 1}, {Mode: load.KeepAlive, Rate: 20, MaxTcpcopyCPU10k: 0.1}}},
		{name: "empty", in: "", want: []Goal{}},
		{name: "none", in: "none", want: []Goal{}},
		{name: "unknown mode", in: "long:100:1", err: `goal "long:100:1": load: unknown mode "long"`},
		{name: "two fields", in: "short:100", err: `goal "short:100": want mode:rate:max-cpu-s-per-10k`},
		{name: "four fields", in: "short:100:1:2", err: "want mode:rate:max"},
		{name: "empty item", in: "short:100:1,", err: `goal "": want mode:rate:max`},
		{name: "bad rate", in: "short:fast:1", err: `goal "short:fast:1": bad rate "fast"`},
		{name: "zero rate", in: "short:0:1", err: `bad rate "0"`},
		{name: "NaN rate", in: "short:NaN:1", err: `bad rate "NaN"`},
		{name: "inf rate", in: "short:Inf:1", err: `bad rate "Inf"`},
		{name: "bad max", in: "short:100:x", err: `goal "short:100:x": bad maximum "x"`},
		{name: "negative max", in: "short:100:-1", err: `bad maximum "-1"`},
		{name: "twice", in: "short:100:1,short:100:2", err: "short at 100/s given twice"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseGoals(tt.in)
			if tt.want == nil {
				if err == nil || !strings.Contains(err.Error(), tt.err) {
					t.Fatalf("ParseGoals(%q) = %v, %v; want an error with %q", tt.in, got, err, tt.err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseGoals(%q): %v", tt.in, err)
			}
			if got == nil || !slices.Equal(got, tt.want) {
				t.Errorf("ParseGoals(%q) = %#v, want %#v", tt.in, got, tt.want)
			}
		})
	}
}

func TestSummarize(t *testing.T) {
	g := Goal{Mode: load.Short, Rate: 2000, MaxTcpcopyCPU10k: 0.75}
	step := func(cpu float64, pass bool) Step {
		s := Step{Mode: "short", Rate: 2000, Pass: pass, TcpcopyCPU10k: cpu, InterceptCPU10k: cpu * 0.4,
			LatencyP50: 10 * cpu, LatencyP99: 100 * cpu}
		if !pass {
			s.Why = "fidelity 99.000% < 99.9%"
		}
		return s
	}
	for _, tt := range []struct {
		name   string
		runs   []Step
		repeat int
		median float64
		spread float64
		met    bool
		lines  string
	}{
		{
			name: "missed", runs: []Step{step(0.96, true), step(0.93, true), step(1.02, true)}, repeat: 3,
			median: 0.96, spread: 4.6875,
			lines: "goal short       2000/s: tcpcopy cpu-s/10k 0.96 0.93 1.02 (median 0.96, spread ±4.7%), target <= 0.75: MISSED\n" +
				"     short       2000/s: medians: intercept cpu-s/10k 0.38, copy latency p50 9.6 ms, p99 96.0 ms\n",
		},
		{
			name: "met", runs: []Step{step(0.7, true), step(0.5, true), step(0.8, true), step(0.6, true)}, repeat: 4,
			median: 0.65, spread: 100 * 0.15 / 0.65, met: true,
			lines: "goal short       2000/s: tcpcopy cpu-s/10k 0.70 0.50 0.80 0.60 (median 0.65, spread ±23.1%), target <= 0.75: met\n" +
				"     short       2000/s: medians: intercept cpu-s/10k 0.26, copy latency p50 6.5 ms, p99 65.0 ms\n",
		},
		{
			name: "at the target", runs: []Step{step(0.75, true)}, repeat: 1, median: 0.75, met: true,
			lines: "goal short       2000/s: tcpcopy cpu-s/10k 0.75 (median 0.75, spread ±0.0%), target <= 0.75: met\n" +
				"     short       2000/s: medians: intercept cpu-s/10k 0.30, copy latency p50 7.5 ms, p99 75.0 ms\n",
		},
		{
			name: "a step failed", runs: []Step{step(0.5, true), step(0.6, false), step(0.5, true)}, repeat: 3,
			median: 0.5, spread: 10,
			lines: "goal short       2000/s: tcpcopy cpu-s/10k 0.50 0.60 0.50 (median 0.50, spread ±10.0%), target <= 0.75: MISSED (a step failed: fidelity 99.000% < 99.9%)\n" +
				"     short       2000/s: medians: intercept cpu-s/10k 0.20, copy latency p50 5.0 ms, p99 50.0 ms\n",
		},
		{
			name: "two steps failed", runs: []Step{step(0.5, false), step(0.6, false)}, repeat: 2,
			median: 0.55, spread: 100 * 0.05 / 0.55,
			lines: "goal short       2000/s: tcpcopy cpu-s/10k 0.50 0.60 (median 0.55, spread ±9.1%), target <= 0.75: MISSED (2 steps failed, the first: fidelity 99.000% < 99.9%)\n" +
				"     short       2000/s: medians: intercept cpu-s/10k 0.22, copy latency p50 5.5 ms, p99 55.0 ms\n",
		},
		{
			name: "cut short", runs: []Step{step(0.5, true)}, repeat: 3, median: 0.5,
			lines: "goal short       2000/s: tcpcopy cpu-s/10k 0.50 (median 0.50, spread ±0.0%), target <= 0.75: MISSED (only 1 of 3 repetitions ran)\n" +
				"     short       2000/s: medians: intercept cpu-s/10k 0.20, copy latency p50 5.0 ms, p99 50.0 ms\n",
		},
		{
			name: "none ran", repeat: 3,
			lines: "goal short       2000/s: target <= 0.75: MISSED (no repetition ran)\n",
		},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cpu := make([]float64, len(tt.runs))
			for i, s := range tt.runs {
				cpu[i] = s.TcpcopyCPU10k
			}
			r := summarize(g, tt.runs, tt.repeat)
			if math.Abs(r.Median-tt.median) > 1e-9 || math.Abs(r.Spread-tt.spread) > 1e-9 || r.Met != tt.met {
				t.Errorf("median %v, spread %v, met %v; want %v, %v, %v", r.Median, r.Spread, r.Met, tt.median, tt.spread, tt.met)
			}
			if !slices.Equal(r.TcpcopyCPU10k, cpu) {
				t.Errorf("cpu %v, want %v in run order", r.TcpcopyCPU10k, cpu)
			}
			if got := r.lines(); got != tt.lines {
				t.Errorf("lines\n%s\nwant\n%s", got, tt.lines)
			}
		})
	}
}
