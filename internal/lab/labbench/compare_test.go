package labbench

import (
	"encoding/json"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
)

func TestCompareArgs(t *testing.T) {
	base := []string{"-x", "80-{target.online_v4}:8080"}
	if got, want := compareArgs(base, false), []string{"-x", "80-{target.online_v4}:8080", "--compare-bytes", "0"}; !slices.Equal(got, want) {
		t.Errorf("off: %q, want %q", got, want)
	}
	if got := compareArgs(nil, true); !slices.Equal(got[:len(got)-2], labrun.DefaultTcpcopyArgs) || !slices.Equal(got[len(got)-2:], []string{"--compare-bytes", "2048"}) {
		t.Errorf("on, default args: %q", got)
	}
	if len(base) != 2 {
		t.Errorf("the base args were changed: %q", base)
	}
}

// compareRuns are three runs off and on, interleaved, that pass.
func compareRuns() []CompareRun {
	var runs []CompareRun
	for i, cpu := range [][2]float64{{0.40, 0.48}, {0.42, 0.52}, {0.38, 0.47}} {
		for j, on := range []bool{false, true} {
			r := CompareRun{Compare: on, LinkRx: 160 + float64(j)*2000 + float64(i), LinkTx: 0.7,
				Step: Step{Mode: "keepalive", Rate: 2000, Achieved: 2000, Requests: 10000, Fidelity: 100, Pass: true,
					TcpcopyCPU10k: cpu[j], InterceptCPU10k: 0.2 + float64(j)*0.05}}
			if on {
				r.Responses = &labrun.Responses{Same: 10000}
			}
			runs = append(runs, r)
		}
	}
	return runs
}

func TestSummarizeCompare(t *testing.T) {
	for _, tt := range []struct {
		name  string
		runs  func() []CompareRun
		met   bool
		ratio float64
		why   string
	}{
		{name: "met", runs: compareRuns, met: true, ratio: 0.48 / 0.40},
		{name: "too costly", runs: func() []CompareRun {
			runs := compareRuns()
			for i := range runs {
				if runs[i].Compare {
					runs[i].TcpcopyCPU10k *= 1.2
				}
			}
			return runs
		}, ratio: 0.48 * 1.2 / 0.40},
		{name: "a run failed", runs: func() []CompareRun {
			runs := compareRuns()
			runs[3].Pass, runs[3].Why = false, "fidelity 99.000% < 99.9%"
			return runs
		}, ratio: 0.475 / 0.40, why: "a run failed: fidelity 99.000% < 99.9%"},
		{name: "cut short", runs: func() []CompareRun { return compareRuns()[:3] }, ratio: 0.48 / 0.41,
			why: "only 2 runs off and 1 on of 3 each ran"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := &CompareResult{Repeat: 3, MaxRatio: CompareMaxRatio, Runs: tt.runs()}
			summarizeCompare(r)
			if r.Met != tt.met || r.Why != tt.why || r.Ratio < tt.ratio-1e-9 || r.Ratio > tt.ratio+1e-9 {
				t.Errorf("met %v, why %q, ratio %v; want %v, %q, %v", r.Met, r.Why, r.Ratio, tt.met, tt.why, tt.ratio)
			}
		})
	}
	r := &CompareResult{Repeat: 3, MaxRatio: CompareMaxRatio, Runs: compareRuns()}
	summarizeCompare(r)
	if r.Off.LinkRx != 161 || r.On.LinkRx != 2161 || r.On.InterceptCPU10k != 0.25 || r.Verdicts == nil || r.Verdicts.Same != 30000 {
		t.Errorf("medians off %+v, on %+v, verdicts %+v", r.Off, r.On, r.Verdicts)
	}
	text := r.lines()
	for _, w := range []string{
		"off                  0.400                0.200          161.0            0.7\n",
		"on/off               1.20x                1.25x         13.42x          1.00x\n",
		"goal compare: tcpcopy cpu-s/10k on/off 1.20 (+20%), target <= 1.30: met\n",
		"verdicts with the comparison on: 30000 same (",
	} {
		if !strings.Contains(text, w) {
			t.Errorf("summary lacks %q:\n%s", w, text)
		}
	}
}

func TestCompareRow(t *testing.T) {
	runs := compareRuns()
	if got, want := runs[0].row(1), "1    off         10000  100.000%              0.400                0.200          160.0            0.7  -"; got != want {
		t.Errorf("row\n%q\nwant\n%q", got, want)
	}
	on := runs[1]
	on.Responses = &labrun.Responses{Same: 9996, Differs: 2, Missing: 1, NotCompared: 1, Kinds: map[string]uint64{"length": 1, "header": 1}, NotComparedWhy: map[string]uint64{"too_many_pending": 1}}
	on.Pass, on.Why, on.Dir = false, "fidelity 99.000% < 99.9%", "/tmp/x"
	want := "1    on          10000  100.000%              0.480                0.250         2160.0            0.7  9996 same, 2 differ (header 1, length 1), 1 missing, 1 not compared (too_many_pending 1)  MISSED (fidelity 99.000% < 99.9%; logs in /tmp/x)"
	if got := on.row(1); got != want {
		t.Errorf("row\n%q\nwant\n%q", got, want)
	}
	if on.benchLine() != "" {
		t.Error("a failed run has a benchmark line")
	}
	if got := runs[1].benchLine(); !strings.HasPrefix(got, "BenchmarkLabCompare/compare=on 1 2000 req/s 2000.0 achieved-req/s") ||
		!strings.HasSuffix(got, " 2160.0 link-rx-B/req 0.7 link-tx-B/req") {
		t.Errorf("benchmark line %q", got)
	}
}

// TestWriteCompare checks the result files of a run of the compare phase
// only: a benchmark line per passing run, and the phase's JSON line.
func TestWriteCompare(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{OutDir: dir, Phases: []Phase{PhaseCompare}}
	cfg.setDefaults()
	c := &CompareResult{Mode: "keepalive", Rate: 2000, RespSize: 4096, Repeat: 3, MaxRatio: CompareMaxRatio, Runs: compareRuns()}
	c.Runs[5].Pass = false
	summarizeCompare(c)
	r := &Result{Start: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Best: map[string]Step{}, Limit: map[string]string{}, Compare: c}
	files, err := r.write(cfg)
	if err != nil {
		t.Fatal(err)
	}
	txt, _ := os.ReadFile(files[0])
	got := checkBenchstat(t, string(txt))
	want := []string{"BenchmarkLabCompare/compare=off", "BenchmarkLabCompare/compare=on", "BenchmarkLabCompare/compare=off",
		"BenchmarkLabCompare/compare=on", "BenchmarkLabCompare/compare=off"}
	if !slices.Equal(got, want) {
		t.Errorf("benchmarks %v, want %v\n%s", got, want, txt)
	}
	if !strings.Contains(string(txt), "compare-load: keepalive 2000/s for 5s, responses of 4096 B\n") {
		t.Errorf("no compare-load line in\n%s", txt)
	}
	jl, _ := os.ReadFile(files[1])
	var v struct {
		Kind  string       `json:"kind"`
		Runs  []CompareRun `json:"runs"`
		Ratio float64      `json:"tcpcopy_cpu_ratio"`
		Met   *bool        `json:"met"`
	}
	if err := json.Unmarshal(jl, &v); err != nil {
		t.Fatalf("%v: %s", err, jl)
	}
	if v.Kind != "compare" || len(v.Runs) != 6 || v.Ratio == 0 || v.Met == nil || *v.Met {
		t.Errorf("json line %s", jl)
	}
}
