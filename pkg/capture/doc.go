// Package capture reads live packets for tcpcopy and intercept from an
// AF_PACKET socket with a TPACKET_V3 receive ring (packet(7),
// Documentation/networking/packet_mmap.rst).
//
// [Open] sets the socket up; [Source.ReadBatch] hands out batches of
// packets without copying them and without allocating; [Source.Close]
// stops a blocked reader at once. A classic BPF program (from package
// bpfgen, or libpcap via package pcapfilter, compiled for
// LINKTYPE_ETHERNET) runs in the kernel before a packet takes ring space.
//
// # Interfaces and link layers
//
// Config.Interface names one interface, which must be up and have an
// Ethernet or loopback link layer (ARPHRD_ETHER, ARPHRD_LOOPBACK: lo frames
// carry a 14-byte Ethernet header with zero addresses). "" or "any" opens
// one socket bound to no interface: it receives from every interface of
// the network namespace, including ones created later, and a guard
// prepended to the filter drops in the kernel what arrives on other link
// layers (tun, WireGuard, IP tunnels deliver bare IP packets, on which an
// Ethernet filter would read the wrong bytes). This differs from
// tcpdump -i any, which uses cooked (SLL) headers. Traffic of the excluded
// link types is not captured at all.
//
// On loopback every packet passes twice, as sent and as received: "any"
// takes it once, as received (the guard drops the sent one); on "lo" set
// Config.IgnoreOutgoing to see it once. An AF_PACKET socket also sees what
// this host sends (including tcpcopy's own copies); IgnoreOutgoing sets
// PACKET_IGNORE_OUTGOING, and where the kernel lacks it (before 4.20)
// outgoing packets are dropped after the ring instead.
//
// The kernel takes a received 802.1Q/802.1ad tag out of the frame into
// packet metadata before packet sockets see it: filters must not expect
// it, and [Packet.VLAN] reports its VID. A tag still in the frame (an
// inner QinQ tag, some transmit paths) is skipped when locating the IP
// header; a filter compiled without "vlan" does not match such frames.
//
// # What a Packet holds, and for how long
//
// [Packet.Data] starts at the IPv4 or IPv6 header: the Ethernet header and
// any in-band VLAN tags are stripped ([EthernetIPOffset]); frames carrying
// anything else are skipped and counted in [Stats.Skipped]. Data is a view
// into the ring shared with the kernel: it stays valid, and may be
// modified in place, until the next ReadBatch or Close call on the
// Source; keep bytes longer by copying them. Meanwhile the ring blocks
// holding the batch are unavailable to the kernel, so hold a batch only
// while processing it. Touching Data after the
// Source's memory is released (the ReadBatch after Close, or Close when no
// batch is outstanding) faults.
//
// Packets are not reassembled, and segments coalesced by GRO/LRO arrive as
// one "super-packet" far above the MTU (with a partial checksum):
// [Packet.Len] is its full length. A packet longer than the snap length,
// or than a ring block can hold, is cut: len(Data) < Len.
//
// # Concurrency and cost
//
// ReadBatch is meant for one reading goroutine: calls are serialised, and
// each call ends the previous batch. Close and Stats may be called from any
// goroutine at any time, also while ReadBatch is blocked. ReadBatch makes
// no system call while packets are waiting in the ring and otherwise
// parks the goroutine in the Go runtime's network poller (no OS thread is
// held while it waits); reads, waiting included, do not allocate. Behind
// tells the reader it has fallen behind the kernel. A ring costs
// BlockSize*NumBlocks bytes of unswappable kernel memory.
//
// Only Linux is supported; elsewhere Open returns an error wrapping
// errors.ErrUnsupported.
//
// # Compared with C TCPCopy
//
// TCPCopy 1.x captured by default with a raw IPPROTO_TCP socket, which sees
// inbound IPv4 datagrams after reassembly and GRO, and in its pcap builds
// with libpcap on each device ("any" or none: every device), a 10 ms
// timeout, and Ethernet, 802.1Q, Linux SLL and raw-IP link layers. This
// package is the pcap way on a TPACKET_V3 ring with a 1 ms timeout, for
// IPv4 and IPv6, Ethernet and loopback only: traffic of tun and other
// raw-IP devices is not captured, and IP fragments arrive unreassembled.
// Promiscuous mode is not set (TCPCopy's pcap capture set it, intercept did
// not).
package capture
