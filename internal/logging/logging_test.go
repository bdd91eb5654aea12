package logging

import (
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestNewOptions(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		wantErr string
	}{
		{"defaults", Options{}, ""},
		{"json debug", Options{Format: "json", Level: "debug"}, ""},
		{"bad level", Options{Level: "loud"}, `log level "loud"`},
		{"bad format", Options{Format: "xml"}, `log format "xml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, _, err := New(tt.opts)
			if tt.wantErr == "" && err != nil {
				t.Fatalf("New: %v", err)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("New error = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestFileReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "x.log")
	log, f, err := New(Options{File: path, Format: "json"})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	log.Info("first")
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	if err := f.Reopen(); err != nil {
		t.Fatal(err)
	}
	log.Info("second")
	rotated, _ := os.ReadFile(path + ".1")
	current, _ := os.ReadFile(path)
	if !strings.Contains(string(rotated), `"msg":"first"`) || strings.Contains(string(rotated), "second") {
		t.Errorf("rotated file = %q", rotated)
	}
	if !strings.Contains(string(current), `"msg":"second"`) || strings.Contains(string(current), "first") {
		t.Errorf("current file = %q", current)
	}
}

func TestLimiter(t *testing.T) {
	l := NewLimiter(time.Second)
	t0 := time.Unix(100, 0)
	if ok, n := l.Allow(t0); !ok || n != 0 {
		t.Fatalf("first Allow = %v, %d", ok, n)
	}
	for i := range 5 {
		if ok, _ := l.Allow(t0.Add(time.Duration(i) * 100 * time.Millisecond)); ok {
			t.Fatalf("Allow %d inside the interval succeeded", i)
		}
	}
	if ok, n := l.Allow(t0.Add(time.Second)); !ok || n != 5 {
		t.Errorf("Allow after the interval = %v, %d; want true, 5", ok, n)
	}
	if a := testing.AllocsPerRun(100, func() { l.Allow(t0) }); a != 0 {
		t.Errorf("Allow allocates %v times", a)
	}
}

func TestWarner(t *testing.T) {
	var buf strings.Builder
	w := NewWarner(slog.New(slog.NewTextHandler(&buf, nil)), time.Minute)
	t0 := time.Unix(100, 0)
	ws := []Warning{{Kind: "a", Msg: "first cause", Attrs: []any{"n", 1}}, {Kind: "b", Msg: "second cause"}}
	w.Warn(t0, 3*time.Second, ws)
	w.Warn(t0.Add(time.Second), 3*time.Second, ws) // suppressed
	w.Warn(t0.Add(time.Minute), 3*time.Second, ws[:1])
	out := buf.String()
	if strings.Count(out, "first cause") != 2 || strings.Count(out, "second cause") != 1 {
		t.Errorf("logged:\n%s", out)
	}
	if !strings.Contains(out, "n=1 window=3s suppressed=1") {
		t.Errorf("attributes missing:\n%s", out)
	}
}
