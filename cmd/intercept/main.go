// Command intercept runs on the assistant host: it captures the target's
// responses (routed there by the target), keeps their IP/TCP headers and
// sends them to the tcpcopy that owns each connection. It accepts the C
// intercept 1.x command line and speaks its wire protocol (version 6) as
// well as our version 7. See docs/intercept.md.
package main

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/tcpcopy-go/tcpcopy/internal/cliutil"
	"github.com/tcpcopy-go/tcpcopy/internal/daemon"
	"github.com/tcpcopy-go/tcpcopy/internal/intercept"
	"github.com/tcpcopy-go/tcpcopy/internal/version"
)

// Single-letter options, for getopt-style argument normalisation.
const (
	valueOpts = "iFpbnsDlPt"
	plainOpts = "cdvh"
)

func main() {
	cmd := newCommand()
	cliutil.Exit(context.Background(), cmd, cliutil.Normalize(os.Args, valueOpts, plainOpts))
}

func newCommand() *cli.Command {
	def := intercept.Default()
	cmd := &cli.Command{
		Name:      "intercept",
		Usage:     "send the target's response headers to tcpcopy",
		UsageText: "intercept -F 'tcp and src port 8080' [-i eth0] [options]",
		Version:   version.String(),
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "i", Usage: "capture on these `interfaces` (comma-separated; default: every interface that is up)"},
			&cli.StringFlag{Name: "F", Usage: "tcpdump `filter` selecting the target's responses (required)"},
			&cli.StringFlag{Name: "p", Value: fmt.Sprint(def.Listen.Port()), Usage: "listen `port` for tcpcopy links"},
			&cli.StringFlag{Name: "b", Usage: "bind `address` for tcpcopy links (default: all)"},
			&cli.StringFlag{Name: "n", Value: fmt.Sprint(def.MaxCombined), Usage: "most records per combined frame, 1..16 (6 with --resp-payload)"},
			&cli.StringFlag{Name: "s", Value: fmt.Sprint(def.HeldMax), Usage: "most responses held while their route is missing"},
			&cli.StringFlag{Name: "D", Usage: "rewrite response destinations `dockered_ip-orig_ip[,...]` before routing"},
			&cli.BoolFlag{Name: "c", Usage: "refuse tcpcopy links that arrive more than 3 s after the first one"},
			&cli.StringFlag{Name: "t", Value: fmt.Sprint(int(def.RouteIdle / time.Second)), Usage: "route idle timeout in `seconds`"},
			&cli.StringFlag{Name: "l", Usage: "log `file` (default: standard error; reopened on SIGHUP)"},
			&cli.StringFlag{Name: "P", Usage: "pid `file`"},
			&cli.BoolFlag{Name: "d", Usage: "run in the background"},
			&cli.BoolFlag{Name: "no-combined", Usage: "version-6 links get bare records instead of combined frames (C --disable-combined)"},
			&cli.BoolFlag{Name: "resp-payload", Usage: "version-6 links get 192-byte records with up to 128 payload bytes (C --with-resp-payload)"},
			&cli.StringFlag{Name: "allow", Usage: "accept tcpcopy links only from these `CIDRs` (comma-separated)"},
			&cli.StringFlag{Name: "cpu-profile", Usage: "write a CPU profile (pprof) to this `file` until exit (diagnostics)"},
			&cli.StringFlag{Name: "metrics-addr", Usage: "serve Prometheus metrics on this `host:port`"},
			&cli.DurationFlag{Name: "capture-timeout", Value: def.CaptureTimeout, Usage: "longest wait before captured responses are handed over, whole ms, 1ms..1s: longer wakes intercept less often and delays every handshake more"},
			&cli.DurationFlag{Name: "stats-interval", Value: def.StatsInterval, Usage: "period of the stats log line (0: off)"},
			&cli.StringFlag{Name: "log-format", Value: "text", Usage: "log format: text or json"},
			&cli.StringFlag{Name: "log-level", Value: "info", Usage: "log level: debug, info, warn or error"},
			&cli.IntFlag{Name: "queue-bytes", Value: def.QueueBytes, Usage: "bytes queued for one slow tcpcopy link before records are dropped"},
			&cli.IntFlag{Name: "max-links", Value: def.MaxLinks, Usage: "most simultaneous tcpcopy links"},
			&cli.IntFlag{Name: "compare-window", Value: def.CompareWindow, Usage: "longest start of each response a tcpcopy link may ask for to compare responses, `bytes` (0..16384); 0 captures headers only and compares nothing"},
		},
		Action: action,
	}
	cliutil.Prepare(cmd)
	return cmd
}

