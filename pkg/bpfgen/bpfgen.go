package bpfgen

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/net/bpf"
)

// MaxMatches is the largest number of matches one program may test.
const MaxMatches = 64

// AcceptLen is what an accepting program returns: the number of bytes of
// the packet to keep, libpcap's MAXIMUM_SNAPLEN.
const AcceptLen = 262144

// maxInsns is the kernel's BPF_MAXINSNS for classic programs.
const maxInsns = 4096

// Match selects TCP segments by one endpoint.
type Match struct {
	// Addr is the IPv4 or IPv6 address to match; the zero Addr matches
	// any address of either family. An IPv4-mapped IPv6 address matches
	// IPv4 packets. A zone is ignored.
	Addr netip.Addr
	// Port is the TCP port to match; 0 matches any port.
	Port uint16
}

// String returns "addr:port", with "*" for any address or port.
func (m Match) String() string {
	a, p := "*", "*"
	if m.Addr.IsValid() {
		a = m.Addr.String()
		if m.Addr.Is6() && !m.Addr.Is4In6() {
			a = "[" + a + "]"
		}
	}
	if m.Port != 0 {
		p = fmt.Sprint(m.Port)
	}
	return a + ":" + p
}

var errNoMatches = errors.New("bpfgen: no matches")

// Inbound returns a program accepting the Ethernet frames that carry a TCP
// segment whose destination is one of matches (see the package
// documentation for exactly what matches). It returns an error for no
// matches or more than MaxMatches.
func Inbound(matches []Match) ([]bpf.RawInstruction, error) {
	return build(matches, nil, "Inbound", inbound)
}

// InboundTCPUDP returns a program accepting the Ethernet frames that carry
// a TCP segment whose destination is one of tcp, a UDP datagram whose
// destination is one of udp, or a fragment of a UDP datagram to the
// address of one of udp (any address for a match without one): fragments
// after the first carry no ports (see the package documentation). It
// returns an error for no matches or more than MaxMatches in all.
func InboundTCPUDP(tcp, udp []Match) ([]bpf.RawInstruction, error) {
	return build(tcp, udp, "InboundTCPUDP", inbound)
}

// InboundAndResponses is InboundTCPUDP that also accepts the online
// servers' answers (tcpcopy with the response comparison): the TCP
// segments whose source is one of tcp, the UDP datagrams whose source is
// one of udp, and the fragments of UDP datagrams from the address of one
// of udp (any address for a match without one).
func InboundAndResponses(tcp, udp []Match) ([]bpf.RawInstruction, error) {
	return build(tcp, udp, "InboundAndResponses", both)
}

// InboundAndTCPResponses is InboundAndResponses without the UDP answers:
// the online servers' TCP answers only (tcpcopy comparing TCP responses,
// with no intercept to bring the target's UDP answers).
func InboundAndTCPResponses(tcp, udp []Match) ([]bpf.RawInstruction, error) {
	return build(tcp, udp, "InboundAndTCPResponses", directions{tcp: []direction{dst, src}, udp: []direction{dst}})
}

// ResponsesFrom returns a program accepting the Ethernet frames that carry
// a TCP segment whose source is one of matches: for intercept, the target
// server's responses. It returns an error for no matches or more than
// MaxMatches.
func ResponsesFrom(matches []Match) ([]bpf.RawInstruction, error) {
	return build(matches, nil, "ResponsesFrom", directions{tcp: []direction{src}})
}

// direction selects the source or destination fields.
type direction struct {
	addr4, addr6, port4 uint32 // frame offsets; port4 relative to the TCP header
}

// Ethernet frame offsets (no in-band VLAN tag, see package doc).
const (
	offEtherType = 12
	offIP        = 14
	offIPv4Frag  = offIP + 6 // flags + fragment offset
	offIPv4Proto = offIP + 9
	offIPv6Next  = offIP + 6
	offTCP6      = offIP + 40 // TCP (or UDP) directly behind the fixed IPv6 header
	offFrag6Next = offIP + 40 // the Next Header of a Fragment header there

	etherTypeIPv4 = 0x0800
	etherTypeIPv6 = 0x86dd
	protoTCP      = 6
	protoUDP      = 17
	protoFrag6    = 44
)

var (
	dst = direction{addr4: offIP + 16, addr6: offIP + 24, port4: 2}
	src = direction{addr4: offIP + 12, addr6: offIP + 8, port4: 0}
)

// directions are the directions a program matches, per protocol.
type directions struct {
	tcp, udp []direction
}

