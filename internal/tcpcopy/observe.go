package tcpcopy

// observe.go watches a running copy: the periodic stats line, the memory
// budget, warnings that name the likely cause of trouble in plain words,
// and the summary (on SIGUSR1 and at exit). Everything here reads
// counters; nothing runs per packet.

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"os/signal"
	"runtime/metrics"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/daemon"
	"github.com/tcpcopy-go/tcpcopy/internal/logging"
	"github.com/tcpcopy-go/tcpcopy/pkg/compare"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipfrag"
	"github.com/tcpcopy-go/tcpcopy/pkg/tcpstate"
)

const (
	// watchEvery is the period of the warning checks: the handshake
	// timeout, so that a copy that cannot establish anything is reported
	// within two periods.
	watchEvery = 3 * time.Second
	// warnEvery limits each kind of warning.
	warnEvery = 30 * time.Second
	// topReasons is how many failure reasons the summary names.
	topReasons = 5
)

// observe starts the loops that watch a running copy, and the summary on
// SIGUSR1 (the process keeps running). They end with ctx.
func (e *engine) observe(ctx context.Context) {
	usr1 := make(chan os.Signal, 1)
	signal.Notify(usr1, syscall.SIGUSR1)
	go func() {
		defer signal.Stop(usr1)
		for {
			select {
			case <-ctx.Done():
				return
			case <-usr1:
				s := e.snapshot()
				e.log.Info("summary", e.summaryAttrs(&s)...)
			}
		}
	}()
	go daemon.Every(ctx, e.cfg.StatsInterval, e.logStats)
	if e.cfg.MemoryMB > 0 {
		go daemon.Every(ctx, time.Second, e.budget(int64(e.cfg.MemoryMB)<<20))
	}
	go e.watch(ctx, watchEvery)
}

// stats sums every worker's published counters.
func (e *engine) stats() tcpstate.Stats {
	var st tcpstate.Stats
	for _, w := range e.disp.workers {
		ws := w.snapshot()
		st.Add(&ws)
	}
	return st
}

func (e *engine) ringDrops() uint64 {
	var n uint64
	for _, s := range e.sources {
		n += s.Stats().Drops
	}
	return n
}

// logStats logs the stats line.
func (e *engine) logStats(time.Time) {
	s := e.snapshot()
	st := &s.st
	attrs := []any{
		"captured", s.captured, "sessions_active", st.Active, "sessions_opened", st.Opened,
		"reproduced", st.ClosedBy(tcpstate.Reproduced), "partial", st.ClosedBy(tcpstate.Partial),
		"failed", st.ClosedBy(tcpstate.Failed), "requests", st.Requests, "uncopied_requests", uncopiedRequests(st), "responses", st.Responses,
		"retransmits", st.Retransmits + st.FastRetransmits, "fidelity", fmt.Sprintf("%.4f", st.Fidelity()),
		"links_up", s.links.Up, "ring_drops", s.ringDrops,
		"send_errors", s.sendErrors,
	}
	if s.cmp.On {
		attrs = verdictAttrs(&s.cmp.Stats, attrs)
	}
	if e.cfg.MySQL.On {
		ms := e.mysqlSnapshot()
		attrs = mysqlAttrs(&ms, attrs, false)
	}
	e.log.Info("stats", e.udpAttrs(attrs, false)...)
}

// budget returns the job that enforces the memory budget (-m) once a
// second: above it new sessions are shed, the process keeps running (C
// TCPCopy exits).
func (e *engine) budget(limit int64) func(time.Time) {
	sample := []metrics.Sample{{Name: "/memory/classes/total:bytes"}}
	return func(time.Time) {
		metrics.Read(sample)
		used := int64(sample[0].Value.Uint64())
		over := used > limit
		if e.shed.Swap(over) != over {
			if over {
				e.log.Warn("memory budget exceeded: new sessions are shed", "used_mb", used>>20, "budget_mb", limit>>20)
			} else {
				e.log.Info("memory back under budget: new sessions accepted", "used_mb", used>>20)
			}
		}
	}
}

