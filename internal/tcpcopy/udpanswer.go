package tcpcopy

// udpanswer.go follows the target's answers to the copied UDP datagrams,
// when intercepts are linked (-s) and route UDP (docs/protocol.md §4.7):
// per copied flow (the copy's client endpoint and the target) it announces
// a UDP route, keeps the send times of the queries not yet answered, and
// matches each answer record to the oldest of them: the k-th answer of a
// flow answers the k-th unanswered query. This holds for any
// request-answer protocol whose server answers a flow's queries in order
// (DNS answers carry the query's ID too, but nothing here reads it). An
// answer gives a response time (received minus sent, on tcpcopy's clock:
// it includes the way through intercept) and counts its query answered;
// a query without answer within udpAnswerWait, or still waiting at exit,
// counts unanswered. A flow idle for udpFlowIdle with nothing pending is
// forgotten and its route deleted.
//
// Memory is bounded whatever the load: at most udpMaxFlows flows and
// udpMaxPending queries waiting per flow; what does not fit is not
// tracked, and counted (udp_queries_untracked_total by reason), so the
// answered and unanswered counts stay exact for the queries tracked.
// Flows are kept by value in sharded maps: no allocation per datagram
// once the maps have grown.

import (
	"fmt"
	"hash/maphash"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpcopy-go/tcpcopy/pkg/tcpstate"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// UDP answer tracking limits.
const (
	// udpAnswerWait is how long a query waits for its answer before it
	// counts unanswered (a DNS client's usual timeout).
	udpAnswerWait = 5 * time.Second
	// udpFlowIdle is how long a flow with no query waiting stays after
	// its last datagram before its route is deleted: answers later than
	// that find no flow (udp_answers_late_total).
	udpFlowIdle = 5 * time.Second
	// udpMaxPending bounds the queries of one flow waiting for answers.
	udpMaxPending = 16
	// udpMaxFlows bounds the flows tracked at once (about 200 bytes
	// each).
	udpMaxFlows = 1 << 18
	// udpDrainWait bounds the wait at exit for the answers of the last
	// queries (they are on their way through intercept).
	udpDrainWait = time.Second

	udpShards = 16
)

// udpUntracked says why a copied query was not tracked.
type udpUntracked uint8

const (
	untrackedNoRoute udpUntracked = iota // no intercept took the flow's route (none up, or none routes UDP)
	untrackedFlows                       // udpMaxFlows flows tracked already
	untrackedQueue                       // udpMaxPending queries of the flow waiting already
	numUntracked
)

var untrackedNames = [numUntracked]string{"no_route", "flows_full", "flow_queue_full"}

func (u udpUntracked) String() string { return untrackedNames[u] }

// udpFlowKey is a copied flow as the target sees it.
type udpFlowKey struct {
	client, target netip.AddrPort
}

// udpFlow is a flow's queries waiting for their answers: send times in a
// ring, oldest at head.
type udpFlow struct {
	sent    [udpMaxPending]int64
	head, n uint8
	mapping uint16
	last    int64 // the last query or answer
}

func (f *udpFlow) push(t int64) {
	f.sent[(int(f.head)+int(f.n))%udpMaxPending] = t
	f.n++
}

func (f *udpFlow) pop() int64 {
	t := f.sent[f.head]
	f.head = uint8((int(f.head) + 1) % udpMaxPending)
	f.n--
	return t
}

type udpShard struct {
	mu    sync.Mutex
	flows map[udpFlowKey]udpFlow
	_     [40]byte // keep shards on separate cache lines
}

// udpMapCounts are one UDP mapping's answer counts.
type udpMapCounts struct {
	tracked, answered, unanswered atomic.Uint64
}

// udpTracker matches the target's UDP answers to the copied queries. It
// is safe for concurrent use: queries come from the capture goroutines,
// answers from the link readers, expiry from its own.
type udpTracker struct {
	links    router
	seed     maphash.Seed
	perShard int
	shards   [udpShards]udpShard

	counts    []udpMapCounts // by UDP mapping index
	histMu    sync.Mutex
	hists     []tcpstate.DurationHistogram // by UDP mapping index, under histMu
	late      atomic.Uint64
	untracked [numUntracked]atomic.Uint64

	dels []udpFlowKey // expire's scratch
}

// newUDPTracker returns a tracker for n UDP mappings announcing routes
// on links.
func newUDPTracker(n int, links router) *udpTracker {
	t := &udpTracker{
		links: links, seed: maphash.MakeSeed(), perShard: udpMaxFlows / udpShards,
		counts: make([]udpMapCounts, n), hists: make([]tcpstate.DurationHistogram, n),
	}
	for i := range t.shards {
		t.shards[i].flows = make(map[udpFlowKey]udpFlow)
	}
	return t
}

func (t *udpTracker) shardOf(k udpFlowKey) *udpShard {
	return &t.shards[maphash.Comparable(t.seed, k)%udpShards]
}

// flowKey normalises the endpoints as the route carries them.
func flowKey(client, target netip.AddrPort) udpFlowKey {
	return udpFlowKey{
		client: netip.AddrPortFrom(client.Addr().Unmap(), client.Port()),
		target: netip.AddrPortFrom(target.Addr().Unmap(), target.Port()),
	}
}

// query records that a copy of a query of UDP mapping mapping goes from
// client to target at now; the first query of a flow announces its
// route. It reports whether the query is tracked (its answer awaited). It
// allocates nothing once the flow maps have grown.
func (t *udpTracker) query(now int64, mapping int, client, target netip.AddrPort) bool {
	k := flowKey(client, target)
	s := t.shardOf(k)
	s.mu.Lock()
	f, ok := s.flows[k]
	if !ok {
		full := len(s.flows) >= t.perShard
		s.mu.Unlock()
		if full {
			t.untracked[untrackedFlows].Add(1)
			return false
		}
		r := wire.Route{Client: k.client, Target: k.target, Op: wire.RouteAdd, UDP: true}
		if !t.links.Route(r) {
			// No intercept took it: its answers cannot come. Take it
			// out of the set that links re-announce.
			r.Op = wire.RouteDel
			t.links.Route(r)
			t.untracked[untrackedNoRoute].Add(1)
			return false
		}
		t.links.Flush() // the answer may come fast: send the route now
		s.mu.Lock()
		if f, ok = s.flows[k]; !ok { // a concurrent query may have made it
			f = udpFlow{mapping: uint16(mapping)}
		}
	}
	if f.n == udpMaxPending {
		s.mu.Unlock()
		t.untracked[untrackedQueue].Add(1)
		return false
	}
	f.push(now)
	f.last = now
	s.flows[k] = f
	s.mu.Unlock()
	t.counts[mapping].tracked.Add(1)
	return true
}

// unsent takes back the newest query of the flow, tracked by query but
// not sent (a send error, counted as such).
func (t *udpTracker) unsent(mapping int, client, target netip.AddrPort) {
	k := flowKey(client, target)
	s := t.shardOf(k)
	s.mu.Lock()
	f, ok := s.flows[k]
	if ok && f.n > 0 {
		f.n--
		s.flows[k] = f
	}
	s.mu.Unlock()
	if ok {
		t.counts[mapping].tracked.Add(^uint64(0))
	}
}

// answer matches the UDP record rec, received at now, to the oldest query
// of its flow waiting for an answer. It reports the mapping and the
// query's send time; false for an answer no query waits for (late, or
// one more than the queries), counted.
func (t *udpTracker) answer(now int64, rec *wire.Record) (mapping int, sent int64, ok bool) {
	client, target, ok := udpRecordEnds(rec)
	if !ok {
		t.late.Add(1)
		return 0, 0, false
	}
	k := udpFlowKey{client: client, target: target}
	s := t.shardOf(k)
	s.mu.Lock()
	f, ok := s.flows[k]
	if !ok || f.n == 0 {
		s.mu.Unlock()
		t.late.Add(1)
		return 0, 0, false
	}
	sent = f.pop()
	f.last = now
	s.flows[k] = f
	s.mu.Unlock()
	mapping = int(f.mapping)
	t.counts[mapping].answered.Add(1)
	t.histMu.Lock()
	t.hists[mapping].Observe(time.Duration(max(now-sent, 0)))
	t.histMu.Unlock()
	return mapping, sent, true
}

// udpRecordEnds returns the destination (the copy's client endpoint) and
// the source (the target) of a UDP record's datagram.
func udpRecordEnds(rec *wire.Record) (client, target netip.AddrPort, ok bool) {
	ip, u := rec.IP(), rec.TCP()
	if len(u) < 4 {
		return client, target, false
	}
	var src, dst netip.Addr
	switch {
	case len(ip) >= 20 && ip[0]>>4 == 4:
		src, dst = netip.AddrFrom4([4]byte(ip[12:16])), netip.AddrFrom4([4]byte(ip[16:20]))
	case len(ip) >= 40 && ip[0]>>4 == 6:
		src, dst = netip.AddrFrom16([16]byte(ip[8:24])), netip.AddrFrom16([16]byte(ip[24:40]))
	default:
		return client, target, false
	}
	sp, dp := uint16(u[0])<<8|uint16(u[1]), uint16(u[2])<<8|uint16(u[3])
	return netip.AddrPortFrom(dst.Unmap(), dp), netip.AddrPortFrom(src.Unmap(), sp), true
}

// expire counts unanswered the queries older than udpAnswerWait at now,
// and forgets the flows idle for udpFlowIdle with nothing waiting,
// deleting their routes. With final it counts every waiting query
// unanswered (tcpcopy is stopping) and deletes no route. Only one
// goroutine may call it at a time.
func (t *udpTracker) expire(now int64, final bool) {
	wait, idle := now-int64(udpAnswerWait), now-int64(udpFlowIdle)
	t.dels = t.dels[:0]
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		for k, f := range s.flows {
			n := f.n
			for f.n > 0 && (final || f.sent[f.head] < wait) {
				f.pop()
			}
			if n != f.n {
				t.counts[f.mapping].unanswered.Add(uint64(n - f.n))
			}
			switch {
			case f.n == 0 && (final || f.last < idle):
				delete(s.flows, k)
				t.dels = append(t.dels, k)
			case n != f.n:
				s.flows[k] = f
			}
		}
		s.mu.Unlock()
	}
	if final {
		return
	}
	for _, k := range t.dels {
		t.links.Route(wire.Route{Client: k.client, Target: k.target, Op: wire.RouteDel, UDP: true})
	}
}

