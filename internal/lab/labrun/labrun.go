// Package labrun runs one copy experiment in a fresh lab: it builds the
// namespace topology (package netlab), starts the recorder on online and on
// target, optionally intercept on assistant and tcpcopy on online, runs the
// load from the client namespace, waits a tail period, stops everything and
// compares what the two recorders saw (recorder.Compare), with the CPU time
// and peak RSS of tcpcopy, intercept and the lab's own programs.
//
// The recorder, the load client, the leak watcher (Config.LeakCheck,
// package leakwatch) and the metrics reader run as child processes of an
// executable that implements the "serve", "load", "watch" and "scrape"
// subcommands of tcpcopy-lab (Config.Self, the running executable by
// default), started with "ip netns exec". The command lines of the first
// two come from ServeArgs and LoadArgs.
//
// tcpcopy and intercept are plugged in by path and argv. Arguments may hold
// placeholders such as {assistant.target_if} or {target.online_v4}, expanded
// from the topology (see Vars); DefaultTcpcopyArgs and
// DefaultInterceptArgs are the C TCPCopy 1.x command lines for this lab.
// tcpcopy also gets --metrics-addr (Config.TcpcopyMetrics): just before it
// is stopped, Run reads how its sessions ended from that endpoint, inside
// the online namespace (Report.Sessions), and relates them to the requests
// the target did not get (Report.Lost).
//
// The client's TCP stack and the network can differ from the lab's plain
// Linux client on a lossless link: Config.ClientSysctls, ClientMSS,
// ClientMTU, TargetMTU, LossCopy and LossResponse go to netlab.Options,
// Load.DataOnAck and Load.ExpectContinue to the load client; ClientStacks
// and LossLevels name the combinations that matter. Config.Pcap records
// the client side of the run with tcpdump, for offline replays.
//
// tcpcopy compares the target's answers with the online server's
// (--compare-bytes, on by default): Run reads its verdicts with the
// session outcomes (Report.Responses). Config.TargetDiffer makes the
// target's recorder answer differently for a known share of the requests
// (recorder.Differ); the report reads back what it changed (Report.Told)
// and checks the verdicts against it (Responses.AsTold). Config.DiffLog
// has tcpcopy write its diff log into the run's directory and the report
// sums it up (Report.DiffLog).
// The target server can be a real one: Config.TargetServer names a row of
// TargetServers (nginx with keepalive_requests 100 or keepalive_timeout
// 1s in front of the target's recorder, a recorder that answers with
// "Connection: close", one that accepts slowly), and the report names it
// with its limits (Report.Server).
//
// The online service can be an HTTPS one: Config.TLSTerminator puts nginx
// in front of the online recorder to terminate TLS (a row of
// TLSTerminators: with or without upstream keepalive), the load speaks
// HTTPS trusting a CA made for the run (package labtls), and tcpcopy
// copies the plaintext hop from nginx to the recorder on online's
// loopback, with -c for the copies' client addresses
// (DefaultTLSTcpcopyArgs). The report names the set-up (Report.TLS) and
// what the application and the target saw of the hop: peers, ports,
// X-Forwarded-For, request heads (Report.Hop).
//
// Tests change the lab through hooks: Config.Setup runs before any program
// starts, Config.During beside the load, with the Lab's methods to stop
// and start intercept and the target's server. Config.MoreTcpcopyArgs,
// OnlinePorts, TargetPorts and LoadPorts run several tcpcopy instances.
//
// Run always tears the lab down, on success, failure and ctx cancellation.
package labrun

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/leakwatch"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/load"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
)

// Ports of the lab.
const (
	OnlinePort    = 80    // the online (production) server
	TargetPort    = 8080  // the target server, where copies go
	InterceptPort = 36524 // intercept's control channel (C TCPCopy default)
)

// Default command lines, before placeholder expansion. They match C TCPCopy
// 1.x: intercept captures the target's responses on the assistant's
// target-facing interface and serves tcpcopy on its online-facing address;
// tcpcopy copies online port 80 to target port 8080.
var (
	DefaultInterceptArgs = []string{"-i", "{assistant.target_if}", "-F", "tcp and src port " + strconv.Itoa(TargetPort), "-b", "{assistant.online_v4}"}
	DefaultTcpcopyArgs   = []string{"-x", strconv.Itoa(OnlinePort) + "-{target.online_v4}:" + strconv.Itoa(TargetPort), "-s", "{assistant.online_v4}", "-i", "{online.client_if}"}
)

// ChildEnv is set to "1" in the environment of Self's children, so that a
// test binary standing in for tcpcopy-lab knows to act as it (see
// labcli.RunChildIfRequested).
const ChildEnv = "TCPCOPY_LAB_CHILD"

// ErrSetup wraps every failure to build the lab or to start its processes.
var ErrSetup = errors.New("lab setup failed")

