package e2e

// Real target servers. The lab's recorder never closes a keep-alive
// connection; real servers do, on purpose, while the online server keeps
// the client's connection open. These tests run every row of
// labrun.TargetServers (nginx with keepalive_requests 100 and with
// keepalive_timeout 1s while clients pause longer, a server answering
// some or all requests with Connection: close, a server slow to accept
// with a tiny backlog) with keep-alive and short connections, GETs and
// POSTs, and a client that pipelines. Each must copy every request,
// byte-identical (counted by the target's own log), and tcpcopy's own
// fidelity, read from its metrics before it stops, must say so within
// 0.1 %. TestFidelityCountsUncopied checks that fidelity when sessions end
// early: it must equal the share of the request bytes that reached the
// target. About 45 s on 2 cores.

import (
	"bufio"
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
)

// needNginx skips the test when nginx is not installed (scripts/deps.sh
// installs Debian's nginx).
func needNginx(t *testing.T, srv labrun.TargetServer) {
	t.Helper()
	if srv.Nginx == nil {
		return
	}
	if _, err := labrun.FindNginx(); err != nil {
		t.Skipf("target server %s: %v", srv.Name, err)
	}
}

// targetLoad is the load of a target-server run: GETs and POSTs of up to
// 300 kB, keep-alive or short connections, about 3 s, made to meet the
// server's limits (more than 100 requests per connection for
// keepalive_requests 100, 1.5 s pauses for keepalive_timeout 1s).
func targetLoad(srv labrun.TargetServer, mode load.Mode) load.Options {
	o := load.Options{
		Rate: 60, Duration: 3 * time.Second, MaxRequests: 180, Mode: mode, RequestsPerConn: 10,
		Methods: []string{"GET", "POST"}, BodySizes: []int{0, 1000, 20000, 300000}, Concurrency: 4,
	}
	srv.ExerciseLoad(&o)
	switch {
	case mode == load.Short:
	case srv.PerConn > 0:
		// Two connections of PerConn requests and more: every one
		// passes the limit.
		o.Concurrency, o.Rate, o.MaxRequests = 2, 150, 450
	case srv.Think > 0:
		// Each connection carries a request every Think: 8 connections
		// of 3 requests, 2 idle closes each.
		o.Concurrency, o.Rate, o.Duration, o.MaxRequests = 8, 20, 4*time.Second, 80
	}
	return o
}

// checkReportedFidelity asserts that tcpcopy's own fidelity, read from
// its metrics before it stopped, is within 0.1 % of want (a share, 0..1).
func checkReportedFidelity(t *testing.T, rep *labrun.Report, want float64) {
	t.Helper()
	s := rep.Sessions
	if s == nil || s.Source != "metrics" || !s.Copy.Known {
		t.Fatalf("no fidelity from tcpcopy's metrics: %+v", s)
	}
	if got := s.Copy.Fidelity; math.Abs(got-want) > 0.001 {
		t.Errorf("tcpcopy reports fidelity %.4f, the target got %.4f (acked %d, captured %d, uncopied %d bytes)",
			got, want, s.Copy.AckedBytes, s.Copy.CapturedBytes, s.Copy.UncopiedBytes)
	}
}

// nginxLogged counts the requests in nginx's access log of a run whose
// target server is nginx.
func nginxLogged(t *testing.T, dir string) int {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, "nginx", "access.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	n := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) != "" {
			n++
		}
	}
	return n
}

