// Package pcapfile reads packet capture files for tcpcopy's offline replay:
// the classic pcap format (libpcap, tcpdump -w, pcap-savefile(5)) and
// pcapng (draft-ietf-opsawg-pcapng), either of them gzip-compressed, told
// apart by their content, never by the file name. [LinkType.IPOffset]
// finds the IPv4 or IPv6 header in the frames of the link types tcpcopy
// replays: Ethernet (with up to two VLAN tags), Linux cooked capture v1 and
// v2 (tcpdump -i any), raw IP and BSD loopback.
//
// [NewReader] checks the file header; [Reader.Next] then hands out one
// packet record at a time, [Reader.Packet] describes it and [Reader.Err]
// says why Next stopped: nil at a clean end of the file, a [*FormatError]
// with the byte offset of the damage otherwise. Everything read before the
// damage is usable, so a caller replays what it can and then reports the
// error.
//
// # pcapng
//
// Every Enhanced, Simple and (obsolete) Packet Block is returned, whatever
// its interface, each with its interface's link type (gopacket's pcapng
// reader silently dropped the packets of every interface but the first
// when their link types differed, unless asked not to). Several sections
// in one file are read in turn, each in its own byte order. Interface
// timestamp resolution (if_tsresol) and offset (if_tsoffset) are applied.
// Blocks of other types (name resolution, statistics, decryption secrets,
// custom) are skipped.
//
// # Limits
//
// A packet record may hold at most [MaxPacketLen] bytes (libpcap's
// MAXIMUM_SNAPLEN; larger values mean a damaged file, as in libpcap and
// Wireshark), and a pcapng block at most 16 MiB. A record whose original
// length is below its captured length is read with the original length
// raised to the captured one.
//
// # Cost and ownership
//
// The reader buffers its input and reuses one packet buffer: in the steady
// state Next does not allocate. Packet.Data is valid until the next call
// to Next. A Reader is not safe for concurrent use.
package pcapfile
