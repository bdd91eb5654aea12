package tcpcopy

import (
	"bytes"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/pkg/datagram"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// routeLog is a router that records the routes and accepts them unless
// refuse is set.
type routeLog struct {
	mu     sync.Mutex
	routes []wire.Route
	refuse bool
}

func (r *routeLog) Route(rt wire.Route) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.routes = append(r.routes, rt)
	return !r.refuse
}

func (r *routeLog) Flush() {}

func (r *routeLog) taken() []wire.Route {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := r.routes
	r.routes = nil
	return out
}

// udpRecord returns the record intercept sends for a datagram of n
// payload bytes from target to client, decoded from real version-7
// bytes. It stays valid (a copy).
func udpRecord(t testing.TB, target, client netip.AddrPort, n int) *wire.Record {
	t.Helper()
	f := datagram.Fields{Src: target, Dst: client, Payload: bytes.Repeat([]byte{'a'}, n)}
	pkt := make([]byte, f.Len())
	f.Encode(pkt)
	format := wire.Format{Version: wire.Version7, UDP: true}
	b := wire.NewBatcher(format, 0)
	b.Add(pkt, n, 1, nil)
	rr := wire.NewRecordReader(bytes.NewReader(b.Bytes()), format)
	if !rr.Next() {
		t.Fatalf("record: %v (skipped %d)", rr.Err(), rr.Skipped())
	}
	rec := rr.Record()
	rec.Header = append([]byte(nil), rec.Header...)
	return &rec
}

// TestUDPTracker drives the matching of answers to queries: the k-th
// answer of a flow answers its k-th unanswered query, whatever the
// payload.
func TestUDPTracker(t *testing.T) {
	c1 := netip.MustParseAddrPort("198.51.100.7:40000")
	c2 := netip.MustParseAddrPort("198.51.100.7:40001")
	c6 := netip.MustParseAddrPort("[2001:db8:1::7]:40000")
	ms := time.Millisecond
	type op struct {
		at       time.Duration
		query    bool // else an answer
		mapping  int
		client   netip.AddrPort
		expire   bool
		wantRTT  time.Duration // for an answer; -1: late
		wantAdds int           // route adds caused
	}
	for _, tc := range []struct {
		name                       string
		ops                        []op
		answered, unanswered, late []uint64 // by mapping; late is one number
		wantDels                   int
		wantFlows, wantPending     int
	}{
		{
			name: "in order",
			ops: []op{
				{at: 0, query: true, client: c1, wantAdds: 1},
				{at: 1 * ms, query: true, client: c1},
				{at: 3 * ms, client: c1, wantRTT: 3 * ms},
				{at: 4 * ms, client: c1, wantRTT: 3 * ms},
				{at: 5 * ms, client: c1, wantRTT: -1}, // a third answer: nobody waits
			},
			answered: []uint64{2, 0}, unanswered: []uint64{0, 0}, late: []uint64{1},
			wantFlows: 1,
		},
		{
			name: "flows and mappings apart",
			ops: []op{
				{at: 0, query: true, client: c1, wantAdds: 1},
				{at: 0, query: true, client: c2, wantAdds: 1},
				{at: 0, query: true, mapping: 1, client: c6, wantAdds: 1},
				{at: 2 * ms, mapping: 1, client: c6, wantRTT: 2 * ms},
				{at: 7 * ms, client: c2, wantRTT: 7 * ms},
			},
			answered: []uint64{1, 1}, unanswered: []uint64{0, 0}, late: []uint64{0},
			wantFlows: 3, wantPending: 1,
		},
		{
			name: "unanswered after the wait, then the flow goes",
			ops: []op{
				{at: 0, query: true, client: c1, wantAdds: 1},
				{at: time.Second, query: true, client: c1},
				{at: udpAnswerWait + 500*ms, expire: true}, // the first query's time is up
				{at: udpAnswerWait + 600*ms, client: c1, wantRTT: udpAnswerWait - 400*ms},
				{at: udpAnswerWait + 700*ms, client: c1, wantRTT: -1},
				{at: udpAnswerWait + udpFlowIdle + time.Second, expire: true},
			},
			answered: []uint64{1, 0}, unanswered: []uint64{1, 0}, late: []uint64{1},
			wantDels: 1,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rl := &routeLog{}
			tr := newUDPTracker(2, rl)
			base := time.Unix(1700000000, 0).UnixNano()
			target := [2]netip.AddrPort{dnsTarget4, dnsTarget6}
			for i, o := range tc.ops {
				now := base + int64(o.at)
				switch {
				case o.expire:
					tr.expire(now, false)
				case o.query:
					if !tr.query(now, o.mapping, o.client, target[o.mapping]) {
						t.Fatalf("op %d: query not tracked", i)
					}
				default:
					_, sent, ok := tr.answer(now, udpRecord(t, target[o.mapping], o.client, 40))
					if o.wantRTT < 0 {
						if ok {
							t.Errorf("op %d: late answer matched", i)
						}
						break
					}
					if !ok || time.Duration(now-sent) != o.wantRTT {
						t.Errorf("op %d: answer ok %v after %v, want %v", i, ok, time.Duration(now-sent), o.wantRTT)
					}
				}
				if o.wantAdds > 0 || o.query {
					adds := 0
					for _, r := range rl.taken() {
						if r.Op != wire.RouteAdd || !r.UDP || r.Client != o.client || r.Target != target[o.mapping] {
							t.Errorf("op %d: route %+v", i, r)
						}
						adds++
					}
					if adds != o.wantAdds {
						t.Errorf("op %d: %d route adds, want %d", i, adds, o.wantAdds)
					}
				}
			}
			dels := 0
			for _, r := range rl.taken() {
				if r.Op == wire.RouteDel && r.UDP {
					dels++
				}
			}
			if dels != tc.wantDels {
				t.Errorf("%d route deletes, want %d", dels, tc.wantDels)
			}
			s := tr.stats()
			for m := range 2 {
				if s.answered[m] != tc.answered[m] || s.unanswered[m] != tc.unanswered[m] || s.hists[m].Count() != tc.answered[m] {
					t.Errorf("mapping %d: answered %d unanswered %d times %d, want %d %d", m, s.answered[m], s.unanswered[m], s.hists[m].Count(), tc.answered[m], tc.unanswered[m])
				}
			}
			if s.late != tc.late[0] || s.flows != tc.wantFlows || s.pending != tc.wantPending {
				t.Errorf("late %d flows %d pending %d, want %d %d %d", s.late, s.flows, s.pending, tc.late[0], tc.wantFlows, tc.wantPending)
			}
			// At exit every query still waiting counts unanswered.
			tr.expire(base, true)
			s = tr.stats()
			if tr, an, un, _ := s.total(); tr != an+un || s.pending != 0 || s.flows != 0 {
				t.Errorf("after the final expiry: tracked %d answered %d unanswered %d pending %d flows %d", tr, an, un, s.pending, s.flows)
			}
		})
	}
}

