package tcpcopy

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/bpf"

	imetrics "github.com/tcpcopy-go/tcpcopy/internal/metrics"
	"github.com/tcpcopy-go/tcpcopy/pkg/bpfgen"
	"github.com/tcpcopy-go/tcpcopy/pkg/capture"
	"github.com/tcpcopy-go/tcpcopy/pkg/inject"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/pcapfilter"
	"github.com/tcpcopy-go/tcpcopy/pkg/tcpstate"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// errUnsupported marks modes of the C command line this build does not
// run yet; Run refuses them with a clear message instead of guessing.
var errUnsupported = errors.New("not supported by this version")

// Run copies live traffic as cfg says until ctx ends, then resets every
// open session toward the target and returns. It returns an error when it
// cannot start, or when every intercept stayed unreachable (without -L).
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	switch {
	case cfg.OfflineFile != "":
		return fmt.Errorf("offline replay (-i %s): %w", cfg.OfflineFile, errUnsupported)
	case cfg.OutputIf != "":
		return fmt.Errorf("link-layer sending (-o %s): %w", cfg.OutputIf, errUnsupported)
	}
	prog, err := captureFilter(&cfg)
	if err != nil {
		return err
	}
	snd, err := inject.Open()
	if err != nil {
		return err
	}
	defer snd.Close()

	names := cfg.Interfaces
	if len(names) == 0 {
		names = []string{""}
	}
	var sources []*capture.Source
	defer func() {
		for _, s := range sources {
			s.Close()
		}
	}()
	for _, name := range names {
		src, err := capture.Open(capture.Config{
			Interface:      name,
			SnapLen:        cfg.SnapLen,
			NumBlocks:      max(cfg.BufferMB<<20/capture.DefaultBlockSize, 2),
			Filter:         prog,
			IgnoreOutgoing: true,
		})
		if err != nil {
			return err
		}
		sources = append(sources, src)
	}

	e := newEngine(&cfg, snd, log)
	e.sources = sources
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	if cfg.MetricsAddr != "" {
		ln, err := imetrics.Listen(cfg.MetricsAddr)
		if err != nil {
			return err
		}
		reg := imetrics.NewRegistry()
		e.register(reg)
		go func() {
			if err := imetrics.Serve(ctx, ln, reg, log); err != nil {
				log.Error("metrics endpoint stopped", "err", err)
			}
		}()
	}

	log.Info("tcpcopy started", "mappings", fmt.Sprint(cfg.Mappings), "intercepts", fmt.Sprint(cfg.Intercepts),
		"interfaces", fmt.Sprint(cfg.Interfaces), "workers", len(e.disp.workers), "percent", cfg.Percent, "copies", cfg.Copies)

	var wg sync.WaitGroup
	wctx, stopWorkers := context.WithCancel(context.Background())
	for _, w := range e.disp.workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.run(wctx)
		}()
	}
	linkErr := make(chan error, 1)
	go func() {
		err := e.links.Run(ctx)
		if err != nil {
			cancel()
		}
		linkErr <- err
	}()
	var cwg sync.WaitGroup
	capErr := make(chan error, len(sources))
	for _, src := range sources {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			if err := e.captureLoop(src); err != nil {
				capErr <- err
				cancel()
			}
		}()
	}
	e.observe(ctx)

	<-ctx.Done()
	for _, s := range sources {
		s.Close()
	}
	cwg.Wait()
	stopWorkers() // every session is reset toward the target
	wg.Wait()
	e.links.Close()
	err = <-linkErr
	e.logSummary()
	select {
	case cerr := <-capErr:
		return cerr
	default:
	}
	return err
}

// captureFilter returns the kernel filter: -F compiled by libpcap, or the
// mappings' online endpoints assembled in pure Go.
func captureFilter(cfg *Config) ([]bpf.RawInstruction, error) {
	if cfg.Filter != "" {
		prog, err := pcapfilter.Compile(pcapfilter.LinkTypeEthernet, cfg.SnapLen, cfg.Filter)
		if err != nil {
			return nil, fmt.Errorf("option -F: %w", err)
		}
		return prog, nil
	}
	var ms []bpfgen.Match
	for _, m := range cfg.Mappings {
		ms = append(ms, bpfgen.Match{Addr: m.Online.Addr(), Port: m.Online.Port()})
	}
	prog, err := bpfgen.Inbound(ms)
	if err != nil {
		return nil, fmt.Errorf("capture filter for -x: %w", err)
	}
	return prog, nil
}

