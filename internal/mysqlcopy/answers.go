package mysqlcopy

import (
	"github.com/tcpcopy-go/tcpcopy/pkg/mysqlproto"
	"github.com/tcpcopy-go/tcpcopy/pkg/seqnum"
)

// Target takes a record of the target's answer: flags, sequence and
// acknowledgement numbers (the sent space), the payload's length and the
// first bytes intercept carried (valid during the call).
func (c *Conn) Target(now int64, flags Flags, seq, ack uint32, n int, prefix []byte, out Output) {
	if c.phase != phRun {
		return
	}
	if flags&FlagSYN != 0 {
		if flags&FlagACK != 0 && seqnum.Value(ack) == c.sentISN+1 {
			c.tgtSyn = true
		}
		return
	}
	if !c.tgtSyn || n == 0 || c.await == awNone || seqnum.Value(ack).LessThan(c.awaitEnd) {
		return
	}
	s := seqnum.Value(seq)
	if !c.respStarted || s.LessThan(c.respStart) {
		c.respStarted, c.respStart, c.resp, c.respDone = true, s, c.resp[:0], 0
	}
	off := int(s.Sub(c.respStart))
	if off > len(c.resp) {
		return // a record before it was lost: the target sends it again
	}
	if off+len(prefix) <= len(c.resp) {
		if len(prefix) == 0 && off == len(c.resp) {
			// The answer goes on beyond the bytes intercept carries: what
			// we need is not there (no response window, or too small).
			c.die(now, RefusedNoResponseBytes, true, out)
		}
		return
	}
	if off+len(prefix) > maxResponse {
		c.die(now, RefusedNoResponseBytes, true, out)
		return
	}
	c.resp = append(c.resp, prefix[len(c.resp)-off:]...)
	c.answer(now, out)
}

// answer reads the complete packets of the awaited answer.
func (c *Conn) answer(now int64, out Output) {
	for c.phase == phRun && c.await != awNone {
		b := c.resp[c.respDone:]
		if len(b) < mysqlproto.HeaderLen {
			return
		}
		n, seq := mysqlproto.Header(b)
		if len(b)-mysqlproto.HeaderLen < n {
			return
		}
		c.respDone += mysqlproto.HeaderLen + n
		if !c.answerPacket(now, seq, b[mysqlproto.HeaderLen:mysqlproto.HeaderLen+n], out) {
			return
		}
	}
}

// answerPacket handles one packet of the awaited answer; it reports
// whether the next packet of the same answer is wanted.
func (c *Conn) answerPacket(now int64, seq uint8, p []byte, out Output) bool {
	switch c.await {
	case awGreeting:
		g, err := mysqlproto.ParseGreeting(p)
		if err != nil || len(g.Scramble) < mysqlproto.ScrambleLen {
			c.die(now, RefusedBadGreeting, true, out)
			return false
		}
		c.greeting, c.hasGreeting = g, true
		c.await = awNone
		c.sendLogin(now, out)
		return false
	case awPrepare:
		ok, err := mysqlproto.ParsePrepareOK(p)
		c.targetPrepared(now, err == nil, ok.StmtID)
		c.await = awNone
		c.unblock(now, out)
		return false
	}
	// The login or COM_CHANGE_USER exchange.
	if len(p) == 0 {
		c.die(now, RefusedLoginFailed, true, out)
		return false
	}
	switch p[0] {
	case mysqlproto.OKHeader:
		c.await = awNone
		if !c.loggedIn {
			c.loggedIn = true
			c.st.LoginsDone++
		}
		c.unblock(now, out)
		return false
	case mysqlproto.ErrHeader:
		e, _ := mysqlproto.ParseError(p)
		msg := ""
		if e != nil {
			msg = e.Error()
		}
		c.cfg.Log.Warn("mysql: the target refused the login; the session is not copied",
			"user", c.login.User, "client", c.client, "target", c.target, "err", msg)
		c.die(now, RefusedLoginFailed, true, out)
		return false
	case mysqlproto.EOFHeader:
		sw, err := mysqlproto.ParseAuthSwitch(p)
		if err != nil {
			c.die(now, RefusedAuthPlugin, true, out) // mysql_old_password's short switch
			return false
		}
		data, ok := c.authAnswer(sw.Plugin, sw.Data)
		if !ok {
			c.cfg.Log.Warn("mysql: the target wants an authentication plugin tcpcopy does not speak; the session is not copied",
				"plugin", sw.Plugin, "user", c.login.User)
			c.die(now, RefusedAuthPlugin, true, out)
			return false
		}
		c.authPlugin, c.authNonce, c.keyAsked = sw.Plugin, sw.Data, false
		c.sendOwn(seq+1, data, out)
		c.expect(c.await)
		return false
	case mysqlproto.MoreDataHeader:
		if c.authPlugin != mysqlproto.CachingSHA2 {
			c.die(now, RefusedAuthPlugin, true, out)
			return false
		}
		switch {
		case !c.keyAsked && len(p) == 2 && p[1] == mysqlproto.FastAuthOK:
			return true // the OK follows
		case !c.keyAsked && len(p) == 2 && p[1] == mysqlproto.FullAuthRequired:
			// Not cached on the server: without TLS the password goes
			// encrypted with the server's public key, which we ask for.
			c.keyAsked = true
			c.sendOwn(seq+1, []byte{mysqlproto.RequestPublicKey}, out)
			c.expect(c.await)
			return false
		case c.keyAsked:
			key, err := mysqlproto.ParsePublicKey(p[1:])
			if err != nil {
				c.die(now, RefusedAuthPlugin, true, out)
				return false
			}
			ct, err := mysqlproto.EncryptPassword(string(c.pw), c.authNonce, key, nil)
			if err != nil {
				c.die(now, RefusedAuthPlugin, true, out)
				return false
			}
			c.st.AuthSHA2Full++
			c.sendOwn(seq+1, ct, out)
			c.expect(c.await)
			return false
		}
	}
	c.die(now, RefusedLoginFailed, true, out)
	return false
}

