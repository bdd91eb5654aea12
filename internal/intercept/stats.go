package intercept

// stats.go is what intercept tells its operator: counters, Prometheus
// metrics (docs/metrics.md lists them; keep the two in step), the stats
// line, warnings naming the likely cause of trouble, and the summary on
// SIGUSR1 and at exit. Nothing here runs per packet.

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpcopy-go/tcpcopy/internal/daemon"
	"github.com/tcpcopy-go/tcpcopy/internal/logging"
	"github.com/tcpcopy-go/tcpcopy/internal/metrics"
	"github.com/tcpcopy-go/tcpcopy/internal/version"
	"github.com/tcpcopy-go/tcpcopy/pkg/router"
)

// Stats is a snapshot of the server's counters. Routed counts records
// written to links; Dropped those lost (a full queue, a format that cannot
// carry them, or still queued when their link closed).
type Stats struct {
	Captured, Invalid, Routed, Unrouted, Held, Dropped uint64
	LinksTotal, Refused, LinkErrors, RouteMsgs         uint64
	Links, Routes, HeldNow                             int
	RingDrops                                          uint64
	// Skipped counts well-framed messages the links' readers skipped
	// (unknown types, routes no connection can have, ...).
	Skipped uint64
	// Closed counts the links closed, by cause (closeCause).
	Closed [numCauses]uint64
	// Authenticated counts links that proved the shared secret.
	Authenticated uint64
	// Table has the route table's own counters (routes added, expired,
	// refused, held packets released or expired, ...).
	Table router.Stats
	// UDP answers (udp.go): datagrams (or first fragments) captured,
	// records queued, answers without a route, answers held for their
	// route, later fragments ignored; UDPTable is the UDP route table's
	// counters.
	UDPCaptured, UDPRouted, UDPUnrouted, UDPHeld, UDPFragments uint64
	UDPTable                                                   router.Stats
}

// Stats returns the current counters.
func (s *Server) Stats() Stats {
	rs := s.routes.Stats()
	st := Stats{
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
		Skipped:    s.c.skipped.Load(),

		Authenticated: s.c.authOK.Load(),
		Table:         rs,

		UDPCaptured:  s.c.udpCaptured.Load(),
		UDPRouted:    s.c.udpRouted.Load(),
		UDPUnrouted:  s.c.udpUnrouted.Load(),
		UDPHeld:      s.c.udpHeld.Load(),
		UDPFragments: s.c.udpFragments.Load(),
		UDPTable:     s.udpRoutes.Stats(),
	}
	for i := range st.Closed {
		st.Closed[i] = s.c.closed[i].Load()
	}
	return st
}

// LinkStats describes one tcpcopy link.
type LinkStats struct {
	ID      router.Owner
	Remote  string // tcpcopy's address and port
	Version int    // wire protocol version; 0 before the handshake
	Records uint64 // records written to it
	Dropped uint64 // records dropped: its queue was full
	Unfit   uint64 // records its format cannot carry (IPv6 on version 6)
	Routes  uint64 // route messages it sent
	// RoutesHeld is the number of routes it holds now (UDPRoutesHeld its
	// UDP routes); RoutesRefused its route adds refused
	// (--max-routes-per-link, table full).
	RoutesHeld    int
	UDPRoutesHeld int
	RoutesRefused uint64
	// Skipped counts its messages the reader skipped.
	Skipped uint64
	// QueueBytes is the memory its record buffers hold now.
	QueueBytes int
	// Authenticated: it proved the shared secret.
	Authenticated bool
}

// LinkStats returns the counters of every link up now, by id.
func (s *Server) LinkStats() []LinkStats {
	links := *s.links.Load()
	out := make([]LinkStats, 0, len(links))
	for _, l := range links {
		ls := LinkStats{
			ID: l.id, Remote: l.remote.String(),
			Records: l.records.Load(), Dropped: l.dropped.Load(), Unfit: l.unfit.Load(), Routes: l.routes.Load(),
			RoutesHeld: s.routes.OwnerRoutes(l.id), UDPRoutesHeld: s.udpRoutes.OwnerRoutes(l.id), RoutesRefused: l.refused.Load(), Skipped: l.skipped.Load(),
			QueueBytes: l.memBytes(), Authenticated: l.authed.Load(),
		}
		if f := l.format.Load(); f != nil {
			ls.Version = int(f.Version)
		}
		out = append(out, ls)
	}
	slices.SortFunc(out, func(a, b LinkStats) int { return cmp.Compare(a.ID, b.ID) })
	return out
}

