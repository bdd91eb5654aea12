package wire

import (
	"bytes"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"testing/iotest"
)

// fuzzFormats maps the selector byte of FuzzRecordReader to a format.
var fuzzFormats = []Format{f6Plain, f6Combined, f6Payload, f6CombPay, f7, {Version: 7}, {Version: 7, PrefixLen: 8, Compare: 64}, {Version: 7, Compare: 16, UDP: true}}

// decodedRec is a record copied out of the reader's buffer.
type decodedRec struct {
	header     string
	payloadLen int
	captured   int64
	prefix     string
	flags      RecordFlags
}

// decodeAll runs a RecordReader to the end, checks the invariants of every
// record it returns, and describes the outcome as a string.
func decodeAll(t *testing.T, r io.Reader, f Format, hello bool) string {
	rr := NewRecordReader(r, f)
	var helloErr error
	if hello {
		_, helloErr = rr.ReadHello()
	}
	var recs []decodedRec
	for rr.Next() {
		rec := rr.Record()
		checkRecordInvariants(t, rr.Format(), rec)
		recs = append(recs, decodedRec{string(rec.Header), rec.PayloadLen, rec.Captured, string(rec.Prefix), rec.Flags})
	}
	if rr.Next() {
		t.Fatal("Next = true after false")
	}
	return fmt.Sprint(recs, helloErr, rr.Err(), rr.Skipped())
}

func checkRecordInvariants(t *testing.T, f Format, r Record) {
	t.Helper()
	ipLen, ok := checkHeader7(r.Header, r.UDP())
	if !ok || ipLen != len(r.IP()) {
		t.Fatalf("record header invalid: % x", r.Header)
	}
	if r.PayloadLen < 0 || len(r.Prefix) > r.PayloadLen {
		t.Fatalf("PayloadLen %d, prefix %d", r.PayloadLen, len(r.Prefix))
	}
	if r.UDP() && (f.Version != Version7 || len(r.TCP()) != udpLen) {
		t.Fatalf("%v: UDP record with a %d-byte transport header", f, len(r.TCP()))
	}
	if f.Version == Version6 {
		if len(r.Header) < 40 || len(r.Header) > 64 || r.Header[0] != 0x45 {
			t.Fatalf("v6 header % x", r.Header)
		}
		if n := int(be.Uint16(r.Header[2:])) - len(r.Header); n != r.PayloadLen {
			t.Fatalf("tot_len - headers = %d, PayloadLen %d", n, r.PayloadLen)
		}
		if len(r.Prefix) > 0 && (!f.Payload || r.PayloadLen > MaxPayload6) {
			t.Fatalf("unexpected prefix of %d bytes", len(r.Prefix))
		}
		if r.Flags&IPOptionsDropped != 0 {
			ip := r.IP()
			if be.Uint16(ip[ipv4ChecksumOff:]) != ipChecksumFull(ip) {
				t.Fatal("normalised header with a bad checksum")
			}
		}
	}
}

func FuzzRecordReader(f *testing.F) {
	for _, s := range recordSeeds(f) {
		f.Add(s.data, s.sel)
	}
	f.Fuzz(func(t *testing.T, data []byte, sel byte) {
		format := fuzzFormats[int(sel&0x7f)%len(fuzzFormats)]
		hello := sel&0x80 != 0
		a := decodeAll(t, bytes.NewReader(data), format, hello)
		// Chunking must not change anything.
		if b := decodeAll(t, iotest.OneByteReader(bytes.NewReader(data)), format, hello); a != b {
			t.Fatalf("whole vs one-byte reads differ:\n%s\n%s", a, b)
		}
	})
}

