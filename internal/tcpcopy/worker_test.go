package tcpcopy

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/pkg/inject"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// wireTap is a sender that plays a path to a TCP target for the worker
// tests: the kernel refuses packets above refuseAbove with EMSGSIZE (and
// tells that MTU, as inject.Sender.PathMTU does), and a receiver takes
// in-order data and answers through the dispatcher like intercept, after
// the test calls deliver.
type wireTap struct {
	mu          sync.Mutex
	refuseAbove int
	got         []byte // in-order payload received
	rcvNxt      uint32
	ooo         map[uint32][]byte // out-of-order segments, by seq
	sizes       []int
	tsvals      []uint32
	pureAcks    []uint32 // acknowledgement numbers of pure ACKs
	answers     [][]byte // response headers waiting for deliver
	answerLen   []int
}

func (w *wireTap) PathMTU(netip.Addr) int { return w.refuseAbove }

func (w *wireTap) Send(pkt []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.refuseAbove > 0 && len(pkt) > w.refuseAbove {
		return inject.ErrTooBig
	}
	var p ipmangle.Parsed
	p.Decode(pkt)
	w.sizes = append(w.sizes, len(pkt))
	if p.HasTS() {
		w.tsvals = append(w.tsvals, p.TSVal)
	}
	if p.Flags == ipmangle.ACK && p.PayloadLen == 0 {
		w.pureAcks = append(w.pureAcks, p.Ack)
	}
	reply := func(flags ipmangle.TCPFlags, seq, ack uint32, n int) {
		f := ipmangle.Fields{Src: p.Dst, Dst: p.Src, Seq: seq, Ack: ack, Flags: flags, Window: 65535, WScale: -1}
		if flags&ipmangle.SYN != 0 {
			f.MSS, f.WScale = 1460, 7
		}
		if p.HasTS() {
			f.HasTS, f.TSVal, f.TSEcr = true, 1, p.TSVal
		}
		w.answers = append(w.answers, build(f))
		w.answerLen = append(w.answerLen, n)
	}
	const isn = 70000
	switch {
	case p.Flags&ipmangle.SYN != 0:
		w.rcvNxt = p.Seq + 1
		reply(ipmangle.SYN|ipmangle.ACK, isn, w.rcvNxt, 0)
	case p.PayloadLen > 0 && p.Seq == w.rcvNxt:
		w.got = append(w.got, p.Payload(pkt)...)
		w.rcvNxt += uint32(p.PayloadLen)
		for b, ok := w.ooo[w.rcvNxt]; ok; b, ok = w.ooo[w.rcvNxt] {
			delete(w.ooo, w.rcvNxt)
			w.got = append(w.got, b...)
			w.rcvNxt += uint32(len(b))
		}
		reply(ipmangle.ACK, isn+1, w.rcvNxt, 0)
	case p.PayloadLen > 0:
		if int32(p.Seq-w.rcvNxt) > 0 {
			if w.ooo == nil {
				w.ooo = map[uint32][]byte{}
			}
			w.ooo[p.Seq] = bytes.Clone(p.Payload(pkt))
		}
		reply(ipmangle.ACK, isn+1, w.rcvNxt, 0) // a duplicate ACK
	}
	return nil
}

// deliver hands the answers sent so far to the engine as intercept
// records, one batch.
func (w *wireTap) deliver(b *batch) {
	w.mu.Lock()
	as, ns := w.answers, w.answerLen
	w.answers, w.answerLen = nil, nil
	w.mu.Unlock()
	for i, hdr := range as {
		b.Record(&wire.Record{Header: hdr, PayloadLen: ns[i]})
	}
	b.Flush()
}

func (w *wireTap) snapshot() (got []byte, sizes []int, tsvals, pureAcks []uint32) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return bytes.Clone(w.got), slices.Clone(w.sizes), slices.Clone(w.tsvals), slices.Clone(w.pureAcks)
}

// tapEngine is an engine of one worker sending through tap, with routes
// always accepted.
func tapEngine(t *testing.T, tap *wireTap) *engine {
	t.Helper()
	cfg := Default()
	cfg.Mappings = []Mapping{{Online: benchOnline, Target: benchTarget}}
	cfg.Intercepts = []netip.AddrPort{netip.MustParseAddrPort("198.51.100.130:36524")}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e := newEngine(&cfg, tap, slog.New(slog.DiscardHandler))
	for _, w := range e.disp.workers {
		w.links = acceptRoutes{}
	}
	return e
}