var (
	inbound = directions{tcp: []direction{dst}, udp: []direction{dst}}
	both    = directions{tcp: []direction{dst, src}, udp: []direction{dst, src}}
)

// build assembles the program named name: TCP segments matching tcp in
// any of the directions dirs.tcp, UDP datagrams and their fragments
// matching udp in any of dirs.udp.
func build(tcp, udp []Match, name string, dirs directions) ([]bpf.RawInstruction, error) {
	n := len(tcp) + len(udp)
	if n == 0 {
		return nil, errNoMatches
	}
	if n > MaxMatches {
		return nil, fmt.Errorf("bpfgen: %d matches, at most %d supported", n, MaxMatches)
	}
	v4 := section4(tcp, udp, dirs)
	v6 := section6(tcp, udp, dirs)
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: offEtherType, Size: 2},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherTypeIPv6, SkipFalse: 1},
		bpf.Jump{Skip: uint32(2 + len(v4))}, // over the next two and the IPv4 section
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: etherTypeIPv4, SkipTrue: 1},
		bpf.RetConstant{Val: 0},
	}
	prog = append(prog, v4...)
	prog = append(prog, v6...)
	if len(prog) > maxInsns {
		return nil, fmt.Errorf("bpfgen: %s: program of %d instructions exceeds the kernel limit of %d", name, len(prog), maxInsns)
	}
	raw, err := bpf.Assemble(prog)
	if err != nil {
		// Only a bug here can produce an unassemblable program.
		return nil, fmt.Errorf("bpfgen: %s: assemble: %w", name, err)
	}
	return raw, nil
}

// dispatch returns the head of a section: load the protocol field with
// load, then jump to the part of each protocol in parts (in order, laid
// out after the head), or reject. Parts that are nil are left out.
func dispatch(load bpf.Instruction, parts []part) []bpf.Instruction {
	var live []part
	for _, p := range parts {
		if p.insns != nil {
			live = append(live, p)
		}
	}
	if live == nil {
		return []bpf.Instruction{bpf.RetConstant{Val: 0}}
	}
	out := []bpf.Instruction{load}
	// Each part costs two instructions here: "if equal, fall into the
	// jump, else skip it". The jump skips the rest of the head and the
	// parts before its own.
	after := 2*len(live) + 1 // head instructions after the load
	before := 0
	for i, p := range live {
		out = append(out,
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: p.proto, SkipFalse: 1},
			bpf.Jump{Skip: uint32(after - 2*(i+1) + before)},
		)
		before += len(p.insns)
	}
	out = append(out, bpf.RetConstant{Val: 0})
	for _, p := range live {
		out = append(out, p.insns...)
	}
	return out
}

// part is the code of one protocol in a section.
type part struct {
	proto uint32
	insns []bpf.Instruction
}

// check is one "load a field, compare with a constant" step of a match.
type check struct {
	load bpf.Instruction
	val  uint32
}

// matchBlock returns the checks of one match followed by an accepting
// return; a failed check jumps to the instruction after the block.
func matchBlock(checks []check) []bpf.Instruction {
	total := 2*len(checks) + 1
	out := make([]bpf.Instruction, 0, total)
	for i, c := range checks {
		// Instructions after this jump up to the end of the block.
		skip := total - (2*i + 2)
		out = append(out, c.load, bpf.JumpIf{Cond: bpf.JumpEqual, Val: c.val, SkipFalse: uint8(skip)})
	}
	return append(out, bpf.RetConstant{Val: AcceptLen})
}

// blocks4 returns the match blocks of an IPv4 section, entered with X set
// to the IP header length, or nil for no match of the family. With
// portless, only the addresses are checked (fragments after the first).
func blocks4(matches []Match, d direction, portless bool) []bpf.Instruction {
	var blocks []bpf.Instruction
	for _, m := range matches {
		a := m.Addr.Unmap()
		if a.IsValid() && !a.Is4() {
			continue
		}
		var checks []check
		if a.IsValid() {
			b := a.As4()
			checks = append(checks, check{bpf.LoadAbsolute{Off: d.addr4, Size: 4}, binary.BigEndian.Uint32(b[:])})
		}
		if m.Port != 0 && !portless {
			checks = append(checks, check{bpf.LoadIndirect{Off: offIP + d.port4, Size: 2}, uint32(m.Port)})
		}
		blocks = append(blocks, matchBlock(checks)...)
	}
	return blocks
}

