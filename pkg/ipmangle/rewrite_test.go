package ipmangle

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"
)

func TestRewrites(t *testing.T) {
	ap := netip.MustParseAddrPort
	tsOdd := withTCPOptions([]byte{1, 1, 1, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8})
	mssOdd := withTCPOptions([]byte{1, 2, 4, 5, 0xb4, 1, 3, 3, 7})
	tests := []struct {
		name   string
		pkt    []byte
		rw     func(b []byte, p *Parsed) bool
		checks []check
	}{
		{
			name: "SetSrc v4",
			pkt:  dataV4Lo,
			rw:   func(b []byte, p *Parsed) bool { return SetSrc(b, p, ap("192.0.2.7:4000")) },
			checks: []check{
				hasAddrs(ap("192.0.2.7:4000"), ap("127.0.0.1:38167")),
				hasPayload([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")),
			},
		},
		{
			name:   "SetDst v4",
			pkt:    synV4,
			rw:     func(b []byte, p *Parsed) bool { return SetDst(b, p, ap("198.51.100.9:80")) },
			checks: []check{hasAddrs(ap("192.0.2.1:58332"), ap("198.51.100.9:80")), hasFlags(SYN)},
		},
		{
			name:   "SetSrc v6 with ext headers",
			pkt:    dataV6Ext,
			rw:     func(b []byte, p *Parsed) bool { return SetSrc(b, p, ap("[2001:db8::77]:1")) },
			checks: []check{hasAddrs(ap("[2001:db8::77]:1"), ap("[::1]:45185"))},
		},
		{
			name:   "SetDst v6",
			pkt:    synV6,
			rw:     func(b []byte, p *Parsed) bool { return SetDst(b, p, ap("[2001:db8:1:2:3:4:5:6]:65535")) },
			checks: []check{hasAddrs(ap("[2001:db8::1]:34400"), ap("[2001:db8:1:2:3:4:5:6]:65535"))},
		},
		{
			name:   "SetSeq",
			pkt:    dataV4Lo,
			rw:     func(b []byte, p *Parsed) bool { SetSeq(b, p, 0xffffffff); return true },
			checks: []check{hasSeq(0xffffffff), hasAck(0xef519b01)},
		},
		{
			name:   "SetAck",
			pkt:    dataV6Ext,
			rw:     func(b []byte, p *Parsed) bool { SetAck(b, p, 1); return true },
			checks: []check{hasSeq(0x37413abe), hasAck(1)},
		},
		{
			name: "SetWindow",
			pkt:  ackV4,
			rw:   func(b []byte, p *Parsed) bool { SetWindow(b, p, 65535); return true },
			checks: []check{func(t testing.TB, b []byte, p *Parsed) {
				if p.Window != 65535 {
					t.Errorf("window %d", p.Window)
				}
			}},
		},
		{
			name:   "SetFlags",
			pkt:    dataV4Lo,
			rw:     func(b []byte, p *Parsed) bool { SetFlags(b, p, RST|ACK); return true },
			checks: []check{hasFlags(RST | ACK)},
		},
		{
			name:   "SetTimestamp aligned",
			pkt:    ackV4,
			rw:     func(b []byte, p *Parsed) bool { return SetTimestamp(b, p, 0xdeadbeef, 0x01020304) },
			checks: []check{hasTS(0xdeadbeef, 0x01020304)},
		},
		{
			name:   "SetTimestamp at odd offset",
			pkt:    tsOdd,
			rw:     func(b []byte, p *Parsed) bool { return SetTimestamp(b, p, 0xfffefdfc, 0x7f) },
			checks: []check{hasTS(0xfffefdfc, 0x7f)},
		},
		{
			name: "SetMSS",
			pkt:  synV6Ext,
			rw:   func(b []byte, p *Parsed) bool { return SetMSS(b, p, 1220) },
			checks: []check{func(t testing.TB, b []byte, p *Parsed) {
				if p.MSS != 1220 {
					t.Errorf("MSS %d", p.MSS)
				}
			}},
		},
		{
			name: "SetMSS at odd offset",
			pkt:  mssOdd,
			rw:   func(b []byte, p *Parsed) bool { return SetMSS(b, p, 536) },
			checks: []check{func(t testing.TB, b []byte, p *Parsed) {
				if p.MSS != 536 || p.MSSOffset != 41 || p.WScale != 7 {
					t.Errorf("MSS %d at %d, wscale %d", p.MSS, p.MSSOffset, p.WScale)
				}
			}},
		},
		{
			name: "SetTTL v4",
			pkt:  synV4,
			rw:   func(b []byte, p *Parsed) bool { SetTTL(b, p, 1); return IPv4(b).TTL() == 1 },
		},
		{
			name: "SetTTL v6",
			pkt:  synV6,
			rw:   func(b []byte, p *Parsed) bool { SetTTL(b, p, 255); return IPv6(b).HopLimit() == 255 },
		},
		{
			name:   "SetIPID",
			pkt:    dataV4Lo,
			rw:     func(b []byte, p *Parsed) bool { return SetIPID(b, p, 0xfffe) },
			checks: []check{hasIPID(0xfffe)},
		},
		{
			name: "everything at once",
			pkt:  groV4(),
			rw: func(b []byte, p *Parsed) bool {
				SetSeq(b, p, 7)
				SetAck(b, p, 8)
				SetWindow(b, p, 9)
				SetTTL(b, p, 10)
				SetIPID(b, p, 11)
				SetFlags(b, p, ACK)
				return SetSrc(b, p, ap("203.0.113.1:1")) && SetDst(b, p, ap("203.0.113.2:2")) && SetTimestamp(b, p, 12, 13)
			},
			checks: []check{hasSeq(7), hasAck(8), hasFlags(ACK), hasIPID(11), hasTS(12, 13),
				hasAddrs(ap("203.0.113.1:1"), ap("203.0.113.2:2"))},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := fixed(tt.pkt)
			var p Parsed
			p.Decode(b)
			if !tt.rw(b, &p) {
				t.Fatalf("rewrite returned false")
			}
			checkPacket(t, b, tt.checks...)
			var fresh Parsed
			fresh.Decode(b)
			if p != fresh {
				t.Errorf("Parsed out of step with the packet:\n got %+v\nwant %+v", p, fresh)
			}
		})
	}
}

func TestRewritesRefused(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		name string
		pkt  []byte
		rw   func(b []byte, p *Parsed) bool
	}{
		{"SetSrc v6 address on v4", synV4, func(b []byte, p *Parsed) bool { return SetSrc(b, p, ap("[2001:db8::1]:1")) }},
		{"SetDst v4-mapped on v4", synV4, func(b []byte, p *Parsed) bool { return SetDst(b, p, ap("[::ffff:203.0.113.1]:1")) }},
		{"SetDst v4 on v6", synV6, func(b []byte, p *Parsed) bool { return SetDst(b, p, ap("203.0.113.1:1")) }},
		{"SetSrc zero address", synV6, func(b []byte, p *Parsed) bool { return SetSrc(b, p, netip.AddrPort{}) }},
		{"SetTimestamp without TS", withTCPOptions(nil), func(b []byte, p *Parsed) bool { return SetTimestamp(b, p, 1, 2) }},
		{"SetMSS without MSS", ackV4, func(b []byte, p *Parsed) bool { return SetMSS(b, p, 1) }},
		{"SetIPID on v6", synV6, func(b []byte, p *Parsed) bool { return SetIPID(b, p, 1) }},
		{"invalid packet", mut(synV4, setByte(9, 17)), func(b []byte, p *Parsed) bool {
			SetSeq(b, p, 1)
			SetAck(b, p, 1)
			SetWindow(b, p, 1)
			SetFlags(b, p, 1)
			SetTTL(b, p, 1)
			return SetSrc(b, p, ap("203.0.113.1:1")) || SetDst(b, p, ap("203.0.113.1:1")) || SetTimestamp(b, p, 1, 1) ||
				SetMSS(b, p, 1) || SetIPID(b, p, 1)
		}},
		{"Parsed of a longer packet", synV4, func(b []byte, p *Parsed) bool {
			SetSeq(b[:30], p, 1)
			return SetSrc(b[:30], p, ap("203.0.113.1:1"))
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := clone(tt.pkt)
			var p Parsed
			p.Decode(b)
			before := p
			if tt.rw(b, &p) {
				t.Errorf("rewrite returned true")
			}
			if !bytes.Equal(b, tt.pkt) || p != before {
				t.Errorf("refused rewrite changed the packet or the Parsed")
			}
		})
	}
}

