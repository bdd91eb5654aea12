package netlab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Command returns a command that runs name inside namespace ns (a role or a
// namespace name) through "ip netns exec". The process gets its own process
// group and SIGKILL when this process dies (Linux parent-death signal).
// Canceling ctx, or closing the topology, sends SIGTERM to the group, then
// SIGKILL to the leader after the grace period (exec.Cmd.WaitDelay). The
// caller owns Start and Wait. An unknown namespace or a closed topology
// makes Start fail: nothing ever runs in the host namespace by accident.
//
// Each Command registers a small callback on the topology's lifetime that
// stays until Close or until ctx ends; use Run for short commands in loops.
func (t *Topology) Command(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	cmd, _ := t.command(ctx, ns, name, args...)
	return cmd
}

// command is Command plus a release function that drops the link to the
// topology's lifetime once the command is done.
func (t *Topology) command(ctx context.Context, ns, name string, args ...string) (*exec.Cmd, func()) {
	full, err := t.NS(ns)
	if err == nil && t.Closed() {
		err = errClosed
	}
	ctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(t.life, cancel)
	release := func() {
		stop()
		cancel()
	}
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", full, name}, args...)...)
	if err != nil {
		cmd.Err = err
	}
	cmd.SysProcAttr = procAttr()
	cmd.Cancel = func() error {
		if err := syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
			return err
		}
		return nil
	}
	cmd.WaitDelay = t.grace
	return cmd, release
}

