package load

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
)

// countListener counts the bytes its connections read.
type countListener struct {
	net.Listener
	read atomic.Int64
}

func (l *countListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &readCounter{Conn: c, n: &l.read}, nil
}

type readCounter struct {
	net.Conn
	n *atomic.Int64
}

func (c *readCounter) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// newCountingServer is newServer whose listener counts the bytes read.
func newCountingServer(t *testing.T, opts recorder.Options) (*server, *countListener) {
	t.Helper()
	s := &server{}
	rec := recorder.New(s, opts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countListener{Listener: ln}
	srv := &http.Server{Handler: rec, ConnState: func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			s.conns.Add(1)
		}
	}}
	go srv.Serve(cl)
	t.Cleanup(func() { srv.Close() })
	s.Server = nil
	return s, cl
}

// TestWireLen checks that Result.WireLen adds up to the bytes the server
// read, for net/http's connections and for pipelined ones.
func TestWireLen(t *testing.T) {
	for _, tt := range []struct {
		name     string
		mode     Mode
		pipeline int
	}{
		{"keep-alive", KeepAlive, 0},
		{"short", Short, 0},
		{"pipelined", KeepAlive, 3},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s, cl := newCountingServer(t, recorder.Options{})
			rs, err := Run(context.Background(), Options{
				URL: "http://" + cl.Addr().String(), MaxRequests: 24, Mode: tt.mode, Pipeline: tt.pipeline,
				RequestsPerConn: 6, BodySizes: []int{0, 10, 5000, 100000}, Concurrency: 2,
			})
			if err != nil {
				t.Fatal(err)
			}
			checkAgainstServer(t, s, rs)
			var sum int64
			for _, r := range rs {
				if r.WireLen < int64(r.BodyLen)+20 {
					t.Errorf("request %d: wire length %d for a body of %d bytes", r.Seq, r.WireLen, r.BodyLen)
				}
				sum += r.WireLen
			}
			// The server has read everything once every answer came.
			if got := cl.read.Load(); got != sum {
				t.Errorf("the server read %d bytes, the results sum to %d", got, sum)
			}
		})
	}
}

// TestPipeline checks that a pipelining client writes its whole batch
// before it reads an answer: the server here reads every request of a
// connection's batch before answering any (a client that waited for the
// first answer would time out), then answers them in order.
func TestPipeline(t *testing.T) {
	const depth, perConn, total = 4, 8, 16
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var (
		mu      sync.Mutex
		batches []int // requests read before the first answer of each batch
		conns   int
	)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns++
			mu.Unlock()
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					var ids []string
					for range depth {
						req, err := http.ReadRequest(br)
						if err != nil {
							return
						}
						io.Copy(io.Discard, req.Body)
						ids = append(ids, req.Header.Get(recorder.IDHeader))
					}
					mu.Lock()
					batches = append(batches, len(ids))
					mu.Unlock()
					for _, id := range ids {
						io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n"+recorder.IDHeader+": "+id+"\r\n\r\nok")
					}
				}
			}()
		}
	}()
	rs, err := Run(context.Background(), Options{
		URL: "http://" + ln.Addr().String(), MaxRequests: total, Mode: KeepAlive, Pipeline: depth,
		RequestsPerConn: perConn, BodySizes: []int{0, 3000}, Concurrency: 1, Timeout: 2 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range rs {
		if !r.OK() {
			t.Errorf("request %d: status %d, %s", r.Seq, r.Status, r.Err)
		}
		if want := r.Seq%depth != 0; r.Reused != (want || r.Seq%perConn != 0) {
			t.Errorf("request %d: reused %v", r.Seq, r.Reused)
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if len(batches) != total/depth || conns != total/perConn {
		t.Errorf("%d batches on %d connections, want %d on %d", len(batches), conns, total/depth, total/perConn)
	}
}

// TestPipelineRecorder pipelines to the recorder (net/http's server
// answers pipelined requests in order) and to one that closes every
// second connection's answers (CloseEvery): the batch's later requests
// fail, and the worker goes on with a new connection.
func TestPipelineRecorder(t *testing.T) {
	s, cl := newCountingServer(t, recorder.Options{})
	rs, err := Run(context.Background(), Options{
		URL: "http://" + cl.Addr().String(), MaxRequests: 30, Mode: KeepAlive, Pipeline: 5,
		RequestsPerConn: 10, BodySizes: []int{0, 70000}, Concurrency: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkAgainstServer(t, s, rs)
	// 30 requests over 3 workers, 10 a connection: 3 connections if the
	// workers took turns, more when one took more than 10.
	if got := s.conns.Load(); got < 3 || got > 5 {
		t.Errorf("%d connections, want 3 to 5", got)
	}

	s2, cl2 := newCountingServer(t, recorder.Options{CloseEvery: 2})
	rs, err = Run(context.Background(), Options{
		URL: "http://" + cl2.Addr().String(), MaxRequests: 12, Mode: KeepAlive, Pipeline: 3,
		RequestsPerConn: 6, Concurrency: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	ok := 0
	for _, r := range rs {
		if r.OK() {
			ok++
		}
	}
	if ok == 0 || ok == len(rs) || len(s2.entries(t)) < ok {
		t.Errorf("%d of %d ok, %d recorded: want some failed after the server's close", ok, len(rs), len(s2.entries(t)))
	}
}

// TestThink checks the pause between the requests of a keep-alive
// connection, and none before a connection's first.
func TestThink(t *testing.T) {
	s := newServer(t)
	const think = 300 * time.Millisecond
	rs, err := Run(context.Background(), Options{
		URL: s.URL, MaxRequests: 6, Mode: KeepAlive, RequestsPerConn: 3, Think: think, Concurrency: 1,
	})
	if err != nil {
		t.Fatal(err)
	}
	checkAgainstServer(t, s, rs)
	for i := 1; i < len(rs); i++ {
		gap := rs[i].Start.Sub(rs[i-1].Start.Add(rs[i-1].Latency))
		first := i%3 == 0
		if !first && gap < think {
			t.Errorf("request %d came %v after the previous answer, want at least %v", i, gap, think)
		}
		if first && gap >= think/2 {
			t.Errorf("request %d opens a connection %v after the previous answer: no pause wanted", i, gap)
		}
	}
	if got := s.conns.Load(); got != 2 {
		t.Errorf("%d connections, want 2", got)
	}
}
