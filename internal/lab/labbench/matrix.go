package labbench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
)

// Defaults of the client-stack matrix (PhaseMatrix).
const (
	DefaultMatrixRate     = 40
	DefaultMatrixDuration = 3 * time.Second
	// matrixPerConn is the requests per keep-alive connection of the
	// matrix's mixed load, as in the demo.
	matrixPerConn = 10
)

// MatrixBodySizes are the POST body sizes of the matrix's load: a body of
// a few segments and one of hundreds, either way across many segments for
// the small-MSS stacks.
var MatrixBodySizes = []int{20000, 1 << 20}

// phaseTail is the least tail (labrun.Config.Tail) of the matrix and loss
// runs: 1 MiB bodies and copies recovering from loss take longer to land
// than the climb's small requests.
const phaseTail = 2 * time.Second

// StackResult is the outcome of one client stack of the matrix: the live
// run, recorded with tcpdump, and the offline replay of the recording.
type StackResult struct {
	Stack string  `json:"stack"`
	Rate  float64 `json:"rate"` // asked, requests per second
	// Live compares the online and target logs of the live run.
	Live recorder.Comparison `json:"live"`
	// Offline compares the live run's online log with what the target
	// recorded during the replay; nil when there was no replay.
	Offline *recorder.Comparison `json:"offline,omitempty"`
	// TcpcopyCPU is tcpcopy's CPU seconds in the live run, and
	// OfflineTcpcopyCPU in the replay.
	TcpcopyCPU        float64 `json:"tcpcopy_cpu_s"`
	OfflineTcpcopyCPU float64 `json:"offline_tcpcopy_cpu_s"`
	// Pcap is tcpdump's account of the recording.
	Pcap *labrun.PcapReport `json:"pcap,omitempty"`
	// Replay is tcpcopy's "offline replay finished" log line, without
	// time, level and message.
	Replay map[string]any `json:"replay,omitempty"`
	// Met: every request recorded online reached the target once with a
	// byte-identical body, live and offline, and the programs stayed up.
	Met     bool    `json:"met"`
	Why     string  `json:"why,omitempty"` // why not Met
	Dir     string  `json:"dir,omitempty"` // logs, kept when not Met
	Elapsed float64 `json:"elapsed_s"`     // both runs, wall time
}

// stackHeader heads the rows of StackResult.row.
const stackHeader = "stack            requests  live fidelity  different  offline fidelity  different  tcpcopy cpu-s  verdict"

// row is the matrix table's line of r.
func (r StackResult) row() string {
	off, offDiff := "               -", "        -"
	if o := r.Offline; o != nil {
		off, offDiff = fmt.Sprintf("%15.3f%%", o.Fidelity), fmt.Sprintf("%9d", o.Mismatched)
	}
	return fmt.Sprintf("%-16s %8d  %12.3f%%  %9d  %s  %s  %13.2f  %s",
		r.Stack, r.Live.Online, r.Live.Fidelity, r.Live.Mismatched, off, offDiff, r.TcpcopyCPU, verdict(r.Met, r.Why, r.Dir))
}

// benchLine is r's benchstat line, BenchmarkLabClientStack/<stack>: the
// rate, the live and offline fidelity and body mismatches, tcpcopy's CPU
// seconds live and offline. Empty when the live run could not be made.
func (r StackResult) benchLine() string {
	if r.Live.Online == 0 {
		return ""
	}
	var b strings.Builder
	fmt.Fprintf(&b, "BenchmarkLabClientStack/%s 1 %g req/s %d requests %.3f fidelity-%% %d body-mismatches %.3f tcpcopy-cpu-s",
		r.Stack, r.Rate, r.Live.Online, r.Live.Fidelity, r.Live.Mismatched, r.TcpcopyCPU)
	if o := r.Offline; o != nil {
		fmt.Fprintf(&b, " %.3f offline-fidelity-%% %d offline-body-mismatches %.3f offline-tcpcopy-cpu-s",
			o.Fidelity, o.Mismatched, r.OfflineTcpcopyCPU)
	}
	return b.String()
}

// verdict is "met", or "MISSED (why; logs in dir)".
func verdict(met bool, why, dir string) string {
	if met {
		return "met"
	}
	var parts []string
	if why != "" {
		parts = append(parts, why)
	}
	if dir != "" {
		parts = append(parts, "logs in "+dir)
	}
	if len(parts) == 0 {
		return "MISSED"
	}
	return "MISSED (" + strings.Join(parts, "; ") + ")"
}

