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

func TestParse(t *testing.T) {
	dir := t.TempDir()
	pcap := filepath.Join(dir, "online.pcap")
	if err := os.WriteFile(pcap, nil, 0o644); err != nil {
		t.Fatal(err)
	}
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
			if code != 2 || stderr != want {
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
