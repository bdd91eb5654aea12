package mysqlcopy

import (
	"encoding/binary"

	"github.com/tcpcopy-go/tcpcopy/pkg/mysqlproto"
)

// decide chooses what becomes of the unit whose first packet is in c.ubuf
// (at least c.need payload bytes): pass it (maybe rewritten), drop it, or
// wait (c.block), or read more (a larger c.need).
func (c *Conn) decide(now int64, out Output) {
	p := c.ubuf[mysqlproto.HeaderLen:]
	if c.firstUnit {
		c.decideLogin(now, p, out)
		return
	}
	if len(p) == 0 {
		c.pass(out) // an empty packet: nothing to judge
		return
	}
	cmd := p[0]
	c.unitCmd = cmd
	switch {
	case mysqlproto.HasStmtID(cmd):
		if want := min(c.pktLen, 5); len(p) < want {
			c.need = want
			return
		}
		if len(p) < 5 {
			c.pass(out) // malformed: the target says so as the online server did
			return
		}
		c.decideStmt(now, cmd, p, out)
	case cmd == mysqlproto.ComQuery || cmd == mysqlproto.ComStmtPrepare:
		if !c.cfg.ReadOnly {
			c.pass(out)
			return
		}
		if want := min(c.pktLen, maxClassify); len(p) < want {
			c.need = want
			return
		}
		if ro, _ := mysqlproto.ReadOnly(p[1:]); !ro {
			c.drop(DropReadOnly)
			return
		}
		c.pass(out)
	case cmd == mysqlproto.ComChangeUser:
		if c.pktLen > maxLoginPacket {
			c.die(now, RefusedChangeUser, true, out)
			return
		}
		if len(p) < c.pktLen {
			c.need = c.pktLen
			return
		}
		c.changeUser(now, p, out)
	case cmd == mysqlproto.ComBinlogDump || cmd == mysqlproto.ComBinlogDumpGTID ||
		cmd == mysqlproto.ComRegisterSlave || cmd == mysqlproto.ComTableDump:
		c.die(now, RefusedReplication, true, out)
	case c.cfg.ReadOnly && writesCommand(cmd):
		c.drop(DropReadOnly)
	default:
		if cmd == mysqlproto.ComResetConnection {
			c.forgetStmts()
		}
		c.pass(out)
	}
}

// writesCommand reports commands other than statements that change the
// server: not copied with ReadOnly.
func writesCommand(cmd byte) bool {
	switch cmd {
	case mysqlproto.ComCreateDB, mysqlproto.ComDropDB, mysqlproto.ComRefresh, mysqlproto.ComShutdown,
		mysqlproto.ComProcessKill, mysqlproto.ComDelayedInsert, mysqlproto.ComDebug:
		return true
	}
	return false
}

// pass sends the unit's first packet (as c.ubuf holds it) and the rest of
// the unit as it comes.
func (c *Conn) pass(out Output) {
	c.deciding = false
	c.onlineWaitAt = 0
	c.unitAct = actPass
	c.st.Commands++
	c.emit(c.unitAck, c.unitCap, c.ubuf, out)
	c.ubuf = c.ubuf[:0]
}

// drop leaves the unit out of the sent stream.
func (c *Conn) drop(why DropReason) {
	c.deciding = false
	c.onlineWaitAt = 0
	c.unitAct = actDrop
	c.st.Dropped[why]++
	c.ubuf = c.ubuf[:0]
}

// decideStmt maps the statement id of a prepared-statement command.
func (c *Conn) decideStmt(now int64, cmd byte, p []byte, out Output) {
	id := le32(p[mysqlproto.StmtIDOffset:])
	if id == 0xffffffff {
		// MariaDB: "the statement this connection prepared last", the
		// same on the target.
		c.pass(out)
		return
	}
	s, ok := c.stmts[id]
	if !ok {
		for i := range c.prepares {
			if !c.prepares[i].onlineKnown {
				// The online server's answer to a prepare is not in yet:
				// wait for it, briefly.
				if c.onlineWaitAt == 0 {
					c.onlineWaitAt = now
				}
				c.block, c.blockAt = blockOnline, c.onlineWaitAt
				return
			}
		}
		c.drop(DropUnknownStatement)
		return
	}
	if cmd == mysqlproto.ComStmtClose {
		delete(c.stmts, id)
	}
	switch s.state {
	case stmtFailed:
		c.drop(DropPrepareFailed)
		return
	case stmtDropped:
		c.drop(DropReadOnly)
		return
	}
	binary.LittleEndian.PutUint32(c.ubuf[mysqlproto.HeaderLen+mysqlproto.StmtIDOffset:], s.target)
	c.st.StmtRewrites++
	c.pass(out)
}

func (c *Conn) forgetStmts() {
	clear(c.stmts)
	c.prepares = c.prepares[:0]
}

