package wire

import (
	"bytes"
	"errors"
	"io"
	"net/netip"
	"testing"
	"testing/iotest"
)

var (
	f6Plain    = Format{Version: Version6}
	f6Combined = Format{Version: Version6, Combined: true}
	f6Payload  = Format{Version: Version6, Payload: true}
	f6CombPay  = Format{Version: Version6, Combined: true, Payload: true}
	f7         = Format{Version: Version7, PrefixLen: 128}
)

func cat(bs ...[]byte) []byte { return bytes.Join(bs, nil) }

func TestAppendOffer(t *testing.T) {
	if got, want := AppendOffer(nil, false), fixture(t, "v6-handshake"); !bytes.Equal(got, want) {
		t.Errorf("AppendOffer(v6) = % x, want % x", got, want)
	}
	if got, want := AppendOffer(nil, true), fixture(t, "v7-offer"); !bytes.Equal(got, want) {
		t.Errorf("AppendOffer(v7) = % x, want % x", got, want)
	}
}

func TestAppendRouteV6(t *testing.T) {
	add := Route{
		Client: netip.MustParseAddrPort("192.0.2.10:40000"),
		Target: netip.MustParseAddrPort("203.0.113.20:8080"),
		Op:     RouteAdd,
	}
	mapped := add
	mapped.Client = netip.MustParseAddrPort("[::ffff:192.0.2.10]:40000")
	for _, tc := range []struct {
		name    string
		r       Route
		want    []byte
		wantErr error
	}{
		{name: "add", r: add, want: fixture(t, "v6-client-add")},
		{name: "4in6 unmapped", r: mapped, want: fixture(t, "v6-client-add")},
		{name: "ipv6", r: Route{
			Client: netip.MustParseAddrPort("[2001:db8::a]:40000"),
			Target: netip.MustParseAddrPort("[2001:db8::14]:8080"), Op: RouteAdd,
		}, wantErr: ErrNeedV7},
		{name: "mixed families", r: Route{
			Client: add.Client, Target: netip.MustParseAddrPort("[2001:db8::14]:8080"), Op: RouteAdd,
		}, wantErr: errBadRoute},
		{name: "zero addr", r: Route{Target: add.Target, Op: RouteAdd}, wantErr: errBadRoute},
		{name: "bad op", r: Route{Client: add.Client, Target: add.Target, Op: 6}, wantErr: errBadRoute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dst := []byte{0xee}
			got, err := AppendRoute(dst, f6Combined, tc.r)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if err != nil {
				if !bytes.Equal(got, dst) {
					t.Errorf("dst changed on error: % x", got)
				}
				return
			}
			if !bytes.Equal(got[1:], tc.want) || got[0] != 0xee {
				t.Errorf("got % x, want ee % x", got, tc.want)
			}
		})
	}
}

func TestRouteReaderV6(t *testing.T) {
	add := fixture(t, "v6-client-add")
	del := append([]byte(nil), add...)
	del[7] = 2 // CLIENT_DEL
	unknown := append([]byte(nil), add...)
	unknown[7] = 3
	stream := cat(fixture(t, "v6-handshake"), add, unknown, del, fixture(t, "v6-handshake"))

	for _, rd := range readers(stream) {
		t.Run(rd.name, func(t *testing.T) {
			rr := NewRouteReader(rd.r)
			off, err := rr.ReadOffer()
			if err != nil {
				t.Fatal(err)
			}
			if off != (Offer{Type: 6, MaxVersion: Version6}) {
				t.Errorf("offer = %+v", off)
			}
			var got []Route
			for rr.Next() {
				if m := rr.Msg(); m.Kind != MsgRoute {
					t.Errorf("kind = %v", m.Kind)
				}
				got = append(got, rr.Msg().Route)
			}
			if err := rr.Err(); err != nil {
				t.Fatalf("Err = %v", err)
			}
			want := []Route{
				{Client: netip.MustParseAddrPort("192.0.2.10:40000"), Target: netip.MustParseAddrPort("203.0.113.20:8080"), Op: RouteAdd},
				{Client: netip.MustParseAddrPort("192.0.2.10:40000"), Target: netip.MustParseAddrPort("203.0.113.20:8080"), Op: RouteDel},
			}
			if len(got) != len(want) || got[0] != want[0] || got[1] != want[1] {
				t.Errorf("routes = %v, want %v", got, want)
			}
			// The unknown type 3 and the repeated handshake (type 6).
			if got := rr.Skipped(); got != 2 {
				t.Errorf("Skipped = %d, want 2", got)
			}
		})
	}
}

