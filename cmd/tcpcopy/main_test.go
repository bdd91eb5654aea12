package main

import (
	"bytes"
	"context"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/tcpcopy-go/tcpcopy/internal/cliutil"
	"github.com/tcpcopy-go/tcpcopy/internal/tcpcopy"
	"github.com/tcpcopy-go/tcpcopy/pkg/pcapfilter"
)

// run runs the command on argv (argv[0] is the program name) without
// starting anything, and returns the exit status, the Config the daemon
// would have got, and what went to standard error.
func run(t *testing.T, argv ...string) (int, tcpcopy.Config, string) {
	t.Helper()
	var got tcpcopy.Config
	cmd := newCommand(func(_ context.Context, _ *cli.Command, cfg tcpcopy.Config) error {
		got = cfg
		return nil
	})
	var stdout, stderr bytes.Buffer
	cmd.Writer, cmd.ErrWriter = &stdout, &stderr
	code := cliutil.Run(context.Background(), cmd, cliutil.Normalize(argv, valueOpts, plainOpts), &stderr)
	return code, got, stderr.String()
}

// needLibpcap skips tests of -F in builds without cgo, where filters
// cannot be compiled.
func needLibpcap(t *testing.T) {
	t.Helper()
	if _, err := pcapfilter.Compile(pcapfilter.LinkTypeEthernet, 128, "tcp"); err != nil {
		t.Skipf("-F needs libpcap: %v", err)
	}
}

// base is the Config of the shortest valid command line,
// tcpcopy -x 80-203.0.113.20:8080 -s 203.0.113.30.
func base() tcpcopy.Config {
	c := tcpcopy.Default()
	c.Mappings = []tcpcopy.Mapping{{
		Online: netip.AddrPortFrom(netip.Addr{}, 80),
		Target: netip.MustParseAddrPort("203.0.113.20:8080"),
	}}
	c.Intercepts = []netip.AddrPort{netip.MustParseAddrPort("203.0.113.30:36524")}
	return c
}

// manyMappings returns n mappings of ports 1000.. to one target.
func manyMappings(n int) string {
	var xs []string
	for i := range n {
		xs = append(xs, strconv.Itoa(1000+i)+"-203.0.113.20:8080")
	}
	return strings.Join(xs, ",")
}