// watch compares the counters every period and logs a warning, at most
// one per kind every warnEvery, for each sign of trouble it finds.
func (e *engine) watch(ctx context.Context, every time.Duration) {
	warn := logging.NewWarner(e.log, warnEvery)
	prev := e.snapshot()
	daemon.Every(ctx, every, func(time.Time) {
		cur := e.snapshot()
		warn.Warn(cur.at, cur.at.Sub(prev.at), e.diagnose(&prev, &cur))
		prev = cur
	})
}

// Warning messages. Their beginnings are stable: tests and docs
// (docs/troubleshooting.md) refer to them.
const (
	msgNoSynAck = "no SYN-ACK came back through intercept: check the route on the target for the client addresses " +
		"and rp_filter there (scripts/route-setup.sh target --clients CIDR --assistant IP --check), " +
		"then intercept's -i and -F (tcpdump on the assistant must show the SYN-ACKs)"
	msgNoIntercept = "no intercept link is up: new sessions wait 5s for one and then fail (intercept_unavailable); " +
		"check that intercept runs and that this host reaches it on -s (firewall, -b, --allow)"
	msgRingFull = "the kernel dropped captured packets because the capture ring was full: raise -B, " +
		"give tcpcopy more CPU, or copy a smaller share (-r)"
	msgCaptureGap = "sessions failed on a capture gap: client data was never captured (capture loss: " +
		"ring drops, -S too small, or client packets arriving on an interface -i does not capture)"
	msgBusy = "the capture fell behind: new sessions were refused (overload) so that those under way keep up; " +
		"give tcpcopy more CPU (--workers, fewer other processes) or copy a smaller share (-r)"
	msgTargetRST = "the target reset connections (target_rst): the port is closed, or the service is down or " +
		"overloaded on the target; check that it listens on the -x target port (ss -ltn on the target)"
	msgTargetTimeout = "the target stopped answering sessions with data outstanding (target_timeout): the target " +
		"is overloaded or hung, or its responses stopped reaching intercept (route on the target)"
	msgSendErrors = "packets to the target could not be sent: EPERM means a firewall rule on this host " +
		"(iptables/nftables OUTPUT) drops them, EMSGSIZE that -M is above the path MTU; " +
		"the \"sending to the target failed\" warning has the error"
	msgTooBig = "packets were larger than the path MTU to the target and had to be split: set -M to the path MTU " +
		"(ip route get <target> shows it; containers and tunnels often have 1450 or less)"
	msgShed     = "new sessions were not copied because the memory budget (-m) is exceeded: raise -m or copy a smaller share (-r)"
	msgOverload = "new sessions were not copied because too many handshakes were pending (overload): the target or the " +
		"route back through intercept is slower than the traffic; copy a smaller share (-r) or check the target's load"
	msgBufferFull = "sessions failed because too much captured data waited for the target (buffer_full): " +
		"the target reads too slowly or keeps its window closed"
	msgReconnects = "the target kept closing or resetting new connections before taking anything of their requests " +
		"(reconnects_without_progress): it fails on those requests, or refuses the connections"
	msgTruncated = "captured packets were cut by the snap length and their data lost: raise -S"
	msgStalled   = "sessions stalled: the target kept answering but took none of the data sent to it for --stall-timeout, " +
		"although it was sent again, split and shrunk (the latest such session is described): a firewall or middlebox " +
		"on the way to the target dropping some packets (by size or content), or, with cause zero_window, a target " +
		"service that stopped reading"
	msgUDPSendErrors = "UDP copies could not be sent to the target: EPERM means a firewall rule on this host " +
		"(iptables/nftables OUTPUT) drops them; the \"sending a UDP copy to the target failed\" warning has the error"
	msgUDPFragments = "fragmented UDP datagrams were dropped before they were whole (fragment_timeout, fragment_overflow): " +
		"fragments the capture missed (ring drops, a fragment arriving on an interface -i does not capture), " +
		"or more fragmented datagrams at once than tcpcopy holds"
	msgRoutes = "route announcements to intercept were dropped (no link to that intercept up, or its buffer full): " +
		"the responses of those sessions are lost"
)