// copyWhy says how c falls short of every online request reaching the
// target exactly once with the same body; nothing when it does not. what
// names the run ("live", "offline").
func copyWhy(what string, c recorder.Comparison) []string {
	var why []string
	if c.Online == 0 {
		return []string{what + ": no request recorded online"}
	}
	if c.Matched < c.Online {
		why = append(why, fmt.Sprintf("%s: %d of %d requests byte-identical (%d different, %d missing)",
			what, c.Matched, c.Online, c.Mismatched, c.Missing))
	}
	if c.Duplicates > 0 {
		why = append(why, fmt.Sprintf("%s: %d duplicates", what, c.Duplicates))
	}
	if c.Unexpected > 0 {
		why = append(why, fmt.Sprintf("%s: %d unexpected requests", what, c.Unexpected))
	}
	return why
}

// daemonProblems are the problems of a report that concern tcpcopy or
// intercept (one died or failed), as opposed to the lab's own programs.
func daemonProblems(rep *labrun.Report) []string {
	var out []string
	for _, p := range rep.Problems {
		if strings.HasPrefix(p, "tcpcopy") || strings.HasPrefix(p, "intercept") {
			out = append(out, p)
		}
	}
	return out
}

// matrixLab is the live run's configuration for stack s.
func matrixLab(cfg Config, s labrun.ClientStack, dir string) labrun.Config {
	lab := cfg.Lab
	lab.Dir = filepath.Join(dir, "live")
	lab.Tail = max(lab.Tail, phaseTail)
	lab.Pcap = filepath.Join(dir, "client.pcap")
	l := &lab.Load
	l.Mode = load.Mixed
	l.Rate = cfg.MatrixRate
	l.Duration = cfg.MatrixDuration
	l.MaxRequests = int(cfg.MatrixRate*cfg.MatrixDuration.Seconds()) + 1
	l.Methods = []string{"GET", "POST"}
	l.BodySizes = MatrixBodySizes
	l.RequestsPerConn = matrixPerConn
	s.Apply(&lab)
	return lab
}

// runStack runs stack s live with a recording, then replays the recording
// in a fresh lab. The report of the live run is returned for printing; the
// error says why a run could not be made (also in Why). Its logs are
// deleted when the stack met the goal.
func runStack(ctx context.Context, cfg Config, s labrun.ClientStack, log *slog.Logger) (StackResult, *labrun.Report, error) {
	r := StackResult{Stack: s.Name, Rate: cfg.MatrixRate}
	start := time.Now()
	dir, err := os.MkdirTemp("", "tcpcopy-bench-"+s.Name+"-")
	if err != nil {
		r.Why = err.Error()
		return r, nil, err
	}
	r.Dir = dir
	lab := matrixLab(cfg, s, dir)
	rep, err := labrun.Run(ctx, lab, log)
	if err != nil {
		r.Why = "live run failed: " + err.Error()
		r.Elapsed = time.Since(start).Seconds()
		return r, rep, fmt.Errorf("labbench: client stack %s: %w (logs in %s)", s.Name, err, dir)
	}
	r.Live = rep.Compare
	if rep.Tcpcopy != nil {
		r.TcpcopyCPU = rep.Tcpcopy.CPUSeconds
	}
	r.Pcap = rep.Pcap
	why := copyWhy("live", r.Live)
	why = append(why, daemonProblems(rep)...)
	if p := rep.Pcap; p == nil {
		why = append(why, "no recording")
	} else if p.DroppedByKernel > 0 || p.DroppedByInterface > 0 {
		why = append(why, fmt.Sprintf("the recording is incomplete: tcpdump dropped %d packets", p.DroppedByKernel+p.DroppedByInterface))
	}
	var runErr error
	online, err := recorder.ReadLog(filepath.Join(rep.Dir, "online.jsonl"))
	if err == nil {
		var off replayed
		off, err = replay(ctx, cfg, s, lab.Pcap, filepath.Join(dir, "offline"), cfg.MatrixDuration)
		if err == nil {
			c := recorder.Compare(online, off.target)
			r.Offline = &c
			r.OfflineTcpcopyCPU, r.Replay = off.cpu, off.summary
			why = append(why, copyWhy("offline", c)...)
			if off.problem != "" {
				why = append(why, "offline: "+off.problem)
			}
		}
	}
	if err != nil {
		why = append(why, "offline replay failed: "+err.Error())
		runErr = fmt.Errorf("labbench: client stack %s: offline replay: %w (logs in %s)", s.Name, err, dir)
	}
	r.Why = strings.Join(why, "; ")
	r.Met = len(why) == 0
	if r.Met {
		os.RemoveAll(dir)
		r.Dir = ""
	}
	r.Elapsed = time.Since(start).Seconds()
	return r, rep, runErr
}

