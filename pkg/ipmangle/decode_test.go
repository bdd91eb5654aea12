package ipmangle

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
)

func TestDecodeRealPackets(t *testing.T) {
	ap := netip.MustParseAddrPort
	tests := []struct {
		name string
		pkt  []byte
		want Parsed
	}{
		{
			name: "syn-v4",
			pkt:  synV4,
			want: Parsed{
				IPVersion: 4, Valid: true,
				IPHeaderLen: 20, TCPOffset: 20, TCPHeaderLen: 40, PayloadOffset: 60, PayloadLen: 0, TotalLen: 60,
				Src: ap("192.0.2.1:58332"), Dst: ap("192.0.2.2:8080"),
				Seq: 0x34b9282b, Ack: 0, Flags: SYN, Window: 64240,
				MSSOffset: 40, MSS: 1460,
				WScaleOffset: 57, WScale: 10,
				SACKPermitted: true,
				TSOffset:      46, TSVal: 0x5be53fdc, TSEcr: 0,
			},
		},
		{
			name: "ack-v4",
			pkt:  ackV4,
			want: Parsed{
				IPVersion: 4, Valid: true,
				IPHeaderLen: 20, TCPOffset: 20, TCPHeaderLen: 32, PayloadOffset: 52, PayloadLen: 0, TotalLen: 52,
				Src: ap("192.0.2.1:58332"), Dst: ap("192.0.2.2:8080"),
				Seq: 0x34b9282c, Ack: 0xf79ff588, Flags: ACK, Window: 63,
				WScale:   -1,
				TSOffset: 42, TSVal: 0x5be53fdc, TSEcr: 0xf8bec0c1,
			},
		},
		{
			name: "synack-v4-lo",
			pkt:  synAckV4Lo,
			want: Parsed{
				IPVersion: 4, Valid: true,
				IPHeaderLen: 20, TCPOffset: 20, TCPHeaderLen: 40, PayloadOffset: 60, PayloadLen: 0, TotalLen: 60,
				Src: ap("127.0.0.1:38167"), Dst: ap("127.0.0.1:57132"),
				Seq: 0xef519b00, Ack: 0xa8b82ecf, Flags: SYN | ACK, Window: 65483,
				MSSOffset: 40, MSS: 65495,
				WScaleOffset: 57, WScale: 10,
				SACKPermitted: true,
				TSOffset:      46, TSVal: 0x318d628b, TSEcr: 0xaca36c09,
			},
		},
		{
			name: "data-v4-lo",
			pkt:  dataV4Lo,
			want: Parsed{
				IPVersion: 4, Valid: true,
				IPHeaderLen: 20, TCPOffset: 20, TCPHeaderLen: 32, PayloadOffset: 52, PayloadLen: 27, TotalLen: 79,
				Src: ap("127.0.0.1:57132"), Dst: ap("127.0.0.1:38167"),
				Seq: 0xa8b82ecf, Ack: 0xef519b01, Flags: PSH | ACK, Window: 64,
				WScale:   -1,
				TSOffset: 42, TSVal: 0xaca36c09, TSEcr: 0x318d628b,
			},
		},
		{
			name: "syn-v6",
			pkt:  synV6,
			want: Parsed{
				IPVersion: 6, Valid: true,
				IPHeaderLen: 40, TCPOffset: 40, TCPHeaderLen: 40, PayloadOffset: 80, PayloadLen: 0, TotalLen: 80,
				Src: ap("[2001:db8::1]:34400"), Dst: ap("[2001:db8::2]:8080"),
				Seq: 0xacc7a3fa, Ack: 0, Flags: SYN, Window: 64800,
				MSSOffset: 60, MSS: 1440,
				WScaleOffset: 77, WScale: 10,
				SACKPermitted: true,
				TSOffset:      66, TSVal: 0xbaa39a57, TSEcr: 0,
			},
		},
		{
			name: "syn-v6-ext",
			pkt:  synV6Ext,
			want: Parsed{
				IPVersion: 6, Valid: true,
				IPHeaderLen: 56, TCPOffset: 56, TCPHeaderLen: 40, PayloadOffset: 96, PayloadLen: 0, TotalLen: 96,
				Src: ap("[::1]:39248"), Dst: ap("[::1]:45185"),
				Seq: 0x37413abd, Ack: 0, Flags: SYN, Window: 65476,
				MSSOffset: 76, MSS: 65476,
				WScaleOffset: 93, WScale: 10,
				SACKPermitted: true,
				TSOffset:      82, TSVal: 0xa1a2b7e7, TSEcr: 0,
			},
		},
		{
			name: "data-v6-ext",
			pkt:  dataV6Ext,
			want: Parsed{
				IPVersion: 6, Valid: true,
				IPHeaderLen: 56, TCPOffset: 56, TCPHeaderLen: 32, PayloadOffset: 88, PayloadLen: 27, TotalLen: 115,
				Src: ap("[::1]:39248"), Dst: ap("[::1]:45185"),
				Seq: 0x37413abe, Ack: 0x55a19510, Flags: PSH | ACK, Window: 64,
				WScale:   -1,
				TSOffset: 78, TSVal: 0xa1a2b7e7, TSEcr: 0x6c193c6c,
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Parsed
			got.Decode(tt.pkt)
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
			// The same after fixing the checksums, with gopacket agreeing.
			checkPacket(t, fixed(tt.pkt), hasSeq(tt.want.Seq), hasAck(tt.want.Ack), hasFlags(tt.want.Flags),
				hasAddrs(tt.want.Src, tt.want.Dst), hasPayload(tt.pkt[tt.want.PayloadOffset:]))
		})
	}
}

