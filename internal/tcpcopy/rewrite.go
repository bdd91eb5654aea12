package tcpcopy

import (
	"hash/maphash"
	"net/netip"

	"github.com/tcpcopy-go/tcpcopy/pkg/tcpstate"
)

// rewriter decides, per captured packet, whether it is copied and as which
// sessions: the mapping it matches gives the target; -H, -c, -f and -n
// give the client endpoint the target sees; -r and -g sample whole
// connections. It is read-only after construction and safe for concurrent
// use; nothing here allocates.
type rewriter struct {
	mappings  []Mapping
	pool      []netip.Addr // -c, IPv4 and IPv6 mixed
	pool4     []netip.Addr
	pool6     []netip.Addr
	localhost netip.Addr
	copies    int
	shift     uint16 // -f << 11
	percent   int
	seed      maphash.Seed
}

func newRewriter(cfg *Config) *rewriter {
	r := &rewriter{
		mappings:  cfg.Mappings,
		pool:      cfg.ClientPool,
		localhost: cfg.LocalhostAs,
		copies:    max(cfg.Copies, 1),
		shift:     uint16(cfg.PortShift) << 11,
		percent:   cfg.Percent,
		seed:      maphash.MakeSeed(),
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
	return r
}

// match returns the mapping a client packet sent to dst belongs to: the
// first listed mapping whose online side is dst, or whose online side is
// any address on dst's port (C TCPCopy's order).
func (r *rewriter) match(dst netip.AddrPort) (*Mapping, bool) {
	for i := range r.mappings {
		m := &r.mappings[i]
		if m.Online.Port() != dst.Port() {
			continue
		}
		if a := m.Online.Addr(); a.IsValid() {
			if a == dst.Addr() {
				return m, true
			}
			continue
		}
		if m.Target.Addr().Is4() == dst.Addr().Is4() {
			return m, true
		}
	}
	return nil, false
}

// sampled reports whether the connection of client is copied at percent
// (0..100). The decision depends only on the client endpoint, so a whole
// connection is kept or dropped (C TCPCopy hashes the same two values).
func (r *rewriter) sampled(client netip.AddrPort, percent int) bool {
	if percent >= 100 {
		return true
	}
	return int(maphash.Comparable(r.seed, client)%100) < percent
}

// key returns the session key of copy i (0-based) of a connection from
// client to mapping m.
func (r *rewriter) key(m *Mapping, client netip.AddrPort, i int) tcpstate.Key {
	addr, port := client.Addr(), client.Port()
	if addr.IsLoopback() && r.localhost.IsValid() {
		addr = r.localhost
	}
	if pool := r.poolFor(addr); len(pool) > 0 {
		// Sticky: one online client address always maps to the same pool
		// address (for copy i, a different one when the pool allows).
		h := maphash.Comparable(r.seed, addr)
		addr = pool[(h+uint64(i))%uint64(len(pool))]
	}
	port += r.shift
	if i > 0 {
		// Spread copies far apart in the port space (C TCPCopy shifts by
		// (2i-1)*32 plus a random offset); ports below 1024 are skipped.
		port = 1024 + uint16((uint32(port)+uint32(i)*4099)%(65536-1024))
	}
	return tcpstate.Key{Client: netip.AddrPortFrom(addr, port), Target: m.Target}
}

func (r *rewriter) poolFor(a netip.Addr) []netip.Addr {
	if a.Is4() {
		return r.pool4
	}
	return r.pool6
}
