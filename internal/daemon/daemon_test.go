package daemon

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestPIDFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.pid")
	p, err := WritePIDFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if got := strings.TrimSpace(string(b)); got != strconv.Itoa(os.Getpid()) {
		t.Errorf("pid file holds %q", got)
	}
	// Our own pid in the file is not a conflict.
	if _, err := WritePIDFile(path); err != nil {
		t.Errorf("rewrite own pid file: %v", err)
	}
	if err := p.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("pid file still there: %v", err)
	}
}

func TestPIDFileOfLiveProcess(t *testing.T) {
	path := filepath.Join(t.TempDir(), "x.pid")
	// pid 1 is always running.
	if err := os.WriteFile(path, []byte("1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := WritePIDFile(path); err == nil || !strings.Contains(err.Error(), "process 1 is running") {
		t.Errorf("WritePIDFile over a live pid: err = %v", err)
	}
	// A file that is not ours is left alone by Remove.
	p := &PIDFile{path: path}
	if err := p.Remove(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("foreign pid file removed: %v", err)
	}
}

func TestEvery(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	Every(ctx, 0, func(time.Time) { n++ }) // never
	done := make(chan struct{})
	go func() {
		Every(ctx, time.Millisecond, func(time.Time) {
			if n++; n == 3 {
				cancel()
			}
		})
		close(done)
	}()
	<-done
	if n < 3 {
		t.Errorf("fn ran %d times before the cancel", n)
	}
}

// TestMain lets the background tests re-execute this binary as the child
// of -d, in the mode DAEMON_TEST_CHILD names.
func TestMain(m *testing.M) {
	switch os.Getenv("DAEMON_TEST_CHILD") {
	case "":
		os.Exit(m.Run())
	case "ready":
		if !IsChild() || os.Getenv(envMarker) != "" {
			os.Exit(5) // the marker must be read, then removed
		}
		Ready()
		Ready() // a second report is ignored
		os.Exit(0)
	case "usage":
		ReportExit(2, "prog: option -i: bad (see prog -h)")
		os.Exit(2)
	case "fails":
		ReportExit(1, "prog: capture on eth999: no such device")
		os.Exit(1)
	case "dies":
		os.Exit(3)
	case "silent":
		time.Sleep(2 * time.Second)
		os.Exit(0)
	}
}

// TestBackground: the parent of -d waits for the child's word and exits
// with its status, so that a start-up error is never hidden.
func TestBackground(t *testing.T) {
	tests := []struct {
		mode     string
		timeout  time.Duration
		wantCode int // 0: up
		wantMsg  string
	}{
		{"ready", 10 * time.Second, 0, ""},
		{"usage", 10 * time.Second, 2, "prog: option -i: bad (see prog -h)"},
		{"fails", 10 * time.Second, 1, "prog: capture on eth999: no such device"},
		{"dies", 10 * time.Second, 1, "exited before it was up (exit status 3)"},
		{"silent", 300 * time.Millisecond, 1, "did not report that it is up within 300ms"},
	}
	for _, tt := range tests {
		t.Run(tt.mode, func(t *testing.T) {
			t.Setenv("DAEMON_TEST_CHILD", tt.mode)
			start := time.Now()
			pid, err := background([]string{"-test.run=^$"}, tt.timeout)
			if time.Since(start) > tt.timeout+5*time.Second {
				t.Errorf("took %v", time.Since(start))
			}
			if tt.wantCode == 0 {
				if err != nil || pid <= 0 {
					t.Fatalf("background = %d, %v", pid, err)
				}
				return
			}
			var ee *ExitError
			if !errors.As(err, &ee) || ee.Code != tt.wantCode || !strings.Contains(ee.Msg, tt.wantMsg) {
				t.Fatalf("background = %d, %v; want exit %d with %q", pid, err, tt.wantCode, tt.wantMsg)
			}
		})
	}
}

// TestReportNotChild: outside a background child the reports do nothing.
func TestReportNotChild(t *testing.T) {
	if IsChild() {
		t.Skip("running as a child")
	}
	Ready()
	ReportExit(1, "nothing")
}
