package datagram

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"

	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
)

// unhex decodes a fixture: hex digits, "|" comments to the end of the
// line, and whitespace.
func unhex(s string) []byte {
	var h strings.Builder
	for line := range strings.Lines(s) {
		line, _, _ = strings.Cut(line, "|")
		h.WriteString(strings.Join(strings.Fields(line), ""))
	}
	b, err := hex.DecodeString(h.String())
	if err != nil {
		panic(err)
	}
	return b
}

// A DNS query for example.com A with EDNS (UDP size 1232), as Linux
// sends it, over IPv4 and IPv6. Checksums are real.
var (
	dns4 = unhex(`
		45 00 00 44   | IPv4, IHL 5, TOS 0, total length 68
		4d 2e 40 00   | ID 0x4d2e, DF
		40 11 69 6f   | TTL 64, UDP, header checksum
		c0 00 02 0a   | 192.0.2.10
		c0 00 02 01   | 192.0.2.1
		9c 40 00 35   | UDP 40000 -> 53
		00 30 f0 79   | length 48, checksum
		1a 2b 01 00 00 01 00 00 00 00 00 01 | DNS: id 0x1a2b, RD, 1 question, 1 additional
		07 65 78 61 6d 70 6c 65 03 63 6f 6d 00 00 01 00 01 | example.com A IN
		00 00 29 04 d0 00 00 00 00 00 00 | OPT: UDP payload size 1232`)
	dns6 = unhex(`
		60 00 00 00   | IPv6, traffic class 0, flow label 0
		00 30 11 40   | payload length 48, UDP, hop limit 64
		20 01 0d b8 00 01 00 00 00 00 00 00 00 00 00 10 | 2001:db8:1::10
		20 01 0d b8 00 01 00 00 00 00 00 00 00 00 00 01 | 2001:db8:1::1
		9c 40 00 35   | UDP 40000 -> 53
		00 30 19 01   | length 48, checksum
		1a 2b 01 00 00 01 00 00 00 00 00 01
		07 65 78 61 6d 70 6c 65 03 63 6f 6d 00 00 01 00 01
		00 00 29 04 d0 00 00 00 00 00 00`)
	dnsPayload = dns4[28:]
)

var (
	client4 = netip.MustParseAddrPort("192.0.2.10:40000")
	server4 = netip.MustParseAddrPort("192.0.2.1:53")
	client6 = netip.MustParseAddrPort("[2001:db8:1::10]:40000")
	server6 = netip.MustParseAddrPort("[2001:db8:1::1]:53")
)

// edit returns a copy of b with f applied.
func edit(b []byte, f func(b []byte) []byte) []byte {
	return f(append([]byte(nil), b...))
}

// withExt inserts an IPv6 extension header of type typ after the fixed
// header of the IPv6 datagram b.
func withExt(b []byte, typ byte, h []byte) []byte {
	c := append(append(append([]byte(nil), b[:40]...), h...), b[40:]...)
	c[40] = c[6]
	c[6] = typ
	binary.BigEndian.PutUint16(c[4:], uint16(len(c)-40))
	return c
}

