package tcpcopy

// udp.go copies UDP datagrams: the udp: mappings (C TCPCopy's --udp
// build, tcpcopy-c.md §3.15). UDP has no session to replay: each captured
// datagram to a mapped port is copied as it is, at once, by the goroutine
// that read it (a capture loop, the offline replay), without a worker, a
// route or intercept. The target's answers go to the client addresses;
// with intercepts that route UDP (-s, protocol version 7) they come back
// as records and are matched to the copies (udpanswer.go); without, they
// are not seen (docs/tcpcopy.md, "Copying UDP").
//
// Per datagram: decode (package datagram), match a UDP mapping, select by
// -r/-g on the client address and port (so a flow is copied whole or not
// at all, as a TCP connection is), then for each copy (-n) build a new
// datagram with the target as destination and the client endpoint of that
// copy as source (-c, -H, -f, -n and offline passes, as rewriter.fakeAddr
// and fakePort give them: the same arithmetic as TCP's preferred
// endpoints, distinct ports for the copies of one datagram), checksums
// computed in full, and send it; a copy longer than the MTU goes in
// fragments (package ipfrag). Fragments captured are reassembled first: a
// datagram is copied whole or not at all.
//
// Where we differ from C TCPCopy's UDP build (which rewrote the
// destination, recomputed the UDP checksum and fragmented what it sent
// above -M, tcpcopy-c.md §3.15): UDP mappings beside TCP ones, without
// intercept; IPv6; -r, -n, -c and offline replay apply to UDP too;
// captured fragments are reassembled, so a datagram is matched by its
// ports and copied whole; the copies of one datagram get distinct source
// ports and distinct IP identifications, so the target reassembles each;
// a copy refused as too big is sent again in fragments of the path MTU;
// send errors are counted and never stop tcpcopy (C exited on them).
//
// Unlike TCP endpoints, UDP endpoints are computed, not leased
// (multiply.go): DNS clients use a new port per query, so a lease per flow
// would cost memory and an allocation per datagram, and a collision of
// two flows on one endpoint is harmless to a service that answers each
// datagram by itself.

import (
	"errors"
	"log/slog"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tcpcopy-go/tcpcopy/internal/logging"
	"github.com/tcpcopy-go/tcpcopy/pkg/datagram"
	"github.com/tcpcopy-go/tcpcopy/pkg/inject"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipfrag"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
)

// maxTooBigRounds bounds the sends of one copy refused as too big: each
// round fragments to a smaller path MTU.
const maxTooBigRounds = 3

// udpCounters are the UDP path's counters. Datagrams are whole datagrams,
// reassembled ones included; packets are what went on the wire.
type udpCounters struct {
	captured   atomic.Uint64 // datagrams to a UDP mapping
	fragments  atomic.Uint64 // fragments of UDP datagrams to a mapped address, given to reassembly
	unmatched  atomic.Uint64 // datagrams (and fragments) to no UDP mapping
	sampledOut atomic.Uint64 // datagrams of flows not selected (-r, -g): not a drop
	copied     atomic.Uint64 // copies sent whole
	fragmented atomic.Uint64 // copies sent in fragments (also counted in copied)
	packets    atomic.Uint64 // IP packets sent: a fragmented copy counts each fragment
	tooBig     atomic.Uint64 // sends refused as larger than the path MTU (sent again smaller)
	invalid    atomic.Uint64 // malformed UDP datagrams and fragments
	truncated  atomic.Uint64 // datagrams cut by the snap length
	sendError  atomic.Uint64 // copies not sent whole: the sender refused a packet
}

// udpCopier copies the datagrams of the udp: mappings. It is safe for
// concurrent use: every reading goroutine brings its own udpScratch.
type udpCopier struct {
	// rw is the engine's rewriter with the UDP mappings in place of the
	// TCP ones: its match, sampled, fakeAddr and fakePort serve UDP
	// unchanged.
	rw      rewriter
	copies  int
	snd     sender
	maxLen  int                          // -M
	mtu     map[netip.Addr]*atomic.Int64 // per target address: -M, lowered to the path MTU on EMSGSIZE
	online  map[netip.Addr]bool          // online addresses of the UDP mappings
	anyAddr [2]bool                      // a UDP mapping without online address, per family
	ids     atomic.Uint32                // IPv4/IPv6 identifications of copies that may be fragmented
	c       udpCounters
	log     *slog.Logger
	warn    *logging.Limiter

	mu   sync.Mutex // guards frag
	frag *ipfrag.Reassembler

	// answers follows the target's answers (udpanswer.go); nil without
	// intercepts.
	answers *udpTracker
	// cmp compares them with the online server's (udpcompare.go); nil
	// without answers or with the comparison off.
	cmp *udpComparer
}

