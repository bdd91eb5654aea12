package tcpstate

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
)

// simPath plays the path to the target and the target's TCP receiver, for
// the segment size tests: a kernel that refuses packets above refuseAbove
// (EMSGSIZE, handed to Table.TooBig as the worker does), a link that
// drops packets above dropAbove without a word (a smaller MTU further on:
// a black hole), and a receiver that announces mss (0: no MSS option),
// answers with timestamps if ts, acknowledges in-order data, answers
// anything else with a duplicate ACK, and closes when the client does.
// Its answers come back one rtt later.
type simPath struct {
	t                      *testing.T
	tab                    *Table
	now                    int64
	rtt                    int64
	refuseAbove, dropAbove int
	mss                    uint16
	ts                     bool
	// zeroWindow makes the receiver take nothing and announce window 0.
	zeroWindow bool
	// dropSeq, when set, makes the receiver never take the segment that
	// starts at this sequence number (a middlebox that drops it), while it
	// answers everything else.
	dropSeq *uint32
	// With rng set, lossOut of the packets toward the target and lossIn of
	// its answers are lost at random.
	rng             *rand.Rand
	lossOut, lossIn float64
	ooo             map[uint32][]byte // out-of-order data the receiver holds

	key      Key
	isn      uint32 // receiver's
	rcvNxt   uint32
	got      []byte // in-order payload received
	finGot   bool
	sizes    []int    // lengths of the packets that reached the receiver
	refused  [][]byte // packets refused, for TooBig
	answers  []simAnswer
	maxSent  int // longest packet the table built
	tsvals   []uint32
	announce int // SYN-ACKs sent
}

type simAnswer struct {
	at  int64
	hdr []byte
	n   int
}

func (p *simPath) Send(pkt []byte) {
	var d ipmangle.Parsed
	d.Decode(pkt)
	if !d.Valid || d.Truncated {
		p.t.Fatalf("invalid packet sent: %v", d.Reason)
	}
	p.maxSent = max(p.maxSent, len(pkt))
	if d.HasTS() {
		p.tsvals = append(p.tsvals, d.TSVal)
	}
	switch {
	case p.refuseAbove > 0 && len(pkt) > p.refuseAbove:
		p.refused = append(p.refused, slices.Clone(pkt))
		return
	case p.dropAbove > 0 && len(pkt) > p.dropAbove:
		return
	case p.rng != nil && p.rng.Float64() < p.lossOut:
		return
	}
	p.sizes = append(p.sizes, len(pkt))
	p.receive(&d, pkt)
}

func (p *simPath) Route(Key, bool) bool       { return true }
func (p *simPath) Request(Key, uint32, int64) {}
func (p *simPath) AnswerPending(Key) bool     { return false }

func (p *simPath) receive(d *ipmangle.Parsed, pkt []byte) {
	switch {
	case d.Flags&ipmangle.RST != 0:
		return
	case d.Flags&ipmangle.SYN != 0:
		p.key = Key{Client: d.Src, Target: d.Dst}
		p.isn, p.rcvNxt = 70000, d.Seq+1
		p.announce++
		p.answer(d, ipmangle.SYN|ipmangle.ACK, p.isn, p.rcvNxt, 0)
		return
	}
	win := uint16(65535)
	if p.zeroWindow {
		win = 0
	}
	payload := d.Payload(pkt)
	switch {
	case len(payload) > 0 && d.Seq == p.rcvNxt && !p.zeroWindow && (p.dropSeq == nil || *p.dropSeq != d.Seq):
		p.got = append(p.got, payload...)
		p.rcvNxt += uint32(len(payload))
		for b, ok := p.ooo[p.rcvNxt]; ok; b, ok = p.ooo[p.rcvNxt] {
			delete(p.ooo, p.rcvNxt)
			p.got = append(p.got, b...)
			p.rcvNxt += uint32(len(b))
		}
		if d.Flags&ipmangle.FIN != 0 {
			p.rcvNxt++
			p.finGot = true
		}
		p.answerWin(d, ipmangle.ACK, p.isn+1, p.rcvNxt, win)
	case len(payload) > 0 && p.rng != nil && int32(d.Seq-p.rcvNxt) > 0:
		// Out of order: kept, as real receivers keep it; a duplicate ACK.
		if p.ooo == nil {
			p.ooo = map[uint32][]byte{}
		}
		p.ooo[d.Seq] = bytes.Clone(payload)
		p.answerWin(d, ipmangle.ACK, p.isn+1, p.rcvNxt, win)
	case len(payload) == 0 && d.Flags&ipmangle.FIN != 0 && d.Seq == p.rcvNxt:
		p.rcvNxt++
		p.finGot = true
		p.answerWin(d, ipmangle.FIN|ipmangle.ACK, p.isn+1, p.rcvNxt, win)
	case len(payload) > 0 || d.Flags&ipmangle.FIN != 0:
		p.answerWin(d, ipmangle.ACK, p.isn+1, p.rcvNxt, win) // duplicate ACK
	case p.zeroWindow && d.Seq+1 == p.rcvNxt:
		p.answerWin(d, ipmangle.ACK, p.isn+1, p.rcvNxt, win) // window probe
	}
}

