package tcpstate

import (
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/seqnum"
	"net/netip"
)

// state is a session's place in its life.
type state uint8

const (
	stateWaitRoute   state = iota // no intercept link was up: waiting to announce the route
	stateSynSent                  // our SYN is out, waiting for the SYN-ACK
	stateEstablished              // data flows
	stateReconnect                // the target closed early: waiting to send a new SYN
	stateTimeWait                 // finished; lingering to answer the target's late packets
)

var stateNames = [...]string{"wait-route", "syn-sent", "established", "reconnect", "time-wait"}

func (s state) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// Timing constants (nanoseconds).
const (
	ms           = int64(1e6)
	minRTO       = 100 * ms // C TCPCopy's fixed RTO; Linux uses 200 ms
	maxRTO       = 60_000 * ms
	initialRTO   = 1000 * ms // RFC 6298 (2.1) for the SYN
	routeRetry   = 50 * ms
	tombTime     = 10 * 1000 * ms // how long a failed session's packets are dropped after the last one
	tombRetry    = 1000 * ms      // a new request on a failed connection is copied again after this
	minQuiet     = 2 * ms
	ourWScale    = 7     // window scale we announce: window 65535 << 7 = 8 MiB
	ourWindow    = 65535 // window field of every packet we send
	maxBackoff   = 10
	dupAckThresh = 3
)

// SYN retransmission timeouts (synRTO).
const (
	// minSYNRTO: Linux answers a retransmitted SYN with its SYN-ACK again
	// at most every 500 ms (tcp_invalid_ratelimit); SYNs at 0, 250 ms and
	// 750 ms get two answers at least.
	minSYNRTO = 250 * ms
	// firstSYNRTO is the SYN's timeout before any handshake was timed:
	// half of RFC 6298's 1 s, so that three SYNs fit in the handshake
	// timeout (0, 0.5 s, 1.5 s within 3 s). The target of a copy is
	// usually near; a SYN sent again too early costs one packet.
	firstSYNRTO = 500 * ms
)

// segment is one queued piece of the captured client stream: data, or a
// FIN (n == 0 and fin set).
type segment struct {
	seq     seqnum.Value // client sequence number of the first byte
	ack     seqnum.Value // the client's ack (online server's space): marks requests
	psh     bool
	fin     bool
	n       int
	data    []byte // len == pool size; data[:n] is the payload
	sentAt  int64  // first transmission, 0 if unsent
	retrans bool   // retransmitted: no RTT sample (Karn)
	counted bool   // acknowledged once: its bytes are in the acked counts
	// msg: the payload starts an HTTP/1 request line, a boundary between
	// pipelined requests that share an acknowledgement number.
	msg bool
	// start: the first segment sent of a request (pump): holding an
	// unanswered request begins there (unanswered.go).
	start bool
}

func (g *segment) end() seqnum.Value {
	e := g.seq.Add(seqnum.Size(g.n))
	if g.fin {
		e++
	}
	return e
}

// segPool recycles segments of one size.
type segPool struct {
	size int
	free []*segment
	used int
}

func (p *segPool) get() *segment {
	p.used++
	if n := len(p.free); n > 0 {
		g := p.free[n-1]
		p.free[n-1] = nil
		p.free = p.free[:n-1]
		return g
	}
	return &segment{data: make([]byte, p.size)}
}

func (p *segPool) put(g *segment) {
	p.used--
	data := g.data
	*g = segment{data: data}
	if len(p.free) < 4096 {
		p.free = append(p.free, g)
	}
}

