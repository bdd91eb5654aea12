package netlab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// netnsDir is where iproute2 keeps named namespaces.
const netnsDir = "/run/netns"

// ownerDirs are where owner files go: the first writable one is used and
// Cleanup looks in all of them.
var ownerDirs = []string{"/run/tcpcopy-lab", filepath.Join(os.TempDir(), "tcpcopy-lab")}

// owner is the content of an owner file, "<id>.json": who created the
// namespaces of topology id.
type owner struct {
	Pid        int       `json:"pid"`
	Start      uint64    `json:"start"` // /proc/<pid>/stat field 22: tells pid reuse apart
	Namespaces []string  `json:"namespaces"`
	Created    time.Time `json:"created"`
}

func nsExists(ns string) bool {
	_, err := os.Stat(filepath.Join(netnsDir, ns))
	return err == nil
}

func writeOwner(id string, namespaces []string) (string, error) {
	start, ok := procStartTime(os.Getpid())
	if !ok {
		return "", errors.New("netlab: cannot read own start time from /proc")
	}
	b, err := json.Marshal(owner{Pid: os.Getpid(), Start: start, Namespaces: namespaces, Created: time.Now()})
	if err != nil {
		return "", fmt.Errorf("netlab: %w", err)
	}
	var errs []error
	for _, dir := range ownerDirs {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			errs = append(errs, err)
			continue
		}
		path := filepath.Join(dir, id+".json")
		f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		_, werr := f.Write(b)
		if cerr := f.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			os.Remove(path)
			errs = append(errs, werr)
			continue
		}
		return path, nil
	}
	return "", fmt.Errorf("netlab: owner file: %w", errors.Join(errs...))
}

// procStartTime returns field 22 of /proc/<pid>/stat, the start time in
// clock ticks since boot; ok is false when the process does not exist.
func procStartTime(pid int) (uint64, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0, false
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, false
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 20 {
		return 0, false
	}
	v, err := strconv.ParseUint(f[19], 10, 64)
	return v, err == nil
}

func (o owner) alive() bool {
	st, ok := procStartTime(o.Pid)
	return ok && st == o.Start
}