func (p *simPath) answer(d *ipmangle.Parsed, flags ipmangle.TCPFlags, seq, ack uint32, n int) {
	f := ipmangle.Fields{Src: d.Dst, Dst: d.Src, Seq: seq, Ack: ack, Flags: flags, Window: 65535, WScale: -1}
	if flags&ipmangle.SYN != 0 {
		f.MSS, f.WScale = p.mss, 7
	}
	p.queue(&f, d, n)
}

func (p *simPath) answerWin(d *ipmangle.Parsed, flags ipmangle.TCPFlags, seq, ack uint32, win uint16) {
	f := ipmangle.Fields{Src: d.Dst, Dst: d.Src, Seq: seq, Ack: ack, Flags: flags, Window: win >> 7, WScale: -1}
	if win != 0 && f.Window == 0 {
		f.Window = 1
	}
	p.queue(&f, d, 0)
}

func (p *simPath) queue(f *ipmangle.Fields, d *ipmangle.Parsed, n int) {
	if p.rng != nil && p.rng.Float64() < p.lossIn {
		return
	}
	if p.ts && (f.Flags&ipmangle.SYN == 0 || d.HasTS()) {
		f.HasTS, f.TSVal, f.TSEcr = true, uint32(p.now/int64(time.Millisecond)), d.TSVal
	}
	b := make([]byte, f.Len())
	f.Encode(b)
	p.answers = append(p.answers, simAnswer{at: p.now + p.rtt, hdr: b, n: n})
}

// run delivers answers, refusals and timers until the clock reaches
// until, as a worker does.
func (p *simPath) run(until int64) {
	for {
		p.flushRefused()
		next := until
		if len(p.answers) > 0 && p.answers[0].at < next {
			next = p.answers[0].at
		}
		if d := p.tab.NextDeadline(); d != 0 && d < next {
			next = d
		}
		if next >= until {
			p.now = max(p.now, until)
			return
		}
		p.now = max(p.now, next)
		for len(p.answers) > 0 && p.answers[0].at <= p.now {
			a := p.answers[0]
			p.answers = p.answers[1:]
			var d ipmangle.Parsed
			d.Decode(a.hdr)
			p.tab.Response(p.now, Key{Client: d.Dst, Target: d.Src}, &d, a.n)
		}
		p.tab.Flush(p.now)
		p.tab.Tick(p.now)
		p.tab.Flush(p.now)
	}
}

// flushRefused hands the refused packets to TooBig, with the MTU the
// kernel would report, until none is left.
func (p *simPath) flushRefused() {
	for len(p.refused) > 0 {
		r := p.refused
		p.refused = nil
		for _, pkt := range r {
			p.tab.TooBig(p.now, pkt, p.refuseAbove)
		}
		p.tab.Flush(p.now)
	}
}

