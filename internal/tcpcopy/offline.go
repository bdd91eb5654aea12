package tcpcopy

// offline.go replays a capture file (-i FILE, C TCPCopy's --offline build;
// tcpcopy-c.md §3.12) through the same path as live capture: every IP
// packet of the file goes to engine.handleParsed, so -x, -r/-g, -n, -c, -f
// and the splitting of GRO super-packets apply unchanged.
//
// Where we differ from C TCPCopy:
//   - Link types: C read Ethernet (with VLAN) and Linux SLL only; we also
//     read SLL2 (tcpdump -i any), raw IP and BSD loopback, pcapng and gzip.
//   - -I: C added every skipped idle gap to a credit and re-added the last
//     one on every 10 ms tick, which sped the replay up far beyond -a; we
//     skip each gap once.
//   - -T: C waited its 120 s tail after every pass, then replayed the file
//     again with the very same client endpoints; we start the next pass at
//     once and give each pass its own client ports (see passes below).
//   - The end: C waited 120 s after the end of the file, then reset every
//     session. We wait while sessions still have captured data to deliver,
//     at most until they stop making progress (tailQuiet) or -t passes.
//   - A damaged file: C stopped silently at the first bad record; we replay
//     what could be read and then fail with the file's name and the offset.
//   - Truncated records (snap length below the packet) are counted and
//     reported; their missing payload becomes a capture gap, never a packet
//     with made-up bytes.
//
// Passes (-T). The same file replayed twice holds the same client
// endpoints and the same initial sequence numbers; a SYN on a 4-tuple the
// engine still tracks with the same ISN is taken for a retransmission and
// dropped. So every pass is a new set of connections for the endpoint
// allocator (connKey.pass): pass p's copy i is variant p*n+i, whose
// preferred port is spread away from the client's own (rewriter.fakePort),
// and which probes further when that endpoint is still in use. Sequence
// numbers stay those of the capture.

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/net/bpf"

	"github.com/tcpcopy-go/tcpcopy/internal/logging"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/pcapfile"
	"github.com/tcpcopy-go/tcpcopy/pkg/pcapfilter"
	"github.com/tcpcopy-go/tcpcopy/pkg/tcpstate"
)

// Replay timing.
const (
	// paceSlack: a packet due within this is released at once, so the
	// reader sleeps only for real gaps.
	paceSlack = time.Millisecond
	// tailQuiet ends the tail when the sessions made no progress (nothing
	// sent, acknowledged, opened or closed) for this long.
	tailQuiet = 10 * time.Second
	// tailSettle: the tail ends once nothing was queued for this long,
	// two stats publications of the workers.
	tailSettle = time.Second
	tailPoll   = 100 * time.Millisecond
	// linkWaitWarn is when waiting for a first intercept link is logged.
	linkWaitWarn = 2 * time.Second
	// maxReplayGap bounds the wait between two relevant packets when -I is
	// not given: a longer gap (a clock that jumped, files of different
	// days merged) is skipped as -I would skip it, with a warning, instead
	// of waiting for it (a jump of 1e9 s waited 31 years).
	maxReplayGap = time.Hour
	// gapWarnEvery limits the warnings about such gaps.
	gapWarnEvery = 10 * time.Second
)

// offlineSource reads the IP packets of the file to replay.
type offlineSource struct {
	path    string
	f       *os.File
	r       *pcapfile.Reader
	expr    string // -F
	filters map[pcapfile.LinkType]*bpf.VM
	log     *slog.Logger
	warned  map[pcapfile.LinkType]bool

	passes                                           int // passes read to the end
	records, packets, nonIP, filtered, unlinked, cut atomic.Uint64
	// Records whose lengths disagree with the file (pcapfile.Anomaly):
	// read as they are, counted, warned about once each.
	capAboveSnap, origBelowCap atomic.Uint64
	warnedAnomaly              pcapfile.Anomaly
	lastOffset                 int64 // of the record next returned
}

// openOffline opens cfg.OfflineFile and checks what can be checked before
// tcpcopy starts: the format, a pcap file's link type, and -F.
func openOffline(cfg *Config, log *slog.Logger) (*offlineSource, error) {
	o := &offlineSource{
		path: cfg.OfflineFile, expr: cfg.Filter, log: log,
		filters: make(map[pcapfile.LinkType]*bpf.VM),
		warned:  make(map[pcapfile.LinkType]bool),
	}
	if err := o.open(); err != nil {
		return nil, err
	}
	if lt, ok := o.r.LinkType(); ok {
		if !lt.Supported() {
			o.close()
			return nil, fmt.Errorf("offline file %s: link type %s is not supported (ethernet, linux_sll, linux_sll2, raw, null and loop are)", o.path, lt)
		}
		if o.expr != "" {
			if _, err := o.compile(lt); err != nil {
				o.close()
				return nil, err
			}
		}
	}
	return o, nil
}

