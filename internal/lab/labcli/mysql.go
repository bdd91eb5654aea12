package labcli

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/urfave/cli/v3"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/mysqllab"
	"github.com/tcpcopy-go/tcpcopy/internal/lab/mysqlload"
)

// mysqlFlags are run's flags for a MySQL copy (run --mysql).
func mysqlFlags() []cli.Flag {
	return []cli.Flag{
		&cli.BoolFlag{Name: "mysql", Usage: "copy MySQL instead of HTTP: MariaDB on online and target, tcpcopy --protocol mysql, a go-sql-driver client whose pooled connections log in before tcpcopy starts (docs/mysql.md); uses --tcpcopy-bin, --intercept-bin, --demo, --dir, --pcap"},
		&cli.BoolFlag{Name: "mysql-read-only", Usage: "with --mysql: tcpcopy --mysql-read-only (only reads reach the target)"},
		&cli.IntFlag{Name: "mysql-rounds", Value: 10, Usage: "with --mysql: rounds of the workload on the pooled and on fresh connections"},
	}
}

// runMySQL is run --mysql: one MySQL copy with a report. It fails (exit
// status 3) when a statement the target should have got is missing, or
// the target ran one it should not have.
func runMySQL(ctx context.Context, cmd *cli.Command) error {
	log := newLogger(cmd)
	cfg := mysqllab.Config{
		TcpcopyBin: cmd.String("tcpcopy-bin"), InterceptBin: cmd.String("intercept-bin"),
		Dir: cmd.String("dir"), ReadOnly: cmd.Bool("mysql-read-only"), Rounds: int(cmd.Int("mysql-rounds")),
		Pcap: cmd.String("pcap"),
	}
	if cmd.Bool("demo") {
		exe, err := os.Executable()
		if err != nil {
			return &exitError{ExitSetup, err}
		}
		dir := filepath.Dir(exe)
		if cfg.TcpcopyBin == "" {
			cfg.TcpcopyBin = filepath.Join(dir, "tcpcopy")
		}
		if cfg.InterceptBin == "" {
			cfg.InterceptBin = filepath.Join(dir, "intercept")
		}
	}
	if cfg.TcpcopyBin == "" || cfg.InterceptBin == "" {
		return &exitError{ExitSetup, errMySQLBins}
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	rep, err := mysqllab.Run(ctx, cfg, log)
	if err != nil {
		return &exitError{ExitSetup, err}
	}
	rep.WriteText(cmd.Root().Writer)
	if rep.MissingN > 0 || rep.UnexpectedN > 0 || rep.TcpcopyExit != "" {
		return &exitError{ExitLowFidelity, errMySQLDiffers}
	}
	return nil
}

type labError string

func (e labError) Error() string { return string(e) }

const (
	errMySQLBins    = labError("--mysql needs --tcpcopy-bin and --intercept-bin (or --demo)")
	errMySQLDiffers = labError("the target did not run exactly the statements it should have")
)

// mysqlLoadCommand is the MySQL load client (package mysqlload), run by
// the MySQL lab in the client namespace.
func mysqlLoadCommand() *cli.Command {
	return &cli.Command{
		Name:  "mysql-load",
		Usage: "run the MySQL load client (inside the client namespace; run --mysql starts it)",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "addr", Required: true, Usage: "the online server, host:port"},
			&cli.StringFlag{Name: "user", Required: true},
			&cli.StringFlag{Name: "password"},
			&cli.StringFlag{Name: "db", Required: true},
			&cli.IntFlag{Name: "pool", Value: 4, Usage: "pooled connections logged in before the go file"},
			&cli.IntFlag{Name: "rounds", Value: 10},
			&cli.StringFlag{Name: "ready", Required: true, Usage: "file written when the pool is logged in"},
			&cli.StringFlag{Name: "go", Required: true, Usage: "the workload starts when this file exists"},
			&cli.StringFlag{Name: "report", Required: true, Usage: "JSON report of the workload"},
			&cli.DurationFlag{Name: "timeout", Value: 90 * time.Second},
		},
		Action: func(ctx context.Context, cmd *cli.Command) error {
			err := mysqlload.Run(ctx, mysqlload.Options{
				Addr: cmd.String("addr"), User: cmd.String("user"), Password: cmd.String("password"), DB: cmd.String("db"),
				Pool: int(cmd.Int("pool")), Rounds: int(cmd.Int("rounds")), ReadyFile: cmd.String("ready"),
				GoFile: cmd.String("go"), Report: cmd.String("report"), Timeout: cmd.Duration("timeout"),
			})
			if err != nil {
				return &exitError{ExitFailure, err}
			}
			return nil
		},
	}
}