// clientPkt feeds one captured client packet.
func (p *simPath) clientPkt(k Key, online netip.AddrPort, flags ipmangle.TCPFlags, seq, ack uint32, payload []byte, opts bool) {
	f := ipmangle.Fields{Src: k.Client, Dst: online, Seq: seq, Ack: ack, Flags: flags, Window: 502, WScale: -1, Payload: payload}
	if flags&ipmangle.SYN != 0 {
		f.MSS = 1460
		if opts {
			f.WScale, f.SACKPermitted, f.HasTS = 7, true, true
		}
	}
	b := make([]byte, f.Len())
	f.Encode(b)
	var d ipmangle.Parsed
	d.Decode(b)
	p.tab.Client(p.now, k, b, &d)
	p.tab.Flush(p.now)
}

// body returns n bytes that show where they belong.
func body(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26 + i/7919%3)
	}
	return b
}

// TestCopiesFit copies requests made of full captured segments through
// paths of several sizes: every packet fits the path and the target's
// MSS with our headers as built, and the target receives the whole
// stream.
func TestCopiesFit(t *testing.T) {
	v4 := Key{Client: netip.MustParseAddrPort("192.0.2.10:40000"), Target: netip.MustParseAddrPort("198.51.100.2:8080")}
	v6 := Key{Client: netip.MustParseAddrPort("[2001:db8:1::10]:40000"), Target: netip.MustParseAddrPort("[2001:db8:2::2]:8080")}
	on4, on6 := netip.MustParseAddrPort("192.0.2.1:80"), netip.MustParseAddrPort("[2001:db8:1::1]:80")
	tests := []struct {
		name string
		key  Key
		// mtu is -M; seg the captured segments' payload (at most mtu
		// less 40 or 60).
		mtu, seg int
		syn      bool   // the client's SYN was captured
		mss      uint16 // the target's MSS option, 0 none
		ts       bool   // the target does timestamps
		refuse   int    // the kernel refuses packets above this (EMSGSIZE)
		drop     int    // the path drops packets above this silently
		wantMax  int    // longest packet that may reach the target
		wantTB   bool   // TooBig must have lowered the size
	}{
		{name: "no client timestamps, 1460-byte segments", key: v4, mtu: 1500, seg: 1460, syn: true, mss: 1460, ts: true, wantMax: 1500},
		{name: "same without the SYN captured", key: v4, mtu: 1500, seg: 1460, mss: 1460, ts: true, wantMax: 1500},
		{name: "target without timestamps", key: v4, mtu: 1500, seg: 1460, syn: true, mss: 1460, wantMax: 1500},
		{name: "IPv6, 1440-byte segments", key: v6, mtu: 1500, seg: 1440, syn: true, mss: 1440, ts: true, wantMax: 1500},
		{name: "IPv6 without the SYN", key: v6, mtu: 1500, seg: 1440, mss: 1440, ts: true, wantMax: 1500},
		{name: "target MTU 1400: its MSS says so", key: v4, mtu: 1500, seg: 1460, syn: true, mss: 1360, ts: true, drop: 1400, wantMax: 1400},
		{name: "jumbo client, -M 9000, target MTU 1500", key: v4, mtu: 9000, seg: 8948, syn: true, mss: 1460, ts: true, drop: 1500, wantMax: 1500},
		{name: "no MSS option: 536", key: v4, mtu: 1500, seg: 1460, syn: true, ts: true, wantMax: 576},
		{name: "IPv6 without MSS option: 1220", key: v6, mtu: 1500, seg: 1440, syn: true, ts: true, wantMax: 1280},
		{name: "-M 1400", key: v4, mtu: 1400, seg: 1360, syn: true, mss: 1460, ts: true, wantMax: 1400},
		{name: "kernel refuses above 1400 (EMSGSIZE)", key: v4, mtu: 1500, seg: 1460, syn: true, mss: 1460, ts: true, refuse: 1400, wantMax: 1400, wantTB: true},
		{name: "IPv6 kernel refuses above 1280", key: v6, mtu: 1500, seg: 1440, syn: true, mss: 1440, ts: true, refuse: 1280, wantMax: 1280, wantTB: true},
		{name: "black hole above 1280", key: v4, mtu: 1500, seg: 1460, syn: true, mss: 1460, ts: true, drop: 1280, wantMax: 1280},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &simPath{t: t, rtt: int64(time.Millisecond), mss: tt.mss, ts: tt.ts, refuseAbove: tt.refuse, dropAbove: tt.drop, now: 1e18}
			p.tab = New(Config{MTU: tt.mtu}, p)
			online := on4
			if !tt.key.Client.Addr().Is4() {
				online = on6
			}
			const isn, oack = 1000, 9001
			seq := uint32(isn + 1)
			if tt.syn {
				p.clientPkt(tt.key, online, S, isn, 0, nil, false)
				p.run(p.now + int64(2*time.Millisecond))
				p.clientPkt(tt.key, online, A, seq, oack, nil, false)
			}
			// A POST of five full segments and a short one, then a second
			// request after the online server answered 100 bytes.
			var want []byte
			for i, n := range []int{tt.seg, tt.seg, tt.seg, tt.seg, tt.seg, 700} {
				b := body(n)
				b[0] = byte('0' + i)
				flags := A
				if i == 5 {
					flags = PA
				}
				p.clientPkt(tt.key, online, flags, seq, oack, b, false)
				want = append(want, b...)
				seq += uint32(n)
			}
			p.run(p.now + int64(50*time.Millisecond))
			second := body(tt.seg)
			p.clientPkt(tt.key, online, PA, seq, oack+100, second, false)
			want = append(want, second...)
			seq += uint32(len(second))
			p.run(p.now + int64(2*time.Second))
			p.clientPkt(tt.key, online, FA, seq, oack+200, nil, false)
			p.run(p.now + int64(5*time.Second))

			if !bytes.Equal(p.got, want) {
				t.Fatalf("the target got %d bytes, want %d (the first %d equal)", len(p.got), len(want), commonPrefix(p.got, want))
			}
			if !p.finGot {
				t.Errorf("the target got no FIN")
			}
			for _, n := range p.sizes {
				if n > tt.wantMax {
					t.Fatalf("a %d-byte packet reached the target, want at most %d (sizes %v)", n, tt.wantMax, p.sizes)
				}
			}
			st := p.tab.Stats()
			if st.Closed[Reproduced][ReasonNone] != 1 {
				t.Errorf("outcomes = %v", st.Closed)
			}
			if tt.wantTB != (st.Resent > 0) {
				t.Errorf("resent %d after TooBig, want some: %v", st.Resent, tt.wantTB)
			}
			if tt.drop > 0 && tt.drop < 1400 && st.Blackholes == 0 {
				t.Errorf("no black hole detected")
			}
		})
	}
}