// engine ties capture, the workers and the intercept links together.
type engine struct {
	cfg     *Config
	log     *slog.Logger
	rw      *rewriter
	disp    *dispatcher
	links   *Links
	sc      sendCounters
	shed    atomic.Bool
	sources []*capture.Source
	start   time.Time
	first   atomic.Int64 // first captured packet, for -g

	captured, invalid, unmatched, sampledOut, truncated, segmented atomic.Uint64
}

func newEngine(cfg *Config, snd sender, log *slog.Logger) *engine {
	e := &engine{cfg: cfg, log: log, rw: newRewriter(cfg), start: time.Now()}
	e.disp = &dispatcher{seed: maphash.MakeSeed()}
	e.links = NewLinks(LinkConfig{
		Servers:        cfg.Intercepts,
		ConnsPerServer: cfg.ConnsPerIntercept,
		WireVersion:    cfg.WireVersion,
		Fallback:       wire.Format{Version: wire.Version6, Combined: cfg.Combined, Payload: cfg.RespPayload},
		Lonely:         cfg.Lonely,
	}, log, e.disp.record)
	tc := tcpstate.Config{
		MTU:              cfg.MTU,
		MSS:              uint16(cfg.MSS),
		FixedRTT:         cfg.FixedRTT,
		SessionTimeout:   cfg.SessionTimeout,
		IdleTimeout:      cfg.KeepaliveTimeout,
		NoWait:           cfg.NoWait,
		OnlyFullSessions: cfg.OnlyFullSessions,
	}
	for i := range max(cfg.Workers, 1) {
		e.disp.workers = append(e.disp.workers, newWorker(i, cfg, tc, snd, e.links, &e.sc, &e.shed, log))
	}
	return e
}

// percentNow is the share of connections copied now: -r, or with -g 1 %
// more every second since the first captured packet.
func (e *engine) percentNow(now int64) int {
	if !e.cfg.Gradual {
		return e.rw.percent
	}
	first := e.first.Load()
	if first == 0 {
		e.first.CompareAndSwap(0, now)
		first = e.first.Load()
	}
	return min(100, 1+int((now-first)/int64(time.Second)))
}

// captureLoop reads src until it is closed and dispatches every client
// packet to its sessions' workers.
func (e *engine) captureLoop(src *capture.Source) error {
	pkts := make([]capture.Packet, 128)
	var (
		p    ipmangle.Parsed
		seg  ipmangle.Segmenter
		segb = make([]byte, e.cfg.MTU)
	)
	for {
		n, err := src.ReadBatch(pkts)
		for i := range n {
			e.handleCaptured(pkts[i].Data, &p, &seg, segb)
		}
		if err != nil {
			if errors.Is(err, capture.ErrClosed) {
				return nil
			}
			return fmt.Errorf("capture: %w", err)
		}
	}
}

// handleCaptured decides what one captured packet becomes. It allocates
// nothing.
func (e *engine) handleCaptured(data []byte, p *ipmangle.Parsed, seg *ipmangle.Segmenter, segb []byte) {
	e.captured.Add(1)
	p.Decode(data)
	if !p.Valid {
		e.invalid.Add(1)
		return
	}
	m, ok := e.rw.match(p.Dst)
	if !ok {
		e.unmatched.Add(1)
		return
	}
	if !e.rw.sampled(p.Src, e.percentNow(time.Now().UnixNano())) {
		e.sampledOut.Add(1)
		return
	}
	if p.Truncated {
		// The snap length cut the packet: its payload cannot be copied.
		// The session's gap logic deals with the hole.
		e.truncated.Add(1)
		data = data[:p.PayloadOffset]
	} else if p.TotalLen < len(data) {
		data = data[:p.TotalLen]
	}
	for i := range e.rw.copies {
		k := e.rw.key(m, p.Src, i)
		if len(data) <= e.cfg.MTU || p.Truncated {
			e.disp.client(k, data)
			continue
		}
		// A GRO/LRO super-packet: split to the MTU first.
		if !seg.Reset(data, p, e.cfg.MTU) {
			e.invalid.Add(1)
			return
		}
		for s := seg.Next(segb); s != nil; s = seg.Next(segb) {
			e.segmented.Add(1)
			e.disp.client(k, s)
		}
	}
}
