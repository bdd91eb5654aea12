package ipmangle

import (
	"bytes"
	"encoding/binary"
	"math/rand/v2"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
)

func TestSumRFC1071Example(t *testing.T) {
	// RFC 1071 §3: the words 0001 f203 f4f5 f6f7 sum to ddf2.
	b := []byte{0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7}
	if got, want := Sum(b, 0), uint32(0xddf2); got != want {
		t.Errorf("Sum: got %#x, want %#x", got, want)
	}
	if got, want := Checksum(b, 0), uint16(0x220d); got != want {
		t.Errorf("Checksum: got %#x, want %#x", got, want)
	}
}

func TestSumMatchesReferences(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 70000)
	lengths := []int{0, 1, 2, 3, 7, 8, 9, 31, 32, 33, 63, 64, 65, 1499, 1500, 65535, 65536, 70000}
	for range 300 {
		lengths = append(lengths, r.IntN(300))
	}
	for _, n := range lengths {
		for _, fill := range []string{"random", "ones", "zeros"} {
			b := buf[:n]
			for i := range b {
				switch fill {
				case "random":
					b[i] = byte(r.Uint32())
				case "ones":
					b[i] = 0xff
				case "zeros":
					b[i] = 0
				}
			}
			initial := r.Uint32()
			if n%3 == 0 {
				initial = 0
			}
			got := Sum(b, initial)
			if want := naiveSum(b, initial); got != uint32(want) {
				t.Fatalf("Sum(%d %s bytes, %#x): got %#x, naive %#x", n, fill, initial, got, want)
			}
			if want := gopacket.FoldChecksum(gopacket.ComputeChecksum(b, initial)); Checksum(b, initial) != want {
				t.Fatalf("Checksum(%d %s bytes, %#x): got %#x, gopacket %#x", n, fill, initial, Checksum(b, initial), want)
			}
		}
	}
}

func TestSumChains(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	b := make([]byte, 3000)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	for range 200 {
		n := r.IntN(len(b))
		cut := r.IntN(n+1) &^ 1
		whole := Sum(b[:n], 0x1234)
		if got := Sum(b[cut:n], Sum(b[:cut], 0x1234)); got != whole {
			t.Fatalf("chained at %d of %d: got %#x, want %#x", cut, n, got, whole)
		}
	}
}

// The kernel stores the folded pseudo-header sum in the checksum field of
// packets with an offloaded checksum, so the captured packets check
// PseudoHeaderChecksum against Linux itself.
func TestPseudoHeaderChecksumMatchesKernel(t *testing.T) {
	for _, f := range realPackets() {
		t.Run(f.name, func(t *testing.T) {
			var p Parsed
			p.Decode(f.pkt)
			got := PseudoHeaderChecksum(p.Src.Addr(), p.Dst.Addr(), ProtocolTCP, p.TotalLen-p.TCPOffset)
			if want := TCP(f.pkt[p.TCPOffset:]).Checksum(); got != uint32(want) {
				t.Errorf("got %#x, kernel's partial checksum %#x", got, want)
			}
		})
	}
}

func TestPseudoHeaderChecksumForms(t *testing.T) {
	// IPv4 in its 12-byte form and IPv4-mapped in the 40-byte form give
	// the same sum.
	s, d := netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("198.51.100.200")
	v4 := PseudoHeaderChecksum(s, d, ProtocolTCP, 1480)
	mapped := PseudoHeaderChecksum(netip.AddrFrom16(s.As16()), netip.AddrFrom16(d.As16()), ProtocolTCP, 1480)
	if v4 != mapped {
		t.Errorf("IPv4 %#x, IPv4-mapped %#x", v4, mapped)
	}
	// Against the pseudo-header written out byte by byte (RFC 8200 §8.1),
	// with a length above 16 bits.
	s6, d6 := netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("2001:db8:ffff::fffe")
	var ph []byte
	ph = append(ph, s6.AsSlice()...)
	ph = append(ph, d6.AsSlice()...)
	ph = binary.BigEndian.AppendUint32(ph, 0x12345)
	ph = append(ph, 0, 0, 0, ProtocolTCP)
	if got, want := PseudoHeaderChecksum(s6, d6, ProtocolTCP, 0x12345), uint32(naiveSum(ph, 0)); got != want {
		t.Errorf("IPv6: got %#x, want %#x", got, want)
	}
}