// session is one copied client connection.
type session struct {
	key skey
	// Small fields fill the padding after key (the struct must stay within
	// 384 bytes, a malloc size class: TestSessionSize).
	ipID   uint16
	state  state
	wscale uint8
	// The client stream toward the target: sorted by seq, not
	// overlapping; the first nheld segments are acknowledged but held
	// (unanswered.go), the unacknowledged ones follow.
	queue []*segment

	// Times (Unix nanoseconds; 0 when off). deadline is the session's
	// place in the timer heap.
	deadline   int64
	lastClient int64 // last captured packet
	lastTarget int64 // last response
	// synSentAt is when the current handshake began: our SYN, or the wait
	// for an intercept link (wait-route).
	synSentAt int64
	rtoAt     int64
	paceAt    int64
	gapAt     int64
	// stateAt is the timer of the state: the next route attempt
	// (wait-route), the new SYN (reconnect), the end of time-wait, and in
	// established the limit for the target to close after it acknowledged
	// our FIN.
	stateAt int64
	// progressAt is when the session last made progress (the target
	// acknowledged new bytes, or there was nothing to deliver): a session
	// with data pending and no progress for Config.StallTimeout while the
	// target keeps answering has stalled.
	progressAt int64
	ackAt      int64 // a delayed ACK is due (Config.AckDelay)
	reqSentAt  int64
	lastRespAt int64
	respBytes  int64

	// Round-trip time (RFC 6298), nanoseconds.
	srtt, rttvar, rto int64

	capturedBytes uint64
	ackedBytes    uint64

	lat reqTiming // response times (latency.go)

	isn        seqnum.Value // SYN sequence number of the current connection
	sndUna     seqnum.Value
	sndNxt     seqnum.Value
	finSeq     seqnum.Value
	onlineBase seqnum.Value // online server's ISN+1, from the client's handshake ACK
	rcvNxt     seqnum.Value
	recover    seqnum.Value // fast retransmit done up to here
	reqAck     seqnum.Value
	sndWnd     uint32
	tsRecent   uint32
	heapIdx    int32
	next       int32 // index in queue of the first unsent segment
	// queueBytes is the memory the queue holds: the buffer of every
	// segment, whatever its payload (Config.MaxQueueBytes bounds it).
	queueBytes int32
	// maxSeg is the largest payload of a segment we send: what the
	// target's MSS and the path MTU take with our headers as built
	// (maxSegment).
	maxSeg uint16
	// nheld counts the acknowledged segments of the current request held
	// at the front of the queue until the target answers (unanswered.go).
	nheld uint8

	dupAcks    uint8
	backoff    uint8
	reconnects uint8 // in a row, without the target acknowledging anything new
	// endReason is why a tombstone's session ended: its client's later
	// data is counted as uncopied under it.
	endReason Reason

	freed       bool
	tomb        bool // finished unsuccessfully: the client's packets are dropped
	synCaptured bool
	haveBase    bool
	finQueued   bool
	finAcked    bool
	rstPending  bool
	tsOK        bool
	targetFin   bool
	reqAckSet   bool
	waiting     bool
	ackOwed     bool // a pure ACK is due at the end of the batch (Table.Flush)
	reqCounted  bool // the current request's first data segment was counted
	handshaking bool // counted in Table.handshakes
	staleReset  bool // a stale ACK to our SYN was reset and the SYN sent again
	heldOff     bool // the current request is not held: too big, or sent again already
	answered    bool // the target sent data since the current request went
	http        bool // the client sends HTTP/1 requests (segment.msg)
	rewritten   bool // a protocol layer rewrote the stream (rewritten.go)
}

// finSent reports whether our FIN has gone out.
func (s *session) finSent() bool {
	if s.finAcked {
		return true
	}
	for _, g := range s.queue {
		if g.fin && g.sentAt != 0 {
			return true
		}
	}
	return false
}

// pending reports captured data or a FIN not yet acknowledged.
func (s *session) pending() bool { return len(s.queue) > int(s.nheld) }

// pendingData reports captured payload not yet acknowledged, or
// acknowledged and held because the target has not answered it yet.
func (s *session) pendingData() bool {
	for _, g := range s.queue {
		if g.n > 0 {
			return true
		}
	}
	return false
}

func (s *session) inflight() bool { return s.sndNxt != s.sndUna }

