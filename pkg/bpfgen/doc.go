// Package bpfgen assembles the classic BPF capture filters that tcpcopy and
// intercept derive from their own options, in pure Go (no libpcap).
//
// [Inbound] builds "TCP to one of these address:port pairs" (tcpcopy's
// -x [srcIP:]srcPort-dstIP:dstPort mappings select the traffic to copy by
// its destination); [InboundTCPUDP] adds "UDP to one of these
// address:port pairs, and the fragments of UDP datagrams to their
// addresses" (tcpcopy's udp: mappings); [InboundAndResponses] adds the
// same from the matches, TCP and UDP (the online servers' answers, for
// tcpcopy's response comparison; [InboundAndTCPResponses] the TCP ones
// only); [ResponsesFrom] builds "TCP from
// one of these address:port pairs" (intercept selecting the target's
// responses).
// Free-form filters given by users are compiled with libpcap by package
// pcapfilter instead.
//
// # What the programs see and match
//
// Programs are for Ethernet frames (LINKTYPE_ETHERNET): what an AF_PACKET
// SOCK_RAW socket on an Ethernet or loopback interface hands its filter.
// An 802.1Q tag is not in the frame there: the kernel moves it into packet
// metadata before packet sockets see received frames, so the programs do
// not look for one, and a frame that still carries a tag in-band (QinQ
// inner tags, frames read from a file) is not matched. This is also what
// libpcap compiles for the same expression without the "vlan" keyword.
//
//   - IPv4: the IP protocol must be TCP and the fragment offset zero: a
//     non-first fragment carries no TCP header and never matches. The TCP
//     header is found through the IHL (LoadMemShift), so IP options are
//     handled.
//   - IPv6: the fixed header's next header must be TCP. Packets with any
//     extension header before TCP (hop-by-hop, routing, fragment,
//     destination options) are not matched; TCP does not use them in
//     practice, and libpcap's port primitives do the same.
//
// UDP matches ([InboundTCPUDP]) follow the same rules for whole datagrams
// and first fragments (IPv4 protocol 17, IPv6 next header 17 right behind
// the fixed header). Fragments after the first carry no UDP header, and
// tcpcopy must see every fragment of a datagram to reassemble it, so
// fragments of UDP are matched by address alone: an IPv4 packet of
// protocol 17 with a non-zero fragment offset, and an IPv6 packet whose
// fixed header is followed by a Fragment header naming UDP (first
// fragments included), to the address of a UDP match, or to any address
// when a UDP match has none. Fragments of other UDP services of that
// address pass too; tcpcopy drops them after reassembly, by port.
//
// A frame too short to hold the TCP or UDP ports never matches, except a
// UDP fragment after the first, which needs the fields up to its
// destination address (none beyond the fragment fields for a match
// without an address).
//
// For every frame that holds the TCP ports, a generated program agrees with libpcap's compilation of
//
//	tcp and ((dst port P1 and dst host H1) or (dst port P2) or ...)
//
// (src for ResponsesFrom), and an InboundTCPUDP program with the
// expression of pcapExprUDP in its tests; the tests check this on a table
// of real frames and with a fuzz target. Where a [Match] has no port, libpcap would also
// accept IPv4 non-first fragments and IPv6 fragments of the address; these
// programs do not.
//
// Accepting programs return [AcceptLen]; package capture lowers that to its
// snap length.
//
// # Size and cost
//
// At most [MaxMatches] matches are accepted (TCP and UDP together); a
// program then has at most 1300 instructions (720 with TCP matches only;
// 2600 for [InboundAndResponses], which tests each UDP match both ways),
// well under the kernel's limit of 4096 (BPF_MAXINSNS). Matching is linear in the number of matches. The
// functions allocate and are meant for setup time; they are safe for
// concurrent use.
package bpfgen