func FuzzRouteReader(f *testing.F) {
	for _, s := range routeSeeds(f) {
		f.Add(s.data, s.v7)
	}
	f.Fuzz(func(t *testing.T, data []byte, v7 bool) {
		run := func(r io.Reader) string {
			rr := NewRouteReader(r)
			off, oerr := rr.ReadOffer()
			if v7 && oerr == nil && off.MaxVersion >= Version7 {
				rr.SetVersion(Version7)
			}
			var out []Msg
			for rr.Next() {
				m := rr.Msg()
				switch m.Kind {
				case MsgRoute:
					r := m.Route
					if !r.Client.Addr().IsValid() || r.Client.Addr().Is4() != r.Target.Addr().Is4() ||
						(rr.Version() == Version6 && !r.Client.Addr().Is4()) || (r.Op != RouteAdd && r.Op != RouteDel) {
						t.Fatalf("bad route %+v", r)
					}
					// Every decoded route encodes back to an equal one.
					if r.UDP && rr.Version() != Version7 {
						t.Fatalf("UDP route on version %d", rr.Version())
					}
					b, err := AppendRoute(nil, Format{Version: rr.Version(), UDP: rr.Version() == Version7}, r)
					if err != nil {
						t.Fatalf("AppendRoute(%+v): %v", r, err)
					}
					if got := decodeRoute(t, rr.Version(), b); got != r {
						t.Fatalf("re-decoded %+v, want %+v", got, r)
					}
				case MsgConfig:
					if m.Config.PrefixLen < 0 || m.Config.PrefixLen > 65535 {
						t.Fatalf("config %+v", m.Config)
					}
				case MsgAuth:
					if rr.Version() != Version7 {
						t.Fatalf("auth on version %d", rr.Version())
					}
					// It encodes back to an equal one.
					back := NewRouteReader(bytes.NewReader(cat(AppendOffer(nil, true), AppendAuth(nil, m.Auth))))
					back.ReadOffer()
					back.SetVersion(Version7)
					if !back.Next() || back.Msg().Auth != m.Auth {
						t.Fatalf("auth %+v does not round-trip", m.Auth)
					}
				default:
					t.Fatalf("kind %v", m.Kind)
				}
				out = append(out, m)
			}
			return fmt.Sprint(off, oerr, out, rr.Err(), rr.Skipped())
		}
		if a, b := run(bytes.NewReader(data)), run(iotest.OneByteReader(bytes.NewReader(data))); a != b {
			t.Fatalf("whole vs one-byte reads differ:\n%s\n%s", a, b)
		}
	})
}

// decodeRoute decodes one route message b (after a handshake).
func decodeRoute(t *testing.T, v uint8, b []byte) Route {
	t.Helper()
	offer := AppendOffer(nil, v == Version7)
	rr := NewRouteReader(bytes.NewReader(cat(offer, b)))
	rr.ReadOffer()
	rr.SetVersion(v)
	if !rr.Next() {
		t.Fatalf("no message: %v", rr.Err())
	}
	m := rr.Msg()
	if rr.Next() || rr.Err() != nil {
		t.Fatalf("extra message or error: %v", rr.Err())
	}
	return m.Route
}

func FuzzHello(f *testing.F) {
	for _, s := range helloSeeds(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		k, n := ClassifyServerBytes(b)
		hf, herr := ParseHello(b)
		switch k {
		case ServerHello:
			if n < HelloLen || n > MaxHelloLen || n > len(b) {
				t.Fatalf("hello n = %d of %d", n, len(b))
			}
			if herr == nil {
				if hf.Validate() != nil {
					t.Fatalf("ParseHello returned invalid %+v", hf)
				}
				// A parsed hello re-encodes to the same known fields.
				re := AppendHello(nil, hf)
				if g, err := ParseHello(re); err != nil || g != hf {
					t.Fatalf("re-parse %+v, %v; want %+v", g, err, hf)
				}
			}
		case ServerNeedMore:
			if n <= len(b) || herr == nil {
				t.Fatalf("need-more n = %d of %d, err %v", n, len(b), herr)
			}
		case ServerRecords, ServerInvalid:
			if n != 0 || herr == nil {
				t.Fatalf("%v: n = %d, err %v", k, n, herr)
			}
		default:
			t.Fatalf("kind %v", k)
		}
		// Classifying a prefix never contradicts the whole.
		for i := range len(b) {
			pk, pn := ClassifyServerBytes(b[:i])
			if pk != ServerNeedMore && (pk != k || pn != n) {
				t.Fatalf("prefix %d: %v %d, whole: %v %d", i, pk, pn, k, n)
			}
		}
	})
}

