// Command tcpcopy runs on the online host: it captures the clients'
// packets to the -x addresses, replays each client connection to the
// target, and paces the copies by the target's responses that intercept
// sends back. It accepts the C TCPCopy 1.x command line (the options of all
// its build variants at once) and speaks intercept's wire protocol,
// version 6 (C) or 7 (ours). See docs/tcpcopy-flags.md.
package main

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/netip"
	"os"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/tcpcopy-go/tcpcopy/internal/cliutil"
	"github.com/tcpcopy-go/tcpcopy/internal/daemon"
	"github.com/tcpcopy-go/tcpcopy/internal/secret"
	"github.com/tcpcopy-go/tcpcopy/internal/tcpcopy"
	"github.com/tcpcopy-go/tcpcopy/internal/version"
	"github.com/tcpcopy-go/tcpcopy/pkg/pcapfilter"
)

// Single-letter options, for getopt-style argument normalisation.
const (
	valueOpts = "xspCcHnfrmMDRtkiFBSoaITlPU"
	plainOpts = "gOWLdvh"
)

func main() {
	cmd := newCommand(start)
	cliutil.Exit(context.Background(), cmd, cliutil.Normalize(os.Args, valueOpts, plainOpts))
}

// starter runs the daemon once the command line is parsed; tests pass
// one that records the Config.
type starter func(ctx context.Context, c *cli.Command, cfg tcpcopy.Config) error

const description = `Mappings: -x 80-203.0.113.20:8080 copies what clients send to port 80 of
any local address; -x 192.0.2.1:80-203.0.113.20:8080 only to 192.0.2.1;
IPv6 as -x [2001:db8::1]:80-[2001:db8::2]:8080. With -o, each side carries
a MAC: 80@aa:bb:cc:dd:ee:01-203.0.113.20:8080@aa:bb:cc:dd:ee:02. A udp:
prefix copies UDP datagrams instead (-x udp:53-203.0.113.20:5353; tcp: is
the default), without intercept: -s is needed only with a TCP mapping.

-i names a file to replay (instead of interfaces to capture on) when it
contains a "/", names an existing file, or ends in .pcap, .pcapng, .cap
or .gz. -a, -I and -T apply to such a file only, -B and -S to live capture
only. Values out of range are refused, never truncated as in C.`

