package tcpstate

import (
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/seqnum"
)

// response handles one target packet header for s.
func (t *Table) response(s *session, now int64, p *ipmangle.Parsed, payloadLen int) {
	s.lastTarget = now
	seq, ack := seqnum.Value(p.Seq), seqnum.Value(p.Ack)
	switch s.state {
	case stateSynSent:
		t.responseSynSent(s, now, p, seq, ack)
		return
	case stateTimeWait:
		// Late retransmissions of the target's FIN or data: acknowledge
		// them again so the target can finish (not for a session we reset).
		if !s.tomb && p.Flags&ipmangle.RST == 0 && (payloadLen > 0 || p.Flags&ipmangle.FIN != 0) {
			t.emit(s, now, ipmangle.ACK, s.sndNxt, nil)
		}
		return
	case stateEstablished:
	default:
		// Waiting for a route or to reconnect: leftovers of an old
		// connection.
		t.stats.Drops[DropResponseIgnored]++
		return
	}
	if p.Flags&ipmangle.RST != 0 {
		// Accept a reset whose sequence number is in the window we
		// advertised (RFC 5961 would want it exact; the target only sends
		// it for this connection, and intercept filters by 4-tuple).
		if seq.InWindow(s.rcvNxt, seqnum.Size(ourWindow)<<ourWScale) || seq == s.rcvNxt {
			t.targetClosed(s, now, true)
		} else {
			t.stats.Drops[DropResponseIgnored]++
		}
		return
	}
	if p.Flags&ipmangle.SYN != 0 {
		// A retransmitted SYN-ACK: our handshake ACK was lost.
		t.emit(s, now, ipmangle.ACK, s.sndNxt, nil)
		return
	}
	if p.Flags&ipmangle.ACK != 0 {
		t.ackReceived(s, now, p, ack, payloadLen)
		if s.freed || s.state != stateEstablished {
			return // a split to retransmit failed the session
		}
	}
	if s.tsOK && p.HasTS() {
		s.tsRecent = p.TSVal
	}
	owe, quick := false, false
	if payloadLen > 0 || p.Flags&ipmangle.FIN != 0 {
		end := seq.Add(seqnum.Size(payloadLen))
		if p.Flags&ipmangle.FIN != 0 {
			end++
		}
		if s.rcvNxt.LessThan(end) {
			// New bytes. A hole before seq means intercept lost a record;
			// we do not need the data, so we acknowledge past it rather
			// than let the target retransmit forever.
			from := seqnum.Max(seq, s.rcvNxt)
			n := int64(end.Sub(from))
			if p.Flags&ipmangle.FIN != 0 {
				n--
			}
			if n > 0 {
				t.release(s) // the target answered
				s.answered = true
				s.respBytes += n
				s.lastRespAt = now
				t.stats.ResponseBytes += uint64(n)
				t.targetAnswered(s, now) // latency.go
			}
			s.rcvNxt = end
		} else {
			quick = true // a retransmission: our ACK was lost
		}
		owe = true
		if p.Flags&ipmangle.FIN != 0 {
			s.targetFin = true
		}
	}
	if s.targetFin {
		switch {
		case s.finAcked:
			// Both sides closed: done. The last ACK goes out from
			// time-wait, also when the target's FIN came before the
			// acknowledgement of ours and its ACK was being delayed.
			if owe || s.ackAt != 0 {
				t.oweAck(s)
			}
			t.finish(s, now, ReasonNone, false)
			return
		case s.pendingData():
			// The target closed before the client was done (a keep-alive
			// connection it ended earlier than the online server did).
			t.reconnect(s, now, true)
			return
		}
	}
	if owe {
		switch {
		case quick || t.cfg.AckDelay <= 0 || payloadLen >= 2*int(t.cfg.MSS) || s.ackAt != 0 && payloadLen >= int(t.cfg.MSS) ||
			s.targetFin && s.finSent():
			// At once: a retransmission, two full segments in one, a
			// full segment after one already waiting (RFC 9293 §3.8.6.3:
			// an ACK at least every second full-sized segment), or the
			// target's FIN after ours (as Linux does in FIN-WAIT).
			t.oweAck(s) // unless a segment pump sends now carries it
		case s.ackAt == 0:
			s.ackAt = now + int64(t.cfg.AckDelay)
		}
	}
	t.pump(s, now)
}

