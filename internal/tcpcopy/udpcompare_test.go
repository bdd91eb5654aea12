package tcpcopy

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"

	"github.com/tcpcopy-go/tcpcopy/pkg/compare"
	"github.com/tcpcopy-go/tcpcopy/pkg/datagram"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/streamhash"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// dnsQueryA is a DNS query for "a.example A" (RFC 1035 §4.1): ID 0x1234,
// RD, one question.
var dnsQueryA = []byte{
	0x12, 0x34, // ID
	0x01, 0x00, // QR 0, opcode 0, RD
	0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, // QD 1
	0x01, 'a', 0x07, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0x00, // a.example.
	0x00, 0x01, 0x00, 0x01, // type A, class IN
}

// dnsAnswerA answers dnsQueryA: QR RD RA, 192.0.2.1, TTL 300.
var dnsAnswerA = []byte{
	0x12, 0x34, 0x81, 0x80, // ID; QR, RD, RA
	0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, // QD 1, AN 1
	0x01, 'a', 0x07, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0x00,
	0x00, 0x01, 0x00, 0x01,
	0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, // pointer to the name, A, IN
	0x00, 0x00, 0x01, 0x2c, 0x00, 0x04, 192, 0, 2, 1, // TTL 300, 192.0.2.1
}

func TestDescribeQuery(t *testing.T) {
	long := []byte{0x00, 0x01, 0x01, 0x00, 0x00, 0x01, 0, 0, 0, 0, 0, 0}
	for range 3 {
		long = append(long, 63)
		long = append(long, bytes.Repeat([]byte{'x'}, 63)...)
	}
	long = append(long, 0, 0x00, 0x1c, 0x00, 0x01) // root, AAAA, IN
	aaaa := bytes.Clone(dnsQueryA)
	aaaa[len(aaaa)-3] = 28
	other := bytes.Clone(dnsQueryA)
	other[len(other)-3] = 99
	pointer := append(bytes.Clone(dnsQueryA[:12]), 0xc0, 0x0c, 0, 1, 0, 1)
	for _, tt := range []struct {
		name    string
		payload []byte
		want    string
	}{
		{"dns A", dnsQueryA, "dns a.example. A"},
		{"dns AAAA", aaaa, "dns a.example. AAAA"},
		{"dns other type", other, "dns a.example. TYPE99"},
		{"dns long name cut", long, "dns " + strings.Repeat(strings.Repeat("x", 63)+".", 1) + "... AAAA"},
		{"an answer is no query", dnsAnswerA, "udp 53: 43 bytes"},
		{"name by pointer", pointer, "udp 53: 18 bytes"},
		{"question cut", dnsQueryA[:20], "udp 53: 20 bytes"},
		{"not dns", []byte("hello"), "udp 53: 5 bytes"},
		{"empty", nil, "udp 53: 0 bytes"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var buf [udpDescLen]byte
			got := describeQuery(buf[:0], 53, tt.payload)
			if string(got) != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if &got[:1][0] != &buf[0] {
				t.Error("the description left its buffer")
			}
		})
	}
}

// dnsPacket is a datagram from src to dst carrying payload.
func dnsPacket(src, dst netip.AddrPort, payload []byte) []byte {
	f := datagram.Fields{Src: src, Dst: dst, TTL: 64, ID: 7, Payload: payload}
	b := make([]byte, f.Len())
	f.Encode(b)
	return b
}

