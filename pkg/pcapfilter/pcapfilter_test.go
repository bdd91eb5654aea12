//go:build cgo

package pcapfilter_test

import (
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/bpf"

	"github.com/tcpcopy-go/tcpcopy/pkg/pcapfilter"
)

var (
	client4 = netip.MustParseAddr("198.51.100.7")
	server4 = netip.MustParseAddr("192.0.2.1")
	other4  = netip.MustParseAddr("192.0.2.99")
	client6 = netip.MustParseAddr("2001:db8:1::7")
	server6 = netip.MustParseAddr("2001:db8::1")
)

// Frames the tests run programs against.
var (
	v4SynTo80       = frame{Src: client4, Dst: server4, Proto: 6, SPort: 40000, DPort: 80}
	v4From8080      = frame{Src: server4, Dst: client4, Proto: 6, SPort: 8080, DPort: 40000, Payload: 10}
	v4To80OtherHost = frame{Src: client4, Dst: other4, Proto: 6, SPort: 40000, DPort: 80}
	v4To81          = frame{Src: client4, Dst: server4, Proto: 6, SPort: 40000, DPort: 81}
	v4UDPTo80       = frame{Src: client4, Dst: server4, Proto: 17, SPort: 40000, DPort: 80}
	v4OptsTo80      = frame{Src: client4, Dst: server4, Proto: 6, SPort: 40000, DPort: 80, IPOpts: 12}
	v4FragTo80      = frame{Src: client4, Dst: server4, Proto: 6, SPort: 40000, DPort: 80, FragOff: 185}
	v4Port8050      = frame{Src: client4, Dst: server4, Proto: 6, SPort: 40000, DPort: 8050}
	v6SynTo80       = frame{Src: client6, Dst: server6, Proto: 6, SPort: 40000, DPort: 80}
	v6UDPTo80       = frame{Src: client6, Dst: server6, Proto: 17, SPort: 40000, DPort: 80}
	vlanV4SynTo80   = frame{VLAN: 100, Src: client4, Dst: server4, Proto: 6, SPort: 40000, DPort: 80}
	vlan200V4To80   = frame{VLAN: 200, Src: client4, Dst: server4, Proto: 6, SPort: 40000, DPort: 80}
)

func run(t *testing.T, prog []bpf.RawInstruction, pkt []byte) int {
	t.Helper()
	insns, ok := bpf.Disassemble(prog)
	if !ok {
		t.Fatalf("Disassemble: program has instructions x/net/bpf cannot decode: %v", insns)
	}
	vm, err := bpf.NewVM(insns)
	if err != nil {
		t.Fatalf("NewVM: %v", err)
	}
	n, err := vm.Run(pkt)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return n
}

func TestCompileMatches(t *testing.T) {
	type probe struct {
		name string
		f    frame
		want bool
	}
	tests := []struct {
		expr   string
		probes []probe
	}{
		{
			expr: "tcp and src port 8080",
			probes: []probe{
				{"v4 from 8080", v4From8080, true},
				{"v4 to 80", v4SynTo80, false},
				{"udp from 8080", frame{Src: server4, Dst: client4, Proto: 17, SPort: 8080, DPort: 40000}, false},
				{"v6 from 8080", frame{Src: server6, Dst: client6, Proto: 6, SPort: 8080, DPort: 40000}, true},
			},
		},
		{
			expr: "ip6 and tcp",
			probes: []probe{
				{"v6 tcp", v6SynTo80, true},
				{"v6 udp", v6UDPTo80, false},
				{"v4 tcp", v4SynTo80, false},
			},
		},
		{
			expr: "tcp and (dst port 80 and dst host 192.0.2.1)",
			probes: []probe{
				{"match", v4SynTo80, true},
				{"with ip options", v4OptsTo80, true},
				{"other host", v4To80OtherHost, false},
				{"other port", v4To81, false},
				{"udp", v4UDPTo80, false},
				{"non-first fragment", v4FragTo80, false},
				{"v6", v6SynTo80, false},
				{"vlan tagged", vlanV4SynTo80, false},
			},
		},
		{
			expr: "vlan 100 and tcp dst port 80",
			probes: []probe{
				{"vlan 100", vlanV4SynTo80, true},
				{"vlan 200", vlan200V4To80, false},
				{"untagged", v4SynTo80, false},
			},
		},
		{
			expr: "tcp dst portrange 8000-8100",
			probes: []probe{
				{"8050", v4Port8050, true},
				{"80", v4SynTo80, false},
				{"v6 8050", frame{Src: client6, Dst: server6, Proto: 6, SPort: 1, DPort: 8050}, true},
			},
		},
		{
			expr: "tcp and not dst port 80",
			probes: []probe{
				{"80", v4SynTo80, false},
				{"81", v4To81, true},
				{"udp 80", v4UDPTo80, false},
			},
		},
		{
			expr: "",
			probes: []probe{
				{"anything", v4UDPTo80, true},
			},
		},
	}
	const snaplen = 1500
	for _, tt := range tests {
		prog, err := pcapfilter.Compile(pcapfilter.LinkTypeEthernet, snaplen, tt.expr)
		if err != nil {
			t.Fatalf("Compile(%q): %v", tt.expr, err)
		}
		for _, p := range tt.probes {
			t.Run(tt.expr+"/"+p.name, func(t *testing.T) {
				n := run(t, prog, p.f.Bytes())
				if got := n > 0; got != p.want {
					t.Fatalf("match = %v (ret %d), want %v", got, n, p.want)
				}
				if n > 0 && n != snaplen {
					t.Errorf("accept returned %d, want the snap length %d", n, snaplen)
				}
			})
		}
	}
}

func TestCompileErrors(t *testing.T) {
	tests := []struct {
		name     string
		linkType int
		snaplen  int
		expr     string
		want     string
	}{
		{"dangling and", pcapfilter.LinkTypeEthernet, 65535, "tcp and", `pcapfilter: filter "tcp and": syntax error`},
		{"port out of range", pcapfilter.LinkTypeEthernet, 65535, "port 99999", `filter "port 99999": `},
		{"unknown keyword", pcapfilter.LinkTypeEthernet, 65535, "tcp and frobnicate", `filter "tcp and frobnicate": `},
		{"zero snaplen", pcapfilter.LinkTypeEthernet, 0, "tcp", "snap length 0 out of range"},
		{"huge snaplen", pcapfilter.LinkTypeEthernet, 1 << 20, "tcp", "out of range"},
		{"negative link type", -1, 65535, "tcp", "invalid link type -1"},
		{"NUL byte", pcapfilter.LinkTypeEthernet, 65535, "tcp\x00", "NUL byte"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog, err := pcapfilter.Compile(tt.linkType, tt.snaplen, tt.expr)
			if err == nil {
				t.Fatalf("Compile(%q) = %d instructions, want error", tt.expr, len(prog))
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q does not contain %q", err, tt.want)
			}
			t.Logf("%v", err)
		})
	}
}

func TestCompileConcurrent(t *testing.T) {
	done := make(chan error)
	for range 4 {
		go func() {
			var err error
			for range 20 {
				if _, err = pcapfilter.Compile(pcapfilter.LinkTypeEthernet, 65535, "tcp and dst port 80"); err != nil {
					break
				}
			}
			done <- err
		}()
	}
	for range 4 {
		if err := <-done; err != nil {
			t.Fatal(err)
		}
	}
}

func BenchmarkCompile(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if _, err := pcapfilter.Compile(pcapfilter.LinkTypeEthernet, 65535, "tcp and (dst port 80 and dst host 192.0.2.1)"); err != nil {
			b.Fatal(err)
		}
	}
}