// Cleanup deletes stale namespaces of this project: those named
// "<prefix>-<6 hex>-<role>" whose owner file exists and names a process
// that is no longer running. A namespace without an owner file, or whose
// creator still runs, is left alone. Empty prefix means DefaultPrefix. It
// returns the deleted namespace names. It does not kill processes: those a
// dead creator started got SIGKILL from the parent-death signal.
func Cleanup(ctx context.Context, prefix string) ([]string, error) {
	if prefix == "" {
		prefix = DefaultPrefix
	}
	if !validPrefix(prefix) {
		return nil, fmt.Errorf("netlab: bad prefix %q", prefix)
	}
	re := regexp.MustCompile(`^(` + regexp.QuoteMeta(prefix) + `-[0-9a-f]{6})-(client|online|target|assistant)$`)
	entries, err := os.ReadDir(netnsDir)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	byID := map[string][]string{}
	for _, e := range entries {
		if m := re.FindStringSubmatch(e.Name()); m != nil {
			byID[m[1]] = append(byID[m[1]], e.Name())
		}
	}
	var deleted []string
	var errs []error
	for id, names := range byID {
		path, o, ok := findOwner(id)
		if !ok || o.alive() {
			continue
		}
		failed := false
		for _, ns := range names {
			if !contains(o.Namespaces, ns) {
				continue
			}
			if _, err := runCmd(ctx, nil, "ip", "netns", "del", ns); err != nil && nsExists(ns) {
				errs = append(errs, err)
				failed = true
				continue
			}
			deleted = append(deleted, ns)
		}
		if !failed {
			os.Remove(path)
		}
	}
	// Owner files of dead creators whose namespaces are all gone.
	for _, dir := range ownerDirs {
		files, _ := filepath.Glob(filepath.Join(dir, prefix+"-*.json"))
		for _, f := range files {
			o, ok := readOwner(f)
			if !ok || o.alive() {
				continue
			}
			gone := true
			for _, ns := range o.Namespaces {
				gone = gone && !nsExists(ns)
			}
			if gone {
				os.Remove(f)
			}
		}
	}
	return deleted, errors.Join(errs...)
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

func findOwner(id string) (string, owner, bool) {
	for _, dir := range ownerDirs {
		path := filepath.Join(dir, id+".json")
		if o, ok := readOwner(path); ok {
			return path, o, true
		}
	}
	return "", owner{}, false
}

func readOwner(path string) (owner, bool) {
	var o owner
	b, err := os.ReadFile(path)
	if err != nil || json.Unmarshal(b, &o) != nil || o.Pid <= 0 {
		return owner{}, false
	}
	return o, true
}

// live holds this process's open topologies, for CloseAll.
var live struct {
	sync.Mutex
	m map[*Topology]struct{}
}

func register(t *Topology) {
	live.Lock()
	defer live.Unlock()
	if live.m == nil {
		live.m = make(map[*Topology]struct{})
	}
	live.m[t] = struct{}{}
}

func unregister(t *Topology) {
	live.Lock()
	defer live.Unlock()
	delete(live.m, t)
}

// CloseAll closes every topology of this process that is still open, for
// signal handlers and TestMain.
func CloseAll() error {
	live.Lock()
	ts := make([]*Topology, 0, len(live.m))
	for t := range live.m {
		ts = append(ts, t)
	}
	live.Unlock()
	var errs []error
	for _, t := range ts {
		errs = append(errs, t.Close())
	}
	return errors.Join(errs...)
}

var signalOnce sync.Once

// closeOnSignal makes the first SIGINT or SIGTERM close every open topology
// and then kill the process with that signal, as it would have without the
// handler. go test would otherwise die on Ctrl-C without running Cleanup
// functions.
func closeOnSignal() {
	signalOnce.Do(func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGINT, syscall.SIGTERM)
		go func() {
			sig := <-ch
			_ = CloseAll()
			signal.Reset(syscall.SIGINT, syscall.SIGTERM)
			_ = syscall.Kill(os.Getpid(), sig.(syscall.Signal))
		}()
	})
}

// TB is the part of testing.TB that NewForTest uses.
type TB interface {
	Helper()
	Skip(args ...any)
	Fatalf(format string, args ...any)
	Errorf(format string, args ...any)
	Logf(format string, args ...any)
	Cleanup(func())
	Failed() bool
	TempDir() string
}

// NewForTest builds a topology for a test: it skips the test when not root
// or without iproute2, removes stale namespaces of dead earlier runs, puts
// process output in tb.TempDir(), registers Close with tb.Cleanup (logging
// the stderr of every started process when the test failed), and closes the
// topology on SIGINT or SIGTERM too.
func NewForTest(tb TB, opts Options) *Topology {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root: builds network namespaces")
	}
	if _, err := os.Stat("/proc/self/ns/net"); err != nil {
		tb.Skip("needs Linux network namespaces")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		tb.Skip("needs iproute2 (ip)")
	}
	closeOnSignal()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if gone, err := Cleanup(ctx, opts.Prefix); err != nil {
		tb.Logf("netlab: stale namespace cleanup: %v", err)
	} else if len(gone) > 0 {
		tb.Logf("netlab: deleted stale namespaces %v", gone)
	}
	if opts.Dir == "" {
		opts.Dir = tb.TempDir()
	}
	t, err := New(ctx, opts)
	if err != nil {
		tb.Fatalf("netlab: %v", err)
	}
	tb.Cleanup(func() {
		if err := t.Close(); err != nil {
			tb.Errorf("netlab: close: %v", err)
		}
		if tb.Failed() {
			t.mu.Lock()
			for p := range t.procs {
				tb.Logf("netlab: %s %s in %s, stderr:\n%s", p.Name, strings.Join(p.Args, " "), p.NS, p.StderrTail(4096))
			}
			t.mu.Unlock()
		}
	})
	return t
}