// answerRecord returns the record intercept sends for the target's answer
// payload from target to client: its first prefix bytes and, with hashed,
// its hash (a fragmented answer comes without).
func answerRecord(t testing.TB, target, client netip.AddrPort, payload []byte, prefix int, hashed bool) *wire.Record {
	t.Helper()
	pkt := dnsPacket(target, client, payload)
	format := wire.Format{Version: wire.Version7, UDP: true, Compare: compare.MaxBytes}
	b := wire.NewBatcher(format, 0)
	var h uint64
	if hashed {
		h = streamhash.Sum(payload)
	}
	b.AddHashed(pkt, len(payload), 1, payload[:min(prefix, len(payload))], h, hashed)
	rr := wire.NewRecordReader(bytes.NewReader(b.Bytes()), format)
	if !rr.Next() {
		t.Fatalf("record: %v (skipped %d)", rr.Err(), rr.Skipped())
	}
	rec := rr.Record()
	rec.Header = bytes.Clone(rec.Header)
	rec.Prefix = bytes.Clone(rec.Prefix)
	return &rec
}

// udpCompareEngine is udpEngine with the comparison of UDP answers on (a
// link that compares is up) and routes accepted.
func udpCompareEngine(t testing.TB, mod func(*Config)) (*engine, *udpSender, *batch) {
	e, snd, b := udpEngine(t, mod)
	e.udp.answers.links = acceptRoutes{}
	e.udp.cmp.on = func() bool { return true }
	return e, snd, b
}