// decideLogin handles the client's captured login (HandshakeResponse or
// SSLRequest): it is replaced by ours, for the same user.
func (c *Conn) decideLogin(now int64, p []byte, out Output) {
	c.firstUnit = false
	c.deciding = false
	c.unitAct = actSkip
	c.ubuf = c.ubuf[:0]
	out.Uncopied(uint32(c.capISN), uint32(c.capNext), true)
	r, err := mysqlproto.ParseHandshakeResponse(p)
	switch {
	case err != nil:
		c.die(now, RefusedBadLogin, true, out)
		return
	case r.SSLRequest || r.Caps&mysqlproto.ClientSSL != 0:
		c.die(now, RefusedTLS, true, out)
		return
	case r.Caps&(mysqlproto.ClientCompress|mysqlproto.ClientZstdCompression) != 0:
		c.die(now, RefusedCompression, true, out)
		return
	}
	l := Login{User: r.User, Database: r.Database, Caps: r.Caps, ExtCaps: r.ExtCaps, Charset: r.Charset,
		MaxPacket: r.MaxPacket, Attrs: r.Attrs}
	c.cfg.Learnt.learn(c.client, c.target, l)
	pw, ok := c.cfg.Users[r.User]
	if !ok {
		c.die(now, RefusedUnknownUser, true, out)
		return
	}
	if !c.loginAckSet {
		c.loginAck, c.loginAckSet = c.unitAck, true
	}
	c.login, c.pw, c.loginReady = l, pw, true
	c.block, c.blockAt = blockLogin, now
	c.sendLogin(now, out)
}

// sendLogin answers the target's greeting once both it and the login to
// make are known.
func (c *Conn) sendLogin(now int64, out Output) {
	if !c.loginReady || !c.hasGreeting || c.loginSent || c.phase != phRun {
		return
	}
	g := &c.greeting
	l := &c.login
	const never = mysqlproto.ClientSSL | mysqlproto.ClientCompress | mysqlproto.ClientZstdCompression
	caps := l.Caps &^ never
	caps &= g.Caps | mysqlproto.ClientLongPassword
	caps |= mysqlproto.ClientProtocol41 | mysqlproto.ClientSecureConnection
	caps &^= mysqlproto.ClientConnectWithDB
	if l.Database != "" {
		caps |= mysqlproto.ClientConnectWithDB
	}
	plugin := g.Plugin
	if plugin != mysqlproto.NativePassword && plugin != mysqlproto.CachingSHA2 {
		plugin = mysqlproto.NativePassword // the server switches us if the account wants another
	}
	c.authPlugin, c.authNonce = plugin, g.Scramble
	data, _ := c.authAnswer(plugin, g.Scramble)
	r := mysqlproto.HandshakeResponse{
		Caps: caps, ExtCaps: l.ExtCaps & g.ExtCaps, MaxPacket: l.MaxPacket, Charset: l.Charset,
		User: l.User, AuthData: data, Database: l.Database, Plugin: plugin, Attrs: l.Attrs,
	}
	if caps&mysqlproto.ClientConnectAttrs == 0 {
		r.Attrs = nil
	}
	c.sessCaps = caps
	c.loginSent = true
	c.sendOwn(1, mysqlproto.AppendHandshakeResponse(nil, &r), out)
	c.expect(awAuth)
}

// authAnswer returns the answer of plugin to nonce with the session's
// password, and false for a plugin we do not speak.
func (c *Conn) authAnswer(plugin string, nonce []byte) ([]byte, bool) {
	switch plugin {
	case mysqlproto.NativePassword:
		c.st.AuthNative++
		return mysqlproto.NativeAuth(string(c.pw), nonce), true
	case mysqlproto.CachingSHA2:
		c.st.AuthSHA2Fast++
		return mysqlproto.CachingSHA2Auth(string(c.pw), nonce), true
	}
	return nil, false
}

// changeUser redoes a COM_CHANGE_USER for the target: the same user, its
// password from the users file, the target's nonce.
func (c *Conn) changeUser(now int64, p []byte, out Output) {
	cu, err := mysqlproto.ParseChangeUser(p, c.sessCaps)
	if err != nil {
		c.die(now, RefusedChangeUser, true, out)
		return
	}
	pw, ok := c.cfg.Users[cu.User]
	if !ok {
		c.die(now, RefusedChangeUser, true, out)
		return
	}
	c.pw = pw
	plugin := cu.Plugin
	if plugin != mysqlproto.CachingSHA2 {
		plugin = mysqlproto.NativePassword
	}
	if cu.Plugin != "" {
		cu.Plugin = plugin
	}
	c.authPlugin, c.authNonce, c.keyAsked = plugin, c.greeting.Scramble, false
	cu.AuthData, _ = c.authAnswer(plugin, c.greeting.Scramble)
	c.forgetStmts()
	c.st.ChangeUsers++
	c.ubuf = mysqlproto.AppendPacket(c.ubuf[:0], c.pktSeq, mysqlproto.AppendChangeUser(nil, &cu, c.sessCaps))
	c.pass(out)
}
