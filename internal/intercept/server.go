package intercept

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tcpcopy-go/tcpcopy/internal/daemon"
	"github.com/tcpcopy-go/tcpcopy/internal/logging"
	"github.com/tcpcopy-go/tcpcopy/pkg/capture"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/router"
	"github.com/tcpcopy-go/tcpcopy/pkg/streamhash"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// handshakeTimeout bounds how long a new link may take to send its
// handshake, so idle connects cannot pile up.
const handshakeTimeout = 10 * time.Second

// protectWindow is -c's grace period after the first link of a group.
const protectWindow = 3 * time.Second

// counters are the server's statistics; every field is updated atomically.
type counters struct {
	captured   atomic.Uint64 // packets read from the capture rings
	invalid    atomic.Uint64 // not a well-formed IPv4/IPv6 TCP packet
	routed     atomic.Uint64 // records queued for a link
	unrouted   atomic.Uint64 // responses without a route (not SYN/RST)
	held       atomic.Uint64 // SYN-ACKs/RSTs held for a route to come
	dropped    atomic.Uint64 // records dropped: link queue full or closing
	linksTotal atomic.Uint64 // links accepted
	refused    atomic.Uint64 // connections refused (allow list, -c, limit)
	linkErrors atomic.Uint64 // links closed for a protocol or I/O error
	routeMsgs  atomic.Uint64 // route messages received
	hashed     atomic.Uint64 // response segments hashed for comparison
	unhashed   atomic.Uint64 // ... not hashed: the capture had cut them
}

// Server is a running intercept. Make it with NewServer.
type Server struct {
	cfg    Config
	log    *slog.Logger
	routes *router.Table
	c      counters

	nextID atomic.Uint64
	linkMu sync.Mutex                             // serialises changes of links
	links  atomic.Pointer[map[router.Owner]*link] // copy-on-write snapshot
	group  time.Time                              // -c: when the current group of links began
	wg     sync.WaitGroup                         // link goroutines

	warnUnrouted *logging.Limiter
	warnLinks    *logging.Limiter
	now          func() time.Time
	sources      []*capture.Source // for ring statistics
}

// NewServer returns a server for cfg; Run or Serve starts it.
func NewServer(cfg Config, log *slog.Logger) *Server {
	s := &Server{
		cfg: cfg,
		log: log,
		routes: router.New(router.Config{
			IdleTimeout: cfg.RouteIdle,
			MaxHeld:     cfg.HeldMax,
			HeldSize:    maxHeaders + max(cfg.MaxPrefix, wire.MaxPayload6),
		}),
		warnUnrouted: logging.NewLimiter(10 * time.Second),
		warnLinks:    logging.NewLimiter(5 * time.Second),
		now:          time.Now,
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
				s.log.Warn("accept failed, backing off", "err", err, "delay", tempDelay)
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
	if reason := s.admit(remote.Addr().Unmap()); reason != "" {
		s.c.refused.Add(1)
		if ok, n := s.warnLinks.Allow(s.now()); ok {
			s.log.Warn("tcpcopy link refused", "remote", remote, "reason", reason, "suppressed", n)
		}
		conn.Close()
		return
	}
	if tc, ok := conn.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	l := newLink(router.Owner(s.nextID.Add(1)), conn, s.cfg.QueueBytes)
	s.addLink(l)
	s.c.linksTotal.Add(1)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		l.writeLoop(func(err error) { s.dropLink(l, fmt.Errorf("write: %w", err)) })
	}()
	go func() {
		defer s.wg.Done()
		s.readLoop(l)
	}()
}

