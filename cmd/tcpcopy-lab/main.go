// Command tcpcopy-lab is the namespace lab of tcpcopy-go: a recording HTTP
// server (serve), a bounded load client (load), and an orchestrator (run)
// that builds the four-namespace TCPCopy topology, runs tcpcopy and
// intercept in it when given, and reports the copy fidelity and their CPU
// and memory use. Needs root.
//
//	tcpcopy-lab run --rate 100 --duration 5s \
//	    --tcpcopy-bin bin/tcpcopy --intercept-bin bin/intercept
//
// The command line lives in internal/lab/labcli; this file only wires
// signals: the first SIGINT or SIGTERM cancels the run, which then stops its
// processes and deletes its namespaces; a second one kills at once
// (tcpcopy-lab cleanup, or the next run, removes what is left).
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/labcli"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	go func() {
		<-ctx.Done()
		stop() // the next signal gets the default action
	}()
	code := labcli.Main(ctx, os.Args, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
