// Package mysqllab runs a MySQL copy in the namespace lab: a MariaDB server
// on the online host and one on the target (Debian's mariadb-server, each
// with its own data directory, socket and pid file under the run's
// directory, killed by pid at the end), intercept on the assistant, the
// real tcpcopy with --protocol mysql on the online host, and the MySQL load
// client (package mysqlload, go-sql-driver/mysql) in the client namespace,
// started before tcpcopy so that its pooled connections are joined
// mid-way. It then compares the two servers' general logs (every
// statement with a lab marker the online server ran must reach the target,
// or, with ReadOnly, only the reads) and their tables, and reads tcpcopy's
// MySQL metrics, the response comparison's verdicts and its diff log. With
// Config.TargetDiffers the target's reference tables differ on purpose.
//
// With Config.Pcap the client side is recorded with tcpdump (both
// directions), and with Config.Offline a recording is replayed by tcpcopy
// -i FILE against a fresh target instead of running the load.
package mysqllab

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labrun"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/mysqlload"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/netlab"
)

// Lab addresses and ports.
const (
	Port        = 3306
	metricsAddr = "127.0.0.1:9180"
	user        = "app"
	password    = "lab-secret"
	database    = "shop"
)

// Config is one run.
type Config struct {
	TcpcopyBin, InterceptBin string
	// Self implements the mysql-load and scrape subcommands (the running
	// executable by default).
	Self string
	// Dir keeps the logs; a temporary directory when empty.
	Dir string
	// ReadOnly runs tcpcopy with --mysql-read-only.
	ReadOnly bool
	// Pool and Rounds size the load (mysqlload.Options): 4 and 10 by
	// default.
	Pool, Rounds int
	// Pcap records the client side of a live run into this file.
	Pcap string
	// Offline replays this recording instead of running a load: only the
	// target's server runs, and the online server's log comes from
	// OnlineLog (the live run's).
	Offline, OnlineLog string
	// TcpcopyArgs are added to tcpcopy's command line.
	TcpcopyArgs []string
	// TargetDiffers makes the target's reference tables differ from the
	// online server's (a row changed, a row added, a table missing), so
	// that the load's probes (mysqlload.Probes) get other answers.
	TargetDiffers bool
}

// Report is what a run found.
type Report struct {
	Dir string `json:"dir"`
	// Load is the load client's report (live runs).
	Load mysqlload.Report `json:"load"`
	// OnlineStatements and TargetStatements are the statements with a lab
	// marker each general log holds (Query, Prepare, Execute lines).
	OnlineStatements, TargetStatements int
	// Missing are online statements the target did not get (at most 20
	// shown), Unexpected target statements the online server did not run
	// (or, read-only, writes).
	Missing, Unexpected   []string
	MissingN, UnexpectedN int
	// Expected is what the target should have run: every marked statement,
	// or with ReadOnly the reads.
	Expected int
	// OnlineTable and TargetTable are shop.items at the end, one row per
	// line.
	OnlineTable, TargetTable string
	// Metrics are tcpcopy's tcpcopy_mysql_* and session outcome samples.
	Metrics map[string]float64
	// TcpcopyExit is tcpcopy's exit, empty if it ran until stopped (or,
	// offline, exited 0).
	TcpcopyExit string
	// Diffs are the lines of tcpcopy's diff log (--diff-log): the answers
	// that differ or are missing.
	Diffs []Diff
}

// Diff is a line of the diff log, in part.
type Diff struct {
	Verdict string `json:"verdict"`
	Kind    string `json:"kind"`
	Request string `json:"request"`
	Online  struct {
		MySQL struct {
			Summary string `json:"summary"`
		} `json:"mysql"`
	} `json:"online"`
	Target struct {
		MySQL struct {
			Summary string `json:"summary"`
		} `json:"mysql"`
	} `json:"target_response"`
}