// udpScratch is one reading goroutine's buffers (batch.udp).
type udpScratch struct {
	at    int64 // when the packet being handled was captured (batch.time)
	p     datagram.Parsed
	f     ipfrag.Fragment
	fr    ipfrag.Fragmenter
	out   []byte // a copy being built
	frag  []byte // a fragment of it
	whole []byte // a reassembled datagram; made with the first fragment
}

// mappingsOf returns the mappings of protocol p, in order.
func mappingsOf(ms []Mapping, p Protocol) []Mapping {
	var out []Mapping
	for _, m := range ms {
		if m.Proto == p {
			out = append(out, m)
		}
	}
	return out
}

// newUDPCopier returns the copier of cfg's UDP mappings, nil without any.
func newUDPCopier(cfg *Config, rw *rewriter, snd sender, log *slog.Logger) *udpCopier {
	maps := mappingsOf(cfg.Mappings, ProtoUDP)
	if len(maps) == 0 {
		return nil
	}
	u := &udpCopier{
		rw: *rw, copies: max(cfg.Copies, 1), snd: snd, maxLen: cfg.MTU,
		mtu:    make(map[netip.Addr]*atomic.Int64),
		online: make(map[netip.Addr]bool),
		log:    log, warn: logging.NewLimiter(10 * time.Second),
		frag: ipfrag.New(ipfrag.Config{}),
	}
	u.rw.mappings, u.rw.eps = maps, nil
	for _, m := range maps {
		if u.mtu[m.Target.Addr()] == nil {
			v := new(atomic.Int64)
			v.Store(int64(cfg.MTU))
			u.mtu[m.Target.Addr()] = v
		}
		if a := m.Online.Addr(); a.IsValid() {
			u.online[a] = true
		} else {
			u.anyAddr[familyIndex(m.Is6())] = true
		}
	}
	return u
}

// scratch returns the goroutine's buffers of batch b, made on first use.
func (u *udpCopier) scratch(b *batch) *udpScratch {
	if b.udp == nil {
		b.udp = &udpScratch{out: make([]byte, ipfrag.MaxDatagramLen), frag: make([]byte, u.maxLen)}
	}
	return b.udp
}

// wantsAddr reports whether a fragment to a may belong to a UDP mapping.
func (u *udpCopier) wantsAddr(a netip.Addr) bool {
	return u.anyAddr[familyIndex(a.Is6())] || u.online[a]
}

// copyUDP copies data, a captured packet that TCP's decoding (tp) did not
// take, when it is a UDP datagram or fragment: of offline pass pass, at
// now, with the goroutine's batch b. A datagram from a mapping's online
// side is an online answer, for the comparison (udpcompare.go); one this
// host sent (outgoing) is never copied. It reports whether the packet was
// UDP (and counted here); the caller counts the others. Non-fragmented
// datagrams cost no allocation.
func (e *engine) copyUDP(data []byte, tp *ipmangle.Parsed, b *batch, pass uint32, now int64, outgoing bool) bool {
	u := e.udp
	if tp.Reason != ipmangle.ReasonNotTCP && tp.Reason != ipmangle.ReasonFragment {
		return false
	}
	s := u.scratch(b)
	s.at = b.time(now)
	s.p.Decode(data)
	switch s.p.Reason {
	case datagram.ReasonOK:
		e.copyDatagram(data, s, pass, now, outgoing)
		return true
	case datagram.ReasonFragment:
		return e.copyFragment(data, s, pass, now, outgoing)
	case datagram.ReasonLength:
		u.c.invalid.Add(1)
		return true
	}
	return false
}

