package tcpstate

import (
	"net/netip"
	"time"

	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/seqnum"
)

// Key identifies a session: the client endpoint as the target sees it
// (after any -c/-n/-f rewriting) and the target endpoint.
type Key struct {
	Client netip.AddrPort
	Target netip.AddrPort
}

// skey is Key packed for the session table: 36 bytes instead of 64
// (netip.AddrPort carries a zone handle), which keeps an idle session small.
// IPv4 addresses are stored 4in6-mapped and unmapped again by key.
type skey struct {
	client, target [16]byte
	cport, tport   uint16
}

func packKey(k Key) skey {
	return skey{client: k.Client.Addr().As16(), target: k.Target.Addr().As16(), cport: k.Client.Port(), tport: k.Target.Port()}
}

func (k skey) key() Key {
	return Key{
		Client: netip.AddrPortFrom(netip.AddrFrom16(k.client).Unmap(), k.cport),
		Target: netip.AddrPortFrom(netip.AddrFrom16(k.target).Unmap(), k.tport),
	}
}

// Output receives what a Table produces. Its methods are called
// synchronously from Table methods and must not call back into the Table.
type Output interface {
	// Send sends pkt, a complete IP packet no longer than Config.MTU, to the
	// target. pkt is valid only during the call.
	Send(pkt []byte)
	// Route announces (add) or withdraws a session's route to every
	// intercept. It reports false when no intercept link is up, in which
	// case a new session waits (Config.RouteWait) and tries again.
	Route(k Key, add bool) bool
	// Request tells that the first segment of a request of session k, the
	// one whose client segments carry acknowledgement number ack, went to
	// the target at now (for the response comparison's response times).
	Request(k Key, ack uint32, now int64)
	// AnswerPending reports whether the target's answer to session k's
	// latest request is known to go on (the response comparison read its
	// length): the next request then waits for it, as long as it keeps
	// coming (Config.ResponseWait between its segments).
	AnswerPending(k Key) bool
}

// Config holds a Table's parameters. Zero values take the defaults noted.
type Config struct {
	// MTU is the largest IP packet sent (-M); captured segments must have
	// been split to it. Default 1500.
	MTU int
	// MSS is the MSS option of the SYNs we make (-D). Default 1460.
	MSS uint16
	// FixedRTT replaces the measured round-trip time (-R). 0: measure.
	FixedRTT time.Duration
	// SessionTimeout ends a session whose target stayed silent this long
	// while data was outstanding (-t). Default 600 s.
	SessionTimeout time.Duration
	// IdleTimeout ends a session with nothing outstanding after this long
	// without traffic (-k). Default SessionTimeout + 120 s.
	IdleTimeout time.Duration
	// HandshakeTimeout fails a session that got no SYN-ACK. Default 3 s,
	// as C TCPCopy.
	HandshakeTimeout time.Duration
	// RouteWait is how long a new session waits for an intercept link to
	// be up before it fails. Default 5 s.
	RouteWait time.Duration
	// GapTimeout fails a session whose captured stream has a hole that the
	// client's retransmissions did not fill. Default 10 s (what C TCPCopy
	// intended; its unit bug made it the session timeout).
	GapTimeout time.Duration
	// StallTimeout ends a session that made no progress for this long
	// (the target acknowledged nothing new of the data it has) while the
	// target kept answering, with ReasonStalled. A target that says
	// nothing at all is SessionTimeout's. Default 30 s.
	StallTimeout time.Duration
	// ResponseWait is the longest time a request is held for the target's
	// response to the previous one. Default 1 s.
	ResponseWait time.Duration
	// AnswerLengths makes the pacing ask Output.AnswerPending whether the
	// target's answer goes on (the response comparison knows answer
	// lengths); off, it is never asked.
	AnswerLengths bool
	// TimeWait is how long a closed session lingers to acknowledge the
	// target's retransmitted FIN. Default 2 s.
	TimeWait time.Duration
	// AckDelay delays the acknowledgement of the target's data and FIN,
	// as a real client's delayed ACKs do (RFC 9293 §3.8.6.3), so that the
	// next packet we send carries it: the client's next request or its
	// FIN. Two full segments unacknowledged, a retransmission, or the end
	// of both directions are acknowledged at once. 0: no delay (each batch
	// of responses is acknowledged when it ends).
	AckDelay time.Duration
	// NoWait sends requests without waiting for responses (-W).
	NoWait bool
	// OnlyFullSessions ignores connections whose SYN was not captured (-O).
	OnlyFullSessions bool
	// MaxQueueBytes bounds the memory a session's queue of captured data
	// holds, counted as the buffers it takes (an MTU-sized buffer per
	// segment, whatever its payload; small in-order segments share one
	// until it is sent); past it the session fails ("buffer full").
	// Default 16 MiB.
	MaxQueueBytes int
	// MaxReconnects bounds how often a session reconnects after the target
	// closed it early. Default 8.
	MaxReconnects int
	// MaxHandshakes bounds the sessions waiting for their first SYN-ACK
	// (or for an intercept link). Past it new sessions are refused with
	// ReasonOverload: when the target or the intercept loop cannot keep
	// up, the sessions already running are kept complete instead of every
	// session slowing down and failing together. Default 1024.
	MaxHandshakes int
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.MTU <= 0 {
		c.MTU = 1500
	}
	if c.MSS == 0 {
		c.MSS = 1460
	}
	def(&c.SessionTimeout, 600*time.Second)
	def(&c.IdleTimeout, c.SessionTimeout+120*time.Second)
	def(&c.HandshakeTimeout, 3*time.Second)
	def(&c.RouteWait, 5*time.Second)
	def(&c.GapTimeout, 10*time.Second)
	def(&c.StallTimeout, 30*time.Second)
	def(&c.ResponseWait, time.Second)
	def(&c.TimeWait, 2*time.Second)
	if c.MaxQueueBytes <= 0 {
		c.MaxQueueBytes = 16 << 20
	}
	if c.MaxReconnects <= 0 {
		c.MaxReconnects = 8
	}
	if c.MaxHandshakes <= 0 {
		c.MaxHandshakes = 1024
	}
}

