package capture_test

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/tcpcopy-go/tcpcopy/pkg/capture"
)

// unhex decodes hex with spaces and "|" field separators.
func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.NewReplacer(" ", "", "|", "", "\n", "", "\t", "").Replace(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestEthernetIPOffset(t *testing.T) {
	const macs = "020000000001 020000000002 " // destination | source
	tests := []struct {
		name  string
		frame string
		want  int
	}{
		{"ipv4", macs + "0800 | 45 00 0028", 14},
		{"ipv6", macs + "86dd | 60 00 0000", 14},
		{"802.1Q", macs + "8100 0064 | 0800 | 45", 18},
		{"802.1ad + 802.1Q", macs + "88a8 0064 | 8100 00c8 | 86dd | 60", 22},
		{"legacy QinQ", macs + "9100 0064 | 8100 00c8 | 0800 | 45", 22},
		{"three tags", macs + "88a8 0001 | 8100 0002 | 8100 0003 | 0800 | 45", -1},
		{"arp", macs + "0806 | 0001 0800 0604 0001", -1},
		{"ipv4 ethertype, version 6", macs + "0800 | 60", -1},
		{"ipv6 ethertype, version 4", macs + "86dd | 45", -1},
		{"ends after ethertype", macs + "0800", -1},
		{"ends after tag", macs + "8100 0064 0800", -1},
		{"ends inside tag", macs + "8100 00", -1},
		{"runt", "0200000000", -1},
		{"empty", "", -1},
		{"loopback header", "000000000000 000000000000 0800 | 45 00", 14},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := capture.EthernetIPOffset(unhex(t, tt.frame)); got != tt.want {
				t.Fatalf("EthernetIPOffset = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestEthernetIPOffsetBuiltFrames(t *testing.T) {
	for _, f := range []frame{
		{Src: client4, Dst: server4, Proto: 6, DPort: 80, IPOpts: 8},
		{VLAN: 5, Src: client6, Dst: server6, Proto: 17, DPort: 53},
	} {
		b := f.Bytes()
		want := 14
		if f.VLAN != 0 {
			want = 18
		}
		if got := capture.EthernetIPOffset(b); got != want {
			t.Errorf("%v: offset %d, want %d", f.Dst, got, want)
		}
	}
}

func TestEthernetIPOffsetAllocs(t *testing.T) {
	b := frame{VLAN: 5, Src: client4, Dst: server4, Proto: 6, DPort: 80}.Bytes()
	if n := testing.AllocsPerRun(100, func() { capture.EthernetIPOffset(b) }); n != 0 {
		t.Fatalf("%v allocs per run, want 0", n)
	}
}

func FuzzEthernetIPOffset(f *testing.F) {
	f.Add(frame{Src: client4, Dst: server4, Proto: 6, DPort: 80}.Bytes())
	f.Add(frame{VLAN: 7, Src: client6, Dst: server6, Proto: 6, DPort: 80}.Bytes())
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		off := capture.EthernetIPOffset(b)
		if off == -1 {
			return
		}
		if off != 14 && off != 18 && off != 22 {
			t.Fatalf("offset %d", off)
		}
		if off >= len(b) {
			t.Fatalf("offset %d beyond frame of %d bytes", off, len(b))
		}
		et := uint16(b[off-2])<<8 | uint16(b[off-1])
		switch v := b[off] >> 4; {
		case et == 0x0800 && v == 4, et == 0x86dd && v == 6:
		default:
			t.Fatalf("EtherType %#04x with IP version %d", et, v)
		}
	})
}