func (o *offlineSource) open() error {
	f, err := os.Open(o.path)
	if err != nil {
		return fmt.Errorf("offline file: %w", err)
	}
	r, err := pcapfile.NewReader(f)
	if err != nil {
		f.Close()
		return fmt.Errorf("offline file %s: %w", o.path, err)
	}
	o.f, o.r = f, r
	return nil
}

func (o *offlineSource) close() {
	if o.f != nil {
		o.f.Close()
		o.f = nil
	}
}

// rewind starts the file over for the next pass.
func (o *offlineSource) rewind() error {
	o.close()
	return o.open()
}

// err returns the reader's error, naming the file.
func (o *offlineSource) err() error {
	if err := o.r.Err(); err != nil {
		return fmt.Errorf("offline file %s: %w", o.path, err)
	}
	return nil
}

// compile returns the -F program for frames of link type lt.
func (o *offlineSource) compile(lt pcapfile.LinkType) (*bpf.VM, error) {
	if vm, ok := o.filters[lt]; ok {
		return vm, nil
	}
	dlt := int(lt)
	switch lt {
	case pcapfile.LinkTypeRaw, pcapfile.LinkTypeRawDLT14:
		dlt = int(pcapfile.LinkTypeRawDLT12) // libpcap's DLT_RAW on Linux
	}
	raw, err := pcapfilter.Compile(dlt, pcapfile.MaxPacketLen, o.expr)
	if err != nil {
		o.filters[lt] = nil
		return nil, fmt.Errorf("option -F for %s frames: %w", lt, err)
	}
	prog, _ := bpf.Disassemble(raw)
	vm, err := bpf.NewVM(prog)
	if err != nil {
		o.filters[lt] = nil
		return nil, fmt.Errorf("option -F for %s frames: %w", lt, err)
	}
	o.filters[lt] = vm
	return vm, nil
}

// next returns the IP packet of the next usable record and its capture
// time (Unix ns). The packet is valid until the next call. It returns
// false at the end of the file or at damage (see err).
func (o *offlineSource) next() (ip []byte, ts int64, ok bool) {
	for o.r.Next() {
		p := o.r.Packet()
		o.records.Add(1)
		if p.Len > len(p.Data) {
			o.cut.Add(1)
		}
		if p.Anomalies != 0 {
			o.anomaly(p)
		}
		off := p.LinkType.IPOffset(p.Data)
		if off < 0 {
			if p.LinkType.Supported() {
				o.nonIP.Add(1)
				continue
			}
			o.unlinked.Add(1)
			o.warnOnce(p.LinkType, "packets of an unsupported link type are skipped", "link_type", p.LinkType.String(), "interface", p.Interface)
			continue
		}
		if o.expr != "" {
			vm, err := o.compile(p.LinkType)
			if err != nil {
				o.filtered.Add(1)
				o.warnOnce(p.LinkType, "packets are skipped: the filter does not compile for their link type", "err", err)
				continue
			}
			if n, err := vm.Run(p.Data); err != nil || n == 0 {
				o.filtered.Add(1)
				continue
			}
		}
		o.packets.Add(1)
		o.lastOffset = p.Offset
		return p.Data[off:], p.Time, true
	}
	return nil, 0, false
}

// anomaly counts a record whose lengths disagree with the file, and warns
// once per kind.
func (o *offlineSource) anomaly(p *pcapfile.Packet) {
	if p.Anomalies&pcapfile.CapLenAboveSnapLen != 0 {
		o.capAboveSnap.Add(1)
	}
	if p.Anomalies&pcapfile.OrigLenBelowCapLen != 0 {
		o.origBelowCap.Add(1)
	}
	if news := p.Anomalies &^ o.warnedAnomaly; news != 0 {
		o.warnedAnomaly |= news
		if news&pcapfile.CapLenAboveSnapLen != 0 {
			o.log.Warn("offline file: a record holds more bytes than the file's snap length (damaged file, or written by a broken tool); it is replayed as it is",
				"file", o.path, "offset", p.Offset, "captured", len(p.Data))
		}
		if news&pcapfile.OrigLenBelowCapLen != 0 {
			o.log.Warn("offline file: a record's original length is below its captured length (damaged file, or written by a broken tool); the captured length is used",
				"file", o.path, "offset", p.Offset, "captured", len(p.Data))
		}
	}
}

