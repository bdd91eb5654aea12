package pcapfilter

import (
	"fmt"

	"golang.org/x/net/bpf"
)

// LinkTypeEthernet is DLT_EN10MB / LINKTYPE_ETHERNET (1): frames start with
// a 14-byte Ethernet header. It is what an AF_PACKET SOCK_RAW socket on an
// Ethernet or loopback interface delivers to its filter.
const LinkTypeEthernet = 1

// MaxSnapLen is the largest snap length accepted by Compile, libpcap's
// MAXIMUM_SNAPLEN (the value tcpdump uses by default).
const MaxSnapLen = 262144

// Compile compiles the tcpdump filter expression expr (see pcap-filter(7))
// for the link type linkType (a DLT_ value such as [LinkTypeEthernet]) and
// the snap length snaplen, with libpcap's optimizer on and an unknown
// netmask (so "ip broadcast" is rejected).
//
// Accepting instructions of the result return snaplen, which an AF_PACKET
// socket uses as the number of bytes to capture. An empty expression
// compiles to a program accepting every packet.
//
// Errors carry libpcap's message, e.g.
//
//	pcapfilter: filter "tcp and": syntax error
func Compile(linkType int, snaplen int, expr string) ([]bpf.RawInstruction, error) {
	if snaplen <= 0 || snaplen > MaxSnapLen {
		return nil, fmt.Errorf("pcapfilter: filter %q: snap length %d out of range 1..%d", expr, snaplen, MaxSnapLen)
	}
	if linkType < 0 {
		return nil, fmt.Errorf("pcapfilter: filter %q: invalid link type %d", expr, linkType)
	}
	for i := 0; i < len(expr); i++ {
		if expr[i] == 0 {
			return nil, fmt.Errorf("pcapfilter: filter %q: NUL byte in expression", expr)
		}
	}
	return compile(linkType, snaplen, expr)
}
