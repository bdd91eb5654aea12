package ipmangle

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
)

// naiveSum is the textbook RFC 1071 sum, 16 bits at a time, as an
// independent reference for Sum.
func naiveSum(b []byte, initial uint32) uint16 {
	s := uint64(initial)
	for i := 0; i+1 < len(b); i += 2 {
		s += uint64(b[i])<<8 | uint64(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint64(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}

// naiveLayout walks a packet without using the package's decoder and
// returns the IP version, the TCP offset and the packet end by the IP
// length field. ok is false if it is not an IPv4/IPv6 TCP packet.
func naiveLayout(b []byte) (version uint8, tcpOff, end int, ok bool) {
	if len(b) < 1 {
		return 0, 0, 0, false
	}
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 || b[9] != 6 {
			return 0, 0, 0, false
		}
		return 4, int(b[0]&15) * 4, int(binary.BigEndian.Uint16(b[2:])), true
	case 6:
		if len(b) < 40 {
			return 0, 0, 0, false
		}
		nh, off := b[6], 40
		for nh != 6 {
			if off+2 > len(b) {
				return 0, 0, 0, false
			}
			switch nh {
			case 0, 43, 60:
				nh, off = b[off], off+(int(b[off+1])+1)*8
			case 44:
				nh, off = b[off], off+8
			case 51:
				nh, off = b[off], off+(int(b[off+1])+2)*4
			default:
				return 0, 0, 0, false
			}
		}
		return 6, off, 40 + int(binary.BigEndian.Uint16(b[4:])), true
	}
	return 0, 0, 0, false
}

// naiveChecksumsOK verifies the IPv4 header checksum and the TCP checksum
// of a whole packet with naiveSum and a pseudo-header built byte by byte.
func naiveChecksumsOK(b []byte) (ipOK, tcpOK bool) {
	version, tcpOff, end, ok := naiveLayout(b)
	if !ok || end > len(b) || tcpOff > end {
		return false, false
	}
	ipOK = true
	var pseudo []byte
	seg := b[tcpOff:end]
	if version == 4 {
		ipOK = naiveSum(b[:tcpOff], 0) == 0xffff
		pseudo = append(pseudo, b[12:20]...)
		pseudo = append(pseudo, 0, 6, byte(len(seg)>>8), byte(len(seg)))
	} else {
		pseudo = append(pseudo, b[8:40]...)
		pseudo = append(pseudo, 0, 0, byte(len(seg)>>8), byte(len(seg)), 0, 0, 0, 6)
	}
	all := append(pseudo, seg...)
	return ipOK, naiveSum(all, 0) == 0xffff
}

// check is one assertion on a decoded packet, for checkPacket.
type check func(t testing.TB, b []byte, p *Parsed)

func hasSeq(v uint32) check {
	return func(t testing.TB, b []byte, p *Parsed) {
		t.Helper()
		if p.Seq != v {
			t.Errorf("seq: got %#x, want %#x", p.Seq, v)
		}
	}
}

func hasAck(v uint32) check {
	return func(t testing.TB, b []byte, p *Parsed) {
		t.Helper()
		if p.Ack != v {
			t.Errorf("ack: got %#x, want %#x", p.Ack, v)
		}
	}
}

func hasFlags(f TCPFlags) check {
	return func(t testing.TB, b []byte, p *Parsed) {
		t.Helper()
		if p.Flags != f {
			t.Errorf("flags: got %v, want %v", p.Flags, f)
		}
	}
}

func hasAddrs(src, dst netip.AddrPort) check {
	return func(t testing.TB, b []byte, p *Parsed) {
		t.Helper()
		if p.Src != src || p.Dst != dst {
			t.Errorf("addrs: got %v > %v, want %v > %v", p.Src, p.Dst, src, dst)
		}
	}
}

func hasPayload(want []byte) check {
	return func(t testing.TB, b []byte, p *Parsed) {
		t.Helper()
		if got := p.Payload(b); !bytes.Equal(got, want) {
			t.Errorf("payload: got %d bytes %.20q, want %d bytes %.20q", len(got), got, len(want), want)
		}
	}
}

func hasIPID(id uint16) check {
	return func(t testing.TB, b []byte, p *Parsed) {
		t.Helper()
		if p.IPVersion != 4 {
			t.Errorf("IP ID check on IPv%d packet", p.IPVersion)
			return
		}
		if got := IPv4(b).ID(); got != id {
			t.Errorf("IP ID: got %#x, want %#x", got, id)
		}
	}
}

func hasTS(val, ecr uint32) check {
	return func(t testing.TB, b []byte, p *Parsed) {
		t.Helper()
		if !p.HasTS() || p.TSVal != val || p.TSEcr != ecr {
			t.Errorf("timestamps: got %v %#x %#x, want %#x %#x", p.HasTS(), p.TSVal, p.TSEcr, val, ecr)
		}
	}
}

func hasLen(n int) check {
	return func(t testing.TB, b []byte, p *Parsed) {
		t.Helper()
		if len(b) != n {
			t.Errorf("length: got %d, want %d", len(b), n)
		}
	}
}

// checkPacket decodes a complete packet b and always verifies: that Decode
// finds a valid, untruncated packet ending at len(b); both checksums with
// the naive reference; and every header field and the payload against
// gopacket's decoder. Then it runs the extra checks and returns the
// Parsed.
func checkPacket(t testing.TB, b []byte, checks ...check) *Parsed {
	t.Helper()
	p := checkPacketNaive(t, b, checks...)
	compareGopacket(t, b, p)
	return p
}

// checkPacketNaive is checkPacket without the comparison with gopacket,
// for the packets gopacket cannot decode (IPv6 with a fragment header).
func checkPacketNaive(t testing.TB, b []byte, checks ...check) *Parsed {
	t.Helper()
	p := new(Parsed)
	p.Decode(b)
	if !p.Valid || p.Truncated || p.TotalLen != len(b) {
		t.Fatalf("decode: valid %v (%v), truncated %v, total length %d of %d bytes", p.Valid, p.Reason, p.Truncated, p.TotalLen, len(b))
	}
	if ipOK, tcpOK := naiveChecksumsOK(b); !ipOK || !tcpOK {
		t.Errorf("checksums: IPv4 header ok %v, TCP ok %v", ipOK, tcpOK)
	}
	for _, c := range checks {
		c(t, b, p)
	}
	return p
}

// decodeGopacket decodes b with gopacket, failing the test on error.
func decodeGopacket(t testing.TB, b []byte) gopacket.Packet {
	t.Helper()
	first := layers.LayerTypeIPv4
	if b[0]>>4 == 6 {
		first = layers.LayerTypeIPv6
	}
	pkt := gopacket.NewPacket(b, first, gopacket.DecodeOptions{NoCopy: true})
	if el := pkt.ErrorLayer(); el != nil {
		t.Fatalf("gopacket: %v", el.Error())
	}
	return pkt
}

// compareGopacket checks p against gopacket's view of b.
func compareGopacket(t testing.TB, b []byte, p *Parsed) {
	t.Helper()
	pkt := decodeGopacket(t, b)
	tl, _ := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if tl == nil {
		t.Fatalf("gopacket: no TCP layer in %v", pkt)
	}
	var src, dst netip.Addr
	switch n := pkt.NetworkLayer().(type) {
	case *layers.IPv4:
		src, _ = netip.AddrFromSlice(n.SrcIP)
		dst, _ = netip.AddrFromSlice(n.DstIP)
	case *layers.IPv6:
		src, _ = netip.AddrFromSlice(n.SrcIP)
		dst, _ = netip.AddrFromSlice(n.DstIP)
	}
	wantSrc := netip.AddrPortFrom(src.Unmap(), uint16(tl.SrcPort))
	wantDst := netip.AddrPortFrom(dst.Unmap(), uint16(tl.DstPort))
	if p.IPVersion == 6 {
		wantSrc = netip.AddrPortFrom(src, uint16(tl.SrcPort))
		wantDst = netip.AddrPortFrom(dst, uint16(tl.DstPort))
	}
	if p.Src != wantSrc || p.Dst != wantDst {
		t.Errorf("addrs: got %v > %v, gopacket %v > %v", p.Src, p.Dst, wantSrc, wantDst)
	}
	if p.Seq != tl.Seq || p.Ack != tl.Ack || p.Window != tl.Window {
		t.Errorf("seq/ack/window: got %#x %#x %d, gopacket %#x %#x %d", p.Seq, p.Ack, p.Window, tl.Seq, tl.Ack, tl.Window)
	}
	if got, want := p.Flags, TCPFlags(tl.Contents[13]); got != want {
		t.Errorf("flags: got %v, gopacket %v", got, want)
	}
	if p.TCPHeaderLen != len(tl.Contents) || p.PayloadOffset+len(tl.Payload) != p.TotalLen {
		t.Errorf("TCP header/payload: got %d/%d, gopacket %d/%d", p.TCPHeaderLen, p.PayloadLen, len(tl.Contents), len(tl.Payload))
	}
	if !bytes.Equal(p.Payload(b), tl.Payload) {
		t.Errorf("payload differs from gopacket's")
	}
}

// gopacketReserialize decodes b with gopacket and serializes it again with
// ComputeChecksums (lengths as they are), giving an independent
// implementation's checksums for the same bytes.
func gopacketReserialize(t testing.TB, b []byte) []byte {
	t.Helper()
	pkt := decodeGopacket(t, b)
	tl := pkt.Layer(layers.LayerTypeTCP).(*layers.TCP)
	if err := tl.SetNetworkLayerForChecksum(pkt.NetworkLayer()); err != nil {
		t.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializePacket(buf, gopacket.SerializeOptions{ComputeChecksums: true}, pkt); err != nil {
		t.Fatalf("gopacket serialize: %v", err)
	}
	return buf.Bytes()
}
