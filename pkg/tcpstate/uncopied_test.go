package tcpstate

import (
	"fmt"
	"testing"
	"time"
)

// TestFollowTargetCloses: a target that closes the keep-alive connection
// after every response (nginx's keepalive_requests, HTTP/1.0) is followed
// for as long as the client goes on: a new connection per request, each
// request copied, however many.
func TestFollowTargetCloses(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	seq, oack, tnext := uint32(1001), uint32(9001), uint32(5001)
	const requests = 30 // more than MaxReconnects (8)
	for i := range requests {
		req := fmt.Sprintf("GET /%02d", i)
		h.client(PA, seq, oack, req)
		if i > 0 {
			// The target closed after the last answer: reset its end, a
			// new connection after a round trip, the request on it.
			h.expect(fmt.Sprintf("RA %d %d", seq, tnext))
			h.advance(time.Millisecond)
			h.expect(fmt.Sprintf("S %d", seq-1))
			tisn := 5000 + 1000*uint32(i)
			h.target(SA, tisn, seq, 65535, 0)
			tnext = tisn + 1
		}
		h.expect(fmt.Sprintf("PA %d %d %s", seq, tnext, req))
		// The target answers and closes.
		h.target(FPA, tnext, seq+uint32(len(req)), 65535, 100)
		tnext += 101
		seq += uint32(len(req))
		oack += 100
		h.expect(fmt.Sprintf("A %d %d", seq, tnext))
	}
	st := h.tab.Stats()
	if st.Reconnects != requests-1 || st.AckedBytes != st.CapturedBytes || st.ClosedBy(Partial)+st.ClosedBy(Failed) != 0 || st.Active != 1 {
		t.Errorf("reconnects %d, acked %d of %d, closed %v, active %d", st.Reconnects, st.AckedBytes, st.CapturedBytes, st.Closed, st.Active)
	}
}

// TestReconnectsWithoutProgress: a target that closes every new
// connection before acknowledging anything ends the session after
// MaxReconnects in a row, with a reason that says so.
func TestReconnectsWithoutProgress(t *testing.T) {
	h := newHarness(t, Config{MaxReconnects: 3})
	h.handshake()
	h.client(PA, 1001, 9001, "GET /")
	h.out.take()
	for i := range 4 {
		h.target(RA, 5001+uint32(1000*i), 1001, 0, 0) // reset before the request is taken
		h.advance(time.Millisecond)
		if i < 3 {
			h.target(SA, 5000+uint32(1000*(i+1)), 1001, 65535, 0)
		}
		h.out.take()
	}
	if n := h.closed(Failed, ReasonReconnects); n != 1 {
		t.Errorf("closed %v, want one failed %v", h.tab.Stats().Closed, ReasonReconnects)
	}
	if ReasonReconnects.String() != "reconnects_without_progress" {
		t.Errorf("reason %q", ReasonReconnects)
	}
}

// TestUncopiedCounted: the data a client keeps sending after its session
// failed is counted as uncopied, by the reason the session ended, each
// byte once, and with it the requests; fidelity counts it as lost.
func TestUncopiedCounted(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	h.client(PA, 1001, 9001, "GET /1")
	h.target(PA, 5001, 1007, 65535, 100)
	h.client(PA, 1007, 9101, "GET /2")
	h.target(PA, 5101, 1013, 65535, 50)
	h.target(RA, 5151, 1013, 0, 0) // /2 answered, then a reset: nothing pending, the session ends
	if h.closed(Reproduced, ReasonTargetRST) != 1 {
		t.Fatalf("closed %v", h.tab.Stats().Closed)
	}
	h.client(PA, 1013, 9201, "GET /3")           // dropped: a request lost
	h.client(PA, 1013, 9201, "GET /3")           // its retransmission: not again
	h.client(PA, 1016, 9201, "/3 more and more") // overlapping the end: only the new bytes
	h.client(PA, 1032, 9301, "GET /4")           // another request
	h.out.take()
	st := h.tab.Stats()
	wantBytes := uint64(6 + 13 + 6) // "GET /3", the 13 new bytes, "GET /4"
	if st.UncopiedBytes[ReasonTargetRST] != wantBytes || st.UncopiedRequests[ReasonTargetRST] != 2 {
		t.Errorf("uncopied %d bytes, %d requests; want %d, 2", st.UncopiedBytes[ReasonTargetRST], st.UncopiedRequests[ReasonTargetRST], wantBytes)
	}
	if b, r := st.Uncopied(); b != wantBytes || r != 2 {
		t.Errorf("Uncopied() = %d, %d", b, r)
	}
	if got, want := st.Fidelity(), 12.0/float64(12+wantBytes); got != want {
		t.Errorf("fidelity %v, want %v", got, want)
	}

	// Refused sessions (overload) count too, from their first packet.
	h = newHarness(t, Config{})
	h.tab.Overload(true)
	h.client(S, 1000, 0, "")
	h.tab.Overload(false)
	h.client(PA, 1001, 9001, "GET /x")
	h.client(PA, 1001, 9001, "GET /x") // retransmitted
	h.client(PA, 1007, 9101, "GET /y")
	if st := h.tab.Stats(); st.UncopiedBytes[ReasonOverload] != 12 || st.UncopiedRequests[ReasonOverload] != 2 {
		t.Errorf("overload: uncopied %d bytes, %d requests; want 12, 2", st.UncopiedBytes[ReasonOverload], st.UncopiedRequests[ReasonOverload])
	}

	// -O: connections without their SYN are not copied, and counted.
	h = newHarness(t, Config{OnlyFullSessions: true})
	h.client(PA, 2001, 7001, "GET /a")
	h.client(PA, 2001, 7001, "GET /a")
	h.client(PA, 2007, 7101, "GET /b")
	if st := h.tab.Stats(); st.UncopiedBytes[ReasonNoSYN] != 12 || st.UncopiedRequests[ReasonNoSYN] != 2 || st.Opened != 0 {
		t.Errorf("-O: uncopied %d bytes, %d requests, %d opened", st.UncopiedBytes[ReasonNoSYN], st.UncopiedRequests[ReasonNoSYN], st.Opened)
	}
}
