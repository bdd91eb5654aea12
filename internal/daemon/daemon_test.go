package daemon

import (
	"context"
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
