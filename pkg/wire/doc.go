// Package wire encodes and decodes the control channel between tcpcopy and
// intercept: routes from tcpcopy to intercept, and captured response headers
// from intercept back to tcpcopy.
//
// Two protocol versions share one TCP connection type (default port
// [DefaultPort]) and one handshake:
//
//   - Version 6 is byte-compatible with C TCPCopy 1.x and intercept 1.0
//     (session-replay-tools). tcpcopy sends 14-byte client messages
//     (CLIENT_ADD/CLIENT_DEL); intercept answers with fixed-size records of
//     64 bytes (IPv4 header + TCP header cut to 44 bytes) or 192 bytes
//     (records built with the C option --with-resp-payload, carrying up to
//     128 payload bytes), either "combined" into frames of a big-endian u16
//     count followed by 1..16 records (1..6 for 192-byte records) or as a bare
//     stream of records. C fixes combined/payload at build time and never
//     negotiates them; this package takes them from [Format].
//   - Version 7 is our extension, used only between Go peers: IPv6, full TCP
//     options, IPv4 options, capture timestamps, the real payload length as a
//     u32 and an optional payload prefix, all in length-prefixed typed
//     messages that can grow; and, when intercept's Hello announces it
//     ([Format.UDP]), UDP routes ([Route.UDP]) and records of the target's
//     UDP answers (IP and UDP headers, [UDPRecord]).
//
// Negotiation rides on the version-6 handshake. Our tcpcopy sends an offer
// ([AppendOffer]) that a C intercept reads as a plain version-6 handshake (C
// checks only that the client address and port are zero and only warns about
// the type field; the last six bytes are read and ignored). Our intercept
// recognises the magic in those six bytes and answers with a Hello
// ([AppendHello]), a message that can never be the start of a C record stream
// (it begins with 0x0000, which is neither a combined count nor an IPv4
// header). tcpcopy waits a bounded time for the Hello ([RecordReader.ReadHello]
// with a read deadline set by the caller) and otherwise stays with version 6.
// docs/protocol.md in this repository describes every byte, the sequence and
// the limits, with hex examples that are also the test fixtures.
//
// Version 7 can authenticate both peers with a shared secret: the Hello
// carries [Format.Auth], a challenge follows it, and each side proves the
// secret with an HMAC-SHA-256 over both sides' nonces ([AppendChallenge],
// [AppendAuth], [AppendAuthOK], [TcpcopyMAC], [InterceptMAC]). Version 6
// has no room for it: a peer that requires authentication refuses version
// 6.
//
// # API shape
//
// Encoders are AppendXxx functions and a [Batcher]; with a big enough
// destination buffer none of them allocates. Decoders are stream readers over
// an io.Reader ([RecordReader] for tcpcopy, [RouteReader] for intercept) that
// allocate one buffer at construction and then never allocate per message:
// Next reports whether a message is available, Record/Msg return it (views
// into the reader's buffer, valid until the next call of Next), and Err
// returns the sticky error that stopped the stream (nil after a clean EOF at
// a message boundary).
//
// A malformed record or message inside a well-framed stream is skipped and
// counted (Skipped); a stream whose framing is lost (a combined count of 0 or
// above the maximum, a v7 length below the header size or above the limit, a
// bad handshake) stops with a sticky error wrapping [ErrFraming].
//
// # Where we differ from C
//
//   - Decoding a C record whose IPv4 header had options (ihl > 5): C intercept
//     copies only the first 20 bytes of the IP header and puts the TCP header
//     right after them, so a C tcpcopy looks for TCP at ihl*4 and misreads it.
//     We read TCP at offset 20, compute the payload length with the original
//     ihl, and return a header with ihl = 5 and tot_len reduced to match.
//   - Encoding for a C tcpcopy we write ihl = 5 and reduce tot_len the same
//     way, so the C reader finds the TCP header and the right payload length.
//   - TCP headers longer than 44 bytes are cut to 44 by C with doff
//     unchanged. Our decoder computes the payload length with the original
//     doff, then clamps doff to 11 (and tot_len) in the returned header and
//     sets [OptionsCut].
//   - C intercept with --with-resp-payload copies the payload to 20+doff*4
//     even when doff > 11, writing past the end of its 192-byte record. We
//     copy only what fits in the record.
//   - Whenever we change a field of an IPv4 header we recompute its header
//     checksum (RFC 1071); untouched headers keep the captured checksum
//     bytes, valid or not.
//
// # Concurrency
//
// Readers and a Batcher belong to one goroutine (one per connection). The
// free functions are safe for concurrent use.
package wire
