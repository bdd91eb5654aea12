package tcpcopy

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/intercept"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// These tests run Links against two kinds of intercept on loopback: the
// real one (internal/intercept, for the handshake and route acceptance:
// its Stats count route messages and routes), and a fake written here,
// which can answer like a C intercept, send records on demand and
// misbehave.

var linkTestLog = slog.New(slog.DiscardHandler)

const (
	linkTarget4 = "203.0.113.20:8080"
	linkTarget6 = "[2001:db8:3::20]:8080"
)

// linkTestConfig returns short timeouts for servers. The wait for a Hello
// is long: our fakes answer at once, and a test that wants the fallback
// to a silent C intercept shortens it.
func linkTestConfig(servers ...string) LinkConfig {
	cfg := LinkConfig{
		HelloWait:   2 * time.Second,
		GiveUpAfter: 10 * time.Second,
		DialTimeout: time.Second,
	}
	for _, s := range servers {
		cfg.Servers = append(cfg.Servers, netip.MustParseAddrPort(s))
	}
	return cfg
}

// linkWaitFor polls cond until it holds or a few seconds pass.
func linkWaitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// linkRun is a running Links.
type linkRun struct {
	l      *Links
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// startLinks runs Links for cfg until the test ends; tweak (may be nil)
// changes it before Run.
func startLinks(t *testing.T, cfg LinkConfig, deliver func(*wire.Record), tweak func(*Links)) *linkRun {
	t.Helper()
	if deliver == nil {
		deliver = func(*wire.Record) {}
	}
	r := &linkRun{l: NewLinks(cfg, linkTestLog, func() Sink { return sinkFunc(deliver) }), done: make(chan struct{})}
	if tweak != nil {
		tweak(r.l)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() {
		r.err = r.l.Run(ctx)
		close(r.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after cancel")
		}
	})
	return r
}

// wait returns Run's error, failing if it does not return in time.
func (r *linkRun) wait(t *testing.T, timeout time.Duration) error {
	t.Helper()
	select {
	case <-r.done:
		return r.err
	case <-time.After(timeout):
		t.Fatalf("Run still running after %v", timeout)
		return nil
	}
}

func (r *linkRun) running() bool {
	select {
	case <-r.done:
		return false
	default:
		return true
	}
}

// startIntercept serves the real intercept on ln until stop or the end of
// the test.
func startIntercept(t *testing.T, ln net.Listener) (s *intercept.Server, stop func()) {
	t.Helper()
	return startInterceptWith(t, ln, nil)
}

// startInterceptWith is startIntercept with the configuration changed by
// mod (may be nil).
func startInterceptWith(t *testing.T, ln net.Listener, mod func(*intercept.Config)) (s *intercept.Server, stop func()) {
	t.Helper()
	cfg := intercept.Default()
	cfg.Filter = "tcp"
	cfg.StatsInterval = 0
	if mod != nil {
		mod(&cfg)
	}
	s = intercept.NewServer(cfg, linkTestLog)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("intercept Serve: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	return s, stop
}

func listenLoopback(t *testing.T, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	return ln
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	ln := listenLoopback(t, "127.0.0.1:0")
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

func route(op wire.RouteOp, client, target string) wire.Route {
	return wire.Route{Client: netip.MustParseAddrPort(client), Target: netip.MustParseAddrPort(target), Op: op}
}

// fakeMode is how a fake intercept answers an offer.
type fakeMode uint8

const (
	fakeV7     fakeMode = iota // a version-7 Hello (to a v7 offer), like ours
	fakeC                      // nothing, like C intercept
	fakeHello6                 // a version-6 Hello of format f
)

// fakeIntercept is a scriptable intercept.
type fakeIntercept struct {
	t        *testing.T
	mode     fakeMode
	f        wire.Format   // version-6 format (fakeC, fakeHello6, and v6 offers)
	early    int           // fakeC: records sent right after the offer (C --single)
	answer   []byte        // if set: hostile answer sent instead, then see closeAfter
	closeEnd bool          // close the connection after answer
	noRead   bool          // never read client messages (a stuck intercept)
	rcvBuf   int           // SO_RCVBUF of accepted connections, 0: default
	delay    time.Duration // fakeV7: wait this long before the Hello

	addr     string
	accepted chan *fakeConn

	mu    sync.Mutex
	ln    net.Listener
	conns []net.Conn
	wg    sync.WaitGroup
}

// fakeConn is one accepted connection, after the handshake.
type fakeConn struct {
	t     *testing.T
	conn  net.Conn
	offer wire.Offer
	f     wire.Format
	msgs  chan wire.Msg // closed when the stream ends
	batch *wire.Batcher
}

// newFake starts a fake intercept on a loopback port; setup (may be nil)
// sets its options first.
func newFake(t *testing.T, mode fakeMode, setup func(*fakeIntercept)) *fakeIntercept {
	t.Helper()
	fi := &fakeIntercept{
		t:        t,
		mode:     mode,
		f:        wire.Format{Version: wire.Version6, Combined: true},
		accepted: make(chan *fakeConn, 64),
	}
	if setup != nil {
		setup(fi)
	}
	fi.start("127.0.0.1:0")
	t.Cleanup(fi.stop)
	return fi
}

func (fi *fakeIntercept) start(addr string) {
	ln := listenLoopback(fi.t, addr)
	fi.mu.Lock()
	fi.ln = ln
	fi.addr = ln.Addr().String()
	fi.mu.Unlock()
	fi.wg.Add(1)
	go func() {
		defer fi.wg.Done()
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			if fi.rcvBuf > 0 {
				conn.(*net.TCPConn).SetReadBuffer(fi.rcvBuf)
			}
			fi.mu.Lock()
			fi.conns = append(fi.conns, conn)
			fi.mu.Unlock()
			fi.wg.Add(1)
			go func() {
				defer fi.wg.Done()
				fi.handle(conn)
			}()
		}
	}()
}

// stop closes the listener and every connection, like a killed intercept.
func (fi *fakeIntercept) stop() {
	fi.mu.Lock()
	fi.ln.Close()
	for _, c := range fi.conns {
		c.Close()
	}
	fi.conns = nil
	fi.mu.Unlock()
	fi.wg.Wait()
}

// restart stops the fake and starts it again on the same port.
func (fi *fakeIntercept) restart() {
	fi.stop()
	fi.start(fi.addr)
}

func (fi *fakeIntercept) handle(conn net.Conn) {
	rd := wire.NewRouteReader(conn)
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	off, err := rd.ReadOffer()
	if err != nil {
		conn.Close()
		return
	}
	conn.SetReadDeadline(time.Time{})
	if fi.answer != nil {
		conn.Write(fi.answer)
		if fi.closeEnd {
			conn.Close()
		}
		fi.publish(&fakeConn{t: fi.t, conn: conn, offer: off})
		return
	}
	f := fi.f
	switch {
	case fi.mode == fakeV7 && off.MaxVersion >= wire.Version7:
		f = wire.Format{Version: wire.Version7, PrefixLen: 256}
		rd.SetVersion(wire.Version7)
		time.Sleep(fi.delay)
		conn.Write(wire.AppendHello(nil, f))
	case fi.mode == fakeHello6 && off.MaxVersion >= wire.Version7:
		conn.Write(wire.AppendHello(nil, f))
	}
	fc := &fakeConn{t: fi.t, conn: conn, offer: off, f: f, msgs: make(chan wire.Msg, 1<<16), batch: wire.NewBatcher(f, 0)}
	if fi.mode == fakeC && fi.early > 0 {
		fc.records(1, fi.early, "", nil)
	}
	fi.publish(fc)
	if fi.noRead {
		return
	}
	for rd.Next() {
		fc.msgs <- rd.Msg()
	}
	close(fc.msgs)
}

// publish hands fc to next; past 64 waiting connections (a link that
// keeps redialling a hostile fake) they are not kept.
func (fi *fakeIntercept) publish(fc *fakeConn) {
	select {
	case fi.accepted <- fc:
	default:
	}
}

// next returns the next accepted connection.
func (fi *fakeIntercept) next(t *testing.T) *fakeConn {
	t.Helper()
	select {
	case fc := <-fi.accepted:
		fc.t = t
		return fc
	case <-time.After(5 * time.Second):
		t.Fatal("no connection accepted")
		return nil
	}
}

// linkPacket builds the target's response to the replayed client with
// sequence number seq.
func linkPacket(t *testing.T, seq uint32, payload string) []byte {
	t.Helper()
	f := ipmangle.Fields{
		Src: netip.MustParseAddrPort(linkTarget4), Dst: netip.MustParseAddrPort("192.0.2.10:40000"),
		Seq: seq, Ack: 1, Flags: ipmangle.ACK, Window: 512, WScale: -1, HasTS: true,
		Payload: []byte(payload),
	}
	b := make([]byte, f.Len())
	if f.Encode(b) == 0 {
		t.Fatal("encode failed")
	}
	return b
}

// records sends n records with sequence numbers from, from..from+n-1, in
// batches; extra (may be nil) is written after the first batch.
func (fc *fakeConn) records(from uint32, n int, payload string, extra []byte) {
	flush := func() {
		if b := fc.batch.Bytes(); b != nil {
			if _, err := fc.conn.Write(b); err != nil {
				fc.t.Errorf("fake intercept write: %v", err)
			}
			fc.batch.Reset()
		}
		if extra != nil {
			fc.conn.Write(extra)
			extra = nil
		}
	}
	for i := range n {
		pkt := linkPacket(fc.t, from+uint32(i), payload)
		if !fc.batch.Add(pkt, len(payload), 1, []byte(payload)) {
			flush()
			fc.batch.Add(pkt, len(payload), 1, []byte(payload))
		}
		if fc.batch.Full() {
			flush()
		}
	}
	flush()
}

// msg returns the next client message.
func (fc *fakeConn) msg() wire.Msg {
	fc.t.Helper()
	select {
	case m, ok := <-fc.msgs:
		if !ok {
			fc.t.Fatal("connection closed, no message")
		}
		return m
	case <-time.After(5 * time.Second):
		fc.t.Fatal("no client message")
		return wire.Msg{}
	}
}

// noMsg checks that no client message arrives within a short time.
func (fc *fakeConn) noMsg() {
	fc.t.Helper()
	select {
	case m, ok := <-fc.msgs:
		if ok {
			fc.t.Fatalf("unexpected client message %+v", m)
		}
	case <-time.After(100 * time.Millisecond):
	}
}

// linkGot is what a test keeps of a delivered record.
type linkGot struct {
	seq    uint32
	plen   int
	prefix string
}

// linkSink collects delivered records.
type linkSink struct{ ch chan linkGot }

func newSink() *linkSink { return &linkSink{ch: make(chan linkGot, 1<<15)} }

func (s *linkSink) deliver(rec *wire.Record) {
	s.ch <- linkGot{seq: binary.BigEndian.Uint32(rec.TCP()[4:]), plen: rec.PayloadLen, prefix: string(rec.Prefix)}
}

// expect reads n records and checks they carry sequence numbers from..,
// in order, and payload.
func (s *linkSink) expect(t *testing.T, from uint32, n int, payload string, prefix string) {
	t.Helper()
	for i := range n {
		select {
		case g := <-s.ch:
			want := linkGot{seq: from + uint32(i), plen: len(payload), prefix: prefix}
			if g != want {
				t.Fatalf("record %d = %+v, want %+v", i, g, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d of %d records", i, n)
		}
	}
}

func TestLinksV7WithIntercept(t *testing.T) {
	ln := listenLoopback(t, "127.0.0.1:0")
	srv, _ := startIntercept(t, ln)
	cfg := linkTestConfig(ln.Addr().String())
	cfg.PrefixLen = 64
	r := startLinks(t, cfg, nil, nil)
	linkWaitFor(t, "two links up", func() bool { return r.l.Up() == 2 && srv.Stats().Links == 2 })
	st := r.l.Stats()
	if got, want := st.Servers[0].Format, (wire.Format{Version: wire.Version7, PrefixLen: 64, UDP: true}); got != want || st.Servers[0].Up != 2 {
		t.Fatalf("server stats = %+v, want format %v and 2 up", st.Servers[0], want)
	}
	if !r.l.Route(route(wire.RouteAdd, "192.0.2.10:40000", linkTarget4)) {
		t.Fatal("IPv4 route not accepted")
	}
	if !r.l.Route(route(wire.RouteAdd, "[2001:db8:1::10]:40000", linkTarget6)) {
		t.Fatal("IPv6 route not accepted on a version-7 link")
	}
	linkWaitFor(t, "two routes", func() bool { st := srv.Stats(); return st.RouteMsgs == 2 && st.Routes == 2 })
	// A delete goes to both connections; the owner's removes the route.
	if !r.l.Route(route(wire.RouteDel, "192.0.2.10:40000", linkTarget4)) {
		t.Fatal("delete not sent on version-7 links")
	}
	linkWaitFor(t, "route deleted", func() bool { st := srv.Stats(); return st.RouteMsgs == 4 && st.Routes == 1 })
	if st := r.l.Stats(); st.RoutesSent != 4 || st.RoutesDropped != 0 || st.RoutesUnfit != 0 || st.Connects != 2 {
		t.Errorf("stats = %+v", st)
	}
}

func TestLinksWireVersion6WithIntercept(t *testing.T) {
	ln := listenLoopback(t, "127.0.0.1:0")
	srv, _ := startIntercept(t, ln)
	cfg := linkTestConfig(ln.Addr().String())
	cfg.WireVersion = wire.Version6
	cfg.ConnsPerServer = 1 // one stream: messages arrive in Route order
	r := startLinks(t, cfg, nil, nil)
	linkWaitFor(t, "link up", func() bool { return r.l.Up() == 1 })
	if got, want := r.l.Stats().Servers[0].Format, cfg.withDefaults().Fallback; got != want {
		t.Fatalf("format = %v, want %v", got, want)
	}
	if r.l.Route(route(wire.RouteAdd, "[2001:db8:1::10]:40000", linkTarget6)) {
		t.Error("IPv6 route accepted on a version-6 link")
	}
	if !r.l.Route(route(wire.RouteAdd, "192.0.2.10:40000", linkTarget4)) {
		t.Error("IPv4 route not accepted")
	}
	if r.l.Route(route(wire.RouteDel, "192.0.2.10:40000", linkTarget4)) {
		t.Error("delete sent on a version-6 link")
	}
	if !r.l.Route(route(wire.RouteAdd, "192.0.2.10:40001", linkTarget4)) {
		t.Error("IPv4 route not accepted")
	}
	// Had the delete been sent, it would have arrived before the second
	// add and been counted.
	linkWaitFor(t, "routes", func() bool { return srv.Stats().Routes == 2 })
	if st := srv.Stats(); st.RouteMsgs != 2 {
		t.Errorf("intercept got %d route messages, want 2", st.RouteMsgs)
	}
	if st := r.l.Stats(); st.RoutesUnfit != 1 || st.RoutesSent != 2 {
		t.Errorf("stats = %+v, want 1 unfit and 2 sent", st)
	}
}

func TestLinksRequireV7(t *testing.T) {
	t.Run("intercept", func(t *testing.T) {
		ln := listenLoopback(t, "127.0.0.1:0")
		startIntercept(t, ln)
		cfg := linkTestConfig(ln.Addr().String())
		cfg.WireVersion = wire.Version7
		r := startLinks(t, cfg, nil, nil)
		linkWaitFor(t, "links up", func() bool { return r.l.Up() == 2 })
		if v := r.l.Stats().Servers[0].Format.Version; v != wire.Version7 {
			t.Errorf("version %d, want 7", v)
		}
	})
	t.Run("C intercept", func(t *testing.T) {
		fi := newFake(t, fakeC, nil)
		cfg := linkTestConfig(fi.addr)
		cfg.WireVersion = wire.Version7
		cfg.GiveUpAfter = 500 * time.Millisecond
		cfg.HelloWait = 100 * time.Millisecond
		r := startLinks(t, cfg, nil, nil)
		err := r.wait(t, 5*time.Second)
		if err == nil || !strings.Contains(err.Error(), "version 7") || !errors.Is(err, errNeedV7Hello) {
			t.Fatalf("Run error = %v, want one about version 7", err)
		}
		if st := r.l.Stats(); st.Connects != 0 || st.Failures == 0 {
			t.Errorf("stats = %+v, want failures and no connect", st)
		}
	})
	t.Run("version-6 hello", func(t *testing.T) {
		fi := newFake(t, fakeHello6, nil)
		cfg := linkTestConfig(fi.addr)
		cfg.WireVersion = wire.Version7
		cfg.ConnsPerServer = 1
		r := startLinks(t, cfg, nil, nil)
		fi.next(t)
		linkWaitFor(t, "a failure", func() bool { return r.l.Stats().Failures > 0 })
		if r.l.Up() != 0 {
			t.Error("link up with a version-6 hello")
		}
	})
}

func TestLinksFallbackToC(t *testing.T) {
	pf := wire.Format{Version: wire.Version6, Combined: true, Payload: true}
	fi := newFake(t, fakeC, func(fi *fakeIntercept) { fi.f = pf })
	sink := newSink()
	cfg := linkTestConfig(fi.addr)
	cfg.ConnsPerServer = 1
	cfg.Fallback = pf
	cfg.PrefixLen = 64 // must not be sent to a C intercept
	cfg.HelloWait = 200 * time.Millisecond
	start := time.Now()
	r := startLinks(t, cfg, sink.deliver, nil)
	fc := fi.next(t)
	if fc.offer.MaxVersion != wire.Version7 || fc.offer.Type != wire.Version6 {
		t.Errorf("offer = %+v, want a version-7 offer", fc.offer)
	}
	linkWaitFor(t, "link up", func() bool { return r.l.Up() == 1 })
	if d := time.Since(start); d < cfg.HelloWait {
		t.Errorf("up after %v, before the hello wait %v ended", d, cfg.HelloWait)
	}
	if got := r.l.Stats().Servers[0].Format; got != pf {
		t.Errorf("format = %v, want the fallback %v", got, pf)
	}
	want := route(wire.RouteAdd, "192.0.2.10:40000", linkTarget4)
	if !r.l.Route(want) {
		t.Fatal("route not accepted")
	}
	if m := fc.msg(); m.Kind != wire.MsgRoute || m.Route != want {
		t.Fatalf("first message = %+v, want the route (no config)", m)
	}
	fc.records(1, 40, "HTTP/1.1 200 OK\r\n", nil)
	sink.expect(t, 1, 40, "HTTP/1.1 200 OK\r\n", "HTTP/1.1 200 OK\r\n")
}

func TestLinksLateHello(t *testing.T) {
	// The Hello comes after the wait: the connection falls back to
	// version 6, reads the Hello as a broken record stream and fails; the
	// slot waits longer next time and gets version 7.
	fi := newFake(t, fakeV7, func(fi *fakeIntercept) { fi.delay = 150 * time.Millisecond })
	cfg := linkTestConfig(fi.addr)
	cfg.ConnsPerServer = 1
	cfg.HelloWait = 50 * time.Millisecond
	r := startLinks(t, cfg, nil, nil)
	linkWaitFor(t, "version 7", func() bool {
		st := r.l.Stats()
		return st.Up == 1 && st.Servers[0].Format.Version == wire.Version7
	})
	if st := r.l.Stats(); st.Disconnects == 0 {
		t.Errorf("stats = %+v, want a failed first connection", st)
	}
	if w := r.l.servers[0].conns[0].helloWait; w <= cfg.HelloWait || w > linkMaxHelloGrowth*cfg.HelloWait {
		t.Errorf("hello wait = %v, want grown from %v", w, cfg.HelloWait)
	}
}

func TestLinksCSingleRecordsFirst(t *testing.T) {
	// A C intercept built with --single sends records without waiting for
	// routes: they end the wait for a Hello at once and are delivered.
	fi := newFake(t, fakeC, func(fi *fakeIntercept) { fi.early = 5 })
	sink := newSink()
	cfg := linkTestConfig(fi.addr)
	cfg.ConnsPerServer = 1
	cfg.HelloWait = 10 * time.Second
	start := time.Now()
	r := startLinks(t, cfg, sink.deliver, nil)
	sink.expect(t, 1, 5, "", "")
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("records after %v: waited for the hello", d)
	}
	if r.l.Up() != 1 {
		t.Error("link not up")
	}
}

func TestLinksHelloV6(t *testing.T) {
	hf := wire.Format{Version: wire.Version6, Combined: false, Payload: true}
	fi := newFake(t, fakeHello6, func(fi *fakeIntercept) { fi.f = hf })
	sink := newSink()
	cfg := linkTestConfig(fi.addr)
	cfg.ConnsPerServer = 1
	cfg.HelloWait = 10 * time.Second // a Hello must end the wait
	r := startLinks(t, cfg, sink.deliver, nil)
	fc := fi.next(t)
	linkWaitFor(t, "link up", func() bool { return r.l.Up() == 1 })
	if got := r.l.Stats().Servers[0].Format; got != hf {
		t.Errorf("format = %v, want the hello's %v", got, hf)
	}
	fc.records(100, 20, "abc", nil)
	sink.expect(t, 100, 20, "abc", "abc")
}

func TestLinksRecordsInOrder(t *testing.T) {
	fi := newFake(t, fakeV7, nil)
	sink := newSink()
	cfg := linkTestConfig(fi.addr)
	cfg.ConnsPerServer = 1
	cfg.PrefixLen = 16
	r := startLinks(t, cfg, sink.deliver, nil)
	fc := fi.next(t)
	if m := fc.msg(); m.Kind != wire.MsgConfig || m.Config.PrefixLen != 16 {
		t.Fatalf("first message = %+v, want config with prefix 16", m)
	}
	// An unknown version-7 message in the stream is skipped.
	unknown := []byte{0x00, 0x08, 0x90, 0x00, 0, 0, 0, 0}
	const n = 3000
	payload := "HTTP/1.1 200 OK\r\n"
	for i := 0; i < n; i += 500 {
		fc.records(uint32(1+i), 500, payload, unknown)
	}
	fc.records(n+1, 1, payload, nil) // the last skipped message counts once Next moves past it
	sink.expect(t, 1, n+1, payload, payload)
	st := r.l.Stats()
	if st.Records != n+1 || st.Skipped != n/500 || st.BytesIn == 0 {
		t.Errorf("stats = %+v, want %d records and %d skipped", st, n+1, n/500)
	}
	if st.Servers[0].Format.PrefixLen != 16 {
		t.Errorf("format = %v, want prefix 16", st.Servers[0].Format)
	}
}

func TestLinksRoutesRoundRobin(t *testing.T) {
	a := newFake(t, fakeV7, nil)
	b := newFake(t, fakeV7, nil)
	cfg := linkTestConfig(a.addr, b.addr)
	r := startLinks(t, cfg, nil, nil)
	conns := map[*fakeIntercept][]*fakeConn{
		a: {a.next(t), a.next(t)},
		b: {b.next(t), b.next(t)},
	}
	linkWaitFor(t, "four links up", func() bool { return r.l.Up() == 4 })
	const n = 100
	var want []wire.Route
	for i := range n {
		rt := route(wire.RouteAdd, fmt.Sprintf("192.0.2.10:%d", 10000+i), linkTarget4)
		want = append(want, rt)
		if !r.l.Route(rt) {
			t.Fatalf("route %d not accepted", i)
		}
	}
	for fi, cs := range conns {
		seen := map[wire.Route]int{}
		for _, fc := range cs {
			// Sequential calls alternate between the two connections.
			for range n / 2 {
				seen[fc.msg().Route]++
			}
			fc.noMsg()
		}
		for _, rt := range want {
			if seen[rt] != 1 {
				t.Errorf("%s got route %v %d times, want once", fi.addr, rt.Client, seen[rt])
			}
		}
	}
	if st := r.l.Stats(); st.RoutesSent != 2*n || st.Reannounced != 0 {
		t.Errorf("stats = %+v, want %d sent and nothing re-announced", st, 2*n)
	}
}

func TestLinksMixedVersions(t *testing.T) {
	v7 := newFake(t, fakeV7, nil)
	c := newFake(t, fakeC, func(fi *fakeIntercept) { fi.early = 1 }) // no wait for a Hello
	cfg := linkTestConfig(v7.addr, c.addr)
	cfg.ConnsPerServer = 1
	r := startLinks(t, cfg, nil, nil)
	fc7, fcC := v7.next(t), c.next(t)
	linkWaitFor(t, "links up", func() bool { return r.l.Up() == 2 })

	r6 := route(wire.RouteAdd, "[2001:db8:1::10]:40000", linkTarget6)
	add1 := route(wire.RouteAdd, "192.0.2.10:40000", linkTarget4)
	del1 := route(wire.RouteDel, "192.0.2.10:40000", linkTarget4)
	add2 := route(wire.RouteAdd, "192.0.2.10:40001", linkTarget4)
	for _, rt := range []wire.Route{r6, add1, del1, add2} {
		if !r.l.Route(rt) {
			t.Fatalf("route %+v not accepted by any intercept", rt)
		}
	}
	for _, want := range []wire.Route{r6, add1, del1, add2} {
		if got := fc7.msg().Route; got != want {
			t.Errorf("version-7 intercept got %+v, want %+v", got, want)
		}
	}
	// The C intercept gets neither the IPv6 route nor the delete.
	for _, want := range []wire.Route{add1, add2} {
		if got := fcC.msg().Route; got != want {
			t.Errorf("C intercept got %+v, want %+v", got, want)
		}
	}
	fcC.noMsg()
	if st := r.l.Stats(); st.RoutesUnfit != 1 {
		t.Errorf("unfit = %d, want 1", st.RoutesUnfit)
	}
}

func TestLinksReannounceAfterRestart(t *testing.T) {
	fi := newFake(t, fakeV7, nil)
	sink := newSink()
	cfg := linkTestConfig(fi.addr)
	r := startLinks(t, cfg, sink.deliver, nil)
	old := []*fakeConn{fi.next(t), fi.next(t)}
	linkWaitFor(t, "links up", func() bool { return r.l.Up() == 2 })
	r1 := route(wire.RouteAdd, "192.0.2.10:40001", linkTarget4)
	r2 := route(wire.RouteAdd, "192.0.2.10:40002", linkTarget4)
	r3 := route(wire.RouteAdd, "[2001:db8:1::10]:40003", linkTarget6)
	for _, rt := range []wire.Route{r1, r2, r3, {Client: r2.Client, Target: r2.Target, Op: wire.RouteDel}} {
		r.l.Route(rt)
	}
	// 3 adds on one connection each, the delete on both.
	for got := 0; got < 5; {
		select {
		case <-old[0].msgs:
			got++
		case <-old[1].msgs:
			got++
		case <-time.After(5 * time.Second):
			t.Fatalf("got %d of 5 messages", got)
		}
	}

	fi.restart()
	for i := range 2 {
		fc := fi.next(t)
		// Each new connection announces the whole set: r1 and r3, not
		// the deleted r2. (A late sibling re-announcement may repeat them.)
		seen := map[wire.Route]bool{}
		for !seen[r1] || !seen[r3] {
			m := fc.msg()
			if m.Route == r2 {
				t.Fatalf("connection %d: deleted route re-announced", i)
			}
			seen[m.Route] = true
		}
		fc.records(uint32(1000*(i+1)), 10, "", nil)
		sink.expect(t, uint32(1000*(i+1)), 10, "", "")
	}
	linkWaitFor(t, "links up again", func() bool { return r.l.Up() == 2 })
	if st := r.l.Stats(); st.Disconnects < 2 || st.Connects < 4 || st.Reannounced < 4 {
		t.Errorf("stats = %+v", st)
	}
}

func TestLinksReannounceRealIntercept(t *testing.T) {
	ln := listenLoopback(t, "127.0.0.1:0")
	addr := ln.Addr().String()
	srv, stop := startIntercept(t, ln)
	r := startLinks(t, linkTestConfig(addr), nil, nil)
	linkWaitFor(t, "links up", func() bool { return r.l.Up() == 2 })
	for i := range 3 {
		r.l.Route(route(wire.RouteAdd, fmt.Sprintf("192.0.2.10:%d", 40000+i), linkTarget4))
	}
	linkWaitFor(t, "routes", func() bool { return srv.Stats().Routes == 3 })
	stop()
	srv2, _ := startIntercept(t, listenLoopback(t, addr))
	linkWaitFor(t, "routes re-announced", func() bool { st := srv2.Stats(); return st.Routes == 3 && st.Links == 2 })
}

func TestLinksConcurrentRoutes(t *testing.T) {
	ln := listenLoopback(t, "127.0.0.1:0")
	srv, _ := startIntercept(t, ln)
	r := startLinks(t, linkTestConfig(ln.Addr().String()), nil, nil)
	linkWaitFor(t, "links up", func() bool { return r.l.Up() == 2 })
	const workers, each = 8, 250
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := range each {
				c := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(w)}), uint16(1000+i))
				if !r.l.Route(wire.Route{Client: c, Target: netip.MustParseAddrPort(linkTarget4), Op: wire.RouteAdd}) {
					t.Error("route not accepted")
				}
			}
		})
	}
	wg.Wait()
	linkWaitFor(t, "all routes", func() bool { st := srv.Stats(); return st.Routes == workers*each && st.RouteMsgs == workers*each })
}

