package tcpcopy

import (
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpcopy-go/tcpcopy/internal/version"
	"github.com/tcpcopy-go/tcpcopy/pkg/compare"
	"github.com/tcpcopy-go/tcpcopy/pkg/tcpstate"
)

// register exposes the engine's counters as Prometheus metrics (every
// metric is described in docs/metrics.md; keep the two in step).
func (e *engine) register(reg prometheus.Registerer) {
	reg.MustRegister(newCollector(e))
	if e.cfg.MySQL.On {
		reg.MustRegister(newMySQLCollector(e))
	}
}

// snapshot is everything the metrics, the stats line, the warnings and the
// summary read, taken at one moment.
type snapshot struct {
	at    time.Time
	st    tcpstate.Stats
	links LinkStats

	captured, invalid, unmatched, sampledOut, truncated, segmented uint64

	badRecord, records       uint64
	sent, sendErrors, tooBig uint64
	ringDrops, overload      uint64
	shedding                 bool
	cmp                      compareSnapshot
	udp                      *udpStats // nil without udp: mappings
}

// snapshot reads every counter. It allocates (the links' per-server
// slice): call it once per scrape or tick, never per packet.
func (e *engine) snapshot() snapshot {
	s := snapshot{
		at:         time.Now(),
		st:         e.stats(),
		links:      e.links.Stats(),
		captured:   e.captured.Load(),
		invalid:    e.invalid.Load(),
		unmatched:  e.unmatched.Load(),
		sampledOut: e.sampledOut.Load(),
		truncated:  e.truncated.Load(),
		segmented:  e.segmented.Load(),
		badRecord:  e.disp.badRecord.Load(),
		records:    e.disp.records.Load(),
		sent:       e.sc.sent.Load(),
		sendErrors: e.sc.errors.Load(),
		tooBig:     e.sc.tooBig.Load(),
		ringDrops:  e.ringDrops(),
		shedding:   e.shed.Load(),
	}
	for _, w := range e.disp.workers {
		s.overload += w.overload.Load()
	}
	s.cmp = e.compareSnapshot()
	if e.udp != nil {
		us := e.udp.stats(e.now())
		s.udp = &us
	}
	return s
}

// compareSnapshot sums the workers' comparison counts.
func (e *engine) compareSnapshot() compareSnapshot {
	cs := compareSnapshot{On: e.cmp != nil}
	if !cs.On {
		return cs
	}
	for _, w := range e.disp.workers {
		ws := w.compareSnapshot()
		cs.Stats.Add(&ws)
	}
	if e.udp != nil && e.udp.cmp != nil {
		us := e.udp.cmp.stats() // the UDP answers' verdicts (udpcompare.go)
		cs.Stats.Add(&us)
	}
	cs.Written, cs.Dropped = e.diffs.written.Load(), e.diffs.dropped.Load()
	cs.Responses = e.responses.Load()
	return cs
}

// drops lists the packet drop counters by their reason label.
func (s *snapshot) drops() []labelled {
	d := []labelled{
		{"invalid", s.invalid},
		{"ring_full", s.ringDrops},
		{"bad_record", s.badRecord},
		{"record_malformed", s.links.Skipped},
		{"send_error", s.sendErrors},
	}
	for i := range tcpstate.NumDrops {
		d = append(d, labelled{tcpstate.Drop(i).String(), s.st.Drops[i]})
	}
	return d
}

type labelled struct {
	label string
	n     uint64
}

// metric describes one metric family of the collector.
type metric struct {
	desc *prometheus.Desc
	kind prometheus.ValueType
	// value reads an unlabelled metric; nil for the labelled ones, which
	// collect emits itself.
	value func(*snapshot) float64
}

// collector reads one snapshot per scrape and emits every tcpcopy metric
// from it.
type collector struct {
	e     *engine
	plain []metric
	// The labelled families and the histograms.
	dropped, closed, retrans, linksUp, wire, build, stalls *prometheus.Desc
	uncopiedBytes, uncopiedRequests                        *prometheus.Desc
	verdicts, differences, notCompared, statusPairs        *prometheus.Desc
	target, online, ratio                                  *prometheus.Desc
	udpDropped                                             *prometheus.Desc  // nil without udp: mappings
	udpAnswers                                             *udpAnswerMetrics // nil without UDP answers
}

