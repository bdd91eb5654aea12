package bpfgen_test

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/bpf"

	"github.com/tcpcopy-go/tcpcopy/pkg/bpfgen"
)

var (
	client4 = netip.MustParseAddr("198.51.100.7")
	server4 = netip.MustParseAddr("192.0.2.1")
	other4  = netip.MustParseAddr("192.0.2.99")
	client6 = netip.MustParseAddr("2001:db8:1::7")
	server6 = netip.MustParseAddr("2001:db8::1")
	other6  = netip.MustParseAddr("2001:db8::99")
)

// vm returns a VM running prog.
func vm(tb testing.TB, prog []bpf.RawInstruction) *bpf.VM {
	tb.Helper()
	insns, ok := bpf.Disassemble(prog)
	if !ok {
		tb.Fatalf("Disassemble: undecodable instructions in %v", insns)
	}
	v, err := bpf.NewVM(insns)
	if err != nil {
		tb.Fatalf("NewVM: %v", err)
	}
	return v
}

func accepts(tb testing.TB, v *bpf.VM, pkt []byte) bool {
	tb.Helper()
	n, err := v.Run(pkt)
	if err != nil {
		tb.Fatalf("Run: %v", err)
	}
	return n > 0
}

func TestInbound(t *testing.T) {
	to := func(a netip.Addr, port uint16) frame {
		src := client4
		if a.Is6() {
			src = client6
		}
		return frame{Src: src, Dst: a, Proto: 6, SPort: 40000, DPort: port}
	}
	tests := []struct {
		name    string
		matches []bpfgen.Match
		f       frame
		want    bool
	}{
		{"v4 match", []bpfgen.Match{{server4, 80}}, to(server4, 80), true},
		{"v4 wrong port", []bpfgen.Match{{server4, 80}}, to(server4, 81), false},
		{"v4 wrong addr", []bpfgen.Match{{server4, 80}}, to(other4, 80), false},
		{"v4 source port not destination", []bpfgen.Match{{server4, 40000}}, to(server4, 80), false},
		{"v4 udp", []bpfgen.Match{{server4, 80}}, frame{Src: client4, Dst: server4, Proto: 17, SPort: 1, DPort: 80}, false},
		{"v4 ip options", []bpfgen.Match{{server4, 80}}, frame{Src: client4, Dst: server4, Proto: 6, SPort: 1, DPort: 80, IPOpts: 40}, true},
		{"v4 ip options wrong port", []bpfgen.Match{{server4, 80}}, frame{Src: client4, Dst: server4, Proto: 6, SPort: 80, DPort: 1, IPOpts: 8}, false},
		{"v4 first fragment", []bpfgen.Match{{server4, 80}}, frame{Src: client4, Dst: server4, Proto: 6, SPort: 1, DPort: 80, MoreFrags: true}, true},
		{"v4 non-first fragment", []bpfgen.Match{{server4, 80}}, frame{Src: client4, Dst: server4, Proto: 6, SPort: 1, DPort: 80, FragOff: 1}, false},
		{"v4 non-first fragment any port", []bpfgen.Match{{server4, 0}}, frame{Src: client4, Dst: server4, Proto: 6, FragOff: 100, MoreFrags: true}, false},
		{"v4 any addr", []bpfgen.Match{{Port: 80}}, to(other4, 80), true},
		{"v4 any port", []bpfgen.Match{{Addr: server4}}, to(server4, 12345), true},
		{"any tcp", []bpfgen.Match{{}}, to(other6, 1), true},
		{"any tcp not udp", []bpfgen.Match{{}}, frame{Src: client4, Dst: server4, Proto: 17, DPort: 80}, false},
		{"v4-mapped addr", []bpfgen.Match{{netip.AddrFrom16(server4.As16()), 80}}, to(server4, 80), true},
		{"second of three", []bpfgen.Match{{server4, 81}, {server4, 80}, {other4, 80}}, to(server4, 80), true},
		{"none of three", []bpfgen.Match{{server4, 81}, {other4, 81}, {server6, 80}}, to(server4, 80), false},
		{"v4 in-band vlan tag", []bpfgen.Match{{server4, 80}}, frame{VLAN: 100, Src: client4, Dst: server4, Proto: 6, SPort: 1, DPort: 80}, false},
		{"v6 match", []bpfgen.Match{{server6, 80}}, to(server6, 80), true},
		{"v6 wrong port", []bpfgen.Match{{server6, 80}}, to(server6, 81), false},
		{"v6 wrong addr", []bpfgen.Match{{server6, 80}}, to(other6, 80), false},
		{"v6 last word differs", []bpfgen.Match{{netip.MustParseAddr("2001:db8::2"), 80}}, to(server6, 80), false},
		{"v6 udp", []bpfgen.Match{{server6, 80}}, frame{Src: client6, Dst: server6, Proto: 17, DPort: 80}, false},
		{"v6 hop-by-hop", []bpfgen.Match{{server6, 80}}, frame{Src: client6, Dst: server6, Proto: 6, DPort: 80, HopByHop: true}, false},
		{"v6 fragment header", []bpfgen.Match{{server6, 0}}, frame{Src: client6, Dst: server6, Proto: 6, DPort: 80, Frag6: true}, false},
		{"v6 frame v4 match", []bpfgen.Match{{server4, 80}}, to(server6, 80), false},
		{"v4 frame v6 match", []bpfgen.Match{{server6, 80}}, to(server4, 80), false},
		{"v6 any addr", []bpfgen.Match{{Port: 443}}, to(server6, 443), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog, err := bpfgen.Inbound(tt.matches)
			if err != nil {
				t.Fatal(err)
			}
			if got := accepts(t, vm(t, prog), tt.f.Bytes()); got != tt.want {
				t.Fatalf("Inbound(%v) accepts %v: got %v, want %v", tt.matches, tt.f, got, tt.want)
			}
		})
	}
}