// diagnose returns the warnings the change from prev to cur calls for.
// It does not log.
func (e *engine) diagnose(prev, cur *snapshot) []logging.Warning {
	var ws []logging.Warning
	add := func(kind, msg string, attrs ...any) {
		ws = append(ws, logging.Warning{Kind: kind, Msg: msg, Attrs: attrs})
	}
	ps, cs := &prev.st, &cur.st
	closed := func(r tcpstate.Reason) uint64 { // partial and failed sessions
		return cs.Closed[tcpstate.Partial][r] + cs.Closed[tcpstate.Failed][r] -
			ps.Closed[tcpstate.Partial][r] - ps.Closed[tcpstate.Failed][r]
	}
	// A SYN is answered by a SYN-ACK, or by a RST (a failed target_rst
	// session: the port is closed, a different warning).
	syns, synacks := cs.SYNs-ps.SYNs, cs.SYNAcks-ps.SYNAcks
	refused := cs.Closed[tcpstate.Failed][tcpstate.ReasonTargetRST] - ps.Closed[tcpstate.Failed][tcpstate.ReasonTargetRST]
	if n := closed(tcpstate.ReasonNoSynAck); n > 0 || syns >= 3 && synacks+refused == 0 && cur.links.Up > 0 {
		add("no_synack", msgNoSynAck, "syns_sent", syns, "synacks", synacks, "sessions_failed", n,
			"targets", e.targets())
	}
	if n := closed(tcpstate.ReasonNoIntercept); n > 0 || cur.links.Up == 0 && e.cfg.HasProto(ProtoTCP) {
		add("no_intercept", msgNoIntercept, "intercepts", fmt.Sprint(e.cfg.Intercepts), "sessions_failed", n,
			"connect_failures", cur.links.Failures-prev.links.Failures)
	}
	ring, trunc := cur.ringDrops-prev.ringDrops, cur.truncated-prev.truncated
	if ring > 0 {
		add("ring_full", msgRingFull, "ring_drops", ring, "buffer_mb", e.cfg.BufferMB)
	}
	if n := closed(tcpstate.ReasonCaptureGap); n > 0 {
		add("capture_gap", msgCaptureGap, "sessions", n, "ring_drops", ring, "truncated", trunc)
	}
	overload := cur.overload - prev.overload
	if overload > 0 {
		add("busy", msgBusy, "sessions_refused", overload, "workers", len(e.disp.workers))
	}
	if n := closed(tcpstate.ReasonTargetRST); n > 0 {
		add("target_rst", msgTargetRST, "sessions", n, "targets", e.targets())
	}
	if n := closed(tcpstate.ReasonTargetTimeout); n > 0 {
		add("target_timeout", msgTargetTimeout, "sessions", n, "timeout", e.cfg.SessionTimeout)
	}
	if n := cur.sendErrors - prev.sendErrors; n > 0 {
		add("send_error", msgSendErrors, "packets", n, "mtu", e.cfg.MTU)
	}
	if n := cur.tooBig - prev.tooBig; n > 0 {
		add("too_big", msgTooBig, "packets", n, "mtu", e.cfg.MTU)
	}
	if n := closed(tcpstate.ReasonShed); n > 0 {
		add("shed", msgShed, "sessions", n, "budget_mb", e.cfg.MemoryMB)
	}
	if n := closed(tcpstate.ReasonOverload); n > overload {
		// Refused because too many handshakes were pending: the target or
		// the intercept loop is slower than the traffic.
		add("overload", msgOverload, "sessions", n-overload)
	}
	if n := closed(tcpstate.ReasonBufferFull); n > 0 {
		add("buffer_full", msgBufferFull, "sessions", n)
	}
	if n := closed(tcpstate.ReasonReconnects); n > 0 {
		add("reconnects", msgReconnects, "sessions", n)
	}
	if n := closed(tcpstate.ReasonStalled); n > 0 {
		add("stalled", msgStalled, append([]any{"sessions", n}, stallAttrs(&cs.LastStall)...)...)
	}
	if trunc > 0 {
		add("truncated", msgTruncated, "packets", trunc, "snaplen", e.cfg.SnapLen)
	}
	if n := cur.links.RoutesDropped - prev.links.RoutesDropped; n > 0 && cur.links.Up > 0 {
		add("routes_dropped", msgRoutes, "routes", n, "links_up", cur.links.Up)
	}
	if cu, pu := cur.udp, prev.udp; cu != nil && pu != nil {
		if n := cu.sendError - pu.sendError; n > 0 {
			add("udp_send_error", msgUDPSendErrors, "datagrams", n)
		}
		to, ov := cu.fragDrops[ipfrag.DropTimeout]-pu.fragDrops[ipfrag.DropTimeout], cu.fragDrops[ipfrag.DropOverflow]-pu.fragDrops[ipfrag.DropOverflow]
		if to+ov > 0 {
			add("udp_fragments", msgUDPFragments, "fragment_timeout", to, "fragment_overflow", ov, "ring_drops", ring)
		}
	}
	return ws
}

