package tcpstate

import (
	"github.com/tcpcopy-go/tcpcopy/pkg/seqnum"
)

// Segment sizes.
//
// Every packet we send is built afresh (ipmangle.Fields), so its size is
// ours to choose: the payload of a copy never exceeds what the path to the
// target takes with the headers as we build them. That is the smallest of
//
//   - the target's MSS from its SYN-ACK, less our TCP options (RFC 6691:
//     the MSS counts no options; Linux subtracts them as we do), 536
//     (IPv4) or 1220 (IPv6) without an MSS option (RFC 9293 §3.7.1);
//   - the MTU (-M, or the path MTU learned from EMSGSIZE for the target)
//     less the IP header (20 or 40 bytes) and the TCP header with options.
//
// Captured segments longer than that are split when they are sent, so a
// client whose segments carry no timestamps (Windows' default) is copied
// in full: its 1460-byte segments grow by the 12 bytes of our timestamps
// option and are sent as 1448 and 12 bytes. The queue keeps the captured
// segments and splits them only as they go out (fit), so the split
// follows the session's current size, which can shrink: when the kernel
// refuses a packet as too big (Table.TooBig), and when the same data times
// out again and again (a path MTU black hole: a smaller MTU further on
// that drops big packets without an ICMP message, RFC 2923 §2.1). Like
// Linux's tcp_mtu_probing, the segment size then drops to a size every
// path takes after blackholeBackoff timeouts in a row: packets of 1280
// bytes (the IPv6 minimum, and at or below the MTU of every tunnel in
// common use), and 576 for IPv4 if that fails too. The sizes are not
// probed upwards again: a copy is short-lived, and a few bytes of header
// per packet cost the copy nothing.

// Minimum packet sizes every path takes: RFC 791 (576, the usual IPv4
// floor; 68 is the absolute minimum nobody runs) and RFC 8200 §5.
const (
	minMTU4 = 576
	minMTU6 = 1280
)

// plateaus are the common MTUs, largest first (RFC 1191 §7, with the
// values of today's tunnels and overlays).
var plateaus = [...]int{9000, 8166, 4352, 2002, 1500, 1492, 1480, 1450, 1400, 1280, 1006, 576}

// blackholeBackoff is the number of timeouts in a row on the same data
// after which a full-sized segment is taken to be too big for the path.
const blackholeBackoff = 2

// Header sizes of the packets we build.
const (
	ipv4Header = 20
	ipv6Header = 40
	tcpHeader  = 20
	tsOption   = 12 // NOP, NOP, timestamps
)

// headerLen returns the size of the IP and TCP headers of a data packet
// of s as emit builds it.
func (s *session) headerLen() int {
	n := ipv4Header + tcpHeader
	if !s.is4() {
		n = ipv6Header + tcpHeader
	}
	if s.tsOK {
		n += tsOption
	}
	return n
}

// is4 reports an IPv4 session.
func (s *session) is4() bool {
	for _, b := range s.key.target[:10] {
		if b != 0 {
			return false
		}
	}
	return s.key.target[10] == 0xff && s.key.target[11] == 0xff
}

// minMTU returns the smallest MTU of s's IP version.
func (s *session) minMTU() int {
	if s.is4() {
		return minMTU4
	}
	return minMTU6
}

// setMaxSeg computes s.maxSeg for a new connection whose SYN-ACK
// announced mss (0: none).
func (t *Table) setMaxSeg(s *session, mss uint16) {
	opts := 0
	if s.tsOK {
		opts = tsOption
	}
	peer := int(mss)
	if peer == 0 {
		peer = 536
		if !s.is4() {
			peer = 1220
		}
	}
	n := min(peer-opts, t.pathMTU(s)-s.headerLen())
	s.maxSeg = uint16(max(n, 1))
}

// pathMTU returns the MTU toward s's target: -M, or less if the kernel
// told us (TooBig).
func (t *Table) pathMTU(s *session) int {
	m := t.cfg.MTU
	if len(t.pmtu) > 0 {
		if v, ok := t.pmtu[s.key.target]; ok && v < m {
			m = v
		}
	}
	return m
}

// lowerMaxSeg makes s's packets at most mtu bytes long, if that is
// smaller than they are now. It reports whether it changed anything.
func (s *session) lowerMaxSeg(mtu int) bool {
	n := mtu - s.headerLen()
	if n < 1 || n >= int(s.maxSeg) {
		return false
	}
	s.maxSeg = uint16(n)
	return true
}

