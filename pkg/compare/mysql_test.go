package compare

import (
	"bytes"
	"strings"
	"testing"

	"github.com/tcpcopy-go/tcpcopy/pkg/streamhash"
)

// MySQL packets as MariaDB 10.11 sends them to go-sql-driver/mysql.

// mpkt frames payloads as packets with sequence ids from seq.
func mpkt(seq byte, payloads ...[]byte) []byte {
	var out []byte
	for _, p := range payloads {
		out = append(out, byte(len(p)), byte(len(p)>>8), byte(len(p)>>16), seq)
		out = append(out, p...)
		seq++
	}
	return out
}

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

var (
	// OK: affected rows 1, last insert id 0, status 0x0002 (autocommit),
	// warnings 0.
	okInsert = []byte{0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00}
	// The same with last insert id 7, status 0x0003 (in transaction) and
	// a warning: none of it is compared.
	okInsertOther = []byte{0x00, 0x01, 0x07, 0x03, 0x00, 0x01, 0x00}
	okTwo         = []byte{0x00, 0x02, 0x00, 0x02, 0x00, 0x00, 0x00}
	// ERR 1146 (0x047a), SQLSTATE 42S02.
	errNoTable = cat([]byte{0xff, 0x7a, 0x04, '#', '4', '2', 'S', '0', '2'}, []byte("Table 'shop.gone' doesn't exist"))
	// The same code and state, another message: not compared.
	errNoTableMsg = cat([]byte{0xff, 0x7a, 0x04, '#', '4', '2', 'S', '0', '2'}, []byte("Table 'test.gone' doesn't exist"))
	// ERR 1064 (0x0428), SQLSTATE 42000.
	errSyntax = cat([]byte{0xff, 0x28, 0x04, '#', '4', '2', '0', '0', '0'}, []byte("You have an error in your SQL syntax"))
	// A column definition: catalog "def", schema "shop", table and
	// original table "items", name and original name "name", then 0x0c,
	// charset 33, length 192, type VAR_STRING (0xfd), flags, decimals,
	// filler.
	colName = cat([]byte{3}, []byte("def"), []byte{4}, []byte("shop"), []byte{5}, []byte("items"), []byte{5}, []byte("items"),
		[]byte{4}, []byte("name"), []byte{4}, []byte("name"),
		[]byte{0x0c, 0x21, 0x00, 0xc0, 0x00, 0x00, 0x00, 0xfd, 0x00, 0x00, 0x00, 0x00, 0x00})
	// The same column, "qty", type LONG (0x03).
	colQty = cat([]byte{3}, []byte("def"), []byte{4}, []byte("shop"), []byte{5}, []byte("items"), []byte{5}, []byte("items"),
		[]byte{3}, []byte("qty"), []byte{3}, []byte("qty"),
		[]byte{0x0c, 0x3f, 0x00, 0x0b, 0x00, 0x00, 0x00, 0x03, 0x00, 0x00, 0x00, 0x00, 0x00})
	// EOF: warnings 0, status 0x0022; the same with status 0x0002.
	eof      = []byte{0xfe, 0x00, 0x00, 0x22, 0x00}
	eofOther = []byte{0xfe, 0x01, 0x00, 0x02, 0x00}
	// OK as EOF (CLIENT_DEPRECATE_EOF): 0xfe, affected 0, insert id 0,
	// status, warnings.
	okEOF = []byte{0xfe, 0x00, 0x00, 0x22, 0x00, 0x00, 0x00}
	// EOF with SERVER_MORE_RESULTS_EXISTS (0x0008).
	eofMore = []byte{0xfe, 0x00, 0x00, 0x2a, 0x00}
	// Text rows: one field each.
	row1 = cat([]byte{6}, []byte("item-1"))
	row2 = cat([]byte{6}, []byte("item-2"))
	rowX = cat([]byte{6}, []byte("item-X"))
	// A binary row: header 0, NULL bitmap, the string.
	binRow1 = cat([]byte{0x00, 0x00, 6}, []byte("item-1"))
	// COM_STMT_PREPARE_OK: statement id, 1 column, 1 parameter, filler,
	// warnings.
	prepOK1 = []byte{0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00}
	prepOK9 = []byte{0x00, 0x09, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00}
	prepOK2 = []byte{0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x00, 0x02, 0x00, 0x00, 0x00, 0x00}
	// A parameter definition ("?").
	param = cat([]byte{3}, []byte("def"), []byte{0, 0, 0, 1}, []byte("?"), []byte{0, 0x0c, 0x3f, 0x00, 0x00, 0x00, 0x00, 0x00, 0xfd, 0x80, 0x00, 0x00, 0x00, 0x00})
)