// nextDeadline is the earliest of the session's timers, 0 if none.
func (s *session) nextDeadline(cfg *Config) int64 {
	d := int64(0)
	at := func(t int64) {
		if t != 0 && (d == 0 || t < d) {
			d = t
		}
	}
	at(s.rtoAt)
	at(s.paceAt)
	at(s.gapAt)
	at(s.stateAt)
	at(s.ackAt)
	switch s.state {
	case stateSynSent:
		at(s.synSentAt + int64(cfg.HandshakeTimeout))
	case stateEstablished:
		// The time-outs move with every packet: rounded up to a second,
		// they rarely move the session in the timer heap.
		if s.pending() {
			at(roundUp(max(s.lastTarget, s.lastClient)+int64(cfg.SessionTimeout), 1000*ms))
		} else {
			at(roundUp(max(s.lastTarget, s.lastClient)+int64(cfg.IdleTimeout), 1000*ms))
		}
		if s.pending() && s.progressAt != 0 {
			at(s.progressAt + int64(cfg.StallTimeout))
		}
	}
	return d
}

// roundUp rounds t up to a multiple of unit.
func roundUp(t, unit int64) int64 {
	if r := t % unit; r != 0 {
		t += unit - r
	}
	return t
}

// open creates the session of k for packet p and starts its handshake
// (or waits for an intercept link). fromSYN says p is the client's SYN;
// otherwise p is a data packet of a connection whose SYN we did not see
// and our own SYN starts one byte before it.
func (t *Table) open(now int64, k skey, p *ipmangle.Parsed, fromSYN bool) *session {
	if reason := t.refusal(); reason != ReasonNone {
		// Refused by the memory budget or overload. A small tombstone (no
		// session) keeps the rest of the connection from being counted
		// again as a session; its data is counted as uncopied.
		d := deadConn{until: now + int64(tombTime), reason: reason}
		d.acct.end = seqnum.Value(p.Seq)
		if fromSYN {
			d.acct.end++
		}
		t.uncopy(&d.acct, reason, p)
		t.dead[k] = d
		t.stats.Closed[Failed][reason]++
		return nil
	}
	s := t.alloc()
	s.key = k
	s.heapIdx = -1
	s.isn = seqnum.Value(p.Seq)
	return t.start(s, now, p, fromSYN)
}

// refusal says why a new session must be refused now, or ReasonNone.
func (t *Table) refusal() Reason {
	switch {
	case t.shed:
		return ReasonShed
	case t.overload || t.handshakes >= t.cfg.MaxHandshakes:
		return ReasonOverload
	}
	return ReasonNone
}

// handshakeDone ends s's first handshake for the count MaxHandshakes
// bounds.
func (t *Table) handshakeDone(s *session) {
	if s.handshaking {
		s.handshaking = false
		t.handshakes--
	}
}

// alloc returns a zeroed session, reused when possible.
func (t *Table) alloc() *session {
	var s *session
	if n := len(t.free); n > 0 {
		s = t.free[n-1]
		t.free[n-1] = nil
		t.free = t.free[:n-1]
		q := s.queue[:0]
		*s = session{queue: q}
	} else {
		s = &session{}
	}
	return s
}

// bury turns s into a tombstone: finished, in time-wait, dropping the
// client's packets until tombTime passes without any.
func (t *Table) bury(s *session, now int64) {
	s.state = stateTimeWait
	s.tomb = true
	s.lastTarget = now // the time of the failure, for tombRetry
	s.stateAt = now + int64(tombTime)
	t.schedule(s)
}

