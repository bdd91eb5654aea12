package wire

import (
	"bytes"
	"errors"
	"net/netip"
	"testing"
)

// UDP answers (docs/protocol.md §4.7): the fixtures' packets, as intercept
// captures them.

// udp4Pkt is the DNS answer of v7-record-udp-ipv4, whole: IPv4 + UDP +
// the 43-byte payload.
func udp4Pkt(t testing.TB) []byte {
	r := fixture(t, "v7-record-udp-ipv4")
	return cat(r[20:20+28], dnsAnswer)
}

// udp6Pkt is the same answer over IPv6 (v7-record-udp-ipv6), whole.
func udp6Pkt(t testing.TB) []byte {
	r := fixture(t, "v7-record-udp-ipv6")
	return cat(r[20:20+48], dnsAnswer)
}

// dnsAnswer is the payload of the UDP fixtures: the answer (ID 0x1234) to
// "a.example A", 192.0.2.1, TTL 60.
var dnsAnswer = []byte{
	0x12, 0x34, 0x81, 0x80, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00,
	0x01, 'a', 0x07, 'e', 'x', 'a', 'm', 'p', 'l', 'e', 0x00, 0x00, 0x01, 0x00, 0x01,
	0xc0, 0x0c, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x00, 0x3c, 0x00, 0x04, 192, 0, 2, 1,
}

var routeUDP = Route{
	Client: netip.MustParseAddrPort("192.0.2.10:40000"),
	Target: netip.MustParseAddrPort("203.0.113.20:5353"),
	Op:     RouteAdd, UDP: true,
}

// TestUDPChecksums checks that the UDP fixtures are real datagrams: valid
// IPv4 header checksum and UDP checksums over the payload.
func TestUDPChecksums(t *testing.T) {
	for _, tc := range []struct {
		name string
		pkt  []byte
	}{{"ipv4", udp4Pkt(t)}, {"ipv6", udp6Pkt(t)}} {
		t.Run(tc.name, func(t *testing.T) {
			c, ok := parseCaptured(tc.pkt)
			if !ok || !c.udp || c.tcpLen != udpLen {
				t.Fatalf("parseCaptured = %+v, %v; want a UDP datagram", c, ok)
			}
			seg := tc.pkt[c.tcpOff:]
			var pseudo []byte
			if c.v6 {
				pseudo = cat(tc.pkt[8:40], be.AppendUint32(nil, uint32(len(seg))), []byte{0, 0, 0, protoUDP})
			} else {
				ip := tc.pkt[:c.ipLen]
				if got, want := be.Uint16(ip[ipv4ChecksumOff:]), ipChecksumFull(ip); got != want {
					t.Errorf("IPv4 header checksum %#04x, want %#04x", got, want)
				}
				pseudo = cat(ip[12:20], []byte{0, protoUDP}, be.AppendUint16(nil, uint16(len(seg))))
			}
			if sum := onesSum(cat(pseudo, seg)); sum != 0xffff {
				t.Errorf("UDP checksum invalid (sum %#04x)", sum)
			}
		})
	}
}

func TestUDPHello(t *testing.T) {
	f := Format{Version: Version7, PrefixLen: 128, Compare: 16384, UDP: true}
	if got, want := AppendHello(nil, f), fixture(t, "hello-v7-udp"); !bytes.Equal(got, want) {
		t.Errorf("AppendHello:\n got % x\nwant % x", got, want)
	}
	got, err := ParseHello(fixture(t, "hello-v7-udp"))
	if err != nil || got != f {
		t.Errorf("ParseHello = %+v, %v; want %+v", got, err, f)
	}
	// An older intercept's Hello has no UDP flag: no UDP routes for it.
	if got, _ := ParseHello(fixture(t, "hello-v7-compare")); got.UDP {
		t.Errorf("hello-v7-compare parsed with UDP")
	}
	if err := (Format{Version: Version6, UDP: true}).Validate(); err == nil {
		t.Errorf("version 6 with UDP validated")
	}
}

func TestUDPRoute(t *testing.T) {
	f7u := Format{Version: Version7, UDP: true}
	for _, tc := range []struct {
		name    string
		f       Format
		r       Route
		want    []byte
		wantErr error
	}{
		{"v7 udp", f7u, routeUDP, fixture(t, "v7-route-add-udp"), nil},
		{"v7 udp mapped", f7u, Route{Client: netip.MustParseAddrPort("[::ffff:192.0.2.10]:40000"), Target: routeUDP.Target, Op: RouteAdd, UDP: true}, fixture(t, "v7-route-add-udp"), nil},
		// Gating: an intercept that did not announce UDP never gets one.
		{"v7 without udp in hello", f7, routeUDP, nil, ErrNeedUDP},
		{"v6", f6Combined, routeUDP, nil, ErrNeedUDP},
		{"v6 tcp still fine", f6Combined, Route{Client: routeUDP.Client, Target: routeUDP.Target, Op: RouteAdd}, nil, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := AppendRoute([]byte{0xee}, tc.f, tc.r)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("err = %v, want %v", err, tc.wantErr)
			}
			if tc.wantErr != nil {
				if !bytes.Equal(got, []byte{0xee}) {
					t.Errorf("dst changed on error: % x", got)
				}
				return
			}
			if tc.want != nil && !bytes.Equal(got[1:], tc.want) {
				t.Errorf("got % x\nwant % x", got[1:], tc.want)
			}
		})
	}
	// Decoding: the flag gives a UDP route, its absence a TCP one with the
	// same addresses, which a table keyed by protocol keeps apart.
	tcp := cat(fixture(t, "v7-route-add-udp"))
	tcp[msgFlagOff] = 0
	got := routesOf(t, cat(fixture(t, "v7-offer"), fixture(t, "v7-route-add-udp"), tcp))
	want := []Route{routeUDP, {Client: routeUDP.Client, Target: routeUDP.Target, Op: RouteAdd}}
	if len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Errorf("decoded %+v, want %+v", got, want)
	}
}

