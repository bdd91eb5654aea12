// Package tcpstate is tcpcopy's session engine: for every copied client
// connection it plays a fake client toward the target, driven by two
// inputs, the client's packets captured on the online host and the
// target's response headers that intercept sends back.
//
// It is pure logic: no sockets, no goroutines, no clock of its own. The
// caller passes the time (Unix nanoseconds) to every call, delivers
// captured packets (Client), response records (Response) and timer ticks
// (Tick), and receives packets to send to the target and route
// announcements through the Output interface. A Table is owned by one
// goroutine; tcpcopy runs one Table per worker and shards sessions over
// them by a hash of the client endpoint.
//
// # The model
//
// The client's own sequence numbers are kept (as in C TCPCopy), so the
// fake client sends exactly the captured bytes at the captured offsets.
// Every packet toward the target is built afresh from the session's state
// (ipmangle.Fields): acknowledgements are in the target's sequence space
// (the next byte expected from it), the window is ours, timestamps are
// ours (RFC 7323, echoing the target's latest TSval), and nothing of the
// online dialogue that would confuse the target leaks through (SACK blocks
// or timestamps of the online server).
//
// Captured data is queued per session in sequence order. It is sent as the
// target's window allows and, unless NoWait is set, paced like the
// original dialogue: a client segment whose acknowledgement number moved
// (the online server had answered in between) starts a new request, and a
// new request is held until the target's response to the previous one has
// ended, that is, until the target sent as many bytes as the online server
// did, or it went quiet, or a bounded wait passed. Server-first protocols
// (a greeting) fall out of the same rule when the handshake was captured.
//
// Loss is repaired by the engine: retransmission on a timer with
// exponential backoff (RFC 6298) and fast retransmit on three duplicate
// acknowledgements (RFC 5681). A hole in the captured client stream
// (capture loss) stops the session's sending until the client's own
// retransmission fills it, and fails the session after GapTimeout. A
// target that closes or resets the connection while captured requests are
// still undelivered is reconnected to with a new handshake, and the
// remaining requests follow on the new connection; a request it took and
// never answered goes again (unanswered.go).
//
// Every session ends with an Outcome (reproduced, partial, failed) and a
// Reason, counted in Stats.
//
// # Where we differ from C TCPCopy
//
// C retransmits once with a fixed 100 ms timer and no backoff, gives up on
// capture gaps only at the session timeout (a unit bug), multiplexes one
// timer for all purposes, rewrites captured headers in place (keeping the
// online dialogue's SACK blocks and options), and has no outcome per
// session. See ../shared/reference/tcpcopy-c.md section 3.
package tcpstate
