package ipfrag

import (
	"bytes"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

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

// Fragments of real datagrams, as Linux sends them.
var (
	// The second (last) fragment of a 1508-byte IPv4 UDP datagram.
	frag4Last = unhex(`
		45 00 00 1c   | IPv4, IHL 5, total length 28
		ab cd 00 b9   | ID 0xabcd, flags 0, offset 185*8 = 1480
		40 11 00 00   | TTL 64, UDP, checksum (not looked at)
		c0 00 02 0a   | 192.0.2.10
		c0 00 02 01   | 192.0.2.1
		01 02 03 04 05 06 07 08 | 8 data bytes`)
	// The first fragment of an IPv6 UDP datagram behind a Hop-by-Hop
	// header.
	frag6First = unhex(`
		60 00 00 00   | IPv6
		00 20 00 40   | payload length 32, next header Hop-by-Hop, hop limit 64
		20 01 0d b8 00 01 00 00 00 00 00 00 00 00 00 10 | 2001:db8:1::10
		20 01 0d b8 00 01 00 00 00 00 00 00 00 00 00 01 | 2001:db8:1::1
		2c 00 01 04 00 00 00 00 | Hop-by-Hop: next header Fragment, PadN(4)
		11 00 00 01   | Fragment: next header UDP, offset 0, M
		de ad be ef   | identification 0xdeadbeef
		9c 40 00 35 05 dc 00 00 | UDP 40000 -> 53, length 1500 (the whole datagram's)
		00 00 00 00 00 00 00 00 | 8 data bytes`)
)

func TestDecode(t *testing.T) {
	whole4 := udp4(100)
	df4 := udp4(100)
	df4[6] = 0x40 // DF only
	mid4 := append([]byte(nil), frag4Last...)
	mid4[6] |= 0x20 // MF
	tests := []struct {
		name string
		b    []byte
		want Kind
		f    Fragment
	}{
		{"empty", nil, NotFragment, Fragment{}},
		{"v4 whole", whole4, NotFragment, Fragment{}},
		{"v4 DF", df4, NotFragment, Fragment{}},
		{"v4 last fragment", frag4Last, IsFragment, Fragment{
			Version: 4, Src: client4, Dst: server4, ID: 0xabcd, Proto: 17, Offset: 1480, DataOff: 20, DataLen: 8,
		}},
		{"v4 middle fragment", mid4, IsFragment, Fragment{
			Version: 4, Src: client4, Dst: server4, ID: 0xabcd, Proto: 17, Offset: 1480, More: true, DataOff: 20, DataLen: 8,
		}},
		{"v4 cut by snap length", frag4Last[:24], Truncated, Fragment{
			Version: 4, Src: client4, Dst: server4, ID: 0xabcd, Proto: 17, Offset: 1480, DataOff: 20, DataLen: 8,
		}},
		{"v4 IHL 4", append([]byte{0x44}, frag4Last[1:]...), Malformed, Fragment{}},
		{"v4 total below header", append([]byte{0x45, 0, 0, 10}, frag4Last[4:]...), Malformed, Fragment{}},
		{"v6 first fragment after hop-by-hop", frag6First, IsFragment, Fragment{
			Version: 6, Src: client6, Dst: server6, ID: 0xdeadbeef, Proto: 17, Offset: 0, More: true,
			DataOff: 56, DataLen: 16, FragHeaderOff: 48, NextHeaderOff: 40,
		}},
		{"v6 cut", frag6First[:60], Truncated, Fragment{
			Version: 6, Src: client6, Dst: server6, ID: 0xdeadbeef, Proto: 17, Offset: 0, More: true,
			DataOff: 56, DataLen: 16, FragHeaderOff: 48, NextHeaderOff: 40,
		}},
		{"v6 fragment header cut", frag6First[:52], NotFragment, Fragment{}},
		{"v6 whole", udp6(10), NotFragment, Fragment{}},
		{"v6 atomic fragment", atomic6(), NotFragment, Fragment{}},
		{"v6 jumbogram", append(append([]byte(nil), frag6First[:4]...), append([]byte{0, 0}, frag6First[6:]...)...), NotFragment, Fragment{}},
		{"not IP", []byte{0x20, 0, 0, 0}, NotFragment, Fragment{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var f Fragment
			if got := f.Decode(tt.b); got != tt.want {
				t.Fatalf("Decode = %v, want %v", got, tt.want)
			}
			if tt.want == Malformed {
				f = Fragment{}
			}
			if f != tt.f {
				t.Errorf("got %+v\nwant %+v", f, tt.f)
			}
		})
	}
}

// atomic6 is a whole IPv6 UDP datagram with a Fragment header of offset
// 0 without M (RFC 6946).
func atomic6() []byte {
	b := udp6(16, ext{protoFragment, []byte{0, 0, 0, 0, 1, 2, 3, 4}})
	return b
}

// TestRoundTrip fragments datagrams of many sizes to many MTUs and puts
// the fragments back together in several orders, with duplicates: the
// result is the datagram.
func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dgrams := map[string][]byte{
		"v4 small":            udp4(100),
		"v4 1473":             udp4(1473),
		"v4 4000":             udp4(4000),
		"v4 max":              udp4(65535 - 28),
		"v4 options":          udp4(3000, 0x94, 4, 0, 0, 0x07, 7, 4, 0, 0, 0, 0, 1), // router alert (copied), record route (not)
		"v6 small":            udp6(100),
		"v6 1500":             udp6(1500),
		"v6 4000":             udp6(4000),
		"v6 max":              udp6(65535 - 8),
		"v6 hop-by-hop":       udp6(3000, hopByHop),
		"v6 routing":          udp6(3000, hopByHop, dstOpts, routing, dstOpts),
		"v6 dstopts only":     udp6(3000, dstOpts),
		"v6 hop-by-hop short": udp6(3, hopByHop),
	}
	for name, pkt := range dgrams {
		for _, mtu := range []int{576, 1280, 1500, 9000} {
			if pkt[0]>>4 == 6 && mtu < 1280 {
				continue
			}
			frags := fragments(pkt, mtu, 0x10203)
			if frags == nil {
				t.Fatalf("%s: Reset(mtu %d) failed", name, mtu)
			}
			for i, fr := range frags {
				if len(fr) > mtu {
					t.Fatalf("%s mtu %d: fragment %d is %d bytes", name, mtu, i, len(fr))
				}
			}
			if len(pkt) <= mtu {
				if len(frags) != 1 || !bytes.Equal(frags[0], pkt) {
					t.Fatalf("%s mtu %d: a datagram that fits is not passed whole", name, mtu)
				}
				continue
			}
			for _, order := range []string{"in order", "reversed", "shuffled", "duplicates"} {
				in := append([][]byte(nil), frags...)
				switch order {
				case "reversed":
					for i, j := 0, len(in)-1; i < j; i, j = i+1, j-1 {
						in[i], in[j] = in[j], in[i]
					}
				case "shuffled":
					rng.Shuffle(len(in), func(i, j int) { in[i], in[j] = in[j], in[i] })
				case "duplicates":
					in = append(in[:len(in)-1:len(in)-1], append(in[:len(in)-1], in[len(in)-1])...)
				}
				r := New(Config{})
				got := reassemble(t, r, in)
				if got == nil {
					t.Fatalf("%s mtu %d %s: not reassembled, stats %+v", name, mtu, order, r.Stats())
				}
				if want := withFragID(pkt, 0x10203); !bytes.Equal(got, want) {
					t.Fatalf("%s mtu %d %s: reassembled datagram differs\ngot  % x\nwant % x", name, mtu, order, head(got), head(want))
				}
				if st := r.Stats(); st.Pending != 0 || st.PendingData != 0 || st.Reassembled != 1 {
					t.Fatalf("%s mtu %d %s: stats %+v", name, mtu, order, st)
				}
			}
		}
	}
}

