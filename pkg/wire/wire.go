package wire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
)

// Protocol constants. Values marked "C" are fixed by C TCPCopy 1.x and
// intercept 1.0 (xcopy.h, tc_msg.h) and must not change.
const (
	// DefaultPort is intercept's default listening port (C SERVER_PORT).
	DefaultPort = 36524

	// Version6 is the C TCPCopy 1.x protocol (C INTERNAL_VERSION 6), the
	// value of the type field of the handshake message.
	Version6 = 6
	// Version7 is our extension: IPv6, full headers, timestamps.
	Version7 = 7

	// ClientMsgSize is the size of a version-6 client message (C msg_clt_t).
	ClientMsgSize = 14
	// RecordSize is the size of a version-6 response record (C msg_server_t).
	RecordSize = 64
	// PayloadRecordSize is the size of a version-6 record of an intercept
	// built with --with-resp-payload: 20 + 20 + 24 + 128.
	PayloadRecordSize = 192
	// MaxCombined is the maximum record count of a combined frame (C
	// COMB_MAX_NUM).
	MaxCombined = 16
	// MaxCombinedPayload is the maximum record count of a combined frame of
	// 192-byte records (C COMB_MAX_NUM with TC_PAYLOAD).
	MaxCombinedPayload = 6
	// MaxTCPHeader6 is the longest TCP header a version-6 record holds (C
	// MAX_TCP_LEN_SUPPORTED: 20 + MAX_OPTION_LEN 24).
	MaxTCPHeader6 = 44
	// MaxPayload6 is the longest payload a 192-byte record carries (C
	// MAX_PAYLOAD_LEN); longer payloads are not carried at all.
	MaxPayload6 = 128

	// MaxPrefixLen is the longest payload prefix a version-7 record may be
	// asked to carry ([Format.PrefixLen], [Config.PrefixLen]).
	MaxPrefixLen = 16384
	// MaxClientMsgLen is the longest version-7 message tcpcopy may send; a
	// longer length field is a framing error.
	MaxClientMsgLen = 1024
	// MaxServerMsgLen is the longest version-7 message intercept may send
	// (the u16 length field).
	MaxServerMsgLen = 65535
	// MaxBatchBytes bounds the bytes a [Batcher] accumulates for one write.
	MaxBatchBytes = 65536
	// HelloLen is the length of the Hello written by this version; a reader
	// accepts any length from HelloLen to MaxHelloLen.
	HelloLen = 16
	// MaxHelloLen is the longest Hello a reader accepts.
	MaxHelloLen = 256
)

// Magic identifies our extension: bytes 8..11 of an offer and bytes 2..5 of
// a Hello (0x54 0x43 0x47 0x4f).
const Magic = "TCGO"

// Exported errors, for callers that branch on them.
var (
	// ErrFraming is wrapped by every error that means the byte stream lost
	// its framing (bad handshake, bad count or length). The connection must
	// be closed.
	ErrFraming = errors.New("wire: framing lost")
	// ErrNoHello is returned by [RecordReader.ReadHello] when the peer's
	// first bytes are a version-6 record stream: the peer is a C intercept
	// (or ours configured for version 6 only) and the reader keeps its
	// fallback format.
	ErrNoHello = errors.New("wire: peer sent records, not a hello")
	// ErrNeedV7 is returned by [AppendRoute] for an IPv6 route on a
	// version-6 connection: the C format has no room for IPv6 addresses.
	ErrNeedV7 = errors.New("wire: IPv6 route needs protocol version 7")
	// ErrNeedUDP is returned by [AppendRoute] for a UDP route on a
	// connection whose intercept did not announce UDP routing in its
	// Hello ([Format.UDP]): a version-6 peer, or an older version-7 one,
	// which would take the route for a TCP one.
	ErrNeedUDP = errors.New("wire: UDP route needs a version-7 intercept that routes UDP")
)

var (
	errBadRoute  = errors.New("wire: invalid route (host addresses of one family, ports not 0, op add or del)")
	errBadFormat = errors.New("wire: invalid format")
)

// Format is the per-connection wire format, negotiated by the handshake or,
// with a C peer, configured to match the peer's build options.
type Format struct {
	// Version is Version6 or Version7.
	Version uint8
	// Combined selects version-6 combined frames (u16 count + records);
	// false means a bare stream of records (C --disable-combined). Ignored
	// for version 7.
	Combined bool
	// Payload selects version-6 records of 192 bytes carrying up to 128
	// payload bytes (C --with-resp-payload). Ignored for version 7.
	Payload bool
	// PrefixLen is, for version 7, the maximum number of payload bytes
	// intercept copies into each record (0..MaxPrefixLen). Ignored for
	// version 6.
	PrefixLen int
	// Compare is, for version 7, the response comparison window
	// (0..MaxPrefixLen): intercept hashes the payload of every record
	// (Record.Hash) and copies the first Compare bytes of each response
	// into the records' prefixes; 0 is off. In a Hello, the longest window
	// intercept supports (0: it cannot compare). Ignored for version 6.
	Compare int
	// Auth is, for version 7, intercept's demand that the connection
	// authenticate before anything else: Hello flag bit 2, followed by a
	// challenge (docs/protocol.md §4.6). Version 6 cannot carry it.
	Auth bool
	// UDP is, for version 7, intercept's announcement that it routes UDP
	// answers (Hello flag bit 3): it takes route messages with the UDP
	// flag and sends UDP records (docs/protocol.md §4.7). Only then may
	// tcpcopy send UDP routes ([AppendRoute] refuses them otherwise).
	// Version 6 cannot carry it.
	UDP bool
}