// Table holds the sessions of one worker. It is not safe for concurrent
// use.
type Table struct {
	cfg      Config
	out      Output
	sessions map[skey]*session
	dead     map[skey]deadConn // connections not copied: dropped until their time
	swept    int64             // last sweep of dead
	timers   timerHeap
	free     []*session // reusable sessions
	segs     segPool
	buf      []byte // packet being built
	shed     bool
	overload bool
	// handshakes counts sessions waiting for their first SYN-ACK.
	handshakes int
	// owed lists sessions that may owe a pure ACK (session.ackOwed) at
	// the end of the batch.
	owed []*session
	// successors holds new connections waiting for the session of their
	// 4-tuple to finish (successor.go).
	successors map[skey]*successor
	succBytes  int // packet bytes the successors hold
	succLimit  int // successorTotalBytes (tests lower it)
	// pmtu holds the path MTUs the kernel reported (TooBig), by target
	// address, when below MTU.
	pmtu map[[16]byte]int
	// hsRTT is the smoothed round-trip time of the handshakes, for the
	// SYN retransmission timeout (synRTO); 0 until the first sample.
	hsRTT   int64
	scratch ipmangle.Parsed // TooBig's decoding
	stats   Stats
}

// New returns an empty table writing to out.
func New(cfg Config, out Output) *Table {
	cfg.setDefaults()
	return &Table{
		cfg:       cfg,
		out:       out,
		sessions:  make(map[skey]*session),
		dead:      make(map[skey]deadConn),
		segs:      segPool{size: cfg.MTU},
		buf:       make([]byte, cfg.MTU),
		succLimit: successorTotalBytes,
	}
}

// Len returns the number of sessions, time-wait ones included.
func (t *Table) Len() int { return len(t.sessions) }

// Shed makes the table refuse (true) or accept (false) new sessions, for
// tcpcopy's memory budget (-m). Refused sessions are counted as failed
// with ReasonShed.
func (t *Table) Shed(on bool) { t.shed = on }

// Overload makes the table refuse (true) or accept (false) new sessions
// because its owner is backed up; refused sessions count as failed with
// ReasonOverload.
func (t *Table) Overload(on bool) { t.overload = on }

// Stats returns the table's counters.
func (t *Table) Stats() Stats {
	st := t.stats
	st.Active = 0
	for _, s := range t.sessions {
		if s.state != stateTimeWait {
			st.Active++
		}
	}
	st.QueuedSegments = t.segs.used
	return st
}

// oweAck makes s send a pure ACK at the end of the batch unless a
// segment sent before then carries the acknowledgement: a target's data
// and its FIN, or a SYN-ACK and the first request, then take one packet
// instead of two, as with a real client's delayed acknowledgements, but
// without delaying anything past the batch.
func (t *Table) oweAck(s *session) {
	if !s.ackOwed {
		s.ackOwed = true
		t.owed = append(t.owed, s)
	}
}

// Flush ends a batch of Client and Response calls: it sends the pure
// acknowledgements still owed. The caller must call it after every
// batch, before waiting for more input; a batch may be a single call.
func (t *Table) Flush(now int64) {
	t.flushOwed(now)
	if len(t.successors) > 0 {
		t.startSuccessors(now)
		t.flushOwed(now)
	}
}

