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
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labtls"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
)

// Lab is a run in progress, handed to Config.Setup and Config.During. Its
// methods stop and start the lab's programs, so that tests can take a part
// of the copy path down in the middle of a run. They are safe for
// concurrent use; every program they start is stopped by Run at the end.
type Lab struct {
	Topo *netlab.Topology
	Vars map[string]string // placeholder values, see Vars

	cfg *Config
	log *slog.Logger

	mu        sync.Mutex
	online    *role      // recorder on the online ports
	target    *role      // recorder on the target ports, or behind front
	front     *role      // nginx on the target ports, in front of target; nil without
	tls       *role      // nginx terminating TLS in front of online; nil without
	tlsCA     string     // the CA file the load trusts, with tls
	tlsRep    *TLSReport // the TLS set-up, for the report
	intercept *role
	tcpcopies []*role
	server    ServerReport // the target server, for the report
}

// role is one program of the lab and its successive instances: usage is
// summed over them, exit problems are kept.
type role struct {
	name string // for messages
	ns   string
	bin  string
	args []string
	env  []string // nil: plain Start

	cur     *netlab.Proc
	starts  int
	used    netlab.Usage // of stopped instances; PeakRSS is the highest
	exits   []string
	lastErr string // stderr path of the last instance
}

func (r *role) start(topo *netlab.Topology) (*netlab.Proc, error) {
	if r.cur != nil && r.cur.Running() {
		return nil, fmt.Errorf("%s is already running", r.name)
	}
	var p *netlab.Proc
	var err error
	if r.env != nil {
		p, err = topo.StartEnv(r.ns, r.env, r.bin, r.args...)
	} else {
		p, err = topo.Start(r.ns, r.bin, r.args...)
	}
	if err != nil {
		return nil, err
	}
	r.cur = p
	r.starts++
	r.lastErr = p.StderrPath
	return p, nil
}

// stop stops the current instance, measured: its CPU time and peak RSS are
// added to the role, and an exit it did not owe to the stop is kept.
func (r *role) stop() error { return r.stopWith(syscall.SIGTERM) }

// stopWith is stop with SIGKILL as the first signal when sig is SIGKILL.
func (r *role) stopWith(sig syscall.Signal) error {
	p := r.cur
	if p == nil {
		return nil
	}
	r.cur = nil
	died := !p.Running()
	_, _ = p.Sample()
	if sig == syscall.SIGKILL && !died {
		_ = p.Signal(syscall.SIGKILL)
	}
	err := p.Stop()
	u := p.Usage()
	r.used.User += u.User
	r.used.System += u.System
	r.used.PeakRSS = max(r.used.PeakRSS, u.PeakRSS)
	switch {
	case died && err != nil:
		r.exits = append(r.exits, "exited before being stopped: "+err.Error())
	case died:
		r.exits = append(r.exits, "exited before being stopped (status 0)")
	case err != nil:
		r.exits = append(r.exits, err.Error())
	}
	return err
}

// report stops the current instance and describes the role; nil for nil.
func (r *role) report() *ProcReport {
	if r == nil {
		return nil
	}
	_ = r.stop()
	rep := &ProcReport{
		Bin: r.bin, Args: r.args, Stderr: r.lastErr,
		User: r.used.User, System: r.used.System, PeakRSS: r.used.PeakRSS,
		CPUSeconds: r.used.CPU().Seconds(), Restarts: max(r.starts-1, 0),
	}
	if len(r.exits) > 0 {
		rep.Exit = r.exits[0]
		if len(r.exits) > 1 {
			rep.Exit += fmt.Sprintf(" (and %d more)", len(r.exits)-1)
		}
	}
	return rep
}

// StartIntercept starts intercept (again) and waits until it listens.
func (l *Lab) StartIntercept(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.intercept == nil {
		return errors.New("labrun: this run has no intercept")
	}
	l.log.Info("starting intercept", "bin", l.intercept.bin, "args", l.intercept.args)
	p, err := l.intercept.start(l.Topo)
	if err != nil {
		return err
	}
	return waitReady(ctx, l.Topo, p, l.cfg.StartTimeout, listening(InterceptPort))
}

// StopIntercept stops intercept (SIGTERM, then SIGKILL after the grace
// period). tcpcopy loses its links and keeps dialling.
func (l *Lab) StopIntercept() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.intercept == nil {
		return errors.New("labrun: this run has no intercept")
	}
	l.log.Info("stopping intercept")
	return l.intercept.stop()
}

// targetServer is the program on the target ports: nginx when the target
// server has it, the target's recorder otherwise.
func (l *Lab) targetServer() *role {
	if l.front != nil {
		return l.front
	}
	return l.target
}

