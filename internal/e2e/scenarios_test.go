package e2e

// Scenario tests: the copy path loses a part in the middle of a run
// (intercept restarted, target down and back), two tcpcopy instances share
// one intercept, and no response of the target ever reaches the client
// namespace. Each runs the real binaries in a fresh lab (labrun) with a
// bounded load and takes under about 10 s.

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
)

// scenConfig is the lab configuration the scenarios start from: a mixed
// load (keep-alive and short connections, GET and POST, bodies of 0 B to
// 1 MiB), GRO on, the leak watcher on.
func scenConfig(d time.Duration) labrun.Config {
	return labrun.Config{
		GRO:       true,
		LeakCheck: true,
		Tail:      time.Second,
		Load: load.Options{
			Rate: 60, Duration: d, MaxRequests: 2000, Mode: load.Mixed,
			RequestsPerConn: 5, BodySizes: bodies, Concurrency: 4,
		},
	}
}

// scenSleep sleeps for d unless ctx ends first.
func scenSleep(ctx context.Context, d time.Duration) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

type scenKey struct {
	id, method, sum string
	n               int64
}

func scenKeyOf(e recorder.Entry) scenKey { return scenKey{e.ID, e.Method, e.BodySHA256, e.BodyLen} }

// scenAfter describes the requests that reached the online server at or
// after a moment, split by connection: those on connections that started
// after it ("fresh") and those on connections that were open before it
// ("spanning"), which may have been given up meanwhile.
type scenAfter struct {
	fresh, freshCopied      int
	spanning, spanCopied    int
	freshLost, spanningLost []string // the first few, described
	during                  int      // requests between the two moments
}

// scenSplit computes scenAfter for the requests at or after back, and
// counts those between down and back. tcpcopy keeps the client's address
// and port, so the online server's view of the peer names the connection.
func scenSplit(online, target []recorder.Entry, down, back time.Time) scenAfter {
	at := map[scenKey]bool{}
	for _, e := range target {
		at[scenKeyOf(e)] = true
	}
	first := map[string]time.Time{}
	for _, e := range online {
		if f, ok := first[e.Remote]; !ok || e.Time.Before(f) {
			first[e.Remote] = e.Time
		}
	}
	var a scenAfter
	seen := map[string]bool{}
	for _, e := range online {
		if seen[e.ID] || e.Time.Before(down) {
			continue
		}
		seen[e.ID] = true
		if e.Time.Before(back) {
			a.during++
			continue
		}
		ok := at[scenKeyOf(e)]
		what := fmt.Sprintf("%s (%s %d B at %s from %s)", e.ID, e.Method, e.BodyLen, e.Time.Format("15:04:05.000"), e.Remote)
		if first[e.Remote].Before(back) {
			a.spanning++
			if ok {
				a.spanCopied++
			} else if len(a.spanningLost) < 10 {
				a.spanningLost = append(a.spanningLost, what)
			}
			continue
		}
		a.fresh++
		if ok {
			a.freshCopied++
		} else if len(a.freshLost) < 10 {
			a.freshLost = append(a.freshLost, what)
		}
	}
	return a
}

// scenCheckDaemons asserts that tcpcopy and intercept never exited on
// their own, and how often each was restarted.
func scenCheckDaemons(t *testing.T, rep *labrun.Report, interceptRestarts int) {
	t.Helper()
	for i, p := range rep.Tcpcopies {
		if p.Exit != "" || p.Restarts != 0 {
			t.Errorf("tcpcopy#%d exited: %q (restarts %d)", i+1, p.Exit, p.Restarts)
		}
	}
	if rep.Intercept == nil || rep.Intercept.Exit != "" {
		t.Errorf("intercept exited: %+v", rep.Intercept)
	} else if rep.Intercept.Restarts != interceptRestarts {
		t.Errorf("intercept restarted %d times, want %d", rep.Intercept.Restarts, interceptRestarts)
	}
}

