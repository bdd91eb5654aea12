package ipmangle

// Segmenter splits one TCP segment that is larger than an MTU (a GRO, LRO
// or TSO super-packet of up to 64 KiB, IPv4 or IPv6 with extension
// headers) into IP packets of at most the MTU, the way Linux GSO
// (tcp_gso_segment) and C TCPCopy's re-segmentation do:
//
//   - every segment starts with a copy of the IP header (IPv4 options and
//     IPv6 extension headers included, an IPv6 atomic fragment header left
//     as is: each segment is again an atomic fragment, RFC 6946) and of the
//     whole TCP header with its options;
//   - the payload is cut into chunks of mtu minus the header bytes, and the
//     sequence number advances by the payload carried so far;
//   - the IPv4 ID increments by one per segment, starting from the
//     original (C TCPCopy does the same);
//   - PSH and FIN are kept on the last segment only, CWR on the first only;
//     other flags, the window, the urgent pointer and the options are
//     copied unchanged;
//   - the IPv4 total length or IPv6 payload length is set, and the IPv4
//     header checksum and TCP checksum are recomputed in full for every
//     segment (a captured super-packet has partial checksums).
//
// A packet that already fits the MTU yields one segment equal to the
// packet (without link-layer padding) but with both checksums recomputed.
// A packet without payload yields one segment.
//
// Usage, with buf at least mtu bytes long:
//
//	if s.Reset(pkt, &p, mtu) {
//		for seg := s.Next(buf); seg != nil; seg = s.Next(buf) {
//			send(seg)
//		}
//	}
//
// The zero Segmenter is done. A Segmenter reads the packet given to Reset
// until it is done or reset again, never writes it, and never allocates.
type Segmenter struct {
	pkt     []byte // the packet, without padding
	hdrLen  int    // IP and TCP headers
	tcpOff  int
	version uint8
	chunk   int // payload bytes per segment
	off     int // payload bytes emitted
	n       int // segments emitted
	seq     uint32
	id      uint16
	flags   TCPFlags
	busy    bool // segments left; false in the zero Segmenter
}

// Reset prepares s to split the packet b described by p into packets of at
// most mtu bytes. It returns false, leaving s done, if p is not valid for
// b, if the packet is Truncated, if it is larger than mtu and mtu leaves
// no room for a payload byte after the headers, or if it is larger than
// mtu and has SYN or RST set (a SYN's sequence number accounting, or an RST
// per segment, would make no sense; neither GRO nor TSO produces them).
func (s *Segmenter) Reset(b []byte, p *Parsed, mtu int) bool {
	*s = Segmenter{}
	if !p.usable(b) || p.Truncated || p.TotalLen > len(b) {
		return false
	}
	s.pkt = b[:p.TotalLen]
	s.hdrLen = p.PayloadOffset
	s.tcpOff = p.TCPOffset
	s.version = p.IPVersion
	s.chunk = p.PayloadLen
	if p.TotalLen > mtu {
		if mtu <= s.hdrLen || p.Flags&(SYN|RST) != 0 {
			return false
		}
		s.chunk = mtu - s.hdrLen
	}
	tcp := TCP(b[p.TCPOffset:])
	s.seq = tcp.Seq()
	s.flags = tcp.Flags()
	if p.IPVersion == 4 {
		s.id = IPv4(b).ID()
	}
	s.busy = true
	return true
}

// Done reports whether every segment has been returned.
func (s *Segmenter) Done() bool { return !s.busy }

// NextLen returns the size of the next segment, 0 when done.
func (s *Segmenter) NextLen() int {
	if !s.busy {
		return 0
	}
	return s.hdrLen + min(s.chunk, len(s.pkt)-s.hdrLen-s.off)
}

// Next writes the next segment at the start of dst and returns dst[:n], or
// nil when done or when dst is shorter than NextLen (then nothing is
// consumed: call again with a larger dst). The result aliases dst.
func (s *Segmenter) Next(dst []byte) []byte {
	n := s.NextLen()
	if n == 0 || len(dst) < n {
		return nil
	}
	seg := dst[:n]
	copy(seg, s.pkt[:s.hdrLen])
	pl := n - s.hdrLen
	copy(seg[s.hdrLen:], s.pkt[s.hdrLen+s.off:s.hdrLen+s.off+pl])

	last := s.off+pl == len(s.pkt)-s.hdrLen
	f := s.flags
	if !last {
		f &^= PSH | FIN
	}
	if s.n > 0 {
		f &^= CWR
	}
	t := TCP(seg[s.tcpOff:])
	t.SetSeq(s.seq + uint32(s.off))
	t.SetFlags(f)
	if s.version == 4 {
		h := IPv4(seg)
		h.SetTotalLength(uint16(n))
		h.SetID(s.id + uint16(s.n))
		h.SetChecksum(h.CalculateChecksum())
	} else {
		IPv6(seg).SetPayloadLength(uint16(n - IPv6MinimumSize))
	}
	t.SetChecksum(t.CalculateChecksum(pseudoFromPacket(seg, s.version, len(t))))

	s.off += pl
	s.n++
	s.busy = !last
	return seg
}
