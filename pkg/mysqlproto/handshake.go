package mysqlproto

import (
	"encoding/binary"
)

// Authentication plugin names.
const (
	NativePassword     = "mysql_native_password"
	CachingSHA2        = "caching_sha2_password"
	ScrambleLen        = 20 // the greeting's auth-plugin-data (the nonce)
	greetingVersion    = 10
	responseFixedLen   = 32 // caps, max packet, charset, 23 reserved bytes
	extCapsOffset      = 28 // MariaDB: extended capabilities in the reserved bytes
	greetingExtCapsOff = 6  // MariaDB: extended capabilities in the greeting's reserved bytes
)

// Greeting is the server's first packet, HandshakeV10 (MySQL
// "Protocol::HandshakeV10"; MariaDB "Initial handshake packet").
type Greeting struct {
	ServerVersion string
	ConnectionID  uint32
	// Scramble is the nonce for the authentication: the two parts of
	// auth-plugin-data, 20 bytes for the plugins we speak.
	Scramble []byte
	Caps     uint32
	// ExtCaps are MariaDB's extended capabilities, valid when the server
	// does not set ClientLongPassword (CLIENT_MYSQL).
	ExtCaps uint32
	Charset uint8
	Status  uint16
	// Plugin is the server's default authentication plugin, empty without
	// ClientPluginAuth.
	Plugin string
}

// ParseGreeting decodes the payload of a greeting packet.
func ParseGreeting(p []byte) (Greeting, error) {
	var g Greeting
	if len(p) < 1 {
		return g, ErrShort
	}
	if p[0] != greetingVersion {
		return g, ErrMalformed
	}
	ver, n, err := readNul(p[1:])
	if err != nil {
		return g, err
	}
	g.ServerVersion = string(ver)
	b := p[1+n:]
	if len(b) < 4+8+1+2 {
		return g, ErrShort
	}
	g.ConnectionID = binary.LittleEndian.Uint32(b)
	scramble := make([]byte, 0, ScrambleLen)
	scramble = append(scramble, b[4:12]...)
	g.Caps = uint32(binary.LittleEndian.Uint16(b[13:]))
	b = b[15:]
	if len(b) == 0 {
		g.Scramble = scramble
		return g, nil // a very old server: nothing more
	}
	if len(b) < 1+2+2+1+10 {
		return g, ErrShort
	}
	g.Charset = b[0]
	g.Status = binary.LittleEndian.Uint16(b[1:])
	g.Caps |= uint32(binary.LittleEndian.Uint16(b[3:])) << 16
	authLen := int(b[5])
	if g.Caps&ClientLongPassword == 0 {
		g.ExtCaps = binary.LittleEndian.Uint32(b[6+greetingExtCapsOff:])
	}
	b = b[16:]
	if g.Caps&ClientSecureConnection != 0 {
		// auth-plugin-data-part-2: max(13, authLen-8) bytes, the last a NUL.
		n := max(13, authLen-8)
		if len(b) < n {
			return g, ErrShort
		}
		part := b[:n]
		if k := len(part); k > 0 && part[k-1] == 0 {
			part = part[:k-1]
		}
		scramble = append(scramble, part...)
		b = b[n:]
	}
	g.Scramble = scramble
	if g.Caps&ClientPluginAuth != 0 {
		name, _, err := readNul(b)
		if err != nil {
			// Some servers omit the final NUL.
			name = b
		}
		g.Plugin = string(name)
	}
	return g, nil
}

// AppendGreeting appends the payload of a greeting (for tests and
// fixtures; tcpcopy never plays a server).
func AppendGreeting(dst []byte, g *Greeting) []byte {
	dst = append(dst, greetingVersion)
	dst = append(append(dst, g.ServerVersion...), 0)
	dst = binary.LittleEndian.AppendUint32(dst, g.ConnectionID)
	s := g.Scramble
	var part1 [8]byte
	copy(part1[:], s)
	dst = append(dst, part1[:]...)
	dst = append(dst, 0)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(g.Caps))
	dst = append(dst, g.Charset)
	dst = binary.LittleEndian.AppendUint16(dst, g.Status)
	dst = binary.LittleEndian.AppendUint16(dst, uint16(g.Caps>>16))
	dst = append(dst, byte(len(s)+1))
	var reserved [10]byte
	if g.Caps&ClientLongPassword == 0 {
		binary.LittleEndian.PutUint32(reserved[greetingExtCapsOff:], g.ExtCaps)
	}
	dst = append(dst, reserved[:]...)
	if g.Caps&ClientSecureConnection != 0 {
		part2 := make([]byte, max(13, len(s)-8+1))
		if len(s) > 8 {
			copy(part2, s[8:])
		}
		dst = append(dst, part2...)
	}
	if g.Caps&ClientPluginAuth != 0 {
		dst = append(append(dst, g.Plugin...), 0)
	}
	return dst
}

