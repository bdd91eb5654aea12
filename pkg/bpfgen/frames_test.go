package bpfgen_test

// The frames of these tests come from internal/testframes; frame keeps
// the tests' short field names.

import (
	"net/netip"

	"github.com/tcpcopy-go/tcpcopy/internal/testframes"
)

// frame describes one Ethernet frame carrying IPv4 or IPv6 (see
// testframes.Frame).
type frame struct {
	vlan                       uint16
	src, dst                   netip.Addr
	proto                      uint8
	sport, dport               uint16
	ipOpts                     int
	fragOff                    uint16
	moreFrags, hopByHop, frag6 bool
	payload                    int
}

// bytes encodes the frame with valid IPv4, TCP and UDP checksums.
func (f frame) bytes() []byte {
	return testframes.Frame{
		VLAN: f.vlan, Src: f.src, Dst: f.dst, Proto: f.proto, SPort: f.sport, DPort: f.dport,
		IPOpts: f.ipOpts, FragOff: f.fragOff, MoreFrags: f.moreFrags, HopByHop: f.hopByHop,
		Frag6: f.frag6, Payload: f.payload,
	}.Bytes()
}
