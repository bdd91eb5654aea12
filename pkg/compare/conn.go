package compare

import (
	"bytes"
	"encoding/binary"

	"github.com/tcpcopy-go/tcpcopy/pkg/mysqlproto"
	"github.com/tcpcopy-go/tcpcopy/pkg/seqnum"
	"github.com/tcpcopy-go/tcpcopy/pkg/streamhash"
)

// Result is the comparison of one response pair. Its slices are views,
// valid only during the Engine's emit call.
type Result struct {
	Verdict Verdict
	Kind    Kind   // what differs (Differs)
	Reason  Reason // why not compared (NotCompared)
	// Header is the header that differs (KindHeader), as the online
	// server wrote its name, or the target if only it has the header.
	Header []byte
	// Index is the response's place on its connection: 0 answers the
	// first request copied, -1 is a greeting sent before any request.
	Index int
	// Request is the first line of the request (up to 200 bytes).
	Request []byte
	// HTTP reports that both answers were parsed as HTTP/1.x.
	HTTP bool
	// MySQL reports that the answers were read as MySQL answers
	// (Side.MySQL).
	MySQL bool
	// Offset is the first byte that differs, counted from the start of the
	// response; -1 if it is beyond the bytes kept (Config.Bytes) or not
	// known.
	Offset int
	// Unmasked reports that Config.Masks could not apply: a body was
	// longer than what Config.Bytes keeps.
	Unmasked bool
	Online   Side
	Target   Side
}

// Side is one server's answer.
type Side struct {
	Status int    // HTTP status code; 0 if not HTTP
	Length int    // bytes of the whole response
	Body   int    // bytes of the HTTP body; Length if not HTTP
	Hash   uint64 // streamhash of the whole response
	// Time is the response time in nanoseconds: from the request (its
	// capture online; its sending to the target) to the first byte of
	// the answer; 0 if not known.
	Time int64
	// Bytes are up to Config.DetailBytes bytes of the answer from a
	// little before Offset (or its start).
	Bytes []byte
	// BytesAt is the offset of Bytes in the response.
	BytesAt int
	// MySQL summarises a MySQL answer (Result.MySQL).
	MySQL MySQLAnswer
}

// maxRequestLine is the most bytes of a request's first line a Result
// carries.
const maxRequestLine = 200

// request is one request of a connection.
type request struct {
	start  seqnum.Value // its first byte, client sequence space
	ack    seqnum.Value // its acknowledgement number (the request's identity)
	at     int64        // captured
	sentAt int64        // sent to the target (Engine.Requested)
	line   [maxRequestLine]byte
	lineN  uint8
	lineOK bool // the line ended within the first segment
	cmd    byte // MySQL: the command byte (0 if the request did not start with a command packet)
}

// acc accumulates one side's answer to one request.
type acc struct {
	started bool
	done    bool // the side moved on: no more bytes of this answer will come
	broken  bool // a byte is missing (hole, segment without its hash)
	first   int64
	last    int64 // when the latest byte came
	start   seqnum.Value
	next    seqnum.Value
	n       int
	hash    uint64
	buf     []byte // the first Config.Bytes bytes: buf[:have] are known
	have    int
	// total is the answer's length from its head (TargetPending): 0 not
	// known yet, -1 none (no Content-Length, chunked, no body).
	total int64
}

// slot is one request and both answers to it.
type slot struct {
	index  int
	req    request
	on, tg acc
	// skip: the request was not copied (Conn.Skip); its answers get the
	// verdict NotCompared with skipWhy, or none if skipWhy is ReasonNone.
	skip    bool
	skipWhy Reason
	mysql   bool // a MySQL Conn's request
	named   bool // a COM_STMT_PREPARE whose statement id was read (namePrepared)
}

