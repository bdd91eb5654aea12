package labbench_test

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labbench"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/labcli"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/internal/testbin"
)

// The lab re-executes this test binary as its servers and load client.
func TestMain(m *testing.M) {
	labcli.RunChildIfRequested()
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// TestBench runs a small bench with the real binaries: one goal of short
// connections at a low rate with room to spare, run once, then two low
// rates of keep-alive connections, both pass, so the limit is the cap. The
// matrix and the loss table are left to the e2e tests.
func TestBench(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces")
	}
	cfg := labbench.Config{
		Lab: labrun.Config{
			TcpcopyBin:   testbin.Build(t, "tcpcopy"),
			InterceptBin: testbin.Build(t, "intercept"),
			Load:         load.Options{Concurrency: 4},
		},
		Modes:  []load.Mode{load.KeepAlive},
		Rates:  []float64{50, 100},
		Step:   time.Second,
		Refine: -1,
		// At 50 requests a second, startup dominates tcpcopy's CPU per
		// request: the target only checks that the goal is measured.
		Goals:  []labbench.Goal{{Mode: load.Short, Rate: 50, MaxTcpcopyCPU10k: 1000}},
		Repeat: 1,
		Budget: time.Minute,
		OutDir: t.TempDir(),
		Phases: []labbench.Phase{labbench.PhaseGoals, labbench.PhaseClimb},
	}
	var out bytes.Buffer
	res, err := labbench.Run(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), &out)
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Goals) != 1 {
		t.Fatalf("goals %+v", res.Goals)
	}
	if g := res.Goals[0]; !g.Met || len(g.TcpcopyCPU10k) != 1 || g.Median <= 0 || g.InterceptCPU10k <= 0 {
		t.Errorf("goal %+v", g)
	}
	if len(res.Steps) != 3 || !res.Steps[0].Goal || res.Steps[0].Mode != "short" || res.Steps[1].Goal {
		t.Errorf("steps %+v; want the goal's, then two of the climb", res.Steps)
	}
	if !bytes.Contains(out.Bytes(), []byte("\ngoal short ")) {
		t.Errorf("no goal line")
	}
	b, ok := res.Best["keepalive"]
	if !ok || b.Rate != 100 || res.Limit["keepalive"] != "cap" {
		t.Errorf("best %+v, limit %q; want 100/s, cap", b, res.Limit["keepalive"])
	}
	if b.TcpcopyCPU10k <= 0 || b.InterceptCPU10k <= 0 || b.TcpcopyRSS <= 0 || b.Fidelity != 100 {
		t.Errorf("best step figures %+v", b)
	}
	if len(res.Files) != 2 {
		t.Errorf("files %v", res.Files)
	}
}