func commonPrefix(a, b []byte) int {
	n := 0
	for n < len(a) && n < len(b) && a[n] == b[n] {
		n++
	}
	return n
}

// TestTooBigLearnsPathMTU: after the kernel refused a packet as too big,
// the next sessions to that target start with segments that fit.
func TestTooBigLearnsPathMTU(t *testing.T) {
	p := &simPath{t: t, rtt: int64(time.Millisecond), mss: 1460, ts: true, refuseAbove: 1400, now: 1e18}
	p.tab = New(Config{}, p)
	for i := range 2 {
		k := Key{Client: netip.AddrPortFrom(clientAP.Addr(), uint16(40000+i)), Target: targetAP}
		p.clientPkt(k, onlineAP, S, 1000, 0, nil, false)
		p.run(p.now + int64(2*time.Millisecond))
		p.clientPkt(k, onlineAP, PA, 1001, 9001, body(1460), false)
		p.run(p.now + int64(time.Second))
		if p.tab.Stats().Requests != uint64(i+1) || len(p.got) != 1460 {
			t.Fatalf("session %d: got %d bytes, want 1460", i, len(p.got))
		}
		st := p.tab.Stats()
		if i == 1 && st.Resent != 2 {
			// Only the first session's segment was refused and resent
			// (in two pieces).
			t.Errorf("resent %d, want 2", st.Resent)
		}
		p.got = nil
	}
}

