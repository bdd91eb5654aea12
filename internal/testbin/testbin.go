// Package testbin builds the project's commands for integration tests, so
// that namespace tests run the real binaries.
package testbin

import (
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
)

var (
	mu    sync.Mutex
	built = map[string]string{}
	dir   string
)

// Build compiles the command cmd/<name> of this module once per test
// process and returns the binary's path. Several tests share the binaries;
// the package's TestMain calls Cleanup to remove them.
func Build(t testing.TB, name string) string {
	t.Helper()
	mu.Lock()
	defer mu.Unlock()
	if p, ok := built[name]; ok {
		return p
	}
	if dir == "" {
		d, err := os.MkdirTemp("", "tcpcopy-testbin-")
		if err != nil {
			t.Fatal(err)
		}
		dir = d
	}
	root := moduleRoot(t)
	out := filepath.Join(dir, name)
	cmd := exec.Command("go", "build", "-o", out, "./cmd/"+name)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s: %v\n%s", name, err, b)
	}
	built[name] = out
	return out
}

// moduleRoot finds the directory of go.mod above this source file.
func moduleRoot(t testing.TB) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("testbin: no caller information")
	}
	d := filepath.Dir(file)
	for !strings.HasSuffix(d, string(filepath.Separator)) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return d
		}
		d = filepath.Dir(d)
	}
	t.Fatal("testbin: go.mod not found")
	return ""
}

// Cleanup removes the binaries built so far.
func Cleanup() {
	mu.Lock()
	defer mu.Unlock()
	if dir != "" {
		os.RemoveAll(dir)
		dir = ""
		built = map[string]string{}
	}
}