func TestLinksGiveUp(t *testing.T) {
	t.Run("at start", func(t *testing.T) {
		addr := closedPort(t)
		cfg := linkTestConfig(addr)
		cfg.GiveUpAfter = 300 * time.Millisecond
		start := time.Now()
		r := startLinks(t, cfg, nil, nil)
		err := r.wait(t, 5*time.Second)
		if err == nil || !strings.Contains(err.Error(), addr) || !strings.Contains(err.Error(), "connect") {
			t.Fatalf("Run error = %v, want one naming %s and the connect error", err, addr)
		}
		if d := time.Since(start); d < cfg.GiveUpAfter {
			t.Errorf("gave up after %v, before %v", d, cfg.GiveUpAfter)
		}
		if r.l.Stats().Failures == 0 {
			t.Error("no failure counted")
		}
	})
	t.Run("after losing the links", func(t *testing.T) {
		fi := newFake(t, fakeV7, nil)
		cfg := linkTestConfig(fi.addr)
		cfg.GiveUpAfter = time.Second // not before the links come up, even on a loaded machine
		r := startLinks(t, cfg, nil, nil)
		linkWaitFor(t, "links up", func() bool { return r.l.Up() == 2 })
		lost := time.Now()
		fi.stop()
		err := r.wait(t, 5*time.Second)
		if err == nil || !strings.Contains(err.Error(), fi.addr) {
			t.Fatalf("Run error = %v", err)
		}
		if d := time.Since(lost); d < cfg.GiveUpAfter {
			t.Errorf("gave up %v after the loss, before %v", d, cfg.GiveUpAfter)
		}
	})
}

