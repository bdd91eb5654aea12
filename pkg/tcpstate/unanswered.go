package tcpstate

// Requests the target took but never answered.
//
// A target that closes a keep-alive connection (Connection: close on the
// last answer nginx allows, or a server that closes after every answer)
// can do so just after tcpcopy sent it the next request: that request was
// copied early, as soon as the answer before it was complete, or it was
// pipelined behind it by the client. The target's TCP acknowledges it, the
// server never reads it, and without care it would be lost while counted
// as delivered.
//
// So the acknowledged segments of the current request are held at the
// front of the queue until the target answers (any byte of response after
// the request went out), and a connection the target closes or resets
// before that carries them again on the new connection, once (heldOff
// then stops a loop with a target that closes on that request every
// time). Holding stops at heldMaxBytes (and 255 segments) per session: a
// bigger request (an upload) is not held, and the rare loss there is left to the outcome
// counts. Pacing off (Config.NoWait) holds nothing: requests overlap the
// answers by design there.
//
// HTTP/1 pipelining puts several requests behind one acknowledgement
// number, where the pacing by acknowledgement numbers cannot see them.
// A segment that starts with an HTTP request line after data of the same
// request was sent is paced like a request of its own (pipelinedDone):
// it goes when the target's answer to what went before has started and
// gone quiet. Captured packets that hold several requests (written at
// once, or merged by GRO) are cut between them: after a request that
// starts the packet, where its length is plain (no body, or
// Content-Length); and after the tail of a body, at a complete request
// line (findHTTPRequest). A request that follows a chunked body in the
// packet that starts it stays with it.

import (
	"bytes"
	"math"
)

// heldMaxBytes bounds the buffers a session holds for an unanswered
// request.
const heldMaxBytes = 64 << 10

// hold keeps the n segments just acknowledged after the held ones, while
// the current request has no answer yet; otherwise it frees them, with the
// held ones.
func (t *Table) hold(s *session, n int) {
	h := int(s.nheld)
	keep := s.waiting && !s.heldOff && s.reqCounted && !s.answered &&
		(h+n)*t.segs.size <= heldMaxBytes && h+n <= math.MaxUint8
	if keep && h == 0 {
		// Only a whole request goes again: from its first segment, and
		// for an HTTP client from its request line (an acknowledgement
		// number that moved in the middle of a body started no request).
		first := s.queue[0]
		keep = first.start && (first.msg || !s.http)
	}
	if keep {
		for _, g := range s.queue[h : h+n] {
			if g.fin {
				keep = false // the client closed: nothing follows to lose
				break
			}
		}
	}
	if keep {
		s.nheld += uint8(n)
		return
	}
	if !s.answered {
		// Unanswered but not held (too big, the client's FIN): holding
		// the rest alone would send a request's tail again.
		s.heldOff = true
	}
	t.drop(s, h+n)
	s.nheld = 0
}

// release frees the held segments: the target answered, or the pacing
// moved on to the next request.
func (t *Table) release(s *session) {
	if s.nheld > 0 {
		t.drop(s, int(s.nheld))
		s.nheld = 0
	}
}

// drop frees the first n segments of s's queue.
func (t *Table) drop(s *session, n int) {
	if n == 0 {
		return
	}
	for _, g := range s.queue[:n] {
		s.queueBytes -= int32(len(g.data))
		t.segs.put(g)
	}
	copy(s.queue, s.queue[n:])
	clear(s.queue[len(s.queue)-n:])
	s.queue = s.queue[:len(s.queue)-n]
	s.next -= int32(n)
}

// pipelinedDone reports whether a pipelined request may go: the target
// answered what went before and went quiet, or waited for long enough.
// If not, it arms the pacing timer.
func (t *Table) pipelinedDone(s *session, now int64) bool {
	if t.answerPending(s, now) {
		return false
	}
	limit := s.reqSentAt + int64(t.cfg.ResponseWait)
	if s.answered {
		quiet := min(max(2*s.srtt, minQuiet), int64(t.cfg.ResponseWait))
		limit = min(limit, s.lastRespAt+quiet)
	}
	if now >= limit {
		return true
	}
	s.paceAt = limit
	return false
}