// replayed is what an offline replay produced.
type replayed struct {
	target  []recorder.Entry
	cpu     float64        // tcpcopy's CPU seconds
	summary map[string]any // its "offline replay finished" line
	problem string         // tcpcopy failed, or did not finish in time
}

// replay runs the real tcpcopy on the recording pcap (-i FILE) in a fresh
// lab with stack s's network (the target's MTU matters; the client's
// settings are in the recording), with intercept and the target recorder,
// waits for tcpcopy to finish by itself, and returns what the target
// recorded. dur is the recording's load duration: tcpcopy replays at the
// capture's pace. An error means the lab could not run the replay.
func replay(ctx context.Context, cfg Config, s labrun.ClientStack, pcap, dir string, dur time.Duration) (replayed, error) {
	var out replayed
	self := cfg.Lab.Self
	if self == "" {
		exe, err := os.Executable()
		if err != nil {
			return out, err
		}
		self = exe
	}
	topo, err := netlab.New(ctx, netlab.Options{
		Prefix: cfg.Lab.Prefix, Dir: dir, GRO: cfg.Lab.GRO,
		ClientSysctls: s.Sysctls, ClientMSS: s.MSS, ClientMTU: s.ClientMTU, TargetMTU: s.TargetMTU,
	})
	if err != nil {
		return out, err
	}
	defer topo.Close()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	targetLog := filepath.Join(dir, "target.jsonl")
	env := append([]string{labrun.ChildEnv + "=1"}, cfg.Lab.SelfEnv...)
	srv, err := topo.StartEnv(netlab.Target, env, self, labrun.ServeArgs(targetLog, fmt.Sprintf(":%d", labrun.TargetPort))...)
	if err != nil {
		return out, err
	}
	if err := topo.WaitListening(wctx, netlab.Target, labrun.TargetPort); err != nil {
		return out, fmt.Errorf("target recorder: %w", err)
	}
	vars := labrun.Vars(topo)
	iargs := cfg.Lab.InterceptArgs
	if iargs == nil {
		iargs = labrun.DefaultInterceptArgs
	}
	if iargs, err = labrun.Expand(iargs, vars); err != nil {
		return out, err
	}
	icpt, err := topo.Start(netlab.Assistant, cfg.Lab.InterceptBin, iargs...)
	if err != nil {
		return out, err
	}
	if err := topo.WaitListening(wctx, netlab.Assistant, labrun.InterceptPort); err != nil {
		return out, fmt.Errorf("intercept: %w: %s", err, icpt.StderrTail(512))
	}
	targs := cfg.Lab.TcpcopyArgs
	if targs == nil {
		targs = labrun.DefaultTcpcopyArgs
	}
	args, err := labrun.Expand(offlineArgs(targs, pcap), vars)
	if err != nil {
		return out, err
	}
	tc, err := topo.Start(netlab.Online, cfg.Lab.TcpcopyBin, args...)
	if err != nil {
		return out, err
	}
	// The replay takes the capture's time (the load and the tail), then
	// waits up to tcpcopy's 10 s of no progress for the sessions to end.
	limit := 2*dur + 30*time.Second
	select {
	case <-tc.Done():
		if err := tc.Err(); err != nil {
			out.problem = err.Error()
		}
	case <-time.After(limit):
		out.problem = fmt.Sprintf("tcpcopy did not finish the replay within %s", limit)
		_ = tc.Stop()
	case <-ctx.Done():
		return out, ctx.Err()
	}
	out.cpu = tc.Usage().CPU().Seconds()
	if err := icpt.Stop(); err != nil && out.problem == "" {
		out.problem = err.Error()
	}
	if err := srv.Stop(); err != nil {
		return out, fmt.Errorf("target recorder: %w", err)
	}
	if out.target, err = recorder.ReadLog(targetLog); err != nil {
		return out, err
	}
	out.summary, err = logLine(tc.StderrPath, "offline replay finished")
	if err != nil {
		return out, err
	}
	if out.summary == nil && out.problem == "" {
		out.problem = "no \"offline replay finished\" line in tcpcopy's log"
	}
	return out, nil
}

// offlineArgs turns tcpcopy's live command line args into the offline one
// for file: the value of -i becomes the file, and the log is JSON (for the
// summary line) without periodic statistics.
func offlineArgs(args []string, file string) []string {
	out := slices.Clone(args)
	found := false
	for i := 0; i+1 < len(out); i++ {
		if out[i] == "-i" {
			out[i+1] = file
			found = true
			i++
		}
	}
	if !found {
		out = append(out, "-i", file)
	}
	return append(out, "--log-format", "json", "--stats-interval", "0")
}

