package tcpcopy

import (
	"github.com/prometheus/client_golang/prometheus"

	imetrics "github.com/tcpcopy-go/tcpcopy/internal/metrics"
	"github.com/tcpcopy-go/tcpcopy/pkg/tcpstate"
)

// register exposes the engine's counters as Prometheus metrics.
func (e *engine) register(reg prometheus.Registerer) {
	c := func(name, help string, f func() uint64) {
		imetrics.Counter(reg, "tcpcopy_"+name, help, func() float64 { return float64(f()) })
	}
	st := func(f func(*tcpstate.Stats) uint64) func() uint64 {
		return func() uint64 { s := e.stats(); return f(&s) }
	}
	c("packets_captured_total", "Packets read from the capture rings.", e.captured.Load)
	c("packets_invalid_total", "Captured packets that are not well-formed IPv4/IPv6 TCP.", e.invalid.Load)
	c("packets_sampled_out_total", "Captured packets of connections not copied (-r, -g).", e.sampledOut.Load)
	c("packets_truncated_total", "Captured packets cut by the snap length.", e.truncated.Load)
	c("segments_split_total", "Segments made by splitting GRO super-packets.", e.segmented.Load)
	c("dispatch_dropped_total", "Packets dropped because a worker's queue was full.", e.disp.busy.Load)
	c("records_total", "Response records received from intercept.", e.disp.records.Load)
	c("packets_sent_total", "Packets sent to the target.", e.sc.sent.Load)
	c("send_errors_total", "Packets the raw socket refused.", e.sc.errors.Load)
	c("ring_drops_total", "Packets the kernel dropped because a capture ring was full.", e.ringDrops)
	c("sessions_opened_total", "Sessions opened.", st(func(s *tcpstate.Stats) uint64 { return s.Opened }))
	c("requests_total", "Requests sent to the target.", st(func(s *tcpstate.Stats) uint64 { return s.Requests }))
	c("retransmits_total", "Segments retransmitted.", st(func(s *tcpstate.Stats) uint64 { return s.Retransmits + s.FastRetransmits }))
	c("captured_bytes_total", "Client payload bytes captured.", st(func(s *tcpstate.Stats) uint64 { return s.CapturedBytes }))
	c("acked_bytes_total", "Captured client payload bytes the target acknowledged.", st(func(s *tcpstate.Stats) uint64 { return s.AckedBytes }))
	imetrics.Gauge(reg, "tcpcopy_sessions_active", "Sessions open now.", func() float64 { s := e.stats(); return float64(s.Active) })
	imetrics.Gauge(reg, "tcpcopy_intercept_links_up", "Intercept connections up now.", func() float64 { return float64(e.links.Up()) })
	reg.MustRegister(&outcomeCollector{e: e, desc: prometheus.NewDesc("tcpcopy_sessions_closed_total",
		"Sessions closed, by outcome and reason.", []string{"outcome", "reason"}, nil)})
}

// outcomeCollector exports the closed-session matrix with labels.
type outcomeCollector struct {
	e    *engine
	desc *prometheus.Desc
}

func (c *outcomeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *outcomeCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.e.stats()
	for o := range tcpstate.NumOutcomes {
		for r := range tcpstate.NumReasons {
			if n := st.Closed[o][r]; n > 0 {
				ch <- prometheus.MustNewConstMetric(c.desc, prometheus.CounterValue, float64(n),
					tcpstate.Outcome(o).String(), tcpstate.Reason(r).String())
			}
		}
	}
}
