// Package recorder is the lab's HTTP server: it answers every request with a
// small deterministic body and records it (id, method, path, body length and
// SHA-256, arrival time, peer, X-Forwarded-For, a digest of the head) as
// one JSON line, so that what the online server received can be compared
// with what the target received from tcpcopy (Compare).
//
// Requests are identified by the X-Lab-Id header that the load client
// (package load) sets. The recorder reads the whole body, up to a limit,
// before answering: a copy that loses a segment shows up as a short body or
// a different hash rather than as a silently accepted request.
//
// Answers carry a body of ?resp=N bytes with a Content-Length, or chunked
// with ?chunked=1. The lab's target can be told to answer differently from
// an identical server for a deterministic share of the requests
// (Options.Differ, ParseDiffer): another status, a changed header, one body
// byte more or changed, a late or paused answer, picked by the sequence
// number in the request's id, so that tcpcopy's response comparison has
// differences to find and tests know exactly which.
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
	"maps"
	"net"
	"net/http"
	"net/netip"
	"os"
	"slices"
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
	// RespLen is the response body's length in bytes, and Chunked says
	// that it was sent chunked (?chunked=1).
	RespLen int64 `json:"resp_len"`
	Chunked bool  `json:"chunked,omitempty"`
	// Changed lists what Options.Differ changed in the answer, in Change
	// order ("status", "header", "length", "body", "slow", "pause");
	// Delay is how late a "slow" answer was, Pause how long a "pause"
	// stopped it.
	Changed []string      `json:"changed,omitempty"`
	Delay   time.Duration `json:"delay,omitempty"`
	Pause   time.Duration `json:"pause,omitempty"`
	// Proto is the request's protocol version ("HTTP/1.1"), ForwardedFor
	// its X-Forwarded-For header as received (behind a reverse proxy: the
	// addresses the proxy added), and HeadSHA256 a hex SHA-256 of its
	// head (HeadDigest): the same at two servers that got the same
	// request bytes.
	Proto        string `json:"proto,omitempty"`
	ForwardedFor string `json:"forwarded_for,omitempty"`
	HeadSHA256   string `json:"head_sha256,omitempty"`
}

