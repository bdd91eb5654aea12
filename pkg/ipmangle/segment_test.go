package ipmangle

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"
)

// split runs a Segmenter over pkt and returns copies of the segments.
func split(t testing.TB, pkt []byte, mtu int) [][]byte {
	t.Helper()
	var p Parsed
	p.Decode(pkt)
	var s Segmenter
	if !s.Reset(pkt, &p, mtu) {
		t.Fatalf("Reset refused (valid %v, %v)", p.Valid, p.Reason)
	}
	var segs [][]byte
	buf := make([]byte, max(mtu, 1)+100)
	for seg := s.Next(buf); seg != nil; seg = s.Next(buf) {
		segs = append(segs, clone(seg))
		if len(segs) > 70000 {
			t.Fatalf("no end")
		}
	}
	if !s.Done() || s.NextLen() != 0 {
		t.Fatalf("Next returned nil before done")
	}
	return segs
}

// checkSegments verifies segs against the original packet: each segment
// a valid packet with right checksums of at most mtu bytes, headers equal
// to the original but for lengths, seq, IPv4 ID, flags and checksums, seq
// continuity, flags placement, and the payload reassembling to the
// original. naive skips the gopacket comparison.
func checkSegments(t testing.TB, orig []byte, mtu int, segs [][]byte, naive bool) {
	t.Helper()
	var op Parsed
	op.Decode(orig)
	want := op.Payload(orig)
	chunk := mtu - op.PayloadOffset
	wantN := 1
	if op.TotalLen > mtu && len(want) > 0 {
		wantN = (len(want) + chunk - 1) / chunk
	}
	if len(segs) != wantN {
		t.Fatalf("got %d segments, want %d", len(segs), wantN)
	}
	var got []byte
	for i, seg := range segs {
		var p *Parsed
		if naive {
			p = checkPacketNaive(t, seg)
		} else {
			p = checkPacket(t, seg)
		}
		if len(seg) > mtu && op.TotalLen > mtu {
			t.Errorf("segment %d: %d bytes > mtu %d", i, len(seg), mtu)
		}
		if i < len(segs)-1 && len(seg) != mtu {
			t.Errorf("segment %d of %d: %d bytes, want a full %d", i, len(segs), len(seg), mtu)
		}
		if p.Seq != op.Seq+uint32(len(got)) {
			t.Errorf("segment %d: seq %#x, want %#x", i, p.Seq, op.Seq+uint32(len(got)))
		}
		wantFlags := op.Flags
		if i != len(segs)-1 {
			wantFlags &^= PSH | FIN
		}
		if i != 0 {
			wantFlags &^= CWR
		}
		if p.Flags != wantFlags {
			t.Errorf("segment %d: flags %v, want %v", i, p.Flags, wantFlags)
		}
		if p.IPVersion == 4 {
			if id := IPv4(seg).ID(); id != IPv4(orig).ID()+uint16(i) {
				t.Errorf("segment %d: IP ID %#x, want %#x", i, id, IPv4(orig).ID()+uint16(i))
			}
		}
		// Headers: the same bytes but for the fields above.
		h, oh := clone(seg[:p.PayloadOffset]), clone(orig[:op.PayloadOffset])
		for _, x := range [][]byte{h, oh} {
			if p.IPVersion == 4 {
				IPv4(x).SetTotalLength(0)
				IPv4(x).SetID(0)
				IPv4(x).SetChecksum(0)
			} else {
				IPv6(x).SetPayloadLength(0)
			}
			tc := TCP(x[p.TCPOffset:])
			tc.SetSeq(0)
			tc.SetFlags(0)
			tc.SetChecksum(0)
		}
		if !bytes.Equal(h, oh) {
			t.Errorf("segment %d: headers differ:\n got % x\nwant % x", i, h, oh)
		}
		got = append(got, p.Payload(seg)...)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("reassembled payload: %d bytes, want %d (equal prefix %v)", len(got), len(want), bytes.HasPrefix(want, got))
	}
}

