package ipmangle

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// fieldsOf returns the Fields that describe the captured packet b.
func fieldsOf(b []byte) Fields {
	var p Parsed
	p.Decode(b)
	f := Fields{
		Src: p.Src, Dst: p.Dst, Seq: p.Seq, Ack: p.Ack, Flags: p.Flags, Window: p.Window,
		MSS: p.MSS, WScale: p.WScale, SACKPermitted: p.SACKPermitted,
		HasTS: p.HasTS(), TSVal: p.TSVal, TSEcr: p.TSEcr,
		Payload: p.Payload(b),
	}
	if p.IPVersion == 4 {
		h := IPv4(b)
		f.TTL, f.ID, f.DontFragment = h.TTL(), h.ID(), h.Flags()&IPv4FlagDontFragment != 0
	} else {
		f.TTL = IPv6(b).HopLimit()
	}
	return f
}

// Linux's own packets, rebuilt from their fields, come out byte for byte
// the same (with complete checksums; IPv6 with flow label 0).
func TestEncodeMatchesLinux(t *testing.T) {
	for _, f := range []fixture{
		{"syn-v4", synV4},
		{"ack-v4", ackV4},
		{"synack-v4-lo", synAckV4Lo},
		{"data-v4-lo", dataV4Lo},
		{"syn-v6", synV6},
		{"gro-v4", groV4()},
		{"gro-v6", groV6()},
	} {
		t.Run(f.name, func(t *testing.T) {
			want := fixed(f.pkt)
			if want[0]>>4 == 6 {
				IPv6(want).SetVersionTCFlow(0, 0)
			}
			fl := fieldsOf(f.pkt)
			if fl.Len() != len(want) {
				t.Fatalf("Len: got %d, want %d", fl.Len(), len(want))
			}
			got := make([]byte, fl.Len()+10)
			n := fl.Encode(got)
			if n != len(want) || !bytes.Equal(got[:n], want) {
				t.Fatalf("got  % x\nwant % x", got[:min(n, 100)], want[:min(len(want), 100)])
			}
			checkPacket(t, got[:n])
		})
	}
}