// FuzzRecordRoundTrip encodes a captured packet in every format and checks
// that decoding gives back its header fields, payload length, timestamp
// and prefix.
func FuzzRecordRoundTrip(f *testing.F) {
	for _, s := range roundTripSeeds(f) {
		f.Add(s.pkt, s.payloadLen, s.ts, s.prefix)
	}
	f.Fuzz(func(t *testing.T, pkt []byte, payloadLen int, ts int64, prefix []byte) {
		c, ok := parseCaptured(pkt)
		for _, format := range fuzzFormats {
			b := NewBatcher(format, 0)
			// Hashed when the format compares (a hash derived from ts).
			hash, hashed := uint64(ts)*0x9e3779b97f4a7c15, format.Compare > 0
			if !b.AddHashed(pkt, payloadLen, ts, prefix, hash, hashed) {
				t.Fatal("Add to an empty batch = false")
			}
			if b.Len() == 0 {
				if ok && payloadLen >= 0 && payloadLen <= 0xffff-60 && !c.v6 && (!c.udp || format.UDP) {
					t.Fatalf("%v: dropped a valid packet", format)
				}
				continue
			}
			rr := NewRecordReader(bytes.NewReader(b.Bytes()), format)
			if !rr.Next() {
				t.Fatalf("%v: no record decoded: %v (skipped %d)", format, rr.Err(), rr.Skipped())
			}
			r := rr.Record()
			checkRecordInvariants(t, format, r)
			if rr.Next() || rr.Err() != nil {
				t.Fatalf("%v: extra record or error %v", format, rr.Err())
			}
			if r.PayloadLen != payloadLen {
				t.Fatalf("%v: PayloadLen %d, want %d", format, r.PayloadLen, payloadLen)
			}
			ipIn, tcpIn := pkt[:c.ipLen], pkt[c.tcpOff:c.tcpOff+c.tcpLen]
			ip, tcp := r.IP(), r.TCP()
			// Addresses and TCP fields (ports, seq, ack, flags, window,
			// checksum, urgent) survive in every format.
			if c.v6 {
				if !bytes.Equal(ip[8:40], ipIn[8:40]) {
					t.Fatalf("addresses differ")
				}
			} else if !bytes.Equal(ip[12:20], ipIn[12:20]) || !bytes.Equal(ip[4:10], ipIn[4:10]) {
				t.Fatalf("%v: IPv4 fields differ", format)
			}
			if r.UDP() != c.udp {
				t.Fatalf("%v: UDP record %v, packet UDP %v", format, r.UDP(), c.udp)
			}
			if c.udp {
				if !bytes.Equal(tcp, tcpIn) {
					t.Fatalf("%v: UDP header differs:\n% x\n% x", format, tcp, tcpIn)
				}
			} else if !bytes.Equal(tcp[:12], tcpIn[:12]) || !bytes.Equal(tcp[13:20], tcpIn[13:20]) || tcp[12]&0x0f != tcpIn[12]&0x0f {
				t.Fatalf("%v: TCP fields differ:\n% x\n% x", format, tcp[:20], tcpIn[:20])
			}
			wantPrefix := []byte(nil)
			if format.Version == Version7 {
				if r.Captured != ts {
					t.Fatalf("Captured %d, want %d", r.Captured, ts)
				}
				if !bytes.Equal(r.Header[c.ipLen:], tcpIn) || (!c.v6 && !bytes.Equal(ip, ipIn)) {
					t.Fatalf("v7 header changed")
				}
				wantPrefix = prefix[:min(len(prefix), max(format.PrefixLen, format.Compare), payloadLen)]
				if r.Hashed != hashed || hashed && r.Hash != hash {
					t.Fatalf("%v: hash %#x (%v), want %#x (%v)", format, r.Hash, r.Hashed, hash, hashed)
				}
			} else {
				n := min(c.tcpLen, MaxTCPHeader6)
				if !bytes.Equal(tcp[20:], tcpIn[20:n]) {
					t.Fatalf("%v: options differ", format)
				}
				if format.Payload && payloadLen > 0 && payloadLen <= MaxPayload6 {
					wantPrefix = make([]byte, min(payloadLen, PayloadRecordSize-20-c.tcpLen))
					copy(wantPrefix, prefix[:min(len(prefix), payloadLen)])
				}
			}
			if !bytes.Equal(r.Prefix, wantPrefix) {
				t.Fatalf("%v: prefix %q, want %q", format, r.Prefix, wantPrefix)
			}
		}
	})
}