// responseSynSent handles the answer to our SYN.
func (t *Table) responseSynSent(s *session, now int64, p *ipmangle.Parsed, seq, ack seqnum.Value) {
	if p.Flags&ipmangle.ACK == 0 {
		t.stats.Drops[DropResponseIgnored]++
		return
	}
	if ack != s.isn+1 {
		if p.Flags&ipmangle.RST == 0 {
			// An acknowledgement of an earlier connection on the
			// 4-tuple: the target still holds it (our last ACK was
			// lost, or it never got one) and answered our SYN with a
			// challenge ACK. Reset it, as RFC 9293 §3.10.7.3 says
			// (<SEQ=SEG.ACK><CTL=RST>), and send the SYN again at once,
			// the first time, rather than after a second.
			t.emit(s, now, ipmangle.RST, ack, nil)
			if !s.staleReset {
				s.staleReset = true
				t.stats.SYNRetransmits++
				t.emitSYN(s, now)
			}
		}
		t.stats.Drops[DropResponseIgnored]++
		return
	}
	if p.Flags&ipmangle.RST != 0 {
		// Connection refused: the port is closed on the target.
		t.finish(s, now, ReasonTargetRST, false)
		return
	}
	if p.Flags&ipmangle.SYN == 0 {
		t.stats.Drops[DropResponseIgnored]++
		return
	}
	s.state = stateEstablished
	t.handshakeDone(s)
	t.stats.SYNAcks++
	s.rcvNxt = seq + 1
	s.sndUna, s.sndNxt = s.isn+1, s.isn+1
	s.recover = s.sndUna // not in loss recovery
	s.wscale = 0
	if p.WScale >= 0 {
		s.wscale = uint8(p.WScale)
	}
	s.sndWnd = uint32(p.Window) // not scaled in a SYN-ACK (RFC 7323 §2.2)
	s.tsOK = p.HasTS()
	s.tsRecent = p.TSVal
	t.setMaxSeg(s, p.MSS)
	s.progressAt = now
	if s.backoff == 0 && !s.staleReset {
		// Timed only without a retransmission (Karn).
		r := now - s.synSentAt
		s.sampleRTT(r, t.cfg.FixedRTT > 0)
		if t.hsRTT == 0 {
			t.hsRTT = r
		} else {
			t.hsRTT = (7*t.hsRTT + r) / 8
		}
	}
	s.backoff = 0
	s.rtoAt = 0
	s.respBytes = 0
	// The handshake's ACK rides on the first request segment if that is
	// queued already; a pure ACK otherwise.
	t.oweAck(s)
	t.pump(s, now)
}

// ackReceived processes the acknowledgement and window of a target packet.
func (t *Table) ackReceived(s *session, now int64, p *ipmangle.Parsed, ack seqnum.Value, payloadLen int) {
	wnd := uint32(p.Window) << s.wscale
	if s.sndNxt.LessThan(ack) {
		// Acknowledges data we never sent: a stale packet.
		t.stats.Drops[DropResponseIgnored]++
		return
	}
	switch {
	case s.sndUna.LessThan(ack):
		t.advance(s, now, ack)
		s.dupAcks = 0
		s.backoff = 0
		s.rtoAt = 0
		if s.inflight() {
			s.rtoAt = now + s.currentRTO()
			switch g := s.firstUnacked(); {
			case g == nil:
			case g.n > int(s.maxSeg):
				// Sent before the segment size shrank (segsize.go): too
				// big for the path, so lost. Send it again at once.
				t.stats.Retransmits += uint64(t.retransmitFirst(s, now))
			case s.sndUna.LessThan(s.recover):
				// A partial acknowledgement during loss recovery: the
				// retransmission filled a hole and the target holds what
				// followed up to the next hole, which is lost too. Send
				// it at once rather than after a timeout (NewReno, RFC
				// 6582 §3.2 step 5).
				t.stats.FastRetransmits += uint64(t.retransmitFirst(s, now))
			}
		}
	case ack == s.sndUna && payloadLen == 0 && p.Flags&ipmangle.FIN == 0 && s.inflight() && wnd == s.sndWnd:
		s.dupAcks++
		if s.dupAcks == dupAckThresh && s.recover.LessThan(s.sndUna.Add(1)) {
			// Fast retransmit (RFC 5681 §3.2), once per window of data.
			s.recover = s.sndNxt
			if n := t.retransmitFirst(s, now); n > 0 {
				t.stats.FastRetransmits += uint64(n)
			}
		}
	}
	s.sndWnd = wnd
}

