package tcpcopy

// links.go is tcpcopy's side of the control channel to intercept
// (docs/protocol.md, pkg/wire): it keeps ConnsPerServer TCP connections
// ("links") to every intercept, negotiates the wire version on each,
// announces routes (which replayed client connections are ours) and hands
// the response records intercept sends back to the caller.
//
// Per connection there are two goroutines: a reader, which runs the
// handshake and then decodes records and hands them to its Sink, and a writer,
// which sends the route messages Route appended to the connection's bounded
// buffer. A connection that fails for any reason (refused connect, missing
// or broken Hello, malformed record stream, stuck writes, EOF) is closed
// and dialled again with exponential backoff; the process never stops
// because of one link.
//
// Where we differ from C TCPCopy (manager.c, message_module.c; see
// /work/shared/reference/tcpcopy-c.md §2.1, §3.13):
//   - C exits if any intercept is unreachable at start, even with -L; we
//     keep dialling and give up only when no link at all has been up for
//     GiveUpAfter (never with -L).
//   - C exits as soon as no intercept is left at run time, or with -L
//     reconnects every 12 s; we reconnect every failed connection after
//     100 ms doubling to 5 s (with jitter), and give up as above.
//   - C sends a route only to the connections up at that moment. Routes
//     are owned by the connection that carried them, so a reconnect loses
//     them; we keep the set of routes in use and announce it again on every
//     connection that comes up, and on a sibling connection of the same
//     intercept when one goes down.
//   - C's "inactive server" bookkeeping indexes the wrong server with
//     several -s (message_module.c:107-108); we track every connection.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/logging"
	"github.com/tcpcopy-go/tcpcopy/internal/rawio"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// Link tuning. The defaults of LinkConfig are next to its fields.
const (
	// linkMaxOut bounds the route bytes waiting in one connection's write
	// buffer (about 75 000 version-6 messages); past it route messages are
	// dropped and counted. Re-announcements do not count against it.
	linkMaxOut = 1 << 20
	// linkWriteTimeout is how long one write may block before the
	// connection is declared stuck and closed (C SO_SNDTIMEO is 3 s, then
	// it exits).
	linkWriteTimeout = 5 * time.Second
	// linkBackoffMin and linkBackoffMax bound the reconnect delay, which
	// doubles after every failure.
	linkBackoffMin = 100 * time.Millisecond
	linkBackoffMax = 5 * time.Second
	// linkStable is how long a connection must have been up for the
	// reconnect delay to start again at linkBackoffMin.
	linkStable = 5 * time.Second
	// linkLogEvery limits the warnings about one intercept that cannot be
	// reached, and about dropped routes.
	linkLogEvery = 10 * time.Second

	// linkMaxHelloGrowth bounds how far a connection slot stretches its
	// wait for a Hello after a Hello arrived late: HelloWait times this.
	linkMaxHelloGrowth = 16

	defaultHelloWait   = time.Second
	defaultGiveUpAfter = 30 * time.Second
	defaultDialTimeout = 3 * time.Second
	defaultConnsPerSrv = 2
)

// LinkConfig configures the links to intercept. The zero value of a
// duration or count means its default.
type LinkConfig struct {
	// Servers are the intercepts to connect to (-s); at least one.
	Servers []netip.AddrPort
	// ConnsPerServer is the number of connections to each intercept (-C);
	// default 2.
	ConnsPerServer int
	// WireVersion selects the protocol: 0 offers version 7 and falls back
	// to version 6 with Fallback when intercept sends no Hello (a C
	// intercept); 6 sends C's plain handshake and never waits for a Hello;
	// 7 requires version 7: a connection whose intercept does not answer
	// with a version-7 Hello fails (logged, retried).
	WireVersion int
	// Fallback is the version-6 format of a C intercept, which C fixes at
	// build time: {Version: 6, Combined: !--no-combined, Payload:
	// --resp-payload}. The zero value means C's default, combined 64-byte
	// records. A version-6 Hello from our intercept overrides it.
	Fallback wire.Format
	// PrefixLen is the number of payload bytes wanted in each version-7
	// record (sent in a config message after the Hello); 0 asks for none.
	PrefixLen int
	// Compare is the response comparison window wanted (--compare-bytes,
	// sent in the config message); 0 asks for none. Intercepts that cannot
	// compare (version 6, or a window of 0 in their Hello) are logged once.
	Compare int
	// HelloWait bounds the wait for a Hello after a version-7 offer;
	// default 1 s. With a C intercept every connect costs this long. A
	// connection whose Hello arrives after the wait ended fails (its
	// version-6 routes would break a version-7 intercept); the slot then
	// doubles its wait, up to 16 times HelloWait, and dials again.
	HelloWait time.Duration
	// Lonely (-L) keeps Run going while no link is up, forever.
	Lonely bool
	// GiveUpAfter: without Lonely, Run fails when no link has been up for
	// this long, at start or later; default 30 s (C exits at once, but a
	// brief intercept restart must not stop us).
	GiveUpAfter time.Duration
	// DialTimeout bounds one connect; default 3 s.
	DialTimeout time.Duration
	// Secret, when not nil, is the secret shared with intercept
	// (--secret-file): every connection must authenticate with version 7
	// (docs/protocol.md §4.5), and an intercept that cannot (no Hello, a
	// version-6 Hello, no auth flag, a wrong proof) fails the connection.
	// WireVersion 6 cannot be combined with it. Never log it.
	Secret []byte
}

