// Package labbench checks the project's performance goals, checks that
// every kind of client and lossy links are copied faithfully, and finds the
// highest request rate the lab copies with a given fidelity. A run is made
// of phases (Config.Phases), run in this order:
//
// The goals (PhaseGoals): each goal is a connection mode, a fixed rate and
// the most CPU seconds per 10,000 requests tcpcopy may use there; each goal
// runs Repeat times, the goals interleaved so that noise from the shared
// machine falls evenly on them, and is met when every repetition passes
// and the median CPU figure is within the target.
//
// The client-stack matrix (PhaseMatrix): for each of Config.Stacks
// (labrun.ClientStacks), a live run of a mixed load with 20 kB and 1 MiB
// bodies, recorded with tcpdump on the client side, then an offline
// replay of the recording by the real tcpcopy (-i FILE) in a fresh lab,
// compared with the live run's online log. A stack meets the goal when
// every request reached the target once, byte-identical, live and offline.
//
// The loss table (PhaseLoss): for each of Config.LossLevels
// (labrun.LossLevels), with short and with keep-alive connections, a live
// run with random loss on the copy and response paths, against the
// fidelity LossGoal sets.
//
// The target servers (PhaseTargets): for each of Config.Targets
// (labrun.TargetServers: nginx with keepalive_requests 100 or
// keepalive_timeout 1s, servers that answer Connection: close, one slow to
// accept), with keep-alive, short and, for some, pipelined connections,
// a live run that must bring every request to the target and a fidelity
// reported by tcpcopy within 0.1 % of that.
// The compare phase (PhaseCompare): the same load of keep-alive
// connections with tcpcopy's response comparison off (--compare-bytes 0)
// and on (the default), CompareRepeat times each, interleaved: tcpcopy's
// and intercept's CPU seconds per 10,000 requests and the bytes per
// request on their link, against the goal that the comparison costs
// tcpcopy at most CompareMaxRatio times the CPU.
//
// The climb (PhaseClimb): after measuring the raw-send ceiling, for each
// connection mode (short connections, keep-alive
// connections) it runs short lab experiments (package labrun) at rising
// rates, stops at the first rate that fails, narrows down between the last
// passing and the first failing rate, and reports the figures of the best
// passing step: the rate, CPU seconds per 10,000 requests of tcpcopy,
// intercept and the lab's own load client and servers (they share the
// machine), and peak memory.
//
// A step passes when the fidelity is at least MinFidelity, the load client
// reached at least 90 % of the asked rate (otherwise the lab, not tcpcopy,
// is the limit, and the step says so) and no request of the load failed.
//
// The figures go to a file in benchstat's format (one "BenchmarkLab..."
// line per step, per goal repetition, per mode's best, per client stack,
// per loss cell and per compare run, custom units), so that two runs
// compare with "benchstat old.txt new.txt", and every step, goal, stack,
// loss cell and the compare phase as a JSON line beside it.
package labbench

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/sendbench"
)

// Defaults for Config.
var (
	DefaultRates     = []float64{200, 400, 800, 1600, 3200, 6400}
	DefaultBodySizes = []int{0, 64, 512, 1460, 4096}
	// DefaultGoals are the project's performance goals: tcpcopy's CPU
	// seconds per 10,000 requests at a fixed rate of short and of
	// keep-alive connections.
	DefaultGoals = []Goal{
		{Mode: load.Short, Rate: 2000, MaxTcpcopyCPU10k: 0.75},
		{Mode: load.KeepAlive, Rate: 4000, MaxTcpcopyCPU10k: 0.20},
	}
)

// Defaults for Config.
const (
	DefaultStep        = 5 * time.Second
	DefaultMinFidelity = 99.9
	// DefaultBudget fits the default goals (10 steps of about Step + Tail
	// + 2-3 s), the client-stack matrix (10 stacks of about 10 s: a live
	// run and a replay), the loss table (8 cells of about 8 s), the
	// target servers (15 rows of about 5 s), the compare phase (6 steps)
	// and a climb of up to 7 steps per mode (6 rates and a refine).
	DefaultBudget = 13 * time.Minute
	// DefaultRepeat: the machine's noise moves single runs by 10 % and
	// more; the median of five is steadier than that of three.
	DefaultRepeat      = 5
	DefaultRefine      = 1
	DefaultConcurrency = 32
	DefaultPerConn     = 50
)

