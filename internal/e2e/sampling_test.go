package e2e

import (
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
)

// TestOfflineSampling replays 300 short connections recorded in the lab
// with -r 20: about a fifth of the connections reach the target, each of
// them whole. With n = 300 and p = 0.2 the count is binomial with a
// standard deviation of 6.9 connections (2.3 %); the tolerance, ±7 %, is
// three of them. The sampling hash is fixed, so a given capture always
// gives the same share.
func TestOfflineSampling(t *testing.T) {
	needRoot(t)
	rec := offRecord(t, load.Options{
		Rate: 200, Duration: 3 * time.Second, MaxRequests: 300, Mode: load.Short,
		BodySizes: []int{0, 100, 2000}, Concurrency: 8,
	})
	res := offReplay(t, rec, "-r", "20", "-a", "2")
	online, target := offConnections(rec.online), offConnections(res.target)
	copied := 0
	for remote, ids := range target {
		want, ok := online[remote]
		if !ok {
			t.Errorf("the target saw connection %s, which the online server did not", remote)
			continue
		}
		if len(ids) != len(want) {
			t.Errorf("connection %s: %d of its %d requests arrived: not whole", remote, len(ids), len(want))
		}
		copied++
	}
	share := float64(copied) * 100 / float64(len(online))
	t.Logf("-r 20 copied %d of %d connections (%.1f %%)", copied, len(online), share)
	if len(online) < 250 {
		t.Errorf("only %d connections recorded", len(online))
	}
	if share < 13 || share > 27 {
		t.Errorf("-r 20 copied %.1f %% of the connections, want 20 %% ± 7 %%", share)
	}
	if n := offNum(t, res.summary, "failed") + offNum(t, res.summary, "partial"); n != 0 {
		t.Errorf("%v sessions were not reproduced: %s", n, offSummaryText(res.summary))
	}
}
