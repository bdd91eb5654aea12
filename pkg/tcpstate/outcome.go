package tcpstate

// Outcome is how completely a session was reproduced at the target.
type Outcome uint8

// Outcomes.
const (
	// Reproduced: every captured request byte was acknowledged by the
	// target.
	Reproduced Outcome = iota
	// Partial: some captured request bytes were acknowledged, not all.
	Partial
	// Failed: none of the captured request bytes was acknowledged (or the
	// connection never got established).
	Failed
	numOutcomes
)

func (o Outcome) String() string {
	switch o {
	case Reproduced:
		return "reproduced"
	case Partial:
		return "partial"
	case Failed:
		return "failed"
	}
	return "unknown"
}

// Reason says why a session ended.
type Reason uint8

// Reasons. The zero value is a normal end (both sides closed, or the idle
// timeout after everything was delivered).
const (
	ReasonNone          Reason = iota // closed normally
	ReasonNoSynAck                    // no SYN-ACK came back through intercept: route or filter problem
	ReasonTargetRST                   // the target reset the connection
	ReasonTargetTimeout               // the target stayed silent with data outstanding (-t)
	ReasonIdle                        // nothing happened for the idle timeout (-k)
	ReasonCaptureGap                  // captured client data had a hole that never filled
	ReasonBufferFull                  // too much captured data queued for the session
	ReasonShed                        // refused by the memory budget (-m)
	ReasonNoIntercept                 // no intercept link was up to announce the route
	ReasonStopped                     // tcpcopy stopped
	ReasonReplaced                    // a new connection reused the 4-tuple
	ReasonClientRST                   // the client reset the connection
	ReasonReconnects                  // the target closed or reset MaxReconnects times in a row before acknowledging anything new
	ReasonOverload                    // refused: too many handshakes pending, or tcpcopy backed up
	ReasonStalled                     // no progress for StallTimeout while the target kept answering
	// ReasonNoSYN is for uncopied bytes only (Stats.UncopiedBytes): with
	// OnlyFullSessions, the data of a connection whose SYN was not
	// captured. No session ends with it.
	ReasonNoSYN
	// ReasonRefused: a protocol layer refused to go on with the session
	// (Table.Abort; tcpcopy's MySQL module counts its own reasons).
	ReasonRefused
	// ReasonTargetClosed: the target closed or reset a Rewritten session
	// with data pending; it is not connected to again.
	ReasonTargetClosed
	numReasons
)

var reasonNames = [numReasons]string{
	ReasonNone:          "none",
	ReasonNoSynAck:      "no_synack",
	ReasonTargetRST:     "target_rst",
	ReasonTargetTimeout: "target_timeout",
	ReasonIdle:          "idle",
	ReasonCaptureGap:    "capture_gap",
	ReasonBufferFull:    "buffer_full",
	ReasonShed:          "shed",
	ReasonNoIntercept:   "intercept_unavailable",
	ReasonStopped:       "tcpcopy_stopped",
	ReasonReplaced:      "port_reused",
	ReasonClientRST:     "client_rst",
	ReasonReconnects:    "reconnects_without_progress",
	ReasonOverload:      "overload",
	ReasonStalled:       "stalled",
	ReasonNoSYN:         "no_syn",
	ReasonRefused:       "refused",
	ReasonTargetClosed:  "target_closed",
}

func (r Reason) String() string {
	if r < numReasons {
		return reasonNames[r]
	}
	return "unknown"
}

// Drop counts packets the engine did not use, by cause.
type Drop uint8

// Drop causes.
const (
	DropNoSession         Drop = iota // client packet without payload for no known session
	DropNoSYN                         // -O: session without a captured SYN
	DropDuplicateSYN                  // the client retransmitted its SYN
	DropDuplicate                     // client retransmission of data already queued or acknowledged
	DropResponseNoSession             // response record for no known session
	DropResponseIgnored               // response that did not fit the session's state
	DropClosed                        // client packet of a session that ended (time-wait, or failed and given up)
	numDrops
)

var dropNames = [numDrops]string{
	DropNoSession:         "no_session",
	DropNoSYN:             "no_syn",
	DropDuplicateSYN:      "duplicate_syn",
	DropDuplicate:         "duplicate_data",
	DropResponseNoSession: "response_no_session",
	DropResponseIgnored:   "response_ignored",
	DropClosed:            "session_closed",
}

func (d Drop) String() string {
	if d < numDrops {
		return dropNames[d]
	}
	return "unknown"
}

// NumOutcomes, NumReasons and NumDrops size arrays indexed by those enums.
const (
	NumOutcomes = int(numOutcomes)
	NumReasons  = int(numReasons)
	NumDrops    = int(numDrops)
)