func TestLinksLonely(t *testing.T) {
	addr := closedPort(t)
	cfg := linkTestConfig(addr)
	cfg.Lonely = true
	cfg.GiveUpAfter = 50 * time.Millisecond
	cfg.ConnsPerServer = 1
	r := startLinks(t, cfg, nil, nil)
	linkWaitFor(t, "failures", func() bool { return r.l.Stats().Failures >= 2 })
	time.Sleep(4 * cfg.GiveUpAfter) // Run must not give up: nothing to poll for
	if !r.running() {
		t.Fatalf("Run returned %v with -L", r.err)
	}
	ln := listenLoopback(t, addr)
	startIntercept(t, ln)
	linkWaitFor(t, "link up", func() bool { return r.l.Up() == 1 })
	r.cancel()
	if err := r.wait(t, 5*time.Second); err != nil {
		t.Errorf("Run = %v after cancel, want nil", err)
	}
}

func TestLinksWriteBufferOverflow(t *testing.T) {
	fi := newFake(t, fakeV7, func(fi *fakeIntercept) { fi.noRead, fi.rcvBuf = true, 4096 })
	cfg := linkTestConfig(fi.addr)
	cfg.ConnsPerServer = 1
	r := startLinks(t, cfg, nil, func(l *Links) {
		l.maxOut = 4096
		l.writeTimeout = 300 * time.Millisecond
		dial := l.dial
		l.dial = func(ctx context.Context, addr string) (net.Conn, error) {
			c, err := dial(ctx, addr)
			if err == nil {
				c.(*net.TCPConn).SetWriteBuffer(4096)
			}
			return c, err
		}
	})
	fi.next(t)
	linkWaitFor(t, "link up", func() bool { return r.l.Up() == 1 })
	// Routes until the kernel's buffers and ours are full: adds are
	// dropped, the writer blocks, and the write timeout closes the stuck
	// connection, which is dialled again.
	target := netip.MustParseAddrPort(linkTarget4)
	deadline := time.Now().Add(5 * time.Second)
	for i := 0; r.l.Stats().Disconnects == 0; i++ {
		if time.Now().After(deadline) {
			t.Fatalf("stuck connection not closed: %+v", r.l.Stats())
		}
		c := netip.AddrPortFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 40000)
		r.l.Route(wire.Route{Client: c, Target: target, Op: wire.RouteAdd})
		if i%64 == 63 {
			time.Sleep(time.Millisecond)
		}
	}
	if r.l.Stats().RoutesDropped == 0 {
		t.Error("no route dropped")
	}
	fi.next(t)
	linkWaitFor(t, "reconnect", func() bool { return r.l.Stats().Connects >= 2 })
}

