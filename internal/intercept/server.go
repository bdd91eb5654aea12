package intercept

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/daemon"
	"github.com/tcpcopy-go/tcpcopy/internal/logging"
	"github.com/tcpcopy-go/tcpcopy/pkg/capture"
	"github.com/tcpcopy-go/tcpcopy/pkg/datagram"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipfrag"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/router"
	"github.com/tcpcopy-go/tcpcopy/pkg/streamhash"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// protectWindow is -c's grace period after the first link of a group.
const protectWindow = 3 * time.Second

// linkLogEvery limits the log lines about links: each kind (a link up, a
// link closed for one cause, a route refused for one cause) at most once
// per interval, with the number suppressed. Links are cheap to open, and a
// log line per hostile connect filled disks.
const linkLogEvery = 10 * time.Second

// closeCause says why a link ended; every cause is a label of
// intercept_links_closed_total and a rate limit of its log line.
type closeCause uint8

// Link close causes.
const (
	causeEOF              closeCause = iota // tcpcopy closed the link
	causeHandshake                          // malformed handshake
	causeHandshakeTimeout                   // no complete handshake (and authentication) in time
	causeVersion6                           // a version-6 link, refused because a secret is set
	causeAuth                               // authentication failed or missing
	causeProtocol                           // framing lost, or a read error, after the handshake
	causeWrite                              // a write failed or blocked (tcpcopy stopped reading)
	causeIdle                               // idle without a route, its slot given to a new connection
	causeShutdown                           // intercept stopping
	numCauses
)

var causeNames = [numCauses]string{"eof", "handshake", "handshake_timeout", "version6_refused", "auth", "protocol", "write", "idle", "shutdown"}

func (c closeCause) String() string { return causeNames[c] }

// Route refusal causes (intercept_routes_refused_total).
const (
	refusedLinkCap = iota // --max-routes-per-link
	refusedTableFull
	numRefused
)

var refusedNames = [numRefused]string{"link_cap", "table_full"}

// counters are the server's statistics; every field is updated atomically.
type counters struct {
	captured   atomic.Uint64 // packets read from the capture rings
	invalid    atomic.Uint64 // neither a well-formed IPv4/IPv6 TCP packet nor UDP
	routed     atomic.Uint64 // records written to a link
	unrouted   atomic.Uint64 // responses without a route (not SYN/RST)
	held       atomic.Uint64 // SYN-ACKs/RSTs held for a route to come
	dropped    atomic.Uint64 // records dropped: link queue full, unfit, or lost at close
	linksTotal atomic.Uint64 // links accepted
	refused    atomic.Uint64 // connections refused (allow list, -c, limit)
	linkErrors atomic.Uint64 // links closed for a protocol, authentication or I/O error
	routeMsgs  atomic.Uint64 // route messages received
	hashed     atomic.Uint64 // response segments hashed for comparison
	unhashed   atomic.Uint64 // ... not hashed: the capture had cut them
	skipped    atomic.Uint64 // well-framed messages the readers skipped
	closed     [numCauses]atomic.Uint64
	authOK     atomic.Uint64 // links that authenticated

	// UDP answers (udp.go).
	udpCaptured  atomic.Uint64 // UDP datagrams (or first fragments) captured
	udpRouted    atomic.Uint64 // UDP records queued on a link
	udpUnrouted  atomic.Uint64 // UDP answers without a route (not held: the pool was full)
	udpHeld      atomic.Uint64 // UDP answers held for a route to come
	udpFragments atomic.Uint64 // later fragments of UDP answers, ignored
}

// Server is a running intercept. Make it with NewServer.
type Server struct {
	cfg    Config
	log    *slog.Logger
	routes *router.Table
	// udpRoutes is the UDP route table (udp.go), apart from TCP's.
	udpRoutes *router.Table
	c         counters

	nextID atomic.Uint64
	linkMu sync.Mutex                             // serialises changes of links
	links  atomic.Pointer[map[router.Owner]*link] // copy-on-write snapshot
	group  time.Time                              // -c: when the current group of links began
	wg     sync.WaitGroup                         // link goroutines

	warnUnrouted *logging.Limiter
	warnLinks    *logging.Limiter
	logUp        *logging.Limiter
	logClosed    [numCauses]*logging.Limiter
	logRefused   [numRefused]*logging.Limiter
	now          func() time.Time
	sources      []*capture.Source // for ring statistics
}