// stallAttrs describes where a stalled session stuck, for a log line.
func stallAttrs(s *tcpstate.Stall) []any {
	return []any{"client", s.Key.Client, "target", s.Key.Target, "cause", s.Cause.String(),
		"acked_bytes", s.Offset, "outstanding", s.Outstanding, "queued", s.Queued,
		"segment", s.Segment, "window", s.Window, "timeouts", s.Timeouts}
}

// stallText is stallAttrs in one value, for the summary.
func stallText(s *tcpstate.Stall) string {
	return fmt.Sprintf("%v->%v %s after %d bytes acknowledged, %d outstanding (first segment %d bytes), %d queued, window %d, %d timeouts",
		s.Key.Client, s.Key.Target, s.Cause, s.Offset, s.Outstanding, s.Segment, s.Queued, s.Window, s.Timeouts)
}

// targets names the -x targets for log attributes.
func (e *engine) targets() string {
	ts := make([]string, 0, len(e.cfg.Mappings))
	for _, m := range e.cfg.Mappings {
		ts = append(ts, m.Target.String())
	}
	return strings.Join(slices.Compact(ts), ",")
}

// logSummary writes the end-of-run summary.
func (e *engine) logSummary() {
	s := e.snapshot()
	e.log.Info("tcpcopy stopped", e.summaryAttrs(&s)...)
}

// summaryAttrs describes the run so far: sessions by outcome, fidelity,
// requests, the most frequent failure reasons, response times and the
// intercept links, and port reuses if any. Counts by outcome and reason
// follow as <outcome>_<reason> for the sessions not reproduced.
func (e *engine) summaryAttrs(s *snapshot) []any {
	st := &s.st
	attrs := []any{
		"uptime", s.at.Sub(e.start).Round(time.Second),
		"sessions", st.Opened, "active", st.Active,
		"reproduced", st.ClosedBy(tcpstate.Reproduced), "partial", st.ClosedBy(tcpstate.Partial),
		"failed", st.ClosedBy(tcpstate.Failed), "fidelity", fmt.Sprintf("%.4f", st.Fidelity()),
		"requests", st.Requests, "captured_bytes", st.CapturedBytes, "acked_bytes", st.AckedBytes,
		"top_failures", topFailures(st, topReasons),
	}
	if b, r := st.Uncopied(); b > 0 {
		// Data of copied connections that no session carried (their
		// session had ended): in fidelity's denominator.
		attrs = append(attrs, "uncopied_bytes", b, "uncopied_requests", r, "uncopied", topUncopied(st, topReasons))
	}
	// Response time quantiles, estimated from the histograms.
	for _, h := range []struct {
		name string
		h    *tcpstate.DurationHistogram
	}{{"target", &st.Latency.Target}, {"online", &st.Latency.Online}} {
		if h.h.Count() > 0 {
			attrs = append(attrs, h.name+"_p50", h.h.Quantile(0.5).Round(10*time.Microsecond),
				h.name+"_p99", h.h.Quantile(0.99).Round(10*time.Microsecond))
		}
	}
	var dropped uint64
	for _, d := range s.drops() {
		dropped += d.n
	}
	attrs = append(attrs, "dropped", dropped, "links_up", s.links.Up, "intercepts", linkSummary(&s.links))
	if st.PortReuse > 0 {
		attrs = append(attrs, "port_reuses", st.PortReuse, "port_reuse_waits", st.PortReuseWaits)
	}
	if st.LastStall.At != 0 {
		attrs = append(attrs, "last_stall", stallText(&st.LastStall))
	}
	if s.cmp.On {
		// The response comparison: verdicts, what differs, the status
		// pairs that differ.
		attrs = verdictAttrs(&s.cmp.Stats, attrs)
		attrs = append(attrs, "differences", kindText(&s.cmp.Stats), "status_changes", statusChanges(&s.cmp.Stats, topReasons))
		if n := s.cmp.Stats.Verdicts[compare.NotCompared]; n > 0 {
			attrs = append(attrs, "not_compared_why", notComparedText(&s.cmp.Stats))
		}
	}
	attrs = e.udpAttrs(attrs, true)
	if e.cfg.MySQL.On {
		ms := e.mysqlSnapshot()
		attrs = mysqlAttrs(&ms, attrs, true)
	}
	for o := range tcpstate.NumOutcomes {
		if tcpstate.Outcome(o) == tcpstate.Reproduced {
			continue
		}
		for r := range tcpstate.NumReasons {
			if n := st.Closed[o][r]; n > 0 {
				attrs = append(attrs, tcpstate.Outcome(o).String()+"_"+tcpstate.Reason(r).String(), n)
			}
		}
	}
	return attrs
}