// logLine returns the attributes, without time, level and msg, of the last
// JSON log line in the file path whose message is msg; nil if none.
func logLine(path, msg string) (map[string]any, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var found map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
			found = m
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	for _, k := range []string{"time", "level", "msg"} {
		delete(found, k)
	}
	return found, nil
}

// summaryText writes a replay summary as sorted key=value pairs.
func summaryText(m map[string]any) string {
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	})
	parts := make([]string, len(keys))
	for i, k := range keys {
		parts[i] = fmt.Sprintf("%s=%v", k, m[k])
	}
	return strings.Join(parts, " ")
}

// stackDetails are the lines printed under a stack that missed the goal:
// the live run's report and the replay's outcome, indented.
func stackDetails(r StackResult, rep *labrun.Report) string {
	var b strings.Builder
	if rep != nil {
		writeIndented(&b, reportText(rep))
	}
	if o := r.Offline; o != nil {
		fmt.Fprintf(&b, "    offline    %d requests recorded at the target: %d matched, %d with a different body, %d missing, %d duplicates, %d unexpected\n",
			o.Target, o.Matched, o.Mismatched, o.Missing, o.Duplicates, o.Unexpected)
		if len(o.MissingIDs) > 0 {
			fmt.Fprintf(&b, "    offline    missing %s\n", strings.Join(o.MissingIDs, " "))
		}
		if len(o.MismatchedIDs) > 0 {
			fmt.Fprintf(&b, "    offline    different %s\n", strings.Join(o.MismatchedIDs, " "))
		}
	}
	if r.Replay != nil {
		fmt.Fprintf(&b, "    offline    tcpcopy: %s\n", summaryText(r.Replay))
	}
	return b.String()
}

// reportText is rep's text report (labrun.Report.WriteText).
func reportText(rep *labrun.Report) string {
	var b strings.Builder
	_ = rep.WriteText(&b)
	return b.String()
}

// writeIndented writes text to w with every line indented by four spaces.
func writeIndented(w io.Writer, text string) {
	for line := range strings.Lines(text) {
		fmt.Fprint(w, "    "+line)
	}
}

// runMatrix runs the client-stack matrix into res, printing a row per
// stack and, under a stack that missed the goal, the reports. It skips the
// stacks that would end after deadline. The error joins the runs that
// could not be made.
func runMatrix(ctx context.Context, cfg Config, res *Result, deadline time.Time, log *slog.Logger, w io.Writer) error {
	fmt.Fprintf(w, "client-stack matrix: %d stacks; mixed load (keep-alive connections of %d requests and short ones; GET and POST, bodies of %s) at %g/s for %s, "+
		"recorded with tcpdump, then replayed offline (tcpcopy -i FILE) in a fresh lab; goal: every request byte-identical at the target, live and offline\n",
		len(cfg.Stacks), matrixPerConn, sizesText(MatrixBodySizes), cfg.MatrixRate, cfg.MatrixDuration)
	fmt.Fprintln(w, stackHeader)
	// The live run (load, tail, the lab's start and stop), then the
	// replay: the capture's time, tcpcopy's settling second, the lab.
	cellTime := 2*cfg.MatrixDuration + max(cfg.Lab.Tail, phaseTail) + time.Second + 2*stepOverhead
	var errs []error
	for _, s := range cfg.Stacks {
		if ctx.Err() != nil {
			errs = append(errs, ctx.Err())
			break
		}
		if time.Now().Add(cellTime).After(deadline) {
			fmt.Fprintf(w, "%-16s skipped: the budget of %s is spent\n", s.Name, cfg.Budget)
			continue
		}
		r, rep, err := runStack(ctx, cfg, s, log)
		res.Stacks = append(res.Stacks, r)
		fmt.Fprintln(w, r.row())
		if !r.Met {
			fmt.Fprint(w, stackDetails(r, rep))
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// sizesText writes byte counts as "20000 B and 1 MiB".
func sizesText(sizes []int) string {
	parts := make([]string, len(sizes))
	for i, n := range sizes {
		switch {
		case n >= 1<<20 && n%(1<<20) == 0:
			parts[i] = fmt.Sprintf("%d MiB", n>>20)
		case n >= 1<<10 && n%(1<<10) == 0:
			parts[i] = fmt.Sprintf("%d KiB", n>>10)
		default:
			parts[i] = fmt.Sprintf("%d B", n)
		}
	}
	switch len(parts) {
	case 0:
		return "none"
	case 1:
		return parts[0]
	}
	return strings.Join(parts[:len(parts)-1], ", ") + " and " + parts[len(parts)-1]
}
