package tcpcopy

// udpcompare.go compares the target's UDP answers with the online
// server's, with the comparison on (--compare-bytes > 0) and intercepts
// that route UDP (udpanswer.go follows the target's answers).
//
// Pairing: the k-th online answer of a client flow (client address and
// port, a mapping's online address and port) answers the k-th query of
// that flow, as the target's k-th answer of a copied flow answers its
// k-th copy (udpTracker). A client flow's first copy (-n: the others are
// not compared) is a copied flow of its own, so both are kept under the
// copied flow's key: the online answer's client endpoint is turned into
// the copy's as the copies are made (fakeAddr, fakePort). Each copy the
// tracker follows is held here with its query number and send time; its
// online answer is the one whose number it has, its target answer the
// one the tracker matches to its send time. When both came the pair gets
// its verdict (compare.Engine.JudgeDatagrams: lengths, hashes, the bytes
// within --compare-bytes); a pair still open udpAnswerWait after the
// copy was sent is judged as it is: missing (the online server answered,
// the target did not), not_compared (online_not_captured: the target
// answered, the online answer was not seen), or nothing (neither).
//
// Memory is bounded: at most udpCmpMaxHeld copies held (each with two
// buffers of --compare-bytes, made once and reused), udpCmpMaxFlows
// flows; a copy that finds no room is counted not_compared
// (too_many_pending) at once. A flow holds at most udpMaxPending copies,
// as many as the tracker follows: the copies it does not follow are not
// held, nor counted here (udp_queries_untracked_total counts them). Held copies live in one slice
// found by index, flows by value in a map: nothing is allocated per
// datagram once they have grown, differences aside (the diff log's
// lines).
//
// Two client flows that -c (or -H) puts on one copied endpoint share a
// copied flow: their answers are paired as the flow's, like the tracker
// matches the target's.