func (o *offlineSource) warnOnce(lt pcapfile.LinkType, msg string, attrs ...any) {
	if o.warned[lt] {
		return
	}
	o.warned[lt] = true
	o.log.Warn(msg, attrs...)
}

// pacer computes when each relevant packet (one that matches -x) is
// released: at its offset in the file since the first relevant packet,
// divided by -a, less the idle gaps -I skipped (without -I, the gaps above
// maxReplayGap). It is pure arithmetic on times the caller passes.
type pacer struct {
	accel float64
	idle  int64 // -I, ns; 0: off (then maxReplayGap bounds the gaps)

	started   bool
	wall0     int64 // release time of the pass's first relevant packet
	file0     int64 // its capture time
	last      int64 // capture time of the latest relevant packet
	skipped   int64 // idle time skipped in this pass
	gaps      uint64
	totalSkip int64
	bounded   uint64 // gaps above maxReplayGap skipped without -I
	lastBound int64  // the latest of them, ns
}

// reset starts a new pass: its first relevant packet is released at once.
func (pc *pacer) reset() { pc.started, pc.skipped = false, 0 }

// due returns the wall-clock time (Unix ns) at which the relevant packet
// captured at ts is released; now is the current time. Capture times that
// go backwards (files merged from several interfaces) count as no gap.
func (pc *pacer) due(ts, now int64) int64 {
	if !pc.started {
		pc.started = true
		pc.wall0, pc.file0, pc.last = now, ts, ts
		return now
	}
	ts = max(ts, pc.last)
	limit := pc.idle
	if limit <= 0 {
		limit = int64(maxReplayGap)
	}
	if gap := ts - pc.last; gap > limit {
		// Skipped once: C TCPCopy kept re-adding its last gap.
		pc.skipped += gap
		pc.gaps++
		pc.totalSkip += gap
		if pc.idle <= 0 {
			pc.bounded++
			pc.lastBound = gap
		}
	}
	pc.last = ts
	return pc.wall0 + int64(float64(ts-pc.file0-pc.skipped)/pc.accel)
}

// replayStats are the replay's own counters, for the summary.
type replayStats struct {
	relevant atomic.Uint64 // packets that matched -x
	maxLag   atomic.Int64  // worst lateness of a release, ns
	elapsed  atomic.Int64  // from the first packet to the end of the tail, ns
	gaps     atomic.Uint64
	skipped  atomic.Int64
	bounded  atomic.Uint64 // gaps above maxReplayGap skipped without -I
}

// replay replays src cfg.Repeat times, waits for the sessions to finish,
// and returns. It returns the file's damage, if any, after replaying what
// could be read; it returns nil when ctx ends first.
func (e *engine) replay(ctx context.Context, src *offlineSource) error {
	switch {
	case e.cfg.HasProto(ProtoTCP):
		if !e.waitForIntercept(ctx, 0) {
			return nil
		}
	case e.udp != nil && e.udp.answers != nil:
		// UDP only, with -s: the answers are followed if a link comes
		// in time, and the copies go anyway.
		if !e.waitForIntercept(ctx, udpLinkWait) && ctx.Err() != nil {
			return nil
		}
	}
	start := time.Now()
	e.log.Info("offline replay started", "file", src.path, "format", src.r.Format().String(), "gzip", src.r.Compressed(),
		"passes", e.cfg.Repeat, "accel", e.cfg.Accel, "idle_skip", e.cfg.IdleSkip)
	err := e.replayPasses(ctx, src)
	if ctx.Err() != nil {
		return nil
	}
	e.tail(ctx)
	e.replayed.elapsed.Store(int64(time.Since(start)))
	return err
}

// replayer walks the passes of the file and says when each packet is
// due. It is pure: the caller passes the time and releases the packets,
// the engine on the wall clock, the golden tests on a virtual one.
type replayer struct {
	src    *offlineSource
	rw     *rewriter
	udp    *udpCopier // nil without udp: mappings
	repeat int
	pass   int
	pc     pacer
}

func newReplayer(src *offlineSource, rw *rewriter, cfg *Config) *replayer {
	return &replayer{src: src, rw: rw, repeat: max(cfg.Repeat, 1), pc: pacer{accel: cfg.Accel, idle: int64(cfg.IdleSkip)}}
}