// FuzzRouteRoundTrip checks decode(encode(route)) == route in both
// versions; bit 7 of op makes the route a UDP one (version 7 with UDP
// only).
func FuzzRouteRoundTrip(f *testing.F) {
	f.Add([]byte{192, 0, 2, 10}, uint16(40000), []byte{203, 0, 113, 20}, uint16(8080), uint8(1))
	f.Add(netip.MustParseAddr("2001:db8::a").AsSlice(), uint16(40000), netip.MustParseAddr("2001:db8::14").AsSlice(), uint16(8080), uint8(2))
	f.Add(netip.MustParseAddr("::ffff:192.0.2.1").AsSlice(), uint16(1), []byte{10, 0, 0, 1}, uint16(0), uint8(1))
	f.Fuzz(func(t *testing.T, c []byte, cp uint16, tg []byte, tp uint16, op uint8) {
		ca, _ := netip.AddrFromSlice(c)
		ta, _ := netip.AddrFromSlice(tg)
		r := Route{Client: netip.AddrPortFrom(ca, cp), Target: netip.AddrPortFrom(ta, tp), Op: RouteOp(op &^ 0x80), UDP: op&0x80 != 0}
		for _, v := range []uint8{Version6, Version7} {
			b, err := AppendRoute(nil, Format{Version: v, UDP: v == Version7}, r)
			norm, ok := r.normalize()
			if !ok || (v == Version6 && (norm.Client.Addr().Is6() || r.UDP)) {
				if err == nil {
					t.Fatalf("v%d: no error for %+v", v, r)
				}
				continue
			}
			if err != nil {
				t.Fatalf("v%d: %v", v, err)
			}
			if got := decodeRoute(t, v, b); got != norm {
				t.Fatalf("v%d: decoded %+v, want %+v", v, got, norm)
			}
		}
	})
}

// Seeds: real frames built from the fixtures. TestWriteFuzzCorpus writes
// them to testdata/fuzz in the Go corpus format.

type recordSeed struct {
	data []byte
	sel  byte
}

func recordSeeds(t testing.TB) []recordSeed {
	return []recordSeed{
		{fixture(t, "v6-record-synack"), 0},
		{fixture(t, "v6-combined-2"), 1},
		{fixture(t, "v6-payload-record-http"), 2},
		{cat([]byte{0, 1}, fixture(t, "v6-payload-record-http")), 3},
		{cat(fixture(t, "v6-record-long-options"), fixture(t, "v6-record-ip-options-c")), 0},
		{cat(fixture(t, "v7-record-ipv6-synack"), fixture(t, "v7-record-ipv4-options-prefix")), 4},
		{cat(fixture(t, "hello-v7"), fixture(t, "v7-record-ipv6-synack")), 0x80},
		{cat(fixture(t, "hello-v6-combined"), fixture(t, "v6-combined-2")), 0x80},
		{fixture(t, "v6-combined-2"), 0x81},
		{[]byte{0, 17}, 1},
		{[]byte{0, 3, 0x81, 0}, 4},
		{cat(fixture(t, "hello-v7-udp"), fixture(t, "v7-record-udp-ipv4"), fixture(t, "v7-record-udp-ipv6")), 0x80},
		{cat(fixture(t, "v7-record-udp-ipv6"), fixture(t, "v7-record-ipv6-synack")), 7},
	}
}

type routeSeed struct {
	data []byte
	v7   bool
}