import (
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/tcpcopy-go/tcpcopy/pkg/compare"
	"github.com/tcpcopy-go/tcpcopy/pkg/streamhash"
	"github.com/tcpcopy-go/tcpcopy/pkg/tcpstate"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// UDP comparison limits.
const (
	// udpCmpMaxHeld bounds the copies held for their answers at once:
	// 4096 × 2 × --compare-bytes at most (16 MiB with the default 2048).
	udpCmpMaxHeld = 4096
	// udpCmpMaxFlows bounds the copied flows whose queries are counted.
	udpCmpMaxFlows = 1 << 16
	// udpDescLen bounds a query's description (the diff log's request).
	udpDescLen = 160
	// udpNameLen bounds the DNS name in a description.
	udpNameLen = 120
)

// udpCmpSide is one server's answer to a held copy.
type udpCmpSide struct {
	seen, hashed bool
	n, have      int
	hash         uint64
	at           int64
}

// udpCmpEntry is a copy held for its answers.
type udpCmpEntry struct {
	qnum        uint32 // the query's number in its flow
	asked, sent int64  // the query captured, its copy sent
	descN       uint8
	desc        [udpDescLen]byte
	on, tg      udpCmpSide
	onBuf       []byte // --compare-bytes each, made with the entry
	tgBuf       []byte
}

// udpCmpFlow is a copied flow: its queries and online answers counted,
// and the copies held (indices into udpComparer.ents, oldest first; -1
// for one judged already).
type udpCmpFlow struct {
	queries, answers uint32
	held             [udpMaxPending]int32
	head, n          uint8
	last             int64
}

func (f *udpCmpFlow) at(i int) *int32 { return &f.held[(int(f.head)+i)%udpMaxPending] }

// udpComparer pairs the online server's UDP answers with the target's. It
// is safe for concurrent use: queries and online answers come from the
// capture goroutines, target answers from the link readers, expiry from
// its own.
type udpComparer struct {
	bytes   int          // --compare-bytes
	maxHeld int          // udpCmpMaxHeld (tests lower it)
	on      func() bool  // a link that compares is up
	now     func() int64 // the engine's clock, for the diff log
	sink    *diffSink

	mu    sync.Mutex
	flows map[udpFlowKey]udpCmpFlow
	ents  []udpCmpEntry
	free  []int32
	eng   *compare.Engine
	cur   udpFlowKey // the pair being judged, for emit
	full  uint64     // copies not held: no room (too_many_pending)

	online atomic.Uint64 // online answers of a held flow
}

func newUDPComparer(cfg *compare.Config, sink *diffSink, now func() int64, on func() bool) *udpComparer {
	c := &udpComparer{bytes: cfg.Bytes, maxHeld: udpCmpMaxHeld, on: on, now: now, sink: sink, flows: make(map[udpFlowKey]udpCmpFlow)}
	c.eng = compare.NewEngine(cfg, c.emit)
	return c
}

// emit is the engine's report of one verdict (under mu).
func (c *udpComparer) emit(r *compare.Result) {
	if r.Verdict != compare.Differs && r.Verdict != compare.Missing {
		return
	}
	c.sink.add(makeDiff(r, tcpstate.Key{Client: c.cur.client, Target: c.cur.target}, c.now()))
}

// query counts a query of copied flow k (the flow's first copy) sent at
// sent, captured at asked, for port with payload; with tracked (the
// tracker awaits its answer) the copy is held for its answers. It
// allocates nothing once the flows and copies held have grown.
func (c *udpComparer) query(k udpFlowKey, asked, sent int64, port uint16, payload []byte, tracked bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.flows[k]
	if !ok {
		if !tracked || !c.on() {
			return // nothing to compare: no flow
		}
		if len(c.flows) >= udpCmpMaxFlows {
			c.full++
			return
		}
	}
	qnum := f.queries
	f.queries++
	f.last = sent
	if !tracked || !c.on() {
		c.flows[k] = f
		return
	}
	if f.n == udpMaxPending || len(c.free) == 0 && len(c.ents) >= c.maxHeld {
		c.full++
		c.flows[k] = f
		return
	}
	var i int32
	if n := len(c.free); n > 0 {
		i = c.free[n-1]
		c.free = c.free[:n-1]
	} else {
		c.ents = append(c.ents, udpCmpEntry{onBuf: make([]byte, c.bytes), tgBuf: make([]byte, c.bytes)})
		i = int32(len(c.ents) - 1)
	}
	e := &c.ents[i]
	e.qnum, e.asked, e.sent = qnum, asked, sent
	e.on, e.tg = udpCmpSide{}, udpCmpSide{}
	e.descN = uint8(len(describeQuery(e.desc[:0], port, payload)))
	*f.at(int(f.n)) = i
	f.n++
	c.flows[k] = f
}

// unsent takes back the newest copy of flow k: held by query, not sent.
// Its query keeps its number: its online answer still comes.
func (c *udpComparer) unsent(k udpFlowKey) {
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.flows[k]
	if !ok || f.n == 0 {
		return
	}
	last := f.at(int(f.n) - 1)
	if *last >= 0 && c.ents[*last].qnum == f.queries-1 {
		c.release(*last)
		f.n--
		c.flows[k] = f
	}
}

// onlineAnswer takes a datagram of the online server to the client of
// copied flow k, captured at at: its payload of n bytes (fewer in payload
// if the capture cut it). It allocates nothing.
func (c *udpComparer) onlineAnswer(k udpFlowKey, at int64, payload []byte, n int) {
	h := streamhash.Sum(payload)
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.flows[k]
	if !ok || f.answers >= f.queries {
		return // no query counted for it (a flow not held, or an answer before its query)
	}
	c.online.Add(1)
	qnum := f.answers
	f.answers++
	f.last = max(f.last, at)
	c.flows[k] = f
	for j := range int(f.n) {
		i := *f.at(j)
		if i < 0 || c.ents[i].qnum != qnum {
			continue
		}
		e := &c.ents[i]
		e.on = udpCmpSide{seen: true, hashed: len(payload) == n, n: n, hash: h, at: at, have: copy(e.onBuf, payload)}
		if e.tg.seen {
			c.judge(k, &f, j, at)
			c.flows[k] = f
		}
		return
	}
}

// targetAnswer takes the record rec of the target's answer, received at
// now, that the tracker matched to the copy sent at sent. It allocates
// nothing.
func (c *udpComparer) targetAnswer(now int64, rec *wire.Record, sent int64) {
	client, target, ok := udpRecordEnds(rec)
	if !ok {
		return
	}
	k := udpFlowKey{client: client, target: target}
	c.mu.Lock()
	defer c.mu.Unlock()
	f, ok := c.flows[k]
	if !ok {
		return
	}
	for j := range int(f.n) {
		i := *f.at(j)
		if i < 0 || c.ents[i].sent != sent || c.ents[i].tg.seen {
			continue
		}
		e := &c.ents[i]
		e.tg = udpCmpSide{seen: true, hashed: rec.Hashed, n: rec.PayloadLen, hash: rec.Hash, at: now, have: copy(e.tgBuf, rec.Prefix)}
		if e.on.seen {
			c.judge(k, &f, j, now)
			c.flows[k] = f
		}
		return
	}
}

// judge gives the copy held at place j of flow f (key k) its verdict and
// lets it go. Under mu.
func (c *udpComparer) judge(k udpFlowKey, f *udpCmpFlow, j int, now int64) {
	slot := f.at(j)
	e := &c.ents[*slot]
	on := compare.Datagram{Seen: e.on.seen, Len: e.on.n, Hash: e.on.hash, Hashed: e.on.hashed, Bytes: e.onBuf[:e.on.have], At: e.on.at}
	tg := compare.Datagram{Seen: e.tg.seen, Len: e.tg.n, Hash: e.tg.hash, Hashed: e.tg.hashed, Bytes: e.tgBuf[:e.tg.have], At: e.tg.at}
	c.cur = k
	c.eng.JudgeDatagrams(int(e.qnum), e.desc[:e.descN], e.asked, e.sent, &on, &tg, now)
	c.release(*slot)
	*slot = -1
	for f.n > 0 && f.held[f.head] < 0 {
		f.head = uint8((int(f.head) + 1) % udpMaxPending)
		f.n--
	}
}

func (c *udpComparer) release(i int32) { c.free = append(c.free, i) }

// expire judges the copies sent more than udpAnswerWait before now (the
// tracker no longer matches their target answers), and forgets the flows
// idle for udpFlowIdle with nothing held. With final it judges every copy
// held and forgets every flow (tcpcopy is stopping).
func (c *udpComparer) expire(now int64, final bool) {
	wait, idle := now-int64(udpAnswerWait), now-int64(udpFlowIdle)
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, f := range c.flows {
		n := f.n
		for j := 0; j < int(f.n); j++ {
			if i := *f.at(j); i >= 0 && (final || c.ents[i].sent < wait) {
				c.judge(k, &f, j, now)
				j = -1 // judge moved the head: start again
			}
		}
		switch {
		case f.n == 0 && (final || f.last < idle):
			delete(c.flows, k)
		case n != f.n:
			c.flows[k] = f
		}
	}
}

// stats returns the verdicts so far, the copies not held counted
// not_compared (too_many_pending).
func (c *udpComparer) stats() compare.Stats {
	c.mu.Lock()
	defer c.mu.Unlock()
	s := c.eng.Stats()
	s.Verdicts[compare.NotCompared] += c.full
	s.NotCompared[compare.ReasonTooMany] += c.full
	return s
}

// held returns the copies held now.
func (c *udpComparer) held() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.ents) - len(c.free)
}