// Config describes a run. Zero values mean the defaults.
type Config struct {
	// Self implements the "serve" and "load" subcommands; the running
	// executable by default.
	Self string
	// SelfEnv is added to the environment of Self's children, after
	// ChildEnv=1.
	SelfEnv []string

	// Prefix, ExtraClients and GRO go to netlab.Options.
	Prefix       string
	ExtraClients int
	GRO          bool
	// Dir receives logs and process output; a new temporary directory
	// (kept) by default.
	Dir string

	// ClientStack names the client setup in the report (ClientStack.Apply
	// sets it). When empty the report says "linux" when none of the
	// settings below is made, "custom" otherwise.
	ClientStack string
	// ClientSysctls, ClientMSS, ClientMTU and TargetMTU change the
	// client's TCP stack and the links (netlab.Options). ClientMTU must be
	// 0 or at least 1280 (the online server listens on IPv6 too), and so
	// must TargetMTU for an IPv6 load. The load's own settings
	// (Load.DataOnAck, Load.ExpectContinue) are in Load.
	ClientSysctls []string
	ClientMSS     int
	ClientMTU     int
	TargetMTU     int
	// LossCopy and LossResponse drop that percentage of the TCP frames on
	// the copy path and on the response path (netlab.Options); the report
	// counts the drops (Report.Network).
	LossCopy, LossResponse float64
	// TargetServer names the target's server, a row of TargetServers;
	// "" is the recorder alone. NginxBin is the nginx binary for the rows
	// that need one; FindNginx by default.
	TargetServer string
	NginxBin     string
	// TLSTerminator names a row of TLSTerminators: nginx terminates TLS
	// on online's client-facing addresses (TLSPort) in front of the
	// online recorder, which then listens on online's loopback only
	// (AppPort, the application); the load speaks HTTPS to nginx
	// (Load.HTTP2 offers h2), trusting only a CA made for the run
	// (package labtls); tcpcopy copies the plaintext hop on lo
	// (DefaultTLSTcpcopyArgs), and the report says what the application
	// and the target saw of it (Report.TLS, Report.Hop). "" has no
	// terminator: the load goes to the recorder on port 80.
	TLSTerminator string

	// Pcap, when set, is a file that tcpdump writes with the client side
	// of the run, both directions, as online's to-client sees it (GRO
	// super-packets included when GRO is on): started before the load,
	// stopped after the tail. Report.Pcap has its packet counts. Replay it
	// with tcpcopy -i FILE.
	Pcap string

	// TcpcopyBin and InterceptBin are the programs under test; empty runs
	// without copying (the target then receives nothing).
	TcpcopyBin, InterceptBin string
	// TcpcopyArgs and InterceptArgs replace the default arguments when
	// non-nil. Placeholders are expanded (Vars).
	TcpcopyArgs, InterceptArgs []string

	// Load is the load; URL, Log and LocalAddrs are set by Run.
	Load load.Options
	// IPv6 sends the load to [2001:db8:1::1]:80 instead of 192.0.2.1:80.
	IPv6 bool
	// AllSources spreads the load's connections over all client addresses
	// (192.0.2.10 and the extra ones).
	AllSources bool

	// Tail is how long to wait after the load before stopping tcpcopy, so
	// that copies still in flight arrive; 2 s. Not waited without tcpcopy.
	Tail time.Duration
	// StartTimeout bounds the wait for each process to become ready; 5 s.
	StartTimeout time.Duration

	// OnlinePorts are the ports of the online recorder (on the client-side
	// IPv4 and IPv6 addresses); [OnlinePort] by default.
	OnlinePorts []uint16
	// TargetPorts are the ports of the target recorder (any address);
	// [TargetPort] by default.
	TargetPorts []uint16
	// LoadPorts run one load client per online port, at the same time,
	// each with Load (so each at Load.Rate) and its own X-Lab-Id prefix;
	// [OnlinePorts[0]] by default.
	LoadPorts []uint16
	// MoreTcpcopyArgs start more tcpcopy instances of TcpcopyBin beside
	// the first, one per argument list (placeholders expanded), for
	// example with disjoint -x mappings sharing one intercept.
	MoreTcpcopyArgs [][]string
	// TcpcopyMetrics is where tcpcopy serves its Prometheus metrics inside
	// the online namespace; Run reads the session outcomes there just
	// before stopping it (Report.Sessions). "--metrics-addr" with this
	// address (instance i: port + i) is added to tcpcopy's arguments
	// unless they already have one. Default DefaultTcpcopyMetrics; "off"
	// adds nothing (for a C tcpcopy), and the outcomes then come from
	// tcpcopy's final log line if it writes one.
	TcpcopyMetrics string
	// TargetDiffer makes the target's recorder answer differently from
	// the online server for some requests (recorder.Differ: another
	// status, a header, the body's length or a byte of it, a delay), so
	// that tcpcopy's response comparison has differences to find. The
	// report reads back what the target changed (Report.Told) and checks
	// tcpcopy's verdicts against it (Responses.AsTold).
	TargetDiffer recorder.Differ
	// DiffLog adds "--diff-log {dir}/diff.jsonl" (instance i:
	// diff-<i+1>.jsonl) to tcpcopy's arguments unless they have a
	// --diff-log already; the report summarizes the log (Report.DiffLog).
	DiffLog bool
	// LeakCheck runs a watcher in the client namespace (package
	// leakwatch) from before tcpcopy starts to after it stops, counting
	// packets from the target's addresses or ports (Report.Leaks).
	LeakCheck bool

	// Setup, when set, runs once the topology is built, before any program
	// starts: change routes or sysctls there. An error fails the run with
	// ErrSetup.
	Setup func(ctx context.Context, lab *Lab) error
	// During, when set, runs while the load runs, started with the load
	// clients; Run waits for it to return before the tail. Use the Lab's
	// methods to stop and start programs. An error fails the run.
	During func(ctx context.Context, lab *Lab) error
}

