// Package labcli is the command line of tcpcopy-lab: the subcommands run
// (the orchestrator, package labrun), bench (the rate finder, package
// labbench) and cleanup (stale namespaces), and those run inside the
// namespaces: serve (the recorder), load (the load client), watch (the leak
// watcher, package leakwatch), scrape (reads tcpcopy's metrics) and hostile
// (attacks intercept's link port, package hostile).
//
// It lives outside cmd/ so that tests of any package can make their test
// binary act as tcpcopy-lab: labrun re-executes its Config.Self inside the
// namespaces with ChildEnv=1, and a TestMain that calls
// RunChildIfRequested then runs the subcommand instead of the tests:
//
//	func TestMain(m *testing.M) {
//		labcli.RunChildIfRequested()
//		os.Exit(m.Run())
//	}
package labcli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/sendbench"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/leakwatch"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
)

// ChildEnv, set to "1", tells RunChildIfRequested that this process was
// started by labrun as tcpcopy-lab.
const ChildEnv = labrun.ChildEnv

// Exit codes.
const (
	ExitOK          = 0
	ExitFailure     = 1 // the run failed after setup
	ExitSetup       = 2 // bad usage, or the lab could not be built or started
	ExitLowFidelity = 3 // run --min-fidelity was not reached
)

// exitError carries an exit code through cli.Command.Run.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }
func (e *exitError) Unwrap() error { return e.err }

