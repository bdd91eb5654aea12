package intercept

// udp.go routes the target's UDP answers (docs/protocol.md §4.7): a
// datagram the -F filter captured that is not TCP goes, by the UDP route
// table, to the link that announced its flow (the copy's client endpoint
// and the target), as a UDP record. UDP routes live in a table of their
// own (router.Table), so a TCP connection and a UDP flow on the same
// addresses and ports never mix; its limits are those of TCP routes
// (--max-routes-per-link per link, the table's size), its idle time
// --udp-route-idle, shorter than -t: tcpcopy deletes the route of a flow
// once it is idle, the expiry only catches routes whose delete was lost.
//
// An answer can beat its route (the copy goes straight to the target, the
// route over the link): it is held, as a TCP SYN-ACK is, and delivered
// when the route comes. Fragmented answers: the first fragment, which has
// the UDP header and the datagram's length, makes the record (its payload
// is not whole, so it carries no hash and is not compared); the other
// fragments are counted and ignored.

import (
	"net/netip"
	"time"

	"github.com/tcpcopy-go/tcpcopy/pkg/datagram"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipfrag"
	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
	"github.com/tcpcopy-go/tcpcopy/pkg/router"
	"github.com/tcpcopy-go/tcpcopy/pkg/streamhash"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// udpHeldPayload is the most payload bytes an answer held for its route
// keeps (beside MaxPrefix): a classic DNS answer (RFC 1035 §4.2.1). A
// longer one is delivered cut, with the hash of its whole payload taken
// when it was held, so it is still compared.
const udpHeldPayload = 512

// udpMaxHeld bounds the answers held for their routes (or -s if lower):
// with udpHeldPayload bytes each, about 6 MB.
const udpMaxHeld = 8192

// udpAnswer is a captured UDP datagram (or its first fragment) as routing
// needs it.
type udpAnswer struct {
	src, dst   netip.AddrPort
	hdrLen     int // IP header (with the IPv6 fragment header, if any) and UDP header
	payloadLen int // the whole datagram's payload (UDP length - 8)
	payload    []byte
	fragment   bool  // the first fragment: payload is not whole
	at         int64 // capture time, Unix nanoseconds
	// hash is the whole payload's, if hashed: taken before the answer
	// was cut for holding (payload is then its first bytes only).
	hash   uint64
	hashed bool
}

// udpPacket is the outcome of parseUDP.
type udpPacket uint8

const (
	udpNot      udpPacket = iota // not UDP (or malformed)
	udpWhole                     // a datagram, or its first fragment
	udpFragment                  // a later fragment: ignored
)

// parseUDP decodes data as a UDP answer into a, with the caller's d and f
// as working memory. It allocates nothing.
func parseUDP(data []byte, d *datagram.Parsed, f *ipfrag.Fragment, a *udpAnswer) udpPacket {
	d.Decode(data)
	switch d.Reason {
	case datagram.ReasonOK:
		end := min(len(data), d.PayloadOffset+d.PayloadLen)
		*a = udpAnswer{src: d.Src, dst: d.Dst, hdrLen: d.PayloadOffset, payloadLen: d.PayloadLen,
			payload: data[d.PayloadOffset:max(end, d.PayloadOffset)]}
		return udpWhole
	case datagram.ReasonFragment:
	default:
		return udpNot
	}
	if k := f.Decode(data); k == ipfrag.NotFragment || k == ipfrag.Malformed || f.Proto != datagram.ProtocolUDP {
		return udpNot
	}
	if f.Offset != 0 {
		return udpFragment
	}
	off := f.DataOff
	if len(data) < off+datagram.HeaderLen {
		return udpNot
	}
	u := data[off:]
	ulen := int(u[4])<<8 | int(u[5])
	if ulen < datagram.HeaderLen {
		return udpNot
	}
	end := min(len(data), off+f.DataLen)
	*a = udpAnswer{
		src:        netip.AddrPortFrom(f.Src, uint16(u[0])<<8|uint16(u[1])),
		dst:        netip.AddrPortFrom(f.Dst, uint16(u[2])<<8|uint16(u[3])),
		hdrLen:     off + datagram.HeaderLen,
		payloadLen: ulen - datagram.HeaderLen,
		payload:    data[off+datagram.HeaderLen : max(end, off+datagram.HeaderLen)],
		fragment:   true,
	}
	return udpWhole
}

// handleUDP routes data, a captured packet that is not TCP, if it is a
// UDP answer; it reports whether it was UDP (and counted here). It
// allocates nothing.
func (s *Server) handleUDP(sc *scratch, data []byte, ts int64) bool {
	a := &sc.ua
	switch parseUDP(data, &sc.d, &sc.f, a) {
	case udpNot:
		return false
	case udpFragment:
		s.c.udpFragments.Add(1)
		return true
	}
	s.c.udpCaptured.Add(1)
	a.at = ts
	if orig, ok := s.cfg.Docker[a.dst.Addr()]; ok && orig.Is4() == a.dst.Addr().Is4() {
		// -D: the answer went to the container; route it by the address
		// tcpcopy announced, and give the record that destination.
		n := copy(sc.buf[:], data)
		data = sc.buf[:n]
		setUDPDst(data, a, orig)
		if parseUDP(data, &sc.d, &sc.f, a) != udpWhole {
			return true // cannot happen: only the address changed
		}
		a.at = ts
	}
	k := router.Key{Client: a.dst, Target: a.src}
	now := time.Unix(0, ts)
	owner, ok := s.udpRoutes.Lookup(k, now)
	if !ok {
		n := a.hdrLen + min(len(a.payload), max(s.cfg.MaxPrefix, udpHeldPayload))
		m := router.Meta{PayloadLen: a.payloadLen, Time: ts}
		if n < len(data) && !a.fragment && len(a.payload) == a.payloadLen {
			// Cut for holding: its hash, taken now, keeps it comparable.
			m.Hash, m.Hashed = streamhash.Sum(a.payload), true
		}
		if s.udpRoutes.Hold(k, data[:n], m, now) {
			s.c.udpHeld.Add(1)
			return true
		}
		// The pool is full, or the route came since the lookup.
		if owner, ok = s.udpRoutes.Lookup(k, now); !ok {
			s.c.udpUnrouted.Add(1)
			return true
		}
	}
	l := (*s.links.Load())[owner]
	if l == nil {
		s.udpRoutes.Forget(k)
		s.c.udpUnrouted.Add(1)
		return true
	}
	if !s.enqueueUDP(l, data[:a.hdrLen], a) {
		s.c.dropped.Add(1)
		return true
	}
	s.c.udpRouted.Add(1)
	for _, t := range sc.touched {
		if t == l {
			return true
		}
	}
	sc.touched = append(sc.touched, l)
	return true
}

// enqueueUDP queues the record of answer a (hdr its IP and UDP headers)
// for l: with the comparison on, its first bytes and, if captured whole,
// its payload's hash (every datagram is an answer of its own).
func (s *Server) enqueueUDP(l *link, hdr []byte, a *udpAnswer) bool {
	f := l.format.Load()
	if f == nil || !f.UDP {
		return false
	}
	n := min(max(f.PrefixLen, f.Compare), len(a.payload))
	if f.Compare == 0 || a.payloadLen == 0 {
		return l.enqueue(hdr, a.payloadLen, a.at, a.payload[:n])
	}
	if a.hashed {
		s.c.hashed.Add(1)
		return l.enqueueHashed(hdr, a.payloadLen, a.at, a.payload[:n], a.hash, true)
	}
	if a.fragment || len(a.payload) < a.payloadLen {
		s.c.unhashed.Add(1)
		return l.enqueue(hdr, a.payloadLen, a.at, a.payload[:n])
	}
	s.c.hashed.Add(1)
	return l.enqueueHashed(hdr, a.payloadLen, a.at, a.payload[:n], streamhash.Sum(a.payload), true)
}

// deliverHeldUDP queues an answer that waited for its route. It runs with
// the UDP table's hold pool locked, so it only touches the link.
func (s *Server) deliverHeldUDP(l *link, data []byte, m router.Meta) {
	var (
		d datagram.Parsed
		f ipfrag.Fragment
		a udpAnswer
	)
	if parseUDP(data, &d, &f, &a) != udpWhole {
		return
	}
	a.payloadLen, a.at = m.PayloadLen, m.Time
	a.hash, a.hashed = m.Hash, m.Hashed
	if !s.enqueueUDP(l, data[:a.hdrLen], &a) {
		s.c.dropped.Add(1)
		return
	}
	s.c.udpRouted.Add(1)
}

// udpRouteMsg applies a UDP route message of link l; deliver hands it
// the answers held for the route.
func (s *Server) udpRouteMsg(l *link, r wire.Route, deliver router.DeliverFunc) {
	k := router.Key{Client: r.Client, Target: r.Target}
	if r.Op == wire.RouteDel {
		s.udpRoutes.Delete(k, l.id)
		return
	}
	switch s.udpRoutes.Add(k, l.id, s.now(), deliver) {
	case router.RefusedOwnerFull:
		s.routeRefused(l, refusedLinkCap)
		return
	case router.RefusedTableFull:
		s.routeRefused(l, refusedTableFull)
		return
	}
	l.routed.Store(true)
	l.flush()
}

// setUDPDst sets the destination address of the answer data (decoded in
// a) to addr, of the same family, and updates the IPv4 header checksum and
// the UDP checksum (RFC 1624; a zero IPv4 UDP checksum stays zero: none
// was computed).
func setUDPDst(data []byte, a *udpAnswer, addr netip.Addr) {
	off := 16 // IPv4 destination
	if !addr.Is4() {
		off = 24
	}
	b := addr.AsSlice()
	ucs := a.hdrLen - datagram.HeaderLen + 6
	udpSum := uint16(data[ucs])<<8 | uint16(data[ucs+1])
	ipSum := uint16(data[10])<<8 | uint16(data[11])
	for i := 0; i < len(b); i += 2 {
		old := uint16(data[off+i])<<8 | uint16(data[off+i+1])
		nw := uint16(b[i])<<8 | uint16(b[i+1])
		if udpSum != 0 {
			udpSum = ipmangle.UpdateChecksum16(udpSum, old, nw)
		}
		ipSum = ipmangle.UpdateChecksum16(ipSum, old, nw)
		data[off+i], data[off+i+1] = b[i], b[i+1]
	}
	data[ucs], data[ucs+1] = byte(udpSum>>8), byte(udpSum)
	if addr.Is4() {
		data[10], data[11] = byte(ipSum>>8), byte(ipSum)
	}
}
