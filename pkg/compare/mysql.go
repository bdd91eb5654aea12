package compare

// mysql.go compares MySQL answers (a Conn made by Engine.NewMySQLConn):
// each answer is read packet by packet (docs/mysql.md, the client/server
// protocol's OK, ERR, EOF, result sets and COM_STMT_PREPARE_OK) from the
// bytes kept, and compared by what it means before its bytes are.

import (
	"bytes"
	"encoding/binary"
	"strconv"

	"github.com/tcpcopy-go/tcpcopy/pkg/mysqlproto"
	"github.com/tcpcopy-go/tcpcopy/pkg/streamhash"
)

// MySQLType is what a MySQL answer is.
type MySQLType uint8

// MySQL answer types.
const (
	MySQLNone      MySQLType = iota // not a MySQL answer (or not read)
	MySQLOK                         // an OK packet
	MySQLError                      // an ERR packet
	MySQLResultSet                  // a result set (column count, definitions, rows)
	MySQLPrepared                   // a COM_STMT_PREPARE_OK and its definitions
	MySQLInfile                     // a LOAD DATA LOCAL request (0xfb)
	MySQLOther                      // anything else (COM_STATISTICS' text, an EOF, ...)
)

var mysqlTypeNames = [...]string{"", "ok", "error", "result_set", "prepare_ok", "local_infile", "other"}

func (t MySQLType) String() string {
	if int(t) < len(mysqlTypeNames) {
		return mysqlTypeNames[t]
	}
	return "unknown"
}

// MySQLAnswer summarises a MySQL answer (Side.MySQL).
type MySQLAnswer struct {
	Type MySQLType // of the answer's first result
	// ErrCode and SQLState are those of an ERR packet (the answer, or one
	// that ended a result set); ErrCode is 0 without one.
	ErrCode  uint16
	SQLState [5]byte
	// Affected is the affected rows of the OK packets (a multi-statement
	// query's summed).
	Affected uint64
	// Columns and Params: a result set's column count (the first result's),
	// a prepared statement's columns and parameters.
	Columns, Params int
	// Rows counts the rows of every result set; -1 if the answer is not
	// Whole.
	Rows int
	// Results counts the results (a multi-statement query has several).
	Results int
	// Whole reports that every packet of the answer was kept and read: it
	// fits in Config.Bytes.
	Whole bool
	// noMeta: a result set came without its column definitions (MariaDB's
	// MARIADB_CLIENT_CACHE_METADATA: the client has them).
	noMeta bool
}

// MySQL command names, for the request line.
var mysqlCommands = [...]string{
	"COM_SLEEP", "COM_QUIT", "COM_INIT_DB", "COM_QUERY", "COM_FIELD_LIST", "COM_CREATE_DB", "COM_DROP_DB",
	"COM_REFRESH", "COM_SHUTDOWN", "COM_STATISTICS", "COM_PROCESS_INFO", "COM_CONNECT", "COM_PROCESS_KILL",
	"COM_DEBUG", "COM_PING", "COM_TIME", "COM_DELAYED_INSERT", "COM_CHANGE_USER", "COM_BINLOG_DUMP",
	"COM_TABLE_DUMP", "COM_CONNECT_OUT", "COM_REGISTER_SLAVE", "COM_STMT_PREPARE", "COM_STMT_EXECUTE",
	"COM_STMT_SEND_LONG_DATA", "COM_STMT_CLOSE", "COM_STMT_RESET", "COM_SET_OPTION", "COM_STMT_FETCH",
	"COM_DAEMON", "COM_BINLOG_DUMP_GTID", "COM_RESET_CONNECTION",
}