func TestDecode(t *testing.T) {
	ok4 := Parsed{Valid: true, IPVersion: 4, Src: client4, Dst: server4, TTL: 64, ID: 0x4d2e, DontFragment: true,
		UDPOffset: 20, PayloadOffset: 28, PayloadLen: 40}
	ok6 := Parsed{Valid: true, IPVersion: 6, Src: client6, Dst: server6, TTL: 64,
		UDPOffset: 40, PayloadOffset: 48, PayloadLen: 40}
	at := func(p Parsed, off int) Parsed {
		p.UDPOffset, p.PayloadOffset = off, off+8
		return p
	}
	tests := []struct {
		name string
		b    []byte
		want Parsed
	}{
		{"v4 DNS query", dns4, ok4},
		{"v6 DNS query", dns6, ok6},
		{"v4 Ethernet padding", append(append([]byte(nil), dns4...), 0, 0, 0, 0), ok4},
		{"v4 IP length beyond UDP length", edit(dns4, func(b []byte) []byte {
			b = append(b, 0, 0, 0, 0)
			binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
			return b
		}), ok4},
		{"v4 cut by snap length", dns4[:40], func() Parsed { p := ok4; p.Truncated = true; return p }()},
		{"v4 headers cut", dns4[:27], Parsed{Reason: ReasonShort}},
		{"v4 IP header cut", dns4[:19], Parsed{Reason: ReasonShort}},
		{"v4 first fragment", edit(dns4, func(b []byte) []byte { b[6] |= 0x20; return b }), Parsed{Reason: ReasonFragment}},
		{"v4 later fragment", edit(dns4, func(b []byte) []byte { b[7] = 1; return b }), Parsed{Reason: ReasonFragment}},
		{"v4 TCP", edit(dns4, func(b []byte) []byte { b[9] = 6; return b }), Parsed{Reason: ReasonNotUDP}},
		{"v4 IHL 4", edit(dns4, func(b []byte) []byte { b[0] = 0x44; return b }), Parsed{Reason: ReasonIPHeader}},
		{"v4 UDP length 7", edit(dns4, func(b []byte) []byte { b[25] = 7; return b }), Parsed{Reason: ReasonLength}},
		{"v4 UDP length beyond IP", edit(dns4, func(b []byte) []byte { b[25] = 49; return b }), Parsed{Reason: ReasonLength}},
		{"v4 IP length below UDP header", edit(dns4, func(b []byte) []byte { b[3] = 24; return b }), Parsed{Reason: ReasonLength}},
		{"v6 hop-by-hop", withExt(dns6, protoHopByHop, []byte{0, 0, 1, 4, 0, 0, 0, 0}), at(ok6, 48)},
		{"v6 atomic fragment", withExt(dns6, protoFragment, []byte{0, 0, 0, 0, 0, 0, 0, 1}), at(ok6, 48)},
		{"v6 fragment", withExt(dns6, protoFragment, []byte{0, 0, 0, 1, 0, 0, 0, 1}), Parsed{Reason: ReasonFragment}},
		{"v6 routing, segments left 1", withExt(dns6, protoRouting, []byte{0, 0, 253, 1, 0, 0, 0, 0}), Parsed{Reason: ReasonExtHeader}},
		{"v6 hop-by-hop not first", withExt(withExt(dns6, protoHopByHop, []byte{0, 0, 1, 4, 0, 0, 0, 0}), protoDstOpts, []byte{0, 0, 1, 4, 0, 0, 0, 0}),
			Parsed{Reason: ReasonExtHeader}},
		{"v6 ESP", edit(dns6, func(b []byte) []byte { b[6] = 50; return b }), Parsed{Reason: ReasonNotUDP}},
		{"v6 jumbogram", edit(dns6, func(b []byte) []byte { b[4], b[5] = 0, 0; return b }), Parsed{Reason: ReasonLength}},
		{"v6 cut", dns6[:60], func() Parsed { p := ok6; p.Truncated = true; return p }()},
		{"empty", nil, Parsed{Reason: ReasonShort}},
		{"version 5", []byte{0x50}, Parsed{Reason: ReasonVersion}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Parsed
			p.Decode(tt.b)
			if p != tt.want {
				t.Errorf("got  %+v\nwant %+v", p, tt.want)
			}
			if p.Valid && !p.Truncated && !bytes.Equal(p.Payload(tt.b), dnsPayload) {
				t.Errorf("payload % x", p.Payload(tt.b))
			}
		})
	}
}

// fieldsOf returns the Fields that rebuild the datagram p decodes from b.
func fieldsOf(p *Parsed, b []byte) Fields {
	return Fields{Src: p.Src, Dst: p.Dst, TOS: p.TOS, TTL: p.TTL, FlowLabel: p.FlowLabel,
		ID: p.ID, DontFragment: p.DontFragment, Payload: p.Payload(b)}
}

// TestEncodeFixtures rebuilds the real datagrams byte for byte.
func TestEncodeFixtures(t *testing.T) {
	for name, b := range map[string][]byte{"v4": dns4, "v6": dns6} {
		var p Parsed
		p.Decode(b)
		f := fieldsOf(&p, b)
		out := make([]byte, f.Len())
		if n := f.Encode(out); n != len(b) || !bytes.Equal(out, b) {
			t.Errorf("%s: Encode = %d bytes\n% x\nwant\n% x", name, n, out, b)
		}
	}
}

