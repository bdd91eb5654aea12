package mysqlcopy

import (
	"encoding/binary"
	"net/netip"
	"sync"

	"github.com/tcpcopy-go/tcpcopy/pkg/mysqlproto"
	"github.com/tcpcopy-go/tcpcopy/pkg/seqnum"
)

// Flags are the TCP flags of the packets a Conn is given and makes.
type Flags uint8

// Flags.
const (
	FlagSYN Flags = 1 << iota
	FlagACK
	FlagFIN
	FlagRST
	FlagPSH
)

// Output takes what a Conn sends toward the target, through the engine.
// Its methods must not call back into the Conn.
type Output interface {
	// Packet hands the engine a client packet of the sent stream: flags,
	// sequence number (sent space), acknowledgement number (the online
	// server's space, for the engine's pacing) and payload, of any length
	// (the caller splits it); payload is valid during the call only.
	Packet(flags Flags, seq, ack uint32, payload []byte)
	// Abort ends the engine's session at once (the module refused it).
	Abort()
	// Uncopied tells the response comparison that the captured client
	// bytes [from, to) were not copied: the online answers to the commands
	// starting there have no counterpart on the target. login says they
	// are the client's login exchange, which tcpcopy redid with its own.
	Uncopied(from, to uint32, login bool)
}

// Limits.
const (
	// maxClassify is how much of a statement --mysql-read-only reads to
	// classify it.
	maxClassify = 64 << 10
	// maxLoginPacket bounds a captured login or COM_CHANGE_USER packet.
	maxLoginPacket = 64 << 10
	// maxResponse bounds the target's answer kept to read a login step or
	// a prepare's first packet.
	maxResponse = 64 << 10
	// maxStmts bounds the statement ids mapped per connection (MySQL's
	// max_prepared_stmt_count defaults to 16382).
	maxStmts = 16384
	// onlineWait bounds the wait for the online server's answer to a
	// prepare when a command needs it (it normally precedes the command).
	onlineWait = 1000 * ms
	ms         = int64(1e6)
)

type phase uint8

const (
	phSeek phase = iota // joining: looking for a command boundary
	phRun               // copying (logging in, or commands)
	phDead              // refused or lost: nothing is sent
)

type blockKind uint8

const (
	blockNone    blockKind = iota
	blockLogin             // until the target accepted our login
	blockPrepare           // until the target answered a prepare
	blockOnline            // until the online server's prepare answer was captured
	blockChange            // until the target answered COM_CHANGE_USER
)

type awaitKind uint8

const (
	awNone awaitKind = iota
	awGreeting
	awAuth
	awPrepare
	awChange
)

type action uint8

const (
	actPass action = iota
	actDrop        // not copied, counted (its online answer is taken off the acks)
	actSkip        // the captured login: replaced by ours
)

// run is a stretch of captured bytes passed on as they were (Conn.runs).
type run struct {
	sent, cap seqnum.Value
	n         int // bytes
}

// maxRuns is how many runs a Conn keeps: the target answers what was sent
// last, and pipelined commands are few.
const maxRuns = 32

// capSeg is a captured segment waiting to be consumed.
type capSeg struct {
	seq  seqnum.Value
	ack  uint32
	data []byte
	buf  *[]byte // data's storage, from segBufs; nil if too large to pool
}

// segBufs recycles the storage of held segments: each captured segment
// is held until consumed, and a Conn in its steady state holds one at a
// time, so passing bytes through allocates nothing.
var segBufs = sync.Pool{New: func() any { b := make([]byte, 0, segBufSize); return &b }}

// segBufSize is the size of the pooled buffers: a segment of a 1500-byte
// MTU and then some; a larger (GRO) segment gets a buffer of its own,
// pooled up to segBufMax.
const (
	segBufSize = 2048
	segBufMax  = 64 << 10
)

