package ipmangle_test

import (
	"fmt"
	"net/netip"

	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
)

// A copier's per-packet path: decode a captured packet, fix its offloaded
// checksums, redirect it to the test host with our ACK number, and split
// it to the MTU before sending.
func Example() {
	// A captured data segment (built here; normally from the capture ring).
	orig := ipmangle.Fields{
		Src: netip.MustParseAddrPort("192.0.2.10:51000"),
		Dst: netip.MustParseAddrPort("198.51.100.1:80"),
		Seq: 1000, Ack: 5000, Flags: ipmangle.PSH | ipmangle.ACK, Window: 502, WScale: -1,
		HasTS: true, TSVal: 77, TSEcr: 88, DontFragment: true,
		Payload: make([]byte, 3000),
	}
	pkt := make([]byte, orig.Len())
	orig.Encode(pkt)

	var p ipmangle.Parsed
	p.Decode(pkt)
	if !p.Valid {
		fmt.Println("drop:", p.Reason) // count it
		return
	}
	ipmangle.FixChecksums(pkt, &p) // captured checksums may be partial
	ipmangle.SetDst(pkt, &p, netip.MustParseAddrPort("203.0.113.5:8080"))
	ipmangle.SetAck(pkt, &p, 424242)

	var s ipmangle.Segmenter
	buf := make([]byte, 1500)
	if s.Reset(pkt, &p, 1500) {
		for seg := s.Next(buf); seg != nil; seg = s.Next(buf) {
			var q ipmangle.Parsed
			q.Decode(seg)
			fmt.Println(len(seg), q.Dst, q.Seq, q.Ack, q.Flags)
		}
	}
	// Output:
	// 1500 203.0.113.5:8080 1000 424242 A
	// 1500 203.0.113.5:8080 2448 424242 A
	// 156 203.0.113.5:8080 3896 424242 PA
}