// advance frees the segments the target acknowledged up to ack.
//
// The round trip is timed on the newest segment acknowledged, the one
// whose arrival made the target send the acknowledgement, and not at all
// when the acknowledgement covers a retransmission (Karn's algorithm, RFC
// 6298 §3): an acknowledgement that jumps over data the target held
// behind a hole would time that data from its first send, and such
// samples inflated the timeout to many seconds on a lossy path.
func (t *Table) advance(s *session, now int64, ack seqnum.Value) {
	n := 0
	sample, retrans := int64(0), false
	for _, g := range s.queue[s.nheld:] {
		if g.sentAt == 0 || ack.LessThan(g.end()) {
			break
		}
		if g.retrans {
			retrans = true
		} else if g.n > 0 {
			sample = now - g.sentAt
		}
		if !g.counted {
			g.counted = true
			s.ackedBytes += uint64(g.n)
			t.stats.AckedBytes += uint64(g.n)
		}
		n++
		if g.fin {
			s.finAcked = true
			if !s.targetFin {
				// The target has this long to close its side.
				s.stateAt = now + 2*int64(t.cfg.TimeWait)
			}
		}
	}
	if n > 0 {
		s.reconnects = 0 // the target took something new
		t.hold(s, n)
	}
	if !retrans && sample > 0 {
		s.sampleRTT(sample, t.cfg.FixedRTT > 0)
	}
	s.sndUna = ack
	s.progressAt = now
}

func (s *session) firstUnacked() *segment {
	if h := int(s.nheld); len(s.queue) > h && s.queue[h].sentAt != 0 {
		return s.queue[h]
	}
	return nil
}

// retransmitFirst sends s's first unacknowledged segment again, split to
// s.maxSeg if it has shrunk since (every piece goes), and returns the
// number of packets sent: 0 if there was none, or the split failed the
// session.
func (t *Table) retransmitFirst(s *session, now int64) int {
	g := s.firstUnacked()
	if g == nil {
		return 0
	}
	end := g.end()
	h := int(s.nheld)
	if !t.fit(s, h, now) {
		return 0
	}
	n := h
	for ; n < int(s.next) && s.queue[n].seq.LessThan(end); n++ {
		g := s.queue[n]
		t.sendSegment(s, g, now)
		g.retrans = true
	}
	return n - h
}

// targetClosed handles a RST from the target on an established
// connection.
func (t *Table) targetClosed(s *session, now int64, rst bool) {
	if s.pendingData() {
		t.reconnect(s, now, !rst)
		return
	}
	t.finish(s, now, ReasonTargetRST, false)
}