// Rewriting the headers of a truncated copy (an intercept record, a short
// snaplen) gives the same header bytes, checksums included, as rewriting
// the whole packet.
func TestRewriteTruncated(t *testing.T) {
	full := fixed(dataV6Ext)
	short := clone(full[:90])
	for _, b := range [][]byte{full, short} {
		var p Parsed
		p.Decode(b)
		SetDst(b, &p, netip.MustParseAddrPort("[2001:db8::2]:8080"))
		SetSeq(b, &p, 0x80000000)
		SetTimestamp(b, &p, 5, 6)
	}
	if !bytes.Equal(full[:90], short) {
		t.Errorf("truncated rewrite differs:\n got % x\nwant % x", short, full[:90])
	}
	checkPacket(t, full)
}

// runOps applies the rewrites encoded in ops to b: each op is one byte
// choosing the rewrite followed by the bytes of its argument (missing
// bytes read as zero). It returns the number of rewrites applied.
func runOps(b []byte, p *Parsed, ops []byte) int {
	n := 0
	for len(ops) > 0 {
		op := ops[0] % 10
		ops = ops[1:]
		var arg [18]byte
		k := copy(arg[:], ops)
		ops = ops[k:]
		port := binary.BigEndian.Uint16(arg[16:])
		v1, v2 := binary.BigEndian.Uint32(arg[0:]), binary.BigEndian.Uint32(arg[4:])
		addr := netip.AddrFrom4([4]byte(arg[:4]))
		if p.IPVersion == 6 {
			addr = netip.AddrFrom16([16]byte(arg[:16]))
		}
		switch op {
		case 0:
			SetSrc(b, p, netip.AddrPortFrom(addr, port))
		case 1:
			SetDst(b, p, netip.AddrPortFrom(addr, port))
		case 2:
			SetSeq(b, p, v1)
		case 3:
			SetAck(b, p, v1)
		case 4:
			SetWindow(b, p, port)
		case 5:
			SetTimestamp(b, p, v1, v2)
		case 6:
			SetMSS(b, p, port)
		case 7:
			SetTTL(b, p, arg[0])
		case 8:
			SetIPID(b, p, port)
		case 9:
			SetFlags(b, p, TCPFlags(arg[0]))
		}
		n++
	}
	return n
}

