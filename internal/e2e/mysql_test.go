package e2e

// MySQL copies with real MariaDB servers (Debian's mariadb-server, one on
// online and one on the target, each with its own data directory, started
// and killed by the lab) and a real client (go-sql-driver/mysql), through
// the real tcpcopy --protocol mysql and intercept (package mysqllab). The
// client's pool logs in before tcpcopy starts, so its connections are
// joined mid-way; a second pool logs in while tcpcopy runs, so its login is
// redone. Statements are counted in both servers' general logs, and
// tcpcopy's response comparison pairs the two servers' answers (its
// metrics and diff log).

import (
	"context"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/mysqllab"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/mysqlload"
	"github.com/tcpcopy-go/tcpcopy/internal/testbin"
)

func needMariaDB(t *testing.T) {
	t.Helper()
	needRoot(t)
	for _, p := range []string{"mariadbd", "mariadb-install-db", "mariadb", "tcpdump"} {
		if _, err := exec.LookPath(p); err != nil {
			t.Skipf("%s is not installed (scripts/deps.sh installs it)", p)
		}
	}
}

func mysqlRun(t *testing.T, cfg mysqllab.Config) *mysqllab.Report {
	t.Helper()
	cfg.TcpcopyBin = testbin.Build(t, "tcpcopy")
	cfg.InterceptBin = testbin.Build(t, "intercept")
	if cfg.Dir == "" {
		cfg.Dir = keepDir(t)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	log := slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rep, err := mysqllab.Run(ctx, cfg, log)
	if err != nil {
		t.Fatalf("mysql lab: %v", err)
	}
	var b strings.Builder
	rep.WriteText(&b)
	t.Log(b.String())
	return rep
}

// checkMySQL checks that the target ran exactly the statements it should.
func checkMySQL(t *testing.T, rep *mysqllab.Report) {
	t.Helper()
	if rep.Expected == 0 || rep.MissingN != 0 || rep.UnexpectedN != 0 || rep.TargetStatements != rep.Expected {
		t.Errorf("target ran %d marked statements, want %d: %d missing %v, %d unexpected %v",
			rep.TargetStatements, rep.Expected, rep.MissingN, rep.Missing, rep.UnexpectedN, rep.Unexpected)
	}
	if rep.TcpcopyExit != "" {
		t.Errorf("tcpcopy: %s", rep.TcpcopyExit)
	}
}

// compared returns the comparison's verdicts and not_compared reasons
// from the metrics.
func compared(rep *mysqllab.Report) (verdicts, reasons map[string]float64) {
	verdicts, reasons = map[string]float64{}, map[string]float64{}
	for k, v := range rep.Metrics {
		if r, ok := strings.CutPrefix(k, `tcpcopy_responses_compared_total{verdict="`); ok {
			verdicts[strings.TrimSuffix(r, `"}`)] = v
		}
		if r, ok := strings.CutPrefix(k, `tcpcopy_responses_not_compared_total{reason="`); ok {
			reasons[strings.TrimSuffix(r, `"}`)] = v
		}
	}
	return verdicts, reasons
}

// checkAllSame checks that the target answered every compared command
// like the online server: the load's answers do not depend on the order of
// its connections' statements, and both databases start the same.
func checkAllSame(t *testing.T, rep *mysqllab.Report, notCopied bool) {
	t.Helper()
	v, why := compared(rep)
	if v["same"] < float64(rep.Load.Markers) || v["differs"] != 0 || v["missing"] != 0 || len(rep.Diffs) != 0 {
		t.Errorf("verdicts %v (the load sent %d statements), diffs %+v", v, rep.Load.Markers, rep.Diffs)
	}
	for r, n := range why {
		if r != "not_copied" || !notCopied {
			t.Errorf("%g not compared: %s", n, r)
		}
	}
}

func TestMySQLCopy(t *testing.T) {
	needMariaDB(t)
	rep := mysqlRun(t, mysqllab.Config{})
	checkMySQL(t, rep)
	checkAllSame(t, rep, false)
	if rep.Load.Errors != 0 || rep.Load.Pooled == 0 || rep.Load.FreshConns == 0 {
		t.Errorf("load %+v", rep.Load)
	}
	if rep.OnlineTable != rep.TargetTable || rep.TargetTable == "" {
		t.Errorf("tables differ:\nonline:\n%s\ntarget:\n%s", rep.OnlineTable, rep.TargetTable)
	}
	m := rep.Metrics
	if m[`tcpcopy_mysql_sessions_total{kind="joined"}`] < 1 || m[`tcpcopy_mysql_sessions_total{kind="captured_login"}`] < 1 ||
		m[`tcpcopy_mysql_prepares_mapped_total`] < 1 || m[`tcpcopy_mysql_statement_ids_rewritten_total`] < 1 {
		t.Errorf("metrics: %v", m)
	}
	for k := range m {
		if strings.HasPrefix(k, "tcpcopy_mysql_refused_total") || strings.HasPrefix(k, "tcpcopy_mysql_commands_dropped_total") {
			t.Errorf("%s = %v", k, m[k])
		}
	}
}

func TestMySQLReadOnly(t *testing.T) {
	needMariaDB(t)
	rep := mysqlRun(t, mysqllab.Config{ReadOnly: true})
	checkMySQL(t, rep)
	if rep.TargetTable != "" {
		t.Errorf("the target's table changed:\n%s", rep.TargetTable)
	}
	if rep.Metrics[`tcpcopy_mysql_commands_dropped_total{reason="read_only"}`] < float64(rep.Load.Writes) {
		t.Errorf("read-only drops: %v, the load wrote %d times", rep.Metrics, rep.Load.Writes)
	}
	// The writes' answers have no counterpart. The reads are compared:
	// those of shop.items find none of the rows the writes made online
	// (the SELECTs by id, prepared, and the counts), the probes of the
	// reference tables find the same.
	probeReads := 0
	for _, p := range mysqlload.Probes {
		if !p.Write {
			probeReads++
		}
	}
	v, why := compared(rep)
	if v["same"] < float64(probeReads) || v["differs"] != float64(rep.Load.Reads-probeReads) || v["missing"] != 0 ||
		why["not_copied"] < float64(rep.Load.Writes) || len(why) != 1 {
		t.Errorf("verdicts %v, not compared %v; the load read %d and wrote %d times", v, why, rep.Load.Reads, rep.Load.Writes)
	}
	for _, d := range rep.Diffs {
		if d.Kind != "mysql_rows" && d.Kind != "mysql_checksum" ||
			!strings.Contains(d.Request, "FROM items") && !strings.HasPrefix(d.Request, "COM_STMT_EXECUTE") {
			t.Errorf("diff %+v", d)
		}
	}
}

// TestMySQLCompare runs the load against a target whose reference tables
// differ from the online server's: exactly the probes that read what
// differs are reported, each with its kind of difference.
func TestMySQLCompare(t *testing.T) {
	needMariaDB(t)
	rep := mysqlRun(t, mysqllab.Config{TargetDiffers: true})
	if rep.TcpcopyExit != "" || rep.Load.Errors != 0 {
		t.Errorf("tcpcopy %q, load %+v", rep.TcpcopyExit, rep.Load)
	}
	want := map[string]string{} // SQL -> kind
	for _, p := range mysqlload.Probes {
		if p.Kind != "" {
			want[p.SQL] = p.Kind
		}
	}
	got := map[string]string{}
	for _, d := range rep.Diffs {
		_, sql, _ := strings.Cut(d.Request, "*/ ")
		if d.Verdict != "differs" || want[sql] != d.Kind || got[sql] != "" || d.Online.MySQL.Summary == "" || d.Target.MySQL.Summary == "" {
			t.Errorf("diff %+v", d)
		}
		got[sql] = d.Kind
	}
	if len(got) != len(want) {
		t.Errorf("differences %v, want %v", got, want)
	}
	v, why := compared(rep)
	if v["differs"] != float64(len(want)) || v["missing"] != 0 || len(why) != 0 || v["same"] < float64(rep.Load.Markers-len(want)) ||
		rep.Metrics[`tcpcopy_response_differences_total{kind="mysql_result"}`] != 1 {
		t.Errorf("verdicts %v, not compared %v, metrics %v", v, why, rep.Metrics)
	}
}

// TestMySQLOffline records the live copy's client side with tcpdump and
// replays the recording with tcpcopy -i FILE against a fresh target.
func TestMySQLOffline(t *testing.T) {
	needMariaDB(t)
	dir := t.TempDir()
	pcap := filepath.Join(dir, "mysql.pcap")
	live := mysqlRun(t, mysqllab.Config{Pcap: pcap, Dir: filepath.Join(dir, "live")})
	checkMySQL(t, live)
	rep := mysqlRun(t, mysqllab.Config{Offline: pcap, OnlineLog: filepath.Join(dir, "live", "mariadb-online", "general.log"),
		Dir: filepath.Join(dir, "offline")})
	checkMySQL(t, rep)
	if rep.TargetTable != live.OnlineTable {
		t.Errorf("replayed table:\n%s\nonline:\n%s", rep.TargetTable, live.OnlineTable)
	}
	// The recording holds the online answers: the replay compares with
	// them, and the fresh target answers alike.
	if len(rep.Diffs) != 0 {
		t.Errorf("the replay's answers differ: %+v", rep.Diffs)
	}
}