func newCollector(e *engine) *collector {
	c := &collector{e: e}
	counter := func(name, help string, f func(*snapshot) uint64) {
		c.plain = append(c.plain, metric{
			desc: prometheus.NewDesc("tcpcopy_"+name, help, nil, nil), kind: prometheus.CounterValue,
			value: func(s *snapshot) float64 { return float64(f(s)) },
		})
	}
	gauge := func(name, help string, f func(*snapshot) float64) {
		c.plain = append(c.plain, metric{desc: prometheus.NewDesc("tcpcopy_"+name, help, nil, nil), kind: prometheus.GaugeValue, value: f})
	}
	// Packets.
	counter("packets_captured_total", "Packets read from the capture rings.", func(s *snapshot) uint64 { return s.captured })
	counter("packets_unmatched_total", "Captured packets to no -x mapping: a -F filter wider than the mappings; offline, the other packets of the file, other protocols included.", func(s *snapshot) uint64 { return s.unmatched })
	counter("packets_sampled_out_total", "Captured packets of connections not copied (-r, -g).", func(s *snapshot) uint64 { return s.sampledOut })
	counter("packets_truncated_total", "Captured packets cut by the snap length (-S); their payload is lost.", func(s *snapshot) uint64 { return s.truncated })
	counter("segments_split_total", "Segments made by splitting GRO/LRO super-packets to the MTU (-M).", func(s *snapshot) uint64 { return s.segmented })
	counter("packets_sent_total", "Packets sent to the target.", func(s *snapshot) uint64 { return s.sent })
	counter("packets_too_big_total", "Packets the kernel refused as larger than the path MTU (EMSGSIZE); their data is split and sent again.", func(s *snapshot) uint64 { return s.tooBig })
	counter("segments_resent_split_total", "Segments sent again, split to the path MTU, after the kernel refused a packet as too big (EMSGSIZE).", func(s *snapshot) uint64 { return s.st.Resent })
	counter("segments_fitted_total", "Captured segments split when sent, being longer than the target's MSS or the MTU allow with the headers tcpcopy builds (clients without TCP timestamps, jumbo frames).", func(s *snapshot) uint64 { return s.st.Splits })
	counter("mtu_blackholes_total", "Times a session's segment size was lowered after the same data timed out again and again (a path MTU black hole).", func(s *snapshot) uint64 { return s.st.Blackholes })
	counter("records_received_total", "Response records received from intercept.", func(s *snapshot) uint64 { return s.records })
	counter("online_response_packets_total", "Packets of the online server's answers captured for the response comparison: TCP segments, and UDP datagrams of the udp: mappings.", func(s *snapshot) uint64 { return s.cmp.Responses })
	counter("diff_log_written_total", "Responses that differ or are missing written to the diff log (--diff-log).", func(s *snapshot) uint64 { return s.cmp.Written })
	counter("diff_log_dropped_total", "Responses that differ or are missing not written to the diff log because it fell behind.", func(s *snapshot) uint64 { return s.cmp.Dropped })
	counter("responses_total", "Response records the session engine handled.", func(s *snapshot) uint64 { return s.st.Responses })
	// Sessions.
	counter("sessions_opened_total", "Sessions opened.", func(s *snapshot) uint64 { return s.st.Opened })
	counter("sessions_opened_without_syn_total", "Sessions opened from data whose SYN was not captured.", func(s *snapshot) uint64 { return s.st.OpenedNoSYN })
	counter("sessions_overload_total", "New sessions refused because the capture had fallen behind by half its ring (counted in sessions_closed_total as failed/overload).", func(s *snapshot) uint64 { return s.overload })
	counter("syns_sent_total", "Handshakes started with the target (SYNs sent, retransmissions excluded).", func(s *snapshot) uint64 { return s.st.SYNs })
	counter("synacks_received_total", "SYN-ACKs received from the target through intercept: connections established.", func(s *snapshot) uint64 { return s.st.SYNAcks })
	counter("requests_total", "Requests sent to the target.", func(s *snapshot) uint64 { return s.st.Requests })
	counter("segments_sent_total", "Data segments sent to the target, retransmissions excluded.", func(s *snapshot) uint64 { return s.st.SegmentsSent })
	counter("reconnects_total", "New handshakes after the target closed a connection with requests pending.", func(s *snapshot) uint64 { return s.st.Reconnects })
	counter("requests_unanswered_total", "Requests the target acknowledged and closed the connection without answering: sent again on the new connection.", func(s *snapshot) uint64 { return s.st.Unanswered })
	counter("port_reuses_total", "Client SYNs that replaced a live session on the same address and port.", func(s *snapshot) uint64 { return s.st.PortReuse })
	counter("port_reuse_waits_total", "Port reuses whose new connection waited for the live session's copy to be delivered.", func(s *snapshot) uint64 { return s.st.PortReuseWaits })
	counter("captured_bytes_total", "Client request payload bytes captured and queued for the target.", func(s *snapshot) uint64 { return s.st.CapturedBytes })
	counter("acked_bytes_total", "Captured request bytes the target acknowledged.", func(s *snapshot) uint64 { return s.st.AckedBytes })
	counter("response_bytes_total", "Payload bytes the target sent (seen through intercept).", func(s *snapshot) uint64 { return s.st.ResponseBytes })
	gauge("sessions_active", "Sessions open now.", func(s *snapshot) float64 { return float64(s.st.Active) })
	gauge("segments_queued", "Captured segments buffered now, waiting to be sent or acknowledged.", func(s *snapshot) float64 { return float64(s.st.QueuedSegments) })
	gauge("fidelity_ratio", "Share of the captured request bytes of copied connections the target acknowledged, uncopied bytes included, 0..1 (1 before any capture).", func(s *snapshot) float64 { return s.st.Fidelity() })
	gauge("shedding", "1 while the memory budget (-m) is exceeded and new sessions are not copied.", func(s *snapshot) float64 {
		if s.shedding {
			return 1
		}
		return 0
	})
	// Intercept links.
	counter("intercept_connects_total", "Connections to intercept that completed the handshake.", func(s *snapshot) uint64 { return s.links.Connects })
	counter("intercept_disconnects_total", "Connections to intercept lost after the handshake.", func(s *snapshot) uint64 { return s.links.Disconnects })
	counter("intercept_connect_failures_total", "Connects or handshakes to intercept that failed.", func(s *snapshot) uint64 { return s.links.Failures })
	counter("intercept_received_bytes_total", "Bytes read from intercept.", func(s *snapshot) uint64 { return s.links.BytesIn })
	counter("intercept_sent_bytes_total", "Bytes written to intercept.", func(s *snapshot) uint64 { return s.links.BytesOut })
	counter("routes_sent_total", "Route messages queued for intercept.", func(s *snapshot) uint64 { return s.links.RoutesSent })
	counter("routes_reannounced_total", "Route messages queued again after a link came up or went down.", func(s *snapshot) uint64 { return s.links.Reannounced })
	counter("routes_dropped_total", "Route adds an intercept did not get: no link up, or write buffers full.", func(s *snapshot) uint64 { return s.links.RoutesDropped })
	counter("routes_unfit_total", "IPv6 route adds not sent to an intercept speaking protocol version 6, and UDP route adds not sent to an intercept that does not route UDP.", func(s *snapshot) uint64 { return s.links.RoutesUnfit })

	c.dropped = prometheus.NewDesc("tcpcopy_packets_dropped_total",
		"Packets and response records not used, by reason.", []string{"reason"}, nil)
	c.closed = prometheus.NewDesc("tcpcopy_sessions_closed_total",
		"Sessions closed, by outcome (reproduced, partial, failed) and reason.", []string{"outcome", "reason"}, nil)
	c.retrans = prometheus.NewDesc("tcpcopy_retransmits_total",
		"Packets retransmitted to the target, by kind: timeout, fast (duplicate ACKs), syn.", []string{"kind"}, nil)
	c.linksUp = prometheus.NewDesc("tcpcopy_intercept_links_up",
		"Connections to each intercept up now.", []string{"intercept"}, nil)
	c.wire = prometheus.NewDesc("tcpcopy_intercept_wire_version",
		"Protocol version negotiated with each intercept on its latest connection (0: never connected).", []string{"intercept"}, nil)
	c.build = prometheus.NewDesc("tcpcopy_build_info", "Always 1; the version is a label.", []string{"version"}, nil)
	c.uncopiedBytes = prometheus.NewDesc("tcpcopy_uncopied_bytes_total",
		"Captured request bytes of copied connections that no session carried (their session had ended or was refused), by reason; in the denominator of fidelity.", []string{"reason"}, nil)
	c.uncopiedRequests = prometheus.NewDesc("tcpcopy_uncopied_requests_total",
		"Requests among the uncopied bytes, by reason.", []string{"reason"}, nil)
	c.verdicts = prometheus.NewDesc("tcpcopy_responses_compared_total",
		"Target responses compared with the online server's, by verdict: same, differs, missing (the target did not answer), not_compared.", []string{"verdict"}, nil)
	c.differences = prometheus.NewDesc("tcpcopy_response_differences_total",
		"Responses that differ, by what differs first: status, header, length, body.", []string{"kind"}, nil)
	c.notCompared = prometheus.NewDesc("tcpcopy_responses_not_compared_total",
		"Responses not compared, by reason.", []string{"reason"}, nil)
	c.statusPairs = prometheus.NewDesc("tcpcopy_response_status_pairs_total",
		"Compared HTTP responses by the online server's status and the target's.", []string{"online", "target"}, nil)
	c.stalls = prometheus.NewDesc("tcpcopy_stalls_total",
		"Sessions ended as stalled (no progress while the target kept answering), by what they waited for: unacknowledged data, or a zero window.", []string{"cause"}, nil)
	c.target = prometheus.NewDesc("tcpcopy_target_response_seconds",
		"Per request, from sending its first segment to the target to the first byte of the target's answer (through intercept).", nil, nil)
	c.online = prometheus.NewDesc("tcpcopy_online_response_seconds",
		"Per request, from capturing its first segment to capturing the client's first ACK of the online server's answer.", nil, nil)
	c.ratio = prometheus.NewDesc("tcpcopy_response_time_ratio",
		"Per request measured on both sides, target response time divided by online response time.", nil, nil)
	if e.udp != nil {
		c.udpDropped = udpMetrics(counter, gauge)
	}
	if e.udp != nil && e.udp.answers != nil {
		c.udpAnswers = newUDPAnswerMetrics(e.udp.rw.mappings)
		counter("udp_answers_late_total", "UDP answers of the target that no copy waited for: later than 5 s, or more answers than copies in their flow.", func(s *snapshot) uint64 { return s.udp.answers.late })
		gauge("udp_flows", "UDP flows whose answers are followed now.", func(s *snapshot) float64 { return float64(s.udp.answers.flows) })
		gauge("udp_queries_pending", "UDP copies waiting for their answer now.", func(s *snapshot) float64 { return float64(s.udp.answers.pending) })
	}
	return c
}