// withDefaults returns c with zero values replaced by defaults. It panics
// on values that only a programmer error can produce (Config.Validate has
// checked the command line).
func (c LinkConfig) withDefaults() LinkConfig {
	if c.ConnsPerServer <= 0 {
		c.ConnsPerServer = defaultConnsPerSrv
	}
	if c.HelloWait <= 0 {
		c.HelloWait = defaultHelloWait
	}
	if c.GiveUpAfter <= 0 {
		c.GiveUpAfter = defaultGiveUpAfter
	}
	if c.DialTimeout <= 0 {
		c.DialTimeout = defaultDialTimeout
	}
	if c.Fallback.Version == 0 {
		c.Fallback = wire.Format{Version: wire.Version6, Combined: true}
	}
	if c.Fallback.Version != wire.Version6 {
		panic("tcpcopy: LinkConfig.Fallback must be a version-6 format")
	}
	switch c.WireVersion {
	case 0, wire.Version6, wire.Version7:
	default:
		panic(fmt.Sprintf("tcpcopy: LinkConfig.WireVersion %d is not 0, 6 or 7", c.WireVersion))
	}
	if c.Secret != nil && c.WireVersion == wire.Version6 {
		panic("tcpcopy: LinkConfig.Secret needs version 7")
	}
	c.PrefixLen = min(max(c.PrefixLen, 0), wire.MaxPrefixLen)
	c.Compare = min(max(c.Compare, 0), wire.MaxPrefixLen)
	return c
}

// LinkStats is a snapshot of the links' counters, cumulative since
// NewLinks.
type LinkStats struct {
	// Connects counts connections that completed the handshake;
	// Disconnects counts such connections lost; Failures counts connects
	// or handshakes that failed.
	Connects, Disconnects, Failures uint64
	// Records counts records delivered; Skipped counts records intercept
	// sent that were well framed but malformed (wire Skipped), not
	// delivered.
	Records, Skipped uint64
	// RoutesSent counts route messages queued on a connection by Route
	// (one per intercept that took it); Reannounced counts those queued by
	// re-announcements after a connection came up or went down.
	RoutesSent, Reannounced uint64
	// RoutesDropped counts route adds an intercept did not get: none of
	// its connections up, or their write buffers full. RoutesUnfit counts
	// IPv6 route adds an intercept did not get because its connections
	// speak version 6, and UDP route adds one did not get because it does
	// not route UDP answers.
	RoutesDropped, RoutesUnfit uint64
	// BytesIn and BytesOut count bytes read from and written to intercept.
	BytesIn, BytesOut uint64
	// Up is the number of connections up now.
	Up int
	// Servers has one entry per intercept, in LinkConfig.Servers order.
	Servers []ServerLinkStats
}

// ServerLinkStats describes the links to one intercept.
type ServerLinkStats struct {
	Addr netip.AddrPort
	// Up is the number of its connections up now.
	Up int
	// Format is the format negotiated on the connection that came up
	// last; Format.Version is 0 if none ever came up.
	Format wire.Format
}

// linkCounters are updated atomically.
type linkCounters struct {
	connects, disconnects, failures atomic.Uint64
	records, skipped                atomic.Uint64
	routesSent, reannounced         atomic.Uint64
	routesDropped, routesUnfit      atomic.Uint64
	bytesIn, bytesOut               atomic.Uint64
}

// routeKey identifies a route in the announced set: normalised addresses
// (4in6 unmapped, no zone) of one family, and the protocol (a UDP flow's
// route is apart from a TCP connection's).
type routeKey struct {
	client, target netip.AddrPort
	udp            bool
}

// makeRouteKey normalises r as wire.AppendRoute does and reports whether
// it is encodable (wire.Route.Routable once normalised).
func makeRouteKey(r wire.Route) (routeKey, bool) {
	c := netip.AddrPortFrom(r.Client.Addr().Unmap().WithZone(""), r.Client.Port())
	t := netip.AddrPortFrom(r.Target.Addr().Unmap().WithZone(""), r.Target.Port())
	ok := wire.Route{Client: c, Target: t, Op: r.Op}.Routable()
	return routeKey{c, t, r.UDP}, ok
}

