package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/hostile"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/labcli"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// Bounds the hostile run must keep intercept within. Its limits are set
// low for the run (below); the RSS bound leaves room for the Go runtime,
// the capture rings and the route floods' 2 x 20000 routes.
const (
	hostileMaxLinks = 32
	hostileMaxRSS   = 160 << 20
	hostileMaxFDs   = hostileMaxLinks + 32 // links, capture, listeners, runtime
	hostileMaxLog   = 400                  // lines of intercept's log in the run
)

// TestHostileClients runs the lab's copy with every hostile scenario
// beside it (tcpcopy-lab hostile in the online namespace: garbage,
// malformed version-6 and version-7 messages, floods of connects and
// routes, idle links, slow readers): the real tcpcopy must still get every
// response (every request copied), intercept must stay up, and its memory,
// descriptors and log stay bounded.
func TestHostileClients(t *testing.T) {
	needRoot(t)
	var (
		peakRSS, peakFDs atomic.Int64
		report           atomic.Pointer[hostile.Report]
		hostileErr       atomic.Pointer[string]
	)
	cfg := labrun.Config{
		GRO: true,
		InterceptArgs: append(append([]string(nil), labrun.DefaultInterceptArgs...),
			"--max-links", strconv.Itoa(hostileMaxLinks), "--link-idle", "1s", "--handshake-timeout", "1s",
			"--max-routes-per-link", "20000", "--queue-bytes", "262144", "--stats-interval", "0"),
		Load: load.Options{
			Rate: 40, Duration: 6 * time.Second, MaxRequests: 240, Mode: load.Mixed,
			RequestsPerConn: 5, BodySizes: []int{0, 100, 1460, 20000}, Concurrency: 4,
		},
		During: func(ctx context.Context, lab *labrun.Lab) error {
			icp := lab.Intercept()
			self, err := os.Executable()
			if err != nil {
				return err
			}
			addr := netip.AddrPortFrom(lab.Topo.Assistant.OnlineV4, wire.DefaultPort)
			p, err := lab.Topo.StartEnv("online", []string{labcli.ChildEnv + "=1"}, self, "hostile",
				"--intercept", addr.String(), "--duration", "4s", "--holders", "20", "--routes", "100000",
				"--slow-client", "192.0.2.250", "--slow-target", lab.Vars["target.online_v4"]+":"+strconv.Itoa(labrun.TargetPort),
				"--slow-syns", "1500")
			if err != nil {
				return err
			}
			tick := time.NewTicker(50 * time.Millisecond)
			defer tick.Stop()
		sample:
			for {
				if u, err := icp.Sample(); err == nil {
					peakRSS.Store(max(peakRSS.Load(), u.PeakRSS))
				}
				if ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", icp.Pid)); err == nil {
					peakFDs.Store(max(peakFDs.Load(), int64(len(ents))))
				}
				select {
				case <-p.Done():
					break sample
				case <-ctx.Done():
					_ = p.Stop()
					break sample
				case <-tick.C:
				}
			}
			if err := p.Err(); err != nil {
				msg := err.Error()
				hostileErr.Store(&msg)
			}
			if b, err := os.ReadFile(p.StdoutPath); err == nil {
				var r hostile.Report
				if json.Unmarshal(b, &r) == nil {
					report.Store(&r)
				}
			}
			return nil
		},
	}
	rep, online, target := run(t, cfg)
	checkAllCopied(t, rep, online, target)
	if e := hostileErr.Load(); e != nil {
		t.Errorf("tcpcopy-lab hostile: %s", *e)
	}
	r := report.Load()
	if r == nil {
		t.Fatal("no report from tcpcopy-lab hostile")
	}
	for _, s := range hostile.All {
		c := r.Scenarios[s]
		if c == nil || c.Connects == 0 {
			t.Errorf("scenario %s did not run: %+v", s, c)
		}
	}
	if c := r.Scenarios[hostile.RouteFlood]; c != nil && (c.Routes < 200000 || c.Closed > 0) {
		t.Errorf("the route floods sent %d routes, %d links refused: want both links in", c.Routes, c.Closed)
	}
	if c := r.Scenarios[hostile.SlowReader]; c != nil && c.SYNs == 0 {
		t.Error("the slow readers sent no SYN")
	}
	if got := peakRSS.Load(); got > hostileMaxRSS || got == 0 {
		t.Errorf("intercept's peak RSS %d MiB, bound %d MiB", got>>20, hostileMaxRSS>>20)
	}
	if got := peakFDs.Load(); got > hostileMaxFDs || got == 0 {
		t.Errorf("intercept held up to %d descriptors, bound %d", got, hostileMaxFDs)
	}
	b, err := os.ReadFile(rep.Intercept.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), "\n"); n > hostileMaxLog {
		t.Errorf("intercept wrote %d log lines in the run, bound %d", n, hostileMaxLog)
	}
	// intercept's summary at exit: the bounds were reached and counted.
	// dropped: the slow readers' queues overflowed.
	for _, key := range []string{"routes_refused", "links_refused", "messages_skipped", "link_errors", "dropped"} {
		if v := summaryValue(string(b), key); v <= 0 {
			t.Errorf("intercept's summary has %s=%d, want some", key, v)
		}
	}
	t.Logf("hostile %v; intercept peak RSS %d MiB, up to %d descriptors; %d requests, fidelity %.1f%%",
		summary(r), peakRSS.Load()>>20, peakFDs.Load(), rep.Compare.Online, rep.Compare.Fidelity)
}

func summary(r *hostile.Report) string {
	var b strings.Builder
	for _, s := range hostile.All {
		if c := r.Scenarios[s]; c != nil {
			fmt.Fprintf(&b, "%s: %d connects, %d closed by intercept, %d routes; ", s, c.Connects, c.Closed, c.Routes)
		}
	}
	return b.String()
}

// summaryValue returns the value of key=N in intercept's "intercept
// stopped" line, or -1.
func summaryValue(log, key string) int {
	for line := range strings.Lines(log) {
		if !strings.Contains(line, `msg="intercept stopped"`) {
			continue
		}
		for _, f := range strings.Fields(line) {
			if v, ok := strings.CutPrefix(f, key+"="); ok {
				n, err := strconv.Atoi(v)
				if err != nil {
					return -1
				}
				return n
			}
		}
	}
	return -1
}
