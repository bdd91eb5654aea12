package e2e

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labcli"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
	"github.com/tcpcopy-go/tcpcopy/internal/testbin"
)

// The lab re-executes this test binary as its HTTP servers and load
// client inside the namespaces.
func TestMain(m *testing.M) {
	labcli.RunChildIfRequested()
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces and runs raw sockets")
	}
}

// run runs one lab copy and returns its report and the two request logs.
func run(t *testing.T, cfg labrun.Config) (*labrun.Report, []recorder.Entry, []recorder.Entry) {
	t.Helper()
	cfg.TcpcopyBin = testbin.Build(t, "tcpcopy")
	cfg.InterceptBin = testbin.Build(t, "intercept")
	cfg.Dir = keepDir(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rep, err := labrun.Run(ctx, cfg, log)
	if err != nil {
		t.Fatalf("lab run: %v", err)
	}
	online, err := recorder.ReadLog(rep.Dir + "/online.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	target, err := recorder.ReadLog(rep.Dir + "/target.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	if t.Failed() || testing.Verbose() {
		rep.WriteText(testWriter{t})
	}
	return rep, online, target
}

// keepDir returns the directory for a lab run's logs: a temporary one,
// or, with TCPCOPY_E2E_DIR set, a directory under it named after the
// test, kept after the test for a look at the logs.
func keepDir(t *testing.T) string {
	base := os.Getenv("TCPCOPY_E2E_DIR")
	if base == "" {
		return t.TempDir()
	}
	dir := filepath.Join(base, strings.NewReplacer("/", "_", " ", "_").Replace(t.Name()))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Logf("lab logs in %s", dir)
	return dir
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(b []byte) (int, error) {
	w.t.Log(string(b))
	return len(b), nil
}

// checkAllCopied asserts that every request the online server got reached
// the target byte-identical, and that on every connection the target saw
// the requests in the online order.
func checkAllCopied(t *testing.T, rep *labrun.Report, online, target []recorder.Entry) {
	t.Helper()
	c := rep.Compare
	if c.Matched != c.Online || c.Missing != 0 || c.Mismatched != 0 || c.Online == 0 {
		t.Errorf("online %d, matched %d, missing %d, different body %d (fidelity %.2f%%)",
			c.Online, c.Matched, c.Missing, c.Mismatched, c.Fidelity)
	}
	if rep.Tcpcopy.Exit != "" || rep.Intercept.Exit != "" {
		t.Errorf("a daemon died: tcpcopy %q, intercept %q", rep.Tcpcopy.Exit, rep.Intercept.Exit)
	}
	// tcpcopy keeps the client address and port (no -c, -n, -f), so the
	// remote address identifies the connection on both servers.
	order := func(es []recorder.Entry) map[string][]string {
		m := map[string][]string{}
		for _, e := range es {
			m[e.Remote] = append(m[e.Remote], e.ID)
		}
		return m
	}
	on, tg := order(online), order(target)
	for remote, ids := range on {
		if got := tg[remote]; !slices.Equal(dedup(got), dedup(ids)) {
			t.Errorf("connection %s: target saw %v, online %v", remote, got, ids)
		}
	}
}

// dedup drops repeated ids: net/http may resend an idempotent request on
// a reused keep-alive connection, at online and target alike.
func dedup(ids []string) []string {
	var out []string
	seen := map[string]bool{}
	for _, id := range ids {
		if !seen[id] {
			seen[id] = true
			out = append(out, id)
		}
	}
	return out
}

// bodies are the request body sizes: empty to 1 MiB.
var bodies = []int{0, 1, 100, 1460, 4096, 65536, 300000, 1 << 20}

func TestCopyLive(t *testing.T) {
	needRoot(t)
	tests := []struct {
		name string
		mode load.Mode
		ipv6 bool
	}{
		{"keep-alive", load.KeepAlive, false},
		{"short connections", load.Short, false},
		{"keep-alive over IPv6", load.KeepAlive, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := labrun.Config{
				GRO:  true,
				IPv6: tt.ipv6,
				Load: load.Options{
					Rate: 60, Duration: 3 * time.Second, MaxRequests: 150,
					Mode: tt.mode, RequestsPerConn: 10, BodySizes: bodies, Concurrency: 4,
				},
			}
			if tt.ipv6 {
				cfg.TcpcopyArgs = []string{"-x", "[{online.client_v6}]:80-[{target.online_v6}]:8080",
					"-s", "{assistant.online_v4}", "-i", "{online.client_if}"}
			}
			rep, online, target := run(t, cfg)
			checkAllCopied(t, rep, online, target)
			if got := len(online); got < 50 {
				t.Errorf("only %d requests were made", got)
			}
			t.Logf("%d requests, fidelity %.1f%%, tcpcopy %.2f cpu-s, intercept %.2f cpu-s",
				rep.Compare.Online, rep.Compare.Fidelity, rep.Tcpcopy.CPUSeconds, rep.Intercept.CPUSeconds)
		})
	}
}
