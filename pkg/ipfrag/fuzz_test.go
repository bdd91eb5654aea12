package ipfrag

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/tcpcopy-go/tcpcopy/pkg/ipmangle"
)

// FuzzReassemble feeds any sequence of packets to Decode and Add: the
// input is a run of records, a 2-byte big-endian length then that many
// bytes. Nothing panics, every datagram handed over is a consistent IP
// packet, and the bounds hold.
func FuzzReassemble(f *testing.F) {
	seed := func(pkts ...[]byte) {
		var b []byte
		for _, p := range pkts {
			b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
			b = append(b, p...)
		}
		f.Add(b)
	}
	seed(fragments(udp4(3000), 1500, 1)...)
	seed(fragments(udp4(60), 44, 1)...)
	seed(fragments(udp6(60, hopByHop), 80, 2)...)
	seed(frag4Last, frag6First)
	fr := fragments(udp4(200), 68, 3)
	seed(append(fr, fr[1], withOffset(fr[2], 40, true))...)
	f.Fuzz(func(t *testing.T, in []byte) {
		r := New(Config{MaxDatagrams: 4, MaxBytes: 8192})
		out := make([]byte, MaxDatagramLen)
		var fr Fragment
		for now := int64(0); len(in) >= 2; now += 1e8 {
			n := min(int(binary.BigEndian.Uint16(in)), len(in)-2)
			pkt := in[2 : 2+n]
			in = in[2+n:]
			k := fr.Decode(pkt)
			if k != IsFragment {
				continue
			}
			if fr.DataOff+fr.DataLen > len(pkt) || fr.DataOff < 20 {
				t.Fatalf("fragment data [%d, +%d) outside %d bytes", fr.DataOff, fr.DataLen, len(pkt))
			}
			m, res := r.Add(&fr, pkt, now, out)
			if res == Complete {
				checkDatagram(t, out[:m], fr.Version)
			} else if m != 0 {
				t.Fatalf("%v with %d bytes", res, m)
			}
			st := r.Stats()
			if st.Pending > 4 || st.PendingData > 8192 || st.PendingData < 0 {
				t.Fatalf("bounds broken: %+v", st)
			}
		}
	})
}

// checkDatagram checks a reassembled datagram's length fields.
func checkDatagram(t *testing.T, b []byte, version uint8) {
	t.Helper()
	if len(b) > MaxDatagramLen || len(b) == 0 || b[0]>>4 != version {
		t.Fatalf("datagram of %d bytes, version %d", len(b), b[0]>>4)
	}
	if version == 4 {
		h := ipmangle.IPv4(b)
		if !h.IsValid(len(b)) || int(h.TotalLength()) != len(b) || !h.IsChecksumValid() ||
			h.Flags()&ipmangle.IPv4FlagMoreFragments != 0 || h.FragmentOffset() != 0 {
			t.Fatalf("bad IPv4 datagram % x", head(b))
		}
		return
	}
	if len(b) < 40 || int(binary.BigEndian.Uint16(b[4:]))+40 != len(b) {
		t.Fatalf("bad IPv6 datagram % x", head(b))
	}
}

// FuzzRoundTrip fragments a datagram to any MTU, shuffles the fragments
// and puts them back together: the result is the datagram.
func FuzzRoundTrip(f *testing.F) {
	f.Add(uint16(3000), uint16(1500), false, uint64(1))
	f.Add(uint16(60000), uint16(1280), true, uint64(2))
	f.Add(uint16(1), uint16(9000), true, uint64(3))
	f.Fuzz(func(t *testing.T, size, mtu uint16, v6 bool, seed uint64) {
		var pkt []byte
		if v6 {
			pkt = udp6(int(min(size, 65535-8-8)), hopByHop)
		} else {
			pkt = udp4(int(min(size, 65535-28)))
		}
		m := max(int(mtu), 68)
		frags := fragments(pkt, m, uint32(seed))
		if frags == nil {
			if len(pkt) > m && m < 64+8 {
				return // no room for data: refused, as documented
			}
			t.Fatalf("Reset(%d bytes, mtu %d) refused", len(pkt), m)
		}
		if len(pkt) <= m {
			return
		}
		for _, fr := range frags {
			if len(fr) > m {
				t.Fatalf("fragment of %d bytes for mtu %d", len(fr), m)
			}
		}
		rng := rand.New(rand.NewPCG(seed, 0))
		rng.Shuffle(len(frags), func(i, j int) { frags[i], frags[j] = frags[j], frags[i] })
		r := New(Config{})
		got := reassemble(t, r, frags)
		want := withFragID(pkt, uint32(seed))
		if len(frags) > MaxFragments {
			if got != nil || r.Stats().Dropped[DropBad] != 1 {
				t.Fatalf("%d fragments: not dropped as bad", len(frags))
			}
			return
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("mtu %d: round trip differs", m)
		}
	})
}
