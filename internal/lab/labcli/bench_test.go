package labcli

import (
	"strings"
	"testing"
)

// TestBenchFlagErrors checks that bad --phases, --stacks, --loss-levels
// and --targets values are refused with a usage error, before any namespace is built.
func TestBenchFlagErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"unknown phase", []string{"--phases", "matrix,soak"}, `--phases: unknown phase "soak" (known: goals, matrix, loss, targets, compare, climb, or all)`},
		{"empty phases", []string{"--phases", ""}, "--phases: no phase given"},
		{"phase twice", []string{"--phases", "loss,loss"}, `--phases: phase "loss" given twice`},
		{"unknown stack", []string{"--stacks", "linux,bsd"}, `--stacks: unknown client stack "bsd" (known: linux, no-timestamps`},
		{"stack twice", []string{"--stacks", "ecn,ecn"}, `--stacks: "ecn" given twice`},
		{"compare repeat 0", []string{"--compare-repeat", "0"}, "--compare-repeat: 0: want at least 1"},
		{"compare rate 0", []string{"--compare-rate", "0"}, "--compare-rate: 0: want requests per second above 0"},
		{"compare resp 0", []string{"--compare-resp", "0"}, "--compare-resp: 0: want at least 1 byte"},
		{"unknown loss level", []string{"--loss-levels", "loss-9-9"}, `--loss-levels: unknown loss level "loss-9-9" (known: loss-1-1, loss-2-2, loss-5-0, loss-0-5)`},
		{"unknown target server", []string{"--targets", "recorder,apache"}, `--targets: unknown target server "apache" (known: recorder, nginx-kr100, nginx-kt1s, close-some, close-each, slow-accept)`},
		{"target server twice", []string{"--targets", "close-each,close-each"}, `--targets: "close-each" given twice`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := run(t, append([]string{"bench"}, tt.args...)...)
			if code != ExitSetup {
				t.Errorf("exit %d, want %d (stderr %s)", code, ExitSetup, stderr)
			}
			if !strings.Contains(stderr, tt.want) {
				t.Errorf("stderr %q does not mention %q", stderr, tt.want)
			}
		})
	}
}

// TestBenchHelp checks that the help names the phases and the tables.
func TestBenchHelp(t *testing.T) {
	code, stdout, stderr := run(t, "bench", "--help")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	for _, w := range []string{"--phases", "goals, matrix", "loss (the loss table), targets (real target servers), compare (the response comparison off and on), climb", "--compare-rate", "--compare-repeat", "--stacks", "target-mtu1400", "--loss-levels", "loss-0-5", "--targets", "nginx-kt1s"} {
		if !strings.Contains(stdout, w) {
			t.Errorf("help does not mention %q:\n%s", w, stdout)
		}
	}
}
