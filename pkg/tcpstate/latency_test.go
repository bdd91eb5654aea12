package tcpstate

import (
	"testing"
	"time"
)

// bucketOf returns the index of the only non-empty bucket of h, or -1.
func bucketOf(t *testing.T, h *DurationHistogram) int {
	t.Helper()
	idx := -1
	for i, c := range h.Counts {
		if c != 0 {
			if idx >= 0 || c != 1 {
				t.Fatalf("counts = %v, want one observation", h.Counts)
			}
			idx = i
		}
	}
	return idx
}

// latencyBucket is the bucket LatencyBounds puts d in.
func latencyBucket(d time.Duration) int {
	for i, b := range LatencyBounds() {
		if d <= b {
			return i
		}
	}
	return NumLatencyBuckets
}

func ratioBucket(r float64) int {
	for i, b := range RatioBounds() {
		if r <= b {
			return i
		}
	}
	return NumRatioBuckets
}

func TestResponseTimes(t *testing.T) {
	tests := []struct {
		name string
		// run plays one request after the handshake; its target and online
		// times are wantTarget and wantOnline.
		run                    func(h *harness)
		wantTarget, wantOnline time.Duration
	}{
		{
			name: "target answers first, client ACK later",
			run: func(h *harness) {
				h.client(PA, 1001, 9001, "GET /1")
				h.advance(2 * time.Millisecond)
				h.target(PA, 5001, 1007, 65535, 100)
				h.advance(3 * time.Millisecond)
				h.client(A, 1007, 9101, "") // the client acknowledges the online answer
			},
			wantTarget: 2 * time.Millisecond, wantOnline: 5 * time.Millisecond,
		},
		{
			name: "online answers first",
			run: func(h *harness) {
				h.client(PA, 1001, 9001, "GET /1")
				h.advance(time.Millisecond)
				h.client(A, 1007, 9050, "") // part of the answer is enough
				h.advance(3 * time.Millisecond)
				h.target(A, 5001, 1007, 65535, 0) // a bare ACK is no answer
				h.advance(300 * time.Millisecond)
				h.target(PA, 5001, 1007, 65535, 100)
			},
			wantTarget: 304 * time.Millisecond, wantOnline: time.Millisecond,
		},
		{
			name: "the next request carries the ACK",
			run: func(h *harness) {
				h.client(PA, 1001, 9001, "GET /1")
				h.advance(20 * time.Millisecond)
				h.client(PA, 1007, 9101, "GET /2") // held: the target has not answered
				h.advance(10 * time.Millisecond)
				h.target(PA, 5001, 1007, 65535, 100) // releases GET /2
			},
			wantTarget: 30 * time.Millisecond, wantOnline: 20 * time.Millisecond,
		},
		{
			name: "retransmissions and repeated ACKs change nothing",
			run: func(h *harness) {
				h.client(PA, 1001, 9001, "GET /1")
				h.advance(time.Millisecond)
				h.client(PA, 1001, 9001, "GET /1") // client retransmission
				h.advance(time.Millisecond)
				h.target(PA, 5001, 1007, 65535, 50)
				h.advance(time.Millisecond)
				h.target(PA, 5051, 1007, 65535, 50) // more of the same answer
				h.target(PA, 5001, 1007, 65535, 50) // a retransmission
				h.advance(7 * time.Millisecond)
				h.client(A, 1007, 9101, "")
				h.advance(time.Millisecond)
				h.client(A, 1007, 9101, "")
				h.client(A, 1007, 9201, "")
			},
			wantTarget: 2 * time.Millisecond, wantOnline: 10 * time.Millisecond,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			h.handshake()
			tt.run(h)
			lat := h.tab.Stats().Latency
			if got, want := bucketOf(t, &lat.Target), latencyBucket(tt.wantTarget); got != want {
				t.Errorf("target bucket %d, want %d (%v)", got, want, tt.wantTarget)
			}
			if got, want := bucketOf(t, &lat.Online), latencyBucket(tt.wantOnline); got != want {
				t.Errorf("online bucket %d, want %d (%v)", got, want, tt.wantOnline)
			}
			if lat.Target.Sum != tt.wantTarget || lat.Online.Sum != tt.wantOnline {
				t.Errorf("sums target %v online %v, want %v %v", lat.Target.Sum, lat.Online.Sum, tt.wantTarget, tt.wantOnline)
			}
			ratio := float64(tt.wantTarget) / float64(tt.wantOnline)
			if got, want := lat.Ratio.Count(), uint64(1); got != want {
				t.Fatalf("ratio count %d, want %d", got, want)
			}
			if lat.Ratio.Counts[ratioBucket(ratio)] != 1 || lat.Ratio.Sum != ratio {
				t.Errorf("ratio counts %v sum %v, want one %v", lat.Ratio.Counts, lat.Ratio.Sum, ratio)
			}
		})
	}
}

