package tcpcopy

import (
	"context"
	"errors"
	"hash/maphash"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/logging"
	"github.com/tcpcopy-go/tcpcopy/internal/mysqlcopy"
	"github.com/tcpcopy-go/tcpcopy/pkg/compare"
	"github.com/tcpcopy-go/tcpcopy/pkg/inject"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/tcpstate"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// sender is what workers send with; *inject.Sender in production.
type sender interface {
	Send(pkt []byte) error
}

// mtuTeller is a sender that can tell the path MTU toward a destination
// (inject.Sender, inject.LinkSender): 0 if it cannot.
type mtuTeller interface {
	PathMTU(dst netip.Addr) int
}

// router announces routes; *Links in production.
type router interface {
	Route(r wire.Route) bool
	// Flush sends the route messages queued so far.
	Flush()
}

// sendCounters are the raw-send outcomes, shared by the workers.
type sendCounters struct {
	sent, errors, tooBig atomic.Uint64
}

// timerSlack is the granularity of the session timers: a worker's timer
// fires at most once per timerSlack and runs every session due by then.
// The engine's timers are retransmission timeouts (200 ms and more),
// pacing waits and time-outs, none of which a millisecond changes.
const timerSlack = time.Millisecond

// worker owns one tcpstate.Table and the sessions hashed to it. Nothing
// queues in front of it: the goroutine that read a packet (a capture loop,
// the offline replay) or a response record (an intercept link's reader)
// runs it through the table itself, under the worker's lock, and ends its
// batch of input with endBatch. So a packet costs no hand-off between
// goroutines, no copy and no thread wake-up. The worker's own goroutine
// (run) only fires the session timers.
type worker struct {
	id    int
	snd   sender
	links router
	mtu   int
	now   func() int64 // the engine's clock (clock.go)
	log   *slog.Logger
	sc    *sendCounters
	warn  *logging.Limiter
	shed  *atomic.Bool
	// overload counts SYNs refused because the capture had fallen behind.
	overload atomic.Uint64

	mu     sync.Mutex // guards everything below
	tab    *tcpstate.Table
	p      ipmangle.Parsed
	routed bool        // a route message was queued since the last Flush
	timer  *time.Timer // fires run's Tick
	armed  int64       // when timer fires, Unix ns; 0 when stopped
	// With a raw-socket sender, the packets the table sends in a batch
	// are copied into MTU-sized slots of outBuf and sent together at its
	// end, with one sendmmsg per run of the same IP version.
	batcher *inject.Batcher
	out     [][]byte
	outBuf  []byte
	failFn  func(pkt []byte, err error)
	// cmp is the response comparison of the worker's sessions; nil when
	// it is off.
	cmp *compareState
	// my is the MySQL module of the worker's MySQL sessions; nil when it
	// is off (mysql.go).
	my *mysqlState
	// refused holds the headers of the packets the kernel refused as too
	// big in this batch, for the table to send their data again in
	// smaller segments when the batch ends (the table cannot be called
	// back from its own Send); spare is the other buffer of the two.
	refused, spare []refusal

	statsMu  sync.Mutex
	stats    tcpstate.Stats
	cmpStats compare.Stats
	myStats  mysqlcopy.Stats
	myConns  int
}

// refusal is the start of a packet refused as too big: its IP and TCP
// headers, which say whose data it was.
type refusal struct {
	hdr [refusalBytes]byte
	n   int
}

// refusalBytes holds any IP and TCP header we build (40 + 20 + 12).
const refusalBytes = 128

// maxRefused bounds the refusals kept per batch; more are counted as
// send errors.
const maxRefused = 64

func newWorker(id int, cfg *Config, tc tcpstate.Config, snd sender, links router, sc *sendCounters, shed *atomic.Bool, now func() int64, log *slog.Logger) *worker {
	w := &worker{
		id: id, snd: snd, links: links, mtu: cfg.MTU, now: now, log: log, sc: sc, shed: shed,
		warn:    logging.NewLimiter(10 * time.Second),
		timer:   time.NewTimer(time.Hour),
		refused: make([]refusal, 0, maxRefused),
		spare:   make([]refusal, 0, maxRefused),
	}
	w.timer.Stop()
	if s, ok := snd.(*inject.Sender); ok {
		n := min(max(sendBatchBytes/cfg.MTU, 4), 64)
		w.batcher = s.NewBatcher(n)
		w.out = make([][]byte, 0, n)
		w.outBuf = make([]byte, n*cfg.MTU)
		w.failFn = w.sendFailed
	}
	w.tab = tcpstate.New(tc, w)
	return w
}

// sendBatchBytes bounds the memory of a worker's batch of packets to send.
const sendBatchBytes = 256 << 10

// Send implements tcpstate.Output. With a batcher the packet waits for the
// end of the batch (endBatch): copied, since the table reuses its buffer.
func (w *worker) Send(pkt []byte) {
	if w.batcher == nil || len(pkt) > w.mtu {
		w.sendNow(pkt)
		return
	}
	if len(w.out) == cap(w.out) {
		w.flushSends()
	}
	i := len(w.out) * w.mtu
	w.out = append(w.out, w.outBuf[i:i+copy(w.outBuf[i:i+w.mtu], pkt)])
}

// flushSends sends the packets of the batch.
func (w *worker) flushSends() {
	if len(w.out) == 0 {
		return
	}
	n := w.batcher.Send(w.out, w.failFn)
	w.sc.sent.Add(uint64(n))
	clear(w.out)
	w.out = w.out[:0]
}

// sendNow sends one packet at once.
func (w *worker) sendNow(pkt []byte) {
	if err := w.snd.Send(pkt); err != nil {
		w.sendFailed(pkt, err)
		return
	}
	w.sc.sent.Add(1)
}

// sendFailed handles a packet the sender refused: a send error never stops
// anything; it is counted and logged at a limited rate, and the session's
// retransmission timer sends the data again. A packet over the path MTU
// is kept for the table (refusals), which sends its data again in
// segments that fit, at once. mu is held.
func (w *worker) sendFailed(pkt []byte, err error) {
	if errors.Is(err, inject.ErrTooBig) {
		w.sc.tooBig.Add(1)
		if len(w.refused) < cap(w.refused) {
			w.refused = w.refused[:len(w.refused)+1]
			r := &w.refused[len(w.refused)-1]
			r.n = copy(r.hdr[:], pkt)
			return
		}
	}
	w.sc.errors.Add(1)
	if ok, n := w.warn.Allow(time.Now()); ok {
		w.log.Warn("sending to the target failed; packet dropped", "err", err, "suppressed", n)
	}
}

// maxRefusalRounds bounds the rounds of sending refused data again in a
// batch: each round lowers the path MTU, so a few reach any path.
const maxRefusalRounds = 16

// handleRefused gives the table the packets refused as too big in this
// batch, with the path MTU toward their target if the sender can tell,
// and sends what it sends again in their place; those may be refused in
// turn, until they fit. mu is held.
func (w *worker) handleRefused(now int64) {
	for round := 0; len(w.refused) > 0; round++ {
		if round == maxRefusalRounds {
			w.sc.errors.Add(uint64(len(w.refused)))
			w.refused = w.refused[:0]
			return
		}
		mt, _ := w.snd.(mtuTeller)
		// Sends below may be refused again, into the other buffer.
		batch := w.refused
		w.refused = w.spare
		for i := range batch {
			r := &batch[i]
			mtu := 0
			if mt != nil {
				w.p.Decode(r.hdr[:r.n])
				if w.p.Valid {
					mtu = mt.PathMTU(w.p.Dst.Addr())
				}
			}
			w.tab.TooBig(now, r.hdr[:r.n], mtu)
		}
		w.flushSends()
		w.spare = batch[:0]
	}
}

// Request implements tcpstate.Output: the response comparison times the
// target's answers from here.
func (w *worker) Request(k tcpstate.Key, ack uint32, now int64) {
	if w.cmp != nil {
		if c := w.cmp.conns[k]; c != nil {
			if w.my != nil && w.my.handles(k) {
				ack += w.my.droppedOnline(k) // back to the captured acknowledgement
			}
			c.Requested(now, ack)
		}
	}
}

// AnswerPending implements tcpstate.Output: the comparison knows the
// target's answer goes on (its head's Content-Length). mu is held.
func (w *worker) AnswerPending(k tcpstate.Key) bool {
	if w.cmp == nil {
		return false
	}
	c := w.cmp.conns[k]
	return c != nil && c.TargetPending()
}

// Route implements tcpstate.Output.
func (w *worker) Route(k tcpstate.Key, add bool) bool {
	if w.cmp != nil {
		w.cmp.route(k, add, w.my != nil && w.my.handles(k))
	}
	op := wire.RouteAdd
	if !add {
		op = wire.RouteDel
	}
	w.routed = true
	return w.links.Route(wire.Route{Client: k.Client, Target: k.Target, Op: op})
}

// client runs one captured client packet of session k, at most MTU bytes,
// through the table. p is its decoding, or nil. backedUp says the capture
// has fallen behind: a new session is then refused (counted as overload),
// since taking it would make every session late; packets of the sessions
// we have are still taken. at is when the packet was captured, for the
// comparison's response times (now: when it is handled).
func (w *worker) client(now, at int64, k tcpstate.Key, pkt []byte, p *ipmangle.Parsed, backedUp bool) {
	w.mu.Lock()
	if p == nil {
		w.p.Decode(pkt)
		p = &w.p
	}
	// The comparison sees a request before the table sends it (its slot
	// must be there for Output.Request), except a SYN or a connection's
	// first packet: the table opens the comparison's Conn (Route).
	early := w.cmp != nil && p.Valid && p.Flags&ipmangle.SYN == 0 && w.cmp.conns[k] != nil
	if early {
		w.cmp.client(at, k, pkt, p)
	}
	switch {
	case !p.Valid:
	case w.my != nil && w.my.handles(k):
		w.my.client(now, k, pkt, p) // MySQL: the module feeds the table
	case backedUp && p.Flags&ipmangle.SYN != 0 && p.Flags&ipmangle.ACK == 0:
		w.overload.Add(1)
		w.tab.Overload(true)
		w.tab.Client(now, k, pkt, p)
		w.tab.Overload(false)
	default:
		w.tab.Client(now, k, pkt, p)
	}
	if w.cmp != nil && p.Valid && !early {
		w.cmp.client(at, k, pkt, p)
	}
	w.mu.Unlock()
}

// online runs one packet of the online server's answer on session k's
// connection (p its decoding, payload what was captured of its payload)
// through the response comparison.
func (w *worker) online(now int64, k tcpstate.Key, p *ipmangle.Parsed, payload []byte) {
	w.mu.Lock()
	if w.cmp != nil {
		w.cmp.online(now, k, p, payload)
	}
	if w.my != nil && w.my.handles(k) {
		w.my.online(now, k, p, payload)
	}
	w.mu.Unlock()
}

// response runs one response record of session k (p is its header's
// decoding) through the table.
func (w *worker) response(now int64, k tcpstate.Key, p *ipmangle.Parsed, rec *wire.Record) {
	w.mu.Lock()
	if w.cmp != nil {
		// First, so that the table's pacing knows the answer's length
		// (AnswerPending).
		ack, ok := p.Ack, true
		if w.my != nil && w.my.handles(k) {
			// A MySQL session's target acknowledges the sent stream: back
			// to the captured command; our own login's answers are not
			// compared.
			ack, ok = w.my.capturedAck(k, p.Ack)
		}
		if ok || rec.PayloadLen == 0 {
			w.cmp.target(now, k, p, ack, rec.PayloadLen, rec.Prefix, rec.Hash, rec.Hashed)
		}
	}
	w.tab.Response(now, k, p, rec.PayloadLen)
	if w.my != nil && w.my.handles(k) {
		w.my.target(now, k, p, rec)
	}
	w.mu.Unlock()
}

// endBatch ends a batch of input: the owed acknowledgements and the route
// messages go out, and the timer is brought forward if a session needs it
// sooner.
func (w *worker) endBatch(now int64) {
	w.mu.Lock()
	w.endBatchLocked(now)
	w.mu.Unlock()
}

func (w *worker) endBatchLocked(now int64) {
	if d := w.tab.NextDeadline(); d != 0 && d <= now {
		// Timers that are due ride along with the batch instead of waking
		// the worker's goroutine.
		w.tab.Tick(now)
	}
	w.tab.Flush(now)
	w.flushSends()
	w.handleRefused(now)
	if w.routed {
		w.routed = false
		w.links.Flush()
	}
	d := w.tab.NextDeadline()
	if d == 0 {
		return
	}
	// Round up to the slack, so that sessions due close together share a
	// wake-up.
	if r := d % int64(timerSlack); r != 0 {
		d += int64(timerSlack) - r
	}
	if w.armed == 0 || d < w.armed || w.armed <= now {
		w.armed = d
		w.timer.Reset(time.Duration(d - now))
	}
}

// run fires the session timers and publishes the statistics until ctx
// ends, then closes every session with RST.
func (w *worker) run(ctx context.Context) {
	publish := time.NewTicker(500 * time.Millisecond)
	defer publish.Stop()
	for {
		select {
		case <-w.timer.C:
			w.mu.Lock()
			now := w.now()
			w.armed = 0
			w.tab.Tick(now)
			w.endBatchLocked(now)
			w.mu.Unlock()
		case <-publish.C:
			w.mu.Lock()
			w.tab.Shed(w.shed.Load())
			if w.cmp != nil {
				w.cmp.tick(w.now())
			}
			if w.my != nil {
				now := w.now()
				w.my.tick(now)
				w.endBatchLocked(now)
			}
			w.publish()
			w.mu.Unlock()
		case <-ctx.Done():
			w.closeAll()
			return
		}
	}
}

// closeAll ends every session (RST to the target) at shutdown.
func (w *worker) closeAll() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.timer.Stop()
	now := w.now()
	w.tab.Flush(now)
	w.handleRefused(now)
	w.tab.CloseAll(now)
	w.tab.Flush(now)
	w.flushSends()
	w.refused = w.refused[:0] // no session is left to send them
	if w.cmp != nil {
		w.cmp.finishAll(now)
	}
	w.publish()
}

