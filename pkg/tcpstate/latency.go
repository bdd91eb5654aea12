package tcpstate

// latency.go measures, for every copied request, how long the target took
// to answer it and how long the online server took, as far as tcpcopy can
// see either, and counts both in fixed-bucket histograms kept in Stats.
//
// Both are times to the first response byte, measured with the clock the
// caller passes in (tcpcopy: the worker's clock when it handles a packet):
//
//   - Target response time: from sending the first data segment of a
//     request to the target, to handling the first response record that
//     carries new payload bytes of the target's answer. It includes the
//     target's processing and the path tcpcopy → target → assistant →
//     intercept → tcpcopy.
//   - Online response time: from capturing the first segment of a request,
//     to capturing the first client packet whose acknowledgement number
//     moved past the one the request carried, that is the client
//     acknowledging the first bytes of the online server's answer. tcpcopy
//     captures only what the clients send, so this is the closest it gets:
//     it includes the online server's processing, the client's round trip
//     and any delayed ACK of the client (up to 40 ms on Linux, 200 ms
//     elsewhere), unless the client's next request carried the ACK.
//
// A request is what the pacing calls one (doc.go): a run of client
// segments carrying the same acknowledgement number. The two times of one
// request are matched by that number, and their ratio (target / online)
// is counted too, so that "the target answers twice as slowly" shows
// without comparing two distributions by eye.
//
// Cost: a few integer operations per request, nothing per packet beyond
// two comparisons, no allocation; 96 bytes per session. C TCPCopy measures
// nothing of the kind.

import (
	"time"

	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/seqnum"
)

// NumLatencyBuckets is the number of finite buckets of a
// DurationHistogram, NumRatioBuckets of a RatioHistogram.
const (
	NumLatencyBuckets = 16
	NumRatioBuckets   = 10
)

// latencyBounds are the upper bounds of the response time buckets: 100 µs
// to 10 s in 1-2.5-5 steps.
var latencyBounds = [NumLatencyBuckets]time.Duration{
	100 * time.Microsecond, 250 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2500 * time.Microsecond, 5 * time.Millisecond,
	10 * time.Millisecond, 25 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond,
	time.Second, 2500 * time.Millisecond, 5 * time.Second, 10 * time.Second,
}

// ratioBounds are the upper bounds of the target/online ratio buckets;
// (0.9, 1.1] is "as fast as online".
var ratioBounds = [NumRatioBuckets]float64{0.1, 0.25, 0.5, 0.8, 0.9, 1.1, 1.25, 2, 4, 10}

// LatencyBounds returns the upper bounds of the DurationHistogram buckets.
func LatencyBounds() [NumLatencyBuckets]time.Duration { return latencyBounds }

// RatioBounds returns the upper bounds of the RatioHistogram buckets.
func RatioBounds() [NumRatioBuckets]float64 { return ratioBounds }

// DurationHistogram counts durations by LatencyBounds.
type DurationHistogram struct {
	// Counts[i] counts observations in (LatencyBounds()[i-1],
	// LatencyBounds()[i]]; Counts[NumLatencyBuckets] those above the last
	// bound. Not cumulative.
	Counts [NumLatencyBuckets + 1]uint64
	Sum    time.Duration
}

func (h *DurationHistogram) observe(d time.Duration) {
	i := 0
	for i < NumLatencyBuckets && d > latencyBounds[i] {
		i++
	}
	h.Counts[i]++
	h.Sum += d
}

// Observe adds one observation d. It is not safe for concurrent use.
func (h *DurationHistogram) Observe(d time.Duration) { h.observe(d) }

// Add adds o's observations to h.
func (h *DurationHistogram) Add(o *DurationHistogram) { h.add(o) }

// Count returns the number of observations.
func (h *DurationHistogram) Count() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

// Quantile estimates the q-quantile (0 < q < 1) by linear interpolation
// inside its bucket, as Prometheus's histogram_quantile does; 0 without
// observations. Above the last bound it returns the last bound.
func (h *DurationHistogram) Quantile(q float64) time.Duration {
	n := h.Count()
	if n == 0 {
		return 0
	}
	rank := q * float64(n)
	var cum float64
	for i, c := range h.Counts {
		if c == 0 || cum+float64(c) < rank {
			cum += float64(c)
			continue
		}
		if i == NumLatencyBuckets {
			break
		}
		lo := time.Duration(0)
		if i > 0 {
			lo = latencyBounds[i-1]
		}
		return lo + time.Duration((rank-cum)/float64(c)*float64(latencyBounds[i]-lo))
	}
	return latencyBounds[NumLatencyBuckets-1]
}

