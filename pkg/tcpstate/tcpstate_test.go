package tcpstate

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
)

const (
	S   = ipmangle.SYN
	A   = ipmangle.ACK
	F   = ipmangle.FIN
	R   = ipmangle.RST
	P   = ipmangle.PSH
	PA  = P | A
	SA  = S | A
	FA  = F | A
	RA  = R | A
	FPA = F | P | A
)

// handshake runs the client SYN (ISN 1000), our SYN, the target's SYN-ACK
// (ISN 5000, 1 ms later) and the client's handshake ACK (online ISN 9000).
func (h *harness) handshake() {
	h.t.Helper()
	h.client(S, 1000, 0, "")
	h.expect("S 1000")
	h.advance(time.Millisecond)
	h.target(SA, 5000, 1001, 65535, 0)
	h.expect("A 1001 5001")
	h.client(A, 1001, 9001, "")
	h.expect()
}

func TestKeepAliveSeveralRequests(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	if got := h.out.routes; len(got) != 1 || got[0] != "add 192.0.2.10:40000" {
		t.Fatalf("routes = %q", got)
	}
	h.client(PA, 1001, 9001, "GET /1")
	h.expect("PA 1001 5001 GET /1")
	// The online server answered 100 bytes; the next request is captured
	// before the target's answer: it waits.
	h.client(PA, 1007, 9101, "GET /2")
	h.expect()
	h.target(A, 5001, 1007, 65535, 0)
	h.expect()
	h.target(PA, 5001, 1007, 65535, 100)
	h.expect("PA 1007 5101 GET /2") // released, carrying the ack
	h.target(PA, 5101, 1013, 65535, 50)
	h.expect("A 1013 5151")
	h.client(FA, 1013, 9151, "")
	h.expect("FA 1013 5151")
	h.target(FA, 5151, 1014, 65535, 0)
	h.expect("A 1014 5152")
	st := h.tab.Stats()
	if st.Closed[Reproduced][ReasonNone] != 1 || st.Requests != 2 || st.CapturedBytes != 12 || st.AckedBytes != 12 {
		t.Errorf("stats = %+v", st)
	}
	if st.Active != 0 || h.tab.Len() != 1 {
		t.Errorf("active %d, len %d: want the session in time-wait", st.Active, h.tab.Len())
	}
	// A late retransmitted FIN is acknowledged in time-wait.
	h.target(FA, 5151, 1014, 65535, 0)
	h.expect("A 1014 5152")
	h.advance(3 * time.Second)
	if h.tab.Len() != 0 {
		t.Errorf("session kept after time-wait")
	}
	if got := h.out.routes; len(got) != 2 || got[1] != "del 192.0.2.10:40000" {
		t.Errorf("routes = %q", got)
	}
}

// TestBatchedAcks: what arrives in one batch is acknowledged once, at the
// end, or by a segment sent in the batch. A short connection then costs
// the target four packets: SYN, request, one ACK, FIN.
func TestBatchedAcks(t *testing.T) {
	h := newHarness(t, Config{})
	h.client(S, 1000, 0, "")
	h.client(A, 1001, 9001, "")
	h.client(PA, 1001, 9001, "GET /")
	h.expect("S 1000")
	h.advance(time.Millisecond)
	h.target(SA, 5000, 1001, 65535, 0)
	h.expect("PA 1001 5001 GET /")
	h.batch(func() {
		h.target(A, 5001, 1006, 65535, 0)
		h.target(PA, 5001, 1006, 65535, 300)
		h.target(FA, 5301, 1006, 65535, 0)
		h.expect() // nothing before the batch ends
	})
	h.expect("A 1006 5302")
	h.client(FA, 1006, 9301, "")
	h.expect("FA 1006 5302")
	h.target(A, 5302, 1007, 65535, 0)
	h.expect()
	if n := h.closed(Reproduced, ReasonNone); n != 1 {
		t.Errorf("reproduced sessions = %d, want 1", n)
	}

	// The client's FIN in the same batch as the target's answer carries
	// the acknowledgement: no pure ACK at all.
	h = newHarness(t, Config{})
	h.handshake()
	h.client(PA, 1001, 9001, "GET /")
	h.expect("PA 1001 5001 GET /")
	h.batch(func() {
		h.target(PA, 5001, 1006, 65535, 300)
		h.client(FA, 1006, 9301, "")
	})
	h.expect("FA 1006 5301")

	// The server closed first and the client's FIN acknowledges its FIN
	// too (one byte more than the target answered): the target's FIN
	// ends the response, the FIN goes at once.
	h = newHarness(t, Config{})
	h.handshake()
	h.client(PA, 1001, 9001, "GET /")
	h.expect("PA 1001 5001 GET /")
	h.batch(func() {
		h.target(PA, 5001, 1006, 65535, 300)
		h.target(FA, 5301, 1006, 65535, 0)
	})
	h.expect("A 1006 5302")
	h.client(FA, 1006, 9302, "")
	h.expect("FA 1006 5302")

	// A session freed in the batch (its RST) owes nothing.
	h = newHarness(t, Config{})
	h.handshake()
	h.client(PA, 1001, 9001, "GET /")
	h.expect("PA 1001 5001 GET /")
	h.batch(func() {
		h.target(PA, 5001, 1006, 65535, 300)
		h.target(RA, 5301, 1006, 65535, 0)
	})
	h.expect()
}