// Links keeps the control connections to every intercept. Make it with
// NewLinks, start it with Run; Route, Up and Stats are safe for concurrent
// use from any goroutine, before, during and after Run.
type Links struct {
	cfg     LinkConfig
	log     *slog.Logger
	newSink func() Sink
	servers []*linkServer

	// routeMu guards routes. Lock order: routeMu, then a linkConn's mu.
	routeMu sync.Mutex
	routes  map[routeKey]struct{}

	stateMu   sync.Mutex
	upN       int       // connections up
	downSince time.Time // when upN last became 0 (or Run started)
	lastErr   error     // the last connection error, for Run's error
	up        atomic.Int32
	comparing atomic.Int32  // connections up that compare responses
	changed   chan struct{} // capacity 1: upN changed

	c linkCounters

	running   atomic.Bool
	closeOnce sync.Once
	closed    chan struct{}

	warnRoutes *logging.Limiter

	// Knobs that tests turn; set by NewLinks.
	dial         func(ctx context.Context, addr string) (net.Conn, error)
	maxOut       int
	writeTimeout time.Duration
}

// linkServer is one intercept and its connection slots.
type linkServer struct {
	addr  netip.AddrPort
	conns []*linkConn
	next  atomic.Uint32 // round robin over conns
	up    atomic.Int32  // connections up
	// noCompareLogged: the warning that this intercept cannot compare
	// was logged.
	noCompareLogged atomic.Bool
	format          atomic.Pointer[wire.Format] // of the connection that came up last
	warn            *logging.Limiter            // connect failures
}

// linkConn is one connection slot of a server: one connection at a time,
// redialled by its goroutine when it fails.
type linkConn struct {
	srv    *linkServer
	idx    int
	upHint atomic.Bool // mirrors up, read without mu to skip down slots

	mu     sync.Mutex
	up     bool        // handshake done, writer running
	format wire.Format // negotiated, valid while up
	out    []byte      // route messages not yet taken by the writer
	exempt int         // bytes of out queued by re-announcements (not limited)

	wake  chan struct{} // capacity 1: out has bytes
	spare []byte        // the writer's buffer, kept across connections

	// Route messages are coalesced: Route only queues them and arms
	// flush, which wakes the writer routeDelay later (routeDelDelay for
	// deletes alone) unless Flush (called by the workers after each batch
	// of packets) does it first for an add. So a burst of new sessions
	// costs one write, not one per session, and deletes, which nobody
	// waits for, ride along with the next adds.
	flush      *time.Timer
	flushArmed bool         // under mu
	urgent     bool         // under mu: out holds an add
	lastWrite  atomic.Int64 // the writer's last write, Unix ns

	helloWait time.Duration // this slot's wait for a Hello (slot goroutine only)
}

// A Sink takes the records of one intercept connection, on the
// connection's reader goroutine: records of one connection arrive in
// order, those of different connections concurrently, each connection
// with a Sink of its own.
type Sink interface {
	// Record is called for every record. rec and the slices in it are
	// valid only during the call; Record may modify them in place, must
	// not keep them, and must be fast: while it runs, the connection's
	// records wait in the socket.
	Record(rec *wire.Record)
	// Flush is called when the records read so far have all been
	// delivered and the reader is about to wait for more.
	Flush()
}

// sinkFunc is a Sink that calls f for every record and has nothing to
// flush.
type sinkFunc func(rec *wire.Record)

func (f sinkFunc) Record(rec *wire.Record) { f(rec) }
func (sinkFunc) Flush()                    {}

// NewLinks returns links for cfg, not yet connected; Run connects them.
// newSink makes the Sink of each connection as it comes up; nil discards
// records.
func NewLinks(cfg LinkConfig, log *slog.Logger, newSink func() Sink) *Links {
	cfg = cfg.withDefaults()
	if newSink == nil {
		newSink = func() Sink { return sinkFunc(func(*wire.Record) {}) }
	}
	l := &Links{
		cfg:          cfg,
		log:          log,
		newSink:      newSink,
		routes:       make(map[routeKey]struct{}),
		changed:      make(chan struct{}, 1),
		closed:       make(chan struct{}),
		warnRoutes:   logging.NewLimiter(linkLogEvery),
		maxOut:       linkMaxOut,
		writeTimeout: linkWriteTimeout,
	}
	d := &net.Dialer{Timeout: cfg.DialTimeout}
	l.dial = func(ctx context.Context, addr string) (net.Conn, error) {
		return d.DialContext(ctx, "tcp", addr)
	}
	for _, a := range cfg.Servers {
		s := &linkServer{addr: a, warn: logging.NewLimiter(linkLogEvery)}
		for i := range cfg.ConnsPerServer {
			c := &linkConn{srv: s, idx: i, wake: make(chan struct{}, 1), helloWait: cfg.HelloWait}
			c.flush = time.AfterFunc(time.Hour, c.kick)
			c.flush.Stop()
			s.conns = append(s.conns, c)
		}
		l.servers = append(l.servers, s)
	}
	return l
}