// Run runs the experiment and tears everything down.
func Run(ctx context.Context, cfg Config, log *slog.Logger) (*Report, error) {
	if cfg.Self == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cfg.Self = exe
	}
	if cfg.Pool <= 0 {
		cfg.Pool = 4
	}
	if cfg.Rounds <= 0 {
		cfg.Rounds = 10
	}
	if cfg.Dir == "" {
		d, err := os.MkdirTemp("", "tcg-mysql-")
		if err != nil {
			return nil, err
		}
		cfg.Dir = d
	}
	if _, err := exec.LookPath("mariadbd"); err != nil {
		return nil, fmt.Errorf("%w: mariadbd is not installed (scripts/deps.sh installs mariadb-server)", labrun.ErrSetup)
	}
	topo, err := netlab.New(ctx, netlab.Options{GRO: true, Dir: cfg.Dir})
	if err != nil {
		return nil, fmt.Errorf("%w: %w", labrun.ErrSetup, err)
	}
	defer topo.Close()
	rep := &Report{Dir: cfg.Dir}
	var online *server
	if cfg.Offline == "" {
		if online, err = startServer(ctx, topo, netlab.Online, topo.Online.ClientV4.String(), cfg.Dir); err != nil {
			return nil, err
		}
		defer online.stop()
	}
	target, err := startServer(ctx, topo, netlab.Target, topo.Target.OnlineV4.String(), cfg.Dir)
	if err != nil {
		return nil, err
	}
	defer target.stop()
	if cfg.TargetDiffers {
		q := "UPDATE " + database + ".ref SET note = 'TWO' WHERE id = 2; INSERT INTO " + database + ".ref VALUES (4, 'four', 0);" +
			"DROP TABLE " + database + ".gone;"
		if out, err := target.sql(ctx, q); err != nil {
			return nil, fmt.Errorf("%w: the target's differences: %w: %s", labrun.ErrSetup, err, tail(out))
		}
	}

	env := []string{labrun.ChildEnv + "=1"}
	files := func(n string) string { return filepath.Join(cfg.Dir, n) }
	var loader *netlab.Proc
	if online != nil {
		loader, err = topo.StartEnv(netlab.Client, env, cfg.Self, "mysql-load",
			"--addr", fmt.Sprintf("%s:%d", topo.Online.ClientV4, Port), "--user", user, "--password", password,
			"--db", database, "--pool", strconv.Itoa(cfg.Pool), "--rounds", strconv.Itoa(cfg.Rounds),
			"--ready", files("load.ready"), "--go", files("load.go"), "--report", files("load.json"))
		if err != nil {
			return nil, fmt.Errorf("%w: %w", labrun.ErrSetup, err)
		}
		defer loader.Stop()
		if err := waitFile(ctx, files("load.ready"), loader, 20*time.Second); err != nil {
			return nil, fmt.Errorf("%w: the load client did not log in: %w", labrun.ErrSetup, err)
		}
	}
	icpt, err := topo.Start(netlab.Assistant, cfg.InterceptBin, "-i", topo.Assistant.TargetIf,
		"-F", fmt.Sprintf("tcp and src port %d", Port), "-b", topo.Assistant.OnlineV4.String())
	if err != nil {
		return nil, fmt.Errorf("%w: %w", labrun.ErrSetup, err)
	}
	defer icpt.Stop()
	if err := topo.WaitListening(ctx, netlab.Assistant, labrun.InterceptPort); err != nil {
		return nil, fmt.Errorf("%w: intercept: %w", labrun.ErrSetup, err)
	}
	usersFile := files("mysql-users")
	if err := os.WriteFile(usersFile, []byte("# lab\n"+user+":"+password+"\n"), 0o600); err != nil {
		return nil, err
	}
	args := []string{"-x", fmt.Sprintf("%s:%d-%s:%d", topo.Online.ClientV4, Port, topo.Target.OnlineV4, Port), "-s", topo.Assistant.OnlineV4.String(),
		"--protocol", "mysql", "--mysql-users", usersFile, "--metrics-addr", metricsAddr, "--stats-interval", "1s",
		// The pool logged in before tcpcopy started: its connections are
		// joined with this login.
		"--mysql-default-user", user, "--mysql-default-db", database,
		// The response comparison (on by default) writes what differs.
		"--diff-log", files("diff.jsonl")}
	if cfg.ReadOnly {
		args = append(args, "--mysql-read-only")
	}
	if cfg.Offline != "" {
		args = append(args, "-i", cfg.Offline)
	} else {
		args = append(args, "-i", topo.Online.ClientIf)
	}
	args = append(args, cfg.TcpcopyArgs...)
	var pcap *pcapRec
	if cfg.Pcap != "" {
		if pcap, err = recordPcap(ctx, topo, cfg.Pcap); err != nil {
			return nil, fmt.Errorf("%w: tcpdump: %w", labrun.ErrSetup, err)
		}
		defer pcap.stop()
	}
	tc, err := topo.Start(netlab.Online, cfg.TcpcopyBin, args...)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", labrun.ErrSetup, err)
	}
	defer tc.Stop()
	if err := waitLinked(ctx, tc); err != nil {
		return nil, fmt.Errorf("%w: %w", labrun.ErrSetup, err)
	}
	if loader != nil {
		if err := os.WriteFile(files("load.go"), nil, 0o644); err != nil {
			return nil, err
		}
		select {
		case <-loader.Done():
		case <-ctx.Done():
			return nil, ctx.Err()
		}
		if err := loader.Err(); err != nil {
			return nil, fmt.Errorf("load client: %w: %s", err, loader.StderrTail(2048))
		}
		b, err := os.ReadFile(files("load.json"))
		if err != nil {
			return nil, err
		}
		if err := json.Unmarshal(b, &rep.Load); err != nil {
			return nil, err
		}
	}
	onlineLog := cfg.OnlineLog
	if online != nil {
		onlineLog = online.general
	}
	onl, err := readStatements(onlineLog)
	if err != nil {
		return nil, err
	}
	want := onl
	if cfg.ReadOnly {
		want = nil
		for _, s := range onl {
			if isRead(s) {
				want = append(want, s)
			}
		}
	}
	rep.Expected = len(want)
	// The tail: wait until the target ran what it should, or nothing more
	// comes for 3 s (an offline replay ends by itself).
	var tgt []string
	last, lastN := time.Now(), -1
	for {
		if tgt, err = readStatements(target.general); err != nil {
			return nil, err
		}
		if len(tgt) != lastN {
			last, lastN = time.Now(), len(tgt)
		}
		if len(tgt) >= len(want) || time.Since(last) > 3*time.Second || cfg.Offline != "" && !tc.Running() && time.Since(last) > time.Second {
			break
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if cfg.Offline != "" {
		select {
		case <-tc.Done():
		case <-time.After(30 * time.Second):
		}
		if err := tc.Err(); err != nil {
			rep.TcpcopyExit = err.Error() + ": " + tc.StderrTail(1024)
		}
	} else {
		if !tc.Running() {
			rep.TcpcopyExit = fmt.Sprint(tc.Err()) + ": " + tc.StderrTail(1024)
		}
		// The sessions end as the client closed its connections; then
		// the comparison's last verdicts are in (published with the
		// sessions, twice a second).
		time.Sleep(time.Second)
		rep.Metrics = scrape(ctx, topo, cfg.Self)
		for end := time.Now().Add(10 * time.Second); rep.Metrics["tcpcopy_sessions_active"] > 0 && time.Now().Before(end); {
			time.Sleep(250 * time.Millisecond)
			rep.Metrics = scrape(ctx, topo, cfg.Self)
		}
		if pcap != nil {
			pcap.stop()
		}
		_ = tc.Stop() // flushes the diff log
	}
	if rep.Diffs, err = readDiffs(files("diff.jsonl")); err != nil {
		return nil, err
	}
	rep.OnlineStatements, rep.TargetStatements = len(onl), len(tgt)
	rep.MissingN, rep.Missing = diff(want, tgt)
	rep.UnexpectedN, rep.Unexpected = diff(tgt, want)
	if online != nil {
		rep.OnlineTable = online.table(ctx)
	}
	rep.TargetTable = target.table(ctx)
	if log != nil {
		log.Info("mysql lab run", "dir", cfg.Dir, "online_statements", len(onl), "target_statements", len(tgt),
			"missing", rep.MissingN, "unexpected", rep.UnexpectedN)
	}
	return rep, nil
}

// isRead reports a SELECT (the marker comes first).
func isRead(stmt string) bool {
	_, s, _ := strings.Cut(stmt, "*/ ")
	return strings.HasPrefix(strings.ToUpper(s), "SELECT")
}

// diff returns how many of a are not in b (as a multiset), and the first 20.
func diff(a, b []string) (int, []string) {
	left := map[string]int{}
	for _, s := range b {
		left[s]++
	}
	var out []string
	n := 0
	for _, s := range a {
		if left[s] > 0 {
			left[s]--
			continue
		}
		n++
		if len(out) < 20 {
			out = append(out, s)
		}
	}
	return n, out
}

// readStatements returns the statements with a lab marker in a general
// log, as "Command<TAB>text".
func readStatements(path string) ([]string, error) {
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, nil
		}
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if !strings.Contains(line, "/* lab:") {
			continue
		}
		fields := strings.Split(line, "\t")
		if len(fields) < 2 {
			continue
		}
		cmd := strings.Fields(fields[len(fields)-2])
		if len(cmd) == 0 {
			continue
		}
		switch c := cmd[len(cmd)-1]; c {
		case "Query", "Prepare", "Execute":
			out = append(out, c+"\t"+fields[len(fields)-1])
		}
	}
	return out, sc.Err()
}

