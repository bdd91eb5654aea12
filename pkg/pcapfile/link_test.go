package pcapfile_test

import (
	"encoding/hex"
	"strings"
	"testing"

	"github.com/tcpcopy-go/tcpcopy/pkg/pcapfile"
)

// hexBytes decodes hex with spaces and "|" separators between fields.
func hexBytes(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(strings.NewReplacer(" ", "", "|", "", "\n", "", "\t", "").Replace(s))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIPOffset(t *testing.T) {
	const ip4 = "45 00 0028" // version 4, IHL 5, ...
	const ip6 = "60 00 0000"
	tests := []struct {
		name  string
		link  pcapfile.LinkType
		frame string
		want  int
	}{
		// dst mac | src mac | ethertype | IP
		{"ethernet ipv4", 1, "020000000001 | 020000000002 | 0800 |" + ip4, 14},
		{"ethernet ipv6", 1, "020000000001 | 020000000002 | 86dd |" + ip6, 14},
		{"ethernet arp", 1, "ffffffffffff | 020000000002 | 0806 | 0001", -1},
		{"ethernet ipv4 type, version 6", 1, "020000000001 | 020000000002 | 0800 |" + ip6, -1},
		{"ethernet 802.1Q", 1, "020000000001 | 020000000002 | 8100 | 0064 0800 |" + ip4, 18},
		{"ethernet QinQ", 1, "020000000001 | 020000000002 | 88a8 | 0064 8100 | 00c8 86dd |" + ip6, 22},
		{"ethernet three tags", 1, "020000000001 | 020000000002 | 8100 | 0001 8100 | 0002 8100 | 0003 0800 |" + ip4, -1},
		{"ethernet tag cut", 1, "020000000001 | 020000000002 | 8100 | 00", -1},
		{"ethernet header only", 1, "020000000001 | 020000000002 | 0800", -1},
		{"ethernet short", 1, "0200", -1},
		// packet type | ARPHRD | addr len | addr (8) | protocol
		{"sll ipv4", 113, "0000 | 0001 | 0006 | 020000000002 0000 | 0800 |" + ip4, 16},
		{"sll outgoing ipv6", 113, "0004 | 0001 | 0006 | 020000000002 0000 | 86dd |" + ip6, 16},
		{"sll vlan", 113, "0000 | 0001 | 0006 | 020000000002 0000 | 8100 | 0064 0800 |" + ip4, 20},
		{"sll short", 113, "0000 | 0001 | 0006", -1},
		// protocol | reserved | ifindex | ARPHRD | packet type | addr len | addr (8)
		{"sll2 ipv4", 276, "0800 | 0000 | 0000000b | 0001 | 00 | 06 | 020000000002 0000 |" + ip4, 20},
		{"sll2 ipv6", 276, "86dd | 0000 | 0000000b | 0001 | 04 | 06 | 020000000002 0000 |" + ip6, 20},
		{"sll2 vlan", 276, "8100 | 0000 | 0000000b | 0001 | 00 | 06 | 020000000002 0000 | 0064 86dd |" + ip6, 24},
		{"sll2 other", 276, "0806 | 0000 | 0000000b | 0001 | 00 | 06 | 020000000002 0000 | 0001", -1},
		{"raw ipv4", 101, ip4, 0},
		{"raw ipv6", 101, ip6, 0},
		{"raw garbage", 101, "1234", -1},
		{"raw empty", 101, "", -1},
		{"dlt 12", 12, ip4, 0},
		{"dlt 14", 14, ip6, 0},
		{"ipv4 link", 228, ip4, 0},
		{"ipv4 link, ipv6 packet", 228, ip6, -1},
		{"ipv6 link", 229, ip6, 0},
		{"null little-endian inet", 0, "02000000 |" + ip4, 4},
		{"null big-endian inet", 0, "00000002 |" + ip4, 4},
		{"null darwin inet6", 0, "1e000000 |" + ip6, 4},
		{"null freebsd inet6", 0, "1c000000 |" + ip6, 4},
		{"null openbsd inet6", 0, "18000000 |" + ip6, 4},
		{"null inet, version 6", 0, "02000000 |" + ip6, -1},
		{"null unknown family", 0, "07000000 |" + ip4, -1},
		{"loop inet", 108, "00000002 |" + ip4, 4},
		{"loop inet6", 108, "00000018 |" + ip6, 4},
		{"loop little-endian is wrong", 108, "02000000 |" + ip4, -1},
		{"unsupported link type", 105, ip4, -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.link.IPOffset(hexBytes(t, tt.frame)); got != tt.want {
				t.Errorf("IPOffset = %d, want %d", got, tt.want)
			}
		})
	}
}

func TestLinkTypeString(t *testing.T) {
	for lt, want := range map[pcapfile.LinkType]string{1: "ethernet", 276: "linux_sll2", 105: "105"} {
		if got := lt.String(); got != want {
			t.Errorf("%d: %q, want %q", lt, got, want)
		}
	}
	if pcapfile.LinkType(105).Supported() || !pcapfile.LinkTypeLinuxSLL2.Supported() {
		t.Error("Supported is wrong")
	}
}

func TestIPOffsetAllocs(t *testing.T) {
	frame := hexBytes(t, "020000000001 020000000002 8100 0064 0800 4500 0028")
	if n := testing.AllocsPerRun(100, func() { pcapfile.LinkTypeEthernet.IPOffset(frame) }); n != 0 {
		t.Errorf("IPOffset allocates %.0f times", n)
	}
}