func TestInboundTCPUDP(t *testing.T) {
	udp := func(a netip.Addr, port uint16) frame {
		src := client4
		if a.Is6() {
			src = client6
		}
		return frame{Src: src, Dst: a, Proto: 17, SPort: 40000, DPort: port, Payload: 20}
	}
	tcp := func(a netip.Addr, port uint16) frame {
		f := udp(a, port)
		f.Proto = 6
		return f
	}
	frag4 := func(a netip.Addr, off uint16, proto uint8) frame {
		return frame{Src: client4, Dst: a, Proto: proto, SPort: 1, DPort: 2, FragOff: off, MoreFrags: true}
	}
	frag6 := func(a netip.Addr, off uint16, proto uint8) frame {
		return frame{Src: client6, Dst: a, Proto: proto, SPort: 1, DPort: 2, Frag6: true, Frag6Off: off}
	}
	dns := []bpfgen.Match{{server4, 53}, {server6, 53}}
	tests := []struct {
		name     string
		tcp, udp []bpfgen.Match
		f        frame
		want     bool
	}{
		{"v4 udp", nil, dns, udp(server4, 53), true},
		{"v4 udp wrong port", nil, dns, udp(server4, 54), false},
		{"v4 udp wrong addr", nil, dns, udp(other4, 53), false},
		{"v4 tcp to a udp match", nil, dns, tcp(server4, 53), false},
		{"v4 udp to a tcp match", dns, nil, udp(server4, 53), false},
		{"v4 both", []bpfgen.Match{{server4, 80}}, dns, tcp(server4, 80), true},
		{"v4 both, udp", []bpfgen.Match{{server4, 80}}, dns, udp(server4, 53), true},
		{"v4 both, udp to the tcp port", []bpfgen.Match{{server4, 80}}, dns, udp(server4, 80), false},
		{"v4 udp ip options", nil, dns, frame{Src: client4, Dst: server4, Proto: 17, SPort: 1, DPort: 53, IPOpts: 12}, true},
		{"v4 udp first fragment", nil, dns, frame{Src: client4, Dst: server4, Proto: 17, SPort: 1, DPort: 53, MoreFrags: true}, true},
		{"v4 udp first fragment wrong port", nil, dns, frame{Src: client4, Dst: server4, Proto: 17, SPort: 1, DPort: 54, MoreFrags: true}, false},
		{"v4 udp later fragment", nil, dns, frag4(server4, 185, 17), true},
		{"v4 udp last fragment", nil, dns, frame{Src: client4, Dst: server4, Proto: 17, FragOff: 185}, true},
		{"v4 udp later fragment other addr", nil, dns, frag4(other4, 185, 17), false},
		{"v4 tcp later fragment", nil, dns, frag4(server4, 185, 6), false},
		{"v4 udp later fragment, port-only match", nil, []bpfgen.Match{{Port: 53}}, frag4(other4, 185, 17), true},
		{"v4 udp port-only", nil, []bpfgen.Match{{Port: 53}}, udp(other4, 53), true},
		{"v6 udp", nil, dns, udp(server6, 53), true},
		{"v6 udp wrong port", nil, dns, udp(server6, 54), false},
		{"v6 udp wrong addr", nil, dns, udp(other6, 53), false},
		{"v6 tcp to a udp match", nil, dns, tcp(server6, 53), false},
		{"v6 both, tcp", []bpfgen.Match{{server6, 443}}, dns, tcp(server6, 443), true},
		{"v6 both, udp", []bpfgen.Match{{server6, 443}}, dns, udp(server6, 53), true},
		{"v6 udp first fragment", nil, dns, frag6(server6, 0, 17), true},
		{"v6 udp later fragment", nil, dns, frag6(server6, 181, 17), true},
		{"v6 udp fragment other addr", nil, dns, frag6(other6, 181, 17), false},
		{"v6 tcp fragment", nil, dns, frag6(server6, 181, 6), false},
		{"v6 udp fragment, tcp only", dns, nil, frag6(server6, 181, 17), false},
		{"v6 udp fragment, port-only", nil, []bpfgen.Match{{Port: 53}}, frag6(other6, 181, 17), true},
		{"v6 udp hop-by-hop", nil, dns, frame{Src: client6, Dst: server6, Proto: 17, DPort: 53, HopByHop: true}, false},
		{"v4 udp, v6 match only", nil, []bpfgen.Match{{server6, 53}}, udp(server4, 53), false},
		{"v6 fragment, v4 match only", nil, []bpfgen.Match{{server4, 53}}, frag6(server6, 181, 17), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog, err := bpfgen.InboundTCPUDP(tt.tcp, tt.udp)
			if err != nil {
				t.Fatal(err)
			}
			if got := accepts(t, vm(t, prog), tt.f.Bytes()); got != tt.want {
				t.Fatalf("InboundTCPUDP(%v, %v) accepts %v: got %v, want %v", tt.tcp, tt.udp, tt.f, got, tt.want)
			}
		})
	}
	if _, err := bpfgen.InboundTCPUDP(maxMatches(), []bpfgen.Match{{Port: 53}}); err == nil {
		t.Error("more than MaxMatches in all accepted")
	}
	if _, err := bpfgen.InboundTCPUDP(nil, nil); err == nil {
		t.Error("no matches accepted")
	}
}

