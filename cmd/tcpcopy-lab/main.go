// Command tcpcopy-lab is the namespace lab of tcpcopy-go (docs/lab.md): an
// orchestrator (run) that builds the four-namespace TCPCopy topology, runs
// tcpcopy and intercept in it when given, drives a bounded load and reports
// the copy fidelity, how tcpcopy's sessions ended, leaks towards the
// clients, and CPU and memory use; a rate finder (bench); a remover of
// what killed runs left (cleanup); and the programs run inside the
// namespaces: a recording HTTP server (serve), the load client (load), a
// leak watcher (watch) and a metrics reader (scrape). Needs root.
//
//	tcpcopy-lab run --demo                      # make demo
//	tcpcopy-lab run --rate 100 --duration 5s \
//	    --tcpcopy-bin bin/tcpcopy --intercept-bin bin/intercept
//	tcpcopy-lab bench --out bench-results       # make bench-lab
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