// pending returns the flows tracked and their queries waiting.
func (t *udpTracker) pending() (flows, queries int) {
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		flows += len(s.flows)
		for _, f := range s.flows {
			queries += int(f.n)
		}
		s.mu.Unlock()
	}
	return flows, queries
}

// drain waits, at most udpDrainWait, for the queries waiting to be
// answered (tcpcopy is stopping: no query comes any more).
func (t *udpTracker) drain() {
	for deadline := time.Now().Add(udpDrainWait); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if _, q := t.pending(); q == 0 {
			return
		}
	}
}

// udpAnswerStats is a snapshot of the tracker.
type udpAnswerStats struct {
	tracked, answered, unanswered []uint64 // by UDP mapping
	hists                         []tcpstate.DurationHistogram
	late                          uint64
	untracked                     [numUntracked]uint64
	flows, pending                int
}

func (t *udpTracker) stats() udpAnswerStats {
	n := len(t.counts)
	s := udpAnswerStats{tracked: make([]uint64, n), answered: make([]uint64, n), unanswered: make([]uint64, n), late: t.late.Load()}
	for i := range t.counts {
		c := &t.counts[i]
		s.tracked[i], s.answered[i], s.unanswered[i] = c.tracked.Load(), c.answered.Load(), c.unanswered.Load()
	}
	t.histMu.Lock()
	s.hists = append([]tcpstate.DurationHistogram(nil), t.hists...)
	t.histMu.Unlock()
	for i := range s.untracked {
		s.untracked[i] = t.untracked[i].Load()
	}
	s.flows, s.pending = t.pending()
	return s
}

