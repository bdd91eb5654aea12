package labrun_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labcli"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
)

// TestMain lets the test binary act as tcpcopy-lab (serve, load) for
// labrun's children, and as fake tcpcopy and intercept binaries when called
// through symlinks of those names.
func TestMain(m *testing.M) {
	labcli.RunChildIfRequested()
	switch filepath.Base(os.Args[0]) {
	case "intercept":
		os.Exit(fakeIntercept(os.Args[1:]))
	case "tcpcopy":
		os.Exit(fakeTcpcopy(os.Args[1:]))
	}
	os.Exit(m.Run())
}

// fakeIntercept prints its arguments and accepts connections on -b:36524.
func fakeIntercept(args []string) int {
	fmt.Println(strings.Join(args, "|"))
	i := slices.Index(args, "-b")
	if i < 0 || i+1 >= len(args) {
		fmt.Fprintln(os.Stderr, "fake intercept: no -b")
		return 1
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(args[i+1], "36524"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go io.Copy(io.Discard, c)
		}
	}()
	time.Sleep(time.Minute) // bounded; the orchestrator stops it sooner
	return 0
}

// fakeMetrics is what the fake tcpcopy serves on --metrics-addr, in the
// Prometheus text format, and fakeSummary the final log line it writes.
const (
	fakeMetrics = `# HELP tcpcopy_sessions_opened_total Sessions opened.
# TYPE tcpcopy_sessions_opened_total counter
tcpcopy_sessions_opened_total 7
tcpcopy_sessions_active 1
tcpcopy_packets_captured_total 1234
# TYPE tcpcopy_sessions_closed_total counter
tcpcopy_sessions_closed_total{outcome="reproduced",reason="none"} 4
tcpcopy_sessions_closed_total{outcome="failed",reason="no_synack"} 1
tcpcopy_sessions_closed_total{outcome="partial",reason="target_rst"} 1
tcpcopy_responses_compared_total{verdict="same"} 4
tcpcopy_responses_compared_total{verdict="differs"} 1
tcpcopy_responses_compared_total{verdict="missing"} 0
tcpcopy_responses_compared_total{verdict="not_compared"} 0
tcpcopy_response_differences_total{kind="status"} 1
tcpcopy_response_status_pairs_total{online="200",target="500"} 1
tcpcopy_response_status_pairs_total{online="200",target="200"} 4
`
	fakeSummary = `time=2026-01-01T00:00:00.000Z level=INFO msg="tcpcopy stopped" sessions=9 requests=20 reproduced=6 partial=1 failed=2 fidelity=0.9000 failed_no_synack=1 partial_capture_gap=1`
)

// fakeDiff is the line the fake tcpcopy writes to its --diff-log.
const fakeDiff = `{"verdict":"differs","kind":"status","request":"GET /lab/fake-1 HTTP/1.1","offset":-1}`

// fakeTcpcopy prints its arguments, connects to -s:36524, serves
// fakeMetrics on --metrics-addr, writes fakeDiff to --diff-log and
// fakeSummary to stderr, burns a little CPU and memory so that usage is
// measurable, and waits.
func fakeTcpcopy(args []string) int {
	fmt.Println(strings.Join(args, "|"))
	i := slices.Index(args, "-s")
	if i < 0 || i+1 >= len(args) {
		fmt.Fprintln(os.Stderr, "fake tcpcopy: no -s")
		return 1
	}
	c, err := net.DialTimeout("tcp", net.JoinHostPort(args[i+1], "36524"), 3*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer c.Close()
	if i := slices.Index(args, "--metrics-addr"); i >= 0 && i+1 < len(args) {
		ln, err := net.Listen("tcp", args[i+1])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, fakeMetrics) }))
	}
	if i := slices.Index(args, "--diff-log"); i >= 0 && i+1 < len(args) {
		if err := os.WriteFile(args[i+1], []byte(fakeDiff+"\n"), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	fmt.Fprintln(os.Stderr, fakeSummary)
	buf := make([]byte, 32<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	time.Sleep(time.Minute)
	return int(buf[7]) - 7
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces")
	}
}

func logger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(strings.TrimSpace(string(b)))
	return len(b), nil
}

// fakeBins makes "tcpcopy" and "intercept" symlinks to the test binary.
func fakeBins(t *testing.T) (tcpcopy, intercept string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, n := range []string{"tcpcopy", "intercept"} {
		if err := os.Symlink(self, filepath.Join(dir, n)); err != nil {
			t.Fatal(err)
		}
	}
	return filepath.Join(dir, "tcpcopy"), filepath.Join(dir, "intercept")
}

