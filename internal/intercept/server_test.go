package intercept

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/streamhash"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

var quiet = slog.New(slog.DiscardHandler)

// startServer serves cfg on a loopback port until the test ends.
func startServer(t *testing.T, cfg Config) (*Server, string) {
	t.Helper()
	return startServerWith(t, cfg, nil)
}

// startServerWith lets setup change the server before it serves.
func startServerWith(t *testing.T, cfg Config, setup func(*Server)) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := NewServer(cfg, quiet)
	if setup != nil {
		setup(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, ln.Addr().String()
}

func testConfig() Config {
	cfg := Default()
	cfg.Filter = "tcp"
	return cfg
}

// client is a minimal tcpcopy side of a link.
type client struct {
	t    *testing.T
	conn net.Conn
	f    wire.Format
	rr   *wire.RecordReader
}

// dial connects and shakes hands; v7 offers version 7.
func dial(t *testing.T, addr string, v7 bool, prefix int) *client {
	t.Helper()
	return dialFrom(t, "", addr, v7, prefix)
}

// dialFrom is dial from the local address from (a loopback address such
// as 127.0.0.2; "" for any).
func dialFrom(t *testing.T, from, addr string, v7 bool, prefix int) *client {
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
	c := &client{t: t, conn: conn}
	if _, err := conn.Write(wire.AppendOffer(nil, v7)); err != nil {
		t.Fatal(err)
	}
	fallback := wire.Format{Version: wire.Version6, Combined: true}
	c.rr = wire.NewRecordReader(conn, fallback)
	c.f = fallback
	if v7 {
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		f, err := c.rr.ReadHello()
		if err != nil {
			t.Fatalf("ReadHello: %v", err)
		}
		conn.SetReadDeadline(time.Time{})
		c.f = f
		if prefix > 0 {
			if _, err := conn.Write(wire.AppendConfig(nil, wire.Config{PrefixLen: prefix})); err != nil {
				t.Fatal(err)
			}
		}
	}
	return c
}

func (c *client) route(client, target string) {
	c.t.Helper()
	b, err := wire.AppendRoute(nil, c.f, wire.Route{
		Client: netip.MustParseAddrPort(client),
		Target: netip.MustParseAddrPort(target),
		Op:     wire.RouteAdd,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

type gotRecord struct {
	src, dst   netip.AddrPort
	flags      ipmangle.TCPFlags
	payloadLen int
	prefix     string
}

// read returns the next n records, failing after a timeout.
func (c *client) read(n int) []gotRecord {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.conn.SetReadDeadline(time.Time{})
	var out []gotRecord
	for len(out) < n {
		if !c.rr.Next() {
			c.t.Fatalf("after %d of %d records: %v", len(out), n, c.rr.Err())
		}
		r := c.rr.Record()
		var p ipmangle.Parsed
		p.Decode(r.Header)
		if !p.Valid {
			c.t.Fatalf("record header invalid: %v", p.Reason)
		}
		out = append(out, gotRecord{p.Src, p.Dst, p.Flags, r.PayloadLen, string(r.Prefix)})
	}
	return out
}

// expectNothing checks that no record arrives within a short time.
func (c *client) expectNothing() {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(150 * time.Millisecond))
	defer c.conn.SetReadDeadline(time.Time{})
	one := make([]byte, 1)
	if n, err := c.conn.Read(one); n > 0 || !isTimeout(err) {
		c.t.Fatalf("unexpected data or error: n=%d err=%v", n, err)
	}
}

// isReset reports a connection reset: closing a socket with unread input
// sends RST, which is how a refused or dropped link may end.
func isReset(err error) bool { return errors.Is(err, syscall.ECONNRESET) }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// response builds a target response packet from target to client.
func response(t *testing.T, target, client string, flags ipmangle.TCPFlags, payload string) []byte {
	t.Helper()
	f := ipmangle.Fields{
		Src: netip.MustParseAddrPort(target), Dst: netip.MustParseAddrPort(client),
		Seq: 1000, Ack: 2000, Flags: flags, Window: 65535, WScale: -1,
		Payload: []byte(payload),
	}
	if flags&ipmangle.SYN != 0 {
		f.MSS, f.WScale, f.SACKPermitted, f.HasTS, f.TSVal = 1460, 7, true, true, 12345
	}
	b := make([]byte, f.Len())
	if f.Encode(b) == 0 {
		t.Fatalf("encode %+v failed", f)
	}
	return b
}

// injectBatch runs packets through the server as one capture batch.
func injectBatch(s *Server, pkts ...[]byte) {
	var sc scratch
	for _, p := range pkts {
		s.handle(&sc, p, time.Now().UnixNano())
	}
	s.flushTouched(&sc)
}

// waitFor polls cond until it holds or a few seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		if cond() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

const (
	target4 = "203.0.113.20:8080"
	target6 = "[2001:db8:3::20]:8080"
)

func TestRoutingSeveralLinks(t *testing.T) {
	s, addr := startServer(t, testConfig())
	a := dial(t, addr, false, 0) // a C-style version-6 tcpcopy
	b := dial(t, addr, false, 0)
	c := dial(t, addr, true, 64) // a Go tcpcopy, version 7 with a prefix
	a.route("192.0.2.10:40000", target4)
	b.route("192.0.2.10:40001", target4)
	c.route("[2001:db8:1::10]:40000", target6)
	c.route("192.0.2.11:40000", target4)
	waitFor(t, "routes", func() bool { return s.Stats().RouteMsgs == 4 })

	injectBatch(s,
		response(t, target4, "192.0.2.10:40000", ipmangle.SYN|ipmangle.ACK, ""),
		response(t, target4, "192.0.2.10:40001", ipmangle.ACK|ipmangle.PSH, "HTTP/1.1 200 OK\r\n\r\n"),
		response(t, target6, "[2001:db8:1::10]:40000", ipmangle.ACK|ipmangle.PSH, "HTTP/1.1 404 Not Found\r\n\r\n"),
		response(t, target4, "192.0.2.11:40000", ipmangle.ACK|ipmangle.FIN, ""),
		response(t, target4, "192.0.2.10:40000", ipmangle.ACK, "hello"),
		response(t, target4, "192.0.2.99:1234", ipmangle.ACK, "nobody's"), // unrouted
	)

	tgt4 := netip.MustParseAddrPort(target4)
	tests := []struct {
		name string
		c    *client
		want []gotRecord
	}{
		{"v6 link a", a, []gotRecord{
			{tgt4, netip.MustParseAddrPort("192.0.2.10:40000"), ipmangle.SYN | ipmangle.ACK, 0, ""},
			{tgt4, netip.MustParseAddrPort("192.0.2.10:40000"), ipmangle.ACK, 5, ""},
		}},
		{"v6 link b", b, []gotRecord{
			{tgt4, netip.MustParseAddrPort("192.0.2.10:40001"), ipmangle.ACK | ipmangle.PSH, 19, ""},
		}},
		{"v7 link c", c, []gotRecord{
			{netip.MustParseAddrPort(target6), netip.MustParseAddrPort("[2001:db8:1::10]:40000"), ipmangle.ACK | ipmangle.PSH, 26, "HTTP/1.1 404 Not Found\r\n\r\n"},
			{tgt4, netip.MustParseAddrPort("192.0.2.11:40000"), ipmangle.ACK | ipmangle.FIN, 0, ""},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.c.t = t
			got := tt.c.read(len(tt.want))
			for i := range got {
				if got[i] != tt.want[i] {
					t.Errorf("record %d = %+v, want %+v", i, got[i], tt.want[i])
				}
			}
			tt.c.expectNothing()
		})
	}
	st := s.Stats()
	if st.Routed != 5 || st.Unrouted != 1 || st.Captured != 6 {
		t.Errorf("stats = %+v", st)
	}
}

func TestHeldUntilRoute(t *testing.T) {
	s, addr := startServer(t, testConfig())
	a := dial(t, addr, false, 0)
	// The SYN-ACK and a RST beat their routes; a plain ACK without a route
	// is not held.
	injectBatch(s,
		response(t, target4, "192.0.2.10:40000", ipmangle.SYN|ipmangle.ACK, ""),
		response(t, target4, "192.0.2.10:40002", ipmangle.RST|ipmangle.ACK, ""),
		response(t, target4, "192.0.2.10:40003", ipmangle.ACK, ""),
	)
	if st := s.Stats(); st.Held != 2 || st.Unrouted != 1 || st.HeldNow != 2 {
		t.Fatalf("stats after inject = %+v", st)
	}
	a.route("192.0.2.10:40000", target4)
	got := a.read(1)
	if got[0].flags != ipmangle.SYN|ipmangle.ACK || got[0].dst != netip.MustParseAddrPort("192.0.2.10:40000") {
		t.Errorf("released %+v, want the SYN-ACK", got[0])
	}
	a.expectNothing()
	if st := s.Stats(); st.HeldNow != 1 {
		t.Errorf("held now = %d, want 1 (the RST still waits)", st.HeldNow)
	}
}

func TestDockerRewrite(t *testing.T) {
	cfg := testConfig()
	cfg.Docker = map[netip.Addr]netip.Addr{netip.MustParseAddr("198.51.100.7"): netip.MustParseAddr("192.0.2.10")}
	s, addr := startServer(t, cfg)
	a := dial(t, addr, false, 0)
	a.route("192.0.2.10:40000", target4)
	waitFor(t, "route", func() bool { return s.Stats().RouteMsgs == 1 })
	injectBatch(s, response(t, target4, "198.51.100.7:40000", ipmangle.ACK, "x"))
	if got := a.read(1); got[0].dst != netip.MustParseAddrPort("192.0.2.10:40000") {
		t.Errorf("record dst = %v, want the original client", got[0].dst)
	}
}

func TestSlowLinkDoesNotStallOthers(t *testing.T) {
	cfg := testConfig()
	cfg.QueueBytes = 256 << 10
	s, addr := startServer(t, cfg)
	slow := dial(t, addr, false, 0) // never reads
	fast := dial(t, addr, false, 0)
	slow.route("192.0.2.10:40000", target4)
	fast.route("192.0.2.10:40001", target4)
	waitFor(t, "routes", func() bool { return s.Stats().RouteMsgs == 2 })
	toSlow := response(t, target4, "192.0.2.10:40000", ipmangle.ACK, "")
	toFast := response(t, target4, "192.0.2.10:40001", ipmangle.ACK, "")
	// Enough records to fill the slow link's socket buffers and queue
	// (64-byte records; a few MiB), bounded.
	const rounds = 200
	for i := range rounds {
		batch := make([][]byte, 0, 401)
		for range 400 {
			batch = append(batch, toSlow)
		}
		batch = append(batch, toFast)
		injectBatch(s, batch...)
		fast.read(1)
		if i > 20 && s.Stats().Dropped > 0 {
			break
		}
	}
	if s.Stats().Dropped == 0 {
		t.Fatalf("no records dropped for the slow link: stats %+v", s.Stats())
	}
	injectBatch(s, toFast)
	fast.read(1)
}

func TestHostileInput(t *testing.T) {
	s, addr := startServer(t, testConfig())
	good := dial(t, addr, false, 0)
	good.route("192.0.2.10:40000", target4)
	waitFor(t, "route", func() bool { return s.Stats().RouteMsgs == 1 })

	tests := []struct {
		name string
		send []byte
	}{
		{"garbage handshake", []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")},
		{"non-zero handshake address", append([]byte{192, 0, 2, 1, 0, 80, 0, 6}, make([]byte, 6)...)},
		{"v7 length too big", append(wire.AppendOffer(nil, true), 0xff, 0xff, 0x01, 0x00)},
		{"v7 length too small", append(wire.AppendOffer(nil, true), 0x00, 0x01, 0x01, 0x00)},
		{"truncated v6 message", append(wire.AppendOffer(nil, false), 1, 2, 3)},
		{"truncated handshake", []byte{0, 0, 0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := s.Stats().LinksTotal
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.Write(tt.send)
			conn.(*net.TCPConn).CloseWrite()
			// The server closes the link: we read EOF (after a Hello, if
			// version 7 was offered).
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := io.ReadAll(conn); err != nil && !isReset(err) {
				t.Fatalf("link not closed by the server: %v", err)
			}
			waitFor(t, "link dropped", func() bool { st := s.Stats(); return st.LinksTotal == before+1 && st.Links == 1 })
		})
	}
	// The good link still works.
	injectBatch(s, response(t, target4, "192.0.2.10:40000", ipmangle.ACK, ""))
	good.read(1)
}

func TestManyConnects(t *testing.T) {
	cfg := testConfig()
	cfg.MaxLinks = 64
	s, addr := startServer(t, cfg)
	good := dial(t, addr, false, 0)
	good.route("192.0.2.10:40000", target4)
	// Thousands of connects that send nothing or half a handshake, 64 at a
	// time, bounded.
	for round := range 40 {
		var conns []net.Conn
		for range 50 {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if round%2 == 1 {
				conn.Write([]byte{0, 0})
			}
			conns = append(conns, conn)
		}
		for _, c := range conns {
			c.Close()
		}
	}
	waitFor(t, "every connect handled", func() bool { st := s.Stats(); return st.LinksTotal+st.Refused == 2001 })
	waitFor(t, "links to go", func() bool { return s.Stats().Links == 1 })
	injectBatch(s, response(t, target4, "192.0.2.10:40000", ipmangle.ACK, ""))
	good.read(1)
}

func TestAllowList(t *testing.T) {
	cfg := testConfig()
	cfg.Allow = []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}
	s, addr := startServer(t, cfg)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write(wire.AppendOffer(nil, false))
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(conn); err != nil && !isReset(err) {
		t.Fatalf("refused link not closed: %v", err)
	}
	if st := s.Stats(); st.Refused != 1 || st.LinksTotal != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestProtect(t *testing.T) {
	cfg := testConfig()
	cfg.Protect = true
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	s, addr := startServerWith(t, cfg, func(s *Server) {
		s.now = func() time.Time { return time.Unix(0, now.Load()) }
	})
	first := dial(t, addr, false, 0)
	_ = dial(t, addr, false, 0) // within 3 s of the first: accepted
	waitFor(t, "two links", func() bool { return s.Stats().Links == 2 })
	now.Add(int64(4 * time.Second))
	late, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer late.Close()
	late.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadAll(late); err != nil && !isReset(err) {
		t.Fatalf("late link not refused: %v", err)
	}
	if st := s.Stats(); st.Refused != 1 || st.Links != 2 {
		t.Errorf("stats = %+v", st)
	}
	first.conn.Close()
}

func TestHandleAllocs(t *testing.T) {
	s, addr := startServer(t, testConfig())
	a := dial(t, addr, true, 16)
	a.route("192.0.2.10:40000", target4)
	waitFor(t, "route", func() bool { return s.Stats().RouteMsgs == 1 })
	pkt := response(t, target4, "192.0.2.10:40000", ipmangle.ACK|ipmangle.PSH, "HTTP/1.1 200 OK\r\n\r\n")
	unrouted := response(t, target4, "192.0.2.10:1", ipmangle.ACK, "")
	var sc scratch
	s.handle(&sc, pkt, 1) // warm up buffers
	s.flushTouched(&sc)
	allocs := testing.AllocsPerRun(1000, func() {
		s.handle(&sc, pkt, 1)
		s.handle(&sc, unrouted, 1)
		s.flushTouched(&sc)
	})
	if allocs != 0 {
		t.Errorf("handle allocates %v times per batch, want 0", allocs)
	}
}

func BenchmarkHandle(b *testing.B) {
	cfg := testConfig()
	s := NewServer(cfg, quiet)
	l := newLink(1, nopConn{}, time.Now(), cfg.QueueBytes, linkCounters{sent: &s.c.routed, dropped: &s.c.dropped})
	l.setFormat(wire.Format{Version: wire.Version6, Combined: true}, 16)
	s.addLink(l)
	f := ipmangle.Fields{
		Src: netip.MustParseAddrPort(target4), Dst: netip.MustParseAddrPort("192.0.2.10:40000"),
		Flags: ipmangle.ACK, Window: 512, WScale: -1, HasTS: true, Payload: make([]byte, 1400),
	}
	pkt := make([]byte, f.Len())
	f.Encode(pkt)
	s.routes.Add(routerKey(f.Dst, f.Src), 1, time.Now(), nil)
	var sc scratch
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for i := 0; b.Loop(); i++ {
		s.handle(&sc, pkt, 1)
		if i%64 == 63 {
			s.flushTouched(&sc)
			l.mu.Lock()
			l.out, l.outN = l.out[:0], 0
			l.mu.Unlock()
		}
	}
}

// TestCompareRecords: a link that asks for the response comparison gets
// every response segment's hash and the first bytes of each response;
// one that does not gets neither, from the same intercept.
func TestCompareRecords(t *testing.T) {
	s, addr := startServer(t, testConfig())
	cmp := dial(t, addr, true, 0)
	if cmp.f.Compare != wire.MaxPrefixLen {
		t.Fatalf("the Hello announces window %d, want %d", cmp.f.Compare, wire.MaxPrefixLen)
	}
	if _, err := cmp.conn.Write(wire.AppendConfig(nil, wire.Config{Compare: 12})); err != nil {
		t.Fatal(err)
	}
	plain := dial(t, addr, true, 0)
	cmp.route("192.0.2.10:40000", target4)
	plain.route("192.0.2.11:40000", target4)
	waitFor(t, "routes", func() bool { return s.routes.Stats().Routes == 2 })
	seg := func(client string, seq, ack uint32, payload string) []byte {
		f := ipmangle.Fields{Src: netip.MustParseAddrPort(target4), Dst: netip.MustParseAddrPort(client),
			Seq: seq, Ack: ack, Flags: ipmangle.ACK | ipmangle.PSH, Window: 65535, WScale: -1, Payload: []byte(payload)}
		b := make([]byte, f.Len())
		f.Encode(b)
		return b
	}
	resp1 := []string{"HTTP/1.1 2", "00 OK\r\n\r\nhel", "lo"} // the first 12 bytes span two segments
	resp2 := "HTTP/1.1 404 Not Found\r\n\r\n"
	var pkts [][]byte
	seq := uint32(5001)
	for _, p := range resp1 {
		pkts = append(pkts, seg("192.0.2.10:40000", seq, 2000, p))
		seq += uint32(len(p))
	}
	pkts = append(pkts, seg("192.0.2.10:40000", seq, 2100, resp2)) // the ack moved: a new response
	pkts = append(pkts, seg("192.0.2.11:40000", 1, 1, "HTTP/1.1 200 OK\r\n\r\n"))
	injectBatch(s, pkts...)

	cmp.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	want := []struct {
		prefix  string
		payload string
	}{{"HTTP/1.1 2", resp1[0]}, {"00", resp1[1]}, {"", resp1[2]}, {"HTTP/1.1 404", resp2}}
	for i, w := range want {
		if !cmp.rr.Next() {
			t.Fatalf("record %d: %v", i, cmp.rr.Err())
		}
		r := cmp.rr.Record()
		if string(r.Prefix) != w.prefix || !r.Hashed || r.Hash != streamhash.Sum([]byte(w.payload)) {
			t.Errorf("record %d: prefix %q hashed %v hash %#x; want %q and the payload's hash", i, r.Prefix, r.Hashed, r.Hash, w.prefix)
		}
	}
	got := plain.read(1)
	if got[0].prefix != "" {
		t.Errorf("a link without comparison got prefix %q", got[0].prefix)
	}
	if n := s.c.hashed.Load(); n != 4 {
		t.Errorf("hashed %d segments, want 4", n)
	}
}
