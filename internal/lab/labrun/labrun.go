// Package labrun runs one copy experiment in a fresh lab: it builds the
// namespace topology (package netlab), starts the recorder on online and on
// target, optionally intercept on assistant and tcpcopy on online, runs the
// load from the client namespace, waits a tail period, stops everything and
// compares what the two recorders saw (recorder.Compare), with the CPU time
// and peak RSS of tcpcopy and intercept.
//
// The recorder and the load client run as child processes of an executable
// that implements the "serve" and "load" subcommands of tcpcopy-lab
// (Config.Self, the running executable by default), started with
// "ip netns exec". Their command lines come from ServeArgs and LoadArgs.
//
// tcpcopy and intercept are plugged in by path and argv. Arguments may hold
// placeholders such as {assistant.target_if} or {target.online_v4}, expanded
// from the topology (see Vars); DefaultTcpcopyArgs and
// DefaultInterceptArgs are the C TCPCopy 1.x command lines for this lab.
//
// Run always tears the lab down, on success, failure and ctx cancellation.
package labrun

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

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
}

// ProcReport describes tcpcopy or intercept in a Report.
type ProcReport struct {
	Bin        string        `json:"bin"`
	Args       []string      `json:"args"`
	CPUSeconds float64       `json:"cpu_seconds"` // user + system
	User       time.Duration `json:"user"`
	System     time.Duration `json:"system"`
	PeakRSS    int64         `json:"peak_rss"`       // bytes
	Exit       string        `json:"exit,omitempty"` // non-empty when it failed or died before being stopped
	Stderr     string        `json:"stderr"`         // path of its stderr file
}

