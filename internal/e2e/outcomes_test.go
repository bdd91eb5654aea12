//go:build linux

package e2e

// Outcome tests: each takes one part of the copy path away (the target's
// route to the clients, the target's port, intercept) and checks that
// tcpcopy reports the matching reason for every session: on its metrics
// endpoint, scraped from inside the online namespace and parsed with the
// Prometheus text parser; in the summary it logs on SIGUSR1 (and keeps
// running); and in a warning that names the cause in plain words. Each
// takes 5 to 10 s.

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
	"github.com/tcpcopy-go/tcpcopy/internal/nsdo"
	"github.com/tcpcopy-go/tcpcopy/internal/testbin"
)

const (
	// ocConns is the number of client connections of each test: one
	// request each.
	ocConns = 12
	// ocInterceptMetrics is where intercept serves its metrics inside the
	// assistant namespace.
	ocInterceptMetrics = "127.0.0.1:9181"
)

// ocConfig is a short load of ocConns one-request connections.
func ocConfig() labrun.Config {
	return labrun.Config{
		Tail: 100 * time.Millisecond,
		Load: load.Options{
			Rate: 20, Duration: 2 * time.Second, MaxRequests: ocConns,
			Mode: load.Short, BodySizes: []int{100}, Concurrency: 2,
		},
		InterceptArgs: append(append([]string(nil), labrun.DefaultInterceptArgs...), "--metrics-addr", ocInterceptMetrics),
	}
}

// ocRun runs one lab copy with the real binaries; without intercept when
// withIntercept is false.
func ocRun(t *testing.T, cfg labrun.Config, withIntercept bool) *labrun.Report {
	t.Helper()
	var rep *labrun.Report
	if withIntercept {
		rep, _, _ = run(t, cfg)
	} else {
		var err error
		if rep, err = ocLabRun(t, cfg); err != nil {
			t.Fatalf("lab run: %v", err)
		}
	}
	// On failure, the daemons' logs (before the test's directory goes).
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		for _, p := range []*labrun.ProcReport{rep.Tcpcopy, rep.Intercept} {
			if p != nil {
				b, _ := os.ReadFile(p.Stderr)
				t.Logf("%s:\n%s", p.Stderr, b)
			}
		}
	})
	return rep
}

// ocLabRun is run (e2e_test.go) for a lab without intercept.
func ocLabRun(t *testing.T, cfg labrun.Config) (*labrun.Report, error) {
	cfg.TcpcopyBin = testbin.Build(t, "tcpcopy")
	cfg.Dir = t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rep, err := labrun.Run(ctx, cfg, log)
	if rep != nil && (t.Failed() || err != nil || testing.Verbose()) {
		rep.WriteText(testWriter{t})
	}
	return rep, err
}

// ocScrape fetches http://addr/metrics from inside namespace ns and parses
// it with the Prometheus text parser.
func ocScrape(ctx context.Context, ns, addr string) (map[string]*dto.MetricFamily, error) {
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, a string) (net.Conn, error) {
			var c net.Conn
			err := nsdo.Do(ns, func() error {
				var d net.Dialer
				var err error
				c, err = d.DialContext(ctx, network, a)
				return err
			})
			return c, err
		},
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+addr+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape %s: %s", addr, resp.Status)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, err
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(strings.NewReader(string(body)))
}

// ocValue returns the sum of the series of family name whose labels
// include the name=value pairs of labels; -1 when the family is missing.
func ocValue(fams map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	f := fams[name]
	if f == nil {
		return -1
	}
	sum := 0.0
next:
	for _, m := range f.GetMetric() {
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, l := range m.GetLabel() {
				found = found || l.GetName() == labels[i] && l.GetValue() == labels[i+1]
			}
			if !found {
				continue next
			}
		}
		switch f.GetType() {
		case dto.MetricType_COUNTER:
			sum += m.GetCounter().GetValue()
		case dto.MetricType_GAUGE:
			sum += m.GetGauge().GetValue()
		}
	}
	return sum
}

