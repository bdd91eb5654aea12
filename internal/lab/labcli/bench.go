package labcli

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/urfave/cli/v3"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labbench"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
)

func benchCommand() *cli.Command {
	return &cli.Command{
		Name: "bench",
		Usage: "check the performance goals (--goals: tcpcopy's CPU seconds per 10,000 requests at fixed rates, --repeat times each), " +
			"run every client stack live and offline (--stacks), run every loss level with short and keep-alive connections (--loss-levels), " +
			"run every target server with keep-alive, short and pipelined connections (--targets), " +
			"measure what the response comparison costs (--compare-rate, --compare-repeat), " +
			"then find the highest request rate copied with fidelity >= --min-fidelity, for short and for keep-alive connections; " +
			"prints fidelity, CPU seconds and peak memory, and writes them to --out",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "tcpcopy-bin", Usage: "tcpcopy binary (default: next to this executable)"},
			&cli.StringFlag{Name: "intercept-bin", Usage: "intercept binary (default: next to this executable)"},
			&cli.StringFlag{Name: "phases", Value: "all",
				Usage: "phases to run, comma-separated, always in this order: goals, matrix (client stacks live and offline), loss (the loss table), targets (real target servers), compare (the response comparison off and on), climb (raw-send ceiling and rate climb); \"all\" for all"},
			&cli.StringFlag{Name: "stacks", Value: "all", Usage: "client stacks of the matrix, comma-separated (" + stackNames() + "); \"all\" for all"},
			&cli.StringFlag{Name: "loss-levels", Value: "all", Usage: "loss levels of the loss table, comma-separated (" + lossNames() + "); \"all\" for all"},
			&cli.StringFlag{Name: "targets", Value: "all", Usage: "target servers of the targets phase, comma-separated (" + labrun.TargetServerNames() + "); \"all\" for all"},
			&cli.StringFlag{Name: "modes", Value: "short,keepalive", Usage: "connection modes of the climb, in order"},
			&cli.StringFlag{Name: "rates", Value: formatRates(labbench.DefaultRates), Usage: "rising request rates to try, per second"},
			&cli.DurationFlag{Name: "step", Value: labbench.DefaultStep, Usage: "load duration of each step"},
			&cli.FloatFlag{Name: "min-fidelity", Value: labbench.DefaultMinFidelity, Usage: "fidelity (percent) a step needs to pass"},
			&cli.IntFlag{Name: "refine", Value: labbench.DefaultRefine, Usage: "steps narrowing down between the best passing and the first failing rate"},
			&cli.StringFlag{Name: "goals", Value: labbench.FormatGoals(labbench.DefaultGoals),
				Usage: "goals checked before the climb, as mode:rate:max, max being tcpcopy's CPU seconds per 10,000 requests; \"none\" for none"},
			&cli.IntFlag{Name: "repeat", Value: labbench.DefaultRepeat, Usage: "times each goal runs; the goals take turns"},
			&cli.FloatFlag{Name: "compare-rate", Value: labbench.DefaultCompareRate, Usage: "requests per second of the compare phase (keep-alive connections)"},
			&cli.IntFlag{Name: "compare-resp", Value: labbench.DefaultCompareResp, Usage: "response body size of the compare phase, bytes"},
			&cli.IntFlag{Name: "compare-repeat", Value: labbench.DefaultCompareRepeat, Usage: "times the compare phase runs its load with the comparison off and on, interleaved"},
			&cli.DurationFlag{Name: "budget", Value: labbench.DefaultBudget, Usage: "no run of any phase starts that would end after this"},
			&cli.IntFlag{Name: "concurrency", Value: labbench.DefaultConcurrency, Usage: "load client requests in flight"},
			&cli.IntFlag{Name: "per-conn", Value: labbench.DefaultPerConn, Usage: "requests per keep-alive connection"},
			&cli.IntSliceFlag{Name: "body-size", Usage: "POST body sizes drawn uniformly, bytes, of the goals, the loss table and the climb (repeatable; default " + fmt.Sprint(labbench.DefaultBodySizes) + "; the matrix has its own)"},
			&cli.BoolFlag{Name: "gro", Value: true, Usage: "enable GRO on the receiving veths (needs ethtool)"},
			&cli.StringFlag{Name: "out", Value: "bench-results", Usage: "directory for the result files (empty: none)"},
			&cli.StringFlag{Name: "prefix", Value: netlab.DefaultPrefix, Usage: "namespace name prefix"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			// Per-step progress is the bench's own output; the lab's
			// info lines only with --verbose.
			level := slog.LevelWarn
			if cmd.Bool("verbose") {
				level = slog.LevelDebug
			}
			log := slog.New(slog.NewTextHandler(cmd.Root().ErrWriter, &slog.HandlerOptions{Level: level}))
			var modes []load.Mode
			for _, s := range strings.Split(cmd.String("modes"), ",") {
				m, err := load.ParseMode(strings.TrimSpace(s))
				if err != nil {
					return &exitError{ExitSetup, fmt.Errorf("--modes: %w", err)}
				}
				modes = append(modes, m)
			}
			rates, err := parseRates(cmd.String("rates"))
			if err != nil {
				return &exitError{ExitSetup, fmt.Errorf("--rates: %w", err)}
			}
			goals, err := labbench.ParseGoals(cmd.String("goals"))
			if err != nil {
				return &exitError{ExitSetup, fmt.Errorf("--goals: %w", err)}
			}
			phases, err := labbench.ParsePhases(cmd.String("phases"))
			if err != nil {
				return &exitError{ExitSetup, fmt.Errorf("--phases: %w", err)}
			}
			stacks, err := labbench.ParseStacks(cmd.String("stacks"))
			if err != nil {
				return &exitError{ExitSetup, fmt.Errorf("--stacks: %w", err)}
			}
			levels, err := labbench.ParseLossLevels(cmd.String("loss-levels"))
			if err != nil {
				return &exitError{ExitSetup, fmt.Errorf("--loss-levels: %w", err)}
			}
			targets, err := labbench.ParseTargets(cmd.String("targets"))
			if err != nil {
				return &exitError{ExitSetup, fmt.Errorf("--targets: %w", err)}
			}
			if n := cmd.Int("compare-repeat"); n < 1 {
				return &exitError{ExitSetup, fmt.Errorf("--compare-repeat: %d: want at least 1", n)}
			}
			if n := cmd.Int("compare-resp"); n < 1 {
				return &exitError{ExitSetup, fmt.Errorf("--compare-resp: %d: want at least 1 byte", n)}
			}
			if r := cmd.Float("compare-rate"); !(r > 0) {
				return &exitError{ExitSetup, fmt.Errorf("--compare-rate: %v: want requests per second above 0", r)}
			}
			if n := cmd.Int("repeat"); n < 1 {
				return &exitError{ExitSetup, fmt.Errorf("--repeat: %d: want at least 1 (--goals none skips the goals)", n)}
			}
			cfg := labbench.Config{
				Lab: labrun.Config{
					Prefix:       cmd.String("prefix"),
					GRO:          cmd.Bool("gro"),
					TcpcopyBin:   cmd.String("tcpcopy-bin"),
					InterceptBin: cmd.String("intercept-bin"),
					Load: load.Options{
						Concurrency:     cmd.Int("concurrency"),
						RequestsPerConn: cmd.Int("per-conn"),
						BodySizes:       cmd.IntSlice("body-size"),
					},
				},
				Modes:         modes,
				Rates:         rates,
				Step:          cmd.Duration("step"),
				MinFidelity:   cmd.Float("min-fidelity"),
				Refine:        cmd.Int("refine"),
				Goals:         goals,
				Repeat:        cmd.Int("repeat"),
				Budget:        cmd.Duration("budget"),
				OutDir:        cmd.String("out"),
				Phases:        phases,
				Stacks:        stacks,
				LossLevels:    levels,
				Targets:       targets,
				CompareRate:   cmd.Float("compare-rate"),
				CompareRepeat: cmd.Int("compare-repeat"),
				CompareResp:   cmd.Int("compare-resp"),
			}
			if cfg.Refine == 0 {
				cfg.Refine = -1 // the flag's 0 means none
			}
			if cfg.Lab.Self, err = os.Executable(); err != nil {
				return &exitError{ExitSetup, err}
			}
			demoBinaries(&cfg.Lab, newLogger(cmd))
			if cfg.Lab.TcpcopyBin == "" {
				return &exitError{ExitSetup, errors.New("no tcpcopy and intercept binaries: give --tcpcopy-bin and --intercept-bin, or run make build")}
			}
			res, err := labbench.Run(ctx, cfg, log, cmd.Root().Writer)
			if err != nil {
				return &exitError{ExitFailure, err}
			}
			// Only the climb decides the exit status: goals, stacks and
			// loss cells that missed are results, shown in the output.
			if slices.Contains(phases, labbench.PhaseClimb) && len(res.Best) == 0 {
				return &exitError{ExitLowFidelity, errors.New("no step of the climb passed")}
			}
			return nil
		},
	}
}

// lossNames lists the names of labrun.LossLevels, comma-separated.
func lossNames() string {
	var names []string
	for _, l := range labrun.LossLevels {
		names = append(names, l.Name)
	}
	return strings.Join(names, ", ")
}

func formatRates(rs []float64) string {
	var parts []string
	for _, r := range rs {
		parts = append(parts, strconv.FormatFloat(r, 'f', -1, 64))
	}
	return strings.Join(parts, ",")
}

func parseRates(s string) ([]float64, error) {
	var out []float64
	for _, f := range strings.Split(s, ",") {
		r, err := strconv.ParseFloat(strings.TrimSpace(f), 64)
		if err != nil || r <= 0 {
			return nil, fmt.Errorf("bad rate %q", f)
		}
		if len(out) > 0 && r <= out[len(out)-1] {
			return nil, fmt.Errorf("rates must rise: %v after %v", r, out[len(out)-1])
		}
		out = append(out, r)
	}
	return out, nil
}