func newCommand(run starter) *cli.Command {
	def := tcpcopy.Default()
	cmd := &cli.Command{
		Name:        "tcpcopy",
		Usage:       "replay live client traffic to a target server",
		UsageText:   "tcpcopy -x [udp:][srcIP:]srcPort-targetIP:targetPort[,...] -s intercept[:port][,...] [options]",
		Description: description,
		Version:     version.String(),
		Flags: []cli.Flag{
			str("x", "", "what to copy where, `mappings` [tcp:|udp:][srcIP:]srcPort-targetIP:targetPort[,...] (required)"),
			str("s", "", "intercept `addresses`, ip[:port][,...] (required with a TCP mapping)"),
			str("p", fmt.Sprint(def.InterceptPort), "intercept `port` for -s entries without one"),
			str("C", fmt.Sprint(def.ConnsPerIntercept), "`connections` to each intercept, 1..16"),
			str("c", "", "client `addresses` of the copies, ip[,...]; a.b.c.x means a.b.c.1-254 (default: the clients' own)"),
			str("H", "", "source `ip` for copies of loopback clients (127.0.0.1, ::1)"),
			str("n", fmt.Sprint(def.Copies), "`copies` of each session, 1..1023 (extra copies use shifted source ports)"),
			str("f", fmt.Sprint(def.PortShift), "source-port `shift` 0..31, so that several tcpcopy instances don't collide"),
			str("r", fmt.Sprint(def.Percent), "`percent` of sessions copied, 1..100 (0: all)"),
			&cli.BoolFlag{Name: "g", Usage: "ramp the copied share from 1% to 100%, 1% a second"},
			str("m", fmt.Sprint(def.MemoryMB), "memory budget in `MB`: above it new sessions are not copied"),
			str("M", fmt.Sprint(def.MTU), "MTU in `bytes` of copies sent to the target, 576..65535; longer packets are re-segmented"),
			str("D", "", "MSS in `bytes` of SYNs tcpcopy makes up (default: 1460, at most MTU-40)"),
			str("R", "0", "fixed RTT in `ms` (0: measure it)"),
			str("t", fmt.Sprint(int(def.SessionTimeout/time.Second)), "drop a session when the target has not answered for this many `seconds`"),
			str("k", "", "drop an idle session after this many `seconds` (default: -t + 120)"),
			&cli.BoolFlag{Name: "O", Usage: "copy only sessions whose SYN was captured"},
			&cli.BoolFlag{Name: "W", Usage: "send requests without waiting for the target's responses"},
			&cli.BoolFlag{Name: "L", Usage: "keep running while no intercept is connected, and reconnect"},
			&cli.StringFlag{Name: "i", Usage: "`source`: interfaces to capture on, comma-separated (default: all), or a pcap file to replay (see below)", TakesFile: true},
			str("F", "", "tcpdump `filter` replacing the one made from -x"),
			str("B", fmt.Sprint(def.BufferMB), "capture ring size in `MB`, 1..4096 (live capture)"),
			str("S", fmt.Sprint(def.SnapLen), "capture snap length in `bytes`, 128..262144 (live capture)"),
			str("o", "", "send copies as Ethernet frames on this `device`; -x then needs the @mac forms"),
			str("a", "1", "replay speed `factor`, e.g. 2.5 (offline file)"),
			str("I", "0", "skip gaps between packets longer than this many `ms` (offline file; 0: off)"),
			str("T", fmt.Sprint(def.Repeat), "replay the file this many `times` (offline file)"),
			str("U", "", "ignored: C's per-session memory pool in `KB`"),
			str("l", "", "log `file` (default: standard error; reopened on SIGHUP)"),
			str("P", "", "pid `file`"),
			&cli.BoolFlag{Name: "d", Usage: "run in the background"},
			&cli.StringFlag{Name: "wire-version", Value: "auto", DefaultText: "auto", Usage: "intercept protocol `version`: auto (7, else 6), 6 or 7"},
			&cli.BoolFlag{Name: "no-combined", Usage: "version-6 intercept sends bare records (C intercept built with --disable-combined)"},
			&cli.BoolFlag{Name: "resp-payload", Usage: "version-6 intercept sends 192-byte records (C intercept built with --with-resp-payload)"},
			&cli.IntFlag{Name: "workers", Value: def.Workers, Usage: "session `workers` (and cores used), 1..256"},
			&cli.DurationFlag{Name: "capture-timeout", Value: def.CaptureTimeout, Usage: "longest wait before captured packets are handed over, whole ms, 1ms..1s (live capture): longer wakes tcpcopy less often and delays copies more"},
			&cli.DurationFlag{Name: "ack-delay", Value: def.AckDelay, Usage: "delay acknowledgements of the target's answers up to this long, so the next packet carries them (0: at once)"},
			&cli.IntFlag{Name: "compare-bytes", Value: def.CompareBytes, Usage: "compare the target's responses with the online server's, keeping the first `bytes` of each verbatim (status line and headers), 0..16384; 0 turns the comparison off"},
			&cli.StringSliceFlag{Name: "compare-ignore-header", Usage: "do not compare this response `header` (repeatable; Date, Set-Cookie, Server, ETag and others are ignored already)"},
			&cli.StringSliceFlag{Name: "compare-mask", Usage: "replace what this `regexp` matches in response bodies before comparing them (repeatable; bodies within --compare-bytes)"},
			&cli.StringFlag{Name: "diff-log", Usage: "write the responses that differ or are missing to this `file`, JSON Lines, rotated"},
			&cli.IntFlag{Name: "diff-log-size", Value: def.DiffLogMB, Usage: "rotate the diff log at this size, `MB` (keeps 3 older files)"},
			&cli.StringFlag{Name: "protocol", Usage: "copy as `protocol`: tcp (default), or mysql (logins redone, pooled connections joined, statement ids mapped; docs/mysql.md) for every mapping, or mysql:PORT[,PORT] for the mappings with those online ports"},
			&cli.StringFlag{Name: "mysql-users", Usage: "with --protocol mysql: `file` of user:password lines for the target (mode 600)", TakesFile: true},
			&cli.StringFlag{Name: "mysql-default-user", Usage: "with --protocol mysql: `user` that logs in connections joined mid-way when no login of their client address was captured"},
			&cli.StringFlag{Name: "mysql-default-db", Usage: "with --mysql-default-user: its default `database`"},
			&cli.BoolFlag{Name: "mysql-read-only", Usage: "with --protocol mysql: copy no statement that changes data (warming a replica)"},
			&cli.DurationFlag{Name: "stall-timeout", Value: def.StallTimeout, Usage: "end a session that made no progress this long while the target kept answering (outcome reason stalled), 1s..1h"},
			&cli.StringFlag{Name: "cpu-profile", Usage: "write a CPU profile (pprof) to this `file` until exit (diagnostics)"},
			&cli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus metrics (/metrics) and the live page (/, /api/status) on this `host:port`"},
			&cli.StringFlag{Name: "secret-file", Usage: "authenticate every intercept link with the secret in this `file` (mode 0600; version 7 only: no C intercept)", TakesFile: true},
			&cli.DurationFlag{Name: "stats-interval", Value: def.StatsInterval, Usage: "period of the stats log line (0: off)"},
			&cli.StringFlag{Name: "log-format", Value: "text", DefaultText: "text", Usage: "log `format`: text or json"},
			&cli.StringFlag{Name: "log-level", Value: "info", DefaultText: "info", Usage: "log `level`: debug, info, warn or error"},
		},
		Action: func(ctx context.Context, c *cli.Command) error {
			if c.Args().Len() > 0 {
				return cliutil.Usagef("unexpected argument %q", c.Args().First())
			}
			cfg, err := configFrom(c)
			if err != nil {
				return &cliutil.UsageError{Err: err}
			}
			return run(ctx, c, cfg)
		},
	}
	// Repeated flags take one value each: a --compare-mask regexp may
	// hold commas.
	cmd.DisableSliceFlagSeparator = true
	cliutil.Prepare(cmd)
	return cmd
}

