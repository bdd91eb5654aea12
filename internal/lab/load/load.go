// Package load is the lab's HTTP load client: a bounded, paced mix of GET
// and POST requests over keep-alive connections (several requests each),
// short connections (one request each, "Connection: close"), or both.
//
// Every request carries a unique X-Lab-Id header (recorder.IDHeader) and a
// body whose size is drawn from a distribution and whose content comes from
// a seeded generator, so the online and target recorders can be matched
// request by request. A run always ends by itself: when Duration has passed
// or MaxRequests have been issued, whichever comes first, or when ctx ends.
// Requests in flight then finish within Timeout.
//
// Pacing is open-loop up to Concurrency requests in flight: when every
// worker is busy the dispatcher waits instead of queueing, so an overloaded
// lab slows the load down rather than building a backlog (pitfalls.md,
// "Overload is a slow loop").
//
// The request plan (method, body size, body content for each sequence
// number) depends only on Seed; which connection carries which request
// depends on scheduling.
//
// RespSize and RespChunked ask the recorder for response bodies of a size,
// with a Content-Length or chunked.
//
// Some options reproduce clients that send differently from Go's defaults:
// DataOnAck puts each request on the handshake's last ACK, ExpectContinue
// sends bodies only after the server's "100 Continue", Pipeline writes
// several requests on a keep-alive connection before reading the first
// answer (net/http never does: those connections speak raw HTTP/1.1), and
// Think pauses between the requests of a keep-alive connection, longer
// than a server's idle timeout if need be.
//
// Every Result has the request's size on the wire (WireLen): the bytes the
// client wrote on its connection for it, request line, headers and body.
//
// An https URL makes the client speak TLS, trusting only the CA
// certificates of Options.CA (the lab's throwaway CA, package labtls),
// over HTTP/1.1, or HTTP/2 where the server agrees (Options.HTTP2); each
// Result says which (Proto).
package load

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/lab/recorder"
)

// Mode says how requests are spread over connections.
type Mode uint8

// Modes.
const (
	KeepAlive Mode = iota // connections carry up to RequestsPerConn requests
	Short                 // one request per connection, "Connection: close"
	Mixed                 // each new connection is keep-alive with probability KeepAliveShare
)

func (m Mode) String() string {
	switch m {
	case KeepAlive:
		return "keepalive"
	case Short:
		return "short"
	case Mixed:
		return "mixed"
	}
	return "Mode(" + strconv.Itoa(int(m)) + ")"
}

// ParseMode parses "keepalive", "short" or "mixed".
func ParseMode(s string) (Mode, error) {
	for _, m := range []Mode{KeepAlive, Short, Mixed} {
		if s == m.String() {
			return m, nil
		}
	}
	return 0, fmt.Errorf("load: unknown mode %q (want keepalive, short or mixed)", s)
}

// Defaults for Options.
const (
	DefaultDuration        = 10 * time.Second
	DefaultMaxRequests     = 1000
	DefaultConcurrency     = 4
	DefaultTimeout         = 5 * time.Second
	DefaultRequestsPerConn = 10
	DefaultKeepAliveShare  = 0.5
)

// DefaultMethods is the default method mix: half GET, half POST.
var DefaultMethods = []string{http.MethodGet, http.MethodPost}

// DefaultBodySizes is the default body size distribution for methods with
// a body, drawn uniformly: mostly small, up to one 1 MiB body in ten.
var DefaultBodySizes = []int{0, 64, 512, 1460, 1461, 4096, 16384, 65536, 200000, 1 << 20}

