package netlab

import (
	"context"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// TCPState is a TCP socket state numbered as in /proc/net/tcp
// (include/net/tcp_states.h).
type TCPState uint8

// TCP states.
const (
	TCPEstablished TCPState = 1 + iota
	TCPSynSent
	TCPSynRecv
	TCPFinWait1
	TCPFinWait2
	TCPTimeWait
	TCPClose
	TCPCloseWait
	TCPLastAck
	TCPListen
	TCPClosing
	TCPNewSynRecv
)

var tcpStateNames = [...]string{"UNKNOWN", "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",
	"TIME_WAIT", "CLOSE", "CLOSE_WAIT", "LAST_ACK", "LISTEN", "CLOSING", "NEW_SYN_RECV"}

func (s TCPState) String() string {
	if int(s) < len(tcpStateNames) {
		return tcpStateNames[s]
	}
	return "TCPState(" + strconv.Itoa(int(s)) + ")"
}

// Socket is one line of /proc/net/tcp or /proc/net/tcp6.
type Socket struct {
	Local, Remote netip.AddrPort
	State         TCPState
	Inode         uint64 // 0 for sockets without a file (time-wait, request)
}

// TCPSockets lists the TCP sockets of namespace ns (IPv4 and IPv6), read
// from /proc/net/tcp{,6} by a process inside it. It costs a fork and an
// exec.
func (t *Topology) TCPSockets(ctx context.Context, ns string) ([]Socket, error) {
	out, err := t.Run(ctx, ns, "cat", "/proc/net/tcp", "/proc/net/tcp6")
	if err != nil {
		return nil, err
	}
	return parseProcNetTCP(string(out))
}

func parseProcNetTCP(s string) ([]Socket, error) {
	var socks []Socket
	for line := range strings.Lines(s) {
		f := strings.Fields(line)
		if len(f) < 4 || f[0] == "sl" {
			continue
		}
		local, err1 := parseProcAddr(f[1])
		remote, err2 := parseProcAddr(f[2])
		st, err3 := strconv.ParseUint(f[3], 16, 8)
		if err1 != nil || err2 != nil || err3 != nil {
			return nil, fmt.Errorf("netlab: bad /proc/net/tcp line %q", strings.TrimSpace(line))
		}
		var inode uint64
		if len(f) > 9 {
			inode, _ = strconv.ParseUint(f[9], 10, 64)
		}
		socks = append(socks, Socket{Local: local, Remote: remote, State: TCPState(st), Inode: inode})
	}
	return socks, nil
}

// parseProcAddr parses "0100007F:0050": the address is printed as 32-bit
// words in host byte order, the port in plain hex.
func parseProcAddr(s string) (netip.AddrPort, error) {
	a, p, ok := strings.Cut(s, ":")
	if !ok || (len(a) != 8 && len(a) != 32) {
		return netip.AddrPort{}, fmt.Errorf("bad address %q", s)
	}
	raw, err := hex.DecodeString(a)
	if err != nil {
		return netip.AddrPort{}, err
	}
	for i := 0; i < len(raw); i += 4 {
		binary.NativeEndian.PutUint32(raw[i:], binary.BigEndian.Uint32(raw[i:]))
	}
	port, err := strconv.ParseUint(p, 16, 16)
	if err != nil {
		return netip.AddrPort{}, err
	}
	ip, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(ip.Unmap(), uint16(port)), nil
}

// WaitTCP polls the TCP sockets of ns every 25 ms until one satisfies cond
// or ctx ends.
func (t *Topology) WaitTCP(ctx context.Context, ns string, cond func(Socket) bool) error {
	for {
		socks, err := t.TCPSockets(ctx, ns)
		if err != nil {
			return err
		}
		for _, s := range socks {
			if cond(s) {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("netlab: waiting for a socket in %s: %w", ns, ctx.Err())
		case <-time.After(25 * time.Millisecond):
		}
	}
}

// WaitListening waits until something listens on TCP port in ns.
func (t *Topology) WaitListening(ctx context.Context, ns string, port uint16) error {
	return t.WaitTCP(ctx, ns, func(s Socket) bool {
		return s.State == TCPListen && s.Local.Port() == port
	})
}

// TCPSockets lists the TCP sockets that process p holds open, read from
// /proc/<pid>/net/tcp{,6} (the sockets of the process's network namespace)
// and /proc/<pid>/fd (which of them are its own). It costs no fork, unlike
// Topology.TCPSockets, and tells the sockets of two processes in one
// namespace apart.
func (p *Proc) TCPSockets() ([]Socket, error) {
	if !p.Running() {
		return nil, fmt.Errorf("netlab: %s has exited", p.Name)
	}
	dir := "/proc/" + strconv.Itoa(p.Pid)
	fds, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return nil, fmt.Errorf("netlab: %w", err)
	}
	own := make(map[uint64]bool, len(fds))
	for _, fd := range fds {
		l, err := os.Readlink(dir + "/fd/" + fd.Name())
		if err != nil {
			continue // closed meanwhile
		}
		if v, ok := strings.CutPrefix(l, "socket:["); ok {
			if n, err := strconv.ParseUint(strings.TrimSuffix(v, "]"), 10, 64); err == nil {
				own[n] = true
			}
		}
	}
	var all strings.Builder
	for _, f := range []string{"/net/tcp", "/net/tcp6"} {
		b, err := os.ReadFile(dir + f)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue // no IPv6
			}
			return nil, fmt.Errorf("netlab: %w", err)
		}
		all.Write(b)
	}
	socks, err := parseProcNetTCP(all.String())
	if err != nil {
		return nil, err
	}
	mine := socks[:0]
	for _, s := range socks {
		if s.Inode != 0 && own[s.Inode] {
			mine = append(mine, s)
		}
	}
	return mine, nil
}