// publish copies the table's statistics for snapshot; mu is held.
func (w *worker) publish() {
	st := w.tab.Stats()
	var cs compare.Stats
	if w.cmp != nil {
		cs = w.cmp.eng.Stats()
	}
	var ms mysqlcopy.Stats
	conns := 0
	if w.my != nil {
		ms, conns = w.my.st, len(w.my.conns)
	}
	w.statsMu.Lock()
	w.stats = st
	w.cmpStats = cs
	w.myStats, w.myConns = ms, conns
	w.statsMu.Unlock()
}

func (w *worker) snapshot() tcpstate.Stats {
	w.statsMu.Lock()
	defer w.statsMu.Unlock()
	return w.stats
}

// compareSnapshot returns the published comparison counts.
func (w *worker) compareSnapshot() compare.Stats {
	w.statsMu.Lock()
	defer w.statsMu.Unlock()
	return w.cmpStats
}

// dispatcher hands packets to the worker that owns their session: the
// hash of the client endpoint the target sees, for client packets and
// response records alike.
type dispatcher struct {
	workers []*worker
	seed    maphash.Seed
	now     func() int64 // the engine's clock
	// Records received, and those dropped as undecodable.
	records, badRecord atomic.Uint64
	// udp takes the UDP records (the target's UDP answers); nil without
	// UDP mappings or intercepts. udpCmp compares them with the online
	// server's; nil without udp or with the comparison off.
	udp    *udpTracker
	udpCmp *udpComparer
}

