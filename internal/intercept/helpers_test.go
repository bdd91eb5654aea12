package intercept

import (
	"net"
	"net/netip"
	"time"

	"github.com/tcpcopy-go/tcpcopy/pkg/router"
)

func routerKey(client, target netip.AddrPort) router.Key {
	return router.Key{Client: client, Target: target}
}

// nopConn is a net.Conn that swallows writes, for benchmarks.
type nopConn struct{}

func (nopConn) Read([]byte) (int, error)         { select {} }
func (nopConn) Write(b []byte) (int, error)      { return len(b), nil }
func (nopConn) Close() error                     { return nil }
func (nopConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (nopConn) RemoteAddr() net.Addr             { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }
func (nopConn) SetDeadline(time.Time) error      { return nil }
func (nopConn) SetReadDeadline(time.Time) error  { return nil }
func (nopConn) SetWriteDeadline(time.Time) error { return nil }