// copyDatagram copies the datagram data decoded into s.p; with the
// comparison, a datagram from a mapping's online side goes to it instead.
// An outgoing datagram is never copied.
func (e *engine) copyDatagram(data []byte, s *udpScratch, pass uint32, now int64, outgoing bool) {
	u, p := e.udp, &s.p
	mi, ok := u.rw.matchIndex(p.Dst)
	if !ok || outgoing {
		if !ok && u.cmp != nil && e.onlineUDP(data, s, pass, now) {
			return
		}
		u.c.unmatched.Add(1)
		return
	}
	m := &u.rw.mappings[mi]
	u.c.captured.Add(1)
	if p.Truncated {
		u.c.truncated.Add(1)
		return
	}
	if !u.rw.sampled(p.Src, e.percentNow(now)) {
		u.c.sampledOut.Add(1)
		return
	}
	f := datagram.Fields{Dst: m.Target, TOS: p.TOS, TTL: p.TTL, FlowLabel: p.FlowLabel,
		ID: p.ID, DontFragment: p.DontFragment, Payload: p.Payload(data)}
	for i := range u.copies {
		v := uint64(pass)*uint64(u.copies) + uint64(i)
		f.Src = netip.AddrPortFrom(u.rw.fakeAddr(p.Src.Addr(), v), u.rw.fakePort(p.Src.Port(), v))
		if p.IPVersion == 4 && !p.DontFragment {
			// A router may fragment it: each copy needs its own
			// identification, or the target could put a copy together
			// from the fragments of two (RFC 6864 §4.1).
			f.ID = uint16(u.nextID())
		}
		n := f.Encode(s.out)
		if n == 0 {
			// Encode refuses only what its IP length fields cannot hold;
			// the payload came from a datagram of the same family and
			// header size, so this is a bug made harmless.
			u.c.invalid.Add(1)
			return
		}
		// The query waits for its answer from before it leaves (its
		// route must beat the answer to intercept); one that could not
		// be sent waits no more.
		tracked := u.answers != nil && u.answers.query(now, mi, f.Src, m.Target)
		compared := i == 0 && u.cmp != nil // -n: the first copy's answers only
		if compared {
			u.cmp.query(flowKey(f.Src, m.Target), s.at, now, m.Online.Port(), f.Payload, tracked)
		}
		if !u.send(s, m.Target.Addr(), s.out[:n]) && tracked {
			u.answers.unsent(mi, f.Src, m.Target)
			if compared {
				u.cmp.unsent(flowKey(f.Src, m.Target))
			}
		}
	}
}

// copyFragment files the fragment data; when it completes a datagram,
// copies that (copyDatagram). It reports whether data was a fragment of
// UDP.
func (e *engine) copyFragment(data []byte, s *udpScratch, pass uint32, now int64, outgoing bool) bool {
	u := e.udp
	k := s.f.Decode(data)
	switch {
	case k == ipfrag.NotFragment || s.f.Proto != datagram.ProtocolUDP:
		return false
	case k == ipfrag.Malformed:
		u.c.invalid.Add(1)
		return true
	case !u.wantsAddr(s.f.Dst) && (u.cmp == nil || !u.wantsAddr(s.f.Src)):
		// Neither to a mapping's address nor, with the comparison, from
		// one (an online answer's fragment).
		u.c.unmatched.Add(1)
		return true
	}
	u.c.fragments.Add(1)
	if s.whole == nil {
		s.whole = make([]byte, ipfrag.MaxDatagramLen)
	}
	u.mu.Lock()
	n, res := u.frag.Add(&s.f, data, now, s.whole)
	u.mu.Unlock()
	if res != ipfrag.Complete {
		return true
	}
	whole := s.whole[:n]
	if s.p.Decode(whole); !s.p.Valid {
		u.c.invalid.Add(1)
		return true
	}
	e.copyDatagram(whole, s, pass, now, outgoing)
	return true
}

// onlineUDP hands the datagram data decoded into s.p to the comparison if
// it comes from a UDP mapping's online side: an answer of the online
// server to a client flow whose first copy goes to the target (offline
// pass pass). It reports false if data is no such answer. It allocates
// nothing.
func (e *engine) onlineUDP(data []byte, s *udpScratch, pass uint32, now int64) bool {
	u, p := e.udp, &s.p
	mi, ok := u.rw.matchIndex(p.Src)
	if !ok {
		return false
	}
	e.responses.Add(1)
	if !u.rw.sampled(p.Dst, e.percentNow(now)) {
		return true // a flow not copied
	}
	n := p.PayloadLen
	payload := p.Payload(data)
	if p.Truncated {
		// Cut by the snap length: its first bytes, no hash
		// (online_incomplete).
		payload = data[min(p.PayloadOffset, len(data)):min(p.PayloadOffset+n, len(data))]
	}
	u.cmp.onlineAnswer(u.copiedFlow(p.Dst, u.rw.mappings[mi].Target, pass), s.at, payload, n)
	return true
}

// nextID returns the identification of a copy that may be fragmented:
// never 0, which Linux's raw IPv4 socket would replace per fragment.
func (u *udpCopier) nextID() uint32 {
	for {
		if id := u.ids.Add(1); uint16(id) != 0 {
			return id
		}
	}
}

