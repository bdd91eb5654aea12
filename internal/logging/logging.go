// Package logging builds the daemons' structured loggers (log/slog) and
// the two helpers they need around them: a log file that can be reopened
// (for logrotate, on SIGHUP) and a rate limiter for warnings that could
// otherwise fire once per packet.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Options choose a logger's output.
type Options struct {
	// File is the log file; empty means standard error.
	File string
	// Format is "text" (default) or "json".
	Format string
	// Level is the minimum level: debug, info (default), warn or error.
	Level string
}

// New returns a logger for opts and the file behind it (nil for standard
// error), which the caller reopens on SIGHUP and closes at exit.
func New(opts Options) (*slog.Logger, *File, error) {
	var lvl slog.Level
	switch strings.ToLower(opts.Level) {
	case "", "info":
		lvl = slog.LevelInfo
	case "debug":
		lvl = slog.LevelDebug
	case "warn", "warning":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	default:
		return nil, nil, fmt.Errorf("log level %q: want debug, info, warn or error", opts.Level)
	}
	var (
		w io.Writer = os.Stderr
		f *File
	)
	if opts.File != "" {
		var err error
		if f, err = OpenFile(opts.File); err != nil {
			return nil, nil, err
		}
		w = f
	}
	ho := &slog.HandlerOptions{Level: lvl}
	var h slog.Handler
	switch strings.ToLower(opts.Format) {
	case "", "text":
		h = slog.NewTextHandler(w, ho)
	case "json":
		h = slog.NewJSONHandler(w, ho)
	default:
		if f != nil {
			f.Close()
		}
		return nil, nil, fmt.Errorf("log format %q: want text or json", opts.Format)
	}
	return slog.New(h), f, nil
}

// File is an append-only log file that Reopen swaps for a new file at the
// same path, so that a rotated log is released. It is safe for concurrent
// use.
type File struct {
	path string
	mu   sync.Mutex
	f    *os.File
}

// OpenFile opens (creating if needed) path for appending.
func OpenFile(path string) (*File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return nil, fmt.Errorf("open log file: %w", err)
	}
	return &File{path: path, f: f}, nil
}

// Write appends p to the current file.
func (l *File) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Write(p)
}

// Reopen opens the path again and closes the old file. On error the old
// file stays in use.
func (l *File) Reopen() error {
	f, err := os.OpenFile(l.path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return fmt.Errorf("reopen log file: %w", err)
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	return old.Close()
}

// Close closes the current file.
func (l *File) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// Limiter lets one event through per interval and counts the ones it
// suppressed, so a warning about a per-packet condition is logged at most
// once per interval with the number it stands for. It is safe for
// concurrent use and Allow does not allocate.
type Limiter struct {
	interval   int64 // nanoseconds
	next       atomic.Int64
	suppressed atomic.Uint64
}

// NewLimiter returns a limiter that allows one event per interval.
func NewLimiter(interval time.Duration) *Limiter {
	return &Limiter{interval: int64(interval)}
}

// Allow reports whether an event at now may be logged; if so it also
// returns how many events were suppressed since the last allowed one.
func (l *Limiter) Allow(now time.Time) (ok bool, suppressed uint64) {
	ns := now.UnixNano()
	next := l.next.Load()
	if ns < next || !l.next.CompareAndSwap(next, ns+l.interval) {
		l.suppressed.Add(1)
		return false, 0
	}
	return true, l.suppressed.Swap(0)
}

// Limiters keeps one Limiter per kind of event, made on first use, so
// that each kind of warning is rate-limited on its own. It is not safe
// for concurrent use.
type Limiters struct {
	interval time.Duration
	m        map[string]*Limiter
}

// NewLimiters returns limiters that allow one event per kind per
// interval.
func NewLimiters(interval time.Duration) *Limiters {
	return &Limiters{interval: interval, m: map[string]*Limiter{}}
}

// Allow is Limiter.Allow for the events of kind.
func (l *Limiters) Allow(kind string, now time.Time) (ok bool, suppressed uint64) {
	lim := l.m[kind]
	if lim == nil {
		lim = NewLimiter(l.interval)
		l.m[kind] = lim
	}
	return lim.Allow(now)
}

// Warning is one diagnosis of a daemon's watcher: Kind names its rate
// limit, Msg is a constant message that names the likely cause and what to
// check, Attrs are the numbers (key, value pairs).
type Warning struct {
	Kind  string
	Msg   string
	Attrs []any
}

// Warner logs warnings at most once per kind per interval, each with the
// window the counters were compared over and how many were suppressed. It
// is not safe for concurrent use.
type Warner struct {
	log *slog.Logger
	lim *Limiters
}

// NewWarner returns a Warner logging to log.
func NewWarner(log *slog.Logger, interval time.Duration) *Warner {
	return &Warner{log: log, lim: NewLimiters(interval)}
}

// Warn logs ws, found at now by comparing counters over window.
func (w *Warner) Warn(now time.Time, window time.Duration, ws []Warning) {
	for _, x := range ws {
		if ok, n := w.lim.Allow(x.Kind, now); ok {
			w.log.Warn(x.Msg, append(x.Attrs, "window", window.Round(time.Millisecond), "suppressed", n)...)
		}
	}
}