func TestLinksHostileServer(t *testing.T) {
	hello7 := wire.AppendHello(nil, wire.Format{Version: wire.Version7})
	hello6 := wire.AppendHello(nil, wire.Format{Version: wire.Version6, Combined: true})
	badVersion := append([]byte(nil), hello7...)
	badVersion[8] = 9
	tests := []struct {
		name     string
		answer   []byte
		closeEnd bool
	}{
		{"garbage", []byte("HTTP/1.1 400 Bad Request\r\n\r\n"), false},
		{"bad magic", []byte{0, 0, 'X', 'C', 'G', 'O', 0, 16}, false},
		{"hello version 9", badVersion, false},
		{"half a hello", hello7[:5], true},
		{"v7 length below header", append(hello7, 0x00, 0x01, 0x81, 0x00), false},
		{"v7 huge length then close", append(append(hello7, 0xff, 0xff, 0x81, 0x00), make([]byte, 100)...), true},
		{"v6 combined count 0", append(hello6, 0x00, 0x00), false},
		{"v6 combined count 17", append(hello6, 0x00, 17), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			good := newFake(t, fakeV7, nil)
			bad := newFake(t, fakeV7, func(fi *fakeIntercept) { fi.answer, fi.closeEnd = tt.answer, tt.closeEnd })
			sink := newSink()
			cfg := linkTestConfig(good.addr, bad.addr)
			cfg.ConnsPerServer = 1
			r := startLinks(t, cfg, sink.deliver, nil)
			gc := good.next(t)
			bad.next(t)
			bad.next(t) // the first connection failed and was dialled again
			st := r.l.Stats()
			if st.Failures+st.Disconnects == 0 {
				t.Errorf("no failure counted: %+v", st)
			}
			gc.records(1, 10, "", nil)
			sink.expect(t, 1, 10, "", "")
			if !r.running() || r.l.Stats().Servers[0].Up != 1 {
				t.Error("the good link suffered")
			}
		})
	}
}