// send sends the copy pkt to dst: whole if it fits the MTU toward dst,
// else in fragments. A copy the kernel refuses as too big (EMSGSIZE) is
// fragmented to the path MTU the sender reports and sent again, and that
// MTU is kept for dst. Any other error drops the copy (send_error): the
// fragments already sent of it die in the target's reassembly. It reports
// whether the copy was sent.
func (u *udpCopier) send(s *udpScratch, dst netip.Addr, pkt []byte) bool {
	mtu := u.mtu[dst]
	for range maxTooBigRounds {
		m := int(mtu.Load())
		err := u.sendOnce(s, pkt, m)
		if err == nil {
			u.c.copied.Add(1)
			if len(pkt) > m {
				u.c.fragmented.Add(1)
			}
			return true
		}
		if !errors.Is(err, inject.ErrTooBig) {
			u.sendFailed(err)
			return false
		}
		u.c.tooBig.Add(1)
		mt, ok := u.snd.(mtuTeller)
		if !ok {
			break
		}
		pm := mt.PathMTU(dst)
		if pm <= 0 || pm >= m {
			break
		}
		mtu.CompareAndSwap(int64(m), int64(pm))
	}
	u.sendFailed(inject.ErrTooBig)
	return false
}

// sendOnce sends pkt whole or in fragments of at most mtu bytes, and
// stops at the first error.
func (u *udpCopier) sendOnce(s *udpScratch, pkt []byte, mtu int) error {
	if len(pkt) <= mtu {
		if err := u.snd.Send(pkt); err != nil {
			return err
		}
		u.c.packets.Add(1)
		return nil
	}
	if !s.fr.Reset(pkt, mtu, u.nextID()) {
		return inject.ErrTooBig // no room for data after the headers
	}
	for f := s.fr.Next(s.frag); f != nil; f = s.fr.Next(s.frag) {
		if err := u.snd.Send(f); err != nil {
			return err
		}
		u.c.packets.Add(1)
	}
	return nil
}

// sendFailed counts a copy that could not be sent and logs at a limited
// rate.
func (u *udpCopier) sendFailed(err error) {
	u.c.sendError.Add(1)
	if ok, n := u.warn.Allow(time.Now()); ok {
		u.log.Warn("sending a UDP copy to the target failed; datagram dropped", "err", err, "suppressed", n)
	}
}

// relevant reports whether the offline file's packet ip is for the UDP
// path: a datagram to a UDP mapping or a fragment of UDP to a mapped
// address (so that the replay paces it like the capture).
func (u *udpCopier) relevant(ip []byte) bool {
	var p datagram.Parsed
	p.Decode(ip)
	if p.Valid {
		_, ok := u.rw.match(p.Dst)
		return ok
	}
	if p.Reason != datagram.ReasonFragment {
		return false
	}
	var f ipfrag.Fragment
	return f.Decode(ip) != ipfrag.NotFragment && f.Proto == datagram.ProtocolUDP && u.wantsAddr(f.Dst)
}

// udpStats is a snapshot of the UDP path's counters.
type udpStats struct {
	captured, fragments, reassembled, unmatched, sampledOut uint64
	copied, fragmented, packets, tooBig                     uint64
	invalid, truncated, sendError                           uint64
	fragDrops                                               [ipfrag.NumDrops]uint64
	pending                                                 int
	answers                                                 *udpAnswerStats // nil without intercepts
}

// stats reads the counters; it first drops the fragments whose time has
// passed at now, so that timeouts are counted without waiting for the
// next fragment.
func (u *udpCopier) stats(now int64) udpStats {
	u.mu.Lock()
	u.frag.Expire(now)
	fs := u.frag.Stats()
	u.mu.Unlock()
	var as *udpAnswerStats
	if u.answers != nil {
		a := u.answers.stats()
		as = &a
	}
	return udpStats{
		answers:  as,
		captured: u.c.captured.Load(), fragments: u.c.fragments.Load(), reassembled: fs.Reassembled,
		unmatched: u.c.unmatched.Load(), sampledOut: u.c.sampledOut.Load(),
		copied: u.c.copied.Load(), fragmented: u.c.fragmented.Load(), packets: u.c.packets.Load(), tooBig: u.c.tooBig.Load(),
		invalid: u.c.invalid.Load(), truncated: u.c.truncated.Load(), sendError: u.c.sendError.Load(),
		fragDrops: fs.Dropped, pending: fs.Pending,
	}
}

