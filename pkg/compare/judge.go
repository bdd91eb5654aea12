package compare

import (
	"bytes"

	"github.com/tcpcopy-go/tcpcopy/pkg/streamhash"
)

// maxHeaders is the most headers of one HTTP head compared; more are
// compared as bytes of the head.
const maxHeaders = 64

// head is a parsed HTTP/1.x response head (after any 1xx interim heads).
type head struct {
	ok      bool // a complete head was parsed
	status  int
	length  int // bytes of every head, interim ones included: the body starts here
	headers [maxHeaders]field
	n       int
	many    bool // more than maxHeaders
}

// field is a header: name and value as offsets into the response buffer.
type field struct {
	name, value [2]int
}

// parseHead parses the HTTP/1.x response heads at the start of b into h.
// Interim 1xx heads (other than 101) are skipped: the final head's status
// and headers are kept, and length covers them all.
func parseHead(b []byte, h *head) {
	*h = head{}
	off := 0
	for {
		if !bytes.HasPrefix(b[off:], []byte("HTTP/1.")) {
			return
		}
		eol := bytes.IndexByte(b[off:], '\n')
		if eol < 0 {
			return
		}
		line := b[off : off+eol]
		// "HTTP/1.1 200 OK"
		if len(line) < 12 || line[8] != ' ' {
			return
		}
		status := 0
		for _, c := range line[9:12] {
			if c < '0' || c > '9' {
				return
			}
			status = status*10 + int(c-'0')
		}
		p := off + eol + 1
		h.n, h.many = 0, false
		for {
			e := bytes.IndexByte(b[p:], '\n')
			if e < 0 {
				return // the head goes on beyond the bytes kept
			}
			l := b[p : p+e]
			if len(l) > 0 && l[len(l)-1] == '\r' {
				l = l[:len(l)-1]
			}
			if len(l) == 0 {
				p += e + 1
				break
			}
			if colon := bytes.IndexByte(l, ':'); colon > 0 {
				if h.n < maxHeaders {
					vs := colon + 1
					for vs < len(l) && (l[vs] == ' ' || l[vs] == '\t') {
						vs++
					}
					ve := len(l)
					for ve > vs && (l[ve-1] == ' ' || l[ve-1] == '\t') {
						ve--
					}
					h.headers[h.n] = field{name: [2]int{p, p + colon}, value: [2]int{p + vs, p + ve}}
					h.n++
				} else {
					h.many = true
				}
			}
			p += e + 1
		}
		h.status, h.length, h.ok = status, p, true
		if status < 100 || status >= 200 || status == 101 || p >= len(b) {
			return
		}
		off = p // an interim response: the final one follows
	}
}

// judge gives the pair in s its verdict and reports it.
func (e *Engine) judge(s *slot, now int64) {
	on, tg := &s.on, &s.tg
	switch {
	case s.skip:
		if s.skipWhy != ReasonNone && on.started {
			e.result(s, NotCompared, s.skipWhy, now)
		}
	case !on.started && !tg.started:
		// A request neither server answered (yet): nothing to compare.
	case !on.started:
		e.result(s, NotCompared, ReasonNoOnline, now)
	case on.broken:
		e.result(s, NotCompared, ReasonOnlineIncomplete, now)
	case !tg.started:
		e.result(s, Missing, ReasonNone, now)
	case tg.broken:
		e.result(s, NotCompared, ReasonTargetIncomplete, now)
	case s.mysql:
		e.compareMySQL(s, now)
	default:
		e.compare(s, now)
	}
}