var (
	errNoServers    = errors.New("no intercept to connect to (-s)")
	errRunTwice     = errors.New("tcpcopy: Links.Run called twice")
	errPeerClosed   = errors.New("intercept closed the connection")
	errNeedV7Hello  = errors.New("intercept sent no hello (a C intercept?), but --wire-version 7 requires version 7")
	errHelloNotV7   = errors.New("intercept answered version 6, but --wire-version 7 requires version 7")
	errAuthNoV7     = errors.New("intercept does not speak version 7 (a C intercept?), but --secret-file requires authentication, which needs version 7")
	errAuthNotAsked = errors.New("intercept does not ask for authentication (no --secret-file there?), but --secret-file requires it: refusing an intercept that cannot prove the secret")
	errAuthRequired = errors.New("intercept requires authentication: give tcpcopy the same --secret-file")
	errAuthBadProof = errors.New("intercept's authentication proof is wrong: it has another secret")
	errLinkShutdown = errors.New("link shut down")
)

// Run connects ConnsPerServer links to every server and keeps them up:
// each failed connection is dialled again after a delay of 100 ms doubling
// to 5 s, with jitter, reset once a connection has stayed up 5 s. Records
// go to the connections' Sinks; routes come from Route.
//
// Run returns nil when ctx ends or Close is called, after every link
// goroutine has ended (no Sink is called after Run returns). Without
// Lonely it returns an error, naming the servers and the last connection
// error, when no link has been up for GiveUpAfter, counted from the start
// of Run or from the moment the last link went down; with Lonely it never
// gives up. Connect failures are logged at most once per 10 s per server;
// every established link that goes down is logged. Run may be called once.
func (l *Links) Run(ctx context.Context) error {
	if !l.running.CompareAndSwap(false, true) {
		return errRunTwice
	}
	if len(l.servers) == 0 {
		return errNoServers
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		select {
		case <-l.closed:
			cancel()
		case <-ctx.Done():
		}
	}()
	l.stateMu.Lock()
	l.downSince = time.Now()
	l.stateMu.Unlock()

	var wg sync.WaitGroup
	for _, s := range l.servers {
		for _, c := range s.conns {
			wg.Go(func() { l.keep(ctx, c) })
		}
	}
	err := l.watch(ctx)
	cancel()
	wg.Wait()
	return err
}

// Close stops Run, which then returns nil; it does not wait for it. It is
// idempotent and may be called before Run (Run then returns at once).
func (l *Links) Close() {
	l.closeOnce.Do(func() { close(l.closed) })
}

// Up returns the number of connections up now (handshake done).
func (l *Links) Up() int { return int(l.up.Load()) }

// Comparing reports whether a link that compares responses is up: new
// sessions are then compared (a session's records come from every
// intercept its route went to; records of one that does not compare
// carry no hashes, and their responses end as not compared).
func (l *Links) Comparing() bool { return l.comparing.Load() > 0 }

// Stats returns a snapshot of the counters. It allocates the Servers
// slice.
func (l *Links) Stats() LinkStats {
	st := LinkStats{
		Connects:      l.c.connects.Load(),
		Disconnects:   l.c.disconnects.Load(),
		Failures:      l.c.failures.Load(),
		Records:       l.c.records.Load(),
		Skipped:       l.c.skipped.Load(),
		RoutesSent:    l.c.routesSent.Load(),
		Reannounced:   l.c.reannounced.Load(),
		RoutesDropped: l.c.routesDropped.Load(),
		RoutesUnfit:   l.c.routesUnfit.Load(),
		BytesIn:       l.c.bytesIn.Load(),
		BytesOut:      l.c.bytesOut.Load(),
		Up:            l.Up(),
		Servers:       make([]ServerLinkStats, len(l.servers)),
	}
	for i, s := range l.servers {
		st.Servers[i] = ServerLinkStats{Addr: s.addr, Up: int(s.up.Load())}
		if f := s.format.Load(); f != nil {
			st.Servers[i].Format = *f
		}
	}
	return st
}