// checkTargetRun is what every target-server run asserts: every request
// copied, tcpcopy's fidelity 1, the server named in the report, and
// nginx's own log in agreement with the recorder behind it.
func checkTargetRun(t *testing.T, srv labrun.TargetServer, rep *labrun.Report, online, target []recorder.Entry) {
	t.Helper()
	defer func() {
		if t.Failed() && !testing.Verbose() { // run wrote it already with -v
			rep.WriteText(testWriter{t})
		}
	}()
	checkAllCopied(t, rep, online, target)
	checkReportedFidelity(t, rep, float64(rep.Compare.Matched)/float64(max(rep.Compare.Online, 1)))
	if rep.Load.Failed > 0 {
		t.Errorf("%d load requests failed: %s", rep.Load.Failed, rep.Load.FirstErr)
	}
	if rep.Server.Name != srv.Name || rep.Server.Limits == "" {
		t.Errorf("the report names the target server %+v, want %s", rep.Server, srv.Name)
	}
	if srv.Nginx != nil {
		if !strings.HasPrefix(rep.Server.Software, "nginx 1.") || rep.Server.Proc == nil || rep.Server.Proc.Exit != "" {
			t.Errorf("nginx: %+v", rep.Server)
		}
		if got := nginxLogged(t, rep.Dir); got != len(target) {
			t.Errorf("nginx logged %d requests, the recorder behind it %d", got, len(target))
		}
	}
}

func TestTargetServers(t *testing.T) {
	needRoot(t)
	for _, srv := range labrun.TargetServers {
		for _, mode := range []load.Mode{load.KeepAlive, load.Short} {
			t.Run(srv.Name+"/"+mode.String(), func(t *testing.T) {
				t.Parallel()
				needNginx(t, srv)
				cfg := labrun.Config{GRO: true, TargetServer: srv.Name, Load: targetLoad(srv, mode)}
				rep, online, target := run(t, cfg)
				checkTargetRun(t, srv, rep, online, target)
				// The server's limits were met: it closed connections the
				// client kept, and tcpcopy followed.
				reconnects := rep.Sessions.Copy.Reconnects
				if mode == load.KeepAlive && (srv.Nginx != nil || srv.CloseEvery > 0) && reconnects == 0 {
					t.Errorf("no reconnects: the target never closed a connection the client kept")
				}
				if d := srv.Listen.AcceptDelay; d > 0 && rep.Compare.LatencyMax < d {
					t.Errorf("copy latency at most %v: the target was never busy", rep.Compare.LatencyMax)
				}
				t.Logf("%s %v: %d requests, %d reconnects, copy latency p99 %v", srv.Name, mode, len(online), reconnects, rep.Compare.LatencyP99)
			})
		}
	}
}

// TestPipelinedClient: a client that writes several requests on a
// keep-alive connection before reading the first answer, to the
// recorder and to nginx closing after 100 requests. Batches of 3 straddle
// nginx's close (requests 100 to 102, 199 to 201): when nginx answers the
// 100th with Connection: close, the 101st and 102nd are already sent, and
// must be copied again on the next connection. (Batches of 4 would end at
// the 100th and 200th: nothing would be in flight at the close.)
func TestPipelinedClient(t *testing.T) {
	needRoot(t)
	for _, name := range []string{"recorder", "nginx-kr100"} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			srv, err := labrun.TargetServerByName(name)
			if err != nil {
				t.Fatal(err)
			}
			needNginx(t, srv)
			o := targetLoad(srv, load.KeepAlive)
			o.Pipeline, o.Concurrency, o.Rate, o.MaxRequests = 3, 2, 150, 450
			o.RequestsPerConn = max(o.RequestsPerConn, 150)
			rep, online, target := run(t, labrun.Config{GRO: true, TargetServer: name, Load: o})
			checkTargetRun(t, srv, rep, online, target)
			t.Logf("%s: %d pipelined requests, %d reconnects", name, len(online), rep.Sessions.Copy.Reconnects)
		})
	}
}

