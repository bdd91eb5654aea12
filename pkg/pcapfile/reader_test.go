package pcapfile_test

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/tcpcopy-go/tcpcopy/pkg/pcapfile"
)

// rec is what a test expects of one packet.
type rec struct {
	data  string
	len   int
	time  int64
	link  pcapfile.LinkType
	iface int
}

func (r rec) String() string {
	return fmt.Sprintf("%q len=%d time=%d link=%s iface=%d", r.data, r.len, r.time, r.link, r.iface)
}

// readAll reads every packet of b.
func readAll(t *testing.T, b []byte) ([]rec, []int64, error) {
	t.Helper()
	r, err := pcapfile.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, nil, err
	}
	var got []rec
	var offs []int64
	for r.Next() {
		p := r.Packet()
		got = append(got, rec{string(p.Data), p.Len, p.Time, p.LinkType, p.Interface})
		offs = append(offs, p.Offset)
	}
	return got, offs, r.Err()
}

func checkRecs(t *testing.T, got, want []rec) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d packets, want %d:\n got %v\nwant %v", len(got), len(want), got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Errorf("packet %d:\n got %v\nwant %v", i, got[i], want[i])
		}
	}
}

var t0 = time.Date(2024, 5, 6, 7, 8, 9, 123456789, time.UTC)

// gopacketPcap writes pkts with gopacket's pcapgo writer (an independent
// implementation).
func gopacketPcap(t *testing.T, nanos bool, link layers.LinkType, snap uint32, pkts []rec) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	if nanos {
		w = pcapgo.NewWriterNanos(&buf)
	}
	if err := w.WriteFileHeader(snap, link); err != nil {
		t.Fatal(err)
	}
	for _, p := range pkts {
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, p.time), CaptureLength: len(p.data), Length: p.len}
		if err := w.WritePacket(ci, []byte(p.data)); err != nil {
			t.Fatal(err)
		}
	}
	return buf.Bytes()
}

func TestReadPcapGopacket(t *testing.T) {
	pkts := []rec{
		{data: "first frame", len: 11, time: t0.UnixNano(), link: pcapfile.LinkTypeEthernet},
		{data: "cut", len: 1500, time: t0.UnixNano() + 1500, link: pcapfile.LinkTypeEthernet},
		{data: "", len: 60, time: t0.UnixNano() + 2e9, link: pcapfile.LinkTypeEthernet},
	}
	for _, nanos := range []bool{false, true} {
		t.Run(fmt.Sprintf("nanos=%v", nanos), func(t *testing.T) {
			b := gopacketPcap(t, nanos, layers.LinkTypeEthernet, 65535, pkts)
			got, offs, err := readAll(t, b)
			if err != nil {
				t.Fatal(err)
			}
			want := append([]rec(nil), pkts...)
			if !nanos {
				for i := range want {
					want[i].time = want[i].time / 1000 * 1000
				}
			}
			checkRecs(t, got, want)
			if wantOffs := []int64{24, 24 + 16 + 11, 24 + 16 + 11 + 16 + 3}; fmt.Sprint(offs) != fmt.Sprint(wantOffs) {
				t.Errorf("offsets %v, want %v", offs, wantOffs)
			}
		})
	}
}

// pcapBE builds a big-endian pcap file by hand (a SPARC or PowerPC
// tcpdump writes these).
func pcapBE(link uint32, pkts ...rec) []byte {
	var b bytes.Buffer
	be := binary.BigEndian
	w32 := func(v uint32) { _ = binary.Write(&b, be, v) }
	w32(0xa1b2c3d4)
	_ = binary.Write(&b, be, uint16(2))
	_ = binary.Write(&b, be, uint16(4))
	w32(0)
	w32(0)
	w32(262144)
	w32(link)
	for _, p := range pkts {
		w32(uint32(p.time / 1e9))
		w32(uint32(p.time % 1e9 / 1000))
		w32(uint32(len(p.data)))
		w32(uint32(p.len))
		b.WriteString(p.data)
	}
	return b.Bytes()
}

func TestReadPcapBigEndian(t *testing.T) {
	// The FCS bits in the upper half of the link type field are ignored.
	b := pcapBE(0x1000_0000|113, rec{data: "abc", len: 3, time: 5e9 + 7000})
	got, _, err := readAll(t, b)
	if err != nil {
		t.Fatal(err)
	}
	checkRecs(t, got, []rec{{data: "abc", len: 3, time: 5e9 + 7000, link: pcapfile.LinkTypeLinuxSLL}})
}

