package wire

import (
	"net/netip"
	"testing"
)

// loopReader returns head once, then body over and over, in chunks of at
// most chunk bytes (0: as much as fits). It never allocates.
type loopReader struct {
	head, body []byte
	off        int
	chunk      int
}

func (l *loopReader) Read(p []byte) (int, error) {
	if l.chunk > 0 && len(p) > l.chunk {
		p = p[:l.chunk]
	}
	if len(l.head) > 0 {
		n := copy(p, l.head)
		l.head = l.head[n:]
		return n, nil
	}
	total := 0
	for len(p) > 0 {
		n := copy(p, l.body[l.off:])
		l.off = (l.off + n) % len(l.body)
		p = p[n:]
		total += n
	}
	return total, nil
}

var (
	route4 = Route{Client: netip.MustParseAddrPort("192.0.2.10:40000"), Target: netip.MustParseAddrPort("203.0.113.20:8080"), Op: RouteAdd}
	route6 = Route{Client: netip.MustParseAddrPort("[2001:db8::a]:40000"), Target: netip.MustParseAddrPort("[2001:db8::14]:8080"), Op: RouteAdd}
)

func TestAllocs(t *testing.T) {
	buf := make([]byte, 0, 256)
	syn, pay := synAckPkt(t), httpPkt(t)
	v6ext := ipv6ExtPkt(t)
	hello := fixture(t, "hello-v7")
	b6 := NewBatcher(f6Combined, 0)
	bp := NewBatcher(f6CombPay, 0)
	b7 := NewBatcher(f7, 0)
	f7u := Format{Version: Version7, Compare: 64, UDP: true}
	b7u := NewBatcher(f7u, 0)
	udp4 := udp4Pkt(t)
	routeU := Route{Client: route4.Client, Target: route4.Target, Op: RouteAdd, UDP: true}

	for _, tc := range []struct {
		name string
		fn   func()
	}{
		{"AppendOffer", func() { AppendOffer(buf[:0], true) }},
		{"AppendRoute v6", func() { AppendRoute(buf[:0], f6Combined, route4) }},
		{"AppendRoute v7 ipv6", func() { AppendRoute(buf[:0], f7, route6) }},
		{"AppendRoute error", func() { AppendRoute(buf[:0], f6Combined, route6) }},
		{"AppendRoute v7 udp", func() { AppendRoute(buf[:0], f7u, routeU) }},
		{"AppendRoute udp refused", func() { AppendRoute(buf[:0], f7, routeU) }},
		{"AppendConfig", func() { AppendConfig(buf[:0], Config{PrefixLen: 64}) }},
		{"AppendHello", func() { AppendHello(buf[:0], f7) }},
		{"ClassifyServerBytes", func() { ClassifyServerBytes(hello) }},
		{"ParseHello", func() { ParseHello(hello) }},
		{"Batcher v6 combined", func() {
			if !b6.Add(syn, 0, 0, nil) {
				b6.Reset()
			}
			_ = b6.Bytes()
		}},
		{"Batcher v6 payload", func() {
			if !bp.Add(pay, 41, 0, pay[52:]) {
				bp.Reset()
			}
		}},
		{"Batcher v7 udp", func() {
			if !b7u.AddHashed(udp4, 43, 1, udp4[28:], 7, true) {
				b7u.Reset()
			}
		}},
		{"Batcher v7", func() {
			if !b7.Add(v6ext, 41, 1, pay[52:]) {
				b7.Reset()
			}
		}},
	} {
		if n := testing.AllocsPerRun(100, tc.fn); n != 0 {
			t.Errorf("%s: %v allocs, want 0", tc.name, n)
		}
	}

	recReaders := map[string]*RecordReader{
		"v6 combined": NewRecordReader(&loopReader{body: fixture(t, "v6-combined-2")}, f6Combined),
		"v6 payload":  NewRecordReader(&loopReader{body: fixture(t, "v6-payload-record-http"), chunk: 7}, f6Payload),
		"v6 normalise": NewRecordReader(&loopReader{body: cat(fixture(t, "v6-record-ip-options-c"),
			fixture(t, "v6-record-long-options"))}, f6Plain),
		"v7": NewRecordReader(&loopReader{body: cat(fixture(t, "v7-record-ipv6-synack"),
			fixture(t, "v7-record-ipv4-options-prefix"))}, f7),
		"v7 udp": NewRecordReader(&loopReader{body: cat(fixture(t, "v7-record-udp-ipv4"),
			fixture(t, "v7-record-udp-ipv6"))}, f7u),
		"v7 after hello": func() *RecordReader {
			rr := NewRecordReader(&loopReader{head: hello, body: fixture(t, "v7-record-ipv6-synack")}, f6Combined)
			if _, err := rr.ReadHello(); err != nil {
				t.Fatal(err)
			}
			return rr
		}(),
	}
	for name, rr := range recReaders {
		n := testing.AllocsPerRun(1000, func() {
			if !rr.Next() {
				t.Fatalf("%s: Next = false: %v", name, rr.Err())
			}
			_ = rr.Record()
		})
		if n != 0 {
			t.Errorf("RecordReader %s: %v allocs per Next, want 0", name, n)
		}
	}

	r7, _ := AppendRoute(nil, f7, route6)
	r7 = append(r7, AppendConfig(nil, Config{PrefixLen: 1})...)
	r7 = append(r7, fixture(t, "v7-route-add-udp")...)
	routeReaders := map[string]*RouteReader{
		"v6": NewRouteReader(&loopReader{head: fixture(t, "v6-handshake"), body: fixture(t, "v6-client-add")}),
		"v7": func() *RouteReader {
			rr := NewRouteReader(&loopReader{head: fixture(t, "v7-offer"), body: r7, chunk: 5})
			rr.ReadOffer()
			rr.SetVersion(Version7)
			return rr
		}(),
	}
	for name, rr := range routeReaders {
		n := testing.AllocsPerRun(1000, func() {
			if !rr.Next() {
				t.Fatalf("%s: Next = false: %v", name, rr.Err())
			}
			_ = rr.Msg()
		})
		if n != 0 {
			t.Errorf("RouteReader %s: %v allocs per Next, want 0", name, n)
		}
	}
}

