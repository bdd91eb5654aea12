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
	"github.com/tcpcopy-go/tcpcopy/internal/secret"
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
			&cli.StringFlag{Name: "F", Usage: "tcpdump `filter` selecting the target's responses, TCP and UDP (required; e.g. 'tcp and src port 8080 or udp and src port 5353')"},
			&cli.StringFlag{Name: "p", Value: fmt.Sprint(def.Listen.Port()), Usage: "listen `port` for tcpcopy links"},
			&cli.StringFlag{Name: "b", Usage: "bind `address` for tcpcopy links (default: all)"},
			&cli.StringFlag{Name: "n", Value: fmt.Sprint(def.MaxCombined), Usage: "most records per combined frame, 1..16 (6 with --resp-payload)"},
			&cli.StringFlag{Name: "s", Value: fmt.Sprint(def.HeldMax), Usage: "most responses held while their route is missing"},
			&cli.StringFlag{Name: "D", Usage: "rewrite response destinations `dockered_ip-orig_ip[,...]` before routing"},
			&cli.BoolFlag{Name: "c", Usage: "refuse tcpcopy links that arrive more than 3 s after the first one"},
			&cli.StringFlag{Name: "t", Value: fmt.Sprint(int(def.RouteIdle / time.Second)), Usage: "route idle timeout in `seconds`"},
			&cli.StringFlag{Name: "udp-route-idle", Value: fmt.Sprint(int(def.UDPRouteIdle / time.Second)), Usage: "UDP route idle timeout in `seconds` (tcpcopy deletes idle UDP routes itself)"},
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
			&cli.StringFlag{Name: "secret-file", Usage: "tcpcopy links must prove the secret in this `file` (mode 0600; version 7 only: C tcpcopy links are refused)", TakesFile: true},
			&cli.IntFlag{Name: "queue-bytes", Value: def.QueueBytes, Usage: "memory for one tcpcopy link's records, buffers included; past it its records are dropped"},
			&cli.IntFlag{Name: "max-links", Value: def.MaxLinks, Usage: "most simultaneous tcpcopy links"},
			&cli.IntFlag{Name: "compare-window", Value: def.CompareWindow, Usage: "longest start of each response a tcpcopy link may ask for to compare responses, `bytes` (0..16384); 0 captures headers only and compares nothing"},
			&cli.IntFlag{Name: "max-routes-per-link", Value: def.MaxRoutesPerLink, Usage: "most routes one tcpcopy link holds; past it its new routes are refused"},
			&cli.DurationFlag{Name: "handshake-timeout", Value: def.HandshakeTimeout, Usage: "a new link must complete its handshake (and authentication) within this"},
			&cli.DurationFlag{Name: "link-idle", Value: def.LinkIdle, Usage: "a link without a route for this long gives its slot to a new one when --max-links are in use"},
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
	cfg.Ready = daemon.Ready
	return proc.Failed(intercept.Run(ctx, cfg, proc.Log))
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
		if addr, err = netip.ParseAddr(b); err != nil || addr.Zone() != "" {
			return cfg, fmt.Errorf("option -b: %q is not an IP address", b)
		}
		addr = addr.Unmap()
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
	if secs, err = cliutil.IntInRange("--udp-route-idle", c.String("udp-route-idle"), 1, 7*24*3600); err != nil {
		return cfg, err
	}
	cfg.UDPRouteIdle = time.Duration(secs) * time.Second
	if cfg.Docker, err = parseDocker(c.String("D")); err != nil {
		return cfg, err
	}
	cfg.Protect = c.Bool("c")
	cfg.Combined = !c.Bool("no-combined")
	cfg.RespPayload = c.Bool("resp-payload")
	cfg.CompareWindow = int(c.Int("compare-window"))
	if cfg.Allow, err = parseAllow(c); err != nil {
		return cfg, err
	}
	if cfg.MetricsAddr = strings.TrimSpace(c.String("metrics-addr")); cfg.MetricsAddr != "" {
		if err := cliutil.CheckListenAddr("--metrics-addr", cfg.MetricsAddr); err != nil {
			return cfg, err
		}
	}
	if err := cliutil.CheckLogOptions(c.String("log-format"), c.String("log-level")); err != nil {
		return cfg, err
	}
	if path := c.String("secret-file"); c.IsSet("secret-file") {
		if path == "" {
			return cfg, fmt.Errorf("option --secret-file: empty file name")
		}
		if cfg.Secret, err = secret.Read(path); err != nil {
			return cfg, fmt.Errorf("option --secret-file: %w", err)
		}
	}
	cfg.CaptureTimeout = c.Duration("capture-timeout")
	cfg.StatsInterval = c.Duration("stats-interval")
	cfg.QueueBytes = int(c.Int("queue-bytes"))
	cfg.MaxLinks = int(c.Int("max-links"))
	cfg.MaxRoutesPerLink = int(c.Int("max-routes-per-link"))
	cfg.HandshakeTimeout = c.Duration("handshake-timeout")
	cfg.LinkIdle = c.Duration("link-idle")
	if err := cfg.Validate(); err != nil {
		return cfg, err
	}
	return cfg, intercept.CheckFilter(&cfg)
}

// parseAllow reads --allow: networks or addresses, comma-separated. Given
// empty it is a mistake (leave it out to accept every address), not "no
// restriction".
func parseAllow(c *cli.Command) ([]netip.Prefix, error) {
	if !c.IsSet("allow") {
		return nil, nil
	}
	items := cliutil.SplitList(c.String("allow"))
	if len(items) == 0 {
		return nil, fmt.Errorf("option --allow: no network given (leave the option out to accept links from every address)")
	}
	var out []netip.Prefix
	for _, s := range items {
		p, err := cliutil.ParsePrefix(s)
		if err != nil {
			return nil, fmt.Errorf("option --allow: %w", err)
		}
		out = append(out, p)
	}
	return out, nil
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
