package ipfrag

import (
	"encoding/binary"
	"net/netip"
	"time"

	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
)

// Limits and defaults of reassembly.
const (
	// MaxDatagramLen is the longest datagram Add can hand over: an IPv6
	// fixed header with a payload of 65535 bytes. Add's out buffer must
	// hold it.
	MaxDatagramLen = 40 + 65535
	// MaxFragments is the most fragments one datagram may come in: a
	// 64 KiB datagram over IPv4 links of 576 bytes needs 120.
	MaxFragments = 128
	// DefaultMaxDatagrams, DefaultMaxBytes and DefaultTimeout are the
	// defaults of the Config fields. Linux keeps fragments for 30 s
	// (ipfrag_time) and up to 4 MiB (ipfrag_high_thresh); a copy of a
	// datagram a few seconds late is worth little, so we wait less.
	DefaultMaxDatagrams = 64
	DefaultMaxBytes     = 4 << 20
	DefaultTimeout      = 5 * time.Second
	// maxUnfragmentable bounds the IPv4 header or IPv6 unfragmentable part
	// kept per datagram.
	maxUnfragmentable = 256
)

// Drop is why a datagram was dropped before it was whole.
type Drop uint8

// Drop reasons, counted once per datagram.
const (
	DropTimeout   Drop = iota // not complete within Config.Timeout
	DropOverflow              // pushed out by newer datagrams: too many pending, or too many bytes
	DropOverlap               // a fragment overlapped another one
	DropBad                   // a fragment broke the rules: length, end, count (see the package doc)
	DropTooBig                // the datagram would exceed 65535 bytes
	DropTruncated             // a fragment was cut by a capture snap length (Decode said Truncated)
	NumDrops
)

var dropNames = [NumDrops]string{
	DropTimeout:   "fragment_timeout",
	DropOverflow:  "fragment_overflow",
	DropOverlap:   "fragment_overlap",
	DropBad:       "fragment_bad",
	DropTooBig:    "too_big",
	DropTruncated: "truncated",
}

// String returns a lowercase name, usable as a metric label.
func (d Drop) String() string {
	if d < NumDrops {
		return dropNames[d]
	}
	return "unknown"
}

// Result says what Add did with a fragment.
type Result uint8

// Add outcomes.
const (
	// Held: the fragment is kept until its datagram is whole.
	Held Result = iota
	// Complete: the fragment completed its datagram, now in out.
	Complete
	// Dropped: the fragment's datagram was dropped, by this fragment or
	// an earlier one (counted once, in Stats.Dropped).
	Dropped
)

// Config bounds a Reassembler. Zero fields take the defaults.
type Config struct {
	// MaxDatagrams is the most datagrams pending at once.
	MaxDatagrams int
	// MaxBytes is the most fragment data held at once, in bytes; it also
	// bounds the slot buffers kept for reuse (see the package doc).
	MaxBytes int
	// Timeout is how long a datagram may take to complete, from its
	// first fragment.
	Timeout time.Duration
}

// Stats are a Reassembler's counters.
type Stats struct {
	Fragments   uint64           // fragments given to Add
	Duplicates  uint64           // exact duplicates ignored
	Reassembled uint64           // datagrams handed over whole
	Dropped     [NumDrops]uint64 // datagrams dropped, by reason
	Pending     int              // datagrams pending now
	PendingData int              // fragment bytes held now
}

// key identifies a datagram (RFC 791 §3.2, RFC 8200 §4.5).
type key struct {
	src, dst netip.Addr
	id       uint32
	proto    uint8
}

type span struct{ lo, hi int32 }

// slot holds one pending datagram. A dead slot is a dropped datagram kept
// until its timeout, so that its later fragments are absorbed instead of
// starting a new datagram that would be dropped and counted again.
type slot struct {
	used, dead bool
	k          key
	start      int64
	end        int // length of the fragmentable part; -1 until the last fragment
	have       int // data bytes held
	maxHi      int // end of the furthest fragment
	n          int
	spans      [MaxFragments]span
	hdr        [maxUnfragmentable]byte // IPv4 header / IPv6 unfragmentable part of the first fragment
	hdrLen     int                     // 0 until the first fragment arrived
	nhOff      int                     // IPv6: the byte naming the Fragment header, within hdr
	data       []byte
}

