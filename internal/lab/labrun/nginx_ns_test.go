package labrun_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
)

// TestRunNginxTarget runs nginx as the target server in a lab without
// copiers: requests sent to it from inside the target namespace reach the
// recorder behind it with the client's address, StopTarget, KillTarget and
// StartTarget act on nginx, the report names it, and no nginx process is
// left once Run returns.
func TestRunNginxTarget(t *testing.T) {
	needRoot(t)
	if _, err := labrun.FindNginx(); err != nil {
		t.Skip(err)
	}
	cfg := config(t)
	cfg.TargetServer = "nginx-kr100"
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var pids []int
	ask := func(ctx context.Context, lab *labrun.Lab, n int) error {
		url := "http://" + lab.Vars["target.online_v4"] + ":8080"
		cmd := lab.Topo.Command(ctx, netlab.Target, self, "load", "--url", url, "--max", strconv.Itoa(n), "--rate", "0",
			"--mode", "keepalive", "--per-conn", "150", "--concurrency", "1", "--id-prefix", "direct")
		cmd.Env = append(os.Environ(), labrun.ChildEnv+"=1")
		out, err := cmd.CombinedOutput()
		if err != nil || !strings.Contains(string(out), fmt.Sprintf("%d requests, %d ok", n, n)) {
			return fmt.Errorf("load to nginx: %v: %s", err, out)
		}
		b, err := os.ReadFile(filepath.Join(lab.Topo.Dir, "nginx", "nginx.pid"))
		if err != nil {
			return err
		}
		pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
		if err != nil {
			return err
		}
		pids = append(pids, pid)
		return nil
	}
	cfg.During = func(ctx context.Context, lab *labrun.Lab) error {
		if err := ask(ctx, lab, 150); err != nil { // nginx closes after 100: two connections
			return err
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
		if err := lab.StartTarget(ctx); err != nil {
			return err
		}
		return ask(ctx, lab, 3)
	}
	rep, err := labrun.Run(context.Background(), cfg, logger(t))
	if err != nil {
		t.Fatal(err)
	}
	s := rep.Server
	if s.Name != "nginx-kr100" || !strings.HasPrefix(s.Software, "nginx 1.") || !strings.Contains(s.Limits, "keepalive_requests 100") {
		t.Errorf("server %+v", s)
	}
	if s.Proc == nil || s.Proc.Restarts != 2 || s.Proc.Exit != "" {
		t.Errorf("nginx %+v: want 2 restarts and no unexpected exit", s.Proc)
	}
	entries, err := recorder.ReadLog(filepath.Join(rep.Dir, "target.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	remotes := map[string]bool{}
	for _, e := range entries {
		if !strings.HasPrefix(e.ID, "direct-") || !strings.HasPrefix(e.Remote, "198.51.100.2:") || e.Local != "198.51.100.2:8080" {
			t.Errorf("recorded %+v: want the client's address, not nginx's", e)
		}
		remotes[e.Remote] = true
	}
	if len(entries) != 153 || len(remotes) != 3 {
		t.Errorf("%d requests on %d connections at the target, want 153 on 3", len(entries), len(remotes))
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, 0); !errors.Is(err, syscall.ESRCH) {
			t.Errorf("nginx pid %d still there after the run: %v", pid, err)
		}
	}
	for _, p := range rep.Problems {
		if strings.HasPrefix(p, "nginx") {
			t.Errorf("problem: %s", p)
		}
	}
	checkGone(t, rep.ID)
}
