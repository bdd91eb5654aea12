package e2e

// The target's UDP answers through intercept, with the real binaries: a
// DNS load copied to a target DNS server, intercept on the assistant with
// a filter that selects the target's answers, tcpcopy counting each
// copy answered or unanswered.

import (
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/dnslab"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
	"github.com/tcpcopy-go/tcpcopy/internal/testbin"
)

// startIntercept starts intercept on the assistant with args
// (placeholders expanded) and waits until it runs.
func startIntercept(t *testing.T, topo *netlab.Topology, args ...string) *netlab.Proc {
	t.Helper()
	args, err := labrun.Expand(args, labrun.Vars(topo))
	if err != nil {
		t.Fatal(err)
	}
	p, err := topo.Start(netlab.Assistant, testbin.Build(t, "intercept"), args...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Stop() })
	waitLog(t, p, `"intercept started"`)
	return p
}

// waitLog waits, at most 10 s, until p's log holds s.
func waitLog(t *testing.T, p *netlab.Proc, s string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; {
		if b, _ := os.ReadFile(p.StderrPath); strings.Contains(string(b), s) {
			return
		}
		if !p.Running() || time.Now().After(deadline) {
			t.Fatalf("no %s in the log: %v %s", s, p.Err(), p.StderrTail(2000))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestCopyDNSAnswers copies a DNS load (IPv4 and IPv6, truncated and
// fragmented answers among them) with intercept on the assistant: a
// target that answers everything gives every copy answered, with
// response times; one that drops every fifth query gives exactly those
// unanswered; with a version-6 link (as with a C intercept) the copies go
// on and nothing is awaited.
func TestCopyDNSAnswers(t *testing.T) {
	needRoot(t)
	const perFamily = 50
	// libpcap's "udp" does not match IPv6 fragments (next header 44):
	// "ip6[6] == 44" lets the fragmented IPv6 answers through.
	interceptArgs := []string{"-i", "{assistant.target_if}", "-F", "tcp and src port 8080 or udp and src port 5353 or ip6[6] == 44",
		"-b", "{assistant.online_v4}", "--log-format", "json"}
	for _, tt := range []struct {
		name      string
		drop      int
		wire      string
		wantRoute bool
	}{
		{"all answered", 0, "auto", true},
		{"every fifth dropped", 5, "auto", true},
		{"version 6 link", 0, "6", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			topo := netlab.NewForTest(t, netlab.Options{GRO: true})
			defer topo.Close()
			onlineSrv := dnsServe(t, topo.Online.Name,
				netip.AddrPortFrom(topo.Online.ClientV4, dnsOnlinePort), netip.AddrPortFrom(topo.Online.ClientV6, dnsOnlinePort))
			// Bound to the addresses the copies go to, so that the answers
			// come from them (a server on a wildcard address answers from
			// its outgoing interface's: no route would match).
			target := dnsServeWith(t, topo.Target.Name, dnslab.ServeOptions{DropEvery: tt.drop},
				netip.AddrPortFrom(topo.Target.OnlineV4, dnsTargetPort), netip.AddrPortFrom(topo.Target.OnlineV6, dnsTargetPort))
			ic := startIntercept(t, topo, interceptArgs...)
			mappings := dnsMappings
			if tt.wire == "6" {
				mappings = "udp:{online.client_v4}:53-{target.online_v4}:5353" // version 6 is IPv4 only
			}
			tc := startTcpcopy(t, topo, "-x", mappings, "-s", "{assistant.online_v4}", "-i", "{online.client_if}",
				"--wire-version", tt.wire, "--log-format", "json", "--stats-interval", "0")
			waitLog(t, tc, `"intercept link up"`)
			if tt.wire == "6" {
				dnsLoad(t, topo, topo.Online.ClientV4, perFamily)
			} else {
				dnsLoads(t, topo, perFamily)
			}
			online := onlineSrv.Entries()
			waitCount(target, len(online))
			if err := tc.Stop(); err != nil {
				t.Errorf("tcpcopy: %v", err)
			}
			entries := target.Entries()
			checkDNSCopies(t, online, entries, 1)
			dropped := 0
			for _, e := range entries {
				if e.Dropped {
					dropped++
				}
			}
			sum := offLogLine(t, tc.StderrPath, "tcpcopy stopped")
			if sum == nil {
				t.Fatalf("no summary: %s", tc.StderrTail(2000))
			}
			t.Logf("tcpcopy stopped: %s", offSummaryText(sum))
			n := float64(len(online))
			want := map[string]float64{
				"udp_copied": n, "udp_tracked": n, "udp_answered": n - float64(dropped), "udp_unanswered": float64(dropped), "udp_pending": 0,
			}
			if !tt.wantRoute {
				want = map[string]float64{"udp_copied": n, "udp_tracked": 0, "udp_answered": 0, "udp_unanswered": 0, "udp_untracked_no_route": n}
			}
			for k, v := range want {
				if got := offNum(t, sum, k); got != v {
					t.Errorf("%s = %v, want %v", k, got, v)
				}
			}
			if tt.wantRoute {
				if _, ok := sum["udp_answer_p50"]; !ok {
					t.Errorf("no response time in the summary")
				}
				if sum["udp_answers_late"] != nil {
					t.Errorf("late answers: %v", sum["udp_answers_late"])
				}
			}
			if tt.drop > 0 && dropped == 0 {
				t.Errorf("the target dropped nothing")
			}
			if !ic.Running() {
				t.Errorf("intercept died: %s", ic.StderrTail(2000))
			}
		})
	}
}
