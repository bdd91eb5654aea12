package ipmangle

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// Allocation budgets: every per-packet operation allocates nothing.
func TestAllocs(t *testing.T) {
	v4 := fixed(dataV4Lo)
	v6 := fixed(dataV6Ext)
	syn6 := fixed(synV6Ext)
	tsOdd := fixed(tsOddPacket())
	gro := groV4()
	var p4, p6, pg, psyn6, pOdd Parsed
	psyn6.Decode(syn6)
	pOdd.Decode(tsOdd)
	p4.Decode(v4)
	p6.Decode(v6)
	pg.Decode(gro)
	dst4 := netip.MustParseAddrPort("192.0.2.9:8080")
	dst6 := netip.MustParseAddrPort("[2001:db8::9]:8080")
	syn := linuxSYN()
	out := make([]byte, 1500)
	var s Segmenter
	tests := []struct {
		name string
		f    func()
	}{
		{"Decode v4", func() { p4.Decode(v4) }},
		{"Decode v6 ext headers", func() { p6.Decode(v6) }},
		{"Decode invalid", func() { var p Parsed; p.Decode(v4[:30]) }},
		{"SetSrc v4", func() { SetSrc(v4, &p4, dst4) }},
		{"SetDst v4", func() { SetDst(v4, &p4, dst4) }},
		{"SetSrc v6", func() { SetSrc(v6, &p6, dst6) }},
		{"SetDst v6", func() { SetDst(v6, &p6, dst6) }},
		{"SetSeq", func() { SetSeq(v4, &p4, 1) }},
		{"SetAck", func() { SetAck(v6, &p6, 2) }},
		{"SetWindow", func() { SetWindow(v4, &p4, 3) }},
		{"SetFlags", func() { SetFlags(v4, &p4, PSH|ACK) }},
		{"SetTimestamp", func() { SetTimestamp(v6, &p6, 4, 5) }},
		{"SetMSS", func() { SetMSS(syn6, &psyn6, 1460) }},
		{"SetTimestamp odd offset", func() { SetTimestamp(tsOdd, &pOdd, 4, 5) }},
		{"SetTTL", func() { SetTTL(v4, &p4, 6) }},
		{"SetIPID", func() { SetIPID(v4, &p4, 7) }},
		{"FixChecksums", func() { FixChecksums(v6, &p6) }},
		{"Checksum", func() { Checksum(gro, 0) }},
		{"PseudoHeaderChecksum v6", func() { PseudoHeaderChecksum(dst6.Addr(), dst6.Addr(), ProtocolTCP, 1000) }},
		{"Encode SYN", func() { syn.Encode(out) }},
		{"Segmenter", func() {
			s.Reset(gro, &pg, 1500)
			for seg := s.Next(out); seg != nil; seg = s.Next(out) {
			}
		}},
		{"Payload", func() { p4.Payload(v4) }},
		{"TCPFlags.String", func() { _ = (SYN | ACK).String() }},
		{"Reason.String", func() { _ = ReasonFragment.String() }},
	}
	// The rewrites measured must really happen.
	if !SetSrc(v4, &p4, dst4) || !SetSrc(v6, &p6, dst6) || !SetTimestamp(v6, &p6, 1, 1) || !SetMSS(syn6, &psyn6, 1) ||
		!SetTimestamp(tsOdd, &pOdd, 1, 1) || !SetIPID(v4, &p4, 1) || !s.Reset(gro, &pg, 1500) || syn.Encode(out) == 0 {
		t.Fatal("a rewrite under test does nothing")
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if n := testing.AllocsPerRun(100, tt.f); n != 0 {
				t.Errorf("%v allocations per run, want 0", n)
			}
		})
	}
}

func linuxSYN() *Fields {
	return &Fields{
		Src: netip.MustParseAddrPort("192.0.2.1:40000"), Dst: netip.MustParseAddrPort("198.51.100.2:80"),
		Seq: 1, Flags: SYN, Window: 64240, MSS: 1460, WScale: 7, SACKPermitted: true, HasTS: true, TSVal: 1,
		DontFragment: true,
	}
}

func BenchmarkDecode(b *testing.B) {
	for _, f := range []fixture{{"syn-v4", synV4}, {"data-v6-ext", dataV6Ext}, {"gro-v4", groV4()}} {
		b.Run(f.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(f.pkt)))
			var p Parsed
			for b.Loop() {
				p.Decode(f.pkt)
			}
		})
	}
}