func action(ctx context.Context, c *cli.Command) error {
	if c.Args().Len() > 0 {
		return cliutil.Usagef("unexpected argument %q", c.Args().First())
	}
	cfg, err := configFrom(c)
	if err != nil {
		return &cliutil.UsageError{Err: err}
	}
	ctx, proc, err := daemon.Start(ctx, cliutil.DaemonOptions(c))
	if err != nil {
		return err
	}
	if proc.Detach {
		return nil
	}
	defer proc.Close()
	return intercept.Run(ctx, cfg, proc.Log)
}

func configFrom(c *cli.Command) (intercept.Config, error) {
	cfg := intercept.Default()
	var err error
	cfg.Interfaces = cliutil.SplitList(c.String("i"))
	cfg.Filter = strings.TrimSpace(c.String("F"))
	port, err := cliutil.IntInRange("-p", c.String("p"), 1, 65535)
	if err != nil {
		return cfg, err
	}
	addr := netip.IPv4Unspecified()
	if b := c.String("b"); b != "" {
		if addr, err = netip.ParseAddr(b); err != nil {
			return cfg, fmt.Errorf("option -b: %q is not an IP address", b)
		}
	}
	cfg.Listen = netip.AddrPortFrom(addr, uint16(port))
	if cfg.MaxCombined, err = cliutil.IntInRange("-n", c.String("n"), 1, 16); err != nil {
		return cfg, err
	}
	if cfg.HeldMax, err = cliutil.IntInRange("-s", c.String("s"), 1, 1<<22); err != nil {
		return cfg, err
	}
	secs, err := cliutil.IntInRange("-t", c.String("t"), 1, 7*24*3600)
	if err != nil {
		return cfg, err
	}
	cfg.RouteIdle = time.Duration(secs) * time.Second
	if cfg.Docker, err = parseDocker(c.String("D")); err != nil {
		return cfg, err
	}
	cfg.Protect = c.Bool("c")
	cfg.Combined = !c.Bool("no-combined")
	cfg.RespPayload = c.Bool("resp-payload")
	cfg.CompareWindow = int(c.Int("compare-window"))
	for _, s := range cliutil.SplitList(c.String("allow")) {
		p, err := parsePrefix(s)
		if err != nil {
			return cfg, err
		}
		cfg.Allow = append(cfg.Allow, p)
	}
	cfg.MetricsAddr = c.String("metrics-addr")
	cfg.CaptureTimeout = c.Duration("capture-timeout")
	cfg.StatsInterval = c.Duration("stats-interval")
	if cfg.StatsInterval < 0 {
		return cfg, fmt.Errorf("option --stats-interval: must not be negative")
	}
	cfg.QueueBytes = int(c.Int("queue-bytes"))
	if cfg.QueueBytes < 64<<10 {
		return cfg, fmt.Errorf("option --queue-bytes: %d is below the minimum of 65536", cfg.QueueBytes)
	}
	cfg.MaxLinks = int(c.Int("max-links"))
	if cfg.MaxLinks < 1 {
		return cfg, fmt.Errorf("option --max-links: must be at least 1")
	}
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, intercept.CheckFilter(&cfg)
}

// parseDocker parses -D dockered_ip-orig_ip[,...].
func parseDocker(s string) (map[netip.Addr]netip.Addr, error) {
	items := cliutil.SplitList(s)
	if len(items) == 0 {
		return nil, nil
	}
	m := make(map[netip.Addr]netip.Addr, len(items))
	for _, it := range items {
		from, to, ok := strings.Cut(it, "-")
		a, err1 := netip.ParseAddr(strings.TrimSpace(from))
		b, err2 := netip.ParseAddr(strings.TrimSpace(to))
		if !ok || err1 != nil || err2 != nil || a.Is4() != b.Is4() {
			return nil, fmt.Errorf("option -D: %q is not dockered_ip-orig_ip (two addresses of one family)", it)
		}
		m[a] = b
	}
	return m, nil
}

// parsePrefix accepts a CIDR or a single address.
func parsePrefix(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		return p.Masked(), nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("option --allow: %q is not a CIDR or address", s)
}
