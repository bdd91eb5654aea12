//go:build cgo

package capture_test

import (
	"testing"

	"github.com/tcpcopy-go/tcpcopy/pkg/capture"
	"github.com/tcpcopy-go/tcpcopy/pkg/pcapfilter"
)

// TestLibpcapFilter attaches libpcap-compiled programs, alone (bound
// socket) and behind the link-type guard ("any").
func TestLibpcapFilter(t *testing.T) {
	p := newPair(t)
	const snaplen = 65535
	prog, err := pcapfilter.Compile(pcapfilter.LinkTypeEthernet, snaplen, "tcp and (dst port 80 and dst host 192.0.2.1) or (ip6 and tcp dst portrange 8000-8100)")
	if err != nil {
		t.Fatal(err)
	}
	for _, iface := range []string{"vA", "any"} {
		t.Run(iface, func(t *testing.T) {
			src := open(t, p.a, capture.Config{Interface: iface, Filter: prog, IgnoreOutgoing: true})
			in := newInjector(t, p.b, "vB")
			in.send(t,
				frame{Src: client4, Dst: server4, Proto: 6, SPort: 1, DPort: 81}.Bytes(),
				frame{Src: client4, Dst: server4, Proto: 6, SPort: 2, DPort: 80}.Bytes(),
				frame{Src: client6, Dst: server6, Proto: 6, SPort: 3, DPort: 80}.Bytes(),
				frame{Src: client6, Dst: server6, Proto: 17, SPort: 4, DPort: 8050}.Bytes(),
				frame{Src: client6, Dst: server6, Proto: 6, SPort: 5, DPort: 8050}.Bytes(),
			)
			var ports []uint16
			for _, r := range readUntil(t, src, bySport(5)) {
				s, _ := tcpPorts(r.data)
				ports = append(ports, s)
			}
			if want := []uint16{2, 5}; !slicesEqual(ports, want) {
				t.Errorf("captured source ports %v, want %v", ports, want)
			}
		})
	}
}