// keepSeg copies p into a pooled buffer.
func keepSeg(p []byte) ([]byte, *[]byte) {
	bp := segBufs.Get().(*[]byte)
	if cap(*bp) < len(p) {
		if len(p) > segBufMax {
			segBufs.Put(bp)
			return append([]byte(nil), p...), nil
		}
		*bp = make([]byte, 0, len(p))
	}
	*bp = append((*bp)[:0], p...)
	return *bp, bp
}

// freeSeg returns g's storage to the pool.
func freeSeg(g *capSeg) {
	if g.buf != nil {
		segBufs.Put(g.buf)
	}
	*g = capSeg{}
}

// prepare follows one COM_STMT_PREPARE until both servers answered it.
type prepare struct {
	capEnd       seqnum.Value // captured end of the command: the online answer acknowledges it
	dropped      bool         // not copied (--mysql-read-only)
	onlineKnown  bool
	onlineOK     bool
	onlineID     uint32
	targetKnown  bool
	targetOK     bool
	targetID     uint32
	targetAnswer int64 // when the target answered
}

type stmtState uint8

const (
	stmtOK      stmtState = iota
	stmtFailed            // the target refused the prepare
	stmtDropped           // the prepare was not copied (read-only)
)

type stmt struct {
	target uint32
	state  stmtState
}

// Conn transforms one copied connection's client stream. See the package
// documentation.
type Conn struct {
	cfg    *Config
	st     *Stats
	client netip.Addr
	target netip.AddrPort

	phase    phase
	why      Refusal
	deadAt   int64
	closed   bool // the client's FIN or RST was passed on (or seen while dead)
	captured bool // the session began with the captured SYN and login

	// The captured stream.
	capISN     seqnum.Value
	capNext    seqnum.Value // next captured byte to consume
	pend       []capSeg     // sorted by seq; what was not consumed
	pendBytes  int
	gapSince   int64
	finSet     bool
	rstSet     bool
	finSeq     seqnum.Value
	seekAck    uint32 // phSeek: the latest data segment's ack
	seekAckSet bool
	hsAcked    bool // the handshake's ACK was passed on

	// Framing of the captured stream.
	hdr       [mysqlproto.HeaderLen]byte
	hdrN      int
	pktLen    int
	pktLeft   int
	pktSeq    uint8
	cont      bool // the previous packet had MaxPayload bytes: this one continues it
	firstUnit bool // the next packet is the client's login
	deciding  bool
	need      int
	ubuf      []byte // the deciding unit's first packet, header included
	unitAct   action
	unitCmd   byte
	unitAck   uint32
	unitSet   bool
	unitDone  bool         // the unit's end was handled
	unitCap   seqnum.Value // the captured position of the unit's first byte

	// The sent stream.
	sentISN     seqnum.Value
	sentNext    seqnum.Value
	synSent     bool
	synSentAt   int64
	obuf        []byte
	oack        uint32
	lastAck     uint32
	dropOnline  uint32 // online answer bytes of dropped commands, taken off the acks
	loginAck    uint32
	loginAckSet bool
	endSent     bool
	// runs map the sent stream back to the captured one for the response
	// comparison (CapturedAck): the latest runs of captured bytes passed
	// on, each from sent position sent and captured position cap.
	runs      [maxRuns]run
	runN      int // runs recorded, ever: the newest is runs[(runN-1)%maxRuns]
	runCapEnd seqnum.Value
	runAck    uint32

	// Login.
	block       blockKind
	blockAt     int64
	login       Login
	pw          Password
	loginReady  bool // login decided (user known)
	loginSent   bool
	loggedIn    bool
	greeting    mysqlproto.Greeting
	hasGreeting bool
	sessCaps    uint32 // the capabilities of our login
	authPlugin  string
	authNonce   []byte
	keyAsked    bool

	// The target's answers.
	tgtSyn      bool
	await       awaitKind
	awaitEnd    seqnum.Value
	respStarted bool
	respStart   seqnum.Value
	resp        []byte
	respDone    int

	// Prepared statements: online id -> target id.
	stmts        map[uint32]stmt
	prepares     []prepare
	online       []onlineAnswer // the online server's latest answers
	onlineAck    uint32
	onlineSet    bool
	onlineWaitAt int64 // the unit being decided waits for an online answer since
}

