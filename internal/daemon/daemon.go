// Package daemon implements the daemons' -d (run in the background) and -P
// (pid file) options.
//
// A Go process cannot fork safely, so Background re-executes the program
// in a new session with its standard streams on /dev/null and an
// environment marker, and waits until the child says it is ready: the
// child reports through a pipe (its file descriptor 3) either that it is up
// (Ready: capturing and listening) or why it stops (ReportExit: the exit
// status and the one-line message it would have printed). Only then does
// the original process exit, with the child's status, so that `-d` never
// hides a start-up error. C TCPCopy forked before checking most of its
// setup and exited 0. C TCPCopy parses -P but never writes the file; we
// write it, and remove it at exit.
package daemon

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// envMarker tells the re-executed child that it is the background copy.
const envMarker = "TCPCOPY_GO_BACKGROUND"

// envReadyFD names the child's end of the readiness pipe.
const envReadyFD = "TCPCOPY_GO_READY_FD"

// readyFD is the descriptor of the readiness pipe in the child (the first
// of exec.Cmd.ExtraFiles).
const readyFD = 3

// ReadyTimeout bounds the parent's wait for the child's readiness.
const ReadyTimeout = 20 * time.Second

// The child's state, read from the environment at start; the variables
// are then removed so that no process the child starts inherits them.
var (
	isChild bool
	ready   struct {
		sync.Mutex
		f *os.File // nil once reported, or when not a child
	}
)

func init() {
	if os.Getenv(envMarker) != "1" {
		return
	}
	isChild = true
	if os.Getenv(envReadyFD) == strconv.Itoa(readyFD) {
		syscall.CloseOnExec(readyFD)
		ready.f = os.NewFile(readyFD, "ready")
	}
	os.Unsetenv(envMarker)
	os.Unsetenv(envReadyFD)
}

// IsChild reports whether this process is the background copy made by
// Background.
func IsChild() bool { return isChild }

// Ready tells the parent of -d that this process is up, once. It does
// nothing when the process is not a background child, or already reported.
func Ready() { report("ok\n") }

// ReportExit tells the parent of -d that this process stops before it was
// ready, with the exit status and the message to print. It does nothing
// when the process is not a background child, or already reported.
func ReportExit(code int, msg string) {
	report(fmt.Sprintf("exit %d %s\n", code, strings.ReplaceAll(msg, "\n", " ")))
}

func report(line string) {
	ready.Lock()
	defer ready.Unlock()
	if ready.f == nil {
		return
	}
	_, _ = io.WriteString(ready.f, line)
	ready.f.Close()
	ready.f = nil
}

// ExitError is a background child that did not come up: the parent exits
// with Code after printing Msg (one line).
type ExitError struct {
	Code int
	Msg  string
}

func (e *ExitError) Error() string { return e.Msg }

// Background starts this program again, with the same arguments, detached
// in a new session, and waits up to ReadyTimeout for it to report (see the
// package doc). It returns the child's pid when the child is up, and an
// *ExitError when it stopped or did not report in time (it is then left
// running). In the child (IsChild) it must not be called.
func Background() (int, error) {
	return background(os.Args[1:], ReadyTimeout)
}

func background(args []string, timeout time.Duration) (int, error) {
	name := filepath.Base(os.Args[0])
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("background: %w", err)
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("background: %w", err)
	}
	defer null.Close()
	pr, pw, err := os.Pipe()
	if err != nil {
		return 0, fmt.Errorf("background: %w", err)
	}
	defer pr.Close()
	cmd := exec.Command(exe, args...)
	cmd.Env = append(os.Environ(), envMarker+"=1", envReadyFD+"="+strconv.Itoa(readyFD))
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, null
	cmd.ExtraFiles = []*os.File{pw}
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return 0, fmt.Errorf("background: %w", err)
	}
	pid := cmd.Process.Pid
	_ = pr.SetReadDeadline(time.Now().Add(timeout))
	line, rerr := bufio.NewReader(io.LimitReader(pr, 64<<10)).ReadString('\n')
	switch {
	case line == "ok\n":
		_ = cmd.Process.Release()
		return pid, nil
	case strings.HasPrefix(line, "exit "):
		_ = cmd.Wait()
		codeStr, msg, _ := strings.Cut(strings.TrimSuffix(line[len("exit "):], "\n"), " ")
		code, err := strconv.Atoi(codeStr)
		if err != nil || code < 1 || code > 255 {
			code = 1
		}
		return 0, &ExitError{Code: code, Msg: msg}
	case errors.Is(rerr, os.ErrDeadlineExceeded):
		_ = cmd.Process.Release()
		return 0, &ExitError{Code: 1, Msg: fmt.Sprintf("%s: the background process (pid %d) did not report that it is up within %v; it was left running: see its log (-l)", name, pid, timeout)}
	}
	// The child closed the pipe without a word: it died.
	werr := cmd.Wait()
	return 0, &ExitError{Code: 1, Msg: fmt.Sprintf("%s: the background process exited before it was up (%v); see its log (-l)", name, werr)}
}

// PIDFile is a pid file written at start and removed at exit.
type PIDFile struct{ path string }

// WritePIDFile writes this process's pid to path. It refuses when the file
// names another process that is still running, so two daemons cannot share
// one pid file.
func WritePIDFile(path string) (*PIDFile, error) {
	if b, err := os.ReadFile(path); err == nil {
		if pid, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil && pid != os.Getpid() && alive(pid) {
			return nil, fmt.Errorf("pid file %s: process %d is running", path, pid)
		}
	}
	if err := os.WriteFile(path, []byte(strconv.Itoa(os.Getpid())+"\n"), 0o644); err != nil {
		return nil, fmt.Errorf("pid file: %w", err)
	}
	return &PIDFile{path: path}, nil
}

// Remove deletes the pid file if it still holds this process's pid.
func (p *PIDFile) Remove() error {
	if p == nil {
		return nil
	}
	b, err := os.ReadFile(p.path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil
		}
		return fmt.Errorf("pid file: %w", err)
	}
	if strings.TrimSpace(string(b)) != strconv.Itoa(os.Getpid()) {
		return nil
	}
	return os.Remove(p.path)
}

func alive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
