package intercept

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/pkg/datagram"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipfrag"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/streamhash"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

const (
	udpTarget4 = "203.0.113.20:5353"
	udpClient4 = "192.0.2.10:40000"
	udpTarget6 = "[2001:db8::14]:5353"
	udpClient6 = "[2001:db8::a]:40000"
)

// answer builds a UDP datagram from target to client.
func answer(t *testing.T, target, client string, payload []byte) []byte {
	t.Helper()
	f := datagram.Fields{Src: netip.MustParseAddrPort(target), Dst: netip.MustParseAddrPort(client), ID: 7, Payload: payload}
	b := make([]byte, 65536)
	n := f.Encode(b)
	if n == 0 {
		t.Fatalf("encode %+v failed", f)
	}
	return b[:n]
}

// fragments splits pkt into fragments of at most mtu bytes.
func fragments(t *testing.T, pkt []byte, mtu int) [][]byte {
	t.Helper()
	var fr ipfrag.Fragmenter
	if !fr.Reset(pkt, mtu, 99) {
		t.Fatal("cannot fragment")
	}
	var out [][]byte
	for f := fr.Next(make([]byte, mtu)); f != nil; f = fr.Next(make([]byte, mtu)) {
		out = append(out, f)
	}
	return out
}

// udpRoute sends a UDP route message (add or delete).
func (c *client) udpRoute(op wire.RouteOp, client, target string) {
	c.t.Helper()
	b, err := wire.AppendRoute(nil, c.f, wire.Route{
		Client: netip.MustParseAddrPort(client), Target: netip.MustParseAddrPort(target), Op: op, UDP: true,
	})
	if err != nil {
		c.t.Fatal(err)
	}
	if _, err := c.conn.Write(b); err != nil {
		c.t.Fatal(err)
	}
}

type udpRecord struct {
	src, dst   netip.AddrPort
	payloadLen int
	prefix     string
	hash       uint64
	hashed     bool
}

// readUDP returns the next record, which must be a UDP one.
func (c *client) readUDP() udpRecord {
	c.t.Helper()
	c.conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer c.conn.SetReadDeadline(time.Time{})
	if !c.rr.Next() {
		c.t.Fatalf("no record: %v", c.rr.Err())
	}
	r := c.rr.Record()
	if !r.UDP() {
		c.t.Fatalf("record is not UDP: % x", r.Header)
	}
	u := r.TCP()
	ip := r.IP()
	var src, dst netip.Addr
	if ip[0]>>4 == 4 {
		src, dst = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
	} else {
		src, dst = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
	}
	return udpRecord{
		src:        netip.AddrPortFrom(src, uint16(u[0])<<8|uint16(u[1])),
		dst:        netip.AddrPortFrom(dst, uint16(u[2])<<8|uint16(u[3])),
		payloadLen: r.PayloadLen, prefix: string(r.Prefix), hash: r.Hash, hashed: r.Hashed,
	}
}

func TestUDPHelloAnnounces(t *testing.T) {
	_, addr := startServer(t, testConfig())
	if c := dial(t, addr, true, 0); !c.f.UDP {
		t.Errorf("version-7 Hello %v without UDP", c.f)
	}
	// A version-6 link (a C tcpcopy) cannot carry UDP routes at all.
	c := dial(t, addr, false, 0)
	if _, err := wire.AppendRoute(nil, c.f, wire.Route{Client: netip.MustParseAddrPort(udpClient4),
		Target: netip.MustParseAddrPort(udpTarget4), Op: wire.RouteAdd, UDP: true}); err == nil {
		t.Errorf("a UDP route encoded for %v", c.f)
	}
}

