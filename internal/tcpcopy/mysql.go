package tcpcopy

// mysql.go wires the MySQL module (package mysqlcopy, docs/mysql.md) into
// the workers: the sessions of the mappings copied as MySQL get a
// mysqlcopy.Conn, which takes their captured client packets, the online
// server's answers and the target's records, and feeds the session table
// the client packets of the stream the target must get (a login of our
// own, statement ids of the target, nothing that is not copied). Other
// sessions never come here: with the module off, or for other mappings,
// the cost is one nil check (or one map lookup of the target) per packet.

import (
	"log/slog"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpcopy-go/tcpcopy/internal/mysqlcopy"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/tcpstate"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// mysqlWindow is the response window a link must give the module: the
// greeting, the login exchange (an RSA public key in PEM is about 450
// bytes) and the first packet of a COM_STMT_PREPARE answer fit.
const mysqlWindow = 2048

// mysqlState is a worker's part of the module.
type mysqlState struct {
	cfg     *mysqlcopy.Config
	targets map[netip.AddrPort]bool // the mappings' targets copied as MySQL
	conns   map[tcpstate.Key]*mysqlEntry
	st      mysqlcopy.Stats
	noJoin  bool  // -O: connections whose login was not captured are not copied
	idle    int64 // a Conn without traffic this long is forgotten (-k)
	out     mysqlOut
}

type mysqlEntry struct {
	c    *mysqlcopy.Conn
	last int64
}

func newMySQLState(cfg *mysqlcopy.Config, targets map[netip.AddrPort]bool, tab *tcpstate.Table, cmp *compareState, mtu int, noJoin bool, idle time.Duration) *mysqlState {
	ms := &mysqlState{cfg: cfg, targets: targets, conns: make(map[tcpstate.Key]*mysqlEntry), noJoin: noJoin, idle: int64(idle)}
	ms.out = mysqlOut{tab: tab, cmp: cmp, buf: make([]byte, mtu), chunk: mtu - 80}
	return ms
}

// handles reports whether session k is copied as MySQL.
func (ms *mysqlState) handles(k tcpstate.Key) bool { return ms.targets[k.Target] }

// convFlags converts TCP flags to the module's.
func convFlags(f ipmangle.TCPFlags) mysqlcopy.Flags {
	var m mysqlcopy.Flags
	if f&ipmangle.SYN != 0 {
		m |= mysqlcopy.FlagSYN
	}
	if f&ipmangle.ACK != 0 {
		m |= mysqlcopy.FlagACK
	}
	if f&ipmangle.FIN != 0 {
		m |= mysqlcopy.FlagFIN
	}
	if f&ipmangle.RST != 0 {
		m |= mysqlcopy.FlagRST
	}
	if f&ipmangle.PSH != 0 {
		m |= mysqlcopy.FlagPSH
	}
	return m
}

// client takes a captured client packet of MySQL session k.
func (ms *mysqlState) client(now int64, k tcpstate.Key, pkt []byte, p *ipmangle.Parsed) {
	payload := p.Payload(pkt)
	if len(payload) != p.PayloadLen {
		return // cut by the snap length: a hole the Conn waits to see filled
	}
	out := ms.out.at(now, k)
	e := ms.conns[k]
	if p.Flags&ipmangle.SYN != 0 && p.Flags&ipmangle.ACK == 0 {
		if e != nil && e.c.Started(p.Seq) {
			return // a retransmitted SYN
		}
		e = &mysqlEntry{c: mysqlcopy.NewConn(ms.cfg, &ms.st, k.Client, k.Target)}
		ms.conns[k] = e
		e.last = now
		e.c.Start(now, p.Seq, out)
		return
	}
	if e == nil {
		if len(payload) == 0 || p.Flags&ipmangle.RST != 0 {
			return
		}
		if ms.noJoin {
			ms.st.SkippedBytes += uint64(len(payload))
			return
		}
		e = &mysqlEntry{c: mysqlcopy.NewConn(ms.cfg, &ms.st, k.Client, k.Target)}
		ms.conns[k] = e
	}
	e.last = now
	e.c.Client(now, convFlags(p.Flags), p.Seq, p.Ack, payload, out)
}

// target takes a record of the target's answer to session k.
func (ms *mysqlState) target(now int64, k tcpstate.Key, p *ipmangle.Parsed, rec *wire.Record) {
	if e := ms.conns[k]; e != nil {
		e.c.Target(now, convFlags(p.Flags), p.Seq, p.Ack, rec.PayloadLen, rec.Prefix, ms.out.at(now, k))
	}
}

// capturedAck maps the target's acknowledgement number on session k to
// the captured client stream (mysqlcopy.Conn.CapturedAck).
func (ms *mysqlState) capturedAck(k tcpstate.Key, ack uint32) (uint32, bool) {
	if e := ms.conns[k]; e != nil {
		return e.c.CapturedAck(ack)
	}
	return 0, false
}

// droppedOnline is what session k's acknowledgement numbers lack
// (mysqlcopy.Conn.DroppedOnline).
func (ms *mysqlState) droppedOnline(k tcpstate.Key) uint32 {
	if e := ms.conns[k]; e != nil {
		return e.c.DroppedOnline()
	}
	return 0
}

// online takes a packet of the online server's answer on session k's
// connection.
func (ms *mysqlState) online(now int64, k tcpstate.Key, p *ipmangle.Parsed, payload []byte) {
	if e := ms.conns[k]; e != nil {
		e.c.Online(now, convFlags(p.Flags), p.Seq, p.Ack, payload, ms.out.at(now, k))
	}
}

// tick runs the Conns' time-outs and forgets those that are done.
func (ms *mysqlState) tick(now int64) {
	for k, e := range ms.conns {
		live := ms.out.tab.Live(k)
		e.c.Tick(now, live, ms.out.at(now, k))
		live = ms.out.tab.Live(k)
		if e.c.Done(live) || !live && now-e.last > ms.idle {
			delete(ms.conns, k)
		}
	}
}

// mysqlOut hands the table the packets a Conn makes, as client packets of
// session k.
type mysqlOut struct {
	tab   *tcpstate.Table
	cmp   *compareState // nil: the comparison is off
	k     tcpstate.Key
	now   int64
	buf   []byte
	chunk int
	p     ipmangle.Parsed
}

func (o *mysqlOut) at(now int64, k tcpstate.Key) *mysqlOut {
	o.now, o.k = now, k
	return o
}

// Packet implements mysqlcopy.Output: it builds the packet (split to the
// MTU) and runs it through the table; a SYN opens a rewritten session.
func (o *mysqlOut) Packet(f mysqlcopy.Flags, seq, ack uint32, payload []byte) {
	var flags ipmangle.TCPFlags
	if f&mysqlcopy.FlagSYN != 0 {
		flags |= ipmangle.SYN
	}
	if f&mysqlcopy.FlagACK != 0 {
		flags |= ipmangle.ACK
	}
	if f&mysqlcopy.FlagRST != 0 {
		flags |= ipmangle.RST
	}
	for {
		n := min(len(payload), o.chunk)
		fl := flags
		if n == len(payload) {
			if f&mysqlcopy.FlagFIN != 0 {
				fl |= ipmangle.FIN
			}
			if f&mysqlcopy.FlagPSH != 0 {
				fl |= ipmangle.PSH
			}
		}
		fields := ipmangle.Fields{Src: o.k.Client, Dst: o.k.Target, Seq: seq, Ack: ack, Flags: fl,
			Window: 65535, WScale: -1, Payload: payload[:n]}
		if m := fields.Encode(o.buf); m > 0 {
			o.p.Decode(o.buf[:m])
			o.tab.Client(o.now, o.k, o.buf[:m], &o.p)
		}
		if fl&ipmangle.SYN != 0 {
			o.tab.MarkRewritten(o.k)
		}
		payload = payload[n:]
		seq += uint32(n)
		if len(payload) == 0 {
			return
		}
	}
}

// Abort implements mysqlcopy.Output.
func (o *mysqlOut) Abort() { o.tab.Abort(o.now, o.k, tcpstate.ReasonRefused) }

// Uncopied implements mysqlcopy.Output: the comparison does not pair the
// online answers to what was not copied.
func (o *mysqlOut) Uncopied(from, to uint32, login bool) {
	if o.cmp != nil {
		o.cmp.skip(o.k, from, to, login)
	}
}

// enableMySQL loads the users file and gives every worker the module, if
// it is on.
func (e *engine) enableMySQL(log *slog.Logger) error {
	mc, err := e.cfg.mysqlModule(log)
	if err != nil || mc == nil {
		return err
	}
	mc.Log = log
	targets := e.cfg.mysqlTargets()
	for _, w := range e.disp.workers {
		w.my = newMySQLState(mc, targets, w.tab, w.cmp, e.cfg.MTU, e.cfg.OnlyFullSessions, e.cfg.KeepaliveTimeout)
	}
	log.Info("mysql module on", "targets", len(targets), "users", len(mc.Users), "read_only", mc.ReadOnly,
		"default_user", mc.DefaultUser != "")
	return nil
}

// mysqlSnapshot sums the workers' module counters.
func (e *engine) mysqlSnapshot() mysqlcopy.Stats {
	var s mysqlcopy.Stats
	for _, w := range e.disp.workers {
		w.statsMu.Lock()
		s.Add(&w.myStats)
		w.statsMu.Unlock()
	}
	return s
}

// mysqlCollector exposes the module's counters (docs/metrics.md).
type mysqlCollector struct {
	e                                                        *engine
	sessions, logins, auth, refused, commands, dropped       *prometheus.Desc
	prepares, rewrites, changeUsers, skipped, sessionsActive *prometheus.Desc
}

func newMySQLCollector(e *engine) *mysqlCollector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc("tcpcopy_mysql_"+name, help, labels, nil)
	}
	return &mysqlCollector{
		e:              e,
		sessions:       d("sessions_total", "MySQL sessions started toward the target: with the client's captured login, or joined mid-way.", "kind"),
		logins:         d("logins_total", "Logins of ours the target accepted."),
		auth:           d("auth_total", "Authentication answers made, by method.", "method"),
		refused:        d("refused_total", "MySQL sessions (or their rest) not copied, by reason.", "reason"),
		commands:       d("commands_total", "Commands copied to the target."),
		dropped:        d("commands_dropped_total", "Commands not copied, by reason.", "reason"),
		prepares:       d("prepares_mapped_total", "Prepared statements whose ids were matched on both servers."),
		rewrites:       d("statement_ids_rewritten_total", "Commands whose statement id was replaced by the target's."),
		changeUsers:    d("change_users_total", "COM_CHANGE_USER redone for the target."),
		skipped:        d("skipped_bytes_total", "Captured bytes not sent: before a joined connection's next command boundary, or of refused sessions."),
		sessionsActive: d("connections", "Connections the module follows now."),
	}
}

