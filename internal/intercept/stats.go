package intercept

import (
	"context"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpcopy-go/tcpcopy/internal/metrics"
)

// Stats is a snapshot of the server's counters.
type Stats struct {
	Captured, Invalid, Routed, Unrouted, Held, Dropped uint64
	LinksTotal, Refused, LinkErrors, RouteMsgs         uint64
	Links, Routes, HeldNow                             int
	RingDrops                                          uint64
}

// Stats returns the current counters.
func (s *Server) Stats() Stats {
	rs := s.routes.Stats()
	return Stats{
		Captured:   s.c.captured.Load(),
		Invalid:    s.c.invalid.Load(),
		Routed:     s.c.routed.Load(),
		Unrouted:   s.c.unrouted.Load(),
		Held:       s.c.held.Load(),
		Dropped:    s.c.dropped.Load(),
		LinksTotal: s.c.linksTotal.Load(),
		Refused:    s.c.refused.Load(),
		LinkErrors: s.c.linkErrors.Load(),
		RouteMsgs:  s.c.routeMsgs.Load(),
		Links:      len(*s.links.Load()),
		Routes:     rs.Routes,
		HeldNow:    rs.Held,
		RingDrops:  s.ringDrops(),
	}
}

// statsLoop logs a stats line every interval until ctx ends.
func (s *Server) statsLoop(ctx context.Context, every time.Duration) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			st := s.Stats()
			s.log.Info("stats",
				"captured", st.Captured, "sent", st.Routed, "unrouted", st.Unrouted,
				"held", st.Held, "dropped", st.Dropped, "invalid", st.Invalid,
				"ring_drops", st.RingDrops, "links", st.Links, "routes", st.Routes)
		}
	}
}

// register exposes the counters as Prometheus metrics.
func (s *Server) register(reg prometheus.Registerer) {
	c := func(name, help string, f func() uint64) {
		metrics.Counter(reg, "intercept_"+name, help, func() float64 { return float64(f()) })
	}
	g := func(name, help string, f func() int) {
		metrics.Gauge(reg, "intercept_"+name, help, func() float64 { return float64(f()) })
	}
	c("packets_captured_total", "Packets read from the capture rings.", s.c.captured.Load)
	c("packets_invalid_total", "Captured packets that are not well-formed IPv4/IPv6 TCP.", s.c.invalid.Load)
	c("records_sent_total", "Response records queued for a tcpcopy link.", s.c.routed.Load)
	c("responses_unrouted_total", "Responses for which no tcpcopy announced a route.", s.c.unrouted.Load)
	c("responses_held_total", "SYN-ACKs and RSTs held until their route arrived.", s.c.held.Load)
	c("records_dropped_total", "Records dropped because a link's queue was full.", s.c.dropped.Load)
	c("ring_drops_total", "Packets the kernel dropped because a capture ring was full.", s.ringDrops)
	c("links_accepted_total", "tcpcopy links accepted.", s.c.linksTotal.Load)
	c("links_refused_total", "tcpcopy connections refused (--allow, -c, --max-links).", s.c.refused.Load)
	c("link_errors_total", "tcpcopy links closed because of a protocol or I/O error.", s.c.linkErrors.Load)
	c("route_messages_total", "Route messages received from tcpcopy.", s.c.routeMsgs.Load)
	g("links", "tcpcopy links connected now.", func() int { return len(*s.links.Load()) })
	g("routes", "Routes in the table now.", func() int { return s.routes.Stats().Routes })
	g("held", "Responses held now, waiting for their route.", func() int { return s.routes.Stats().Held })
}

// ringDrops sums the kernel's ring drop counters of every capture.
func (s *Server) ringDrops() uint64 {
	var n uint64
	for _, src := range s.sources {
		n += src.Stats().Drops
	}
	return n
}