func TestRouteReaderHandshakeErrors(t *testing.T) {
	add := fixture(t, "v6-client-add")
	for _, tc := range []struct {
		name   string
		stream []byte
		want   error
	}{
		{"first message not a handshake", add, ErrFraming},
		{"empty", nil, io.ErrUnexpectedEOF},
		{"short handshake", fixture(t, "v6-handshake")[:8], io.ErrUnexpectedEOF},
		{"cut message", cat(fixture(t, "v6-handshake"), add[:5]), io.ErrUnexpectedEOF},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rr := NewRouteReader(bytes.NewReader(tc.stream))
			for rr.Next() {
				t.Errorf("unexpected message %+v", rr.Msg())
			}
			if !errors.Is(rr.Err(), tc.want) {
				t.Errorf("Err = %v, want %v", rr.Err(), tc.want)
			}
			if rr.Next() {
				t.Error("Next after error = true")
			}
		})
	}
}

// wantRec is what a decoded record must hold.
type wantRec struct {
	header     []byte
	payloadLen int
	prefix     []byte
	flags      RecordFlags
}

func checkRecord(t *testing.T, got Record, want wantRec) {
	t.Helper()
	if !bytes.Equal(got.Header, want.header) {
		t.Errorf("Header =\n% x\nwant\n% x", got.Header, want.header)
	}
	if got.PayloadLen != want.payloadLen {
		t.Errorf("PayloadLen = %d, want %d", got.PayloadLen, want.payloadLen)
	}
	if !bytes.Equal(got.Prefix, want.prefix) {
		t.Errorf("Prefix = %q, want %q", got.Prefix, want.prefix)
	}
	if got.Flags != want.flags {
		t.Errorf("Flags = %b, want %b", got.Flags, want.flags)
	}
	ip, tcp := got.IP(), got.TCP()
	if len(ip)+len(tcp) != len(got.Header) || len(tcp) != int(tcp[12]>>4)*4 {
		t.Errorf("IP/TCP split %d+%d of %d bytes, doff %d", len(ip), len(tcp), len(got.Header), tcp[12]>>4)
	}
	// Header length fields must agree with PayloadLen (version 6 invariant).
	if got.Header[0]>>4 == 4 && got.Captured == 0 {
		if n := int(be.Uint16(got.Header[2:])) - len(got.Header); n != got.PayloadLen {
			t.Errorf("tot_len - headers = %d, want PayloadLen %d", n, got.PayloadLen)
		}
		if c := be.Uint16(ip[ipv4ChecksumOff:]); c != ipChecksumFull(ip) {
			t.Errorf("IPv4 checksum %#04x, want %#04x", c, ipChecksumFull(ip))
		}
	}
}