// NewConn returns the transformer of a connection from client (the
// address the target sees) to target. Start it with Start (its SYN was
// captured) or feed it with Client (joined mid-way).
func NewConn(cfg *Config, st *Stats, client netip.AddrPort, target netip.AddrPort) *Conn {
	cfg.defaults()
	return &Conn{cfg: cfg, st: st, client: client.Addr(), target: target}
}

// Start begins a connection whose SYN (sequence number isn) was captured:
// the session opens at once and the client's login is awaited.
func (c *Conn) Start(now int64, isn uint32, out Output) {
	c.captured = true
	c.phase = phRun
	c.capISN = seqnum.Value(isn)
	c.capNext = c.capISN + 1
	c.firstUnit = true
	c.st.LoginsCaptured++
	c.sendSYN(now, c.capISN, out)
}

func (c *Conn) sendSYN(now int64, isn seqnum.Value, out Output) {
	c.sentISN = isn
	c.sentNext = isn + 1
	c.synSent = true
	c.synSentAt = now
	c.await, c.awaitEnd = awGreeting, isn+1
	out.Packet(FlagSYN, uint32(isn), 0, nil)
}

// Refused returns why the connection is not copied (RefusedNone while it
// is).
func (c *Conn) Refused() Refusal {
	if c.phase == phDead {
		return c.why
	}
	return RefusedNone
}

// Done reports whether the Conn can be forgotten: the client closed its
// connection, or it was refused for good, and live (the engine's session
// is open) is false.
func (c *Conn) Done(live bool) bool {
	return !live && (c.closed || c.phase == phDead && c.why.permanent())
}

// LoggedIn reports whether the target accepted the login.
func (c *Conn) LoggedIn() bool { return c.loggedIn }

// die ends the copy with why; abort resets the engine's session too.
func (c *Conn) die(now int64, why Refusal, abort bool, out Output) {
	if c.phase == phDead {
		return
	}
	if c.synSent && out != nil {
		// What was not sent of the captured stream is not compared.
		from := c.capNext
		if c.unitSet && (c.deciding || c.unitAct != actPass) {
			from = c.unitCap
		}
		out.Uncopied(uint32(from), uint32(from.Add(1<<30)), false)
	}
	c.phase, c.why, c.deadAt = phDead, why, now
	c.st.Refused[why]++
	for i := range c.pend {
		c.st.SkippedBytes += uint64(len(c.pend[i].data))
		freeSeg(&c.pend[i])
	}
	c.pend, c.pendBytes = nil, 0
	c.ubuf, c.resp, c.obuf = nil, nil, nil
	c.block, c.await, c.deciding = blockNone, awNone, false
	if abort && c.synSent && out != nil {
		out.Abort()
	}
}

// reset makes a dead Conn join its connection again at a later command.
func (c *Conn) reset() {
	*c = Conn{cfg: c.cfg, st: c.st, client: c.client, target: c.target, phase: phSeek,
		capISN: c.capISN, closed: c.closed}
}