// reconnect resets the target's end of s and starts a new connection that
// carries the client data not yet acknowledged, as C TCPCopy does when the
// target closes a keep-alive connection early. A target that closes
// keep-alive connections on purpose (nginx after keepalive_requests, or
// when idle for keepalive_timeout) is followed for as long as the client
// keeps its connection; only MaxReconnects reconnects in a row without
// the target acknowledging anything new end the session
// (ReasonReconnects).
func (t *Table) reconnect(s *session, now int64, rst bool) {
	if s.rewritten {
		t.finish(s, now, ReasonTargetClosed, rst)
		return
	}
	if int(s.reconnects) >= t.cfg.MaxReconnects {
		t.finish(s, now, ReasonReconnects, rst)
		return
	}
	if rst {
		// The target closed with a FIN: reset its end (it waits in
		// FIN-WAIT-2 otherwise) so the 4-tuple is free for the new
		// connection.
		t.emit(s, now, ipmangle.RST|ipmangle.ACK, s.sndNxt, nil)
	}
	s.reconnects++
	t.stats.Reconnects++
	if s.nheld > 0 {
		// The target took the current request and closed without
		// answering it: it goes again on the new connection, once.
		t.stats.Unanswered++
		s.nheld = 0
		s.heldOff = true
	}
	for _, g := range s.queue {
		g.sentAt = 0
		g.retrans = false
	}
	s.next = 0
	s.isn = s.sndUna - 1
	if len(s.queue) > 0 && s.queue[0].seq.LessThan(s.sndUna) {
		s.isn = s.queue[0].seq - 1
	}
	s.sndUna, s.sndNxt = s.isn+1, s.isn+1
	s.targetFin = false
	s.staleReset = false
	s.tsOK = false
	s.dupAcks = 0
	s.recover = s.sndUna
	// The answer awaited went with the old connection: the next request
	// need not wait for it (responseDone), and what goes again of the
	// current one is timed from when it does (pump).
	s.reqSentAt = 0
	s.answered = false
	s.lat.tgAt = 0 // the request is sent again: no response time (latency.go)
	s.paceAt, s.gapAt, s.rtoAt, s.ackAt = 0, 0, 0, 0
	s.state = stateReconnect
	s.stateAt = now + max(s.srtt, ms)
}

// onTimer runs whatever timers of s are due at now.
func (t *Table) onTimer(s *session, now int64) {
	cfg := &t.cfg
	if s.state == stateTimeWait {
		if now >= s.stateAt {
			t.free1(s, true)
		}
		return
	}
	switch s.state {
	case stateWaitRoute:
		if now >= s.stateAt {
			if t.out.Route(s.key.key(), true) {
				s.stateAt = 0
				t.sendSYN(s, now)
			} else if now-s.synSentAt >= int64(cfg.RouteWait) {
				t.finish(s, now, ReasonNoIntercept, false)
			} else {
				s.stateAt = now + routeRetry
			}
		}
		return
	case stateReconnect:
		if now >= s.stateAt {
			s.stateAt = 0
			t.sendSYN(s, now)
		}
		return
	case stateSynSent:
		if now-s.synSentAt >= int64(cfg.HandshakeTimeout) {
			t.finish(s, now, ReasonNoSynAck, false)
			return
		}
		if s.rtoAt != 0 && now >= s.rtoAt {
			s.backoff = min(s.backoff+1, maxBackoff)
			s.rtoAt = now + t.synRTO()<<s.backoff
			t.stats.SYNRetransmits++
			t.emitSYN(s, now)
		}
		return
	}
	// Established.
	last := max(s.lastTarget, s.lastClient)
	if s.pending() && now-s.lastTarget >= int64(cfg.SessionTimeout) && now-last >= int64(cfg.SessionTimeout) {
		t.finish(s, now, ReasonTargetTimeout, true)
		return
	}
	if !s.pending() && now-last >= int64(cfg.IdleTimeout) {
		t.finish(s, now, ReasonIdle, true)
		return
	}
	if s.finAcked && !s.targetFin && s.stateAt != 0 && now >= s.stateAt {
		// Our FIN was acknowledged but the target never closed its side.
		t.finish(s, now, ReasonNone, true)
		return
	}
	if s.gapAt != 0 && now >= s.gapAt {
		t.finish(s, now, ReasonCaptureGap, true)
		return
	}
	if t.isStalled(s, now) {
		t.stall(s, now)
		return
	}
	if s.rtoAt != 0 && now >= s.rtoAt {
		s.rtoAt = 0
		if g := s.firstUnacked(); g != nil {
			t.blackhole(s, g)
			n := t.retransmitFirst(s, now)
			if n == 0 {
				return // the session failed
			}
			t.stats.Retransmits += uint64(n)
			s.backoff = min(s.backoff+1, maxBackoff)
			s.rtoAt = now + s.currentRTO()
			s.recover = s.sndNxt
		} else if int(s.next) < len(s.queue) && s.sndWnd == 0 {
			// Zero window: probe with an ACK below the window (RFC 9293
			// §3.8.6.1), which makes the target report its window.
			t.emit(s, now, ipmangle.ACK, s.sndNxt-1, nil)
			s.backoff = min(s.backoff+1, maxBackoff)
			s.rtoAt = now + s.currentRTO()
		}
	}
	if s.paceAt != 0 && now >= s.paceAt {
		s.paceAt = 0
	}
	t.pump(s, now)
	if s.ackAt != 0 && now >= s.ackAt && !s.freed && s.state == stateEstablished {
		t.emit(s, now, ipmangle.ACK, s.sndNxt, nil) // nothing carried it
	}
}