func TestSegmentRealSuperPackets(t *testing.T) {
	for _, tt := range []struct {
		name  string
		pkt   []byte
		mtu   int
		wantN int
	}{
		// Linux built these from 1448- and 1428-byte segments: an MTU of
		// 1500 cuts them back exactly.
		{"gro-v4 1500", groV4(), 1500, 7},
		{"gro-v6 1500", groV6(), 1500, 10},
		{"gro-v4 1280", groV4(), 1280, 9},
		{"gro-v6 1280", groV6(), 1280, 12},
		{"gro-v4 odd mtu 1001", groV4(), 1001, 11},
		{"gro-v4 576", groV4(), 576, 20},
		{"gro-v6 minimal mtu", groV6(), 73, 14280},
		{"gro-v4 fits", groV4(), 10188, 1},
		{"gro-v6 fits", groV6(), 65535, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			segs := split(t, tt.pkt, tt.mtu)
			if len(segs) != tt.wantN {
				t.Fatalf("got %d segments, want %d", len(segs), tt.wantN)
			}
			checkSegments(t, fixed(tt.pkt), tt.mtu, segs, tt.wantN > 100)
		})
	}
}

// A packet that fits yields one segment equal to the packet with its
// checksums fixed (and link-layer padding dropped).
func TestSegmentFits(t *testing.T) {
	for _, f := range realPackets() {
		t.Run(f.name, func(t *testing.T) {
			padded := append(clone(f.pkt), 0, 0, 0, 0)
			segs := split(t, padded, 65535)
			if len(segs) != 1 || !bytes.Equal(segs[0], fixed(f.pkt)) {
				t.Errorf("got %d segments, first differs from the fixed packet", len(segs))
			}
		})
	}
}

// insertExt returns the IPv6 packet b with extension headers inserted
// before TCP: ext[i][0] must name the next header; the last must be 6.
func insertExt(b []byte, first byte, ext ...[]byte) []byte {
	out := clone(b[:40])
	for _, e := range ext {
		out = append(out, e...)
	}
	out = append(out, b[40:]...)
	out[6] = first
	binary.BigEndian.PutUint16(out[4:], uint16(len(out)-40))
	return out
}