func TestLinksCloseAndRunTwice(t *testing.T) {
	l := NewLinks(linkTestConfig(closedPort(t)), linkTestLog, nil)
	l.Close()
	if err := l.Run(context.Background()); err != nil {
		t.Errorf("Run after Close = %v, want nil", err)
	}
	if err := l.Run(context.Background()); !errors.Is(err, errRunTwice) {
		t.Errorf("second Run = %v, want %v", err, errRunTwice)
	}
	l.Close()

	fi := newFake(t, fakeV7, nil)
	r := startLinks(t, linkTestConfig(fi.addr), nil, nil)
	linkWaitFor(t, "links up", func() bool { return r.l.Up() == 2 })
	r.l.Close()
	if err := r.wait(t, 5*time.Second); err != nil {
		t.Errorf("Run after Close = %v, want nil", err)
	}
	if r.l.Up() != 0 || r.l.Route(route(wire.RouteAdd, "192.0.2.10:40000", linkTarget4)) {
		t.Error("links still up after Run returned")
	}
	if err := NewLinks(LinkConfig{}, linkTestLog, nil).Run(context.Background()); !errors.Is(err, errNoServers) {
		t.Errorf("Run without servers = %v", err)
	}
}

func TestLinksInvalidRoute(t *testing.T) {
	l := NewLinks(linkTestConfig("127.0.0.1:1"), linkTestLog, nil)
	for _, r := range []wire.Route{
		{},
		{Client: netip.MustParseAddrPort("192.0.2.1:1"), Target: netip.MustParseAddrPort(linkTarget6), Op: wire.RouteAdd},
		{Client: netip.MustParseAddrPort("192.0.2.1:1"), Target: netip.MustParseAddrPort(linkTarget4), Op: 9},
	} {
		if l.Route(r) {
			t.Errorf("Route(%+v) = true", r)
		}
	}
	if len(l.routes) != 0 {
		t.Errorf("invalid routes kept: %v", l.routes)
	}
	// 4in6 and the plain address are one route.
	l.Route(route(wire.RouteAdd, "[::ffff:192.0.2.1]:1", "[::ffff:203.0.113.20]:8080"))
	l.Route(route(wire.RouteDel, "192.0.2.1:1", linkTarget4))
	if len(l.routes) != 0 {
		t.Errorf("route set = %v, want empty", l.routes)
	}
}