// Config describes a bench run. Zero values mean the defaults.
type Config struct {
	// Lab is the base configuration of every step: binaries, Self, GRO.
	// Load.Rate, Load.Duration, Load.Mode and Load.MaxRequests are set per
	// step; Tail defaults to 1 s.
	Lab labrun.Config
	// Modes are the connection modes measured, in order; short and
	// keep-alive by default.
	Modes []load.Mode
	// Rates are the request rates tried, rising; DefaultRates.
	Rates []float64
	// Step is the load duration of one step; DefaultStep.
	Step time.Duration
	// MinFidelity is the fidelity, in percent, a step needs to pass;
	// DefaultMinFidelity.
	MinFidelity float64
	// Refine is how many steps narrow down between the best passing and
	// the first failing rate; DefaultRefine. Negative means none.
	Refine int
	// Goals are checked before the climb; DefaultGoals when nil, none
	// when empty but not nil.
	Goals []Goal
	// Repeat is how many times each goal runs; DefaultRepeat.
	Repeat int
	// Budget bounds the whole run: no step starts that would end after it;
	// DefaultBudget.
	Budget time.Duration
	// OutDir receives the result files; none are written when empty.
	OutDir string

	// Phases are the phases run, always in the order of Phases whatever
	// the order here; all of them when empty.
	Phases []Phase
	// Stacks are the client stacks of the matrix; labrun.ClientStacks
	// when empty.
	Stacks []labrun.ClientStack
	// MatrixRate and MatrixDuration are the matrix's load, per stack;
	// DefaultMatrixRate and DefaultMatrixDuration.
	MatrixRate     float64
	MatrixDuration time.Duration
	// LossLevels are the rows of the loss table; labrun.LossLevels when
	// empty.
	LossLevels []labrun.LossLevel
	// LossRate and LossDuration are the load of each loss cell;
	// DefaultLossRate and DefaultLossDuration. The requests are Lab.Load's
	// (the climb's methods and body sizes).
	LossRate     float64
	LossDuration time.Duration
	// Targets are the target servers of PhaseTargets;
	// labrun.TargetServers when empty.
	Targets []labrun.TargetServer
	// TargetRate and TargetDuration are the base load of each target
	// row; DefaultTargetRate and DefaultTargetDuration (rows raise them
	// to meet their server's limits).
	TargetRate     float64
	TargetDuration time.Duration
	// CompareMode, CompareRate and CompareResp are the load of the
	// compare phase (Step long, Lab.Load's bodies and concurrency, response
	// bodies of CompareResp bytes): keep-alive connections (the zero
	// Mode), DefaultCompareRate, DefaultCompareResp. CompareRepeat is
	// how many times it runs with the comparison off and on;
	// DefaultCompareRepeat.
	CompareMode   load.Mode
	CompareRate   float64
	CompareResp   int
	CompareRepeat int
}

// has reports whether the run includes phase p.
func (c *Config) has(p Phase) bool { return slices.Contains(c.Phases, p) }

// Step is the outcome of one experiment.
type Step struct {
	Mode     string  `json:"mode"`
	Rate     float64 `json:"rate"`     // asked, requests per second
	Achieved float64 `json:"achieved"` // requests the load client made per second
	Requests int     `json:"requests"` // recorded at online
	Failed   int     `json:"failed"`   // load requests without a good answer
	Fidelity float64 `json:"fidelity"` // percent
	Pass     bool    `json:"pass"`
	Why      string  `json:"why,omitempty"` // why it did not pass
	// Goal: the step is a repetition of a goal, not part of the climb.
	Goal bool `json:"goal,omitempty"`
	// LabLimited: the step failed only because the load client did not
	// reach the rate or the online server failed requests, not because of
	// the copy.
	LabLimited bool `json:"lab_limited,omitempty"`

	// CPU seconds per 10,000 requests (recorded at online).
	TcpcopyCPU10k   float64 `json:"tcpcopy_cpu_s_per_10k"`
	InterceptCPU10k float64 `json:"intercept_cpu_s_per_10k"`
	LoadCPU10k      float64 `json:"loadgen_cpu_s_per_10k"`
	ServersCPU10k   float64 `json:"servers_cpu_s_per_10k"`
	TcpcopyRSS      int64   `json:"tcpcopy_peak_rss"` // bytes
	// Copy latency in milliseconds: a request's arrival at the online
	// server to its copy's arrival at the target.
	LatencyP50 float64 `json:"copy_latency_p50_ms"`
	// TcpcopyPPS is the packets tcpcopy sent to the target per second of
	// load, to compare with Result.Ceiling.
	TcpcopyPPS    float64 `json:"tcpcopy_sent_pps"`
	LatencyP99    float64 `json:"copy_latency_p99_ms"`
	InterceptRSS  int64   `json:"intercept_peak_rss"`
	NotReproduced uint64  `json:"sessions_not_reproduced"`
	Lost          int     `json:"lost,omitempty"`           // requests missing or different at the target
	LostExplained bool    `json:"lost_explained,omitempty"` // each on a session tcpcopy did not reproduce
	Elapsed       float64 `json:"elapsed_s"`                // wall time of the step
	Dir           string  `json:"dir,omitempty"`
}

// Result is a bench run.
type Result struct {
	Start time.Time `json:"start"`
	Steps []Step    `json:"steps"`
	// Best is, per mode, the passing step with the highest rate; absent
	// when no step of that mode passed.
	Best map[string]Step `json:"best"`
	// Limit says, per mode, what stopped the climb: "fidelity" (tcpcopy
	// copied less than MinFidelity above Best, or a daemon died), "lab"
	// (the load client or the online server could not go faster: Best is
	// a lower bound), "cap" (the highest rate tried passed: a lower bound
	// too), "budget" or "error".
	Limit map[string]string `json:"limit"`
	// Goals are the goals checked, in Config.Goals order.
	Goals []GoalResult `json:"goals,omitempty"`
	// Files are the result files written.
	Files []string `json:"files,omitempty"`
	// Ceiling is the raw-send ceiling measured before the steps: packets
	// per second a bare raw-socket sender gets through online's stack and
	// the veth to the target (internal/lab/sendbench); 0 if it failed.
	Ceiling float64 `json:"raw_send_ceiling_pps"`
	// CeilingBatch is the same with sendmmsg(2), ceilingBatch packets per
	// call, as tcpcopy's workers send.
	CeilingBatch float64 `json:"raw_send_ceiling_sendmmsg_pps"`
	// Stacks are the client stacks of the matrix that ran, in order.
	Stacks []StackResult `json:"stacks,omitempty"`
	// Loss are the cells of the loss table that ran, in order.
	Loss []LossResult `json:"loss,omitempty"`
	// Targets are the rows of the target-server table that ran, in order.
	Targets []TargetResult `json:"targets,omitempty"`
	// Compare is the compare phase's outcome, nil when it did not run.
	Compare *CompareResult `json:"compare,omitempty"`
}