// start sets a new session up and begins its handshake.
func (t *Table) start(s *session, now int64, p *ipmangle.Parsed, fromSYN bool) *session {
	k := s.key
	s.synSentAt = now
	s.handshaking = true
	t.handshakes++
	s.lastClient = now
	s.lastTarget = now
	s.synCaptured = fromSYN
	if !fromSYN {
		s.isn--
		t.stats.OpenedNoSYN++
	}
	s.sndUna = s.isn + 1
	s.sndNxt = s.isn + 1
	s.ipID = uint16(p.Seq ^ p.Seq>>16)
	s.rto = initialRTO
	if t.cfg.FixedRTT > 0 {
		s.srtt = int64(t.cfg.FixedRTT)
	}
	t.sessions[k] = s
	t.stats.Opened++
	if t.out.Route(k.key(), true) {
		t.sendSYN(s, now)
	} else {
		s.state = stateWaitRoute
		s.stateAt = now + routeRetry
	}
	t.schedule(s)
	return s
}

// sendSYN starts (or restarts) the handshake.
func (t *Table) sendSYN(s *session, now int64) {
	s.state = stateSynSent
	s.synSentAt = now
	s.backoff = 0
	s.rtoAt = now + t.synRTO()
	t.stats.SYNs++
	t.emitSYN(s, now)
}

// synRTO is the first retransmission timeout of a SYN: firstSYNRTO until
// a handshake was timed, then four handshake round trips, at least
// minSYNRTO and at most 1 s. The target is usually near and its answers
// come back through intercept within milliseconds; waiting RFC 6298's
// second per lost SYN or SYN-ACK would leave room for only two tries
// within the handshake timeout (3 s, as C TCPCopy), too few on a lossy
// path.
func (t *Table) synRTO() int64 {
	if t.hsRTT == 0 {
		return firstSYNRTO
	}
	return min(max(4*t.hsRTT, minSYNRTO), initialRTO)
}

func (t *Table) emitSYN(s *session, now int64) {
	f := ipmangle.Fields{
		Src: s.client(), Dst: s.target(),
		Seq: uint32(s.isn), Flags: ipmangle.SYN, Window: ourWindow,
		MSS: t.cfg.MSS, WScale: ourWScale, HasTS: true, TSVal: tsClock(now),
		ID: s.nextID(), DontFragment: true,
	}
	t.send(&f)
}

func (s *session) nextID() uint16 {
	s.ipID++
	return s.ipID
}

// tsClock is our timestamp clock: milliseconds (RFC 7323 §5.4 allows 1 ms
// to 1 s per tick), shared by every session so that TSval never goes
// backwards across reconnects on the same 4-tuple.
func tsClock(now int64) uint32 { return uint32(now / ms) }

// send encodes f into the table's buffer and hands it to the output.
func (t *Table) send(f *ipmangle.Fields) {
	if n := f.Encode(t.buf); n > 0 {
		t.out.Send(t.buf[:n])
	}
}

// emit sends a packet of the established connection: flags with ACK
// carrying our current acknowledgement, at seq, with payload.
func (t *Table) emit(s *session, now int64, flags ipmangle.TCPFlags, seq seqnum.Value, payload []byte) {
	f := ipmangle.Fields{
		Src: s.client(), Dst: s.target(),
		Seq: uint32(seq), Flags: flags, Window: ourWindow, WScale: -1,
		ID: s.nextID(), DontFragment: true, Payload: payload,
	}
	if flags&ipmangle.ACK != 0 {
		f.Ack = uint32(s.rcvNxt)
		s.ackOwed = false // this packet carries it
		s.ackAt = 0
	}
	if s.tsOK {
		f.HasTS, f.TSVal, f.TSEcr = true, tsClock(now), s.tsRecent
	}
	t.send(&f)
}

