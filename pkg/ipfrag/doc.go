// Package ipfrag reassembles IP fragments into whole datagrams, with
// bounded memory, and splits datagrams into fragments that fit an MTU:
// IPv4 (RFC 791 §3.2) and IPv6 (RFC 8200 §4.5) alike.
//
// tcpcopy needs both for UDP: a DNS answer with EDNS, a syslog or RADIUS
// message larger than the link MTU arrives at the online host as several
// fragments, and only the first carries the UDP header (the ports that
// say whether it is copied). The copy must reach the target whole, so
// tcpcopy reassembles what it captured, rewrites the whole datagram, and
// fragments the copy again to the MTU toward the target. C TCPCopy
// counted and dropped captured TCP fragments (tcpcopy-c.md §3.1); its UDP
// build fragmented what it sent (§3.15).
//
// # Reassembly
//
// [Fragment.Decode] reads the fragment fields of a packet (never fails,
// never allocates); [Reassembler.Add] files a fragment and hands the whole
// datagram over when the last missing piece arrives. The rules:
//
//   - Datagrams are told apart by source, destination, protocol and
//     identification (RFC 791; RFC 8200 §4.5: source, destination and
//     Fragment Identification).
//   - Every fragment but the last carries a multiple of 8 bytes; a
//     fragment after the end the last fragment set, a second last
//     fragment with another end, or an empty fragment is bad
//     ([DropBad]). A datagram of more than [MaxFragments] fragments is
//     bad too.
//   - A fragment that overlaps another one partly or with other bounds
//     drops the whole datagram ([DropOverlap]), as RFC 5722 requires for
//     IPv6 and Linux does for IPv4 since 2018; an exact duplicate (a
//     retransmission seen twice) is ignored.
//   - A datagram whose reassembled size would exceed 65535 bytes (IPv4
//     total length; IPv6 payload length) is dropped ([DropTooBig]): no
//     valid datagram is that large, only attacks are.
//   - A datagram not complete Config.Timeout after its first fragment
//     arrived is dropped ([DropTimeout]), and so is one with a fragment a
//     capture cut short ([DropTruncated]).
//   - At most Config.MaxDatagrams datagrams and Config.MaxBytes fragment
//     bytes are held at once; to make room for a new one the oldest are
//     dropped ([DropOverflow]).
//
// Each dropped datagram is counted once, under one reason: after a drop,
// the datagram's later fragments are absorbed without a new count until
// its timeout. The reassembled datagram has the IPv4 header of the first
// fragment (options included), with the fragment fields cleared, the
// total length set and the checksum recomputed; for IPv6, the
// unfragmentable part of the first fragment (the fixed header and the
// extension headers before the Fragment header) followed by the
// fragmentable part, with the Fragment header removed and the payload
// length set. Checksums of the transport are not looked at.
//
// # Fragmentation
//
// [Fragmenter] splits a whole datagram into fragments of at most an MTU,
// with an identification given by the caller (which must differ between
// datagrams with the same addresses and protocol that are in flight at
// the same time: copies made by -n from one captured datagram included).
// IPv4 fragments carry the first header whole in the first fragment and,
// in later ones, only the options whose copied flag is set (RFC 791
// §3.1); DF is cleared. IPv6 fragments repeat the unfragmentable part
// (the fixed header and the extension headers up to the last Routing
// header, or the Hop-by-Hop header) and carry a Fragment header.
//
// # Cost
//
// Decode, Fragmenter and the fragments of datagrams already pending
// allocate nothing. A Reassembler allocates each slot's buffer the first
// time the slot holds a datagram that large and keeps it for the next
// ones, up to MaxBytes in all. A Reassembler is not safe for concurrent
// use; Fragmenter and Fragment are values owned by their caller.
package ipfrag