// ceilingBatch is the batch size of the sendmmsg ceiling.
const ceilingBatch = 32

// ceiling measures the raw-send ceiling in a topology of its own, sending
// batch packets per system call.
func ceiling(ctx context.Context, cfg Config, batch int) (sendbench.Result, error) {
	var r sendbench.Result
	self := cfg.Lab.Self
	if self == "" {
		exe, err := os.Executable()
		if err != nil {
			return r, err
		}
		self = exe
	}
	topo, err := netlab.New(ctx, netlab.Options{Prefix: cfg.Lab.Prefix})
	if err != nil {
		return r, err
	}
	defer topo.Close()
	cmd := topo.Command(ctx, netlab.Online, self, "sendbench", "--src", topo.Client.V4.String(),
		"--dst", netip.AddrPortFrom(topo.Target.OnlineV4, 9).String(), "--duration", "1s", "--batch", fmt.Sprint(batch))
	cmd.Env = append(os.Environ(), labrun.ChildEnv+"=1")
	out, err := cmd.Output()
	if err != nil {
		return r, fmt.Errorf("sendbench: %w", err)
	}
	err = json.Unmarshal(out, &r)
	return r, err
}

func (c *Config) setDefaults() {
	if len(c.Modes) == 0 {
		c.Modes = []load.Mode{load.Short, load.KeepAlive}
	}
	if len(c.Rates) == 0 {
		c.Rates = DefaultRates
	}
	if c.Step <= 0 {
		c.Step = DefaultStep
	}
	if c.MinFidelity <= 0 {
		c.MinFidelity = DefaultMinFidelity
	}
	if c.Refine == 0 {
		c.Refine = DefaultRefine
	}
	if c.Goals == nil {
		c.Goals = DefaultGoals
	}
	if c.Repeat <= 0 {
		c.Repeat = DefaultRepeat
	}
	if c.Budget <= 0 {
		c.Budget = DefaultBudget
	}
	if c.Lab.Tail <= 0 {
		c.Lab.Tail = time.Second
	}
	if len(c.Phases) == 0 {
		c.Phases = Phases
	}
	if len(c.Stacks) == 0 {
		c.Stacks = labrun.ClientStacks
	}
	if c.MatrixRate <= 0 {
		c.MatrixRate = DefaultMatrixRate
	}
	if c.MatrixDuration <= 0 {
		c.MatrixDuration = DefaultMatrixDuration
	}
	if len(c.LossLevels) == 0 {
		c.LossLevels = labrun.LossLevels
	}
	if c.LossRate <= 0 {
		c.LossRate = DefaultLossRate
	}
	if c.LossDuration <= 0 {
		c.LossDuration = DefaultLossDuration
	}
	if len(c.Targets) == 0 {
		c.Targets = labrun.TargetServers
	}
	if c.TargetRate <= 0 {
		c.TargetRate = DefaultTargetRate
	}
	if c.TargetDuration <= 0 {
		c.TargetDuration = DefaultTargetDuration
	}
	if c.CompareRate <= 0 {
		c.CompareRate = DefaultCompareRate
	}
	if c.CompareResp <= 0 {
		c.CompareResp = DefaultCompareResp
	}
	if c.CompareRepeat <= 0 {
		c.CompareRepeat = DefaultCompareRepeat
	}
	l := &c.Lab.Load
	if l.Concurrency <= 0 {
		l.Concurrency = DefaultConcurrency
	}
	if l.RequestsPerConn <= 0 {
		l.RequestsPerConn = DefaultPerConn
	}
	if len(l.BodySizes) == 0 {
		l.BodySizes = DefaultBodySizes
	}
}

// stepOverhead is the time a step takes beyond its load and tail:
// building and tearing down the lab, starting and stopping programs.
const stepOverhead = 2 * time.Second

