package capture

import (
	"errors"
	"time"

	"golang.org/x/net/bpf"
)

// Defaults used for zero Config fields.
const (
	// DefaultSnapLen is libpcap's MAXIMUM_SNAPLEN: whole packets,
	// super-packets included.
	DefaultSnapLen = 262144
	// DefaultBlockSize is the size of one ring block: it holds several
	// 64 KiB super-packets.
	DefaultBlockSize = 256 << 10
	// DefaultNumBlocks makes a 16 MiB ring with DefaultBlockSize.
	DefaultNumBlocks = 64
	// DefaultBlockTimeout is how long the kernel waits to hand over a
	// partly filled block. gopacket's afpacket defaults to 64 ms, which was
	// measured holding lone packets for up to ~50 ms: long enough to
	// disturb intercept and tcpcopy's pacing.
	DefaultBlockTimeout = time.Millisecond
	// MaxBlockTimeout is the longest BlockTimeout Open accepts.
	MaxBlockTimeout = time.Hour
)

// Config describes the capture to open. The zero value captures every IP
// packet on every Ethernet and loopback interface of the network namespace.
type Config struct {
	// Interface is the name of the interface to capture on; "" or "any"
	// captures on all Ethernet and loopback interfaces (see the package
	// documentation).
	Interface string
	// SnapLen is the largest number of bytes kept of a packet, link-layer
	// header included; 0 means DefaultSnapLen. It lowers the accept value
	// of the filter's return instructions, which is how the kernel applies
	// a snap length to packet sockets.
	SnapLen int
	// BlockSize is the size in bytes of one ring block, a multiple of the
	// page size; 0 means DefaultBlockSize. A packet longer than a block
	// (less 96 bytes of headers) is cut to fit.
	BlockSize int
	// NumBlocks is the number of blocks in the ring; 0 means
	// DefaultNumBlocks.
	NumBlocks int
	// BlockTimeout is the longest time the kernel keeps a partly filled
	// block before handing it over (tp_retire_blk_tov), rounded up to
	// whole milliseconds; 0 means DefaultBlockTimeout. The kernel counts it
	// in jiffies, so it may last up to one tick longer.
	BlockTimeout time.Duration
	// Filter is a classic BPF program for Ethernet frames run by the
	// kernel on every packet (SO_ATTACH_FILTER); nil accepts everything.
	// Build it with package bpfgen or package pcapfilter. It is attached
	// before the socket receives anything, so no unfiltered packet is ever
	// delivered. The kernel rejects an invalid program (EINVAL) and Open
	// reports it.
	Filter []bpf.RawInstruction
	// IgnoreOutgoing drops the packets this host sends, keeping only those
	// it receives.
	IgnoreOutgoing bool
	// FanoutGroup, when not zero, joins the socket to that
	// PACKET_FANOUT_HASH group: sockets of the group (in this or other
	// processes) share the traffic, each flow, both directions, going to
	// one socket.
	FanoutGroup uint16
}

// Packet is one captured IP packet. See the package documentation for how
// long Data stays valid.
type Packet struct {
	// Data is the packet from its IPv4 or IPv6 header on, as captured.
	Data []byte
	// Len is the packet's length from the IP header on as it was
	// received; it exceeds len(Data) when the capture cut the packet.
	Len int
	// Time is when the kernel received (or sent) the packet.
	Time time.Time
	// Ifindex is the index of the interface the packet was seen on.
	Ifindex int
	// VLAN is the 802.1Q VID the kernel took out of the frame, 0 if none.
	VLAN uint16
	// Outgoing reports that this host sent the packet.
	Outgoing bool
}

// Stats are a Source's counters since Open.
type Stats struct {
	// Packets counts the packets the filter accepted, Drops included (as
	// libpcap's ps_recv).
	Packets uint64
	// Drops counts accepted packets lost because the ring was full.
	Drops uint64
	// QueueFreezes counts how often the ring filled up.
	QueueFreezes uint64
	// Skipped counts packets read from the ring but not returned: no IPv4
	// or IPv6 behind the link-layer header, or outgoing with
	// IgnoreOutgoing on a kernel without PACKET_IGNORE_OUTGOING.
	Skipped uint64
}

// ErrClosed is returned by ReadBatch once the Source is closed.
var ErrClosed = errors.New("capture: source closed")

// EtherTypes and TPIDs understood by EthernetIPOffset.
const (
	etherTypeIPv4  = 0x0800
	etherTypeIPv6  = 0x86dd
	tpid8021Q      = 0x8100
	tpid8021AD     = 0x88a8
	tpidQinQLegacy = 0x9100
	ethHeaderLen   = 14
	vlanTagLen     = 4
	maxVLANTags    = 2
)

// EthernetIPOffset returns the offset of the IPv4 or IPv6 header in the
// Ethernet frame, or -1 if the frame carries neither. Up to two in-band
// VLAN tags (TPID 0x8100, 0x88a8 or 0x9100) are skipped. The IP version in
// the first byte of the header must agree with the EtherType, so a
// non-negative result is always less than len(frame). It does not
// allocate.
func EthernetIPOffset(frame []byte) int {
	off := ethHeaderLen
	for tags := 0; ; tags++ {
		if len(frame) <= off {
			return -1
		}
		switch uint16(frame[off-2])<<8 | uint16(frame[off-1]) {
		case etherTypeIPv4:
			if frame[off]>>4 != 4 {
				return -1
			}
			return off
		case etherTypeIPv6:
			if frame[off]>>4 != 6 {
				return -1
			}
			return off
		case tpid8021Q, tpid8021AD, tpidQinQLegacy:
			if tags == maxVLANTags {
				return -1
			}
			off += vlanTagLen
		default:
			return -1
		}
	}
}