// Client takes a captured client packet: flags, sequence number,
// acknowledgement number and payload (valid during the call).
func (c *Conn) Client(now int64, flags Flags, seq, ack uint32, payload []byte, out Output) {
	s := seqnum.Value(seq)
	switch c.phase {
	case phDead:
		c.st.SkippedBytes += uint64(len(payload))
		if flags&(FlagFIN|FlagRST) != 0 {
			c.closed = true
		}
		return
	case phSeek:
		if flags&(FlagFIN|FlagRST) != 0 {
			c.closed = true
			return
		}
		if len(payload) == 0 || flags&FlagSYN != 0 {
			return
		}
		if !c.joinable(ack, payload) {
			c.st.SkippedBytes += uint64(len(payload))
			c.seekAck, c.seekAckSet = ack, true
			return
		}
		c.join(now, s, ack, payload, out)
		return
	}
	if flags&FlagSYN != 0 {
		return // a retransmitted SYN
	}
	if len(payload) == 0 && flags&(FlagFIN|FlagRST) == 0 {
		if c.captured && !c.hsAcked && s == c.capISN+1 {
			// The handshake's ACK: it gives the engine the online
			// server's first sequence number, from which its pacing
			// counts the greeting.
			c.hsAcked = true
			c.loginAck, c.loginAckSet = ack, true
			c.lastAck = ack
			out.Packet(FlagACK, uint32(c.sentISN+1), ack, nil)
		}
		return
	}
	if len(payload) > 0 && !c.hold(now, s, ack, payload, out) {
		return
	}
	if flags&(FlagFIN|FlagRST) != 0 && !c.finSet {
		c.finSet = true
		c.rstSet = flags&FlagRST != 0
		c.finSeq = s.Add(seqnum.Size(len(payload)))
	}
	c.pump(now, out)
}

// joinable reports whether a data segment of a connection being joined
// starts a command: a whole command packet (sequence id 0, a known command
// byte, the length the segment has; or a long command filling the
// segment), sent after the client received an answer (its ack moved).
func (c *Conn) joinable(ack uint32, p []byte) bool {
	if len(p) < mysqlproto.HeaderLen+1 {
		return false
	}
	n, seq := mysqlproto.Header(p)
	if seq != 0 || n == 0 || !mysqlproto.KnownCommand(p[mysqlproto.HeaderLen]) {
		return false
	}
	switch total := mysqlproto.HeaderLen + n; {
	case total < len(p):
		return false
	case total > len(p) && len(p) < 512:
		return false
	}
	return !c.seekAckSet || c.seekAck != ack
}

// join starts a session for a connection whose login was not captured, at
// the command that starts at seq.
func (c *Conn) join(now int64, seq seqnum.Value, ack uint32, payload []byte, out Output) {
	switch payload[mysqlproto.HeaderLen] {
	case mysqlproto.ComBinlogDump, mysqlproto.ComBinlogDumpGTID, mysqlproto.ComRegisterSlave:
		c.die(now, RefusedReplication, false, out)
		return
	}
	l, ok := c.cfg.Learnt.lookup(c.client, c.target)
	if !ok {
		if c.cfg.DefaultUser == "" {
			c.die(now, RefusedNoUser, false, out)
			return
		}
		l = Login{User: c.cfg.DefaultUser, Database: c.cfg.DefaultDB, Caps: mysqlproto.DefaultCaps,
			Charset: mysqlproto.DefaultCharset, MaxPacket: 1 << 24}
	}
	pw, ok := c.cfg.Users[l.User]
	if !ok {
		c.die(now, RefusedUnknownUser, false, out)
		return
	}
	c.login, c.pw, c.loginReady = l, pw, true
	c.phase = phRun
	c.capNext = seq
	c.block, c.blockAt = blockLogin, now
	c.loginAck, c.loginAckSet = ack-1, true // the first command then counts as a new request
	c.lastAck = c.loginAck
	c.st.Joined++
	c.sendSYN(now, seq-1, out)
	c.hold(now, seq, ack, payload, out)
}

// hold keeps a captured segment until it can be consumed. It reports
// false if the Conn died (too much held).
func (c *Conn) hold(now int64, seq seqnum.Value, ack uint32, p []byte, out Output) bool {
	if d := seqnum.Overlap(seq, seqnum.Size(len(p)), c.capNext); d > 0 {
		if int(d) >= len(p) {
			return true // consumed already: a retransmission
		}
		p, seq = p[d:], seq.Add(d)
	}
	if c.pendBytes+len(p) > c.cfg.MaxHold {
		c.die(now, RefusedHoldFull, true, out)
		return false
	}
	i := len(c.pend)
	for i > 0 && seq.LessThan(c.pend[i-1].seq) {
		i--
	}
	c.pend = append(c.pend, capSeg{})
	copy(c.pend[i+1:], c.pend[i:])
	data, buf := keepSeg(p)
	c.pend[i] = capSeg{seq: seq, ack: ack, data: data, buf: buf}
	c.pendBytes += len(p)
	return true
}

