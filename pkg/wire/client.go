package wire

import (
	"fmt"
	"io"
	"net/netip"
)

// Version-6 client message layout (C msg_clt_t, packed, 14 bytes). Address
// and ports are raw network-order copies; type is big-endian.
const (
	cltIPOff         = 0
	cltPortOff       = 4
	cltTypeOff       = 6
	cltTargetIPOff   = 8
	cltTargetPortOff = 12
)

// Version-7 message header, both directions: u16 total length (header
// included), u8 type, u8 flags.
const (
	msgHdrLen  = 4
	msgLenOff  = 0
	msgTypeOff = 2
	msgFlagOff = 3

	// Types sent by tcpcopy (0x01..0x7f).
	msgRouteAdd = 0x01 // = C CLIENT_ADD
	msgRouteDel = 0x02 // = C CLIENT_DEL
	msgConfig   = 0x03
	// Types sent by intercept (0x80..0xff).
	msgRecord = 0x81

	// Route flags (version 7): the route is a UDP flow's.
	routeFlagUDP = 1 << 0

	// Route body: u8 family, u8 reserved, u16 client port, u16 target
	// port, client address, target address.
	routeFamilyOff     = 4
	routeClientPortOff = 6
	routeTargetPortOff = 8
	routeAddrOff       = 10
	routeLen4          = routeAddrOff + 2*4
	routeLen6          = routeAddrOff + 2*16

	// Config body: u16 prefix length, u16 compare window (reserved, 0,
	// before responses were compared).
	configPrefixOff  = 4
	configCompareOff = 6
	configLen        = 8
)

// AppendRoute appends r encoded for the connection format f (any version
// other than Version7 encodes version 6). A version-6 message is C's
// 14-byte msg_clt_t and can carry only IPv4 ([ErrNeedV7] for
// IPv6); a version-7 message carries IPv4 or IPv6. 4in6-mapped addresses are
// unmapped and zones dropped first. It returns an error (and dst unchanged)
// for a route that is not [Route.Routable] once normalised (a reader would
// skip it), and [ErrNeedUDP] for a UDP route unless f is version 7 with
// [Format.UDP]: an intercept that did not announce UDP would ignore the
// flag and install a TCP route. With enough capacity in dst it does not
// allocate.
func AppendRoute(dst []byte, f Format, r Route) ([]byte, error) {
	r, ok := r.normalize()
	if !ok {
		return dst, errBadRoute
	}
	if r.UDP && (f.Version != Version7 || !f.UDP) {
		return dst, ErrNeedUDP
	}
	if f.Version != Version7 {
		if !r.Client.Addr().Is4() {
			return dst, ErrNeedV7
		}
		var m [ClientMsgSize]byte
		c4, t4 := r.Client.Addr().As4(), r.Target.Addr().As4()
		copy(m[cltIPOff:], c4[:])
		be.PutUint16(m[cltPortOff:], r.Client.Port())
		be.PutUint16(m[cltTypeOff:], uint16(r.Op))
		copy(m[cltTargetIPOff:], t4[:])
		be.PutUint16(m[cltTargetPortOff:], r.Target.Port())
		return append(dst, m[:]...), nil
	}
	var m [routeLen6]byte
	n := routeLen4
	m[routeFamilyOff] = 4
	if r.Client.Addr().Is6() {
		n = routeLen6
		m[routeFamilyOff] = 6
	}
	be.PutUint16(m[msgLenOff:], uint16(n))
	m[msgTypeOff] = uint8(r.Op) // msgRouteAdd / msgRouteDel
	if r.UDP {
		m[msgFlagOff] = routeFlagUDP
	}
	be.PutUint16(m[routeClientPortOff:], r.Client.Port())
	be.PutUint16(m[routeTargetPortOff:], r.Target.Port())
	if n == routeLen4 {
		c, t := r.Client.Addr().As4(), r.Target.Addr().As4()
		copy(m[routeAddrOff:], c[:])
		copy(m[routeAddrOff+4:], t[:])
	} else {
		c, t := r.Client.Addr().As16(), r.Target.Addr().As16()
		copy(m[routeAddrOff:], c[:])
		copy(m[routeAddrOff+16:], t[:])
	}
	return append(dst, m[:n]...), nil
}

// Config is a version-7 configuration message from tcpcopy, sent after the
// Hello and before any route.
type Config struct {
	// PrefixLen is the number of payload bytes tcpcopy wants in each record
	// (intercept uses the smaller of this and its own limit, the value it
	// announced in the Hello).
	PrefixLen int
	// Compare asks intercept to hash every record's payload and to copy the
	// first Compare bytes of each response into the records (the response
	// comparison); 0 is off. intercept uses the smaller of this and the
	// window it announced in the Hello.
	Compare int
}

