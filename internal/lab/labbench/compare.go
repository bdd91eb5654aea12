package labbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/pkg/compare"
)

// Defaults of the compare phase (PhaseCompare).
const (
	DefaultCompareRate   = 2000
	DefaultCompareRepeat = 3
	DefaultCompareResp   = 4096
	// CompareMaxRatio is the goal: tcpcopy's CPU seconds per 10,000
	// requests with the comparison on are at most this times those with
	// it off (medians).
	CompareMaxRatio = 1.30
)

// CompareRun is one run of the compare phase: the step's figures and the
// bytes per request on tcpcopy's link with intercept.
type CompareRun struct {
	Compare bool `json:"compare"` // --compare-bytes 2048, else 0
	// LinkRx and LinkTx are the bytes tcpcopy read from intercept
	// (tcpcopy_intercept_received_bytes_total) and wrote to it
	// (tcpcopy_intercept_sent_bytes_total), per request.
	LinkRx float64 `json:"link_rx_bytes_per_req"`
	LinkTx float64 `json:"link_tx_bytes_per_req"`
	// Responses are tcpcopy's verdicts (comparison on): with a target
	// answering like the online server, every response the same.
	Responses *labrun.Responses `json:"responses,omitempty"`
	Step
}

// CompareSide is the medians of the runs with the comparison off, or on.
type CompareSide struct {
	TcpcopyCPU10k   float64 `json:"tcpcopy_cpu_s_per_10k"`
	InterceptCPU10k float64 `json:"intercept_cpu_s_per_10k"`
	LinkRx          float64 `json:"link_rx_bytes_per_req"`
	LinkTx          float64 `json:"link_tx_bytes_per_req"`
}

// CompareResult is the outcome of the compare phase: the same load with
// the response comparison off and on, Repeat times each, interleaved.
type CompareResult struct {
	Mode     string       `json:"mode"`
	Rate     float64      `json:"rate"`
	RespSize int          `json:"resp_size"`
	Repeat   int          `json:"repeat"`
	Runs     []CompareRun `json:"runs"` // in run order
	Off      CompareSide  `json:"off"`
	On       CompareSide  `json:"on"`
	// Ratio is On.TcpcopyCPU10k / Off.TcpcopyCPU10k; the goal is at most
	// MaxRatio.
	Ratio    float64 `json:"tcpcopy_cpu_ratio"`
	MaxRatio float64 `json:"max_tcpcopy_cpu_ratio"`
	// Met: every run ran and passed, and Ratio is at most MaxRatio.
	Met bool   `json:"met"`
	Why string `json:"why,omitempty"`
	// Verdicts sums the verdicts of the runs with the comparison on.
	Verdicts *labrun.Responses `json:"verdicts,omitempty"`
}

// compareArgs are tcpcopy's arguments with the comparison on or off.
func compareArgs(base []string, on bool) []string {
	if base == nil {
		base = labrun.DefaultTcpcopyArgs
	}
	n := 0
	if on {
		n = compare.DefaultBytes
	}
	return append(slices.Clone(base), "--compare-bytes", strconv.Itoa(n))
}

// runCompareStep runs the compare phase's load once, with the comparison
// on or off. Its logs are deleted when it passes.
func runCompareStep(ctx context.Context, cfg Config, on bool, log *slog.Logger) (CompareRun, error) {
	lab := cfg.Lab
	lab.TcpcopyArgs = compareArgs(cfg.Lab.TcpcopyArgs, on)
	lab.Load.Mode = cfg.CompareMode
	lab.Load.Rate = cfg.CompareRate
	lab.Load.Duration = cfg.Step
	lab.Load.MaxRequests = int(cfg.CompareRate*cfg.Step.Seconds()) + 1
	lab.Load.RespSize = cfg.CompareResp
	st, rep, err := measure(ctx, lab, cfg.MinFidelity, log)
	r := CompareRun{Compare: on, Step: st}
	if err != nil {
		return r, err
	}
	if p := rep.Tcpcopy; p != nil && st.Requests > 0 {
		r.LinkRx = p.Metrics["tcpcopy_intercept_received_bytes_total"] / float64(st.Requests)
		r.LinkTx = p.Metrics["tcpcopy_intercept_sent_bytes_total"] / float64(st.Requests)
	}
	r.Responses = rep.Responses
	if on && r.Responses == nil && r.Pass {
		r.Pass, r.Why = false, "no verdicts: the comparison did not run"
	}
	if r.Pass {
		os.RemoveAll(r.Dir)
		r.Dir = ""
	}
	return r, nil
}