// withFragID is pkt as reassembly returns it from fragments made with
// id: an IPv4 datagram has the fragments' ID (and its checksum).
func withFragID(pkt []byte, id uint32) []byte {
	if pkt[0]>>4 != 4 {
		return pkt
	}
	c := append([]byte(nil), pkt...)
	h := ipmangle.IPv4(c)
	h.SetID(uint16(id))
	h.SetChecksum(h.CalculateChecksum())
	return c
}

func head(b []byte) []byte { return b[:min(len(b), 80)] }

// reassemble feeds fragments to r and returns the datagram they
// completed, or nil.
func reassemble(tb testing.TB, r *Reassembler, frags [][]byte) []byte {
	tb.Helper()
	out := make([]byte, MaxDatagramLen)
	var got []byte
	for i, fr := range frags {
		var f Fragment
		if k := f.Decode(fr); k != IsFragment {
			tb.Fatalf("fragment %d decodes as %v", i, k)
		}
		n, res := r.Add(&f, fr, int64(i), out)
		if res == Complete {
			if got != nil {
				tb.Fatalf("fragment %d completed a datagram again", i)
			}
			got = out[:n:n]
		}
	}
	return got
}

func TestFragmenterHeaders(t *testing.T) {
	t.Run("v4 options", func(t *testing.T) {
		// Router Alert has the copied flag, Record Route does not.
		pkt := udp4(2000, 0x94, 4, 0, 0, 0x07, 7, 4, 0, 0, 0, 0, 1)
		frags := fragments(pkt, 1000, 7)
		if len(frags) != 3 {
			t.Fatalf("%d fragments, want 3", len(frags))
		}
		want1 := pkt[20:32]
		if got := frags[0][20:32]; !bytes.Equal(got, want1) {
			t.Errorf("first fragment options % x, want % x", got, want1)
		}
		for i, fr := range frags[1:] {
			h := ipmangle.IPv4(fr)
			if h.HeaderLength() != 24 || !bytes.Equal(fr[20:24], []byte{0x94, 4, 0, 0}) {
				t.Errorf("fragment %d: header %d bytes, options % x; want 24, router alert only", i+1, h.HeaderLength(), fr[20:h.HeaderLength()])
			}
		}
		for i, fr := range frags {
			h := ipmangle.IPv4(fr)
			more := i < len(frags)-1
			if !h.IsChecksumValid() || h.ID() != 7 || (h.Flags()&ipmangle.IPv4FlagMoreFragments != 0) != more || h.Flags()&ipmangle.IPv4FlagDontFragment != 0 {
				t.Errorf("fragment %d: checksum valid %v, ID %d, flags %b", i, h.IsChecksumValid(), h.ID(), h.Flags())
			}
		}
		if o := ipmangle.IPv4(frags[1]).FragmentOffset(); o != 1000-32 {
			t.Errorf("second fragment at %d, want %d", o, 1000-32)
		}
	})
	t.Run("v4 DF cleared", func(t *testing.T) {
		pkt := udp4(2000)
		pkt[6] = 0x40
		h := ipmangle.IPv4(pkt)
		h.SetChecksum(h.CalculateChecksum())
		for i, fr := range fragments(pkt, 1500, 9) {
			if ipmangle.IPv4(fr).Flags()&ipmangle.IPv4FlagDontFragment != 0 {
				t.Errorf("fragment %d has DF", i)
			}
		}
	})
	t.Run("v6 unfragmentable part", func(t *testing.T) {
		pkt := udp6(3000, hopByHop, dstOpts, routing, dstOpts)
		frags := fragments(pkt, 1280, 0xcafe)
		for i, fr := range frags {
			// Fixed header, Hop-by-Hop, Destination Options, Routing: 64
			// bytes, then the Fragment header naming Destination Options.
			if fr[6] != protoHopByHop || fr[40] != protoDstOpts || fr[48] != protoRouting || fr[56] != protoFragment {
				t.Fatalf("fragment %d: header chain % x", i, fr[:72])
			}
			if fr[64] != protoDstOpts || binary.BigEndian.Uint32(fr[68:]) != 0xcafe {
				t.Errorf("fragment %d: Fragment header % x", i, fr[64:72])
			}
			if pl := int(binary.BigEndian.Uint16(fr[4:])); pl != len(fr)-40 {
				t.Errorf("fragment %d: payload length %d of %d bytes", i, pl, len(fr))
			}
		}
	})
}