func TestRecordReaderV6(t *testing.T) {
	httpPayload := []byte("HTTP/1.1 204 No Content\r\nServer: demo\r\n\r\n")
	for _, tc := range []struct {
		name   string
		f      Format
		stream []byte
		want   []wantRec
	}{
		{"plain syn-ack", f6Plain, fixture(t, "v6-record-synack"),
			[]wantRec{{header: synAckPkt(t)}}},
		{"combined 2", f6Combined, fixture(t, "v6-combined-2"),
			[]wantRec{{header: synAckPkt(t)}, {header: dataPkt(t), payloadLen: 512}}},
		{"combined 2 twice", f6Combined, cat(fixture(t, "v6-combined-2"), fixture(t, "v6-combined-2")),
			[]wantRec{{header: synAckPkt(t)}, {header: dataPkt(t), payloadLen: 512}, {header: synAckPkt(t)}, {header: dataPkt(t), payloadLen: 512}}},
		{"payload record", f6Payload, fixture(t, "v6-payload-record-http"),
			[]wantRec{{header: httpPkt(t)[:52], payloadLen: 41, prefix: httpPayload}}},
		{"payload record combined", f6CombPay, cat([]byte{0, 1}, fixture(t, "v6-payload-record-http")),
			[]wantRec{{header: httpPkt(t)[:52], payloadLen: 41, prefix: httpPayload}}},
		{"long options cut", f6Plain, fixture(t, "v6-record-long-options"),
			[]wantRec{{header: fixture(t, "v6-record-long-options-decoded"), flags: OptionsCut}}},
		{"ip options from C", f6Plain, fixture(t, "v6-record-ip-options-c"),
			[]wantRec{{header: fixture(t, "v6-record-ip-options-ours")[:52], payloadLen: 100, flags: IPOptionsDropped}}},
		{"ip options from us", f6Plain, fixture(t, "v6-record-ip-options-ours"),
			[]wantRec{{header: fixture(t, "v6-record-ip-options-ours")[:52], payloadLen: 100}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, rd := range readers(tc.stream) {
				t.Run(rd.name, func(t *testing.T) {
					rr := NewRecordReader(rd.r, tc.f)
					i := 0
					for rr.Next() {
						if i >= len(tc.want) {
							t.Fatalf("extra record %d", i)
						}
						checkRecord(t, rr.Record(), tc.want[i])
						i++
					}
					if err := rr.Err(); err != nil {
						t.Fatalf("Err = %v", err)
					}
					if i != len(tc.want) || rr.Skipped() != 0 {
						t.Errorf("got %d records, skipped %d; want %d, 0", i, rr.Skipped(), len(tc.want))
					}
				})
			}
		})
	}
}

// malformed returns a copy of the syn-ack record changed by fn.
func malformed(t *testing.T, fn func(b []byte)) []byte {
	b := append([]byte(nil), fixture(t, "v6-record-synack")...)
	fn(b)
	return b
}

func TestRecordReaderV6Skips(t *testing.T) {
	bad := map[string][]byte{
		"version 6":       malformed(t, func(b []byte) { b[0] = 0x65 }),
		"ihl 4":           malformed(t, func(b []byte) { b[0] = 0x44 }),
		"udp":             malformed(t, func(b []byte) { b[9] = 17 }),
		"doff 4":          malformed(t, func(b []byte) { b[32] = 0x40 }),
		"tot_len < hdrs":  malformed(t, func(b []byte) { b[2], b[3] = 0, 59 }),
		"all zero record": make([]byte, RecordSize),
	}
	good := fixture(t, "v6-record-synack")
	for name, rec := range bad {
		t.Run(name, func(t *testing.T) {
			stream := cat([]byte{0, 3}, good, rec, good)
			rr := NewRecordReader(bytes.NewReader(stream), f6Combined)
			n := 0
			for rr.Next() {
				checkRecord(t, rr.Record(), wantRec{header: synAckPkt(t)})
				n++
			}
			if rr.Err() != nil || n != 2 || rr.Skipped() != 1 {
				t.Errorf("got %d records, skipped %d, err %v; want 2, 1, nil", n, rr.Skipped(), rr.Err())
			}
		})
	}
}