// HandshakeResponse is the client's answer to the greeting,
// HandshakeResponse41, or an SSLRequest (SSL set, the rest empty).
type HandshakeResponse struct {
	Caps       uint32
	ExtCaps    uint32 // MariaDB, when Caps lacks ClientLongPassword
	MaxPacket  uint32
	Charset    uint8
	User       string
	AuthData   []byte
	Database   string
	Plugin     string
	Attrs      []byte // the raw key-value pairs, without their length
	SSLRequest bool   // only the 32 fixed bytes, with ClientSSL: TLS follows
	// ZstdLevel is the compression level byte of ClientZstdCompression.
	ZstdLevel uint8
}

// ParseHandshakeResponse decodes the payload of the client's answer to the
// greeting. An SSLRequest (32 bytes with ClientSSL) sets SSLRequest.
func ParseHandshakeResponse(p []byte) (HandshakeResponse, error) {
	var r HandshakeResponse
	if len(p) < responseFixedLen {
		return r, ErrShort
	}
	r.Caps = binary.LittleEndian.Uint32(p)
	if r.Caps&ClientProtocol41 == 0 {
		return r, ErrMalformed // HandshakeResponse320: not spoken since MySQL 4.1
	}
	r.MaxPacket = binary.LittleEndian.Uint32(p[4:])
	r.Charset = p[8]
	if r.Caps&ClientLongPassword == 0 {
		r.ExtCaps = binary.LittleEndian.Uint32(p[extCapsOffset:])
	}
	if len(p) == responseFixedLen && r.Caps&ClientSSL != 0 {
		r.SSLRequest = true
		return r, nil
	}
	b := p[responseFixedLen:]
	user, n, err := readNul(b)
	if err != nil {
		return r, err
	}
	r.User = string(user)
	b = b[n:]
	switch {
	case r.Caps&ClientPluginAuthLenencClientData != 0:
		l, k, null, err := ReadLenEnc(b)
		if err != nil || null {
			return r, orMalformed(err)
		}
		if uint64(len(b)-k) < l {
			return r, ErrShort
		}
		r.AuthData = append([]byte(nil), b[k:k+int(l)]...)
		b = b[k+int(l):]
	case r.Caps&ClientSecureConnection != 0:
		if len(b) < 1 || len(b)-1 < int(b[0]) {
			return r, ErrShort
		}
		r.AuthData = append([]byte(nil), b[1:1+int(b[0])]...)
		b = b[1+int(b[0]):]
	default:
		a, n, err := readNul(b)
		if err != nil {
			return r, err
		}
		r.AuthData = append([]byte(nil), a...)
		b = b[n:]
	}
	if r.Caps&ClientConnectWithDB != 0 && len(b) > 0 {
		db, n, err := readNul(b)
		if err != nil {
			return r, err
		}
		r.Database = string(db)
		b = b[n:]
	}
	if r.Caps&ClientPluginAuth != 0 && len(b) > 0 {
		name, n, err := readNul(b)
		if err != nil {
			name, n = b, len(b) // a missing final NUL
		}
		r.Plugin = string(name)
		b = b[n:]
	}
	if r.Caps&ClientConnectAttrs != 0 && len(b) > 0 {
		l, k, null, err := ReadLenEnc(b)
		if err != nil || null {
			return r, orMalformed(err)
		}
		if uint64(len(b)-k) < l {
			return r, ErrShort
		}
		r.Attrs = append([]byte(nil), b[k:k+int(l)]...)
		b = b[k+int(l):]
	}
	if r.Caps&ClientZstdCompression != 0 && len(b) > 0 {
		r.ZstdLevel = b[0]
	}
	return r, nil
}

func orMalformed(err error) error {
	if err == nil {
		return ErrMalformed
	}
	return err
}