// checkRewritten verifies that the incremental updates left exactly the
// checksums a full recompute gives, and that p matches the packet.
func checkRewritten(t testing.TB, b []byte, p *Parsed) {
	t.Helper()
	want := clone(b)
	FixChecksums(want, p)
	if !bytes.Equal(b, want) {
		t.Fatalf("incremental checksums differ from a full recompute:\n got % x\nwant % x", b[:p.PayloadOffset], want[:p.PayloadOffset])
	}
	if ipOK, tcpOK := naiveChecksumsOK(b[:p.TotalLen]); !ipOK || !tcpOK {
		t.Fatalf("checksums: IPv4 header ok %v, TCP ok %v", ipOK, tcpOK)
	}
	var fresh Parsed
	fresh.Decode(b)
	if *p != fresh {
		t.Fatalf("Parsed out of step:\n got %+v\nwant %+v", *p, fresh)
	}
}

// Random rewrite sequences on real and random packets: incremental
// checksums must equal a full recompute bit for bit.
func TestRewritePropertyRandom(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	pkts := [][]byte{tsOddPacket()}
	for _, f := range realPackets() {
		pkts = append(pkts, f.pkt)
	}
	for range 200 {
		pkts = append(pkts, randomPacket(r))
	}
	for i, pkt := range pkts {
		b := fixed(pkt)
		var p Parsed
		p.Decode(b)
		for range 20 {
			ops := make([]byte, r.IntN(60))
			for j := range ops {
				ops[j] = byte(r.Uint32())
			}
			runOps(b, &p, ops)
			checkRewritten(t, b, &p)
			if t.Failed() {
				t.Fatalf("packet %d", i)
			}
		}
	}
}

func tsOddPacket() []byte {
	return withTCPOptions([]byte{1, 2, 4, 5, 0xb4, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 3, 3, 7})
}

// randomPacket builds a random valid packet with Fields.Encode.
func randomPacket(r *rand.Rand) []byte {
	var f Fields
	if r.IntN(2) == 0 {
		f.Src = netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(r.Uint32()), byte(r.Uint32()), 2, 1}), uint16(r.Uint32()))
		f.Dst = netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(r.Uint32()), 9, byte(r.Uint32()), 3}), uint16(r.Uint32()))
	} else {
		var a, b [16]byte
		for i := range a {
			a[i], b[i] = byte(r.Uint32()), byte(r.Uint32())
		}
		f.Src = netip.AddrPortFrom(netip.AddrFrom16(a), uint16(r.Uint32()))
		f.Dst = netip.AddrPortFrom(netip.AddrFrom16(b), uint16(r.Uint32()))
	}
	f.Seq, f.Ack, f.Flags, f.Window = r.Uint32(), r.Uint32(), TCPFlags(r.Uint32()), uint16(r.Uint32())
	if r.IntN(2) == 0 {
		f.MSS = uint16(r.Uint32()) | 1
	}
	f.WScale = int8(r.IntN(16) - 1)
	f.SACKPermitted = r.IntN(2) == 0
	f.HasTS = r.IntN(3) != 0
	f.TSVal, f.TSEcr = r.Uint32(), r.Uint32()
	f.TTL, f.ID, f.DontFragment = uint8(r.Uint32()), uint16(r.Uint32()), r.IntN(2) == 0
	f.Payload = make([]byte, r.IntN(2000))
	for i := range f.Payload {
		f.Payload[i] = byte(r.Uint32())
	}
	b := make([]byte, f.Len())
	if f.Encode(b) == 0 {
		panic("randomPacket: Encode failed")
	}
	return b
}
