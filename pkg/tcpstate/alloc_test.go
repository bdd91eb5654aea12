package tcpstate

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"runtime"
	"testing"
	"time"
	"unsafe"

	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
)

// nopOut discards output, for allocation tests and benchmarks.
type nopOut struct{ n int }

func (o *nopOut) Send(pkt []byte)            { o.n++ }
func (o *nopOut) Route(Key, bool) bool       { return true }
func (o *nopOut) Request(Key, uint32, int64) {}
func (o *nopOut) AnswerPending(Key) bool     { return false }

// cycle is one request and response on an established keep-alive session
// with prebuilt packets.
type cycle struct {
	tab             *Table
	k               Key
	req, resp       []byte
	preq, presp     ipmangle.Parsed
	seq, tseq, oack uint32
	now             int64
}

func newCycle(tb testing.TB) *cycle {
	c := &cycle{tab: New(Config{}, &nopOut{}), k: key1, seq: 1000, tseq: 5000, oack: 9001, now: 1}
	build := func(f ipmangle.Fields) []byte {
		b := make([]byte, f.Len())
		f.Encode(b)
		return b
	}
	syn := build(ipmangle.Fields{Src: clientAP, Dst: onlineAP, Seq: c.seq, Flags: S, Window: 100, MSS: 1460, WScale: 7})
	var p ipmangle.Parsed
	p.Decode(syn)
	c.tab.Client(c.now, c.k, syn, &p)
	sa := build(ipmangle.Fields{Src: targetAP, Dst: clientAP, Seq: c.tseq, Ack: c.seq + 1, Flags: SA, Window: 65535, WScale: 7, MSS: 1460})
	p.Decode(sa)
	c.tab.Response(c.now, c.k, &p, 0)
	c.tab.Flush(c.now)
	c.seq++
	c.tseq++
	c.req = build(ipmangle.Fields{Src: clientAP, Dst: onlineAP, Flags: PA, Window: 100, WScale: -1, Payload: make([]byte, 300)})
	c.resp = build(ipmangle.Fields{Src: targetAP, Dst: clientAP, Flags: PA, Window: 512, WScale: -1})
	c.preq.Decode(c.req)
	c.presp.Decode(c.resp)
	return c
}

// run does one request/response exchange of 300 bytes out, 1000 back.
func (c *cycle) run() {
	c.now += int64(time.Millisecond)
	binary.BigEndian.PutUint32(c.req[24:], c.seq)
	binary.BigEndian.PutUint32(c.req[28:], c.oack)
	c.preq.Seq, c.preq.Ack = c.seq, c.oack
	c.tab.Client(c.now, c.k, c.req, &c.preq)
	c.seq += 300
	c.oack += 1000
	c.presp.Seq, c.presp.Ack = c.tseq, c.seq
	c.tab.Response(c.now, c.k, &c.presp, 1000)
	c.tab.Flush(c.now)
	c.tseq += 1000
	c.tab.Tick(c.now)
}

func TestSteadyStateAllocs(t *testing.T) {
	c := newCycle(t)
	for range 10 {
		c.run()
	}
	if a := testing.AllocsPerRun(1000, c.run); a != 0 {
		t.Errorf("a request/response cycle allocates %v times, want 0", a)
	}
	if st := c.tab.Stats(); st.AckedBytes != st.CapturedBytes || st.Requests < 1000 {
		t.Errorf("stats = %+v", st)
	}
}

func BenchmarkRequestResponse(b *testing.B) {
	c := newCycle(b)
	b.ReportAllocs()
	for b.Loop() {
		c.run()
	}
}

// BenchmarkIdleSessionMemory reports the heap bytes an established, idle
// session costs (the session, its map entry and timer-heap slot).
func BenchmarkIdleSessionMemory(b *testing.B) {
	const n = 20000
	b.ReportAllocs()
	var perSession float64
	for b.Loop() {
		tab := New(Config{}, &nopOut{})
		var p ipmangle.Parsed
		buf := make([]byte, 128)
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		for i := range n {
			k := Key{Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte{192, 0, 2, byte(i >> 8)}), uint16(1024+i)), Target: targetAP}
			f := ipmangle.Fields{Src: k.Client, Dst: onlineAP, Seq: 1000, Flags: S, Window: 100, WScale: -1}
			m := f.Encode(buf)
			p.Decode(buf[:m])
			tab.Client(1, k, buf[:m], &p)
			f = ipmangle.Fields{Src: targetAP, Dst: k.Client, Seq: 5000, Ack: 1001, Flags: SA, Window: 65535, WScale: 7}
			m = f.Encode(buf)
			p.Decode(buf[:m])
			tab.Response(1, k, &p, 0)
			tab.Flush(1)
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		perSession = float64(after.HeapAlloc-before.HeapAlloc) / n
		if tab.Len() != n {
			b.Fatalf("%d sessions, want %d", tab.Len(), n)
		}
	}
	b.ReportMetric(perSession, "bytes/session")
}