func TestFragmenterRefuses(t *testing.T) {
	var f Fragmenter
	frag := append([]byte(nil), frag4Last...)
	tests := []struct {
		name string
		pkt  []byte
		mtu  int
	}{
		{"empty", nil, 1500},
		{"not IP", []byte{0x20, 0, 0, 0}, 1500},
		{"v4 fragment", frag, 1500},
		{"v4 length disagrees", udp4(100)[:100], 1500},
		{"v6 fragment", frag6First, 1280},
		{"v6 length disagrees", udp6(100)[:100], 1280},
		{"mtu below headers", udp4(100), 24},
		{"v6 mtu below headers", udp6(100), 48},
	}
	for _, tt := range tests {
		if f.Reset(tt.pkt, tt.mtu, 1) {
			t.Errorf("%s: Reset accepted", tt.name)
		}
		if f.Next(make([]byte, 64)) != nil {
			t.Errorf("%s: Next after a refused Reset returned a fragment", tt.name)
		}
	}
}

// feed decodes and adds b at now, returning the result.
func feed(t *testing.T, r *Reassembler, b []byte, now int64) Result {
	t.Helper()
	var f Fragment
	if k := f.Decode(b); k != IsFragment {
		t.Fatalf("decodes as %v", k)
	}
	_, res := r.Add(&f, b, now, make([]byte, MaxDatagramLen))
	return res
}