// NewServer returns a server for cfg; Run or Serve starts it. Zero limits
// in cfg take the defaults of Default.
func NewServer(cfg Config, log *slog.Logger) *Server {
	def := Default()
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = def.HandshakeTimeout
	}
	if cfg.LinkIdle <= 0 {
		cfg.LinkIdle = def.LinkIdle
	}
	if cfg.MaxRoutesPerLink <= 0 {
		cfg.MaxRoutesPerLink = def.MaxRoutesPerLink
	}
	if cfg.QueueBytes <= 0 {
		cfg.QueueBytes = def.QueueBytes
	}
	if cfg.MaxLinks <= 0 {
		cfg.MaxLinks = def.MaxLinks
	}
	if cfg.UDPRouteIdle <= 0 {
		cfg.UDPRouteIdle = def.UDPRouteIdle
	}
	s := &Server{
		cfg: cfg,
		log: log,
		routes: router.New(router.Config{
			IdleTimeout: cfg.RouteIdle,
			MaxRoutes:   MaxRoutes,
			MaxPerOwner: cfg.MaxRoutesPerLink,
			MaxHeld:     cfg.HeldMax,
			HeldSize:    maxHeaders + max(cfg.MaxPrefix, wire.MaxPayload6),
		}),
		udpRoutes: router.New(router.Config{
			IdleTimeout: cfg.UDPRouteIdle,
			MaxRoutes:   MaxRoutes,
			MaxPerOwner: cfg.MaxRoutesPerLink,
			MaxHeld:     min(cfg.HeldMax, udpMaxHeld),
			HeldSize:    maxHeaders + max(cfg.MaxPrefix, udpHeldPayload),
		}),
		warnUnrouted: logging.NewLimiter(10 * time.Second),
		warnLinks:    logging.NewLimiter(linkLogEvery),
		logUp:        logging.NewLimiter(linkLogEvery),
		now:          time.Now,
	}
	for i := range s.logClosed {
		s.logClosed[i] = logging.NewLimiter(linkLogEvery)
	}
	for i := range s.logRefused {
		s.logRefused[i] = logging.NewLimiter(linkLogEvery)
	}
	m := map[router.Owner]*link{}
	s.links.Store(&m)
	return s
}

// maxHeaders is the most header bytes a response can have: IPv6 with a few
// extension headers, or IPv4 with options, plus a TCP header with options.
const maxHeaders = 120 + 60

// Serve accepts tcpcopy links on ln until ctx ends, then closes every link.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	go daemon.Every(ctx, time.Second, s.expire)
	var tempDelay time.Duration
	for {
		conn, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				s.closeAll()
				s.wg.Wait()
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || errors.Is(err, syscall.EMFILE) || errors.Is(err, syscall.ENFILE) {
				// Out of descriptors or similar: back off, keep serving.
				tempDelay = min(max(2*tempDelay, 5*time.Millisecond), time.Second)
				if ok, n := s.warnLinks.Allow(s.now()); ok {
					s.log.Warn("accept failed, backing off", "err", err, "delay", tempDelay, "suppressed", n)
				}
				time.Sleep(tempDelay)
				continue
			}
			s.closeAll()
			s.wg.Wait()
			return fmt.Errorf("accept: %w", err)
		}
		tempDelay = 0
		s.accept(conn)
	}
}

// accept admits or refuses one connection.
func (s *Server) accept(conn net.Conn) {
	remote, _ := netip.ParseAddrPort(conn.RemoteAddr().String())
	now := s.now()
	reason, victim := s.admit(remote.Addr().Unmap(), now)
	if reason != "" {
		s.c.refused.Add(1)
		if ok, n := s.warnLinks.Allow(s.now()); ok {
			s.log.Warn("tcpcopy link refused", "remote", remote, "reason", reason, "suppressed", n)
		}
		conn.Close()
		return
	}
	if victim != nil {
		cause := causeIdle
		if victim.upAt.Load() == 0 {
			cause = causeHandshakeTimeout
		}
		s.closeLink(victim, cause, nil)
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	l := newLink(router.Owner(s.nextID.Add(1)), conn, now, s.cfg.QueueBytes, linkCounters{sent: &s.c.routed, dropped: &s.c.dropped})
	s.addLink(l)
	s.c.linksTotal.Add(1)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		l.writeLoop(func(err error) { s.closeLink(l, causeWrite, fmt.Errorf("write: %w", err)) })
	}()
	go func() {
		defer s.wg.Done()
		s.readLoop(l)
	}()
}

