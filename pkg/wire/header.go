package wire

// Offsets and values of the IPv4 (RFC 791), IPv6 (RFC 8200) and TCP
// (RFC 9293) header fields this package reads or writes. wire is a leaf
// package, so it keeps its own minimal set instead of importing our header
// views.
const (
	ipv4MinLen      = 20
	ipv4TotLenOff   = 2
	ipv4FragOff     = 6
	ipv4ProtoOff    = 9
	ipv4ChecksumOff = 10

	ipv6FixedLen  = 40
	ipv6PayLenOff = 4
	ipv6NextOff   = 6

	tcpMinLen  = 20
	tcpMaxLen  = 60
	tcpDoffOff = 12

	protoTCP = 6
	protoUDP = 17
	udpLen   = 8 // the UDP header (RFC 768)

	// IPv6 extension headers walked (and removed) by the version-7
	// encoder; anything else before TCP makes the packet unusable.
	ipv6HopByHop = 0
	ipv6Routing  = 43
	ipv6Fragment = 44
	ipv6AH       = 51
	ipv6DestOpts = 60
	ipv6MaxExt   = 8 // more extension headers than this: give up
)

// captured describes the IP and TCP headers at the start of a packet handed
// to the encoder (from the IP header on, as captured).
type captured struct {
	v6     bool
	ipLen  int // IPv4: ihl*4 incl. options; IPv6: 40 (fixed header only)
	extLen int // IPv6: extension header bytes between fixed header and TCP
	tcpOff int // offset of the TCP (or UDP) header in the captured bytes
	tcpLen int // doff*4; for UDP the header's 8 bytes
	udp    bool
}

// parseCaptured validates the headers at the start of b: an unfragmented
// (or first-fragment) IPv4 packet, or an IPv6 packet whose extension headers
// lead to TCP or UDP, followed by a complete TCP header with its options,
// or a UDP header. Bytes after the transport header are ignored.
func parseCaptured(b []byte) (c captured, ok bool) {
	if len(b) < 1 {
		return c, false
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < ipv4MinLen {
			return c, false
		}
		c.ipLen = int(b[0]&0x0f) * 4
		if c.ipLen < ipv4MinLen || b[ipv4ProtoOff] != protoTCP && b[ipv4ProtoOff] != protoUDP ||
			be.Uint16(b[ipv4FragOff:])&0x1fff != 0 {
			return c, false
		}
		c.udp = b[ipv4ProtoOff] == protoUDP
		c.tcpOff = c.ipLen
	case 6:
		if len(b) < ipv6FixedLen {
			return c, false
		}
		c.v6 = true
		c.ipLen = ipv6FixedLen
		next, off := b[ipv6NextOff], ipv6FixedLen
		for i := 0; next != protoTCP && next != protoUDP; i++ {
			if i == ipv6MaxExt || len(b) < off+8 {
				return c, false
			}
			var n int
			switch next {
			case ipv6HopByHop, ipv6Routing, ipv6DestOpts:
				n = (int(b[off+1]) + 1) * 8
			case ipv6Fragment:
				// A non-first fragment has no TCP header.
				if be.Uint16(b[off+2:])&0xfff8 != 0 {
					return c, false
				}
				n = 8
			case ipv6AH:
				n = (int(b[off+1]) + 2) * 4
			default:
				return c, false
			}
			next = b[off]
			off += n
		}
		c.extLen = off - ipv6FixedLen
		c.tcpOff = off
		c.udp = next == protoUDP
	default:
		return c, false
	}
	if c.udp {
		c.tcpLen = udpLen
		return c, len(b) >= c.tcpOff+udpLen
	}
	if len(b) < c.tcpOff+tcpMinLen {
		return c, false
	}
	c.tcpLen = int(b[c.tcpOff+tcpDoffOff]>>4) * 4
	if c.tcpLen < tcpMinLen || len(b) < c.tcpOff+c.tcpLen {
		return c, false
	}
	return c, true
}

// checkHeader7 validates the header bytes h of a version-7 record: exactly
// an IPv4 header (with options) or an IPv6 fixed header with next header
// TCP, followed by exactly one TCP header with options; with udp, next
// header UDP followed by exactly the 8-byte UDP header. It returns the IP
// header length.
func checkHeader7(h []byte, udp bool) (ipLen int, ok bool) {
	proto, l4Min := uint8(protoTCP), tcpMinLen
	if udp {
		proto, l4Min = protoUDP, udpLen
	}
	if len(h) < ipv4MinLen+l4Min {
		return 0, false
	}
	switch h[0] >> 4 {
	case 4:
		ipLen = int(h[0]&0x0f) * 4
		if ipLen < ipv4MinLen || h[ipv4ProtoOff] != proto {
			return 0, false
		}
	case 6:
		ipLen = ipv6FixedLen
		if h[ipv6NextOff] != proto {
			return 0, false
		}
	default:
		return 0, false
	}
	if udp {
		return ipLen, len(h) == ipLen+udpLen
	}
	if len(h) < ipLen+tcpMinLen {
		return 0, false
	}
	doff := int(h[ipLen+tcpDoffOff]>>4) * 4
	if doff < tcpMinLen || len(h) != ipLen+doff {
		return 0, false
	}
	return ipLen, true
}
