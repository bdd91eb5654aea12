package tcpcopy

// compare.go runs the response comparison (package compare) inside the
// workers: each copied session has a compare.Conn, fed with the session's
// client packets (worker.client), the online server's answers captured on
// this host or read from the offline file (engine.response), the target's
// records (worker.response) and the times its requests went out
// (worker.Request). Verdicts are counted per worker; the ones that differ
// or are missing go to the diff log and to the page (diffSink).

import (
	"bufio"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/tcpcopy-go/tcpcopy/pkg/compare"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/tcpstate"
)

// Diff is one response that differs or is missing: a line of the diff log
// (JSON Lines, docs/compare.md) and an entry of the page.
type Diff struct {
	Time    time.Time `json:"time"`
	Verdict string    `json:"verdict"`          // differs, missing
	Kind    string    `json:"kind,omitempty"`   // status, header, length, body, mysql_*
	Header  string    `json:"header,omitempty"` // the header that differs
	Client  string    `json:"client"`           // the client as the target saw it
	Target  string    `json:"target"`
	Index   int       `json:"index"`   // the response's place on its connection (-1: greeting)
	Request string    `json:"request"` // the request's first line; MySQL: the command and its SQL text
	Offset  int       `json:"offset"`  // first differing byte of the response, -1 unknown
	// Unmasked: --compare-mask could not apply (a body longer than
	// --compare-bytes).
	Unmasked bool     `json:"unmasked,omitempty"`
	Online   DiffSide `json:"online"`
	TargetR  DiffSide `json:"target_response"`
}

// DiffSide is one server's answer in a Diff.
type DiffSide struct {
	Status int     `json:"status,omitempty"`
	Length int     `json:"length"`
	Body   int     `json:"body"`
	Hash   string  `json:"hash"`
	TimeMS float64 `json:"time_ms"` // response time, 0 unknown
	// Bytes are the answer's bytes from BytesAt, as text with \xNN for
	// bytes that are not printable UTF-8.
	Bytes   string `json:"bytes"`
	BytesAt int    `json:"bytes_at"`
	// MySQL summarises a MySQL answer.
	MySQL *DiffMySQL `json:"mysql,omitempty"`
}

// DiffMySQL is a MySQL answer in a Diff (compare.MySQLAnswer).
type DiffMySQL struct {
	Answer   string `json:"answer"`  // ok, error, result_set, prepare_ok, local_infile, other
	Summary  string `json:"summary"` // "ERR 1146 (42S02)", "result set: 2 columns, 3 rows"
	Affected uint64 `json:"affected_rows,omitempty"`
	Error    int    `json:"error,omitempty"`
	SQLState string `json:"sqlstate,omitempty"`
	Columns  int    `json:"columns,omitempty"`
	Rows     int    `json:"rows"` // of result sets; -1: not known, the answer is longer than --compare-bytes
	Whole    bool   `json:"whole"`
}

// makeDiff copies r into a Diff.
func makeDiff(r *compare.Result, k tcpstate.Key, now int64) *Diff {
	d := &Diff{
		Time: time.Unix(0, now).UTC(), Verdict: r.Verdict.String(), Client: k.Client.String(), Target: k.Target.String(),
		Index: r.Index, Request: printable(r.Request), Offset: r.Offset, Unmasked: r.Unmasked,
		Online: diffSide(&r.Online), TargetR: diffSide(&r.Target),
	}
	if r.Kind != compare.KindNone {
		d.Kind = r.Kind.String()
	}
	if len(r.Header) > 0 {
		d.Header = printable(r.Header)
	}
	if r.MySQL {
		d.Online.MySQL, d.TargetR.MySQL = diffMySQL(&r.Online.MySQL), diffMySQL(&r.Target.MySQL)
	}
	return d
}

func diffMySQL(a *compare.MySQLAnswer) *DiffMySQL {
	if a.Type == compare.MySQLNone {
		return nil
	}
	m := &DiffMySQL{Answer: a.Type.String(), Summary: a.Text(), Affected: a.Affected, Error: int(a.ErrCode),
		Columns: a.Columns, Rows: a.Rows, Whole: a.Whole}
	if a.SQLState != [5]byte{} {
		m.SQLState = string(a.SQLState[:])
	}
	return m
}

