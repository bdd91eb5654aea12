package tcpcopy

import (
	"net"
	"net/netip"
	"testing"

	"golang.org/x/net/bpf"

	"github.com/tcpcopy-go/tcpcopy/internal/testframes"
)

// TestKernelFilterAnyCount: any number of -x mappings (docs/tcpcopy.md)
// gives a kernel filter that passes every mapped packet; the exact match
// is rewriter.match's.
func TestKernelFilterAnyCount(t *testing.T) {
	online := netip.MustParseAddr("192.0.2.1")
	target := netip.MustParseAddrPort("203.0.113.20:8080")
	tests := []struct {
		name       string
		n, ports   int  // mappings, distinct online ports
		withAddr   bool // mappings name the online address
		strayKept  bool // the kernel passes a packet to an unmapped port
		wantFilter int  // matches in the kernel filter
	}{
		{"64 mappings, exact", 64, 64, true, false, 64},
		{"70 mappings on 3 ports", 70, 3, true, false, 3},
		{"100 ports", 100, 100, false, true, 1},
		{"1000 mappings", 1000, 1000, true, true, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Default()
			for i := range tt.n {
				port := uint16(1000 + i%tt.ports)
				addr := netip.Addr{}
				if tt.withAddr {
					addr = netip.AddrFrom4([4]byte{192, 0, 2, byte(1 + i/tt.ports)})
				}
				cfg.Mappings = append(cfg.Mappings, Mapping{Online: netip.AddrPortFrom(addr, port), Target: target})
			}
			cfg.Intercepts = []netip.AddrPort{netip.MustParseAddrPort("203.0.113.30:36524")}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			if got := len(kernelMatches(cfg.Mappings)); got != tt.wantFilter {
				t.Errorf("kernel filter of %d matches, want %d", got, tt.wantFilter)
			}
			prog, err := captureFilter(&cfg)
			if err != nil {
				t.Fatalf("captureFilter: %v", err)
			}
			ins, _ := bpf.Disassemble(prog)
			vm, err := bpf.NewVM(ins)
			if err != nil {
				t.Fatal(err)
			}
			rw := newRewriter(&cfg)
			pass := func(dst netip.AddrPort) bool {
				f := testframes.Frame{Src: netip.MustParseAddr("198.51.100.7"), Dst: dst.Addr(), Proto: 6, SPort: 40000, DPort: dst.Port()}
				n, err := vm.Run(f.Bytes())
				return err == nil && n > 0
			}
			for _, m := range cfg.Mappings {
				dst := m.Online
				if !dst.Addr().IsValid() {
					dst = netip.AddrPortFrom(online, dst.Port())
				}
				if !pass(dst) {
					t.Fatalf("the kernel filter drops packets of mapping %v", m)
				}
				if _, ok := rw.match(dst); !ok {
					t.Fatalf("rewriter does not match mapping %v", m)
				}
			}
			stray := netip.AddrPortFrom(online, 9999)
			if got := pass(stray); got != tt.strayKept {
				t.Errorf("kernel filter passes %v: %v, want %v", stray, got, tt.strayKept)
			}
			if _, ok := rw.match(stray); ok {
				t.Errorf("rewriter matches %v", stray)
			}
		})
	}
}

// TestLoopback: only a loopback device drops the outgoing copy of what it
// captures (every packet on lo is seen leaving and coming back in).
func TestLoopback(t *testing.T) {
	ifs, err := net.Interfaces()
	if err != nil {
		t.Skip(err)
	}
	for _, ifi := range ifs {
		if got, want := loopback(ifi.Name), ifi.Flags&net.FlagLoopback != 0; got != want {
			t.Errorf("loopback(%q) = %v, want %v", ifi.Name, got, want)
		}
	}
	for _, name := range []string{"", "no-such-if0"} {
		if loopback(name) {
			t.Errorf("loopback(%q) = true", name)
		}
	}
}

// TestFilterUDPAnswers: the online server's UDP answers pass the kernel
// filter only when they are compared (the comparison on, and intercepts
// to bring the target's); its TCP answers whenever the comparison is on
// (TCP mappings need intercepts).
func TestFilterUDPAnswers(t *testing.T) {
	dns, web := netip.MustParseAddrPort("192.0.2.1:53"), netip.MustParseAddrPort("192.0.2.1:80")
	client := netip.MustParseAddrPort("198.51.100.7:40000")
	for _, tt := range []struct {
		name           string
		compare        int
		intercepts     bool
		wantTCP, wantU bool
	}{
		{"compare with intercepts", 2048, true, true, true},
		{"compare without intercepts (UDP only)", 2048, false, false, false},
		{"no comparison", 0, true, false, false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			cfg := Default()
			cfg.CompareBytes = tt.compare
			cfg.Mappings = []Mapping{{Proto: ProtoUDP, Online: dns, Target: netip.MustParseAddrPort("203.0.113.20:5353")}}
			if tt.intercepts {
				cfg.Mappings = append(cfg.Mappings, Mapping{Online: web, Target: netip.MustParseAddrPort("203.0.113.20:8080")})
				cfg.Intercepts = []netip.AddrPort{netip.MustParseAddrPort("203.0.113.30:36524")}
			}
			if err := cfg.Validate(); err != nil {
				t.Fatalf("Validate: %v", err)
			}
			prog, err := captureFilter(&cfg)
			if err != nil {
				t.Fatalf("captureFilter: %v", err)
			}
			ins, _ := bpf.Disassemble(prog)
			vm, err := bpf.NewVM(ins)
			if err != nil {
				t.Fatal(err)
			}
			pass := func(proto uint8, src, dst netip.AddrPort) bool {
				f := testframes.Frame{Src: src.Addr(), Dst: dst.Addr(), Proto: proto, SPort: src.Port(), DPort: dst.Port()}
				n, err := vm.Run(f.Bytes())
				return err == nil && n > 0
			}
			if !pass(17, client, dns) || tt.intercepts && !pass(6, client, web) {
				t.Error("the filter drops queries or requests")
			}
			if got := pass(6, web, client); got != tt.wantTCP {
				t.Errorf("TCP answer passes: %v, want %v", got, tt.wantTCP)
			}
			if got := pass(17, dns, client); got != tt.wantU {
				t.Errorf("UDP answer passes: %v, want %v", got, tt.wantU)
			}
		})
	}
}
