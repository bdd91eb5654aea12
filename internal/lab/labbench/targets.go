package labbench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strings"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
)

// Defaults of the target-server table (PhaseTargets).
const (
	DefaultTargetRate     = 100
	DefaultTargetDuration = 2 * time.Second
	// targetPipeline is the pipelining depth of the pipelined rows: 3,
	// so that a batch straddles nginx-kr100's 100th request (100 to 102)
	// and requests are in flight when it closes.
	targetPipeline = 3
	// targetTolerance is how far tcpcopy's own fidelity may be from the
	// share of the requests that reached the target: 0.1 %.
	targetTolerance = 0.001
)

// TargetBodySizes are the POST body sizes of the target-server rows: a
// small body, a few segments, and one of hundreds, which a reconnect has
// to send again whole.
var TargetBodySizes = []int{0, 1000, 20000, 300000}

// PipelinedTargets are the target servers that also get a row with a
// pipelining client (load.Options.Pipeline). close-some answers with
// Connection: close while pipelined requests are still unread, so the
// target's kernel resets the connection.
var PipelinedTargets = []string{"recorder", "nginx-kr100", "close-some"}

// TargetMode is how a target-server row's client sends: keep-alive,
// short or pipelined connections.
type TargetMode string

// The modes of the target-server table.
const (
	TargetKeepAlive TargetMode = "keepalive"
	TargetShort     TargetMode = "short"
	TargetPipelined TargetMode = "pipelined" // keep-alive, targetPipeline requests written before the first answer
)

// TargetResult is the outcome of one row of the target-server table: a
// target server (labrun.TargetServers) and a client mode.
type TargetResult struct {
	Server string     `json:"server"` // a labrun.TargetServers name
	Mode   TargetMode `json:"mode"`
	// Software and Limits describe the server (labrun.ServerReport).
	Software string `json:"software"`
	Limits   string `json:"limits"`
	// Requests were recorded online; Fidelity is the percentage of them
	// the target recorded byte-identical.
	Requests int     `json:"requests"`
	Fidelity float64 `json:"fidelity"`
	// Reported is tcpcopy's own fidelity (tcpcopy_fidelity_ratio, in
	// percent), read before it stopped; -1 when unknown.
	Reported float64 `json:"tcpcopy_fidelity"`
	// Reconnects are tcpcopy's new connections after the target closed
	// one (tcpcopy_reconnects_total), UncopiedRequests the requests no
	// session carried.
	Reconnects       uint64  `json:"reconnects"`
	UncopiedRequests uint64  `json:"uncopied_requests"`
	TcpcopyCPU       float64 `json:"tcpcopy_cpu_s"`
	// Met: every request reached the target once, byte-identical, tcpcopy
	// reported a fidelity within 0.1 % of that, no load request failed and
	// the programs stayed up.
	Met     bool    `json:"met"`
	Why     string  `json:"why,omitempty"`
	Dir     string  `json:"dir,omitempty"` // logs, kept when not Met
	Elapsed float64 `json:"elapsed_s"`
}

// targetHeader heads the rows of TargetResult.row.
const targetHeader = "server        mode        requests  at target  tcpcopy fidelity  reconnects  verdict"

// row is the target-server table's line of r.
func (r TargetResult) row() string {
	reported := "               -"
	if r.Reported >= 0 {
		reported = fmt.Sprintf("%15.3f%%", r.Reported)
	}
	return fmt.Sprintf("%-13s %-10s %9d  %8.3f%%  %s  %10d  %s",
		r.Server, r.Mode, r.Requests, r.Fidelity, reported, r.Reconnects, verdict(r.Met, r.Why, r.Dir))
}

// benchLine is r's benchstat line, BenchmarkLabTarget/<server>-<mode>.
// Empty when the run could not be made.
func (r TargetResult) benchLine() string {
	if r.Requests == 0 {
		return ""
	}
	return fmt.Sprintf("BenchmarkLabTarget/%s-%s 1 %d requests %.3f fidelity-%% %.3f tcpcopy-fidelity-%% %d reconnects %d uncopied-requests %.3f tcpcopy-cpu-s",
		r.Server, r.Mode, r.Requests, r.Fidelity, max(r.Reported, 0), r.Reconnects, r.UncopiedRequests, r.TcpcopyCPU)
}

// targetLab is the run of server s with mode m: GET and POST with
// TargetBodySizes at TargetRate for TargetDuration, made to meet the
// server's limits (labrun.TargetServer.ExerciseLoad).
func targetLab(cfg Config, s labrun.TargetServer, m TargetMode) labrun.Config {
	lab := cfg.Lab
	lab.TargetServer = s.Name
	if s.Listen.AcceptDelay > 0 {
		// A copy the busy server refused is retried for up to 1.75 s.
		lab.Tail = max(lab.Tail, phaseTail)
	}
	l := &lab.Load
	l.Mode = load.KeepAlive
	if m == TargetShort {
		l.Mode = load.Short
	}
	l.Rate, l.Duration = cfg.TargetRate, cfg.TargetDuration
	l.Methods, l.BodySizes = []string{"GET", "POST"}, TargetBodySizes
	l.Concurrency, l.RequestsPerConn = 4, 10
	s.ExerciseLoad(l)
	switch {
	case m == TargetShort:
	case s.PerConn > 0 || m == TargetPipelined:
		// Two long connections: at 150/s for 2 s, 150 requests each,
		// more than keepalive_requests 100.
		l.Concurrency, l.Rate = 2, max(cfg.TargetRate, 150)
		l.RequestsPerConn = max(l.RequestsPerConn, int(l.Rate*l.Duration.Seconds()/2)+1)
	case s.Think > 0:
		// 8 connections of a request every Think, two of them at least.
		l.Concurrency = 8
		l.Duration = max(l.Duration, 2*s.Think+s.Think/2)
	}
	if m == TargetPipelined {
		l.Pipeline = targetPipeline
	}
	l.MaxRequests = int(l.Rate*l.Duration.Seconds()) + 1
	return lab
}

