package ipmangle

import (
	"bytes"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// The seed corpora under testdata/fuzz/<FuzzName>/ hold the real packets of
// fixtures_test.go and some malformed variants. Regenerate them with
//
//	go test ./pkg/ipmangle -run TestWriteFuzzCorpus -update-corpus
var updateCorpus = flag.Bool("update-corpus", false, "rewrite the seed corpora in testdata/fuzz from the fixtures")

func FuzzDecode(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Parsed
		p.Decode(b)
		checkDecodeInvariants(t, b, &p)
	})
}

// checkDecodeInvariants checks what Decode promises about any input.
func checkDecodeInvariants(t *testing.T, b []byte, p *Parsed) {
	if !p.Valid {
		if p.Reason == ReasonOK || *p != invalid(p.Reason, p.Fragment) || (p.Fragment && p.Reason != ReasonFragment) {
			t.Fatalf("invalid packet with fields set: %+v", *p)
		}
		return
	}
	if p.Reason != ReasonOK || p.IPVersion != b[0]>>4 {
		t.Fatalf("valid with reason %v, version %d", p.Reason, p.IPVersion)
	}
	minIP := IPv4MinimumSize
	if p.IPVersion == 6 {
		minIP = IPv6MinimumSize
	}
	switch {
	case p.IPHeaderLen < minIP || p.TCPOffset != p.IPHeaderLen:
		t.Fatalf("IP header %d, TCP at %d", p.IPHeaderLen, p.TCPOffset)
	case p.TCPHeaderLen < TCPMinimumSize || p.TCPHeaderLen > TCPMaximumHeaderSize || p.TCPHeaderLen%4 != 0:
		t.Fatalf("TCP header %d", p.TCPHeaderLen)
	case p.PayloadOffset != p.TCPOffset+p.TCPHeaderLen || p.PayloadOffset > len(b):
		t.Fatalf("payload at %d of %d bytes", p.PayloadOffset, len(b))
	case p.PayloadLen < 0 || p.TotalLen != p.PayloadOffset+p.PayloadLen || p.TotalLen > 40+0xffff:
		t.Fatalf("payload %d, total %d", p.PayloadLen, p.TotalLen)
	case p.Truncated != (p.TotalLen > len(b)):
		t.Fatalf("truncated %v with total %d of %d bytes", p.Truncated, p.TotalLen, len(b))
	case p.Fragment || p.WScale < -1 || p.WScale > MaxWindowScale || (p.WScale >= 0) != (p.WScaleOffset != 0):
		t.Fatalf("fragment %v, window scale %d at %d", p.Fragment, p.WScale, p.WScaleOffset)
	}
	for _, o := range []struct{ off, n int }{{p.MSSOffset, 4}, {p.WScaleOffset, 3}, {p.TSOffset, 10}, {p.SACKOffset, 10}} {
		if o.off != 0 && (o.off < p.TCPOffset+TCPMinimumSize || o.off+o.n > p.PayloadOffset) {
			t.Fatalf("option at %d outside the options [%d, %d)", o.off, p.TCPOffset+TCPMinimumSize, p.PayloadOffset)
		}
	}
	if p.TSOffset != 0 && (b[p.TSOffset] != TCPOptionTimestamp || get32(b, p.TSOffset+2) != p.TSVal) {
		t.Fatalf("TS option at %d does not hold %#x", p.TSOffset, p.TSVal)
	}
	if p.MSSOffset != 0 && (b[p.MSSOffset] != TCPOptionMSS || get16(b, p.MSSOffset+2) != p.MSS) {
		t.Fatalf("MSS option at %d does not hold %d", p.MSSOffset, p.MSS)
	}
	// The independent walk agrees on the layout.
	version, tcpOff, end, ok := naiveLayout(b)
	if !ok || version != p.IPVersion || tcpOff != p.TCPOffset || end != p.TotalLen {
		t.Fatalf("naive walk: %v v%d TCP at %d end %d; Decode: v%d TCP at %d end %d",
			ok, version, tcpOff, end, p.IPVersion, p.TCPOffset, p.TotalLen)
	}
	tcp := TCP(b[p.TCPOffset:])
	if p.Src.Port() != tcp.SrcPort() || p.Dst.Port() != tcp.DstPort() || p.Seq != tcp.Seq() || p.Ack != tcp.Ack() ||
		p.Flags != tcp.Flags() || p.Window != tcp.Window() {
		t.Fatalf("TCP fields differ from the header")
	}
	if got, want := len(p.Payload(b)), min(p.TotalLen, len(b))-p.PayloadOffset; got != want {
		t.Fatalf("Payload: %d bytes, want %d", got, want)
	}
	// FixChecksums makes any valid complete packet verify.
	if !p.Truncated {
		c := clone(b)
		FixChecksums(c, p)
		if ipOK, tcpOK := naiveChecksumsOK(c[:p.TotalLen]); !ipOK || !tcpOK {
			t.Fatalf("after FixChecksums: IPv4 header ok %v, TCP ok %v", ipOK, tcpOK)
		}
	}
}