func TestResponsesFrom(t *testing.T) {
	resp := func(from netip.Addr, port uint16) frame {
		to := client4
		if from.Is6() {
			to = client6
		}
		return frame{Src: from, Dst: to, Proto: 6, SPort: port, DPort: 40000, Payload: 100}
	}
	tests := []struct {
		name    string
		matches []bpfgen.Match
		f       frame
		want    bool
	}{
		{"v4 response", []bpfgen.Match{{server4, 80}}, resp(server4, 80), true},
		{"v4 request", []bpfgen.Match{{server4, 80}}, frame{Src: client4, Dst: server4, Proto: 6, SPort: 40000, DPort: 80}, false},
		{"v4 other server", []bpfgen.Match{{server4, 80}}, resp(other4, 80), false},
		{"v4 other port", []bpfgen.Match{{server4, 80}}, resp(server4, 8080), false},
		{"v6 response", []bpfgen.Match{{server6, 80}}, resp(server6, 80), true},
		{"v6 other server", []bpfgen.Match{{server6, 80}}, resp(other6, 80), false},
		{"any server port 80", []bpfgen.Match{{Port: 80}}, resp(other6, 80), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prog, err := bpfgen.ResponsesFrom(tt.matches)
			if err != nil {
				t.Fatal(err)
			}
			if got := accepts(t, vm(t, prog), tt.f.Bytes()); got != tt.want {
				t.Fatalf("ResponsesFrom(%v) accepts %v: got %v, want %v", tt.matches, tt.f, got, tt.want)
			}
		})
	}
}

// TestTruncated checks that frames cut anywhere never match and never make
// the program misbehave: loads beyond the end reject.
func TestTruncated(t *testing.T) {
	for _, f := range []frame{
		{Src: client4, Dst: server4, Proto: 6, SPort: 1, DPort: 80, IPOpts: 8},
		{Src: client6, Dst: server6, Proto: 6, SPort: 1, DPort: 80},
	} {
		prog, err := bpfgen.Inbound([]bpfgen.Match{{f.Dst, 80}})
		if err != nil {
			t.Fatal(err)
		}
		v := vm(t, prog)
		b := f.Bytes()
		hdrs := len(b) - 20 + 4 // up to and including the destination port
		for n := range hdrs {
			if accepts(t, v, b[:n]) {
				t.Errorf("%v truncated to %d bytes matches", f.Dst, n)
			}
		}
		if !accepts(t, v, b[:hdrs]) {
			t.Errorf("%v truncated after the destination port does not match", f.Dst)
		}
	}
}