func TestRecordReaderV6Errors(t *testing.T) {
	rec := fixture(t, "v6-record-synack")
	for _, tc := range []struct {
		name   string
		f      Format
		stream []byte
		n      int // records before the error
		want   error
	}{
		{"count 0", f6Combined, cat([]byte{0, 0}, rec), 0, ErrFraming},
		{"count 17", f6Combined, cat([]byte{0, 17}, rec), 0, ErrFraming},
		{"count 7 payload", f6CombPay, cat([]byte{0, 7}, make([]byte, 192)), 0, ErrFraming},
		{"count 0xffff", f6Combined, []byte{0xff, 0xff}, 0, ErrFraming},
		{"cut in count", f6Combined, cat([]byte{0, 1}, rec, []byte{0}), 1, io.ErrUnexpectedEOF},
		{"cut in frame", f6Combined, cat([]byte{0, 2}, rec), 1, io.ErrUnexpectedEOF},
		{"cut in record", f6Combined, cat([]byte{0, 1}, rec[:30]), 0, io.ErrUnexpectedEOF},
		{"plain cut", f6Plain, cat(rec, rec[:63]), 1, io.ErrUnexpectedEOF},
		{"clean eof", f6Combined, cat([]byte{0, 1}, rec), 1, nil},
		{"empty", f6Plain, nil, 0, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, rd := range readers(tc.stream) {
				t.Run(rd.name, func(t *testing.T) {
					rr := NewRecordReader(rd.r, tc.f)
					n := 0
					for rr.Next() {
						n++
					}
					if n != tc.n {
						t.Errorf("got %d records, want %d", n, tc.n)
					}
					if !errors.Is(rr.Err(), tc.want) || (tc.want == nil) != (rr.Err() == nil) {
						t.Errorf("Err = %v, want %v", rr.Err(), tc.want)
					}
					if rr.Next() {
						t.Error("Next after the end = true")
					}
				})
			}
		})
	}
}

func TestBatcherV6(t *testing.T) {
	httpPkt := httpPkt(t)
	for _, tc := range []struct {
		name string
		f    Format
		add  func(b *Batcher)
		want []byte
	}{
		{"syn-ack plain", f6Plain, func(b *Batcher) {
			b.Add(synAckPkt(t), 0, 0, nil)
		}, fixture(t, "v6-record-synack")},
		{"combined 2", f6Combined, func(b *Batcher) {
			b.Add(synAckPkt(t), 0, 123, nil)
			b.Add(dataPkt(t), 512, 456, bytes.Repeat([]byte{'a'}, 100)) // no room for a prefix in 64-byte records
		}, fixture(t, "v6-combined-2")},
		{"payload record", f6Payload, func(b *Batcher) {
			b.Add(httpPkt, 41, 0, httpPkt[52:])
		}, fixture(t, "v6-payload-record-http")},
		{"long options cut like C", f6Plain, func(b *Batcher) {
			b.Add(longOptPkt(t), 0, 0, nil)
		}, fixture(t, "v6-record-long-options")},
		{"ip options normalised", f6Plain, func(b *Batcher) {
			b.Add(ipOptPkt(t), 100, 0, nil)
		}, fixture(t, "v6-record-ip-options-ours")},
		{"whole packet passed", f6Plain, func(b *Batcher) {
			b.Add(httpPkt, 41, 0, nil) // payload bytes after the TCP header are ignored
		}, cat(httpPkt[:52], make([]byte, 12))},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBatcher(tc.f, 0)
			tc.add(b)
			if got := b.Bytes(); !bytes.Equal(got, tc.want) {
				t.Errorf("Bytes =\n% x\nwant\n% x", got, tc.want)
			}
			if b.Dropped() != 0 {
				t.Errorf("Dropped = %d", b.Dropped())
			}
		})
	}
}