// Reassembler puts fragments back together. Make it with New.
type Reassembler struct {
	cfg      Config
	timeout  int64
	slots    []slot
	held     int // data bytes in live slots
	retained int // capacity of the slot buffers
	st       Stats
}

// New returns a Reassembler bounded by cfg.
func New(cfg Config) *Reassembler {
	if cfg.MaxDatagrams <= 0 {
		cfg.MaxDatagrams = DefaultMaxDatagrams
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = DefaultMaxBytes
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultTimeout
	}
	return &Reassembler{cfg: cfg, timeout: int64(cfg.Timeout), slots: make([]slot, cfg.MaxDatagrams)}
}

// Config returns the bounds in effect, defaults filled in.
func (r *Reassembler) Config() Config { return r.cfg }

// Stats returns the counters.
func (r *Reassembler) Stats() Stats {
	st := r.st
	for i := range r.slots {
		if s := &r.slots[i]; s.used && !s.dead {
			st.Pending++
		}
	}
	st.PendingData = r.held
	return st
}

// Add files the fragment b, decoded into f (f.Decode(b) returned
// IsFragment, or Truncated: that drops the datagram), at time now (ns, any monotonic origin). When b completes
// its datagram, Add writes the whole datagram into out, which must be at
// least MaxDatagramLen bytes long, and returns its length with Complete.
// It first drops the datagrams whose timeout has passed.
func (r *Reassembler) Add(f *Fragment, b []byte, now int64, out []byte) (int, Result) {
	r.Expire(now)
	r.st.Fragments++
	k := key{src: f.Src, dst: f.Dst, id: f.ID, proto: f.Proto}
	s := r.find(k)
	if s == nil {
		s = r.alloc(k, now)
	} else if s.dead {
		return 0, Dropped
	}
	lo, hi := f.Offset, f.Offset+f.DataLen
	unfrag := 20 // the least IPv4 header, until the first fragment tells
	if f.Version == 6 {
		unfrag = f.FragHeaderOff - 40
	} else if s.hdrLen > 0 {
		unfrag = s.hdrLen
	}
	switch {
	case f.DataOff+f.DataLen > len(b):
		return r.drop(s, DropTruncated)
	case f.DataLen == 0, f.More && f.DataLen%8 != 0:
		return r.drop(s, DropBad)
	case unfrag+hi > 65535:
		return r.drop(s, DropTooBig)
	case !f.More && s.end >= 0 && s.end != hi,
		!f.More && s.maxHi > hi,
		f.More && s.end >= 0 && hi > s.end:
		return r.drop(s, DropBad)
	}
	for _, sp := range s.spans[:s.n] {
		if int(sp.lo) == lo && int(sp.hi) == hi {
			r.st.Duplicates++
			return 0, Held
		}
		if lo < int(sp.hi) && int(sp.lo) < hi {
			return r.drop(s, DropOverlap)
		}
	}
	if s.n == MaxFragments {
		return r.drop(s, DropBad)
	}
	if lo == 0 {
		h := b[:f.DataOff]
		if f.Version == 6 {
			h = b[:f.FragHeaderOff]
			s.nhOff = f.NextHeaderOff
		}
		if len(h) > maxUnfragmentable {
			return r.drop(s, DropBad)
		}
		if f.Version == 4 && len(h)+max(hi, s.maxHi, s.end) > 65535 {
			return r.drop(s, DropTooBig)
		}
		s.hdrLen = copy(s.hdr[:], h)
	}
	if !r.makeRoom(f.DataLen, s) {
		return r.drop(s, DropOverflow)
	}
	r.grow(s, hi)
	copy(s.data[lo:hi], b[f.DataOff:f.DataOff+f.DataLen])
	s.spans[s.n] = span{int32(lo), int32(hi)}
	s.n++
	s.have += f.DataLen
	r.held += f.DataLen
	s.maxHi = max(s.maxHi, hi)
	if !f.More {
		s.end = hi
	}
	if s.end < 0 || s.have != s.end || s.hdrLen == 0 {
		return 0, Held
	}
	n := r.assemble(s, f.Version, out)
	r.free(s)
	r.st.Reassembled++
	return n, Complete
}