func diffSide(s *compare.Side) DiffSide {
	var h [8]byte
	for i := range h {
		h[i] = byte(s.Hash >> (56 - 8*i))
	}
	return DiffSide{Status: s.Status, Length: s.Length, Body: s.Body, Hash: hex.EncodeToString(h[:]),
		TimeMS: float64(s.Time) / 1e6, Bytes: printable(s.Bytes), BytesAt: s.BytesAt}
}

// printable returns b as text: printable UTF-8 as is, CR and LF as \r and
// \n, anything else as \xNN, so that a log line stays one line and shows
// binary bytes.
func printable(b []byte) string {
	out := make([]byte, 0, len(b)+8)
	for len(b) > 0 {
		r, n := utf8.DecodeRune(b)
		switch {
		case r == '\r':
			out = append(out, `\r`...)
		case r == '\n':
			out = append(out, `\n`...)
		case r == '\\':
			out = append(out, `\\`...)
		case r == utf8.RuneError && n <= 1 || r < 0x20 || r == 0x7f:
			out = append(out, `\x`...)
			out = append(out, "0123456789abcdef"[b[0]>>4], "0123456789abcdef"[b[0]&15])
			n = 1
		default:
			out = append(out, b[:n]...)
		}
		b = b[n:]
	}
	return string(out)
}

// diffSink takes the differences of every worker: it keeps the latest for
// the page and writes them to the diff log, from its own goroutine so that
// a slow disk never slows a worker. When it falls behind, differences are
// dropped from the log (counted), never queued without bound.
type diffSink struct {
	ch      chan *Diff
	dropped atomic.Uint64
	written atomic.Uint64

	mu     sync.Mutex
	latest []*Diff // the newest last, at most keepLatest
}

// keepLatest is how many differences the page shows.
const keepLatest = 50

func newDiffSink() *diffSink { return &diffSink{ch: make(chan *Diff, 1024)} }

// add takes d; it does not block.
func (s *diffSink) add(d *Diff) {
	s.mu.Lock()
	if len(s.latest) == keepLatest {
		copy(s.latest, s.latest[1:])
		s.latest = s.latest[:keepLatest-1]
	}
	s.latest = append(s.latest, d)
	s.mu.Unlock()
	select {
	case s.ch <- d:
	default:
		s.dropped.Add(1)
	}
}

// Latest returns the newest differences, newest first.
func (s *diffSink) Latest() []*Diff {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]*Diff, len(s.latest))
	for i, d := range s.latest {
		out[len(out)-1-i] = d
	}
	return out
}

// run writes the differences to path (if set) until stop is closed, then
// writes what is queued and returns. The file is rotated when it would
// exceed max bytes: path.3 is dropped, path.2 becomes path.3, and so on.
func (s *diffSink) run(path string, max int64, stop <-chan struct{}, log *slog.Logger) {
	var (
		f    *os.File
		w    *bufio.Writer
		size int64
	)
	open := func() {
		var err error
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
		if err != nil {
			log.Error("diff log: cannot open; differences are not written", "file", path, "err", err)
			f, w = nil, nil
			return
		}
		st, _ := f.Stat()
		if st != nil {
			size = st.Size()
		}
		w = bufio.NewWriter(f)
	}
	if path != "" {
		open()
	}
	write := func(d *Diff) {
		if w == nil {
			return
		}
		line, err := json.Marshal(d)
		if err != nil {
			return
		}
		line = append(line, '\n')
		if size+int64(len(line)) > max && size > 0 {
			w.Flush()
			f.Close()
			rotate(path, 3)
			open()
			size = 0
			if w == nil {
				return
			}
		}
		n, _ := w.Write(line)
		size += int64(n)
		s.written.Add(1)
	}
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case d := <-s.ch:
			write(d)
		case <-tick.C:
			if w != nil {
				w.Flush()
			}
		case <-stop:
			for {
				select {
				case d := <-s.ch:
					write(d)
					continue
				default:
				}
				break
			}
			if w != nil {
				w.Flush()
				f.Close()
			}
			return
		}
	}
}

// rotate shifts path.(keep-1) .. path.1 up by one and path to path.1.
func rotate(path string, keep int) {
	for i := keep - 1; i >= 1; i-- {
		_ = os.Rename(path+"."+strconv.Itoa(i), path+"."+strconv.Itoa(i+1))
	}
	_ = os.Rename(path, path+".1")
}

// compareState is a worker's part of the comparison.
type compareState struct {
	eng   *compare.Engine
	conns map[tcpstate.Key]*compare.Conn
	cur   tcpstate.Key // the session being fed, for the emit callback
	sink  *diffSink
	now   func() int64
	on    func() bool // a link that compares is up: new sessions are compared
}