// admit returns why a connection from addr must be refused, or "".
func (s *Server) admit(addr netip.Addr) string {
	if len(s.cfg.Allow) > 0 {
		ok := false
		for _, p := range s.cfg.Allow {
			if p.Contains(addr) {
				ok = true
				break
			}
		}
		if !ok {
			return "address not in --allow"
		}
	}
	links := *s.links.Load()
	if len(links) >= s.cfg.MaxLinks {
		return "too many links (--max-links)"
	}
	if s.cfg.Protect && len(links) > 0 && s.now().Sub(s.group) > protectWindow {
		return "links are protected (-c) and the first link came more than 3s ago"
	}
	return ""
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

// dropLink closes l and removes it from the registry; its routes go on the
// next expiry pass. err is nil for a clean end of stream.
func (s *Server) dropLink(l *link, err error) {
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
	attrs := []any{"link", l.id, "remote", l.remote, "records", l.records.Load(), "dropped", l.dropped.Load(), "routes", l.routes.Load()}
	if err != nil {
		s.c.linkErrors.Add(1)
		s.log.Warn("tcpcopy link closed", append(attrs, "err", err)...)
	} else {
		s.log.Info("tcpcopy link closed", attrs...)
	}
}

func (s *Server) closeAll() {
	for _, l := range *s.links.Load() {
		s.dropLink(l, nil)
	}
}

// readLoop runs the handshake and then applies route messages.
func (s *Server) readLoop(l *link) {
	rr := wire.NewRouteReader(l.rw)
	_ = l.conn.SetReadDeadline(time.Now().Add(handshakeTimeout))
	offer, err := rr.ReadOffer()
	if err != nil {
		s.dropLink(l, fmt.Errorf("handshake: %w", err))
		return
	}
	_ = l.conn.SetReadDeadline(time.Time{})
	f := wire.Format{Version: wire.Version6, Combined: s.cfg.Combined, Payload: s.cfg.RespPayload}
	if offer.MaxVersion >= wire.Version7 {
		f = wire.Format{Version: wire.Version7, PrefixLen: s.cfg.MaxPrefix, Compare: s.cfg.CompareWindow}
		rr.SetVersion(wire.Version7)
		if _, err := l.conn.Write(wire.AppendHello(nil, f)); err != nil {
			s.dropLink(l, fmt.Errorf("hello: %w", err))
			return
		}
		// Records carry no prefix and no hash until tcpcopy asks.
		f.PrefixLen, f.Compare = 0, 0
	}
	if offer.Type != wire.Version6 {
		s.log.Warn("tcpcopy handshake type differs from 6, continuing", "link", l.id, "type", offer.Type)
	}
	l.setFormat(f, s.cfg.MaxCombined)
	s.log.Info("tcpcopy link up", "link", l.id, "remote", l.remote, "format", f.String())

	deliver := func(_ router.Owner, data []byte, m router.Meta) { s.deliverHeld(l, data, m) }
	for rr.Next() {
		msg := rr.Msg()
		switch msg.Kind {
		case wire.MsgRoute:
			l.routes.Add(1)
			s.c.routeMsgs.Add(1)
			k := router.Key{Client: msg.Route.Client, Target: msg.Route.Target}
			if msg.Route.Op == wire.RouteDel {
				s.routes.Delete(k, l.id)
				continue
			}
			s.routes.Add(k, l.id, s.now(), deliver)
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
	if n := rr.Skipped(); n > 0 {
		s.log.Warn("tcpcopy link sent messages that were skipped", "link", l.id, "skipped", n)
	}
	if err := rr.Err(); err != nil && !errors.Is(err, net.ErrClosed) {
		s.dropLink(l, err)
		return
	}
	s.dropLink(l, nil)
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
	if l.enqueue(hdr, m.PayloadLen, m.Time, s.prefixFor(l, prefix)) {
		s.c.routed.Add(1)
	} else {
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
		s.c.invalid.Add(1)
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
	if !ok {
		if p.Flags&(ipmangle.SYN|ipmangle.RST) != 0 {
			n := p.PayloadOffset + min(len(prefix), s.cfg.MaxPrefix)
			if s.routes.Hold(k, data[:n], router.Meta{PayloadLen: p.PayloadLen, Time: ts}, now) {
				s.c.held.Add(1)
				return
			}
		}
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
	s.c.routed.Add(1)
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
}