// routesOf decodes the version-7 route messages after an offer.
func routesOf(t *testing.T, b []byte) []Route {
	t.Helper()
	rr := NewRouteReader(bytes.NewReader(b))
	if _, err := rr.ReadOffer(); err != nil {
		t.Fatal(err)
	}
	rr.SetVersion(Version7)
	var out []Route
	for rr.Next() {
		out = append(out, rr.Msg().Route)
	}
	if rr.Err() != nil || rr.Skipped() != 0 {
		t.Fatalf("err %v, skipped %d", rr.Err(), rr.Skipped())
	}
	return out
}

func TestUDPRecordEncode(t *testing.T) {
	for _, tc := range []struct {
		name   string
		f      Format
		pkt    []byte
		prefix []byte
		hashed bool
		want   []byte // nil: dropped
	}{
		{"ipv4 hashed", Format{Version: Version7, Compare: 16, UDP: true}, udp4Pkt(t), dnsAnswer, true, fixture(t, "v7-record-udp-ipv4")},
		{"ipv6", Format{Version: Version7, UDP: true}, udp6Pkt(t), dnsAnswer, false, fixture(t, "v7-record-udp-ipv6")},
		{"v7 without udp", Format{Version: Version7, Compare: 16}, udp4Pkt(t), dnsAnswer, true, nil},
		{"v6", f6CombPay, udp4Pkt(t), dnsAnswer, false, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := NewBatcher(tc.f, 0)
			ts := int64(1700000000124456789)
			if tc.pkt[0]>>4 == 6 {
				ts = 1700000000123456789
			}
			if !b.AddHashed(tc.pkt, len(dnsAnswer), ts, tc.prefix, 0x105b59e9bde1e5e9, tc.hashed) {
				t.Fatal("AddHashed = false on an empty batch")
			}
			if tc.want == nil {
				if b.Len() != 0 || b.Dropped() != 1 {
					t.Errorf("len %d dropped %d, want the datagram dropped", b.Len(), b.Dropped())
				}
				return
			}
			if got := b.Bytes(); !bytes.Equal(got, tc.want) {
				t.Errorf("got % x\nwant % x", got, tc.want)
			}
		})
	}
}

func TestUDPRecordDecode(t *testing.T) {
	f := Format{Version: Version7, Compare: 16, UDP: true}
	rr := NewRecordReader(bytes.NewReader(cat(fixture(t, "v7-record-udp-ipv4"), fixture(t, "v7-record-udp-ipv6"))), f)
	var recs []Record
	for rr.Next() {
		r := rr.Record()
		r.Header, r.Prefix = cat(r.Header), cat(r.Prefix)
		recs = append(recs, r)
	}
	if rr.Err() != nil || rr.Skipped() != 0 || len(recs) != 2 {
		t.Fatalf("%d records, err %v, skipped %d", len(recs), rr.Err(), rr.Skipped())
	}
	r := recs[0]
	if !r.UDP() || r.PayloadLen != 43 || !bytes.Equal(r.Prefix, dnsAnswer[:16]) || !r.Hashed || r.Hash != 0x105b59e9bde1e5e9 ||
		!bytes.Equal(r.TCP(), udp4Pkt(t)[20:28]) || len(r.IP()) != 20 {
		t.Errorf("ipv4 record %+v", r)
	}
	r = recs[1]
	if !r.UDP() || r.PayloadLen != 43 || len(r.Prefix) != 0 || r.Hashed || len(r.IP()) != 40 || len(r.TCP()) != 8 {
		t.Errorf("ipv6 record %+v", r)
	}
}

// TestUDPRecordOldReader shows what a reader that knows nothing of UDP
// records does with one: it ignores the unknown flag, finds no TCP header
// (the protocol byte says 17) and skips the record, counted. A UDP header
// under a record flagged UDP must be exactly 8 bytes; a TCP header under
// the flag is skipped too.
func TestUDPRecordOldReader(t *testing.T) {
	noFlag := cat(fixture(t, "v7-record-udp-ipv6"))
	noFlag[msgFlagOff] &^= rec7FlagUDP
	tcpFlagged := cat(fixture(t, "v7-record-ipv6-synack"))
	tcpFlagged[msgFlagOff] |= rec7FlagUDP
	long := cat(fixture(t, "v7-record-udp-ipv6"), []byte{0, 0, 0, 0})
	long[1] += 4
	long[0x11] += 4 // header length 52: a UDP header and 4 more bytes
	rr := NewRecordReader(bytes.NewReader(cat(noFlag, tcpFlagged, long, fixture(t, "v7-record-ipv6-synack"))), Format{Version: Version7, UDP: true})
	n := 0
	for rr.Next() {
		if rec := rr.Record(); rec.UDP() {
			t.Errorf("a malformed UDP record decoded")
		}
		n++
	}
	if rr.Err() != nil || n != 1 || rr.Skipped() != 3 {
		t.Errorf("%d records, skipped %d, err %v; want 1, 3, nil", n, rr.Skipped(), rr.Err())
	}
}
