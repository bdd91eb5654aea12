// Package recorder is the lab's HTTP server: it answers every request with a
// small deterministic body and records it (id, method, path, body length and
// SHA-256, arrival time, peer) as one JSON line, so that what the online
// server received can be compared with what the target received from
// tcpcopy (Compare).
//
// Requests are identified by the X-Lab-Id header that the load client
// (package load) sets. The recorder reads the whole body, up to a limit,
// before answering: a copy that loses a segment shows up as a short body or
// a different hash rather than as a silently accepted request.
//
// A Recorder is safe for concurrent use; each entry is written with one
// Write call on the log, under a mutex, so lines never interleave and an
// *os.File log is up to date after every request.
//
// The lab's target can behave like real servers that close connections on
// purpose or are busy: Options.CloseEvery answers some or all requests with
// "Connection: close", and Listen's ListenOptions give the listener a tiny
// backlog and slow accepts. Behind a reverse proxy (the lab's nginx),
// Options.PeerHeaders takes the client's address from the proxy's headers.
package recorder

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// IDHeader carries the request id set by the load client.
const IDHeader = "X-Lab-Id"

// Request headers a reverse proxy in front of the recorder sets, read with
// Options.PeerHeaders: the address and port of its client (the peer of
// the connection the request came in on) and its own local address and
// port of that connection, as "ADDR:PORT" (nginx's $remote_addr:$remote_port
// and $server_addr:$server_port; an IPv6 address without brackets).
const (
	RemoteHeader = "X-Lab-Remote"
	LocalHeader  = "X-Lab-Local"
)

// Response headers set by the recorder.
const (
	BodyLenHeader    = "X-Lab-Body-Len"    // body length the recorder read
	BodySHA256Header = "X-Lab-Body-Sha256" // hex SHA-256 of that body
)

// Defaults for Options.
const (
	DefaultMaxBody  = 8 << 20  // 8 MiB
	DefaultMaxResp  = 16 << 20 // 16 MiB
	DefaultRespSize = 32
)

// Entry is one recorded request.
type Entry struct {
	ID            string    `json:"id"`             // X-Lab-Id, empty when absent
	Method        string    `json:"method"`         // request method
	Path          string    `json:"path"`           // URL path and query
	ContentLength int64     `json:"content_length"` // from the header, -1 when unknown (chunked)
	BodyLen       int64     `json:"body_len"`       // bytes actually read
	BodySHA256    string    `json:"body_sha256"`    // hex SHA-256 of those bytes
	Time          time.Time `json:"time"`           // arrival: when the request header had been read
	Remote        string    `json:"remote"`         // peer address:port
	Local         string    `json:"local"`          // local address:port that accepted the connection
	Status        int       `json:"status"`         // status answered
	Err           string    `json:"err,omitempty"`  // body read error or size limit
}

// Options configures a Recorder. Zero values mean the defaults.
type Options struct {
	MaxBody  int64 // larger bodies are answered 413 (read up to MaxBody+1); DefaultMaxBody
	MaxResp  int64 // largest ?resp=N honoured; DefaultMaxResp
	RespSize int64 // response body size without ?resp=; DefaultRespSize
	// CloseEvery answers every CloseEvery-th request (counted over the
	// whole server, from the first) with "Connection: close", after which
	// the server closes that connection, as servers do that limit the
	// requests per connection; 1 closes after every response (HTTP/1.0
	// style). 0 keeps connections open.
	CloseEvery int64
	// PeerHeaders records Remote and Local from RemoteHeader and
	// LocalHeader when a request has them: the recorder runs behind a
	// reverse proxy, whose own connection says nothing about the client.
	PeerHeaders bool
}

// Recorder is an http.Handler that records requests to a log.
type Recorder struct {
	opts  Options
	mu    sync.Mutex
	log   io.Writer
	count atomic.Int64
	fails atomic.Int64
	seen  atomic.Int64 // requests handled, for CloseEvery
}

// New returns a Recorder that appends JSON lines to log.
func New(log io.Writer, opts Options) *Recorder {
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	if opts.MaxResp <= 0 {
		opts.MaxResp = DefaultMaxResp
	}
	if opts.RespSize <= 0 {
		opts.RespSize = DefaultRespSize
	}
	return &Recorder{opts: opts, log: log}
}

// OpenLog opens path for appending, creating it.
func OpenLog(path string) (*os.File, error) {
	return os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
}

// Count returns the number of requests recorded so far.
func (r *Recorder) Count() int64 { return r.count.Load() }

// pattern is the response body, repeated: deterministic and cheap.
var pattern = func() []byte {
	const s = "tcpcopy-lab response 0123456789abcdefghijklmnopqrstuvwxyz\n"
	b := make([]byte, 0, 4096+len(s))
	for len(b) < 4096 {
		b = append(b, s...)
	}
	return b[:4096]
}()