func query(sql string) string   { return string(mpkt(0, cat([]byte{0x03}, []byte(sql)))) }
func prepare(sql string) string { return string(mpkt(0, cat([]byte{0x16}, []byte(sql)))) }
func execute(id byte) string {
	return string(mpkt(0, []byte{0x17, id, 0, 0, 0, 0x00, 0x01, 0, 0, 0, 0x01, 0xfe, 0x00, 0x01, '1'}))
}

// resultSet is a text result set of one column with legacy EOFs.
func resultSet(col []byte, rows ...[]byte) []byte {
	ps := [][]byte{{0x01}, col, eof}
	ps = append(ps, rows...)
	return mpkt(1, append(ps, eof)...)
}

func newMySQLConn(t *testing.T, cfg *Config) *conn {
	cv := newConn(t, cfg, false)
	cv.c = cv.c.e.NewMySQLConn()
	return cv
}

func TestMySQLVerdicts(t *testing.T) {
	bigEOF := func(last []byte, n int, end []byte) []byte { // a result set of n rows, the last one given
		ps := [][]byte{{0x01}, colName, eof}
		for range n - 1 {
			ps = append(ps, row1)
		}
		return mpkt(1, append(ps, last, end)...)
	}
	big := func(last []byte, n int) []byte { return bigEOF(last, n, eof) }
	tests := []struct {
		name           string
		bytes          int // Config.Bytes, 0 default
		req            string
		online, target []byte
		onSeg, tgSeg   int
		verdict        Verdict
		kind           Kind
		offset         int // checked when >= 0
		onText, tgText string
	}{
		{name: "ok same, volatile fields aside", req: query("INSERT INTO items VALUES (1, 'a', 1)"),
			online: mpkt(1, okInsert), target: mpkt(1, okInsertOther), verdict: Same, onText: "OK, 1 affected rows"},
		{name: "ok vs err", req: query("SELECT * FROM gone"), online: mpkt(1, okInsert), target: mpkt(1, errNoTable),
			verdict: Differs, kind: KindMySQLResult, tgText: "ERR 1146 (42S02)"},
		{name: "result set vs err", req: query("SELECT name FROM gone"), online: resultSet(colName, row1), target: mpkt(1, errNoTable),
			verdict: Differs, kind: KindMySQLResult, onText: "result set: 1 columns, 1 rows", tgText: "ERR 1146 (42S02)"},
		{name: "err codes differ", req: query("SELEC 1"), online: mpkt(1, errSyntax), target: mpkt(1, errNoTable),
			verdict: Differs, kind: KindMySQLError},
		{name: "err messages differ", req: query("SELECT * FROM gone"), online: mpkt(1, errNoTable), target: mpkt(1, errNoTableMsg),
			verdict: Same},
		{name: "affected rows", req: query("UPDATE items SET qty = 1"), online: mpkt(1, okInsert), target: mpkt(1, okTwo),
			verdict: Differs, kind: KindMySQLAffected},
		{name: "result set same, eof status aside", req: query("SELECT name FROM items"),
			online: resultSet(colName, row1, row2), target: mpkt(1, []byte{0x01}, colName, eofOther, row1, row2, eofOther), verdict: Same},
		{name: "row count", req: query("SELECT name FROM items"), online: resultSet(colName, row1, row2), target: resultSet(colName, row1),
			verdict: Differs, kind: KindMySQLRows, onText: "result set: 1 columns, 2 rows", tgText: "result set: 1 columns, 1 rows"},
		{name: "row content", req: query("SELECT name FROM items"), online: resultSet(colName, row1, row2), target: resultSet(colName, row1, rowX),
			verdict: Differs, kind: KindMySQLChecksum, offset: len(resultSet(colName, row1, row2)) - len(row2) - 4 - len(eof) + 6},
		{name: "column count", req: query("SELECT * FROM items"), online: resultSet(colName, row1),
			target: mpkt(1, []byte{0x02}, colName, colQty, eof, cat(row1, []byte{1, '1'}), eof), verdict: Differs, kind: KindMySQLColumns},
		{name: "column definition", req: query("SELECT name FROM items"), online: resultSet(colName, row1), target: resultSet(colQty, row1),
			verdict: Differs, kind: KindMySQLColumns},
		{name: "deprecate eof", req: query("SELECT name FROM items"), online: mpkt(1, []byte{0x01}, colName, row1, okEOF),
			target: mpkt(1, []byte{0x01}, colName, row1, okEOF), verdict: Same, onText: "result set: 1 columns, 1 rows"},
		{name: "deprecate eof, empty set", req: query("SELECT name FROM items WHERE 0"), online: mpkt(1, []byte{0x01}, colName, okEOF),
			target: mpkt(1, []byte{0x01}, colName, row1, okEOF), verdict: Differs, kind: KindMySQLRows, onText: "result set: 1 columns, 0 rows"},
		{name: "deprecate eof and metadata byte vs legacy eof", req: query("SELECT name FROM items"),
			online: mpkt(1, []byte{0x01, 0x01}, colName, row1, okEOF), target: resultSet(colName, row1), verdict: Same,
			onText: "result set: 1 columns, 1 rows"},
		{name: "metadata cached vs sent", req: execute(1), online: mpkt(1, []byte{0x01, 0x00}, binRow1, okEOF),
			target: mpkt(1, []byte{0x01}, colName, eof, binRow1, eof), verdict: Same, onText: "result set: 1 columns, 1 rows"},
		{name: "metadata cached, rows differ", req: execute(1), online: mpkt(1, []byte{0x01, 0x00}, binRow1, okEOF),
			target: mpkt(1, []byte{0x01}, colName, eof, binRow1, binRow1, eof), verdict: Differs, kind: KindMySQLRows},
		{name: "prepare, deprecate eof vs legacy", req: prepare("SELECT name FROM items WHERE id = ?"),
			online: mpkt(1, prepOK1, param, colName), target: mpkt(1, prepOK9, param, eof, colName, eof), verdict: Same},
		{name: "multi results", req: query("SELECT name FROM items; SELECT name FROM items"),
			online: mpkt(1, []byte{0x01}, colName, eof, row1, eofMore, []byte{0x01}, colName, eof, row1, eof),
			target: mpkt(1, []byte{0x01}, colName, eof, row1, eofMore, []byte{0x01}, colName, eof, row1, eof), verdict: Same,
			onText: "result set: 1 columns, 2 rows, 2 results"},
		{name: "multi results, the second fails", req: query("SELECT name FROM items; SELECT name FROM gone"),
			online: mpkt(1, []byte{0x01}, colName, eof, row1, eofMore, []byte{0x01}, colName, eof, row1, eof),
			target: mpkt(1, []byte{0x01}, colName, eof, row1, eofMore, errNoTable), verdict: Differs, kind: KindMySQLResult},
		{name: "prepare, statement ids aside", req: prepare("SELECT name FROM items WHERE id = ?"),
			online: mpkt(1, prepOK1, param, eof, colName, eof), target: mpkt(1, prepOK9, param, eof, colName, eof), verdict: Same,
			onText: "prepared: 1 parameters, 1 columns"},
		{name: "prepare, parameters", req: prepare("SELECT name FROM items WHERE id = ? OR id = ?"),
			online: mpkt(1, prepOK1, param, eof, colName, eof), target: mpkt(1, prepOK2, param, param, eof, colName, eof),
			verdict: Differs, kind: KindMySQLColumns},
		{name: "binary result set", req: execute(1), online: mpkt(1, []byte{0x01}, colName, eof, binRow1, eof),
			target: mpkt(1, []byte{0x01}, colName, eof, binRow1, eof), verdict: Same, onText: "result set: 1 columns, 1 rows"},
		{name: "segments", req: query("SELECT name FROM items"), online: resultSet(colName, row1, row2), target: resultSet(colName, row1, row2),
			onSeg: 7, tgSeg: 5, verdict: Same},
		{name: "beyond the window, same", bytes: 128, req: query("SELECT name FROM items"), online: big(row1, 40), target: big(row1, 40),
			verdict: Same, onText: "result set: 1 columns, rows beyond the window"},
		{name: "beyond the window, last row", bytes: 128, req: query("SELECT name FROM items"), online: big(row1, 40), target: big(rowX, 40),
			verdict: Differs, kind: KindMySQLChecksum, offset: -1},
		{name: "beyond the window, row count", bytes: 128, req: query("SELECT name FROM items"), online: big(row1, 40), target: big(row1, 41),
			verdict: Differs, kind: KindMySQLChecksum},
		{name: "beyond the window, eof status counts", bytes: 128, req: query("SELECT name FROM items"), online: big(row1, 40),
			target:  bigEOF(row1, 40, eofOther),
			verdict: Differs, kind: KindMySQLChecksum},
		{name: "statistics text", req: string(mpkt(0, []byte{0x09})), online: mpkt(1, []byte("Uptime: 5")), target: mpkt(1, []byte("Uptime: 9")),
			verdict: Differs, kind: KindMySQLChecksum, onText: "other"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := &Config{Bytes: tt.bytes}
			cfg.Init()
			cv := newMySQLConn(t, cfg)
			cv.run(exchange{req: tt.req, online: string(tt.online), target: string(tt.target), onSeg: tt.onSeg, tgSeg: tt.tgSeg})
			rs := cv.finish()
			if len(rs) != 1 {
				t.Fatalf("%d results, want 1", len(rs))
			}
			r := rs[0]
			if r.Verdict != tt.verdict || r.Kind != tt.kind {
				t.Errorf("got %v %v, want %v %v", r.Verdict, r.Kind, tt.verdict, tt.kind)
			}
			if !r.MySQL || r.HTTP {
				t.Errorf("MySQL %v HTTP %v", r.MySQL, r.HTTP)
			}
			if tt.offset != 0 && r.Offset != tt.offset {
				t.Errorf("offset %d, want %d", r.Offset, tt.offset)
			}
			if got := r.Online.MySQL.Text(); tt.onText != "" && got != tt.onText {
				t.Errorf("online %q, want %q", got, tt.onText)
			}
			if got := r.Target.MySQL.Text(); tt.tgText != "" && got != tt.tgText {
				t.Errorf("target %q, want %q", got, tt.tgText)
			}
			if !bytes.HasPrefix(r.Request, []byte("COM_")) {
				t.Errorf("request %q", r.Request)
			}
		})
	}
}