// observe starts the stats line, the warnings and the summary on SIGUSR1
// (the process keeps running); they end with ctx.
func (s *Server) observe(ctx context.Context, statsEvery time.Duration) {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		defer signal.Stop(usr1)
		for {
			select {
			case <-ctx.Done():
				return
			case <-usr1:
				s.logSummary("summary")
			}
		}
	}()
	go daemon.Every(ctx, statsEvery, s.logStats)
	go s.watch(ctx, watchEvery)
}

// logStats logs the stats line.
func (s *Server) logStats(time.Time) {
	st := s.Stats()
	s.log.Info("stats",
		"captured", st.Captured, "sent", st.Routed, "unrouted", st.Unrouted,
		"held", st.Held, "dropped", st.Dropped, "invalid", st.Invalid,
		"ring_drops", st.RingDrops, "links", st.Links, "routes", st.Routes, "udp_routes", st.UDPTable.Routes,
		"udp_captured", st.UDPCaptured, "udp_sent", st.UDPRouted, "udp_unrouted", st.UDPUnrouted)
}

// logSummary logs the run so far under msg: what was captured and where
// it went, the route table and every link.
func (s *Server) logSummary(msg string) {
	st := s.Stats()
	var links strings.Builder
	for i, l := range s.LinkStats() {
		if i > 0 {
			links.WriteByte(' ')
		}
		fmt.Fprintf(&links, "%d:%s/v%d:records=%d,dropped=%d,routes=%d,udp_routes=%d", l.ID, l.Remote, l.Version, l.Records, l.Dropped, l.RoutesHeld, l.UDPRoutesHeld)
	}
	s.log.Info(msg, "captured", st.Captured, "sent", st.Routed, "unrouted", st.Unrouted,
		"held", st.Held, "held_released", st.Table.Released, "held_expired", st.Table.HeldExpired,
		"dropped", st.Dropped, "invalid", st.Invalid, "ring_drops", st.RingDrops,
		"routes", st.Routes, "routes_expired", st.Table.Expired,
		"routes_refused", st.Table.RefusedOwnerFull+st.Table.RefusedTableFull, "messages_skipped", st.Skipped,
		"links", st.Links, "links_total", st.LinksTotal, "links_refused", st.Refused, "link_errors", st.LinkErrors,
		"links_idle_closed", st.Closed[causeIdle], "links_handshake_timeout", st.Closed[causeHandshakeTimeout],
		"links_auth_failed", st.Closed[causeAuth]+st.Closed[causeVersion6],
		"udp_captured", st.UDPCaptured, "udp_sent", st.UDPRouted, "udp_unrouted", st.UDPUnrouted,
		"udp_held", st.UDPHeld, "udp_held_released", st.UDPTable.Released, "udp_held_expired", st.UDPTable.HeldExpired,
		"udp_fragments_ignored", st.UDPFragments, "udp_routes", st.UDPTable.Routes, "udp_routes_expired", st.UDPTable.Expired,
		"udp_routes_refused", st.UDPTable.RefusedOwnerFull+st.UDPTable.RefusedTableFull,
		"link_detail", links.String())
}

const (
	// watchEvery is the period of the warning checks.
	watchEvery = 3 * time.Second
	// warnEvery limits each kind of warning.
	warnEvery = 30 * time.Second
)

// Warning messages (docs/troubleshooting.md refers to them).
const (
	msgNoLinks = "responses are captured but no tcpcopy is linked: they are thrown away; " +
		"start tcpcopy with -s pointing at this host, or check --allow and the firewall"
	msgUnrouted = "many responses had no route: no linked tcpcopy announced their connection; " +
		"a tcpcopy with -s pointing elsewhere copies to this target, or -F matches more than the copies (add the target port)"
	msgQueueFull = "records were dropped because a tcpcopy link's queue (--queue-bytes) was full: " +
		"that tcpcopy reads too slowly (CPU) or the network to it is congested"
	msgRingFull = "the kernel dropped captured packets because the capture ring was full: " +
		"give intercept more CPU, or narrow -F to the target's responses"
	msgHeldExpired = "SYN-ACKs or RSTs waited for a route that never came: their tcpcopy is not linked here, " +
		"or its route messages are lost"
	msgHeldFull = "the pool of responses waiting for their route (-s) is full: raise -s"
)

