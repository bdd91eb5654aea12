package intercept

import (
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/rawio"
	"github.com/tcpcopy-go/tcpcopy/pkg/router"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// writeTimeout is how long a link's write may block before the link is
// considered dead: tcpcopy stopped reading.
const writeTimeout = 10 * time.Second

// shrinkAbove: after a write, the writer gives back a buffer larger than
// this, so that a link that had a burst (or a slow reader that caught up)
// does not keep its peak memory.
const shrinkAbove = 256 << 10

// linkCounters are the server's counters a link updates itself: records
// are counted as sent when they were written to the socket, and as dropped
// when they were lost in the link's queue (full, or the link closed with
// records still queued).
type linkCounters struct {
	sent, dropped *atomic.Uint64
}

// link is one tcpcopy connection.
//
// Memory: the records waiting for the writer (out), those being written
// (the writer's buffer) and the frame being filled (batch) together never
// hold more than the link's budget (--queue-bytes), slack of the buffers
// included: out and the writer's buffer each grow to at most bufMax, and
// the batch has a fixed size.
type link struct {
	id     router.Owner
	conn   net.Conn
	rw     io.ReadWriter // conn, or raw I/O on it (rawio)
	remote netip.AddrPort
	since  time.Time // accepted
	c      linkCounters

	format atomic.Pointer[wire.Format] // nil until the handshake is done
	upAt   atomic.Int64                // Unix ns the handshake completed; 0 before
	routed atomic.Bool                 // announced at least one route
	authed atomic.Bool                 // proved the shared secret

	budget int // --queue-bytes

	mu       sync.Mutex
	batch    *wire.Batcher // the frame being filled
	out      []byte        // complete frames not yet taken by the writer
	outN     int           // records in out
	inflight int           // records the writer is writing
	bufMax   int           // most bytes out (and the writer's buffer) may hold
	closing  bool

	wake chan struct{} // capacity 1: the writer has work
	done chan struct{} // closed when the link is closed

	records atomic.Uint64 // records written to the link
	dropped atomic.Uint64 // records dropped: queue full, or lost when the link closed
	unfit   atomic.Uint64 // records the link's format cannot carry
	routes  atomic.Uint64 // route messages received
	refused atomic.Uint64 // route adds refused (--max-routes-per-link, table full)
	skipped atomic.Uint64 // messages the reader skipped
	wcap    atomic.Int64  // capacity of the writer's buffer
	ocap    atomic.Int64  // capacity of out
}

func newLink(id router.Owner, conn net.Conn, since time.Time, budget int, c linkCounters) *link {
	ap, _ := netip.ParseAddrPort(conn.RemoteAddr().String())
	var rw io.ReadWriter = conn
	if r := rawio.New(conn); r != nil {
		rw = r
	}
	return &link{
		id:     id,
		conn:   conn,
		rw:     rw,
		remote: ap,
		since:  since,
		c:      c,
		budget: budget,
		wake:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
}

// setFormat installs the negotiated format; records are accepted from then
// on.
func (l *link) setFormat(f wire.Format, maxCombined int) {
	limit := maxCombined
	if f.Version == wire.Version7 {
		limit = 0 // bounded by wire.MaxBatchBytes
	}
	f.Auth = false // the Batcher only encodes
	b := wire.NewBatcher(f, limit)
	l.mu.Lock()
	if l.batch != nil && l.batch.Len() > 0 {
		l.moveBatchLocked()
	}
	l.batch = b
	l.bufMax = max((l.budget-b.Cap())/2, 0)
	l.mu.Unlock()
	l.format.Store(&f)
}

// recordRoom is the most bytes one record can add to a batch: a version-6
// payload record with its combined count, or a version-7 message with the
// headers and prefix given.
func recordRoom(hdr, prefix []byte) int {
	return max(wire.PayloadRecordSize+2, 24+len(hdr)+len(prefix))
}

// enqueue adds one record to the pending frame. It reports false when the
// record was not queued: the link's queue is full (counted in the link's
// dropped), the format cannot carry it (unfit), or the link is closing.
// It does not allocate once the buffers have grown.
func (l *link) enqueue(hdr []byte, payloadLen int, ts int64, prefix []byte) bool {
	return l.enqueueHashed(hdr, payloadLen, ts, prefix, 0, false)
}

// enqueueHashed is enqueue with the payload's hash (the response
// comparison, version 7).
func (l *link) enqueueHashed(hdr []byte, payloadLen int, ts int64, prefix []byte, hash uint64, hashed bool) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closing || l.batch == nil {
		return false
	}
	if len(l.out)+len(l.batch.Bytes())+recordRoom(hdr, prefix) > l.bufMax {
		l.dropped.Add(1)
		return false
	}
	// Add refuses only when the frame is full; a packet the format cannot
	// carry (IPv6 on a version-6 link) is dropped and counted by the
	// Batcher.
	dropped := l.batch.Dropped()
	if !l.batch.AddHashed(hdr, payloadLen, ts, prefix, hash, hashed) {
		l.moveBatchLocked()
		l.batch.AddHashed(hdr, payloadLen, ts, prefix, hash, hashed)
	}
	if l.batch.Dropped() != dropped {
		l.unfit.Add(1)
		return false
	}
	return true
}

// moveBatchLocked appends the pending frame to out and empties it. The
// room check of enqueue guarantees that it fits in bufMax; out grows by
// doubling, never beyond bufMax.
func (l *link) moveBatchLocked() {
	b := l.batch.Bytes()
	if need := len(l.out) + len(b); need > cap(l.out) {
		nb := make([]byte, len(l.out), min(max(2*cap(l.out), need, 4096), max(l.bufMax, need)))
		copy(nb, l.out)
		l.out = nb
		l.ocap.Store(int64(cap(nb)))
	}
	l.out = append(l.out, b...)
	l.outN += l.batch.Len()
	l.batch.Reset()
}

// flush closes the pending frame and wakes the writer.
func (l *link) flush() {
	l.mu.Lock()
	if l.batch != nil && l.batch.Len() > 0 {
		l.moveBatchLocked()
	}
	pending := len(l.out) > 0
	l.mu.Unlock()
	if pending {
		select {
		case l.wake <- struct{}{}:
		default:
		}
	}
}

// memBytes returns the bytes the link's buffers hold (their capacities).
func (l *link) memBytes() int {
	n := int(l.ocap.Load() + l.wcap.Load())
	l.mu.Lock()
	if l.batch != nil {
		n += l.batch.Cap()
	}
	l.mu.Unlock()
	return n
}

// writeLoop sends queued frames until the link closes. Buffers are swapped,
// not copied: the capture side fills one while this goroutine writes the
// other. Records count as sent once written.
func (l *link) writeLoop(onErr func(error)) {
	var buf []byte
	for {
		select {
		case <-l.wake:
		case <-l.done:
			return
		}
		l.mu.Lock()
		if l.closing {
			l.mu.Unlock()
			return
		}
		buf, l.out = l.out, buf[:0]
		n := l.outN
		l.outN, l.inflight = 0, n
		l.ocap.Store(int64(cap(l.out)))
		l.wcap.Store(int64(cap(buf)))
		l.mu.Unlock()
		if len(buf) == 0 {
			continue
		}
		_ = l.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := l.rw.Write(buf); err != nil {
			onErr(err) // closes the link, which counts the inflight records as dropped
			return
		}
		l.mu.Lock()
		if !l.closing {
			l.inflight = 0
			l.records.Add(uint64(n))
			l.c.sent.Add(uint64(n))
		}
		l.mu.Unlock()
		if cap(buf) > shrinkAbove {
			buf = nil
			l.wcap.Store(0)
		}
	}
}

// close marks the link closing, counts the records it still held as
// dropped, and closes its connection; idempotent. It reports whether this
// call closed it.
func (l *link) close() bool {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return false
	}
	l.closing = true
	lost := l.outN + l.inflight
	if l.batch != nil {
		lost += l.batch.Len()
		l.batch.Reset()
	}
	l.outN, l.inflight, l.out = 0, 0, nil
	l.ocap.Store(0)
	l.mu.Unlock()
	if lost > 0 {
		l.dropped.Add(uint64(lost))
		l.c.dropped.Add(uint64(lost))
	}
	close(l.done)
	_ = l.conn.Close()
	return true
}