// Route announces r (Op wire.RouteAdd) or withdraws it (wire.RouteDel) on
// every intercept that has a connection up. An add goes on one of that
// intercept's connections, chosen round robin (as C send_router_info
// does); a delete goes on each of its version-7 connections, because our
// intercept honours a delete only from the connection that owns the route
// and a re-announcement may have moved it. Route never blocks on the
// network: the message is appended to the connection's write buffer and
// its writer sends it. An add that finds no connection of an intercept up,
// or all their write buffers full, is dropped for that intercept and
// counted (RoutesDropped).
//
// Version-6 connections carry only IPv4 route adds: an IPv6 add goes only
// to version-7 connections (wire.ErrNeedV7; counted in RoutesUnfit), a UDP
// route (r.UDP) only to connections whose intercept announced UDP in its
// Hello (wire.ErrNeedUDP; counted in RoutesUnfit too), and
// deletes are not sent to version-6 connections at all (C intercept never
// deletes a route and would log CLIENT_DEL).
//
// Route also maintains the set of routes in use, adds minus deletes,
// whether or not a link was up; every connection that comes up announces
// the whole set again, so routes survive an intercept restart. The caller
// must therefore delete every route it added once the session ends, even
// if the add returned false; the set costs memory per live route.
//
// Route reports whether at least one intercept took the message (for an
// add: whether the session's responses can reach us). An invalid route
// (invalid or mixed-family addresses, unknown op) is ignored and reported
// false. Route is safe for concurrent use; it holds each lock for a map
// update or one append, and does not allocate once the buffers and the
// route set have grown.
func (l *Links) Route(r wire.Route) bool {
	k, ok := makeRouteKey(r)
	if !ok {
		return false
	}
	r = wire.Route{Client: k.client, Target: k.target, Op: r.Op, UDP: k.udp}
	l.routeMu.Lock()
	if r.Op == wire.RouteAdd {
		l.routes[k] = struct{}{}
	} else {
		delete(l.routes, k)
	}
	l.routeMu.Unlock()

	need7 := r.Op == wire.RouteDel || k.client.Addr().Is6()
	accepted := false
	for _, s := range l.servers {
		res, sent := l.sendRoute(s, r, need7)
		if sent > 0 {
			accepted = true
			l.c.routesSent.Add(uint64(sent))
		}
		if r.Op != wire.RouteAdd {
			continue // a delete that did not go out costs nothing
		}
		switch res {
		case routeUnfit:
			l.c.routesUnfit.Add(1)
			if r.UDP {
				l.warnRoute(s, "UDP flow not announced: the intercept does not route UDP answers (protocol version 6, or an older intercept); its answers are not counted")
				break
			}
			l.warnRoute(s, "IPv6 session not announced: the intercept speaks protocol version 6 only (a C intercept?)")
		case routeFull:
			l.c.routesDropped.Add(1)
			l.warnRoute(s, "route dropped: the write buffers to the intercept are full")
		case routeNoLink:
			l.c.routesDropped.Add(1)
		}
	}
	return accepted
}

// routeResult is what became of a route message for one server.
type routeResult uint8

const (
	routeSent   routeResult = iota // appended to a connection's buffer
	routeNoLink                    // no connection up
	routeUnfit                     // only version-6 connections up, version 7 needed
	routeFull                      // every fitting connection's buffer full
)

// sendRoute appends r to the connections of s that are up: an add to one
// of them, trying them round robin; a delete to every version-7 one, since
// our intercept honours a delete only from the connection that owns the
// route (the one that carried the add, or re-announced it last). It
// returns the outcome and the number of messages queued.
func (l *Links) sendRoute(s *linkServer, r wire.Route, need7 bool) (routeResult, int) {
	n := uint32(len(s.conns))
	// Only adds take turns: deletes go to every connection, and letting
	// them advance the turn would put every add of a short connection
	// (add, then delete) on the same connection.
	start := s.next.Load()
	if r.Op == wire.RouteAdd {
		start = s.next.Add(1)
	}
	res, sent := routeNoLink, 0
	for i := range n {
		c := s.conns[(start+i)%n]
		if !c.upHint.Load() {
			continue
		}
		c.mu.Lock()
		switch {
		case !c.up:
		case need7 && c.format.Version != wire.Version7, r.UDP && !c.format.UDP:
			res = max(res, routeUnfit)
		case len(c.out)-c.exempt >= l.maxOut:
			res = max(res, routeFull)
		default:
			c.out, _ = wire.AppendRoute(c.out, c.format, r) // r is valid; need7 was checked
			switch {
			case r.Op == wire.RouteAdd && !c.urgent:
				c.urgent = true
				c.flushArmed = true
				c.flush.Reset(routeDelay)
			case !c.flushArmed:
				c.flushArmed = true
				c.flush.Reset(routeDelDelay)
			}
			c.mu.Unlock()
			sent++
			if r.Op == wire.RouteAdd {
				return routeSent, sent
			}
			continue
		}
		c.mu.Unlock()
	}
	if sent > 0 {
		res = routeSent
	}
	return res, sent
}

func (l *Links) warnRoute(s *linkServer, msg string) {
	if ok, n := l.warnRoutes.Allow(time.Now()); ok {
		l.log.Warn(msg, "intercept", s.addr, "suppressed", n)
	}
}

// Route messages wait to be coalesced with others: an add at most
// routeDelay (our intercept holds a SYN-ACK that beats its route for
// seconds, so a little delay costs nothing), and Flush writes adds at
// once unless the last write is less than routeMinGap old; deletes wait
// up to routeDelDelay for an add to ride along with.
const (
	routeDelay    = 2 * time.Millisecond
	routeMinGap   = time.Millisecond
	routeDelDelay = 100 * time.Millisecond
)

// Flush wakes the writers of the connections that have route adds
// queued, unless they wrote less than routeMinGap ago (then the flush
// timer writes them soon). Workers call it after each batch of packets; it
// does not block and does not allocate.
func (l *Links) Flush() {
	now := int64(0)
	for _, s := range l.servers {
		for _, c := range s.conns {
			if !c.upHint.Load() {
				continue
			}
			c.mu.Lock()
			urgent := c.urgent
			c.mu.Unlock()
			if !urgent {
				continue
			}
			if now == 0 {
				now = time.Now().UnixNano()
			}
			if now-c.lastWrite.Load() >= int64(routeMinGap) {
				c.kick()
			}
		}
	}
}