// compare compares two complete answers.
func (e *Engine) compare(s *slot, now int64) {
	on, tg := &s.on, &s.tg
	r := e.begin(s, Same, ReasonNone)
	ho, ht := &e.heads[0], &e.heads[1]
	parseHead(on.buf[:on.have], ho)
	parseHead(tg.buf[:tg.have], ht)
	if ho.ok {
		r.Online.Status = ho.status
	}
	if ht.ok {
		r.Target.Status = ht.status
	}
	if ho.ok && ht.ok {
		r.HTTP = true
		r.Online.Body, r.Target.Body = on.n-ho.length, tg.n-ht.length
		switch {
		case ho.status != ht.status:
			r.Kind = KindStatus
		case e.headerDiff(r, on.buf, tg.buf, ho, ht):
			r.Kind = KindHeader
		default:
			r.Kind = e.bodyDiff(r, on, tg, ho.length, ht.length)
		}
	} else {
		r.Kind = e.bodyDiff(r, on, tg, 0, 0)
	}
	if r.Kind != KindNone {
		r.Verdict = Differs
	}
	e.finishResult(s, now)
}

// headerDiff reports whether the heads' headers differ (ignored ones
// aside, and Content-Length, which the length comparison covers), and
// names the first that does in r.Header. Headers are matched by name and
// value, in any order.
func (e *Engine) headerDiff(r *Result, bo, bt []byte, ho, ht *head) bool {
	var used [maxHeaders]bool
	for i := range ho.n {
		f := ho.headers[i]
		name := bo[f.name[0]:f.name[1]]
		if e.ignored(name) {
			continue
		}
		val := bo[f.value[0]:f.value[1]]
		found := false
		for j := range ht.n {
			g := ht.headers[j]
			if !used[j] && bytes.EqualFold(name, bt[g.name[0]:g.name[1]]) && bytes.Equal(val, bt[g.value[0]:g.value[1]]) {
				used[j], found = true, true
				break
			}
		}
		if !found {
			r.Header = name
			return true
		}
	}
	for j := range ht.n {
		g := ht.headers[j]
		name := bt[g.name[0]:g.name[1]]
		if !used[j] && !e.ignored(name) {
			r.Header = name
			return true
		}
	}
	return ho.many != ht.many
}

// ignored reports whether header name is not compared.
func (e *Engine) ignored(name []byte) bool {
	if bytes.EqualFold(name, []byte("Content-Length")) {
		return true
	}
	var lower [64]byte
	if len(name) > len(lower) {
		return false
	}
	for i, c := range name {
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		lower[i] = c
	}
	return e.cfg.ignore[string(lower[:len(name)])]
}

// bodyDiff compares what follows the heads (the whole answers when hlo
// and hlt are 0): lengths, then bytes where both are kept whole (masked),
// else hashes. It sets r.Offset and returns the kind of difference, or
// KindNone.
func (e *Engine) bodyDiff(r *Result, on, tg *acc, hlo, hlt int) Kind {
	bo, bt := on.n-hlo, tg.n-hlt
	whole := on.have >= on.n && tg.have >= tg.n
	if whole && len(e.cfg.Masks) > 0 {
		mo := e.masked(0, on.buf[hlo:on.n])
		mt := e.masked(1, tg.buf[hlt:tg.n])
		if len(mo) != len(mt) {
			return KindLength
		}
		i := firstDiff(mo, mt)
		if i < 0 {
			return KindNone
		}
		if len(mo) == bo && len(mt) == bt && hlo == hlt {
			r.Offset = hlo + i // the masks kept the lengths: the offset holds
		}
		return KindBody
	}
	if !whole && len(e.cfg.Masks) > 0 {
		r.Unmasked = true
	}
	if bo != bt {
		return KindLength
	}
	ho := streamhash.Cut(on.hash, streamhash.Sum(on.buf[:hlo]), bo)
	ht := streamhash.Cut(tg.hash, streamhash.Sum(tg.buf[:hlt]), bt)
	if ho == ht {
		return KindNone
	}
	if i := firstDiff(on.buf[hlo:on.have], tg.buf[hlt:tg.have]); i >= 0 && hlo == hlt {
		r.Offset = hlo + i
	}
	return KindBody
}