// Expire drops the datagrams (and forgets the dropped ones) whose
// timeout has passed at now.
func (r *Reassembler) Expire(now int64) {
	for i := range r.slots {
		s := &r.slots[i]
		if s.used && now-s.start >= r.timeout {
			if !s.dead {
				r.st.Dropped[DropTimeout]++
			}
			r.free(s)
		}
	}
}

// find returns the slot of k, or nil.
func (r *Reassembler) find(k key) *slot {
	for i := range r.slots {
		if s := &r.slots[i]; s.used && s.k == k {
			return s
		}
	}
	return nil
}

// alloc returns a fresh slot for k: a free one, else the oldest, whose
// datagram is dropped.
func (r *Reassembler) alloc(k key, now int64) *slot {
	var s *slot
	for i := range r.slots {
		c := &r.slots[i]
		if !c.used {
			s = c
			break
		}
		if s == nil || c.start < s.start {
			s = c
		}
	}
	if s.used {
		if !s.dead {
			r.st.Dropped[DropOverflow]++
		}
		r.free(s)
	}
	s.used, s.dead = true, false
	s.k, s.start = k, now
	s.end, s.have, s.maxHi, s.n, s.hdrLen, s.nhOff = -1, 0, 0, 0, 0, 0
	return s
}

// makeRoom drops the oldest other datagrams until need more bytes fit
// under MaxBytes; false if they do not fit even then.
func (r *Reassembler) makeRoom(need int, keep *slot) bool {
	for r.held+need > r.cfg.MaxBytes {
		var old *slot
		for i := range r.slots {
			c := &r.slots[i]
			if c.used && !c.dead && c != keep && c.have > 0 && (old == nil || c.start < old.start) {
				old = c
			}
		}
		if old == nil {
			return false
		}
		r.drop(old, DropOverflow)
	}
	return true
}

// drop counts s's datagram as dropped for reason and keeps s as a dead
// slot until its timeout.
func (r *Reassembler) drop(s *slot, reason Drop) (int, Result) {
	if !s.dead {
		r.st.Dropped[reason]++
	}
	r.release(s)
	s.dead = true
	return 0, Dropped
}

// free empties s.
func (r *Reassembler) free(s *slot) {
	r.release(s)
	s.used, s.dead = false, false
	s.k = key{}
}

// release gives up s's data: the bytes no longer count as held, and its
// buffer goes if the buffers kept exceed MaxBytes.
func (r *Reassembler) release(s *slot) {
	r.held -= s.have
	s.have, s.n, s.maxHi = 0, 0, 0
	if r.retained > r.cfg.MaxBytes {
		r.retained -= cap(s.data)
		s.data = nil
	}
}

// grow makes s.data at least n bytes long, keeping its contents.
func (r *Reassembler) grow(s *slot, n int) {
	if n <= len(s.data) {
		return
	}
	if n <= cap(s.data) {
		s.data = s.data[:n]
		return
	}
	c := min(max(n, 2*cap(s.data), 2048), 65536)
	d := make([]byte, n, c)
	copy(d, s.data)
	r.retained += c - cap(s.data)
	s.data = d
}

// assemble writes s's whole datagram into out and returns its length.
func (r *Reassembler) assemble(s *slot, version uint8, out []byte) int {
	hl := copy(out, s.hdr[:s.hdrLen])
	n := hl + copy(out[hl:], s.data[:s.end])
	if version == 4 {
		h := ipmangle.IPv4(out)
		h.SetTotalLength(uint16(n))
		h.SetFlagsFragmentOffset(0, 0)
		h.SetChecksum(h.CalculateChecksum())
		return n
	}
	out[s.nhOff] = s.k.proto
	binary.BigEndian.PutUint16(out[4:], uint16(n-40))
	return n
}