// clientPacket queues what a captured client packet carries and sends what
// may be sent.
func (t *Table) clientPacket(s *session, now int64, pkt []byte, p *ipmangle.Parsed) {
	s.lastClient = now
	if p.Flags&ipmangle.RST != 0 {
		s.rstPending = true
		t.pump(s, now)
		return
	}
	t.clientTiming(s, now, p) // latency.go
	seq := seqnum.Value(p.Seq)
	if !s.haveBase && s.synCaptured && p.Flags&ipmangle.ACK != 0 && p.PayloadLen == 0 &&
		p.Flags&ipmangle.FIN == 0 && seq == s.isn+1 {
		// The client's handshake ACK: it acknowledges the online server's
		// ISN, the base from which a greeting would be counted.
		s.onlineBase = seqnum.Value(p.Ack)
		s.haveBase = true
		if !s.reqAckSet {
			s.reqAckSet = true
			s.reqAck = s.onlineBase
			s.waiting = !t.cfg.NoWait
			s.reqSentAt = now
		}
	}
	if !s.pending() {
		// Nothing was waiting for the target: the wait for progress
		// starts with this packet's data, if any (stall.go).
		s.progressAt = now
	}
	payload := p.Payload(pkt)
	if len(payload) != p.PayloadLen {
		// The capture cut the packet: its bytes are lost to us, which the
		// gap logic handles like any capture loss.
		payload = nil
	}
	if len(payload) > 0 {
		if !t.enqueue(s, now, seq, seqnum.Value(p.Ack), payload, p.Flags&ipmangle.PSH != 0) {
			// The session failed: what this packet held and it did not
			// take is lost.
			t.uncopyTomb(s, p)
			return
		}
	}
	if p.Flags&ipmangle.FIN != 0 && len(payload) == p.PayloadLen {
		t.enqueueFIN(s, seq.Add(seqnum.Size(p.PayloadLen)), seqnum.Value(p.Ack))
	}
	if s.targetFin && s.state == stateEstablished && s.pendingData() {
		// The target closed the connection before the client was done.
		t.reconnect(s, now, true)
		return
	}
	t.pump(s, now)
}

// enqueue inserts payload at seq into the session's queue, dropping what is
// already queued or acknowledged. It reports false if the session failed.
func (t *Table) enqueue(s *session, now int64, seq, ack seqnum.Value, payload []byte, psh bool) bool {
	msgSeq, msg := seq, httpRequestStart(payload)
	if s.http && !msg {
		if c := findHTTPRequest(payload); c > 0 {
			// A pipelined request right after the end of a body, in one
			// captured packet: queued apart, so that it is paced.
			return t.enqueue(s, now, seq, ack, payload[:c], false) &&
				t.enqueue(s, now, seq.Add(seqnum.Size(c)), ack, payload[c:], psh)
		}
	}
	// Nothing before the first byte still needed.
	if d := seqnum.Overlap(seq, seqnum.Size(len(payload)), s.sndUna); d > 0 {
		if int(d) >= len(payload) {
			t.stats.Drops[DropDuplicate]++
			return true
		}
		payload = payload[d:]
		seq = seq.Add(d)
	}
	if s.finQueued {
		// Nothing may follow the client's FIN.
		if d := seqnum.Overlap(seq, seqnum.Size(len(payload)), s.finSeq); int(d) < len(payload) {
			payload = payload[:d]
		}
		if len(payload) == 0 {
			t.stats.Drops[DropDuplicate]++
			return true
		}
	}
	// Find the insertion point: after every segment that starts before seq.
	// Captured data usually arrives in order, so search from the end.
	i := len(s.queue)
	for i > 0 && seq.LessThan(s.queue[i-1].seq) {
		i--
	}
	added := false
	for len(payload) > 0 {
		if i > 0 {
			// Drop what the previous segment already holds.
			prev := s.queue[i-1]
			d := seqnum.Overlap(seq, seqnum.Size(len(payload)), prev.seq.Add(seqnum.Size(prev.n)))
			if int(d) >= len(payload) {
				break
			}
			payload = payload[d:]
			seq = seq.Add(d)
		}
		if i < len(s.queue) && s.queue[i].seq.LessThanEq(seq) {
			// The next queued segment starts here: step over it; the trim
			// above cuts what it covers on the next round.
			if s.queue[i].fin {
				break // data after the client's FIN is bogus
			}
			i++
			continue
		}
		if i == len(s.queue) && i > int(s.next) {
			// More of the request the last segment, not sent yet, holds:
			// fill its buffer first, so that a client writing a few bytes
			// at a time does not take a buffer per write.
			prev := s.queue[i-1]
			if !prev.fin && prev.ack == ack && prev.end() == seq && prev.n < len(prev.data) && !(msg && seq == msgSeq) {
				n := copy(prev.data[prev.n:], payload)
				prev.n += n
				prev.psh = prev.psh || psh
				s.capturedBytes += uint64(n)
				t.stats.CapturedBytes += uint64(n)
				added = true
				payload = payload[n:]
				seq = seq.Add(seqnum.Size(n))
				continue
			}
		}
		n := len(payload)
		if i < len(s.queue) {
			if gap := int(s.queue[i].seq.Sub(seq)); gap < n {
				n = gap
			}
		}
		n = min(n, t.segs.size)
		isMsg := msg && seq == msgSeq
		if isMsg {
			if c := nextHTTPRequest(payload[:n]); c > 0 {
				// Pipelined requests in one captured packet (written at
				// once, or merged by GRO): a segment each.
				n = c
				msgSeq = seq.Add(seqnum.Size(c))
			}
		}
		if int(s.queueBytes)+t.segs.size > t.cfg.MaxQueueBytes {
			t.finish(s, now, ReasonBufferFull, true)
			return false
		}
		g := t.segs.get()
		g.seq, g.ack, g.psh, g.n = seq, ack, psh, n
		g.msg = isMsg
		s.http = s.http || isMsg
		copy(g.data, payload[:n])
		t.insertAt(s, i, g)
		s.queueBytes += int32(t.segs.size)
		s.capturedBytes += uint64(n)
		t.stats.CapturedBytes += uint64(n)
		added = true
		payload = payload[n:]
		seq = seq.Add(seqnum.Size(n))
		i++
	}
	if !added {
		t.stats.Drops[DropDuplicate]++
	}
	return true
}

