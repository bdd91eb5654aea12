package labbench

import (
	"bufio"
	"encoding/json"
	"os"
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
	r := &Result{Start: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC), Steps: []Step{step, failed},
		Best: map[string]Step{"short": step}, Limit: map[string]string{"short": "fidelity", "keepalive": "budget"}}
	files, err := r.write(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || !strings.HasSuffix(files[0], "lab-20260102T030405Z.txt") {
		t.Fatalf("files %v", files)
	}
	txt, _ := os.ReadFile(files[0])
	got := checkBenchstat(t, string(txt))
	want := []string{"BenchmarkLabMaxRate/mode=short", "BenchmarkLabStep/mode=short/rate=400"}
	if strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("benchmarks %v, want %v\n%s", got, want, txt)
	}
	for _, w := range []string{"limit-short: fidelity", " 400 max-req/s ", " 1.500 tcpcopy-cpu-s/10k-req ", " 40.0 tcpcopy-peak-MiB "} {
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
		}
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatal(err)
		}
		kinds = append(kinds, v.Kind+"@"+strconv.Itoa(int(v.Rate)))
	}
	if strings.Join(kinds, " ") != "step@400 step@800 best@400" {
		t.Errorf("json lines %v", kinds)
	}
}