// targetPrepared records the target's answer to the oldest copied prepare
// it did not answer yet.
func (c *Conn) targetPrepared(now int64, ok bool, id uint32) {
	for i := range c.prepares {
		e := &c.prepares[i]
		if e.dropped || e.targetKnown {
			continue
		}
		e.targetKnown, e.targetOK, e.targetID, e.targetAnswer = true, ok, id, now
		break
	}
	c.resolve(now)
}

// onlineAnswer is the start of an answer of the online server: its
// acknowledgement number (the end of the command it answers) and first
// bytes, kept until the command is consumed (it may be held).
type onlineAnswer struct {
	ack uint32
	n   int
	b   [onlineKeep]byte
}

// onlineKeep is what is kept of an answer: a COM_STMT_PREPARE_OK packet.
const (
	onlineKeep    = mysqlproto.HeaderLen + 12
	onlineAnswers = 64 // the latest answers kept
)

// Online takes a packet of the online server's answer on the connection
// (captured whole): the starts of its answers are kept, so that the
// statement ids of its COM_STMT_PREPARE_OK can be read when the prepare
// is consumed.
func (c *Conn) Online(now int64, flags Flags, seq, ack uint32, payload []byte, out Output) {
	if c.phase == phDead || len(payload) == 0 || c.onlineSet && int32(ack-c.onlineAck) <= 0 {
		return // not the start of an answer
	}
	c.onlineAck, c.onlineSet = ack, true
	if len(c.online) == onlineAnswers {
		copy(c.online, c.online[1:])
		c.online = c.online[:onlineAnswers-1]
	}
	a := onlineAnswer{ack: ack}
	a.n = copy(a.b[:], payload)
	c.online = append(c.online, a)
	if c.matchOnline(now) && c.block == blockOnline {
		c.unblock(now, out)
	}
}

// matchOnline gives the prepares waiting for the online server's answer
// the first answer that acknowledges their end. It reports whether one
// was matched.
func (c *Conn) matchOnline(now int64) bool {
	matched := false
	for i := range c.prepares {
		e := &c.prepares[i]
		if e.onlineKnown {
			continue
		}
		j := 0
		for j < len(c.online) && seqnum.Value(c.online[j].ack).LessThan(e.capEnd) {
			j++
		}
		if j == len(c.online) {
			break
		}
		a := &c.online[j]
		p := a.b[:a.n]
		if len(p) < mysqlproto.HeaderLen {
			break
		}
		ok, err := mysqlproto.ParsePrepareOK(p[mysqlproto.HeaderLen:])
		e.onlineKnown, e.onlineOK, e.onlineID = true, err == nil, ok.StmtID
		c.online = append(c.online[:0], c.online[j+1:]...)
		matched = true
	}
	if matched {
		c.resolve(now)
	}
	return matched
}

// resolve moves the prepares both servers answered into the id map.
func (c *Conn) resolve(now int64) {
	n := 0
	for _, e := range c.prepares {
		if !e.onlineKnown || !e.dropped && !e.targetKnown {
			break
		}
		n++
		if !e.onlineOK {
			continue // the online server refused it: the client will not use it
		}
		if c.stmts == nil {
			c.stmts = make(map[uint32]stmt)
		}
		if _, ok := c.stmts[e.onlineID]; !ok && len(c.stmts) >= maxStmts {
			continue
		}
		switch {
		case e.dropped:
			c.stmts[e.onlineID] = stmt{state: stmtDropped}
		case e.targetOK:
			c.stmts[e.onlineID] = stmt{target: e.targetID, state: stmtOK}
			c.st.Prepares++
		default:
			c.stmts[e.onlineID] = stmt{state: stmtFailed}
		}
	}
	if n > 0 {
		c.prepares = append(c.prepares[:0], c.prepares[n:]...)
	}
}