// FuzzEvents drives a table with an arbitrary sequence of client packets,
// responses and clock steps: it must never panic, every packet it sends
// must be valid (the fake output checks checksums), and its accounting must
// stay consistent.
func FuzzEvents(f *testing.F) {
	f.Add([]byte{0, 0, 1, 2, 1, 3, 2, 4, 0, 5, 1, 6, 3, 7})
	f.Add([]byte{4, 0, 0, 1, 1, 1, 2, 200, 0, 2, 0, 3, 1, 4, 5, 0})
	f.Add([]byte{0, 0, 1, 2, 0, 0, 1, 200, 0, 40, 2, 4, 4, 100}) // a new SYN while a request is pending
	f.Fuzz(func(t *testing.T, ops []byte) {
		// A small MTU, so that captured segments are split to fit it.
		const mtu = 76
		out := &fakeOut{t: t, routeUp: true, keepRaw: true, mtu: mtu}
		h := &harness{t: &testing.T{}, tab: New(Config{GapTimeout: time.Second, MTU: mtu}, out), out: out, now: 1e18, buf: make([]byte, 70000)}
		h.t = nil
		flagsOf := []ipmangle.TCPFlags{S, A, PA, FA, RA, SA, FPA, 0}
		for i := 0; i+1 < len(ops); i += 2 {
			op, arg := ops[i], ops[i+1]
			fl := flagsOf[arg%8]
			seq := 1000 + uint32(arg)*7
			switch op % 7 {
			case 0, 1:
				payload := ""
				switch {
				case arg%6 == 5:
					payload = "GET / HTTP/1.1\r\n\r\n" // pipelined requests (unanswered.go)
				case arg%3 != 0:
					payload = fmt.Sprintf("%0*d", int(arg%40)+1, 0)
				}
				feedClient(h, fl, seq, 9001+uint32(arg%5)*10, payload)
			case 2, 3:
				feedTarget(h, fl, 5000+uint32(arg)*3, 1000+uint32(arg)*5, uint16(arg)*100, int(arg%7)*10)
			case 4:
				h.now += int64(arg) * int64(10*time.Millisecond)
				h.tab.Tick(h.now)
			case 5:
				h.tab.Shed(arg%2 == 0)
			case 6:
				// The kernel refused the last packet sent as too big.
				if n := len(out.raw); n > 0 {
					h.tab.TooBig(h.now, out.raw[n-1], int(arg))
					h.tab.Flush(h.now)
				}
			}
			st := h.tab.Stats()
			if st.AckedBytes > st.CapturedBytes {
				t.Fatalf("acked %d > captured %d", st.AckedBytes, st.CapturedBytes)
			}
			n := 0
			for _, s := range h.tab.sessions {
				if s.handshaking {
					n++
				}
			}
			if n != h.tab.handshakes {
				t.Fatalf("handshakes = %d, sessions handshaking = %d", h.tab.handshakes, n)
			}
			held := 0
			for k, c := range h.tab.successors {
				held += c.bytes
				if s := h.tab.sessions[k]; (op%7 < 4 || op%7 == 6) && (s == nil || s.freed || s.state == stateTimeWait) {
					// After a Flush every waiting connection waits for a
					// live session.
					t.Fatalf("a connection waits for a session that has ended")
				}
			}
			if held != h.tab.succBytes {
				t.Fatalf("waiting connections hold %d bytes, counted %d", held, h.tab.succBytes)
			}
			for _, s := range h.tab.sessions {
				for j := 1; j < len(s.queue); j++ {
					if !s.queue[j-1].seq.LessThan(s.queue[j].seq) || s.queue[j-1].end() != s.queue[j].seq && j < int(s.next) {
						t.Fatalf("queue out of order, or a hole in what was sent, at %d", j)
					}
				}
				if int(s.nheld) > int(s.next) {
					t.Fatalf("%d segments held, %d sent", s.nheld, s.next)
				}
				for _, g := range s.queue[:s.nheld] {
					if !g.counted || s.sndUna.LessThan(g.end()) {
						t.Fatalf("a held segment is not acknowledged")
					}
				}
				if held := len(s.queue) * h.tab.segs.size; int(s.queueBytes) != held || int(s.next) > len(s.queue) {
					t.Fatalf("%d segments hold %d bytes, counted %d; next %d", len(s.queue), held, s.queueBytes, s.next)
				}
				for j, g := range s.queue {
					if g.n > len(g.data) || (j < int(s.next)) != (g.sentAt != 0) {
						t.Fatalf("segment %d: %d bytes in a %d-byte buffer, sent at %d, next %d", j, g.n, len(g.data), g.sentAt, s.next)
					}
				}
			}
		}
		h.tab.CloseAll(h.now)
		if h.tab.Len() != 0 || len(h.tab.successors) != 0 || h.tab.succBytes != 0 {
			t.Fatalf("%d sessions and %d waiting connections left after CloseAll", h.tab.Len(), len(h.tab.successors))
		}
	})
}

func feedClient(h *harness, flags ipmangle.TCPFlags, seq, ack uint32, payload string) {
	f := ipmangle.Fields{Src: clientAP, Dst: onlineAP, Seq: seq, Ack: ack, Flags: flags, Window: 502, WScale: -1, Payload: []byte(payload)}
	n := f.Encode(h.buf)
	var p ipmangle.Parsed
	p.Decode(h.buf[:n])
	h.tab.Client(h.now, key1, h.buf[:n], &p)
	h.tab.Flush(h.now)
}

func feedTarget(h *harness, flags ipmangle.TCPFlags, seq, ack uint32, window uint16, payloadLen int) {
	f := ipmangle.Fields{Src: targetAP, Dst: clientAP, Seq: seq, Ack: ack, Flags: flags, Window: window, WScale: -1}
	n := f.Encode(h.buf)
	var p ipmangle.Parsed
	p.Decode(h.buf[:n])
	h.tab.Response(h.now, key1, &p, payloadLen)
	h.tab.Flush(h.now)
}

// TestSessionSize guards the per-session memory: an idle session (struct,
// map slot and heap slot, measured by BenchmarkIdleSessionMemory) must stay
// within 512 bytes. The struct is allocated in a malloc size class: at
// 384 bytes it takes 384, one byte more takes 416 and the total passes 512.
func TestSessionSize(t *testing.T) {
	if n := unsafe.Sizeof(session{}); n > 384 {
		t.Errorf("session is %d bytes, want at most 384 (a malloc size class)", n)
	}
}
