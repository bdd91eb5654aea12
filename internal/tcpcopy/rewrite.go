package tcpcopy

import (
	"net/netip"
)

// rewriter decides, per captured packet, whether it is copied and as which
// sessions: the mapping it matches gives the target; -H, -c, -f and -n
// (and -T offline) give the client endpoints the target sees, through the
// endpoint allocator; -r and -g sample whole connections. Its fields are
// read-only after construction; it is safe for concurrent use and, for
// packets of known connections, allocates nothing.
type rewriter struct {
	mappings  []Mapping
	pool4     []netip.Addr // -c
	pool6     []netip.Addr
	localhost netip.Addr // -H
	copies    int        // -n
	shift     uint16     // -f << 11
	percent   int        // -r
	// eps allocates the copies' endpoints; nil when every session keeps
	// its client's own endpoint (no -c, -H, -f, -n, and one pass), which
	// cannot collide, and without TCP mappings.
	eps *endpoints
}

func newRewriter(cfg *Config) *rewriter {
	r := &rewriter{
		mappings:  mappingsOf(cfg.Mappings, ProtoTCP), // UDP: udp.go
		localhost: cfg.LocalhostAs,
		copies:    max(cfg.Copies, 1),
		shift:     uint16(cfg.PortShift) << 11,
		percent:   cfg.Percent,
	}
	for _, a := range cfg.ClientPool {
		if a.Is4() {
			r.pool4 = append(r.pool4, a)
		} else {
			r.pool6 = append(r.pool6, a)
		}
	}
	if r.percent <= 0 || r.percent > 100 {
		r.percent = 100
	}
	if len(r.mappings) > 0 && (r.copies > 1 || len(cfg.ClientPool) > 0 || r.localhost.IsValid() || r.shift != 0 ||
		(cfg.OfflineFile != "" && cfg.Repeat > 1)) {
		r.eps = newEndpoints(r)
	}
	return r
}

// match returns the mapping a client packet sent to dst belongs to: the
// first listed mapping whose online side is dst, or whose online side is
// any address on dst's port (C TCPCopy's order).
func (r *rewriter) match(dst netip.AddrPort) (*Mapping, bool) {
	i, ok := r.matchIndex(dst)
	if !ok {
		return nil, false
	}
	return &r.mappings[i], true
}

// matchIndex is match returning the mapping's index in r.mappings.
func (r *rewriter) matchIndex(dst netip.AddrPort) (int, bool) {
	for i := range r.mappings {
		m := &r.mappings[i]
		if m.Online.Port() != dst.Port() {
			continue
		}
		if a := m.Online.Addr(); a.IsValid() {
			if a == dst.Addr() {
				return i, true
			}
			continue
		}
		if m.Target.Addr().Is4() == dst.Addr().Is4() {
			return i, true
		}
	}
	return 0, false
}

// sampled reports whether the connection of client is copied at percent
// (0..100). The decision depends only on the client endpoint, so a whole
// connection is kept or dropped, and it is the same in every run and on
// every host (C TCPCopy hashes the same two values; its hash is weaker).
func (r *rewriter) sampled(client netip.AddrPort, percent int) bool {
	if percent >= 100 {
		return true
	}
	return int(hashAddrPort(client)%100) < percent
}

// fakeAddr returns the client address copy variant v of a connection from
// a uses: -H for a loopback client, then, with -c, a pool address chosen
// stickily by a hash of the client address (variant v takes the v-th
// address after it, so copies spread over the pool).
func (r *rewriter) fakeAddr(a netip.Addr, v uint64) netip.Addr {
	if a.IsLoopback() && r.localhost.IsValid() {
		a = r.localhost
	}
	pool := r.pool6
	if a.Is4() {
		pool = r.pool4
	}
	if len(pool) > 0 {
		a = pool[(hashAddr(a)+v)%uint64(len(pool))]
	}
	return a
}

// fakePort returns the preferred client port of copy variant v (copy i of
// offline pass p is variant p*copies+i) of a connection from port: the
// port shifted by -f for variant 0, then spread by copyStride over
// lowPort..65535. The -f shift is an addition in host byte order, modulo
// 2^16 as in C (which forgot to swap the result back to network order).
func (r *rewriter) fakePort(port uint16, v uint64) uint16 {
	port += r.shift
	if v == 0 {
		return port
	}
	return uint16(lowPort + (uint64(port)+v*copyStride)%portSpace)
}

// hashAddr and hashAddrPort are fixed (unseeded) hashes, so -r samples and
// -c maps alike in every run: a test replaying the same capture twice
// copies the same connections, with the same addresses.
func hashAddr(a netip.Addr) uint64 {
	b := a.As16()
	var hi, lo uint64
	for i := range 8 {
		hi = hi<<8 | uint64(b[i])
		lo = lo<<8 | uint64(b[8+i])
	}
	return mix64(hi ^ mix64(lo))
}

func hashAddrPort(ap netip.AddrPort) uint64 {
	return mix64(hashAddr(ap.Addr()) ^ uint64(ap.Port())*0x9e3779b97f4a7c15)
}

// mix64 is the SplitMix64 finalizer: every input bit affects every output
// bit.
func mix64(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}