// TestFidelityCountsUncopied: sessions that end early. The target resets
// every connection from the third client address (an nftables rule on its
// input), so the copies of a third of the client connections fail at their
// first SYN, and the later requests of those keep-alive connections go
// uncopied. tcpcopy's fidelity (acknowledged / captured + uncopied request
// bytes) must equal, within 0.1 %, the share of the request bytes whose
// requests reached the target: the requests the target's recorder logged,
// weighed by their size on the wire as the load client wrote them
// (load.Result.WireLen: request line, headers and body, exactly the
// payload tcpcopy captures). No copy is half-acknowledged here: a
// connection's copy is refused whole or delivered whole.
func TestFidelityCountsUncopied(t *testing.T) {
	needRoot(t)
	t.Parallel()
	cfg := labrun.Config{
		GRO:          true,
		ExtraClients: 2,
		AllSources:   true, // new connections go round 192.0.2.10, .11 and .12
		Load: load.Options{
			Rate: 100, Duration: 3 * time.Second, MaxRequests: 300, Mode: load.KeepAlive, RequestsPerConn: 25,
			Methods: []string{"POST"}, BodySizes: []int{3000}, Concurrency: 6,
		},
	}
	var reset string
	cfg.Setup = func(ctx context.Context, lab *labrun.Lab) error {
		reset = lab.Topo.Client.Extra4[1].String()
		for _, args := range [][]string{
			{"add", "table", "inet", "tcg_reset"},
			{"add", "chain", "inet", "tcg_reset", "in", "{ type filter hook input priority 0; }"},
			{"add", "rule", "inet", "tcg_reset", "in", "ip", "saddr", reset, "tcp", "dport", "8080", "reject", "with", "tcp", "reset"},
		} {
			if out, err := lab.Topo.Run(ctx, netlab.Target, "nft", args...); err != nil {
				return fmt.Errorf("nft %v: %w: %s", args, err, out)
			}
		}
		return nil
	}
	rep, online, target := run(t, cfg)
	defer func() {
		if t.Failed() && !testing.Verbose() {
			rep.WriteText(testWriter{t})
		}
	}()
	results, err := load.ReadResults(filepath.Join(rep.Dir, "load.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	wire := map[string]int64{}
	for _, r := range results {
		wire[r.ID] = r.WireLen
	}
	got := map[string]bool{}
	for _, e := range target {
		got[e.ID] = true
	}
	var all, arrived, allBody, arrivedBody int64
	resetConns, lost := map[string]bool{}, 0
	for _, e := range online {
		n, ok := wire[e.ID]
		if !ok || n <= e.BodyLen {
			t.Fatalf("request %s: no wire length in the load's log (%d)", e.ID, n)
		}
		all += n
		allBody += e.BodyLen
		if got[e.ID] {
			arrived += n
			arrivedBody += e.BodyLen
		} else {
			lost++
		}
		if strings.HasPrefix(e.Remote, reset+":") {
			resetConns[e.Remote] = true
			if got[e.ID] {
				t.Errorf("request %s from %s reached the target through the reset rule", e.ID, e.Remote)
			}
		} else if !got[e.ID] {
			t.Errorf("request %s from %s never reached the target", e.ID, e.Remote)
		}
	}
	share := float64(arrived) / float64(all)
	t.Logf("%d of %d requests at the target, %d of %d request bytes (%.4f; body bytes %.4f); %d connections reset; tcpcopy: fidelity %.4f, %d requests uncopied %v",
		len(online)-lost, len(online), arrived, all, share, float64(arrivedBody)/float64(allBody), len(resetConns),
		rep.Sessions.Copy.Fidelity, rep.Sessions.Copy.UncopiedRequests, rep.Sessions.Copy.Uncopied)
	if share < 0.2 || share > 0.8 || len(resetConns) == 0 {
		t.Fatalf("share %.3f at the target with %d connections reset: the rule did not split the connections", share, len(resetConns))
	}
	checkReportedFidelity(t, rep, share)
	if c := rep.Sessions.Copy; c.UncopiedRequests == 0 || c.UncopiedBytes == 0 {
		t.Errorf("tcpcopy counted no uncopied request: %+v", c)
	}
	if rep.Lost == nil || !rep.Lost.Explained {
		t.Errorf("the lost requests are not on sessions tcpcopy counted as not reproduced: %+v", rep.Lost)
	}
}
