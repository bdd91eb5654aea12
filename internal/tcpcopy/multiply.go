package tcpcopy

// multiply.go gives every copy of a client connection the client endpoint
// (address and port) the target sees: -c (address pool), -H (loopback
// clients), -f (port shift), -n (copies) and -T (offline passes) all come
// down to choosing endpoints that never collide.
//
// Where we differ from C TCPCopy (tcpcopy-c.md §3.11): C derives the
// endpoint of copy i by arithmetic alone (port + (2i-1)*32 + R, address by
// hash) and never checks whether another session already uses it, so
// copies collide, more often with few client addresses and short
// connections (C issues #146, #248, #286, #311). We track every endpoint
// in use per target and probe further when the preferred one is taken.

import (
	"net/netip"
	"sync"

	"github.com/tcpcopy-go/tcpcopy/pkg/tcpstate"
	"github.com/tcpcopy-go/tcpcopy/pkg/wire"
)

// Endpoint allocation parameters.
const (
	// lowPort is the first port used for copies other than the first
	// (ports below it stay with copies of clients that used them).
	lowPort   = 1024
	portSpace = 65536 - lowPort
	// copyStride spreads the preferred ports of a connection's copies over
	// the port space: copy v starts v*copyStride ports away from the
	// client's own port, far from the neighbouring ports a client's other
	// connections use (C used (2i-1)*32 + R: its copies met the client's
	// next connections). It is prime, so coprime with portSpace.
	copyStride = 10007
	// probeStride is the step between the ports tried after a collision.
	probeStride = 257
	// maxProbes bounds the ports tried per copy; past it the copy is not
	// made and counted (its address is full: about 64 000 endpoints in
	// use toward one target).
	maxProbes = 256
	// quarantine is how long an endpoint whose session ended stays with
	// its original connection: late packets of the connection (and a new
	// connection reusing the client's port) get the same endpoint, and
	// packets dispatched before the end are processed before anyone else
	// may take it. Nanoseconds.
	quarantine = int64(5e9)
	// sweepPerAlloc is how many old leases each new connection examines
	// for reclaiming, so memory stays bounded without a timer.
	sweepPerAlloc = 2
)

// connKey identifies an original client connection: the client and the
// online server it talked to, and the offline pass (-T) that replays it.
type connKey struct {
	client netip.AddrPort
	server netip.AddrPort
	pass   uint32
}

// lease is the set of endpoints one original connection's copies use.
// fakes is written once, under the allocator's lock, before the lease is
// published, and never changes after: readers may use it without the
// lock. An invalid entry is a copy that got no endpoint.
type lease struct {
	conn   connKey
	target netip.AddrPort
	fakes  []netip.AddrPort
	// Under the allocator's lock:
	live    []bool // copy i has a session (its route is announced)
	nlive   int
	lastUse int64
	gone    bool
}

// slotRef names copy i of lease l.
type slotRef struct {
	l *lease
	i int32
}

// endpointStats are the allocator's counters.
type endpointStats struct {
	Conns     uint64 // original connections that got a lease
	Copies    uint64 // endpoints allocated (at most Conns × copies)
	Exhausted uint64 // copies not made: no free endpoint within maxProbes
	Probes    uint64 // endpoints skipped because another session held them
	Reclaimed uint64 // leases reclaimed after their sessions ended
	Active    int    // leases held now
}

// Multiplication returns the endpoints allocated per original connection:
// the multiplication -n really achieved.
func (s *endpointStats) Multiplication() float64 {
	if s.Conns == 0 {
		return 0
	}
	return float64(s.Copies) / float64(s.Conns)
}

// endpoints allocates client endpoints for the copies of connections and
// tracks which are in use, per target. It is safe for concurrent use: the
// capture side calls lease, the workers report session starts and ends
// through route.
//
// An endpoint is in use from its allocation until its session has ended
// (tcpstate withdraws the route, wire.RouteDel) and quarantine has passed
// without a packet of its connection. A lease whose sessions never start
// (a stray ACK of a connection tcpcopy does not copy, -O, memory shedding)
// is reclaimed after quarantine without packets too.
type endpoints struct {
	rw     *rewriter
	copies int

	mu     sync.Mutex
	leases map[connKey]*lease
	inUse  map[tcpstate.Key]slotRef
	ring   []*lease // leases in allocation order, for the sweep
	head   int
	st     endpointStats
}

func newEndpoints(rw *rewriter) *endpoints {
	return &endpoints{
		rw:     rw,
		copies: rw.copies,
		leases: make(map[connKey]*lease),
		inUse:  make(map[tcpstate.Key]slotRef),
	}
}