func gopacketBuild(t *testing.T, f *Fields) []byte {
	t.Helper()
	tcp := &layers.TCP{
		SrcPort: layers.TCPPort(f.Src.Port()), DstPort: layers.TCPPort(f.Dst.Port()),
		Seq: f.Seq, Ack: f.Ack, Window: f.Window,
		FIN: f.Flags.Has(FIN), SYN: f.Flags.Has(SYN), RST: f.Flags.Has(RST), PSH: f.Flags.Has(PSH),
		ACK: f.Flags.Has(ACK), URG: f.Flags.Has(URG), ECE: f.Flags.Has(ECE), CWR: f.Flags.Has(CWR),
	}
	nop := layers.TCPOption{OptionType: layers.TCPOptionKindNop}
	if f.MSS != 0 {
		tcp.Options = append(tcp.Options, layers.TCPOption{OptionType: layers.TCPOptionKindMSS, OptionData: binary.BigEndian.AppendUint16(nil, f.MSS)})
	}
	if f.HasTS {
		if f.SACKPermitted {
			tcp.Options = append(tcp.Options, layers.TCPOption{OptionType: layers.TCPOptionKindSACKPermitted})
		} else {
			tcp.Options = append(tcp.Options, nop, nop)
		}
		ts := binary.BigEndian.AppendUint32(binary.BigEndian.AppendUint32(nil, f.TSVal), f.TSEcr)
		tcp.Options = append(tcp.Options, layers.TCPOption{OptionType: layers.TCPOptionKindTimestamps, OptionData: ts})
	} else if f.SACKPermitted {
		tcp.Options = append(tcp.Options, nop, nop, layers.TCPOption{OptionType: layers.TCPOptionKindSACKPermitted})
	}
	if f.WScale >= 0 {
		tcp.Options = append(tcp.Options, nop, layers.TCPOption{OptionType: layers.TCPOptionKindWindowScale, OptionData: []byte{byte(f.WScale)}})
	}
	ttl := f.TTL
	if ttl == 0 {
		ttl = 64
	}
	var ip gopacket.NetworkLayer
	if f.Src.Addr().Is4() {
		ip4 := &layers.IPv4{Version: 4, TTL: ttl, Id: f.ID, Protocol: layers.IPProtocolTCP,
			SrcIP: net.IP(f.Src.Addr().AsSlice()), DstIP: net.IP(f.Dst.Addr().AsSlice())}
		if f.DontFragment {
			ip4.Flags = layers.IPv4DontFragment
		}
		ip = ip4
	} else {
		ip = &layers.IPv6{Version: 6, HopLimit: ttl, NextHeader: layers.IPProtocolTCP,
			SrcIP: net.IP(f.Src.Addr().AsSlice()), DstIP: net.IP(f.Dst.Addr().AsSlice())}
	}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{ComputeChecksums: true, FixLengths: true}
	if err := gopacket.SerializeLayers(buf, opts, ip.(gopacket.SerializableLayer), tcp, gopacket.Payload(f.Payload)); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestEncodeMatchesGopacket(t *testing.T) {
	v4a, v4b := netip.MustParseAddrPort("192.0.2.1:40000"), netip.MustParseAddrPort("198.51.100.2:80")
	v6a, v6b := netip.MustParseAddrPort("[2001:db8::1]:40000"), netip.MustParseAddrPort("[2001:db8:ffff::fffe]:443")
	payload := bytes.Repeat([]byte("0123456789abcdef"), 100)
	tests := []struct {
		name string
		f    Fields
	}{
		{"SYN v4 like Linux", Fields{Src: v4a, Dst: v4b, Seq: 1, Flags: SYN, Window: 64240, MSS: 1460, WScale: 7,
			SACKPermitted: true, HasTS: true, TSVal: 0xdeadbeef, ID: 99, DontFragment: true}},
		{"SYN v4 like C TCPCopy (MSS only)", Fields{Src: v4a, Dst: v4b, Seq: 0xffffffff, Flags: SYN, Window: 65535, MSS: 1460,
			WScale: -1, TTL: 64, DontFragment: true}},
		{"SYN v6 like Linux", Fields{Src: v6a, Dst: v6b, Seq: 1, Flags: SYN, Window: 64800, MSS: 1440, WScale: 10,
			SACKPermitted: true, HasTS: true, TSVal: 7}},
		{"SYN-ACK SACK without TS", Fields{Src: v4b, Dst: v4a, Seq: 5, Ack: 2, Flags: SYN | ACK, Window: 1, MSS: 536, WScale: 0,
			SACKPermitted: true}},
		{"ACK NOP NOP TS", Fields{Src: v4a, Dst: v4b, Seq: 2, Ack: 6, Flags: ACK, Window: 502, WScale: -1, HasTS: true,
			TSVal: 100, TSEcr: 200, TTL: 1}},
		{"window scale only", Fields{Src: v6a, Dst: v6b, Flags: SYN, WScale: 14}},
		{"RST v4", Fields{Src: v4a, Dst: v4b, Seq: 3, Flags: RST, WScale: -1, DontFragment: true}},
		{"RST|ACK v6", Fields{Src: v6a, Dst: v6b, Seq: 3, Ack: 9, Flags: RST | ACK, WScale: -1}},
		{"data v4", Fields{Src: v4a, Dst: v4b, Seq: 2, Ack: 6, Flags: PSH | ACK, Window: 502, WScale: -1, HasTS: true,
			TSVal: 1, TSEcr: 2, Payload: payload}},
		{"data v6 odd length", Fields{Src: v6a, Dst: v6b, Seq: 2, Ack: 6, Flags: ACK, Window: 502, WScale: -1, Payload: payload[:777]}},
		{"FIN|ACK v6", Fields{Src: v6a, Dst: v6b, Seq: 2, Ack: 6, Flags: FIN | ACK, Window: 502, WScale: -1, HasTS: true}},
		{"all flags", Fields{Src: v4a, Dst: v4b, Flags: 0xff, WScale: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := gopacketBuild(t, &tt.f)
			if tt.f.Len() != len(want) {
				t.Fatalf("Len: got %d, gopacket %d", tt.f.Len(), len(want))
			}
			got := make([]byte, tt.f.Len())
			for i := range got {
				got[i] = 0xa5 // Encode must not depend on dst's contents
			}
			if n := tt.f.Encode(got); n != len(got) {
				t.Fatalf("Encode: %d", n)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("got      % x\ngopacket % x", got[:min(len(got), 80)], want[:min(len(want), 80)])
			}
			p := checkPacket(t, got, hasSeq(tt.f.Seq), hasAck(tt.f.Ack), hasFlags(tt.f.Flags), hasAddrs(tt.f.Src, tt.f.Dst),
				hasPayload(tt.f.Payload))
			if tt.f.HasTS {
				hasTS(tt.f.TSVal, tt.f.TSEcr)(t, got, p)
			}
			if re := gopacketReserialize(t, got); !bytes.Equal(re, got) {
				t.Errorf("gopacket reserialized differently")
			}
			if (p.TCPHeaderLen-TCPMinimumSize)%4 != 0 {
				t.Errorf("options not 4-byte aligned")
			}
		})
	}
}

func TestEncodeRefuses(t *testing.T) {
	v4a, v4b := netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:2")
	v6a := netip.MustParseAddrPort("[2001:db8::1]:1")
	tests := []struct {
		name string
		f    Fields
		dst  int
	}{
		{"mixed families", Fields{Src: v4a, Dst: v6a}, 100},
		{"v4-mapped with v4", Fields{Src: netip.MustParseAddrPort("[::ffff:192.0.2.1]:1"), Dst: v4b}, 100},
		{"zero addresses", Fields{}, 100},
		{"window scale 15", Fields{Src: v4a, Dst: v4b, WScale: 15}, 100},
		{"dst too small", Fields{Src: v4a, Dst: v4b, WScale: -1}, 39},
		{"v4 above 65535", Fields{Src: v4a, Dst: v4b, WScale: -1, Payload: make([]byte, 65535-39)}, 70000},
		{"v6 payload above 65535", Fields{Src: v6a, Dst: v6a, WScale: -1, Payload: make([]byte, 65535-19)}, 70000},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dst := make([]byte, tt.dst)
			if n := tt.f.Encode(dst); n != 0 {
				t.Errorf("got %d, want 0", n)
			}
			if !bytes.Equal(dst, make([]byte, tt.dst)) {
				t.Errorf("refused Encode wrote into dst")
			}
		})
	}
	// The largest packets are accepted.
	for _, f := range []Fields{
		{Src: v4a, Dst: v4b, WScale: -1, Payload: make([]byte, 65535-40)},
		{Src: v6a, Dst: v6a, WScale: -1, Payload: make([]byte, 65535-20)},
	} {
		dst := make([]byte, 70000)
		if n := f.Encode(dst); n != f.Len() {
			t.Errorf("largest packet: got %d, want %d", n, f.Len())
		}
		checkPacket(t, dst[:f.Len()])
	}
}

// decode(encode(f)) == f, on random fields.
func TestEncodeDecodeRoundTrip(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	for range 2000 {
		b := randomPacket(r)
		f := fieldsOf(b)
		var p Parsed
		p.Decode(b)
		if f.Len() != len(b) {
			t.Fatalf("Len %d of %d", f.Len(), len(b))
		}
		again := make([]byte, len(b))
		if f.Encode(again) != len(b) || !bytes.Equal(again, b) {
			t.Fatalf("round trip differs:\n got % x\nwant % x", again[:p.PayloadOffset], b[:p.PayloadOffset])
		}
		if ipOK, tcpOK := naiveChecksumsOK(b); !ipOK || !tcpOK {
			t.Fatalf("checksums: %v %v", ipOK, tcpOK)
		}
	}
}