func TestDecodeSuperPackets(t *testing.T) {
	for _, tt := range []struct {
		name          string
		pkt           []byte
		version       uint8
		payload       int
		tsOff         int
		payloadPrefix string
	}{
		{"gro-v4", groV4(), 4, 10136, 42, "yzabcdefgh"},
		{"gro-v6", groV6(), 6, 14280, 62, "ghijklmnop"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := checkPacket(t, fixed(tt.pkt), hasFlags(PSH|ACK), hasLen(len(tt.pkt)))
			if p.IPVersion != tt.version || p.PayloadLen != tt.payload || p.TCPHeaderLen != 32 || p.TSOffset != tt.tsOff {
				t.Errorf("got version %d, payload %d, TCP header %d, TS at %d", p.IPVersion, p.PayloadLen, p.TCPHeaderLen, p.TSOffset)
			}
			if got := string(p.Payload(tt.pkt)[:10]); got != tt.payloadPrefix {
				t.Errorf("payload starts %q, want %q", got, tt.payloadPrefix)
			}
		})
	}
}

// invalid returns the Parsed that Decode leaves for an invalid packet.
func invalid(r Reason, fragment bool) Parsed {
	return Parsed{Reason: r, Fragment: fragment, WScale: -1}
}

// mut returns a copy of pkt changed by f.
func mut(pkt []byte, f func(b []byte) []byte) []byte { return f(clone(pkt)) }

func setU16(off int, v uint16) func([]byte) []byte {
	return func(b []byte) []byte { binary.BigEndian.PutUint16(b[off:], v); return b }
}

func setByte(off int, v byte) func([]byte) []byte {
	return func(b []byte) []byte { b[off] = v; return b }
}

// withIPv4Options inserts opts (a multiple of 4 bytes) after the fixed
// IPv4 header and fixes IHL and total length.
func withIPv4Options(pkt, opts []byte) []byte {
	b := append(append(clone(pkt[:20]), opts...), pkt[20:]...)
	b[0] = 0x40 | byte((20+len(opts))/4)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	return b
}

// withExtHeaders returns synV6 with the given extension headers (each with
// its next header byte set by the caller) inserted before TCP; first is
// the next header of the fixed header.
func withExtHeaders(first byte, ext ...[]byte) []byte {
	b := clone(synV6[:40])
	for _, e := range ext {
		b = append(b, e...)
	}
	b = append(b, synV6[40:]...)
	b[6] = first
	binary.BigEndian.PutUint16(b[4:], uint16(len(b)-40))
	return b
}

