package tcpstate

import (
	"testing"
	"time"
)

func TestRewrittenTargetCloseEnds(t *testing.T) {
	tests := []struct {
		name  string
		close func(h *harness)
		want  []string
	}{
		{"reset", func(h *harness) { h.target(RA, 5001, 1001, 0, 0) }, nil},
		{"fin", func(h *harness) { h.target(FA, 5001, 1001, 65535, 0) }, []string{"RA 1009 5002"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, Config{})
			h.handshake()
			if !h.tab.MarkRewritten(key1) || !h.tab.Live(key1) {
				t.Fatal("no live session to mark")
			}
			h.client(PA, 1001, 9001, "SELECT 1")
			h.expect("PA 1001 5001 SELECT 1")
			tt.close(h)
			h.expect(tt.want...)
			h.advance(time.Second)
			h.expect() // no new SYN: a rewritten session is not reconnected
			if h.closed(Failed, ReasonTargetClosed) != 1 || h.tab.Stats().Reconnects != 0 {
				t.Errorf("stats = %+v", h.tab.Stats().Closed)
			}
			if h.tab.Live(key1) {
				t.Error("the session is still live")
			}
		})
	}
}

func TestRewrittenNotRetriedFromTomb(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	h.tab.MarkRewritten(key1)
	h.client(PA, 1001, 9001, "Q1")
	h.expect("PA 1001 5001 Q1")
	h.tab.Abort(h.now, key1, ReasonRefused)
	h.expect("RA 1003 5001")
	if h.closed(Failed, ReasonRefused) != 1 {
		t.Errorf("stats = %+v", h.tab.Stats().Closed)
	}
	// A later request of the client (its ack moved) would reopen a plain
	// session after tombRetry; a rewritten one stays given up.
	h.advance(time.Duration(2 * tombRetry))
	h.client(PA, 1003, 9100, "Q2")
	h.expect()
	// A new SYN (the layer's own, another ISN) starts a new session.
	h.client(S, 2000, 0, "")
	h.expect("S 2000")
	if !h.tab.Live(key1) {
		t.Error("the new session is not live")
	}
}

func TestAbortWithoutSession(t *testing.T) {
	h := newHarness(t, Config{})
	h.tab.Abort(h.now, key1, ReasonRefused) // nothing to do
	if h.tab.MarkRewritten(key1) || h.tab.Live(key1) {
		t.Error("a session without a packet")
	}
	h.expect()
}