// Run runs name in namespace ns to completion and returns its combined
// output. The error names the command and carries its output.
func (t *Topology) Run(ctx context.Context, ns, name string, args ...string) ([]byte, error) {
	cmd, release := t.command(ctx, ns, name, args...)
	out, err := cmd.CombinedOutput()
	release()
	if err != nil {
		return out, fmt.Errorf("netlab: in %s: %s %s: %w: %s", ns, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return out, nil
}

// Start starts name in namespace ns in the background, in its own process
// group, with stdout and stderr going to files in Dir. Close stops it.
func (t *Topology) Start(ns, name string, args ...string) (*Proc, error) {
	return t.StartEnv(ns, nil, name, args...)
}

// StartEnv is Start with env ("KEY=value") added to this process's
// environment.
func (t *Topology) StartEnv(ns string, env []string, name string, args ...string) (*Proc, error) {
	full, err := t.NS(ns)
	if err != nil {
		return nil, err
	}
	role := strings.TrimPrefix(full, t.ID+"-")

	// Holding mu from the closing check to the registration means Close
	// either refuses this start or sees (and stops) the process.
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closing {
		return nil, errClosed
	}
	t.seq++
	base := filepath.Join(t.Dir, fmt.Sprintf("%02d-%s-%s", t.seq, role, filepath.Base(name)))
	stdout, err := os.Create(base + ".stdout")
	if err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	defer stdout.Close()
	stderr, err := os.Create(base + ".stderr")
	if err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	defer stderr.Close()

	cmd := exec.Command("ip", append([]string{"netns", "exec", full, name}, args...)...)
	cmd.Stdout = stdout
	cmd.Stderr = stderr
	cmd.SysProcAttr = procAttr()
	if len(env) > 0 {
		cmd.Env = append(os.Environ(), env...)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("netlab: start %s in %s: %w", name, role, err)
	}
	p := &Proc{
		NS:         role,
		Name:       name,
		Args:       args,
		Pid:        cmd.Process.Pid,
		StdoutPath: stdout.Name(),
		StderrPath: stderr.Name(),
		cmd:        cmd,
		grace:      t.grace,
		done:       make(chan struct{}),
	}
	t.procs[p] = struct{}{}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	go p.watchPeak()
	return p, nil
}

// peakEvery is how often a running process's peak RSS is sampled.
const peakEvery = 100 * time.Millisecond

// watchPeak samples the process's VmHWM until it exits, so that Usage has
// a peak RSS also for a process that exits by itself. ru_maxrss from wait4
// cannot be used: os/exec starts children with CLONE_VM|CLONE_VFORK, and
// execve records the high-water mark of that borrowed memory (this
// process's) in the child's maxrss, so a small child of a big parent
// reports the parent's peak.
func (p *Proc) watchPeak() {
	t := time.NewTicker(peakEvery)
	defer t.Stop()
	for {
		select {
		case <-p.done:
			return
		case <-t.C:
			_, _ = p.Sample()
		}
	}
}

// Proc is a process started by Topology.Start. Because "ip netns exec"
// execs the program in place, Pid is the program's own pid (and its process
// group id).
type Proc struct {
	NS         string   // role of the namespace it runs in
	Name       string   // program
	Args       []string // arguments after Name
	Pid        int
	StdoutPath string
	StderrPath string

	cmd   *exec.Cmd
	grace time.Duration
	done  chan struct{}
	err   error // from cmd.Wait; written before done is closed

	stopOnce sync.Once
	mu       sync.Mutex
	signaled bool
	peakRSS  int64 // bytes, highest VmHWM seen by Sample
}

// Done is closed when the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Running reports whether the process has not exited yet.
func (p *Proc) Running() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Wait waits for the process to exit and returns exec.Cmd.Wait's error.
func (p *Proc) Wait() error {
	<-p.done
	return p.err
}

// Signal sends sig to the process group while the leader has not been
// reaped (after that, the group id could in principle name someone else's
// processes, so nothing is sent).
func (p *Proc) Signal(sig syscall.Signal) error {
	if !p.Running() {
		return nil
	}
	p.mu.Lock()
	p.signaled = true
	p.mu.Unlock()
	if err := syscall.Kill(-p.Pid, sig); err != nil && !errors.Is(err, syscall.ESRCH) {
		return os.NewSyscallError("kill", err)
	}
	return nil
}

// Stop sends SIGTERM to the process group and SIGKILL after the grace
// period (SIGTERM, not SIGINT: background jobs may ignore SIGINT), then
// waits. It returns nil when the process exited with status 0 or died from
// the signals Stop sent, and an error carrying the tail of its stderr
// otherwise (for example when it had already failed on its own).
func (p *Proc) Stop() error {
	p.stopOnce.Do(func() {
		_ = p.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(p.grace):
			_ = p.Signal(syscall.SIGKILL)
		}
	})
	select {
	case <-p.done:
	case <-time.After(p.grace + 5*time.Second):
		return fmt.Errorf("netlab: %s (pid %d) did not exit after SIGKILL", p.Name, p.Pid)
	}
	return p.exitErr()
}

// Err returns nil while running; after exit, what Stop returns.
func (p *Proc) Err() error {
	if p.Running() {
		return nil
	}
	return p.exitErr()
}

func (p *Proc) exitErr() error {
	if p.err == nil {
		return nil
	}
	p.mu.Lock()
	signaled := p.signaled
	p.mu.Unlock()
	var ee *exec.ExitError
	if signaled && errors.As(p.err, &ee) {
		if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() &&
			(ws.Signal() == syscall.SIGTERM || ws.Signal() == syscall.SIGKILL) {
			return nil
		}
	}
	return fmt.Errorf("netlab: %s in %s: %w: %s", filepath.Base(p.Name), p.NS, p.err, p.StderrTail(512))
}

// StderrTail returns up to the last n bytes of the process's stderr file.
func (p *Proc) StderrTail(n int) string {
	b, err := os.ReadFile(p.StderrPath)
	if err != nil {
		return ""
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return strings.TrimSpace(string(b))
}

// Usage is the resource usage of a process.
type Usage struct {
	User    time.Duration `json:"user"`     // user CPU time
	System  time.Duration `json:"system"`   // system CPU time
	PeakRSS int64         `json:"peak_rss"` // bytes: the highest VmHWM sampled (every 100 ms and by Sample)
}

// CPU is user plus system time.
func (u Usage) CPU() time.Duration { return u.User + u.System }

// clockTick is USER_HZ, the unit of /proc/<pid>/stat times; 100 on every
// Linux architecture Go supports (the kernel scales to it for userspace).
const clockTick = 10 * time.Millisecond

// Sample reads the running process's CPU times from /proc/<pid>/stat and its
// peak RSS (VmHWM) from /proc/<pid>/status. Sample before stopping: a
// process's /proc entry vanishes when it is reaped. The highest VmHWM seen
// is kept for Usage.
func (p *Proc) Sample() (Usage, error) {
	if !p.Running() {
		return Usage{}, fmt.Errorf("netlab: %s has exited", p.Name)
	}
	var u Usage
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.Pid))
	if err != nil {
		return u, fmt.Errorf("netlab: %w", err)
	}
	// Fields after the command name, which is in parentheses and may hold
	// spaces: state is field 3, utime 14 and stime 15 (proc(5)).
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return u, fmt.Errorf("netlab: unexpected /proc/%d/stat", p.Pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 13 {
		return u, fmt.Errorf("netlab: unexpected /proc/%d/stat", p.Pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	st, _ := strconv.ParseInt(f[12], 10, 64)
	u.User = time.Duration(ut) * clockTick
	u.System = time.Duration(st) * clockTick

	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.Pid))
	if err != nil {
		return u, fmt.Errorf("netlab: %w", err)
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			u.PeakRSS = kb * 1024
		}
	}
	p.mu.Lock()
	if u.PeakRSS > p.peakRSS {
		p.peakRSS = u.PeakRSS
	}
	u.PeakRSS = p.peakRSS
	p.mu.Unlock()
	return u, nil
}

// Usage returns the process's resource usage: CPU times from wait4 after it
// has exited, from Sample while it runs; the peak RSS is the highest VmHWM
// sampled while it ran (see watchPeak: a process that grew in its last
// 100 ms and exited by itself may have peaked higher). Sample just before
// stopping a process for an exact figure.
func (p *Proc) Usage() Usage {
	if p.Running() {
		u, _ := p.Sample()
		return u
	}
	var u Usage
	if ps := p.cmd.ProcessState; ps != nil {
		u.User = ps.UserTime()
		u.System = ps.SystemTime()
	}
	p.mu.Lock()
	u.PeakRSS = p.peakRSS
	p.mu.Unlock()
	return u
}
