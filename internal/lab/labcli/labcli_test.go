package labcli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
)

func TestMain(m *testing.M) {
	RunChildIfRequested()
	os.Exit(m.Run())
}

func run(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var out, errb bytes.Buffer
	code = Main(context.Background(), append([]string{"tcpcopy-lab"}, args...), &out, &errb)
	return code, out.String(), errb.String()
}

// TestLoadArgsRoundTrip checks that labrun.LoadArgs produces flags that the
// load subcommand parses back into the same options.
func TestLoadArgsRoundTrip(t *testing.T) {
	want := load.Options{
		URL: "http://[2001:db8:1::1]:80", Rate: 12.5, Duration: 1500 * time.Millisecond, MaxRequests: 77,
		Mode: load.Short, KeepAliveShare: 0.25, RequestsPerConn: 3, Methods: []string{"GET", "PUT"},
		BodySizes: []int{0, 10, 1 << 20}, RespSize: 99, Seed: 5, Concurrency: 9, Timeout: 2 * time.Second,
		IDPrefix: "p", LocalAddrs: []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8:1::11")},
		ReusePorts: true, DataOnAck: true, ExpectContinue: true, RespChunked: 0.25,
	}
	ka := load.Options{URL: "http://192.0.2.1:80", Rate: 1, Duration: time.Second, MaxRequests: 1,
		Mode: load.KeepAlive, KeepAliveShare: 0.5, RequestsPerConn: 250, Seed: 1, Concurrency: 2, Timeout: 3 * time.Second,
		Methods: []string{"POST"}, BodySizes: []int{4000}, LocalAddrs: []netip.Addr{netip.MustParseAddr("192.0.2.11")},
		Pipeline: 4, Think: 1500 * time.Millisecond}
	tls := load.Options{URL: "https://192.0.2.1:443", Rate: 1, Duration: time.Second, MaxRequests: 1,
		Mode: load.Mixed, KeepAliveShare: 0.5, RequestsPerConn: 10, Seed: 1, Concurrency: 2, Timeout: 3 * time.Second,
		Methods: []string{"GET"}, BodySizes: []int{0}, LocalAddrs: []netip.Addr{netip.MustParseAddr("192.0.2.12")},
		CA: "/tmp/lab/tls/ca.pem", HTTP2: true}
	for _, want := range []load.Options{want, ka, tls} {
		loadArgsRoundTrip(t, want)
	}
}

