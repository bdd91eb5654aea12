package recorder

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// TestCloseEvery checks that every n-th answer says Connection: close and
// that the server closes the connection after it, so that a client on one
// keep-alive connection needs a new one after each of them.
func TestCloseEvery(t *testing.T) {
	for _, n := range []int64{1, 3} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			srv := httptest.NewUnstartedServer(New(io.Discard, Options{CloseEvery: n}))
			var mu sync.Mutex
			conns := 0
			srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
				if st == http.StateNew {
					mu.Lock()
					conns++
					mu.Unlock()
				}
			}
			srv.Start()
			defer srv.Close()
			const requests = 9
			closes := 0
			for i := range requests {
				resp, err := srv.Client().Get(srv.URL + "/x")
				if err != nil {
					t.Fatal(err)
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				want := int64(i+1)%n == 0
				if resp.Close != want {
					t.Errorf("request %d: Connection: close %v, want %v", i+1, resp.Close, want)
				}
				if resp.Close {
					closes++
				}
			}
			mu.Lock()
			defer mu.Unlock()
			// A connection per close, and one more if the last answer
			// kept it open.
			want := closes
			if requests%n != 0 {
				want++
			}
			if conns != want {
				t.Errorf("%d connections, want %d", conns, want)
			}
		})
	}
}

// TestPeerHeaders checks that behind a proxy the client's address comes
// from the proxy's headers, in net.Addr's form, and that bad or missing
// headers leave the connection's own.
func TestPeerHeaders(t *testing.T) {
	var log bytes.Buffer
	rec := New(&log, Options{PeerHeaders: true})
	for _, tt := range []struct {
		remote, local         string
		wantRemote, wantLocal string
	}{
		{"192.0.2.10:40000", "198.51.100.2:8080", "192.0.2.10:40000", "198.51.100.2:8080"},
		{"2001:db8:1::10:40001", "2001:db8:2::2:8080", "[2001:db8:1::10]:40001", "[2001:db8:2::2]:8080"},
		{"[2001:db8:1::10]:40002", "", "[2001:db8:1::10]:40002", "127.0.0.1:18080"},
		{"::ffff:192.0.2.10:40003", "", "192.0.2.10:40003", "127.0.0.1:18080"},
		{"nonsense", "192.0.2.1:99999", "127.0.0.1:5555", "127.0.0.1:18080"},
		{"", "", "127.0.0.1:5555", "127.0.0.1:18080"},
	} {
		log.Reset()
		req := httptest.NewRequest(http.MethodGet, "/x", nil)
		req.RemoteAddr = "127.0.0.1:5555"
		req = req.WithContext(contextWithLocal(req, "127.0.0.1:18080"))
		if tt.remote != "" {
			req.Header.Set(RemoteHeader, tt.remote)
		}
		if tt.local != "" {
			req.Header.Set(LocalHeader, tt.local)
		}
		rec.ServeHTTP(httptest.NewRecorder(), req)
		es, err := DecodeLog(&log)
		if err != nil || len(es) != 1 {
			t.Fatalf("%q: %v %v", tt.remote, es, err)
		}
		if es[0].Remote != tt.wantRemote || es[0].Local != tt.wantLocal {
			t.Errorf("%q %q: recorded %q %q, want %q %q", tt.remote, tt.local, es[0].Remote, es[0].Local, tt.wantRemote, tt.wantLocal)
		}
	}
	// Without the option the headers are ignored.
	log.Reset()
	req := httptest.NewRequest(http.MethodGet, "/x", nil)
	req.RemoteAddr = "127.0.0.1:5555"
	req.Header.Set(RemoteHeader, "192.0.2.10:40000")
	New(&log, Options{}).ServeHTTP(httptest.NewRecorder(), req)
	if !strings.Contains(log.String(), `"remote":"127.0.0.1:5555"`) {
		t.Errorf("headers trusted without PeerHeaders: %s", log.String())
	}
}