// cycleReader returns its bytes over and over.
type cycleReader struct {
	b   []byte
	off int
}

func (c *cycleReader) Read(p []byte) (int, error) {
	n := copy(p, c.b[c.off:])
	c.off = (c.off + n) % len(c.b)
	return n, nil
}

func TestLinksReadAllocs(t *testing.T) {
	for _, f := range []wire.Format{
		{Version: wire.Version6, Combined: true},
		{Version: wire.Version6, Payload: true},
		{Version: wire.Version7, PrefixLen: 64},
	} {
		t.Run(f.String(), func(t *testing.T) {
			b := wire.NewBatcher(f, 0)
			for i := range 5 {
				b.Add(linkPacket(t, uint32(i), "hello"), 5, 1, []byte("hello"))
			}
			var got int
			sink := sinkFunc(func(rec *wire.Record) { got += len(rec.Prefix) })
			l := NewLinks(LinkConfig{}, linkTestLog, func() Sink { return sink })
			lr := &linkReader{l: l, rr: wire.NewRecordReader(&countReader{r: &cycleReader{b: b.Bytes()}, n: &l.c.bytesIn, flush: sink.Flush}, f), sink: sink}
			allocs := testing.AllocsPerRun(1000, func() {
				if !lr.next() {
					t.Fatal(lr.rr.Err())
				}
			})
			if allocs != 0 {
				t.Errorf("%v allocations per record, want 0", allocs)
			}
			if l.c.records.Load() == 0 || (f.Version == wire.Version7 || f.Payload) && got == 0 {
				t.Error("records not delivered")
			}
		})
	}
}

