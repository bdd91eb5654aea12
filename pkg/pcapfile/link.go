package pcapfile

import "strconv"

// LinkType is a LINKTYPE_ value (pcap-linktype(7), tcpdump.org
// linktypes.html): what the frames of a file or interface start with.
type LinkType uint16

// The link types [LinkType.IPOffset] understands.
const (
	// LinkTypeNull is BSD loopback: a 4-byte address family in the byte
	// order of the capturing host (macOS and BSD lo0).
	LinkTypeNull LinkType = 0
	// LinkTypeEthernet is Ethernet II, possibly with 802.1Q/802.1ad tags.
	LinkTypeEthernet LinkType = 1
	// LinkTypeRawDLT12 and LinkTypeRawDLT14 are DLT_RAW values some
	// systems wrote into files before LINKTYPE_RAW existed.
	LinkTypeRawDLT12 LinkType = 12
	LinkTypeRawDLT14 LinkType = 14
	// LinkTypeRaw is raw IP: the packet starts with the IPv4 or IPv6
	// header (tcpdump on tun devices and WireGuard).
	LinkTypeRaw LinkType = 101
	// LinkTypeLoop is OpenBSD loopback: the address family in network
	// byte order.
	LinkTypeLoop LinkType = 108
	// LinkTypeLinuxSLL is Linux cooked capture v1 (tcpdump -i any before
	// libpcap 1.10), a 16-byte header.
	LinkTypeLinuxSLL LinkType = 113
	// LinkTypeIPv4 and LinkTypeIPv6 are raw IP of one version.
	LinkTypeIPv4 LinkType = 228
	LinkTypeIPv6 LinkType = 229
	// LinkTypeLinuxSLL2 is Linux cooked capture v2 (tcpdump -i any since
	// libpcap 1.10), a 20-byte header.
	LinkTypeLinuxSLL2 LinkType = 276
)

var linkNames = map[LinkType]string{
	LinkTypeNull:      "null",
	LinkTypeEthernet:  "ethernet",
	LinkTypeRawDLT12:  "raw",
	LinkTypeRawDLT14:  "raw",
	LinkTypeRaw:       "raw",
	LinkTypeLoop:      "loop",
	LinkTypeLinuxSLL:  "linux_sll",
	LinkTypeIPv4:      "ipv4",
	LinkTypeIPv6:      "ipv6",
	LinkTypeLinuxSLL2: "linux_sll2",
}

// String returns the LINKTYPE_ name in lower case, or the number.
func (t LinkType) String() string {
	if s, ok := linkNames[t]; ok {
		return s
	}
	return strconv.Itoa(int(t))
}

// Supported reports whether IPOffset understands t.
func (t LinkType) Supported() bool {
	_, ok := linkNames[t]
	return ok
}

// EtherTypes, VLAN TPIDs and address families.
const (
	etherTypeIPv4  = 0x0800
	etherTypeIPv6  = 0x86dd
	tpid8021Q      = 0x8100
	tpid8021AD     = 0x88a8
	tpidQinQLegacy = 0x9100
	maxVLANTags    = 2
	vlanTagLen     = 4
	ethHeaderLen   = 14
	sllHeaderLen   = 16
	sll2HeaderLen  = 20
	nullHeaderLen  = 4
	afInet         = 2
	afInet6Linux   = 10
	afInet6BSD     = 24 // NetBSD, OpenBSD
	afInet6FreeBSD = 28
	afInet6Darwin  = 30
)

// IPOffset returns the offset of the IPv4 or IPv6 header in a frame of
// link type t, or -1 when the frame carries neither (ARP, another
// protocol, a link type IPOffset does not understand, too short). The IP
// version in the header's first byte must agree with the link-layer
// header, so a non-negative result is always less than len(frame). Up to
// two VLAN tags are skipped after an Ethernet or cooked header (libpcap
// puts the tags the kernel took out of a frame back in). It does not
// allocate.
func (t LinkType) IPOffset(frame []byte) int {
	switch t {
	case LinkTypeEthernet:
		return etherOffset(frame, ethHeaderLen)
	case LinkTypeLinuxSLL:
		return etherOffset(frame, sllHeaderLen)
	case LinkTypeLinuxSLL2:
		if len(frame) < sll2HeaderLen {
			return -1
		}
		// The protocol type is first, not last, in the v2 header.
		return etherTypeOffset(frame, sll2HeaderLen, uint16(frame[0])<<8|uint16(frame[1]))
	case LinkTypeRaw, LinkTypeRawDLT12, LinkTypeRawDLT14:
		return versionAt(frame, 0, 0)
	case LinkTypeIPv4:
		return versionAt(frame, 0, 4)
	case LinkTypeIPv6:
		return versionAt(frame, 0, 6)
	case LinkTypeNull, LinkTypeLoop:
		if len(frame) < nullHeaderLen {
			return -1
		}
		af := be32(frame)
		if t == LinkTypeNull && af > 0xffff {
			// Written by a little-endian host (libpcap's own test).
			af = uint32(frame[0]) | uint32(frame[1])<<8 | uint32(frame[2])<<16 | uint32(frame[3])<<24
		}
		switch af {
		case afInet:
			return versionAt(frame, nullHeaderLen, 4)
		case afInet6Linux, afInet6BSD, afInet6FreeBSD, afInet6Darwin:
			return versionAt(frame, nullHeaderLen, 6)
		}
	}
	return -1
}

// etherOffset reads the EtherType in the two bytes before off.
func etherOffset(frame []byte, off int) int {
	if len(frame) < off {
		return -1
	}
	return etherTypeOffset(frame, off, uint16(frame[off-2])<<8|uint16(frame[off-1]))
}

// etherTypeOffset follows an EtherType typ that ends the header at off,
// through VLAN tags, to the IP header.
func etherTypeOffset(frame []byte, off int, typ uint16) int {
	for tags := 0; ; tags++ {
		switch typ {
		case etherTypeIPv4:
			return versionAt(frame, off, 4)
		case etherTypeIPv6:
			return versionAt(frame, off, 6)
		case tpid8021Q, tpid8021AD, tpidQinQLegacy:
			if tags == maxVLANTags || len(frame) < off+vlanTagLen {
				return -1
			}
			off += vlanTagLen
			typ = uint16(frame[off-2])<<8 | uint16(frame[off-1])
		default:
			return -1
		}
	}
}

// versionAt returns off if frame has an IP header of version want there
// (4 or 6; 0 accepts both), else -1.
func versionAt(frame []byte, off int, want byte) int {
	if off >= len(frame) {
		return -1
	}
	v := frame[off] >> 4
	if (want == 0 && (v == 4 || v == 6)) || v == want {
		return off
	}
	return -1
}