// DefaultTcpcopyMetrics is the default Config.TcpcopyMetrics: loopback of
// the online namespace, so nothing outside it can reach the endpoint.
const DefaultTcpcopyMetrics = "127.0.0.1:9180"

func (c *Config) setDefaults() error {
	if c.Self == "" {
		exe, err := os.Executable()
		if err != nil {
			return fmt.Errorf("%w: own executable: %w", ErrSetup, err)
		}
		c.Self = exe
	}
	c.SelfEnv = append([]string{ChildEnv + "=1"}, c.SelfEnv...)
	if c.Tail <= 0 {
		c.Tail = 2 * time.Second
	}
	if c.StartTimeout <= 0 {
		c.StartTimeout = 5 * time.Second
	}
	if c.TLSTerminator == "" && (c.Load.HTTP2 || c.Load.CA != "") {
		return fmt.Errorf("%w: HTTP/2 and a CA are for an HTTPS load: give a TLS terminator", ErrSetup)
	}
	if c.TLSTerminator != "" {
		if err := c.tlsDefaults(); err != nil {
			return fmt.Errorf("%w: TLS terminator %s: %w", ErrSetup, c.TLSTerminator, err)
		}
	}
	if c.TcpcopyArgs == nil {
		c.TcpcopyArgs = DefaultTcpcopyArgs
	}
	if c.InterceptArgs == nil {
		c.InterceptArgs = DefaultInterceptArgs
	}
	if c.TcpcopyMetrics == "" {
		c.TcpcopyMetrics = DefaultTcpcopyMetrics
	}
	if len(c.OnlinePorts) == 0 {
		c.OnlinePorts = []uint16{OnlinePort}
	}
	if len(c.TargetPorts) == 0 {
		c.TargetPorts = []uint16{TargetPort}
	}
	if len(c.LoadPorts) == 0 {
		c.LoadPorts = []uint16{c.OnlinePorts[0]}
	}
	for _, p := range c.LoadPorts {
		if !slices.Contains(c.OnlinePorts, p) {
			return fmt.Errorf("%w: load port %d is not an online port %v", ErrSetup, p, c.OnlinePorts)
		}
	}
	if err := c.netlabOptions().Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrSetup, err)
	}
	if c.ClientMTU != 0 && c.ClientMTU < netlab.IPv6MinMTU {
		return fmt.Errorf("%w: ClientMTU %d is below %d: the kernel would remove IPv6 from the client link, where the online server listens (use ClientMSS for small segments)", ErrSetup, c.ClientMTU, netlab.IPv6MinMTU)
	}
	if c.IPv6 && c.TargetMTU != 0 && c.TargetMTU < netlab.IPv6MinMTU {
		return fmt.Errorf("%w: TargetMTU %d is below %d: the target would have no IPv6 for an IPv6 load", ErrSetup, c.TargetMTU, netlab.IPv6MinMTU)
	}
	if c.Pcap != "" {
		abs, err := filepath.Abs(c.Pcap)
		if err != nil {
			return fmt.Errorf("%w: pcap: %w", ErrSetup, err)
		}
		if fi, err := os.Stat(filepath.Dir(abs)); err != nil || !fi.IsDir() {
			return fmt.Errorf("%w: pcap %s: no directory %s", ErrSetup, c.Pcap, filepath.Dir(abs))
		}
		if _, err := exec.LookPath("tcpdump"); err != nil {
			return fmt.Errorf("%w: Pcap needs tcpdump: install the tcpdump package (scripts/deps.sh): %w", ErrSetup, err)
		}
		c.Pcap = abs
	}
	srv, err := TargetServerByName(c.TargetServer)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrSetup, err)
	}
	if srv.Nginx != nil && c.NginxBin == "" {
		if c.NginxBin, err = FindNginx(); err != nil {
			return fmt.Errorf("%w: target server %s: %w", ErrSetup, srv.Name, err)
		}
	}
	if len(c.MoreTcpcopyArgs) > 0 && c.TcpcopyBin == "" {
		return fmt.Errorf("%w: more tcpcopy instances without a tcpcopy binary", ErrSetup)
	}
	for _, bin := range []*string{&c.TcpcopyBin, &c.InterceptBin} {
		if *bin == "" {
			continue
		}
		abs, err := filepath.Abs(*bin)
		if err != nil {
			return fmt.Errorf("%w: %w", ErrSetup, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return fmt.Errorf("%w: %w", ErrSetup, err)
		}
		*bin = abs
	}
	return nil
}