func FuzzRewrite(f *testing.F) {
	f.Fuzz(func(t *testing.T, b, ops []byte) {
		var p Parsed
		p.Decode(b)
		if !p.Valid {
			return
		}
		FixChecksums(b, &p)
		orig := clone(b)
		runOps(b, &p, ops)
		if !bytes.Equal(b[p.PayloadOffset:], orig[p.PayloadOffset:]) {
			t.Fatalf("a rewrite touched the payload or the padding")
		}
		if p.Truncated {
			// The TCP checksum cannot be recomputed; the IPv4 header and
			// the Parsed still can be checked.
			if p.IPVersion == 4 && !IPv4(b).IsChecksumValid() {
				t.Fatalf("IPv4 header checksum wrong")
			}
			var fresh Parsed
			fresh.Decode(b)
			if p != fresh {
				t.Fatalf("Parsed out of step:\n got %+v\nwant %+v", p, fresh)
			}
			return
		}
		checkRewritten(t, b, &p)
	})
}

func FuzzSegment(f *testing.F) {
	f.Fuzz(func(t *testing.T, b []byte, mtu uint16) {
		var p Parsed
		p.Decode(b)
		var s Segmenter
		ok := s.Reset(b, &p, int(mtu))
		splittable := p.Valid && !p.Truncated &&
			(p.TotalLen <= int(mtu) || (int(mtu) > p.PayloadOffset && p.Flags&(SYN|RST) == 0))
		if ok != splittable {
			t.Fatalf("Reset %v, want %v (%+v, mtu %d)", ok, splittable, p, mtu)
		}
		if !ok {
			return
		}
		if chunk := int(mtu) - p.PayloadOffset; p.TotalLen > int(mtu) && p.PayloadLen/chunk > 5000 {
			t.Skip("too many segments to check")
		}
		orig := fixed(b[:p.TotalLen])
		var segs [][]byte
		buf := make([]byte, max(int(mtu), p.TotalLen))
		for seg := s.Next(buf); seg != nil; seg = s.Next(buf) {
			segs = append(segs, clone(seg))
		}
		if !s.Done() {
			t.Fatalf("not done")
		}
		checkSegments(t, orig, int(mtu), segs, true)
	})
}

func FuzzEncode(f *testing.F) {
	f.Fuzz(func(t *testing.T, v6 bool, src, dst []byte, sport, dport uint16, seq, ack uint32, flags uint8, window, mss uint16,
		wscale int8, sack, hasTS bool, tsval, tsecr uint32, ttl uint8, id uint16, df bool, payload []byte) {
		addr := func(b []byte) netip.Addr {
			if v6 {
				var a [16]byte
				copy(a[:], b)
				return netip.AddrFrom16(a)
			}
			var a [4]byte
			copy(a[:], b)
			return netip.AddrFrom4(a)
		}
		fl := Fields{
			Src: netip.AddrPortFrom(addr(src), sport), Dst: netip.AddrPortFrom(addr(dst), dport),
			Seq: seq, Ack: ack, Flags: TCPFlags(flags), Window: window, MSS: mss, WScale: wscale,
			SACKPermitted: sack, HasTS: hasTS, TSVal: tsval, TSEcr: tsecr, TTL: ttl, ID: id, DontFragment: df,
			Payload: payload,
		}
		b := make([]byte, fl.Len())
		n := fl.Encode(b)
		if n == 0 {
			if wscale <= MaxWindowScale {
				t.Fatalf("Encode refused valid fields %+v", fl)
			}
			return
		}
		if n != len(b) {
			t.Fatalf("Encode wrote %d of %d", n, len(b))
		}
		checkPacketNaive(t, b, hasSeq(seq), hasAck(ack), hasFlags(TCPFlags(flags)), hasAddrs(fl.Src, fl.Dst), hasPayload(payload))
		got := fieldsOf(b)
		want := fl
		if want.TTL == 0 {
			want.TTL = defaultTTL
		}
		if v6 {
			want.ID, want.DontFragment = 0, false
		}
		if wscale < 0 {
			want.WScale = -1
		}
		if !hasTS {
			want.TSVal, want.TSEcr = 0, 0
		}
		got.Payload, want.Payload = nil, nil
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("decode(encode(f)):\n got %+v\nwant %+v", got, want)
		}
	})
}