func TestMySQLRequestLine(t *testing.T) {
	long := strings.Repeat("x", 300)
	tests := []struct {
		name, req, want string
	}{
		{"query", query("SELECT 1\nFROM dual"), "COM_QUERY SELECT 1\nFROM dual"},
		{"prepare", prepare("SELECT ?"), "COM_STMT_PREPARE SELECT ?"},
		{"execute", execute(7), "COM_STMT_EXECUTE stmt 7"},
		{"ping", string(mpkt(0, []byte{0x0e})), "COM_PING"},
		{"bulk", string(mpkt(0, []byte{0xfa, 1, 0, 0, 0})), "COM_STMT_BULK_EXECUTE stmt 1"},
		{"unknown", string(mpkt(0, []byte{0x77})), "0x77"},
		{"long", query(long), "COM_QUERY " + long[:maxRequestLine-len("COM_QUERY ")]},
		{"not a command", string(mpkt(3, []byte("file data"))), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var line [maxRequestLine]byte
			got, _, _ := mysqlLine(line[:0], []byte(tt.req))
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
		})
	}
}

// TestMySQLSkip: requests not copied get not_copied, or (a login) no
// verdict; the greeting is not compared.
func TestMySQLSkip(t *testing.T) {
	cfg := &Config{}
	cfg.Init()
	cv := newMySQLConn(t, cfg)
	cv.c.Client(cv.now, true, 1000, 0, nil)
	cv.greet(string(mpkt(0, []byte("greeting online"))), "")
	login := string(mpkt(1, []byte("login")))
	loginAt := cv.seq
	cv.run(exchange{req: login, online: string(mpkt(2, okInsert))})
	dropAt := cv.seq
	drop := query("DELETE FROM items")
	cv.run(exchange{req: drop, online: string(mpkt(1, okInsert))})
	cv.c.Skip(loginAt, dropAt, ReasonNone)
	cv.c.Skip(dropAt, cv.seq, ReasonNotCopied)
	cv.c.Skip(loginAt, cv.seq, ReasonTooMany) // marked already: kept
	cv.run(exchange{req: query("SELECT 1"), online: string(resultSet(colName, row1)), target: string(resultSet(colName, row1))})
	rs := cv.finish()
	if len(rs) != 2 {
		t.Fatalf("%d results, want 2: %+v", len(rs), rs)
	}
	if rs[0].Verdict != NotCompared || rs[0].Reason != ReasonNotCopied || string(rs[0].Request) != "COM_QUERY DELETE FROM items" ||
		rs[0].Online.MySQL.Type != MySQLOK {
		t.Errorf("dropped: %v %v %q %v", rs[0].Verdict, rs[0].Reason, rs[0].Request, rs[0].Online.MySQL.Type)
	}
	if rs[1].Verdict != Same || rs[1].Index != 1 { // the login is no request
		t.Errorf("copied: %v index %d", rs[1].Verdict, rs[1].Index)
	}
}

