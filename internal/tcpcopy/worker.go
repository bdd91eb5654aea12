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
	"github.com/tcpcopy-go/tcpcopy/pkg/inject"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/tcpstate"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// itemsPerWorker bounds the packets queued for one worker; past it the
// capture or link side drops and counts.
const itemsPerWorker = 2048

// item carries one captured client packet or one response record to a
// worker. Items are recycled through the worker's free list, so the hot
// path allocates nothing.
type item struct {
	record     bool
	key        tcpstate.Key
	payloadLen int // record: the response's real payload length
	n          int
	buf        []byte
}

// sender is what workers send with; *inject.Sender in production.
type sender interface {
	Send(pkt []byte) error
}

// router announces routes; *Links in production.
type router interface {
	Route(r wire.Route) bool
	// Flush sends the route messages queued so far.
	Flush()
}

// sendCounters are the raw-send outcomes, shared by the workers.
type sendCounters struct {
	sent, errors, tooBig, resegmented atomic.Uint64
}

// worker owns one tcpstate.Table and the sessions hashed to it.
type worker struct {
	id    int
	tab   *tcpstate.Table
	in    chan *item
	free  chan *item
	snd   sender
	links router
	mtu   int
	log   *slog.Logger
	sc    *sendCounters
	warn  *logging.Limiter
	shed  *atomic.Bool
	// overload counts SYNs refused because the worker's queue was backed
	// up.
	overload atomic.Uint64
	seg      ipmangle.Segmenter
	routed   bool // a route message was queued since the last Flush
	segb     []byte
	p        ipmangle.Parsed

	statsMu sync.Mutex
	stats   tcpstate.Stats
}

func newWorker(id int, cfg *Config, tc tcpstate.Config, snd sender, links router, sc *sendCounters, shed *atomic.Bool, log *slog.Logger) *worker {
	w := &worker{
		id: id, snd: snd, links: links, mtu: cfg.MTU, log: log, sc: sc, shed: shed,
		in:   make(chan *item, itemsPerWorker),
		free: make(chan *item, itemsPerWorker),
		warn: logging.NewLimiter(10 * time.Second),
		segb: make([]byte, cfg.MTU),
	}
	size := max(cfg.MTU, 512)
	for range itemsPerWorker {
		w.free <- &item{buf: make([]byte, size)}
	}
	w.tab = tcpstate.New(tc, w)
	return w
}

// Send implements tcpstate.Output: a send error never stops anything; it
// is counted and logged at a limited rate. A packet over the path MTU is
// split and sent again.
func (w *worker) Send(pkt []byte) {
	err := w.snd.Send(pkt)
	if err == nil {
		w.sc.sent.Add(1)
		return
	}
	if errors.Is(err, inject.ErrTooBig) {
		w.sc.tooBig.Add(1)
		if w.resend(pkt) {
			return
		}
	}
	w.sc.errors.Add(1)
	if ok, n := w.warn.Allow(time.Now()); ok {
		w.log.Warn("sending to the target failed; packet dropped", "err", err, "suppressed", n)
	}
}

// resend splits pkt into segments of at most 1280 bytes (the IPv6 minimum
// MTU) after EMSGSIZE: the path to the target has a smaller MTU than -M.
func (w *worker) resend(pkt []byte) bool {
	w.p.Decode(pkt)
	if !w.p.Valid || !w.seg.Reset(pkt, &w.p, min(w.mtu, 1280)) {
		return false
	}
	for s := w.seg.Next(w.segb); s != nil; s = w.seg.Next(w.segb) {
		if w.snd.Send(s) != nil {
			return false
		}
		w.sc.resegmented.Add(1)
	}
	return true
}

// Route implements tcpstate.Output.
func (w *worker) Route(k tcpstate.Key, add bool) bool {
	op := wire.RouteAdd
	if !add {
		op = wire.RouteDel
	}
	w.routed = true
	return w.links.Route(wire.Route{Client: k.Client, Target: k.Target, Op: op})
}

// get returns a free item, or nil when the worker is saturated.
func (w *worker) get() *item {
	select {
	case it := <-w.free:
		return it
	default:
		return nil
	}
}