// Conn pairs the responses of one copied connection. Make it with
// Engine.NewConn; it belongs to its Engine and is not safe for concurrent
// use.
type Conn struct {
	e            *Engine
	slots        []*slot // oldest first
	next         int     // index of the next request
	sawSYN       bool    // the connection's start was captured: data before the first request is a greeting
	lastAck      seqnum.Value
	haveReq      bool
	onFin, tgFin bool
	mysql        bool // MySQL answers (Engine.NewMySQLConn)
	// The framing of a MySQL client stream (mysqlClient).
	framed  bool
	pktNext seqnum.Value // where the next captured byte belongs
	pktLeft int          // payload bytes of the current packet still to come
	hdr     [mysqlproto.HeaderLen]byte
	hdrN    int
	hdrAt   seqnum.Value
	cont    bool // the current packet continues a long one
	// prepared are the latest statements the online server prepared, for
	// the request lines of their commands (made at the first prepare).
	prepared *[preparedKept]preparedLine
	prepN    int
}

// Engine compares the responses of many connections with one Config and
// reports each verdict to emit. It holds scratch memory and a pool of
// buffers; one goroutine uses it (tcpcopy: one per worker).
type Engine struct {
	cfg   *Config
	emit  func(*Result)
	res   Result
	pool  [][]byte
	slots []*slot
	heads [2]head
	mask  [2][]byte
	stats Stats
	// myScratch are the MySQL answers read a second time (mysqlBytes).
	myScratch [2]MySQLAnswer
}

// Stats counts the verdicts an Engine reached.
type Stats struct {
	Verdicts    [NumVerdicts]uint64
	Kinds       [NumKinds]uint64
	NotCompared [NumReasons]uint64
	// Statuses counts the compared HTTP responses by status pair, online
	// status × 1000 + target status (200 → 500 is 200500).
	Statuses map[int]uint64
}

// Add adds o's counts to s.
func (s *Stats) Add(o *Stats) {
	for i := range s.Verdicts {
		s.Verdicts[i] += o.Verdicts[i]
	}
	for i := range s.Kinds {
		s.Kinds[i] += o.Kinds[i]
	}
	for i := range s.NotCompared {
		s.NotCompared[i] += o.NotCompared[i]
	}
	if len(o.Statuses) > 0 && s.Statuses == nil {
		s.Statuses = make(map[int]uint64, len(o.Statuses))
	}
	for k, v := range o.Statuses {
		s.Statuses[k] += v
	}
}

// Total returns the number of verdicts.
func (s *Stats) Total() uint64 {
	var n uint64
	for _, v := range s.Verdicts {
		n += v
	}
	return n
}

// NewEngine returns an engine comparing with cfg (Init must have been
// called) that reports every verdict to emit, synchronously; emit may be
// nil.
func NewEngine(cfg *Config, emit func(*Result)) *Engine {
	if cfg.ignore == nil {
		cfg.Init()
	}
	return &Engine{cfg: cfg, emit: emit, stats: Stats{Statuses: map[int]uint64{}}}
}

// Stats returns the verdicts so far; the map is a copy.
func (e *Engine) Stats() Stats {
	s := e.stats
	s.Statuses = make(map[int]uint64, len(e.stats.Statuses))
	for k, v := range e.stats.Statuses {
		s.Statuses[k] = v
	}
	return s
}

// NewConn returns a Conn for a new copied connection.
func (e *Engine) NewConn() *Conn { return &Conn{e: e} }

// NewMySQLConn returns a Conn for a connection copied by tcpcopy's MySQL
// module (package mysqlcopy). Its requests are MySQL commands (the request
// line names the command and carries the start of its SQL text), its
// answers are compared as MySQL answers (OK, ERR, result sets), and the
// server's greeting is not compared (its nonce and connection id differ
// by nature). The caller feeds the target's records with acknowledgement
// numbers mapped back to the captured client stream, and tells with Skip
// which requests were not copied.
func (e *Engine) NewMySQLConn() *Conn { return &Conn{e: e, mysql: true} }

func (e *Engine) getBuf() []byte {
	if n := len(e.pool); n > 0 {
		b := e.pool[n-1]
		e.pool = e.pool[:n-1]
		return b
	}
	return make([]byte, e.cfg.Bytes)
}

