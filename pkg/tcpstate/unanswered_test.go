package tcpstate

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// unansweredStart leaves h with /1 answered and /2 sent and acknowledged
// by the target, not answered.
func unansweredStart(t *testing.T) *harness {
	h := newHarness(t, Config{})
	h.handshake()
	h.client(PA, 1001, 9001, "GET /1")
	h.expect("PA 1001 5001 GET /1")
	h.target(PA, 5001, 1007, 65535, 100) // as much as online answered: complete
	h.client(PA, 1007, 9101, "GET /2")
	h.expect("A 1007 5101", "PA 1007 5101 GET /2")
	h.target(A, 5101, 1013, 65535, 0)
	h.expect()
	return h
}

// TestUnansweredResentAfterFIN: the target closes with a FIN after it
// took /2 and before it answered: /2 goes again on the new connection,
// once, and the acknowledged bytes are counted once.
func TestUnansweredResentAfterFIN(t *testing.T) {
	h := unansweredStart(t)
	h.target(FA, 5101, 1013, 65535, 0)
	h.expect("RA 1013 5102")
	h.advance(time.Millisecond)
	h.expect("S 1006")
	h.target(SA, 7000, 1007, 65535, 0)
	h.expect("PA 1007 7001 GET /2")
	h.target(PA, 7001, 1013, 65535, 100)
	st := h.tab.Stats()
	if st.Unanswered != 1 || st.Reconnects != 1 || st.AckedBytes != st.CapturedBytes || st.CapturedBytes != 12 {
		t.Errorf("unanswered %d, reconnects %d, acked %d of %d", st.Unanswered, st.Reconnects, st.AckedBytes, st.CapturedBytes)
	}
}

// TestUnansweredResentAfterRST: the same with a reset (a Go server that
// closes with unread data).
func TestUnansweredResentAfterRST(t *testing.T) {
	h := unansweredStart(t)
	h.target(RA, 5101, 1013, 0, 0)
	h.advance(time.Millisecond)
	h.expect("S 1006")
	h.target(SA, 7000, 1007, 65535, 0)
	h.expect("PA 1007 7001 GET /2")
	if st := h.tab.Stats(); st.Unanswered != 1 || st.ClosedBy(Reproduced) != 0 {
		t.Errorf("unanswered %d, closed %v", st.Unanswered, st.Closed)
	}
}

// TestUnansweredOnce: a target that takes the request and closes again
// gets it once more only; then the session ends as it did before.
func TestUnansweredOnce(t *testing.T) {
	h := unansweredStart(t)
	h.target(RA, 5101, 1013, 0, 0)
	h.advance(time.Millisecond)
	h.target(SA, 7000, 1007, 65535, 0)
	h.expect("S 1006", "PA 1007 7001 GET /2")
	h.target(A, 7001, 1013, 65535, 0)
	h.target(RA, 7001, 1013, 0, 0)
	h.advance(time.Millisecond)
	h.expect()
	if st := h.tab.Stats(); st.Unanswered != 1 || h.closed(Reproduced, ReasonTargetRST) != 1 {
		t.Errorf("unanswered %d, closed %v", st.Unanswered, st.Closed)
	}
}

// TestAnsweredNotResent: a request the target answered before it closed
// is not sent again; the next one goes on a new connection.
func TestAnsweredNotResent(t *testing.T) {
	h := unansweredStart(t)
	h.target(FPA, 5101, 1013, 65535, 100)
	h.expect("A 1013 5202")
	h.client(PA, 1013, 9201, "GET /3")
	h.expect("RA 1013 5202")
	h.advance(time.Millisecond)
	h.target(SA, 7000, 1013, 65535, 0)
	h.expect("S 1012", "PA 1013 7001 GET /3")
	if st := h.tab.Stats(); st.Unanswered != 0 {
		t.Errorf("unanswered %d", st.Unanswered)
	}
}

// TestUnansweredTooBig: a request bigger than heldMaxBytes is not held
// (nor a part of it).
func TestUnansweredTooBig(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	h.client(PA, 1001, 9001, "GET /1")
	h.target(PA, 5001, 1007, 65535, 100)
	h.out.take()
	body := strings.Repeat("x", 1400)
	seq := uint32(1007)
	for range 60 { // 84,000 bytes
		h.client(A, seq, 9101, body)
		seq += 1400
	}
	s := h.tab.sessions[packKey(key1)]
	for i := 0; i < 10 && len(s.queue) > int(s.nheld); i++ {
		h.target(A, 5101, uint32(s.sndNxt), 65535, 0)
	}
	if s.nheld != 0 || !s.heldOff || len(s.queue) != 0 || s.queueBytes != 0 {
		t.Fatalf("held %d, off %v, queue %d (%d bytes)", s.nheld, s.heldOff, len(s.queue), s.queueBytes)
	}
	h.target(RA, 5101, seq, 0, 0)
	if h.closed(Reproduced, ReasonTargetRST) != 1 || h.tab.Stats().Unanswered != 0 {
		t.Errorf("closed %v", h.tab.Stats().Closed)
	}
}

