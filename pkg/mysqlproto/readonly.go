package mysqlproto

// Statement classification for copying read traffic only (tcpcopy
// --mysql-read-only): a statement is read-only when its first keyword is
// one of a short list of reading and session statements, and nothing in
// it turns a read into a write or a lock. Everything else, and anything
// not recognised, is not read-only: a replica being warmed must never
// receive a write it was not meant to get.
//
// Read-only: SELECT and parenthesised SELECT, WITH (when no INSERT, UPDATE,
// DELETE or REPLACE follows), VALUES, TABLE, SHOW, DESCRIBE, DESC, EXPLAIN,
// HELP, USE, DO, CHECKSUM, SET (not SET GLOBAL, SET PERSIST, SET PASSWORD or
// @@global. variables), BEGIN, START TRANSACTION, COMMIT, ROLLBACK,
// SAVEPOINT, RELEASE SAVEPOINT, UNLOCK TABLES.
//
// Not read-only: everything else (INSERT, UPDATE, DELETE, REPLACE, LOAD,
// CREATE, ALTER, DROP, TRUNCATE, RENAME, GRANT, REVOKE, CALL, LOCK, FLUSH,
// KILL, PREPARE, EXECUTE, ...), locking reads (SELECT ... FOR UPDATE, FOR
// SHARE, LOCK IN SHARE MODE) and SELECT ... INTO OUTFILE or DUMPFILE. A
// multi-statement query is read-only when each of its statements is.
// Comments are skipped, except MySQL's executable comments (/*! ... */),
// whose content counts as SQL.

// maxWords bounds the keywords examined per statement.
const maxWords = 4096

// ReadOnly reports whether the SQL text q only reads data (see above), and
// returns the first keyword of its first statement in lower case (empty
// if none), for counting.
func ReadOnly(q []byte) (bool, string) {
	var (
		sc    scanner
		first string
		ro    = true
		any   bool
	)
	sc.b = q
	for {
		st, more := sc.statement()
		if len(st.words) > 0 {
			any = true
			if first == "" {
				first = st.words[0]
			}
			if !st.readOnly() {
				ro = false
			}
		}
		if !more {
			break
		}
	}
	return ro && any, first
}

// stmt is the keywords of one statement, lower case, and whether a
// @@global. variable appears in it.
type stmt struct {
	words  []string
	global bool
}

func (s *stmt) has(w ...string) bool {
	for _, x := range s.words {
		for _, y := range w {
			if x == y {
				return true
			}
		}
	}
	return false
}

// hasSeq reports whether a appears immediately followed by one of bs.
func (s *stmt) hasSeq(a string, bs ...string) bool {
	for i := 0; i+1 < len(s.words); i++ {
		if s.words[i] != a {
			continue
		}
		for _, b := range bs {
			if s.words[i+1] == b {
				return true
			}
		}
	}
	return false
}

func (s *stmt) readOnly() bool {
	switch s.words[0] {
	case "select", "(", "values", "table", "with":
		if s.words[0] == "with" && s.has("insert", "update", "delete", "replace") {
			return false
		}
		return !s.hasSeq("for", "update", "share") && !s.hasSeq("lock", "in") &&
			!s.hasSeq("into", "outfile", "dumpfile")
	case "show", "describe", "desc", "explain", "help", "use", "do", "checksum",
		"begin", "commit", "rollback", "savepoint", "release":
		return true
	case "start":
		return len(s.words) > 1 && s.words[1] == "transaction"
	case "unlock":
		return true
	case "set":
		return !s.global && !s.has("global", "persist", "persist_only", "password")
	}
	return false
}

// scanner splits SQL text into statements of keywords.
type scanner struct {
	b   []byte
	i   int
	buf []string
}

// statement returns the next statement's words and whether more text
// follows its ';'.
func (sc *scanner) statement() (stmt, bool) {
	var st stmt
	sc.buf = sc.buf[:0]
	b := sc.b
	for sc.i < len(b) {
		c := b[sc.i]
		switch {
		case c == ';':
			sc.i++
			st.words = sc.buf
			return st, true
		case c == '\'' || c == '"' || c == '`':
			sc.skipQuoted(c)
		case c == '#':
			sc.skipLine()
		case c == '-' && sc.i+1 < len(b) && b[sc.i+1] == '-' && (sc.i+2 == len(b) || b[sc.i+2] <= ' '):
			sc.skipLine()
		case c == '/' && sc.i+1 < len(b) && b[sc.i+1] == '*':
			sc.comment()
		case c == '*' && sc.i+1 < len(b) && b[sc.i+1] == '/':
			sc.i += 2 // the end of an executable comment
		case c == '(' && len(sc.buf) == 0:
			sc.add("(")
			sc.i++
		case c == '@' && sc.i+1 < len(b) && b[sc.i+1] == '@':
			j := sc.i + 2
			k := j
			for k < len(b) && isWord(b[k]) {
				k++
			}
			if k-j == 6 && lowerEq(b[j:k], "global") {
				st.global = true
			}
			sc.i = k
		case isWordStart(c):
			j := sc.i
			for sc.i < len(b) && isWord(b[sc.i]) {
				sc.i++
			}
			sc.add(lower(b[j:sc.i]))
		default:
			sc.i++
		}
	}
	st.words = sc.buf
	return st, false
}

func (sc *scanner) add(w string) {
	if len(sc.buf) < maxWords {
		sc.buf = append(sc.buf, w)
	}
}

func (sc *scanner) skipQuoted(q byte) {
	b := sc.b
	sc.i++
	for sc.i < len(b) {
		c := b[sc.i]
		switch {
		case c == '\\' && q != '`':
			sc.i += 2
			continue
		case c == q:
			if sc.i+1 < len(b) && b[sc.i+1] == q {
				sc.i += 2 // a doubled quote
				continue
			}
			sc.i++
			return
		}
		sc.i++
	}
}

func (sc *scanner) skipLine() {
	for sc.i < len(sc.b) && sc.b[sc.i] != '\n' {
		sc.i++
	}
}

// comment skips a /* */ comment, or only the marker of an executable one
// (/*!, /*!50100, /*M!), whose content is SQL.
func (sc *scanner) comment() {
	b := sc.b
	j := sc.i + 2
	if j < len(b) && b[j] == 'M' && j+1 < len(b) && b[j+1] == '!' {
		j++
	}
	if j < len(b) && b[j] == '!' {
		j++
		for j < len(b) && b[j] >= '0' && b[j] <= '9' {
			j++
		}
		sc.i = j
		return
	}
	for j+1 < len(b) && !(b[j] == '*' && b[j+1] == '/') {
		j++
	}
	sc.i = min(j+2, len(b))
}

func isWordStart(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c == '_'
}

func isWord(c byte) bool {
	return isWordStart(c) || c >= '0' && c <= '9' || c == '$'
}

// lower returns w in lower case; keywords are ASCII.
func lower(w []byte) string {
	for _, c := range w {
		if c >= 'A' && c <= 'Z' {
			b := make([]byte, len(w))
			for i, c := range w {
				if c >= 'A' && c <= 'Z' {
					c += 'a' - 'A'
				}
				b[i] = c
			}
			return string(b)
		}
	}
	return string(w)
}

func lowerEq(w []byte, s string) bool {
	if len(w) != len(s) {
		return false
	}
	for i, c := range w {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}
