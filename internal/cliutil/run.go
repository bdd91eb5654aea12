package cliutil

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/urfave/cli/v3"

	"github.com/tcpcopy-go/tcpcopy/internal/daemon"
	"github.com/tcpcopy-go/tcpcopy/internal/logging"
)

// UsageError is a mistake on the command line: the program prints it as
// one line and exits with status 2.
type UsageError struct{ Err error }

func (e *UsageError) Error() string { return e.Err.Error() }
func (e *UsageError) Unwrap() error { return e.Err }

// Usagef returns a UsageError with a formatted message.
func Usagef(format string, args ...any) error {
	return &UsageError{Err: fmt.Errorf(format, args...)}
}

// Prepare sets cmd up for Run: usage errors become UsageErrors instead of
// a help dump.
func Prepare(cmd *cli.Command) {
	cmd.OnUsageError = func(_ context.Context, _ *cli.Command, err error, _ bool) error {
		return &UsageError{Err: err}
	}
}

// Run runs cmd with args (normalised by the caller) and returns the exit
// status: 0 on success, 2 for a usage error, 1 for any other error. Errors
// are printed to stderr as one line prefixed with the program name (and,
// in the background child of -d, reported to the parent, which prints it
// and exits with the same status).
func Run(ctx context.Context, cmd *cli.Command, args []string, stderr io.Writer) int {
	err := cmd.Run(ctx, args)
	if err == nil {
		return 0
	}
	code, msg := Message(cmd.Name, err)
	fmt.Fprintln(stderr, msg)
	// A background child (-d) tells its parent, which prints it; the
	// child's standard error is /dev/null.
	daemon.ReportExit(code, msg)
	return code
}

// Message returns the exit status for err and the one line that says it:
// 2 and "NAME: ERR (see NAME -h)" for a usage error, the child's status and
// message for a background child that could not start (daemon.ExitError),
// 1 and "NAME: ERR" otherwise. The error is shortened (Shorten).
func Message(name string, err error) (int, string) {
	var ue *UsageError
	if errors.As(err, &ue) {
		return 2, fmt.Sprintf("%s: %s (see %s -h)", name, Shorten(ue.Err.Error()), name)
	}
	var ee *daemon.ExitError
	if errors.As(err, &ee) {
		return ee.Code, ee.Msg
	}
	return 1, fmt.Sprintf("%s: %s", name, Shorten(err.Error()))
}

// DaemonOptions reads the process options both daemons share: -d, -P, -l,
// --log-format, --log-level and --cpu-profile.
func DaemonOptions(c *cli.Command) daemon.Options {
	return daemon.Options{
		Background: c.Bool("d"),
		PIDFile:    c.String("P"),
		Log:        logging.Options{File: c.String("l"), Format: c.String("log-format"), Level: c.String("log-level")},
		CPUProfile: c.String("cpu-profile"),
	}
}

// Exit runs cmd like Run and exits the process with its status.
func Exit(ctx context.Context, cmd *cli.Command, args []string) {
	os.Exit(Run(ctx, cmd, args, os.Stderr))
}