// httpMethods are the request methods of RFC 9110 and PATCH, each with
// the space after it.
var httpMethods = [...]string{"GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "OPTIONS ", "PATCH ", "CONNECT ", "TRACE "}

// httpRequestStart reports whether p starts with an HTTP/1 request line:
// a method, a space and a request target ("/", "*", or an absolute URI).
func httpRequestStart(p []byte) bool {
	if len(p) < 5 || p[0] < 'A' || p[0] > 'Z' {
		return false
	}
	for _, m := range httpMethods {
		if len(p) > len(m) && string(p[:len(m)]) == m {
			c := p[len(m)]
			return c == '/' || c == '*' || c == 'h' || m == "CONNECT " && c != ' '
		}
	}
	return false
}

// nextHTTPRequest returns the offset in p of the HTTP/1 request that
// follows the one p starts with, or 0: p does not start with a request,
// the first one does not end within p, its body length is not plain
// (chunked, or a Content-Length that does not parse), or no request
// follows it.
func nextHTTPRequest(p []byte) int {
	if !httpRequestStart(p) {
		return 0
	}
	end := bytes.Index(p, crlf2)
	if end < 0 {
		return 0
	}
	body := 0
	for h := p[:end]; len(h) > 0; {
		line := h
		if i := bytes.Index(h, crlf); i >= 0 {
			line, h = h[:i], h[i+2:]
		} else {
			h = nil
		}
		name, value, ok := bytes.Cut(line, colon)
		switch {
		case !ok:
		case asciiFold(name, "content-length"):
			n, ok := parseLength(bytes.TrimSpace(value))
			if !ok || body != 0 && n != body {
				return 0
			}
			body = n
		case asciiFold(name, "transfer-encoding"):
			return 0
		}
	}
	next := end + 4 + body
	if next >= len(p) || next < 0 || !httpRequestStart(p[next:]) {
		return 0
	}
	return next
}

var (
	crlf  = []byte("\r\n")
	crlf2 = []byte("\r\n\r\n")
	colon = []byte(":")
)

// asciiFold reports whether b equals the lower-case ASCII s, ignoring
// case.
func asciiFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// parseLength parses a Content-Length value: decimal digits, at most 9.
func parseLength(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = 10*n + int(c-'0')
	}
	return n, true
}

// findHTTPRequest returns the offset, after the start of p, of the first
// complete HTTP/1 request line in p ("METHOD /target HTTP/1.x\r\n"), or 0.
// It finds a pipelined request that follows the tail of a body in the
// same captured packet; a body that holds such a line is cut there too,
// which costs its copy no more than a pause (pipelinedDone).
func findHTTPRequest(p []byte) int {
	from := 0
	for {
		i := bytes.Index(p[from:], httpVersion)
		if i < 0 {
			return 0
		}
		v := from + i // the space before "HTTP/1."
		from = v + 1
		if v+len(httpVersion)+3 > len(p) || p[v+len(httpVersion)+1] != '\r' || p[v+len(httpVersion)+2] != '\n' {
			continue // not "HTTP/1.x\r\n"
		}
		sp := bytes.LastIndexByte(p[:v], ' ') // the space after the method
		if sp < 0 || bytes.IndexByte(p[sp:v], '\n') >= 0 {
			continue
		}
		for _, m := range httpMethods {
			start := sp + 1 - len(m)
			if start > 0 && string(p[start:sp+1]) == m && httpRequestStart(p[start:]) {
				return start
			}
		}
	}
}

var httpVersion = []byte(" HTTP/1.")

// answerPending reports whether the next request must wait because the
// target's answer is known to go on (Output.AnswerPending) and its last
// bytes came less than Config.ResponseWait ago; it arms the pacing timer.
func (t *Table) answerPending(s *session, now int64) bool {
	if !t.cfg.AnswerLengths || !s.answered || !t.out.AnswerPending(s.key.key()) {
		return false
	}
	limit := s.lastRespAt + int64(t.cfg.ResponseWait)
	if now >= limit {
		return false
	}
	s.paceAt = limit
	return true
}
