// Package ipmangle decodes, rewrites, builds and segments IPv4 and IPv6 TCP
// packets in place. It is the packet layer of tcpcopy-go: every copied
// packet goes capture → [Parsed.Decode] → Set* rewrites → send, and every
// packet tcpcopy makes itself goes through [Fields.Encode].
//
// # Contract
//
// All byte slices start at the IP header (no link-layer header). Nothing in
// this package allocates, retains a caller's slice beyond the call (except
// [Segmenter], which reads the packet given to [Segmenter.Reset] until it is
// done), or panics on malformed input; functions given a [Parsed] that does
// not describe the slice they get may panic with an index error, which is a
// programmer error. Nothing is safe for concurrent use on the same packet or
// Parsed; distinct packets are independent.
//
//   - Header views ([IPv4], [IPv6], [TCP]) are []byte types with one-line
//     accessors at named offsets (RFC 791 §3.1, RFC 8200 §3, RFC 9293 §3.1).
//     Accessors assume the view is long enough: call IsValid first, or go
//     through Decode, which checks every bound once. View setters write raw
//     fields and do not touch checksums.
//   - [Parsed.Decode] fills a caller-owned summary of one packet: offsets,
//     addresses and ports, sequence numbers, flags and the TCP options that
//     matter to a copier (MSS, window scale, SACK-permitted, timestamps; RFC
//     9293 §3.2, RFC 7323). Malformed input sets Valid=false and a [Reason]
//     the caller counts; see Decode for the exact rules (fragments, IPv6
//     extension headers, truncation, Ethernet padding).
//   - Checksums have one home ([Sum], [Checksum], [PseudoHeaderChecksum],
//     [UpdateChecksum16], [UpdateChecksum32], [FixChecksums]): the RFC 1071
//     one's complement sum, and the RFC 1624 (eqn. 3) incremental update.
//   - The package-level rewrites ([SetSrc], [SetDst], [SetSeq], [SetAck],
//     [SetWindow], [SetFlags], [SetTimestamp], [SetMSS], [SetTTL], [SetIPID])
//     change one field, fix the IPv4 header checksum and the TCP checksum
//     incrementally in the same call, and keep the Parsed in step, so no
//     rewrite can leave a stale checksum. An incremental update is only
//     right if the checksum was right before: captured packets may carry
//     partial checksums (checksum offload, GRO), so call [FixChecksums]
//     once on them, before or after the rewrites.
//   - [Fields.Encode] builds SYN, ACK, RST and data packets into a caller
//     buffer, with TCP options laid out as Linux lays them out.
//   - [Segmenter] splits a TCP super-packet (GRO/LRO/TSO, up to 64 KiB, IPv4
//     or IPv6 with extension headers) into packets of at most an MTU.
//
// # Differences from C TCPCopy
//
// C TCPCopy 1.x handles IPv4 only; this package handles IPv4 and IPv6 alike.
// C TCPCopy recomputes only the TCP checksum and leaves the IPv4 header
// checksum to the kernel's raw socket; here both checksums are always right
// after every call, so packets may be sent by any path (AF_PACKET, pcap
// inject), and captured checksums are recomputed in full ([FixChecksums],
// [Segmenter]) instead of trusted. Segmentation follows C TCPCopy's
// re-segmentation (headers and options copied, FIN only on the last
// segment, IPv4 ID incremented per segment) and additionally keeps PSH on
// the last segment only and CWR on the first only, as Linux GSO does.
// IPv4 fragments are counted and dropped, as in C TCPCopy.
package ipmangle