// next decodes the next IP packet of the file into p and returns it, valid
// until the next call, with the time it is due: its place in the capture's
// timing for a relevant packet (one that matches -x), now for the others.
// At the end of a pass it starts the next; ok is false after the last, or
// at damage (err).
func (r *replayer) next(p *ipmangle.Parsed, now int64) (ip []byte, due int64, relevant, ok bool, err error) {
	for {
		ip, ts, got := r.src.next()
		if !got {
			if err := r.src.err(); err != nil {
				return nil, 0, false, false, err
			}
			r.src.passes++
			if r.pass+1 >= r.repeat {
				return nil, 0, false, false, nil
			}
			if err := r.src.rewind(); err != nil {
				return nil, 0, false, false, err
			}
			r.pass++
			r.pc.reset()
			continue
		}
		p.Decode(ip)
		if p.Valid {
			if _, ok := r.rw.match(p.Dst); ok {
				return ip, r.pc.due(ts, now), true, true, nil
			}
		} else if r.udp != nil && r.udp.relevant(ip) {
			return ip, r.pc.due(ts, now), true, true, nil
		}
		return ip, now, false, true, nil
	}
}

func (e *engine) replayPasses(ctx context.Context, src *offlineSource) error {
	var (
		p     ipmangle.Parsed
		seg   ipmangle.Segmenter
		segb  = make([]byte, e.cfg.MTU)
		rp    = newReplayer(src, e.rw, e.cfg)
		timer = time.NewTimer(time.Hour)
		b     = e.disp.newBatch()
		warn  = logging.NewLimiter(gapWarnEvery)
	)
	timer.Stop()
	rp.udp = e.udp
	defer func() {
		e.replayed.gaps.Store(rp.pc.gaps)
		e.replayed.skipped.Store(rp.pc.totalSkip)
		e.replayed.bounded.Store(rp.pc.bounded)
	}()
	var bounded uint64
	for {
		now := e.now()
		ip, due, relevant, ok, err := rp.next(&p, now)
		if !ok {
			return err
		}
		if rp.pc.bounded != bounded {
			bounded = rp.pc.bounded
			if ok, n := warn.Allow(time.Now()); ok {
				e.log.Warn("offline replay: the capture's timestamps jump by more than an hour between two packets; the gap is skipped instead of waited for (give -I to choose the bound)",
					"gap", time.Duration(rp.pc.lastBound), "file", src.path, "offset", src.lastOffset, "max_gap", maxReplayGap, "suppressed", n)
			}
		}
		if relevant {
			e.replayed.relevant.Add(1)
			if wait := time.Duration(due - now); wait > paceSlack {
				if !sleepCtx(ctx, timer, wait) {
					return nil
				}
				now = e.now()
			} else if lag := -wait; lag > time.Duration(e.replayed.maxLag.Load()) {
				e.replayed.maxLag.Store(int64(lag))
			}
		}
		// A file never falls behind: it waits while the workers work.
		e.handleParsed(ip, &p, &seg, segb, b, uint32(rp.pass), now, false)
		b.flush(now)
	}
}

// sleepCtx waits d on t, or until ctx ends (false).
func sleepCtx(ctx context.Context, t *time.Timer, d time.Duration) bool {
	t.Reset(d)
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		t.Stop()
		return false
	}
}

// udpLinkWait is how long an offline replay of UDP mappings only waits
// for an intercept link (-s) before it replays without following the
// target's answers.
const udpLinkWait = 5 * time.Second

// waitForIntercept waits until an intercept link is up, so that the first
// sessions of the file do not race the connection to intercept. It returns
// false when ctx ends first (the links give up after LinkConfig.GiveUpAfter
// without -L) or, with limit > 0, after limit (saying so).
func (e *engine) waitForIntercept(ctx context.Context, limit time.Duration) bool {
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	start := time.Now()
	warned := false
	for e.linksUp() == 0 {
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
		}
		if limit > 0 && time.Since(start) > limit {
			e.log.Warn("offline replay starts without a connection to intercept: the target's UDP answers are not followed",
				"intercepts", fmt.Sprint(e.cfg.Intercepts), "waited", limit)
			return false
		}
		if !warned && time.Since(start) > linkWaitWarn {
			warned = true
			e.log.Warn("offline replay waits for a connection to intercept", "intercepts", fmt.Sprint(e.cfg.Intercepts))
		}
	}
	return true
}

// progress is what changes while sessions make progress.
type progress struct {
	opened, closed, sent, acked, responses uint64
}

func progressOf(st *tcpstate.Stats) progress {
	return progress{
		opened: st.Opened, closed: st.ClosedBy(tcpstate.Reproduced) + st.ClosedBy(tcpstate.Partial) + st.ClosedBy(tcpstate.Failed),
		sent: st.SegmentsSent + st.Retransmits + st.FastRetransmits, acked: st.AckedBytes, responses: st.Responses,
	}
}

