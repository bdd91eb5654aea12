package labbench

import (
	"fmt"
	"slices"
	"strings"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
)

// Phase is a part of a bench run; Config.Phases picks the ones that run.
type Phase string

// The phases, in the order Run runs them.
const (
	// PhaseGoals checks the performance goals (Config.Goals).
	PhaseGoals Phase = "goals"
	// PhaseMatrix runs every client stack (Config.Stacks) live with a
	// recording, then replays the recording offline.
	PhaseMatrix Phase = "matrix"
	// PhaseLoss runs every loss level (Config.LossLevels) with short and
	// with keep-alive connections.
	PhaseLoss Phase = "loss"
	// PhaseTargets runs every target server (Config.Targets) with
	// keep-alive, short and pipelined connections.
	PhaseTargets Phase = "targets"
	// PhaseCompare runs the same load with tcpcopy's response comparison
	// off and on (Config.CompareRepeat times each, interleaved) and
	// checks what it costs.
	PhaseCompare Phase = "compare"
	// PhaseClimb measures the raw-send ceiling, then climbs the request
	// rates (Config.Rates) of each mode (Config.Modes).
	PhaseClimb Phase = "climb"
)

// Phases are all phases in run order: the default of Config.Phases.
var Phases = []Phase{PhaseGoals, PhaseMatrix, PhaseLoss, PhaseTargets, PhaseCompare, PhaseClimb}

// FormatPhases formats phases as ParsePhases reads them: "goals,matrix".
func FormatPhases(phases []Phase) string {
	parts := make([]string, len(phases))
	for i, p := range phases {
		parts[i] = string(p)
	}
	return strings.Join(parts, ",")
}

// phaseNames lists the phases for an error message.
func phaseNames() string { return strings.ReplaceAll(FormatPhases(Phases), ",", ", ") + ", or all" }

// ParsePhases parses a comma-separated list of phase names, or "all". The
// result is in run order (Phases), whatever the order given: the phases
// always run goals, matrix, loss, targets, compare, climb.
func ParsePhases(s string) ([]Phase, error) {
	s = strings.TrimSpace(s)
	if s == "all" {
		return slices.Clone(Phases), nil
	}
	if s == "" {
		return nil, fmt.Errorf("no phase given (known: %s)", phaseNames())
	}
	var out []Phase
	for item := range strings.SplitSeq(s, ",") {
		p := Phase(strings.TrimSpace(item))
		if !slices.Contains(Phases, p) {
			return nil, fmt.Errorf("unknown phase %q (known: %s)", string(p), phaseNames())
		}
		if slices.Contains(out, p) {
			return nil, fmt.Errorf("phase %q given twice", string(p))
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(a, b Phase) int { return slices.Index(Phases, a) - slices.Index(Phases, b) })
	return out, nil
}

// ParseStacks parses a comma-separated list of labrun.ClientStacks names;
// "all" gives all of them, in the table's order.
func ParseStacks(s string) ([]labrun.ClientStack, error) {
	return parseNamed(s, labrun.ClientStacks, labrun.ClientStackByName, func(c labrun.ClientStack) string { return c.Name })
}

// ParseTargets parses a comma-separated list of labrun.TargetServers
// names; "all" gives all of them, in the table's order.
func ParseTargets(s string) ([]labrun.TargetServer, error) {
	byName := func(name string) (labrun.TargetServer, error) {
		if name == "" { // TargetServerByName's default, not a name
			return labrun.TargetServer{}, fmt.Errorf("no target server given (known: %s)", labrun.TargetServerNames())
		}
		return labrun.TargetServerByName(name)
	}
	return parseNamed(s, labrun.TargetServers, byName, func(t labrun.TargetServer) string { return t.Name })
}

// ParseLossLevels parses a comma-separated list of labrun.LossLevels
// names; "all" gives all of them, in the table's order.
func ParseLossLevels(s string) ([]labrun.LossLevel, error) {
	return parseNamed(s, labrun.LossLevels, labrun.LossLevelByName, func(l labrun.LossLevel) string { return l.Name })
}

// parseNamed parses a comma-separated list of names of a table's rows, in
// the order given, or "all" for the whole table.
func parseNamed[T any](s string, all []T, byName func(string) (T, error), name func(T) string) ([]T, error) {
	s = strings.TrimSpace(s)
	if s == "all" {
		return slices.Clone(all), nil
	}
	var out []T
	for item := range strings.SplitSeq(s, ",") {
		v, err := byName(strings.TrimSpace(item))
		if err != nil {
			return nil, err
		}
		if slices.ContainsFunc(out, func(o T) bool { return name(o) == name(v) }) {
			return nil, fmt.Errorf("%q given twice", name(v))
		}
		out = append(out, v)
	}
	return out, nil
}
