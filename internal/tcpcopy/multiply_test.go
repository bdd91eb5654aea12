package tcpcopy

import (
	"fmt"
	"net/netip"
	"sync"
	"testing"

	"github.com/tcpcopy-go/tcpcopy/pkg/tcpstate"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

var (
	testOnline = netip.MustParseAddrPort("192.0.2.1:80")
	testTarget = netip.MustParseAddrPort("198.51.100.2:8080")
)

// testRewriter returns the rewriter of a validated configuration that
// edit changed.
func testRewriter(t testing.TB, edit func(*Config)) *rewriter {
	t.Helper()
	cfg := Default()
	cfg.Mappings = []Mapping{{Online: netip.AddrPortFrom(netip.Addr{}, 80), Target: testTarget}}
	cfg.Intercepts = []netip.AddrPort{netip.MustParseAddrPort("198.51.100.130:36524")}
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return newRewriter(&cfg)
}

func conn(client string, pass uint32) connKey {
	return connKey{client: netip.MustParseAddrPort(client), server: testOnline, pass: pass}
}

func TestEndpointsOnlyWhenRewriting(t *testing.T) {
	tests := []struct {
		name  string
		edit  func(*Config)
		track bool
	}{
		{"plain", nil, false},
		{"sampling", func(c *Config) { c.Percent = 20 }, false},
		{"-n 2", func(c *Config) { c.Copies = 2 }, true},
		{"-c", func(c *Config) { c.ClientPool = []netip.Addr{netip.MustParseAddr("192.0.2.200")} }, true},
		{"-f", func(c *Config) { c.PortShift = 1 }, true},
		{"-H", func(c *Config) { c.LocalhostAs = netip.MustParseAddr("192.0.2.9") }, true},
		{"-T 2", func(c *Config) { c.OfflineFile, c.Repeat = "x.pcap", 2 }, true},
		{"-T 1", func(c *Config) { c.OfflineFile = "x.pcap" }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := testRewriter(t, tt.edit).eps != nil; got != tt.track {
				t.Errorf("endpoint allocator %v, want %v", got, tt.track)
			}
		})
	}
}

// checkDistinct fails if two live leases share an endpoint.
func checkDistinct(t *testing.T, leases []*lease) {
	t.Helper()
	seen := map[netip.AddrPort]connKey{}
	for _, l := range leases {
		for i, f := range l.fakes {
			if !f.IsValid() {
				t.Fatalf("%v copy %d got no endpoint", l.conn, i)
			}
			if other, dup := seen[f]; dup {
				t.Fatalf("%v copy %d and %v share %v", l.conn, i, other, f)
			}
			seen[f] = l.conn
		}
	}
}

func TestEndpointsNoCollisionOneAddress(t *testing.T) {
	// One client address, 3000 connections on neighbouring ports, three
	// copies each: copy 1 of port p and copy 0 of port p+copyStride
	// prefer the same endpoint, and so on.
	rw := testRewriter(t, func(c *Config) { c.Copies = 3 })
	var leases []*lease
	for port := 32768; port < 32768+3000; port++ {
		leases = append(leases, rw.eps.lease(conn(fmt.Sprintf("192.0.2.10:%d", port), 0), testTarget, 1))
	}
	checkDistinct(t, leases)
	for _, l := range leases {
		if l.fakes[0] != l.conn.client {
			t.Errorf("copy 0 of %v moved to %v although its own endpoint was free", l.conn.client, l.fakes[0])
			break
		}
	}
	st := rw.eps.stats()
	if st.Conns != 3000 || st.Copies != 9000 || st.Exhausted != 0 || st.Multiplication() != 3 {
		t.Errorf("stats %+v", st)
	}
}

func TestEndpointsNoCollisionSmallPool(t *testing.T) {
	// Many clients that all use port 40000, mapped onto two pool
	// addresses (C issues #146, #286): each needs its own port.
	rw := testRewriter(t, func(c *Config) {
		c.Copies = 3
		c.ClientPool = []netip.Addr{netip.MustParseAddr("192.0.2.201"), netip.MustParseAddr("192.0.2.202")}
	})
	var leases []*lease
	for i := range 500 {
		leases = append(leases, rw.eps.lease(conn(fmt.Sprintf("203.0.113.%d:40000", i%250+1), uint32(i/250)), testTarget, 1))
	}
	checkDistinct(t, leases)
	for _, l := range leases {
		for _, f := range l.fakes {
			if a := f.Addr().String(); a != "192.0.2.201" && a != "192.0.2.202" {
				t.Fatalf("endpoint %v outside the pool", f)
			}
		}
	}
}

