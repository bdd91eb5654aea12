package intercept

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

var testSecret = []byte("a test secret of thirty-two bytes")

// rawLink is a tcpcopy side that the tests script byte by byte.
type rawLink struct {
	t    *testing.T
	conn net.Conn
	rr   *wire.RecordReader
}

func dialRaw(t *testing.T, addr string) *rawLink {
	t.Helper()
	return dialRawFrom(t, "", addr)
}

func dialRawFrom(t *testing.T, from, addr string) *rawLink {
	t.Helper()
	var d net.Dialer
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	conn, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &rawLink{t: t, conn: conn, rr: wire.NewRecordReader(conn, wire.Format{Version: wire.Version6, Combined: true})}
}

func (r *rawLink) write(b []byte) {
	r.t.Helper()
	if _, err := r.conn.Write(b); err != nil {
		r.t.Fatal(err)
	}
}

// closed waits until the server closes the connection.
func (r *rawLink) closed() {
	r.t.Helper()
	r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(r.conn); err != nil && !isReset(err) {
		r.t.Fatalf("link not closed by the server: %v", err)
	}
}

// authenticate plays a Go tcpcopy's side of the exchange with secret and
// returns the Hello's format and whether intercept's proof was right.
func (r *rawLink) authenticate(secret []byte) (wire.Format, bool) {
	r.t.Helper()
	r.write(wire.AppendOffer(nil, true))
	r.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer r.conn.SetReadDeadline(time.Time{})
	f, err := r.rr.ReadHello()
	if err != nil || !f.Auth {
		r.t.Fatalf("hello %+v, %v: want one asking for authentication", f, err)
	}
	ni, err := r.rr.ReadChallenge()
	if err != nil {
		r.t.Fatal(err)
	}
	nt, _ := wire.NewNonce()
	r.write(wire.AppendAuth(nil, wire.Auth{Nonce: nt, MAC: wire.TcpcopyMAC(secret, ni, nt)}))
	mi, err := r.rr.ReadAuthOK()
	if err != nil {
		return f, false
	}
	return f, wire.EqualMAC(mi, wire.InterceptMAC(secret, ni, nt))
}

func TestAuthenticatedLinks(t *testing.T) {
	cfg := testConfig()
	cfg.Secret = testSecret
	cfg.HandshakeTimeout = 300 * time.Millisecond
	s, addr := startServer(t, cfg)

	good := dialRaw(t, addr)
	if _, ok := good.authenticate(testSecret); !ok {
		t.Fatal("intercept's proof is wrong")
	}
	route, _ := wire.AppendRoute(nil, wire.Format{Version: wire.Version7}, wire.Route{Client: netip.MustParseAddrPort("192.0.2.10:40000"), Target: netip.MustParseAddrPort(target4), Op: wire.RouteAdd})
	good.write(route)
	waitFor(t, "route", func() bool { return s.Stats().Routes == 1 })

	tests := []struct {
		name  string
		play  func(r *rawLink)
		cause closeCause
	}{
		{"version 6 (C tcpcopy)", func(r *rawLink) { r.write(wire.AppendOffer(nil, false)); r.write(route) }, causeVersion6},
		{"wrong secret", func(r *rawLink) {
			if _, ok := r.authenticate([]byte("another secret, just as long....")); ok {
				t.Error("a wrong secret got a valid proof")
			}
		}, causeAuth},
		{"route instead of auth (an older tcpcopy)", func(r *rawLink) {
			r.write(wire.AppendOffer(nil, true))
			r.write(route)
		}, causeAuth},
		{"replayed auth of another connection", func(r *rawLink) {
			r.write(wire.AppendOffer(nil, true))
			var ni, nt wire.Nonce // a recording made under another challenge
			r.write(wire.AppendAuth(nil, wire.Auth{Nonce: nt, MAC: wire.TcpcopyMAC(testSecret, ni, nt)}))
		}, causeAuth},
		{"silent after the offer", func(r *rawLink) { r.write(wire.AppendOffer(nil, true)) }, causeHandshakeTimeout},
		{"silent", func(r *rawLink) {}, causeHandshakeTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.Stats().Closed[tt.cause]
			r := dialRaw(t, addr)
			tt.play(r)
			r.closed()
			waitFor(t, "close counted", func() bool { return s.Stats().Closed[tt.cause] == before+1 })
			if st := s.Stats(); st.Routes != 1 || st.Links != 1 {
				t.Errorf("routes %d, links %d: want only the good link's", st.Routes, st.Links)
			}
		})
	}
	injectBatch(s, response(t, target4, "192.0.2.10:40000", ipmangle.ACK, ""))
	good.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if !good.rr.Next() {
		t.Fatalf("the authenticated link got no record: %v", good.rr.Err())
	}
	if st := s.Stats(); st.Authenticated != 1 {
		t.Errorf("Authenticated = %d", st.Authenticated)
	}
}