func TestLinksRouteAllocs(t *testing.T) {
	l := NewLinks(linkTestConfig("127.0.0.1:1", "127.0.0.1:2"), linkTestLog, nil)
	for i, s := range l.servers {
		for _, c := range s.conns {
			c.up, c.format, c.out = true, wire.Format{Version: uint8(wire.Version6 + i)}, make([]byte, 0, 4096)
			c.upHint.Store(true)
		}
	}
	add := route(wire.RouteAdd, "192.0.2.10:40000", linkTarget4)
	del := route(wire.RouteDel, "192.0.2.10:40000", linkTarget4)
	allocs := testing.AllocsPerRun(1000, func() {
		if !l.Route(add) || !l.Route(del) {
			t.Fatal("route not sent")
		}
		for _, s := range l.servers {
			for _, c := range s.conns {
				c.out = c.out[:0] // what the writer does
			}
		}
	})
	if allocs != 0 {
		t.Errorf("Route allocates %v times, want 0", allocs)
	}
}

func BenchmarkLinksRoute(b *testing.B) {
	l := NewLinks(linkTestConfig("127.0.0.1:1"), linkTestLog, nil)
	for _, c := range l.servers[0].conns {
		c.up, c.format, c.out = true, wire.Format{Version: wire.Version7}, make([]byte, 0, 4096)
		c.upHint.Store(true)
	}
	add := route(wire.RouteAdd, "192.0.2.10:40000", linkTarget4)
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		l.Route(add)
		if i%128 == 127 {
			for _, c := range l.servers[0].conns {
				c.out = c.out[:0]
			}
		}
	}
}

