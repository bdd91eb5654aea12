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

// link is one tcpcopy connection.
type link struct {
	id     router.Owner
	conn   net.Conn
	rw     io.ReadWriter // conn, or raw I/O on it (rawio)
	remote netip.AddrPort
	since  time.Time

	format atomic.Pointer[wire.Format] // nil until the handshake is done

	mu      sync.Mutex
	batch   *wire.Batcher // the frame being filled
	out     []byte        // complete frames not yet taken by the writer
	maxOut  int
	closing bool

	wake chan struct{} // capacity 1: the writer has work
	done chan struct{} // closed when the link is closed

	records atomic.Uint64 // records queued for sending
	dropped atomic.Uint64 // records dropped: queue full
	unfit   atomic.Uint64 // records the link's format cannot carry
	routes  atomic.Uint64 // route messages received
}

func newLink(id router.Owner, conn net.Conn, maxOut int) *link {
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
		since:  time.Now(),
		maxOut: maxOut,
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
	l.mu.Lock()
	if l.batch != nil && l.batch.Len() > 0 {
		l.out = append(l.out, l.batch.Bytes()...)
	}
	l.batch = wire.NewBatcher(f, limit)
	l.mu.Unlock()
	l.format.Store(&f)
}

// enqueue adds one record to the pending frame. It reports false when the
// record was dropped because the link's queue is full or the link is
// closing. It does not allocate once the buffers have grown.
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
	if len(l.out)+len(l.batch.Bytes()) >= l.maxOut {
		l.dropped.Add(1)
		return false
	}
	// Add refuses only when the frame is full; a packet the format cannot
	// carry (IPv6 on a version-6 link) is dropped and counted by the
	// Batcher.
	dropped := l.batch.Dropped()
	if !l.batch.AddHashed(hdr, payloadLen, ts, prefix, hash, hashed) {
		l.out = append(l.out, l.batch.Bytes()...)
		l.batch.Reset()
		l.batch.AddHashed(hdr, payloadLen, ts, prefix, hash, hashed)
	}
	if l.batch.Dropped() != dropped {
		l.unfit.Add(1)
		return false
	}
	l.records.Add(1)
	return true
}

// flush closes the pending frame and wakes the writer.
func (l *link) flush() {
	l.mu.Lock()
	if l.batch != nil && l.batch.Len() > 0 {
		l.out = append(l.out, l.batch.Bytes()...)
		l.batch.Reset()
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

// writeLoop sends queued frames until the link closes. Buffers are swapped,
// not copied: the capture side fills one while this goroutine writes the
// other.
func (l *link) writeLoop(onErr func(error)) {
	var buf []byte
	for {
		select {
		case <-l.wake:
		case <-l.done:
			return
		}
		l.mu.Lock()
		buf, l.out = l.out, buf[:0]
		l.mu.Unlock()
		if len(buf) == 0 {
			continue
		}
		_ = l.conn.SetWriteDeadline(time.Now().Add(writeTimeout))
		if _, err := l.rw.Write(buf); err != nil {
			onErr(err)
			return
		}
	}
}

// close marks the link closing and closes its connection; idempotent.
func (l *link) close() bool {
	l.mu.Lock()
	if l.closing {
		l.mu.Unlock()
		return false
	}
	l.closing = true
	l.mu.Unlock()
	close(l.done)
	_ = l.conn.Close()
	return true
}