// withOffset returns a copy of the IPv4 fragment b with another offset
// and MF flag.
func withOffset(b []byte, off int, more bool) []byte {
	c := append([]byte(nil), b...)
	v := uint16(off / 8)
	if more {
		v |= 0x2000
	}
	binary.BigEndian.PutUint16(c[6:], v)
	return c
}

// withID returns a copy of the IPv4 fragment b with ID id.
func withID(b []byte, id uint16) []byte {
	c := append([]byte(nil), b...)
	binary.BigEndian.PutUint16(c[4:], id)
	return c
}

func TestDrops(t *testing.T) {
	frags := fragments(udp4(3000), 1500, 77) // 1480 + 1480 + 48 data bytes
	sec := int64(time.Second)

	t.Run("overlap", func(t *testing.T) {
		r := New(Config{})
		feed(t, r, frags[0], 0)
		// 8 bytes into the first fragment's data.
		if res := feed(t, r, withOffset(frags[1], 1472, true), 1); res != Dropped {
			t.Fatalf("overlapping fragment: %v", res)
		}
		// Later fragments of the dropped datagram are absorbed, not
		// counted again, and do not start a new datagram.
		if res := feed(t, r, frags[2], 2); res != Dropped {
			t.Fatalf("after the drop: %v", res)
		}
		checkDrops(t, r, DropOverlap, 1)
		r.Expire(10 * sec)
		checkDrops(t, r, DropOverlap, 1)
		if st := r.Stats(); st.Dropped[DropTimeout] != 0 || st.Pending != 0 {
			t.Errorf("the dead slot counted as a timeout: %+v", st)
		}
	})
	t.Run("duplicate", func(t *testing.T) {
		r := New(Config{})
		for _, b := range [][]byte{frags[0], frags[0], frags[1], frags[1]} {
			if res := feed(t, r, b, 0); res != Held {
				t.Fatalf("%v", res)
			}
		}
		if res := feed(t, r, frags[2], 0); res != Complete {
			t.Fatalf("last: %v", res)
		}
		if st := r.Stats(); st.Duplicates != 2 || st.Reassembled != 1 {
			t.Errorf("stats %+v", st)
		}
	})
	t.Run("not a multiple of 8", func(t *testing.T) {
		r := New(Config{})
		b := append([]byte(nil), frags[0][:1499]...) // 1479 data bytes, MF set
		binary.BigEndian.PutUint16(b[2:], 1499)
		feed(t, r, b, 0)
		checkDrops(t, r, DropBad, 1)
	})
	t.Run("second end", func(t *testing.T) {
		r := New(Config{})
		feed(t, r, frags[2], 0)
		feed(t, r, withOffset(frags[2], 2000, false), 0)
		checkDrops(t, r, DropBad, 1)
	})
	t.Run("beyond the end", func(t *testing.T) {
		r := New(Config{})
		feed(t, r, withOffset(frags[2], 1480, false), 0) // ends at 1528
		feed(t, r, withOffset(frags[1], 1480, true), 0)  // 1480..2960
		checkDrops(t, r, DropBad, 1)
	})
	t.Run("too big", func(t *testing.T) {
		r := New(Config{})
		feed(t, r, withOffset(frags[1], 64800, true), 0) // 64800+1480+20 > 65535
		checkDrops(t, r, DropTooBig, 1)
	})
	t.Run("too big with the first header's options", func(t *testing.T) {
		r := New(Config{})
		// Ends at 65512: fits with a 20-byte header, not with 60.
		last := withOffset(frags[2], 65512-48, false)
		feed(t, r, last, 0)
		first := fragments(udp4(3000, make([]byte, 40)...), 1500, 77)[0]
		feed(t, r, first, 0)
		checkDrops(t, r, DropTooBig, 1)
	})
	t.Run("timeout", func(t *testing.T) {
		r := New(Config{Timeout: time.Second})
		feed(t, r, frags[0], 0)
		feed(t, r, frags[1], sec/2)
		r.Expire(sec - 1)
		checkDrops(t, r, DropTimeout, 0)
		r.Expire(sec)
		checkDrops(t, r, DropTimeout, 1)
		// The last fragment now starts a datagram of its own, which
		// times out in turn.
		if res := feed(t, r, frags[2], sec); res != Held {
			t.Fatalf("%v", res)
		}
		r.Expire(3 * sec)
		checkDrops(t, r, DropTimeout, 2)
	})
	t.Run("cut by a snap length", func(t *testing.T) {
		r := New(Config{})
		feed(t, r, frags[0], 0)
		var f Fragment
		cut := frags[1][:100]
		if k := f.Decode(cut); k != Truncated {
			t.Fatalf("decodes as %v", k)
		}
		if _, res := r.Add(&f, cut, 1, make([]byte, MaxDatagramLen)); res != Dropped {
			t.Fatalf("%v", res)
		}
		feed(t, r, frags[2], 2)
		r.Expire(10 * sec)
		checkDrops(t, r, DropTruncated, 1)
	})
	t.Run("too many datagrams", func(t *testing.T) {
		r := New(Config{MaxDatagrams: 2})
		feed(t, r, withID(frags[0], 1), 0)
		feed(t, r, withID(frags[0], 2), 1)
		feed(t, r, withID(frags[0], 3), 2) // pushes out ID 1
		checkDrops(t, r, DropOverflow, 1)
		feed(t, r, withID(frags[1], 2), 3)
		if res := feed(t, r, withID(frags[2], 2), 4); res != Complete {
			t.Fatalf("ID 2: %v", res)
		}
		if st := r.Stats(); st.Pending != 1 {
			t.Errorf("pending %d, want 1 (ID 3)", st.Pending)
		}
	})
	t.Run("too many bytes", func(t *testing.T) {
		r := New(Config{MaxBytes: 4000})
		feed(t, r, withID(frags[0], 1), 0)
		feed(t, r, withID(frags[1], 1), 1) // 2960 held
		feed(t, r, withID(frags[0], 2), 2) // 4440: ID 1 goes
		checkDrops(t, r, DropOverflow, 1)
		if st := r.Stats(); st.PendingData != 1480 || st.Pending != 1 {
			t.Errorf("stats %+v", st)
		}
	})
	t.Run("too many fragments", func(t *testing.T) {
		r := New(Config{})
		b := withOffset(frags[0][:28], 0, true) // 8 data bytes per fragment
		binary.BigEndian.PutUint16(b[2:], 28)
		for i := range MaxFragments + 1 {
			feed(t, r, withOffset(b, 8*i, true), 0)
		}
		checkDrops(t, r, DropBad, 1)
	})
}