// plateauBelow returns the largest common MTU below size, or 0 if none
// is at least floor.
func plateauBelow(size, floor int) int {
	for _, p := range plateaus {
		if p < size {
			if p < floor {
				return 0
			}
			return p
		}
	}
	return 0
}

// fit splits s.queue[i] if its payload is longer than s.maxSeg: the
// first s.maxSeg bytes stay, the rest becomes a segment of its own right
// after it, sent or not as the first was. It reports false when the
// split would exceed the session's memory bound (the session failed).
func (t *Table) fit(s *session, i int, now int64) bool {
	g := s.queue[i]
	for g.n > int(s.maxSeg) {
		if int(s.queueBytes)+t.segs.size > t.cfg.MaxQueueBytes {
			t.finish(s, now, ReasonBufferFull, true)
			return false
		}
		k := int(s.maxSeg)
		tail := t.segs.get()
		tail.seq = g.seq.Add(seqnum.Size(k))
		tail.ack, tail.psh, tail.n = g.ack, g.psh, g.n-k
		tail.sentAt, tail.retrans = g.sentAt, g.retrans
		copy(tail.data, g.data[k:g.n])
		g.n, g.psh = k, false
		s.queue = append(s.queue, nil)
		copy(s.queue[i+2:], s.queue[i+1:])
		s.queue[i+1] = tail
		if g.sentAt != 0 {
			s.next++ // the tail was sent with g
		}
		s.queueBytes += int32(t.segs.size)
		t.stats.Splits++
		i++
		g = tail
	}
	return true
}

// TooBig handles pkt, a packet of the table that the kernel refused as
// larger than the path MTU (EMSGSIZE). mtu is the path MTU the kernel
// reports for pkt's destination, 0 if unknown. Every later session to
// that target is sized for the smaller MTU, and the session of pkt sends
// the refused data again in segments that fit. Call it outside any other
// Table call (Output.Send must not), at the end of a batch; pkt is only
// read.
func (t *Table) TooBig(now int64, pkt []byte, mtu int) {
	p := &t.scratch
	p.Decode(pkt)
	if !p.Valid {
		return
	}
	floor := minMTU6
	if p.Dst.Addr().Is4() {
		floor = minMTU4
	}
	if mtu <= 0 || mtu >= p.TotalLen {
		mtu = plateauBelow(p.TotalLen, floor)
	}
	if mtu < floor {
		// Already as small as a path can demand: nothing to do but count
		// (the caller does).
		return
	}
	if t.pmtu == nil {
		t.pmtu = make(map[[16]byte]int)
	}
	dst := p.Dst.Addr().As16()
	if v, ok := t.pmtu[dst]; !ok || mtu < v {
		t.pmtu[dst] = mtu
	}
	s := t.sessions[packKey(Key{Client: p.Src, Target: p.Dst})]
	if s == nil || s.state != stateEstablished || p.PayloadLen == 0 {
		return
	}
	s.lowerMaxSeg(mtu)
	t.resend(s, now, seqnum.Value(p.Seq), seqnum.Size(p.PayloadLen))
	t.schedule(s)
}

// resend sends again, fitted to s.maxSeg, the segments of s already sent
// that overlap the n bytes at seq: they were refused, not lost.
func (t *Table) resend(s *session, now int64, seq seqnum.Value, n seqnum.Size) {
	end := seq.Add(n)
	for i := int(s.nheld); i < int(s.next); i++ {
		g := s.queue[i]
		if g.n == 0 || !g.seq.LessThan(end) || !seq.LessThan(g.seq.Add(seqnum.Size(g.n))) {
			continue
		}
		if !t.fit(s, i, now) {
			return
		}
		for ; i < int(s.next) && s.queue[i].seq.LessThan(end); i++ {
			t.sendSegment(s, s.queue[i], now)
			t.stats.Resent++
		}
		return
	}
}

// blackhole reacts to the retransmission timeout of g, s's first
// unacknowledged segment: after blackholeBackoff timeouts in a row, a
// packet larger than 1280 bytes (576 for IPv4) is taken to be too big for
// the path (lost without a word: a smaller MTU behind the first hop, or a
// middlebox), and s's packets shrink to that size.
func (t *Table) blackhole(s *session, g *segment) {
	if s.backoff < blackholeBackoff {
		return
	}
	size := g.n + s.headerLen()
	for _, mtu := range [...]int{minMTU6, minMTU4} {
		if mtu < size && mtu >= s.minMTU() {
			if s.lowerMaxSeg(mtu) {
				t.stats.Blackholes++
			}
			return
		}
	}
}