// scenCheckExplained asserts that tcpcopy's counts are there, that every
// session it did not reproduce has a reason, and that every client
// connection that lost a request is one of those sessions.
func scenCheckExplained(t *testing.T, rep *labrun.Report) {
	t.Helper()
	s := rep.Sessions
	if s == nil {
		t.Fatal("no session outcomes in the report")
	}
	if s.Source != "metrics" {
		t.Errorf("sessions read from %q, want metrics", s.Source)
	}
	for _, e := range s.Ends {
		if e.Outcome != "reproduced" && (e.Reason == "none" || e.Reason == "unknown" || e.Reason == "") {
			t.Errorf("%d sessions %s without a reason (%q)", e.Count, e.Outcome, e.Reason)
		}
	}
	if l := rep.Lost; l != nil && !l.Explained {
		t.Errorf("%d requests lost on %d connections, but tcpcopy counted only %d sessions not reproduced",
			l.Requests, l.Connections, l.NotReproduced)
	}
}

func scenCheckNoLeaks(t *testing.T, rep *labrun.Report) {
	t.Helper()
	if rep.Leaks == nil {
		t.Error("no leak watch in the report")
	} else if rep.Leaks.Packets != 0 {
		t.Errorf("%d packets of the target reached the client namespace: %v", rep.Leaks.Packets, rep.Leaks.First)
	}
}

// TestInterceptRestart stops intercept in the middle of a run and starts
// it again a second later. tcpcopy must keep running, dial again and
// announce its routes again; every request that reaches the online server
// once its links are back is copied, and what was lost during the outage
// is counted as a session not reproduced, with a reason.
func TestInterceptRestart(t *testing.T) {
	needRoot(t)
	cfg := scenConfig(6 * time.Second)
	var down, back time.Time
	cfg.During = scenOutage(&down, &back, func(lab *labrun.Lab) error { return lab.StopIntercept() },
		func(ctx context.Context, lab *labrun.Lab) error {
			if err := lab.StartIntercept(ctx); err != nil {
				return err
			}
			return lab.WaitLinked(ctx)
		})
	rep, online, target := run(t, cfg)
	scenCheckDaemons(t, rep, 1)
	scenCheckExplained(t, rep)
	scenCheckNoLeaks(t, rep)
	a := scenSplit(online, target, down, back)
	t.Logf("intercept down for %s (from the stop until tcpcopy linked again), %d requests meanwhile; after: %d/%d copied on new connections, %d/%d on connections open before; overall fidelity %.1f%%, sessions %+v",
		back.Sub(down).Round(time.Millisecond), a.during, a.freshCopied, a.fresh, a.spanCopied, a.spanning, rep.Compare.Fidelity, rep.Sessions)
	if a.during == 0 {
		t.Errorf("no request reached online while intercept was down: the scenario did not happen")
	}
	if a.fresh+a.spanning < 30 || a.fresh < 10 {
		t.Errorf("only %d requests after the restart, %d on new connections", a.fresh+a.spanning, a.fresh)
	}
	// The links come back with every route announced again: nothing that
	// reaches online afterwards is lost, on old or new connections.
	if a.freshCopied != a.fresh || a.spanCopied != a.spanning {
		t.Errorf("after the restart %d of %d requests copied; lost %v %v",
			a.freshCopied+a.spanCopied, a.fresh+a.spanning, a.freshLost, a.spanningLost)
	}
}