// Run runs the bench's phases (Config.Phases) in order: the goals, the
// client-stack matrix, the loss table and the climb, printing a line per
// step, goal, stack and loss cell to w. It stops early, with what it has,
// when ctx ends or the budget is spent. The error says which runs could
// not be made; goals, stacks and cells that missed their targets are not
// errors, only results.
func Run(ctx context.Context, cfg Config, log *slog.Logger, w io.Writer) (*Result, error) {
	cfg.setDefaults()
	if cfg.Lab.TcpcopyBin == "" || cfg.Lab.InterceptBin == "" {
		return nil, errors.New("labbench: needs the tcpcopy and intercept binaries")
	}
	res := &Result{Start: time.Now(), Best: map[string]Step{}, Limit: map[string]string{}}
	deadline := res.Start.Add(cfg.Budget)
	stepTime := cfg.Step + cfg.Lab.Tail + stepOverhead
	fmt.Fprintf(w, "bench: phases %s; rates %v/s, %s per step, pass at fidelity >= %.1f%%, budget %s\n",
		FormatPhases(cfg.Phases), cfg.Rates, cfg.Step, cfg.MinFidelity, cfg.Budget)
	if cfg.has(PhaseClimb) {
		if c, err := ceiling(ctx, cfg, 1); err != nil {
			fmt.Fprintf(w, "raw-send ceiling: not measured: %v\n", err)
		} else {
			res.Ceiling = c.PPS
			fmt.Fprintf(w, "raw-send ceiling: %.0f packets/s (%d packets of 140 bytes in %s, %d refused)\n",
				c.PPS, c.Packets, c.Elapsed.Round(time.Millisecond), c.Errors)
		}
		if c, err := ceiling(ctx, cfg, ceilingBatch); err != nil {
			fmt.Fprintf(w, "raw-send ceiling with sendmmsg: not measured: %v\n", err)
		} else {
			res.CeilingBatch = c.PPS
			fmt.Fprintf(w, "raw-send ceiling with sendmmsg, %d per call: %.0f packets/s (%d refused)\n", ceilingBatch, c.PPS, c.Errors)
		}
	}

	var runErr error
	try := func(mode load.Mode, rate float64, goal bool) (Step, bool) {
		if time.Now().Add(stepTime).After(deadline) {
			fmt.Fprintf(w, "%-9s %6.0f/s  skipped: the budget of %s is spent\n", mode, rate, cfg.Budget)
			return Step{}, false
		}
		st, err := runStep(ctx, cfg, mode, rate, goal, log)
		if err != nil {
			runErr = err
			return st, false
		}
		st.Goal = goal
		res.Steps = append(res.Steps, st)
		fmt.Fprintln(w, st.line())
		return st, true
	}

	// The goals first, each repetition going through all of them in turn,
	// so that the shared machine's noise falls evenly on them.
	before := false // a phase ran before the climb
	if cfg.has(PhaseGoals) && len(cfg.Goals) > 0 {
		before = true
		fmt.Fprintf(w, "goals (mode:rate:max tcpcopy cpu-s/10k): %s, repeat %d, interleaved\n", FormatGoals(cfg.Goals), cfg.Repeat)
		runs := make([][]Step, len(cfg.Goals))
	repeat:
		for range cfg.Repeat {
			for i, g := range cfg.Goals {
				st, ok := try(g.Mode, g.Rate, true)
				if !ok {
					break repeat // the budget is spent, or a step failed to run
				}
				runs[i] = append(runs[i], st)
			}
		}
		for i, g := range cfg.Goals {
			gr := summarize(g, runs[i], cfg.Repeat)
			res.Goals = append(res.Goals, gr)
			fmt.Fprint(w, gr.lines())
		}
	}

	// The matrix, the loss table and the compare phase: a run that could
	// not be made there is reported in its row and the phases go on; their
	// errors are returned at the end, without stopping the climb.
	var cellErrs error
	for _, ph := range []struct {
		p   Phase
		run func(context.Context, Config, *Result, time.Time, *slog.Logger, io.Writer) error
	}{{PhaseMatrix, runMatrix}, {PhaseLoss, runLoss}, {PhaseTargets, runTargets}, {PhaseCompare, runCompare}} {
		if !cfg.has(ph.p) || ctx.Err() != nil {
			continue
		}
		before = true
		if runErr != nil {
			fmt.Fprintf(w, "%s: skipped: a step failed to run\n", ph.p)
			continue
		}
		cellErrs = errors.Join(cellErrs, ph.run(ctx, cfg, res, deadline, log, w))
	}

	if cfg.has(PhaseClimb) {
		if before {
			fmt.Fprintf(w, "climb: rates %v/s\n", cfg.Rates)
		}
		climb(ctx, cfg, res, try, &runErr)
		for _, mode := range cfg.Modes {
			limit := limitText[res.Limit[mode.String()]]
			if b, ok := res.Best[mode.String()]; ok {
				fmt.Fprintf(w, "best %-9s %6.0f req/s at %.2f%% (%s): cpu-s per 10k requests tcpcopy %.2f, intercept %.2f, loadgen %.2f, servers %.2f; peak rss tcpcopy %.1f MiB, intercept %.1f MiB; copy latency p50 %.1f ms, p99 %.1f ms\n",
					mode, b.Rate, b.Fidelity, limit, b.TcpcopyCPU10k, b.InterceptCPU10k, b.LoadCPU10k, b.ServersCPU10k,
					mib(b.TcpcopyRSS), mib(b.InterceptRSS), b.LatencyP50, b.LatencyP99)
				if res.Ceiling > 0 && b.TcpcopyPPS > 0 {
					fmt.Fprintf(w, "     %-9s tcpcopy sent %.0f packets/s: %.1f%% of the raw-send ceiling\n", mode, b.TcpcopyPPS, 100*b.TcpcopyPPS/res.Ceiling)
				}
			} else {
				fmt.Fprintf(w, "best %-9s none: no step passed (%s)\n", mode, limit)
			}
		}
	}
	if cfg.OutDir != "" && (len(res.Steps) > 0 || len(res.Stacks) > 0 || len(res.Loss) > 0 || len(res.Targets) > 0 || res.Compare != nil) {
		files, err := res.write(cfg)
		res.Files = files
		for _, f := range files {
			fmt.Fprintf(w, "wrote %s\n", f)
		}
		if err != nil {
			runErr = errors.Join(runErr, err)
		}
	}
	return res, errors.Join(runErr, cellErrs)
}