// Options configures Run. Zero values mean the defaults.
type Options struct {
	// URL is the base URL, e.g. "http://192.0.2.1:80"; request i goes to
	// URL + "/lab/<id>".
	URL string
	// Rate is the request rate over all workers, per second; 0 means as fast
	// as Concurrency allows.
	Rate float64
	// Duration bounds the time during which requests are issued;
	// DefaultDuration.
	Duration time.Duration
	// MaxRequests bounds the number of requests; DefaultMaxRequests.
	MaxRequests int
	// Mode spreads requests over connections.
	Mode Mode
	// KeepAliveShare is, in Mixed mode, the probability that a new
	// connection is keep-alive; DefaultKeepAliveShare.
	KeepAliveShare float64
	// RequestsPerConn is how many requests a keep-alive connection carries
	// before the client closes it; DefaultRequestsPerConn.
	RequestsPerConn int
	// Methods are drawn uniformly per request (repeat one to weight it);
	// DefaultMethods. POST, PUT and PATCH carry a body.
	Methods []string
	// BodySizes are drawn uniformly for requests with a body;
	// DefaultBodySizes.
	BodySizes []int
	// RespSize asks the recorder for a response body of this many bytes
	// (?resp=N); 0 leaves the server's default.
	RespSize int
	// RespChunked is the share of requests, 0..1, that ask the recorder
	// for a chunked response body (?chunked=1) instead of one with a
	// Content-Length; drawn from the plan (Seed) when below 1.
	RespChunked float64
	// Seed makes the request plan reproducible; 1 when zero.
	Seed uint64
	// Concurrency is the number of workers, each with at most one request
	// in flight and one connection open; DefaultConcurrency.
	Concurrency int
	// Timeout bounds each request, body included; DefaultTimeout.
	Timeout time.Duration
	// IDPrefix starts every X-Lab-Id ("<prefix>-<seq>"); a random 6-hex
	// prefix when empty, so that runs do not share ids.
	IDPrefix string
	// LocalAddrs are source addresses, used round-robin per new connection
	// (many-client tests); empty lets the kernel choose.
	LocalAddrs []netip.Addr
	// ReusePorts sends every connection of worker n from source port
	// ReusePortBase + n, taken again as soon as the previous connection has
	// closed, as clients behind a NAT or with a small port range do: the
	// next connection often starts before tcpcopy finished copying the
	// previous one.
	ReusePorts bool
	// DataOnAck makes the client send each request on the ACK that
	// completes the handshake, with no pure ACK before it, as some clients
	// do: the socket gets TCP_DEFER_ACCEPT before connect (Linux only),
	// which makes the kernel hold that ACK back until the request is
	// written (up to the 200 ms delayed-ACK timeout, far longer than the
	// client takes to write).
	DataOnAck bool
	// ExpectContinue sends "Expect: 100-continue" with every request that
	// has a body: the client sends the header, waits for the server's
	// interim "100 Continue" (at most ExpectContinueTimeout), then the
	// body. Result.Continued tells whether the interim response came.
	ExpectContinue bool
	// Pipeline, when above 1, makes keep-alive connections pipeline
	// (RFC 9112, section 9.3.2): a worker takes up to Pipeline requests
	// (no more than its connection has left), writes them all, then reads
	// the answers in order. Timeout bounds the whole batch. The answers
	// come in order from any HTTP/1.1 server; a server that closes the
	// connection after one of them (Connection: close) leaves the rest
	// failed. Not with Short connections nor with ExpectContinue.
	Pipeline int
	// Think is a pause before each request (or pipelined batch) of a
	// keep-alive connection after its first: the client keeps the
	// connection open and idle that long, as people between clicks do. A
	// pause longer than the target's keep-alive timeout makes the target
	// close connections the online server keeps. Not with Short
	// connections.
	Think time.Duration
	// CA is a PEM file with the CA certificates an https server must be
	// signed by, the only ones trusted: neither the system's roots nor
	// InsecureSkipVerify. Empty: the system's roots. Not with http URLs.
	CA string
	// HTTP2 offers HTTP/2 (ALPN "h2") beside HTTP/1.1 on https
	// connections; without it the client speaks HTTP/1.1 only. A
	// keep-alive connection then carries its requests one after the
	// other, as with HTTP/1.1. Not with http URLs nor Pipeline.
	HTTP2 bool
	// Log, when set, receives every Result as a JSON line as it completes.
	// Writes are serialized.
	Log io.Writer
}