// mysqlLine writes the request line of a MySQL command packet p (header
// included) into dst: the command's name, then the SQL text of a query or
// prepare (or the database, table), or the statement id. It reports the
// command byte, and false if p does not start a command packet.
func mysqlLine(dst []byte, p []byte) ([]byte, byte, bool) {
	if len(p) < mysqlproto.HeaderLen+1 {
		return dst, 0, false
	}
	if _, seq := mysqlproto.Header(p); seq != 0 {
		return dst, 0, false
	}
	body := p[mysqlproto.HeaderLen:]
	cmd := body[0]
	switch {
	case int(cmd) < len(mysqlCommands):
		dst = append(dst, mysqlCommands[cmd]...)
	case cmd == mysqlproto.ComStmtBulkExecute:
		dst = append(dst, "COM_STMT_BULK_EXECUTE"...)
	default:
		dst = append(dst, "0x"...)
		dst = append(dst, "0123456789abcdef"[cmd>>4], "0123456789abcdef"[cmd&15])
	}
	switch {
	case cmd == mysqlproto.ComQuery || cmd == mysqlproto.ComStmtPrepare || cmd == mysqlproto.ComInitDB || cmd == mysqlproto.ComFieldList:
		n := min(len(body)-1, cap(dst)-len(dst)-1)
		if n > 0 {
			dst = append(dst, ' ')
			dst = append(dst, body[1:1+n]...)
		}
	case mysqlproto.HasStmtID(cmd) && len(body) >= 5:
		dst = append(dst, " stmt "...)
		dst = strconv.AppendUint(dst, uint64(binary.LittleEndian.Uint32(body[1:])), 10)
	}
	return dst, cmd, true
}

// preparedKept is how many prepared statements' texts a MySQL Conn keeps
// for the request lines of the commands that name them.
const preparedKept = 16

// preparedLine is a prepared statement: the online server's id and the
// SQL text of its COM_STMT_PREPARE.
type preparedLine struct {
	id   uint32
	n    uint8
	text [maxRequestLine]byte
}

// namePrepared reads the statement id of the online server's
// COM_STMT_PREPARE_OK answering s, once its first bytes are in, and keeps
// the statement's text under it.
func (c *Conn) namePrepared(s *slot) {
	b := s.on.buf[:s.on.have]
	if len(b) < mysqlproto.HeaderLen+5 {
		return
	}
	s.named = true
	if b[mysqlproto.HeaderLen] != mysqlproto.OKHeader {
		return // refused: no statement
	}
	if c.prepared == nil {
		c.prepared = new([preparedKept]preparedLine)
	}
	p := &c.prepared[c.prepN%preparedKept]
	c.prepN++
	text, _ := bytes.CutPrefix(s.req.line[:s.req.lineN], []byte("COM_STMT_PREPARE "))
	p.id = binary.LittleEndian.Uint32(b[mysqlproto.HeaderLen+1:])
	p.n = uint8(copy(p.text[:], text))
}

// preparedText returns the text of the statement the online server
// prepared as id, or nil.
func (c *Conn) preparedText(id uint32) []byte {
	if c.prepared == nil {
		return nil
	}
	for i := c.prepN - 1; i >= 0 && i >= c.prepN-preparedKept; i-- {
		if p := &c.prepared[i%preparedKept]; p.id == id {
			return p.text[:p.n]
		}
	}
	return nil
}

// Packet roles in an answer.
type myRole uint8

const (
	roleData     myRole = iota // rows and anything else: compared byte by byte
	roleColumn                 // the column count and definitions
	roleVolatile               // OK, EOF, ERR, PREPARE_OK: compared by their fields
)

type myState uint8

const (
	stStart   myState = iota // an answer (or the next result of a multi-statement)
	stDefs                   // column or parameter definitions, w.left to come
	stDefsEOF                // after definitions: an EOF, unless CLIENT_DEPRECATE_EOF
	stRows                   // rows until EOF, OK-as-EOF or ERR
	stDone                   // the answer ended
	stOther                  // an answer without structure
)

// SERVER_MORE_RESULTS_EXISTS: another result follows.
const serverMoreResults = 0x0008

// myWalk reads the packets of one answer from the bytes kept.
type myWalk struct {
	b        []byte
	off      int
	cmd      byte
	st       myState
	left     int
	cols     int  // a prepare's column definitions after its parameters'
	prepared bool // the definitions are a prepare's
	a        *MySQLAnswer
}

func (w *myWalk) init(b []byte, cmd byte, a *MySQLAnswer) {
	*w = myWalk{b: b, cmd: cmd, a: a}
	*a = MySQLAnswer{}
}