// drops lists the datagrams dropped, by reason label. Datagrams not
// selected by -r/-g are not drops (udp_datagrams_sampled_out_total).
func (s *udpStats) drops() []labelled {
	d := []labelled{{"invalid", s.invalid}}
	for i, n := range s.fragDrops {
		if ipfrag.Drop(i) == ipfrag.DropTruncated {
			continue // counted with the whole datagrams cut
		}
		d = append(d, labelled{ipfrag.Drop(i).String(), n})
	}
	return append(d,
		labelled{"truncated", s.truncated + s.fragDrops[ipfrag.DropTruncated]},
		labelled{"send_error", s.sendError})
}

// dropped is the sum of drops.
func (s *udpStats) dropped() uint64 {
	var n uint64
	for _, d := range s.drops() {
		n += d.n
	}
	return n
}

// udpMetrics adds the UDP path's metrics with the collector's counter and
// gauge helpers, and returns the description of the labelled drops
// (docs/metrics.md, "UDP").
func udpMetrics(counter func(name, help string, f func(*snapshot) uint64), gauge func(name, help string, f func(*snapshot) float64)) *prometheus.Desc {
	counter("udp_datagrams_captured_total", "UDP datagrams to a udp: mapping, whole or reassembled from fragments.", func(s *snapshot) uint64 { return s.udp.captured })
	counter("udp_fragments_captured_total", "Fragments of UDP datagrams to a udp: mapping's address, given to reassembly.", func(s *snapshot) uint64 { return s.udp.fragments })
	counter("udp_datagrams_reassembled_total", "UDP datagrams put back together from their fragments.", func(s *snapshot) uint64 { return s.udp.reassembled })
	counter("udp_datagrams_unmatched_total", "UDP datagrams and fragments captured for no udp: mapping (a -F filter wider than the mappings, other ports of a mapped address).", func(s *snapshot) uint64 { return s.udp.unmatched })
	counter("udp_datagrams_sampled_out_total", "UDP datagrams of client flows not copied (-r, -g); not a drop.", func(s *snapshot) uint64 { return s.udp.sampledOut })
	counter("udp_datagrams_copied_total", "Copies of UDP datagrams sent whole to the target (-n counts each copy).", func(s *snapshot) uint64 { return s.udp.copied })
	counter("udp_datagrams_fragmented_total", "Copies of UDP datagrams sent in fragments, being longer than the MTU (-M) or the path MTU; also in udp_datagrams_copied_total.", func(s *snapshot) uint64 { return s.udp.fragmented })
	counter("udp_packets_sent_total", "IP packets of UDP copies sent: datagrams and fragments.", func(s *snapshot) uint64 { return s.udp.packets })
	counter("udp_packets_too_big_total", "UDP copies the kernel refused as larger than the path MTU (EMSGSIZE); sent again in fragments of the path MTU.", func(s *snapshot) uint64 { return s.udp.tooBig })
	gauge("udp_fragments_pending", "UDP datagrams waiting for their missing fragments now.", func(s *snapshot) float64 { return float64(s.udp.pending) })
	return prometheus.NewDesc("tcpcopy_udp_datagrams_dropped_total",
		"UDP datagrams not copied, by reason: invalid, truncated, fragment_timeout, fragment_overflow, fragment_overlap, fragment_bad, too_big, send_error.", []string{"reason"}, nil)
}

// udpAttrs adds the UDP counters to a log line's attributes (with
// perMapping, the answer counts of each mapping); nothing without UDP
// mappings.
func (e *engine) udpAttrs(attrs []any, perMapping bool) []any {
	if e.udp == nil {
		return attrs
	}
	s := e.udp.stats(e.now())
	attrs = append(attrs, "udp_captured", s.captured, "udp_copied", s.copied, "udp_fragmented", s.fragmented,
		"udp_sampled_out", s.sampledOut, "udp_dropped", s.dropped())
	if s.fragments > 0 {
		attrs = append(attrs, "udp_fragments", s.fragments, "udp_reassembled", s.reassembled)
	}
	for _, d := range s.drops() {
		if d.n > 0 {
			attrs = append(attrs, "udp_dropped_"+d.label, d.n)
		}
	}
	if s.answers != nil {
		attrs = s.answers.answerAttrs(attrs, e.udp.labels(), perMapping)
	}
	return attrs
}

// labels names the UDP mappings, as the metrics label them.
func (u *udpCopier) labels() []string {
	out := make([]string, len(u.rw.mappings))
	for i, m := range u.rw.mappings {
		out[i] = m.String()
	}
	return out
}
