// Package router is intercept's route table: it maps a copied connection,
// identified exactly by its (client, target) address pair as tcpcopy sent
// it to the target, to the tcpcopy link that owns it. The key names no
// protocol: intercept keeps one table for TCP connections and another for
// UDP flows, so the two never mix.
//
// Routes are added by route messages from tcpcopy, refreshed whenever a
// response is routed with them, deleted by an explicit delete message (our
// tcpcopy sends one when a session ends; C tcpcopy never does) or when the
// owner's link is gone, and expire after an idle time. A response that
// arrives before its route (the target's SYN-ACK can beat the route message,
// and a RST can answer a SYN at once) is held for a bounded time in a bounded
// pool and delivered when the route comes.
//
// Where C intercept differs: it keys routes by a 32-bit hash of the four
// values, so colliding connections are routed to the same tcpcopy, and it
// never deletes routes. This table is exact, counts a route that another
// owner takes over (last writer wins, as in C), and bounds its size twice:
// each owner may hold at most MaxPerOwner routes (past it its adds are
// refused), and the whole table MaxRoutes; a full table makes room only
// among the adding owner's own routes, so one link can never push out
// another's.
//
// A Table is safe for concurrent use. Lookup, the per-packet operation,
// neither allocates nor blocks on other shards.
package router

import (
	"hash/maphash"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Key identifies a copied connection from the target's point of view.
// For a response packet, Client is its destination and Target its source.
type Key struct {
	Client netip.AddrPort
	Target netip.AddrPort
}

// Owner identifies the tcpcopy link a route belongs to. Zero means none.
type Owner uint64

// Meta is what the table keeps beside a held packet's bytes.
type Meta struct {
	PayloadLen int   // the response's real payload length
	Time       int64 // capture time, Unix nanoseconds
	// Hash is the whole payload's hash, if Hashed: computed by the caller
	// before it cut the packet for holding (intercept: a UDP answer's,
	// for the response comparison).
	Hash   uint64
	Hashed bool
}

// DeliverFunc receives a held packet when its route arrives. data is valid
// only during the call.
type DeliverFunc func(owner Owner, data []byte, m Meta)

// Config sets a Table's limits. Zero values take the defaults.
type Config struct {
	// IdleTimeout is how long a route lives without traffic or refresh.
	// C tcpcopy never deletes its routes and keeps idle sessions up to
	// 720 s by default (-k), so the default is 15 minutes.
	IdleTimeout time.Duration
	// MaxRoutes bounds the table (spread over its shards). An add that
	// finds its shard full evicts the adding owner's stalest route there,
	// if it has one, and is refused otherwise: another owner's routes are
	// never evicted. Default 1<<21.
	MaxRoutes int
	// MaxPerOwner bounds the routes one owner (one tcpcopy link) holds;
	// past it the owner's adds of new routes are refused and counted.
	// Default 1<<20.
	MaxPerOwner int
	// HoldTime is how long a packet without a route is kept. Default 5 s
	// (C tcpcopy gives up on a handshake after 3 s).
	HoldTime time.Duration
	// MaxHeld bounds the number of held packets. Default 8192.
	MaxHeld int
	// HeldSize is the largest packet (headers plus payload prefix) that can
	// be held; larger ones are cut. Default 256.
	HeldSize int
}

// Stats are the table's counters since it was made.
type Stats struct {
	Routes    int    // routes in the table now
	Held      int    // packets held now
	Added     uint64 // route add messages
	Deleted   uint64 // routes removed by a delete message
	Expired   uint64 // routes removed by idle expiry or owner loss
	Evicted   uint64 // routes pushed out by MaxRoutes (always the adder's own)
	TakenOver uint64 // adds that moved a route to another owner
	// RefusedOwnerFull counts adds refused because their owner held
	// MaxPerOwner routes; RefusedTableFull those refused because the
	// table (the key's shard) was full and held no route of the owner to
	// make room with.
	RefusedOwnerFull, RefusedTableFull uint64
	HeldTotal                          uint64 // packets held for a route that had not come yet
	Released                           uint64 // held packets delivered when the route came
	HeldExpired                        uint64 // held packets dropped after HoldTime
	HeldDropped                        uint64 // packets not held because the pool was full
}

const numShards = 64

// Table is the route table. The zero value is not usable; call New.
type Table struct {
	cfg    Config
	seed   maphash.Seed
	shards [numShards]shard

	added, deleted, expired, evicted, takenOver atomic.Uint64
	refusedOwner, refusedFull                   atomic.Uint64

	// owned counts each owner's routes. Lock order: a shard's mu, then
	// ownMu.
	ownMu sync.Mutex
	owned map[Owner]int

	held heldPool
}

// AddResult is what Add did.
type AddResult uint8

// Add results.
const (
	// Added: a new route.
	Added AddResult = iota
	// Refreshed: the owner already held the route; its time was renewed.
	Refreshed
	// TookOver: the route moved from another owner to this one (last
	// writer wins, as in C).
	TookOver
	// RefusedOwnerFull: the owner holds MaxPerOwner routes already.
	RefusedOwnerFull
	// RefusedTableFull: the key's shard is full and holds no route of the
	// owner to evict.
	RefusedTableFull
)

// Installed reports whether the route now belongs to the owner.
func (r AddResult) Installed() bool { return r <= TookOver }

// String returns the result's name.
func (r AddResult) String() string {
	switch r {
	case Added:
		return "added"
	case Refreshed:
		return "refreshed"
	case TookOver:
		return "took_over"
	case RefusedOwnerFull:
		return "refused_owner_full"
	case RefusedTableFull:
		return "refused_table_full"
	}
	return "AddResult(?)"
}

type shard struct {
	mu     sync.Mutex
	routes map[Key]entry
	_      [40]byte // keep shards on separate cache lines
}

type entry struct {
	owner Owner
	last  int64 // unix nanoseconds of the last add or use
	// The response the target is sending (LookupSegment): ack is the
	// acknowledgement number of its data so far, start the sequence
	// number of its first byte.
	ack, start uint32
	resp       bool // ack and start are set
}

// New returns an empty table with cfg's limits.
func New(cfg Config) *Table {
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 15 * time.Minute
	}
	if cfg.MaxRoutes <= 0 {
		cfg.MaxRoutes = 1 << 21
	}
	if cfg.MaxPerOwner <= 0 {
		cfg.MaxPerOwner = 1 << 20
	}
	if cfg.HoldTime <= 0 {
		cfg.HoldTime = 5 * time.Second
	}
	if cfg.MaxHeld <= 0 {
		cfg.MaxHeld = 8192
	}
	if cfg.HeldSize <= 0 {
		cfg.HeldSize = 256
	}
	t := &Table{cfg: cfg, seed: maphash.MakeSeed(), owned: make(map[Owner]int)}
	for i := range t.shards {
		t.shards[i].routes = make(map[Key]entry)
	}
	t.held.init(cfg.MaxHeld, cfg.HeldSize)
	return t
}

