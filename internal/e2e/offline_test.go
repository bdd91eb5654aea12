package e2e

// Offline replay in the lab: a test records live traffic (the load against
// the online recorder, captured on online's client-side interface, both
// directions), then the real tcpcopy binary replays the capture file in a
// fresh lab, where intercept and the target recorder run as usual, and the
// test checks what the target received.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
	"github.com/tcpcopy-go/tcpcopy/internal/testbin"
)

// offRecording is a capture of live lab traffic and what the online
// recorder saw meanwhile.
type offRecording struct {
	pcap    string
	online  []recorder.Entry
	packets int
}

// offRecord builds a lab without tcpcopy, runs lo against the online
// recorder while capturing online's client-side interface into a pcap
// file, and tears the lab down.
func offRecord(t *testing.T, lo load.Options) *offRecording {
	t.Helper()
	topo := netlab.NewForTest(t, netlab.Options{GRO: true})
	defer topo.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	env := []string{labrun.ChildEnv + "=1"}
	dir := t.TempDir()
	rec := &offRecording{pcap: filepath.Join(dir, "live.pcap")}
	onlineLog := filepath.Join(dir, "online.jsonl")
	srv, err := topo.StartEnv(netlab.Online, env, self, labrun.ServeArgs(onlineLog, "192.0.2.1:80")...)
	if err != nil {
		t.Fatal(err)
	}
	if err := topo.WaitListening(ctx, netlab.Online, labrun.OnlinePort); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(rec.pcap)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	pr, err := labrun.RecordPcap(topo.Online.Name, netlab.IfToClient, f)
	if err != nil {
		t.Fatal(err)
	}
	lo.URL = "http://192.0.2.1:80"
	loader, err := topo.StartEnv(netlab.Client, env, self, labrun.LoadArgs(lo, filepath.Join(dir, "load.jsonl"))...)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-loader.Done():
	case <-ctx.Done():
		t.Fatal("the load did not end")
	}
	if err := loader.Err(); err != nil {
		t.Fatalf("load: %v", err)
	}
	time.Sleep(200 * time.Millisecond) // the last FINs
	if rec.packets, err = pr.Close(); err != nil {
		t.Fatal(err)
	}
	if err := srv.Stop(); err != nil {
		t.Fatal(err)
	}
	if rec.online, err = recorder.ReadLog(onlineLog); err != nil {
		t.Fatal(err)
	}
	st, _ := f.Stat()
	t.Logf("recorded %d requests, %d packets (%d bytes)", len(rec.online), rec.packets, st.Size())
	if len(rec.online) < 20 {
		t.Fatalf("only %d requests recorded", len(rec.online))
	}
	return rec
}

// offResult is what one replay produced.
type offResult struct {
	target  []recorder.Entry
	summary map[string]any // tcpcopy's "offline replay finished" line
	elapsed time.Duration  // tcpcopy's run, start to exit
	exit    error          // tcpcopy's exit status, with the end of its stderr
}

// offReplay replays rec with the real tcpcopy (extra arguments added) in a
// fresh lab with intercept and the target recorder, waits for tcpcopy to
// finish by itself, and returns what the target recorded.
func offReplay(t *testing.T, rec *offRecording, extra ...string) *offResult {
	t.Helper()
	res := offReplayFile(t, rec.pcap, extra...)
	if res.exit != nil {
		t.Fatalf("tcpcopy %v: %v", extra, res.exit)
	}
	return res
}

// offReplayFile is offReplay for any file; the result holds tcpcopy's
// exit error.
func offReplayFile(t *testing.T, pcap string, extra ...string) *offResult {
	t.Helper()
	return offReplayIn(t, netlab.Options{GRO: true}, pcap, extra...)
}

