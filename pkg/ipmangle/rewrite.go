package ipmangle

import (
	"net/netip"
)

// The rewrites below change one field of the packet b described by p (from
// [Parsed.Decode] on b), fix the IPv4 header checksum and the TCP checksum
// by RFC 1624 incremental update in the same call, and update p to match.
// They work on Truncated packets too (an incremental update does not need
// the payload) and never allocate.
//
// An incremental update keeps a right checksum right and a wrong one wrong:
// captured packets may carry partial checksums (offload), so call
// [FixChecksums] on them once, before or after rewriting. On packets built
// with [Fields.Encode] or already fixed, no full recompute is needed.
//
// They do nothing (or return false) when p is not Valid. Using a p that
// was not decoded from b is a programmer error and may panic.

// SetSrc sets the source address and port. It returns false, changing
// nothing, if p is not valid or a is not of the packet's family (an IPv4
// packet needs a.Addr().Is4(); unmap IPv4-mapped addresses first).
func SetSrc(b []byte, p *Parsed, a netip.AddrPort) bool {
	if !setAddr(b, p, a.Addr(), ipv4Src, ipv6Src) {
		return false
	}
	setPort(b, p, tcpSrcPort, a.Port())
	p.Src = a
	return true
}

// SetDst sets the destination address and port; see [SetSrc].
func SetDst(b []byte, p *Parsed, a netip.AddrPort) bool {
	if !setAddr(b, p, a.Addr(), ipv4Dst, ipv6Dst) {
		return false
	}
	setPort(b, p, tcpDstPort, a.Port())
	p.Dst = a
	return true
}

// setAddr writes an address at off4 (IPv4) or off6 (IPv6) and updates the
// IPv4 header checksum and the TCP checksum, whose pseudo-header has it.
func setAddr(b []byte, p *Parsed, a netip.Addr, off4, off6 int) bool {
	if !p.usable(b) {
		return false
	}
	tcs := p.TCPOffset + tcpChecksum
	switch {
	case p.IPVersion == 4 && a.Is4():
		a4 := a.As4()
		old, v := get32(b, off4), get32(a4[:], 0)
		put16(b, ipv4Checksum, UpdateChecksum32(get16(b, ipv4Checksum), old, v))
		put16(b, tcs, UpdateChecksum32(get16(b, tcs), old, v))
		put32(b, off4, v)
	case p.IPVersion == 6 && a.Is6():
		a16 := a.As16()
		patch(b, off6, a16[:], tcs, -1)
	default:
		return false
	}
	return true
}

func setPort(b []byte, p *Parsed, off int, port uint16) {
	off += p.TCPOffset
	cs := p.TCPOffset + tcpChecksum
	put16(b, cs, UpdateChecksum16(get16(b, cs), get16(b, off), port))
	put16(b, off, port)
}

// set32 writes a 32-bit field at the 16-bit aligned TCP header offset off.
func set32(b []byte, p *Parsed, off int, v uint32) {
	off += p.TCPOffset
	cs := p.TCPOffset + tcpChecksum
	put16(b, cs, UpdateChecksum32(get16(b, cs), get32(b, off), v))
	put32(b, off, v)
}

// SetSeq sets the sequence number. It does nothing if p is not valid.
func SetSeq(b []byte, p *Parsed, v uint32) {
	if !p.usable(b) {
		return
	}
	set32(b, p, tcpSeq, v)
	p.Seq = v
}

// SetAck sets the acknowledgment number (whether or not the ACK flag is
// set). It does nothing if p is not valid.
func SetAck(b []byte, p *Parsed, v uint32) {
	if !p.usable(b) {
		return
	}
	set32(b, p, tcpAck, v)
	p.Ack = v
}

// SetWindow sets the raw (unscaled) window field. It does nothing if p is
// not valid.
func SetWindow(b []byte, p *Parsed, w uint16) {
	if !p.usable(b) {
		return
	}
	off := p.TCPOffset + tcpWindow
	cs := p.TCPOffset + tcpChecksum
	put16(b, cs, UpdateChecksum16(get16(b, cs), get16(b, off), w))
	put16(b, off, w)
	p.Window = w
}

// SetFlags sets the TCP flags byte (the data offset and AE bit in the same
// 16-bit word are kept). It does nothing if p is not valid.
func SetFlags(b []byte, p *Parsed, f TCPFlags) {
	if !p.usable(b) {
		return
	}
	patch(b, p.TCPOffset+tcpFlags, []byte{byte(f)}, p.TCPOffset+tcpChecksum, -1)
	p.Flags = f
}

// SetTimestamp sets TSval and TSecr of the timestamps option (RFC 7323
// §3). The option may sit at any alignment. It returns false, changing
// nothing, if p is not valid or the packet has no timestamps option.
func SetTimestamp(b []byte, p *Parsed, val, ecr uint32) bool {
	if !p.usable(b) || p.TSOffset == 0 {
		return false
	}
	off, cs := p.TSOffset+2, p.TCPOffset+tcpChecksum
	if off%2 == 0 {
		// The usual case (NOP, NOP, TS): two aligned 32-bit words.
		c := UpdateChecksum32(get16(b, cs), get32(b, off), val)
		put16(b, cs, UpdateChecksum32(c, get32(b, off+4), ecr))
		put32(b, off, val)
		put32(b, off+4, ecr)
	} else {
		var v [8]byte
		put32(v[:], 0, val)
		put32(v[:], 4, ecr)
		patch(b, off, v[:], cs, -1)
	}
	p.TSVal, p.TSEcr = val, ecr
	return true
}

// SetMSS sets the value of the MSS option (RFC 9293 §3.7.1). It returns
// false, changing nothing, if p is not valid or the packet has no MSS
// option.
func SetMSS(b []byte, p *Parsed, mss uint16) bool {
	if !p.usable(b) || p.MSSOffset == 0 {
		return false
	}
	var v [2]byte
	put16(v[:], 0, mss)
	patch(b, p.MSSOffset+2, v[:], p.TCPOffset+tcpChecksum, -1)
	p.MSS = mss
	return true
}

// SetTTL sets the IPv4 TTL (fixing the header checksum) or the IPv6 hop
// limit. Neither is in the TCP pseudo-header. It does nothing if p is not
// valid.
func SetTTL(b []byte, p *Parsed, ttl uint8) {
	if !p.usable(b) {
		return
	}
	if p.IPVersion == 6 {
		IPv6(b).SetHopLimit(ttl)
		return
	}
	patch(b, ipv4TTL, []byte{ttl}, ipv4Checksum, -1)
}

// SetIPID sets the IPv4 identification field and fixes the header
// checksum. It returns false for IPv6 packets (which have no such field
// outside fragment headers) and invalid ones.
func SetIPID(b []byte, p *Parsed, id uint16) bool {
	if !p.usable(b) || p.IPVersion != 4 {
		return false
	}
	put16(b, ipv4Checksum, UpdateChecksum16(get16(b, ipv4Checksum), get16(b, ipv4ID), id))
	put16(b, ipv4ID, id)
	return true
}
