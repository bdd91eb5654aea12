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

// TestBench runs a small bench with the real binaries: two low rates of
// keep-alive connections, both pass, so the limit is the cap.
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
		Budget: time.Minute,
		OutDir: t.TempDir(),
	}
	var out bytes.Buffer
	res, err := labbench.Run(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)), &out)
	t.Log(out.String())
	if err != nil {
		t.Fatal(err)
	}
	b, ok := res.Best["keepalive"]
	if !ok || b.Rate != 100 || res.Limit["keepalive"] != "cap" || len(res.Steps) != 2 {
		t.Errorf("best %+v, limit %q, %d steps; want 100/s, cap, 2", b, res.Limit["keepalive"], len(res.Steps))
	}
	if b.TcpcopyCPU10k <= 0 || b.InterceptCPU10k <= 0 || b.TcpcopyRSS <= 0 || b.Fidelity != 100 {
		t.Errorf("best step figures %+v", b)
	}
	if len(res.Files) != 2 {
		t.Errorf("files %v", res.Files)
	}
}