func TestBatcherV6Payload(t *testing.T) {
	pkt := httpPkt(t)
	long := cat(pkt[:52], bytes.Repeat([]byte{'x'}, 129))
	for _, tc := range []struct {
		name       string
		hdr        []byte
		payloadLen int
		prefix     []byte
		want       []byte // record bytes from 52 on
	}{
		{"len 128 carried", pkt, 128, bytes.Repeat([]byte{'y'}, 128), bytes.Repeat([]byte{'y'}, 128)},
		{"len 129 not carried (C)", long, 129, long[52:], nil},
		{"short capture zero filled", pkt, 41, pkt[52:60], pkt[52:60]},
		{"no payload", pkt, 0, pkt[52:], nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBatcher(f6Payload, 1)
			b.Add(tc.hdr, tc.payloadLen, 0, tc.prefix)
			got := b.Bytes()
			if len(got) != PayloadRecordSize {
				t.Fatalf("len %d", len(got))
			}
			want := make([]byte, PayloadRecordSize-52)
			copy(want, tc.want)
			if !bytes.Equal(got[52:], want) {
				t.Errorf("payload area = %q, want %q", got[52:], want)
			}
		})
	}

	// doff 15 with payload: C writes 20+60+len bytes into a 192-byte
	// record; we keep what fits (112 bytes) and the decoder returns it.
	lp := longOptPkt(t)
	lp[3] = 80 + 128 // tot_len
	lp[10], lp[11] = 0, 0
	be.PutUint16(lp[10:], ipChecksumFull(lp[:20]))
	payload := bytes.Repeat([]byte{'z'}, 128)
	b := NewBatcher(f6Payload, 1)
	b.Add(lp, 128, 0, payload)
	rr := NewRecordReader(bytes.NewReader(b.Bytes()), f6Payload)
	if !rr.Next() {
		t.Fatalf("no record: %v", rr.Err())
	}
	r := rr.Record()
	if r.PayloadLen != 128 || r.Flags != OptionsCut || !bytes.Equal(r.Prefix, payload[:192-80]) {
		t.Errorf("got PayloadLen %d Flags %b Prefix %d bytes; want 128, OptionsCut, 112", r.PayloadLen, r.Flags, len(r.Prefix))
	}
}

func TestBatcherV6Drops(t *testing.T) {
	b := NewBatcher(f6Combined, 0)
	for name, add := range map[string]func() bool{
		"ipv6":             func() bool { return b.Add(ipv6SynAckPkt(t), 0, 0, nil) },
		"short":            func() bool { return b.Add(synAckPkt(t)[:39], 0, 0, nil) },
		"negative payload": func() bool { return b.Add(synAckPkt(t), -1, 0, nil) },
		"tot_len overflow": func() bool { return b.Add(synAckPkt(t), 65536-60, 0, nil) },
		"udp":              func() bool { p := synAckPkt(t); p[9] = 17; return b.Add(p, 0, 0, nil) },
		"fragment":         func() bool { p := synAckPkt(t); p[7] = 8; return b.Add(p, 0, 0, nil) },
		"nil":              func() bool { return b.Add(nil, 0, 0, nil) },
	} {
		before := b.Dropped()
		if !add() || b.Dropped() != before+1 {
			t.Errorf("%s: not dropped and counted", name)
		}
	}
	if b.Len() != 0 || b.Bytes() != nil {
		t.Errorf("batch not empty: %d records", b.Len())
	}
	// The largest tot_len still fits.
	if !b.Add(synAckPkt(t), 65535-60, 0, nil) || b.Len() != 1 {
		t.Error("tot_len 65535 rejected")
	}
}

func TestBatcherLimits(t *testing.T) {
	for _, tc := range []struct {
		f     Format
		limit int
		want  int
	}{
		{f6Combined, 0, MaxCombined},
		{f6Combined, 3, 3},
		{f6Combined, 99, MaxCombined},
		{f6CombPay, 0, MaxCombinedPayload},
		{f6Plain, 0, MaxCombined},
	} {
		b := NewBatcher(tc.f, tc.limit)
		if b.Limit() != tc.want {
			t.Errorf("%v limit %d: Limit = %d, want %d", tc.f, tc.limit, b.Limit(), tc.want)
		}
		for i := range tc.want {
			if b.Full() {
				t.Fatalf("%v: Full after %d", tc.f, i)
			}
			if !b.Add(synAckPkt(t), 0, 0, nil) {
				t.Fatalf("%v: Add %d = false", tc.f, i)
			}
		}
		if !b.Full() || b.Add(synAckPkt(t), 0, 0, nil) {
			t.Errorf("%v: not full after %d records", tc.f, tc.want)
		}
		// The full batch decodes to Limit records.
		rr := NewRecordReader(bytes.NewReader(b.Bytes()), tc.f)
		n := 0
		for rr.Next() {
			n++
		}
		if n != tc.want || rr.Err() != nil {
			t.Errorf("%v: decoded %d records (err %v), want %d", tc.f, n, rr.Err(), tc.want)
		}
		b.Reset()
		if b.Len() != 0 || b.Bytes() != nil || !b.Add(synAckPkt(t), 0, 0, nil) {
			t.Errorf("%v: Reset did not empty the batch", tc.f)
		}
	}
}