// masked returns b with every match of the masks replaced by "*", in the
// engine's scratch buffer i.
func (e *Engine) masked(i int, b []byte) []byte {
	out := append(e.mask[i][:0], b...)
	for _, re := range e.cfg.Masks {
		out = re.ReplaceAllLiteral(out, []byte("*"))
	}
	e.mask[i] = out
	return out
}

// firstDiff returns the first index where a and b differ within the
// shorter, or -1.
func firstDiff(a, b []byte) int {
	n := min(len(a), len(b))
	for i := range n {
		if a[i] != b[i] {
			return i
		}
	}
	return -1
}

// begin fills the engine's result with what every verdict reports.
func (e *Engine) begin(s *slot, v Verdict, reason Reason) *Result {
	r := &e.res
	*r = Result{Verdict: v, Reason: reason, Index: s.index, Offset: -1, Request: s.req.line[:s.req.lineN]}
	r.Online = side(&s.on, s.req.at)
	r.Target = side(&s.tg, s.req.sentAt)
	if s.mysql {
		r.MySQL = true
		var w myWalk
		if s.on.started {
			e.summarize(&w, &s.on, s.req.cmd, &r.Online.MySQL)
		}
		if s.tg.started {
			e.summarize(&w, &s.tg, s.req.cmd, &r.Target.MySQL)
		}
	}
	return r
}

func side(a *acc, from int64) Side {
	sd := Side{Length: a.n, Body: a.n, Hash: a.hash}
	if a.started && from != 0 && a.first >= from {
		sd.Time = a.first - from
	}
	return sd
}

// result reports a verdict reached without comparing bytes.
func (e *Engine) result(s *slot, v Verdict, reason Reason, now int64) {
	e.begin(s, v, reason)
	e.finishResult(s, now)
}

// finishResult adds the detail bytes, counts the result and reports it.
func (e *Engine) finishResult(s *slot, now int64) {
	r := &e.res
	on, tg := &s.on, &s.tg
	if r.Verdict != Same {
		at := 0
		if r.Verdict == Differs {
			if r.Offset < 0 {
				if i := firstDiff(on.buf[:on.have], tg.buf[:tg.have]); i >= 0 {
					at = i
				}
			} else {
				at = r.Offset
			}
			at = max(0, at-16)
		}
		r.Online.Bytes, r.Online.BytesAt = window(on, at, e.cfg.DetailBytes), at
		r.Target.Bytes, r.Target.BytesAt = window(tg, at, e.cfg.DetailBytes), at
	}
	st := &e.stats
	st.Verdicts[r.Verdict]++
	st.Kinds[r.Kind]++
	st.NotCompared[r.Reason]++
	if r.HTTP {
		st.Statuses[r.Online.Status*1000+r.Target.Status]++
	}
	if e.emit != nil {
		e.emit(r)
	}
}

// window returns up to n of the kept bytes of a from at.
func window(a *acc, at, n int) []byte {
	if at >= a.have {
		return nil
	}
	return a.buf[at:min(a.have, at+n)]
}

// contentLength returns the Content-Length of head h (parsed from b), and
// whether it has a usable one: a single decimal value (repeated values
// must agree), and no Transfer-Encoding.
func contentLength(b []byte, h *head) (int64, bool) {
	n, found := int64(-1), false
	for _, f := range h.headers[:h.n] {
		name := b[f.name[0]:f.name[1]]
		switch {
		case bytes.EqualFold(name, []byte("Transfer-Encoding")):
			return 0, false
		case bytes.EqualFold(name, []byte("Content-Length")):
			v := b[f.value[0]:f.value[1]]
			if len(v) == 0 || len(v) > 15 {
				return 0, false
			}
			var x int64
			for _, c := range v {
				if c < '0' || c > '9' {
					return 0, false
				}
				x = 10*x + int64(c-'0')
			}
			if found && x != n {
				return 0, false
			}
			n, found = x, true
		}
	}
	return n, found && !h.many
}