func (d *dispatcher) workerFor(client netip.AddrPort) *worker {
	if len(d.workers) == 1 {
		return d.workers[0]
	}
	return d.workers[maphash.Comparable(d.seed, client)%uint64(len(d.workers))]
}

// batch is what one reading goroutine (a capture loop, a link reader, the
// offline replay) gave the workers since it last flushed: the workers
// whose batch must be ended before that goroutine waits for more input.
type batch struct {
	d       *dispatcher
	touched []bool // by worker id
	list    []*worker
	p       ipmangle.Parsed // a record's decoding
	now     int64           // a link batch's time, 0 when empty
	// at is when the kernel captured the packet being handled, on the
	// engine's clock (0: unknown, now), for the comparison's response
	// times: a batch of packets is handled at one now.
	at  int64
	udp *udpScratch // the UDP path's buffers of this goroutine (udp.go), nil until used
}

func (d *dispatcher) newBatch() *batch {
	return &batch{d: d, touched: make([]bool, len(d.workers)), list: make([]*worker, 0, len(d.workers))}
}

func (b *batch) worker(client netip.AddrPort) *worker {
	w := b.d.workerFor(client)
	if !b.touched[w.id] {
		b.touched[w.id] = true
		b.list = append(b.list, w)
	}
	return w
}