// finish ends s with reason, sending RST to the target if rst is set, and
// counts its outcome. A normally closed session lingers in time-wait.
func (t *Table) finish(s *session, now int64, reason Reason, rst bool) {
	if s.freed || s.state == stateTimeWait {
		return
	}
	t.handshakeDone(s)
	if rst && (s.state == stateEstablished || s.state == stateSynSent) {
		seq := s.sndNxt
		if s.state == stateSynSent {
			seq = s.isn + 1
		}
		t.emit(s, now, ipmangle.RST|ipmangle.ACK, seq, nil)
	}
	s.endReason = reason
	// From here on, a tombstone's finSeq is the end of the client stream
	// counted, captured or uncopied (Table.uncopy).
	s.finSeq = s.clientEnd()
	outcome := Failed
	switch {
	case s.capturedBytes > 0 && s.ackedBytes >= s.capturedBytes:
		outcome = Reproduced
	case s.ackedBytes > 0:
		outcome = Partial
	case s.capturedBytes == 0 && (reason == ReasonNone || reason == ReasonIdle || reason == ReasonStopped ||
		reason == ReasonClientRST || reason == ReasonReplaced) && s.state == stateEstablished:
		// A connection without request data that was set up fine.
		outcome = Reproduced
	}
	t.stats.Closed[outcome][reason]++
	for _, g := range s.queue {
		// Remember the newest request seen, so that a tombstone knows a
		// new one when it comes.
		if !s.reqAckSet || s.reqAck.LessThan(g.ack) {
			s.reqAckSet, s.reqAck = true, g.ack
		}
		t.segs.put(g)
	}
	clear(s.queue)
	s.queue = s.queue[:0]
	s.next, s.queueBytes = 0, 0
	s.rtoAt, s.paceAt, s.gapAt, s.stateAt, s.ackAt = 0, 0, 0, 0, 0
	switch reason {
	case ReasonNone, ReasonClientRST:
		s.state = stateTimeWait
		s.stateAt = now + int64(t.cfg.TimeWait)
		t.schedule(s)
	case ReasonIdle, ReasonStopped, ReasonReplaced:
		// Idle: the client may go on later, as a new session. Stopped,
		// replaced: gone at once.
		s.state = stateTimeWait
		t.free1(s, reason != ReasonReplaced)
	default:
		// Failed or given up: the rest of the connection is dropped, not
		// copied again as a session of its own.
		t.bury(s, now)
	}
}

// free1 forgets s and, if withdraw is set, withdraws its route (not when a
// new session takes over the same key at once).
func (t *Table) free1(s *session, withdraw bool) {
	if s.freed {
		return
	}
	t.handshakeDone(s)
	t.timers.remove(s)
	if t.sessions[s.key] == s {
		delete(t.sessions, s.key)
	}
	if withdraw {
		t.out.Route(s.key.key(), false)
	}
	for _, g := range s.queue {
		t.segs.put(g)
	}
	clear(s.queue)
	s.queue = s.queue[:0]
	s.freed = true
	if len(t.free) < 65536 {
		t.free = append(t.free, s)
	}
}