func TestUDPRouted(t *testing.T) {
	s, addr := startServer(t, testConfig())
	c := dial(t, addr, true, 16)
	c.udpRoute(wire.RouteAdd, udpClient4, udpTarget4)
	c.udpRoute(wire.RouteAdd, udpClient6, udpTarget6)
	waitFor(t, "routes", func() bool { return s.Stats().UDPTable.Routes == 2 })
	payload := []byte("a DNS answer, or anything else")
	injectBatch(s, answer(t, udpTarget4, udpClient4, payload), answer(t, udpTarget6, udpClient6, payload))
	for _, want := range []udpRecord{
		{src: netip.MustParseAddrPort(udpTarget4), dst: netip.MustParseAddrPort(udpClient4), payloadLen: len(payload), prefix: string(payload[:16])},
		{src: netip.MustParseAddrPort(udpTarget6), dst: netip.MustParseAddrPort(udpClient6), payloadLen: len(payload), prefix: string(payload[:16])},
	} {
		if got := c.readUDP(); got != want {
			t.Errorf("record %+v, want %+v", got, want)
		}
	}
	if st := s.Stats(); st.UDPCaptured != 2 || st.UDPRouted != 2 || st.UDPUnrouted != 0 || st.Invalid != 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestUDPApartFromTCP: a TCP route does not route a UDP answer on the
// same addresses and ports, nor a UDP route a TCP response; an answer
// that came before its route is held and delivered with it.
func TestUDPApartFromTCP(t *testing.T) {
	s, addr := startServer(t, testConfig())
	c := dial(t, addr, true, 0)
	c.route(udpClient4, udpTarget4) // TCP
	waitFor(t, "TCP route", func() bool { return s.Stats().Routes == 1 })
	injectBatch(s, answer(t, udpTarget4, udpClient4, []byte("early")))
	c.expectNothing()
	if st := s.Stats(); st.UDPHeld != 1 || st.UDPRouted != 0 {
		t.Fatalf("UDP answer with only a TCP route: %+v", st)
	}
	c.udpRoute(wire.RouteAdd, udpClient4, udpTarget4)
	if got := c.readUDP(); got.payloadLen != 5 || got.dst != netip.MustParseAddrPort(udpClient4) {
		t.Errorf("held answer %+v", got)
	}
	// A TCP response goes by the TCP route, as a TCP record.
	injectBatch(s, response(t, udpTarget4, udpClient4, ipmangle.ACK, ""))
	if got := c.read(1); got[0].dst != netip.MustParseAddrPort(udpClient4) {
		t.Errorf("TCP record %+v", got)
	}
	// Deleting the UDP route leaves the TCP one.
	c.udpRoute(wire.RouteDel, udpClient4, udpTarget4)
	waitFor(t, "UDP route deleted", func() bool { return s.Stats().UDPTable.Routes == 0 })
	if st := s.Stats(); st.Routes != 1 || st.UDPTable.Deleted != 1 {
		t.Errorf("after the UDP delete: %+v", st)
	}
}

func TestUDPCompare(t *testing.T) {
	s, addr := startServer(t, testConfig())
	c := dial(t, addr, true, 0)
	if _, err := c.conn.Write(wire.AppendConfig(nil, wire.Config{Compare: 64})); err != nil {
		t.Fatal(err)
	}
	c.udpRoute(wire.RouteAdd, udpClient4, udpTarget4)
	waitFor(t, "route", func() bool { return s.Stats().UDPTable.Routes == 1 })
	payload := bytes.Repeat([]byte("0123456789"), 10)
	big := bytes.Repeat([]byte("x"), 3000)
	frags := fragments(t, answer(t, udpTarget4, udpClient4, big), 1500)
	injectBatch(s, append([][]byte{answer(t, udpTarget4, udpClient4, payload)}, frags...)...)
	got := c.readUDP()
	if want := (udpRecord{src: netip.MustParseAddrPort(udpTarget4), dst: netip.MustParseAddrPort(udpClient4),
		payloadLen: 100, prefix: string(payload[:64]), hash: streamhash.Sum(payload), hashed: true}); got != want {
		t.Errorf("record %+v, want %+v", got, want)
	}
	// The first fragment makes a record of the whole datagram's length,
	// without hash; the later ones are ignored.
	got = c.readUDP()
	if got.payloadLen != len(big) || got.hashed || got.prefix != string(big[:64]) {
		t.Errorf("fragmented answer %+v", got)
	}
	if st := s.Stats(); st.UDPFragments != uint64(len(frags)-1) || st.UDPRouted != 2 || st.Invalid != 0 {
		t.Errorf("stats %+v (%d fragments)", st, len(frags))
	}
}

// TestUDPHeldCompared: an answer longer than what a held answer keeps
// (udpHeldPayload) that came before its route is held cut, with the hash
// of its whole payload, and delivered compared like any other.
func TestUDPHeldCompared(t *testing.T) {
	s, addr := startServer(t, testConfig())
	c := dial(t, addr, true, 0)
	if _, err := c.conn.Write(wire.AppendConfig(nil, wire.Config{Compare: 64})); err != nil {
		t.Fatal(err)
	}
	long := bytes.Repeat([]byte("0123456789abcdef"), 50) // 800 bytes, an EDNS answer
	short := []byte("a short answer")
	injectBatch(s, answer(t, udpTarget4, udpClient4, long), answer(t, udpTarget6, udpClient6, short))
	waitFor(t, "held", func() bool { return s.Stats().UDPHeld == 2 })
	c.udpRoute(wire.RouteAdd, udpClient4, udpTarget4)
	c.udpRoute(wire.RouteAdd, udpClient6, udpTarget6)
	for _, want := range []udpRecord{
		{src: netip.MustParseAddrPort(udpTarget4), dst: netip.MustParseAddrPort(udpClient4),
			payloadLen: len(long), prefix: string(long[:64]), hash: streamhash.Sum(long), hashed: true},
		{src: netip.MustParseAddrPort(udpTarget6), dst: netip.MustParseAddrPort(udpClient6),
			payloadLen: len(short), prefix: string(short), hash: streamhash.Sum(short), hashed: true},
	} {
		if got := c.readUDP(); got != want {
			t.Errorf("held answer %+v, want %+v", got, want)
		}
	}
}

func TestUDPRouteCap(t *testing.T) {
	cfg := testConfig()
	cfg.MaxRoutesPerLink = 2
	s, addr := startServer(t, cfg)
	c := dial(t, addr, true, 0)
	c.udpRoute(wire.RouteAdd, "192.0.2.10:1", udpTarget4)
	c.udpRoute(wire.RouteAdd, "192.0.2.10:2", udpTarget4)
	c.udpRoute(wire.RouteAdd, "192.0.2.10:3", udpTarget4)
	c.route("192.0.2.10:3", udpTarget4) // TCP routes have their own count
	waitFor(t, "route messages", func() bool { return s.Stats().RouteMsgs == 4 })
	st := s.Stats()
	if st.UDPTable.Routes != 2 || st.UDPTable.RefusedOwnerFull != 1 || st.Routes != 1 {
		t.Errorf("UDP routes %d, refused %d, TCP routes %d; want 2, 1, 1", st.UDPTable.Routes, st.UDPTable.RefusedOwnerFull, st.Routes)
	}
	if ls := s.LinkStats(); len(ls) != 1 || ls[0].UDPRoutesHeld != 2 || ls[0].RoutesRefused != 1 {
		t.Errorf("link stats %+v", ls)
	}
	// Idle UDP routes expire with --udp-route-idle, TCP ones stay.
	s.expire(time.Now().Add(cfg.UDPRouteIdle + time.Second))
	if st := s.Stats(); st.UDPTable.Routes != 0 || st.Routes != 1 {
		t.Errorf("after the UDP idle time: UDP routes %d, TCP routes %d", st.UDPTable.Routes, st.Routes)
	}
}

func TestHandleUDPAllocs(t *testing.T) {
	cfg := testConfig()
	cfg.HeldMax = 16
	s, addr := startServer(t, cfg)
	a := dial(t, addr, true, 16)
	if _, err := a.conn.Write(wire.AppendConfig(nil, wire.Config{PrefixLen: 16, Compare: 64})); err != nil {
		t.Fatal(err)
	}
	a.udpRoute(wire.RouteAdd, udpClient4, udpTarget4)
	waitFor(t, "route", func() bool { return s.Stats().UDPTable.Routes == 1 })
	pkt := answer(t, udpTarget4, udpClient4, []byte("an answer of some forty bytes, hashed.."))
	unrouted := answer(t, udpTarget4, "192.0.2.10:1", []byte("nobody's"))
	frags := fragments(t, answer(t, udpTarget4, udpClient4, make([]byte, 2000)), 1500)
	var sc scratch
	s.handle(&sc, pkt, 1) // warm up buffers
	s.flushTouched(&sc)
	allocs := testing.AllocsPerRun(1000, func() {
		s.handle(&sc, pkt, 1)
		s.handle(&sc, unrouted, 1) // held, then the pool is full
		s.handle(&sc, frags[0], 1)
		s.handle(&sc, frags[1], 1)
		s.flushTouched(&sc)
	})
	if allocs != 0 {
		t.Errorf("handle allocates %v times per batch of UDP answers, want 0", allocs)
	}
}
