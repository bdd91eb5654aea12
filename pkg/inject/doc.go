// Package inject sends complete IP packets that tcpcopy built or rewrote:
// IPv4 through a raw socket with IP_HDRINCL, IPv6 through a raw socket with
// IPPROTO_RAW (which implies IPV6_HDRINCL on Linux), so the kernel routes
// them like any locally generated packet but leaves every header field as
// given (raw(7)).
//
// Send takes the destination from the packet itself, uses one sendto(2) per
// packet through a prebuilt socket address, and allocates nothing. Errors
// are returned, never fatal: the caller counts them and, for EMSGSIZE,
// re-segments (C TCPCopy exits on any send error).
//
// A Batcher sends a batch of packets with one sendmmsg(2) per run of the
// same IP version, with the same errors per packet; tcpcopy's workers send
// what a batch of input produced that way. (On the lab's veth path a
// batch of 32 per call pushes no more packets per second than one
// sendto(2) each: the kernel's work per packet, the receiver's included,
// dwarfs the system call.)
//
// A Sender is safe for concurrent use: each send is one system call on a
// socket shared by all goroutines. A Batcher belongs to one goroutine.
package inject