// pendingGrace is how long a connection may be in its handshake before a
// newcomer may take its slot (a real tcpcopy finishes it in one round
// trip; authentication in two).
const pendingGrace = 500 * time.Millisecond

// admit returns why a connection from addr must be refused, or "". When
// --max-links are in use it may name a link to close first (slotFor).
func (s *Server) admit(addr netip.Addr, now time.Time) (reason string, victim *link) {
	if len(s.cfg.Allow) > 0 {
		ok := false
		for _, p := range s.cfg.Allow {
			if p.Contains(addr) {
				ok = true
				break
			}
		}
		if !ok {
			return "address not in --allow", nil
		}
	}
	links := *s.links.Load()
	if len(links) >= s.cfg.MaxLinks {
		if victim = s.slotFor(links, addr, now); victim == nil {
			return "too many links (--max-links), none of them idle", nil
		}
	}
	if s.cfg.Protect && len(links) > 0 && s.now().Sub(s.group) > protectWindow {
		return "links are protected (-c) and the first link came more than 3s ago", nil
	}
	return "", victim
}

// slotFor returns the link whose slot a newcomer from addr may take when
// every slot is in use, or nil. Only links that have proved nothing can
// give way: one still in its handshake after pendingGrace, or one up for
// --link-idle that announced no route and did not authenticate. And only
// links of an address that holds more links than addr: a peer cannot push
// out the links of its own address, nor those of an address with fewer
// links than its own. So a peer that keeps re-dialling from one address
// (or a few) only churns its own links, and cannot lock out a tcpcopy from
// another address; links with routes, and authenticated links, never give
// way. Among the candidates: the address with the most links first, then
// handshakes before idle links, then the oldest.
func (s *Server) slotFor(links map[router.Owner]*link, addr netip.Addr, now time.Time) *link {
	per := make(map[netip.Addr]int, 8)
	for _, l := range links {
		per[l.remote.Addr().Unmap()]++
	}
	mine := per[addr]
	pendingCut := now.Add(-pendingGrace).UnixNano()
	idleCut := now.Add(-s.cfg.LinkIdle).UnixNano()
	type rank struct {
		count   int
		pending bool
		age     int64
	}
	better := func(a, b rank) bool {
		if a.count != b.count {
			return a.count > b.count
		}
		if a.pending != b.pending {
			return a.pending
		}
		return a.age < b.age
	}
	var (
		victim *link
		best   rank
	)
	for _, l := range links {
		n := per[l.remote.Addr().Unmap()]
		if n <= mine {
			continue
		}
		var r rank
		switch up := l.upAt.Load(); {
		case up == 0:
			if l.since.UnixNano() > pendingCut {
				continue
			}
			r = rank{n, true, l.since.UnixNano()}
		case up > idleCut || l.routed.Load() || l.authed.Load():
			continue
		default:
			r = rank{n, false, up}
		}
		if victim == nil || better(r, best) {
			victim, best = l, r
		}
	}
	return victim
}

func (s *Server) addLink(l *link) {
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	old := *s.links.Load()
	if len(old) == 0 {
		s.group = l.since
	}
	m := make(map[router.Owner]*link, len(old)+1)
	for k, v := range old {
		m[k] = v
	}
	m[l.id] = l
	s.links.Store(&m)
}

// closeLink closes l for cause and removes it from the registry; its
// routes go on the next expiry pass. err says more, or is nil. The log
// line is limited per cause.
func (s *Server) closeLink(l *link, cause closeCause, err error) {
	if !l.close() {
		return
	}
	s.linkMu.Lock()
	old := *s.links.Load()
	m := make(map[router.Owner]*link, len(old))
	for k, v := range old {
		if k != l.id {
			m[k] = v
		}
	}
	s.links.Store(&m)
	s.linkMu.Unlock()
	s.c.closed[cause].Add(1)
	switch cause {
	case causeEOF, causeShutdown, causeIdle:
	default:
		s.c.linkErrors.Add(1)
	}
	ok, n := s.logClosed[cause].Allow(s.now())
	if !ok {
		return
	}
	attrs := []any{"link", l.id, "remote", l.remote, "cause", cause.String(),
		"records", l.records.Load(), "dropped", l.dropped.Load(), "route_messages", l.routes.Load(), "suppressed", n}
	if err != nil {
		attrs = append(attrs, "err", err)
	}
	switch cause {
	case causeEOF, causeShutdown:
		s.log.Info("tcpcopy link closed", attrs...)
	case causeIdle:
		s.log.Warn("tcpcopy link closed: it announced no route for --link-idle and a new connection needed its slot (--max-links)",
			append(attrs, "link_idle", s.cfg.LinkIdle)...)
	default:
		s.log.Warn("tcpcopy link closed", attrs...)
	}
}