// ServeHTTP reads the whole request body, records the request and answers
// 200 with a body of ?resp=N bytes (RespSize by default), 413 when the body
// exceeds MaxBody, 400 when it cannot be read.
func (r *Recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	e := Entry{
		ID:            req.Header.Get(IDHeader),
		Method:        req.Method,
		Path:          req.URL.RequestURI(),
		ContentLength: req.ContentLength,
		Time:          time.Now(),
		Remote:        req.RemoteAddr,
		Status:        http.StatusOK,
	}
	if a, ok := req.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
		e.Local = a.String()
	}
	if r.opts.PeerHeaders {
		if v := peerHeader(req.Header.Get(RemoteHeader)); v != "" {
			e.Remote = v
		}
		if v := peerHeader(req.Header.Get(LocalHeader)); v != "" {
			e.Local = v
		}
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(req.Body, r.opts.MaxBody+1))
	e.BodyLen = n
	e.BodySHA256 = hex.EncodeToString(h.Sum(nil))
	switch {
	case err != nil:
		e.Status = http.StatusBadRequest
		e.Err = err.Error()
	case n > r.opts.MaxBody:
		e.Status = http.StatusRequestEntityTooLarge
		e.Err = fmt.Sprintf("body larger than %d bytes", r.opts.MaxBody)
	}

	size := r.opts.RespSize
	if s := req.URL.Query().Get("resp"); s != "" {
		if v, err := strconv.ParseInt(s, 10, 64); err == nil && v >= 0 {
			size = min(v, r.opts.MaxResp)
		}
	}
	r.record(e)

	hdr := w.Header()
	hdr.Set("Content-Type", "text/plain")
	hdr.Set(BodyLenHeader, strconv.FormatInt(e.BodyLen, 10))
	hdr.Set(BodySHA256Header, e.BodySHA256)
	if e.ID != "" {
		hdr.Set(IDHeader, e.ID)
	}
	if e.Status != http.StatusOK {
		hdr.Set("Connection", "close")
		w.WriteHeader(e.Status)
		io.WriteString(w, e.Err+"\n")
		return
	}
	hdr.Set("Content-Length", strconv.FormatInt(size, 10))
	if n := r.opts.CloseEvery; n > 0 && r.seen.Add(1)%n == 0 {
		hdr.Set("Connection", "close") // net/http closes after this response
	}
	w.WriteHeader(e.Status)
	if req.Method == http.MethodHead {
		return
	}
	for size > 0 {
		k := min(size, int64(len(pattern)))
		if _, err := w.Write(pattern[:k]); err != nil {
			return
		}
		size -= k
	}
}

// peerHeader normalises an "ADDR:PORT" header of a proxy to the form of
// net.Addr.String ("[2001:db8::1]:80" for IPv6, an IPv4-mapped address as
// IPv4, as Go's dual-stack listeners give it); "" when it is not one.
func peerHeader(v string) string {
	i := strings.LastIndexByte(v, ':')
	if i <= 0 {
		return ""
	}
	host := strings.TrimSuffix(strings.TrimPrefix(v[:i], "["), "]")
	a, err := netip.ParseAddr(host)
	if err != nil {
		return ""
	}
	p, err := strconv.ParseUint(v[i+1:], 10, 16)
	if err != nil {
		return ""
	}
	return netip.AddrPortFrom(a.Unmap(), uint16(p)).String()
}

func (r *Recorder) record(e Entry) {
	line, err := json.Marshal(e)
	if err != nil { // cannot happen: Entry has only plain fields
		panic(err)
	}
	line = append(line, '\n')
	r.mu.Lock()
	_, err = r.log.Write(line)
	r.mu.Unlock()
	r.count.Add(1)
	if err != nil {
		r.fails.Add(1)
	}
}

// WriteErrors returns how many entries could not be written to the log.
func (r *Recorder) WriteErrors() int64 { return r.fails.Load() }

// ReadLog reads a JSON-lines log written by a Recorder. A missing file is
// an error; a torn last line (the writer was killed mid-write) is ignored.
func ReadLog(path string) ([]Entry, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return DecodeLog(f)
}

// DecodeLog decodes JSON-lines entries from r (see ReadLog).
func DecodeLog(r io.Reader) ([]Entry, error) {
	var entries []Entry
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	line := 0
	var pending error
	for sc.Scan() {
		line++
		if pending != nil {
			return entries, pending // a bad line that was not the last one
		}
		if len(sc.Bytes()) == 0 {
			continue
		}
		var e Entry
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			pending = fmt.Errorf("recorder: log line %d: %w", line, err)
			continue
		}
		entries = append(entries, e)
	}
	if err := sc.Err(); err != nil {
		return entries, fmt.Errorf("recorder: %w", err)
	}
	return entries, nil
}

// Serve serves h on every address in addrs until ctx ends, then shuts down
// gracefully (in-flight requests get 2 s). All listeners are opened before
// serving starts, so a bad address fails at once. It returns nil after a
// shutdown caused by ctx.
func Serve(ctx context.Context, addrs []string, h http.Handler, log *slog.Logger) error {
	if len(addrs) == 0 {
		return errors.New("recorder: no listen address")
	}
	var lns []net.Listener
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			for _, l := range lns {
				l.Close()
			}
			return err
		}
		lns = append(lns, ln)
	}
	return ServeListeners(ctx, lns, h, log)
}

// ServeListeners is Serve on listeners that are already open; it closes
// them.
func ServeListeners(ctx context.Context, lns []net.Listener, h http.Handler, log *slog.Logger) error {
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, len(lns))
	for _, ln := range lns {
		log.Info("listening", "addr", ln.Addr().String())
		go func() { errc <- srv.Serve(ln) }()
	}
	select {
	case <-ctx.Done():
	case err := <-errc:
		srv.Close()
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	return nil
}