func newCompareState(cfg *compare.Config, sink *diffSink, now func() int64, on func() bool) *compareState {
	cs := &compareState{conns: make(map[tcpstate.Key]*compare.Conn), sink: sink, now: now, on: on}
	cs.eng = compare.NewEngine(cfg, cs.emit)
	return cs
}

// emit is the engine's report of one verdict.
func (cs *compareState) emit(r *compare.Result) {
	if r.Verdict != compare.Differs && r.Verdict != compare.Missing {
		return
	}
	cs.sink.add(makeDiff(r, cs.cur, cs.now()))
}

// route follows the sessions: a new session gets a Conn (one that
// compares MySQL answers for a session of the MySQL module), an ended one
// is finished.
func (cs *compareState) route(k tcpstate.Key, add, mysql bool) {
	c := cs.conns[k]
	switch {
	case add && c == nil && cs.on() && mysql:
		cs.conns[k] = cs.eng.NewMySQLConn()
	case add && c == nil && cs.on():
		cs.conns[k] = cs.eng.NewConn()
	case !add && c != nil:
		cs.cur = k
		c.Finish(cs.now())
		delete(cs.conns, k)
	}
}

// client feeds a client packet of session k.
func (cs *compareState) client(now int64, k tcpstate.Key, pkt []byte, p *ipmangle.Parsed) {
	if c := cs.conns[k]; c != nil {
		cs.cur = k
		payload := p.Payload(pkt)
		if len(payload) != p.PayloadLen {
			payload = payload[:0] // cut by the capture: the request line is lost, nothing more
		}
		c.Client(now, p.Flags&ipmangle.SYN != 0 && p.Flags&ipmangle.ACK == 0, p.Seq, p.Ack, payload)
	}
}

// online feeds a packet of the online server's answer to session k.
func (cs *compareState) online(now int64, k tcpstate.Key, p *ipmangle.Parsed, payload []byte) {
	if c := cs.conns[k]; c != nil {
		cs.cur = k
		c.Online(now, p.Seq, p.Ack, payload, p.PayloadLen, p.Flags&(ipmangle.FIN|ipmangle.RST) != 0)
	}
}

// target feeds a record of the target's answer to session k; ack is its
// acknowledgement number in the captured client stream (p.Ack but for
// MySQL sessions, whose sent stream differs).
func (cs *compareState) target(now int64, k tcpstate.Key, p *ipmangle.Parsed, ack uint32, n int, prefix []byte, hash uint64, hashed bool) {
	if c := cs.conns[k]; c != nil {
		cs.cur = k
		c.Target(now, p.Seq, ack, n, prefix, hash, hashed, p.Flags&(ipmangle.FIN|ipmangle.RST) != 0)
	}
}

// skip marks the requests of session k in the captured client bytes
// [from, to) as not copied (the MySQL module's Uncopied).
func (cs *compareState) skip(k tcpstate.Key, from, to uint32, login bool) {
	if c := cs.conns[k]; c != nil {
		why := compare.ReasonNotCopied
		if login {
			why = compare.ReasonNone
		}
		c.Skip(from, to, why)
	}
}

// tick decides the pairs of quiet connections (compare.Conn.Tick).
func (cs *compareState) tick(now int64) {
	for k, c := range cs.conns {
		cs.cur = k
		c.Tick(now)
	}
}

// finishAll finishes every Conn (tcpcopy stopping).
func (cs *compareState) finishAll(now int64) {
	for k, c := range cs.conns {
		cs.cur = k
		c.Finish(now)
		delete(cs.conns, k)
	}
}

// compareSnapshot is the comparison's counters for the metrics, the logs
// and the page.
type compareSnapshot struct {
	On      bool
	Stats   compare.Stats
	Written uint64 // differences written to the diff log
	Dropped uint64 // ... not written: the log fell behind
	// Responses counts the online server's packets captured.
	Responses uint64
}

// statusPair formats a compare.Stats status key, "200->500".
func statusPair(k int) string { return fmt.Sprintf("%d->%d", k/1000, k%1000) }

// verdictAttrs are the verdict counts for a log line.
func verdictAttrs(s *compare.Stats, attrs []any) []any {
	for v := range compare.NumVerdicts {
		attrs = append(attrs, compare.Verdict(v).String(), s.Verdicts[v])
	}
	return attrs
}