// offReplayIn is offReplayFile in a lab built with opts (a target MTU,
// say).
func offReplayIn(t *testing.T, opts netlab.Options, pcap string, extra ...string) *offResult {
	t.Helper()
	tcpcopyBin, interceptBin := testbin.Build(t, "tcpcopy"), testbin.Build(t, "intercept")
	topo := netlab.NewForTest(t, opts)
	defer topo.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	targetLog := filepath.Join(dir, "target.jsonl")
	srv, err := topo.StartEnv(netlab.Target, []string{labrun.ChildEnv + "=1"}, self, labrun.ServeArgs(targetLog, ":8080")...)
	if err != nil {
		t.Fatal(err)
	}
	if err := topo.WaitListening(ctx, netlab.Target, labrun.TargetPort); err != nil {
		t.Fatal(err)
	}
	vars := labrun.Vars(topo)
	iargs, err := labrun.Expand(labrun.DefaultInterceptArgs, vars)
	if err != nil {
		t.Fatal(err)
	}
	icpt, err := topo.Start(netlab.Assistant, interceptBin, iargs...)
	if err != nil {
		t.Fatal(err)
	}
	if err := topo.WaitListening(ctx, netlab.Assistant, labrun.InterceptPort); err != nil {
		t.Fatal(err)
	}
	args, err := labrun.Expand(append([]string{"-x", "80-{target.online_v4}:8080", "-s", "{assistant.online_v4}",
		"-i", pcap, "--log-format", "json", "--stats-interval", "0"}, extra...), vars)
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	tc, err := topo.Start(netlab.Online, tcpcopyBin, args...)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case <-tc.Done():
	case <-ctx.Done():
		t.Fatalf("tcpcopy %v did not finish the replay: %s", args, tc.StderrTail(2000))
	}
	res := &offResult{elapsed: time.Since(start), exit: tc.Err()}
	if err := icpt.Stop(); err != nil {
		t.Errorf("intercept: %v", err)
	}
	if err := srv.Stop(); err != nil {
		t.Errorf("target recorder: %v", err)
	}
	if res.target, err = recorder.ReadLog(targetLog); err != nil {
		t.Fatal(err)
	}
	res.summary = offLogLine(t, tc.StderrPath, "offline replay finished")
	if res.summary == nil {
		t.Fatalf("no summary in tcpcopy's log: %s", tc.StderrTail(2000))
	}
	t.Logf("tcpcopy %s: %v in %v", strings.Join(extra, " "), offSummaryText(res.summary), res.elapsed.Round(time.Millisecond))
	return res
}

// offLogLine returns the attributes of the last JSON log line with msg.
func offLogLine(t *testing.T, path, msg string) map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var found map[string]any
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil && m["msg"] == msg {
			found = m
		}
	}
	return found
}

func offSummaryText(m map[string]any) string {
	var keys []string
	for k := range m {
		if k != "time" && k != "level" && k != "msg" {
			keys = append(keys, k)
		}
	}
	slices.Sort(keys)
	var b strings.Builder
	for _, k := range keys {
		fmt.Fprintf(&b, "%s=%v ", k, m[k])
	}
	return b.String()
}

// offNum reads a number attribute of a summary.
func offNum(t *testing.T, m map[string]any, key string) float64 {
	t.Helper()
	switch v := m[key].(type) {
	case float64:
		return v
	case string:
		var f float64
		if _, err := fmt.Sscan(v, &f); err == nil {
			return f
		}
	}
	t.Fatalf("summary has no number %q: %v", key, m)
	return 0
}

// offCheckCopies checks that every request the online server recorded
// reached the target exactly copies times, byte-identical, and nothing
// else did; and that no session failed.
func offCheckCopies(t *testing.T, rec *offRecording, res *offResult, copies int) {
	t.Helper()
	c := recorder.Compare(rec.online, res.target)
	if c.Matched != c.Online || c.Missing != 0 || c.Mismatched != 0 || c.Unexpected != 0 || c.Duplicates != (copies-1)*c.Online {
		t.Errorf("online %d: matched %d, missing %d %v, different %d, unexpected %d, duplicates %d (want %d)",
			c.Online, c.Matched, c.Missing, c.MissingIDs, c.Mismatched, c.Unexpected, c.Duplicates, (copies-1)*c.Online)
	}
	if n := offNum(t, res.summary, "failed") + offNum(t, res.summary, "partial"); n != 0 {
		t.Errorf("%v sessions were not reproduced: %s", n, offSummaryText(res.summary))
	}
}