// compareHeader heads the rows of CompareRun.row.
const compareHeader = "run  compare  requests  fidelity  tcpcopy cpu-s/10k  intercept cpu-s/10k  link rx B/req  link tx B/req  verdicts"

// row is the compare phase's line of r, the i-th repetition.
func (r CompareRun) row(i int) string {
	onOff, verdicts := "off", "-"
	if r.Compare {
		onOff = "on"
		if rs := r.Responses; rs != nil {
			verdicts = verdictsText(rs)
		}
	}
	line := fmt.Sprintf("%-4d %-7s  %8d  %7.3f%%  %17.3f  %19.3f  %13.1f  %13.1f  %s",
		i, onOff, r.Requests, r.Fidelity, r.TcpcopyCPU10k, r.InterceptCPU10k, r.LinkRx, r.LinkTx, verdicts)
	if !r.Pass {
		line += "  " + verdict(false, r.Why, r.Dir)
	}
	return line
}

// verdictsText sums up verdicts: "10001 same" or "9990 same, 10 differ
// (length 10), 1 missing".
func verdictsText(rs *labrun.Responses) string {
	parts := []string{fmt.Sprintf("%d same", rs.Same)}
	if rs.Differs > 0 {
		var kinds []string
		for k, n := range rs.Kinds {
			kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		}
		slices.Sort(kinds)
		parts = append(parts, fmt.Sprintf("%d differ (%s)", rs.Differs, strings.Join(kinds, ", ")))
	}
	if rs.Missing > 0 {
		parts = append(parts, fmt.Sprintf("%d missing", rs.Missing))
	}
	if rs.NotCompared > 0 {
		var why []string
		for k, n := range rs.NotComparedWhy {
			why = append(why, fmt.Sprintf("%s %d", k, n))
		}
		slices.Sort(why)
		parts = append(parts, fmt.Sprintf("%d not compared (%s)", rs.NotCompared, strings.Join(why, ", ")))
	}
	return strings.Join(parts, ", ")
}

// benchLine is r's benchstat line, BenchmarkLabCompare/compare=on|off: the
// figures of a step and the link's bytes per request. Empty when the run
// did not pass (its figures do not compare).
func (r CompareRun) benchLine() string {
	if !r.Pass {
		return ""
	}
	onOff := "off"
	if r.Compare {
		onOff = "on"
	}
	return fmt.Sprintf("BenchmarkLabCompare/compare=%s 1 %.0f req/s %s %.1f link-rx-B/req %.1f link-tx-B/req",
		onOff, r.Rate, stepUnits(r.Step), r.LinkRx, r.LinkTx)
}

// summarizeCompare computes the medians, the ratio and the verdict.
func summarizeCompare(r *CompareResult) {
	side := func(on bool) CompareSide {
		var tc, ic, rx, tx []float64
		for _, run := range r.Runs {
			if run.Compare == on && run.Pass {
				tc = append(tc, run.TcpcopyCPU10k)
				ic = append(ic, run.InterceptCPU10k)
				rx = append(rx, run.LinkRx)
				tx = append(tx, run.LinkTx)
			}
		}
		return CompareSide{median(tc), median(ic), median(rx), median(tx)}
	}
	r.Off, r.On = side(false), side(true)
	var why []string
	failed, ran := 0, [2]int{}
	var verdicts []*labrun.Responses
	for _, run := range r.Runs {
		if run.Compare {
			ran[1]++
			verdicts = append(verdicts, run.Responses)
		} else {
			ran[0]++
		}
		if !run.Pass {
			failed++
			if failed == 1 {
				why = append(why, "a run failed: "+run.Why)
			}
		}
	}
	if ran[0] < r.Repeat || ran[1] < r.Repeat {
		why = append(why, fmt.Sprintf("only %d runs off and %d on of %d each ran", ran[0], ran[1], r.Repeat))
	}
	if r.Off.TcpcopyCPU10k > 0 {
		r.Ratio = r.On.TcpcopyCPU10k / r.Off.TcpcopyCPU10k
	}
	r.Verdicts = sumVerdicts(verdicts)
	r.Met = len(why) == 0 && r.Ratio > 0 && r.Ratio <= r.MaxRatio
	r.Why = strings.Join(why, "; ")
}

// sumVerdicts adds up verdicts; nil when there are none.
func sumVerdicts(all []*labrun.Responses) *labrun.Responses {
	var out *labrun.Responses
	for _, r := range all {
		if r == nil {
			continue
		}
		if out == nil {
			out = &labrun.Responses{Source: r.Source, Kinds: map[string]uint64{}}
		}
		out.Same += r.Same
		out.Differs += r.Differs
		out.Missing += r.Missing
		out.NotCompared += r.NotCompared
		for k, n := range r.Kinds {
			out.Kinds[k] += n
		}
		for k, n := range r.NotComparedWhy {
			if out.NotComparedWhy == nil {
				out.NotComparedWhy = map[string]uint64{}
			}
			out.NotComparedWhy[k] += n
		}
	}
	return out
}

