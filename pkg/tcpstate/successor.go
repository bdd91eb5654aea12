package tcpstate

import (
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/seqnum"
)

// Port reuse.
//
// A client that closes after its server (HTTP with "Connection: close")
// has no TIME_WAIT and may open its next connection from the same port at
// once: in the lab 0.2 ms after the previous request. By then the previous
// session has usually not finished its copy (its request waits for the
// target's acknowledgement through intercept), and both connections have
// the same 4-tuple toward the target. The new connection is therefore held
// back, its packets kept in capture order, until the previous session's
// client stream (data and FIN) is acknowledged or the session ends, and
// then started. Unthrottled in the lab, a whole short connection (SYN,
// request, FIN) and the SYN of the next one often pass before the first
// SYN-ACK has come back.
// It waits at most successorWait, and at most successorMaxPackets packets
// or successorMaxBytes bytes; past that the previous session is cut short
// (port_reused) as before. All waiting connections of a table hold at most
// successorTotalBytes: past that new ones do not wait. The packet bound
// is loose on purpose: a port reused every 4 ms (the lab's TestPortReuse)
// brings some 20 packets per 70 ms that the copy path stalls, and 64
// packets cut sessions short after a stall far shorter than the second.
const (
	successorWait       = 1000 * ms
	successorMaxPackets = 512
	successorMaxBytes   = 256 << 10
	successorTotalBytes = 16 << 20
)

// successor is a new connection waiting for the session of its 4-tuple to
// end.
type successor struct {
	k      Key
	isn    seqnum.Value // its SYN's sequence number
	oldISN seqnum.Value // the previous connection's: its stream is oldISN..oldEnd
	oldEnd seqnum.Value // the end of the previous connection's captured stream
	since  int64
	pkts   [][]byte // copies, in capture order, the SYN first
	bytes  int
	over   bool // the table's limit (successorTotalBytes) ran out: start now
}

// owns reports whether a client packet of the 4-tuple belongs to the
// waiting connection (or one after it) rather than to the previous one:
// its sequence number is outside the previous connection's stream, from
// its SYN to its end (FIN included), where its late packets and
// retransmissions fall. The new connection's numbers need not follow the
// old one's: Linux gives a connection that reuses a TIME_WAIT socket the
// old stream's end + 65537 as its ISN, and the next connection, not from
// TIME_WAIT, a clock-based one that is often lower.
func (c *successor) owns(p *ipmangle.Parsed) bool {
	seq := seqnum.Value(p.Seq)
	return seq.Sub(c.oldISN) > c.oldEnd.Sub(c.oldISN)
}

// clientEnd returns the end of s's captured client stream.
func (s *session) clientEnd() seqnum.Value {
	end := s.sndNxt
	if n := len(s.queue); n > 0 {
		if e := s.queue[n-1].end(); end.LessThan(e) {
			end = e
		}
	}
	return end
}

// wait makes the new connection of SYN p wait for s, the live session of
// its 4-tuple. It reports false, and does nothing, when the waiting
// connections hold too much already.
func (t *Table) wait(s *session, now int64, k Key, pkt []byte, p *ipmangle.Parsed) bool {
	if t.succBytes+len(pkt) > t.succLimit {
		return false
	}
	if c := t.successors[s.key]; c != nil {
		// Yet another SYN, with a number nearer the old connection's: it
		// follows the waiting connection, and sorts itself out when that
		// one is replayed.
		t.keep(c, pkt)
		return true
	}
	if t.successors == nil {
		t.successors = make(map[skey]*successor)
	}
	c := &successor{k: k, isn: seqnum.Value(p.Seq), oldISN: s.isn, oldEnd: s.clientEnd(), since: now}
	t.keep(c, pkt)
	t.successors[s.key] = c
	t.stats.PortReuseWaits++
	return true
}

// keep adds a copy of pkt to c.
func (t *Table) keep(c *successor, pkt []byte) {
	if t.succBytes+len(pkt) > t.succLimit {
		c.over = true
	}
	c.pkts = append(c.pkts, append([]byte(nil), pkt...))
	c.bytes += len(pkt)
	t.succBytes += len(pkt)
}

// toSuccessor takes a client packet of a 4-tuple with a waiting
// connection: it reports whether the packet was the new connection's (kept
// for later, or dropped as a repeated SYN).
func (t *Table) toSuccessor(c *successor, pkt []byte, p *ipmangle.Parsed) bool {
	if !c.owns(p) {
		return false
	}
	if p.Flags&ipmangle.SYN != 0 && p.Flags&ipmangle.ACK == 0 && seqnum.Value(p.Seq) == c.isn {
		t.stats.Drops[DropDuplicateSYN]++
		return true
	}
	t.keep(c, pkt)
	return true
}

// startSuccessors starts, at the end of a batch, the waiting connections
// whose previous session is done with its client stream, has ended, or
// has been waited for long enough.
func (t *Table) startSuccessors(now int64) {
	for sk, c := range t.successors {
		s := t.sessions[sk]
		live := s != nil && !s.freed && s.state != stateTimeWait
		if live && s.pending() && now-c.since < successorWait && !c.over &&
			len(c.pkts) <= successorMaxPackets && c.bytes <= successorMaxBytes {
			continue
		}
		delete(t.successors, sk)
		t.succBytes -= c.bytes
		if live {
			// Reproduced if its stream was acknowledged, else cut short.
			t.finish(s, now, ReasonReplaced, true)
		}
		if s = t.sessions[sk]; s != nil {
			t.free1(s, false) // the new session announces the route again
		}
		var p ipmangle.Parsed
		for _, pkt := range c.pkts {
			p.Decode(pkt)
			t.Client(now, c.k, pkt, &p)
		}
	}
}

// successorDeadline returns the earliest time a waiting connection stops
// waiting, or 0.
func (t *Table) successorDeadline() int64 {
	d := int64(0)
	for _, c := range t.successors {
		if at := c.since + successorWait; d == 0 || at < d {
			d = at
		}
	}
	return d
}