// ExpectContinueTimeout is how long a request with Options.ExpectContinue
// waits for "100 Continue" before sending its body anyway (net/http
// Transport.ExpectContinueTimeout).
const ExpectContinueTimeout = time.Second

// Result is the outcome of one request.
type Result struct {
	Seq        int           `json:"seq"`
	ID         string        `json:"id"`
	Method     string        `json:"method"`
	BodyLen    int           `json:"body_len"`
	BodySHA256 string        `json:"body_sha256"` // hex
	KeepAlive  bool          `json:"keepalive"`   // sent on a keep-alive connection
	Local      string        `json:"local,omitempty"`
	Reused     bool          `json:"reused"`              // the connection had carried an earlier request
	Continued  bool          `json:"continued,omitempty"` // got "100 Continue" (Options.ExpectContinue)
	Status     int           `json:"status"`              // 0 when no response
	RespLen    int64         `json:"resp_len"`
	Start      time.Time     `json:"start"`
	Latency    time.Duration `json:"latency"` // until the response body was read
	Err        string        `json:"err,omitempty"`

	// RespChunked: the response body came chunked.
	RespChunked bool `json:"resp_chunked,omitempty"`
	// WireLen is the bytes written on the connection for this request:
	// request line, headers and body (0 when none was written, and over
	// TLS, where the bytes on the wire are not the request's).
	WireLen int64 `json:"wire_len"`
	// Proto is the protocol the answer came in, "HTTP/1.1" or
	// "HTTP/2.0"; empty without an answer.
	Proto string `json:"proto,omitempty"`
}

// OK reports whether the request got a 2xx response and its whole body.
func (r Result) OK() bool { return r.Err == "" && r.Status >= 200 && r.Status < 300 }