// lines returns the summary lines: the medians off and on, their ratios,
// and the goal's verdict.
func (r CompareResult) lines() string {
	var b strings.Builder
	ratio := func(on, off float64) string {
		if off <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.2fx", on/off)
	}
	fmt.Fprintf(&b, "medians  %17s  %19s  %13s  %13s\n", "tcpcopy cpu-s/10k", "intercept cpu-s/10k", "link rx B/req", "link tx B/req")
	fmt.Fprintf(&b, "off      %17.3f  %19.3f  %13.1f  %13.1f\n", r.Off.TcpcopyCPU10k, r.Off.InterceptCPU10k, r.Off.LinkRx, r.Off.LinkTx)
	fmt.Fprintf(&b, "on       %17.3f  %19.3f  %13.1f  %13.1f\n", r.On.TcpcopyCPU10k, r.On.InterceptCPU10k, r.On.LinkRx, r.On.LinkTx)
	fmt.Fprintf(&b, "on/off   %17s  %19s  %13s  %13s\n", ratio(r.On.TcpcopyCPU10k, r.Off.TcpcopyCPU10k),
		ratio(r.On.InterceptCPU10k, r.Off.InterceptCPU10k), ratio(r.On.LinkRx, r.Off.LinkRx), ratio(r.On.LinkTx, r.Off.LinkTx))
	v := "met"
	if !r.Met {
		v = "MISSED"
	}
	fmt.Fprintf(&b, "goal compare: tcpcopy cpu-s/10k on/off %.2f (%+.0f%%), target <= %.2f: %s", r.Ratio, 100*(r.Ratio-1), r.MaxRatio, v)
	if r.Why != "" {
		fmt.Fprintf(&b, " (%s)", r.Why)
	}
	b.WriteString("\n")
	if rs := r.Verdicts; rs != nil {
		fmt.Fprintf(&b, "verdicts with the comparison on: %s (the target answers like online: all should be the same)\n", verdictsText(rs))
	}
	return b.String()
}

// runCompare runs the compare phase into res: the same load with the
// comparison off and on, cfg.CompareRepeat times each, interleaved,
// printing a row per run and the summary. It skips the runs that would end
// after deadline. The error joins the runs that could not be made.
func runCompare(ctx context.Context, cfg Config, res *Result, deadline time.Time, log *slog.Logger, w io.Writer) error {
	r := &CompareResult{Mode: cfg.CompareMode.String(), Rate: cfg.CompareRate, RespSize: cfg.CompareResp,
		Repeat: cfg.CompareRepeat, MaxRatio: CompareMaxRatio}
	res.Compare = r
	fmt.Fprintf(w, "compare: %s connections at %g/s for %s, GET and POST, bodies of %s, responses of %s; --compare-bytes 0 (off) and %d (on), %d times each, interleaved; "+
		"goal: the comparison costs tcpcopy at most %.0f%% more CPU\n",
		cfg.CompareMode, cfg.CompareRate, cfg.Step, sizesText(cfg.Lab.Load.BodySizes), sizesText([]int{cfg.CompareResp}),
		compare.DefaultBytes, cfg.CompareRepeat, 100*(CompareMaxRatio-1))
	fmt.Fprintln(w, compareHeader)
	runTime := cfg.Step + cfg.Lab.Tail + stepOverhead
	var errs []error
repeat:
	for i := range cfg.CompareRepeat {
		for _, on := range []bool{false, true} {
			if ctx.Err() != nil {
				errs = append(errs, ctx.Err())
				break repeat
			}
			if time.Now().Add(runTime).After(deadline) {
				fmt.Fprintf(w, "%-4d skipped: the budget of %s is spent\n", i+1, cfg.Budget)
				break repeat
			}
			run, err := runCompareStep(ctx, cfg, on, log)
			if err != nil {
				errs = append(errs, err)
				fmt.Fprintf(w, "%-4d %-7s  the run failed: %v\n", i+1, map[bool]string{false: "off", true: "on"}[on], err)
				break repeat
			}
			r.Runs = append(r.Runs, run)
			fmt.Fprintln(w, run.row(i+1))
		}
	}
	summarizeCompare(r)
	fmt.Fprint(w, r.lines())
	return errors.Join(errs...)
}