func checkDrops(t *testing.T, r *Reassembler, d Drop, want uint64) {
	t.Helper()
	st := r.Stats()
	if st.Dropped[d] != want {
		t.Errorf("%v drops = %d, want %d (stats %+v)", d, st.Dropped[d], want, st)
	}
	var total uint64
	for _, n := range st.Dropped {
		total += n
	}
	if total != want {
		t.Errorf("drops = %v, want only %d %v", st.Dropped, want, d)
	}
}

// TestBuffersBounded checks that the slot buffers kept for reuse stay
// near MaxBytes whatever passes through.
func TestBuffersBounded(t *testing.T) {
	r := New(Config{MaxDatagrams: 64, MaxBytes: 100_000})
	frags := fragments(udp4(60000), 1500, 1)
	for id := range 200 {
		for _, fr := range frags[:len(frags)-1] {
			feed(t, r, withID(fr, uint16(id)), int64(id))
		}
	}
	if r.retained > r.cfg.MaxBytes+65536 {
		t.Errorf("%d bytes of buffers kept, MaxBytes %d", r.retained, r.cfg.MaxBytes)
	}
	if st := r.Stats(); st.PendingData > r.cfg.MaxBytes {
		t.Errorf("%d bytes held", st.PendingData)
	}
}

func TestAllocs(t *testing.T) {
	pkt := udp4(3000)
	var f Fragmenter
	buf := make([]byte, 1500)
	if a := testing.AllocsPerRun(100, func() {
		f.Reset(pkt, 1500, 5)
		for fr := f.Next(buf); fr != nil; fr = f.Next(buf) {
		}
	}); a != 0 {
		t.Errorf("Fragmenter allocates %v times per datagram", a)
	}
	frags := fragments(pkt, 1500, 5)
	r := New(Config{})
	out := make([]byte, MaxDatagramLen)
	var fr Fragment
	run := func() {
		for _, b := range frags {
			fr.Decode(b)
			r.Add(&fr, b, 0, out)
		}
	}
	run() // the slot's buffer
	if a := testing.AllocsPerRun(100, run); a != 0 {
		t.Errorf("reassembly allocates %v times per datagram", a)
	}
}

func BenchmarkFragment(b *testing.B) {
	pkt := udp4(4000)
	var f Fragmenter
	buf := make([]byte, 1500)
	b.ReportAllocs()
	b.SetBytes(int64(len(pkt)))
	for b.Loop() {
		f.Reset(pkt, 1500, 5)
		for fr := f.Next(buf); fr != nil; fr = f.Next(buf) {
		}
	}
}

func BenchmarkReassemble(b *testing.B) {
	frags := fragments(udp4(4000), 1500, 5)
	r := New(Config{})
	out := make([]byte, MaxDatagramLen)
	var fr Fragment
	b.ReportAllocs()
	b.SetBytes(4028)
	for b.Loop() {
		for _, p := range frags {
			fr.Decode(p)
			r.Add(&fr, p, 0, out)
		}
	}
}