// total returns the sums over the mappings, and their response times.
func (s *udpAnswerStats) total() (tracked, answered, unanswered uint64, h tcpstate.DurationHistogram) {
	for i := range s.tracked {
		tracked += s.tracked[i]
		answered += s.answered[i]
		unanswered += s.unanswered[i]
		h.Add(&s.hists[i])
	}
	return tracked, answered, unanswered, h
}

// udpAnswerMetrics are the labelled metric families of the UDP answers
// (docs/metrics.md, "UDP"); the mapping label is the -x mapping as
// written by Mapping.String.
type udpAnswerMetrics struct {
	labels                                   []string // by UDP mapping
	tracked, answered, unanswered, untracked *prometheus.Desc
	seconds                                  *prometheus.Desc
}

func newUDPAnswerMetrics(maps []Mapping) *udpAnswerMetrics {
	m := &udpAnswerMetrics{
		tracked: prometheus.NewDesc("tcpcopy_udp_queries_tracked_total",
			"Copies of UDP datagrams whose answer from the target is awaited (through intercept), by mapping.", []string{"mapping"}, nil),
		answered: prometheus.NewDesc("tcpcopy_udp_answered_total",
			"Tracked UDP copies the target answered (the k-th answer of a flow answers its k-th unanswered copy), by mapping.", []string{"mapping"}, nil),
		unanswered: prometheus.NewDesc("tcpcopy_udp_unanswered_total",
			"Tracked UDP copies without an answer within 5 s, or still waiting at exit, by mapping.", []string{"mapping"}, nil),
		untracked: prometheus.NewDesc("tcpcopy_udp_queries_untracked_total",
			"UDP copies whose answer is not awaited, by reason: no_route (no intercept took the flow's route: none up, or none routes UDP), flows_full, flow_queue_full.", []string{"reason"}, nil),
		seconds: prometheus.NewDesc("tcpcopy_udp_answer_seconds",
			"Per answered UDP copy, from sending it to the target to receiving the target's answer through intercept, by mapping.", []string{"mapping"}, nil),
	}
	for _, mp := range maps {
		m.labels = append(m.labels, mp.String())
	}
	return m
}

