package tcpcopy

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/tcpstate"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

func TestMatch(t *testing.T) {
	rw := testRewriter(t, func(c *Config) {
		c.Mappings = []Mapping{
			{Online: netip.MustParseAddrPort("192.0.2.1:80"), Target: netip.MustParseAddrPort("198.51.100.2:8080")},
			{Online: netip.AddrPortFrom(netip.Addr{}, 80), Target: netip.MustParseAddrPort("198.51.100.3:8080")},
			{Online: netip.AddrPortFrom(netip.Addr{}, 80), Target: netip.MustParseAddrPort("[2001:db8:2::2]:8080")},
		}
	})
	tests := []struct {
		dst, target string
	}{
		{"192.0.2.1:80", "198.51.100.2:8080"},
		{"192.0.2.99:80", "198.51.100.3:8080"},
		{"[2001:db8:1::1]:80", "[2001:db8:2::2]:8080"},
		{"192.0.2.1:81", ""},
	}
	for _, tt := range tests {
		m, ok := rw.match(netip.MustParseAddrPort(tt.dst))
		got := ""
		if ok {
			got = m.Target.String()
		}
		if got != tt.target {
			t.Errorf("match(%s) = %q, want %q", tt.dst, got, tt.target)
		}
	}
}

func TestSampledShare(t *testing.T) {
	rw := testRewriter(t, nil)
	for _, pct := range []int{1, 20, 50, 99} {
		n := 0
		const total = 20000
		for i := range total {
			c := netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i%4)}), uint16(32768+i/4))
			if rw.sampled(c, pct) {
				n++
			}
		}
		got := float64(n) * 100 / total
		if d := got - float64(pct); d < -1.5 || d > 1.5 {
			t.Errorf("-r %d copied %.2f%% of %d connections", pct, got, total)
		}
	}
	c := netip.MustParseAddrPort("192.0.2.10:40000")
	if !rw.sampled(c, 100) {
		t.Error("-r 100 dropped a connection")
	}
	if rw.sampled(c, 0) {
		t.Error("share 0 copied a connection")
	}
	// Fixed hash: the same answer in every run (and in another rewriter).
	if testRewriter(t, nil).sampled(c, 37) != rw.sampled(c, 37) {
		t.Error("sampling differs between rewriters")
	}
}

func TestFakeAddr(t *testing.T) {
	pool := []netip.Addr{netip.MustParseAddr("192.0.2.201"), netip.MustParseAddr("192.0.2.202"), netip.MustParseAddr("2001:db8:1::201")}
	rw := testRewriter(t, func(c *Config) {
		c.ClientPool = pool
		c.LocalhostAs = netip.MustParseAddr("192.0.2.9")
		c.Mappings = append(c.Mappings, Mapping{Online: netip.AddrPortFrom(netip.Addr{}, 80), Target: netip.MustParseAddrPort("[2001:db8:2::2]:8080")})
	})
	a := netip.MustParseAddr("203.0.113.7")
	if first := rw.fakeAddr(a, 0); testRewriter(t, func(c *Config) { c.ClientPool = pool[:2] }).fakeAddr(a, 0) != first || first == rw.fakeAddr(a, 1) {
		t.Errorf("pool mapping: %v, %v", rw.fakeAddr(a, 0), rw.fakeAddr(a, 1))
	}
	if got := rw.fakeAddr(netip.MustParseAddr("2001:db8:9::1"), 5); got != pool[2] {
		t.Errorf("IPv6 client mapped to %v", got)
	}
	// -H first, then the pool: a loopback client is mapped like 192.0.2.9.
	if got, want := rw.fakeAddr(netip.MustParseAddr("127.0.0.1"), 0), rw.fakeAddr(netip.MustParseAddr("192.0.2.9"), 0); got != want {
		t.Errorf("loopback client mapped to %v, want %v", got, want)
	}
	noPool := testRewriter(t, func(c *Config) { c.LocalhostAs = netip.MustParseAddr("192.0.2.9") })
	if got := noPool.fakeAddr(netip.MustParseAddr("127.0.0.1"), 0); got.String() != "192.0.2.9" {
		t.Errorf("-H: %v", got)
	}
}

func TestFakePortSpread(t *testing.T) {
	rw := testRewriter(t, func(c *Config) { c.Copies = 5 })
	seen := map[uint16]bool{}
	for v := range uint64(5) {
		p := rw.fakePort(40000, v)
		if v > 0 && p < lowPort {
			t.Errorf("variant %d port %d below %d", v, p, lowPort)
		}
		if seen[p] {
			t.Errorf("variant %d repeats port %d", v, p)
		}
		seen[p] = true
		if d := int(p) - 40000; v > 0 && d > -100 && d < 100 {
			t.Errorf("variant %d port %d next to the client's own", v, p)
		}
	}
}