// kick wakes the writer.
func (c *linkConn) kick() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// watch returns nil when ctx ends, or the give-up error.
func (l *Links) watch(ctx context.Context) error {
	if l.cfg.Lonely {
		<-ctx.Done()
		return nil
	}
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		l.stateMu.Lock()
		up, since := l.upN, l.downSince
		l.stateMu.Unlock()
		var expired <-chan time.Time
		if up == 0 {
			d := time.Until(since.Add(l.cfg.GiveUpAfter))
			if d <= 0 {
				return l.giveUpError()
			}
			t.Reset(d)
			expired = t.C
		}
		select {
		case <-ctx.Done():
			return nil
		case <-l.changed:
		case <-expired:
		}
	}
}

func (l *Links) giveUpError() error {
	names := make([]string, len(l.servers))
	for i, s := range l.servers {
		names[i] = s.addr.String()
	}
	l.stateMu.Lock()
	last := l.lastErr
	l.stateMu.Unlock()
	if last == nil {
		last = errors.New("none recorded")
	}
	return fmt.Errorf("no link to intercept (%s) up for %v (use -L to keep trying): last error: %w",
		strings.Join(names, ", "), l.cfg.GiveUpAfter, last)
}

// keep runs one connection slot until ctx ends.
func (l *Links) keep(ctx context.Context, c *linkConn) {
	backoff := linkBackoffMin
	t := time.NewTimer(time.Hour)
	defer t.Stop()
	for {
		upFor, err := l.serve(ctx, c)
		if ctx.Err() != nil {
			return
		}
		l.stateMu.Lock()
		l.lastErr = fmt.Errorf("%s: %w", c.srv.addr, err)
		l.stateMu.Unlock()
		if upFor == 0 {
			l.c.failures.Add(1)
			if ok, n := c.srv.warn.Allow(time.Now()); ok {
				l.log.Warn("cannot link to intercept, retrying", "intercept", c.srv.addr, "err", err, "suppressed", n)
			}
		}
		if upFor >= linkStable {
			backoff = linkBackoffMin
		}
		// Jitter: a delay in [backoff/2, backoff), so the connections of
		// a restarted intercept do not all come back at once.
		t.Reset(backoff/2 + rand.N(backoff/2))
		backoff = min(2*backoff, linkBackoffMax)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// serve dials c's server once, runs the handshake and then the connection
// until it fails or ctx ends. It returns how long the connection was up
// (0 if the handshake did not complete) and why it ended.
func (l *Links) serve(ctx context.Context, c *linkConn) (time.Duration, error) {
	conn, err := l.dial(ctx, c.srv.addr.String())
	if err != nil {
		return 0, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	var rw io.ReadWriter = conn
	if rio := rawio.New(conn); rio != nil {
		rw = rio
	}
	cr := &countReader{r: rw, n: &l.c.bytesIn}
	hs, err := l.handshake(conn, cr, c.helloWait)
	if err != nil {
		return 0, fmt.Errorf("handshake: %w", err)
	}
	f := hs.f

	since := time.Now()
	l.markUp(c, f)
	l.log.Info("intercept link up", "intercept", c.srv.addr, "conn", c.idx, "format", f.String(), "hello", hs.hello)

	done := make(chan struct{})
	werr := make(chan error, 1)
	go func() {
		err := l.writeLoop(c, conn, rw, done)
		if err != nil {
			conn.Close() // stops the reader
		}
		werr <- err
	}()
	lr := linkReader{l: l, rr: hs.rr, sink: l.newSink()}
	cr.flush = lr.sink.Flush // the record reader waits for more input
	for lr.next() {
	}
	lr.sink.Flush()
	lr.countSkipped()
	err = hs.rr.Err()
	if err == nil {
		err = errPeerClosed
	}
	l.markDown(c)
	conn.Close()
	close(done)
	if we := <-werr; we != nil {
		err = we // the reader only saw the connection closed under it
	}
	upFor := time.Since(since)
	if ctx.Err() != nil {
		return max(upFor, 1), errLinkShutdown
	}
	if hs.timedOut && cr.lateHello() {
		if grown := min(2*c.helloWait, linkMaxHelloGrowth*l.cfg.HelloWait); grown > c.helloWait {
			c.helloWait = grown
		}
		err = fmt.Errorf("%w (the intercept's hello came after the wait for it ended; now waiting %v)", err, c.helloWait)
	}
	l.log.Warn("intercept link down, reconnecting", "intercept", c.srv.addr, "conn", c.idx, "err", err, "up", upFor.Round(time.Millisecond))
	return max(upFor, 1), err
}

// handshakeResult is the outcome of a handshake.
type handshakeResult struct {
	rr       *wire.RecordReader // positioned after the Hello, if any
	f        wire.Format
	hello    bool // a Hello came
	timedOut bool // the wait for a Hello ended without one (C intercept assumed)
}

// handshake sends the offer and decides the format (docs/protocol.md
// §2.4): a Hello sets it; no Hello within wait, or version-6 record bytes,
// mean a C intercept and the Fallback format. Nothing else is sent before
// the decision.
func (l *Links) handshake(conn net.Conn, r io.Reader, wait time.Duration) (handshakeResult, error) {
	v7 := l.cfg.WireVersion != wire.Version6
	_ = conn.SetWriteDeadline(time.Now().Add(l.writeTimeout))
	if _, err := conn.Write(wire.AppendOffer(nil, v7)); err != nil {
		return handshakeResult{}, err
	}
	hs := handshakeResult{rr: wire.NewRecordReader(r, l.cfg.Fallback), f: l.cfg.Fallback}
	if !v7 {
		return hs, nil
	}
	_ = conn.SetReadDeadline(time.Now().Add(wait))
	got, err := hs.rr.ReadHello()
	_ = conn.SetReadDeadline(time.Time{})
	switch {
	case err == nil:
		hs.f, hs.hello = got, true
	case errors.Is(err, wire.ErrNoHello):
		// A C intercept built with --single: records before any route.
	case errors.Is(err, os.ErrDeadlineExceeded):
		hs.timedOut = true // a C intercept answers nothing
	default:
		return handshakeResult{}, err
	}
	if l.cfg.WireVersion == wire.Version7 && hs.f.Version != wire.Version7 {
		if hs.hello {
			return handshakeResult{}, errHelloNotV7
		}
		return handshakeResult{}, errNeedV7Hello
	}
	switch {
	case l.cfg.Secret != nil:
		if err := l.authenticate(conn, hs); err != nil {
			return handshakeResult{}, err
		}
		hs.timedOut = false
	case hs.f.Auth:
		return handshakeResult{}, errAuthRequired
	}
	if hs.f.Version == wire.Version7 {
		hs.f.PrefixLen = min(hs.f.PrefixLen, l.cfg.PrefixLen)
		hs.f.Compare = min(hs.f.Compare, l.cfg.Compare)
	} else {
		hs.f.Compare = 0
	}
	return hs, nil
}

// authTimeout bounds each read of the authentication exchange.
const authTimeout = 5 * time.Second

// authenticate runs tcpcopy's side of the exchange after the Hello
// (docs/protocol.md §4.5): it never falls back to version 6.
func (l *Links) authenticate(conn net.Conn, hs handshakeResult) error {
	if hs.f.Version != wire.Version7 {
		return errAuthNoV7
	}
	if !hs.f.Auth {
		return errAuthNotAsked
	}
	secret := l.cfg.Secret
	_ = conn.SetReadDeadline(time.Now().Add(authTimeout))
	defer conn.SetReadDeadline(time.Time{})
	ni, err := hs.rr.ReadChallenge()
	if err != nil {
		return err
	}
	nt, err := wire.NewNonce()
	if err != nil {
		return err
	}
	_ = conn.SetWriteDeadline(time.Now().Add(l.writeTimeout))
	if _, err := conn.Write(wire.AppendAuth(nil, wire.Auth{Nonce: nt, MAC: wire.TcpcopyMAC(secret, ni, nt)})); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	mi, err := hs.rr.ReadAuthOK()
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("intercept closed the connection after our proof: it has another secret, or refused the link (its log says why): %w", err)
	}
	if err != nil {
		return err
	}
	if !wire.EqualMAC(mi, wire.InterceptMAC(secret, ni, nt)) {
		return errAuthBadProof
	}
	return nil
}

// markUp makes c usable by Route: its buffer starts with the config
// message (version 7 with a prefix wanted) and the whole route set, queued
// under routeMu so that no concurrent Route can be missed or reordered
// before it.
func (l *Links) markUp(c *linkConn, f wire.Format) {
	l.routeMu.Lock()
	c.mu.Lock()
	c.out = c.out[:0]
	c.exempt = 0
	c.format = f
	if f.Version == wire.Version7 && (l.cfg.PrefixLen > 0 || f.Compare > 0) {
		c.out = wire.AppendConfig(c.out, wire.Config{PrefixLen: l.cfg.PrefixLen, Compare: f.Compare})
	}
	l.announceAllLocked(c)
	c.up = true
	c.upHint.Store(true)
	c.mu.Unlock()
	l.routeMu.Unlock()
	c.kick()

	c.srv.format.Store(&f)
	c.srv.up.Add(1)
	if f.Compare > 0 {
		l.comparing.Add(1)
	} else if l.cfg.Compare > 0 && c.srv.noCompareLogged.CompareAndSwap(false, true) {
		why := "a C intercept (protocol version 6): records carry no payload hashes"
		if f.Version == wire.Version7 {
			why = "the intercept runs with --compare-window 0, or is older"
		}
		l.log.Warn("intercept does not compare responses: the responses it sends are not compared",
			"intercept", c.srv.addr, "why", why)
	}
	l.c.connects.Add(1)
	l.stateMu.Lock()
	l.upN++
	l.up.Store(int32(l.upN))
	l.stateMu.Unlock()
	l.signalChange()
}

// markDown takes c out of Route's choice, drops what it had not sent, and
// announces the route set on another connection of the same intercept
// that is up: intercept routes responses to the connection that carried
// the route, and this one is gone.
func (l *Links) markDown(c *linkConn) {
	l.routeMu.Lock()
	c.mu.Lock()
	c.up = false
	c.upHint.Store(false)
	c.out = c.out[:0]
	c.exempt = 0
	c.urgent = false
	c.mu.Unlock()
	if len(l.routes) > 0 {
		for _, o := range c.srv.conns {
			if o == c || !o.upHint.Load() {
				continue
			}
			o.mu.Lock()
			if o.up {
				l.announceAllLocked(o)
				o.mu.Unlock()
				o.kick()
				break
			}
			o.mu.Unlock()
		}
	}
	l.routeMu.Unlock()

	c.srv.up.Add(-1)
	if c.format.Compare > 0 {
		l.comparing.Add(-1)
	}
	l.c.disconnects.Add(1)
	l.stateMu.Lock()
	l.upN--
	l.up.Store(int32(l.upN))
	if l.upN == 0 {
		l.downSince = time.Now()
	}
	l.stateMu.Unlock()
	l.signalChange()
}

// announceAllLocked appends an add for every route in the set to c's
// buffer, outside its limit. It needs routeMu and c.mu. IPv6 routes are
// skipped on a version-6 connection, UDP routes on one whose intercept
// does not route UDP.
func (l *Links) announceAllLocked(c *linkConn) {
	before := len(c.out)
	n := 0
	for k := range l.routes {
		var err error
		c.out, err = wire.AppendRoute(c.out, c.format, wire.Route{Client: k.client, Target: k.target, Op: wire.RouteAdd, UDP: k.udp})
		if err == nil {
			n++
		}
	}
	c.exempt += len(c.out) - before
	l.c.reannounced.Add(uint64(n))
}

func (l *Links) signalChange() {
	select {
	case l.changed <- struct{}{}:
	default:
	}
}

// writeLoop sends c's buffer whenever Route or a re-announcement woke it,
// until done is closed or a write fails (a write that blocks writeTimeout
// means intercept stopped reading: the connection is closed and dialled
// again). Buffers are swapped, not copied.
func (l *Links) writeLoop(c *linkConn, conn net.Conn, w io.Writer, done <-chan struct{}) error {
	buf := c.spare
	defer func() { c.spare = buf[:0] }()
	for {
		select {
		case <-c.wake:
		case <-done:
			return nil
		}
		c.mu.Lock()
		buf, c.out = c.out, buf[:0]
		c.exempt = 0
		c.urgent = false
		if c.flushArmed {
			c.flushArmed = false
			c.flush.Stop()
		}
		c.mu.Unlock()
		if len(buf) == 0 {
			continue
		}
		c.lastWrite.Store(time.Now().UnixNano())
		_ = conn.SetWriteDeadline(time.Now().Add(l.writeTimeout))
		n, err := w.Write(buf)
		l.c.bytesOut.Add(uint64(n))
		if err != nil {
			return fmt.Errorf("write: %w", err)
		}
		if cap(buf) > 4*l.maxOut {
			buf = nil // a big re-announcement: give the memory back
		}
	}
}

// linkReader is a connection's record loop, kept in one heap object so
// that delivering a record allocates nothing.
type linkReader struct {
	l       *Links
	rr      *wire.RecordReader
	rec     wire.Record
	sink    Sink
	skipped uint64 // rr.Skipped already counted
}

// next decodes and delivers one record; false when the stream ended.
func (lr *linkReader) next() bool {
	if !lr.rr.Next() {
		return false
	}
	lr.rec = lr.rr.Record()
	lr.l.c.records.Add(1)
	lr.countSkipped()
	lr.sink.Record(&lr.rec)
	return true
}

func (lr *linkReader) countSkipped() {
	if s := lr.rr.Skipped(); s != lr.skipped {
		lr.l.c.skipped.Add(s - lr.skipped)
		lr.skipped = s
	}
}

// countReader counts the bytes read from a connection and keeps the first
// few, to recognise a Hello that came too late.
type countReader struct {
	r     io.Reader
	flush func() // if set, called before every read
	n     *atomic.Uint64
	head  [6]byte
	nhead int
}

func (c *countReader) Read(p []byte) (int, error) {
	if c.flush != nil {
		c.flush()
	}
	n, err := c.r.Read(p)
	if c.nhead < len(c.head) {
		c.nhead += copy(c.head[c.nhead:], p[:n])
	}
	c.n.Add(uint64(n))
	return n, err
}

// lateHello reports whether the connection's first bytes are those of a
// Hello: 00 00, then the magic (docs/protocol.md §2.2).
func (c *countReader) lateHello() bool {
	return c.nhead == len(c.head) && c.head[0] == 0 && c.head[1] == 0 && string(c.head[2:]) == wire.Magic
}