// next returns the next whole packet kept: its offset, the packet (header
// included) and its role; ok is false when no whole packet is left.
func (w *myWalk) next() (off int, pkt []byte, role myRole, ok bool) {
	rest := w.b[w.off:]
	if len(rest) < mysqlproto.HeaderLen {
		return w.off, nil, 0, false
	}
	n, _ := mysqlproto.Header(rest)
	if len(rest)-mysqlproto.HeaderLen < n {
		return w.off, nil, 0, false
	}
	off = w.off
	pkt = rest[:mysqlproto.HeaderLen+n]
	w.off += len(pkt)
	return off, pkt, w.step(pkt[mysqlproto.HeaderLen:]), true
}

// content returns the next whole packet kept that carries data (not
// roleVolatile; not a column definition if noDefs).
func (w *myWalk) content(noDefs bool) (off int, pkt []byte, role myRole, ok bool) {
	for {
		off, pkt, role, ok = w.next()
		if !ok || role == roleData || role == roleColumn && !noDefs {
			return off, pkt, role, ok
		}
	}
}

// run reads every whole packet kept; it returns the end of the last.
func (w *myWalk) run() int {
	for {
		if _, _, _, ok := w.next(); !ok {
			return w.off
		}
	}
}

// done reports whether the answer ended within the packets read.
func (w *myWalk) done() bool { return w.st == stDone }

func (w *myWalk) setType(t MySQLType) {
	if w.a.Results == 1 {
		w.a.Type = t
	}
}

// step reads payload p of the next packet.
func (w *myWalk) step(p []byte) myRole {
	a := w.a
	switch w.st {
	case stStart:
		a.Results++
		if len(p) == 0 {
			w.setType(MySQLOther)
			w.st = stOther
			return roleData
		}
		switch p[0] {
		case mysqlproto.OKHeader:
			if w.cmd == mysqlproto.ComStmtPrepare && len(p) >= 12 {
				w.setType(MySQLPrepared)
				a.Columns = int(binary.LittleEndian.Uint16(p[5:]))
				a.Params = int(binary.LittleEndian.Uint16(p[7:]))
				w.prepared, w.cols, w.left = true, a.Columns, a.Params
				if w.left == 0 {
					w.cols, w.left = 0, a.Columns
				}
				w.st = stDefs
				if w.left == 0 {
					w.st = stDone
				}
				return roleVolatile
			}
			if len(p) >= 7 {
				w.setType(MySQLOK)
				w.ok(p[1:])
				return roleVolatile
			}
		case mysqlproto.ErrHeader:
			w.setType(MySQLError)
			w.err(p)
			return roleVolatile
		case 0xfb:
			w.setType(MySQLInfile)
			w.st = stDone
			return roleData
		}
		if w.cmd == mysqlproto.ComQuery || w.cmd == mysqlproto.ComStmtExecute {
			// The column count, and with MARIADB_CLIENT_CACHE_METADATA
			// a byte saying whether the definitions follow.
			if n, size, null, err := mysqlproto.ReadLenEnc(p); err == nil && !null && len(p)-size <= 1 && n > 0 && n < 1<<16 {
				w.setType(MySQLResultSet)
				if a.Type == MySQLResultSet && a.Results == 1 {
					a.Columns = int(n)
				}
				w.prepared, w.left, w.st = false, int(n), stDefs
				if len(p) > size && p[size] == 0 {
					a.noMeta = true
					w.st = stDefsEOF
				}
				return roleVolatile // its count is compared as Columns
			}
		}
		w.setType(MySQLOther)
		w.st = stOther
		return roleData
	case stDefs:
		w.left--
		if w.left == 0 {
			w.st = stDefsEOF
		}
		return roleColumn
	case stDefsEOF:
		eof := len(p) == 5 && p[0] == mysqlproto.EOFHeader
		switch {
		case w.prepared && w.cols > 0:
			w.left, w.cols, w.st = w.cols, 0, stDefs
		case w.prepared:
			w.st = stDone
		default:
			w.st = stRows
		}
		if eof {
			return roleVolatile
		}
		return w.step(p)
	case stRows:
		switch {
		case len(p) > 0 && p[0] == mysqlproto.EOFHeader && len(p) < 0xffffff:
			if len(p) == 5 { // EOF: warnings, status
				w.more(binary.LittleEndian.Uint16(p[3:]))
			} else {
				w.ok(p[1:]) // OK as EOF (CLIENT_DEPRECATE_EOF)
			}
			return roleVolatile
		case len(p) > 0 && p[0] == mysqlproto.ErrHeader:
			w.err(p)
			return roleVolatile
		}
		a.Rows++
		return roleData
	}
	return roleData
}