func TestMySQLNoAllocs(t *testing.T) {
	cfg := &Config{}
	cfg.Init()
	e := NewEngine(cfg, nil)
	c := e.NewMySQLConn()
	c.Client(0, true, 1000, 0, nil)
	req := []byte(query("SELECT name FROM items WHERE id = 1"))
	on := resultSet(colName, row1, row2)
	tgt := resultSet(colName, row1, rowX)
	ht := streamhash.Sum(tgt)
	seq, os, ts := uint32(1001), uint32(5001), uint32(9001)
	cycle := func() {
		c.Client(1, false, seq, os, req)
		seq += uint32(len(req))
		c.Online(2, os, seq, on, len(on), false)
		os += uint32(len(on))
		c.Target(3, ts, seq, len(tgt), tgt, ht, true, false)
		ts += uint32(len(tgt))
	}
	for range 10 {
		cycle()
	}
	if n := testing.AllocsPerRun(200, cycle); n != 0 {
		t.Errorf("%v allocations per command and answers", n)
	}
	if st := e.Stats(); st.Kinds[KindMySQLChecksum] == 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestMySQLFraming: commands are found by the framing, not by the
// acknowledgement numbers: a COM_STMT_CLOSE and the next query in one
// segment are two requests, a command whose header is split across
// segments is one, the login exchange is none.
func TestMySQLFraming(t *testing.T) {
	cfg := &Config{}
	cfg.Init()
	var rs []Result
	e := NewEngine(cfg, func(r *Result) {
		c := *r
		c.Request = bytes.Clone(r.Request)
		rs = append(rs, c)
	})
	c := e.NewMySQLConn()
	c.Client(0, true, 999, 0, nil)
	seq, on, tg := uint32(1000), uint32(5000), uint32(9000)
	// The greeting and the login: no request.
	c.Online(1, on, seq, []byte("greeting"), 8, false)
	on += 8
	login := mpkt(1, []byte("login"))
	c.Client(2, false, seq, on, login)
	seq += uint32(len(login))
	c.Online(3, on, seq, mpkt(2, okInsert), 11, false)
	on += 11
	// A close and a query in one segment, then the query's answers.
	closeQ := cat(mpkt(0, []byte{0x19, 1, 0, 0, 0}), []byte(query("SELECT name FROM items")))
	c.Client(4, false, seq, on, closeQ)
	seq += uint32(len(closeQ))
	ans := resultSet(colName, row1)
	c.Online(5, on, seq, ans, len(ans), false)
	on += uint32(len(ans))
	c.Target(6, tg, seq, len(ans), ans, streamhash.Sum(ans), true, false)
	tg += uint32(len(ans))
	// A query cut in three segments, the header across the first two.
	q := []byte(query("SELECT name FROM items WHERE id = 2"))
	for _, part := range [][]byte{q[:2], q[2:9], q[9:]} {
		c.Client(7, false, seq, on, part)
		seq += uint32(len(part))
	}
	c.Online(8, on, seq, ans, len(ans), false)
	c.Target(9, tg, seq, len(ans), ans, streamhash.Sum(ans), true, false)
	c.Finish(10)
	if len(rs) != 2 {
		t.Fatalf("%d results, want 2: %+v", len(rs), rs)
	}
	// The line is what the segment that completes the header holds.
	for i, want := range []string{"COM_QUERY SELECT name FROM items", "COM_QUERY SELE"} {
		if rs[i].Verdict != Same || string(rs[i].Request) != want {
			t.Errorf("result %d: %v %q, want same %q", i, rs[i].Verdict, rs[i].Request, want)
		}
	}
	if rs[0].Index != 1 || rs[1].Index != 2 {
		t.Errorf("indexes %d %d, want 1 2 (0 is the close)", rs[0].Index, rs[1].Index)
	}
}

// TestMySQLPendingBound: a MySQL connection keeps MySQLMaxPending answers
// waiting for the target's.
func TestMySQLPendingBound(t *testing.T) {
	cfg := &Config{}
	cfg.Init()
	cv := newMySQLConn(t, cfg)
	for range cfg.MySQLMaxPending + 3 {
		cv.run(exchange{req: query("SELECT 1"), online: string(mpkt(1, okInsert))})
	}
	var n [NumVerdicts]int
	var why [NumReasons]int
	for _, r := range cv.finish() {
		n[r.Verdict]++
		why[r.Reason]++
	}
	if n[NotCompared] != 3 || why[ReasonTooMany] != 3 || n[Missing] != cfg.MySQLMaxPending {
		t.Errorf("verdicts %v, reasons %v", n, why)
	}
}

// TestMySQLPreparedText: a command naming a prepared statement carries the
// statement's text, read from its prepare and the online server's id; a
// prepare the online server refused names nothing. Allocation free after
// the connection's first prepare.
func TestMySQLPreparedText(t *testing.T) {
	cfg := &Config{}
	cfg.Init()
	cv := newMySQLConn(t, cfg)
	answer := string(mpkt(1, []byte{0x01}, colName, eof, binRow1, eof))
	cv.run(exchange{req: prepare("SELECT name FROM items WHERE id = ?"), online: string(mpkt(1, prepOK9, param, eof, colName, eof)),
		target: string(mpkt(1, prepOK1, param, eof, colName, eof))})
	cv.run(exchange{req: prepare("SELECT nothing"), online: string(mpkt(1, errSyntax)), target: string(mpkt(1, errSyntax))})
	cv.run(exchange{req: execute(9), online: answer, target: answer})
	cv.run(exchange{req: execute(1), online: answer, target: answer})
	rs := cv.finish()
	want := []string{"COM_STMT_PREPARE SELECT name FROM items WHERE id = ?", "COM_STMT_PREPARE SELECT nothing",
		"COM_STMT_EXECUTE stmt 9: SELECT name FROM items WHERE id = ?", "COM_STMT_EXECUTE stmt 1"}
	if len(rs) != len(want) {
		t.Fatalf("%d results", len(rs))
	}
	for i, r := range rs {
		if string(r.Request) != want[i] || r.Verdict != Same {
			t.Errorf("%d: %v %q, want same %q", i, r.Verdict, r.Request, want[i])
		}
	}

	e := NewEngine(cfg, nil)
	c := e.NewMySQLConn()
	c.Client(0, true, 1000, 0, nil)
	seq, os, ts := uint32(1001), uint32(5001), uint32(9001)
	prep, exec := []byte(prepare("SELECT name FROM items WHERE id = ?")), []byte(execute(9))
	prepOn, ans := mpkt(1, prepOK9, param, eof, colName, eof), []byte(answer)
	cycle := func() {
		for _, x := range [][2][]byte{{prep, prepOn}, {exec, ans}} {
			c.Client(1, false, seq, os, x[0])
			seq += uint32(len(x[0]))
			c.Online(2, os, seq, x[1], len(x[1]), false)
			os += uint32(len(x[1]))
			c.Target(3, ts, seq, len(x[1]), x[1], streamhash.Sum(x[1]), true, false)
			ts += uint32(len(x[1]))
		}
	}
	for range 10 {
		cycle()
	}
	if n := testing.AllocsPerRun(100, cycle); n != 0 {
		t.Errorf("%v allocations per prepare and execute", n)
	}
}