// TestUDPCompare pairs the online server's answers with the target's, in
// either order, and checks every verdict, the counters and the diff log's
// entries.
func TestUDPCompare(t *testing.T) {
	noRA := bytes.Clone(dnsAnswerA)
	noRA[3] &^= 0x80
	type answer struct {
		online    []byte // nil: none captured
		target    []byte // nil: none
		tgFirst   bool   // the target's answer comes first
		outgoing  bool   // the online answer as a packet this host sent
		unhashed  bool   // the target's answer without its hash (fragmented)
		wantDiffs string // the verdict in the diff log, "" for none
	}
	for _, tt := range []struct {
		name        string
		copies      int
		answers     []answer
		wantVerdict [compare.NumVerdicts]uint64
		wantReason  compare.Reason
	}{
		{name: "same", answers: []answer{{online: dnsAnswerA, target: dnsAnswerA}},
			wantVerdict: [4]uint64{1, 0, 0, 0}},
		{name: "same, target first, online outgoing", answers: []answer{{online: dnsAnswerA, target: dnsAnswerA, tgFirst: true, outgoing: true}},
			wantVerdict: [4]uint64{1, 0, 0, 0}},
		{name: "differs", answers: []answer{{online: dnsAnswerA, target: noRA, wantDiffs: "differs"}},
			wantVerdict: [4]uint64{0, 1, 0, 0}},
		{name: "missing", answers: []answer{{online: dnsAnswerA, wantDiffs: "missing"}},
			wantVerdict: [4]uint64{0, 0, 1, 0}},
		{name: "online not captured", answers: []answer{{target: dnsAnswerA}},
			wantVerdict: [4]uint64{0, 0, 0, 1}, wantReason: compare.ReasonNoOnline},
		{name: "fragmented target answer", answers: []answer{{online: dnsAnswerA, target: dnsAnswerA, unhashed: true}},
			wantVerdict: [4]uint64{0, 0, 0, 1}, wantReason: compare.ReasonTargetIncomplete},
		{name: "neither answered", answers: []answer{{}}},
		{name: "three in a flow, the second differs",
			answers:     []answer{{online: dnsAnswerA, target: dnsAnswerA}, {online: dnsAnswerA, target: noRA, wantDiffs: "differs"}, {online: dnsAnswerA, target: dnsAnswerA, tgFirst: true}},
			wantVerdict: [4]uint64{2, 1, 0, 0}},
		{name: "-n 3: the first copy only", copies: 3, answers: []answer{{online: dnsAnswerA, target: noRA, wantDiffs: "differs"}},
			wantVerdict: [4]uint64{0, 1, 0, 0}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			e, snd, b := udpCompareEngine(t, func(c *Config) { c.Copies = max(tt.copies, 1) })
			lb := e.disp.newBatch()
			var p ipmangle.Parsed
			for _, a := range tt.answers {
				snd.pkts = nil
				feedCapture(e, b, dnsPacket(dnsClient4, dnsOnline4, dnsQueryA))
				if len(snd.pkts) != max(tt.copies, 1) {
					t.Fatalf("%d copies sent", len(snd.pkts))
				}
				online := func() {
					if a.online == nil {
						return
					}
					pkt := dnsPacket(dnsOnline4, dnsClient4, a.online)
					if a.outgoing {
						e.handleOutgoing(pkt, &p, b, e.now())
						b.flush(e.now())
						return
					}
					feedCapture(e, b, pkt)
				}
				target := func() {
					// Every copy is answered alike; only the first is compared.
					for _, cp := range snd.pkts {
						if a.target == nil {
							break
						}
						var d datagram.Parsed
						d.Decode(cp)
						lb.Record(answerRecord(t, d.Dst, d.Src, a.target, 2048, !a.unhashed))
					}
					lb.Flush()
				}
				if a.tgFirst {
					target()
					online()
				} else {
					online()
					target()
				}
			}
			e.udp.answers.expire(e.now(), true)
			e.udp.cmp.expire(e.now(), true)
			s := e.compareSnapshot()
			if s.Stats.Verdicts != tt.wantVerdict {
				t.Errorf("verdicts %v, want %v", s.Stats.Verdicts, tt.wantVerdict)
			}
			if tt.wantReason != compare.ReasonNone && s.Stats.NotCompared[tt.wantReason] != 1 {
				t.Errorf("not compared %v, want one %v", s.Stats.NotCompared, tt.wantReason)
			}
			var want []string
			for _, a := range tt.answers {
				if a.wantDiffs != "" {
					want = append(want, a.wantDiffs)
				}
			}
			got := e.diffs.Latest()
			if len(got) != len(want) {
				t.Fatalf("%d differences logged, want %d: %+v", len(got), len(want), got)
			}
			for i, d := range got {
				if d.Verdict != want[len(want)-1-i] {
					t.Errorf("difference %d: %s, want %s", i, d.Verdict, want[len(want)-1-i])
				}
				if d.Request != "dns a.example. A" || d.Client != dnsClient4.String() || d.Target != dnsTarget4.String() {
					t.Errorf("difference %+v: want request %q, client %s, target %s", d, "dns a.example. A", dnsClient4, dnsTarget4)
				}
				if d.Online.Length != len(dnsAnswerA) || d.Online.Hash == "" {
					t.Errorf("online side %+v", d.Online)
				}
				if d.Verdict == "differs" && (d.Offset != 3 || d.Kind != "body" || d.TargetR.Length != len(noRA) || d.Online.Hash == d.TargetR.Hash) {
					t.Errorf("difference %+v: want body at offset 3, both lengths, both hashes", d)
				}
			}
			if e.udp.cmp.held() != 0 {
				t.Errorf("%d copies still held", e.udp.cmp.held())
			}
		})
	}
}