// AppendConfig appends c as a version-7 message. PrefixLen is clamped to
// 0..MaxPrefixLen. It must be sent only on a version-7 connection: a C
// intercept would read it as part of a 14-byte client message.
func AppendConfig(dst []byte, c Config) []byte {
	var m [configLen]byte
	be.PutUint16(m[msgLenOff:], configLen)
	m[msgTypeOff] = msgConfig
	be.PutUint16(m[configPrefixOff:], uint16(min(max(c.PrefixLen, 0), MaxPrefixLen)))
	be.PutUint16(m[configCompareOff:], uint16(min(max(c.Compare, 0), MaxPrefixLen)))
	return append(dst, m[:]...)
}

// MsgKind is the kind of a decoded client message.
type MsgKind uint8

// Client message kinds.
const (
	MsgRoute  MsgKind = 1 // Msg.Route is set
	MsgConfig MsgKind = 2 // Msg.Config is set (version 7 only)
	MsgAuth   MsgKind = 3 // Msg.Auth is set (version 7 only)
)

// String returns "route", "config", "auth" or "kind(N)".
func (k MsgKind) String() string {
	switch k {
	case MsgRoute:
		return "route"
	case MsgConfig:
		return "config"
	case MsgAuth:
		return "auth"
	}
	return fmt.Sprintf("kind(%d)", uint8(k))
}

// Msg is a decoded client message.
type Msg struct {
	Kind   MsgKind
	Route  Route
	Config Config
	// Auth is tcpcopy's answer to a challenge; the caller verifies its MAC
	// ([TcpcopyMAC], [EqualMAC]).
	Auth Auth
}

// RouteReader decodes what tcpcopy sends on one connection: the handshake,
// then client messages. Create it with NewRouteReader; it is not safe for
// concurrent use.
type RouteReader struct {
	in      inbuf
	version uint8
	offered bool // handshake read
	offer   Offer
	msg     Msg
	skipped uint64
	err     error
	eof     bool
}

// routeBufSize holds the largest version-7 client message plus read-ahead.
const routeBufSize = 4096

// NewRouteReader returns a reader of client messages from r. It allocates
// its buffer (4 KiB) once.
func NewRouteReader(r io.Reader) *RouteReader {
	return &RouteReader{in: inbuf{rd: r, buf: make([]byte, routeBufSize)}, version: Version6}
}

// ReadOffer reads the 14-byte handshake. The caller decides the version
// (SetVersion) and, if the offer carried [Magic] (Offer.MaxVersion >= 7),
// writes a Hello. Without a call to ReadOffer, the first Next reads the
// handshake itself and stays at version 6. Errors are sticky.
func (rr *RouteReader) ReadOffer() (Offer, error) {
	if rr.err != nil {
		return Offer{}, rr.err
	}
	if rr.offered {
		return rr.offer, nil
	}
	if err := rr.in.fill(ClientMsgSize); err != nil {
		rr.fail(err, false) // even a clean EOF is an error before the handshake
		return Offer{}, rr.err
	}
	o, err := parseOffer(rr.in.take(ClientMsgSize))
	if err != nil {
		rr.err = err
		return Offer{}, err
	}
	rr.offered, rr.offer = true, o
	return o, nil
}

// SetVersion sets the version of the messages after the handshake: Version7
// only after sending a Hello with version 7 in answer to a v7 offer. It
// panics on any other value (a programmer error).
func (rr *RouteReader) SetVersion(v uint8) {
	if v != Version6 && v != Version7 {
		panic(fmt.Sprintf("wire: SetVersion(%d)", v))
	}
	rr.version = v
}

// Version returns the version messages are decoded with.
func (rr *RouteReader) Version() uint8 { return rr.version }

// Next decodes the next client message. It returns false at the end of the
// stream or on an error (see Err). Messages that are well framed but not
// understood (an unknown type, a version-6 type other than add/del, a
// version-7 route with a bad family or too short) or whose route no copied
// connection can have (see [Route.Routable]) are skipped and counted in
// Skipped. It does not allocate.
func (rr *RouteReader) Next() bool {
	if rr.err != nil || rr.eof {
		return false
	}
	if !rr.offered {
		if _, err := rr.ReadOffer(); err != nil {
			return false
		}
	}
	for {
		var ok bool
		if rr.version == Version7 {
			ok = rr.next7()
		} else {
			ok = rr.next6()
		}
		if ok {
			return true
		}
		if rr.err != nil || rr.eof {
			return false
		}
		rr.skipped++
	}
}