// run processes items and timers until ctx ends, then closes every
// session with RST.
func (w *worker) run(ctx context.Context) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	armed := int64(0)
	publish := time.NewTicker(500 * time.Millisecond)
	defer publish.Stop()
	for {
		select {
		case it := <-w.in:
			w.handle(it)
			// Drain what else is queued before looking at timers.
			for n := 0; n < 256; n++ {
				select {
				case it := <-w.in:
					w.handle(it)
					continue
				default:
				}
				break
			}
			w.tab.Flush(time.Now().UnixNano())
		case <-timer.C:
			armed = 0
			w.tab.Tick(time.Now().UnixNano())
		case <-publish.C:
			w.tab.Shed(w.shed.Load())
			w.publish()
		case <-ctx.Done():
			w.drainAndClose()
			return
		}
		if w.routed {
			w.routed = false
			w.links.Flush()
		}
		if d := w.tab.NextDeadline(); d != 0 && (armed == 0 || d < armed) {
			armed = d
			timer.Reset(time.Duration(d - time.Now().UnixNano()))
		}
	}
}

// overloadMark is the queue depth past which a worker refuses new
// sessions: a backlog means the sessions it has are already late, and
// taking more would make every one of them fail together (the C TCPCopy
// collapse). Packets of existing sessions are still taken.
const overloadMark = itemsPerWorker / 2

func (w *worker) handle(it *item) {
	now := time.Now().UnixNano()
	pkt := it.buf[:it.n]
	w.p.Decode(pkt)
	switch {
	case !w.p.Valid:
	case it.record:
		w.tab.Response(now, it.key, &w.p, it.payloadLen)
	case w.p.Flags&ipmangle.SYN != 0 && w.p.Flags&ipmangle.ACK == 0 && len(w.in) > overloadMark:
		w.overload.Add(1)
		w.tab.Overload(true)
		w.tab.Client(now, it.key, pkt, &w.p)
		w.tab.Overload(false)
	default:
		w.tab.Client(now, it.key, pkt, &w.p)
	}
	w.free <- it
}

// drainAndClose ends every session (RST to the target) at shutdown.
func (w *worker) drainAndClose() {
	for {
		select {
		case it := <-w.in:
			w.free <- it
			continue
		default:
		}
		break
	}
	now := time.Now().UnixNano()
	w.tab.Flush(now)
	w.tab.CloseAll(now)
	w.publish()
}

func (w *worker) publish() {
	st := w.tab.Stats()
	w.statsMu.Lock()
	w.stats = st
	w.statsMu.Unlock()
}

func (w *worker) snapshot() tcpstate.Stats {
	w.statsMu.Lock()
	defer w.statsMu.Unlock()
	return w.stats
}

// dispatcher hands packets to the worker that owns their session: the
// hash of the client endpoint the target sees, for client packets and
// response records alike.
type dispatcher struct {
	workers []*worker
	seed    maphash.Seed
	// Drops, by cause.
	busy, badRecord atomic.Uint64
	records         atomic.Uint64
}

func (d *dispatcher) workerFor(client netip.AddrPort) *worker {
	return d.workers[maphash.Comparable(d.seed, client)%uint64(len(d.workers))]
}

// client queues one captured client packet (at most MTU bytes) of session
// k. pkt is copied.
func (d *dispatcher) client(k tcpstate.Key, pkt []byte) {
	w := d.workerFor(k.Client)
	it := w.get()
	if it == nil || len(pkt) > len(it.buf) {
		if it != nil {
			w.free <- it
		}
		d.busy.Add(1)
		return
	}
	it.record = false
	it.key = k
	it.n = copy(it.buf, pkt)
	w.in <- it
}

// record queues one response record from intercept. It runs on a link's
// reader goroutine; rec is copied.
func (d *dispatcher) record(rec *wire.Record) {
	d.records.Add(1)
	var p ipmangle.Parsed
	p.Decode(rec.Header)
	if !p.Valid {
		d.badRecord.Add(1)
		return
	}
	k := tcpstate.Key{Client: p.Dst, Target: p.Src}
	w := d.workerFor(k.Client)
	it := w.get()
	if it == nil || len(rec.Header) > len(it.buf) {
		if it != nil {
			w.free <- it
		}
		d.busy.Add(1)
		return
	}
	it.record = true
	it.key = k
	it.payloadLen = rec.PayloadLen
	it.n = copy(it.buf, rec.Header)
	w.in <- it
}