// TestPipelinedPaced: requests pipelined behind one acknowledgement
// number go one at a time, each after the answer to the one before; a
// target that closes after the first answer gets the second on a new
// connection.
func TestPipelinedPaced(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	h.client(PA, 1001, 9001, "GET /1 HTTP/1.1\r\n\r\n")
	h.client(PA, 1020, 9001, "GET /2 HTTP/1.1\r\n\r\n")
	h.expect("PA 1001 5001 GET /1 HTTP/1.1\r\n\r\n")
	h.target(PA, 5001, 1020, 65535, 100)
	h.expect("A 1020 5101")
	h.advance(5 * time.Millisecond) // quiet
	h.expect("PA 1020 5101 GET /2 HTTP/1.1\r\n\r\n")

	// The target closes right after its first answer.
	h = newHarness(t, Config{})
	h.handshake()
	h.client(PA, 1001, 9001, "GET /1 HTTP/1.1\r\n\r\n")
	h.client(PA, 1020, 9001, "GET /2 HTTP/1.1\r\n\r\n")
	h.out.take()
	h.target(FPA, 5001, 1020, 65535, 100)
	h.expect("RA 1020 5102")
	h.advance(time.Millisecond)
	h.target(SA, 7000, 1020, 65535, 0)
	h.expect("S 1019", "PA 1020 7001 GET /2 HTTP/1.1\r\n\r\n")

	// On the new connection too: /3 waits for the answer to /2.
	h = newHarness(t, Config{})
	h.handshake()
	h.client(PA, 1001, 9001, "GET /1 HTTP/1.1\r\n\r\n")
	h.client(PA, 1020, 9001, "GET /2 HTTP/1.1\r\n\r\n")
	h.client(PA, 1039, 9001, "GET /3 HTTP/1.1\r\n\r\n")
	h.out.take()
	h.target(FPA, 5001, 1020, 65535, 100)
	h.advance(time.Millisecond)
	h.target(SA, 7000, 1020, 65535, 0)
	h.expect("RA 1020 5102", "S 1019", "PA 1020 7001 GET /2 HTTP/1.1\r\n\r\n")
	h.target(A, 7001, 1039, 65535, 0)
	h.advance(100 * time.Millisecond)
	h.expect()
	h.target(PA, 7001, 1039, 65535, 100)
	h.advance(5 * time.Millisecond)
	h.expect("A 1039 7101", "PA 1039 7101 GET /3 HTTP/1.1\r\n\r\n")
}

// TestPipelinedNotHTTP: segments of one request, or of a protocol that is
// not HTTP, are not paced apart.
func TestPipelinedNotHTTP(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	h.client(PA, 1001, 9001, "*1\r\n$4\r\nPING\r\n")
	h.client(PA, 1015, 9001, "*1\r\n$4\r\nPING\r\n")
	h.expect("PA 1001 5001 *1\r\n$4\r\nPING\r\n", "PA 1015 5001 *1\r\n$4\r\nPING\r\n")
}

func TestHTTPRequestStart(t *testing.T) {
	for _, c := range []struct {
		in   string
		want bool
	}{
		{"GET / HTTP/1.1\r\n", true},
		{"POST /api HTTP/1.1\r\n", true},
		{"OPTIONS * HTTP/1.1\r\n", true},
		{"GET http://example.com/ HTTP/1.1\r\n", true},
		{"CONNECT example.com:443 HTTP/1.1\r\n", true},
		{"PATCH /x HTTP/1.1", true},
		{"GET ", false},
		{"GET  / HTTP/1.1", false},
		{"get / HTTP/1.1", false},
		{"GETS / HTTP/1.1", false},
		{"get key\r\n", false},
		{"*1\r\n$4\r\nPING\r\n", false},
		{"", false},
		{"\x16\x03\x01\x02\x00", false},
	} {
		if got := httpRequestStart([]byte(c.in)); got != c.want {
			t.Errorf("httpRequestStart(%q) = %v, want %v", c.in, got, c.want)
		}
	}
}