func (e *Engine) putBuf(b []byte) {
	if b != nil && len(e.pool) < 1024 {
		e.pool = append(e.pool, b[:cap(b)])
	}
}

func (e *Engine) newSlot(index int) *slot {
	var s *slot
	if n := len(e.slots); n > 0 {
		s = e.slots[n-1]
		e.slots = e.slots[:n-1]
		*s = slot{}
	} else {
		s = new(slot)
	}
	s.index = index
	return s
}

func (e *Engine) freeSlot(s *slot) {
	e.putBuf(s.on.buf)
	e.putBuf(s.tg.buf)
	s.on.buf, s.tg.buf = nil, nil
	if len(e.slots) < 1024 {
		e.slots = append(e.slots, s)
	}
}

// Client takes a client packet of the connection: flags says whether it
// is the SYN (syn), seq and ack are its numbers, payload its data.
//
// A SYN after requests is a new connection on the same addresses (a port
// reused): the answers of the old one are judged as they are, and the new
// one starts afresh.
func (c *Conn) Client(now int64, syn bool, seq, ack uint32, payload []byte) {
	if syn {
		if c.next > 0 || len(c.slots) > 0 {
			c.Finish(now)
			*c = Conn{e: c.e, slots: c.slots[:0], mysql: c.mysql}
		}
		c.sawSYN = !c.mysql // a MySQL greeting is not compared
		if c.mysql {
			c.framed, c.pktNext = true, seqnum.Value(seq+1)
		}
		return
	}
	if len(payload) == 0 {
		return
	}
	a := seqnum.Value(ack)
	if c.mysql {
		c.mysqlClient(now, seqnum.Value(seq), a, payload)
		return
	}
	if c.haveReq && !c.lastAck.LessThan(a) {
		return // more of the current request, or an old one again
	}
	c.haveReq, c.lastAck = true, a
	s := c.e.newSlot(c.next)
	c.next++
	s.req = request{start: seqnum.Value(seq), ack: a, at: now}
	n := 0
	for n < len(payload) && n < maxRequestLine && payload[n] != '\n' {
		n++
	}
	s.req.lineOK = n < len(payload) && payload[n] == '\n'
	if n > 0 && payload[n-1] == '\r' && s.req.lineOK {
		n--
	}
	s.req.lineN = uint8(copy(s.req.line[:], payload[:n]))
	c.slots = append(c.slots, s)
	c.bound(now)
}

// mysqlClient follows the framing of a MySQL client stream: each packet
// with sequence id 0 that does not continue a long packet starts a command,
// a request of its own (a command without an answer, COM_STMT_CLOSE, is
// often followed by the next in the same segment, or with the same
// acknowledgement number). The login exchange (sequence ids from 1) is no
// request. A segment that does not start where the framing expects (the
// connection joined mid-way, a hole) starts it again if it begins with a
// command packet sent after an answer.
func (c *Conn) mysqlClient(now int64, seq, ack seqnum.Value, p []byte) {
	if c.framed && seq != c.pktNext {
		d := seqnum.Overlap(seq, seqnum.Size(len(p)), c.pktNext)
		switch {
		case seq.LessThan(c.pktNext) && int(d) >= len(p):
			return // seen already
		case seq.LessThan(c.pktNext):
			p, seq = p[d:], c.pktNext
		default:
			c.framed = false // a hole
		}
	}
	if !c.framed {
		if c.haveReq && !c.lastAck.LessThan(ack) || len(p) < mysqlproto.HeaderLen+1 {
			return
		}
		if _, id := mysqlproto.Header(p); id != 0 || !mysqlproto.KnownCommand(p[mysqlproto.HeaderLen]) {
			return
		}
		c.framed, c.pktNext, c.pktLeft, c.hdrN, c.cont = true, seq, 0, 0, false
	}
	off := 0
	for off < len(p) {
		if c.pktLeft > 0 {
			k := min(c.pktLeft, len(p)-off)
			off += k
			c.pktLeft -= k
			continue
		}
		if c.hdrN == 0 {
			c.hdrAt = seq.Add(seqnum.Size(off))
		}
		k := copy(c.hdr[c.hdrN:], p[off:])
		c.hdrN += k
		off += k
		if c.hdrN < mysqlproto.HeaderLen {
			break
		}
		c.hdrN = 0
		n, id := mysqlproto.Header(c.hdr[:])
		c.pktLeft = n
		if id == 0 && !c.cont {
			var pkt [mysqlproto.HeaderLen + maxRequestLine]byte
			copy(pkt[:], c.hdr[:])
			m := copy(pkt[mysqlproto.HeaderLen:], p[off:min(len(p), off+n)])
			c.mysqlCommand(now, c.hdrAt, ack, pkt[:mysqlproto.HeaderLen+m])
		}
		c.cont = n == mysqlproto.MaxPayload
	}
	c.pktNext = seq.Add(seqnum.Size(len(p)))
}

