// Package metrics serves a daemon's Prometheus metrics (text exposition
// format, via the standard client library) on --metrics-addr, and beside
// them whatever else the daemon mounts there (tcpcopy's live page).
//
// The daemons keep their hot-path counters as plain atomics; collectors
// made with CounterFunc and GaugeFunc read them at scrape time, so counting
// costs nothing beyond the atomic add.
package metrics

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// NewRegistry returns a registry with the Go runtime and process
// collectors registered.
func NewRegistry() *prometheus.Registry {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return reg
}

// Counter registers a counter named name that reads f at scrape time.
func Counter(reg prometheus.Registerer, name, help string, f func() float64) {
	reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, f))
}

// Gauge registers a gauge named name that reads f at scrape time.
func Gauge(reg prometheus.Registerer, name, help string, f func() float64) {
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: name, Help: help}, f))
}

// Listen binds addr for Serve, so that a bad address fails at start-up
// rather than later.
func Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics address: %w", err)
	}
	return ln, nil
}

// Mount is a handler Serve answers beside /metrics.
type Mount struct {
	// Pattern is a net/http.ServeMux pattern ("/" takes every path that
	// no other pattern does: the handler must answer 404 itself for
	// those it does not know).
	Pattern string
	Handler http.Handler
}

// Serve answers /metrics, and the patterns of more, on ln until ctx is
// done. It panics if a pattern of more is invalid or taken (a programmer
// error).
func Serve(ctx context.Context, ln net.Listener, reg *prometheus.Registry, log *slog.Logger, more ...Mount) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}))
	for _, m := range more {
		mux.Handle(m.Pattern, m.Handler)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	log.Info("metrics endpoint listening", "addr", ln.Addr().String())
	if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics endpoint: %w", err)
	}
	return nil
}
