//go:build cgo

package bpfgen_test

// Cross-checks of the generated programs against libpcap's compilation of
// the equivalent tcpdump expression (package pcapfilter, cgo).

import (
	"fmt"
	"net/netip"
	"strings"
	"testing"

	"golang.org/x/net/bpf"

	"github.com/tcpcopy-go/tcpcopy/pkg/bpfgen"
	"github.com/tcpcopy-go/tcpcopy/pkg/pcapfilter"
)

// pcapExpr returns the tcpdump expression equivalent to a bpfgen program
// over matches; dir is "dst" (Inbound) or "src" (ResponsesFrom):
//
//	tcp and ((dst port P1 and dst host H1) or ...)
//
// When a match has no port, libpcap would accept IPv4 non-first fragments
// and IPv6 TCP behind a fragment header, which bpfgen deliberately does
// not: the expression then excludes those too.
func pcapExpr(ms []bpfgen.Match, dirs ...string) string {
	terms := make([]string, 0, len(ms))
	anyPort := false
	for _, dir := range dirs {
		terms, anyPort = pcapTerms(ms, dir, terms, anyPort)
	}
	expr := "tcp and (" + strings.Join(terms, " or ") + ")"
	if anyPort {
		expr += " and not (ip and ip[6:2] & 0x1fff != 0) and not (ip6 and ip6[6] != 6)"
	}
	return expr
}

// pcapTerms appends the terms of one direction.
func pcapTerms(ms []bpfgen.Match, dir string, terms []string, anyPort bool) ([]string, bool) {
	for _, m := range ms {
		var parts []string
		if m.Port != 0 {
			parts = append(parts, fmt.Sprintf("%s port %d", dir, m.Port))
		} else {
			anyPort = true
		}
		if m.Addr.IsValid() {
			parts = append(parts, fmt.Sprintf("%s host %s", dir, m.Addr.Unmap()))
		}
		if parts == nil {
			parts = []string{"tcp"}
		}
		terms = append(terms, "("+strings.Join(parts, " and ")+")")
	}
	return terms, anyPort
}

// pcapExprUDP returns the tcpdump expression equivalent to an
// InboundTCPUDP program: pcapExpr's for tcp, UDP by port and address, and
// UDP fragments by address (IPv4 fragments after the first; any IPv6
// fragment of UDP behind the fixed header).
func pcapExprUDP(tcp, udp []bpfgen.Match) string {
	var terms []string
	if len(tcp) > 0 {
		terms = append(terms, "("+pcapExpr(tcp, "dst")+")")
	}
	var whole, addrs []string
	anyAddr := false
	for _, m := range udp {
		var parts []string
		if m.Port != 0 {
			parts = append(parts, fmt.Sprintf("dst port %d", m.Port))
		}
		if m.Addr.IsValid() {
			parts = append(parts, fmt.Sprintf("dst host %s", m.Addr.Unmap()))
			addrs = append(addrs, fmt.Sprintf("dst host %s", m.Addr.Unmap()))
		} else {
			anyAddr = true
		}
		if parts == nil {
			parts = []string{"udp"}
		}
		whole = append(whole, "("+strings.Join(parts, " and ")+")")
	}
	// The same match as the program's order: only whole datagrams and
	// first fragments through the port check (libpcap's udp port
	// primitives exclude later IPv4 fragments, and look at IPv6 UDP right
	// behind the fixed header).
	terms = append(terms, "(udp and not (ip and ip[6:2] & 0x1fff != 0) and not (ip6 and ip6[6] != 17) and ("+strings.Join(whole, " or ")+"))")
	addr := "(" + strings.Join(addrs, " or ") + ")"
	if anyAddr {
		addr = "(ip or ip6)"
	}
	terms = append(terms,
		"(ip and ip[9] == 17 and ip[6:2] & 0x1fff != 0 and "+addr+")",
		"(ip6 and ip6[6] == 44 and ip6[40] == 17 and "+addr+")")
	return strings.Join(terms, " or ")
}

type program struct {
	name   string
	gen    *bpf.VM
	pcap   *bpf.VM
	expr   string
	insns  int
	pcapIn int
}