// TestUDPCompareBounds: the copies beyond the copies held find no room
// and are counted not_compared (too_many_pending); the copies of a flow
// the tracker does not follow (beyond udpMaxPending, or without a route)
// are not held nor counted; an online answer before any query is
// nobody's.
func TestUDPCompareBounds(t *testing.T) {
	e, _, b := udpCompareEngine(t, nil)
	e.udp.cmp.maxHeld = 4
	feedCapture(e, b, dnsPacket(dnsOnline4, dnsClient4, dnsAnswerA)) // no query yet: nobody's
	for i := range 6 {
		c := netip.AddrPortFrom(dnsClient4.Addr(), dnsClient4.Port()+uint16(i))
		feedCapture(e, b, dnsPacket(c, dnsOnline4, dnsQueryA))
	}
	if n := e.udp.cmp.held(); n != 4 {
		t.Errorf("%d copies held, want 4", n)
	}
	e.udp.answers.expire(e.now(), true)
	e.udp.cmp.expire(e.now(), true)
	s := e.compareSnapshot()
	if s.Stats.NotCompared[compare.ReasonTooMany] != 2 || s.Stats.Verdicts[compare.NotCompared] != 2 || s.Stats.Total() != 2 {
		t.Errorf("stats %+v, want 2 too_many_pending and nothing else (no answer came)", s.Stats)
	}

	e, _, b = udpCompareEngine(t, nil)
	for range udpMaxPending + 3 {
		feedCapture(e, b, dnsPacket(dnsClient4, dnsOnline4, dnsQueryA))
	}
	if n := e.udp.cmp.held(); n != udpMaxPending {
		t.Errorf("%d copies of one flow held, want %d", n, udpMaxPending)
	}
	// The online answers of the 16 followed come, then of the 3 not.
	for range udpMaxPending + 3 {
		feedCapture(e, b, dnsPacket(dnsOnline4, dnsClient4, dnsAnswerA))
	}
	e.udp.answers.expire(e.now(), true)
	e.udp.cmp.expire(e.now(), true)
	if s := e.compareSnapshot(); s.Stats.Verdicts[compare.Missing] != udpMaxPending || s.Stats.Total() != udpMaxPending {
		t.Errorf("one flow: stats %+v, want %d missing and nothing else", s.Stats, udpMaxPending)
	}

	// Without a route, nothing is followed: nothing held, nothing counted.
	e, _, b = udpCompareEngine(t, nil)
	e.udp.answers.links = &routeLog{refuse: true}
	feedCapture(e, b, dnsPacket(dnsClient4, dnsOnline4, dnsQueryA), dnsPacket(dnsOnline4, dnsClient4, dnsAnswerA))
	e.udp.cmp.expire(e.now(), true)
	if s := e.compareSnapshot(); s.Stats.Total() != 0 || e.udp.cmp.held() != 0 {
		t.Errorf("untracked query: stats %+v, %d held", s.Stats, e.udp.cmp.held())
	}
}

// TestUDPCompareAllocs: a query, its online answer and the target's,
// compared the same, cost no allocation once the flows and the copies
// held have grown.
func TestUDPCompareAllocs(t *testing.T) {
	e, snd, b := udpCompareEngine(t, nil)
	snd.keep = false
	q := dnsPacket(dnsClient4, dnsOnline4, dnsQueryA)
	q6 := dnsPacket(dnsClient6, dnsOnline6, dnsQueryA)
	on := dnsPacket(dnsOnline4, dnsClient4, dnsAnswerA)
	on6 := dnsPacket(dnsOnline6, dnsClient6, dnsAnswerA)
	rec := answerRecord(t, dnsTarget4, dnsClient4, dnsAnswerA, 2048, true)
	rec6 := answerRecord(t, dnsTarget6, dnsClient6, dnsAnswerA, 2048, true)
	lb := e.disp.newBatch()
	var (
		p    ipmangle.Parsed
		seg  ipmangle.Segmenter
		segb = make([]byte, e.cfg.MTU)
	)
	run := func() {
		now := e.now()
		e.handleCaptured(q, &p, &seg, segb, b, now, false)
		e.handleCaptured(q6, &p, &seg, segb, b, now, false)
		e.handleCaptured(on, &p, &seg, segb, b, now, false)
		e.handleOutgoing(on6, &p, b, now)
		b.flush(now)
		lb.Record(rec)
		lb.Record(rec6)
		lb.Flush()
	}
	run()
	if a := testing.AllocsPerRun(500, run); a != 0 {
		t.Errorf("a query and both answers allocate %v times", a)
	}
	// One run above, one to warm up, 500 counted; two flows each.
	if s := e.compareSnapshot(); s.Stats.Verdicts[compare.Same] != 2*502 || s.Stats.Total() != 2*502 {
		t.Errorf("verdicts %+v, want %d same", s.Stats, 2*502)
	}
}
