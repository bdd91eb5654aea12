// Package mysqlload is the MySQL load client of the namespace lab
// (tcpcopy-lab mysql-load, run by package mysqllab inside the client
// namespace): a real client, github.com/go-sql-driver/mysql, that opens a
// pool of connections and logs in before tcpcopy starts (pooled
// connections tcpcopy must join mid-way), waits for a go file, then runs a
// bounded workload on those pooled connections and on fresh ones (logins
// tcpcopy sees): text queries, prepared statements (prepared once and
// executed many times, and prepared per query), reads and writes. Every
// statement carries a marker comment "lab:<n>" so that the servers'
// general logs can be counted, and the workload's counts are written as
// JSON when it ends.
package mysqlload

import (
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	_ "github.com/go-sql-driver/mysql" // the driver
)

// Options is the workload.
type Options struct {
	// DSN of the online server, without database parameters.
	Addr, User, Password, DB string
	// Pool is the number of pooled connections logged in before GoFile
	// appears.
	Pool int
	// Rounds of the workload: shared by the pooled connections (at least
	// one each), and on the fresh connection.
	Rounds int
	// GoFile: the workload starts when this file exists (tcpcopy is up).
	GoFile string
	// ReadyFile is written when the pool is logged in.
	ReadyFile string
	// Report is where the counts go (JSON).
	Report string
	// Timeout bounds the whole run.
	Timeout time.Duration
}

// Probe is a statement run once at the end of the workload on the lab's
// reference tables (shop.ref and shop.gone).
type Probe struct {
	SQL   string
	Write bool
	// Kind is the response comparison's verdict kind when the target's
	// tables differ as mysqllab makes them (Config.TargetDiffers).
	Kind string
}

// Probes are the workload's last statements.
var Probes = []Probe{
	{SQL: "SELECT id, note FROM ref WHERE id = 2", Kind: "mysql_checksum"}, // a changed row
	{SQL: "SELECT id FROM ref WHERE id >= 3", Kind: "mysql_rows"},          // an extra row
	{SQL: "SELECT id FROM gone", Kind: "mysql_result"},                     // a missing table: ERR 1146
	{SQL: "UPDATE ref SET hits = hits + 1 WHERE id >= 3", Write: true, Kind: "mysql_affected_rows"},
	{SQL: "SELECT id, note FROM ref WHERE id = 1"}, // the same on both
}

// Report counts what the workload did after GoFile appeared.
type Report struct {
	Queries    int `json:"queries"`    // text-protocol statements (COM_QUERY)
	Prepares   int `json:"prepares"`   // COM_STMT_PREPARE
	Executes   int `json:"executes"`   // COM_STMT_EXECUTE
	Writes     int `json:"writes"`     // statements that change data (INSERT, UPDATE, DELETE), of either protocol
	Reads      int `json:"reads"`      // SELECTs, of either protocol
	Pooled     int `json:"pooled"`     // connections logged in before the go file
	FreshConns int `json:"fresh"`      // connections opened after it
	Errors     int `json:"errors"`     // statements the online server refused
	Markers    int `json:"markers"`    // statements with a lab marker sent after the go file
	Elapsed    int `json:"elapsed_ms"` // the workload's time
}