// pump consumes what can be consumed of the held stream, in order, until
// a wait or a hole.
func (c *Conn) pump(now int64, out Output) {
	for c.phase == phRun && c.block == blockNone {
		if c.deciding && len(c.ubuf)-mysqlproto.HeaderLen >= c.need {
			c.decide(now, out)
			if c.block != blockNone || c.phase != phRun {
				break
			}
			if !c.deciding && c.pktLeft == 0 {
				c.endPacket(now, out)
				continue
			}
		}
		if len(c.pend) == 0 {
			break
		}
		g := &c.pend[0]
		if c.capNext.LessThan(g.seq) {
			if c.gapSince == 0 {
				c.gapSince = now
			}
			break // a hole in the capture
		}
		c.gapSince = 0
		off := int(c.capNext.Sub(g.seq))
		if off >= len(g.data) {
			c.popPend()
			continue
		}
		seq, n := g.seq, len(g.data)
		c.feed(now, g.ack, g.data[off:], out)
		if c.phase != phRun || len(c.pend) == 0 {
			break
		}
		if int(c.capNext.Sub(seq)) >= n {
			c.popPend()
		}
	}
	c.flush(out)
	if c.phase == phRun && c.block == blockNone && c.finSet && !c.endSent && c.capNext == c.finSeq && len(c.pend) == 0 {
		c.endSent, c.closed = true, true
		f := FlagACK | FlagFIN
		if c.rstSet {
			f = FlagACK | FlagRST
		}
		out.Packet(f, uint32(c.sentNext), c.lastAck, nil)
		if !c.rstSet {
			c.sentNext++
		}
	}
}

func (c *Conn) popPend() {
	c.pendBytes -= len(c.pend[0].data)
	freeSeg(&c.pend[0])
	n := copy(c.pend, c.pend[1:])
	c.pend[n] = capSeg{}
	c.pend = c.pend[:n]
	if n == 0 && cap(c.pend) > pendKeep {
		c.pend = nil // let a large backing array go
	}
}

// pendKeep is the most held segments whose slots an idle Conn keeps.
const pendKeep = 4

// feed runs captured bytes b (acknowledgement ack) through the framing
// until they are consumed or the Conn must wait; c.capNext follows.
func (c *Conn) feed(now int64, ack uint32, b []byte, out Output) {
	for len(b) > 0 && c.block == blockNone && c.phase == phRun {
		if c.hdrN < mysqlproto.HeaderLen {
			k := copy(c.hdr[c.hdrN:], b)
			c.hdrN += k
			b = b[k:]
			c.capNext = c.capNext.Add(seqnum.Size(k))
			if c.hdrN < mysqlproto.HeaderLen {
				return
			}
			c.startPacket(now, ack, out)
			if c.phase != phRun {
				return
			}
			if c.deciding && len(c.ubuf)-mysqlproto.HeaderLen >= c.need {
				c.decide(now, out)
			}
			if !c.deciding && c.pktLeft == 0 {
				c.endPacket(now, out)
			}
			continue
		}
		if c.deciding {
			want := c.need - (len(c.ubuf) - mysqlproto.HeaderLen)
			if want <= 0 {
				return // decided on a wait: pump comes back
			}
			k := min(len(b), c.pktLeft, want)
			c.ubuf = append(c.ubuf, b[:k]...)
			b = b[k:]
			c.pktLeft -= k
			c.capNext = c.capNext.Add(seqnum.Size(k))
			if len(c.ubuf)-mysqlproto.HeaderLen >= c.need {
				c.decide(now, out)
			}
		} else {
			k := min(len(b), c.pktLeft)
			if c.unitAct == actPass {
				c.emit(ack, c.capNext, b[:k], out)
			}
			b = b[k:]
			c.pktLeft -= k
			c.capNext = c.capNext.Add(seqnum.Size(k))
		}
		if !c.deciding && c.pktLeft == 0 && c.phase == phRun {
			c.endPacket(now, out)
		}
	}
}

