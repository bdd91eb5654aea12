//go:build !linux

package inject

import (
	"errors"
	"net/netip"
)

// Sender sends raw IP packets; only Linux is supported.
type Sender struct{}

// Errors callers branch on.
var (
	ErrTooBig    = errors.New("inject: packet larger than the path MTU")
	ErrMalformed = errors.New("inject: not an IPv4 or IPv6 packet")
	ErrNoFamily  = errors.New("inject: no raw socket for this IP version")
	ErrClosed    = errors.New("inject: sender closed")
)

var errUnsupported = errors.New("inject: raw sending is only supported on Linux")

// Open fails on this platform.
func Open() (*Sender, error) { return nil, errUnsupported }

// Send fails on this platform.
func (s *Sender) Send(pkt []byte) error { return errUnsupported }

// Close does nothing.
func (s *Sender) Close() error { return nil }

// PathMTU returns 0 on this platform.
func (s *Sender) PathMTU(netip.Addr) int { return 0 }

// LinkRoute says which Ethernet addresses the frames to one destination
// carry; only Linux can send them.
type LinkRoute struct{}

// LinkSender sends Ethernet frames; only Linux is supported.
type LinkSender struct{}

// OpenLink fails on this platform.
func OpenLink(string, []LinkRoute) (*LinkSender, error) { return nil, errUnsupported }

// Send fails on this platform.
func (s *LinkSender) Send([]byte) error { return errUnsupported }

// Close does nothing.
func (s *LinkSender) Close() error { return nil }

// PathMTU returns 0 on this platform.
func (s *LinkSender) PathMTU(netip.Addr) int { return 0 }

// Batcher sends packets in batches; only Linux is supported.
type Batcher struct{}

// NewBatcher returns a Batcher whose sends fail on this platform.
func (s *Sender) NewBatcher(int) *Batcher { return &Batcher{} }

// Send reports every packet to fail with an error on this platform.
func (b *Batcher) Send(pkts [][]byte, fail func(pkt []byte, err error)) int {
	for _, p := range pkts {
		fail(p, errUnsupported)
	}
	return 0
}