// client runs one captured client packet (at most MTU bytes) of session k
// through its worker; p is its decoding, or nil.
func (b *batch) client(now int64, k tcpstate.Key, pkt []byte, p *ipmangle.Parsed, backedUp bool) {
	b.worker(k.Client).client(now, b.time(now), k, pkt, p, backedUp)
}

// time is when the packet being handled was captured (at), or now.
func (b *batch) time(now int64) int64 {
	if b.at != 0 {
		return b.at
	}
	return now
}

// Record runs one response record from intercept through its session's
// worker: a Sink for Links. The records of a batch share the time of the
// first.
func (b *batch) Record(rec *wire.Record) {
	if b.now == 0 {
		b.now = b.d.now()
	}
	b.record(b.now, rec)
}

// record runs rec through its session's worker at now.
func (b *batch) record(now int64, rec *wire.Record) {
	b.d.records.Add(1)
	if rec.UDP() {
		if b.d.udp == nil {
			b.d.badRecord.Add(1)
			return
		}
		if _, sent, ok := b.d.udp.answer(now, rec); ok && b.d.udpCmp != nil {
			b.d.udpCmp.targetAnswer(now, rec, sent)
		}
		return
	}
	b.p.Decode(rec.Header)
	if !b.p.Valid {
		b.d.badRecord.Add(1)
		return
	}
	k := tcpstate.Key{Client: b.p.Dst, Target: b.p.Src}
	b.worker(k.Client).response(now, k, &b.p, rec)
}

// Flush ends the batch, at the time of its records.
func (b *batch) Flush() {
	if b.now != 0 {
		b.flush(b.now)
		b.now = 0
	}
}

// flush ends the batch at now in every worker it touched.
func (b *batch) flush(now int64) {
	for i, w := range b.list {
		w.endBatch(now)
		b.touched[w.id] = false
		b.list[i] = nil
	}
	b.list = b.list[:0]
}