// TestUDPTrackerBounds: flows and queries beyond the bounds are not
// tracked, and counted; a flow no intercept takes is not tracked and its
// route leaves the set.
func TestUDPTrackerBounds(t *testing.T) {
	now := time.Unix(1700000000, 0).UnixNano()
	rl := &routeLog{}
	tr := newUDPTracker(1, rl)
	tr.perShard = 1
	c := dnsClient4
	for range udpMaxPending {
		if !tr.query(now, 0, c, dnsTarget4) {
			t.Fatal("query refused before the bound")
		}
	}
	if tr.query(now, 0, c, dnsTarget4) {
		t.Error("query beyond udpMaxPending tracked")
	}
	// One flow per shard: another flow finds its shard full sooner or
	// later.
	refused := 0
	for p := range uint16(64) {
		if !tr.query(now, 0, netip.AddrPortFrom(c.Addr(), 1000+p), dnsTarget4) {
			refused++
		}
	}
	s := tr.stats()
	if s.untracked[untrackedQueue] != 1 || s.untracked[untrackedFlows] != uint64(refused) || refused == 0 || s.flows > udpShards {
		t.Errorf("untracked %v, refused %d, flows %d", s.untracked, refused, s.flows)
	}
	// A send error takes the query back.
	tr2 := newUDPTracker(1, &routeLog{})
	tr2.query(now, 0, c, dnsTarget4)
	tr2.unsent(0, c, dnsTarget4)
	if s := tr2.stats(); s.tracked[0] != 0 || s.pending != 0 {
		t.Errorf("after unsent: tracked %d pending %d", s.tracked[0], s.pending)
	}

	rl.refuse = true
	rl.taken()
	tr3 := newUDPTracker(1, rl)
	if tr3.query(now, 0, c, dnsTarget4) {
		t.Error("query tracked without a route")
	}
	if rs := rl.taken(); len(rs) != 2 || rs[0].Op != wire.RouteAdd || rs[1].Op != wire.RouteDel || !rs[1].UDP {
		t.Errorf("routes %+v, want an add taken back by a delete", rs)
	}
	if s := tr3.stats(); s.untracked[untrackedNoRoute] != 1 || s.flows != 0 {
		t.Errorf("no route: untracked %v flows %d", s.untracked, s.flows)
	}
}

