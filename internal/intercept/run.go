package intercept

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"

	"github.com/tcpcopy-go/tcpcopy/internal/metrics"
	"github.com/tcpcopy-go/tcpcopy/pkg/capture"
	"github.com/tcpcopy-go/tcpcopy/pkg/pcapfilter"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// batchSize is how many packets one ReadBatch returns at most.
const batchSize = 128

// snapLen returns the bytes to capture per packet: link-layer header with
// up to two VLAN tags, the largest IP and TCP headers, and the longest
// payload prefix any link may get; whole packets (GRO super-packets
// included) when responses may be compared, whose payloads are hashed.
func (c *Config) snapLen() int {
	if c.CompareWindow > 0 {
		return capture.DefaultSnapLen
	}
	prefix := c.MaxPrefix
	if c.RespPayload {
		prefix = max(prefix, wire.MaxPayload6)
	}
	return 14 + 8 + maxHeaders + prefix
}

// CheckFilter compiles cfg.Filter, so that a bad expression is reported as
// a command-line mistake.
func CheckFilter(cfg *Config) error {
	if _, err := pcapfilter.Compile(pcapfilter.LinkTypeEthernet, cfg.snapLen(), cfg.Filter); err != nil {
		return fmt.Errorf("option -F: %w", err)
	}
	return nil
}

// Run captures on cfg.Interfaces and serves tcpcopy links on cfg.Listen
// until ctx ends. It returns an error only when it cannot start or a
// capture fails for good; peers never make it return.
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	prog, err := pcapfilter.Compile(pcapfilter.LinkTypeEthernet, cfg.snapLen(), cfg.Filter)
	if err != nil {
		return fmt.Errorf("-F: %w", err)
	}
	names := cfg.Interfaces
	if len(names) == 0 {
		names = []string{""}
	}
	var sources []*capture.Source
	closeAll := func() {
		for _, src := range sources {
			src.Close()
		}
	}
	for _, name := range names {
		src, err := capture.Open(capture.Config{
			Interface:      name,
			SnapLen:        cfg.snapLen(),
			Filter:         prog,
			IgnoreOutgoing: true,
			BlockTimeout:   cfg.CaptureTimeout,
		})
		if err != nil {
			closeAll()
			return err
		}
		sources = append(sources, src)
	}
	ln, err := net.Listen("tcp", cfg.Listen.String())
	if err != nil {
		closeAll()
		return fmt.Errorf("listen for tcpcopy links: %w", err)
	}

	s := NewServer(cfg, log)
	s.sources = sources
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	if cfg.MetricsAddr != "" {
		mln, err := metrics.Listen(cfg.MetricsAddr)
		if err != nil {
			closeAll()
			ln.Close()
			return err
		}
		reg := metrics.NewRegistry()
		s.register(reg)
		go func() {
			if err := metrics.Serve(ctx, mln, reg, log); err != nil {
				log.Error("metrics endpoint stopped", "err", err)
			}
		}()
	}

	log.Info("intercept started", "listen", cfg.Listen.String(), "interfaces", fmt.Sprint(cfg.Interfaces),
		"filter", cfg.Filter, "snaplen", cfg.snapLen(), "compare_window", cfg.CompareWindow,
		"authentication", cfg.Secret != nil, "allow", fmt.Sprint(cfg.Allow))
	logExposure(&cfg, log)
	if cfg.Ready != nil {
		cfg.Ready()
	}

	var wg sync.WaitGroup
	capErr := make(chan error, len(sources))
	for _, src := range sources {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.captureLoop(src); err != nil {
				capErr <- err
				cancel()
			}
		}()
	}
	s.observe(ctx, cfg.StatsInterval)

	serveErr := s.Serve(ctx, ln)
	closeAll()
	wg.Wait()
	s.logSummary("intercept stopped")
	select {
	case err := <-capErr:
		return err
	default:
	}
	return serveErr
}

// logExposure says at start who may use the link port (docs/intercept.md,
// "Security").
func logExposure(cfg *Config, log *slog.Logger) {
	switch {
	case cfg.Secret != nil:
		log.Info("tcpcopy links must prove the shared secret (--secret-file); version-6 links (C tcpcopy, tcpcopy --wire-version 6) cannot and are refused")
	case len(cfg.Allow) == 0 && !cfg.Listen.Addr().IsLoopback():
		log.Warn("anyone who can reach the listen address may link as a tcpcopy, announce routes and receive the target's response headers: "+
			"restrict it with --allow (the only restriction version-6 links, C tcpcopy, can have) and/or --secret-file (version 7), or a firewall",
			"listen", cfg.Listen.String())
	case len(cfg.Allow) > 0:
		log.Info("tcpcopy links are accepted from the --allow networks only, without authentication", "allow", fmt.Sprint(cfg.Allow))
	}
}

// captureLoop routes every packet of src until it is closed.
func (s *Server) captureLoop(src *capture.Source) error {
	pkts := make([]capture.Packet, batchSize)
	sc := new(scratch)
	for {
		n, err := src.ReadBatch(pkts)
		for i := range n {
			s.handle(sc, pkts[i].Data, pkts[i].Time.UnixNano())
		}
		s.flushTouched(sc)
		if err != nil {
			if errors.Is(err, capture.ErrClosed) {
				return nil
			}
			return fmt.Errorf("capture: %w", err)
		}
	}
}