func TestResponseTimesKeepAlive(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	// Three requests, the online server answering each in 10 ms (as the
	// client's next request shows) and the target in 1 ms.
	seq, oack := uint32(1001), uint32(9001)
	for range 3 {
		h.client(PA, seq, oack, "GET /x")
		seq += 6
		h.advance(time.Millisecond)
		h.target(PA, 5001+(oack-9001), seq, 65535, 100)
		oack += 100
		h.advance(9 * time.Millisecond)
	}
	h.client(FA, seq, oack, "")
	lat := h.tab.Stats().Latency
	if lat.Target.Count() != 3 || lat.Online.Count() != 3 || lat.Ratio.Count() != 3 {
		t.Fatalf("counts target %d online %d ratio %d, want 3 each", lat.Target.Count(), lat.Online.Count(), lat.Ratio.Count())
	}
	if lat.Ratio.Counts[ratioBucket(0.1)] != 3 {
		t.Errorf("ratio counts %v, want 3 at 0.1", lat.Ratio.Counts)
	}
}

func TestResponseTimeNotAcrossReconnect(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	h.client(PA, 1001, 9001, "GET /1")
	h.target(RA, 5001, 1001, 0, 0) // reset before answering: reconnect
	h.advance(time.Millisecond)
	h.target(SA, 6000, 1001, 65535, 0)
	h.advance(time.Millisecond)
	h.target(PA, 6001, 1007, 65535, 100)
	lat := h.tab.Stats().Latency
	if n := lat.Target.Count(); n != 0 {
		t.Errorf("target count %d, want 0: the request was sent twice", n)
	}
}

func TestNoResponseTimeWithoutRequest(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	// A greeting from the target, and a client that only acknowledges it.
	h.target(PA, 5001, 1001, 65535, 20)
	h.client(A, 1001, 9021, "")
	lat := h.tab.Stats().Latency
	if lat.Target.Count()+lat.Online.Count()+lat.Ratio.Count() != 0 {
		t.Errorf("latency = %+v, want nothing counted", lat)
	}
}

func TestHandshakeCounters(t *testing.T) {
	h := newHarness(t, Config{})
	h.client(S, 1000, 0, "")
	h.advance(600 * time.Millisecond) // SYN retransmitted after firstSYNRTO
	h.advance(600 * time.Millisecond) // the next after twice that
	h.target(SA, 5000, 1001, 65535, 0)
	st := h.tab.Stats()
	if st.SYNs != 1 || st.SYNRetransmits != 1 || st.SYNAcks != 1 {
		t.Errorf("syns %d, retransmitted %d, syn-acks %d; want 1, 1, 1", st.SYNs, st.SYNRetransmits, st.SYNAcks)
	}
}

func TestDurationHistogramQuantile(t *testing.T) {
	var h DurationHistogram
	if got := h.Quantile(0.5); got != 0 {
		t.Errorf("empty: %v", got)
	}
	// 10 observations in (1 ms, 2.5 ms], 10 in (5 ms, 10 ms].
	for range 10 {
		h.observe(2 * time.Millisecond)
		h.observe(8 * time.Millisecond)
	}
	tests := []struct {
		q    float64
		want time.Duration
	}{
		{0.25, 1750 * time.Microsecond}, // half way through (1 ms, 2.5 ms]
		{0.5, 2500 * time.Microsecond},
		{0.75, 7500 * time.Microsecond},
		{1, 10 * time.Millisecond},
	}
	for _, tt := range tests {
		if got := h.Quantile(tt.q); got != tt.want {
			t.Errorf("Quantile(%v) = %v, want %v", tt.q, got, tt.want)
		}
	}
	h.observe(time.Minute)
	if got := h.Quantile(0.999); got != 10*time.Second {
		t.Errorf("above the last bound: %v, want 10s", got)
	}
	if h.Count() != 21 || h.Sum != 10*time.Millisecond+80*time.Millisecond+time.Minute+10*time.Millisecond {
		t.Errorf("count %d sum %v", h.Count(), h.Sum)
	}
}

func TestStatsAddLatency(t *testing.T) {
	var a, b Stats
	a.Latency.Target.observe(time.Millisecond)
	b.Latency.Target.observe(time.Second)
	b.Latency.Online.observe(time.Second)
	b.Latency.Ratio.observe(1)
	b.SYNs, b.SYNAcks, b.SYNRetransmits = 3, 2, 1
	a.Add(&b)
	if a.Latency.Target.Count() != 2 || a.Latency.Online.Count() != 1 || a.Latency.Ratio.Count() != 1 ||
		a.Latency.Target.Sum != time.Second+time.Millisecond || a.SYNs != 3 || a.SYNAcks != 2 || a.SYNRetransmits != 1 {
		t.Errorf("sum = %+v", a)
	}
}

func TestLatencyBoundsSorted(t *testing.T) {
	lb, rb := LatencyBounds(), RatioBounds()
	for i := 1; i < len(lb); i++ {
		if lb[i] <= lb[i-1] {
			t.Errorf("latency bounds not increasing at %d", i)
		}
	}
	for i := 1; i < len(rb); i++ {
		if rb[i] <= rb[i-1] {
			t.Errorf("ratio bounds not increasing at %d", i)
		}
	}
	if lb[0] != 100*time.Microsecond || lb[len(lb)-1] != 10*time.Second {
		t.Errorf("latency bounds span %v..%v, want 100µs..10s", lb[0], lb[len(lb)-1])
	}
}
