package pcapfile_test

import (
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"errors"
	"runtime"
	"testing"
	"time"

	"github.com/gopacket/gopacket"
	"github.com/gopacket/gopacket/layers"
	"github.com/gopacket/gopacket/pcapgo"

	"github.com/tcpcopy-go/tcpcopy/pkg/pcapfile"
)

// FuzzRead feeds arbitrary bytes to the reader. Invariants: no panic; a
// damaged file yields a *FormatError whose offset lies within the
// (uncompressed) input; every packet respects the limits; IPOffset stays
// in range for every link type.
func FuzzRead(f *testing.F) {
	seeds := [][]byte{
		fuzzPcap(),
		fuzzPcapNG(binary.LittleEndian),
		fuzzPcapNG(binary.BigEndian),
	}
	var z bytes.Buffer
	zw := gzip.NewWriter(&z)
	zw.Write(seeds[0])
	zw.Close()
	seeds = append(seeds, z.Bytes())
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := pcapfile.NewReader(bytes.NewReader(b))
		if err != nil {
			var fe *pcapfile.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("NewReader error %T %v is not a FormatError", err, err)
			}
			return
		}
		n := 0
		for r.Next() && n < 10000 {
			n++
			p := r.Packet()
			if len(p.Data) > pcapfile.MaxPacketLen || p.Len < len(p.Data) {
				t.Fatalf("packet %d: %d bytes, len %d", n, len(p.Data), p.Len)
			}
			if !r.Compressed() && (p.Offset < 0 || p.Offset+int64(len(p.Data)) > int64(len(b))) {
				t.Fatalf("packet %d: offset %d outside the %d-byte input", n, p.Offset, len(b))
			}
			if off := p.LinkType.IPOffset(p.Data); off < -1 || off >= max(len(p.Data), 1) {
				t.Fatalf("IPOffset %d for a %d-byte frame", off, len(p.Data))
			}
		}
		if err := r.Err(); err != nil {
			var fe *pcapfile.FormatError
			if !errors.As(err, &fe) {
				t.Fatalf("Err %T %v is not a FormatError", err, err)
			}
			if !r.Compressed() && (fe.Offset < 0 || fe.Offset > int64(len(b))) {
				t.Fatalf("error offset %d outside the %d-byte input: %v", fe.Offset, len(b), err)
			}
		}
	})
}

func fuzzPcap() []byte {
	var buf bytes.Buffer
	w := pcapgo.NewWriter(&buf)
	w.WriteFileHeader(65535, layers.LinkTypeEthernet)
	frame := []byte("\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x08\x00\x45\x00\x00\x28")
	w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(1, 0), CaptureLength: len(frame), Length: len(frame)}, frame)
	w.WritePacket(gopacket.CaptureInfo{Timestamp: time.Unix(2, 0), CaptureLength: 8, Length: 1500}, frame[:8])
	return buf.Bytes()
}

func fuzzPcapNG(order binary.ByteOrder) []byte {
	n := &ng{order: order}
	n.shb()
	n.idb(1, 0)
	n.idb(276, 128, n.option(9, []byte{0x80 | 20}))
	n.epb(0, 1, "\x02\x00\x00\x00\x00\x01\x02\x00\x00\x00\x00\x02\x86\xdd\x60\x00", 16)
	n.epb(1, 2, "\x08\x00\x00\x00\x00\x00\x00\x0b\x00\x01\x00\x06\x02\x00\x00\x00\x00\x02\x00\x00\x45", 60)
	n.spb("abc", 3)
	n.pb(0, 3, "def")
	n.block(5, make([]byte, 8))
	return n.b.Bytes()
}

func TestLargeClaimSmallFile(t *testing.T) {
	// A block claiming 16 MiB in a small file: an error, and no 16 MiB
	// buffer.
	n := &ng{order: binary.LittleEndian}
	n.shb()
	b := append(n.b.Bytes(), 6, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	r, err := pcapfile.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if r.Next() || r.Err() == nil {
		t.Fatal("no error")
	}
	runtime.ReadMemStats(&after)
	if n := after.TotalAlloc - before.TotalAlloc; n > 4<<20 {
		t.Errorf("reading a damaged 16 MiB claim allocated %d bytes", n)
	}
}