// watch compares the counters every period and logs a warning, at most
// one per kind every warnEvery, for each sign of trouble.
func (s *Server) watch(ctx context.Context, every time.Duration) {
	warn := logging.NewWarner(s.log, warnEvery)
	prev, prevAt := s.Stats(), time.Now()
	daemon.Every(ctx, every, func(now time.Time) {
		cur := s.Stats()
		warn.Warn(now, now.Sub(prevAt), diagnose(&prev, &cur))
		prev, prevAt = cur, now
	})
}

// diagnose returns the warnings the change from prev to cur calls for.
func diagnose(prev, cur *Stats) []logging.Warning {
	var ws []logging.Warning
	add := func(kind, msg string, attrs ...any) {
		ws = append(ws, logging.Warning{Kind: kind, Msg: msg, Attrs: attrs})
	}
	unrouted, routed := cur.Unrouted-prev.Unrouted, cur.Routed-prev.Routed
	switch {
	case cur.Links == 0 && unrouted > 0:
		add("no_links", msgNoLinks, "unrouted", unrouted)
	case unrouted > 0 && unrouted >= routed/10:
		// A few unrouted packets are normal (late packets of closed
		// sessions); more than one in ten of the traffic is not.
		add("unrouted", msgUnrouted, "unrouted", unrouted, "sent", routed, "links", cur.Links)
	}
	if n := cur.Dropped - prev.Dropped; n > 0 {
		add("queue_full", msgQueueFull, "records", n, "links", cur.Links)
	}
	if n := cur.RingDrops - prev.RingDrops; n > 0 {
		add("ring_full", msgRingFull, "ring_drops", n)
	}
	if n := cur.Table.HeldExpired - prev.Table.HeldExpired; n > 0 {
		add("held_expired", msgHeldExpired, "packets", n, "links", cur.Links)
	}
	if n := cur.Table.HeldDropped - prev.Table.HeldDropped; n > 0 {
		add("held_full", msgHeldFull, "packets", n)
	}
	return ws
}