func TestSegmentBuilt(t *testing.T) {
	v4a, v4b := netip.MustParseAddrPort("192.0.2.1:40000"), netip.MustParseAddrPort("198.51.100.2:80")
	v6a, v6b := netip.MustParseAddrPort("[2001:db8::1]:40000"), netip.MustParseAddrPort("[2001:db8::2]:443")
	payload := make([]byte, 65535-40-32)
	for i := range payload {
		payload[i] = byte(i * 7)
	}
	build := func(f Fields) []byte {
		b := make([]byte, f.Len())
		if f.Encode(b) == 0 {
			t.Fatalf("Encode failed")
		}
		return b
	}
	tests := []struct {
		name  string
		pkt   []byte
		mtu   int
		naive bool
	}{
		{"64 KiB v4 to 1500", build(Fields{Src: v4a, Dst: v4b, Seq: 100, Ack: 5, Flags: PSH | ACK, WScale: -1, HasTS: true,
			ID: 1000, DontFragment: true, Payload: payload}), 1500, false},
		{"64 KiB v6 to 1500", build(Fields{Src: v6a, Dst: v6b, Seq: 100, Ack: 5, Flags: PSH | ACK, WScale: -1, HasTS: true,
			Payload: payload}), 1500, false},
		{"FIN PSH CWR ECE", build(Fields{Src: v4a, Dst: v4b, Flags: FIN | PSH | ACK | CWR | ECE | URG, WScale: -1,
			Payload: payload[:5000]}), 1500, false},
		{"seq and IP ID wrap", build(Fields{Src: v4a, Dst: v4b, Seq: 0xffffff00, Flags: ACK, WScale: -1, ID: 0xfffe,
			Payload: payload[:6000]}), 1500, false},
		{"payload not a multiple", build(Fields{Src: v6a, Dst: v6b, Flags: ACK, WScale: -1, Payload: payload[:3001]}), 1500, false},
		{"one byte per segment", build(Fields{Src: v4a, Dst: v4b, Flags: PSH | ACK, WScale: -1, Payload: payload[:100]}), 41, false},
		{"no payload", build(Fields{Src: v4a, Dst: v4b, Flags: FIN | ACK, WScale: -1, HasTS: true}), 52, false},
		{"IPv4 options", withIPv4Options(build(Fields{Src: v4a, Dst: v4b, Flags: PSH | ACK, WScale: -1,
			Payload: payload[:4000]}), []byte{0x44, 8, 5, 0, 1, 2, 3, 4}), 1500, false},
		{"IPv6 hop-by-hop and destination options", insertExt(build(Fields{Src: v6a, Dst: v6b, Flags: PSH | ACK, WScale: -1,
			HasTS: true, Payload: payload[:20000]}), 0, []byte{60, 0, 1, 4, 0, 0, 0, 0}, []byte{6, 1, 0x1e, 12, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9, 9}),
			1500, false},
		{"IPv6 atomic fragment header kept", insertExt(build(Fields{Src: v6a, Dst: v6b, Flags: PSH | ACK, WScale: -1,
			Payload: payload[:5000]}), 44, []byte{6, 0, 0, 0, 0xca, 0xfe, 0xba, 0xbe}), 1280, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkSegments(t, tt.pkt, tt.mtu, split(t, tt.pkt, tt.mtu), tt.naive)
		})
	}
}

func TestSegmentRefuses(t *testing.T) {
	v4a, v4b := netip.MustParseAddrPort("192.0.2.1:1"), netip.MustParseAddrPort("192.0.2.2:2")
	big := func(fl TCPFlags) []byte {
		f := Fields{Src: v4a, Dst: v4b, Flags: fl, WScale: -1, Payload: make([]byte, 3000)}
		b := make([]byte, f.Len())
		f.Encode(b)
		return b
	}
	tests := []struct {
		name string
		pkt  []byte
		mtu  int
	}{
		{"invalid", mut(synV4, setByte(9, 17)), 1500},
		{"truncated", dataV4Lo[:60], 1500},
		{"mtu leaves no payload byte", big(ACK), 40},
		{"mtu below headers", big(ACK), 20},
		{"SYN to split", big(SYN), 1500},
		{"RST to split", big(RST | ACK), 1500},
		{"no payload above mtu", synV4, 59},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Parsed
			p.Decode(tt.pkt)
			var s Segmenter
			if s.Reset(tt.pkt, &p, tt.mtu) {
				t.Errorf("Reset accepted")
			}
			if !s.Done() || s.Next(make([]byte, 70000)) != nil {
				t.Errorf("refused Segmenter not done")
			}
		})
	}
	// A SYN that fits passes through.
	segs := split(t, fixed(synV4), 1500)
	if len(segs) != 1 {
		t.Errorf("SYN that fits: %d segments", len(segs))
	}
}

func TestSegmenterSmallDst(t *testing.T) {
	pkt := groV4()
	var p Parsed
	p.Decode(pkt)
	var s Segmenter
	if s.Next(make([]byte, 100)) != nil || !s.Done() {
		t.Errorf("zero Segmenter is not done")
	}
	s.Reset(pkt, &p, 1500)
	if got := s.NextLen(); got != 1500 {
		t.Errorf("NextLen %d", got)
	}
	if seg := s.Next(make([]byte, 1499)); seg != nil {
		t.Errorf("wrote into a short dst")
	}
	seg := s.Next(make([]byte, 1500))
	if seg == nil || TCP(seg[20:]).Seq() != p.Seq {
		t.Errorf("first segment lost after a short dst")
	}
}
