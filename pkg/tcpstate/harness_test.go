package tcpstate

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
)

// sent is what the harness records of a packet the table sent.
type sent struct {
	flags   ipmangle.TCPFlags
	seq     uint32
	ack     uint32
	payload string
}

func (s sent) String() string {
	return fmt.Sprintf("%s seq=%d ack=%d %q", s.flags, s.seq, s.ack, s.payload)
}

// fakeOut records what the table sends and announces.
type fakeOut struct {
	t       testing.TB
	pkts    []sent
	raw     [][]byte
	routes  []string
	routeUp bool
	keepRaw bool
	// mtu, when set, is the largest packet the table may send.
	mtu int
	// pending is AnswerPending's answer.
	pending bool
}

func (o *fakeOut) Send(pkt []byte) {
	var p ipmangle.Parsed
	p.Decode(pkt)
	if !p.Valid || p.Truncated {
		o.t.Fatalf("table sent an invalid packet: %v % x", p.Reason, pkt)
	}
	// Every packet must carry right checksums.
	if p.IPVersion == 4 && ipmangle.Checksum(pkt[:p.IPHeaderLen], 0) != 0 {
		o.t.Fatalf("bad IPv4 header checksum")
	}
	pseudo := ipmangle.PseudoHeaderChecksum(p.Src.Addr(), p.Dst.Addr(), 6, p.TotalLen-p.TCPOffset)
	if ipmangle.Checksum(pkt[p.TCPOffset:p.TotalLen], pseudo) != 0 {
		o.t.Fatalf("bad TCP checksum")
	}
	if o.mtu > 0 && len(pkt) > o.mtu {
		o.t.Fatalf("table sent a %d-byte packet, the MTU is %d", len(pkt), o.mtu)
	}
	o.pkts = append(o.pkts, sent{p.Flags, p.Seq, p.Ack, string(p.Payload(pkt))})
	if o.keepRaw {
		o.raw = append(o.raw, append([]byte(nil), pkt...))
	}
}

func (o *fakeOut) Request(Key, uint32, int64) {}

func (o *fakeOut) AnswerPending(Key) bool { return o.pending }

func (o *fakeOut) Route(k Key, add bool) bool {
	if add {
		o.routes = append(o.routes, "add "+k.Client.String())
	} else {
		o.routes = append(o.routes, "del "+k.Client.String())
	}
	return o.routeUp
}

// take returns and clears the packets sent so far.
func (o *fakeOut) take() []sent {
	p := o.pkts
	o.pkts = nil
	return p
}

var (
	clientAP = netip.MustParseAddrPort("192.0.2.10:40000")
	onlineAP = netip.MustParseAddrPort("192.0.2.1:80")
	targetAP = netip.MustParseAddrPort("203.0.113.20:8080")
	key1     = Key{Client: clientAP, Target: targetAP}
)

// harness drives one Table with a fake clock.
type harness struct {
	t   *testing.T
	tab *Table
	out *fakeOut
	now int64
	buf []byte
	// batching defers Flush to the end of a batch call.
	batching bool
}

func newHarness(t *testing.T, cfg Config) *harness {
	out := &fakeOut{t: t, routeUp: true}
	return &harness{t: t, tab: New(cfg, out), out: out, now: int64(1_700_000_000) * int64(time.Second), buf: make([]byte, 70000)}
}

// client feeds a captured client packet (client -> online).
func (h *harness) client(flags ipmangle.TCPFlags, seq, ack uint32, payload string) {
	h.t.Helper()
	f := ipmangle.Fields{Src: clientAP, Dst: onlineAP, Seq: seq, Ack: ack, Flags: flags, Window: 502, WScale: -1, Payload: []byte(payload)}
	if flags&ipmangle.SYN != 0 {
		f.MSS, f.WScale, f.SACKPermitted, f.HasTS = 1460, 7, true, true
	}
	n := f.Encode(h.buf)
	var p ipmangle.Parsed
	p.Decode(h.buf[:n])
	h.tab.Client(h.now, key1, h.buf[:n], &p)
	if !h.batching {
		h.tab.Flush(h.now)
	}
}

// target feeds a response header (target -> client) with the payload's
// length only, as intercept delivers it.
func (h *harness) target(flags ipmangle.TCPFlags, seq, ack uint32, window uint16, payloadLen int) {
	h.t.Helper()
	h.targetOpts(flags, seq, ack, window, payloadLen, -1)
}

func (h *harness) targetOpts(flags ipmangle.TCPFlags, seq, ack uint32, window uint16, payloadLen int, wscale int8) {
	h.t.Helper()
	f := ipmangle.Fields{Src: targetAP, Dst: clientAP, Seq: seq, Ack: ack, Flags: flags, Window: window, WScale: wscale}
	if flags&ipmangle.SYN != 0 {
		f.MSS = 1460
	}
	n := f.Encode(h.buf)
	var p ipmangle.Parsed
	p.Decode(h.buf[:n])
	h.tab.Response(h.now, key1, &p, payloadLen)
	if !h.batching {
		h.tab.Flush(h.now)
	}
}

// batch feeds what fn feeds as one batch: Flush runs once, at the end.
func (h *harness) batch(fn func()) {
	h.batching = true
	fn()
	h.batching = false
	h.tab.Flush(h.now)
}

// advance moves the clock and runs due timers.
func (h *harness) advance(d time.Duration) {
	h.now += int64(d)
	h.tab.Tick(h.now)
}

// expect checks the packets sent since the last expect, by a compact
// description each: "S 999", "A 1000 5001", "PA 1000 5001 GET /1", "RA ...".
func (h *harness) expect(want ...string) {
	h.t.Helper()
	got := h.out.take()
	var gs []string
	for _, p := range got {
		s := fmt.Sprintf("%s %d %d", p.flags, p.seq, p.ack)
		if p.flags == ipmangle.SYN {
			s = fmt.Sprintf("%s %d", p.flags, p.seq)
		}
		if p.payload != "" {
			s += " " + p.payload
		}
		gs = append(gs, s)
	}
	if strings.Join(gs, "\n") != strings.Join(want, "\n") {
		h.t.Fatalf("sent:\n  %s\nwant:\n  %s", strings.Join(gs, "\n  "), strings.Join(want, "\n  "))
	}
}

// closed returns the count of sessions closed with outcome o and reason r.
func (h *harness) closed(o Outcome, r Reason) uint64 {
	st := h.tab.Stats()
	return st.Closed[o][r]
}