// Report is the outcome of a run.
type Report struct {
	ID        string              `json:"id"`  // topology id
	Dir       string              `json:"dir"` // logs
	Start     time.Time           `json:"start"`
	Elapsed   time.Duration       `json:"elapsed"` // set when the run completed
	URL       string              `json:"url"`
	Copying   bool                `json:"copying"`
	Load      load.Stats          `json:"load"`
	Compare   recorder.Comparison `json:"compare"`
	Tcpcopy   *ProcReport         `json:"tcpcopy,omitempty"`
	Intercept *ProcReport         `json:"intercept,omitempty"`
	Problems  []string            `json:"problems,omitempty"` // non-fatal trouble worth a look
}

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
	if c.TcpcopyArgs == nil {
		c.TcpcopyArgs = DefaultTcpcopyArgs
	}
	if c.InterceptArgs == nil {
		c.InterceptArgs = DefaultInterceptArgs
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
	topo, err := netlab.New(ctx, netlab.Options{Prefix: cfg.Prefix, ExtraClients: cfg.ExtraClients, Dir: cfg.Dir, GRO: cfg.GRO})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	defer func() {
		log.Debug("tearing down", "id", topo.ID)
		if cerr := topo.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
	}()
	rep = &Report{ID: topo.ID, Dir: topo.Dir, Start: start, Copying: cfg.TcpcopyBin != ""}
	log.Info("topology ready", "id", topo.ID, "dir", topo.Dir)

	vars := Vars(topo)
	tcpcopyArgs, err := Expand(cfg.TcpcopyArgs, vars)
	if err != nil {
		return rep, fmt.Errorf("%w: tcpcopy args: %w", ErrSetup, err)
	}
	interceptArgs, err := Expand(cfg.InterceptArgs, vars)
	if err != nil {
		return rep, fmt.Errorf("%w: intercept args: %w", ErrSetup, err)
	}

	onlineLog := filepath.Join(topo.Dir, "online.jsonl")
	targetLog := filepath.Join(topo.Dir, "target.jsonl")
	loadLog := filepath.Join(topo.Dir, "load.jsonl")

	// Recorders.
	onlineSrv, err := topo.StartEnv(netlab.Online, cfg.SelfEnv, cfg.Self, ServeArgs(onlineLog,
		netip.AddrPortFrom(topo.Online.ClientV4, OnlinePort).String(),
		netip.AddrPortFrom(topo.Online.ClientV6, OnlinePort).String())...)
	if err != nil {
		return rep, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	targetSrv, err := topo.StartEnv(netlab.Target, cfg.SelfEnv, cfg.Self, ServeArgs(targetLog, ":"+strconv.Itoa(TargetPort))...)
	if err != nil {
		return rep, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	for _, a := range []netip.Addr{topo.Online.ClientV4, topo.Online.ClientV6} {
		if err := waitReady(ctx, topo, onlineSrv, cfg.StartTimeout, listeningOn(a, OnlinePort)); err != nil {
			return rep, fmt.Errorf("%w: online recorder: %w", ErrSetup, err)
		}
	}
	if err := waitReady(ctx, topo, targetSrv, cfg.StartTimeout, listening(TargetPort)); err != nil {
		return rep, fmt.Errorf("%w: target recorder: %w", ErrSetup, err)
	}

	// intercept, then tcpcopy, which connects to it.
	var intercept, tcpcopy *netlab.Proc
	if cfg.InterceptBin != "" {
		log.Info("starting intercept", "bin", cfg.InterceptBin, "args", interceptArgs)
		if intercept, err = topo.Start(netlab.Assistant, cfg.InterceptBin, interceptArgs...); err != nil {
			return rep, fmt.Errorf("%w: %w", ErrSetup, err)
		}
		if err := waitReady(ctx, topo, intercept, cfg.StartTimeout, listening(InterceptPort)); err != nil {
			return rep, fmt.Errorf("%w: intercept: %w", ErrSetup, err)
		}
	}
	if cfg.TcpcopyBin != "" {
		log.Info("starting tcpcopy", "bin", cfg.TcpcopyBin, "args", tcpcopyArgs)
		if tcpcopy, err = topo.Start(netlab.Online, cfg.TcpcopyBin, tcpcopyArgs...); err != nil {
			return rep, fmt.Errorf("%w: %w", ErrSetup, err)
		}
		if intercept != nil {
			connected := func(s netlab.Socket) bool {
				return s.State == netlab.TCPEstablished && s.Remote.Port() == InterceptPort
			}
			if err := waitReady(ctx, topo, tcpcopy, cfg.StartTimeout, connected); err != nil {
				return rep, fmt.Errorf("%w: tcpcopy did not connect to intercept: %w", ErrSetup, err)
			}
		} else {
			// Nothing to wait for: only check that it stays up.
			rep.Problems = append(rep.Problems, "tcpcopy runs without intercept")
			select {
			case <-tcpcopy.Done():
				return rep, fmt.Errorf("%w: tcpcopy exited at start: %v %s", ErrSetup, tcpcopy.Err(), tcpcopy.StderrTail(512))
			case <-time.After(500 * time.Millisecond):
			case <-ctx.Done():
				return rep, ctx.Err()
			}
		}
	}

	// Load.
	lo := cfg.Load
	srv := topo.Online.ClientV4
	if cfg.IPv6 {
		srv = topo.Online.ClientV6
	}
	lo.URL = "http://" + netip.AddrPortFrom(srv, OnlinePort).String()
	rep.URL = lo.URL
	if cfg.AllSources {
		if cfg.IPv6 {
			lo.LocalAddrs = append([]netip.Addr{topo.Client.V6}, topo.Client.Extra6...)
		} else {
			lo.LocalAddrs = append([]netip.Addr{topo.Client.V4}, topo.Client.Extra4...)
		}
	}
	log.Info("running load", "url", lo.URL, "rate", lo.Rate, "duration", lo.Duration, "max", lo.MaxRequests, "mode", lo.Mode)
	loader, err := topo.StartEnv(netlab.Client, cfg.SelfEnv, cfg.Self, LoadArgs(lo, loadLog)...)
	if err != nil {
		return rep, fmt.Errorf("%w: %w", ErrSetup, err)
	}
	// The load bounds itself (duration + request timeout); this is a
	// safety net.
	d, to := lo.Duration, lo.Timeout
	if d <= 0 {
		d = load.DefaultDuration
	}
	if to <= 0 {
		to = load.DefaultTimeout
	}
	limit := d + to + 10*time.Second
	select {
	case <-loader.Done():
	case <-ctx.Done():
		return rep, ctx.Err()
	case <-time.After(limit):
		rep.Problems = append(rep.Problems, "load did not end by itself within "+limit.String())
	}
	if err := loader.Stop(); err != nil {
		return rep, fmt.Errorf("load: %w", err)
	}

	if rep.Copying {
		log.Info("load done, waiting for the tail", "tail", cfg.Tail)
		select {
		case <-time.After(cfg.Tail):
		case <-ctx.Done():
			return rep, ctx.Err()
		}
	}

	// Usage, then stop: /proc/<pid> vanishes with the process.
	log.Debug("stopping tcpcopy and intercept")
	rep.Tcpcopy = stopMeasured(tcpcopy)
	rep.Intercept = stopMeasured(intercept)
	log.Debug("stopping recorders")
	for _, p := range []*ProcReport{rep.Tcpcopy, rep.Intercept} {
		if p != nil && p.Exit != "" {
			rep.Problems = append(rep.Problems, filepath.Base(p.Bin)+": "+p.Exit)
		}
	}
	var errs []error
	for _, p := range []*netlab.Proc{onlineSrv, targetSrv} {
		if err := p.Stop(); err != nil {
			errs = append(errs, err)
		}
	}

	results, err := load.ReadResults(loadLog)
	if err != nil {
		errs = append(errs, err)
	}
	rep.Load = load.Summarize(results)
	online, err := recorder.ReadLog(onlineLog)
	if err != nil {
		errs = append(errs, err)
	}
	target, err := recorder.ReadLog(targetLog)
	if err != nil {
		errs = append(errs, err)
	}
	rep.Compare = recorder.Compare(online, target)
	log.Debug("compared", "online", len(online), "target", len(target))
	rep.Elapsed = time.Since(start)
	if n := rep.Load.OK; n != rep.Compare.Online {
		rep.Problems = append(rep.Problems, fmt.Sprintf("the load client got %d successful answers but online recorded %d requests", n, rep.Compare.Online))
	}
	return rep, errors.Join(errs...)
}

// stopMeasured samples p's usage, stops it and reports it; nil for nil.
func stopMeasured(p *netlab.Proc) *ProcReport {
	if p == nil {
		return nil
	}
	r := &ProcReport{Bin: p.Name, Args: p.Args, Stderr: p.StderrPath}
	died := !p.Running()
	_, _ = p.Sample()
	err := p.Stop()
	u := p.Usage()
	r.User, r.System, r.PeakRSS = u.User, u.System, u.PeakRSS
	r.CPUSeconds = u.CPU().Seconds()
	switch {
	case died:
		r.Exit = fmt.Sprintf("exited before the end of the run: %v", err)
	case err != nil:
		r.Exit = err.Error()
	}
	return r
}

func listeningOn(a netip.Addr, port uint16) func(netlab.Socket) bool {
	want := netip.AddrPortFrom(a, port)
	return func(s netlab.Socket) bool { return s.State == netlab.TCPListen && s.Local == want }
}

func listening(port uint16) func(netlab.Socket) bool {
	return func(s netlab.Socket) bool { return s.State == netlab.TCPListen && s.Local.Port() == port }
}

// waitReady waits until a socket in p's namespace satisfies ready, failing
// early with p's stderr when p exits.
func waitReady(ctx context.Context, topo *netlab.Topology, p *netlab.Proc, timeout time.Duration, ready func(netlab.Socket) bool) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	go func() {
		select {
		case <-p.Done():
			cancel()
		case <-ctx.Done():
		}
	}()
	err := topo.WaitTCP(ctx, p.NS, ready)
	if !p.Running() {
		if perr := p.Err(); perr != nil {
			return perr
		}
		return fmt.Errorf("%s exited: %s", filepath.Base(p.Name), p.StderrTail(512))
	}
	return err
}

// Vars returns the placeholder values of topo for Expand: "{role.field}"
// for every interface name and address in the topology, "{role.ns}" for
// the namespace names and "{dir}" for the output directory.
func Vars(t *netlab.Topology) map[string]string {
	return map[string]string{
		"dir":                 t.Dir,
		"client.ns":           t.Client.Name,
		"client.online_if":    t.Client.OnlineIf,
		"client.v4":           t.Client.V4.String(),
		"client.v6":           t.Client.V6.String(),
		"online.ns":           t.Online.Name,
		"online.client_if":    t.Online.ClientIf,
		"online.target_if":    t.Online.TargetIf,
		"online.assistant_if": t.Online.AssistantIf,
		"online.client_v4":    t.Online.ClientV4.String(),
		"online.client_v6":    t.Online.ClientV6.String(),
		"online.target_v4":    t.Online.TargetV4.String(),
		"online.target_v6":    t.Online.TargetV6.String(),
		"online.assistant_v4": t.Online.AssistantV4.String(),
		"online.assistant_v6": t.Online.AssistantV6.String(),
		"target.ns":           t.Target.Name,
		"target.online_if":    t.Target.OnlineIf,
		"target.assistant_if": t.Target.AssistantIf,
		"target.online_v4":    t.Target.OnlineV4.String(),
		"target.online_v6":    t.Target.OnlineV6.String(),
		"target.assistant_v4": t.Target.AssistantV4.String(),
		"target.assistant_v6": t.Target.AssistantV6.String(),
		"assistant.ns":        t.Assistant.Name,
		"assistant.online_if": t.Assistant.OnlineIf,
		"assistant.target_if": t.Assistant.TargetIf,
		"assistant.online_v4": t.Assistant.OnlineV4.String(),
		"assistant.online_v6": t.Assistant.OnlineV6.String(),
		"assistant.target_v4": t.Assistant.TargetV4.String(),
		"assistant.target_v6": t.Assistant.TargetV6.String(),
		"intercept.port":      strconv.Itoa(InterceptPort),
		"online.port":         strconv.Itoa(OnlinePort),
		"target.port":         strconv.Itoa(TargetPort),
	}
}

// Expand replaces every "{name}" in args by vars[name]. An unknown name is
// an error, so that a typo does not reach the program under test.
func Expand(args []string, vars map[string]string) ([]string, error) {
	out := make([]string, len(args))
	for i, a := range args {
		var b strings.Builder
		rest := a
		for {
			open := strings.IndexByte(rest, '{')
			if open < 0 {
				b.WriteString(rest)
				break
			}
			end := strings.IndexByte(rest[open:], '}')
			if end < 0 {
				b.WriteString(rest)
				break
			}
			name := rest[open+1 : open+end]
			v, ok := vars[name]
			if !ok {
				return nil, fmt.Errorf("unknown placeholder {%s} in %q", name, a)
			}
			b.WriteString(rest[:open])
			b.WriteString(v)
			rest = rest[open+end+1:]
		}
		out[i] = b.String()
	}
	return out, nil
}

// SplitArgs splits a command line the way a POSIX shell splits words, with
// single quotes, double quotes and backslash escapes (no expansions):
// `-F 'tcp and src port 8080' -i x` gives [-F, tcp and src port 8080, -i, x].
func SplitArgs(s string) ([]string, error) {
	var (
		args  []string
		cur   strings.Builder
		inArg bool
		quote rune
		esc   bool
	)
	for _, r := range s {
		switch {
		case esc:
			cur.WriteRune(r)
			esc = false
		case quote == '\'':
			if r == '\'' {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case quote == '"':
			switch r {
			case '"':
				quote = 0
			case '\\':
				esc = true
			default:
				cur.WriteRune(r)
			}
		case r == '\\':
			esc, inArg = true, true
		case r == '\'' || r == '"':
			quote, inArg = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteRune(r)
			inArg = true
		}
	}
	if quote != 0 || esc {
		return nil, fmt.Errorf("unterminated quote or escape in %q", s)
	}
	if inArg {
		args = append(args, cur.String())
	}
	return args, nil
}

// WriteText writes r as a short human-readable report.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "lab %s: %s, logs in %s\n", r.ID, r.Elapsed.Round(time.Millisecond), r.Dir)
	l := r.Load
	rate := 0.0
	if l.Elapsed > 0 {
		rate = float64(l.Requests) / l.Elapsed.Seconds()
	}
	fmt.Fprintf(&b, "load       %d requests to %s in %s (%.1f/s): %d ok, %d failed, %d on keep-alive connections, %d connections\n",
		l.Requests, r.URL, l.Elapsed.Round(time.Millisecond), rate, l.OK, l.Failed, l.KeepAlive, l.Connections)
	fmt.Fprintf(&b, "latency    p50 %s  p99 %s  max %s\n", l.P50.Round(time.Microsecond), l.P99.Round(time.Microsecond), l.Max.Round(time.Microsecond))
	if l.FirstErr != "" {
		fmt.Fprintf(&b, "first error %s\n", l.FirstErr)
	}
	c := r.Compare
	fmt.Fprintf(&b, "online     %d requests recorded\n", c.Online)
	fmt.Fprintf(&b, "target     %d requests recorded: %d matched, %d with a different body, %d missing, %d duplicates, %d unexpected\n",
		c.Target, c.Matched, c.Mismatched, c.Missing, c.Duplicates, c.Unexpected)
	note := ""
	if !r.Copying {
		note = " (no tcpcopy: copying disabled)"
	}
	fmt.Fprintf(&b, "fidelity   %.1f%%%s\n", c.Fidelity, note)
	if len(c.MissingIDs) > 0 && r.Copying {
		fmt.Fprintf(&b, "missing    %s\n", strings.Join(c.MissingIDs, " "))
	}
	if len(c.MismatchedIDs) > 0 {
		fmt.Fprintf(&b, "different  %s\n", strings.Join(c.MismatchedIDs, " "))
	}
	for _, p := range []struct {
		name string
		r    *ProcReport
	}{{"tcpcopy", r.Tcpcopy}, {"intercept", r.Intercept}} {
		if p.r == nil {
			continue
		}
		fmt.Fprintf(&b, "%-10s cpu %.2f s (user %.2f, sys %.2f), peak rss %.1f MiB\n", p.name, p.r.CPUSeconds,
			p.r.User.Seconds(), p.r.System.Seconds(), float64(p.r.PeakRSS)/(1<<20))
	}
	for _, p := range r.Problems {
		fmt.Fprintf(&b, "problem    %s\n", p)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// WriteJSON writes r as indented JSON to path.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