func (t *Table) flushOwed(now int64) {
	for i, s := range t.owed {
		t.owed[i] = nil
		// A session freed and reused in the batch starts with ackOwed
		// clear; one in time-wait still acknowledges the target's FIN.
		if !s.ackOwed || s.freed || s.tomb || (s.state != stateEstablished && s.state != stateTimeWait) {
			s.ackOwed = false
			continue
		}
		t.emit(s, now, ipmangle.ACK, s.sndNxt, nil)
	}
	t.owed = t.owed[:0]
}

// NextDeadline returns the earliest time at which Tick has work, or 0 if
// no session has a timer.
func (t *Table) NextDeadline() int64 {
	d := int64(0)
	if len(t.timers) > 0 {
		d = t.timers[0].deadline
	}
	if len(t.successors) > 0 {
		if w := t.successorDeadline(); d == 0 || w < d {
			d = w
		}
	}
	return d
}

// Tick runs every timer due at now.
func (t *Table) Tick(now int64) {
	if len(t.dead) > 0 && now-t.swept > int64(time.Second) {
		t.swept = now
		for k, d := range t.dead {
			if d.until <= now {
				delete(t.dead, k)
			}
		}
	}
	for len(t.timers) > 0 && t.timers[0].deadline <= now {
		s := t.timers[0]
		s.deadline = 0
		t.timers.remove(s)
		t.onTimer(s, now)
		if !s.freed {
			t.schedule(s)
			if s.heapIdx >= 0 && s.deadline <= now {
				// A timer that did not move would spin here: push it
				// forward (a bug guard; no test reaches it).
				s.deadline = now + ms
				t.timers.fix(s)
			}
		}
	}
}

// CloseAll ends every session at once, sending RST to the target for
// those still open (tcpcopy exiting). Their outcome reason is
// ReasonStopped.
func (t *Table) CloseAll(now int64) {
	clear(t.successors) // connections still waiting for their 4-tuple are not started
	t.succBytes = 0
	for _, s := range t.sessions {
		if s.state == stateTimeWait {
			t.free1(s, true)
			continue
		}
		t.finish(s, now, ReasonStopped, true)
	}
}

// Client handles one captured client packet of session k: pkt is the
// packet (its addresses are not looked at: k says who it is for) and p its
// decoding. Segments longer than the MTU must have been split by the
// caller. It does not allocate in the steady state.
func (t *Table) Client(now int64, k Key, pkt []byte, p *ipmangle.Parsed) {
	t.stats.ClientPackets++
	sk := packKey(k)
	s := t.sessions[sk]
	if len(t.successors) > 0 {
		if c := t.successors[sk]; c != nil && t.toSuccessor(c, pkt, p) {
			return
		}
	}
	if s == nil && len(t.dead) > 0 {
		if d, ok := t.dead[sk]; ok {
			if now < d.until && (p.Flags&ipmangle.SYN == 0 || p.Flags&ipmangle.ACK != 0) {
				t.stats.Drops[DropClosed]++
				t.uncopy(&d.acct, d.reason, p)
				d.until = now + int64(tombTime)
				t.dead[sk] = d
				return
			}
			delete(t.dead, sk) // expired, or a new connection
		}
	}
	switch {
	case p.Flags&ipmangle.SYN != 0 && p.Flags&ipmangle.ACK == 0:
		if s != nil && (s.state != stateTimeWait || s.tomb) && s.isn == seqnum.Value(p.Seq) {
			// The client retransmitted its SYN (to a live session, or to
			// one that failed: the connection stays given up).
			t.stats.Drops[DropDuplicateSYN]++
			return
		}
		if s != nil {
			// A new connection on the same 4-tuple (port reuse). The route
			// stays: the new session announces it again at once.
			if s.state != stateTimeWait {
				t.stats.PortReuse++
				if s.pending() && t.wait(s, now, k, pkt, p) {
					// The old one still owes the target part of its
					// stream: the new one waits (successor.go).
					return
				}
				t.finish(s, now, ReasonReplaced, true)
			}
			t.free1(s, false)
		}
		t.open(now, sk, p, true)
		return
	case s != nil && s.state == stateTimeWait && s.tomb && t.retryTomb(s, now, p):
		// A new request on a connection whose copy was given up (say the
		// target was restarted): copy it again, from this request on.
		t.free1(s, false)
		if s = t.open(now, sk, p, false); s == nil {
			return
		}
	case s != nil && s.state == stateTimeWait:
		// The connection was copied to its end, or given up: its late
		// packets (retransmissions, the rest of a failed request) must not
		// open a session of their own. A failed session stays a tombstone
		// while its client keeps sending.
		t.stats.Drops[DropClosed]++
		if s.tomb {
			t.uncopyTomb(s, p) // the data of a connection given up is lost
			s.stateAt = now + int64(tombTime)
			t.schedule(s)
		}
		return
	case s == nil:
		if p.Flags&ipmangle.RST != 0 || p.PayloadLen == 0 {
			// A handshake ACK, a pure ACK or a FIN of a connection we do
			// not copy (it began before we started, or was not sampled).
			t.stats.Drops[DropNoSession]++
			return
		}
		if t.cfg.OnlyFullSessions {
			t.stats.Drops[DropNoSYN]++
			d := deadConn{until: now + int64(tombTime), reason: ReasonNoSYN}
			d.acct.end = seqnum.Value(p.Seq) // counted from this packet on
			t.uncopy(&d.acct, ReasonNoSYN, p)
			t.dead[sk] = d
			return
		}
		s = t.open(now, sk, p, false)
		if s == nil {
			return
		}
	}
	t.clientPacket(s, now, pkt, p)
	if !s.freed {
		t.schedule(s)
	}
}