func loadArgsRoundTrip(t *testing.T, want load.Options) {
	t.Helper()
	var got load.Options
	cmd := &cli.Command{
		Name:           "x",
		Flags:          loadFlags(true),
		ExitErrHandler: func(context.Context, *cli.Command, error) {},
		Action: func(_ context.Context, cmd *cli.Command) (err error) {
			got, err = loadOptions(cmd)
			return err
		},
	}
	args := labrun.LoadArgs(want, "/tmp/log")
	if args[0] != "load" {
		t.Fatalf("args start with %q", args[0])
	}
	if err := cmd.Run(context.Background(), append([]string{"x"}, args[1:]...)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestUsageErrors(t *testing.T) {
	cases := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"unknown command", []string{"fly"}, ""},
		{"load without url", []string{"load"}, "url"},
		{"bad mode", []string{"run", "--mode", "fast"}, "fast"},
		{"unbounded", []string{"run", "--duration", "0s"}, "bounded"},
		{"bad quoting", []string{"run", "--tcpcopy-args", "-x 'a"}, "unterminated"},
		// The dash-led value parses; the lone intercept is refused before
		// any namespace is built.
		{"intercept alone", []string{"run", "--intercept-args", "-i x", "--intercept-bin", "/bin/true"}, "without --tcpcopy-bin"},
		{"bench bad mode", []string{"bench", "--modes", "short,slow"}, "slow"},
		{"bench falling rates", []string{"bench", "--rates", "400,200"}, "rise"},
		{"bench bad rate", []string{"bench", "--rates", "100,x"}, "bad rate"},
		{"watch without out", []string{"watch", "--from", "192.0.2.1"}, "out"},
		{"watch bad port", []string{"watch", "--out", "/nonexistent/x", "--port", "70000"}, "out of range"},
		{"scrape without url", []string{"scrape"}, "url"},
		{"unknown client stack", []string{"run", "--client-stack", "windows95"}, "unknown client stack \"windows95\" (known: linux, no-timestamps"},
		{"bad sysctl", []string{"run", "--client-sysctl", "net.ipv4.tcp_sack"}, "want key=value"},
		{"loss above 100", []string{"run", "--loss-copy", "101"}, "LossCopy: loss 101% out of range 0..100"},
		{"negative loss", []string{"run", "--loss-response", "-1"}, "LossResponse"},
		{"loss below resolution", []string{"run", "--loss-copy", "0.001"}, "resolution"},
		{"client mtu below ipv6", []string{"run", "--client-mtu", "576"}, "below 1280"},
		{"client mtu too large", []string{"run", "--client-mtu", "70000"}, "ClientMTU 70000 out of range"},
		{"target mtu below ipv6 with ipv6", []string{"run", "--target-mtu", "1200", "--ipv6"}, "no IPv6"},
		{"mss above link", []string{"run", "--client-mss", "1461"}, "ClientMSS 1461 out of range 64..1460"},
		{"pcap in a missing directory", []string{"run", "--pcap", "/nonexistent/dir/x.pcap"}, "no directory"},
		{"bad target differ", []string{"run", "--target-differ", "status:200:5"}, `--target-differ: bad differ spec: rule "status:200:5"`},
		{"unknown differ change", []string{"run", "--target-differ", "drop:5"}, `unknown change "drop"`},
		{"bad chunked share", []string{"load", "--url", "http://192.0.2.1", "--resp-chunked", "2"}, "chunked response share 2 not in 0..1"},
		{"serve bad differ", []string{"serve", "--listen", "127.0.0.1:0", "--log", "/dev/null", "--differ", "body:0"}, `--differ: bad differ spec: rule "body:0"`},
		{"unknown target server", []string{"run", "--target-server", "apache"}, "unknown target server \"apache\" (known: recorder, nginx-kr100"},
		{"pipelined short connections", []string{"run", "--mode", "short", "--pipeline", "4"}, "pipelining needs keep-alive connections"},
		{"think on short connections", []string{"load", "--url", "http://192.0.2.1", "--mode", "short", "--think", "1s"}, "think time needs keep-alive"},
		{"negative pipeline", []string{"load", "--url", "http://192.0.2.1", "--mode", "keepalive", "--pipeline", "-1"}, "negative pipeline"},
		{"busy without delay", []string{"serve", "--listen", "127.0.0.1:0", "--log", "/dev/null", "--slow-for", "1s"}, "without an accept delay"},
		{"busy always", []string{"serve", "--listen", "127.0.0.1:0", "--log", "/dev/null", "--accept-delay", "10ms", "--slow-for", "2s", "--slow-every", "2s"}, "always busy"},
		{"negative close-every", []string{"serve", "--listen", "127.0.0.1:0", "--log", "/dev/null", "--close-every", "-1"}, "want 0 or more"},
	}
	for _, c := range cases {
		code, _, stderr := run(t, c.args...)
		if code != ExitSetup {
			t.Errorf("%s: exit %d, want %d (stderr %s)", c.name, code, ExitSetup, stderr)
		}
		if !strings.Contains(stderr, c.wantErr) {
			t.Errorf("%s: stderr %q does not mention %q", c.name, stderr, c.wantErr)
		}
	}
}

func TestLoadCommand(t *testing.T) {
	srv := httptest.NewServer(recorder.New(io.Discard, recorder.Options{}))
	defer srv.Close()
	path := filepath.Join(t.TempDir(), "load.jsonl")
	code, stdout, stderr := run(t, "load", "--url", srv.URL, "--max", "7", "--rate", "0", "--log", path, "--body-size", "0,100")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if !strings.HasPrefix(stdout, "7 requests, 7 ok") {
		t.Errorf("stdout %q", stdout)
	}
	rs, err := load.ReadResults(path)
	if err != nil || len(rs) != 7 {
		t.Fatalf("results: %d, %v", len(rs), err)
	}
	for _, r := range rs {
		if r.BodyLen != 0 && r.BodyLen != 100 {
			t.Errorf("body size %d not in 0,100", r.BodyLen)
		}
	}
}

// TestRunWithoutCopy is the end-to-end run of the orchestrator in
// namespaces, without tcpcopy: the online recorder sees every request, the
// target none, and the fidelity is 0 %.
func TestRunWithoutCopy(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: builds network namespaces")
	}
	dir := t.TempDir()
	jsonPath := filepath.Join(dir, "report.json")
	code, stdout, stderr := run(t, "run", "--duration", "2s", "--rate", "50", "--dir", dir, "--json", jsonPath)
	if code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", code, stdout, stderr)
	}
	t.Logf("report:\n%s", stdout)
	var rep labrun.Report
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	// 50/s for 2 s: requests 0..99, fewer on a starved machine (the load
	// slows down rather than queueing).
	if n := rep.Load.Requests; n < 50 || n > 100 || rep.Load.OK != n {
		t.Errorf("load: %d requests, %d ok; want 100 (at least 50), all ok (first error %q)", n, rep.Load.OK, rep.Load.FirstErr)
	}
	if rep.Compare.Online != rep.Load.Requests {
		t.Errorf("online recorded %d, want all %d", rep.Compare.Online, rep.Load.Requests)
	}
	if rep.Compare.Target != 0 || rep.Compare.Matched != 0 || rep.Compare.Fidelity != 0 {
		t.Errorf("target: %+v, want nothing", rep.Compare)
	}
	if rep.Copying || rep.Tcpcopy != nil || rep.Intercept != nil {
		t.Errorf("copying reported without tcpcopy: %+v", rep)
	}
	if !strings.Contains(stdout, "fidelity   0.0% (no tcpcopy") {
		t.Errorf("report does not state the fidelity: %s", stdout)
	}
	if len(rep.Problems) != 0 {
		t.Errorf("problems: %v", rep.Problems)
	}
	entries, _ := os.ReadDir("/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), rep.ID+"-") {
			t.Errorf("namespace %s left behind", e.Name())
		}
	}
	// The same run with a fidelity floor fails with its own exit code.
	code, _, stderr = run(t, "run", "--duration", "200ms", "--rate", "20", "--dir", t.TempDir(), "--min-fidelity", "50")
	if code != ExitLowFidelity {
		t.Errorf("--min-fidelity: exit %d, want %d (%s)", code, ExitLowFidelity, stderr)
	}
}