func (s *Server) closeAll() {
	for _, l := range *s.links.Load() {
		s.closeLink(l, causeShutdown, nil)
	}
}

// Errors of the handshake, in the log and the close causes.
var (
	errVersion6Refused = errors.New("version-6 handshake refused: --secret-file is set and version 6 cannot authenticate (a C tcpcopy, or tcpcopy --wire-version 6)")
	errNoAuth          = errors.New("the link did not authenticate: its first message was not an auth message (tcpcopy without --secret-file, or older than authentication)")
	errBadProof        = errors.New("the link's authentication proof is wrong: its tcpcopy has another secret")
)

// handshakeCause classifies a failed handshake read.
func handshakeCause(err error, auth bool) closeCause {
	switch {
	case errors.Is(err, os.ErrDeadlineExceeded):
		return causeHandshakeTimeout
	case auth:
		return causeAuth
	}
	return causeHandshake
}

// handshake runs the handshake of l (docs/protocol.md §2, §4.6) within
// --handshake-timeout of the connect: the offer, the Hello, and with a
// secret the challenge, tcpcopy's proof and ours. It returns the format
// of the link.
func (s *Server) handshake(l *link, rr *wire.RouteReader) (wire.Format, closeCause, error) {
	deadline := l.since.Add(s.cfg.HandshakeTimeout)
	_ = l.conn.SetReadDeadline(deadline)
	_ = l.conn.SetWriteDeadline(deadline)
	offer, err := rr.ReadOffer()
	if err != nil {
		return wire.Format{}, handshakeCause(err, false), fmt.Errorf("handshake: %w", err)
	}
	secret := s.cfg.Secret
	if offer.MaxVersion < wire.Version7 {
		if secret != nil {
			return wire.Format{}, causeVersion6, errVersion6Refused
		}
		return wire.Format{Version: wire.Version6, Combined: s.cfg.Combined, Payload: s.cfg.RespPayload}, 0, nil
	}
	f := wire.Format{Version: wire.Version7, PrefixLen: s.cfg.MaxPrefix, Compare: s.cfg.CompareWindow, Auth: secret != nil, UDP: true}
	rr.SetVersion(wire.Version7)
	out := wire.AppendHello(nil, f)
	var ni wire.Nonce
	if f.Auth {
		if ni, err = wire.NewNonce(); err != nil {
			return f, causeAuth, err
		}
		out = wire.AppendChallenge(out, ni)
	}
	if _, err := l.conn.Write(out); err != nil {
		return f, causeHandshake, fmt.Errorf("hello: %w", err)
	}
	if f.Auth {
		if !rr.Next() {
			err := rr.Err()
			if err == nil {
				err = io.ErrUnexpectedEOF
			}
			return f, handshakeCause(err, true), fmt.Errorf("waiting for authentication: %w", err)
		}
		m := rr.Msg()
		switch {
		case m.Kind != wire.MsgAuth:
			return f, causeAuth, errNoAuth
		case !wire.EqualMAC(m.Auth.MAC, wire.TcpcopyMAC(secret, ni, m.Auth.Nonce)):
			return f, causeAuth, errBadProof
		}
		if _, err := l.conn.Write(wire.AppendAuthOK(nil, wire.InterceptMAC(secret, ni, m.Auth.Nonce))); err != nil {
			return f, causeAuth, fmt.Errorf("auth-ok: %w", err)
		}
		l.authed.Store(true)
		s.c.authOK.Add(1)
	}
	if offer.Type != wire.Version6 {
		s.log.Debug("tcpcopy handshake type differs from 6, continuing", "link", l.id, "type", offer.Type)
	}
	// Records carry no prefix and no hash until tcpcopy asks.
	f.PrefixLen, f.Compare = 0, 0
	return f, 0, nil
}