// deadConn is a connection no session copies (refused when it opened, or
// without SYN under OnlyFullSessions): its packets are dropped until
// until, which each of them moves on, and counted as uncopied.
type deadConn struct {
	until  int64
	reason Reason
	acct   uncopied
}

// uncopied follows what of a connection's client stream was counted as
// uncopied (Stats.UncopiedBytes), so that retransmissions count once:
// the stream is counted up to end, and ack is its latest request's.
type uncopied struct {
	end    seqnum.Value
	ack    seqnum.Value
	ackSet bool
}

// uncopy counts the payload of client packet p beyond u.end as uncopied
// for reason, and p as a new request if its acknowledgement moved past
// the latest one.
func (t *Table) uncopy(u *uncopied, reason Reason, p *ipmangle.Parsed) {
	if p.PayloadLen == 0 {
		return
	}
	seq := seqnum.Value(p.Seq)
	end := seq.Add(seqnum.Size(p.PayloadLen))
	if !u.end.LessThan(end) {
		return // a retransmission of what was counted
	}
	n := p.PayloadLen
	if seq.LessThan(u.end) {
		n = int(end.Sub(u.end))
	}
	u.end = end
	t.stats.UncopiedBytes[reason] += uint64(n)
	if ack := seqnum.Value(p.Ack); p.Flags&ipmangle.ACK != 0 && (!u.ackSet || u.ack.LessThan(ack)) {
		u.ack, u.ackSet = ack, true
		t.stats.UncopiedRequests[reason]++
	}
}

// uncopyTomb counts client packet p of the failed session s, a
// tombstone, as uncopied under the reason its session ended. The
// tombstone's finSeq and reqAck follow what was counted.
func (t *Table) uncopyTomb(s *session, p *ipmangle.Parsed) {
	u := uncopied{end: s.finSeq, ack: s.reqAck, ackSet: s.reqAckSet}
	t.uncopy(&u, s.endReason, p)
	s.finSeq, s.reqAck, s.reqAckSet = u.end, u.ack, u.ackSet
}

// retryTomb reports whether client packet p of the given-up session s
// starts a new request (its ack moved past every request seen so far: the
// online server answered in between) at least tombRetry after the failure.
// Continuing mid-request would send the target a torn request; retrying on
// every packet would fail once per packet while the target is down.
func (t *Table) retryTomb(s *session, now int64, p *ipmangle.Parsed) bool {
	return !s.rewritten && p.PayloadLen > 0 && p.Flags&(ipmangle.SYN|ipmangle.RST) == 0 && p.Flags&ipmangle.ACK != 0 &&
		s.reqAckSet && s.reqAck.LessThan(seqnum.Value(p.Ack)) && now-s.lastTarget >= int64(tombRetry) &&
		!t.cfg.OnlyFullSessions
}

// Response handles the header of one target response to session k,
// received through intercept: hdr holds the IP and TCP headers (p is its
// decoding) and payloadLen is the real length of the response's payload,
// which intercept stripped.
func (t *Table) Response(now int64, k Key, p *ipmangle.Parsed, payloadLen int) {
	t.stats.Responses++
	s := t.sessions[packKey(k)]
	if s == nil {
		t.stats.Drops[DropResponseNoSession]++
		return
	}
	t.response(s, now, p, payloadLen)
	if !s.freed {
		t.schedule(s)
	}
}

// schedule puts s in the timer heap at its earliest deadline.
func (t *Table) schedule(s *session) {
	d := s.nextDeadline(&t.cfg)
	switch {
	case d == 0 && s.heapIdx >= 0:
		t.timers.remove(s)
	case d != 0 && s.heapIdx < 0:
		s.deadline = d
		t.timers.push(s)
	case d != 0 && d != s.deadline:
		s.deadline = d
		t.timers.fix(s)
	}
}