// server is one MariaDB server of the lab.
type server struct {
	proc    *netlab.Proc
	dir     string
	sock    string
	general string
}

// startServer makes a data directory, starts mariadbd in namespace ns on
// addr:3306 with its general log on, and creates the lab's user, database
// and table.
func startServer(ctx context.Context, topo *netlab.Topology, ns, addr, dir string) (*server, error) {
	s := &server{dir: filepath.Join(dir, "mariadb-"+ns)}
	s.sock = filepath.Join(s.dir, "mysqld.sock")
	s.general = filepath.Join(s.dir, "general.log")
	data := filepath.Join(s.dir, "data")
	if err := os.MkdirAll(s.dir, 0o755); err != nil {
		return nil, err
	}
	inst := exec.CommandContext(ctx, "mariadb-install-db", "--no-defaults", "--datadir="+data, "--user=root",
		"--auth-root-authentication-method=normal", "--skip-test-db", "--innodb-log-file-size=4M", "--innodb-buffer-pool-size=16M")
	if out, err := inst.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("%w: mariadb-install-db: %w: %s", labrun.ErrSetup, err, tail(out))
	}
	p, err := topo.Start(ns, "mariadbd", "--no-defaults", "--datadir="+data, "--socket="+s.sock,
		"--pid-file="+filepath.Join(s.dir, "mysqld.pid"), "--user=root", "--bind-address="+addr, "--port="+strconv.Itoa(Port),
		"--skip-log-bin", "--general-log=1", "--general-log-file="+s.general, "--innodb-buffer-pool-size=16M",
		"--innodb-log-file-size=4M", "--skip-name-resolve", "--log-error="+filepath.Join(s.dir, "error.log"),
		"--max-connections=64", "--performance-schema=0")
	if err != nil {
		return nil, fmt.Errorf("%w: mariadbd: %w", labrun.ErrSetup, err)
	}
	s.proc = p
	wctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := topo.WaitListening(wctx, ns, Port); err != nil {
		s.stop()
		return nil, fmt.Errorf("%w: mariadbd in %s: %w: %s", labrun.ErrSetup, ns, err, p.StderrTail(1024))
	}
	setup := fmt.Sprintf("CREATE DATABASE %s; CREATE TABLE %s.items (id INT PRIMARY KEY, name VARCHAR(64), qty INT);"+
		// The reference tables of the load's probes.
		"CREATE TABLE shop.ref (id INT PRIMARY KEY, note VARCHAR(16), hits INT);"+
		"INSERT INTO shop.ref VALUES (1, 'one', 0), (2, 'two', 0), (3, 'three', 0);"+
		"CREATE TABLE shop.gone (id INT); INSERT INTO shop.gone VALUES (1);"+
		"CREATE USER '%s'@'%%' IDENTIFIED BY '%s'; GRANT ALL ON %s.* TO '%s'@'%%';", database, database, user, password, database, user)
	if out, err := s.sql(ctx, setup); err != nil {
		s.stop()
		return nil, fmt.Errorf("%w: %s setup: %w: %s", labrun.ErrSetup, ns, err, tail(out))
	}
	return s, nil
}