// climb runs the climb of each mode through try, setting res.Limit and
// res.Best; *runErr is set when a step could not be run.
func climb(ctx context.Context, cfg Config, res *Result, try func(load.Mode, float64, bool) (Step, bool), runErr *error) {
	for _, mode := range cfg.Modes {
		if *runErr != nil || ctx.Err() != nil { // a step failed to run: no climb
			res.Limit[mode.String()] = "error"
			continue
		}
		var best, fail *Step
		limit := "cap"
		for _, rate := range cfg.Rates {
			st, ok := try(mode, rate, false)
			if !ok {
				limit = "budget"
				if *runErr != nil {
					res.Limit[mode.String()] = "error"
					return
				}
				break
			}
			if !st.Pass {
				fail = &st
				break
			}
			best = &st
		}
		for range max(cfg.Refine, 0) {
			if fail == nil || *runErr != nil {
				break
			}
			lo := cfg.Rates[0] / 2
			if best != nil {
				lo = best.Rate
			}
			rate := math.Round(math.Sqrt(lo*fail.Rate)/10) * 10 // geometric middle
			if rate <= lo || rate >= fail.Rate {
				break
			}
			st, ok := try(mode, rate, false)
			if !ok {
				break
			}
			if st.Pass {
				best = &st
			} else {
				fail = &st
			}
		}
		if fail != nil {
			limit = "fidelity"
			if fail.LabLimited {
				limit = "lab"
			}
		}
		if *runErr != nil {
			limit = "error"
		}
		res.Limit[mode.String()] = limit
		if best != nil {
			res.Best[mode.String()] = *best
		}
		if *runErr != nil {
			return
		}
	}
}

var limitText = map[string]string{
	"fidelity": "above it fidelity drops",
	"lab":      "the lab's own load client or server is the limit: tcpcopy may do more",
	"cap":      "the highest rate tried: tcpcopy may do more",
	"budget":   "the time budget ran out",
	"error":    "a step failed to run",
}

func mib(b int64) float64 { return float64(b) / (1 << 20) }

// Goal is a performance goal: at Rate requests per second of Mode
// connections, tcpcopy uses at most MaxTcpcopyCPU10k CPU seconds per
// 10,000 requests.
type Goal struct {
	Mode             load.Mode
	Rate             float64
	MaxTcpcopyCPU10k float64
}

// FormatGoals formats goals as ParseGoals reads them:
// "short:2000:0.75,keepalive:4000:0.2".
func FormatGoals(goals []Goal) string {
	parts := make([]string, len(goals))
	for i, g := range goals {
		parts[i] = g.Mode.String() + ":" + strconv.FormatFloat(g.Rate, 'f', -1, 64) + ":" +
			strconv.FormatFloat(g.MaxTcpcopyCPU10k, 'f', -1, 64)
	}
	return strings.Join(parts, ",")
}

// ParseGoals parses a comma-separated list of mode:rate:max goals, max
// being tcpcopy's CPU seconds per 10,000 requests. "" and "none" give no
// goals: an empty slice that is not nil, so that Config does not take the
// defaults.
func ParseGoals(s string) ([]Goal, error) {
	goals := []Goal{}
	if s = strings.TrimSpace(s); s == "" || s == "none" {
		return goals, nil
	}
	for item := range strings.SplitSeq(s, ",") {
		item = strings.TrimSpace(item)
		f := strings.Split(item, ":")
		if len(f) != 3 {
			return nil, fmt.Errorf("goal %q: want mode:rate:max-cpu-s-per-10k, e.g. short:2000:0.75", item)
		}
		mode, err := load.ParseMode(f[0])
		if err != nil {
			return nil, fmt.Errorf("goal %q: %w", item, err)
		}
		rate, err := strconv.ParseFloat(f[1], 64)
		if err != nil || !(rate > 0) || math.IsInf(rate, 0) {
			return nil, fmt.Errorf("goal %q: bad rate %q: want requests per second above 0", item, f[1])
		}
		maxCPU, err := strconv.ParseFloat(f[2], 64)
		if err != nil || !(maxCPU > 0) || math.IsInf(maxCPU, 0) {
			return nil, fmt.Errorf("goal %q: bad maximum %q: want tcpcopy's cpu seconds per 10,000 requests, above 0", item, f[2])
		}
		g := Goal{Mode: mode, Rate: rate, MaxTcpcopyCPU10k: maxCPU}
		if slices.ContainsFunc(goals, func(o Goal) bool { return o.Mode == g.Mode && o.Rate == g.Rate }) {
			return nil, fmt.Errorf("goal %q: %s at %v/s given twice", item, mode, rate)
		}
		goals = append(goals, g)
	}
	return goals, nil
}

// GoalResult is a goal's outcome over its repetitions.
type GoalResult struct {
	Goal Goal `json:"-"` // written flat beside these fields by Result.write
	// TcpcopyCPU10k holds tcpcopy's CPU seconds per 10,000 requests of
	// each repetition that ran, in order.
	TcpcopyCPU10k []float64 `json:"tcpcopy_cpu_s_per_10k"`
	Median        float64   `json:"tcpcopy_cpu_s_per_10k_median"`
	// Spread is (max - min) / 2 of TcpcopyCPU10k, in percent of Median.
	Spread float64 `json:"spread_pct"`
	// Medians over the repetitions of intercept's CPU seconds per 10,000
	// requests and of the copy latency, in milliseconds.
	InterceptCPU10k float64 `json:"intercept_cpu_s_per_10k_median"`
	LatencyP50      float64 `json:"copy_latency_p50_ms_median"`
	LatencyP99      float64 `json:"copy_latency_p99_ms_median"`
	Repeat          int     `json:"repeat"` // repetitions asked
	// Met: all Repeat repetitions ran and passed and Median is at most
	// Goal.MaxTcpcopyCPU10k.
	Met bool `json:"met"`
	// Why says why the goal is not met besides the median: a failed
	// repetition, or repetitions that did not run.
	Why string `json:"why,omitempty"`
}