// TestNoSecretUnchanged: without a secret a version-6 link and a version-7
// link shake hands as before (no auth flag, no challenge).
func TestNoSecretUnchanged(t *testing.T) {
	s, addr := startServer(t, testConfig())
	a := dial(t, addr, false, 0)
	b := dial(t, addr, true, 0)
	if b.f.Auth {
		t.Error("hello asks for authentication without a secret")
	}
	a.route("192.0.2.10:40000", target4)
	b.route("192.0.2.10:40001", target4)
	waitFor(t, "routes", func() bool { return s.Stats().Routes == 2 })
}

// TestIdleLinkGivesItsSlot: with --max-links in use, a newcomer takes
// the slot of a link that announced no route for --link-idle, or of one
// stuck in its handshake, but only from an address holding more links than
// its own; links with routes keep theirs.
func TestIdleLinkGivesItsSlot(t *testing.T) {
	cfg := testConfig()
	cfg.MaxLinks = 3
	cfg.LinkIdle = time.Minute
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	s, addr := startServerWith(t, cfg, func(s *Server) {
		s.now = func() time.Time { return time.Unix(0, now.Load()) }
	})
	const other, third = "127.0.0.2", "127.0.0.3"
	busy := dialFrom(t, other, addr, false, 0)
	busy.route("192.0.2.10:40000", target4)
	idle := dialRawFrom(t, other, addr)
	idle.write(wire.AppendOffer(nil, false))
	silent := dialRawFrom(t, other, addr) // never completes its handshake
	waitFor(t, "three links", func() bool { return s.Stats().Links == 3 && s.Stats().Routes == 1 })
	waitFor(t, "two handshakes", func() bool { return upLinks(s) == 2 })

	// Nothing idle or stuck long enough yet: the newcomer is refused.
	dialRawFrom(t, third, addr).closed()
	if st := s.Stats(); st.Refused != 1 || st.Links != 3 {
		t.Fatalf("stats %+v: want the newcomer refused", st)
	}
	// The handshake that never came gives way first.
	now.Add(int64(time.Second))
	late := dialFrom(t, third, addr, false, 0)
	silent.closed()
	late.route("192.0.2.10:40001", target4)
	waitFor(t, "late link routed", func() bool { return s.Stats().Routes == 2 })
	// A newcomer from the idle link's own address may not push it out.
	now.Add(int64(2 * time.Minute))
	dialRawFrom(t, other, addr).closed()
	if st := s.Stats(); st.Refused != 2 || st.Links != 3 {
		t.Fatalf("stats %+v: a link of the same address gave way", st)
	}
	// One from an address with fewer links may.
	third2 := dialFrom(t, "127.0.0.4", addr, false, 0)
	idle.closed()
	third2.route("192.0.2.10:40002", target4)
	waitFor(t, "third link routed", func() bool { return s.Stats().Routes == 3 })
	if st := s.Stats(); st.Closed[causeIdle] != 1 || st.Closed[causeHandshakeTimeout] != 1 || st.Links != 3 {
		t.Errorf("stats %+v: want one idle and one stuck link closed for newcomers", st)
	}
	// Every link has routes now: nobody gives way.
	now.Add(int64(time.Hour))
	dialRawFrom(t, "127.0.0.5", addr).closed()
	if st := s.Stats(); st.Refused != 3 {
		t.Errorf("stats %+v: a link with routes was pushed out", st)
	}
	injectBatch(s, response(t, target4, "192.0.2.10:40000", ipmangle.ACK, ""), response(t, target4, "192.0.2.10:40001", ipmangle.ACK, ""),
		response(t, target4, "192.0.2.10:40002", ipmangle.ACK, ""))
	busy.read(1)
	late.read(1)
	third2.read(1)
}