// TestDelayedAck: with AckDelay the target's answer is acknowledged by
// the client's next packet if it comes in time, else when the delay ends;
// two full segments, a retransmission or the end of both directions are
// acknowledged at once.
func TestDelayedAck(t *testing.T) {
	cfg := Config{AckDelay: 40 * time.Millisecond}
	h := newHarness(t, cfg)
	h.handshake()
	h.client(PA, 1001, 9001, "GET /1")
	h.expect("PA 1001 5001 GET /1")
	h.target(PA, 5001, 1007, 65535, 100)
	h.expect() // delayed
	h.advance(10 * time.Millisecond)
	h.client(PA, 1007, 9101, "GET /2")
	h.expect("PA 1007 5101 GET /2") // the next request carries it
	h.target(PA, 5101, 1013, 65535, 50)
	h.advance(39 * time.Millisecond)
	h.expect()
	h.advance(2 * time.Millisecond)
	h.expect("A 1013 5151") // nothing came: the delay ends
	h.target(PA, 5151, 1013, 65535, 2920)
	h.expect("A 1013 8071") // two full segments: at once
	h.target(PA, 5151, 1013, 65535, 100)
	h.expect("A 1013 8071") // a retransmission: at once
	h.target(FA, 8071, 1013, 65535, 0)
	h.expect()
	h.client(FA, 1013, 9151, "")
	h.expect("FA 1013 8072") // the client's FIN carries it
	h.target(A, 8072, 1014, 65535, 0)
	h.expect()
	if n := h.closed(Reproduced, ReasonNone); n != 1 {
		t.Errorf("reproduced sessions = %d, want 1", n)
	}

	// Our FIN acknowledged, the target's FIN ends both directions: at
	// once.
	h = newHarness(t, cfg)
	h.handshake()
	h.client(FA, 1001, 9001, "")
	h.expect("FA 1001 5001")
	h.target(A, 5001, 1002, 65535, 0)
	h.target(FA, 5001, 1002, 65535, 0)
	h.expect("A 1002 5002")
}

func TestNoWaitSendsAtOnce(t *testing.T) {
	h := newHarness(t, Config{NoWait: true})
	h.handshake()
	h.client(PA, 1001, 9001, "GET /1")
	h.client(PA, 1007, 9101, "GET /2")
	h.expect("PA 1001 5001 GET /1", "PA 1007 5001 GET /2")
}

func TestResponseQuietReleases(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	h.client(PA, 1001, 9001, "GET /1")
	h.client(PA, 1007, 9201, "GET /2") // online answered 200 bytes
	h.expect("PA 1001 5001 GET /1")
	h.target(PA, 5001, 1007, 65535, 120) // the target answers less
	h.expect("A 1007 5121")
	h.advance(time.Millisecond)
	h.expect()
	h.advance(5 * time.Millisecond) // quiet for longer than 2 RTT
	h.expect("PA 1007 5121 GET /2")
}

func TestResponseWaitBounded(t *testing.T) {
	h := newHarness(t, Config{ResponseWait: 500 * time.Millisecond})
	h.handshake()
	h.client(PA, 1001, 9001, "GET /1")
	h.client(PA, 1007, 9101, "GET /2")
	h.expect("PA 1001 5001 GET /1")
	h.target(A, 5001, 1007, 65535, 0) // acknowledged, never answered
	h.advance(400 * time.Millisecond)
	h.expect()
	h.advance(100 * time.Millisecond)
	h.expect("PA 1007 5001 GET /2")
}

func TestGreetingFirst(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	// The client's first request acknowledges 20 greeting bytes.
	h.client(PA, 1001, 9021, "LOGIN")
	h.expect()
	h.target(PA, 5001, 1001, 65535, 20)
	h.expect("PA 1001 5021 LOGIN")
}