func BenchmarkRewrite(b *testing.B) {
	v4, v6, syn6 := fixed(dataV4Lo), fixed(dataV6Ext), fixed(synV6Ext)
	var p4, p6, psyn6 Parsed
	p4.Decode(v4)
	p6.Decode(v6)
	psyn6.Decode(syn6)
	tsOdd := fixed(tsOddPacket())
	var pOdd Parsed
	pOdd.Decode(tsOdd)
	a4 := netip.MustParseAddrPort("192.0.2.9:8080")
	a6 := netip.MustParseAddrPort("[2001:db8::9]:8080")
	for _, bm := range []struct {
		name string
		pkt  []byte
		f    func()
	}{
		{"SetDst-v4", v4, func() { SetDst(v4, &p4, a4) }},
		{"SetDst-v6", v6, func() { SetDst(v6, &p6, a6) }},
		{"SetSeq", v4, func() { SetSeq(v4, &p4, 12345) }},
		{"SetAck", v4, func() { SetAck(v4, &p4, 12345) }},
		{"SetTimestamp", v4, func() { SetTimestamp(v4, &p4, 1, 2) }},
		{"SetMSS", syn6, func() { SetMSS(syn6, &psyn6, 1460) }},
		{"SetTimestamp-odd", tsOdd, func() { SetTimestamp(tsOdd, &pOdd, 1, 2) }},
		{"copy-v4", v4, func() { // what tcpcopy does per forwarded packet
			SetDst(v4, &p4, a4)
			SetAck(v4, &p4, 777)
			SetTimestamp(v4, &p4, 3, 4)
		}},
	} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(bm.pkt)))
			for b.Loop() {
				bm.f()
			}
		})
	}
}

func BenchmarkChecksum(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, bm := range []struct {
		name string
		n    int
	}{{"1500B", 1500}, {"64KiB", 65536}} {
		n := bm.n
		buf := make([]byte, n)
		for i := range buf {
			buf[i] = byte(r.Uint32())
		}
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(n))
			for b.Loop() {
				Checksum(buf, 0)
			}
		})
	}
}

func BenchmarkFixChecksums(b *testing.B) {
	for _, f := range []fixture{{"data-v4", fixed(dataV4Lo)}, {"gro-v4", groV4()}, {"gro-v6", groV6()}} {
		var p Parsed
		p.Decode(f.pkt)
		b.Run(f.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(f.pkt)))
			for b.Loop() {
				FixChecksums(f.pkt, &p)
			}
		})
	}
}

func BenchmarkEncode(b *testing.B) {
	syn := linuxSYN()
	syn6 := linuxSYN()
	syn6.Src = netip.MustParseAddrPort("[2001:db8::1]:40000")
	syn6.Dst = netip.MustParseAddrPort("[2001:db8::2]:80")
	ack := &Fields{Src: syn.Src, Dst: syn.Dst, Seq: 2, Ack: 3, Flags: ACK, Window: 502, WScale: -1, HasTS: true}
	out := make([]byte, 100)
	for _, bm := range []struct {
		name string
		f    *Fields
	}{{"SYN-v4", syn}, {"SYN-v6", syn6}, {"ACK-TS-v4", ack}} {
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(bm.f.Len()))
			for b.Loop() {
				bm.f.Encode(out)
			}
		})
	}
}

func BenchmarkSegment(b *testing.B) {
	payload := make([]byte, 65535-40-32)
	for i := range payload {
		payload[i] = byte(i)
	}
	for _, bm := range []struct {
		name     string
		src, dst string
	}{
		{"64KiB-v4-to-1500", "192.0.2.1:1", "192.0.2.2:2"},
		{"64KiB-v6-to-1500", "[2001:db8::1]:1", "[2001:db8::2]:2"},
	} {
		f := Fields{Src: netip.MustParseAddrPort(bm.src), Dst: netip.MustParseAddrPort(bm.dst), Flags: PSH | ACK,
			WScale: -1, HasTS: true, Payload: payload}
		pkt := make([]byte, f.Len())
		f.Encode(pkt)
		var p Parsed
		p.Decode(pkt)
		out := make([]byte, 1500)
		b.Run(bm.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(pkt)))
			var s Segmenter
			for b.Loop() {
				s.Reset(pkt, &p, 1500)
				for seg := s.Next(out); seg != nil; seg = s.Next(out) {
				}
			}
		})
	}
}