// TestRoundTripV6 encodes captured packets for a C peer and decodes them:
// the header fields and the payload length survive.
func TestRoundTripV6(t *testing.T) {
	for _, tc := range []struct {
		name       string
		pkt        []byte
		payloadLen int
		want       []byte // decoded header
		flags      RecordFlags
	}{
		{"syn-ack", synAckPkt(t), 0, synAckPkt(t), 0},
		{"data", dataPkt(t), 512, dataPkt(t), 0},
		{"long options", longOptPkt(t), 0, fixture(t, "v6-record-long-options-decoded"), OptionsCut},
		// Our encoder already normalised the IP options: no flag on decode.
		{"ip options", ipOptPkt(t), 100, fixture(t, "v6-record-ip-options-ours")[:52], 0},
	} {
		for _, f := range []Format{f6Plain, f6Combined, f6Payload, f6CombPay} {
			t.Run(tc.name+"/"+f.String(), func(t *testing.T) {
				b := NewBatcher(f, 0)
				b.Add(tc.pkt, tc.payloadLen, 0, nil)
				b.Add(tc.pkt, tc.payloadLen, 0, nil)
				rr := NewRecordReader(bytes.NewReader(b.Bytes()), f)
				n := 0
				for rr.Next() {
					var prefix []byte
					if f.Payload && tc.payloadLen > 0 && tc.payloadLen <= 128 {
						prefix = make([]byte, tc.payloadLen) // no prefix given: zeros
					}
					checkRecord(t, rr.Record(), wantRec{header: tc.want, payloadLen: tc.payloadLen, prefix: prefix, flags: tc.flags})
					n++
				}
				if n != 2 || rr.Err() != nil {
					t.Errorf("decoded %d records, err %v", n, rr.Err())
				}
			})
		}
	}
}

// readers returns several readers over the same bytes: all at once, one
// byte per Read, and with the last data returned together with io.EOF.
func readers(b []byte) []struct {
	name string
	r    io.Reader
} {
	return []struct {
		name string
		r    io.Reader
	}{
		{"whole", bytes.NewReader(b)},
		{"one-byte", iotest.OneByteReader(bytes.NewReader(b))},
		{"data-err", iotest.DataErrReader(bytes.NewReader(b))},
		{"half", iotest.HalfReader(bytes.NewReader(b))},
	}
}