// mysqlCommand adds the request of a command packet (pkt: its header and
// its first bytes) that starts at start.
func (c *Conn) mysqlCommand(now int64, start, ack seqnum.Value, pkt []byte) {
	c.haveReq, c.lastAck = true, ack
	s := c.e.newSlot(c.next)
	c.next++
	s.mysql = true
	s.req = request{start: start, ack: ack, at: now}
	line, cmd, ok := mysqlLine(s.req.line[:0], pkt)
	if body := pkt[mysqlproto.HeaderLen:]; mysqlproto.HasStmtID(cmd) && len(body) >= 5 {
		// The statement's text, if its prepare was seen: "COM_STMT_EXECUTE
		// stmt 7: SELECT ...".
		if text := c.preparedText(binary.LittleEndian.Uint32(body[1:])); text != nil {
			line = append(line, ": "...)
			line = append(line, text[:min(len(text), cap(line)-len(line))]...)
		}
	}
	s.req.lineN, s.req.lineOK, s.req.cmd = uint8(len(line)), ok, cmd
	c.slots = append(c.slots, s)
	c.bound(now)
}

// Skip marks the requests that start in the client's bytes [from, to)
// as not copied to the target: their answers get the verdict NotCompared
// with why, or no verdict at all if why is ReasonNone (a MySQL login,
// redone by tcpcopy). A request marked already keeps its mark.
func (c *Conn) Skip(from, to uint32, why Reason) {
	f, t := seqnum.Value(from), seqnum.Value(to)
	for _, s := range c.slots {
		if s.index >= 0 && !s.skip && !s.req.start.LessThan(f) && s.req.start.LessThan(t) {
			s.skip, s.skipWhy = true, why
		}
	}
}

// Requested notes that the request whose segments carry ack went to the
// target at now (its response time starts then).
func (c *Conn) Requested(now int64, ack uint32) {
	for i := len(c.slots) - 1; i >= 0; i-- {
		if s := c.slots[i]; s.index >= 0 && s.req.ack == seqnum.Value(ack) {
			if s.req.sentAt == 0 {
				s.req.sentAt = now
			}
			return
		}
	}
}

// slotFor returns the slot of server data acknowledging client bytes up
// to ack, creating the greeting slot if needed; nil when the data answers
// nothing this Conn knows (a request from before the copy started).
func (c *Conn) slotFor(ack seqnum.Value) *slot {
	for i := len(c.slots) - 1; i >= 0; i-- {
		s := c.slots[i]
		if s.index >= 0 && s.req.start.LessThan(ack) {
			return s
		}
	}
	if c.next > 0 || !c.sawSYN {
		// Before the first request we know, on a connection whose start
		// we did not see, or an answer to a request already decided.
		return nil
	}
	if len(c.slots) > 0 && c.slots[0].index == -1 {
		return c.slots[0]
	}
	s := c.e.newSlot(-1)
	c.slots = append([]*slot{s}, c.slots...)
	return s
}