func TestReadPcapOrigBelowCaptured(t *testing.T) {
	b := pcapBE(1, rec{data: "abcdef", len: 2, time: 1e9})
	got, _, err := readAll(t, b)
	if err != nil {
		t.Fatal(err)
	}
	if got[0].len != 6 {
		t.Errorf("len %d, want 6 (raised to the captured length)", got[0].len)
	}
}

func TestReadPcapNGGopacket(t *testing.T) {
	// Two interfaces with different link types: every packet must come
	// back with its own interface's link type (gopacket's reader drops the
	// second interface's packets unless WantMixedLinkType is set).
	var buf bytes.Buffer
	w, err := pcapgo.NewNgWriterInterface(&buf, pcapgo.NgInterface{Name: "eth0", LinkType: layers.LinkTypeEthernet, SnapLength: 65535, TimestampResolution: 9},
		pcapgo.NgWriterOptions{})
	if err != nil {
		t.Fatal(err)
	}
	id, err := w.AddInterface(pcapgo.NgInterface{Name: "any", LinkType: layers.LinkType(276), SnapLength: 262144, TimestampResolution: 9})
	if err != nil {
		t.Fatal(err)
	}
	pkts := []rec{
		{data: "ether one", len: 9, time: t0.UnixNano(), link: pcapfile.LinkTypeEthernet, iface: 0},
		{data: "sll2 two!", len: 90, time: t0.UnixNano() + 1, link: pcapfile.LinkTypeLinuxSLL2, iface: id},
		{data: "ether 3", len: 7, time: t0.UnixNano() + 3e9, link: pcapfile.LinkTypeEthernet, iface: 0},
	}
	for _, p := range pkts {
		ci := gopacket.CaptureInfo{Timestamp: time.Unix(0, p.time), CaptureLength: len(p.data), Length: p.len, InterfaceIndex: p.iface}
		if err := w.WritePacket(ci, []byte(p.data)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Flush(); err != nil {
		t.Fatal(err)
	}
	got, _, err := readAll(t, buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	checkRecs(t, got, pkts)
}

// ng builds pcapng files by hand, in either byte order.
type ng struct {
	b     bytes.Buffer
	order binary.ByteOrder
}

func (n *ng) block(typ uint32, body []byte) {
	for len(body)%4 != 0 {
		body = append(body, 0)
	}
	total := uint32(12 + len(body))
	_ = binary.Write(&n.b, n.order, typ)
	_ = binary.Write(&n.b, n.order, total)
	n.b.Write(body)
	_ = binary.Write(&n.b, n.order, total)
}

func (n *ng) shb() {
	var body bytes.Buffer
	_ = binary.Write(&body, n.order, uint32(0x1a2b3c4d))
	_ = binary.Write(&body, n.order, uint16(1))
	_ = binary.Write(&body, n.order, uint16(0))
	_ = binary.Write(&body, n.order, int64(-1))
	n.block(0x0a0d0d0a, body.Bytes())
}

// option encodes one option.
func (n *ng) option(code uint16, v []byte) []byte {
	var b bytes.Buffer
	_ = binary.Write(&b, n.order, code)
	_ = binary.Write(&b, n.order, uint16(len(v)))
	b.Write(v)
	for b.Len()%4 != 0 {
		b.WriteByte(0)
	}
	return b.Bytes()
}

func (n *ng) idb(link uint16, snap uint32, opts ...[]byte) {
	var body bytes.Buffer
	_ = binary.Write(&body, n.order, link)
	_ = binary.Write(&body, n.order, uint16(0))
	_ = binary.Write(&body, n.order, snap)
	for _, o := range opts {
		body.Write(o)
	}
	if len(opts) > 0 {
		body.Write(n.option(0, nil))
	}
	n.block(1, body.Bytes())
}

func (n *ng) epb(iface uint32, ts uint64, data string, origLen uint32) {
	var body bytes.Buffer
	_ = binary.Write(&body, n.order, iface)
	_ = binary.Write(&body, n.order, uint32(ts>>32))
	_ = binary.Write(&body, n.order, uint32(ts))
	_ = binary.Write(&body, n.order, uint32(len(data)))
	_ = binary.Write(&body, n.order, origLen)
	body.WriteString(data)
	n.block(6, body.Bytes())
}

func (n *ng) pb(iface uint16, ts uint64, data string) {
	var body bytes.Buffer
	_ = binary.Write(&body, n.order, iface)
	_ = binary.Write(&body, n.order, uint16(0))
	_ = binary.Write(&body, n.order, uint32(ts>>32))
	_ = binary.Write(&body, n.order, uint32(ts))
	_ = binary.Write(&body, n.order, uint32(len(data)))
	_ = binary.Write(&body, n.order, uint32(len(data)))
	body.WriteString(data)
	n.block(2, body.Bytes())
}

func (n *ng) spb(data string, origLen uint32) {
	var body bytes.Buffer
	_ = binary.Write(&body, n.order, origLen)
	body.WriteString(data)
	n.block(3, body.Bytes())
}

func TestReadPcapNGByHand(t *testing.T) {
	for _, order := range []binary.ByteOrder{binary.BigEndian, binary.LittleEndian} {
		t.Run(fmt.Sprint(order), func(t *testing.T) {
			n := &ng{order: order}
			n.shb()
			n.idb(1, 0) // microseconds (default)
			tsoff := make([]byte, 8)
			order.PutUint64(tsoff, 100)
			n.idb(113, 0, n.option(9, []byte{0x80 | 10}), n.option(14, tsoff)) // 2^-10 s, +100 s
			n.idb(101, 4, n.option(9, []byte{3}))                              // milliseconds, snap 4
			n.block(4, []byte{0, 0, 0, 0})                                     // name resolution: skipped
			n.epb(0, 1_500_000, "one", 3)                                      // 1.5 s
			n.epb(1, 3<<10|512, "two", 30)                                     // 3.5 s + 100 s
			n.block(5, make([]byte, 20))                                       // interface statistics: skipped
			n.pb(2, 2001, "three")                                             // 2.001 s
			n.spb("four", 1000)                                                // interface 0, cut to the block
			n.block(0x40000bad, []byte("custom"))                              // custom: skipped
			// A second section in the other byte order, with its own
			// interfaces.
			other := binary.ByteOrder(binary.LittleEndian)
			if order == other {
				other = binary.BigEndian
			}
			m := &ng{order: other}
			m.shb()
			m.idb(276, 0, m.option(9, []byte{9}))
			m.epb(0, 42, "five", 5)
			got, offs, err := readAll(t, append(n.b.Bytes(), m.b.Bytes()...))
			if err != nil {
				t.Fatal(err)
			}
			checkRecs(t, got, []rec{
				{data: "one", len: 3, time: 1_500_000_000, link: 1},
				{data: "two", len: 30, time: 103_500_000_000, link: 113, iface: 1},
				{data: "three", len: 5, time: 2_001_000_000, link: 101, iface: 2},
				{data: "four", len: 1000, time: 2_001_000_000, link: 1},
				{data: "five", len: 5, time: 42, link: 276},
			})
			for i, o := range offs {
				if o <= 0 || o >= int64(n.b.Len()+m.b.Len()) || o%4 != 0 {
					t.Errorf("packet %d offset %d", i, o)
				}
			}
		})
	}
}

func TestReadGzip(t *testing.T) {
	pkts := []rec{{data: "zipped", len: 6, time: t0.UnixNano() / 1000 * 1000, link: pcapfile.LinkTypeRaw}}
	plain := gopacketPcap(t, false, layers.LinkTypeRaw, 65535, pkts)
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(plain)
	zw.Close()
	r, err := pcapfile.NewReader(bytes.NewReader(z.Bytes()))
	if err != nil {
		t.Fatal(err)
	}
	if !r.Compressed() || r.Format() != pcapfile.FormatPcap {
		t.Errorf("compressed %v, format %v", r.Compressed(), r.Format())
	}
	got, _, err := readAll(t, z.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	checkRecs(t, got, pkts)

	// A truncated gzip stream: the packets before the cut, then an error.
	_, _, err = readAll(t, z.Bytes()[:z.Len()-12])
	var fe *pcapfile.FormatError
	if !errors.As(err, &fe) {
		t.Fatalf("truncated gzip: %v, want a FormatError", err)
	}
}

func TestDamage(t *testing.T) {
	good := gopacketPcap(t, false, layers.LinkTypeEthernet, 65535, []rec{
		{data: strings.Repeat("a", 40), len: 40, time: 1e9},
		{data: strings.Repeat("b", 40), len: 40, time: 2e9},
	})
	second := int64(24 + 16 + 40) // offset of the second record
	bigCap := append([]byte(nil), good...)
	binary.LittleEndian.PutUint32(bigCap[second+8:], pcapfile.MaxPacketLen+1)

	n := &ng{order: binary.LittleEndian}
	n.shb()
	n.idb(1, 0)
	n.epb(0, 1, "ok", 2)
	ngGood := append([]byte(nil), n.b.Bytes()...)
	epbAt := int64(len(ngGood))
	n.epb(0, 2, "bad", 3)
	ngBadTrailer := append([]byte(nil), n.b.Bytes()...)
	ngBadTrailer[len(ngBadTrailer)-1] ^= 0xff
	ngBadLen := append([]byte(nil), n.b.Bytes()...)
	binary.LittleEndian.PutUint32(ngBadLen[epbAt+4:], 13)
	ngNoIface := append([]byte(nil), ngGood...)
	{
		m := &ng{order: binary.LittleEndian}
		m.epb(7, 2, "x", 1)
		ngNoIface = append(ngNoIface, m.b.Bytes()...)
	}
	ngCapBig := append([]byte(nil), n.b.Bytes()...)
	binary.LittleEndian.PutUint32(ngCapBig[epbAt+8+12:], 100)

	tests := []struct {
		name    string
		b       []byte
		packets int
		offset  int64
		msg     string
	}{
		{"cut in second record data", good[:len(good)-5], 1, second, "file ends after 51 of 56 bytes"},
		{"cut in second record header", good[:second+3], 1, second, "file ends after 3 of 16 bytes"},
		{"captured length too big", bigCap, 1, second, "more than 262144"},
		{"pcapng bad trailer", ngBadTrailer, 1, epbAt, "does not match its trailer"},
		{"pcapng bad block length", ngBadLen, 1, epbAt, "bad block length 13"},
		{"pcapng cut", n.b.Bytes()[:len(n.b.Bytes())-2], 1, epbAt, "file ends after"},
		{"pcapng undefined interface", ngNoIface, 1, epbAt, "interface 7"},
		{"pcapng captured length beyond block", ngCapBig, 1, epbAt, "claims 100 captured bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _, err := readAll(t, tt.b)
			if len(got) != tt.packets {
				t.Errorf("%d packets before the damage, want %d", len(got), tt.packets)
			}
			var fe *pcapfile.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("err %v, want a FormatError", err)
			}
			if fe.Offset != tt.offset || !strings.Contains(fe.Error(), tt.msg) {
				t.Errorf("err %q (offset %d), want offset %d and %q", fe, fe.Offset, tt.offset, tt.msg)
			}
		})
	}
}

func TestNewReaderErrors(t *testing.T) {
	tests := []struct {
		name string
		b    []byte
		msg  string
	}{
		{"empty", nil, "no capture file header"},
		{"text", []byte("hello, world"), "not a pcap or pcapng file"},
		{"short pcap header", []byte{0xd4, 0xc3, 0xb2, 0xa1, 2, 0}, "file ends after 6 of 24 bytes"},
		{"pcap version 1", append([]byte{0xd4, 0xc3, 0xb2, 0xa1, 1, 0, 4, 0}, make([]byte, 16)...), "pcap version 1.4"},
		{"pcapng bad byte order", append([]byte{0x0a, 0x0d, 0x0d, 0x0a, 28, 0, 0, 0, 1, 2, 3, 4}, make([]byte, 16)...), "byte-order magic"},
		{"bad gzip", []byte{0x1f, 0x8b, 0, 0}, "gzip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := pcapfile.NewReader(bytes.NewReader(tt.b))
			if err == nil || !strings.Contains(err.Error(), tt.msg) {
				t.Errorf("err %v, want %q", err, tt.msg)
			}
		})
	}
}

// TestAgainstGopacketReader reads the same files with gopacket's readers.
func TestAgainstGopacketReader(t *testing.T) {
	pkts := []rec{
		{data: strings.Repeat("x", 100), len: 100, time: t0.UnixNano() / 1000 * 1000, link: 1},
		{data: strings.Repeat("y", 1), len: 1400, time: t0.UnixNano()/1000*1000 + 5000, link: 1},
	}
	b := gopacketPcap(t, false, layers.LinkTypeEthernet, 65535, pkts)
	gr, err := pcapgo.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	got, _, err := readAll(t, b)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		data, ci, err := gr.ReadPacketData()
		if err == io.EOF {
			if i != len(got) {
				t.Errorf("gopacket read %d packets, we %d", i, len(got))
			}
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if string(data) != got[i].data || ci.Length != got[i].len || ci.Timestamp.UnixNano() != got[i].time {
			t.Errorf("packet %d: gopacket %q %d %v, we %v", i, data, ci.Length, ci.Timestamp, got[i])
		}
	}
}

func TestNextAllocs(t *testing.T) {
	pkts := make([]rec, 200)
	for i := range pkts {
		pkts[i] = rec{data: strings.Repeat("p", 60+i), len: 60 + i, time: int64(i) * 1e6}
	}
	b := gopacketPcap(t, true, layers.LinkTypeEthernet, 65535, pkts)
	r, err := pcapfile.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	r.Next() // warm up: the buffer grows once
	allocs := testing.AllocsPerRun(100, func() {
		if !r.Next() {
			t.Fatal("ran out of packets")
		}
	})
	if allocs != 0 {
		t.Errorf("Next allocates %.1f times per packet, want 0", allocs)
	}
}

func BenchmarkNext(b *testing.B) {
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	frame := make([]byte, 1514)
	for i := range 1000 {
		w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(int64(i), 0), CaptureLength: len(frame), Length: len(frame)}, frame)
	}
	data := buf.Bytes()
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	var r *pcapfile.Reader
	for i := 0; b.Loop(); i++ {
		if r == nil || !r.Next() {
			var err error
			if r, err = pcapfile.NewReader(bytes.NewReader(data)); err != nil {
				b.Fatal(err)
			}
			r.Next()
		}
	}
}