// newTestEngine returns an engine with a counting sender, routes accepted,
// and no goroutines.
func newTestEngine(t testing.TB, edit func(*Config)) *engine {
	t.Helper()
	cfg := Default()
	cfg.Mappings = []Mapping{{Online: netip.AddrPortFrom(netip.Addr{}, 80), Target: testTarget}}
	cfg.Intercepts = []netip.AddrPort{netip.MustParseAddrPort("198.51.100.130:36524")}
	cfg.Workers = 1
	if edit != nil {
		edit(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	e := newEngine(&cfg, nopSender{}, slog.New(slog.DiscardHandler))
	for _, w := range e.disp.workers {
		w.links = routeRecorder{new([]wire.Route)}
		e.track(w)
	}
	return e
}

type nopSender struct{}

func (nopSender) Send([]byte) error { return nil }

// captureOne runs pkt through handleCaptured as a batch of its own.
func captureOne(e *engine, pkt []byte) {
	var (
		p   ipmangle.Parsed
		seg ipmangle.Segmenter
	)
	b := e.disp.newBatch()
	e.handleCaptured(pkt, &p, &seg, make([]byte, 1500), b, 1, false)
	b.flush(1)
}

// routed returns the sessions the engine announced since the last call.
func routed(e *engine) []tcpstate.Key {
	var ks []tcpstate.Key
	for _, w := range e.disp.workers {
		r := w.links.(trackedRouter).router.(routeRecorder)
		for _, rt := range *r.routes {
			ks = append(ks, tcpstate.Key{Client: rt.Client, Target: rt.Target})
		}
		*r.routes = (*r.routes)[:0]
	}
	return ks
}

func TestHandleCapturedCopies(t *testing.T) {
	e := newTestEngine(t, func(c *Config) {
		c.Copies = 3
		c.ClientPool = []netip.Addr{netip.MustParseAddr("192.0.2.201"), netip.MustParseAddr("192.0.2.202")}
	})
	client := netip.MustParseAddrPort("203.0.113.7:40000")
	captureOne(e, buildPkt(ipmangle.Fields{Src: client, Dst: testOnline, Seq: 1, Flags: ipmangle.SYN, Window: 100, WScale: -1}))
	first := routed(e)
	if len(first) != 3 {
		t.Fatalf("sessions %v, want 3 copies", first)
	}
	seen := map[tcpstate.Key]bool{}
	for _, k := range first {
		if seen[k] || k.Target != testTarget {
			t.Errorf("bad copy key %v in %v", k, first)
		}
		seen[k] = true
	}
	// The connection's data goes to the same three sessions: none is
	// opened, and each holds the data.
	captureOne(e, buildPkt(ipmangle.Fields{Src: client, Dst: testOnline, Seq: 2, Ack: 1, Flags: ipmangle.ACK | ipmangle.PSH, Window: 100, WScale: -1, Payload: []byte("GET /")}))
	if again := routed(e); len(again) != 0 {
		t.Errorf("the data opened sessions %v", again)
	}
	var st tcpstate.Stats
	for _, w := range e.disp.workers {
		ws := w.tab.Stats()
		st.Add(&ws)
	}
	if st.Opened != 3 || st.CapturedBytes != 15 {
		t.Errorf("opened %d sessions with %d bytes, want 3 with 15", st.Opened, st.CapturedBytes)
	}
}

func TestHandleCapturedAllocs(t *testing.T) {
	for _, tt := range []struct {
		name string
		edit func(*Config)
	}{
		{"plain", nil},
		{"-n 3 -c", func(c *Config) { c.Copies = 3; c.ClientPool = []netip.Addr{netip.MustParseAddr("192.0.2.201")} }},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e := newTestEngine(t, tt.edit)
			pkt := buildPkt(ipmangle.Fields{Src: netip.MustParseAddrPort("203.0.113.7:40000"), Dst: testOnline, Seq: 1,
				Flags: ipmangle.ACK | ipmangle.PSH, Window: 100, WScale: -1, Payload: make([]byte, 3000)})
			var (
				p   ipmangle.Parsed
				seg ipmangle.Segmenter
			)
			segb := make([]byte, 1500)
			b := e.disp.newBatch()
			run := func() {
				e.handleCaptured(pkt, &p, &seg, segb, b, 1, false)
				b.flush(1)
			}
			run()
			if n := testing.AllocsPerRun(200, run); n != 0 {
				t.Errorf("handleCaptured allocates %.1f times per packet", n)
			}
		})
	}
}

func buildPkt(f ipmangle.Fields) []byte {
	b := make([]byte, 70000)
	return b[:f.Encode(b)]
}

func TestGradualRamp(t *testing.T) {
	// -g: 1 % at the first packet, one more each second, 100 % from 99 s.
	e := newTestEngine(t, func(c *Config) { c.Gradual = true })
	t0 := int64(1_700_000_000) * int64(time.Second)
	for _, tt := range []struct {
		after time.Duration
		want  int
	}{{0, 1}, {999 * time.Millisecond, 1}, {time.Second, 2}, {5500 * time.Millisecond, 6}, {99 * time.Second, 100}, {time.Hour, 100}} {
		if got := e.percentNow(t0 + int64(tt.after)); got != tt.want {
			t.Errorf("after %v: %d %%, want %d %%", tt.after, got, tt.want)
		}
	}
	if got := newTestEngine(t, func(c *Config) { c.Percent = 30 }).percentNow(t0); got != 30 {
		t.Errorf("-r 30: %d %%", got)
	}
}