// TestWorkerTooBig: packets the kernel refuses as too big (EMSGSIZE) are
// handed to the engine at the end of the batch, which sends their data
// again in segments of the MTU the kernel reported; nothing is lost and
// nothing counts as a send error.
func TestWorkerTooBig(t *testing.T) {
	tap := &wireTap{refuseAbove: 1400}
	e := tapEngine(t, tap)
	b := e.disp.newBatch()
	var p ipmangle.Parsed
	capture := func(f ipmangle.Fields) {
		now := e.now()
		e.handleCaptured(build(f), &p, nil, nil, b, now, false)
		b.flush(now)
	}
	capture(ipmangle.Fields{Src: benchClient, Dst: benchOnline, Seq: 1000, Flags: ipmangle.SYN, Window: 65535, MSS: 1460, WScale: -1})
	tap.deliver(b)
	// A client without timestamps: full 1460-byte segments, which our
	// timestamps option makes 1512 bytes unless split.
	var want []byte
	seq := uint32(1001)
	for i := range 4 {
		body := bytes.Repeat([]byte{'a' + byte(i)}, 1460)
		capture(ipmangle.Fields{Src: benchClient, Dst: benchOnline, Seq: seq, Ack: 9001, Flags: ipmangle.ACK, Window: 512, WScale: -1, Payload: body})
		want = append(want, body...)
		seq += 1460
	}
	for range 5 {
		tap.deliver(b)
	}
	got, sizes, _, _ := tap.snapshot()
	if !bytes.Equal(got, want) {
		t.Errorf("the target got %d bytes, want %d", len(got), len(want))
	}
	for _, n := range sizes {
		if n > 1400 {
			t.Errorf("a %d-byte packet was sent, the path takes 1400", n)
		}
	}
	w := e.disp.workers[0]
	w.mu.Lock()
	w.publish()
	w.mu.Unlock()
	s := e.snapshot()
	if s.tooBig == 0 || s.sendErrors != 0 || s.st.Resent == 0 || s.st.Opened != 1 || s.st.Active != 1 {
		t.Errorf("too big %d, send errors %d, resent %d, %d sessions, %d active: want some, none, some, 1, 1", s.tooBig, s.sendErrors, s.st.Resent, s.st.Opened, s.st.Active)
	}
}

// TestClockStep runs a session while the wall clock is an hour away from
// the engine's clock, as after a step of the wall clock (NTP, an
// operator) since tcpcopy started. Everything, the worker's timers
// included, runs on the engine's clock: the session is not ended as idle,
// its timers fire, and TSval never goes backwards (the target's PAWS check
// would drop every segment after it).
func TestClockStep(t *testing.T) {
	for _, step := range []time.Duration{-time.Hour, time.Hour} {
		t.Run(step.String(), func(t *testing.T) {
			tap := &wireTap{}
			e := tapEngine(t, tap)
			start := time.Now()
			clk := &clock{base: start.Add(-step).UnixNano(), since: func() time.Duration { return time.Since(start) }}
			e.now = clk.now
			ctx, cancel := context.WithCancel(context.Background())
			var wg sync.WaitGroup
			for _, w := range e.disp.workers {
				wg.Go(func() { w.run(ctx) })
			}
			b := e.disp.newBatch()
			var p ipmangle.Parsed
			capture := func(f ipmangle.Fields) {
				now := e.now()
				e.handleCaptured(build(f), &p, nil, nil, b, now, false)
				b.flush(now)
			}
			capture(ipmangle.Fields{Src: benchClient, Dst: benchOnline, Seq: 1000, Flags: ipmangle.SYN, Window: 65535, MSS: 1460, WScale: -1})
			tap.deliver(b)
			capture(ipmangle.Fields{Src: benchClient, Dst: benchOnline, Seq: 1001, Ack: 9001, Flags: ipmangle.PSH | ipmangle.ACK, Window: 512, WScale: -1, Payload: []byte("GET / HTTP/1.1\r\n\r\n")})
			tap.deliver(b)
			// The target answers; its ACK is delayed (--ack-delay) and
			// sent by the worker's timer.
			hdr := build(ipmangle.Fields{Src: benchTarget, Dst: benchClient, Seq: 70001, Ack: 1019, Flags: ipmangle.PSH | ipmangle.ACK, Window: 65535, WScale: -1, HasTS: true, TSVal: 2})
			b.Record(&wire.Record{Header: hdr, PayloadLen: 100})
			b.Flush()
			time.Sleep(200 * time.Millisecond)
			w := e.disp.workers[0]
			w.mu.Lock()
			st := w.tab.Stats()
			w.mu.Unlock()
			cancel()
			wg.Wait()

			_, _, tsvals, acks := tap.snapshot()
			if st.Active != 1 || st.ClosedBy(0)+st.ClosedBy(1)+st.ClosedBy(2) != 0 {
				t.Errorf("active %d, closed %v: the session must live on", st.Active, st.Closed)
			}
			if !slices.Contains(acks, 70101) {
				t.Errorf("pure ACKs %v: the timer did not acknowledge the answer (ack 70101)", acks)
			}
			for i := 1; i < len(tsvals); i++ {
				if int32(tsvals[i]-tsvals[i-1]) < 0 || tsvals[i]-tsvals[i-1] > 10_000 {
					t.Errorf("TSval went from %d to %d", tsvals[i-1], tsvals[i])
				}
			}
		})
	}
}

// TestClock: the engine's clock starts at the wall clock and advances by
// the monotonic clock only.
func TestClock(t *testing.T) {
	var mono time.Duration
	c := &clock{base: 1_700_000_000e9, since: func() time.Duration { return mono }}
	if c.now() != 1_700_000_000e9 {
		t.Errorf("now = %d at the start", c.now())
	}
	mono = 1500 * time.Millisecond
	if c.now() != 1_700_000_001_500_000_000 {
		t.Errorf("now = %d after 1.5 s", c.now())
	}
	s := systemClock()
	a := s.now()
	if d := time.Duration(a - time.Now().UnixNano()); d > time.Second || d < -time.Second {
		t.Errorf("system clock %v from the wall clock at the start", d)
	}
	if b := s.now(); b < a {
		t.Errorf("system clock went back: %d then %d", a, b)
	}
}