func BenchmarkBatcherAdd(b *testing.B) {
	syn, pay := synAckPkt(b), httpPkt(b)
	for _, bc := range []struct {
		name string
		f    Format
		pkt  []byte
		plen int
	}{
		{"v6-combined", f6Combined, syn, 0},
		{"v6-payload", f6CombPay, pay, 41},
		{"v7-ipv4-prefix", f7, pay, 41},
		{"v7-ipv6-ext", f7, ipv6ExtPkt(b), 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			bt := NewBatcher(bc.f, 0)
			b.ReportAllocs()
			for b.Loop() {
				if !bt.Add(bc.pkt, bc.plen, 1, bc.pkt[52:]) {
					bt.Reset()
				}
			}
		})
	}
}

func BenchmarkRecordReader(b *testing.B) {
	for _, bc := range []struct {
		name   string
		f      Format
		stream []byte
		recs   int
	}{
		{"v6-combined", f6Combined, fixture(b, "v6-combined-2"), 2},
		{"v6-normalise", f6Plain, fixture(b, "v6-record-ip-options-c"), 1},
		{"v7", f7, cat(fixture(b, "v7-record-ipv6-synack"), fixture(b, "v7-record-ipv4-options-prefix")), 2},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rr := NewRecordReader(&loopReader{body: bc.stream}, bc.f)
			b.SetBytes(int64(len(bc.stream) / bc.recs))
			b.ReportAllocs()
			for b.Loop() {
				if !rr.Next() {
					b.Fatal(rr.Err())
				}
			}
		})
	}
}

func BenchmarkAppendRoute(b *testing.B) {
	buf := make([]byte, 0, 64)
	for _, bc := range []struct {
		name string
		f    Format
		r    Route
	}{
		{"v6", f6Combined, route4},
		{"v7-ipv6", f7, route6},
	} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				buf, _ = AppendRoute(buf[:0], bc.f, bc.r)
			}
		})
	}
}

func BenchmarkRouteReader(b *testing.B) {
	r7, _ := AppendRoute(nil, f7, route6)
	for _, bc := range []struct {
		name string
		head []byte
		body []byte
		v    uint8
	}{
		{"v6", fixture(b, "v6-handshake"), fixture(b, "v6-client-add"), Version6},
		{"v7-ipv6", fixture(b, "v7-offer"), r7, Version7},
	} {
		b.Run(bc.name, func(b *testing.B) {
			rr := NewRouteReader(&loopReader{head: bc.head, body: bc.body})
			rr.ReadOffer()
			rr.SetVersion(bc.v)
			b.SetBytes(int64(len(bc.body)))
			b.ReportAllocs()
			for b.Loop() {
				if !rr.Next() {
					b.Fatal(rr.Err())
				}
			}
		})
	}
}