// startPacket handles a complete packet header in c.hdr.
func (c *Conn) startPacket(now int64, ack uint32, out Output) {
	n, seq := mysqlproto.Header(c.hdr[:])
	c.pktLen, c.pktLeft, c.pktSeq = n, n, seq
	if !c.firstUnit && (seq != 0 || c.cont) && c.unitSet {
		// More of the current unit: a long command's next packet, a LOAD
		// DATA LOCAL file, or the rest of a login exchange.
		if c.unitAct == actPass {
			c.emit(ack, c.capNext-mysqlproto.HeaderLen, c.hdr[:], out)
		}
		return
	}
	// A new unit: a command, or the client's login.
	start := c.capNext - mysqlproto.HeaderLen
	if c.unitSet && c.unitAct == actDrop && int32(ack-c.unitAck) > 0 {
		c.dropOnline += ack - c.unitAck // the online answer to the dropped command
	}
	switch {
	case c.unitSet && c.unitAct == actDrop:
		out.Uncopied(uint32(c.unitCap), uint32(start), false)
	case c.unitSet && c.unitAct == actSkip:
		out.Uncopied(uint32(c.capISN), uint32(start), true) // the whole login exchange
	}
	c.unitCap = start
	c.unitSet, c.unitAck, c.unitDone = true, ack, false
	c.unitCmd = 0
	c.ubuf = append(c.ubuf[:0], c.hdr[:]...)
	c.deciding = true
	c.need = min(n, 1)
	if c.firstUnit {
		if n > maxLoginPacket {
			c.die(now, RefusedBadLogin, true, out)
			return
		}
		c.need = n
	}
}

// endPacket handles the end of a packet's payload.
func (c *Conn) endPacket(now int64, out Output) {
	c.cont = c.pktLen == mysqlproto.MaxPayload
	c.hdrN = 0
	if c.cont || c.unitDone {
		return
	}
	c.unitDone = true
	if c.unitAct == actDrop {
		out.Uncopied(uint32(c.unitCap), uint32(c.capNext), false)
	}
	switch {
	case c.unitCmd == mysqlproto.ComStmtPrepare:
		c.prepares = append(c.prepares, prepare{capEnd: c.capNext, dropped: c.unitAct == actDrop})
		c.matchOnline(now)
		if c.unitAct == actPass {
			c.flush(out)
			c.expect(awPrepare)
			c.block, c.blockAt = blockPrepare, now
		}
	case c.unitCmd == mysqlproto.ComChangeUser && c.unitAct == actPass:
		c.flush(out)
		c.expect(awChange)
		c.block, c.blockAt = blockChange, now
	}
}

// expect awaits the target's answer to what was just sent.
func (c *Conn) expect(k awaitKind) {
	c.await, c.awaitEnd = k, c.sentNext
	c.respStarted, c.resp, c.respDone = false, c.resp[:0], 0
}

// emit queues bytes of the sent stream, captured at at; the
// acknowledgement number is the captured one less the online answers to
// dropped commands.
func (c *Conn) emit(ack uint32, at seqnum.Value, b []byte, out Output) {
	a := ack - c.dropOnline
	if len(c.obuf) > 0 && a != c.oack {
		c.flush(out)
	}
	if c.runN == 0 || at != c.runCapEnd || a != c.runAck {
		c.runs[c.runN%maxRuns] = run{sent: c.sentNext.Add(seqnum.Size(len(c.obuf))), cap: at}
		c.runN++
	}
	c.runs[(c.runN-1)%maxRuns].n += len(b)
	c.runCapEnd, c.runAck = at.Add(seqnum.Size(len(b))), a
	c.oack = a
	c.obuf = append(c.obuf, b...)
}