// Validate reports whether f describes a format this package can encode and
// decode.
func (f Format) Validate() error {
	switch f.Version {
	case Version6:
		if f.Auth {
			return fmt.Errorf("%w: version 6 cannot authenticate", errBadFormat)
		}
		if f.UDP {
			return fmt.Errorf("%w: version 6 cannot route UDP", errBadFormat)
		}
		return nil
	case Version7:
		if f.PrefixLen < 0 || f.PrefixLen > MaxPrefixLen {
			return fmt.Errorf("%w: prefix length %d not in 0..%d", errBadFormat, f.PrefixLen, MaxPrefixLen)
		}
		if f.Compare < 0 || f.Compare > MaxPrefixLen {
			return fmt.Errorf("%w: compare window %d not in 0..%d", errBadFormat, f.Compare, MaxPrefixLen)
		}
		return nil
	}
	return fmt.Errorf("%w: version %d", errBadFormat, f.Version)
}

// String returns a short description such as "v6 combined 64B",
// "v7 prefix 128" or "v7 prefix 128 udp auth".
func (f Format) String() string {
	switch f.Version {
	case Version6:
		s := "v6 plain"
		if f.Combined {
			s = "v6 combined"
		}
		if f.Payload {
			return s + " 192B"
		}
		return s + " 64B"
	case Version7:
		s := fmt.Sprintf("v7 prefix %d", f.PrefixLen)
		if f.Compare > 0 {
			s += fmt.Sprintf(" compare %d", f.Compare)
		}
		if f.UDP {
			s += " udp"
		}
		if f.Auth {
			s += " auth"
		}
		return s
	}
	return fmt.Sprintf("invalid version %d", f.Version)
}

// recordSize returns the version-6 record size of f.
func (f Format) recordSize() int {
	if f.Payload {
		return PayloadRecordSize
	}
	return RecordSize
}

// maxCombined returns the version-6 maximum records per frame of f.
func (f Format) maxCombined() int {
	if f.Payload {
		return MaxCombinedPayload
	}
	return MaxCombined
}

// mustValid panics if f is invalid; constructors call it (a bad format is a
// programmer error: formats come from Validate-checked configuration or from
// a parsed Hello).
func (f Format) mustValid() {
	if err := f.Validate(); err != nil {
		panic(err)
	}
}

// RouteOp is the kind of a route message. The values are C's CLIENT_ADD and
// CLIENT_DEL.
type RouteOp uint8

// Route operations.
const (
	// RouteAdd asks intercept to send responses for this client/target pair
	// to the connection that carried the message (C CLIENT_ADD).
	RouteAdd RouteOp = 1
	// RouteDel says the session ended (C CLIENT_DEL: defined, never sent by
	// C tcpcopy, only logged by C intercept).
	RouteDel RouteOp = 2
)

// String returns "add", "del" or "op(N)".
func (o RouteOp) String() string {
	switch o {
	case RouteAdd:
		return "add"
	case RouteDel:
		return "del"
	}
	return fmt.Sprintf("op(%d)", uint8(o))
}

// Route is the decoded form of a client message of either version: the
// (rewritten) client address of a replayed session and the target it talks
// to, as seen in the packets tcpcopy sends to the target.
type Route struct {
	Client, Target netip.AddrPort
	Op             RouteOp
	// UDP marks the route of a copied UDP flow (version 7, route flag bit
	// 0): intercept keys UDP routes apart from TCP ones, so a TCP
	// connection and a UDP flow on the same addresses and ports never
	// mix.
	UDP bool
}

// normalize unmaps 4in6 addresses and drops zones. It reports whether r is
// encodable: routable (see [Route.Routable]) once normalised, so that
// whatever AppendRoute encodes a reader delivers.
func (r Route) normalize() (Route, bool) {
	c := netip.AddrPortFrom(r.Client.Addr().Unmap().WithZone(""), r.Client.Port())
	t := netip.AddrPortFrom(r.Target.Addr().Unmap().WithZone(""), r.Target.Port())
	n := Route{Client: c, Target: t, Op: r.Op, UDP: r.UDP}
	if !n.routable() {
		return r, false
	}
	return n, true
}

// Routable reports whether r can belong to a copied TCP connection (or
// UDP flow): both
// addresses are unicast host addresses of one family (not unspecified, not
// in 0.0.0.0/8, not multicast, not the IPv4 limited broadcast, not an
// IPv4-mapped IPv6 address, which the protocol sends as IPv4), without a
// zone, both ports are non-zero, and the op is add or del. Route readers
// skip (and count) routes that are not: a peer that sends them is broken
// or hostile, and C intercept would have installed them. Loopback and
// link-local addresses stay allowed (C tcpcopy's target_localhost mode).
func (r Route) Routable() bool { return r.routable() }

func (r Route) routable() bool {
	return (r.Op == RouteAdd || r.Op == RouteDel) &&
		r.Client.Port() != 0 && r.Target.Port() != 0 &&
		hostAddr(r.Client.Addr()) && hostAddr(r.Target.Addr()) &&
		r.Client.Addr().Is4() == r.Target.Addr().Is4()
}

// hostAddr reports whether a can be the address of a TCP endpoint.
func hostAddr(a netip.Addr) bool {
	switch {
	case !a.IsValid() || a.Zone() != "" || a.Is4In6() || a.IsUnspecified() || a.IsMulticast():
		return false
	case a.Is4():
		b := a.As4()
		return b[0] != 0 && b != [4]byte{255, 255, 255, 255}
	}
	return true
}

var be = binary.BigEndian

// ipv4Checksum returns the RFC 1071 header checksum of the IPv4 header h
// (whose checksum field is skipped). h is 20 bytes in this package's uses.
func ipv4Checksum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		if i == 10 {
			continue
		}
		s += uint32(h[i])<<8 | uint32(h[i+1])
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}