// refChecksum is a plain RFC 1071 UDP checksum over the pseudo-header
// and segment, for comparison.
func refChecksum(src, dst netip.Addr, seg []byte) uint16 {
	var ph []byte
	if src.Is4() {
		s, d := src.As4(), dst.As4()
		ph = append(append(ph, s[:]...), d[:]...)
		ph = append(ph, 0, 17, byte(len(seg)>>8), byte(len(seg)))
	} else {
		s, d := src.As16(), dst.As16()
		ph = append(append(ph, s[:]...), d[:]...)
		ph = binary.BigEndian.AppendUint32(ph, uint32(len(seg)))
		ph = append(ph, 0, 0, 0, 17)
	}
	all := append(ph, seg...)
	if len(all)%2 == 1 {
		all = append(all, 0)
	}
	var s uint32
	for i := 0; i < len(all); i += 2 {
		s += uint32(all[i])<<8 | uint32(all[i+1])
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func TestEncodeChecksums(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range 500 {
		f := Fields{Src: client4, Dst: server4, TTL: uint8(1 + rng.IntN(255)), ID: uint16(rng.Uint32()), DontFragment: i%2 == 0}
		if i%3 == 0 {
			f.Src, f.Dst, f.FlowLabel = client6, server6, rng.Uint32()&0xfffff
		}
		f.Payload = make([]byte, rng.IntN(3000))
		for j := range f.Payload {
			f.Payload[j] = byte(rng.Uint32())
		}
		b := make([]byte, f.Len())
		if f.Encode(b) != len(b) {
			t.Fatal("Encode refused")
		}
		var p Parsed
		p.Decode(b)
		if !p.Valid || p.Src != f.Src || p.Dst != f.Dst || !bytes.Equal(p.Payload(b), f.Payload) || p.TTL != f.TTL {
			t.Fatalf("decoded %+v from %v -> %v, TTL %d, %d bytes", p, f.Src, f.Dst, f.TTL, len(f.Payload))
		}
		seg := b[p.UDPOffset:]
		if got := refChecksum(f.Src.Addr(), f.Dst.Addr(), seg); got != 0 {
			t.Fatalf("UDP checksum does not verify: %04x", got)
		}
		if p.IPVersion == 4 && !ipmangle.IPv4(b).IsChecksumValid() {
			t.Fatal("IPv4 header checksum")
		}
	}
}

// TestEncodeZeroChecksum: a datagram whose checksum computes to 0 carries
// 0xffff (RFC 768), over IPv4 and IPv6.
func TestEncodeZeroChecksum(t *testing.T) {
	for _, f := range []Fields{{Src: client4, Dst: server4}, {Src: client6, Dst: server6}} {
		f.Payload = make([]byte, 10)
		b := make([]byte, f.Len())
		f.Encode(b)
		// Make the payload's last word the complement of the rest: the
		// sum becomes 0xffff, whose checksum is 0.
		seg := b[len(b)-18:]
		binary.BigEndian.PutUint16(seg[6:], 0)
		s := ^refChecksum(f.Src.Addr(), f.Dst.Addr(), seg)
		binary.BigEndian.PutUint16(f.Payload[8:], ^s)
		f.Encode(b)
		if c := binary.BigEndian.Uint16(b[len(b)-18+6:]); c != 0xffff {
			t.Errorf("%v: checksum %04x, want ffff", f.Src, c)
		}
	}
}

func TestEncodeRefuses(t *testing.T) {
	f := Fields{Src: client4, Dst: server4, Payload: make([]byte, MaxPayload+1)}
	if f.Encode(make([]byte, 70000)) != 0 {
		t.Error("an IPv4 datagram above 65535 bytes was built")
	}
	f = Fields{Src: client6, Dst: server6, Payload: make([]byte, 65535-8)}
	if f.Encode(make([]byte, 70000)) == 0 {
		t.Error("the largest IPv6 datagram was refused")
	}
	f.Payload = f.Payload[:10]
	if f.Encode(make([]byte, f.Len()-1)) != 0 {
		t.Error("built into a short buffer")
	}
}

func TestAllocs(t *testing.T) {
	var p Parsed
	b := make([]byte, 1500)
	if a := testing.AllocsPerRun(100, func() {
		p.Decode(dns4)
		f := fieldsOf(&p, dns4)
		f.Src = netip.AddrPortFrom(f.Src.Addr(), 40001)
		f.Dst = netip.MustParseAddrPort("203.0.113.20:5353")
		f.Encode(b)
	}); a != 0 {
		t.Errorf("Decode and Encode allocate %v times", a)
	}
}

func BenchmarkDecodeEncode(b *testing.B) {
	var p Parsed
	buf := make([]byte, 1500)
	dst := netip.MustParseAddrPort("203.0.113.20:5353")
	b.ReportAllocs()
	for b.Loop() {
		p.Decode(dns4)
		f := fieldsOf(&p, dns4)
		f.Dst = dst
		f.Encode(buf)
	}
}

// FuzzDecode: Decode never panics, its offsets lie in the packet, and a
// valid datagram rebuilt by Encode decodes to the same addresses and
// payload with checksums that verify.
func FuzzDecode(f *testing.F) {
	f.Add(dns4)
	f.Add(dns6)
	f.Add(withExt(dns6, protoHopByHop, []byte{0, 0, 1, 4, 0, 0, 0, 0}))
	f.Add(dns4[:40])
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Parsed
		p.Decode(b)
		if !p.Valid {
			if p.Reason == ReasonOK || p.Truncated || p.IPVersion != 0 {
				t.Fatalf("invalid with fields set: %+v", p)
			}
			return
		}
		if p.Reason != ReasonOK || p.IPVersion != b[0]>>4 || p.UDPOffset < 20 || p.PayloadOffset != p.UDPOffset+8 ||
			p.PayloadOffset > len(b) || p.PayloadLen < 0 || p.Truncated != (p.PayloadOffset+p.PayloadLen > len(b)) {
			t.Fatalf("inconsistent %+v for %d bytes", p, len(b))
		}
		if p.Truncated {
			if p.Payload(b) != nil {
				t.Fatal("payload of a truncated datagram")
			}
			return
		}
		fl := fieldsOf(&p, b)
		out := make([]byte, fl.Len())
		if fl.Encode(out) == 0 {
			t.Fatalf("Encode refused %+v", p)
		}
		var q Parsed
		q.Decode(out)
		if !q.Valid || q.Src != p.Src || q.Dst != p.Dst || !bytes.Equal(q.Payload(out), p.Payload(b)) {
			t.Fatalf("rebuilt %+v from %+v", q, p)
		}
		if refChecksum(q.Src.Addr(), q.Dst.Addr(), out[q.UDPOffset:]) != 0 {
			t.Fatal("rebuilt checksum does not verify")
		}
	})
}