func (t *Table) shardOf(k Key) *shard {
	return &t.shards[maphash.Comparable(t.seed, k)%numShards]
}

// Add installs or refreshes the route k for owner at time now, then hands
// every packet held for k to deliver, oldest first. A new route (or one
// taken over from another owner, last writer wins) is refused when the
// owner holds MaxPerOwner routes; one that finds its shard full evicts the
// owner's own stalest route there, or is refused when there is none.
// Refusals are counted and leave the table unchanged (held packets stay
// held). deliver may be nil when the caller knows nothing is held.
func (t *Table) Add(k Key, owner Owner, now time.Time, deliver DeliverFunc) AddResult {
	t.added.Add(1)
	s := t.shardOf(k)
	ns := now.UnixNano()
	s.mu.Lock()
	old, ok := s.routes[k]
	res := Refreshed
	if !ok || old.owner != owner {
		res = t.claimLocked(s, k, old, ok, owner)
	}
	if res.Installed() {
		s.routes[k] = entry{owner: owner, last: ns}
	}
	s.mu.Unlock()
	switch res {
	case TookOver:
		t.takenOver.Add(1)
	case RefusedOwnerFull:
		t.refusedOwner.Add(1)
		return res
	case RefusedTableFull:
		t.refusedFull.Add(1)
		return res
	}
	if deliver != nil {
		t.held.release(k, owner, ns, t.cfg.HoldTime, deliver)
	}
	return res
}

// claimLocked decides whether owner may have k, which it does not hold
// (old is k's entry if ok), and does the owner accounting. It needs s.mu.
func (t *Table) claimLocked(s *shard, k Key, old entry, ok bool, owner Owner) AddResult {
	t.ownMu.Lock()
	defer t.ownMu.Unlock()
	if t.owned[owner] >= t.cfg.MaxPerOwner {
		return RefusedOwnerFull
	}
	res := Added
	if ok {
		t.disownLocked(old.owner, 1)
		res = TookOver
	} else if len(s.routes) >= t.cfg.MaxRoutes/numShards+1 {
		victim, found := stalestOf(s, owner)
		if !found {
			return RefusedTableFull
		}
		delete(s.routes, victim)
		t.disownLocked(owner, 1)
		t.evicted.Add(1)
	}
	t.owned[owner]++
	return res
}

// disownLocked takes n routes off owner's count. It needs ownMu.
func (t *Table) disownLocked(owner Owner, n int) {
	if c := t.owned[owner] - n; c > 0 {
		t.owned[owner] = c
	} else {
		delete(t.owned, owner)
	}
}

// evictSample bounds the routes of a shard a full-table add looks at for
// one of its owner's: map iteration order is random, so this keeps
// eviction O(1) while still preferring stale routes. An owner with few
// routes in a full shard may not be found and gets its add refused.
const evictSample = 64

// stalestOf returns the least recently used route of owner among a
// bounded sample of s. It needs s.mu.
func stalestOf(s *shard, owner Owner) (Key, bool) {
	var (
		victim Key
		oldest int64
		found  bool
		n      int
	)
	for k, e := range s.routes {
		if e.owner == owner && (!found || e.last < oldest) {
			victim, oldest, found = k, e.last, true
		}
		if n++; n == evictSample {
			break
		}
	}
	return victim, found
}