func (c *mysqlCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.sessions, c.logins, c.auth, c.refused, c.commands, c.dropped,
		c.prepares, c.rewrites, c.changeUsers, c.skipped, c.sessionsActive} {
		ch <- d
	}
}

func (c *mysqlCollector) Collect(ch chan<- prometheus.Metric) {
	s := c.e.mysqlSnapshot()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(c.sessions, s.LoginsCaptured, "captured_login")
	counter(c.sessions, s.Joined, "joined")
	counter(c.logins, s.LoginsDone)
	counter(c.auth, s.AuthNative, "mysql_native_password")
	counter(c.auth, s.AuthSHA2Fast, "caching_sha2_password")
	counter(c.auth, s.AuthSHA2Full, "caching_sha2_password_rsa")
	for r := 1; r < mysqlcopy.NumRefusals; r++ {
		counter(c.refused, s.Refused[r], mysqlcopy.Refusal(r).String())
	}
	counter(c.commands, s.Commands)
	for r := range mysqlcopy.NumDropReasons {
		counter(c.dropped, s.Dropped[r], mysqlcopy.DropReason(r).String())
	}
	counter(c.prepares, s.Prepares)
	counter(c.rewrites, s.StmtRewrites)
	counter(c.changeUsers, s.ChangeUsers)
	counter(c.skipped, s.SkippedBytes)
	n := 0
	for _, w := range c.e.disp.workers {
		w.statsMu.Lock()
		n += w.myConns
		w.statsMu.Unlock()
	}
	ch <- prometheus.MustNewConstMetric(c.sessionsActive, prometheus.GaugeValue, float64(n))
}

// mysqlAttrs are the module's counts for the stats line and the summary.
func mysqlAttrs(s *mysqlcopy.Stats, attrs []any, summary bool) []any {
	var refused, dropped uint64
	for _, n := range s.Refused {
		refused += n
	}
	for _, n := range s.Dropped {
		dropped += n
	}
	attrs = append(attrs, "mysql_logins", s.LoginsDone, "mysql_joined", s.Joined, "mysql_commands", s.Commands,
		"mysql_dropped", dropped, "mysql_refused", refused)
	if summary {
		var rs, ds []labelled
		for r := 1; r < mysqlcopy.NumRefusals; r++ {
			if n := s.Refused[r]; n > 0 {
				rs = append(rs, labelled{mysqlcopy.Refusal(r).String(), n})
			}
		}
		for r := range mysqlcopy.NumDropReasons {
			if n := s.Dropped[r]; n > 0 {
				ds = append(ds, labelled{mysqlcopy.DropReason(r).String(), n})
			}
		}
		attrs = append(attrs, "mysql_refused_why", topText(rs, mysqlcopy.NumRefusals),
			"mysql_dropped_why", topText(ds, mysqlcopy.NumDropReasons), "mysql_prepares", s.Prepares)
	}
	return attrs
}