// programs returns bpfgen programs and their libpcap equivalents.
func programs(tb testing.TB) []program {
	tb.Helper()
	sets := []struct {
		name string
		ms   []bpfgen.Match
	}{
		{"one v4", []bpfgen.Match{{server4, 80}}},
		{"mixed", []bpfgen.Match{{server4, 80}, {server6, 443}, {Port: 8080}}},
		{"no ports", []bpfgen.Match{{Addr: server4}, {Addr: server6, Port: 22}}},
		{"any", []bpfgen.Match{{}}},
		{"max", maxMatches(bpfgen.Match{Addr: server4, Port: 80}, bpfgen.Match{Addr: other6})},
	}
	var out []program
	udpSets := []struct {
		name     string
		tcp, udp []bpfgen.Match
	}{
		{"udp one v4", nil, []bpfgen.Match{{server4, 80}}},
		{"udp mixed", []bpfgen.Match{{server4, 80}, {server6, 443}}, []bpfgen.Match{{server4, 22}, {server6, 1000}, {Port: 8080}}},
		{"udp no ports", nil, []bpfgen.Match{{Addr: server4}, {Addr: server6, Port: 22}}},
		{"udp any", []bpfgen.Match{{Addr: other4}}, []bpfgen.Match{{}}},
	}
	for _, s := range udpSets {
		gen, err := bpfgen.InboundTCPUDP(s.tcp, s.udp)
		if err != nil {
			tb.Fatal(err)
		}
		expr := pcapExprUDP(s.tcp, s.udp)
		ref, err := pcapfilter.Compile(pcapfilter.LinkTypeEthernet, bpfgen.AcceptLen, expr)
		if err != nil {
			tb.Fatalf("%s: %v", expr, err)
		}
		out = append(out, program{name: s.name, gen: vm(tb, gen), pcap: vm(tb, ref), expr: expr, insns: len(gen), pcapIn: len(ref)})
	}
	for _, s := range sets {
		for _, d := range []struct {
			dir []string
			fn  func([]bpfgen.Match) ([]bpf.RawInstruction, error)
		}{{[]string{"dst"}, bpfgen.Inbound}, {[]string{"src"}, bpfgen.ResponsesFrom}, {[]string{"dst", "src"}, func(ms []bpfgen.Match) ([]bpf.RawInstruction, error) { return bpfgen.InboundAndResponses(ms, nil) }}} {
			if len(d.dir) > 1 && len(s.ms) > bpfgen.MaxMatches/2 {
				continue // the maximal set: libpcap's program would be too long to compare
			}
			gen, err := d.fn(s.ms)
			if err != nil {
				tb.Fatal(err)
			}
			expr := pcapExpr(s.ms, d.dir...)
			ref, err := pcapfilter.Compile(pcapfilter.LinkTypeEthernet, bpfgen.AcceptLen, expr)
			if err != nil {
				tb.Fatal(err)
			}
			out = append(out, program{
				name: s.name + "/" + strings.Join(d.dir, "+"), gen: vm(tb, gen), pcap: vm(tb, ref),
				expr: expr, insns: len(gen), pcapIn: len(ref),
			})
		}
	}
	return out
}

// comparisonFrames returns frames across addresses, ports, protocols and
// header variants, in both directions, plus truncations.
func comparisonFrames() [][]byte {
	addrs := []netip.Addr{server4, other4, client4, server6, other6, client6}
	ports := []uint16{80, 443, 22, 8080, 1000, 1062, 40000}
	var fs []frame
	for _, a := range addrs {
		peer := client4
		if a.Is6() {
			peer = client6
		}
		for _, p := range ports {
			for _, proto := range []uint8{6, 17} {
				fs = append(fs,
					frame{Src: peer, Dst: a, Proto: proto, SPort: 40000, DPort: p},
					frame{Src: a, Dst: peer, Proto: proto, SPort: p, DPort: 40000, Payload: 3},
				)
			}
			if a.Is4() {
				fs = append(fs,
					frame{Src: peer, Dst: a, Proto: 17, SPort: 40000, DPort: p, IPOpts: 8},
					frame{Src: peer, Dst: a, Proto: 17, SPort: 40000, DPort: p, MoreFrags: true},
					frame{Src: peer, Dst: a, Proto: 17, SPort: 40000, DPort: p, FragOff: 7, MoreFrags: true},
					frame{Src: peer, Dst: a, Proto: 17, SPort: 40000, DPort: p, FragOff: 100},
					frame{Src: peer, Dst: a, Proto: 6, SPort: 40000, DPort: p, IPOpts: 4},
					frame{Src: a, Dst: peer, Proto: 6, SPort: p, DPort: 40000, IPOpts: 40},
					frame{Src: peer, Dst: a, Proto: 6, SPort: 40000, DPort: p, MoreFrags: true},
					frame{Src: peer, Dst: a, Proto: 6, SPort: 40000, DPort: p, FragOff: 7},
					frame{Src: a, Dst: peer, Proto: 6, SPort: p, DPort: 40000, FragOff: 0x1fff},
				)
			} else {
				fs = append(fs,
					frame{Src: peer, Dst: a, Proto: 17, SPort: 40000, DPort: p, HopByHop: true},
					frame{Src: peer, Dst: a, Proto: 17, SPort: 40000, DPort: p, Frag6: true},
					frame{Src: peer, Dst: a, Proto: 17, SPort: 40000, DPort: p, Frag6: true, Frag6Off: 160},
					frame{Src: peer, Dst: a, Proto: 6, SPort: 40000, DPort: p, Frag6: true, Frag6Off: 160},
					frame{Src: peer, Dst: a, Proto: 6, SPort: 40000, DPort: p, HopByHop: true},
					frame{Src: a, Dst: peer, Proto: 6, SPort: p, DPort: 40000, Frag6: true},
				)
			}
			fs = append(fs, frame{VLAN: 7, Src: peer, Dst: a, Proto: 6, SPort: 40000, DPort: p})
		}
	}
	var out [][]byte
	for i, f := range fs {
		b := f.Bytes()
		out = append(out, b)
		if i%7 == 0 {
			for n := 0; n < len(b); n += 5 {
				out = append(out, b[:n])
			}
		}
	}
	return out
}