// summarize sums up the repetitions of g that ran, out of repeat asked.
func summarize(g Goal, runs []Step, repeat int) GoalResult {
	r := GoalResult{Goal: g, Repeat: repeat}
	var icpu, p50, p99 []float64
	failed := 0
	for _, s := range runs {
		r.TcpcopyCPU10k = append(r.TcpcopyCPU10k, s.TcpcopyCPU10k)
		icpu = append(icpu, s.InterceptCPU10k)
		p50 = append(p50, s.LatencyP50)
		p99 = append(p99, s.LatencyP99)
		if !s.Pass {
			failed++
			if failed == 1 {
				r.Why = s.Why
			}
		}
	}
	switch {
	case failed == 1:
		r.Why = "a step failed: " + r.Why
	case failed > 1:
		r.Why = fmt.Sprintf("%d steps failed, the first: %s", failed, r.Why)
	case len(runs) == 0:
		r.Why = "no repetition ran"
	case len(runs) < repeat:
		r.Why = fmt.Sprintf("only %d of %d repetitions ran", len(runs), repeat)
	}
	r.Median = median(r.TcpcopyCPU10k)
	if r.Median > 0 {
		r.Spread = 100 * (slices.Max(r.TcpcopyCPU10k) - slices.Min(r.TcpcopyCPU10k)) / 2 / r.Median
	}
	r.InterceptCPU10k, r.LatencyP50, r.LatencyP99 = median(icpu), median(p50), median(p99)
	r.Met = r.Why == "" && r.Median <= g.MaxTcpcopyCPU10k
	return r
}