func routeSeeds(t testing.TB) []routeSeed {
	return []routeSeed{
		{cat(fixture(t, "v6-handshake"), fixture(t, "v6-client-add")), false},
		{cat(fixture(t, "v7-offer"), fixture(t, "v7-config"), fixture(t, "v7-route-add-ipv4"), fixture(t, "v7-route-add-ipv6")), true},
		{cat(fixture(t, "v7-offer"), fixture(t, "v6-client-add")), false},
		{fixture(t, "v6-client-add"), false},
		{cat(fixture(t, "v7-offer"), []byte{0xff, 0xff, 1, 0}), true},
		{cat(fixture(t, "v7-offer"), fixture(t, "v7-auth"), fixture(t, "v7-route-add-ipv4")), true},
		{cat(fixture(t, "v7-offer"), fixture(t, "v7-route-add-udp"), fixture(t, "v7-route-add-ipv4")), true},
	}
}

func helloSeeds(t testing.TB) [][]byte {
	return [][]byte{
		fixture(t, "hello-v7"),
		fixture(t, "hello-v6-combined"),
		fixture(t, "v6-combined-2"),
		fixture(t, "v6-record-synack"),
		fixture(t, "hello-v7")[:9],
		fixture(t, "hello-v7-udp"),
		{0, 0, 'T', 'C', 'G', 'O', 1, 0},
	}
}

type roundTripSeed struct {
	pkt        []byte
	payloadLen int
	ts         int64
	prefix     []byte
}

func roundTripSeeds(t testing.TB) []roundTripSeed {
	http := httpPkt(t)
	return []roundTripSeed{
		{synAckPkt(t), 0, ts1, nil},
		{dataPkt(t), 512, ts2, bytes.Repeat([]byte{'a'}, 512)},
		{http, 41, ts1, http[52:]},
		{longOptPkt(t), 0, 0, nil},
		{ipOptPkt(t), 100, ts2, bytes.Repeat([]byte{'b'}, 100)},
		{ipv6SynAckPkt(t), 0, ts1, nil},
		{ipv6ExtPkt(t), 3, -1, []byte("abc")},
		{udp4Pkt(t), 43, ts2, udp4Pkt(t)[28:]},
		{udp6Pkt(t)[:48], 43, ts1, nil},
	}
}

// TestWriteFuzzCorpus regenerates testdata/fuzz/* from the seeds when
// WIRE_WRITE_CORPUS=1.
func TestWriteFuzzCorpus(t *testing.T) {
	if os.Getenv("WIRE_WRITE_CORPUS") != "1" {
		t.Skip("set WIRE_WRITE_CORPUS=1 to regenerate testdata/fuzz")
	}
	write := func(name string, i int, vals ...string) {
		dir := filepath.Join("testdata", "fuzz", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		s := "go test fuzz v1\n"
		for _, v := range vals {
			s += v + "\n"
		}
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(s), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	q := func(b []byte) string { return "[]byte(" + strconv.Quote(string(b)) + ")" }
	for i, s := range recordSeeds(t) {
		write("FuzzRecordReader", i, q(s.data), fmt.Sprintf("byte(%s)", strconv.QuoteRune(rune(s.sel))))
	}
	for i, s := range routeSeeds(t) {
		write("FuzzRouteReader", i, q(s.data), fmt.Sprintf("bool(%v)", s.v7))
	}
	for i, s := range helloSeeds(t) {
		write("FuzzHello", i, q(s))
	}
	for i, s := range authSeeds(t) {
		write("FuzzAuth", i, q(s))
	}
	for i, s := range roundTripSeeds(t) {
		write("FuzzRecordRoundTrip", i, q(s.pkt), fmt.Sprintf("int(%d)", s.payloadLen), fmt.Sprintf("int64(%d)", s.ts), q(s.prefix))
	}
	routes := []struct {
		c, tg  netip.Addr
		cp, tp uint16
		op     uint8
	}{
		{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("203.0.113.20"), 40000, 8080, 1},
		{netip.MustParseAddr("2001:db8::a"), netip.MustParseAddr("2001:db8::14"), 40000, 8080, 2},
		{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("203.0.113.20"), 40000, 5353, 0x81},
	}
	for i, r := range routes {
		write("FuzzRouteRoundTrip", i, q(r.c.AsSlice()), fmt.Sprintf("uint16(%d)", r.cp), q(r.tg.AsSlice()), fmt.Sprintf("uint16(%d)", r.tp), fmt.Sprintf("uint8(%d)", r.op))
	}
}
