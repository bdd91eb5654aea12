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
// A Sender is safe for concurrent use: each send is one system call on a
// socket shared by all goroutines.
package inject