func TestErrors(t *testing.T) {
	tests := []struct {
		name    string
		matches []bpfgen.Match
		want    string
	}{
		{"none", nil, "bpfgen: no matches"},
		{"too many", make([]bpfgen.Match, bpfgen.MaxMatches+1), "bpfgen: 65 matches, at most 64 supported"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, fn := range []func([]bpfgen.Match) ([]bpf.RawInstruction, error){bpfgen.Inbound, bpfgen.ResponsesFrom} {
				_, err := fn(tt.matches)
				if err == nil || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("error = %v, want %q", err, tt.want)
				}
			}
		})
	}
}

// maxMatches returns MaxMatches distinct matches of the most expensive
// kind (IPv6 address and port) plus the given extra.
func maxMatches(extra ...bpfgen.Match) []bpfgen.Match {
	ms := make([]bpfgen.Match, 0, bpfgen.MaxMatches)
	for i := range bpfgen.MaxMatches - len(extra) {
		a := netip.MustParseAddr(fmt.Sprintf("2001:db8::%x", i+1))
		ms = append(ms, bpfgen.Match{Addr: a, Port: uint16(1000 + i)})
	}
	return append(ms, extra...)
}

func TestMaxMatches(t *testing.T) {
	last := bpfgen.Match{Addr: server4, Port: 80}
	ms := maxMatches(last)
	prog, err := bpfgen.Inbound(ms)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d matches: %d instructions", len(ms), len(prog))
	if len(prog) > 1000 {
		t.Errorf("program has %d instructions, want well under the kernel's 4096", len(prog))
	}
	v := vm(t, prog)
	if !accepts(t, v, frame{Src: client4, Dst: server4, Proto: 6, SPort: 1, DPort: 80}.Bytes()) {
		t.Error("last (IPv4) match does not match")
	}
	if !accepts(t, v, frame{Src: client6, Dst: ms[62].Addr, Proto: 6, SPort: 1, DPort: ms[62].Port}.Bytes()) {
		t.Error("last IPv6 match does not match")
	}
	if accepts(t, v, frame{Src: client6, Dst: ms[62].Addr, Proto: 6, SPort: 1, DPort: ms[61].Port}.Bytes()) {
		t.Error("crossed address and port match")
	}
}

func TestMatchString(t *testing.T) {
	tests := []struct {
		m    bpfgen.Match
		want string
	}{
		{bpfgen.Match{server4, 80}, "192.0.2.1:80"},
		{bpfgen.Match{server6, 443}, "[2001:db8::1]:443"},
		{bpfgen.Match{Port: 80}, "*:80"},
		{bpfgen.Match{Addr: server4}, "192.0.2.1:*"},
	}
	for _, tt := range tests {
		if got := tt.m.String(); got != tt.want {
			t.Errorf("String() = %q, want %q", got, tt.want)
		}
	}
}

func BenchmarkVM(b *testing.B) {
	prog, err := bpfgen.Inbound(maxMatches(bpfgen.Match{Addr: server4, Port: 80}))
	if err != nil {
		b.Fatal(err)
	}
	v := vm(b, prog)
	pkt := frame{Src: client4, Dst: server4, Proto: 6, SPort: 1, DPort: 80}.Bytes()
	b.ReportAllocs()
	for b.Loop() {
		if n, _ := v.Run(pkt); n == 0 {
			b.Fatal("no match")
		}
	}
}

func BenchmarkInbound(b *testing.B) {
	ms := maxMatches()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := bpfgen.Inbound(ms); err != nil {
			b.Fatal(err)
		}
	}
}

