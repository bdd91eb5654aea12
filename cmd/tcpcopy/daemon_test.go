package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tcpcopy-go/tcpcopy/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// TestDaemonReportsStartErrors runs the real binary with -d: a start-up
// error of the background process comes back to the parent, which prints
// it and exits with its status (C TCPCopy forked first and exited 0).
func TestDaemonReportsStartErrors(t *testing.T) {
	bin := testbin.Build(t, "tcpcopy")
	tests := []struct {
		name     string
		args     []string
		root     bool
		wantCode int
		want     string
	}{
		{name: "unknown interface", args: []string{"-i", "eth999"}, wantCode: 1, want: "eth999"},
		{name: "bad log level", args: []string{"--log-level", "loud"}, wantCode: 2, want: `option --log-level: "loud" is not debug, info, warn or error`},
		{name: "metrics address not here", args: []string{"-i", "lo", "--metrics-addr", "192.0.2.254:9100"}, root: true, wantCode: 1, want: "metrics address"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.root && os.Geteuid() != 0 {
				t.Skip("needs root: opens a capture")
			}
			dir := t.TempDir()
			logf, pidf := filepath.Join(dir, "log"), filepath.Join(dir, "pid")
			args := append([]string{"-d", "-x", "80-203.0.113.20:8080", "-s", "127.0.0.1", "-l", logf, "-P", pidf}, tt.args...)
			out, err := exec.Command(bin, args...).CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode || !strings.Contains(string(out), tt.want) {
				t.Fatalf("tcpcopy %q: exit %d, output %q; want exit %d with %q", args, code, out, tt.wantCode, tt.want)
			}
			if code == 1 {
				if b, _ := os.ReadFile(logf); !strings.Contains(string(b), tt.want) {
					t.Errorf("log %q does not say %q", b, tt.want)
				}
			}
		})
	}
}