func TestEndpointsSticky(t *testing.T) {
	rw := testRewriter(t, func(c *Config) {
		c.Copies = 2
		c.ClientPool = []netip.Addr{netip.MustParseAddr("192.0.2.201"), netip.MustParseAddr("192.0.2.202")}
	})
	a := rw.eps.lease(conn("203.0.113.7:40000", 0), testTarget, 1)
	for i := range 10 {
		rw.eps.lease(conn(fmt.Sprintf("203.0.113.8:%d", 40000+i), 0), testTarget, 2)
	}
	if b := rw.eps.lease(conn("203.0.113.7:40000", 0), testTarget, 3); a != b {
		t.Errorf("the same connection got a new lease")
	}
	// Another connection of the same client address keeps its addresses
	// (-c is sticky per address and copy).
	c := rw.eps.lease(conn("203.0.113.7:40001", 0), testTarget, 4)
	for i := range a.fakes {
		if a.fakes[i].Addr() != c.fakes[i].Addr() {
			t.Errorf("copy %d: %v, then %v for another connection of the same client", i, a.fakes[i], c.fakes[i])
		}
	}
	if a.fakes[0].Addr() == a.fakes[1].Addr() {
		t.Errorf("both copies on %v although the pool has two addresses", a.fakes[0].Addr())
	}
}

func TestEndpointsPassesDiffer(t *testing.T) {
	rw := testRewriter(t, func(c *Config) { c.OfflineFile, c.Repeat = "x.pcap", 3 })
	var leases []*lease
	for pass := range uint32(3) {
		leases = append(leases, rw.eps.lease(conn("192.0.2.10:40000", pass), testTarget, 1))
	}
	checkDistinct(t, leases)
	if leases[0].fakes[0] != netip.MustParseAddrPort("192.0.2.10:40000") {
		t.Errorf("pass 0 moved to %v", leases[0].fakes[0])
	}
}

func TestEndpointsPortShift(t *testing.T) {
	// -f adds f<<11 to the port as a number (host byte order), modulo
	// 2^16 as in C; C wrote the sum without swapping it back.
	tests := []struct {
		f          int
		port, want uint16
	}{
		{1, 40000, 42048},
		{3, 1000, 7144},
		{31, 65000, 65000 + 31<<11 - 65536},
	}
	for _, tt := range tests {
		rw := testRewriter(t, func(c *Config) { c.PortShift = tt.f })
		l := rw.eps.lease(conn(fmt.Sprintf("192.0.2.10:%d", tt.port), 0), testTarget, 1)
		if got := l.fakes[0].Port(); got != tt.want {
			t.Errorf("-f %d: port %d became %d, want %d", tt.f, tt.port, got, tt.want)
		}
	}
}

func TestEndpointsReclaim(t *testing.T) {
	rw := testRewriter(t, func(c *Config) { c.Copies = 2 })
	eps := rw.eps
	a := eps.lease(conn("192.0.2.10:40000", 0), testTarget, 0)
	k0 := tcpstate.Key{Client: a.fakes[0], Target: testTarget}
	k1 := tcpstate.Key{Client: a.fakes[1], Target: testTarget}
	eps.route(k0, true, 0)
	eps.route(k1, true, 0)
	eps.route(k1, true, 0) // announced again after a retry: still one session

	// Other connections from a's copy-1 endpoint (to other servers)
	// prefer it: taken.
	other := func(n uint16, now int64) *lease {
		return eps.lease(connKey{client: a.fakes[1], server: netip.AddrPortFrom(testOnline.Addr(), 80+n)}, testTarget, now)
	}
	if b := other(1, quarantine*10); b.fakes[0] == a.fakes[1] {
		t.Fatal("took the endpoint of a live session")
	}
	// Its sessions end; within the quarantine the endpoint stays.
	eps.route(k0, false, 100)
	eps.route(k1, false, 100)
	if b := other(2, 100+quarantine/2); b.fakes[0] == a.fakes[1] {
		t.Fatal("took the endpoint during the quarantine")
	}
	// A late packet of a's connection gets the same lease and refreshes it.
	if again := eps.lease(a.conn, testTarget, 200); again != a {
		t.Fatal("a late packet got a new lease")
	}
	if b := other(3, 200+quarantine); b.fakes[0] != a.fakes[1] {
		t.Errorf("after the quarantine got %v, want the freed %v", b.fakes[0], a.fakes[1])
	}
	// a is gone: its connection now gets a new lease.
	if again := eps.lease(a.conn, testTarget, 300+quarantine); again == a {
		t.Error("a reclaimed lease came back")
	}
}