// runTarget runs one row of the target-server table. Its logs are
// deleted when it met the goal.
func runTarget(ctx context.Context, cfg Config, s labrun.TargetServer, m TargetMode, log *slog.Logger) (TargetResult, *labrun.Report, error) {
	r := TargetResult{Server: s.Name, Mode: m, Reported: -1, Limits: s.Limits()}
	dir, err := os.MkdirTemp("", "tcpcopy-bench-target-")
	if err != nil {
		return r, nil, err
	}
	r.Dir = dir
	lab := targetLab(cfg, s, m)
	lab.Dir = dir
	start := time.Now()
	rep, err := labrun.Run(ctx, lab, log)
	r.Elapsed = time.Since(start).Seconds()
	if err != nil {
		r.Why = "the run failed: " + err.Error()
		return r, rep, fmt.Errorf("labbench: target server %s, %s: %w (logs in %s)", s.Name, m, err, dir)
	}
	r.Software = rep.Server.Software
	c := rep.Compare
	r.Requests, r.Fidelity = c.Online, c.Fidelity
	if rep.Tcpcopy != nil {
		r.TcpcopyCPU = rep.Tcpcopy.CPUSeconds
	}
	why := copyWhy("target", c)
	if ss := rep.Sessions; ss != nil && ss.Copy.Known {
		r.Reported = 100 * ss.Copy.Fidelity
		r.Reconnects, r.UncopiedRequests = ss.Copy.Reconnects, ss.Copy.UncopiedRequests
		if c.Online > 0 && math.Abs(ss.Copy.Fidelity-float64(c.Matched)/float64(c.Online)) > targetTolerance {
			why = append(why, fmt.Sprintf("tcpcopy reports %.3f%%, the target got %.3f%%", r.Reported, c.Fidelity))
		}
	} else {
		why = append(why, "no fidelity from tcpcopy's metrics")
	}
	if rep.Load.Failed > 0 {
		why = append(why, fmt.Sprintf("%d load requests failed (%s)", rep.Load.Failed, rep.Load.FirstErr))
	}
	why = append(why, daemonProblems(rep)...)
	if p := rep.Server.Proc; p != nil && p.Exit != "" {
		why = append(why, "nginx: "+p.Exit)
	}
	r.Met = len(why) == 0
	r.Why = strings.Join(why, "; ")
	if r.Met {
		os.RemoveAll(dir)
		r.Dir = ""
	}
	return r, rep, nil
}

// targetModes are the client modes of a target server's rows.
func targetModes(s labrun.TargetServer) []TargetMode {
	modes := []TargetMode{TargetKeepAlive, TargetShort}
	for _, name := range PipelinedTargets {
		if name == s.Name {
			modes = append(modes, TargetPipelined)
		}
	}
	return modes
}

// runTargets runs the target-server table into res, printing a row per
// server and mode and, under a row that missed, the run's report. Rows of
// servers that need nginx are skipped, and say so, when nginx is not
// installed. It skips the rows that would end after deadline. The error
// joins the runs that could not be made.
func runTargets(ctx context.Context, cfg Config, res *Result, deadline time.Time, log *slog.Logger, w io.Writer) error {
	fmt.Fprintf(w, "target servers: %d servers x keep-alive and short connections (and pipelined for %s); GET and POST, bodies of %s, %g requests/s for %s "+
		"(more requests per connection, pauses, for the servers' limits); goal: every request byte-identical at the target, tcpcopy's fidelity within 0.1%% of it\n",
		len(cfg.Targets), strings.Join(PipelinedTargets, ", "), sizesText(TargetBodySizes), cfg.TargetRate, cfg.TargetDuration)
	fmt.Fprintln(w, targetHeader)
	var errs []error
	for _, s := range cfg.Targets {
		if s.Nginx != nil {
			if _, err := labrun.FindNginx(); err != nil {
				fmt.Fprintf(w, "%-13s skipped: %v\n", s.Name, err)
				continue
			}
		}
		for _, m := range targetModes(s) {
			if ctx.Err() != nil {
				return errors.Join(append(errs, ctx.Err())...)
			}
			lab := targetLab(cfg, s, m)
			if time.Now().Add(lab.Load.Duration + lab.Tail + stepOverhead).After(deadline) {
				fmt.Fprintf(w, "%-13s %-10s skipped: the budget of %s is spent\n", s.Name, m, cfg.Budget)
				continue
			}
			r, rep, err := runTarget(ctx, cfg, s, m, log)
			res.Targets = append(res.Targets, r)
			fmt.Fprintln(w, r.row())
			if !r.Met && rep != nil {
				writeIndented(w, reportText(rep))
			}
			if err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}
