package compare

// Datagram is one server's answer to a datagram query (UDP): a whole
// answer in one datagram, so nothing is paired by sequence numbers; the
// caller pairs the answers (tcpcopy: the k-th answer of a flow answers its
// k-th query) and gives both to JudgeDatagrams.
type Datagram struct {
	// Seen reports that the answer came.
	Seen bool
	// Len is the answer's payload length.
	Len int
	// Hash is the streamhash of the whole payload, if Hashed.
	Hash   uint64
	Hashed bool
	// Bytes are the payload's first bytes, at most Config.Bytes: the
	// visible bytes, compared byte by byte (masked) when they are the
	// whole payload on both sides, and where the first difference is
	// looked for.
	Bytes []byte
	// At is when the answer came.
	At int64
}

// JudgeDatagrams gives the answers on and tg to one query its verdict,
// counts it in the Engine's Stats and reports it to emit, like a response
// pair of a Conn: index is the query's place in its flow, request a short
// description of it (up to 200 bytes), asked when the query was captured
// and sent when its copy went to the target (the response times start
// there; 0 if not known).
//
// An answer neither side gave gets no verdict; an online answer not seen
// is NotCompared (ReasonNoOnline), one not hashed NotCompared
// (ReasonOnlineIncomplete); a target answer not seen is Missing, one not
// hashed (not captured whole) NotCompared (ReasonTargetIncomplete).
// Otherwise the lengths are compared, then the bytes (with Config.Masks)
// when both payloads are whole in Bytes, else the hashes. It allocates
// nothing unless emit does, or masks apply.
func (e *Engine) JudgeDatagrams(index int, request []byte, asked, sent int64, on, tg *Datagram, now int64) {
	s := e.newSlot(index)
	s.req.at, s.req.sentAt = asked, sent
	s.req.lineN = uint8(copy(s.req.line[:], request))
	s.on = datagramAcc(on)
	s.tg = datagramAcc(tg)
	e.judge(s, now)
	// The buffers are the caller's: not the engine's pool.
	s.on.buf, s.tg.buf = nil, nil
	e.freeSlot(s)
}

// datagramAcc is d as one side of a slot.
func datagramAcc(d *Datagram) acc {
	if !d.Seen {
		return acc{done: true}
	}
	b := d.Bytes[:min(len(d.Bytes), d.Len)]
	return acc{started: true, done: true, broken: !d.Hashed, first: d.At, last: d.At,
		n: d.Len, hash: d.Hash, buf: b, have: len(b), total: -1}
}