// str is a value option parsed by configFrom, shown with its default
// unquoted.
func str(name, def, usage string) *cli.StringFlag {
	return &cli.StringFlag{Name: name, Value: def, DefaultText: def, Usage: usage}
}

// start handles -d, -P and -l and runs tcpcopy until a signal.
func start(ctx context.Context, c *cli.Command, cfg tcpcopy.Config) error {
	ctx, proc, err := daemon.Start(ctx, cliutil.DaemonOptions(c))
	if err != nil {
		return err
	}
	if proc.Detach {
		return nil
	}
	defer proc.Close()
	if c.IsSet("U") {
		proc.Log.Warn("option -U is ignored: session memory is managed by the Go runtime")
	}
	if os.Getenv("GOMAXPROCS") == "" {
		// One core per worker: more threads than there is work for only
		// wake each other up (docs/performance.md).
		runtime.GOMAXPROCS(cfg.Workers)
	}
	cfg.Ready = daemon.Ready
	return proc.Failed(tcpcopy.Run(ctx, cfg, proc.Log))
}

// configFrom reads the command line into a validated Config. Numbers are
// only parsed here; Validate checks their ranges, so the limits live in
// one place.
func configFrom(c *cli.Command) (tcpcopy.Config, error) {
	cfg := tcpcopy.Default()
	port, err := cliutil.IntInRange("-p", c.String("p"), 1, 65535)
	if err != nil {
		return cfg, err
	}
	cfg.InterceptPort = uint16(port)
	cfg.OutputIf = strings.TrimSpace(c.String("o"))
	if cfg.Mappings, err = tcpcopy.ParseMappings(c.String("x"), cfg.OutputIf != ""); err != nil {
		return cfg, err
	}
	if cfg.Intercepts, err = tcpcopy.ParseIntercepts(c.String("s"), cfg.InterceptPort); err != nil {
		return cfg, err
	}
	targets := make([]netip.Addr, 0, len(cfg.Mappings))
	for _, m := range cfg.Mappings {
		targets = append(targets, m.Target.Addr())
	}
	if cfg.ClientPool, err = tcpcopy.ParseClientPool(c.String("c"), targets); err != nil {
		return cfg, err
	}
	if h := strings.TrimSpace(c.String("H")); h != "" {
		if cfg.LocalhostAs, err = netip.ParseAddr(h); err != nil {
			return cfg, fmt.Errorf("option -H: %q is not an IP address", h)
		}
		cfg.LocalhostAs = cfg.LocalhostAs.Unmap()
	}
	ints := []struct {
		name string
		dst  *int
	}{
		{"C", &cfg.ConnsPerIntercept}, {"n", &cfg.Copies}, {"f", &cfg.PortShift},
		{"r", &cfg.Percent}, {"m", &cfg.MemoryMB}, {"M", &cfg.MTU},
		{"B", &cfg.BufferMB}, {"S", &cfg.SnapLen}, {"T", &cfg.Repeat},
	}
	for _, o := range ints {
		if *o.dst, err = number(c, o.name); err != nil {
			return cfg, err
		}
	}
	cfg.MSS = min(cfg.MSS, cfg.MTU-40) // C's 1460 unless -M is smaller
	durations := []struct {
		name string
		unit time.Duration
		dst  *time.Duration
	}{
		{"R", time.Millisecond, &cfg.FixedRTT},
		{"t", time.Second, &cfg.SessionTimeout},
		{"I", time.Millisecond, &cfg.IdleSkip},
	}
	for _, o := range durations {
		v, err := number(c, o.name)
		if err != nil {
			return cfg, err
		}
		*o.dst = time.Duration(v) * o.unit
	}
	cfg.KeepaliveTimeout = cfg.SessionTimeout + 120*time.Second
	if c.IsSet("k") {
		v, err := number(c, "k")
		if err != nil {
			return cfg, err
		}
		cfg.KeepaliveTimeout = time.Duration(v) * time.Second
	}
	if c.IsSet("D") {
		if cfg.MSS, err = number(c, "D"); err != nil {
			return cfg, err
		}
	}
	if c.IsSet("U") {
		if _, err := cliutil.IntInRange("-U", c.String("U"), 0, math.MaxInt32); err != nil {
			return cfg, err
		}
	}
	if cfg.Accel, err = strconv.ParseFloat(strings.TrimSpace(c.String("a")), 64); err != nil {
		return cfg, fmt.Errorf("option -a: %q is not a number", c.String("a"))
	}
	cfg.Gradual = c.Bool("g")
	cfg.OnlyFullSessions = c.Bool("O")
	cfg.NoWait = c.Bool("W")
	cfg.Lonely = c.Bool("L")
	if cfg.Interfaces, cfg.OfflineFile, err = tcpcopy.ParseInput(c.String("i")); err != nil {
		return cfg, err
	}
	for _, name := range []string{"a", "I", "T"} {
		if c.IsSet(name) && cfg.OfflineFile == "" {
			return cfg, fmt.Errorf("option -%s: only with an offline file (-i FILE)", name)
		}
	}
	for _, name := range []string{"B", "S", "capture-timeout"} {
		if c.IsSet(name) && cfg.OfflineFile != "" {
			dash := "-"
			if len(name) > 1 {
				dash = "--"
			}
			return cfg, fmt.Errorf("option %s%s: only with live capture, not with an offline file", dash, name)
		}
	}
	cfg.Filter = strings.TrimSpace(c.String("F"))
	switch v := strings.TrimSpace(c.String("wire-version")); v {
	case "auto", "":
		cfg.WireVersion = 0
	case "6", "7":
		cfg.WireVersion = int(v[0] - '0')
	default:
		return cfg, fmt.Errorf("option --wire-version: %q is not auto, 6 or 7", v)
	}
	cfg.Combined = !c.Bool("no-combined")
	cfg.RespPayload = c.Bool("resp-payload")
	cfg.Workers = int(c.Int("workers"))
	cfg.AckDelay = c.Duration("ack-delay")
	cfg.StallTimeout = c.Duration("stall-timeout")
	cfg.CompareBytes = int(c.Int("compare-bytes"))
	if v := c.StringSlice("compare-ignore-header"); len(v) > 0 {
		cfg.CompareIgnore = v
	}
	if v := c.StringSlice("compare-mask"); len(v) > 0 {
		cfg.CompareMasks = v
	}
	cfg.DiffLog = c.String("diff-log")
	cfg.DiffLogMB = int(c.Int("diff-log-size"))
	cfg.CaptureTimeout = c.Duration("capture-timeout")
	on, ports, err := tcpcopy.ParseProtocol(c.String("protocol"))
	if err != nil {
		return cfg, err
	}
	cfg.MySQL = tcpcopy.MySQLConfig{On: on, Ports: ports, UsersFile: c.String("mysql-users"),
		DefaultUser: strings.TrimSpace(c.String("mysql-default-user")), DefaultDB: strings.TrimSpace(c.String("mysql-default-db")),
		ReadOnly: c.Bool("mysql-read-only")}
	cfg.MetricsAddr = strings.TrimSpace(c.String("metrics-addr"))
	cfg.StatsInterval = c.Duration("stats-interval")
	if err := cliutil.CheckLogOptions(c.String("log-format"), c.String("log-level")); err != nil {
		return cfg, err
	}
	if path := c.String("secret-file"); c.IsSet("secret-file") {
		if path == "" {
			return cfg, errors.New("option --secret-file: empty file name")
		}
		if cfg.Secret, err = secret.Read(path); err != nil {
			return cfg, fmt.Errorf("option --secret-file: %w", err)
		}
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	if cfg.Filter != "" {
		if _, err := pcapfilter.Compile(pcapfilter.LinkTypeEthernet, cfg.SnapLen, cfg.Filter); err != nil {
			return cfg, fmt.Errorf("option -F: %w", err)
		}
	}
	return cfg, nil
}

// number parses a decimal option value. Its range is checked by
// Config.Validate; here it only has to fit 32 bits, so that converting it
// to a Duration cannot overflow.
func number(c *cli.Command, name string) (int, error) {
	s := strings.TrimSpace(c.String(name))
	v, err := strconv.Atoi(s)
	switch {
	case errors.Is(err, strconv.ErrRange) || (err == nil && (v < math.MinInt32 || v > math.MaxInt32)):
		return 0, fmt.Errorf("option -%s: %s is out of range", name, s)
	case err != nil:
		return 0, fmt.Errorf("option -%s: %q is not a number", name, c.String(name))
	}
	return v, nil
}