// TestStalled: a target that keeps answering but never takes a segment
// ends the session as stalled after StallTimeout, with where it stuck,
// long before the session timeout; a silent target does not stall.
func TestStalled(t *testing.T) {
	stuck := uint32(1001 + 2000)
	tests := []struct {
		name       string
		zero       bool
		dropSeq    *uint32
		silent     bool
		wantReason Reason
		wantCause  StallCause
		wantAcked  uint64
	}{
		{name: "a segment never taken", dropSeq: &stuck, wantReason: ReasonStalled, wantCause: StallUnacknowledged, wantAcked: 2000},
		{name: "zero window", zero: true, wantReason: ReasonStalled, wantCause: StallZeroWindow},
		{name: "silent target: the session timeout", silent: true, wantReason: ReasonTargetTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := &simPath{t: t, rtt: int64(time.Millisecond), mss: 1460, ts: true, now: 1e18}
			cfg := Config{StallTimeout: 20 * time.Second, SessionTimeout: 100 * time.Second}
			p.tab = New(cfg, p)
			p.clientPkt(key1, onlineAP, S, 1000, 0, nil, false)
			p.run(p.now + int64(2*time.Millisecond))
			p.zeroWindow, p.dropSeq = tt.zero, tt.dropSeq
			if tt.silent {
				p.dropAbove = 1
			}
			seq := uint32(1001)
			for _, n := range []int{1000, 1000, 1000, 1000} {
				p.clientPkt(key1, onlineAP, A, seq, 9001, body(n), false)
				seq += uint32(n)
			}
			start := p.now
			p.run(p.now + int64(cfg.StallTimeout) - int64(time.Second))
			if st := p.tab.Stats(); st.Active != 1 {
				t.Fatalf("the session ended before the stall timeout: %v", st.Closed)
			}
			p.run(start + int64(cfg.SessionTimeout) + int64(5*time.Second))
			st := p.tab.Stats()
			var got Reason = numReasons
			for o := range numOutcomes {
				for r := range numReasons {
					if st.Closed[o][r] > 0 {
						got = Reason(r)
					}
				}
			}
			if got != tt.wantReason {
				t.Fatalf("reason %v, want %v (%v)", got, tt.wantReason, st.Closed)
			}
			if tt.wantReason != ReasonStalled {
				if st.LastStall.At != 0 {
					t.Errorf("a stall was recorded: %+v", st.LastStall)
				}
				return
			}
			ls := st.LastStall
			if ls.Cause != tt.wantCause || ls.Key != key1 || ls.Offset != tt.wantAcked || ls.Outstanding+ls.Queued != 4000-int(tt.wantAcked) || st.Stalls[tt.wantCause] != 1 {
				t.Errorf("stall = %+v, stalls %v", ls, st.Stalls)
			}
			if d := time.Duration(ls.At - start); d < cfg.StallTimeout || d > cfg.StallTimeout+2*time.Second {
				t.Errorf("stalled after %v, want about %v", d, cfg.StallTimeout)
			}
		})
	}
}

// TestOneByteSegmentsMemory: a client writing a byte at a time to a target
// that takes nothing holds at most MaxQueueBytes of buffers; bytes waiting
// to be sent share a buffer.
func TestOneByteSegmentsMemory(t *testing.T) {
	p := &simPath{t: t, rtt: int64(time.Millisecond), mss: 1460, ts: true, now: 1e18}
	cfg := Config{MaxQueueBytes: 64 << 10}
	p.tab = New(cfg, p)
	p.clientPkt(key1, onlineAP, S, 1000, 0, nil, false)
	p.run(p.now + int64(2*time.Millisecond))
	p.zeroWindow = true // nothing is taken; only the first byte goes out
	seq := uint32(1001)
	for i := range 40000 {
		p.clientPkt(key1, onlineAP, A, seq, 9001, []byte{byte(i)}, false)
		p.run(p.now + int64(10*time.Microsecond))
		if i == 0 {
			p.run(p.now + int64(2*time.Millisecond)) // its answer closes the window
		}
		seq++
		if s := p.tab.sessions[packKey(key1)]; s != nil && s.state == stateEstablished {
			if held := len(s.queue) * p.tab.segs.size; int(s.queueBytes) != held || held > cfg.MaxQueueBytes {
				t.Fatalf("after %d bytes: %d segments hold %d bytes, counted %d, limit %d", i+1, len(s.queue), held, s.queueBytes, cfg.MaxQueueBytes)
			}
		}
	}
	st := p.tab.Stats()
	if st.QueuedSegments > 100 || st.Active != 1 {
		t.Errorf("%d segments queued for 40000 bytes, active %d: want them to share buffers (%v)", st.QueuedSegments, st.Active, st.Closed)
	}

	// Each byte a request of its own (a new ack each time): every one
	// takes a buffer, and the bound ends the session.
	p = &simPath{t: t, rtt: int64(time.Millisecond), mss: 1460, ts: true, now: 1e18}
	p.tab = New(cfg, p)
	p.clientPkt(key1, onlineAP, S, 1000, 0, nil, false)
	p.run(p.now + int64(2*time.Millisecond))
	p.zeroWindow = true
	seq = 1001
	for i := range 1000 {
		p.clientPkt(key1, onlineAP, A, seq, 9001+uint32(i), []byte{byte(i)}, false)
		p.run(p.now + int64(10*time.Microsecond))
		if i == 0 {
			p.run(p.now + int64(2*time.Millisecond))
		}
		seq++
	}
	st = p.tab.Stats()
	if st.Closed[Failed][ReasonBufferFull]+st.Closed[Partial][ReasonBufferFull] != 1 {
		t.Errorf("outcomes %v, want buffer_full", st.Closed)
	}
	if want := cfg.MaxQueueBytes / 1500; st.CapturedBytes > uint64(want)+1 {
		t.Errorf("captured %d one-byte requests under a %d-byte bound of 1500-byte buffers", st.CapturedBytes, cfg.MaxQueueBytes)
	}
}