// writeSecret writes a secret file with mode.
func writeSecret(t *testing.T, dir, name string, mode os.FileMode) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte("0123456789abcdef0123456789abcdef\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestParse(t *testing.T) {
	dir := t.TempDir()
	pcap := filepath.Join(dir, "online.pcap")
	if err := os.WriteFile(pcap, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	secretFile := writeSecret(t, dir, "secret", 0o600)
	pool := func(prefix string, skip int) []netip.Addr {
		var out []netip.Addr
		for i := 1; i <= 254; i++ {
			if i != skip {
				out = append(out, netip.MustParseAddr(prefix+strconv.Itoa(i)))
			}
		}
		return out
	}
	tests := []struct {
		name string
		argv []string
		mod  func(*tcpcopy.Config)
	}{
		{"minimal", []string{"-x", "80-203.0.113.20:8080", "-s", "203.0.113.30"}, func(*tcpcopy.Config) {}},
		{"UDP only, no -s", []string{"-x", "udp:53-203.0.113.20:5353", "-n", "3"}, func(c *tcpcopy.Config) {
			c.Mappings[0] = tcpcopy.Mapping{Proto: tcpcopy.ProtoUDP, Online: netip.AddrPortFrom(netip.Addr{}, 53), Target: netip.MustParseAddrPort("203.0.113.20:5353")}
			c.Intercepts = nil
			c.Copies = 3
		}},
		{"TCP and UDP", []string{"-x", "tcp:80-203.0.113.20:8080,udp:53-203.0.113.20:5353", "-s", "203.0.113.30"}, func(c *tcpcopy.Config) {
			c.Mappings = append(c.Mappings, tcpcopy.Mapping{Proto: tcpcopy.ProtoUDP, Online: netip.AddrPortFrom(netip.Addr{}, 53), Target: netip.MustParseAddrPort("203.0.113.20:5353")})
		}},
		{"C example with -r", []string{"-x", "80-203.0.113.20:8080", "-s", "203.0.113.30", "-r", "20"},
			func(c *tcpcopy.Config) { c.Percent = 20 }},
		{"C example with pool and copies",
			[]string{"-x", "80-203.0.113.20:8080", "-s", "203.0.113.30:36524,203.0.113.31", "-c", "198.51.100.x", "-n", "3", "-C", "4"},
			func(c *tcpcopy.Config) {
				c.Intercepts = append(c.Intercepts, netip.MustParseAddrPort("203.0.113.31:36524"))
				c.ClientPool = pool("198.51.100.", 0)
				c.Copies = 3
				c.ConnsPerIntercept = 4
			}},
		{"glued values", []string{"-x80-203.0.113.20:8080", "-s203.0.113.30", "-r20", "-n12", "-C10", "-M9000", "-D8000"},
			func(c *tcpcopy.Config) {
				c.Percent = 20
				c.Copies = 12
				c.ConnsPerIntercept = 10
				c.MTU = 9000
				c.MSS = 8000
			}},
		{"group ending in a glued value", []string{"-dOx80-203.0.113.20:8080", "-Ls203.0.113.30"},
			func(c *tcpcopy.Config) { c.OnlyFullSessions = true; c.Lonely = true }},
		{"grouped flags", []string{"-dOW", "-x", "80-203.0.113.20:8080", "-Ls", "203.0.113.30", "-gx", "80-203.0.113.20:8080"},
			func(c *tcpcopy.Config) { c.OnlyFullSessions = true; c.NoWait = true; c.Lonely = true; c.Gradual = true }},
		{"-r 0 means all", []string{"-x", "80-203.0.113.20:8080", "-s", "203.0.113.30", "-r", "0"}, func(*tcpcopy.Config) {}},
		{"pool skips the target", []string{"-x", "80-198.51.100.7:8080", "-s", "203.0.113.30", "-c", "198.51.100.x"},
			func(c *tcpcopy.Config) {
				c.Mappings[0].Target = netip.MustParseAddrPort("198.51.100.7:8080")
				c.ClientPool = pool("198.51.100.", 7)
			}},
		{"-p before -s", []string{"-x", "80-203.0.113.20:8080", "-s", "203.0.113.30,203.0.113.31:1", "-p", "4000"},
			func(c *tcpcopy.Config) {
				c.InterceptPort = 4000
				c.Intercepts = []netip.AddrPort{netip.MustParseAddrPort("203.0.113.30:4000"), netip.MustParseAddrPort("203.0.113.31:1")}
			}},
		{"IPv6", []string{"-x", "[2001:db8::1]:80-[2001:db8::2]:8080", "-s", "2001:db8::30", "-c", "2001:db8::100"},
			func(c *tcpcopy.Config) {
				c.Mappings[0] = tcpcopy.Mapping{Online: netip.MustParseAddrPort("[2001:db8::1]:80"), Target: netip.MustParseAddrPort("[2001:db8::2]:8080")}
				c.Intercepts = []netip.AddrPort{netip.MustParseAddrPort("[2001:db8::30]:36524")}
				c.ClientPool = []netip.Addr{netip.MustParseAddr("2001:db8::100")}
			}},
		{"timeouts", []string{"-x", "80-203.0.113.20:8080", "-s", "203.0.113.30", "-t", "100", "-R", "25"},
			func(c *tcpcopy.Config) {
				c.SessionTimeout = 100 * time.Second
				c.KeepaliveTimeout = 220 * time.Second
				c.FixedRTT = 25 * time.Millisecond
			}},
		{"explicit -k", []string{"-x", "80-203.0.113.20:8080", "-s", "203.0.113.30", "-k", "30"},
			func(c *tcpcopy.Config) { c.KeepaliveTimeout = 30 * time.Second }},
		{"-M lowers the default -D", []string{"-x", "80-203.0.113.20:8080", "-s", "203.0.113.30", "-M", "1400"},
			func(c *tcpcopy.Config) { c.MTU = 1400; c.MSS = 1360 }},
		{"-M and -D", []string{"-x", "80-203.0.113.20:8080", "-s", "203.0.113.30", "-M9000", "-D8000"},
			func(c *tcpcopy.Config) { c.MTU = 9000; c.MSS = 8000 }},
		{"live capture", []string{"-x", "80-203.0.113.20:8080", "-s", "203.0.113.30", "-i", "eth0,eth1", "-B", "64", "-S", "1500"},
			func(c *tcpcopy.Config) {
				c.Interfaces = []string{"eth0", "eth1"}
				c.BufferMB = 64
				c.SnapLen = 1500
			}},
		{"filter", []string{"-x", "80-203.0.113.20:80", "-s", "203.0.113.30", "-F", " tcp dst port 80 "},
			func(c *tcpcopy.Config) {
				c.Mappings[0].Target = netip.MustParseAddrPort("203.0.113.20:80")
				c.Filter = "tcp dst port 80"
			}},
		{"offline", []string{"-x", "80-203.0.113.20:8080", "-s", "203.0.113.30", "-i", pcap, "-a", "2.5", "-I", "100", "-T", "3"},
			func(c *tcpcopy.Config) {
				c.OfflineFile = pcap
				c.Accel = 2.5
				c.IdleSkip = 100 * time.Millisecond
				c.Repeat = 3
			}},
		{"link-layer send", []string{"-o", "eth1", "-x", "80@aa:bb:cc:dd:ee:01-203.0.113.20:8080@aa:bb:cc:dd:ee:02", "-s", "203.0.113.30"},
			func(c *tcpcopy.Config) {
				c.OutputIf = "eth1"
				c.Mappings[0].OnlineMAC, _ = net.ParseMAC("aa:bb:cc:dd:ee:01")
				c.Mappings[0].TargetMAC, _ = net.ParseMAC("aa:bb:cc:dd:ee:02")
			}},
		{"misc", []string{"-x", "80-203.0.113.20:8080", "-s", "203.0.113.30", "-H", "192.0.2.9", "-f", "3", "-m", "512", "-U", "1"},
			func(c *tcpcopy.Config) {
				c.LocalhostAs = netip.MustParseAddr("192.0.2.9")
				c.PortShift = 3
				c.MemoryMB = 512
			}},
		{"long options", []string{"-x", "80-203.0.113.20:8080", "-s", "203.0.113.30", "--wire-version", "6", "--no-combined", "--resp-payload",
			"--workers", "3", "--metrics-addr", ":9100", "--stats-interval", "5s", "--log-format", "json", "--log-level", "debug",
			"--capture-timeout", "5ms", "--stall-timeout", "1m"},
			func(c *tcpcopy.Config) {
				c.CaptureTimeout = 5 * time.Millisecond
				c.StallTimeout = time.Minute
				c.WireVersion = 6
				c.Combined = false
				c.RespPayload = true
				c.Workers = 3
				c.MetricsAddr = ":9100"
				c.StatsInterval = 5 * time.Second
			}},
		{"100 mappings (docs/tcpcopy.md: any count)", []string{"-x", manyMappings(100), "-s", "203.0.113.30"},
			func(c *tcpcopy.Config) {
				c.Mappings = nil
				for i := range 100 {
					c.Mappings = append(c.Mappings, tcpcopy.Mapping{Online: netip.AddrPortFrom(netip.Addr{}, uint16(1000+i)),
						Target: netip.MustParseAddrPort("203.0.113.20:8080")})
				}
			}},
		{"secret file", []string{"-x", "80-203.0.113.20:8080", "-s", "203.0.113.30", "--secret-file", secretFile},
			func(c *tcpcopy.Config) { c.Secret = []byte("0123456789abcdef0123456789abcdef") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if slices.Contains(tt.argv, "-F") {
				needLibpcap(t)
			}
			code, got, stderr := run(t, append([]string{"tcpcopy"}, tt.argv...)...)
			if code != 0 {
				t.Fatalf("tcpcopy %q: exit %d, stderr %q", tt.argv, code, stderr)
			}
			want := base()
			tt.mod(&want)
			if !reflect.DeepEqual(got, want) {
				t.Errorf("tcpcopy %q:\n got %+v\nwant %+v", tt.argv, got, want)
			}
		})
	}
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	pcap := filepath.Join(dir, "online.pcap")
	if err := os.WriteFile(pcap, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	x := []string{"-x", "80-203.0.113.20:8080", "-s", "203.0.113.30"}
	openSecret, goodSecret := writeSecret(t, dir, "open", 0o640), writeSecret(t, dir, "good", 0o600)
	tests := []struct {
		name string
		argv []string
		want string // the one line on stderr, without "tcpcopy: " and " (see tcpcopy -h)"
	}{
		{"no -x", []string{"-s", "203.0.113.30"}, "option -x is required, e.g. -x 80-203.0.113.20:8080"},
		{"no -s", []string{"-x", "80-203.0.113.20:8080"}, "option -s is required: the intercept address, e.g. -s 203.0.113.30"},
		{"no -s beside UDP", []string{"-x", "udp:53-203.0.113.20:5353,80-203.0.113.20:8080"}, "option -s is required: the intercept address, e.g. -s 203.0.113.30"},
		{"bad protocol", []string{"-x", "sctp:80-203.0.113.20:8080"}, `option -x: "sctp:80-203.0.113.20:8080": protocol "sctp" is not tcp or udp`},
		{"-r 150", append(x, "-r", "150"), "option -r: 150 is out of range 0..100"},
		{"-r150 glued", append(x, "-r150"), "option -r: 150 is out of range 0..100"},
		{"-r garbage", append(x, "-r", "20%"), `option -r: "20%" is not a number`},
		{"-n huge", append(x, "-n", "99999999999999999999"), "option -n: 99999999999999999999 is out of range"},
		{"-n 1024", append(x, "-n", "1024"), "option -n: 1024 is out of range 1..1023"},
		{"-f 32", append(x, "-f", "32"), "option -f: 32 is out of range 0..31"},
		{"-C 12", append(x, "-C", "17"), "option -C: 17 is out of range 1..16"},
		{"-M 70000", append(x, "-M", "70000"), "option -M: 70000 is out of range 576..65535"},
		{"-D above MTU", append(x, "-D", "1461"), "option -D: 1461 is above the MTU (-M 1500) less 40"},
		{"-p 0", append(x, "-p", "0"), "option -p: 0 is out of range 1..65535"},
		{"target without port", []string{"-x", "80-203.0.113.20", "-s", "203.0.113.30"},
			`option -x: "80-203.0.113.20": target "203.0.113.20" needs a port (ip:port, [ipv6]:port)`},
		{"port too big", []string{"-x", "99999-203.0.113.20:8080", "-s", "203.0.113.30"},
			`option -x: "99999-203.0.113.20:8080": port 99999 is out of range 1..65535`},
		{"MAC without -o", []string{"-x", "80-203.0.113.20:8080@aa:bb:cc:dd:ee:ff", "-s", "203.0.113.30"},
			`option -x: "80-203.0.113.20:8080@aa:bb:cc:dd:ee:ff": the @mac forms need an output device (-o)`},
		{"-o without MAC", append(x, "-o", "eth1"),
			`option -x: "80-203.0.113.20:8080": with -o write [srcIP:]srcPort@srcMAC-targetIP:targetPort@nextHopMAC`},
		{"same port", []string{"-x", "80-203.0.113.20:80", "-s", "203.0.113.30"},
			`option -x: "80-203.0.113.20:80": copies to port 80 would match the capture again; give the online address (ip:80-...) or a filter (-F)`},
		{"bad -c", append(x, "-c", "*"), `option -c: "*" is not supported: list addresses, or a.b.c.x for a.b.c.1-254`},
		{"bad -H", append(x, "-H", "localhost"), `option -H: "localhost" is not an IP address`},
		{"-a live", append(x, "-a", "1"), "option -a: only with an offline file (-i FILE)"},
		{"-T live", append(x, "-T", "2"), "option -T: only with an offline file (-i FILE)"},
		{"-B offline", append(x, "-i", pcap, "-B", "16"), "option -B: only with live capture, not with an offline file"},
		{"--capture-timeout offline", append(x, "-i", pcap, "--capture-timeout", "2ms"), "option --capture-timeout: only with live capture, not with an offline file"},
		{"--capture-timeout 500us", append(x, "--capture-timeout", "500us"), "option --capture-timeout: 500µs is out of range 1ms..1s"},
		{"--stall-timeout 500ms", append(x, "--stall-timeout", "500ms"), "option --stall-timeout: 500ms is not between 1s and 1h0m0s"},
		{"--stall-timeout 2h", append(x, "--stall-timeout", "2h"), "option --stall-timeout: 2h0m0s is not between 1s and 1h0m0s"},
		{"-a garbage", append(x, "-i", pcap, "-a", "fast"), `option -a: "fast" is not a number`},
		{"-a NaN", append(x, "-i", pcap, "-a", "NaN"), "option -a: NaN is out of range 0.01..1000"},
		{"missing file", append(x, "-i", "online.pcap"), `option -i: offline file "online.pcap" does not exist`},
		{"bad filter", append(x, "-F", "tcp and"), `option -F: pcapfilter: filter "tcp and": syntax error`},
		{"-g with -r", append(x, "-g", "-r", "20"), "option -g: ramps the share of copied sessions up to 100%; do not combine it with -r"},
		{"wire version", append(x, "--wire-version", "8"), `option --wire-version: "8" is not auto, 6 or 7`},
		{"log level", append(x, "--log-level", "loud"), `option --log-level: "loud" is not debug, info, warn or error`},
		{"-U garbage", append(x, "-U", "big"), `option -U: "big" is not a number`},
		{"-R -1", append(x, "-R", "-1"), "option -R: -1 is out of range 0..60000"},
		{"-R -5", append(x, "-R", "-5"), "option -R: -5 is out of range 0..60000"},
		{"-I -1", append(x, "-i", pcap, "-I", "-1"), "option -I: -1 is out of range 0..86400000"},
		{"-t -1", append(x, "-t", "-1"), "option -t: -1 is out of range 1..604800"},
		{"--stats-interval 1ns", append(x, "--stats-interval", "1ns"), "option --stats-interval: 1ns is not 0 (off) or between 1s and 24h0m0s"},
		{"--metrics-addr port", append(x, "--metrics-addr", ":99999"), `option --metrics-addr: port "99999" is not 1..65535`},
		{"--metrics-addr host", append(x, "--metrics-addr", "metrics.example:9100"), `option --metrics-addr: host "metrics.example" is not an IP address`},
		{"--log-format", append(x, "--log-format", "xml"), `option --log-format: "xml" is not text or json`},
		{"120 kB -x", []string{"-x", strings.Repeat("8", 120000), "-s", "203.0.113.30"},
			cliutil.Shorten(`option -x: "` + strings.Repeat("8", 120000) + `": want [srcIP:]srcPort-targetIP:targetPort`)},
		{"--secret-file group readable", append(x, "--secret-file", openSecret),
			"option --secret-file: secret file " + openSecret + ": permissions 0640 let others read or change it; chmod 600 " + openSecret},
		{"--secret-file with --wire-version 6", append(x, "--secret-file", goodSecret, "--wire-version", "6"),
			"option --secret-file: authentication needs protocol version 7, and --wire-version is 6"},
		{"unknown flag", append(x, "-z"), "flag provided but not defined: -z"},
		{"argument", append(x, "extra"), `unexpected argument "extra"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if slices.Contains(tt.argv, "-F") {
				needLibpcap(t)
			}
			code, _, stderr := run(t, append([]string{"tcpcopy"}, tt.argv...)...)
			want := "tcpcopy: " + tt.want + " (see tcpcopy -h)\n"
			if code != 2 || stderr != want || len(stderr) > 600 {
				t.Errorf("tcpcopy %q: exit %d, stderr\n%q\nwant exit 2,\n%q", tt.argv, code, stderr, want)
			}
		})
	}
}

// TestGluedOneCharValue covers -n3, -C4, -f1: one-character glued values,
// common with getopt users. cliutil.Normalize indexes the second byte of
// the glued value and panics on them.
func TestGluedOneCharValue(t *testing.T) {
	defer func() {
		if r := recover(); r != nil {
			t.Errorf("tcpcopy -n3 -C4 -f1 panics in cliutil.Normalize: %v", r)
		}
	}()
	code, got, stderr := run(t, "tcpcopy", "-x", "80-203.0.113.20:8080", "-s", "203.0.113.30", "-n3", "-C4", "-f1")
	want := base()
	want.Copies, want.ConnsPerIntercept, want.PortShift = 3, 4, 1
	if code != 0 || !reflect.DeepEqual(got, want) {
		t.Errorf("tcpcopy -n3 -C4 -f1: exit %d (%q), got %+v", code, stderr, got)
	}
}

func TestHelp(t *testing.T) {
	cmd := newCommand(func(context.Context, *cli.Command, tcpcopy.Config) error {
		t.Error("help ran the daemon")
		return nil
	})
	var out, stderr bytes.Buffer
	cmd.Writer = &out
	if code := cliutil.Run(context.Background(), cmd, []string{"tcpcopy", "-h"}, &stderr); code != 0 {
		t.Fatalf("tcpcopy -h: exit %d, %s", code, stderr.String())
	}
	help := out.String()
	for _, o := range valueOpts + plainOpts {
		if !strings.Contains(help, "   -"+string(o)+" ") && !strings.Contains(help, ", -"+string(o)+" ") {
			t.Errorf("tcpcopy -h does not list -%c", o)
		}
	}
	for _, long := range []string{"metrics-addr", "stats-interval", "log-format", "log-level", "wire-version", "no-combined", "resp-payload", "workers"} {
		if !strings.Contains(help, "--"+long) {
			t.Errorf("tcpcopy -h does not list --%s", long)
		}
	}
}

// TestCompareFlags: the comparison's options, a mask with commas kept
// whole, and their errors.
func TestCompareFlags(t *testing.T) {
	x := []string{"tcpcopy", "-x", "80-203.0.113.20:8080", "-s", "203.0.113.30"}
	code, got, stderr := run(t, append(x, "--compare-bytes", "4096", "--compare-ignore-header", "X-Build",
		"--compare-ignore-header", "X-Host", "--compare-mask", `"id":\d{1,9}`, "--diff-log", "/tmp/diff.jsonl", "--diff-log-size", "10")...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if got.CompareBytes != 4096 || len(got.CompareIgnore) != 2 || len(got.CompareMasks) != 1 || got.CompareMasks[0] != `"id":\d{1,9}` ||
		got.DiffLog != "/tmp/diff.jsonl" || got.DiffLogMB != 10 {
		t.Errorf("config %+v", got)
	}
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"--compare-bytes", "20000"}, "option --compare-bytes: 20000 is out of range 0..16384"},
		{[]string{"--compare-mask", "a("}, "option --compare-mask: \"a(\": error parsing regexp: missing closing ): `a(`"},
		{[]string{"--compare-ignore-header", "X Y"}, `option --compare-ignore-header: "X Y" is not a header name`},
		{[]string{"--compare-bytes", "0", "--diff-log", "d.jsonl"}, "option --diff-log: the comparison is off (--compare-bytes 0)"},
		{[]string{"--diff-log-size", "0"}, "option --diff-log-size: 0 is out of range 1..4096"},
	} {
		code, _, stderr := run(t, append(x, tt.args...)...)
		if code != 2 || !strings.Contains(stderr, tt.want) {
			t.Errorf("%v: exit %d, stderr %q; want 2 and %q", tt.args, code, stderr, tt.want)
		}
	}
}