// register exposes the counters as Prometheus metrics.
func (s *Server) register(reg prometheus.Registerer) {
	c := func(name, help string, f func() uint64) {
		metrics.Counter(reg, "intercept_"+name, help, func() float64 { return float64(f()) })
	}
	g := func(name, help string, f func() int) {
		metrics.Gauge(reg, "intercept_"+name, help, func() float64 { return float64(f()) })
	}
	table := func(f func(*router.Stats) uint64) func() uint64 {
		return func() uint64 { st := s.routes.Stats(); return f(&st) }
	}
	c("packets_captured_total", "Packets read from the capture rings.", s.c.captured.Load)
	c("records_sent_total", "Response records written to a tcpcopy link.", s.c.routed.Load)
	c("responses_unrouted_total", "Responses for which no linked tcpcopy announced a route; not sent.", s.c.unrouted.Load)
	c("responses_held_total", "SYN-ACKs and RSTs held until their route arrived.", s.c.held.Load)
	c("held_released_total", "Held responses delivered when their route came.", table(func(st *router.Stats) uint64 { return st.Released }))
	c("held_expired_total", "Held responses dropped because their route never came.", table(func(st *router.Stats) uint64 { return st.HeldExpired }))
	c("held_dropped_total", "Responses not held because the pool (-s) was full.", table(func(st *router.Stats) uint64 { return st.HeldDropped }))
	c("records_dropped_total", "Records dropped: a link's queue was full, its format could not carry them, or it closed with them queued.", s.c.dropped.Load)
	c("links_accepted_total", "tcpcopy links accepted.", s.c.linksTotal.Load)
	c("links_refused_total", "tcpcopy connections refused (--allow, -c, --max-links).", s.c.refused.Load)
	c("link_errors_total", "tcpcopy links closed because of a handshake, authentication, protocol or I/O error.", s.c.linkErrors.Load)
	c("links_authenticated_total", "tcpcopy links that proved the shared secret (--secret-file).", s.c.authOK.Load)
	c("route_messages_total", "Route messages received from tcpcopy.", s.c.routeMsgs.Load)
	c("segments_hashed_total", "Response segments hashed for a tcpcopy link that compares responses.", s.c.hashed.Load)
	c("segments_unhashed_total", "Response segments of such a link sent without hash: the capture cut them (their responses are not compared).", s.c.unhashed.Load)
	c("messages_skipped_total", "Well-framed messages from tcpcopy links that were skipped: unknown types, routes no connection can have.", s.c.skipped.Load)
	c("routes_added_total", "Route add messages applied.", table(func(st *router.Stats) uint64 { return st.Added }))
	c("routes_deleted_total", "Routes removed by a delete message.", table(func(st *router.Stats) uint64 { return st.Deleted }))
	c("routes_expired_total", "Routes removed because idle (-t) or their link closed.", table(func(st *router.Stats) uint64 { return st.Expired }))
	c("routes_evicted_total", "Routes pushed out because the table was full (always the adding link's own).", table(func(st *router.Stats) uint64 { return st.Evicted }))
	c("routes_taken_over_total", "Route adds that moved a route to another link.", table(func(st *router.Stats) uint64 { return st.TakenOver }))
	udp := func(f func(*router.Stats) uint64) func() uint64 {
		return func() uint64 { st := s.udpRoutes.Stats(); return f(&st) }
	}
	c("udp_answers_captured_total", "UDP datagrams (or first fragments) captured: answers of the target to copied UDP datagrams, if -F selects only those.", s.c.udpCaptured.Load)
	c("udp_records_sent_total", "UDP answers queued as records for a tcpcopy link.", s.c.udpRouted.Load)
	c("udp_answers_unrouted_total", "UDP answers for which no linked tcpcopy announced a UDP route (and none could be held); not sent.", s.c.udpUnrouted.Load)
	c("udp_answers_held_total", "UDP answers held until their route arrived.", s.c.udpHeld.Load)
	c("udp_held_released_total", "Held UDP answers delivered when their route came.", udp(func(st *router.Stats) uint64 { return st.Released }))
	c("udp_held_expired_total", "Held UDP answers dropped because their route never came.", udp(func(st *router.Stats) uint64 { return st.HeldExpired }))
	c("udp_held_dropped_total", "UDP answers not held because the pool (8192, or -s if lower) was full.", udp(func(st *router.Stats) uint64 { return st.HeldDropped }))
	c("udp_fragments_ignored_total", "Later fragments of UDP answers (the first fragment makes the record).", s.c.udpFragments.Load)
	c("udp_routes_added_total", "UDP route add messages applied.", udp(func(st *router.Stats) uint64 { return st.Added }))
	c("udp_routes_deleted_total", "UDP routes removed by a delete message.", udp(func(st *router.Stats) uint64 { return st.Deleted }))
	c("udp_routes_expired_total", "UDP routes removed because idle (--udp-route-idle) or their link closed.", udp(func(st *router.Stats) uint64 { return st.Expired }))
	c("udp_routes_refused_total", "UDP route adds refused: the link held --max-routes-per-link UDP routes, or the table was full.", udp(func(st *router.Stats) uint64 { return st.RefusedOwnerFull + st.RefusedTableFull }))
	g("udp_routes", "UDP routes in the table now.", func() int { return s.udpRoutes.Stats().Routes })
	g("links", "tcpcopy links connected now.", func() int { return len(*s.links.Load()) })
	g("routes", "Routes in the table now.", func() int { return s.routes.Stats().Routes })
	g("held", "Responses held now, waiting for their route.", func() int { return s.routes.Stats().Held })
	reg.MustRegister(&linkCollector{s: s,
		dropped: prometheus.NewDesc("intercept_packets_dropped_total",
			"Captured packets not used, by reason: invalid (neither IPv4/IPv6 TCP nor UDP), ring_full (the kernel's capture ring overflowed).",
			[]string{"reason"}, nil),
		records: prometheus.NewDesc("intercept_link_records_total", "Records queued for this tcpcopy link.", []string{"link", "remote"}, nil),
		ldrop:   prometheus.NewDesc("intercept_link_records_dropped_total", "Records dropped because this link's queue was full.", []string{"link", "remote"}, nil),
		unfit:   prometheus.NewDesc("intercept_link_records_unfit_total", "Records this link's protocol version cannot carry (IPv6 on version 6).", []string{"link", "remote"}, nil),
		routes:  prometheus.NewDesc("intercept_link_route_messages_total", "Route messages received on this link.", []string{"link", "remote"}, nil),
		version: prometheus.NewDesc("intercept_link_wire_version", "Protocol version negotiated on this link (0 during the handshake).", []string{"link", "remote"}, nil),
		held:    prometheus.NewDesc("intercept_link_routes", "Routes this link holds now.", []string{"link", "remote"}, nil),
		lref:    prometheus.NewDesc("intercept_link_routes_refused_total", "Route adds of this link refused (--max-routes-per-link, table full).", []string{"link", "remote"}, nil),
		qbytes:  prometheus.NewDesc("intercept_link_queue_bytes", "Memory held by this link's record buffers (bounded by --queue-bytes).", []string{"link", "remote"}, nil),
		closed:  prometheus.NewDesc("intercept_links_closed_total", "tcpcopy links closed, by cause.", []string{"cause"}, nil),
		refused: prometheus.NewDesc("intercept_routes_refused_total", "Route adds refused, by cause: link_cap (--max-routes-per-link), table_full.", []string{"cause"}, nil),
		build:   prometheus.NewDesc("intercept_build_info", "Always 1; the version is a label.", []string{"version"}, nil),
	})
}

