package e2e

// The comparison of the target's UDP answers with the online server's,
// with the real binaries: a DNS load copied to a target DNS server,
// intercept on the assistant sending the target's answers, tcpcopy
// capturing the online server's answers and judging each pair.

import (
	"bufio"
	"encoding/json"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/dnslab"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
)

// udpDiff is what the test reads of a diff log line.
type udpDiff struct {
	Verdict string `json:"verdict"`
	Kind    string `json:"kind"`
	Client  string `json:"client"`
	Target  string `json:"target"`
	Index   int    `json:"index"`
	Request string `json:"request"`
	Offset  int    `json:"offset"`
	Online  struct {
		Length int     `json:"length"`
		Hash   string  `json:"hash"`
		TimeMS float64 `json:"time_ms"`
	} `json:"online"`
	TargetR struct {
		Length int     `json:"length"`
		Hash   string  `json:"hash"`
		TimeMS float64 `json:"time_ms"`
	} `json:"target_response"`
}

// readUDPDiffs reads the diff log at path (none: no line).
func readUDPDiffs(t *testing.T, path string) []udpDiff {
	t.Helper()
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []udpDiff
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<16), 1<<20)
	for sc.Scan() {
		var d udpDiff
		if err := json.Unmarshal(sc.Bytes(), &d); err != nil {
			t.Fatalf("diff log line %q: %v", sc.Text(), err)
		}
		out = append(out, d)
	}
	return out
}