// readLoop runs the handshake and then applies route messages.
func (s *Server) readLoop(l *link) {
	rr := wire.NewRouteReader(l.rw)
	f, cause, err := s.handshake(l, rr)
	if err != nil {
		s.closeLink(l, cause, err)
		return
	}
	_ = l.conn.SetReadDeadline(time.Time{})
	l.setFormat(f, s.cfg.MaxCombined)
	l.upAt.Store(s.now().UnixNano())
	if ok, n := s.logUp.Allow(s.now()); ok {
		s.log.Info("tcpcopy link up", "link", l.id, "remote", l.remote, "format", f.String(), "authenticated", l.authed.Load(), "suppressed", n)
	}

	deliver := func(_ router.Owner, data []byte, m router.Meta) { s.deliverHeld(l, data, m) }
	deliverUDP := func(_ router.Owner, data []byte, m router.Meta) { s.deliverHeldUDP(l, data, m) }
	var skipped uint64
	for rr.Next() {
		if n := rr.Skipped(); n != skipped {
			l.skipped.Add(n - skipped)
			s.c.skipped.Add(n - skipped)
			skipped = n
		}
		msg := rr.Msg()
		switch msg.Kind {
		case wire.MsgRoute:
			l.routes.Add(1)
			s.c.routeMsgs.Add(1)
			if msg.Route.UDP {
				s.udpRouteMsg(l, msg.Route, deliverUDP)
				continue
			}
			k := router.Key{Client: msg.Route.Client, Target: msg.Route.Target}
			if msg.Route.Op == wire.RouteDel {
				s.routes.Delete(k, l.id)
				continue
			}
			switch res := s.routes.Add(k, l.id, s.now(), deliver); res {
			case router.RefusedOwnerFull:
				s.routeRefused(l, refusedLinkCap)
				continue
			case router.RefusedTableFull:
				s.routeRefused(l, refusedTableFull)
				continue
			}
			l.routed.Store(true)
			l.flush()
		case wire.MsgConfig:
			if f.Version == wire.Version7 {
				f.PrefixLen = min(msg.Config.PrefixLen, s.cfg.MaxPrefix)
				f.Compare = min(msg.Config.Compare, s.cfg.CompareWindow)
				l.setFormat(f, s.cfg.MaxCombined)
				if f.Compare > 0 {
					s.log.Info("tcpcopy link compares responses", "link", l.id, "window", f.Compare)
				}
			}
		}
	}
	if n := rr.Skipped(); n != skipped {
		l.skipped.Add(n - skipped)
		s.c.skipped.Add(n - skipped)
	}
	if err := rr.Err(); err != nil && !errors.Is(err, net.ErrClosed) {
		s.closeLink(l, causeProtocol, err)
		return
	}
	s.closeLink(l, causeEOF, nil)
}

// routeRefused counts and logs (limited per cause) a route add the table
// refused.
func (s *Server) routeRefused(l *link, cause int) {
	l.refused.Add(1)
	ok, n := s.logRefused[cause].Allow(s.now())
	if !ok {
		return
	}
	switch cause {
	case refusedLinkCap:
		s.log.Warn("route refused: the link holds --max-routes-per-link routes; its new sessions get no responses",
			"link", l.id, "remote", l.remote, "max_routes_per_link", s.cfg.MaxRoutesPerLink, "suppressed", n)
	default:
		s.log.Warn("route refused: the route table is full and this link holds no route to make room with",
			"link", l.id, "remote", l.remote, "max_routes", MaxRoutes, "suppressed", n)
	}
}

// deliverHeld queues a packet that waited for its route. It runs with the
// route table's hold pool locked, so it only touches the link.
func (s *Server) deliverHeld(l *link, data []byte, m router.Meta) {
	var p ipmangle.Parsed
	p.Decode(data)
	if !p.Valid {
		return
	}
	hdr, prefix := data[:p.PayloadOffset], p.Payload(data)
	if !l.enqueue(hdr, m.PayloadLen, m.Time, s.prefixFor(l, prefix)) {
		s.c.dropped.Add(1)
	}
}

// enqueue queues the record of a response for l: for a link comparing
// responses, with the payload's hash (if the payload was captured whole)
// and the bytes within the first Compare bytes of the response (off is
// the segment's offset in its response, -1 if unknown).
func (s *Server) enqueue(l *link, hdr []byte, payloadLen int, ts int64, payload []byte, off int) bool {
	f := l.format.Load()
	if f == nil || f.Compare == 0 || payloadLen == 0 {
		return l.enqueue(hdr, payloadLen, ts, s.prefixFor(l, payload))
	}
	n := min(f.PrefixLen, len(payload))
	if off >= 0 && off < f.Compare {
		n = max(n, min(f.Compare-off, len(payload)))
	}
	if len(payload) < payloadLen {
		s.c.unhashed.Add(1)
		return l.enqueue(hdr, payloadLen, ts, payload[:n])
	}
	s.c.hashed.Add(1)
	return l.enqueueHashed(hdr, payloadLen, ts, payload[:n], streamhash.Sum(payload), true)
}