func (h *DurationHistogram) add(o *DurationHistogram) {
	for i := range h.Counts {
		h.Counts[i] += o.Counts[i]
	}
	h.Sum += o.Sum
}

// RatioHistogram counts ratios by RatioBounds.
type RatioHistogram struct {
	// Counts is laid out as DurationHistogram.Counts.
	Counts [NumRatioBuckets + 1]uint64
	Sum    float64
}

func (h *RatioHistogram) observe(r float64) {
	i := 0
	for i < NumRatioBuckets && r > ratioBounds[i] {
		i++
	}
	h.Counts[i]++
	h.Sum += r
}

// Count returns the number of observations.
func (h *RatioHistogram) Count() uint64 {
	var n uint64
	for _, c := range h.Counts {
		n += c
	}
	return n
}

func (h *RatioHistogram) add(o *RatioHistogram) {
	for i := range h.Counts {
		h.Counts[i] += o.Counts[i]
	}
	h.Sum += o.Sum
}

// Latency holds the response time histograms of Stats.
type Latency struct {
	Target DurationHistogram // target response time per request
	Online DurationHistogram // online response time per request
	// Ratio counts target / online for the requests measured on both
	// sides (and whose online time was not zero).
	Ratio RatioHistogram
}

func (l *Latency) add(o *Latency) {
	l.Target.add(&o.Target)
	l.Online.add(&o.Online)
	l.Ratio.add(&o.Ratio)
}

// halfPairs is how many requests of one session may wait for their other
// side's time. With pacing the target is at most a request behind; without
// (-W) older requests lose their ratio, not their times.
const halfPairs = 4

// reqTiming is a session's measurement state.
type reqTiming struct {
	onAt  int64        // capture time of the latest captured request; 0 once answered
	tgAt  int64        // when the request last sent to the target went out; 0 once answered
	onAck seqnum.Value // the client ack the latest captured request carried
	tgAck seqnum.Value // the client ack of the request last sent to the target
	onSet bool         // a request was captured
	next  uint8        // next slot of half to overwrite
	half  [halfPairs]halfPair
}

// halfPair is one side's time of a request waiting for the other side's.
type halfPair struct {
	ack    seqnum.Value
	used   bool
	target bool
	d      int64
}

// clientTiming takes the online side's times from captured client packet
// p: the first packet whose ack moved past the waiting request's ends it,
// a packet with payload and a new ack starts the next one.
func (t *Table) clientTiming(s *session, now int64, p *ipmangle.Parsed) {
	if p.Flags&ipmangle.ACK == 0 {
		return
	}
	lt := &s.lat
	ack := seqnum.Value(p.Ack)
	if lt.onAt != 0 && lt.onAck.LessThan(ack) {
		t.observeLatency(s, false, lt.onAck, now-lt.onAt)
		lt.onAt = 0
	}
	if p.PayloadLen > 0 && (!lt.onSet || lt.onAck.LessThan(ack)) {
		lt.onAck, lt.onAt, lt.onSet = ack, now, true
	}
}

// requestSent notes that the first data segment of the request carrying
// client ack ack went to the target.
func (s *session) requestSent(now int64, ack seqnum.Value) {
	s.lat.tgAck, s.lat.tgAt = ack, now
}

// targetAnswered notes new response payload from the target: it ends the
// target side of the request waiting for it.
func (t *Table) targetAnswered(s *session, now int64) {
	if s.lat.tgAt != 0 {
		t.observeLatency(s, true, s.lat.tgAck, now-s.lat.tgAt)
		s.lat.tgAt = 0
	}
}

// observeLatency counts one side's time d of the request marked by ack and
// pairs it with the other side's, if that came first.
func (t *Table) observeLatency(s *session, target bool, ack seqnum.Value, d int64) {
	d = max(d, 0)
	lat := &t.stats.Latency
	if target {
		lat.Target.observe(time.Duration(d))
	} else {
		lat.Online.observe(time.Duration(d))
	}
	for i := range s.lat.half {
		h := &s.lat.half[i]
		if !h.used || h.ack != ack || h.target == target {
			continue
		}
		tg, on := d, h.d
		if !target {
			tg, on = h.d, d
		}
		if on > 0 {
			lat.Ratio.observe(float64(tg) / float64(on))
		}
		h.used = false
		return
	}
	h := &s.lat.half[s.lat.next%halfPairs]
	s.lat.next++
	*h = halfPair{ack: ack, used: true, target: target, d: d}
}