// Run runs the workload.
func Run(ctx context.Context, o Options) error {
	ctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	dsn := fmt.Sprintf("%s:%s@tcp(%s)/%s?interpolateParams=false&timeout=5s&readTimeout=10s&writeTimeout=10s",
		o.User, o.Password, o.Addr, o.DB)
	pooled, err := sql.Open("mysql", dsn)
	if err != nil {
		return err
	}
	defer pooled.Close()
	pooled.SetMaxOpenConns(o.Pool)
	pooled.SetMaxIdleConns(o.Pool)
	pooled.SetConnMaxLifetime(0)
	// Log the whole pool in now: tcpcopy will see only their commands.
	conns := make([]*sql.Conn, o.Pool)
	for i := range conns {
		if conns[i], err = pooled.Conn(ctx); err != nil {
			return err
		}
		if _, err := conns[i].ExecContext(ctx, "SET @lab_conn = ?", i); err != nil {
			return err
		}
	}
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if err := os.WriteFile(o.ReadyFile, []byte("ready\n"), 0o644); err != nil {
		return err
	}
	for {
		if _, err := os.Stat(o.GoFile); err == nil {
			break
		}
		select {
		case <-ctx.Done():
			return errors.New("mysql-load: no go file before the timeout")
		case <-time.After(20 * time.Millisecond):
		}
	}
	start := time.Now()
	var rep Report
	rep.Pooled = o.Pool
	n := 0
	marker := func() string { n++; return fmt.Sprintf("/* lab:%d */ ", n) }
	count := func(err error, write bool, prepared bool) {
		rep.Markers++
		if err != nil {
			rep.Errors++
		}
		if write {
			rep.Writes++
		} else {
			rep.Reads++
		}
		if prepared {
			rep.Prepares++
			rep.Executes++
		} else {
			rep.Queries++
		}
	}
	// The pooled connections: statements prepared once, executed many
	// times; statements prepared per query (go-sql-driver prepares,
	// executes and closes when it has arguments); plain queries. Each
	// connection has its own rows (ids from base), reads only them and
	// runs on one connection, so that its answers do not depend on the
	// order in which the target runs the statements of different
	// connections (each copied connection is paced on its own): the
	// target's answers are the online server's.
	work := func(db *sql.Conn, base, rounds int) error {
		ins, err := db.PrepareContext(ctx, marker()+"INSERT INTO items (id, name, qty) VALUES (?, ?, ?)")
		if err != nil {
			return err
		}
		rep.Prepares++
		rep.Markers++
		defer ins.Close()
		for r := range rounds {
			id := base + r
			_, err := ins.ExecContext(ctx, id, fmt.Sprintf("item-%d", id), r)
			rep.Executes++
			rep.Writes++
			if err != nil {
				rep.Errors++
			}
			_, err = db.ExecContext(ctx, marker()+"UPDATE items SET qty = qty + ? WHERE id = ?", 10, id)
			count(err, true, true)
			var name string
			err = db.QueryRowContext(ctx, marker()+"SELECT name FROM items WHERE id = ?", id).Scan(&name)
			count(err, false, true)
			_, err = db.ExecContext(ctx, marker()+fmt.Sprintf("UPDATE items SET qty = qty + 1 WHERE id = %d", id))
			count(err, true, false)
			var c int
			err = db.QueryRowContext(ctx, marker()+fmt.Sprintf("SELECT COUNT(*) FROM items WHERE id BETWEEN %d AND %d", base, base+99)).Scan(&c)
			count(err, false, false)
		}
		_, err = db.ExecContext(ctx, marker()+fmt.Sprintf("DELETE FROM items WHERE id = %d", base))
		count(err, true, false)
		return nil
	}
	rounds := max(1, o.Rounds/len(conns))
	for i, c := range conns {
		if err := work(c, 1000+100*i, rounds); err != nil {
			return fmt.Errorf("pooled connection %d: %w", i, err)
		}
	}
	// A fresh pool: new connections, whose logins tcpcopy captures.
	fresh, err := sql.Open("mysql", dsn)
	if err != nil {
		return err
	}
	fresh.SetMaxOpenConns(2)
	fc, err := fresh.Conn(ctx)
	if err != nil {
		fresh.Close()
		return err
	}
	if err := work(fc, 2000, o.Rounds); err != nil {
		fc.Close()
		fresh.Close()
		return fmt.Errorf("fresh connection: %w", err)
	}
	// The probes: text queries on the lab's reference tables, which a
	// target made to differ (mysqllab Config.TargetDiffers) answers
	// otherwise, each in its own way.
	for _, p := range Probes {
		rows, err := fc.QueryContext(ctx, marker()+p.SQL)
		if err == nil {
			for rows.Next() {
			}
			err = rows.Err()
			rows.Close()
		}
		count(err, p.Write, false)
	}
	st := fresh.Stats()
	rep.FreshConns = st.OpenConnections
	fc.Close()
	fresh.Close()
	rep.Elapsed = int(time.Since(start).Milliseconds())
	b, _ := json.Marshal(rep)
	return os.WriteFile(o.Report, b, 0o644)
}