// holdsPorts reports whether an Ethernet frame carrying IPv4 or IPv6 holds
// the TCP or UDP ports where a filter looks for them, or, for a fragment
// after the first, the fields through the destination address (and an
// IPv6 Fragment header's Next Header). On shorter frames libpcap's result
// depends on the order its optimizer loads fields in (any load past the
// end rejects the whole packet), so only bpfgen's rule is checked: they
// never match (TestTruncated), except fragments, which a match without an
// address accepts from the fragment fields on (fragmentMayMatch).
func holdsPorts(b []byte) bool {
	if len(b) < 14 {
		return true // matched by neither
	}
	switch uint16(b[12])<<8 | uint16(b[13]) {
	case 0x0800:
		if len(b) >= 14+8 && (uint16(b[14+6])<<8|uint16(b[14+7]))&0x1fff != 0 {
			return len(b) >= 14+20
		}
		return len(b) > 14 && len(b) >= 14+4*int(b[14]&0xf)+4
	case 0x86dd:
		if len(b) > 14+6 && b[14+6] == 44 {
			return len(b) >= 14+41
		}
		return len(b) >= 14+40+4
	}
	return true
}

// fragmentMayMatch reports whether b, too short for holdsPorts, is a
// fragment that a UDP match without an address may accept.
func fragmentMayMatch(b []byte) bool {
	switch {
	case len(b) < 14+10:
		return false
	case b[12] == 0x08 && b[13] == 0x00:
		return (uint16(b[14+6])<<8|uint16(b[14+7]))&0x1fff != 0
	case b[12] == 0x86 && b[13] == 0xdd:
		return b[14+6] == 44
	}
	return false
}

func TestAgreesWithLibpcap(t *testing.T) {
	frames := comparisonFrames()
	for _, p := range programs(t) {
		t.Run(p.name, func(t *testing.T) {
			t.Logf("%d instructions (libpcap: %d) for %.200s", p.insns, p.pcapIn, p.expr)
			matched := 0
			for _, b := range frames {
				if !holdsPorts(b) {
					if accepts(t, p.gen, b) && !fragmentMayMatch(b) {
						t.Errorf("frame % x without the TCP ports matches", b)
					}
					continue
				}
				got, want := accepts(t, p.gen, b), accepts(t, p.pcap, b)
				if got != want {
					t.Errorf("frame % x: bpfgen %v, libpcap %v", b, got, want)
				}
				if got {
					matched++
				}
			}
			if matched == 0 {
				t.Error("no frame matched: the table does not exercise this program")
			}
			t.Logf("%d of %d frames matched", matched, len(frames))
		})
	}
}

func FuzzAgreesWithLibpcap(f *testing.F) {
	for i, b := range comparisonFrames() {
		if i%5 == 0 {
			f.Add(b)
		}
	}
	progs := programs(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		for _, p := range progs {
			if !holdsPorts(b) {
				if accepts(t, p.gen, b) && !fragmentMayMatch(b) {
					t.Fatalf("%s: frame % x without the TCP ports matches", p.name, b)
				}
				continue
			}
			got, want := accepts(t, p.gen, b), accepts(t, p.pcap, b)
			if got != want {
				t.Fatalf("%s: frame % x: bpfgen %v, libpcap %v", p.name, b, got, want)
			}
		}
	})
}
