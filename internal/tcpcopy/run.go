package tcpcopy

import (
	"context"
	"errors"
	"fmt"
	"hash/maphash"
	"log/slog"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/bpf"

	"github.com/tcpcopy-go/tcpcopy/internal/daemon"
	imetrics "github.com/tcpcopy-go/tcpcopy/internal/metrics"
	"github.com/tcpcopy-go/tcpcopy/pkg/bpfgen"
	"github.com/tcpcopy-go/tcpcopy/pkg/capture"
	"github.com/tcpcopy-go/tcpcopy/pkg/compare"
	"github.com/tcpcopy-go/tcpcopy/pkg/inject"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/pcapfilter"
	"github.com/tcpcopy-go/tcpcopy/pkg/tcpstate"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// Run copies live traffic, or replays cfg.OfflineFile, as cfg says until
// ctx ends (or the replay is over), then resets every open session toward
// the target and returns. It returns an error when it cannot start, when
// every intercept stayed unreachable (without -L), or when the offline
// file is damaged (after replaying what could be read).
func Run(ctx context.Context, cfg Config, log *slog.Logger) error {
	if err := cfg.Validate(); err != nil {
		return err
	}
	var (
		off  *offlineSource
		prog []bpf.RawInstruction
		err  error
	)
	if cfg.OfflineFile != "" {
		if off, err = openOffline(&cfg, log); err != nil {
			return err
		}
		defer off.close()
	} else if prog, err = captureFilter(&cfg); err != nil {
		return err
	}
	snd, err := openSender(&cfg)
	if err != nil {
		return err
	}
	defer snd.Close()

	var sources []*capture.Source
	defer func() {
		for _, s := range sources {
			s.Close()
		}
	}()
	if off == nil {
		names := cfg.Interfaces
		if len(names) == 0 {
			names = []string{""}
		}
		for _, name := range names {
			src, err := capture.Open(capture.Config{
				Interface: name,
				SnapLen:   cfg.SnapLen,
				NumBlocks: max(cfg.BufferMB<<20/capture.DefaultBlockSize, 2),
				Filter:    prog,
				// The online server's answers leave this host: captured
				// for the comparison. Our own copies are never taken for
				// client packets (captureLoop). A loopback device shows
				// every packet twice, leaving and coming back in: the
				// incoming one is enough, answers included (handleParsed).
				IgnoreOutgoing: !cfg.wantOnline() || loopback(name),
				BlockTimeout:   cfg.CaptureTimeout,
			})
			if err != nil {
				return err
			}
			sources = append(sources, src)
		}
	}

	e := newEngine(&cfg, snd, log)
	e.sources = sources
	if err := e.enableMySQL(log); err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	if cfg.MetricsAddr != "" {
		ln, err := imetrics.Listen(cfg.MetricsAddr)
		if err != nil {
			return err
		}
		reg := imetrics.NewRegistry()
		e.register(reg)
		pg := newPage(e, log) // the live page beside /metrics (page.go)
		go pg.sample(ctx)
		go func() {
			if err := imetrics.Serve(ctx, ln, reg, log, pg.mount()); err != nil {
				log.Error("metrics endpoint stopped", "err", err)
			}
		}()
	}

	attrs := []any{"mappings", fmt.Sprint(cfg.Mappings), "intercepts", fmt.Sprint(cfg.Intercepts)}
	if off != nil {
		attrs = append(attrs, "offline", cfg.OfflineFile)
	} else {
		attrs = append(attrs, "interfaces", fmt.Sprint(cfg.Interfaces))
	}
	attrs = append(attrs, "workers", len(e.disp.workers), "percent", cfg.Percent, "copies", cfg.Copies, "compare_bytes", cfg.CompareBytes,
		"authentication", cfg.Secret != nil)
	if cfg.DiffLog != "" {
		attrs = append(attrs, "diff_log", cfg.DiffLog)
	}
	log.Info("tcpcopy started", attrs...)
	if cfg.Ready != nil {
		cfg.Ready()
	}

	diffsDone := make(chan struct{})
	stopDiffs := make(chan struct{})
	if e.diffs != nil {
		go func() {
			defer close(diffsDone)
			e.diffs.run(cfg.DiffLog, int64(cfg.DiffLogMB)<<20, stopDiffs, log)
		}()
	} else {
		close(diffsDone)
	}

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
	if e.udp != nil && e.udp.answers != nil {
		go daemon.Every(ctx, time.Second, func(time.Time) {
			e.udp.answers.expire(e.now(), false)
			if e.udp.cmp != nil {
				e.udp.cmp.expire(e.now(), false) // after the tracker: its late answers are matched no more
			}
		})
	}
	if cfg.HasProto(ProtoTCP) || e.udp != nil && e.udp.answers != nil {
		go func() {
			// Closed by e.links.Close at the end, not by ctx: the last
			// UDP answers come through the links after ctx is done.
			err := e.links.Run(context.WithoutCancel(ctx))
			if err != nil {
				cancel()
			}
			linkErr <- err
		}()
	} else {
		// UDP only and no -s: no session, no intercept.
		linkErr <- nil
	}
	var cwg sync.WaitGroup
	capErr := make(chan error, max(len(sources), 1))
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
	if off != nil {
		cwg.Add(1)
		go func() {
			defer cwg.Done()
			if err := e.replay(ctx, off); err != nil {
				capErr <- err
			}
			cancel() // the replay is over
		}()
	}
	e.observe(ctx)

	<-ctx.Done()
	for _, s := range sources {
		s.Close()
	}
	cwg.Wait()
	if e.udp != nil && e.udp.answers != nil {
		// The answers of the last UDP queries are on their way; then
		// what still waits counts unanswered.
		e.udp.answers.drain()
		e.udp.answers.expire(e.now(), true)
		if e.udp.cmp != nil {
			e.udp.cmp.expire(e.now(), true)
		}
	}
	e.links.Close()
	stopWorkers() // every session is reset toward the target
	wg.Wait()
	close(stopDiffs) // the workers' last verdicts are in: write them
	<-diffsDone
	err = <-linkErr
	e.logSummary()
	if off != nil {
		e.logOffline(off)
	} else if e.rw.eps != nil {
		e.log.Info("client endpoints", e.endpointAttrs(nil)...)
	}
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
	var byProto [2][]Mapping
	for _, m := range cfg.Mappings {
		byProto[m.Proto] = append(byProto[m.Proto], m)
	}
	tcp, udp := kernelMatches(byProto[ProtoTCP]), kernelMatches(byProto[ProtoUDP])
	if len(tcp)+len(udp) > bpfgen.MaxMatches {
		// Each fits alone, not both: any address and port of each
		// protocol (the per-packet match stays exact).
		tcp, udp = anyMatch(tcp), anyMatch(udp)
	}
	build := bpfgen.InboundTCPUDP
	switch {
	case cfg.CompareBytes > 0 && len(cfg.Intercepts) > 0:
		// The online server's answers too, TCP and UDP: the comparison
		// (UDP answers only with intercepts, which bring the target's).
		build = bpfgen.InboundAndResponses
	case cfg.wantOnline():
		build = bpfgen.InboundAndTCPResponses
	}
	prog, err := build(tcp, udp)
	if err != nil {
		return nil, fmt.Errorf("capture filter for -x: %w", err)
	}
	return prog, nil
}

// kernelMatches returns what the kernel filter tests for the mappings: one
// match per mapping while they fit in bpfgen.MaxMatches; beyond, one per
// online port (any address), and beyond that every segment (datagram) of
// the protocol. Any count of mappings works: each captured packet is
// matched against them exactly (rewriter.match), the kernel filter only
// spares tcpcopy the traffic of other ports.
func kernelMatches(mappings []Mapping) []bpfgen.Match {
	var ms []bpfgen.Match
	for _, m := range mappings {
		ms = append(ms, bpfgen.Match{Addr: m.Online.Addr(), Port: m.Online.Port()})
	}
	if len(ms) <= bpfgen.MaxMatches {
		return ms
	}
	seen := make(map[uint16]bool)
	ms = ms[:0]
	for _, m := range mappings {
		if p := m.Online.Port(); !seen[p] {
			seen[p] = true
			ms = append(ms, bpfgen.Match{Port: p})
		}
	}
	if len(ms) <= bpfgen.MaxMatches {
		return ms
	}
	return []bpfgen.Match{{}}
}

// anyMatch is the match of any address and port, if ms has any match.
func anyMatch(ms []bpfgen.Match) []bpfgen.Match {
	if len(ms) == 0 {
		return nil
	}
	return []bpfgen.Match{{}}
}

// engine ties capture, the workers and the intercept links together.
type engine struct {
	cfg     *Config
	log     *slog.Logger
	rw      *rewriter
	udp     *udpCopier // nil without udp: mappings
	disp    *dispatcher
	links   *Links
	sc      sendCounters
	shed    atomic.Bool
	sources []*capture.Source
	start   time.Time
	first   atomic.Int64 // first captured packet, for -g
	// now is the engine's clock (clock.go), for the capture side, the
	// workers and the links alike.
	now      func() int64
	linksUp  func() int // intercept links up now
	replayed replayStats
	// cmp holds the comparison rules, nil when it is off; diffs takes the
	// responses that differ.
	cmp   *compare.Config
	diffs *diffSink

	captured, invalid, unmatched, sampledOut, truncated, segmented, noEndpoint atomic.Uint64
	// responses counts the online server's packets captured for the
	// comparison.
	responses atomic.Uint64
}

func newEngine(cfg *Config, snd sender, log *slog.Logger) *engine {
	e := &engine{cfg: cfg, log: log, rw: newRewriter(cfg), start: time.Now(), now: systemClock().now}
	e.udp = newUDPCopier(cfg, e.rw, snd, log)
	// The workers and the dispatcher read e.now through a closure, so
	// that a test can replace the clock after newEngine.
	now := func() int64 { return e.now() }
	e.disp = &dispatcher{seed: maphash.MakeSeed(), now: now}
	e.cmp = cfg.compareConfig()
	e.links = NewLinks(LinkConfig{
		Servers:        cfg.Intercepts,
		ConnsPerServer: cfg.ConnsPerIntercept,
		WireVersion:    cfg.WireVersion,
		Compare:        cfg.linkWindow(),
		Fallback:       wire.Format{Version: wire.Version6, Combined: cfg.Combined, Payload: cfg.RespPayload},
		Lonely:         cfg.Lonely || !cfg.HasProto(ProtoTCP), // UDP only: the links are for the answers, never a reason to give up
		Secret:         cfg.Secret,
	}, log, func() Sink { return e.disp.newBatch() })
	e.linksUp = e.links.Up
	if e.cmp != nil {
		e.diffs = newDiffSink()
	}
	if e.udp != nil && len(cfg.Intercepts) > 0 {
		// The target's UDP answers, through intercept (udpanswer.go),
		// compared with the online server's (udpcompare.go).
		e.udp.answers = newUDPTracker(len(e.udp.rw.mappings), e.links)
		e.disp.udp = e.udp.answers
		if e.cmp != nil {
			e.udp.cmp = newUDPComparer(e.cmp, e.diffs, now, e.links.Comparing)
			e.disp.udpCmp = e.udp.cmp
		}
	}
	tc := tcpstate.Config{
		MTU:              cfg.MTU,
		MSS:              uint16(cfg.MSS),
		FixedRTT:         cfg.FixedRTT,
		SessionTimeout:   cfg.SessionTimeout,
		IdleTimeout:      cfg.KeepaliveTimeout,
		NoWait:           cfg.NoWait,
		AckDelay:         cfg.AckDelay,
		StallTimeout:     cfg.StallTimeout,
		OnlyFullSessions: cfg.OnlyFullSessions,
		AnswerLengths:    e.cmp != nil,
	}
	for i := range max(cfg.Workers, 1) {
		w := newWorker(i, cfg, tc, snd, e.links, &e.sc, &e.shed, now, log)
		if e.cmp != nil {
			w.cmp = newCompareState(e.cmp, e.diffs, now, e.links.Comparing)
		}
		e.track(w)
		e.disp.workers = append(e.disp.workers, w)
	}
	return e
}

// track makes w's route announcements tell the endpoint allocator when
// sessions start and end. It does nothing without an allocator.
func (e *engine) track(w *worker) {
	if e.rw.eps != nil {
		if _, done := w.links.(trackedRouter); !done {
			w.links = trackedRouter{router: w.links, eps: e.rw.eps, now: func() int64 { return e.now() }}
		}
	}
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

// loopback reports whether the interface name is a loopback device (lo);
// false for "" (every interface).
func loopback(name string) bool {
	if name == "" {
		return false
	}
	ifi, err := net.InterfaceByName(name)
	return err == nil && ifi.Flags&net.FlagLoopback != 0
}

// captureLoop reads src until it is closed and dispatches every client
// packet to its sessions' workers.
func (e *engine) captureLoop(src *capture.Source) error {
	pkts := make([]capture.Packet, 128)
	var (
		p    ipmangle.Parsed
		seg  ipmangle.Segmenter
		segb = make([]byte, e.cfg.MTU)
		b    = e.disp.newBatch()
	)
	for {
		n, err := src.ReadBatch(pkts)
		if n > 0 {
			now := e.now()
			behind := src.Behind()
			last := pkts[n-1].Time.UnixNano() // the newest: about now
			for i := range n {
				if e.cmp != nil {
					b.at = captureTime(now, last, pkts[i].Time.UnixNano())
				}
				if pkts[i].Outgoing {
					// Sent by this host: an answer of the online server
					// (the comparison), never a client packet.
					e.handleOutgoing(pkts[i].Data, &p, b, now)
					continue
				}
				e.handleCaptured(pkts[i].Data, &p, &seg, segb, b, now, behind)
			}
			b.at = 0
			b.flush(now)
		}
		if err != nil {
			if errors.Is(err, capture.ErrClosed) {
				return nil
			}
			return fmt.Errorf("capture: %w", err)
		}
	}
}

// captureTime places a packet the kernel stamped ts in a batch whose
// newest packet it stamped last, read at now, on the engine's clock: the
// stamps give the packets' spacing, now the end. Within a second of now.
func captureTime(now, last, ts int64) int64 {
	d := last - ts
	if ts <= 0 || last <= 0 || d < 0 {
		return now
	}
	return now - min(d, int64(time.Second))
}

// handleCaptured decides what one captured packet, read at now, becomes,
// as part of batch b; behind says the capture has fallen behind (new
// sessions are refused). It allocates nothing for packets of known
// connections.
func (e *engine) handleCaptured(data []byte, p *ipmangle.Parsed, seg *ipmangle.Segmenter, segb []byte, b *batch, now int64, behind bool) {
	p.Decode(data)
	e.handleParsed(data, p, seg, segb, b, 0, now, behind)
}

// handleParsed is handleCaptured for a packet already decoded into p, of
// offline pass pass (0 for live capture).
func (e *engine) handleParsed(data []byte, p *ipmangle.Parsed, seg *ipmangle.Segmenter, segb []byte, b *batch, pass uint32, now int64, behind bool) {
	e.captured.Add(1)
	if !p.Valid {
		if e.udp != nil && e.copyUDP(data, p, b, pass, now, false) {
			return
		}
		if p.Reason == ipmangle.ReasonNotTCP {
			// Well-formed, of another protocol (ICMP, ICMPv6, UDP without
			// udp: mappings): an offline file without -F brings them all.
			e.unmatched.Add(1)
			return
		}
		e.invalid.Add(1)
		return
	}
	m, ok := e.rw.match(p.Dst)
	if !ok {
		if e.cfg.wantOnline() && e.response(data, p, b, pass, now) {
			return
		}
		e.unmatched.Add(1)
		return
	}
	if !e.rw.sampled(p.Src, e.percentNow(now)) {
		e.sampledOut.Add(1)
		return
	}
	dp := p // the decoding of data as the worker sees it; nil: decode again
	if p.Truncated {
		// The snap length cut the packet: its payload cannot be copied.
		// The session's gap logic deals with the hole.
		e.truncated.Add(1)
		data = data[:p.PayloadOffset]
		dp = nil
	} else if p.TotalLen < len(data) {
		data = data[:p.TotalLen]
	}
	d := delivery{b: b, now: now, behind: behind, p: dp}
	if e.rw.eps == nil {
		e.dispatch(&d, tcpstate.Key{Client: p.Src, Target: m.Target}, data, p, seg, segb)
		return
	}
	l := e.rw.eps.lease(connKey{client: p.Src, server: p.Dst, pass: pass}, m.Target, now)
	for _, fake := range l.fakes {
		if !fake.IsValid() {
			e.noEndpoint.Add(1)
			continue
		}
		if !e.dispatch(&d, tcpstate.Key{Client: fake, Target: m.Target}, data, p, seg, segb) {
			return
		}
	}
}

// handleOutgoing takes a packet this host sent: an answer of the online
// server for the comparison (TCP, or UDP: copyUDP never copies it), or
// else nothing of ours.
func (e *engine) handleOutgoing(data []byte, p *ipmangle.Parsed, b *batch, now int64) {
	e.captured.Add(1)
	p.Decode(data)
	if !p.Valid && e.udp != nil && e.copyUDP(data, p, b, 0, now, true) {
		return
	}
	if !p.Valid || !e.cfg.wantOnline() || !e.response(data, p, b, 0, now) {
		e.unmatched.Add(1)
	}
}

// response hands an answer of the online server (p, the decoding of data:
// its source is a mapping's online side) to the comparison of its
// connection's copies, in offline pass pass. It reports false if data is
// no such answer. It allocates nothing.
func (e *engine) response(data []byte, p *ipmangle.Parsed, b *batch, pass uint32, now int64) bool {
	m, ok := e.rw.match(p.Src)
	if !ok {
		return false
	}
	e.responses.Add(1)
	if !e.rw.sampled(p.Dst, e.percentNow(now)) {
		return true
	}
	payload := p.Payload(data)
	if e.rw.eps == nil {
		k := tcpstate.Key{Client: p.Dst, Target: m.Target}
		b.worker(k.Client).online(b.time(now), k, p, payload)
		return true
	}
	l := e.rw.eps.existing(connKey{client: p.Dst, server: p.Src, pass: pass})
	if l == nil {
		return true // a connection no copy was made of
	}
	for _, fake := range l.fakes {
		if fake.IsValid() {
			k := tcpstate.Key{Client: fake, Target: m.Target}
			b.worker(k.Client).online(b.time(now), k, p, payload)
		}
	}
	return true
}

// delivery is where and how a captured packet goes to the workers.
type delivery struct {
	b      *batch
	now    int64
	behind bool
	p      *ipmangle.Parsed // the packet's decoding, nil if it must be decoded again
}

// dispatch runs one client packet of session k through its worker, split
// to the MTU first if it is a GRO/LRO super-packet. It reports false when
// the packet cannot be split (counted invalid).
func (e *engine) dispatch(d *delivery, k tcpstate.Key, data []byte, p *ipmangle.Parsed, seg *ipmangle.Segmenter, segb []byte) bool {
	if len(data) <= e.cfg.MTU || p.Truncated {
		d.b.client(d.now, k, data, d.p, d.behind)
		return true
	}
	if !seg.Reset(data, p, e.cfg.MTU) {
		e.invalid.Add(1)
		return false
	}
	for s := seg.Next(segb); s != nil; s = seg.Next(segb) {
		e.segmented.Add(1)
		d.b.client(d.now, k, s, nil, d.behind)
	}
	return true
}

// closingSender is a sender that can be closed.
type closingSender interface {
	sender
	Close() error
}

// openSender opens the raw IP sockets, or with -o a packet socket on that
// device that sends each copy in a frame with the MACs of its mapping
// (C TCPCopy --pcap-send).
func openSender(cfg *Config) (closingSender, error) {
	if cfg.OutputIf == "" {
		return inject.Open()
	}
	var routes []inject.LinkRoute
	for _, m := range cfg.Mappings {
		routes = append(routes, inject.LinkRoute{Dst: m.Target.Addr(), SrcMAC: m.OnlineMAC, DstMAC: m.TargetMAC})
	}
	return inject.OpenLink(cfg.OutputIf, routes)
}