// median returns the median of v, the mean of the middle two for an even
// count, 0 for none. It does not modify v.
func median(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := slices.Sorted(slices.Values(v))
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// lines returns the goal's summary: a verdict line and, if a repetition
// ran, a line of the other figures.
func (r GoalResult) lines() string {
	var b strings.Builder
	g := r.Goal
	fmt.Fprintf(&b, "goal %-9s %6.0f/s: ", g.Mode, g.Rate)
	if len(r.TcpcopyCPU10k) > 0 {
		b.WriteString("tcpcopy cpu-s/10k")
		for _, v := range r.TcpcopyCPU10k {
			fmt.Fprintf(&b, " %.2f", v)
		}
		fmt.Fprintf(&b, " (median %.2f, spread ±%.1f%%), ", r.Median, r.Spread)
	}
	verdict := "met"
	if !r.Met {
		verdict = "MISSED"
	}
	fmt.Fprintf(&b, "target <= %.2f: %s", g.MaxTcpcopyCPU10k, verdict)
	if r.Why != "" {
		fmt.Fprintf(&b, " (%s)", r.Why)
	}
	b.WriteString("\n")
	if len(r.TcpcopyCPU10k) > 0 {
		fmt.Fprintf(&b, "     %-9s %6.0f/s: medians: intercept cpu-s/10k %.2f, copy latency p50 %.1f ms, p99 %.1f ms\n",
			g.Mode, g.Rate, r.InterceptCPU10k, r.LatencyP50, r.LatencyP99)
	}
	return b.String()
}

func (s Step) line() string {
	verdict := "pass"
	if !s.Pass {
		verdict = "FAIL: " + s.Why + " (logs in " + s.Dir + ")"
	}
	if s.Lost > 0 {
		how := "on sessions tcpcopy counted as not reproduced"
		if !s.LostExplained {
			how = "NOT explained by tcpcopy's session outcomes"
		}
		verdict += fmt.Sprintf(" [%d lost, %s]", s.Lost, how)
	}
	return fmt.Sprintf("%-9s %6.0f/s  achieved %7.1f/s  %5d requests  fidelity %7.3f%%  cpu-s/10k tcpcopy %5.2f intercept %5.2f loadgen %5.2f servers %5.2f  rss %5.1f/%5.1f MiB  copy latency p50 %.1f p99 %.1f ms  %s",
		s.Mode, s.Rate, s.Achieved, s.Requests, s.Fidelity, s.TcpcopyCPU10k, s.InterceptCPU10k, s.LoadCPU10k, s.ServersCPU10k,
		mib(s.TcpcopyRSS), mib(s.InterceptRSS), s.LatencyP50, s.LatencyP99, verdict)
}

// runStep runs one experiment of the goals or the climb. Its logs are
// deleted when it passes.
// runStep runs one step of the goals (goal: the copy alone, the response
// comparison off, which the compare phase prices) or of the climb (the
// defaults, comparison on).
func runStep(ctx context.Context, cfg Config, mode load.Mode, rate float64, goal bool, log *slog.Logger) (Step, error) {
	lab := cfg.Lab
	if goal {
		lab.TcpcopyArgs = compareArgs(cfg.Lab.TcpcopyArgs, false)
	}
	lab.Load.Rate = rate
	lab.Load.Duration = cfg.Step
	lab.Load.Mode = mode
	lab.Load.MaxRequests = int(rate*cfg.Step.Seconds()) + 1
	st, _, err := measure(ctx, lab, cfg.MinFidelity, log)
	if err == nil && st.Pass {
		os.RemoveAll(st.Dir)
		st.Dir = ""
	}
	return st, err
}

// measure runs lab, whose Load has its rate, duration, mode and request
// bound set, in a new directory (Step.Dir, left for the caller to delete),
// and sums it up as a Step that passes at minFidelity percent. It returns
// the run's report too, nil when the lab could not be built.
func measure(ctx context.Context, lab labrun.Config, minFidelity float64, log *slog.Logger) (Step, *labrun.Report, error) {
	mode, rate := lab.Load.Mode, lab.Load.Rate
	st := Step{Mode: mode.String(), Rate: rate}
	dir, err := os.MkdirTemp("", "tcpcopy-bench-")
	if err != nil {
		return st, nil, err
	}
	lab.Dir = dir
	st.Dir = dir
	start := time.Now()
	rep, err := labrun.Run(ctx, lab, log)
	st.Elapsed = time.Since(start).Seconds()
	if err != nil {
		return st, rep, fmt.Errorf("labbench: %s at %.0f/s: %w (logs in %s)", mode, rate, err, dir)
	}
	l := rep.Load
	if l.Elapsed > 0 {
		st.Achieved = float64(l.Requests) / l.Elapsed.Seconds()
	}
	st.Requests = rep.Compare.Online
	st.Failed = l.Failed
	st.Fidelity = rep.Compare.Fidelity
	st.LatencyP50 = rep.Compare.LatencyP50.Seconds() * 1000
	st.LatencyP99 = rep.Compare.LatencyP99.Seconds() * 1000
	per10k := func(p *labrun.ProcReport) float64 {
		if p == nil || st.Requests == 0 {
			return 0
		}
		return p.CPUSeconds * 10000 / float64(st.Requests)
	}
	st.TcpcopyCPU10k = per10k(rep.Tcpcopy)
	if d := lab.Load.Duration; rep.Tcpcopy != nil && d > 0 {
		st.TcpcopyPPS = rep.Tcpcopy.Metrics["tcpcopy_packets_sent_total"] / d.Seconds()
	}
	st.InterceptCPU10k = per10k(rep.Intercept)
	st.LoadCPU10k = per10k(rep.LoadClient)
	st.ServersCPU10k = per10k(rep.Recorders)
	if rep.Tcpcopy != nil {
		st.TcpcopyRSS = rep.Tcpcopy.PeakRSS
	}
	if rep.Intercept != nil {
		st.InterceptRSS = rep.Intercept.PeakRSS
	}
	if rep.Sessions != nil {
		st.NotReproduced = rep.Sessions.NotReproduced()
	}
	if rep.Lost != nil {
		st.Lost, st.LostExplained = rep.Lost.Requests, rep.Lost.Explained
	}
	var why []string
	copyFailed := false
	// A little slack: 9999 of 10000 is 99.99 % in decimal, not in binary.
	if st.Fidelity < minFidelity-1e-9 {
		why = append(why, fmt.Sprintf("fidelity %.3f%% < %g%%", st.Fidelity, minFidelity))
		copyFailed = true
	}
	if p := daemonProblems(rep); len(p) > 0 {
		why = append(why, p...)
		copyFailed = true
	}
	if st.Achieved < 0.9*rate {
		why = append(why, fmt.Sprintf("the load client reached only %.0f/s", st.Achieved))
	}
	if st.Failed > 0 {
		why = append(why, fmt.Sprintf("%d load requests failed (%s): the online server is overloaded", st.Failed, l.FirstErr))
	}
	st.Pass = len(why) == 0
	st.LabLimited = !st.Pass && !copyFailed
	st.Why = strings.Join(why, "; ")
	return st, rep, nil
}

// write writes the benchstat text and the JSON lines into cfg.OutDir,
// named after the start time.
func (r *Result) write(cfg Config) ([]string, error) {
	if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
		return nil, err
	}
	base := filepath.Join(cfg.OutDir, "lab-"+r.Start.UTC().Format("20060102T150405Z"))
	var b strings.Builder
	for _, kv := range environment() {
		fmt.Fprintf(&b, "%s: %s\n", kv[0], kv[1])
	}
	fmt.Fprintf(&b, "step: %s\nmin-fidelity: %.1f\nbodies: %v\nconcurrency: %d\n",
		cfg.Step, cfg.MinFidelity, cfg.Lab.Load.BodySizes, cfg.Lab.Load.Concurrency)
	if len(r.Stacks) > 0 {
		fmt.Fprintf(&b, "matrix-load: mixed %g/s for %s, bodies %v\n", cfg.MatrixRate, cfg.MatrixDuration, MatrixBodySizes)
	}
	if len(r.Loss) > 0 {
		fmt.Fprintf(&b, "loss-load: %g/s for %s\n", cfg.LossRate, cfg.LossDuration)
	}
	if len(r.Targets) > 0 {
		fmt.Fprintf(&b, "target-load: %g/s for %s, bodies %v\n", cfg.TargetRate, cfg.TargetDuration, TargetBodySizes)
	}
	if c := r.Compare; c != nil {
		fmt.Fprintf(&b, "compare-load: %s %g/s for %s, responses of %d B\n", c.Mode, c.Rate, cfg.Step, c.RespSize)
	}
	bench := func(name string, s Step, rateUnit string) {
		fmt.Fprintf(&b, "%s 1 %.0f %s %s\n", name, s.Rate, rateUnit, stepUnits(s))
	}
	if cfg.has(PhaseClimb) {
		for _, mode := range cfg.Modes {
			fmt.Fprintf(&b, "limit-%s: %s\n", mode, r.Limit[mode.String()])
		}
	}
	if r.Ceiling > 0 {
		fmt.Fprintf(&b, "BenchmarkLabRawSendCeiling 1 %.0f packets/s\n", r.Ceiling)
	}
	if r.CeilingBatch > 0 {
		fmt.Fprintf(&b, "BenchmarkLabRawSendCeiling/sendmmsg 1 %.0f packets/s\n", r.CeilingBatch)
	}
	for _, mode := range cfg.Modes {
		if s, ok := r.Best[mode.String()]; ok {
			bench("BenchmarkLabMaxRate/mode="+mode.String(), s, "max-req/s")
		}
	}
	for _, s := range r.Steps {
		if s.Pass && !s.Goal {
			bench(fmt.Sprintf("BenchmarkLabStep/mode=%s/rate=%.0f", s.Mode, s.Rate), s, "req/s")
		}
	}
	// One line per passing goal repetition under the same name: benchstat
	// takes their median and spread. Failed ones are left out, as from
	// BenchmarkLabStep: their figures are not comparable.
	for _, s := range r.Steps {
		if s.Pass && s.Goal {
			bench(fmt.Sprintf("BenchmarkLabGoal/mode=%s/rate=%.0f", s.Mode, s.Rate), s, "req/s")
		}
	}
	// The matrix and the loss table are about fidelity: a stack or cell
	// that missed its goal is written too, only runs that could not be
	// made are not.
	for _, st := range r.Stacks {
		if line := st.benchLine(); line != "" {
			b.WriteString(line + "\n")
		}
	}
	for _, c := range r.Loss {
		if line := c.benchLine(); line != "" {
			b.WriteString(line + "\n")
		}
	}
	for _, t := range r.Targets {
		if line := t.benchLine(); line != "" {
			b.WriteString(line + "\n")
		}
	}
	// One line per passing run under two names: benchstat takes the
	// median of each side.
	if c := r.Compare; c != nil {
		for _, run := range c.Runs {
			if line := run.benchLine(); line != "" {
				b.WriteString(line + "\n")
			}
		}
	}
	txt := base + ".txt"
	if err := os.WriteFile(txt, []byte(b.String()), 0o644); err != nil {
		return nil, err
	}
	jl := base + ".jsonl"
	f, err := os.Create(jl)
	if err != nil {
		return []string{txt}, err
	}
	bw := bufio.NewWriter(f)
	enc := json.NewEncoder(bw)
	for _, s := range r.Steps {
		enc.Encode(struct {
			Kind string `json:"kind"`
			Step
		}{"step", s})
	}
	for _, mode := range cfg.Modes {
		if s, ok := r.Best[mode.String()]; ok {
			enc.Encode(struct {
				Kind string `json:"kind"`
				Step
			}{"best", s})
		}
	}
	for _, st := range r.Stacks {
		enc.Encode(struct {
			Kind string `json:"kind"`
			StackResult
		}{"stack", st})
	}
	for _, c := range r.Loss {
		enc.Encode(struct {
			Kind string `json:"kind"`
			LossResult
		}{"loss", c})
	}
	for _, t := range r.Targets {
		enc.Encode(struct {
			Kind string `json:"kind"`
			TargetResult
		}{"target", t})
	}
	if c := r.Compare; c != nil {
		enc.Encode(struct {
			Kind string `json:"kind"`
			*CompareResult
		}{"compare", c})
	}
	for _, g := range r.Goals {
		enc.Encode(struct {
			Kind   string  `json:"kind"`
			Mode   string  `json:"mode"`
			Rate   float64 `json:"rate"`
			Target float64 `json:"max_tcpcopy_cpu_s_per_10k"`
			GoalResult
		}{"goal", g.Goal.Mode.String(), g.Goal.Rate, g.Goal.MaxTcpcopyCPU10k, g})
	}
	werr := bw.Flush()
	if cerr := f.Close(); werr == nil {
		werr = cerr
	}
	return []string{txt, jl}, werr
}