// upLinks counts the links that completed their handshake.
func upLinks(s *Server) int {
	n := 0
	for _, l := range *s.links.Load() {
		if l.upAt.Load() != 0 {
			n++
		}
	}
	return n
}

func TestRoutesPerLinkCap(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRoutesPerLink = 5
	s, addr := startServer(t, cfg)
	flood := dial(t, addr, true, 0)
	other := dial(t, addr, false, 0)
	other.route("192.0.2.99:40000", target4)
	for i := range 20 {
		flood.route(fmt.Sprintf("192.0.2.10:%d", 40000+i), target4)
	}
	waitFor(t, "route messages", func() bool { return s.Stats().RouteMsgs == 21 })
	st := s.Stats()
	if st.Routes != 6 || st.Table.RefusedOwnerFull != 15 {
		t.Errorf("routes %d, refused %d: want 6 and 15", st.Routes, st.Table.RefusedOwnerFull)
	}
	for _, ls := range s.LinkStats() {
		want := 5
		if ls.Routes == 1 {
			want = 1
		}
		if ls.RoutesHeld != want {
			t.Errorf("link %d holds %d routes, want %d", ls.ID, ls.RoutesHeld, want)
		}
	}
	injectBatch(s, response(t, target4, "192.0.2.99:40000", ipmangle.ACK, ""))
	other.read(1)
}

// TestQueueMemoryBound: a link that never reads holds at most
// --queue-bytes in its buffers, slack included; the records it lost when
// it closed are counted as dropped, not as sent.
func TestQueueMemoryBound(t *testing.T) {
	cfg := testConfig()
	cfg.QueueBytes = 256 << 10
	s, addr := startServer(t, cfg)
	slow := dial(t, addr, true, 0)
	slow.route("192.0.2.10:40000", target4)
	waitFor(t, "route", func() bool { return s.Stats().Routes == 1 })
	pkt := response(t, target4, "192.0.2.10:40000", ipmangle.ACK|ipmangle.PSH, strings.Repeat("x", 100))
	l := (*s.links.Load())[s.LinkStats()[0].ID]
	batch := make([][]byte, 500)
	for i := range batch {
		batch[i] = pkt
	}
	// Fill the socket buffers and the queue until the writer is stuck:
	// nothing more is written for a while.
	peak, lastSent, stuck := 0, uint64(0), 0
	for range 4000 {
		injectBatch(s, batch...)
		peak = max(peak, l.memBytes())
		st := s.Stats()
		if st.Dropped > 1000 && st.Routed == lastSent {
			if stuck++; stuck == 20 {
				break
			}
			time.Sleep(5 * time.Millisecond)
		} else {
			stuck = 0
		}
		lastSent = st.Routed
	}
	if peak > cfg.QueueBytes {
		t.Errorf("the slow link's buffers held %d bytes, above --queue-bytes %d", peak, cfg.QueueBytes)
	}
	if s.Stats().Dropped == 0 {
		t.Fatal("nothing dropped: the link's queue never filled")
	}
	// The link's queue is full: records wait in intercept's buffers.
	l.mu.Lock()
	pending := l.outN + l.inflight + l.batch.Len()
	l.mu.Unlock()
	before := s.Stats()
	slow.conn.Close()
	waitFor(t, "link closed", func() bool { return s.Stats().Links == 0 })
	st := s.Stats()
	if pending == 0 || st.Dropped-before.Dropped != uint64(pending) || st.Routed != before.Routed {
		t.Errorf("%d records were queued at close: dropped grew by %d, sent by %d; want them all dropped",
			pending, st.Dropped-before.Dropped, st.Routed-before.Routed)
	}
	if st.Routed+st.Dropped != st.Captured {
		t.Errorf("sent %d + dropped %d != captured %d", st.Routed, st.Dropped, st.Captured)
	}
}

// countHandler counts log records by message.
type countHandler struct {
	mu sync.Mutex
	n  map[string]int
}

