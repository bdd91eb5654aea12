package tcpstate

// Rewritten sessions.
//
// A protocol layer in front of the table (tcpcopy's MySQL module,
// docs/mysql.md) may send the target a stream that is not the captured
// one: a login redone with the target's own nonce, commands dropped,
// statement ids replaced. It feeds the table client packets it builds
// itself, in a sequence space of its own (the bytes the target gets), so
// acknowledgements, retransmissions, segmentation, pacing and outcomes
// work on that stream unchanged; mapping the captured sequence numbers to
// it is the layer's business. Two things of the table do not fit such a
// stream, and a session marked Rewritten does without them:
//
//   - A target that closes or resets the connection while data is pending
//     is not connected to again (the new connection would need a new
//     login, which only the layer can make): the session ends with
//     ReasonTargetClosed.
//   - A failed session is not copied again from the client's next request
//     by the table (the same reason): the layer does it, with a new SYN.
//
// The layer ends a session it cannot go on with by Abort (ReasonRefused),
// and asks Live whether a session is still running. Plain sessions are
// untouched: the flag costs a byte of padding, and no call.

// MarkRewritten marks session k as carrying a rewritten stream (see
// above). It reports false if k has no session.
func (t *Table) MarkRewritten(k Key) bool {
	s := t.sessions[packKey(k)]
	if s == nil || s.freed {
		return false
	}
	s.rewritten = true
	return true
}

// Live reports whether session k is open: being set up or established,
// not ended (time-wait, failed, freed).
func (t *Table) Live(k Key) bool {
	s := t.sessions[packKey(k)]
	return s != nil && !s.freed && s.state != stateTimeWait
}

// Abort ends session k at once with reason (a protocol layer giving up:
// ReasonRefused), resetting the target's connection. Like any failed
// session it lingers as a tombstone that drops its client's later
// packets. It does nothing if k has no open session.
func (t *Table) Abort(now int64, k Key, reason Reason) {
	s := t.sessions[packKey(k)]
	if s == nil || s.freed || s.state == stateTimeWait {
		return
	}
	t.finish(s, now, reason, true)
}
