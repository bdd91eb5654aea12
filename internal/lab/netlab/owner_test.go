package netlab

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

func TestParseProcAddr(t *testing.T) {
	cases := []struct {
		name, in, want string
	}{
		{"v4 loopback", "0100007F:0050", "127.0.0.1:80"},
		{"v4 any", "00000000:1F90", "0.0.0.0:8080"},
		{"v4 doc", "0102000C0:0000", ""}, // malformed: 9 hex digits
		{"v6 any", "00000000000000000000000000000000:8EAC", "[::]:36524"},
		{"v6 doc", "B80D0120000001000000000001000000:0050", "[2001:db8:1::1]:80"},
	}
	for _, c := range cases {
		got, err := parseProcAddr(c.in)
		if c.want == "" {
			if err == nil {
				t.Errorf("%s: got %v, want an error", c.name, got)
			}
			continue
		}
		if err != nil || got.String() != c.want {
			t.Errorf("%s: got %v, %v; want %s", c.name, got, err, c.want)
		}
	}
}

// TestCleanupStale creates bare namespaces (no links) that look like stale
// topologies and checks that Cleanup deletes only the one whose owner died.
func TestCleanupStale(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces")
	}
	const prefix = "tcgclean"
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	newID := func() string {
		var b [3]byte
		rand.Read(b[:])
		return prefix + "-" + hex.EncodeToString(b[:])
	}
	var made []string
	t.Cleanup(func() {
		for _, ns := range made {
			if nsExists(ns) {
				runCmd(context.Background(), nil, "ip", "netns", "del", ns)
			}
		}
	})
	mk := func(id string, o *owner) string {
		ns := id + "-client"
		if o != nil {
			o.Namespaces = []string{ns}
			b, _ := json.Marshal(o)
			path := filepath.Join(ownerDirs[0], id+".json")
			if err := os.MkdirAll(ownerDirs[0], 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { os.Remove(path) })
		}
		if _, err := runCmd(ctx, nil, "ip", "netns", "add", ns); err != nil {
			t.Fatal(err)
		}
		made = append(made, ns)
		return ns
	}

	// A process that has exited: its pid and start time name a dead owner.
	sleeper := exec.Command("sleep", "10")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	start, ok := procStartTime(sleeper.Process.Pid)
	if !ok {
		t.Fatal("no start time for child")
	}
	sleeper.Process.Kill()
	sleeper.Wait()
	me, _ := procStartTime(os.Getpid())

	dead := mk(newID(), &owner{Pid: sleeper.Process.Pid, Start: start})
	reused := mk(newID(), &owner{Pid: os.Getpid(), Start: me + 1}) // pid reused by someone else
	alive := mk(newID(), &owner{Pid: os.Getpid(), Start: me})
	foreign := mk(newID(), nil)

	gone, err := Cleanup(ctx, prefix)
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(gone)
	want := []string{dead, reused}
	slices.Sort(want)
	if !slices.Equal(gone, want) {
		t.Errorf("deleted %v, want %v", gone, want)
	}
	for _, ns := range want {
		if nsExists(ns) {
			t.Errorf("%s still exists", ns)
		}
	}
	for _, ns := range []string{alive, foreign} {
		if !nsExists(ns) {
			t.Errorf("%s was deleted: not stale", ns)
		}
	}
}