// TestPipelinedOnePacket: requests pipelined in one captured packet are
// cut apart and paced like separate segments.
func TestPipelinedOnePacket(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	r1 := "POST /1 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc"
	r2 := "GET /2 HTTP/1.1\r\n\r\n"
	h.client(PA, 1001, 9001, r1+r2)
	h.expect("PA 1001 5001 " + r1)
	end1 := 1001 + uint32(len(r1))
	h.target(PA, 5001, end1, 65535, 100)
	h.advance(5 * time.Millisecond)
	h.expect(fmt.Sprintf("A %d 5101", end1), fmt.Sprintf("PA %d 5101 %s", end1, r2))
}

func TestNextHTTPRequest(t *testing.T) {
	get := "GET / HTTP/1.1\r\nHost: a\r\n\r\n"
	for _, c := range []struct {
		name string
		in   string
		want int
	}{
		{"two gets", get + get, len(get)},
		{"one get", get, 0},
		{"body", "POST / HTTP/1.1\r\ncontent-LENGTH:  5 \r\n\r\nhello" + get, len("POST / HTTP/1.1\r\ncontent-LENGTH:  5 \r\n\r\nhello")},
		{"body cut", "POST / HTTP/1.1\r\nContent-Length: 50\r\n\r\nhello" + get, 0},
		{"chunked", "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + get, 0},
		{"bad length", "POST / HTTP/1.1\r\nContent-Length: 5x\r\n\r\nhello" + get, 0},
		{"two lengths", "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello" + get, 0},
		{"same lengths", "POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello" + get, len("POST / HTTP/1.1\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello")},
		{"huge length", "POST / HTTP/1.1\r\nContent-Length: 99999999999\r\n\r\n" + get, 0},
		{"not a request after", get + "hello", 0},
		{"head cut", "GET / HTTP/1.1\r\nHost: a\r\n", 0},
		{"not http", "hello\r\n\r\n" + get, 0},
	} {
		if got := nextHTTPRequest([]byte(c.in)); got != c.want {
			t.Errorf("%s: nextHTTPRequest = %d, want %d", c.name, got, c.want)
		}
	}
}

func FuzzNextHTTPRequest(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\n\r\nGET / HTTP/1.1\r\n\r\n"))
	f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: 2\r\n\r\nhiGET / HTTP/1.1\r\n\r\n"))
	f.Fuzz(func(t *testing.T, p []byte) {
		n := nextHTTPRequest(p)
		if n < 0 || n >= len(p) && n != 0 {
			t.Fatalf("offset %d of %d bytes", n, len(p))
		}
		if n > 0 && (!httpRequestStart(p) || !httpRequestStart(p[n:])) {
			t.Fatalf("offset %d does not start a request", n)
		}
	})
}

// TestPipelinedBodyAckMoves: the client reads the first answer while it
// writes the pipelined second request's body, so the rest of the body
// carries a newer acknowledgement number. It goes as soon as the target
// answered the first request as the online server did, and is never held
// alone (it starts no request): the head was let go when it went.
func TestPipelinedBodyAckMoves(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	r1 := "GET /1 HTTP/1.1\r\n\r\n"
	head := "POST /2 HTTP/1.1\r\nContent-Length: 8\r\n\r\nbody"
	h.client(PA, 1001, 9001, r1)
	s2 := 1001 + uint32(len(r1))
	h.client(PA, s2, 9001, head)
	h.expect("PA 1001 5001 " + r1)
	h.target(PA, 5001, s2, 65535, 100)
	h.advance(5 * time.Millisecond)
	h.expect("A "+fmt.Sprint(s2)+" 5101", "PA "+fmt.Sprint(s2)+" 5101 "+head)
	s3 := s2 + uint32(len(head))
	h.target(A, 5101, s3, 65535, 0) // the head is held: its answer has not started
	h.client(PA, s3, 9101, "more")  // the online server's answer to /1 was 100 bytes
	h.expect("PA " + fmt.Sprint(s3) + " 5101 more")
	h.target(A, 5101, s3+4, 65535, 0)
	s := h.tab.sessions[packKey(key1)]
	if s.nheld != 0 || !s.heldOff {
		t.Errorf("held %d segments, off %v: a body's tail is held alone", s.nheld, s.heldOff)
	}
}

func TestFindHTTPRequest(t *testing.T) {
	get := "GET /x HTTP/1.1\r\nHost: a\r\n\r\n"
	for _, c := range []struct {
		name string
		in   string
		want int
	}{
		{"body tail then request", "tail of a body" + get, 14},
		{"uppercase tail", "ABC" + get, 3},
		{"newline tail", "abc\r\n" + get, 5},
		{"request at start", get, 0},
		{"no request", "just a body", 0},
		{"version without line end", "xGET /x HTTP/1.1", 0},
		{"cut request line", "xGET /x HTTP/1.", 0},
		{"not a method", "xFOO /x HTTP/1.1\r\n", 0},
		{"space in target", "xGET /a b HTTP/1.1\r\n", 0},
		{"second candidate", "x HTTP/1.1\r\nbodyPUT /y HTTP/1.0\r\n", 16},
		{"response line", "xHTTP/1.1 200 OK\r\n", 0},
	} {
		if got := findHTTPRequest([]byte(c.in)); got != c.want {
			t.Errorf("%s: findHTTPRequest = %d, want %d", c.name, got, c.want)
		}
	}
}

// TestPipelinedAfterBody: a pipelined request in the captured packet that
// ends the body before it is paced apart.
func TestPipelinedAfterBody(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	head := "POST /1 HTTP/1.1\r\nContent-Length: 8\r\n\r\nbody"
	r2 := "GET /2 HTTP/1.1\r\n\r\n"
	h.client(PA, 1001, 9001, head)
	h.client(PA, 1001+uint32(len(head)), 9001, "tail"+r2)
	s2 := 1001 + uint32(len(head)) + 4
	h.expect("PA 1001 5001 "+head, "A "+fmt.Sprint(s2-4)+" 5001 tail")
	h.target(PA, 5001, s2, 65535, 100)
	h.advance(5 * time.Millisecond)
	h.expect("A "+fmt.Sprint(s2)+" 5101", "PA "+fmt.Sprint(s2)+" 5101 "+r2)
}

func FuzzFindHTTPRequest(f *testing.F) {
	f.Add([]byte("body GET /x HTTP/1.1\r\n\r\n"))
	f.Add([]byte("x HTTP/1.1\r\nbodyPUT /y HTTP/1.0\r\n"))
	f.Fuzz(func(t *testing.T, p []byte) {
		if n := findHTTPRequest(p); n < 0 || n >= len(p) && n != 0 || n > 0 && !httpRequestStart(p[n:]) {
			t.Fatalf("offset %d of %d bytes", n, len(p))
		}
	})
}

// TestPipelinedThenNextRequest: the next request (its acknowledgement
// number moved) waits for the answer to the last pipelined request, not
// only to the first.
func TestPipelinedThenNextRequest(t *testing.T) {
	h := newHarness(t, Config{})
	h.handshake()
	r := func(n int) string { return fmt.Sprintf("GET /%d HTTP/1.1\r\n\r\n", n) } // 19 bytes
	h.client(PA, 1001, 9001, r(1))
	h.client(PA, 1020, 9001, r(2))
	h.client(PA, 1039, 9201, r(3)) // online answered 100 bytes to each
	h.expect("PA 1001 5001 " + r(1))
	h.target(PA, 5001, 1020, 65535, 100)
	h.advance(5 * time.Millisecond)
	h.expect("A 1020 5101", "PA 1020 5101 "+r(2))
	h.advance(5 * time.Millisecond)
	h.expect() // quiet since the answer to /1, but /2 has no answer yet
	h.target(PA, 5101, 1039, 65535, 100)
	h.expect("PA 1039 5201 " + r(3)) // both answers in, as many bytes as online: at once, with the ACK
}

// TestAnswerPending: while the comparison knows the target's answer goes
// on, the next request waits for it, bounded by ResponseWait since its
// latest bytes.
func TestAnswerPending(t *testing.T) {
	h := newHarness(t, Config{ResponseWait: 500 * time.Millisecond, AnswerLengths: true})
	h.handshake()
	h.client(PA, 1001, 9001, "GET /1")
	h.client(PA, 1007, 9201, "GET /2") // online answered 200 bytes
	h.expect("PA 1001 5001 GET /1")
	h.out.pending = true
	h.target(PA, 5001, 1007, 65535, 200) // as many bytes as online, but its head says more
	h.advance(100 * time.Millisecond)
	h.expect("A 1007 5201")
	h.target(PA, 5201, 1007, 65535, 100)
	h.advance(400 * time.Millisecond)
	h.expect("A 1007 5301")
	h.out.pending = false
	h.target(PA, 5301, 1007, 65535, 100) // the end
	h.expect("PA 1007 5401 GET /2")

	// A target that stops in the middle: the wait ends ResponseWait after
	// its last bytes.
	h = newHarness(t, Config{ResponseWait: 500 * time.Millisecond, AnswerLengths: true})
	h.handshake()
	h.client(PA, 1001, 9001, "GET /1")
	h.client(PA, 1007, 9201, "GET /2")
	h.out.pending = true
	h.target(PA, 5001, 1007, 65535, 100)
	h.out.take()
	h.advance(499 * time.Millisecond)
	h.expect()
	h.advance(time.Millisecond)
	h.expect("PA 1007 5101 GET /2")
}
