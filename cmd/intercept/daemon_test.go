package main

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/testbin"
)

func TestMain(m *testing.M) {
	code := m.Run()
	testbin.Cleanup()
	os.Exit(code)
}

// freePort returns a loopback TCP port nothing listens on now.
func freePort(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
}

// TestDaemonReportsStartErrors runs the real binary with -d: a start-up
// error of the background process comes back to the parent, which prints
// it and exits with its status; the error is in the -l log too, and no
// process stays behind. C intercept forked first and exited 0.
func TestDaemonReportsStartErrors(t *testing.T) {
	bin := testbin.Build(t, "intercept")
	root := os.Geteuid() == 0
	tests := []struct {
		name     string
		args     []string
		root     bool   // the case needs capture rights to get past the capture
		wantCode int    // 0: started
		want     string // in stderr (and the log)
	}{
		{name: "unknown interface", args: []string{"-i", "eth999"}, wantCode: 1, want: "eth999"},
		{name: "bad log format", args: []string{"-i", "lo", "--log-format", "xml"}, wantCode: 2, want: `option --log-format: "xml" is not text or json`},
		{name: "bind address not here", args: []string{"-i", "lo", "-b", "192.0.2.254"}, root: true, wantCode: 1, want: "listen for tcpcopy links"},
		{name: "metrics address not here", args: []string{"-i", "lo", "-b", "127.0.0.1", "--metrics-addr", "192.0.2.254:9101"}, root: true, wantCode: 1, want: "metrics address"},
		{name: "starts", args: []string{"-i", "lo", "-b", "127.0.0.1"}, root: true, wantCode: 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.root && !root {
				t.Skip("needs root: opens a capture")
			}
			dir := t.TempDir()
			logf, pidf := filepath.Join(dir, "log"), filepath.Join(dir, "pid")
			args := append([]string{"-d", "-F", "tcp and src port 8080", "-p", freePort(t), "-l", logf, "-P", pidf, "--stats-interval", "0"}, tt.args...)
			cmd := exec.Command(bin, args...)
			out, err := cmd.CombinedOutput()
			code := 0
			if ee, ok := err.(*exec.ExitError); ok {
				code = ee.ExitCode()
			} else if err != nil {
				t.Fatal(err)
			}
			if code != tt.wantCode || !strings.Contains(string(out), tt.want) {
				t.Fatalf("intercept %q: exit %d, output %q; want exit %d with %q", args, code, out, tt.wantCode, tt.want)
			}
			if tt.wantCode == 0 {
				stopDaemon(t, pidf)
				return
			}
			if code == 1 { // the child ran: its log has the error, and it is gone
				if b, _ := os.ReadFile(logf); !strings.Contains(string(b), tt.want) {
					t.Errorf("log %q does not say %q", b, tt.want)
				}
				if _, err := os.Stat(pidf); !os.IsNotExist(err) {
					t.Errorf("pid file left behind: %v", err)
				}
			}
		})
	}
}

// stopDaemon stops the daemon named by the pid file and waits for it.
func stopDaemon(t *testing.T, pidf string) {
	t.Helper()
	b, err := os.ReadFile(pidf)
	if err != nil {
		t.Fatalf("no pid file after a start: %v", err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		t.Fatal(err)
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		t.Fatalf("the daemon is not running: %v", err)
	}
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			return
		}
	}
	syscall.Kill(pid, syscall.SIGKILL)
	t.Error("the daemon did not stop on SIGTERM")
}