func TestEndpointsSweepBoundsMemory(t *testing.T) {
	rw := testRewriter(t, func(c *Config) { c.Copies = 2 })
	eps := rw.eps
	now := int64(0)
	for i := range 20000 {
		now += 1e6 // 1000 connections a second, each ending at once
		l := eps.lease(conn(fmt.Sprintf("192.0.2.%d:%d", i%200+1, 1024+i%60000), 0), testTarget, now)
		for _, f := range l.fakes {
			k := tcpstate.Key{Client: f, Target: testTarget}
			eps.route(k, true, now)
			eps.route(k, false, now)
		}
	}
	st := eps.stats()
	// About quarantine × rate leases may be held, plus what the sweep has
	// not reached yet.
	if limit := 3 * int(quarantine/1e6); st.Active > limit {
		t.Errorf("%d leases held, want at most %d", st.Active, limit)
	}
	if len(eps.ring)-eps.head > 2*st.Active+100 {
		t.Errorf("sweep ring of %d for %d leases", len(eps.ring)-eps.head, st.Active)
	}
}

func TestEndpointsExhausted(t *testing.T) {
	// One pool address for more connections than it has ports: the last
	// copies are not made, and counted, instead of colliding.
	rw := testRewriter(t, func(c *Config) { c.ClientPool = []netip.Addr{netip.MustParseAddr("192.0.2.201")} })
	var leases []*lease
	for i := range 66000 {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		l := rw.eps.lease(connKey{client: netip.AddrPortFrom(a, 50000), server: testOnline}, testTarget, 1)
		if l.fakes[0].IsValid() {
			leases = append(leases, l)
		}
	}
	checkDistinct(t, leases)
	st := rw.eps.stats()
	if st.Exhausted == 0 || st.Copies != uint64(len(leases)) || st.Copies+st.Exhausted != 66000 {
		t.Errorf("stats %+v", st)
	}
	if st.Copies < 60000 {
		t.Errorf("only %d endpoints of one address were used", st.Copies)
	}
}

func TestEndpointsConcurrent(t *testing.T) {
	rw := testRewriter(t, func(c *Config) { c.Copies = 3; c.ClientPool = []netip.Addr{netip.MustParseAddr("192.0.2.201")} })
	var wg sync.WaitGroup
	results := make([][]*lease, 4)
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 500 {
				l := rw.eps.lease(conn(fmt.Sprintf("203.0.113.%d:%d", g+1, 30000+i), 0), testTarget, int64(i))
				for _, f := range l.fakes {
					rw.eps.route(tcpstate.Key{Client: f, Target: testTarget}, true, int64(i))
				}
				results[g] = append(results[g], l)
			}
		}()
	}
	wg.Wait()
	var all []*lease
	for _, r := range results {
		all = append(all, r...)
	}
	checkDistinct(t, all)
}

func TestTrackedRouter(t *testing.T) {
	rw := testRewriter(t, func(c *Config) { c.Copies = 2 })
	l := rw.eps.lease(conn("192.0.2.10:40000", 0), testTarget, 1)
	var got []wire.Route
	tr := trackedRouter{router: routeRecorder{&got}, eps: rw.eps, now: func() int64 { return 5 }}
	tr.Route(wire.Route{Client: l.fakes[1], Target: testTarget, Op: wire.RouteAdd})
	if !l.live[1] || l.nlive != 1 || len(got) != 1 {
		t.Errorf("after add: live %v, routes %v", l.live, got)
	}
	tr.Route(wire.Route{Client: l.fakes[1], Target: testTarget, Op: wire.RouteDel})
	if l.live[1] || l.nlive != 0 || len(got) != 2 {
		t.Errorf("after del: live %v, routes %v", l.live, got)
	}
}

// routeRecorder is a router that records and accepts every route.
type routeRecorder struct{ routes *[]wire.Route }

func (r routeRecorder) Route(rt wire.Route) bool { *r.routes = append(*r.routes, rt); return true }
func (routeRecorder) Flush()                     {}

func TestLeaseAllocs(t *testing.T) {
	rw := testRewriter(t, func(c *Config) { c.Copies = 3; c.ClientPool = []netip.Addr{netip.MustParseAddr("192.0.2.201")} })
	c := conn("203.0.113.5:40000", 0)
	rw.eps.lease(c, testTarget, 1)
	if n := testing.AllocsPerRun(1000, func() { rw.eps.lease(c, testTarget, 2) }); n != 0 {
		t.Errorf("lease of a known connection allocates %.1f times", n)
	}
	k := tcpstate.Key{Client: netip.MustParseAddrPort("203.0.113.5:40000"), Target: testTarget}
	if n := testing.AllocsPerRun(1000, func() { rw.eps.route(k, true, 3) }); n != 0 {
		t.Errorf("route allocates %.1f times", n)
	}
}

func BenchmarkLease(b *testing.B) {
	rw := testRewriter(b, func(c *Config) { c.Copies = 3 })
	conns := make([]connKey, 1024)
	for i := range conns {
		conns[i] = conn(fmt.Sprintf("192.0.2.%d:%d", i%250+1, 30000+i), 0)
		rw.eps.lease(conns[i], testTarget, 1)
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		rw.eps.lease(conns[i&1023], testTarget, 2)
		i++
	}
}