// Describe implements prometheus.Collector.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, m := range c.plain {
		ch <- m.desc
	}
	for _, d := range []*prometheus.Desc{c.dropped, c.closed, c.retrans, c.linksUp, c.wire, c.build, c.stalls, c.uncopiedBytes, c.uncopiedRequests, c.verdicts, c.differences, c.notCompared, c.statusPairs, c.target, c.online, c.ratio} {
		ch <- d
	}
	if c.udpDropped != nil {
		ch <- c.udpDropped
	}
	if c.udpAnswers != nil {
		c.udpAnswers.describe(ch)
	}
}

// Collect implements prometheus.Collector.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.e.snapshot()
	for _, m := range c.plain {
		ch <- prometheus.MustNewConstMetric(m.desc, m.kind, m.value(&s))
	}
	for _, d := range s.drops() {
		ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(d.n), d.label)
	}
	// Every outcome/reason pair that occurred; a series appears with its
	// first session.
	for o := range tcpstate.NumOutcomes {
		for r := range tcpstate.NumReasons {
			if n := s.st.Closed[o][r]; n > 0 {
				ch <- prometheus.MustNewConstMetric(c.closed, prometheus.CounterValue, float64(n),
					tcpstate.Outcome(o).String(), tcpstate.Reason(r).String())
			}
		}
	}
	for _, r := range []labelled{{"timeout", s.st.Retransmits}, {"fast", s.st.FastRetransmits}, {"syn", s.st.SYNRetransmits}} {
		ch <- prometheus.MustNewConstMetric(c.retrans, prometheus.CounterValue, float64(r.n), r.label)
	}
	for _, srv := range s.links.Servers {
		ch <- prometheus.MustNewConstMetric(c.linksUp, prometheus.GaugeValue, float64(srv.Up), srv.Addr.String())
		ch <- prometheus.MustNewConstMetric(c.wire, prometheus.GaugeValue, float64(srv.Format.Version), srv.Addr.String())
	}
	ch <- prometheus.MustNewConstMetric(c.build, prometheus.GaugeValue, 1, version.String())
	for r := range tcpstate.NumReasons {
		if n := s.st.UncopiedBytes[r]; n > 0 {
			ch <- prometheus.MustNewConstMetric(c.uncopiedBytes, prometheus.CounterValue, float64(n), tcpstate.Reason(r).String())
			ch <- prometheus.MustNewConstMetric(c.uncopiedRequests, prometheus.CounterValue, float64(s.st.UncopiedRequests[r]), tcpstate.Reason(r).String())
		}
	}
	if s.cmp.On {
		cs := &s.cmp.Stats
		for v := range compare.NumVerdicts {
			ch <- prometheus.MustNewConstMetric(c.verdicts, prometheus.CounterValue, float64(cs.Verdicts[v]), compare.Verdict(v).String())
		}
		for k := 1; k < compare.NumKinds; k++ {
			ch <- prometheus.MustNewConstMetric(c.differences, prometheus.CounterValue, float64(cs.Kinds[k]), compare.Kind(k).String())
		}
		for r := 1; r < compare.NumReasons; r++ {
			ch <- prometheus.MustNewConstMetric(c.notCompared, prometheus.CounterValue, float64(cs.NotCompared[r]), compare.Reason(r).String())
		}
		for k, n := range cs.Statuses {
			ch <- prometheus.MustNewConstMetric(c.statusPairs, prometheus.CounterValue, float64(n), strconv.Itoa(k/1000), strconv.Itoa(k%1000))
		}
	}
	for i, n := range s.st.Stalls {
		ch <- prometheus.MustNewConstMetric(c.stalls, prometheus.CounterValue, float64(n), tcpstate.StallCause(i).String())
	}
	if s.udp != nil {
		for _, d := range s.udp.drops() {
			ch <- prometheus.MustNewConstMetric(c.udpDropped, prometheus.CounterValue, float64(d.n), d.label)
		}
		if c.udpAnswers != nil && s.udp.answers != nil {
			c.udpAnswers.collect(ch, s.udp.answers)
		}
	}
	ch <- durationHistogram(c.target, &s.st.Latency.Target)
	ch <- durationHistogram(c.online, &s.st.Latency.Online)
	ch <- ratioHistogram(c.ratio, &s.st.Latency.Ratio)
}

// durationHistogram converts h to a Prometheus histogram in seconds.
func durationHistogram(d *prometheus.Desc, h *tcpstate.DurationHistogram, labels ...string) prometheus.Metric {
	bounds := tcpstate.LatencyBounds()
	buckets := make(map[float64]uint64, len(bounds))
	var cum uint64
	for i, b := range bounds {
		cum += h.Counts[i]
		buckets[b.Seconds()] = cum
	}
	return prometheus.MustNewConstHistogram(d, cum+h.Counts[len(bounds)], h.Sum.Seconds(), buckets, labels...)
}

// ratioHistogram converts h to a Prometheus histogram.
func ratioHistogram(d *prometheus.Desc, h *tcpstate.RatioHistogram) prometheus.Metric {
	bounds := tcpstate.RatioBounds()
	buckets := make(map[float64]uint64, len(bounds))
	var cum uint64
	for i, b := range bounds {
		cum += h.Counts[i]
		buckets[b] = cum
	}
	return prometheus.MustNewConstHistogram(d, cum+h.Counts[len(bounds)], h.Sum, buckets)
}