// CapturedAck maps an acknowledgement number of the target (sent space)
// to the captured client stream, for the response comparison: the same
// place in the captured bytes the target acknowledged last (within the
// captured command they came from, for a rewritten one). ok is false for
// acknowledgements of the module's own login, or older than the runs
// kept.
func (c *Conn) CapturedAck(ack uint32) (captured uint32, ok bool) {
	a := seqnum.Value(ack)
	for i := c.runN - 1; i >= 0 && i >= c.runN-maxRuns; i-- {
		r := &c.runs[i%maxRuns]
		if r.sent.LessThan(a) {
			return uint32(r.cap.Add(seqnum.Size(min(int(a.Sub(r.sent)), r.n)))), true
		}
	}
	return 0, false
}

// DroppedOnline is what the acknowledgement numbers passed on lack: the
// online server's answers to the commands dropped so far.
func (c *Conn) DroppedOnline() uint32 { return c.dropOnline }

// flush sends the queued bytes as one client packet.
func (c *Conn) flush(out Output) {
	if len(c.obuf) == 0 {
		return
	}
	out.Packet(FlagACK|FlagPSH, uint32(c.sentNext), c.oack, c.obuf)
	c.sentNext = c.sentNext.Add(seqnum.Size(len(c.obuf)))
	c.lastAck = c.oack
	c.obuf = c.obuf[:0]
}

// sendOwn sends a packet the module made (a login step) at once.
func (c *Conn) sendOwn(seq uint8, payload []byte, out Output) {
	c.flush(out)
	pkt := mysqlproto.AppendPacket(nil, seq, payload)
	out.Packet(FlagACK|FlagPSH, uint32(c.sentNext), c.loginAck, pkt)
	c.sentNext = c.sentNext.Add(seqnum.Size(len(pkt)))
	c.lastAck = c.loginAck
}

// Tick runs the Conn's time-outs; live says whether the engine's session
// is open.
func (c *Conn) Tick(now int64, live bool, out Output) {
	switch c.phase {
	case phDead:
		if !c.why.permanent() && !c.closed && now-c.deadAt >= int64(c.cfg.RetryAfter) && !live {
			c.reset()
		}
		return
	case phSeek:
		return
	}
	if c.synSent && !live {
		if !c.closed {
			c.die(now, RefusedSessionLost, false, out)
		}
		return
	}
	if !c.loggedIn && c.synSent && now-c.synSentAt >= int64(c.cfg.LoginTimeout) {
		c.die(now, RefusedLoginTimeout, true, out)
		return
	}
	switch {
	case c.block == blockPrepare && now-c.blockAt >= int64(c.cfg.AnswerTimeout):
		// No answer: the statement counts as refused by the target.
		c.targetPrepared(now, false, 0)
		c.await = awNone
		c.unblock(now, out)
	case c.block == blockOnline && now-c.blockAt >= onlineWait:
		for i := range c.prepares {
			if !c.prepares[i].onlineKnown {
				c.prepares[i].onlineKnown = true // not captured: lost
			}
		}
		c.resolve(now)
		c.unblock(now, out)
	case c.block == blockLogin && now-c.blockAt >= int64(c.cfg.LoginTimeout):
		c.die(now, RefusedLoginTimeout, true, out)
	case c.block == blockChange && now-c.blockAt >= int64(c.cfg.LoginTimeout):
		c.die(now, RefusedLoginTimeout, true, out)
	}
	if c.phase == phRun && c.gapSince != 0 && now-c.gapSince >= int64(c.cfg.GapTimeout) {
		c.die(now, RefusedCaptureGap, true, out)
	}
}

func (c *Conn) unblock(now int64, out Output) {
	c.block = blockNone
	c.pump(now, out)
}

// le32 reads a little-endian uint32.
func le32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }

// Started reports whether the Conn began with a captured SYN of sequence
// number isn (a retransmitted SYN is not a new connection).
func (c *Conn) Started(isn uint32) bool {
	return c.captured && c.capISN == seqnum.Value(isn) && c.phase != phDead
}