func TestMissingSYN(t *testing.T) {
	h := newHarness(t, Config{})
	h.client(PA, 2001, 7001, "GET /")
	h.expect("S 2000")
	// Pure ACKs and FINs of unknown connections open nothing.
	h.tab.Client(h.now, Key{Client: clientAP, Target: onlineAP}, nil, &ipmangle.Parsed{Valid: true, Flags: A})
	h.target(SA, 5000, 2001, 65535, 0)
	h.expect("PA 2001 5001 GET /")
	if st := h.tab.Stats(); st.OpenedNoSYN != 1 || st.Drops[DropNoSession] != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestOnlyFullSessions(t *testing.T) {
	h := newHarness(t, Config{OnlyFullSessions: true})
	h.client(PA, 2001, 7001, "GET /")
	h.expect()
	if st := h.tab.Stats(); st.Drops[DropNoSYN] != 1 || st.Opened != 0 {
		t.Errorf("stats = %+v", st)
	}
}

func TestCaptureGapFails(t *testing.T) {
	h := newHarness(t, Config{GapTimeout: 2 * time.Second})
	h.handshake()
	h.client(PA, 1001, 9001, "aaaa")
	h.client(PA, 1009, 9001, "cccc") // 1005..1008 never captured
	h.expect("PA 1001 5001 aaaa")
	h.target(A, 5001, 1005, 65535, 0)
	h.advance(2 * time.Second)
	h.expect("RA 1005 5001")
	if h.closed(Partial, ReasonCaptureGap) != 1 {
		t.Errorf("stats = %+v", h.tab.Stats())
	}
}

func TestReorderedCapture(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	h.client(PA, 1001, 9001, "aaaa")
	h.client(PA, 1009, 9001, "cccc")
	h.expect("PA 1001 5001 aaaa")
	h.client(A, 1005, 9001, "bbbb") // the missing piece arrives late
	h.expect("A 1005 5001 bbbb", "PA 1009 5001 cccc")
}

func TestClientRetransmissions(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	h.client(PA, 1001, 9001, "abcdef")
	h.client(PA, 1001, 9001, "abcdef") // exact duplicate
	h.client(PA, 1004, 9001, "defghi") // overlaps: only "ghi" is new
	h.expect("PA 1001 5001 abcdef", "PA 1007 5001 ghi")
	h.target(A, 5001, 1010, 65535, 0)
	h.client(PA, 1001, 9001, "abcdef") // already acknowledged
	h.expect()
	if st := h.tab.Stats(); st.Drops[DropDuplicate] != 2 || st.CapturedBytes != 9 || st.AckedBytes != 9 {
		t.Errorf("stats = %+v", st)
	}
}

func TestZeroWindow(t *testing.T) {
	h := newHarness(t, Config{})
	h.client(S, 1000, 0, "")
	h.expect("S 1000")
	h.advance(time.Millisecond)
	h.target(SA, 5000, 1001, 0, 0) // window 0
	h.expect("A 1001 5001")
	h.client(PA, 1001, 9001, "GET /")
	h.expect()
	h.advance(100 * time.Millisecond) // the persist timer probes
	h.expect("A 1000 5001")
	h.target(A, 5001, 1001, 100, 0) // window opens
	h.expect("PA 1001 5001 GET /")
}

func TestWindowLimitsInflight(t *testing.T) {
	h := newHarness(t, Config{NoWait: true})
	h.client(S, 1000, 0, "")
	h.advance(time.Millisecond)
	h.target(SA, 5000, 1001, 10, 0)
	h.client(PA, 1001, 9001, "aaaaaa")
	h.client(PA, 1007, 9001, "bbbbbb")
	h.expect("S 1000", "A 1001 5001", "PA 1001 5001 aaaaaa")
	h.target(A, 5001, 1007, 10, 0)
	h.expect("PA 1007 5001 bbbbbb")
}

func TestRetransmitBackoffAndFastRetransmit(t *testing.T) {
	h := newHarness(t, Config{NoWait: true})
	h.handshake()
	h.client(PA, 1001, 9001, "one")
	h.expect("PA 1001 5001 one")
	h.advance(100 * time.Millisecond)
	h.expect("PA 1001 5001 one")
	h.advance(100 * time.Millisecond)
	h.expect() // backed off to 200 ms
	h.advance(100 * time.Millisecond)
	h.expect("PA 1001 5001 one")
	h.target(A, 5001, 1004, 65535, 0)
	h.advance(time.Second)
	h.expect()

	for _, d := range []string{"aa", "bb", "cc", "dd"} {
		h.client(PA, 1004+uint32(len(d))*uint32(d[0]-'a'), 9001, d)
	}
	h.expect("PA 1004 5001 aa", "PA 1006 5001 bb", "PA 1008 5001 cc", "PA 1010 5001 dd")
	h.target(A, 5001, 1006, 65535, 0)
	h.target(A, 5001, 1006, 65535, 0)
	h.target(A, 5001, 1006, 65535, 0)
	h.expect()
	h.target(A, 5001, 1006, 65535, 0) // third duplicate
	h.expect("PA 1006 5001 bb")
	st := h.tab.Stats()
	if st.Retransmits != 2 || st.FastRetransmits != 1 {
		t.Errorf("retransmits %d, fast %d", st.Retransmits, st.FastRetransmits)
	}
}

func TestTargetRSTReconnects(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	h.client(PA, 1001, 9001, "GET /1")
	h.expect("PA 1001 5001 GET /1")
	h.target(RA, 5001, 1001, 0, 0)
	h.expect() // no RST answers a RST
	h.advance(time.Millisecond)
	h.expect("S 1000")
	h.target(SA, 6000, 1001, 65535, 0)
	h.expect("PA 1001 6001 GET /1")
	if st := h.tab.Stats(); st.Reconnects != 1 {
		t.Errorf("reconnects = %d", st.Reconnects)
	}
}

func TestTargetEarlyFINReconnects(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	h.client(PA, 1001, 9001, "GET /1")
	h.expect("PA 1001 5001 GET /1")
	// The target answers and closes the keep-alive connection at once.
	h.target(FPA, 5001, 1007, 65535, 100)
	h.expect("A 1007 5102")
	// The client sends its next request on the same connection.
	h.client(PA, 1007, 9101, "GET /2")
	h.expect("RA 1007 5102")
	h.advance(time.Millisecond)
	h.expect("S 1006")
	h.target(SA, 7000, 1007, 65535, 0)
	h.expect("PA 1007 7001 GET /2")
	h.target(PA, 7001, 1013, 65535, 80)
	h.client(FA, 1013, 9181, "")
	h.expect("A 1013 7081", "FA 1013 7081")
	h.target(FA, 7081, 1014, 65535, 0)
	h.expect("A 1014 7082")
	if h.closed(Reproduced, ReasonNone) != 1 {
		t.Errorf("stats = %+v", h.tab.Stats())
	}
}

func TestTargetRSTWithoutPendingEnds(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	h.client(PA, 1001, 9001, "GET /1")
	h.target(PA, 5001, 1007, 65535, 10)
	h.target(RA, 5011, 1007, 0, 0)
	h.expect("PA 1001 5001 GET /1", "A 1007 5011")
	if h.closed(Reproduced, ReasonTargetRST) != 1 {
		t.Errorf("stats = %+v", h.tab.Stats())
	}
}

func TestTargetRefuses(t *testing.T) {
	h := newHarness(t, Config{})
	h.client(S, 1000, 0, "")
	h.target(RA, 0, 1001, 0, 0)
	h.expect("S 1000")
	if h.closed(Failed, ReasonTargetRST) != 1 || h.tab.Stats().Active != 0 {
		t.Errorf("stats = %+v", h.tab.Stats())
	}
}

// A failed session is a tombstone: the rest of its connection is dropped,
// not copied again as sessions of their own (one failure per packet), until
// the client starts a new request at least a second after the failure,
// which is copied again (the target may be back), or has been quiet for a
// while.
func TestFailedSessionStaysDead(t *testing.T) {
	h := newHarness(t, Config{})
	h.client(S, 1000, 0, "")
	h.target(RA, 0, 1001, 0, 0)
	h.client(A, 1001, 9001, "")
	h.client(PA, 1001, 9001, "GET /")
	h.client(S, 1000, 0, "") // a retransmitted SYN of the same connection
	h.advance(500 * time.Millisecond)
	h.client(PA, 1006, 9101, "GET /2") // a new request, too soon
	h.expect("S 1000")
	st := h.tab.Stats()
	if st.Opened != 1 || st.ClosedBy(Failed) != 1 || st.Drops[DropClosed] != 3 || st.Drops[DropDuplicateSYN] != 1 {
		t.Errorf("stats = %+v", st)
	}
	h.advance(time.Second)
	h.client(PA, 1012, 9101, "more of /2") // same request: still dropped
	h.client(PA, 1022, 9201, "GET /3")     // the next request: copied again
	h.expect("S 1021")
	h.target(SA, 5000, 1022, 65535, 0)
	h.expect("PA 1022 5001 GET /3")
	if st := h.tab.Stats(); st.Opened != 2 || st.Drops[DropClosed] != 4 {
		t.Errorf("stats = %+v", st)
	}
}

func TestTombstoneForgotten(t *testing.T) {
	h := newHarness(t, Config{})
	h.client(S, 1000, 0, "")
	h.target(RA, 0, 1001, 0, 0)
	h.advance(10 * time.Second) // quiet for tombTime: forgotten
	if h.tab.Len() != 0 {
		t.Errorf("tombstone kept")
	}
	h.client(PA, 1001, 9001, "GET /") // the client goes on: a new session
	h.expect("S 1000", "S 1000")
	// A new connection on the 4-tuple waits for the session, whose
	// request is pending, at most a second.
	h.client(S, 5000, 0, "")
	h.expect()
	h.advance(time.Second)
	h.tab.Flush(h.now)
	pkts := h.out.take()
	if n := len(pkts); n < 2 || pkts[n-2].flags != RA || pkts[n-1].flags != S || pkts[n-1].seq != 5000 {
		t.Errorf("after a second: sent %v", pkts)
	}
}

func TestSequenceWrap(t *testing.T) {
	h := newHarness(t, Config{NoWait: true})
	isn := uint32(0xFFFFFFF8)
	h.client(S, isn, 0, "")
	h.advance(time.Millisecond)
	h.target(SA, 0xFFFFFFFE, isn+1, 65535, 0)
	h.client(PA, isn+1, 1, "0123456789abcdef") // crosses 2^32
	h.client(PA, isn+17, 1, "tail")
	h.expect("S 4294967288", "A 4294967289 4294967295", "PA 4294967289 4294967295 0123456789abcdef", "PA 9 4294967295 tail")
	h.target(PA, 0xFFFFFFFF, isn+21, 65535, 4) // target data wraps too
	h.expect("A 13 3")
	if st := h.tab.Stats(); st.AckedBytes != 20 {
		t.Errorf("acked %d, want 20", st.AckedBytes)
	}
}

func TestInterceptDownAndBack(t *testing.T) {
	h := newHarness(t, Config{})
	h.out.routeUp = false
	h.client(S, 1000, 0, "")
	h.client(PA, 1001, 9001, "GET /")
	h.expect()
	h.advance(200 * time.Millisecond)
	h.expect()
	h.out.routeUp = true
	h.advance(50 * time.Millisecond)
	h.expect("S 1000")
	h.target(SA, 5000, 1001, 65535, 0)
	h.expect("PA 1001 5001 GET /")
}

func TestInterceptUnavailableFails(t *testing.T) {
	h := newHarness(t, Config{RouteWait: time.Second})
	h.out.routeUp = false
	h.client(S, 1000, 0, "")
	h.advance(time.Second)
	h.expect()
	if h.closed(Failed, ReasonNoIntercept) != 1 || h.tab.Stats().Active != 0 {
		t.Errorf("stats = %+v", h.tab.Stats())
	}
}

func TestHandshakeTimeout(t *testing.T) {
	h := newHarness(t, Config{})
	h.client(S, 1000, 0, "")
	h.advance(time.Second)
	h.advance(2 * time.Second)
	h.expect("S 1000", "S 1000")
	if h.closed(Failed, ReasonNoSynAck) != 1 {
		t.Errorf("stats = %+v", h.tab.Stats())
	}
}

func TestSessionAndIdleTimeouts(t *testing.T) {
	t.Run("target silent with data outstanding", func(t *testing.T) {
		h := newHarness(t, Config{SessionTimeout: 5 * time.Second, IdleTimeout: time.Hour})
		h.handshake()
		h.client(PA, 1001, 9001, "GET /")
		for range 60 {
			h.advance(100 * time.Millisecond)
		}
		pkts := h.out.take()
		last := pkts[len(pkts)-1]
		if last.flags != RA || h.closed(Failed, ReasonTargetTimeout) != 1 {
			t.Errorf("last sent %v; stats %+v", last, h.tab.Stats())
		}
	})
	t.Run("idle keep-alive", func(t *testing.T) {
		h := newHarness(t, Config{SessionTimeout: time.Hour, IdleTimeout: 10 * time.Second})
		h.handshake()
		h.client(PA, 1001, 9001, "GET /")
		h.target(PA, 5001, 1006, 65535, 10)
		h.out.take()
		h.advance(9 * time.Second)
		h.expect()
		h.advance(2 * time.Second) // time-outs are kept to the second
		h.expect("RA 1006 5011")
		if h.closed(Reproduced, ReasonIdle) != 1 {
			t.Errorf("stats = %+v", h.tab.Stats())
		}
	})
}

func TestPortReuseStartsNewSession(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	h.client(PA, 1001, 9001, "GET /")
	h.target(PA, 5001, 1006, 65535, 10)
	h.expect("PA 1001 5001 GET /", "A 1006 5011")
	h.client(S, 1000, 0, "") // the same SYN again: a duplicate
	h.expect()
	h.client(S, 300000, 0, "") // a new connection on the same 4-tuple
	h.expect("RA 1006 5011", "S 300000")
	st := h.tab.Stats()
	if st.PortReuse != 1 || st.Closed[Reproduced][ReasonReplaced] != 1 || st.Opened != 2 || st.Drops[DropDuplicateSYN] != 1 {
		t.Errorf("stats = %+v", st)
	}
	for _, r := range h.out.routes {
		if r[:3] == "del" {
			t.Errorf("route withdrawn on port reuse: %q", h.out.routes)
		}
	}
}

// A client that closed after its server opens its next connection from
// the same port before the previous request's copy was acknowledged: the
// new connection waits for it instead of cutting it short.
func TestPortReuseWaitsForPreviousSession(t *testing.T) {
	newConn := func(h *harness) {
		h.t.Helper()
		h.handshake()
		h.client(PA, 1001, 9001, "GET /")
		h.expect("PA 1001 5001 GET /")
		h.client(S, 4000, 0, "") // the next connection, 0.2 ms later
		h.client(A, 4001, 7001, "")
		h.client(PA, 4001, 7001, "GET /2")
		h.expect() // all held
	}
	t.Run("previous request acknowledged", func(t *testing.T) {
		h := newHarness(t, Config{})
		newConn(h)
		h.client(A, 1006, 9101, "") // a late packet of the old connection: its own
		h.target(FPA, 5001, 1006, 65535, 100)
		// The old stream is delivered: the old session acknowledges the
		// answer and ends, the new one starts with its held packets.
		h.expect("A 1006 5102", "RA 1006 5102", "S 4000")
		h.advance(time.Millisecond)
		h.target(SA, 8000, 4001, 65535, 0)
		h.expect("PA 4001 8001 GET /2")
		st := h.tab.Stats()
		if st.PortReuse != 1 || st.PortReuseWaits != 1 || h.closed(Reproduced, ReasonReplaced) != 1 || st.Opened != 2 {
			t.Errorf("stats = %+v", st)
		}
	})
	t.Run("ISNs out of order", func(t *testing.T) {
		// The second connection reuses the first one's TIME_WAIT socket:
		// Linux gives it the first one's end + 65537 as its ISN. The
		// third gets a clock-based ISN between the two.
		h := newHarness(t, Config{})
		h.client(S, 100000, 0, "")
		h.advance(time.Millisecond)
		h.target(SA, 5000, 100001, 65535, 0)
		h.client(A, 100001, 9001, "")
		h.client(PA, 100001, 9001, "GET /")
		h.out.take()
		h.client(S, 165543, 0, "")
		h.client(PA, 165544, 7001, "GET /2")
		h.client(S, 125000, 0, "")
		h.client(PA, 125001, 6001, "GET /3")
		h.client(A, 100006, 9101, "") // a late packet of the first connection
		h.expect()                    // all held
		h.target(FPA, 5001, 100006, 65535, 100)
		h.expect("A 100006 5102", "RA 100006 5102", "S 165543")
		h.advance(time.Millisecond)
		h.target(SA, 8000, 165544, 65535, 0)
		h.expect("PA 165544 8001 GET /2")
		h.target(FPA, 8001, 165550, 65535, 100)
		h.expect("A 165550 8102", "RA 165550 8102", "S 125000")
		h.advance(time.Millisecond)
		h.target(SA, 9000, 125001, 65535, 0)
		h.expect("PA 125001 9001 GET /3")
		if st := h.tab.Stats(); st.ClosedBy(Failed)+st.ClosedBy(Partial) != 0 || st.PortReuseWaits != 2 {
			t.Errorf("stats = %+v", st)
		}
	})
	t.Run("repeated SYN held once", func(t *testing.T) {
		h := newHarness(t, Config{})
		newConn(h)
		h.client(S, 4000, 0, "")
		h.target(A, 5001, 1006, 65535, 0)
		h.expect("RA 1006 5001", "S 4000")
		if st := h.tab.Stats(); st.Drops[DropDuplicateSYN] != 1 {
			t.Errorf("stats = %+v", st)
		}
	})
	t.Run("previous session stalls", func(t *testing.T) {
		h := newHarness(t, Config{})
		newConn(h)
		h.out.take() // the old request's retransmissions
		h.advance(999 * time.Millisecond)
		h.out.take()
		h.advance(time.Millisecond)
		h.tab.Flush(h.now)
		pkts := h.out.take()
		if len(pkts) < 2 || pkts[len(pkts)-2].flags != RA || pkts[len(pkts)-1].flags != S || pkts[len(pkts)-1].seq != 4000 {
			t.Fatalf("after a second: sent %v", pkts)
		}
		if h.closed(Failed, ReasonReplaced) != 1 {
			t.Errorf("stats = %+v", h.tab.Stats())
		}
	})
	t.Run("new connection runs ahead", func(t *testing.T) {
		h := newHarness(t, Config{})
		newConn(h)
		h.batch(func() {
			for i := range successorMaxPackets {
				h.client(PA, uint32(4007+i), 7001, "x")
			}
		})
		pkts := h.out.take()
		if len(pkts) != 2 || pkts[0].flags != RA || pkts[1].flags != S {
			t.Fatalf("sent %v", pkts)
		}
		if h.closed(Failed, ReasonReplaced) != 1 {
			t.Errorf("stats = %+v", h.tab.Stats())
		}
	})
	t.Run("too much held", func(t *testing.T) {
		h := newHarness(t, Config{})
		h.tab.succLimit = 200
		h.handshake()
		h.client(PA, 1001, 9001, "GET /")
		h.expect("PA 1001 5001 GET /")
		h.client(S, 4000, 0, "") // waits: 60 bytes held
		h.client(PA, 4001, 7001, strings.Repeat("x", 200))
		// Past the table's limit the new connection stops waiting.
		pkts := h.out.take()
		if len(pkts) != 2 || pkts[0].flags != RA || pkts[1].flags != S || h.tab.succBytes != 0 {
			t.Fatalf("sent %v, %d bytes held", pkts, h.tab.succBytes)
		}
	})
	t.Run("previous connection closes", func(t *testing.T) {
		// HTTP with Connection: close: the server closes first, the
		// client's FIN follows, and its next connection comes at once.
		h := newHarness(t, Config{})
		h.handshake()
		h.client(PA, 1001, 9001, "GET /")
		h.client(FA, 1006, 9102, "")
		h.client(S, 4000, 0, "")
		h.expect("PA 1001 5001 GET /")
		h.target(FPA, 5001, 1006, 65535, 100)
		h.expect("FA 1006 5102")
		h.target(A, 5102, 1007, 65535, 0)
		h.expect("S 4000") // the old session ended normally: no RST
		if st := h.tab.Stats(); h.closed(Reproduced, ReasonNone) != 1 || st.PortReuseWaits != 1 {
			t.Errorf("stats = %+v", st)
		}
	})
}

// The response is complete when the target has sent as many bytes as the
// online server did, so the client's FIN may leave before the target's FIN
// arrives; intercept then often delivers the target's FIN and its
// acknowledgement of ours together. The FIN must still be acknowledged, or
// the target keeps the connection in FIN-WAIT and answers the next
// connection on the 4-tuple with a challenge ACK.
func TestTargetFinAfterOurs(t *testing.T) {
	start := func(h *harness) {
		h.t.Helper()
		h.handshake()
		h.client(PA, 1001, 9001, "GET /")
		h.expect("PA 1001 5001 GET /")
		// The client's FIN leaves before the online server's FIN reached
		// it, so it acknowledges the 279 bytes of the answer only.
		h.client(FA, 1006, 9280, "")
		h.client(A, 1007, 9281, "")
		h.expect()
		h.target(PA, 5001, 1006, 65535, 279) // complete: our FIN goes, with the ACK
		h.expect("FA 1006 5280")
	}
	t.Run("separate", func(t *testing.T) {
		h := newHarness(t, Config{AckDelay: 20 * time.Millisecond})
		start(h)
		h.target(FA, 5280, 1006, 65535, 0)
		h.expect("A 1007 5281") // at once, not after --ack-delay
		h.target(A, 5281, 1007, 65535, 0)
		h.expect()
		if h.closed(Reproduced, ReasonNone) != 1 {
			t.Errorf("stats = %+v", h.tab.Stats())
		}
	})
	t.Run("one batch", func(t *testing.T) {
		h := newHarness(t, Config{AckDelay: 20 * time.Millisecond})
		start(h)
		h.batch(func() {
			h.target(FA, 5280, 1006, 65535, 0)
			h.target(A, 5281, 1007, 65535, 0)
		})
		h.expect("A 1007 5281")
		if h.closed(Reproduced, ReasonNone) != 1 {
			t.Errorf("stats = %+v", h.tab.Stats())
		}
	})
}

// A target that still holds an earlier connection on the 4-tuple answers
// our SYN with an ACK of that connection: we reset it and send the SYN
// again at once, once.
func TestStaleAckToSYN(t *testing.T) {
	h := newHarness(t, Config{})
	h.client(S, 1000, 0, "")
	h.expect("S 1000")
	h.target(A, 7000, 555, 64, 0) // acknowledges the old connection's FIN
	h.expect("R 555 0", "S 1000")
	h.target(A, 7000, 555, 64, 0)
	h.expect("R 555 0") // no second SYN: the retransmission timer goes on
	h.advance(time.Millisecond)
	h.target(SA, 5000, 1001, 65535, 0)
	h.expect("A 1001 5001")
	if st := h.tab.Stats(); st.SYNAcks != 1 || st.SYNRetransmits != 1 {
		t.Errorf("stats = %+v", st)
	}
}

func TestClientRSTAfterData(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	h.client(PA, 1001, 9001, "GET /")
	h.client(RA, 1006, 9001, "")
	h.expect("PA 1001 5001 GET /") // the RST waits for the data
	h.target(A, 5001, 1006, 65535, 0)
	h.expect("RA 1006 5001")
	if h.closed(Reproduced, ReasonClientRST) != 1 {
		t.Errorf("stats = %+v", h.tab.Stats())
	}
}

func TestCloseAllResets(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	h.client(PA, 1001, 9001, "GET /")
	h.expect("PA 1001 5001 GET /")
	h.tab.CloseAll(h.now)
	h.expect("RA 1006 5001")
	if h.closed(Failed, ReasonStopped) != 1 || h.tab.Len() != 0 {
		t.Errorf("stats = %+v", h.tab.Stats())
	}
}

func TestShed(t *testing.T) {
	h := newHarness(t, Config{})
	h.tab.Shed(true)
	h.client(S, 1000, 0, "")
	h.client(A, 1001, 9001, "")
	h.client(PA, 1001, 9001, "GET /")
	h.tab.Shed(false)
	h.client(PA, 1006, 9001, "more") // still the shed connection
	h.expect()
	st := h.tab.Stats()
	if st.Closed[Failed][ReasonShed] != 1 || st.Opened != 0 || st.Active != 0 || st.Drops[DropClosed] != 3 {
		t.Errorf("stats = %+v", st)
	}
}

// TestBufferFull: the bound counts the buffers the queue holds (one of
// MTU bytes per segment), not the payload: segments of one request share
// a buffer until it is full, each request takes its own.
func TestBufferFull(t *testing.T) {
	h := newHarness(t, Config{MaxQueueBytes: 3000}) // two 1500-byte buffers
	h.client(S, 1000, 0, "")                        // the target never answers: data queues up
	h.client(PA, 1001, 9001, "0123456789")
	h.client(PA, 1011, 9001, "x") // the same request: the same buffer
	h.client(PA, 1012, 9101, "y") // the next request: a second buffer
	h.expect("S 1000")
	if st := h.tab.Stats(); st.QueuedSegments != 2 || st.Active != 1 {
		t.Fatalf("queued %d segments, %d active; want 2, 1", st.QueuedSegments, st.Active)
	}
	h.client(PA, 1013, 9201, "z") // a third
	h.expect("RA 1001 0")
	if h.closed(Failed, ReasonBufferFull) != 1 {
		t.Errorf("stats = %+v", h.tab.Stats())
	}
}

func TestHandshakeBacklogSheds(t *testing.T) {
	h := newHarness(t, Config{MaxHandshakes: 2})
	for i, port := range []uint16{40001, 40002, 40003} {
		k := Key{Client: netip.AddrPortFrom(clientAP.Addr(), port), Target: targetAP}
		f := ipmangle.Fields{Src: k.Client, Dst: onlineAP, Seq: 1000 * uint32(i+1), Flags: S, Window: 100, WScale: -1}
		n := f.Encode(h.buf)
		var p ipmangle.Parsed
		p.Decode(h.buf[:n])
		h.tab.Client(h.now, k, h.buf[:n], &p)
	}
	h.expect("S 1000", "S 2000") // the third waits for nothing: refused
	st := h.tab.Stats()
	if st.Opened != 2 || st.Closed[Failed][ReasonOverload] != 1 {
		t.Errorf("stats = %+v", st)
	}
	// When a handshake completes, new sessions are taken again.
	h.target(SA, 5000, 1001, 65535, 0) // key1 is port 40000: ignored, no session
	h.tab.Overload(true)
	h.client(S, 7000, 0, "")
	h.tab.Overload(false)
	if st := h.tab.Stats(); st.Closed[Failed][ReasonOverload] != 2 {
		t.Errorf("overload refusals = %d, want 2", st.Closed[Failed][ReasonOverload])
	}
}