// ok reads an OK packet's fields after its header byte: affected rows,
// last insert id (ignored), status flags; the warnings and the info are
// not read.
func (w *myWalk) ok(p []byte) {
	aff, n, _, err := mysqlproto.ReadLenEnc(p)
	if err != nil {
		w.st = stDone
		return
	}
	w.a.Affected += aff
	_, m, _, err := mysqlproto.ReadLenEnc(p[n:])
	if err != nil || len(p) < n+m+2 {
		w.st = stDone
		return
	}
	w.more(binary.LittleEndian.Uint16(p[n+m:]))
}

// more ends a result: the next follows if the status says so.
func (w *myWalk) more(status uint16) {
	w.st = stDone
	if status&serverMoreResults != 0 {
		w.st = stStart
	}
}

// err reads an ERR packet: code and SQLSTATE (the message is not read).
func (w *myWalk) err(p []byte) {
	w.st = stDone
	if len(p) >= 3 {
		w.a.ErrCode = binary.LittleEndian.Uint16(p[1:])
	}
	if len(p) >= 9 && p[3] == '#' {
		copy(w.a.SQLState[:], p[4:9])
	}
}

// summarize reads an answer's kept bytes into a.
func (e *Engine) summarize(w *myWalk, x *acc, cmd byte, a *MySQLAnswer) {
	w.init(x.buf[:min(x.have, x.n)], cmd, a)
	end := w.run()
	ended := w.done() || w.st == stOther || w.st == stDefsEOF && w.prepared && w.cols == 0
	a.Whole = x.have >= x.n && end == x.n && ended
	if !a.Whole {
		a.Rows = -1
	}
}

// compareMySQL compares two complete MySQL answers: what they are (OK,
// ERR, result set), the error's code and SQLSTATE, the affected rows, the
// columns, the rows (answers kept whole), then their bytes: the packets
// kept, in step (OK, EOF and ERR packets by the fields above only, a
// PREPARE_OK without its statement id), and what follows them as lengths
// and hashes.
func (e *Engine) compareMySQL(s *slot, now int64) {
	r := e.begin(s, Same, ReasonNone) // summarises both answers
	ao, at := &r.Online.MySQL, &r.Target.MySQL
	switch {
	case ao.Type != at.Type || (ao.ErrCode != 0) != (at.ErrCode != 0):
		r.Kind = KindMySQLResult
	case ao.ErrCode != at.ErrCode || ao.SQLState != at.SQLState:
		r.Kind = KindMySQLError
	case ao.Whole && at.Whole && ao.Affected != at.Affected:
		r.Kind = KindMySQLAffected
	case ao.Columns != at.Columns || ao.Params != at.Params:
		r.Kind = KindMySQLColumns
	case ao.Whole && at.Whole && ao.Rows != at.Rows:
		r.Kind = KindMySQLRows
	default:
		r.Kind = e.mysqlBytes(r, s)
	}
	if r.Kind != KindNone {
		r.Verdict = Differs
	}
	e.finishResult(s, now)
}