// RunChildIfRequested runs the command line in os.Args as tcpcopy-lab and
// exits when ChildEnv is "1"; otherwise it returns at once. Call it first in
// TestMain.
func RunChildIfRequested() {
	if os.Getenv(ChildEnv) != "1" {
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := Main(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// Main runs the tcpcopy-lab command line args (args[0] is the program name)
// and returns the exit code. ctx ends on SIGINT or SIGTERM in the caller.
func Main(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmd := Command()
	cmd.Writer = stdout
	cmd.ErrWriter = stderr
	err := cmd.Run(ctx, args)
	if err == nil {
		return ExitOK
	}
	fmt.Fprintf(stderr, "%s: %v\n", filepath.Base(args[0]), err)
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	return ExitSetup // usage errors from flag parsing
}

func newLogger(cmd *cli.Command) *slog.Logger {
	level := slog.LevelInfo
	if cmd.Bool("verbose") {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(cmd.Root().ErrWriter, &slog.HandlerOptions{Level: level}))
}

// Command returns the tcpcopy-lab command tree.
func Command() *cli.Command {
	return &cli.Command{
		Name:  "tcpcopy-lab",
		Usage: "namespace lab for tcpcopy-go: copy runs with a report, rate finder, and the programs they run in the namespaces (docs/lab.md)",
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "verbose", Aliases: []string{"v"}, Usage: "debug logging"},
		},
		// Never os.Exit from inside: deferred cleanups must run.
		ExitErrHandler: func(context.Context, *cli.Command, error) {},
		Commands: []*cli.Command{runCommand(), benchCommand(), cleanupCommand(),
			serveCommand(), loadCommand(), watchCommand(), scrapeCommand(), sendbenchCommand(), hostileCommand(), mysqlLoadCommand()},
	}
}

// differUsage describes the rules of recorder.ParseDiffer.
const differUsage = "status:CODE:EVERY (another status), header:EVERY (Content-Type changed), length:EVERY (one body byte more), " +
	"body:EVERY (the middle body byte changed), slow:EVERY:DELAY (answered late), pause:EVERY:DELAY (stopped after half the body); EVERY picks the requests whose sequence number s " +
	"has s % EVERY == EVERY-1 (the EVERY-th, 2·EVERY-th, ...), EVERY@AT those with s % EVERY == AT; e.g. status:500:50,body:100@10,slow:20:200ms"

func serveCommand() *cli.Command {
	return &cli.Command{
		Name:  "serve",
		Usage: "run the recording HTTP server (inside a namespace: ip netns exec NS tcpcopy-lab serve ...)",
		Flags: []cli.Flag{
			&cli.StringSliceFlag{Name: "listen", Required: true, Usage: "address to listen on, ADDR:PORT or [ADDR]:PORT (repeatable)"},
			&cli.StringFlag{Name: "log", Required: true, Usage: "JSON-lines file the requests are appended to"},
			&cli.Int64Flag{Name: "max-body", Value: recorder.DefaultMaxBody, Usage: "largest request body accepted, bytes"},
			&cli.Int64Flag{Name: "resp", Value: recorder.DefaultRespSize, Usage: "response body size when the request has no ?resp=N"},
			&cli.StringFlag{Name: "differ", Usage: "answer differently for some requests (the lab's target), comma-separated rules: " + differUsage},
			&cli.Int64Flag{Name: "close-every", Usage: "answer every Nth request with \"Connection: close\" and close its connection (1: after every response, HTTP/1.0 style; 0: never)"},
			&cli.BoolFlag{Name: "peer-headers", Usage: "behind a reverse proxy: record the client's address from its " + recorder.RemoteHeader + " and " + recorder.LocalHeader + " headers"},
			&cli.IntFlag{Name: "backlog", Usage: "listen backlog instead of the system's (a busy server: SYNs dropped while the accept queue is full)"},
			&cli.DurationFlag{Name: "accept-delay", Usage: "pause before each accept while busy: at most one new connection per this long"},
			&cli.DurationFlag{Name: "slow-for", Usage: "busy for this long from the first connection (0: always, with --accept-delay)"},
			&cli.DurationFlag{Name: "slow-every", Usage: "busy again after this long (0: busy once)"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			log := newLogger(cmd)
			if n := cmd.Int64("close-every"); n < 0 {
				return &exitError{ExitSetup, fmt.Errorf("--close-every %d: want 0 or more", n)}
			}
			lo := recorder.ListenOptions{
				Backlog:     cmd.Int("backlog"),
				AcceptDelay: cmd.Duration("accept-delay"),
				SlowFor:     cmd.Duration("slow-for"),
				SlowEvery:   cmd.Duration("slow-every"),
			}
			if err := lo.Validate(); err != nil {
				return &exitError{ExitSetup, err}
			}
			f, err := recorder.OpenLog(cmd.String("log"))
			if err != nil {
				return &exitError{ExitSetup, err}
			}
			defer f.Close()
			d, err := recorder.ParseDiffer(cmd.String("differ"))
			if err != nil {
				return &exitError{ExitSetup, fmt.Errorf("--differ: %w", err)}
			}
			rec := recorder.New(f, recorder.Options{MaxBody: cmd.Int64("max-body"), RespSize: cmd.Int64("resp"),
				CloseEvery: cmd.Int64("close-every"), PeerHeaders: cmd.Bool("peer-headers"), Differ: d})
			var lns []net.Listener
			for _, a := range cmd.StringSlice("listen") {
				ln, err := recorder.Listen(a, lo)
				if err != nil {
					for _, l := range lns {
						l.Close()
					}
					return &exitError{ExitFailure, err}
				}
				lns = append(lns, ln)
			}
			if err := recorder.ServeListeners(ctx, lns, rec, log); err != nil {
				return &exitError{ExitFailure, err}
			}
			log.Info("stopped", "requests", rec.Count())
			if n := rec.WriteErrors(); n > 0 {
				return &exitError{ExitFailure, fmt.Errorf("%d log writes failed", n)}
			}
			return nil
		},
	}
}

// loadFlags are the load client's flags; run shares all but url, log and
// source. Names match labrun.LoadArgs.
func loadFlags(standalone bool) []cli.Flag {
	flags := []cli.Flag{
		&cli.FloatFlag{Name: "rate", Value: 50, Usage: "requests per second (0: as fast as the concurrency allows)"},
		&cli.DurationFlag{Name: "duration", Value: 5 * time.Second, Usage: "stop issuing requests after this long"},
		&cli.IntFlag{Name: "max", Value: load.DefaultMaxRequests, Usage: "stop after this many requests"},
		&cli.StringFlag{Name: "mode", Value: "mixed", Usage: "keepalive, short or mixed connections"},
		&cli.FloatFlag{Name: "keepalive-share", Value: load.DefaultKeepAliveShare, Usage: "mixed mode: share of keep-alive connections"},
		&cli.IntFlag{Name: "per-conn", Value: load.DefaultRequestsPerConn, Usage: "requests per keep-alive connection"},
		&cli.StringSliceFlag{Name: "method", Usage: "methods drawn uniformly (repeatable; default GET,POST)"},
		&cli.IntSliceFlag{Name: "body-size", Usage: "body sizes drawn uniformly for POST, bytes (repeatable; default 0 B .. 1 MiB)"},
		&cli.IntFlag{Name: "resp", Usage: "ask the server for response bodies of this many bytes"},
		&cli.FloatFlag{Name: "resp-chunked", Usage: "share of requests (0..1) that ask the server for a chunked response body instead of one with a Content-Length"},
		&cli.Uint64Flag{Name: "seed", Value: 1, Usage: "seed of the request plan"},
		&cli.IntFlag{Name: "concurrency", Value: load.DefaultConcurrency, Usage: "requests in flight (one connection each)"},
		&cli.DurationFlag{Name: "timeout", Value: load.DefaultTimeout, Usage: "per-request timeout"},
		&cli.StringFlag{Name: "id-prefix", Usage: "X-Lab-Id prefix (default random)"},
		&cli.BoolFlag{Name: "reuse-ports", Usage: "send each worker's connections from one fixed source port, reused as soon as the previous connection closed (NAT-like clients)"},
		&cli.BoolFlag{Name: "data-on-ack", Usage: "send each request on the ACK that completes the handshake, with no pure ACK before it (TCP_DEFER_ACCEPT on the client socket)"},
		&cli.BoolFlag{Name: "expect-continue", Usage: "send POST bodies after the server's \"100 Continue\" (Expect: 100-continue)"},
		&cli.IntFlag{Name: "pipeline", Usage: "keep-alive connections pipeline: write up to N requests before reading the first answer (raw HTTP/1.1; 0 or 1: none)"},
		&cli.DurationFlag{Name: "think", Usage: "pause this long before each request of a keep-alive connection after its first (e.g. longer than the target's keep-alive timeout)"},
		&cli.BoolFlag{Name: "http2", Usage: "https: offer HTTP/2 (ALPN h2) beside HTTP/1.1"},
	}
	if standalone {
		flags = append(flags,
			&cli.StringFlag{Name: "url", Required: true, Usage: "base URL, e.g. http://192.0.2.1:80"},
			&cli.StringFlag{Name: "log", Usage: "JSON-lines file for the results"},
			&cli.StringSliceFlag{Name: "source", Usage: "source address, used round-robin per connection (repeatable)"},
			&cli.StringFlag{Name: "ca", Usage: "https: PEM file of the CA certificates the server must be signed by, the only ones trusted (default: the system's)"},
		)
	}
	return flags
}

func loadOptions(cmd *cli.Command) (load.Options, error) {
	mode, err := load.ParseMode(cmd.String("mode"))
	if err != nil {
		return load.Options{}, err
	}
	o := load.Options{
		URL:             cmd.String("url"),
		Rate:            cmd.Float("rate"),
		Duration:        cmd.Duration("duration"),
		MaxRequests:     cmd.Int("max"),
		Mode:            mode,
		KeepAliveShare:  cmd.Float("keepalive-share"),
		RequestsPerConn: cmd.Int("per-conn"),
		Methods:         cmd.StringSlice("method"),
		BodySizes:       cmd.IntSlice("body-size"),
		RespSize:        cmd.Int("resp"),
		RespChunked:     cmd.Float("resp-chunked"),
		Seed:            cmd.Uint64("seed"),
		Concurrency:     cmd.Int("concurrency"),
		Timeout:         cmd.Duration("timeout"),
		IDPrefix:        cmd.String("id-prefix"),
		ReusePorts:      cmd.Bool("reuse-ports"),
		DataOnAck:       cmd.Bool("data-on-ack"),
		ExpectContinue:  cmd.Bool("expect-continue"),
		Pipeline:        cmd.Int("pipeline"),
		Think:           cmd.Duration("think"),
		HTTP2:           cmd.Bool("http2"),
		CA:              cmd.String("ca"),
	}
	for _, s := range cmd.StringSlice("source") {
		a, err := netip.ParseAddr(s)
		if err != nil {
			return o, fmt.Errorf("--source: %w", err)
		}
		o.LocalAddrs = append(o.LocalAddrs, a)
	}
	if o.Duration <= 0 || o.MaxRequests <= 0 {
		return o, errors.New("--duration and --max must be positive: the load is always bounded")
	}
	if !(o.RespChunked >= 0 && o.RespChunked <= 1) {
		return o, fmt.Errorf("--resp-chunked: chunked response share %v not in 0..1", o.RespChunked)
	}
	if err := o.ValidateKeepAlive(); err != nil {
		return o, err
	}
	return o, nil
}

func loadCommand() *cli.Command {
	return &cli.Command{
		Name:  "load",
		Usage: "run the bounded load client (inside the client namespace)",
		Flags: loadFlags(true),
		Action: func(ctx context.Context, cmd *cli.Command) error {
			o, err := loadOptions(cmd)
			if err != nil {
				return &exitError{ExitSetup, err}
			}
			if path := cmd.String("log"); path != "" {
				f, err := os.Create(path)
				if err != nil {
					return &exitError{ExitSetup, err}
				}
				defer f.Close()
				o.Log = f
			}
			rs, err := load.Run(ctx, o)
			if err != nil {
				return &exitError{ExitFailure, err}
			}
			s := load.Summarize(rs)
			fmt.Fprintf(cmd.Root().Writer, "%d requests, %d ok, %d failed, %d connections, p50 %s, p99 %s\n",
				s.Requests, s.OK, s.Failed, s.Connections, s.P50, s.P99)
			return nil
		},
	}
}

func runCommand() *cli.Command {
	flags := append(loadFlags(false),
		&cli.StringFlag{Name: "tcpcopy-bin", Usage: "tcpcopy binary; empty runs without copying"},
		&cli.StringFlag{Name: "intercept-bin", Usage: "intercept binary"},
		&cli.StringFlag{Name: "tcpcopy-args", Usage: "tcpcopy arguments, shell-quoted, with {placeholders} (default: " + quoteArgs(labrun.DefaultTcpcopyArgs) + ")"},
		&cli.StringFlag{Name: "intercept-args", Usage: "intercept arguments (default: " + quoteArgs(labrun.DefaultInterceptArgs) + ")"},
		&cli.BoolFlag{Name: "ipv6", Usage: "send the load over IPv6"},
		&cli.IntFlag{Name: "extra-clients", Usage: "extra client addresses (192.0.2.11...)"},
		&cli.BoolFlag{Name: "all-sources", Usage: "spread connections over all client addresses"},
		&cli.BoolFlag{Name: "gro", Usage: "enable GRO on the receiving veths (needs ethtool; offloads stay at the veth defaults otherwise)"},
		&cli.DurationFlag{Name: "tail", Value: 2 * time.Second, Usage: "wait after the load before stopping tcpcopy"},
		&cli.DurationFlag{Name: "start-timeout", Value: 5 * time.Second, Usage: "wait for each process to become ready"},
		&cli.StringFlag{Name: "dir", Usage: "output directory (default: a new temporary directory)"},
		&cli.StringFlag{Name: "prefix", Value: netlab.DefaultPrefix, Usage: "namespace name prefix"},
		&cli.StringFlag{Name: "json", Usage: "also write the report as JSON to this file"},
		&cli.FloatFlag{Name: "min-fidelity", Usage: "exit 3 when the fidelity (percent) is below this"},
		&cli.BoolFlag{Name: "leak-check", Usage: "count packets of the target that reach the client namespace (must be 0)"},
		&cli.StringFlag{Name: "tcpcopy-metrics", Value: labrun.DefaultTcpcopyMetrics, Usage: "address inside online where tcpcopy serves metrics (added as --metrics-addr); off for a C tcpcopy"},
		&cli.BoolFlag{Name: "demo", Usage: "use tcpcopy and intercept from the directory of this executable, and the demo's defaults for flags not given: " + demoDefaultsText()},
		&cli.StringFlag{Name: "client-stack", Usage: "a named client kind (" + stackNames() + "); the flags below win over it"},
		&cli.StringSliceFlag{Name: "client-sysctl", Usage: "sysctl key=value in the client namespace, e.g. net.ipv4.tcp_timestamps=0 (repeatable)"},
		&cli.IntFlag{Name: "client-mss", Usage: "MSS the client advertises and sends (its routes get mtu lock MSS+40 advmss MSS; IPv6 only when MSS+60 >= 1280)"},
		&cli.IntFlag{Name: "client-mtu", Usage: "MTU of the client-online link, both ends, e.g. 9000 (at least 1280)"},
		&cli.IntFlag{Name: "target-mtu", Usage: "MTU of the target's interfaces only, e.g. 1400: online keeps 1500 and larger frames are dropped at the target"},
		&cli.FloatFlag{Name: "loss-copy", Usage: "percent of TCP frames dropped at random from online to target (0..100, resolution 0.01)"},
		&cli.FloatFlag{Name: "loss-response", Usage: "percent of TCP frames dropped at random from target to assistant (0..100, resolution 0.01)"},
		&cli.StringFlag{Name: "pcap", Usage: "record the client side of the run (online's to-client) with tcpdump into this pcap file"},
		&cli.StringFlag{Name: "target-differ", Usage: "make the target answer differently from online for some requests, so that tcpcopy's response comparison has differences to find; comma-separated rules: " + differUsage + "; none for none"},
		&cli.BoolFlag{Name: "diff-log", Usage: "have tcpcopy write the responses that differ to {dir}/diff.jsonl (--diff-log) and summarize it in the report"},
		&cli.StringFlag{Name: "target-server", Usage: "the target's server (" + labrun.TargetServerNames() + "; default recorder): nginx in front of the recorder, or a recorder that closes connections or accepts slowly"},
		&cli.StringFlag{Name: "nginx-bin", Usage: "nginx binary for the nginx target servers and the TLS terminator (default: nginx on PATH, or /usr/sbin/nginx)"},
		&cli.StringFlag{Name: "tls-terminator", Usage: "copy an HTTPS service (" + tlsTerminatorNames() + "): nginx terminates TLS on online's port 443 in front of the application on 127.0.0.1:8080, the load speaks HTTPS (--http2 offers h2), tcpcopy copies the plaintext hop: " + quoteArgs(labrun.DefaultTLSTcpcopyArgs)},
	)
	flags = append(flags, mysqlFlags()...)
	return &cli.Command{
		Name:  "run",
		Usage: "build the lab, run servers, copy binaries and load, report the copy fidelity",
		Flags: flags,
		Action: func(ctx context.Context, cmd *cli.Command) error {
			if cmd.Bool("mysql") {
				return runMySQL(ctx, cmd)
			}
			log := newLogger(cmd)
			if cmd.Bool("demo") {
				if err := applyDemoDefaults(cmd); err != nil {
					return &exitError{ExitSetup, err}
				}
			}
			lo, err := loadOptions(cmd)
			if err != nil {
				return &exitError{ExitSetup, err}
			}
			cfg := labrun.Config{
				Prefix:         cmd.String("prefix"),
				ExtraClients:   cmd.Int("extra-clients"),
				GRO:            cmd.Bool("gro"),
				Dir:            cmd.String("dir"),
				TcpcopyBin:     cmd.String("tcpcopy-bin"),
				InterceptBin:   cmd.String("intercept-bin"),
				Load:           lo,
				IPv6:           cmd.Bool("ipv6"),
				AllSources:     cmd.Bool("all-sources"),
				Tail:           cmd.Duration("tail"),
				StartTimeout:   cmd.Duration("start-timeout"),
				LeakCheck:      cmd.Bool("leak-check"),
				TcpcopyMetrics: cmd.String("tcpcopy-metrics"),
				Pcap:           cmd.String("pcap"),
				DiffLog:        cmd.Bool("diff-log"),
				NginxBin:       cmd.String("nginx-bin"),
			}
			if cfg.TargetDiffer, err = recorder.ParseDiffer(cmd.String("target-differ")); err != nil {
				return &exitError{ExitSetup, fmt.Errorf("--target-differ: %w", err)}
			}
			if name := cmd.String("target-server"); name != "" {
				if _, err := labrun.TargetServerByName(name); err != nil {
					return &exitError{ExitSetup, fmt.Errorf("--target-server: %w", err)}
				}
				cfg.TargetServer = name
			}
			if name := cmd.String("tls-terminator"); name != "" {
				if _, err := labrun.TLSTerminatorByName(name); err != nil {
					return &exitError{ExitSetup, fmt.Errorf("--tls-terminator: %w", err)}
				}
				cfg.TLSTerminator = name
			}
			if err := applyStackFlags(cmd, &cfg); err != nil {
				return &exitError{ExitSetup, err}
			}
			// Resolve our own path now: inside "ip netns exec",
			// /proc/self/exe is ip.
			if cfg.Self, err = os.Executable(); err != nil {
				return &exitError{ExitSetup, err}
			}
			for _, a := range []struct {
				flag string
				dst  *[]string
			}{{"tcpcopy-args", &cfg.TcpcopyArgs}, {"intercept-args", &cfg.InterceptArgs}} {
				if !cmd.IsSet(a.flag) {
					continue
				}
				if *a.dst, err = labrun.SplitArgs(cmd.String(a.flag)); err != nil {
					return &exitError{ExitSetup, fmt.Errorf("--%s: %w", a.flag, err)}
				}
				if *a.dst == nil {
					*a.dst = []string{}
				}
			}
			if cmd.Bool("demo") {
				demoBinaries(&cfg, log)
			}
			if cfg.InterceptBin != "" && cfg.TcpcopyBin == "" {
				return &exitError{ExitSetup, errors.New("--intercept-bin without --tcpcopy-bin")}
			}

			rep, err := labrun.Run(ctx, cfg, log)
			if rep != nil && rep.Elapsed > 0 { // complete: not canceled or failed half-way
				if werr := rep.WriteText(cmd.Root().Writer); werr != nil && err == nil {
					err = werr
				}
				if path := cmd.String("json"); path != "" {
					if werr := rep.WriteJSON(path); werr != nil && err == nil {
						err = werr
					}
				}
			}
			switch {
			case errors.Is(err, context.Canceled) && ctx.Err() != nil:
				return &exitError{ExitFailure, errors.New("interrupted: the lab's programs are stopped and its namespaces deleted")}
			case errors.Is(err, labrun.ErrSetup):
				return &exitError{ExitSetup, err}
			case err != nil:
				return &exitError{ExitFailure, err}
			}
			if min := cmd.Float("min-fidelity"); min > 0 && rep.Compare.Fidelity < min {
				return &exitError{ExitLowFidelity, fmt.Errorf("fidelity %.1f%% below --min-fidelity %.1f%%", rep.Compare.Fidelity, min)}
			}
			if rep.Leaks != nil && rep.Leaks.Packets > 0 {
				return &exitError{ExitLowFidelity, fmt.Errorf("%d packets of the target reached the client namespace", rep.Leaks.Packets)}
			}
			if cmd.Bool("demo") && rep.Lost != nil && !rep.Lost.Explained {
				return &exitError{ExitLowFidelity, fmt.Errorf("%d requests were lost without a session outcome that explains them", rep.Lost.Requests)}
			}
			return nil
		},
	}
}

func tlsTerminatorNames() string {
	var names []string
	for _, s := range labrun.TLSTerminators {
		names = append(names, s.Name)
	}
	return strings.Join(names, ", ")
}

func stackNames() string {
	var names []string
	for _, s := range labrun.ClientStacks {
		names = append(names, s.Name)
	}
	return strings.Join(names, ", ")
}

// applyStackFlags sets the client stack and loss of cfg from run's flags:
// first the --client-stack preset, then the explicit flags, which win (a
// --client-sysctl is applied after the preset's sysctls). A preset changed
// by explicit flags is reported as "<name>+custom".
func applyStackFlags(cmd *cli.Command, cfg *labrun.Config) error {
	if name := cmd.String("client-stack"); name != "" {
		s, err := labrun.ClientStackByName(name)
		if err != nil {
			return fmt.Errorf("--client-stack: %w", err)
		}
		s.Apply(cfg)
	}
	custom := false
	if cmd.IsSet("client-sysctl") {
		cfg.ClientSysctls = append(cfg.ClientSysctls, cmd.StringSlice("client-sysctl")...)
		custom = true
	}
	for _, f := range []struct {
		name string
		dst  *int
	}{{"client-mss", &cfg.ClientMSS}, {"client-mtu", &cfg.ClientMTU}, {"target-mtu", &cfg.TargetMTU}} {
		if cmd.IsSet(f.name) {
			*f.dst = cmd.Int(f.name)
			custom = true
		}
	}
	for _, f := range []struct {
		name string
		dst  *bool
	}{{"data-on-ack", &cfg.Load.DataOnAck}, {"expect-continue", &cfg.Load.ExpectContinue}} {
		if cmd.IsSet(f.name) {
			*f.dst = cmd.Bool(f.name)
			custom = true
		}
	}
	if custom && cfg.ClientStack != "" {
		cfg.ClientStack += "+custom"
	}
	cfg.LossCopy = cmd.Float("loss-copy")
	cfg.LossResponse = cmd.Float("loss-response")
	return nil
}

// demoDefaults are the flags "run --demo" sets when they are not given: a
// mixed load (keep-alive and short connections, GET and POST, bodies of 0
// B to 1 MiB) from 17 client addresses for 10 s, GRO on, leak check on, a
// target that answers differently for a few requests (DemoTargetDiffer)
// and tcpcopy's diff log.
// It takes about 15 s on a 2-core machine.
var demoDefaults = []struct{ name, value string }{
	{"rate", "100"},
	{"duration", "10s"},
	{"max", "2000"},
	{"mode", "mixed"},
	{"concurrency", "8"},
	{"extra-clients", "16"},
	{"all-sources", "true"},
	{"gro", "true"},
	{"leak-check", "true"},
	{"target-differ", DemoTargetDiffer},
	{"diff-log", "true"},
}

// DemoTargetDiffer is what "run --demo" tells the target to change: status
// 500 for every 50th request and one body byte for every 100th from the
// 25th on (the 25th, 125th, ...: none of them a 500), 30 of the demo's
// 1000 answers.
const DemoTargetDiffer = "status:500:50,body:100@24"

func demoDefaultsText() string {
	var parts []string
	for _, d := range demoDefaults {
		parts = append(parts, "--"+d.name+" "+d.value)
	}
	return strings.Join(parts, " ")
}

func applyDemoDefaults(cmd *cli.Command) error {
	for _, d := range demoDefaults {
		if cmd.IsSet(d.name) {
			continue
		}
		if err := cmd.Set(d.name, d.value); err != nil {
			return fmt.Errorf("demo default --%s %s: %w", d.name, d.value, err)
		}
	}
	return nil
}

// demoBinaries fills in tcpcopy and intercept from the directory of this
// executable (make build puts all commands in bin/).
func demoBinaries(cfg *labrun.Config, log *slog.Logger) {
	dir := filepath.Dir(cfg.Self)
	for _, b := range []struct {
		name string
		dst  *string
	}{{"tcpcopy", &cfg.TcpcopyBin}, {"intercept", &cfg.InterceptBin}} {
		if *b.dst != "" {
			continue
		}
		path := filepath.Join(dir, b.name)
		if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() {
			*b.dst = path
		}
	}
	if cfg.TcpcopyBin == "" || cfg.InterceptBin == "" {
		log.Warn("demo: tcpcopy or intercept not found next to tcpcopy-lab: running without copying", "dir", dir)
		cfg.TcpcopyBin, cfg.InterceptBin = "", ""
	}
}

func quoteArgs(args []string) string {
	s := ""
	for i, a := range args {
		if i > 0 {
			s += " "
		}
		if a == "" || containsAny(a, " \t'\"\\") {
			s += "'" + a + "'"
		} else {
			s += a
		}
	}
	return s
}

func containsAny(s, chars string) bool {
	for _, c := range s {
		for _, d := range chars {
			if c == d {
				return true
			}
		}
	}
	return false
}

func cleanupCommand() *cli.Command {
	return &cli.Command{
		Name:  "cleanup",
		Usage: "delete lab namespaces left behind by dead tcpcopy-lab runs and tests",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "prefix", Value: netlab.DefaultPrefix, Usage: "namespace name prefix"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			gone, err := netlab.Cleanup(ctx, cmd.String("prefix"))
			for _, ns := range gone {
				fmt.Fprintln(cmd.Root().Writer, "deleted", ns)
			}
			if err != nil {
				return &exitError{ExitFailure, err}
			}
			return nil
		},
	}
}

func sendbenchCommand() *cli.Command {
	return &cli.Command{
		Name:  "sendbench",
		Usage: "measure the raw-send ceiling: send segments to the target as fast as a raw socket takes them, print JSON (inside the online namespace)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "src", Required: true, Usage: "source address of the segments (a client address)"},
			&cli.StringFlag{Name: "dst", Required: true, Usage: "destination ADDR:PORT (a closed port on the target)"},
			&cli.DurationFlag{Name: "duration", Value: time.Second, Usage: "send for this long at most"},
			&cli.IntFlag{Name: "max", Value: 2_000_000, Usage: "send this many packets at most"},
			&cli.IntFlag{Name: "batch", Value: 1, Usage: "packets per system call: 1 sends with sendto(2), more (up to 64) with sendmmsg(2)"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			src, err := netip.ParseAddr(cmd.String("src"))
			if err != nil {
				return &exitError{ExitSetup, err}
			}
			dst, err := netip.ParseAddrPort(cmd.String("dst"))
			if err != nil {
				return &exitError{ExitSetup, err}
			}
			r, err := sendbench.Run(src, dst, cmd.Duration("duration"), int(cmd.Int("max")), int(cmd.Int("batch")))
			if err != nil {
				return &exitError{ExitFailure, err}
			}
			return json.NewEncoder(cmd.Root().Writer).Encode(r)
		},
	}
}

func scrapeCommand() *cli.Command {
	return &cli.Command{
		Name:  "scrape",
		Usage: "print an HTTP resource (run uses it inside the online namespace to read tcpcopy's metrics)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "url", Required: true, Usage: "what to GET, e.g. http://127.0.0.1:9180/metrics"},
			&cli.DurationFlag{Name: "timeout", Value: 3 * time.Second, Usage: "give up after this long"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			ctx, cancel := context.WithTimeout(ctx, cmd.Duration("timeout"))
			defer cancel()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, cmd.String("url"), nil)
			if err != nil {
				return &exitError{ExitSetup, err}
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				return &exitError{ExitFailure, err}
			}
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				return &exitError{ExitFailure, fmt.Errorf("%s: %s", cmd.String("url"), resp.Status)}
			}
			if _, err := io.Copy(cmd.Root().Writer, resp.Body); err != nil {
				return &exitError{ExitFailure, err}
			}
			return nil
		},
	}
}

func watchCommand() *cli.Command {
	return &cli.Command{
		Name:  "watch",
		Usage: "count TCP packets from these addresses or ports that reach this namespace, until SIGTERM (run --leak-check)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "out", Required: true, Usage: "JSON result file (written when ready and at the end)"},
			&cli.StringSliceFlag{Name: "from", Usage: "source address to count (repeatable)"},
			&cli.IntSliceFlag{Name: "port", Usage: "TCP source port to count, from any address (repeatable)"},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			o := leakwatch.Options{Out: cmd.String("out")}
			for _, s := range cmd.StringSlice("from") {
				a, err := netip.ParseAddr(s)
				if err != nil {
					return &exitError{ExitSetup, fmt.Errorf("--from: %w", err)}
				}
				o.From = append(o.From, a)
			}
			for _, p := range cmd.IntSlice("port") {
				if p < 1 || p > 65535 {
					return &exitError{ExitSetup, fmt.Errorf("--port %d out of range", p)}
				}
				o.Ports = append(o.Ports, uint16(p))
			}
			if _, err := leakwatch.Run(ctx, o); err != nil {
				return &exitError{ExitFailure, err}
			}
			return nil
		},
	}
}