// prefixFor cuts a payload prefix to what l's format carries.
func (s *Server) prefixFor(l *link, prefix []byte) []byte {
	f := l.format.Load()
	if f == nil {
		return nil
	}
	n := 0
	switch {
	case f.Version == wire.Version7:
		n = f.PrefixLen
	case f.Payload:
		n = wire.MaxPayload6
	}
	return prefix[:min(n, len(prefix))]
}

// scratch is a capture goroutine's per-packet working memory.
type scratch struct {
	p       ipmangle.Parsed
	d       datagram.Parsed // UDP answers (udp.go)
	f       ipfrag.Fragment
	ua      udpAnswer
	buf     [maxHeaders + wire.MaxPrefixLen]byte
	touched []*link
}

// handle routes one captured packet (data starts at the IP header; ts is
// the capture time in Unix nanoseconds). Links that got a record are added
// to sc.touched for the caller to flush after the batch. It allocates
// nothing.
func (s *Server) handle(sc *scratch, data []byte, ts int64) {
	s.c.captured.Add(1)
	p := &sc.p
	p.Decode(data)
	if !p.Valid {
		if p.Reason != ipmangle.ReasonNotTCP && p.Reason != ipmangle.ReasonFragment || !s.handleUDP(sc, data, ts) {
			s.c.invalid.Add(1)
		}
		return
	}
	if len(s.cfg.Docker) > 0 {
		if orig, ok := s.cfg.Docker[p.Dst.Addr()]; ok {
			n := copy(sc.buf[:], data)
			data = sc.buf[:n]
			ipmangle.SetDst(data, p, netip.AddrPortFrom(orig, p.Dst.Port()))
		}
	}
	k := router.Key{Client: p.Dst, Target: p.Src}
	now := time.Unix(0, ts)
	var (
		owner router.Owner
		ok    bool
		off   = -1 // the segment's offset in its response (comparison)
	)
	if p.PayloadLen > 0 && s.cfg.CompareWindow > 0 {
		owner, off, ok = s.routes.LookupSegment(k, now, p.Seq, p.Ack)
	} else {
		owner, ok = s.routes.Lookup(k, now)
	}
	hdr := data[:p.PayloadOffset]
	prefix := p.Payload(data) // what was captured of the payload, without link padding
	if !ok && p.Flags&(ipmangle.SYN|ipmangle.RST) != 0 {
		n := p.PayloadOffset + min(len(prefix), s.cfg.MaxPrefix)
		if s.routes.Hold(k, data[:n], router.Meta{PayloadLen: p.PayloadLen, Time: ts}, now) {
			s.c.held.Add(1)
			return
		}
		// The pool is full, or the route came since the lookup.
		owner, ok = s.routes.Lookup(k, now)
	}
	if !ok {
		s.unrouted(k, p.Flags)
		return
	}
	l := (*s.links.Load())[owner]
	if l == nil {
		s.routes.Forget(k)
		s.unrouted(k, p.Flags)
		return
	}
	if !s.enqueue(l, hdr, p.PayloadLen, ts, prefix, off) {
		s.c.dropped.Add(1)
		return
	}
	for _, t := range sc.touched {
		if t == l {
			return
		}
	}
	sc.touched = append(sc.touched, l)
}

func (s *Server) unrouted(k router.Key, flags ipmangle.TCPFlags) {
	s.c.unrouted.Add(1)
	if !s.log.Enabled(context.Background(), slog.LevelWarn) {
		return
	}
	if ok, n := s.warnUnrouted.Allow(s.now()); ok {
		s.log.Warn("response without a route: no tcpcopy announced this connection (check that tcpcopy's -s points here and the filter matches only copied traffic)",
			"client", k.Client, "target", k.Target, "flags", flags.String(), "suppressed", n)
	}
}

// flushTouched ends a capture batch: every link that got records sends them.
func (s *Server) flushTouched(sc *scratch) {
	for i, l := range sc.touched {
		l.flush()
		sc.touched[i] = nil
	}
	sc.touched = sc.touched[:0]
}

// expire removes idle routes, routes of gone links and stale held
// packets; Serve runs it once a second.
func (s *Server) expire(now time.Time) {
	links := *s.links.Load()
	s.routes.Expire(now, func(o router.Owner) bool { return links[o] != nil })
	s.udpRoutes.Expire(now, func(o router.Owner) bool { return links[o] != nil })
}