// AppendHandshakeResponse appends the payload of r as a
// HandshakeResponse41. The auth data is written length-encoded with
// ClientPluginAuthLenencClientData, else with a 1-byte length (it must
// then be shorter than 256 bytes).
func AppendHandshakeResponse(dst []byte, r *HandshakeResponse) []byte {
	dst = binary.LittleEndian.AppendUint32(dst, r.Caps)
	dst = binary.LittleEndian.AppendUint32(dst, r.MaxPacket)
	dst = append(dst, r.Charset)
	var reserved [23]byte
	if r.Caps&ClientLongPassword == 0 {
		binary.LittleEndian.PutUint32(reserved[extCapsOffset-9:], r.ExtCaps)
	}
	dst = append(dst, reserved[:]...)
	if r.SSLRequest {
		return dst
	}
	dst = append(append(dst, r.User...), 0)
	switch {
	case r.Caps&ClientPluginAuthLenencClientData != 0:
		dst = AppendLenEnc(dst, uint64(len(r.AuthData)))
		dst = append(dst, r.AuthData...)
	case r.Caps&ClientSecureConnection != 0:
		dst = append(dst, byte(len(r.AuthData)))
		dst = append(dst, r.AuthData...)
	default:
		dst = append(append(dst, r.AuthData...), 0)
	}
	if r.Caps&ClientConnectWithDB != 0 {
		dst = append(append(dst, r.Database...), 0)
	}
	if r.Caps&ClientPluginAuth != 0 {
		dst = append(append(dst, r.Plugin...), 0)
	}
	if r.Caps&ClientConnectAttrs != 0 {
		dst = AppendLenEnc(dst, uint64(len(r.Attrs)))
		dst = append(dst, r.Attrs...)
	}
	if r.Caps&ClientZstdCompression != 0 {
		dst = append(dst, r.ZstdLevel)
	}
	return dst
}

// ChangeUser is the payload of COM_CHANGE_USER (MySQL
// "COM_CHANGE_USER"): it redoes a login on an open connection with the
// scramble of the connection's greeting.
type ChangeUser struct {
	User     string
	AuthData []byte
	Database string
	Charset  uint16
	Plugin   string
	Attrs    []byte
	// hasCharset etc. say which optional fields were present.
	hasCharset, hasPlugin, hasAttrs bool
}

// ParseChangeUser decodes a COM_CHANGE_USER payload (the command byte
// included) for a connection with capabilities caps.
func ParseChangeUser(p []byte, caps uint32) (ChangeUser, error) {
	var c ChangeUser
	if len(p) < 1 || p[0] != ComChangeUser {
		return c, ErrMalformed
	}
	b := p[1:]
	user, n, err := readNul(b)
	if err != nil {
		return c, err
	}
	c.User = string(user)
	b = b[n:]
	if caps&ClientSecureConnection != 0 {
		if len(b) < 1 || len(b)-1 < int(b[0]) {
			return c, ErrShort
		}
		c.AuthData = append([]byte(nil), b[1:1+int(b[0])]...)
		b = b[1+int(b[0]):]
	} else {
		a, n, err := readNul(b)
		if err != nil {
			return c, err
		}
		c.AuthData = append([]byte(nil), a...)
		b = b[n:]
	}
	db, n, err := readNul(b)
	if err != nil {
		return c, err
	}
	c.Database = string(db)
	b = b[n:]
	if len(b) >= 2 {
		c.Charset, c.hasCharset = binary.LittleEndian.Uint16(b), true
		b = b[2:]
	}
	if caps&ClientPluginAuth != 0 && len(b) > 0 {
		name, n, err := readNul(b)
		if err != nil {
			name, n = b, len(b)
		}
		c.Plugin, c.hasPlugin = string(name), true
		b = b[n:]
	}
	if caps&ClientConnectAttrs != 0 && len(b) > 0 {
		l, k, null, err := ReadLenEnc(b)
		if err != nil || null {
			return c, orMalformed(err)
		}
		if uint64(len(b)-k) < l {
			return c, ErrShort
		}
		c.Attrs, c.hasAttrs = append([]byte(nil), b[k:k+int(l)]...), true
	}
	return c, nil
}

// AppendChangeUser appends c as a COM_CHANGE_USER payload for a connection
// with capabilities caps. AuthData must be shorter than 256 bytes.
func AppendChangeUser(dst []byte, c *ChangeUser, caps uint32) []byte {
	dst = append(dst, ComChangeUser)
	dst = append(append(dst, c.User...), 0)
	if caps&ClientSecureConnection != 0 {
		dst = append(dst, byte(len(c.AuthData)))
		dst = append(dst, c.AuthData...)
	} else {
		dst = append(append(dst, c.AuthData...), 0)
	}
	dst = append(append(dst, c.Database...), 0)
	if !c.hasCharset && !c.hasPlugin && !c.hasAttrs {
		return dst
	}
	dst = binary.LittleEndian.AppendUint16(dst, c.Charset)
	if caps&ClientPluginAuth != 0 && (c.hasPlugin || c.hasAttrs) {
		dst = append(append(dst, c.Plugin...), 0)
	}
	if caps&ClientConnectAttrs != 0 && c.hasAttrs {
		dst = AppendLenEnc(dst, uint64(len(c.Attrs)))
		dst = append(dst, c.Attrs...)
	}
	return dst
}