// TestRouteReaderRejects checks, for both versions, which route messages
// are delivered and which are skipped: the whole 16-bit version-6 type
// counts (a reader that looked at its low byte only installed routes for
// 0x0101, 0x0201, ...), and routes no copied connection can have are
// skipped.
func TestRouteReaderRejects(t *testing.T) {
	v6msg := func(typ uint16, client, target string) []byte {
		m := fixture(t, "v6-client-add")
		c, tg := netip.MustParseAddrPort(client), netip.MustParseAddrPort(target)
		c4, t4 := c.Addr().As4(), tg.Addr().As4()
		copy(m[0:], c4[:])
		be.PutUint16(m[4:], c.Port())
		be.PutUint16(m[6:], typ)
		copy(m[8:], t4[:])
		be.PutUint16(m[12:], tg.Port())
		return m
	}
	v7msg := func(typ byte, family byte, client, target string) []byte {
		c, tg := netip.MustParseAddrPort(client), netip.MustParseAddrPort(target)
		var m []byte
		if family == 4 {
			m = make([]byte, 18)
			c4, t4 := c.Addr().As4(), tg.Addr().As4()
			copy(m[10:], c4[:])
			copy(m[14:], t4[:])
		} else {
			m = make([]byte, 42)
			c16, t16 := c.Addr().As16(), tg.Addr().As16()
			copy(m[10:], c16[:])
			copy(m[26:], t16[:])
		}
		be.PutUint16(m, uint16(len(m)))
		m[2], m[4] = typ, family
		be.PutUint16(m[6:], c.Port())
		be.PutUint16(m[8:], tg.Port())
		return m
	}
	const cl, tg = "192.0.2.10:40000", "203.0.113.20:8080"
	const cl6, tg6 = "[2001:db8::a]:40000", "[2001:db8::14]:8080"
	tests := []struct {
		name string
		v7   bool
		msg  []byte
		want RouteOp // 0: skipped
	}{
		{"v6 type 1 add", false, v6msg(0x0001, cl, tg), RouteAdd},
		{"v6 type 2 del", false, v6msg(0x0002, cl, tg), RouteDel},
		{"v6 type 0x0101", false, v6msg(0x0101, cl, tg), 0},
		{"v6 type 0x0201", false, v6msg(0x0201, cl, tg), 0},
		{"v6 type 0x0102", false, v6msg(0x0102, cl, tg), 0},
		{"v6 type 0xff01", false, v6msg(0xff01, cl, tg), 0},
		{"v6 type 0x0100", false, v6msg(0x0100, cl, tg), 0},
		{"v6 type 3", false, v6msg(3, cl, tg), 0},
		{"v6 handshake again", false, v6msg(6, "0.0.0.0:0", "0.0.0.0:0"), 0},
		{"v6 client 0.0.0.0:0", false, v6msg(1, "0.0.0.0:0", tg), 0},
		{"v6 client 0.0.0.0", false, v6msg(1, "0.0.0.0:40000", tg), 0},
		{"v6 client port 0", false, v6msg(1, "192.0.2.10:0", tg), 0},
		{"v6 target port 0", false, v6msg(1, cl, "203.0.113.20:0"), 0},
		{"v6 target broadcast", false, v6msg(1, cl, "255.255.255.255:8080"), 0},
		{"v6 client broadcast", false, v6msg(1, "255.255.255.255:40000", tg), 0},
		{"v6 target multicast", false, v6msg(1, cl, "224.0.0.1:8080"), 0},
		{"v6 client in 0/8", false, v6msg(1, "0.1.2.3:40000", tg), 0},
		{"v6 loopback kept (C target_localhost)", false, v6msg(1, "127.0.0.1:40000", "127.0.0.1:8080"), RouteAdd},
		{"v7 add", true, v7msg(1, 4, cl, tg), RouteAdd},
		{"v7 del ipv6", true, v7msg(2, 6, cl6, tg6), RouteDel},
		{"v7 client 0.0.0.0:0", true, v7msg(1, 4, "0.0.0.0:0", tg), 0},
		{"v7 target broadcast", true, v7msg(1, 4, cl, "255.255.255.255:8080"), 0},
		{"v7 target port 0", true, v7msg(1, 4, cl, "203.0.113.20:0"), 0},
		{"v7 client ::", true, v7msg(1, 6, "[::]:40000", tg6), 0},
		{"v7 target multicast ff02::1", true, v7msg(1, 6, cl6, "[ff02::1]:8080"), 0},
		{"v7 4in6-mapped in family 6", true, v7msg(1, 6, "[::ffff:192.0.2.10]:40000", "[::ffff:203.0.113.20]:8080"), 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rr := NewRouteReader(bytes.NewReader(cat(AppendOffer(nil, tt.v7), tt.msg)))
			if _, err := rr.ReadOffer(); err != nil {
				t.Fatal(err)
			}
			if tt.v7 {
				rr.SetVersion(Version7)
			}
			got := RouteOp(0)
			if rr.Next() {
				got = rr.Msg().Route.Op
				if !rr.Msg().Route.Routable() {
					t.Errorf("delivered a route that is not routable: %+v", rr.Msg().Route)
				}
			}
			if rr.Next() || rr.Err() != nil {
				t.Fatalf("extra message or error: %v", rr.Err())
			}
			if got != tt.want {
				t.Errorf("op = %v, want %v", got, tt.want)
			}
			wantSkipped := uint64(0)
			if tt.want == 0 {
				wantSkipped = 1
			}
			if rr.Skipped() != wantSkipped {
				t.Errorf("Skipped = %d, want %d", rr.Skipped(), wantSkipped)
			}
		})
	}
}