// TestInboundAndResponsesUDP: with the comparison, the online server's
// answers are taken too, TCP and UDP (and the fragments of UDP answers,
// by their source address); datagrams to the UDP matches and their
// fragments still are. InboundAndTCPResponses takes no UDP answer.
func TestInboundAndResponsesUDP(t *testing.T) {
	web, dns := []bpfgen.Match{{server4, 80}, {server6, 80}}, []bpfgen.Match{{server4, 53}, {server6, 53}}
	prog, err := bpfgen.InboundAndResponses(web, dns)
	if err != nil {
		t.Fatal(err)
	}
	anyDNS, err := bpfgen.InboundAndResponses(nil, []bpfgen.Match{{Port: 53}})
	if err != nil {
		t.Fatal(err)
	}
	tcpOnly, err := bpfgen.InboundAndTCPResponses(web, dns)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name string
		prog []bpf.RawInstruction
		f    frame
		want bool
	}{
		{"tcp request", prog, frame{Src: client4, Dst: server4, Proto: 6, SPort: 40000, DPort: 80}, true},
		{"tcp answer", prog, frame{Src: server4, Dst: client4, Proto: 6, SPort: 80, DPort: 40000}, true},
		{"tcp answer v6", prog, frame{Src: server6, Dst: client6, Proto: 6, SPort: 80, DPort: 40000}, true},
		{"udp query", prog, frame{Src: client4, Dst: server4, Proto: 17, SPort: 40000, DPort: 53}, true},
		{"udp answer", prog, frame{Src: server4, Dst: client4, Proto: 17, SPort: 53, DPort: 40000}, true},
		{"udp answer v6", prog, frame{Src: server6, Dst: client6, Proto: 17, SPort: 53, DPort: 40000}, true},
		{"udp answer ip options", prog, frame{Src: server4, Dst: client4, Proto: 17, SPort: 53, DPort: 40000, IPOpts: 8}, true},
		{"udp answer other port", prog, frame{Src: server4, Dst: client4, Proto: 17, SPort: 54, DPort: 40000}, false},
		{"udp answer other addr", prog, frame{Src: other4, Dst: client4, Proto: 17, SPort: 53, DPort: 40000}, false},
		{"udp from the tcp port", prog, frame{Src: server4, Dst: client4, Proto: 17, SPort: 80, DPort: 40000}, false},
		{"tcp from the udp port", prog, frame{Src: server4, Dst: client4, Proto: 6, SPort: 53, DPort: 40000}, false},
		{"udp answer first fragment", prog, frame{Src: server4, Dst: client4, Proto: 17, SPort: 53, DPort: 40000, MoreFrags: true}, true},
		{"udp answer later fragment", prog, frame{Src: server4, Dst: client4, Proto: 17, FragOff: 185}, true},
		{"udp later fragment other source", prog, frame{Src: other4, Dst: client4, Proto: 17, FragOff: 185}, false},
		{"udp answer v6 fragment", prog, frame{Src: server6, Dst: client6, Proto: 17, Frag6: true, Frag6Off: 181}, true},
		{"udp v6 fragment other source", prog, frame{Src: other6, Dst: client6, Proto: 17, Frag6: true, Frag6Off: 181}, false},
		{"udp later fragment", prog, frame{Src: client4, Dst: server4, Proto: 17, FragOff: 185, MoreFrags: true}, true},
		{"other tcp", prog, frame{Src: client4, Dst: other4, Proto: 6, SPort: 40000, DPort: 80}, false},
		{"port-only udp answer", anyDNS, frame{Src: other6, Dst: client6, Proto: 17, SPort: 53, DPort: 40000}, true},
		{"port-only other port", anyDNS, frame{Src: other4, Dst: client4, Proto: 17, SPort: 54, DPort: 40000}, false},
		{"tcp only: tcp answer", tcpOnly, frame{Src: server4, Dst: client4, Proto: 6, SPort: 80, DPort: 40000}, true},
		{"tcp only: udp query", tcpOnly, frame{Src: client4, Dst: server4, Proto: 17, SPort: 40000, DPort: 53}, true},
		{"tcp only: udp fragment to", tcpOnly, frame{Src: client4, Dst: server4, Proto: 17, FragOff: 185}, true},
		{"tcp only: no udp answer", tcpOnly, frame{Src: server4, Dst: client4, Proto: 17, SPort: 53, DPort: 40000}, false},
		{"tcp only: no udp answer fragment", tcpOnly, frame{Src: server4, Dst: client4, Proto: 17, FragOff: 185}, false},
		{"tcp only: no udp answer v6", tcpOnly, frame{Src: server6, Dst: client6, Proto: 17, SPort: 53, DPort: 40000}, false},
	} {
		if got := accepts(t, vm(t, c.prog), c.f.Bytes()); got != c.want {
			t.Errorf("%s: accepts %v, want %v", c.name, got, c.want)
		}
	}
}

// TestMaxMatchesResponses: the largest InboundAndResponses program, every
// match a UDP one of the most expensive kind, stays under the kernel's
// limit.
func TestMaxMatchesResponses(t *testing.T) {
	ms := maxMatches()
	prog, err := bpfgen.InboundAndResponses(nil, ms)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d matches: %d instructions", len(ms), len(prog))
	if len(prog) > 3000 {
		t.Errorf("program has %d instructions, want under 3000 (the kernel's limit is 4096)", len(prog))
	}
	if !accepts(t, vm(t, prog), frame{Src: ms[63].Addr, Dst: client6, Proto: 17, SPort: ms[63].Port, DPort: 1}.Bytes()) {
		t.Error("last match's answer does not match")
	}
}