// TestTargetDownAndBack kills the target's server in the middle of a run
// (its port closed: the target's kernel resets the copies) and starts it
// again a second later. tcpcopy must keep running; every request on a
// connection opened after the target listens again is copied, and what is
// lost is on connections tcpcopy counted as failed or partial.
func TestTargetDownAndBack(t *testing.T) {
	needRoot(t)
	cfg := scenConfig(6 * time.Second)
	var down, back time.Time
	// SIGKILL: the port closes at the call, whatever the server was doing
	// (a graceful stop can take up to 2 s on a busy machine).
	cfg.During = scenOutage(&down, &back, func(lab *labrun.Lab) error { return lab.KillTarget() },
		func(ctx context.Context, lab *labrun.Lab) error { return lab.StartTarget(ctx) })
	rep, online, target := run(t, cfg)
	scenCheckDaemons(t, rep, 0)
	scenCheckExplained(t, rep)
	scenCheckNoLeaks(t, rep)
	a := scenSplit(online, target, down, back)
	t.Logf("target down for %s (from the kill until it listened again), %d requests meanwhile; after: %d/%d copied on new connections, %d/%d on connections open before; overall fidelity %.1f%%, sessions %+v",
		back.Sub(down).Round(time.Millisecond), a.during, a.freshCopied, a.fresh, a.spanCopied, a.spanning, rep.Compare.Fidelity, rep.Sessions)
	if a.during == 0 {
		t.Errorf("no request reached online while the target was down: the scenario did not happen")
	}
	if a.fresh < 30 {
		t.Errorf("only %d requests on connections opened after the target came back", a.fresh)
	}
	if a.freshCopied != a.fresh {
		t.Errorf("after the target came back %d of %d requests on new connections copied; lost %v", a.freshCopied, a.fresh, a.freshLost)
	}
	// A connection whose copy failed while the target was down stays given
	// up (pkg/tcpstate: the rest of it is dropped, not copied), so requests
	// on connections open across the outage may be lost; scenCheckExplained
	// has checked that each such connection is a failed or partial session.
	if len(a.spanningLost) > 0 {
		t.Logf("lost on connections open across the outage (given up): %d, e.g. %v", a.spanning-a.spanCopied, a.spanningLost)
	}
}

// TestTwoTcpcopiesShareIntercept runs two tcpcopy instances with disjoint
// mappings (online 80 → target 8080, online 81 → target 8081) through one
// intercept, which must route each response to the instance that
// announced its connection. Every request reaches the target exactly
// once, on the mapped port.
func TestTwoTcpcopiesShareIntercept(t *testing.T) {
	needRoot(t)
	cfg := scenConfig(3 * time.Second)
	cfg.OnlinePorts = []uint16{80, 81}
	cfg.TargetPorts = []uint16{8080, 8081}
	cfg.LoadPorts = []uint16{80, 81}
	cfg.InterceptArgs = []string{"-i", "{assistant.target_if}", "-F", "tcp and (src port 8080 or src port 8081)", "-b", "{assistant.online_v4}"}
	cfg.MoreTcpcopyArgs = [][]string{{"-x", "81-{target.online_v4}:8081", "-s", "{assistant.online_v4}", "-i", "{online.client_if}"}}
	rep, online, target := run(t, cfg)
	scenCheckDaemons(t, rep, 0)
	scenCheckExplained(t, rep)
	scenCheckNoLeaks(t, rep)

	// Per id: as many target entries as online entries (net/http may
	// resend an idempotent request, at both alike), on the mapped port.
	count := map[string]int{}
	port := map[string]uint16{}
	for _, e := range online {
		count[e.ID]++
		port[e.ID] = netip.MustParseAddrPort(e.Local).Port()
	}
	perPort := map[uint16]int{}
	for _, e := range target {
		count[e.ID]--
		got := netip.MustParseAddrPort(e.Local).Port()
		if want := port[e.ID] + 8000; got != want {
			t.Errorf("request %s to online port %d reached target port %d, want %d", e.ID, port[e.ID], got, want)
		}
		perPort[got]++
	}
	for id, n := range count {
		if n != 0 {
			t.Errorf("request %s: %d more times at online than at the target", id, n)
		}
	}
	if perPort[8080] < 20 || perPort[8081] < 20 {
		t.Errorf("target requests per port %v: want both instances copying", perPort)
	}
	if len(rep.Tcpcopies) != 2 {
		t.Fatalf("%d tcpcopy instances in the report", len(rep.Tcpcopies))
	}
	for i, p := range rep.Tcpcopies {
		s := p.Sessions
		if s == nil || s.Opened == 0 || s.NotReproduced() != 0 {
			t.Errorf("tcpcopy#%d sessions %+v: want some, all reproduced", i+1, s)
		}
	}
	if rep.Compare.Fidelity != 100 {
		t.Errorf("fidelity %.2f%%", rep.Compare.Fidelity)
	}
}