// linkCollector exports the labelled families: drops by reason, link
// closes and route refusals by cause, and the counters of every link up
// now (a link's series go with it).
type linkCollector struct {
	s                                                      *Server
	dropped, records, ldrop, unfit, routes, version, build *prometheus.Desc
	held, lref, qbytes, closed, refused                    *prometheus.Desc
}

func (c *linkCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.dropped, c.records, c.ldrop, c.unfit, c.routes, c.version, c.build,
		c.held, c.lref, c.qbytes, c.closed, c.refused} {
		ch <- d
	}
}

func (c *linkCollector) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(c.s.c.invalid.Load()), "invalid")
	ch <- prometheus.MustNewConstMetric(c.dropped, prometheus.CounterValue, float64(c.s.ringDrops()), "ring_full")
	for _, l := range c.s.LinkStats() {
		id := strconv.FormatUint(uint64(l.ID), 10)
		ch <- prometheus.MustNewConstMetric(c.records, prometheus.CounterValue, float64(l.Records), id, l.Remote)
		ch <- prometheus.MustNewConstMetric(c.ldrop, prometheus.CounterValue, float64(l.Dropped), id, l.Remote)
		ch <- prometheus.MustNewConstMetric(c.unfit, prometheus.CounterValue, float64(l.Unfit), id, l.Remote)
		ch <- prometheus.MustNewConstMetric(c.routes, prometheus.CounterValue, float64(l.Routes), id, l.Remote)
		ch <- prometheus.MustNewConstMetric(c.version, prometheus.GaugeValue, float64(l.Version), id, l.Remote)
		ch <- prometheus.MustNewConstMetric(c.held, prometheus.GaugeValue, float64(l.RoutesHeld), id, l.Remote)
		ch <- prometheus.MustNewConstMetric(c.lref, prometheus.CounterValue, float64(l.RoutesRefused), id, l.Remote)
		ch <- prometheus.MustNewConstMetric(c.qbytes, prometheus.GaugeValue, float64(l.QueueBytes), id, l.Remote)
	}
	for i := range numCauses {
		ch <- prometheus.MustNewConstMetric(c.closed, prometheus.CounterValue, float64(c.s.c.closed[i].Load()), i.String())
	}
	rs := c.s.routes.Stats()
	ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(rs.RefusedOwnerFull), refusedNames[refusedLinkCap])
	ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(rs.RefusedTableFull), refusedNames[refusedTableFull])
	ch <- prometheus.MustNewConstMetric(c.build, prometheus.GaugeValue, 1, version.String())
}

// ringDrops sums the kernel's ring drop counters of every capture.
func (s *Server) ringDrops() uint64 {
	var n uint64
	for _, src := range s.sources {
		n += src.Stats().Drops
	}
	return n
}