func (h *countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h *countHandler) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	h.n[r.Message]++
	h.mu.Unlock()
	return nil
}
func (h *countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *countHandler) WithGroup(string) slog.Handler      { return h }

func (h *countHandler) total() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, c := range h.n {
		n += c
	}
	return n
}

// TestLinkLogsLimited: a burst of garbage connections, failed
// authentications, idle closes and refused routes writes a few lines per
// cause, not one per connection.
func TestLinkLogsLimited(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h := &countHandler{n: map[string]int{}}
	cfg := testConfig()
	cfg.Secret = testSecret
	cfg.MaxLinks = 1000
	s := NewServer(cfg, slog.New(h))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	addr := ln.Addr().String()
	const n = 300
	for i := range n {
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		switch i % 3 {
		case 0:
			conn.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
		case 1:
			conn.Write(wire.AppendOffer(nil, false))
		case 2:
			conn.Write(append(wire.AppendOffer(nil, true), wire.AppendAuth(nil, wire.Auth{})...))
		}
		conn.(*net.TCPConn).CloseWrite()
		io.Copy(io.Discard, conn)
		conn.Close()
	}
	waitFor(t, "every link closed", func() bool { return s.Stats().LinksTotal == n && s.Stats().Links == 0 })
	if got := h.total(); got > 3*int(numCauses) {
		t.Errorf("%d connections wrote %d log lines: %v", n, got, h.n)
	}
}

// TestEnqueueAllocs: queueing a record on a link, moving full frames to
// the write buffer, and dropping past --queue-bytes allocate nothing once
// the buffers have grown to their bound.
func TestEnqueueAllocs(t *testing.T) {
	var sent, dropped atomic.Uint64
	l := newLink(1, nopConn{}, time.Now(), 256<<10, linkCounters{sent: &sent, dropped: &dropped})
	l.setFormat(wire.Format{Version: wire.Version7, PrefixLen: 64}, 16)
	pkt := response(t, target4, "192.0.2.10:40000", ipmangle.ACK|ipmangle.PSH, strings.Repeat("x", 100))
	var p ipmangle.Parsed
	p.Decode(pkt)
	hdr, prefix := pkt[:p.PayloadOffset], p.Payload(pkt)
	fill := func() {
		for range 4000 { // beyond the bound: the last ones are dropped
			l.enqueue(hdr, p.PayloadLen, 1, prefix)
		}
		l.flush()
		l.mu.Lock()
		l.out, l.outN = l.out[:0], 0 // what the writer's swap leaves
		l.mu.Unlock()
	}
	fill() // grow the buffers
	if allocs := testing.AllocsPerRun(20, fill); allocs != 0 {
		t.Errorf("enqueue allocates %v times per round", allocs)
	}
	if m := l.memBytes(); m > 256<<10 {
		t.Errorf("link buffers hold %d bytes, above the bound", m)
	}
	if l.dropped.Load() == 0 {
		t.Error("nothing dropped past the bound")
	}
}

func TestLogExposure(t *testing.T) {
	tests := []struct {
		name   string
		listen string
		allow  bool
		secret bool
		want   string // the message's start, "" for none
	}{
		{"open", "0.0.0.0:36524", false, false, "anyone who can reach the listen address"},
		{"open on an address", "203.0.113.30:36524", false, false, "anyone who can reach the listen address"},
		{"loopback", "127.0.0.1:36524", false, false, ""},
		{"allow", "0.0.0.0:36524", true, false, "tcpcopy links are accepted from the --allow networks only"},
		{"secret", "0.0.0.0:36524", false, true, "tcpcopy links must prove the shared secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := &countHandler{n: map[string]int{}}
			cfg := testConfig()
			cfg.Listen = netip.MustParseAddrPort(tt.listen)
			if tt.allow {
				cfg.Allow = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
			}
			if tt.secret {
				cfg.Secret = testSecret
			}
			logExposure(&cfg, slog.New(h))
			got := ""
			for msg := range h.n {
				got = msg
			}
			if !strings.HasPrefix(got, tt.want) || (tt.want == "") != (got == "") {
				t.Errorf("logged %q, want %q...", got, tt.want)
			}
		})
	}
}