// TestUDPAnswersEngine runs copies of queries through the engine and the
// target's answers back as records from intercept: counted per mapping,
// in the metrics and the log attributes.
func TestUDPAnswersEngine(t *testing.T) {
	e, snd, b := udpEngine(t, func(c *Config) { c.Copies = 2 })
	rl := &routeLog{}
	e.udp.answers.links = rl
	feedCapture(e, b, query(dnsClient4, dnsOnline4, 30), query(dnsClient6, dnsOnline6, 30))
	if len(snd.pkts) != 4 {
		t.Fatalf("%d copies sent, want 4", len(snd.pkts))
	}
	if rs := rl.taken(); len(rs) != 4 {
		t.Fatalf("%d routes announced, want one per copy's flow: %+v", len(rs), rs)
	}
	// The target answers three copies of the four: records from intercept.
	lb := e.disp.newBatch()
	for _, pkt := range snd.pkts[:3] {
		var p datagram.Parsed
		p.Decode(pkt)
		lb.Record(udpRecord(t, p.Dst, p.Src, 50))
	}
	lb.Record(udpRecord(t, dnsTarget4, netip.MustParseAddrPort("198.51.100.99:1"), 50)) // nobody's
	lb.Flush()
	e.udp.answers.expire(e.now(), true) // tcpcopy stops: the fourth is unanswered
	fams := scrape(t, e)
	m4, m6 := "udp:192.0.2.1:53-203.0.113.20:5353", "udp:[2001:db8::1]:53-[2001:db8::20]:5353"
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"tcpcopy_udp_queries_tracked_total", []string{"mapping", m4}, 2},
		{"tcpcopy_udp_queries_tracked_total", []string{"mapping", m6}, 2},
		{"tcpcopy_udp_answered_total", []string{"mapping", m4}, 2},
		{"tcpcopy_udp_answered_total", []string{"mapping", m6}, 1},
		{"tcpcopy_udp_unanswered_total", []string{"mapping", m6}, 1},
		{"tcpcopy_udp_answers_late_total", nil, 1},
		{"tcpcopy_udp_queries_pending", nil, 0},
		{"tcpcopy_packets_dropped_total", []string{"reason", "bad_record"}, 0},
	} {
		if got := value(fams, tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	if h := fams["tcpcopy_udp_answer_seconds"]; h == nil || len(h.GetMetric()) != 2 || h.GetMetric()[0].GetHistogram().GetSampleCount()+h.GetMetric()[1].GetHistogram().GetSampleCount() != 3 {
		t.Errorf("tcpcopy_udp_answer_seconds: %v", h)
	}
	text := slogText(e.udpAttrs(nil, true))
	for _, want := range []string{"udp_tracked=4", "udp_answered=3", "udp_unanswered=1", "udp_answers_late=1", "udp_answer_p50=",
		`udp_answers="` + m4 + ":answered=2,unanswered=0 " + m6 + ":answered=1,unanswered=1"} {
		if !strings.Contains(text, want) {
			t.Errorf("log attributes %q lack %s", text, want)
		}
	}
}

// TestUDPAnswersAllocs: once the flow maps have grown, a query and its
// answer cost no allocation.
func TestUDPAnswersAllocs(t *testing.T) {
	e, snd, b := udpEngine(t, nil)
	snd.keep = false
	e.udp.answers.links = acceptRoutes{}
	pkt := query(dnsClient4, dnsOnline4, 60)
	rec := udpRecord(t, dnsTarget4, dnsClient4, 60) // copies keep the client's endpoint without -n
	lb := e.disp.newBatch()
	var (
		p    ipmangle.Parsed
		seg  ipmangle.Segmenter
		segb = make([]byte, e.cfg.MTU)
	)
	run := func() {
		now := e.now()
		e.handleCaptured(pkt, &p, &seg, segb, b, now, false)
		b.flush(now)
		lb.Record(rec)
		lb.Flush()
	}
	run()
	if a := testing.AllocsPerRun(500, run); a != 0 {
		t.Errorf("a query and its answer allocate %v times", a)
	}
	// One run above, one to warm up, 500 counted.
	if s := e.udp.answers.stats(); s.answered[0] != 502 || s.late != 0 {
		t.Errorf("answered %d late %d, want 502 0", s.answered[0], s.late)
	}
}