// OwnerRoutes returns the number of routes owner holds.
func (t *Table) OwnerRoutes(owner Owner) int {
	t.ownMu.Lock()
	defer t.ownMu.Unlock()
	return t.owned[owner]
}

// Delete removes the route k if owner holds it.
func (t *Table) Delete(k Key, owner Owner) bool {
	s := t.shardOf(k)
	s.mu.Lock()
	e, ok := s.routes[k]
	if ok && e.owner == owner {
		delete(s.routes, k)
		t.ownMu.Lock()
		t.disownLocked(owner, 1)
		t.ownMu.Unlock()
	}
	s.mu.Unlock()
	if ok && e.owner == owner {
		t.deleted.Add(1)
		return true
	}
	return false
}

// Lookup returns the owner of route k and marks it used at now. It neither
// allocates nor holds more than one shard lock.
func (t *Table) Lookup(k Key, now time.Time) (Owner, bool) {
	s := t.shardOf(k)
	s.mu.Lock()
	e, ok := s.routes[k]
	if ok {
		e.last = now.UnixNano()
		s.routes[k] = e
	}
	s.mu.Unlock()
	return e.owner, ok
}

// LookupSegment is Lookup for a data segment of the target at seq,
// acknowledging client bytes up to ack: besides the owner it returns the
// segment's offset in the response it belongs to, for the response
// comparison (which wants each response's first bytes), or -1 for a
// segment before the response's start. A response starts with the first
// data segment whose acknowledgement number moved past that of the data
// before it: the target read more of the client's stream before
// answering again. Call it for segments with payload only.
func (t *Table) LookupSegment(k Key, now time.Time, seq, ack uint32) (Owner, int, bool) {
	s := t.shardOf(k)
	s.mu.Lock()
	e, ok := s.routes[k]
	off := -1
	if ok {
		e.last = now.UnixNano()
		if !e.resp || int32(ack-e.ack) > 0 {
			e.ack, e.start, e.resp = ack, seq, true
		}
		if d := int32(seq - e.start); d >= 0 {
			off = int(d)
		}
		s.routes[k] = e
	}
	s.mu.Unlock()
	return e.owner, off, ok
}

// Forget removes route k whatever its owner; the caller found the owner
// gone.
func (t *Table) Forget(k Key) {
	s := t.shardOf(k)
	s.mu.Lock()
	e, ok := s.routes[k]
	if ok {
		delete(s.routes, k)
		t.ownMu.Lock()
		t.disownLocked(e.owner, 1)
		t.ownMu.Unlock()
	}
	s.mu.Unlock()
	if ok {
		t.expired.Add(1)
	}
}

// Hold keeps a copy of data (cut to Config.HeldSize) for route k, to be
// delivered when k is added. It reports false when the pool is full, or
// when k has a route by now: it checks under the lock Add installs routes
// with, so a route added after the caller's Lookup missed never leaves
// the packet held until it expires; the caller looks k up again.
func (t *Table) Hold(k Key, data []byte, m Meta, now time.Time) bool {
	s := t.shardOf(k)
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.routes[k]; ok {
		return false
	}
	return t.held.hold(k, data, m, now.UnixNano())
}

// Expire removes routes idle for longer than the idle timeout, routes whose
// owner alive reports gone (alive may be nil), and held packets older than
// the hold time. Call it periodically, e.g. every second; its cost grows
// with the table's size.
func (t *Table) Expire(now time.Time, alive func(Owner) bool) {
	ns := now.UnixNano()
	cut := ns - int64(t.cfg.IdleTimeout)
	gone := make(map[Owner]int)
	for i := range t.shards {
		s := &t.shards[i]
		var n uint64
		s.mu.Lock()
		for k, e := range s.routes {
			if e.last < cut || (alive != nil && !alive(e.owner)) {
				delete(s.routes, k)
				gone[e.owner]++
				n++
			}
		}
		if len(gone) > 0 {
			t.ownMu.Lock()
			for o, c := range gone {
				t.disownLocked(o, c)
			}
			t.ownMu.Unlock()
			clear(gone)
		}
		s.mu.Unlock()
		if n > 0 {
			t.expired.Add(n)
		}
	}
	t.held.expire(ns - int64(t.cfg.HoldTime))
}

// Stats returns the table's counters.
func (t *Table) Stats() Stats {
	st := Stats{
		Added:     t.added.Load(),
		Deleted:   t.deleted.Load(),
		Expired:   t.expired.Load(),
		Evicted:   t.evicted.Load(),
		TakenOver: t.takenOver.Load(),

		RefusedOwnerFull: t.refusedOwner.Load(),
		RefusedTableFull: t.refusedFull.Load(),
	}
	for i := range t.shards {
		s := &t.shards[i]
		s.mu.Lock()
		st.Routes += len(s.routes)
		s.mu.Unlock()
	}
	t.held.stats(&st)
	return st
}