// sql runs statements as root through the server's socket.
func (s *server) sql(ctx context.Context, q string) ([]byte, error) {
	return exec.CommandContext(ctx, "mariadb", "--no-defaults", "-S", s.sock, "-uroot", "-N", "-B", "-e", q).CombinedOutput()
}

// table returns shop.items, one row per line.
func (s *server) table(ctx context.Context) string {
	out, err := s.sql(ctx, "SELECT id, name, qty FROM "+database+".items ORDER BY id")
	if err != nil {
		return "error: " + err.Error()
	}
	return string(out)
}

// stop kills the server by its pid and waits for it.
func (s *server) stop() {
	if s.proc != nil {
		_ = s.proc.Stop()
	}
}

func tail(b []byte) string {
	if len(b) > 512 {
		b = b[len(b)-512:]
	}
	return string(bytes.TrimSpace(b))
}

// waitFile waits until path exists, p is running, or timeout.
func waitFile(ctx context.Context, path string, p *netlab.Proc, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	for {
		if _, err := os.Stat(path); err == nil {
			return nil
		}
		if !p.Running() {
			return fmt.Errorf("%v: %s", p.Err(), p.StderrTail(2048))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// waitLinked waits until tcpcopy holds a connection to intercept.
func waitLinked(ctx context.Context, p *netlab.Proc) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for {
		if !p.Running() {
			return fmt.Errorf("tcpcopy exited: %s", p.StderrTail(1024))
		}
		if socks, err := p.TCPSockets(); err == nil {
			for _, s := range socks {
				if s.State == netlab.TCPEstablished && s.Remote.Port() == labrun.InterceptPort {
					return nil
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tcpcopy has no link to intercept: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// readDiffs reads a diff log; a missing file has no lines.
func readDiffs(path string) ([]Diff, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ds []Diff
	for _, line := range bytes.Split(bytes.TrimSpace(b), []byte("\n")) {
		if len(line) == 0 {
			continue
		}
		var d Diff
		if err := json.Unmarshal(line, &d); err != nil {
			return nil, fmt.Errorf("diff log: %w", err)
		}
		ds = append(ds, d)
	}
	return ds, nil
}

// scrape reads tcpcopy's metrics inside the online namespace: the
// tcpcopy_mysql_* samples, the session outcomes and the comparison's
// verdicts.
func scrape(ctx context.Context, topo *netlab.Topology, self string) map[string]float64 {
	cmd := topo.Command(ctx, netlab.Online, self, "scrape", "--url", "http://"+metricsAddr+"/metrics")
	cmd.Env = append(os.Environ(), labrun.ChildEnv+"=1")
	out, err := cmd.Output()
	m := map[string]float64{}
	if err != nil {
		m["scrape_failed"] = 1
		return m
	}
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "tcpcopy_mysql_") && !strings.HasPrefix(line, "tcpcopy_sessions_closed_total") &&
			!strings.HasPrefix(line, "tcpcopy_sessions_active") && !strings.HasPrefix(line, "tcpcopy_responses_") &&
			!strings.HasPrefix(line, "tcpcopy_response_differences_total") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err == nil && v != 0 {
			m[line[:i]] = v
		}
	}
	return m
}

// pcapRec is tcpdump recording the client side (both directions, whole
// packets, written out at once) in the online namespace.
type pcapRec struct {
	p    *netlab.Proc
	done bool
}

func recordPcap(ctx context.Context, topo *netlab.Topology, file string) (*pcapRec, error) {
	p, err := topo.Start(netlab.Online, "tcpdump", "-Z", "root", "-i", netlab.IfToClient, "-s", "0", "-U",
		"--immediate-mode", "-B", "32768", "-w", file, "tcp", "port", strconv.Itoa(Port))
	if err != nil {
		return nil, err
	}
	r := &pcapRec{p: p}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	for !strings.Contains(p.StderrTail(4096), "listening on") {
		if !p.Running() {
			return nil, fmt.Errorf("tcpdump exited: %s", p.StderrTail(1024))
		}
		select {
		case <-ctx.Done():
			r.stop()
			return nil, errors.New("tcpdump did not start listening")
		case <-time.After(20 * time.Millisecond):
		}
	}
	return r, nil
}

func (r *pcapRec) stop() {
	if !r.done {
		r.done = true
		_ = r.p.Stop()
	}
}

// WriteText writes the report for people.
func (r *Report) WriteText(w io.Writer) {
	fmt.Fprintf(w, "mysql lab: logs in %s\n", r.Dir)
	if r.Load.Markers > 0 {
		fmt.Fprintf(w, "load       %d pooled connections logged in before tcpcopy, %d fresh; %d statements (%d queries, %d prepares, %d executes; %d writes, %d reads), %d errors, %d ms\n",
			r.Load.Pooled, r.Load.FreshConns, r.Load.Markers, r.Load.Queries, r.Load.Prepares, r.Load.Executes, r.Load.Writes, r.Load.Reads, r.Load.Errors, r.Load.Elapsed)
	}
	fmt.Fprintf(w, "general    online %d marked statements, target %d (expected %d): %d missing, %d unexpected\n",
		r.OnlineStatements, r.TargetStatements, r.Expected, r.MissingN, r.UnexpectedN)
	for _, s := range r.Missing {
		fmt.Fprintf(w, "  missing    %s\n", s)
	}
	for _, s := range r.Unexpected {
		fmt.Fprintf(w, "  unexpected %s\n", s)
	}
	same := "the same"
	if r.OnlineTable != r.TargetTable {
		same = "different"
	}
	fmt.Fprintf(w, "tables     online %d rows, target %d rows: %s\n", strings.Count(r.OnlineTable, "\n"), strings.Count(r.TargetTable, "\n"), same)
	keys := make([]string, 0, len(r.Metrics))
	for k := range r.Metrics {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "metric     %s %g\n", k, r.Metrics[k])
	}
	for _, d := range r.Diffs {
		fmt.Fprintf(w, "diff       %s %s %q: %s -> %s\n", d.Verdict, d.Kind, d.Request, d.Online.MySQL.Summary, d.Target.MySQL.Summary)
	}
	if r.TcpcopyExit != "" {
		fmt.Fprintf(w, "problem    tcpcopy exited: %s\n", r.TcpcopyExit)
	}
}
