package e2e

import (
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
)

// TestPortReuse runs short connections from four fixed client ports, each
// taken again as soon as its previous connection closed (the server closes
// first, so the client keeps no TIME_WAIT; when the client closed first,
// Linux reuses its TIME_WAIT socket with an ISN above the old stream, and
// the next connection's clock-based ISN is often below that one): 1,000
// connections/s, one every 4 ms per port, while copying one takes 2-4 ms
// (the capture hand-over and the handshake through intercept) and more on
// a busy machine, so the next connection on a 4-tuple often starts while
// tcpcopy is still copying the previous one. Every
// request must still reach the target, in order, and tcpcopy must have held
// new connections back for their predecessors.
//
// Copies on one 4-tuple must follow one another; a port reused much faster
// than a copy takes (unthrottled here: every 1.3 ms) builds a backlog that
// ends in sessions cut short (port_reused).
//
// Before the connections were held back, a new SYN ended the session under
// way; and when the client's FIN left before the target's, the target's FIN
// went unacknowledged, so the target answered the next SYN on the 4-tuple
// with a challenge ACK: 90 % of such connections were lost.
func TestPortReuse(t *testing.T) {
	needRoot(t)
	cfg := labrun.Config{
		GRO:  true,
		Tail: time.Second,
		Load: load.Options{
			Rate: 1000, Duration: 2 * time.Second, MaxRequests: 2000, Mode: load.Short,
			BodySizes: []int{0, 100, 2000}, Concurrency: 4, ReusePorts: true,
		},
	}
	rep, online, target := run(t, cfg)
	checkAllCopied(t, rep, online, target)
	m := rep.Tcpcopy.Metrics
	reuses, waits := m["tcpcopy_port_reuses_total"], m["tcpcopy_port_reuse_waits_total"]
	t.Logf("%d requests, %d port reuses, %d waited for the previous session", len(online), int(reuses), int(waits))
	if len(online) < 1000 {
		t.Errorf("only %d requests reached the online server", len(online))
	}
	if reuses == 0 || waits == 0 {
		t.Errorf("port reuses %v, waits %v: the test did not reuse ports while copies were under way", reuses, waits)
	}
	if s := rep.Tcpcopy.Sessions; s == nil || s.Failed != 0 || s.Partial != 0 {
		t.Errorf("sessions not all reproduced: %+v", s)
	}
}