// withTCPOptions returns ackV4 with its options replaced by opts (padded
// with EOL to a multiple of 4 bytes).
func withTCPOptions(opts []byte) []byte {
	o := clone(opts)
	for len(o)%4 != 0 {
		o = append(o, 0)
	}
	b := append(clone(ackV4[:40]), o...)
	binary.BigEndian.PutUint16(b[2:], uint16(len(b)))
	b[32] = byte((20+len(o))/4) << 4
	return b
}

func TestDecodeMalformed(t *testing.T) {
	dstOpts := func(next byte) []byte { return []byte{next, 0, 1, 4, 0, 0, 0, 0} }
	hopByHop := func(next byte) []byte { return []byte{next, 0, 1, 4, 0, 0, 0, 0} }
	var many [][]byte
	for range 17 {
		many = append(many, dstOpts(60))
	}
	many[16][0] = 6
	tests := []struct {
		name string
		pkt  []byte
		want Parsed
	}{
		{"empty", nil, invalid(ReasonShort, false)},
		{"v4 19 bytes", synV4[:19], invalid(ReasonShort, false)},
		{"v6 39 bytes", synV6[:39], invalid(ReasonShort, false)},
		{"version 5", mut(synV4, setByte(0, 0x55)), invalid(ReasonVersion, false)},
		{"version 0", mut(synV4, setByte(0, 0x05)), invalid(ReasonVersion, false)},
		{"IHL 4", mut(synV4, setByte(0, 0x44)), invalid(ReasonIPHeader, false)},
		{"IHL 0", mut(synV4, setByte(0, 0x40)), invalid(ReasonIPHeader, false)},
		{"IHL 15 leaves no room for TCP", mut(synV4, setByte(0, 0x4f)), invalid(ReasonTCPHeader, false)},
		{"IHL 15 beyond short packet", mut(synV4[:40], setByte(0, 0x4f)), invalid(ReasonShort, false)},
		{"total length 0 (TSO)", mut(synV4, setU16(2, 0)), invalid(ReasonLength, false)},
		{"total length below IHL", mut(synV4, setU16(2, 19)), invalid(ReasonLength, false)},
		{"total length below TCP header", mut(synV4, setU16(2, 39)), invalid(ReasonTCPHeader, false)},
		{"total length below TCP options", mut(synV4, setU16(2, 56)), invalid(ReasonTCPHeader, false)},
		{"UDP", mut(synV4, setByte(9, 17)), invalid(ReasonNotTCP, false)},
		{"first fragment", mut(synV4, setU16(6, 0x2000)), invalid(ReasonFragment, true)},
		{"later fragment", mut(synV4, setU16(6, 0x0010)), invalid(ReasonFragment, true)},
		{"last fragment with DF", mut(synV4, setU16(6, 0x4010)), invalid(ReasonFragment, true)},
		{"non-TCP fragment", mut(mut(synV4, setU16(6, 0x2000)), setByte(9, 17)), invalid(ReasonNotTCP, false)},
		{"data offset 4", mut(synV4, setByte(32, 0x40)), invalid(ReasonTCPHeader, false)},
		{"data offset 0", mut(synV4, setByte(32, 0x00)), invalid(ReasonTCPHeader, false)},
		{"data offset 15 beyond IP length", mut(synV4, setByte(32, 0xf0)), invalid(ReasonTCPHeader, false)},
		{"TCP header cut", synV4[:39], invalid(ReasonShort, false)},
		{"TCP options cut", synV4[:59], invalid(ReasonShort, false)},
		{"v6 payload length 0", mut(synV6, setU16(4, 0)), invalid(ReasonLength, false)},
		{
			"v6 jumbogram",
			mut(withExtHeaders(0, []byte{6, 0, 0xc2, 4, 0, 1, 0, 0x28}), setU16(4, 0)),
			invalid(ReasonLength, false),
		},
		{"v6 UDP", mut(synV6, setByte(6, 17)), invalid(ReasonNotTCP, false)},
		{"v6 ESP", withExtHeaders(50, dstOpts(6)), invalid(ReasonNotTCP, false)},
		{"v6 no next header", withExtHeaders(60, dstOpts(59)), invalid(ReasonNotTCP, false)},
		{"v6 hop-by-hop not first", withExtHeaders(60, dstOpts(0), hopByHop(6)), invalid(ReasonExtHeader, false)},
		{"v6 ext header past payload length", mut(synV6Ext, setU16(4, 12)), invalid(ReasonExtHeader, false)},
		{"v6 ext header length past payload", mut(synV6Ext, setByte(41, 200)), invalid(ReasonExtHeader, false)},
		{"v6 ext header cut", synV6Ext[:50], invalid(ReasonShort, false)},
		{"v6 second ext header cut", synV6Ext[:52], invalid(ReasonShort, false)},
		{"v6 TCP cut", synV6Ext[:70], invalid(ReasonShort, false)},
		{"v6 payload length below TCP header", mut(synV6Ext, setU16(4, 20)), invalid(ReasonTCPHeader, false)},
		{"v6 17 ext headers", withExtHeaders(60, many...), invalid(ReasonExtHeader, false)},
		{
			"v6 routing header with segments left",
			withExtHeaders(43, []byte{6, 2, 4, 1, 0, 0, 0, 0}, make([]byte, 16)),
			invalid(ReasonExtHeader, false),
		},
		{"v6 fragment with M", withExtHeaders(44, []byte{6, 0, 0, 1, 1, 2, 3, 4}), invalid(ReasonFragment, true)},
		{"v6 later fragment", withExtHeaders(44, []byte{6, 0, 0x05, 0x00, 1, 2, 3, 4}), invalid(ReasonFragment, true)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Parsed
			got.Decode(tt.pkt)
			if got != tt.want {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestDecodeValidVariants(t *testing.T) {
	dstOpts := func(next byte) []byte { return []byte{next, 0, 1, 4, 0, 0, 0, 0} }
	var sixteen [][]byte
	for range 16 {
		sixteen = append(sixteen, dstOpts(60))
	}
	sixteen[15][0] = 6
	tests := []struct {
		name  string
		pkt   []byte
		check func(t *testing.T, p *Parsed)
	}{
		{"ethernet padding", append(clone(ackV4), 0, 0, 0, 0, 0, 0), func(t *testing.T, p *Parsed) {
			if p.TotalLen != 52 || p.Truncated || p.PayloadLen != 0 {
				t.Errorf("total %d truncated %v payload %d", p.TotalLen, p.Truncated, p.PayloadLen)
			}
		}},
		{"truncated payload", dataV4Lo[:60], func(t *testing.T, p *Parsed) {
			if !p.Truncated || p.PayloadLen != 27 || p.TotalLen != 79 || len(p.Payload(dataV4Lo[:60])) != 8 {
				t.Errorf("truncated %v payload %d total %d", p.Truncated, p.PayloadLen, p.TotalLen)
			}
		}},
		{"truncated to headers", dataV4Lo[:52], func(t *testing.T, p *Parsed) {
			if !p.Truncated || p.PayloadLen != 27 || len(p.Payload(dataV4Lo[:52])) != 0 {
				t.Errorf("truncated %v payload %d", p.Truncated, p.PayloadLen)
			}
		}},
		{"DF only", mut(synV4, setU16(6, 0x4000)), func(t *testing.T, p *Parsed) {}},
		{"IPv4 options", withIPv4Options(dataV4Lo, []byte{1, 1, 1, 0, 0x44, 8, 5, 0}), func(t *testing.T, p *Parsed) {
			if p.IPHeaderLen != 28 || p.TCPOffset != 28 || p.PayloadLen != 27 || p.TSOffset != 50 {
				t.Errorf("IP header %d, payload %d, TS at %d", p.IPHeaderLen, p.PayloadLen, p.TSOffset)
			}
		}},
		{"v6 atomic fragment", withExtHeaders(44, []byte{6, 0, 0, 0, 1, 2, 3, 4}), func(t *testing.T, p *Parsed) {
			if p.IPHeaderLen != 48 || p.Fragment {
				t.Errorf("IP header %d, fragment %v", p.IPHeaderLen, p.Fragment)
			}
		}},
		{"v6 routing header done", withExtHeaders(43, []byte{6, 2, 4, 0, 0, 0, 0, 0}, make([]byte, 16)), func(t *testing.T, p *Parsed) {
			if p.IPHeaderLen != 64 {
				t.Errorf("IP header %d", p.IPHeaderLen)
			}
		}},
		{"v6 AH", withExtHeaders(51, []byte{6, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1}), func(t *testing.T, p *Parsed) {
			if p.IPHeaderLen != 52 {
				t.Errorf("IP header %d", p.IPHeaderLen)
			}
		}},
		{"v6 16 ext headers", withExtHeaders(60, sixteen...), func(t *testing.T, p *Parsed) {
			if p.IPHeaderLen != 40+16*8 {
				t.Errorf("IP header %d", p.IPHeaderLen)
			}
		}},
		{"v6 all kinds (atomic fragment too)", withExtHeaders(0,
			[]byte{60, 0, 1, 4, 0, 0, 0, 0},                                     // Hop-by-Hop, PadN
			[]byte{43, 0, 1, 4, 0, 0, 0, 0},                                     // Destination Options, PadN
			[]byte{44, 0, 4, 0, 0, 0, 0, 0},                                     // Routing type 4, Segments Left 0
			[]byte{51, 0, 0, 0, 0, 0, 0, 0},                                     // atomic Fragment
			[]byte{60, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd}, // AH, 16 bytes
			[]byte{6, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},             // Destination Options, 16 bytes
		), func(t *testing.T, p *Parsed) {
			if p.IPHeaderLen != 40+8*4+16*2 {
				t.Errorf("IP header %d", p.IPHeaderLen)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Parsed
			p.Decode(tt.pkt)
			if !p.Valid || p.Reason != ReasonOK {
				t.Fatalf("invalid: %v", p.Reason)
			}
			tt.check(t, &p)
			if p.Truncated {
				return
			}
			b := fixed(tt.pkt[:p.TotalLen])
			if strings.Contains(tt.name, "fragment") || strings.Contains(tt.name, "all kinds") {
				// gopacket stops at IPv6 fragment headers, atomic or not.
				checkPacketNaive(t, b)
				return
			}
			checkPacket(t, b)
		})
	}
}

func TestDecodeTCPOptions(t *testing.T) {
	ts := []byte{8, 10, 1, 2, 3, 4, 5, 6, 7, 8}
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	type opts struct {
		mss, wsOff, sackOff, tsOff int
		ws                         int8
		sackPerm, bad              bool
	}
	tests := []struct {
		name string
		opts []byte
		want opts
	}{
		{"none", nil, opts{ws: -1}},
		{"NOP NOP TS", cat([]byte{1, 1}, ts), opts{tsOff: 42, ws: -1}},
		{"TS at odd offset", cat([]byte{1, 1, 1}, ts), opts{tsOff: 43, ws: -1}},
		{"EOL ends the list", cat([]byte{0}, ts), opts{ws: -1}},
		{"zero length", cat([]byte{8, 0}, ts), opts{ws: -1, bad: true}},
		{"length 1", cat([]byte{30, 1}, ts), opts{ws: -1, bad: true}},
		{"runs past the header", []byte{1, 1, 8, 10, 0, 0, 0, 0}, opts{ws: -1, bad: true}},
		{"kind without length at the end", []byte{1, 1, 1, 8}, opts{ws: -1, bad: true}},
		{"options before a bad one are kept", cat([]byte{2, 4, 5, 0xb4}, ts, []byte{3, 0}), opts{mss: 40, tsOff: 44, ws: -1, bad: true}},
		{"MSS of wrong length skipped", cat([]byte{2, 3, 5}, ts), opts{tsOff: 43, ws: -1}},
		{"TS of wrong length skipped", []byte{8, 6, 0, 0, 0, 0, 2, 4, 1, 0}, opts{mss: 46, ws: -1}},
		{"window scale above 14", []byte{1, 3, 3, 200}, opts{wsOff: 41, ws: 14}},
		{"window scale 0", []byte{3, 3, 0}, opts{wsOff: 40, ws: 0}},
		{"SACK permitted", []byte{4, 2}, opts{sackPerm: true, ws: -1}},
		{"SACK blocks", []byte{1, 1, 5, 10, 0, 0, 0, 1, 0, 0, 0, 2}, opts{sackOff: 42, ws: -1}},
		{"SACK of bad length skipped", []byte{5, 6, 0, 0, 0, 1}, opts{ws: -1}},
		{"unknown option skipped", cat([]byte{30, 4, 0, 0}, ts), opts{tsOff: 44, ws: -1}},
		{"repeated TS: last wins", cat(ts, []byte{1, 1}, ts), opts{tsOff: 52, ws: -1}},
		{"40 bytes of NOP", bytes.Repeat([]byte{1}, 40), opts{ws: -1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := withTCPOptions(tt.opts)
			var p Parsed
			p.Decode(b)
			if !p.Valid {
				t.Fatalf("invalid: %v", p.Reason)
			}
			got := opts{p.MSSOffset, p.WScaleOffset, p.SACKOffset, p.TSOffset, p.WScale, p.SACKPermitted, p.BadOptions}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
			if p.TSOffset != 0 && (p.TSVal != 0x01020304 || p.TSEcr != 0x05060708) {
				t.Errorf("TS values %#x %#x", p.TSVal, p.TSEcr)
			}
			if p.MSSOffset != 0 && p.MSS != 1460 && p.MSS != 256 {
				t.Errorf("MSS %d", p.MSS)
			}
		})
	}
}

func TestDecodeResetsParsed(t *testing.T) {
	var p Parsed
	p.Decode(synV4)
	p.Decode(ackV4)
	var want Parsed
	want.Decode(ackV4)
	if p != want {
		t.Errorf("stale fields after a second Decode:\n got %+v\nwant %+v", p, want)
	}
	p.Decode([]byte{0x45})
	if p != invalid(ReasonShort, false) {
		t.Errorf("invalid after valid: %+v", p)
	}
}

func TestTCPFlagsString(t *testing.T) {
	for _, tt := range []struct {
		f    TCPFlags
		want string
	}{
		{0, "-"},
		{SYN, "S"},
		{SYN | ACK, "SA"},
		{PSH | ACK, "PA"},
		{FIN | ACK, "FA"},
		{RST, "R"},
		{0xff, "FSRPAUEC"},
		{CWR | ECE | SYN, "SEC"},
	} {
		if got := tt.f.String(); got != tt.want {
			t.Errorf("%#x: got %q, want %q", uint8(tt.f), got, tt.want)
		}
	}
	if !(SYN | ACK).Has(ACK) || SYN.Has(SYN|ACK) {
		t.Errorf("Has")
	}
}

func TestReasonString(t *testing.T) {
	for r := ReasonOK; r <= numReasons; r++ {
		if r.String() == "" {
			t.Errorf("%d has no name", r)
		}
	}
	if got := Reason(200).String(); got != "unknown" {
		t.Errorf("got %q", got)
	}
}

func TestViews(t *testing.T) {
	h := IPv4(synV4)
	if h.Version() != 4 || h.HeaderLength() != 20 || h.TOS() != 0 || h.TotalLength() != 60 || h.ID() != 0xe0c4 ||
		h.Flags() != IPv4FlagDontFragment || h.FragmentOffset() != 0 || h.TTL() != 64 || h.Protocol() != ProtocolTCP ||
		h.Checksum() != 0xd5f3 || h.Src() != netip.MustParseAddr("192.0.2.1") || h.Dst() != netip.MustParseAddr("192.0.2.2") {
		t.Errorf("IPv4 accessors")
	}
	if !h.IsValid(len(synV4)) || h.IsValid(59) || !h.IsChecksumValid() || h.CalculateChecksum() != 0xd5f3 {
		t.Errorf("IPv4 validity")
	}
	h6 := IPv6(synV6)
	if h6.Version() != 6 || h6.TrafficClass() != 0 || h6.FlowLabel() != 0x2feba || h6.PayloadLength() != 40 ||
		h6.NextHeader() != ProtocolTCP || h6.HopLimit() != 64 || h6.Src() != netip.MustParseAddr("2001:db8::1") ||
		h6.Dst() != netip.MustParseAddr("2001:db8::2") {
		t.Errorf("IPv6 accessors")
	}
	if !h6.IsValid(80) || h6.IsValid(79) {
		t.Errorf("IPv6 validity")
	}
	tc := TCP(synV4[20:])
	if tc.SrcPort() != 58332 || tc.DstPort() != 8080 || tc.Seq() != 0x34b9282b || tc.Ack() != 0 || tc.DataOffset() != 40 ||
		tc.Flags() != SYN || tc.Window() != 64240 || tc.Checksum() != 0x8432 || tc.UrgentPtr() != 0 ||
		!bytes.Equal(tc.Options(), synV4[40:60]) || !tc.IsValid() || TCP(synV4[20:50]).IsValid() {
		t.Errorf("TCP accessors")
	}

	// Setters round-trip.
	b := make([]byte, 60)
	h = IPv4(b)
	h.SetVersionIHL(24)
	h.SetTOS(0xb8)
	h.SetTotalLength(1500)
	h.SetID(0x1234)
	h.SetFlagsFragmentOffset(IPv4FlagMoreFragments, 1480)
	h.SetTTL(3)
	h.SetProtocol(17)
	h.SetSrc(netip.MustParseAddr("192.0.2.1"))
	h.SetDst(netip.MustParseAddr("192.0.2.2"))
	h.SetChecksum(h.CalculateChecksum())
	if h.Version() != 4 || h.HeaderLength() != 24 || h.TOS() != 0xb8 || h.TotalLength() != 1500 || h.ID() != 0x1234 ||
		h.Flags() != IPv4FlagMoreFragments || h.FragmentOffset() != 1480 || h.TTL() != 3 || h.Protocol() != 17 ||
		h.Src() != netip.MustParseAddr("192.0.2.1") || h.Dst() != netip.MustParseAddr("192.0.2.2") || !h.IsChecksumValid() {
		t.Errorf("IPv4 setters")
	}
	h6 = IPv6(b)
	h6.SetVersionTCFlow(0xb8, 0xabcde)
	h6.SetPayloadLength(20)
	h6.SetNextHeader(6)
	h6.SetHopLimit(9)
	h6.SetSrc(netip.MustParseAddr("2001:db8::1"))
	h6.SetDst(netip.MustParseAddr("2001:db8::2"))
	if h6.Version() != 6 || h6.TrafficClass() != 0xb8 || h6.FlowLabel() != 0xabcde || h6.PayloadLength() != 20 ||
		h6.NextHeader() != 6 || h6.HopLimit() != 9 || h6.Src() != netip.MustParseAddr("2001:db8::1") ||
		h6.Dst() != netip.MustParseAddr("2001:db8::2") {
		t.Errorf("IPv6 setters")
	}
	tc = TCP(b)
	tc.SetSrcPort(1)
	tc.SetDstPort(2)
	tc.SetSeq(3)
	tc.SetAck(4)
	tc.SetDataOffset(24)
	tc.SetFlags(FIN | URG)
	tc.SetWindow(5)
	tc.SetChecksum(6)
	tc.SetUrgentPtr(7)
	if tc.SrcPort() != 1 || tc.DstPort() != 2 || tc.Seq() != 3 || tc.Ack() != 4 || tc.DataOffset() != 24 ||
		tc.Flags() != FIN|URG || tc.Window() != 5 || tc.Checksum() != 6 || tc.UrgentPtr() != 7 || len(tc.Options()) != 4 {
		t.Errorf("TCP setters")
	}
}