// TestWriteFuzzCorpus writes the seed corpora (see updateCorpus).
func TestWriteFuzzCorpus(t *testing.T) {
	if !*updateCorpus {
		t.Skip("run with -update-corpus to rewrite testdata/fuzz")
	}
	write := func(fuzz, name string, vals ...any) {
		var sb bytes.Buffer
		sb.WriteString("go test fuzz v1\n")
		for _, v := range vals {
			switch v := v.(type) {
			case []byte:
				fmt.Fprintf(&sb, "[]byte(%q)\n", v)
			default:
				fmt.Fprintf(&sb, "%T(%v)\n", v, v)
			}
		}
		dir := filepath.Join("testdata", "fuzz", fuzz)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), sb.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range realPackets() {
		write("FuzzDecode", f.name, f.pkt)
		write("FuzzRewrite", f.name, f.pkt, []byte{0, 192, 0, 2, 9, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 0x1f, 0x90, 2, 0xff, 0xff, 0xff, 0xff, 5, 1, 2, 3, 4, 5, 6, 7, 8})
		write("FuzzSegment", f.name, f.pkt, uint16(1500))
	}
	write("FuzzDecode", "padded", append(clone(ackV4), 0, 0, 0, 0, 0, 0))
	write("FuzzDecode", "truncated", dataV4Lo[:60])
	write("FuzzDecode", "v4-fragment", mut(synV4, setU16(6, 0x2000)))
	write("FuzzDecode", "v4-options", withIPv4Options(dataV4Lo, []byte{1, 1, 1, 0, 0x44, 8, 5, 0}))
	write("FuzzDecode", "v6-all-ext", withExtHeaders(0,
		[]byte{60, 0, 1, 4, 0, 0, 0, 0}, []byte{43, 0, 1, 4, 0, 0, 0, 0}, []byte{44, 0, 4, 0, 0, 0, 0, 0},
		[]byte{51, 0, 0, 0, 0, 0, 0, 0}, []byte{60, 2, 0, 0, 0, 0, 1, 0, 0, 0, 0, 1, 0xaa, 0xbb, 0xcc, 0xdd},
		[]byte{6, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}))
	write("FuzzDecode", "tcp-options-bad", withTCPOptions([]byte{2, 4, 5, 0xb4, 8, 10, 1, 2, 3, 4, 5, 6, 7, 8, 3, 0}))
	write("FuzzRewrite", "ts-odd", tsOddPacket(), []byte{5, 1, 2, 3, 4, 5, 6, 7, 8, 6, 0x12, 0x34})
	write("FuzzSegment", "gro-v6-1280", groV6(), uint16(1280))
	write("FuzzSegment", "gro-v4-small-mtu", groV4(), uint16(100))
	write("FuzzEncode", "syn-v4", false, []byte{192, 0, 2, 1}, []byte{198, 51, 100, 2}, uint16(40000), uint16(80),
		uint32(1), uint32(0), uint8(SYN), uint16(64240), uint16(1460), int8(7), true, true, uint32(0xdeadbeef), uint32(0),
		uint8(0), uint16(99), true, []byte{})
	write("FuzzEncode", "data-v6", true, []byte{0x20, 0x01, 0x0d, 0xb8, 15: 1}, []byte{0x20, 0x01, 0x0d, 0xb8, 15: 2},
		uint16(40000), uint16(443), uint32(100), uint32(200), uint8(PSH|ACK), uint16(502), uint16(0), int8(-1), false, true,
		uint32(1), uint32(2), uint8(64), uint16(0), false, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
}