// Options configures a Recorder. Zero values mean the defaults.
type Options struct {
	MaxBody  int64 // larger bodies are answered 413 (read up to MaxBody+1); DefaultMaxBody
	MaxResp  int64 // largest ?resp=N honoured; DefaultMaxResp
	RespSize int64 // response body size without ?resp=; DefaultRespSize
	// Differ changes the answers to some requests (the lab's target):
	// their status, a header, the body's length or one of its bytes, or
	// their timing. Only 200 answers are changed.
	Differ Differ
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
// exceeds MaxBody, 400 when it cannot be read. With ?chunked=1 the body is
// sent chunked (HTTP/1.1 requests), else with Content-Length. Options.Differ
// may change the answer.
func (r *Recorder) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	e := Entry{
		ID:            req.Header.Get(IDHeader),
		Method:        req.Method,
		Path:          req.URL.RequestURI(),
		ContentLength: req.ContentLength,
		Time:          time.Now(),
		Remote:        req.RemoteAddr,
		Status:        http.StatusOK,
		Proto:         req.Proto,
		ForwardedFor:  strings.Join(req.Header.Values("X-Forwarded-For"), ", "),
		HeadSHA256:    HeadDigest(req),
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

	q := req.URL.Query()
	size := r.opts.RespSize
	if s := q.Get("resp"); s != "" {
		if v, err := strconv.ParseInt(s, 10, 64); err == nil && v >= 0 {
			size = min(v, r.opts.MaxResp)
		}
	}
	chunked := q.Get("chunked") == "1" && req.ProtoAtLeast(1, 1) && req.Method != http.MethodHead
	var ch Answer
	if seq, ok := Seq(e.ID); ok && e.Status == http.StatusOK && len(r.opts.Differ) > 0 {
		ch = r.opts.Differ.For(seq, size)
	}
	flip := int64(-1) // the body byte ChangeBody changes
	if ch.Body {
		flip = size / 2
	}
	pauseAt := size / 2 // where ChangePause stops the body
	if ch.Pause > 0 && chunked {
		// A chunk ends where a write of pattern does: pause at one of
		// those, so that the framing stays that of an answer without
		// pause; a body of one chunk cannot pause.
		n := int64(len(pattern))
		if pauseAt = max(pauseAt-pauseAt%n, n); pauseAt >= size {
			ch.Pause = 0
			ch.Changed = slices.DeleteFunc(ch.Changed, func(c string) bool { return c == ChangePause.String() })
		}
	}
	if ch.Longer {
		size++
	}
	if e.Status == http.StatusOK {
		e.RespLen, e.Chunked = size, chunked
		if ch.Status != 0 {
			e.Status = ch.Status
		}
		e.Changed, e.Delay, e.Pause = ch.Changed, ch.Delay, ch.Pause
	}
	r.record(e)

	hdr := w.Header()
	hdr.Set("Content-Type", "text/plain")
	hdr.Set(BodyLenHeader, strconv.FormatInt(e.BodyLen, 10))
	hdr.Set(BodySHA256Header, e.BodySHA256)
	if e.ID != "" {
		hdr.Set(IDHeader, e.ID)
	}
	if e.Err != "" {
		hdr.Set("Connection", "close")
		w.WriteHeader(e.Status)
		io.WriteString(w, e.Err+"\n")
		return
	}
	if ch.Header {
		hdr.Set("Content-Type", ChangedContentType)
	}
	if ch.Delay > 0 {
		t := time.NewTimer(ch.Delay)
		select {
		case <-t.C:
		case <-req.Context().Done():
			t.Stop()
			return
		}
	}
	if n := r.opts.CloseEvery; n > 0 && r.seen.Add(1)%n == 0 {
		hdr.Set("Connection", "close") // net/http closes after this response
	}
	if !chunked {
		hdr.Set("Content-Length", strconv.FormatInt(size, 10))
	}
	w.WriteHeader(e.Status)
	if req.Method == http.MethodHead {
		return
	}
	if chunked {
		// The head goes out now, without a length: net/http sends the
		// body chunked, a chunk per write of pattern below (each larger
		// than its buffer), the last one at the end.
		if err := http.NewResponseController(w).Flush(); err != nil {
			return
		}
	}
	if ch.Pause <= 0 {
		writeBody(w, 0, size, flip)
		return
	}
	// The first half, out on the wire, then the pause, then the rest.
	if !writeBody(w, 0, pauseAt, flip) || http.NewResponseController(w).Flush() != nil {
		return
	}
	t := time.NewTimer(ch.Pause)
	select {
	case <-t.C:
	case <-req.Context().Done():
		t.Stop()
		return
	}
	writeBody(w, pauseAt, size, flip)
}

// writeBody writes the bytes from to end of a body whose byte at offset o
// is pattern[o % len(pattern)], the byte at flip (if in range) changed, in
// writes that end at multiples of len(pattern); false if a write failed.
func writeBody(w io.Writer, from, end, flip int64) bool {
	var scratch []byte
	for off := from; off < end; {
		at := off % int64(len(pattern))
		k := min(end-off, int64(len(pattern))-at)
		b := pattern[at : at+k]
		if flip >= off && flip < off+k {
			scratch = append(scratch[:0], b...)
			i := flip - off
			scratch[i] = changedByte(scratch[i])
			b = scratch
		}
		if _, err := w.Write(b); err != nil {
			return false
		}
		off += k
	}
	return true
}

// changedByte is another printable byte than c (pattern has no capitals).
func changedByte(c byte) byte {
	if c == 'X' {
		return 'Y'
	}
	return 'X'
}

// HeadDigest is a hex SHA-256 of req's head as net/http parsed it: the
// request line (method, target, version), Host, and every header field in
// name order, each name's values in the order received. Two requests made
// of the same bytes have the same digest; a header added, dropped or
// changed on the way changes it. (net/http canonicalizes names and keeps
// no raw bytes, so a change of case or spacing only is not seen.)
func HeadDigest(req *http.Request) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s %s %s\nHost: %s\n", req.Method, req.RequestURI, req.Proto, req.Host)
	for _, name := range slices.Sorted(maps.Keys(req.Header)) {
		for _, v := range req.Header[name] {
			fmt.Fprintf(h, "%s: %s\n", name, v)
		}
	}
	return hex.EncodeToString(h.Sum(nil))
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