func TestListenOptionsValidate(t *testing.T) {
	for _, tt := range []struct {
		name string
		o    ListenOptions
		want string // "" for valid
	}{
		{"zero", ListenOptions{}, ""},
		{"backlog", ListenOptions{Backlog: 1}, ""},
		{"always slow", ListenOptions{AcceptDelay: time.Millisecond}, ""},
		{"slow at first", ListenOptions{AcceptDelay: time.Millisecond, SlowFor: time.Second}, ""},
		{"bursts", ListenOptions{AcceptDelay: time.Millisecond, SlowFor: time.Second, SlowEvery: 3 * time.Second}, ""},
		{"negative backlog", ListenOptions{Backlog: -1}, "negative backlog"},
		{"negative delay", ListenOptions{AcceptDelay: -1}, "negative"},
		{"busy without delay", ListenOptions{SlowFor: time.Second}, "without an accept delay"},
		{"repeat without length", ListenOptions{AcceptDelay: time.Millisecond, SlowEvery: time.Second}, "without its length"},
		{"always busy", ListenOptions{AcceptDelay: time.Millisecond, SlowFor: time.Second, SlowEvery: time.Second}, "always busy"},
	} {
		err := tt.o.Validate()
		if tt.want == "" && err != nil || tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)) {
			t.Errorf("%s: %v, want %q", tt.name, err, tt.want)
		}
	}
}

// TestSlowListenerBusy drives the busy periods with a fake clock.
func TestSlowListenerBusy(t *testing.T) {
	t0 := time.Unix(1000, 0)
	l := &slowListener{o: ListenOptions{AcceptDelay: 10 * time.Millisecond, SlowFor: time.Second, SlowEvery: 3 * time.Second}}
	if !l.busy(t0) {
		t.Error("busy before the first connection: want yes")
	}
	l.first = t0
	for _, tt := range []struct {
		at   time.Duration
		busy bool
	}{
		{0, true}, {999 * time.Millisecond, true}, {time.Second, false}, {2999 * time.Millisecond, false},
		{3 * time.Second, true}, {3500 * time.Millisecond, true}, {4 * time.Second, false}, {6 * time.Second, true},
	} {
		if got := l.busy(t0.Add(tt.at)); got != tt.busy {
			t.Errorf("at %v: busy %v, want %v", tt.at, got, tt.busy)
		}
	}
	once := &slowListener{o: ListenOptions{AcceptDelay: 10 * time.Millisecond, SlowFor: time.Second}, first: t0}
	if once.busy(t0.Add(3500 * time.Millisecond)) {
		t.Error("busy once: busy again after 3.5 s")
	}
	always := &slowListener{o: ListenOptions{AcceptDelay: 10 * time.Millisecond}, first: t0}
	if !always.busy(t0.Add(time.Hour)) {
		t.Error("always busy: not busy after an hour")
	}
}

// TestSlowAccept checks the delay before accepts while busy, and none
// after, on a real listener with a tiny backlog.
func TestSlowAccept(t *testing.T) {
	// Long enough that a busy machine's scheduling cannot pass for it.
	const delay = 250 * time.Millisecond
	ln, err := Listen("127.0.0.1:0", ListenOptions{Backlog: 1, AcceptDelay: delay, SlowFor: 600 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan time.Time, 16)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- time.Now()
			go func() {
				defer c.Close()
				bufio.NewReader(c).ReadByte()
			}()
		}
	}()
	var clients []net.Conn
	defer func() {
		for _, c := range clients {
			c.Close()
		}
	}()
	dial := func() {
		c, err := net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	start := time.Now()
	dial()
	dial()
	first, second := <-accepted, <-accepted
	if d := first.Sub(start); d < delay {
		t.Errorf("first accept after %v, want at least %v", d, delay)
	}
	if d := second.Sub(first); d < delay-10*time.Millisecond {
		t.Errorf("second accept %v after the first, want about %v", d, delay)
	}
	// Busy until 600 ms after the first accept; the accept after the
	// second waits until about then.
	time.Sleep(time.Until(first.Add(600*time.Millisecond + delay/2)))
	before := time.Now()
	dial()
	if d := (<-accepted).Sub(before); d > delay/2 {
		t.Errorf("an accept after the busy time took %v", d)
	}
}

// contextWithLocal returns req's context with the local address a, as
// net/http's server sets it.
func contextWithLocal(req *http.Request, a string) context.Context {
	addr, _ := net.ResolveTCPAddr("tcp", a)
	return context.WithValue(req.Context(), http.LocalAddrContextKey, addr)
}