func (t *Table) insertAt(s *session, i int, g *segment) {
	s.queue = append(s.queue, nil)
	copy(s.queue[i+1:], s.queue[i:])
	s.queue[i] = g
	if i < int(s.next) {
		s.next++
	}
}

// enqueueFIN queues the client's FIN at seq once.
func (t *Table) enqueueFIN(s *session, seq, ack seqnum.Value) {
	if s.finQueued || seq.LessThan(s.sndUna) {
		return
	}
	if n := len(s.queue); n > 0 && seq.LessThan(s.queue[n-1].end()) {
		return // a FIN before data we already hold is bogus
	}
	g := t.segs.get()
	g.seq, g.ack, g.fin = seq, ack, true
	t.insertAt(s, len(s.queue), g)
	s.queueBytes += int32(t.segs.size)
	s.finQueued = true
	s.finSeq = seq
}

// pump sends the queued segments that may go now: in sequence, within the
// target's window, and paced by the target's responses.
func (t *Table) pump(s *session, now int64) {
	if s.state != stateEstablished {
		return
	}
	s.paceAt = 0
	for int(s.next) < len(s.queue) {
		g := s.queue[s.next]
		if g.seq != s.sndNxt {
			// A hole in the captured stream (or leftovers of an earlier
			// connection): wait for the client's retransmission.
			if s.gapAt == 0 {
				s.gapAt = now + int64(t.cfg.GapTimeout)
			}
			break
		}
		s.gapAt = 0
		newReq := !s.reqAckSet || s.reqAck.LessThan(g.ack)
		if newReq && s.waiting && !t.responseDone(s, g.ack, now) {
			break
		}
		// A pipelined request: the client sent it before the answer to
		// the one before, with the same acknowledgement number.
		pipelined := !newReq && g.msg && s.reqCounted && s.sndNxt != s.isn+1
		if pipelined && s.waiting && !t.pipelinedDone(s, now) {
			break
		}
		if g.n > int(s.maxSeg) && !t.fit(s, int(s.next), now) {
			return // the session failed
		}
		if g.n > 0 && (s.sndWnd == 0 || s.inflight() && uint32(s.sndNxt.Sub(s.sndUna))+uint32(g.n) > s.sndWnd) {
			// The target's window is full; its next ACK resumes us. A
			// zero window is probed by the retransmission timer.
			if s.rtoAt == 0 {
				s.rtoAt = now + s.rto
			}
			break
		}
		if newReq || pipelined {
			t.release(s) // the request before was answered, or waited for long enough
			s.heldOff, s.answered = false, false
			s.reqSentAt = now
			g.start = true
		} else if s.reqSentAt == 0 && g.n > 0 {
			s.reqSentAt = now // the request goes again on a new connection
		}
		if newReq {
			s.reqAckSet = true
			s.reqAck = g.ack
			s.waiting = !t.cfg.NoWait
			s.respBytes = 0
			s.reqCounted = false
		}
		if g.n > 0 && !s.reqCounted {
			s.reqCounted = true
			t.stats.Requests++
			s.requestSent(now, g.ack) // latency.go
			t.out.Request(s.key.key(), uint32(g.ack), now)
		}
		t.sendSegment(s, g, now)
		g.sentAt = now
		s.sndNxt = g.end()
		s.next++
		t.stats.SegmentsSent++
		if s.rtoAt == 0 {
			s.rtoAt = now + s.currentRTO()
		}
	}
	if s.rstPending && !s.pending() {
		t.finish(s, now, ReasonClientRST, true)
	}
}

