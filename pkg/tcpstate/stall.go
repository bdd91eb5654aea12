package tcpstate

// Stalls.
//
// A session whose data the target does not acknowledge is repaired first:
// retransmitted on the RFC 6298 timer and on duplicate ACKs, split when
// the kernel refuses it as too big, shrunk when it times out again and
// again (segsize.go). If all that brings no progress for
// Config.StallTimeout while the target keeps answering (its duplicate
// ACKs, window updates or data reach us), the session ends as stalled and
// says where: a silent target is the session timeout's (-t), but a target
// that talks and still takes nothing will not change its mind, and the
// session must not hold its memory and hide its failure for -t.

// StallCause says what a stalled session was waiting for.
type StallCause uint8

// Stall causes.
const (
	// StallUnacknowledged: data was sent, and sent again, and the target
	// never acknowledged it.
	StallUnacknowledged StallCause = iota
	// StallZeroWindow: the target kept its receive window closed.
	StallZeroWindow
	numStallCauses
)

// NumStallCauses sizes arrays indexed by StallCause.
const NumStallCauses = int(numStallCauses)

var stallNames = [numStallCauses]string{
	StallUnacknowledged: "unacknowledged",
	StallZeroWindow:     "zero_window",
}

func (c StallCause) String() string {
	if c < numStallCauses {
		return stallNames[c]
	}
	return "unknown"
}

// Stall describes where a stalled session stuck.
type Stall struct {
	Key   Key
	Cause StallCause
	// At is when the session ended (the caller's clock); 0: no stall yet.
	At int64
	// Offset is the position of the first byte the target did not
	// acknowledge in the stream the session copied: the bytes it took.
	Offset uint64
	// Outstanding is the bytes sent and not acknowledged, Queued the bytes
	// captured and not sent yet.
	Outstanding, Queued int
	// Segment is the payload size of the first unacknowledged segment, 0
	// if none was out.
	Segment int
	// Window is the target's last receive window, scaled.
	Window uint32
	// Timeouts is the number of retransmission timeouts in a row.
	Timeouts int
}

// isStalled reports whether s, established, has stalled at now.
func (t *Table) isStalled(s *session, now int64) bool {
	return s.pending() && s.progressAt != 0 && s.lastTarget > s.progressAt &&
		now-s.progressAt >= int64(t.cfg.StallTimeout)
}

// stall ends s as stalled and records where it stuck.
func (t *Table) stall(s *session, now int64) {
	st := Stall{
		Key:      s.key.key(),
		At:       now,
		Offset:   uint64(s.ackedBytes),
		Window:   s.sndWnd,
		Timeouts: int(s.backoff),
	}
	if s.sndWnd == 0 {
		st.Cause = StallZeroWindow
	}
	for i, g := range s.queue[s.nheld:] {
		i += int(s.nheld)
		if i < int(s.next) {
			st.Outstanding += g.n
			if i == int(s.nheld) {
				st.Segment = g.n
			}
		} else {
			st.Queued += g.n
		}
	}
	t.stats.Stalls[st.Cause]++
	t.stats.LastStall = st
	t.finish(s, now, ReasonStalled, true)
}