// ocWaitClosed scrapes tcpcopy until ocConns sessions closed with outcome
// and reason and none is open, or fails after limit. It returns the last
// scrape.
func ocWaitClosed(ctx context.Context, lab *labrun.Lab, outcome, reason string, limit time.Duration) (map[string]*dto.MetricFamily, error) {
	deadline := time.Now().Add(limit)
	for {
		fams, err := ocScrape(ctx, lab.Topo.Online.Name, labrun.DefaultTcpcopyMetrics)
		if err == nil && ocValue(fams, "tcpcopy_sessions_closed_total", "outcome", outcome, "reason", reason) >= ocConns &&
			ocValue(fams, "tcpcopy_sessions_active") == 0 {
			return fams, nil
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("%v sessions closed %s/%s after %v, want %d",
					ocValue(fams, "tcpcopy_sessions_closed_total", "outcome", outcome, "reason", reason), outcome, reason, limit, ocConns)
			}
			return fams, err
		}
		select {
		case <-ctx.Done():
			return fams, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// ocWaitLog waits until p's log has a line holding every string of want.
func ocWaitLog(ctx context.Context, p *netlab.Proc, limit time.Duration, want ...string) error {
	deadline := time.Now().Add(limit)
	for {
		b, _ := os.ReadFile(p.StderrPath)
	lines:
		for _, line := range strings.Split(string(b), "\n") {
			for _, w := range want {
				if !strings.Contains(line, w) {
					continue lines
				}
			}
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("no line with %q in %s's log after %v", want, p.Name, limit)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ocSummary sends SIGUSR1 to p and waits until its log has a summary line
// with want; the process must still run afterwards.
func ocSummary(ctx context.Context, p *netlab.Proc, want string) error {
	if p == nil {
		return fmt.Errorf("no process")
	}
	if err := p.Signal(syscall.SIGUSR1); err != nil {
		return err
	}
	if err := ocWaitLog(ctx, p, 3*time.Second, "msg=summary", want); err != nil {
		return err
	}
	time.Sleep(100 * time.Millisecond)
	if !p.Running() {
		return fmt.Errorf("%s exited after SIGUSR1", p.Name)
	}
	return nil
}

// ocCheck asserts what every outcome test expects of the final scrape:
// one session per client connection, opened by its SYN, and every session
// closed with outcome and reason.
//
// A client packet that comes after its session failed opens a new session
// without SYN (engine behaviour, see the report of this change), so there
// may be more sessions than connections: the count of sessions opened by a
// SYN is the exact one.
func ocCheck(t *testing.T, rep *labrun.Report, fams map[string]*dto.MetricFamily, outcome, reason string) {
	t.Helper()
	if rep.Load.Connections != ocConns || rep.Load.OK != ocConns {
		t.Errorf("load: %d connections, %d ok; want %d each (%s)", rep.Load.Connections, rep.Load.OK, ocConns, rep.Load.FirstErr)
	}
	opened := ocValue(fams, "tcpcopy_sessions_opened_total")
	if got := opened - ocValue(fams, "tcpcopy_sessions_opened_without_syn_total"); got != ocConns {
		t.Errorf("%v sessions opened by a SYN, want %d", got, ocConns)
	}
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"tcpcopy_sessions_closed_total", nil, opened},
		{"tcpcopy_sessions_closed_total", []string{"outcome", outcome, "reason", reason}, opened},
		{"tcpcopy_sessions_active", nil, 0},
		{"tcpcopy_synacks_received_total", nil, 0},
		{"tcpcopy_acked_bytes_total", nil, 0},
		{"tcpcopy_fidelity_ratio", nil, 0},
	} {
		if got := ocValue(fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if rep.Compare.Target != 0 {
		t.Errorf("the target recorded %d requests, want none", rep.Compare.Target)
	}
	if rep.Tcpcopy == nil || rep.Tcpcopy.Exit != "" {
		t.Errorf("tcpcopy did not run to the end: %+v", rep.Tcpcopy)
	}
}

// ocLogHas asserts that tcpcopy's log holds every string of want.
func ocLogHas(t *testing.T, rep *labrun.Report, want ...string) {
	t.Helper()
	b, err := os.ReadFile(rep.Tcpcopy.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range want {
		if !strings.Contains(string(b), w) {
			t.Errorf("tcpcopy's log lacks %q:\n%s", w, b)
		}
	}
}

// TestOutcomeNoRouteOnTarget: the target has no route back to the clients,
// so its SYN-ACKs never reach intercept.
func TestOutcomeNoRouteOnTarget(t *testing.T) {
	needRoot(t)
	var fams map[string]*dto.MetricFamily
	cfg := ocConfig()
	cfg.Setup = func(ctx context.Context, lab *labrun.Lab) error {
		_, err := lab.Topo.Run(ctx, netlab.Target, "ip", "route", "del", netlab.ClientPrefix4.String())
		return err
	}
	cfg.During = func(ctx context.Context, lab *labrun.Lab) error {
		var err error
		// 3 s of handshake timeout after the last SYN.
		if fams, err = ocWaitClosed(ctx, lab, "failed", "no_synack", 12*time.Second); err != nil {
			return err
		}
		// The warnings come every 3 s.
		if err := ocWaitLog(ctx, lab.Tcpcopy(0), 4*time.Second, "level=WARN", "no SYN-ACK came back through intercept"); err != nil {
			return err
		}
		return ocSummary(ctx, lab.Tcpcopy(0), fmt.Sprintf("no_synack=%d", ocConns))
	}
	rep := ocRun(t, cfg, true)
	ocCheck(t, rep, fams, "failed", "no_synack")
	if got := ocValue(fams, "tcpcopy_syns_sent_total"); got != ocConns {
		t.Errorf("SYNs sent %v, want %d", got, ocConns)
	}
	if got := ocValue(fams, "tcpcopy_retransmits_total", "kind", "syn"); got < ocConns {
		t.Errorf("SYN retransmits %v, want at least %d (one after 1 s each)", got, ocConns)
	}
	ocLogHas(t, rep, "no SYN-ACK came back through intercept", "scripts/route-setup.sh target --clients",
		fmt.Sprintf("failed_no_synack=%d", ocConns))
}

// TestOutcomeTargetPortClosed: nothing listens on the target port, so the
// target answers every SYN with RST.
func TestOutcomeTargetPortClosed(t *testing.T) {
	needRoot(t)
	var tc, ic map[string]*dto.MetricFamily
	cfg := ocConfig()
	cfg.TcpcopyArgs = []string{"-x", "80-{target.online_v4}:8081", "-s", "{assistant.online_v4}", "-i", "{online.client_if}"}
	cfg.InterceptArgs = []string{"-i", "{assistant.target_if}", "-F", "tcp and src port 8081", "-b", "{assistant.online_v4}",
		"--metrics-addr", ocInterceptMetrics}
	cfg.During = func(ctx context.Context, lab *labrun.Lab) error {
		if _, err := ocWaitClosed(ctx, lab, "failed", "target_rst", 8*time.Second); err != nil {
			return err
		}
		if err := ocSummary(ctx, lab.Intercept(), "links="); err != nil {
			return err
		}
		if err := ocWaitLog(ctx, lab.Tcpcopy(0), 4*time.Second, "level=WARN", "the target reset connections (target_rst)"); err != nil {
			return err
		}
		// Settled: the load ended seconds ago.
		var err error
		if tc, err = ocWaitClosed(ctx, lab, "failed", "target_rst", time.Second); err != nil {
			return err
		}
		ic, err = ocScrape(ctx, lab.Topo.Assistant.Name, ocInterceptMetrics)
		return err
	}
	rep := ocRun(t, cfg, true)
	ocCheck(t, rep, tc, "failed", "target_rst")
	// intercept sent the RSTs to tcpcopy.
	if got := ocValue(ic, "intercept_records_sent_total"); got < ocConns {
		t.Errorf("intercept_records_sent_total = %v, want at least %d", got, ocConns)
	}
	if got := ocValue(ic, "intercept_links"); got < 1 {
		t.Errorf("intercept_links = %v, want at least 1", got)
	}
	if got := ocValue(ic, "intercept_link_route_messages_total"); got < ocConns {
		t.Errorf("intercept_link_route_messages_total = %v, want at least %d", got, ocConns)
	}
	if rep.Intercept == nil || rep.Intercept.Exit != "" {
		t.Errorf("intercept did not run to the end: %+v", rep.Intercept)
	}
	ocLogHas(t, rep, "the target reset connections (target_rst)",
		fmt.Sprintf("failed_target_rst=%v", ocValue(tc, "tcpcopy_sessions_opened_total")))
	b, _ := os.ReadFile(rep.Tcpcopy.Stderr)
	if strings.Contains(string(b), "no SYN-ACK came back") {
		t.Errorf("a refused SYN was reported as unanswered:\n%s", b)
	}
}

// TestOutcomeNoIntercept: no intercept runs (tcpcopy -L keeps trying), so
// no session can announce its route.
func TestOutcomeNoIntercept(t *testing.T) {
	needRoot(t)
	var fams map[string]*dto.MetricFamily
	cfg := ocConfig()
	cfg.TcpcopyArgs = append(append([]string(nil), labrun.DefaultTcpcopyArgs...), "-L")
	cfg.During = func(ctx context.Context, lab *labrun.Lab) error {
		var err error
		// Each session waits 5 s for a link.
		if fams, err = ocWaitClosed(ctx, lab, "failed", "intercept_unavailable", 12*time.Second); err != nil {
			return err
		}
		return ocWaitLog(ctx, lab.Tcpcopy(0), 4*time.Second, "level=WARN", "no intercept link is up")
	}
	rep := ocRun(t, cfg, false)
	ocCheck(t, rep, fams, "failed", "intercept_unavailable")
	if got := ocValue(fams, "tcpcopy_syns_sent_total"); got != 0 {
		t.Errorf("SYNs sent %v, want 0", got)
	}
	if got := ocValue(fams, "tcpcopy_intercept_links_up"); got != 0 {
		t.Errorf("links up %v, want 0", got)
	}
	if got := ocValue(fams, "tcpcopy_intercept_connect_failures_total"); got < 1 {
		t.Errorf("connect failures %v, want some", got)
	}
	ocLogHas(t, rep, "no intercept link is up", fmt.Sprintf("failed_intercept_unavailable=%d", ocConns))
}

// TestOutcomeStalled: a firewall on the target drops every packet to the
// target port above 500 bytes, so the first segment of each request never
// arrives (at any size tcpcopy shrinks it to: 1280, then 576 bytes) while
// the rest of the request gets through and the target answers it with
// duplicate ACKs. Every session ends as stalled after --stall-timeout,
// with where it stuck, instead of waiting for -t.
func TestOutcomeStalled(t *testing.T) {
	needRoot(t)
	var fams map[string]*dto.MetricFamily
	cfg := ocConfig()
	cfg.Load.Methods, cfg.Load.BodySizes = []string{"POST"}, []int{1500} // a 1448-byte segment and a short one
	cfg.TcpcopyArgs = append(append([]string(nil), labrun.DefaultTcpcopyArgs...), "--stall-timeout", "3s")
	cfg.Setup = func(ctx context.Context, lab *labrun.Lab) error {
		for _, args := range [][]string{
			{"add", "table", "inet", "stall"},
			{"add", "chain", "inet", "stall", "in", "{ type filter hook prerouting priority -300; }"},
			{"add", "rule", "inet", "stall", "in", "tcp", "dport", "8080", "ip", "length", ">", "500", "drop"},
		} {
			if out, err := lab.Topo.Run(ctx, netlab.Target, "nft", args...); err != nil {
				return fmt.Errorf("nft %v: %w: %s", args, err, out)
			}
		}
		return nil
	}
	cfg.During = func(ctx context.Context, lab *labrun.Lab) error {
		var err error
		if fams, err = ocWaitClosed(ctx, lab, "failed", "stalled", 15*time.Second); err != nil {
			return err
		}
		if err := ocWaitLog(ctx, lab.Tcpcopy(0), 4*time.Second, "level=WARN", "sessions stalled", "cause=unacknowledged"); err != nil {
			return err
		}
		return ocSummary(ctx, lab.Tcpcopy(0), fmt.Sprintf("stalled=%d", ocConns))
	}
	rep := ocRun(t, cfg, true)
	for _, c := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"tcpcopy_sessions_closed_total", []string{"outcome", "failed", "reason", "stalled"}, ocConns},
		{"tcpcopy_stalls_total", []string{"cause", "unacknowledged"}, ocConns},
		{"tcpcopy_synacks_received_total", nil, ocConns},
		{"tcpcopy_acked_bytes_total", nil, 0},
	} {
		if got := ocValue(fams, c.name, c.labels...); got != c.want {
			t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
		}
	}
	if got := ocValue(fams, "tcpcopy_mtu_blackholes_total"); got < ocConns {
		t.Errorf("tcpcopy_mtu_blackholes_total = %v, want at least one per session", got)
	}
	ocLogHas(t, rep, "last_stall=", fmt.Sprintf("failed_stalled=%d", ocConns))
}