// scenRealNetwork gives the lab what real networks have and the lab
// leaves out: a way back from the assistant to the clients. The assistant
// routes the client ranges to online, and online forwards. Only the
// assistant's forwarding setting then keeps the target's responses from
// the clients.
func scenRealNetwork(ctx context.Context, lab *labrun.Lab, assistantForwards bool) error {
	t := lab.Topo
	cmds := [][]string{
		{netlab.Assistant, "ip", "route", "add", netlab.ClientPrefix4.String(), "via", t.Online.AssistantV4.String()},
		{netlab.Assistant, "ip", "-6", "route", "add", netlab.ClientPrefix6.String(), "via", t.Online.AssistantV6.String()},
		{netlab.Online, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1",
			"net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.default.rp_filter=0",
			"net.ipv4.conf." + netlab.IfToAssistant + ".rp_filter=0"},
	}
	if assistantForwards {
		cmds = append(cmds, []string{netlab.Assistant, "sysctl", "-q", "-w", "net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"})
	}
	for _, c := range cmds {
		if _, err := t.Run(ctx, c[0], c[1], c[2:]...); err != nil {
			return err
		}
	}
	return nil
}

// TestNoResponseReachesClients watches the client namespace during a copy
// for any packet from the target's addresses or port 8080. With a path
// back to the clients in place, the assistant's forwarding being off is
// what stops them: zero must arrive. The control run turns forwarding on
// at the assistant and must see them, which shows that the watch works.
func TestNoResponseReachesClients(t *testing.T) {
	needRoot(t)
	for _, tt := range []struct {
		name     string
		forwards bool
	}{
		{"assistant drops them", false},
		{"control: assistant forwards them", true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := scenConfig(2 * time.Second)
			cfg.Setup = func(ctx context.Context, lab *labrun.Lab) error {
				return scenRealNetwork(ctx, lab, tt.forwards)
			}
			rep, _, _ := run(t, cfg)
			if rep.Leaks == nil {
				t.Fatal("no leak watch in the report")
			}
			t.Logf("leaked packets: %d %v", rep.Leaks.Packets, rep.Leaks.First)
			if !tt.forwards {
				scenCheckNoLeaks(t, rep)
				scenCheckDaemons(t, rep, 0)
				if rep.Compare.Fidelity != 100 {
					t.Errorf("fidelity %.2f%%", rep.Compare.Fidelity)
				}
				return
			}
			if rep.Leaks.Packets == 0 {
				t.Error("the control run saw no packet of the target in the client namespace: the watch is blind")
			}
			for _, p := range rep.Leaks.First {
				if !strings.Contains(p, "198.51.100.2:8080 > 192.0.2.") {
					t.Errorf("leaked packet %q is not a response of the target to a client", p)
				}
			}
		})
	}
}

// scenOutage returns a During hook that waits a second into the load,
// stops something (recording the time in *down), waits a second, starts it
// again and records in *back when it is back.
func scenOutage(down, back *time.Time, stop func(*labrun.Lab) error, start func(context.Context, *labrun.Lab) error) func(context.Context, *labrun.Lab) error {
	return func(ctx context.Context, lab *labrun.Lab) error {
		if err := scenSleep(ctx, time.Second); err != nil {
			return err
		}
		*down = time.Now()
		if err := stop(lab); err != nil {
			return err
		}
		if err := scenSleep(ctx, time.Second); err != nil {
			return err
		}
		if err := start(ctx, lab); err != nil {
			return err
		}
		*back = time.Now()
		return nil
	}
}