// Online takes a packet of the online server's answer: its numbers, its
// payload of n bytes (payload holds them, or fewer if the capture cut the
// packet: the answer then cannot be compared), and whether it carries FIN
// or RST (end).
func (c *Conn) Online(now int64, seq, ack uint32, payload []byte, n int, end bool) {
	if n > 0 {
		if s := c.slotFor(seqnum.Value(ack)); s != nil {
			if !s.on.started {
				c.tailCheck(s, true, seqnum.Value(seq))
			}
			c.doneBefore(s.index, true)
			c.onlineBytes(&s.on, now, seqnum.Value(seq), payload)
			if len(payload) < n {
				s.on.broken = true
			}
			if s.mysql && s.req.cmd == mysqlproto.ComStmtPrepare && !s.named {
				c.namePrepared(s)
			}
		}
	}
	if end {
		c.onFin = true
		c.doneBefore(c.next, true)
	}
	c.decide(now)
}

// Target takes a record of the target's answer: its numbers, the payload
// length n, the payload's first bytes (prefix: what intercept sent of
// them), the payload's hash if hashed, and whether it carries FIN or RST.
func (c *Conn) Target(now int64, seq, ack uint32, n int, prefix []byte, hash uint64, hashed, end bool) {
	if n > 0 {
		if s := c.slotFor(seqnum.Value(ack)); s != nil {
			if !s.tg.started {
				c.tailCheck(s, false, seqnum.Value(seq))
			}
			c.doneBefore(s.index, false)
			c.targetBytes(&s.tg, now, seqnum.Value(seq), n, prefix, hash, hashed)
		}
	}
	if end {
		c.tgFin = true
		c.doneBefore(c.next, false)
	}
	c.decide(now)
}

// TargetPending reports whether the target's latest answer is known to be
// incomplete: an HTTP/1 answer whose head (in the bytes kept) declares a
// Content-Length its bytes so far do not reach. tcpcopy holds the client's
// next request until it is complete: sent earlier, the request's
// acknowledgement would move in the middle of the answer and its rest
// would be paired with the next request.
func (c *Conn) TargetPending() bool {
	if c.mysql {
		return false // a MySQL answer's length is not in its first bytes
	}
	for i := len(c.slots) - 1; i >= 0; i-- {
		s := c.slots[i]
		if !s.tg.started {
			continue
		}
		a := &s.tg
		if a.done || a.broken {
			return false
		}
		if a.total == 0 {
			h := &c.e.heads[1]
			parseHead(a.buf[:a.have], h)
			if !h.ok {
				return false // not known yet
			}
			a.total = -1
			if body, ok := contentLength(a.buf, h); ok && h.status != 204 && h.status != 304 &&
				!bytes.HasPrefix(s.req.line[:s.req.lineN], []byte("HEAD ")) {
				a.total = int64(h.length) + body
			}
		}
		return a.total > 0 && int64(a.next.Sub(a.start)) < a.total
	}
	return false
}

// tailCheck: the answer of slot s starts at seq on one side (online or
// the target's). The answer before it on that side ends there; if its
// bytes stop short, its tail was not seen (a lost capture or record), and
// it cannot be compared.
func (c *Conn) tailCheck(s *slot, online bool, seq seqnum.Value) {
	for i := len(c.slots) - 1; i >= 0; i-- {
		p := c.slots[i]
		if p == s || p.index > s.index && s.index >= 0 {
			continue
		}
		a := &p.tg
		if online {
			a = &p.on
		}
		if a.started {
			if a.next.LessThan(seq) {
				a.broken = true
			}
			return
		}
	}
}

// Quiet and MissingAfter decide the pairs of a connection whose client
// went quiet (Tick): a keep-alive connection's last answers would
// otherwise wait for the session's end.
const (
	// Quiet: both answers started and neither side sent anything for
	// this long: both are complete.
	Quiet = int64(5e9)
	// MissingAfter: the online server answered and the target sent
	// nothing for this long: the target's answer is missing.
	MissingAfter = int64(30e9)
)