// stepUnits are the figures of s in a benchmark line, after the rate.
func stepUnits(s Step) string {
	return fmt.Sprintf("%.1f achieved-req/s %.3f fidelity-%% %.3f tcpcopy-cpu-s/10k-req %.3f intercept-cpu-s/10k-req %.3f loadgen-cpu-s/10k-req %.3f servers-cpu-s/10k-req %.1f tcpcopy-peak-MiB %.1f intercept-peak-MiB %.2f copy-p50-ms %.2f copy-p99-ms",
		s.Achieved, s.Fidelity, s.TcpcopyCPU10k, s.InterceptCPU10k, s.LoadCPU10k, s.ServersCPU10k,
		mib(s.TcpcopyRSS), mib(s.InterceptRSS), s.LatencyP50, s.LatencyP99)
}

// environment describes the machine and build, as benchstat configuration
// lines.
func environment() [][2]string {
	env := [][2]string{{"goos", runtime.GOOS}, {"goarch", runtime.GOARCH}, {"pkg", "github.com/tcpcopy-go/tcpcopy/internal/lab"}}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "model name"); ok {
				env = append(env, [2]string{"cpu", strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(v), ":"))})
				break
			}
		}
	}
	env = append(env, [2]string{"ncpu", fmt.Sprint(runtime.NumCPU())})
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		env = append(env, [2]string{"kernel", strings.TrimSpace(string(b))})
	}
	rev := ""
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" {
				rev = s.Value
			}
		}
	}
	if rev == "" { // built with -buildvcs=false: ask git, if we are in the tree
		if out, err := exec.Command("git", "describe", "--always", "--dirty").Output(); err == nil {
			rev = strings.TrimSpace(string(out))
		}
	}
	if rev != "" {
		env = append(env, [2]string{"commit", rev})
	}
	return env
}