// TestLinksCompare: a link to our intercept asks for the response
// comparison and gets it; a C intercept cannot, said once in the log.
func TestLinksCompare(t *testing.T) {
	ln := listenLoopback(t, "127.0.0.1:0")
	srv, _ := startIntercept(t, ln)
	cfg := linkTestConfig(ln.Addr().String())
	cfg.Compare = 2048
	r := startLinks(t, cfg, nil, nil)
	linkWaitFor(t, "two links up", func() bool { return r.l.Up() == 2 && srv.Stats().Links == 2 })
	if got := r.l.Stats().Servers[0].Format; got.Compare != 2048 || !r.l.Comparing() {
		t.Errorf("format %v, comparing %v; want window 2048", got, r.l.Comparing())
	}

	fi := newFake(t, fakeC, nil)
	var logs syncBuffer
	cfg = linkTestConfig(fi.addr)
	cfg.Compare = 2048
	cfg.HelloWait = 100 * time.Millisecond
	l := NewLinks(cfg, slog.New(slog.NewTextHandler(&logs, nil)), func() Sink { return sinkFunc(func(*wire.Record) {}) })
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	fi.next(t)
	fi.next(t)
	linkWaitFor(t, "C links up", func() bool { return l.Up() == 2 })
	if l.Comparing() {
		t.Errorf("a C intercept compares")
	}
	if n := strings.Count(logs.String(), "intercept does not compare responses"); n != 1 {
		t.Errorf("the warning was logged %d times, want once:\n%s", n, logs.String())
	}
}

// TestLinksAuth: with --secret-file, links come up only with an intercept
// that proves the same secret, never falling back to version 6; without a
// secret on either side nothing changes.
func TestLinksAuth(t *testing.T) {
	secret := []byte("the shared secret of this test!!")
	other := []byte("another secret, of the same size")
	withSecret := func(b []byte) func(*intercept.Config) {
		return func(c *intercept.Config) { c.Secret = b }
	}
	t.Run("same secret", func(t *testing.T) {
		ln := listenLoopback(t, "127.0.0.1:0")
		srv, _ := startInterceptWith(t, ln, withSecret(secret))
		cfg := linkTestConfig(ln.Addr().String())
		cfg.Secret = secret
		r := startLinks(t, cfg, nil, nil)
		linkWaitFor(t, "two authenticated links", func() bool { return r.l.Up() == 2 && srv.Stats().Authenticated == 2 })
		if !r.l.Route(route(wire.RouteAdd, "192.0.2.10:40000", linkTarget4)) {
			t.Fatal("route not accepted")
		}
		linkWaitFor(t, "route", func() bool { return srv.Stats().Routes == 1 })
		if f := r.l.Stats().Servers[0].Format; f.Version != wire.Version7 || !f.Auth {
			t.Errorf("format %v", f)
		}
	})
	fails := []struct {
		name      string
		icpSecret []byte // real intercept with this secret, unless fake is set
		fake      func(t *testing.T) string
		secret    []byte
		want      error
		wantText  string
	}{
		{name: "intercept without a secret", secret: secret, want: errAuthNotAsked},
		{name: "tcpcopy without a secret", icpSecret: secret, want: errAuthRequired},
		{name: "other secret", icpSecret: other, secret: secret, want: io.ErrUnexpectedEOF, wantText: "another secret"},
		{name: "C intercept", secret: secret, want: errAuthNoV7, fake: func(t *testing.T) string { return newFake(t, fakeC, nil).addr }},
		{name: "version-6 hello", secret: secret, want: errAuthNoV7, fake: func(t *testing.T) string { return newFake(t, fakeHello6, nil).addr }},
		{name: "impostor's proof", secret: secret, want: errAuthBadProof, fake: func(t *testing.T) string {
			var ni wire.Nonce
			ans := wire.AppendHello(nil, wire.Format{Version: wire.Version7, Auth: true})
			ans = wire.AppendChallenge(ans, ni)
			ans = wire.AppendAuthOK(ans, wire.InterceptMAC([]byte("guessed secret, not the real one"), ni, ni))
			return newFake(t, fakeV7, func(fi *fakeIntercept) { fi.answer = ans }).addr
		}},
	}
	for _, tt := range fails {
		t.Run(tt.name, func(t *testing.T) {
			var addr string
			var srv *intercept.Server
			if tt.fake != nil {
				addr = tt.fake(t)
			} else {
				ln := listenLoopback(t, "127.0.0.1:0")
				srv, _ = startInterceptWith(t, ln, withSecret(tt.icpSecret))
				addr = ln.Addr().String()
			}
			cfg := linkTestConfig(addr)
			cfg.Secret = tt.secret
			cfg.HelloWait = 100 * time.Millisecond
			cfg.GiveUpAfter = 500 * time.Millisecond
			r := startLinks(t, cfg, nil, nil)
			err := r.wait(t, 10*time.Second)
			if !errors.Is(err, tt.want) || !strings.Contains(fmt.Sprint(err), tt.wantText) {
				t.Fatalf("Run = %v, want %v", err, tt.want)
			}
			if st := r.l.Stats(); st.Connects != 0 {
				t.Errorf("%d links came up", st.Connects)
			}
			if srv != nil && srv.Stats().Routes != 0 {
				t.Error("a route reached intercept")
			}
		})
	}
}