// describeQuery appends a short description of a query to port to dst
// (the diff log's request): "dns NAME TYPE" when payload is a DNS query
// with one question (RFC 1035 §4.1), else "udp PORT: N bytes". dst must
// have room for udpDescLen bytes: nothing is allocated.
func describeQuery(dst []byte, port uint16, payload []byte) []byte {
	if d, ok := describeDNS(dst, payload); ok {
		return d
	}
	dst = append(dst, "udp "...)
	dst = strconv.AppendUint(dst, uint64(port), 10)
	dst = append(dst, ": "...)
	dst = strconv.AppendUint(dst, uint64(len(payload)), 10)
	return append(dst, " bytes"...)
}

// describeDNS appends "dns NAME TYPE" for a standard DNS query with one
// question and reports whether payload is one.
func describeDNS(dst []byte, p []byte) ([]byte, bool) {
	// Header: QR 0, opcode 0 (a standard query), QDCOUNT 1.
	if len(p) < 12+5 || p[2]&0xf8 != 0 || p[4] != 0 || p[5] != 1 {
		return dst, false
	}
	start := len(dst)
	dst = append(dst, "dns "...)
	off, name := 12, 0
	for {
		if off >= len(p) {
			return dst[:start], false
		}
		l := int(p[off])
		off++
		if l == 0 {
			break
		}
		if l > 63 || off+l > len(p) {
			return dst[:start], false // a pointer, or too long: no name
		}
		for _, b := range p[off : off+l] {
			if b <= ' ' || b >= 0x7f {
				return dst[:start], false
			}
		}
		if name+l+1 <= udpNameLen {
			dst = append(append(dst, p[off:off+l]...), '.')
		}
		name += l + 1
		off += l
	}
	if name == 0 {
		dst = append(dst, '.')
	} else if name > udpNameLen {
		dst = append(dst, "..."...)
	}
	if off+4 > len(p) {
		return dst[:start], false
	}
	dst = append(dst, ' ')
	switch t := uint16(p[off])<<8 | uint16(p[off+1]); t {
	case 1:
		dst = append(dst, 'A')
	case 2:
		dst = append(dst, "NS"...)
	case 5:
		dst = append(dst, "CNAME"...)
	case 6:
		dst = append(dst, "SOA"...)
	case 12:
		dst = append(dst, "PTR"...)
	case 15:
		dst = append(dst, "MX"...)
	case 16:
		dst = append(dst, "TXT"...)
	case 28:
		dst = append(dst, "AAAA"...)
	case 33:
		dst = append(dst, "SRV"...)
	case 65:
		dst = append(dst, "HTTPS"...)
	case 255:
		dst = append(dst, "ANY"...)
	default:
		dst = append(dst, "TYPE"...)
		dst = strconv.AppendUint(dst, uint64(t), 10)
	}
	return dst, true
}

// copiedFlow returns the key of the first copy of the client flow
// client (offline pass pass) to target, as copyDatagram makes it.
func (u *udpCopier) copiedFlow(client, target netip.AddrPort, pass uint32) udpFlowKey {
	v := uint64(pass) * uint64(u.copies)
	return flowKey(netip.AddrPortFrom(u.rw.fakeAddr(client.Addr(), v), u.rw.fakePort(client.Port(), v)), target)
}