// lease returns the lease of connection c toward target, allocating one
// for a new connection. The caller reads the returned lease's fakes
// without holding any lock.
func (e *endpoints) lease(c connKey, target netip.AddrPort, now int64) *lease {
	e.mu.Lock()
	defer e.mu.Unlock()
	if l := e.leases[c]; l != nil {
		l.lastUse = max(l.lastUse, now)
		return l
	}
	e.sweepLocked(now)
	l := &lease{
		conn: c, target: target, lastUse: now,
		fakes: make([]netip.AddrPort, e.copies),
		live:  make([]bool, e.copies),
	}
	for i := range e.copies {
		v := uint64(c.pass)*uint64(e.copies) + uint64(i)
		addr := e.rw.fakeAddr(c.client.Addr(), v)
		p0 := e.rw.fakePort(c.client.Port(), v)
		seed := hashAddrPort(c.client) + v
		for a := range maxProbes {
			k := tcpstate.Key{Client: netip.AddrPortFrom(addr, probePort(p0, seed, a)), Target: target}
			if ref, ok := e.inUse[k]; ok {
				if ref.l == l || !reclaimable(ref.l, now) {
					e.st.Probes++
					continue
				}
				e.dropLocked(ref.l)
			}
			e.inUse[k] = slotRef{l: l, i: int32(i)}
			l.fakes[i] = k.Client
			break
		}
		if l.fakes[i].IsValid() {
			e.st.Copies++
		} else {
			e.st.Exhausted++
		}
	}
	e.leases[c] = l
	e.ring = append(e.ring, l)
	e.st.Conns++
	return l
}

// existing returns the lease of connection c, or nil if none was made
// (its packets were never copied). It allocates nothing.
func (e *endpoints) existing(c connKey) *lease {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.leases[c]
}

// probePort is the a-th port tried for a copy whose preferred port is p0.
// After p0 the probes walk lowPort..65535 from a point that depends on
// seed (the connection), so that connections preferring the same port do
// not all probe the same few others.
func probePort(p0 uint16, seed uint64, a int) uint16 {
	if a == 0 {
		return p0
	}
	return uint16(lowPort + (seed%portSpace+uint64(a)*probeStride)%portSpace)
}

// reclaimable reports whether l may give up its endpoints: no session of
// it is alive and its connection has been quiet for quarantine.
func reclaimable(l *lease, now int64) bool {
	return l.gone || (l.nlive == 0 && now-l.lastUse >= quarantine)
}

// route learns that the session of key k started (add) or ended.
func (e *endpoints) route(k tcpstate.Key, add bool, now int64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ref, ok := e.inUse[k]
	if !ok {
		return
	}
	l := ref.l
	switch {
	case add && !l.live[ref.i]:
		l.live[ref.i] = true
		l.nlive++
	case !add && l.live[ref.i]:
		l.live[ref.i] = false
		l.nlive--
		l.lastUse = max(l.lastUse, now)
	}
}

// sweepLocked examines the oldest leases: reclaims those that may go and
// moves the others to the back.
func (e *endpoints) sweepLocked(now int64) {
	for range sweepPerAlloc {
		if e.head == len(e.ring) {
			break
		}
		l := e.ring[e.head]
		e.ring[e.head] = nil
		e.head++
		switch {
		case l.gone:
		case reclaimable(l, now):
			e.dropLocked(l)
		default:
			e.ring = append(e.ring, l)
		}
	}
	if e.head > 64 && e.head*2 > len(e.ring) {
		n := copy(e.ring, e.ring[e.head:])
		clear(e.ring[n:])
		e.ring = e.ring[:n]
		e.head = 0
	}
}

// dropLocked frees every endpoint of l.
func (e *endpoints) dropLocked(l *lease) {
	if l.gone {
		return
	}
	l.gone = true
	if e.leases[l.conn] == l {
		delete(e.leases, l.conn)
	}
	for i, f := range l.fakes {
		k := tcpstate.Key{Client: f, Target: l.target}
		if ref, ok := e.inUse[k]; ok && ref.l == l && int(ref.i) == i {
			delete(e.inUse, k)
		}
	}
	e.st.Reclaimed++
}

// stats returns a snapshot of the counters.
func (e *endpoints) stats() endpointStats {
	e.mu.Lock()
	defer e.mu.Unlock()
	st := e.st
	st.Active = len(e.leases)
	return st
}

// trackedRouter sits between a worker and the intercept links: it tells
// the allocator when sessions start and end (tcpstate announces a route
// when it opens a session and withdraws it when it frees one), then passes
// the route on. Embedding keeps the rest of the router interface.
type trackedRouter struct {
	router
	eps *endpoints
	now func() int64
}

func (t trackedRouter) Route(r wire.Route) bool {
	t.eps.route(tcpstate.Key{Client: r.Client, Target: r.Target}, r.Op == wire.RouteAdd, t.now())
	return t.router.Route(r)
}