// kindText lists what differed, most first: "status=3 body=1"; "none".
func kindText(s *compare.Stats) string {
	var rs []labelled
	for k := 1; k < compare.NumKinds; k++ {
		if n := s.Kinds[k]; n > 0 {
			rs = append(rs, labelled{compare.Kind(k).String(), n})
		}
	}
	return topText(rs, compare.NumKinds)
}

// notComparedText lists why responses were not compared, most first.
func notComparedText(s *compare.Stats) string {
	var rs []labelled
	for r := 1; r < compare.NumReasons; r++ {
		if n := s.NotCompared[r]; n > 0 {
			rs = append(rs, labelled{compare.Reason(r).String(), n})
		}
	}
	return topText(rs, compare.NumReasons)
}

// statusChanges lists the HTTP status pairs that differ, most first, at
// most n: "200->500=40 200->404=2"; "none".
func statusChanges(s *compare.Stats, n int) string {
	var rs []labelled
	for k, c := range s.Statuses {
		if k/1000 != k%1000 {
			rs = append(rs, labelled{statusPair(k), c})
		}
	}
	slices.SortFunc(rs, func(a, b labelled) int { return cmp.Compare(a.label, b.label) }) // map order: a stable start
	return topText(rs, n)
}

// uncopiedRequests is the number of requests no session carried.
func uncopiedRequests(st *tcpstate.Stats) uint64 {
	_, r := st.Uncopied()
	return r
}

// topUncopied lists why captured bytes were not copied, most bytes first,
// at most n: "target_rst=1200 overload=300".
func topUncopied(st *tcpstate.Stats, n int) string {
	var rs []labelled
	for r, b := range st.UncopiedBytes {
		if b > 0 {
			rs = append(rs, labelled{tcpstate.Reason(r).String(), b})
		}
	}
	return topText(rs, n)
}

// topText lists counts, most first, at most n: "a=3 b=1"; "none" if
// there are none.
func topText(rs []labelled, n int) string {
	if len(rs) == 0 {
		return "none"
	}
	slices.SortStableFunc(rs, func(a, b labelled) int { return cmp.Compare(b.n, a.n) })
	var b strings.Builder
	for i, r := range rs[:min(n, len(rs))] {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", r.label, r.n)
	}
	return b.String()
}

// topFailures lists the reasons of the partial and failed sessions, most
// frequent first, at most n: "no_synack=40 target_rst=3"; "none" if none.
func topFailures(st *tcpstate.Stats, n int) string {
	var rs []labelled
	for r := range tcpstate.NumReasons {
		if c := st.Closed[tcpstate.Partial][r] + st.Closed[tcpstate.Failed][r]; c > 0 {
			rs = append(rs, labelled{tcpstate.Reason(r).String(), c})
		}
	}
	return topText(rs, n)
}

// linkSummary describes the links of every intercept: "addr=up/v7 ...".
func linkSummary(ls *LinkStats) string {
	var b strings.Builder
	for i, s := range ls.Servers {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s=%d", s.Addr, s.Up)
		if s.Format.Version != 0 {
			fmt.Fprintf(&b, "/v%d", s.Format.Version)
		}
	}
	return b.String()
}
