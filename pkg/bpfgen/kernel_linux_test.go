package bpfgen_test

import (
	"testing"
	"unsafe"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/tcpcopy-go/tcpcopy/pkg/bpfgen"
)

// TestKernelAccepts attaches the largest programs to a UDP socket: the
// kernel runs the same classic BPF checker as for packet sockets, and no
// privilege is needed.
func TestKernelAccepts(t *testing.T) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	udp := func(ms []bpfgen.Match) ([]bpf.RawInstruction, error) { return bpfgen.InboundTCPUDP(nil, ms) }
	half := func(ms []bpfgen.Match) ([]bpf.RawInstruction, error) {
		return bpfgen.InboundTCPUDP(ms[:len(ms)/2], ms[len(ms)/2:])
	}
	for _, fn := range []func([]bpfgen.Match) ([]bpf.RawInstruction, error){bpfgen.Inbound, bpfgen.ResponsesFrom, udp, half} {
		for _, ms := range [][]bpfgen.Match{maxMatches(), {{}}, {{Port: 80}}, {{Port: 80}, {Addr: server4}}} {
			prog, err := fn(ms)
			if err != nil {
				t.Fatal(err)
			}
			fprog := unix.SockFprog{Len: uint16(len(prog)), Filter: (*unix.SockFilter)(unsafe.Pointer(&prog[0]))}
			t.Logf("%d matches: %d instructions", len(ms), len(prog))
			if err := unix.SetsockoptSockFprog(fd, unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, &fprog); err != nil {
				t.Fatalf("SO_ATTACH_FILTER of %d instructions: %v", len(prog), err)
			}
		}
	}
}