// next6 reads one 14-byte message; false with no error set means "skip".
func (rr *RouteReader) next6() bool {
	if err := rr.in.fill(ClientMsgSize); err != nil {
		rr.fail(err, true)
		return false
	}
	m := rr.in.take(ClientMsgSize)
	// The type is a big-endian u16: compare all 16 bits (0x0101 is not
	// CLIENT_ADD).
	typ := be.Uint16(m[cltTypeOff:])
	if typ != uint16(RouteAdd) && typ != uint16(RouteDel) {
		return false
	}
	r := Route{
		Client: netip.AddrPortFrom(netip.AddrFrom4([4]byte(m[cltIPOff:])), be.Uint16(m[cltPortOff:])),
		Target: netip.AddrPortFrom(netip.AddrFrom4([4]byte(m[cltTargetIPOff:])), be.Uint16(m[cltTargetPortOff:])),
		Op:     RouteOp(typ),
	}
	if !r.routable() {
		return false
	}
	rr.msg = Msg{Kind: MsgRoute, Route: r}
	return true
}

// next7 reads one length-prefixed message; false with no error set means
// "skip".
func (rr *RouteReader) next7() bool {
	if err := rr.in.fill(msgHdrLen); err != nil {
		rr.fail(err, true)
		return false
	}
	h := rr.in.buffered()
	n := int(be.Uint16(h[msgLenOff:]))
	if n < msgHdrLen || n > MaxClientMsgLen {
		rr.err = fmt.Errorf("%w: client message length %d not in %d..%d", ErrFraming, n, msgHdrLen, MaxClientMsgLen)
		return false
	}
	if err := rr.in.fill(n); err != nil {
		rr.fail(err, false)
		return false
	}
	m := rr.in.take(n)
	switch m[msgTypeOff] {
	case msgRouteAdd, msgRouteDel:
		if n < routeAddrOff {
			return false
		}
		var c, t netip.Addr
		switch m[routeFamilyOff] {
		case 4:
			if n < routeLen4 {
				return false
			}
			c = netip.AddrFrom4([4]byte(m[routeAddrOff:]))
			t = netip.AddrFrom4([4]byte(m[routeAddrOff+4:]))
		case 6:
			if n < routeLen6 {
				return false
			}
			c = netip.AddrFrom16([16]byte(m[routeAddrOff:]))
			t = netip.AddrFrom16([16]byte(m[routeAddrOff+16:]))
		default:
			return false
		}
		r := Route{
			Client: netip.AddrPortFrom(c, be.Uint16(m[routeClientPortOff:])),
			Target: netip.AddrPortFrom(t, be.Uint16(m[routeTargetPortOff:])),
			Op:     RouteOp(m[msgTypeOff]),
			UDP:    m[msgFlagOff]&routeFlagUDP != 0,
		}
		if !r.routable() {
			return false
		}
		rr.msg = Msg{Kind: MsgRoute, Route: r}
		return true
	case msgConfig:
		if n < configPrefixOff+2 {
			return false
		}
		c := Config{PrefixLen: int(be.Uint16(m[configPrefixOff:]))}
		if n >= configCompareOff+2 {
			c.Compare = int(be.Uint16(m[configCompareOff:]))
		}
		rr.msg = Msg{Kind: MsgConfig, Config: c}
		return true
	case msgAuth:
		rr.msg = Msg{Kind: MsgAuth}
		return decodeAuth(m, &rr.msg.Auth)
	}
	return false
}

// fail records a read error. io.EOF at a message boundary ends the stream
// cleanly; elsewhere it is io.ErrUnexpectedEOF.
func (rr *RouteReader) fail(err error, boundary bool) {
	if err == io.EOF {
		if boundary {
			rr.eof = true
			return
		}
		err = io.ErrUnexpectedEOF
	}
	rr.err = fmt.Errorf("wire: reading client messages: %w", err)
}

// Msg returns the message decoded by the last successful Next.
func (rr *RouteReader) Msg() Msg { return rr.msg }

// Err returns the error that stopped the reader, or nil if the stream ended
// cleanly at a message boundary (or has not ended).
func (rr *RouteReader) Err() error { return rr.err }

// Skipped returns how many well-framed messages Next skipped.
func (rr *RouteReader) Skipped() uint64 { return rr.skipped }