// TestSYNRetransmitsAfterRTT: once a handshake was timed, lost SYNs are
// sent again after four round trips (at least 250 ms), not a second, so
// that several tries fit in the handshake timeout.
func TestSYNRetransmitsAfterRTT(t *testing.T) {
	p := &simPath{t: t, rtt: int64(2 * time.Millisecond), mss: 1460, now: 1e18}
	p.tab = New(Config{}, p)
	k := func(i int) Key {
		return Key{Client: netip.AddrPortFrom(clientAP.Addr(), uint16(40000+i)), Target: targetAP}
	}
	p.clientPkt(k(0), onlineAP, S, 1000, 0, nil, false)
	p.run(p.now + int64(10*time.Millisecond))
	if p.announce != 1 || p.tab.Stats().SYNAcks != 1 {
		t.Fatalf("first handshake: %d SYN-ACKs", p.announce)
	}
	p.dropAbove = 1 // every SYN is lost from now on
	start := p.now
	p.clientPkt(k(1), onlineAP, S, 2000, 0, nil, false)
	var at []time.Duration
	for p.now < start+int64(4*time.Second) {
		before := p.tab.Stats().SYNRetransmits
		p.run(p.now + int64(time.Millisecond))
		if p.tab.Stats().SYNRetransmits > before {
			at = append(at, time.Duration(p.now-start).Round(10*time.Millisecond))
		}
	}
	want := []time.Duration{250 * time.Millisecond, 750 * time.Millisecond, 1750 * time.Millisecond}
	if fmt.Sprint(at) != fmt.Sprint(want) {
		t.Errorf("SYN retransmissions at %v, want %v", at, want)
	}
	if p.tab.Stats().Closed[Failed][ReasonNoSynAck] != 1 {
		t.Errorf("outcomes %v", p.tab.Stats().Closed)
	}
}

// TestRetransmitsRefusedSend: data whose first send never left (dropped
// by the kernel: a full socket buffer, a firewall) is sent again by the
// retransmission timer.
func TestRetransmitsRefusedSend(t *testing.T) {
	p := &simPath{t: t, rtt: int64(time.Millisecond), mss: 1460, ts: true, now: 1e18}
	p.tab = New(Config{}, p)
	p.clientPkt(key1, onlineAP, S, 1000, 0, nil, false)
	p.run(p.now + int64(2*time.Millisecond))
	p.dropAbove = 60 // the request's first send is lost
	p.clientPkt(key1, onlineAP, PA, 1001, 9001, body(500), false)
	p.dropAbove = 0
	p.run(p.now + int64(time.Second))
	if len(p.got) != 500 || p.tab.Stats().Retransmits == 0 {
		t.Errorf("got %d bytes, %d retransmissions", len(p.got), p.tab.Stats().Retransmits)
	}
}