// Incremental updates against a full recompute, on random buffers and
// random aligned rewrites: the results must be equal bit for bit.
func TestUpdateChecksumMatchesFullRecompute(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for range 20000 {
		b := make([]byte, 2+2*r.IntN(40))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if r.IntN(10) == 0 {
			clear(b) // all-zero data: the degenerate case of the sum
		}
		pseudo := r.Uint32() & 0xffff
		cs := Checksum(b, pseudo)
		switch w := 2 * r.IntN(len(b)/2); {
		case w+4 <= len(b) && r.IntN(2) == 0:
			old := binary.BigEndian.Uint32(b[w:])
			nv := r.Uint32()
			binary.BigEndian.PutUint32(b[w:], nv)
			cs = UpdateChecksum32(cs, old, nv)
		default:
			old := binary.BigEndian.Uint16(b[w:])
			nv := uint16(r.Uint32())
			binary.BigEndian.PutUint16(b[w:], nv)
			cs = UpdateChecksum16(cs, old, nv)
		}
		if want := Checksum(b, pseudo); cs != want {
			t.Fatalf("incremental %#x, full %#x over % x", cs, want, b)
		}
	}
}

func TestPatchAnyAlignment(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 8))
	for range 20000 {
		b := make([]byte, 4+2*r.IntN(40))
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		const cs = 0 // checksum field at 0..1, data from 2
		binary.BigEndian.PutUint16(b[cs:], 0)
		binary.BigEndian.PutUint16(b[cs:], Checksum(b, 0))
		off := 2 + r.IntN(len(b)-2)
		v := make([]byte, 1+r.IntN(len(b)-off))
		for i := range v {
			v[i] = byte(r.Uint32())
		}
		patch(b, off, v, cs, -1)
		if !bytes.Equal(b[off:off+len(v)], v) {
			t.Fatalf("patch did not write the field")
		}
		if got := Checksum(b, 0); got != 0 {
			t.Fatalf("checksum after patching %d bytes at %d of %d does not verify (%#x)", len(v), off, len(b), got)
		}
	}
}

func TestFixChecksumsRealPackets(t *testing.T) {
	for _, f := range realPackets() {
		t.Run(f.name, func(t *testing.T) {
			if _, tcpOK := naiveChecksumsOK(f.pkt); tcpOK {
				t.Fatalf("captured TCP checksum already verifies; fixture is not partial")
			}
			b := fixed(f.pkt)
			checkPacket(t, b)
			// Everything but the TCP checksum is unchanged (the IPv4
			// header checksums were complete already).
			var p Parsed
			p.Decode(b)
			orig := clone(f.pkt)
			TCP(orig[p.TCPOffset:]).SetChecksum(TCP(b[p.TCPOffset:]).Checksum())
			if !bytes.Equal(orig, b) {
				t.Errorf("FixChecksums changed more than the TCP checksum")
			}
			if re := gopacketReserialize(t, b); !bytes.Equal(re, b) {
				t.Errorf("gopacket computes other checksums:\n got % x\nwant % x", b[:p.PayloadOffset], re[:p.PayloadOffset])
			}
		})
	}
}

func TestFixChecksumsCases(t *testing.T) {
	t.Run("zeroed checksums", func(t *testing.T) {
		b := fixed(dataV4Lo)
		want := clone(b)
		IPv4(b).SetChecksum(0)
		TCP(b[20:]).SetChecksum(0)
		var p Parsed
		p.Decode(b)
		FixChecksums(b, &p)
		if !bytes.Equal(b, want) {
			t.Errorf("got % x, want % x", b, want)
		}
	})
	t.Run("ethernet padding ignored", func(t *testing.T) {
		b := append(clone(ackV4), 0xde, 0xad, 0xbe, 0xef, 0x01, 0x02)
		var p Parsed
		p.Decode(b)
		FixChecksums(b, &p)
		checkPacket(t, b[:p.TotalLen])
		if !bytes.Equal(b[p.TotalLen:], []byte{0xde, 0xad, 0xbe, 0xef, 0x01, 0x02}) {
			t.Errorf("padding changed")
		}
	})
	t.Run("truncated: IP header only", func(t *testing.T) {
		b := clone(dataV4Lo[:60])
		IPv4(b).SetChecksum(0)
		var p Parsed
		p.Decode(b)
		if !p.Truncated {
			t.Fatalf("not truncated")
		}
		FixChecksums(b, &p)
		if !IPv4(b).IsChecksumValid() {
			t.Errorf("IPv4 header checksum not fixed")
		}
		if got, want := TCP(b[20:]).Checksum(), TCP(dataV4Lo[20:]).Checksum(); got != want {
			t.Errorf("TCP checksum of a truncated packet changed: %#x, was %#x", got, want)
		}
	})
	t.Run("invalid untouched", func(t *testing.T) {
		b := clone(dataV4Lo)
		b[9] = 17 // UDP
		var p Parsed
		p.Decode(b)
		FixChecksums(b, &p)
		if b[10] != dataV4Lo[10] || b[11] != dataV4Lo[11] {
			t.Errorf("changed an invalid packet")
		}
	})
}
