package labbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
)

// Defaults of the loss table (PhaseLoss).
const (
	DefaultLossRate     = 200
	DefaultLossDuration = 5 * time.Second
)

// LossGoal is the fidelity, in percent, the project expects under the
// random loss of l: 100 with at most 1 % on each path; 99.99 with at most
// 2 % on each path, or at most 5 % on one path and none on the other. It
// returns 0, no goal, for more loss than that.
func LossGoal(l labrun.LossLevel) float64 {
	switch {
	case l.Copy <= 1 && l.Response <= 1:
		return 100
	case l.Copy <= 2 && l.Response <= 2,
		l.Copy == 0 && l.Response <= 5,
		l.Response == 0 && l.Copy <= 5:
		return 99.99
	}
	return 0
}

// LossResult is the outcome of one cell of the loss table: a loss level
// and a connection mode. The embedded Step is the run, its Pass the
// verdict: fidelity at least MinFidelity, the programs up, the load at its
// rate.
type LossResult struct {
	Level        string  `json:"level"`
	LossCopy     float64 `json:"loss_copy"`     // percent of TCP frames, online to target
	LossResponse float64 `json:"loss_response"` // percent of TCP frames, target to assistant
	// MinFidelity is the goal: LossGoal, or Config.MinFidelity for a
	// level without one.
	MinFidelity float64 `json:"min_fidelity"`
	// DroppedCopy and DroppedResponse are the TCP frames the loss rules
	// dropped (labrun.Network).
	DroppedCopy     uint64 `json:"dropped_copy"`
	DroppedResponse uint64 `json:"dropped_response"`
	Step
}

// lossHeader heads the rows of LossResult.row.
const lossHeader = "level      mode       requests  fidelity  dropped copy  response  copy p99  tcpcopy cpu-s/10k  goal       verdict"

// row is the loss table's line of r.
func (r LossResult) row() string {
	return fmt.Sprintf("%-10s %-9s %9d  %7.3f%%  %12d  %8d  %5.1f ms  %17.2f  %-9s  %s",
		r.Level, r.Mode, r.Requests, r.Fidelity, r.DroppedCopy, r.DroppedResponse, r.LatencyP99, r.TcpcopyCPU10k,
		fmt.Sprintf(">= %g%%", r.MinFidelity), verdict(r.Pass, r.Why, r.Dir))
}

// benchLine is r's benchstat line, BenchmarkLabLoss/<level>-<mode>: the
// figures of a step and the frames dropped on each path. Empty when the
// run could not be made.
func (r LossResult) benchLine() string {
	if r.Requests == 0 {
		return ""
	}
	return fmt.Sprintf("BenchmarkLabLoss/%s-%s 1 %.0f req/s %s %d copy-frames-dropped %d response-frames-dropped",
		r.Level, r.Mode, r.Rate, stepUnits(r.Step), r.DroppedCopy, r.DroppedResponse)
}

// runLossCell runs one cell of the loss table. Its logs are deleted when
// it met the goal.
func runLossCell(ctx context.Context, cfg Config, l labrun.LossLevel, mode load.Mode, log *slog.Logger) (LossResult, *labrun.Report, error) {
	r := LossResult{Level: l.Name, LossCopy: l.Copy, LossResponse: l.Response, MinFidelity: LossGoal(l)}
	if r.MinFidelity == 0 {
		r.MinFidelity = cfg.MinFidelity
	}
	lab := cfg.Lab
	l.Apply(&lab)
	lab.Tail = max(lab.Tail, phaseTail)
	lab.Load.Rate = cfg.LossRate
	lab.Load.Duration = cfg.LossDuration
	lab.Load.Mode = mode
	lab.Load.MaxRequests = int(cfg.LossRate*cfg.LossDuration.Seconds()) + 1
	st, rep, err := measure(ctx, lab, r.MinFidelity, log)
	r.Step = st
	if err != nil {
		r.Mode, r.Rate, r.Pass, r.Why = mode.String(), cfg.LossRate, false, "the run failed: "+err.Error()
		return r, rep, err
	}
	r.DroppedCopy, r.DroppedResponse = rep.Network.DroppedCopy, rep.Network.DroppedResponse
	if r.Pass {
		os.RemoveAll(r.Dir)
		r.Dir = ""
	}
	return r, rep, nil
}

// lossModes are the connection modes of every loss level.
var lossModes = []load.Mode{load.Short, load.KeepAlive}

// runLoss runs the loss table into res, printing a row per cell and, under
// a cell that missed its goal, the run's report. It skips the cells that
// would end after deadline. The error joins the runs that could not be
// made.
func runLoss(ctx context.Context, cfg Config, res *Result, deadline time.Time, log *slog.Logger, w io.Writer) error {
	fmt.Fprintf(w, "loss table: %d levels x short and keep-alive connections; %g requests/s for %s, GET and POST, bodies of %s; "+
		"goals: 100%% at 1%% loss on each path, >= 99.99%% at 2%% on both and at 5%% on one\n",
		len(cfg.LossLevels), cfg.LossRate, cfg.LossDuration, sizesText(cfg.Lab.Load.BodySizes))
	fmt.Fprintln(w, lossHeader)
	cellTime := cfg.LossDuration + max(cfg.Lab.Tail, phaseTail) + stepOverhead
	var errs []error
	for _, l := range cfg.LossLevels {
		for _, mode := range lossModes {
			if ctx.Err() != nil {
				return errors.Join(append(errs, ctx.Err())...)
			}
			if time.Now().Add(cellTime).After(deadline) {
				fmt.Fprintf(w, "%-10s %-9s skipped: the budget of %s is spent\n", l.Name, mode, cfg.Budget)
				continue
			}
			r, rep, err := runLossCell(ctx, cfg, l, mode, log)
			res.Loss = append(res.Loss, r)
			fmt.Fprintln(w, r.row())
			if !r.Pass && rep != nil {
				writeIndented(w, reportText(rep))
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