// Tick decides the oldest pairs whose answers have been quiet (Quiet),
// or whose target answer has not come (MissingAfter), at now. Call it
// now and then (tcpcopy: twice a second per worker).
func (c *Conn) Tick(now int64) {
	for len(c.slots) > 0 {
		s := c.slots[0]
		on, tg := &s.on, &s.tg
		switch {
		case on.started && tg.started && now-max(on.last, tg.last) >= Quiet:
		case on.started && !tg.started && now-on.last >= MissingAfter:
		case !on.started && tg.started && now-tg.last >= MissingAfter:
		default:
			return
		}
		on.done, tg.done = true, true
		c.decide(now)
	}
}

// Finish ends the connection: every answer is complete, and every pair
// gets its verdict.
func (c *Conn) Finish(now int64) {
	c.doneBefore(c.next, true)
	c.doneBefore(c.next, false)
	c.decide(now)
	for _, s := range c.slots {
		c.e.freeSlot(s)
	}
	clear(c.slots)
	c.slots = c.slots[:0]
}

// doneBefore marks the answers to requests before index complete on one
// side.
func (c *Conn) doneBefore(index int, online bool) {
	for _, s := range c.slots {
		if s.index >= index {
			break
		}
		if online {
			s.on.done = true
		} else {
			s.tg.done = true
		}
	}
}

// onlineBytes adds payload at seq to a.
func (c *Conn) onlineBytes(a *acc, now int64, seq seqnum.Value, payload []byte) {
	if !a.started {
		a.started, a.first, a.start, a.next = true, now, seq, seq
		a.buf = c.e.getBuf()
	}
	a.last = now
	end := seq.Add(seqnum.Size(len(payload)))
	switch {
	case !a.next.LessThan(end):
		return // seen already
	case a.next.LessThan(seq):
		a.broken = true // a hole: part of the answer was not captured
		return
	}
	payload = payload[a.next.Sub(seq):]
	c.keep(a, a.next, payload)
	a.hash = streamhash.Update(a.hash, payload)
	a.n += len(payload)
	a.next = end
}

// targetBytes adds a record of n payload bytes at seq to a.
func (c *Conn) targetBytes(a *acc, now int64, seq seqnum.Value, n int, prefix []byte, hash uint64, hashed bool) {
	if !a.started {
		a.started, a.first, a.start, a.next = true, now, seq, seq
		a.buf = c.e.getBuf()
	}
	a.last = now
	if len(prefix) > 0 {
		c.keep(a, seq, prefix)
	}
	end := seq.Add(seqnum.Size(n))
	switch {
	case !a.next.LessThan(end):
		return // a retransmission
	case seq != a.next || !hashed:
		// A hole, or an overlap a hash cannot be cut at, or no hash.
		a.broken = true
		return
	}
	a.hash = streamhash.Combine(a.hash, hash, n)
	a.n += n
	a.next = end
}

// keep copies b, the bytes at seq, into a's buffer if they extend what is
// known from the answer's start.
func (c *Conn) keep(a *acc, seq seqnum.Value, b []byte) {
	off := int(seq.Sub(a.start))
	if off < 0 || off > a.have || off >= len(a.buf) {
		return
	}
	n := copy(a.buf[off:], b)
	a.have = max(a.have, off+n)
}

// bound decides the oldest pairs when too many wait.
func (c *Conn) bound(now int64) {
	limit := c.e.cfg.MaxPending
	if c.mysql {
		limit = c.e.cfg.MySQLMaxPending
	}
	for len(c.slots) > limit {
		s := c.slots[0]
		if s.on.started || s.tg.started {
			c.e.result(s, NotCompared, ReasonTooMany, now)
		}
		c.pop()
	}
}

func (c *Conn) pop() {
	c.e.freeSlot(c.slots[0])
	copy(c.slots, c.slots[1:])
	c.slots[len(c.slots)-1] = nil
	c.slots = c.slots[:len(c.slots)-1]
}

// decide gives a verdict to every pair, oldest first, whose answers are
// both complete.
func (c *Conn) decide(now int64) {
	for len(c.slots) > 0 {
		s := c.slots[0]
		if !s.on.done || !s.tg.done {
			return
		}
		c.e.judge(s, now)
		c.pop()
	}
}