// offConnections groups request ids by the connection (remote endpoint)
// that carried them.
func offConnections(es []recorder.Entry) map[string][]string {
	m := map[string][]string{}
	for _, e := range es {
		m[e.Remote] = append(m[e.Remote], e.ID)
	}
	for k := range m {
		m[k] = dedup(m[k])
	}
	return m
}

// offCheckPace checks that the requests reached the target on the
// capture's timing divided by accel: request i, which reached the online
// server o_i after the first, reached the target o_i/accel after the
// first copy, within 40 ms. One late response record (intercept) can hold
// a request for up to a second (tcpstate's ResponseWait), so 90 % of the
// requests must be on time, not all.
func offCheckPace(t *testing.T, rec *offRecording, res *offResult, accel float64) {
	t.Helper()
	first := func(es []recorder.Entry) time.Time {
		f := es[0].Time
		for _, e := range es {
			if e.Time.Before(f) {
				f = e.Time
			}
		}
		return f
	}
	on, tg := first(rec.online), first(res.target)
	offset := map[string]time.Duration{}
	for _, e := range rec.online {
		offset[e.ID] = time.Duration(float64(e.Time.Sub(on)) / accel)
	}
	onTime := 0
	var worst time.Duration
	for _, e := range res.target {
		d := e.Time.Sub(tg) - offset[e.ID]
		if d < 0 {
			d = -d
		}
		if d < 40*time.Millisecond {
			onTime++
		}
		worst = max(worst, d)
	}
	t.Logf("-a %g: %d of %d requests within 40 ms of the capture's timing, worst %v", accel, onTime, len(res.target), worst.Round(time.Millisecond))
	if onTime < len(res.target)*9/10 {
		t.Errorf("only %d of %d requests reached the target on the capture's timing divided by %g", onTime, len(res.target), accel)
	}
}

func TestOfflineReplay(t *testing.T) {
	needRoot(t)
	rec := offRecord(t, load.Options{
		Rate: 50, Duration: 2 * time.Second, MaxRequests: 100, Mode: load.KeepAlive, RequestsPerConn: 5,
		BodySizes: []int{0, 1, 100, 1460, 4096, 65536, 300000}, Concurrency: 4,
	})
	t.Run("as recorded", func(t *testing.T) {
		res := offReplay(t, rec)
		offCheckCopies(t, rec, res, 1)
		// The copies keep the client endpoints: every connection carried
		// the same requests, in the same order.
		on, tg := offConnections(rec.online), offConnections(res.target)
		for remote, ids := range on {
			if !slices.Equal(tg[remote], ids) {
				t.Errorf("connection %s: target saw %v, online %v", remote, tg[remote], ids)
			}
		}
		offCheckPace(t, rec, res, 1)
	})
	t.Run("-a 10", func(t *testing.T) {
		res := offReplay(t, rec, "-a", "10")
		offCheckCopies(t, rec, res, 1)
		offCheckPace(t, rec, res, 10)
	})
	t.Run("-T 2", func(t *testing.T) {
		res := offReplay(t, rec, "-T", "2", "-a", "2")
		offCheckCopies(t, rec, res, 2)
		if n := offNum(t, res.summary, "passes"); n != 2 {
			t.Errorf("%v passes", n)
		}
		// The second pass used other client ports: twice as many
		// endpoints as connections.
		if on, tg := len(offConnections(rec.online)), len(offConnections(res.target)); tg != 2*on {
			t.Errorf("%d connections replayed twice on %d endpoints, want %d", on, tg, 2*on)
		}
	})
	t.Run("damaged file", func(t *testing.T) {
		// The capture cut in the middle of a record: what was read is
		// replayed, then tcpcopy fails naming the file and the offset.
		b, err := os.ReadFile(rec.pcap)
		if err != nil {
			t.Fatal(err)
		}
		cut := filepath.Join(t.TempDir(), "cut.pcap")
		if err := os.WriteFile(cut, b[:len(b)/2], 0o644); err != nil {
			t.Fatal(err)
		}
		res := offReplayFile(t, cut, "-a", "4")
		if res.exit == nil || !strings.Contains(res.exit.Error(), "exit status 1") ||
			!strings.Contains(res.exit.Error(), cut+": offset ") {
			t.Errorf("exit %v, want status 1 and the file's name and offset", res.exit)
		}
		// A request whose body the cut split arrives in part (at most one
		// per connection open at the cut: the load's concurrency).
		if c := recorder.Compare(rec.online, res.target); c.Matched == 0 || c.Mismatched > 4 || c.Unexpected != 0 {
			t.Errorf("before the damage: matched %d, different %d, unexpected %d", c.Matched, c.Mismatched, c.Unexpected)
		}
	})
}