func TestScrapeCommand(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		io.WriteString(w, "tcpcopy_sessions_opened_total 3\n")
	}))
	defer srv.Close()
	code, stdout, stderr := run(t, "scrape", "--url", srv.URL+"/metrics")
	if code != 0 || stdout != "tcpcopy_sessions_opened_total 3\n" {
		t.Errorf("exit %d, stdout %q, stderr %q", code, stdout, stderr)
	}
	if code, _, stderr := run(t, "scrape", "--url", srv.URL+"/other"); code != ExitFailure || !strings.Contains(stderr, "404") {
		t.Errorf("not found: exit %d, stderr %q", code, stderr)
	}
}

func TestDemoDefaults(t *testing.T) {
	var got map[string]string
	cmd := runCommand()
	cmd.ExitErrHandler = func(context.Context, *cli.Command, error) {}
	cmd.Action = func(_ context.Context, cmd *cli.Command) error {
		if err := applyDemoDefaults(cmd); err != nil {
			return err
		}
		got = map[string]string{}
		for _, d := range demoDefaults {
			got[d.name] = fmt.Sprint(cmd.Value(d.name))
		}
		return nil
	}
	// A flag given on the command line wins over the demo's default.
	if err := cmd.Run(context.Background(), []string{"run", "--demo", "--rate", "7"}); err != nil {
		t.Fatal(err)
	}
	if got["rate"] != "7" || got["duration"] != "10s" || got["gro"] != "true" || got["leak-check"] != "true" || got["extra-clients"] != "16" ||
		got["target-differ"] != DemoTargetDiffer || got["diff-log"] != "true" {
		t.Errorf("demo flags %v", got)
	}
}

// TestStackFlags checks that --client-stack applies a preset and that
// explicit flags win over it.
func TestStackFlags(t *testing.T) {
	cases := []struct {
		name string
		args []string
		want labrun.Config
	}{
		{"nothing", nil, labrun.Config{}},
		{"preset", []string{"--client-stack", "no-timestamps"},
			labrun.Config{ClientStack: "no-timestamps", ClientSysctls: []string{"net.ipv4.tcp_timestamps=0"}}},
		{"preset data-on-ack", []string{"--client-stack", "data-on-ack"},
			labrun.Config{ClientStack: "data-on-ack", Load: load.Options{DataOnAck: true}}},
		{"flag wins over preset", []string{"--client-stack", "mss536", "--client-mss", "1000"},
			labrun.Config{ClientStack: "mss536+custom", ClientMSS: 1000}},
		{"explicit false wins", []string{"--client-stack", "data-on-ack", "--data-on-ack=false"},
			labrun.Config{ClientStack: "data-on-ack+custom"}},
		{"sysctl after the preset's", []string{"--client-stack", "no-sack", "--client-sysctl", "net.ipv4.tcp_sack=1", "--client-sysctl", "net.ipv4.tcp_ecn=1"},
			labrun.Config{ClientStack: "no-sack+custom", ClientSysctls: []string{"net.ipv4.tcp_sack=0", "net.ipv4.tcp_sack=1", "net.ipv4.tcp_ecn=1"}}},
		{"flags alone", []string{"--client-mtu", "9000", "--target-mtu", "1400", "--expect-continue", "--loss-copy", "1.5", "--loss-response", "2"},
			labrun.Config{ClientMTU: 9000, TargetMTU: 1400, Load: load.Options{ExpectContinue: true}, LossCopy: 1.5, LossResponse: 2}},
	}
	for _, c := range cases {
		var got labrun.Config
		cmd := runCommand()
		cmd.ExitErrHandler = func(context.Context, *cli.Command, error) {}
		cmd.Action = func(_ context.Context, cmd *cli.Command) error { return applyStackFlags(cmd, &got) }
		if err := cmd.Run(context.Background(), append([]string{"run"}, c.args...)); err != nil {
			t.Errorf("%s: %v", c.name, err)
			continue
		}
		if !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s:\ngot  %+v\nwant %+v", c.name, got, c.want)
		}
	}
}
