package e2e

import (
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
)

// TestUnthrottledShortConnections runs short connections as fast as the
// lab's load client can make them. tcpcopy may shed new sessions
// (overload, shed) but must reproduce at least 95 % of the requests of the
// sessions it kept, report what it shed, and stay under 64 MB.
func TestUnthrottledShortConnections(t *testing.T) {
	needRoot(t)
	cfg := labrun.Config{
		GRO: true,
		Load: load.Options{
			Rate: 0, Duration: 4 * time.Second, MaxRequests: 40000,
			Mode: load.Short, BodySizes: []int{0, 100, 1000}, Concurrency: 32,
		},
	}
	rep, _, _ := run(t, cfg)
	c := rep.Compare
	if rep.Tcpcopy.Exit != "" || rep.Intercept.Exit != "" {
		t.Fatalf("a daemon died: tcpcopy %q, intercept %q", rep.Tcpcopy.Exit, rep.Intercept.Exit)
	}
	s := rep.Sessions
	if s == nil {
		t.Fatal("no session outcomes in the report")
	}
	var shed uint64
	for _, e := range s.Ends {
		if e.Reason == "shed" || e.Reason == "overload" {
			shed += e.Count
		}
	}
	// Requests on the sessions tcpcopy kept: every connection carries one
	// request, so the kept share of the requests is the kept share of the
	// sessions.
	kept := c.Online - int(shed)
	if kept <= 0 {
		t.Fatalf("every session was shed: %+v", s)
	}
	if share := float64(c.Matched) / float64(kept); share < 0.95 {
		t.Errorf("reproduced %d of the %d requests of kept sessions (%.1f %%), want at least 95 %%", c.Matched, kept, 100*share)
	}
	if rss := rep.Tcpcopy.PeakRSS; rss > 64<<20 {
		t.Errorf("tcpcopy peak RSS %d MiB, want under 64", rss>>20)
	}
	t.Logf("%d requests at %.0f/s, %d sessions shed, fidelity %.2f %%, tcpcopy peak %d MiB",
		c.Online, float64(rep.Load.Requests)/rep.Load.Elapsed.Seconds(), shed, c.Fidelity, rep.Tcpcopy.PeakRSS>>20)
}