// section4 returns the IPv4 part of a program, entered with an IPv4
// EtherType.
func section4(tcp, udp []Match, dirs directions) []bpf.Instruction {
	var tcpPart, udpPart []bpf.Instruction
	var tb, ub, fb []bpf.Instruction
	for _, d := range dirs.tcp {
		tb = append(tb, blocks4(tcp, d, false)...)
	}
	for _, d := range dirs.udp {
		ub = append(ub, blocks4(udp, d, false)...)
		fb = append(fb, blocks4(udp, d, true)...)
	}
	if b := tb; b != nil {
		tcpPart = []bpf.Instruction{
			bpf.LoadAbsolute{Off: offIPv4Frag, Size: 2},
			bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipFalse: 1}, // fragment offset != 0
			bpf.RetConstant{Val: 0},
			bpf.LoadMemShift{Off: offIP}, // X = 4 * IHL
			// Both ports must be in the frame: a load beyond its end rejects.
			bpf.LoadIndirect{Off: offIP + 2, Size: 2},
		}
		tcpPart = append(append(tcpPart, b...), bpf.RetConstant{Val: 0})
	}
	if b := ub; b != nil {
		frag := append(fb, bpf.RetConstant{Val: 0})
		udpPart = []bpf.Instruction{
			bpf.LoadAbsolute{Off: offIPv4Frag, Size: 2},
			// A fragment after the first has no UDP header: its address
			// decides.
			bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipFalse: 1},
			bpf.Jump{Skip: uint32(3 + len(b))}, // to frag
			bpf.LoadMemShift{Off: offIP},
			bpf.LoadIndirect{Off: offIP + 2, Size: 2},
		}
		udpPart = append(append(append(udpPart, b...), bpf.RetConstant{Val: 0}), frag...)
	}
	return dispatch(bpf.LoadAbsolute{Off: offIPv4Proto, Size: 1}, []part{{protoTCP, tcpPart}, {protoUDP, udpPart}})
}

// blocks6 returns the match blocks of an IPv6 section, or nil for no match
// of the family; see blocks4.
func blocks6(matches []Match, d direction, portless bool) []bpf.Instruction {
	var blocks []bpf.Instruction
	for _, m := range matches {
		a := m.Addr.Unmap()
		if a.Is4() {
			continue
		}
		var checks []check
		if a.IsValid() {
			b := a.As16()
			for w := range uint32(4) {
				checks = append(checks, check{bpf.LoadAbsolute{Off: d.addr6 + 4*w, Size: 4}, binary.BigEndian.Uint32(b[4*w:])})
			}
		}
		if m.Port != 0 && !portless {
			checks = append(checks, check{bpf.LoadAbsolute{Off: offTCP6 + d.port4, Size: 2}, uint32(m.Port)})
		}
		blocks = append(blocks, matchBlock(checks)...)
	}
	return blocks
}

// section6 returns the IPv6 part of a program, entered with an IPv6
// EtherType.
func section6(tcp, udp []Match, dirs directions) []bpf.Instruction {
	var tcpPart, udpPart, fragPart []bpf.Instruction
	// Both ports must be in the frame: a load beyond its end rejects.
	ports := bpf.LoadAbsolute{Off: offTCP6 + 2, Size: 2}
	var tb, ub, fb []bpf.Instruction
	for _, d := range dirs.tcp {
		tb = append(tb, blocks6(tcp, d, false)...)
	}
	for _, d := range dirs.udp {
		ub = append(ub, blocks6(udp, d, false)...)
		fb = append(fb, blocks6(udp, d, true)...)
	}
	if b := tb; b != nil {
		tcpPart = append(append([]bpf.Instruction{ports}, b...), bpf.RetConstant{Val: 0})
	}
	if b := ub; b != nil {
		udpPart = append(append([]bpf.Instruction{ports}, b...), bpf.RetConstant{Val: 0})
		// Fragments of UDP (first or not): the address decides.
		fragPart = []bpf.Instruction{
			bpf.LoadAbsolute{Off: offFrag6Next, Size: 1},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: protoUDP, SkipTrue: 1},
			bpf.RetConstant{Val: 0},
		}
		fragPart = append(append(fragPart, fb...), bpf.RetConstant{Val: 0})
	}
	return dispatch(bpf.LoadAbsolute{Off: offIPv6Next, Size: 1},
		[]part{{protoTCP, tcpPart}, {protoUDP, udpPart}, {protoFrag6, fragPart}})
}