// tlsDefaults checks what a TLS terminator needs and excludes, and sets
// tcpcopy's default command line and the nginx binary.
func (c *Config) tlsDefaults() error {
	if _, err := TLSTerminatorByName(c.TLSTerminator); err != nil {
		return err
	}
	switch {
	case len(c.OnlinePorts) > 0 || len(c.LoadPorts) > 0:
		return errors.New("the online ports are the terminator's: OnlinePorts and LoadPorts are not for a TLS run")
	case c.Pcap != "":
		return errors.New("a recording of the client side would be TLS, which nothing can copy: Pcap is not for a TLS run")
	case c.Load.Pipeline > 1:
		return errors.New("the load client pipelines plain HTTP/1.1 only")
	case c.ExtraClients > TLSMaxExtraClients:
		return fmt.Errorf("at most %d extra clients: the copies' addresses (%s) must stay free", TLSMaxExtraClients, poolArg(TLSClientPool))
	}
	if c.TcpcopyArgs == nil {
		c.TcpcopyArgs = DefaultTLSTcpcopyArgs
	}
	if c.NginxBin == "" {
		var err error
		if c.NginxBin, err = FindNginx(); err != nil {
			return err
		}
	}
	ssl, _, err := NginxModules(c.NginxBin)
	if err != nil {
		return err
	}
	if !ssl {
		return ErrNoNginxSSL
	}
	return nil
}

// netlabOptions are the topology's options.
func (c *Config) netlabOptions() netlab.Options {
	return netlab.Options{
		Prefix: c.Prefix, ExtraClients: c.ExtraClients, Dir: c.Dir, GRO: c.GRO,
		ClientSysctls: c.ClientSysctls, ClientMSS: c.ClientMSS, ClientMTU: c.ClientMTU, TargetMTU: c.TargetMTU,
		LossCopy: c.LossCopy, LossResponse: c.LossResponse,
	}
}

// stackName is the client stack's name for the report.
func (c *Config) stackName() string {
	switch {
	case c.ClientStack != "":
		return c.ClientStack
	case len(c.ClientSysctls) == 0 && c.ClientMSS == 0 && c.ClientMTU == 0 && c.TargetMTU == 0 &&
		!c.Load.DataOnAck && !c.Load.ExpectContinue:
		return "linux"
	}
	return "custom"
}

// ServeArgs is the command line (after Self) of a recorder.
func ServeArgs(logPath string, listen ...string) []string {
	args := []string{"serve", "--log", logPath}
	for _, l := range listen {
		args = append(args, "--listen", l)
	}
	return args
}

// LoadArgs is the command line (after Self) of a load client running o,
// with its results going to logPath.
func LoadArgs(o load.Options, logPath string) []string {
	args := []string{"load", "--url", o.URL, "--log", logPath,
		"--rate", strconv.FormatFloat(o.Rate, 'g', -1, 64),
		"--mode", o.Mode.String(),
	}
	add := func(name, v string) { args = append(args, "--"+name, v) }
	if o.Duration > 0 {
		add("duration", o.Duration.String())
	}
	if o.MaxRequests > 0 {
		add("max", strconv.Itoa(o.MaxRequests))
	}
	if o.KeepAliveShare > 0 {
		add("keepalive-share", strconv.FormatFloat(o.KeepAliveShare, 'g', -1, 64))
	}
	if o.RequestsPerConn > 0 {
		add("per-conn", strconv.Itoa(o.RequestsPerConn))
	}
	for _, m := range o.Methods {
		add("method", m)
	}
	for _, s := range o.BodySizes {
		add("body-size", strconv.Itoa(s))
	}
	if o.RespSize > 0 {
		add("resp", strconv.Itoa(o.RespSize))
	}
	if o.RespChunked > 0 {
		add("resp-chunked", strconv.FormatFloat(o.RespChunked, 'g', -1, 64))
	}
	if o.Seed != 0 {
		add("seed", strconv.FormatUint(o.Seed, 10))
	}
	if o.Concurrency > 0 {
		add("concurrency", strconv.Itoa(o.Concurrency))
	}
	if o.Timeout > 0 {
		add("timeout", o.Timeout.String())
	}
	if o.IDPrefix != "" {
		add("id-prefix", o.IDPrefix)
	}
	for _, a := range o.LocalAddrs {
		add("source", a.String())
	}
	if o.ReusePorts {
		args = append(args, "--reuse-ports")
	}
	if o.DataOnAck {
		args = append(args, "--data-on-ack")
	}
	if o.ExpectContinue {
		args = append(args, "--expect-continue")
	}
	if o.Pipeline > 1 {
		add("pipeline", strconv.Itoa(o.Pipeline))
	}
	if o.Think > 0 {
		add("think", o.Think.String())
	}
	if o.CA != "" {
		add("ca", o.CA)
	}
	if o.HTTP2 {
		args = append(args, "--http2")
	}
	return args
}