// TestCompareDNS copies a DNS load (IPv4 and IPv6, truncated and
// fragmented answers among them) with intercept on the assistant and the
// comparison on: a target that answers like the online server gives every
// answer the verdict same, but the fragmented ones (intercept sees their
// first fragment only: not compared); a target that alters every third
// answer gives exactly those, not fragmented, the verdict differs, each in
// the diff log with its query's name, and nothing else. The first run is
// recorded and replayed offline: the online answers then come from the
// file.
func TestCompareDNS(t *testing.T) {
	needRoot(t)
	const perFamily = 50
	pcap := filepath.Join(t.TempDir(), "dns.pcap")
	var recorded []dnslab.Entry // the online server's entries of the recorded run
	interceptArgs := []string{"-i", "{assistant.target_if}", "-F", "tcp and src port 8080 or udp and src port 5353 or ip6[6] == 44",
		"-b", "{assistant.online_v4}", "--log-format", "json"}
	for _, tt := range []struct {
		name    string
		alter   int
		record  bool // record the run for the offline one
		offline bool
	}{
		{name: "identical", record: true},
		{name: "every third altered", alter: 3},
		{name: "offline", offline: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if tt.offline && len(recorded) == 0 {
				t.Skip("no recording")
			}
			topo := netlab.NewForTest(t, netlab.Options{GRO: true})
			defer topo.Close()
			target := dnsServeWith(t, topo.Target.Name, dnslab.ServeOptions{AlterEvery: tt.alter},
				netip.AddrPortFrom(topo.Target.OnlineV4, dnsTargetPort), netip.AddrPortFrom(topo.Target.OnlineV6, dnsTargetPort))
			ic := startIntercept(t, topo, interceptArgs...)
			diffLog := filepath.Join(t.TempDir(), "diff.jsonl")
			args := []string{"-x", dnsMappings, "-s", "{assistant.online_v4}", "--log-format", "json", "--stats-interval", "0", "--diff-log", diffLog}
			online := recorded
			if tt.offline {
				tc := startTcpcopy(t, topo, append(args, "-i", pcap)...)
				select {
				case <-tc.Done():
				case <-time.After(60 * time.Second):
					t.Fatalf("tcpcopy did not finish the replay: %s", tc.StderrTail(2000))
				}
				if err := tc.Err(); err != nil {
					t.Fatalf("tcpcopy: %v %s", err, tc.StderrTail(2000))
				}
				waitCount(target, len(online))
				checkDNSCopies(t, online, target.Entries(), 1)
				sum := offLogLine(t, tc.StderrPath, "tcpcopy stopped")
				if sum == nil {
					t.Fatalf("no summary: %s", tc.StderrTail(2000))
				}
				t.Logf("tcpcopy stopped: %s", offSummaryText(sum))
				// The replay waits for the intercept link: every copy is
				// followed, answered and judged; the online answers come
				// from the file.
				same, notCompared := offNum(t, sum, "same"), offNum(t, sum, "not_compared")
				if n := float64(len(online)); offNum(t, sum, "udp_tracked") != n || offNum(t, sum, "udp_answered") != n {
					t.Errorf("offline: udp_tracked %v, udp_answered %v, want %v", sum["udp_tracked"], sum["udp_answered"], n)
				}
				if same == 0 || offNum(t, sum, "differs") != 0 || offNum(t, sum, "missing") != 0 ||
					same+notCompared != offNum(t, sum, "udp_answered") || notCompared > float64(len(online))/2 {
					t.Errorf("offline verdicts: same %v, not compared %v; want every answered copy (%v) judged, all same but the fragmented answers",
						same, notCompared, sum["udp_answered"])
				}
				if d := readUDPDiffs(t, diffLog); len(d) != 0 {
					t.Errorf("%d differences logged: %+v", len(d), d)
				}
				return
			}
			onlineSrv := dnsServe(t, topo.Online.Name,
				netip.AddrPortFrom(topo.Online.ClientV4, dnsOnlinePort), netip.AddrPortFrom(topo.Online.ClientV6, dnsOnlinePort))
			var rec *labrun.PcapRecorder
			if tt.record {
				f, err := os.Create(pcap)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				if rec, err = labrun.RecordPcap(topo.Online.Name, netlab.IfToClient, f); err != nil {
					t.Fatal(err)
				}
			}
			tc := startTcpcopy(t, topo, append(args, "-i", "{online.client_if}")...)
			waitLog(t, tc, `"intercept link up"`)
			dnsLoads(t, topo, perFamily)
			online = onlineSrv.Entries()
			waitCount(target, len(online))
			if err := tc.Stop(); err != nil {
				t.Errorf("tcpcopy: %v", err)
			}
			if rec != nil {
				if _, err := rec.Close(); err != nil {
					t.Fatal(err)
				}
				recorded = online
			}
			entries := target.Entries()
			checkDNSCopies(t, online, entries, 1)

			// What the target did: the answers it altered that intercept
			// could hash (not fragmented), by query name.
			fragmented, altered := 0, map[string]bool{}
			for _, e := range entries {
				k, _ := dnslab.KindOf(e.Query.Name)
				switch {
				case k == dnslab.BigAnswer:
					fragmented++
				case e.Altered:
					altered[e.Query.Name] = true
				}
			}
			if tt.alter > 0 && len(altered) == 0 {
				t.Fatal("the target altered no answer intercept could hash")
			}
			if !ic.Running() {
				t.Fatalf("intercept died: %s", ic.StderrTail(2000))
			}
			if err := ic.Stop(); err != nil {
				t.Errorf("intercept: %v", err)
			}
			isum := offLogLine(t, ic.StderrPath, "intercept stopped")
			sum := offLogLine(t, tc.StderrPath, "tcpcopy stopped")
			if sum == nil || isum == nil {
				t.Fatalf("no summary: %s %s", tc.StderrTail(2000), ic.StderrTail(2000))
			}
			t.Logf("tcpcopy stopped: %s", offSummaryText(sum))

			// Only the fragmented answers are not compared: intercept
			// captures their first fragment only. An answer that beat its
			// route to intercept is held cut, with its whole payload's
			// hash taken before, and is compared.
			n := float64(len(online))
			notCompared := offNum(t, sum, "not_compared")
			if why, _ := sum["not_compared_why"].(string); int(notCompared) != fragmented ||
				(fragmented > 0 && why != "target_incomplete="+strconv.Itoa(fragmented)) {
				t.Errorf("not_compared = %v (%q), want the %d fragmented answers (target_incomplete)", notCompared, why, fragmented)
			}
			t.Logf("intercept held %v answers for their routes", isum["udp_held_released"])

			diffs := readUDPDiffs(t, diffLog)
			logged := map[string]bool{}
			for _, d := range diffs {
				name, ok := strings.CutPrefix(d.Request, "dns ")
				name, _, _ = strings.Cut(name, " ")
				name = strings.TrimSuffix(name, ".")
				if d.Verdict == "missing" && ok && d.Online.Length > 0 && d.TargetR.Length == 0 {
					continue // an unanswered copy: counted below
				}
				if !ok || d.Verdict != "differs" || d.Kind != "body" || d.Offset != 3 || d.Index != 0 ||
					d.Online.Length != d.TargetR.Length || d.Online.Hash == d.TargetR.Hash || d.Online.TimeMS <= 0 || d.TargetR.TimeMS <= 0 {
					t.Errorf("diff log line %+v: want a body difference at offset 3 (the RA flag) of a DNS query, equal lengths, other hashes, both times", d)
				}
				if logged[name] {
					t.Errorf("%s logged twice", name)
				}
				if !altered[name] {
					t.Errorf("answer to %s logged, not altered", name)
				}
				logged[name] = true
			}
			// A copy the target's answer to which did not come through
			// (udp_unanswered: lost on the way, rare) is missing.
			missing := offNum(t, sum, "udp_unanswered")
			if unlogged := len(altered) - len(logged); float64(unlogged) > missing {
				t.Errorf("%d altered answers, %d logged: the %d others are more than the %v unanswered",
					len(altered), len(logged), unlogged, missing)
			}
			want := map[string]float64{
				"differs": float64(len(logged)), "missing": missing, "same": n - notCompared - float64(len(logged)) - missing,
				"udp_answered": n - missing, "udp_tracked": n,
			}
			for k, v := range want {
				if got := offNum(t, sum, k); got != v {
					t.Errorf("%s = %v, want %v", k, got, v)
				}
			}
		})
	}
}