func (o *Options) setDefaults() error {
	if o.URL == "" {
		return errors.New("load: no URL")
	}
	u, err := url.Parse(o.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("load: bad URL %q", o.URL)
	}
	o.URL = strings.TrimSuffix(o.URL, "/")
	if o.Rate < 0 {
		return fmt.Errorf("load: negative rate %v", o.Rate)
	}
	if o.Duration <= 0 {
		o.Duration = DefaultDuration
	}
	if o.MaxRequests <= 0 {
		o.MaxRequests = DefaultMaxRequests
	}
	if o.Mode > Mixed {
		return fmt.Errorf("load: bad mode %v", o.Mode)
	}
	if o.KeepAliveShare <= 0 {
		o.KeepAliveShare = DefaultKeepAliveShare
	}
	if o.RequestsPerConn <= 0 {
		o.RequestsPerConn = DefaultRequestsPerConn
	}
	if len(o.Methods) == 0 {
		o.Methods = DefaultMethods
	}
	if len(o.BodySizes) == 0 {
		o.BodySizes = DefaultBodySizes
	}
	for _, s := range o.BodySizes {
		if s < 0 {
			return fmt.Errorf("load: negative body size %d", s)
		}
	}
	if !(o.RespChunked >= 0 && o.RespChunked <= 1) {
		return fmt.Errorf("load: chunked response share %v not in 0..1", o.RespChunked)
	}
	if o.Seed == 0 {
		o.Seed = 1
	}
	if o.Concurrency <= 0 {
		o.Concurrency = DefaultConcurrency
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.IDPrefix == "" {
		var b [3]byte
		rand.Read(b[:])
		o.IDPrefix = hex.EncodeToString(b[:])
	}
	if o.Pipeline > 1 && u.Scheme != "http" {
		return errors.New("load: pipelining speaks plain HTTP/1.1 only")
	}
	if u.Scheme != "https" && (o.CA != "" || o.HTTP2) {
		return errors.New("load: a CA and HTTP/2 need an https URL")
	}
	return o.ValidateKeepAlive()
}

// ValidateKeepAlive checks the options that only keep-alive connections
// take, Pipeline and Think, against Mode and ExpectContinue.
func (o Options) ValidateKeepAlive() error {
	switch {
	case o.Pipeline < 0:
		return fmt.Errorf("load: negative pipeline depth %d", o.Pipeline)
	case o.Pipeline > 1 && o.Mode == Short:
		return errors.New("load: pipelining needs keep-alive connections, not short ones")
	case o.Pipeline > 1 && o.ExpectContinue:
		return errors.New("load: pipelined requests cannot wait for 100 Continue")
	case o.Think < 0:
		return fmt.Errorf("load: negative think time %v", o.Think)
	case o.Think > 0 && o.Mode == Short:
		return errors.New("load: a think time needs keep-alive connections, not short ones")
	}
	return nil
}

// job is one planned request.
type job struct {
	seq      int
	method   string
	size     int
	bodySeed uint64
	chunked  bool // ask for a chunked response
}

func hasBody(method string) bool {
	return method == http.MethodPost || method == http.MethodPut || method == http.MethodPatch
}

// body returns the deterministic body of j.
func (j job) body() []byte {
	b := make([]byte, j.size)
	r := mrand.NewPCG(j.bodySeed, uint64(j.seq))
	for i := 0; i < len(b); i += 8 {
		var w [8]byte
		binary.LittleEndian.PutUint64(w[:], r.Uint64())
		copy(b[i:], w[:])
	}
	return b
}

type localKey struct{}

// Run issues the load described by opts and returns the results ordered by
// sequence number. It returns an error only for invalid options or when a
// Log write fails; request failures are in the results.
func Run(ctx context.Context, opts Options) ([]Result, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, err
	}
	start := time.Now()
	dctx, cancel := context.WithDeadline(ctx, start.Add(opts.Duration))
	defer cancel()

	tcfg, err := opts.tlsConfig()
	if err != nil {
		return nil, err
	}
	jobs := make(chan job)
	go dispatch(dctx, opts, start, jobs)

	var (
		mu      sync.Mutex
		results []Result
		logErr  error
		nextSrc atomic.Uint64
	)
	var enc *json.Encoder
	if opts.Log != nil {
		enc = json.NewEncoder(opts.Log)
	}
	var wg sync.WaitGroup
	for w := range opts.Concurrency {
		wg.Go(func() {
			wk := newWorker(opts, w, &nextSrc, tcfg)
			defer wk.close()
			for j := range jobs {
				// The run context, not the dispatch deadline: a request
				// issued just before the deadline still gets Timeout.
				rs := wk.run(ctx, j, jobs)
				mu.Lock()
				results = append(results, rs...)
				for _, r := range rs {
					if enc != nil && logErr == nil {
						logErr = enc.Encode(r)
					}
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	slices.SortFunc(results, func(a, b Result) int { return a.Seq - b.Seq })
	if logErr != nil {
		return results, fmt.Errorf("load: log: %w", logErr)
	}
	return results, nil
}

// dispatch plans requests in sequence order and hands them to the workers
// at the configured rate until the deadline, the count or ctx ends it.
func dispatch(ctx context.Context, opts Options, start time.Time, jobs chan<- job) {
	defer close(jobs)
	rng := mrand.New(mrand.NewPCG(opts.Seed, opts.Seed^0x9e3779b97f4a7c15))
	timer := time.NewTimer(0)
	defer timer.Stop()
	for n := range opts.MaxRequests {
		j := job{seq: n, method: opts.Methods[rng.IntN(len(opts.Methods))]}
		size := opts.BodySizes[rng.IntN(len(opts.BodySizes))]
		if hasBody(j.method) {
			j.size = size
		}
		j.bodySeed = rng.Uint64()
		// Drawn only for a share, so that the plans of other runs stay.
		j.chunked = opts.RespChunked >= 1 || opts.RespChunked > 0 && rng.Float64() < opts.RespChunked
		if opts.Rate > 0 {
			due := start.Add(time.Duration(float64(n) / opts.Rate * float64(time.Second)))
			if !due.Before(start.Add(opts.Duration)) {
				return
			}
			if d := time.Until(due); d > 0 {
				timer.Reset(d)
				select {
				case <-ctx.Done():
					return
				case <-timer.C:
				}
			}
		}
		select {
		case <-ctx.Done():
			return
		case jobs <- j:
		}
	}
}

// worker sends requests one at a time over its own keep-alive connection or
// over short connections.
type worker struct {
	opts    Options
	rng     *mrand.Rand
	nextSrc *atomic.Uint64
	ka      *http.Client // keep-alive: at most one connection
	short   *http.Client // DisableKeepAlives
	left    int          // requests left on the current keep-alive connection
	cur     bool         // current connection is keep-alive
	local   netip.Addr   // source address for the next connection

	// Pipelined keep-alive connections (Options.Pipeline) bypass net/http.
	dial func(ctx context.Context, network, addr string) (net.Conn, error)
	raw  net.Conn
	rawR *bufio.Reader
}

// countConn counts the bytes written on a connection, for Result.WireLen.
type countConn struct {
	net.Conn
	written atomic.Int64
}

// Write counts b before writing it, so that the count is complete by the
// time the server can have read b and answered (a count after Write could
// still be missing when the answer has been read), and takes back what
// was not written.
func (c *countConn) Write(b []byte) (int, error) {
	c.written.Add(int64(len(b)))
	n, err := c.Conn.Write(b)
	if n < len(b) {
		c.written.Add(int64(n - len(b)))
	}
	return n, err
}

// ReusePortBase is the source port of worker 0 with Options.ReusePorts.
const ReusePortBase = 40000

// reuseTries bounds the connects of Options.ReusePorts while the port's
// previous connection is still closing (EADDRNOTAVAIL), 1 ms apart.
const reuseTries = 500

// tlsConfig is the client's TLS configuration for an https URL: the CA
// of Options.CA as the only root, TLS 1.2 at least. nil without a CA.
func (o Options) tlsConfig() (*tls.Config, error) {
	if o.CA == "" {
		return nil, nil
	}
	b, err := os.ReadFile(o.CA)
	if err != nil {
		return nil, fmt.Errorf("load: CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("load: CA %s: no PEM certificate", o.CA)
	}
	return &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

func newWorker(opts Options, n int, nextSrc *atomic.Uint64, tcfg *tls.Config) *worker {
	// Socket options set before connect.
	var sockopts []func(fd uintptr) error
	if opts.ReusePorts {
		sockopts = append(sockopts, func(fd uintptr) error {
			return syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1)
		})
	}
	if opts.DataOnAck {
		sockopts = append(sockopts, setDeferAccept)
	}
	control := func(_, _ string, c syscall.RawConn) error {
		var serr error
		err := c.Control(func(fd uintptr) {
			for _, set := range sockopts {
				if serr = set(fd); serr != nil {
					return
				}
			}
		})
		return errors.Join(err, serr)
	}
	dialRaw := func(ctx context.Context, network, addr string) (net.Conn, error) {
		d := net.Dialer{Timeout: opts.Timeout}
		if len(sockopts) > 0 {
			d.Control = control
		}
		a, _ := ctx.Value(localKey{}).(netip.Addr)
		if !opts.ReusePorts {
			if a.IsValid() {
				d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, 0))
			}
			return d.DialContext(ctx, network, addr)
		}
		if !a.IsValid() {
			a = netip.IPv4Unspecified()
			if strings.HasPrefix(addr, "[") {
				a = netip.IPv6Unspecified()
			}
		}
		d.LocalAddr = net.TCPAddrFromAddrPort(netip.AddrPortFrom(a, uint16(ReusePortBase+n)))
		for try := 1; ; try++ {
			c, err := d.DialContext(ctx, network, addr)
			if err == nil || try == reuseTries || !(errors.Is(err, syscall.EADDRNOTAVAIL) || errors.Is(err, syscall.EADDRINUSE)) {
				return c, err
			}
			select {
			case <-ctx.Done():
				return nil, err
			case <-time.After(time.Millisecond):
			}
		}
	}
	// Every connection counts what is written on it (Result.WireLen).
	dial := func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dialRaw(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &countConn{Conn: c}, nil
	}
	kaT := &http.Transport{
		DialContext:         dial,
		MaxIdleConnsPerHost: 1,
		MaxConnsPerHost:     1,
		IdleConnTimeout:     30 * time.Second,
		DisableCompression:  true,
	}
	shortT := &http.Transport{
		DialContext:        dial,
		DisableKeepAlives:  true,
		DisableCompression: true,
	}
	if opts.ExpectContinue {
		kaT.ExpectContinueTimeout = ExpectContinueTimeout
		shortT.ExpectContinueTimeout = ExpectContinueTimeout
	}
	// With our own DialContext net/http offers HTTP/2 only when forced.
	for _, t := range []*http.Transport{kaT, shortT} {
		if tcfg != nil {
			t.TLSClientConfig = tcfg.Clone()
		}
		t.ForceAttemptHTTP2 = opts.HTTP2
	}
	return &worker{
		opts:    opts,
		rng:     mrand.New(mrand.NewPCG(opts.Seed, uint64(n)+1)),
		nextSrc: nextSrc,
		ka:      &http.Client{Transport: kaT},
		short:   &http.Client{Transport: shortT},
		dial:    dial,
	}
}

func (w *worker) close() {
	w.ka.CloseIdleConnections()
	w.short.CloseIdleConnections()
	w.closeRaw()
}

func (w *worker) closeRaw() {
	if w.raw != nil {
		w.raw.Close()
		w.raw, w.rawR = nil, nil
	}
}

// run sends job j, and with Options.Pipeline the jobs after it from more
// that its connection can carry, and returns their results. Before a
// request on a keep-alive connection that already carried one it pauses
// Options.Think.
func (w *worker) run(ctx context.Context, j job, more <-chan job) []Result {
	if w.left == 0 {
		w.newConn()
	}
	if w.cur && w.left < w.opts.RequestsPerConn && w.opts.Think > 0 {
		t := time.NewTimer(w.opts.Think)
		select {
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
	}
	if !w.cur || w.opts.Pipeline < 2 {
		return []Result{w.do(ctx, j)}
	}
	batch := []job{j}
	for len(batch) < min(w.opts.Pipeline, w.left) {
		nj, ok := <-more
		if !ok {
			break
		}
		batch = append(batch, nj)
	}
	return w.pipeline(ctx, batch)
}

// newConn decides what the next connection is.
func (w *worker) newConn() {
	w.ka.CloseIdleConnections()
	w.closeRaw()
	switch w.opts.Mode {
	case KeepAlive:
		w.cur = true
	case Short:
		w.cur = false
	default:
		w.cur = w.rng.Float64() < w.opts.KeepAliveShare
	}
	w.left = 1
	if w.cur {
		w.left = w.opts.RequestsPerConn
	}
	if n := len(w.opts.LocalAddrs); n > 0 {
		w.local = w.opts.LocalAddrs[(w.nextSrc.Add(1)-1)%uint64(n)]
	}
}

func (w *worker) do(ctx context.Context, j job) (r Result) {
	if w.left == 0 {
		w.newConn()
	}
	body := j.body()
	sum := sha256.Sum256(body)
	id := w.opts.IDPrefix + "-" + strconv.Itoa(j.seq)
	r = Result{
		Seq: j.seq, ID: id, Method: j.method, BodyLen: len(body),
		BodySHA256: hex.EncodeToString(sum[:]), KeepAlive: w.cur, Start: time.Now(),
	}
	defer func() {
		r.Latency = time.Since(r.Start)
		w.left--
		if w.left == 0 && w.cur {
			// Close the finished keep-alive connection now (client FIN),
			// rather than leaving it idle until the next one is opened.
			w.ka.CloseIdleConnections()
		}
	}()

	ctx, cancel := context.WithTimeout(ctx, w.opts.Timeout)
	defer cancel()
	if w.local.IsValid() {
		ctx = context.WithValue(ctx, localKey{}, w.local)
	}
	var (
		conn    *countConn
		written int64
	)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			r.Local = info.Conn.LocalAddr().String()
			r.Reused = info.Reused
			if cc, ok := info.Conn.(*countConn); ok {
				conn, written = cc, cc.written.Load()
			}
		},
		Got100Continue: func() { r.Continued = true },
	})
	// One request at a time on a connection, and the server answers once
	// it has read the whole request: what was written on the connection
	// from GotConn to the answer is this request. (net/http calls
	// WroteRequest before it flushes its buffer.)
	defer func() {
		if conn != nil {
			r.WireLen = conn.written.Load() - written
		}
	}()
	u := w.opts.URL + "/lab/" + id
	var query []string
	if w.opts.RespSize > 0 {
		query = append(query, "resp="+strconv.Itoa(w.opts.RespSize))
	}
	if j.chunked {
		query = append(query, "chunked=1")
	}
	if len(query) > 0 {
		u += "?" + strings.Join(query, "&")
	}
	var rd io.Reader
	if hasBody(j.method) {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, j.method, u, rd)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	req.Header.Set(recorder.IDHeader, id)
	if w.opts.ExpectContinue && len(body) > 0 {
		req.Header.Set("Expect", "100-continue")
	}
	c := w.ka
	if !w.cur {
		req.Close = true // "Connection: close"
		c = w.short
	}
	resp, err := c.Do(req)
	if err != nil {
		r.Err = err.Error()
		return r
	}
	defer resp.Body.Close()
	r.Status = resp.StatusCode
	r.Proto = resp.Proto
	r.RespChunked = slices.Contains(resp.TransferEncoding, "chunked")
	r.RespLen, err = io.Copy(io.Discard, resp.Body)
	if err != nil {
		r.Err = err.Error()
	}
	return r
}

// pipeline sends batch on the worker's keep-alive connection, all
// requests written before the first answer is read (Options.Pipeline), in
// raw HTTP/1.1, and reads the answers in order.
func (w *worker) pipeline(ctx context.Context, batch []job) []Result {
	rs := make([]Result, len(batch))
	reqs := make([][]byte, len(batch))
	var host string
	if u, err := url.Parse(w.opts.URL); err == nil {
		host = u.Host
	}
	start := time.Now()
	for i, j := range batch {
		body := j.body()
		sum := sha256.Sum256(body)
		id := w.opts.IDPrefix + "-" + strconv.Itoa(j.seq)
		rs[i] = Result{Seq: j.seq, ID: id, Method: j.method, BodyLen: len(body),
			BodySHA256: hex.EncodeToString(sum[:]), KeepAlive: true, Start: start}
		target := "/lab/" + id
		if w.opts.RespSize > 0 {
			target += "?resp=" + strconv.Itoa(w.opts.RespSize)
		}
		var b bytes.Buffer
		fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: tcpcopy-lab-pipeline\r\n%s: %s\r\n", j.method, target, host, recorder.IDHeader, id)
		if hasBody(j.method) {
			fmt.Fprintf(&b, "Content-Length: %d\r\n", len(body))
		}
		b.WriteString("\r\n")
		b.Write(body)
		reqs[i] = b.Bytes()
		rs[i].WireLen = int64(b.Len())
	}
	fail := func(from int, err error) []Result {
		for i := from; i < len(rs); i++ {
			rs[i].Err = err.Error()
			rs[i].Latency = time.Since(start)
		}
		w.closeRaw()
		w.left = 0
		return rs
	}
	ctx, cancel := context.WithTimeout(ctx, w.opts.Timeout)
	defer cancel()
	reused := w.raw != nil
	if !reused {
		if w.local.IsValid() {
			ctx = context.WithValue(ctx, localKey{}, w.local)
		}
		c, err := w.dial(ctx, "tcp", host)
		if err != nil {
			for i := range rs {
				rs[i].WireLen = 0
			}
			return fail(0, err)
		}
		w.raw, w.rawR = c, bufio.NewReader(c)
	}
	c := w.raw
	deadline, _ := ctx.Deadline()
	c.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { c.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	for i := range rs {
		rs[i].Local = c.LocalAddr().String()
		rs[i].Reused = reused || i > 0
	}
	// Written from a goroutine while the answers are read, so that a big
	// answer cannot block the server while it waits for us to read.
	wrote := make(chan error, 1)
	go func() {
		var err error
		for _, b := range reqs {
			if _, err = c.Write(b); err != nil {
				break
			}
		}
		wrote <- err
	}()
	for i, j := range batch {
		req := &http.Request{Method: j.method}
		resp, err := http.ReadResponse(w.rawR, req)
		if err != nil {
			<-wrote
			return fail(i, err)
		}
		rs[i].Status = resp.StatusCode
		rs[i].Proto = resp.Proto
		rs[i].RespLen, err = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		rs[i].Latency = time.Since(start)
		if err != nil {
			<-wrote
			return fail(i, err)
		}
		if resp.Close && i < len(batch)-1 {
			<-wrote
			return fail(i+1, errors.New("load: the server closed the connection in the middle of a pipelined batch"))
		}
		if resp.Close {
			w.closeRaw()
			w.left = len(batch) // the connection ends with this batch
		}
	}
	if err := <-wrote; err != nil {
		return fail(len(batch), err)
	}
	w.left -= len(batch)
	if w.left <= 0 {
		w.left = 0
		w.closeRaw() // client FIN now, as do does
	}
	return rs
}

// ReadResults reads a JSON-lines result log written through Options.Log.
func ReadResults(path string) ([]Result, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var rs []Result
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		if len(sc.Bytes()) == 0 {
			continue
		}
		var r Result
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			return rs, fmt.Errorf("load: %s: %w", path, err)
		}
		rs = append(rs, r)
	}
	slices.SortFunc(rs, func(a, b Result) int { return a.Seq - b.Seq })
	return rs, sc.Err()
}

// Stats summarizes results.
type Stats struct {
	Requests    int           `json:"requests"`
	OK          int           `json:"ok"`
	Failed      int           `json:"failed"`
	KeepAlive   int           `json:"keepalive"`       // requests sent on keep-alive connections
	HTTP2       int           `json:"http2,omitempty"` // requests answered over HTTP/2
	Connections int           `json:"connections"`     // distinct connections (by local address, not reused)
	Elapsed     time.Duration `json:"elapsed"`         // first start to last completion
	P50         time.Duration `json:"p50"`
	P99         time.Duration `json:"p99"`
	Max         time.Duration `json:"max"`
	FirstErr    string        `json:"first_err,omitempty"`
}

// Summarize computes Stats over results.
func Summarize(results []Result) Stats {
	s := Stats{Requests: len(results)}
	if len(results) == 0 {
		return s
	}
	lat := make([]time.Duration, 0, len(results))
	first, last := results[0].Start, results[0].Start
	for _, r := range results {
		if r.OK() {
			s.OK++
		} else {
			s.Failed++
			if s.FirstErr == "" {
				s.FirstErr = r.Err
				if s.FirstErr == "" {
					s.FirstErr = "status " + strconv.Itoa(r.Status)
				}
			}
		}
		if r.KeepAlive {
			s.KeepAlive++
		}
		if r.Proto == "HTTP/2.0" {
			s.HTTP2++
		}
		if r.Local != "" && !r.Reused {
			s.Connections++
		}
		lat = append(lat, r.Latency)
		if r.Start.Before(first) {
			first = r.Start
		}
		if end := r.Start.Add(r.Latency); end.After(last) {
			last = end
		}
	}
	slices.Sort(lat)
	s.Elapsed = last.Sub(first)
	s.P50 = lat[len(lat)*50/100]
	s.P99 = lat[min(len(lat)-1, len(lat)*99/100)]
	s.Max = lat[len(lat)-1]
	return s
}