// Run runs the experiment described by cfg. It returns the report, and an
// error wrapping ErrSetup when the lab could not be built or a process
// could not be started, or another error when the run failed later (the
// report is then partial). The lab is always torn down before Run returns.
func Run(ctx context.Context, cfg Config, log *slog.Logger) (rep *Report, err error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	if gone, err := netlab.Cleanup(ctx, cfg.Prefix); err != nil {
		log.Warn("stale namespace cleanup", "err", err)
	} else if len(gone) > 0 {
		log.Info("deleted stale namespaces", "names", gone)
	}

	start := time.Now()
	log.Info("building topology")
	topo, err := netlab.New(ctx, cfg.netlabOptions())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	// The lab's programs are stopped before the namespaces go: Close does
	// both, and also covers every early return below.
	defer func() {
		log.Debug("tearing down", "id", topo.ID)
		if cerr := topo.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	rep = &Report{ID: topo.ID, Dir: topo.Dir, Start: start, Copying: cfg.TcpcopyBin != "", GRO: topo.GRO, Sources: 1,
		Network: Network{
			ClientStack: cfg.stackName(), ClientSysctls: topo.ClientSysctls,
			ClientMSS: topo.ClientMSS, ClientMSS6: topo.ClientMSS6, ClientMTU: topo.ClientMTU, TargetMTU: topo.TargetMTU,
			DataOnAck: cfg.Load.DataOnAck, ExpectContinue: cfg.Load.ExpectContinue,
			LossCopy: topo.LossCopy, LossResponse: topo.LossResponse,
		}}
	log.Info("topology ready", "id", topo.ID, "dir", topo.Dir, "gro", topo.GRO, "client_stack", rep.Network.ClientStack,
		"loss_copy", topo.LossCopy, "loss_response", topo.LossResponse, "target_server", cfg.TargetServer)

	lab := &Lab{Topo: topo, Vars: Vars(topo), cfg: &cfg, log: log}
	addMACs(ctx, topo, lab.Vars)
	if err := lab.plan(); err != nil {
		return rep, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	rep.Server = lab.server
	rep.TLS = lab.tlsRep
	if cfg.Setup != nil {
		if err := cfg.Setup(ctx, lab); err != nil {
			return rep, fmt.Errorf("%w: setup hook: %w", ErrSetup, err)
		}
	}
	if err := lab.startServers(ctx); err != nil {
		return rep, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	if lab.intercept != nil {
		if err := lab.StartIntercept(ctx); err != nil {
			return rep, fmt.Errorf("%w: intercept: %w", ErrSetup, err)
		}
	}
	var watcher *netlab.Proc
	watchOut := filepath.Join(topo.Dir, "leaks.json")
	if cfg.LeakCheck {
		if watcher, err = lab.startWatcher(ctx, watchOut); err != nil {
			return rep, fmt.Errorf("%w: leak watcher: %w", ErrSetup, err)
		}
	}
	for i, tc := range lab.tcpcopies {
		log.Info("starting tcpcopy", "instance", i+1, "bin", tc.bin, "args", tc.args)
		p, err := tc.start(topo)
		if err != nil {
			return rep, fmt.Errorf("%w: %w", ErrSetup, err)
		}
		if lab.intercept != nil {
			if err := waitLinked(ctx, p, cfg.StartTimeout); err != nil {
				return rep, fmt.Errorf("%w: tcpcopy did not connect to intercept: %w", ErrSetup, err)
			}
			continue
		}
		// Nothing to wait for: only check that it stays up.
		rep.Problems = append(rep.Problems, "tcpcopy runs without intercept")
		select {
		case <-p.Done():
			return rep, fmt.Errorf("%w: tcpcopy exited at start: %v %s", ErrSetup, p.Err(), p.StderrTail(512))
		case <-time.After(500 * time.Millisecond):
		case <-ctx.Done():
			return rep, ctx.Err()
		}
	}

	var dump *netlab.Proc
	if cfg.Pcap != "" {
		if dump, err = lab.startTcpdump(ctx); err != nil {
			return rep, fmt.Errorf("%w: tcpdump: %w", ErrSetup, err)
		}
	}

	// Load, and the During hook beside it.
	loads, err := lab.startLoads(rep)
	if err != nil {
		return rep, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	duringErr := make(chan error, 1)
	dctx, stopDuring := context.WithCancel(ctx)
	defer stopDuring()
	if cfg.During != nil {
		go func() { duringErr <- cfg.During(dctx, lab) }()
	} else {
		duringErr <- nil
	}
	// The load bounds itself (duration + request timeout); this is a
	// safety net.
	d, to := cfg.Load.Duration, cfg.Load.Timeout
	if d <= 0 {
		d = load.DefaultDuration
	}
	if to <= 0 {
		to = load.DefaultTimeout
	}
	limit := time.After(d + to + 10*time.Second)
	for _, lp := range loads {
		select {
		case <-lp.p.Done():
		case <-ctx.Done():
			return rep, ctx.Err()
		case <-limit:
			rep.Problems = append(rep.Problems, "load did not end by itself within "+(d+to+10*time.Second).String())
			limit = nil
		}
	}
	var errs []error
	lc := &role{name: "load", bin: cfg.Self}
	for _, lp := range loads {
		// The load ends by itself: only a failure is worth reporting.
		if err := lp.p.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("load: %w", err))
		}
		u := lp.p.Usage()
		lc.args, lc.lastErr = lp.p.Args, lp.p.StderrPath
		lc.used.User += u.User
		lc.used.System += u.System
		lc.used.PeakRSS = max(lc.used.PeakRSS, u.PeakRSS)
	}
	rep.LoadClient = lc.report()
	select {
	case err := <-duringErr:
		if err != nil {
			errs = append(errs, fmt.Errorf("during hook: %w", err))
		}
	case <-ctx.Done():
		return rep, ctx.Err()
	case <-time.After(d + to + 10*time.Second):
		errs = append(errs, errors.New("during hook did not return"))
		stopDuring()
	}
	if err := errors.Join(errs...); err != nil {
		return rep, err
	}

	if lab.tls != nil {
		// The load is answered: stopping the terminator now closes its
		// pooled connections to the application, so that their copies end
		// within the tail, reproduced, with every answer judged (a
		// connection still open at stop ends tcpcopy_stopped, its last
		// answer judged only then).
		log.Info("stopping the TLS terminator")
		if err := lab.stopTLS(); err != nil {
			errs = append(errs, fmt.Errorf("TLS terminator: %w", err))
		}
	}
	if rep.Copying {
		log.Info("load done, waiting for the tail", "tail", cfg.Tail)
		select {
		case <-time.After(cfg.Tail):
		case <-ctx.Done():
			return rep, ctx.Err()
		}
	}
	if dump != nil {
		pr, err := stopTcpdump(dump, cfg.Pcap)
		if err != nil {
			errs = append(errs, fmt.Errorf("tcpdump: %w", err))
		} else {
			rep.Pcap = pr
			if pr.DroppedByKernel > 0 || pr.DroppedByInterface > 0 {
				rep.Problems = append(rep.Problems, fmt.Sprintf("tcpdump dropped %d packets (kernel) and %d (interface): the recording %s is incomplete",
					pr.DroppedByKernel, pr.DroppedByInterface, pr.File))
			}
		}
	}

	// Session outcomes from tcpcopy's metrics, then usage, then stop:
	// /proc/<pid> vanishes with the process.
	for i, tc := range lab.tcpcopies {
		pr := &ProcReport{}
		if tc.cur != nil && tc.cur.Running() {
			if addr := metricsAddr(tc.args); addr != "" {
				text, err := lab.scrape(ctx, "http://"+addr+"/metrics")
				if err == nil {
					pr.Sessions, pr.Metrics, err = sessionsFromMetrics(text)
				}
				if err == nil {
					pr.Responses, err = responsesFromMetrics(text)
				}
				if err != nil {
					log.Warn("reading tcpcopy's metrics", "instance", i+1, "err", err)
				}
			}
		}
		stopped := tc.report()
		stopped.Sessions, stopped.Metrics, stopped.MetricsAddr = pr.Sessions, pr.Metrics, metricsAddr(tc.args)
		stopped.Responses = pr.Responses
		// The final log line has the verdicts reached at stop too.
		if final, err := ResponsesFromLog(stopped.Stderr); err == nil && final != nil {
			switch {
			case stopped.Responses == nil:
				stopped.Responses = final
			case final.Total() > stopped.Responses.Total():
				stopped.Responses.AtStop = final.Total() - stopped.Responses.Total()
			}
		}
		stopped.DiffLog = flagValue(tc.args, "--diff-log")
		if stopped.Sessions == nil {
			if s, err := sessionsFromLog(stopped.Stderr); err == nil {
				stopped.Sessions = s
			} else {
				rep.Problems = append(rep.Problems, fmt.Sprintf("tcpcopy#%d: no session outcomes: %v", i+1, err))
			}
		}
		rep.Tcpcopies = append(rep.Tcpcopies, stopped)
	}
	if len(rep.Tcpcopies) > 0 {
		rep.Tcpcopy = rep.Tcpcopies[0]
		var all []*Sessions
		for _, p := range rep.Tcpcopies {
			all = append(all, p.Sessions)
		}
		rep.Sessions = sumSessions(all)
		var rs []*Responses
		for _, p := range rep.Tcpcopies {
			rs = append(rs, p.Responses)
		}
		rep.Responses = sumResponses(rs)
	}
	rep.Intercept = lab.intercept.report()
	for _, p := range append(slices.Clone(rep.Tcpcopies), rep.Intercept) {
		if p != nil && p.Exit != "" {
			rep.Problems = append(rep.Problems, filepath.Base(p.Bin)+": "+p.Exit)
		}
	}
	if topo.LossCopy > 0 || topo.LossResponse > 0 {
		c, r, err := topo.LossDrops(ctx)
		if err != nil {
			rep.Problems = append(rep.Problems, "loss counters: "+err.Error())
		} else {
			rep.Network.DroppedCopy, rep.Network.DroppedResponse = c, r
		}
	}
	if watcher != nil {
		if err := watcher.Stop(); err != nil {
			errs = append(errs, fmt.Errorf("leak watcher: %w", err))
		}
		lk, err := leakwatch.ReadResult(watchOut)
		switch {
		case err != nil:
			errs = append(errs, fmt.Errorf("leak watcher: %w", err))
		case !lk.Done:
			errs = append(errs, errors.New("leak watcher: did not finish its watch"))
		}
		rep.Leaks = &lk
	}
	if lab.tls != nil {
		// Stopped after the load already; report stops what a hook may
		// have started since.
		rep.TLS.Proc = lab.tls.report()
		if p := rep.TLS.Proc; p.Exit != "" {
			rep.Problems = append(rep.Problems, "TLS "+filepath.Base(p.Bin)+": "+p.Exit)
		}
	}
	if lab.front != nil {
		// nginx before the recorder it proxies to.
		if err := lab.front.stop(); err != nil {
			errs = append(errs, err)
		}
		rep.Server.Proc = lab.front.report()
		if p := rep.Server.Proc; p.Exit != "" {
			rep.Problems = append(rep.Problems, filepath.Base(p.Bin)+": "+p.Exit)
		}
	}
	log.Debug("stopping recorders")
	rec := &role{name: "recorders", bin: cfg.Self}
	for _, r := range []*role{lab.online, lab.target} {
		if err := r.stop(); err != nil {
			errs = append(errs, err)
		}
		rec.used.User += r.used.User
		rec.used.System += r.used.System
		rec.used.PeakRSS = max(rec.used.PeakRSS, r.used.PeakRSS)
	}
	rep.Recorders = rec.report()

	var results []load.Result
	for _, lp := range loads {
		rs, err := load.ReadResults(lp.log)
		if err != nil {
			errs = append(errs, err)
		}
		results = append(results, rs...)
	}
	rep.Load = load.Summarize(results)
	online, err := recorder.ReadLog(lab.onlineLog())
	if err != nil {
		errs = append(errs, err)
	}
	target, err := recorder.ReadLog(lab.targetLog())
	if err != nil {
		errs = append(errs, err)
	}
	rep.Compare = recorder.Compare(online, target)
	if len(cfg.TargetDiffer) > 0 {
		rep.Told = ToldBy(cfg.TargetDiffer, online, target)
	}
	if rep.Responses != nil {
		rep.Responses.CheckAsTold(rep.Told)
	}
	var diffLogs []string
	for _, p := range rep.Tcpcopies {
		if p.DiffLog != "" {
			diffLogs = append(diffLogs, p.DiffLog)
		}
	}
	if len(diffLogs) > 0 {
		d, err := ReadDiffLog(rep.Told, diffLogs...)
		if err != nil {
			rep.Problems = append(rep.Problems, "diff log: "+err.Error())
		} else {
			rep.DiffLog = d
		}
	}
	if lab.tls != nil {
		rep.Hop = HopOf(online, target, rep.Load.HTTP2)
		// The copied connections are the terminator's, not the
		// client's: lost counts them by the application's peer.
		results = nil
	}
	if rep.Copying {
		rep.Lost = lost(online, target, results, rep.Sessions)
	}
	log.Debug("compared", "online", len(online), "target", len(target))
	rep.Elapsed = time.Since(start)
	if n := rep.Load.OK; n != rep.Compare.Online {
		rep.Problems = append(rep.Problems, fmt.Sprintf("the load client got %d successful answers but online recorded %d requests", n, rep.Compare.Online))
	}
	if rep.Leaks != nil && rep.Leaks.Packets > 0 {
		rep.Problems = append(rep.Problems, fmt.Sprintf("%d packets of the target reached the client namespace", rep.Leaks.Packets))
	}
	return rep, errors.Join(errs...)
}

// diffLogPath is the diff log of tcpcopy instance i (Config.DiffLog).
func (l *Lab) diffLogPath(i int) string {
	if i == 0 {
		return filepath.Join(l.Topo.Dir, "diff.jsonl")
	}
	return filepath.Join(l.Topo.Dir, fmt.Sprintf("diff-%d.jsonl", i+1))
}

// plan fills in the lab's roles from the configuration: expanded command
// lines, metrics addresses.
func (l *Lab) plan() error {
	cfg := l.cfg
	l.online = &role{name: "online server", ns: netlab.Online, bin: cfg.Self, env: cfg.SelfEnv}
	var listen []string
	for _, p := range cfg.OnlinePorts {
		listen = append(listen,
			netip.AddrPortFrom(l.Topo.Online.ClientV4, p).String(),
			netip.AddrPortFrom(l.Topo.Online.ClientV6, p).String())
	}
	if cfg.TLSTerminator != "" {
		listen = []string{appAddr.String()}
	}
	l.online.args = ServeArgs(l.onlineLog(), listen...)
	if err := l.planTarget(); err != nil {
		return err
	}
	if err := l.planTLS(); err != nil {
		return err
	}

	if cfg.InterceptBin != "" {
		args, err := Expand(cfg.InterceptArgs, l.Vars)
		if err != nil {
			return fmt.Errorf("intercept args: %w", err)
		}
		l.intercept = &role{name: "intercept", ns: netlab.Assistant, bin: cfg.InterceptBin, args: args}
	}
	if cfg.TcpcopyBin == "" {
		return nil
	}
	for i, a := range append([][]string{cfg.TcpcopyArgs}, cfg.MoreTcpcopyArgs...) {
		args, err := Expand(a, l.Vars)
		if err != nil {
			return fmt.Errorf("tcpcopy args: %w", err)
		}
		if metricsAddr(args) == "" && cfg.TcpcopyMetrics != "off" {
			addr, err := nthAddr(cfg.TcpcopyMetrics, i)
			if err != nil {
				return err
			}
			args = append(slices.Clip(args), "--metrics-addr", addr)
		}
		if cfg.DiffLog && flagValue(args, "--diff-log") == "" {
			args = append(slices.Clip(args), "--diff-log", l.diffLogPath(i))
		}
		l.tcpcopies = append(l.tcpcopies, &role{name: "tcpcopy", ns: netlab.Online, bin: cfg.TcpcopyBin, args: args})
	}
	return nil
}

func (l *Lab) onlineLog() string { return filepath.Join(l.Topo.Dir, "online.jsonl") }
func (l *Lab) targetLog() string { return filepath.Join(l.Topo.Dir, "target.jsonl") }

// startServers starts the two recorders, and nginx in front of the
// target's when the target server has one, and waits until they listen.
func (l *Lab) startServers(ctx context.Context) error {
	l.mu.Lock()
	p, err := l.online.start(l.Topo)
	l.mu.Unlock()
	if err != nil {
		return err
	}
	if l.tls != nil {
		if err := l.startTLS(ctx, p); err != nil {
			return err
		}
	}
	for _, port := range l.cfg.OnlinePorts {
		if l.tls != nil {
			break
		}
		for _, a := range []netip.Addr{l.Topo.Online.ClientV4, l.Topo.Online.ClientV6} {
			if err := waitReady(ctx, l.Topo, p, l.cfg.StartTimeout, listeningOn(a, port)); err != nil {
				return fmt.Errorf("online recorder: %w", err)
			}
		}
	}
	if l.front != nil {
		l.mu.Lock()
		p, err := l.target.start(l.Topo)
		l.mu.Unlock()
		if err != nil {
			return fmt.Errorf("target recorder: %w", err)
		}
		if err := waitReady(ctx, l.Topo, p, l.cfg.StartTimeout, listeningOn(netip.MustParseAddr("127.0.0.1"), NginxUpstreamPort)); err != nil {
			return fmt.Errorf("target recorder: %w", err)
		}
	}
	if err := l.StartTarget(ctx); err != nil {
		return fmt.Errorf("target recorder: %w", err)
	}
	return nil
}

// startWatcher starts the leak watcher in the client namespace and waits
// until its capture is open.
func (l *Lab) startWatcher(ctx context.Context, out string) (*netlab.Proc, error) {
	t := l.Topo
	o := leakwatch.Options{
		From:  []netip.Addr{t.Target.OnlineV4, t.Target.OnlineV6, t.Target.AssistantV4, t.Target.AssistantV6},
		Ports: l.cfg.TargetPorts,
		Out:   out,
	}
	p, err := t.StartEnv(netlab.Client, l.cfg.SelfEnv, l.cfg.Self, leakwatch.Args(o)...)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, l.cfg.StartTimeout)
	defer cancel()
	for {
		if r, err := leakwatch.ReadResult(out); err == nil && r.Ready {
			return p, nil
		}
		if !p.Running() {
			return nil, fmt.Errorf("exited: %v %s", p.Err(), p.StderrTail(512))
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

type loadProc struct {
	p   *netlab.Proc
	log string
}

// startLoads starts one load client per load port in the client namespace.
func (l *Lab) startLoads(rep *Report) ([]loadProc, error) {
	cfg, t := l.cfg, l.Topo
	var out []loadProc
	for i, port := range cfg.LoadPorts {
		lo := cfg.Load
		srv := t.Online.ClientV4
		if cfg.IPv6 {
			srv = t.Online.ClientV6
		}
		lo.URL = "http://" + netip.AddrPortFrom(srv, port).String()
		if l.tls != nil {
			lo.URL = "https://" + netip.AddrPortFrom(srv, TLSPort).String()
			lo.CA = l.tlsCA
		}
		if cfg.AllSources {
			if cfg.IPv6 {
				lo.LocalAddrs = append([]netip.Addr{t.Client.V6}, t.Client.Extra6...)
			} else {
				lo.LocalAddrs = append([]netip.Addr{t.Client.V4}, t.Client.Extra4...)
			}
			rep.Sources = len(lo.LocalAddrs)
		}
		logPath := filepath.Join(t.Dir, "load.jsonl")
		if i > 0 {
			logPath = filepath.Join(t.Dir, fmt.Sprintf("load-%d.jsonl", i+1))
			if lo.IDPrefix != "" {
				lo.IDPrefix += "-" + strconv.Itoa(i+1)
			}
		}
		if i == 0 {
			rep.URL = lo.URL
		}
		l.log.Info("running load", "url", lo.URL, "rate", lo.Rate, "duration", lo.Duration, "max", lo.MaxRequests, "mode", lo.Mode)
		p, err := t.StartEnv(netlab.Client, cfg.SelfEnv, cfg.Self, LoadArgs(lo, logPath)...)
		if err != nil {
			return out, err
		}
		out = append(out, loadProc{p: p, log: logPath})
	}
	return out, nil
}

// lost accounts for the online requests that did not reach the target
// intact: on how many client connections they were, against the sessions
// tcpcopy did not reproduce. nil when none was lost.
func lost(online, target []recorder.Entry, results []load.Result, s *Sessions) *Lost {
	type req struct {
		id, method, sum string
		n               int64
	}
	ok := make(map[req]bool, len(target))
	for _, e := range target {
		ok[req{e.ID, e.Method, e.BodySHA256, e.BodyLen}] = true
	}
	conn := make(map[string]string, len(results))
	for _, r := range results {
		conn[r.ID] = r.Local
	}
	seen := map[string]bool{}
	conns := map[string]bool{}
	lo := &Lost{}
	for _, e := range online {
		if seen[e.ID] && e.ID != "" {
			continue
		}
		seen[e.ID] = true
		if ok[req{e.ID, e.Method, e.BodySHA256, e.BodyLen}] {
			continue
		}
		lo.Requests++
		// The online server saw the client's connection from the same
		// address:port as the client did.
		c := e.Remote
		if l := conn[e.ID]; l != "" {
			c = l
		}
		conns[c] = true
	}
	if lo.Requests == 0 {
		return nil
	}
	lo.Connections = len(conns)
	if s != nil {
		lo.NotReproduced = s.NotReproduced() + s.Open
	}
	lo.Explained = s != nil && uint64(lo.Connections) <= lo.NotReproduced
	return lo
}