// pcapSnap builds a little-endian pcap file with the given snap length and
// records of (data, original length).
func pcapSnap(snap uint32, recs ...rec) []byte {
	var b bytes.Buffer
	le := binary.LittleEndian
	w32 := func(v uint32) { _ = binary.Write(&b, le, v) }
	w32(0xa1b2c3d4)
	_ = binary.Write(&b, le, uint16(2))
	_ = binary.Write(&b, le, uint16(4))
	w32(0)
	w32(0)
	w32(snap)
	w32(1)
	for _, r := range recs {
		w32(1)
		w32(0)
		w32(uint32(len(r.data)))
		w32(uint32(r.len))
		b.WriteString(r.data)
	}
	return b.Bytes()
}

// TestAnomalies: records whose lengths disagree with their file are read
// as they are and flagged, not passed silently.
func TestAnomalies(t *testing.T) {
	ngFile := func(snap uint32, data string, orig uint32) []byte {
		n := &ng{order: binary.LittleEndian}
		n.shb()
		n.idb(1, snap)
		n.epb(0, 1, data, orig)
		return n.b.Bytes()
	}
	tests := []struct {
		name string
		file []byte
		want pcapfile.Anomaly
	}{
		{"pcap, consistent", pcapSnap(65535, rec{data: "abcdef", len: 60}), 0},
		{"pcap, caplen above snaplen", pcapSnap(4, rec{data: "abcdef", len: 60}), pcapfile.CapLenAboveSnapLen},
		{"pcap, origlen below caplen", pcapSnap(65535, rec{data: "abcdef", len: 2}), pcapfile.OrigLenBelowCapLen},
		{"pcap, both", pcapSnap(4, rec{data: "abcdef", len: 2}), pcapfile.CapLenAboveSnapLen | pcapfile.OrigLenBelowCapLen},
		{"pcap, no snap length", pcapSnap(0, rec{data: "abcdef", len: 6}), 0},
		{"pcapng, consistent", ngFile(65535, "abcdef", 6), 0},
		{"pcapng, caplen above snaplen", ngFile(4, "abcdef", 6), pcapfile.CapLenAboveSnapLen},
		{"pcapng, origlen below caplen", ngFile(0, "abcdef", 1), pcapfile.OrigLenBelowCapLen},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := pcapfile.NewReader(bytes.NewReader(tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if !r.Next() {
				t.Fatalf("no record: %v", r.Err())
			}
			p := r.Packet()
			if p.Anomalies != tt.want || string(p.Data) != "abcdef" || p.Len < len(p.Data) {
				t.Errorf("anomalies %b, data %q, len %d; want %b", p.Anomalies, p.Data, p.Len, tt.want)
			}
		})
	}
}