// mysqlBytes compares the packets of the answers that carry data (column
// and parameter definitions, rows, anything unknown) in step, by their
// payloads: OK, EOF, ERR and PREPARE_OK packets and column counts are
// compared by their fields (the summaries), so that an answer with EOF
// packets and one without (CLIENT_DEPRECATE_EOF: a joined connection's
// login has tcpcopy's capabilities, not the client's) compare the same;
// column definitions are skipped when one side's result set came without
// them (MariaDB's metadata cache). What follows the packets kept is
// compared as its length and hash. It sets r.Offset where it knows it.
func (e *Engine) mysqlBytes(r *Result, s *slot) Kind {
	on, tg := &s.on, &s.tg
	noDefs := r.Online.MySQL.noMeta || r.Target.MySQL.noMeta
	var wo, wt myWalk
	wo.init(on.buf[:min(on.have, on.n)], s.req.cmd, &e.myScratch[0])
	wt.init(tg.buf[:min(tg.have, tg.n)], s.req.cmd, &e.myScratch[1])
	var endO, endT int
	for {
		oo, po, ro, ok1 := wo.content(noDefs)
		ot, pt, _, ok2 := wt.content(noDefs)
		if !ok1 || !ok2 {
			endO, endT = wo.off, wt.off
			if ok1 {
				endO = oo
			}
			if ok2 {
				endT = ot
			}
			if r.Online.MySQL.Whole && r.Target.MySQL.Whole {
				// Every packet was read: one side has more data.
				if ok1 || ok2 {
					return KindMySQLChecksum
				}
				return KindNone
			}
			break
		}
		po, pt = po[mysqlproto.HeaderLen:], pt[mysqlproto.HeaderLen:]
		if i := firstDiff(po, pt); i >= 0 || len(po) != len(pt) {
			if i < 0 {
				i = min(len(po), len(pt))
			}
			if oo == ot {
				r.Offset = oo + mysqlproto.HeaderLen + i
			}
			if ro == roleColumn {
				return KindMySQLColumns
			}
			return KindMySQLChecksum
		}
	}
	// The rest, beyond the bytes kept.
	lo, lt := on.n-endO, tg.n-endT
	if lo != lt {
		return KindMySQLChecksum
	}
	ho := streamhash.Cut(on.hash, streamhash.Sum(on.buf[:endO]), lo)
	ht := streamhash.Cut(tg.hash, streamhash.Sum(tg.buf[:endT]), lt)
	if ho != ht {
		if i := firstDiff(on.buf[endO:on.have], tg.buf[endT:tg.have]); i >= 0 && endO == endT {
			r.Offset = endO + i
		}
		return KindMySQLChecksum
	}
	return KindNone
}

// Text is a short description of a MySQL answer, for logs and the
// page: "OK, 1 affected row", "ERR 1146 (42S02)", "result set: 2
// columns, 3 rows".
func (a *MySQLAnswer) Text() string {
	var b []byte
	switch a.Type {
	case MySQLOK:
		b = append(b, "OK, "...)
		b = strconv.AppendUint(b, a.Affected, 10)
		b = append(b, " affected rows"...)
	case MySQLError:
		b = append(b, "ERR "...)
		b = strconv.AppendUint(b, uint64(a.ErrCode), 10)
		if a.SQLState != [5]byte{} {
			b = append(b, " ("...)
			b = append(b, a.SQLState[:]...)
			b = append(b, ')')
		}
	case MySQLResultSet:
		b = append(b, "result set: "...)
		b = strconv.AppendInt(b, int64(a.Columns), 10)
		b = append(b, " columns, "...)
		if a.Rows >= 0 {
			b = strconv.AppendInt(b, int64(a.Rows), 10)
			b = append(b, " rows"...)
		} else {
			b = append(b, "rows beyond the window"...)
		}
		if a.Results > 1 {
			b = append(b, ", "...)
			b = strconv.AppendInt(b, int64(a.Results), 10)
			b = append(b, " results"...)
		}
		if a.ErrCode != 0 {
			b = append(b, ", ERR "...)
			b = strconv.AppendUint(b, uint64(a.ErrCode), 10)
		}
	case MySQLPrepared:
		b = append(b, "prepared: "...)
		b = strconv.AppendInt(b, int64(a.Params), 10)
		b = append(b, " parameters, "...)
		b = strconv.AppendInt(b, int64(a.Columns), 10)
		b = append(b, " columns"...)
	case MySQLNone:
		return ""
	default:
		b = append(b, a.Type.String()...)
	}
	return string(b)
}