// StartTarget starts the target's server (again) and waits until it
// listens on every target port: the target's recorder, which appends to
// the same request log, or nginx in front of it (Config.TargetServer).
func (l *Lab) StartTarget(ctx context.Context) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.log.Info("starting the target server")
	p, err := l.targetServer().start(l.Topo)
	if err != nil {
		return err
	}
	for _, port := range l.cfg.TargetPorts {
		if err := waitReady(ctx, l.Topo, p, l.cfg.StartTimeout, listening(port)); err != nil {
			return err
		}
	}
	return nil
}

// StopTarget stops the target's server gracefully (SIGTERM: the
// recorder closes its ports at once, then lets requests in progress
// finish for up to 2 s; nginx shuts down fast): the target's kernel
// answers new copies with RST. nginx's recorder keeps running.
func (l *Lab) StopTarget() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.log.Info("stopping the target server")
	return l.targetServer().stop()
}

// KillTarget kills the target's server (SIGKILL), as a crash would: its
// ports close at once and its connections are reset. The requests the
// recorder had recorded stay in its log (each is written when it
// arrives).
func (l *Lab) KillTarget() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.log.Info("killing the target server")
	return l.targetServer().stopWith(syscall.SIGKILL)
}

// Tcpcopy returns the i-th tcpcopy instance (0 is Config.TcpcopyArgs), nil
// when there is none or it was stopped.
func (l *Lab) Tcpcopy(i int) *netlab.Proc {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i < 0 || i >= len(l.tcpcopies) {
		return nil
	}
	return l.tcpcopies[i].cur
}

// Intercept returns the running intercept, nil when there is none.
func (l *Lab) Intercept() *netlab.Proc {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.intercept == nil {
		return nil
	}
	return l.intercept.cur
}

// WaitLinked waits until every tcpcopy instance holds an established
// connection to intercept's port (the per-process sockets, so two
// instances are told apart), up to Config.StartTimeout.
func (l *Lab) WaitLinked(ctx context.Context) error {
	l.mu.Lock()
	var procs []*netlab.Proc
	for _, r := range l.tcpcopies {
		if r.cur != nil {
			procs = append(procs, r.cur)
		}
	}
	l.mu.Unlock()
	for _, p := range procs {
		if err := waitLinked(ctx, p, l.cfg.StartTimeout); err != nil {
			return err
		}
	}
	return nil
}

// waitLinked waits until p holds an established TCP connection to
// InterceptPort.
func waitLinked(ctx context.Context, p *netlab.Proc, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(20 * time.Millisecond)
	defer t.Stop()
	for {
		if !p.Running() {
			if err := p.Err(); err != nil {
				return err
			}
			return fmt.Errorf("%s exited: %s", filepath.Base(p.Name), p.StderrTail(512))
		}
		socks, err := p.TCPSockets()
		if err == nil {
			for _, s := range socks {
				if s.State == netlab.TCPEstablished && s.Remote.Port() == InterceptPort {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s (pid %d) has no link to intercept: %w", filepath.Base(p.Name), p.Pid, ctx.Err())
		case <-t.C:
		}
	}
}

// scrape reads url from inside the online namespace through Self's scrape
// subcommand (the orchestrator itself is in another namespace).
func (l *Lab) scrape(ctx context.Context, url string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	cmd := l.Topo.Command(ctx, netlab.Online, l.cfg.Self, "scrape", "--url", url)
	cmd.Env = append(os.Environ(), l.cfg.SelfEnv...)
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			err = fmt.Errorf("%w: %s", err, strings.TrimSpace(string(ee.Stderr)))
		}
		return "", fmt.Errorf("scrape %s: %w", url, err)
	}
	return string(out), nil
}

// metricsAddr returns the value of --metrics-addr in args, or "".
func metricsAddr(args []string) string { return flagValue(args, "--metrics-addr") }