// Stats are a Table's counters. Add sums several tables' stats.
type Stats struct {
	ClientPackets   uint64 // captured client packets handled
	Responses       uint64 // response records handled
	Opened          uint64 // sessions opened
	OpenedNoSYN     uint64 // ... of which started with our own SYN
	Active          int    // sessions open now (not in time-wait)
	Closed          [NumOutcomes][NumReasons]uint64
	Requests        uint64 // requests sent (first segment of each)
	SegmentsSent    uint64 // data segments sent, retransmissions excluded
	Retransmits     uint64 // segments retransmitted on timeout
	FastRetransmits uint64 // segments retransmitted on duplicate ACKs
	SYNs            uint64 // handshakes started (SYNs sent, retransmissions excluded)
	SYNRetransmits  uint64 // SYNs retransmitted on timeout
	SYNAcks         uint64 // SYN-ACKs accepted: connections established
	Reconnects      uint64 // new handshakes after the target closed early
	// Unanswered counts the requests the target acknowledged and then
	// closed or reset the connection without answering: each went again
	// on the new connection (unanswered.go).
	Unanswered     uint64
	PortReuse      uint64 // SYNs that replaced a live session
	PortReuseWaits uint64 // ... of which waited for the live session's stream to be delivered
	CapturedBytes  uint64 // client payload bytes queued
	AckedBytes     uint64 // ... of which the target acknowledged
	// UncopiedBytes are the captured client payload bytes of copied
	// connections that no session carried, by why: the reason their
	// session ended (a failed session's connection is given up until its
	// next request, tombRetry after the failure), or was refused when it
	// opened (shed, overload), or ReasonNoSYN. A client's
	// retransmissions are counted once. UncopiedRequests counts the
	// requests among them (a data packet whose acknowledgement number
	// moved past the connection's latest request).
	UncopiedBytes    [NumReasons]uint64
	UncopiedRequests [NumReasons]uint64
	ResponseBytes    uint64 // payload bytes the target sent
	Drops            [NumDrops]uint64
	Splits           uint64 // captured segments split to fit the target's MSS or the path MTU
	Resent           uint64 // segments sent again after the kernel refused them as too big (TooBig)
	Blackholes       uint64 // sessions whose segments shrank after repeated timeouts (segsize.go)
	Stalls           [NumStallCauses]uint64
	// LastStall is the latest session that ended stalled.
	LastStall      Stall
	QueuedSegments int     // segments buffered now
	Latency        Latency // response times per request (latency.go)
}

// Add adds o's counters to s.
func (s *Stats) Add(o *Stats) {
	s.ClientPackets += o.ClientPackets
	s.Responses += o.Responses
	s.Opened += o.Opened
	s.OpenedNoSYN += o.OpenedNoSYN
	s.Active += o.Active
	for i := range s.Closed {
		for j := range s.Closed[i] {
			s.Closed[i][j] += o.Closed[i][j]
		}
	}
	s.Requests += o.Requests
	s.SegmentsSent += o.SegmentsSent
	s.Retransmits += o.Retransmits
	s.FastRetransmits += o.FastRetransmits
	s.SYNs += o.SYNs
	s.SYNRetransmits += o.SYNRetransmits
	s.SYNAcks += o.SYNAcks
	s.Reconnects += o.Reconnects
	s.Unanswered += o.Unanswered
	s.PortReuse += o.PortReuse
	s.PortReuseWaits += o.PortReuseWaits
	s.CapturedBytes += o.CapturedBytes
	s.AckedBytes += o.AckedBytes
	for i := range s.UncopiedBytes {
		s.UncopiedBytes[i] += o.UncopiedBytes[i]
		s.UncopiedRequests[i] += o.UncopiedRequests[i]
	}
	s.ResponseBytes += o.ResponseBytes
	for i := range s.Drops {
		s.Drops[i] += o.Drops[i]
	}
	s.Splits += o.Splits
	s.Resent += o.Resent
	s.Blackholes += o.Blackholes
	for i := range s.Stalls {
		s.Stalls[i] += o.Stalls[i]
	}
	if o.LastStall.At > s.LastStall.At {
		s.LastStall = o.LastStall
	}
	s.QueuedSegments += o.QueuedSegments
	s.Latency.add(&o.Latency)
}

// ClosedBy returns the number of sessions closed with outcome o, any reason.
func (s *Stats) ClosedBy(o Outcome) uint64 {
	var n uint64
	for _, c := range s.Closed[o] {
		n += c
	}
	return n
}

// Uncopied returns the bytes and requests no session carried, any reason.
func (s *Stats) Uncopied() (bytes, requests uint64) {
	for i := range s.UncopiedBytes {
		bytes += s.UncopiedBytes[i]
		requests += s.UncopiedRequests[i]
	}
	return bytes, requests
}

// Fidelity returns the share of the captured request bytes of copied
// connections that the target acknowledged, 0..1, or 1 when nothing was
// captured: AckedBytes over CapturedBytes plus the uncopied bytes, so
// that requests dropped because their session had ended count as lost.
// Connections left out by sampling (-r, -g) never reach the table and do
// not count.
func (s *Stats) Fidelity() float64 {
	u, _ := s.Uncopied()
	if s.CapturedBytes+u == 0 {
		return 1
	}
	return float64(s.AckedBytes) / float64(s.CapturedBytes+u)
}
