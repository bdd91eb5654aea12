package tcpcopy

import (
	"log/slog"
	"net/netip"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/streamhash"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// countSender counts packets instead of sending them.
type countSender struct{ n int }

func (s *countSender) Send([]byte) error { s.n++; return nil }

// acceptRoutes stands in for the intercept links.
type acceptRoutes struct{}

func (acceptRoutes) Route(wire.Route) bool { return true }
func (acceptRoutes) Flush()                {}

// pipeline is the tcpcopy hot path without sockets: captured bytes go
// through decode, mapping, dispatch, the session engine and the sender;
// response records come back through the dispatcher.
type pipeline struct {
	e    *engine
	snd  *countSender
	p    ipmangle.Parsed
	seg  ipmangle.Segmenter
	segb []byte
	b    *batch
}

func newPipeline(tb testing.TB) *pipeline {
	cfg := Default()
	cfg.Mappings = []Mapping{{Online: netip.MustParseAddrPort("192.0.2.1:80"), Target: netip.MustParseAddrPort("198.51.100.2:8080")}}
	cfg.Intercepts = []netip.AddrPort{netip.MustParseAddrPort("198.51.100.130:36524")}
	cfg.Workers = 1
	if err := cfg.Validate(); err != nil {
		tb.Fatal(err)
	}
	snd := &countSender{}
	e := newEngine(&cfg, snd, slog.New(slog.DiscardHandler))
	for _, w := range e.disp.workers {
		w.links = acceptRoutes{}
	}
	return &pipeline{e: e, snd: snd, segb: make([]byte, cfg.MTU), b: e.disp.newBatch()}
}

// capture runs a captured packet as a batch of its own, as the capture
// loop does.
func (pl *pipeline) capture(pkt []byte) {
	now := time.Now().UnixNano()
	pl.e.handleCaptured(pkt, &pl.p, &pl.seg, pl.segb, pl.b, now, false)
	pl.b.flush(now)
}

// record runs a response record as a batch of its own, as a link reader
// does.
func (pl *pipeline) record(hdr []byte, payloadLen int) {
	rec := wire.Record{Header: hdr, PayloadLen: payloadLen}
	pl.b.Record(&rec)
	pl.b.Flush()
}

func build(f ipmangle.Fields) []byte {
	b := make([]byte, f.Len())
	f.Encode(b)
	return b
}

var (
	benchClient = netip.MustParseAddrPort("192.0.2.10:40000")
	benchOnline = netip.MustParseAddrPort("192.0.2.1:80")
	benchTarget = netip.MustParseAddrPort("198.51.100.2:8080")
)

// exchange is one keep-alive request (one captured segment) and its
// response record, with sequence numbers advanced in place.
type exchange struct {
	req, resp       []byte
	seq, oack, tseq uint32
}

func newExchange(pl *pipeline) *exchange {
	x := &exchange{seq: 1000, oack: 9001, tseq: 5000}
	pl.capture(build(ipmangle.Fields{Src: benchClient, Dst: benchOnline, Seq: x.seq, Flags: ipmangle.SYN, Window: 65535, MSS: 1460, WScale: 7}))
	pl.record(build(ipmangle.Fields{Src: benchTarget, Dst: benchClient, Seq: x.tseq, Ack: x.seq + 1, Flags: ipmangle.SYN | ipmangle.ACK, Window: 65535, MSS: 1460, WScale: 7}), 0)
	x.seq++
	x.tseq++
	x.req = build(ipmangle.Fields{Src: benchClient, Dst: benchOnline, Flags: ipmangle.PSH | ipmangle.ACK, Window: 512, WScale: -1, Payload: make([]byte, 400)})
	x.resp = build(ipmangle.Fields{Src: benchTarget, Dst: benchClient, Flags: ipmangle.PSH | ipmangle.ACK, Window: 512, WScale: -1})
	return x
}

func (x *exchange) run(pl *pipeline) {
	var p ipmangle.Parsed
	p.Decode(x.req)
	ipmangle.SetSeq(x.req, &p, x.seq)
	ipmangle.SetAck(x.req, &p, x.oack)
	pl.capture(x.req)
	x.seq += 400
	x.oack += 2000
	p.Decode(x.resp)
	ipmangle.SetSeq(x.resp, &p, x.tseq)
	ipmangle.SetAck(x.resp, &p, x.seq)
	pl.record(x.resp, 2000)
	x.tseq += 2000
}

func TestPipelineCopies(t *testing.T) {
	pl := newPipeline(t)
	x := newExchange(pl)
	for range 100 {
		x.run(pl)
	}
	st := pl.e.disp.workers[0].tab.Stats()
	if st.Requests != 100 || st.AckedBytes != 40000 || st.CapturedBytes != 40000 {
		t.Errorf("stats = %+v", st)
	}
	// SYN, handshake ACK, then a request per exchange: each carries the
	// delayed ACK of the previous response (the timers do not run here).
	if pl.snd.n != 102 {
		t.Errorf("sent %d packets, want 102", pl.snd.n)
	}
	if a := testing.AllocsPerRun(500, func() { x.run(pl) }); a != 0 {
		t.Errorf("capture→engine→send allocates %v times per exchange", a)
	}
}

// BenchmarkPipelinePacket measures one captured request packet and one
// response record through decode, dispatch, the engine and the sender.
func BenchmarkPipelinePacket(b *testing.B) {
	pl := newPipeline(b)
	x := newExchange(pl)
	b.ReportAllocs()
	for b.Loop() {
		x.run(pl)
	}
}

// TestPipelineCompareAllocs runs exchanges with the response comparison
// on: the online server's answer through the capture path, the target's
// record with its hash and first bytes. Every pair is judged same, and
// the per-packet path allocates nothing.
func TestPipelineCompareAllocs(t *testing.T) {
	pl := newPipeline(t)
	if pl.e.cmp == nil {
		t.Fatal("the comparison is off by default")
	}
	for _, w := range pl.e.disp.workers {
		w.cmp.on = func() bool { return true } // as with an intercept that compares
	}
	x := newExchange(pl)
	answer := []byte("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\n0123456789")
	online := build(ipmangle.Fields{Src: benchOnline, Dst: benchClient, Flags: ipmangle.PSH | ipmangle.ACK, Window: 512, WScale: -1, Payload: answer})
	resp := build(ipmangle.Fields{Src: benchTarget, Dst: benchClient, Flags: ipmangle.PSH | ipmangle.ACK, Window: 512, WScale: -1})
	var p ipmangle.Parsed
	oseq := uint32(7000)
	run := func() {
		p.Decode(x.req)
		ipmangle.SetSeq(x.req, &p, x.seq)
		ipmangle.SetAck(x.req, &p, oseq)
		pl.capture(x.req)
		x.seq += 400
		p.Decode(online)
		ipmangle.SetSeq(online, &p, oseq)
		ipmangle.SetAck(online, &p, x.seq)
		pl.capture(online)
		oseq += uint32(len(answer))
		p.Decode(resp)
		ipmangle.SetSeq(resp, &p, x.tseq)
		ipmangle.SetAck(resp, &p, x.seq)
		rec := wire.Record{Header: resp, PayloadLen: len(answer), Prefix: answer, Hash: streamhash.Sum(answer), Hashed: true}
		pl.b.Record(&rec)
		pl.b.Flush()
		x.tseq += uint32(len(answer))
	}
	for range 20 {
		run()
	}
	if a := testing.AllocsPerRun(200, run); a != 0 {
		t.Errorf("capture, answers and comparison allocate %v times per exchange", a)
	}
	w := pl.e.disp.workers[0]
	w.mu.Lock()
	st := w.cmp.eng.Stats()
	w.mu.Unlock()
	if st.Verdicts[0] < 200 || st.Total() != st.Verdicts[0] {
		t.Errorf("verdicts %v, want every one same", st.Verdicts)
	}
}

// TestPipelineOtherProtocols: a well-formed packet of another protocol (an
// offline file without -F brings ICMPv6 and UDP too) is unmatched; only a
// damaged one is invalid.
func TestPipelineOtherProtocols(t *testing.T) {
	icmp6 := []byte{
		0x60, 0, 0, 0, 0, 8, 58, 255, // ICMPv6, payload 8 bytes
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x0a,
		0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
		133, 0, 0x7b, 0x5a, 0, 0, 0, 0, // router solicitation
	}
	udp4 := []byte{
		0x45, 0, 0, 29, 0, 1, 0, 0, 64, 17, 0, 0, 192, 0, 2, 10, 192, 0, 2, 1,
		0x9c, 0x40, 0, 53, 0, 9, 0, 0, 'x',
	}
	shortTCP := build(ipmangle.Fields{Src: benchClient, Dst: benchOnline, Seq: 1, Flags: ipmangle.SYN, Window: 512, WScale: -1})[:30]
	for _, tt := range []struct {
		name               string
		pkt                []byte
		unmatched, invalid uint64
	}{
		{"ICMPv6 router solicitation", icmp6, 1, 0},
		{"UDP without udp: mappings", udp4, 1, 0},
		{"TCP cut in its header", shortTCP, 0, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			pl := newPipeline(t)
			pl.capture(tt.pkt)
			if u, i := pl.e.unmatched.Load(), pl.e.invalid.Load(); u != tt.unmatched || i != tt.invalid || pl.snd.n != 0 {
				t.Errorf("unmatched %d, invalid %d, sent %d; want %d, %d, 0", u, i, pl.snd.n, tt.unmatched, tt.invalid)
			}
		})
	}
}