// flagValue returns the value of the flag name ("--x") in args, given as
// "--x v" or "--x=v", or "".
func flagValue(args []string, name string) string {
	for i, a := range args {
		if v, ok := cutFlag(a, name); ok {
			return v
		}
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func cutFlag(a, name string) (string, bool) {
	if len(a) > len(name)+1 && a[:len(name)+1] == name+"=" {
		return a[len(name)+1:], true
	}
	return "", false
}

// nthAddr is base with its port raised by i.
func nthAddr(base string, i int) (string, error) {
	ap, err := netip.ParseAddrPort(base)
	if err != nil {
		return "", fmt.Errorf("metrics address %q: %w", base, err)
	}
	port := int(ap.Port()) + i
	if port > 65535 {
		return "", fmt.Errorf("metrics address %q: port out of range for instance %d", base, i)
	}
	return netip.AddrPortFrom(ap.Addr(), uint16(port)).String(), nil
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

// planTarget plans the target's recorder and, for a target server with
// nginx, writes nginx's configuration under the run's directory.
func (l *Lab) planTarget() error {
	cfg := l.cfg
	srv, err := TargetServerByName(cfg.TargetServer)
	if err != nil {
		return err
	}
	l.server = ServerReport{Name: srv.Name, Software: "the target recorder (tcpcopy-lab serve, Go net/http)", Limits: srv.Limits(), Doc: srv.Doc}
	l.target = &role{name: "target server", ns: netlab.Target, bin: cfg.Self, env: cfg.SelfEnv}
	var listen []string
	if srv.Nginx == nil {
		for _, p := range cfg.TargetPorts {
			listen = append(listen, ":"+strconv.Itoa(int(p)))
		}
		l.target.args = append(append(ServeArgs(l.targetLog(), listen...), srv.recorderArgs()...), cfg.TargetDiffer.Args()...)
		return nil
	}
	up := netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), NginxUpstreamPort).String()
	l.target.name = "target recorder"
	l.target.args = append(append(ServeArgs(l.targetLog(), up), srv.recorderArgs()...), cfg.TargetDiffer.Args()...)
	version, err := NginxVersion(cfg.NginxBin)
	if err != nil {
		return err
	}
	args, err := writeNginx(NginxConfig{
		Dir: filepath.Join(l.Topo.Dir, "nginx"), Ports: cfg.TargetPorts, Upstream: up, Limits: *srv.Nginx,
	})
	if err != nil {
		return fmt.Errorf("nginx: %w", err)
	}
	l.front = &role{name: "nginx", ns: netlab.Target, bin: cfg.NginxBin, args: args}
	l.server.Software = "nginx " + version + " in front of the target recorder"
	return nil
}

// appAddr is the application's address behind a TLS terminator: the online
// recorder on online's loopback.
var appAddr = netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), AppPort)

// planTLS makes the run's certificates and writes the TLS terminator's
// configuration under the run's directory, for a run with one.
func (l *Lab) planTLS() error {
	cfg, t := l.cfg, l.Topo
	if cfg.TLSTerminator == "" {
		return nil
	}
	term, err := TLSTerminatorByName(cfg.TLSTerminator)
	if err != nil {
		return err
	}
	version, err := NginxVersion(cfg.NginxBin)
	if err != nil {
		return err
	}
	_, h2, err := NginxModules(cfg.NginxBin)
	if err != nil {
		return err
	}
	dir := filepath.Join(t.Dir, "tls")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	files, err := labtls.Write(dir, []string{t.Online.ClientV4.String(), t.Online.ClientV6.String()})
	if err != nil {
		return err
	}
	nc := TLSNginxConfig{
		Dir: filepath.Join(dir, "nginx"), Cert: files.Cert, Key: files.Key, Upstream: appAddr,
		Listen:            []netip.AddrPort{netip.AddrPortFrom(t.Online.ClientV4, TLSPort), netip.AddrPortFrom(t.Online.ClientV6, TLSPort)},
		UpstreamKeepalive: term.UpstreamKeepalive, HTTP2: h2,
	}
	args, err := writeTLSNginx(nc)
	if err != nil {
		return fmt.Errorf("TLS nginx: %w", err)
	}
	l.tls = &role{name: "TLS terminator", ns: netlab.Online, bin: cfg.NginxBin, args: args}
	l.tlsCA = files.CA
	l.tlsRep = &TLSReport{Name: term.Name, Software: "nginx " + version, Upstream: appAddr.String(),
		How: term.Upstream(), HTTP2: h2, Doc: term.Doc}
	for _, a := range nc.Listen {
		l.tlsRep.Listen = append(l.tlsRep.Listen, a.String())
	}
	return nil
}

// startTLS waits until the application (the online recorder, app) listens,
// then starts the TLS terminator and waits until it listens on every
// address.
func (l *Lab) startTLS(ctx context.Context, app *netlab.Proc) error {
	if err := waitReady(ctx, l.Topo, app, l.cfg.StartTimeout, listeningOn(appAddr.Addr(), appAddr.Port())); err != nil {
		return fmt.Errorf("online recorder: %w", err)
	}
	l.mu.Lock()
	p, err := l.tls.start(l.Topo)
	l.mu.Unlock()
	if err != nil {
		return fmt.Errorf("TLS terminator: %w", err)
	}
	for _, a := range []netip.Addr{l.Topo.Online.ClientV4, l.Topo.Online.ClientV6} {
		if err := waitReady(ctx, l.Topo, p, l.cfg.StartTimeout, listeningOn(a, TLSPort)); err != nil {
			return fmt.Errorf("TLS terminator: %w", err)
		}
	}
	return nil
}

// stopTLS stops the TLS terminator (SIGTERM: nginx's fast shutdown, which
// closes its connections to the application).
func (l *Lab) stopTLS() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.tls.stop()
}
