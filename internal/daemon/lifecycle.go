package daemon

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/tcpcopy-go/tcpcopy/internal/logging"
)

// Options are the process-level options both daemons share.
type Options struct {
	Background bool   // -d
	PIDFile    string // -P
	Log        logging.Options
	CPUProfile string // --cpu-profile: written until Close
}

// Process is a running daemon's process-level state.
type Process struct {
	Log    *slog.Logger
	file   *logging.File
	pid    *PIDFile
	stop   context.CancelFunc
	sigs   chan os.Signal
	Detach bool // true in the parent of -d: it must exit 0 at once

	stopProfile func()
}

// Start handles -d, -P and -l: with -d the first process re-executes itself
// in the background and returns a Process with Detach set. The returned
// context ends on SIGINT or SIGTERM; SIGHUP reopens the log file.
func Start(ctx context.Context, opts Options) (context.Context, *Process, error) {
	if opts.Background && !IsChild() {
		if _, err := Background(); err != nil {
			return nil, nil, err
		}
		return ctx, &Process{Detach: true}, nil
	}
	log, file, err := logging.New(opts.Log)
	if err != nil {
		return nil, nil, err
	}
	p := &Process{Log: log, file: file}
	if opts.PIDFile != "" {
		if p.pid, err = WritePIDFile(opts.PIDFile); err != nil {
			if file != nil {
				file.Close()
			}
			return nil, nil, err
		}
	}
	if p.stopProfile, err = CPUProfile(opts.CPUProfile); err != nil {
		p.pid.Remove()
		if file != nil {
			file.Close()
		}
		return nil, nil, err
	}
	ctx, p.stop = signal.NotifyContext(ctx, syscall.SIGINT, syscall.SIGTERM)
	p.sigs = make(chan os.Signal, 1)
	signal.Notify(p.sigs, syscall.SIGHUP)
	go func() {
		for range p.sigs {
			if p.file == nil {
				continue
			}
			if err := p.file.Reopen(); err != nil {
				log.Error("reopen log file", "err", err)
			} else {
				log.Info("log file reopened")
			}
		}
	}()
	return ctx, p, nil
}

// Failed logs err, the reason the daemon stops, to the log file when there
// is one (standard error gets the one-line message anyway), and returns
// it.
func (p *Process) Failed(err error) error {
	if err != nil && p != nil && p.file != nil {
		p.Log.Error("stopped", "err", err)
	}
	return err
}

// Close removes the pid file, stops signal handling and closes the log.
func (p *Process) Close() {
	if p == nil || p.Detach {
		return
	}
	signal.Stop(p.sigs)
	close(p.sigs)
	p.stop()
	p.stopProfile()
	if err := p.pid.Remove(); err != nil {
		p.Log.Warn("remove pid file", "err", err)
	}
	if p.file != nil {
		p.file.Close()
	}
}
