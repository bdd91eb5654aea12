// Package daemon implements the daemons' -d (run in the background) and -P
// (pid file) options.
//
// A Go process cannot fork safely, so Background re-executes the program
// in a new session with its standard streams on /dev/null and an
// environment marker, and the original process exits. C TCPCopy parses -P
// but never writes the file; we write it, and remove it at exit.
package daemon

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
)

// envMarker tells the re-executed child that it is the background copy.
const envMarker = "TCPCOPY_GO_BACKGROUND"

// IsChild reports whether this process is the background copy made by
// Background.
func IsChild() bool { return os.Getenv(envMarker) == "1" }

// Background starts this program again, with the same arguments, detached
// in a new session, and returns its pid; the caller then exits. In the
// child (IsChild) it must not be called.
func Background() (int, error) {
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("background: %w", err)
	}
	null, err := os.OpenFile(os.DevNull, os.O_RDWR, 0)
	if err != nil {
		return 0, fmt.Errorf("background: %w", err)
	}
	defer null.Close()
	cmd := exec.Command(exe, os.Args[1:]...)
	cmd.Env = append(os.Environ(), envMarker+"=1")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = null, null, null
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return 0, fmt.Errorf("background: %w", err)
	}
	pid := cmd.Process.Pid
	_ = cmd.Process.Release()
	return pid, nil
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