func config(t *testing.T) labrun.Config {
	return labrun.Config{
		Dir:  t.TempDir(),
		Load: load.Options{Rate: 50, Duration: 500 * time.Millisecond, MaxRequests: 100},
		Tail: 100 * time.Millisecond,
	}
}

func checkGone(t *testing.T, id string) {
	t.Helper()
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), id+"-") {
			t.Errorf("namespace %s left behind", e.Name())
		}
	}
}

func TestRunWithFakeCopiers(t *testing.T) {
	needRoot(t)
	cfg := config(t)
	cfg.TcpcopyBin, cfg.InterceptBin = fakeBins(t)
	rep, err := labrun.Run(context.Background(), cfg, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	checkGone(t, rep.ID)
	if rep.Compare.Online == 0 || rep.Compare.Online != rep.Load.OK {
		t.Errorf("online recorded %d, load ok %d", rep.Compare.Online, rep.Load.OK)
	}
	if rep.Compare.Target != 0 || rep.Compare.Fidelity != 0 {
		t.Errorf("fake tcpcopy copied nothing, yet target %d fidelity %v", rep.Compare.Target, rep.Compare.Fidelity)
	}
	for _, p := range []*labrun.ProcReport{rep.Tcpcopy, rep.Intercept} {
		if p == nil {
			t.Fatal("missing process report")
		}
		if p.Exit != "" {
			t.Errorf("%s: %s", p.Bin, p.Exit)
		}
		if p.PeakRSS <= 0 {
			t.Errorf("%s: peak RSS %d", p.Bin, p.PeakRSS)
		}
	}
	if rep.Tcpcopy.PeakRSS < 32<<20 {
		t.Errorf("tcpcopy peak RSS %d, want at least the 32 MiB it touched", rep.Tcpcopy.PeakRSS)
	}
	// Placeholders were expanded into the default command lines.
	out := readStdout(t, cfg.Dir, "intercept")
	if want := "-i|to-target|-F|tcp and src port 8080|-b|198.51.100.130"; out != want {
		t.Errorf("intercept argv %q, want %q", out, want)
	}
	out = readStdout(t, cfg.Dir, "tcpcopy")
	if want := "-x|80-198.51.100.2:8080|-s|198.51.100.130|-i|to-client|--metrics-addr|127.0.0.1:9180"; out != want {
		t.Errorf("tcpcopy argv %q, want %q", out, want)
	}
	if len(rep.Problems) != 0 {
		t.Errorf("problems: %v", rep.Problems)
	}
	// Session outcomes were read from the metrics endpoint inside online.
	want := &labrun.Sessions{Source: "metrics", Opened: 7, Open: 1, Reproduced: 4, Partial: 1, Failed: 1,
		Ends: []labrun.SessionEnd{{"reproduced", "none", 4}, {"partial", "target_rst", 1}, {"failed", "no_synack", 1}}}
	if !reflect.DeepEqual(rep.Sessions, want) || !reflect.DeepEqual(rep.Tcpcopy.Sessions, want) {
		t.Errorf("sessions %+v, want %+v", rep.Sessions, want)
	}
	if got := rep.Tcpcopy.Metrics["tcpcopy_packets_captured_total"]; got != 1234 {
		t.Errorf("captured packets metric %v, want 1234", got)
	}
	if rep.LoadClient == nil || rep.LoadClient.CPUSeconds <= 0 || rep.Recorders == nil || rep.Recorders.CPUSeconds <= 0 {
		t.Errorf("no usage of the lab's own programs: load %+v, recorders %+v", rep.LoadClient, rep.Recorders)
	}
}

// TestRunCompareWithFakeCopiers checks that the verdicts are read from
// tcpcopy's metrics and its diff log from the file Config.DiffLog adds to
// its arguments.
func TestRunCompareWithFakeCopiers(t *testing.T) {
	needRoot(t)
	cfg := config(t)
	cfg.TcpcopyBin, cfg.InterceptBin = fakeBins(t)
	cfg.DiffLog = true
	var err error
	if cfg.TargetDiffer, err = recorder.ParseDiffer("status:500:2"); err != nil {
		t.Fatal(err)
	}
	rep, err := labrun.Run(context.Background(), cfg, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	diffLog := filepath.Join(cfg.Dir, "diff.jsonl")
	if out, want := readStdout(t, cfg.Dir, "tcpcopy"), "|--metrics-addr|127.0.0.1:9180|--diff-log|"+diffLog; !strings.HasSuffix(out, want) {
		t.Errorf("tcpcopy argv %q, want it to end with %q", out, want)
	}
	want := &labrun.Responses{Source: "metrics", Same: 4, Differs: 1, Kinds: map[string]uint64{"status": 1},
		StatusPairs: []labrun.StatusPair{{200, 200, 4}, {200, 500, 1}},
		// The fake copies nothing: the target changed no answer.
		NotAsTold: []string{"status differs in 1 responses, the target changed 0"}}
	if !reflect.DeepEqual(rep.Responses, want) {
		t.Errorf("responses %+v\nwant %+v", rep.Responses, want)
	}
	if rep.Told == nil || rep.Told.Differ != "status:500:2" || rep.Told.Answers != 0 {
		t.Errorf("told %+v", rep.Told)
	}
	if d := rep.DiffLog; d == nil || d.Lines != 1 || d.Unexpected != 1 || d.Kinds["status"] != 1 || rep.Tcpcopy.DiffLog != diffLog {
		t.Errorf("diff log %+v (tcpcopy's %q)", d, rep.Tcpcopy.DiffLog)
	}
	var b strings.Builder
	rep.WriteText(&b)
	for _, w := range []string{"compare    5 responses: 4 same, 1 differ (status 1)", "  told     target status:500:2: status 500 for every 2nd request",
		"diff log   1 lines in " + diffLog} {
		if !strings.Contains(b.String(), w) {
			t.Errorf("report lacks %q:\n%s", w, b.String())
		}
	}
}

// TestRunSessionsFromLog checks the fallback without metrics: the outcomes
// come from tcpcopy's final log line.
func TestRunSessionsFromLog(t *testing.T) {
	needRoot(t)
	cfg := config(t)
	cfg.TcpcopyBin, cfg.InterceptBin = fakeBins(t)
	cfg.TcpcopyMetrics = "off"
	rep, err := labrun.Run(context.Background(), cfg, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if out := readStdout(t, cfg.Dir, "tcpcopy"); strings.Contains(out, "metrics") {
		t.Errorf("tcpcopy argv %q has a metrics address", out)
	}
	want := &labrun.Sessions{Source: "log", Opened: 9, Reproduced: 6, Partial: 1, Failed: 2,
		Ends: []labrun.SessionEnd{{"reproduced", "", 6}, {"partial", "capture_gap", 1}, {"failed", "no_synack", 1}, {"failed", "unknown", 1}},
		Copy: labrun.CopyStats{Known: true, Fidelity: 0.9}}
	if !reflect.DeepEqual(rep.Sessions, want) {
		t.Errorf("sessions %+v, want %+v", rep.Sessions, want)
	}
}

func readStdout(t *testing.T, dir, name string) string {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "*-"+name+".stdout"))
	if len(files) != 1 {
		t.Fatalf("stdout files of %s: %v", name, files)
	}
	b, err := os.ReadFile(files[0])
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func TestRunSetupFailure(t *testing.T) {
	needRoot(t)
	cfg := config(t)
	cfg.TcpcopyBin, _ = fakeBins(t)
	cfg.InterceptBin = "/bin/false"
	cfg.StartTimeout = time.Minute // an early exit must not wait for it
	start := time.Now()
	rep, err := labrun.Run(context.Background(), cfg, logger(t))
	if !errors.Is(err, labrun.ErrSetup) {
		t.Fatalf("got %v, want ErrSetup", err)
	}
	if d := time.Since(start); d > 20*time.Second {
		t.Errorf("failure took %v to notice", d)
	}
	checkGone(t, rep.ID)

	cfg.InterceptArgs = []string{"{no.such}"}
	if _, err := labrun.Run(context.Background(), cfg, logger(t)); !errors.Is(err, labrun.ErrSetup) || !strings.Contains(err.Error(), "{no.such}") {
		t.Errorf("bad placeholder: got %v", err)
	}
}

func TestRunCancel(t *testing.T) {
	needRoot(t)
	cfg := config(t)
	cfg.Load.Duration = time.Minute
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// Cancel once the load runs, as a Ctrl-C would.
	var canceled time.Time
	log := slog.New(hookHandler{logger(t).Handler(), func(r slog.Record) {
		if r.Message == "running load" {
			time.AfterFunc(300*time.Millisecond, func() { canceled = time.Now(); cancel() })
		}
	}})
	rep, err := labrun.Run(ctx, cfg, log)
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want the context's error", err)
	}
	if canceled.IsZero() {
		t.Fatal("load never started")
	}
	if d := time.Since(canceled); d > 8*time.Second {
		t.Errorf("teardown after cancel took %v", d)
	}
	checkGone(t, rep.ID)
}

func TestSplitArgs(t *testing.T) {
	cases := []struct {
		in   string
		want []string
		err  bool
	}{
		{"", nil, false},
		{"  -a  b ", []string{"-a", "b"}, false},
		{`-F 'tcp and src port 8080' -b x`, []string{"-F", "tcp and src port 8080", "-b", "x"}, false},
		{`-F "tcp and \"x\"" ''`, []string{"-F", `tcp and "x"`, ""}, false},
		{`a\ b c`, []string{"a b", "c"}, false},
		{`'unterminated`, nil, true},
		{`trailing\`, nil, true},
	}
	for _, c := range cases {
		got, err := labrun.SplitArgs(c.in)
		if (err != nil) != c.err || !slices.Equal(got, c.want) {
			t.Errorf("SplitArgs(%q) = %q, %v; want %q (error %v)", c.in, got, err, c.want, c.err)
		}
	}
}

func TestExpand(t *testing.T) {
	vars := map[string]string{"a.b": "X", "c": "Y"}
	got, err := labrun.Expand([]string{"{a.b}", "p{c}q{a.b}", "plain", "{", "}{"}, vars)
	if want := []string{"X", "pYqX", "plain", "{", "}{"}; err != nil || !slices.Equal(got, want) {
		t.Errorf("got %q, %v; want %q", got, err, want)
	}
	if _, err := labrun.Expand([]string{"{x}"}, vars); err == nil {
		t.Error("unknown placeholder: want an error")
	}
	// Every default placeholder exists.
	var topo netlab.Topology
	vars = labrun.Vars(&topo)
	for _, args := range [][]string{labrun.DefaultTcpcopyArgs, labrun.DefaultInterceptArgs} {
		if _, err := labrun.Expand(args, vars); err != nil {
			t.Error(err)
		}
	}
}

// hookHandler calls hook for every record, then passes it on.
type hookHandler struct {
	slog.Handler
	hook func(slog.Record)
}

func (h hookHandler) Handle(ctx context.Context, r slog.Record) error {
	h.hook(r)
	return h.Handler.Handle(ctx, r)
}

// TestRunHooks restarts intercept and the target server from the During
// hook and checks the report counts the restarts without calling them
// failures; the leak watcher runs and sees nothing (nothing is copied).
func TestRunHooks(t *testing.T) {
	needRoot(t)
	cfg := config(t)
	cfg.TcpcopyBin, cfg.InterceptBin = fakeBins(t)
	cfg.Load.Duration = time.Second
	cfg.LeakCheck = true
	var setupRan bool
	cfg.Setup = func(ctx context.Context, lab *labrun.Lab) error {
		setupRan = lab.Topo != nil && lab.Vars["target.port"] == "8080" && lab.Intercept() == nil
		return nil
	}
	cfg.During = func(ctx context.Context, lab *labrun.Lab) error {
		if lab.Tcpcopy(0) == nil || lab.Tcpcopy(1) != nil || lab.Intercept() == nil {
			return errors.New("wrong processes")
		}
		if err := lab.StopIntercept(); err != nil {
			return err
		}
		if err := lab.StartIntercept(ctx); err != nil {
			return err
		}
		if err := lab.StartIntercept(ctx); err == nil {
			return errors.New("a second intercept started")
		}
		if err := lab.StopTarget(); err != nil {
			return err
		}
		if err := lab.StartTarget(ctx); err != nil {
			return err
		}
		if err := lab.KillTarget(); err != nil {
			return err
		}
		return lab.StartTarget(ctx)
	}
	rep, err := labrun.Run(context.Background(), cfg, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	if !setupRan {
		t.Error("setup hook did not run before the programs started")
	}
	if rep.Intercept.Restarts != 1 || rep.Intercept.Exit != "" {
		t.Errorf("intercept restarts %d, exit %q; want 1 and none", rep.Intercept.Restarts, rep.Intercept.Exit)
	}
	if rep.Leaks == nil || !rep.Leaks.Ready || !rep.Leaks.Done || rep.Leaks.Packets != 0 {
		t.Errorf("leak watch %+v", rep.Leaks)
	}
	if len(rep.Problems) != 0 {
		t.Errorf("problems: %v", rep.Problems)
	}
	checkGone(t, rep.ID)
}

func TestRunHookErrors(t *testing.T) {
	needRoot(t)
	cfg := config(t)
	cfg.TcpcopyBin, cfg.InterceptBin = fakeBins(t)
	boom := errors.New("boom")
	cfg.Setup = func(context.Context, *labrun.Lab) error { return boom }
	rep, err := labrun.Run(context.Background(), cfg, logger(t))
	if !errors.Is(err, labrun.ErrSetup) || !errors.Is(err, boom) {
		t.Errorf("setup hook error: got %v", err)
	}
	checkGone(t, rep.ID)

	cfg.Setup = nil
	cfg.During = func(context.Context, *labrun.Lab) error { return boom }
	rep, err = labrun.Run(context.Background(), cfg, logger(t))
	if errors.Is(err, labrun.ErrSetup) || !errors.Is(err, boom) {
		t.Errorf("during hook error: got %v", err)
	}
	checkGone(t, rep.ID)
}