func (m *udpAnswerMetrics) describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{m.tracked, m.answered, m.unanswered, m.untracked, m.seconds} {
		ch <- d
	}
}

func (m *udpAnswerMetrics) collect(ch chan<- prometheus.Metric, s *udpAnswerStats) {
	for i, l := range m.labels {
		ch <- prometheus.MustNewConstMetric(m.tracked, prometheus.CounterValue, float64(s.tracked[i]), l)
		ch <- prometheus.MustNewConstMetric(m.answered, prometheus.CounterValue, float64(s.answered[i]), l)
		ch <- prometheus.MustNewConstMetric(m.unanswered, prometheus.CounterValue, float64(s.unanswered[i]), l)
		ch <- durationHistogram(m.seconds, &s.hists[i], l)
	}
	for r, n := range s.untracked {
		ch <- prometheus.MustNewConstMetric(m.untracked, prometheus.CounterValue, float64(n), udpUntracked(r).String())
	}
}

// answerAttrs adds the UDP answer counts to a log line's attributes; with
// perMapping, each mapping's too.
func (s *udpAnswerStats) answerAttrs(attrs []any, labels []string, perMapping bool) []any {
	tracked, answered, unanswered, h := s.total()
	attrs = append(attrs, "udp_tracked", tracked, "udp_answered", answered, "udp_unanswered", unanswered, "udp_pending", s.pending)
	if h.Count() > 0 {
		attrs = append(attrs, "udp_answer_p50", h.Quantile(0.5).Round(10*time.Microsecond), "udp_answer_p99", h.Quantile(0.99).Round(10*time.Microsecond))
	}
	if s.late > 0 {
		attrs = append(attrs, "udp_answers_late", s.late)
	}
	for r, n := range s.untracked {
		if n > 0 {
			attrs = append(attrs, "udp_untracked_"+udpUntracked(r).String(), n)
		}
	}
	if perMapping && len(labels) > 1 {
		var b strings.Builder
		for i, l := range labels {
			if i > 0 {
				b.WriteByte(' ')
			}
			fmt.Fprintf(&b, "%s:answered=%d,unanswered=%d", l, s.answered[i], s.unanswered[i])
		}
		attrs = append(attrs, "udp_answers", b.String())
	}
	return attrs
}