// tail waits after the end of the file while sessions have captured data
// to deliver: until nothing is queued (for tailSettle), or nothing
// progressed for tailQuiet, or -t passed. What is still open is then reset
// by the shutdown (outcome reason tcpcopy_stopped).
func (e *engine) tail(ctx context.Context) {
	start := time.Now()
	limit := e.cfg.SessionTimeout
	t := time.NewTicker(tailPoll)
	defer t.Stop()
	var (
		prev         progress
		lastProgress = start
		settledSince time.Time
	)
	for {
		now := time.Now()
		st := e.stats()
		if pr := progressOf(&st); pr != prev {
			prev, lastProgress = pr, now
		}
		switch {
		case st.QueuedSegments == 0:
			if settledSince.IsZero() {
				settledSince = now
			} else if now.Sub(settledSince) >= tailSettle {
				return
			}
		default:
			settledSince = time.Time{}
		}
		switch {
		case now.Sub(lastProgress) >= tailQuiet:
			e.log.Warn("offline replay: sessions made no progress; stopping", "quiet", tailQuiet, "sessions_active", st.Active, "queued_segments", st.QueuedSegments)
			return
		case now.Sub(start) >= limit:
			e.log.Warn("offline replay: sessions still busy after -t; stopping", "t", limit, "sessions_active", st.Active, "queued_segments", st.QueuedSegments)
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// outcomeAttrs lists every outcome_reason with a non-zero count.
func outcomeAttrs(st *tcpstate.Stats, attrs []any) []any {
	for o := range tcpstate.NumOutcomes {
		for r := range tcpstate.NumReasons {
			if n := st.Closed[o][r]; n > 0 {
				attrs = append(attrs, tcpstate.Outcome(o).String()+"_"+tcpstate.Reason(r).String(), n)
			}
		}
	}
	return attrs
}

// endpointAttrs describes the endpoint allocator for a summary.
func (e *engine) endpointAttrs(attrs []any) []any {
	if e.rw.eps == nil {
		return attrs
	}
	es := e.rw.eps.stats()
	return append(attrs, "connections", es.Conns, "copies_requested", es.Conns*uint64(e.rw.copies),
		"copies_made", es.Copies, "multiplication", fmt.Sprintf("%.2f", es.Multiplication()),
		"endpoints_exhausted", es.Exhausted, "endpoint_probes", es.Probes)
}

// logOffline writes the offline replay's summary.
func (e *engine) logOffline(src *offlineSource) {
	st := e.stats()
	r := &e.replayed
	attrs := []any{"file", src.path, "passes", src.passes, "records", src.records.Load(), "ip_packets", src.packets.Load(),
		"relevant", r.relevant.Load(), "non_ip", src.nonIP.Load(), "filtered", src.filtered.Load(),
		"unsupported_link", src.unlinked.Load(), "cut_records", src.cut.Load(), "unmatched", e.unmatched.Load(), "invalid", e.invalid.Load(),
		"truncated", e.truncated.Load(),
		"gaps_skipped", r.gaps.Load(), "time_skipped", time.Duration(r.skipped.Load()), "gaps_above_max", r.bounded.Load(),
		"caplen_above_snaplen", src.capAboveSnap.Load(), "origlen_below_caplen", src.origBelowCap.Load(),
		"max_lag", time.Duration(r.maxLag.Load()).Round(time.Microsecond), "elapsed", time.Duration(r.elapsed.Load()).Round(time.Millisecond),
		"sessions", st.Opened, "requests", st.Requests,
		"reproduced", st.ClosedBy(tcpstate.Reproduced), "partial", st.ClosedBy(tcpstate.Partial), "failed", st.ClosedBy(tcpstate.Failed),
		"fidelity", fmt.Sprintf("%.4f", st.Fidelity())}
	if b, r := st.Uncopied(); b > 0 {
		attrs = append(attrs, "uncopied_bytes", b, "uncopied_requests", r)
	}
	attrs = e.endpointAttrs(attrs)
	attrs = e.udpAttrs(attrs, true)
	attrs = outcomeAttrs(&st, attrs)
	e.log.Info("offline replay finished", attrs...)
	if n := e.truncated.Load(); n > 0 {
		e.log.Warn("packets of the capture were cut by its snap length: their payload could not be replayed (record with tcpdump -s 0)", "truncated", n)
	}
	switch {
	case src.records.Load() == 0:
		e.log.Warn("the offline file holds no packet (only its header): nothing was replayed; was the capture stopped before the traffic?",
			"file", src.path)
	case r.relevant.Load() == 0:
		e.log.Warn("no packet of the file matched -x: check the mappings' online address and port against the capture",
			"mappings", fmt.Sprint(e.cfg.Mappings), "ip_packets", src.packets.Load(), "invalid", e.invalid.Load())
	}
}