// responseDone reports whether the target's response to the current
// request has ended, so that the request whose segments carry ack may go.
// If not, it arms the pacing timer.
func (t *Table) responseDone(s *session, ack seqnum.Value, now int64) bool {
	// The online server sent expected bytes between the two requests; a
	// target running the same code sends as many. (expected counts the
	// online server's FIN if the client acknowledged it; a target that
	// closed has sent all it will.)
	if s.targetFin {
		return true // a target that closed has sent all it will
	}
	if t.answerPending(s, now) {
		return false
	}
	if expected := int64(ack.Sub(s.reqAck)); s.respBytes >= expected {
		return true
	}
	quiet := max(2*s.srtt, minQuiet)
	quiet = min(quiet, int64(t.cfg.ResponseWait))
	limit := s.reqSentAt + int64(t.cfg.ResponseWait)
	if s.answered {
		// The answer to the latest request sent (a pipelined one too)
		// started: it ends when the target goes quiet.
		limit = min(limit, s.lastRespAt+quiet)
	}
	if now >= limit {
		return true
	}
	s.paceAt = limit
	return false
}

func (t *Table) sendSegment(s *session, g *segment, now int64) {
	flags := ipmangle.ACK
	if g.psh {
		flags |= ipmangle.PSH
	}
	if g.fin {
		flags |= ipmangle.FIN
	}
	t.emit(s, now, flags, g.seq, g.data[:g.n])
}

func (s *session) currentRTO() int64 {
	r := s.rto << s.backoff
	if r > maxRTO || r <= 0 {
		r = maxRTO
	}
	return r
}

// sampleRTT updates the estimator with one measurement (RFC 6298 §2).
func (s *session) sampleRTT(r int64, fixed bool) {
	if fixed || r <= 0 {
		return
	}
	if s.srtt == 0 {
		s.srtt, s.rttvar = r, r/2
	} else {
		d := s.srtt - r
		if d < 0 {
			d = -d
		}
		s.rttvar = (3*s.rttvar + d) / 4
		s.srtt = (7*s.srtt + r) / 8
	}
	s.rto = min(max(s.srtt+max(4*s.rttvar, ms), minRTO), maxRTO)
}

// client and target return the session's endpoints.
func (s *session) client() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(s.key.client).Unmap(), s.key.cport)
}

func (s *session) target() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(s.key.target).Unmap(), s.key.tport)
}