// TestOfflineMultiply replays a capture of one client address with -n 3:
// three full copies of every connection, on one address and on two.
func TestOfflineMultiply(t *testing.T) {
	needRoot(t)
	rec := offRecord(t, load.Options{
		Rate: 50, Duration: 2 * time.Second, MaxRequests: 100, Mode: load.Mixed, RequestsPerConn: 4,
		BodySizes: []int{0, 100, 4096, 65536}, Concurrency: 4,
	})
	t.Run("-n 3", func(t *testing.T) {
		res := offReplay(t, rec, "-n", "3")
		offCheckMultiplied(t, rec, res, 3, "192.0.2.10:")
	})
	t.Run("-n 3 with two client addresses", func(t *testing.T) {
		res := offReplay(t, rec, "-n", "3", "-c", "192.0.2.201,192.0.2.202")
		offCheckMultiplied(t, rec, res, 3, "192.0.2.201:", "192.0.2.202:")
	})
}

// offCheckMultiplied checks a replay with -n copies whose client
// endpoints start with one of prefixes.
func offCheckMultiplied(t *testing.T, rec *offRecording, res *offResult, copies int, prefixes ...string) {
	t.Helper()
	offCheckCopies(t, rec, res, copies)
	// No collision: every endpoint at the target carried the requests
	// of exactly one online connection, and each online connection
	// was copied on copies endpoints.
	online := map[string]string{} // id -> online connection
	for remote, ids := range offConnections(rec.online) {
		for _, id := range ids {
			online[id] = remote
		}
	}
	perConn := map[string]int{}
	for remote, ids := range offConnections(res.target) {
		if !slices.ContainsFunc(prefixes, func(p string) bool { return strings.HasPrefix(remote, p) }) {
			t.Errorf("copy from %s, want %v", remote, prefixes)
		}
		conn := online[ids[0]]
		for _, id := range ids {
			if online[id] != conn {
				t.Errorf("endpoint %s carried requests of two connections (%s and %s): a collision", remote, conn, online[id])
				break
			}
		}
		perConn[conn]++
	}
	for conn, n := range perConn {
		if n != copies {
			t.Errorf("connection %s was copied on %d endpoints, want %d", conn, n, copies)
		}
	}
	if m, want := res.summary["multiplication"], fmt.Sprintf("%d.00", copies); m != want {
		t.Errorf("multiplication %v, want %s", m, want)
	}
	if n := offNum(t, res.summary, "endpoints_exhausted"); n != 0 {
		t.Errorf("%v copies without an endpoint", n)
	}
}
